use super::*;

fn a() -> Analysis {
    Analysis {
        max_error_rate: 0.05,
        max_p99_ms: 100.0,
        min_requests: 20,
        ..Analysis::default()
    }
}

#[test]
fn verdicts() {
    let w = |requests, errors, p99: f64| Window {
        requests,
        errors,
        p99_seconds: Some(p99),
        ..Window::default()
    };
    assert_eq!(judge(&a(), &w(100, 0, 0.01), &[], 0.01), Verdict::Pass);
    assert!(matches!(
        judge(&a(), &w(5, 0, 0.01), &[], 0.01),
        Verdict::Inconclusive { .. }
    ));
    assert!(
        matches!(judge(&a(), &w(100, 30, 0.01), &[], 0.01), Verdict::Fail { ref reason } if reason.contains("30 of 100"))
    );
    assert!(
        matches!(judge(&a(), &w(100, 0, 0.3), &[], 0.01), Verdict::Fail { ref reason } if reason.contains("300.0 ms"))
    );
    // 4 errors in 8 requests: already more than 5% of the 20 needed.
    assert!(matches!(
        judge(&a(), &w(8, 4, 0.01), &[], 0.01),
        Verdict::Fail { .. }
    ));
    // 1 error in 8: could still end under 5% of 20; wait.
    assert!(matches!(
        judge(&a(), &w(8, 1, 0.01), &[], 0.01),
        Verdict::Inconclusive { .. }
    ));
    assert_eq!(judge(&a(), &w(100, 5, 0.01), &[], 0.01), Verdict::Pass);
    // 10% of 100 against 5%: not shown (an unlucky window of a 5% candidate can
    // look like that), so no failure however often it is checked.
    assert_eq!(judge(&a(), &w(100, 10, 0.01), &[], 0.01), Verdict::Pass);
    // With the latencies, the p99 limit is judged on the share above it.
    let fast = vec![0.01; 990];
    let mut slow = fast.clone();
    slow.extend(vec![0.3; 60]);
    assert_eq!(judge(&a(), &w(1000, 0, 0.3), &fast, 0.01), Verdict::Pass);
    assert!(
        matches!(judge(&a(), &w(1050, 0, 0.3), &slow, 0.01), Verdict::Fail { ref reason } if reason.contains("60 of 1050"))
    );
}

#[test]
fn p50_and_p95_limits_apply_when_set() {
    let w = Window {
        requests: 100,
        errors: 0,
        client_errors: 0,
        p50_seconds: Some(0.030),
        p95_seconds: Some(0.060),
        p99_seconds: Some(0.080),
    };
    // Unset: only p99 (100 ms) decides.
    assert_eq!(judge(&a(), &w, &[], 0.01), Verdict::Pass);
    let strict = |p95: Option<f64>, p50: Option<f64>| Analysis {
        max_p95_ms: p95,
        max_p50_ms: p50,
        ..a()
    };
    let Verdict::Fail { reason } = judge(&strict(Some(50.0), None), &w, &[], 0.01) else {
        panic!("p95 60 ms above 50 ms must fail")
    };
    assert!(
        reason.contains("p95 latency 60.0 ms over 100 requests is above 50 ms"),
        "{reason}"
    );
    let Verdict::Fail { reason } = judge(&strict(None, Some(20.0)), &w, &[], 0.01) else {
        panic!("p50 30 ms above 20 ms must fail")
    };
    assert!(reason.contains("p50 latency 30.0 ms"), "{reason}");
    assert_eq!(
        judge(&strict(Some(70.0), Some(40.0)), &w, &[], 0.01),
        Verdict::Pass
    );
}

fn errors(requests: u64, errors: u64) -> Window {
    Window {
        requests,
        errors,
        ..Window::default()
    }
}

