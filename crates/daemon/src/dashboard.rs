//! The web dashboard the daemon serves at its API address: `GET /` and its assets
//! (hand-written HTML, CSS and JavaScript in `crates/daemon/assets/`, embedded in the
//! binary: no CDN, no build step), and the reads only it needs:
//!
//! - `GET /api/v1/metrics?model=M`: model M's traffic in every environment over the
//!   last 15 minutes, one [`Sample`] every [`SAMPLE_EVERY`] (request rate and error
//!   rate per interval, p50 and p99 of the step's window as `hoist status` shows them);
//! - `GET /api/v1/versions?model=M`: the registry's versions of model M, with their
//!   tags (hoist's included), aliases and digests;
//!
//! (without `model=`, both answer for the daemon's first model; an unknown model is a
//! 404 naming the models)
//! - `GET /api/v1/events`: the live stream ([`crate::events`]).
//!
//! The page reads with the same access as the CLI (open on loopback) and writes only
//! with the token, sent as `Authorization: Bearer`: the API is unchanged, no CORS
//! header is added, and the page's Content-Security-Policy lets it talk to its own
//! origin only.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hoist_types::ErrorCode;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::api::ApiState;
use crate::clock::now_ms;
use crate::cmd::{Cmd, EngineClient};
use crate::events::Events;
use crate::views::{ApiError, LogLine, StatusView, WindowView};

/// How often the sampler reads every environment's counters.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// How much traffic history the dashboard keeps (and charts).
pub const HISTORY: Duration = Duration::from_secs(15 * 60);

const INDEX: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// What the live parts of the API share: the engines' events, the progress lines,
/// each model's traffic history, and the stop signal (which ends every open stream).
#[derive(Clone)]
pub struct Live {
    pub events: Events,
    pub log: broadcast::Sender<LogLine>,
    /// Each model's samples, oldest first.
    pub history: Arc<Mutex<HashMap<String, VecDeque<Sample>>>>,
    pub stop: watch::Receiver<bool>,
}

impl Live {
    pub fn new(
        events: Events,
        log: broadcast::Sender<LogLine>,
        stop: watch::Receiver<bool>,
    ) -> Live {
        Live {
            events,
            log,
            history: Arc::default(),
            stop,
        }
    }
}

/// One model's traffic in every environment at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub model: String,
    pub at_ms: u64,
    pub envs: Vec<EnvSample>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvSample {
    pub env: String,
    /// The candidate's share of traffic.
    pub weight: u32,
    pub stable: Point,
    pub candidate: Point,
}

/// One variant's numbers in one sample.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub version: Option<String>,
    /// Requests since the window began (the window restarts with each candidate).
    pub requests: u64,
    pub errors: u64,
    /// Requests per second since the previous sample.
    pub rps: f64,
    /// Errors over requests since the previous sample (`None`: no request).
    pub error_rate: Option<f64>,
    /// Percentiles of the requests since the previous sample when the gateway's
    /// histogram is at hand (one machine), else of the whole window.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The window's latency histogram at this sample (for the next one's deltas).
    #[serde(skip)]
    pub buckets: Vec<u64>,
}

/// Percentiles (ms) of the requests between two histograms of the same window
/// (`prev` empty, or with more in any bucket: the window restarted, so all of
/// `now`); `None` without a histogram or without requests in between.
fn interval_percentiles(now: &[u64], prev: &[u64]) -> Option<(Option<f64>, Option<f64>)> {
    if now.is_empty() {
        return None;
    }
    let restarted = prev.len() != now.len() || prev.iter().zip(now).any(|(p, n)| p > n);
    let delta: Vec<u64> = if restarted {
        now.to_vec()
    } else {
        now.iter().zip(prev).map(|(n, p)| n - p).collect()
    };
    let stats = hoist_gateway::VariantStats {
        requests: delta.iter().sum(),
        latency_buckets: delta,
        ..Default::default()
    };
    let ms = |q: f64| stats.quantile(q).map(|s| s * 1000.0);
    Some((ms(0.5), ms(0.99)))
}

/// The dashboard's routes (merged into the API's router).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{file}", get(asset))
        .route("/api/v1/events", get(crate::events::stream))
        .route("/api/v1/metrics", get(metrics))
        .route("/api/v1/versions", get(versions))
}

/// Headers every page and asset carries: the page may load and call its own origin
/// only, cannot be framed, and leaks no referrer.
fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX)
}

async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.js" => page("text/javascript; charset=utf-8", APP_JS),
        "app.css" => page("text/css; charset=utf-8", APP_CSS),
        _ => ApiError::not_found(format!(
            "no dashboard asset `{}`",
            file.chars().take(64).collect::<String>()
        ))
        .into_response(),
    }
}

/// `?model=`: which model (default: the first model).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelQuery {
    model: Option<String>,
}

