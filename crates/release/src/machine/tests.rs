use super::*;

fn plan(steps: &[(u32, StepPause)], approval: bool) -> Plan {
    Plan {
        envs: vec![
            EnvPlan {
                name: "staging".into(),
                steps: vec![PlanStep {
                    weight: 100,
                    shadow: 0,
                    pause: StepPause::None,
                }],
                approval: false,
                analysis: false,
                max_inconclusive_ms: 1000,
                failure_limit: 0,
                consecutive_failures: 0,
            },
            EnvPlan {
                name: "production".into(),
                steps: steps
                    .iter()
                    .map(|&(weight, pause)| PlanStep {
                        weight,
                        shadow: 0,
                        pause,
                    })
                    .collect(),
                approval,
                analysis: true,
                max_inconclusive_ms: 1000,
                failure_limit: 0,
                consecutive_failures: 0,
            },
        ],
        gates: false,
        breaking_change: None,
    }
}

fn run(r: &mut Release, events: &[Event], now: u64) -> Vec<Action> {
    let mut all = Vec::new();
    for e in events {
        let (n, a) = step(r, e, now).unwrap_or_else(|e| panic!("{e}"));
        *r = n;
        all.extend(a);
    }
    all
}

fn through_staging(r: &mut Release) {
    run(
        r,
        &[
            Event::Start,
            Event::Fetched,
            Event::CandidateReady { has_stable: true },
            Event::SmokePassed,
            Event::CandidateReady { has_stable: true },
            Event::SmokePassed,
        ],
        0,
    );
}

#[test]
fn canary_walks_its_steps_and_promotes() {
    let p = plan(
        &[
            (10, StepPause::Ms(100)),
            (50, StepPause::Ms(100)),
            (100, StepPause::None),
        ],
        false,
    );
    let mut r = Release::new(1, "m", "2", p);
    through_staging(&mut r);
    assert!(matches!(r.phase, Phase::Step { index: 0, .. }));
    assert_eq!(r.weight, 10);
    // Pause not over: a pass changes nothing yet.
    let a = run(
        &mut r,
        &[Event::Verdict {
            verdict: Verdict::Pass,
            numbers: serde_json::Value::Null,
        }],
        50,
    );
    assert!(a.is_empty());
    let a = run(&mut r, &[Event::Tick], 100);
    assert_eq!(
        a[0],
        Action::SetWeight {
            env: "production".into(),
            weight: 50
        }
    );
    // Step 1 needs its own pass: a tick without a verdict waits.
    let a = run(&mut r, &[Event::Tick], 200);
    assert_eq!(a, vec![Action::WakeAt { at_ms: 1200 }]);
    let a = run(
        &mut r,
        &[Event::Verdict {
            verdict: Verdict::Pass,
            numbers: serde_json::Value::Null,
        }],
        210,
    );
    assert_eq!(
        a[0],
        Action::SetWeight {
            env: "production".into(),
            weight: 100
        }
    );
    assert!(a.contains(&Action::PromoteCandidate {
        env: "production".into()
    }));
    assert_eq!(r.outcome, Some(Outcome::Succeeded));
}

#[test]
fn failed_analysis_rolls_back_at_once() {
    let p = plan(&[(25, StepPause::Ms(1000))], false);
    let mut r = Release::new(1, "m", "2", p);
    through_staging(&mut r);
    let a = run(
        &mut r,
        &[Event::Verdict {
            verdict: Verdict::Fail {
                reason: "p99 0.3 s > 0.1 s".into(),
            },
            numbers: serde_json::Value::Null,
        }],
        10,
    );
    assert_eq!(
        a[0],
        Action::SetWeight {
            env: "production".into(),
            weight: 0
        }
    );
    assert_eq!(
        a[1],
        Action::StopCandidate {
            env: "production".into()
        }
    );
    assert!(matches!(r.outcome, Some(Outcome::Failed { ref reason }) if reason.contains("p99")));
    assert!(step(&r, &Event::Promote { full: false }, 20).is_err());
}

