//! The release driver: one task that owns every release's state and every
//! environment's servers and gateway routes. It feeds events to the pure state
//! machine (`hoist_release::machine`), journals each transition, then performs its
//! actions; long actions (fetch, start servers, smoke tests, analysis, timers) run in
//! their own tasks and report back through the same command channel, so transitions
//! happen one at a time, in order.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hoist_gateway::{Gateway, Routes, Snapshot, Upstream, VariantStats};
use hoist_registry::Registry;
use hoist_release::analysis::{self, Window};
use hoist_release::config::{Config, Environment, MidRollout};
use hoist_release::journal::{Journal, ReleaseRecord};
use hoist_release::machine::{
    self, Action, EnvPlan, Event, Outcome, Phase, Plan, PlanStep, Release, ReleaseId, StepPause,
    Verdict,
};
use hoist_targets::{ServerProgram, ServerSpec, Supervised};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::AbortHandle;

pub use crate::views::*;

/// Requests per candidate replica in the smoke test (the first checks the answer's
/// shape; all warm the server up).
const SMOKE_ROUNDS: usize = 10;

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
    CandidateStarted {
        id: ReleaseId,
        env: String,
        result: Result<Vec<Supervised>, String>,
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
    /// A cluster operation of a release failed (Kubernetes target).
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

/// A deployment: one version's servers in one environment.
struct Deployment {
    version: String,
    digest: String,
    release_id: ReleaseId,
    servers: Vec<Supervised>,
    /// On a cluster: the variant's Service (no local servers).
    url: Option<String>,
}

impl Deployment {
    fn upstream(&self) -> Upstream {
        Upstream {
            version: self.version.clone(),
            addrs: self.servers.iter().map(|s| s.addr()).collect(),
        }
    }
    fn view(&self) -> DeploymentView {
        DeploymentView {
            version: self.version.clone(),
            digest: self.digest.clone(),
            release_id: self.release_id,
            servers: self
                .servers
                .iter()
                .map(|s| ServerView {
                    addr: s.addr(),
                    pid: s.pid(),
                    restarts: s.restarts(),
                    status: format!("{:?}", s.status()),
                })
                .collect(),
        }
    }
}

struct EnvRuntime {
    cfg: Environment,
    addr: SocketAddr,
    gateway: Gateway,
    stable: Option<Deployment>,
    candidate: Option<Deployment>,
    weight: u32,
    /// Percent of stable's requests mirrored to the candidate (shadow steps).
    shadow: u32,
    /// Remember predictions for feedback labels (`analysis.feedback`).
    feedback: bool,
    /// `target = "kubernetes"`: the environment's objects on the cluster.
    cluster: Option<Arc<crate::kube::ClusterEnv>>,
    /// Metrics at the moment the current candidate arrived (or the gateway started).
    baseline: Snapshot,
}

impl EnvRuntime {
    fn apply_routes(&self) {
        self.gateway.set_routes(Routes {
            stable: self.stable.as_ref().map(Deployment::upstream),
            candidate: self.candidate.as_ref().map(Deployment::upstream),
            candidate_weight: if self.candidate.is_some() {
                self.weight
            } else {
                0
            },
            shadow_percent: if self.candidate.is_some() {
                self.shadow
            } else {
                0
            },
            feedback: self.feedback,
        });
    }
}

pub struct Engine {
    cfg: Arc<Config>,
    journal: Arc<Journal>,
    registry: Arc<dyn Registry>,
    program: ServerProgram,
    log_dir: PathBuf,
    base_dir: PathBuf,
    envs: Vec<EnvRuntime>,
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
}

pub struct EngineParts {
    pub cfg: Arc<Config>,
    pub journal: Arc<Journal>,
    pub registry: Arc<dyn Registry>,
    pub program: ServerProgram,
    pub log_dir: PathBuf,
    /// Relative paths in hoist.toml (gate files) start here.
    pub base_dir: PathBuf,
    pub gateways: Vec<(Environment, SocketAddr, Gateway)>,
    /// `target = "kubernetes"`: each environment's cluster, by name.
    pub clusters: HashMap<String, Arc<crate::kube::ClusterEnv>>,
    pub tx: mpsc::Sender<Cmd>,
    pub log: broadcast::Sender<LogLine>,
    pub notifier: crate::notify::Notifier,
}

impl Engine {
    pub fn new(p: EngineParts) -> Engine {
        let envs = p
            .gateways
            .into_iter()
            .map(|(cfg, addr, gateway)| EnvRuntime {
                cluster: p.clusters.get(&cfg.name).cloned(),
                baseline: gateway.metrics(),
                feedback: p.cfg.analysis.with(&cfg.analysis).feedback,
                shadow: 0,
                cfg,
                addr,
                gateway,
                stable: None,
                candidate: None,
                weight: 0,
            })
            .collect();
        for e in &envs {
            let e: &EnvRuntime = e;
            if e.feedback {
                e.apply_routes();
            }
        }
        Engine {
            cfg: p.cfg,
            journal: p.journal,
            registry: p.registry,
            program: p.program,
            log_dir: p.log_dir,
            base_dir: p.base_dir,
            envs,
            active: BTreeMap::new(),
            promotion_waiting: false,
            analysis: BTreeMap::new(),
            verdicts: BTreeMap::new(),
            tx: p.tx,
            log: p.log,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            decided: std::time::Instant::now(),
            notifier: p.notifier,
        }
    }

    fn say(&self, release: Option<ReleaseId>, message: String) {
        tracing::info!("{message}");
        let _ = self.log.send(LogLine {
            at_ms: now_ms(),
            release,
            message,
        });
    }

    fn env_mut(&mut self, name: &str) -> Option<&mut EnvRuntime> {
        self.envs.iter_mut().find(|e| e.cfg.name == name)
    }

    fn spec(&self, path: &Path, version: &str, env: &str) -> ServerSpec {
        let mut spec = ServerSpec::new(
            self.program.clone(),
            path,
            self.cfg.model.name.clone(),
            version.to_string(),
        );
        spec.extra_args = vec!["--runtime".into(), self.cfg.server.runtime.clone()];
        if let Some(e) = self.cfg.environment(env) {
            spec.extra_args.extend(self.cfg.server_args(e));
        }
        spec.ready_timeout = self.cfg.server.ready_timeout.0;
        spec.log_file = Some(self.log_dir.join(format!("{env}-v{version}.log")));
        spec
    }

    /// Bring back what the journal says: each environment's live version, then each
    /// unfinished release where it was.
    pub async fn recover(&mut self) {
        // Each environment's live version serves again before the gateways accept
        // (their listeners are bound; connections wait in the backlog meanwhile).
        let mut starts = Vec::new();
        for i in 0..self.envs.len() {
            let name = self.envs[i].cfg.name.clone();
            let live = match self.journal.live(&name) {
                Ok(l) => l,
                Err(e) => {
                    self.say(None, format!("{name}: cannot read the journal: {e}"));
                    continue;
                }
            };
            if live.is_none()
                && let Some(c) = self.envs[i].cluster.clone()
            {
                // No journal record (a new controller, or its journal was lost): what
                // serves is what the objects' annotations say.
                self.adopt_from_cluster(i, &c).await;
                continue;
            }
            let Some(live) = live else { continue };
            if let Some(c) = self.envs[i].cluster.clone() {
                // The cluster keeps serving while the controller is away.
                self.envs[i].stable = Some(Deployment {
                    version: live.version.clone(),
                    digest: live.digest.clone(),
                    release_id: live.release_id,
                    servers: Vec::new(),
                    url: Some(c.stable_url.clone()),
                });
                continue;
            }
            let mut spec = self.spec(Path::new(&live.path), &live.version, &name);
            let replicas = self.envs[i].cfg.replicas;
            let path_ok = Path::new(&live.path).exists();
            let registry = self.registry.clone();
            self.say(
                None,
                format!(
                    "{name}: starting v{} (live before the restart)",
                    live.version
                ),
            );
            starts.push(async move {
                if !path_ok {
                    match fetch(registry, live.model.clone(), live.version.clone()).await {
                        Ok((_, dir)) => spec.model_path = dir,
                        Err(e) => return (name, live.release_id, Err(e)),
                    }
                }
                let result = hoist_targets::start_replicas(&spec, replicas)
                    .await
                    .map_err(|e| e.to_string());
                (name, live.release_id, result)
            });
        }
        for (env, release_id, result) in futures_util::future::join_all(starts).await {
            self.stable_started(env, release_id, result);
        }
        let active = match self.journal.active() {
            Ok(a) => a,
            Err(e) => {
                self.say(None, format!("cannot read the journal: {e}"));
                return;
            }
        };
        let now = now_ms();
        for rec in active {
            let r = rec.release;
            self.say(
                Some(r.id),
                format!(
                    "release {} v{}: resuming ({})",
                    r.id,
                    r.version,
                    r.describe()
                ),
            );
            let actions = machine::resume(&r, now);
            self.active.insert(r.id, r.clone());
            if r.phase == Phase::Queued {
                let _ = self.apply(r.id, Event::Start);
                continue;
            }
            for a in actions {
                self.perform(&r, a);
            }
        }
    }

    /// Environment `i` on a cluster without a journal record: take the stable version
    /// from the stable Deployment's `hoist.dev/*` annotations, and roll back a
    /// candidate left with pods or traffic (no release of this journal owns it), so two
    /// versions are never left half-applied.
    async fn adopt_from_cluster(&mut self, i: usize, c: &Arc<crate::kube::ClusterEnv>) {
        let name = self.envs[i].cfg.name.clone();
        let live = match c.cluster.live().await {
            Ok(l) => l,
            Err(e) => {
                self.say(None, format!("{name}: cannot read the cluster: {e}"));
                return;
            }
        };
        if let Some(s) = &live.stable {
            self.say(
                None,
                format!(
                    "{name}: no journal record; the cluster serves v{} ({}) by its annotations",
                    s.pin.version, s.pin.digest
                ),
            );
            self.envs[i].stable = Some(Deployment {
                version: s.pin.version.clone(),
                digest: s.pin.digest.clone(),
                release_id: 0,
                servers: Vec::new(),
                url: Some(c.stable_url.clone()),
            });
        }
        let leftover = live.candidate.as_ref().is_some_and(|v| v.replicas > 0);
        if live.stable.is_some() && (leftover || live.candidate_weight > 0) {
            self.say(
                None,
                format!(
                    "{name}: a candidate with pods or {}% of traffic belongs to no release here: rolling back to stable",
                    live.candidate_weight
                ),
            );
            c.rollback(0);
        }
    }

    /// Catch up with the registry: if the trigger points at a version no release has
    /// brought yet, start one (or, with a release resumed, once it ends).
    pub async fn catch_up(&mut self) {
        if let Some((version, desc)) =
            trigger_target(&self.cfg, self.registry.clone(), "found at start").await
        {
            self.promotion_waiting = true;
            self.caught_up(version, desc);
        }
    }

    /// The trigger points at `version`: release it if no release has brought it yet
    /// and none is active (else wait for the active one to end).
    fn caught_up(&mut self, version: String, desc: String) {
        let seen = self
            .journal
            .list(None, 10_000)
            .map(|all| all.iter().any(|r| r.release.version == version))
            .unwrap_or(true);
        if seen {
            self.promotion_waiting = false;
        } else if self.active.is_empty() {
            self.promotion_waiting = false;
            self.promotion(version, desc);
        }
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        while let Some(cmd) = rx.recv().await {
            match cmd {
                Cmd::Shutdown { reply } => {
                    self.shutdown().await;
                    let _ = reply.send(());
                    return;
                }
                other => self.handle(other),
            }
        }
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        for h in self.analysis.values() {
            h.abort();
        }
        let grace = self.cfg.server.stop_grace.0;
        let mut stops = Vec::new();
        for env in &mut self.envs {
            for d in [env.candidate.take(), env.stable.take()]
                .into_iter()
                .flatten()
            {
                for s in d.servers {
                    stops.push(s.stop(grace));
                }
            }
        }
        futures_util::future::join_all(stops).await;
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Create { req, reply } => {
                let _ = reply.send(self.create(req));
            }
            Cmd::Operator { id, event, reply } => {
                let res = if self.active.contains_key(&id) {
                    self.apply(id, event).and_then(|_| self.record(id))
                } else {
                    match self.journal.get(id) {
                        Ok(r) => Err(ApiError::conflict(format!(
                            "release {id} is finished ({})",
                            r.release.describe()
                        ))),
                        Err(_) => Err(ApiError::not_found(format!("no release {id}"))),
                    }
                };
                let _ = reply.send(res);
            }
            Cmd::Rollback { env, to, reply } => {
                let _ = reply.send(self.rollback(env, to));
            }
            Cmd::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Cmd::Promotion { version, trigger } => self.promotion(version, trigger),
            Cmd::TriggerPoints { version, desc } => self.caught_up(version, desc),
            Cmd::Fetched { id, result } => {
                if !self.is_phase(id, |p| *p == Phase::Fetching) {
                    return;
                }
                let ev = match result {
                    Ok((digest, path)) => {
                        if let Err(e) =
                            self.journal
                                .set_artifact(id, &digest, &path.to_string_lossy())
                        {
                            Event::FetchFailed {
                                reason: e.to_string(),
                            }
                        } else {
                            self.say(
                                Some(id),
                                format!("release {id}: fetched and verified {digest}"),
                            );
                            Event::Fetched
                        }
                    }
                    Err(reason) => Event::FetchFailed { reason },
                };
                let _ = self.apply(id, ev);
            }
            Cmd::CandidateStarted { id, env, result } => self.candidate_started(id, env, result),
            Cmd::Smoke { id, env, result } => {
                if !self.is_phase(id, |p| *p == Phase::SmokeTesting)
                    || self.env_of(id) != Some(env.clone())
                {
                    return;
                }
                let ev = match result {
                    Ok(()) => {
                        self.say(Some(id), format!("release {id}: {env}: smoke test passed"));
                        Event::SmokePassed
                    }
                    Err(reason) => Event::SmokeFailed { reason },
                };
                let _ = self.apply(id, ev);
            }
            Cmd::Verdict {
                id,
                env,
                step,
                verdict,
                window,
                numbers,
            } => {
                let current = self.active.get(&id).is_some_and(|r| {
                    matches!(r.phase, Phase::Step { index, .. } if index == step)
                        && r.env_name() == env
                });
                if !current {
                    return;
                }
                self.verdicts.insert(
                    id,
                    VerdictView {
                        env,
                        step,
                        verdict: verdict.to_api(),
                        window,
                        numbers: numbers.clone(),
                        at_ms: now_ms(),
                    },
                );
                let _ = self.apply(id, Event::Verdict { verdict, numbers });
            }
            Cmd::Gates { id, result } => {
                if !self.is_phase(id, |p| *p == Phase::Gating) {
                    return;
                }
                let (ev, reports) = match result {
                    Ok(reports) => {
                        let v = serde_json::to_value(&reports).unwrap_or_default();
                        (Event::GatesPassed { reports: v }, reports)
                    }
                    Err((reason, reports)) => {
                        let v = serde_json::to_value(&reports).unwrap_or_default();
                        (Event::GatesFailed { reason, reports: v }, reports)
                    }
                };
                for r in &reports {
                    let mark = if r.passed { "passed" } else { "FAILED" };
                    self.say(
                        Some(id),
                        format!("release {id}: gate {} {mark}: {}", r.gate, r.summary),
                    );
                }
                let _ = self.apply(id, ev);
            }
            Cmd::TargetFailed { id, env, reason } => {
                if self.env_of(id).as_deref() == Some(env.as_str()) {
                    let _ = self.apply(id, Event::CandidateFailed { reason });
                }
            }
            Cmd::Tick { id } => {
                if self.active.contains_key(&id) {
                    let _ = self.apply(id, Event::Tick);
                }
            }
            Cmd::Shutdown { .. } => {}
        }
    }

    fn is_phase(&self, id: ReleaseId, f: impl Fn(&Phase) -> bool) -> bool {
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

    fn promotion(&mut self, version: String, trigger: String) {
        let supersede = self.cfg.model.mid_rollout == MidRollout::Supersede;
        let req = CreateRequest {
            version: version.clone(),
            env: None,
            supersede,
            trigger: trigger.clone(),
            breaking_change: false,
        };
        self.say(
            None,
            format!("promotion: {} {trigger}", self.cfg.model.name),
        );
        if let Err(e) = self.create(req) {
            let busy = self.active.values().any(|r| r.is_mid_rollout());
            let queued = if busy && e.status == 409 {
                self.promotion_waiting = true;
                "; queued: the version the trigger points at is released when the release in progress ends"
            } else {
                ""
            };
            self.say(
                None,
                format!("promotion of v{version} refused: {}{queued}", e.message),
            );
        }
    }

    fn create(&mut self, req: CreateRequest) -> Result<ReleaseRecord, ApiError> {
        let plan =
            Plan::from_config(&self.cfg, req.env.as_deref()).map_err(ApiError::bad_request)?;
        self.create_with_plan(req, plan)
    }

    fn create_with_plan(
        &mut self,
        req: CreateRequest,
        mut plan: Plan,
    ) -> Result<ReleaseRecord, ApiError> {
        if req.breaking_change {
            plan.breaking_change = Some("marked at deploy (`--breaking-change`)".into());
        }
        // Already live everywhere it would go?
        let live_everywhere = plan.envs.iter().all(|e| {
            self.journal
                .live(&e.name)
                .ok()
                .flatten()
                .is_some_and(|l| l.version == req.version)
        });
        if live_everywhere {
            return Err(ApiError::conflict(format!(
                "v{} is already live in {}",
                req.version,
                plan.envs
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut superseded = Vec::new();
        for (id, r) in &self.active {
            if r.is_mid_rollout() && !req.supersede {
                return Err(ApiError::conflict(format!(
                    "release {id} (v{}) is mid-rollout ({}); wait for it, `hoist abort {id}`, or deploy with --supersede",
                    r.version,
                    r.describe()
                )));
            }
            superseded.push(*id);
        }
        let r = self
            .journal
            .create(
                &self.cfg.model.name,
                &req.version,
                plan,
                &req.trigger,
                now_ms(),
            )
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let id = r.id;
        self.active.insert(id, r.clone());
        self.say(
            Some(id),
            format!(
                "release {id}: {} v{} ({}) → {}",
                r.model,
                r.version,
                req.trigger,
                r.plan
                    .envs
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" → ")
            ),
        );
        for old in superseded {
            let _ = self.apply(old, Event::Supersede { by: id });
        }
        self.apply(id, Event::Start)?;
        self.record(id)
    }

    fn rollback(
        &mut self,
        env: Option<String>,
        to: Option<String>,
    ) -> Result<ReleaseRecord, ApiError> {
        let env = match env {
            Some(e) => e,
            None => self
                .cfg
                .environments
                .last()
                .map(|e| e.name.clone())
                .unwrap_or_default(),
        };
        if self.cfg.environment(&env).is_none() {
            return Err(ApiError::bad_request(format!("no environment `{env}`")));
        }
        // A release mid-rollout there: abort it (weight to 0 at once).
        let in_env = self
            .active
            .iter()
            .find(|(_, r)| r.is_mid_rollout() && r.env_name() == env)
            .map(|(id, _)| *id);
        if let Some(id) = in_env {
            if to.is_none() {
                self.apply(
                    id,
                    Event::Abort {
                        reason: "rollback requested".into(),
                    },
                )?;
                return self.record(id);
            }
            self.apply(
                id,
                Event::Abort {
                    reason: "rollback requested".into(),
                },
            )?;
        }
        let live = self
            .journal
            .live(&env)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let target = match to {
            Some(v) => v,
            None => {
                let current = live.as_ref().map(|l| l.version.clone());
                let history = self
                    .journal
                    .live_history(&env)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                history
                    .into_iter()
                    .map(|l| l.version)
                    .find(|v| Some(v) != current.as_ref())
                    .ok_or_else(|| {
                        ApiError::conflict(format!("no earlier version has been live in {env}"))
                    })?
            }
        };
        let plan = Plan {
            envs: vec![EnvPlan {
                name: env.clone(),
                steps: vec![PlanStep {
                    weight: 100,
                    shadow: 0,
                    pause: StepPause::None,
                }],
                approval: false,
                analysis: false,
                max_inconclusive_ms: 0,
                failure_limit: 0,
                consecutive_failures: 0,
            }],
            gates: false,
            breaking_change: None,
        };
        self.create_with_plan(
            CreateRequest {
                version: target.clone(),
                env: Some(env),
                supersede: true,
                trigger: format!("rollback to v{target}"),
                breaking_change: false,
            },
            plan,
        )
    }

    /// Feed one event to a release: step the machine, journal, perform.
    fn apply(&mut self, id: ReleaseId, event: Event) -> Result<Release, ApiError> {
        self.decided = std::time::Instant::now();
        let r = self
            .active
            .get(&id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no active release {id}")))?;
        let now = now_ms();
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
        for a in actions {
            self.perform(&next, a);
        }
        let before = r.describe();
        let after = next.describe();
        if before != after {
            self.say(Some(id), format!("release {id} v{}: {after}", next.version));
        }
        if next.is_done() {
            self.active.remove(&id);
            if let Some(h) = self.analysis.remove(&id) {
                h.abort();
            }
            if self.promotion_waiting && self.active.is_empty() {
                // Where does the trigger point now? (A registry call: off the loop.)
                let (cfg, registry, tx) =
                    (self.cfg.clone(), self.registry.clone(), self.tx.clone());
                let why = format!("promoted during release {id}");
                tokio::spawn(async move {
                    if let Some((version, desc)) = trigger_target(&cfg, registry, &why).await {
                        let _ = tx.send(Cmd::TriggerPoints { version, desc }).await;
                    }
                });
            }
        }
        Ok(next)
    }

    /// Tell the configured receivers what this transition means for people.
    fn notify(&self, before: &Release, next: &Release, event: &Event, actions: &[Action]) {
        let mk = |name: &'static str,
                  env: Option<String>,
                  message: String,
                  details: serde_json::Value| {
            crate::notify::ReleaseEvent {
                event: name,
                release: next.id,
                model: next.model.clone(),
                version: next.version.clone(),
                env,
                message,
                details,
                at_ms: now_ms(),
            }
        };
        if matches!(event, Event::Start) {
            let envs: Vec<&str> = next.plan.envs.iter().map(|e| e.name.as_str()).collect();
            self.notifier.send(mk(
                "started",
                None,
                format!("release started towards {}", envs.join(", ")),
                serde_json::Value::Null,
            ));
        }
        if let Event::GatesPassed { reports } | Event::GatesFailed { reports, .. } = event {
            for g in reports.as_array().into_iter().flatten() {
                let passed = g["passed"] == true;
                let msg = format!(
                    "gate {}: {}",
                    g["gate"].as_str().unwrap_or(""),
                    g["summary"].as_str().unwrap_or("")
                );
                self.notifier.send(mk(
                    if passed { "gate_passed" } else { "gate_failed" },
                    Some(next.env_name().to_string()),
                    msg,
                    g.clone(),
                ));
            }
        }
        for a in actions {
            match a {
                Action::SetWeight { env, weight }
                    if *weight > 0
                        && !next.is_done()
                        && matches!(next.phase, Phase::Step { .. }) =>
                {
                    self.notifier.send(mk(
                        "step",
                        Some(env.clone()),
                        format!("candidate at {weight}% in {env}"),
                        serde_json::json!({ "weight": weight }),
                    ));
                }
                Action::AwaitApproval { env } => {
                    self.notifier.send(mk(
                        "awaiting_approval",
                        Some(env.clone()),
                        format!("waiting for `hoist approve {}` in {env}", next.id),
                        serde_json::Value::Null,
                    ));
                }
                Action::PromoteCandidate { env } => {
                    self.notifier.send(mk(
                        "promoted",
                        Some(env.clone()),
                        format!("v{} is live in {env}", next.version),
                        serde_json::Value::Null,
                    ));
                }
                _ => {}
            }
        }
        if !before.is_done() && next.is_done() {
            let env = Some(next.env_name().to_string());
            match &next.outcome {
                Some(Outcome::Failed { reason }) => {
                    let verdict = self
                        .verdicts
                        .get(&next.id)
                        .map(|v| serde_json::to_value(v).unwrap_or_default())
                        .unwrap_or_default();
                    self.notifier
                        .send(mk("rolled_back", env, reason.clone(), verdict));
                }
                Some(o @ (Outcome::Aborted { .. } | Outcome::Superseded { .. })) => {
                    self.notifier.send(mk(
                        "aborted",
                        env,
                        o.reason().unwrap_or_default(),
                        serde_json::Value::Null,
                    ));
                }
                _ => {}
            }
        }
    }

    fn perform(&mut self, r: &Release, action: Action) {
        let id = r.id;
        match action {
            Action::Fetch => {
                let tx = self.tx.clone();
                let registry = self.registry.clone();
                let (model, version) = (r.model.clone(), r.version.clone());
                tokio::spawn(async move {
                    let result = fetch(registry, model, version).await;
                    let _ = tx.send(Cmd::Fetched { id, result }).await;
                });
            }
            Action::StartCandidate { env } => {
                let Some(e) = self.envs.iter().find(|e| e.cfg.name == env) else {
                    return;
                };
                if e.candidate.as_ref().is_some_and(|c| c.release_id == id) {
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        let _ = tx
                            .send(Cmd::CandidateStarted {
                                id,
                                env,
                                result: Ok(Vec::new()),
                            })
                            .await;
                    });
                    return;
                }
                if let Some(c) = e.cluster.clone() {
                    let digest = self
                        .journal
                        .get(id)
                        .ok()
                        .and_then(|rec| rec.digest)
                        .unwrap_or_default();
                    let replicas = e.cfg.replicas;
                    c.deploy(
                        id,
                        crate::kube::pin(&self.cfg.model.name, &r.version, &digest),
                        replicas,
                    );
                    return;
                }
                let path = self.journal.get(id).ok().and_then(|rec| rec.path);
                let Some(path) = path else {
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        let _ = tx
                            .send(Cmd::CandidateStarted {
                                id,
                                env,
                                result: Err("the release has no fetched files".into()),
                            })
                            .await;
                    });
                    return;
                };
                let spec = self.spec(Path::new(&path), &r.version, &env);
                let replicas = e.cfg.replicas;
                let tx = self.tx.clone();
                self.say(
                    Some(id),
                    format!(
                        "release {id}: {env}: starting {replicas} server(s) for v{}",
                        r.version
                    ),
                );
                tokio::spawn(async move {
                    let result = hoist_targets::start_replicas(&spec, replicas)
                        .await
                        .map_err(|e| e.to_string());
                    let _ = tx.send(Cmd::CandidateStarted { id, env, result }).await;
                });
            }
            Action::RunGates { env } => {
                let Some(e) = self.envs.iter().find(|e| e.cfg.name == env) else {
                    return;
                };
                let addr = |d: &Option<Deployment>| {
                    d.as_ref().and_then(|d| {
                        d.servers
                            .first()
                            .map(|s| format!("http://{}", s.addr()))
                            .or_else(|| d.url.clone())
                    })
                };
                let rec = self.journal.get(id).ok();
                let tx = self.tx.clone();
                let Some(candidate) = addr(&e.candidate) else {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let _ = tx
                            .send(Cmd::Gates {
                                id,
                                result: Err((
                                    "gates: the candidate is not running".into(),
                                    Vec::new(),
                                )),
                            })
                            .await;
                    });
                    return;
                };
                let ctx = crate::gates::GateContext {
                    candidate,
                    stable: addr(&e.stable),
                    model_name: self.cfg.model.name.clone(),
                    model_path: rec
                        .as_ref()
                        .and_then(|r| r.path.clone())
                        .map(PathBuf::from)
                        .unwrap_or_default(),
                    version: r.version.clone(),
                    digest: rec.and_then(|r| r.digest).unwrap_or_default(),
                    base_dir: self.base_dir.clone(),
                    breaking_change: r.plan.breaking_change.clone(),
                };
                let gates = self.cfg.gates.clone();
                let http = self.http.clone();
                self.say(
                    Some(id),
                    format!("release {id}: {env}: running {} gate(s)", gates.len()),
                );
                let registry = self.registry.clone();
                tokio::spawn(async move {
                    let mut ctx = ctx;
                    if ctx.breaking_change.is_none() {
                        ctx.breaking_change = breaking_change_tag(registry, &ctx).await;
                    }
                    let result = crate::gates::run(&gates, &ctx, &http).await;
                    let _ = tx.send(Cmd::Gates { id, result }).await;
                });
            }
            Action::SmokeTest { env } => {
                let Some(e) = self.envs.iter().find(|e| e.cfg.name == env) else {
                    return;
                };
                // On a cluster, the candidate's own Service (no traffic reaches it yet).
                let (url, replicas) = match &e.cluster {
                    Some(c) => (c.candidate_url.clone(), 1),
                    None => (format!("http://{}", e.addr), e.cfg.replicas),
                };
                // Straight to the candidate's Service on a cluster: no force header.
                let force = if e.cluster.is_some() {
                    String::new()
                } else {
                    e.cfg.force_header.clone()
                };
                let path = self.journal.get(id).ok().and_then(|rec| rec.path);
                let tx = self.tx.clone();
                let http = self.http.clone();
                tokio::spawn(async move {
                    let result = smoke_test(&http, &url, &force, path.as_deref(), replicas).await;
                    let _ = tx.send(Cmd::Smoke { id, env, result }).await;
                });
            }
            Action::AwaitApproval { env } => {
                self.say(
                    Some(id),
                    format!("release {id}: {env}: waiting for approval: `hoist approve {id}`"),
                );
            }
            Action::SetWeight { env, weight } => {
                if let Some(e) = self.env_mut(&env) {
                    e.weight = weight;
                    match &e.cluster {
                        Some(c) => c.set_weight(id, weight),
                        None => e.apply_routes(),
                    }
                }
            }
            Action::Mirror { env, percent } => {
                if let Some(e) = self.env_mut(&env) {
                    e.shadow = percent;
                    e.apply_routes();
                }
                if percent > 0 {
                    self.say(
                        Some(id),
                        format!(
                            "release {id}: {env}: shadow: {percent}% of stable's requests are mirrored to the candidate"
                        ),
                    );
                }
            }
            Action::BeginAnalysis { env, step } => {
                if let Some(h) = self.analysis.remove(&id) {
                    h.abort();
                }
                let Some(e) = self.envs.iter().find(|e| e.cfg.name == env) else {
                    return;
                };
                let analysis = self.cfg.analysis.with(&e.cfg.analysis);
                if let Some(c) = e.cluster.clone() {
                    let h = tokio::spawn(cluster_analysis(
                        c.prometheus.clone(),
                        analysis,
                        self.tx.clone(),
                        id,
                        env,
                        step,
                    ));
                    self.analysis.insert(id, h.abort_handle());
                    return;
                }
                let gateway = e.gateway.clone();
                let tx = self.tx.clone();
                let addrs = |d: &Option<Deployment>| -> Vec<SocketAddr> {
                    d.as_ref()
                        .map(|d| d.servers.iter().map(|s| s.addr()).collect())
                        .unwrap_or_default()
                };
                let (cand_addrs, stable_addrs) = (addrs(&e.candidate), addrs(&e.stable));
                let http = self.http.clone();
                let plan_step = r
                    .plan
                    .envs
                    .get(r.env)
                    .and_then(|p| p.steps.get(step))
                    .copied();
                // A shadow step judges the mirrored answers; live checks need live traffic.
                let shadow_step = plan_step.is_some_and(|s| s.shadow > 0);
                let live = plan_step.is_none_or(|s| s.weight > 0);
                let h = tokio::spawn(async move {
                    let baseline = gateway.metrics();
                    let (cand0, stable0) = if analysis.drift && live {
                        (
                            predictions(&http, &cand_addrs).await,
                            predictions(&http, &stable_addrs).await,
                        )
                    } else {
                        (None, None)
                    };
                    let mut tick = tokio::time::interval(analysis.interval.0);
                    tick.tick().await;
                    loop {
                        tick.tick().await;
                        let snap = gateway.metrics().since(&baseline);
                        let c = &snap.candidate;
                        let mut judged = if live {
                            analysis::judge_live(&analysis, &live_window(&snap))
                        } else {
                            analysis::LiveJudgement {
                                verdict: Verdict::Pass,
                                numbers: Default::default(),
                            }
                        };
                        if shadow_step {
                            let (v, n) = judge_shadow(&analysis, &snap.shadow);
                            judged.numbers.insert("shadow".into(), n);
                            judged.verdict = worse(judged.verdict, v);
                        }
                        if live && analysis.feedback {
                            let (v, n) = judge_feedback(&analysis, &snap);
                            judged.numbers.insert("feedback".into(), n);
                            judged.verdict = worse(judged.verdict, v);
                        }
                        // The candidate's predicted classes against stable's (the
                        // servers' counters, read only when everything else passed).
                        if judged.verdict == Verdict::Pass
                            && let (Some(c0), Some(s0)) = (&cand0, &stable0)
                            && let (Some(c1), Some(s1)) = (
                                predictions(&http, &cand_addrs).await,
                                predictions(&http, &stable_addrs).await,
                            )
                        {
                            let diff = |a: &[u64], b: &[u64]| -> Vec<u64> {
                                a.iter().zip(b).map(|(x, y)| x.saturating_sub(*y)).collect()
                            };
                            judged.drift(&analysis, &diff(&s1, s0), &diff(&c1, c0));
                        }
                        let mut numbers = serde_json::Value::Object(judged.numbers);
                        numbers["candidate"] = serde_json::json!(WindowView::of(c));
                        numbers["stable"] = serde_json::json!(WindowView::of(&snap.stable));
                        let verdict = judged.verdict;
                        let view = WindowView::of(c);
                        if tx
                            .send(Cmd::Verdict {
                                id,
                                env: env.clone(),
                                step,
                                verdict,
                                window: view,
                                numbers,
                            })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                });
                self.analysis.insert(id, h.abort_handle());
            }
            Action::WakeAt { at_ms } => {
                let tx = self.tx.clone();
                let wait = Duration::from_millis(at_ms.saturating_sub(now_ms()));
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let _ = tx.send(Cmd::Tick { id }).await;
                });
            }
            Action::PromoteCandidate { env } => {
                if let Some(h) = self.analysis.remove(&id) {
                    h.abort();
                }
                let grace = self.cfg.server.stop_grace.0;
                let Some(e) = self.env_mut(&env) else { return };
                let Some(new) = e.candidate.take() else {
                    return;
                };
                let version = new.version.clone();
                let mut new = new;
                if let Some(c) = &e.cluster {
                    new.url = Some(c.stable_url.clone());
                    c.promote(id);
                }
                let old = e.stable.replace(new);
                e.weight = 0;
                e.apply_routes();
                if let Some(old) = old {
                    stop_in_background(old.servers, grace);
                }
                self.say(
                    Some(id),
                    format!("release {id}: {env}: v{version} is live (100%)"),
                );
            }
            Action::StopCandidate { env } => {
                if let Some(h) = self.analysis.remove(&id) {
                    h.abort();
                }
                let grace = self.cfg.server.stop_grace.0;
                let Some(e) = self.env_mut(&env) else { return };
                e.weight = 0;
                let old = e.candidate.take();
                if let Some(c) = &e.cluster {
                    c.rollback(id);
                }
                e.apply_routes();
                if let Some(old) = old {
                    stop_in_background(old.servers, grace);
                }
                let stable = self
                    .envs
                    .iter()
                    .find(|e| e.cfg.name == env)
                    .and_then(|e| e.stable.as_ref().map(|s| s.version.clone()));
                match stable {
                    Some(v) => self.say(
                        Some(id),
                        format!(
                            "release {id}: {env}: rolled back, 100% on v{v} {:.2} ms after the decision",
                            self.decided.elapsed().as_secs_f64() * 1000.0
                        ),
                    ),
                    None => self.say(Some(id), format!("release {id}: {env}: candidate stopped")),
                }
            }
            Action::Tag { key, value } => {
                let registry = self.registry.clone();
                let (model, version) = (r.model.clone(), r.version.clone());
                let log = self.log.clone();
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = registry.set_tag(&model, &version, &key, &value) {
                        let _ = log.send(LogLine {
                            at_ms: now_ms(),
                            release: Some(id),
                            message: format!(
                                "release {id}: could not tag v{version} {key}={value}: {e}"
                            ),
                        });
                    }
                });
            }
        }
    }

    fn candidate_started(
        &mut self,
        id: ReleaseId,
        env: String,
        result: Result<Vec<Supervised>, String>,
    ) {
        let wanted = self.active.get(&id).is_some_and(|r| {
            r.env_name() == env && r.is_mid_rollout() && !matches!(r.phase, Phase::Fetching)
        });
        let grace = self.cfg.server.stop_grace.0;
        if !wanted {
            if let Ok(servers) = result {
                stop_in_background(servers, grace);
            }
            return;
        }
        match result {
            Ok(servers) => {
                let digest = self
                    .journal
                    .get(id)
                    .ok()
                    .and_then(|r| r.digest)
                    .unwrap_or_default();
                let version = self.active[&id].version.clone();
                let Some(e) = self.env_mut(&env) else { return };
                if !servers.is_empty() || (e.cluster.is_some() && e.candidate.is_none()) {
                    e.candidate = Some(Deployment {
                        version,
                        digest,
                        release_id: id,
                        url: e.cluster.as_ref().map(|c| c.candidate_url.clone()),
                        servers,
                    });
                    e.baseline = e.gateway.metrics();
                    e.apply_routes();
                }
                let has_stable = e.stable.is_some();
                let _ = self.apply(id, Event::CandidateReady { has_stable });
            }
            Err(reason) => {
                let _ = self.apply(id, Event::CandidateFailed { reason });
            }
        }
    }

    fn stable_started(
        &mut self,
        env: String,
        release_id: ReleaseId,
        result: Result<Vec<Supervised>, String>,
    ) {
        match result {
            Ok(servers) => {
                let live = self.journal.live(&env).ok().flatten();
                let grace = self.cfg.server.stop_grace.0;
                let Some(e) = self.env_mut(&env) else { return };
                match live {
                    Some(l) if l.release_id == release_id && e.stable.is_none() => {
                        e.stable = Some(Deployment {
                            version: l.version.clone(),
                            digest: l.digest,
                            release_id,
                            url: None,
                            servers,
                        });
                        e.apply_routes();
                        self.say(None, format!("{env}: v{} serving again", l.version));
                    }
                    _ => {
                        stop_in_background(servers, grace);
                    }
                }
            }
            Err(e) => self.say(
                None,
                format!("{env}: the live version could not be restarted: {e}"),
            ),
        }
    }

    fn status(&self) -> StatusView {
        let environments = self
            .envs
            .iter()
            .map(|e| {
                let w = e.gateway.metrics().since(&e.baseline);
                EnvView {
                    name: e.cfg.name.clone(),
                    url: match &e.cluster {
                        Some(c) => c.app_url.clone(),
                        None => format!("http://{}", e.addr),
                    },
                    target: if e.cluster.is_some() {
                        "kubernetes"
                    } else {
                        "local"
                    }
                    .into(),
                    split: e.cluster.as_ref().map(|c| c.split_note()),
                    strategy: match e.cfg.strategy {
                        hoist_release::config::StrategyKind::Canary => "canary".into(),
                        hoist_release::config::StrategyKind::BlueGreen => "blue-green".into(),
                    },
                    weight: if e.candidate.is_some() { e.weight } else { 0 },
                    stable: e.stable.as_ref().map(Deployment::view),
                    candidate: e.candidate.as_ref().map(Deployment::view),
                    stable_metrics: WindowView::of(&w.stable),
                    candidate_metrics: WindowView::of(&w.candidate),
                }
            })
            .collect();
        let active = self
            .active
            .keys()
            .filter_map(|id| self.journal.get(*id).ok())
            .map(|record| ReleaseView {
                summary: record.release.describe(),
                progress: record.release.progress(),
                last_verdict: self.verdicts.get(&record.release.id).cloned(),
                release: record.to_api(),
            })
            .collect();
        StatusView {
            model: self.cfg.model.name.clone(),
            registry: self.registry.id(),
            environments,
            active,
            notifications: self.notifier.status(),
        }
    }
}

