//! Creating releases: a deploy (CLI, API), a promotion seen in the registry, a
//! rollback to an earlier version; and catching up with the registry's trigger.

use std::sync::Arc;

use hoist_registry::Registry;
use hoist_release::config::{Config, MidRollout};
use hoist_release::journal::ReleaseRecord;
use hoist_release::machine::{EnvPlan, Event, Plan, PlanStep, StepPause};

use super::Engine;
use crate::views::{ApiError, CreateRequest};

impl Engine {
    /// Catch up with the registry: if the trigger points at a version no release has
    /// brought yet, start one (or, with a release resumed, once it ends).
    pub async fn catch_up(&mut self) {
        if let Some((version, desc)) =
            trigger_target(&self.cfg, self.registry.clone(), "found at start").await
        {
            self.promotion_waiting = true;
            self.caught_up(version, desc);
        }
    }

    /// The trigger points at `version`: release it if no release has brought it yet
    /// and none is active (else wait for the active one to end).
    pub(super) fn caught_up(&mut self, version: String, desc: String) {
        let seen = self
            .journal
            .list(Some(&self.cfg.model.name), None, 10_000)
            .map(|all| all.iter().any(|r| r.release.version == version))
            .unwrap_or(true);
        if seen {
            self.promotion_waiting = false;
        } else if self.active.is_empty() {
            self.promotion_waiting = false;
            self.promotion(version, desc);
        }
    }

    pub(super) fn promotion(&mut self, version: String, trigger: String) {
        let supersede = self.cfg.model.mid_rollout == MidRollout::Supersede;
        let req = CreateRequest {
            version: version.clone(),
            env: None,
            supersede,
            trigger: trigger.clone(),
            breaking_change: false,
        };
        self.say(
            None,
            format!("promotion: {} {trigger}", self.cfg.model.name),
        );
        if let Err(e) = self.create(req) {
            let busy = self.active.values().any(|r| r.is_mid_rollout());
            let queued = if busy && e.status == 409 {
                self.promotion_waiting = true;
                "; queued: the version the trigger points at is released when the release in progress ends"
            } else {
                ""
            };
            self.say(
                None,
                format!("promotion of v{version} refused: {}{queued}", e.message),
            );
        }
    }

    pub(super) fn create(&mut self, req: CreateRequest) -> Result<ReleaseRecord, ApiError> {
        let plan =
            Plan::from_config(&self.cfg, req.env.as_deref()).map_err(ApiError::bad_request)?;
        self.create_with_plan(req, plan)
    }

    fn create_with_plan(
        &mut self,
        req: CreateRequest,
        mut plan: Plan,
    ) -> Result<ReleaseRecord, ApiError> {
        if req.breaking_change {
            plan.breaking_change = Some("marked at deploy (`--breaking-change`)".into());
        }
        // Already live everywhere it would go?
        let live_everywhere = plan.envs.iter().all(|e| {
            self.journal
                .live(&self.cfg.model.name, &e.name)
                .ok()
                .flatten()
                .is_some_and(|l| l.version == req.version)
        });
        if live_everywhere {
            return Err(ApiError::conflict(format!(
                "v{} is already live in {}",
                req.version,
                plan.envs
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut superseded = Vec::new();
        for (id, r) in &self.active {
            if r.is_mid_rollout() && !req.supersede {
                return Err(ApiError::conflict(format!(
                    "release {id} (v{}) is mid-rollout ({}); wait for it, `hoist abort {id}`, or deploy with --supersede",
                    r.version,
                    r.describe()
                )));
            }
            superseded.push(*id);
        }
        let r = self
            .journal
            .create(
                &self.cfg.model.name,
                &req.version,
                plan,
                &req.trigger,
                self.clock.now_ms(),
            )
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let id = r.id;
        self.active.insert(id, r.clone());
        self.say(
            Some(id),
            format!(
                "release {id}: {} v{} ({}) → {}",
                r.model,
                r.version,
                req.trigger,
                r.plan
                    .envs
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" → ")
            ),
        );
        for old in superseded {
            let _ = self.apply(old, Event::Supersede { by: id });
        }
        self.apply(id, Event::Start)?;
        self.record(id)
    }

    pub(super) fn rollback(
        &mut self,
        env: Option<String>,
        to: Option<String>,
    ) -> Result<ReleaseRecord, ApiError> {
        let env = match env {
            Some(e) => e,
            None => self
                .cfg
                .environments
                .last()
                .map(|e| e.name.clone())
                .unwrap_or_default(),
        };
        if self.cfg.environment(&env).is_none() {
            return Err(ApiError::bad_request(format!("no environment `{env}`")));
        }
        // A release mid-rollout there: abort it (weight to 0 at once).
        let in_env = self
            .active
            .iter()
            .find(|(_, r)| r.is_mid_rollout() && r.env_name() == env)
            .map(|(id, _)| *id);
        if let Some(id) = in_env {
            if to.is_none() {
                self.apply(
                    id,
                    Event::Abort {
                        reason: "rollback requested".into(),
                    },
                )?;
                return self.record(id);
            }
            self.apply(
                id,
                Event::Abort {
                    reason: "rollback requested".into(),
                },
            )?;
        }
        let live = self
            .journal
            .live(&self.cfg.model.name, &env)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let target = match to {
            Some(v) => v,
            None => {
                let current = live.as_ref().map(|l| l.version.clone());
                let history = self
                    .journal
                    .live_history(&self.cfg.model.name, &env)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                history
                    .into_iter()
                    .map(|l| l.version)
                    .find(|v| Some(v) != current.as_ref())
                    .ok_or_else(|| {
                        ApiError::conflict(format!("no earlier version has been live in {env}"))
                    })?
            }
        };
        let plan = Plan {
            envs: vec![EnvPlan {
                name: env.clone(),
                steps: vec![PlanStep {
                    weight: 100,
                    shadow: 0,
                    pause: StepPause::None,
                }],
                approval: false,
                analysis: false,
                max_inconclusive_ms: 0,
                failure_limit: 0,
                consecutive_failures: 0,
            }],
            gates: false,
            breaking_change: None,
        };
        self.create_with_plan(
            CreateRequest {
                version: target.clone(),
                env: Some(env),
                supersede: true,
                trigger: format!("rollback to v{target}"),
                breaking_change: false,
            },
            plan,
        )
    }
}

/// The version the pipeline's trigger points at in the registry, and how to describe
/// that promotion (`alias champion → v3 (WHY)`); `None` for a manual trigger, or when
/// the registry cannot say.
pub(super) async fn trigger_target(
    cfg: &Config,
    registry: Arc<dyn Registry>,
    why: &str,
) -> Option<(String, String)> {
    use hoist_release::config::Trigger;
    let name = &cfg.model.name;
    let (sel, kind, what) = match &cfg.model.trigger {
        Trigger::Alias(a) => (format!("{name}@{a}"), "alias", a),
        Trigger::Stage(s) => (format!("{name}/{s}"), "stage", s),
        Trigger::Manual => return None,
    };
    let v = tokio::task::spawn_blocking(move || {
        let r = hoist_registry::ModelRef::parse(&sel)?;
        registry.resolve(&r)
    })
    .await
    .ok()?
    .ok()?;
    let desc = format!("{kind} {what} → v{} ({why})", v.version);
    Some((v.version, desc))
}
