//! The daemon's HTTP API (JSON). Reads are open when the API listens on loopback;
//! everything that changes something needs `Authorization: Bearer <token>`.
//! `GET /api/v1/openapi.json` describes it.

mod openapi;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hoist_release::Event;
use hoist_release::config::Config;
use hoist_release::journal::Journal;
use subtle::ConstantTimeEq;

use crate::EngineClient;
use crate::engine::{ApiError, Cmd, CreateRequest};
use crate::views::ToApi;
use hoist_types::ErrorCode;
use hoist_types::api::{
    Abort, CreateRelease, ListQuery, Promote, ReleaseDetail, ReleaseList, ReleaseSummary, Rollback,
};

#[derive(Clone)]
pub struct ApiState {
    pub client: EngineClient,
    pub journal: Arc<Journal>,
    /// Read again when its file is rotated.
    pub token: hoist_types::Secret,
    pub reads_need_token: bool,
    pub config: Arc<Config>,
    pub registry: Arc<dyn hoist_registry::Registry>,
    /// The live stream, the traffic history (the dashboard's reads).
    pub live: crate::dashboard::Live,
    /// Every model's engine, in hoist.toml's order (`client` and `config` are the
    /// first's).
    pub models: Vec<crate::run::ModelHandle>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, Json(serde_json::json!({ "error": self }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

type ApiResult = Result<Response, ApiError>;

fn authorize(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    // The scheme name is case-insensitive (RFC 9110 11.1).
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, t)| t.trim());
    if !given.is_empty() && bool::from(given.as_bytes().ct_eq(state.token.get().as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Unauthorized,
            "this call needs the daemon's token: `Authorization: Bearer <token>` (the CLI reads HOIST_ADMIN_TOKEN, HOIST_ADMIN_TOKEN_FILE or HOIST_HOME/daemon/token)",
        ))
    }
}

pub(crate) fn read_ok(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    if state.reads_need_token {
        authorize(state, headers)
    } else {
        Ok(())
    }
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/status", get(status))
        .route("/api/v1/releases", get(list).post(create))
        .route("/api/v1/releases/{id}", get(show))
        .route("/api/v1/releases/{id}/promote", post(promote))
        .route("/api/v1/releases/{id}/approve", post(approve))
        .route("/api/v1/releases/{id}/abort", post(abort))
        .route("/api/v1/rollback", post(rollback))
        .merge(crate::dashboard::routes())
        .fallback(|| async {
            ApiError::not_found("no such API endpoint; see /api/v1/openapi.json")
        })
        // axum keeps the `Allow` header it computed on this answer.
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "this endpoint does not take that method; see /api/v1/openapi.json",
            )
        })
        .with_state(state)
}

/// A release id from the path: a positive number (anything else is a 400, however
/// it failed to be one).
fn parse_id(id: Result<Path<String>, PathRejection>) -> Result<u64, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::bad_request(format!("bad release id: {e}")))?;
    let shown: String = id.chars().take(64).collect();
    match id.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "`{shown}` is not a release id (a positive number)"
        ))),
    }
}

/// The query, or a 400 with the JSON error shape (axum's own rejection is plain text).
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))
}

/// The body bytes, or why there are none (too large: 413), in the JSON error shape.
fn bytes(b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(ErrorCode::PayloadTooLarge, e.body_text())
        } else {
            ApiError::bad_request(format!("cannot read the body: {}", e.body_text()))
        }
    })
}

/// Parse a JSON body leniently: an empty body is `{}`; a bad one is a 400 naming why.
fn body<T: serde::de::DeserializeOwned + Default>(
    b: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = bytes(b)?;
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

async fn status(State(s): State<ApiState>, headers: HeaderMap) -> ApiResult {
    read_ok(&s, &headers)?;
    let v = s.client.call(|reply| Cmd::Status { reply }).await?;
    Ok(Json(v).into_response())
}

async fn list(
    State(s): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    read_ok(&s, &headers)?;
    let q = query(q)?;
    if let Some(env) = &q.env
        && s.config.environment(env).is_none()
    {
        return Err(ApiError::bad_request(format!("no environment `{env}`")));
    }
    let j = s.journal.clone();
    let rows =
        tokio::task::spawn_blocking(move || j.list(None, q.env.as_deref(), q.limit.unwrap_or(50)))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::internal(e.to_string()))?;
    let releases = rows
        .iter()
        .map(|r| ReleaseSummary {
            release: r.to_api(),
            summary: r.release.describe(),
        })
        .collect();
    Ok(Json(ReleaseList { releases }).into_response())
}

