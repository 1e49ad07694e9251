//! The MLflow Model Registry over REST (MLflow 2.x and 3.x).
//!
//! Owns: every call hoist makes to an MLflow tracking server — models, versions,
//! aliases, stages, tags, artifact download (through the tracking server's
//! `mlflow-artifacts` proxy or from `file:` URIs and local paths), registration of
//! new versions ([`MlflowRegistry::register`]: files uploaded through the proxy) and
//! webhook creation. It must not decide anything: it answers, fetches, registers and
//! writes back tags.
//!
//! # Guarantees
//! - A fetched version's files go into the content-addressed [`ArtifactStore`] and are
//!   digested there ([`hoist_types::digest_path`]). The digest is written to the
//!   version tag [`DIGEST_TAG`] the first time; later fetches use the cached copy,
//!   re-verified against the tag on every use, or download again and compare. Any
//!   mismatch is [`Error::DigestMismatch`], never a silent re-download.
//! - A version is only fetched once its status is `READY`; `FAILED_REGISTRATION` is an
//!   error at once, `PENDING_REGISTRATION` is waited for (bounded by
//!   [`MlflowRegistry::with_ready_timeout`]).
//! - A version hoist registers carries [`DIGEST_TAG`] from its creation: the digest of
//!   the files exactly as MLflow then holds them (for a bare `.onnx` file, the
//!   directory holding that one file), so a later fetch verifies it like any other.
//!
//! # Caveats
//! - `https://` servers are verified against the system's roots, or against the CA
//!   bundle in `MLFLOW_TRACKING_SERVER_CERT_PATH`; `MLFLOW_TRACKING_INSECURE_TLS=true`
//!   turns verification off (as with MLflow's own client).
//! - Artifact stores other than the tracking server's proxy and local files (`s3:`,
//!   `gs:`, …) are not read directly: run the server with artifact serving (the
//!   default for `mlflow server` since 2.0) so versions resolve to `mlflow-artifacts:`.
//!   Registering needs that proxy too: hoist uploads through it, as MLflow's client does.
//! - Registration is idempotent against the latest version only (as in the embedded
//!   registry), and two concurrent registrations of the same files may both create a
//!   version: MLflow has no transaction hoist could hold across the upload.

use hoist_types::{Secret, SecretError};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::cas::ArtifactStore;
pub use crate::embedded::Registration;
use crate::{
    Error, Fetched, ModelRef, ModelVersion, RegisteredModel, Registry, Result, Selector,
    VersionStatus,
};

mod http;
mod register;
mod registry;
#[cfg(test)]
mod tests;
mod wire;
use http::*;
use wire::*;

/// The version tag hoist records a version's digest in.
pub const DIGEST_TAG: &str = hoist_types::wire::tags::DIGEST;

/// The experiment whose runs own the files of the versions hoist registers, unless
/// `MLFLOW_EXPERIMENT_NAME` names another (created if missing).
pub const DEFAULT_EXPERIMENT: &str = "hoist";

/// Where in its run a registered package's files go (`<run artifacts>/model`), as
/// with MLflow's own `log_model(name="model")`.
pub const ARTIFACT_PATH: &str = "model";

/// How hoist authenticates to the tracking server (the variables MLflow users set).
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    None,
    /// `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`.
    Basic { username: Secret, password: Secret },
    /// `MLFLOW_TRACKING_TOKEN`.
    Bearer(Secret),
}

impl std::fmt::Debug for Auth {
    // Never print secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => write!(f, "None"),
            Auth::Basic { .. } => write!(f, "Basic(***)"),
            Auth::Bearer(_) => write!(f, "Bearer(***)"),
        }
    }
}

/// A webhook event as MLflow names it: `model_version_alias.created` and so on.
pub type WebhookEventName<'a> = &'a str;

/// A client of one MLflow tracking server, implementing [`Registry`].
#[derive(Debug)]
pub struct MlflowRegistry {
    /// The tracking URI without a trailing slash: the registry's identity, and the base
    /// of every request.
    base: String,
    /// Credentials sent with every request.
    auth: Auth,
    /// One connection pool for the registry's lifetime.
    http: reqwest::blocking::Client,
    /// The content-addressed store fetched versions are kept in ([`ArtifactStore`]).
    cache_dir: PathBuf,
    /// How long [`Registry::fetch`] waits for a `PENDING_REGISTRATION` version.
    ready_timeout: Duration,
    /// The experiment [`MlflowRegistry::register`] creates its runs in.
    experiment: String,
}

/// How to check the tracking server's certificate, as MLflow's own client is told:
/// `MLFLOW_TRACKING_SERVER_CERT_PATH` (a CA bundle to trust instead of the system's)
/// and `MLFLOW_TRACKING_INSECURE_TLS` (no verification).
#[derive(Debug, Clone, Default)]
struct Tls {
    ca_bundle: Option<PathBuf>,
    insecure: bool,
}

