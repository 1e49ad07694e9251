//! The daemon's HTTP API (JSON). Reads are open when the API listens on loopback;
//! everything that changes something needs `Authorization: Bearer <token>`.
//! `GET /api/v1/openapi.json` describes it.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hoist_release::Event;
use hoist_release::config::Config;
use hoist_release::journal::Journal;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::EngineClient;
use super::engine::{ApiError, Cmd, CreateRequest};

#[derive(Clone)]
pub struct ApiState {
    pub client: EngineClient,
    pub journal: Arc<Journal>,
    pub token: String,
    pub reads_need_token: bool,
    pub config: Arc<Config>,
    pub registry: Arc<dyn hoist_registry::Registry>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(serde_json::json!({ "error": self }))).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn authorize(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !given.is_empty() && bool::from(given.as_bytes().ct_eq(state.token.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::new(
            401,
            "unauthorized",
            "this call needs the daemon's token: `Authorization: Bearer <token>` (the CLI reads HOIST_ADMIN_TOKEN, HOIST_ADMIN_TOKEN_FILE or HOIST_HOME/daemon/token)",
        ))
    }
}

fn read_ok(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
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
        .fallback(|| async {
            ApiError::not_found("no such API endpoint; see /api/v1/openapi.json")
        })
        .with_state(state)
}

fn parse_id(id: &str) -> Result<u64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::bad_request(format!("`{id}` is not a release id (a number)")))
}

/// Parse a JSON body leniently: an empty body is `{}`; a bad one is a 400 naming why.
fn body<T: serde::de::DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

async fn status(State(s): State<ApiState>, headers: HeaderMap) -> ApiResult {
    read_ok(&s, &headers)?;
    let v = s.client.call(|reply| Cmd::Status { reply }).await?;
    Ok(Json(v).into_response())
}

#[derive(Deserialize, Default)]
struct ListQuery {
    env: Option<String>,
    limit: Option<usize>,
}

async fn list(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    read_ok(&s, &headers)?;
    if let Some(env) = &q.env
        && s.config.environment(env).is_none()
    {
        return Err(ApiError::bad_request(format!("no environment `{env}`")));
    }
    let j = s.journal.clone();
    let rows = tokio::task::spawn_blocking(move || j.list(q.env.as_deref(), q.limit.unwrap_or(50)))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let rows: Vec<_> = rows
        .into_iter()
        .map(|r| {
            let summary = r.release.describe();
            let mut v = serde_json::to_value(&r).unwrap_or_default();
            v["summary"] = summary.into();
            v
        })
        .collect();
    Ok(Json(serde_json::json!({ "releases": rows })).into_response())
}

