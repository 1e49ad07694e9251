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
use serde_json::Value;

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
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One release (id) instead of the whole daemon
    pub release: Option<u64>,
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
    /// Skip the remaining steps: 100% now
    #[arg(long)]
    pub full: bool,
}

#[derive(Debug, Args)]
pub struct ReleaseIdArgs {
    pub release: u64,
}

#[derive(Debug, Args)]
pub struct AbortArgs {
    pub release: u64,
    /// Why (written to the journal and the registry tag hoist.rollback_reason)
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
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
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// A client of the daemon's API.
pub(crate) struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

impl Api {
    pub(crate) fn new(ctx: &Context<'_>) -> Result<Api, CliError> {
        let home = ctx.home().ok();
        let from_file = |name: &str| {
            home.as_ref()
                .and_then(|h| std::fs::read_to_string(daemon::state_dir(h).join(name)).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let base = ctx
            .api
            .clone()
            .or_else(|| (ctx.env)("HOIST_API"))
            .or_else(|| from_file("api"))
            .unwrap_or_else(|| "http://127.0.0.1:7070".into());
        let token = (ctx.env)("HOIST_ADMIN_TOKEN")
            .or_else(|| {
                (ctx.env)("HOIST_ADMIN_TOKEN_FILE")
                    .and_then(|p| std::fs::read_to_string(p).ok())
                    .map(|s| s.trim().to_string())
            })
            .or_else(|| from_file("token"));
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| CliError::Usage(format!("http client: {e}")))?;
        Ok(Api {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    fn send(&self, req: reqwest::blocking::RequestBuilder) -> Result<Value, CliError> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().map_err(|e| CliError::Daemon {
            message: format!(
                "no hoist daemon answers at {} ({}); start one with `hoist up`, or point --api / HOIST_API at it",
                self.base,
                if e.is_connect() { "connection refused".to_string() } else { e.to_string() }
            ),
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        if status >= 400 {
            let message = v["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {status}: {text}"));
            return Err(CliError::Api { status, message });
        }
        Ok(v)
    }

    pub(crate) fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(self.http.get(format!("{}{path}", self.base)))
    }

    pub(crate) fn post(&self, path: &str, body: Value) -> Result<Value, CliError> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
    }
}

fn print(
    ctx: &Context<'_>,
    out: &mut dyn Write,
    v: &Value,
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
    let api = Api::new(ctx)?;
    let mut body = serde_json::json!({
        "model": a.model,
        "supersede": a.supersede,
        "breaking_change": a.breaking_change,
    });
    if let Some(e) = &a.env {
        body["env"] = e.clone().into();
    }
    let rec = api.post("/api/v1/releases", body)?;
    let id = rec["id"].as_u64().unwrap_or(0);
    if !a.wait {
        return print(ctx, out, &rec, |o| {
            writeln!(
                o,
                "release {id}: {} v{} started",
                rec["model"].as_str().unwrap_or(""),
                rec["version"].as_str().unwrap_or("")
            )?;
            writeln!(o, "follow it with `hoist status {id} --watch`")
        });
    }
    follow(ctx, &api, id, a.timeout.map(Duration::from_secs), out)
}

/// Print a release's progress until it ends; Err(ReleaseFailed) unless it succeeded.
fn follow(
    ctx: &Context<'_>,
    api: &Api,
    id: u64,
    timeout: Option<Duration>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let r = api.get(&format!("/api/v1/releases/{id}"))?;
        let summary = r["summary"].as_str().unwrap_or("").to_string();
        if summary != last && !ctx.json {
            writeln!(
                out,
                "[{:>5.1}s] release {id} v{}: {summary}",
                start.elapsed().as_secs_f64(),
                r["version"].as_str().unwrap_or("")
            )
            .map_err(stdout_err)?;
            last = summary;
        }
        if r["phase"]["phase"] == "done" {
            if ctx.json {
                ctx.print_json(out, &r)?;
            }
            return match r["outcome"]["outcome"].as_str() {
                Some("succeeded") => Ok(()),
                _ => Err(CliError::ReleaseFailed(format!(
                    "release {id} {}",
                    r["summary"].as_str().unwrap_or("did not succeed")
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

pub(crate) fn operator(
    ctx: &Context<'_>,
    path: String,
    body: Value,
    what: &str,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let api = Api::new(ctx)?;
    let rec = api.post(&path, body)?;
    print(ctx, out, &rec, |o| {
        writeln!(o, "release {}: {what}", rec["id"])
    })
}

pub(crate) fn rollback(
    ctx: &Context<'_>,
    a: RollbackArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let api = Api::new(ctx)?;
    let mut body = serde_json::json!({});
    if let Some(e) = &a.env {
        body["env"] = e.clone().into();
    }
    if let Some(t) = &a.to {
        body["to"] = t.clone().into();
    }
    let started = Instant::now();
    let rec = api.post("/api/v1/rollback", body)?;
    let id = rec["id"].as_u64().unwrap_or(0);
    let aborted = rec["outcome"]["outcome"] == "aborted";
    if aborted {
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
            writeln!(
                o,
                "release {id}: rollback to v{} started",
                rec["version"].as_str().unwrap_or("")
            )
        });
    }
    follow(ctx, &api, id, None, out)
}

pub(crate) fn history(
    ctx: &Context<'_>,
    a: HistoryArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let api = Api::new(ctx)?;
    if let Some(id) = a.release {
        let v = api.get(&format!("/api/v1/releases/{id}"))?;
        return print(ctx, out, &v, |o| {
            writeln!(
                o,
                "release {} {} v{}: {}",
                v["id"],
                v["model"].as_str().unwrap_or(""),
                v["version"].as_str().unwrap_or(""),
                v["summary"].as_str().unwrap_or("")
            )?;
            let mut any = false;
            for t in v["transitions"].as_array().into_iter().flatten() {
                let ev = &t["event"];
                if ev["event"] != "verdict"
                    && ev["event"] != "gates_passed"
                    && ev["event"] != "gates_failed"
                {
                    continue;
                }
                any = true;
                let what = match ev["verdict"]["verdict"].as_str() {
                    Some(v) => format!("verdict {v}"),
                    None => ev["event"].as_str().unwrap_or("").replace('_', " "),
                };
                let reason = ev["verdict"]["reason"]
                    .as_str()
                    .or(ev["reason"].as_str())
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                writeln!(o, "  {:>3}. {what}{reason}", t["seq"])?;
                let numbers = verdict_numbers(&ev["numbers"]);
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
    let mut path = format!("/api/v1/releases?limit={}", a.limit);
    if let Some(e) = &a.env {
        path.push_str(&format!("&env={e}"));
    }
    let v = api.get(&path)?;
    print(ctx, out, &v, |o| {
        writeln!(
            o,
            "{:<4} {:<8} {:<14} {:<28} {:<22} {:<12} {:>8}  REASON",
            "ID", "VERSION", "DIGEST", "TRIGGER", "ENVIRONMENTS", "OUTCOME", "TOOK"
        )?;
        for r in v["releases"].as_array().into_iter().flatten() {
            let digest = r["digest"].as_str().unwrap_or("-");
            let short = digest
                .strip_prefix("sha256:")
                .map(|d| &d[..12.min(d.len())])
                .unwrap_or(digest);
            let envs: Vec<&str> = r["plan"]["envs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["name"].as_str())
                .collect();
            let outcome = match r["outcome"]["outcome"].as_str() {
                Some("failed") => "rolled back",
                Some(o) => o,
                None => "in progress",
            };
            let reason = r["outcome"]["reason"]
                .as_str()
                .map(str::to_string)
                .or_else(|| {
                    r["outcome"]["by"]
                        .as_u64()
                        .map(|b| format!("superseded by {b}"))
                })
                .unwrap_or_default();
            let took = (r["updated_ms"]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(r["created_ms"].as_u64().unwrap_or(0)))
                as f64
                / 1000.0;
            writeln!(
                o,
                "{:<4} {:<8} {:<14} {:<28} {:<22} {:<12} {:>7.1}s  {reason}",
                r["id"].to_string(),
                format!("v{}", r["version"].as_str().unwrap_or("")),
                short,
                truncate(r["trigger"].as_str().unwrap_or(""), 28),
                envs.join(","),
                outcome,
                took
            )?;
        }
        Ok(())
    })
}

/// One line of the numbers a verdict was based on (as journaled by the engine).
pub(crate) fn verdict_numbers(n: &Value) -> String {
    let mut parts = Vec::new();
    let ms = |v: &Value| v.as_f64().map(|x| format!("{x:.1} ms"));
    let pct = |v: &Value| v.as_f64().map(|x| format!("{:.1}%", x * 100.0));
    for variant in ["candidate", "stable"] {
        let w = &n[variant];
        if let Some(req) = w["requests"].as_u64() {
            let mut p = format!(
                "{variant} {req} req, {} err",
                w["errors"].as_u64().unwrap_or(0)
            );
            if let Some(p99) = ms(&w["p99_ms"]) {
                p.push_str(&format!(", p99 {p99}"));
            }
            parts.push(p);
        }
    }
    let e = &n["error_comparison"];
    if let Some(p) = e["p"].as_f64() {
        parts.push(format!(
            "errors p={p:.3}, {:+.2} points",
            e["difference"].as_f64().unwrap_or(f64::NAN) * 100.0
        ));
    }
    let c = &n["latency_comparison"];
    if let Some(p) = c["p"].as_f64() {
        parts.push(format!(
            "latency p={p:.3}, median ×{:.2}",
            c["median_ratio"].as_f64().unwrap_or(f64::NAN)
        ));
    }
    if let Some(psi) = n["drift"]["psi"].as_f64() {
        parts.push(format!("drift PSI {psi:.3}"));
    }
    let s = &n["shadow"];
    if let Some(m) = s["mirrored"].as_u64() {
        let mut p = format!("shadow {m} mirrored");
        if let Some(a) = pct(&s["agreement"]) {
            p.push_str(&format!(", agreement {a} of {} rows", s["rows"]));
        }
        if let Some(d) = s["mean_probability_diff"].as_f64() {
            p.push_str(&format!(", mean |Δp| {d:.3}"));
        }
        if let Some(e) = s["errors"].as_u64().filter(|e| *e > 0) {
            p.push_str(&format!(", {e} failed"));
        }
        parts.push(p);
    }
    let f = &n["feedback"];
    if f.is_object() {
        let acc = |v: &Value| {
            format!(
                "{} ({} of {} labelled rows)",
                pct(&v["accuracy"]).unwrap_or_else(|| "-".into()),
                v["correct"],
                v["labelled"]
            )
        };
        parts.push(format!(
            "accuracy candidate {}, stable {}",
            acc(&f["candidate"]),
            acc(&f["stable"])
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

fn fmt_ms(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{x:.1} ms"))
        .unwrap_or_else(|| "-".into())
}

fn metrics_cell(m: &Value) -> String {
    format!(
        "{} req, {:.1}% err, p99 {}",
        m["requests"].as_u64().unwrap_or(0),
        m["error_rate"].as_f64().unwrap_or(0.0) * 100.0,
        fmt_ms(&m["p99_ms"])
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
pub(crate) fn render_status(v: &Value, o: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        o,
        "model {} · registry {}",
        v["model"].as_str().unwrap_or(""),
        v["registry"].as_str().unwrap_or("")
    )?;
    for e in v["environments"].as_array().into_iter().flatten() {
        let stable = e["stable"]["version"]
            .as_str()
            .map(|s| format!("v{s}"))
            .unwrap_or_else(|| "-".into());
        let cand = e["candidate"]["version"].as_str().map(|s| format!("v{s}"));
        let w = e["weight"].as_u64().unwrap_or(0);
        writeln!(
            o,
            "  {:<12} {:<24} {}",
            e["name"].as_str().unwrap_or(""),
            e["url"].as_str().unwrap_or(""),
            e["strategy"].as_str().unwrap_or("")
        )?;
        writeln!(
            o,
            "      stable    {:<6} {:>3}%  {}",
            stable,
            100 - w,
            metrics_cell(&e["stable_metrics"])
        )?;
        if let Some(c) = cand {
            writeln!(
                o,
                "      candidate {:<6} {:>3}%  {}",
                c,
                w,
                metrics_cell(&e["candidate_metrics"])
            )?;
        }
        if let Some(split) = e["split"].as_str() {
            // On a cluster the numbers above come from Prometheus during analysis.
            writeln!(o, "      on Kubernetes: {split}")?;
        }
    }
    let active = v["active"].as_array().cloned().unwrap_or_default();
    if active.is_empty() {
        writeln!(o, "  no release in progress")?;
    }
    for r in active {
        writeln!(
            o,
            "release {} v{} ({}): {}",
            r["id"],
            r["version"].as_str().unwrap_or(""),
            r["trigger"].as_str().unwrap_or(""),
            r["summary"].as_str().unwrap_or("")
        )?;
        writeln!(o, "  {}", bar(r["progress"].as_f64().unwrap_or(0.0), 30))?;
        if let Some(lv) = r.get("last_verdict").filter(|x| !x.is_null()) {
            let verdict = lv["verdict"]["verdict"].as_str().unwrap_or("");
            let why = lv["verdict"]["reason"]
                .as_str()
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            writeln!(
                o,
                "  last verdict: {verdict}{why} ({})",
                metrics_cell(&lv["window"])
            )?;
            let numbers = verdict_numbers(&lv["numbers"]);
            if !numbers.is_empty() {
                writeln!(o, "    {numbers}")?;
            }
        }
    }
    Ok(())
}

pub(crate) fn status(
    ctx: &Context<'_>,
    a: StatusArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let api = Api::new(ctx)?;
    let path = match a.release {
        Some(id) => format!("/api/v1/releases/{id}"),
        None => "/api/v1/status".to_string(),
    };
    let render = |v: &Value, o: &mut dyn Write| -> std::io::Result<()> {
        if a.release.is_some() {
            writeln!(
                o,
                "release {} {} v{} ({})",
                v["id"],
                v["model"].as_str().unwrap_or(""),
                v["version"].as_str().unwrap_or(""),
                v["trigger"].as_str().unwrap_or("")
            )?;
            writeln!(o, "  {}", v["summary"].as_str().unwrap_or(""))?;
            writeln!(o, "  {}", bar(v["progress"].as_f64().unwrap_or(0.0), 30))?;
            for t in v["transitions"].as_array().into_iter().flatten() {
                let ev = &t["event"];
                let extra = ev["reason"]
                    .as_str()
                    .or(ev["verdict"]["reason"].as_str())
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                let name = ev["verdict"]["verdict"]
                    .as_str()
                    .map(|v| format!("verdict {v}"))
                    .unwrap_or_else(|| ev["event"].as_str().unwrap_or("").replace('_', " "));
                writeln!(
                    o,
                    "  {:>3}. {} → {}{extra}",
                    t["seq"],
                    name,
                    t["phase"].as_str().unwrap_or("")
                )?;
                let numbers = verdict_numbers(&ev["numbers"]);
                if !numbers.is_empty() {
                    writeln!(o, "       {numbers}")?;
                }
            }
            Ok(())
        } else {
            render_status(v, o)
        }
    };
    if !a.watch {
        let v = api.get(&path)?;
        return print(ctx, out, &v, |o| render(&v, o));
    }
    let tty = std::io::stdout().is_terminal() && !ctx.json;
    let mut last = String::new();
    loop {
        let v = api.get(&path)?;
        if ctx.json {
            writeln!(out, "{v}").map_err(stdout_err)?;
        } else if tty {
            let mut buf = Vec::new();
            render(&v, &mut buf).map_err(stdout_err)?;
            write!(out, "\x1b[H\x1b[2J{}", String::from_utf8_lossy(&buf)).map_err(stdout_err)?;
            out.flush().map_err(stdout_err)?;
        } else {
            // One line per change, for logs and pipes.
            let line = match a.release {
                Some(_) => format!(
                    "release {}: {}",
                    v["id"],
                    v["summary"].as_str().unwrap_or("")
                ),
                None => {
                    let envs: Vec<String> = v["environments"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|e| {
                            format!(
                                "{}: stable {} candidate {} at {}%",
                                e["name"].as_str().unwrap_or(""),
                                e["stable"]["version"].as_str().unwrap_or("-"),
                                e["candidate"]["version"].as_str().unwrap_or("-"),
                                e["weight"]
                            )
                        })
                        .collect();
                    let rel: Vec<String> = v["active"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|r| {
                            format!(
                                "release {}: {}",
                                r["id"],
                                r["summary"].as_str().unwrap_or("")
                            )
                        })
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
            };
            if line != last {
                writeln!(out, "{line}").map_err(stdout_err)?;
                last = line;
            }
        }
        if a.release.is_some() && v["phase"]["phase"] == "done" {
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

pub(crate) fn admin_token(ctx: &Context<'_>) -> Result<Option<String>, CliError> {
    if let Some(t) = (ctx.env)("HOIST_ADMIN_TOKEN").filter(|t| !t.is_empty()) {
        return Ok(Some(t));
    }
    if let Some(p) = (ctx.env)("HOIST_ADMIN_TOKEN_FILE") {
        let t = std::fs::read_to_string(&p).map_err(|e| CliError::Io {
            context: format!("HOIST_ADMIN_TOKEN_FILE {p}"),
            source: e,
        })?;
        return Ok(Some(t.trim().to_string()));
    }
    Ok(None)
}

pub(crate) fn load_config(path: Option<&PathBuf>) -> Result<(Config, String), CliError> {
    let path = match path {
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from("hoist.toml")).filter(|p| p.exists()),
    };
    match path {
        Some(p) => Config::load(&p)
            .map(|c| (c, p.display().to_string()))
            .map_err(|e| CliError::Config(e.to_string())),
        None => Ok((Config::default(), "built-in defaults".into())),
    }
}

pub(crate) fn up(ctx: &Context<'_>, a: UpArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let (mut cfg, source) = load_config(a.config.as_ref())?;
    if let Some(l) = a.listen {
        cfg.api.listen = l;
    }
    let (registry, embedded) = open_for_daemon(ctx, &cfg)?;
    let home = ctx.home()?;
    let program =
        hoist_targets::ServerProgram::locate().map_err(|e| CliError::Usage(e.to_string()))?;
    let token = admin_token(ctx)?;
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
                "environments": d.urls.iter().map(|(n, u)| serde_json::json!({"name": n, "url": u})).collect::<Vec<_>>(),
            });
            writeln!(out, "{v}").map_err(stdout_err)?;
        } else {
            writeln!(out, "hoist up: {} from {source}, registry {}", cfg.model.name, registry.id()).map_err(stdout_err)?;
            writeln!(out, "  api          http://{}", d.api_addr).map_err(stdout_err)?;
            if generated {
                writeln!(out, "  token        {}", daemon::state_dir(&home).join("token").display()).map_err(stdout_err)?;
            }
            for (n, url) in &d.urls {
                writeln!(out, "  {:<12} {url}", n).map_err(stdout_err)?;
            }
            let trigger = match &cfg.model.trigger {
                hoist_release::config::Trigger::Alias(a) => format!("alias {a} of {}", cfg.model.name),
                hoist_release::config::Trigger::Stage(st) => format!("stage {st} of {}", cfg.model.name),
                hoist_release::config::Trigger::Manual => "manual (hoist deploy)".to_string(),
            };
            writeln!(out, "  trigger      {trigger}").map_err(stdout_err)?;
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
