//! A release as the API shows it: the journaled record (its plan, phase and outcome),
//! and its transitions (event, actions, phase). The same JSON as the release engine's
//! own types (`hoist_release::machine`), which the daemon converts into these.

use serde::{Deserialize, Serialize};

pub type ReleaseId = u64;

/// What a release will do, fixed when it is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Plan {
    pub envs: Vec<EnvPlan>,
    /// The configured gates run against the candidate in the first environment.
    #[serde(default)]
    pub gates: bool,
    /// Why the release may change the model's inputs or outputs, when marked at deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaking_change: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnvPlan {
    pub name: String,
    pub steps: Vec<PlanStep>,
    pub approval: bool,
    pub analysis: bool,
    pub max_inconclusive_ms: u64,
    #[serde(default)]
    pub failure_limit: u32,
    #[serde(default)]
    pub consecutive_failures: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanStep {
    pub weight: u32,
    /// Percent of stable's requests mirrored to the candidate (a shadow step).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shadow: u32,
    pub pause: StepPause,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StepPause {
    None,
    Ms(u64),
    Manual,
}

/// Where a release is: `{"phase": "step", "index": 1, ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    Queued,
    Fetching,
    Deploying,
    Gating,
    SmokeTesting,
    AwaitingApproval,
    Step {
        index: usize,
        started_ms: u64,
        /// When the pause ends; `None` for a manual pause (waits for promote).
        until_ms: Option<u64>,
        verdict: Option<Verdict>,
        #[serde(default)]
        failures: u32,
        #[serde(default)]
        consecutive: u32,
    },
    Done,
}

/// A judgement of live traffic: `{"verdict": "fail", "reason": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail { reason: String },
    Inconclusive { reason: String },
}

impl Verdict {
    /// `pass`, `fail` or `inconclusive`.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail { .. } => "fail",
            Verdict::Inconclusive { .. } => "inconclusive",
        }
    }
    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Pass => None,
            Verdict::Fail { reason } | Verdict::Inconclusive { reason } => Some(reason),
        }
    }
}

/// How a release ended: `{"outcome": "failed", "reason": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    /// Failed (gate, smoke test, analysis, server) and rolled back.
    Failed {
        reason: String,
    },
    Aborted {
        reason: String,
    },
    Superseded {
        by: ReleaseId,
    },
}

impl Outcome {
    /// The name on the wire: `succeeded`, `failed`, `aborted`, `superseded`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed { .. } => "failed",
            Outcome::Aborted { .. } => "aborted",
            Outcome::Superseded { .. } => "superseded",
        }
    }
}

/// What happened to a release (as journaled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Start,
    Fetched,
    FetchFailed {
        reason: String,
    },
    CandidateReady {
        has_stable: bool,
    },
    CandidateFailed {
        reason: String,
    },
    /// Every gate passed; `reports` holds each gate's numbers.
    GatesPassed {
        reports: serde_json::Value,
    },
    GatesFailed {
        reason: String,
        reports: serde_json::Value,
    },
    SmokePassed,
    SmokeFailed {
        reason: String,
    },
    Approve,
    /// A measurement of live traffic; `numbers` are what it was based on.
    Verdict {
        verdict: Verdict,
        #[serde(default)]
        numbers: serde_json::Value,
    },
    Tick,
    Promote {
        full: bool,
    },
    Abort {
        reason: String,
    },
    Supersede {
        by: ReleaseId,
    },
}

impl Event {
    /// The name on the wire: `verdict`, `gates_passed`, ...
    pub fn name(&self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Fetched => "fetched",
            Event::FetchFailed { .. } => "fetch_failed",
            Event::CandidateReady { .. } => "candidate_ready",
            Event::CandidateFailed { .. } => "candidate_failed",
            Event::GatesPassed { .. } => "gates_passed",
            Event::GatesFailed { .. } => "gates_failed",
            Event::SmokePassed => "smoke_passed",
            Event::SmokeFailed { .. } => "smoke_failed",
            Event::Approve => "approve",
            Event::Verdict { .. } => "verdict",
            Event::Tick => "tick",
            Event::Promote { .. } => "promote",
            Event::Abort { .. } => "abort",
            Event::Supersede { .. } => "supersede",
        }
    }

    /// The event's own `reason`, if it has one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Event::FetchFailed { reason }
            | Event::CandidateFailed { reason }
            | Event::GatesFailed { reason, .. }
            | Event::SmokeFailed { reason }
            | Event::Abort { reason } => Some(reason),
            _ => None,
        }
    }
}

/// What the engine did for a transition (as journaled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Fetch,
    StartCandidate { env: String },
    RunGates { env: String },
    SmokeTest { env: String },
    AwaitApproval { env: String },
    SetWeight { env: String, weight: u32 },
    Mirror { env: String, percent: u32 },
    BeginAnalysis { env: String, step: usize },
    WakeAt { at_ms: u64 },
    PromoteCandidate { env: String },
    StopCandidate { env: String },
    Tag { key: String, value: String },
}

/// A release as journaled: where it is and how it came to be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Release {
    pub id: ReleaseId,
    pub model: String,
    pub version: String,
    pub plan: Plan,
    pub phase: Phase,
    /// Index into `plan.envs` of the environment being worked on.
    pub env: usize,
    /// The candidate's share of traffic there, as last set.
    pub weight: u32,
    /// The share of stable's requests mirrored to the candidate there.
    #[serde(default)]
    pub shadow: u32,
    pub candidate_up: bool,
    pub has_stable: bool,
    pub outcome: Option<Outcome>,
    /// `sha256:…` once fetched and verified.
    pub digest: Option<String>,
    /// Local path of the verified files.
    pub path: Option<String>,
    /// What started it: `alias champion → 3`, `cli`, `api: m/3`, `rollback`.
    pub trigger: String,
    pub created_ms: u64,
    pub updated_ms: u64,
}

impl Release {
    /// Whether it has ended (phase `done`).
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }
}

/// A release in a list: the record and one line about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleaseSummary {
    #[serde(flatten)]
    pub release: Release,
    pub summary: String,
}

/// `GET /api/v1/releases`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleaseList {
    pub releases: Vec<ReleaseSummary>,
}

/// One recorded transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Transition {
    pub seq: u64,
    pub at_ms: u64,
    pub event: Event,
    pub actions: Vec<Action>,
    /// The phase it led to (its name).
    pub phase: String,
}

/// `GET /api/v1/releases/{id}`: the record, how far it is, every transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleaseDetail {
    #[serde(flatten)]
    pub release: Release,
    pub summary: String,
    /// 0..=1, how far through its environments and steps.
    pub progress: f64,
    pub transitions: Vec<Transition>,
}
