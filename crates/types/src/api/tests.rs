//! The API's types read what a daemon answers and write it back byte for byte.

use super::*;
use crate::error::{ErrorBody, ErrorCode};

/// Reads `text` as `T` and writes it back: the same JSON, in the same order.
fn round_trip<T: serde::de::DeserializeOwned + Serialize>(text: &str) -> T {
    let compact: serde_json::Value = serde_json::from_str(text).unwrap();
    let compact = serde_json::to_string(&compact).unwrap();
    let t: T = serde_json::from_str(&compact).unwrap();
    assert_eq!(serde_json::to_string(&t).unwrap(), compact);
    t
}

// Answers of a real daemon (`hoist up`, a canary of m/2 over m/1, one pause step),
// pretty-printed.

const RELEASE: &str = r#"{
  "id": 2, "model": "m", "version": "2",
  "plan": {"envs": [
      {"name": "staging", "steps": [{"weight": 100, "pause": "none"}], "approval": false,
       "analysis": true, "max_inconclusive_ms": 300000, "failure_limit": 0, "consecutive_failures": 0},
      {"name": "production", "steps": [{"weight": 0, "shadow": 50, "pause": {"ms": 2000}},
        {"weight": 10, "pause": "manual"}, {"weight": 100, "pause": "none"}], "approval": true,
       "analysis": true, "max_inconclusive_ms": 300000, "failure_limit": 1, "consecutive_failures": 2}],
    "gates": true, "breaking_change": "marked at deploy"},
  "phase": {"phase": "step", "index": 1, "started_ms": 1795309964000, "until_ms": null,
    "verdict": {"verdict": "inconclusive", "reason": "too few requests"}, "failures": 0, "consecutive": 0},
  "env": 1, "weight": 10, "shadow": 0, "candidate_up": true, "has_stable": true, "outcome": null,
  "digest": "sha256:d4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35",
  "path": "/home/u/.hoist/daemon/releases/2", "trigger": "api: m/2",
  "created_ms": 1795309960000, "updated_ms": 1795309964000
}"#;

const DONE: &str = r#"{
  "id": 3, "model": "m", "version": "3",
  "plan": {"envs": [{"name": "production", "steps": [{"weight": 100, "pause": "none"}],
    "approval": false, "analysis": false, "max_inconclusive_ms": 0, "failure_limit": 0,
    "consecutive_failures": 0}], "gates": false},
  "phase": {"phase": "done"}, "env": 0, "weight": 0, "shadow": 0, "candidate_up": false,
  "has_stable": true, "outcome": {"outcome": "failed", "reason": "error rate 0.5 > 0.05"},
  "digest": null, "path": null, "trigger": "alias champion → 3",
  "created_ms": 1, "updated_ms": 2
}"#;

#[test]
fn a_release_reads_and_writes_back_unchanged() {
    let r: Release = round_trip(RELEASE);
    assert_eq!(r.plan.envs[1].steps[0].shadow, 50);
    assert_eq!(r.plan.envs[1].steps[1].pause, StepPause::Manual);
    assert!(matches!(
        r.phase,
        Phase::Step {
            index: 1,
            until_ms: None,
            ..
        }
    ));
    assert!(!r.is_done());
    let d: Release = round_trip(DONE);
    assert!(d.is_done());
    assert_eq!(d.outcome.as_ref().map(Outcome::name), Some("failed"));
    for outcome in [
        r#"{"outcome":"succeeded"}"#,
        r#"{"outcome":"aborted","reason":"by hand"}"#,
        r#"{"outcome":"superseded","by":4}"#,
    ] {
        round_trip::<Outcome>(outcome);
    }
}

