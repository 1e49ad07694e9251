//! A real MLflow tracking server and the real MLflow Python client, for tests.
//!
//! [`mlflow()`] is the one server of a test binary: started on first use, shared by
//! every test of the binary (each test uses its own model names: [`unique_name`]), and
//! killed with its whole process group when the test process exits, however it exits
//! (a small supervisor process kills it when its stdin, a pipe from the test process,
//! reaches end of file).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::scratch::{Scratch, keep_scratch};
use crate::{answers_200, free_port, repo_root, tail};

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

/// Sets a fresh webhook secret encryption key, runs `argv[3:]` in a new session with its output appended to `argv[1]`, then waits
/// for end of file on stdin (the test process closed the pipe, or exited) or a signal,
/// kills the child's whole process group and removes `argv[2]` (unless it is empty).
const SUPERVISOR_PY: &str = r#"
import base64, os, shutil, signal, subprocess, sys
# A Fernet key (32 random bytes, URL-safe base64) for the webhook secrets.
os.environ["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"] = base64.urlsafe_b64encode(os.urandom(32)).decode()
def stop(*_):
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGHUP, stop)
log = open(sys.argv[1], "ab")
p = subprocess.Popen(sys.argv[3:], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                     start_new_session=True)
try:
    sys.stdin.buffer.read()
except BaseException:
    pass
finally:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()
    if sys.argv[2]:
        shutil.rmtree(sys.argv[2], ignore_errors=True)
"#;

/// A real MLflow tracking server; dropping it (or the test process exiting) kills its
/// whole process group.
pub struct MlflowServer {
    supervisor: Child,
    stdin: Option<ChildStdin>,
    /// `http://127.0.0.1:PORT`.
    pub uri: String,
    /// The server's combined output.
    pub log: PathBuf,
}

impl MlflowServer {
    /// Starts `mlflow server` with its data under `tmp` and waits for `/health`.
    pub fn start(py: &Path, tmp: &Path) -> MlflowServer {
        Self::spawn(py, tmp, free_port(), false)
    }

    /// `start`, and `tmp` is removed when the server stops (unless `HOIST_KEEP_SCRATCH`).
    fn spawn(py: &Path, tmp: &Path, port: u16, remove_dir: bool) -> MlflowServer {
        let log = tmp.join("mlflow-server.log");
        let remove = if remove_dir && !keep_scratch() {
            tmp.as_os_str().to_owned()
        } else {
            Default::default()
        };
        let mut cmd = Command::new(py);
        cmd.args(["-c", SUPERVISOR_PY])
            .arg(&log)
            .arg(remove)
            .arg(py)
            .args(["-m", "mlflow", "server", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args(["--workers", "2", "--backend-store-uri"])
            .arg(format!("sqlite:///{}/mlflow.db", tmp.display()))
            .arg("--artifacts-destination")
            .arg(tmp.join("artifacts"))
            .env("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http,https")
            .env("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true")
            // The server caches its webhook list (60 s by default); 1 s keeps tests short.
            .env("MLFLOW_WEBHOOK_CACHE_TTL", "1")
            .env("MLFLOW_DISABLE_TELEMETRY", "true")
            .env("DO_NOT_TRACK", "true")
            .current_dir(tmp)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut supervisor = cmd.spawn().expect("start mlflow server");
        let stdin = supervisor.stdin.take();
        let server = MlflowServer {
            supervisor,
            stdin,
            uri: format!("http://127.0.0.1:{port}"),
            log,
        };
        let start = Instant::now();
        let addr = format!("127.0.0.1:{port}");
        assert!(
            crate::wait::poll(Duration::from_secs(90), || answers_200(&addr, "/health")
                .then_some(()))
            .is_some(),
            "mlflow server did not answer /health within 90 s; log:\n{}",
            tail(&server.log)
        );
        println!("mlflow server healthy after {:?}", start.elapsed());
        server
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        // End of file on the supervisor's stdin: it kills the server's process group.
        drop(self.stdin.take());
        let _ = self.supervisor.wait();
    }
}

/// The MLflow server of this test binary, with the python client driving it.
pub struct SharedMlflow {
    /// `http://127.0.0.1:PORT`.
    pub uri: String,
    /// The python with MLflow installed.
    pub py: PathBuf,
    /// The server's data directory (removed when the test process exits).
    pub dir: PathBuf,
    /// The MLflow version of server and client (one venv), e.g. `3.17.2`.
    pub version: String,
    log: PathBuf,
    server: Mutex<Option<MlflowServer>>,
    client: Mutex<Option<PyClient>>,
}

impl SharedMlflow {
    /// The shared python client (one command at a time).
    pub fn client(&self) -> ClientGuard<'_> {
        ClientGuard(self.client.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }

    /// The MLflow major version (2 or 3): tests check what a 2.x server cannot do
    /// (webhooks) is refused instead of running it.
    pub fn major(&self) -> u32 {
        self.version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }

    /// Whether this server has the webhooks API (MLflow 3.3 and later).
    pub fn has_webhooks(&self) -> bool {
        let mut parts = self
            .version
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (major, minor) >= (3, 3)
    }

    /// Stops the client and the server and waits for them (from the exit hook).
    fn stop(&self) {
        if let Ok(mut c) = self.client.try_lock() {
            drop(c.take());
        }
        if let Ok(mut s) = self.server.try_lock() {
            drop(s.take());
        }
    }
}

/// The shared [`PyClient`], locked.
pub struct ClientGuard<'a>(MutexGuard<'a, Option<PyClient>>);

impl std::ops::Deref for ClientGuard<'_> {
    type Target = PyClient;
    fn deref(&self) -> &PyClient {
        self.0.as_ref().expect("the mlflow client is stopped")
    }
}

