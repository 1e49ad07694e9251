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

mod analysis;
mod duration;
mod environment;
mod load;
mod models;
mod policy;
#[cfg(test)]
mod tests;
pub use analysis::*;
pub use duration::*;
pub use environment::*;
pub use load::*;
pub use models::*;
pub use policy::*;

/// A parsed, validated `hoist.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub registry: RegistryConfig,
    pub api: ApiConfig,
    pub model: ModelConfig,
    /// `[[models]]`: several models, each with its own releases (empty: the one
    /// `[model]`). See [`Config::per_model`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelEntry>,
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
    /// `[policy.<environment>]`: signatures (and provenance) required before the
    /// environment runs a version.
    pub policy: Policy,
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
    /// Environment variable holding the signing secret (json only), or whose `_FILE`
    /// names a file holding it (read again when the file is rotated).
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
    /// Environment variable holding the webhook secret, or whose `_FILE` names a file
    /// holding it (read again when the file is rotated).
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
    /// The OCI repository `hoist model push` pushes this model's versions to
    /// (`HOST[:PORT]/PATH`; each version under the tag `<name>-v<version>`): what
    /// `[policy]` verifies and `kubernetes.model_source = "oci"` pulls.
    pub artifact_repository: Option<String>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            name: "default".into(),
            trigger: Trigger::Alias("champion".into()),
            mid_rollout: MidRollout::Queue,
            artifact_repository: None,
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
    /// The Python that runs MLflow's scoring server (`python -m mlflow models
    /// serve`) for a model version with no onnx flavor; it must have `mlflow` and the
    /// model's libraries. Unset: hoist makes a virtualenv from the model's
    /// `requirements.txt` once, under `HOIST_HOME/envs/<sha256>`.
    pub python: Option<String>,
    /// Further `mlflow models serve` flags for those models, e.g. `["--workers", "2"]`
    /// (`args` are hoist-server's and do not apply to them).
    pub mlflow_args: Vec<String>,
    /// Pack the models of each environment into two shared hoist-server processes
    /// (a model's stable in one, its candidate in the other) instead of one process
    /// per model version. Local environments with one replica only; a version
    /// hoist-server cannot serve (an MLflow pyfunc) keeps a process of its own.
    pub pack: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            runtime: "auto".into(),
            args: Vec::new(),
            ready_timeout: Dur(Duration::from_secs(60)),
            stop_grace: Dur(Duration::from_secs(10)),
            python: None,
            mlflow_args: Vec::new(),
            pack: false,
        }
    }
}
impl Default for Config {
    fn default() -> Self {
        Config {
            registry: RegistryConfig::default(),
            api: ApiConfig::default(),
            model: ModelConfig::default(),
            models: Vec::new(),
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
            policy: Default::default(),
        }
    }
}
