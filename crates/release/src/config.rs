//! The pipeline file, `hoist.toml`: which registry and model to watch, what triggers a
//! release, the environments in order with their strategy, and the analysis thresholds.
//!
//! Every key has a default, so an empty file (or no file) is a working pipeline: the
//! embedded registry, model `default`, triggered by alias `champion`, a `staging`
//! environment (blue-green, smoke tests only) and a `production` environment (canary
//! 10% → 50% → 100%, 30 s per step, analysed). Unknown keys are rejected, and every
//! error names the key and, for syntax and type errors, the line.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A parsed, validated `hoist.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub registry: RegistryConfig,
    pub api: ApiConfig,
    pub model: ModelConfig,
    pub server: ServerConfig,
    pub analysis: Analysis,
    #[serde(rename = "environments")]
    pub environments: Vec<Environment>,
    /// Checks before any user traffic, run in order against the candidate in the
    /// first environment (the model always has to load and answer its example).
    pub gates: Vec<Gate>,
    /// Where release events are sent.
    pub notifications: Vec<Notification>,
    /// Where the model servers run: `local` (this machine) or `kubernetes`.
    pub target: crate::kubernetes::TargetKind,
    /// The cluster settings, used by `target = "kubernetes"` and `hoist render k8s`.
    pub kubernetes: crate::kubernetes::Kubernetes,
}

/// A check before traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Gate {
    /// Score a labelled file (CSV with a header, or JSON lines) through the candidate.
    GoldenSet {
        /// Path, relative to the directory of hoist.toml.
        file: String,
        /// The label column; every other column is a feature, in file order.
        #[serde(default = "label")]
        label: String,
        #[serde(default)]
        min_accuracy: Option<f64>,
        /// Largest allowed accuracy drop against the stable version on the same file.
        #[serde(default)]
        max_drop: Option<f64>,
        /// Per-class minimum recall, e.g. `{ "1" = 0.9 }`.
        #[serde(default)]
        min_recall: std::collections::BTreeMap<String, f64>,
        #[serde(default)]
        max_log_loss: Option<f64>,
    },
    /// Latency of the candidate under load, against a budget.
    Latency {
        #[serde(default = "four")]
        concurrency: usize,
        #[serde(default = "two_hundred")]
        requests: usize,
        #[serde(default)]
        max_p50_ms: Option<f64>,
        #[serde(default)]
        max_p99_ms: Option<f64>,
        /// Use the golden set's rows (else the model's input example).
        #[serde(default)]
        file: Option<String>,
    },
    /// Any command; exit 0 passes. It gets HOIST_MODEL_PATH, HOIST_MODEL_NAME,
    /// HOIST_MODEL_VERSION, HOIST_MODEL_DIGEST and HOIST_CANDIDATE_URL.
    Command {
        run: Vec<String>,
        #[serde(default = "five_minutes")]
        timeout: Dur,
    },
    /// The candidate's inputs and outputs must match stable's (names, types, shapes).
    Signature {
        #[serde(default)]
        allow_breaking: bool,
    },
}

fn label() -> String {
    "label".into()
}
fn four() -> usize {
    4
}
fn two_hundred() -> usize {
    200
}
fn five_minutes() -> Dur {
    Dur(Duration::from_secs(300))
}

impl Gate {
    pub fn name(&self) -> &'static str {
        match self {
            Gate::GoldenSet { .. } => "golden-set",
            Gate::Latency { .. } => "latency",
            Gate::Command { .. } => "command",
            Gate::Signature { .. } => "signature",
        }
    }
}

/// A receiver of release events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    pub url: String,
    /// `json` (hoist's event, signed with HMAC-SHA256 when `secret_env` is set) or
    /// `slack` (an incoming-webhook message).
    #[serde(default)]
    pub kind: NotificationKind,
    /// Environment variable holding the signing secret (json only).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Which events (empty: all): started, gate_passed, gate_failed, step,
    /// awaiting_approval, promoted, rolled_back, aborted.
    #[serde(default)]
    pub events: Vec<String>,
    /// Delivery attempts before giving up (with exponential backoff).
    #[serde(default = "five")]
    pub max_attempts: u32,
}

