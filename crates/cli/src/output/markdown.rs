//! `--format markdown`: one release as the job summary CI pipelines show
//! (`hoist deploy --wait --format markdown >> $GITHUB_STEP_SUMMARY`). It renders the
//! same [`ReleaseDetail`] the API returns and `--json` prints; nothing is computed
//! here that the daemon did not journal.

use std::io::{self, Write};

use hoist_types::api::{Action, EnvView, Event, Outcome, ReleaseDetail};
use serde_json::Value;

use crate::release::verdict_numbers;

/// What the summary shows besides the release itself (looked up by the command).
#[derive(Debug, Default)]
pub(crate) struct Extras {
    /// The model image (`REPO@sha256:…`) recorded on the version as `hoist.image`.
    pub image: Option<String>,
    /// The daemon's environments (name, URL, strategy), when the status was read.
    pub environments: Vec<EnvView>,
}

/// `| a | b |` with `|` and line breaks in cells escaped.
fn row(o: &mut dyn Write, cells: &[String]) -> io::Result<()> {
    let cells: Vec<String> = cells
        .iter()
        .map(|c| c.replace('|', "\\|").replace(['\n', '\r'], " "))
        .collect();
    writeln!(o, "| {} |", cells.join(" | "))
}

fn header(o: &mut dyn Write, titles: &[&str]) -> io::Result<()> {
    row(o, &titles.iter().map(|t| t.to_string()).collect::<Vec<_>>())?;
    writeln!(o, "|{}", "---|".repeat(titles.len()))
}

/// `✅ succeeded`, `❌ rolled back`, ... and the reason, if any.
fn outcome(o: Option<&Outcome>) -> (String, Option<String>) {
    match o {
        Some(Outcome::Succeeded) => ("✅ succeeded".into(), None),
        Some(Outcome::Failed { reason }) => ("❌ rolled back".into(), Some(reason.clone())),
        Some(Outcome::Aborted { reason }) => ("⛔ aborted".into(), Some(reason.clone())),
        Some(Outcome::Superseded { by }) => {
            ("⏭️ superseded".into(), Some(format!("by release {by}")))
        }
        None => ("⏳ in progress".into(), None),
    }
}

fn verdict_mark(name: &str) -> String {
    match name {
        "pass" => "✅ pass".into(),
        "fail" => "❌ fail".into(),
        other => format!("⚠️ {other}"),
    }
}

