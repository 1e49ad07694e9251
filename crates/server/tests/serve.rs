//! The real `hoist-server` binary on 127.0.0.1, with the real example models, on both
//! runtimes, checked against the outputs ONNX Runtime's Python package gave.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use serde_json::{Value, json};

const RUNTIMES: &[&str] = &["onnxruntime", "tract"];

#[test]
fn every_example_model_matches_the_reference_on_both_runtimes() {
    for runtime in RUNTIMES {
        for model in MODELS {
            let r = Reference::load(model);
            let s = Server::start(&model_dir(model), runtime, &["--max-batch-size", "1"], &[]);
            // The whole reference batch in one request, then row by row.
            let (status, resp) = s.post_json(
                &format!("/v2/models/{model}/infer"),
                &v2_request(&r, 0..r.rows()),
            );
            assert_eq!(status, 200, "{model} on {runtime}: {resp}");
            let ctx = format!("{model} on {runtime}, batch");
            r.check(
                0,
                &as_i64(&v2_output(&resp, "label")),
                &v2_output(&resp, "probabilities"),
                &ctx,
            );
            for i in 0..r.rows().min(5) {
                let (status, resp) = s.post_json(
                    &format!("/v2/models/{model}/infer"),
                    &v2_request(&r, i..i + 1),
                );
                assert_eq!(status, 200, "{resp}");
                let ctx = format!("{model} on {runtime}, row {i}");
                r.check(
                    i,
                    &as_i64(&v2_output(&resp, "label")),
                    &v2_output(&resp, "probabilities"),
                    &ctx,
                );
            }
            // The runtime in use is named in metadata and metrics.
            let meta: Value = s.get(&format!("/v2/models/{model}")).json().unwrap();
            assert_eq!(meta["parameters"]["runtime"], *runtime, "{meta}");
            let metrics = s.get("/metrics").text().unwrap();
            assert!(
                metrics.contains(&format!("runtime=\"{runtime}\"")),
                "metrics do not name {runtime}:\n{metrics}"
            );
        }
    }
}

