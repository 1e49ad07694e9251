//! Analysis metrics from Prometheus, for clusters where the gateway's counters are not
//! in the controller's process: the same judges as on one machine
//! ([`analysis::judge`], [`analysis::compare_latency`], [`analysis::drift`]) fed by
//! PromQL over Prometheus's HTTP API (`GET /api/v1/query`).
//!
//! A [`PrometheusSource`] holds the server's URL, an HTTP client with timeouts and a
//! set of PromQL [`Queries`]: templates with `{{selector}}` (label matchers naming the
//! environment, without braces), `{{window}}` (the analysis window as a PromQL
//! duration) and `{{variant}}` (the label whose values are `stable` and `candidate`).
//! Two default sets use the metric names hoist exports: [`Queries::gateway`] (the
//! daemon's gateway, `hoist_gateway_*`) and [`Queries::server`] (hoist-server's own
//! metrics, with the variant label attached by Prometheus: a pod label through
//! ServiceMonitor relabeling, or a static label in a scrape config).
//!
//! Fail closed: a query that gives no series for a variant, a NaN, an unreachable
//! Prometheus or an error answer is an inconclusive verdict whose reason names the
//! query, never a pass.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hoist_release::analysis::{self, Window};
use hoist_release::config::Analysis;
use hoist_release::machine::Verdict;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::views::WindowView;

/// The variant label's value for the version serving now.
pub const STABLE: &str = "stable";
/// The variant label's value for the version being brought in.
pub const CANDIDATE: &str = "candidate";

/// The variant label on hoist-server's series when Prometheus scrapes the pods through
/// the ServiceMonitor `hoist render k8s` writes: the Prometheus Operator copies the
/// pod label `hoist.dev/variant` (`podTargetLabels`) under its sanitized name. The
/// environment comes the same way as `hoist_dev_env`.
pub const SERVICE_MONITOR_VARIANT_LABEL: &str =
    hoist_types::wire::metrics::SERVICE_MONITOR_VARIANT_LABEL;

/// Most latencies [`Histogram::samples`] reconstructs (as the gateway's
/// `VariantStats::latency_samples`).
const MAX_SAMPLES: f64 = 10_000.0;
/// The prediction routes of hoist-server (its `route` label values).
const SERVER_ROUTES: &str = "/v2/models/:model/infer|/invocations|/predict-image|/inference.GRPCInferenceService/ModelInfer";

/// PromQL templates, one per number the judges need. Each must return one series per
/// variant (grouped by the `{{variant}}` label), the latency query one per variant
/// and `le`, the predictions query one per variant and `class`. Placeholders:
/// `{{selector}}`, `{{window}}`, `{{variant}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queries {
    /// Requests completed in the window.
    pub requests: String,
    /// Of those, server errors (5xx, and failed backends at the gateway). Should give
    /// an explicit 0 for a variant without errors (`... or 0 * <requests>`): no series
    /// at all is "no data".
    pub errors: String,
    /// Cumulative latency histogram buckets (seconds) over the window, by `le`.
    pub latency_buckets: String,
    /// Of the requests, client errors (4xx): counted as failures where stable serves
    /// the same kind of request, compared with stable's rate as 5xx are. Grouped by a
    /// `code` label as well, when the series have one, so a failure's reason names
    /// the status codes. `None`: 4xx are not judged (only `errors`).
    #[serde(default)]
    pub client_errors: Option<String>,
    /// Predicted classes over the window, by `class` (`hoist_predictions_total`).
    /// `None`: prediction drift is not judged (the gateway does not see predictions).
    #[serde(default)]
    pub predictions: Option<String>,
}

