//! Small, dependency-free statistics for judging a candidate against stable: the
//! Mann-Whitney U test (is one sample's distribution shifted above the other's?),
//! Fisher's exact test (does one variant fail a larger share of its requests?) and
//! the population stability index (how far has a binned distribution moved?).
//!
//! Every function here is pure and total: empty, degenerate or odd inputs give a
//! documented answer rather than a panic or a NaN.

/// The result of a Mann-Whitney U test of sample `a` against sample `b`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U of sample `a`: the number of pairs `(x in a, y in b)` with `x > y`, ties
    /// counting one half. Always in `[0, n_a * n_b]`; `n_a * n_b / 2` means no shift.
    pub u: f64,
    /// `(u - n_a * n_b / 2) / sigma`, with the tie-corrected sigma and without the
    /// continuity correction: positive when `a` tends to be larger. 0 when the test
    /// cannot be made (an empty sample, or every value equal).
    pub z: f64,
    /// P-value for H1: the distributions of `a` and `b` differ (in location).
    pub p_two_sided: f64,
    /// P-value for H1: `a` tends to be larger than `b`.
    pub p_greater: f64,
    /// Values of `a` used (NaNs are left out).
    pub n_a: usize,
    /// Values of `b` used (NaNs are left out).
    pub n_b: usize,
}

/// The Mann-Whitney U test (Wilcoxon rank-sum test) of `a` against `b`, with the
/// normal approximation, the tie correction and the continuity correction.
///
/// NaN values are left out; infinities rank like any other value. With an empty
/// sample, or when every value of both samples is equal, there is no evidence of any
/// difference: `z` is 0 and both p-values are 1.
///
/// The normal approximation is good from about 8 values per sample; with fewer the
/// p-values are rough (the exact distribution is not computed).
pub fn mann_whitney_u(a: &[f64], b: &[f64]) -> MannWhitney {
    let a: Vec<f64> = a.iter().copied().filter(|x| !x.is_nan()).collect();
    let b: Vec<f64> = b.iter().copied().filter(|x| !x.is_nan()).collect();
    let (n_a, n_b) = (a.len(), b.len());
    let none = MannWhitney {
        u: 0.0,
        z: 0.0,
        p_two_sided: 1.0,
        p_greater: 1.0,
        n_a,
        n_b,
    };
    if n_a == 0 || n_b == 0 {
        return none;
    }

    // Rank the pooled sample, giving tied values the mean of the ranks they span
    // (midranks), and collect the tie term sum(t^3 - t) over groups of t ties.
    let mut pooled: Vec<(f64, bool)> = a
        .iter()
        .map(|&x| (x, true))
        .chain(b.iter().map(|&y| (y, false)))
        .collect();
    pooled.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = pooled.len();
    let mut rank_sum_a = 0.0;
    let mut ties = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        // `==` rather than total_cmp so that -0.0 and 0.0 tie.
        while j < n && pooled[j].0 == pooled[i].0 {
            j += 1;
        }
        let t = (j - i) as f64;
        // Ranks i+1 ..= j (1-based); their mean.
        let midrank = (i + 1 + j) as f64 / 2.0;
        let in_a = pooled[i..j].iter().filter(|p| p.1).count() as f64;
        rank_sum_a += midrank * in_a;
        ties += t * t * t - t;
        i = j;
    }

    // The standard large-sample formulas (e.g. Lehmann, "Nonparametrics", 1975, §1.4
    // and §1.6; Sheskin, "Handbook of Parametric and Nonparametric Statistical
    // Procedures", Test 12; the same as SciPy's `mannwhitneyu(method="asymptotic")`):
    //   U_a     = R_a - n_a (n_a + 1) / 2
    //   mu_U    = n_a n_b / 2
    //   sigma_U = sqrt( n_a n_b / 12 * ( (n + 1) - sum(t^3 - t) / (n (n - 1)) ) )
    //   z       = (U_a - mu_U -/+ 1/2) / sigma_U     (1/2: continuity correction)
    let (na, nb, nf) = (n_a as f64, n_b as f64, n as f64);
    let u = (rank_sum_a - na * (na + 1.0) / 2.0).clamp(0.0, na * nb);
    let mu = na * nb / 2.0;
    let variance = na * nb / 12.0 * ((nf + 1.0) - ties / (nf * (nf - 1.0)));
    if variance.is_nan() || variance <= 0.0 {
        // Every value equal (n = 1 cannot happen: both samples are non-empty).
        return MannWhitney { u, ..none };
    }
    let sigma = variance.sqrt();
    let z = (u - mu) / sigma;
    // One-sided, H1 "a larger": large U is evidence; correct towards the mean.
    let p_greater = normal_sf((u - mu - 0.5) / sigma);
    // Two-sided: the larger deviation from the mean, corrected towards it.
    let p_two_sided = 2.0 * normal_sf(((u - mu).abs() - 0.5).max(0.0) / sigma);
    MannWhitney {
        u,
        z,
        p_two_sided: p_two_sided.clamp(0.0, 1.0),
        p_greater: p_greater.clamp(0.0, 1.0),
        n_a,
        n_b,
    }
}

