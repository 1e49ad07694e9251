//! The `hoist` binary against a REAL MLflow tracking server: one server per test binary
//! ([`hoist_testkit::mlflow`]: MLflow from `.venv-mlflow`, made by
//! `tools/mlflow-venv.sh`, or the python named by `HOIST_MLFLOW_PYTHON`) on 127.0.0.1
//! with a SQLite backend, shared by the tests below (each on models of its own).
//! Versions registered with the real Python client, then read, shown and fetched with
//! `hoist --registry URL`; a model registered by `hoist model register` (files through
//! the artifact proxy), then listed, shown, fetched and re-registered with hoist and
//! downloaded, loaded and run with MLflow's own client; a webhook made by
//! `hoist mlflow connect` delivering an alias move set with the Python client to
//! `hoist watch --webhook-listen`, and `hoist watch` polling alone.
//!
//! The same tests run against MLflow 2.x too (tools/test.sh runs this binary again with
//! `HOIST_MLFLOW_PYTHON` pointing into `.venv-mlflow2`); 2.x has no webhooks, so there
//! `hoist mlflow connect` must fail at once with a message naming the server's version.
//!
//! Without the venv these tests FAIL (they do not skip): run `bash tools/mlflow-venv.sh`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hoist_testkit::{Scratch, example_model, free_port, mlflow, poll, unique_name, wait_for};
use serde_json::{Value, json};

const SECRET: &str = "hoist-cli-e2e-secret";

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn uri() -> &'static str {
    &mlflow().uri
}

fn pkg() -> PathBuf {
    example_model("breast_cancer_lr")
}

fn onnx_path() -> PathBuf {
    pkg().join("model.onnx")
}

