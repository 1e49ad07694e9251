//! Triggers: the registry's promotions (the embedded registry's change log, MLflow
//! polling, MLflow webhooks) become `Cmd::Promotion`s for the engine.

use std::sync::Arc;

use hoist_registry::Registry;
use hoist_registry::embedded::EmbeddedRegistry;
use hoist_release::config::{Config, Trigger};
use tokio::sync::{mpsc, watch};

use crate::cmd::Cmd;

/// Starts the poller (and the webhook receiver, which stops on `stop`); `None` for a
/// manual trigger.
pub fn spawn(
    cfg: &Config,
    registry: Arc<dyn Registry>,
    embedded: Option<Arc<EmbeddedRegistry>>,
    start_seq: Option<i64>,
    webhook: Option<tokio::net::TcpListener>,
    tx: mpsc::Sender<Cmd>,
    stop: watch::Receiver<bool>,
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
