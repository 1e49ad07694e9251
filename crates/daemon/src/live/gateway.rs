//! Live metrics from hoist's gateway: its counters (both variants, mirrored answers,
//! feedback labels) and the model servers' predicted-class counters. The gateway is
//! this process's on one machine, or `hoist gateway` on a cluster (`split = "hoist"`,
//! read through its admin API): the same counters, judged the same way.

use crate::views::WindowOf;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use hoist_gateway::{Gateway, ShadowStats, Snapshot, VariantStats};
use hoist_release::analysis::sequential::Sums;
use hoist_release::analysis::{self, Window};
use hoist_release::config::Analysis;
use hoist_release::machine::Verdict;

use super::{Judged, LiveMetrics, StepShape, worse};
use crate::target::gateway_admin::GatewayAdmin;
use crate::views::WindowView;

/// Where a step's gateway counters come from.
#[derive(Clone)]
pub enum Counters {
    /// This process's gateway.
    Local(Gateway),
    /// `hoist gateway` on a cluster, through its admin API.
    Remote(Arc<GatewayAdmin>),
}

impl Counters {
    /// The counters now and the id of the gateway process that counted them.
    async fn read(&self) -> Result<(String, Snapshot), String> {
        match self {
            Counters::Local(g) => Ok((String::new(), g.metrics())),
            Counters::Remote(a) => a.snapshot().await,
        }
    }
}

/// A step's metrics from hoist's gateway.
pub struct GatewayMetrics {
    gateway: Counters,
    /// The release's model: a server serving several models (or an older one
    /// without the label) counts only this one's predictions.
    model: String,
    http: reqwest::Client,
    /// Each variant's servers, whose predicted classes drift compares.
    candidate_addrs: Vec<SocketAddr>,
    stable_addrs: Vec<SocketAddr>,
    /// Count predicted classes from the answers the gateway read, not the servers'
    /// counters: a variant is served by a server without them (MLflow's).
    classes_from_gateway: bool,
    shape: StepShape,
    /// The gateway's counters when the step began (and its process's id).
    baseline: Option<(String, Snapshot)>,
    /// The servers' class counts when the step began (drift only).
    classes0: Option<(Vec<u64>, Vec<u64>)>,
}

impl GatewayMetrics {
    pub fn new(
        gateway: Counters,
        model: String,
        http: reqwest::Client,
        candidate_addrs: Vec<SocketAddr>,
        stable_addrs: Vec<SocketAddr>,
        classes_from_gateway: bool,
        shape: StepShape,
    ) -> GatewayMetrics {
        GatewayMetrics {
            gateway,
            model,
            http,
            candidate_addrs,
            stable_addrs,
            classes_from_gateway,
            shape,
            baseline: None,
            classes0: None,
        }
    }

    async fn classes(&self) -> Option<(Vec<u64>, Vec<u64>)> {
        if self.classes_from_gateway {
            let (_, snap) = self.gateway.read().await.ok()?;
            let padded = |c: &[u64]| {
                let mut c = c.to_vec();
                c.resize(hoist_types::wire::PREDICTION_CLASSES + 1, 0);
                c
            };
            return Some((
                padded(&snap.candidate.classes),
                padded(&snap.stable.classes),
            ));
        }
        Some((
            predictions(&self.http, &self.candidate_addrs, &self.model).await?,
            predictions(&self.http, &self.stable_addrs, &self.model).await?,
        ))
    }
}

impl LiveMetrics for GatewayMetrics {
    fn begin<'a>(&'a mut self, analysis: &'a Analysis) -> BoxFuture<'a, ()> {
        async move {
            self.baseline = self.gateway.read().await.ok();
            if analysis.drift && self.shape.live {
                self.classes0 = self.classes().await;
            }
        }
        .boxed()
    }

