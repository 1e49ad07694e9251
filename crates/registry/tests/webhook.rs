//! The webhook receiver served by `webhook::run` on a real loopback port, spoken to
//! over HTTP as MLflow does: what it accepts, what it refuses and with which status.
//! (The end-to-end test with a real MLflow server is in `tests/mlflow.rs`.)

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use hoist_registry::webhook::{self, WebhookConfig};
use hoist_registry::{Event, EventKind};
use sha2::Sha256;
use tokio::sync::mpsc;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/mlflow-webhooks"
);

fn fixture(name: &str) -> serde_json::Value {
    let path = format!("{FIXTURES}/{name}.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn sign(secret: &str, id: &str, ts: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

struct Receiver {
    url: String,
    events: mpsc::Receiver<Event>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(secret: &str) -> Receiver {
    start_with(hoist_types::Secret::value(secret)).await
}

async fn start_with(secret: hoist_types::Secret) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhook", listener.local_addr().unwrap());
    let (tx, events) = mpsc::channel(16);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(webhook::run(
        listener,
        WebhookConfig::new(secret, "http://mlflow.test"),
        tx,
        async {
            let _ = stopped.await;
        },
    ));
    Receiver {
        url,
        events,
        stop,
        task,
    }
}

/// POSTs like MLflow's delivery code does; returns the status.
async fn post(url: &str, id: &str, ts: &str, sig: Option<&str>, body: &str) -> u16 {
    let (url, id, ts, sig, body) = (
        url.to_string(),
        id.to_string(),
        ts.to_string(),
        sig.map(str::to_string),
        body.to_string(),
    );
    // reqwest's blocking client must not run on the async reactor.
    tokio::task::spawn_blocking(move || {
        let mut rb = reqwest::blocking::Client::new()
            .post(url)
            .header("Content-Type", "application/json")
            .header("X-MLflow-Delivery-Id", id)
            .header("X-MLflow-Timestamp", ts)
            .body(body);
        if let Some(s) = sig {
            rb = rb.header("X-MLflow-Signature", s);
        }
        rb.send().unwrap().status().as_u16()
    })
    .await
    .unwrap()
}

fn now() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string()
}

#[tokio::test]
async fn the_receiver_accepts_fresh_signed_deliveries_and_refuses_the_rest() {
    let f = fixture("model_version_alias.created");
    let secret = f["secret"].as_str().unwrap();
    let body = f["raw_body"].as_str().unwrap();
    let h = &f["headers"];
    let mut r = start(secret).await;

    // The captured delivery, replayed today: its signature is right, but it is stale.
    let status = post(
        &r.url,
        h["X-MLflow-Delivery-Id"].as_str().unwrap(),
        h["X-MLflow-Timestamp"].as_str().unwrap(),
        h["X-MLflow-Signature"].as_str(),
        body,
    )
    .await;
    assert_eq!(status, 401, "stale");

    // The same body delivered now, signed with the shared secret: accepted once.
    let ts = now();
    let sig = sign(secret, "fresh-1", &ts, body);
    assert_eq!(post(&r.url, "fresh-1", &ts, Some(&sig), body).await, 200);
    let e = tokio::time::timeout(Duration::from_secs(5), r.events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.kind, EventKind::AliasSet);
    assert_eq!(
        (e.model.as_str(), e.alias.as_deref(), e.version.as_deref()),
        ("breast_cancer_onnx", Some("challenger"), Some("2"))
    );
    assert_eq!(e.registry, "http://mlflow.test");
    assert_eq!(e.delivery.as_deref(), Some("fresh-1"));

    // Replay of the accepted delivery.
    assert_eq!(post(&r.url, "fresh-1", &ts, Some(&sig), body).await, 409);
    // Forged: signed with another secret; missing signature; body changed after signing.
    let forged = sign("guess", "fresh-2", &ts, body);
    assert_eq!(post(&r.url, "fresh-2", &ts, Some(&forged), body).await, 401);
    assert_eq!(post(&r.url, "fresh-3", &ts, None, body).await, 401);
    let tampered = body.replace("challenger", "champion");
    assert_eq!(
        post(&r.url, "fresh-2", &ts, Some(&sig), &tampered).await,
        401
    );
    // Signed but not a webhook payload.
    let junk = r#"{"hello": "world"}"#;
    let sig = sign(secret, "fresh-4", &ts, junk);
    assert_eq!(post(&r.url, "fresh-4", &ts, Some(&sig), junk).await, 400);

    assert!(
        r.events.try_recv().is_err(),
        "nothing unverified got through"
    );
    r.stop.send(()).unwrap();
    r.task.await.unwrap().unwrap();
}

/// The secret in a file (`HOIST_WEBHOOK_SECRET_FILE`, a mounted Secret) is read again
/// when the file is rotated: deliveries signed with the new secret are accepted and
/// those signed with the old one refused, with no restart of the receiver.
#[tokio::test]
async fn a_rotated_secret_file_takes_effect_without_a_restart() {
    let f = fixture("model_version_alias.created");
    let body = f["raw_body"].as_str().unwrap();
    let dir = std::env::temp_dir().join(format!("hoist-webhook-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret");
    std::fs::write(&file, "old-secret\n").unwrap();
    let mut r = start_with(hoist_types::Secret::file(&file).unwrap()).await;

    let ts = now();
    let old = sign("old-secret", "rot-1", &ts, body);
    assert_eq!(post(&r.url, "rot-1", &ts, Some(&old), body).await, 200);
    assert!(r.events.recv().await.is_some());

    std::fs::write(dir.join("secret.new"), "new-secret").unwrap();
    std::fs::rename(dir.join("secret.new"), &file).unwrap();
    let old = sign("old-secret", "rot-2", &ts, body);
    assert_eq!(post(&r.url, "rot-2", &ts, Some(&old), body).await, 401);
    let new = sign("new-secret", "rot-3", &ts, body);
    assert_eq!(post(&r.url, "rot-3", &ts, Some(&new), body).await, 200);
    assert!(r.events.recv().await.is_some());

    r.stop.send(()).unwrap();
    r.task.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
