//! A regressor's values on live traffic: the candidate's answers against stable's
//! when the two variants answer different requests (a canary's split), so they are
//! compared as distributions: the difference of their means (bias) and the
//! population stability index over bins cut at stable's deciles.
//!
//! This is prediction drift for a regressor, and takes drift's share of `alpha`
//! ([`super::judge_alpha`]): half to the means (a confidence sequence per variant),
//! half to the bins ([`super::drift`]). With `drift_bins` configured, the servers
//! count values into those bins and drift judges the counts as classes instead:
//! this judge is then not run.

use serde_json::{Value, json};

use super::sequential::{self, Sums};
use super::{Drift, drift, fmt_p, judge_alpha};
use crate::config::Analysis;
use crate::machine::Verdict;

/// Bins stable's deciles give at most.
const BINS: usize = 10;

/// One variant's live values over a window: running sums over every row and the
/// latest rows themselves (for the bins).
#[derive(Debug, Clone, Copy, Default)]
pub struct ValuesSample<'a> {
    pub sums: Sums,
    pub recent: &'a [f64],
}

/// Edges between stable's deciles, ascending and distinct: a value `v` falls in bin
/// `i` when `i` edges are `<= v`. Empty when stable's values are all equal.
pub fn decile_edges(stable: &[f64]) -> Vec<f64> {
    let mut sorted: Vec<f64> = stable.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return Vec::new();
    }
    let mut edges: Vec<f64> = (1..BINS)
        .map(|k| sorted[(k * sorted.len() / BINS).min(sorted.len() - 1)])
        .collect();
    edges.dedup();
    // An edge at the minimum leaves its lower bin empty on stable's side.
    edges.retain(|&e| e > sorted[0]);
    edges
}

/// Counts of `values` in the bins `edges` cut.
pub fn bin_counts(values: &[f64], edges: &[f64]) -> Vec<u64> {
    let mut counts = vec![0u64; edges.len() + 1];
    for v in values.iter().filter(|v| v.is_finite()) {
        counts[edges.partition_point(|e| e <= v)] += 1;
    }
    counts
}