/// The complementary error function, `erfc(x) = 1 - erf(x)`, to a fractional error
/// below 1.2e-7 everywhere: the Chebyshev fit `erfcc` of Press et al., "Numerical
/// Recipes in C", 2nd ed., §6.2.
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let ans = t * (-z * z + poly).exp();
    if x >= 0.0 { ans } else { 2.0 - ans }
}

/// The standard normal cumulative distribution function, `P(Z <= x)`.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// The standard normal survival function, `P(Z > x) = 1 - normal_cdf(x)`, computed
/// without cancellation in the upper tail.
pub fn normal_sf(x: f64) -> f64 {
    0.5 * erfc(x / std::f64::consts::SQRT_2)
}

/// `ln Γ(x)` for `x > 0`, by the Lanczos approximation (g = 7, 9 coefficients, as in
/// Press et al., "Numerical Recipes", 3rd ed., §6.1, and Python's `math.lgamma`
/// before 3.x's libm): a relative error near 1e-15 over the range the tests use.
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 - x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).abs().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + G + 0.5;
    let sum = C[1..]
        .iter()
        .enumerate()
        .fold(C[0], |acc, (i, c)| acc + c / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// `ln C(n, k)`, the log of the binomial coefficient (`-inf` when `k > n`).
fn ln_choose(n: u64, k: u64) -> f64 {
    if k > n {
        return f64::NEG_INFINITY;
    }
    ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0)
}

/// Fisher's exact test, one-sided: the p-value for H1 "variant `a` fails a larger
/// share of its requests than variant `b`", given `a_fail` failures in `a_n`
/// requests and `b_fail` in `b_n`.
///
/// With the margins fixed, `a`'s failures follow the hypergeometric distribution
/// (population `a_n + b_n`, `a_fail + b_fail` failures in it, `a_n` drawn); the
/// p-value is `P(X >= a_fail)`. It is exact for any counts, which matters here: the
/// usual case is a handful of errors against none, where the normal approximation of
/// the two-proportion z-test is poor.
///
/// Failures above their request count are taken as that count. No request on either
/// side, or no failure at all, is no evidence: the p-value is 1.
pub fn fisher_exact_greater(a_fail: u64, a_n: u64, b_fail: u64, b_n: u64) -> f64 {
    let (a_fail, b_fail) = (a_fail.min(a_n), b_fail.min(b_n));
    let failures = a_fail + b_fail;
    if a_n == 0 || b_n == 0 || failures == 0 {
        return 1.0;
    }
    let total = a_n + b_n;
    let ln_all = ln_choose(total, a_n);
    let ln_term = |x: u64| ln_choose(failures, x) + ln_choose(total - failures, a_n - x) - ln_all;
    // X runs from `lo` to `hi` (a_n - x must not exceed the successes).
    let lo = a_n.saturating_sub(total - failures);
    let hi = failures.min(a_n);
    if a_fail <= lo {
        return 1.0;
    }
    // Sum the smaller tail, from the observed value outwards: past the mode the terms
    // fall geometrically, so stop once they no longer count. Below the mean, the
    // upper tail is 1 minus the lower one (accurate where p is near 1).
    let tail = |from: u64, to: u64, up: bool| {
        let (mut sum, mut largest) = (0.0, f64::NEG_INFINITY);
        let mut x = from;
        loop {
            let t = ln_term(x);
            largest = largest.max(t);
            sum += t.exp();
            if t < largest - 40.0 || x == to {
                break;
            }
            x = if up { x + 1 } else { x - 1 };
        }
        sum
    };
    let mean = a_n as f64 * failures as f64 / total as f64;
    let p = if a_fail as f64 > mean {
        tail(a_fail.min(hi), hi, true)
    } else {
        1.0 - tail(a_fail - 1, lo, false)
    };
    p.clamp(0.0, 1.0)
}