/// Distinguishes temporary download directories of concurrent fetches in one process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl MlflowRegistry {
    /// A client of the tracking server at `tracking_uri` (`http://host:port[/prefix]`),
    /// without credentials, caching into the artifact store `$HOIST_HOME/artifacts`
    /// (default `~/.hoist`; the embedded registry's store: content addressing makes
    /// sharing it safe).
    pub fn new(tracking_uri: &str) -> Result<MlflowRegistry> {
        Self::with_auth(tracking_uri, Auth::None)
    }

    /// Like [`MlflowRegistry::new`] with credentials.
    pub fn with_auth(tracking_uri: &str, auth: Auth) -> Result<MlflowRegistry> {
        Self::build(
            tracking_uri,
            auth,
            default_cache_dir(|k| std::env::var(k).ok()),
            &Tls::default(),
        )
    }

    /// From the environment MLflow users already set: `MLFLOW_TRACKING_URI` (required),
    /// `MLFLOW_TRACKING_USERNAME`/`MLFLOW_TRACKING_PASSWORD` (basic auth) or
    /// `MLFLOW_TRACKING_TOKEN` (bearer), each also from the file `{VAR}_FILE` names
    /// (read again when it is rotated; a file that does not exist counts as unset, as a
    /// mounted Secret holds a username and password, or a token);
    /// `MLFLOW_EXPERIMENT_NAME` names the experiment
    /// [`register`](Self::register) logs to (default [`DEFAULT_EXPERIMENT`]).
    pub fn from_env() -> Result<MlflowRegistry> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`MlflowRegistry::from_env`] over any source of variables (tests pass a map).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<MlflowRegistry> {
        let uri = var("MLFLOW_TRACKING_URI")
            .filter(|u| !u.is_empty())
            .ok_or_else(|| Error::Invalid("MLFLOW_TRACKING_URI is not set".into()))?;
        let cred = |name: &str| match Secret::from_env(name, &var) {
            Ok(s) => Ok(s),
            Err(SecretError::NoFile { .. }) => Ok(None),
            Err(e) => Err(Error::Invalid(e.to_string())),
        };
        let auth = match (
            cred("MLFLOW_TRACKING_USERNAME")?,
            cred("MLFLOW_TRACKING_PASSWORD")?,
            cred("MLFLOW_TRACKING_TOKEN")?,
        ) {
            (Some(username), Some(password), _) => Auth::Basic { username, password },
            (_, _, Some(token)) => Auth::Bearer(token),
            (Some(_), None, None) => {
                return Err(Error::Invalid(
                    "MLFLOW_TRACKING_USERNAME is set but MLFLOW_TRACKING_PASSWORD is not".into(),
                ));
            }
            _ => Auth::None,
        };
        let tls = Tls {
            ca_bundle: var("MLFLOW_TRACKING_SERVER_CERT_PATH")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            insecure: var("MLFLOW_TRACKING_INSECURE_TLS")
                .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1"),
        };
        let experiment = var("MLFLOW_EXPERIMENT_NAME").filter(|e| !e.trim().is_empty());
        let reg = Self::build(&uri, auth, default_cache_dir(&var), &tls)?;
        Ok(match experiment {
            Some(e) => reg.with_experiment(e),
            None => reg,
        })
    }

    fn build(
        tracking_uri: &str,
        auth: Auth,
        cache_dir: PathBuf,
        tls: &Tls,
    ) -> Result<MlflowRegistry> {
        let base = tracking_uri.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(Error::Invalid(format!(
                "{tracking_uri}: an MLflow tracking URI must start with http:// or https://"
            )));
        }
        let mut builder = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300));
        if let Some(path) = &tls.ca_bundle {
            let pem = std::fs::read(path).map_err(|source| Error::Io {
                context: format!(
                    "reading MLFLOW_TRACKING_SERVER_CERT_PATH {}",
                    path.display()
                ),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::Invalid(format!(
                    "MLFLOW_TRACKING_SERVER_CERT_PATH {}: not a PEM certificate bundle: {e}",
                    path.display()
                ))
            })?;
            builder = builder.tls_certs_only(certs);
        }
        if tls.insecure {
            tracing::warn!(
                "MLFLOW_TRACKING_INSECURE_TLS is set: not verifying {base}'s certificate"
            );
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .map_err(|e| Error::Invalid(format!("HTTP client: {e}")))?;
        Ok(MlflowRegistry {
            base,
            auth,
            http,
            cache_dir,
            ready_timeout: Duration::from_secs(120),
            experiment: DEFAULT_EXPERIMENT.into(),
        })
    }

    /// Keeps fetched versions in the artifact store at `dir` instead of `$HOIST_HOME/artifacts`.
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = dir.into();
        self
    }

    /// Waits at most `timeout` for a version to become `READY` before fetching it.
    pub fn with_ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Logs the runs of [`register`](Self::register) to the experiment `name` (created
    /// if missing) instead of [`DEFAULT_EXPERIMENT`].
    pub fn with_experiment(mut self, name: impl Into<String>) -> Self {
        self.experiment = name.into();
        self
    }

    /// The tracking URI this client talks to.
    pub fn tracking_uri(&self) -> &str {
        &self.base
    }

    /// Creates a webhook on the server that posts `events` (MLflow's names, e.g.
    /// `model_version_alias.created`) to `url`, signed with `secret`. Returns its id.
    ///
    /// Needs MLflow ≥ 3.3 with a SQL backend. Note the server caches its webhook list
    /// (60 s by default): a new webhook may miss events for up to a minute.
    pub fn create_webhook(
        &self,
        name: &str,
        url: &str,
        secret: &str,
        events: &[WebhookEventName<'_>],
    ) -> Result<String> {
        let mut evs = Vec::new();
        for e in events {
            let (entity, action) = e.split_once('.').ok_or_else(|| {
                Error::Invalid(format!(
                    "webhook event '{e}': expected ENTITY.ACTION such as model_version_alias.created"
                ))
            })?;
            evs.push(json!({"entity": entity.to_uppercase(), "action": action.to_uppercase()}));
        }
        let body = json!({"name": name, "url": url, "events": evs, "secret": secret});
        let v = self.call("POST", "webhooks", &[], Some(&body), &|_| {
            self.no_webhooks()
        })?;
        v["webhook"]["webhook_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| self.bad_answer("webhooks", "no webhook.webhook_id"))
    }

    /// Deletes a webhook by id.
    pub fn delete_webhook(&self, id: &str) -> Result<()> {
        self.call("DELETE", &format!("webhooks/{id}"), &[], None, &|m| {
            Error::Invalid(format!("webhook {id}: {m}"))
        })
        .map(drop)
    }

    /// The server's MLflow version, as its `GET /version` answers it (e.g. `2.22.5`).
    pub fn server_version(&self) -> Result<String> {
        let url = format!("{}/version", self.base);
        let resp = self
            .authed(self.http.get(&url))
            .send()
            .map_err(|e| self.unreachable(&url, &e))?;
        let status = resp.status();
        let text = resp.text().map_err(|e| self.unreachable(&url, &e))?;
        if !status.is_success() {
            return Err(self.remote_error(&url, status.as_u16(), &text, &|m| {
                Error::Invalid(format!("GET /version: {m}"))
            }));
        }
        Ok(text.trim().to_string())
    }

    /// Fails (with the reason and the server's version) when the server has no webhooks
    /// API: MLflow before 3.3. A version that cannot be read or parsed passes (a proxy
    /// may hide `/version`); creating a webhook then fails with the same message.
    pub fn require_webhooks(&self) -> Result<()> {
        let Ok(version) = self.server_version() else {
            return Ok(());
        };
        let mut parts = version.split('.').map(|p| p.parse::<u32>());
        match (parts.next(), parts.next()) {
            (Some(Ok(major)), Some(Ok(minor))) if (major, minor) < (3, 3) => {
                Err(self.no_webhooks())
            }
            _ => Ok(()),
        }
    }

    /// The error for a server without the webhooks API (MLflow before 3.3 answers
    /// `POST webhooks` with a bare 404): says which version it is and what to do.
    fn no_webhooks(&self) -> Error {
        let version = self
            .server_version()
            .map(|v| format!("version {v}"))
            .unwrap_or_else(|_| "its version unknown".into());
        Error::Invalid(format!(
            "the MLflow server at {} ({version}) has no webhooks API: webhooks need \
             MLflow 3.3 or newer. Watch it by polling instead (`hoist watch` without \
             --webhook-listen), or upgrade the server",
            self.base
        ))
    }

    /// Waits until `name`/`version` is `READY` (bounded by the ready timeout).
    pub fn wait_ready(&self, name: &str, version: &str) -> Result<ModelVersion> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let v = self.get_version(name, version)?;
            match v.status {
                VersionStatus::Ready => return Ok(v),
                VersionStatus::FailedRegistration => {
                    return Err(Error::NotReady {
                        name: name.into(),
                        version: version.into(),
                        reason: "its registration failed in MLflow (status FAILED_REGISTRATION)"
                            .into(),
                    });
                }
                VersionStatus::PendingRegistration if start.elapsed() >= self.ready_timeout => {
                    return Err(Error::NotReady {
                        name: name.into(),
                        version: version.into(),
                        reason: format!(
                            "still PENDING_REGISTRATION after {:?}",
                            self.ready_timeout
                        ),
                    });
                }
                VersionStatus::PendingRegistration => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Where a version's files are: `model-versions/get-download-uri`.
    pub fn download_uri(&self, name: &str, version: &str) -> Result<String> {
        let v = self.call(
            "GET",
            "model-versions/get-download-uri",
            &[("name", name), ("version", version)],
            None,
            &version_not_found(name, version),
        )?;
        v["artifact_uri"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| self.bad_answer("model-versions/get-download-uri", "no artifact_uri"))
    }
}
