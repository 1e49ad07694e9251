//! Performing the actions of a journaled transition. Each returns at once: what takes
//! time runs in a task (or on the target) and reports back as a [`Cmd`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hoist_release::machine::{Action, Release, ReleaseId};

use super::Engine;
use crate::cmd::{Cmd, Started};
use crate::live::{self, StepShape};
use crate::target::Candidate;

impl Engine {
    pub(super) fn perform(&mut self, r: &Release, action: Action) {
        let id = r.id;
        match action {
            Action::Fetch => {
                let (tx, registry) = (self.tx.clone(), self.registry.clone());
                let (model, version) = (r.model.clone(), r.version.clone());
                tokio::spawn(async move {
                    let result = super::fetch(registry, model, version).await;
                    let _ = tx.send(Cmd::Fetched { id, result }).await;
                });
            }
            Action::StartCandidate { env } => self.start_candidate(r, env),
            Action::RunGates { env } => self.run_gates(r, env),
            Action::SmokeTest { env } => self.smoke_test(id, env),
            Action::AwaitApproval { env } => {
                self.say(
                    Some(id),
                    format!("release {id}: {env}: waiting for approval: `hoist approve {id}`"),
                );
            }
            Action::SetWeight { env, weight } => {
                if let Some(e) = self.env_mut(&env) {
                    e.weight = weight;
                    e.target.set_weight(id, weight);
                }
            }
            Action::Mirror { env, percent } => {
                if let Some(e) = self.env_mut(&env) {
                    e.target.mirror(percent);
                }
                if percent > 0 {
                    self.say(
                        Some(id),
                        format!(
                            "release {id}: {env}: shadow: {percent}% of stable's requests are mirrored to the candidate"
                        ),
                    );
                }
            }
            Action::BeginAnalysis { env, step } => self.begin_analysis(r, env, step),
            Action::WakeAt { at_ms } => {
                let tx = self.tx.clone();
                let wait = Duration::from_millis(at_ms.saturating_sub(self.clock.now_ms()));
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let _ = tx.send(Cmd::Tick { id }).await;
                });
            }
            Action::PromoteCandidate { env } => self.promote(id, env),
            Action::StopCandidate { env } => self.stop_candidate(id, env),
            Action::Tag { key, value } => {
                self.tag(id, r.model.clone(), r.version.clone(), key, value);
            }
        }
    }

    fn start_candidate(&mut self, r: &Release, env: String) {
        let id = r.id;
        let Some(e) = self.env(&env) else { return };
        if e.candidate.as_ref().is_some_and(|c| c.release_id == id) {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let result = Ok(Started::default());
                let _ = tx.send(Cmd::CandidateStarted { id, env, result }).await;
            });
            return;
        }
        // The environment's policy first: nothing of it starts before it passes.
        if !crate::policy::needed(&self.cfg, &env) {
            return self.launch_candidate(r, env, None);
        }
        let tx = self.tx.clone();
        let digest = self
            .journal
            .get(id)
            .ok()
            .and_then(|rec| rec.digest)
            .unwrap_or_default();
        let check = crate::policy::check(
            self.cfg.clone(),
            self.base_dir.clone(),
            env.clone(),
            r.version.clone(),
            digest,
        );
        tokio::spawn(async move {
            let result = check.await;
            let _ = tx.send(Cmd::PolicyChecked { id, env, result }).await;
        });
    }

    /// Starts the candidate of release `r` in `env` (its policy passed; `artifact`:
    /// its model artifact by digest, for pods that pull it).
    pub(super) fn launch_candidate(&mut self, r: &Release, env: String, artifact: Option<String>) {
        let id = r.id;
        let rec = self.journal.get(id).ok();
        let c = Candidate {
            id,
            version: r.version.clone(),
            digest: rec
                .as_ref()
                .and_then(|rec| rec.digest.clone())
                .unwrap_or_default(),
            path: rec.and_then(|rec| rec.path),
            artifact,
        };
        if let Some(e) = self.env_mut(&env) {
            e.target.start_candidate(c);
        }
    }

    fn run_gates(&mut self, r: &Release, env: String) {
        let id = r.id;
        let Some(e) = self.env(&env) else { return };
        let url = |candidate: bool| {
            let d = if candidate { &e.candidate } else { &e.stable };
            d.as_ref().and_then(|_| e.target.variant_url(candidate))
        };
        let tx = self.tx.clone();
        let Some(candidate) = url(true) else {
            tokio::spawn(async move {
                let result = Err(("gates: the candidate is not running".into(), Vec::new()));
                let _ = tx.send(Cmd::Gates { id, result }).await;
            });
            return;
        };
        let rec = self.journal.get(id).ok();
        let mut ctx = crate::gates::GateContext {
            candidate,
            stable: url(false),
            stable_path: self
                .journal
                .live(&self.cfg.model.name, &env)
                .ok()
                .flatten()
                .map(|l| PathBuf::from(l.path)),
            model_name: self.cfg.model.name.clone(),
            model_path: rec
                .as_ref()
                .and_then(|r| r.path.clone())
                .map(PathBuf::from)
                .unwrap_or_default(),
            version: r.version.clone(),
            digest: rec.and_then(|r| r.digest).unwrap_or_default(),
            base_dir: self.base_dir.clone(),
            breaking_change: r.plan.breaking_change.clone(),
        };
        let (gates, http, registry) = (
            self.cfg.gates.clone(),
            self.http.clone(),
            self.registry.clone(),
        );
        self.say(
            Some(id),
            format!("release {id}: {env}: running {} gate(s)", gates.len()),
        );
        tokio::spawn(async move {
            if ctx.breaking_change.is_none() {
                ctx.breaking_change = crate::gates::breaking_change_tag(registry, &ctx).await;
            }
            let result = crate::gates::run(&gates, &ctx, &http).await;
            let _ = tx.send(Cmd::Gates { id, result }).await;
        });
    }

    fn smoke_test(&mut self, id: ReleaseId, env: String) {
        let Some(e) = self.env(&env) else { return };
        let path = self.journal.get(id).ok().and_then(|rec| rec.path);
        let test = e.target.smoke_test(path);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = test.await;
            let _ = tx.send(Cmd::Smoke { id, env, result }).await;
        });
    }

    fn begin_analysis(&mut self, r: &Release, env: String, step: usize) {
        let id = r.id;
        if let Some(h) = self.analysis.remove(&id) {
            h.abort();
        }
        let Some(e) = self.env(&env) else { return };
        let mut analysis = self.cfg.analysis.with(&e.cfg.analysis);
        // The release's alpha is shared by its analysed steps: each step's judges
        // look at their own window, so the chance that any step fails a good
        // release stays at most alpha (a union bound).
        let analysed_steps: usize = r
            .plan
            .envs
            .iter()
            .filter(|p| p.analysis)
            .map(|p| p.steps.len())
            .sum();
        analysis.alpha /= analysed_steps.max(1) as f64;
        let plan_step = r
            .plan
            .envs
            .get(r.env)
            .and_then(|p| p.steps.get(step))
            .copied();
        // A shadow step judges the mirrored answers; live checks need live traffic.
        let shape = StepShape {
            live: plan_step.is_none_or(|s| s.weight > 0),
            shadow: plan_step.is_some_and(|s| s.shadow > 0),
        };
        let source = e.target.live_metrics(shape);
        let step = live::Step {
            id,
            env,
            index: step,
        };
        let h = tokio::spawn(live::analyse(source, analysis, step, self.tx.clone()));
        self.analysis.insert(id, h.abort_handle());
    }

    fn promote(&mut self, id: ReleaseId, env: String) {
        if let Some(h) = self.analysis.remove(&id) {
            h.abort();
        }
        let Some(e) = self.env_mut(&env) else { return };
        let Some(new) = e.candidate.take() else {
            return;
        };
        let version = new.version.clone();
        e.target.promote(id);
        e.stable = Some(new);
        e.weight = 0;
        self.say(
            Some(id),
            format!("release {id}: {env}: v{version} is live (100%)"),
        );
    }

    fn stop_candidate(&mut self, id: ReleaseId, env: String) {
        if let Some(h) = self.analysis.remove(&id) {
            h.abort();
        }
        let Some(e) = self.env_mut(&env) else { return };
        e.weight = 0;
        e.candidate = None;
        e.target.roll_back(id);
        let stable = e.stable.as_ref().map(|s| s.version.clone());
        let message = match stable {
            Some(v) => format!(
                "release {id}: {env}: rolled back, 100% on v{v} {:.2} ms after the decision",
                self.decided.elapsed().as_secs_f64() * 1000.0
            ),
            None => format!("release {id}: {env}: candidate stopped"),
        };
        self.say(Some(id), message);
    }

    /// Write a registry tag; once the registry confirms it, the journal no longer
    /// holds it pending (a restart before that writes it again).
    pub(super) fn tag(
        &self,
        id: ReleaseId,
        model: String,
        version: String,
        key: String,
        value: String,
    ) {
        let (registry, journal, log) = (
            self.registry.clone(),
            Arc::clone(&self.journal),
            self.log.clone(),
        );
        tokio::task::spawn_blocking(move || {
            match registry.set_tag(&model, &version, &key, &value) {
                Ok(()) => {
                    if let Err(e) = journal.tag_written(id, &key, &value) {
                        tracing::warn!("release {id}: tag {key}={value} written: {e}");
                    }
                }
                Err(e) => super::say(
                    &log,
                    Some(id),
                    format!("release {id}: could not tag v{version} {key}={value}: {e}"),
                ),
            }
        });
    }
}
