//! Judging a candidate on live traffic: the numbers of one window ⇒ pass, fail or
//! inconclusive, with the numbers in the reason.

use serde_json::{Map, Value, json};

use crate::config::Analysis;
use crate::machine::Verdict;
use crate::stats::{fisher_exact_greater, mann_whitney_u, proportions, psi_from_counts};

/// Fewest requests a side before the candidate is compared with stable (latency or
/// errors), whatever `min_requests` says: rank tests on a handful of requests are
/// noise.
pub const MIN_COMPARISON_SAMPLES: u64 = 30;

/// What the gateway (or Prometheus) counted for one variant over an analysis window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    pub requests: u64,
    /// 5xx answers and requests the backend failed.
    pub errors: u64,
    pub p50_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
}

impl Window {
    /// Errors over requests; 0 without requests.
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors.min(self.requests) as f64 / self.requests as f64
        }
    }
}

/// Judge the candidate's window against the thresholds. Errors fail at once when the
/// threshold is already exceeded whatever the remaining requests would do; otherwise
/// fewer than `min_requests` requests is inconclusive.
pub fn judge(a: &Analysis, candidate: &Window) -> Verdict {
    let n = candidate.requests;
    let error_budget = (a.max_error_rate * a.min_requests.max(n) as f64).floor() as u64;
    if candidate.errors > error_budget && candidate.errors > 0 && n > 0 {
        let rate = candidate.errors as f64 / n as f64;
        if n >= a.min_requests || candidate.errors as f64 > a.max_error_rate * a.min_requests as f64
        {
            return Verdict::Fail {
                reason: format!(
                    "error rate {:.1}% ({} of {n} requests) is above {:.1}%",
                    rate * 100.0,
                    candidate.errors,
                    a.max_error_rate * 100.0
                ),
            };
        }
    }
    if n < a.min_requests {
        return Verdict::Inconclusive {
            reason: format!(
                "{n} of the {} requests needed for a verdict",
                a.min_requests
            ),
        };
    }
    for (name, limit, value) in [
        ("p99", Some(a.max_p99_ms), candidate.p99_seconds),
        ("p95", a.max_p95_ms, candidate.p95_seconds),
        ("p50", a.max_p50_ms, candidate.p50_seconds),
    ] {
        if let (Some(limit), Some(seconds)) = (limit, value)
            && seconds * 1000.0 > limit
        {
            return Verdict::Fail {
                reason: format!(
                    "{name} latency {:.1} ms over {n} requests is above {limit} ms",
                    seconds * 1000.0
                ),
            };
        }
    }
    Verdict::Pass
}

/// The judgement of the candidate's error rate against stable's over the same window.
#[derive(Debug, Clone, PartialEq)]
pub enum ErrorComparison {
    /// No significant and material increase. `p` is Fisher's one-sided p-value for
    /// "the candidate fails a larger share", `difference` the candidate's error rate
    /// minus stable's (0.004: 0.4 points).
    Pass { p: f64, difference: f64 },
    /// Significantly and materially more errors than stable; `reason` says how many.
    Fail {
        reason: String,
        p: f64,
        difference: f64,
    },
    /// Too few requests on a side (or an unusable setting) to judge either way.
    Inconclusive { reason: String },
}