#[test]
fn more_errors_than_stable_fails_the_comparison_with_the_numbers() {
    // 0.8% against 0.05%: under an absolute 1%, but 16 times stable's rate.
    match compare_errors(&errors(2000, 60), &errors(2000, 1), 0.05, 0.005, 30) {
        ErrorComparison::Fail {
            reason,
            p,
            difference,
        } => {
            assert!(p < 0.001, "{p}");
            assert!((difference - 0.0295).abs() < 1e-12, "{difference}");
            for part in [
                "failed 60 of 2000 requests (3.00%)",
                "stable 1 of 2000 (0.05%)",
                "plus 0.50 points",
                "confidence sequences",
            ] {
                assert!(reason.contains(part), "{part:?} not in {reason:?}");
            }
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn error_comparison_needs_significance_and_a_material_difference() {
    // Same rate: no evidence.
    assert!(matches!(
        compare_errors(&errors(1000, 5), &errors(1000, 5), 0.05, 0.0, 30),
        ErrorComparison::Pass { p, .. } if p > 0.5
    ));
    // Significant, but 0.3 points is within a 0.5-point tolerance.
    assert!(matches!(
        compare_errors(&errors(100_000, 400), &errors(100_000, 100), 0.05, 0.005, 30),
        ErrorComparison::Pass { p, .. } if p < 1e-10
    ));
    // Material, but 2 errors against none on 40 requests is not significant.
    assert!(matches!(
        compare_errors(&errors(40, 2), &errors(40, 0), 0.05, 0.005, 30),
        ErrorComparison::Pass { p, .. } if p > 0.05
    ));
    // Fewer errors than stable passes.
    assert!(matches!(
        compare_errors(&errors(1000, 0), &errors(1000, 30), 0.05, 0.0, 30),
        ErrorComparison::Pass { difference, .. } if difference < 0.0
    ));
    // Too little traffic on a side, or a bad setting: inconclusive.
    assert!(matches!(
        compare_errors(&errors(1000, 50), &errors(10, 0), 0.05, 0.005, 30),
        ErrorComparison::Inconclusive { ref reason } if reason.contains("1000 candidate and 10 stable")
    ));
    assert!(matches!(
        compare_errors(&errors(1000, 50), &errors(1000, 0), 1.0, 0.005, 30),
        ErrorComparison::Inconclusive { .. }
    ));
    assert!(matches!(
        compare_errors(&errors(1000, 50), &errors(1000, 0), 0.05, f64::NAN, 30),
        ErrorComparison::Inconclusive { .. }
    ));
}

fn live(c: Window, s: Window, c_lat: Vec<f64>, s_lat: Vec<f64>) -> Live {
    Live {
        candidate: c,
        stable: s,
        candidate_latencies: c_lat,
        stable_latencies: s_lat,
        ..Live::default()
    }
}

#[test]
fn judge_live_runs_the_checks_in_order_and_records_their_numbers() {
    let a = Analysis {
        max_error_rate: 0.05,
        min_requests: 20,
        ..Analysis::default()
    };
    let s = stable();
    let w = |errors, p50| Window {
        requests: 2000,
        errors,
        p50_seconds: Some(p50),
        p99_seconds: Some(0.006),
        ..Window::default()
    };
    // Alike: both comparisons made, both pass.
    let j = judge_live(&a, &live(w(0, 0.005), w(0, 0.005), s.clone(), s.clone()));
    assert_eq!(j.verdict, Verdict::Pass);
    assert_eq!(j.numbers["error_comparison"]["p"], 1.0);
    assert!(j.numbers["latency_comparison"]["p"].as_f64().unwrap() > 0.5);
    // 4% errors: under the absolute 5%, far above stable's 0%.
    let j = judge_live(&a, &live(w(80, 0.005), w(0, 0.005), s.clone(), s.clone()));
    assert!(
        matches!(&j.verdict, Verdict::Fail { reason } if reason.contains("confidence sequences")),
        "{:?}",
        j.verdict
    );
    assert!(j.numbers["error_comparison"]["p"].as_f64().unwrap() < 0.05);
    assert!(
        j.numbers.get("latency_comparison").is_none(),
        "stops at the first failure"
    );
    // 10× slower medians, 45 ms more: the latency comparison fails.
    let j = judge_live(
        &a,
        &live(w(0, 0.050), w(0, 0.005), scaled(&s, 10.0), s.clone()),
    );
    assert!(
        matches!(&j.verdict, Verdict::Fail { reason } if reason.contains("medians")),
        "{:?}",
        j.verdict
    );
    // ... unless within the slack in milliseconds.
    let lenient = Analysis {
        latency_slack_ms: 100.0,
        ..a.clone()
    };
    let j = judge_live(
        &lenient,
        &live(w(0, 0.050), w(0, 0.005), scaled(&s, 10.0), s.clone()),
    );
    assert_eq!(j.verdict, Verdict::Pass);
    // No stable traffic (blue-green at 100%): only the absolute limits decide.
    let j = judge_live(
        &a,
        &live(w(80, 0.050), Window::default(), scaled(&s, 10.0), vec![]),
    );
    assert_eq!(j.verdict, Verdict::Pass);
    assert!(
        j.numbers.get("error_comparison").is_none(),
        "{:?}",
        j.numbers
    );
    assert!(
        j.numbers.get("latency_comparison").is_none(),
        "{:?}",
        j.numbers
    );
    // Comparisons switched off.
    let off = Analysis {
        compare_errors: false,
        compare_latency: false,
        ..a.clone()
    };
    let j = judge_live(
        &off,
        &live(w(80, 0.050), w(0, 0.005), scaled(&s, 10.0), s.clone()),
    );
    assert_eq!(j.verdict, Verdict::Pass);
    // Drift is added only on a pass.
    let mut j = judge_live(&a, &live(w(0, 0.005), w(0, 0.005), s.clone(), s.clone()));
    j.drift(&a, &[900, 100], &[500, 500]);
    assert!(matches!(&j.verdict, Verdict::Fail { reason } if reason.contains("PSI")));
    assert!(j.numbers["drift"]["psi"].as_f64().unwrap() > 0.25);
    let mut failed = judge_live(&a, &live(w(80, 0.005), w(0, 0.005), s.clone(), s.clone()));
    failed.drift(&a, &[900, 100], &[50, 50]);
    assert!(failed.numbers.get("drift").is_none());
}

/// 200 latencies spread evenly over 4..6 ms, in a scrambled order.
fn stable() -> Vec<f64> {
    (0..200)
        .map(|i| 0.004 + 0.002 * ((i * 37 % 200) as f64 / 200.0))
        .collect()
}

fn scaled(xs: &[f64], k: f64) -> Vec<f64> {
    xs.iter().map(|x| x * k).collect()
}

#[test]
fn ten_times_slower_fails_with_the_numbers() {
    let s = stable();
    let c = scaled(&s, 10.0);
    match compare_latency(&c, &s, 0.05, 0.2, 50) {
        Comparison::Fail { reason, p, ratio } => {
            assert!(p < 1e-10, "{p}");
            assert!((ratio - 10.0).abs() < 1e-9, "{ratio}");
            for part in [
                "50.0 ms",
                "10.00×",
                "5.0 ms",
                "20%",
                "medians",
                "200 candidate",
            ] {
                assert!(reason.contains(part), "{part:?} not in {reason:?}");
            }
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        compare_latency(&c, &s, 0.05, 0.2, 50).verdict(),
        Verdict::Fail { .. }
    ));
}

#[test]
fn identical_samples_pass() {
    let s = stable();
    match compare_latency(&s, &s, 0.05, 0.2, 50) {
        Comparison::Pass { p, ratio } => {
            assert!(p > 0.5, "{p}");
            assert_eq!(ratio, 1.0);
        }
        other => panic!("{other:?}"),
    }
    // Even with no tolerance at all.
    assert!(matches!(
        compare_latency(&s, &s, 0.99, 0.0, 50),
        Comparison::Pass { .. }
    ));
}

#[test]
fn small_significant_slowdown_within_tolerance_passes() {
    let s = stable();
    let c = scaled(&s, 1.05);
    // Significant...
    assert!(mann_whitney_u(&c, &s).p_greater < 0.001);
    // ...but 5% is within a 20% tolerance.
    match compare_latency(&c, &s, 0.05, 0.2, 50) {
        Comparison::Pass { p, ratio } => {
            assert!(p < 0.001);
            assert!((ratio - 1.05).abs() < 1e-9);
        }
        other => panic!("{other:?}"),
    }
    // Without a tolerance, 200 requests a side do not show a 5% slowdown at every
    // look; twenty times as many do.
    assert!(matches!(
        compare_latency(&c, &s, 0.05, 0.0, 50),
        Comparison::Pass { .. }
    ));
    let many = |x: &[f64]| x.repeat(20);
    assert!(matches!(
        compare_latency(&many(&c), &many(&s), 0.05, 0.0, 50),
        Comparison::Fail { .. }
    ));
}

#[test]
fn large_but_noisy_difference_on_little_traffic_passes() {
    // Medians 2 ms against 1 ms, but 4 requests each overlap too much to tell.
    let s = [0.001, 0.0005, 0.004, 0.0015];
    let c = [0.002, 0.0008, 0.0025, 0.0012];
    assert!(matches!(
        compare_latency(&c, &s, 0.05, 0.2, 4),
        Comparison::Pass { .. }
    ));
}

#[test]
fn faster_candidate_passes() {
    let s = stable();
    let c = scaled(&s, 0.5);
    assert!(matches!(
        compare_latency(&c, &s, 0.05, 0.0, 50),
        Comparison::Pass { ratio, .. } if ratio < 0.51
    ));
}

#[test]
fn too_few_latencies_or_bad_settings_are_inconclusive() {
    let s = stable();
    let c = scaled(&s[..10], 10.0);
    match compare_latency(&c, &s, 0.05, 0.2, 50) {
        Comparison::Inconclusive { reason } => {
            assert!(reason.contains("10 candidate and 200 stable"), "{reason}");
            assert!(reason.contains("50 each"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        compare_latency(&[], &[], 0.05, 0.2, 0),
        Comparison::Inconclusive { .. }
    ));
    assert!(matches!(
        compare_latency(&s, &s, 1.0, 0.2, 1),
        Comparison::Inconclusive { .. }
    ));
    assert!(matches!(
        compare_latency(&s, &s, f64::NAN, 0.2, 1),
        Comparison::Inconclusive { .. }
    ));
    assert!(matches!(
        compare_latency(&s, &s, 0.05, -0.1, 1),
        Comparison::Inconclusive { .. }
    ));
    // NaNs do not count as samples.
    assert!(matches!(
        compare_latency(&[f64::NAN; 60], &s, 0.05, 0.2, 50),
        Comparison::Inconclusive { .. }
    ));
}

#[test]
fn zero_stable_median() {
    let s = vec![0.0; 100];
    let c = vec![0.001; 100];
    assert!(matches!(
        compare_latency(&c, &s, 0.05, 0.2, 50),
        Comparison::Fail { ratio, .. } if ratio.is_infinite()
    ));
    assert!(matches!(
        compare_latency(&s, &s, 0.05, 0.2, 50),
        Comparison::Pass { ratio, p } if ratio == 1.0 && p == 1.0
    ));
}

#[test]
fn same_class_mix_passes_drift() {
    match drift(&[700, 300], &[69, 31], 0.1, 50, 0.01) {
        Drift::Pass { psi } => assert!(psi < 0.01, "{psi}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        drift(&[10, 20, 30], &[10, 20, 30], 0.0, 1, 0.01),
        Drift::Pass { psi: 0.0 }
    );
    assert_eq!(
        drift(&[10, 20, 30], &[10, 20, 30], 0.0, 1, 0.01).verdict(),
        Verdict::Pass
    );
}

#[test]
fn different_class_mix_fails_drift() {
    match drift(&[900, 100], &[500, 500], 0.25, 50, 0.01) {
        Drift::Fail { reason, psi } => {
            // (0.5-0.9)ln(0.5/0.9) + (0.5-0.1)ln(0.5/0.1)
            let want = 0.4 * (0.9f64 / 0.5).ln() + 0.4 * 5f64.ln();
            assert!((psi - want).abs() < 1e-9, "{psi}");
            for part in [
                "PSI 0.879",
                "above 0.25",
                "50.0% of 1000 candidate",
                "at least 0.",
                "90.0% of 1000 stable",
            ] {
                assert!(reason.contains(part), "{part:?} not in {reason:?}");
            }
        }
        other => panic!("{other:?}"),
    }
    // A class stable never predicted.
    assert!(matches!(
        drift(&[500, 500], &[40, 40, 20], 0.1, 50, 0.01),
        Drift::Fail { ref reason, .. } if reason.contains("class 2 is 20.0%")
    ));
}

#[test]
fn too_few_predictions_or_bad_limit_are_inconclusive_drift() {
    match drift(&[900, 100], &[5, 5], 0.1, 50, 0.01) {
        Drift::Inconclusive { reason } => {
            assert!(reason.contains("10 candidate and 1000 stable"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        drift(&[], &[], 0.1, 0, 0.01),
        Drift::Inconclusive { .. }
    ));
    assert!(matches!(
        drift(&[1, 1], &[1, 1], f64::NAN, 1, 0.01),
        Drift::Inconclusive { .. }
    ));
}

fn shadow(mirrored: u64, errors: u64, rows: u64, agree: u64, diff: f64) -> ShadowWindow {
    ShadowWindow {
        mirrored,
        errors,
        rows,
        agreeing_rows: agree,
        probabilities: rows * 2,
        probability_diff_sum: diff * (rows * 2) as f64,
        p99_seconds: Some(0.002),
        ..ShadowWindow::default()
    }
}

#[test]
fn shadow_verdicts() {
    let a = Analysis {
        min_requests: 20,
        ..Analysis::default()
    };
    assert_eq!(
        judge_shadow(&a, &shadow(100, 0, 100, 99, 0.01)),
        Verdict::Pass
    );
    let Verdict::Fail { reason } = judge_shadow(&a, &shadow(100, 0, 100, 60, 0.01)) else {
        panic!("40% disagreement must fail")
    };
    assert!(
        reason.contains("60.0% of 100 rows (40 disagreed)"),
        "{reason}"
    );
    let Verdict::Fail { reason } = judge_shadow(&a, &shadow(100, 0, 100, 100, 0.3)) else {
        panic!("probabilities far apart must fail")
    };
    assert!(reason.contains("0.300"), "{reason}");
    let Verdict::Fail { reason } = judge_shadow(&a, &shadow(100, 10, 90, 90, 0.0)) else {
        panic!("10% candidate errors must fail")
    };
    assert!(reason.contains("failed 10 of 100"), "{reason}");
    assert!(matches!(
        judge_shadow(&a, &shadow(10, 0, 10, 10, 0.0)),
        Verdict::Inconclusive { .. }
    ));
    let mut slow = shadow(100, 0, 100, 100, 0.0);
    slow.p99_seconds = Some(1.0);
    assert!(matches!(judge_shadow(&a, &slow), Verdict::Fail { .. }));
    // With the latencies: 2 of 100 above the limit is not shown above 1%; 20 are.
    let mut lat = vec![0.002; 98];
    lat.extend([1.0, 1.0]);
    slow.latencies = lat;
    assert_eq!(judge_shadow(&a, &slow), Verdict::Pass);
    slow.latencies = [vec![0.002; 80], vec![1.0; 20]].concat();
    assert!(
        matches!(judge_shadow(&a, &slow), Verdict::Fail { ref reason } if reason.contains("p99"))
    );
    // Answers nobody could read are no pass.
    assert!(matches!(
        judge_shadow(&a, &shadow(100, 0, 0, 0, 0.0)),
        Verdict::Inconclusive { .. }
    ));
}

#[test]
fn feedback_verdicts() {
    let a = Analysis {
        min_labels: 50,
        min_accuracy: Some(0.8),
        max_accuracy_drop: Some(0.05),
        ..Analysis::default()
    };
    let l = |labelled, correct| Labels { labelled, correct };
    assert_eq!(judge_feedback(&a, &l(100, 95), &l(100, 96)), Verdict::Pass);
    let Verdict::Inconclusive { reason } = judge_feedback(&a, &l(49, 49), &l(100, 96)) else {
        panic!("too few labels must wait")
    };
    assert!(reason.contains("49 of the 50"), "{reason}");
    let Verdict::Fail { reason } = judge_feedback(&a, &l(500, 350), &l(100, 96)) else {
        panic!("below the bar must fail")
    };
    assert!(reason.contains("70.0% (350 of 500"), "{reason}");
    // 70 of 100 is not enough to show it at every look.
    assert_eq!(judge_feedback(&a, &l(100, 70), &l(100, 96)), Verdict::Pass);
    let Verdict::Fail { reason } = judge_feedback(&a, &l(3000, 2550), &l(3000, 2880)) else {
        panic!("11 points below stable must fail")
    };
    assert!(
        reason.contains("11.0 points below stable's 96.0%"),
        "{reason}"
    );
    // Stable without enough labels: only the absolute bar applies.
    assert_eq!(judge_feedback(&a, &l(100, 85), &l(10, 10)), Verdict::Pass);
}

#[test]
fn evidence_needed_names_the_slowest_shortfall() {
    // 20 of 50 requests in 10 s (2/s): 30 more, 15 s; 5 of 50 labels (0.5/s): 90 s.
    let e = evidence_needed(
        &[
            (20, 50, "candidate requests"),
            (5, 50, "labelled candidate rows"),
        ],
        10.0,
    )
    .unwrap();
    assert_eq!((e.0, e.1), (45, "labelled candidate rows"));
    assert!((e.2.unwrap() - 0.5).abs() < 1e-12 && (e.3.unwrap() - 90.0).abs() < 1e-9);
    // None arrived: no rate, and it counts as the longest.
    let e = evidence_needed(&[(20, 50, "a"), (0, 10, "b")], 10.0).unwrap();
    assert_eq!((e.0, e.1, e.2, e.3), (10, "b", None, None));
    assert_eq!(evidence_needed(&[(50, 50, "a")], 10.0), None);
}

/// A regressor's shadow window: `rows` rows whose differences from stable's values
/// alternate `bias ± spread`, on stable values of mean absolute value 150.
fn values(rows: u64, bias: f64, spread: f64) -> ShadowWindow {
    let mut w = ShadowWindow {
        mirrored: rows,
        p99_seconds: Some(0.002),
        stable_abs_sum: 150.0 * rows as f64,
        ..ShadowWindow::default()
    };
    for i in 0..rows {
        let d = bias + if i % 2 == 0 { spread } else { -spread };
        w.differences.n += 1;
        w.differences.sum += d;
        w.differences.sum_squares += d * d;
        w.abs_differences.n += 1;
        w.abs_differences.sum += d.abs();
        w.abs_differences.sum_squares += d * d;
    }
    w
}

#[test]
fn regressors_are_judged_on_values_never_as_probabilities() {
    let a = Analysis::default();
    // A retrain: differences of ±5 around -2 on values near 150: passes.
    assert_eq!(judge_shadow(&a, &values(400, -2.0, 5.0)), Verdict::Pass);
    // Shifted by +60: biased, whatever the spread.
    let Verdict::Fail { reason } = judge_shadow(&a, &values(100, 60.0, 0.0)) else {
        panic!("a +60 bias must fail")
    };
    assert!(reason.contains("biased by +60.000"), "{reason}");
    assert!(reason.contains("+40.0% of stable's"), "{reason}");
    assert!(!reason.contains("probabilit"), "{reason}");
    // Unbiased but far off on every row: ±40 is 27% of 150, above 20%.
    let Verdict::Fail { reason } = judge_shadow(&a, &values(400, 0.0, 40.0)) else {
        panic!("large differences must fail")
    };
    assert!(
        reason.contains("differ from stable's by 40.000"),
        "{reason}"
    );
    // A few rows are not enough to show a small bias.
    assert_eq!(judge_shadow(&a, &values(30, 20.0, 30.0)), Verdict::Pass);
}

#[test]
fn shadow_names_the_status_codes_of_refused_requests() {
    let a = Analysis::default();
    let mut w = shadow(620, 31, 589, 589, 0.0);
    w.codes = vec![(400, 31)];
    let Verdict::Fail { reason } = judge_shadow(&a, &w) else {
        panic!("31 refused of 620 must fail")
    };
    assert!(
        reason.contains("candidate 400 on 31 of 620 mirrored requests"),
        "{reason}"
    );
}

#[test]
fn live_comparison_counts_4xx_and_names_the_codes() {
    let a = Analysis {
        compare_latency: false,
        ..Analysis::default()
    };
    let c = Window {
        requests: 620,
        client_errors: 31,
        ..Window::default()
    };
    let s = Window {
        requests: 5800,
        ..Window::default()
    };
    let j = judge_live(
        &a,
        &Live {
            candidate: c,
            stable: s,
            candidate_codes: vec![(400, 31)],
            ..Live::default()
        },
    );
    let Verdict::Fail { reason } = &j.verdict else {
        panic!("{:?}", j.verdict)
    };
    assert!(
        reason.starts_with("candidate 400 on 31 of 620 requests, stable 0 of 5,800"),
        "{reason}"
    );
    assert_eq!(j.numbers["error_comparison"]["candidate_codes"]["400"], 31);
    // The same 4xx share on stable (callers' bad requests): no failure.
    let s = Window {
        requests: 5800,
        client_errors: 290,
        ..Window::default()
    };
    let j = judge_live(
        &a,
        &Live {
            candidate: c,
            stable: s,
            ..Live::default()
        },
    );
    assert_eq!(j.verdict, Verdict::Pass);
    // 4xx do not count against the absolute limit on the candidate's own errors.
    assert_eq!(judge(&a, &c, &[], 0.001), Verdict::Pass);
}
