//! `hoist quickstart`: the whole product in about a minute, on a fresh machine.
//!
//! A temporary daemon with the embedded registry delivers two models at once
//! (`[[models]]`): the bundled breast-cancer classifier and the diabetes regressor,
//! through one gateway per environment that routes by model
//! (`/models/{model}/invocations`). Both first versions go live together; steady
//! prediction traffic to both starts; breast-cancer v2 (more accurate) goes through
//! staging and a canary into production; then two releases overlap: diabetes v2
//! (retrained) goes live while breast-cancer v3, which shipped an unpruned dense
//! block and answers 30-60 ms slower, is caught by the canary analysis and rolled
//! back by itself. A summary per release and per model follows, and nothing is left
//! running unless `--keep`.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use hoist_registry::embedded::EmbeddedRegistry;
use hoist_release::config::{
    Analysis, AnalysisOverride, Config, Dur, Environment, MidRollout, ModelEntry, Pause, Step,
    StrategyKind, Trigger, Weight,
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
    /// Prediction requests per second the traffic generator sends each model
    #[arg(long, default_value_t = 150)]
    pub rps: u32,
}

/// The classifier: its third version is the slow one the canary rolls back.
const CLASSIFIER: &str = "breast-cancer";
/// The regressor: its second version goes live while the classifier's third is
/// rolled back.
const REGRESSOR: &str = "diabetes";

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

/// The rows the traffic generator sends each model, one row per request, in turn:
/// the first 20 held-out rows of its data (the bundled models' `reference.json`).
/// Varied rows give the analysis a real spread of answers to compare (the same
/// row over and over would make any retrained regressor look like drift).
const TRAFFIC_ROWS: [(&str, &[u8]); 2] = [
    (
        CLASSIFIER,
        include_bytes!("../../../examples/models/breast_cancer_gbt/reference.json"),
    ),
    (
        REGRESSOR,
        include_bytes!("../../../examples/models/diabetes_lr/reference.json"),
    ),
];

/// One request body per row of a `reference.json` (`inputs.input`: shape and
/// flat data): `{"inputs": [[...]]}`.
fn request_bodies(reference: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(reference).unwrap_or_default();
    let input = &v["inputs"]["input"];
    let width = input["shape"][1].as_u64().unwrap_or(1).max(1) as usize;
    let data: Vec<serde_json::Value> = input["data"].as_array().cloned().unwrap_or_default();
    data.chunks(width)
        .map(|row| serde_json::json!({ "inputs": [row] }).to_string())
        .collect()
}

/// One version the quickstart registers.
struct Version {
    model: &'static str,
    /// What changed, as the user reads it.
    what: &'static str,
    files: Package,
    /// The outcome the story expects (`succeeded`, `failed`).
    expect: &'static str,
}

/// One act of the story: versions registered together, whose releases then run at
/// the same time (one engine per model), and a headline.
struct Act {
    headline: &'static str,
    versions: &'static [Version],
}

const ACTS: [Act; 3] = [
    Act {
        headline: "both models' first versions, released at once",
        versions: &[
            Version {
                model: CLASSIFIER,
                what: "gradient-boosted trees, 95.1% held-out accuracy",
                files: package!("breast_cancer_gbt"),
                expect: "succeeded",
            },
            Version {
                model: REGRESSOR,
                what: "linear regression, R² 0.36 on held-out rows",
                files: package!("diabetes_lr"),
                expect: "succeeded",
            },
        ],
    },
    Act {
        headline: "a more accurate classifier through staging and a canary",
        versions: &[Version {
            model: CLASSIFIER,
            what: "logistic regression, 95.8% held-out accuracy",
            files: package!("breast_cancer_lr"),
            expect: "succeeded",
        }],
    },
    Act {
        headline: "two releases at the same time: one goes live, one is rolled back",
        versions: &[
            Version {
                model: REGRESSOR,
                what: "linear regression retrained on another split",
                files: package!("diabetes_retrain"),
                expect: "succeeded",
            },
            Version {
                model: CLASSIFIER,
                what: "logistic regression with an unpruned dense block: same answers, 30-60 ms slower",
                files: package!("breast_cancer_slow"),
                expect: "failed",
            },
        ],
    },
];

