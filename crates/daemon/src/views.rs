//! What the daemon's API answers and the engine's commands carry: errors, views of
//! environments and releases, log lines.

use std::net::SocketAddr;

use hoist_gateway::VariantStats;
use hoist_release::journal::ReleaseRecord;
use hoist_release::machine::{ReleaseId, Verdict};
use serde::Serialize;

/// An API-facing failure with its HTTP status.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(409, "conflict", message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, "not_found", message)
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "bad_request", message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "internal", message)
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

#[derive(Debug, Clone, Serialize)]
pub struct ServerView {
    pub addr: SocketAddr,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub status: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeploymentView {
    pub version: String,
    pub digest: String,
    pub release_id: ReleaseId,
    pub servers: Vec<ServerView>,
}

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct WindowView {
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Rows labelled through `POST /feedback`, and those predicted right.
    #[serde(default)]
    pub labelled: u64,
    #[serde(default)]
    pub correct: u64,
}

impl WindowView {
    pub fn of(s: &VariantStats) -> WindowView {
        WindowView {
            requests: s.requests,
            errors: s.server_errors + s.upstream_errors,
            error_rate: s.error_rate(),
            p50_ms: s.quantile(0.5).map(|v| v * 1000.0),
            p99_ms: s.quantile(0.99).map(|v| v * 1000.0),
            labelled: s.labelled,
            correct: s.correct,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvView {
    pub name: String,
    pub url: String,
    pub strategy: String,
    pub weight: u32,
    pub stable: Option<DeploymentView>,
    pub candidate: Option<DeploymentView>,
    /// Since the current candidate arrived (or the daemon started).
    pub stable_metrics: WindowView,
    pub candidate_metrics: WindowView,
    /// `local` (hoist's gateway) or `kubernetes`.
    pub target: String,
    /// On a cluster: how the split is made (exact weights or a replica ratio).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReleaseView {
    #[serde(flatten)]
    pub record: ReleaseRecord,
    pub summary: String,
    /// 0..=1, how far through its environments and steps.
    pub progress: f64,
    pub last_verdict: Option<VerdictView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerdictView {
    pub env: String,
    pub step: usize,
    pub verdict: Verdict,
    pub window: WindowView,
    /// Everything the verdict was based on (as journaled).
    pub numbers: serde_json::Value,
    pub at_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    pub model: String,
    pub registry: String,
    pub environments: Vec<EnvView>,
    pub active: Vec<ReleaseView>,
    /// Deliveries of release events to the configured receivers.
    pub notifications: crate::notify::NotifyStatus,
}

/// A line of progress for people watching the daemon.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub at_ms: u64,
    pub release: Option<ReleaseId>,
    pub message: String,
}
