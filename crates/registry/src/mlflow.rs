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
    Basic { username: String, password: String },
    /// `MLFLOW_TRACKING_TOKEN`.
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    // Never print secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => write!(f, "None"),
            Auth::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
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
    /// `MLFLOW_TRACKING_TOKEN` (bearer); `MLFLOW_EXPERIMENT_NAME` names the experiment
    /// [`register`](Self::register) logs to (default [`DEFAULT_EXPERIMENT`]).
    pub fn from_env() -> Result<MlflowRegistry> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`MlflowRegistry::from_env`] over any source of variables (tests pass a map).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<MlflowRegistry> {
        let uri = var("MLFLOW_TRACKING_URI")
            .filter(|u| !u.is_empty())
            .ok_or_else(|| Error::Invalid("MLFLOW_TRACKING_URI is not set".into()))?;
        let auth = match (
            var("MLFLOW_TRACKING_USERNAME"),
            var("MLFLOW_TRACKING_PASSWORD"),
            var("MLFLOW_TRACKING_TOKEN"),
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
        let v = self.call("POST", "webhooks", &[], Some(&body), &|m| {
            Error::Invalid(format!("webhook: {m}"))
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

    // ---- registration ----

    /// Registers the model package at `path` (an MLflow model directory or a bare
    /// `.onnx` file) as the next version of `name`, as MLflow's own client does with a
    /// tracking server that proxies artifacts:
    ///
    /// 1. `registered-models/create` (an existing model is fine);
    /// 2. a run in the experiment `MLFLOW_EXPERIMENT_NAME` (default
    ///    [`DEFAULT_EXPERIMENT`], created if missing) to own the files;
    /// 3. every file uploaded through the artifact proxy to `<run artifacts>/model/…`,
    ///    and the run finished;
    /// 4. `model-versions/create` with that source and run, tagged with `tags` and
    ///    [`DIGEST_TAG`] (the digest of the files as MLflow now holds them), waited
    ///    for until `READY`; then `alias` is pointed at it.
    ///
    /// Like [`EmbeddedRegistry::register_detailed`](crate::embedded::EmbeddedRegistry::register_detailed):
    /// if the latest version's [`DIGEST_TAG`] equals the files' digest, nothing is
    /// uploaded or created; that version is returned (`created: false`) with `tags`
    /// and `alias` applied to it.
    ///
    /// A server without the artifact proxy (`mlflow server --no-serve-artifacts`) is
    /// [`Error::Invalid`], said so before anything but the experiment is created.
    pub fn register(
        &self,
        path: impl AsRef<Path>,
        name: &str,
        tags: &BTreeMap<String, String>,
        alias: Option<&str>,
    ) -> Result<Registration> {
        check_model_name(name)?;
        for key in tags.keys() {
            check_tag_key(key)?;
        }
        if let Some(a) = alias {
            check_alias(a)?;
        }
        crate::check_package(path.as_ref())?;
        let package = Package::read(path.as_ref())?;
        let digest = package.digest.clone();
        // Where the run will go, checked first: a server without the artifact proxy
        // is refused before anything is created on it.
        let experiment_id = self.registration_experiment()?;

        // 1. The model (MLflow answers RESOURCE_ALREADY_EXISTS for a known one).
        self.create_if_absent("registered-models/create", name, &|m| {
            Error::Invalid(format!("registered-models/create: {m}"))
        })?;

        // The same files as the latest version: nothing new.
        if let Some(latest) = self.list_versions(name)?.into_iter().next()
            && latest.tags.get(DIGEST_TAG) == Some(&digest)
            && latest.status != VersionStatus::FailedRegistration
        {
            let v = self.wait_ready(name, &latest.version)?;
            self.apply_tags_and_alias(name, &v.version, tags, alias)?;
            let version = self.get_version(name, &v.version)?;
            return Ok(Registration {
                version,
                created: false,
            });
        }

        // 2. A run to own the files, in an experiment whose artifacts the server proxies.
        let run = self.create_run(&experiment_id, name, &digest)?;

        // 3. The files, through the proxy; the run ends FINISHED, or FAILED with the error.
        let uploaded = self.upload_package(&run, &package);
        let status = if uploaded.is_ok() {
            "FINISHED"
        } else {
            "FAILED"
        };
        if let Err(e) = self.end_run(&run.run_id, status) {
            tracing::warn!(run_id = %run.run_id, error = %e, "could not end the registration run");
        }
        uploaded?;

        // 4. The version, tagged with the digest from its first moment.
        let source = format!("{}/{ARTIFACT_PATH}", run.artifact_uri.trim_end_matches('/'));
        let mut version_tags = vec![json!({"key": DIGEST_TAG, "value": digest})];
        version_tags.extend(tags.iter().map(|(k, v)| json!({"key": k, "value": v})));
        let created = self.call(
            "POST",
            "model-versions/create",
            &[],
            Some(&json!({
                "name": name,
                "source": source,
                "run_id": run.run_id,
                "tags": version_tags,
                "description": format!("registered by hoist ({digest})"),
            })),
            &model_not_found(name),
        )?;
        let created = self.version_from(created, "model_version", "model-versions/create")?;
        self.wait_ready(name, &created.version)?;
        if let Some(a) = alias {
            self.set_alias(name, a, &created.version)?;
        }
        let version = self.get_version(name, &created.version)?;
        tracing::info!(model = name, version = %version.version, %digest, %source, "registered in MLflow");
        Ok(Registration {
            version,
            created: true,
        })
    }

    fn apply_tags_and_alias(
        &self,
        name: &str,
        version: &str,
        tags: &BTreeMap<String, String>,
        alias: Option<&str>,
    ) -> Result<()> {
        for (k, v) in tags {
            self.set_tag(name, version, k, v)?;
        }
        if let Some(a) = alias {
            self.set_alias(name, a, version)?;
        }
        Ok(())
    }

    /// The id of the experiment registration runs go to, created if missing; refused
    /// if its artifacts are not behind the tracking server's proxy.
    /// `POST endpoint {"name": name}`, where an existing one
    /// (`RESOURCE_ALREADY_EXISTS`) is as good as a new one.
    fn create_if_absent(
        &self,
        endpoint: &str,
        name: &str,
        invalid: &dyn Fn(&str) -> Error,
    ) -> Result<()> {
        match self.call(
            "POST",
            endpoint,
            &[],
            Some(&json!({ "name": name })),
            invalid,
        ) {
            Ok(_) => Ok(()),
            Err(Error::Remote { code, .. }) if code == "RESOURCE_ALREADY_EXISTS" => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn registration_experiment(&self) -> Result<String> {
        let name = self.experiment.as_str();
        // `ModelNotFound` only marks "no such experiment" between these two calls.
        let get = || {
            self.call(
                "GET",
                "experiments/get-by-name",
                &[("experiment_name", name)],
                None,
                &|_| Error::ModelNotFound(name.into()),
            )
        };
        let found = match get() {
            Ok(v) => v,
            Err(Error::ModelNotFound(_)) => {
                // Possibly created by someone else meanwhile: fine.
                self.create_if_absent("experiments/create", name, &|m| {
                    Error::Invalid(format!("creating experiment '{name}': {m}"))
                })?;
                get().map_err(|e| match e {
                    Error::ModelNotFound(_) => self.bad_answer(
                        "experiments/get-by-name",
                        &format!("experiment '{name}' was created but cannot be read back"),
                    ),
                    e => e,
                })?
            }
            Err(e) => return Err(e),
        };
        let exp = &found["experiment"];
        let id = exp["experiment_id"]
            .as_str()
            .ok_or_else(|| self.bad_answer("experiments/get-by-name", "no experiment_id"))?;
        if exp["lifecycle_stage"].as_str() == Some("deleted") {
            return Err(Error::Invalid(format!(
                "MLflow experiment '{name}' (id {id}) at {} is deleted, so hoist cannot log the \
                 model's files to it: restore it (mlflow experiments restore --experiment-id {id}) \
                 or set MLFLOW_EXPERIMENT_NAME to another experiment",
                self.base
            )));
        }
        let location = exp["artifact_location"].as_str().unwrap_or("");
        if proxied_path(location).is_none() {
            return Err(self.no_artifact_proxy(&format!(
                "experiment '{name}' keeps its artifacts at '{location}', not behind the server's \
                 artifact proxy"
            )));
        }
        Ok(id.to_string())
    }

    fn create_run(&self, experiment_id: &str, model: &str, digest: &str) -> Result<Run> {
        let v = self.call(
            "POST",
            "runs/create",
            &[],
            Some(&json!({
                "experiment_id": experiment_id,
                "run_name": format!("hoist-register-{model}"),
                "start_time": now_ms(),
                "tags": [
                    {"key": "mlflow.source.name", "value": "hoist"},
                    {"key": "mlflow.source.type", "value": "LOCAL"},
                    {"key": DIGEST_TAG, "value": digest},
                ],
            })),
            &|m| Error::Invalid(format!("runs/create in experiment {experiment_id}: {m}")),
        )?;
        let info = &v["run"]["info"];
        let run_id = info["run_id"]
            .as_str()
            .or_else(|| info["run_uuid"].as_str())
            .ok_or_else(|| self.bad_answer("runs/create", "no run.info.run_id"))?;
        let artifact_uri = info["artifact_uri"]
            .as_str()
            .ok_or_else(|| self.bad_answer("runs/create", "no run.info.artifact_uri"))?;
        Ok(Run {
            run_id: run_id.into(),
            artifact_uri: artifact_uri.into(),
        })
    }

    fn end_run(&self, run_id: &str, status: &str) -> Result<()> {
        self.call(
            "POST",
            "runs/update",
            &[],
            Some(&json!({"run_id": run_id, "status": status, "end_time": now_ms()})),
            &|m| Error::Invalid(format!("runs/update {run_id}: {m}")),
        )
        .map(drop)
    }

    /// Uploads every file of `package` under `<run artifacts>/model/`.
    fn upload_package(&self, run: &Run, package: &Package) -> Result<()> {
        let root = proxied_path(&run.artifact_uri).ok_or_else(|| {
            self.no_artifact_proxy(&format!(
                "run {} keeps its artifacts at '{}', not behind the server's artifact proxy",
                run.run_id, run.artifact_uri
            ))
        })?;
        let dir = format!("{}/{ARTIFACT_PATH}", root.trim_end_matches('/'));
        for (rel, file) in &package.files {
            self.upload_file(&format!("{dir}/{rel}"), file)?;
        }
        tracing::debug!(files = package.files.len(), %dir, "uploaded");
        Ok(())
    }

    /// `PUT /api/2.0/mlflow-artifacts/artifacts/<path>` with the bytes of `file`.
    fn upload_file(&self, path: &str, file: &Path) -> Result<()> {
        let encoded: Vec<String> = path.split('/').map(percent_encode).collect();
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}",
            self.base,
            encoded.join("/")
        );
        let f = std::fs::File::open(file).map_err(io_err(file))?;
        let len = f.metadata().map_err(io_err(file))?.len();
        // The client's 300 s limit, plus a second per MB: large models upload slowly.
        let limit = Duration::from_secs(300 + len / 1_000_000);
        let resp = self
            .authed(self.http.put(&url))
            .timeout(limit)
            .body(reqwest::blocking::Body::from(f))
            .send()
            .map_err(|e| self.unreachable(&url, &e))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let text = resp.text().unwrap_or_default();
        // 503: `mlflow server --no-serve-artifacts`; 404/405: no proxy route at all.
        if matches!(status, 404 | 405 | 501 | 503) {
            let said: String = text.trim().chars().take(300).collect();
            return Err(self.no_artifact_proxy(&format!(
                "uploading {} answered {status} ({said})",
                file.display()
            )));
        }
        Err(self.remote_error(&url, status, &text, &|m| {
            Error::Invalid(format!("uploading {} to {url}: {m}", file.display()))
        }))
    }

    fn no_artifact_proxy(&self, what: &str) -> Error {
        Error::Invalid(format!(
            "the MLflow server at {} does not serve artifacts, so hoist cannot upload the \
             model's files: {what}. Start `mlflow server` with artifact serving (--serve-artifacts, \
             the default; not --no-serve-artifacts), or register with MLflow's own client",
            self.base
        ))
    }

    // ---- HTTP ----

    fn url(&self, api_path: &str) -> String {
        format!("{}/api/2.0/mlflow/{api_path}", self.base)
    }

    fn authed(&self, rb: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        match &self.auth {
            Auth::None => rb,
            Auth::Basic { username, password } => rb.basic_auth(username, Some(password)),
            Auth::Bearer(t) => rb.bearer_auth(t),
        }
    }

    /// One REST call. `not_found` names what a `RESOURCE_DOES_NOT_EXIST` means here,
    /// given MLflow's message.
    fn call(
        &self,
        method: &str,
        api_path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        not_found: &dyn Fn(&str) -> Error,
    ) -> Result<Value> {
        let url = with_query(&self.url(api_path), query);
        let rb = match method {
            "GET" => self.http.get(&url),
            "POST" => self.http.post(&url),
            "PATCH" => self.http.patch(&url),
            "DELETE" => self.http.delete(&url),
            other => unreachable!("HTTP method {other}"),
        };
        let mut rb = self.authed(rb);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb.send().map_err(|e| self.unreachable(&url, &e))?;
        let status = resp.status();
        let text = resp.text().map_err(|e| self.unreachable(&url, &e))?;
        if status.is_success() {
            return serde_json::from_str(if text.trim().is_empty() { "{}" } else { &text })
                .map_err(|e| self.bad_answer(api_path, &format!("not JSON ({e})")));
        }
        Err(self.remote_error(&url, status.as_u16(), &text, not_found))
    }

    fn remote_error(
        &self,
        url: &str,
        status: u16,
        text: &str,
        not_found: &dyn Fn(&str) -> Error,
    ) -> Error {
        if status == 401 || status == 403 {
            return Error::Unauthorized { url: url.into() };
        }
        let parsed: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let code = parsed["error_code"].as_str().unwrap_or("").to_string();
        let message = parsed["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| text.chars().take(300).collect());
        // MLflow answers a missing alias with INVALID_PARAMETER_VALUE "… alias X not found.".
        let missing = code == "RESOURCE_DOES_NOT_EXIST"
            || (status == 404 && code.is_empty())
            || (code == "INVALID_PARAMETER_VALUE" && message.contains(" not found"));
        if missing {
            return not_found(&message);
        }
        Error::Remote {
            url: url.into(),
            status,
            code: if code.is_empty() {
                "(no error_code)".into()
            } else {
                code
            },
            message,
        }
    }

    fn unreachable(&self, url: &str, e: &reqwest::Error) -> Error {
        let mut reason = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            reason = format!("{reason}: {s}");
            src = s.source();
        }
        Error::Unreachable {
            url: url.into(),
            reason,
        }
    }

    fn bad_answer(&self, api_path: &str, what: &str) -> Error {
        Error::Remote {
            url: self.url(api_path),
            status: 200,
            code: "UNEXPECTED_ANSWER".into(),
            message: what.into(),
        }
    }

    fn get_model_json(&self, name: &str) -> Result<Value> {
        self.call(
            "GET",
            "registered-models/get",
            &[("name", name)],
            None,
            &model_not_found(name),
        )
    }

    // ---- artifacts ----

    /// Downloads everything under the artifact URI `uri` into `dest`.
    fn download(&self, uri: &str, dest: &Path) -> Result<()> {
        if let Some(proxied) = proxied_path(uri) {
            let n = self.download_proxied(&proxied, dest)?;
            if n == 0 {
                return Err(Error::Invalid(format!(
                    "{uri}: the tracking server lists no files there"
                )));
            }
            return Ok(());
        }
        let local = if let Some(rest) = uri.strip_prefix("file://") {
            PathBuf::from(rest)
        } else if let Some(rest) = uri.strip_prefix("file:") {
            PathBuf::from(rest)
        } else if uri.starts_with('/') {
            PathBuf::from(uri)
        } else {
            return Err(Error::Invalid(format!(
                "artifact URI '{uri}' is not supported: hoist reads mlflow-artifacts: (the \
                 tracking server's proxy; start `mlflow server` with artifact serving), \
                 file: URIs and local paths"
            )));
        };
        // Symlinks in a local artifact store must not pull files from elsewhere.
        crate::check_package(&local)?;
        copy_tree(&local, dest)
    }

    /// Downloads the proxied artifact directory `path` into `dest`; returns the number of files.
    fn download_proxied(&self, path: &str, dest: &Path) -> Result<usize> {
        let list_url = format!("{}/api/2.0/mlflow-artifacts/artifacts", self.base);
        let resp = self
            .authed(self.http.get(with_query(&list_url, &[("path", path)])))
            .send()
            .map_err(|e| self.unreachable(&list_url, &e))?;
        let status = resp.status().as_u16();
        let text = resp.text().map_err(|e| self.unreachable(&list_url, &e))?;
        if status != 200 {
            return Err(self.remote_error(&list_url, status, &text, &|m| {
                Error::Invalid(format!("artifacts at '{path}': {m}"))
            }));
        }
        #[derive(Deserialize)]
        struct Listing {
            #[serde(default)]
            files: Vec<FileInfo>,
        }
        #[derive(Deserialize)]
        struct FileInfo {
            path: String,
            #[serde(default)]
            is_dir: bool,
        }
        let listing: Listing = serde_json::from_str(&text)
            .map_err(|e| self.bad_answer("mlflow-artifacts/artifacts", &e.to_string()))?;
        std::fs::create_dir_all(dest).map_err(io_err(dest))?;
        let mut count = 0;
        for f in listing.files {
            // The proxy lists base names; older servers list paths relative to the root.
            let base = f.path.rsplit('/').next().unwrap_or("").to_string();
            if base.is_empty() || base == "." || base == ".." || base.contains('\\') {
                return Err(self.bad_answer(
                    "mlflow-artifacts/artifacts",
                    &format!("unsafe artifact name '{}'", f.path),
                ));
            }
            let child = format!("{}/{base}", path.trim_end_matches('/'));
            let target = dest.join(&base);
            if f.is_dir {
                count += self.download_proxied(&child, &target)?;
            } else {
                self.download_file(&child, &target)?;
                count += 1;
            }
        }
        Ok(count)
    }

    fn download_file(&self, path: &str, target: &Path) -> Result<()> {
        let encoded: Vec<String> = path.split('/').map(percent_encode).collect();
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}",
            self.base,
            encoded.join("/")
        );
        let mut resp = self
            .authed(self.http.get(&url))
            .send()
            .map_err(|e| self.unreachable(&url, &e))?;
        let status = resp.status().as_u16();
        if status != 200 {
            let mut text = String::new();
            let _ = resp.read_to_string(&mut text);
            return Err(self.remote_error(&url, status, &text, &|m| {
                Error::Invalid(format!("artifact '{path}': {m}"))
            }));
        }
        let mut out = std::fs::File::create(target).map_err(io_err(target))?;
        std::io::copy(&mut resp, &mut out).map_err(|e| Error::Io {
            context: format!("downloading {url} to {}", target.display()),
            source: e,
        })?;
        Ok(())
    }
}

impl Registry for MlflowRegistry {
    fn id(&self) -> String {
        self.base.clone()
    }

    fn list_models(&self) -> Result<Vec<RegisteredModel>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut q = vec![("max_results", "1000")];
            if !token.is_empty() {
                q.push(("page_token", &token));
            }
            let v = self.call("GET", "registered-models/search", &q, None, &|m| {
                Error::Invalid(m.to_string())
            })?;
            let page: ModelsPage = serde_json::from_value(v)
                .map_err(|e| self.bad_answer("registered-models/search", &e.to_string()))?;
            out.extend(page.registered_models.into_iter().map(RmJson::into_model));
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = t,
                _ => break,
            }
        }
        Ok(out)
    }

    fn list_versions(&self, name: &str) -> Result<Vec<ModelVersion>> {
        let filter = if name.contains('\'') {
            format!("name=\"{name}\"")
        } else {
            format!("name='{name}'")
        };
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut q = vec![("filter", filter.as_str()), ("max_results", "1000")];
            if !token.is_empty() {
                q.push(("page_token", &token));
            }
            let v = self.call(
                "GET",
                "model-versions/search",
                &q,
                None,
                &model_not_found(name),
            )?;
            let page: VersionsPage = serde_json::from_value(v)
                .map_err(|e| self.bad_answer("model-versions/search", &e.to_string()))?;
            out.extend(page.model_versions.into_iter().map(MvJson::into_version));
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = t,
                _ => break,
            }
        }
        if out.is_empty() {
            // An unknown model and a model without versions look alike in search.
            self.get_model_json(name)?;
        }
        out.sort_by_key(|v| std::cmp::Reverse(version_key(&v.version)));
        Ok(out)
    }

    fn get_version(&self, name: &str, version: &str) -> Result<ModelVersion> {
        let v = self.call(
            "GET",
            "model-versions/get",
            &[("name", name), ("version", version)],
            None,
            &version_not_found(name, version),
        )?;
        self.version_from(v, "model_version", "model-versions/get")
    }

    fn resolve(&self, r: &ModelRef) -> Result<ModelVersion> {
        let name = r.name.as_str();
        match &r.selector {
            Selector::Version(v) => self.get_version(name, v),
            Selector::Latest => self
                .list_versions(name)?
                .into_iter()
                .next()
                .ok_or_else(|| Error::ModelNotFound(format!("{name} (it has no versions)"))),
            Selector::Alias(alias) => {
                let v = self.call(
                    "GET",
                    "registered-models/alias",
                    &[("name", name), ("alias", alias)],
                    None,
                    &|m| {
                        if mentions_model_missing(m) {
                            Error::ModelNotFound(name.into())
                        } else {
                            Error::AliasNotFound {
                                name: name.into(),
                                alias: alias.clone(),
                            }
                        }
                    },
                )?;
                self.version_from(v, "model_version", "registered-models/alias")
            }
            Selector::Stage(stage) => {
                let v = self.call(
                    "POST",
                    "registered-models/get-latest-versions",
                    &[],
                    Some(&json!({"name": name, "stages": [stage]})),
                    &model_not_found(name),
                )?;
                let page: LatestVersions = serde_json::from_value(v).map_err(|e| {
                    self.bad_answer("registered-models/get-latest-versions", &e.to_string())
                })?;
                page.model_versions
                    .into_iter()
                    .map(MvJson::into_version)
                    .max_by_key(|v| version_key(&v.version))
                    .ok_or_else(|| Error::StageEmpty {
                        name: name.into(),
                        stage: stage.clone(),
                    })
            }
        }
    }

    fn fetch(&self, v: &ModelVersion) -> Result<Fetched> {
        let mut version = self.wait_ready(&v.name, &v.version)?;
        let store = ArtifactStore::open(&self.cache_dir)?;
        // Already fetched and recorded: use the cached copy, verified (never re-download
        // over a copy that changed: that is an error).
        if let Some(expected) = version.tags.get(DIGEST_TAG).cloned()
            && store.contains(&expected)
        {
            let dir = store.get(&expected)?;
            crate::check_package(&dir)?;
            version.digest = Some(expected.clone());
            return Ok(Fetched {
                version,
                dir,
                digest: expected,
            });
        }
        let uri = self.download_uri(&v.name, &v.version)?;
        // Under the store's tmp/, which it sweeps if we die mid-download.
        let tmp = store.root().join("tmp").join(format!(
            "mlflow-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let stored = self.download(&uri, &tmp).and_then(|()| store.put_dir(&tmp));
        let _ = std::fs::remove_dir_all(&tmp);
        let digest = stored?;
        // Refused before the digest is recorded anywhere.
        crate::check_package(&store.entry_path(&digest)?)?;
        match version.tags.get(DIGEST_TAG) {
            Some(expected) if *expected != digest => {
                return Err(Error::DigestMismatch {
                    what: format!("{} version {} ({uri})", v.name, v.version),
                    expected: expected.clone(),
                    found: digest,
                });
            }
            Some(_) => {}
            None => {
                self.set_tag(&v.name, &v.version, DIGEST_TAG, &digest)?;
                version.tags.insert(DIGEST_TAG.into(), digest.clone());
            }
        }
        version.digest = Some(digest.clone());
        // `put_dir` hashed the stored copy just now.
        let dir = store.entry_path(&digest)?;
        Ok(Fetched {
            version,
            dir,
            digest,
        })
    }

    fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        self.call(
            "POST",
            "registered-models/alias",
            &[],
            Some(&json!({"name": name, "alias": alias, "version": version})),
            &version_not_found(name, version),
        )
        .map(drop)
    }

    fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        // MLflow deletes a missing alias without complaint; say so instead.
        self.resolve(&ModelRef {
            name: name.into(),
            selector: Selector::Alias(alias.into()),
        })?;
        self.call(
            "DELETE",
            "registered-models/alias",
            &[],
            Some(&json!({"name": name, "alias": alias})),
            &|m| {
                if mentions_model_missing(m) {
                    Error::ModelNotFound(name.into())
                } else {
                    Error::AliasNotFound {
                        name: name.into(),
                        alias: alias.into(),
                    }
                }
            },
        )
        .map(drop)
    }

    fn set_tag(&self, name: &str, version: &str, key: &str, value: &str) -> Result<()> {
        self.call(
            "POST",
            "model-versions/set-tag",
            &[],
            Some(&json!({"name": name, "version": version, "key": key, "value": value})),
            &version_not_found(name, version),
        )
        .map(drop)
    }

    fn delete_tag(&self, name: &str, version: &str, key: &str) -> Result<()> {
        self.call(
            "DELETE",
            "model-versions/delete-tag",
            &[],
            Some(&json!({"name": name, "version": version, "key": key})),
            &version_not_found(name, version),
        )
        .map(drop)
    }
}