/// The predicted-class counts of a deployment's servers (summed), from their
/// `hoist_predictions_total`; `None` when a server cannot be read.
/// Analysis of a step on a cluster: every interval, the step's window so far from
/// Prometheus, judged as on one machine. Without Prometheus nothing can be judged:
/// inconclusive, so the step waits and then fails (never a silent pass).
async fn cluster_analysis(
    prometheus: Option<Arc<crate::prometheus::PrometheusSource>>,
    analysis: hoist_release::config::Analysis,
    tx: mpsc::Sender<Cmd>,
    id: ReleaseId,
    env: String,
    step: usize,
) {
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(analysis.interval.0);
    tick.tick().await;
    loop {
        tick.tick().await;
        // Prometheus's rate windows need at least a couple of scrapes.
        let window = started.elapsed().max(Duration::from_secs(10));
        let (verdict, window, numbers) = match &prometheus {
            Some(p) => {
                let j = crate::prometheus::judge_from_prometheus(p, &analysis, window, None).await;
                (j.verdict, j.window, j.numbers)
            }
            None => (
                Verdict::Inconclusive {
                    reason: "kubernetes.prometheus_url is not set: live metrics on a cluster come from Prometheus".into(),
                },
                WindowView::default(),
                serde_json::json!({}),
            ),
        };
        let sent = tx
            .send(Cmd::Verdict {
                id,
                env: env.clone(),
                step,
                verdict,
                window,
                numbers,
            })
            .await;
        if sent.is_err() {
            return;
        }
    }
}