/// Judge a regressor's live values: the candidate fails when its mean is shown to
/// differ from stable's by more than `max_relative_bias` of stable's mean absolute
/// value, or when the PSI of its values over stable's deciles is shown above
/// `max_psi`. Fewer than `min_requests` rows a side is inconclusive; drift off, or
/// `drift_bins` set (the servers' bins are judged instead), is a pass with nothing
/// judged. Returns the verdict and its numbers.
pub fn judge_live_values(
    a: &Analysis,
    stable: &ValuesSample,
    candidate: &ValuesSample,
) -> (Verdict, Value) {
    if !a.drift {
        return (Verdict::Pass, json!({ "skipped": "drift is off" }));
    }
    if !a.drift_bins.is_empty() {
        // The servers count values into the configured bins: drift judges those
        // counts as classes, with this judge's share of alpha.
        return (
            Verdict::Pass,
            json!({ "skipped": "drift_bins are set: drift is judged on the servers' bins" }),
        );
    }
    let (ns, nc) = (stable.sums.n, candidate.sums.n);
    let needed = a.min_requests.max(1);
    let scale = {
        let r = stable.recent;
        (!r.is_empty()).then(|| r.iter().map(|v| v.abs()).sum::<f64>() / r.len() as f64)
    };
    let mut numbers = json!({
        "stable": { "rows": ns, "mean": stable.sums.mean(), "mean_abs": scale },
        "candidate": { "rows": nc, "mean": candidate.sums.mean() },
    });
    if nc < needed || ns < needed {
        return (
            Verdict::Inconclusive {
                reason: format!(
                    "values: {nc} candidate and {ns} stable rows, of the {needed} each needed"
                ),
            },
            numbers,
        );
    }
    let alpha = judge_alpha(a) / 2.0;
    // Bias: the difference of the means, from a confidence sequence of each.
    let (s, c) = (
        sequential::mean(&stable.sums, alpha / 2.0),
        sequential::mean(&candidate.sums, alpha / 2.0),
    );
    let (lo, hi) = (c.lo - s.hi, c.hi - s.lo);
    let diff = candidate.sums.mean().unwrap_or(0.0) - stable.sums.mean().unwrap_or(0.0);
    let scale = scale.unwrap_or(0.0);
    numbers["bias"] = json!({ "difference": diff, "lo": lo, "hi": hi,
        "relative": (scale > 0.0).then(|| diff / scale) });
    let limit = a.max_relative_bias * scale;
    if lo > limit || hi < -limit {
        return (
            Verdict::Fail {
                reason: format!(
                    "values: the candidate's mean {:.3} over {nc} rows differs from stable's \
                     {:.3} over {ns} rows by {diff:+.3} ({:+.1}% of stable's mean absolute \
                     value {scale:.3}), beyond \u{b1}{:.0}%: between {lo:+.3} and {hi:+.3} \
                     (confidence sequences of the means, \u{3b1} = {})",
                    candidate.sums.mean().unwrap_or(0.0),
                    stable.sums.mean().unwrap_or(0.0),
                    diff * 100.0 / scale.max(f64::MIN_POSITIVE),
                    a.max_relative_bias * 100.0,
                    fmt_p(alpha)
                ),
            },
            numbers,
        );
    }
    let edges = decile_edges(stable.recent);
    let (sc, cc) = (
        bin_counts(stable.recent, &edges),
        bin_counts(candidate.recent, &edges),
    );
    let d = drift(&sc, &cc, a.max_psi, needed, alpha);
    let psi = match &d {
        Drift::Pass { psi } | Drift::Fail { psi, .. } => Some(*psi),
        Drift::Inconclusive { .. } => None,
    };
    numbers["drift"] = json!({ "psi": psi, "edges": edges,
        "stable_bins": sc, "candidate_bins": cc });
    match d {
        Drift::Fail { reason, .. } => (
            Verdict::Fail {
                reason: format!(
                    "values: {} (bins cut at stable's deciles)",
                    reason.replace("predicted classes", "values")
                ),
            },
            numbers,
        ),
        // Too few recent values for the bins: the means above decided.
        Drift::Inconclusive { .. } | Drift::Pass { .. } => (Verdict::Pass, numbers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(values: &[f64]) -> (Sums, Vec<f64>) {
        let mut s = Sums::default();
        for v in values {
            s.n += 1;
            s.sum += v;
            s.sum_squares += v * v;
        }
        (s, values.to_vec())
    }

    /// A deterministic stream of roughly normal values (sum of uniforms).
    fn normal(seed: u64, n: usize, mean: f64, sd: f64) -> Vec<f64> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                let mut t = 0.0;
                for _ in 0..12 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    t += (x >> 11) as f64 / (1u64 << 53) as f64;
                }
                mean + sd * (t - 6.0)
            })
            .collect()
    }

    fn judge(a: &Analysis, s: &[f64], c: &[f64]) -> (Verdict, Value) {
        let ((ss, sr), (cs, cr)) = (sample(s), sample(c));
        judge_live_values(
            a,
            &ValuesSample {
                sums: ss,
                recent: &sr,
            },
            &ValuesSample {
                sums: cs,
                recent: &cr,
            },
        )
    }

    #[test]
    fn deciles_cut_ten_bins_of_stable() {
        let s: Vec<f64> = (0..1000).map(f64::from).collect();
        let e = decile_edges(&s);
        assert_eq!(e.len(), 9);
        assert_eq!(bin_counts(&s, &e), vec![100; 10]);
        assert!(decile_edges(&[3.0; 50]).is_empty());
        assert_eq!(bin_counts(&[1.0, f64::NAN, 2.0], &[]), vec![2]);
    }

    #[test]
    fn a_shifted_regressor_fails_on_its_mean() {
        let a = Analysis::default();
        let s = normal(1, 1500, 150.0, 60.0);
        let c = normal(2, 1500, 190.0, 60.0);
        let (v, n) = judge(&a, &s, &c);
        assert!(
            matches!(&v, Verdict::Fail { reason } if reason.contains("mean")),
            "{v:?} {n}"
        );
    }

    #[test]
    fn a_regressor_with_the_same_mean_and_another_spread_fails_on_its_bins() {
        let a = Analysis::default();
        let s = normal(3, 2000, 150.0, 60.0);
        let c = normal(4, 2000, 150.0, 5.0);
        let (v, n) = judge(&a, &s, &c);
        assert!(
            matches!(&v, Verdict::Fail { reason } if reason.contains("deciles")),
            "{v:?} {n}"
        );
    }

    #[test]
    fn small_samples_are_inconclusive_and_drift_off_judges_nothing() {
        let a = Analysis::default();
        let (v, _) = judge(&a, &normal(5, 5, 0.0, 1.0), &normal(6, 5, 100.0, 1.0));
        assert!(matches!(v, Verdict::Inconclusive { .. }), "{v:?}");
        let off = Analysis {
            drift: false,
            ..Analysis::default()
        };
        let (v, _) = judge(&off, &normal(5, 500, 0.0, 1.0), &normal(6, 500, 100.0, 1.0));
        assert_eq!(v, Verdict::Pass);
        let binned = Analysis {
            drift_bins: vec![50.0],
            ..Analysis::default()
        };
        let (v, n) = judge(
            &binned,
            &normal(5, 500, 0.0, 1.0),
            &normal(6, 500, 100.0, 1.0),
        );
        assert_eq!(v, Verdict::Pass, "the servers' bins decide: {n}");
    }

    /// A good retrain (the same distribution) judged at every 20 rows up to 600, over
    /// 400 releases: failures stay within `alpha`'s share.
    #[test]
    fn good_regressors_judged_every_interval_are_rarely_failed() {
        let a = Analysis::default();
        let mut failed = 0;
        for r in 0..400u64 {
            let s = normal(2 * r + 11, 600, 150.0, 60.0);
            let c = normal(2 * r + 12, 600, 150.0, 60.0);
            if (1..=30).any(|k| {
                matches!(
                    judge(&a, &s[..20 * k], &c[..20 * k]).0,
                    Verdict::Fail { .. }
                )
            }) {
                failed += 1;
            }
        }
        assert!(failed <= 4, "{failed} of 400 good releases failed");
    }
}
