//! The server's life: bind, load, serve, reload, shut down.
//!
//! [`run`] takes a bound listener and a shutdown future (as mini-redis does), so the
//! binary and the tests start the server the same way.
//!
//! # Expected flow
//! 1. The listener accepts at once; `/health` and `/v2/health/ready` answer 503 while
//!    the models load.
//! 2. Each model is loaded and checked with its input example, then published; once
//!    every model has been tried, the server is ready. With one model (a bare
//!    `--model PATH`) a failed load stops the server; with many, a model that fails
//!    is `UNAVAILABLE` with the reason and the others serve.
//! 3. Reloads (admin or auto-refresh) load and check the new model beside the old one
//!    and swap them atomically; requests in flight finish on the model they started on.
//!    A failed reload changes nothing and says why.
//! 4. On shutdown, readiness turns false, in-flight requests finish, `run` returns.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpListener;

use crate::http::{self, AppState, Shared, admin::AdminTokens};
use crate::metrics::Metrics;
use crate::model::ModelOptions;
use crate::repository::{Entry, Repository, Sources};

/// Everything `run` needs besides the listener.
#[derive(Debug, Clone)]
pub struct Config {
    /// The model (a bare `--model PATH`) or models to serve.
    pub sources: Sources,
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
    #[error("{0}")]
    Config(String),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves on `listener` until `shutdown` completes. With one model, fails if its
/// first load fails. `admin` decides who may reload, load and unload.
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
    let models = Repository::new(
        config.sources.clone(),
        config.model.clone(),
        metrics.clone(),
    )
    .map_err(ServeError::Config)?;
    let state: Shared = Arc::new(AppState {
        models,
        metrics: metrics.clone(),
        ready: Default::default(),
        admin,
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
    let serve_state = state.clone();
    let server =
        tokio::spawn(async move { http::fast::serve(listener, serve_state, app, graceful).await });

    // First loads, off the reactor, while the listener already answers health checks;
    // a few at a time so that many small models start quickly.
    let entries = state.models.entries();
    let at_once = std::thread::available_parallelism().map_or(2, |n| n.get());
    let results: Vec<_> = futures_util::stream::iter(entries.iter().map(|e| {
        let state = state.clone();
        let name = e.name.clone();
        async move { state.models.load(&name, None, None).await }
    }))
    .buffer_unordered(at_once)
    .collect()
    .await;
    if state.models.is_single() && results.iter().any(Result::is_err) {
        let _ = stop_tx.send(true);
        let _ = server.await;
        if let Some(g) = grpc_server {
            let _ = g.await;
        }
        // The reason alone: "cannot load the model: <why>".
        return Err(ServeError::Load(entries[0].status().1));
    }
    state.ready.store(true, Ordering::Release);

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

/// Watches every model's path and reloads a model when its digest changes. A
/// digest that failed to load is not retried until it changes again; an unloaded
/// model is left alone.
async fn auto_refresh(state: Shared, every: Duration) {
    let mut failed: std::collections::HashMap<String, String> = Default::default();
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        for entry in state.models.entries() {
            refresh(&state, &entry, &mut failed).await;
        }
    }
}

async fn refresh(
    state: &Shared,
    entry: &Entry,
    failed: &mut std::collections::HashMap<String, String>,
) {
    let Some(current) = entry.model() else {
        return;
    };
    let path = entry.source();
    let digest = match tokio::task::spawn_blocking(move || crate::package::digest_path(&path)).await
    {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            tracing::warn!(model = %entry.name, "auto-refresh: {e}");
            return;
        }
        Err(_) => return,
    };
    if current.package.digest == digest || failed.get(&entry.name) == Some(&digest) {
        return;
    }
    tracing::info!(model = %entry.name, %digest, "auto-refresh: the model changed; reloading");
    match state.models.load(&current.package.name, None, None).await {
        Ok(_) => {
            failed.remove(&entry.name);
        }
        Err(_) => {
            failed.insert(entry.name.clone(), digest);
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
