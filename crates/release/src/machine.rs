//! The release state machine: state + event ⇒ new state + actions, with no I/O.
//!
//! A release brings one model version through the environments of its [`Plan`] in
//! order. In each environment: start the candidate servers beside stable (at 0% of
//! traffic), smoke-test them, wait for approval where required, then walk the steps
//! (canary weights, or blue-green's single switch to 100% held for the scale-down
//! delay) with analysis, and finally make the candidate the environment's stable.
//! Any failure, an abort or a supersede rolls the current environment back: weight to
//! 0 in one step, candidate stopped, the reason written to the registry.
//!
//! The driver (the daemon) performs the returned [`Action`]s and feeds their results
//! back as [`Event`]s. It journals each new state before performing its actions, and
//! after a restart asks [`resume`] which actions re-establish the world a state
//! implies — re-applying the current step's weight, never running a step again.

use serde::{Deserialize, Serialize};

use crate::config::{self, Pause, StrategyKind};

pub type ReleaseId = u64;

/// What a release will do, fixed when it is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub envs: Vec<EnvPlan>,
    /// Run the configured gates against the candidate in the first environment,
    /// before its smoke test and before any user traffic.
    #[serde(default)]
    pub gates: bool,
    /// Why this release may change the model's inputs or outputs (the `signature`
    /// gate then passes a difference): it was marked a breaking change at deploy.
    /// `None`: not marked here (the version's registry tag may still mark it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaking_change: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvPlan {
    pub name: String,
    /// Ends with a 100% step. Blue-green: one 100% step held for the scale-down delay.
    pub steps: Vec<PlanStep>,
    pub approval: bool,
    pub analysis: bool,
    pub max_inconclusive_ms: u64,
    /// A step rolls back when it has more failed measurements than this.
    #[serde(default)]
    pub failure_limit: u32,
    /// ... or this many in a row (0: off).
    #[serde(default)]
    pub consecutive_failures: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStep {
    pub weight: u32,
    /// Percent of stable's requests mirrored to the candidate (a shadow step).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shadow: u32,
    pub pause: StepPause,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepPause {
    None,
    Ms(u64),
    Manual,
}

impl Plan {
    /// The plan for the given environments of a config (all of them, in order, when
    /// `only` is `None`).
    pub fn from_config(cfg: &config::Config, only: Option<&str>) -> Result<Plan, String> {
        let mut envs = Vec::new();
        for env in &cfg.environments {
            if only.is_some_and(|o| o != env.name) {
                continue;
            }
            let analysis = cfg.analysis.with(&env.analysis);
            let steps = match env.strategy {
                StrategyKind::Canary => {
                    let mut steps: Vec<PlanStep> = env
                        .steps
                        .iter()
                        .map(|s| PlanStep {
                            weight: s.weight.0,
                            shadow: s.shadow.0,
                            pause: match s.pause {
                                Pause::None => StepPause::None,
                                Pause::For(d) => StepPause::Ms(d.as_millis() as u64),
                                Pause::UntilPromoted => StepPause::Manual,
                            },
                        })
                        .collect();
                    if steps.last().is_none_or(|s| s.weight < 100) {
                        steps.push(PlanStep {
                            weight: 100,
                            shadow: 0,
                            pause: StepPause::None,
                        });
                    }
                    steps
                }
                StrategyKind::BlueGreen => vec![PlanStep {
                    weight: 100,
                    shadow: 0,
                    pause: if env.scale_down_delay.0.is_zero() {
                        StepPause::None
                    } else {
                        StepPause::Ms(env.scale_down_delay.0.as_millis() as u64)
                    },
                }],
            };
            envs.push(EnvPlan {
                name: env.name.clone(),
                steps,
                approval: env.approval,
                analysis: analysis.enabled,
                max_inconclusive_ms: analysis.max_inconclusive.0.as_millis() as u64,
                failure_limit: analysis.failure_limit,
                consecutive_failures: analysis.consecutive_failures,
            });
        }
        if envs.is_empty() {
            let names: Vec<_> = cfg.environments.iter().map(|e| e.name.as_str()).collect();
            return Err(format!(
                "no environment `{}` (this pipeline has: {})",
                only.unwrap_or(""),
                names.join(", ")
            ));
        }
        Ok(Plan {
            envs,
            gates: !cfg.gates.is_empty(),
            breaking_change: None,
        })
    }
}

/// One release and where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub id: ReleaseId,
    pub model: String,
    pub version: String,
    pub plan: Plan,
    pub phase: Phase,
    /// Index into `plan.envs` of the environment being worked on.
    pub env: usize,
    /// The candidate's share of traffic in that environment, as last set.
    pub weight: u32,
    /// The share of stable's requests mirrored to the candidate there, as last set.
    #[serde(default)]
    pub shadow: u32,
    /// Whether candidate servers run in that environment.
    pub candidate_up: bool,
    /// Whether that environment had a stable version when the candidate arrived.
    pub has_stable: bool,
    pub outcome: Option<Outcome>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    Queued,
    Fetching,
    Deploying,
    Gating,
    SmokeTesting,
    AwaitingApproval,
    Step {
        index: usize,
        started_ms: u64,
        /// When the pause ends; `None` for a manual pause (waits for promote).
        until_ms: Option<u64>,
        verdict: Option<Verdict>,
        /// Failed measurements in this step, and in a row.
        #[serde(default)]
        failures: u32,
        #[serde(default)]
        consecutive: u32,
    },
    Done,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail { reason: String },
    Inconclusive { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    /// Failed (gate, smoke test, analysis, server) and rolled back.
    Failed {
        reason: String,
    },
    Aborted {
        reason: String,
    },
    Superseded {
        by: ReleaseId,
    },
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed { .. } => "rolled back",
            Outcome::Aborted { .. } => "aborted",
            Outcome::Superseded { .. } => "superseded",
        }
    }
    pub fn reason(&self) -> Option<String> {
        match self {
            Outcome::Succeeded => None,
            Outcome::Failed { reason } | Outcome::Aborted { reason } => Some(reason.clone()),
            Outcome::Superseded { by } => Some(format!("superseded by release {by}")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Start,
    Fetched,
    FetchFailed {
        reason: String,
    },
    CandidateReady {
        has_stable: bool,
    },
    CandidateFailed {
        reason: String,
    },
    /// Every gate passed; `reports` holds each gate's numbers.
    GatesPassed {
        reports: serde_json::Value,
    },
    GatesFailed {
        reason: String,
        reports: serde_json::Value,
    },
    SmokePassed,
    SmokeFailed {
        reason: String,
    },
    Approve,
    /// A measurement of live traffic; `numbers` are what it was based on (journaled).
    Verdict {
        verdict: Verdict,
        #[serde(default)]
        numbers: serde_json::Value,
    },
    Tick,
    Promote {
        full: bool,
    },
    Abort {
        reason: String,
    },
    Supersede {
        by: ReleaseId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Fetch the version's files and verify their digest.
    Fetch,
    /// Ensure candidate servers run in `env` (at 0% of traffic), then report
    /// `CandidateReady` or `CandidateFailed`.
    StartCandidate {
        env: String,
    },
    /// Run the configured gates against the candidate in `env`, then report
    /// `GatesPassed` or `GatesFailed`.
    RunGates {
        env: String,
    },
    SmokeTest {
        env: String,
    },
    /// Tell people the release waits for `hoist approve`.
    AwaitApproval {
        env: String,
    },
    /// Set the candidate's share of traffic in `env`, atomically.
    SetWeight {
        env: String,
        weight: u32,
    },
    /// Mirror `percent` of the requests stable answers in `env` to the candidate,
    /// comparing its answers with stable's (0: stop mirroring).
    Mirror {
        env: String,
        percent: u32,
    },
    /// Start judging live metrics of `env` from now on, reporting `Verdict` events
    /// every analysis interval until the step ends.
    BeginAnalysis {
        env: String,
        step: usize,
    },
    /// Send a `Tick` at (or after) this time.
    WakeAt {
        at_ms: u64,
    },
    /// The candidate becomes `env`'s stable; the previous stable is stopped.
    PromoteCandidate {
        env: String,
    },
    StopCandidate {
        env: String,
    },
    /// Write a tag on the model version in the registry. The journal keeps it pending
    /// until the registry confirms it, and a restarted driver writes it again (a tag
    /// written twice is the same tag), so a finished release never loses its tags.
    Tag {
        key: String,
        value: String,
    },
}

/// An event that does not apply to the release in its current phase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejected(pub String);

impl Release {
    pub fn new(id: ReleaseId, model: &str, version: &str, plan: Plan) -> Release {
        Release {
            id,
            model: model.to_string(),
            version: version.to_string(),
            plan,
            phase: Phase::Queued,
            env: 0,
            weight: 0,
            shadow: 0,
            candidate_up: false,
            has_stable: false,
            outcome: None,
        }
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The environment being worked on (the last one once done).
    pub fn env_name(&self) -> &str {
        &self.plan.envs[self.env.min(self.plan.envs.len() - 1)].name
    }

    /// Whether the release has taken or may take live traffic (a newer promotion is
    /// refused then, unless it supersedes).
    pub fn is_mid_rollout(&self) -> bool {
        !matches!(self.phase, Phase::Queued | Phase::Done)
    }

    /// How far through its environments and steps, from 0 to 1 (for progress bars).
    pub fn progress(&self) -> f64 {
        let r = self;
        let n = r.plan.envs.len() as f64;
        if r.is_done() {
            return 1.0;
        }
        let within = match &r.phase {
            Phase::Queued | Phase::Fetching => 0.0,
            Phase::Deploying => 0.1,
            Phase::Gating => 0.15,
            Phase::SmokeTesting => 0.2,
            Phase::AwaitingApproval => 0.25,
            Phase::Step { index, .. } => {
                let steps = r.plan.envs[r.env].steps.len() as f64;
                0.3 + 0.7 * (*index as f64 + 0.5) / steps
            }
            Phase::Done => 1.0,
        };
        ((r.env as f64 + within) / n).clamp(0.0, 1.0)
    }

    /// A short description of the phase for humans.
    pub fn describe(&self) -> String {
        let env = self.env_name();
        match &self.phase {
            Phase::Queued => "queued".into(),
            Phase::Fetching => "fetching and verifying the model".into(),
            Phase::Deploying => format!("{env}: starting candidate servers"),
            Phase::Gating => format!("{env}: running gates"),
            Phase::SmokeTesting => format!("{env}: smoke testing"),
            Phase::AwaitingApproval => format!("{env}: waiting for `hoist approve {}`", self.id),
            Phase::Step {
                index, until_ms, ..
            } => {
                let n = self.plan.envs[self.env].steps.len();
                let wait = if until_ms.is_none()
                    && self.plan.envs[self.env].steps[*index].pause == StepPause::Manual
                {
                    format!(", paused until `hoist promote {}`", self.id)
                } else {
                    String::new()
                };
                format!(
                    "{env}: step {}/{n}, candidate at {}%{wait}",
                    index + 1,
                    self.weight
                )
            }
            Phase::Done => self
                .outcome
                .as_ref()
                .map(|o| match o.reason() {
                    Some(r) => format!("{}: {r}", o.label()),
                    None => o.label().to_string(),
                })
                .unwrap_or_default(),
        }
    }
}

/// Apply one event. `now_ms` is the wall clock (ms since the epoch) of the event.
pub fn step(r: &Release, event: &Event, now_ms: u64) -> Result<(Release, Vec<Action>), Rejected> {
    let mut n = r.clone();
    let mut actions = Vec::new();
    let env = r
        .plan
        .envs
        .get(r.env)
        .map(|e| e.name.clone())
        .unwrap_or_default();
    match (&r.phase, event) {
        (Phase::Done, _) => {
            return Err(Rejected(format!(
                "release {} is finished ({})",
                r.id,
                r.describe()
            )));
        }
        (_, Event::Abort { reason }) => {
            rollback(
                &mut n,
                &mut actions,
                Outcome::Aborted {
                    reason: reason.clone(),
                },
            );
        }
        (_, Event::Supersede { by }) => {
            rollback(&mut n, &mut actions, Outcome::Superseded { by: *by });
        }
        (Phase::Queued, Event::Start) => {
            n.phase = Phase::Fetching;
            actions.push(Action::Fetch);
        }
        (Phase::Fetching, Event::Fetched) => enter_env(&mut n, &mut actions, 0),
        (Phase::Fetching, Event::FetchFailed { reason }) => {
            rollback(
                &mut n,
                &mut actions,
                Outcome::Failed {
                    reason: format!("fetch: {reason}"),
                },
            );
        }
        (Phase::Deploying, Event::CandidateReady { has_stable }) => {
            n.candidate_up = true;
            n.has_stable = *has_stable;
            if r.plan.gates && r.env == 0 {
                n.phase = Phase::Gating;
                actions.push(Action::RunGates { env });
            } else {
                n.phase = Phase::SmokeTesting;
                actions.push(Action::SmokeTest { env });
            }
        }
        (Phase::Gating, Event::GatesPassed { .. }) => {
            n.phase = Phase::SmokeTesting;
            actions.push(Action::SmokeTest { env });
        }
        (Phase::Gating, Event::GatesFailed { reason, .. }) => {
            rollback(
                &mut n,
                &mut actions,
                Outcome::Failed {
                    reason: format!("gate {reason}"),
                },
            );
        }
        // After a restart the driver re-starts candidate servers in any phase; their
        // readiness changes nothing there.
        (
            Phase::Gating | Phase::SmokeTesting | Phase::AwaitingApproval | Phase::Step { .. },
            Event::CandidateReady { .. },
        ) => {}
        (
            Phase::Deploying
            | Phase::Gating
            | Phase::SmokeTesting
            | Phase::AwaitingApproval
            | Phase::Step { .. },
            Event::CandidateFailed { reason },
        ) => {
            n.candidate_up = true; // whatever started must be stopped
            rollback(
                &mut n,
                &mut actions,
                Outcome::Failed {
                    reason: format!("{env}: candidate servers: {reason}"),
                },
            );
        }
        (Phase::SmokeTesting, Event::SmokePassed) => {
            if r.plan.envs[r.env].approval {
                n.phase = Phase::AwaitingApproval;
                actions.push(Action::AwaitApproval { env });
            } else {
                begin_traffic(&mut n, &mut actions, now_ms);
            }
        }
        (Phase::SmokeTesting, Event::SmokeFailed { reason }) => {
            rollback(
                &mut n,
                &mut actions,
                Outcome::Failed {
                    reason: format!("{env}: smoke test: {reason}"),
                },
            );
        }
        (Phase::AwaitingApproval, Event::Approve) => begin_traffic(&mut n, &mut actions, now_ms),
        (Phase::Step { .. }, Event::Verdict { verdict, .. }) => {
            let plan = &r.plan.envs[r.env];
            let (limit, in_a_row) = (plan.failure_limit, plan.consecutive_failures);
            let mut give_up = None;
            if let Phase::Step {
                verdict: v,
                failures,
                consecutive,
                ..
            } = &mut n.phase
            {
                *v = Some(verdict.clone());
                if let Verdict::Fail { reason } = verdict {
                    *failures += 1;
                    *consecutive += 1;
                    if *failures > limit || (in_a_row > 0 && *consecutive >= in_a_row) {
                        give_up = Some(reason.clone());
                    }
                } else {
                    *consecutive = 0;
                }
            }
            match give_up {
                Some(reason) => rollback(
                    &mut n,
                    &mut actions,
                    Outcome::Failed {
                        reason: format!("{env}: analysis at {}%: {reason}", r.weight),
                    },
                ),
                None => advance_if_due(&mut n, &mut actions, now_ms),
            }
        }
        (Phase::Step { .. }, Event::Tick) => advance_if_due(&mut n, &mut actions, now_ms),
        (Phase::Step { index, .. }, Event::Promote { full }) => {
            let last = r.plan.envs[r.env].steps.len() - 1;
            let next = if *full { last + 1 } else { index + 1 };
            goto_step(&mut n, &mut actions, next, now_ms);
        }
        (_, Event::Tick) => {}
        (phase, ev) => {
            return Err(Rejected(format!(
                "release {} cannot take `{}` while {}",
                r.id,
                event_name(ev),
                match phase {
                    Phase::Queued => "queued".to_string(),
                    _ => r.describe(),
                }
            )));
        }
    }
    Ok((n, actions))
}

fn event_name(e: &Event) -> &'static str {
    match e {
        Event::Start => "start",
        Event::Fetched => "fetched",
        Event::FetchFailed { .. } => "fetch failed",
        Event::CandidateReady { .. } => "candidate ready",
        Event::CandidateFailed { .. } => "candidate failed",
        Event::GatesPassed { .. } => "gates passed",
        Event::GatesFailed { .. } => "gates failed",
        Event::SmokePassed => "smoke passed",
        Event::SmokeFailed { .. } => "smoke failed",
        Event::Approve => "approve",
        Event::Verdict { .. } => "verdict",
        Event::Tick => "tick",
        Event::Promote { .. } => "promote",
        Event::Abort { .. } => "abort",
        Event::Supersede { .. } => "supersede",
    }
}

fn enter_env(n: &mut Release, actions: &mut Vec<Action>, index: usize) {
    n.env = index;
    n.weight = 0;
    n.candidate_up = false;
    n.has_stable = false;
    n.phase = Phase::Deploying;
    actions.push(Action::StartCandidate {
        env: n.plan.envs[index].name.clone(),
    });
}

fn begin_traffic(n: &mut Release, actions: &mut Vec<Action>, now_ms: u64) {
    if n.has_stable {
        goto_step(n, actions, 0, now_ms);
    } else {
        // Nothing serves yet: there is nothing to compare with or to protect.
        finish_env(n, actions);
    }
}

/// Move to step `index` (past the last step: finish the environment). Steps without a
/// pause pass straight through, each weight still applied in order.
fn goto_step(n: &mut Release, actions: &mut Vec<Action>, mut index: usize, now_ms: u64) {
    let plan = n.plan.envs[n.env].clone();
    loop {
        let Some(s) = plan.steps.get(index) else {
            finish_env(n, actions);
            return;
        };
        n.weight = s.weight;
        actions.push(Action::SetWeight {
            env: plan.name.clone(),
            weight: s.weight,
        });
        set_shadow(n, actions, s.shadow);
        let until_ms = match s.pause {
            StepPause::None => {
                index += 1;
                continue;
            }
            StepPause::Ms(ms) => Some(now_ms + ms),
            StepPause::Manual => None,
        };
        n.phase = Phase::Step {
            index,
            started_ms: now_ms,
            until_ms,
            verdict: None,
            failures: 0,
            consecutive: 0,
        };
        if plan.analysis {
            actions.push(Action::BeginAnalysis {
                env: plan.name.clone(),
                step: index,
            });
        }
        if let Some(at_ms) = until_ms {
            actions.push(Action::WakeAt { at_ms });
        }
        return;
    }
}

fn advance_if_due(n: &mut Release, actions: &mut Vec<Action>, now_ms: u64) {
    let Phase::Step {
        index,
        until_ms: Some(until),
        verdict,
        ..
    } = n.phase.clone()
    else {
        return;
    };
    if now_ms < until {
        return;
    }
    let plan = &n.plan.envs[n.env];
    let passed = !plan.analysis || verdict == Some(Verdict::Pass);
    if passed {
        goto_step(n, actions, index + 1, now_ms);
    } else if now_ms >= until + plan.max_inconclusive_ms {
        let why = match verdict {
            Some(Verdict::Inconclusive { reason }) => reason,
            Some(Verdict::Fail { reason }) => format!("last measurement failed: {reason}"),
            _ => "no verdict".to_string(),
        };
        let env = plan.name.clone();
        let weight = n.weight;
        rollback(
            n,
            actions,
            Outcome::Failed {
                reason: format!("{env}: analysis at {weight}% stayed inconclusive: {why}"),
            },
        );
    } else if verdict.is_none() || matches!(verdict, Some(Verdict::Inconclusive { .. })) {
        actions.push(Action::WakeAt {
            at_ms: until + plan.max_inconclusive_ms,
        });
    }
}

/// Mirror `percent` of stable's requests from now on, when that changes.
fn set_shadow(n: &mut Release, actions: &mut Vec<Action>, percent: u32) {
    if n.shadow != percent {
        n.shadow = percent;
        actions.push(Action::Mirror {
            env: n.plan.envs[n.env].name.clone(),
            percent,
        });
    }
}

fn finish_env(n: &mut Release, actions: &mut Vec<Action>) {
    let plan = n.plan.envs[n.env].clone();
    set_shadow(n, actions, 0);
    if n.weight != 100 {
        n.weight = 100;
        actions.push(Action::SetWeight {
            env: plan.name.clone(),
            weight: 100,
        });
    }
    actions.push(Action::PromoteCandidate {
        env: plan.name.clone(),
    });
    let last = n.env + 1 == n.plan.envs.len();
    actions.push(Action::Tag {
        key: hoist_types::wire::tags::env(&plan.name),
        value: if last { "live" } else { "passed" }.into(),
    });
    n.candidate_up = false;
    n.weight = 0;
    if last {
        n.phase = Phase::Done;
        n.outcome = Some(Outcome::Succeeded);
    } else {
        enter_env(n, actions, n.env + 1);
    }
}

fn rollback(n: &mut Release, actions: &mut Vec<Action>, outcome: Outcome) {
    let env = n.plan.envs[n.env].name.clone();
    set_shadow(n, actions, 0);
    if n.weight > 0 {
        actions.push(Action::SetWeight {
            env: env.clone(),
            weight: 0,
        });
    }
    let was_started = n.candidate_up || matches!(n.phase, Phase::Deploying);
    if was_started {
        actions.push(Action::StopCandidate { env: env.clone() });
    }
    if n.phase != Phase::Queued {
        let (key, value) = match &outcome {
            Outcome::Failed { reason } => {
                (hoist_types::wire::tags::ROLLBACK_REASON, reason.clone())
            }
            other => (
                hoist_types::wire::tags::ROLLBACK_REASON,
                other.reason().unwrap_or_default(),
            ),
        };
        actions.push(Action::Tag {
            key: key.into(),
            value,
        });
        actions.push(Action::Tag {
            key: hoist_types::wire::tags::env(&env),
            value: "rolled-back".into(),
        });
    }
    n.weight = 0;
    n.candidate_up = false;
    n.phase = Phase::Done;
    n.outcome = Some(outcome);
}

/// The actions that re-establish what `r`'s state implies, after the driver restarted
/// (its servers and gateways are gone; the journal is not). Completed steps are not
/// run again: the current step's weight is re-applied and its pause continues.
pub fn resume(r: &Release, now_ms: u64) -> Vec<Action> {
    let Some(plan) = r.plan.envs.get(r.env) else {
        return Vec::new();
    };
    let env = plan.name.clone();
    let start = Action::StartCandidate { env: env.clone() };
    match &r.phase {
        Phase::Queued | Phase::Done => Vec::new(),
        Phase::Fetching => vec![Action::Fetch],
        Phase::Deploying => vec![start],
        Phase::Gating => vec![start, Action::RunGates { env }],
        Phase::SmokeTesting => vec![start, Action::SmokeTest { env }],
        Phase::AwaitingApproval => vec![start, Action::AwaitApproval { env }],
        Phase::Step {
            index, until_ms, ..
        } => {
            let mut a = vec![
                start,
                Action::SetWeight {
                    env: env.clone(),
                    weight: r.weight,
                },
            ];
            if r.shadow > 0 {
                a.push(Action::Mirror {
                    env: env.clone(),
                    percent: r.shadow,
                });
            }
            if plan.analysis {
                a.push(Action::BeginAnalysis { env, step: *index });
            }
            if let Some(until) = until_ms {
                a.push(Action::WakeAt {
                    at_ms: (*until).max(now_ms),
                });
            }
            a
        }
    }
}

#[cfg(test)]
mod tests;
