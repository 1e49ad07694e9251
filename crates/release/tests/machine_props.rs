//! Property tests of the release state machine against a simulated world: random
//! plans, random event sequences (valid or not), the driver's actions applied to a
//! model of each environment's gateway and servers.

use std::collections::{BTreeMap, BTreeSet};

use hoist_release::machine::{
    Action, EnvPlan, Event, Outcome, Phase, Plan, PlanStep, Release, StepPause, Verdict, resume,
    step,
};
use proptest::prelude::*;

#[derive(Debug, Clone, Default, PartialEq)]
struct EnvWorld {
    stable: Option<String>,
    candidate: Option<String>,
    /// Candidate share; the stable share is always 100 - weight.
    weight: u32,
    /// Share of stable's requests mirrored to the candidate.
    shadow: u32,
}

#[derive(Debug, Default)]
struct World {
    envs: BTreeMap<String, EnvWorld>,
    /// (env, step) pairs whose analysis began, to prove no step runs twice.
    steps_begun: BTreeSet<(String, usize)>,
    weights_set: BTreeMap<String, Vec<u32>>,
    tags: Vec<(String, String)>,
}

impl World {
    fn apply(&mut self, version: &str, actions: &[Action], resuming: bool) {
        for a in actions {
            match a {
                Action::StartCandidate { env } => {
                    self.envs.entry(env.clone()).or_default().candidate = Some(version.into());
                }
                Action::SetWeight { env, weight } => {
                    let e = self.envs.entry(env.clone()).or_default();
                    assert!(*weight <= 100);
                    if *weight > 0 {
                        assert!(
                            e.candidate.is_some(),
                            "traffic to a candidate that is not running"
                        );
                    }
                    e.weight = *weight;
                    if !resuming {
                        self.weights_set
                            .entry(env.clone())
                            .or_default()
                            .push(*weight);
                    }
                }
                Action::Mirror { env, percent } => {
                    let e = self.envs.entry(env.clone()).or_default();
                    assert!(*percent <= 100);
                    if *percent > 0 {
                        assert!(
                            e.candidate.is_some(),
                            "mirroring to a candidate that is not running"
                        );
                    }
                    e.shadow = *percent;
                }
                Action::BeginAnalysis { env, step } => {
                    let fresh = self.steps_begun.insert((env.clone(), *step));
                    assert!(fresh || resuming, "step {step} of {env} ran twice");
                }
                Action::PromoteCandidate { env } => {
                    let e = self.envs.entry(env.clone()).or_default();
                    assert_eq!(
                        e.weight, 100,
                        "promoted before the candidate had all traffic"
                    );
                    assert_eq!(e.shadow, 0, "promoted while still mirroring");
                    e.stable = e.candidate.take();
                    e.weight = 0;
                }
                Action::StopCandidate { env } => {
                    let e = self.envs.entry(env.clone()).or_default();
                    assert_eq!(e.weight, 0, "candidate stopped while it still had traffic");
                    assert_eq!(e.shadow, 0, "candidate stopped while still mirrored to");
                    e.candidate = None;
                }
                Action::Tag { key, value } => self.tags.push((key.clone(), value.clone())),
                Action::Fetch
                | Action::RunGates { .. }
                | Action::SmokeTest { .. }
                | Action::AwaitApproval { .. }
                | Action::WakeAt { .. } => {}
            }
        }
    }
}

fn arb_plan() -> impl Strategy<Value = Plan> {
    let env = (
        proptest::collection::btree_set(1u32..100, 0..4),
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(0u8..3, 4),
        0u32..3,
    )
        .prop_map(|(weights, approval, analysis, pauses, shadow)| {
            // A shadow-only step first (weight 0), or none; a mirrored canary step.
            let shadow_first = (shadow == 1).then_some((0u32, 50u32));
            let mut steps: Vec<PlanStep> = shadow_first
                .into_iter()
                .chain(
                    weights
                        .into_iter()
                        .map(|w| (w, if shadow == 2 { 100 - w } else { 0 })),
                )
                .enumerate()
                .map(|(i, (w, mirrored))| PlanStep {
                    weight: w,
                    shadow: mirrored,
                    pause: match pauses[i % pauses.len()] {
                        0 => StepPause::None,
                        1 => StepPause::Ms(100),
                        _ => StepPause::Manual,
                    },
                })
                .collect();
            steps.push(PlanStep {
                weight: 100,
                shadow: 0,
                pause: StepPause::None,
            });
            (steps, approval, analysis)
        });
    (proptest::collection::vec(env, 1..4), any::<bool>()).prop_map(|(envs, gates)| Plan {
        gates,
        breaking_change: None,
        envs: envs
            .into_iter()
            .enumerate()
            .map(|(i, (steps, approval, analysis))| EnvPlan {
                name: format!("env{i}"),
                steps,
                approval,
                analysis,
                max_inconclusive_ms: 500,
                failure_limit: (i % 3) as u32,
                consecutive_failures: (i % 2) as u32 * 2,
            })
            .collect(),
    })
}