/// The version the pipeline's trigger points at in the registry, and how to describe
/// that promotion (`alias champion → v3 (WHY)`); `None` for a manual trigger, or when
/// the registry cannot say.
async fn trigger_target(
    cfg: &Config,
    registry: Arc<dyn Registry>,
    why: &str,
) -> Option<(String, String)> {
    use hoist_release::config::Trigger;
    let name = &cfg.model.name;
    let (sel, kind, what) = match &cfg.model.trigger {
        Trigger::Alias(a) => (format!("{name}@{a}"), "alias", a),
        Trigger::Stage(s) => (format!("{name}/{s}"), "stage", s),
        Trigger::Manual => return None,
    };
    let v = tokio::task::spawn_blocking(move || {
        let r = hoist_registry::ModelRef::parse(&sel)?;
        registry.resolve(&r)
    })
    .await
    .ok()?
    .ok()?;
    let desc = format!("{kind} {what} → v{} ({why})", v.version);
    Some((v.version, desc))
}

/// The registry tag that marks a model version as a breaking change (its inputs or
/// outputs may differ from stable's): any value but `false`, `0` or empty.
pub const BREAKING_CHANGE_TAG: &str = hoist_types::wire::tags::BREAKING_CHANGE;

/// Why the version is a breaking change according to its registry tags, if it is.
/// A registry that cannot be read marks nothing (the signature gate then compares).
async fn breaking_change_tag(
    registry: Arc<dyn Registry>,
    ctx: &crate::gates::GateContext,
) -> Option<String> {
    let (model, version) = (ctx.model_name.clone(), ctx.version.clone());
    let v = tokio::task::spawn_blocking(move || registry.get_version(&model, &version))
        .await
        .ok()?
        .ok()?;
    let value = v.tags.get(BREAKING_CHANGE_TAG)?.trim().to_string();
    (!matches!(value.to_ascii_lowercase().as_str(), "" | "false" | "0"))
        .then(|| format!("the version's registry tag {BREAKING_CHANGE_TAG} = {value}"))
}