fn five() -> u32 {
    5
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationKind {
    #[default]
    Json,
    Slack,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// `embedded` (hoist's own registry under `HOIST_HOME`) or an MLflow tracking URL.
    /// Unset: `MLFLOW_TRACKING_URI` when that is set, else `embedded`.
    pub url: Option<String>,
    /// How often the registry is polled for promotions.
    pub poll_interval: Dur,
    /// Receive MLflow webhooks on this address (`hoist mlflow connect` creates them).
    pub webhook_listen: Option<SocketAddr>,
    /// Environment variable holding the webhook secret.
    pub webhook_secret_env: String,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            url: None,
            poll_interval: Dur(Duration::from_secs(1)),
            webhook_listen: None,
            webhook_secret_env: "HOIST_WEBHOOK_SECRET".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Where the daemon's HTTP API listens (the CLI talks to it).
    pub listen: SocketAddr,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: ([127, 0, 0, 1], 7070).into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// The registered model this pipeline delivers.
    pub name: String,
    /// What starts a release.
    pub trigger: Trigger,
    /// What a promotion does that arrives while a release is mid-rollout.
    pub mid_rollout: MidRollout,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            name: "default".into(),
            trigger: Trigger::Alias("champion".into()),
            mid_rollout: MidRollout::Queue,
        }
    }
}

/// A registry promotion that arrives while a release is mid-rollout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MidRollout {
    /// Waits: when the release in progress ends, the version the trigger then points
    /// at is released (only the newest of several promotions).
    #[default]
    Queue,
    /// Aborts the release in progress (back to 100% stable) and starts at once.
    Supersede,
}

/// What starts a release: an alias moving to a version (`{ alias = "champion" }`), a
/// version entering a stage (`{ stage = "Production" }`), or only the CLI and API
/// (`"manual"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Alias(String),
    Stage(String),
    Manual,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `auto`, `onnxruntime` or `tract`, passed to every hoist-server.
    pub runtime: String,
    /// Further hoist-server flags, e.g. `["--workers", "2"]`.
    pub args: Vec<String>,
    /// How long a starting server may take to load its model and answer its example.
    pub ready_timeout: Dur,
    /// How long a stopping server may take to drain before it is killed.
    pub stop_grace: Dur,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            runtime: "auto".into(),
            args: Vec::new(),
            ready_timeout: Dur(Duration::from_secs(60)),
            stop_grace: Dur(Duration::from_secs(10)),
        }
    }
}

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
    /// Confidence of that comparison (0.95: fail when p < 0.05).
    pub confidence: f64,
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
            tolerance: 0.5,
            latency_slack_ms: 5.0,
            drift: true,
            max_psi: 0.25,
            drift_bins: Vec::new(),
            min_agreement: 0.95,
            max_probability_diff: 0.1,
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
    pub tolerance: Option<f64>,
    pub latency_slack_ms: Option<f64>,
    pub drift: Option<bool>,
    pub max_psi: Option<f64>,
    pub drift_bins: Option<Vec<f64>>,
    pub min_agreement: Option<f64>,
    pub max_probability_diff: Option<f64>,
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
            feedback: o.feedback.unwrap_or(self.feedback),
            min_labels: o.min_labels.unwrap_or(self.min_labels),
            min_accuracy: o.min_accuracy.or(self.min_accuracy),
            max_accuracy_drop: o.max_accuracy_drop.or(self.max_accuracy_drop),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    pub name: String,
    /// The gateway's address: clients send predictions here.
    pub listen: SocketAddr,
    /// hoist-server processes per variant.
    #[serde(default = "one")]
    pub replicas: usize,
    #[serde(default)]
    pub strategy: StrategyKind,
    /// Canary steps (weight in percent of traffic to the candidate, and a pause).
    /// A final 100% step is implied.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Blue-green: how long the previous version stays warm after the switch, while
    /// the new one is judged on all traffic; a rollback in that time is instant.
    #[serde(default)]
    pub scale_down_delay: Dur,
    /// Wait for `hoist approve` before this environment takes any traffic.
    #[serde(default)]
    pub approval: bool,
    #[serde(default)]
    pub analysis: AnalysisOverride,
    /// Same value of this request header ⇒ same variant.
    #[serde(default)]
    pub sticky_header: Option<String>,
    /// Same value of this cookie ⇒ same variant.
    #[serde(default)]
    pub sticky_cookie: Option<String>,
    /// A request header whose value (`stable` or `candidate`) forces the variant.
    #[serde(default = "force_header")]
    pub force_header: String,
    /// How long the gateway waits for a model server to start answering a request
    /// before it answers 504 itself.
    #[serde(default = "sixty_seconds")]
    pub response_timeout: Dur,
    /// The name of an environment variable holding the token `POST /feedback` needs
    /// (`Authorization: Bearer <token>`); unset, anyone who reaches the gateway may
    /// post labels. The daemon refuses to start when the variable is empty.
    #[serde(default)]
    pub feedback_token_env: Option<String>,
}

