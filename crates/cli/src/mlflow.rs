//! `hoist mlflow …`: connecting an MLflow tracking server to hoist.
//!
//! `connect` creates, on the MLflow server `--registry` names (MLflow ≥ 3.3 with a SQL
//! backend), the webhook that delivers the model-registry events hoist listens to to
//! hoist's receiver (`hoist watch --webhook-listen`).

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;

use crate::watch::read_secret;
use crate::{CliError, Context, Opened, stdout_err};

/// The MLflow webhook events hoist's receiver turns into events.
pub(crate) const EVENTS: [&str; 5] = [
    "model_version.created",
    "model_version_alias.created",
    "model_version_alias.deleted",
    "model_version_tag.set",
    "model_version_tag.deleted",
];

#[derive(Debug, Subcommand)]
pub enum MlflowCmd {
    /// Create the webhook that sends MLflow's model-registry events to hoist
    ///
    /// Creates a webhook on the MLflow server (--registry URL or MLFLOW_TRACKING_URI;
    /// MLflow 3.3 or newer with a database backend) for model_version.created,
    /// model_version_alias.created/deleted and model_version_tag.set/deleted, signed
    /// with the secret, and prints its id. Then run
    /// `hoist watch --webhook-listen ADDR --webhook-secret-file F` where --url reaches.
    /// MLflow caches its webhook list (60 s by default), so the first deliveries may
    /// take up to a minute. An MLflow server refuses http:// and private addresses
    /// unless started with MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https and
    /// MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true.
    Connect {
        /// The URL at which the MLflow server reaches hoist's receiver, e.g.
        /// http://hoist.internal:8787/webhook
        #[arg(long, value_name = "URL")]
        url: String,
        /// The shared secret deliveries are signed with
        #[arg(
            long,
            value_name = "SECRET",
            conflicts_with = "secret_file",
            required_unless_present = "secret_file"
        )]
        secret: Option<String>,
        /// Read the secret from FILE (trailing newline ignored)
        #[arg(long, value_name = "FILE")]
        secret_file: Option<PathBuf>,
        /// The webhook's name in MLflow
        #[arg(long, default_value = "hoist")]
        name: String,
    },
}

pub(crate) fn run(ctx: &Context<'_>, cmd: MlflowCmd, out: &mut dyn Write) -> Result<(), CliError> {
    match cmd {
        MlflowCmd::Connect {
            url,
            secret,
            secret_file,
            name,
        } => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(CliError::Usage(format!(
                    "--url {url}: give the http:// or https:// URL at which MLflow reaches hoist's receiver"
                )));
            }
            let secret = read_secret(secret.as_deref(), secret_file.as_ref())?
                .ok_or_else(|| CliError::Usage("give --secret S or --secret-file F".into()))?;
            if ctx.registry == "embedded" {
                return Err(CliError::Usage(
                    "hoist mlflow connect needs an MLflow server: pass --registry http://HOST:PORT \
                     or set MLFLOW_TRACKING_URI"
                        .into(),
                ));
            }
            let Opened::Mlflow(reg) = ctx.open_registry()? else {
                unreachable!("not embedded, checked above")
            };
            let id = reg.create_webhook(&name, &url, &secret, &EVENTS)?;
            if ctx.json {
                let v = serde_json::json!({
                    "webhook_id": id,
                    "name": name,
                    "url": url,
                    "events": EVENTS,
                    "registry": reg.tracking_uri(),
                });
                return ctx.print_json(out, &v);
            }
            writeln!(
                out,
                "created webhook {id} ({name}) on {}: {} -> {url}",
                reg.tracking_uri(),
                EVENTS.join(", ")
            )
            .map_err(stdout_err)
        }
    }
}