#[test]
fn a_release_detail_and_list_read_and_write_back_unchanged() {
    let release = RELEASE.trim_end().trim_end_matches('}');
    let detail = format!(
        r#"{release}, "summary": "production step 2/3 at 10%", "progress": 0.5, "transitions": [
          {{"seq": 1, "at_ms": 5, "event": {{"event": "start"}}, "actions": [{{"action": "fetch"}}], "phase": "fetching"}},
          {{"seq": 2, "at_ms": 6, "event": {{"event": "gates_failed", "reason": "accuracy 0.4", "reports": [{{"gate": "golden"}}]}},
            "actions": [{{"action": "set_weight", "env": "staging", "weight": 0}}, {{"action": "tag", "key": "hoist.rollback_reason", "value": "accuracy 0.4"}}], "phase": "done"}},
          {{"seq": 3, "at_ms": 7, "event": {{"event": "verdict", "verdict": {{"verdict": "fail", "reason": "p99"}},
            "numbers": {{"candidate": {{"requests": 10, "errors": 0, "error_rate": 0.0, "p50_ms": 1.5, "p99_ms": null, "labelled": 0, "correct": 0}}}}}},
            "actions": [{{"action": "wake_at", "at_ms": 9}}, {{"action": "begin_analysis", "env": "production", "step": 1}},
                        {{"action": "mirror", "env": "production", "percent": 50}}], "phase": "step"}}
        ]}}"#
    );
    let d: ReleaseDetail = round_trip(&detail);
    assert_eq!(d.transitions[1].event.name(), "gates_failed");
    assert_eq!(d.transitions[1].event.reason(), Some("accuracy 0.4"));
    match &d.transitions[2].event {
        Event::Verdict { verdict, numbers } => {
            assert_eq!((verdict.name(), verdict.reason()), ("fail", Some("p99")));
            assert_eq!(numbers["candidate"]["requests"], 10);
        }
        other => panic!("{other:?}"),
    }
    let list = format!(r#"{{"releases": [{release}, "summary": "in production"}}]}}"#);
    let l: ReleaseList = round_trip(&list);
    assert_eq!(l.releases[0].summary, "in production");
    assert_eq!(l.releases[0].release.id, 2);
}

#[test]
fn the_status_reads_and_writes_back_unchanged() {
    let release = RELEASE.trim_end().trim_end_matches('}');
    let window = r#"{"requests": 120, "errors": 1, "error_rate": 0.008333333333333333, "p50_ms": 1.25, "p99_ms": 9.5, "labelled": 3, "correct": 2}"#;
    let status = format!(
        r#"{{"model": "m", "registry": "embedded:/home/u/.hoist",
          "environments": [
            {{"name": "production", "url": "http://127.0.0.1:8080", "strategy": "canary", "weight": 10,
              "stable": {{"version": "1", "digest": "sha256:00", "release_id": 1,
                "servers": [{{"addr": "127.0.0.1:40001", "pid": 4242, "restarts": 0, "status": "Running"}}]}},
              "candidate": null, "stable_metrics": {window}, "candidate_metrics": {window}, "target": "local"}},
            {{"name": "staging", "url": "http://stg", "strategy": "blue-green", "weight": 0, "stable": null,
              "candidate": null, "stable_metrics": {window}, "candidate_metrics": {window}, "target": "kubernetes",
              "split": "exact weights (Gateway API)"}}],
          "active": [{release}, "summary": "production step 2/3 at 10%", "progress": 0.5,
            "last_verdict": {{"env": "production", "step": 1, "verdict": {{"verdict": "pass"}}, "window": {window},
              "numbers": {{"error_comparison": {{"p": 0.5}}}}, "at_ms": 7}}}}],
          "notifications": {{"sent": 1, "failed": 1, "dropped": 0, "queued": 0,
            "receivers": [{{"url": "http://hooks", "kind": "json", "sent": 1, "failed": 1, "dropped": 0, "queued": 0}}],
            "failures": [{{"url": "http://hooks", "event": "release.failed", "release": 2, "attempts": 3,
              "error": "HTTP 500", "at_ms": 9}}]}}}}"#
    );
    let s: StatusView = round_trip(&status);
    assert_eq!(
        s.environments[0].stable.as_ref().unwrap().servers[0].pid,
        Some(4242)
    );
    assert_eq!(
        s.environments[1].split.as_deref(),
        Some("exact weights (Gateway API)")
    );
    assert_eq!(
        s.active[0].last_verdict.as_ref().unwrap().verdict,
        Verdict::Pass
    );
    // An older daemon's window has no feedback counts.
    let old: WindowView = serde_json::from_str(
        r#"{"requests":1,"errors":0,"error_rate":0.0,"p50_ms":null,"p99_ms":null}"#,
    )
    .unwrap();
    assert_eq!((old.labelled, old.correct), (0, 0));
}

