//! Release notifications: every `[[notifications]]` receiver in hoist.toml gets the
//! release events it asked for, over HTTP, in order, retried, without ever slowing a
//! release down.
//!
//! # Delivery
//!
//! [`Notifier::new`] spawns one background task per receiver; [`Notifier::send`] only
//! puts the event on that receiver's queue (at most [`QUEUE_CAPACITY`] events wait;
//! when a queue is full the event is dropped for that receiver and counted). Each
//! task POSTs its events one after the other, in the order they were sent:
//!
//! - every attempt has [`ATTEMPT_TIMEOUT`] (5 s) to connect, send and get its answer;
//! - a 2xx answer is a delivery;
//! - connection errors, timeouts, 5xx and 429 are retried after 200 ms, 400 ms, 800 ms
//!   … (at most 10 s; a `Retry-After` in seconds on a 429 or 503 is honoured up to
//!   10 s), until the receiver's `max_attempts` attempts have been made;
//! - any other answer (4xx other than 429, a redirect) is a permanent failure: not
//!   retried, since sending the same request again gets the same answer.
//!
//! Events that failed for good are logged with `tracing::warn!` and listed, newest
//! last, by [`Notifier::status`] (for `hoist status`), with the counters.
//!
//! # `kind = "json"`
//!
//! The body is the [`ReleaseEvent`] as JSON (`Content-Type: application/json`), with
//! the headers `X-Hoist-Event` (the event's name) and `X-Hoist-Delivery` (an id that
//! is the same on every attempt of one event: a receiver that saw it already — an
//! attempt that timed out after it arrived — can drop the duplicate).
//!
//! With `secret_env`, the request is signed with the secret that variable holds (or
//! the file `{VAR}_FILE` names, read again when it is rotated):
//!
//! ```text
//! X-Hoist-Timestamp: <unix seconds when the attempt was made>
//! X-Hoist-Signature: sha256=<lowercase hex of HMAC-SHA256(secret, "<timestamp>.<body>")>
//! ```
//!
//! A receiver verifies it by (1) reading the body as raw bytes, before any JSON
//! parsing, (2) refusing a timestamp more than a few minutes from its own clock (5
//! minutes is usual: that bounds replays; every retry is signed afresh), (3) computing
//! HMAC-SHA256 with the shared secret over the timestamp header's value, a `.` and
//! the raw body, and (4) comparing its hex with the header's, after `sha256=`, in
//! constant time (`hmac.compare_digest` in Python, `crypto.timingSafeEqual` in Node).
//! In Python:
//!
//! ```text
//! expected = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
//! ok = hmac.compare_digest("sha256=" + expected, signature) and abs(time.time() - int(ts)) < 300
//! ```
//!
//! # `kind = "slack"`
//!
//! The body is a Slack incoming-webhook message, `{"text": "…"}`, one line without
//! emoji ([`slack_text`]): `hoist: release 3 (m v3) rolled back in production: p99
//! latency 74.6 ms over the 50 ms budget`. Slack webhook URLs are their own secret:
//! `secret_env` is refused on them, and [`Notifier::status`] and the logs show such a
//! URL without its path past the first segment (and any URL without its credentials and
//! query string).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use hoist_release::config::{Notification, NotificationKind};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// Every event name, in the order a release meets them.
pub const EVENTS: [&str; 8] = [
    "started",
    "gate_passed",
    "gate_failed",
    "step",
    "awaiting_approval",
    "promoted",
    "rolled_back",
    "aborted",
];

/// How many events may wait for one receiver; more are dropped (and counted).
pub const QUEUE_CAPACITY: usize = 256;

/// How long one delivery attempt may take, connection to answer.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The wait after the first failed attempt; it doubles after each further one…
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
/// …up to this.
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// How many failed deliveries [`Notifier::status`] remembers.
const FAILURES_KEPT: usize = 50;
/// How much of a refusing receiver's answer goes into the error.
const ERROR_BODY_CHARS: usize = 200;

/// One thing that happened to a release, as receivers get it.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseEvent {
    /// One of [`EVENTS`].
    pub event: &'static str,
    pub release: u64,
    pub model: String,
    pub version: String,
    /// The environment it happened in (`None` for the release as a whole).
    pub env: Option<String>,
    /// A sentence for a person: "p99 latency 74.6 ms over the 50 ms budget".
    pub message: String,
    /// Anything more, for machines (the gate's name, the weight, the verdict…).
    pub details: serde_json::Value,
    /// When it happened, milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// What `GET /api/v1/status` shows of the deliveries (the API's types).
