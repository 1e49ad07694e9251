//! Test support: start the real `hoist-server` binary on 127.0.0.1 port 0, talk to it
//! over real HTTP, and read the example models' reference outputs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub fn repo_root() -> PathBuf {
    hoist_testkit::repo_root().canonicalize().unwrap()
}

pub fn model_dir(name: &str) -> PathBuf {
    repo_root().join("examples/models").join(name)
}

/// Every example model, tabular and image.
pub const MODELS: &[&str] = &[
    "breast_cancer_lr",
    "breast_cancer_gbt",
    "breast_cancer_rf",
    "digits_mlp",
    "image_cnn",
];

/// The ONNX Runtime library the tests use. The suite needs it: `tools/test.sh`
/// fetches it; a missing library is a failure, not a skip.
pub fn ort_lib() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOIST_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".hoist"));
    let dir = home.join("lib");
    let found = std::fs::read_dir(&dir).ok().and_then(|d| {
        d.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("libonnxruntime.so")
        })
    });
    found.unwrap_or_else(|| {
        panic!(
            "no ONNX Runtime library in {}: run tools/fetch-onnxruntime.sh or set ORT_DYLIB_PATH",
            dir.display()
        )
    })
}

pub struct Server {
    pub child: Child,
    pub base: String,
    pub stderr_log: PathBuf,
    /// `host:port` of the gRPC listener, when started with `--grpc-port`.
    pub grpc: Option<String>,
}

impl Server {
    /// Starts `hoist-server --model MODEL --port 0 ARGS...` and waits until it is ready.
    pub fn start(model: &Path, runtime: &str, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let s = Server::spawn(model, runtime, extra, env);
        s.wait_ready();
        s
    }

    /// Starts `hoist-server ARGS` (see [`Server::spawn_args`]) and waits until it is ready.
    pub fn start_args(args: &[String], runtime: &str, env: &[(&str, &str)]) -> Server {
        let s = Server::spawn_args(args, runtime, env);
        s.wait_ready();
        s
    }

    /// Starts the server without waiting for readiness.
    pub fn spawn(model: &Path, runtime: &str, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut args = vec!["--model".to_string(), model.to_string_lossy().into_owned()];
        args.extend(extra.iter().map(|a| a.to_string()));
        Server::spawn_args(&args, runtime, env)
    }