#[test]
fn open_inference_protocol_metadata_and_health() {
    let s = Server::start(&model_dir("breast_cancer_lr"), "onnxruntime", &[], &[]);
    let server: Value = s.get("/v2").json().unwrap();
    assert_eq!(server["name"], "hoist-server");
    assert!(
        server["extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("binary_tensor_data"))
    );
    assert_eq!(s.get("/v2/health/live").status(), 200);
    assert_eq!(s.get("/v2/health/ready").status(), 200);
    assert_eq!(s.get("/v2/models/breast_cancer_lr/ready").status(), 200);
    assert_eq!(
        s.get("/v2/models/breast_cancer_lr/versions/1/ready")
            .status(),
        200
    );
    let meta: Value = s
        .get("/v2/models/breast_cancer_lr/versions/1")
        .json()
        .unwrap();
    assert_eq!(meta["name"], "breast_cancer_lr");
    assert_eq!(meta["versions"], json!(["1"]));
    assert_eq!(meta["platform"], "onnxruntime_onnx");
    assert_eq!(
        meta["inputs"],
        json!([{"name": "input", "datatype": "FP32", "shape": [-1, 30]}])
    );
    assert_eq!(
        meta["outputs"][0],
        json!({"name": "label", "datatype": "INT64", "shape": [-1]})
    );
    assert!(
        meta["parameters"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    let health: Value = s.get("/health").json().unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["model_loaded"], true);
    assert_eq!(health["version"], "1");
    assert!(health["timestamp"].as_str().unwrap().starts_with("20"));

    // Unknown model or version: 404 with an error message.
    let r = s.get("/v2/models/nope");
    assert_eq!(r.status(), 404);
    let body: Value = r.json().unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("'nope' not found"),
        "{body}"
    );
    assert_eq!(
        s.get("/v2/models/breast_cancer_lr/versions/7").status(),
        404
    );
    let (status, body) = s.post_json("/v2/models/nope/infer", &json!({"inputs": []}));
    assert_eq!(status, 404, "{body}");
    assert_eq!(s.get("/no/such/route").status(), 404);
}

#[test]
fn binary_tensor_extension_round_trips() {
    let r = Reference::load("breast_cancer_rf");
    let s = Server::start(&model_dir("breast_cancer_rf"), "onnxruntime", &[], &[]);
    let rows = 4;
    let mut raw = Vec::new();
    for i in 0..rows {
        for &x in r.row(i) {
            raw.extend_from_slice(&(x as f32).to_le_bytes());
        }
    }
    let header = json!({
        "inputs": [{"name": "input", "shape": [rows, 30], "datatype": "FP32",
                    "parameters": {"binary_data_size": raw.len()}}],
        "outputs": [{"name": "label", "parameters": {"binary_data": true}},
                    {"name": "probabilities", "parameters": {"binary_data": false}}]
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&raw);
    let resp = client()
        .post(s.url("/v2/models/breast_cancer_rf/infer"))
        .header("Inference-Header-Content-Length", header.len())
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let json_len: usize = resp.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = resp.bytes().unwrap();
    let head: Value = serde_json::from_slice(&bytes[..json_len]).unwrap();
    let label_meta = &head["outputs"][0];
    assert_eq!(label_meta["name"], "label");
    assert_eq!(label_meta["parameters"]["binary_data_size"], rows * 8);
    let labels: Vec<i64> = bytes[json_len..]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let probs = v2_output(&head, "probabilities");
    r.check(0, &labels, &probs, "binary mode");
}

#[test]
fn mlflow_scoring_protocol_bodies() {
    let r = Reference::load("breast_cancer_lr");
    let s = Server::start(&model_dir("breast_cancer_lr"), "tract", &[], &[]);
    let rows: Vec<Vec<f64>> = (0..3).map(|i| r.row(i).to_vec()).collect();
    let check_tensor_style = |resp: &Value, ctx: &str| {
        let labels: Vec<i64> = resp["predictions"]["label"]
            .as_array()
            .unwrap_or_else(|| panic!("{ctx}: {resp}"))
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        let probs: Vec<f64> = resp["predictions"]["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
            .collect();
        r.check(0, &labels, &probs, ctx);
    };
    for body in [
        json!({"inputs": rows}),
        json!({"instances": rows}),
        json!({"inputs": {"input": rows}}),
    ] {
        let (status, resp) = s.post_json("/invocations", &body);
        assert_eq!(status, 200, "{resp}");
        check_tensor_style(&resp, &body.to_string()[..20]);
    }
    // Dataframes: 30 scalar columns, or MLflow's form for a tensor signature (one
    // column named after the input, a whole row per cell). Answers as MLflow gives them.
    let columns: Vec<String> = (0..30).map(|i| format!("f{i}")).collect();
    let records: Vec<Value> = rows
        .iter()
        .map(|row| {
            Value::Object(
                columns
                    .iter()
                    .cloned()
                    .zip(row.iter().map(|x| json!(x)))
                    .collect(),
            )
        })
        .collect();
    let named_records: Vec<Value> = rows.iter().map(|row| json!({"input": row})).collect();
    for body in [
        json!({"dataframe_split": {"columns": columns, "data": rows}}),
        json!({"dataframe_split": {"columns": ["input"], "data": rows.iter().map(|r| json!([r])).collect::<Vec<_>>()}}),
        json!({"dataframe_records": records}),
        json!({"dataframe_records": named_records}),
    ] {
        let (status, resp) = s.post_json("/invocations", &body);
        assert_eq!(status, 200, "{resp}");
        check_tensor_style(&resp, &body.to_string()[..30]);
    }
    // CSV with a header line.
    let mut csv = columns.join(",") + "\n";
    for row in &rows {
        csv += &row
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",");
        csv += "\n";
    }
    let resp = client()
        .post(s.url("/invocations"))
        .header("Content-Type", "text/csv")
        .body(csv)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().unwrap();
    check_tensor_style(&v, "csv");

    assert_eq!(s.get("/ping").status(), 200);
    assert_eq!(s.get("/version").status(), 200);

    // Bad bodies: 400 with MLflow's error shape.
    for bad in [
        json!({"nope": 1}),
        json!({"inputs": [[1, 2]]}),
        json!({"inputs": rows, "instances": rows}),
        json!([1]),
    ] {
        let (status, resp) = s.post_json("/invocations", &bad);
        assert_eq!(status, 400, "{bad}: {resp}");
        assert_eq!(resp["error_code"], "BAD_REQUEST", "{resp}");
        assert!(!resp["message"].as_str().unwrap().is_empty());
    }
    let resp = client()
        .post(s.url("/invocations"))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client()
        .post(s.url("/invocations"))
        .header("Content-Type", "application/xml")
        .body("<x/>")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 415);
}

#[test]
fn bad_input_gets_clear_4xx_and_never_a_500() {
    let s = Server::start(
        &model_dir("breast_cancer_lr"),
        "onnxruntime",
        &["--max-body-bytes", "4096"],
        &[],
    );
    let infer = "/v2/models/breast_cancer_lr/infer";
    let cases = [
        (
            json!({"inputs": [{"name": "input", "shape": [1, 29], "datatype": "FP32", "data": vec![0.0; 29]}]}),
            "[-1, 30]",
        ),
        (
            json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP64", "data": vec![0.0; 30]}]}),
            "FP32",
        ),
        (
            json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": vec![0.0; 29]}]}),
            "input",
        ),
        (
            json!({"inputs": [{"name": "other", "shape": [1, 30], "datatype": "FP32", "data": vec![0.0; 30]}]}),
            "unknown input 'other'",
        ),
        (json!({"inputs": []}), "missing input 'input'"),
        (
            json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP17", "data": vec![0.0; 30]}]}),
            "FP17",
        ),
        (
            json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": vec!["x"; 30]}]}),
            "element 0",
        ),
        (
            json!({"inputs": [{"name": "input", "shape": [0, 30], "datatype": "FP32", "data": []}]}),
            "empty",
        ),
        (
            json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": vec![0.0; 30]}],
                "outputs": [{"name": "nope"}]}),
            "unknown output 'nope'",
        ),
    ];
    for (body, needle) in cases {
        let (status, resp) = s.post_json(infer, &body);
        assert_eq!(status, 400, "{body}: {resp}");
        let msg = resp["error"].as_str().unwrap();
        assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    }
    // The wrong-shape message names the input and the expected shape.
    let (_, resp) = s.post_json(infer, &cases_shape_body());
    let msg = resp["error"].as_str().unwrap();
    assert!(
        msg.contains("input 'input'") && msg.contains("[-1, 30]"),
        "{msg}"
    );

    let big = "x".repeat(10_000);
    let resp = client()
        .post(s.url(infer))
        .body(big.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 413);
    let v: Value = resp.json().unwrap();
    assert!(v["error"].as_str().unwrap().contains("4096"), "{v}");
    let resp = client()
        .post(s.url("/invocations"))
        .body(big)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 413);

    let resp = client().post(s.url(infer)).body("garbage").send().unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client()
        .post(s.url(infer))
        .header("Inference-Header-Content-Length", "999999")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);

    // After all that, the server still serves, and counted the 400s.
    let (status, _) = s.post_json(
        infer,
        &v2_request(&Reference::load("breast_cancer_lr"), 0..1),
    );
    assert_eq!(status, 200);
    let metrics = s.get("/metrics").text().unwrap();
    // The 400s are counted, and no 500 ever was.
    assert!(requests_with_code(&metrics, 400) > 0, "{metrics}");
    assert_eq!(requests_with_code(&metrics, 500), 0, "{metrics}");
}

