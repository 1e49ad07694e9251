//! The `hoist` binary against a REAL MLflow tracking server: one server (MLflow from
//! `.venv-mlflow`, made by `tools/mlflow-venv.sh`, or the python named by
//! `HOIST_MLFLOW_PYTHON`) on 127.0.0.1 with a SQLite backend, versions registered with
//! the real Python client, then read, shown and fetched with `hoist --registry URL`;
//! a model registered by `hoist model register` (files through the artifact proxy),
//! then listed, shown, fetched and re-registered with hoist and downloaded, loaded and
//! run with MLflow's own client;
//! a webhook made by `hoist mlflow connect` delivering an alias move set with the
//! Python client to `hoist watch --webhook-listen`, and `hoist watch` polling alone.
//!
//! Without the venv this test FAILS (it does not skip): run `bash tools/mlflow-venv.sh`.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use hoist_testkit::{MlflowServer, PyClient, mlflow_python, repo_root, tail};
use serde_json::{Value, json};

const MODEL: &str = "hoist_cli_e2e";
/// A model hoist registers into MLflow itself.
const REGISTERED: &str = "hoist_cli_registered";
const SECRET: &str = "hoist-cli-e2e-secret";

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

/// Every file under `a` is under `b` with the same bytes, and the other way round.
fn assert_same_files(a: &Path, b: &Path) {
    let list = |root: &Path| {
        let mut files = Vec::new();
        hoist_types::collect_files(root, root, &mut files).unwrap();
        files.sort();
        files
    };
    let files = list(a);
    assert_eq!(files, list(b), "{} and {}", a.display(), b.display());
    for f in &files {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn hoist_cli_registers_into_reads_and_hears_a_real_mlflow_server() {
    let test_start = Instant::now();
    let py = mlflow_python();
    let tmp = std::env::temp_dir().join(format!("hoist-cli-mlflow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let server = MlflowServer::start(&py, &tmp);
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
    println!("read phase done at {:?}", test_start.elapsed());

    // ---- hoist model register into MLflow (uploads through the artifact proxy) ----
    let pkg = repo_root().join("examples/models/breast_cancer_lr");
    let pkg_s = pkg.to_str().unwrap();
    let want = hoist_types::digest_path(&pkg).unwrap();
    let t = Instant::now();
    let r = json_ok(
        &tmp,
        &uri,
        &[
            "model",
            "register",
            pkg_s,
            "--name",
            REGISTERED,
            "--tag",
            "team=risk",
            "--alias",
            "champion",
        ],
    );
    println!("hoist model register into MLflow took {:?}", t.elapsed());
    assert_eq!(r["created"], true, "{r}");
    let v = &r["version"];
    assert_eq!(
        (&v["name"], &v["version"], &v["status"]),
        (&json!(REGISTERED), &json!("1"), &json!("READY")),
        "{r}"
    );
    assert_eq!(v["digest"], want.as_str(), "{r}");
    assert_eq!(v["tags"]["hoist.digest"], want.as_str(), "{r}");
    assert_eq!(v["tags"]["team"], "risk", "{r}");
    assert_eq!(v["aliases"], json!(["champion"]), "{r}");
    assert!(
        v["source"]
            .as_str()
            .unwrap()
            .starts_with("mlflow-artifacts:/")
            && v["run_id"].is_string(),
        "{r}"
    );
    // (a) hoist lists and shows it, with the alias and the digest tag.
    let listed = json_ok(&tmp, &uri, &["model", "list"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == REGISTERED
                && m["latest_version"] == "1"
                && m["aliases"] == json!({"champion": "1"})),
        "{listed}"
    );
    let shown = json_ok(
        &tmp,
        &uri,
        &["model", "show", &format!("{REGISTERED}@champion")],
    );
    assert_eq!(shown["version"], "1", "{shown}");
    assert_eq!(shown["tags"]["hoist.digest"], want.as_str(), "{shown}");
    // (b) hoist fetches it, verified, and the files are the originals.
    let to = tmp.join("fetched-registered");
    let fetched = json_ok(
        &tmp,
        &uri,
        &[
            "model",
            "fetch",
            &format!("{REGISTERED}@champion"),
            "--to",
            to.to_str().unwrap(),
        ],
    );
    assert_eq!(fetched["digest"], want.as_str(), "{fetched}");
    assert_same_files(&pkg, &to);
    // (c) MLflow's own client downloads and loads models:/NAME/1 and predicts with it.
    let dl = client.call(
        json!({"op": "download", "uri": format!("models:/{REGISTERED}/1"),
        "dst": tmp.join("py-download")}),
    );
    let dl = Path::new(dl["path"].as_str().unwrap());
    for f in ["MLmodel", "model.onnx", "input_example.json"] {
        assert_eq!(
            std::fs::read(dl.join(f)).unwrap(),
            std::fs::read(pkg.join(f)).unwrap(),
            "{f} as MLflow's client downloads it"
        );
    }
    let loaded = client.call(
        json!({"op": "load", "uri": format!("models:/{REGISTERED}@champion"),
        "input": pkg.join("input_example.json")}),
    );
    assert_eq!(
        loaded["flavors"],
        json!(["onnx", "python_function"]),
        "{loaded}"
    );
    let rows: Value =
        serde_json::from_slice(&std::fs::read(pkg.join("input_example.json")).unwrap()).unwrap();
    assert_eq!(
        loaded["predictions"]["label"].as_array().map(Vec::len),
        rows.as_array().map(Vec::len),
        "{loaded}"
    );
    // (d) the same files again: no version 2, said so.
    let out = hoist(
        &tmp,
        &uri,
        &["model", "register", pkg_s, "--name", REGISTERED],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("{REGISTERED} version 1 already has these files"))
            && said.contains("nothing new registered"),
        "{said}"
    );
    let versions = json_ok(&tmp, &uri, &["model", "versions", REGISTERED]);
    assert_eq!(versions.as_array().unwrap().len(), 1, "{versions}");
    // Stages stay MLflow's business.
    let out = hoist(
        &tmp,
        &uri,
        &["model", "stage", REGISTERED, "1", "Production"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    println!("register phase done at {:?}", test_start.elapsed());

    // ---- hoist mlflow connect + hoist watch --webhook-listen ----
    let port = hoist_testkit::free_port();
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
