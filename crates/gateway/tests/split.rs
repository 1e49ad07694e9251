//! The traffic split over real HTTP: exact weights, force header, sticky keys,
//! round-robin, fallbacks, headers.

mod common;

use std::collections::{HashMap, HashSet};

use common::{Backend, Client, Running, config, routes};
use hoist_gateway::{GatewayConfig, Upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hundred_requests_carry_exactly_the_weight() {
    let stable = Backend::start("stable-1").await;
    let candidate = Backend::start("candidate-2").await;
    let gw = Running::start(
        config("prod"),
        routes(
            Some(stable.upstream("1")),
            Some(candidate.upstream("2")),
            30,
        ),
    )
    .await;
    let client = Client::new();
    let mut by_variant: HashMap<String, usize> = HashMap::new();
    for _ in 0..200 {
        let a = client.post(&gw.url("/invocations"), &[], "{}").await;
        assert_eq!(a.status, 200);
        // The header names the variant that really answered.
        let expected_body = if a.variant() == "candidate" {
            "candidate-2"
        } else {
            "stable-1"
        };
        assert_eq!(a.body, expected_body);
        let version = if a.variant() == "candidate" { "2" } else { "1" };
        assert_eq!(a.header("x-hoist-version"), Some(version));
        *by_variant.entry(a.variant().to_string()).or_default() += 1;
    }
    assert_eq!(by_variant.get("candidate"), Some(&60), "{by_variant:?}");
    assert_eq!(by_variant.get("stable"), Some(&140), "{by_variant:?}");

    // A weight change applies to the very next requests.
    let mut r = gw.gateway.routes();
    r.candidate_weight = 5;
    gw.gateway.set_routes(r.clone());
    assert_eq!(gw.gateway.routes(), r);
    let mut n = 0;
    for _ in 0..100 {
        if client.get(&gw.url("/"), &[]).await.variant() == "candidate" {
            n += 1;
        }
    }
    assert_eq!(n, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_header_overrides_the_split_when_the_variant_exists() {
    let stable = Backend::start("stable").await;
    let candidate = Backend::start("candidate").await;
    let gw = Running::start(
        config("prod"),
        routes(Some(stable.upstream("1")), Some(candidate.upstream("2")), 0),
    )
    .await;
    let client = Client::new();
    for _ in 0..5 {
        let a = client
            .get(&gw.url("/"), &[("x-hoist-variant", "candidate")])
            .await;
        assert_eq!((a.variant(), a.body.as_str()), ("candidate", "candidate"));
    }
    gw.gateway.set_routes(routes(
        Some(stable.upstream("1")),
        Some(candidate.upstream("2")),
        100,
    ));
    let a = client
        .get(&gw.url("/"), &[("x-hoist-variant", "stable")])
        .await;
    assert_eq!(a.body, "stable");
    let a = client.get(&gw.url("/"), &[]).await;
    assert_eq!(a.body, "candidate");
    // Forcing a variant that is not deployed is ignored.
    gw.gateway
        .set_routes(routes(Some(stable.upstream("1")), None, 0));
    let a = client
        .get(&gw.url("/"), &[("x-hoist-variant", "candidate")])
        .await;
    assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "stable"));

    // A custom force header.
    let custom = Running::start(
        GatewayConfig {
            force_header: "x-route-to".into(),
            ..config("prod")
        },
        routes(Some(stable.upstream("1")), Some(candidate.upstream("2")), 0),
    )
    .await;
    let a = client
        .get(&custom.url("/"), &[("x-route-to", "candidate")])
        .await;
    assert_eq!(a.body, "candidate");
    let a = client
        .get(&custom.url("/"), &[("x-hoist-variant", "candidate")])
        .await;
    assert_eq!(a.body, "stable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_header_and_cookie_keep_a_client_on_one_variant() {
    let stable = Backend::start("stable").await;
    let candidate = Backend::start("candidate").await;
    let gw = Running::start(
        GatewayConfig {
            sticky_header: Some("x-user-id".into()),
            sticky_cookie: Some("uid".into()),
            ..config("prod")
        },
        routes(
            Some(stable.upstream("1")),
            Some(candidate.upstream("2")),
            50,
        ),
    )
    .await;
    let client = Client::new();
    let mut seen = HashSet::new();
    let mut at_50 = HashMap::new();
    for user in 0..40 {
        let id = format!("user-{user}");
        let cookie = format!("theme=dark; uid={id}");
        let first = client.get(&gw.url("/"), &[("x-user-id", &id)]).await.body;
        for _ in 0..4 {
            assert_eq!(
                client.get(&gw.url("/"), &[("x-user-id", &id)]).await.body,
                first
            );
            // The cookie with the same value lands on the same variant.
            assert_eq!(
                client.get(&gw.url("/"), &[("cookie", &cookie)]).await.body,
                first
            );
        }
        seen.insert(first.clone());
        at_50.insert(id, first);
    }
    assert_eq!(seen.len(), 2, "40 users at 50% should see both variants");

    // Raising the weight only moves users from stable to candidate.
    gw.gateway.set_routes(routes(
        Some(stable.upstream("1")),
        Some(candidate.upstream("2")),
        80,
    ));
    for (id, before) in &at_50 {
        let now = client.get(&gw.url("/"), &[("x-user-id", id)]).await.body;
        if before == "candidate" {
            assert_eq!(
                &now, "candidate",
                "{id} left the candidate when the weight grew"
            );
        }
    }
    // The force header still wins over the sticky key.
    let a = client
        .get(
            &gw.url("/"),
            &[("x-user-id", "user-1"), ("x-hoist-variant", "stable")],
        )
        .await;
    assert_eq!(a.body, "stable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_take_turns() {
    let replicas = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let gw = Running::start(
        config("prod"),
        routes(
            Some(Upstream {
                version: "1".into(),
                model: None,
                addrs: replicas.iter().map(|r| r.addr).collect(),
            }),
            None,
            50,
        ),
    )
    .await;
    let client = Client::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        let a = client.get(&gw.url("/"), &[]).await;
        assert_eq!(
            a.variant(),
            "stable",
            "no candidate: everything goes to stable"
        );
        *counts.entry(a.body).or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&n| n == 10), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_candidate_takes_all_traffic() {
    let candidate = Backend::start("candidate").await;
    let gw = Running::start(
        config("prod"),
        routes(None, Some(candidate.upstream("9")), 0),
    )
    .await;
    let client = Client::new();
    let a = client.get(&gw.url("/"), &[]).await;
    assert_eq!(
        (a.status.as_u16(), a.variant(), a.body.as_str()),
        (200, "candidate", "candidate")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_routes_is_a_503_that_names_the_environment() {
    let gw = Running::start(config("staging"), Default::default()).await;
    let client = Client::new();
    let a = client.post(&gw.url("/invocations"), &[], "{}").await;
    assert_eq!(a.status, 503);
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(
        a.body,
        r#"{"error":"no model is deployed in environment staging"}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_and_hop_by_hop_headers() {
    let stable = Backend::start("stable").await;
    let gw = Running::start(config("prod"), routes(Some(stable.upstream("1")), None, 0)).await;
    let client = Client::new();

    // No id: the gateway makes one, sends it on, and returns it.
    let a = client.get(&gw.url("/"), &[]).await;
    let id = a
        .header("x-request-id")
        .expect("an x-request-id")
        .to_string();
    assert_eq!(a.header("x-seen-request-id"), Some(id.as_str()));
    let b = client.get(&gw.url("/"), &[]).await;
    assert_ne!(
        b.header("x-request-id"),
        Some(id.as_str()),
        "ids are unique"
    );

    // The client's id is kept.
    let a = client
        .get(&gw.url("/"), &[("x-request-id", "abc-123")])
        .await;
    assert_eq!(a.header("x-seen-request-id"), Some("abc-123"));
    assert_eq!(a.header("x-request-id"), Some("abc-123"));

    // Headers named in Connection stay on this hop.
    let a = client
        .get(&gw.url("/"), &[("connection", "x-hop"), ("x-hop", "1")])
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-saw-hop"), None);
}
