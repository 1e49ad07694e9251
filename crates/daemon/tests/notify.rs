//! Release notifications against real HTTP receivers on 127.0.0.1: signed JSON,
//! retries on 5xx, permanent failures in the status, Slack messages, and a receiver
//! that never answers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use hoist_daemon::notify::{EVENTS, Notifier, QUEUE_CAPACITY, ReleaseEvent};
use hoist_release::config::{Notification, NotificationKind};
use sha2::Sha256;

/// What a receiver does with request `n` (0-based).
#[derive(Clone, Copy)]
enum Answer {
    Status(u16),
    Hang,
}

struct Receiver {
    hits: Mutex<Vec<(HeaderMap, Bytes)>>,
    plan: fn(usize) -> Answer,
}

async fn handle(
    State(r): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let n = {
        let mut hits = r.hits.lock().unwrap();
        hits.push((headers, body));
        hits.len() - 1
    };
    match (r.plan)(n) {
        Answer::Status(s) => (StatusCode::from_u16(s).unwrap(), "no such hook"),
        Answer::Hang => std::future::pending().await,
    }
}

/// A receiver on 127.0.0.1 answering as `plan` says; its URL ends in `/hook`.
async fn receiver(plan: fn(usize) -> Answer) -> (String, Arc<Receiver>) {
    let r = Arc::new(Receiver {
        hits: Mutex::new(Vec::new()),
        plan,
    });
    let app = Router::new()
        .route("/hook", axum::routing::post(handle))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), r)
}

fn config(url: &str) -> Notification {
    Notification {
        url: url.into(),
        kind: NotificationKind::Json,
        secret_env: None,
        events: Vec::new(),
        max_attempts: 5,
    }
}

fn event(event: &'static str) -> ReleaseEvent {
    ReleaseEvent {
        event,
        release: 3,
        model: "m".into(),
        version: "3".into(),
        env: Some("production".into()),
        message: "p99 latency 74.6 ms over the 50 ms budget".into(),
        details: serde_json::json!({ "p99_ms": 74.6, "max_p99_ms": 50 }),
        at_ms: 1_700_000_000_000,
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn hits(r: &Receiver) -> Vec<(HeaderMap, Bytes)> {
    r.hits.lock().unwrap().clone()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// (a) What a receiver does to check a JSON delivery, as the module documents it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_delivery_is_signed_with_the_shared_secret() {
    let (url, r) = receiver(|_| Answer::Status(200)).await;
    let mut c = config(&url);
    c.secret_env = Some("HOOK_SECRET".into());
    let env = |k: &str| (k == "HOOK_SECRET").then(|| "s3cret".to_string());
    let n = Notifier::new(&[c], &env).unwrap();
    n.send(event("rolled_back"));
    assert!(n.flush(Duration::from_secs(30)).await, "{:?}", n.status());

    let hits = hits(&r);
    assert_eq!(hits.len(), 1);
    let (h, body) = &hits[0];
    let ts = header(h, "x-hoist-timestamp");
    let sig = header(h, "x-hoist-signature");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(ts.parse::<u64>().unwrap()) < 300, "stale {ts}");
    let hex = sig.strip_prefix("sha256=").expect("sha256= prefix");
    let verify = |secret: &[u8]| {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(ts.as_bytes());
        mac.update(b".");
        mac.update(body);
        let want: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        mac.verify_slice(&want).is_ok()
    };
    assert!(verify(b"s3cret"), "signature {sig} does not verify");
    assert!(!verify(b"wrong"), "any secret verifies");

    assert_eq!(header(h, "content-type"), "application/json");
    assert_eq!(header(h, "x-hoist-event"), "rolled_back");
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["event"], "rolled_back");
    assert_eq!(v["release"], 3);
    assert_eq!(v["model"], "m");
    assert_eq!(v["version"], "3");
    assert_eq!(v["env"], "production");
    assert_eq!(v["details"]["p99_ms"], 74.6);
    assert_eq!(v["at_ms"], 1_700_000_000_000u64);
    assert_eq!(n.status().sent, 1);
}