impl Queries {
    /// The daemon's gateway (`hoist_gateway_requests_total{env,variant,version,class}`
    /// and `hoist_gateway_request_duration_seconds_bucket{env,variant,le}`); a
    /// selector such as `env="production"`. Counts are the gateway's, as in the
    /// engine on one machine: every answer, errors are `5xx` and `upstream`, client
    /// errors `4xx`. No predictions query: the gateway does not see predicted classes.
    pub fn gateway() -> Queries {
        let requests = "sum by ({{variant}}) (increase(hoist_gateway_requests_total{ {{selector}} }[{{window}}]))";
        Queries {
            requests: requests.into(),
            errors: format!(
                "sum by ({{{{variant}}}}) (increase(hoist_gateway_requests_total{{class=~\"5xx|upstream\",{{{{selector}}}}}}[{{{{window}}}}])) or 0 * {requests}"
            ),
            client_errors: Some(format!(
                "sum by ({{{{variant}}}}) (increase(hoist_gateway_requests_total{{class=\"4xx\",{{{{selector}}}}}}[{{{{window}}}}])) or 0 * {requests}"
            )),
            latency_buckets: "sum by ({{variant}}, le) (increase(hoist_gateway_request_duration_seconds_bucket{ {{selector}} }[{{window}}]))".into(),
            predictions: None,
        }
    }

    /// hoist-server's own metrics: `hoist_requests_total{route,code}`,
    /// `hoist_request_duration_seconds_bucket{route,le}` on the prediction routes
    /// (`/v2/models/:model/infer`, `/invocations`, `/predict-image`; not health
    /// checks or scrapes), and `hoist_predictions_total{output,class}`, with the
    /// variant label Prometheus attaches to each target. A selector such as
    /// `namespace="ml-prod",app="fraud"`.
    pub fn server() -> Queries {
        let requests = format!(
            "sum by ({{{{variant}}}}) (increase(hoist_requests_total{{route=~\"{SERVER_ROUTES}\",{{{{selector}}}}}}[{{{{window}}}}]))"
        );
        Queries {
            errors: format!(
                "sum by ({{{{variant}}}}) (increase(hoist_requests_total{{route=~\"{SERVER_ROUTES}\",code=~\"5..\",{{{{selector}}}}}}[{{{{window}}}}])) or 0 * {requests}"
            ),
            client_errors: Some(format!(
                "sum by ({{{{variant}}}}, code) (increase(hoist_requests_total{{route=~\"{SERVER_ROUTES}\",code=~\"4..\",{{{{selector}}}}}}[{{{{window}}}}])) or 0 * {requests}"
            )),
            requests,
            latency_buckets: format!(
                "sum by ({{{{variant}}}}, le) (increase(hoist_request_duration_seconds_bucket{{route=~\"{SERVER_ROUTES}\",{{{{selector}}}}}}[{{{{window}}}}]))"
            ),
            predictions: Some(
                "sum by ({{variant}}, class) (increase(hoist_predictions_total{ {{selector}} }[{{window}}]))".into(),
            ),
        }
    }
}

/// A window as a PromQL duration: whole seconds when it is, else milliseconds (at
/// least 1 ms).
pub fn promql_duration(d: Duration) -> String {
    let ms = d.as_millis().max(1);
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Fills a template's placeholders.
pub fn render(template: &str, selector: &str, window: Duration, variant_label: &str) -> String {
    template
        .replace("{{selector}}", selector)
        .replace("{{window}}", &promql_duration(window))
        .replace("{{variant}}", variant_label)
}

/// Why a query gave no usable number. Every message names the query.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromError {
    #[error("Prometheus URL {url:?} is not usable: {message}")]
    BadUrl { url: String, message: String },
    #[error("Prometheus at {url} is unreachable ({message}) for query `{query}`")]
    Unreachable {
        url: String,
        query: String,
        message: String,
    },
    #[error("Prometheus answered HTTP {status} to query `{query}`: {error_type}: {error}")]
    Query {
        status: u16,
        query: String,
        error_type: String,
        error: String,
    },
    #[error("Prometheus's answer to query `{query}` is not a query result: {message}")]
    Malformed { query: String, message: String },
    #[error(
        "no data from Prometheus for {what} (query `{query}`): is the metric scraped, with the variant label?"
    )]
    NoData { query: String, what: String },
    #[error("Prometheus query `{query}` gave NaN for {series}")]
    NotANumber { query: String, series: String },
}

