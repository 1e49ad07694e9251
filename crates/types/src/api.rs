//! The daemon API's requests and answers (JSON), as the daemon (`hoist up`) sends them
//! and the CLI reads them. Paths and what each answers:
//!
//! | call | body | answer |
//! |---|---|---|
//! | `GET /api/v1/status` | | [`StatusView`] |
//! | `GET /api/v1/releases?env=&limit=` ([`ListQuery`]) | | [`ReleaseList`] |
//! | `GET /api/v1/releases/{id}` | | [`ReleaseDetail`] |
//! | `POST /api/v1/releases` | [`CreateRelease`] | [`Release`] (201) |
//! | `POST /api/v1/releases/{id}/promote` | [`Promote`] | [`Release`] |
//! | `POST /api/v1/releases/{id}/approve` | | [`Release`] |
//! | `POST /api/v1/releases/{id}/abort` | [`Abort`] | [`Release`] |
//! | `POST /api/v1/rollback` | [`Rollback`] | [`Release`] |
//!
//! Every error is an [`ErrorBody`](crate::error::ErrorBody) with an
//! [`ErrorCode`](crate::ErrorCode).

mod numbers;
mod release;
mod status;

pub use numbers::{
    Accuracy, Comparison, Drift, FeedbackNumbers, ShadowNumbers, VerdictNumbers, WindowNumbers,
};

pub use release::{
    Action, EnvPlan, Event, Outcome, Phase, Plan, PlanStep, Release, ReleaseDetail, ReleaseId,
    ReleaseList, ReleaseSummary, StepPause, Transition, Verdict,
};
pub use status::{
    DeliveryFailure, DeploymentView, EnvView, LogLine, NotifyStatus, ReceiverStatus, ReleaseView,
    ServerView, StatusView, VerdictView, WindowView,
};

use serde::{Deserialize, Serialize};

/// The API's paths.
pub mod paths {
    pub const STATUS: &str = "/api/v1/status";
    pub const RELEASES: &str = "/api/v1/releases";
    pub const ROLLBACK: &str = "/api/v1/rollback";
    pub const OPENAPI: &str = "/api/v1/openapi.json";

    /// `/api/v1/releases/{id}`.
    pub fn release(id: u64) -> String {
        format!("{RELEASES}/{id}")
    }

    /// `/api/v1/releases/{id}/{op}` (`promote`, `approve`, `abort`).
    pub fn release_op(id: u64, op: &str) -> String {
        format!("{RELEASES}/{id}/{op}")
    }
}

/// `POST /api/v1/releases`: start a release.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateRelease {
    /// `NAME`, `NAME/VERSION`, `NAME@ALIAS` or `NAME/STAGE`; NAME must be the
    /// daemon's model.
    pub model: String,
    /// Start in this environment (default: every environment, in order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Abort a release in progress for this one.
    #[serde(default)]
    pub supersede: bool,
    /// The version may change the model's inputs or outputs: the signature gate
    /// passes a difference from stable's.
    #[serde(default)]
    pub breaking_change: bool,
}

/// `POST /api/v1/releases/{id}/promote`: end the current pause.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Promote {
    /// Skip to 100%.
    #[serde(default)]
    pub full: bool,
}

/// `POST /api/v1/releases/{id}/abort`: abort and roll back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Abort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /api/v1/rollback`: roll an environment back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// The environment (default: the last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// A version to bring back (default: the previous live one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// The query of `GET /api/v1/releases`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListQuery {
    /// Only releases that go through this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// At most this many (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

#[cfg(test)]
mod tests;
