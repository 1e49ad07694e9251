//! Gates before any user traffic, end to end: real daemons and hoist-servers, real
//! model versions, a labelled golden set. Each test asserts the verdict and the
//! numbers the journal recorded.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

fn with_gates(tag: &str, gates: &str) -> Daemon {
    let golden = repo().join("examples/data/breast_cancer_golden.csv");
    let config = format!(
        "{}\n{}\n[[environments]]\nname = \"production\"\nlisten = \"127.0.0.1:0\"\nsteps = []\n",
        BASE,
        gates.replace("GOLDEN", golden.to_str().unwrap())
    );
    with_v1(tag, &config)
}

/// The gate reports journaled with the release's gate event.
fn gate_reports(r: &Value) -> Vec<Value> {
    r["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["event"]["event"] == "gates_passed" || t["event"]["event"] == "gates_failed")
        .map(|t| {
            t["event"]["reports"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

const GOLDEN_GATE: &str = r#"
[[gates]]
kind = "golden-set"
file = "GOLDEN"
min_accuracy = 0.9
max_drop = 0.02
min_recall = { "0" = 0.85, "1" = 0.9 }
"#;

#[test]
fn an_accurate_candidate_passes_every_gate_with_its_numbers_recorded() {
    let gates = format!(
        "{GOLDEN_GATE}
[[gates]]
kind = \"signature\"

[[gates]]
kind = \"latency\"
concurrency = 2
requests = 50
max_p99_ms = 2000

[[gates]]
kind = \"command\"
run = [\"sh\", \"-c\", \"echo checked $HOIST_MODEL_NAME v$HOIST_MODEL_VERSION $HOIST_MODEL_DIGEST; test -d \\\"$HOIST_MODEL_PATH\\\" && curl -sf -o /dev/null $HOIST_CANDIDATE_URL/v2/health/ready\"]
"
    );
    let d = with_gates("gates-pass", &gates);
    register(&d.home, "breast_cancer_lr", None);
    let out = hoist(&d.home, &["deploy", "m/2", "--wait"]);
    let text = ok(&out);
    assert!(text.contains("succeeded"), "{text}");
    let r = d.release(2);
    let reports = gate_reports(&r);
    let names: Vec<&str> = reports
        .iter()
        .map(|g| g["gate"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["golden-set", "signature", "latency", "command"]);
    assert!(reports.iter().all(|g| g["passed"] == true), "{reports:?}");
    let acc = reports[0]["numbers"]["accuracy"].as_f64().unwrap();
    assert!(acc > 0.95, "LR's held-out accuracy is 0.958: {acc}");
    assert!(reports[0]["numbers"]["stable_accuracy"].as_f64().is_some());
    assert!(reports[2]["numbers"]["p99_ms"].as_f64().unwrap() > 0.0);
    let output = reports[3]["output"].as_str().unwrap();
    assert!(output.contains("checked m v2 sha256:"), "{output}");
}

#[test]
fn a_model_trained_on_shuffled_labels_fails_the_golden_set_and_never_sees_traffic() {
    let d = with_gates("gates-shuffled", GOLDEN_GATE);
    register(&d.home, "breast_cancer_shuffled", None);
    let (code, stdout) = deploy_wait(&d.home, "m/2");
    assert_eq!(code, Some(5), "{stdout}");
    let r = d.release(2);
    let reason = r["outcome"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("gate golden-set: accuracy"), "{reason}");
    let reports = gate_reports(&r);
    assert_eq!(reports[0]["passed"], false);
    assert!(reports[0]["numbers"]["accuracy"].as_f64().unwrap() < 0.8);
    assert!(
        weights(&r).is_empty(),
        "no traffic may reach a failed candidate"
    );
    let s = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("1")
    );
    let show: Value =
        serde_json::from_str(&ok(&hoist(&d.home, &["--json", "model", "show", "m/2"]))).unwrap();
    assert!(
        show["tags"]["hoist.rollback_reason"]
            .as_str()
            .unwrap()
            .contains("golden-set")
    );
}

#[test]
fn a_slow_candidate_fails_the_latency_gate() {
    let d = with_gates(
        "gates-latency",
        "[[gates]]\nkind = \"latency\"\nconcurrency = 1\nrequests = 30\nmax_p99_ms = 25\n",
    );
    register(&d.home, "breast_cancer_slow", None);
    let out = hoist(&d.home, &["deploy", "m/2", "--wait"]);
    assert_eq!(out.status.code(), Some(5));
    let r = d.release(2);
    let reports = gate_reports(&r);
    assert_eq!(reports[0]["gate"], "latency");
    assert!(
        reports[0]["numbers"]["p99_ms"].as_f64().unwrap() > 25.0,
        "{reports:?}"
    );
    assert!(r["outcome"]["reason"].as_str().unwrap().contains("p99"));
}

#[test]
fn a_different_signature_and_a_failing_command_are_refused() {
    let d = with_gates("gates-signature", "[[gates]]\nkind = \"signature\"\n");
    register(&d.home, "digits_mlp", None);
    let out = hoist(&d.home, &["deploy", "m/2", "--wait"]);
    assert_eq!(out.status.code(), Some(5));
    let r = d.release(2);
    let reason = r["outcome"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("signature: incompatible with stable"),
        "{reason}"
    );
    let s = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("1")
    );

    // Marked a breaking change at deploy: the gate reports the difference and passes.
    let (code, stdout) = deploy_wait_with(&d.home, "m/2", &["--breaking-change"]);
    assert_eq!(code, Some(0), "{stdout}");
    let r = d.release(3);
    let report = &gate_reports(&r)[0];
    assert_eq!(report["passed"], true, "{report}");
    let summary = report["summary"].as_str().unwrap();
    assert!(
        summary.contains("breaking change allowed (marked at deploy (`--breaking-change`))")
            && summary.contains("input FP32 [-1,64]"),
        "{summary}"
    );
    let s = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("2")
    );

    // Back to 30 features: refused again, unless the version's registry tag marks it.
    register(&d.home, "breast_cancer_lr", None);
    let out = hoist(&d.home, &["deploy", "m/3", "--wait"]);
    assert_eq!(out.status.code(), Some(5));
    ok(&hoist(
        &d.home,
        &["model", "tag", "m", "3", "hoist.breaking_change=true"],
    ));
    let (code, stdout) = deploy_wait(&d.home, "m/3");
    assert_eq!(code, Some(0), "{stdout}");
    let r = d.release(5);
    let summary = gate_reports(&r)[0]["summary"].as_str().unwrap().to_string();
    assert!(
        summary.contains("the version's registry tag hoist.breaking_change = true"),
        "{summary}"
    );
    drop(d);

    // A failing command fails even the first version: nothing serves at all.
    let home = temp_home("gates-command");
    let config = format!(
        "{BASE}\n[[gates]]\nkind = \"command\"\nrun = [\"sh\", \"-c\", \"echo 2 vulnerabilities found; exit 3\"]\n\n[[environments]]\nname = \"production\"\nlisten = \"127.0.0.1:0\"\n"
    );
    let d = Daemon::start(&home, &config);
    register(&home, "breast_cancer_lr", Some("champion"));
    let r = d.wait_done(1, Duration::from_secs(60));
    assert_eq!(r["outcome"]["outcome"], "failed");
    let reports = gate_reports(&r);
    assert_eq!(reports[0]["numbers"]["exit_code"], 3);
    assert!(
        reports[0]["output"]
            .as_str()
            .unwrap()
            .contains("2 vulnerabilities found")
    );
    let s = d.get("/api/v1/status");
    assert!(s["environments"][0]["stable"].is_null(), "{s}");
}
