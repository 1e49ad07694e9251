//! Per-variant metrics as the release engine reads them, and `/metrics` text.

mod common;

use common::{Backend, Client, Running, config, routes};
use hoist_gateway::{LATENCY_BUCKETS, Variant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_each_class_per_variant_and_windows_with_since() {
    let stable = Backend::start("stable").await;
    let candidate = Backend::start("candidate").await;
    let gw = Running::start(
        config("prod"),
        routes(Some(stable.upstream("1")), Some(candidate.upstream("2")), 0),
    )
    .await;
    let client = Client::new();
    let url = gw.url("/invocations");
    let start = gw.gateway.metrics();
    assert_eq!(start.stable.requests, 0);
    assert_eq!(start.stable.quantile(0.99), None);

    for _ in 0..7 {
        client.post(&url, &[], "{}").await;
    }
    for _ in 0..2 {
        client.post(&url, &[("x-status", "404")], "{}").await;
    }
    client.post(&url, &[("x-status", "302")], "{}").await;
    // From here the split sends everything to the candidate (forced requests would
    // be counted apart: see tests/forced.rs).
    gw.gateway.set_routes(routes(
        Some(stable.upstream("1")),
        Some(candidate.upstream("2")),
        100,
    ));
    for _ in 0..3 {
        client.post(&url, &[], "{}").await;
    }
    let before = gw.gateway.metrics();
    for _ in 0..4 {
        let a = client.post(&url, &[("x-status", "503")], "{}").await;
        assert_eq!(a.status, 503, "backend errors pass through");
    }
    client.post(&url, &[("x-sleep-ms", "30")], "{}").await;
    let after = gw.gateway.metrics();

    let s = after.get(Variant::Stable);
    assert_eq!(
        (
            s.requests,
            s.ok,
            s.client_errors,
            s.server_errors,
            s.upstream_errors
        ),
        (10, 8, 2, 0, 0)
    );
    assert_eq!(
        s.error_rate(),
        0.0,
        "4xx are the client's errors, not the model's"
    );
    assert_eq!(s.latency_buckets.len(), LATENCY_BUCKETS.len() + 1);
    assert_eq!(s.latency_buckets.iter().sum::<u64>(), 10);
    assert!(s.latency_sum_seconds > 0.0);
    let p50 = s.quantile(0.5).unwrap();
    let p99 = s.quantile(0.99).unwrap();
    assert!(p50 > 0.0 && p50 <= p99, "{p50} {p99}");
    assert_eq!(s.latency_samples().len(), 10);

    let c = after.get(Variant::Candidate);
    assert_eq!((c.requests, c.ok, c.server_errors), (8, 4, 4));
    assert_eq!(c.error_rate(), 0.5);

    // The window holds only what happened after `before`.
    let w = after.since(&before);
    assert_eq!(w.stable.requests, 0);
    assert_eq!(w.stable.quantile(0.5), None);
    assert_eq!(
        (
            w.candidate.requests,
            w.candidate.server_errors,
            w.candidate.ok
        ),
        (5, 4, 1)
    );
    assert_eq!(w.candidate.error_rate(), 0.8);
    // The slowest of the window took at least 30 ms: the top quantile says so.
    assert!(w.candidate.quantile(1.0).unwrap() >= 0.03);
    assert_eq!(after.since(&start), after);

    // Counters survive a route change and a version change (new series, same variant).
    let other = Backend::start("candidate-3").await;
    gw.gateway.set_routes(routes(
        Some(stable.upstream("1")),
        Some(other.upstream("3")),
        100,
    ));
    client.post(&url, &[], "{}").await;
    let later = gw.gateway.metrics();
    assert_eq!(later.candidate.requests, 9);
    assert_eq!(later.since(&after).candidate.requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_exposes_the_series() {
    let stable = Backend::start("stable").await;
    let candidate = Backend::start("candidate").await;
    let gw = Running::start(
        config("production"),
        routes(
            Some(stable.upstream("v1")),
            Some(candidate.upstream("v2")),
            10,
        ),
    )
    .await;
    let client = Client::new();
    for _ in 0..100 {
        client.post(&gw.url("/invocations"), &[], "{}").await;
    }
    // One failing request the split sends to the candidate (a forced one would be
    // counted apart: see tests/forced.rs).
    let r = gw.gateway.routes();
    gw.gateway
        .set_routes(routes(r.stable.clone(), r.candidate.clone(), 100));
    client
        .post(&gw.url("/invocations"), &[("x-status", "500")], "{}")
        .await;
    gw.gateway.set_routes(r);
    let a = client.get(&gw.url("/metrics"), &[]).await;
    assert_eq!(a.status, 200);
    assert!(
        a.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(
        a.header("x-hoist-variant").is_none(),
        "answered by the gateway itself"
    );
    let text = a.body;
    for line in [
        r#"hoist_gateway_requests_total{env="production",variant="stable",version="v1",class="2xx"} 90"#,
        r#"hoist_gateway_requests_total{env="production",variant="candidate",version="v2",class="2xx"} 10"#,
        r#"hoist_gateway_requests_total{env="production",variant="candidate",version="v2",class="5xx"} 1"#,
        r#"hoist_gateway_requests_total{env="production",variant="candidate",version="v2",class="upstream"} 0"#,
        r#"hoist_gateway_request_duration_seconds_bucket{env="production",variant="stable",le="+Inf"} 90"#,
        r#"hoist_gateway_request_duration_seconds_count{env="production",variant="candidate"} 11"#,
        r#"hoist_gateway_candidate_weight{env="production"} 10"#,
        "# TYPE hoist_gateway_request_duration_seconds histogram",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(text.contains(
        r#"hoist_gateway_request_duration_seconds_bucket{env="production",variant="stable",le="0.00005"} "#
    ));
    assert!(text.contains(
        r#"hoist_gateway_request_duration_seconds_sum{env="production",variant="stable"} "#
    ));
    // Buckets are cumulative.
    let counts: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with(r#"hoist_gateway_request_duration_seconds_bucket{env="production",variant="stable""#))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), LATENCY_BUCKETS.len() + 1);
    assert!(counts.windows(2).all(|w| w[0] <= w[1]));
}