/// One series of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// What `/api/v1/query` returned (the result types the judges can use).
#[derive(Debug, Clone, PartialEq)]
pub enum QueryResult {
    Vector(Vec<Sample>),
    Scalar(f64),
}

impl QueryResult {
    /// The series, a scalar as one series without labels.
    pub fn samples(self) -> Vec<Sample> {
        match self {
            QueryResult::Vector(v) => v,
            QueryResult::Scalar(x) => vec![Sample {
                labels: BTreeMap::new(),
                value: x,
            }],
        }
    }
}

/// A Prometheus sample value: a decimal string, or `NaN`, `+Inf`, `-Inf`.
fn parse_value(v: &Value) -> Option<f64> {
    let pair = v.as_array()?;
    let s = pair.get(1)?.as_str()?;
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Parses an answer of `/api/v1/query`: `{"status":"success","data":{"resultType":
/// "vector","result":[{"metric":{...},"value":[<ts>,"<value>"]}]}}`, or `"scalar"`
/// with `"result":[<ts>,"<value>"]`; errors are `{"status":"error","errorType",
/// "error"}` (HTTP 400, 422, 503...).
pub fn parse_response(status: u16, body: &str, query: &str) -> Result<QueryResult, PromError> {
    let malformed = |message: String| PromError::Malformed {
        query: query.to_string(),
        message,
    };
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => {
            let snippet: String = body.chars().take(200).collect();
            if !(200..300).contains(&status) {
                return Err(PromError::Query {
                    status,
                    query: query.to_string(),
                    error_type: "http".into(),
                    error: snippet.trim().to_string(),
                });
            }
            return Err(malformed(format!("not JSON ({e}): {snippet}")));
        }
    };
    if v["status"] != "success" || !(200..300).contains(&status) {
        return Err(PromError::Query {
            status,
            query: query.to_string(),
            error_type: v["errorType"].as_str().unwrap_or("unknown").to_string(),
            error: v["error"]
                .as_str()
                .unwrap_or("no error message")
                .to_string(),
        });
    }
    let data = &v["data"];
    match data["resultType"].as_str() {
        Some("vector") => {
            let result = data["result"]
                .as_array()
                .ok_or_else(|| malformed("data.result is not an array".into()))?;
            result
                .iter()
                .map(|s| {
                    let labels = s["metric"]
                        .as_object()
                        .ok_or_else(|| malformed(format!("a series without labels: {s}")))?
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect();
                    let value = parse_value(&s["value"])
                        .ok_or_else(|| malformed(format!("a series without a value: {s}")))?;
                    Ok(Sample { labels, value })
                })
                .collect::<Result<_, _>>()
                .map(QueryResult::Vector)
        }
        Some("scalar") => parse_value(&data["result"])
            .map(QueryResult::Scalar)
            .ok_or_else(|| malformed(format!("a scalar without a value: {}", data["result"]))),
        Some(other) => Err(malformed(format!(
            "result type {other}, where an instant vector or a scalar was expected"
        ))),
        None => Err(malformed("no data.resultType".into())),
    }
}

