//! The release driver: one task that owns every release's state and each
//! environment's view of what serves. It feeds events to the pure state machine
//! (`hoist_release::machine`), journals each transition, then performs its actions
//! through the environment's [`EnvTarget`]; long actions (fetch, start servers, smoke
//! tests, gates, analysis, timers) run in their own tasks and report back through the
//! same command channel ([`Cmd`]), so transitions happen one at a time, in order.
//!
//! | file | concern |
//! |---|---|
//! | `handle.rs` | the command handler: results of actions become machine events |
//! | `perform.rs` | an action of a journaled transition, performed |
//! | `releases.rs` | creating releases: deploy, promotions from the registry, rollback |
//! | `recover.rs` | after a restart: live versions, pending tags, unfinished releases |
//! | `notify.rs` | what a transition means for people (notifications) |
//! | `status.rs` | `hoist status` |
//!
//! # Guarantees
//!
//! A transition is journaled before any of its actions is performed; a kill between
//! the two (see [`crate::failpoint`]) is repaired by [`Engine::recover`] on the same
//! journal: unfinished releases resume (`machine::resume`; a resumed release's
//! gates, smoke test and analysis wait until its candidate runs again) and registry
//! tags not confirmed written are written again (`Journal::pending_tags`).
//!
//! # Caveats
//!
//! Notifications are queued when their transition is journaled, before its actions;
//! they are not journaled themselves, so a process killed before the notifier
//! delivered them loses them (`tests/failpoints.rs` kills the engine, not the
//! notifier's task).

mod handle;
mod notify;
mod perform;
mod recover;
mod releases;
mod status;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use hoist_registry::Registry;
use hoist_release::config::{Config, Environment};
use hoist_release::journal::{Journal, ReleaseRecord};
use hoist_release::machine::{self, Event, Release, ReleaseId};
use tokio::sync::{broadcast, mpsc};
use tokio::task::AbortHandle;

use crate::clock::Clock;
use crate::failpoint::{FailPoint, FailPoints, action_kind};
use crate::target::EnvTarget;

pub use crate::clock::now_ms;
pub use crate::cmd::Cmd;
pub use crate::gates::BREAKING_CHANGE_TAG;
pub use crate::views::*;

/// One version in one environment, as the engine knows it (the servers or pods are
/// the target's).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Deployment {
    version: String,
    digest: String,
    release_id: ReleaseId,
}

/// One environment: its configuration, its target, and what serves there.
struct EnvState {
    cfg: Environment,
    target: Box<dyn EnvTarget>,
    stable: Option<Deployment>,
    candidate: Option<Deployment>,
    /// The candidate's share of traffic as last set.
    weight: u32,
}

pub struct Engine {
    cfg: Arc<Config>,
    journal: Arc<Journal>,
    registry: Arc<dyn Registry>,
    base_dir: PathBuf,
    envs: Vec<EnvState>,
    active: BTreeMap<ReleaseId, Release>,
    /// A promotion was refused while a release was mid-rollout (or a release was
    /// resumed at start): look at the trigger again when no release is active.
    promotion_waiting: bool,
    analysis: BTreeMap<ReleaseId, AbortHandle>,
    verdicts: BTreeMap<ReleaseId, VerdictView>,
    tx: mpsc::Sender<Cmd>,
    log: broadcast::Sender<LogLine>,
    http: reqwest::Client,
    /// When the event being applied arrived (to report how fast a rollback took effect).
    decided: std::time::Instant,
    notifier: crate::notify::Notifier,
    /// What "now" is for the machine and its timers.
    clock: Arc<dyn Clock>,
    /// Where a test may kill the engine.
    failpoints: FailPoints,
    /// A failure point fired: the engine acts no more, as a killed process.
    killed: bool,
    /// Actions of a resumed release that need its candidate: performed once the
    /// candidate runs again (gates, the smoke test and analysis cannot reach a
    /// candidate that is still starting).
    deferred: BTreeMap<ReleaseId, Vec<machine::Action>>,
    /// The live stream (`GET /api/v1/events`): each journaled transition and verdict.
    events: crate::events::Events,
}

/// Everything [`Engine::new`] needs.
pub struct EngineParts {
    pub cfg: Arc<Config>,
    pub journal: Arc<Journal>,
    pub registry: Arc<dyn Registry>,
    /// Relative paths in hoist.toml (gate files) start here.
    pub base_dir: PathBuf,
    /// Each environment and where it runs, in the config's order.
    pub targets: Vec<(Environment, Box<dyn EnvTarget>)>,
    pub tx: mpsc::Sender<Cmd>,
    pub log: broadcast::Sender<LogLine>,
    pub notifier: crate::notify::Notifier,
    pub clock: Arc<dyn Clock>,
    pub failpoints: FailPoints,
}

pub use crate::artifact::{fetch, http_client};
pub use crate::log::say;

