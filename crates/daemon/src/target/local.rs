//! An environment on this machine: hoist's gateway in front of supervised
//! `hoist-server` processes (`hoist_targets::start_replicas`), one set per variant.
//!
//! A model version whose `MLmodel` has no `onnx` flavor but a `python_function` one
//! (a pickled scikit-learn pipeline, a custom `PythonModel`, ...) is served by
//! MLflow's own scoring server instead, supervised the same way: with
//! `[server] python`, or a Python environment made once from the model's
//! `requirements.txt` (`hoist_targets::pyenv`).

use crate::views::WindowOf;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use hoist_gateway::{Gateway, Routes, Snapshot, Upstream};
use hoist_registry::Registry;
use hoist_release::config::{Config, Environment};
use hoist_release::journal::Live;
use hoist_release::machine::ReleaseId;
use hoist_targets::{ServerKind, ServerProgram, ServerSpec, Supervised};
use tokio::sync::{broadcast, mpsc};

use super::pack::{Packed, Packs};
use super::{Candidate, EnvTarget, Serving};
use crate::cmd::{Cmd, Started};
use crate::live::gateway::{Counters, GatewayMetrics};
use crate::live::{LiveMetrics, StepShape};
use crate::views::{LogLine, ServerView, WindowView};

/// What a local environment needs from the daemon.
#[derive(Clone)]
pub struct LocalParts {
    pub cfg: Arc<Config>,
    pub program: ServerProgram,
    /// Each model server's output goes to a file here.
    pub log_dir: PathBuf,
    /// Python environments made for MLflow models without `[server] python`
    /// (`HOIST_HOME/envs`).
    pub envs_dir: PathBuf,
    /// Where a live version's files come from again when they are gone.
    pub registry: Arc<dyn Registry>,
    pub tx: mpsc::Sender<Cmd>,
    pub log: broadcast::Sender<LogLine>,
    pub http: reqwest::Client,
    /// This environment's shared servers, with `[server] pack`.
    pub packs: Option<Arc<Packs>>,
}

/// One variant's servers: processes of its own, or its place in a pack.
struct Servers {
    version: String,
    servers: Vec<Supervised>,
    packed: Option<Packed>,
}

impl Servers {
    fn own(version: &str, servers: Vec<Supervised>) -> Servers {
        Servers {
            version: version.to_string(),
            servers,
            packed: None,
        }
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        match &self.packed {
            Some(p) => vec![p.addr],
            None => self.servers.iter().map(|s| s.addr()).collect(),
        }
    }
}

/// One environment on this machine.
pub struct LocalEnv {
    env: Environment,
    parts: LocalParts,
    /// Where the gateway listens.
    addr: SocketAddr,
    gateway: Gateway,
    /// Each variant's version and servers (a variant without servers takes no traffic).
    stable: Option<Servers>,
    candidate: Option<Servers>,
    weight: u32,
    /// Percent of stable's requests mirrored to the candidate (shadow steps).
    shadow: u32,
    /// Remember predictions for feedback labels (`analysis.feedback`).
    feedback: bool,
    /// Read a regressor's live values while a candidate takes traffic, for the
    /// live comparison of values (`analysis.enabled`).
    values: bool,
    /// The gateway's counters when the current candidate arrived (or it started).
    baseline: Snapshot,
}

impl LocalEnv {
    pub fn new(
        env: Environment,
        addr: SocketAddr,
        gateway: Gateway,
        parts: LocalParts,
    ) -> LocalEnv {
        let analysis = parts.cfg.analysis.with(&env.analysis);
        let (feedback, values) = (analysis.feedback, analysis.enabled);
        let this = LocalEnv {
            baseline: gateway.metrics(),
            env,
            parts,
            addr,
            gateway,
            stable: None,
            candidate: None,
            weight: 0,
            shadow: 0,
            feedback,
            values,
        };
        if this.feedback {
            this.apply_routes();
        }
        this
    }

    fn say(&self, release: Option<ReleaseId>, message: String) {
        crate::log::say(&self.parts.log, release, message);
    }

