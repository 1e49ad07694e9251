//! Registration of new versions: the run, the upload through the artifact proxy,
//! the version with its digest tag, tags and alias.

use super::*;

impl MlflowRegistry {
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

    pub(super) fn apply_tags_and_alias(
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
    pub(super) fn create_if_absent(
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

    pub(super) fn registration_experiment(&self) -> Result<String> {
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

    pub(super) fn create_run(&self, experiment_id: &str, model: &str, digest: &str) -> Result<Run> {
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

    pub(super) fn end_run(&self, run_id: &str, status: &str) -> Result<()> {
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
    pub(super) fn upload_package(&self, run: &Run, package: &Package) -> Result<()> {
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
    pub(super) fn upload_file(&self, path: &str, file: &Path) -> Result<()> {
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

    pub(super) fn no_artifact_proxy(&self, what: &str) -> Error {
        Error::Invalid(format!(
            "the MLflow server at {} does not serve artifacts, so hoist cannot upload the \
             model's files: {what}. Start `mlflow server` with artifact serving (--serve-artifacts, \
             the default; not --no-serve-artifacts), or register with MLflow's own client",
            self.base
        ))
    }
}

// ---- registration helpers ----

/// A run [`MlflowRegistry::register`] logs a package's files to.
pub(super) struct Run {
    pub(super) run_id: String,
    /// `mlflow-artifacts:/<experiment>/<run>/artifacts` with the proxy.
    pub(super) artifact_uri: String,
}

/// A model package's files as they will sit under `<run artifacts>/model/`.
pub(super) struct Package {
    /// (path relative to the package, `/`-separated; the file), by relative path.
    pub(super) files: Vec<(String, PathBuf)>,
    /// The digest of those files as a directory: what a fetch from MLflow computes.
    pub(super) digest: String,
}

impl Package {
    pub(super) fn read(path: &Path) -> Result<Package> {
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
pub(super) fn single_file_dir_digest(name: &str, hex: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0]);
    h.update(hex.as_bytes());
    h.update(b"\n");
    format!("sha256:{}", hoist_types::hex(&h.finalize()))
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

// The embedded registry's rules, so one name works in both registries.
pub(super) use crate::embedded::{check_alias, check_model_name};

pub(super) fn check_tag_key(key: &str) -> Result<()> {
    crate::embedded::check_tag_key(key)?;
    if key == DIGEST_TAG {
        return Err(Error::Invalid(format!(
            "tag '{DIGEST_TAG}' is hoist's own: it records the digest of the registered files"
        )));
    }
    Ok(())
}