/// Compare the candidate's error rate with stable's over the same window, as
/// [`compare_latency`] does latencies: the candidate fails only when both
///
/// - it fails a significantly larger share of its requests: Fisher's exact test
///   ([`fisher_exact_greater`]) gives `p < 1 - confidence`, and
/// - the difference matters: its error rate is more than `tolerance` above stable's,
///   in absolute terms (`0.005`: half a percentage point),
///
/// which catches a candidate failing 0.8% of requests beside a stable that fails
/// 0.05%, under an absolute limit of 1%. Fewer than `min_requests` requests on either
/// side is inconclusive, and so is a `confidence` outside `(0, 1)` or a negative or
/// non-finite `tolerance`.
pub fn compare_errors(
    candidate: &Window,
    stable: &Window,
    confidence: f64,
    tolerance: f64,
    min_requests: u64,
) -> ErrorComparison {
    if let Some(reason) = unusable(confidence, tolerance, "error rate") {
        return ErrorComparison::Inconclusive { reason };
    }
    let needed = min_requests.max(1);
    if candidate.requests < needed || stable.requests < needed {
        return ErrorComparison::Inconclusive {
            reason: format!(
                "{} candidate and {} stable requests, of the {needed} each needed for an \
                 error rate comparison",
                candidate.requests, stable.requests
            ),
        };
    }
    let p = fisher_exact_greater(
        candidate.errors,
        candidate.requests,
        stable.errors,
        stable.requests,
    );
    let (rc, rs) = (candidate.error_rate(), stable.error_rate());
    let difference = rc - rs;
    let alpha = 1.0 - confidence;
    if p < alpha && difference > tolerance {
        return ErrorComparison::Fail {
            reason: format!(
                "candidate error rate {:.2}% ({} of {} requests) is {:.2} points above \
                 stable's {:.2}% ({} of {}), more than {:.2}, and significantly so \
                 (Fisher's exact one-sided p = {} < {})",
                rc * 100.0,
                candidate.errors.min(candidate.requests),
                candidate.requests,
                difference * 100.0,
                rs * 100.0,
                stable.errors.min(stable.requests),
                stable.requests,
                tolerance * 100.0,
                fmt_p(p),
                fmt_p(alpha),
            ),
            p,
            difference,
        };
    }
    ErrorComparison::Pass { p, difference }
}

/// The judgement of the candidate against stable on one metric, with the numbers it
/// rests on.
#[derive(Debug, Clone, PartialEq)]
pub enum Comparison {
    /// No significant and material regression. `p` is the one-sided p-value for "the
    /// candidate is worse", `ratio` the candidate's median over stable's.
    Pass { p: f64, ratio: f64 },
    /// The candidate is significantly and materially worse; `reason` says by how much.
    Fail { reason: String, p: f64, ratio: f64 },
    /// Too little data (or an unusable setting) to judge either way.
    Inconclusive { reason: String },
}

impl Comparison {
    /// The same judgement as the release state machine's [`Verdict`].
    pub fn verdict(&self) -> Verdict {
        match self {
            Comparison::Pass { .. } => Verdict::Pass,
            Comparison::Fail { reason, .. } => Verdict::Fail {
                reason: reason.clone(),
            },
            Comparison::Inconclusive { reason } => Verdict::Inconclusive {
                reason: reason.clone(),
            },
        }
    }
}

