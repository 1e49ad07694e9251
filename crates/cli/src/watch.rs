//! `hoist watch`: promotion events, verified and de-duplicated, printed live.
//!
//! # Expected flow
//! ```text
//! poller thread (change log / MLflow snapshots) ─┐
//!                                                ├─► raw ─► dedupe ─► filter ─► stdout
//! webhook receiver (MLflow, --webhook-listen) ───┘
//! ```
//! The registry is opened and the poller's baseline taken before the runtime starts
//! (registry calls block), so an unreachable registry fails at once, and once
//! `watching …` is on stderr every later promotion is reported.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use hoist_registry::watch::{self, ChangeLogPoller, Poll, PollConfig, Poller};
use hoist_registry::webhook::{self, WebhookConfig};
use hoist_registry::{Event, EventKind, Registry};
use tokio::sync::mpsc;

use crate::output::format_ms;
use crate::{CliError, Context, Opened, stdout_err};

/// How long a move seen once (by webhook or poll) counts as the same move.
const DEDUP_WINDOW: Duration = Duration::from_secs(600);

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Also receive MLflow webhooks on this address, e.g. 0.0.0.0:8787 (POST / or
    /// /webhook); needs --webhook-secret or --webhook-secret-file
    #[arg(long, value_name = "ADDR")]
    pub webhook_listen: Option<SocketAddr>,
    /// The secret the MLflow webhook was created with (see `hoist mlflow connect`)
    #[arg(long, value_name = "SECRET", conflicts_with = "webhook_secret_file")]
    pub webhook_secret: Option<String>,
    /// Read the webhook secret from FILE (trailing newline ignored); keeps it out of
    /// the process list
    #[arg(long, value_name = "FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Seconds between two polls of the registry [default: 1 for the embedded
    /// registry, 10 for MLflow]
    #[arg(long, value_name = "SECS")]
    pub poll_interval: Option<f64>,
    /// Only events for this alias (repeatable); stage moves are then not shown
    #[arg(long = "alias", value_name = "ALIAS")]
    pub aliases: Vec<String>,
    /// Only events for this model (repeatable)
    #[arg(long = "model", value_name = "NAME")]
    pub models: Vec<String>,
    /// Exit after printing N events
    #[arg(long, value_name = "N")]
    pub max_events: Option<u64>,
}

pub(crate) fn run(ctx: &Context<'_>, args: WatchArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let secret = webhook_secret(&args)?;
    if args.webhook_listen.is_some() != secret.is_some() {
        return Err(CliError::Usage(if secret.is_some() {
            "--webhook-secret needs --webhook-listen ADDR (where MLflow delivers webhooks)".into()
        } else {
            "--webhook-listen needs the webhook's secret: --webhook-secret S or --webhook-secret-file F"
                .into()
        }));
    }
    if args.max_events == Some(0) {
        return Ok(());
    }
    let embedded = ctx.registry == "embedded";
    if embedded && args.webhook_listen.is_some() {
        return Err(CliError::Usage(
            "--webhook-listen receives MLflow webhooks: pass --registry http://HOST:PORT \
             (or set MLFLOW_TRACKING_URI); the embedded registry is followed by polling"
                .into(),
        ));
    }
    let interval = match args.poll_interval {
        None if embedded => Duration::from_secs(1),
        None => Duration::from_secs(10),
        Some(s) if s.is_finite() && (0.05..=86_400.0).contains(&s) => Duration::from_secs_f64(s),
        Some(s) => {
            return Err(CliError::Usage(format!(
                "--poll-interval {s}: give seconds between 0.05 and 86400"
            )));
        }
    };
    let models = (!args.models.is_empty()).then(|| args.models.clone());
    let opened = ctx.open_registry()?;

    // The poller, with its baseline taken now: a registry that cannot be read fails here.
    let (registry_id, mut source): (String, Box<dyn Poll>) = match opened {
        Opened::Embedded(r) => {
            let r = Arc::new(r);
            (r.id(), Box::new(ChangeLogPoller::new(r)) as Box<dyn Poll>)
        }
        Opened::Mlflow(r) => {
            // A server without webhooks (MLflow 2.x) would never deliver: say so now.
            if args.webhook_listen.is_some() {
                r.require_webhooks()?;
            }
            let r: Arc<dyn Registry> = Arc::new(r);
            let config = PollConfig {
                interval,
                models: models.clone(),
                stages: args.aliases.is_empty(),
            };
            (r.id(), Box::new(Poller::new(r, config)) as Box<dyn Poll>)
        }
    };
    source.poll()?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| CliError::Io {
            context: "starting the event runtime".into(),
            source,
        })?;
    let (raw_tx, raw_rx) = mpsc::channel::<Event>(1024);
    let (out_tx, mut out_rx) = mpsc::channel::<Event>(1024);
    rt.spawn(watch::dedupe(raw_rx, out_tx, DEDUP_WINDOW));

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut receiver = None;
    if let (Some(addr), Some(secret)) = (args.webhook_listen, secret) {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|source| CliError::Io {
                context: format!("listening for webhooks on {addr}"),
                source,
            })?;
        let config = WebhookConfig::new(secret, registry_id.clone());
        receiver = Some(
            rt.spawn(webhook::run(listener, config, raw_tx.clone(), async {
                let _ = stop_rx.await;
            })),
        );
    }
    let poller = watch::spawn(BoxedPoll(source), interval, raw_tx);

    let mut ready = format!(
        "watching {registry_id} (poll every {} s",
        interval.as_secs_f64()
    );
    if let Some(addr) = args.webhook_listen {
        ready.push_str(&format!(", webhooks on http://{addr}/webhook"));
    }
    ready.push(')');
    eprintln!("{ready}");

    let filter = Filter {
        models: args.models,
        aliases: args.aliases,
    };
    let printing = Printing {
        filter,
        json: ctx.json,
        max: args.max_events,
    };
    let result = rt.block_on(print_events(&mut out_rx, &printing, out));
    let _ = stop_tx.send(());
    if let Some(r) = receiver {
        // Graceful: a delivery in flight is answered; idle connections get 2 s.
        rt.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
        });
    }
    // Stopping waits for at most the current poll (the registry is dropped on the
    // poller's thread, outside the runtime: a blocking HTTP client must not be).
    poller.stop();
    rt.shutdown_timeout(Duration::from_secs(2));
    result
}

