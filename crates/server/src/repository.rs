//! The models one server serves, by name, and their lives: load, reload, unload.
//!
//! A server started with a bare `--model PATH` serves one model (the *single* mode,
//! hoist-server's behaviour from the start: the name is `--name` or the package's).
//! Started with `--model NAME=PATH` (repeatable) and/or `--model-repository DIR`
//! (each subdirectory a model package, named after the subdirectory), it serves
//! many, each with its own runtime, executor, readiness and metrics.
//!
//! # Guarantees
//! - Loading, reloading or unloading one model takes only that model's lock: requests
//!   to the others never wait for it, and a request in flight finishes on the model
//!   it started on (it holds its own `Arc`).
//! - A model that fails to load is `UNAVAILABLE` with the reason; the others serve on.
//!   A failed reload of a loaded model keeps the previous one serving.
//! - A name is a path segment (`[A-Za-z0-9_.-]`, not `.` or `..`), so loading a
//!   model by name never reads outside the repository directory.
//!
//! # Must not
//! Know about releases, or hold a lock across a model load.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwapOption;
use serde_json::{Value, json};

use crate::metrics::{Metrics, ModelMetrics};
use crate::model::{Model, ModelOptions};

/// Where the models come from.
#[derive(Debug, Clone)]
pub enum Sources {
    /// A bare `--model PATH`: one model, named by `--name` or its package.
    Single(PathBuf),
    /// `--model NAME=PATH` (any number) and/or `--model-repository DIR`.
    Many {
        named: Vec<(String, PathBuf)>,
        dir: Option<PathBuf>,
    },
}

/// A model's state, named as Triton's repository index names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelState {
    /// Its first load is running (a reload of a ready model stays `Ready`).
    Loading,
    Ready,
    /// Not loaded: never yet, unloaded, or its load failed (the reason says which).
    Unavailable,
    Unloading,
}

impl ModelState {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelState::Loading => "LOADING",
            ModelState::Ready => "READY",
            ModelState::Unavailable => "UNAVAILABLE",
            ModelState::Unloading => "UNLOADING",
        }
    }
}

/// Why a request names no model that can answer it.
#[derive(Debug, Clone)]
pub enum LookupError {
    /// No such model (or version), or not loaded: 404, `NOT_FOUND`.
    NotFound(String),
    /// Its first load is still running: 503, `UNAVAILABLE`.
    Loading(String),
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::NotFound(m) | LookupError::Loading(m) => f.write_str(m),
        }
    }
}

/// One model name and what is loaded under it.
pub struct Entry {
    pub name: String,
    /// Where the model is loaded from; a reload may point it elsewhere.
    source: Mutex<PathBuf>,
    /// The model serving now. Swapped atomically on (re)load and cleared on unload.
    model: ArcSwapOption<Model>,
    /// The state and the reason for it (empty when `READY`).
    status: Mutex<(ModelState, String)>,
    /// This model's series in `/metrics`.
    pub metrics: Arc<ModelMetrics>,
    /// One load or unload of this model at a time.
    lock: tokio::sync::Mutex<()>,
}