/// Compare the candidate's request latencies with stable's over the same window, in
/// the spirit of Kayenta's Mann-Whitney judge: the candidate fails only when both
///
/// - its latencies are significantly greater than stable's: the one-sided
///   Mann-Whitney U test ([`mann_whitney_u`]) gives `p < 1 - confidence`, and
/// - the difference matters: the candidate's median is more than `tolerance` above
///   stable's, relatively (`0.2`: more than 20% slower),
///
/// so that with a lot of traffic a tiny but significant slowdown does not fail the
/// release, and a noisy difference on little traffic does not either.
///
/// Latencies are in seconds, like [`Window::p99_seconds`]; reasons give milliseconds.
/// NaN values are left out. Fewer than `min_samples` latencies on either side (or
/// none at all) is inconclusive, and so is a `confidence` outside `(0, 1)` or a
/// negative or non-finite `tolerance`.
pub fn compare_latency(
    candidate: &[f64],
    stable: &[f64],
    confidence: f64,
    tolerance: f64,
    min_samples: usize,
) -> Comparison {
    if let Some(reason) = unusable(confidence, tolerance, "latency") {
        return Comparison::Inconclusive { reason };
    }
    let c: Vec<f64> = candidate.iter().copied().filter(|x| !x.is_nan()).collect();
    let s: Vec<f64> = stable.iter().copied().filter(|x| !x.is_nan()).collect();
    let needed = min_samples.max(1);
    if c.len() < needed || s.len() < needed {
        return Comparison::Inconclusive {
            reason: format!(
                "{} candidate and {} stable latencies, of the {needed} each needed for a comparison",
                c.len(),
                s.len()
            ),
        };
    }
    let test = mann_whitney_u(&c, &s);
    let (median_c, median_s) = (median(&c), median(&s));
    let ratio = if median_s > 0.0 {
        median_c / median_s
    } else if median_c > median_s {
        f64::INFINITY
    } else {
        1.0
    };
    let p = test.p_greater;
    let alpha = 1.0 - confidence;
    if p < alpha && ratio > 1.0 + tolerance {
        return Comparison::Fail {
            reason: format!(
                "candidate median latency {:.1} ms is {ratio:.2}× stable's {:.1} ms, more than \
                 {:.0}% slower, and significantly so (Mann-Whitney one-sided p = {} < {}, \
                 {} candidate and {} stable requests)",
                median_c * 1000.0,
                median_s * 1000.0,
                tolerance * 100.0,
                fmt_p(p),
                fmt_p(alpha),
                c.len(),
                s.len()
            ),
            p,
            ratio,
        };
    }
    Comparison::Pass { p, ratio }
}

/// The judgement of prediction drift: how far the candidate's predicted classes are
/// from stable's.
#[derive(Debug, Clone, PartialEq)]
pub enum Drift {
    Pass { psi: f64 },
    Fail { reason: String, psi: f64 },
    Inconclusive { reason: String },
}

impl Drift {
    /// The same judgement as the release state machine's [`Verdict`].
    pub fn verdict(&self) -> Verdict {
        match self {
            Drift::Pass { .. } => Verdict::Pass,
            Drift::Fail { reason, .. } => Verdict::Fail {
                reason: reason.clone(),
            },
            Drift::Inconclusive { reason } => Verdict::Inconclusive {
                reason: reason.clone(),
            },
        }
    }
}

/// Judge prediction drift: the population stability index
/// ([`psi_from_counts`](crate::stats::psi_from_counts)) of the candidate's
/// predicted-class counts against stable's over the same window, where index `i` of
/// both slices counts class `i` (a shorter slice has no predictions of the classes
/// past its end). Fails when the PSI is above `max_psi` (0.1 is a common strict
/// limit, 0.25 a lenient one); fewer than `min_samples` predictions on either side
/// (or none) is inconclusive, and so is a negative or NaN `max_psi`.
pub fn drift(
    stable_counts: &[u64],
    candidate_counts: &[u64],
    max_psi: f64,
    min_samples: u64,
) -> Drift {
    if max_psi.is_nan() || max_psi < 0.0 {
        return Drift::Inconclusive {
            reason: format!("drift limit {max_psi} is not a non-negative number"),
        };
    }
    let total = |c: &[u64]| c.iter().fold(0u64, |t, &x| t.saturating_add(x));
    let (n_s, n_c) = (total(stable_counts), total(candidate_counts));
    let needed = min_samples.max(1);
    if n_c < needed || n_s < needed {
        return Drift::Inconclusive {
            reason: format!(
                "{n_c} candidate and {n_s} stable predictions, of the {needed} each needed \
                 for a drift check"
            ),
        };
    }
    let psi = psi_from_counts(stable_counts, candidate_counts);
    if psi > max_psi {
        // Name the class whose share moved the most.
        let f = |c: &[u64]| proportions(&c.iter().map(|&x| x as f64).collect::<Vec<_>>());
        let (ps, pc) = (f(stable_counts), f(candidate_counts));
        let share = |p: &[f64], i: usize| p.get(i).copied().unwrap_or(0.0);
        let worst = (0..ps.len().max(pc.len()))
            .max_by(|&i, &j| {
                let d = |k| (share(&pc, k) - share(&ps, k)).abs();
                d(i).total_cmp(&d(j))
            })
            .unwrap_or(0);
        return Drift::Fail {
            reason: format!(
                "prediction drift: PSI {psi:.3} of the candidate's predicted classes against \
                 stable's is above {max_psi}; class {worst} is {:.1}% of {n_c} candidate \
                 predictions against {:.1}% of {n_s} stable ones",
                share(&pc, worst) * 100.0,
                share(&ps, worst) * 100.0
            ),
            psi,
        };
    }
    Drift::Pass { psi }
}

