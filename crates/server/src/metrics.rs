//! Prometheus metrics, kept in atomics so the request path takes no lock.
//!
//! Exposed on `GET /metrics` in the text exposition format: requests by route and
//! status code, request latency, inference time and batch sizes, requests in flight,
//! queue rejections, model load time and reloads, and each served model as an info
//! metric (`hoist_model_info{model,name,version,digest,runtime}`). Every series
//! carries a `model` label: the model a request named (`model=""` when it named none
//! the server knows), so one process serving many models reports each apart.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// The routes metrics are kept for; anything else counts as `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    V2Infer,
    /// `inference.GRPCInferenceService/ModelInfer` (gRPC).
    GrpcInfer,
    Invocations,
    PredictImage,
    V2Metadata,
    Health,
    Metrics,
    Admin,
    /// The repository extension: `/v2/repository/...`.
    Repository,
    Other,
}

/// The status codes a prediction route can answer, exposed at 0 before the first
/// one: Prometheus's `increase()` counts a series only from its first scrape, so a
/// series born with the first burst of 400s would lose that burst, and a candidate
/// failing every batch from its first request would look clean.
const EXPOSED_FROM_START: [u16; 8] = [200, 400, 404, 413, 415, 422, 500, 503];

impl Route {
    const ALL: [Route; 10] = [
        Route::V2Infer,
        Route::GrpcInfer,
        Route::Invocations,
        Route::PredictImage,
        Route::V2Metadata,
        Route::Health,
        Route::Metrics,
        Route::Admin,
        Route::Repository,
        Route::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            Route::V2Infer => "/v2/models/:model/infer",
            Route::GrpcInfer => "/inference.GRPCInferenceService/ModelInfer",
            Route::Invocations => "/invocations",
            Route::PredictImage => "/predict-image",
            Route::V2Metadata => "/v2/models/:model",
            Route::Health => "health",
            Route::Metrics => "/metrics",
            Route::Admin => "/admin",
            Route::Repository => "/v2/repository",
            Route::Other => "other",
        }
    }

    /// A prediction route: the routes a release's analysis counts.
    fn predicts(self) -> bool {
        matches!(
            self,
            Route::V2Infer | Route::GrpcInfer | Route::Invocations | Route::PredictImage
        )
    }

    /// Classifies a matched route template.
    pub fn of(matched: &str) -> Route {
        if matched.ends_with("/infer") {
            Route::V2Infer
        } else if matched.ends_with("/invocations") {
            Route::Invocations
        } else if matched == "/predict-image" {
            Route::PredictImage
        } else if matched.starts_with("/v2/models") {
            Route::V2Metadata
        } else if matched.starts_with("/v2/health")
            || matches!(matched, "/health" | "/ping" | "/v2" | "/version")
        {
            Route::Health
        } else if matched == "/metrics" {
            Route::Metrics
        } else if matched.starts_with("/admin") {
            Route::Admin
        } else if matched.starts_with("/v2/repository") {
            Route::Repository
        } else {
            Route::Other
        }
    }
}

/// A fixed-bucket histogram.
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum of observations, in millionths of the unit.
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add((v * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cum = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cum += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cum}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

const LATENCY_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

/// The model currently served, for `hoist_model_info`.
#[derive(Debug, Clone, Default)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    pub digest: String,
    pub runtime: String,
    /// The output whose classes `hoist_predictions_total` counts.
    pub label_output: Option<String>,
}

/// All of the server's metrics: one [`ModelMetrics`] per model name, and one for
/// the requests that name no model the server knows (health checks, `/metrics`,
/// 404s), exposed with `model=""`. Every series carries the `model` label.
pub struct Metrics {
    /// Requests that name no known model.
    unrouted: Arc<ModelMetrics>,
    /// By model name. A model's counters outlive an unload, so a reload does not
    /// reset them (counters never go down while the process lives).
    models: RwLock<BTreeMap<String, Arc<ModelMetrics>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            unrouted: Arc::new(ModelMetrics::new(String::new())),
            models: RwLock::new(BTreeMap::new()),
        }
    }
}