/// (b) 500, 500, then 200: delivered once, on the third attempt, with one delivery id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_the_event_arrives_once() {
    let (url, r) = receiver(|n| Answer::Status(if n < 2 { 500 } else { 200 })).await;
    let n = Notifier::new(&[config(&url)], &no_env).unwrap();
    n.send(event("promoted"));
    assert!(n.flush(Duration::from_secs(60)).await, "{:?}", n.status());

    let hits = hits(&r);
    assert_eq!(hits.len(), 3, "two refusals and one delivery");
    let ids: Vec<&str> = hits
        .iter()
        .map(|(h, _)| header(h, "x-hoist-delivery"))
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert!(
        hits.iter().all(|(_, b)| b == &hits[0].1),
        "same body each time"
    );
    let s = n.status();
    assert_eq!(
        (s.sent, s.failed, s.dropped, s.queued),
        (1, 0, 0, 0),
        "{s:?}"
    );
    assert!(s.failures.is_empty());

    // The next event goes out on its first attempt.
    n.send(event("started"));
    assert!(n.flush(Duration::from_secs(60)).await);
    assert_eq!(r.hits.lock().unwrap().len(), 4);
    assert_eq!(n.status().sent, 2);
}

/// (c) A 404 is not retried: the status counts it failed and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_is_a_permanent_failure_in_status() {
    let (url, r) = receiver(|_| Answer::Status(404)).await;
    let n = Notifier::new(&[config(&url)], &no_env).unwrap();
    n.send(event("aborted"));
    assert!(n.flush(Duration::from_secs(60)).await, "{:?}", n.status());

    assert_eq!(hits(&r).len(), 1, "a 404 is not retried");
    let s = n.status();
    assert_eq!((s.sent, s.failed, s.dropped), (0, 1, 0), "{s:?}");
    assert_eq!(s.receivers[0].failed, 1);
    let f = &s.failures[0];
    assert_eq!(f.url, url);
    assert_eq!(f.event, "aborted");
    assert_eq!(f.release, 3);
    assert_eq!(f.attempts, 1);
    assert!(f.error.contains("404"), "{}", f.error);
    assert!(f.error.contains("no such hook"), "{}", f.error);
    // It serializes for `hoist status --json`.
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["failures"][0]["error"], f.error.as_str());
}

/// A receiver nobody listens on: retried max_attempts times, then failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_receiver_fails_after_max_attempts() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut c = config(&format!("http://127.0.0.1:{port}/hook"));
    c.max_attempts = 3;
    let n = Notifier::new(&[c], &no_env).unwrap();
    n.send(event("step"));
    assert!(n.flush(Duration::from_secs(60)).await, "{:?}", n.status());
    let s = n.status();
    assert_eq!(s.failed, 1, "{s:?}");
    assert_eq!(s.failures[0].attempts, 3);
    assert!(
        s.failures[0].error.contains("connection"),
        "{}",
        s.failures[0].error
    );
}

/// (d) Slack gets `{"text": …}` naming the release, what happened and why, and only
/// the events it asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_receiver_gets_a_one_line_text() {
    let (url, r) = receiver(|_| Answer::Status(200)).await;
    let mut c = config(&url);
    c.kind = NotificationKind::Slack;
    c.events = vec!["rolled_back".into()];
    let n = Notifier::new(&[c], &no_env).unwrap();
    n.send(event("started"));
    n.send(event("rolled_back"));
    assert!(n.flush(Duration::from_secs(30)).await, "{:?}", n.status());

    let hits = hits(&r);
    assert_eq!(hits.len(), 1, "only rolled_back was asked for");
    let v: serde_json::Value = serde_json::from_slice(&hits[0].1).unwrap();
    let text = v["text"].as_str().expect("a text field");
    assert_eq!(
        text,
        "hoist: release 3 (m v3) rolled back in production: p99 latency 74.6 ms over the 50 ms budget"
    );
    assert!(!text.contains('\n'));
    assert_eq!(n.status().receivers[0].kind, "slack");
}