/// What the gateway counted of a shadow step's mirrored requests over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ShadowWindow {
    /// Requests stable answered that were also sent to the candidate.
    pub mirrored: u64,
    /// Of those, the candidate failed (5xx, unreachable, unreadable answer).
    pub errors: u64,
    /// Rows whose predicted classes were compared (both answers readable).
    pub rows: u64,
    /// Of those, rows where the candidate predicted stable's class.
    pub agreeing_rows: u64,
    /// Probabilities compared, and the sum of their absolute differences.
    pub probabilities: u64,
    pub probability_diff_sum: f64,
    /// The candidate's p99 latency on mirrored requests.
    pub p99_seconds: Option<f64>,
}

impl ShadowWindow {
    /// Share of compared rows on which both predicted the same class.
    pub fn agreement(&self) -> Option<f64> {
        (self.rows > 0).then(|| self.agreeing_rows as f64 / self.rows as f64)
    }

    /// Mean absolute difference of the compared probabilities.
    pub fn mean_probability_diff(&self) -> Option<f64> {
        (self.probabilities > 0).then(|| self.probability_diff_sum / self.probabilities as f64)
    }
}

/// Judge a shadow step: the candidate answered the same requests as stable, out of
/// the callers' sight. Fails on errors above `max_error_rate` of mirrored requests,
/// agreement below `min_agreement`, a mean probability difference above
/// `max_probability_diff`, or a p99 above `max_p99_ms`; fewer than `min_requests`
/// compared requests is inconclusive.
pub fn judge_shadow(a: &Analysis, w: &ShadowWindow) -> Verdict {
    let n = w.mirrored;
    if n >= a.min_requests && w.errors as f64 > a.max_error_rate * n as f64 {
        return Verdict::Fail {
            reason: format!(
                "shadow: the candidate failed {} of {n} mirrored requests ({:.1}%, above {:.1}%)",
                w.errors,
                w.errors as f64 * 100.0 / n as f64,
                a.max_error_rate * 100.0
            ),
        };
    }
    let compared = n.saturating_sub(w.errors);
    if compared < a.min_requests {
        return Verdict::Inconclusive {
            reason: format!(
                "shadow: {compared} of the {} compared requests needed for a verdict",
                a.min_requests
            ),
        };
    }
    if let Some(agree) = w.agreement()
        && agree < a.min_agreement
    {
        return Verdict::Fail {
            reason: format!(
                "shadow: the candidate agreed with stable on {:.1}% of {} rows ({} disagreed), below {:.1}%",
                agree * 100.0,
                w.rows,
                w.rows - w.agreeing_rows,
                a.min_agreement * 100.0
            ),
        };
    }
    if let Some(diff) = w.mean_probability_diff()
        && diff > a.max_probability_diff
    {
        return Verdict::Fail {
            reason: format!(
                "shadow: mean absolute difference of probabilities {diff:.3} over {} values is above {}",
                w.probabilities, a.max_probability_diff
            ),
        };
    }
    if w.rows == 0 && w.probabilities == 0 {
        return Verdict::Inconclusive {
            reason: "shadow: no answer of either variant could be read as predictions".into(),
        };
    }
    if let Some(p99) = w.p99_seconds
        && p99 * 1000.0 > a.max_p99_ms
    {
        return Verdict::Fail {
            reason: format!(
                "shadow: the candidate's p99 latency {:.1} ms over {n} mirrored requests is above {} ms",
                p99 * 1000.0,
                a.max_p99_ms
            ),
        };
    }
    Verdict::Pass
}

