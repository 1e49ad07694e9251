//! Single-row latency of every model in a zoo on tract and on ONNX Runtime, side by
//! side in one process, the way hoist-server runs them (prepared, one worker, one
//! intra-op thread). Run by `bench/runtimes.sh`; see docs/benchmarks.md.
//!
//! Usage: `runtime_latency ZOO_DIR [--rounds N] [--json]` with `ORT_DYLIB_PATH` set.
//! Each model's first reference row is timed in interleaved rounds (tract, then ONNX
//! Runtime, then tract again…), so that noise on a shared machine falls on both; a
//! round is as many calls as fit in ~20 ms. The figure per runtime is the median of
//! the rounds' per-call means.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hoist_server::runtime::prepare::prepare;
use hoist_server::runtime::{LoadOptions, Runtime, RuntimeChoice, load_prepared};
use hoist_server::tensor::{Tensor, TensorData};
use serde_json::{Value, json};

const ROUND: Duration = Duration::from_millis(20);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(zoo) = args.first().map(PathBuf::from) else {
        eprintln!("usage: runtime_latency ZOO_DIR [--rounds N] [--json]");
        std::process::exit(2);
    };
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse().expect("--rounds takes a number"))
        .unwrap_or(15);
    let as_json = args.iter().any(|a| a == "--json");
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(zoo.join("zoo.json")).expect("ZOO_DIR/zoo.json"),
    )
    .expect("zoo.json is JSON");

    let mut rows = Vec::new();
    for model in doc["models"].as_array().expect("zoo.json models") {
        let name = model["name"].as_str().expect("model name");
        match measure(&zoo.join(name).join("model.onnx"), model, rounds) {
            Ok((tract, ort)) => {
                let ratio = tract / ort;
                if !as_json {
                    println!(
                        "{name:<32} tract {:>9.1} µs   onnxruntime {:>9.1} µs   ratio {ratio:>5.2}",
                        tract * 1e6,
                        ort * 1e6
                    );
                }
                rows.push(json!({"model": name, "tract_us": tract * 1e6,
                    "onnxruntime_us": ort * 1e6, "ratio": ratio}));
            }
            Err(e) => {
                if !as_json {
                    println!("{name:<32} not measured: {e}");
                }
                rows.push(json!({"model": name, "error": e}));
            }
        }
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows).unwrap());
    }
}

/// Median per-call seconds on (tract, ONNX Runtime).
fn measure(onnx: &Path, model: &Value, rounds: usize) -> Result<(f64, f64), String> {
    let prepared = prepare(onnx).map_err(|e| e.to_string())?;
    let load = |choice| {
        let opts = LoadOptions {
            choice,
            onnxruntime_lib: None,
            parallelism: 1,
        };
        load_prepared(&prepared, &opts).map_err(|e| e.to_string())
    };
    let tract = load(RuntimeChoice::Tract)?;
    let ort = load(RuntimeChoice::Onnxruntime)?;
    let inputs: Vec<Tensor> = tract
        .inputs()
        .iter()
        .map(|spec| first_row(&spec.name, &model["inputs"][&spec.name]))
        .collect::<Result<_, _>>()?;
    // Warm both, and find how many calls fill a round.
    let per_round = |rt: &dyn Runtime| -> Result<usize, String> {
        let start = Instant::now();
        let mut n = 0usize;
        while start.elapsed() < ROUND {
            rt.run(&inputs).map_err(|e| e.to_string())?;
            n += 1;
        }
        Ok(n.max(1))
    };
    let (nt, no) = (per_round(tract.as_ref())?, per_round(ort.as_ref())?);
    let time = |rt: &dyn Runtime, n: usize| -> Result<f64, String> {
        let start = Instant::now();
        for _ in 0..n {
            rt.run(&inputs).map_err(|e| e.to_string())?;
        }
        Ok(start.elapsed().as_secs_f64() / n as f64)
    };
    let (mut t, mut o) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        t.push(time(tract.as_ref(), nt)?);
        o.push(time(ort.as_ref(), no)?);
    }
    Ok((median(&mut t), median(&mut o)))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The first row of a zoo.json input (`null` in float data is NaN).
fn first_row(name: &str, v: &Value) -> Result<Tensor, String> {
    let mut shape: Vec<usize> = v["shape"]
        .as_array()
        .ok_or("input without shape")?
        .iter()
        .map(|d| d.as_u64().unwrap_or(0) as usize)
        .collect();
    let row: usize = shape.iter().skip(1).product();
    if let Some(first) = shape.first_mut() {
        *first = 1;
    }
    let data = &v["data"].as_array().ok_or("input without data")?[..row];
    let f = |x: &Value| x.as_f64().unwrap_or(f64::NAN);
    let data = match v["datatype"].as_str() {
        Some("FP32") => TensorData::F32(data.iter().map(|x| f(x) as f32).collect()),
        Some("FP64") => TensorData::F64(data.iter().map(f).collect()),
        Some("INT64") => TensorData::I64(data.iter().map(|x| x.as_i64().unwrap_or(0)).collect()),
        Some("BYTES") => TensorData::Bytes(
            data.iter()
                .map(|x| x.as_str().unwrap_or("").as_bytes().to_vec())
                .collect(),
        ),
        other => return Err(format!("datatype {other:?}")),
    };
    Tensor::new(name, shape, data).map_err(|e| e.to_string())
}