/// How events are printed, and how many.
struct Printing {
    filter: Filter,
    json: bool,
    /// `--max-events`.
    max: Option<u64>,
}

/// Prints events from `events` until `p.max` are printed, the channel closes, or
/// Ctrl-C / SIGTERM.
async fn print_events(
    events: &mut mpsc::Receiver<Event>,
    p: &Printing,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigterm = signal(SignalKind::terminate()).map_err(|source| CliError::Io {
        context: "installing the SIGTERM handler".into(),
        source,
    })?;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut printed = 0u64;
    loop {
        let event = tokio::select! {
            e = events.recv() => match e {
                Some(e) => e,
                None => return Ok(()),
            },
            _ = &mut ctrl_c => return Ok(()),
            _ = sigterm.recv() => return Ok(()),
        };
        if !p.filter.admits(&event) {
            continue;
        }
        let line = if p.json {
            json_line(&event, now_ms())
        } else {
            human_line(&event, now_ms())
        };
        writeln!(out, "{line}").map_err(stdout_err)?;
        out.flush().map_err(stdout_err)?;
        printed += 1;
        if p.max.is_some_and(|m| printed >= m) {
            return Ok(());
        }
    }
}

/// `--webhook-secret` or the contents of `--webhook-secret-file`.
fn webhook_secret(args: &WatchArgs) -> Result<Option<String>, CliError> {
    read_secret(
        args.webhook_secret.as_deref(),
        args.webhook_secret_file.as_ref(),
    )
}

/// A secret given inline or in a file (trailing newline ignored; an empty one refused).
pub(crate) fn read_secret(
    inline: Option<&str>,
    file: Option<&PathBuf>,
) -> Result<Option<String>, CliError> {
    let secret = match (inline, file) {
        (Some(s), _) => s.to_string(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|source| CliError::Io {
                context: format!("reading the secret file {}", f.display()),
                source,
            })?
            .trim_end_matches(['\n', '\r'])
            .to_string(),
        (None, None) => return Ok(None),
    };
    if secret.is_empty() {
        return Err(CliError::Usage("the webhook secret is empty".into()));
    }
    Ok(Some(secret))
}

/// A boxed poll source, so both kinds of poller run on [`watch::spawn`].
struct BoxedPoll(Box<dyn Poll>);

