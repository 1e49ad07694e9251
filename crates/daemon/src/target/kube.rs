//! Environments on a Kubernetes cluster (`target = "kubernetes"`): the engine's
//! actions become calls of [`hoist_targets::kubernetes::Cluster`], one environment's
//! calls strictly in order (a worker task per environment), each result reported
//! back to the engine as a [`Cmd`]. [`ClusterTarget`] is the environment's
//! [`EnvTarget`].
//!
//! | action | on the cluster |
//! |---|---|
//! | start candidate | apply the candidate Deployment (model pinned by digest), wait for its rollout; a pod that cannot start fails the release with the reason |
//! | set weight | the HTTPRoute's weights in one apply (Gateway API), or a replica ratio |
//! | promote | stable Deployment rolled to the candidate's model, then all traffic to stable, candidate scaled to 0 |
//! | stop candidate (rollback) | all traffic to stable in one apply, then candidate scaled to 0 |
//! | analysis | Prometheus over its HTTP API ([`crate::live::prometheus`]), the same judges as on one machine |
//!
//! With `kubernetes.split = "hoist"`, hoist's gateway (`hoist gateway`, a Deployment
//! in front of both variants' Services) splits the traffic: weights, shadow mirroring
//! and the candidate's presence are set through its admin API
//! ([`super::gateway_admin`]), in the same worker order as the cluster calls, and
//! analysis judges its counters exactly as on one machine
//! ([`crate::live::gateway`]): shadow comparisons and feedback labels included.
//!
//! Gates and smoke tests reach the variants' Services at `kubernetes.service_url`.

use crate::views::WindowOf;
use std::sync::Arc;
use std::time::Duration;

use hoist_release::config::{Config, Environment};
use hoist_release::machine::ReleaseId;
use hoist_targets::kubernetes::{Cluster, ModelPin, Object, Split, SplitMode, Variant, render};
use tokio::sync::{broadcast, mpsc};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use hoist_release::journal::Live;

use super::gateway_admin::GatewayAdmin;
use super::{Candidate, EnvTarget, Serving};
use crate::clock::now_ms;
use crate::cmd::{Cmd, Started};
use crate::live::gateway::{Counters, GatewayMetrics};
use crate::live::prometheus::PrometheusMetrics;
use crate::live::{LiveMetrics, StepShape};
use crate::prometheus::{PrometheusSource, Queries};
use crate::views::{LogLine, ServerView, WindowView};

/// One operation on an environment's objects.
enum Op {
    Deploy {
        id: ReleaseId,
        pin: ModelPin,
        replicas: i32,
    },
    Weight {
        id: ReleaseId,
        weight: u32,
    },
    Promote {
        id: ReleaseId,
    },
    Rollback {
        id: ReleaseId,
    },
    /// hoist's gateway only: mirror this percent of stable's requests.
    Mirror {
        percent: u32,
    },
    /// hoist's gateway only: the candidate (this version) can be routed to.
    Candidate {
        version: String,
    },
}

/// One environment on the cluster.
pub struct ClusterEnv {
    /// The environment's name in hoist.toml.
    pub name: String,
    pub cluster: Arc<Cluster>,
    /// Where the controller reaches each variant's Service.
    pub stable_url: String,
    pub candidate_url: String,
    /// The whole environment's Service (both variants).
    pub app_url: String,
    /// Live metrics for analysis; `None` when `kubernetes.prometheus_url` is unset.
    pub prometheus: Option<Arc<PrometheusSource>>,
    /// The last split applied (with its effective share, for the replica ratio).
    pub split: std::sync::Mutex<Option<Split>>,
    /// hoist's gateway's admin API, with `kubernetes.split = "hoist"`.
    pub gateway: Option<Arc<GatewayAdmin>>,
    ops: mpsc::UnboundedSender<Op>,
}

