//! The `hoist` binary against a REAL MLflow tracking server: one server (MLflow from
//! `.venv-mlflow`, made by `tools/mlflow-venv.sh`, or the python named by
//! `HOIST_MLFLOW_PYTHON`) on 127.0.0.1 with a SQLite backend, versions registered with
//! the real Python client, then read, shown and fetched with `hoist --registry URL`,
//! a webhook made by `hoist mlflow connect` delivering an alias move set with the
//! Python client to `hoist watch --webhook-listen`, and `hoist watch` polling alone.
//!
//! Without the venv this test FAILS (it does not skip): run `bash tools/mlflow-venv.sh`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const MODEL: &str = "hoist_cli_e2e";
const SECRET: &str = "hoist-cli-e2e-secret";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> PathBuf {
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
         Run `bash tools/mlflow-venv.sh` and run the tests again.",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Whether `GET path` on `addr` answers 200 (plain HTTP/1.0, no client library).
fn answers_200(addr: &str, path: &str) -> bool {
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

/// The MLflow server; dropping it kills its process group.
struct Server {
    child: Child,
    uri: String,
    log: PathBuf,
}

impl Server {
    fn start(py: &Path, tmp: &Path) -> Server {
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
            // The server caches its webhook list (60 s by default); 1 s keeps the test short.
            .env("MLFLOW_WEBHOOK_CACHE_TTL", "1")
            .env("MLFLOW_DISABLE_TELEMETRY", "true")
            .env("DO_NOT_TRACK", "true")
            .current_dir(tmp)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("start mlflow server");
        let server = Server {
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

impl Drop for Server {
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

/// A long-lived Python process driving the real `mlflow` client, one JSON command a line.
struct PyClient {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    log: PathBuf,
}

const CLIENT_PY: &str = r#"
import json, sys
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
            c.set_registered_model_alias(cmd["name"], cmd["alias"], cmd["version"])
            reply(ok=True)
        else:
            reply(ok=False, error="unknown op " + op)
    except Exception as e:
        reply(ok=False, error=repr(e))
"#;

impl PyClient {
    fn start(py: &Path, tmp: &Path, uri: &str) -> PyClient {
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

    fn call(&mut self, cmd: Value) -> Value {
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

/// Kills a child process if the test fails before it exits.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `hoist --registry URI ARGS` with a scratch `HOIST_HOME` (the fetch cache).
fn hoist(tmp: &Path, uri: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hoist"));
    c.args(["--registry", uri])
        .args(args)
        .env("HOIST_HOME", tmp.join("hoist-home"))
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("MLFLOW_TRACKING_USERNAME")
        .env_remove("MLFLOW_TRACKING_PASSWORD")
        .env_remove("MLFLOW_TRACKING_TOKEN")
        .current_dir(tmp)
        .stdin(Stdio::null());
    c
}

fn json_ok(tmp: &Path, uri: &str, args: &[&str]) -> Value {
    let out: Output = hoist(tmp, uri, args).arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "hoist {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn hoist_cli_reads_a_real_mlflow_server_and_hears_its_webhooks() {
    let test_start = Instant::now();
    let py = python();
    let tmp = std::env::temp_dir().join(format!("hoist-cli-mlflow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let server = Server::start(&py, &tmp);
    let uri = server.uri.clone();
    let mut client = PyClient::start(&py, &tmp, &uri);

    // ---- two versions registered with the real client; champion -> 1 ----
    let onnx_path = repo_root().join("examples/models/breast_cancer_lr/model.onnx");
    let reg = client.call(json!({"op": "register", "name": MODEL, "path": onnx_path, "count": 2}));
    assert_eq!(reg["versions"], json!(["1", "2"]));
    client.call(json!({"op": "alias", "name": MODEL, "alias": "champion", "version": "1"}));
    println!("registered at {:?}", test_start.elapsed());

    // ---- read through hoist ----
    let versions = json_ok(&tmp, &uri, &["model", "versions", MODEL]);
    let numbers: Vec<&str> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, ["2", "1"], "{versions}");
    let shown = json_ok(&tmp, &uri, &["model", "show", &format!("{MODEL}@champion")]);
    assert_eq!(shown["version"], "1", "{shown}");
    assert_eq!(shown["aliases"], json!(["champion"]), "{shown}");
    let listed = json_ok(&tmp, &uri, &["model", "list"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == MODEL && m["latest_version"] == "2"),
        "{listed}"
    );
    // Fetch: the files, verified, with the digest recorded in MLflow.
    let to = tmp.join("fetched");
    let fetched = json_ok(
        &tmp,
        &uri,
        &[
            "model",
            "fetch",
            &format!("{MODEL}@champion"),
            "--to",
            to.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(to.join("model.onnx")).unwrap(),
        std::fs::read(&onnx_path).unwrap()
    );
    let digest = fetched["digest"].as_str().unwrap().to_string();
    let v1 = json_ok(&tmp, &uri, &["model", "show", &format!("{MODEL}/1")]);
    assert_eq!(v1["tags"]["hoist.digest"], digest.as_str(), "{v1}");
    // Unknown things are named, with the not-found exit code.
    let out = hoist(&tmp, &uri, &["model", "show", &format!("{MODEL}@nope")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    // Registering is MLflow's job.
    let out = hoist(
        &tmp,
        &uri,
        &[
            "model",
            "register",
            onnx_path.to_str().unwrap(),
            "--name",
            MODEL,
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mlflow.register_model"));
    println!("read phase done at {:?}", test_start.elapsed());

    // ---- hoist mlflow connect + hoist watch --webhook-listen ----
    let port = free_port();
    let hook_url = format!("http://127.0.0.1:{port}/webhook");
    let created = json_ok(
        &tmp,
        &uri,
        &["mlflow", "connect", "--url", &hook_url, "--secret", SECRET],
    );
    let hook_id = created["webhook_id"].as_str().unwrap();
    assert!(!hook_id.is_empty(), "{created}");
    assert!(
        created["events"]
            .as_array()
            .unwrap()
            .contains(&json!("model_version_alias.created")),
        "{created}"
    );

    let secret_file = tmp.join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let listen = format!("127.0.0.1:{port}");
    let mut watch = Reaped(
        hoist(
            &tmp,
            &uri,
            &[
                "watch",
                "--webhook-listen",
                &listen,
                "--webhook-secret-file",
                secret_file.to_str().unwrap(),
                // Polls now (baseline) and in a minute: the move must come by webhook.
                "--poll-interval",
                "60",
                "--model",
                MODEL,
                "--alias",
                "champion",
                "--max-events",
                "1",
                "--json",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let mut stderr = BufReader::new(watch.0.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(
        line.starts_with(&format!("watching {uri}")) && line.contains("webhooks on"),
        "{line}"
    );
    // Let the server's webhook cache (TTL 1 s) expire, then promote version 2. If the
    // server still held a stale webhook list, set the alias again.
    std::thread::sleep(Duration::from_millis(1500));
    let first = Instant::now();
    let status = 'outer: loop {
        client.call(json!({"op": "alias", "name": MODEL, "alias": "champion", "version": "2"}));
        let set_at = Instant::now();
        while set_at.elapsed() < Duration::from_secs(5) {
            if let Some(s) = watch.0.try_wait().unwrap() {
                break 'outer s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            first.elapsed() < Duration::from_secs(30),
            "hoist watch printed no event within 30 s; server log:\n{}",
            tail(&server.log)
        );
    };
    let mut err = String::new();
    stderr.read_to_string(&mut err).unwrap();
    assert!(status.success(), "{status}: {err}");
    let mut out = String::new();
    watch
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    let e: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(
        (
            &e["model"],
            &e["version"],
            &e["alias"],
            &e["kind"],
            &e["via"]
        ),
        (
            &json!(MODEL),
            &json!("2"),
            &json!("champion"),
            &json!("alias_set"),
            &json!("webhook")
        ),
        "{e}"
    );
    assert_eq!(e["registry"], uri.as_str());
    assert!(e["delivery"].is_string(), "{e}");
    println!(
        "webhook event {:?} after the alias was set; total {:?}",
        first.elapsed(),
        test_start.elapsed()
    );

    drop(watch);

    // ---- polling alone (no webhook listener) sees the next move ----
    let mut watch = Reaped(
        hoist(
            &tmp,
            &uri,
            &[
                "watch",
                "--poll-interval",
                "0.3",
                "--model",
                MODEL,
                "--max-events",
                "1",
                "--json",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let mut stderr = BufReader::new(watch.0.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with(&format!("watching {uri}")), "{line}");
    client.call(json!({"op": "alias", "name": MODEL, "alias": "champion", "version": "1"}));
    let set_at = Instant::now();
    let status = loop {
        if let Some(s) = watch.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            set_at.elapsed() < Duration::from_secs(15),
            "the polling watch printed no event"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let mut out = String::new();
    watch
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let e: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (&e["version"], &e["alias"], &e["via"]),
        (&json!("1"), &json!("champion"), &json!("poll")),
        "{e}"
    );
    println!(
        "polled event {:?} after the alias was set",
        set_at.elapsed()
    );
    drop(watch);
    drop(client);
    drop(server);
    let _ = std::fs::remove_dir_all(&tmp);
}