/// A latency histogram over a window: cumulative counts by upper bound (seconds),
/// sorted, the last bound `+Inf`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// From `(le, cumulative count)` pairs in any order, as `histogram_quantile` takes
    /// them: sorted, equal bounds merged, counts made monotonic. `None` without a
    /// `+Inf` bucket.
    pub fn from_cumulative(mut buckets: Vec<(f64, f64)>) -> Option<Histogram> {
        buckets.retain(|(le, _)| !le.is_nan());
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
            return None;
        }
        let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
        for (le, n) in buckets {
            match merged.last_mut() {
                Some(last) if last.0 == le => last.1 += n,
                _ => merged.push((le, n)),
            }
        }
        let mut max = 0.0f64;
        for b in &mut merged {
            max = max.max(b.1);
            b.1 = max;
        }
        Some(Histogram { buckets: merged })
    }

    /// Observations in the window (the `+Inf` bucket).
    pub fn count(&self) -> f64 {
        self.buckets.last().map(|b| b.1).unwrap_or(0.0)
    }

    /// The `q`-quantile as Prometheus's `histogram_quantile` computes it: linear
    /// interpolation inside the bucket that holds rank `q * count` (the first bucket
    /// starting at 0), the largest finite bound when that is the `+Inf` bucket. `None`
    /// without observations or with fewer than two buckets.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let b = &self.buckets;
        let total = self.count();
        if q.is_nan() || b.len() < 2 || total <= 0.0 {
            return None;
        }
        let mut rank = q.clamp(0.0, 1.0) * total;
        let i = b[..b.len() - 1]
            .iter()
            .position(|x| x.1 >= rank)
            .unwrap_or(b.len() - 1);
        if i == b.len() - 1 {
            return Some(b[b.len() - 2].0);
        }
        if i == 0 && b[0].0 <= 0.0 {
            return Some(b[0].0);
        }
        let (start, end) = (if i > 0 { b[i - 1].0 } else { 0.0 }, b[i].0);
        let mut count = b[i].1;
        if i > 0 {
            count -= b[i - 1].1;
            rank -= b[i - 1].1;
        }
        Some(start + (end - start) * (rank / count))
    }

    /// Latencies (seconds) reconstructed from the buckets, for rank tests between
    /// variants: each bucket's midpoint (the `+Inf` bucket: the largest finite bound)
    /// repeated by its count (rounded; `increase` is extrapolated, so not whole),
    /// scaled down to at most 10 000 values in all.
    pub fn samples(&self) -> Vec<f64> {
        let total = self.count();
        let scale = if total > MAX_SAMPLES {
            MAX_SAMPLES / total
        } else {
            1.0
        };
        let mut out = Vec::with_capacity(total.min(MAX_SAMPLES) as usize + 1);
        let (mut lower, mut below) = (0.0, 0.0);
        for &(le, cum) in &self.buckets {
            let n = (cum - below).max(0.0);
            let k = (n * scale).round() as usize;
            let value = if le.is_finite() {
                (lower + le) / 2.0
            } else {
                lower
            };
            out.extend(std::iter::repeat_n(value, k));
            if le.is_finite() {
                lower = le;
            }
            below = cum;
        }
        out.truncate(MAX_SAMPLES as usize);
        out
    }
}

/// What Prometheus counted for one variant over a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VariantMeasure {
    /// `increase` of the requests (extrapolated to the window's ends, so not whole).
    pub requests: f64,
    pub errors: f64,
    /// 4xx (zero when the source has no client errors query).
    pub client_errors: f64,
    /// The 4xx by status code, when the query groups them by `code`.
    pub client_error_codes: Vec<(u16, u64)>,
    pub latency: Histogram,
}

impl VariantMeasure {
    /// The judge's window: counts rounded, p99 from the histogram.
    pub fn window(&self) -> Window {
        Window {
            requests: count(self.requests),
            errors: count(self.errors),
            client_errors: count(self.client_errors),
            p50_seconds: self.latency.quantile(0.5),
            p95_seconds: self.latency.quantile(0.95),
            p99_seconds: self.latency.quantile(0.99),
        }
    }

    /// Latencies for [`analysis::compare_latency`].
    pub fn latency_samples(&self) -> Vec<f64> {
        self.latency.samples()
    }

    /// The numbers the engine shows and journals for a variant.
    pub fn view(&self) -> WindowView {
        let w = self.window();
        WindowView {
            requests: w.requests,
            errors: w.errors,
            error_rate: if w.requests == 0 {
                0.0
            } else {
                w.errors as f64 / w.requests as f64
            },
            p50_ms: w.p50_seconds.map(|v| v * 1000.0),
            p99_ms: w.p99_seconds.map(|v| v * 1000.0),
            ..WindowView::default()
        }
    }
}