fn sixty_seconds() -> Dur {
    Dur(Duration::from_secs(60))
}

fn one() -> usize {
    1
}

fn force_header() -> String {
    hoist_types::wire::headers::FORCE_VARIANT.into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    #[default]
    Canary,
    BlueGreen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Percent of live traffic the candidate answers (0 in a pure shadow step).
    #[serde(default)]
    pub weight: Weight,
    /// Percent of the requests stable answers that are also sent to the candidate,
    /// whose answers are compared with stable's and then discarded (a shadow step).
    #[serde(default)]
    pub shadow: Weight,
    #[serde(default)]
    pub pause: Pause,
}

/// A traffic share in percent, 0..=100.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u32")]
pub struct Weight(pub u32);

impl TryFrom<i64> for Weight {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        if (0..=100).contains(&v) {
            Ok(Weight(v as u32))
        } else {
            Err(format!(
                "weight must be a percentage from 0 to 100, not {v}"
            ))
        }
    }
}

impl From<Weight> for u32 {
    fn from(w: Weight) -> u32 {
        w.0
    }
}

/// How long a canary step holds: not at all, a duration (`"30s"`), or until
/// `hoist promote` (`pause = true`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PauseRepr", into = "PauseRepr")]
pub enum Pause {
    #[default]
    None,
    For(Duration),
    UntilPromoted,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum PauseRepr {
    Flag(bool),
    Text(String),
}

impl TryFrom<PauseRepr> for Pause {
    type Error = String;
    fn try_from(r: PauseRepr) -> Result<Self, String> {
        match r {
            PauseRepr::Flag(true) => Ok(Pause::UntilPromoted),
            PauseRepr::Flag(false) => Ok(Pause::None),
            PauseRepr::Text(s) if s == "manual" => Ok(Pause::UntilPromoted),
            PauseRepr::Text(s) => parse_duration(&s).map(|d| {
                if d.is_zero() {
                    Pause::None
                } else {
                    Pause::For(d)
                }
            }),
        }
    }
}

impl From<Pause> for PauseRepr {
    fn from(p: Pause) -> PauseRepr {
        match p {
            Pause::None => PauseRepr::Flag(false),
            Pause::UntilPromoted => PauseRepr::Flag(true),
            Pause::For(d) => PauseRepr::Text(format_duration(d)),
        }
    }
}

/// A duration written as `"250ms"`, `"30s"`, `"5m"`, `"1h"` (or a bare number of seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "DurRepr", into = "String")]
pub struct Dur(pub Duration);

#[derive(Deserialize)]
#[serde(untagged)]
enum DurRepr {
    Secs(u64),
    Text(String),
}

impl TryFrom<DurRepr> for Dur {
    type Error = String;
    fn try_from(r: DurRepr) -> Result<Self, String> {
        match r {
            DurRepr::Secs(s) => Ok(Dur(Duration::from_secs(s))),
            DurRepr::Text(s) => parse_duration(&s).map(Dur),
        }
    }
}

impl From<Dur> for String {
    fn from(d: Dur) -> String {
        format_duration(d.0)
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (write e.g. \"500ms\", \"30s\", \"5m\")"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{s}` (use ms, s, m or h)"
            ));
        }
    };
    if !secs.is_finite() || !(0.0..=7.0 * 86400.0).contains(&secs) {
        return Err(format!("duration `{s}` is out of range (0 to 7 days)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if !ms.is_multiple_of(60_000) || ms == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}m", ms / 60_000)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            registry: RegistryConfig::default(),
            api: ApiConfig::default(),
            model: ModelConfig::default(),
            server: ServerConfig::default(),
            analysis: Analysis::default(),
            environments: vec![
                Environment {
                    name: "staging".into(),
                    listen: ([127, 0, 0, 1], 8081).into(),
                    replicas: 1,
                    strategy: StrategyKind::BlueGreen,
                    steps: Vec::new(),
                    scale_down_delay: Dur(Duration::ZERO),
                    approval: false,
                    analysis: AnalysisOverride {
                        enabled: Some(false),
                        ..Default::default()
                    },
                    sticky_header: None,
                    sticky_cookie: None,
                    force_header: force_header(),
                    response_timeout: sixty_seconds(),
                    feedback_token_env: None,
                },
                Environment {
                    name: "production".into(),
                    listen: ([127, 0, 0, 1], 8080).into(),
                    replicas: 1,
                    strategy: StrategyKind::Canary,
                    steps: vec![
                        Step {
                            weight: Weight(10),
                            shadow: Weight(0),
                            pause: Pause::For(Duration::from_secs(30)),
                        },
                        Step {
                            weight: Weight(50),
                            shadow: Weight(0),
                            pause: Pause::For(Duration::from_secs(30)),
                        },
                    ],
                    scale_down_delay: Dur(Duration::ZERO),
                    approval: false,
                    analysis: AnalysisOverride::default(),
                    sticky_header: None,
                    sticky_cookie: None,
                    force_header: force_header(),
                    response_timeout: sixty_seconds(),
                    feedback_token_env: None,
                },
            ],
            gates: Vec::new(),
            notifications: Vec::new(),
            target: Default::default(),
            kubernetes: Default::default(),
        }
    }
}

/// A config that cannot be used, with the key (and line, where known) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    /// Parse and validate the text of a `hoist.toml`; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_string(),
            message: locate(text, &message),
        })?;
        Ok(cfg)
    }

    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Checks that span keys; the message starts with the key path.
    fn validate(&self) -> Result<(), String> {
        self.kubernetes.validate()?;
        if self.target == crate::kubernetes::TargetKind::Kubernetes {
            self.kubernetes.require_image()?;
            for (i, env) in self.environments.iter().enumerate() {
                if let Some(j) = env.steps.iter().position(|s| s.shadow.0 > 0) {
                    return Err(format!(
                        "environments[{i}].steps[{j}].shadow: shadow steps need hoist's gateway, \
                         which compares the answers; with target = \"kubernetes\" use canary weights"
                    ));
                }
                if self.analysis.with(&env.analysis).feedback {
                    return Err(format!(
                        "environments[{i}].analysis.feedback: feedback labels are taken by hoist's \
                         gateway (POST /feedback); with target = \"kubernetes\" they are not available yet"
                    ));
                }
            }
        }
        if self.model.name.trim().is_empty() {
            return Err("model.name: must not be empty".into());
        }
        if self.environments.is_empty() {
            return Err("environments: at least one environment is needed".into());
        }
        let mut names = BTreeSet::new();
        let mut listens = BTreeSet::new();
        for (i, env) in self.environments.iter().enumerate() {
            let key = format!("environments[{i}]");
            if env.name.is_empty()
                || !env
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "{key}.name: `{}` must be letters, digits, `-` or `_`",
                    env.name
                ));
            }
            if !names.insert(env.name.clone()) {
                return Err(format!("{key}.name: `{}` is declared twice", env.name));
            }
            if env.listen.port() != 0 && !listens.insert(env.listen) {
                return Err(format!(
                    "{key}.listen: {} is already the address of another environment",
                    env.listen
                ));
            }
            if env.listen == self.api.listen && env.listen.port() != 0 {
                return Err(format!(
                    "{key}.listen: {} is the API's address (api.listen)",
                    env.listen
                ));
            }
            if env.replicas == 0 || env.replicas > 64 {
                return Err(format!(
                    "{key}.replicas: must be from 1 to 64, not {}",
                    env.replicas
                ));
            }
            match env.strategy {
                StrategyKind::Canary => {
                    let mut last = 0;
                    for (j, s) in env.steps.iter().enumerate() {
                        if s.weight.0 == 0 && s.shadow.0 == 0 {
                            return Err(format!(
                                "{key}.steps[{j}]: a step needs a weight above 0 or a shadow share above 0"
                            ));
                        }
                        if s.weight.0 == 0 && last > 0 {
                            return Err(format!(
                                "{key}.steps[{j}].weight: a shadow-only step (weight 0) must come before the steps with live traffic ({last}% before it)"
                            ));
                        }
                        if s.weight.0 > 0 && s.weight.0 <= last {
                            return Err(format!(
                                "{key}.steps[{j}].weight: weights must rise step by step above 0 ({} after {last})",
                                s.weight.0
                            ));
                        }
                        if s.shadow.0 > 0 && s.weight.0 == 100 {
                            return Err(format!(
                                "{key}.steps[{j}].shadow: at weight 100 stable answers nothing to mirror"
                            ));
                        }
                        last = s.weight.0;
                    }
                }
                StrategyKind::BlueGreen => {
                    if !env.steps.is_empty() {
                        return Err(format!(
                            "{key}.steps: a blue-green environment switches at once; steps are for strategy = \"canary\""
                        ));
                    }
                }
            }
            let a = self.analysis.with(&env.analysis);
            if !(0.0..=1.0).contains(&a.max_error_rate) {
                return Err(format!(
                    "{key}.analysis.max_error_rate: must be a share from 0 to 1, not {}",
                    a.max_error_rate
                ));
            }
            for (name, v) in [
                ("max_p99_ms", Some(a.max_p99_ms)),
                ("max_p95_ms", a.max_p95_ms),
                ("max_p50_ms", a.max_p50_ms),
            ] {
                if let Some(v) = v
                    && !(v > 0.0 && v.is_finite())
                {
                    return Err(format!("{key}.analysis.{name}: must be above 0, not {v}"));
                }
            }
            if !(0.5..1.0).contains(&a.confidence) {
                return Err(format!(
                    "{key}.analysis.confidence: must be from 0.5 to below 1, not {}",
                    a.confidence
                ));
            }
            if a.tolerance.is_nan() || a.tolerance < 0.0 {
                return Err(format!("{key}.analysis.tolerance: must be 0 or more"));
            }
            if env.response_timeout.0 < Duration::from_millis(10) {
                return Err(format!("{key}.response_timeout: must be at least 10ms"));
            }
            if a.interval.0 < Duration::from_millis(10) {
                return Err(format!("{key}.analysis.interval: must be at least 10ms"));
            }
            for (name, v) in [
                ("error_tolerance", Some(a.error_tolerance)),
                ("min_agreement", Some(a.min_agreement)),
                ("max_probability_diff", Some(a.max_probability_diff)),
                ("min_accuracy", a.min_accuracy),
                ("max_accuracy_drop", a.max_accuracy_drop),
            ] {
                if let Some(v) = v
                    && !(0.0..=1.0).contains(&v)
                {
                    return Err(format!(
                        "{key}.analysis.{name}: must be a share from 0 to 1, not {v}"
                    ));
                }
            }
            if let Some(e) = a.drift_bins.iter().find(|e| !e.is_finite()) {
                return Err(format!(
                    "{key}.analysis.drift_bins: {e} is not a finite number"
                ));
            }
            if let Some(w) = a.drift_bins.windows(2).find(|w| w[0] >= w[1]) {
                return Err(format!(
                    "{key}.analysis.drift_bins: edges must be strictly ascending; {} is followed by {}",
                    w[0], w[1]
                ));
            }
            if a.drift_bins.len() > MAX_DRIFT_BIN_EDGES {
                return Err(format!(
                    "{key}.analysis.drift_bins: {} edges; at most {MAX_DRIFT_BIN_EDGES}",
                    a.drift_bins.len()
                ));
            }
            if a.feedback && a.min_labels == 0 {
                return Err(format!(
                    "{key}.analysis.min_labels: must be at least 1 when feedback is on"
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.analysis.max_error_rate) {
            return Err(format!(
                "analysis.max_error_rate: must be a share from 0 to 1, not {}",
                self.analysis.max_error_rate
            ));
        }
        if !matches!(
            self.server.runtime.as_str(),
            "auto" | "onnxruntime" | "tract"
        ) {
            return Err(format!(
                "server.runtime: `{}` is not one of auto, onnxruntime, tract",
                self.server.runtime
            ));
        }
        Ok(())
    }

    /// The hoist-server flags of `env`'s model servers beyond the model, its name,
    /// version, address and `--runtime` (the same on one machine and in a pod):
    /// `server.args`, and `--prediction-bins` when the environment's analysis has
    /// `drift_bins`.
    pub fn server_args(&self, env: &Environment) -> Vec<String> {
        let mut args = self.server.args.clone();
        let bins = &self.analysis.with(&env.analysis).drift_bins;
        if !bins.is_empty() {
            let edges: Vec<String> = bins.iter().map(|e| e.to_string()).collect();
            args.extend(["--prediction-bins".to_string(), edges.join(",")]);
        }
        args
    }

    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name == name)
    }
}

/// Add the line of an `environments[i]` key to a validation message, where the file
/// lets us find it (the i-th `[[environments]]` header).
fn locate(text: &str, message: &str) -> String {
    let Some(rest) = message.strip_prefix("environments[") else {
        return message.to_string();
    };
    let Some(i) = rest.split(']').next().and_then(|n| n.parse::<usize>().ok()) else {
        return message.to_string();
    };
    let line = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("[[environments]]"))
        .nth(i)
        .map(|(n, _)| n + 1);
    match line {
        Some(n) => format!("{message} (environment declared at line {n})"),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default_pipeline() {
        let c = Config::parse("", "hoist.toml").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.environments[0].name, "staging");
        assert_eq!(c.model.trigger, Trigger::Alias("champion".into()));
    }

    #[test]
    fn full_file_parses() {
        let text = r#"
[registry]
url = "embedded"
poll_interval = "250ms"

[model]
name = "fraud"
trigger = { stage = "Production" }

[analysis]
max_p99_ms = 50
min_requests = 5

[[environments]]
name = "staging"
listen = "127.0.0.1:9001"
strategy = "blue-green"
scale_down_delay = "10s"

[[environments]]
name = "production"
listen = "127.0.0.1:9002"
replicas = 2
approval = true
steps = [{ weight = 10, pause = "1m" }, { weight = 50, pause = true }]
analysis = { max_error_rate = 0.05 }
"#;
        let c = Config::parse(text, "hoist.toml").unwrap();
        assert_eq!(c.model.trigger, Trigger::Stage("Production".into()));
        assert_eq!(c.registry.poll_interval.0, Duration::from_millis(250));
        let p = &c.environments[1];
        assert_eq!(p.replicas, 2);
        assert_eq!(p.steps[0].pause, Pause::For(Duration::from_secs(60)));
        assert_eq!(p.steps[1].pause, Pause::UntilPromoted);
        let a = c.analysis.with(&p.analysis);
        assert_eq!(a.max_error_rate, 0.05);
        assert_eq!(a.max_p99_ms, 50.0);
        assert_eq!(
            c.environments[0].scale_down_delay.0,
            Duration::from_secs(10)
        );
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = Config::parse("[model]\nname = \"x\"\ntriger = \"manual\"\n", "hoist.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("triger"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn bad_weight_is_named_with_its_line() {
        let text = "[[environments]]\nname = \"p\"\nlisten = \"127.0.0.1:1\"\nsteps = [{ weight = 150 }]\n";
        let err = Config::parse(text, "hoist.toml").unwrap_err().to_string();
        assert!(err.contains("weight must be a percentage"), "{err}");
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn falling_weights_are_refused_with_the_key() {
        let text = "[[environments]]\nname = \"p\"\nlisten = \"127.0.0.1:1\"\nsteps = [{ weight = 50 }, { weight = 20 }]\n";
        let err = Config::parse(text, "hoist.toml").unwrap_err().to_string();
        assert!(err.contains("environments[0].steps[1].weight"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn gates_and_notifications_parse() {
        let text = r#"
[[gates]]
kind = "golden-set"
file = "golden.csv"
min_accuracy = 0.9
min_recall = { "1" = 0.95 }

[[gates]]
kind = "latency"
max_p99_ms = 50

[[gates]]
kind = "command"
run = ["pytest", "-q"]

[[notifications]]
url = "http://127.0.0.1:9/hook"
kind = "slack"
events = ["rolled_back"]
"#;
        let c = Config::parse(text, "hoist.toml").unwrap();
        assert_eq!(c.gates.len(), 3);
        assert!(
            matches!(&c.gates[0], Gate::GoldenSet { min_recall, label, .. } if min_recall["1"] == 0.95 && label == "label")
        );
        assert!(matches!(
            &c.gates[1],
            Gate::Latency {
                concurrency: 4,
                requests: 200,
                ..
            }
        ));
        assert_eq!(c.notifications[0].kind, NotificationKind::Slack);
        let err = Config::parse("[[gates]]\nkind = \"vibes\"\n", "hoist.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("vibes") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
    }

    #[test]
    fn duplicate_environment_is_refused() {
        let text = "[[environments]]\nname = \"p\"\nlisten = \"127.0.0.1:1\"\n[[environments]]\nname = \"p\"\nlisten = \"127.0.0.1:2\"\n";
        let err = Config::parse(text, "hoist.toml").unwrap_err().to_string();
        assert!(err.contains("declared twice"), "{err}");
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn comparison_and_drift_bin_keys_are_checked_and_reach_the_servers() {
        let env = |analysis: &str| {
            format!(
                "[analysis]\nmax_p95_ms = 80\n[[environments]]\nname = \"p\"\nlisten = \"127.0.0.1:1\"\nanalysis = {{ {analysis} }}\n"
            )
        };
        let c = Config::parse(
            &env("drift_bins = [100, 150.5, 200], error_tolerance = 0.01, max_p50_ms = 20"),
            "hoist.toml",
        )
        .unwrap();
        let a = c.analysis.with(&c.environments[0].analysis);
        assert_eq!(a.max_p95_ms, Some(80.0), "inherited from [analysis]");
        assert_eq!(a.max_p50_ms, Some(20.0));
        assert_eq!(a.error_tolerance, 0.01);
        assert!(a.compare_errors, "on by default");
        assert_eq!(
            c.server_args(&c.environments[0]),
            vec!["--prediction-bins", "100,150.5,200"]
        );
        // No bins: no flag.
        let c = Config::parse(&env("max_p50_ms = 20"), "hoist.toml").unwrap();
        assert!(c.server_args(&c.environments[0]).is_empty());
        for (analysis, want) in [
            (
                "drift_bins = [200, 100]",
                "environments[0].analysis.drift_bins: edges must be strictly ascending; 200 is followed by 100",
            ),
            (
                "error_tolerance = 2.0",
                "environments[0].analysis.error_tolerance: must be a share from 0 to 1",
            ),
            (
                "max_p50_ms = 0",
                "environments[0].analysis.max_p50_ms: must be above 0",
            ),
        ] {
            let err = Config::parse(&env(analysis), "hoist.toml")
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{analysis}: {err}");
        }
    }
}
