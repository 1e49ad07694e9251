//! Judging what the candidate predicts: a shadow step's mirrored answers against
//! stable's answers to the same requests, and accuracy from feedback labels. Every
//! judge is anytime-valid (see [`sequential`](super::sequential)).

use crate::config::Analysis;
use crate::machine::Verdict;

use super::sequential::{self, Sums};
use super::{fmt_p, judge_alpha, name_codes, thousands};

/// What the gateway counted of a shadow step's mirrored requests over a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShadowWindow {
    /// Requests stable answered (2xx) that were also sent to the candidate.
    pub mirrored: u64,
    /// Of those, the candidate failed: any non-2xx answer (4xx as well as 5xx:
    /// stable answered the same request), unreachable, or an unreadable answer.
    pub errors: u64,
    /// The candidate's error answers by status code (`(400, 31)`), for the reason.
    pub codes: Vec<(u16, u64)>,
    /// Rows whose predicted classes were compared (both answers readable).
    pub rows: u64,
    /// Of those, rows where the candidate predicted stable's class.
    pub agreeing_rows: u64,
    /// Probabilities compared, and the sum of their absolute differences.
    pub probabilities: u64,
    pub probability_diff_sum: f64,
    /// Regressors (one number per row, no label): the candidate's value minus
    /// stable's on the same rows, its absolute value, and stable's absolute values
    /// (the scale the relative limits use). `differences.n` rows compared.
    pub differences: Sums,
    pub abs_differences: Sums,
    pub stable_abs_sum: f64,
    /// The candidate's p99 latency on mirrored requests.
    pub p99_seconds: Option<f64>,
    /// Its latencies on mirrored requests, seconds (reconstructed from the
    /// histogram): the p99 limit is judged on the share above it. Empty: the p99
    /// itself is compared with the limit.
    pub latencies: Vec<f64>,
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

    /// Mean absolute value of stable's answers (regressors).
    pub fn stable_scale(&self) -> Option<f64> {
        (self.differences.n > 0).then(|| self.stable_abs_sum / self.differences.n as f64)
    }
}

