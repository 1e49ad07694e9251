//! MLflow webhooks start releases: a `hoist up` daemon with `registry.webhook_listen`
//! receives a signed `model_version_alias.created` delivery (as MLflow 3.3+ sends it)
//! and releases the version at once; forged and replayed deliveries start nothing.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const SECRET: &str = "webhook-test-secret";

fn sign(id: &str, ts: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

#[test]
fn a_signed_alias_webhook_starts_a_release_and_a_forged_or_replayed_one_does_not() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let home = temp_home("webhook");
    // Polling every hour: only the webhook can start a release in time.
    let config = BASE.replace(
        "poll_interval = \"100ms\"",
        &format!("poll_interval = \"1h\"\nwebhook_listen = \"127.0.0.1:{port}\""),
    ) + "\n[[environments]]\nname = \"production\"\nlisten = \"127.0.0.1:0\"\n";
    // The version exists; the alias move arrives only as the webhook (as from MLflow).
    register(&home, "breast_cancer_lr", None);
    let d = Daemon::start_with_env(&home, &config, &[("HOIST_WEBHOOK_SECRET", SECRET)]);
    let url = format!("http://127.0.0.1:{port}/webhook");
    let http = reqwest::blocking::Client::new();
    let body = r#"{"entity": "model_version_alias", "action": "created", "timestamp": "2026-11-22T05:00:00+00:00", "data": {"name": "m", "alias": "champion", "version": "1"}}"#;
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let post = |id: &str, sig: &str| {
        http.post(&url)
            .header("content-type", "application/json")
            .header("X-MLflow-Delivery-Id", id)
            .header("X-MLflow-Timestamp", &ts)
            .header("X-MLflow-Signature", sig)
            .body(body)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    // A forged signature is refused and starts nothing.
    assert_eq!(post("forged-1", "v1,AAAA"), 401);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        d.get("/api/v1/releases")["releases"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // The signed delivery starts release 1 of v1.
    assert_eq!(post("delivery-1", &sign("delivery-1", &ts, body)), 200);
    let r = d.wait_done(1, Duration::from_secs(60));
    assert_eq!(r["outcome"]["outcome"], "succeeded", "{r}");
    assert_eq!(r["trigger"], "alias champion → v1");
    // A replay of it is refused; still one release.
    assert_eq!(post("delivery-1", &sign("delivery-1", &ts, body)), 409);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        d.get("/api/v1/releases")["releases"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
