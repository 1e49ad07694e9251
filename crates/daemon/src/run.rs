//! `run(listeners, shutdown, options)`: the daemon in the mini-redis shape. The caller
//! binds the API's listener (gateways bind from the config unless given), passes a
//! shutdown future, and every server started here (API, webhook receiver, gateways)
//! stops on that one future, after the engine has drained the model servers.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hoist_gateway::{Gateway, GatewayConfig, Router};
use hoist_registry::Registry;
use hoist_registry::embedded::EmbeddedRegistry;
use hoist_release::config::{Config, Environment};
use hoist_release::journal::Journal;
use hoist_release::kubernetes::TargetKind;
use hoist_targets::ServerProgram;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::cmd::{Cmd, EngineClient};
use crate::engine::{Engine, EngineParts};
use crate::shutdown::stopped;
use crate::target::EnvTarget;
use crate::target::kube::{ClusterEnv, ClusterTarget};
use crate::target::local::{LocalEnv, LocalParts};
use crate::target::pack::Packs;
use crate::views::LogLine;
use hoist_types::Secret;

/// Everything the daemon needs besides its listeners.
pub struct Options {
    pub config: Config,
    pub home: PathBuf,
    pub registry: Arc<dyn Registry>,
    /// The embedded registry, when that is the registry (its change log drives triggers).
    pub embedded: Option<Arc<EmbeddedRegistry>>,
    pub program: ServerProgram,
    /// The API token; `None` generates one into `HOIST_HOME/daemon/token`. A token
    /// read from a file (`HOIST_ADMIN_TOKEN_FILE`) is read again when the file changes.
    pub token: Option<Secret>,
    /// Where relative paths in the config (gate files) start: hoist.toml's directory.
    pub base_dir: PathBuf,
}

/// The daemon's bound listeners.
pub struct Listeners {
    /// The JSON API.
    pub api: TcpListener,
    /// Gateways by environment name; an environment not here binds its `listen`.
    pub gateways: Vec<(String, TcpListener)>,
}

impl Listeners {
    /// Binds the API at the config's `api.listen` (a busy port fails before anything
    /// else starts); gateways bind when the daemon starts.
    pub async fn bind(cfg: &Config) -> anyhow::Result<Listeners> {
        let api = TcpListener::bind(cfg.api.listen)
            .await
            .map_err(|e| anyhow::anyhow!("api.listen {}: {e}", cfg.api.listen))?;
        Ok(Listeners {
            api,
            gateways: Vec::new(),
        })
    }
}

/// A running daemon: its addresses, for callers that show or use them.
pub struct Daemon {
    pub api_addr: SocketAddr,
    pub envs: Vec<(String, SocketAddr)>,
    /// Where each environment takes predictions: its gateway, or on a cluster the
    /// environment's Service.
    pub urls: Vec<(String, String)>,
    /// The API token as it was at start.
    pub token: String,
    pub journal: Arc<Journal>,
    /// The first model's engine.
    pub client: EngineClient,
    /// Every model's engine, in hoist.toml's order.
    pub models: Vec<ModelHandle>,
    pub log: broadcast::Sender<LogLine>,
    /// Stops the daemon as the shutdown future would.
    stop: Option<oneshot::Sender<()>>,
    /// Ends when everything has stopped.
    done: tokio::task::JoinHandle<()>,
}

impl Daemon {
    /// Stop everything now: every model server (gracefully), gateways, API.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.done).await;
    }

    /// Wait until the daemon has stopped (its shutdown future completed).
    pub async fn stopped(&mut self) {
        let _ = (&mut self.done).await;
    }
}

pub fn state_dir(home: &Path) -> PathBuf {
    home.join("daemon")
}

/// Runs the daemon until `shutdown` completes, then stops every server it started.
pub async fn run(
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: Options,
) -> anyhow::Result<()> {
    start(listeners, shutdown, options).await?.stopped().await;
    Ok(())
}

/// What the daemon's state directory gives: the journal, the log directory and the
/// API token.
struct State {
    dir: PathBuf,
    log_dir: PathBuf,
    journal: Arc<Journal>,
    token: Secret,
}

