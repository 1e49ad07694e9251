//! The daemon's live stream: what the engine just did (each journaled transition,
//! each verdict), each progress line and each metrics sample, as server-sent events
//! on `GET /api/v1/events` (read-only; the same access as the other reads).
//!
//! The stream only says *that* something changed and the little that changed; the
//! dashboard then reads the ordinary endpoints (`/api/v1/status`,
//! `/api/v1/releases/{id}`), so there is one source of truth for every view.
//!
//! | event | data |
//! |---|---|
//! | `hello` | `{"at_ms"}`: the stream is open (sent first) |
//! | `transition` | `{"release", "event", "phase", "at_ms"}`: a transition was journaled |
//! | `verdict` | `{"release", "env", "step", "verdict", "at_ms"}`: a measurement of live traffic |
//! | `log` | a progress line, as `hoist up` prints it |
//! | `metrics` | one sample of a model in every environment ([`crate::dashboard::Sample`], with its `model`) |
//! | `lagged` | `{"missed"}`: this reader fell behind and missed events: read everything again |

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use hoist_release::machine::ReleaseId;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::api::ApiState;
use crate::clock::now_ms;
use crate::views::{ApiError, LogLine};

/// One thing that happened, for the live stream.
#[derive(Debug, Clone, Serialize)]
pub struct LiveEvent {
    /// The SSE event name (`transition`, `verdict`, `metrics`).
    #[serde(skip)]
    pub kind: &'static str,
    #[serde(flatten)]
    pub data: serde_json::Value,
}

/// Where the engine (and the metrics sampler) tell the live stream. Sending never
/// blocks and never fails the sender: nobody listening is fine.
#[derive(Debug, Clone)]
pub struct Events(broadcast::Sender<LiveEvent>);

impl Default for Events {
    fn default() -> Events {
        Events(broadcast::channel(1024).0)
    }
}

impl Events {
    pub fn send(&self, kind: &'static str, data: serde_json::Value) {
        let _ = self.0.send(LiveEvent { kind, data });
    }

    /// A transition of release `id` was journaled.
    pub fn transition(&self, id: ReleaseId, event: &str, phase: &str) {
        self.send(
            "transition",
            serde_json::json!({ "release": id, "event": event, "phase": phase, "at_ms": now_ms() }),
        );
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.0.subscribe()
    }
}

/// `GET /api/v1/events`: the live stream (`text/event-stream`).
pub async fn stream(State(s): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    crate::api::read_ok(&s, &headers)?;
    let events = s.live.events.subscribe();
    let log = s.live.log.subscribe();
    let stop = s.live.stop.clone();
    let hello = SseEvent::default()
        .event("hello")
        .json_data(serde_json::json!({ "at_ms": now_ms() }))
        .unwrap_or_default();
    let first = stream::iter([Ok::<_, Infallible>(hello)]);
    let sse = Sse::new(futures_util::StreamExt::chain(
        first,
        live(events, log, stop),
    ))
    .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)));
    let mut r = sse.into_response();
    // Proxies must not buffer the stream.
    r.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    Ok(r)
}

/// The engine's events and progress lines, merged, as SSE events.
fn live(
    events: broadcast::Receiver<LiveEvent>,
    log: broadcast::Receiver<LogLine>,
    stop: watch::Receiver<bool>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    // The stream ends when the daemon stops (the API's graceful shutdown waits for it).
    stream::unfold(
        (events, log, stop),
        |(mut events, mut log, mut stop)| async move {
            if *stop.borrow() {
                return None;
            }
            let ev = tokio::select! {
                _ = stop.changed() => return None,
                e = events.recv() => match e {
                    Ok(e) => SseEvent::default().event(e.kind).json_data(&e.data),
                    Err(broadcast::error::RecvError::Lagged(n)) => lagged(n),
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                l = log.recv() => match l {
                    Ok(l) => SseEvent::default().event("log").json_data(&l),
                    Err(broadcast::error::RecvError::Lagged(n)) => lagged(n),
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            };
            Some((Ok(ev.unwrap_or_default()), (events, log, stop)))
        },
    )
}

fn lagged(n: u64) -> Result<SseEvent, axum::Error> {
    SseEvent::default()
        .event("lagged")
        .json_data(serde_json::json!({ "missed": n }))
}
