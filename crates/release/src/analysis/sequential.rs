//! Anytime-valid statistics: confidence sequences that hold at every look at once.
//!
//! A judge that looks at a growing window every interval and fails the release the
//! first time a fixed-level test rejects fails good candidates far more often than
//! that level: every look is one more chance to be unlucky. A *confidence sequence*
//! is a sequence of intervals that, with probability at least `1 - α`, holds the true
//! value at every sample size at once (Ville's inequality on a nonnegative
//! martingale; Howard, Ramdas, McAuliffe and Sekhon, "Time-uniform, nonparametric,
//! nonasymptotic confidence sequences", Annals of Statistics 2021). A judge that
//! fails only when such a sequence excludes every acceptable value may look after
//! every request and still fails a good candidate with probability at most `α`.
//!
//! - Rates (errors, agreement, accuracy, a class's share, the share of requests
//!   slower than a limit): the beta-binomial mixture martingale with the
//!   Krichevsky–Trofimov prior Beta(1/2, 1/2) (Robbins 1970):
//!   `M_n(p) = B(x + ½, n - x + ½) / B(½, ½) / (p^x (1 - p)^(n - x))` has mean 1 under
//!   the rate `p`, and `{p : M_n(p) < 1/α}` is an interval ([`rate`]).
//! - Medians: the true median `m` is a fixed point with `P(X < m) ≤ ½ ≤ P(X ≤ m)`, so
//!   the rate sequence at `p = ½` of "a sample is below `m`" bounds `m` between
//!   order statistics ([`median`]); ties (bucketed latencies) keep it valid.
//! - Means (a regressor's differences from stable): the normal-mixture boundary
//!   with the running empirical variance plugged in ([`mean`]): exact for Gaussian
//!   differences of known variance, a close approximation for others.
//!
//! # Caveats
//! The rows of one request are counted as independent samples; they are the same
//! caller's rows, so a judge on rows is a little less conservative than on requests.

use crate::stats::ln_gamma;

/// An interval of plausible values of a parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

/// `ln B(a, b)`.
fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// `x ln y`, with `0 ln 0 = 0`.
fn xlny(x: f64, y: f64) -> f64 {
    if x == 0.0 { 0.0 } else { x * y.ln() }
}

/// `ln M_n(p)`: the log evidence against "the rate is `p`" after `x` successes in `n`
/// trials (the beta-binomial mixture martingale above). Ville: the chance that it
/// ever reaches `ln(1/α)` while the rate is `p` is at most `α`.
pub fn rate_evidence(x: u64, n: u64, p: f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let (x, n) = (x.min(n) as f64, n as f64);
    let mixture = ln_beta(x + 0.5, n - x + 0.5) - ln_beta(0.5, 0.5);
    let p = p.clamp(0.0, 1.0);
    mixture - xlny(x, p) - xlny(n - x, 1.0 - p)
}

/// Whether `x` successes in `n` show, at level `alpha` and at any look, that the rate
/// is above `p`: the observed rate is above it and the evidence against `p` (so
/// against every rate below it too: the evidence is convex in the rate) reached
/// `ln(1/alpha)`. One evaluation: cheap enough to check every interval.
pub fn rate_above(x: u64, n: u64, p: f64, alpha: f64) -> bool {
    n > 0 && x.min(n) as f64 > p * n as f64 && rate_evidence(x, n, p) >= threshold(alpha)
}

/// Whether `x` successes in `n` show, at level `alpha`, that the rate is below `p`.
pub fn rate_below(x: u64, n: u64, p: f64, alpha: f64) -> bool {
    n > 0 && (x.min(n) as f64) < p * n as f64 && rate_evidence(x, n, p) >= threshold(alpha)
}

/// The confidence sequence's interval for a rate after `x` successes in `n` trials
/// (`[0, 1]` with no trial).
pub fn rate(x: u64, n: u64, alpha: f64) -> Interval {
    if n == 0 {
        return Interval { lo: 0.0, hi: 1.0 };
    }
    let c = threshold(alpha);
    let hat = x.min(n) as f64 / n as f64;
    let e = |p: f64| rate_evidence(x, n, p);
    // The evidence is convex in p with its minimum (≤ 0) near the observed rate.
    let lo = if e(0.0) < c {
        0.0
    } else {
        bisect(0.0, hat, |p| e(p) >= c)
    };
    let hi = if e(1.0) < c {
        1.0
    } else {
        bisect(hat, 1.0, |p| e(p) < c)
    };
    Interval { lo, hi }
}

