//! Clients cannot sway a release's verdict: requests forced with the force header
//! are served but counted apart from the numbers the analysis reads, and sticky
//! keys land in buckets keyed with a per-gateway secret.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use hoist_gateway::{GatewayConfig, Routes};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FORCE: (&str, &str) = ("x-hoist-variant", "candidate");

/// One HTTP/1.0 request on its own connection (the gateway hands HTTP/1.0 to its
/// hyper path); the whole answer as text.
async fn http10(gw: &Running, headers: &[(&str, &str)]) -> String {
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut req = "GET /invocations HTTP/1.0\r\n".to_string();
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_requests_never_reach_the_analysis_counters() {
    let stable = Backend::start("stable").await;
    let candidate = Backend::start("candidate").await;
    let gw = Running::start(config("prod"), both(&stable, &candidate, 50)).await;
    let client = Client::new();
    let url = gw.url("/invocations");

    // An outsider forces 200 requests onto the candidate, and every one fails.
    for _ in 0..200 {
        let a = client.post(&url, &[FORCE, ("x-status", "500")], "{}").await;
        assert_eq!((a.status.as_u16(), a.variant()), (500, "candidate"));
    }
    // The same through the hyper path (HTTP/1.0), forcing stable as well.
    for _ in 0..5 {
        let a = http10(&gw, &[FORCE, ("x-status", "503")]).await;
        assert!(
            a.starts_with("HTTP/1.0 503") || a.starts_with("HTTP/1.1 503"),
            "{a}"
        );
        assert!(a.contains("x-hoist-variant: candidate"), "{a}");
        let a = http10(&gw, &[("X-Hoist-Variant", "stable"), ("x-status", "500")]).await;
        assert!(a.contains("x-hoist-variant: stable"), "{a}");
    }
    assert_eq!(
        candidate.hits.load(std::sync::atomic::Ordering::SeqCst),
        205
    );

    let m = gw.gateway.metrics();
    assert_eq!(
        (
            m.candidate.requests,
            m.candidate.server_errors,
            m.candidate.error_rate()
        ),
        (0, 0, 0.0),
        "forced failures count nothing against the candidate"
    );
    assert_eq!(m.candidate.latency_buckets.iter().sum::<u64>(), 0);
    assert_eq!(m.stable.requests, 0);
    assert_eq!(
        (
            m.forced.candidate.requests,
            m.forced.candidate.server_errors
        ),
        (205, 205)
    );
    assert_eq!(
        (m.forced.stable.requests, m.forced.stable.server_errors),
        (5, 5)
    );

    // Split traffic still counts, half on each side at 50%.
    let before = gw.gateway.metrics();
    for _ in 0..100 {
        assert_eq!(client.post(&url, &[], "{}").await.status, 200);
    }
    let w = gw.gateway.metrics().since(&before);
    assert_eq!((w.candidate.requests, w.candidate.ok), (50, 50));
    assert_eq!((w.stable.requests, w.stable.ok), (50, 50));
    assert_eq!(w.forced.candidate.requests, 0);

    // Ambiguous forcing (two force lines) is not forcing: split and counted.
    let before = gw.gateway.metrics();
    for _ in 0..10 {
        client
            .post(&url, &[FORCE, ("x-hoist-variant", "candidate")], "{}")
            .await;
    }
    let w = gw.gateway.metrics().since(&before);
    assert_eq!(w.candidate.requests + w.stable.requests, 10);
    assert_eq!(w.forced.candidate.requests, 0);

    // /metrics: forced requests have their own series; the judged ones lack them.
    let m = gw.gateway.metrics();
    assert_eq!(m.candidate.requests + m.stable.requests, 110);
    assert_eq!(m.candidate.server_errors + m.stable.server_errors, 0);
    let text = client.get(&gw.url("/metrics"), &[]).await.body;
    for line in [
        r#"hoist_gateway_forced_requests_total{env="prod",variant="candidate",version="2",class="5xx"} 205"#.to_string(),
        r#"hoist_gateway_forced_requests_total{env="prod",variant="stable",version="1",class="5xx"} 5"#.to_string(),
        r#"hoist_gateway_requests_total{env="prod",variant="candidate",version="2",class="5xx"} 0"#.to_string(),
        format!(
            r#"hoist_gateway_requests_total{{env="prod",variant="candidate",version="2",class="2xx"}} {}"#,
            m.candidate.ok
        ),
        format!(
            r#"hoist_gateway_request_duration_seconds_count{{env="prod",variant="candidate"}} {}"#,
            m.candidate.requests
        ),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_request_that_falls_back_stays_forced() {
    let stable = Backend::start("stable").await;
    let mut candidate = Backend::start("candidate").await;
    let gw = Running::start(config("prod"), both(&stable, &candidate, 10)).await;
    candidate.stop().await;
    let client = Client::new();
    for _ in 0..20 {
        let a = client.post(&gw.url("/invocations"), &[FORCE], "{}").await;
        assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "stable"));
    }
    let m = gw.gateway.metrics();
    assert_eq!((m.stable.requests, m.candidate.requests), (0, 0));
    assert_eq!(m.forced.stable.requests, 20);
}

const PREDICTIONS: &str =
    r#"{"predictions":{"label":[1,0],"probabilities":[[0.1,0.9],[0.8,0.2]]}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_answers_feed_neither_feedback_nor_shadow() {
    let stable = Backend::start(PREDICTIONS).await;
    let candidate = Backend::start(PREDICTIONS).await;
    let routes = Routes {
        shadow_percent: 100,
        feedback: true,
        ..both(&stable, &candidate, 0)
    };
    let gw = Running::start(config("prod"), routes).await;
    let client = Client::new();
    let url = gw.url("/invocations");
    for (i, force) in [FORCE, ("x-hoist-variant", "stable")]
        .into_iter()
        .enumerate()
    {
        let id = format!("forced-{i}");
        let a = client
            .post(&url, &[force, ("x-request-id", &id)], "{}")
            .await;
        assert_eq!(a.status, 200);
        let body = json!({"request_id": id, "labels": [1, 0]}).to_string();
        let f = client.post(&gw.url("/feedback"), &[], &body).await;
        assert_eq!(
            f.status, 404,
            "a forced answer is not remembered: {}",
            f.body
        );
    }
    // A split request is remembered and mirrored, as before.
    let a = client
        .post(&url, &[("x-request-id", "split-1")], "{}")
        .await;
    assert_eq!(a.variant(), "stable");
    let body = json!({"request_id": "split-1", "labels": [1, 1]}).to_string();
    let f = client.post(&gw.url("/feedback"), &[], &body).await;
    assert_eq!(f.status, 200, "{}", f.body);
    for _ in 0..500 {
        if gw.gateway.metrics().shadow.answers.requests >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let m = gw.gateway.metrics();
    assert_eq!(
        m.shadow.answers.requests, 1,
        "only the split request was mirrored"
    );
    assert_eq!((m.stable.labelled, m.stable.correct), (2, 1));
    assert_eq!((m.candidate.labelled, m.forced.candidate.labelled), (0, 0));
    assert_eq!(m.forced.candidate.requests, 1);
    assert_eq!(m.forced.stable.requests, 1);
}

/// Which variant each of `users` lands on through `gw`, asking each three times.
async fn variants_of(gw: &Running, users: &[String]) -> BTreeMap<String, String> {
    let client = Client::new();
    let mut out = BTreeMap::new();
    for user in users {
        let first = client.get(&gw.url("/"), &[("x-user-id", user)]).await.body;
        for _ in 0..2 {
            let again = client.get(&gw.url("/"), &[("x-user-id", user)]).await.body;
            assert_eq!(again, first, "{user} moved between variants");
        }
        let cookie = format!("uid={user}");
        let by_cookie = client.get(&gw.url("/"), &[("cookie", &cookie)]).await.body;
        assert_eq!(by_cookie, first, "{user}: cookie and header disagree");
        out.insert(user.clone(), first);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_buckets_are_salted_per_gateway_and_stable_within_one() {
    let stable = Backend::start("stable").await;
    let candidate = Backend::start("candidate").await;
    let sticky = || GatewayConfig {
        sticky_header: Some("x-user-id".into()),
        sticky_cookie: Some("uid".into()),
        ..config("prod")
    };
    let r = || both(&stable, &candidate, 50);
    let (a, b) = (
        Running::start(sticky(), r()).await,
        Running::start(sticky(), r()).await,
    );
    let users: Vec<String> = (0..48).map(|i| format!("user-{i}")).collect();
    let on_a = variants_of(&a, &users).await;
    let on_b = variants_of(&b, &users).await;
    for map in [&on_a, &on_b] {
        let n = map.values().filter(|v| *v == "candidate").count();
        assert!((8..=40).contains(&n), "about half at 50%: {n} of 48");
    }
    // Independent salts: the same keys split differently (the chance that 48 keys
    // land alike on two independently keyed gateways is about 2^-48).
    assert_ne!(on_a, on_b, "two gateways put every key on the same side");
    // Stable for the gateway's lifetime, route changes included.
    a.gateway.set_routes(r());
    assert_eq!(variants_of(&a, &users).await, on_a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_routes_are_refused_and_the_old_ones_stay() {
    let stable = Backend::start("stable").await;
    let gw = Running::start(config("prod"), routes(Some(stable.upstream("1")), None, 0)).await;
    let before = gw.gateway.routes();
    for bad in [
        routes(Some(stable.upstream("1")), None, 20),
        routes(Some(stable.upstream("1")), Some(stable.upstream("2")), 101),
        routes(
            Some(stable.upstream("1")),
            Some(hoist_gateway::Upstream {
                version: "2".into(),
                model: None,
                addrs: vec![],
            }),
            5,
        ),
    ] {
        let e = gw.gateway.try_set_routes(bad).unwrap_err();
        assert!(!e.to_string().is_empty());
        assert_eq!(gw.gateway.routes(), before);
    }
    // The lenient form still serves: an upstream without addresses is no upstream.
    gw.gateway.set_routes(routes(
        Some(stable.upstream("1")),
        Some(hoist_gateway::Upstream {
            version: "2".into(),
            model: None,
            addrs: vec![],
        }),
        100,
    ));
    let a = Client::new().get(&gw.url("/"), &[]).await;
    assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "stable"));
}