/// Both variants' live numbers of a gateway window, for [`analysis::judge_live`].
fn live_window(snap: &Snapshot) -> analysis::Live {
    let window = |v: &VariantStats| Window {
        requests: v.requests,
        errors: v.server_errors + v.upstream_errors,
        p50_seconds: v.quantile(0.5),
        p95_seconds: v.quantile(0.95),
        p99_seconds: v.quantile(0.99),
    };
    analysis::Live {
        candidate: window(&snap.candidate),
        stable: window(&snap.stable),
        candidate_latencies: snap.candidate.latency_samples(),
        stable_latencies: snap.stable.latency_samples(),
    }
}

/// The worse of two verdicts: a failure over an inconclusive one over a pass (the
/// first of two of a kind).
fn worse(a: Verdict, b: Verdict) -> Verdict {
    let rank = |v: &Verdict| match v {
        Verdict::Pass => 0,
        Verdict::Inconclusive { .. } => 1,
        Verdict::Fail { .. } => 2,
    };
    if rank(&b) > rank(&a) { b } else { a }
}

/// A shadow step's verdict on the mirrored requests of a window, and its numbers.
fn judge_shadow(
    a: &hoist_release::config::Analysis,
    s: &hoist_gateway::ShadowStats,
) -> (Verdict, serde_json::Value) {
    let w = analysis::ShadowWindow {
        mirrored: s.answers.requests,
        errors: s.answers.server_errors + s.answers.upstream_errors + s.unreadable,
        rows: s.rows,
        agreeing_rows: s.agreeing_rows,
        probabilities: s.probabilities,
        probability_diff_sum: s.probability_diff_sum,
        p99_seconds: s.answers.quantile(0.99),
    };
    let numbers = serde_json::json!({
        "mirrored": w.mirrored,
        "errors": w.errors,
        "unreadable": s.unreadable,
        "rows": w.rows,
        "agreeing_rows": w.agreeing_rows,
        "agreement": w.agreement(),
        "mean_probability_diff": w.mean_probability_diff(),
        "p99_ms": w.p99_seconds.map(|p| p * 1000.0),
    });
    (analysis::judge_shadow(a, &w), numbers)
}