#[test]
fn failure_limit_and_consecutive_failures() {
    let mut p = plan(&[(25, StepPause::Ms(1000))], false);
    p.envs[1].failure_limit = 2;
    let mut r = Release::new(1, "m", "2", p.clone());
    through_staging(&mut r);
    let fail = Event::Verdict {
        verdict: Verdict::Fail {
            reason: "p99".into(),
        },
        numbers: serde_json::Value::Null,
    };
    let pass = Event::Verdict {
        verdict: Verdict::Pass,
        numbers: serde_json::Value::Null,
    };
    run(&mut r, &[fail.clone(), pass.clone(), fail.clone()], 10);
    assert!(!r.is_done(), "two failures are within failure_limit = 2");
    run(&mut r, std::slice::from_ref(&fail), 20);
    assert!(
        matches!(r.outcome, Some(Outcome::Failed { .. })),
        "the third one is not"
    );
    // consecutive_failures = 2 with a generous limit: two in a row end it.
    p.envs[1].failure_limit = 10;
    p.envs[1].consecutive_failures = 2;
    let mut r = Release::new(1, "m", "2", p);
    through_staging(&mut r);
    run(
        &mut r,
        &[fail.clone(), pass.clone(), fail.clone(), pass, fail.clone()],
        10,
    );
    assert!(!r.is_done());
    run(&mut r, &[fail], 20);
    assert!(r.is_done());
}

#[test]
fn first_deployment_goes_straight_to_stable() {
    let p = plan(&[(10, StepPause::Ms(100))], false);
    let mut r = Release::new(1, "m", "1", p);
    let a = run(
        &mut r,
        &[
            Event::Start,
            Event::Fetched,
            Event::CandidateReady { has_stable: false },
            Event::SmokePassed,
            Event::CandidateReady { has_stable: false },
            Event::SmokePassed,
        ],
        0,
    );
    assert_eq!(r.outcome, Some(Outcome::Succeeded));
    assert_eq!(
        a.iter()
            .filter(|a| matches!(a, Action::PromoteCandidate { .. }))
            .count(),
        2
    );
}

#[test]
fn approval_and_manual_pause() {
    let p = plan(&[(30, StepPause::Manual)], true);
    let mut r = Release::new(7, "m", "2", p);
    through_staging(&mut r);
    assert_eq!(r.phase, Phase::AwaitingApproval);
    assert!(step(&r, &Event::Promote { full: false }, 0).is_err());
    run(&mut r, &[Event::Approve], 5);
    assert_eq!(r.weight, 30);
    run(
        &mut r,
        &[
            Event::Tick,
            Event::Verdict {
                verdict: Verdict::Pass,
                numbers: serde_json::Value::Null,
            },
        ],
        1_000_000,
    );
    assert_eq!(r.weight, 30, "a manual pause waits for promote");
    run(&mut r, &[Event::Promote { full: false }], 1_000_001);
    assert_eq!(r.outcome, Some(Outcome::Succeeded));
}

#[test]
fn inconclusive_waits_then_fails() {
    let p = plan(&[(50, StepPause::Ms(100))], false);
    let mut r = Release::new(1, "m", "2", p);
    through_staging(&mut r);
    let inc = Verdict::Inconclusive {
        reason: "3 of 20 requests".into(),
    };
    run(
        &mut r,
        &[
            Event::Verdict {
                verdict: inc.clone(),
                numbers: serde_json::Value::Null,
            },
            Event::Tick,
        ],
        150,
    );
    assert!(!r.is_done());
    run(&mut r, &[Event::Tick], 1100);
    assert!(
        matches!(r.outcome, Some(Outcome::Failed { ref reason }) if reason.contains("inconclusive"))
    );
}

#[test]
fn resume_reapplies_the_current_step_only() {
    let p = plan(
        &[(10, StepPause::Ms(100)), (60, StepPause::Ms(100_000))],
        false,
    );
    let mut r = Release::new(1, "m", "2", p);
    through_staging(&mut r);
    run(
        &mut r,
        &[
            Event::Verdict {
                verdict: Verdict::Pass,
                numbers: serde_json::Value::Null,
            },
            Event::Tick,
        ],
        100,
    );
    let a = resume(&r, 500);
    assert_eq!(
        a,
        vec![
            Action::StartCandidate {
                env: "production".into()
            },
            Action::SetWeight {
                env: "production".into(),
                weight: 60
            },
            Action::BeginAnalysis {
                env: "production".into(),
                step: 1
            },
            Action::WakeAt { at_ms: 100_100 },
        ]
    );
}

#[test]
fn from_config_appends_the_full_step() {
    let cfg = config::Config::default();
    let p = Plan::from_config(&cfg, None).unwrap();
    assert_eq!(p.envs.len(), 2);
    let w: Vec<u32> = p.envs[1].steps.iter().map(|s| s.weight).collect();
    assert_eq!(w, vec![10, 50, 100]);
    assert_eq!(p.envs[0].steps.len(), 1);
    assert!(
        Plan::from_config(&cfg, Some("qa"))
            .unwrap_err()
            .contains("staging, production")
    );
}
