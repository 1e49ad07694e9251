//! Judging a candidate on live traffic: the numbers of one window ⇒ pass, fail or
//! inconclusive, with the numbers in the reason.

use serde_json::{Map, Value, json};

use crate::config::Analysis;
use crate::machine::Verdict;
use crate::stats::{fisher_exact_greater, mann_whitney_u, psi_from_counts};

pub mod sequential;
mod shadow;
mod values;

pub use shadow::{Labels, ShadowWindow, judge_feedback, judge_shadow};
pub use values::{ValuesSample, bin_counts, decile_edges, judge_live_values};

/// Fewest requests a side before the candidate is compared with stable (latency or
/// errors), whatever `min_requests` says: rank tests on a handful of requests are
/// noise.
pub const MIN_COMPARISON_SAMPLES: u64 = 30;

/// What the gateway (or Prometheus) counted for one variant over an analysis window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    pub requests: u64,
    /// 5xx answers and requests the backend failed: the server's own faults, judged
    /// against `max_error_rate` on their own.
    pub errors: u64,
    /// 4xx answers: the caller would treat them as failures too, but a caller's bad
    /// request gets one from any version, so they count only in the comparison with
    /// stable's rate ([`compare_errors`]).
    pub client_errors: u64,
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

    /// Every answer the caller would treat as a failure: 4xx, 5xx and failed
    /// requests.
    pub fn failures(&self) -> u64 {
        (self.errors + self.client_errors).min(self.requests)
    }
}

/// The level each judge of a step gets: the step's `alpha` shared equally by the
/// judges that are on (the candidate's own error rate and latency limits, the error
/// and latency comparisons, drift, feedback, the shadow comparison), so that the
/// chance any of them ever fails a good candidate is at most `alpha` (a union bound).
pub fn judge_alpha(a: &Analysis) -> f64 {
    let judges = 3
        + u32::from(a.compare_errors)
        + u32::from(a.compare_latency)
        + u32::from(a.drift)
        + u32::from(a.feedback);
    a.alpha.clamp(f64::MIN_POSITIVE, 0.5) / f64::from(judges)
}