impl std::ops::DerefMut for ClientGuard<'_> {
    fn deref_mut(&mut self) -> &mut PyClient {
        self.0.as_mut().expect("the mlflow client is stopped")
    }
}

static SHARED: OnceLock<SharedMlflow> = OnceLock::new();

unsafe extern "C" {
    fn atexit(f: extern "C" fn()) -> std::ffi::c_int;
}

/// Runs at process exit: stop the shared client and server, so that nothing of them
/// is left once `cargo test` returns. (Should the process die without running exit
/// hooks, the supervisor still sees end of file and kills the server.)
extern "C" fn stop_shared() {
    if let Some(m) = SHARED.get() {
        m.stop();
    }
}

/// The one MLflow server of this test binary, started on first use (about 10 s) and
/// stopped when the process exits. Tests sharing it must use their own model names.
pub fn mlflow() -> &'static SharedMlflow {
    SHARED.get_or_init(|| {
        let py = mlflow_python();
        let dir = Scratch::new("mlflow-server").keep();
        let port = free_port();
        let uri = format!("http://127.0.0.1:{port}");
        // The client imports MLflow while the server starts.
        let mut client = PyClient::spawn(&py, &dir, &uri);
        let server = MlflowServer::spawn(&py, &dir, port, true);
        let hello = client.read_reply();
        let version = hello["version"].as_str().unwrap_or_default().to_string();
        println!("mlflow {version} at {}", server.uri);
        // SAFETY: registers a plain function with no arguments; it only touches SHARED.
        unsafe {
            atexit(stop_shared);
        }
        SharedMlflow {
            uri: server.uri.clone(),
            log: server.log.clone(),
            py,
            dir,
            version,
            server: Mutex::new(Some(server)),
            client: Mutex::new(Some(client)),
        }
    })
}

/// `PREFIX_N`, a name no other caller in this process gets: a model name of its own
/// for each test sharing [`mlflow()`].
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{prefix}_{}", NEXT.fetch_add(1, Ordering::Relaxed))
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
logged = {}
# MLflow 3 names a logged model `name`; 2.x calls it `artifact_path`.
MODEL_ARG = "name" if int(mlflow.__version__.split(".")[0]) >= 3 else "artifact_path"
reply(ok=True, version=mlflow.__version__)
for line in sys.stdin:
    cmd = json.loads(line)
    op = cmd["op"]
    try:
        if op == "register":
            # The first version of a file is logged (mlflow.onnx.log_model, in a run of
            # its own); later ones, under any name, register that logged model again
            # (mlflow.register_model): no second upload.
            versions = []
            for _ in range(cmd["count"]):
                src = logged.get(cmd["path"])
                if src is None:
                    model = onnx.load(cmd["path"])
                    with mlflow.start_run():
                        info = mlflow.onnx.log_model(model, registered_model_name=cmd["name"], **{MODEL_ARG: "model"})
                    logged[cmd["path"]] = info.model_uri
                    versions.append(str(info.registered_model_version))
                else:
                    versions.append(str(mlflow.register_model(src, cmd["name"]).version))
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
        let mut c = PyClient::spawn(py, tmp, uri);
        c.read_reply();
        c
    }

    /// Starts the client without waiting for it to be ready (it imports MLflow, which
    /// takes seconds, and contacts the server only on its first command).
    fn spawn(py: &Path, tmp: &Path, uri: &str) -> PyClient {
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
        PyClient {
            child,
            stdin,
            stdout,
            log,
        }
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

impl PyClient {
    /// Registers `count` versions of the ONNX file `path` as `name` (one run each with
    /// `mlflow.onnx.log_model`); the version numbers.
    pub fn register(&mut self, name: &str, path: &Path, count: usize) -> Vec<String> {
        let r = self.call(json!({"op": "register", "name": name, "path": path, "count": count}));
        r["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    /// Points `alias` of `name` at `version`; the unix time just before the call.
    pub fn set_alias(&mut self, name: &str, alias: &str, version: &str) -> f64 {
        let r = self.call(json!({"op": "alias", "name": name, "alias": alias, "version": version}));
        r["before"].as_f64().unwrap()
    }

    /// Moves `version` of `name` to `stage`.
    pub fn set_stage(&mut self, name: &str, version: &str, stage: &str) {
        self.call(json!({"op": "stage", "name": name, "version": version, "stage": stage}));
    }
}
