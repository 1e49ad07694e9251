//! Judging a candidate on live traffic: the numbers of one window ⇒ pass, fail or
//! inconclusive, with the numbers in the reason.

use crate::config::Analysis;
use crate::machine::Verdict;

/// What the gateway counted for one variant over an analysis window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    pub requests: u64,
    /// 5xx answers and requests the backend failed.
    pub errors: u64,
    pub p99_seconds: Option<f64>,
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
    if let Some(p99) = candidate.p99_seconds {
        let ms = p99 * 1000.0;
        if ms > a.max_p99_ms {
            return Verdict::Fail {
                reason: format!(
                    "p99 latency {ms:.1} ms over {n} requests is above {} ms",
                    a.max_p99_ms
                ),
            };
        }
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests {
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
        };
        assert_eq!(judge(&a(), &w(100, 0, 0.01)), Verdict::Pass);
        assert!(matches!(
            judge(&a(), &w(5, 0, 0.01)),
            Verdict::Inconclusive { .. }
        ));
        assert!(
            matches!(judge(&a(), &w(100, 10, 0.01)), Verdict::Fail { ref reason } if reason.contains("10 of 100"))
        );
        assert!(
            matches!(judge(&a(), &w(100, 0, 0.3)), Verdict::Fail { ref reason } if reason.contains("300.0 ms"))
        );
        // 4 errors in 8 requests: already more than 5% of the 20 needed.
        assert!(matches!(judge(&a(), &w(8, 4, 0.01)), Verdict::Fail { .. }));
        // 1 error in 8: could still end under 5% of 20; wait.
        assert!(matches!(
            judge(&a(), &w(8, 1, 0.01)),
            Verdict::Inconclusive { .. }
        ));
        assert_eq!(judge(&a(), &w(100, 5, 0.01)), Verdict::Pass);
    }
}