/// Feedback labels counted for one variant over a window: labelled rows and how many
/// of them the variant had predicted right.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Labels {
    pub labelled: u64,
    pub correct: u64,
}

impl Labels {
    pub fn accuracy(&self) -> Option<f64> {
        (self.labelled > 0).then(|| self.correct as f64 / self.labelled as f64)
    }
}

/// Judge accuracy from feedback labels: fewer than `min_labels` labelled candidate
/// rows is inconclusive (labels arrive late: the step waits); below `min_accuracy`
/// fails; more than `max_accuracy_drop` below stable's accuracy fails when stable has
/// `min_labels` labelled rows in the same window too.
pub fn judge_feedback(a: &Analysis, candidate: &Labels, stable: &Labels) -> Verdict {
    let needed = a.min_labels.max(1);
    if candidate.labelled < needed {
        return Verdict::Inconclusive {
            reason: format!(
                "feedback: {} of the {needed} labelled candidate rows needed for an accuracy verdict",
                candidate.labelled
            ),
        };
    }
    let acc = candidate.correct as f64 / candidate.labelled as f64;
    if let Some(min) = a.min_accuracy
        && acc < min
    {
        return Verdict::Fail {
            reason: format!(
                "feedback: candidate accuracy {:.1}% ({} of {} labelled rows) is below {:.1}%",
                acc * 100.0,
                candidate.correct,
                candidate.labelled,
                min * 100.0
            ),
        };
    }
    if let Some(drop) = a.max_accuracy_drop
        && stable.labelled >= needed
    {
        let base = stable.correct as f64 / stable.labelled as f64;
        if base - acc > drop {
            return Verdict::Fail {
                reason: format!(
                    "feedback: candidate accuracy {:.1}% ({} of {} labelled rows) is {:.1} points below stable's {:.1}% ({} of {}), more than {:.1}",
                    acc * 100.0,
                    candidate.correct,
                    candidate.labelled,
                    (base - acc) * 100.0,
                    base * 100.0,
                    stable.correct,
                    stable.labelled,
                    drop * 100.0
                ),
            };
        }
    }
    Verdict::Pass
}

/// Both variants' live traffic over one analysis window, as the gateway or
/// Prometheus measured it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    pub candidate: Window,
    pub stable: Window,
    /// Request latencies in seconds (reconstructed from histograms), for the rank
    /// test of [`compare_latency`].
    pub candidate_latencies: Vec<f64>,
    pub stable_latencies: Vec<f64>,
}

/// A verdict on live traffic and the numbers it rests on, as journaled: the
/// comparisons' `error_comparison`, `latency_comparison` and `drift`, each present
/// when it was made.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveJudgement {
    pub verdict: Verdict,
    pub numbers: Map<String, Value>,
}

