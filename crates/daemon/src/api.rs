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
use crate::run::ModelHandle;
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
        .route("/api/v1/models", get(models))
        .route("/api/v1/models/{model}/status", get(model_status))
        .route(
            "/api/v1/models/{model}/releases",
            get(model_list).post(model_create),
        )
        .route("/api/v1/models/{model}/releases/{id}", get(model_show))
        .route(
            "/api/v1/models/{model}/releases/{id}/promote",
            post(model_promote),
        )
        .route(
            "/api/v1/models/{model}/releases/{id}/approve",
            post(model_approve),
        )
        .route(
            "/api/v1/models/{model}/releases/{id}/abort",
            post(model_abort),
        )
        .route("/api/v1/models/{model}/rollback", post(model_rollback))
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

/// The model a request is about: the one named in the path (404 naming the models
/// when unknown), or, on the paths without one, the daemon's only model (with
/// several, a 400 naming them).
pub(crate) fn model_of<'a>(
    s: &'a ApiState,
    named: Option<&str>,
) -> Result<&'a ModelHandle, ApiError> {
    let names = || {
        s.models
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match named {
        Some(n) => s.models.iter().find(|m| m.name == n).ok_or_else(|| {
            let shown: String = n.chars().take(64).collect();
            ApiError::not_found(format!(
                "no model `{shown}`; this daemon delivers: {}",
                names()
            ))
        }),
        None if s.models.len() == 1 => Ok(&s.models[0]),
        None => Err(ApiError::bad_request(format!(
            "this daemon delivers several models ({}): use /api/v1/models/{{model}}/... (the CLI: --model)",
            names()
        ))),
    }
}

/// A model name from the path, in the JSON error shape when it is not one.
fn model_path(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(m)| m)
        .map_err(|e| ApiError::bad_request(format!("bad model name: {e}")))
}

/// A (model, release id) path.
fn model_id_path(
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, Result<Path<String>, PathRejection>), ApiError> {
    let Path((m, id)) = p.map_err(|e| ApiError::bad_request(format!("bad path: {e}")))?;
    Ok((m, Ok(Path(id))))
}

async fn status(State(s): State<ApiState>, headers: HeaderMap) -> ApiResult {
    status_of(&s, &headers, None).await
}

async fn model_status(
    State(s): State<ApiState>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let m = model_path(m)?;
    status_of(&s, &headers, Some(&m)).await
}

async fn status_of(s: &ApiState, headers: &HeaderMap, named: Option<&str>) -> ApiResult {
    read_ok(s, headers)?;
    let m = model_of(s, named)?;
    let v = m.client.call(|reply| Cmd::Status { reply }).await?;
    Ok(Json(v).into_response())
}

/// One model as `GET /api/v1/models` shows it.
#[derive(serde::Serialize)]
struct ModelView {
    name: String,
    /// `alias:NAME`, `stage:NAME` or `manual`.
    trigger: String,
    environments: Vec<ModelEnvView>,
    /// Unfinished releases, oldest first.
    active: Vec<hoist_types::api::Release>,
}

#[derive(serde::Serialize)]
struct ModelEnvView {
    name: String,
    /// The version live there, if any.
    live: Option<String>,
}

