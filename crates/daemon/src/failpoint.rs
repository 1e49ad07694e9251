//! Named failure points: where a test may kill the engine to prove that a restart on
//! the same journal ends in the same world.
//!
//! The engine asks its [`FailPoints`] before it performs each action of a journaled
//! transition (`FailPoint::BeforeAction`). In production nothing is installed and
//! every check answers "go on"; a test installs a hook that answers "die" at the
//! point it names, and the engine then stops as a killed process would: no further
//! action, no shutdown of what runs.

use std::sync::Arc;

use hoist_release::machine::Action;

/// A point in the engine where a kill can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPoint {
    /// After the transition that asked for an action of this kind was journaled, just
    /// before the action is performed.
    BeforeAction(&'static str),
}

/// The hook a test installs: `true` kills the engine at that point.
pub type Hook = Arc<dyn Fn(FailPoint) -> bool + Send + Sync>;

/// The failure points of one engine: none in production.
#[derive(Clone, Default)]
pub struct FailPoints {
    hook: Option<Hook>,
}

impl FailPoints {
    /// Failure points that ask `hook` at each point.
    pub fn with(hook: Hook) -> FailPoints {
        FailPoints { hook: Some(hook) }
    }

    /// Whether the engine must die here.
    pub fn fires(&self, point: FailPoint) -> bool {
        self.hook.as_ref().is_some_and(|h| h(point))
    }
}

/// The name of an action's kind, as journaled (`set_weight`, `tag`, …).
pub fn action_kind(a: &Action) -> &'static str {
    match a {
        Action::Fetch => "fetch",
        Action::StartCandidate { .. } => "start_candidate",
        Action::RunGates { .. } => "run_gates",
        Action::SmokeTest { .. } => "smoke_test",
        Action::AwaitApproval { .. } => "await_approval",
        Action::SetWeight { .. } => "set_weight",
        Action::Mirror { .. } => "mirror",
        Action::BeginAnalysis { .. } => "begin_analysis",
        Action::WakeAt { .. } => "wake_at",
        Action::PromoteCandidate { .. } => "promote_candidate",
        Action::StopCandidate { .. } => "stop_candidate",
        Action::Tag { .. } => "tag",
    }
}

/// Every action kind, for tests that must cover them all.
pub const ACTION_KINDS: [&str; 12] = [
    "fetch",
    "start_candidate",
    "run_gates",
    "smoke_test",
    "await_approval",
    "set_weight",
    "mirror",
    "begin_analysis",
    "wake_at",
    "promote_candidate",
    "stop_candidate",
    "tag",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// One action of each kind.
    fn every_action() -> Vec<Action> {
        let env = || "production".to_string();
        vec![
            Action::Fetch,
            Action::StartCandidate { env: env() },
            Action::RunGates { env: env() },
            Action::SmokeTest { env: env() },
            Action::AwaitApproval { env: env() },
            Action::SetWeight {
                env: env(),
                weight: 10,
            },
            Action::Mirror {
                env: env(),
                percent: 5,
            },
            Action::BeginAnalysis {
                env: env(),
                step: 0,
            },
            Action::WakeAt { at_ms: 1 },
            Action::PromoteCandidate { env: env() },
            Action::StopCandidate { env: env() },
            Action::Tag {
                key: "k".into(),
                value: "v".into(),
            },
        ]
    }

    #[test]
    fn failure_points_are_named_as_the_journal_names_actions() {
        let actions = every_action();
        for a in &actions {
            let journaled = serde_json::to_value(a).unwrap()["action"].clone();
            assert_eq!(journaled, action_kind(a), "{a:?}");
        }
        let kinds: Vec<&str> = actions.iter().map(action_kind).collect();
        assert_eq!(kinds, ACTION_KINDS);
    }
}
