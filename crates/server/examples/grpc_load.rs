//! The load generator of `bench/grpc.sh`: the same one-row inference of
//! `breast_cancer_lr` sent to one hoist-server over REST (JSON) and over gRPC (raw
//! tensors), from the same process, the same number of concurrent callers for the
//! same time, each caller sending its next request when the last one answered.
//!
//! Usage: `grpc_load HTTP_URL GRPC_ADDR [CONCURRENCY] [SECONDS]`; prints one line per
//! protocol: requests per second and latency percentiles.

use std::time::{Duration, Instant};

use hoist_server::grpc::proto::ModelInferRequest;
use hoist_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use hoist_server::grpc::proto::model_infer_request::InferInputTensor;

const MODEL: &str = "breast_cancer_lr";
const ROW: [f32; 30] = [
    17.99, 10.38, 122.8, 1001.0, 0.1184, 0.2776, 0.3001, 0.1471, 0.2419, 0.07871, 1.095, 0.9053,
    8.589, 153.4, 0.006399, 0.04904, 0.05373, 0.01587, 0.03003, 0.006193, 25.38, 17.33, 184.6,
    2019.0, 0.1622, 0.6656, 0.7119, 0.2654, 0.4601, 0.1189,
];

fn report(name: &str, mut lat: Vec<Duration>, elapsed: Duration, errors: usize) {
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "{name:5} {:8.0} req/s  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  ({} requests, {errors} errors)",
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        lat.len()
    );
}

async fn rest(url: String, conc: usize, secs: u64) {
    let body = serde_json::json!({
        "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": ROW}]
    })
    .to_string();
    let client = reqwest::Client::new();
    let end = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (client, body, url) = (client.clone(), body.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0);
            while Instant::now() < end {
                let t = Instant::now();
                let ok = client
                    .post(format!("{url}/v2/models/{MODEL}/infer"))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status() == 200);
                let read = match ok {
                    Some(r) => r.bytes().await.is_ok(),
                    None => false,
                };
                if read {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let (mut lat, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.unwrap();
        lat.extend(l);
        errors += e;
    }
    report("REST", lat, start.elapsed(), errors);
}

async fn grpc(addr: String, conc: usize, secs: u64) {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    let raw: Vec<u8> = ROW.iter().flat_map(|x| x.to_le_bytes()).collect();
    let req = ModelInferRequest {
        model_name: MODEL.into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, 30],
            ..Default::default()
        }],
        raw_input_contents: vec![raw.into()],
        ..Default::default()
    };
    let end = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        // One HTTP/2 connection, multiplexed, as gRPC clients use it.
        let mut client = GrpcInferenceServiceClient::new(channel.clone());
        let req = req.clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0);
            while Instant::now() < end {
                let t = Instant::now();
                match client.model_infer(req.clone()).await {
                    Ok(_) => lat.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let (mut lat, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.unwrap();
        lat.extend(l);
        errors += e;
    }
    report("gRPC", lat, start.elapsed(), errors);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: grpc_load HTTP_URL GRPC_ADDR [CONCURRENCY] [SECONDS]");
        std::process::exit(2);
    }
    let conc: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16);
    let secs: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    println!("concurrency {conc}, {secs} s each, one row of {MODEL}");
    rt.block_on(rest(args[0].clone(), conc, secs));
    rt.block_on(grpc(args[1].clone(), conc, secs));
}