async fn show(State(s): State<ApiState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    read_ok(&s, &headers)?;
    let id = parse_id(&id)?;
    let rec = s
        .journal
        .get(id)
        .map_err(|_| ApiError::not_found(format!("no release {id}")))?;
    let transitions = s
        .journal
        .transitions(id)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let summary = rec.release.describe();
    let progress = rec.release.progress();
    let mut v = serde_json::to_value(&rec).unwrap_or_default();
    v["summary"] = summary.into();
    v["progress"] = progress.into();
    v["transitions"] = serde_json::to_value(transitions).unwrap_or_default();
    Ok(Json(v).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    /// `NAME`, `NAME/VERSION`, `NAME@ALIAS` or `NAME/STAGE`; NAME must be the
    /// pipeline's model.
    model: String,
    env: Option<String>,
    #[serde(default)]
    supersede: bool,
    /// The version may change the model's inputs or outputs: the signature gate
    /// passes a difference from stable's.
    #[serde(default)]
    breaking_change: bool,
}

async fn create(
    State(s): State<ApiState>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> ApiResult {
    authorize(&s, &headers)?;
    let b: CreateBody = body(&bytes)?;
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
    let registry = s.registry.clone();
    let sel = b.model.clone();
    let v = tokio::task::spawn_blocking(move || registry.resolve(&r))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| match e {
            hoist_registry::Error::Unreachable { .. }
            | hoist_registry::Error::Unauthorized { .. } => {
                ApiError::new(502, "registry_unavailable", e.to_string())
            }
            other => ApiError::not_found(format!("{sel}: {other}")),
        })?;
    let req = CreateRequest {
        version: v.version,
        env: b.env,
        supersede: b.supersede,
        trigger: format!("api: {sel}"),
        breaking_change: b.breaking_change,
    };
    let rec = s.client.call(|reply| Cmd::Create { req, reply }).await??;
    Ok((StatusCode::CREATED, Json(rec)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PromoteBody {
    #[serde(default)]
    full: bool,
}

async fn operator(s: &ApiState, id: &str, event: Event) -> ApiResult {
    let id = parse_id(id)?;
    let rec = s
        .client
        .call(|reply| Cmd::Operator { id, event, reply })
        .await??;
    Ok(Json(rec).into_response())
}

async fn promote(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult {
    authorize(&s, &headers)?;
    let b: PromoteBody = body(&bytes)?;
    operator(&s, &id, Event::Promote { full: b.full }).await
}

async fn approve(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    authorize(&s, &headers)?;
    operator(&s, &id, Event::Approve).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AbortBody {
    reason: Option<String>,
}

async fn abort(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult {
    authorize(&s, &headers)?;
    let b: AbortBody = body(&bytes)?;
    let reason = b.reason.unwrap_or_else(|| "aborted by an operator".into());
    operator(&s, &id, Event::Abort { reason }).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    env: Option<String>,
    to: Option<String>,
}

async fn rollback(
    State(s): State<ApiState>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> ApiResult {
    authorize(&s, &headers)?;
    let b: RollbackBody = body(&bytes)?;
    let rec = s
        .client
        .call(|reply| Cmd::Rollback {
            env: b.env,
            to: b.to,
            reply,
        })
        .await??;
    Ok(Json(rec).into_response())
}

async fn openapi() -> Response {
    ([("content-type", "application/json")], OPENAPI).into_response()
}

const OPENAPI: &str = r##"{
  "openapi": "3.1.0",
  "info": { "title": "hoist daemon API", "version": "1" },
  "components": {
    "securitySchemes": { "token": { "type": "http", "scheme": "bearer" } },
    "schemas": {
      "Error": { "type": "object", "properties": { "error": { "type": "object", "properties": { "code": { "type": "string" }, "message": { "type": "string" } } } } },
      "Release": { "type": "object", "description": "A release: id, model, version, plan, phase, env, weight, outcome, digest, path, trigger, created_ms, updated_ms" }
    }
  },
  "paths": {
    "/api/v1/status": { "get": { "summary": "Environments (stable, candidate, weight, live metrics) and active releases", "responses": { "200": { "description": "status" } } } },
    "/api/v1/releases": {
      "get": { "summary": "Releases, newest first", "parameters": [ { "name": "env", "in": "query", "schema": { "type": "string" } }, { "name": "limit", "in": "query", "schema": { "type": "integer" } } ], "responses": { "200": { "description": "{ releases: [Release] }" } } },
      "post": { "summary": "Start a release", "security": [ { "token": [] } ],
        "requestBody": { "content": { "application/json": { "schema": { "type": "object", "required": ["model"], "properties": { "model": { "type": "string", "description": "NAME, NAME/VERSION, NAME@ALIAS or NAME/STAGE" }, "env": { "type": "string" }, "supersede": { "type": "boolean" }, "breaking_change": { "type": "boolean", "description": "the version may change inputs or outputs: the signature gate passes a difference" } } } } } },
        "responses": { "201": { "description": "Release" }, "400": { "description": "Error" }, "401": { "description": "Error" }, "404": { "description": "Error" }, "409": { "description": "another release is mid-rollout, or the version is already live" } } }
    },
    "/api/v1/releases/{id}": { "get": { "summary": "One release with every transition", "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } } ], "responses": { "200": { "description": "Release + transitions" }, "404": { "description": "Error" } } } },
    "/api/v1/releases/{id}/promote": { "post": { "summary": "End the current pause (full: skip to 100%)", "security": [ { "token": [] } ], "requestBody": { "content": { "application/json": { "schema": { "type": "object", "properties": { "full": { "type": "boolean" } } } } } }, "responses": { "200": { "description": "Release" }, "409": { "description": "Error" } } } },
    "/api/v1/releases/{id}/approve": { "post": { "summary": "Approve a release waiting for approval", "security": [ { "token": [] } ], "responses": { "200": { "description": "Release" }, "409": { "description": "Error" } } } },
    "/api/v1/releases/{id}/abort": { "post": { "summary": "Abort and roll back", "security": [ { "token": [] } ], "requestBody": { "content": { "application/json": { "schema": { "type": "object", "properties": { "reason": { "type": "string" } } } } } }, "responses": { "200": { "description": "Release" }, "409": { "description": "Error" } } } },
    "/api/v1/rollback": { "post": { "summary": "Roll an environment back: abort its release, or bring back the previous (or a given) live version", "security": [ { "token": [] } ], "requestBody": { "content": { "application/json": { "schema": { "type": "object", "properties": { "env": { "type": "string" }, "to": { "type": "string" } } } } } }, "responses": { "200": { "description": "Release" }, "400": { "description": "Error" }, "409": { "description": "Error" } } } }
  }
}
"##;
