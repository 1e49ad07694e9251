//! The server's life: bind, load, serve, reload, shut down.
//!
//! [`run`] takes a bound listener and a shutdown future (as mini-redis does), so the
//! binary and the tests start the server the same way.
//!
//! # Expected flow
//! 1. The listener accepts at once; `/health` and `/v2/health/ready` answer 503 while
//!    the model loads.
//! 2. The model is loaded and checked with its input example, then published; ready.
//! 3. Reloads (admin or auto-refresh) load and check the new model beside the old one
//!    and swap them atomically; requests in flight finish on the model they started on.
//!    A failed reload changes nothing and says why.
//! 4. On shutdown, readiness turns false, in-flight requests finish, `run` returns.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::http::{self, AppState, Shared, admin::AdminTokens};
use crate::metrics::Metrics;
use crate::model::{Model, ModelOptions};

/// Everything `run` needs besides the listener.
#[derive(Debug, Clone)]
pub struct Config {
    pub model_path: PathBuf,
    pub model: ModelOptions,
    pub max_body: usize,
    /// Check the model path this often and reload when its digest changes.
    pub auto_refresh: Option<Duration>,
}

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot load the model: {0}")]
    Load(String),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves on `listener` until `shutdown` completes. Fails if the first model load
/// fails. `admin` decides who may reload.
pub async fn run(
    listener: TcpListener,
    config: Config,
    admin: AdminTokens,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    run_with_grpc(listener, None, config, admin, shutdown).await
}

/// [`run`], and also the Open Inference Protocol over gRPC on `grpc` when given:
/// the same model, executor, readiness and metrics on both listeners; both stop
/// on `shutdown`.
pub async fn run_with_grpc(
    listener: TcpListener,
    grpc: Option<TcpListener>,
    config: Config,
    admin: AdminTokens,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let metrics = Arc::new(Metrics::default());
    let state: Shared = Arc::new(AppState {
        model: Default::default(),
        metrics: metrics.clone(),
        opts: config.model.clone(),
        source: std::sync::Mutex::new(config.model_path.clone()),
        ready: Default::default(),
        admin,
        reload_lock: Default::default(),
        max_body: config.max_body,
    });

    // One stop signal for every listener: the caller's shutdown, or a failed first load.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|&stop| stop).await;
        }
    };
    {
        let tx = stop_tx.clone();
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
    }
    let grpc_server = grpc.map(|l| {
        let stop = stopped();
        tokio::spawn(crate::grpc::serve(l, state.clone(), stop))
    });
    let app = http::router(state.clone());
    let signal_state = state.clone();
    let stop = stopped();
    let graceful = async move {
        stop.await;
        signal_state.ready.store(false, Ordering::Release);
        tracing::info!("shutting down: finishing requests in flight");
    };
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(graceful)
            .await
    });

    // First load, off the reactor, while the listener already answers health checks.
    let path = config.model_path.clone();
    let opts = config.model.clone();
    let m = metrics.clone();
    let loaded = tokio::task::spawn_blocking(move || Model::load(&path, &opts, m))
        .await
        .map_err(|e| ServeError::Load(format!("loader crashed: {e}")))?;
    match loaded {
        Ok(model) => {
            tracing::info!(
                name = %model.package.name,
                version = %model.package.version,
                digest = %model.package.digest,
                runtime = model.runtime.as_str(),
                load_ms = model.load_time.as_millis() as u64,
                "model loaded"
            );
            metrics.model_loaded(model.info(), model.load_time);
            state.model.store(Some(Arc::new(model)));
            state.ready.store(true, Ordering::Release);
        }
        Err(e) => {
            let _ = stop_tx.send(true);
            let _ = server.await;
            if let Some(g) = grpc_server {
                let _ = g.await;
            }
            return Err(ServeError::Load(e.to_string()));
        }
    }

    if let Some(every) = config.auto_refresh {
        tokio::spawn(auto_refresh(state.clone(), every));
    }

    let http_result = match server.await {
        Ok(r) => r.map_err(ServeError::Io),
        Err(e) => Err(ServeError::Io(std::io::Error::other(e))),
    };
    if let Some(g) = grpc_server {
        match g.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("gRPC server: {e}"),
            Err(e) => tracing::error!("gRPC server task: {e}"),
        }
    }
    http_result
}

/// Loads the model at `path` (default: the current source), checks it, and swaps it
/// in. On failure the old model keeps serving and the error says why.
pub async fn reload(
    state: &Shared,
    path: Option<PathBuf>,
    version: Option<String>,
) -> Result<Value, String> {
    let _one_at_a_time = state.reload_lock.lock().await;
    let path = path.unwrap_or_else(|| state.source.lock().expect("source lock").clone());
    let mut opts = state.opts.clone();
    if version.is_some() {
        opts.version = version;
    }
    let metrics = state.metrics.clone();
    let p = path.clone();
    let loaded = tokio::task::spawn_blocking(move || Model::load(&p, &opts, metrics))
        .await
        .map_err(|e| format!("loader crashed: {e}"))?;
    let model = match loaded {
        Ok(m) => m,
        Err(e) => {
            state.metrics.reloaded(false);
            let msg = format!(
                "reload from {} failed, still serving the previous model: {e}",
                path.display()
            );
            tracing::warn!("{msg}");
            return Err(msg);
        }
    };
    let report = json!({
        "status": "reloaded",
        "name": model.package.name,
        "version": model.package.version,
        "digest": model.package.digest,
        "runtime": model.runtime.as_str(),
        "load_seconds": model.load_time.as_secs_f64(),
        "previous": state.model.load().as_ref().map(|m| json!({
            "version": m.package.version,
            "digest": m.package.digest,
        })),
    });
    state.metrics.model_loaded(model.info(), model.load_time);
    state.metrics.reloaded(true);
    *state.source.lock().expect("source lock") = path;
    state.model.store(Some(Arc::new(model)));
    tracing::info!(%report, "model reloaded");
    Ok(report)
}

/// Watches the model path and reloads when its digest changes. A digest that failed
/// to load is not retried until it changes again.
async fn auto_refresh(state: Shared, every: Duration) {
    let mut failed: Option<String> = None;
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let path = state.source.lock().expect("source lock").clone();
        let digest =
            match tokio::task::spawn_blocking(move || crate::package::digest_path(&path)).await {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => {
                    tracing::warn!("auto-refresh: {e}");
                    continue;
                }
                Err(_) => continue,
            };
        let current = state
            .model
            .load()
            .as_ref()
            .map(|m| m.package.digest.clone());
        if current.as_deref() == Some(&digest) || failed.as_deref() == Some(&digest) {
            continue;
        }
        tracing::info!(%digest, "auto-refresh: the model changed; reloading");
        match reload(&state, None, None).await {
            Ok(_) => failed = None,
            Err(_) => failed = Some(digest),
        }
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
