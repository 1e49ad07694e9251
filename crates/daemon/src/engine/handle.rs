//! The command handler: requests are answered, and the results of long actions become
//! the machine's events (when they still concern the release where it is).

use crate::views::ToApi;
use std::path::PathBuf;

use hoist_release::machine::{Event, Phase, ReleaseId, Verdict};

use super::{Deployment, Engine};
use crate::cmd::{Cmd, Started};
use crate::gates::GateReport;
use crate::views::{ApiError, VerdictView, WindowView};
use hoist_release::journal::ReleaseRecord;

impl Engine {
    pub(super) fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Create { req, reply } => {
                let _ = reply.send(self.create(req));
            }
            Cmd::Operator { id, event, reply } => {
                let _ = reply.send(self.operator(id, event));
            }
            Cmd::Rollback { env, to, reply } => {
                let _ = reply.send(self.rollback(env, to));
            }
            Cmd::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Cmd::Promotion { version, trigger } => self.promotion(version, trigger),
            Cmd::TriggerPoints { version, desc } => self.caught_up(version, desc),
            Cmd::Fetched { id, result } => self.fetched(id, result),
            Cmd::PolicyChecked { id, env, result } => self.policy_checked(id, env, result),
            Cmd::CandidateStarted { id, env, result } => self.candidate_started(id, env, result),
            Cmd::Smoke { id, env, result } => self.smoked(id, env, result),
            Cmd::Verdict {
                id,
                env,
                step,
                verdict,
                window,
                numbers,
            } => self.verdict(id, env, step, verdict, window, numbers),
            Cmd::Gates { id, result } => self.gated(id, result),
            Cmd::TargetFailed { id, env, reason } => {
                if self.env_of(id).as_deref() == Some(env.as_str()) {
                    let _ = self.apply(id, Event::CandidateFailed { reason });
                }
            }
            Cmd::Tick { id } => {
                if self.active.contains_key(&id) {
                    let _ = self.apply(id, Event::Tick);
                }
            }
            Cmd::Shutdown { .. } => {}
        }
    }

    /// An operator's event (promote, approve, abort) for release `id`.
    fn operator(&mut self, id: ReleaseId, event: Event) -> Result<ReleaseRecord, ApiError> {
        if self.active.contains_key(&id) {
            return self.apply(id, event).and_then(|_| self.record(id));
        }
        match self.journal.get(id) {
            Ok(r) => Err(ApiError::conflict(format!(
                "release {id} is finished ({})",
                r.release.describe()
            ))),
            Err(_) => Err(ApiError::not_found(format!("no release {id}"))),
        }
    }

    fn fetched(&mut self, id: ReleaseId, result: Result<(String, PathBuf), String>) {
        if !self.is_phase(id, |p| *p == Phase::Fetching) {
            return;
        }
        let ev = match result {
            Ok((digest, path)) => {
                match self
                    .journal
                    .set_artifact(id, &digest, &path.to_string_lossy())
                {
                    Err(e) => Event::FetchFailed {
                        reason: e.to_string(),
                    },
                    Ok(()) => {
                        self.say(
                            Some(id),
                            format!("release {id}: fetched and verified {digest}"),
                        );
                        Event::Fetched
                    }
                }
            }
            Err(reason) => Event::FetchFailed { reason },
        };
        let _ = self.apply(id, ev);
    }

    fn policy_checked(
        &mut self,
        id: ReleaseId,
        env: String,
        result: Result<crate::policy::Checked, String>,
    ) {
        let Some(r) = self.active.get(&id).cloned() else {
            return;
        };
        // Also after a restart, where a resumed release starts its candidate again
        // in any phase (and is checked again).
        if r.env_name() != env || !r.is_mid_rollout() || matches!(r.phase, Phase::Fetching) {
            return;
        }
        match result {
            Ok(checked) => {
                if let Some(p) = checked.passed {
                    self.say(Some(id), format!("release {id}: {env}: policy passed: {p}"));
                }
                self.launch_candidate(&r, env, checked.artifact);
            }
            Err(reason) => {
                self.say(Some(id), format!("release {id}: {env}: {reason}"));
                let _ = self.apply(id, Event::CandidateFailed { reason });
            }
        }
    }

    fn candidate_started(&mut self, id: ReleaseId, env: String, result: Result<Started, String>) {
        let wanted = self.active.get(&id).is_some_and(|r| {
            r.env_name() == env && r.is_mid_rollout() && !matches!(r.phase, Phase::Fetching)
        });
        if !wanted {
            if let (Ok(started), Some(e)) = (result, self.env_mut(&env)) {
                e.target.discard(started);
            }
            return;
        }
        let started = match result {
            Ok(s) => s,
            Err(reason) => {
                let _ = self.apply(id, Event::CandidateFailed { reason });
                return;
            }
        };
        let digest = self
            .journal
            .get(id)
            .ok()
            .and_then(|r| r.digest)
            .unwrap_or_default();
        let version = self.active[&id].version.clone();
        let Some(e) = self.env_mut(&env) else { return };
        if e.target
            .take_candidate(&version, started, e.candidate.is_some())
        {
            e.candidate = Some(Deployment {
                version,
                digest,
                release_id: id,
            });
        }
        let has_stable = e.stable.is_some();
        let _ = self.apply(id, Event::CandidateReady { has_stable });
        // A resumed release's actions that waited for its candidate.
        if let (Some(rest), Some(r)) = (self.deferred.remove(&id), self.active.get(&id).cloned()) {
            for a in rest {
                self.perform(&r, a);
            }
        }
    }

    fn smoked(&mut self, id: ReleaseId, env: String, result: Result<(), String>) {
        if !self.is_phase(id, |p| *p == Phase::SmokeTesting) || self.env_of(id) != Some(env.clone())
        {
            return;
        }
        let ev = match result {
            Ok(()) => {
                self.say(Some(id), format!("release {id}: {env}: smoke test passed"));
                Event::SmokePassed
            }
            Err(reason) => Event::SmokeFailed { reason },
        };
        let _ = self.apply(id, ev);
    }

    fn verdict(
        &mut self,
        id: ReleaseId,
        env: String,
        step: usize,
        verdict: Verdict,
        window: WindowView,
        numbers: serde_json::Value,
    ) {
        let current = self.active.get(&id).is_some_and(|r| {
            matches!(r.phase, Phase::Step { index, .. } if index == step) && r.env_name() == env
        });
        if !current {
            return;
        }
        let at_ms = self.clock.now_ms();
        self.events.send(
            "verdict",
            serde_json::json!({
                "release": id, "env": env, "step": step,
                "verdict": verdict.to_api().name(), "at_ms": at_ms,
            }),
        );
        self.verdicts.insert(
            id,
            VerdictView {
                env,
                step,
                verdict: verdict.to_api(),
                window,
                numbers: numbers.clone(),
                at_ms,
            },
        );
        let _ = self.apply(id, Event::Verdict { verdict, numbers });
    }

    fn gated(&mut self, id: ReleaseId, result: Result<Vec<GateReport>, (String, Vec<GateReport>)>) {
        if !self.is_phase(id, |p| *p == Phase::Gating) {
            return;
        }
        let (ev, reports) = match result {
            Ok(reports) => {
                let v = serde_json::to_value(&reports).unwrap_or_default();
                (Event::GatesPassed { reports: v }, reports)
            }
            Err((reason, reports)) => {
                let v = serde_json::to_value(&reports).unwrap_or_default();
                (Event::GatesFailed { reason, reports: v }, reports)
            }
        };
        for r in &reports {
            let mark = if r.passed { "passed" } else { "FAILED" };
            self.say(
                Some(id),
                format!("release {id}: gate {} {mark}: {}", r.gate, r.summary),
            );
        }
        let _ = self.apply(id, ev);
    }
}
