//! Every ONNX-ML operator model in examples/ops/ (written by
//! tools/make_op_models.py: hand-built attribute variants and real skl2onnx
//! output) runs on tract and on ONNX Runtime with the same inputs, and the
//! outputs agree: labels, strings and integers exactly, floats within 1e-5
//! (relative to the value's size when it is over 1).

mod common;

use std::path::{Path, PathBuf};

use hoist_server::runtime::onnxruntime::OrtRuntime;
use hoist_server::runtime::tract::TractRuntime;
use hoist_server::runtime::{self, LoadOptions, Runtime, RuntimeChoice, RuntimeKind, tract_ops};
use hoist_server::tensor::{Tensor, TensorData};
use serde_json::Value;

fn ops_dir() -> PathBuf {
    common::repo_root().join("examples").join("ops")
}

fn inputs(model: &Path) -> Vec<Tensor> {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(model.with_extension("json")).unwrap())
            .unwrap();
    doc["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let shape: Vec<usize> = i["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let data = i["data"].as_array().unwrap();
            let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
            let data = match i["dtype"].as_str().unwrap() {
                "float32" => TensorData::F32(data.iter().map(|v| f(v) as f32).collect()),
                "float64" => TensorData::F64(data.iter().map(f).collect()),
                "int64" => TensorData::I64(data.iter().map(|v| v.as_i64().unwrap()).collect()),
                "string" => TensorData::Bytes(
                    data.iter()
                        .map(|v| v.as_str().unwrap().as_bytes().to_vec())
                        .collect(),
                ),
                other => panic!("{}: unknown dtype {other}", model.display()),
            };
            Tensor::new(i["name"].as_str().unwrap(), shape, data).unwrap()
        })
        .collect()
}

fn floats(d: &TensorData) -> Option<Vec<f64>> {
    Some(match d {
        TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::F64(v) => v.clone(),
        _ => return None,
    })
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-5 * b.abs().max(1.0)
}

/// Compares one model's outputs; returns a description of the first mismatch.
fn compare(model: &Path, tract: &[Tensor], ort: &[Tensor]) -> Result<(), String> {
    if tract.len() != ort.len() {
        return Err(format!(
            "{} outputs on tract, {} on ORT",
            tract.len(),
            ort.len()
        ));
    }
    for (t, o) in tract.iter().zip(ort) {
        if t.shape != o.shape {
            return Err(format!(
                "'{}': shape {:?} on tract, {:?} on ORT",
                o.name, t.shape, o.shape
            ));
        }
        match (floats(&t.data), floats(&o.data)) {
            (Some(a), Some(b)) => {
                if let Some(i) = (0..a.len()).find(|&i| !close(a[i], b[i])) {
                    return Err(format!(
                        "'{}'[{i}]: {} on tract, {} on ORT\n  tract {a:?}\n  ort   {b:?}",
                        o.name, a[i], b[i]
                    ));
                }
            }
            _ => {
                if t.data != o.data {
                    return Err(format!(
                        "'{}': {:?} on tract, {:?} on ORT",
                        o.name, t.data, o.data
                    ));
                }
            }
        }
    }
    let _ = model;
    Ok(())
}