fn write_package(dir: &Path, files: Package) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

/// The quickstart's pipeline, the same for both models (`[[models]]`): staging
/// (blue-green, smoke tests) then production (canary 25% → 50% → 100%, judged
/// every 250 ms on errors, drift and latency against stable's).
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
    cfg.models = [CLASSIFIER, REGRESSOR]
        .into_iter()
        .map(|name| ModelEntry {
            name: name.into(),
            trigger: Trigger::Alias("champion".into()),
            mid_rollout: MidRollout::default(),
            artifact_repository: None,
            environments: None,
            strategy: None,
            steps: None,
            analysis: None,
            gates: None,
            notifications: None,
        })
        .collect();
    cfg.server.stop_grace = Dur(Duration::from_secs(5));
    cfg.analysis = Analysis {
        enabled: true,
        interval: Dur(Duration::from_millis(250)),
        max_error_rate: 0.01,
        // Latency is judged against stable's over the same window (the default
        // `compare_latency`: a candidate whose median is 50% and 5 ms slower),
        // which a busy machine slows as much as the candidate; an absolute p99
        // bound only catches what no machine excuses.
        max_p99_ms: 250.0,
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

/// Requests served and failed per (model, variant, version), as the traffic
/// generator saw them.
#[derive(Default)]
struct Traffic {
    by: Mutex<BTreeMap<(String, String, String), Count>>,
    /// Failures with no variant header (the gateway itself failed), per model.
    unrouted_failures: Mutex<BTreeMap<String, u64>>,
}

/// Sends `rps` predictions a second to `model` through the gateway at `gateway`
/// (`/models/{model}/invocations`) until `stop`.
async fn generate(
    gateway: SocketAddr,
    model: &'static str,
    bodies: Vec<String>,
    rps: u32,
    stop: Arc<AtomicBool>,
    traffic: Arc<Traffic>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let workers = 8u32;
    let url = format!("http://{gateway}/models/{model}/invocations");
    if bodies.is_empty() {
        return;
    }
    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let period = Duration::from_secs_f64(workers as f64 / rps.max(1) as f64);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (http, url, bodies, next, stop, traffic) = (
            http.clone(),
            url.clone(),
            bodies.clone(),
            next.clone(),
            stop.clone(),
            traffic.clone(),
        );
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(period / workers * w).await;
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let body = bodies[next.fetch_add(1, Ordering::Relaxed) % bodies.len()].clone();
                let resp = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
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
                            model.to_string(),
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
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(model.to_string())
                            .or_default() += 1
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
                "  hoist status --watch    hoist history --model {CLASSIFIER}    hoist rollback --model {REGRESSOR} --to 1"
            );
            if let Some((_, prod)) = d.envs.iter().find(|(n, _)| n == "production") {
                let _ = writeln!(
                    out,
                    "  curl -s http://{prod}/models/{REGRESSOR}/invocations -H 'content-type: application/json' \\\n    -d '{{\"inputs\": [[0.02, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0.0, 0.02, -0.02]]}}'"
                );
            }
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

/// Prints the daemon's progress lines, each prefixed with its release's model.
struct Progress {
    log: tokio::sync::broadcast::Receiver<LogLine>,
    /// Release id → model, looked up once in the journal.
    models: BTreeMap<u64, String>,
    json: bool,
    t0: Instant,
}

impl Progress {
    fn drain(&mut self, d: &Daemon, out: &mut dyn Write) {
        while let Ok(l) = self.log.try_recv() {
            if self.json {
                continue;
            }
            let model = match l.release {
                Some(id) => match self.models.get(&id) {
                    Some(m) => m.clone(),
                    None => {
                        let m = d
                            .journal
                            .get(id)
                            .map(|r| r.release.model)
                            .unwrap_or_default();
                        self.models.insert(id, m.clone());
                        m
                    }
                },
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "  [{:>5.1}s] {:<13} {}",
                self.t0.elapsed().as_secs_f64(),
                model,
                l.message
            );
            let _ = out.flush();
        }
    }
}

/// Waits until the newest release of each (model, version) has finished, printing
/// the daemon's progress lines meanwhile; the records in the same order.
async fn wait_releases(
    d: &Daemon,
    wanted: &[(&str, String)],
    timeout: Duration,
    progress: &mut Progress,
    out: &mut dyn Write,
) -> Result<Vec<ReleaseRecord>, CliError> {
    let deadline = Instant::now() + timeout;
    loop {
        progress.drain(d, out);
        let mut done = Vec::new();
        for (model, version) in wanted {
            if let Ok(list) = d.journal.list(Some(model), None, 20)
                && let Some(r) = list.into_iter().find(|r| &r.release.version == version)
                && r.release.is_done()
            {
                done.push(r);
            }
        }
        if done.len() == wanted.len() {
            return Ok(done);
        }
        if Instant::now() >= deadline {
            let missing: Vec<String> = wanted
                .iter()
                .filter(|(m, v)| {
                    !done
                        .iter()
                        .any(|r| r.release.model == *m && &r.release.version == v)
                })
                .map(|(m, v)| format!("{m} v{v}"))
                .collect();
            return Err(CliError::ReleaseFailed(format!(
                "{}: no release finished within {} s",
                missing.join(", "),
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
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
    // The journal's times are wall-clock milliseconds; the story's start in them.
    let start_ms = unix_ms().saturating_sub(started.elapsed().as_millis() as u64);
    let since_start = |ms: u64| ms.saturating_sub(start_ms) as f64 / 1000.0;
    let env_addr = |name: &str| {
        d.envs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .ok_or_else(|| CliError::Usage(format!("the daemon has no {name} environment")))
    };
    let staging = env_addr("staging")?;
    let prod = env_addr("production")?;
    say(
        out,
        format!(
            "hoist quickstart: a temporary daemon in {}, delivering two models side by side:\n  \
             {CLASSIFIER} (a classifier) and {REGRESSOR} (a regressor), each with its own releases",
            home.display()
        ),
    )?;
    say(
        out,
        format!(
            "  staging    http://{staging}/models/<model>/invocations   (blue-green, smoke tests)"
        ),
    )?;
    say(
        out,
        format!(
            "  production http://{prod}/models/<model>/invocations   (canary 25% → 50% → 100%, {}s per step, judged on errors, drift and latency against stable's)",
            a.step_seconds
        ),
    )?;

    let mut progress = Progress {
        log: d.log.subscribe(),
        models: BTreeMap::new(),
        json: ctx.json,
        t0: started,
    };
    let traffic = Arc::new(Traffic::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut generators = Vec::new();
    let mut rows: Vec<SummaryRow> = Vec::new();
    let mut all_as_expected = true;
    // The version each model should end with live in production.
    let mut want_live: BTreeMap<&str, String> = BTreeMap::new();
    let mut overlapped = false;
    let mut overlap_line = String::new();
    for (n, act) in ACTS.iter().enumerate() {
        say(out, format!("\n▶ {}. {}", n + 1, act.headline))?;
        let mut wanted = Vec::new();
        for (k, v) in act.versions.iter().enumerate() {
            let dir = home
                .join("packages")
                .join(format!("{}-{}-{k}", v.model, n + 1));
            write_package(&dir, v.files).map_err(|e| CliError::Io {
                context: format!("writing {}", dir.display()),
                source: e,
            })?;
            let reg = registry.clone();
            let model = v.model;
            let version = tokio::task::spawn_blocking(move || {
                let mv = reg.register(&dir, model, &BTreeMap::new(), Some("champion"))?;
                Ok::<_, hoist_registry::Error>(mv.version)
            })
            .await
            .map_err(|e| CliError::Usage(e.to_string()))??;
            say(
                out,
                format!(
                    "  {model} v{version}: {}\n    registered and aliased `champion` → the daemon starts a release",
                    v.what
                ),
            )?;
            wanted.push((v.model, version));
        }
        let recs = wait_releases(d, &wanted, Duration::from_secs(180), &mut progress, out).await?;
        let first = rows.len();
        for (v, rec) in act.versions.iter().zip(&recs) {
            let outcome = rec.release.outcome.as_ref();
            let tag = outcome.map(outcome_name).unwrap_or("unfinished");
            all_as_expected &= tag == v.expect;
            if v.expect == "succeeded" {
                want_live.insert(v.model, rec.release.version.clone());
            }
            rows.push(SummaryRow {
                release: rec.release.id,
                act: n + 1,
                model: v.model,
                version: rec.release.version.clone(),
                what: v.what,
                outcome: outcome.map(|o| o.label()).unwrap_or("unfinished"),
                reason: outcome.and_then(|o| o.reason()),
                started_s: since_start(rec.created_ms),
                ended_s: since_start(rec.updated_ms),
            });
        }
        if n + 1 == ACTS.len() {
            // Every release of the last act started before any of them ended.
            let act_rows = &rows[first..];
            let first_end = act_rows.iter().map(|r| r.ended_s).fold(f64::MAX, f64::min);
            overlapped = act_rows.iter().all(|r| r.started_s < first_end);
            overlap_line = act_rows
                .iter()
                .map(|r| {
                    let what = if r.outcome == "succeeded" {
                        "went live"
                    } else {
                        r.outcome
                    };
                    format!(
                        "{} v{} {what} ({:.1}–{:.1} s)",
                        r.model, r.version, r.started_s, r.ended_s
                    )
                })
                .collect::<Vec<_>>()
                .join(" while ");
        }
        if n == 0 && generators.is_empty() {
            say(
                out,
                format!(
                    "  traffic: {} predictions/s to each model through the production gateway from now on",
                    a.rps
                ),
            )?;
            for (model, reference) in TRAFFIC_ROWS {
                generators.push(tokio::spawn(generate(
                    prod,
                    model,
                    request_bodies(reference),
                    a.rps,
                    stop.clone(),
                    traffic.clone(),
                )));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    progress.drain(d, out);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for g in generators {
        let _ = g.await;
    }

    // Summary.
    let by = traffic.by.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let unrouted = traffic
        .unrouted_failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut models = Vec::new();
    for model in [CLASSIFIER, REGRESSOR] {
        let of = |variant: Option<&str>| {
            by.iter()
                .filter(|((m, v, _), _)| m == model && variant.is_none_or(|x| x == v))
                .fold(Count::default(), |s, (_, c)| Count {
                    ok: s.ok + c.ok,
                    failed: s.failed + c.failed,
                })
        };
        let live = d
            .journal
            .live(model, "production")
            .ok()
            .flatten()
            .map(|l| l.version);
        models.push(ModelSummary {
            name: model,
            live_in_production: live.clone(),
            expected_live: want_live.get(model).cloned(),
            served: of(None).ok,
            failed: of(None).failed,
            stable_failed: of(Some("stable")).failed,
            gateway_failures: unrouted.get(model).copied().unwrap_or(0),
        });
    }
    let models_ok = models.iter().all(|m| {
        m.live_in_production == m.expected_live
            && m.stable_failed == 0
            && m.gateway_failures == 0
            && m.served > 0
    });
    let ok = all_as_expected && overlapped && models_ok;
    if ctx.json {
        let traffic_rows: Vec<_> = by
            .iter()
            .map(|((model, variant, version), c)| serde_json::json!({"model": model, "variant": variant, "version": version, "served": c.ok, "failed": c.failed}))
            .collect();
        let v = serde_json::json!({
            "ok": ok,
            "releases": rows,
            "overlapped": overlapped,
            "models": models,
            "traffic": traffic_rows,
            "seconds": started.elapsed().as_secs_f64(),
        });
        writeln!(out, "{v}").map_err(stdout_err)?;
    } else {
        let mut w = |s: String| writeln!(out, "{s}").map_err(stdout_err);
        w(format!(
            "\nSummary ({:.0} s)",
            started.elapsed().as_secs_f64()
        ))?;
        w(format!(
            "  {:<8} {:<14} {:<8} {:<12} {:>12}  REASON",
            "RELEASE", "MODEL", "VERSION", "OUTCOME", "FROM–TO"
        ))?;
        for r in &rows {
            w(format!(
                "  {:<8} {:<14} {:<8} {:<12} {:>5.1}–{:>5.1}s  {}",
                r.release.to_string(),
                r.model,
                format!("v{}", r.version),
                r.outcome,
                r.started_s,
                r.ended_s,
                r.reason.as_deref().unwrap_or("")
            ))?;
        }
        w(format!(
            "  at the same time: {overlap_line}{}",
            if overlapped {
                ""
            } else {
                " (they did not overlap)"
            }
        ))?;
        w("  traffic through the production gateway, as the client saw it:".into())?;
        for ((model, variant, version), c) in &by {
            w(format!(
                "    {:<14} {:<10} v{:<4} {:>7} served {:>5} failed",
                model, variant, version, c.ok, c.failed
            ))?;
        }
        w("  each model now:".into())?;
        for m in &models {
            w(format!(
                "    {:<14} v{} live in production; {} requests served, {} failed on stable{}",
                m.name,
                m.live_in_production.as_deref().unwrap_or("-"),
                m.served,
                m.stable_failed,
                if m.gateway_failures > 0 {
                    format!(
                        ", {} failed before any variant answered",
                        m.gateway_failures
                    )
                } else {
                    String::new()
                }
            ))?;
        }
        if !a.keep {
            w("  (run `hoist quickstart --keep` to explore the daemon afterwards: hoist status, history, rollback --model)".into())?;
        }
    }
    if ok {
        Ok(())
    } else {
        Err(CliError::ReleaseFailed(format!(
            "the quickstart did not go as expected: outcomes {:?}, last act overlapped: {overlapped}, models {}",
            rows.iter()
                .map(|r| format!("{} v{} {}", r.model, r.version, r.outcome))
                .collect::<Vec<_>>(),
            models
                .iter()
                .map(|m| format!(
                    "{} (live v{}, expected v{}; {} failed on stable, {} at the gateway)",
                    m.name,
                    m.live_in_production.as_deref().unwrap_or("-"),
                    m.expected_live.as_deref().unwrap_or("-"),
                    m.stable_failed,
                    m.gateway_failures
                ))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// One release of the quickstart's summary (`--json`: one object of `releases`).
#[derive(serde::Serialize)]
struct SummaryRow {
    release: u64,
    /// Which act of the story (1-based); releases of one act run together.
    act: usize,
    model: &'static str,
    version: String,
    /// What the version changed.
    what: &'static str,
    outcome: &'static str,
    reason: Option<String>,
    /// When the release was created and when it ended, seconds since the
    /// quickstart started (the journal's times): how a reader sees the overlap.
    started_s: f64,
    ended_s: f64,
}

/// One model at the end (`--json`: one object of `models`).
#[derive(serde::Serialize)]
struct ModelSummary {
    name: &'static str,
    /// The version production serves as stable now (the journal's live record).
    live_in_production: Option<String>,
    /// The version the story should have left live.
    expected_live: Option<String>,
    /// Requests answered with success, every variant.
    served: u64,
    /// Requests that failed, every variant.
    failed: u64,
    /// Requests stable failed: the quickstart's promise is zero.
    stable_failed: u64,
    /// Requests that failed before any variant answered.
    gateway_failures: u64,
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
