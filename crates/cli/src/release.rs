//! The release commands: `hoist up` (the daemon), and `deploy`, `status`, `promote`,
//! `approve`, `abort`, `rollback`, `history`, which talk to a running daemon over its
//! HTTP API.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use hoist_registry::Registry;
use hoist_release::config::Config;
use hoist_types::api::{
    Accuracy, CreateRelease, DeploymentView, Event, Outcome, Release, ReleaseDetail, Rollback,
    StatusView, Verdict, VerdictNumbers, WindowView,
};
use serde::Serialize;

use crate::client::Client;
use crate::{CliError, Context, Opened, stdout_err};
use hoist_daemon as daemon;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The pipeline file [default: ./hoist.toml if it exists, else the built-in pipeline]
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Listen address of the API (overrides api.listen), e.g. 127.0.0.1:0
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// NAME@ALIAS, NAME/VERSION, NAME/STAGE or NAME (the latest version)
    pub model: String,
    /// Only this environment [default: every environment of the pipeline, in order]
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,
    /// Abort a release that is mid-rollout and take its place
    #[arg(long)]
    pub supersede: bool,
    /// The version changes the model's inputs or outputs on purpose: the signature
    /// gate reports the difference and passes (as the registry tag
    /// hoist.breaking_change=true on the version does)
    #[arg(long)]
    pub breaking_change: bool,
    /// Follow the release until it ends; exit 5 if it is rolled back or aborted
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up waiting after this many seconds (the release goes on)
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// With --wait: `markdown` prints the ended release as a CI job summary on stdout
    /// (progress goes to stderr): `>> $GITHUB_STEP_SUMMARY`
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// How `deploy --wait` and `history RELEASE` print a release (`--json` aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Lines for a terminal or a log
    Text,
    /// A Markdown job summary (GitHub's $GITHUB_STEP_SUMMARY, Azure's task.uploadsummary)
    Markdown,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One release (id) instead of the whole daemon
    pub release: Option<u64>,
    /// Only this model (default: every model the daemon delivers)
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Keep the view live (redrawn in a terminal; one line per change otherwise)
    #[arg(long, short)]
    pub watch: bool,
    /// Refresh period of --watch, in milliseconds
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub interval: u64,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    pub release: u64,
    /// The release's model (checked; the id alone finds it)
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Skip the remaining steps: 100% now
    #[arg(long)]
    pub full: bool,
}

#[derive(Debug, Args)]
pub struct ReleaseIdArgs {
    pub release: u64,
    /// The release's model (checked; the id alone finds it)
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
}

