//! The HTTP surface: routes, shared state, errors, and the metrics middleware.
//!
//! One module per protocol: [`v2`] (Open Inference Protocol, and its model
//! repository extension), [`mlflow`] (MLflow scoring), [`image`] (`/predict-image`),
//! [`admin`] (reload, and the token rules of load and unload). Every error a client
//! sees is built here or in those modules on purpose; no panic reaches a client.

// Handlers' helpers return `Result<_, Response>`: the error is the finished answer.
#![allow(clippy::result_large_err)]

pub mod admin;
pub(crate) mod fast;
pub mod image;
pub mod mlflow;
mod numbers;
pub mod v2;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::FutureExt;
use serde_json::json;

use crate::metrics::{Metrics, ModelMetrics, Route};
use crate::model::InferError;
use crate::repository::{LookupError, Repository};

/// Everything the handlers share.
pub struct AppState {
    /// The models served, by name. Each is swapped atomically on reload: a request
    /// holds its own `Arc` until it finishes.
    pub models: Repository,
    pub metrics: Arc<Metrics>,
    /// False until every model's first load was tried, and once shutdown starts.
    pub ready: AtomicBool,
    pub admin: admin::AdminTokens,
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
}

impl AppState {
    /// Whether the server takes traffic: started, not shutting down, and (one
    /// model) that model loaded. With many models a model that failed or was
    /// unloaded does not make the server unready (the others serve); its own
    /// readiness (`/v2/models/{name}/ready`) says so.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
            && (!self.models.is_single() || self.models.sole().is_ok())
    }
}

/// The status of a model a client cannot use: 404 (unknown, not loaded), 503 (loading).
pub fn lookup_status(e: &LookupError) -> StatusCode {
    match e {
        LookupError::NotFound(_) => StatusCode::NOT_FOUND,
        LookupError::Loading(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The answer to a request for a model it cannot use.
pub fn lookup_error(e: &LookupError) -> Response {
    json_error(lookup_status(e), &e.to_string())
}

pub type Shared = Arc<AppState>;

/// Builds the router.
pub fn router(state: Shared) -> Router {
    let max_body = state.max_body;
    Router::new()
        .route("/v2", get(v2::server_metadata))
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready))
        .route("/v2/models/{model}", get(v2::model_metadata))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(v2::model_metadata_v),
        )
        .route("/v2/models/{model}/ready", get(v2::model_ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(v2::model_ready_v),
        )
        .route("/v2/models/{model}/infer", post(v2::infer))
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(v2::infer_v),
        )
        .route("/invocations", post(mlflow::invocations))
        .route(
            "/models/{model}/invocations",
            post(mlflow::invocations_named),
        )
        .route("/v2/repository/index", post(v2::repository_index))
        .route(
            "/v2/repository/models/{model}/load",
            post(v2::repository_load),
        )
        .route(
            "/v2/repository/models/{model}/unload",
            post(v2::repository_unload),
        )
        .route("/ping", get(mlflow::ping))
        .route("/version", get(mlflow::version))
        .route("/health", get(health))
        .route("/predict-image", post(image::predict_image))
        .route("/metrics", get(metrics))
        .route("/admin/reload", post(admin::reload))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// Counts every request by route and status, and times it.
async fn track(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| Route::of(m.as_str()))
        .unwrap_or(Route::Other);
    let metrics = model_metrics(&state, req.uri().path());
    tracked(&metrics, route, next.run(req)).await
}

/// Runs `handle` counted in `metrics` under `route`: started, finished with its
/// status, timed. A panic in it becomes a 500 for this request alone. Every request
/// goes through here, on axum's path (`track`) and on the fast path (`fast`).
pub(crate) async fn tracked(
    metrics: &ModelMetrics,
    route: Route,
    handle: impl std::future::Future<Output = Response>,
) -> Response {
    let start = Instant::now();
    metrics.request_started();
    finish_tracked(metrics, route, start, handle).await
}

/// The end of [`tracked`], for a request already counted as started at `start`
/// (the fast path counts a request once its head is in, as hyper hands axum a
/// request before its body).
pub(crate) async fn finish_tracked(
    metrics: &ModelMetrics,
    route: Route,
    start: Instant,
    handle: impl std::future::Future<Output = Response>,
) -> Response {
    // A bug must cost one request a 500, never the connection or the process.
    let resp = match AssertUnwindSafe(handle).catch_unwind().await {
        Ok(resp) => resp,
        Err(_) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error while handling the request (see the server log)",
        ),
    };
    metrics.request_finished(route, resp.status().as_u16(), start.elapsed());
    resp
}

/// The metrics a request to `path` counts in: those of the model it names
/// (`/v2/models/{m}/...`, `/models/{m}/invocations`, `/v2/repository/models/{m}/...`)
/// or, on `/invocations` and `/predict-image`, of the one model served.
pub(crate) fn model_metrics(state: &Shared, path: &str) -> Arc<ModelMetrics> {
    let named = ["/v2/models/", "/models/", "/v2/repository/models/"]
        .iter()
        .find_map(|p| path.strip_prefix(p))
        .map(|rest| rest.split('/').next().unwrap_or(rest));
    match named {
        Some(name) => state.models.metrics_for(Some(name)),
        None if matches!(path, "/invocations" | "/predict-image") => state.models.metrics_for(None),
        None => state.metrics.unrouted().clone(),
    }
}

/// `GET /health`: the shape the seed documents' health checks read; with many
/// models, `models` lists each with its state.
async fn health(State(state): State<Shared>) -> Response {
    let model = state.models.sole().ok();
    let ready = state.is_ready();
    let loaded = state.models.entries().iter().any(|e| e.model().is_some());
    let mut body = json!({
        "status": if ready { "healthy" } else if loaded { "shutting_down" } else { "loading" },
        "model_loaded": loaded,
        "timestamp": hoist_types::time::rfc3339_now(),
        "version": model.as_ref().map(|m| m.package.version.clone()),
        "model": model.as_ref().map(|m| json!({
            "name": m.package.name,
            "version": m.package.version,
            "digest": m.package.digest,
            "runtime": m.runtime.as_str(),
        })),
    });
    if !state.models.is_single() {
        body["models"] = json!(state.models.index(false));
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found(req: Request) -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        &format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

/// `{"error": message}` with `status`: the Open Inference Protocol's error shape.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    let mut resp = (status, axum::Json(json!({ "error": message }))).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

/// The status an inference error maps to.
pub fn infer_status(e: &InferError) -> StatusCode {
    match e {
        InferError::BadInput(_) => StatusCode::BAD_REQUEST,
        InferError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        InferError::Model(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Reads a request body, turning axum's rejections (too large, broken stream) into
/// clear JSON errors.
pub fn body_or_error(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
    max: usize,
) -> Result<axum::body::Bytes, Response> {
    body.map_err(|r| {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            json_error(
                status,
                &format!("request body is larger than the limit of {max} bytes (--max-body-bytes)"),
            )
        } else {
            json_error(status, &r.body_text())
        }
    })
}
