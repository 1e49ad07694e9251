//! End-to-end release tests: the real `hoist up` daemon, its gateways and real
//! `hoist-server` processes on 127.0.0.1, the embedded registry, and the CLI talking
//! to the daemon's API. Traffic generators count every failed request.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

#[test]
fn canary_through_staging_and_production_under_load_fails_no_request() {
    let config = format!(
        "{BASE}
[[environments]]
name = \"staging\"
listen = \"127.0.0.1:0\"
strategy = \"blue-green\"
analysis = {{ enabled = false }}

[[environments]]
name = \"production\"
listen = \"127.0.0.1:0\"
steps = [{{ weight = 25, pause = \"1500ms\" }}, {{ weight = 50, pause = \"1500ms\" }}]
"
    );
    let d = with_v1("canary", &config);
    let traffic = Traffic::start(&d.env("production"), 2);
    std::thread::sleep(Duration::from_millis(300));
    register(&d.home, "breast_cancer_lr", Some("champion"));
    let r = d.wait_done(2, Duration::from_secs(90));
    let counts = traffic.finish();
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    assert_eq!(r["trigger"], "alias champion → v2");
    // Staging switched at once; production walked 25 → 50 → 100.
    assert_eq!(weights(&r), vec![100, 25, 50, 100], "{r}");
    let s = d.get("/api/v1/status");
    assert_eq!(Daemon::stable_version(&s, "staging").as_deref(), Some("2"));
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("2")
    );
    assert_eq!(
        failed(&counts, ""),
        0,
        "failed requests during the canary: {counts:?}"
    );
    assert!(served(&counts, "candidate/v2") > 10, "{counts:?}");
    assert!(served(&counts, "stable/v1") > 10, "{counts:?}");
    // The registry carries hoist's results.
    let show: Value =
        serde_json::from_str(&ok(&hoist(&d.home, &["--json", "model", "show", "m/2"]))).unwrap();
    assert_eq!(show["tags"]["hoist.production"], "live", "{show}");
    assert_eq!(show["tags"]["hoist.staging"], "passed", "{show}");
    // history lists both releases with their digests.
    let h: Value = serde_json::from_str(&ok(&hoist(&d.home, &["--json", "history"]))).unwrap();
    let rel = h["releases"].as_array().unwrap();
    assert_eq!(rel.len(), 2);
    assert!(
        rel.iter()
            .all(|r| r["digest"].as_str().unwrap().starts_with("sha256:"))
    );
    d.stop();
}

#[test]
fn blue_green_switches_in_one_step_and_deploy_wait_exits_zero() {
    let d = with_v1(
        "bluegreen",
        &production(
            "strategy = \"blue-green\"\nscale_down_delay = \"1s\"\nanalysis = { min_requests = 1 }",
        ),
    );
    register(&d.home, "breast_cancer_lr", None);
    let traffic = Traffic::start(&d.env("production"), 2);
    let out = hoist(&d.home, &["deploy", "m/2", "--wait"]);
    let counts = traffic.finish();
    let text = ok(&out);
    assert!(text.contains("succeeded"), "{text}");
    let r = d.release(2);
    assert_eq!(weights(&r), vec![100]);
    assert_eq!(failed(&counts, ""), 0, "{counts:?}");
    assert!(served(&counts, "candidate/v2") > 0, "{counts:?}");
    let s = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("2")
    );
    assert!(s["environments"][0]["candidate"].is_null());
}

#[test]
fn a_candidate_answering_errors_is_rolled_back_by_itself() {
    let d = with_v1(
        "errors",
        &production("steps = [{ weight = 50, pause = \"5s\" }]"),
    );
    register(&d.home, "breast_cancer_batch2", None);
    // One-row requests: the candidate's hard-coded batch size fails them.
    let (_, counts, reason) = rolled_back_under_traffic(&d, 2, 1);
    assert!(reason.contains("error rate"), "{reason}");
    assert_eq!(failed(&counts, "stable"), 0, "{counts:?}");
    let s = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("1")
    );
    assert!(s["environments"][0]["candidate"].is_null());
    assert_eq!(s["environments"][0]["weight"], 0);
    let show: Value =
        serde_json::from_str(&ok(&hoist(&d.home, &["--json", "model", "show", "m/2"]))).unwrap();
    assert!(
        show["tags"]["hoist.rollback_reason"]
            .as_str()
            .unwrap()
            .contains("error rate"),
        "{show}"
    );
}

