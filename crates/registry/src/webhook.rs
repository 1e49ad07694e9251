//! The receiver for MLflow model-registry webhooks (MLflow ≥ 3.3).
//!
//! Owns: checking that a delivery really comes from the MLflow server that shares our
//! secret, is fresh and is new, and turning it into an [`Event`]. It must not act on
//! events: verified events go into a channel, and nothing unverified goes anywhere.
//!
//! # Expected flow
//! MLflow POSTs a JSON body with the headers `X-MLflow-Delivery-Id`,
//! `X-MLflow-Timestamp` (unix seconds) and
//! `X-MLflow-Signature: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{raw body}")>`.
//! [`Verifier::verify`] checks, in this order: the headers are present (else 401), the
//! signature over the raw bytes in constant time (401), the timestamp is within
//! [`WebhookConfig::max_age`] of now (401), the delivery id is new (409), the body is a
//! webhook payload (400). Only then is the delivery id remembered and the event sent.
//!
//! # Guarantees
//! - A delivery id is accepted at most once while its timestamp is fresh; after that
//!   the timestamp check rejects it, so the replay set only needs to span the window.
//! - If the consumer is gone the answer is 503 and the id is *not* remembered, so
//!   MLflow's retry (on 5xx) can succeed later.
//!
//! # Caveats
//! - The replay set is in memory: a restart forgets it, which leaves a replay window
//!   of at most `max_age` for deliveries captured before the restart.
//! - When more than [`WebhookConfig::replay_capacity`] fresh deliveries are remembered,
//!   new ones are refused with 503 (fail closed) until old ones expire.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;

/// What happened in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A new registered model.
    ModelCreated,
    /// A new version of a model.
    VersionCreated,
    /// An alias now points at `version` (set or moved).
    AliasSet,
    /// An alias was removed.
    AliasDeleted,
    /// A version entered a stage (found by polling; MLflow sends no webhook for stages).
    StageChanged,
    /// A version tag was set.
    TagSet { key: String, value: String },
    /// A version tag was deleted.
    TagDeleted { key: String },
}

/// One registry event, from a webhook or from polling.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Event {
    /// The registry's identity ([`crate::Registry::id`]), so events from several
    /// registries can share a channel.
    pub registry: String,
    pub model: String,
    pub version: Option<String>,
    pub alias: Option<String>,
    /// The stage, for [`EventKind::StageChanged`].
    pub stage: Option<String>,
    pub kind: EventKind,
    /// MLflow's delivery id when the event came by webhook; `None` when polled.
    pub delivery: Option<String>,
}

/// The receiver's settings.
#[derive(Clone)]
pub struct WebhookConfig {
    /// The secret the webhook was created with, shared with the MLflow server; read
    /// again when its file is rotated.
    pub secret: hoist_types::Secret,
    /// The identity put in every event (the tracking URI, as [`crate::Registry::id`]
    /// gives it), so that webhook and polled events de-duplicate against each other.
    pub registry: String,
    /// How far a delivery's timestamp may be from now, either way.
    pub max_age: Duration,
    /// How many fresh delivery ids are remembered at most.
    pub replay_capacity: usize,
}

impl WebhookConfig {
    /// Five minutes of freshness, 100 000 remembered deliveries.
    pub fn new(
        secret: impl Into<hoist_types::Secret>,
        registry: impl Into<String>,
    ) -> WebhookConfig {
        WebhookConfig {
            secret: secret.into(),
            registry: registry.into(),
            max_age: Duration::from_secs(300),
            replay_capacity: 100_000,
        }
    }
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("secret", &"***")
            .field("registry", &self.registry)
            .field("max_age", &self.max_age)
            .field("replay_capacity", &self.replay_capacity)
            .finish()
    }
}

/// Why a delivery was refused. Each maps to one HTTP status ([`Rejection::status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("bad signature")]
    BadSignature,
    #[error("timestamp {timestamp} is more than {max_age_s} s from now ({now})")]
    Stale {
        timestamp: i64,
        now: i64,
        max_age_s: u64,
    },
    #[error("delivery {0} was already received")]
    Replay(String),
    #[error("malformed payload: {0}")]
    Malformed(String),
    #[error("too many recent deliveries to remember; retry later")]
    Busy,
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::MissingHeader(_) | Rejection::BadSignature | Rejection::Stale { .. } => {
                StatusCode::UNAUTHORIZED
            }
            Rejection::Replay(_) => StatusCode::CONFLICT,
            Rejection::Malformed(_) => StatusCode::BAD_REQUEST,
            Rejection::Busy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The source of "now" in unix seconds (tests inject a fixed clock).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    })
}

