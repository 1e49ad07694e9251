//! MLflow models without an onnx flavor (a pickled scikit-learn pipeline, a custom
//! `mlflow.pyfunc.PythonModel`) released like ONNX ones: served by MLflow's own
//! scoring server (`python -m mlflow models serve`), which the daemon starts and
//! supervises, behind the same gateway, gates and live judgement. Real daemon, real
//! MLflow servers from the pinned MLflow venv (HOIST_MLFLOW_PYTHON, which
//! tools/test.sh exports), real traffic of golden-set rows. PyTorch models (the
//! pytorch flavor, `mlflow.pytorch`) the same way, from the pinned torch venv
//! (HOIST_TORCH_PYTHON, else tools/torch-venv.sh is run).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// The Python with MLflow 3.17 and scikit-learn the example pyfunc models load in.
fn mlflow_python() -> PathBuf {
    if let Some(p) = std::env::var_os("HOIST_MLFLOW_PYTHON") {
        return PathBuf::from(p);
    }
    let p = repo().join(".venv-mlflow/bin/python");
    assert!(
        p.exists(),
        "no MLflow venv: run tools/mlflow-venv.sh or set HOIST_MLFLOW_PYTHON"
    );
    p
}

/// The Python with torch 2.15, MLflow 3.17 and scikit-learn (tools/torch-venv.sh):
/// HOIST_TORCH_PYTHON, else the script's venv (made on the first run, reused after).
fn torch_python() -> PathBuf {
    if let Some(p) = std::env::var_os("HOIST_TORCH_PYTHON") {
        return PathBuf::from(p);
    }
    let out = std::process::Command::new("bash")
        .arg(repo().join("tools/torch-venv.sh"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run bash tools/torch-venv.sh");
    assert!(
        out.status.success(),
        "tools/torch-venv.sh failed (its messages are above)"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let python = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(python.exists(), "tools/torch-venv.sh printed {stdout:?}");
    python
}

/// An example pyfunc model (examples/pyfunc, written by
/// `tools/make_models.py --only pyfunc`).
fn pyfunc(name: &str) -> PathBuf {
    repo().join("examples/pyfunc").join(name)
}

fn register_pyfunc(home: &Path, name: &str, alias: Option<&str>) {
    let p = pyfunc(name);
    let mut args = vec!["model", "register", p.to_str().unwrap(), "--name", "m"];
    if let Some(a) = alias {
        args.extend(["--alias", a]);
    }
    ok(&hoist(home, &args));
}

/// One production environment with a canary step; the gates score the golden set
/// through the candidate's own server (MLflow's answers), loosely enough that the
/// constant model passes them and is caught by the live judgement instead.
fn config(python: &Path) -> String {
    let golden = repo().join("examples/data/breast_cancer_golden.csv");
    format!(
        r#"
[api]
listen = "127.0.0.1:0"

[registry]
url = "embedded"
poll_interval = "100ms"

[model]
name = "m"
trigger = {{ alias = "champion" }}

[server]
python = "{python}"
ready_timeout = "180s"
stop_grace = "5s"

[analysis]
interval = "200ms"
max_p99_ms = 5000
min_requests = 20
max_error_rate = 0.02
max_inconclusive = "60s"
compare_latency = false

[[gates]]
kind = "golden-set"
file = "{golden}"
min_accuracy = 0.3

# MLflow's scoring server describes no inputs or outputs: the gate compares the
# signatures the versions were logged with.
[[gates]]
kind = "signature"

[[environments]]
name = "production"
listen = "127.0.0.1:0"
steps = [{{ weight = 50, pause = "8s" }}]
"#,
        python = python.display(),
        golden = golden.display(),
    )
}

/// The release's last drift judgement saw at least 20 predicted classes from each
/// variant (read by the gateway from MLflow's answers).
fn judged_on_both(r: &Value) {
    let drift = r["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find_map(|t| t["event"]["numbers"]["drift"].as_object())
        .unwrap_or_else(|| panic!("no drift numbers in {r}"));
    let classes = |k: &str| -> u64 {
        drift[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .sum()
    };
    assert!(
        classes("candidate_classes") >= 20 && classes("stable_classes") >= 20,
        "{drift:?}"
    );
}

/// `hoist deploy m/<release> --wait` while two clients send the first eight golden
/// rows to `url`: its exit code, what it printed and what the clients saw.
fn deploy_under_traffic(
    home: &Path,
    url: &str,
    rows: &[Value],
    release: u64,
) -> (
    Option<i32>,
    String,
    std::collections::BTreeMap<String, (u64, u64)>,
) {
    let traffic = Traffic::of_rows(url, rows[..8].to_vec(), 2, Duration::from_millis(10));
    let (code, stdout) = deploy_wait(home, &format!("m/{release}"));
    (code, stdout, traffic.finish())
}

/// The golden set's feature rows, as `/invocations` clients send them.
fn golden_rows() -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join("examples/data/breast_cancer_golden.jsonl"))
        .expect("the golden set");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["features"].clone())
        .collect()
}

/// The model servers the daemon runs for `env`'s `variant`, from its status.
fn servers(d: &Daemon, env: &str, variant: &str) -> Vec<Value> {
    let s = d.get("/api/v1/status");
    s["environments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == env)
        .and_then(|e| e[variant]["servers"].as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn pyfunc_models_go_through_canaries_a_good_one_is_promoted_a_bad_one_rolled_back() {
    let home = temp_home("flavors");
    let python = mlflow_python();
    let d = Daemon::start(&home, &config(&python));
    let url = d.env("production");

    // v1, a pickled scikit-learn pipeline: its first release makes it stable.
    register_pyfunc(&home, "breast_cancer_sklearn", Some("champion"));
    let r = d.wait_done(1, Duration::from_secs(240));
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    // It is MLflow's scoring server answering through the gateway.
    let http = reqwest::blocking::Client::new();
    let rows = golden_rows();
    let body = json!({ "inputs": &rows[..4] }).to_string();
    let a = http
        .post(format!("{url}/invocations"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(a.status(), 200);
    assert_eq!(a.headers()["x-hoist-version"], "1");
    let v: Value = a.json().unwrap();
    assert_eq!(v["predictions"].as_array().map(Vec::len), Some(4), "{v}");
    let stable = servers(&d, "production", "stable");
    assert_eq!(stable.len(), 1, "{stable:?}");
    let pid = stable[0]["pid"].as_u64().expect("a pid") as u32;
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .replace('\0', " ");
    assert!(
        cmdline.contains("-m mlflow models serve") && cmdline.contains("--env-manager local"),
        "{cmdline}"
    );
    // A request MLflow cannot read is the client's error, passed on as MLflow's 4xx.
    let bad = http
        .post(format!("{url}/invocations"))
        .header("content-type", "application/json")
        .body(json!({ "inputs": [[1.0, 2.0]] }).to_string())
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);
    let e: Value = bad.json().unwrap();
    assert!(e["message"].as_str().unwrap().contains("shape"), "{e}");

    // v2, a custom PythonModel (a one-feature rule, 0.91 accurate): a canary step
    // under traffic, judged live (drift on the classes the gateway reads from
    // MLflow's answers), promoted.
    register_pyfunc(&home, "breast_cancer_custom", None);
    let (code, stdout, counts) = deploy_under_traffic(&home, &url, &rows, 2);
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(failed(&counts, ""), 0, "{counts:?}");
    assert!(served(&counts, "candidate/v2") > 0, "{counts:?}");
    let r = d.release(2);
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    let gate = r["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["event"]["event"] == "gates_passed")
        .map(|t| t["event"]["reports"][0].clone())
        .unwrap_or_else(|| panic!("no gates_passed in {r}"));
    assert_eq!(gate["gate"], "golden-set", "{gate}");
    assert!(
        gate["numbers"]["accuracy"].as_f64().unwrap() > 0.85,
        "{gate}"
    );
    let sig = r["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["event"]["event"] == "gates_passed")
        .map(|t| t["event"]["reports"][1].clone())
        .unwrap();
    assert_eq!(sig["gate"], "signature", "{sig}");
    assert_eq!(sig["passed"], true, "{sig}");
    assert_eq!(sig["numbers"]["source"], "MLmodel", "{sig}");
    assert_eq!(
        sig["numbers"]["candidate"]["inputs"][0]["shape"], "[-1,30]",
        "{sig}"
    );
    // The live judgement compared the classes both variants predicted.
    judged_on_both(&r);
    assert_eq!(
        Daemon::stable_version(&d.get("/api/v1/status"), "production").as_deref(),
        Some("2")
    );
    // The old stable's MLflow server stopped with its uvicorn (its whole group).
    hoist_testkit::poll(Duration::from_secs(30), || {
        (!Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")))
        .then_some(())
    })
    .expect("v1's MLflow server stopped");

    // v3 predicts "malignant" for every row: it passes the loose gate, then the
    // canary sees its class mix drift from stable's and rolls it back, with no
    // failed request on the way.
    register_pyfunc(&home, "breast_cancer_constant", None);
    let (code, stdout, counts) = deploy_under_traffic(&home, &url, &rows, 3);
    assert_eq!(code, Some(5), "{stdout}");
    assert_eq!(failed(&counts, ""), 0, "{counts:?}");
    let r = d.release(3);
    let reason = r["outcome"]["reason"].as_str().unwrap_or_default();
    assert!(reason.to_lowercase().contains("psi"), "{r}");
    assert_eq!(
        Daemon::stable_version(&d.get("/api/v1/status"), "production").as_deref(),
        Some("2")
    );
    d.stop();
}

/// The `-m DIR` an MLflow server was started with, and its command line.
fn served_model(server: &Value) -> (PathBuf, String) {
    let pid = server["pid"].as_u64().expect("a pid");
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<&str> = cmdline.split('\0').collect();
    let dir = args
        .windows(2)
        .find(|w| w[0] == "-m" && w[1] != "mlflow")
        .map(|w| PathBuf::from(w[1]))
        .unwrap_or_else(|| panic!("no -m DIR in {args:?}"));
    (dir, args.join(" "))
}

#[test]
fn pytorch_models_go_through_canaries_a_good_one_is_promoted_a_bad_one_rolled_back() {
    let home = temp_home("flavors-torch");
    let python = torch_python();
    let d = Daemon::start(&home, &config(&python));
    let url = d.env("production");
    let rows = golden_rows();

    // v1, the pickled scikit-learn pipeline, goes live (the torch venv has the MLflow
    // venv's scikit-learn pins).
    register_pyfunc(&home, "breast_cancer_sklearn", Some("champion"));
    let r = d.wait_done(1, Duration::from_secs(240));
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");

    // v2, a PyTorch MLP (`mlflow.pytorch`, 0.95 accurate): a canary step under
    // traffic, judged live on the classes MLflow's answers hold, promoted with no
    // failed request.
    register_pyfunc(&home, "breast_cancer_torch", None);
    let (code, stdout, counts) = deploy_under_traffic(&home, &url, &rows, 2);
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(failed(&counts, ""), 0, "{counts:?}");
    assert!(served(&counts, "candidate/v2") > 0, "{counts:?}");
    assert!(served(&counts, "stable/v1") > 0, "{counts:?}");
    let r = d.release(2);
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    let transitions = r["transitions"].as_array().unwrap();
    let reports = transitions
        .iter()
        .find(|t| t["event"]["event"] == "gates_passed")
        .map(|t| t["event"]["reports"].clone())
        .unwrap_or_else(|| panic!("no gates_passed in {r}"));
    assert_eq!(reports[0]["gate"], "golden-set", "{reports}");
    assert!(
        reports[0]["numbers"]["accuracy"].as_f64().unwrap() > 0.9,
        "{reports}"
    );
    // The PyTorch model was logged with the same signature as the pipeline.
    assert_eq!(reports[1]["gate"], "signature", "{reports}");
    assert_eq!(reports[1]["passed"], true, "{reports}");
    judged_on_both(&r);
    assert_eq!(
        Daemon::stable_version(&d.get("/api/v1/status"), "production").as_deref(),
        Some("2")
    );
    // Live now: MLflow's scoring server, from the torch venv, serving the pytorch
    // flavor, answering a class label per row through the gateway.
    let stable = servers(&d, "production", "stable");
    assert_eq!(stable.len(), 1, "{stable:?}");
    let (dir, cmdline) = served_model(&stable[0]);
    assert!(
        cmdline.starts_with(&format!("{} -m mlflow models serve", python.display()))
            && cmdline.contains("--env-manager local"),
        "{cmdline}"
    );
    let mlmodel = std::fs::read_to_string(dir.join("MLmodel")).unwrap();
    assert!(
        mlmodel.contains("loader_module: mlflow.pytorch") && mlmodel.contains("\n  pytorch:"),
        "{mlmodel}"
    );
    let answer = reqwest::blocking::Client::new()
        .post(format!("{url}/invocations"))
        .header("content-type", "application/json")
        .body(json!({ "inputs": &rows[..4] }).to_string())
        .send()
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-hoist-version"], "2");
    let v: Value = answer.json().unwrap();
    let labels = v["predictions"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(labels.len(), 4, "{v}");
    assert!(
        labels.iter().all(|l| l == 0 || l == 1),
        "class labels expected: {v}"
    );

    // v3, the same MLP answering "malignant" for every row: it passes the loose gate,
    // then the canary's class mix drifts from stable's and it is rolled back, with no
    // failed request; v2 stays live.
    register_pyfunc(&home, "breast_cancer_torch_bad", None);
    let (code, stdout, counts) = deploy_under_traffic(&home, &url, &rows, 3);
    assert_eq!(code, Some(5), "{stdout}");
    assert_eq!(failed(&counts, ""), 0, "{counts:?}");
    assert!(served(&counts, "candidate/v3") > 0, "{counts:?}");
    let r = d.release(3);
    assert_eq!(r["outcome"]["outcome"], "failed", "{r}");
    let reason = r["outcome"]["reason"].as_str().unwrap_or_default();
    assert!(reason.to_lowercase().contains("psi"), "{r}");
    assert_eq!(
        Daemon::stable_version(&d.get("/api/v1/status"), "production").as_deref(),
        Some("2")
    );
    d.stop();
}
