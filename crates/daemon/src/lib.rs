//! The daemon (`hoist up`): one gateway per environment, supervised model servers,
//! the release engine, registry triggers, and the HTTP API the CLI talks to.
//!
//! State lives under `HOIST_HOME/daemon/`: `journal.db` (every release and
//! transition), `api` (the API's URL, for the CLI), `token` (the API token when none
//! was given, mode 0600) and `logs/` (each model server's output).

pub mod api;
pub mod engine;
pub mod gates;
pub mod kube;
pub mod notify;
pub mod prometheus;
pub mod views;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hoist_gateway::{Gateway, GatewayConfig};
use hoist_registry::Registry;
use hoist_registry::embedded::EmbeddedRegistry;
use hoist_release::config::{Config, Trigger};
use hoist_release::journal::Journal;
use hoist_targets::ServerProgram;
use tokio::sync::{broadcast, mpsc, oneshot};

use engine::{Cmd, Engine, EngineParts, LogLine};

/// Everything `Daemon::start` needs.
pub struct Options {
    pub config: Config,
    pub home: PathBuf,
    pub registry: Arc<dyn Registry>,
    /// The embedded registry, when that is the registry (its change log drives triggers).
    pub embedded: Option<Arc<EmbeddedRegistry>>,
    pub program: ServerProgram,
    /// The API token; `None` generates one into `HOIST_HOME/daemon/token`.
    pub token: Option<String>,
    /// Where relative paths in the config (gate files) start: hoist.toml's directory.
    pub base_dir: PathBuf,
}

/// A running daemon.
pub struct Daemon {
    pub api_addr: SocketAddr,
    pub envs: Vec<(String, SocketAddr)>,
    /// Where each environment takes predictions: its gateway, or on a cluster the
    /// environment's Service.
    pub urls: Vec<(String, String)>,
    pub token: String,
    pub journal: Arc<Journal>,
    pub client: EngineClient,
    pub log: broadcast::Sender<LogLine>,
    shutdown: Vec<oneshot::Sender<()>>,
    _poller: Option<hoist_registry::watch::PollerHandle>,
    engine: tokio::task::JoinHandle<()>,
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
    ) -> Result<T, engine::ApiError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| engine::ApiError::shutting_down())?;
        rx.await.map_err(|_| engine::ApiError::shutting_down())
    }
}

pub fn state_dir(home: &Path) -> PathBuf {
    home.join("daemon")
}