#[test]
fn a_candidate_failing_more_requests_than_stable_is_caught_by_the_comparison() {
    // An absolute limit of 20% the candidate stays far under: only the comparison
    // with stable's error rate over the same window can catch it.
    let d = with_v1(
        "errorcompare",
        &production(
            "steps = [{ weight = 50, pause = \"15s\" }]\nanalysis = { max_error_rate = 0.2 }",
        ),
    );
    register(&d.home, "breast_cancer_batch2", None);
    // Two-row requests (the candidate's baked-in batch size) from two clients, and
    // often a one-row request, which only the candidate fails: a few percent of the
    // candidate's requests, none of stable's (the comparison is anytime-valid: a
    // smaller share would need more traffic than a debug build serves in 15 s).
    let traffic = Traffic::start(&d.env("production"), 2);
    let singles = Traffic::paced(&d.env("production"), 1, 1, Duration::from_millis(40));
    let (code, stdout) = deploy_wait(&d.home, "m/2");
    let (counts, single_counts) = (traffic.finish(), singles.finish());
    assert_eq!(code, Some(5), "{stdout}");
    let r = d.release(2);
    let reason = r["outcome"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("candidate failed"), "{reason}");
    assert!(reason.contains("confidence sequences"), "{reason}");
    assert_eq!(failed(&counts, ""), 0, "{counts:?}");
    assert_eq!(failed(&single_counts, "stable"), 0, "{single_counts:?}");
    assert!(failed(&single_counts, "candidate") > 0, "{single_counts:?}");
    // The verdict's numbers: the candidate under the absolute limit, significantly
    // above stable.
    let last = r["transitions"].as_array().unwrap().last().unwrap().clone();
    let n = &last["event"]["numbers"];
    let (c, s) = (&n["candidate"], &n["stable"]);
    assert!(c["error_rate"].as_f64().unwrap() < 0.2, "{n}");
    assert!(c["errors"].as_u64().unwrap() > 0, "{n}");
    assert_eq!(s["errors"], 0, "{n}");
    assert!(s["requests"].as_u64().unwrap() >= 30, "{n}");
    assert!(n["error_comparison"]["p"].as_f64().unwrap() < 0.05, "{n}");
    assert!(
        n["error_comparison"]["difference"].as_f64().unwrap() > 0.005,
        "{n}"
    );
    // hoist history shows the comparison under the verdict.
    let h = ok(&hoist(&d.home, &["history", "2"]));
    assert!(h.contains("errors p="), "{h}");
    let s = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("1")
    );
}

