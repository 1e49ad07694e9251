//! Many models in one `hoist-server` process (`--model-repository DIR`, `--model
//! NAME=PATH`), against the real binary on 127.0.0.1 with the example models: each
//! model on its own routes (REST and gRPC), 404s naming the models served, the
//! repository extension (index, load, unload) with the admin token rules, load and
//! unload of one model under traffic to another with no failed request, a broken
//! model beside good ones, and metrics by model.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Reference, Server, as_i64, client, model_dir, v2_output, v2_request};
use serde_json::{Value, json};

fn scratch(tag: &str) -> hoist_testkit::Scratch {
    hoist_testkit::Scratch::new(&format!("multi-{tag}"))
}

/// Copies example model `name` (its files) into `to`.
fn copy_model(name: &str, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(model_dir(name)).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    to.to_path_buf()
}

fn repo_args(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = vec![
        "--model-repository".to_string(),
        dir.to_string_lossy().into_owned(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn post(s: &Server, path: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
    let mut req = client().post(s.url(path)).json(body);
    if let Some(t) = token {
        req = req.header("X-Admin-Token", t);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// Checks an OIP answer to rows `0..n` of reference `r`.
fn check_v2(r: &Reference, resp: &Value, n: usize, context: &str) {
    r.check(
        0,
        &as_i64(&v2_output(resp, "label")),
        &v2_output(resp, "probabilities"),
        context,
    );
    assert_eq!(v2_output(resp, "label").len(), n, "{context}");
}

/// The value of the one series starting with `prefix` (labels included).
fn series(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn a_repository_serves_each_model_on_its_own_routes() {
    let dir = scratch("repo");
    let repo = dir.join("models");
    copy_model("breast_cancer_lr", &repo.join("bc_lr"));
    copy_model("breast_cancer_gbt", &repo.join("bc_gbt"));
    copy_model("digits_mlp", &repo.join("digits"));
    // A file beside the packages is not a model.
    std::fs::write(repo.join("README"), "not a model").unwrap();
    let rf = model_dir("breast_cancer_rf");
    let s = Server::start_args(
        &repo_args(
            &repo,
            &[
                "--model",
                &format!("rf={}", rf.display()),
                "--grpc-port",
                "0",
            ],
        ),
        "onnxruntime",
        &[],
    );

    // Each model answers on its own OIP route, as its example's reference says.
    for (name, example) in [
        ("bc_lr", "breast_cancer_lr"),
        ("bc_gbt", "breast_cancer_gbt"),
        ("digits", "digits_mlp"),
        ("rf", "breast_cancer_rf"),
    ] {
        let r = Reference::load(example);
        let (status, resp) =
            s.post_json(&format!("/v2/models/{name}/infer"), &v2_request(&r, 0..3));
        assert_eq!(status, 200, "{name}: {resp}");
        assert_eq!(resp["model_name"], name);
        check_v2(&r, &resp, 3, name);
        let meta: Value = s.get(&format!("/v2/models/{name}")).json().unwrap();
        assert_eq!(meta["name"], name, "{meta}");
        assert_eq!(
            s.get(&format!("/v2/models/{name}/versions/1/ready"))
                .status(),
            200
        );
    }

    // MLflow scoring by name; plain /invocations is ambiguous with four models.
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(model_dir("breast_cancer_lr").join("input_example.json")).unwrap(),
    )
    .unwrap();
    let (status, resp) = s.post_json("/models/bc_lr/invocations", &json!({ "inputs": example }));
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["predictions"]["label"], json!([1, 0]));
    let (status, resp) = s.post_json("/invocations", &json!({ "inputs": example }));
    assert_eq!(status, 404, "{resp}");
    let msg = resp["message"].as_str().unwrap();
    assert!(msg.contains("/models/{name}/invocations"), "{msg}");

    // An unknown model is a 404 naming the models served, on every protocol.
    let (status, resp) = s.post_json(
        "/v2/models/nope/infer",
        &v2_request(&Reference::load("breast_cancer_lr"), 0..1),
    );
    assert_eq!(status, 404, "{resp}");
    let msg = resp["error"].as_str().unwrap();
    for name in ["bc_lr", "bc_gbt", "digits", "rf"] {
        assert!(msg.contains(&format!("'{name}'")), "{msg}");
    }
    let (status, resp) = s.post_json("/models/nope/invocations", &json!({ "inputs": example }));
    assert_eq!(status, 404, "{resp}");
    assert_eq!(resp["error_code"], "RESOURCE_DOES_NOT_EXIST");
    assert_eq!(s.get("/v2/models/nope/ready").status(), 404);

    // The repository index: every model ready, in name order.
    let (status, index) = post(&s, "/v2/repository/index", &json!({}), None);
    assert_eq!(status, 200, "{index}");
    let names: Vec<&str> = index
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bc_gbt", "bc_lr", "digits", "rf"], "{index}");
    for m in index.as_array().unwrap() {
        assert_eq!(m["state"], "READY", "{m}");
        assert_eq!(m["version"], "1", "{m}");
    }
    let meta: Value = s.get("/v2").json().unwrap();
    assert!(
        meta["extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("model_repository")),
        "{meta}"
    );

    // Without an admin token, load and unload are off (404), as /admin/reload is.
    let (status, resp) = post(&s, "/v2/repository/models/bc_lr/unload", &json!({}), None);
    assert_eq!(status, 404, "{resp}");
    assert_eq!(s.get("/v2/models/bc_lr/ready").status(), 200);

    // gRPC routes by model_name the same way.
    let grpc = s.grpc.clone().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use hoist_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
        use hoist_server::grpc::proto::{ModelMetadataRequest, ModelReadyRequest};
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect()
            .await
            .expect("connect to the gRPC port");
        let mut c = GrpcInferenceServiceClient::new(channel);
        for name in ["bc_lr", "digits"] {
            let meta = c
                .model_metadata(ModelMetadataRequest {
                    name: name.into(),
                    version: String::new(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(meta.name, name);
            let ready = c
                .model_ready(ModelReadyRequest {
                    name: name.into(),
                    version: String::new(),
                })
                .await
                .unwrap()
                .into_inner();
            assert!(ready.ready, "{name}");
        }
        let err = c
            .model_metadata(ModelMetadataRequest {
                name: "nope".into(),
                version: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        assert!(err.message().contains("'bc_gbt'"), "{}", err.message());
    });

    // Metrics by model: three OIP inferences each, the MLflow one counted under
    // its model, and the unknown names under model="" (never as a model of their own).
    let metrics = s.get("/metrics").text().unwrap();
    for name in ["bc_gbt", "digits", "rf"] {
        let line = format!(
            "hoist_requests_total{{model=\"{name}\",route=\"/v2/models/:model/infer\",code=\"200\"}} "
        );
        assert_eq!(series(&metrics, &line), Some(1.0), "{line}\n{metrics}");
        assert!(
            metrics.contains(&format!(
                "hoist_model_info{{model=\"{name}\",name=\"{name}\","
            )),
            "{name}: {metrics}"
        );
    }
    assert_eq!(
        series(
            &metrics,
            "hoist_requests_total{model=\"bc_lr\",route=\"/invocations\",code=\"200\"} "
        ),
        Some(1.0),
        "{metrics}"
    );
    // bc_lr's label output counted its own answers: three rows by OIP, two by MLflow.
    let bc_lr_predictions: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("hoist_predictions_total{model=\"bc_lr\","))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(bc_lr_predictions, 5.0, "{metrics}");
    assert_eq!(
        series(
            &metrics,
            "hoist_requests_total{model=\"\",route=\"/v2/models/:model/infer\",code=\"404\"} "
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(!metrics.contains("model=\"nope\""), "{metrics}");
}

#[test]
fn a_broken_model_is_unavailable_with_the_reason_and_the_others_serve() {
    let dir = scratch("broken");
    let repo = dir.join("models");
    copy_model("breast_cancer_lr", &repo.join("good"));
    let broken = repo.join("broken");
    copy_model("breast_cancer_lr", &broken);
    std::fs::write(broken.join("MLmodel"), "flavors: [not, a, mapping\n").unwrap();
    let token = "t0ken";
    let s = Server::start_args(
        &repo_args(&repo, &[]),
        "onnxruntime",
        &[("HOIST_ADMIN_TOKEN", token)],
    );
    assert_eq!(s.get("/v2/health/ready").status(), 200);

    let (status, index) = post(&s, "/v2/repository/index", &json!({}), None);
    assert_eq!(status, 200);
    let row = |index: &Value, name: &str| -> Value {
        index
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not in {index}"))
    };
    let b = row(&index, "broken");
    assert_eq!(b["state"], "UNAVAILABLE", "{b}");
    assert!(b["reason"].as_str().unwrap().contains("MLmodel"), "{b}");
    assert_eq!(row(&index, "good")["state"], "READY");
    let (_, ready) = post(&s, "/v2/repository/index", &json!({"ready": true}), None);
    assert_eq!(ready.as_array().unwrap().len(), 1, "{ready}");

    // The broken model: 404 with its reason; the good one serves.
    let r = Reference::load("breast_cancer_lr");
    let (status, resp) = s.post_json("/v2/models/broken/infer", &v2_request(&r, 0..1));
    assert_eq!(status, 404, "{resp}");
    let msg = resp["error"].as_str().unwrap();
    assert!(
        msg.contains("UNAVAILABLE") && msg.contains("'good'"),
        "{msg}"
    );
    let (status, resp) = s.post_json("/v2/models/good/infer", &v2_request(&r, 0..2));
    assert_eq!(status, 200, "{resp}");
    check_v2(&r, &resp, 2, "good");
    // With one model loaded, plain /invocations is that model.
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(model_dir("breast_cancer_lr").join("input_example.json")).unwrap(),
    )
    .unwrap();
    let (status, resp) = s.post_json("/invocations", &json!({ "inputs": example }));
    assert_eq!(status, 200, "{resp}");

    // Loading it again still fails, with the reason, and changes nothing else.
    let (status, resp) = post(
        &s,
        "/v2/repository/models/broken/load",
        &json!({}),
        Some(token),
    );
    assert_eq!(status, 400, "{resp}");
    assert!(resp["error"].as_str().unwrap().contains("broken"), "{resp}");
    // Fixed on disk, it loads and serves.
    std::fs::copy(
        model_dir("breast_cancer_lr").join("MLmodel"),
        broken.join("MLmodel"),
    )
    .unwrap();
    let (status, resp) = post(
        &s,
        "/v2/repository/models/broken/load",
        &json!({}),
        Some(token),
    );
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["name"], "broken");
    let (status, resp) = s.post_json("/v2/models/broken/infer", &v2_request(&r, 0..2));
    assert_eq!(status, 200, "{resp}");
    check_v2(&r, &resp, 2, "broken, fixed");

    // A model dropped into the repository directory is listed, and loads by name.
    copy_model("digits_mlp", &repo.join("late"));
    let (_, index) = post(&s, "/v2/repository/index", &json!({}), None);
    assert_eq!(row(&index, "late")["state"], "UNAVAILABLE", "{index}");
    let (status, resp) = post(
        &s,
        "/v2/repository/models/late/load",
        &json!({}),
        Some(token),
    );
    assert_eq!(status, 200, "{resp}");
    let d = Reference::load("digits_mlp");
    let (status, resp) = s.post_json("/v2/models/late/infer", &v2_request(&d, 0..1));
    assert_eq!(status, 200, "{resp}");
    // A name the repository does not hold, or one that leaves it, is 404.
    for bad in ["missing", "..", "..%2Fmodels%2Fgood"] {
        let (status, resp) = post(
            &s,
            &format!("/v2/repository/models/{bad}/load"),
            &json!({}),
            Some(token),
        );
        assert_eq!(status, 404, "{bad}: {resp}");
    }
}

#[test]
fn loading_and_unloading_one_model_never_disturbs_traffic_to_another() {
    let dir = scratch("traffic");
    let repo = dir.join("models");
    copy_model("breast_cancer_lr", &repo.join("a"));
    copy_model("breast_cancer_gbt", &repo.join("b"));
    let token = "s3cret";
    let s = Server::start_args(
        &repo_args(&repo, &[]),
        "onnxruntime",
        &[("HOIST_ADMIN_TOKEN", token)],
    );
    let r = Reference::load("breast_cancer_lr");
    let body = v2_request(&r, 0..2);
    let url = s.url("/v2/models/a/infer");
    let stop = AtomicBool::new(false);
    let ok = AtomicU64::new(0);
    let failed = std::sync::Mutex::new(Vec::<String>::new());
    const CYCLES: usize = 8;
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                let c = client();
                while !stop.load(Ordering::Relaxed) {
                    match c.post(&url).json(&body).send() {
                        Ok(resp) if resp.status() == 200 => {
                            let v: Value = resp.json().unwrap();
                            r.check(
                                0,
                                &as_i64(&v2_output(&v, "label")),
                                &v2_output(&v, "probabilities"),
                                "a under traffic",
                            );
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(resp) => failed.lock().unwrap().push(format!(
                            "{}: {}",
                            resp.status(),
                            resp.text().unwrap()
                        )),
                        Err(e) => failed.lock().unwrap().push(e.to_string()),
                    }
                }
            });
        }
        let gbt = Reference::load("breast_cancer_gbt");
        // Token rules: a wrong token is 401 and changes nothing.
        let (status, _) = post(
            &s,
            "/v2/repository/models/b/unload",
            &json!({}),
            Some("wrong"),
        );
        assert_eq!(status, 401);
        assert_eq!(s.get("/v2/models/b/ready").status(), 200);
        for cycle in 0..CYCLES {
            let before = ok.load(Ordering::Relaxed);
            let (status, resp) = post(
                &s,
                "/v2/repository/models/b/unload",
                &json!({"parameters": {"unload_dependents": false}}),
                Some(token),
            );
            assert_eq!(status, 200, "{resp}");
            let (status, resp) = s.post_json("/v2/models/b/infer", &v2_request(&gbt, 0..1));
            assert_eq!(status, 404, "cycle {cycle}: {resp}");
            let (_, index) = post(&s, "/v2/repository/index", &json!({}), None);
            let b = &index.as_array().unwrap()[1];
            assert_eq!(
                (b["name"].as_str(), b["state"].as_str()),
                (Some("b"), Some("UNAVAILABLE"))
            );
            assert_eq!(b["reason"], "unloaded");
            let (status, resp) = post(&s, "/v2/repository/models/b/load", &json!({}), Some(token));
            assert_eq!(status, 200, "{resp}");
            let (status, resp) = s.post_json("/v2/models/b/infer", &v2_request(&gbt, 0..1));
            assert_eq!(status, 200, "cycle {cycle}: {resp}");
            // Traffic to a kept flowing through the cycle.
            hoist_testkit::poll(Duration::from_secs(30), || {
                (ok.load(Ordering::Relaxed) > before).then_some(())
            })
            .expect("requests to a stalled");
        }
        stop.store(true, Ordering::Relaxed);
    });
    let failed = failed.into_inner().unwrap();
    assert!(failed.is_empty(), "requests to a failed: {failed:?}");
    assert!(ok.load(Ordering::Relaxed) >= CYCLES as u64);
    // b's counters survived its unloads: one 200 and one 404 per cycle.
    let metrics = s.get("/metrics").text().unwrap();
    for (code, n) in [(200, CYCLES), (404, CYCLES)] {
        let line = format!(
            "hoist_requests_total{{model=\"b\",route=\"/v2/models/:model/infer\",code=\"{code}\"}} "
        );
        assert_eq!(series(&metrics, &line), Some(n as f64), "{line}\n{metrics}");
    }
}

#[test]
fn bad_model_flags_are_refused_with_the_reason() {
    let lr = model_dir("breast_cancer_lr");
    let lr = lr.to_string_lossy();
    let dir = scratch("flags");
    let repo = dir.join("models");
    copy_model("breast_cancer_lr", &repo.join("bc"));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--model".into(),
                lr.to_string(),
                "--model".into(),
                lr.to_string(),
            ],
            "each --model is NAME=PATH",
        ),
        (
            vec![
                "--model".into(),
                format!("x={lr}"),
                "--model".into(),
                format!("x={lr}"),
            ],
            "model 'x' is given twice",
        ),
        (
            vec![
                "--model-repository".into(),
                repo.to_string_lossy().into(),
                "--model".into(),
                format!("bc={lr}"),
            ],
            "model 'bc' is given twice",
        ),
        (
            vec![
                "--model-repository".into(),
                dir.join("nowhere").to_string_lossy().into(),
            ],
            "cannot read --model-repository",
        ),
        (
            vec![
                "--model".into(),
                format!("x={lr}"),
                "--name".into(),
                "y".into(),
            ],
            // --name makes the value one path, which does not exist.
            "x=",
        ),
    ];
    for (args, want) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hoist-server"))
            .args(&args)
            .args(["--port", "0", "--runtime", "tract"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