    fn apply_routes(&self) {
        let upstream = |s: &Option<Servers>| {
            s.as_ref().map(|s| Upstream {
                version: s.version.clone(),
                model: s.packed.as_ref().map(|p| p.model.clone()),
                addrs: s.addrs(),
            })
        };
        let candidate = self.candidate.is_some();
        self.gateway.set_routes(Routes {
            stable: upstream(&self.stable),
            candidate: upstream(&self.candidate),
            candidate_weight: if candidate { self.weight } else { 0 },
            shadow_percent: if candidate { self.shadow } else { 0 },
            feedback: self.feedback,
            values: self.values,
        });
    }

    /// How to serve `version` from `path`: hoist-server, or MLflow's scoring server
    /// for a model without an onnx flavor (whose Python environment may be made
    /// first: slow the first time, so this runs in the starting task).
    fn spec(
        &self,
        path: &Path,
        version: &str,
        release: Option<ReleaseId>,
    ) -> BoxFuture<'static, Result<ServerSpec, String>> {
        let (parts, env) = (self.parts.clone(), self.env.clone());
        let (path, version) = (path.to_path_buf(), version.to_string());
        async move { server_spec(&parts, &env, &path, &version, release).await }.boxed()
    }

    fn grace(&self) -> Duration {
        self.parts.cfg.server.stop_grace.0
    }
}

/// The server spec of `version` at `path` in `env` (see [`LocalEnv::spec`]).
async fn server_spec(
    parts: &LocalParts,
    env: &Environment,
    path: &Path,
    version: &str,
    release: Option<ReleaseId>,
) -> Result<ServerSpec, String> {
    let cfg = &parts.cfg;
    let program = match ServerKind::of_model(path) {
        ServerKind::Hoist => parts.program.clone(),
        ServerKind::Mlflow => ServerProgram::mlflow(match &cfg.server.python {
            Some(python) => PathBuf::from(python),
            None => {
                let log = parts.log.clone();
                let name = env.name.clone();
                let say = move |m: String| crate::log::say(&log, release, format!("{name}: {m}"));
                hoist_targets::pyenv::ensure_env(path, &parts.envs_dir, Path::new("python3"), &say)
                    .await
                    .map_err(|e| e.to_string())?
            }
        }),
    };
    let mut spec = ServerSpec::new(program, path, cfg.model.name.clone(), version.to_string());
    spec.extra_args = match spec.program.kind {
        ServerKind::Hoist => {
            let mut args = vec!["--runtime".into(), cfg.server.runtime.clone()];
            args.extend(cfg.server_args(env));
            args
        }
        ServerKind::Mlflow => cfg.server.mlflow_args.clone(),
    };
    spec.ready_timeout = cfg.server.ready_timeout.0;
    spec.log_file = Some(parts.log_dir.join(format!("{}-v{version}.log", env.name)));
    Ok(spec)
}

/// How long a server the gateway stopped routing to keeps serving before it is told
/// to stop. A request that chose it just before the switch (on a busy machine its
/// thread may be descheduled between choosing and sending) still finds it listening;
/// stopping at once lost such a request now and then: the server closed the pooled
/// connection and no longer accepted new ones.
pub const RETIRE_AFTER: Duration = Duration::from_secs(1);

/// Stop servers gracefully (drain, then kill after `grace`) without waiting here.
pub fn stop_in_background(servers: Vec<Supervised>, grace: Duration) {
    tokio::spawn(async move {
        futures_util::future::join_all(servers.into_iter().map(|s| s.stop(grace))).await;
    });
}

/// Stop servers that were routed to: [`RETIRE_AFTER`] later, then as
/// [`stop_in_background`].
fn retire(servers: Vec<Supervised>, grace: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(RETIRE_AFTER).await;
        futures_util::future::join_all(servers.into_iter().map(|s| s.stop(grace))).await;
    });
}

/// A supervised server as `hoist status` shows it.
pub(crate) fn server_view(s: &Supervised) -> ServerView {
    ServerView {
        addr: s.addr(),
        pid: s.pid(),
        restarts: s.restarts(),
        status: format!("{:?}", s.status()),
    }
}

fn addrs(servers: &Option<Servers>) -> Vec<SocketAddr> {
    servers.as_ref().map(Servers::addrs).unwrap_or_default()
}

