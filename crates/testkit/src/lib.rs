//! Test support shared by hoist's crates (a dev-dependency only).
//!
//! - [`MlflowServer`]: a REAL MLflow tracking server (MLflow 3.17.2 from `.venv-mlflow`,
//!   made by `tools/mlflow-venv.sh`, or the python named by `HOIST_MLFLOW_PYTHON`) on
//!   127.0.0.1 with a SQLite backend and webhooks to loopback allowed; dropping it kills
//!   its whole process group.
//! - [`PyClient`]: a long-lived Python process driving the real `mlflow` client, one
//!   JSON command a line (`register`, `alias`, `stage`, `webhook`, `download`, `load`).
//! - [`kube_api::FakeKubeApi`]: a stand-in Kubernetes API server on 127.0.0.1 (plain
//!   HTTP, in-memory objects, Deployments that roll out at once unless told to fail),
//!   and a kubeconfig pointing at it.
//!
//! Without the venv, tests using the MLflow ones FAIL (they do not skip): run
//! `bash tools/mlflow-venv.sh`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod kube_api;

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The python with MLflow installed: `HOIST_MLFLOW_PYTHON`, else `.venv-mlflow`.
pub fn mlflow_python() -> PathBuf {
    if let Ok(p) = std::env::var("HOIST_MLFLOW_PYTHON") {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "HOIST_MLFLOW_PYTHON={} does not exist; run `bash tools/mlflow-venv.sh`",
            p.display()
        );
        return p;
    }
    let p = repo_root().join(".venv-mlflow/bin/python");
    assert!(
        p.exists(),
        "no MLflow python: neither HOIST_MLFLOW_PYTHON nor {} exists. \
         Run `bash tools/mlflow-venv.sh` (it installs mlflow 3.17.2 into .venv-mlflow) \
         and run the tests again.",
        p.display()
    );
    p
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The last lines of a log file, for failure messages.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Whether `GET path` on `addr` answers 200 (plain HTTP/1.0, no client library).
pub fn answers_200(addr: &str, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).split_whitespace().nth(1) == Some("200")
}

/// A real MLflow tracking server; dropping it kills its process group.
pub struct MlflowServer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub uri: String,
    /// The server's combined output.
    pub log: PathBuf,
}

