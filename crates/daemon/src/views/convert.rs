//! The release engine's types (`hoist_release`) as the API shows them
//! (`hoist_types::api`): field by field, so the JSON stays what it was, and a field
//! added on either side fails to compile here until it is carried over.

use hoist_release::journal::{ReleaseRecord, Transition};
use hoist_release::machine::{
    Action, EnvPlan, Event, Outcome, Phase, Plan, PlanStep, Release, StepPause, Verdict,
};
use hoist_types::api;

/// The API's view of an engine type.
pub trait ToApi {
    type Api;
    fn to_api(&self) -> Self::Api;
}

impl ToApi for ReleaseRecord {
    type Api = api::Release;
    fn to_api(&self) -> api::Release {
        let ReleaseRecord {
            release,
            digest,
            path,
            trigger,
            created_ms,
            updated_ms,
        } = self;
        let Release {
            id,
            model,
            version,
            plan,
            phase,
            env,
            weight,
            shadow,
            candidate_up,
            has_stable,
            outcome,
        } = release;
        api::Release {
            id: *id,
            model: model.clone(),
            version: version.clone(),
            plan: plan.to_api(),
            phase: phase.to_api(),
            env: *env,
            weight: *weight,
            shadow: *shadow,
            candidate_up: *candidate_up,
            has_stable: *has_stable,
            outcome: outcome.as_ref().map(ToApi::to_api),
            digest: digest.clone(),
            path: path.clone(),
            trigger: trigger.clone(),
            created_ms: *created_ms,
            updated_ms: *updated_ms,
        }
    }
}

impl ToApi for Plan {
    type Api = api::Plan;
    fn to_api(&self) -> api::Plan {
        let Plan {
            envs,
            gates,
            breaking_change,
        } = self;
        api::Plan {
            envs: envs.iter().map(ToApi::to_api).collect(),
            gates: *gates,
            breaking_change: breaking_change.clone(),
        }
    }
}

impl ToApi for EnvPlan {
    type Api = api::EnvPlan;
    fn to_api(&self) -> api::EnvPlan {
        let EnvPlan {
            name,
            steps,
            approval,
            analysis,
            max_inconclusive_ms,
            failure_limit,
            consecutive_failures,
        } = self;
        api::EnvPlan {
            name: name.clone(),
            steps: steps.iter().map(ToApi::to_api).collect(),
            approval: *approval,
            analysis: *analysis,
            max_inconclusive_ms: *max_inconclusive_ms,
            failure_limit: *failure_limit,
            consecutive_failures: *consecutive_failures,
        }
    }
}

impl ToApi for PlanStep {
    type Api = api::PlanStep;
    fn to_api(&self) -> api::PlanStep {
        let PlanStep {
            weight,
            shadow,
            pause,
        } = *self;
        api::PlanStep {
            weight,
            shadow,
            pause: match pause {
                StepPause::None => api::StepPause::None,
                StepPause::Ms(ms) => api::StepPause::Ms(ms),
                StepPause::Manual => api::StepPause::Manual,
            },
        }
    }
}

impl ToApi for Phase {
    type Api = api::Phase;
    fn to_api(&self) -> api::Phase {
        match self {
            Phase::Queued => api::Phase::Queued,
            Phase::Fetching => api::Phase::Fetching,
            Phase::Deploying => api::Phase::Deploying,
            Phase::Gating => api::Phase::Gating,
            Phase::SmokeTesting => api::Phase::SmokeTesting,
            Phase::AwaitingApproval => api::Phase::AwaitingApproval,
            Phase::Step {
                index,
                started_ms,
                until_ms,
                verdict,
                failures,
                consecutive,
            } => api::Phase::Step {
                index: *index,
                started_ms: *started_ms,
                until_ms: *until_ms,
                verdict: verdict.as_ref().map(ToApi::to_api),
                failures: *failures,
                consecutive: *consecutive,
            },
            Phase::Done => api::Phase::Done,
        }
    }
}

impl ToApi for Verdict {
    type Api = api::Verdict;
    fn to_api(&self) -> api::Verdict {
        match self {
            Verdict::Pass => api::Verdict::Pass,
            Verdict::Fail { reason } => api::Verdict::Fail {
                reason: reason.clone(),
            },
            Verdict::Inconclusive { reason } => api::Verdict::Inconclusive {
                reason: reason.clone(),
            },
        }
    }
}

impl ToApi for Outcome {
    type Api = api::Outcome;
    fn to_api(&self) -> api::Outcome {
        match self {
            Outcome::Succeeded => api::Outcome::Succeeded,
            Outcome::Failed { reason } => api::Outcome::Failed {
                reason: reason.clone(),
            },
            Outcome::Aborted { reason } => api::Outcome::Aborted {
                reason: reason.clone(),
            },
            Outcome::Superseded { by } => api::Outcome::Superseded { by: *by },
        }
    }
}

impl ToApi for Event {
    type Api = api::Event;
    fn to_api(&self) -> api::Event {
        use api::Event as A;
        match self.clone() {
            Event::Start => A::Start,
            Event::Fetched => A::Fetched,
            Event::FetchFailed { reason } => A::FetchFailed { reason },
            Event::CandidateReady { has_stable } => A::CandidateReady { has_stable },
            Event::CandidateFailed { reason } => A::CandidateFailed { reason },
            Event::GatesPassed { reports } => A::GatesPassed { reports },
            Event::GatesFailed { reason, reports } => A::GatesFailed { reason, reports },
            Event::SmokePassed => A::SmokePassed,
            Event::SmokeFailed { reason } => A::SmokeFailed { reason },
            Event::Approve => A::Approve,
            Event::Verdict { verdict, numbers } => A::Verdict {
                verdict: verdict.to_api(),
                numbers,
            },
            Event::Tick => A::Tick,
            Event::Promote { full } => A::Promote { full },
            Event::Abort { reason } => A::Abort { reason },
            Event::Supersede { by } => A::Supersede { by },
        }
    }
}

