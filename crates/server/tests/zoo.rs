//! The model zoo (examples/zoo, `tools/make_zoo.py`): every model, logged the way
//! MLflow users log them, loads on both runtimes and answers what ONNX Runtime's
//! Python package answered when the zoo was generated (`zoo.json`): labels exactly,
//! numbers within 1e-5 (relative to the value's size when it is above 1); and tract
//! answers what ONNX Runtime answers in hoist. Then, over real HTTP, a ZipMap
//! classifier's answers on both protocols and its prediction counts.

mod common;

use std::path::PathBuf;

use serde_json::{Value, json};

use common::{Server, ort_lib, repo_root};
use hoist_server::runtime::prepare::{ClassLabels, prepare};
use hoist_server::runtime::{LoadOptions, Runtime, RuntimeChoice, load_prepared};
use hoist_server::tensor::{Tensor, TensorData};

const TOLERANCE: f64 = 1e-5;

fn zoo_dir() -> PathBuf {
    repo_root().join("examples/zoo")
}

fn zoo() -> Vec<Value> {
    let text = std::fs::read_to_string(zoo_dir().join("zoo.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["models"].as_array().unwrap().clone()
}

fn onnx_path(name: &str) -> PathBuf {
    zoo_dir().join(name).join("model.onnx")
}

/// A zoo.json tensor (`null` in float data is NaN).
fn tensor(name: &str, v: &Value) -> Tensor {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data = v["data"].as_array().unwrap();
    let f = |x: &Value| x.as_f64().unwrap_or(f64::NAN);
    let data = match v["datatype"].as_str().unwrap() {
        "FP32" => TensorData::F32(data.iter().map(|x| f(x) as f32).collect()),
        "FP64" => TensorData::F64(data.iter().map(f).collect()),
        "INT64" => TensorData::I64(data.iter().map(|x| x.as_i64().unwrap()).collect()),
        "BYTES" => TensorData::Bytes(
            data.iter()
                .map(|x| x.as_str().unwrap().as_bytes().to_vec())
                .collect(),
        ),
        other => panic!("zoo.json datatype {other}"),
    };
    Tensor::new(name, shape, data).unwrap()
}

/// What an output holds, for comparison: numbers, or labels as text.
#[derive(Debug)]
enum Values {
    Numbers(Vec<f64>),
    Labels(Vec<String>),
}

fn values_of(t: &Tensor) -> Values {
    match &t.data {
        TensorData::F32(v) => Values::Numbers(v.iter().map(|&x| f64::from(x)).collect()),
        TensorData::F64(v) => Values::Numbers(v.clone()),
        TensorData::I64(v) => Values::Labels(v.iter().map(i64::to_string).collect()),
        TensorData::I32(v) => Values::Labels(v.iter().map(i32::to_string).collect()),
        TensorData::Bytes(v) => Values::Labels(
            v.iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect(),
        ),
        other => panic!("unexpected output datatype {}", other.datatype()),
    }
}

fn reference_values(v: &Value) -> Values {
    let data = v["data"].as_array().unwrap();
    match v["datatype"].as_str().unwrap() {
        "FP32" | "FP64" => Values::Numbers(data.iter().map(|x| x.as_f64().unwrap()).collect()),
        _ => Values::Labels(
            data.iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
        ),
    }
}

/// Within [`TOLERANCE`] (relative above 1); NaN equals NaN.
fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= TOLERANCE * b.abs().max(1.0)
}

/// `None` when equal (labels exactly, numbers within [`TOLERANCE`]), else why not.
fn differs(got: &Values, want: &Values) -> Option<String> {
    match (got, want) {
        (Values::Labels(g), Values::Labels(w)) => (g != w).then(|| format!("{g:?} != {w:?}")),
        (Values::Numbers(g), Values::Numbers(w)) => {
            if g.len() != w.len() {
                return Some(format!("{} values, expected {}", g.len(), w.len()));
            }
            g.iter()
                .zip(w)
                .position(|(a, b)| !close(*a, *b))
                .map(|i| format!("value {i}: {} != {}", g[i], w[i]))
        }
        _ => Some(format!("{got:?} is not of the kind of {want:?}")),
    }
}

fn load(name: &str, choice: RuntimeChoice) -> Result<Box<dyn Runtime>, String> {
    let prepared = prepare(&onnx_path(name)).map_err(|e| e.to_string())?;
    let opts = LoadOptions {
        choice,
        onnxruntime_lib: Some(ort_lib()),
        parallelism: 1,
    };
    load_prepared(&prepared, &opts).map_err(|e| e.to_string())
}

fn run(rt: &dyn Runtime, model: &Value) -> Result<Vec<Tensor>, String> {
    let inputs: Vec<Tensor> = rt
        .inputs()
        .iter()
        .map(|spec| tensor(&spec.name, &model["inputs"][&spec.name]))
        .collect();
    rt.run(&inputs).map_err(|e| e.to_string())
}

/// Every output of `outputs` against the model's recorded reference; the problems.
fn check_reference(model: &Value, outputs: &[Tensor]) -> Vec<String> {
    let reference = model["outputs"].as_object().unwrap();
    let mut problems = Vec::new();
    if outputs.len() != reference.len() {
        problems.push(format!(
            "{} outputs, the reference has {}",
            outputs.len(),
            reference.len()
        ));
    }
    for t in outputs {
        let Some(want) = reference.get(&t.name) else {
            problems.push(format!("output '{}' is not in the reference", t.name));
            continue;
        };
        let shape: Vec<usize> = want["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        // ONNX Runtime's regressors may answer [n] or [n, 1]; the values decide.
        if t.shape.iter().product::<usize>() != shape.iter().product::<usize>() {
            problems.push(format!(
                "'{}' shape {:?}, expected {shape:?}",
                t.name, t.shape
            ));
        }
        if let Some(d) = differs(&values_of(t), &reference_values(want)) {
            problems.push(format!("'{}': {d}", t.name));
        }
    }
    problems
}

/// Runs every zoo model on `choice`; returns the models' problems, by model.
fn zoo_on(choice: RuntimeChoice) -> Vec<String> {
    let mut failures = Vec::new();
    for model in zoo() {
        let name = model["name"].as_str().unwrap();
        let problems = match load(name, choice).and_then(|rt| run(rt.as_ref(), &model)) {
            Ok(outputs) => check_reference(&model, &outputs),
            Err(e) => vec![e],
        };
        if !problems.is_empty() {
            failures.push(format!("{name}: {}", problems.join("; ")));
        }
    }
    failures
}

#[test]
fn the_zoo_has_what_mlflow_users_log() {
    let models = zoo();
    assert!(models.len() >= 22, "{} models", models.len());
    let zipmaps = models
        .iter()
        .filter(|m| {
            m["outputs"]
                .as_object()
                .unwrap()
                .values()
                .any(|o| o.get("labels").is_some())
        })
        .count();
    assert!(zipmaps >= 10, "{zipmaps} ZipMap classifiers");
    let multi_input = models
        .iter()
        .filter(|m| m["inputs"].as_object().unwrap().len() > 1)
        .count();
    assert!(multi_input >= 1);
    // The labels prepare() reads off each ZipMap are the ones Python recorded.
    for m in &models {
        let name = m["name"].as_str().unwrap();
        let prepared = prepare(&onnx_path(name)).unwrap();
        for z in &prepared.zipmaps {
            let want = &m["outputs"][&z.output]["labels"];
            assert_eq!(&z.labels.to_json(), want, "{name} '{}'", z.output);
        }
        let recorded = m["outputs"]
            .as_object()
            .unwrap()
            .values()
            .filter(|o| o.get("labels").is_some())
            .count();
        assert_eq!(prepared.zipmaps.len(), recorded, "{name}");
    }
}

/// The CNNs are torch.onnx.export's own graphs, one per exporter (tools/export_cnn.py).
#[test]
fn the_cnns_are_what_each_torch_exporter_writes() {
    let names: Vec<String> = zoo()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    for (name, ops, ir) in [
        ("cnn", ["Conv", "Relu", "MaxPool", "Flatten", "Gemm"], 9),
        (
            "cnn_dynamo",
            ["Conv", "Relu", "MaxPool", "Reshape", "Gemm"],
            10,
        ),
    ] {
        assert!(names.iter().any(|n| n == name), "{name} is not in zoo.json");
        let model =
            hoist_server::runtime::prepare::decode(&std::fs::read(onnx_path(name)).unwrap())
                .unwrap();
        assert_eq!(model.producer_name, "pytorch", "{name}");
        assert!(model.producer_version.starts_with("2.15.0"), "{name}");
        assert_eq!(model.ir_version, ir, "{name}");
        let graph = model.graph.unwrap();
        let got: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(got, ops, "{name}");
        // One input, `input` [batch_size, 1, 8, 8]: the batch dimension is dynamic.
        use tract_onnx::pb::{tensor_shape_proto::dimension::Value as Dim, type_proto::Value};
        assert_eq!(graph.input.len(), 1, "{name}");
        assert_eq!(graph.input[0].name, "input", "{name}");
        let Some(Value::TensorType(t)) = graph.input[0].r#type.as_ref().unwrap().value.as_ref()
        else {
            panic!("{name}: the input is not a tensor");
        };
        let dims: Vec<String> = t
            .shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|d| match d.value.as_ref().unwrap() {
                Dim::DimValue(n) => n.to_string(),
                Dim::DimParam(p) => p.clone(),
            })
            .collect();
        assert_eq!(dims, ["batch_size", "1", "8", "8"], "{name}");
    }
}

#[test]
fn every_zoo_model_answers_like_python_onnx_runtime_on_onnx_runtime() {
    let failures = zoo_on(RuntimeChoice::Onnxruntime);
    assert!(
        failures.is_empty(),
        "{} models differ on onnxruntime:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_zoo_model_answers_like_onnx_runtime_on_tract() {
    let mut failures = zoo_on(RuntimeChoice::Tract);
    // And tract against ONNX Runtime in hoist, output by output.
    for model in zoo() {
        let name = model["name"].as_str().unwrap();
        let (Ok(ort), Ok(tract)) = (
            load(name, RuntimeChoice::Onnxruntime),
            load(name, RuntimeChoice::Tract),
        ) else {
            continue;
        };
        let (Ok(a), Ok(b)) = (run(ort.as_ref(), &model), run(tract.as_ref(), &model)) else {
            continue;
        };
        for (x, y) in a.iter().zip(&b) {
            if let Some(d) = differs(&values_of(y), &values_of(x)) {
                failures.push(format!("{name}: tract vs onnxruntime '{}': {d}", x.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} zoo models fail on tract:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Row `i` of a batch tensor, as a one-row tensor.
fn row_of(t: &Tensor, i: usize) -> Tensor {
    let width: usize = t.shape.iter().skip(1).product();
    let mut shape = t.shape.clone();
    shape[0] = 1;
    Tensor::new(&t.name, shape, t.data.slice(i * width, (i + 1) * width)).unwrap()
}

/// tract runs single rows on a plan specialised for one row: every zoo model's rows,
/// one at a time, answer what the same rows answer in the batch.
#[test]
fn single_rows_on_tract_answer_what_the_batch_answers() {
    let mut failures = Vec::new();
    for model in zoo() {
        let name = model["name"].as_str().unwrap();
        let rt = load(name, RuntimeChoice::Tract).unwrap();
        let inputs: Vec<Tensor> = rt
            .inputs()
            .iter()
            .map(|spec| tensor(&spec.name, &model["inputs"][&spec.name]))
            .collect();
        let batch = rt.run(&inputs).unwrap();
        for i in 0..inputs[0].shape[0] {
            let one: Vec<Tensor> = inputs.iter().map(|t| row_of(t, i)).collect();
            let got = rt.run(&one).unwrap();
            for (g, b) in got.iter().zip(&batch) {
                if let Some(d) = differs(&values_of(g), &values_of(&row_of(b, i))) {
                    failures.push(format!("{name} row {i} '{}': {d}", g.name));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The zoo model's sample rows as MLflow's `inputs` body (one-input models).
fn rows_of(model: &Value) -> Value {
    let (_, input) = model["inputs"].as_object().unwrap().iter().next().unwrap();
    let width = input["shape"][1].as_u64().unwrap() as usize;
    let data = input["data"].as_array().unwrap();
    Value::Array(
        data.chunks(width)
            .map(|r| Value::Array(r.to_vec()))
            .collect(),
    )
}

fn zoo_model(name: &str) -> Value {
    zoo()
        .into_iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in zoo.json"))
}

/// What `mlflow models serve` answers for a ZipMap classifier and a tensor body:
/// `{"predictions": {"output_label": [...], "output_probability": [{"<label>": p}, ...]}}`
/// (seen from MLflow 3.17.2: map keys are strings, numeric labels too).
fn mlflow_answer(model: &Value) -> Value {
    let label = &model["outputs"]["output_label"];
    let probs = &model["outputs"]["output_probability"];
    let labels = probs["labels"].as_array().unwrap();
    let k = labels.len();
    let rows: Vec<Value> = probs["data"]
        .as_array()
        .unwrap()
        .chunks(k)
        .map(|r| {
            let mut m = serde_json::Map::new();
            for (l, p) in labels.iter().zip(r) {
                let key = match l {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                m.insert(key, p.clone());
            }
            Value::Object(m)
        })
        .collect();
    json!({"predictions": {"output_label": label["data"], "output_probability": rows}})
}

/// Structural JSON equality, numbers within [`TOLERANCE`], object keys in order.
fn same_json(got: &Value, want: &Value, at: &str) {
    match (got, want) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!(
                (a - b).abs() <= TOLERANCE * b.abs().max(1.0),
                "{at}: {a} != {b}"
            );
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{at}: lengths");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                same_json(x, y, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            let ka: Vec<&String> = a.keys().collect();
            let kb: Vec<&String> = b.keys().collect();
            assert_eq!(ka, kb, "{at}: keys");
            for (k, x) in a {
                same_json(x, &b[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(got, want, "{at}"),
    }
}

fn prediction_count(metrics: &str, output: &str, class: &str) -> u64 {
    // One model per server: whatever its `model` label.
    let suffix = format!(",output=\"{output}\",class=\"{class}\"}}");
    metrics
        .lines()
        .filter(|l| l.starts_with("hoist_predictions_total{"))
        .find_map(|l| l.split_once(&suffix).map(|(_, n)| n.trim_start()))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[test]
fn a_zipmap_classifier_answers_like_mlflow_models_serve_on_both_runtimes() {
    for (name, runtime) in [
        ("logistic_regression", "onnxruntime"),
        ("string_labels", "onnxruntime"),
        ("logistic_regression", "tract"),
    ] {
        let model = zoo_model(name);
        let s = Server::start(&zoo_dir().join(name), runtime, &[], &[]);
        let rows = rows_of(&model);
        let n = rows.as_array().unwrap().len();

        let (status, got) = s.post_json("/invocations", &json!({ "inputs": rows }));
        assert_eq!(status, 200, "{name} on {runtime}: {got}");
        same_json(
            &got,
            &mlflow_answer(&model),
            &format!("{name} on {runtime}"),
        );

        // Open Inference Protocol: the probabilities as an [n, classes] FP32 tensor,
        // the class labels in the output's parameters.
        let (_, input) = model["inputs"].as_object().unwrap().iter().next().unwrap();
        let req = json!({"inputs": [{
            "name": "X", "datatype": "FP32", "shape": input["shape"], "data": input["data"],
        }]});
        let (status, got) = s.post_json(&format!("/v2/models/{name}/infer"), &req);
        assert_eq!(status, 200, "{name} on {runtime}: {got}");
        let want = &model["outputs"]["output_probability"];
        let out = got["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == "output_probability")
            .unwrap();
        assert_eq!(out["datatype"], "FP32");
        assert_eq!(out["shape"], want["shape"]);
        assert_eq!(out["parameters"]["class_labels"], want["labels"]);
        same_json(&out["data"], &want["data"], &format!("{name} v2"));
        let (_, meta) = {
            let r = s.get(&format!("/v2/models/{name}"));
            (r.status().as_u16(), r.json::<Value>().unwrap())
        };
        let meta_out = meta["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == "output_probability")
            .unwrap();
        assert_eq!(
            meta_out["shape"],
            json!([-1, want["labels"].as_array().unwrap().len()])
        );
        assert_eq!(meta_out["parameters"]["class_labels"], want["labels"]);

        // Both answers counted each predicted class, by index for string labels.
        let metrics = s.get("/metrics").text().unwrap();
        let labels = want["labels"].as_array().unwrap();
        let predicted = model["outputs"]["output_label"]["data"].as_array().unwrap();
        let mut total = 0;
        for (i, l) in labels.iter().enumerate() {
            let expected = 2 * predicted.iter().filter(|p| *p == l).count() as u64;
            let got = prediction_count(&metrics, "output_label", &i.to_string());
            assert_eq!(got, expected, "{name}: class {l} (index {i})\n{metrics}");
            total += got;
        }
        assert_eq!(total, 2 * n as u64);
        s.terminate();
    }
}

#[test]
fn a_model_an_onnx_runtime_cannot_take_names_its_versions_and_the_runtime_that_can() {
    // An IR version beyond any ONNX Runtime release: the zoo's current-defaults model
    // with its IR version raised (prepare reads it; ORT refuses it, tract loads it).
    let dir = tempdir();
    let src = std::fs::read(onnx_path("current_onnx_defaults")).unwrap();
    let mut model = hoist_server::runtime::prepare::decode(&src).unwrap();
    model.ir_version = 99;
    std::fs::write(
        dir.join("model.onnx"),
        hoist_server::runtime::prepare::encode(&model),
    )
    .unwrap();
    let path = dir.join("model.onnx");
    let prepared = prepare(&path).unwrap();
    assert_eq!(prepared.ir_version, 99);
    let opts = |choice| LoadOptions {
        choice,
        onnxruntime_lib: Some(ort_lib()),
        parallelism: 1,
    };
    let err = load_prepared(&prepared, &opts(RuntimeChoice::Onnxruntime))
        .err()
        .expect("ONNX Runtime refuses IR 99")
        .to_string();
    assert!(
        err.contains("IR 99") && err.contains("ONNX Runtime 1.") && err.contains("--runtime tract"),
        "{err}"
    );
    // auto serves it with tract.
    let rt = load_prepared(&prepared, &opts(RuntimeChoice::Auto)).unwrap();
    assert_eq!(rt.kind().as_str(), "tract");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("hoist-zoo-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn class_labels_keep_their_kind() {
    let prepared = prepare(&onnx_path("string_labels")).unwrap();
    assert!(matches!(prepared.zipmaps[0].labels, ClassLabels::Str(_)));
    let prepared = prepare(&onnx_path("logistic_regression")).unwrap();
    assert_eq!(prepared.zipmaps[0].labels, ClassLabels::Int(vec![0, 1, 2]));
    assert!(prepared.rewritten.is_some());
    // A model without a ZipMap is loaded from its file, untouched.
    let prepared = prepare(&onnx_path("linear_regression")).unwrap();
    assert!(prepared.rewritten.is_none() && prepared.zipmaps.is_empty());
}