/// Judge the candidate on live traffic, the same way wherever the numbers come from
/// (the gateway on one machine, Prometheus on a cluster):
///
/// 1. [`judge`]: the candidate's own error rate and latency percentiles against the
///    absolute limits; fewer than `min_requests` requests is inconclusive;
/// 2. if that passes and `compare_errors` is on, [`compare_errors`] against stable;
/// 3. if that passes and `compare_latency` is on, [`compare_latency`], which fails
///    only when the candidate's median is also more than `latency_slack_ms` slower.
///
/// Both comparisons need [`MIN_COMPARISON_SAMPLES`] requests a side (or
/// `min_requests`, if more); with fewer, or with no stable traffic (blue-green at
/// 100%), they are left out and only the absolute limits decide. Prediction drift
/// needs the servers' class counts: [`LiveJudgement::drift`] adds it.
pub fn judge_live(a: &Analysis, live: &Live) -> LiveJudgement {
    let (c, s) = (&live.candidate, &live.stable);
    let mut verdict = judge(a, c);
    let mut numbers = Map::new();
    let min = a.min_requests.max(MIN_COMPARISON_SAMPLES);
    if verdict == Verdict::Pass && a.compare_errors {
        let cmp = compare_errors(c, s, a.confidence, a.error_tolerance, min);
        match cmp {
            ErrorComparison::Pass { p, difference } => {
                numbers.insert(
                    "error_comparison".into(),
                    json!({ "p": p, "difference": difference }),
                );
            }
            ErrorComparison::Fail {
                reason,
                p,
                difference,
            } => {
                numbers.insert(
                    "error_comparison".into(),
                    json!({ "p": p, "difference": difference }),
                );
                verdict = Verdict::Fail { reason };
            }
            ErrorComparison::Inconclusive { .. } => {}
        }
    }
    if verdict == Verdict::Pass && a.compare_latency {
        let cmp = compare_latency(
            &live.candidate_latencies,
            &live.stable_latencies,
            a.confidence,
            a.tolerance,
            min as usize,
        );
        let slower_ms = match (c.p50_seconds, s.p50_seconds) {
            (Some(x), Some(y)) => (x - y) * 1000.0,
            _ => 0.0,
        };
        if let Comparison::Pass { p, ratio } | Comparison::Fail { p, ratio, .. } = &cmp {
            numbers.insert(
                "latency_comparison".into(),
                json!({ "p": p, "median_ratio": ratio, "median_slower_ms": slower_ms }),
            );
        }
        if let Comparison::Fail { reason, .. } = cmp
            && slower_ms > a.latency_slack_ms
        {
            verdict = Verdict::Fail { reason };
        }
    }
    LiveJudgement { verdict, numbers }
}

impl LiveJudgement {
    /// Add prediction drift ([`drift`]) over the window's predicted-class counts
    /// (index `i`: class `i`), if drift is on and the verdict so far is a pass; fewer
    /// than `min_requests` predictions a side leaves it out.
    pub fn drift(&mut self, a: &Analysis, stable_counts: &[u64], candidate_counts: &[u64]) {
        if !a.drift || self.verdict != Verdict::Pass {
            return;
        }
        let d = drift(stable_counts, candidate_counts, a.max_psi, a.min_requests);
        if let Drift::Pass { psi } | Drift::Fail { psi, .. } = &d {
            self.numbers.insert(
                "drift".into(),
                json!({
                    "psi": psi,
                    "stable_classes": stable_counts,
                    "candidate_classes": candidate_counts,
                }),
            );
        }
        if let Drift::Fail { reason, .. } = d {
            self.verdict = Verdict::Fail { reason };
        }
    }
}

/// Why a comparison's settings cannot be used, if they cannot: a `confidence` outside
/// `(0, 1)`, or a negative or non-finite `tolerance` (of the metric `what`).
fn unusable(confidence: f64, tolerance: f64, what: &str) -> Option<String> {
    if !(confidence > 0.0 && confidence < 1.0) {
        return Some(format!("confidence {confidence} is not between 0 and 1"));
    }
    if !(tolerance >= 0.0 && tolerance.is_finite()) {
        return Some(format!(
            "{what} tolerance {tolerance} is not a non-negative number"
        ));
    }
    None
}

/// The median of a non-empty sample without NaNs.
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A p-value for a reason: three decimals, or scientific notation when tiny.
fn fmt_p(p: f64) -> String {
    if p >= 0.001 || p == 0.0 {
        format!("{p:.3}")
    } else {
        format!("{p:.1e}")
    }
}

#[cfg(test)]
mod tests;