/// The boundary between `a` (where `left` holds) and `b` (where it does not).
fn bisect(mut a: f64, mut b: f64, left: impl Fn(f64) -> bool) -> f64 {
    for _ in 0..48 {
        let m = 0.5 * (a + b);
        if left(m) {
            a = m;
        } else {
            b = m;
        }
    }
    0.5 * (a + b)
}

/// `ln(1/alpha)`: the evidence a judge needs.
pub fn threshold(alpha: f64) -> f64 {
    (1.0 / alpha.clamp(f64::MIN_POSITIVE, 1.0)).ln()
}

/// The fewest successes of `n` that show a rate above `p` at level `alpha` (`None`:
/// not even `n` of `n` would).
pub fn successes_to_show_above(n: u64, p: f64, alpha: f64) -> Option<u64> {
    if !rate_above(n, n, p, alpha) {
        return None;
    }
    let (mut lo, mut hi) = (0u64, n);
    while lo < hi {
        let m = lo + (hi - lo) / 2;
        if rate_above(m, n, p, alpha) {
            hi = m;
        } else {
            lo = m + 1;
        }
    }
    Some(lo)
}

/// Bounds on the median of `sorted` (ascending, no NaN) that hold at every sample
/// size at once with probability `1 - alpha`: infinite when the samples are too few.
pub fn median(sorted: &[f64], alpha: f64) -> Interval {
    let n = sorted.len() as u64;
    let unbounded = Interval {
        lo: f64::NEG_INFINITY,
        hi: f64::INFINITY,
    };
    // Fewest samples on one side of a point that show it is not the median.
    let Some(k) = successes_to_show_above(n, 0.5, alpha) else {
        return unbounded;
    };
    let k = k as usize;
    // At least k samples below every v above sorted[k-1] ⇒ the median is below each
    // such v: at most sorted[k-1]. Likewise it is at least sorted[n-k].
    Interval {
        lo: sorted[sorted.len() - k],
        hi: sorted[k - 1],
    }
}

/// Running sums of a sample, for [`mean`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sums {
    pub n: u64,
    pub sum: f64,
    pub sum_squares: f64,
}

impl Sums {
    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }

    /// The sample variance (0 with fewer than two samples).
    pub fn variance(&self) -> f64 {
        if self.n < 2 {
            return 0.0;
        }
        let n = self.n as f64;
        ((self.sum_squares - self.sum * self.sum / n) / (n - 1.0)).max(0.0)
    }
}