    fn judge<'a>(&'a mut self, analysis: &'a Analysis, elapsed: Duration) -> BoxFuture<'a, Judged> {
        async move {
            let (instance, now) = match self.gateway.read().await {
                Ok(n) => n,
                Err(e) => return unjudged(format!("the gateway's counters cannot be read: {e}")),
            };
            let snap = match &self.baseline {
                Some((i, b)) if *i == instance => now.since(b),
                Some(_) => {
                    // A new gateway process (a restarted pod): zeroed counters, and
                    // back at 100% stable until it is given the split again.
                    self.baseline = Some((instance, now));
                    if let Counters::Remote(a) = &self.gateway
                        && let Err(e) = a.reassert().await
                    {
                        return unjudged(format!(
                            "the gateway restarted and cannot be set again: {e}"
                        ));
                    }
                    return unjudged(
                        "the gateway restarted: its counters start again from now".into(),
                    );
                }
                None => {
                    // The counters could not be read when the step began: count
                    // from now rather than judge what came before the step.
                    self.baseline = Some((instance, now));
                    return unjudged("the gateway's counters start from now".into());
                }
            };
            let live = self.shape.live;
            let mut judged = if live {
                analysis::judge_live(analysis, &live_window(&snap))
            } else {
                analysis::LiveJudgement {
                    verdict: Verdict::Pass,
                    numbers: Default::default(),
                }
            };
            // A regressor's values on live traffic (the gateway reads them while a
            // candidate takes a share): bias and distribution against stable's.
            if live && snap.candidate.values.rows > 0 && snap.stable.values.rows > 0 {
                let sample = |v: &hoist_gateway::LiveValues| {
                    (
                        Sums {
                            n: v.rows,
                            sum: v.sum,
                            sum_squares: v.sum_squares,
                        },
                        v.recent.clone(),
                    )
                };
                let (cs, cr) = sample(&snap.candidate.values);
                let (ss, sr) = sample(&snap.stable.values);
                let (v, n) = analysis::judge_live_values(
                    analysis,
                    &analysis::ValuesSample {
                        sums: ss,
                        recent: &sr,
                    },
                    &analysis::ValuesSample {
                        sums: cs,
                        recent: &cr,
                    },
                );
                judged.numbers.insert("values".into(), n);
                judged.verdict = worse(judged.verdict, v);
            }
            if self.shape.shadow {
                let (v, n) = judge_shadow(analysis, &snap.shadow);
                judged.numbers.insert("shadow".into(), n);
                judged.verdict = worse(judged.verdict, v);
            }
            if live && analysis.feedback {
                let (v, n) = judge_feedback(analysis, &snap);
                judged.numbers.insert("feedback".into(), n);
                judged.verdict = worse(judged.verdict, v);
            }
            // The candidate's predicted classes against stable's (the servers'
            // counters, read only when everything else passed).
            if judged.verdict == Verdict::Pass
                && let Some((c0, s0)) = &self.classes0
                && let Some((c1, s1)) = self.classes().await
            {
                let diff = |a: &[u64], b: &[u64]| -> Vec<u64> {
                    a.iter().zip(b).map(|(x, y)| x.saturating_sub(*y)).collect()
                };
                let (s, c) = (diff(&s1, s0), diff(&c1, c0));
                // A regressor read by the gateway has values, not classes: its
                // values are judged above, and there is no class to drift.
                let values_only = self.classes_from_gateway
                    && s.iter().chain(&c).all(|n| *n == 0)
                    && snap.candidate.values.rows + snap.stable.values.rows > 0;
                if !values_only {
                    judged.drift(analysis, &s, &c);
                }
            }
            if matches!(judged.verdict, Verdict::Inconclusive { .. }) {
                let shadow = &snap.shadow.answers;
                let compared = shadow.ok.saturating_sub(snap.shadow.unreadable);
                let mut kinds = Vec::new();
                if live {
                    kinds.push((
                        snap.candidate.requests,
                        analysis.min_requests,
                        "candidate requests",
                    ));
                    if analysis.feedback {
                        kinds.push((
                            snap.candidate.labelled,
                            analysis.min_labels.max(1),
                            "labelled candidate rows",
                        ));
                    }
                }
                if self.shape.shadow {
                    kinds.push((
                        compared,
                        analysis.min_requests,
                        "compared mirrored requests",
                    ));
                }
                if let Some((needed, of, per_second, eta)) =
                    analysis::evidence_needed(&kinds, elapsed.as_secs_f64())
                {
                    judged.numbers.insert(
                        "evidence".into(),
                        serde_json::json!({
                            "needed": needed, "of": of,
                            "per_second": per_second, "eta_seconds": eta,
                        }),
                    );
                }
            }
            let mut numbers = serde_json::Value::Object(judged.numbers);
            numbers["candidate"] = serde_json::json!(WindowView::of(&snap.candidate));
            numbers["stable"] = serde_json::json!(WindowView::of(&snap.stable));
            Judged {
                verdict: judged.verdict,
                window: WindowView::of(&snap.candidate),
                numbers,
            }
        }
        .boxed()
    }
}

/// An inconclusive measurement: nothing could be judged, for `reason`.
fn unjudged(reason: String) -> Judged {
    Judged {
        verdict: Verdict::Inconclusive { reason },
        window: WindowView::default(),
        numbers: serde_json::json!({}),
    }
}

/// Both variants' live numbers of a gateway window, for [`analysis::judge_live`].
fn live_window(snap: &Snapshot) -> analysis::Live {
    let window = |v: &VariantStats| Window {
        requests: v.requests,
        errors: v.server_errors + v.upstream_errors,
        client_errors: v.client_errors,
        p50_seconds: v.quantile(0.5),
        p95_seconds: v.quantile(0.95),
        p99_seconds: v.quantile(0.99),
    };
    analysis::Live {
        candidate: window(&snap.candidate),
        stable: window(&snap.stable),
        candidate_latencies: snap.candidate.latency_samples(),
        stable_latencies: snap.stable.latency_samples(),
        candidate_codes: snap.candidate.error_codes.clone(),
        stable_codes: snap.stable.error_codes.clone(),
    }
}