/// Accuracy from feedback labels over a window, and its numbers.
fn judge_feedback(
    a: &hoist_release::config::Analysis,
    snap: &Snapshot,
) -> (Verdict, serde_json::Value) {
    let labels = |v: &VariantStats| analysis::Labels {
        labelled: v.labelled,
        correct: v.correct,
    };
    let (c, s) = (labels(&snap.candidate), labels(&snap.stable));
    let numbers = serde_json::json!({
        "candidate": { "labelled": c.labelled, "correct": c.correct, "accuracy": c.accuracy() },
        "stable": { "labelled": s.labelled, "correct": s.correct, "accuracy": s.accuracy() },
    });
    (analysis::judge_feedback(a, &c, &s), numbers)
}

async fn predictions(http: &reqwest::Client, addrs: &[SocketAddr]) -> Option<Vec<u64>> {
    if addrs.is_empty() {
        return None;
    }
    let mut counts = vec![0u64; hoist_types::wire::PREDICTION_CLASSES + 1];
    for a in addrs {
        let text = http
            .get(format!("http://{a}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        for line in text
            .lines()
            .filter(|l| l.starts_with("hoist_predictions_total{"))
        {
            let class = line
                .split("class=\"")
                .nth(1)
                .and_then(|r| r.split('"').next());
            let n = line.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok());
            if let (Some(class), Some(n)) = (class, n) {
                let i = class
                    .parse::<usize>()
                    .unwrap_or(hoist_types::wire::PREDICTION_CLASSES);
                if let Some(slot) = counts.get_mut(i) {
                    *slot += n;
                }
            }
        }
    }
    Some(counts)
}

/// Stop servers gracefully (drain, then kill after `grace`) without waiting here.
fn stop_in_background(servers: Vec<Supervised>, grace: Duration) {
    tokio::spawn(async move {
        futures_util::future::join_all(servers.into_iter().map(|s| s.stop(grace))).await;
    });
}

pub async fn fetch(
    registry: Arc<dyn Registry>,
    model: String,
    version: String,
) -> Result<(String, PathBuf), String> {
    tokio::task::spawn_blocking(move || {
        let v = registry
            .get_version(&model, &version)
            .map_err(|e| e.to_string())?;
        let f = registry.fetch(&v).map_err(|e| e.to_string())?;
        Ok((f.digest, f.dir))
    })
    .await
    .map_err(|e| format!("fetch task failed: {e}"))?
}

/// Send the model's input example through the gateway to the candidate (forced by
/// header), once per replica: each must answer 200 with one prediction per example
/// row. Without an example, the candidate's readiness is checked instead. An empty
/// `force_header` means `url` is the candidate itself (a cluster's Service).
async fn smoke_test(
    http: &reqwest::Client,
    url: &str,
    force_header: &str,
    path: Option<&str>,
    replicas: usize,
) -> Result<(), String> {
    let example = path.and_then(|p| read_example(Path::new(p)));
    // A few rounds per replica: the smoke test, and a warm-up so a cold candidate's
    // first requests do not count against it in the analysis that follows.
    for _ in 0..replicas.max(1) * SMOKE_ROUNDS {
        match &example {
            Some((body, rows)) => {
                let mut req = http.post(format!("{url}/invocations"));
                if !force_header.is_empty() {
                    req = req.header(force_header, "candidate");
                }
                let resp = req
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .map_err(|e| format!("POST /invocations: {e}"))?;
                let status = resp.status();
                let variant = resp
                    .headers()
                    .get(hoist_types::wire::headers::VARIANT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let text = resp.text().await.unwrap_or_default();
                if !status.is_success() {
                    return Err(format!(
                        "POST /invocations with the input example answered {status}: {}",
                        text.chars().take(300).collect::<String>()
                    ));
                }
                if !force_header.is_empty() && variant != "candidate" {
                    return Err(format!(
                        "the gateway sent the smoke test to `{variant}`, not the candidate"
                    ));
                }
                let v: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| format!("the answer to the input example is not JSON: {e}"))?;
                let got = prediction_rows(&v);
                if let (Some(want), Some(got)) = (rows, got)
                    && *want != got
                {
                    return Err(format!(
                        "the input example has {want} rows but {got} predictions came back"
                    ));
                }
                if got.is_none() {
                    return Err(format!(
                        "the answer has no predictions: {}",
                        text.chars().take(300).collect::<String>()
                    ));
                }
            }
            None => {
                let mut req = http.get(format!("{url}/v2/health/ready"));
                if !force_header.is_empty() {
                    req = req.header(force_header, "candidate");
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| format!("GET /v2/health/ready: {e}"))?;
                if !resp.status().is_success() {
                    return Err(format!("GET /v2/health/ready answered {}", resp.status()));
                }
            }
        }
    }
    Ok(())
}

/// The MLflow input example of a package as an `/invocations` body, and its row count.
fn read_example(dir: &Path) -> Option<(String, Option<usize>)> {
    let text = std::fs::read_to_string(dir.join("input_example.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let (body, rows) = match &v {
        serde_json::Value::Array(a) => (serde_json::json!({ "inputs": v }), Some(a.len())),
        serde_json::Value::Object(o) if o.contains_key("columns") && o.contains_key("data") => (
            serde_json::json!({ "dataframe_split": v }),
            o.get("data").and_then(|d| d.as_array()).map(|d| d.len()),
        ),
        serde_json::Value::Object(o)
            if o.contains_key("inputs")
                || o.contains_key("dataframe_split")
                || o.contains_key("instances") =>
        {
            (v.clone(), None)
        }
        _ => (serde_json::json!({ "inputs": v }), None),
    };
    Some((body.to_string(), rows))
}

fn prediction_rows(v: &serde_json::Value) -> Option<usize> {
    match v.get("predictions")? {
        serde_json::Value::Array(a) => Some(a.len()),
        serde_json::Value::Object(o) => o
            .values()
            .next()
            .and_then(|c| c.as_array())
            .map(|a| a.len()),
        _ => None,
    }
}
