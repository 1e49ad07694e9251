//! What a verdict was based on: the `numbers` the daemon journals with each verdict
//! (and shows as [`VerdictView::numbers`](super::VerdictView::numbers)). The JSON is
//! free-form (the analysis decides what it measured), so every part is optional and
//! unknown parts are ignored: read it with [`VerdictNumbers::of`].

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VerdictNumbers {
    /// Each variant's traffic in the window.
    pub candidate: Option<WindowNumbers>,
    pub stable: Option<WindowNumbers>,
    /// Candidate against stable: error rates (`p`, `difference`) and latency (`p`,
    /// `median_ratio`).
    pub error_comparison: Option<Comparison>,
    pub latency_comparison: Option<Comparison>,
    pub drift: Option<Drift>,
    pub shadow: Option<ShadowNumbers>,
    pub feedback: Option<FeedbackNumbers>,
    /// An inconclusive step: the evidence still missing, and when it may arrive.
    pub evidence: Option<Evidence>,
}

/// How much more evidence an inconclusive step needs: `needed` more `of` (for
/// example 37 more "candidate requests"), arriving at `per_second`, so in about
/// `eta_seconds` (both unknown before any arrived).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Evidence {
    pub needed: u64,
    pub of: String,
    pub per_second: Option<f64>,
    pub eta_seconds: Option<f64>,
}

impl VerdictNumbers {
    /// The numbers in `v`; none when it is not an object of this shape.
    pub fn of(v: &serde_json::Value) -> VerdictNumbers {
        VerdictNumbers::deserialize(v).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowNumbers {
    pub requests: Option<u64>,
    pub errors: Option<u64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Comparison {
    /// The test's p-value.
    pub p: Option<f64>,
    /// Candidate's error rate minus stable's.
    pub difference: Option<f64>,
    /// Candidate's median latency over stable's.
    pub median_ratio: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Drift {
    /// Population stability index of the predicted classes.
    pub psi: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShadowNumbers {
    pub mirrored: Option<u64>,
    /// Share of compared rows whose predicted classes agreed.
    pub agreement: Option<f64>,
    pub rows: Option<u64>,
    pub mean_probability_diff: Option<f64>,
    pub errors: Option<u64>,
    /// Regressors: the values compared as numbers.
    pub values: Option<ValueNumbers>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ValueNumbers {
    pub rows: Option<u64>,
    /// Mean |candidate - stable|, mean (candidate - stable), mean |stable|.
    pub mean_abs_diff: Option<f64>,
    pub bias: Option<f64>,
    pub stable_mean_abs: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeedbackNumbers {
    pub candidate: Accuracy,
    pub stable: Accuracy,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Accuracy {
    pub accuracy: Option<f64>,
    pub correct: Option<u64>,
    pub labelled: Option<u64>,
}