fn open_state(home: &Path, token: Option<Secret>) -> anyhow::Result<State> {
    let dir = state_dir(home);
    let log_dir = dir.join("logs");
    std::fs::create_dir_all(&log_dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", log_dir.display()))?;
    let journal = Arc::new(Journal::open(&dir.join("journal.db"))?);
    let token = match token {
        Some(t) => t,
        None => {
            let t = random_token();
            write_private(&dir.join("token"), &t)?;
            Secret::value(t)
        }
    };
    Ok(State {
        dir,
        log_dir,
        journal,
        token,
    })
}

/// One model's engine, as the API and the CLI reach it.
#[derive(Clone)]
pub struct ModelHandle {
    pub name: String,
    /// The model's single-model projection of hoist.toml ([`Config::per_model`]).
    pub config: Arc<Config>,
    pub client: EngineClient,
}

/// Starts the daemon: one engine per model (`[[models]]`, or the one `[model]`),
/// each resuming what the journal holds of its model, then every server starts; all
/// stop when `shutdown` completes or [`Daemon::stop`] is called.
pub async fn start(
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    opts: Options,
) -> anyhow::Result<Daemon> {
    let state = open_state(&opts.home, opts.token.clone())?;
    let api_addr = listeners.api.local_addr()?;
    let bound = bind_environments(&opts.config, listeners.gateways).await?;
    let webhook = webhook_listener(&opts.config).await?;
    let (log, _) = broadcast::channel(1024);
    let (stop_tx, stop_rx) = watch::channel(false);
    let events = crate::events::Events::default();
    let envs: Vec<(String, SocketAddr)> = bound
        .iter()
        .map(|(env, l)| {
            let addr = l.as_ref().and_then(|l| l.local_addr().ok());
            (env.name.clone(), addr.unwrap_or(env.listen))
        })
        .collect();
    let packs = env_packs(&opts, &state, &bound)?;
    // Each model: its own engine, command channel and gateway per environment.
    let mut models = Vec::new();
    let mut engines = Vec::new();
    let mut urls = Vec::new();
    let mut served: Vec<Vec<(String, Gateway)>> = bound.iter().map(|_| Vec::new()).collect();
    for one in opts.config.per_model() {
        let cfg = Arc::new(one);
        let notifier = crate::notify::Notifier::new(&cfg.notifications, &|k| std::env::var(k).ok())
            .map_err(|e| anyhow::anyhow!("model {}: {e}", cfg.model.name))?;
        let (tx, rx) = mpsc::channel(1024);
        let wiring = Wiring {
            cfg: cfg.clone(),
            opts: &opts,
            journal: state.journal.clone(),
            log_dir: state.log_dir.clone(),
            tx: tx.clone(),
            log: log.clone(),
            packs: &packs,
        };
        let mut gateways = Vec::new();
        for env in &cfg.environments {
            let Some(i) = bound.iter().position(|(e, _)| e.name == env.name) else {
                anyhow::bail!(
                    "model {}: environment {} is not one of the file's [[environments]]",
                    cfg.model.name,
                    env.name
                );
            };
            let gateway = env_gateway(env)?;
            let addr = bound[i].1.as_ref().map(|_| envs[i].1);
            if addr.is_some() {
                served[i].push((cfg.model.name.clone(), gateway.clone()));
            }
            gateways.push((env.clone(), gateway, addr));
        }
        let (targets, model_urls) = wiring.targets(gateways).await?;
        for (env, url) in model_urls {
            if !urls.iter().any(|(e, _)| *e == env) {
                urls.push((env, url));
            }
        }
        let engine = wiring.engine(targets, notifier).with_events(events.clone());
        models.push(ModelHandle {
            name: cfg.model.name.clone(),
            config: cfg,
            client: EngineClient { tx },
        });
        engines.push((engine, rx));
    }
    // Promotions from this point on reach the triggers; earlier ones, catch_up.
    let start_seq = opts
        .embedded
        .as_ref()
        .and_then(|r| r.last_change_seq().ok());
    futures_util::future::join_all(engines.iter_mut().map(|(e, _)| e.recover())).await;
    for ((env, listener), gateways) in bound.into_iter().zip(served) {
        if let Some(listener) = listener {
            serve_environment(&env.name, listener, gateways, stopped(stop_rx.clone()));
        }
    }
    urls.sort_by_key(|(e, _)| envs.iter().position(|(n, _)| n == e));
    let mut running = Vec::new();
    for (mut engine, rx) in engines {
        engine.catch_up().await;
        running.push(tokio::spawn(engine.run(rx)));
    }
    let live = crate::dashboard::Live::new(events, log.clone(), stop_rx.clone());
    let poller = crate::trigger::spawn(
        &opts.config,
        models
            .iter()
            .map(|m| (m.config.clone(), m.client.tx.clone()))
            .collect(),
        opts.registry.clone(),
        opts.embedded.clone(),
        start_seq,
        webhook,
        stop_rx.clone(),
    );
    let first = models[0].clone();
    let app = crate::api::router(crate::api::ApiState {
        client: first.client.clone(),
        journal: state.journal.clone(),
        token: state.token.clone(),
        reads_need_token: !api_addr.ip().is_loopback(),
        config: first.config.clone(),
        registry: opts.registry.clone(),
        live: live.clone(),
        models: models.clone(),
    });
    crate::dashboard::spawn_sampler(&models, live);
    serve_api(listeners.api, app, stop_rx.clone(), &state.dir)?;
    let (stop, stop_now) = oneshot::channel::<()>();
    let clients = models.iter().map(|m| m.client.clone()).collect();
    let done = tokio::spawn(supervise(
        shutdown, stop_now, clients, running, stop_tx, poller,
    ));
    Ok(Daemon {
        api_addr,
        envs,
        urls,
        token: state.token.get(),
        journal: state.journal,
        client: first.client,
        models,
        log,
        stop: Some(stop),
        done,
    })
}

/// Serves an environment's listener: a router sending each request to its model's
/// gateway (`/v2/models/{name}/…`, `/models/{name}/invocations`; with one model,
/// everything to it).
fn serve_environment(
    env: &str,
    listener: TcpListener,
    gateways: Vec<(String, Gateway)>,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let router = Router::new(env);
    for (model, g) in gateways {
        router.insert(&model, g);
    }
    tokio::spawn(async move {
        let _ = router.serve(listener, stop).await;
    });
}

/// Serves the API until the daemon stops, and tells the CLI where it is.
fn serve_api(
    listener: TcpListener,
    app: axum::Router,
    stop: watch::Receiver<bool>,
    dir: &Path,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let api = axum::serve(listener, app).with_graceful_shutdown(stopped(stop));
    tokio::spawn(async move {
        let _ = api.await;
    });
    std::fs::write(dir.join("api"), format!("http://{addr}\n"))?;
    Ok(())
}

/// Waits for the shutdown future (or [`Daemon::stop`]), then stops every engine
/// (each drains its model's servers) and after them every server.
async fn supervise(
    shutdown: impl Future<Output = ()> + Send + 'static,
    stop_now: oneshot::Receiver<()>,
    clients: Vec<EngineClient>,
    engines: Vec<tokio::task::JoinHandle<()>>,
    stop: watch::Sender<bool>,
    poller: Option<hoist_registry::watch::PollerHandle>,
) {
    tokio::select! {
        _ = shutdown => {}
        _ = stop_now => {}
    }
    // Every engine drains its model's servers at once.
    futures_util::future::join_all(
        clients
            .iter()
            .map(|c| c.call(|reply| Cmd::Shutdown { reply })),
    )
    .await;
    futures_util::future::join_all(engines).await;
    let _ = stop.send(true);
    drop(poller);
}

/// Each environment's listener (none on a cluster, whose Gateway or Service carries
/// the traffic), in the config's order.
async fn bind_environments(
    cfg: &Config,
    mut given: Vec<(String, TcpListener)>,
) -> anyhow::Result<Vec<(Environment, Option<TcpListener>)>> {
    let on_cluster = cfg.target == TargetKind::Kubernetes;
    let mut out = Vec::new();
    for env in &cfg.environments {
        let listener = match given.iter().position(|(n, _)| *n == env.name) {
            _ if on_cluster => None,
            Some(i) => Some(given.swap_remove(i).1),
            None => Some(TcpListener::bind(env.listen).await.map_err(|e| {
                anyhow::anyhow!("environment {} (listen {}): {e}", env.name, env.listen)
            })?),
        };
        out.push((env.clone(), listener));
    }
    Ok(out)
}

/// A model's gateway in `env`.
fn env_gateway(env: &Environment) -> anyhow::Result<Gateway> {
    let feedback_token = match &env.feedback_token_env {
        Some(var) => match Secret::from_env(var, &|k| std::env::var(k).ok()) {
            Ok(Some(t)) => Some(t),
            Ok(None) => anyhow::bail!(
                "environment {}: feedback_token_env names {var}, which holds no token: \
                 set it (or {var}_FILE) to the token the application sends with its labels",
                env.name
            ),
            Err(e) => anyhow::bail!("environment {}: feedback_token_env: {e}", env.name),
        },
        None => None,
    };
    Ok(Gateway::new(GatewayConfig {
        name: env.name.clone(),
        sticky_header: env.sticky_header.clone(),
        sticky_cookie: env.sticky_cookie.clone(),
        force_header: env.force_header.clone(),
        response_timeout: env.response_timeout.0,
        feedback_token,
        ..GatewayConfig::default()
    }))
}

/// MLflow webhooks, when configured: verified deliveries join the poller's events.
async fn webhook_listener(cfg: &Config) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = cfg.registry.webhook_listen else {
        return Ok(None);
    };
    let var = &cfg.registry.webhook_secret_env;
    match Secret::from_env(var, &|k| std::env::var(k).ok()) {
        Ok(Some(_)) => {}
        Ok(None) => anyhow::bail!(
            "registry.webhook_listen is set but {var} (registry.webhook_secret_env) holds no secret: \
             set it (or {var}_FILE) to the secret the MLflow webhook was created with (`hoist mlflow connect`)"
        ),
        Err(e) => anyhow::bail!("registry.webhook_secret_env: {e}"),
    }
    Ok(Some(TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!("registry.webhook_listen {addr}: {e}")
    })?))
}

