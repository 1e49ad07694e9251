//! What a release does to traffic: weights moving under load, slow requests in
//! flight, a candidate that goes away, a gateway that shuts down.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Backend, Client, Running, config, routes};
use hoist_gateway::Upstream;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn weight_changes_under_load_fail_no_request() {
    let stable = Backend::start("stable").await;
    let candidate = Backend::start("candidate").await;
    let gw = Running::start(
        config("prod"),
        routes(Some(stable.upstream("1")), Some(candidate.upstream("2")), 0),
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (stop, done, url) = (stop.clone(), done.clone(), gw.url("/invocations"));
        clients.push(tokio::spawn(async move {
            let client = Client::new();
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client
                    .try_request("POST", &url, &[], r#"{"inputs":[[1]]}"#)
                    .await
                {
                    Ok(a) if a.status == 200 => {}
                    Ok(a) => failures.push(format!("{} {}", a.status, a.body)),
                    Err(e) => failures.push(e),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    // A canary's whole life: steps up, then a rollback, then a promotion.
    for weight in [1, 5, 10, 25, 50, 75, 100, 0, 30, 100] {
        let until = done.load(Ordering::Relaxed) + 200;
        gw.gateway.set_routes(routes(
            Some(stable.upstream("1")),
            Some(candidate.upstream("2")),
            weight,
        ));
        while done.load(Ordering::Relaxed) < until {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    // Promotion: the candidate becomes stable.
    gw.gateway
        .set_routes(routes(Some(candidate.upstream("2")), None, 0));
    let until = done.load(Ordering::Relaxed) + 200;
    while done.load(Ordering::Relaxed) < until {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let m = gw.gateway.metrics();
    assert!(m.stable.requests + m.candidate.requests >= 2200);
    assert_eq!(m.stable.upstream_errors + m.candidate.upstream_errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_finishes_on_the_backend_it_started_on() {
    let stable = Backend::start("stable").await;
    let candidate = Backend::start("candidate").await;
    let gw = Running::start(
        config("prod"),
        routes(
            Some(stable.upstream("1")),
            Some(candidate.upstream("2")),
            100,
        ),
    )
    .await;
    let client = Client::new();
    let slow = {
        let (client, url) = (client.clone(), gw.url("/slow"));
        tokio::spawn(async move { client.get(&url, &[("x-sleep-ms", "400")]).await })
    };
    // Once the slow request is at the candidate, roll back.
    candidate.wait_for_hits(1).await;
    gw.gateway
        .set_routes(routes(Some(stable.upstream("1")), None, 0));
    // New requests go to stable at once...
    let a = client.get(&gw.url("/"), &[]).await;
    assert_eq!(a.body, "stable");
    // ...while the slow one completes where it started.
    let a = slow.await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!((a.variant(), a.body.as_str()), ("candidate", "candidate"));
    assert_eq!(a.header("x-hoist-version"), Some("2"));
    let m = gw.gateway.metrics();
    assert_eq!((m.candidate.requests, m.candidate.ok), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_candidate_costs_no_request() {
    let stable = Backend::start("stable").await;
    let mut candidate = Backend::start("candidate").await;
    let gw = Running::start(
        config("prod"),
        routes(
            Some(stable.upstream("1")),
            Some(candidate.upstream("2")),
            50,
        ),
    )
    .await;
    let client = Client::new();
    // Warm up: the gateway holds keep-alive connections to the candidate.
    for _ in 0..20 {
        assert_eq!(client.get(&gw.url("/"), &[]).await.status, 200);
    }
    assert_eq!(gw.gateway.metrics().candidate.requests, 10);
    // The candidate process dies: listener and connections closed.
    candidate.stop().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..100 {
        let a = client.post(&gw.url("/invocations"), &[], "{}").await;
        assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "stable"));
        assert_eq!(a.variant(), "stable");
    }
    let m = gw.gateway.metrics();
    assert_eq!(m.stable.requests, 110);
    assert_eq!(m.candidate.requests, 10);
    assert_eq!(m.stable.error_rate() + m.candidate.error_rate(), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replica_is_skipped_within_the_variant() {
    let live = Backend::start("live").await;
    let mut dead = Backend::start("dead").await;
    let dead_addr = dead.addr;
    dead.stop().await;
    let gw = Running::start(
        config("prod"),
        routes(
            Some(Upstream {
                version: "1".into(),
                model: None,
                addrs: vec![dead_addr, live.addr],
            }),
            None,
            0,
        ),
    )
    .await;
    let client = Client::new();
    for _ in 0..10 {
        assert_eq!(client.get(&gw.url("/"), &[]).await.body, "live");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_reachable_is_a_502_counted_as_upstream_error() {
    let mut gone = Backend::start("gone").await;
    gone.stop().await;
    let gw = Running::start(config("prod"), routes(Some(gone.upstream("1")), None, 0)).await;
    let client = Client::new();
    let a = client.post(&gw.url("/invocations"), &[], "{}").await;
    assert_eq!(a.status, 502);
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert!(
        a.body
            .starts_with(r#"{"error":"no model server of environment prod answered"#),
        "{}",
        a.body
    );
    assert!(a.header("x-request-id").is_some());
    let m = gw.gateway.metrics();
    assert_eq!((m.stable.requests, m.stable.upstream_errors), (1, 1));
    assert_eq!(m.stable.error_rate(), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_requests_in_flight_finish() {
    let stable = Backend::start("stable").await;
    let mut gw = Running::start(config("prod"), routes(Some(stable.upstream("1")), None, 0)).await;
    let client = Client::new();
    let slow = {
        let (client, url) = (client.clone(), gw.url("/"));
        tokio::spawn(async move { client.get(&url, &[("x-sleep-ms", "300")]).await })
    };
    stable.wait_for_hits(1).await;
    let served = gw.shut_down();
    let a = slow.await.unwrap();
    assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "stable"));
    served.await.unwrap().unwrap();
    // The listener is closed.
    assert!(tokio::net::TcpStream::connect(gw.addr).await.is_err());
}
