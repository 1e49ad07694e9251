//! Judging what a model predicts on live traffic: shadow steps (the candidate answers
//! mirrored requests, compared with stable's answers) and feedback labels (true
//! labels posted to the gateway after the answers). Real daemon, real hoist-server
//! processes, real model versions, requests from the golden set.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// The golden set's rows: features and true label.
fn golden() -> Vec<(Vec<f64>, i64)> {
    let text = std::fs::read_to_string(repo().join("examples/data/breast_cancer_golden.jsonl"))
        .expect("the golden set");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let f = v["features"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            (f, v["label"].as_i64().unwrap())
        })
        .collect()
}

/// Clients sending golden-set rows (`rows` per request) through the gateway until
/// stopped; with `label`, each answer's true labels are posted to `/feedback`.
struct GoldenTraffic {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    labelled: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl GoldenTraffic {
    fn start(url: &str, rows: usize, label: bool) -> GoldenTraffic {
        GoldenTraffic::start_with(url, golden(), rows, 0, label)
    }

    /// Requests of `rows` rows of `data`, except every `batch_every`-th of each
    /// client (0: none), which has 2 rows.
    fn start_with(
        url: &str,
        data: Vec<(Vec<f64>, i64)>,
        rows: usize,
        batch_every: usize,
        label: bool,
    ) -> GoldenTraffic {
        let data = Arc::new(data);
        let stop = Arc::new(AtomicBool::new(false));
        let (sent, failed, labelled) = Default::default();
        let mut t = GoldenTraffic {
            stop,
            sent,
            failed,
            labelled,
            threads: Vec::new(),
        };
        for worker in 0..2 {
            let (stop, sent, failed, labelled) = (
                t.stop.clone(),
                t.sent.clone(),
                t.failed.clone(),
                t.labelled.clone(),
            );
            let (data, url) = (data.clone(), url.to_string());
            t.threads.push(std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                let mut at = worker * 71;
                let mut k = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    k += 1;
                    let rows = if batch_every > 0 && k.is_multiple_of(batch_every) {
                        2
                    } else {
                        rows
                    };
                    let batch: Vec<&(Vec<f64>, i64)> =
                        (0..rows).map(|i| &data[(at + i) % data.len()]).collect();
                    at += rows;
                    let body = json!({ "inputs": batch.iter().map(|r| &r.0).collect::<Vec<_>>() });
                    let r = http
                        .post(format!("{url}/invocations"))
                        .header("content-type", "application/json")
                        .body(body.to_string())
                        .send();
                    sent.fetch_add(1, Ordering::Relaxed);
                    let id = match r {
                        Ok(r) if r.status().is_success() => r
                            .headers()
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string),
                        _ => None,
                    };
                    let Some(id) = id else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    if label {
                        let labels: Vec<i64> = batch.iter().map(|r| r.1).collect();
                        let f = http
                            .post(format!("{url}/feedback"))
                            .body(json!({ "request_id": id, "labels": labels }).to_string())
                            .send();
                        if f.is_ok_and(|f| f.status().is_success()) {
                            labelled.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }));
        }
        t
    }

    /// (sent, failed, labelled)
    fn finish(self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.labelled.load(Ordering::Relaxed),
        )
    }
}

/// `hoist deploy m/<release> --wait` under golden-set traffic; returns the exit code,
/// the release and what the clients counted.
fn deploy_under_traffic(
    d: &Daemon,
    release: u64,
    label: bool,
) -> (Option<i32>, Value, (u64, u64, u64)) {
    let traffic = GoldenTraffic::start(&d.env("production"), 4, label);
    let out = hoist(&d.home, &["deploy", &format!("m/{release}"), "--wait"]);
    let counts = traffic.finish();
    (out.status.code(), d.release(release), counts)
}