/// A model version as the pods pin it.
pub fn pin(model: &str, version: &str, digest: &str, artifact: Option<String>) -> ModelPin {
    ModelPin {
        name: model.to_string(),
        version: version.to_string(),
        digest: digest.to_string(),
        artifact,
    }
}

impl ClusterEnv {
    /// Connects to the cluster (KUBECONFIG, ~/.kube/config or the pod's service
    /// account) for environment `env` and applies the Services every release routes
    /// through.
    /// `stable` is what the journal says is live (its Deployment is left alone).
    pub async fn connect(
        cfg: &Config,
        env: &Environment,
        stable: Option<ModelPin>,
        tx: mpsc::Sender<Cmd>,
        log: broadcast::Sender<LogLine>,
    ) -> anyhow::Result<Arc<ClusterEnv>> {
        let k = &cfg.kubernetes;
        let image = k.require_image().map_err(|e| anyhow::anyhow!("{e}"))?;
        let source = hoist_targets::kubernetes::config::model_source(cfg)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // Before the first release nothing is live; the stable Deployment is only ever
        // applied with a real version (by promote), never with this placeholder.
        let zeros = format!("sha256:{}", "0".repeat(64));
        let placeholder = cfg
            .model
            .artifact_repository
            .as_ref()
            .map(|r| format!("{r}@{zeros}"));
        let mut stable =
            stable.unwrap_or_else(|| pin(&cfg.model.name, "0", &zeros, placeholder.clone()));
        // The journal keeps no artifact: these objects are the Services, the pods'
        // artifact comes with each candidate (and from `hoist.dev/artifact`).
        if stable.artifact.is_none() {
            stable.artifact = placeholder;
        }
        let spec = hoist_targets::kubernetes::config::app_spec(
            cfg, env, image, &stable, None, 0, &source, "",
        );
        let manifests = render(&spec).map_err(|e| anyhow::anyhow!("{}: {e}", env.name))?;
        let namespace = spec.namespace.clone();
        let url = |v: Variant| k.service_url_for(&spec.name(v), &namespace);
        let (stable_url, candidate_url) = (url(Variant::Stable), url(Variant::Candidate));
        let app_url = k.service_url_for(&spec.app, &namespace);
        let selector = format!("namespace=\"{namespace}\",hoist_dev_env=\"{}\"", env.name);
        let prometheus = match &k.prometheus_url {
            Some(u) => Some(Arc::new(
                PrometheusSource::new(u, Queries::server(), &selector)
                    .map_err(|e| anyhow::anyhow!("kubernetes.prometheus_url: {e}"))?
                    .with_variant_label(crate::prometheus::SERVICE_MONITOR_VARIANT_LABEL),
            )),
            None => None,
        };
        let gateway = spec.hoist_gateway.as_ref().map(|_| {
            let analysis = cfg.analysis.with(&env.analysis);
            Arc::new(GatewayAdmin::new(
                &k.gateway_url_for(&spec.gateway_name(), &namespace),
                &stable.version,
                analysis.feedback,
                analysis.enabled,
            ))
        });
        let cluster = Cluster::connect(spec, &k.field_manager)
            .await
            .map_err(|e| anyhow::anyhow!("environment {}: {e}", env.name))?;
        // The Services releases route through; the rest (autoscaler, disruption budget,
        // network policy, ServiceMonitor, RBAC) comes with `hoist render k8s`, applied
        // once by whoever installs the controller: its Role allows no more than this.
        for o in &manifests.objects {
            if matches!(o, Object::Service(_)) {
                cluster
                    .apply_object(o)
                    .await
                    .map_err(|e| anyhow::anyhow!("environment {}: {e}", env.name))?;
            }
        }
        let (ops, rx) = mpsc::unbounded_channel();
        let this = Arc::new(ClusterEnv {
            name: env.name.clone(),
            cluster: Arc::new(cluster),
            stable_url,
            candidate_url,
            app_url,
            prometheus,
            split: std::sync::Mutex::new(None),
            gateway,
            ops,
        });
        let timeout = k.rollout_timeout.0;
        tokio::spawn(worker(this.clone(), env.name.clone(), rx, tx, log, timeout));
        Ok(this)
    }