/// The proportion every bin is raised to, at least, before the PSI is computed: an
/// empty bin would otherwise make `ln(0)` infinite. 1e-4 is the usual choice; it
/// bounds one bin's contribution to about `1 * ln(1 / 1e-4) ≈ 9.2`.
pub const PSI_EPSILON: f64 = 1e-4;

/// The population stability index of `actual` against `expected`, two histograms
/// over the same bins (bin `i` of one is bin `i` of the other):
///
/// ```text
/// PSI = sum_i (a_i - e_i) * ln(a_i / e_i)
/// ```
///
/// where `e_i` and `a_i` are the proportions of bin `i`. Counts and proportions are
/// both accepted: each side is divided by its own total. Proportions below
/// [`PSI_EPSILON`] (empty bins) are raised to it. Negative and non-finite values
/// count as 0; a side shorter than the other has empty bins at the end; a side whose
/// total is 0 has every bin at [`PSI_EPSILON`].
///
/// The formula is symmetric, and is computed as `|a_i - e_i| * |ln a_i - ln e_i|`, so
/// `psi(x, y) == psi(y, x)` exactly, every term is `>= 0`, and `psi(x, x) == 0.0`.
/// The usual reading: below 0.1 no real change, 0.1 to 0.25 a moderate shift, above
/// 0.25 a significant one.
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    let e = proportions(expected);
    let a = proportions(actual);
    let bins = e.len().max(a.len());
    let at = |p: &[f64], i: usize| p.get(i).copied().unwrap_or(0.0).max(PSI_EPSILON);
    (0..bins)
        .map(|i| {
            let (e, a) = (at(&e, i), at(&a, i));
            (a - e).abs() * (a.ln() - e.ln()).abs()
        })
        .sum()
}

/// [`psi`] over counts per bin, e.g. how many predictions each class received.
pub fn psi_from_counts(expected: &[u64], actual: &[u64]) -> f64 {
    let f = |c: &[u64]| c.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    psi(&f(expected), &f(actual))
}