#[test]
fn every_op_model_matches_onnxruntime() {
    // hoist runs ORT sessions with one intra-op thread: add trees up in that order.
    tract_ops::match_ort_intra_op_threads(1);
    let lib = common::ort_lib();
    let mut models: Vec<PathBuf> = std::fs::read_dir(ops_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    models.sort();
    assert!(
        models.len() >= 100,
        "expected the generated op models, found {}",
        models.len()
    );
    let mut failures = vec![];
    for model in &models {
        let name = model.file_stem().unwrap().to_string_lossy().to_string();
        let ins = inputs(model);
        let ort = OrtRuntime::load(model, &lib, 1)
            .unwrap_or_else(|e| panic!("{name}: ORT cannot load it: {e}"));
        let ort_out = ort.run(&ins).unwrap_or_else(|e| panic!("{name}: ORT: {e}"));
        let result = TractRuntime::load(model)
            .map_err(|e| e.to_string())
            .and_then(|t| t.run(&ins).map_err(|e| e.to_string()))
            .and_then(|out| compare(model, &out, &ort_out));
        // One row at a time too: the single-row path ORT and tract serve most.
        let result = result.and_then(|()| {
            let t = TractRuntime::load(model).map_err(|e| e.to_string())?;
            let rows = ins[0].shape.first().copied().unwrap_or(1);
            if ins.iter().any(|i| i.shape.len() < 2) || rows < 2 {
                return Ok(());
            }
            let one: Vec<Tensor> = ins
                .iter()
                .map(|i| {
                    let w = i.data.len() / rows;
                    let mut shape = i.shape.clone();
                    shape[0] = 1;
                    Tensor::new(&i.name, shape, i.data.slice(0, w)).unwrap()
                })
                .collect();
            let a = t.run(&one).map_err(|e| format!("one row: {e}"))?;
            let b = ort.run(&one).map_err(|e| format!("one row on ORT: {e}"))?;
            compare(model, &a, &b).map_err(|e| format!("one row: {e}"))
        });
        if let Err(e) = result {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} models differ:\n{}",
        failures.len(),
        models.len(),
        failures.join("\n")
    );
}

/// The reproduction of tract's declutter failure ("Trying to substitute a
/// 16,16,F32 by 1,16,F32": `Tile` feeding a `MatMul`) loads on tract and gives
/// ORT's answer.
#[test]
fn declutter_tile_before_matmul() {
    let model = ops_dir().join("declutter_tile_matmul.onnx");
    let ins = inputs(&model);
    let tract = TractRuntime::load(&model).expect("tract loads the Tile → MatMul graph");
    let out = tract.run(&ins).unwrap();
    assert_eq!(out[0].shape, vec![16, 16]);
    let ort = OrtRuntime::load(&model, &common::ort_lib(), 1).unwrap();
    compare(&model, &out, &ort.run(&ins).unwrap()).unwrap();
}

/// A float tensor `[dims]` for a graph's input, output or value_info; a dimension is
/// a size or a symbol.
fn value_info(name: &str, dims: &[Result<i64, &str>]) -> tract_onnx::pb::ValueInfoProto {
    use tract_onnx::pb::{self, tensor_shape_proto::dimension::Value as Dim};
    let dim = |d: &Result<i64, &str>| pb::tensor_shape_proto::Dimension {
        value: Some(match d {
            Ok(n) => Dim::DimValue(*n),
            Err(s) => Dim::DimParam(s.to_string()),
        }),
        ..Default::default()
    };
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: dims.iter().map(dim).collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The reproduction of what failed on torch's dynamo exporter's graphs: the exporter
/// records every intermediate value's shape in `value_info` with its own batch symbol
/// (`batch_size`); hoist names the inputs' batch dimension N (or 1 for single rows),
/// and tract failed with "Impossible to unify Sym(batch_size) with Sym(N)". X → Relu →
/// Neg, the Relu's output in value_info as `[batch_size, 3]`: loads on tract, from the
/// file and as a rewritten model, and answers ORT's answer for 2 rows and for 1.
#[test]
fn an_exporters_batch_symbol_in_value_info() {
    use tract_onnx::pb;
    let batch = Err("batch_size");
    let node = |op: &str, input: &str, output: &str| pb::NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: vec![input.into()],
        output: vec![output.into()],
        ..Default::default()
    };
    let model = pb::ModelProto {
        ir_version: 10,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 20,
        }],
        graph: Some(pb::GraphProto {
            name: "value_info_symbol".into(),
            node: vec![node("Relu", "X", "r"), node("Neg", "r", "Y")],
            input: vec![value_info("X", &[batch, Ok(3)])],
            output: vec![value_info("Y", &[batch, Ok(3)])],
            value_info: vec![value_info("r", &[batch, Ok(3)])],
            ..Default::default()
        }),
        ..Default::default()
    };
    let dir = std::env::temp_dir().join(format!("hoist-ops-value-info-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.onnx");
    std::fs::write(&path, hoist_server::runtime::prepare::encode(&model)).unwrap();

    let ort = OrtRuntime::load(&path, &common::ort_lib(), 1).unwrap();
    let from_file = TractRuntime::load(&path).expect("tract loads the file");
    let rewritten = TractRuntime::load_from(&path, Some(&model)).expect("tract loads the proto");
    for rows in [2, 1] {
        let data: Vec<f32> = (0..rows * 3).map(|i| i as f32 - 2.5).collect();
        let x = Tensor::new("X", vec![rows, 3], TensorData::F32(data)).unwrap();
        let want = ort.run(std::slice::from_ref(&x)).unwrap();
        assert_eq!(want[0].shape, vec![rows, 3]);
        for tract in [&from_file, &rewritten] {
            let got = tract.run(std::slice::from_ref(&x)).unwrap();
            compare(&path, &got, &want).unwrap();
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `--runtime auto` serves a model ONNX Runtime refuses with tract, and says why;
/// a model ORT loads stays on ORT.
#[test]
fn auto_falls_back_to_tract_when_onnxruntime_refuses_the_model() {
    let opts = LoadOptions {
        choice: RuntimeChoice::Auto,
        onnxruntime_lib: Some(common::ort_lib()),
        parallelism: 1,
    };
    let refused = ops_dir().join("fallback").join("ort_refuses.onnx");
    assert!(OrtRuntime::load(&refused, &common::ort_lib(), 1).is_err());
    let rt = runtime::load(&refused, &opts).expect("auto falls back to tract");
    assert_eq!(rt.kind(), RuntimeKind::Tract);
    let why = rt.selection().expect("auto says why");
    assert!(
        why.contains("ONNX Runtime could not serve the model"),
        "{why}"
    );
    let x = Tensor::new(
        "X",
        vec![2, 4],
        TensorData::F32(vec![1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0]),
    )
    .unwrap();
    let out = rt.run(&[x]).unwrap();
    assert_eq!(out[0].data, TensorData::I64(vec![1, 0]));

    let fine = ops_dir().join("ter_sum_1.onnx");
    let rt = runtime::load(&fine, &opts).unwrap();
    assert_eq!(rt.kind(), RuntimeKind::OnnxRuntime);
    assert!(
        rt.selection()
            .unwrap()
            .contains("ONNX Runtime library found")
    );

    // Not a model at all: refused before either runtime, saying so.
    let bad = std::env::temp_dir().join(format!("hoist-ops-bad-{}.onnx", std::process::id()));
    std::fs::write(&bad, b"not a model").unwrap();
    let err = runtime::load(&bad, &opts)
        .err()
        .expect("garbage loads nowhere")
        .to_string();
    std::fs::remove_file(&bad).ok();
    assert!(err.contains("not a well-formed ONNX model"), "{err}");
}

/// Prints single-row latency on both runtimes for the 100-tree gradient
/// boosting regressor and the probability SVC (for the record; nothing is
/// asserted about time). Run with `--nocapture` to see it.
#[test]
fn single_row_latency_report() {
    tract_ops::match_ort_intra_op_threads(1);
    for name in ["skl_gbr_100", "skl_svc_proba"] {
        let model = ops_dir().join(format!("{name}.onnx"));
        let ins = inputs(&model);
        let w = ins[0].data.len() / ins[0].shape[0];
        let one = vec![Tensor::new(&ins[0].name, vec![1, w], ins[0].data.slice(0, w)).unwrap()];
        let tract = TractRuntime::load(&model).unwrap();
        let ort = OrtRuntime::load(&model, &common::ort_lib(), 1).unwrap();
        let time = |rt: &dyn Runtime| {
            for _ in 0..20 {
                rt.run(&one).unwrap();
            }
            let n = 300;
            let start = std::time::Instant::now();
            for _ in 0..n {
                rt.run(&one).unwrap();
            }
            start.elapsed().as_secs_f64() * 1e6 / n as f64
        };
        let (t, o) = (time(&tract), time(&ort));
        eprintln!(
            "{name}: one row: tract {t:.1} us, onnxruntime {o:.1} us ({:.2}x)",
            t / o
        );
    }
}

/// A model only ONNX Runtime serves (StringNormalizer), on a machine without its
/// library: `hoist-server --runtime auto` exits with tract's reason and names the
/// command that installs ONNX Runtime; with the library it serves the model.
#[test]
fn without_onnxruntime_a_model_tract_refuses_names_hoist_runtime_install() {
    let model = ops_dir().join("fallback").join("tract_refuses.onnx");
    let home = std::env::temp_dir().join(format!("hoist-no-ort-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hoist-server"))
        .arg("--model")
        .arg(&model)
        .args(["--port", "0", "--runtime", "auto"])
        .env("ORT_DYLIB_PATH", "")
        .env("HOME", &home)
        .env("HOIST_HOME", &home)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&home).ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("StringNormalizer"), "{stderr}");
    assert!(
        stderr.contains("hoist runtime install onnxruntime"),
        "{stderr}"
    );

    let server = common::Server::start(&model, "auto", &[], &[]);
    let (status, body) = server.post_json(
        "/v2/models/tract_refuses/infer",
        &serde_json::json!({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
            "data": ["HeLLo", "World"]}]}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["outputs"][0]["data"],
        serde_json::json!(["hello", "world"])
    );
}