/// What the targets are built from.
struct Wiring<'a> {
    cfg: Arc<Config>,
    opts: &'a Options,
    journal: Arc<Journal>,
    log_dir: PathBuf,
    tx: mpsc::Sender<Cmd>,
    log: broadcast::Sender<LogLine>,
    /// Each local environment's shared servers, with `[server] pack`.
    packs: &'a BTreeMap<String, Arc<Packs>>,
}

type Targets = Vec<(Environment, Box<dyn EnvTarget>)>;
type Built = (Targets, Vec<(String, String)>);

impl Wiring<'_> {
    /// Each environment's target for this model: local (its gateway, on the
    /// environment's address, and servers) or its cluster (no address).
    async fn targets(
        &self,
        gateways: Vec<(Environment, Gateway, Option<SocketAddr>)>,
    ) -> anyhow::Result<Built> {
        let (mut targets, mut urls) = (vec![], vec![]);
        let http = crate::artifact::http_client();
        let mut first_cluster = None;
        for (env, gateway, addr) in gateways {
            let name = env.name.clone();
            let target: Box<dyn EnvTarget> = match addr {
                Some(addr) => Box::new(LocalEnv::new(
                    env.clone(),
                    addr,
                    gateway,
                    self.local(&http, &name),
                )),
                None => {
                    let live = self
                        .journal
                        .live(&self.cfg.model.name, &name)?
                        .map(|l| crate::target::kube::pin(&l.model, &l.version, &l.digest, None));
                    let c = ClusterEnv::connect(
                        &self.cfg,
                        &env,
                        live,
                        self.tx.clone(),
                        self.log.clone(),
                    )
                    .await?;
                    first_cluster.get_or_insert_with(|| c.cluster.clone());
                    let model = self.cfg.model.name.clone();
                    Box::new(ClusterTarget::new(
                        c,
                        model,
                        env.replicas,
                        http.clone(),
                        self.log.clone(),
                    ))
                }
            };
            urls.push((name, target.url()));
            targets.push((env, target));
        }
        // In-cluster replicas of the controller: only the Lease holder drives.
        if let (Ok(lease), Some(c)) = (std::env::var("HOIST_LEASE"), first_cluster) {
            crate::target::kube::lead(c, &lease).await?;
        }
        Ok((targets, urls))
    }

    /// The engine, on the wall clock, without failure points.
    fn engine(&self, targets: Targets, notifier: crate::notify::Notifier) -> Engine {
        Engine::new(EngineParts {
            cfg: self.cfg.clone(),
            journal: self.journal.clone(),
            registry: self.opts.registry.clone(),
            base_dir: self.opts.base_dir.clone(),
            targets,
            tx: self.tx.clone(),
            log: self.log.clone(),
            notifier,
            clock: Arc::new(crate::clock::SystemClock),
            failpoints: Default::default(),
        })
    }

    fn local(&self, http: &reqwest::Client, env: &str) -> LocalParts {
        LocalParts {
            cfg: self.cfg.clone(),
            program: self.opts.program.clone(),
            log_dir: self.log_dir.clone(),
            envs_dir: self.opts.home.join("envs"),
            registry: self.opts.registry.clone(),
            tx: self.tx.clone(),
            log: self.log.clone(),
            http: http.clone(),
            packs: self.packs.get(env).cloned(),
        }
    }
}