async fn models(State(s): State<ApiState>, headers: HeaderMap) -> ApiResult {
    read_ok(&s, &headers)?;
    let models = s.models.clone();
    let j = s.journal.clone();
    let views = tokio::task::spawn_blocking(move || {
        models
            .iter()
            .map(|m| {
                let name = m.name.clone();
                let environments = m
                    .config
                    .environments
                    .iter()
                    .map(|e| {
                        Ok(ModelEnvView {
                            name: e.name.clone(),
                            live: j.live(&name, &e.name)?.map(|l| l.version),
                        })
                    })
                    .collect::<Result<Vec<_>, hoist_release::journal::Error>>()?;
                let active = j.active(Some(&name))?.iter().map(|r| r.to_api()).collect();
                let trigger = match &m.config.model.trigger {
                    hoist_release::config::Trigger::Alias(a) => format!("alias:{a}"),
                    hoist_release::config::Trigger::Stage(st) => format!("stage:{st}"),
                    hoist_release::config::Trigger::Manual => "manual".into(),
                };
                Ok(ModelView {
                    name,
                    trigger,
                    environments,
                    active,
                })
            })
            .collect::<Result<Vec<_>, hoist_release::journal::Error>>()
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(serde_json::json!({ "models": views })).into_response())
}

/// Releases of every model, newest first.
async fn list(
    State(s): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    list_of(&s, &headers, q, None).await
}

async fn model_list(
    State(s): State<ApiState>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    let m = model_path(m)?;
    model_of(&s, Some(&m))?;
    list_of(&s, &headers, q, Some(m)).await
}

async fn list_of(
    s: &ApiState,
    headers: &HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
    model: Option<String>,
) -> ApiResult {
    read_ok(s, headers)?;
    let q = query(q)?;
    if let Some(env) = &q.env
        && s.models.iter().all(|m| m.config.environment(env).is_none())
    {
        return Err(ApiError::bad_request(format!("no environment `{env}`")));
    }
    let j = s.journal.clone();
    let rows = tokio::task::spawn_blocking(move || {
        j.list(model.as_deref(), q.env.as_deref(), q.limit.unwrap_or(50))
    })
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
    show_of(&s, &headers, id, None).await
}

async fn model_show(
    State(s): State<ApiState>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let (m, id) = model_id_path(p)?;
    show_of(&s, &headers, id, Some(&m)).await
}

/// Release `id` of the journal; with `model`, it must be that model's (else 404).
fn release_of(
    s: &ApiState,
    id: u64,
    model: Option<&str>,
) -> Result<hoist_release::journal::ReleaseRecord, ApiError> {
    if let Some(m) = model {
        model_of(s, Some(m))?;
    }
    s.journal
        .get(id)
        .ok()
        .filter(|r| model.is_none_or(|m| r.release.model == m))
        .ok_or_else(|| match model {
            Some(m) => ApiError::not_found(format!("no release {id} of model `{m}`")),
            None => ApiError::not_found(format!("no release {id}")),
        })
}

async fn show_of(
    s: &ApiState,
    headers: &HeaderMap,
    id: Result<Path<String>, PathRejection>,
    model: Option<&str>,
) -> ApiResult {
    read_ok(s, headers)?;
    let id = parse_id(id)?;
    let rec = release_of(s, id, model)?;
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

/// A release of the model the body names (`model`), whichever it is.
async fn create(
    State(s): State<ApiState>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult {
    create_of(&s, &headers, bytes, None).await
}

async fn model_create(
    State(s): State<ApiState>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let m = model_path(m)?;
    create_of(&s, &headers, bytes, Some(&m)).await
}

async fn create_of(
    s: &ApiState,
    headers: &HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
    path_model: Option<&str>,
) -> ApiResult {
    authorize(s, headers)?;
    if let Some(m) = path_model {
        model_of(s, Some(m))?;
    }
    let b: CreateRelease = body(bytes)?;
    if b.model.is_empty() {
        return Err(ApiError::bad_request(
            "`model` is required (NAME, NAME/VERSION or NAME@ALIAS)",
        ));
    }
    let r = hoist_registry::ModelRef::parse(&b.model)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(m) = path_model
        && r.name != m
    {
        return Err(ApiError::bad_request(format!(
            "the body names model `{}`, the path `{m}`",
            r.name
        )));
    }
    let Some(m) = s.models.iter().find(|m| m.name == r.name) else {
        let names: Vec<&str> = s.models.iter().map(|m| m.name.as_str()).collect();
        return Err(ApiError::bad_request(if names.len() == 1 {
            format!(
                "this daemon delivers model `{}`, not `{}`",
                names[0], r.name
            )
        } else {
            format!(
                "this daemon delivers models {}, not `{}`",
                names.join(", "),
                r.name
            )
        }));
    };
    if let Some(env) = &b.env
        && m.config.environment(env).is_none()
    {
        return Err(ApiError::bad_request(format!(
            "no environment `{env}` for model `{}`",
            m.name
        )));
    }
    let client = m.client.clone();
    let sel = b.model.clone();
    let v = resolve(s, r, &sel).await?;
    let req = CreateRequest {
        version: v.version,
        env: b.env,
        supersede: b.supersede,
        trigger: format!("api: {sel}"),
        breaking_change: b.breaking_change,
    };
    let rec = client.call(|reply| Cmd::Create { req, reply }).await??;
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

/// An operator event for release `id`, sent to its model's engine.
async fn operator(s: &ApiState, id: u64, event: Event, model: Option<&str>) -> ApiResult {
    let rec = release_of(s, id, model)?;
    let m = model_of(s, Some(&rec.release.model))?;
    let rec = m
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
    promote_of(&s, &headers, id, bytes, None).await
}

async fn model_promote(
    State(s): State<ApiState>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let (m, id) = model_id_path(p)?;
    promote_of(&s, &headers, id, bytes, Some(&m)).await
}

async fn promote_of(
    s: &ApiState,
    headers: &HeaderMap,
    id: Result<Path<String>, PathRejection>,
    bytes: Result<Bytes, BytesRejection>,
    model: Option<&str>,
) -> ApiResult {
    authorize(s, headers)?;
    let id = parse_id(id)?;
    let b: Promote = body(bytes)?;
    operator(s, id, Event::Promote { full: b.full }, model).await
}

async fn approve(
    State(s): State<ApiState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    authorize(&s, &headers)?;
    let id = parse_id(id)?;
    operator(&s, id, Event::Approve, None).await
}

async fn model_approve(
    State(s): State<ApiState>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    authorize(&s, &headers)?;
    let (m, id) = model_id_path(p)?;
    let id = parse_id(id)?;
    operator(&s, id, Event::Approve, Some(&m)).await
}

async fn abort(
    State(s): State<ApiState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult {
    abort_of(&s, &headers, id, bytes, None).await
}

async fn model_abort(
    State(s): State<ApiState>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let (m, id) = model_id_path(p)?;
    abort_of(&s, &headers, id, bytes, Some(&m)).await
}

async fn abort_of(
    s: &ApiState,
    headers: &HeaderMap,
    id: Result<Path<String>, PathRejection>,
    bytes: Result<Bytes, BytesRejection>,
    model: Option<&str>,
) -> ApiResult {
    authorize(s, headers)?;
    let id = parse_id(id)?;
    let b: Abort = body(bytes)?;
    let reason = b.reason.unwrap_or_else(|| "aborted by an operator".into());
    operator(s, id, Event::Abort { reason }, model).await
}

async fn rollback(
    State(s): State<ApiState>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult {
    rollback_of(&s, &headers, bytes, None).await
}

async fn model_rollback(
    State(s): State<ApiState>,
    headers: HeaderMap,
    m: Result<Path<String>, PathRejection>,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let m = model_path(m)?;
    rollback_of(&s, &headers, bytes, Some(&m)).await
}

async fn rollback_of(
    s: &ApiState,
    headers: &HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
    named: Option<&str>,
) -> ApiResult {
    authorize(s, headers)?;
    let m = model_of(s, named)?;
    let b: Rollback = body(bytes)?;
    // A version to go back to must exist before anything is aborted for it.
    if let Some(to) = &b.to {
        if to.is_empty() {
            return Err(ApiError::bad_request("`to` is empty: name a version"));
        }
        let r = hoist_registry::ModelRef {
            name: m.name.clone(),
            selector: hoist_registry::Selector::Version(to.clone()),
        };
        let sel = format!("{}/{to}", m.name);
        resolve(s, r, &sel).await?;
    }
    let rec = m
        .client
        .call(|reply| Cmd::Rollback {
            env: b.env,
            to: b.to,
            reply,
        })
        .await??;
    Ok(Json(rec.to_api()).into_response())
}

/// The document names this daemon's models and environments (as examples and enums)
/// to whoever may read; to others (reads need the token beyond loopback) it is the
/// generic one.
async fn openapi(State(s): State<ApiState>, headers: HeaderMap) -> Response {
    let doc = if read_ok(&s, &headers).is_ok() {
        let mut envs: Vec<String> = Vec::new();
        for e in s.models.iter().flat_map(|m| &m.config.environments) {
            if !envs.contains(&e.name) {
                envs.push(e.name.clone());
            }
        }
        let models: Vec<String> = s.models.iter().map(|m| m.name.clone()).collect();
        openapi::document(&models, &envs)
    } else {
        openapi::document(&["MODEL".into()], &[])
    };
    Json(doc).into_response()
}
