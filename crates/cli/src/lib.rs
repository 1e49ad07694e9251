//! hoist's command line.
//!
//! # Layout
//! - this file: the command tree ([`Cli`]), [`run`], and the error every command
//!   returns ([`CliError`]) with its exit code.
//! - `model`: `hoist model …`, the registry commands.
//! - `watch`: `hoist watch`, promotion events printed live.
//! - `mlflow`: `hoist mlflow connect`, the webhook on an MLflow server.
//! - `image`: `hoist image push` and `hoist model push` (OCI images and artifacts).
//! - `sign`: `hoist key generate`, `sign`, `attest`, `verify` (cosign-compatible).
//! - `render`: `hoist render k8s`, the pipeline as Kubernetes manifests.
//! - `gateway`: `hoist gateway`, hoist's gateway alone with its admin API (a cluster's
//!   `split = "hoist"`).
//! - `runtime`: `hoist runtime install|list`, ONNX Runtime's library for hoist-server.
//! - `ci`: `hoist ci init github|azure`, the CI file that drives a release.
//! - `output`: human tables and dates, and release summaries in Markdown (`--json`
//!   output is serde's).
//!
//! Commands print results on stdout and nothing else there; errors go to stderr
//! (as JSON with `--json`), with an exit code a script can branch on.

mod ci;
mod client;
mod doctor;
mod gateway;
mod image;
mod mlflow;
mod model;
mod output;
mod pipeline_file;
mod quickstart;
mod release;
mod render;
mod runtime;
mod sign;
mod watch;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use hoist_registry::Registry;
use hoist_registry::embedded::EmbeddedRegistry;
use hoist_registry::mlflow::MlflowRegistry;

pub use mlflow::MlflowCmd;
pub use model::ModelCmd;
pub use runtime::RuntimeCmd;
pub use watch::WatchArgs;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  failure (storage, I/O, registry unreachable or refusing the credentials,
     a download failed)
  2  bad usage or input (unknown flag, bad path, invalid name, a command the
     registry does not support)
  3  not found (model, version, alias or stage; a runtime release)
  4  integrity failure (files do not match their digest, a version is not
     the one --digest pins, a download is not the file hoist pins;
     `verify`: no valid signature or attestation)
  5  the release was rolled back or aborted (`deploy --wait`, `rollback`)
  6  refused by the daemon (another release is mid-rollout, the release is not
     waiting for that, the version is already live)
  7  gave up waiting (`--timeout`); the release goes on
  8  the OCI registry is unreachable (connection, DNS, TLS certificate)
  9  the OCI registry refused the credentials (401)
 10  the OCI registry denied access (403)
 11  not found on the OCI registry (404: repository, blob)
 12  manifest unknown (no such tag or digest in the OCI registry)";