/// One model's metrics (or, with an empty name, those of requests naming none).
pub struct ModelMetrics {
    /// The `model` label value.
    name: String,
    /// Requests by route and status code (100–599).
    requests: Vec<Vec<AtomicU64>>,
    latency: Vec<Histogram>,
    inference: Histogram,
    batch_size: Histogram,
    in_flight: AtomicI64,
    rejected: AtomicU64,
    reload_ok: AtomicU64,
    reload_failed: AtomicU64,
    /// Microseconds the current model took to load.
    load_micros: AtomicU64,
    /// What is loaded now; `None` before the first load and after an unload.
    model: Mutex<Option<ModelInfo>>,
    /// Predicted classes 0..PREDICTION_CLASSES of the model's label output, and one
    /// more slot for any other value.
    predictions: Vec<AtomicU64>,
}

/// Classes counted one by one in `hoist_predictions_total`; larger labels are `other`.
pub const PREDICTION_CLASSES: usize = hoist_types::wire::PREDICTION_CLASSES;

fn route_index(r: Route) -> usize {
    Route::ALL.iter().position(|&x| x == r).expect("listed")
}

impl ModelMetrics {
    fn new(name: String) -> Self {
        ModelMetrics {
            name,
            requests: Route::ALL
                .iter()
                .map(|_| (0..500).map(|_| AtomicU64::new(0)).collect())
                .collect(),
            latency: Route::ALL
                .iter()
                .map(|_| Histogram::new(LATENCY_BOUNDS))
                .collect(),
            inference: Histogram::new(LATENCY_BOUNDS),
            batch_size: Histogram::new(BATCH_BOUNDS),
            in_flight: AtomicI64::new(0),
            rejected: AtomicU64::new(0),
            reload_ok: AtomicU64::new(0),
            reload_failed: AtomicU64::new(0),
            load_micros: AtomicU64::new(0),
            model: Mutex::new(None),
            predictions: (0..=PREDICTION_CLASSES)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    /// A detached set, counted nowhere `/metrics` shows (for loading a model outside
    /// a server, as the tests and tools do).
    pub fn detached(name: &str) -> Arc<ModelMetrics> {
        Arc::new(ModelMetrics::new(name.to_string()))
    }

    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn request_finished(&self, route: Route, status: u16, elapsed: Duration) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let i = route_index(route);
        if (100..600).contains(&status) {
            self.requests[i][(status - 100) as usize].fetch_add(1, Ordering::Relaxed);
        }
        self.latency[i].observe(elapsed.as_secs_f64());
    }

    pub fn observe_inference(&self, elapsed: Duration, rows: usize) {
        self.inference.observe(elapsed.as_secs_f64());
        self.batch_size.observe(rows as f64);
    }

    /// Count the predicted classes of an answer (the model's label output).
    /// (Prediction drift is judged on these counts.)
    pub fn observe_predictions(&self, labels: impl Iterator<Item = i64>) {
        for l in labels {
            let i = if (0..PREDICTION_CLASSES as i64).contains(&l) {
                l as usize
            } else {
                PREDICTION_CLASSES
            };
            self.predictions[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reloaded(&self, ok: bool) {
        if ok {
            &self.reload_ok
        } else {
            &self.reload_failed
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub fn model_loaded(&self, info: ModelInfo, load_time: Duration) {
        self.load_micros
            .store(load_time.as_micros() as u64, Ordering::Relaxed);
        *self.model.lock().expect("metrics lock") = Some(info);
    }

    /// The model was unloaded: `hoist_model_info` no longer shows it.
    pub fn model_unloaded(&self) {
        *self.model.lock().expect("metrics lock") = None;
    }

    /// Requests counted for a route and status.
    pub fn requests(&self, route: Route, status: u16) -> u64 {
        self.requests[route_index(route)][(status - 100) as usize].load(Ordering::Relaxed)
    }

    /// The `model="..."` label.
    fn label(&self) -> String {
        format!("model=\"{}\"", escape(&self.name))
    }
}

impl Metrics {
    /// The metrics of model `name`, created on first use.
    pub fn model(&self, name: &str) -> Arc<ModelMetrics> {
        if let Some(m) = self.models.read().expect("metrics lock").get(name) {
            return m.clone();
        }
        self.models
            .write()
            .expect("metrics lock")
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(ModelMetrics::new(name.to_string())))
            .clone()
    }

    /// The metrics of requests that name no known model (`model=""`).
    pub fn unrouted(&self) -> &Arc<ModelMetrics> {
        &self.unrouted
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let models: Vec<Arc<ModelMetrics>> = self
            .models
            .read()
            .expect("metrics lock")
            .values()
            .cloned()
            .collect();
        let mut out = String::with_capacity(8192 * (1 + models.len()));
        let all: Vec<&ModelMetrics> = std::iter::once(&*self.unrouted)
            .chain(models.iter().map(|m| &**m))
            .collect();
        out.push_str("# HELP hoist_requests_total HTTP requests answered, by model, route and status code.\n# TYPE hoist_requests_total counter\n");
        for m in &all {
            let model = m.label();
            // Prediction series are exposed at 0 for every model, not for requests
            // that name none.
            let named = !m.name.is_empty();
            for (r, codes) in Route::ALL.iter().zip(&m.requests) {
                for (i, c) in codes.iter().enumerate() {
                    let n = c.load(Ordering::Relaxed);
                    if n > 0
                        || (named && r.predicts() && EXPOSED_FROM_START.contains(&(i as u16 + 100)))
                    {
                        let _ = writeln!(
                            out,
                            "hoist_requests_total{{{model},route=\"{}\",code=\"{}\"}} {n}",
                            r.label(),
                            i + 100
                        );
                    }
                }
            }
        }
        out.push_str("# HELP hoist_request_duration_seconds Time from request to response, by model and route.\n# TYPE hoist_request_duration_seconds histogram\n");
        for m in &all {
            for (r, h) in Route::ALL.iter().zip(&m.latency) {
                if h.count.load(Ordering::Relaxed) > 0 {
                    h.render(
                        &mut out,
                        hoist_types::wire::metrics::SERVER_REQUEST_DURATION,
                        &format!("{},route=\"{}\"", m.label(), r.label()),
                    );
                }
            }
        }
        out.push_str("# HELP hoist_inference_duration_seconds Time the runtime spent per model call (one batch).\n# TYPE hoist_inference_duration_seconds histogram\n");
        for m in &models {
            m.inference.render(
                &mut out,
                hoist_types::wire::metrics::SERVER_INFERENCE_DURATION,
                &m.label(),
            );
        }
        out.push_str(
            "# HELP hoist_batch_size Rows per model call.\n# TYPE hoist_batch_size histogram\n",
        );
        for m in &models {
            m.batch_size.render(
                &mut out,
                hoist_types::wire::metrics::SERVER_BATCH_SIZE,
                &m.label(),
            );
        }
        out.push_str("# HELP hoist_requests_in_flight Requests being handled now.\n# TYPE hoist_requests_in_flight gauge\n");
        for m in &all {
            let _ = writeln!(
                out,
                "hoist_requests_in_flight{{{}}} {}",
                m.label(),
                m.in_flight.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP hoist_queue_rejected_total Requests refused with 503 because the inference queue was full.\n# TYPE hoist_queue_rejected_total counter\n");
        for m in &models {
            let _ = writeln!(
                out,
                "hoist_queue_rejected_total{{{}}} {}",
                m.label(),
                m.rejected.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP hoist_model_reloads_total Model reloads, by result.\n# TYPE hoist_model_reloads_total counter\n");
        for m in &models {
            let _ = writeln!(
                out,
                "hoist_model_reloads_total{{{model},result=\"success\"}} {}\nhoist_model_reloads_total{{{model},result=\"failure\"}} {}",
                m.reload_ok.load(Ordering::Relaxed),
                m.reload_failed.load(Ordering::Relaxed),
                model = m.label(),
            );
        }
        out.push_str("# HELP hoist_model_load_seconds Time the served model took to load and check.\n# TYPE hoist_model_load_seconds gauge\n");
        for m in &models {
            let _ = writeln!(
                out,
                "hoist_model_load_seconds{{{}}} {}",
                m.label(),
                m.load_micros.load(Ordering::Relaxed) as f64 / 1e6
            );
        }
        let infos: Vec<(&ModelMetrics, Option<ModelInfo>)> = models
            .iter()
            .map(|m| (&**m, m.model.lock().expect("metrics lock").clone()))
            .collect();
        if infos
            .iter()
            .any(|(_, i)| i.as_ref().is_some_and(|i| i.label_output.is_some()))
        {
            out.push_str("# HELP hoist_predictions_total Predicted classes (the model's label output) in answers; for a regressor with --prediction-bins, the bin of each value.\n# TYPE hoist_predictions_total counter\n");
        }
        for (m, info) in &infos {
            let Some(output) = info.as_ref().and_then(|i| i.label_output.as_ref()) else {
                continue;
            };
            for (i, c) in m.predictions.iter().enumerate() {
                let n = c.load(Ordering::Relaxed);
                if n > 0 {
                    let class = if i == PREDICTION_CLASSES {
                        "other".to_string()
                    } else {
                        i.to_string()
                    };
                    let _ = writeln!(
                        out,
                        "hoist_predictions_total{{{},output=\"{}\",class=\"{class}\"}} {n}",
                        m.label(),
                        escape(output)
                    );
                }
            }
        }
        out.push_str(
            "# HELP hoist_model_info The models being served.\n# TYPE hoist_model_info gauge\n",
        );
        for (m, info) in &infos {
            if let Some(i) = info {
                let _ = writeln!(
                    out,
                    "hoist_model_info{{{},name=\"{}\",version=\"{}\",digest=\"{}\",runtime=\"{}\"}} 1",
                    m.label(),
                    escape(&i.name),
                    escape(&i.version),
                    escape(&i.digest),
                    escape(&i.runtime)
                );
            }
        }
        out
    }
}

/// Escapes a label value for the text format.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let all = Metrics::default();
        let m = all.model("iris");
        m.request_started();
        m.request_finished(Route::V2Infer, 200, Duration::from_micros(300));
        m.request_started();
        m.request_finished(Route::V2Infer, 400, Duration::from_millis(3));
        let text = all.render();
        assert!(text.contains(
            "hoist_requests_total{model=\"iris\",route=\"/v2/models/:model/infer\",code=\"200\"} 1"
        ));
        assert!(text.contains(
            "hoist_requests_total{model=\"iris\",route=\"/v2/models/:model/infer\",code=\"400\"} 1"
        ));
        assert!(text.contains("hoist_request_duration_seconds_bucket{model=\"iris\",route=\"/v2/models/:model/infer\",le=\"0.0005\"} 1"));
        assert!(text.contains("hoist_request_duration_seconds_bucket{model=\"iris\",route=\"/v2/models/:model/infer\",le=\"0.005\"} 2"));
        assert!(text.contains("hoist_requests_in_flight{model=\"iris\"} 0"));
    }

    #[test]
    fn each_model_is_counted_apart_and_unknown_names_under_the_empty_model() {
        let all = Metrics::default();
        all.model("a")
            .request_finished(Route::Invocations, 200, Duration::ZERO);
        all.model("b").observe_predictions([1, 1, 7].into_iter());
        all.model("b").model_loaded(
            ModelInfo {
                name: "b".into(),
                label_output: Some("label".into()),
                ..Default::default()
            },
            Duration::ZERO,
        );
        all.unrouted()
            .request_finished(Route::V2Infer, 404, Duration::ZERO);
        let text = all.render();
        for want in [
            "hoist_requests_total{model=\"a\",route=\"/invocations\",code=\"200\"} 1",
            "hoist_requests_total{model=\"b\",route=\"/invocations\",code=\"200\"} 0",
            "hoist_requests_total{model=\"\",route=\"/v2/models/:model/infer\",code=\"404\"} 1",
            "hoist_predictions_total{model=\"b\",output=\"label\",class=\"1\"} 2",
            "hoist_model_info{model=\"b\",name=\"b\",",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
        // No zero-valued prediction route series for requests that name no model,
        // and no info for a model never loaded.
        assert!(!text.contains("model=\"\",route=\"/invocations\",code=\"200\"} 0"));
        assert!(!text.contains("hoist_model_info{model=\"a\""));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                line.contains("{model=\""),
                "a series without the model label: {line}"
            );
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn the_series_are_named_as_the_wire_contract_says() {
        use hoist_types::wire::metrics as w;
        let all = Metrics::default();
        let m = all.model("m");
        m.request_started();
        m.request_finished(Route::V2Infer, 200, Duration::from_micros(300));
        let text = all.render();
        for name in [
            format!("{}{{model=\"m\",route=", w::SERVER_REQUESTS),
            format!("{}_bucket{{model=\"m\",route=", w::SERVER_REQUEST_DURATION),
            format!("# TYPE {} histogram", w::SERVER_INFERENCE_DURATION),
            format!("# TYPE {} histogram", w::SERVER_BATCH_SIZE),
        ] {
            assert!(text.contains(&name), "{name}: {text}");
        }
        assert_eq!(PREDICTION_CLASSES, hoist_types::wire::PREDICTION_CLASSES);
    }
}