fn cases_shape_body() -> Value {
    json!({"inputs": [{"name": "input", "shape": [2, 15], "datatype": "FP32", "data": vec![0.0; 30]}]})
}

#[test]
fn predict_image_classifies_and_refuses_bad_images() {
    let dir = model_dir("image_cnn");
    let refs: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference_images.json")).unwrap())
            .unwrap();
    for runtime in RUNTIMES {
        let s = Server::start(&dir, runtime, &[], &[]);
        for r in &refs {
            let file = r["file"].as_str().unwrap();
            let bytes = std::fs::read(dir.join("images").join(file)).unwrap();
            let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
            let (status, resp) = s.post_json("/predict-image", &json!({"image": b64}));
            assert_eq!(status, 200, "{file}: {resp}");
            assert_eq!(resp["label"], r["label"], "{file} on {runtime}: {resp}");
            assert_eq!(resp["class"], r["class"], "{file} on {runtime}: {resp}");
        }
        // A JPEG of another size is resized to the model's 64x64.
        let mut img = image::RgbImage::new(100, 80);
        img.pixels_mut()
            .for_each(|p| *p = image::Rgb([10, 20, 230]));
        let mut jpeg = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&jpeg);
        let (status, resp) = s.post_json(
            "/predict-image",
            &json!({"image": format!("data:image/jpeg;base64,{b64}")}),
        );
        assert_eq!(status, 200, "{resp}");
        assert_eq!(resp["class"], "blue", "{resp}");

        let (status, resp) = s.post_json("/predict-image", &json!({"image": ""}));
        assert_eq!(
            (status, resp["detail"].as_str().unwrap()),
            (400, "Image data is empty or missing")
        );
        let (status, _) = s.post_json("/predict-image", &json!({}));
        assert_eq!(status, 400);
        let (status, resp) = s.post_json("/predict-image", &json!({"image": "invalid!!!"}));
        assert_eq!(status, 400);
        assert!(
            resp["error"].as_str().unwrap().contains("Invalid base64"),
            "{resp}"
        );
        let not_an_image =
            base64::engine::general_purpose::STANDARD.encode(b"hello, not a picture");
        let (status, resp) = s.post_json("/predict-image", &json!({"image": not_an_image}));
        assert_eq!(status, 400);
        assert!(
            resp["error"].as_str().unwrap().contains("Could not decode"),
            "{resp}"
        );
    }
    // A tabular model has no image input: 400, not 500.
    let s = Server::start(&model_dir("breast_cancer_lr"), "tract", &[], &[]);
    let png = std::fs::read(dir.join("images/red.png")).unwrap();
    let (status, resp) = s.post_json(
        "/predict-image",
        &json!({"image": base64::engine::general_purpose::STANDARD.encode(png)}),
    );
    assert_eq!(status, 400, "{resp}");
}