#[test]
fn a_slow_candidate_is_rolled_back_on_latency_with_no_failed_request() {
    let config =
        production("steps = [{ weight = 50, pause = \"5s\" }]\nanalysis = { max_p99_ms = 25 }");
    let d = with_v1("latency", &config);
    register(&d.home, "breast_cancer_slow", None);
    let (r, counts, reason) = rolled_back_under_traffic(&d, 2, 2);
    assert!(reason.contains("p99 latency"), "{reason}");
    assert_eq!(failed(&counts, ""), 0, "{counts:?}");
    assert!(served(&counts, "candidate/v2") > 0, "{counts:?}");
    // The decision and the switch back are one transition.
    let last = r["transitions"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"]["verdict"]["verdict"], "fail");
    // ... journaled with the numbers it was based on.
    let numbers = &last["event"]["numbers"];
    assert!(
        numbers["candidate"]["requests"].as_u64().unwrap() >= 10,
        "{numbers}"
    );
    assert!(
        numbers["candidate"]["p99_ms"].as_f64().unwrap() > 25.0,
        "{numbers}"
    );
    assert!(
        numbers["stable"]["requests"].as_u64().unwrap() > 0,
        "{numbers}"
    );
    assert_eq!(last["actions"][0]["action"], "set_weight");
    assert_eq!(last["actions"][0]["weight"], 0);
}

#[test]
fn a_slow_candidate_within_the_absolute_budget_is_caught_by_the_comparison_with_stable() {
    // max_p99_ms is 1000 (BASE): only the candidate-against-stable comparison can fail it.
    let d = with_v1(
        "compare",
        &production("steps = [{ weight = 50, pause = \"10s\" }]\nanalysis = { min_requests = 20 }"),
    );
    register(&d.home, "breast_cancer_slow", None);
    let (_, counts, reason) = rolled_back_under_traffic(&d, 2, 2);
    assert!(
        reason.contains("medians") && reason.contains("stable's"),
        "{reason}"
    );
    assert_eq!(failed(&counts, ""), 0, "{counts:?}");
}

#[test]
fn a_candidate_predicting_a_different_class_mix_is_rolled_back_for_drift() {
    // Fast and error-free, but it says "benign" far more often than stable does.
    let d = with_v1(
        "drift",
        // Only drift is judged here (the latency comparison has its own test).
        &production(
            "steps = [{ weight = 50, pause = \"10s\" }]\nanalysis = { compare_latency = false }",
        ),
    );
    register(&d.home, "breast_cancer_skewed", None);
    let (_, counts, reason) = rolled_back_under_traffic(&d, 2, 2);
    assert!(reason.contains("PSI") || reason.contains("psi"), "{reason}");
    assert!(reason.contains("class"), "{reason}");
    let r = d.release(2);
    let last = r["transitions"].as_array().unwrap().last().unwrap().clone();
    let psi = last["event"]["numbers"]["drift"]["psi"].as_f64().unwrap();
    assert!(psi > 0.25, "{}", last["event"]);
    assert_eq!(failed(&counts, ""), 0, "{counts:?}");
}

#[test]
fn a_regressor_answering_higher_values_is_rolled_back_for_drift_on_its_binned_predictions() {
    // No classes to count: the servers count the regressor's answers by
    // `drift_bins` (hoist-server --prediction-bins), and drift is judged on the bins.
    let home = temp_home("regressiondrift");
    let d = Daemon::start(
        &home,
        &production(
            "steps = [{ weight = 50, pause = \"10s\" }]\n\
             analysis = { compare_latency = false, drift_bins = [100, 150, 200, 250] }",
        ),
    );
    register(&home, "diabetes_lr", Some("champion"));
    assert_eq!(
        d.wait_done(1, Duration::from_secs(60))["outcome"]["outcome"],
        "succeeded"
    );
    // The servers got the bins: the stable one counts its answers by bin.
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(model("diabetes_lr").join("reference.json")).unwrap(),
    )
    .unwrap();
    let data = reference["inputs"]["input"]["data"].as_array().unwrap();
    let rows: Vec<Value> = data.chunks(10).map(|r| Value::from(r.to_vec())).collect();
    assert_eq!(rows.len(), 20);
    // diabetes_shifted: the same model, 60 points higher on every row.
    register(&home, "diabetes_shifted", None);
    let traffic = Traffic::of_rows(&d.env("production"), rows, 2, Duration::from_millis(8));
    let (code, stdout) = deploy_wait(&home, "m/2");
    let counts = traffic.finish();
    assert_eq!(code, Some(5), "{stdout}");
    assert_eq!(failed(&counts, ""), 0, "{counts:?}");
    let r = d.release(2);
    let reason = r["outcome"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("prediction drift: PSI"), "{reason}");
    let last = r["transitions"].as_array().unwrap().last().unwrap().clone();
    let drift = &last["event"]["numbers"]["drift"];
    assert!(drift["psi"].as_f64().unwrap() > 0.25, "{drift}");
    // Five bins (below 100, 100-150, ..., 250 and above) hold every answer of both.
    let bins = |k: &str| -> Vec<u64> {
        drift[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect()
    };
    let (s, c) = (bins("stable_classes"), bins("candidate_classes"));
    assert!(s.iter().skip(5).all(|&n| n == 0), "{drift}");
    assert!(c.iter().skip(5).all(|&n| n == 0), "{drift}");
    // The candidate's answers sit in higher bins than stable's.
    let mean_bin = |b: &[u64]| {
        b.iter()
            .enumerate()
            .map(|(i, &n)| i as f64 * n as f64)
            .sum::<f64>()
            / b.iter().sum::<u64>() as f64
    };
    assert!(mean_bin(&c) > mean_bin(&s) + 0.5, "{drift}");
    let st = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&st, "production").as_deref(),
        Some("1")
    );
    d.stop();
}

