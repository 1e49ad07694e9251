//! Live metrics and the one analysis loop that judges them.
//!
//! A step's traffic is measured by a [`LiveMetrics`] source its environment's target
//! hands out: hoist's gateway counters on one machine ([`gateway`]), Prometheus on a
//! cluster ([`prometheus`]). [`analyse`] asks it for a verdict every analysis interval
//! and reports each as a [`Cmd::Verdict`]; the judges themselves are pure
//! (`hoist_release::analysis`).

pub mod gateway;
pub mod prometheus;

use std::time::Duration;

use futures_util::future::BoxFuture;
use hoist_release::config::Analysis;
use hoist_release::machine::{ReleaseId, Verdict};
use tokio::sync::mpsc;

use crate::cmd::Cmd;
use crate::views::WindowView;

/// What a step sends the candidate: live traffic (a weight above 0) and/or mirrored
/// requests (a shadow step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepShape {
    pub live: bool,
    pub shadow: bool,
}

/// One measurement's verdict, the candidate's window, and every number it used.
#[derive(Debug, Clone)]
pub struct Judged {
    pub verdict: Verdict,
    pub window: WindowView,
    pub numbers: serde_json::Value,
}

/// A source of a step's live numbers.
pub trait LiveMetrics: Send {
    /// The step begins: take a baseline (called once, before the first interval).
    fn begin<'a>(&'a mut self, analysis: &'a Analysis) -> BoxFuture<'a, ()>;
    /// Judge everything since the baseline; `elapsed` is the time since the step began.
    fn judge<'a>(&'a mut self, analysis: &'a Analysis, elapsed: Duration) -> BoxFuture<'a, Judged>;
}

/// Where a step's verdicts go.
pub struct Step {
    pub id: ReleaseId,
    pub env: String,
    pub index: usize,
}

/// Judges a step every analysis interval until the engine stops listening (or aborts
/// the task when the step ends).
pub async fn analyse(
    mut source: Box<dyn LiveMetrics>,
    analysis: Analysis,
    step: Step,
    tx: mpsc::Sender<Cmd>,
) {
    let started = tokio::time::Instant::now();
    source.begin(&analysis).await;
    let mut tick = tokio::time::interval(analysis.interval.0);
    tick.tick().await;
    loop {
        tick.tick().await;
        let j = source.judge(&analysis, started.elapsed()).await;
        let sent = tx
            .send(Cmd::Verdict {
                id: step.id,
                env: step.env.clone(),
                step: step.index,
                verdict: j.verdict,
                window: j.window,
                numbers: j.numbers,
            })
            .await;
        if sent.is_err() {
            return;
        }
    }
}

/// The worse of two verdicts: a failure over an inconclusive one over a pass (the
/// first of two of a kind).
pub fn worse(a: Verdict, b: Verdict) -> Verdict {
    let rank = |v: &Verdict| match v {
        Verdict::Pass => 0,
        Verdict::Inconclusive { .. } => 1,
        Verdict::Fail { .. } => 2,
    };
    if rank(&b) > rank(&a) { b } else { a }
}
