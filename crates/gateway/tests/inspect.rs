//! Shadow mirroring and feedback labels through a real gateway on loopback, with
//! stand-in model servers that answer fixed predictions.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use hoist_gateway::Routes;
use serde_json::{Value, json};

const STABLE: &str = r#"{"predictions":{"label":[1,0],"probabilities":[[0.1,0.9],[0.8,0.2]]}}"#;
/// Agrees on the first row, not on the second; probabilities differ by 0.4 twice.
const DISAGREEING: &str =
    r#"{"predictions":{"label":[1,1],"probabilities":[[0.1,0.9],[0.4,0.6]]}}"#;

async fn wait_until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mirrors_its_share_and_compares_answers() {
    let stable = Backend::start(STABLE).await;
    let candidate = Backend::start(DISAGREEING).await;
    let routes = Routes {
        shadow_percent: 50,
        ..routes(Some(stable.upstream("1")), Some(candidate.upstream("2")), 0)
    };
    let gw = Running::start(config("prod"), routes).await;
    let client = Client::new();
    for _ in 0..40 {
        let a = client.post(&gw.url("/invocations"), &[], "{}").await;
        // The caller only ever sees stable's answer.
        assert_eq!(a.status, 200);
        assert_eq!(a.body, STABLE);
        assert_eq!(a.variant(), "stable");
    }
    // GETs are not mirrored.
    client.get(&gw.url("/v2/health/ready"), &[]).await;
    let shadow = || gw.gateway.metrics().shadow;
    wait_until("20 mirrored answers", || shadow().answers.requests == 20).await;
    assert_eq!(candidate.hits.load(Ordering::SeqCst), 20);
    let s = shadow();
    assert_eq!(s.answers.ok, 20);
    assert_eq!((s.rows, s.agreeing_rows), (40, 20), "{s:?}");
    assert_eq!(s.probabilities, 80);
    assert!((s.probability_diff_sum - 16.0).abs() < 1e-6, "{s:?}");
    assert_eq!(s.unreadable, 0);
    // Stable's own counters are unaffected by the mirroring.
    let m = gw.gateway.metrics();
    assert_eq!(m.stable.requests, 41);
    assert_eq!(m.candidate.requests, 0);
    let text = gw.gateway.prometheus();
    assert!(
        text.contains("hoist_gateway_shadow_rows_total{env=\"prod\",agreement=\"disagree\"} 20"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_counts_a_failing_or_unreadable_candidate() {
    let stable = Backend::start(STABLE).await;
    let mut candidate = Backend::start("not predictions").await;
    let routes = Routes {
        shadow_percent: 100,
        ..routes(Some(stable.upstream("1")), Some(candidate.upstream("2")), 0)
    };
    let gw = Running::start(config("prod"), routes).await;
    let client = Client::new();
    for _ in 0..5 {
        client.post(&gw.url("/invocations"), &[], "{}").await;
    }
    let shadow = || gw.gateway.metrics().shadow;
    wait_until("5 mirrored answers", || shadow().answers.requests == 5).await;
    assert_eq!(shadow().unreadable, 5, "{:?}", shadow());
    assert_eq!(shadow().rows, 0);
    // A candidate that is gone: its mirrored requests fail, the callers' do not.
    candidate.stop().await;
    for _ in 0..3 {
        let a = client.post(&gw.url("/invocations"), &[], "{}").await;
        assert_eq!(a.status, 200);
    }
    wait_until("8 mirrored answers", || shadow().answers.requests == 8).await;
    assert_eq!(shadow().answers.upstream_errors, 3, "{:?}", shadow());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_labels_count_per_variant() {
    let stable = Backend::start(STABLE).await;
    let candidate = Backend::start(DISAGREEING).await;
    let routes = Routes {
        feedback: true,
        ..routes(
            Some(stable.upstream("1")),
            Some(candidate.upstream("2")),
            50,
        )
    };
    let gw = Running::start(config("prod"), routes).await;
    let client = Client::new();
    let mut ids = Vec::new();
    for _ in 0..10 {
        let a = client.post(&gw.url("/invocations"), &[], "{}").await;
        let id = a.header("x-request-id").expect("a request id").to_string();
        ids.push((id, a.variant().to_string()));
    }
    // The truth is [1, 0] for every request: stable is right on both rows, the
    // candidate on one.
    for (id, _) in &ids {
        let a = client
            .post(
                &gw.url("/feedback"),
                &[("content-type", "application/json")],
                &json!({ "request_id": id, "labels": [1, 0] }).to_string(),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        let v: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v["rows"], 2);
    }
    let n_stable = ids.iter().filter(|(_, v)| v == "stable").count() as u64;
    let n_candidate = 10 - n_stable;
    assert!(n_stable > 0 && n_candidate > 0, "{ids:?}");
    let m = gw.gateway.metrics();
    assert_eq!(
        (m.stable.labelled, m.stable.correct),
        (2 * n_stable, 2 * n_stable),
        "{m:?}"
    );
    assert_eq!(
        (m.candidate.labelled, m.candidate.correct),
        (2 * n_candidate, n_candidate),
        "{m:?}"
    );

    // Each answer counts once.
    let again = client
        .post(
            &gw.url("/feedback"),
            &[],
            &json!({ "request_id": ids[0].0, "labels": [1, 0] }).to_string(),
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.body);
    // The id may come in the header; a label count that does not match is refused.
    let a = client.post(&gw.url("/invocations"), &[], "{}").await;
    let id = a.header("x-request-id").unwrap().to_string();
    let wrong = client
        .post(
            &gw.url("/feedback"),
            &[("x-request-id", &id)],
            r#"{"label": 1}"#,
        )
        .await;
    assert_eq!(wrong.status, 400);
    assert!(wrong.body.contains("had 2 row(s)"), "{}", wrong.body);
    let ok = client
        .post(
            &gw.url("/feedback"),
            &[("x-request-id", &id)],
            r#"{"labels": ["1", 0.0]}"#,
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    // Unknown ids and bad bodies.
    let unknown = client
        .post(
            &gw.url("/feedback"),
            &[],
            r#"{"request_id": "nope", "label": 1}"#,
        )
        .await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("nope"), "{}", unknown.body);
    for bad in [
        "not json",
        "[]",
        r#"{"label": 1}"#,
        r#"{"request_id": "x"}"#,
    ] {
        let a = client.post(&gw.url("/feedback"), &[], bad).await;
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
        let v: Value = serde_json::from_str(&a.body).expect("a JSON error");
        assert!(v["error"].is_string());
    }
    // Nothing was proxied for any of this: the backends saw only predictions.
    assert_eq!(
        stable.hits.load(Ordering::SeqCst) + candidate.hits.load(Ordering::SeqCst),
        11
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_remembered_while_feedback_is_off() {
    let stable = Backend::start(STABLE).await;
    let gw = Running::start(config("prod"), routes(Some(stable.upstream("1")), None, 0)).await;
    let client = Client::new();
    let a = client.post(&gw.url("/invocations"), &[], "{}").await;
    let id = a.header("x-request-id").unwrap().to_string();
    let f = client
        .post(
            &gw.url("/feedback"),
            &[("x-request-id", &id)],
            r#"{"labels": [1, 0]}"#,
        )
        .await;
    assert_eq!(f.status, 404, "{}", f.body);
}

/// With a feedback token configured, labels without it (or with another) are refused
/// on both paths and count nothing; with it they count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_labels_need_the_token_when_one_is_configured() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stable = Backend::start(STABLE).await;
    let routes = Routes {
        feedback: true,
        ..routes(Some(stable.upstream("1")), None, 0)
    };
    let config = hoist_gateway::GatewayConfig {
        feedback_token: Some(hoist_types::Secret::value("labels-secret")),
        ..config("prod")
    };
    let gw = Running::start(config, routes).await;
    let client = Client::new();
    let a = client.post(&gw.url("/invocations"), &[], "{}").await;
    let id = a.header("x-request-id").unwrap().to_string();
    let body = json!({ "request_id": id, "labels": [1, 1] }).to_string();
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("labels-secret"),
        Some("Bearer "),
    ] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", *a)).collect();
        let r = client.post(&gw.url("/feedback"), &headers, &body).await;
        assert_eq!(r.status, 401, "{auth:?}: {}", r.body);
        assert!(r.body.contains("feedback token"), "{}", r.body);
    }
    // The hyper path (a chunked body) refuses the same way.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let chunked = format!(
        "POST /feedback HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    s.write_all(chunked.as_bytes()).await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert_eq!(gw.gateway.metrics().stable.labelled, 0);

    let r = client
        .post(
            &gw.url("/feedback"),
            &[("authorization", "Bearer labels-secret")],
            &body,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = gw.gateway.metrics();
    assert_eq!((m.stable.labelled, m.stable.correct), (2, 1), "{m:?}");
}

/// A feedback token in a file (`feedback_token_env`'s `_FILE`, a mounted Secret) is
/// read again when the file is rotated: the old token is refused at once, the new one
/// taken, with the gateway running on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_feedback_token_file_takes_effect_at_once() {
    let stable = Backend::start(STABLE).await;
    let routes = Routes {
        feedback: true,
        ..routes(Some(stable.upstream("1")), None, 0)
    };
    let dir = std::env::temp_dir().join(format!("hoist-feedback-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "old-token\n").unwrap();
    let config = hoist_gateway::GatewayConfig {
        feedback_token: Some(hoist_types::Secret::file(&file).unwrap()),
        ..config("prod")
    };
    let gw = Running::start(config, routes).await;
    let client = Client::new();
    // Labels one fresh answer with `token`: the status of `POST /feedback`.
    async fn label(client: &Client, gw: &Running, token: &str) -> u16 {
        let a = client.post(&gw.url("/invocations"), &[], "{}").await;
        let id = a.header("x-request-id").unwrap().to_string();
        let body = json!({ "request_id": id, "labels": [1, 1] }).to_string();
        let auth = format!("Bearer {token}");
        let r = client
            .post(
                &gw.url("/feedback"),
                &[("authorization", auth.as_str())],
                &body,
            )
            .await;
        r.status.as_u16()
    }
    assert_eq!(label(&client, &gw, "old-token").await, 200);

    std::fs::write(dir.join("token.new"), "new-token").unwrap();
    std::fs::rename(dir.join("token.new"), &file).unwrap();
    assert_eq!(
        label(&client, &gw, "old-token").await,
        401,
        "the old token after rotation"
    );
    assert_eq!(label(&client, &gw, "new-token").await, 200);
    assert_eq!(gw.gateway.metrics().stable.labelled, 4);
    let _ = std::fs::remove_dir_all(&dir);
}