    /// Starts `hoist-server ARGS --port 0 --runtime RUNTIME` (ARGS name the models)
    /// without waiting for readiness.
    pub fn spawn_args(args: &[String], runtime: &str, env: &[(&str, &str)]) -> Server {
        let log = std::env::temp_dir().join(format!(
            "hoist-server-test-{}-{}.log",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hoist-server"));
        cmd.args(args)
            .args(["--port", "0", "--runtime", runtime])
            .env_remove("HOIST_ADMIN_TOKEN")
            .env_remove("HOIST_ADMIN_TOKEN_FILE")
            .env_remove("MODEL_AUTO_REFRESH_SECONDS")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        if runtime != "tract" {
            cmd.arg("--onnxruntime").arg(ort_lib());
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start hoist-server");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut read = |prefix: &str| {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix(prefix)
                .unwrap_or_else(|| {
                    panic!(
                        "unexpected line {line:?}; stderr: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    )
                })
                .to_string()
        };
        let base = read("listening on ");
        let grpc = args
            .iter()
            .any(|a| a == "--grpc-port")
            .then(|| read("grpc listening on "));
        Server {
            child,
            base,
            stderr_log: log,
            grpc,
        }
    }

    pub fn wait_ready(&self) {
        let client = client();
        let ready = hoist_testkit::poll(Duration::from_secs(60), || {
            client
                .get(self.url("/v2/health/ready"))
                .send()
                .is_ok_and(|r| r.status() == 200)
                .then_some(())
        });
        assert!(
            ready.is_some(),
            "server not ready after 60 s; stderr: {}",
            self.stderr()
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        client().get(self.url(path)).send().unwrap()
    }

    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = client().post(self.url(path)).json(body).send().unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{path} answered {status} with non-JSON {text:?}"));
        (status, v)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        unsafe_kill(self.child.id(), 15);
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn unsafe_kill(pid: u32, sig: i32) {
    Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .unwrap();
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// `examples/models/NAME/reference.json`: inputs and the outputs ONNX Runtime gave.
pub struct Reference {
    pub input_name: String,
    pub input_shape: Vec<usize>,
    pub inputs: Vec<f64>,
    pub labels: Vec<i64>,
    pub probabilities: Vec<f64>,
    pub classes: usize,
}

impl Reference {
    pub fn load(model: &str) -> Reference {
        let text = std::fs::read_to_string(model_dir(model).join("reference.json")).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let (input_name, input) = v["inputs"].as_object().unwrap().iter().next().unwrap();
        let nums = |x: &Value| -> Vec<f64> {
            x.as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_f64().unwrap())
                .collect()
        };
        let probs = &v["outputs"]["probabilities"];
        Reference {
            input_name: input_name.clone(),
            input_shape: input["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect(),
            inputs: nums(&input["data"]),
            labels: v["outputs"]["label"]["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_i64().unwrap())
                .collect(),
            probabilities: nums(&probs["data"]),
            classes: probs["shape"][1].as_u64().unwrap() as usize,
        }
    }

    pub fn rows(&self) -> usize {
        self.input_shape[0]
    }

    pub fn row_len(&self) -> usize {
        self.input_shape[1..].iter().product()
    }

    /// Row `i` as a flat list.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.inputs[i * self.row_len()..(i + 1) * self.row_len()]
    }

    /// Checks labels exactly and probabilities within 1e-4 for rows `first..`, and
    /// that every label is the argmax of its probabilities (a wrong label is never
    /// served).
    pub fn check(&self, first: usize, labels: &[i64], probs: &[f64], context: &str) {
        let n = labels.len();
        assert_eq!(
            probs.len(),
            n * self.classes,
            "{context}: probabilities length"
        );
        for r in 0..n {
            assert_eq!(
                labels[r],
                self.labels[first + r],
                "{context}: label of row {}",
                first + r
            );
            let p = &probs[r * self.classes..(r + 1) * self.classes];
            let want =
                &self.probabilities[(first + r) * self.classes..(first + r + 1) * self.classes];
            for (a, b) in p.iter().zip(want) {
                assert!(
                    (a - b).abs() <= 1e-4,
                    "{context}: row {} probabilities {p:?} vs reference {want:?}",
                    first + r
                );
            }
            let argmax = p
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0 as i64;
            assert_eq!(
                labels[r], argmax,
                "{context}: label is not the argmax of {p:?}"
            );
        }
    }
}

/// A V2 JSON inference request for rows `range` of a reference.
pub fn v2_request(r: &Reference, range: std::ops::Range<usize>) -> Value {
    let mut shape = r.input_shape.clone();
    shape[0] = range.len();
    let data: Vec<f64> = range.flat_map(|i| r.row(i).to_vec()).collect();
    serde_json::json!({
        "inputs": [{"name": r.input_name, "shape": shape, "datatype": "FP32", "data": data}]
    })
}

/// The flat numbers of a V2 JSON output named `name`.
pub fn v2_output(resp: &Value, name: &str) -> Vec<f64> {
    resp["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output {name} in {resp}"))["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

pub fn as_i64(xs: &[f64]) -> Vec<i64> {
    xs.iter().map(|&x| x as i64).collect()
}

/// The requests a server's `/metrics` text counts with this status code, over
/// every route (prediction routes expose their codes at 0 from the start, so a
/// series' presence says nothing).
pub fn requests_with_code(metrics: &str, code: u16) -> u64 {
    let label = format!("code=\"{code}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("hoist_requests_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
