//! Per-variant request metrics: lock-free counters on the request path, cheap
//! snapshots for the release engine's analysis, Prometheus text for `/metrics`.
//!
//! Counters live per (variant, version) so the Prometheus series carry the version
//! that really answered; a [`Snapshot`] sums them per variant, so it only grows and
//! [`Snapshot::since`] gives the traffic of a window.
//!
//! Requests the force header sent (`x-hoist-variant: candidate`) are served but
//! counted apart, in [`Snapshot::forced`] and `hoist_gateway_forced_requests_total`:
//! any client can send them, so they must never move the numbers a release is judged
//! on (`Snapshot::stable`/`candidate`, `hoist_gateway_requests_total`,
//! `hoist_gateway_request_duration_seconds`, feedback labels, shadow comparisons).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::split::Variant;

/// Upper bounds (seconds) of the latency histogram: 50 µs × 1.25^k to about a
/// minute, rounded to three significant digits. One more bucket, `+Inf`, is implied:
/// [`VariantStats::latency_buckets`] has `LATENCY_BUCKETS.len() + 1` entries.
pub const LATENCY_BUCKETS: &[f64] = &[
    5e-05, 6.25e-05, 7.81e-05, 9.77e-05, 0.000122, 0.000153, 0.000191, 0.000238, 0.000298,
    0.000373, 0.000466, 0.000582, 0.000728, 0.000909, 0.00114, 0.00142, 0.00178, 0.00222, 0.00278,
    0.00347, 0.00434, 0.00542, 0.00678, 0.00847, 0.0106, 0.0132, 0.0165, 0.0207, 0.0258, 0.0323,
    0.0404, 0.0505, 0.0631, 0.0789, 0.0986, 0.123, 0.154, 0.193, 0.241, 0.301, 0.376, 0.47, 0.588,
    0.735, 0.918, 1.15, 1.43, 1.79, 2.24, 2.8, 3.5, 4.38, 5.47, 6.84, 8.55, 10.7, 13.4, 16.7, 20.9,
    26.1, 32.6, 40.8, 51.0, 63.7,
];

/// Most samples [`VariantStats::latency_samples`] returns.
const MAX_SAMPLES: u64 = 10_000;

/// The counters of one variant over some time (since start, or a window).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VariantStats {
    /// Completed requests routed to this variant (every class below).
    pub requests: u64,
    /// Answers 1xx–3xx from the backend.
    pub ok: u64,
    /// 4xx from the backend.
    pub client_errors: u64,
    /// 5xx from the backend.
    pub server_errors: u64,
    /// The backend was unreachable or failed mid-response (the gateway answered 502,
    /// or cut the response short).
    pub upstream_errors: u64,
    /// Sum of request durations (first byte in to last byte out), seconds.
    pub latency_sum_seconds: f64,
    /// Per-bucket (not cumulative) counts over [`LATENCY_BUCKETS`], then `+Inf`.
    /// Empty in a default value.
    pub latency_buckets: Vec<u64>,
    /// Rows of this variant's answers that got a feedback label (`POST /feedback`),
    /// and how many of them it had predicted right.
    pub labelled: u64,
    pub correct: u64,
    /// Error answers (4xx and 5xx from the backend) by status code, ascending, each
    /// with its count: a failure's reason names them ("400 on 31").
    pub error_codes: Vec<(u16, u64)>,
    /// A regressor's live answers (`Routes::values`): one value per row.
    pub values: LiveValues,
    /// A classifier's live answers (`Routes::values`): rows per predicted class,
    /// indexed as hoist-server's `hoist_predictions_total` is (a label `0` to
    /// `PREDICTION_CLASSES - 1` is its own slot, any other label the last one).
    /// For drift when the servers count nothing themselves (MLflow's scoring
    /// server). Empty until a class was read.
    pub classes: Vec<u64>,
}

/// The values a variant answered on live traffic (a regressor's, one per row):
/// their running sums over every row, and the latest [`RECENT_VALUES`] of them in
/// the order they were answered.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LiveValues {
    /// Rows, Σv and Σv² over all of them.
    pub rows: u64,
    pub sum: f64,
    pub sum_squares: f64,
    /// The latest rows' values, oldest first (at most [`RECENT_VALUES`]; fewer
    /// than `rows` once that many have been answered).
    pub recent: Vec<f64>,
}

/// How many of a variant's latest live values are kept for comparing distributions
/// (quantile bins): enough for a PSI over ten bins to resolve a few points.
pub const RECENT_VALUES: usize = 4096;

