//! What a transition means for people: release events for the configured receivers
//! (Slack, webhooks), sent when the transition is journaled.

use hoist_release::machine::{Action, Event, Outcome, Phase, Release};

use super::Engine;

impl Engine {
    /// Tell the configured receivers what this transition means for people.
    pub(super) fn notify(
        &self,
        before: &Release,
        next: &Release,
        event: &Event,
        actions: &[Action],
    ) {
        let mk = |name: &'static str,
                  env: Option<String>,
                  message: String,
                  details: serde_json::Value| {
            crate::notify::ReleaseEvent {
                event: name,
                release: next.id,
                model: next.model.clone(),
                version: next.version.clone(),
                env,
                message,
                details,
                at_ms: self.clock.now_ms(),
            }
        };
        if matches!(event, Event::Start) {
            let envs: Vec<&str> = next.plan.envs.iter().map(|e| e.name.as_str()).collect();
            self.notifier.send(mk(
                "started",
                None,
                format!("release started towards {}", envs.join(", ")),
                serde_json::Value::Null,
            ));
        }
        if let Event::GatesPassed { reports } | Event::GatesFailed { reports, .. } = event {
            for g in reports.as_array().into_iter().flatten() {
                let passed = g["passed"] == true;
                let msg = format!(
                    "gate {}: {}",
                    g["gate"].as_str().unwrap_or(""),
                    g["summary"].as_str().unwrap_or("")
                );
                self.notifier.send(mk(
                    if passed { "gate_passed" } else { "gate_failed" },
                    Some(next.env_name().to_string()),
                    msg,
                    g.clone(),
                ));
            }
        }
        for a in actions {
            match a {
                Action::SetWeight { env, weight }
                    if *weight > 0
                        && !next.is_done()
                        && matches!(next.phase, Phase::Step { .. }) =>
                {
                    self.notifier.send(mk(
                        "step",
                        Some(env.clone()),
                        format!("candidate at {weight}% in {env}"),
                        serde_json::json!({ "weight": weight }),
                    ));
                }
                Action::AwaitApproval { env } => {
                    self.notifier.send(mk(
                        "awaiting_approval",
                        Some(env.clone()),
                        format!("waiting for `hoist approve {}` in {env}", next.id),
                        serde_json::Value::Null,
                    ));
                }
                Action::PromoteCandidate { env } => {
                    self.notifier.send(mk(
                        "promoted",
                        Some(env.clone()),
                        format!("v{} is live in {env}", next.version),
                        serde_json::Value::Null,
                    ));
                }
                _ => {}
            }
        }
        if !before.is_done() && next.is_done() {
            let env = Some(next.env_name().to_string());
            match &next.outcome {
                Some(Outcome::Failed { reason }) => {
                    let verdict = self
                        .verdicts
                        .get(&next.id)
                        .map(|v| serde_json::to_value(v).unwrap_or_default())
                        .unwrap_or_default();
                    self.notifier
                        .send(mk("rolled_back", env, reason.clone(), verdict));
                }
                Some(o @ (Outcome::Aborted { .. } | Outcome::Superseded { .. })) => {
                    self.notifier.send(mk(
                        "aborted",
                        env,
                        o.reason().unwrap_or_default(),
                        serde_json::Value::Null,
                    ));
                }
                _ => {}
            }
        }
    }
}
