//! Triggers: the registry's promotions (the embedded registry's change log, MLflow
//! polling, MLflow webhooks) become `Cmd::Promotion`s for the engine.

use std::sync::Arc;

use hoist_registry::Registry;
use hoist_registry::embedded::EmbeddedRegistry;
use hoist_release::config::{Config, Trigger};
use tokio::sync::{mpsc, watch};

use crate::cmd::Cmd;

/// Starts one poller for every model whose trigger is not manual (and the webhook
/// receiver, which stops on `stop`); each event goes to its model's engine when it
/// is that model's trigger. `None` when every trigger is manual.
pub fn spawn(
    cfg: &Config,
    models: Vec<(Arc<Config>, mpsc::Sender<Cmd>)>,
    registry: Arc<dyn Registry>,
    embedded: Option<Arc<EmbeddedRegistry>>,
    start_seq: Option<i64>,
    webhook: Option<tokio::net::TcpListener>,
    stop: watch::Receiver<bool>,
) -> Option<hoist_registry::watch::PollerHandle> {
    use hoist_registry::watch;
    let models: Vec<_> = models
        .into_iter()
        .filter(|(c, _)| c.model.trigger != Trigger::Manual)
        .collect();
    if models.is_empty() {
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
                models: Some(models.iter().map(|(c, _)| c.model.name.clone()).collect()),
                stages: models
                    .iter()
                    .any(|(c, _)| matches!(c.model.trigger, Trigger::Stage(_))),
            };
            watch::spawn_poller(registry, pc, etx)
        }
    };
    // Checked when the listener was bound (run.rs): without a secret no listener was
    // bound. A secret in a file is read again when the file is rotated.
    let secret =
        hoist_types::Secret::from_env(&cfg.registry.webhook_secret_env, &|k| std::env::var(k).ok())
            .ok()
            .flatten();
    if let (Some(listener), Some(secret)) = (webhook, secret) {
        let app = hoist_registry::webhook::router(
            hoist_registry::webhook::WebhookConfig::new(secret, registry_id),
            etx_webhook,
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(crate::shutdown::stopped(stop))
                .await;
        });
    }
    // One sender per model; a model whose engine is busy does not hold up the others'.
    let mut routes = std::collections::HashMap::new();
    for (cfg, tx) in models {
        let (mtx, mrx) = mpsc::channel::<hoist_registry::Event>(256);
        tokio::spawn(promotions(cfg.model.trigger.clone(), mrx, tx));
        routes.insert(cfg.model.name.clone(), mtx);
    }
    tokio::spawn(async move {
        while let Some(e) = erx.recv().await {
            if let Some(mtx) = routes.get(&e.model) {
                let _ = mtx.send(e).await;
            }
        }
    });
    Some(handle)
}

/// One model's registry events that match its trigger, as promotions for its engine.
async fn promotions(
    trigger: Trigger,
    mut erx: mpsc::Receiver<hoist_registry::Event>,
    tx: mpsc::Sender<Cmd>,
) {
    use hoist_registry::watch;
    let mut dedup = watch::Dedup::new(std::time::Duration::from_secs(300));
    while let Some(e) = erx.recv().await {
        if !dedup.admit(&e, std::time::Instant::now()) {
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
}