impl LiveValues {
    /// The rows answered between `earlier` and `self`: sums subtracted, and of the
    /// recent values those answered since.
    pub fn since(&self, earlier: &LiveValues) -> LiveValues {
        let rows = self.rows.saturating_sub(earlier.rows);
        let keep = usize::try_from(rows)
            .unwrap_or(usize::MAX)
            .min(self.recent.len());
        LiveValues {
            rows,
            sum: self.sum - earlier.sum,
            sum_squares: (self.sum_squares - earlier.sum_squares).max(0.0),
            recent: self.recent[self.recent.len() - keep..].to_vec(),
        }
    }

    fn add(&mut self, o: &LiveValues) {
        self.rows += o.rows;
        self.sum += o.sum;
        self.sum_squares += o.sum_squares;
        self.recent.extend_from_slice(&o.recent);
        if self.recent.len() > RECENT_VALUES {
            self.recent.drain(..self.recent.len() - RECENT_VALUES);
        }
    }

    fn record(&mut self, values: &[f64]) {
        for &v in values.iter().filter(|v| v.is_finite()) {
            self.rows += 1;
            self.sum += v;
            self.sum_squares += v * v;
            self.recent.push(v);
        }
        if self.recent.len() > 2 * RECENT_VALUES {
            self.recent.drain(..self.recent.len() - RECENT_VALUES);
        }
    }
}

impl VariantStats {
    /// The traffic between `earlier` and `self` (counters saturate at 0).
    pub fn since(&self, earlier: &VariantStats) -> VariantStats {
        let buckets = self
            .latency_buckets
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(earlier.latency_buckets.get(i).copied().unwrap_or(0)))
            .collect();
        VariantStats {
            requests: self.requests.saturating_sub(earlier.requests),
            ok: self.ok.saturating_sub(earlier.ok),
            client_errors: self.client_errors.saturating_sub(earlier.client_errors),
            server_errors: self.server_errors.saturating_sub(earlier.server_errors),
            upstream_errors: self.upstream_errors.saturating_sub(earlier.upstream_errors),
            latency_sum_seconds: (self.latency_sum_seconds - earlier.latency_sum_seconds).max(0.0),
            latency_buckets: buckets,
            labelled: self.labelled.saturating_sub(earlier.labelled),
            correct: self.correct.saturating_sub(earlier.correct),
            error_codes: self
                .error_codes
                .iter()
                .map(|&(code, n)| {
                    let before = earlier
                        .error_codes
                        .iter()
                        .find(|(c, _)| *c == code)
                        .map_or(0, |(_, n)| *n);
                    (code, n.saturating_sub(before))
                })
                .filter(|(_, n)| *n > 0)
                .collect(),
            values: self.values.since(&earlier.values),
            classes: self
                .classes
                .iter()
                .enumerate()
                .map(|(i, n)| n.saturating_sub(earlier.classes.get(i).copied().unwrap_or(0)))
                .collect(),
        }
    }

    /// `(server_errors + upstream_errors) / requests`; 0 without requests.
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            (self.server_errors + self.upstream_errors) as f64 / self.requests as f64
        }
    }

    /// Mean latency in seconds; `None` without requests.
    pub fn mean_latency(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.latency_sum_seconds / self.requests as f64)
    }

    /// The `q`-quantile (0..=1) of latency in seconds, interpolated linearly inside
    /// its bucket (as Prometheus' `histogram_quantile`); values in the `+Inf` bucket
    /// report the largest finite bound. `None` without requests.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.latency_buckets.iter().sum();
        if total == 0 || q.is_nan() {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut seen = 0u64;
        for (i, &n) in self.latency_buckets.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if (seen + n) as f64 >= rank {
                let Some(&upper) = LATENCY_BUCKETS.get(i) else {
                    return LATENCY_BUCKETS.last().copied();
                };
                let lower = if i == 0 { 0.0 } else { LATENCY_BUCKETS[i - 1] };
                let within = ((rank - seen as f64) / n as f64).clamp(0.0, 1.0);
                return Some(lower + (upper - lower) * within);
            }
            seen += n;
        }
        LATENCY_BUCKETS.last().copied()
    }

    /// Latencies (seconds) reconstructed from the histogram: each bucket's midpoint
    /// repeated by its count, scaled down to at most 10 000 values in all. For rank
    /// tests between variants.
    pub fn latency_samples(&self) -> Vec<f64> {
        let total: u64 = self.latency_buckets.iter().sum();
        let scale = if total > MAX_SAMPLES {
            MAX_SAMPLES as f64 / total as f64
        } else {
            1.0
        };
        let mut out = Vec::with_capacity(total.min(MAX_SAMPLES) as usize + 1);
        for (i, &n) in self.latency_buckets.iter().enumerate() {
            let k = (n as f64 * scale).round() as usize;
            let lower = if i == 0 { 0.0 } else { LATENCY_BUCKETS[i - 1] };
            let mid = match LATENCY_BUCKETS.get(i) {
                Some(upper) => (lower + upper) / 2.0,
                None => lower,
            };
            out.extend(std::iter::repeat_n(mid, k));
        }
        out.truncate(MAX_SAMPLES as usize);
        out
    }
}