impl MlflowRegistry {
    fn version_from(&self, v: Value, field: &str, api_path: &str) -> Result<ModelVersion> {
        let mv: MvJson = serde_json::from_value(v[field].clone())
            .map_err(|e| self.bad_answer(api_path, &format!("no {field} ({e})")))?;
        Ok(mv.into_version())
    }
}

// ---- wire types ----

#[derive(Deserialize)]
struct ModelsPage {
    #[serde(default)]
    registered_models: Vec<RmJson>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct VersionsPage {
    #[serde(default)]
    model_versions: Vec<MvJson>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct LatestVersions {
    #[serde(default)]
    model_versions: Vec<MvJson>,
}

#[derive(Deserialize)]
struct RmJson {
    name: String,
    #[serde(default)]
    latest_versions: Vec<MvJson>,
    #[serde(default)]
    aliases: Vec<AliasJson>,
}

#[derive(Deserialize)]
struct AliasJson {
    alias: String,
    version: String,
}

#[derive(Deserialize)]
struct TagJson {
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
struct MvJson {
    name: String,
    version: String,
    #[serde(default)]
    creation_timestamp: Option<Value>,
    #[serde(default)]
    current_stage: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    tags: Vec<TagJson>,
    #[serde(default)]
    aliases: Vec<String>,
}

impl RmJson {
    fn into_model(self) -> RegisteredModel {
        RegisteredModel {
            latest_version: self
                .latest_versions
                .iter()
                .map(|v| v.version.clone())
                .max_by_key(|v| version_key(v)),
            name: self.name,
            aliases: self
                .aliases
                .into_iter()
                .map(|a| (a.alias, a.version))
                .collect(),
        }
    }
}

impl MvJson {
    fn into_version(self) -> ModelVersion {
        let tags: BTreeMap<String, String> =
            self.tags.into_iter().map(|t| (t.key, t.value)).collect();
        let created_at_ms = match &self.creation_timestamp {
            Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
            Some(Value::String(s)) => s.parse().unwrap_or(0),
            _ => 0,
        };
        ModelVersion {
            digest: tags.get(DIGEST_TAG).cloned(),
            status: match self.status.as_deref() {
                Some("PENDING_REGISTRATION") => VersionStatus::PendingRegistration,
                Some("FAILED_REGISTRATION") => VersionStatus::FailedRegistration,
                // MLflow 1.x file stores omit the status of registered versions.
                _ => VersionStatus::Ready,
            },
            stage: self.current_stage.filter(|s| !s.is_empty()),
            name: self.name,
            version: self.version,
            source: self.source.unwrap_or_default(),
            aliases: self.aliases,
            tags,
            run_id: self.run_id.filter(|r| !r.is_empty()),
            created_at_ms,
        }
    }
}

// ---- helpers ----

fn default_cache_dir(var: impl Fn(&str) -> Option<String>) -> PathBuf {
    let home = var("HOIST_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(var("HOME").unwrap_or_else(|| ".".into())).join(".hoist"));
    home.join("artifacts")
}

fn model_not_found(name: &str) -> impl Fn(&str) -> Error + '_ {
    move |_| Error::ModelNotFound(name.into())
}

fn version_not_found<'a>(name: &'a str, version: &'a str) -> impl Fn(&str) -> Error + 'a {
    move |m| {
        if mentions_model_missing(m) {
            Error::ModelNotFound(name.into())
        } else {
            Error::VersionNotFound {
                name: name.into(),
                version: version.into(),
            }
        }
    }
}

/// MLflow says "Registered Model with name=m not found" when the model itself is missing.
fn mentions_model_missing(message: &str) -> bool {
    message.starts_with("Registered Model with name=")
}

/// Numeric versions order numerically; anything else after them, by text.
fn version_key(v: &str) -> (u64, String) {
    (v.parse().unwrap_or(0), v.to_string())
}

/// The path under the tracking server's artifact proxy, for URIs that go through it.
fn proxied_path(uri: &str) -> Option<String> {
    if let Some(rest) = uri.strip_prefix("mlflow-artifacts:") {
        // `mlflow-artifacts:/p` or `mlflow-artifacts://host:port/p`.
        let p = match rest.strip_prefix("//") {
            Some(hostful) => hostful.split_once('/').map(|(_, p)| p).unwrap_or(""),
            None => rest,
        };
        return Some(p.trim_start_matches('/').to_string());
    }
    let anchor = "/api/2.0/mlflow-artifacts/artifacts/";
    if uri.starts_with("http://")
        && let Some(i) = uri.find(anchor)
    {
        return Some(uri[i + anchor.len()..].to_string());
    }
    None
}

/// `url?k=v&…` with keys and values percent-encoded (reqwest's `query` needs a feature
/// this crate does not enable).
fn with_query(url: &str, query: &[(&str, &str)]) -> String {
    if query.is_empty() {
        return url.to_string();
    }
    let pairs: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    format!("{url}?{}", pairs.join("&"))
}

fn percent_encode(segment: &str) -> String {
    let mut out = String::new();
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn copy_tree(src: &Path, dest: &Path) -> Result<()> {
    let meta = std::fs::metadata(src).map_err(io_err(src))?;
    if meta.is_file() {
        std::fs::create_dir_all(dest).map_err(io_err(dest))?;
        let name = src.file_name().unwrap_or_default();
        std::fs::copy(src, dest.join(name)).map_err(io_err(src))?;
        return Ok(());
    }
    std::fs::create_dir_all(dest).map_err(io_err(dest))?;
    for entry in std::fs::read_dir(src).map_err(io_err(src))? {
        let entry = entry.map_err(io_err(src))?;
        let p = entry.path();
        let target = dest.join(entry.file_name());
        if entry.file_type().map_err(io_err(&p))?.is_dir() {
            copy_tree(&p, &target)?;
        } else if p.is_file() {
            std::fs::copy(&p, &target).map_err(io_err(&p))?;
        }
    }
    Ok(())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        context: path.display().to_string(),
        source,
    }
}

// ---- registration helpers ----

/// A run [`MlflowRegistry::register`] logs a package's files to.
struct Run {
    run_id: String,
    /// `mlflow-artifacts:/<experiment>/<run>/artifacts` with the proxy.
    artifact_uri: String,
}

/// A model package's files as they will sit under `<run artifacts>/model/`.
struct Package {
    /// (path relative to the package, `/`-separated; the file), by relative path.
    files: Vec<(String, PathBuf)>,
    /// The digest of those files as a directory: what a fetch from MLflow computes.
    digest: String,
}

impl Package {
    fn read(path: &Path) -> Result<Package> {
        let meta = std::fs::metadata(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Invalid(format!("{} does not exist", path.display()))
            } else {
                Error::Io {
                    context: format!("reading {}", path.display()),
                    source: e,
                }
            }
        })?;
        if meta.is_dir() {
            let mut rels = Vec::new();
            hoist_types::collect_files(path, path, &mut rels).map_err(io_err(path))?;
            rels.sort();
            if rels.is_empty() {
                return Err(Error::Invalid(format!(
                    "{} contains no files: a model package needs at least one",
                    path.display()
                )));
            }
            let digest = hoist_types::digest_path(path).map_err(io_err(path))?;
            let files = rels
                .into_iter()
                .map(|rel| {
                    let file = path.join(&rel);
                    (rel, file)
                })
                .collect();
            return Ok(Package { files, digest });
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Error::Invalid(format!("{}: no usable file name", path.display())))?
            .to_string();
        let hex = hoist_types::hash_file(path).map_err(io_err(path))?;
        Ok(Package {
            digest: single_file_dir_digest(&name, &hex),
            files: vec![(name, path.to_path_buf())],
        })
    }
}

/// [`hoist_types::digest_path`] of a directory holding one file `name` whose sha256
/// is `hex`, without making that directory.
fn single_file_dir_digest(name: &str, hex: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0]);
    h.update(hex.as_bytes());
    h.update(b"\n");
    format!("sha256:{}", hoist_types::hex(&h.finalize()))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

