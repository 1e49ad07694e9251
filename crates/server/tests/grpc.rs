//! The Open Inference Protocol over gRPC (`--grpc-port`), against the real
//! `hoist-server` binary on 127.0.0.1: every RPC, typed and raw contents, answers
//! equal to the REST side's on the same server, hostile requests answered with
//! `INVALID_ARGUMENT` (never a crash), and the calls counted in `/metrics`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::{Reference, model_dir, ort_lib, v2_output, v2_request};
use hoist_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use hoist_server::grpc::proto::model_infer_request::{
    InferInputTensor, InferRequestedOutputTensor,
};
use hoist_server::grpc::proto::{
    InferTensorContents, ModelInferRequest, ModelInferResponse, ModelMetadataRequest,
    ModelReadyRequest, ServerLiveRequest, ServerMetadataRequest, ServerReadyRequest,
};
use tonic::Code;
use tonic::transport::Channel;

const LR: &str = "breast_cancer_lr";

/// A `hoist-server --grpc-port 0` process; killed on drop.
struct GrpcServer {
    child: Child,
    http: String,
    grpc: String,
    log: std::path::PathBuf,
}

impl GrpcServer {
    fn start(runtime: &str, extra: &[&str]) -> GrpcServer {
        let log = std::env::temp_dir().join(format!(
            "hoist-server-grpc-{}-{runtime}.log",
            std::process::id()
        ));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hoist-server"));
        cmd.arg("--model")
            .arg(model_dir(LR))
            .args(["--port", "0", "--grpc-port", "0", "--runtime", runtime])
            .args(extra)
            .env_remove("HOIST_ADMIN_TOKEN")
            .env_remove("HOIST_ADMIN_TOKEN_FILE")
            .env_remove("MODEL_AUTO_REFRESH_SECONDS")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        if runtime != "tract" {
            cmd.arg("--onnxruntime").arg(ort_lib());
        }
        let mut child = cmd.spawn().expect("start hoist-server");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut read = |prefix: &str| {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix(prefix)
                .unwrap_or_else(|| {
                    panic!(
                        "expected {prefix:?}, got {line:?}; stderr: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    )
                })
                .to_string()
        };
        let http = read("listening on ");
        let grpc = read("grpc listening on ");
        let s = GrpcServer {
            child,
            http,
            grpc,
            log,
        };
        let client = common::client();
        let ready = hoist_testkit::poll(std::time::Duration::from_secs(60), || {
            client
                .get(format!("{}/v2/health/ready", s.http))
                .send()
                .is_ok_and(|r| r.status() == 200)
                .then_some(())
        });
        assert!(ready.is_some(), "not ready; stderr: {}", s.stderr());
        s
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(s: &GrpcServer) -> GrpcInferenceServiceClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", s.grpc))
        .unwrap()
        .connect()
        .await
        .expect("connect to the gRPC port");
    GrpcInferenceServiceClient::new(channel).max_decoding_message_size(64 << 20)
}

fn input(
    name: &str,
    dt: &str,
    shape: &[i64],
    contents: Option<InferTensorContents>,
) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: dt.into(),
        shape: shape.to_vec(),
        parameters: Default::default(),
        contents,
    }
}

/// An FP32 request for rows `range` of the reference, raw or typed.
fn lr_request(r: &Reference, range: std::ops::Range<usize>, raw: bool) -> ModelInferRequest {
    let rows = range.len() as i64;
    let xs: Vec<f32> = range
        .flat_map(|i| r.row(i).to_vec())
        .map(|x| x as f32)
        .collect();
    let shape = [rows, r.row_len() as i64];
    if raw {
        ModelInferRequest {
            model_name: LR.into(),
            id: "raw-1".into(),
            inputs: vec![input(&r.input_name, "FP32", &shape, None)],
            raw_input_contents: vec![
                xs.iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect::<Vec<u8>>()
                    .into(),
            ],
            ..Default::default()
        }
    } else {
        ModelInferRequest {
            model_name: LR.into(),
            id: "typed-1".into(),
            inputs: vec![input(
                &r.input_name,
                "FP32",
                &shape,
                Some(InferTensorContents {
                    fp32_contents: xs,
                    ..Default::default()
                }),
            )],
            ..Default::default()
        }
    }
}

/// (labels, probabilities) of a response, raw or typed.
fn lr_answer(resp: &ModelInferResponse) -> (Vec<i64>, Vec<f64>) {
    let pos = |n: &str| resp.outputs.iter().position(|o| o.name == n).unwrap();
    let (l, p) = (pos("label"), pos("probabilities"));
    if resp.raw_output_contents.is_empty() {
        let c = |i: usize| resp.outputs[i].contents.clone().unwrap();
        (
            c(l).int64_contents,
            c(p).fp32_contents.iter().map(|&x| f64::from(x)).collect(),
        )
    } else {
        assert_eq!(resp.raw_output_contents.len(), resp.outputs.len());
        assert!(resp.outputs.iter().all(|o| o.contents.is_none()));
        let raw = |i: usize| resp.raw_output_contents[i].clone();
        (
            raw(l)
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            raw(p)
                .chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
                .collect(),
        )
    }
}