impl Entry {
    fn new(name: String, source: PathBuf, metrics: Arc<ModelMetrics>) -> Entry {
        Entry {
            name,
            source: Mutex::new(source),
            model: ArcSwapOption::empty(),
            status: Mutex::new((ModelState::Unavailable, "not loaded".into())),
            metrics,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn model(&self) -> Option<Arc<Model>> {
        self.model.load_full()
    }

    pub fn source(&self) -> PathBuf {
        self.source.lock().expect("source lock").clone()
    }

    pub fn status(&self) -> (ModelState, String) {
        self.status.lock().expect("status lock").clone()
    }

    fn set_status(&self, state: ModelState, reason: impl Into<String>) {
        *self.status.lock().expect("status lock") = (state, reason.into());
    }

    pub fn is_ready(&self) -> bool {
        self.model.load().is_some() && self.status().0 == ModelState::Ready
    }
}

/// Whether `name` may name a model: one safe path segment.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The name a package at `path` gets when none is given: its directory or file name
/// (as [`crate::package::Package::read`] names it).
fn default_name(path: &Path) -> String {
    path.canonicalize()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into())
}

/// The models of one server.
pub struct Repository {
    /// A bare `--model PATH` (a one-model server): its one entry, which answers by
    /// its package's name and never changes, so requests find it without the lock and
    /// the list that `entries` takes and builds.
    sole_entry: Option<Arc<Entry>>,
    /// `--model-repository`: where `load` finds a model it does not know yet.
    dir: Option<PathBuf>,
    entries: RwLock<BTreeMap<String, Arc<Entry>>>,
    opts: ModelOptions,
    metrics: Arc<Metrics>,
}

impl Repository {
    /// The models `sources` name, none loaded yet. Refuses a bad or repeated name,
    /// and a repository directory that cannot be read.
    pub fn new(
        sources: Sources,
        opts: ModelOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Repository, String> {
        let mut entries = BTreeMap::new();
        let (single, dir) = match sources {
            Sources::Single(path) => {
                let name = opts.name.clone().unwrap_or_else(|| default_name(&path));
                let e = Entry::new(name.clone(), path, metrics.model(&name));
                entries.insert(name, Arc::new(e));
                (true, None)
            }
            Sources::Many { named, dir } => {
                let mut all = named;
                if let Some(d) = &dir {
                    all.extend(scan(d)?);
                }
                for (name, path) in all {
                    if !valid_name(&name) {
                        return Err(format!(
                            "model name '{name}' must be letters, digits, '_', '-' or '.'"
                        ));
                    }
                    if entries.contains_key(&name) {
                        return Err(format!(
                            "model '{name}' is given twice (--model NAME=PATH and --model-repository subdirectories share one namespace)"
                        ));
                    }
                    let e = Entry::new(name.clone(), path, metrics.model(&name));
                    entries.insert(name, Arc::new(e));
                }
                (false, dir)
            }
        };
        let sole_entry = single.then(|| entries.values().next().cloned()).flatten();
        Ok(Repository {
            sole_entry,
            dir,
            entries: RwLock::new(entries),
            opts,
            metrics,
        })
    }

    /// Whether this is a one-model server (a bare `--model PATH`).
    pub fn is_single(&self) -> bool {
        self.sole_entry.is_some()
    }

    /// Every model the server knows, by name.
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        self.entries
            .read()
            .expect("entries lock")
            .values()
            .cloned()
            .collect()
    }

    fn get(&self, name: &str) -> Option<Arc<Entry>> {
        if let Some(e) = &self.sole_entry {
            // The one model answers to its package's name, which a reload may change.
            let matches = match e.model() {
                Some(m) => m.package.name == name,
                None => e.name == name,
            };
            return matches.then(|| e.clone());
        }
        self.entries
            .read()
            .expect("entries lock")
            .get(name)
            .cloned()
    }

    /// The model known as `name`, for reload and unload.
    pub fn entry(&self, name: &str) -> Result<Arc<Entry>, LookupError> {
        self.get(name)
            .ok_or_else(|| LookupError::NotFound(self.unknown(name)))
    }

    /// "model 'x' not found; this server serves 'a', 'b'".
    fn unknown(&self, name: &str) -> String {
        format!("model '{name}' not found; {}", self.serves())
    }

    /// "this server serves 'a', 'b'": the models loaded now.
    fn serves(&self) -> String {
        let loaded: Vec<String> = self
            .entries()
            .iter()
            .filter_map(|e| e.model().map(|m| format!("'{}'", m.package.name)))
            .collect();
        if loaded.is_empty() {
            "this server serves no model now".into()
        } else {
            format!("this server serves {}", loaded.join(", "))
        }
    }

