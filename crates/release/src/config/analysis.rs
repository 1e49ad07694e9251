//! `[analysis]`: the thresholds that judge a candidate under traffic, and the
//! per-environment overrides.

use super::*;

/// Most `analysis.drift_bins` edges (hoist-server counts 64 classes, the last one
/// `other`).
pub const MAX_DRIFT_BIN_EDGES: usize = 63;

/// Thresholds that judge the candidate while it takes traffic. Each environment may
/// override any of them in its own `analysis` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Analysis {
    /// Judge at all (staging often has no traffic: smoke tests decide there).
    pub enabled: bool,
    /// How often live metrics are judged during a step.
    pub interval: Dur,
    /// Highest share of 5xx and failed requests on the candidate (0.01 = 1%).
    pub max_error_rate: f64,
    /// Highest p99 latency of the candidate, in milliseconds.
    pub max_p99_ms: f64,
    /// Highest p95 latency of the candidate, in milliseconds; unset: none.
    pub max_p95_ms: Option<f64>,
    /// Highest median latency of the candidate, in milliseconds; unset: none.
    pub max_p50_ms: Option<f64>,
    /// Fewest candidate requests in a step's window before a verdict is given.
    pub min_requests: u64,
    /// How long past a step's pause to wait for `min_requests` before failing the
    /// release as inconclusive.
    pub max_inconclusive: Dur,
    /// Failed measurements a step tolerates (Argo Rollouts' `failureLimit`): the
    /// release rolls back when a step has more failed measurements than this.
    pub failure_limit: u32,
    /// Roll back after this many failed measurements in a row, whatever
    /// `failure_limit` says (0: off).
    pub consecutive_failures: u32,
    /// Also compare the candidate's error rate with stable's over the same window
    /// (Fisher's exact test): fail when the candidate fails a significantly larger
    /// share of requests and its rate is more than `error_tolerance` above stable's.
    pub compare_errors: bool,
    /// Absolute error-rate increase over stable's tolerated even when significant
    /// (0.005 = half a percentage point).
    pub error_tolerance: f64,
    /// Also compare the candidate's latencies with stable's over the same window
    /// (one-sided Mann-Whitney U): fail when the candidate is significantly slower
    /// and its median is more than `tolerance` above stable's.
    pub compare_latency: bool,
    /// Confidence of the fixed-sample tests (0.95: p < 0.05), reported beside the
    /// verdicts for reference; the verdicts themselves use `alpha`.
    pub confidence: f64,
    /// Highest chance that a good release is rolled back by the analysis, however
    /// often it looks (every judge is anytime-valid: confidence sequences that hold
    /// at every interval at once). Shared by the release's analysed steps and, in
    /// each, by the judges that are on. 0.01 = 1%.
    pub alpha: f64,
    /// Relative median slowdown tolerated even when significant (0.5 = 50%; the
    /// gateway's latency histogram resolves about 25%, so keep it above 0.25).
    pub tolerance: f64,
    /// ... and by more than this many milliseconds (a 0.3 ms slowdown matters to
    /// nobody, however significant).
    pub latency_slack_ms: f64,
    /// Compare the candidate's predicted classes with stable's on live traffic
    /// (population stability index of `hoist_predictions_total`).
    pub drift: bool,
    /// Highest PSI tolerated (0.1: small shift, 0.25: large).
    pub max_psi: f64,
    /// For a regressor (one number per row, no label output): bin edges its
    /// servers count answers by (`hoist-server --prediction-bins`), so drift is
    /// judged on the binned values as on classes. Empty: only labels are counted.
    pub drift_bins: Vec<f64>,
    /// Shadow steps: lowest share of mirrored rows on which the candidate predicts
    /// the same class as stable (0.95 = 95%).
    pub min_agreement: f64,
    /// Shadow steps: highest mean absolute difference between the candidate's and
    /// stable's probabilities on the same rows.
    pub max_probability_diff: f64,
    /// Regressors (one number per row, no label), shadow steps: highest mean
    /// absolute difference between the candidate's and stable's values on the same
    /// rows, relative to the mean absolute value of stable's (0.2 = 20%).
    pub max_relative_diff: f64,
    /// Regressors: highest bias, relative to the mean absolute value of stable's
    /// (0.1 = 10%). Shadow steps: the mean signed difference of the candidate's
    /// values from stable's on the same rows (a confidence sequence of the mean);
    /// live steps, with `drift` on: the difference of the two variants' means
    /// (a confidence sequence of each).
    pub max_relative_bias: f64,
    /// Judge accuracy from feedback labels (`POST /feedback` on the gateway): the
    /// gateway remembers each answer's predicted classes by its `x-request-id`.
    pub feedback: bool,
    /// Fewest labelled rows on the candidate in a step before accuracy is judged
    /// (fewer: inconclusive, which waits up to `max_inconclusive`).
    pub min_labels: u64,
    /// Lowest accuracy of the candidate on labelled rows (0.9 = 90%); unset: none.
    pub min_accuracy: Option<f64>,
    /// Largest drop of the candidate's accuracy below stable's over the same window
    /// (0.05 = 5 points), judged when stable has `min_labels` labelled rows too.
    pub max_accuracy_drop: Option<f64>,
}