impl MlflowServer {
    /// Starts `mlflow server` with its data under `tmp` and waits for `/health`.
    pub fn start(py: &Path, tmp: &Path) -> MlflowServer {
        let port = free_port();
        let fernet = Command::new(py)
            .args([
                "-c",
                "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())",
            ])
            .output()
            .expect("run python for a Fernet key");
        assert!(fernet.status.success(), "{fernet:?}");
        let fernet = String::from_utf8(fernet.stdout).unwrap().trim().to_string();
        let log = tmp.join("mlflow-server.log");
        let logf = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(py);
        cmd.args(["-m", "mlflow", "server", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args(["--workers", "2", "--backend-store-uri"])
            .arg(format!("sqlite:///{}/mlflow.db", tmp.display()))
            .arg("--artifacts-destination")
            .arg(tmp.join("artifacts"))
            .env("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http,https")
            .env("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true")
            .env("MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY", fernet)
            // The server caches its webhook list (60 s by default); 1 s keeps tests short.
            .env("MLFLOW_WEBHOOK_CACHE_TTL", "1")
            .env("MLFLOW_DISABLE_TELEMETRY", "true")
            .env("DO_NOT_TRACK", "true")
            .current_dir(tmp)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("start mlflow server");
        let server = MlflowServer {
            child,
            uri: format!("http://127.0.0.1:{port}"),
            log,
        };
        let start = Instant::now();
        let addr = format!("127.0.0.1:{port}");
        while !answers_200(&addr, "/health") {
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "mlflow server did not answer /health within 90 s; log:\n{}",
                tail(&server.log)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        println!("mlflow server healthy after {:?}", start.elapsed());
        server
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        let pgid = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &pgid]).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Workers may outlive the parent: kill whatever is left of the group.
        let _ = Command::new("kill").args(["-KILL", "--", &pgid]).status();
        let _ = self.child.wait();
    }
}

/// A long-lived Python process driving the real `mlflow` client.
pub struct PyClient {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    log: PathBuf,
}

const CLIENT_PY: &str = r#"
import json, sys, time
def reply(**kw):
    print("@@ " + json.dumps(kw), flush=True)
import mlflow, onnx
from mlflow import MlflowClient
c = MlflowClient()
reply(ok=True)
for line in sys.stdin:
    cmd = json.loads(line)
    op = cmd["op"]
    try:
        if op == "register":
            model = onnx.load(cmd["path"])
            versions = []
            for _ in range(cmd["count"]):
                with mlflow.start_run():
                    info = mlflow.onnx.log_model(model, name="model", registered_model_name=cmd["name"])
                versions.append(str(info.registered_model_version))
            reply(ok=True, versions=versions)
        elif op == "alias":
            t = time.time()
            c.set_registered_model_alias(cmd["name"], cmd["alias"], cmd["version"])
            reply(ok=True, before=t, after=time.time())
        elif op == "stage":
            c.transition_model_version_stage(cmd["name"], cmd["version"], cmd["stage"])
            reply(ok=True)
        elif op == "download":
            # mlflow.artifacts.download_artifacts("models:/...", dst_path=...)
            p = mlflow.artifacts.download_artifacts(cmd["uri"], dst_path=cmd["dst"])
            reply(ok=True, path=p)
        elif op == "load":
            # mlflow.pyfunc.load_model, then predict on a JSON ndarray input if given.
            import numpy as np
            m = mlflow.pyfunc.load_model(cmd["uri"])
            out = None
            if cmd.get("input"):
                with open(cmd["input"]) as f:
                    x = np.array(json.load(f), dtype=np.float32)
                pred = m.predict(x)
                if isinstance(pred, dict):
                    out = {k: np.asarray(v).tolist() for k, v in pred.items()}
                else:
                    out = np.asarray(pred).tolist()
            reply(ok=True, flavors=sorted(m.metadata.flavors), predictions=out)
        elif op == "webhook":
            w = c.create_webhook(name=cmd["name"], url=cmd["url"], events=cmd["events"], secret=cmd["secret"])
            reply(ok=True, id=w.webhook_id)
        else:
            reply(ok=False, error="unknown op " + op)
    except Exception as e:
        reply(ok=False, error=repr(e))
"#;

impl PyClient {
    /// Starts the client against the tracking server at `uri`, working in `tmp`.
    pub fn start(py: &Path, tmp: &Path, uri: &str) -> PyClient {
        let log = tmp.join("mlflow-client.log");
        let mut child = Command::new(py)
            .args(["-u", "-c", CLIENT_PY])
            .env("MLFLOW_TRACKING_URI", uri)
            .env("MLFLOW_DISABLE_TELEMETRY", "true")
            .env("DO_NOT_TRACK", "true")
            .current_dir(tmp)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start the python mlflow client");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut c = PyClient {
            child,
            stdin,
            stdout,
            log,
        };
        c.read_reply();
        c
    }

    fn read_reply(&mut self) -> Value {
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "python client exited; log:\n{}", tail(&self.log));
            if let Some(j) = line.strip_prefix("@@ ") {
                let v: Value = serde_json::from_str(j).unwrap();
                assert_eq!(
                    v["ok"],
                    true,
                    "python client: {v}; log:\n{}",
                    tail(&self.log)
                );
                return v;
            }
        }
    }

    /// Sends one command (`{"op": ...}`) and returns its successful reply.
    pub fn call(&mut self, cmd: Value) -> Value {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        self.read_reply()
    }
}

impl Drop for PyClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