/// Judge the candidate's window against the absolute limits, anytime-valid at level
/// `alpha` (each check may run every interval):
///
/// - errors (5xx and failed requests) fail when the confidence sequence of the
///   candidate's error rate lies wholly above `max_error_rate`: a strong enough
///   excess fails before `min_requests`, and a rate near the limit never fails on
///   an unlucky window;
/// - fewer than `min_requests` requests is otherwise inconclusive;
/// - each latency limit (`max_p99_ms` and so on) fails when the share of
///   `latencies` (seconds) above it is shown to exceed the percentile's complement
///   (more than 1% of requests slower than the p99 limit); without latencies, the
///   window's percentile is compared with the limit directly.
pub fn judge(a: &Analysis, candidate: &Window, latencies: &[f64], alpha: f64) -> Verdict {
    let n = candidate.requests;
    let errors = candidate.errors.min(n);
    if sequential::rate_above(errors, n, a.max_error_rate, alpha) {
        let at_least = sequential::rate(errors, n, alpha).lo;
        return Verdict::Fail {
            reason: format!(
                "error rate {:.1}% ({errors} of {n} requests{}) is above {:.1}%: it is at \
                 least {:.2}% (confidence sequence, \u{3b1} = {})",
                candidate.error_rate() * 100.0,
                if errors > 0 { ", 5xx or failed" } else { "" },
                a.max_error_rate * 100.0,
                at_least * 100.0,
                fmt_p(alpha)
            ),
        };
    }
    if n < a.min_requests {
        return Verdict::Inconclusive {
            reason: format!(
                "{n} of the {} requests needed for a verdict",
                a.min_requests
            ),
        };
    }
    let limits = [
        ("p99", 0.99, Some(a.max_p99_ms), candidate.p99_seconds),
        ("p95", 0.95, a.max_p95_ms, candidate.p95_seconds),
        ("p50", 0.5, a.max_p50_ms, candidate.p50_seconds),
    ];
    let each = alpha / 3.0;
    for (name, q, limit, value) in limits {
        let Some(limit) = limit else { continue };
        if latencies.is_empty() {
            if let Some(seconds) = value
                && seconds * 1000.0 > limit
            {
                return Verdict::Fail {
                    reason: format!(
                        "{name} latency {:.1} ms over {n} requests is above {limit} ms",
                        seconds * 1000.0
                    ),
                };
            }
            continue;
        }
        let over = latencies.iter().filter(|&&x| x * 1000.0 > limit).count() as u64;
        let m = latencies.len() as u64;
        if sequential::rate_above(over, m, 1.0 - q, each) {
            return Verdict::Fail {
                reason: format!(
                    "{name} latency {} over {n} requests is above {limit} ms: {over} of {m} \
                     requests took longer, more than {:.0}% (confidence sequence, \u{3b1} = {})",
                    value.map_or("unknown".to_string(), |s| format!("{:.1} ms", s * 1000.0)),
                    (1.0 - q) * 100.0,
                    fmt_p(each)
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

/// Compare the candidate's failures (4xx, 5xx and failed requests: every answer the
/// caller would treat as a failure) with stable's over the same window: the
/// candidate fails only when its failure rate is shown, by confidence sequences at
/// `alpha / 2` a side, to exceed stable's by more than `tolerance` (absolute:
/// `0.005` is half a percentage point): the lower bound of the candidate's rate is
/// above the upper bound of stable's plus `tolerance`. That holds at every look, so
/// it may run every interval.
///
/// It catches a candidate answering 400 to a kind of request stable answers (31 of
/// 620 against 0 of 5,800), and a candidate failing 0.8% of requests beside a stable
/// failing 0.05%, under an absolute limit of 1%; when callers send bad requests, both
/// variants refuse them alike and nothing fails. `p` in the result is Fisher's exact
/// one-sided p-value, for reference (a fixed-sample test: not what decides). Fewer
/// than `min_requests` requests on either side is inconclusive, and so is an `alpha`
/// outside `(0, 1)` or a negative or non-finite `tolerance`.
pub fn compare_errors(
    candidate: &Window,
    stable: &Window,
    alpha: f64,
    tolerance: f64,
    min_requests: u64,
) -> ErrorComparison {
    if let Some(reason) = unusable(alpha, tolerance, "error rate") {
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
    let (xc, nc, xs, ns) = (
        candidate.failures(),
        candidate.requests,
        stable.failures(),
        stable.requests,
    );
    let p = fisher_exact_greater(xc, nc, xs, ns);
    let (rc, rs) = (xc as f64 / nc as f64, xs as f64 / ns as f64);
    let difference = rc - rs;
    if difference > tolerance {
        let stable_at_most = sequential::rate(xs, ns, alpha / 2.0).hi;
        let limit = stable_at_most + tolerance;
        if limit < 1.0 && sequential::rate_above(xc, nc, limit, alpha / 2.0) {
            let candidate_at_least = sequential::rate(xc, nc, alpha / 2.0).lo;
            return ErrorComparison::Fail {
                reason: format!(
                    "candidate failed {xc} of {nc} requests ({:.2}%), stable {xs} of {ns} \
                     ({:.2}%): the candidate's rate is at least {:.2}%, above stable's at most \
                     {:.2}% plus {:.2} points (confidence sequences, \u{3b1} = {})",
                    rc * 100.0,
                    rs * 100.0,
                    candidate_at_least * 100.0,
                    stable_at_most * 100.0,
                    tolerance * 100.0,
                    fmt_p(alpha),
                ),
                p,
                difference,
            };
        }
    }
    ErrorComparison::Pass { p, difference }
}

/// The error status codes of a variant's answers, for a reason: `400 on 31, 503 on
/// 2` of `codes` (status, count), and the same codes' counts in `other`.
pub fn name_codes(codes: &[(u16, u64)]) -> String {
    let mut c: Vec<&(u16, u64)> = codes.iter().filter(|(_, n)| *n > 0).collect();
    c.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    c.iter()
        .take(4)
        .map(|(code, n)| format!("{code} on {}", thousands(*n)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `5800` as `5,800`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
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

/// Compare the candidate's request latencies with stable's over the same window: the
/// candidate fails only when its median is shown to be more than `tolerance` above
/// stable's, relatively (`0.2`: more than 20% slower), by confidence sequences of
/// both medians at `alpha / 2` a side ([`sequential::median`]): the lower bound of
/// the candidate's median is above `1 + tolerance` times the upper bound of
/// stable's. A tiny slowdown never fails, and neither does noise, however often it is
/// checked. `p` in the result is the one-sided Mann-Whitney U p-value, for
/// reference.
///
/// Latencies are in seconds, like [`Window::p99_seconds`]; reasons give milliseconds.
/// NaN values are left out. Fewer than `min_samples` latencies on either side (or
/// none at all) is inconclusive, and so is an `alpha` outside `(0, 1)` or a negative
/// or non-finite `tolerance`.
pub fn compare_latency(
    candidate: &[f64],
    stable: &[f64],
    alpha: f64,
    tolerance: f64,
    min_samples: usize,
) -> Comparison {
    if let Some(reason) = unusable(alpha, tolerance, "latency") {
        return Comparison::Inconclusive { reason };
    }
    let mut c: Vec<f64> = candidate.iter().copied().filter(|x| !x.is_nan()).collect();
    let mut s: Vec<f64> = stable.iter().copied().filter(|x| !x.is_nan()).collect();
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
    c.sort_by(f64::total_cmp);
    s.sort_by(f64::total_cmp);
    let (median_c, median_s) = (median(&c), median(&s));
    let ratio = if median_s > 0.0 {
        median_c / median_s
    } else if median_c > median_s {
        f64::INFINITY
    } else {
        1.0
    };
    let p = mann_whitney_u(&c, &s).p_greater;
    if ratio > 1.0 + tolerance {
        let (bc, bs) = (
            sequential::median(&c, alpha / 2.0),
            sequential::median(&s, alpha / 2.0),
        );
        if bc.lo.is_finite() && bs.hi.is_finite() && bc.lo > bs.hi * (1.0 + tolerance) {
            return Comparison::Fail {
                reason: format!(
                    "candidate median latency {:.1} ms is {ratio:.2}\u{d7} stable's {:.1} ms, more \
                     than {:.0}% slower: at least {:.1} ms against at most {:.1} ms (confidence \
                     sequences of the medians, \u{3b1} = {}, {} candidate and {} stable requests)",
                    median_c * 1000.0,
                    median_s * 1000.0,
                    tolerance * 100.0,
                    bc.lo * 1000.0,
                    bs.hi * 1000.0,
                    fmt_p(alpha),
                    c.len(),
                    s.len()
                ),
                p,
                ratio,
            };
        }
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
/// past its end). Fails when the PSI is shown to be above `max_psi` (0.1 is a common
/// strict limit, 0.25 a lenient one): every class's share on each side gets a
/// confidence sequence (level `alpha` shared by all of them), and the smallest PSI
/// those shares allow is above the limit. Sampling noise on a few dozen predictions
/// never fails a release, however often it is checked. Fewer than `min_samples`
/// predictions on either side (or none) is inconclusive, and so is a negative or
/// NaN `max_psi`.
pub fn drift(
    stable_counts: &[u64],
    candidate_counts: &[u64],
    max_psi: f64,
    min_samples: u64,
    alpha: f64,
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
    if psi <= max_psi {
        return Drift::Pass { psi };
    }
    let classes = stable_counts.len().max(candidate_counts.len());
    let seen = (0..classes)
        .filter(|&i| {
            stable_counts.get(i).copied().unwrap_or(0)
                + candidate_counts.get(i).copied().unwrap_or(0)
                > 0
        })
        .count()
        .max(1);
    let each = alpha / (2 * seen) as f64;
    let count = |c: &[u64], i: usize| c.get(i).copied().unwrap_or(0);
    // The smallest PSI the confidence boxes of the shares allow: (x - y) ln(x / y)
    // grows as x and y part, so each class's least is at the boxes' nearest corners.
    let mut lower = 0.0;
    let mut worst = (0usize, 0.0f64);
    for i in 0..classes {
        let (xs, xc) = (count(stable_counts, i), count(candidate_counts, i));
        if xs + xc == 0 {
            continue;
        }
        let (bs, bc) = (
            sequential::rate(xs, n_s, each),
            sequential::rate(xc, n_c, each),
        );
        let term = if bc.lo > bs.hi {
            (bc.lo - bs.hi) * (bc.lo / bs.hi).ln()
        } else if bs.lo > bc.hi {
            (bs.lo - bc.hi) * (bs.lo / bc.hi).ln()
        } else {
            0.0
        };
        let moved = (xc as f64 / n_c as f64 - xs as f64 / n_s as f64).abs();
        if moved > worst.1 {
            worst = (i, moved);
        }
        lower += term;
    }
    if lower > max_psi {
        let share = |x: u64, n: u64| x as f64 * 100.0 / n as f64;
        let i = worst.0;
        return Drift::Fail {
            reason: format!(
                "prediction drift: PSI {psi:.3} of the candidate's predicted classes against \
                 stable's is above {max_psi}: at least {lower:.3} (confidence sequences of the \
                 classes' shares, \u{3b1} = {}); class {i} is {:.1}% of {n_c} candidate \
                 predictions against {:.1}% of {n_s} stable ones",
                fmt_p(alpha),
                share(count(candidate_counts, i), n_c),
                share(count(stable_counts, i), n_s),
            ),
            psi,
        };
    }
    Drift::Pass { psi }
}

/// Both variants' live traffic over one analysis window, as the gateway or
/// Prometheus measured it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    pub candidate: Window,
    pub stable: Window,
    /// Request latencies in seconds (reconstructed from histograms), for the
    /// latency limits and the comparison of medians.
    pub candidate_latencies: Vec<f64>,
    pub stable_latencies: Vec<f64>,
    /// Each variant's error answers by status code (`(400, 31)`), where known: they
    /// name the codes in a failure's reason.
    pub candidate_codes: Vec<(u16, u64)>,
    pub stable_codes: Vec<(u16, u64)>,
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
/// (the gateway on one machine, Prometheus on a cluster), every judge anytime-valid
/// at its share of `alpha` ([`judge_alpha`]):
///
/// 1. [`judge`]: the candidate's own error rate and latency limits; fewer than
///    `min_requests` requests is inconclusive;
/// 2. if that passes and `compare_errors` is on, [`compare_errors`] against stable
///    (4xx counted), its reason naming the status codes;
/// 3. if that passes and `compare_latency` is on, [`compare_latency`], which fails
///    only when the candidate's median is also more than `latency_slack_ms` slower.
///
/// Both comparisons need [`MIN_COMPARISON_SAMPLES`] requests a side (or
/// `min_requests`, if more); with fewer, or with no stable traffic (blue-green at
/// 100%), they are left out and only the absolute limits decide. Prediction drift
/// needs the servers' class counts: [`LiveJudgement::drift`] adds it.
pub fn judge_live(a: &Analysis, live: &Live) -> LiveJudgement {
    let (c, s) = (&live.candidate, &live.stable);
    let alpha = judge_alpha(a);
    let mut verdict = judge(a, c, &live.candidate_latencies, alpha);
    let mut numbers = Map::new();
    numbers.insert("alpha".into(), json!(alpha));
    let min = a.min_requests.max(MIN_COMPARISON_SAMPLES);
    if verdict == Verdict::Pass && a.compare_errors {
        let cmp = compare_errors(c, s, alpha, a.error_tolerance, min);
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
                    json!({ "p": p, "difference": difference,
                            "candidate_codes": codes_json(&live.candidate_codes),
                            "stable_codes": codes_json(&live.stable_codes) }),
                );
                verdict = Verdict::Fail {
                    reason: with_codes(reason, live),
                };
            }
            ErrorComparison::Inconclusive { .. } => {}
        }
    }
    if verdict == Verdict::Pass && a.compare_latency {
        let cmp = compare_latency(
            &live.candidate_latencies,
            &live.stable_latencies,
            alpha,
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

/// `{"400": 31}`.
fn codes_json(codes: &[(u16, u64)]) -> Value {
    Value::Object(
        codes
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(c, n)| (c.to_string(), json!(n)))
            .collect(),
    )
}

/// An error comparison's reason, led by the status codes when they are known:
/// "candidate 400 on 31 of 620 requests, stable 0 of 5,800; …".
fn with_codes(reason: String, live: &Live) -> String {
    if live.candidate_codes.iter().all(|(_, n)| *n == 0) {
        return reason;
    }
    let named = name_codes(&live.candidate_codes);
    let stable_same: u64 = live
        .stable_codes
        .iter()
        .filter(|(code, _)| {
            live.candidate_codes
                .iter()
                .any(|(c, n)| c == code && *n > 0)
        })
        .map(|(_, n)| n)
        .sum();
    format!(
        "candidate {named} of {} requests, stable {} of {}; {reason}",
        thousands(live.candidate.requests),
        thousands(stable_same),
        thousands(live.stable.requests),
    )
}

impl LiveJudgement {
    /// Add prediction drift ([`drift`]) over the window's predicted-class counts
    /// (index `i`: class `i`), if drift is on and the verdict so far is a pass; fewer
    /// than `min_requests` predictions a side leaves it out.
    pub fn drift(&mut self, a: &Analysis, stable_counts: &[u64], candidate_counts: &[u64]) {
        if !a.drift || self.verdict != Verdict::Pass {
            return;
        }
        let d = drift(
            stable_counts,
            candidate_counts,
            a.max_psi,
            a.min_requests,
            judge_alpha(a),
        );
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

/// The evidence an inconclusive step still needs: of each kind it counts (`(have,
/// need, what)`, such as candidate requests against `min_requests`, or labelled
/// rows against `min_labels`), the one whose shortfall takes longest at the rate it
/// arrived over `elapsed_seconds`: `(needed, what, per_second, eta_seconds)`. None
/// when nothing is short.
pub fn evidence_needed(
    kinds: &[(u64, u64, &'static str)],
    elapsed_seconds: f64,
) -> Option<(u64, &'static str, Option<f64>, Option<f64>)> {
    kinds
        .iter()
        .filter(|(have, need, _)| have < need)
        .map(|&(have, need, what)| {
            let rate = (elapsed_seconds > 0.0 && have > 0).then(|| have as f64 / elapsed_seconds);
            let short = need - have;
            (short, what, rate, rate.map(|r| short as f64 / r))
        })
        .max_by(|a, b| {
            let t = |x: &Option<f64>| x.unwrap_or(f64::INFINITY);
            t(&a.3).total_cmp(&t(&b.3))
        })
}

/// Why a comparison's settings cannot be used, if they cannot: an `alpha` outside
/// `(0, 1)`, or a negative or non-finite `tolerance` (of the metric `what`).
fn unusable(alpha: f64, tolerance: f64, what: &str) -> Option<String> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return Some(format!("alpha {alpha} is not between 0 and 1"));
    }
    if !(tolerance >= 0.0 && tolerance.is_finite()) {
        return Some(format!(
            "{what} tolerance {tolerance} is not a non-negative number"
        ));
    }
    None
}

/// The median of a non-empty sample without NaNs.
pub(crate) fn median(values: &[f64]) -> f64 {
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
pub(crate) fn fmt_p(p: f64) -> String {
    if p >= 0.001 || p == 0.0 {
        format!("{p:.3}")
    } else {
        format!("{p:.1e}")
    }
}

#[cfg(test)]
mod tests;