/// The `hoist` command line.
#[derive(Debug, Parser)]
#[command(
    name = "hoist",
    version,
    about = "Take trained models from a registry to production safely",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Data directory of the embedded registry [default: $HOIST_HOME, else ~/.hoist]
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// Which registry: `embedded` (hoist's own, under --home) or an MLflow tracking
    /// server URL (http://HOST:PORT; credentials from MLFLOW_TRACKING_USERNAME and
    /// MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN) [default:
    /// $MLFLOW_TRACKING_URI when set, else embedded]
    #[arg(long, global = true, value_name = "REGISTRY")]
    pub registry: Option<String>,

    /// Print JSON for scripts instead of tables (errors too, on stderr)
    #[arg(long, global = true)]
    pub json: bool,

    /// The daemon's API for deploy, status, promote, approve, abort, rollback and
    /// history [default: $HOIST_API, else the address `hoist up` wrote under
    /// HOIST_HOME, else http://127.0.0.1:7070]
    #[arg(long, global = true, value_name = "URL")]
    pub api: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register, inspect, promote and fetch model versions
    #[command(subcommand, after_help = EXIT_CODES)]
    Model(ModelCmd),
    /// Print promotion events (alias and stage moves) live as they happen
    ///
    /// Follows the registry --registry names: the embedded registry through its change
    /// log, an MLflow server by polling and, with --webhook-listen, through MLflow
    /// webhooks too (create one with `hoist mlflow connect`). Webhook deliveries are
    /// verified (HMAC signature, freshness, no replay) before anything is printed, and
    /// a move seen by both paths is printed once. One line per event (one JSON object
    /// per line with --json); runs until Ctrl-C or SIGTERM, or --max-events.
    #[command(after_help = EXIT_CODES)]
    Watch(WatchArgs),
    /// Build OCI images without a Docker daemon and push them to a registry
    #[command(subcommand, after_help = EXIT_CODES)]
    Image(image::ImageCmd),
    /// Cosign-compatible keys: `hoist key generate`
    #[command(subcommand, after_help = EXIT_CODES)]
    Key(sign::KeyCmd),
    /// Sign an image by digest where cosign looks (the sha256-<digest>.sig tag)
    #[command(after_help = EXIT_CODES)]
    Sign(sign::SignArgs),
    /// Attach SLSA v1 provenance (in-toto, DSSE) where cosign looks (.att)
    #[command(after_help = EXIT_CODES)]
    Attest(sign::AttestArgs),
    /// Check an image's signature (and --attestation) with a public key: exit 0, or 4
    /// with the reason
    #[command(after_help = EXIT_CODES)]
    Verify(sign::VerifyArgs),
    /// Connect an MLflow server to hoist (webhooks)
    #[command(subcommand, after_help = EXIT_CODES)]
    Mlflow(MlflowCmd),
    /// Run the control plane: registry triggers, release engine, one gateway per
    /// environment, supervised model servers, and the API the other commands use
    ///
    /// Reads hoist.toml (--config, else ./hoist.toml, else a built-in pipeline: the
    /// embedded registry, model `default` released when alias `champion` moves,
    /// staging (blue-green) then production (canary 10% → 50% → 100%, analysed)).
    /// Prints each release's progress; Ctrl-C or SIGTERM drains and stops everything.
    /// Mutating API calls need the token: HOIST_ADMIN_TOKEN or HOIST_ADMIN_TOKEN_FILE,
    /// else one is generated into HOIST_HOME/daemon/token (the CLI finds it there).
    #[command(after_help = EXIT_CODES)]
    Up(release::UpArgs),
    /// Start a release of a model version (MODEL@ALIAS, MODEL/VERSION, MODEL)
    #[command(after_help = EXIT_CODES)]
    Deploy(release::DeployArgs),
    /// Environments, weights, live metrics and releases in progress (--watch: live)
    #[command(after_help = EXIT_CODES)]
    Status(release::StatusArgs),
    /// End a release's current pause (--full: straight to 100%)
    #[command(after_help = EXIT_CODES)]
    Promote(release::PromoteArgs),
    /// Approve a release waiting for approval
    #[command(after_help = EXIT_CODES)]
    Approve(release::ReleaseIdArgs),
    /// Abort a release: its environment goes back to 100% stable at once
    #[command(after_help = EXIT_CODES)]
    Abort(release::AbortArgs),
    /// Roll an environment back: abort its release in progress, else bring back the
    /// previous live version (or --to VERSION) and switch to it once it is healthy
    #[command(after_help = EXIT_CODES)]
    Rollback(release::RollbackArgs),
    /// Every release: versions, digests, trigger, outcome and reason; with a release
    /// id, every verdict it got and the numbers behind each
    #[command(after_help = EXIT_CODES)]
    History(release::HistoryArgs),
    /// The whole product in one minute: a temporary daemon delivering two models under
    /// live traffic; canaries that succeed and, at the same time, one caught and rolled back
    #[command(after_help = EXIT_CODES)]
    Quickstart(quickstart::QuickstartArgs),
    /// Render the pipeline for another platform: `hoist render k8s` writes Kubernetes
    /// manifests (kubectl apply, kustomize, GitOps)
    #[command(subcommand, after_help = EXIT_CODES)]
    Render(render::RenderCmd),
    /// Check a cluster before the first release: API server, CRDs, namespaces, Secrets,
    /// the controller's permissions, Prometheus, MLflow, the image; exit 0 only if all pass
    #[command(after_help = EXIT_CODES)]
    Doctor(doctor::DoctorArgs),
    /// Inference runtimes for hoist-server: `hoist runtime install onnxruntime`
    /// fetches ONNX Runtime's library; `hoist runtime list` shows what serves by default
    #[command(subcommand, after_help = EXIT_CODES)]
    Runtime(runtime::RuntimeCmd),
    /// CI that drives releases: `hoist ci init github|azure` writes a workflow that
    /// pushes, signs and attests the images and runs `hoist deploy --wait`
    #[command(subcommand, after_help = EXIT_CODES)]
    Ci(ci::CiCmd),
    /// Run hoist's gateway alone in front of a stable and a candidate upstream, with
    /// a token-protected admin API on its own address (a cluster's `split = "hoist"`)
    #[command(after_help = EXIT_CODES)]
    Gateway(gateway::GatewayArgs),
    /// Run a model server (the same program and flags as `hoist-server`)
    #[command(hide = true, disable_help_flag = true)]
    Serve {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// Why a command failed. Every variant maps to an exit code ([`CliError::exit_code`])
/// and a stable code name for `--json` errors ([`CliError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Registry(#[from] hoist_registry::Error),
    /// The registry named by `--registry` cannot serve this command.
    #[error("{0}")]
    Unsupported(String),
    /// Bad input that clap could not catch (a `--tag` without `=`, a busy `--to`).
    #[error("{0}")]
    Usage(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The daemon could not be reached or started.
    #[error("{message}")]
    Daemon { message: String },
    /// The daemon's API refused the call, with this code.
    #[error("{message}")]
    Api {
        code: hoist_types::ErrorCode,
        message: String,
    },
    /// hoist.toml is invalid.
    #[error("{0}")]
    Config(String),
    /// The release ended without succeeding.
    #[error("{0}")]
    ReleaseFailed(String),
    #[error("{0}")]
    Timeout(String),
    /// A version is not the package a `--digest` pins, or a download is not the
    /// file hoist pins.
    #[error("{0}")]
    PinMismatch(String),
    /// Something asked for (a runtime release) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A download failed.
    #[error("{0}")]
    Download(String),
    /// `hoist doctor`: some checks failed (each printed with its fix).
    #[error("{0}")]
    Checks(String),
    /// An OCI registry or image failure (its own exit codes, 8–12).
    #[error(transparent)]
    Oci(#[from] hoist_oci::Error),
}

impl CliError {
    /// The process exit code (see `hoist --help`).
    pub fn exit_code(&self) -> u8 {
        use hoist_registry::Error as E;
        match self {
            CliError::Registry(
                E::ModelNotFound(_)
                | E::VersionNotFound { .. }
                | E::AliasNotFound { .. }
                | E::StageEmpty { .. },
            ) => 3,
            CliError::NotFound(_) => 3,
            CliError::Registry(E::DigestMismatch { .. }) | CliError::PinMismatch(_) => 4,
            CliError::Registry(E::InvalidRef(_) | E::Invalid(_))
            | CliError::Unsupported(_)
            | CliError::Usage(_) => 2,
            CliError::Registry(_)
            | CliError::Io { .. }
            | CliError::Daemon { .. }
            | CliError::Download(_)
            | CliError::Checks(_) => 1,
            CliError::Config(_) => 2,
            CliError::Api { code, .. } => code.exit_code(),
            CliError::ReleaseFailed(_) => 5,
            CliError::Timeout(_) => 7,
            CliError::Oci(e) => e.exit_code(),
        }
    }

    /// A stable name for the kind of failure, for `--json` errors.
    pub fn code(&self) -> &'static str {
        use hoist_registry::Error as E;
        match self {
            CliError::Registry(e) => match e {
                E::InvalidRef(_) => "invalid_reference",
                E::ModelNotFound(_) => "model_not_found",
                E::VersionNotFound { .. } => "version_not_found",
                E::AliasNotFound { .. } => "alias_not_found",
                E::StageEmpty { .. } => "stage_empty",
                E::DigestMismatch { .. } => "digest_mismatch",
                E::Invalid(_) => "invalid_input",
                E::Store(_) => "store_error",
                E::Io { .. } => "io_error",
                E::Unreachable { .. } => "registry_unreachable",
                E::Unauthorized { .. } => "unauthorized",
                E::NotReady { .. } => "version_not_ready",
                E::Remote { .. } => "registry_error",
            },
            CliError::Unsupported(_) => "unsupported_registry",
            CliError::Usage(_) => "usage",
            CliError::Io { .. } => "io_error",
            CliError::Daemon { .. } => "daemon_unavailable",
            CliError::Api { code, .. } => code.name(),
            CliError::Config(_) => "invalid_config",
            CliError::ReleaseFailed(_) => "release_failed",
            CliError::Timeout(_) => "timeout",
            CliError::PinMismatch(_) => "digest_mismatch",
            CliError::NotFound(_) => "not_found",
            CliError::Download(_) => "download_failed",
            CliError::Checks(_) => "checks_failed",
            CliError::Oci(e) => e.code(),
        }
    }
}

/// Prints `e` for a person (`error: …`) or, with `json`, as
/// `{"error": {"code": …, "message": …}}`.
pub fn report(e: &CliError, json: bool, err: &mut dyn Write) {
    let message = e.to_string();
    let _ = if json {
        let v = serde_json::json!({ "error": { "code": e.code(), "message": message } });
        writeln!(err, "{v}")
    } else {
        writeln!(err, "error: {message}")
    };
}

/// Runs one command. `env` reads the environment (`HOIST_HOME`, `HOME`,
/// `HOIST_TEST_FAIL_AT`, `MLFLOW_TRACKING_URI` and MLflow's credential variables);
/// results are written to `out`.
pub fn run(
    cli: Cli,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let registry_explicit = cli.registry.is_some();
    let registry = cli
        .registry
        .or_else(|| env("MLFLOW_TRACKING_URI").filter(|u| !u.trim().is_empty()))
        .unwrap_or_else(|| "embedded".into());
    let ctx = Context {
        home: cli.home,
        registry,
        json: cli.json,
        env,
        api: cli.api,
        registry_explicit,
    };
    match cli.command {
        Command::Model(cmd) => model::run(&ctx, cmd, out),
        Command::Watch(args) => watch::run(&ctx, args, out),
        Command::Mlflow(cmd) => mlflow::run(&ctx, cmd, out),
        Command::Image(cmd) => image::run(&ctx, cmd, out),
        Command::Key(cmd) => sign::key(&ctx, cmd, out),
        Command::Sign(a) => sign::sign_cmd(&ctx, a, out),
        Command::Attest(a) => sign::attest_cmd(&ctx, a, out),
        Command::Verify(a) => sign::verify_cmd(&ctx, a, out),
        Command::Up(a) => release::up(&ctx, a, out),
        Command::Deploy(a) => release::deploy(&ctx, a, out),
        Command::Status(a) => release::status(&ctx, a, out),
        Command::Promote(a) => release::operator(
            &ctx,
            |api| {
                api.promote(
                    a.model.as_deref(),
                    a.release,
                    &hoist_types::api::Promote { full: a.full },
                )
            },
            if a.full {
                "promoted to 100%"
            } else {
                "promoted to its next step"
            },
            out,
        ),
        Command::Approve(a) => release::operator(
            &ctx,
            |api| api.approve(a.model.as_deref(), a.release),
            "approved",
            out,
        ),
        Command::Abort(a) => release::operator(
            &ctx,
            |api| {
                api.abort(
                    a.model.as_deref(),
                    a.release,
                    &hoist_types::api::Abort { reason: a.reason },
                )
            },
            "aborted: 100% back on stable",
            out,
        ),
        Command::Rollback(a) => release::rollback(&ctx, a, out),
        Command::History(a) => release::history(&ctx, a, out),
        Command::Quickstart(a) => quickstart::run(&ctx, a, out),
        Command::Render(cmd) => render::run(&ctx, cmd, out),
        Command::Runtime(cmd) => runtime::run(&ctx, cmd, out),
        Command::Doctor(a) => doctor::run(&ctx, a, out),
        Command::Ci(cmd) => ci::run(&ctx, cmd, out),
        Command::Gateway(a) => gateway::run(env, a, out),
        Command::Serve { .. } => Err(CliError::Usage(
            "`hoist serve` is handled before the command line is parsed".into(),
        )),
    }
}

/// What every command needs besides its own arguments.
pub(crate) struct Context<'a> {
    /// `--home`, if given.
    home: Option<PathBuf>,
    /// `--registry`, else `MLFLOW_TRACKING_URI`, else `embedded`.
    registry: String,
    /// `--json`.
    json: bool,
    /// The environment, as a function so tests need not touch the process's.
    env: &'a dyn Fn(&str) -> Option<String>,
    /// `--api`, if given.
    api: Option<String>,
    /// Whether `--registry` was given (it then overrides hoist.toml's).
    registry_explicit: bool,
}