#[derive(Debug, Args)]
pub struct AbortArgs {
    pub release: u64,
    /// The release's model (checked; the id alone finds it)
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Why (written to the journal and the registry tag hoist.rollback_reason)
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The model to roll back [default: the daemon's only model; with several the
    /// daemon refuses, naming them]
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// The environment [default: the pipeline's last, usually production]
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,
    /// The version to go back to [default: the previous live version]
    #[arg(long, value_name = "VERSION")]
    pub to: Option<String>,
    /// Do not wait for the rollback to finish
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// One release: every verdict it got, with the numbers each was based on
    #[arg(value_name = "RELEASE")]
    pub release: Option<u64>,
    /// Only this model's releases (default: every model's)
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// With RELEASE: `markdown` prints it as a CI job summary
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

fn print(
    ctx: &Context<'_>,
    out: &mut dyn Write,
    v: &impl Serialize,
    human: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), CliError> {
    if ctx.json {
        ctx.print_json(out, v)
    } else {
        human(out).map_err(stdout_err)
    }
}

pub(crate) fn deploy(
    ctx: &Context<'_>,
    a: DeployArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let markdown = markdown_format(ctx, a.format)?;
    if markdown && !a.wait {
        return Err(CliError::Usage(
            "--format markdown summarizes a release that ended: add --wait".into(),
        ));
    }
    let api = Client::new(ctx)?;
    let rec = api.create(&CreateRelease {
        model: a.model,
        env: a.env,
        supersede: a.supersede,
        breaking_change: a.breaking_change,
    })?;
    let id = rec.id;
    if !a.wait {
        return print(ctx, out, &rec, |o| {
            writeln!(o, "release {id}: {} v{} started", rec.model, rec.version)?;
            writeln!(o, "follow it with `hoist status {id} --watch`")
        });
    }
    let timeout = a.timeout.map(Duration::from_secs);
    if markdown {
        // Progress to stderr; stdout is the summary alone, so `>> $GITHUB_STEP_SUMMARY`
        // gets nothing else.
        let mut progress = std::io::stderr();
        let done = follow(ctx, &api, id, timeout, &mut progress);
        if matches!(done, Err(CliError::Timeout(_))) {
            return done;
        }
        let detail = api.release(id)?;
        write_markdown(ctx, &api, &detail, out)?;
        return done;
    }
    follow(ctx, &api, id, timeout, out)
}

/// Whether `--format markdown` was asked for (refused together with --json).
fn markdown_format(ctx: &Context<'_>, f: Format) -> Result<bool, CliError> {
    if f == Format::Markdown && ctx.json {
        return Err(CliError::Usage(
            "--format markdown and --json exclude each other".into(),
        ));
    }
    Ok(f == Format::Markdown)
}

/// Writes a release as a Markdown job summary, with the model image recorded on the
/// version (registry tag hoist.image) and the daemon's environment URLs when they can
/// be read (the summary is still written when they cannot).
fn write_markdown(
    ctx: &Context<'_>,
    api: &Client,
    detail: &ReleaseDetail,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let extras = crate::output::markdown::Extras {
        image: recorded_image(ctx, &detail.release.model, &detail.release.version),
        environments: api
            .status(Some(&detail.release.model))
            .or_else(|_| api.status(None))
            .map(|s| s.environments)
            .unwrap_or_default(),
    };
    crate::output::markdown::release(detail, &extras, out).map_err(stdout_err)
}

/// The `hoist.image` tag of a version, from the registry the CLI is pointed at
/// (--registry, MLFLOW_TRACKING_URI, or an embedded registry that exists already).
fn recorded_image(ctx: &Context<'_>, model: &str, version: &str) -> Option<String> {
    if ctx.registry == "embedded" && !ctx.home().ok()?.join("registry.db").exists() {
        return None;
    }
    let reg = ctx.open_registry().ok()?;
    let v = reg.as_dyn().get_version(model, version).ok()?;
    v.tags.get(hoist_types::wire::tags::IMAGE).cloned()
}

/// Print a release's progress until it ends; Err(ReleaseFailed) unless it succeeded.
fn follow(
    ctx: &Context<'_>,
    api: &Client,
    id: u64,
    timeout: Option<Duration>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let r = api.release(id)?;
        if r.summary != last && !ctx.json {
            writeln!(
                out,
                "[{:>5.1}s] release {id} v{}: {}",
                start.elapsed().as_secs_f64(),
                r.release.version,
                r.summary
            )
            .map_err(stdout_err)?;
            last = r.summary.clone();
        }
        if r.release.is_done() {
            if ctx.json {
                ctx.print_json(out, &r)?;
            }
            return match r.release.outcome {
                Some(Outcome::Succeeded) => Ok(()),
                _ => Err(CliError::ReleaseFailed(format!(
                    "release {id} {}",
                    r.summary
                ))),
            };
        }
        if timeout.is_some_and(|t| start.elapsed() > t) {
            return Err(CliError::Timeout(format!(
                "release {id} is still running ({last}); stopped waiting"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An operator's call on a release (promote, approve, abort), printed as `release
/// ID: what`.
pub(crate) fn operator(
    ctx: &Context<'_>,
    call: impl FnOnce(&Client) -> Result<Release, CliError>,
    what: &str,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let api = Client::new(ctx)?;
    let rec = call(&api)?;
    print(ctx, out, &rec, |o| {
        writeln!(o, "release {}: {what}", rec.id)
    })
}

pub(crate) fn rollback(
    ctx: &Context<'_>,
    a: RollbackArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let api = Client::new(ctx)?;
    let started = Instant::now();
    let rec = api.rollback(
        a.model.as_deref(),
        &Rollback {
            env: a.env.clone(),
            to: a.to.clone(),
        },
    )?;
    let id = rec.id;
    if matches!(rec.outcome, Some(Outcome::Aborted { .. })) {
        return print(ctx, out, &rec, |o| {
            writeln!(
                o,
                "release {id} aborted: 100% back on stable ({:.0} ms)",
                started.elapsed().as_secs_f64() * 1000.0
            )
        });
    }
    if a.no_wait {
        return print(ctx, out, &rec, |o| {
            writeln!(o, "release {id}: rollback to v{} started", rec.version)
        });
    }
    follow(ctx, &api, id, None, out)
}

/// How a transition's event reads: `verdict fail`, `gates passed`, ...
fn event_name(ev: &Event) -> String {
    match ev {
        Event::Verdict { verdict, .. } => format!("verdict {}", verdict.name()),
        other => other.name().replace('_', " "),
    }
}

/// The numbers a transition's event was based on (verdicts only).
fn event_numbers(ev: &Event) -> String {
    match ev {
        Event::Verdict { numbers, .. } => verdict_numbers(numbers),
        _ => String::new(),
    }
}

pub(crate) fn history(
    ctx: &Context<'_>,
    a: HistoryArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let markdown = markdown_format(ctx, a.format)?;
    let api = Client::new(ctx)?;
    if let Some(id) = a.release {
        let v = api.release(id)?;
        if markdown {
            return write_markdown(ctx, &api, &v, out);
        }
        return print(ctx, out, &v, |o| {
            let r = &v.release;
            writeln!(
                o,
                "release {} {} v{}: {}",
                r.id, r.model, r.version, v.summary
            )?;
            let mut any = false;
            for t in &v.transitions {
                let ev = &t.event;
                if !matches!(
                    ev,
                    Event::Verdict { .. } | Event::GatesPassed { .. } | Event::GatesFailed { .. }
                ) {
                    continue;
                }
                any = true;
                let what = event_name(ev);
                let reason = verdict_of(ev)
                    .and_then(Verdict::reason)
                    .or(ev.reason())
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                writeln!(o, "  {:>3}. {what}{reason}", t.seq)?;
                let numbers = event_numbers(ev);
                if !numbers.is_empty() {
                    writeln!(o, "       {numbers}")?;
                }
            }
            if !any {
                writeln!(o, "  no verdict yet")?;
            }
            Ok(())
        });
    }
    if markdown {
        return Err(CliError::Usage(
            "--format markdown needs a RELEASE (hoist history RELEASE --format markdown)".into(),
        ));
    }
    let v = api.releases(a.model.as_deref(), a.env.as_deref(), a.limit)?;
    // A MODEL column once the list spans several models.
    let several = v
        .releases
        .iter()
        .any(|s| s.release.model != v.releases[0].release.model);
    let width = v
        .releases
        .iter()
        .map(|s| s.release.model.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let model_col = |m: &str| {
        if several {
            format!("{m:<width$} ")
        } else {
            String::new()
        }
    };
    print(ctx, out, &v, |o| {
        writeln!(
            o,
            "{:<4} {}{:<8} {:<14} {:<28} {:<22} {:<12} {:>8}  REASON",
            "ID",
            model_col("MODEL"),
            "VERSION",
            "DIGEST",
            "TRIGGER",
            "ENVIRONMENTS",
            "OUTCOME",
            "TOOK"
        )?;
        for s in &v.releases {
            let r = &s.release;
            let digest = r.digest.as_deref().unwrap_or("-");
            let short = digest
                .strip_prefix("sha256:")
                .map(|d| &d[..12.min(d.len())])
                .unwrap_or(digest);
            let envs: Vec<&str> = r.plan.envs.iter().map(|e| e.name.as_str()).collect();
            let outcome = match &r.outcome {
                Some(Outcome::Failed { .. }) => "rolled back",
                Some(o) => o.name(),
                None => "in progress",
            };
            let reason = match &r.outcome {
                Some(Outcome::Failed { reason } | Outcome::Aborted { reason }) => reason.clone(),
                Some(Outcome::Superseded { by }) => format!("superseded by {by}"),
                Some(Outcome::Succeeded) | None => String::new(),
            };
            let took = r.updated_ms.saturating_sub(r.created_ms) as f64 / 1000.0;
            writeln!(
                o,
                "{:<4} {}{:<8} {:<14} {:<28} {:<22} {:<12} {:>7.1}s  {reason}",
                r.id.to_string(),
                model_col(&r.model),
                format!("v{}", r.version),
                short,
                truncate(&r.trigger, 28),
                envs.join(","),
                outcome,
                took
            )?;
        }
        Ok(())
    })
}

/// The verdict a verdict event carries.
fn verdict_of(ev: &Event) -> Option<&Verdict> {
    match ev {
        Event::Verdict { verdict, .. } => Some(verdict),
        _ => None,
    }
}

/// `12`, or `null` when the daemon did not say (as JSON would print it).
fn or_null(n: Option<u64>) -> String {
    n.map_or_else(|| "null".into(), |n| n.to_string())
}

/// One line of the numbers a verdict was based on (as journaled by the engine).
pub(crate) fn verdict_numbers(numbers: &serde_json::Value) -> String {
    let n = VerdictNumbers::of(numbers);
    let mut parts = Vec::new();
    let pct = |v: Option<f64>| v.map(|x| format!("{:.1}%", x * 100.0));
    for (variant, w) in [("candidate", &n.candidate), ("stable", &n.stable)] {
        let Some(w) = w else { continue };
        if let Some(req) = w.requests {
            let mut p = format!("{variant} {req} req, {} err", w.errors.unwrap_or(0));
            if let Some(p99) = w.p99_ms {
                p.push_str(&format!(", p99 {p99:.1} ms"));
            }
            parts.push(p);
        }
    }
    if let Some(e) = &n.error_comparison
        && let Some(p) = e.p
    {
        parts.push(format!(
            "errors p={p:.3}, {:+.2} points",
            e.difference.unwrap_or(f64::NAN) * 100.0
        ));
    }
    if let Some(c) = &n.latency_comparison
        && let Some(p) = c.p
    {
        parts.push(format!(
            "latency p={p:.3}, median ×{:.2}",
            c.median_ratio.unwrap_or(f64::NAN)
        ));
    }
    if let Some(psi) = n.drift.as_ref().and_then(|d| d.psi) {
        parts.push(format!("drift PSI {psi:.3}"));
    }
    if let Some(s) = &n.shadow
        && let Some(m) = s.mirrored
    {
        let mut p = format!("shadow {m} mirrored");
        if let Some(a) = pct(s.agreement) {
            p.push_str(&format!(", agreement {a} of {} rows", or_null(s.rows)));
        }
        if let Some(d) = s.mean_probability_diff {
            p.push_str(&format!(", mean |Δp| {d:.3}"));
        }
        if let Some(v) = &s.values
            && let (Some(rows), Some(d), Some(b)) = (v.rows, v.mean_abs_diff, v.bias)
        {
            p.push_str(&format!(
                ", values over {rows} rows: mean |Δ| {d:.3}, bias {b:+.3}"
            ));
        }
        if let Some(e) = s.errors.filter(|e| *e > 0) {
            p.push_str(&format!(", {e} failed"));
        }
        parts.push(p);
    }
    if let Some(e) = &n.evidence {
        let mut p = format!("needs {} more {}", e.needed, e.of);
        match (e.eta_seconds, e.per_second) {
            (Some(t), Some(r)) => p.push_str(&format!(", about {t:.0} s at {r:.1}/s")),
            _ => p.push_str(", none arrived yet"),
        }
        parts.push(p);
    }
    if let Some(f) = &n.feedback {
        let acc = |v: &Accuracy| {
            format!(
                "{} ({} of {} labelled rows)",
                pct(v.accuracy).unwrap_or_else(|| "-".into()),
                or_null(v.correct),
                or_null(v.labelled)
            )
        };
        parts.push(format!(
            "accuracy candidate {}, stable {}",
            acc(&f.candidate),
            acc(&f.stable)
        ));
    }
    parts.join("; ")
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1} ms"))
        .unwrap_or_else(|| "-".into())
}

fn metrics_cell(m: &WindowView) -> String {
    format!(
        "{} req, {:.1}% err, p99 {}",
        m.requests,
        m.error_rate * 100.0,
        fmt_ms(m.p99_ms)
    )
}

fn bar(progress: f64, width: usize) -> String {
    let filled = ((progress.clamp(0.0, 1.0)) * width as f64).round() as usize;
    format!(
        "[{}{}] {:>3.0}%",
        "#".repeat(filled),
        ".".repeat(width - filled),
        progress * 100.0
    )
}

/// The human status view.
pub(crate) fn render_status(v: &StatusView, o: &mut dyn Write) -> std::io::Result<()> {
    writeln!(o, "model {} · registry {}", v.model, v.registry)?;
    for e in &v.environments {
        let stable = e
            .stable
            .as_ref()
            .map(|s| format!("v{}", s.version))
            .unwrap_or_else(|| "-".into());
        let cand = e.candidate.as_ref().map(|s| format!("v{}", s.version));
        let w = e.weight;
        writeln!(o, "  {:<12} {:<24} {}", e.name, e.url, e.strategy)?;
        writeln!(
            o,
            "      stable    {:<6} {:>3}%  {}",
            stable,
            100 - w,
            metrics_cell(&e.stable_metrics)
        )?;
        if let Some(c) = cand {
            writeln!(
                o,
                "      candidate {:<6} {:>3}%  {}",
                c,
                w,
                metrics_cell(&e.candidate_metrics)
            )?;
        }
        if let Some(split) = &e.split {
            // On a cluster the numbers above come from Prometheus during analysis.
            writeln!(o, "      on Kubernetes: {split}")?;
        }
    }
    if v.active.is_empty() {
        writeln!(o, "  no release in progress")?;
    }
    for r in &v.active {
        writeln!(
            o,
            "release {} v{} ({}): {}",
            r.release.id, r.release.version, r.release.trigger, r.summary
        )?;
        writeln!(o, "  {}", bar(r.progress, 30))?;
        if let Some(lv) = &r.last_verdict {
            let why = lv
                .verdict
                .reason()
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            writeln!(
                o,
                "  last verdict: {}{why} ({})",
                lv.verdict.name(),
                metrics_cell(&lv.window)
            )?;
            let numbers = verdict_numbers(&lv.numbers);
            if !numbers.is_empty() {
                writeln!(o, "    {numbers}")?;
            }
        }
    }
    Ok(())
}

/// The human view of one release, with every transition.
fn render_release(v: &ReleaseDetail, o: &mut dyn Write) -> std::io::Result<()> {
    let r = &v.release;
    writeln!(
        o,
        "release {} {} v{} ({})",
        r.id, r.model, r.version, r.trigger
    )?;
    writeln!(o, "  {}", v.summary)?;
    writeln!(o, "  {}", bar(v.progress, 30))?;
    for t in &v.transitions {
        let ev = &t.event;
        let extra = ev
            .reason()
            .or(verdict_of(ev).and_then(Verdict::reason))
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        writeln!(o, "  {:>3}. {} → {}{extra}", t.seq, event_name(ev), t.phase)?;
        let numbers = event_numbers(ev);
        if !numbers.is_empty() {
            writeln!(o, "       {numbers}")?;
        }
    }
    Ok(())
}

/// One line for `status --watch` into a pipe: what changed is a new line.
fn status_line(v: &StatusView) -> String {
    let envs: Vec<String> = v
        .environments
        .iter()
        .map(|e| {
            let version = |d: &Option<DeploymentView>| {
                d.as_ref().map_or("-".to_string(), |d| d.version.clone())
            };
            format!(
                "{}: stable {} candidate {} at {}%",
                e.name,
                version(&e.stable),
                version(&e.candidate),
                e.weight
            )
        })
        .collect();
    let rel: Vec<String> = v
        .active
        .iter()
        .map(|r| format!("release {}: {}", r.release.id, r.summary))
        .collect();
    format!(
        "{} | {}",
        envs.join("; "),
        if rel.is_empty() {
            "idle".to_string()
        } else {
            rel.join("; ")
        }
    )
}

pub(crate) fn status(
    ctx: &Context<'_>,
    a: StatusArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let api = Client::new(ctx)?;
    match a.release {
        Some(id) => watch_view(
            ctx,
            &a,
            || api.release(id),
            render_release,
            |v| format!("release {}: {}", v.release.id, v.summary),
            |v| v.release.is_done(),
            out,
        ),
        None => {
            // One model (named, or the daemon's only one): its status, as always.
            let models = match &a.model {
                Some(m) => vec![m.clone()],
                None => api.models()?,
            };
            if models.len() <= 1 {
                let model = a.model.as_deref();
                return watch_view(
                    ctx,
                    &a,
                    || api.status(model),
                    render_status,
                    status_line,
                    |_| false,
                    out,
                );
            }
            watch_view(
                ctx,
                &a,
                || {
                    let models = models
                        .iter()
                        .map(|m| api.status(Some(m)))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(ModelsStatus { models })
                },
                |v: &ModelsStatus, o: &mut dyn Write| {
                    for (i, s) in v.models.iter().enumerate() {
                        if i > 0 {
                            writeln!(o)?;
                        }
                        render_status(s, o)?;
                    }
                    Ok(())
                },
                |v| {
                    v.models
                        .iter()
                        .map(status_line)
                        .collect::<Vec<_>>()
                        .join(" | ")
                },
                |_| false,
                out,
            )
        }
    }
}

/// `hoist status` of a daemon delivering several models (`--json`: `{"models": [...]}`).
#[derive(Serialize)]
struct ModelsStatus {
    models: Vec<hoist_types::api::StatusView>,
}

/// Prints `fetch()`'s view once, or with `--watch` until `done`: redrawn in a
/// terminal, one line (`line`) per change otherwise, one JSON object per poll with
/// `--json`.
fn watch_view<T: Serialize>(
    ctx: &Context<'_>,
    a: &StatusArgs,
    fetch: impl Fn() -> Result<T, CliError>,
    render: impl Fn(&T, &mut dyn Write) -> std::io::Result<()>,
    line: impl Fn(&T) -> String,
    done: impl Fn(&T) -> bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    if !a.watch {
        let v = fetch()?;
        return print(ctx, out, &v, |o| render(&v, o));
    }
    let tty = std::io::stdout().is_terminal() && !ctx.json;
    let mut last = String::new();
    loop {
        let v = fetch()?;
        if ctx.json {
            let text = serde_json::to_string(&v).expect("API types serialize");
            writeln!(out, "{text}").map_err(stdout_err)?;
        } else if tty {
            let mut buf = Vec::new();
            render(&v, &mut buf).map_err(stdout_err)?;
            write!(out, "\x1b[H\x1b[2J{}", String::from_utf8_lossy(&buf)).map_err(stdout_err)?;
            out.flush().map_err(stdout_err)?;
        } else {
            // One line per change, for logs and pipes.
            let l = line(&v);
            if l != last {
                writeln!(out, "{l}").map_err(stdout_err)?;
                last = l;
            }
        }
        if done(&v) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(a.interval.max(50)));
    }
}

/// The daemon's registry, and the same one as the embedded registry when it is that.
type DaemonRegistry = (
    Arc<dyn Registry>,
    Option<Arc<hoist_registry::embedded::EmbeddedRegistry>>,
);

/// Opens the registry for the daemon: --registry, else the config's, else
/// MLFLOW_TRACKING_URI, else embedded.
pub(crate) fn open_for_daemon(ctx: &Context<'_>, cfg: &Config) -> Result<DaemonRegistry, CliError> {
    let mut ctx2 = Context {
        home: ctx.home.clone(),
        registry: ctx.registry.clone(),
        json: ctx.json,
        env: ctx.env,
        api: ctx.api.clone(),
        registry_explicit: ctx.registry_explicit,
    };
    if !ctx.registry_explicit
        && let Some(url) = &cfg.registry.url
    {
        ctx2.registry = url.clone();
    }
    match ctx2.open_registry()? {
        Opened::Embedded(r) => {
            let r = Arc::new(r);
            Ok((r.clone(), Some(r)))
        }
        Opened::Mlflow(r) => Ok((Arc::new(r), None)),
    }
}

pub(crate) use crate::pipeline_file::{load_config, load_one_model};

pub(crate) fn up(ctx: &Context<'_>, a: UpArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let (mut cfg, source) = load_config(a.config.as_ref())?;
    if let Some(l) = a.listen {
        cfg.api.listen = l;
    }
    let (registry, embedded) = open_for_daemon(ctx, &cfg)?;
    let home = ctx.home()?;
    let program =
        hoist_targets::ServerProgram::locate().map_err(|e| CliError::Usage(e.to_string()))?;
    // The daemon reads a token file again whenever it changes (a rotated Secret).
    let token = hoist_types::Secret::from_env("HOIST_ADMIN_TOKEN", ctx.env)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let base_dir = match &a.config {
        Some(p) => p
            .parent()
            .map(|d| {
                if d.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    d.to_path_buf()
                }
            })
            .unwrap_or_else(|| PathBuf::from(".")),
        None => PathBuf::from("."),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Io {
            context: "tokio runtime".into(),
            source: e,
        })?;
    rt.block_on(async {
        let generated = token.is_none();
        let daemon_err = |e: anyhow::Error| CliError::Daemon { message: format!("{e:#}") };
        let listeners = daemon::Listeners::bind(&cfg).await.map_err(daemon_err)?;
        // SIGINT or SIGTERM stops every server the daemon started.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| CliError::Io { context: "signal".into(), source: e })?;
        let (signalled, mut stopping) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            let _ = signalled.send(());
        };
        let options = daemon::Options { config: cfg.clone(), home: home.clone(), registry: registry.clone(), embedded, program, token, base_dir };
        let mut d = daemon::start(listeners, shutdown, options).await.map_err(daemon_err)?;
        let mut log = d.log.subscribe();
        if ctx.json {
            let v = serde_json::json!({
                "api": format!("http://{}", d.api_addr),
                "config": source,
                "registry": registry.id(),
                "models": d.models.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
                "environments": d.urls.iter().map(|(n, u)| serde_json::json!({"name": n, "url": u})).collect::<Vec<_>>(),
            });
            writeln!(out, "{v}").map_err(stdout_err)?;
        } else {
            let names: Vec<&str> = d.models.iter().map(|m| m.name.as_str()).collect();
            writeln!(out, "hoist up: {} from {source}, registry {}", names.join(", "), registry.id()).map_err(stdout_err)?;
            writeln!(out, "  api          http://{}", d.api_addr).map_err(stdout_err)?;
            if generated {
                writeln!(out, "  token        {}", daemon::state_dir(&home).join("token").display()).map_err(stdout_err)?;
            }
            for (n, url) in &d.urls {
                writeln!(out, "  {:<12} {url}", n).map_err(stdout_err)?;
            }
            for m in &d.models {
                let trigger = match &m.config.model.trigger {
                    hoist_release::config::Trigger::Alias(a) => format!("alias {a} of {}", m.name),
                    hoist_release::config::Trigger::Stage(st) => format!("stage {st} of {}", m.name),
                    hoist_release::config::Trigger::Manual => format!("manual (hoist deploy {}/VERSION)", m.name),
                };
                writeln!(out, "  trigger      {trigger}").map_err(stdout_err)?;
            }
        }
        out.flush().map_err(stdout_err)?;
        loop {
            tokio::select! {
                _ = &mut stopping => break,
                line = log.recv() => {
                    match line {
                        Ok(l) => {
                            let text = if ctx.json { serde_json::to_string(&l).unwrap_or_default() } else { format!("{} {}", crate::output::time_of_day(l.at_ms), l.message) };
                            let _ = writeln!(out, "{text}");
                            let _ = out.flush();
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => break,
                    }
                }
            }
        }
        if !ctx.json {
            let _ = writeln!(out, "stopping: draining model servers");
        }
        d.stopped().await;
        Ok(())
    })
}