/// The model a dashboard read is about: `?model=` (a 400 for a bad query, a 404
/// naming the models for an unknown one), else the first model.
fn model_query(
    s: &ApiState,
    q: Result<axum::extract::Query<ModelQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<String, ApiError> {
    let q = q
        .map(|axum::extract::Query(q)| q)
        .map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))?;
    Ok(match &q.model {
        Some(m) => crate::api::model_of(s, Some(m))?.name.clone(),
        None => s
            .models
            .first()
            .map_or_else(|| s.config.model.name.clone(), |m| m.name.clone()),
    })
}

async fn metrics(
    State(s): State<ApiState>,
    headers: HeaderMap,
    q: Result<axum::extract::Query<ModelQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    crate::api::read_ok(&s, &headers)?;
    let model = model_query(&s, q)?;
    let samples: Vec<Sample> = s
        .live
        .history
        .lock()
        .map(|h| h.get(&model).map(|d| d.iter().cloned().collect()))
        .ok()
        .flatten()
        .unwrap_or_default();
    Ok(axum::Json(serde_json::json!({
        "model": model,
        "every_ms": SAMPLE_EVERY.as_millis() as u64,
        "samples": samples,
    }))
    .into_response())
}

/// A registry version as the dashboard shows it.
#[derive(Debug, Serialize)]
struct VersionView {
    version: String,
    digest: Option<String>,
    aliases: Vec<String>,
    stage: Option<String>,
    tags: std::collections::BTreeMap<String, String>,
    created_at_ms: i64,
}

async fn versions(
    State(s): State<ApiState>,
    headers: HeaderMap,
    q: Result<axum::extract::Query<ModelQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    crate::api::read_ok(&s, &headers)?;
    let name = model_query(&s, q)?;
    let registry = s.registry.clone();
    let shown = name.clone();
    let listed = tokio::task::spawn_blocking(move || registry.list_versions(&name))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| match e {
            hoist_registry::Error::Unreachable { .. }
            | hoist_registry::Error::Unauthorized { .. } => {
                ApiError::new(ErrorCode::RegistryUnavailable, e.to_string())
            }
            other => ApiError::not_found(other.to_string()),
        })?;
    let mut versions: Vec<VersionView> = listed
        .into_iter()
        .map(|v| VersionView {
            version: v.version,
            digest: v.digest,
            aliases: v.aliases,
            stage: v.stage,
            tags: v.tags,
            created_at_ms: v.created_at_ms,
        })
        .collect();
    // Newest first (versions are numbers as strings in both registries).
    versions.sort_by(|a, b| {
        let n = |v: &str| v.parse::<u64>().unwrap_or(0);
        n(&b.version)
            .cmp(&n(&a.version))
            .then(b.version.cmp(&a.version))
    });
    Ok((
        StatusCode::OK,
        axum::Json(serde_json::json!({ "model": shown, "versions": versions })),
    )
        .into_response())
}

/// Reads every model's counters in every environment every [`SAMPLE_EVERY`] until
/// the daemon stops (one task per model, so that a busy engine delays only its own
/// samples); keeps [`HISTORY`] of them per model and tells the live stream each one.
pub fn spawn_sampler(models: &[crate::run::ModelHandle], live: Live) {
    for m in models {
        spawn_model_sampler(m.client.clone(), live.clone());
    }
}

fn spawn_model_sampler(client: EngineClient, live: Live) {
    let mut stop = live.stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<Sample> = None;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tick.tick() => {}
            }
            let Ok(status) = client.call(|reply| Cmd::Status { reply }).await else {
                return;
            };
            let sample = sample(&status, last.as_ref(), now_ms());
            if let Ok(mut h) = live.history.lock() {
                let keep = (HISTORY.as_millis() / SAMPLE_EVERY.as_millis()) as usize;
                let mine = h.entry(sample.model.clone()).or_default();
                mine.push_back(sample.clone());
                while mine.len() > keep {
                    mine.pop_front();
                }
            }
            live.events
                .send("metrics", serde_json::to_value(&sample).unwrap_or_default());
            last = Some(sample);
        }
    });
}