/// Both variants over one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    pub stable: VariantMeasure,
    pub candidate: VariantMeasure,
}

/// Predicted-class counts of both variants over one window; index `i` is class `i`,
/// index [`hoist_types::wire::PREDICTION_CLASSES`] any other label. Trailing
/// classes neither variant predicted are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Classes {
    pub stable: Vec<u64>,
    pub candidate: Vec<u64>,
}

fn count(x: f64) -> u64 {
    if x.is_finite() && x > 0.0 {
        x.round() as u64
    } else {
        0
    }
}

/// Where the judges' numbers come from on a cluster.
#[derive(Debug, Clone)]
pub struct PrometheusSource {
    base: String,
    http: reqwest::Client,
    queries: Queries,
    selector: String,
    variant_label: String,
}

impl PrometheusSource {
    /// `url` is Prometheus's base URL (`http://prometheus.monitoring:9090`, or a path
    /// prefix behind a proxy); `selector` the label matchers of one environment
    /// (`env="production"`; may be empty). Requests time out after 10 s (connect 3 s).
    pub fn new(url: &str, queries: Queries, selector: &str) -> Result<PrometheusSource, PromError> {
        let bad = |message: String| PromError::BadUrl {
            url: url.to_string(),
            message,
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("not http or https".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(PrometheusSource {
            base: url.trim_end_matches('/').to_string(),
            http,
            queries,
            selector: selector.to_string(),
            variant_label: "variant".into(),
        })
    }

    /// The label whose values are `stable` and `candidate` (default `variant`).
    pub fn with_variant_label(mut self, label: &str) -> PrometheusSource {
        self.variant_label = label.to_string();
        self
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    pub fn queries(&self) -> &Queries {
        &self.queries
    }

    /// A template with this source's selector and variant label and `window`.
    pub fn render(&self, template: &str, window: Duration) -> String {
        render(template, &self.selector, window, &self.variant_label)
    }

    /// `GET /api/v1/query`: `query` evaluated at `at` (Unix seconds; `None`: now).
    pub async fn query_instant(
        &self,
        query: &str,
        at: Option<f64>,
    ) -> Result<QueryResult, PromError> {
        let mut url = reqwest::Url::parse(&format!("{}/api/v1/query", self.base)).map_err(|e| {
            PromError::BadUrl {
                url: self.base.clone(),
                message: e.to_string(),
            }
        })?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("query", query);
            if let Some(t) = at {
                q.append_pair("time", &format!("{t:.3}"));
            }
        }
        let unreachable = |e: reqwest::Error| PromError::Unreachable {
            url: self.base.clone(),
            query: query.to_string(),
            message: error_chain(&e),
        };
        let resp = self.http.get(url).send().await.map_err(unreachable)?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(unreachable)?;
        parse_response(status, &body, query)
    }

    /// The variant a series belongs to (its variant label's value; empty without).
    fn variant_of(&self, s: &Sample) -> String {
        s.labels
            .get(&self.variant_label)
            .cloned()
            .unwrap_or_default()
    }

    /// One value per variant label value; a NaN is an error. `what` names the number.
    async fn per_variant(
        &self,
        template: &str,
        window: Duration,
        at: Option<f64>,
    ) -> Result<(String, BTreeMap<String, f64>), PromError> {
        let query = self.render(template, window);
        let mut out = BTreeMap::new();
        for s in self.query_instant(&query, at).await?.samples() {
            check_number(&query, &s)?;
            let v = self.variant_of(&s);
            *out.entry(v).or_insert(0.0) += s.value;
        }
        Ok((query, out))
    }

    /// 4xx of each variant, with the status codes when the series carry a `code`
    /// label; empty without a client errors query.
    async fn client_errors(
        &self,
        window: Duration,
        at: Option<f64>,
    ) -> Result<BTreeMap<String, (f64, Vec<(u16, u64)>)>, PromError> {
        let mut out: BTreeMap<String, (f64, BTreeMap<u16, u64>)> = BTreeMap::new();
        if let Some(template) = &self.queries.client_errors {
            let query = self.render(template, window);
            for s in self.query_instant(&query, at).await?.samples() {
                check_number(&query, &s)?;
                let v = self.variant_of(&s);
                let slot = out.entry(v).or_default();
                slot.0 += s.value;
                if let Some(code) = s.labels.get("code").and_then(|c| c.parse::<u16>().ok())
                    && count(s.value) > 0
                {
                    *slot.1.entry(code).or_default() += count(s.value);
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|(v, (n, codes))| (v, (n, codes.into_iter().collect())))
            .collect())
    }

    /// Requests, errors and latency histograms of both variants over the `window`
    /// ending at `at` (`None`: now). Every query must give both variants (the client
    /// errors query may give none: no 4xx).
    pub async fn measure(&self, window: Duration, at: Option<f64>) -> Result<Measured, PromError> {
        let latency_query = self.render(&self.queries.latency_buckets, window);
        let ((rq, requests), (eq, errors), buckets, client) = tokio::try_join!(
            self.per_variant(&self.queries.requests, window, at),
            self.per_variant(&self.queries.errors, window, at),
            self.query_instant(&latency_query, at),
            self.client_errors(window, at),
        )?;
        let mut le: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for s in buckets.samples() {
            check_number(&latency_query, &s)?;
            let bound = s.labels.get("le").and_then(|b| match b.as_str() {
                "+Inf" | "Inf" => Some(f64::INFINITY),
                b => b.parse::<f64>().ok(),
            });
            let Some(bound) = bound else {
                return Err(PromError::Malformed {
                    query: latency_query,
                    message: format!("a bucket without a numeric `le` label: {:?}", s.labels),
                });
            };
            let v = self.variant_of(&s);
            le.entry(v).or_default().push((bound, s.value));
        }
        let variant = |name: &str| -> Result<VariantMeasure, PromError> {
            let missing = |query: &str, what: &str| PromError::NoData {
                query: query.to_string(),
                what: format!("{what} of variant {name:?}"),
            };
            let requests = *requests.get(name).ok_or_else(|| missing(&rq, "requests"))?;
            let errors = *errors.get(name).ok_or_else(|| missing(&eq, "errors"))?;
            let buckets = le
                .get(name)
                .cloned()
                .ok_or_else(|| missing(&latency_query, "latency buckets"))?;
            let latency =
                Histogram::from_cumulative(buckets).ok_or_else(|| PromError::Malformed {
                    query: latency_query.clone(),
                    message: format!("variant {name:?} has no `+Inf` bucket"),
                })?;
            let (client_errors, client_error_codes) = client.get(name).cloned().unwrap_or_default();
            Ok(VariantMeasure {
                requests,
                errors,
                client_errors,
                client_error_codes,
                latency,
            })
        };
        Ok(Measured {
            stable: variant(STABLE)?,
            candidate: variant(CANDIDATE)?,
        })
    }

    /// Predicted-class counts of both variants over the window; `Ok(None)` when this
    /// source has no predictions query.
    pub async fn classes(
        &self,
        window: Duration,
        at: Option<f64>,
    ) -> Result<Option<Classes>, PromError> {
        let Some(template) = &self.queries.predictions else {
            return Ok(None);
        };
        let query = self.render(template, window);
        let slots = hoist_types::wire::PREDICTION_CLASSES + 1;
        let mut by_variant: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for s in self.query_instant(&query, at).await?.samples() {
            check_number(&query, &s)?;
            let v = self.variant_of(&s);
            let class = s
                .labels
                .get("class")
                .and_then(|c| c.parse::<usize>().ok())
                .filter(|&c| c < slots - 1)
                .unwrap_or(slots - 1);
            by_variant.entry(v).or_insert_with(|| vec![0; slots])[class] += count(s.value);
        }
        let mut take = |name: &str| {
            by_variant.remove(name).ok_or_else(|| PromError::NoData {
                query: query.clone(),
                what: format!("predicted classes of variant {name:?}"),
            })
        };
        let (mut stable, mut candidate) = (take(STABLE)?, take(CANDIDATE)?);
        let used = stable
            .iter()
            .zip(&candidate)
            .rposition(|(a, b)| *a > 0 || *b > 0)
            .map_or(0, |i| i + 1);
        stable.truncate(used);
        candidate.truncate(used);
        Ok(Some(Classes { stable, candidate }))
    }
}

fn check_number(query: &str, s: &Sample) -> Result<(), PromError> {
    if s.value.is_nan() {
        return Err(PromError::NotANumber {
            query: query.to_string(),
            series: format!("{:?}", s.labels),
        });
    }
    Ok(())
}

/// An error with its causes ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let _ = write!(s, ": {c}");
        cause = c.source();
    }
    s
}

/// A verdict with the numbers it rests on, as the engine journals them
/// (`Cmd::Verdict { verdict, window, numbers }`).
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    /// The candidate's window.
    pub window: WindowView,
    /// `{"candidate", "stable", "error_comparison"?, "latency_comparison"?, "drift"?}`
    /// as the engine's,
    /// plus `"source"` (Prometheus's URL and the window).
    pub numbers: Value,
}