/// Judge a shadow step: the candidate answered the same requests as stable, out of
/// the callers' sight. Anytime-valid at [`judge_alpha`] shared by its checks; fails
/// when
///
/// - the candidate's failure rate on requests stable answered (4xx, 5xx, failed or
///   unreadable) is shown above `error_tolerance`, naming the status codes;
/// - (classifiers) its agreement with stable is shown below `min_agreement`, or
///   the mean probability difference shown above `max_probability_diff`;
/// - (regressors: values, never probabilities) the mean absolute difference is shown
///   above `max_relative_diff` of stable's mean absolute value, or the bias (mean
///   signed difference) shown outside `± max_relative_bias` of it;
/// - more than 1% of mirrored requests are shown slower than `max_p99_ms`.
///
/// Fewer than `min_requests` compared requests is inconclusive.
pub fn judge_shadow(a: &Analysis, w: &ShadowWindow) -> Verdict {
    let alpha = judge_alpha(a) / 5.0;
    let n = w.mirrored;
    let errors = w.errors.min(n);
    if sequential::rate_above(errors, n, a.error_tolerance, alpha) {
        let codes = name_codes(&w.codes);
        return Verdict::Fail {
            reason: format!(
                "shadow: candidate {} of {} mirrored requests stable answered 2xx ({:.1}%): \
                 its failure rate is at least {:.2}%, above {:.2}% (confidence sequence, \
                 \u{3b1} = {})",
                if codes.is_empty() {
                    format!("failed {}", thousands(errors))
                } else {
                    codes
                },
                thousands(n),
                errors as f64 * 100.0 / n as f64,
                sequential::rate(errors, n, alpha).lo * 100.0,
                a.error_tolerance * 100.0,
                fmt_p(alpha)
            ),
        };
    }
    let compared = n.saturating_sub(errors);
    if compared < a.min_requests {
        return Verdict::Inconclusive {
            reason: format!(
                "shadow: {compared} of the {} compared requests needed for a verdict",
                a.min_requests
            ),
        };
    }
    if sequential::rate_below(w.agreeing_rows, w.rows, a.min_agreement, alpha) {
        let i = sequential::rate(w.agreeing_rows, w.rows, alpha);
        return Verdict::Fail {
            reason: format!(
                "shadow: the candidate agreed with stable on {:.1}% of {} rows ({} disagreed), \
                 below {:.1}%: at most {:.1}% (confidence sequence, \u{3b1} = {})",
                w.agreement().unwrap_or(0.0) * 100.0,
                w.rows,
                w.rows - w.agreeing_rows,
                a.min_agreement * 100.0,
                i.hi * 100.0,
                fmt_p(alpha)
            ),
        };
    }
    if let Some(diff) = w.mean_probability_diff() {
        // Differences of probabilities lie in [0, 1]: their variance is at most
        // m(1 - m).
        let m = diff.clamp(0.0, 1.0);
        let k = w.probabilities as f64;
        let s = Sums {
            n: w.probabilities,
            sum: w.probability_diff_sum,
            sum_squares: k * m * m + (k - 1.0).max(0.0) * m * (1.0 - m),
        };
        let lo = sequential::mean(&s, alpha).lo;
        if lo > a.max_probability_diff {
            return Verdict::Fail {
                reason: format!(
                    "shadow: mean absolute difference of probabilities {diff:.3} over {} values \
                     is above {}: at least {lo:.3} (confidence sequence, \u{3b1} = {})",
                    w.probabilities,
                    a.max_probability_diff,
                    fmt_p(alpha)
                ),
            };
        }
    }
    if let Some(verdict) = judge_values(a, w, alpha) {
        return verdict;
    }
    if w.rows == 0 && w.probabilities == 0 && w.differences.n == 0 {
        return Verdict::Inconclusive {
            reason: "shadow: no answer of either variant could be read as predictions".into(),
        };
    }
    let slow = w
        .latencies
        .iter()
        .filter(|&&x| x * 1000.0 > a.max_p99_ms)
        .count() as u64;
    let too_slow = if w.latencies.is_empty() {
        w.p99_seconds.is_some_and(|p| p * 1000.0 > a.max_p99_ms)
    } else {
        sequential::rate_above(slow, w.latencies.len() as u64, 0.01, alpha)
    };
    if let Some(p99) = w.p99_seconds
        && too_slow
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

/// A regressor's values against stable's on the same rows: `Some(Fail)` when the
/// mean absolute difference or the bias is shown too large, relative to stable's
/// mean absolute value.
fn judge_values(a: &Analysis, w: &ShadowWindow, alpha: f64) -> Option<Verdict> {
    let scale = w.stable_scale()?;
    let d = &w.differences;
    let rows = d.n;
    let bias = sequential::mean(d, alpha);
    let limit = a.max_relative_bias * scale;
    if bias.lo > limit || bias.hi < -limit {
        let mean = d.mean().unwrap_or(0.0);
        return Some(Verdict::Fail {
            reason: format!(
                "shadow: the candidate's values are biased by {mean:+.3} on average over {rows} \
                 rows ({:+.1}% of stable's mean absolute value {scale:.3}), beyond \u{b1}{:.0}%: \
                 between {:+.3} and {:+.3} (confidence sequence of the mean difference, \
                 \u{3b1} = {})",
                mean * 100.0 / scale.max(f64::MIN_POSITIVE),
                a.max_relative_bias * 100.0,
                bias.lo,
                bias.hi,
                fmt_p(alpha)
            ),
        });
    }
    let abs = sequential::mean(&w.abs_differences, alpha);
    let limit = a.max_relative_diff * scale;
    if abs.lo > limit {
        return Some(Verdict::Fail {
            reason: format!(
                "shadow: the candidate's values differ from stable's by {:.3} on average over \
                 {rows} rows ({:.1}% of stable's mean absolute value {scale:.3}), above {:.0}%: \
                 at least {:.3} (confidence sequence, \u{3b1} = {})",
                w.abs_differences.mean().unwrap_or(0.0),
                w.abs_differences.mean().unwrap_or(0.0) * 100.0 / scale.max(f64::MIN_POSITIVE),
                a.max_relative_diff * 100.0,
                abs.lo,
                fmt_p(alpha)
            ),
        });
    }
    None
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

/// Judge accuracy from feedback labels, anytime-valid at [`judge_alpha`]: fewer than
/// `min_labels` labelled candidate rows is inconclusive (labels arrive late: the
/// step waits); an accuracy shown below `min_accuracy` fails; an accuracy shown more
/// than `max_accuracy_drop` below stable's fails (confidence sequences of both at
/// half the level each), judged when stable has `min_labels` labelled rows too.
pub fn judge_feedback(a: &Analysis, candidate: &Labels, stable: &Labels) -> Verdict {
    let alpha = judge_alpha(a) / 2.0;
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
        && sequential::rate_below(candidate.correct, candidate.labelled, min, alpha)
    {
        return Verdict::Fail {
            reason: format!(
                "feedback: candidate accuracy {:.1}% ({} of {} labelled rows) is below {:.1}%: \
                 at most {:.1}% (confidence sequence, \u{3b1} = {})",
                acc * 100.0,
                candidate.correct,
                candidate.labelled,
                min * 100.0,
                sequential::rate(candidate.correct, candidate.labelled, alpha).hi * 100.0,
                fmt_p(alpha)
            ),
        };
    }
    if let Some(drop) = a.max_accuracy_drop
        && stable.labelled >= needed
    {
        let base = stable.correct as f64 / stable.labelled as f64;
        if base - acc > drop {
            let half = alpha / 2.0;
            let stable_at_least = sequential::rate(stable.correct, stable.labelled, half).lo;
            let limit = stable_at_least - drop;
            if limit > 0.0
                && sequential::rate_below(candidate.correct, candidate.labelled, limit, half)
            {
                return Verdict::Fail {
                    reason: format!(
                        "feedback: candidate accuracy {:.1}% ({} of {} labelled rows) is {:.1} \
                         points below stable's {:.1}% ({} of {}), more than {:.1}: at most \
                         {:.1}% against at least {:.1}% (confidence sequences, \u{3b1} = {})",
                        acc * 100.0,
                        candidate.correct,
                        candidate.labelled,
                        (base - acc) * 100.0,
                        base * 100.0,
                        stable.correct,
                        stable.labelled,
                        drop * 100.0,
                        sequential::rate(candidate.correct, candidate.labelled, half).hi * 100.0,
                        stable_at_least * 100.0,
                        fmt_p(half)
                    ),
                };
            }
        }
    }
    Verdict::Pass
}