impl Context<'_> {
    /// The registry home: `--home`, else `HOIST_HOME`, else `~/.hoist`.
    fn home(&self) -> Result<PathBuf, CliError> {
        match &self.home {
            Some(h) => Ok(h.clone()),
            None => Ok(hoist_registry::embedded::default_home(self.env)?),
        }
    }

    /// Opens the registry `--registry` names: the embedded one, or an MLflow client
    /// (no request is made yet). Anything else is a usage error.
    fn open_registry(&self) -> Result<Opened, CliError> {
        if self.registry == "embedded" {
            return Ok(Opened::Embedded(model::open_embedded(self)?));
        }
        let url = self.registry.as_str();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(CliError::Usage(format!(
                "registry '{url}' is neither `embedded` nor an MLflow tracking server URL \
                 (http://HOST:PORT); hoist reads MLflow over its REST API (check --registry \
                 and MLFLOW_TRACKING_URI)"
            )));
        }
        let env = self.env;
        let vars = |k: &str| {
            if k == "MLFLOW_TRACKING_URI" {
                Some(url.to_string())
            } else {
                env(k)
            }
        };
        let reg = MlflowRegistry::from_vars(vars)?.with_cache_dir(self.home()?.join("artifacts"));
        Ok(Opened::Mlflow(reg))
    }

    /// Writes `value` as pretty JSON.
    fn print_json(
        &self,
        out: &mut dyn Write,
        value: &impl serde::Serialize,
    ) -> Result<(), CliError> {
        let s = serde_json::to_string_pretty(value).expect("registry types serialize");
        writeln!(out, "{s}").map_err(stdout_err)
    }
}

/// A registry `--registry` named, opened.
pub(crate) enum Opened {
    Embedded(EmbeddedRegistry),
    Mlflow(MlflowRegistry),
}

impl Opened {
    /// The registry, for the commands every registry serves.
    pub(crate) fn as_dyn(&self) -> &dyn Registry {
        match self {
            Opened::Embedded(r) => r,
            Opened::Mlflow(r) => r,
        }
    }
}

pub(crate) fn stdout_err(source: std::io::Error) -> CliError {
    CliError::Io {
        context: "writing output".into(),
        source,
    }
}