/// `[server] pack`: the shared servers of each environment served on this machine
/// (none without it), in `daemon/packs/<env>/` of the state directory.
fn env_packs(
    opts: &Options,
    state: &State,
    bound: &[(Environment, Option<TcpListener>)],
) -> anyhow::Result<BTreeMap<String, Arc<Packs>>> {
    let cfg = &opts.config;
    let mut packs = BTreeMap::new();
    if !cfg.server.pack {
        return Ok(packs);
    }
    let http = crate::artifact::http_client();
    for (env, listener) in bound {
        if listener.is_none() {
            continue;
        }
        let mut template = hoist_targets::ServerSpec::new(opts.program.clone(), "", "pack", "");
        template.extra_args = vec!["--runtime".into(), cfg.server.runtime.clone()];
        template.extra_args.extend(cfg.server_args(env));
        template.ready_timeout = cfg.server.ready_timeout.0;
        template.log_file = Some(state.log_dir.join("packs.log"));
        let dir = state.dir.join("packs").join(&env.name);
        let p = Packs::new(&env.name, &dir, template, http.clone())
            .map_err(|e| anyhow::anyhow!("server.pack: {}: {e}", dir.display()))?;
        packs.insert(env.name.clone(), p);
    }
    Ok(packs)
}

pub(crate) fn random_token() -> String {
    use std::io::Read;
    let mut b = [0u8; 24];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}