/// (e) A receiver that never answers: send() returns at once even with its queue full
/// (the excess is dropped and counted), and another receiver is not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_does_not_block_send() {
    let (hang_url, _hang) = receiver(|_| Answer::Hang).await;
    let (ok_url, ok) = receiver(|_| Answer::Status(200)).await;
    let mut fine = config(&ok_url);
    fine.events = vec!["rolled_back".into()];
    let n = Notifier::new(&[config(&hang_url), fine], &no_env).unwrap();

    let extra = 50;
    let t = Instant::now();
    for _ in 0..QUEUE_CAPACITY + extra {
        n.send(event("step"));
    }
    n.send(event("rolled_back"));
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "send took {took:?}");

    // The healthy receiver gets its event although the other one never answers.
    let got = hoist_testkit::poll_async(Duration::from_secs(20), || {
        (!ok.hits.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    assert!(got.is_some(), "{:?}", n.status());
    let s = n.status();
    // At most QUEUE_CAPACITY wait and one is in flight: the rest were dropped.
    let hanging = &s.receivers[0];
    assert!(hanging.dropped >= extra as u64, "{hanging:?}");
    assert_eq!(
        hanging.dropped + hanging.queued + hanging.sent + hanging.failed,
        (QUEUE_CAPACITY + extra + 1) as u64,
        "{hanging:?}"
    );
    assert_eq!(s.receivers[1].dropped, 0);
    assert!(!n.flush(Duration::from_millis(100)).await);
}

#[tokio::test]
async fn invalid_configs_are_refused_with_clear_errors() {
    let env = |k: &str| (k == "EMPTY").then(String::new);
    let err = |c: Notification| Notifier::new(&[c], &env).unwrap_err();

    let mut c = config("http://127.0.0.1:9/hook");
    c.secret_env = Some("EMPTY".into());
    let e = err(c);
    assert!(
        e.contains("notifications[0].secret_env") && e.contains("EMPTY"),
        "{e}"
    );

    let mut c = config("http://127.0.0.1:9/hook");
    c.secret_env = Some("UNSET_VAR".into());
    assert!(err(c).contains("UNSET_VAR"));

    let e = err(config("ftp://example.com/hook"));
    assert!(
        e.contains("notifications[0].url") && e.contains("http"),
        "{e}"
    );
    assert!(err(config("127.0.0.1:9/hook")).contains("url"));

    let mut c = config("http://127.0.0.1:9/hook");
    c.events = vec!["rolled_back".into(), "rollback".into()];
    let e = err(c);
    assert!(e.contains("'rollback'"), "{e}");
    assert!(EVENTS.iter().all(|v| e.contains(v)), "{e}");

    let mut c = config("http://127.0.0.1:9/hook");
    c.max_attempts = 0;
    assert!(err(c).contains("max_attempts"));

    let mut c = config("https://hooks.slack.com/services/T/B/X");
    c.kind = NotificationKind::Slack;
    c.secret_env = Some("EMPTY".into());
    assert!(err(c).contains("secret_env"));

    // The second receiver is named when it is the bad one.
    let e = Notifier::new(
        &[config("http://127.0.0.1:9/a"), config("mailto:x@y")],
        &env,
    )
    .unwrap_err();
    assert!(e.starts_with("notifications[1].url"), "{e}");
}

#[test]
fn no_receivers_need_no_runtime() {
    let n = Notifier::new(&[], &no_env).unwrap();
    n.send(event("started"));
    assert_eq!(n.status().sent, 0);
    let e = Notifier::new(&[config("http://127.0.0.1:9/hook")], &no_env).unwrap_err();
    assert!(e.contains("tokio runtime"), "{e}");
}