/// A shadow step's verdict on the mirrored requests of a window, and its numbers.
fn judge_shadow(a: &Analysis, s: &ShadowStats) -> (Verdict, serde_json::Value) {
    // Stable answered every mirrored request 2xx: any other answer from the
    // candidate (4xx as well as 5xx) is a request it fails that stable serves.
    let v = &s.values;
    let w = analysis::ShadowWindow {
        mirrored: s.answers.requests,
        errors: s.answers.client_errors
            + s.answers.server_errors
            + s.answers.upstream_errors
            + s.unreadable,
        codes: s.answers.error_codes.clone(),
        rows: s.rows,
        agreeing_rows: s.agreeing_rows,
        probabilities: s.probabilities,
        probability_diff_sum: s.probability_diff_sum,
        differences: Sums {
            n: v.rows,
            sum: v.diff_sum,
            sum_squares: v.diff_squares,
        },
        abs_differences: Sums {
            n: v.rows,
            sum: v.abs_diff_sum,
            sum_squares: v.diff_squares,
        },
        stable_abs_sum: v.stable_abs_sum,
        p99_seconds: s.answers.quantile(0.99),
        latencies: s.answers.latency_samples(),
    };
    let mean = |sum: f64| (v.rows > 0).then(|| sum / v.rows as f64);
    let numbers = serde_json::json!({
        "mirrored": w.mirrored,
        "errors": w.errors,
        "error_codes": w.codes.iter().map(|(c, n)| (c.to_string(), serde_json::json!(n))).collect::<serde_json::Map<_, _>>(),
        "unreadable": s.unreadable,
        "rows": w.rows,
        "agreeing_rows": w.agreeing_rows,
        "agreement": w.agreement(),
        "mean_probability_diff": w.mean_probability_diff(),
        "values": (v.rows > 0).then(|| serde_json::json!({
            "rows": v.rows,
            "mean_abs_diff": mean(v.abs_diff_sum),
            "bias": mean(v.diff_sum),
            "stable_mean_abs": mean(v.stable_abs_sum),
        })),
        "p99_ms": w.p99_seconds.map(|p| p * 1000.0),
    });
    (analysis::judge_shadow(a, &w), numbers)
}

/// Accuracy from feedback labels over a window, and its numbers.
fn judge_feedback(a: &Analysis, snap: &Snapshot) -> (Verdict, serde_json::Value) {
    let labels = |v: &VariantStats| analysis::Labels {
        labelled: v.labelled,
        correct: v.correct,
    };
    let (c, s) = (labels(&snap.candidate), labels(&snap.stable));
    let numbers = serde_json::json!({
        "candidate": { "labelled": c.labelled, "correct": c.correct, "accuracy": c.accuracy() },
        "stable": { "labelled": s.labelled, "correct": s.correct, "accuracy": s.accuracy() },
    });
    (analysis::judge_feedback(a, &c, &s), numbers)
}

/// Whether a series line is `model`'s: its `model` label is `model`, or it has none.
fn of_model(line: &str, model: &str) -> bool {
    let labels = line.split_once('{').and_then(|(_, r)| r.split_once('}'));
    match labels.and_then(|(l, _)| l.split("model=\"").nth(1)) {
        Some(rest) => rest.split('"').next() == Some(model),
        None => true,
    }
}

/// The predicted-class counts of a deployment's servers (summed), from their
/// `hoist_predictions_total` series of `model` (a series without a `model` label
/// counts too: a server that serves one model); `None` when a server cannot be read.
async fn predictions(
    http: &reqwest::Client,
    addrs: &[SocketAddr],
    model: &str,
) -> Option<Vec<u64>> {
    if addrs.is_empty() {
        return None;
    }
    let mut counts = vec![0u64; hoist_types::wire::PREDICTION_CLASSES + 1];
    for a in addrs {
        let text = http
            .get(format!("http://{a}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        for line in text
            .lines()
            .filter(|l| l.starts_with("hoist_predictions_total{"))
            .filter(|l| of_model(l, model))
        {
            let class = line
                .split("class=\"")
                .nth(1)
                .and_then(|r| r.split('"').next());
            let n = line.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok());
            if let (Some(class), Some(n)) = (class, n) {
                let i = class
                    .parse::<usize>()
                    .unwrap_or(hoist_types::wire::PREDICTION_CLASSES);
                if let Some(slot) = counts.get_mut(i) {
                    *slot += n;
                }
            }
        }
    }
    Some(counts)
}

#[cfg(test)]
mod tests {
    use super::of_model;

    #[test]
    fn predictions_are_counted_for_the_release_model_only() {
        let a = r#"hoist_predictions_total{model="fraud",class="1"} 7"#;
        assert!(of_model(a, "fraud"));
        assert!(!of_model(a, "fraud2"));
        assert!(!of_model(a, "churn"));
        assert!(of_model(r#"hoist_predictions_total{class="1"} 7"#, "churn"));
    }
}