#[test]
fn requests_are_what_the_daemon_accepts() {
    let c: CreateRelease = round_trip(
        r#"{"model":"m@champion","env":"staging","supersede":true,"breaking_change":false}"#,
    );
    assert_eq!(c.env.as_deref(), Some("staging"));
    // Absent fields are defaults; unknown ones are refused.
    let c: CreateRelease = serde_json::from_str(r#"{"model":"m/1"}"#).unwrap();
    assert_eq!((c.env, c.supersede), (None, false));
    assert!(serde_json::from_str::<CreateRelease>(r#"{"model":"m","x":1}"#).is_err());
    assert!(serde_json::from_str::<Promote>(r#"{"fast":true}"#).is_err());
    round_trip::<Promote>(r#"{"full":true}"#);
    round_trip::<Abort>(r#"{"reason":"by hand"}"#);
    round_trip::<Abort>(r#"{}"#);
    round_trip::<Rollback>(r#"{"env":"production","to":"1"}"#);
    let l: LogLine = round_trip(r#"{"at_ms":1,"release":null,"message":"ready"}"#);
    assert_eq!(l.release, None);
    assert_eq!(paths::release_op(3, "abort"), "/api/v1/releases/3/abort");
}

#[test]
fn an_error_answer_names_its_code() {
    let b: ErrorBody = round_trip(r#"{"error":{"code":"not_found","message":"no release 9"}}"#);
    assert_eq!(b.error.code, ErrorCode::NotFound);
}

#[test]
fn verdict_numbers_read_what_the_analysis_journals() {
    let v: serde_json::Value = serde_json::from_str(
        r#"{"candidate": {"requests": 10, "errors": 1, "error_rate": 0.1, "p50_ms": 1.0, "p99_ms": 4.5},
            "stable": {"requests": 90, "errors": 0, "p99_ms": null},
            "error_comparison": {"p": 0.02, "difference": 0.1},
            "latency_comparison": {"p": 0.5, "median_ratio": 1.1},
            "drift": {"psi": 0.3, "bins": [1, 2]},
            "shadow": {"mirrored": 5, "agreement": 0.8, "rows": 5, "mean_probability_diff": 0.01, "errors": 0},
            "feedback": {"candidate": {"accuracy": 0.5, "correct": 1, "labelled": 2}, "stable": {"accuracy": null, "correct": 0, "labelled": 0}}}"#,
    )
    .unwrap();
    let n = VerdictNumbers::of(&v);
    assert_eq!(n.candidate.as_ref().and_then(|w| w.p99_ms), Some(4.5));
    assert_eq!(n.stable.as_ref().and_then(|w| w.p99_ms), None);
    assert_eq!(n.drift.and_then(|d| d.psi), Some(0.3));
    assert_eq!(n.feedback.unwrap().candidate.labelled, Some(2));
    // Not numbers at all: none.
    assert_eq!(
        VerdictNumbers::of(&serde_json::Value::Null),
        VerdictNumbers::default()
    );
    assert_eq!(
        VerdictNumbers::of(&serde_json::json!({"gate": "x"})),
        VerdictNumbers::default()
    );
}
