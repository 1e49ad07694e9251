//! The analysis looks every interval; a good release must still be rolled back at
//! most `analysis.alpha` of the time. 10,000 simulated good releases (seeded, so the
//! count is the same on every run) go through a shadow step and three canary steps,
//! every judge (errors with 4xx, latency limits and medians, drift, feedback
//! accuracy, shadow agreement and probabilities) looking at every interval; the
//! share rolled back is at most α. The same simulation with bad candidates shows the
//! judges still catch them.

use hoist_release::analysis::{
    Labels, Live, LiveJudgement, ShadowWindow, Window, judge_feedback, judge_live, judge_shadow,
};
use hoist_release::config::Analysis;
use hoist_release::machine::Verdict;

/// SplitMix64: small, seeded, good enough for a simulation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn bernoulli(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// A latency in seconds: log-normal around `median`.
    fn latency(&mut self, median: f64) -> f64 {
        let (u, v) = (self.uniform().max(1e-12), self.uniform());
        let z = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
        median * (0.3 * z).exp()
    }
}

/// How a variant behaves.
#[derive(Clone, Copy)]
struct Behaviour {
    /// 5xx share, and 4xx share (callers' bad requests: the same for a good candidate).
    server_errors: f64,
    client_errors: f64,
    median_latency: f64,
    /// Share of the three classes' first two (the rest: class 2).
    classes: [f64; 2],
    accuracy: f64,
    /// Shadow: agreement with stable, and the mean probability difference.
    agreement: f64,
    probability_diff: f64,
}

const GOOD: Behaviour = Behaviour {
    server_errors: 0.002,
    client_errors: 0.01,
    median_latency: 0.004,
    classes: [0.6, 0.3],
    accuracy: 0.9,
    agreement: 0.97,
    probability_diff: 0.04,
};

/// One variant's cumulative numbers over a step.
#[derive(Default)]
struct Counts {
    window: Window,
    latencies: Vec<f64>,
    classes: [u64; 3],
    labels: Labels,
}

impl Counts {
    fn serve(&mut self, rng: &mut Rng, b: &Behaviour) {
        let w = &mut self.window;
        w.requests += 1;
        if rng.bernoulli(b.server_errors) {
            w.errors += 1;
        } else if rng.bernoulli(b.client_errors) {
            w.client_errors += 1;
        } else {
            let u = rng.uniform();
            let class = if u < b.classes[0] {
                0
            } else if u < b.classes[0] + b.classes[1] {
                1
            } else {
                2
            };
            self.classes[class] += 1;
            if rng.bernoulli(0.5) {
                self.labels.labelled += 1;
                self.labels.correct += u64::from(rng.bernoulli(b.accuracy));
            }
        }
        self.latencies.push(rng.latency(b.median_latency));
    }
}

/// Requests per interval through the gateway, intervals per step.
const TRAFFIC: u64 = 60;
const INTERVALS: usize = 6;
/// The canary steps after the shadow step: the candidate's share of traffic.
const STEPS: [f64; 3] = [0.05, 0.25, 0.5];

fn analysis() -> Analysis {
    Analysis {
        feedback: true,
        min_labels: 20,
        min_accuracy: Some(0.8),
        max_accuracy_drop: Some(0.05),
        min_requests: 20,
        ..Analysis::default()
    }
}

/// Whether one release is rolled back (any failed verdict at any interval of any
/// step), the analysis' alpha shared by its four analysed steps as the daemon does.
fn rolled_back(rng: &mut Rng, candidate: &Behaviour) -> bool {
    let mut a = analysis();
    a.alpha /= (STEPS.len() + 1) as f64;
    // The shadow step: every request answered by stable is mirrored.
    let mut w = ShadowWindow::default();
    for _ in 0..INTERVALS {
        for _ in 0..TRAFFIC {
            w.mirrored += 1;
            // Stable answered these 2xx: a candidate's 4xx beyond stable's share is
            // a request it refuses that stable serves.
            let refused = (candidate.client_errors - GOOD.client_errors).max(0.0);
            if rng.bernoulli(candidate.server_errors + refused) {
                w.errors += 1;
                continue;
            }
            w.rows += 1;
            w.agreeing_rows += u64::from(rng.bernoulli(candidate.agreement));
            w.probabilities += 2;
            w.probability_diff_sum += 2.0 * 2.0 * candidate.probability_diff * rng.uniform();
        }
        if matches!(judge_shadow(&a, &w), Verdict::Fail { .. }) {
            return true;
        }
    }
    for share in STEPS {
        let (mut c, mut s) = (Counts::default(), Counts::default());
        for _ in 0..INTERVALS {
            for _ in 0..TRAFFIC {
                if rng.bernoulli(share) {
                    c.serve(rng, candidate);
                } else {
                    s.serve(rng, &GOOD);
                }
            }
            let median = |x: &[f64]| {
                let mut x = x.to_vec();
                let m = x.len() / 2;
                (!x.is_empty()).then(|| *x.select_nth_unstable_by(m, f64::total_cmp).1)
            };
            c.window.p50_seconds = median(&c.latencies);
            s.window.p50_seconds = median(&s.latencies);
            let mut j: LiveJudgement = judge_live(
                &a,
                &Live {
                    candidate: c.window,
                    stable: s.window,
                    candidate_latencies: c.latencies.clone(),
                    stable_latencies: s.latencies.clone(),
                    ..Live::default()
                },
            );
            j.drift(&a, &s.classes, &c.classes);
            if matches!(j.verdict, Verdict::Fail { .. })
                || matches!(
                    judge_feedback(&a, &c.labels, &s.labels),
                    Verdict::Fail { .. }
                )
            {
                return true;
            }
        }
    }
    false
}

#[test]
fn ten_thousand_good_releases_judged_every_interval_roll_back_at_most_alpha() {
    let mut rng = Rng(23);
    let releases = 10_000;
    let back = (0..releases)
        .filter(|_| rolled_back(&mut rng, &GOOD))
        .count();
    let rate = back as f64 / releases as f64;
    println!("{back} of {releases} good releases rolled back ({rate})");
    assert!(
        rate <= analysis().alpha,
        "{back} of {releases} good releases rolled back: {rate} > alpha {}",
        analysis().alpha
    );
}

#[test]
fn the_same_judges_catch_bad_candidates() {
    let mut rng = Rng(7);
    for (what, bad) in [
        (
            "4xx on 20% of requests",
            Behaviour {
                client_errors: 0.2,
                ..GOOD
            },
        ),
        (
            "three times slower",
            Behaviour {
                median_latency: 0.012,
                ..GOOD
            },
        ),
        (
            "agrees with stable on 80%",
            Behaviour {
                agreement: 0.8,
                ..GOOD
            },
        ),
        (
            "predicts class 2 nine times in ten",
            Behaviour {
                classes: [0.05, 0.05],
                ..GOOD
            },
        ),
    ] {
        let caught = (0..50).filter(|_| rolled_back(&mut rng, &bad)).count();
        println!("{what}: {caught} of 50 caught");
        assert!(caught >= 45, "{what}: only {caught} of 50 caught");
    }
}