impl Default for Analysis {
    fn default() -> Self {
        Analysis {
            enabled: true,
            interval: Dur(Duration::from_secs(1)),
            max_error_rate: 0.01,
            max_p99_ms: 250.0,
            max_p95_ms: None,
            max_p50_ms: None,
            min_requests: 20,
            max_inconclusive: Dur(Duration::from_secs(60)),
            failure_limit: 0,
            consecutive_failures: 0,
            compare_errors: true,
            error_tolerance: 0.005,
            compare_latency: true,
            confidence: 0.95,
            alpha: 0.01,
            tolerance: 0.5,
            latency_slack_ms: 5.0,
            drift: true,
            max_psi: 0.25,
            drift_bins: Vec::new(),
            min_agreement: 0.95,
            max_probability_diff: 0.1,
            max_relative_diff: 0.2,
            max_relative_bias: 0.1,
            feedback: false,
            min_labels: 50,
            min_accuracy: None,
            max_accuracy_drop: Some(0.05),
        }
    }
}

/// Per-environment overrides of [`Analysis`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisOverride {
    pub enabled: Option<bool>,
    pub interval: Option<Dur>,
    pub max_error_rate: Option<f64>,
    pub max_p99_ms: Option<f64>,
    pub max_p95_ms: Option<f64>,
    pub max_p50_ms: Option<f64>,
    pub min_requests: Option<u64>,
    pub max_inconclusive: Option<Dur>,
    pub failure_limit: Option<u32>,
    pub consecutive_failures: Option<u32>,
    pub compare_errors: Option<bool>,
    pub error_tolerance: Option<f64>,
    pub compare_latency: Option<bool>,
    pub confidence: Option<f64>,
    pub alpha: Option<f64>,
    pub tolerance: Option<f64>,
    pub latency_slack_ms: Option<f64>,
    pub drift: Option<bool>,
    pub max_psi: Option<f64>,
    pub drift_bins: Option<Vec<f64>>,
    pub min_agreement: Option<f64>,
    pub max_probability_diff: Option<f64>,
    pub max_relative_diff: Option<f64>,
    pub max_relative_bias: Option<f64>,
    pub feedback: Option<bool>,
    pub min_labels: Option<u64>,
    pub min_accuracy: Option<f64>,
    pub max_accuracy_drop: Option<f64>,
}

impl Analysis {
    pub fn with(&self, o: &AnalysisOverride) -> Analysis {
        Analysis {
            enabled: o.enabled.unwrap_or(self.enabled),
            interval: o.interval.unwrap_or(self.interval),
            max_error_rate: o.max_error_rate.unwrap_or(self.max_error_rate),
            max_p99_ms: o.max_p99_ms.unwrap_or(self.max_p99_ms),
            max_p95_ms: o.max_p95_ms.or(self.max_p95_ms),
            max_p50_ms: o.max_p50_ms.or(self.max_p50_ms),
            min_requests: o.min_requests.unwrap_or(self.min_requests),
            max_inconclusive: o.max_inconclusive.unwrap_or(self.max_inconclusive),
            failure_limit: o.failure_limit.unwrap_or(self.failure_limit),
            consecutive_failures: o.consecutive_failures.unwrap_or(self.consecutive_failures),
            compare_errors: o.compare_errors.unwrap_or(self.compare_errors),
            error_tolerance: o.error_tolerance.unwrap_or(self.error_tolerance),
            compare_latency: o.compare_latency.unwrap_or(self.compare_latency),
            confidence: o.confidence.unwrap_or(self.confidence),
            alpha: o.alpha.unwrap_or(self.alpha),
            tolerance: o.tolerance.unwrap_or(self.tolerance),
            latency_slack_ms: o.latency_slack_ms.unwrap_or(self.latency_slack_ms),
            drift: o.drift.unwrap_or(self.drift),
            max_psi: o.max_psi.unwrap_or(self.max_psi),
            drift_bins: o
                .drift_bins
                .clone()
                .unwrap_or_else(|| self.drift_bins.clone()),
            min_agreement: o.min_agreement.unwrap_or(self.min_agreement),
            max_probability_diff: o.max_probability_diff.unwrap_or(self.max_probability_diff),
            max_relative_diff: o.max_relative_diff.unwrap_or(self.max_relative_diff),
            max_relative_bias: o.max_relative_bias.unwrap_or(self.max_relative_bias),
            feedback: o.feedback.unwrap_or(self.feedback),
            min_labels: o.min_labels.unwrap_or(self.min_labels),
            min_accuracy: o.min_accuracy.or(self.min_accuracy),
            max_accuracy_drop: o.max_accuracy_drop.or(self.max_accuracy_drop),
        }
    }
}
