//! `hoist quickstart`: the whole product in about a minute, on a fresh machine.
//!
//! A temporary daemon with the embedded registry; v1 of the bundled breast-cancer
//! classifier is registered and goes live; steady prediction traffic starts; v2 (more
//! accurate) goes through staging and a canary into production; v3, which shipped an
//! unpruned dense block and answers 30-60 ms slower, is caught by the canary analysis
//! and rolled back by itself. A summary follows, and nothing is left running unless
//! `--keep`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use hoist_registry::embedded::EmbeddedRegistry;
use hoist_release::config::{
    Analysis, AnalysisOverride, Config, Dur, Environment, Pause, Step, StrategyKind, Trigger,
    Weight,
};
use hoist_release::journal::ReleaseRecord;

use crate::{CliError, Context, stdout_err};
use hoist_daemon::engine::LogLine;
use hoist_daemon::{self as daemon, Daemon};

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Keep the daemon, its gateways and servers running afterwards (Ctrl-C stops them)
    #[arg(long)]
    pub keep: bool,
    /// Seconds each canary step lasts
    #[arg(long, default_value_t = 3)]
    pub step_seconds: u64,
    /// Prediction requests per second of the traffic generator
    #[arg(long, default_value_t = 150)]
    pub rps: u32,
}

const MODEL: &str = "breast-cancer";

macro_rules! package {
    ($dir:literal) => {
        &[
            (
                "MLmodel",
                include_bytes!(concat!("../../../examples/models/", $dir, "/MLmodel")).as_slice(),
            ),
            (
                "model.onnx",
                include_bytes!(concat!("../../../examples/models/", $dir, "/model.onnx"))
                    .as_slice(),
            ),
            (
                "input_example.json",
                include_bytes!(concat!(
                    "../../../examples/models/",
                    $dir,
                    "/input_example.json"
                ))
                .as_slice(),
            ),
            (
                "serving_input_example.json",
                include_bytes!(concat!(
                    "../../../examples/models/",
                    $dir,
                    "/serving_input_example.json"
                ))
                .as_slice(),
            ),
            (
                "conda.yaml",
                include_bytes!(concat!("../../../examples/models/", $dir, "/conda.yaml"))
                    .as_slice(),
            ),
            (
                "python_env.yaml",
                include_bytes!(concat!(
                    "../../../examples/models/",
                    $dir,
                    "/python_env.yaml"
                ))
                .as_slice(),
            ),
            (
                "requirements.txt",
                include_bytes!(concat!(
                    "../../../examples/models/",
                    $dir,
                    "/requirements.txt"
                ))
                .as_slice(),
            ),
        ]
    };
}

type Package = &'static [(&'static str, &'static [u8])];

/// The three versions: (description, files).
const VERSIONS: [(&str, Package); 3] = [
    (
        "gradient-boosted trees, 95.1% held-out accuracy",
        package!("breast_cancer_gbt"),
    ),
    (
        "logistic regression, 95.8% held-out accuracy",
        package!("breast_cancer_lr"),
    ),
    (
        "logistic regression with an unpruned dense block: same answers, 30-60 ms slower",
        package!("breast_cancer_slow"),
    ),
];

fn write_package(dir: &Path, files: Package) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

/// The quickstart's pipeline: staging (blue-green, smoke tests) then production
/// (canary 25% → 50% → 100%, judged every 250 ms on error rate and p99).
fn pipeline(step: Duration) -> Config {
    let env = |name: &str, strategy, steps: Vec<Step>, analysis: AnalysisOverride| Environment {
        name: name.into(),
        listen: ([127, 0, 0, 1], 0).into(),
        replicas: 1,
        strategy,
        steps,
        scale_down_delay: Dur(Duration::ZERO),
        approval: false,
        analysis,
        sticky_header: None,
        sticky_cookie: None,
        force_header: hoist_types::wire::headers::FORCE_VARIANT.into(),
        response_timeout: Dur(Duration::from_secs(60)),
        feedback_token_env: None,
    };
    let mut cfg = Config::default();
    cfg.api.listen = ([127, 0, 0, 1], 0).into();
    cfg.registry.url = Some("embedded".into());
    cfg.registry.poll_interval = Dur(Duration::from_millis(100));
    cfg.model.name = MODEL.into();
    cfg.model.trigger = Trigger::Alias("champion".into());
    cfg.server.stop_grace = Dur(Duration::from_secs(5));
    cfg.analysis = Analysis {
        enabled: true,
        interval: Dur(Duration::from_millis(250)),
        max_error_rate: 0.01,
        max_p99_ms: 25.0,
        min_requests: 20,
        max_inconclusive: Dur(Duration::from_secs(20)),
        ..Analysis::default()
    };
    cfg.environments = vec![
        env(
            "staging",
            StrategyKind::BlueGreen,
            Vec::new(),
            AnalysisOverride {
                enabled: Some(false),
                ..Default::default()
            },
        ),
        env(
            "production",
            StrategyKind::Canary,
            vec![
                Step {
                    weight: Weight(25),
                    shadow: Weight(0),
                    pause: Pause::For(step),
                },
                Step {
                    weight: Weight(50),
                    shadow: Weight(0),
                    pause: Pause::For(step),
                },
            ],
            AnalysisOverride::default(),
        ),
    ];
    cfg
}