impl ToApi for Action {
    type Api = api::Action;
    fn to_api(&self) -> api::Action {
        use api::Action as A;
        match self.clone() {
            Action::Fetch => A::Fetch,
            Action::StartCandidate { env } => A::StartCandidate { env },
            Action::RunGates { env } => A::RunGates { env },
            Action::SmokeTest { env } => A::SmokeTest { env },
            Action::AwaitApproval { env } => A::AwaitApproval { env },
            Action::SetWeight { env, weight } => A::SetWeight { env, weight },
            Action::Mirror { env, percent } => A::Mirror { env, percent },
            Action::BeginAnalysis { env, step } => A::BeginAnalysis { env, step },
            Action::WakeAt { at_ms } => A::WakeAt { at_ms },
            Action::PromoteCandidate { env } => A::PromoteCandidate { env },
            Action::StopCandidate { env } => A::StopCandidate { env },
            Action::Tag { key, value } => A::Tag { key, value },
        }
    }
}

impl ToApi for Transition {
    type Api = api::Transition;
    fn to_api(&self) -> api::Transition {
        let Transition {
            seq,
            at_ms,
            event,
            actions,
            phase,
        } = self;
        api::Transition {
            seq: *seq,
            at_ms: *at_ms,
            event: event.to_api(),
            actions: actions.iter().map(ToApi::to_api).collect(),
            phase: phase.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    /// The API's view serializes exactly as the engine's type does.
    fn same_json<T: ToApi + Serialize>(t: &T)
    where
        T::Api: Serialize,
    {
        assert_eq!(
            serde_json::to_string(&t.to_api()).unwrap(),
            serde_json::to_string(t).unwrap()
        );
    }

    fn plan() -> Plan {
        Plan {
            envs: vec![EnvPlan {
                name: "production".into(),
                steps: vec![
                    PlanStep {
                        weight: 0,
                        shadow: 50,
                        pause: StepPause::Ms(2000),
                    },
                    PlanStep {
                        weight: 10,
                        shadow: 0,
                        pause: StepPause::Manual,
                    },
                    PlanStep {
                        weight: 100,
                        shadow: 0,
                        pause: StepPause::None,
                    },
                ],
                approval: true,
                analysis: true,
                max_inconclusive_ms: 300_000,
                failure_limit: 1,
                consecutive_failures: 2,
            }],
            gates: true,
            breaking_change: Some("marked at deploy".into()),
        }
    }

    #[test]
    fn every_engine_type_shows_as_the_same_json() {
        let mut release = Release::new(7, "m", "2", plan());
        release.phase = Phase::Step {
            index: 1,
            started_ms: 5,
            until_ms: None,
            verdict: Some(Verdict::Inconclusive {
                reason: "few".into(),
            }),
            failures: 1,
            consecutive: 1,
        };
        release.outcome = Some(Outcome::Superseded { by: 8 });
        let rec = ReleaseRecord {
            release: release.clone(),
            digest: Some("sha256:00".into()),
            path: None,
            trigger: "api: m/2".into(),
            created_ms: 1,
            updated_ms: 2,
        };
        same_json(&rec);
        let mut without = plan();
        without.breaking_change = None;
        same_json(&without);
        for phase in [
            Phase::Queued,
            Phase::Fetching,
            Phase::Deploying,
            Phase::Gating,
            Phase::SmokeTesting,
            Phase::AwaitingApproval,
            Phase::Done,
        ] {
            same_json(&phase);
        }
        for outcome in [
            Outcome::Succeeded,
            Outcome::Failed { reason: "r".into() },
            Outcome::Aborted { reason: "a".into() },
        ] {
            same_json(&outcome);
        }
        let events = vec![
            Event::Start,
            Event::Fetched,
            Event::FetchFailed { reason: "x".into() },
            Event::CandidateReady { has_stable: true },
            Event::CandidateFailed { reason: "x".into() },
            Event::GatesPassed {
                reports: serde_json::json!([{"gate": "loads"}]),
            },
            Event::GatesFailed {
                reason: "x".into(),
                reports: serde_json::json!([]),
            },
            Event::SmokePassed,
            Event::SmokeFailed { reason: "x".into() },
            Event::Approve,
            Event::Verdict {
                verdict: Verdict::Pass,
                numbers: serde_json::json!({"candidate": {"requests": 3}}),
            },
            Event::Tick,
            Event::Promote { full: true },
            Event::Abort { reason: "x".into() },
            Event::Supersede { by: 9 },
        ];
        let actions = vec![
            Action::Fetch,
            Action::StartCandidate { env: "p".into() },
            Action::RunGates { env: "p".into() },
            Action::SmokeTest { env: "p".into() },
            Action::AwaitApproval { env: "p".into() },
            Action::SetWeight {
                env: "p".into(),
                weight: 10,
            },
            Action::Mirror {
                env: "p".into(),
                percent: 5,
            },
            Action::BeginAnalysis {
                env: "p".into(),
                step: 1,
            },
            Action::WakeAt { at_ms: 3 },
            Action::PromoteCandidate { env: "p".into() },
            Action::StopCandidate { env: "p".into() },
            Action::Tag {
                key: "hoist.p".into(),
                value: "live".into(),
            },
        ];
        for (seq, event) in events.into_iter().enumerate() {
            same_json(&Transition {
                seq: seq as u64,
                at_ms: 4,
                event,
                actions: actions.clone(),
                phase: "step".into(),
            });
        }
    }
}
