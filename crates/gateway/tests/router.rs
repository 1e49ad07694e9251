//! One `Router` in front of several models, each with its own stable and candidate
//! stand-in model servers, on loopback: routing by path on keep-alive connections
//! that mix models (fast path and hyper's path), unknown models, model-less paths,
//! live insert and remove under traffic, per-model counts, feedback and `/metrics`.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use common::*;
use hoist_gateway::{Gateway, Router, Routes};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// A router serving on a free port.
struct Served {
    router: Router,
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Served {
    async fn start(router: Router) -> Served {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(router.clone().serve_with_threads(listener, 2, async move {
            let _ = rx.await;
        }));
        Served {
            router,
            addr,
            _stop: tx,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// One model: its stable and candidate servers (answering "<model>-stable" and
/// "<model>-candidate") and its gateway.
struct Model {
    stable: Backend,
    candidate: Backend,
    gateway: Gateway,
}

async fn model(name: &str, weight: u32) -> Model {
    let stable = Backend::start(&format!("{name}-stable")).await;
    let candidate = Backend::start(&format!("{name}-candidate")).await;
    let gateway = Gateway::new(config("prod"));
    gateway.set_routes(both(&stable, &candidate, weight));
    Model {
        stable,
        candidate,
        gateway,
    }
}

/// A router over models a (all stable), b (all candidate) and c (half and half).
async fn three() -> (Served, BTreeMap<&'static str, Model>) {
    let mut models = BTreeMap::new();
    for (name, weight) in [("a", 0), ("b", 100), ("c", 50)] {
        models.insert(name, model(name, weight).await);
    }
    let router = Router::new("prod");
    for (name, m) in &models {
        router.insert(name, m.gateway.clone());
    }
    (Served::start(router).await, models)
}

/// One answer read off a raw connection: status, headers (lower-case), body.
struct Raw {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

/// Writes `request` on `s` and reads one `Content-Length` answer.
async fn exchange(s: &mut TcpStream, request: &str) -> Raw {
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let status = lines.next().unwrap()[9..12].parse().unwrap();
            let headers: BTreeMap<String, String> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let len: usize = headers["content-length"].parse().unwrap();
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                return Raw {
                    status,
                    headers,
                    body,
                };
            }
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the gateway closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn post(path: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{{}}")
}

fn chunked(path: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_mixing_models_reach_each_models_servers() {
    let (gw, models) = three().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let mut c_variants = Vec::new();
    // Fast path first; the chunked request hands the connection to hyper, which
    // routes the rest of it by the same rules.
    for round in 0..2 {
        for i in 0..20 {
            let (name, path) = match i % 4 {
                0 => ("a", "/v2/models/a/infer".to_string()),
                1 => ("b", "/models/b/invocations?x=1".to_string()),
                2 => ("c", "/v2/models/c/versions/3/infer".to_string()),
                _ => ("a", "/models/a/invocations".to_string()),
            };
            let request = if round == 1 && i == 0 {
                chunked(&path)
            } else {
                post(&path)
            };
            let a = exchange(&mut s, &request).await;
            assert_eq!(a.status, 200, "{path}: {}", a.body);
            let variant = a.headers["x-hoist-variant"].clone();
            assert_eq!(a.body, format!("{name}-{variant}"), "{path}");
            match name {
                "a" => assert_eq!(variant, "stable", "{path}"),
                "b" => assert_eq!(variant, "candidate", "{path}"),
                _ => c_variants.push(variant),
            }
            // OIP paths go unchanged; MLflow's lose their /models/{name} prefix.
            let expected = match i % 4 {
                1 => "/invocations?x=1",
                3 => "/invocations",
                _ => path.as_str(),
            };
            assert_eq!(a.headers["x-seen-path"], expected);
        }
    }
    // c splits by its own counter, whatever a and b got meanwhile: exactly as a
    // gateway of its own with the same weight.
    let alone = Running::start(
        config("prod"),
        both(&models["c"].stable, &models["c"].candidate, 50),
    )
    .await;
    let client = Client::new();
    let mut expected = Vec::new();
    for _ in 0..10 {
        let a = client.post(&alone.url("/x"), &[], "{}").await;
        expected.push(a.variant().to_string());
    }
    assert_eq!(c_variants, expected);
    // Every model counted its own requests only.
    let counts = |m: &Model| {
        let s = m.gateway.metrics();
        (s.stable.requests, s.candidate.requests)
    };
    assert_eq!(counts(&models["a"]), (20, 0));
    assert_eq!(counts(&models["b"]), (0, 10));
    let n_candidate = expected.iter().filter(|v| *v == "candidate").count() as u64;
    assert_eq!(counts(&models["c"]), (10 - n_candidate, n_candidate));
    assert_eq!(models["a"].candidate.hits.load(Ordering::SeqCst), 0);
    assert_eq!(models["b"].stable.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_models_and_model_less_paths_get_a_404_naming_the_models() {
    let (gw, models) = three().await;
    let client = Client::new();
    for path in [
        "/v2/models/x/infer",
        "/models/x/invocations",
        "/v2/models/A/infer",
        "/v2/models/%7a/infer", // z, decoded: unknown too
    ] {
        let a = client.post(&gw.url(path), &[], "{}").await;
        assert_eq!(a.status, 404, "{path}");
        let name = path
            .split('/')
            .nth(if path.starts_with("/v2") { 3 } else { 2 });
        let v: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(
            v["error"],
            format!("no model \"{}\" here; models: a, b, c", name.unwrap()),
            "{path}"
        );
    }
    for path in ["/invocations", "/ping", "/feedback", "/v2"] {
        let a = client.post(&gw.url(path), &[], "{}").await;
        assert_eq!(a.status, 404, "{path}");
        assert!(a.body.contains("models: a, b, c"), "{path}: {}", a.body);
    }
    // The same on hyper's path (HTTP/1.0), and a HEAD gets no body.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /v2/models/zz HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.0 404"), "{text}");
    assert!(text.ends_with(r#"{"error":"no model \"zz\" here; models: a, b, c"}"#));
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let a = exchange(
        &mut s,
        "HEAD /models/q/invocations HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    assert_eq!((a.status, a.body.as_str()), (404, ""));
    // Hostile targets keep the single gateway's refusals, model or not.
    for (target, status) in [
        ("/v2/models/a/../b/infer", 400),
        ("/v2/models/a%2f..%2fb/infer", 400),
        ("/admin/models/a", 404),
        ("/v2/repository/models/a/unload", 404),
    ] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        let a = exchange(&mut s, &post(target)).await;
        assert_eq!(a.status, status, "{target}");
    }
    // Health: live always, ready while every model has a server to route to.
    let live = client.get(&gw.url("/v2/health/live"), &[]).await;
    assert_eq!(live.status, 200);
    assert_eq!(
        client.get(&gw.url("/v2/health/ready"), &[]).await.status,
        200
    );
    models["b"].gateway.set_routes(Routes::default());
    let ready = client.get(&gw.url("/v2/health/ready"), &[]).await;
    assert_eq!(ready.status, 503);
    assert!(ready.body.contains(": b"), "{}", ready.body);
    // Nothing reached a model server.
    for m in models.values() {
        assert_eq!(m.stable.hits.load(Ordering::SeqCst), 0);
        assert_eq!(m.candidate.hits.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_model_plain_paths_are_that_model() {
    let a = model("a", 0).await;
    let b = model("b", 100).await;
    let router = Router::new("prod");
    router.insert("a", a.gateway.clone());
    let gw = Served::start(router.clone()).await;
    let client = Client::new();
    for path in ["/invocations", "/ping", "/v2/health/ready", "/v2"] {
        let ans = client.post(&gw.url(path), &[], "{}").await;
        assert_eq!((ans.status.as_u16(), ans.body.as_str()), (200, "a-stable"));
        assert_eq!(ans.header("x-seen-path"), Some(path));
    }
    // A second model makes them ambiguous; removing it makes them a's again.
    router.insert("b", b.gateway.clone());
    assert_eq!(router.models(), ["a", "b"]);
    let ans = client.post(&gw.url("/invocations"), &[], "{}").await;
    assert_eq!(ans.status, 404);
    let ans = client
        .post(&gw.url("/models/b/invocations"), &[], "{}")
        .await;
    assert_eq!(ans.body, "b-candidate");
    assert!(router.remove("b").is_some());
    assert!(router.remove("b").is_none());
    assert!(router.get("b").is_none());
    let ans = client.post(&gw.url("/invocations"), &[], "{}").await;
    assert_eq!(ans.body, "a-stable");
    let ans = client
        .post(&gw.url("/models/b/invocations"), &[], "{}")
        .await;
    assert_eq!(ans.status, 404);
    assert!(ans.body.contains("models: a\""), "{}", ans.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_come_and_go_while_the_others_take_traffic_without_a_failure() {
    let (gw, models) = three().await;
    let d = model("d", 0).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    let mut done = Vec::new();
    for (name, path) in [("a", "/v2/models/a/infer"), ("b", "/models/b/invocations")] {
        let (url, stop) = (gw.url(path), stop.clone());
        let progress = Arc::new(AtomicU32::new(0));
        done.push(progress.clone());
        load.push(tokio::spawn(async move {
            let client = Client::new();
            let (mut ok, mut failed) = (0u32, Vec::new());
            // Bounded: stops when told, or after 20 000 requests.
            while !stop.load(Ordering::SeqCst) && ok < 20_000 {
                match client.try_request("POST", &url, &[], "{}").await {
                    Ok(a) if a.status == 200 && a.body.starts_with(name) => {
                        ok += 1;
                        progress.store(ok, Ordering::SeqCst);
                    }
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed)
        }));
    }
    let client = Client::new();
    let started: Vec<u32> = done.iter().map(|d| d.load(Ordering::SeqCst)).collect();
    // At least 30 rounds, and on until both loads sent 200 requests meanwhile.
    let mut round = 0;
    while round < 30
        || (round < 20_000
            && done
                .iter()
                .zip(&started)
                .any(|(d, s)| d.load(Ordering::SeqCst) < s + 200))
    {
        round += 1;
        gw.router.insert("d", d.gateway.clone());
        let a = client
            .post(&gw.url("/models/d/invocations"), &[], "{}")
            .await;
        assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "d-stable"));
        // Replacing c's gateway (new routes object) is live too.
        let c = Gateway::new(config("prod"));
        c.set_routes(both(&models["c"].stable, &models["c"].candidate, 100));
        gw.router.insert(
            "c",
            if round % 2 == 0 {
                c
            } else {
                models["c"].gateway.clone()
            },
        );
        assert!(gw.router.remove("d").is_some());
        let a = client
            .post(&gw.url("/models/d/invocations"), &[], "{}")
            .await;
        assert_eq!(a.status, 404, "{round}");
    }
    stop.store(true, Ordering::SeqCst);
    for task in load {
        let (ok, failed) = task.await.unwrap();
        assert!(failed.is_empty(), "{failed:?}");
        assert!(ok > 0);
    }
    // a and b counted exactly their own traffic.
    let a = models["a"].gateway.metrics();
    assert_eq!(
        a.stable.requests,
        models["a"].stable.hits.load(Ordering::SeqCst) as u64
    );
    assert_eq!(a.stable.ok, a.stable.requests);
    assert_eq!(d.gateway.metrics().stable.requests, round as u64);
}

const PREDICTS: &str = r#"{"predictions":{"label":[1,0],"probabilities":[[0.1,0.9],[0.8,0.2]]}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_reaches_the_model_that_answered() {
    let router = Router::new("prod");
    let mut backends = Vec::new();
    for name in ["a", "b"] {
        let stable = Backend::start(PREDICTS).await;
        let gateway = Gateway::new(config("prod"));
        gateway.set_routes(Routes {
            feedback: true,
            ..routes(Some(stable.upstream("1")), None, 0)
        });
        router.insert(name, gateway);
        backends.push(stable);
    }
    let gw = Served::start(router.clone()).await;
    let client = Client::new();
    let id_of = |a: &Answer| a.header("x-request-id").unwrap().to_string();
    let a_id = id_of(
        &client
            .post(&gw.url("/models/a/invocations"), &[], "{}")
            .await,
    );
    let b_id = id_of(&client.post(&gw.url("/v2/models/b/infer"), &[], "{}").await);
    let label = |id: &str| json!({ "request_id": id, "labels": [1, 1] }).to_string();
    // b's prediction is unknown to a: each model keeps its own.
    let wrong = client
        .post(&gw.url("/models/a/feedback"), &[], &label(&b_id))
        .await;
    assert_eq!(wrong.status, 404, "{}", wrong.body);
    let ok = client
        .post(&gw.url("/models/a/feedback"), &[], &label(&a_id))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let ok = client
        .post(&gw.url("/v2/models/b/feedback"), &[], &label(&b_id))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let plain = client.post(&gw.url("/feedback"), &[], &label(&a_id)).await;
    assert_eq!(plain.status, 404, "{}", plain.body);
    for name in ["a", "b"] {
        let m = router.get(name).unwrap().metrics();
        assert_eq!((m.stable.labelled, m.stable.correct), (2, 1), "{name}");
    }
    // Feedback was answered by the gateway: the servers saw one prediction each.
    for b in &backends {
        assert_eq!(b.hits.load(Ordering::SeqCst), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_carry_every_models_series_labelled_by_model() {
    let (gw, _models) = three().await;
    let client = Client::new();
    for _ in 0..3 {
        client.post(&gw.url("/v2/models/a/infer"), &[], "{}").await;
    }
    client
        .post(&gw.url("/models/b/invocations"), &[], "{}")
        .await;
    let text = client.get(&gw.url("/metrics"), &[]).await.body;
    assert_eq!(text, gw.router.prometheus());
    for line in [
        r#"hoist_gateway_requests_total{env="prod",model="a",variant="stable",version="1",class="2xx"} 3"#,
        r#"hoist_gateway_requests_total{env="prod",model="b",variant="candidate",version="2",class="2xx"} 1"#,
        r#"hoist_gateway_requests_total{env="prod",model="c",variant="stable",version="1",class="2xx"} 0"#,
        r#"hoist_gateway_request_duration_seconds_count{env="prod",model="a",variant="stable"} 3"#,
        r#"hoist_gateway_candidate_weight{env="prod",model="b"} 100"#,
        r#"hoist_gateway_candidate_weight{env="prod",model="c"} 50"#,
        r#"hoist_gateway_shadow_rows_total{env="prod",model="a",agreement="agree"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line}\n{text}");
    }
    // Every series names its model; each family's HELP and TYPE come once, its
    // samples together under them (as the text format wants).
    let mut seen = Vec::new();
    let mut current = "";
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let family = rest.split(' ').next().unwrap();
            assert!(!seen.contains(&family), "{family} twice");
            seen.push(family);
            current = family;
        } else if !line.starts_with('#') {
            assert!(line.starts_with(current), "{line} outside {current}");
            assert!(line.contains(",model=\""), "{line}");
        }
    }
    assert_eq!(
        text.matches("# HELP hoist_gateway_requests_total").count(),
        1
    );
    assert_eq!(seen.len(), 9, "{seen:?}");
    // A single model's Gateway keeps its unlabelled-by-model text.
    let single = gw.router.get("a").unwrap().prometheus();
    assert!(single.contains(
        r#"hoist_gateway_requests_total{env="prod",variant="stable",version="1",class="2xx"} 3"#
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_on_one_server_share_its_connections() {
    // Two models packed into one server: one address behind both gateways.
    let server = Backend::start("packed").await;
    let router = Router::new("prod");
    for name in ["a", "b"] {
        let gateway = Gateway::new(config("prod"));
        gateway.set_routes(routes(Some(server.upstream("1")), None, 0));
        router.insert(name, gateway);
    }
    let gw = Served::start(router.clone()).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    for i in 0..20 {
        let path = if i % 2 == 0 {
            "/models/a/invocations"
        } else {
            "/v2/models/b/infer"
        };
        let a = exchange(&mut s, &post(path)).await;
        assert_eq!((a.status, a.body.as_str()), (200, "packed"), "{path}");
    }
    // One client connection, served by one worker, one request at a time: one
    // backend connection serves both models.
    assert_eq!(server.conns.load(Ordering::SeqCst), 1);
    // Removed, b has pools of its own; a keeps the shared connection.
    let b = router.remove("b").unwrap();
    let a = exchange(&mut s, &post("/models/a/invocations")).await;
    assert_eq!(a.status, 200);
    assert_eq!(server.conns.load(Ordering::SeqCst), 1);
    assert_eq!(b.metrics().stable.requests, 10);
    assert_eq!(router.get("a").unwrap().metrics().stable.requests, 11);
}