fn arb_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        Just(Event::Start),
        Just(Event::Fetched),
        Just(Event::FetchFailed {
            reason: "digest mismatch".into()
        }),
        any::<bool>().prop_map(|has_stable| Event::CandidateReady { has_stable }),
        Just(Event::CandidateFailed {
            reason: "exited".into()
        }),
        Just(Event::SmokePassed),
        Just(Event::GatesPassed {
            reports: serde_json::Value::Null
        }),
        Just(Event::GatesFailed {
            reason: "golden-set: accuracy 0.5 < 0.9".into(),
            reports: serde_json::Value::Null
        }),
        Just(Event::SmokeFailed {
            reason: "500".into()
        }),
        Just(Event::Approve),
        Just(Event::Verdict {
            verdict: Verdict::Pass,
            numbers: serde_json::Value::Null
        }),
        Just(Event::Verdict {
            verdict: Verdict::Fail {
                reason: "p99".into()
            },
            numbers: serde_json::Value::Null
        }),
        Just(Event::Verdict {
            verdict: Verdict::Inconclusive {
                reason: "few".into()
            },
            numbers: serde_json::Value::Null
        }),
        Just(Event::Tick),
        any::<bool>().prop_map(|full| Event::Promote { full }),
        Just(Event::Abort {
            reason: "operator".into()
        }),
        Just(Event::Supersede { by: 99 }),
    ]
}

/// A sequence biased towards progress: mostly the "happy" events, some noise.
fn arb_events() -> impl Strategy<Value = Vec<(bool, Event, u64)>> {
    proptest::collection::vec((any::<bool>(), arb_event(), 0u64..400), 0..60)
}

/// The event that moves the release forward from where it is.
fn happy(r: &Release) -> Event {
    match &r.phase {
        Phase::Queued => Event::Start,
        Phase::Fetching => Event::Fetched,
        Phase::Deploying => Event::CandidateReady { has_stable: true },
        Phase::Gating => Event::GatesPassed {
            reports: serde_json::Value::Null,
        },
        Phase::SmokeTesting => Event::SmokePassed,
        Phase::AwaitingApproval => Event::Approve,
        Phase::Step { until_ms: None, .. } => Event::Promote { full: false },
        Phase::Step { verdict: None, .. } => Event::Verdict {
            verdict: Verdict::Pass,
            numbers: serde_json::Value::Null,
        },
        Phase::Step { .. } | Phase::Done => Event::Tick,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn invariants_hold_for_any_event_sequence(plan in arb_plan(), events in arb_events(), crash_at in 0usize..60) {
        let mut world = World::default();
        // Every environment starts with version "1" as stable.
        for e in &plan.envs {
            world.envs.insert(e.name.clone(), EnvWorld { stable: Some("1".into()), ..Default::default() });
        }
        let before = world.envs.clone();
        let mut r = Release::new(1, "m", "2", plan.clone());
        let mut now = 0u64;
        let mut promoted_envs = BTreeSet::new();
        let mut reached_done = false;
        for (i, (forward, ev, dt)) in events.into_iter().enumerate() {
            now += dt;
            let ev = if forward { happy(&r) } else { ev };
            if i == crash_at {
                // The driver dies: servers and gateway weights are lost, the journal is not.
                for e in world.envs.values_mut() { e.candidate = None; e.weight = 0; e.shadow = 0; }
                let a = resume(&r, now);
                world.apply("2", &a, true);
            }
            match step(&r, &ev, now) {
                Ok((next, actions)) => {
                    for a in &actions {
                        if let Action::PromoteCandidate { env } = a { promoted_envs.insert(env.clone()); }
                    }
                    world.apply("2", &actions, false);
                    prop_assert!(next.weight <= 100);
                    // The gateway mirrors exactly what the release says, wherever it is.
                    let env = &plan.envs[next.env].name;
                    prop_assert_eq!(world.envs[env].shadow, next.shadow, "{}: mirror share", env);
                    r = next;
                    reached_done |= r.is_done();
                }
                Err(_) => {
                    // Rejected events change nothing; a finished release rejects everything.
                }
            }
        }
        prop_assert_eq!(reached_done, r.is_done());
        if r.is_done() {
            for (env, w) in &world.envs {
                prop_assert_eq!(w.shadow, 0, "{} still mirrors after the release ended", env);
            }
        }
        // Steps never go backwards within an environment (no step runs twice).
        for (env, ws) in &world.weights_set {
            let rising: Vec<u32> = ws.iter().copied().take_while(|w| *w > 0).collect();
            for pair in rising.windows(2) {
                prop_assert!(pair[0] < pair[1], "{env}: weights {ws:?}");
            }
        }
        match &r.outcome {
            Some(Outcome::Succeeded) => {
                for e in &plan.envs {
                    let w = &world.envs[&e.name];
                    prop_assert_eq!(w.stable.as_deref(), Some("2"));
                    prop_assert_eq!(w.weight, 0);
                    prop_assert!(w.candidate.is_none());
                }
            }
            Some(_) => {
                // A failed release ends with 100% on the previous stable where it failed,
                // its candidate stopped, and the reason tagged (unless it never started).
                let env = &plan.envs[r.env].name;
                let w = &world.envs[env];
                prop_assert_eq!(w.weight, 0);
                prop_assert!(w.candidate.is_none());
                prop_assert_eq!(&w.stable, &before[env].stable);
                prop_assert!(!promoted_envs.contains(env));
                if matches!(r.outcome, Some(Outcome::Failed { .. })) {
                    prop_assert!(world.tags.iter().any(|(k, _)| k == "hoist.rollback_reason"));
                }
            }
            None => {
                // In flight: traffic only ever goes to a running candidate (checked in apply).
                prop_assert!(!r.is_done());
            }
        }
    }

    #[test]
    fn the_happy_path_always_succeeds(plan in arb_plan()) {
        let mut r = Release::new(1, "m", "2", plan.clone());
        let mut now = 0;
        for _ in 0..1000 {
            if r.is_done() { break; }
            now += 150;
            let ev = happy(&r);
            r = step(&r, &ev, now).unwrap().0;
        }
        prop_assert_eq!(r.outcome, Some(Outcome::Succeeded));
    }
}