impl Engine {
    pub fn new(p: EngineParts) -> Engine {
        let envs = p
            .targets
            .into_iter()
            .map(|(cfg, target)| EnvState {
                cfg,
                target,
                stable: None,
                candidate: None,
                weight: 0,
            })
            .collect();
        Engine {
            cfg: p.cfg,
            journal: p.journal,
            registry: p.registry,
            base_dir: p.base_dir,
            envs,
            active: BTreeMap::new(),
            promotion_waiting: false,
            analysis: BTreeMap::new(),
            verdicts: BTreeMap::new(),
            tx: p.tx,
            log: p.log,
            http: http_client(),
            decided: std::time::Instant::now(),
            notifier: p.notifier,
            clock: p.clock,
            failpoints: p.failpoints,
            killed: false,
            deferred: BTreeMap::new(),
            events: Default::default(),
        }
    }

    /// Tell `events` (the stream engines of other models share) what this engine does.
    pub fn with_events(mut self, events: crate::events::Events) -> Engine {
        self.events = events;
        self
    }

    /// Where this engine tells the live stream what it does.
    pub fn events(&self) -> crate::events::Events {
        self.events.clone()
    }

    fn say(&self, release: Option<ReleaseId>, message: String) {
        say(&self.log, release, message);
    }

    fn env_mut(&mut self, name: &str) -> Option<&mut EnvState> {
        self.envs.iter_mut().find(|e| e.cfg.name == name)
    }

    fn env(&self, name: &str) -> Option<&EnvState> {
        self.envs.iter().find(|e| e.cfg.name == name)
    }

    /// Take commands until shutdown (or until a failure point kills the engine).
    pub async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        while !self.killed
            && let Some(cmd) = rx.recv().await
        {
            match cmd {
                Cmd::Shutdown { reply } => {
                    self.shutdown().await;
                    let _ = reply.send(());
                    return;
                }
                other => self.handle(other),
            }
        }
        if !self.killed {
            self.shutdown().await;
        }
    }

    /// Whether a failure point killed the engine.
    pub fn is_killed(&self) -> bool {
        self.killed
    }

    async fn shutdown(&mut self) {
        for h in self.analysis.values() {
            h.abort();
        }
        futures_util::future::join_all(self.envs.iter_mut().map(|e| e.target.stop())).await;
    }

    /// A failure point fired: stop as a killed process would (timers and analysis
    /// die with it; servers are left as they are).
    fn kill(&mut self, point: FailPoint) {
        tracing::warn!("failure point {point:?}: the engine stops here");
        for h in self.analysis.values() {
            h.abort();
        }
        self.killed = true;
    }

    fn is_phase(&self, id: ReleaseId, f: impl Fn(&machine::Phase) -> bool) -> bool {
        self.active.get(&id).is_some_and(|r| f(&r.phase))
    }

    fn env_of(&self, id: ReleaseId) -> Option<String> {
        self.active.get(&id).map(|r| r.env_name().to_string())
    }

    fn record(&self, id: ReleaseId) -> Result<ReleaseRecord, ApiError> {
        self.journal
            .get(id)
            .map_err(|e| ApiError::internal(e.to_string()))
    }

    /// Feed one event to a release: step the machine, journal, perform.
    fn apply(&mut self, id: ReleaseId, event: Event) -> Result<Release, ApiError> {
        if self.killed {
            return Err(ApiError::shutting_down());
        }
        self.decided = std::time::Instant::now();
        let r = self
            .active
            .get(&id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no active release {id}")))?;
        let now = self.clock.now_ms();
        let (next, actions) =
            machine::step(&r, &event, now).map_err(|e| ApiError::conflict(e.0))?;
        if next == r && actions.is_empty() {
            return Ok(next);
        }
        self.journal
            .record(&next, &event, &actions, now)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        self.active.insert(id, next.clone());
        self.notify(&r, &next, &event, &actions);
        let phase = serde_json::to_value(&next.phase).unwrap_or_default();
        self.events.transition(
            id,
            event.to_api().name(),
            phase["phase"].as_str().unwrap_or_default(),
        );
        for a in actions {
            let point = FailPoint::BeforeAction(action_kind(&a));
            if self.failpoints.fires(point) {
                self.kill(point);
                return Ok(next);
            }
            self.perform(&next, a);
        }
        let (before, after) = (r.describe(), next.describe());
        if before != after {
            self.say(Some(id), format!("release {id} v{}: {after}", next.version));
        }
        if next.is_done() {
            self.finished(id);
        }
        Ok(next)
    }

    /// Release `id` ended: forget it, and look at the trigger again if a promotion
    /// waited for it.
    fn finished(&mut self, id: ReleaseId) {
        self.active.remove(&id);
        self.deferred.remove(&id);
        if let Some(h) = self.analysis.remove(&id) {
            h.abort();
        }
        if self.promotion_waiting && self.active.is_empty() {
            // Where does the trigger point now? (A registry call: off the loop.)
            let (cfg, registry, tx) = (self.cfg.clone(), self.registry.clone(), self.tx.clone());
            let why = format!("promoted during release {id}");
            tokio::spawn(async move {
                if let Some((version, desc)) = releases::trigger_target(&cfg, registry, &why).await
                {
                    let _ = tx.send(Cmd::TriggerPoints { version, desc }).await;
                }
            });
        }
    }
}