/// This moment's sample of the status's model, rates taken against the previous one.
pub fn sample(status: &StatusView, last: Option<&Sample>, at_ms: u64) -> Sample {
    let envs = status
        .environments
        .iter()
        .map(|e| {
            let before = last.and_then(|l| {
                l.envs
                    .iter()
                    .find(|x| x.env == e.name)
                    .map(|x| (l.at_ms, x))
            });
            let point = |w: &WindowView, version: Option<String>, prev: Option<(u64, &Point)>| {
                // The window restarts with each candidate: counters that went down
                // started again from zero during the interval.
                let (dt_ms, dr, de) = match prev {
                    Some((t, p)) if w.requests >= p.requests && w.errors >= p.errors => (
                        at_ms.saturating_sub(t),
                        w.requests - p.requests,
                        w.errors - p.errors,
                    ),
                    Some((t, _)) => (at_ms.saturating_sub(t), w.requests, w.errors),
                    None => (0, 0, 0),
                };
                let (p50_ms, p99_ms) = interval_percentiles(
                    &w.latency_buckets,
                    prev.map_or(&[][..], |(_, p)| &p.buckets[..]),
                )
                .unwrap_or((w.p50_ms, w.p99_ms));
                Point {
                    version,
                    requests: w.requests,
                    errors: w.errors,
                    rps: if dt_ms > 0 {
                        dr as f64 * 1000.0 / dt_ms as f64
                    } else {
                        0.0
                    },
                    error_rate: (dr > 0).then(|| de as f64 / dr as f64),
                    p50_ms,
                    p99_ms,
                    buckets: w.latency_buckets.clone(),
                }
            };
            EnvSample {
                env: e.name.clone(),
                weight: e.weight,
                stable: point(
                    &e.stable_metrics,
                    e.stable.as_ref().map(|d| d.version.clone()),
                    before.map(|(t, x)| (t, &x.stable)),
                ),
                candidate: point(
                    &e.candidate_metrics,
                    e.candidate.as_ref().map(|d| d.version.clone()),
                    before.map(|(t, x)| (t, &x.candidate)),
                ),
            }
        })
        .collect();
    Sample {
        model: status.model.clone(),
        at_ms,
        envs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_of_the_interval_not_the_window() {
        let bounds = hoist_gateway::LATENCY_BUCKETS;
        let at = |secs: f64| bounds.partition_point(|&b| b < secs);
        let mut earlier = vec![0u64; bounds.len() + 1];
        earlier[at(0.001)] = 1000; // a thousand fast requests before
        let mut now = earlier.clone();
        now[at(0.1)] += 10; // then ten slow ones
        let (p50, p99) = interval_percentiles(&now, &earlier).unwrap();
        assert!(
            p50.unwrap() > 50.0 && p99.unwrap() > 50.0,
            "{p50:?} {p99:?}"
        );
        // The window restarted (fewer in a bucket): all of it.
        let (p50, _) = interval_percentiles(&now, &[0, 5000]).unwrap();
        assert!(p50.unwrap() < 2.0, "{p50:?}");
        // Nothing in between: no percentile; no histogram: the caller's fallback.
        assert_eq!(interval_percentiles(&now, &now), Some((None, None)));
        assert_eq!(interval_percentiles(&[], &now), None);
    }

    /// A status with one environment whose windows hold these counters.
    fn status(stable: (u64, u64), candidate: Option<(u64, u64)>) -> StatusView {
        let w = |(requests, errors): (u64, u64)| {
            serde_json::json!({ "requests": requests, "errors": errors,
                "error_rate": 0.0, "p50_ms": 1.5, "p99_ms": 9.0 })
        };
        let dep = |v: &str| serde_json::json!({ "version": v, "digest": "sha256:00", "release_id": 1, "servers": [] });
        serde_json::from_value(serde_json::json!({
            "model": "m", "registry": "embedded",
            "environments": [{
                "name": "production", "url": "http://127.0.0.1:1", "strategy": "canary",
                "weight": if candidate.is_some() { 30 } else { 0 },
                "stable": dep("1"),
                "candidate": candidate.map(|_| dep("2")),
                "stable_metrics": w(stable), "candidate_metrics": w(candidate.unwrap_or((0, 0))),
                "target": "local",
            }],
            "active": [],
            "notifications": { "sent": 0, "failed": 0, "dropped": 0, "queued": 0, "receivers": [], "failures": [] },
        }))
        .unwrap()
    }

    #[test]
    fn rates_are_per_interval_and_survive_a_window_restart() {
        let first = sample(&status((100, 0), None), None, 10_000);
        assert_eq!(first.model, "m", "a sample names its model");
        assert_eq!(first.envs[0].stable.rps, 0.0, "no interval yet");
        assert_eq!(first.envs[0].stable.version.as_deref(), Some("1"));
        assert_eq!(first.envs[0].candidate.version, None);
        // 2 s later: 50 more stable requests (1 error), 20 candidate requests (4 errors).
        let second = sample(&status((150, 1), Some((20, 4))), Some(&first), 12_000);
        let e = &second.envs[0];
        assert_eq!(e.weight, 30);
        assert_eq!(e.stable.rps, 25.0);
        assert_eq!(e.stable.error_rate, Some(1.0 / 50.0));
        assert_eq!(e.candidate.rps, 10.0);
        assert_eq!(e.candidate.error_rate, Some(0.2));
        assert_eq!(e.candidate.p99_ms, Some(9.0));
        // A new candidate restarts the window: counters below the last are new ones.
        let third = sample(&status((30, 0), Some((6, 0))), Some(&second), 14_000);
        assert_eq!(third.envs[0].stable.rps, 15.0);
        assert_eq!(third.envs[0].candidate.rps, 3.0);
        // No request in an interval: no error rate (not 0%).
        let fourth = sample(&status((30, 0), Some((6, 0))), Some(&third), 16_000);
        assert_eq!(fourth.envs[0].stable.error_rate, None);
    }
}
