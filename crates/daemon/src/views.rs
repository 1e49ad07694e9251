//! What the daemon's API answers and the engine's commands carry: errors, views of
//! environments and releases, log lines. The views are the API's types
//! ([`hoist_types::api`], shared with the CLI); [`ToApi`] converts the release
//! engine's own types into them.

mod convert;

use hoist_gateway::VariantStats;
use hoist_types::ErrorCode;
use serde::Serialize;

pub use convert::ToApi;
pub use hoist_types::api::{
    DeploymentView, EnvView, LogLine, ReleaseView, ServerView, StatusView, VerdictView, WindowView,
};

/// An API-facing failure: its code (and so its HTTP status) and a message.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    /// The code's HTTP status.
    #[serde(skip)]
    pub status: u16,
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status: code.status(),
            code,
            message: message.into(),
        }
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Conflict, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, message)
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::BadRequest, message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Internal, message)
    }
    pub fn shutting_down() -> ApiError {
        ApiError::new(ErrorCode::ShuttingDown, "the daemon is stopping")
    }
}

/// A new release, as asked for.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub version: String,
    pub env: Option<String>,
    pub supersede: bool,
    pub trigger: String,
    /// Marked a breaking change at deploy (`hoist deploy --breaking-change`).
    pub breaking_change: bool,
}

/// A window of a gateway's counters, as the API shows it.
pub trait WindowOf {
    fn of(s: &VariantStats) -> WindowView;
}

impl WindowOf for WindowView {
    fn of(s: &VariantStats) -> WindowView {
        WindowView {
            requests: s.requests,
            errors: s.server_errors + s.upstream_errors,
            error_rate: s.error_rate(),
            p50_ms: s.quantile(0.5).map(|v| v * 1000.0),
            p99_ms: s.quantile(0.99).map(|v| v * 1000.0),
            labelled: s.labelled,
            correct: s.correct,
            latency_buckets: s.latency_buckets.clone(),
        }
    }
}