/// A confidence sequence for the mean of a sample with running sums `s`: the
/// two-sided normal-mixture boundary (Robbins; Howard et al. 2021, eq. (14)) with
/// the sample variance as the variance, and the mixture tuned to be tightest near
/// `n = 100`: `|S_n - nμ| ≤ sqrt((nσ² + ρ) ln((nσ² + ρ) / (ρ α²)))` with
/// `ρ = 100 σ²`. Unbounded with fewer than 10 samples (no usable variance).
pub fn mean(s: &Sums, alpha: f64) -> Interval {
    let Some(m) = s.mean() else {
        return Interval {
            lo: f64::NEG_INFINITY,
            hi: f64::INFINITY,
        };
    };
    if s.n < 10 {
        return Interval {
            lo: f64::NEG_INFINITY,
            hi: f64::INFINITY,
        };
    }
    let n = s.n as f64;
    // A floor on the variance: identical answers would otherwise give a zero-width
    // interval around any constant difference.
    let var = s.variance().max(1e-12 * (1.0 + m * m));
    let v = n * var;
    let rho = 100.0 * var;
    let a = alpha.clamp(f64::MIN_POSITIVE, 1.0);
    let radius = ((v + rho) * ((v + rho) / (rho * a * a)).ln()).sqrt() / n;
    Interval {
        lo: m - radius,
        hi: m + radius,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rate_intervals_hold_the_observed_rate_and_narrow() {
        let a = rate(5, 100, 0.01);
        assert!(a.lo < 0.05 && 0.05 < a.hi, "{a:?}");
        let b = rate(50, 1000, 0.01);
        assert!(b.lo > a.lo && b.hi < a.hi, "{a:?} {b:?}");
        assert_eq!(rate(0, 0, 0.01), Interval { lo: 0.0, hi: 1.0 });
        assert_eq!(rate(0, 100, 0.01).lo, 0.0);
        assert_eq!(rate(100, 100, 0.01).hi, 1.0);
    }

    #[test]
    fn a_few_errors_against_none_are_shown_only_with_enough_requests() {
        // 31 of 620 (5%) is well above half a percent.
        assert!(rate_above(31, 620, 0.005, 0.001));
        // 1 of 20 is not.
        assert!(!rate_above(1, 20, 0.005, 0.01));
        assert!(!rate_above(0, 1000, 0.0, 0.01));
        assert!(rate_below(900, 1000, 0.95, 0.01));
    }

    #[test]
    fn medians_are_bounded_around_the_sample_median() {
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        let m = median(&v, 0.01);
        assert!(m.lo < 500.0 && 500.0 < m.hi, "{m:?}");
        assert!(m.lo > 400.0 && m.hi < 600.0, "{m:?}");
        let few = median(&[1.0, 2.0, 3.0], 0.01);
        assert!(few.lo.is_infinite() && few.hi.is_infinite());
        // Ties: all equal.
        let same = median(&[2.0; 500], 0.01);
        assert!(same.lo <= 2.0 && 2.0 <= same.hi, "{same:?}");
    }

    #[test]
    fn mean_intervals_narrow_with_samples() {
        let sums = |n: u64, mean: f64, sd: f64| Sums {
            n,
            sum: n as f64 * mean,
            sum_squares: (n as f64 - 1.0) * sd * sd + n as f64 * mean * mean,
        };
        let a = mean(&sums(100, 3.0, 1.0), 0.01);
        assert!(a.lo < 3.0 && a.hi > 3.0);
        let b = mean(&sums(10_000, 3.0, 1.0), 0.01);
        assert!(b.hi - b.lo < a.hi - a.lo);
        assert!(b.lo > 2.9 && b.hi < 3.1, "{b:?}");
        assert!(mean(&sums(5, 3.0, 1.0), 0.01).lo.is_infinite());
    }

    proptest! {
        #[test]
        fn the_rate_interval_holds_the_observed_rate(x in 0u64..2000, extra in 0u64..2000, alpha in 0.0001f64..0.5) {
            let n = x + extra;
            let i = rate(x, n, alpha);
            prop_assert!(0.0 <= i.lo && i.lo <= i.hi && i.hi <= 1.0);
            if n > 0 {
                let hat = x as f64 / n as f64;
                prop_assert!(i.lo <= hat + 1e-9 && hat <= i.hi + 1e-9);
                // The one-sided checks agree with the interval.
                if i.lo > 0.0 {
                    prop_assert!(rate_above(x, n, i.lo * 0.999, alpha));
                }
                prop_assert!(!rate_above(x, n, (i.lo * 1.001 + 1e-9).min(hat), alpha) || i.lo * 1.001 + 1e-9 > hat);
            }
        }

        #[test]
        fn a_tighter_level_gives_a_wider_interval(x in 0u64..500, extra in 1u64..500) {
            let n = x + extra;
            let (a, b) = (rate(x, n, 0.05), rate(x, n, 0.001));
            prop_assert!(b.lo <= a.lo + 1e-12 && a.hi <= b.hi + 1e-12);
        }

        #[test]
        fn the_median_interval_holds_the_sample_median(mut v in proptest::collection::vec(0.0f64..100.0, 1..400)) {
            v.sort_by(f64::total_cmp);
            let m = median(&v, 0.01);
            let mid = v[v.len() / 2];
            prop_assert!(m.lo <= mid && mid <= m.hi);
        }
    }
}