#[test]
fn concurrent_single_rows_are_batched_and_each_gets_its_own_answer() {
    let r = Reference::load("breast_cancer_gbt");
    let s = Server::start(
        &model_dir("breast_cancer_gbt"),
        "onnxruntime",
        &[
            "--max-batch-size",
            "16",
            "--max-batch-delay-us",
            "5000",
            "--workers",
            "1",
        ],
        &[],
    );
    let url = s.url("/v2/models/breast_cancer_gbt/infer");
    std::thread::scope(|scope| {
        for t in 0..r.rows() {
            let (url, r) = (&url, &r);
            scope.spawn(move || {
                for _ in 0..5 {
                    let resp: Value = client()
                        .post(url)
                        .json(&v2_request(r, t..t + 1))
                        .send()
                        .unwrap()
                        .json()
                        .unwrap();
                    r.check(
                        t,
                        &as_i64(&v2_output(&resp, "label")),
                        &v2_output(&resp, "probabilities"),
                        "batched",
                    );
                }
            });
        }
    });
    let metrics = s.get("/metrics").text().unwrap();
    let count = |needle: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(needle))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap()
            .parse()
            .unwrap()
    };
    let calls = count("hoist_batch_size_count{");
    let single = count("hoist_batch_size_bucket{model=\"breast_cancer_gbt\",le=\"1\"}");
    assert!(
        single < calls,
        "no model call batched more than one row:\n{metrics}"
    );
}

