//! Live metrics on a cluster: each measurement is the step's window so far, from
//! Prometheus, judged as on one machine. Without Prometheus nothing can be judged:
//! inconclusive, so the step waits and then fails (never a silent pass).

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use hoist_release::config::Analysis;
use hoist_release::machine::Verdict;

use super::{Judged, LiveMetrics};
use crate::prometheus::{PrometheusSource, judge_from_prometheus};
use crate::views::WindowView;

/// A step's metrics from Prometheus (`None`: `kubernetes.prometheus_url` unset).
pub struct PrometheusMetrics {
    pub source: Option<Arc<PrometheusSource>>,
}

impl LiveMetrics for PrometheusMetrics {
    fn begin<'a>(&'a mut self, _: &'a Analysis) -> BoxFuture<'a, ()> {
        async {}.boxed()
    }

    fn judge<'a>(&'a mut self, analysis: &'a Analysis, elapsed: Duration) -> BoxFuture<'a, Judged> {
        async move {
            // Prometheus's rate windows need at least a couple of scrapes.
            let window = elapsed.max(Duration::from_secs(10));
            match &self.source {
                Some(p) => {
                    let j = judge_from_prometheus(p, analysis, window, None).await;
                    Judged {
                        verdict: j.verdict,
                        window: j.window,
                        numbers: j.numbers,
                    }
                }
                None => Judged {
                    verdict: Verdict::Inconclusive {
                        reason: "kubernetes.prometheus_url is not set: live metrics on a cluster come from Prometheus".into(),
                    },
                    window: WindowView::default(),
                    numbers: serde_json::json!({}),
                },
            }
        }
        .boxed()
    }
}