/// Waits until release `id` takes traffic in a step (it is mid-rollout).
fn wait_mid_rollout(d: &Daemon, id: u64) {
    d.wait_for(
        &format!("release {id} mid-rollout"),
        Duration::from_secs(60),
        |s| {
            s["active"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|r| r["id"] == id && r["phase"]["phase"] == "step")
            })
        },
    );
}

#[test]
fn promotions_during_a_rollout_are_queued_and_the_newest_is_released_after_it() {
    let d = with_v1(
        "queue",
        &production("steps = [{ weight = 50, pause = \"2s\" }]\nanalysis = { enabled = false }"),
    );
    register(&d.home, "breast_cancer_lr", Some("champion"));
    wait_mid_rollout(&d, 2);
    // Two more promotions while release 2 is mid-rollout: only the newest counts.
    register(&d.home, "breast_cancer_rf", Some("champion"));
    register(&d.home, "breast_cancer_skewed", Some("champion"));
    let r2 = d.wait_done(2, Duration::from_secs(60));
    assert_eq!(r2["outcome"]["outcome"], "succeeded", "{r2}");
    let r3 = d.wait_done(3, Duration::from_secs(60));
    assert_eq!(r3["outcome"]["outcome"], "succeeded", "{r3}");
    assert_eq!(r3["version"], "4", "the newest promotion: {r3}");
    assert_eq!(
        r3["trigger"],
        "alias champion → v4 (promoted during release 2)"
    );
    let s = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("4")
    );
    // v3 was never released: nothing else started.
    std::thread::sleep(Duration::from_millis(500));
    assert!(d.release(4)["id"].is_null(), "{}", d.release(4));
    d.stop();
}

#[test]
fn with_mid_rollout_supersede_a_promotion_replaces_the_release_in_progress() {
    let config =
        production("steps = [{ weight = 50, pause = \"60s\" }]\nanalysis = { enabled = false }")
            .replace(
                "trigger = { alias = \"champion\" }",
                "trigger = { alias = \"champion\" }\nmid_rollout = \"supersede\"",
            );
    let d = with_v1("supersede", &config);
    register(&d.home, "breast_cancer_lr", Some("champion"));
    wait_mid_rollout(&d, 2);
    register(&d.home, "breast_cancer_rf", Some("champion"));
    let r2 = d.wait_done(2, Duration::from_secs(30));
    assert_eq!(r2["outcome"]["outcome"], "superseded", "{r2}");
    // Release 3 takes its place at once, and walks its own 60 s step.
    wait_mid_rollout(&d, 3);
    let s = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("1")
    );
    d.stop();
}

#[test]
fn approval_manual_pause_promote_and_abort() {
    let home = temp_home("approval");
    let d = Daemon::start(
        &home,
        &production(
            "approval = true\nsteps = [{ weight = 30, pause = true }]\nanalysis = { enabled = false }",
        ),
    );
    // Even the first version waits for approval before it serves.
    register(&home, "breast_cancer_gbt", Some("champion"));
    d.wait_for("approval of 1", Duration::from_secs(30), |s| {
        s["active"][0]["phase"]["phase"] == "awaiting_approval"
    });
    ok(&hoist(&home, &["approve", "1"]));
    assert_eq!(
        d.wait_done(1, Duration::from_secs(20))["outcome"]["outcome"],
        "succeeded"
    );
    register(&d.home, "breast_cancer_lr", None);
    ok(&hoist(&d.home, &["deploy", "m/2"]));
    d.wait_for("approval", Duration::from_secs(30), |s| {
        s["active"][0]["summary"]
            .as_str()
            .is_some_and(|x| x.contains("waiting for `hoist approve 2`"))
    });
    // Promote is refused while it waits for approval.
    let refused = hoist(&d.home, &["promote", "2"]);
    assert_eq!(refused.status.code(), Some(6));
    ok(&hoist(&d.home, &["approve", "2"]));
    let s = d.wait_for("the manual pause", Duration::from_secs(10), |s| {
        s["environments"][0]["weight"] == 30
    });
    assert!(
        s["active"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("paused until `hoist promote 2`"),
        "{s}"
    );
    ok(&hoist(&d.home, &["promote", "2"]));
    let r = d.wait_done(2, Duration::from_secs(20));
    assert_eq!(r["outcome"]["outcome"], "succeeded");

    // A second release, aborted during its pause: back to v2 at once.
    register(&d.home, "breast_cancer_rf", None);
    ok(&hoist(&d.home, &["deploy", "m/3"]));
    d.wait_for("approval of 3", Duration::from_secs(30), |s| {
        s["active"][0]["phase"]["phase"] == "awaiting_approval"
    });
    ok(&hoist(&d.home, &["approve", "3"]));
    d.wait_for("the pause of 3", Duration::from_secs(10), |s| {
        s["environments"][0]["weight"] == 30
    });
    // A newer deployment is refused while 3 is mid-rollout (unless --supersede).
    let refused = hoist(&d.home, &["deploy", "m/1"]);
    assert_eq!(refused.status.code(), Some(6));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("release 3 (v3) is mid-rollout") && err.contains("--supersede"),
        "{err}"
    );
    let traffic = Traffic::start(&d.env("production"), 2);
    std::thread::sleep(Duration::from_millis(300));
    ok(&hoist(
        &d.home,
        &["abort", "3", "--reason", "wrong feature set"],
    ));
    std::thread::sleep(Duration::from_millis(300));
    let counts = traffic.finish();
    let r = d.release(3);
    assert_eq!(r["outcome"]["outcome"], "aborted");
    assert_eq!(r["outcome"]["reason"], "wrong feature set");
    assert_eq!(failed(&counts, ""), 0, "{counts:?}");
    let s = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("2")
    );
    // A finished release takes no more commands.
    assert_eq!(hoist(&d.home, &["abort", "3"]).status.code(), Some(6));
    assert_eq!(hoist(&d.home, &["approve", "99"]).status.code(), Some(3));
}