async fn show(
    State(s): State<ApiState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    read_ok(&s, &headers)?;
    let id = parse_id(id)?;
    let rec = s
        .journal
        .get(id)
        .map_err(|_| ApiError::not_found(format!("no release {id}")))?;
    let transitions = s
        .journal
        .transitions(id)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let detail = ReleaseDetail {
        release: rec.to_api(),
        summary: rec.release.describe(),
        progress: rec.release.progress(),
        transitions: transitions.iter().map(ToApi::to_api).collect(),
    };
    Ok(Json(detail).into_response())
}

async fn create(
    State(s): State<ApiState>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult {
    authorize(&s, &headers)?;
    let b: CreateRelease = body(bytes)?;
    if b.model.is_empty() {
        return Err(ApiError::bad_request(
            "`model` is required (NAME, NAME/VERSION or NAME@ALIAS)",
        ));
    }
    let r = hoist_registry::ModelRef::parse(&b.model)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if r.name != s.config.model.name {
        return Err(ApiError::bad_request(format!(
            "this daemon delivers model `{}`, not `{}`",
            s.config.model.name, r.name
        )));
    }
    if let Some(env) = &b.env
        && s.config.environment(env).is_none()
    {
        return Err(ApiError::bad_request(format!("no environment `{env}`")));
    }
    let sel = b.model.clone();
    let v = resolve(&s, r, &sel).await?;
    let req = CreateRequest {
        version: v.version,
        env: b.env,
        supersede: b.supersede,
        trigger: format!("api: {sel}"),
        breaking_change: b.breaking_change,
    };
    let rec = s.client.call(|reply| Cmd::Create { req, reply }).await??;
    Ok((StatusCode::CREATED, Json(rec.to_api())).into_response())
}

/// The registry's version for `r` (`sel` is how the caller named it): 404 when there
/// is none, 502 when the registry cannot answer.
async fn resolve(
    s: &ApiState,
    r: hoist_registry::ModelRef,
    sel: &str,
) -> Result<hoist_registry::ModelVersion, ApiError> {
    let registry = s.registry.clone();
    tokio::task::spawn_blocking(move || registry.resolve(&r))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| match e {
            hoist_registry::Error::Unreachable { .. }
            | hoist_registry::Error::Unauthorized { .. } => {
                ApiError::new(ErrorCode::RegistryUnavailable, e.to_string())
            }
            other => ApiError::not_found(format!("{sel}: {other}")),
        })
}

async fn operator(s: &ApiState, id: u64, event: Event) -> ApiResult {
    let rec = s
        .client
        .call(|reply| Cmd::Operator { id, event, reply })
        .await??;
    Ok(Json(rec.to_api()).into_response())
}

async fn promote(
    State(s): State<ApiState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult {
    authorize(&s, &headers)?;
    let id = parse_id(id)?;
    let b: Promote = body(bytes)?;
    operator(&s, id, Event::Promote { full: b.full }).await
}

async fn approve(
    State(s): State<ApiState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    authorize(&s, &headers)?;
    let id = parse_id(id)?;
    operator(&s, id, Event::Approve).await
}

async fn abort(
    State(s): State<ApiState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult {
    authorize(&s, &headers)?;
    let id = parse_id(id)?;
    let b: Abort = body(bytes)?;
    let reason = b.reason.unwrap_or_else(|| "aborted by an operator".into());
    operator(&s, id, Event::Abort { reason }).await
}

async fn rollback(
    State(s): State<ApiState>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult {
    authorize(&s, &headers)?;
    let b: Rollback = body(bytes)?;
    // A version to go back to must exist before anything is aborted for it.
    if let Some(to) = &b.to {
        if to.is_empty() {
            return Err(ApiError::bad_request("`to` is empty: name a version"));
        }
        let r = hoist_registry::ModelRef {
            name: s.config.model.name.clone(),
            selector: hoist_registry::Selector::Version(to.clone()),
        };
        let sel = format!("{}/{to}", s.config.model.name);
        resolve(&s, r, &sel).await?;
    }
    let rec = s
        .client
        .call(|reply| Cmd::Rollback {
            env: b.env,
            to: b.to,
            reply,
        })
        .await??;
    Ok(Json(rec.to_api()).into_response())
}

/// The document names this daemon's model and environments (as examples and enums)
/// to whoever may read; to others (reads need the token beyond loopback) it is the
/// generic one.
async fn openapi(State(s): State<ApiState>, headers: HeaderMap) -> Response {
    let doc = if read_ok(&s, &headers).is_ok() {
        let envs: Vec<String> = s
            .config
            .environments
            .iter()
            .map(|e| e.name.clone())
            .collect();
        openapi::document(&s.config.model.name, &envs)
    } else {
        openapi::document("MODEL", &[])
    };
    Json(doc).into_response()
}