impl LocalEnv {
    fn server_views(&self, servers: &Option<Servers>) -> Vec<ServerView> {
        let Some(s) = servers else {
            return Vec::new();
        };
        if let (Some(p), Some(packs)) = (&s.packed, &self.parts.packs) {
            return packs.view(p);
        }
        s.servers.iter().map(server_view).collect()
    }

    /// Stops what served a variant the gateway no longer routes to, [`RETIRE_AFTER`]
    /// from now (`now`: at once, it never took traffic).
    fn let_go(&self, s: Servers, now: bool) {
        let after = if now { Duration::ZERO } else { RETIRE_AFTER };
        if let (Some(p), Some(packs)) = (s.packed, &self.parts.packs) {
            packs.unload_later(p, after);
        }
        if now {
            stop_in_background(s.servers, self.grace());
        } else {
            retire(s.servers, self.grace());
        }
    }

    /// Whether `path`'s version goes into a pack: with `[server] pack`, when
    /// hoist-server serves it (an MLflow pyfunc keeps a process of its own).
    fn packs_for(&self, path: &Path) -> Option<Arc<Packs>> {
        self.parts
            .packs
            .clone()
            .filter(|_| ServerKind::of_model(path) == ServerKind::Hoist)
    }

    /// Starts the journal's live version again (fetched again when its files are
    /// gone): in a pack, or in processes of its own.
    async fn start_live(&self, live: &Live) -> Result<Servers, String> {
        let mut path = PathBuf::from(&live.path);
        if !path.exists() {
            let registry = self.parts.registry.clone();
            let (_, dir) =
                crate::artifact::fetch(registry, live.model.clone(), live.version.clone())
                    .await
                    .map_err(|e| e.to_string())?;
            path = dir;
        }
        if let Some(packs) = self.packs_for(&path) {
            let model = &self.parts.cfg.model.name;
            let p = packs.load(None, model, &live.version, &path).await?;
            return Ok(Servers {
                version: live.version.clone(),
                servers: Vec::new(),
                packed: Some(p),
            });
        }
        let spec = self.spec(&path, &live.version, None).await?;
        let servers = hoist_targets::start_replicas(&spec, self.env.replicas)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Servers::own(&live.version, servers))
    }
}