impl Poll for BoxedPoll {
    fn poll(&mut self) -> hoist_registry::Result<Vec<Event>> {
        self.0.poll()
    }
    fn registry_id(&self) -> String {
        self.0.registry_id()
    }
}

/// Which events `hoist watch` prints: promotions (alias and stage moves), narrowed by
/// `--model` and `--alias`.
struct Filter {
    models: Vec<String>,
    aliases: Vec<String>,
}

impl Filter {
    fn admits(&self, e: &Event) -> bool {
        let promotion = matches!(
            e.kind,
            EventKind::AliasSet | EventKind::AliasDeleted | EventKind::StageChanged
        );
        let model = self.models.is_empty() || self.models.contains(&e.model);
        let alias =
            self.aliases.is_empty() || e.alias.as_ref().is_some_and(|a| self.aliases.contains(a));
        promotion && model && alias
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn via(e: &Event) -> &'static str {
    if e.delivery.is_some() {
        "webhook"
    } else {
        "poll"
    }
}

fn kind_name(k: &EventKind) -> &'static str {
    match k {
        EventKind::ModelCreated => "model_created",
        EventKind::VersionCreated => "version_created",
        EventKind::AliasSet => "alias_set",
        EventKind::AliasDeleted => "alias_deleted",
        EventKind::StageChanged => "stage_changed",
        EventKind::TagSet { .. } => "tag_set",
        EventKind::TagDeleted { .. } => "tag_deleted",
    }
}

/// `2026-11-22 01:50:03Z  http://mlflow:5000  fraud  version 3  alias champion set  via webhook`
fn human_line(e: &Event, at_ms: i64) -> String {
    let version = e.version.as_deref().unwrap_or("-");
    let what = match (&e.kind, &e.alias, &e.stage) {
        (EventKind::AliasDeleted, Some(a), _) => format!("alias {a} removed"),
        (_, Some(a), _) => format!("alias {a} set"),
        (_, None, Some(s)) => format!("stage {s}"),
        (k, None, None) => kind_name(k).to_string(),
    };
    format!(
        "{}  {}  {}  version {version}  {what}  via {}",
        format_ms(at_ms),
        e.registry,
        e.model,
        via(e)
    )
}

/// One JSON object (one line) per event.
fn json_line(e: &Event, at_ms: i64) -> String {
    serde_json::json!({
        "time": format_ms(at_ms),
        "time_ms": at_ms,
        "registry": e.registry,
        "model": e.model,
        "version": e.version,
        "alias": e.alias,
        "stage": e.stage,
        "kind": kind_name(&e.kind),
        "via": via(e),
        "delivery": e.delivery,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, alias: Option<&str>, delivery: Option<&str>) -> Event {
        Event {
            registry: "http://m:5000".into(),
            model: "fraud".into(),
            version: Some("3".into()),
            alias: alias.map(str::to_string),
            stage: None,
            kind,
            delivery: delivery.map(str::to_string),
        }
    }

    #[test]
    fn lines_say_what_moved_and_how_it_was_seen() {
        let e = event(EventKind::AliasSet, Some("champion"), Some("d1"));
        assert_eq!(
            human_line(&e, 1_795_309_964_000),
            "2026-11-22 01:12:44Z  http://m:5000  fraud  version 3  alias champion set  via webhook"
        );
        let v: serde_json::Value = serde_json::from_str(&json_line(&e, 0)).unwrap();
        assert_eq!(
            (&v["alias"], &v["kind"], &v["via"], &v["version"]),
            (
                &serde_json::json!("champion"),
                &serde_json::json!("alias_set"),
                &serde_json::json!("webhook"),
                &serde_json::json!("3")
            )
        );
    }

    #[test]
    fn only_promotions_matching_the_filters_are_printed() {
        let all = Filter {
            models: vec![],
            aliases: vec![],
        };
        assert!(all.admits(&event(EventKind::AliasSet, Some("a"), None)));
        assert!(!all.admits(&event(EventKind::VersionCreated, None, None)));
        let only = Filter {
            models: vec!["fraud".into()],
            aliases: vec!["champion".into()],
        };
        assert!(only.admits(&event(EventKind::AliasSet, Some("champion"), None)));
        assert!(!only.admits(&event(EventKind::AliasSet, Some("challenger"), None)));
        let mut other = event(EventKind::AliasSet, Some("champion"), None);
        other.model = "churn".into();
        assert!(!only.admits(&other));
    }
}