/// Checks deliveries and remembers the ones it accepted.
pub struct Verifier {
    config: WebhookConfig,
    clock: Clock,
    /// Delivery ids accepted while still fresh, with the unix second they expire.
    seen: Mutex<ReplaySet>,
}

#[derive(Default)]
struct ReplaySet {
    expiry: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

impl ReplaySet {
    fn expire(&mut self, now: i64) {
        while let Some((exp, _)) = self.order.front() {
            if *exp > now {
                break;
            }
            let (_, id) = self.order.pop_front().expect("front exists");
            self.expiry.remove(&id);
        }
    }
}

/// A delivery that passed every check but is not yet remembered: call
/// [`Verifier::commit`] once the event is handed over.
#[derive(Debug)]
pub struct Verified {
    pub event: Event,
    delivery_id: String,
    timestamp: i64,
}

const H_ID: &str = "x-mlflow-delivery-id";
const H_TS: &str = "x-mlflow-timestamp";
const H_SIG: &str = "x-mlflow-signature";

impl Verifier {
    pub fn new(config: WebhookConfig) -> Verifier {
        Self::with_clock(config, system_clock())
    }

    pub fn with_clock(config: WebhookConfig, clock: Clock) -> Verifier {
        Verifier {
            config,
            clock,
            seen: Mutex::new(ReplaySet::default()),
        }
    }

    /// Checks one delivery (see the module docs for the order) without remembering it.
    pub fn check(&self, headers: &HeaderMap, body: &[u8]) -> Result<Verified, Rejection> {
        let header = |name: &'static str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .ok_or(Rejection::MissingHeader(name))
        };
        let delivery_id = header(H_ID)?;
        let ts_text = header(H_TS)?;
        let sig = header(H_SIG)?;
        if !self.signature_ok(delivery_id, ts_text, body, sig) {
            return Err(Rejection::BadSignature);
        }
        let timestamp: i64 = ts_text.parse().map_err(|_| Rejection::BadSignature)?;
        let now = (self.clock)();
        // Forget what the timestamp check now refuses anyway (keeps the set bounded).
        self.seen.lock().expect("replay set lock").expire(now);
        let max_age = self.config.max_age.as_secs();
        if timestamp.abs_diff(now) > max_age {
            return Err(Rejection::Stale {
                timestamp,
                now,
                max_age_s: max_age,
            });
        }
        {
            let seen = self.seen.lock().expect("replay set lock");
            if seen.expiry.contains_key(delivery_id) {
                return Err(Rejection::Replay(delivery_id.to_string()));
            }
        }
        let event = parse_payload(&self.config.registry, body, Some(delivery_id))?;
        Ok(Verified {
            event,
            delivery_id: delivery_id.to_string(),
            timestamp,
        })
    }

    /// Remembers an accepted delivery; refuses a replay that raced this one.
    pub fn commit(&self, v: &Verified) -> Result<(), Rejection> {
        let now = (self.clock)();
        let mut seen = self.seen.lock().expect("replay set lock");
        seen.expire(now);
        if seen.expiry.contains_key(&v.delivery_id) {
            return Err(Rejection::Replay(v.delivery_id.clone()));
        }
        if seen.expiry.len() >= self.config.replay_capacity {
            return Err(Rejection::Busy);
        }
        // Past this second the timestamp check refuses the delivery anyway.
        let expires = v.timestamp + self.config.max_age.as_secs() as i64 + 1;
        seen.expiry.insert(v.delivery_id.clone(), expires);
        // Keep the queue ordered by expiry: deliveries arrive roughly in time order.
        let pos = seen.order.partition_point(|(e, _)| *e <= expires);
        seen.order.insert(pos, (expires, v.delivery_id.clone()));
        Ok(())
    }

    /// [`Verifier::check`] then [`Verifier::commit`]: for callers that cannot fail
    /// between the two.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<Event, Rejection> {
        let v = self.check(headers, body)?;
        self.commit(&v)?;
        Ok(v.event)
    }

    fn signature_ok(&self, id: &str, ts: &str, body: &[u8], header: &str) -> bool {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.config.secret.get().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(ts.as_bytes());
        mac.update(b".");
        mac.update(body);
        let expected = mac.finalize().into_bytes();
        // A header may carry several space-separated signatures (key rotation).
        header.split_whitespace().any(|one| {
            let Some(b64) = one.strip_prefix("v1,") else {
                return false;
            };
            match base64::engine::general_purpose::STANDARD.decode(b64) {
                Ok(given) => given.len() == expected.len() && bool::from(given.ct_eq(&expected)),
                Err(_) => false,
            }
        })
    }
}