/// Each value over the total, negative and non-finite values counting as 0; all zeros
/// when the total is 0.
pub(crate) fn proportions(values: &[f64]) -> Vec<f64> {
    let clean: Vec<f64> = values
        .iter()
        .map(|&v| if v.is_finite() && v > 0.0 { v } else { 0.0 })
        .collect();
    let total: f64 = clean.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return vec![0.0; clean.len()];
    }
    clean.iter().map(|v| v / total).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(x: f64, y: f64, tol: f64) -> bool {
        (x - y).abs() <= tol
    }

    #[test]
    fn erfc_and_normal_cdf_match_reference_values() {
        // Reference values from Python's math.erfc (correctly rounded libm).
        for (x, want) in [
            (0.0, 1.0),
            (0.5, 0.4795001221869535),
            (1.0, 0.15729920705028513),
            (2.0, 0.004677734981047265),
            (3.0, 2.2090496998585438e-05),
            (-1.0, 1.842700792949715),
            (-3.0, 1.9999779095030015),
        ] {
            let got = erfc(x);
            assert!(
                close(got, want, 1.2e-7 * want.abs().max(1e-300)),
                "erfc({x}) = {got}, want {want}"
            );
        }
        assert!(close(normal_cdf(1.959_963_985), 0.975, 1e-7));
        assert!(close(normal_cdf(-1.644_853_627), 0.05, 1e-8));
        assert!(close(normal_cdf(0.0), 0.5, 1e-7));
        assert!(close(normal_sf(0.0), 0.5, 1e-7));
        assert_eq!(normal_cdf(f64::INFINITY), 1.0);
        assert_eq!(normal_cdf(f64::NEG_INFINITY), 0.0);
        assert!(erfc(f64::NAN).is_nan());
    }

    #[test]
    fn mann_whitney_small_example() {
        // U = 0, mu = 4.5, sigma = sqrt(5.25); the formulas above evaluated with
        // Python's math.erfc: two-sided p = 0.0808556 (what SciPy's
        // mannwhitneyu(method="asymptotic") reports), p_greater = 0.9854518.
        let r = mann_whitney_u(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]);
        assert_eq!(r.u, 0.0);
        assert_eq!((r.n_a, r.n_b), (3, 3));
        assert!(close(r.p_two_sided, 0.080_855_6, 1e-6), "{}", r.p_two_sided);
        assert!(close(r.p_greater, 0.985_451_8, 1e-6), "{}", r.p_greater);
        assert!(r.z < 0.0);
        let r = mann_whitney_u(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0]);
        assert_eq!(r.u, 9.0);
        assert!(close(r.p_greater, 0.040_427_8, 1e-6), "{}", r.p_greater);
    }

    #[test]
    fn mann_whitney_with_ties() {
        // Pooled [1,2,2,3,3,3,4]: ties of 2 and 3. a = [2,3,4], b = [1,2,3,3].
        // Midranks: 1 -> 1, 2 -> 2.5, 3 -> 5, 4 -> 7. R_a = 2.5 + 5 + 7 = 14.5,
        // U_a = 14.5 - 6 = 8.5; sum(t^3 - t) = 6 + 24 = 30;
        // var = 12/12 * (8 - 30/42) = 7.285714...
        let r = mann_whitney_u(&[2.0, 3.0, 4.0], &[1.0, 2.0, 3.0, 3.0]);
        assert_eq!(r.u, 8.5);
        let sigma = (8.0f64 - 30.0 / 42.0).sqrt();
        assert!(close(r.z, (8.5 - 6.0) / sigma, 1e-12));
        assert!(close(r.p_greater, normal_sf(2.0 / sigma), 1e-12));
        assert!(close(r.p_two_sided, 2.0 * normal_sf(2.0 / sigma), 1e-12));
    }

    #[test]
    fn mann_whitney_degenerate_inputs() {
        let r = mann_whitney_u(&[], &[1.0, 2.0]);
        assert_eq!((r.p_two_sided, r.p_greater, r.z), (1.0, 1.0, 0.0));
        assert_eq!((r.n_a, r.n_b), (0, 2));
        let r = mann_whitney_u(&[1.0], &[]);
        assert_eq!((r.p_two_sided, r.p_greater), (1.0, 1.0));
        let r = mann_whitney_u(&[5.0; 10], &[5.0; 7]);
        assert_eq!((r.p_two_sided, r.p_greater, r.z), (1.0, 1.0, 0.0));
        assert_eq!(r.u, 35.0);
        let r = mann_whitney_u(&[f64::NAN, 2.0], &[1.0, f64::NAN]);
        assert_eq!((r.n_a, r.n_b, r.u), (1, 1, 1.0));
        // -0.0 and 0.0 tie.
        let r = mann_whitney_u(&[-0.0], &[0.0]);
        assert_eq!(r.u, 0.5);
    }

    #[test]
    fn mann_whitney_detects_a_shift() {
        let b: Vec<f64> = (0..50).map(|i| 10.0 + (i % 10) as f64).collect();
        let a: Vec<f64> = b.iter().map(|x| x * 3.0).collect();
        let r = mann_whitney_u(&a, &b);
        assert!(r.p_greater < 1e-6, "{r:?}");
        assert!(r.p_two_sided < 1e-6, "{r:?}");
        let r = mann_whitney_u(&b, &a);
        assert!(r.p_greater > 0.999_999, "{r:?}");
    }

    #[test]
    fn ln_gamma_matches_factorials() {
        let mut f = 1.0f64;
        for n in 1..30u32 {
            f *= n as f64;
            let got = ln_gamma(n as f64 + 1.0);
            assert!(
                close(got, f.ln(), 1e-12 * f.ln().max(1.0)),
                "ln {n}! = {got}"
            );
        }
        // Γ(1/2) = √π.
        assert!(close(
            ln_gamma(0.5),
            std::f64::consts::PI.sqrt().ln(),
            1e-13
        ));
        assert!(close(ln_gamma(1.0), 0.0, 1e-14));
    }

    #[test]
    fn fisher_exact_reference_values() {
        // The hypergeometric tail computed exactly with Python's math.comb (what
        // scipy.stats.fisher_exact(..., alternative="greater") reports).
        // 3 of 10 against 0 of 10: C(10,3)/C(20,3) = 120/1140.
        assert!(close(
            fisher_exact_greater(3, 10, 0, 10),
            120.0 / 1140.0,
            1e-12
        ));
        // 1 of 2 against 0 of 2: C(1,1) C(3,1) / C(4,2) = 3/6.
        assert!(close(fisher_exact_greater(1, 2, 0, 2), 0.5, 1e-12));
        // The lady tasting tea: 3 of 4 against 1 of 4 gives 17/70.
        assert!(close(fisher_exact_greater(3, 4, 1, 4), 17.0 / 70.0, 1e-12));
        // 8 errors in 1000 against 1 in 1000.
        let p = fisher_exact_greater(8, 1000, 1, 1000);
        assert!(close(p, 0.019_320_577_475_911_22, 1e-10), "{p}");
        // Fewer failures than the other side: no evidence.
        assert!(fisher_exact_greater(0, 1000, 9, 1000) > 0.99);
        assert_eq!(fisher_exact_greater(0, 10, 0, 10), 1.0);
        assert_eq!(fisher_exact_greater(5, 0, 0, 10), 1.0);
        assert_eq!(fisher_exact_greater(5, 10, 0, 0), 1.0);
        // Failures above the request count are clamped; everything failing is no
        // difference.
        assert!(fisher_exact_greater(50, 10, 10, 10) > 0.99);
        // Large counts stay finite and tiny.
        let p = fisher_exact_greater(5_000, 1_000_000, 100, 1_000_000);
        assert!(p.is_finite() && p < 1e-100, "{p}");
    }

    #[test]
    fn psi_values() {
        // (0.5-0.25)ln(0.5/0.25) + (0.5-0.75)ln(0.5/0.75)
        let want = 0.25 * 2f64.ln() + 0.25 * (1.5f64).ln();
        assert!(close(psi(&[0.25, 0.75], &[0.5, 0.5]), want, 1e-12));
        assert!(close(psi_from_counts(&[25, 75], &[50, 50]), want, 1e-12));
        // Counts and proportions are the same thing.
        assert!(close(psi(&[1.0, 3.0], &[2.0, 2.0]), want, 1e-12));
        assert_eq!(psi(&[0.2, 0.3, 0.5], &[0.2, 0.3, 0.5]), 0.0);
        assert_eq!(psi_from_counts(&[10, 20], &[20, 40]), 0.0);
        // An empty bin counts as PSI_EPSILON, not as infinity.
        let empty = psi_from_counts(&[50, 50, 0], &[50, 40, 10]);
        assert!(empty.is_finite() && empty > 0.25, "{empty}");
        // Missing trailing bins are empty bins.
        assert_eq!(
            psi_from_counts(&[5, 5], &[5, 5, 0]),
            psi_from_counts(&[5, 5, 0], &[5, 5, 0])
        );
        assert_eq!(psi(&[], &[]), 0.0);
        assert_eq!(psi(&[0.0, 0.0], &[0.0, 0.0]), 0.0);
        assert_eq!(psi(&[f64::NAN, 1.0], &[-3.0, 2.0]), 0.0);
    }
}