#[test]
fn overload_answers_503_with_retry_after() {
    let r = Reference::load("image_cnn");
    let s = Server::start(
        &model_dir("image_cnn"),
        "tract",
        &[
            "--workers",
            "1",
            "--queue-size",
            "1",
            "--max-batch-size",
            "1",
        ],
        &[],
    );
    // Each request carries 256 images (binary, so parsing is cheap): slow enough on
    // one worker that a one-deep queue overflows.
    let (header, body) = cnn_binary_request(&r, 256);
    let url = s.url("/v2/models/image_cnn/infer");
    let results: Vec<(u16, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|_| {
                let (url, body, header) = (&url, &body, &header);
                scope.spawn(move || {
                    let resp = client()
                        .post(url)
                        .header("Inference-Header-Content-Length", *header)
                        .body(body.clone())
                        .send()
                        .unwrap();
                    let retry = resp
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_string());
                    (resp.status().as_u16(), retry)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        results.iter().all(|(s, _)| *s == 200 || *s == 503),
        "{results:?}"
    );
    assert!(results.iter().any(|(s, _)| *s == 200), "{results:?}");
    let rejected: Vec<_> = results.iter().filter(|(s, _)| *s == 503).collect();
    assert!(
        !rejected.is_empty(),
        "12 concurrent slow requests on a one-deep queue were all accepted"
    );
    assert!(
        rejected.iter().all(|(_, retry)| retry.is_some()),
        "{results:?}"
    );
    let metrics = s.get("/metrics").text().unwrap();
    assert!(
        metrics.contains(&format!(
            "hoist_queue_rejected_total{{model=\"image_cnn\"}} {}",
            rejected.len()
        )),
        "{metrics}"
    );
}

/// A binary-mode request with `n` copies of the first reference image.
fn cnn_binary_request(r: &Reference, n: usize) -> (usize, Vec<u8>) {
    let mut raw = Vec::with_capacity(n * r.row_len() * 4);
    for _ in 0..n {
        for &x in r.row(0) {
            raw.extend_from_slice(&(x as f32).to_le_bytes());
        }
    }
    let header = json!({"inputs": [{"name": "image", "shape": [n, 3, 64, 64], "datatype": "FP32",
                                    "parameters": {"binary_data_size": raw.len()}}]})
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&raw);
    (header.len(), body)
}

#[test]
fn admin_reload_is_off_without_a_token_and_guarded_with_one() {
    let s = Server::start(&model_dir("breast_cancer_lr"), "onnxruntime", &[], &[]);
    let resp = client().post(s.url("/admin/reload")).send().unwrap();
    assert_eq!(resp.status(), 404);
    drop(s);

    let dir = tempdir("admin");
    let token_file = dir.join("tokens");
    std::fs::write(&token_file, "first-token\n").unwrap();
    let model = copy_model("breast_cancer_lr", &dir.join("model"));
    let s = Server::start(
        &model,
        "onnxruntime",
        &["--name", "bc"],
        &[("HOIST_ADMIN_TOKEN_FILE", token_file.to_str().unwrap())],
    );
    let reload = |token: Option<&str>, body: Option<Value>| {
        let mut req = client().post(s.url("/admin/reload"));
        if let Some(t) = token {
            req = req.header("X-Admin-Token", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().unwrap();
        (resp.status().as_u16(), resp.json::<Value>().unwrap())
    };
    assert_eq!(reload(None, None).0, 401);
    assert_eq!(reload(Some("wrong"), None).0, 401);
    let (status, body) = reload(Some("first-token"), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "reloaded");

    // Rotation without restart: the file now holds only the new token.
    std::fs::write(&token_file, "second-token\n").unwrap();
    bump_mtime(&token_file);
    assert_eq!(reload(Some("first-token"), None).0, 401);
    assert_eq!(reload(Some("second-token"), None).0, 200);

    // A broken model: the reload fails with a reason, the old model keeps serving.
    let (status, body) = reload(
        Some("second-token"),
        Some(json!({"path": dir.join("missing")})),
    );
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("still serving"),
        "{body}"
    );
    let r = Reference::load("breast_cancer_lr");
    let (status, _) = s.post_json("/v2/models/bc/infer", &v2_request(&r, 0..1));
    assert_eq!(status, 200);

    // Switching to another version of the model by path.
    let v2 = copy_model("breast_cancer_rf", &dir.join("model-v2"));
    let (status, body) = reload(
        Some("second-token"),
        Some(json!({"path": v2, "version": "2"})),
    );
    assert_eq!(status, 200, "{body}");
    let meta: Value = s.get("/v2/models/bc/versions/2").json().unwrap();
    assert_eq!(meta["versions"], json!(["2"]));
    let metrics = s.get("/metrics").text().unwrap();
    assert!(
        metrics.contains("hoist_model_reloads_total{model=\"bc\",result=\"failure\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("version=\"2\""), "{metrics}");
    // Tokens are never logged.
    assert!(!s.stderr().contains("second-token"));
}

#[test]
fn requests_in_flight_during_reloads_all_succeed() {
    let dir = tempdir("swap");
    let a = copy_model("breast_cancer_lr", &dir.join("a"));
    let b = copy_model("breast_cancer_gbt", &dir.join("b"));
    let s = Server::start(
        &a,
        "onnxruntime",
        &["--name", "bc"],
        &[("HOIST_ADMIN_TOKEN", "t0k3n")],
    );
    let r = Reference::load("breast_cancer_lr");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let url = s.url("/v2/models/bc/infer");
    let (ok, failed) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (url, r, stop) = (&url, &r, &stop);
                scope.spawn(move || {
                    let c = client();
                    let (mut ok, mut failed) = (0, 0);
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        match c.post(url).json(&v2_request(r, 0..2)).send() {
                            Ok(resp) if resp.status() == 200 => ok += 1,
                            _ => failed += 1,
                        }
                    }
                    (ok, failed)
                })
            })
            .collect();
        for i in 0..6 {
            let path = if i % 2 == 0 { &b } else { &a };
            let resp = client()
                .post(s.url("/admin/reload"))
                .header("X-Admin-Token", "t0k3n")
                .json(&json!({"path": path}))
                .send()
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .fold((0, 0), |acc, x| (acc.0 + x.0, acc.1 + x.1))
    });
    assert!(ok > 0);
    assert_eq!(
        failed, 0,
        "{failed} requests failed during 6 reloads ({ok} succeeded)"
    );
}

