//! The engine's inbox: every request (API, triggers) and every result of a long action
//! (fetch, candidate start, gates, smoke test, analysis, timers, targets) arrives as one
//! [`Cmd`] on one channel, so transitions happen one at a time, in order.
//!
//! This module imports nothing of the engine or of the targets: both send to it.

use std::path::PathBuf;

use hoist_release::journal::ReleaseRecord;
use hoist_release::machine::{Event, ReleaseId, Verdict};
use hoist_targets::Supervised;
use tokio::sync::{mpsc, oneshot};

use crate::views::{ApiError, CreateRequest, StatusView, WindowView};

/// What a started candidate is made of: its local servers, or its place in a shared
/// server (`[server] pack`); nothing on a cluster, whose pods the cluster keeps.
#[derive(Default)]
pub struct Started {
    pub servers: Vec<Supervised>,
    pub packed: Option<crate::target::pack::Packed>,
}

impl Started {
    pub fn own(servers: Vec<Supervised>) -> Started {
        Started {
            servers,
            packed: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.packed.is_none()
    }
}

pub enum Cmd {
    Create {
        req: CreateRequest,
        reply: oneshot::Sender<Result<ReleaseRecord, ApiError>>,
    },
    /// An operator event (promote, approve, abort).
    Operator {
        id: ReleaseId,
        event: Event,
        reply: oneshot::Sender<Result<ReleaseRecord, ApiError>>,
    },
    Rollback {
        env: Option<String>,
        to: Option<String>,
        reply: oneshot::Sender<Result<ReleaseRecord, ApiError>>,
    },
    Status {
        reply: oneshot::Sender<StatusView>,
    },
    /// A promotion seen in the registry.
    Promotion {
        version: String,
        trigger: String,
    },
    /// Where the trigger points, looked up after a release with a promotion waiting.
    TriggerPoints {
        version: String,
        desc: String,
    },
    Fetched {
        id: ReleaseId,
        result: Result<(String, PathBuf), String>,
    },
    /// The environment's `[policy]` checked (and the model artifact resolved)
    /// before its candidate starts, or why it is refused.
    PolicyChecked {
        id: ReleaseId,
        env: String,
        result: Result<crate::policy::Checked, String>,
    },
    CandidateStarted {
        id: ReleaseId,
        env: String,
        result: Result<Started, String>,
    },
    Smoke {
        id: ReleaseId,
        env: String,
        result: Result<(), String>,
    },
    Verdict {
        id: ReleaseId,
        env: String,
        step: usize,
        verdict: Verdict,
        window: WindowView,
        /// Everything the verdict was based on (journaled with it).
        numbers: serde_json::Value,
    },
    Tick {
        id: ReleaseId,
    },
    /// An operation of a release failed on its target (a cluster).
    TargetFailed {
        id: ReleaseId,
        env: String,
        reason: String,
    },
    Gates {
        id: ReleaseId,
        result: Result<Vec<crate::gates::GateReport>, (String, Vec<crate::gates::GateReport>)>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// A handle to send commands to the engine.
#[derive(Clone)]
pub struct EngineClient {
    pub tx: mpsc::Sender<Cmd>,
}

impl EngineClient {
    pub async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Cmd,
    ) -> Result<T, ApiError> {
        let stopping = ApiError::shutting_down;
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| stopping())?;
        rx.await.map_err(|_| stopping())
    }
}