/// `key value, key value` of a gate's numbers, in the order the gate wrote them
/// (nested objects as `key {a value, b value}`).
fn gate_numbers(v: &Value) -> String {
    let Some(map) = v.as_object() else {
        return String::new();
    };
    map.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| format!("{k} {}", scalar(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => trim_float(f),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Object(_) => format!("{{{}}}", gate_numbers(v)),
        other => other.to_string(),
    }
}

fn trim_float(f: f64) -> String {
    let s = format!("{f:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// The environment an action is about, if any.
fn action_env(a: &Action) -> Option<&str> {
    match a {
        Action::StartCandidate { env }
        | Action::RunGates { env }
        | Action::SmokeTest { env }
        | Action::AwaitApproval { env }
        | Action::SetWeight { env, .. }
        | Action::Mirror { env, .. }
        | Action::BeginAnalysis { env, .. }
        | Action::PromoteCandidate { env }
        | Action::StopCandidate { env } => Some(env),
        Action::Fetch | Action::WakeAt { .. } | Action::Tag { .. } => None,
    }
}

/// Writes one release as a Markdown job summary.
pub(crate) fn release(v: &ReleaseDetail, extras: &Extras, o: &mut dyn Write) -> io::Result<()> {
    let r = &v.release;
    let (result, reason) = outcome(r.outcome.as_ref());
    writeln!(
        o,
        "## hoist release {}: {} v{} · {result}",
        r.id, r.model, r.version
    )?;
    writeln!(o)?;
    header(o, &["", ""])?;
    let code = |s: &str| format!("`{s}`");
    let envs: Vec<&str> = r.plan.envs.iter().map(|e| e.name.as_str()).collect();
    // From its creation to its last journaled transition (or record update).
    let last = v.transitions.iter().map(|t| t.at_ms).max().unwrap_or(0);
    let took = last.max(r.updated_ms).saturating_sub(r.created_ms) as f64 / 1000.0;
    let mut facts = vec![
        ("model", r.model.clone()),
        ("version", r.version.clone()),
        (
            "model digest",
            r.digest.as_deref().map_or("not fetched".into(), code),
        ),
        (
            "image",
            extras.image.as_deref().map_or(
                "not recorded (`hoist image push --model` records it)".into(),
                code,
            ),
        ),
        ("trigger", r.trigger.clone()),
        ("environments", envs.join(" → ")),
        ("outcome", result.clone()),
    ];
    if let Some(why) = &reason {
        facts.push(("reason", why.clone()));
    }
    facts.push(("time taken", format!("{took:.1} s")));
    if r.outcome.is_none() {
        facts.push(("now", v.summary.clone()));
    }
    for (k, val) in facts {
        row(o, &[format!("**{k}**"), val])?;
    }

    // Gates and verdicts, in the order they were journaled, each with the environment
    // it was about (the last environment an action named before it).
    let mut gates = Vec::new();
    let mut verdicts = Vec::new();
    let mut env = String::new();
    let mut step = 0usize;
    for t in &v.transitions {
        match &t.event {
            Event::GatesPassed { reports } | Event::GatesFailed { reports, .. } => {
                for g in reports.as_array().into_iter().flatten() {
                    let passed = g.get("passed").and_then(Value::as_bool).unwrap_or(false);
                    let name = g.get("gate").and_then(Value::as_str).unwrap_or("?");
                    let summary = g.get("summary").and_then(Value::as_str).unwrap_or("");
                    let numbers = gate_numbers(g.get("numbers").unwrap_or(&Value::Null));
                    gates.push([
                        env.clone(),
                        name.to_string(),
                        verdict_mark(if passed { "pass" } else { "fail" }),
                        summary.to_string(),
                        numbers,
                    ]);
                }
            }
            Event::Verdict { verdict, numbers } => {
                let why = verdict.reason().unwrap_or("").to_string();
                verdicts.push([
                    env.clone(),
                    (step + 1).to_string(),
                    verdict_mark(verdict.name()),
                    why,
                    verdict_numbers(numbers),
                ]);
            }
            Event::SmokeFailed { reason } => {
                gates.push([
                    env.clone(),
                    "smoke test".into(),
                    verdict_mark("fail"),
                    reason.clone(),
                    String::new(),
                ]);
            }
            Event::SmokePassed => {
                gates.push([
                    env.clone(),
                    "smoke test".into(),
                    verdict_mark("pass"),
                    String::new(),
                    String::new(),
                ]);
            }
            _ => {}
        }
        for a in &t.actions {
            if let Some(e) = action_env(a) {
                env = e.to_string();
            }
            if let Action::BeginAnalysis { step: s, .. } = a {
                step = *s;
            }
        }
    }
    writeln!(o)?;
    writeln!(o, "### Gates")?;
    writeln!(o)?;
    if gates.is_empty() {
        writeln!(o, "No gate ran.")?;
    } else {
        header(o, &["environment", "gate", "verdict", "summary", "numbers"])?;
        for g in &gates {
            row(o, g)?;
        }
    }
    writeln!(o)?;
    writeln!(o, "### Analysis")?;
    writeln!(o)?;
    if verdicts.is_empty() {
        writeln!(o, "No verdict on live traffic.")?;
    } else {
        header(o, &["environment", "step", "verdict", "reason", "numbers"])?;
        for v in &verdicts {
            row(o, v)?;
        }
    }
    if !extras.environments.is_empty() {
        writeln!(o)?;
        writeln!(o, "### Environments")?;
        writeln!(o)?;
        header(o, &["environment", "URL", "strategy", "serving"])?;
        for e in extras
            .environments
            .iter()
            .filter(|e| envs.contains(&e.name.as_str()))
        {
            let serving = match (&e.stable, &e.candidate) {
                (Some(s), Some(c)) => format!(
                    "v{} {}%, v{} {}%",
                    s.version,
                    100 - e.weight,
                    c.version,
                    e.weight
                ),
                (Some(s), None) => format!("v{}", s.version),
                (None, Some(c)) => format!("v{} {}%", c.version, e.weight),
                (None, None) => "nothing".into(),
            };
            row(
                o,
                &[e.name.clone(), e.url.clone(), e.strategy.clone(), serving],
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hoist_types::api::Verdict;

    #[test]
    fn cells_escape_pipes_and_newlines() {
        let mut out = Vec::new();
        row(&mut out, &["a|b".into(), "c\nd".into()]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "| a\\|b | c d |\n");
    }

    #[test]
    fn gate_numbers_read_as_words() {
        let v = serde_json::json!({"rows": 200, "accuracy": 0.95123, "log_loss": null, "recall": {"0": 0.5}});
        let text = gate_numbers(&v);
        for part in ["rows 200", "accuracy 0.9512", "recall {0 0.5}"] {
            assert!(text.contains(part), "{text}");
        }
        assert!(!text.contains("log_loss"), "{text}");
        let fail = Verdict::Fail { reason: "x".into() };
        assert_eq!(verdict_mark(fail.name()), "❌ fail");
    }
}