#[test]
fn auto_refresh_picks_up_a_new_model_and_survives_a_broken_one() {
    let dir = tempdir("refresh");
    let path = copy_model("breast_cancer_lr", &dir.join("m"));
    let s = Server::start(
        &path,
        "onnxruntime",
        &["--name", "bc"],
        &[("MODEL_AUTO_REFRESH_SECONDS", "1")],
    );
    let digest = |s: &Server| -> String {
        let meta: Value = s.get("/v2/models/bc").json().unwrap();
        meta["parameters"]["digest"].as_str().unwrap().to_string()
    };
    let first = digest(&s);
    // A broken model file: the old one keeps serving.
    std::fs::write(path.join("model.onnx"), b"not an onnx file").unwrap();
    wait_for(|| {
        s.get("/metrics")
            .text()
            .unwrap()
            .contains("hoist_model_reloads_total{model=\"bc\",result=\"failure\"} 1")
    });
    assert_eq!(digest(&s), first);
    let r = Reference::load("breast_cancer_lr");
    assert_eq!(
        s.post_json("/v2/models/bc/infer", &v2_request(&r, 0..1)).0,
        200
    );
    // A good new model: swapped in.
    std::fs::copy(
        model_dir("breast_cancer_rf").join("model.onnx"),
        path.join("model.onnx"),
    )
    .unwrap();
    wait_for(|| digest(&s) != first);
    let r = Reference::load("breast_cancer_rf");
    let (_, resp) = s.post_json("/v2/models/bc/infer", &v2_request(&r, 0..r.rows()));
    r.check(
        0,
        &as_i64(&v2_output(&resp, "label")),
        &v2_output(&resp, "probabilities"),
        "after refresh",
    );
}

#[test]
fn sigterm_lets_the_request_in_flight_finish() {
    let r = Reference::load("image_cnn");
    let s = Server::start(
        &model_dir("image_cnn"),
        "tract",
        &["--max-batch-size", "1"],
        &[],
    );
    let (header, body) = cnn_binary_request(&r, 512);
    let url = s.url("/v2/models/image_cnn/infer");
    let pending = std::thread::spawn(move || {
        client()
            .post(url)
            .header("Inference-Header-Content-Length", header)
            .body(body)
            .send()
            .unwrap()
            .status()
            .as_u16()
    });
    // Wait until the request is being handled (the metrics request itself counts
    // under model="", the inference under its model).
    wait_for(|| {
        let m = s.get("/metrics").text().unwrap();
        m.lines().any(|l| {
            l.starts_with("hoist_requests_in_flight{model=")
                && !l.starts_with("hoist_requests_in_flight{model=\"\"}")
                && !l.ends_with(" 0")
        }) || pending.is_finished()
    });
    let status = s.terminate();
    assert_eq!(pending.join().unwrap(), 200);
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn startup_failures_are_clear() {
    let bin = env!("CARGO_BIN_EXE_hoist-server");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run(&["--model", "/nonexistent/model", "--port", "0"]);
    assert!(!ok && err.contains("does not exist"), "{err}");
    let lr = model_dir("breast_cancer_lr");
    let (ok, err) = run(&[
        "--model",
        lr.to_str().unwrap(),
        "--port",
        "0",
        "--runtime",
        "onnxruntime",
        "--onnxruntime",
        "/nonexistent/libonnxruntime.so",
    ]);
    assert!(
        !ok && err.contains("/nonexistent/libonnxruntime.so"),
        "{err}"
    );
    let unknown_op = repo_root().join("examples/models/invalid/unknown_op.onnx");
    for runtime in RUNTIMES {
        let mut args = vec![
            "--model",
            unknown_op.to_str().unwrap(),
            "--port",
            "0",
            "--runtime",
            runtime,
        ];
        let lib = ort_lib();
        if *runtime == "onnxruntime" {
            args.extend(["--onnxruntime", lib.to_str().unwrap()]);
        }
        let (ok, err) = run(&args);
        assert!(!ok && err.contains("NoSuchOp"), "{runtime}: {err}");
    }
}

fn tempdir(tag: &str) -> hoist_testkit::Scratch {
    hoist_testkit::Scratch::new(&format!("test-{tag}"))
}

fn copy_model(name: &str, to: &std::path::Path) -> std::path::PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(model_dir(name)).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    to.to_path_buf()
}