/// Both variants' counters at one moment. Cumulative since the gateway started.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// Requests the split sent to the stable upstream (forced ones excluded).
    pub stable: VariantStats,
    /// Requests the split sent to the candidate upstream (forced ones excluded).
    pub candidate: VariantStats,
    /// The candidate's answers to requests mirrored from stable (shadow steps).
    pub shadow: ShadowStats,
    /// Requests the force header sent, per variant that served them. Never part of
    /// `stable` or `candidate`: not for judging a release.
    pub forced: ForcedStats,
}

/// Requests sent to a variant by the force header, counted apart from the split.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ForcedStats {
    pub stable: VariantStats,
    pub candidate: VariantStats,
}

impl ForcedStats {
    /// The forced traffic between `earlier` and `self`.
    pub fn since(&self, earlier: &ForcedStats) -> ForcedStats {
        ForcedStats {
            stable: self.stable.since(&earlier.stable),
            candidate: self.candidate.since(&earlier.candidate),
        }
    }

    /// One variant's forced requests.
    pub fn get(&self, v: Variant) -> &VariantStats {
        match v {
            Variant::Stable => &self.stable,
            Variant::Candidate => &self.candidate,
        }
    }
}

/// What the candidate answered to mirrored requests, compared with stable's answers
/// to the same requests.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShadowStats {
    /// The mirrored requests: classes of the candidate's answers and its latency.
    pub answers: VariantStats,
    /// Rows whose predicted classes were compared, and those where both agreed.
    pub rows: u64,
    pub agreeing_rows: u64,
    /// Probabilities compared, and the sum of their absolute differences.
    pub probabilities: u64,
    pub probability_diff_sum: f64,
    /// Successful candidate answers with no readable predictions where stable's had.
    pub unreadable: u64,
    /// Regressors: the rows' values compared as numbers.
    pub values: crate::inspect::ValueSums,
}

impl ShadowStats {
    /// The mirrored traffic between `earlier` and `self`.
    pub fn since(&self, earlier: &ShadowStats) -> ShadowStats {
        ShadowStats {
            answers: self.answers.since(&earlier.answers),
            rows: self.rows.saturating_sub(earlier.rows),
            agreeing_rows: self.agreeing_rows.saturating_sub(earlier.agreeing_rows),
            probabilities: self.probabilities.saturating_sub(earlier.probabilities),
            probability_diff_sum: (self.probability_diff_sum - earlier.probability_diff_sum)
                .max(0.0),
            unreadable: self.unreadable.saturating_sub(earlier.unreadable),
            values: self.values.since(&earlier.values),
        }
    }
}

impl Snapshot {
    /// The traffic between `earlier` and `self`.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot {
            stable: self.stable.since(&earlier.stable),
            candidate: self.candidate.since(&earlier.candidate),
            shadow: self.shadow.since(&earlier.shadow),
            forced: self.forced.since(&earlier.forced),
        }
    }

    /// One variant's counters.
    pub fn get(&self, v: Variant) -> &VariantStats {
        match v {
            Variant::Stable => &self.stable,
            Variant::Candidate => &self.candidate,
        }
    }

    fn get_mut(&mut self, v: Variant) -> &mut VariantStats {
        match v {
            Variant::Stable => &mut self.stable,
            Variant::Candidate => &mut self.candidate,
        }
    }
}

/// How one request ended, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// 1xx and 2xx.
    Success,
    Redirect,
    ClientError,
    ServerError,
    /// Unreachable backend, or a response cut short.
    Upstream,
}

impl Class {
    pub(crate) fn of_status(status: http::StatusCode) -> Class {
        match status.as_u16() {
            0..=299 => Class::Success,
            300..=399 => Class::Redirect,
            400..=499 => Class::ClientError,
            _ => Class::ServerError,
        }
    }

    const ALL: [Class; 5] = [
        Class::Success,
        Class::Redirect,
        Class::ClientError,
        Class::ServerError,
        Class::Upstream,
    ];