/// `hoist --registry URI ARGS` with a scratch `HOIST_HOME` (the fetch cache).
fn hoist(tmp: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hoist"));
    c.args(["--registry", uri()])
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

fn json_ok(tmp: &Path, args: &[&str]) -> Value {
    let out: Output = hoist(tmp, args).arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "hoist {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A model of its own: two versions registered with the real client, `champion` → `at`.
fn model(prefix: &str, at: &str) -> String {
    let name = unique_name(prefix);
    let mut c = mlflow().client();
    assert_eq!(c.register(&name, &onnx_path(), 2), ["1", "2"]);
    c.set_alias(&name, "champion", at);
    name
}

/// Shared by the tests that only read: two versions, `champion` → 1.
fn read_only_model() -> &'static str {
    static MODEL: OnceLock<String> = OnceLock::new();
    MODEL.get_or_init(|| model("hoist_cli_e2e", "1"))
}

/// `hoist model register` of the example package as a new model (tag `team=risk`,
/// alias `champion`); the name and hoist's answer.
fn register(tmp: &Path, prefix: &str) -> (String, Value) {
    let name = unique_name(prefix);
    let t = Instant::now();
    let r = json_ok(
        tmp,
        &[
            "model",
            "register",
            pkg().to_str().unwrap(),
            "--name",
            &name,
            "--tag",
            "team=risk",
            "--alias",
            "champion",
        ],
    );
    println!("hoist model register into MLflow took {:?}", t.elapsed());
    (name, r)
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

/// Starts `hoist watch ARGS`; its first stderr line and the process.
fn watch(tmp: &Path, args: &[&str]) -> (Reaped, BufReader<std::process::ChildStderr>, String) {
    let mut w = Reaped(
        hoist(tmp, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = BufReader::new(w.0.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    (w, stderr, line)
}

fn stdout_of(w: &mut Reaped) -> String {
    let mut out = String::new();
    w.0.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    out
}

// ---- read through hoist: versions registered with the real client ----

#[test]
fn model_versions_lists_newest_first() {
    let model = read_only_model();
    let tmp = Scratch::new("cli-mlflow-versions");
    let versions = json_ok(&tmp, &["model", "versions", model]);
    let numbers: Vec<&str> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, ["2", "1"], "{versions}");
}

#[test]
fn model_show_resolves_an_alias() {
    let model = read_only_model();
    let tmp = Scratch::new("cli-mlflow-show");
    let shown = json_ok(&tmp, &["model", "show", &format!("{model}@champion")]);
    assert_eq!(shown["version"], "1", "{shown}");
    assert_eq!(shown["aliases"], json!(["champion"]), "{shown}");
}

#[test]
fn model_list_shows_the_latest_version() {
    let model = read_only_model();
    let tmp = Scratch::new("cli-mlflow-list");
    let listed = json_ok(&tmp, &["model", "list"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == model && m["latest_version"] == "2"),
        "{listed}"
    );
}

#[test]
fn model_show_names_an_unknown_alias_with_the_not_found_exit_code() {
    let model = read_only_model();
    let tmp = Scratch::new("cli-mlflow-unknown");
    let out = hoist(&tmp, &["model", "show", &format!("{model}@nope")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[test]
fn model_fetch_writes_the_files_and_records_their_digest_in_mlflow() {
    let model = model("hoist_cli_fetch", "1");
    let tmp = Scratch::new("cli-mlflow-fetch");
    let to = tmp.join("fetched");
    let fetched = json_ok(
        &tmp,
        &[
            "model",
            "fetch",
            &format!("{model}@champion"),
            "--to",
            to.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(to.join("model.onnx")).unwrap(),
        std::fs::read(onnx_path()).unwrap()
    );
    let digest = fetched["digest"].as_str().unwrap().to_string();
    let v1 = json_ok(&tmp, &["model", "show", &format!("{model}/1")]);
    assert_eq!(v1["tags"]["hoist.digest"], digest.as_str(), "{v1}");
}

// ---- hoist model register into MLflow (uploads through the artifact proxy) ----

#[test]
fn model_register_uploads_a_package_with_its_digest_tags_and_alias() {
    let tmp = Scratch::new("cli-mlflow-register");
    let want = hoist_types::digest_path(&pkg()).unwrap();
    let (name, r) = register(&tmp, "hoist_cli_registered");
    assert_eq!(r["created"], true, "{r}");
    let v = &r["version"];
    assert_eq!(
        (&v["name"], &v["version"], &v["status"]),
        (&json!(name), &json!("1"), &json!("READY")),
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
}

#[test]
fn a_registered_model_is_listed_and_shown_with_its_alias_and_digest() {
    let tmp = Scratch::new("cli-mlflow-registered-show");
    let want = hoist_types::digest_path(&pkg()).unwrap();
    let (name, _) = register(&tmp, "hoist_cli_registered_show");
    let listed = json_ok(&tmp, &["model", "list"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == name.as_str()
                && m["latest_version"] == "1"
                && m["aliases"] == json!({"champion": "1"})),
        "{listed}"
    );
    let shown = json_ok(&tmp, &["model", "show", &format!("{name}@champion")]);
    assert_eq!(shown["version"], "1", "{shown}");
    assert_eq!(shown["tags"]["hoist.digest"], want.as_str(), "{shown}");
}

#[test]
fn a_registered_model_fetches_verified_as_the_original_files() {
    let tmp = Scratch::new("cli-mlflow-registered-fetch");
    let want = hoist_types::digest_path(&pkg()).unwrap();
    let (name, _) = register(&tmp, "hoist_cli_registered_fetch");
    let to = tmp.join("fetched-registered");
    let fetched = json_ok(
        &tmp,
        &[
            "model",
            "fetch",
            &format!("{name}@champion"),
            "--to",
            to.to_str().unwrap(),
        ],
    );
    assert_eq!(fetched["digest"], want.as_str(), "{fetched}");
    assert_same_files(&pkg(), &to);
}

#[test]
fn mlflows_own_client_downloads_loads_and_predicts_with_a_registered_model() {
    let tmp = Scratch::new("cli-mlflow-registered-python");
    let pkg = pkg();
    let (name, _) = register(&tmp, "hoist_cli_registered_py");
    let mut client = mlflow().client();
    let dl = client.call(json!({"op": "download", "uri": format!("models:/{name}/1"),
        "dst": tmp.join("py-download")}));
    let dl = Path::new(dl["path"].as_str().unwrap());
    for f in ["MLmodel", "model.onnx", "input_example.json"] {
        assert_eq!(
            std::fs::read(dl.join(f)).unwrap(),
            std::fs::read(pkg.join(f)).unwrap(),
            "{f} as MLflow's client downloads it"
        );
    }
    let loaded = client.call(
        json!({"op": "load", "uri": format!("models:/{name}@champion"),
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
}

#[test]
fn registering_the_same_files_again_registers_nothing_and_says_so() {
    let tmp = Scratch::new("cli-mlflow-register-again");
    let (name, _) = register(&tmp, "hoist_cli_registered_again");
    let out = hoist(
        &tmp,
        &[
            "model",
            "register",
            pkg().to_str().unwrap(),
            "--name",
            &name,
        ],
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
        said.contains(&format!("{name} version 1 already has these files"))
            && said.contains("nothing new registered"),
        "{said}"
    );
    let versions = json_ok(&tmp, &["model", "versions", &name]);
    assert_eq!(versions.as_array().unwrap().len(), 1, "{versions}");
}

#[test]
fn model_stage_is_left_to_mlflow() {
    // Stages stay MLflow's business.
    let tmp = Scratch::new("cli-mlflow-stage");
    let (name, _) = register(&tmp, "hoist_cli_registered_stage");
    let out = hoist(&tmp, &["model", "stage", &name, "1", "Production"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

// ---- hoist mlflow connect + hoist watch ----

/// `hoist mlflow connect --url http://127.0.0.1:PORT/webhook`; its answer.
fn connect(tmp: &Path, port: u16) -> Value {
    let hook_url = format!("http://127.0.0.1:{port}/webhook");
    json_ok(
        tmp,
        &["mlflow", "connect", "--url", &hook_url, "--secret", SECRET],
    )
}

/// On a server without webhooks (MLflow 2.x): `hoist mlflow connect` fails at once,
/// saying the server's version has no webhooks API and to poll instead. False then.
fn webhooks_or_refused(tmp: &Path) -> bool {
    if mlflow().has_webhooks() {
        return true;
    }
    let hook_url = format!("http://127.0.0.1:{}/webhook", free_port());
    let out = hoist(
        tmp,
        &["mlflow", "connect", "--url", &hook_url, "--secret", SECRET],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "connect succeeded on MLflow {}",
        mlflow().version
    );
    assert!(
        stderr.contains("has no webhooks API") && stderr.contains(&mlflow().version),
        "{stderr}"
    );
    println!(
        "MLflow {}: `hoist mlflow connect` refused: {stderr}",
        mlflow().version
    );
    // `hoist watch --webhook-listen` would wait for deliveries that never come: refused.
    let secret_file = tmp.join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let out = hoist(
        tmp,
        &[
            "watch",
            "--webhook-listen",
            &listen,
            "--webhook-secret-file",
            secret_file.to_str().unwrap(),
            "--max-events",
            "1",
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "watch --webhook-listen ran on MLflow {}",
        mlflow().version
    );
    assert!(stderr.contains("has no webhooks API"), "{stderr}");
    false
}

#[test]
fn mlflow_connect_makes_a_webhook_for_alias_moves() {
    let tmp = Scratch::new("cli-mlflow-connect");
    if !webhooks_or_refused(&tmp) {
        return;
    }
    let created = connect(&tmp, free_port());
    let hook_id = created["webhook_id"].as_str().unwrap();
    assert!(!hook_id.is_empty(), "{created}");
    assert!(
        created["events"]
            .as_array()
            .unwrap()
            .contains(&json!("model_version_alias.created")),
        "{created}"
    );
}

#[test]
fn watch_hears_an_alias_move_through_the_webhook_hoist_connected() {
    let model = model("hoist_cli_e2e_webhook", "1");
    let tmp = Scratch::new("cli-mlflow-watch-webhook");
    if !webhooks_or_refused(&tmp) {
        return;
    }
    let port = free_port();
    connect(&tmp, port);
    let secret_file = tmp.join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let listen = format!("127.0.0.1:{port}");
    let (mut watch, mut stderr, line) = watch(
        &tmp,
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
            &model,
            "--alias",
            "champion",
            "--max-events",
            "1",
            "--json",
        ],
    );
    assert!(
        line.starts_with(&format!("watching {}", uri())) && line.contains("webhooks on"),
        "{line}"
    );
    // Let the server's webhook cache (TTL 1 s) expire, then promote version 2. If the
    // server still held a stale webhook list, set the alias again.
    std::thread::sleep(Duration::from_millis(1500));
    let first = Instant::now();
    let status = loop {
        mlflow().client().set_alias(&model, "champion", "2");
        if let Some(s) = poll(Duration::from_secs(5), || watch.0.try_wait().unwrap()) {
            break s;
        }
        assert!(
            first.elapsed() < Duration::from_secs(30),
            "hoist watch printed no event within 30 s; server log:\n{}",
            mlflow().log_tail()
        );
    };
    let mut err = String::new();
    stderr.read_to_string(&mut err).unwrap();
    assert!(status.success(), "{status}: {err}");
    let out = stdout_of(&mut watch);
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
            &json!(model),
            &json!("2"),
            &json!("champion"),
            &json!("alias_set"),
            &json!("webhook")
        ),
        "{e}"
    );
    assert_eq!(e["registry"], uri());
    assert!(e["delivery"].is_string(), "{e}");
    println!(
        "webhook event {:?} after the alias was set",
        first.elapsed()
    );
}

#[test]
fn watch_polling_alone_sees_an_alias_move() {
    // No webhook listener: polling alone sees the move.
    let model = model("hoist_cli_e2e_poll", "2");
    let tmp = Scratch::new("cli-mlflow-watch-poll");
    let (mut watch, _stderr, line) = watch(
        &tmp,
        &[
            "watch",
            "--poll-interval",
            "0.3",
            "--model",
            &model,
            "--max-events",
            "1",
            "--json",
        ],
    );
    assert!(line.starts_with(&format!("watching {}", uri())), "{line}");
    mlflow().client().set_alias(&model, "champion", "1");
    let set_at = Instant::now();
    let status = wait_for(
        Duration::from_secs(15),
        "the polling watch to print an event",
        || watch.0.try_wait().unwrap(),
    );
    assert!(status.success(), "{status}");
    let out = stdout_of(&mut watch);
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
}