fn bump_mtime(p: &std::path::Path) {
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(later)
        .unwrap();
}

fn wait_for(cond: impl FnMut() -> bool) {
    hoist_testkit::wait_until(Duration::from_secs(30), "a condition (30 s)", cond)
}

#[test]
fn predicted_classes_are_counted_for_drift_analysis() {
    let s = Server::start(&model_dir("breast_cancer_lr"), "tract", &[], &[]);
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(model_dir("breast_cancer_lr").join("input_example.json")).unwrap(),
    )
    .unwrap();
    for _ in 0..3 {
        let (status, resp) = s.post_json("/invocations", &json!({ "inputs": example }));
        assert_eq!(status, 200, "{resp}");
        assert_eq!(resp["predictions"]["label"], json!([1, 0]));
    }
    let metrics = s.get("/metrics").text().unwrap();
    assert!(
        metrics.contains(
            "hoist_predictions_total{model=\"breast_cancer_lr\",output=\"label\",class=\"1\"} 3"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "hoist_predictions_total{model=\"breast_cancer_lr\",output=\"label\",class=\"0\"} 3"
        ),
        "{metrics}"
    );
}

#[test]
fn a_regressors_answers_are_counted_by_bin_with_prediction_bins() {
    let dir = model_dir("diabetes_lr");
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let data: Vec<f64> = reference["inputs"]["input"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let rows: Vec<Vec<f64>> = data.chunks(10).map(|r| r.to_vec()).collect();
    let want: Vec<f64> = reference["outputs"]["variable"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let edges = [100.0, 150.0, 200.0, 250.0];
    let mut per_bin = [0u64; 5];
    for v in &want {
        per_bin[edges.iter().filter(|e| **e <= *v).count()] += 1;
    }
    assert!(
        per_bin.iter().filter(|n| **n > 0).count() >= 3,
        "the reference rows spread over bins: {per_bin:?}"
    );
    let s = Server::start(
        &dir,
        "tract",
        &["--prediction-bins", "100,150,200,250"],
        &[],
    );
    let (status, resp) = s.post_json("/invocations", &json!({ "inputs": rows }));
    assert_eq!(status, 200, "{resp}");
    // One output, answered as MLflow's onnx flavor does: an object keyed by its name.
    let got: Vec<f64> = resp["predictions"]["variable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_f64().unwrap())
        .collect();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-3, "{g} against ONNX Runtime's {w}");
    }
    let metrics = s.get("/metrics").text().unwrap();
    for (bin, n) in per_bin.iter().enumerate().filter(|(_, n)| **n > 0) {
        let line = format!(
            "hoist_predictions_total{{model=\"diabetes_lr\",output=\"variable\",class=\"{bin}\"}} {n}"
        );
        assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    }
    // Without the flag a regressor's answers are not counted.
    let plain = Server::start(&dir, "tract", &[], &[]);
    assert_eq!(
        plain
            .post_json("/invocations", &json!({ "inputs": rows }))
            .0,
        200
    );
    let metrics = plain.get("/metrics").text().unwrap();
    assert!(!metrics.contains("hoist_predictions_total{"), "{metrics}");
}

#[test]
fn bad_prediction_bins_are_refused_with_the_reason() {
    let bin = env!("CARGO_BIN_EXE_hoist-server");
    let dir = model_dir("diabetes_lr");
    for (bins, why) in [
        ("200,100", "strictly ascending; 200 is followed by 100"),
        ("1,x", "`x` is not a finite number"),
        ("1,inf", "`inf` is not a finite number"),
    ] {
        let out = std::process::Command::new(bin)
            .args(["--model", dir.to_str().unwrap(), "--port", "0"])
            .args(["--prediction-bins", bins])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bins}: {err}");
        assert!(
            err.contains("--prediction-bins") && err.contains(why),
            "{bins}: {err}"
        );
    }
}