    fn label(self) -> &'static str {
        match self {
            Class::Success => "2xx",
            Class::Redirect => "3xx",
            Class::ClientError => "4xx",
            Class::ServerError => "5xx",
            Class::Upstream => "upstream",
        }
    }
}

/// Buckets per shard: the bounds, then `+Inf`.
const BUCKETS: usize = LATENCY_BUCKETS.len() + 1;

/// One worker thread's share of a [`Counters`], on cache lines of its own so two
/// threads counting at once never write to the same line.
#[repr(align(128))]
#[derive(Debug)]
struct Shard {
    /// Requests per [`Class`], in `Class::ALL` order.
    classes: [AtomicU64; 5],
    /// Sum of durations, nanoseconds.
    latency_sum_nanos: AtomicU64,
    /// One per `LATENCY_BUCKETS` bound, then `+Inf`.
    buckets: [AtomicU64; BUCKETS],
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            classes: Default::default(),
            latency_sum_nanos: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Live counters of one (variant, version). Only atomics, sharded per worker
/// thread: recording takes no lock and contends with no other thread.
#[derive(Debug)]
pub(crate) struct Counters {
    shards: Box<[Shard]>,
    /// Feedback: labelled rows, and rows predicted right (rare: not sharded).
    labelled: AtomicU64,
    correct: AtomicU64,
    /// Answers by status code from 400 to 599 (index: code - 400). Error answers
    /// only, so not sharded.
    codes: Box<[AtomicU64]>,
    /// A regressor's live values (only while `Routes::values` is on).
    values: std::sync::Mutex<LiveValues>,
    /// A classifier's rows per predicted class (only while `Routes::values` is on):
    /// see [`VariantStats::classes`].
    classes: Box<[AtomicU64]>,
}

/// The class slot of a predicted label: the label itself when it is a number from 0
/// to `PREDICTION_CLASSES - 1`, else the last slot (hoist-server's rule).
pub(crate) fn class_slot(label: &str) -> usize {
    const CLASSES: usize = hoist_types::wire::PREDICTION_CLASSES;
    label
        .parse::<usize>()
        .ok()
        .filter(|&i| i < CLASSES)
        .unwrap_or(CLASSES)
}

/// The error status codes counted one by one: 400 to 599.
const ERROR_CODES: std::ops::RangeInclusive<u16> = 400..=599;

impl Default for Counters {
    fn default() -> Self {
        Counters {
            shards: (0..crate::pool::SLOTS).map(|_| Shard::default()).collect(),
            labelled: AtomicU64::new(0),
            correct: AtomicU64::new(0),
            codes: ERROR_CODES.map(|_| AtomicU64::new(0)).collect(),
            values: Default::default(),
            classes: (0..=hoist_types::wire::PREDICTION_CLASSES)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

impl Counters {
    /// Counts one finished request.
    pub(crate) fn record(&self, class: Class, took: Duration) {
        let shard = &self.shards[crate::pool::slot()];
        shard.classes[class as usize].fetch_add(1, Relaxed);
        let secs = took.as_secs_f64();
        let i = LATENCY_BUCKETS.partition_point(|&b| b < secs);
        shard.buckets[i].fetch_add(1, Relaxed);
        shard
            .latency_sum_nanos
            .fetch_add(took.as_nanos().min(u128::from(u64::MAX)) as u64, Relaxed);
    }

    /// Counts one finished request that the backend answered with `status`: its
    /// class, and the code itself when it is an error (400 to 599).
    pub(crate) fn record_status(&self, status: u16, class: Class, took: Duration) {
        self.record(class, took);
        if ERROR_CODES.contains(&status) && matches!(class, Class::ClientError | Class::ServerError)
        {
            self.codes[usize::from(status - 400)].fetch_add(1, Relaxed);
        }
    }

    /// Counts feedback on `rows` labelled rows, `correct` of them predicted right.
    pub(crate) fn record_labels(&self, rows: u64, correct: u64) {
        self.labelled.fetch_add(rows, Relaxed);
        self.correct.fetch_add(correct, Relaxed);
    }

    /// Records the values of one answer of a regressor (non-finite ones skipped).
    pub(crate) fn record_values(&self, values: &[f64]) {
        self.values
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(values);
    }

    /// Counts the predicted classes of one answer of a classifier.
    pub(crate) fn record_classes(&self, labels: &[String]) {
        for l in labels {
            self.classes[class_slot(l)].fetch_add(1, Relaxed);
        }
    }

    /// Requests of one class, over all shards.
    fn class_count(&self, class: Class) -> u64 {
        self.shards
            .iter()
            .map(|s| s.classes[class as usize].load(Relaxed))
            .sum()
    }

    /// Adds these counters into `into`.
    pub(crate) fn add_to(&self, into: &mut VariantStats) {
        into.values
            .add(&self.values.lock().unwrap_or_else(|e| e.into_inner()));
        into.labelled += self.labelled.load(Relaxed);
        into.correct += self.correct.load(Relaxed);
        if self.classes.iter().any(|n| n.load(Relaxed) > 0) {
            if into.classes.len() < self.classes.len() {
                into.classes.resize(self.classes.len(), 0);
            }
            for (sum, n) in into.classes.iter_mut().zip(self.classes.iter()) {
                *sum += n.load(Relaxed);
            }
        }
        for (i, n) in self.codes.iter().enumerate() {
            let n = n.load(Relaxed);
            if n == 0 {
                continue;
            }
            let code = 400 + i as u16;
            match into.error_codes.binary_search_by_key(&code, |(c, _)| *c) {
                Ok(at) => into.error_codes[at].1 += n,
                Err(at) => into.error_codes.insert(at, (code, n)),
            }
        }
        let c: [u64; 5] = std::array::from_fn(|i| self.class_count(Class::ALL[i]));
        into.ok += c[Class::Success as usize] + c[Class::Redirect as usize];
        into.client_errors += c[Class::ClientError as usize];
        into.server_errors += c[Class::ServerError as usize];
        into.upstream_errors += c[Class::Upstream as usize];
        into.requests += c.iter().sum::<u64>();
        if into.latency_buckets.len() < BUCKETS {
            into.latency_buckets.resize(BUCKETS, 0);
        }
        for shard in &self.shards {
            into.latency_sum_seconds += shard.latency_sum_nanos.load(Relaxed) as f64 / 1e9;
            for (sum, b) in into.latency_buckets.iter_mut().zip(shard.buckets.iter()) {
                *sum += b.load(Relaxed);
            }
        }
    }
}

/// Every (variant, version) that has served, in first-seen order.
pub(crate) type Series = [(Variant, String, std::sync::Arc<Counters>)];

/// Sums the series per variant.
pub(crate) fn snapshot(series: &Series) -> Snapshot {
    let mut snap = Snapshot::default();
    for v in [Variant::Stable, Variant::Candidate] {
        snap.get_mut(v).latency_buckets = vec![0; LATENCY_BUCKETS.len() + 1];
    }
    for (variant, _, counters) in series {
        counters.add_to(snap.get_mut(*variant));
    }
    snap
}

/// Sums forced series per variant.
pub(crate) fn forced_snapshot(series: &Series) -> ForcedStats {
    let s = snapshot(series);
    ForcedStats {
        stable: s.stable,
        candidate: s.candidate,
    }
}

/// Appends `hoist_gateway_forced_requests_total`: requests the force header sent,
/// by the variant and version that served them and the class of the answer. Apart
/// from `hoist_gateway_requests_total`, so queries on that never see them.
pub(crate) fn render_forced(out: &mut String, labels: &str, series: &Series) {
    out.push_str(
        "# HELP hoist_gateway_forced_requests_total Requests the force header sent to a variant (served, but never part of hoist_gateway_requests_total or a release's analysis), by the variant and version that served them and the class of the answer.\n\
         # TYPE hoist_gateway_forced_requests_total counter\n",
    );
    for (variant, version, counters) in series {
        let version = escape(version);
        for class in Class::ALL {
            let _ = writeln!(
                out,
                "hoist_gateway_forced_requests_total{{{labels},variant=\"{variant}\",version=\"{version}\",class=\"{}\"}} {}",
                class.label(),
                counters.class_count(class)
            );
        }
    }
}

/// Prometheus text format 0.0.4.
pub(crate) fn render(labels: &str, series: &Series, candidate_weight: u32) -> String {
    let mut out = String::with_capacity(16 * 1024);
    out.push_str(
        "# HELP hoist_gateway_requests_total Requests the gateway completed, by the variant and version that served them and the class of the answer (upstream: backend unreachable or failed mid-response).\n\
         # TYPE hoist_gateway_requests_total counter\n",
    );
    for (variant, version, counters) in series {
        let version = escape(version);
        for class in Class::ALL {
            let _ = writeln!(
                out,
                "hoist_gateway_requests_total{{{labels},variant=\"{variant}\",version=\"{version}\",class=\"{}\"}} {}",
                class.label(),
                counters.class_count(class)
            );
        }
    }
    out.push_str(
        "# HELP hoist_gateway_request_duration_seconds Time from the request's arrival to the last byte of the answer.\n\
         # TYPE hoist_gateway_request_duration_seconds histogram\n",
    );
    let snap = snapshot(series);
    for variant in [Variant::Stable, Variant::Candidate] {
        let s = snap.get(variant);
        let mut cumulative = 0u64;
        for (i, n) in s.latency_buckets.iter().enumerate() {
            cumulative += n;
            let le = match LATENCY_BUCKETS.get(i) {
                Some(b) => format!("{b}"),
                None => "+Inf".to_string(),
            };
            let _ = writeln!(
                out,
                "hoist_gateway_request_duration_seconds_bucket{{{labels},variant=\"{variant}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "hoist_gateway_request_duration_seconds_sum{{{labels},variant=\"{variant}\"}} {}",
            s.latency_sum_seconds
        );
        let _ = writeln!(
            out,
            "hoist_gateway_request_duration_seconds_count{{{labels},variant=\"{variant}\"}} {cumulative}"
        );
    }
    out.push_str(
        "# HELP hoist_gateway_feedback_rows_total Rows labelled through POST /feedback, by the variant and version that predicted them and whether the prediction was right.\n\
         # TYPE hoist_gateway_feedback_rows_total counter\n",
    );
    for (variant, version, counters) in series {
        let version = escape(version);
        let labelled = counters.labelled.load(Relaxed);
        let correct = counters.correct.load(Relaxed);
        for (result, n) in [
            ("correct", correct),
            ("wrong", labelled.saturating_sub(correct)),
        ] {
            let _ = writeln!(
                out,
                "hoist_gateway_feedback_rows_total{{{labels},variant=\"{variant}\",version=\"{version}\",result=\"{result}\"}} {n}"
            );
        }
    }
    let _ = write!(
        out,
        "# HELP hoist_gateway_candidate_weight Percent of traffic routed to the candidate.\n\
         # TYPE hoist_gateway_candidate_weight gauge\n\
         hoist_gateway_candidate_weight{{{labels}}} {candidate_weight}\n"
    );
    out
}

/// Appends the shadow series (mirrored requests and how their answers compared).
pub(crate) fn render_shadow(out: &mut String, labels: &str, s: &ShadowStats) {
    let a = &s.answers;
    let _ = write!(
        out,
        "# HELP hoist_gateway_shadow_requests_total Requests mirrored to the candidate, by the class of its answer.\n\
         # TYPE hoist_gateway_shadow_requests_total counter\n\
         hoist_gateway_shadow_requests_total{{{labels},class=\"ok\"}} {}\n\
         hoist_gateway_shadow_requests_total{{{labels},class=\"4xx\"}} {}\n\
         hoist_gateway_shadow_requests_total{{{labels},class=\"5xx\"}} {}\n\
         hoist_gateway_shadow_requests_total{{{labels},class=\"upstream\"}} {}\n\
         # HELP hoist_gateway_shadow_rows_total Rows of mirrored answers compared with stable's, by whether the predicted classes agreed.\n\
         # TYPE hoist_gateway_shadow_rows_total counter\n\
         hoist_gateway_shadow_rows_total{{{labels},agreement=\"agree\"}} {}\n\
         hoist_gateway_shadow_rows_total{{{labels},agreement=\"disagree\"}} {}\n\
         # HELP hoist_gateway_shadow_probability_diff_sum Sum of absolute differences between the candidate's and stable's probabilities.\n\
         # TYPE hoist_gateway_shadow_probability_diff_sum counter\n\
         hoist_gateway_shadow_probability_diff_sum{{{labels}}} {}\n\
         # HELP hoist_gateway_shadow_probabilities_total Probabilities compared.\n\
         # TYPE hoist_gateway_shadow_probabilities_total counter\n\
         hoist_gateway_shadow_probabilities_total{{{labels}}} {}\n",
        a.ok,
        a.client_errors,
        a.server_errors,
        a.upstream_errors,
        s.agreeing_rows,
        s.rows.saturating_sub(s.agreeing_rows),
        s.probability_diff_sum,
        s.probabilities,
    );
}

/// The labels every series of one environment's gateway carries: `env="…"`.
pub(crate) fn env_labels(env: &str) -> String {
    format!("env=\"{}\"", escape(env))
}

/// The labels of one model's series behind a [`crate::Router`]: `env="…",model="…"`.
pub(crate) fn model_labels(env: &str, model: &str) -> String {
    format!("env=\"{}\",model=\"{}\"", escape(env), escape(model))
}

/// Joins several gateways' Prometheus texts into one: each family's `# HELP` and
/// `# TYPE` once, followed by every text's samples of it (the text format wants a
/// family's samples together, under one `TYPE`), families in first-seen order.
pub(crate) fn merge(texts: &[String]) -> String {
    // (family, its HELP and TYPE lines, its samples)
    let mut families: Vec<(&str, String, String)> = Vec::new();
    for text in texts {
        let mut at: Option<usize> = None;
        for line in text.lines() {
            if let Some(rest) = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "))
            {
                let name = rest.split(' ').next().unwrap_or("");
                let i = match families.iter().position(|f| f.0 == name) {
                    Some(i) => i,
                    None => {
                        families.push((name, String::new(), String::new()));
                        families.len() - 1
                    }
                };
                // The first text's headers serve for all.
                if !families[i].1.contains(line) {
                    families[i].1.push_str(line);
                    families[i].1.push('\n');
                }
                at = Some(i);
            } else if let Some(i) = at {
                families[i].2.push_str(line);
                families[i].2.push('\n');
            }
        }
    }
    let mut out = String::with_capacity(texts.iter().map(String::len).sum());
    for (_, headers, samples) in families {
        out.push_str(&headers);
        out.push_str(&samples);
    }
    out
}

/// Escapes a label value (backslash, quote, newline).
fn escape(s: &str) -> String {
    s.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ms(n: f64) -> Duration {
        Duration::from_secs_f64(n / 1000.0)
    }

    #[test]
    fn buckets_are_exponential_and_reach_a_minute() {
        assert!(LATENCY_BUCKETS[0] <= 50e-6);
        assert!(*LATENCY_BUCKETS.last().unwrap() >= 60.0);
        for w in LATENCY_BUCKETS.windows(2) {
            let r = w[1] / w[0];
            assert!((1.2..=1.3).contains(&r), "{w:?}");
        }
    }

    #[test]
    fn counts_classes_and_quantiles() {
        let c = Counters::default();
        for _ in 0..90 {
            c.record(Class::Success, ms(1.0));
        }
        for i in 0..5 {
            let code = if i < 4 { 400 } else { 404 };
            c.record_status(code, Class::ClientError, ms(2.0));
        }
        for _ in 0..3 {
            c.record_status(503, Class::ServerError, ms(100.0));
        }
        c.record(Class::Upstream, ms(0.5));
        c.record(Class::Redirect, ms(1.0));
        let series = vec![(Variant::Candidate, "2".to_string(), Arc::new(c))];
        let s = snapshot(&series);
        let v = s.get(Variant::Candidate);
        assert_eq!(v.requests, 100);
        assert_eq!(v.ok, 91);
        assert_eq!(v.client_errors, 5);
        assert_eq!(v.server_errors, 3);
        assert_eq!(v.upstream_errors, 1);
        assert_eq!(v.error_codes, [(400, 4), (404, 1), (503, 3)]);
        assert_eq!(
            v.since(&VariantStats {
                error_codes: vec![(400, 4), (503, 1)],
                ..VariantStats::default()
            })
            .error_codes,
            [(404, 1), (503, 2)]
        );
        assert!((v.error_rate() - 0.04).abs() < 1e-12);
        assert_eq!(s.stable.requests, 0);
        assert_eq!(s.stable.quantile(0.5), None);
        let p50 = v.quantile(0.5).unwrap();
        assert!((0.000909..=0.00114).contains(&p50), "{p50}");
        let p99 = v.quantile(0.99).unwrap();
        assert!((0.0789..=0.123).contains(&p99), "{p99}");
        assert!((v.latency_sum_seconds - (0.091 + 0.01 + 0.3 + 0.0005)).abs() < 1e-9);
        assert_eq!(v.latency_samples().len(), 100);
    }

    #[test]
    fn since_is_the_window() {
        let c = Arc::new(Counters::default());
        let series = vec![(Variant::Stable, "1".to_string(), c.clone())];
        c.record(Class::Success, ms(1.0));
        let before = snapshot(&series);
        c.record(Class::ServerError, ms(50.0));
        c.record(Class::ServerError, ms(50.0));
        let window = snapshot(&series).since(&before);
        assert_eq!(window.stable.requests, 2);
        assert_eq!(window.stable.server_errors, 2);
        assert_eq!(window.stable.ok, 0);
        assert_eq!(window.stable.error_rate(), 1.0);
        let q = window.stable.quantile(0.5).unwrap();
        assert!((0.0404..=0.0631).contains(&q), "{q}");
        assert_eq!(
            snapshot(&series).since(&Snapshot::default()),
            snapshot(&series)
        );
    }

    #[test]
    fn predicted_classes_are_counted_in_hoist_servers_slots() {
        let c = Arc::new(Counters::default());
        let series = vec![(Variant::Candidate, "2".to_string(), c.clone())];
        // Nothing read yet: no classes (drift then has nothing from the gateway).
        assert!(snapshot(&series).candidate.classes.is_empty());
        let labels = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        c.record_classes(&labels(&["1", "0", "1"]));
        let before = snapshot(&series);
        c.record_classes(&labels(&["1", "63", "64", "cat"]));
        let all = snapshot(&series).candidate.classes;
        assert_eq!(all.len(), hoist_types::wire::PREDICTION_CLASSES + 1);
        assert_eq!((all[0], all[1], all[63], all[64]), (1, 3, 1, 2));
        let window = snapshot(&series).since(&before).candidate.classes;
        assert_eq!((window[0], window[1], window[63], window[64]), (0, 1, 1, 2));
        assert_eq!(class_slot("07"), 7);
        assert_eq!(class_slot("-1"), hoist_types::wire::PREDICTION_CLASSES);
    }

    #[test]
    fn samples_are_capped() {
        let c = Counters::default();
        for _ in 0..30_000 {
            c.record(Class::Success, ms(3.0));
        }
        let s = snapshot(&[(Variant::Stable, "1".into(), Arc::new(c))]);
        let samples = s.stable.latency_samples();
        assert_eq!(samples.len(), 10_000);
        assert!(samples.iter().all(|&x| (0.00278..=0.00347).contains(&x)));
    }

    #[test]
    fn renders_prometheus_text() {
        let c = Counters::default();
        c.record(Class::Success, ms(1.0));
        let text = render(
            &env_labels("prod"),
            &[(Variant::Stable, "7".into(), Arc::new(c))],
            25,
        );
        assert!(text.contains(
            "hoist_gateway_requests_total{env=\"prod\",variant=\"stable\",version=\"7\",class=\"2xx\"} 1"
        ));
        assert!(text.contains(
            "hoist_gateway_request_duration_seconds_bucket{env=\"prod\",variant=\"stable\",le=\"+Inf\"} 1"
        ));
        assert!(text.contains(
            "hoist_gateway_request_duration_seconds_count{env=\"prod\",variant=\"candidate\"} 0"
        ));
        assert!(text.contains("hoist_gateway_candidate_weight{env=\"prod\"} 25"));
    }

    #[test]
    fn forced_series_render_apart() {
        let c = Counters::default();
        c.record(Class::ServerError, ms(1.0));
        let series = [(Variant::Candidate, "2".to_string(), Arc::new(c))];
        let mut text = String::new();
        render_forced(&mut text, &env_labels("prod"), &series);
        assert!(text.contains(
            "hoist_gateway_forced_requests_total{env=\"prod\",variant=\"candidate\",version=\"2\",class=\"5xx\"} 1"
        ));
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("hoist_gateway_requests_total"))
        );
        let f = forced_snapshot(&series);
        assert_eq!((f.candidate.requests, f.candidate.server_errors), (1, 1));
        assert_eq!(f.since(&f).candidate.requests, 0);
        assert_eq!(f.get(Variant::Stable).requests, 0);
    }

    #[test]
    fn the_series_are_named_as_the_wire_contract_says() {
        use hoist_types::wire::metrics as m;
        let c = Counters::default();
        c.record(Class::Success, ms(1.0));
        let series = [(Variant::Stable, "7".to_string(), Arc::new(c))];
        let mut text = render(&env_labels("prod"), &series, 25);
        render_forced(&mut text, &env_labels("prod"), &series);
        let labels = format!(
            "{{{}=\"prod\",{}=\"stable\",{}=\"7\",{}=\"2xx\"}}",
            m::LABEL_ENV,
            m::LABEL_VARIANT,
            m::LABEL_VERSION,
            m::LABEL_CLASS
        );
        for name in [m::GATEWAY_REQUESTS, m::GATEWAY_FORCED_REQUESTS] {
            assert!(text.contains(&format!("{name}{labels}")), "{name}: {text}");
        }
        for name in [
            format!("{}_bucket{{", m::GATEWAY_REQUEST_DURATION),
            format!("{}{{", m::GATEWAY_CANDIDATE_WEIGHT),
            format!("# TYPE {} counter", m::GATEWAY_FEEDBACK_ROWS),
        ] {
            assert!(text.contains(&name), "{name}: {text}");
        }
    }
}
