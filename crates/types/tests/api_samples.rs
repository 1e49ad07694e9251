//! The API's types against answers of a real daemon (`hoist up` with a model live in
//! production and a notification receiver that is down), saved under `samples/`
//! (pretty-printed by jq, which writes `0.0` as `0`): each reads, and writes back the
//! same JSON.

use hoist_types::ErrorCode;
use hoist_types::api::{Outcome, ReleaseDetail, ReleaseList, StatusView};
use hoist_types::error::ErrorBody;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn sample(name: &str) -> Value {
    let path = format!("{}/tests/samples/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Equal as JSON, numbers compared by value (`0` and `0.0` alike), keys in order.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
        }
        _ => a == b,
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let v = sample(name);
    let t: T = serde_json::from_value(v.clone()).unwrap();
    let back = serde_json::to_value(&t).unwrap();
    assert!(same(&v, &back), "{name}:\n{v}\n{back}");
    t
}

#[test]
fn the_status_of_a_real_daemon_reads_and_writes_back() {
    let s: StatusView = round_trip("status.json");
    assert_eq!(s.model, "m");
    let prod = &s.environments[0];
    assert_eq!(prod.stable.as_ref().map(|d| d.version.as_str()), Some("1"));
    assert!(prod.candidate.is_none() && prod.split.is_none());
    assert!(s.active.is_empty());
    assert_eq!(s.notifications.receivers.len(), 1);
    assert!(!s.notifications.failures.is_empty());
}

#[test]
fn the_releases_of_a_real_daemon_read_and_write_back() {
    let l: ReleaseList = round_trip("releases.json");
    assert_eq!(l.releases[0].release.outcome, Some(Outcome::Succeeded));
    let d: ReleaseDetail = round_trip("release.json");
    assert!(d.release.is_done());
    assert_eq!(d.progress, 1.0);
    assert_eq!(d.transitions[0].event.name(), "start");
}

#[test]
fn a_refusal_of_a_real_daemon_reads_and_writes_back() {
    let e: ErrorBody = round_trip("error_conflict.json");
    assert_eq!(e.error.code, ErrorCode::Conflict);
    assert_eq!(e.error.code.exit_code(), 6);
}