#[test]
fn every_rpc_answers_as_the_rest_side_does() {
    let s = GrpcServer::start("onnxruntime", &[]);
    let r = Reference::load(LR);
    let rest_md: serde_json::Value = common::client()
        .get(format!("{}/v2/models/{LR}", s.http))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let rows = 0..r.rows().min(20);
    let (status, rest) = {
        let resp = common::client()
            .post(format!("{}/v2/models/{LR}/infer", s.http))
            .json(&v2_request(&r, rows.clone()))
            .send()
            .unwrap();
        (
            resp.status().as_u16(),
            resp.json::<serde_json::Value>().unwrap(),
        )
    };
    assert_eq!(status, 200, "{rest}");
    let rest_labels: Vec<i64> = v2_output(&rest, "label")
        .iter()
        .map(|&x| x as i64)
        .collect();
    let rest_probs = v2_output(&rest, "probabilities");

    runtime().block_on(async {
        let mut c = connect(&s).await;
        assert!(c.server_live(ServerLiveRequest {}).await.unwrap().into_inner().live);
        assert!(c.server_ready(ServerReadyRequest {}).await.unwrap().into_inner().ready);
        let ready = |name: &str, version: &str| ModelReadyRequest {
            name: name.into(),
            version: version.into(),
        };
        assert!(c.model_ready(ready(LR, "")).await.unwrap().into_inner().ready);
        assert!(c.model_ready(ready(LR, "1")).await.unwrap().into_inner().ready);
        assert!(!c.model_ready(ready("nope", "")).await.unwrap().into_inner().ready);
        assert!(!c.model_ready(ready(LR, "99")).await.unwrap().into_inner().ready);

        let md = c.server_metadata(ServerMetadataRequest {}).await.unwrap().into_inner();
        assert_eq!(md.name, "hoist-server");
        assert!(!md.version.is_empty());

        let md = c
            .model_metadata(ModelMetadataRequest {
                name: LR.into(),
                version: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(md.name, LR);
        assert_eq!(serde_json::json!(md.versions), rest_md["versions"]);
        assert_eq!(md.platform, rest_md["platform"]);
        let io = |t: &[hoist_server::grpc::proto::model_metadata_response::TensorMetadata]| {
            t.iter()
                .map(|t| serde_json::json!({"name": t.name, "datatype": t.datatype, "shape": t.shape}))
                .collect::<Vec<_>>()
        };
        let strip = |v: &serde_json::Value| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|t| serde_json::json!({"name": t["name"], "datatype": t["datatype"], "shape": t["shape"]}))
                .collect::<Vec<_>>()
        };
        assert_eq!(io(&md.inputs), strip(&rest_md["inputs"]));
        assert_eq!(io(&md.outputs), strip(&rest_md["outputs"]));
        let err = c
            .model_metadata(ModelMetadataRequest {
                name: "nope".into(),
                version: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");

        for raw in [false, true] {
            let resp = c
                .model_infer(lr_request(&r, rows.clone(), raw))
                .await
                .unwrap_or_else(|e| panic!("raw={raw}: {e:?}"))
                .into_inner();
            assert_eq!(resp.model_name, LR);
            assert_eq!(resp.model_version, "1");
            assert_eq!(resp.id, if raw { "raw-1" } else { "typed-1" });
            let (labels, probs) = lr_answer(&resp);
            assert_eq!(labels, rest_labels, "raw={raw}: labels differ from REST's");
            // REST writes each FP32 in its shortest decimal form: equal as FP32.
            let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
            assert_eq!(
                f32s(&probs),
                f32s(&rest_probs),
                "raw={raw}: probabilities differ from REST's"
            );
            r.check(0, &labels, &probs, &format!("gRPC raw={raw}"));
        }

        // Only the outputs asked for, in the order asked.
        let mut req = lr_request(&r, 0..3, true);
        req.outputs = vec![InferRequestedOutputTensor {
            name: "probabilities".into(),
            parameters: Default::default(),
        }];
        let resp = c.model_infer(req).await.unwrap().into_inner();
        assert_eq!(resp.outputs.len(), 1);
        assert_eq!(resp.outputs[0].name, "probabilities");
        assert_eq!(resp.outputs[0].shape, vec![3, 2]);
        assert_eq!(resp.raw_output_contents[0].len(), 3 * 2 * 4);
    });

    let metrics = common::client()
        .get(format!("{}/metrics", s.http))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("hoist_requests_total{")
                && l.contains("route=\"/inference.GRPCInferenceService/ModelInfer\"")
                && l.contains("code=\"200\"")
                && l.ends_with(" 3")),
        "three gRPC inferences should be counted:\n{metrics}"
    );
}