    pub fn deploy(&self, id: ReleaseId, pin: ModelPin, replicas: usize) {
        let _ = self.ops.send(Op::Deploy {
            id,
            pin,
            replicas: replicas.clamp(1, 1000) as i32,
        });
    }

    pub fn set_weight(&self, id: ReleaseId, weight: u32) {
        let _ = self.ops.send(Op::Weight { id, weight });
    }

    pub fn promote(&self, id: ReleaseId) {
        let _ = self.ops.send(Op::Promote { id });
    }

    pub fn rollback(&self, id: ReleaseId) {
        let _ = self.ops.send(Op::Rollback { id });
    }

    pub fn mirror(&self, percent: u32) {
        if self.gateway.is_some() {
            let _ = self.ops.send(Op::Mirror { percent });
        }
    }

    pub fn candidate(&self, version: &str) {
        if self.gateway.is_some() {
            let _ = self.ops.send(Op::Candidate {
                version: version.to_string(),
            });
        }
    }

    /// How the split is made, for `hoist status`: the Gateway API's exact weights, or
    /// whole replicas (with the share they really give).
    pub fn split_note(&self) -> String {
        match &*self.split.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(s) if s.mode == SplitMode::ReplicaRatio => format!(
                "replica ratio: {} stable / {} candidate pods ≈ {}% (asked {}%)",
                s.stable_replicas.unwrap_or(0),
                s.candidate_replicas.unwrap_or(0),
                s.effective,
                s.requested
            ),
            Some(s) if s.mode == SplitMode::Hoist => {
                format!("hoist's gateway {}/{}", 100 - s.effective, s.effective)
            }
            Some(s) => format!("HTTPRoute weights {}/{}", 100 - s.effective, s.effective),
            // No candidate: every request goes to stable.
            None => match self.cluster.mode() {
                SplitMode::Gateway => "HTTPRoute weights 100/0 (no candidate)".into(),
                SplitMode::ReplicaRatio => {
                    "replica ratio, no candidate (no Gateway configured)".into()
                }
                SplitMode::Hoist => "hoist's gateway 100/0 (no candidate)".into(),
            },
        }
    }
}