/// The engine's judgement on numbers from Prometheus (no I/O):
/// [`analysis::judge_live`] on both variants' windows (the absolute limits, then the
/// error and latency comparisons with stable), then, if `classes` are given,
/// prediction drift ([`analysis::LiveJudgement::drift`]).
pub fn judge_measured(a: &Analysis, m: &Measured, classes: Option<&Classes>) -> Judgement {
    let (c, s) = (&m.candidate, &m.stable);
    let mut judged = analysis::judge_live(
        a,
        &analysis::Live {
            candidate: c.window(),
            stable: s.window(),
            candidate_latencies: c.latency_samples(),
            stable_latencies: s.latency_samples(),
            candidate_codes: c.client_error_codes.clone(),
            stable_codes: s.client_error_codes.clone(),
        },
    );
    if let Some(cl) = classes {
        judged.drift(a, &cl.stable, &cl.candidate);
    }
    let mut numbers = Value::Object(judged.numbers);
    numbers["candidate"] = json!(c.view());
    numbers["stable"] = json!(s.view());
    Judgement {
        verdict: judged.verdict,
        window: c.view(),
        numbers,
    }
}

/// One analysis measurement on a cluster: the numbers of the `window` ending at `at`
/// (`None`: now) from Prometheus, judged as [`judge_measured`] does. Anything
/// Prometheus cannot give (unreachable, an error answer, no series for a variant, a
/// NaN) is an inconclusive verdict naming the query; with `drift` on and no
/// predictions query, drift is not judged and `numbers.drift.skipped` says so.
pub async fn judge_from_prometheus(
    source: &PrometheusSource,
    a: &Analysis,
    window: Duration,
    at: Option<f64>,
) -> Judgement {
    let src = json!({ "prometheus": source.url(), "window": promql_duration(window) });
    let inconclusive = |e: PromError, mut numbers: Value, view: WindowView| {
        numbers["source"] = src.clone();
        Judgement {
            verdict: Verdict::Inconclusive {
                reason: e.to_string(),
            },
            window: view,
            numbers,
        }
    };
    let m = match source.measure(window, at).await {
        Ok(m) => m,
        Err(e) => return inconclusive(e, json!({}), VariantMeasure::default().view()),
    };
    let mut j = judge_measured(a, &m, None);
    if j.verdict == Verdict::Pass && a.drift {
        match source.classes(window, at).await {
            Ok(Some(classes)) => j = judge_measured(a, &m, Some(&classes)),
            Ok(None) => {
                j.numbers["drift"] = json!({
                    "skipped": "no predictions query: prediction drift is not judged from Prometheus",
                })
            }
            Err(e) => return inconclusive(e, j.numbers, j.window),
        }
    }
    j.numbers["source"] = src;
    j
}

#[cfg(test)]
mod tests;