// The embedded registry's rules, so one name works in both registries.
use crate::embedded::{check_alias, check_model_name};

fn check_tag_key(key: &str) -> Result<()> {
    crate::embedded::check_tag_key(key)?;
    if key == DIGEST_TAG {
        return Err(Error::Invalid(format!(
            "tag '{DIGEST_TAG}' is hoist's own: it records the digest of the registered files"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn artifact_uris_map_to_the_proxy() {
        assert_eq!(
            proxied_path("mlflow-artifacts:/1/models/m-abc/artifacts").as_deref(),
            Some("1/models/m-abc/artifacts")
        );
        assert_eq!(
            proxied_path("mlflow-artifacts://host:5000/1/x").as_deref(),
            Some("1/x")
        );
        assert_eq!(
            proxied_path("http://h:5000/api/2.0/mlflow-artifacts/artifacts/1/x").as_deref(),
            Some("1/x")
        );
        assert_eq!(proxied_path("file:///tmp/x"), None);
        assert_eq!(proxied_path("s3://b/x"), None);
        assert_eq!(percent_encode("a b/é"), "a%20b%2F%C3%A9");
    }

    #[test]
    fn configuration_comes_from_mlflow_variables() {
        let vars = |pairs: &[(&str, &str)]| {
            let m: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            move |k: &str| m.get(k).cloned()
        };
        let r = MlflowRegistry::from_vars(vars(&[
            ("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000/"),
            ("MLFLOW_TRACKING_USERNAME", "u"),
            ("MLFLOW_TRACKING_PASSWORD", "p"),
            ("HOIST_HOME", "/tmp/h"),
        ]))
        .unwrap();
        assert_eq!(r.id(), "http://127.0.0.1:5000");
        assert!(matches!(r.auth, Auth::Basic { .. }));
        assert_eq!(r.cache_dir, PathBuf::from("/tmp/h/artifacts"));
        assert_eq!(format!("{:?}", r.auth), "Basic(u, ***)");
        assert_eq!(r.experiment, DEFAULT_EXPERIMENT);
        let r = MlflowRegistry::from_vars(vars(&[
            ("MLFLOW_TRACKING_URI", "http://h"),
            ("MLFLOW_EXPERIMENT_NAME", "models"),
        ]))
        .unwrap();
        assert_eq!(r.experiment, "models");
        let r = MlflowRegistry::from_vars(vars(&[
            ("MLFLOW_TRACKING_URI", "http://h"),
            ("MLFLOW_TRACKING_TOKEN", "t"),
        ]))
        .unwrap();
        assert!(matches!(r.auth, Auth::Bearer(_)));
        assert!(format!("{:?}", r.auth).contains("***"));
        let err = MlflowRegistry::from_vars(vars(&[])).unwrap_err();
        assert!(err.to_string().contains("MLFLOW_TRACKING_URI"), "{err}");
        let err = MlflowRegistry::new("ftp://mlflow.example").unwrap_err();
        assert!(err.to_string().contains("https://"), "{err}");
        let err = MlflowRegistry::from_vars(vars(&[
            ("MLFLOW_TRACKING_URI", "https://h"),
            ("MLFLOW_TRACKING_SERVER_CERT_PATH", "/nonexistent/ca.pem"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn an_unreachable_server_is_named_in_the_error() {
        // Port 9 (discard) on loopback: nothing listens there.
        let r = MlflowRegistry::new("http://127.0.0.1:9").unwrap();
        let err = r.list_models().unwrap_err();
        assert!(matches!(err, Error::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains("http://127.0.0.1:9"), "{err}");
    }

    /// A canned HTTP server on loopback: `answer(request line, call number)` gives
    /// (status, body) for each request.
    fn canned(
        answer: impl Fn(&str, usize) -> (u16, String) + Send + 'static,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = calls.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if h == "\r\n" || h.is_empty() {
                        break;
                    }
                }
                let mut body = vec![0; len];
                std::io::Read::read_exact(&mut reader, &mut body).unwrap();
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let (status, text) = answer(&request_line, n);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        (uri, calls)
    }

    fn version_json(status: &str) -> String {
        json!({"model_version": {"name": "m", "version": "1", "status": status,
            "source": "mlflow-artifacts:/x"}})
        .to_string()
    }

    #[test]
    fn fetch_waits_for_ready_and_stops_at_failed_registration() {
        let (uri, _) = canned(|_, _| (200, version_json("FAILED_REGISTRATION")));
        let r = MlflowRegistry::new(&uri).unwrap();
        let e = r.wait_ready("m", "1").unwrap_err();
        assert!(matches!(e, Error::NotReady { .. }), "{e}");
        assert!(e.to_string().contains("FAILED_REGISTRATION"), "{e}");

        let (uri, calls) = canned(|_, n| {
            let status = if n < 2 {
                "PENDING_REGISTRATION"
            } else {
                "READY"
            };
            (200, version_json(status))
        });
        let r = MlflowRegistry::new(&uri).unwrap();
        assert_eq!(r.wait_ready("m", "1").unwrap().status, VersionStatus::Ready);
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let (uri, _) = canned(|_, _| (200, version_json("PENDING_REGISTRATION")));
        let r = MlflowRegistry::new(&uri)
            .unwrap()
            .with_ready_timeout(Duration::from_millis(300));
        let e = r.wait_ready("m", "1").unwrap_err();
        assert!(e.to_string().contains("still PENDING_REGISTRATION"), "{e}");
    }

    #[test]
    fn file_uris_are_copied_digested_and_tagged() {
        let tmp = std::env::temp_dir().join(format!("hoist-mlflow-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let src = tmp.join("model");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("MLmodel"), "flavors: {}\n").unwrap();
        std::fs::write(src.join("sub/model.onnx"), b"weights").unwrap();
        let want = hoist_types::digest_path(&src).unwrap();
        let uri = format!("file://{}", src.display());
        let tagged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = tagged.clone();
        let (base, _) = canned(move |line, _| {
            if line.contains("get-download-uri") {
                (200, json!({"artifact_uri": uri}).to_string())
            } else if line.contains("set-tag") {
                seen.lock().unwrap().push(line.to_string());
                (200, "{}".into())
            } else {
                (200, version_json("READY"))
            }
        });
        let r = MlflowRegistry::new(&base)
            .unwrap()
            .with_cache_dir(tmp.join("store"));
        let v = r.get_version("m", "1").unwrap();
        let f = r.fetch(&v).unwrap();
        assert_eq!(f.digest, want);
        assert_eq!(f.version.digest.as_deref(), Some(want.as_str()));
        assert_eq!(
            std::fs::read(f.dir.join("sub/model.onnx")).unwrap(),
            b"weights"
        );
        assert!(f.dir.starts_with(tmp.join("store")));
        assert_eq!(
            tagged.lock().unwrap().len(),
            1,
            "the digest tag is recorded"
        );
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn mlflow_errors_become_hoist_errors() {
        let (uri, _) = canned(|line, _| {
            if line.contains("registered-models/search") {
                (401, "<html>Unauthorized</html>".into())
            } else if line.contains("model-versions/get") {
                (
                    404,
                    json!({"error_code": "RESOURCE_DOES_NOT_EXIST",
                        "message": "Model Version (name=m, version=9) not found"})
                    .to_string(),
                )
            } else if line.contains("registered-models/get?") {
                (
                    404,
                    json!({"error_code": "RESOURCE_DOES_NOT_EXIST",
                        "message": "Registered Model with name=m not found"})
                    .to_string(),
                )
            } else {
                (
                    500,
                    json!({"error_code": "INTERNAL_ERROR", "message": "boom"}).to_string(),
                )
            }
        });
        let r = MlflowRegistry::new(&uri).unwrap();
        let e = r.list_models().unwrap_err();
        assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
        assert!(
            e.to_string().contains(&uri),
            "the URL is in the message: {e}"
        );
        assert!(e.to_string().contains("MLFLOW_TRACKING_TOKEN"), "{e}");
        let e = r.get_version("m", "9").unwrap_err();
        assert!(matches!(e, Error::VersionNotFound { .. }), "{e}");
        let e = r
            .resolve(&ModelRef::parse("m/Production").unwrap())
            .unwrap_err();
        assert!(matches!(e, Error::Remote { status: 500, .. }), "{e}");
        assert!(e.to_string().contains("INTERNAL_ERROR: boom"), "{e}");
    }

    #[test]
    fn a_single_file_package_digests_as_the_directory_mlflow_holds() {
        let tmp = std::env::temp_dir().join(format!("hoist-mlflow-pkg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(tmp.join("dir")).unwrap();
        std::fs::write(tmp.join("m.onnx"), b"weights").unwrap();
        std::fs::write(tmp.join("dir/m.onnx"), b"weights").unwrap();
        let p = Package::read(&tmp.join("m.onnx")).unwrap();
        assert_eq!(
            p.digest,
            hoist_types::digest_path(&tmp.join("dir")).unwrap()
        );
        assert_eq!(p.files, vec![("m.onnx".to_string(), tmp.join("m.onnx"))]);
        std::fs::create_dir_all(tmp.join("dir/sub")).unwrap();
        std::fs::write(tmp.join("dir/sub/b"), b"b").unwrap();
        let p = Package::read(&tmp.join("dir")).unwrap();
        let rels: Vec<&str> = p.files.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(rels, ["m.onnx", "sub/b"]);
        assert_eq!(
            p.digest,
            hoist_types::digest_path(&tmp.join("dir")).unwrap()
        );
        std::fs::create_dir_all(tmp.join("empty")).unwrap();
        let e = Package::read(&tmp.join("empty")).err().unwrap();
        assert!(e.to_string().contains("no files"), "{e}");
        let e = Package::read(&tmp.join("missing")).err().unwrap();
        assert!(e.to_string().contains("does not exist"), "{e}");
        let _ = std::fs::remove_dir_all(&tmp);
    }

    /// A package directory for the registration tests below.
    fn package(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("hoist-mlflow-reg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("MLmodel"), "flavors: {}\n").unwrap();
        std::fs::write(dir.join("model.onnx"), b"weights").unwrap();
        dir
    }

    fn experiment_json(location: &str) -> String {
        json!({"experiment": {"experiment_id": "7", "name": "hoist",
            "artifact_location": location, "lifecycle_stage": "active"}})
        .to_string()
    }

    #[test]
    fn registering_needs_the_artifact_proxy_and_says_so() {
        let empty_versions = || (200, json!({"model_versions": []}).to_string());
        // --no-serve-artifacts: the experiment's artifacts are a path on the server.
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = lines.clone();
        let (uri, _) = canned(move |line, _| {
            seen.lock().unwrap().push(line.to_string());
            if line.contains("model-versions/search") {
                empty_versions()
            } else if line.contains("experiments/get-by-name") {
                (200, experiment_json("/srv/mlruns/7"))
            } else {
                (200, "{}".into())
            }
        });
        let dir = package("noproxy");
        let r = MlflowRegistry::new(&uri).unwrap();
        let e = r.register(&dir, "m", &BTreeMap::new(), None).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e}");
        let msg = e.to_string();
        for want in [
            uri.as_str(),
            "does not serve artifacts",
            "--serve-artifacts",
            "/srv/mlruns/7",
        ] {
            assert!(msg.contains(want), "{want} in {msg}");
        }
        assert!(
            !lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("runs/create") || l.contains("registered-models/create")),
            "neither a model nor a run is created for files that cannot be uploaded"
        );

        // The proxy route refuses uploads (503): said so, and the run ends FAILED.
        let updates = std::sync::Arc::new(std::sync::Mutex::new(0));
        let counted = updates.clone();
        let (uri, _) = canned(move |line, _| {
            if line.contains("model-versions/search") {
                empty_versions()
            } else if line.contains("experiments/get-by-name") {
                (200, experiment_json("mlflow-artifacts:/7"))
            } else if line.contains("runs/create") {
                (
                    200,
                    json!({"run": {"info": {"run_id": "r1",
                    "artifact_uri": "mlflow-artifacts:/7/r1/artifacts"}}})
                    .to_string(),
                )
            } else if line.starts_with("PUT ") {
                assert!(
                    line.contains("/api/2.0/mlflow-artifacts/artifacts/7/r1/artifacts/model/"),
                    "{line}"
                );
                (503, r#"{"detail":"Artifact serving is disabled."}"#.into())
            } else if line.contains("runs/update") {
                *counted.lock().unwrap() += 1;
                (200, "{}".into())
            } else if line.contains("model-versions/create") {
                panic!("no version without its files");
            } else {
                (200, "{}".into())
            }
        });
        let r = MlflowRegistry::new(&uri).unwrap();
        let e = r.register(&dir, "m", &BTreeMap::new(), None).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("does not serve artifacts") && msg.contains("503"),
            "{msg}"
        );
        assert_eq!(*updates.lock().unwrap(), 1, "the run is ended");

        // Credentials refused at the first call.
        let (uri, calls) = canned(|_, _| (403, "forbidden".into()));
        let r = MlflowRegistry::new(&uri).unwrap();
        let e = r.register(&dir, "m", &BTreeMap::new(), None).unwrap_err();
        assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // Bad names, aliases and tags are refused before any request.
        let (uri, calls) = canned(|_, _| (500, "{}".into()));
        let r = MlflowRegistry::new(&uri).unwrap();
        let tags = |k: &str| BTreeMap::from([(k.to_string(), "x".to_string())]);
        for e in [
            r.register(&dir, "a/b", &BTreeMap::new(), None).unwrap_err(),
            r.register(&dir, "m", &BTreeMap::new(), Some("latest"))
                .unwrap_err(),
            r.register(&dir, "m", &tags(DIGEST_TAG), None).unwrap_err(),
            r.register(dir.join("missing"), "m", &BTreeMap::new(), None)
                .unwrap_err(),
        ] {
            assert!(matches!(e, Error::Invalid(_)), "{e}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn versions_parse_from_mlflow_json() {
        let v: MvJson = serde_json::from_value(json!({
            "name": "m", "version": "2", "creation_timestamp": 1700000000000i64,
            "current_stage": "None", "source": "models:/m-1", "run_id": "r",
            "status": "READY", "tags": [{"key": "hoist.digest", "value": "sha256:00"}],
            "aliases": ["champion"]
        }))
        .unwrap();
        let v = v.into_version();
        assert_eq!(v.digest.as_deref(), Some("sha256:00"));
        assert_eq!(v.status, VersionStatus::Ready);
        assert_eq!(v.aliases, vec!["champion".to_string()]);
        assert_eq!(v.created_at_ms, 1_700_000_000_000);
        assert!(version_key("10") > version_key("9"));
    }
}