#[test]
fn hostile_requests_are_invalid_arguments_and_the_server_lives_on() {
    let s = GrpcServer::start("tract", &["--max-body-bytes", "100000"]);
    let r = Reference::load(LR);
    runtime().block_on(async {
        let mut c = connect(&s).await;
        let ok = lr_request(&r, 0..2, true);
        let with = |f: &dyn Fn(&mut ModelInferRequest)| {
            let mut req = ok.clone();
            f(&mut req);
            req
        };
        let cases: Vec<(&str, ModelInferRequest, Code, &str)> = vec![
            (
                "unknown model",
                with(&|q| q.model_name = "nope".into()),
                Code::NotFound,
                "not found",
            ),
            (
                "unknown version",
                with(&|q| q.model_version = "7".into()),
                Code::NotFound,
                "version '7'",
            ),
            (
                "no inputs",
                with(&|q| {
                    q.inputs.clear();
                    q.raw_input_contents.clear();
                }),
                Code::InvalidArgument,
                "input",
            ),
            (
                "wrong input name",
                with(&|q| q.inputs[0].name = "x".into()),
                Code::InvalidArgument,
                "'x'",
            ),
            (
                "wrong datatype",
                with(&|q| q.inputs[0].datatype = "INT64".into()),
                Code::InvalidArgument,
                "INT64",
            ),
            (
                "unknown datatype",
                with(&|q| q.inputs[0].datatype = "FP8".into()),
                Code::InvalidArgument,
                "unsupported datatype",
            ),
            (
                "too few features",
                with(&|q| {
                    q.inputs[0].shape = vec![4, 15];
                }),
                Code::InvalidArgument,
                "30",
            ),
            (
                "raw size mismatch",
                with(&|q| q.inputs[0].shape = vec![3, 30]),
                Code::InvalidArgument,
                "needs 360 bytes",
            ),
            (
                "overflowing shape",
                with(&|q| q.inputs[0].shape = vec![i64::MAX, 4]),
                Code::InvalidArgument,
                "overflows",
            ),
            (
                "negative dimension",
                with(&|q| q.inputs[0].shape = vec![-2, 30]),
                Code::InvalidArgument,
                "negative",
            ),
            (
                "empty batch",
                with(&|q| {
                    q.inputs[0].shape = vec![0, 30];
                    q.raw_input_contents = vec![Vec::new().into()];
                }),
                Code::InvalidArgument,
                "empty",
            ),
            (
                "raw and typed",
                with(&|q| {
                    q.inputs[0].contents = Some(InferTensorContents {
                        fp32_contents: vec![1.0],
                        ..Default::default()
                    })
                }),
                Code::InvalidArgument,
                "one or the other",
            ),
            (
                "raw count",
                with(&|q| q.raw_input_contents.push(vec![0u8; 4].into())),
                Code::InvalidArgument,
                "one per input",
            ),
            (
                "typed, wrong field",
                with(&|q| {
                    q.raw_input_contents.clear();
                    q.inputs[0].contents = Some(InferTensorContents {
                        int64_contents: vec![1; 60],
                        ..Default::default()
                    });
                }),
                Code::InvalidArgument,
                "fp32_contents",
            ),
            (
                "typed, too few",
                with(&|q| {
                    q.raw_input_contents.clear();
                    q.inputs[0].contents = Some(InferTensorContents {
                        fp32_contents: vec![1.0; 59],
                        ..Default::default()
                    });
                }),
                Code::InvalidArgument,
                "60 elements",
            ),
            (
                "typed, none",
                with(&|q| q.raw_input_contents.clear()),
                Code::InvalidArgument,
                "60 elements",
            ),
            (
                "unknown output",
                with(&|q| {
                    q.outputs = vec![InferRequestedOutputTensor {
                        name: "nope".into(),
                        parameters: Default::default(),
                    }]
                }),
                Code::InvalidArgument,
                "unknown output 'nope'",
            ),
            (
                "over the size limit",
                with(&|q| q.raw_input_contents[0] = vec![0u8; 200_000].into()),
                Code::OutOfRange,
                "",
            ),
        ];
        for (what, req, code, msg) in cases {
            let err = c.model_infer(req).await.map(|_| ()).expect_err(what);
            // tonic answers a message over the limit with OUT_OF_RANGE or
            // RESOURCE_EXHAUSTED depending on the side that notices.
            if code == Code::OutOfRange {
                assert!(
                    matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
                    "{what}: {err:?}"
                );
                continue;
            }
            assert_eq!(err.code(), code, "{what}: {err:?}");
            assert!(
                err.message().contains(msg),
                "{what}: {:?} should say {msg:?}",
                err.message()
            );
        }
        // Still alive and still right.
        let resp = c.model_infer(ok).await.unwrap().into_inner();
        let (labels, probs) = lr_answer(&resp);
        r.check(0, &labels, &probs, "after the hostile requests");
    });
    assert!(!s.stderr().contains("panicked"), "{}", s.stderr());
}
