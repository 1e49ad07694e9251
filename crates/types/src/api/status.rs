//! `GET /api/v1/status`: each environment (stable, candidate, weight, live metrics),
//! the releases in progress, and the daemon's notification deliveries; and the log
//! lines `hoist up` prints.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::release::{Release, ReleaseId, Verdict};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerView {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub addr: SocketAddr,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentView {
    pub version: String,
    pub digest: String,
    pub release_id: ReleaseId,
    pub servers: Vec<ServerView>,
}

/// A variant's traffic over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Per-bucket counts of the window's latencies over the gateway's bounds, then
    /// `+Inf` (`hoist_gateway::LATENCY_BUCKETS`): in-process only, for the
    /// dashboard's per-interval percentiles; never serialized (empty where the
    /// numbers come from elsewhere).
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub latency_buckets: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnvView {
    pub name: String,
    pub url: String,
    /// `canary` or `blue-green`.
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
}

/// A release in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleaseView {
    #[serde(flatten)]
    pub release: Release,
    pub summary: String,
    /// 0..=1, how far through its environments and steps.
    pub progress: f64,
    pub last_verdict: Option<VerdictView>,
}

/// The latest judgement of a release's live traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerdictView {
    pub env: String,
    pub step: usize,
    pub verdict: Verdict,
    pub window: WindowView,
    /// Everything the verdict was based on (as journaled).
    pub numbers: serde_json::Value,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusView {
    pub model: String,
    pub registry: String,
    pub environments: Vec<EnvView>,
    pub active: Vec<ReleaseView>,
    /// Deliveries of release events to the configured receivers.
    pub notifications: NotifyStatus,
}

/// Deliveries of release events, summed over the receivers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotifyStatus {
    /// Deliveries a receiver accepted (2xx).
    pub sent: u64,
    /// Deliveries given up on (permanent refusal, or the attempts spent).
    pub failed: u64,
    /// Events dropped because a receiver's queue was full.
    pub dropped: u64,
    /// Events waiting or being delivered.
    pub queued: u64,
    /// The same counters for each receiver, in hoist.toml's order.
    pub receivers: Vec<ReceiverStatus>,
    /// The latest failed deliveries, newest last.
    pub failures: Vec<DeliveryFailure>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceiverStatus {
    /// The receiver's URL, without credentials, query or (Slack) secret path.
    pub url: String,
    /// `json` or `slack`.
    pub kind: String,
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
    pub queued: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryFailure {
    pub url: String,
    pub event: String,
    pub release: ReleaseId,
    pub attempts: u32,
    /// Why the last attempt failed.
    pub error: String,
    /// When it was given up on, milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// A line of progress for people watching the daemon (`hoist up` prints them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLine {
    pub at_ms: u64,
    pub release: Option<ReleaseId>,
    pub message: String,
}
