//! Gates: checks of a candidate before any user traffic, run in order against its
//! own server (not through the gateway, so live metrics stay clean). Each gate gives
//! a report with its numbers; the first failure stops the release. This module does
//! the I/O (scoring, timing, commands); the verdicts are `hoist_release::gates`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hoist_release::config::Gate;
use hoist_release::gates as verdicts;
use serde::Serialize;
use serde_json::{Value, json};

/// What the gates need to know about the release.
pub struct GateContext {
    /// The candidate server (`http://ADDR`).
    pub candidate: String,
    /// A stable server in the same environment, if there is one.
    pub stable: Option<String>,
    /// The stable version's files, when the journal has them (its logged signature).
    pub stable_path: Option<PathBuf>,
    pub model_name: String,
    pub model_path: PathBuf,
    pub version: String,
    pub digest: String,
    /// Relative gate files are resolved here (the directory of hoist.toml).
    pub base_dir: PathBuf,
    /// Why the release may change inputs and outputs (marked at deploy, or by the
    /// version's registry tag); the signature gate then reports a difference and passes.
    pub breaking_change: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GateReport {
    pub gate: String,
    pub passed: bool,
    pub summary: String,
    pub numbers: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// Run every gate in order; stop at the first failure. Ok(reports) when all passed,
/// Err((reason, reports)) otherwise.
pub async fn run(
    gates: &[Gate],
    ctx: &GateContext,
    http: &reqwest::Client,
) -> Result<Vec<GateReport>, (String, Vec<GateReport>)> {
    let mut reports = Vec::new();
    for g in gates {
        let r = match g {
            Gate::GoldenSet {
                file,
                label,
                min_accuracy,
                max_drop,
                min_recall,
                max_log_loss,
            } => {
                golden_set(
                    ctx,
                    http,
                    file,
                    label,
                    *min_accuracy,
                    *max_drop,
                    min_recall,
                    *max_log_loss,
                )
                .await
            }
            Gate::Latency {
                concurrency,
                requests,
                max_p50_ms,
                max_p99_ms,
                file,
            } => {
                latency(
                    ctx,
                    http,
                    *concurrency,
                    *requests,
                    *max_p50_ms,
                    *max_p99_ms,
                    file.as_deref(),
                )
                .await
            }
            Gate::Command { run, timeout } => command(ctx, run, timeout.0).await,
            Gate::Signature { allow_breaking } => signature(ctx, http, *allow_breaking).await,
        };
        let r = r.unwrap_or_else(|e| GateReport {
            gate: g.name().into(),
            passed: false,
            summary: e,
            numbers: Value::Null,
            output: None,
        });
        let passed = r.passed;
        let reason = format!("{}: {}", r.gate, r.summary);
        reports.push(r);
        if !passed {
            return Err((reason, reports));
        }
    }
    Ok(reports)
}

/// A labelled data file: feature rows and labels (as strings, compared with the
/// model's predicted labels printed the same way).
pub struct Golden {
    pub rows: Vec<Vec<f64>>,
    pub labels: Vec<String>,
}

fn label_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

pub fn read_golden(path: &Path, label: &str) -> Result<Golden, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    let is_jsonl = path
        .extension()
        .is_some_and(|e| e == "jsonl" || e == "json");
    if is_jsonl {
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let v: Value = serde_json::from_str(line)
                .map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))?;
            let feats = v["features"]
                .as_array()
                .ok_or_else(|| format!("{} line {}: no `features` array", path.display(), i + 1))?;
            rows.push(
                feats
                    .iter()
                    .map(|x| {
                        x.as_f64().ok_or_else(|| {
                            format!(
                                "{} line {}: a feature is not a number",
                                path.display(),
                                i + 1
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            );
            let l = v
                .get(label)
                .ok_or_else(|| format!("{} line {}: no `{label}`", path.display(), i + 1))?;
            labels.push(label_text(l));
        }
    } else {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<&str> = lines
            .next()
            .ok_or_else(|| format!("{} is empty", path.display()))?
            .split(',')
            .map(str::trim)
            .collect();
        let li = header.iter().position(|h| *h == label).ok_or_else(|| {
            format!(
                "{} has no `{label}` column (columns: {})",
                path.display(),
                header.join(", ")
            )
        })?;
        for (i, line) in lines.enumerate() {
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            if cells.len() != header.len() {
                return Err(format!(
                    "{} row {}: {} cells, the header has {}",
                    path.display(),
                    i + 2,
                    cells.len(),
                    header.len()
                ));
            }
            let mut row = Vec::with_capacity(cells.len() - 1);
            for (j, c) in cells.iter().enumerate() {
                if j == li {
                    continue;
                }
                row.push(c.parse::<f64>().map_err(|_| {
                    format!("{} row {}: `{c}` is not a number", path.display(), i + 2)
                })?);
            }
            rows.push(row);
            labels.push(label_text(&c_to_value(cells[li])));
        }
    }
    if rows.is_empty() {
        return Err(format!("{} has no rows", path.display()));
    }
    Ok(Golden { rows, labels })
}

fn c_to_value(c: &str) -> Value {
    c.parse::<f64>()
        .map(|f| json!(f))
        .unwrap_or_else(|_| json!(c))
}

/// Predicted labels and (where the model gives them) class probabilities.
struct Scored {
    labels: Vec<String>,
    probabilities: Option<Vec<Vec<f64>>>,
}

async fn score(http: &reqwest::Client, url: &str, rows: &[Vec<f64>]) -> Result<Scored, String> {
    let mut labels = Vec::new();
    let mut probs: Option<Vec<Vec<f64>>> = Some(Vec::new());
    for chunk in rows.chunks(64) {
        let resp = http
            .post(format!("{url}/invocations"))
            .json(&json!({ "inputs": chunk }))
            .send()
            .await
            .map_err(|e| format!("POST {url}/invocations: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!(
                "the server answered {status}: {}",
                text.chars().take(200).collect::<String>()
            ));
        }
        let v: Value =
            serde_json::from_str(&text).map_err(|e| format!("answer is not JSON: {e}"))?;
        let p = &v["predictions"];
        let (l, pr) = match p {
            Value::Object(o) => {
                let l = o
                    .get("label")
                    .or_else(|| {
                        o.values().find(|x| {
                            x.as_array()
                                .is_some_and(|a| a.first().is_some_and(|f| !f.is_array()))
                        })
                    })
                    .and_then(|x| x.as_array())
                    .ok_or("no label output in the predictions")?;
                let pr = o
                    .get("probabilities")
                    .and_then(|x| x.as_array())
                    .map(|rows| {
                        rows.iter()
                            .map(|r| {
                                r.as_array()
                                    .map(|c| c.iter().filter_map(|x| x.as_f64()).collect())
                                    .unwrap_or_default()
                            })
                            .collect::<Vec<Vec<f64>>>()
                    });
                (l.clone(), pr)
            }
            Value::Array(a) => (a.clone(), None),
            _ => return Err("no predictions in the answer".into()),
        };
        if l.len() != chunk.len() {
            return Err(format!(
                "{} rows sent, {} predictions came back",
                chunk.len(),
                l.len()
            ));
        }
        labels.extend(l.iter().map(label_text));
        match (probs.as_mut(), pr) {
            (Some(all), Some(pr)) => all.extend(pr),
            _ => probs = None,
        }
    }
    Ok(Scored {
        labels,
        probabilities: probs,
    })
}

#[allow(clippy::too_many_arguments)]
async fn golden_set(
    ctx: &GateContext,
    http: &reqwest::Client,
    file: &str,
    label: &str,
    min_accuracy: Option<f64>,
    max_drop: Option<f64>,
    min_recall: &std::collections::BTreeMap<String, f64>,
    max_log_loss: Option<f64>,
) -> Result<GateReport, String> {
    let path = ctx.base_dir.join(file);
    let g = read_golden(&path, label)?;
    let cand = score(http, &ctx.candidate, &g.rows).await?;
    // Stable is scored only when the gate compares with it.
    let stable = match (&ctx.stable, max_drop) {
        (Some(stable), Some(_)) => Some(
            score(http, stable, &g.rows)
                .await
                .map_err(|e| format!("scoring stable: {e}"))?,
        ),
        _ => None,
    };
    let limits = verdicts::GoldenLimits {
        min_accuracy,
        max_drop,
        min_recall,
        max_log_loss,
    };
    let v = verdicts::judge_golden(
        &limits,
        &verdicts::GoldenScores {
            truth: &g.labels,
            candidate: &cand.labels,
            probabilities: cand.probabilities.as_deref(),
            stable: stable.as_ref().map(|s| s.labels.as_slice()),
        },
    );
    let acc = v.accuracy;
    let mut numbers = json!({ "rows": g.rows.len(), "accuracy": acc, "recall": v.recall });
    if let Some(ll) = v.log_loss {
        numbers["log_loss"] = json!(ll);
    }
    if max_drop.is_some() {
        numbers["stable_accuracy"] = json!(v.stable_accuracy);
    }
    let failures = v.failures;
    let passed = failures.is_empty();
    let summary = if passed {
        format!("accuracy {acc:.3} on {} rows of {file}", g.rows.len())
    } else {
        format!(
            "{} (on {} rows of {file})",
            failures.join("; "),
            g.rows.len()
        )
    };
    Ok(GateReport {
        gate: "golden-set".into(),
        passed,
        summary,
        numbers,
        output: None,
    })
}

fn example_rows(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path.join("input_example.json")).ok()?;
    serde_json::from_str(&text).ok()
}

#[allow(clippy::too_many_arguments)]
async fn latency(
    ctx: &GateContext,
    http: &reqwest::Client,
    concurrency: usize,
    requests: usize,
    max_p50_ms: Option<f64>,
    max_p99_ms: Option<f64>,
    file: Option<&str>,
) -> Result<GateReport, String> {
    let bodies: Vec<String> = match file {
        Some(f) => read_golden(&ctx.base_dir.join(f), "label")?
            .rows
            .iter()
            .map(|r| json!({ "inputs": [r] }).to_string())
            .collect(),
        None => vec![
            json!({ "inputs": example_rows(&ctx.model_path).ok_or("the model has no input example; give the gate a `file`")? })
                .to_string(),
        ],
    };
    let bodies = std::sync::Arc::new(bodies);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (http, url, bodies, next) = (
            http.clone(),
            ctx.candidate.clone(),
            bodies.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= requests {
                    return Ok::<_, String>(times);
                }
                let body = bodies[i % bodies.len()].clone();
                let t = Instant::now();
                let r = http
                    .post(format!("{url}/invocations"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let ok = r.status().is_success();
                let _ = r.bytes().await;
                if !ok {
                    return Err("a request failed".to_string());
                }
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    let mut times = Vec::new();
    for t in tasks {
        times.extend(t.await.map_err(|e| e.to_string())??);
    }
    let (p50, p99) = verdicts::latency_quantiles(&mut times).ok_or("the gate made no requests")?;
    let failures = verdicts::judge_latency(p50, p99, max_p50_ms, max_p99_ms);
    let passed = failures.is_empty();
    Ok(GateReport {
        gate: "latency".into(),
        passed,
        summary: if passed {
            format!(
                "p50 {p50:.1} ms, p99 {p99:.1} ms over {} requests at concurrency {concurrency}",
                times.len()
            )
        } else {
            format!(
                "{} ({} requests at concurrency {concurrency})",
                failures.join("; "),
                times.len()
            )
        },
        numbers: json!({ "requests": times.len(), "concurrency": concurrency, "p50_ms": p50, "p99_ms": p99 }),
        output: None,
    })
}

async fn command(
    ctx: &GateContext,
    run: &[String],
    timeout: Duration,
) -> Result<GateReport, String> {
    let Some((program, args)) = run.split_first() else {
        return Err("`run` is empty".into());
    };
    let started = Instant::now();
    let child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(&ctx.base_dir)
        // A gate judges the candidate; it never acts on the daemon with its token.
        .env_remove("HOIST_ADMIN_TOKEN")
        .env_remove("HOIST_ADMIN_TOKEN_FILE")
        .env("HOIST_MODEL_PATH", &ctx.model_path)
        .env("HOIST_MODEL_NAME", &ctx.model_name)
        .env("HOIST_MODEL_VERSION", &ctx.version)
        .env("HOIST_MODEL_DIGEST", &ctx.digest)
        .env("HOIST_CANDIDATE_URL", &ctx.candidate)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(r) => r.map_err(|e| format!("`{program}`: {e}"))?,
        Err(_) => {
            return Err(format!(
                "`{}` did not finish within {timeout:?}",
                run.join(" ")
            ));
        }
    };
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let tail: String = if text.len() > 4096 {
        let cut = text.len() - 4096;
        let cut = (cut..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(cut);
        text[cut..].to_string()
    } else {
        text
    };
    let passed = out.status.success();
    Ok(GateReport {
        gate: "command".into(),
        passed,
        summary: format!(
            "`{}` exited with {} after {:.1} s",
            run.join(" "),
            out.status
                .code()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "a signal".into()),
            started.elapsed().as_secs_f64()
        ),
        numbers: json!({ "exit_code": out.status.code() }),
        output: Some(tail),
    })
}

async fn metadata(http: &reqwest::Client, url: &str, name: &str) -> Result<Value, String> {
    // A packed variant's URL is its shared server's `/models/{name}` (where it scores
    // this model); the server's metadata paths start at its root.
    let url = url.strip_suffix(&format!("/models/{name}")).unwrap_or(url);
    let r = http
        .get(format!("{url}/v2/models/{name}"))
        .send()
        .await
        .map_err(|e| format!("GET {url}/v2/models/{name}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("GET {url}/v2/models/{name}: {}", r.status()));
    }
    r.json().await.map_err(|e| e.to_string())
}

fn tensors(v: &Value, key: &str) -> Vec<verdicts::Tensor> {
    v[key]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or("").to_string(),
                t["datatype"].as_str().unwrap_or("").to_string(),
                t["shape"].to_string(),
            )
        })
        .collect()
}

/// A variant's inputs and outputs, and where they were read.
struct Described {
    inputs: Vec<verdicts::Tensor>,
    outputs: Vec<verdicts::Tensor>,
    raw: Value,
    /// `server` (its Open Inference Protocol metadata) or `MLmodel` (the logged signature).
    source: &'static str,
}

/// What the variant's server says (`GET /v2/models/{name}`), else the signature its
/// MLmodel was logged with (a flavor served by `mlflow models serve` has no
/// metadata endpoint).
async fn describe(
    http: &reqwest::Client,
    url: &str,
    name: &str,
    files: Option<&Path>,
) -> Result<Described, String> {
    match metadata(http, url, name).await {
        Ok(v) => Ok(Described {
            inputs: tensors(&v, "inputs"),
            outputs: tensors(&v, "outputs"),
            raw: json!({ "inputs": v["inputs"], "outputs": v["outputs"] }),
            source: "server",
        }),
        Err(server) => logged(files).map_err(|why| format!("{server}; {why}")),
    }
}

fn logged(files: Option<&Path>) -> Result<Described, String> {
    let Some(dir) = files.filter(|d| !d.as_os_str().is_empty()) else {
        return Err("no model files to read a logged signature from".into());
    };
    let dir = if dir.is_file() {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    match hoist_types::signature::logged(dir)? {
        Some((inputs, outputs)) => {
            let list = |ts: &[verdicts::Tensor]| {
                ts.iter()
                    .map(|(n, t, s)| json!({ "name": n, "type": t, "shape": s }))
                    .collect::<Vec<_>>()
            };
            Ok(Described {
                raw: json!({ "inputs": list(&inputs), "outputs": list(&outputs) }),
                inputs,
                outputs,
                source: "MLmodel",
            })
        }
        None => Err(format!(
            "{} logs no signature to compare instead (MLmodel `signature:`; log the model \
             with one, e.g. mlflow's `signature=infer_signature(X, model.predict(X))`)",
            dir.display()
        )),
    }
}

async fn signature(
    ctx: &GateContext,
    http: &reqwest::Client,
    allow_breaking: bool,
) -> Result<GateReport, String> {
    let mut cand = describe(http, &ctx.candidate, &ctx.model_name, Some(&ctx.model_path)).await?;
    let Some(stable) = &ctx.stable else {
        return Ok(GateReport {
            gate: "signature".into(),
            passed: true,
            summary: "no stable version to compare with".into(),
            numbers: json!({ "inputs": cand.raw["inputs"], "outputs": cand.raw["outputs"], "source": cand.source }),
            output: None,
        });
    };
    let mut st = describe(http, stable, &ctx.model_name, ctx.stable_path.as_deref()).await?;
    if st.source != cand.source {
        // One server describes itself, the other does not (a flavor changed between
        // versions): compare what both were logged with, or nothing.
        let why = |e: String| {
            format!(
                "stable's signature comes from its {} and the candidate's from its {}, and \
                 they cannot be compared: {e}",
                st.source, cand.source
            )
        };
        let c = logged(Some(&ctx.model_path)).map_err(why)?;
        let s = logged(ctx.stable_path.as_deref()).map_err(why)?;
        (cand, st) = (c, s);
    }
    let why = match (&ctx.breaking_change, allow_breaking) {
        (Some(why), _) => Some(why.as_str()),
        (None, true) => Some("allow_breaking = true"),
        (None, false) => None,
    };
    let (passed, mut summary) = verdicts::judge_signature(
        [&st.inputs, &st.outputs],
        [&cand.inputs, &cand.outputs],
        why,
    );
    if cand.source == "MLmodel" {
        summary.push_str(" (the signatures the versions were logged with, in their MLmodel)");
    }
    Ok(GateReport {
        gate: "signature".into(),
        passed,
        summary,
        numbers: json!({ "stable": st.raw, "candidate": cand.raw, "source": cand.source }),
        output: None,
    })
}

/// The registry tag that marks a model version as a breaking change (its inputs or
/// outputs may differ from stable's): any value but `false`, `0` or empty.
pub const BREAKING_CHANGE_TAG: &str = hoist_types::wire::tags::BREAKING_CHANGE;

/// Why the version is a breaking change according to its registry tags, if it is.
/// A registry that cannot be read marks nothing (the signature gate then compares).
pub async fn breaking_change_tag(
    registry: std::sync::Arc<dyn hoist_registry::Registry>,
    ctx: &GateContext,
) -> Option<String> {
    let (model, version) = (ctx.model_name.clone(), ctx.version.clone());
    let v = tokio::task::spawn_blocking(move || registry.get_version(&model, &version))
        .await
        .ok()?
        .ok()?;
    let value = v.tags.get(BREAKING_CHANGE_TAG)?.trim().to_string();
    (!matches!(value.to_ascii_lowercase().as_str(), "" | "false" | "0"))
        .then(|| format!("the version's registry tag {BREAKING_CHANGE_TAG} = {value}"))
}