/// The numbers of the last verdict a release journaled.
fn last_verdict_numbers(r: &Value) -> Value {
    r["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|t| t["event"]["event"] == "verdict")
        .map(|t| t["event"]["numbers"].clone())
        .expect("a journaled verdict")
}

#[test]
fn a_shadow_step_catches_a_candidate_that_disagrees_and_passes_one_that_agrees() {
    let d = with_v1(
        "shadow",
        &production(
            "steps = [{ shadow = 100, pause = \"4s\" }, { weight = 50, pause = \"1s\" }]\n\
             analysis = { compare_latency = false, drift = false, min_agreement = 0.85, max_probability_diff = 0.3 }",
        ),
    );
    // Trained on shuffled labels: fast, error-free, and wrong half the time.
    register(&d.home, "breast_cancer_shuffled", None);
    let (code, r, (sent, failed, _)) = deploy_under_traffic(&d, 2, false);
    assert_eq!(code, Some(5), "{r}");
    let reason = r["outcome"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("shadow: the candidate agreed with stable on"),
        "{reason}"
    );
    let n = last_verdict_numbers(&r);
    let agreement = n["shadow"]["agreement"].as_f64().unwrap();
    assert!(agreement < 0.85, "{n}");
    assert!(n["shadow"]["rows"].as_u64().unwrap() >= 40, "{n}");
    assert!(n["shadow"]["mirrored"].as_u64().unwrap() >= 10, "{n}");
    // The candidate never answered a caller: no live traffic ever went to it, and
    // nothing failed.
    assert!(!weights(&r).iter().any(|w| *w > 0), "{r}");
    assert_eq!(failed, 0, "{failed} of {sent} requests failed");
    let s = d.get("/api/v1/status");
    assert_eq!(
        Daemon::stable_version(&s, "production").as_deref(),
        Some("1")
    );
    let out = ok(&hoist(&d.home, &["history", "2"]));
    assert!(
        out.contains("agreement") && out.contains("verdict fail"),
        "{out}"
    );
    eprintln!("{out}");

    // A candidate that predicts like stable passes the shadow step and goes live.
    register(&d.home, "breast_cancer_lr", None);
    let (code, r, (_, failed, _)) = deploy_under_traffic(&d, 3, false);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(failed, 0);
    let shadow_verdict = r["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["event"]["event"] == "verdict")
        .find(|t| t["event"]["numbers"]["shadow"].is_object())
        .expect("a shadow verdict")["event"]["numbers"]["shadow"]
        .clone();
    assert!(
        shadow_verdict["agreement"].as_f64().unwrap() >= 0.85,
        "{shadow_verdict}"
    );
    // `hoist history` shows the numbers of the verdicts.
    let out = ok(&hoist(&d.home, &["history", "3"]));
    assert!(out.contains("agreement"), "{out}");
    eprintln!("{out}");
}

#[test]
fn feedback_labels_roll_back_a_less_accurate_candidate() {
    let d = with_v1(
        "feedback",
        &production(
            "steps = [{ weight = 50, pause = \"3s\" }]\n\
             analysis = { compare_latency = false, drift = false, feedback = true, min_labels = 40, min_accuracy = 0.8 }",
        ),
    );
    register(&d.home, "breast_cancer_shuffled", None);
    let (code, r, (sent, failed, labelled)) = deploy_under_traffic(&d, 2, true);
    assert_eq!(code, Some(5), "{r}");
    let reason = r["outcome"]["reason"].as_str().unwrap();
    assert!(reason.contains("feedback: candidate accuracy"), "{reason}");
    let n = last_verdict_numbers(&r);
    let acc = n["feedback"]["candidate"]["accuracy"].as_f64().unwrap();
    assert!(acc < 0.8, "{n}");
    assert!(
        n["feedback"]["candidate"]["labelled"].as_u64().unwrap() >= 40,
        "{n}"
    );
    // Stable, labelled over the same window, is the accurate one.
    assert!(
        n["feedback"]["stable"]["accuracy"].as_f64().unwrap() > 0.9,
        "{n}"
    );
    assert_eq!(failed, 0, "{failed} of {sent} requests failed");
    assert!(labelled > 0);
    let out = ok(&hoist(&d.home, &["history", "2"]));
    assert!(out.contains("accuracy candidate"), "{out}");
    eprintln!("{out}");

    // Labels that never arrive: the step waits, then fails as inconclusive.
    let d2 = with_v1(
        "feedback-late",
        &production(
            "steps = [{ weight = 50, pause = \"1s\" }]\n\
             analysis = { compare_latency = false, drift = false, feedback = true, min_labels = 40, max_inconclusive = \"2s\" }",
        ),
    );
    register(&d2.home, "breast_cancer_lr", None);
    let (code, r, _) = deploy_under_traffic(&d2, 2, false);
    assert_eq!(code, Some(5), "{r}");
    let reason = r["outcome"]["reason"].as_str().unwrap();
    assert!(reason.contains("inconclusive"), "{reason}");
    assert!(reason.contains("labelled candidate rows"), "{reason}");
    // Each inconclusive verdict said what was missing: all 40 labels, none arrived.
    let n = last_verdict_numbers(&r);
    assert_eq!(n["evidence"]["needed"], 40, "{n}");
    assert_eq!(n["evidence"]["of"], "labelled candidate rows", "{n}");
    let out = ok(&hoist(&d2.home, &["history", "2"]));
    assert!(
        out.contains("needs 40 more labelled candidate rows, none arrived yet"),
        "{out}"
    );
}

/// The diabetes test rows of `diabetes_lr`'s reference (features only).
fn diabetes_rows() -> Vec<(Vec<f64>, i64)> {
    let text = std::fs::read_to_string(model("diabetes_lr").join("reference.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let input = &v["inputs"]["input"];
    let width = input["shape"][1].as_u64().unwrap() as usize;
    let data: Vec<f64> = input["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    data.chunks(width).map(|r| (r.to_vec(), 0)).collect()
}

/// `hoist deploy m/<release> --wait` under traffic of the diabetes rows (regressors);
/// returns the exit code, the release and what the clients counted.
fn deploy_regressor_under_traffic(
    d: &Daemon,
    release: u64,
) -> (Option<i32>, Value, (u64, u64, u64)) {
    let traffic = GoldenTraffic::start_with(&d.env("production"), diabetes_rows(), 2, 0, false);
    let out = hoist(&d.home, &["deploy", &format!("m/{release}"), "--wait"]);
    let counts = traffic.finish();
    (out.status.code(), d.release(release), counts)
}

/// The reason a release ended with.
fn reason_of(r: &Value) -> String {
    r["outcome"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_candidate_refusing_two_row_batches_is_rolled_back_at_five_percent() {
    // Default analysis (4xx compared with stable, anytime-valid at alpha 1%), the
    // canary steps the issue tried.
    let d = with_v1(
        "batch400",
        &production(
            "steps = [{ weight = 5, pause = \"30s\" }, { weight = 25, pause = \"5s\" }, { weight = 50, pause = \"5s\" }]",
        ),
    );
    // Exported with its batch fixed at one row: any 2-row request is a 400, where
    // stable answers 200.
    register(&d.home, "breast_cancer_batch1", None);
    // One request in 7 has 2 rows (7: not in step with the split's exact counter).
    let traffic = GoldenTraffic::start_with(&d.env("production"), golden(), 1, 7, false);
    let out = hoist(&d.home, &["deploy", "m/2", "--wait"]);
    let (sent, failed, _) = traffic.finish();
    let r = d.release(2);
    assert_eq!(out.status.code(), Some(5), "{r}");
    let reason = reason_of(&r);
    assert!(reason.contains("candidate 400 on "), "{reason}");
    assert!(reason.contains("stable 0 of "), "{reason}");
    // Rolled back in the 5% step: the candidate never had more.
    let w = weights(&r);
    assert!(w.iter().all(|w| *w <= 5), "{w:?}");
    let n = last_verdict_numbers(&r);
    assert!(
        n["error_comparison"]["candidate_codes"]["400"]
            .as_u64()
            .unwrap()
            > 0,
        "{n}"
    );
    eprintln!("{reason}\n{failed} of {sent} requests failed for callers");
    // Callers saw failures only on the few requests routed to the candidate.
    let candidate = n["candidate"]["requests"].as_u64().unwrap();
    assert!(
        failed <= candidate && candidate * 10 < sent,
        "{failed} of {sent}: {n}"
    );
    let out = ok(&hoist(&d.home, &["history", "2"]));
    assert!(out.contains("400"), "{out}");
}

/// A daemon whose first release of `m` (the regressor `diabetes_lr`) went live.
fn with_regressor_v1(tag: &str, config: &str) -> Daemon {
    let home = temp_home(tag);
    let d = Daemon::start(&home, config);
    register(&home, "diabetes_lr", Some("champion"));
    let r = d.wait_done(1, Duration::from_secs(60));
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    d
}

#[test]
fn regressors_are_compared_as_numbers_a_biased_one_rolled_back_a_retrain_promoted() {
    let d = with_regressor_v1(
        "regressor",
        &production(
            "steps = [{ shadow = 100, pause = \"3s\" }, { weight = 50, pause = \"2s\" }]\n\
             analysis = { compare_latency = false }",
        ),
    );
    // The same regression, 60 higher (stable's values average about 150).
    register(&d.home, "diabetes_shifted", None);
    let (code, r, (sent, failed, _)) = deploy_regressor_under_traffic(&d, 2);
    assert_eq!(code, Some(5), "{r}");
    let reason = reason_of(&r);
    assert!(reason.contains("biased by +"), "{reason}");
    assert!(!reason.contains("probabilities"), "{reason}");
    let n = last_verdict_numbers(&r);
    let bias = n["shadow"]["values"]["bias"].as_f64().unwrap();
    assert!((bias - 60.0).abs() < 1.0, "{n}");
    assert!(!weights(&r).iter().any(|w| *w > 0), "{r}");
    assert_eq!(failed, 0, "{failed} of {sent}");

    // Retrained on another split: a little different, not biased: promoted.
    register(&d.home, "diabetes_retrain", None);
    let (code, r, (_, failed, _)) = deploy_regressor_under_traffic(&d, 3);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(failed, 0);
    let shadow = r["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["event"]["event"] == "verdict")
        .find(|t| t["event"]["numbers"]["shadow"]["values"].is_object())
        .expect("a shadow verdict on values")["event"]["numbers"]["shadow"]["values"]
        .clone();
    assert!(shadow["rows"].as_u64().unwrap() > 20, "{shadow}");
    let rel =
        shadow["mean_abs_diff"].as_f64().unwrap() / shadow["stable_mean_abs"].as_f64().unwrap();
    assert!(rel < 0.1, "{shadow}");
    let out = ok(&hoist(&d.home, &["history", "3"]));
    assert!(out.contains("values over"), "{out}");
}

/// The numbers of the first live verdict of a release that judged a regressor's
/// values (`numbers.values` with both means).
fn live_values_verdict(r: &Value) -> Option<Value> {
    r["transitions"]
        .as_array()?
        .iter()
        .filter(|t| t["event"]["event"] == "verdict")
        .map(|t| t["event"]["numbers"]["values"].clone())
        .rfind(|v| v["bias"].is_object())
}

#[test]
fn regressors_on_live_traffic_alone_a_biased_one_rolled_back_a_retrain_promoted() {
    // No shadow step: the candidate and stable answer different requests, so their
    // values are compared as distributions (means, bins at stable's deciles).
    let d = with_regressor_v1(
        "regressor-live",
        &production(
            "steps = [{ weight = 25, pause = \"6s\" }, { weight = 50, pause = \"3s\" }]\n\
             analysis = { compare_latency = false }",
        ),
    );
    register(&d.home, "diabetes_shifted", None);
    let (code, r, (sent, failed, _)) = deploy_regressor_under_traffic(&d, 2);
    assert_eq!(code, Some(5), "{r}");
    let reason = reason_of(&r);
    assert!(reason.contains("values: the candidate's mean"), "{reason}");
    let v = live_values_verdict(&r).expect("a verdict on live values");
    let diff = v["bias"]["difference"].as_f64().unwrap();
    // 60 higher on every row; the variants saw different rows of the same cycle.
    assert!((diff - 60.0).abs() < 20.0, "{v}");
    assert!(weights(&r).iter().all(|w| *w <= 25), "{r}");
    assert_eq!(failed, 0, "{failed} of {sent}");
    eprintln!("{reason}");

    register(&d.home, "diabetes_retrain", None);
    let (code, r, (_, failed, _)) = deploy_regressor_under_traffic(&d, 3);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(failed, 0);
    let v = live_values_verdict(&r).expect("a verdict on live values");
    assert!(v["candidate"]["rows"].as_u64().unwrap() >= 20, "{v}");
    assert!(v["drift"]["psi"].is_number(), "{v}");
    // Its values' mean is within 10% of stable's as far as the evidence shows (the
    // two variants answer different rows, so the point estimate moves with them).
    let limit = 0.1 * v["stable"]["mean_abs"].as_f64().unwrap();
    let (lo, hi) = (
        v["bias"]["lo"].as_f64().unwrap(),
        v["bias"]["hi"].as_f64().unwrap(),
    );
    assert!(lo <= limit && hi >= -limit, "{v}");
}

#[test]
fn good_classifier_retrains_are_promoted_with_the_default_judges() {
    // Shadow then canary, every judge on at its default (agreement 95%, drift,
    // errors with 4xx, latency), checked every interval.
    let d = with_v1(
        "retrains",
        &production("steps = [{ shadow = 100, pause = \"2s\" }, { weight = 50, pause = \"2s\" }]"),
    );
    // Six retrains: three of examples/models, and three of the zoo (trained on
    // another split, with other algorithms, other input and output names, ZipMap
    // probabilities, one without probabilities at all).
    let zoo = hoist_testkit::repo_root().join("examples/zoo");
    for (version, package) in [
        (2, model("breast_cancer_rf")),
        (3, model("breast_cancer_lr")),
        (4, model("breast_cancer_gbt")),
        (5, zoo.join("scaler_logistic_regression")),
        (6, zoo.join("hist_gradient_boosting_classifier")),
        (7, zoo.join("lightgbm_classifier")),
    ] {
        ok(&hoist(
            &d.home,
            &[
                "model",
                "register",
                package.to_str().unwrap(),
                "--name",
                "m",
            ],
        ));
        let (code, r, (sent, failed, _)) = deploy_under_traffic(&d, version, false);
        let package = package.display();
        assert_eq!(code, Some(0), "{package}: {r}");
        assert_eq!(failed, 0, "{package}: {failed} of {sent}");
        let shadow = r["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["event"]["event"] == "verdict")
            .find_map(|t| t["event"]["numbers"]["shadow"]["agreement"].as_f64());
        eprintln!("{package}: promoted, shadow agreement {shadow:?}");
        assert!(shadow.is_some_and(|a| a >= 0.9), "{package}: {r}");
    }
}