#[test]
fn rollback_to_a_version_and_back_to_the_previous() {
    let d = with_v1("rollback", &production("steps = []"));
    register(&d.home, "breast_cancer_lr", Some("champion"));
    let r = d.wait_done(2, Duration::from_secs(60));
    assert_eq!(r["outcome"]["outcome"], "succeeded");
    let traffic = Traffic::start(&d.env("production"), 2);
    ok(&hoist(&d.home, &["rollback", "--to", "1"]));
    let s = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("1")
    );
    // Without --to: the previous live version (v2 again).
    ok(&hoist(&d.home, &["rollback"]));
    let counts = traffic.finish();
    let s = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("2")
    );
    assert_eq!(failed(&counts, ""), 0, "{counts:?}");
    let h: Value = serde_json::from_str(&ok(&hoist(
        &d.home,
        &["--json", "history", "--env", "production"],
    )))
    .unwrap();
    let triggers: Vec<&str> = h["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["trigger"].as_str().unwrap())
        .collect();
    assert_eq!(triggers[0], "rollback to v2");
    assert_eq!(triggers[1], "rollback to v1");
    // An unknown environment is a usage error.
    assert_eq!(
        hoist(&d.home, &["rollback", "--env", "qa"]).status.code(),
        Some(2)
    );
}

#[test]
fn a_daemon_killed_mid_canary_resumes_and_never_repeats_a_step() {
    let config = production(
        "steps = [{ weight = 20, pause = \"1s\" }, { weight = 40, pause = \"4s\" }, { weight = 60, pause = \"1s\" }]\nanalysis = { min_requests = 1 }",
    );
    let d = with_v1("sigkill", &config);
    let home = d.home.clone();
    register(&home, "breast_cancer_lr", None);
    let traffic = Traffic::start(&d.env("production"), 2);
    ok(&hoist(&home, &["deploy", "m/2"]));
    let s = d.wait_for("step 2", Duration::from_secs(30), |s| {
        s["environments"][0]["weight"] == 40
    });
    let pids: Vec<u64> = s["environments"][0]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k == "stable" || *k == "candidate")
        .flat_map(|(_, v)| v["servers"].as_array().cloned().unwrap_or_default())
        .filter_map(|srv| srv["pid"].as_u64())
        .collect();
    assert_eq!(pids.len(), 2, "{s}");
    let _ = traffic.finish();
    // SIGKILL: no cleanup at all.
    let mut d = d;
    let _ = d.child.kill();
    let _ = d.child.wait();
    std::mem::forget(d);
    // Its model servers die with it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| alive(*p)) {
        assert!(Instant::now() < deadline, "orphaned servers: {pids:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let d = Daemon::start(&home, &config);
    let traffic = Traffic::start(&d.env("production"), 2);
    let r = d.wait_done(2, Duration::from_secs(60));
    let counts = traffic.finish();
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    // Each step ran once; the resumed step's weight was re-applied (not a new step).
    let begun: Vec<u64> = r["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["actions"].as_array().unwrap().iter())
        .filter(|a| a["action"] == "begin_analysis")
        .map(|a| a["step"].as_u64().unwrap())
        .collect();
    assert_eq!(begun, vec![0, 1, 2], "{r}");
    assert_eq!(weights(&r), vec![20, 40, 60, 100]);
    assert_eq!(failed(&counts, ""), 0, "{counts:?}");
    let s = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("2")
    );
}