fn random_token() -> String {
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

impl Daemon {
    pub async fn start(opts: Options) -> anyhow::Result<Daemon> {
        let dir = state_dir(&opts.home);
        let log_dir = dir.join("logs");
        std::fs::create_dir_all(&log_dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", log_dir.display()))?;
        let journal = Arc::new(Journal::open(&dir.join("journal.db"))?);
        let token = match opts.token {
            Some(t) => t,
            None => {
                let t = random_token();
                write_private(&dir.join("token"), &t)?;
                t
            }
        };
        let cfg = Arc::new(opts.config);

        // The API first: a busy port fails before anything else starts.
        let api_listener = tokio::net::TcpListener::bind(cfg.api.listen)
            .await
            .map_err(|e| anyhow::anyhow!("api.listen {}: {e}", cfg.api.listen))?;
        let api_addr = api_listener.local_addr()?;

        let mut shutdown = Vec::new();
        let mut gateways = Vec::new();
        let mut envs = Vec::new();
        let mut serving = Vec::new();
        let on_cluster = cfg.target == hoist_release::kubernetes::TargetKind::Kubernetes;
        for env in &cfg.environments {
            let feedback_token = match &env.feedback_token_env {
                Some(var) => match std::env::var(var) {
                    Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
                    _ => anyhow::bail!(
                        "environment {}: feedback_token_env names {var}, which holds no token: \
                         set it to the token the application sends with its labels",
                        env.name
                    ),
                },
                None => None,
            };
            let gateway = Gateway::new(GatewayConfig {
                name: env.name.clone(),
                sticky_header: env.sticky_header.clone(),
                sticky_cookie: env.sticky_cookie.clone(),
                force_header: env.force_header.clone(),
                response_timeout: env.response_timeout.0,
                feedback_token,
                ..GatewayConfig::default()
            });
            if on_cluster {
                // The cluster's Gateway (or Service) carries the traffic, not hoist's.
                envs.push((env.name.clone(), env.listen));
                gateways.push((env.clone(), env.listen, gateway));
                continue;
            }
            let listener = tokio::net::TcpListener::bind(env.listen)
                .await
                .map_err(|e| {
                    anyhow::anyhow!("environment {} (listen {}): {e}", env.name, env.listen)
                })?;
            let addr = listener.local_addr()?;
            let (stx, srx) = oneshot::channel::<()>();
            shutdown.push(stx);
            serving.push((listener, gateway.clone(), srx));
            envs.push((env.name.clone(), addr));
            gateways.push((env.clone(), addr, gateway));
        }

        // MLflow webhooks, when configured: verified deliveries join the poller's events.
        let webhook = match cfg.registry.webhook_listen {
            Some(addr) => {
                let var = &cfg.registry.webhook_secret_env;
                if std::env::var(var).map(|v| v.is_empty()).unwrap_or(true) {
                    anyhow::bail!(
                        "registry.webhook_listen is set but {var} (registry.webhook_secret_env) holds no secret: \
                         set it to the secret the MLflow webhook was created with (`hoist mlflow connect`)"
                    );
                }
                Some(
                    tokio::net::TcpListener::bind(addr)
                        .await
                        .map_err(|e| anyhow::anyhow!("registry.webhook_listen {addr}: {e}"))?,
                )
            }
            None => None,
        };

        let notifier = notify::Notifier::new(&cfg.notifications, &|k| std::env::var(k).ok())
            .map_err(|e| anyhow::anyhow!("{e}"))?;

        let (tx, rx) = mpsc::channel(1024);
        let (log, _) = broadcast::channel(1024);
        let mut clusters = std::collections::HashMap::new();
        if on_cluster {
            for env in &cfg.environments {
                let live = journal
                    .live(&env.name)?
                    .map(|l| kube::pin(&l.model, &l.version, &l.digest));
                let c = kube::ClusterEnv::connect(&cfg, env, live, tx.clone(), log.clone()).await?;
                clusters.insert(env.name.clone(), c);
            }
            // In-cluster replicas of the controller: only the Lease holder drives.
            if let Ok(lease) = std::env::var("HOIST_LEASE")
                && let Some(c) = clusters.values().next()
            {
                kube::lead(c.cluster.clone(), &lease).await?;
            }
        }
        let urls = envs
            .iter()
            .map(|(name, addr)| {
                let url = match clusters.get(name) {
                    Some(c) => c.app_url.clone(),
                    None => format!("http://{addr}"),
                };
                (name.clone(), url)
            })
            .collect();
        let mut engine = Engine::new(EngineParts {
            cfg: cfg.clone(),
            journal: journal.clone(),
            registry: opts.registry.clone(),
            program: opts.program,
            log_dir,
            base_dir: opts.base_dir.clone(),
            gateways,
            clusters,
            tx: tx.clone(),
            log: log.clone(),
            notifier,
        });
        // Promotions from this point on reach the trigger; earlier ones, catch_up.
        let start_seq = opts
            .embedded
            .as_ref()
            .and_then(|r| r.last_change_seq().ok());
        engine.recover().await;
        for (listener, g, srx) in serving {
            tokio::spawn(async move {
                let _ = g
                    .serve(listener, async move {
                        let _ = srx.await;
                    })
                    .await;
            });
        }
        engine.catch_up().await;
        let engine = tokio::spawn(engine.run(rx));
        let client = EngineClient { tx: tx.clone() };

        // Triggers: the registry's promotions become releases.
        let poller = spawn_trigger(
            &cfg,
            opts.registry.clone(),
            opts.embedded.clone(),
            start_seq,
            webhook,
            tx.clone(),
        );

        let (atx, arx) = oneshot::channel::<()>();
        shutdown.push(atx);
        let app = api::router(api::ApiState {
            client: client.clone(),
            journal: journal.clone(),
            token: token.clone(),
            reads_need_token: !api_addr.ip().is_loopback(),
            config: cfg.clone(),
            registry: opts.registry.clone(),
        });
        tokio::spawn(async move {
            let _ = axum::serve(api_listener, app)
                .with_graceful_shutdown(async move {
                    let _ = arx.await;
                })
                .await;
        });
        std::fs::write(dir.join("api"), format!("http://{api_addr}\n"))?;

        Ok(Daemon {
            api_addr,
            envs,
            urls,
            token,
            journal,
            client,
            log,
            shutdown,
            _poller: poller,
            engine,
        })
    }

    /// Stop everything: gateways, API, and every model server (gracefully).
    pub async fn stop(self) {
        let _ = self.client.call(|reply| Cmd::Shutdown { reply }).await;
        let _ = self.engine.await;
        for s in self.shutdown {
            let _ = s.send(());
        }
    }
}

fn spawn_trigger(
    cfg: &Config,
    registry: Arc<dyn Registry>,
    embedded: Option<Arc<EmbeddedRegistry>>,
    start_seq: Option<i64>,
    webhook: Option<tokio::net::TcpListener>,
    tx: mpsc::Sender<Cmd>,
) -> Option<hoist_registry::watch::PollerHandle> {
    use hoist_registry::watch;
    let trigger = cfg.model.trigger.clone();
    if trigger == Trigger::Manual {
        return None;
    }
    let (etx, mut erx) = mpsc::channel::<hoist_registry::Event>(256);
    let etx_webhook = etx.clone();
    let registry_id = registry.id();
    let interval = cfg.registry.poll_interval.0;
    let handle = match embedded {
        Some(reg) => {
            let poller = match start_seq {
                Some(seq) => watch::ChangeLogPoller::after(reg, seq),
                None => watch::ChangeLogPoller::new(reg),
            };
            watch::spawn(poller, interval, etx)
        }
        None => {
            let pc = watch::PollConfig {
                interval,
                models: Some(vec![cfg.model.name.clone()]),
                stages: matches!(trigger, Trigger::Stage(_)),
            };
            watch::spawn_poller(registry, pc, etx)
        }
    };
    if let Some(listener) = webhook {
        let secret = std::env::var(&cfg.registry.webhook_secret_env).unwrap_or_default();
        let app = hoist_registry::webhook::router(
            hoist_registry::webhook::WebhookConfig::new(secret, registry_id),
            etx_webhook,
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }
    let model = cfg.model.name.clone();
    tokio::spawn(async move {
        let mut dedup = watch::Dedup::new(std::time::Duration::from_secs(300));
        while let Some(e) = erx.recv().await {
            if e.model != model || !dedup.admit(&e, std::time::Instant::now()) {
                continue;
            }
            let Some(version) = e.version.clone() else {
                continue;
            };
            let desc = match (&trigger, &e.kind) {
                (Trigger::Alias(a), hoist_registry::EventKind::AliasSet)
                    if e.alias.as_deref() == Some(a.as_str()) =>
                {
                    format!("alias {a} → v{version}")
                }
                (Trigger::Stage(s), hoist_registry::EventKind::StageChanged)
                    if e.stage
                        .as_deref()
                        .is_some_and(|st| st.eq_ignore_ascii_case(s)) =>
                {
                    format!("stage {s} → v{version}")
                }
                _ => continue,
            };
            if tx
                .send(Cmd::Promotion {
                    version,
                    trigger: desc,
                })
                .await
                .is_err()
            {
                return;
            }
        }
    });
    Some(handle)
}