    /// The loaded model `name` (and `version`, when given), or why not.
    pub fn find(&self, name: &str, version: Option<&str>) -> Result<Arc<Model>, LookupError> {
        let entry = self.entry(name)?;
        let Some(model) = entry.model() else {
            let (state, reason) = entry.status();
            return Err(if state == ModelState::Loading {
                LookupError::Loading(if self.is_single() {
                    "no model is loaded yet".into()
                } else {
                    format!("model '{name}' is loading")
                })
            } else {
                LookupError::NotFound(format!(
                    "model '{name}' is not loaded ({}: {reason}); {}",
                    state.as_str(),
                    self.serves()
                ))
            });
        };
        if let Some(v) = version
            && v != model.package.version
        {
            return Err(LookupError::NotFound(format!(
                "model '{name}' version '{v}' not found; this server serves version '{}'",
                model.package.version
            )));
        }
        Ok(model)
    }

    /// The model of the routes that name none (`/invocations`, `/predict-image`):
    /// the only model loaded. With several, the error names the per-model routes.
    pub fn sole(&self) -> Result<Arc<Model>, LookupError> {
        if let Some(e) = &self.sole_entry {
            return e
                .model()
                .ok_or_else(|| LookupError::Loading("no model is loaded yet".into()));
        }
        let entries = self.entries();
        let loaded: Vec<Arc<Model>> = entries.iter().filter_map(|e| e.model()).collect();
        match loaded.len() {
            1 => Ok(loaded.into_iter().next().expect("one")),
            0 => Err(LookupError::NotFound(
                "this server serves no model now; load one with POST /v2/repository/models/{name}/load".into(),
            )),
            _ => Err(LookupError::NotFound(format!(
                "this server serves {} models; name one: /models/{{name}}/invocations or /v2/models/{{name}}/infer with {}",
                loaded.len(),
                loaded
                    .iter()
                    .map(|m| format!("'{}'", m.package.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// The metrics a request naming `name` is counted in: that model's, or, for a
    /// name the server does not know, those of requests naming none (so a client
    /// cannot mint series).
    pub fn metrics_for(&self, name: Option<&str>) -> Arc<ModelMetrics> {
        let entry = match name {
            Some(n) => self.get(n),
            None if self.is_single() => self.sole_entry.clone(),
            None => {
                let mut loaded = self.entries().into_iter().filter(|e| e.model().is_some());
                match (loaded.next(), loaded.next()) {
                    (Some(e), None) => Some(e),
                    _ => None,
                }
            }
        };
        entry.map_or_else(|| self.metrics.unrouted().clone(), |e| e.metrics.clone())
    }

    /// Loads model `name` (or reloads it: the new model is checked beside the old
    /// one and swapped in), from `path` or where it was loaded from. A name the
    /// server does not know yet is looked up in the repository directory. On
    /// failure the previous model, if any, keeps serving and the error says why.
    pub async fn load(
        &self,
        name: &str,
        path: Option<PathBuf>,
        version: Option<String>,
    ) -> Result<Value, LoadFailure> {
        let entry = match self.get(name) {
            Some(e) => e,
            None => self.discover(name)?,
        };
        let _one_at_a_time = entry.lock.lock().await;
        let path = path.unwrap_or_else(|| entry.source());
        let mut opts = self.opts.clone();
        if !self.is_single() {
            opts.name = Some(entry.name.clone());
        }
        if version.is_some() {
            opts.version = version;
        }
        let previous = entry.model();
        if previous.is_none() {
            entry.set_status(ModelState::Loading, "");
        }
        let metrics = entry.metrics.clone();
        let p = path.clone();
        let loaded = tokio::task::spawn_blocking(move || Model::load(&p, &opts, metrics))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        let model = match loaded {
            Ok(m) => m,
            Err(e) => {
                entry.metrics.reloaded(false);
                let msg = if previous.is_some() {
                    format!(
                        "reload from {} failed, still serving the previous model: {e}",
                        path.display()
                    )
                } else {
                    entry.set_status(ModelState::Unavailable, e.clone());
                    format!(
                        "cannot load model '{}' from {}: {e}",
                        entry.name,
                        path.display()
                    )
                };
                tracing::warn!("{msg}");
                return Err(LoadFailure::Failed(msg));
            }
        };
        let report = json!({
            "status": if previous.is_some() { "reloaded" } else { "loaded" },
            "name": model.package.name,
            "version": model.package.version,
            "digest": model.package.digest,
            "runtime": model.runtime.as_str(),
            "load_seconds": model.load_time.as_secs_f64(),
            "previous": previous.as_ref().map(|m| json!({
                "version": m.package.version,
                "digest": m.package.digest,
            })),
        });
        entry.metrics.model_loaded(model.info(), model.load_time);
        if previous.is_some() {
            entry.metrics.reloaded(true);
        }
        *entry.source.lock().expect("source lock") = path;
        entry.model.store(Some(Arc::new(model)));
        entry.set_status(ModelState::Ready, "");
        tracing::info!(%report, "model loaded");
        Ok(report)
    }

    /// A model not known yet: `DIR/name` in the repository directory, added to the
    /// known models (not loaded).
    fn discover(&self, name: &str) -> Result<Arc<Entry>, LoadFailure> {
        let not_found = || LoadFailure::NotFound(self.unknown(name));
        let dir = self.dir.as_ref().ok_or_else(not_found)?;
        if !valid_name(name) {
            return Err(not_found());
        }
        let path = dir.join(name);
        if !path.is_dir() {
            return Err(LoadFailure::NotFound(format!(
                "no model '{name}' in the repository {}; {}",
                dir.display(),
                self.serves()
            )));
        }
        let mut entries = self.entries.write().expect("entries lock");
        let e = entries.entry(name.to_string()).or_insert_with(|| {
            Arc::new(Entry::new(name.to_string(), path, self.metrics.model(name)))
        });
        Ok(e.clone())
    }

    /// Unloads model `name`: new requests get 404, requests in flight finish, and
    /// its memory goes with the last of them. Unloading an unloaded model is a no-op.
    pub async fn unload(&self, name: &str) -> Result<Value, LookupError> {
        let entry = self.entry(name)?;
        let _one_at_a_time = entry.lock.lock().await;
        let previous = entry.model.swap(None);
        entry.metrics.model_unloaded();
        entry.set_status(ModelState::Unavailable, "unloaded");
        if previous.is_some() {
            tracing::info!(model = %entry.name, "model unloaded");
        }
        Ok(json!({"name": entry.name, "state": "UNAVAILABLE", "unloaded": previous.is_some()}))
    }

    /// The repository index: every known model, and every subdirectory of the
    /// repository directory not loaded yet, as Triton's `[{name, version, state,
    /// reason}]` (version only when loaded). `ready_only`: the ready ones.
    pub fn index(&self, ready_only: bool) -> Vec<Value> {
        let mut rows: BTreeMap<String, Value> = BTreeMap::new();
        for e in self.entries() {
            let (state, reason) = e.status();
            let model = e.model();
            let name = model
                .as_ref()
                .map_or_else(|| e.name.clone(), |m| m.package.name.clone());
            let mut row = json!({"name": name, "state": state.as_str(), "reason": reason});
            if let Some(m) = &model {
                row["version"] = json!(m.package.version);
            }
            rows.insert(name, row);
        }
        if let Some(dir) = &self.dir
            && let Ok(found) = scan(dir)
        {
            for (name, _) in found {
                rows.entry(name.clone()).or_insert_with(
                    || json!({"name": name, "state": "UNAVAILABLE", "reason": "not loaded"}),
                );
            }
        }
        rows.into_values()
            .filter(|r| !ready_only || r["state"] == "READY")
            .collect()
    }
}

/// Why a load did not happen or did not succeed.
#[derive(Debug)]
pub enum LoadFailure {
    /// No such model: 404.
    NotFound(String),
    /// The model did not load (the previous one, if any, serves on).
    Failed(String),
}

impl fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadFailure::NotFound(m) | LoadFailure::Failed(m) => f.write_str(m),
        }
    }
}

/// The model packages of a repository directory: its subdirectories with a valid
/// name (hidden ones skipped), by name.
fn scan(dir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let read = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read --model-repository {}: {e}", dir.display()))?;
    let mut found = Vec::new();
    for entry in read.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with('.') || !path.is_dir() || !valid_name(&name) {
            continue;
        }
        found.push((name, path));
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_safe_path_segment() {
        for ok in ["iris", "breast_cancer-lr.v2", "a"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