fn alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.split_whitespace().nth(2).is_none_or(|st| st != "Z"),
        Err(_) => false,
    }
}

#[test]
fn bad_config_is_refused_with_the_key() {
    let home = temp_home("badcfg");
    let cfg = home.join("hoist.toml");
    std::fs::write(&cfg, "[model]\nname = \"m\"\n\n[[environments]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nsteps = [{ weight = 50 }, { weight = 10 }]\n").unwrap();
    let o = hoist(&home, &["up", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("environments[0].steps[1].weight"), "{err}");
    assert!(err.contains("line 4"), "{err}");
    std::fs::write(&cfg, "[modle]\nname = \"m\"\n").unwrap();
    let o = hoist(&home, &["up", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("modle"));
    // No daemon: a clear error naming the address.
    let o = hoist(&home, &["--api", "http://127.0.0.1:9", "status"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("no hoist daemon answers at http://127.0.0.1:9")
    );
    let _ = std::fs::remove_dir_all(&home);
}

/// A minimal HTTP receiver: records each POST body, answers 200 and closes.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>;

fn receiver() -> (String, Received) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, len) = loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break (0, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    break (i + 4, len);
                }
            };
            while buf.len() < head_end + len {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let body: Value = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
            g.lock().unwrap().push((head, body));
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, got)
}

#[test]
fn release_events_reach_json_and_slack_receivers() {
    let (json_url, json_got) = receiver();
    let (slack_url, slack_got) = receiver();
    let config = format!(
        "{}\n[[notifications]]\nurl = \"{json_url}/hoist\"\n\n[[notifications]]\nurl = \"{slack_url}/slack\"\nkind = \"slack\"\nevents = [\"rolled_back\"]\n",
        production("steps = [{ weight = 50, pause = \"5s\" }]\nanalysis = { max_p99_ms = 25 }")
    );
    let d = with_v1("notify", &config);
    register(&d.home, "breast_cancer_slow", None);
    let traffic = Traffic::start(&d.env("production"), 2);
    let out = hoist(&d.home, &["deploy", "m/2", "--wait"]);
    traffic.finish();
    assert_eq!(out.status.code(), Some(5));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events: Vec<String> = json_got
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, b)| b["release"] == 2)
            .map(|(_, b)| b["event"].as_str().unwrap_or("").to_string())
            .collect();
        if events.contains(&"rolled_back".to_string()) && !slack_got.lock().unwrap().is_empty() {
            assert_eq!(
                events.first().map(String::as_str),
                Some("started"),
                "{events:?}"
            );
            assert!(events.contains(&"step".to_string()), "{events:?}");
            break;
        }
        assert!(Instant::now() < deadline, "events so far: {events:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rolled = json_got
        .lock()
        .unwrap()
        .iter()
        .find(|(_, b)| b["event"] == "rolled_back")
        .cloned()
        .unwrap();
    assert!(
        rolled.1["message"]
            .as_str()
            .unwrap()
            .contains("p99 latency"),
        "{rolled:?}"
    );
    let slack = slack_got.lock().unwrap()[0].1.clone();
    let text = slack["text"].as_str().unwrap();
    assert!(
        text.contains("release 2") && text.contains("rolled back"),
        "{text}"
    );
    // Every slack message is a rollback (the events filter).
    assert_eq!(slack_got.lock().unwrap().len(), 1);
    // Deliveries are visible in the daemon's status.
    let s = d.get("/api/v1/status");
    assert!(
        s["notifications"]["sent"].as_u64().unwrap() >= 4,
        "{}",
        s["notifications"]
    );
}