#[derive(Deserialize)]
struct Payload {
    entity: String,
    action: String,
    data: serde_json::Map<String, serde_json::Value>,
}

/// Turns a webhook body into an [`Event`]. Unknown entity/action pairs are malformed:
/// hoist only subscribes to the ones it understands.
pub fn parse_payload(
    registry: &str,
    body: &[u8],
    delivery: Option<&str>,
) -> Result<Event, Rejection> {
    let p: Payload =
        serde_json::from_slice(body).map_err(|e| Rejection::Malformed(e.to_string()))?;
    let field = |k: &str| -> Option<String> {
        match p.data.get(k)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let need = |k: &str| field(k).ok_or_else(|| Rejection::Malformed(format!("data.{k} missing")));
    let model = need("name")?;
    let (kind, version, alias) = match (p.entity.as_str(), p.action.as_str()) {
        ("registered_model", "created") => (EventKind::ModelCreated, None, None),
        ("model_version", "created") => (EventKind::VersionCreated, Some(need("version")?), None),
        ("model_version_alias", "created") => (
            EventKind::AliasSet,
            Some(need("version")?),
            Some(need("alias")?),
        ),
        ("model_version_alias", "deleted") => (
            EventKind::AliasDeleted,
            field("version"),
            Some(need("alias")?),
        ),
        ("model_version_tag", "set") => (
            EventKind::TagSet {
                key: need("key")?,
                value: field("value").unwrap_or_default(),
            },
            Some(need("version")?),
            None,
        ),
        ("model_version_tag", "deleted") => (
            EventKind::TagDeleted { key: need("key")? },
            Some(need("version")?),
            None,
        ),
        (entity, action) => {
            return Err(Rejection::Malformed(format!(
                "unknown event {entity}.{action}"
            )));
        }
    };
    Ok(Event {
        registry: registry.to_string(),
        model,
        version,
        alias,
        stage: None,
        kind,
        delivery: delivery.map(str::to_string),
    })
}

struct AppState {
    verifier: Verifier,
    sender: mpsc::Sender<Event>,
}

/// The receiver as a router: `POST /` and `POST /webhook` (for mounting in a bigger app).
pub fn router(config: WebhookConfig, sender: mpsc::Sender<Event>) -> Router {
    router_with_verifier(Verifier::new(config), sender)
}

/// [`router`] with a given verifier (tests inject its clock).
pub fn router_with_verifier(verifier: Verifier, sender: mpsc::Sender<Event>) -> Router {
    let state = Arc::new(AppState { verifier, sender });
    Router::new()
        .route("/", post(receive))
        .route("/webhook", post(receive))
        .with_state(state)
}

async fn receive(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let verified = match s.verifier.check(&headers, &body) {
        Ok(v) => v,
        Err(r) => return reject(r),
    };
    if let Err(r) = s.verifier.commit(&verified) {
        return reject(r);
    }
    let delivery = verified.delivery_id.clone();
    if s.sender.send(verified.event).await.is_err() {
        // Nobody listens: forget the id so MLflow's retry can be accepted later.
        s.verifier
            .seen
            .lock()
            .expect("replay set lock")
            .expiry
            .remove(&delivery);
        return (StatusCode::SERVICE_UNAVAILABLE, "no event consumer").into_response();
    }
    tracing::debug!(delivery, "webhook accepted");
    (StatusCode::OK, "ok").into_response()
}

fn reject(r: Rejection) -> Response {
    tracing::warn!("webhook refused: {r}");
    let body = serde_json::json!({"error": r.to_string()}).to_string();
    (
        r.status(),
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// Serves the receiver on `listener` until `shutdown` completes.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: WebhookConfig,
    sender: mpsc::Sender<Event>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(config, sender))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mlflow-webhooks"
    );

    struct Fixture {
        secret: String,
        headers: HeaderMap,
        body: Vec<u8>,
        timestamp: i64,
    }

    fn fixture(name: &str) -> Fixture {
        let path = format!("{FIXTURES}/{name}.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut headers = HeaderMap::new();
        for (k, val) in v["headers"].as_object().unwrap() {
            headers.insert(
                axum::http::HeaderName::from_bytes(k.to_lowercase().as_bytes()).unwrap(),
                HeaderValue::from_str(val.as_str().unwrap()).unwrap(),
            );
        }
        let timestamp = headers[H_TS].to_str().unwrap().parse().unwrap();
        Fixture {
            secret: v["secret"].as_str().unwrap().to_string(),
            headers,
            body: v["raw_body"].as_str().unwrap().as_bytes().to_vec(),
            timestamp,
        }
    }

    fn verifier_at(secret: &str, now: i64) -> Verifier {
        Verifier::with_clock(
            WebhookConfig::new(secret, "http://mlflow"),
            Arc::new(move || now),
        )
    }

    #[test]
    fn every_captured_delivery_verifies_and_parses() {
        let cases = [
            ("registered_model.created", EventKind::ModelCreated),
            ("model_version.created", EventKind::VersionCreated),
            ("model_version_alias.created", EventKind::AliasSet),
            ("model_version_alias.deleted", EventKind::AliasDeleted),
            (
                "model_version_tag.set",
                EventKind::TagSet {
                    key: "validated".into(),
                    value: "true".into(),
                },
            ),
            (
                "model_version_tag.deleted",
                EventKind::TagDeleted {
                    key: "validated".into(),
                },
            ),
        ];
        for (name, kind) in cases {
            let f = fixture(name);
            let v = verifier_at(&f.secret, f.timestamp + 10);
            let e = v
                .verify(&f.headers, &f.body)
                .unwrap_or_else(|r| panic!("{name}: {r}"));
            assert_eq!(e.kind, kind, "{name}");
            assert_eq!(e.registry, "http://mlflow");
            assert!(e.delivery.is_some());
        }
        let f = fixture("model_version_alias.created");
        let e = verifier_at(&f.secret, f.timestamp)
            .verify(&f.headers, &f.body)
            .unwrap();
        assert_eq!(e.model, "breast_cancer_onnx");
        assert_eq!(e.alias.as_deref(), Some("challenger"));
        assert_eq!(e.version.as_deref(), Some("2"));
        assert_eq!(
            e.delivery.as_deref(),
            Some("81ec831c-4a32-4454-9eba-953c0b604bd1")
        );
    }

    #[test]
    fn a_forged_signature_is_refused() {
        let f = fixture("model_version_alias.created");
        // Wrong secret.
        let v = verifier_at("not-the-secret", f.timestamp);
        assert_eq!(v.verify(&f.headers, &f.body), Err(Rejection::BadSignature));
        // Right secret, body changed by one byte (version 2 → 3).
        let v = verifier_at(&f.secret, f.timestamp);
        let body = String::from_utf8(f.body.clone())
            .unwrap()
            .replace("\"version\": \"2\"", "\"version\": \"3\"");
        assert_eq!(
            v.verify(&f.headers, body.as_bytes()),
            Err(Rejection::BadSignature)
        );
        // Timestamp header moved (it is signed too).
        let mut h = f.headers.clone();
        h.insert(H_TS, HeaderValue::from(f.timestamp + 1));
        assert_eq!(v.verify(&h, &f.body), Err(Rejection::BadSignature));
        // Garbage and missing signatures.
        for bad in [
            "v1,",
            "v1,!!!",
            "v0,n8i4+3H9pJoGYW/S/LHbr1GAv/uD43F/VPLqDAgnlCo=",
        ] {
            let mut h = f.headers.clone();
            h.insert(H_SIG, HeaderValue::from_static(bad));
            assert_eq!(v.verify(&h, &f.body), Err(Rejection::BadSignature), "{bad}");
        }
        let mut h = f.headers.clone();
        h.remove(H_SIG);
        assert_eq!(v.verify(&h, &f.body), Err(Rejection::MissingHeader(H_SIG)));
        assert_eq!(Rejection::BadSignature.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn a_replayed_delivery_is_refused_until_it_is_stale_anyway() {
        let f = fixture("model_version_alias.created");
        let now = Arc::new(std::sync::atomic::AtomicI64::new(f.timestamp));
        let n = now.clone();
        let v = Verifier::with_clock(
            WebhookConfig::new(f.secret.clone(), "r"),
            Arc::new(move || n.load(std::sync::atomic::Ordering::SeqCst)),
        );
        assert!(v.verify(&f.headers, &f.body).is_ok());
        let replay = v.verify(&f.headers, &f.body);
        assert!(matches!(replay, Err(Rejection::Replay(_))), "{replay:?}");
        now.store(f.timestamp + 299, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(
            v.verify(&f.headers, &f.body),
            Err(Rejection::Replay(_))
        ));
        now.store(f.timestamp + 301, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(
            v.verify(&f.headers, &f.body),
            Err(Rejection::Stale { .. })
        ));
        // The id expired from the set: it stays bounded.
        assert!(v.seen.lock().unwrap().expiry.is_empty());
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let f = fixture("model_version_tag.set");
        for now in [f.timestamp + 301, f.timestamp - 301, f.timestamp + 86_400] {
            let r = verifier_at(&f.secret, now).verify(&f.headers, &f.body);
            assert!(matches!(r, Err(Rejection::Stale { .. })), "{now}: {r:?}");
            assert_eq!(r.unwrap_err().status(), StatusCode::UNAUTHORIZED);
        }
        assert!(
            verifier_at(&f.secret, f.timestamp + 300)
                .verify(&f.headers, &f.body)
                .is_ok()
        );
    }

    fn sign(secret: &str, id: &str, ts: i64, body: &[u8]) -> HeaderMap {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(body);
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let mut h = HeaderMap::new();
        h.insert(H_ID, HeaderValue::from_str(id).unwrap());
        h.insert(H_TS, HeaderValue::from(ts));
        h.insert(H_SIG, HeaderValue::from_str(&format!("v1,{sig}")).unwrap());
        h
    }

    #[test]
    fn a_signed_but_malformed_body_is_a_400_and_unsigned_garbage_a_401() {
        let v = verifier_at("s", 1000);
        for body in [
            &b"not json"[..],
            br#"{"entity":"x","action":"y","data":{"name":"m"}}"#,
            br#"{"entity":"model_version_alias","action":"created","data":{"name":"m"}}"#,
        ] {
            let r = v.verify(&sign("s", "id", 1000, body), body);
            assert!(matches!(r, Err(Rejection::Malformed(_))), "{r:?}");
            assert_eq!(r.unwrap_err().status(), StatusCode::BAD_REQUEST);
        }
        let r = v.verify(&sign("other", "id", 1000, b"not json"), b"not json");
        assert_eq!(r, Err(Rejection::BadSignature));
    }

    #[test]
    fn the_replay_set_is_bounded() {
        let mut cfg = WebhookConfig::new("s", "r");
        cfg.replay_capacity = 2;
        let v = Verifier::with_clock(cfg, Arc::new(|| 1000));
        let body = br#"{"entity":"registered_model","action":"created","data":{"name":"m"}}"#;
        for (i, want_ok) in [(1, true), (2, true), (3, false)] {
            let id = format!("d{i}");
            let r = v.verify(&sign("s", &id, 1000, body), body);
            assert_eq!(r.is_ok(), want_ok, "{id}: {r:?}");
        }
        assert_eq!(
            v.verify(&sign("s", "d4", 1000, body), body),
            Err(Rejection::Busy)
        );
    }

    #[tokio::test]
    async fn the_router_answers_with_the_right_statuses() {
        use tower_like::call;
        let f = fixture("model_version_alias.created");
        let (tx, mut rx) = mpsc::channel(8);
        let ts = f.timestamp;
        let app = router_with_verifier(
            Verifier::with_clock(
                WebhookConfig::new(f.secret.clone(), "r"),
                Arc::new(move || ts),
            ),
            tx,
        );
        assert_eq!(call(&app, &f.headers, &f.body).await, StatusCode::OK);
        assert_eq!(
            rx.recv().await.unwrap().alias.as_deref(),
            Some("challenger")
        );
        assert_eq!(call(&app, &f.headers, &f.body).await, StatusCode::CONFLICT);
        assert_eq!(
            call(&app, &HeaderMap::new(), &f.body).await,
            StatusCode::UNAUTHORIZED
        );
        assert!(rx.try_recv().is_err(), "nothing unverified is sent");
    }

    /// Calls a router in process over a real loopback socket.
    mod tower_like {
        use super::*;
        pub async fn call(app: &Router, headers: &HeaderMap, body: &[u8]) -> StatusCode {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let app = app.clone();
            let server = tokio::spawn(async move { axum::serve(listener, app).await });
            let mut req = format!("POST / HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
            for (k, v) in headers {
                req.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
            }
            req.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
            let mut bytes = req.into_bytes();
            bytes.extend_from_slice(body);
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(&bytes).await.unwrap();
            let mut resp = Vec::new();
            s.read_to_end(&mut resp).await.unwrap();
            server.abort();
            let text = String::from_utf8_lossy(&resp);
            let code: u16 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
            StatusCode::from_u16(code).unwrap()
        }
    }
}