pub use hoist_types::api::{DeliveryFailure, NotifyStatus, ReceiverStatus};

/// Sends release events to the configured receivers. Cheap to clone; the receivers'
/// tasks end once every clone is dropped and their queues are empty.
#[derive(Clone)]
pub struct Notifier {
    receivers: Arc<[Receiver]>,
    shared: Arc<Shared>,
}

/// The sending side of one receiver.
struct Receiver {
    /// Which events it wants; empty: all.
    events: Vec<String>,
    /// The URL as shown.
    shown: String,
    tx: mpsc::Sender<Arc<Queued>>,
}

/// An event on its way, with the delivery id all its attempts share.
struct Queued {
    event: ReleaseEvent,
    delivery: String,
}

/// What the senders and the delivery tasks share.
struct Shared {
    state: Mutex<State>,
    /// Woken whenever `State::queued` drops to zero.
    idle: tokio::sync::Notify,
    /// Numbers delivery ids.
    seq: AtomicU64,
    /// Tells this notifier's delivery ids from another run's.
    boot: u64,
}

#[derive(Default)]
struct State {
    receivers: Vec<ReceiverStatus>,
    failures: VecDeque<DeliveryFailure>,
}

impl State {
    fn queued(&self) -> u64 {
        self.receivers.iter().map(|r| r.queued).sum()
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The counters stay meaningful even if a holder panicked.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts the end of one delivery by receiver `index`.
    fn finish(&self, index: usize, q: &Queued, outcome: Result<u32, (u32, String)>) {
        let mut st = self.lock();
        let r = &mut st.receivers[index];
        r.queued -= 1;
        match outcome {
            Ok(_) => r.sent += 1,
            Err((attempts, error)) => {
                r.failed += 1;
                let url = r.url.clone();
                tracing::warn!(
                    "notification to {url} failed: {} of release {} not delivered after {attempts} attempt{}: {error}",
                    q.event.event,
                    q.event.release,
                    if attempts == 1 { "" } else { "s" },
                );
                if st.failures.len() == FAILURES_KEPT {
                    st.failures.pop_front();
                }
                st.failures.push_back(DeliveryFailure {
                    url,
                    event: q.event.event.to_string(),
                    release: q.event.release,
                    attempts,
                    error,
                    at_ms: now_ms(),
                });
            }
        }
        if st.queued() == 0 {
            self.idle.notify_waiters();
        }
    }
}

impl Notifier {
    /// Checks `configs` and starts one delivery task per receiver. `env` reads the
    /// environment (for `secret_env`).
    ///
    /// Must be called inside a tokio runtime (the delivery tasks are spawned on the
    /// current one) unless `configs` is empty; outside one it returns an error.
    ///
    /// Refused, with the offending `notifications[i].field` named: a URL that is not
    /// `http://` or `https://`; an event name not in [`EVENTS`] (the error lists them);
    /// a `secret_env` whose variable is unset or empty (the error names it), or on a
    /// Slack receiver; `max_attempts = 0`.
    pub fn new(
        configs: &[Notification],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Notifier, String> {
        let mut workers = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            let at = format!("notifications[{i}]");
            let url = reqwest::Url::parse(&c.url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .ok_or_else(|| {
                    format!(
                        "{at}.url: '{}' is not an http:// or https:// URL",
                        c.url.trim()
                    )
                })?;
            for e in &c.events {
                if !EVENTS.contains(&e.as_str()) {
                    return Err(format!(
                        "{at}.events: unknown event '{e}'; valid events: {}",
                        EVENTS.join(", ")
                    ));
                }
            }
            if c.max_attempts == 0 {
                return Err(format!("{at}.max_attempts: must be at least 1"));
            }
            let secret = match &c.secret_env {
                None => None,
                Some(_) if c.kind == NotificationKind::Slack => {
                    return Err(format!(
                        "{at}.secret_env: Slack receivers are not signed (the webhook URL is \
                         the secret); remove secret_env or use kind = \"json\""
                    ));
                }
                Some(var) if var.trim().is_empty() => {
                    return Err(format!("{at}.secret_env: names no variable"));
                }
                Some(var) => match hoist_types::Secret::from_env(var, env) {
                    Ok(Some(s)) => Some(s),
                    Ok(None) if env(var).is_some() => {
                        return Err(format!(
                            "{at}.secret_env: environment variable {var} is empty; set it (or \
                             {var}_FILE) to the receiver's signing secret"
                        ));
                    }
                    Ok(None) => {
                        return Err(format!(
                            "{at}.secret_env: environment variable {var} is not set; set it (or \
                             {var}_FILE) to the receiver's signing secret"
                        ));
                    }
                    Err(e) => return Err(format!("{at}.secret_env: {e}")),
                },
            };
            workers.push((shown_url(&url, c.kind), url, secret));
        }

        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                receivers: configs
                    .iter()
                    .zip(&workers)
                    .map(|(c, (shown, _, _))| ReceiverStatus {
                        url: shown.clone(),
                        kind: kind_name(c.kind).into(),
                        sent: 0,
                        failed: 0,
                        dropped: 0,
                        queued: 0,
                    })
                    .collect(),
                failures: VecDeque::new(),
            }),
            idle: tokio::sync::Notify::new(),
            seq: AtomicU64::new(0),
            boot: now_ms(),
        });
        if workers.is_empty() {
            return Ok(Notifier {
                receivers: Arc::from(Vec::new()),
                shared,
            });
        }

        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            "notifications: Notifier::new must be called inside a tokio runtime".to_string()
        })?;
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(ATTEMPT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("hoist/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("notifications: cannot create the HTTP client: {e}"))?;

        let mut receivers = Vec::with_capacity(workers.len());
        for (index, (c, (shown, url, secret))) in configs.iter().zip(workers).enumerate() {
            let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
            receivers.push(Receiver {
                events: c.events.clone(),
                shown: shown.clone(),
                tx,
            });
            let worker = Worker {
                index,
                url,
                shown,
                kind: c.kind,
                secret,
                max_attempts: c.max_attempts,
                client: client.clone(),
                shared: shared.clone(),
            };
            runtime.spawn(worker.run(rx));
        }
        Ok(Notifier {
            receivers: Arc::from(receivers),
            shared,
        })
    }

    /// Queues `e` for every receiver that wants it. Never blocks and never fails: a
    /// receiver whose queue is full ([`QUEUE_CAPACITY`]) does not get `e`, which is
    /// counted in [`NotifyStatus::dropped`] and logged.
    pub fn send(&self, e: ReleaseEvent) {
        if self.receivers.is_empty() {
            return;
        }
        debug_assert!(EVENTS.contains(&e.event), "unknown event {}", e.event);
        let seq = self.shared.seq.fetch_add(1, Ordering::Relaxed);
        let q = Arc::new(Queued {
            delivery: format!("{:x}-{seq}", self.shared.boot),
            event: e,
        });
        for (i, r) in self.receivers.iter().enumerate() {
            if !(r.events.is_empty() || r.events.iter().any(|n| n == q.event.event)) {
                continue;
            }
            // Counted before it is queued, so the task never finishes an uncounted one.
            self.shared.lock().receivers[i].queued += 1;
            if let Err(err) = r.tx.try_send(q.clone()) {
                let mut st = self.shared.lock();
                st.receivers[i].queued -= 1;
                st.receivers[i].dropped += 1;
                if st.queued() == 0 {
                    self.shared.idle.notify_waiters();
                }
                drop(st);
                let why = match err {
                    TrySendError::Full(_) => {
                        format!("{QUEUE_CAPACITY} events are already waiting for it")
                    }
                    TrySendError::Closed(_) => "its delivery task has stopped".to_string(),
                };
                tracing::warn!(
                    "notification to {} dropped: {} of release {}: {why}",
                    r.shown,
                    q.event.event,
                    q.event.release
                );
            }
        }
    }

    /// Counters, per receiver and in total, and the latest failed deliveries.
    pub fn status(&self) -> NotifyStatus {
        let st = self.shared.lock();
        let sum = |f: fn(&ReceiverStatus) -> u64| st.receivers.iter().map(f).sum();
        NotifyStatus {
            sent: sum(|r| r.sent),
            failed: sum(|r| r.failed),
            dropped: sum(|r| r.dropped),
            queued: sum(|r| r.queued),
            receivers: st.receivers.clone(),
            failures: st.failures.iter().cloned().collect(),
        }
    }

    /// Waits until every queued event has been delivered or given up on, at most
    /// `within`; true if nothing is left. For a clean shutdown (and tests).
    pub async fn flush(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.shared.lock().queued() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.shared.lock().queued() == 0;
            }
        }
    }
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field(
                "receivers",
                &self.receivers.iter().map(|r| &r.shown).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The one-line Slack summary of `e`: `hoist: release 3 (m v3) rolled back in
/// production: <message>`. Whitespace runs (newlines too) become one space, and `&`,
/// `<`, `>` are escaped as Slack asks.
pub fn slack_text(e: &ReleaseEvent) -> String {
    let what = match e.event {
        "started" => "started",
        "gate_passed" => "passed a gate",
        "gate_failed" => "failed a gate",
        "step" => "moved a step",
        "awaiting_approval" => "is awaiting approval",
        "promoted" => "promoted",
        "rolled_back" => "rolled back",
        "aborted" => "aborted",
        other => other,
    };
    let mut s = format!(
        "hoist: release {} ({} v{}) {what}",
        e.release,
        e.model,
        e.version.strip_prefix('v').unwrap_or(&e.version)
    );
    if let Some(env) = &e.env {
        let _ = write!(s, " in {env}");
    }
    let message = e.message.split_whitespace().collect::<Vec<_>>().join(" ");
    if !message.is_empty() {
        let _ = write!(s, ": {message}");
    }
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `sha256=<hex>` of HMAC-SHA256(`secret`, "`timestamp`.`body`"): the value of
/// `X-Hoist-Signature`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hoist_types::hex(&mac.finalize().into_bytes()))
}

/// Delivers one receiver's events.
struct Worker {
    index: usize,
    url: reqwest::Url,
    shown: String,
    kind: NotificationKind,
    /// Read again when its file is rotated.
    secret: Option<hoist_types::Secret>,
    max_attempts: u32,
    client: reqwest::Client,
    shared: Arc<Shared>,
}

/// Why an attempt failed.
enum Failure {
    /// Worth another attempt (after at least the given wait, if any).
    Retry(String, Option<Duration>),
    Permanent(String),
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Arc<Queued>>) {
        while let Some(q) = rx.recv().await {
            let outcome = self.deliver(&q).await;
            self.shared.finish(self.index, &q, outcome);
        }
    }

    /// Attempts made on success; attempts and the last error on failure.
    async fn deliver(&self, q: &Queued) -> Result<u32, (u32, String)> {
        let body = match self.kind {
            NotificationKind::Json => serde_json::to_vec(&q.event),
            NotificationKind::Slack => {
                serde_json::to_vec(&serde_json::json!({ "text": slack_text(&q.event) }))
            }
        }
        .expect("a release event serializes");
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.attempt(&body, q).await {
                Ok(()) => return Ok(attempt),
                Err(Failure::Permanent(e)) => return Err((attempt, e)),
                Err(Failure::Retry(e, _)) if attempt >= self.max_attempts => {
                    return Err((attempt, e));
                }
                Err(Failure::Retry(e, after)) => {
                    let wait = backoff(attempt).max(after.unwrap_or_default().min(BACKOFF_CAP));
                    tracing::debug!(
                        "notification to {}: attempt {attempt} of {} failed ({e}); next in {} ms",
                        self.shown,
                        self.max_attempts,
                        wait.as_millis()
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn attempt(&self, body: &[u8], q: &Queued) -> Result<(), Failure> {
        let mut req = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        if self.kind == NotificationKind::Json {
            req = req
                .header(hoist_types::wire::headers::EVENT, q.event.event)
                .header(hoist_types::wire::headers::DELIVERY, &q.delivery);
            if let Some(secret) = &self.secret {
                let ts = now_ms() / 1000;
                req = req
                    .header(hoist_types::wire::headers::TIMESTAMP, ts.to_string())
                    .header(
                        hoist_types::wire::headers::SIGNATURE,
                        signature(secret.get().as_bytes(), ts, body),
                    );
            }
        }
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // A little of the answer helps to see why; never wait long for it.
        let mut text = Vec::new();
        while text.len() < ERROR_BODY_CHARS * 4 {
            match resp.chunk().await {
                Ok(Some(c)) => text.extend_from_slice(&c),
                _ => break,
            }
        }
        let text = String::from_utf8_lossy(&text);
        let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut error = format!("HTTP {status}");
        if !text.is_empty() {
            let cut: String = text.chars().take(ERROR_BODY_CHARS).collect();
            let more = if cut.len() < text.len() { "…" } else { "" };
            let _ = write!(error, ": {cut}{more}");
        }
        if status.is_redirection() {
            let to = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            let _ = write!(
                error,
                " (redirected to {to}; hoist does not follow redirects: set the final URL)"
            );
            return Err(Failure::Permanent(error));
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(Failure::Retry(error, retry_after))
        } else {
            Err(Failure::Permanent(error))
        }
    }
}

/// A transport error (no answer): always worth retrying. Its text never carries the
/// URL, which may hold a secret.
fn transport(e: reqwest::Error) -> Failure {
    let e = e.without_url();
    let what = if e.is_timeout() {
        format!("timed out after {} s", ATTEMPT_TIMEOUT.as_secs())
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut chain = Vec::new();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let t = s.to_string();
        if !chain.contains(&t) {
            chain.push(t);
        }
        source = s.source();
    }
    if e.is_timeout() || chain.is_empty() {
        Failure::Retry(what, None)
    } else {
        Failure::Retry(format!("{what}: {}", chain.join(": ")), None)
    }
}

/// The wait after failed attempt `n` (1-based): 200 ms, 400 ms, 800 ms … at most 10 s.
fn backoff(n: u32) -> Duration {
    BACKOFF_FIRST
        .saturating_mul(1u32 << (n - 1).min(16))
        .min(BACKOFF_CAP)
}

/// `url` as status and logs show it: no credentials, `?…` for a query, and for Slack
/// only the first path segment (the rest is the webhook's secret).
fn shown_url(url: &reqwest::Url, kind: NotificationKind) -> String {
    let mut s = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(p) = url.port() {
        let _ = write!(s, ":{p}");
    }
    match kind {
        NotificationKind::Json => {
            s.push_str(url.path());
            if url.query().is_some() {
                s.push_str("?…");
            }
        }
        NotificationKind::Slack => {
            let mut segs = url.path_segments().into_iter().flatten();
            let first = segs.next().unwrap_or("");
            let _ = write!(s, "/{first}");
            if segs.next().is_some() || url.query().is_some() {
                s.push_str("/…");
            }
        }
    }
    s
}

fn kind_name(k: NotificationKind) -> &'static str {
    match k {
        NotificationKind::Json => "json",
        NotificationKind::Slack => "slack",
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> ReleaseEvent {
        ReleaseEvent {
            event: "rolled_back",
            release: 3,
            model: "m".into(),
            version: "3".into(),
            env: Some("production".into()),
            message: "p99 latency 74.6 ms\nover the 50 ms budget <p99>".into(),
            details: serde_json::json!({}),
            at_ms: 0,
        }
    }

    #[test]
    fn slack_text_is_one_escaped_line() {
        assert_eq!(
            slack_text(&event()),
            "hoist: release 3 (m v3) rolled back in production: p99 latency 74.6 ms over \
             the 50 ms budget &lt;p99&gt;"
        );
    }

    #[test]
    fn backoff_doubles_up_to_ten_seconds() {
        let ms: Vec<u128> = (1..=8).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(ms, [200, 400, 800, 1600, 3200, 6400, 10000, 10000]);
        assert_eq!(backoff(u32::MAX), BACKOFF_CAP);
    }

    #[test]
    fn urls_are_shown_without_secrets() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert_eq!(
            shown_url(
                &u("https://hooks.slack.com/services/T0/B0/XXXX"),
                NotificationKind::Slack
            ),
            "https://hooks.slack.com/services/…"
        );
        assert_eq!(
            shown_url(
                &u("http://user:pw@10.0.0.1:8080/hook?token=x"),
                NotificationKind::Json
            ),
            "http://10.0.0.1:8080/hook?…"
        );
    }

    #[test]
    fn signature_matches_python_hmac() {
        // hmac.new(b"secret", b'1700000000.{"event":"started"}', hashlib.sha256).hexdigest()
        assert_eq!(
            signature(b"secret", 1_700_000_000, br#"{"event":"started"}"#),
            "sha256=00d6055eef5df100e22c2aed74938256d586bb7a07e9ec4134e29ef4d92e4741"
        );
    }
}