impl EnvTarget for LocalEnv {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn restore(&mut self, live: Option<Live>) -> BoxFuture<'_, Option<Serving>> {
        async move {
            let live = live?;
            let name = self.env.name.clone();
            self.say(
                None,
                format!(
                    "{name}: starting v{} (live before the restart)",
                    live.version
                ),
            );
            match self.start_live(&live).await {
                Ok(servers) => {
                    let shared = if servers.packed.is_some() {
                        " (shared server)"
                    } else {
                        ""
                    };
                    self.stable = Some(servers);
                    self.apply_routes();
                    self.say(
                        None,
                        format!("{name}: v{} serving again{shared}", live.version),
                    );
                    Some(Serving {
                        version: live.version,
                        digest: live.digest,
                        release_id: live.release_id,
                    })
                }
                Err(e) => {
                    self.say(
                        None,
                        format!("{name}: the live version could not be restarted: {e}"),
                    );
                    None
                }
            }
        }
        .boxed()
    }

    fn start_candidate(&mut self, c: Candidate) {
        let (tx, env, id) = (self.parts.tx.clone(), self.env.name.clone(), c.id);
        let Some(path) = c.path else {
            tokio::spawn(async move {
                let result = Err("the release has no fetched files".into());
                let _ = tx.send(Cmd::CandidateStarted { id, env, result }).await;
            });
            return;
        };
        if let Some(packs) = self.packs_for(Path::new(&path)) {
            let avoid = self
                .stable
                .as_ref()
                .and_then(|s| s.packed.as_ref())
                .map(|p| p.pack);
            let (model, version) = (self.parts.cfg.model.name.clone(), c.version.clone());
            self.say(
                Some(id),
                format!("release {id}: {env}: loading v{version} into a shared server"),
            );
            tokio::spawn(async move {
                let result = packs
                    .load(avoid, &model, &version, Path::new(&path))
                    .await
                    .map(|p| Started {
                        servers: Vec::new(),
                        packed: Some(p),
                    });
                let _ = tx.send(Cmd::CandidateStarted { id, env, result }).await;
            });
            return;
        }
        let spec = self.spec(Path::new(&path), &c.version, Some(id));
        let replicas = self.env.replicas;
        self.say(
            Some(id),
            format!(
                "release {id}: {env}: starting {replicas} server(s) for v{}",
                c.version
            ),
        );
        tokio::spawn(async move {
            let result = match spec.await {
                Ok(spec) => hoist_targets::start_replicas(&spec, replicas)
                    .await
                    .map(Started::own)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            let _ = tx.send(Cmd::CandidateStarted { id, env, result }).await;
        });
    }

    fn take_candidate(&mut self, version: &str, started: Started, _known: bool) -> bool {
        if started.is_empty() {
            return false;
        }
        self.candidate = Some(Servers {
            version: version.to_string(),
            servers: started.servers,
            packed: started.packed,
        });
        self.baseline = self.gateway.metrics();
        self.apply_routes();
        true
    }

    fn discard(&mut self, started: Started) {
        let s = Servers {
            version: String::new(),
            servers: started.servers,
            packed: started.packed,
        };
        self.let_go(s, true);
    }

    fn set_weight(&mut self, _: ReleaseId, weight: u32) {
        self.weight = weight;
        self.apply_routes();
    }

    fn mirror(&mut self, percent: u32) {
        self.shadow = percent;
        self.apply_routes();
    }

    fn promote(&mut self, _: ReleaseId) {
        let Some(new) = self.candidate.take() else {
            return;
        };
        let old = self.stable.replace(new);
        self.weight = 0;
        self.apply_routes();
        if let Some(old) = old {
            self.let_go(old, false);
        }
    }

    fn roll_back(&mut self, _: ReleaseId) {
        self.weight = 0;
        let old = self.candidate.take();
        self.apply_routes();
        if let Some(old) = old {
            self.let_go(old, false);
        }
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        let grace = self.grace();
        let servers: Vec<Supervised> = [self.candidate.take(), self.stable.take()]
            .into_iter()
            .flatten()
            .flat_map(|s| s.servers)
            .collect();
        let packs = self.parts.packs.clone();
        async move {
            futures_util::future::join_all(servers.into_iter().map(|s| s.stop(grace))).await;
            if let Some(packs) = packs {
                packs.stop(grace).await;
            }
        }
        .boxed()
    }

    fn variant_url(&self, candidate: bool) -> Option<String> {
        let servers = if candidate {
            &self.candidate
        } else {
            &self.stable
        };
        let s = servers.as_ref()?;
        match &s.packed {
            // The shared server scores this model at /models/{name}/invocations.
            Some(p) => Some(format!("http://{}/models/{}", p.addr, p.model)),
            None => s.servers.first().map(|s| format!("http://{}", s.addr())),
        }
    }

    fn smoke_test(&self, path: Option<String>) -> BoxFuture<'static, Result<(), String>> {
        let (http, url) = (self.parts.http.clone(), self.url());
        let (force, replicas) = (self.env.force_header.clone(), self.env.replicas);
        // The environment's listener routes by model (other models may share it).
        let model = self.parts.cfg.model.name.clone();
        async move {
            let model = Some(model.as_str());
            super::smoke::smoke_test(&http, &url, model, &force, path.as_deref(), replicas).await
        }
        .boxed()
    }

    fn live_metrics(&self, shape: StepShape) -> Box<dyn LiveMetrics> {
        Box::new(GatewayMetrics::new(
            Counters::Local(self.gateway.clone()),
            self.parts.cfg.model.name.clone(),
            self.parts.http.clone(),
            addrs(&self.candidate),
            addrs(&self.stable),
            // MLflow's server counts no predicted classes: the gateway does, for both
            // variants alike.
            [&self.candidate, &self.stable]
                .into_iter()
                .flatten()
                .flat_map(|s| &s.servers)
                .any(|s| s.kind() == ServerKind::Mlflow),
            shape,
        ))
    }

    fn servers(&self, candidate: bool) -> Vec<ServerView> {
        self.server_views(if candidate {
            &self.candidate
        } else {
            &self.stable
        })
    }

    fn windows(&self) -> (WindowView, WindowView) {
        let w = self.gateway.metrics().since(&self.baseline);
        (WindowView::of(&w.stable), WindowView::of(&w.candidate))
    }
}
