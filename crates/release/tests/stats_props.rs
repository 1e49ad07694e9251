//! Property tests of the statistics behind the comparison judges: the population
//! stability index, the Mann-Whitney U test and Fisher's exact test.

use hoist_release::analysis::{
    Comparison, Drift, ErrorComparison, Window, compare_errors, compare_latency, drift,
};
use hoist_release::stats::{
    PSI_EPSILON, fisher_exact_greater, mann_whitney_u, psi, psi_from_counts,
};
use proptest::prelude::*;

/// Latency-like values: often small integers (so that ties are common), otherwise
/// any float in a range where adding a shift cannot overflow.
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![(0u8..12).prop_map(f64::from), -1e6f64..1e6]
}

fn sample(max: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(value(), 0..max)
}

/// Histograms: counts per bin, empty bins included.
fn counts() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(prop_oneof![Just(0u64), 0u64..1_000_000], 1..12)
}

/// Bin weights as floats (counts or proportions).
fn weights() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(prop_oneof![Just(0.0), 0.0f64..1e6], 0..12)
}

/// U by its definition: pairs with a > b, ties counting one half.
fn u_by_pairs(a: &[f64], b: &[f64]) -> f64 {
    let mut u = 0.0;
    for x in a {
        for y in b {
            if x > y {
                u += 1.0;
            } else if x == y {
                u += 0.5;
            }
        }
    }
    u
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn psi_of_identical_distributions_is_zero(c in counts(), w in weights(), k in 1u64..1000) {
        prop_assert_eq!(psi_from_counts(&c, &c), 0.0);
        prop_assert_eq!(psi(&w, &w), 0.0);
        // The same distribution given as counts at another scale, or as proportions.
        let scaled: Vec<u64> = c.iter().map(|x| x * k).collect();
        prop_assert!(psi_from_counts(&c, &scaled).abs() <= 1e-9);
        let total: f64 = w.iter().sum();
        if total > 0.0 {
            let shares: Vec<f64> = w.iter().map(|x| x / total).collect();
            prop_assert!(psi(&w, &shares).abs() <= 1e-9);
        }
    }

    #[test]
    fn psi_is_non_negative_finite_and_exactly_symmetric(a in counts(), b in counts(), x in weights(), y in weights()) {
        for (ab, ba) in [
            (psi_from_counts(&a, &b), psi_from_counts(&b, &a)),
            (psi(&x, &y), psi(&y, &x)),
        ] {
            prop_assert!(ab >= 0.0 && ab.is_finite(), "{}", ab);
            // The symmetric formula sum |a - e| * |ln a - ln e| is computed, so
            // swapping the sides gives bit for bit the same number.
            prop_assert_eq!(ab.to_bits(), ba.to_bits());
            // Each bin contributes at most 1 * ln(1 / PSI_EPSILON) per side.
            let bins = a.len().max(b.len()).max(x.len()).max(y.len()) as f64;
            prop_assert!(ab <= bins * (1.0 - PSI_EPSILON) * (1.0 / PSI_EPSILON).ln() + 1e-9);
        }
    }

    #[test]
    fn mann_whitney_on_identical_samples_never_fails_at_95(a in sample(80)) {
        let r = mann_whitney_u(&a, &a);
        prop_assert!(r.p_greater >= 0.05, "{:?}", r);
        prop_assert!(r.p_two_sided >= 0.05, "{:?}", r);
        // In fact U sits exactly on its mean.
        prop_assert_eq!(r.u, (a.len() * a.len()) as f64 / 2.0);
        prop_assert!(r.p_greater > 0.5 || a.is_empty() || r.p_greater == 1.0);
        let judged = compare_latency(&a, &a, 0.05, 0.0, 0);
        let never_fails = !matches!(judged, Comparison::Fail { .. });
        prop_assert!(never_fails, "{:?}", judged);
    }

    #[test]
    fn mann_whitney_bounds_and_definition(a in sample(60), b in sample(60)) {
        let r = mann_whitney_u(&a, &b);
        let (na, nb) = (a.len(), b.len());
        prop_assert_eq!((r.n_a, r.n_b), (na, nb));
        prop_assert!(r.u >= 0.0 && r.u <= (na * nb) as f64, "{:?}", r);
        prop_assert!((0.0..=1.0).contains(&r.p_two_sided), "{:?}", r);
        prop_assert!((0.0..=1.0).contains(&r.p_greater), "{:?}", r);
        prop_assert!(r.z.is_finite());
        if na > 0 && nb > 0 {
            prop_assert_eq!(r.u, u_by_pairs(&a, &b));
        }
        // U of a plus U of b is every pair; the two-sided p does not care which is a.
        let s = mann_whitney_u(&b, &a);
        prop_assert_eq!(r.u + s.u, if na > 0 && nb > 0 { (na * nb) as f64 } else { 0.0 });
        prop_assert_eq!(r.p_two_sided, s.p_two_sided);
        prop_assert_eq!(r.z, -s.z);
    }

    #[test]
    fn shifting_a_up_never_decreases_u(a in sample(60), b in sample(60), c in prop_oneof![Just(0.0), 0.0f64..1e3]) {
        let shifted: Vec<f64> = a.iter().map(|x| x + c).collect();
        let before = mann_whitney_u(&a, &b);
        let after = mann_whitney_u(&shifted, &b);
        prop_assert!(after.u >= before.u, "{:?} then {:?}", before, after);
    }

    #[test]
    fn drift_of_identical_counts_passes(c in counts(), k in 1u64..100) {
        let scaled: Vec<u64> = c.iter().map(|x| x * k).collect();
        let judged = drift(&c, &scaled, 1e-9, 1, 0.01);
        // Inconclusive only when there are no predictions at all.
        let expected = if c.iter().sum::<u64>() > 0 {
            matches!(judged, Drift::Pass { .. })
        } else {
            matches!(judged, Drift::Inconclusive { .. })
        };
        prop_assert!(expected, "{:?}", judged);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn fisher_is_a_probability_and_identical_rates_never_fail(
        fail in 0u64..500, extra in 0u64..5000, other_fail in 0u64..500, other_extra in 0u64..5000,
    ) {
        let (n, m) = (fail + extra, other_fail + other_extra);
        let p = fisher_exact_greater(fail, n, other_fail, m);
        prop_assert!((0.0..=1.0).contains(&p), "{}", p);
        // The same counts on both sides sit at the distribution's centre.
        prop_assert!(fisher_exact_greater(fail, n, fail, n) >= 0.5);
        let same = Window { requests: n, errors: fail, ..Window::default() };
        let judged = compare_errors(&same, &same, 0.05, 0.0, 0);
        let never_fails = !matches!(judged, ErrorComparison::Fail { .. });
        prop_assert!(never_fails, "{:?}", judged);
        // One more failure on `a` is never less evidence.
        if fail < n {
            // (Within rounding: the terms come from ln Γ of numbers up to 11 000.)
            prop_assert!(fisher_exact_greater(fail + 1, n, other_fail, m) <= p * (1.0 + 1e-9) + 1e-12);
        }
    }
}