/// Leader election for replicas of an in-cluster controller (`HOIST_LEASE` =
/// `namespace/name`, holder `HOIST_POD_NAME`): waits until this replica holds the
/// Lease, then renews it in the background. A replica that loses it exits at once
/// (its pod restarts and waits again), so two never drive the same release.
pub async fn lead(cluster: Arc<Cluster>, lease: &str) -> anyhow::Result<()> {
    let Some((ns, name)) = lease.split_once('/') else {
        anyhow::bail!("HOIST_LEASE `{lease}` must be namespace/name");
    };
    let holder = std::env::var("HOIST_POD_NAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("hoist-{}", std::process::id()));
    let (ns, name) = (ns.to_string(), name.to_string());
    const TERM: Duration = Duration::from_secs(15);
    let mut said = false;
    loop {
        match cluster.try_acquire_lease(&ns, &name, &holder, TERM).await {
            Ok(true) => break,
            Ok(false) if !said => {
                eprintln!("hoist: another replica holds Lease {ns}/{name}; waiting to lead");
                said = true;
            }
            Ok(false) => {}
            Err(e) => eprintln!("hoist: Lease {ns}/{name}: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    eprintln!("hoist: {holder} leads (Lease {ns}/{name})");
    tokio::spawn(async move {
        let mut failures = 0;
        loop {
            tokio::time::sleep(TERM / 3).await;
            match cluster.try_acquire_lease(&ns, &name, &holder, TERM).await {
                Ok(true) => failures = 0,
                Ok(false) => {
                    eprintln!("hoist: lost Lease {ns}/{name} to another replica; exiting");
                    std::process::exit(1);
                }
                Err(e) => {
                    failures += 1;
                    eprintln!("hoist: renewing Lease {ns}/{name}: {e}");
                    if failures >= 2 {
                        // Before the Lease can expire, another replica may take it.
                        eprintln!("hoist: cannot renew Lease {ns}/{name}; exiting");
                        std::process::exit(1);
                    }
                }
            }
        }
    });
    Ok(())
}

/// Performs one environment's operations in order.
async fn worker(
    env: Arc<ClusterEnv>,
    name: String,
    mut rx: mpsc::UnboundedReceiver<Op>,
    tx: mpsc::Sender<Cmd>,
    log: broadcast::Sender<LogLine>,
    timeout: Duration,
) {
    let say = |release: Option<ReleaseId>, message: String| {
        tracing::info!("{message}");
        let _ = log.send(LogLine {
            at_ms: now_ms(),
            release,
            message,
        });
    };
    while let Some(op) = rx.recv().await {
        let deadline = tokio::time::Instant::now() + timeout;
        let c = &env.cluster;
        match op {
            Op::Deploy { id, pin, replicas } => {
                say(
                    Some(id),
                    format!(
                        "release {id}: {name}: applying the candidate Deployment (v{}, {}) and waiting for its rollout",
                        pin.version, pin.digest
                    ),
                );
                let result = match c.deploy(Variant::Candidate, &pin, Some(replicas)).await {
                    Ok(()) => c.wait_rollout(Variant::Candidate, deadline).await.map(drop),
                    Err(e) => Err(e),
                };
                let result = result
                    .map(|()| Started::default())
                    .map_err(|e| e.to_string());
                let _ = tx
                    .send(Cmd::CandidateStarted {
                        id,
                        env: name.clone(),
                        result,
                    })
                    .await;
            }
            Op::Weight { id, weight } => match set_weight(&env, weight, deadline).await {
                Ok(split) => {
                    if split.mode == SplitMode::ReplicaRatio && split.effective != split.requested {
                        say(
                            Some(id),
                            format!(
                                "release {id}: {name}: {weight}% asked; {} stable and {} candidate pods give {}%",
                                split.stable_replicas.unwrap_or(0),
                                split.candidate_replicas.unwrap_or(0),
                                split.effective
                            ),
                        );
                    }
                    *env.split.lock().unwrap_or_else(|p| p.into_inner()) = Some(split);
                }
                Err(e) => {
                    let _ = tx
                        .send(Cmd::TargetFailed {
                            id,
                            env: name.clone(),
                            reason: format!("setting {weight}% on the cluster: {e}"),
                        })
                        .await;
                }
            },
            Op::Promote { id } => match promote(&env, deadline).await {
                Ok(pin) => {
                    *env.split.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    say(
                        Some(id),
                        format!(
                            "release {id}: {name}: the stable Deployment runs v{} on the cluster",
                            pin.version
                        ),
                    );
                }
                Err(e) => say(
                    Some(id),
                    format!(
                        "release {id}: {name}: PROMOTION ON THE CLUSTER FAILED: {e}; the journal has the new version live: \
                         fix the cause and run `hoist rollback --env {name}` or deploy again"
                    ),
                ),
            },
            Op::Rollback { id } => match rollback(&env, deadline).await {
                Ok(()) => {
                    *env.split.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    say(
                        Some(id),
                        format!(
                            "release {id}: {name}: all traffic on stable, candidate scaled to 0"
                        ),
                    );
                }
                Err(e) => say(
                    Some(id),
                    format!("release {id}: {name}: ROLLBACK ON THE CLUSTER FAILED: {e}"),
                ),
            },
            Op::Mirror { percent } => {
                if let Some(g) = &env.gateway
                    && let Err(e) = g.set(|d| d.shadow_percent = percent).await
                {
                    say(None, format!("{name}: mirroring {percent}%: {e}"));
                }
            }
            Op::Candidate { version } => {
                if let Some(g) = &env.gateway {
                    g.mark_candidate();
                    if let Err(e) = g.set(|d| d.candidate_version = Some(version.clone())).await {
                        say(
                            None,
                            format!("{name}: routing to candidate v{version}: {e}"),
                        );
                    }
                }
            }
        }
    }
}

/// The candidate's share: hoist's gateway's weight (the cluster's objects stay), or
/// the cluster's split.
async fn set_weight(
    env: &ClusterEnv,
    weight: u32,
    deadline: tokio::time::Instant,
) -> Result<Split, String> {
    let split = env
        .cluster
        .set_weights(weight, deadline)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(g) = &env.gateway {
        g.set(|d| d.candidate_weight = weight).await?;
    }
    Ok(split)
}

/// Promotion. With hoist's gateway: the stable Deployment rolled to the candidate's
/// model, then all traffic (and no mirror) on stable at the gateway, and only then
/// the candidate scaled to zero, so the gateway never routes to a Service without
/// pods.
async fn promote(env: &ClusterEnv, deadline: tokio::time::Instant) -> Result<ModelPin, String> {
    let c = &env.cluster;
    let Some(g) = &env.gateway else {
        return c.promote(deadline).await.map_err(|e| e.to_string());
    };
    let pin = c
        .promote_stable(deadline)
        .await
        .map_err(|e| e.to_string())?;
    g.set(|d| {
        d.candidate_weight = 0;
        d.shadow_percent = 0;
        d.candidate_version = None;
        d.stable_version = pin.version.clone();
    })
    .await?;
    c.retire_candidate().await.map_err(|e| e.to_string())?;
    Ok(pin)
}

/// Rollback: all traffic on stable first (at hoist's gateway, or the cluster's
/// split), then the candidate scaled to zero.
async fn rollback(env: &ClusterEnv, deadline: tokio::time::Instant) -> Result<(), String> {
    if let Some(g) = &env.gateway {
        g.set(|d| {
            d.candidate_weight = 0;
            d.shadow_percent = 0;
            d.candidate_version = None;
        })
        .await?;
    }
    env.cluster
        .rollback(deadline)
        .await
        .map_err(|e| e.to_string())
}

/// An environment on a cluster, as the engine drives it.
pub struct ClusterTarget {
    env: Arc<ClusterEnv>,
    /// The pipeline's model (pods pin it by name, version and digest).
    model: String,
    replicas: usize,
    http: reqwest::Client,
    log: broadcast::Sender<LogLine>,
}

impl ClusterTarget {
    pub fn new(
        env: Arc<ClusterEnv>,
        model: String,
        replicas: usize,
        http: reqwest::Client,
        log: broadcast::Sender<LogLine>,
    ) -> ClusterTarget {
        ClusterTarget {
            env,
            model,
            replicas,
            http,
            log,
        }
    }

    /// No journal record (a new controller, or its journal was lost): take the stable
    /// version from the stable Deployment's `hoist.dev/*` annotations, and roll back a
    /// candidate left with pods or traffic (no release of this journal owns it), so two
    /// versions are never left half-applied.
    async fn adopt(&self) -> Option<Serving> {
        let name = &self.env.name;
        let say = |m: String| crate::log::say(&self.log, None, m);
        let live = match self.env.cluster.live().await {
            Ok(l) => l,
            Err(e) => {
                say(format!("{name}: cannot read the cluster: {e}"));
                return None;
            }
        };
        let serving = live.stable.as_ref().map(|s| {
            say(format!(
                "{name}: no journal record; the cluster serves v{} ({}) by its annotations",
                s.pin.version, s.pin.digest
            ));
            Serving {
                version: s.pin.version.clone(),
                digest: s.pin.digest.clone(),
                release_id: 0,
            }
        });
        let leftover = live.candidate.as_ref().is_some_and(|v| v.replicas > 0);
        if live.stable.is_some() && (leftover || live.candidate_weight > 0) {
            say(format!(
                "{name}: a candidate with pods or {}% of traffic belongs to no release here: rolling back to stable",
                live.candidate_weight
            ));
            self.env.rollback(0);
        }
        serving
    }
}

impl EnvTarget for ClusterTarget {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    fn url(&self) -> String {
        self.env.app_url.clone()
    }

    fn split_note(&self) -> Option<String> {
        Some(self.env.split_note())
    }

    fn restore(&mut self, live: Option<Live>) -> BoxFuture<'_, Option<Serving>> {
        async move {
            match live {
                // The cluster keeps serving while the controller is away.
                Some(l) => Some(Serving {
                    version: l.version,
                    digest: l.digest,
                    release_id: l.release_id,
                }),
                None => self.adopt().await,
            }
        }
        .boxed()
    }

    fn start_candidate(&mut self, c: Candidate) {
        let pin = pin(&self.model, &c.version, &c.digest, c.artifact.clone());
        self.env.deploy(c.id, pin, self.replicas);
    }

    fn take_candidate(&mut self, version: &str, started: Started, known: bool) -> bool {
        self.env.candidate(version);
        !started.is_empty() || !known
    }

    fn discard(&mut self, _: Started) {}

    fn set_weight(&mut self, id: ReleaseId, weight: u32) {
        self.env.set_weight(id, weight);
    }

    /// Mirroring is hoist's gateway's: without `split = "hoist"` nothing mirrors.
    fn mirror(&mut self, percent: u32) {
        self.env.mirror(percent);
    }

    fn promote(&mut self, id: ReleaseId) {
        self.env.promote(id);
    }

    fn roll_back(&mut self, id: ReleaseId) {
        self.env.rollback(id);
    }

    /// The cluster keeps serving when the controller stops.
    fn stop(&mut self) -> BoxFuture<'_, ()> {
        async {}.boxed()
    }

    fn variant_url(&self, candidate: bool) -> Option<String> {
        Some(if candidate {
            self.env.candidate_url.clone()
        } else {
            self.env.stable_url.clone()
        })
    }

    /// Straight to the candidate's own Service (no traffic reaches it yet), so no
    /// force header; one round.
    fn smoke_test(&self, path: Option<String>) -> BoxFuture<'static, Result<(), String>> {
        let (http, url) = (self.http.clone(), self.env.candidate_url.clone());
        async move { super::smoke::smoke_test(&http, &url, None, "", path.as_deref(), 1).await }
            .boxed()
    }

    /// hoist's gateway's counters with `split = "hoist"` (predicted classes for drift
    /// too, read by the gateway from the answers: a Service gives no server's own
    /// counters), else Prometheus.
    fn live_metrics(&self, shape: StepShape) -> Box<dyn LiveMetrics> {
        match &self.env.gateway {
            Some(g) => Box::new(GatewayMetrics::new(
                Counters::Remote(g.clone()),
                self.model.clone(),
                self.http.clone(),
                Vec::new(),
                Vec::new(),
                true,
                shape,
            )),
            None => Box::new(PrometheusMetrics {
                source: self.env.prometheus.clone(),
            }),
        }
    }

    /// The cluster's pods are not hoist's processes.
    fn servers(&self, _: bool) -> Vec<ServerView> {
        Vec::new()
    }

    /// hoist's gateway's counters since the candidate arrived, as analysis last read
    /// them (with `split = "hoist"`); otherwise no gateway of hoist's carries traffic.
    fn windows(&self) -> (WindowView, WindowView) {
        match &self.env.gateway {
            Some(g) => {
                let w = g.window();
                (WindowView::of(&w.stable), WindowView::of(&w.candidate))
            }
            None => {
                let none = hoist_gateway::VariantStats::default();
                (WindowView::of(&none), WindowView::of(&none))
            }
        }
    }
}