#[derive(Default, Debug, Clone, Copy)]
struct Count {
    ok: u64,
    failed: u64,
}

/// Requests served and failed per (variant, version), as the traffic generator saw them.
#[derive(Default)]
struct Traffic {
    by: Mutex<BTreeMap<(String, String), Count>>,
    /// Failures with no variant header (the gateway itself failed).
    unrouted_failures: Mutex<u64>,
}

async fn generate(
    url: String,
    body: String,
    rps: u32,
    stop: Arc<AtomicBool>,
    traffic: Arc<Traffic>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let workers = 8u32;
    let period = Duration::from_secs_f64(workers as f64 / rps.max(1) as f64);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (http, url, body, stop, traffic) = (
            http.clone(),
            url.clone(),
            body.clone(),
            stop.clone(),
            traffic.clone(),
        );
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(period / workers * w).await;
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let resp = http
                    .post(format!("{url}/invocations"))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match resp {
                    Ok(r) => {
                        let h = |k: &str| {
                            r.headers()
                                .get(k)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("?")
                                .to_string()
                        };
                        let key = (
                            h(hoist_types::wire::headers::VARIANT),
                            h(hoist_types::wire::headers::VERSION),
                        );
                        let ok = r.status().is_success() && r.bytes().await.is_ok();
                        let mut by = traffic.by.lock().unwrap_or_else(|p| p.into_inner());
                        let c = by.entry(key).or_default();
                        if ok { c.ok += 1 } else { c.failed += 1 }
                    }
                    Err(_) => {
                        *traffic
                            .unrouted_failures
                            .lock()
                            .unwrap_or_else(|p| p.into_inner()) += 1
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

pub(crate) fn run(
    ctx: &Context<'_>,
    a: QuickstartArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let started = Instant::now();
    let home = match &ctx.home {
        Some(h) => h.clone(),
        None => std::env::temp_dir().join(format!("hoist-quickstart-{}", std::process::id())),
    };
    let temporary = ctx.home.is_none();
    let io = |context: &str| {
        let context = context.to_string();
        move |source| CliError::Io { context, source }
    };
    std::fs::create_dir_all(&home).map_err(io("creating the quickstart's home"))?;
    let program =
        hoist_targets::ServerProgram::locate().map_err(|e| CliError::Usage(e.to_string()))?;
    let registry = Arc::new(EmbeddedRegistry::open(&home)?);
    let cfg = pipeline(Duration::from_secs(a.step_seconds.max(1)));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io("tokio runtime"))?;
    let result = rt.block_on(async {
        let daemon_err = |e: anyhow::Error| CliError::Daemon {
            message: format!("{e:#}"),
        };
        let listeners = daemon::Listeners::bind(&cfg).await.map_err(daemon_err)?;
        let options = daemon::Options {
            config: cfg.clone(),
            home: home.clone(),
            registry: registry.clone(),
            embedded: Some(registry.clone()),
            program,
            token: None,
            base_dir: home.clone(),
        };
        // Stopped by the story's end (`d.stop()`), not by a signal.
        let d = daemon::start(listeners, std::future::pending(), options)
            .await
            .map_err(daemon_err)?;
        let r = story(ctx, &a, &d, &registry, &home, out, started).await;
        if a.keep && r.is_ok() {
            let _ = writeln!(
                out,
                "\n--keep: the daemon stays up. Try, in another terminal:"
            );
            let _ = writeln!(
                out,
                "  export HOIST_HOME={} HOIST_API=http://{}",
                home.display(),
                d.api_addr
            );
            let _ = writeln!(
                out,
                "  hoist status --watch    hoist history    hoist rollback --to 1"
            );
            let _ = writeln!(out, "Ctrl-C stops it.");
            let _ = out.flush();
            let _ = tokio::signal::ctrl_c().await;
        }
        d.stop().await;
        r
    });
    drop(rt);
    if temporary && !a.keep {
        let _ = std::fs::remove_dir_all(&home);
    }
    result
}

/// Waits for the newest release of `version` to finish, printing the daemon's
/// progress lines meanwhile.
async fn wait_release(
    d: &Daemon,
    version: &str,
    timeout: Duration,
    log: &mut tokio::sync::broadcast::Receiver<LogLine>,
    out: &mut dyn Write,
    json: bool,
    t0: Instant,
) -> Option<ReleaseRecord> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        while let Ok(l) = log.try_recv() {
            if !json {
                let _ = writeln!(
                    out,
                    "  [{:>5.1}s] {}",
                    t0.elapsed().as_secs_f64(),
                    l.message
                );
                let _ = out.flush();
            }
        }
        if let Ok(list) = d.journal.list(None, None, 20)
            && let Some(r) = list.into_iter().find(|r| r.release.version == version)
            && r.release.is_done()
        {
            return Some(r);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn story(
    ctx: &Context<'_>,
    a: &QuickstartArgs,
    d: &Daemon,
    registry: &Arc<EmbeddedRegistry>,
    home: &Path,
    out: &mut dyn Write,
    started: Instant,
) -> Result<(), CliError> {
    let say = |out: &mut dyn Write, s: String| -> Result<(), CliError> {
        if !ctx.json {
            writeln!(out, "{s}").map_err(stdout_err)?;
            out.flush().map_err(stdout_err)?;
        }
        Ok(())
    };
    let prod = d
        .envs
        .iter()
        .find(|(n, _)| n == "production")
        .map(|(_, a)| *a)
        .expect("production");
    let staging = d
        .envs
        .iter()
        .find(|(n, _)| n == "staging")
        .map(|(_, a)| *a)
        .expect("staging");
    say(
        out,
        format!("hoist quickstart: a temporary daemon in {}", home.display()),
    )?;
    say(
        out,
        format!("  staging    http://{staging}   (blue-green, smoke tests)"),
    )?;
    say(
        out,
        format!(
            "  production http://{prod}   (canary 25% → 50% → 100%, {}s per step, judged on errors and p99 ≤ 25 ms)",
            a.step_seconds
        ),
    )?;

    let mut log = d.log.subscribe();

    let traffic = Arc::new(Traffic::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut outcomes = Vec::new();
    let mut generator = None;
    for (i, (what, files)) in VERSIONS.iter().enumerate() {
        let v = i + 1;
        let dir = home.join("packages").join(format!("v{v}"));
        write_package(&dir, files).map_err(|e| CliError::Io {
            context: format!("writing {}", dir.display()),
            source: e,
        })?;
        let reg = registry.clone();
        let t = Instant::now();
        let version = tokio::task::spawn_blocking(move || {
            let mv = reg.register(&dir, MODEL, &BTreeMap::new(), Some("champion"))?;
            Ok::<_, hoist_registry::Error>(mv.version)
        })
        .await
        .map_err(|e| CliError::Usage(e.to_string()))??;
        say(
            out,
            format!(
                "\n▶ v{version}: {what}\n  registered and aliased `champion` → the daemon starts a release"
            ),
        )?;
        let rec = wait_release(
            d,
            &version,
            Duration::from_secs(180),
            &mut log,
            out,
            ctx.json,
            started,
        )
        .await;
        let took = t.elapsed();
        let Some(rec) = rec else {
            return Err(CliError::ReleaseFailed(format!(
                "v{version}: no release finished within 180 s"
            )));
        };
        outcomes.push((
            rec.release.id,
            version.clone(),
            what.to_string(),
            rec.release.outcome.clone(),
            took,
        ));
        if v == 1 && generator.is_none() {
            let body = serde_json::json!({ "inputs": serde_json::from_slice::<serde_json::Value>(files[2].1).unwrap_or_default() }).to_string();
            let url = format!("http://{prod}");
            say(
                out,
                format!(
                    "  traffic: {} predictions/s to production from now on",
                    a.rps
                ),
            )?;
            generator = Some(tokio::spawn(generate(
                url,
                body,
                a.rps,
                stop.clone(),
                traffic.clone(),
            )));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    if let Some(g) = generator {
        let _ = g.await;
    }

    // Summary.
    let by = traffic.by.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let unrouted = *traffic
        .unrouted_failures
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let expected = ["succeeded", "succeeded", "failed"];
    let mut all_as_expected = true;
    let mut rows = Vec::new();
    for ((id, version, what, outcome, took), want) in outcomes.iter().zip(expected) {
        let label = outcome.as_ref().map(|o| o.label()).unwrap_or("unfinished");
        let tag = outcome.as_ref().map(outcome_name).unwrap_or_default();
        all_as_expected &= tag == want;
        rows.push(SummaryRow {
            release: *id,
            version: version.clone(),
            model: what.clone(),
            outcome: label,
            reason: outcome.as_ref().and_then(|o| o.reason()),
            seconds: took.as_secs_f64(),
        });
    }
    let stable_failed: u64 = by
        .iter()
        .filter(|((variant, _), _)| variant == "stable")
        .map(|(_, c)| c.failed)
        .sum();
    let traffic_rows: Vec<_> = by.iter().map(|((variant, version), c)| serde_json::json!({"variant": variant, "version": version, "served": c.ok, "failed": c.failed})).collect();
    let ok = all_as_expected && stable_failed == 0 && unrouted == 0;
    if ctx.json {
        let v = serde_json::json!({ "ok": ok, "releases": rows, "traffic": traffic_rows, "gateway_failures": unrouted, "seconds": started.elapsed().as_secs_f64() });
        writeln!(out, "{v}").map_err(stdout_err)?;
    } else {
        writeln!(out, "\nSummary ({:.0} s)", started.elapsed().as_secs_f64())
            .map_err(stdout_err)?;
        writeln!(
            out,
            "  {:<8} {:<8} {:<12} {:>7}  REASON",
            "RELEASE", "VERSION", "OUTCOME", "TOOK"
        )
        .map_err(stdout_err)?;
        for r in &rows {
            writeln!(
                out,
                "  {:<8} {:<8} {:<12} {:>6.1}s  {}",
                r.release.to_string(),
                format!("v{}", r.version),
                r.outcome,
                r.seconds,
                r.reason.as_deref().unwrap_or("")
            )
            .map_err(stdout_err)?;
        }
        writeln!(out, "  traffic to production, as the client saw it:").map_err(stdout_err)?;
        for ((variant, version), c) in &by {
            writeln!(
                out,
                "    {:<10} v{:<4} {:>7} served {:>5} failed",
                variant, version, c.ok, c.failed
            )
            .map_err(stdout_err)?;
        }
        if unrouted > 0 {
            writeln!(
                out,
                "    {unrouted} requests failed before any variant answered"
            )
            .map_err(stdout_err)?;
        }
        if !a.keep {
            writeln!(out, "  (run `hoist quickstart --keep` to explore the daemon afterwards: hoist status, history, rollback)").map_err(stdout_err)?;
        }
    }
    if ok {
        Ok(())
    } else {
        Err(CliError::ReleaseFailed(format!(
            "the quickstart did not go as expected: outcomes {:?}, {stable_failed} failed requests on stable, {unrouted} failed at the gateway",
            outcomes
                .iter()
                .map(|o| o.3.as_ref().map(|x| x.label()).unwrap_or("unfinished"))
                .collect::<Vec<_>>()
        )))
    }
}

/// One release of the quickstart's summary (`--json`: one object of `releases`).
#[derive(serde::Serialize)]
struct SummaryRow {
    release: u64,
    version: String,
    model: String,
    outcome: &'static str,
    reason: Option<String>,
    seconds: f64,
}

/// An outcome's name on the wire (`succeeded`, `failed`, ...).
fn outcome_name(o: &hoist_release::machine::Outcome) -> &'static str {
    use hoist_release::machine::Outcome;
    match o {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed { .. } => "failed",
        Outcome::Aborted { .. } => "aborted",
        Outcome::Superseded { .. } => "superseded",
    }
}
