//! Model registries: which model versions exist, which version each alias or stage
//! points to, and the files of any version, verified by digest.
//!
//! # Layout
//! - this file: the [`Registry`] interface and its types ([`ModelVersion`], [`ModelRef`]).
//! - `embedded`: hoist's own registry, SQLite plus a content-addressed artifact store
//!   under `HOIST_HOME` (the default: nothing to install).
//! - `cas`: the content-addressed store and the local cache every registry fetches into.
//! - `mlflow`: the MLflow Model Registry over REST (2.x and 3.x), artifacts through the
//!   tracking server's proxy or `file:` URIs.
//! - `webhook`: the receiver for MLflow webhooks (HMAC-verified, replay- and
//!   staleness-checked); `watch`: the polling watcher and the de-duplicated event stream.
//!
//! The interface is synchronous (a registry call is file or network I/O that callers
//! run off their async reactor). It never starts a release: it only answers.

pub mod cas;
pub mod embedded;
pub mod mlflow;
pub mod watch;
pub mod webhook;

pub use webhook::{Event, EventKind};

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// A registered model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RegisteredModel {
    pub name: String,
    /// Alias → version.
    pub aliases: BTreeMap<String, String>,
    /// The newest version, if any.
    pub latest_version: Option<String>,
}

/// Where a version is in its registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VersionStatus {
    PendingRegistration,
    FailedRegistration,
    Ready,
}

/// One version of a model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelVersion {
    pub name: String,
    /// Versions are strings (`"3"`), as MLflow has them.
    pub version: String,
    /// `sha256:<hex>` of the version's files ([`hoist_types`]); `None` until known
    /// (an MLflow version before its files are fetched).
    pub digest: Option<String>,
    /// Where the files are, as the registry names it (`mlflow-artifacts:/…`, a path).
    pub source: String,
    pub status: VersionStatus,
    /// The MLflow stage (`None`, `Staging`, `Production`, `Archived`), if the registry has stages.
    pub stage: Option<String>,
    pub aliases: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub run_id: Option<String>,
    /// Milliseconds since the epoch.
    pub created_at_ms: i64,
}

/// Which version of a model: `name/3`, `name@champion`, `name/Production`, or `name`
/// (the latest version).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelRef {
    pub name: String,
    pub selector: Selector,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selector {
    Latest,
    Version(String),
    Alias(String),
    Stage(String),
}

impl ModelRef {
    /// Parses `name`, `name/3`, `name@alias`, `name/Stage` and `models:/…` URIs.
    pub fn parse(s: &str) -> Result<ModelRef, Error> {
        let s = s.strip_prefix("models:/").unwrap_or(s);
        let bad = || Error::InvalidRef(s.to_string());
        let (name, selector) = if let Some((name, alias)) = s.split_once('@') {
            (name, Selector::Alias(alias.to_string()))
        } else if let Some((name, sel)) = s.rsplit_once('/') {
            if sel.chars().all(|c| c.is_ascii_digit()) {
                (name, Selector::Version(sel.to_string()))
            } else {
                (name, Selector::Stage(sel.to_string()))
            }
        } else {
            (s, Selector::Latest)
        };
        let sel_empty = match &selector {
            Selector::Latest => false,
            Selector::Version(x) | Selector::Alias(x) | Selector::Stage(x) => x.is_empty(),
        };
        if name.is_empty() || sel_empty {
            return Err(bad());
        }
        Ok(ModelRef {
            name: name.to_string(),
            selector,
        })
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.selector {
            Selector::Latest => write!(f, "{}", self.name),
            Selector::Version(v) | Selector::Stage(v) => write!(f, "{}/{v}", self.name),
            Selector::Alias(a) => write!(f, "{}@{a}", self.name),
        }
    }
}

/// A version's files, fetched into the local cache and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub version: ModelVersion,
    /// A directory holding exactly the version's files.
    pub dir: PathBuf,
    pub digest: String,
}

/// Registry errors. Each says what a user must know to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid model reference '{0}': use NAME, NAME/VERSION, NAME@ALIAS or NAME/STAGE")]
    InvalidRef(String),
    #[error("model '{0}' not found")]
    ModelNotFound(String),
    #[error("model '{name}' has no version {version}")]
    VersionNotFound { name: String, version: String },
    #[error("model '{name}' has no alias '{alias}'")]
    AliasNotFound { name: String, alias: String },
    #[error("model '{name}' has no version in stage '{stage}'")]
    StageEmpty { name: String, stage: String },
    #[error(
        "digest mismatch for {what}: expected {expected}, found {found} (the files changed after registration)"
    )]
    DigestMismatch {
        what: String,
        expected: String,
        found: String,
    },
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("registry store error: {0}")]
    Store(String),
    /// The registry could not be reached at all (connection refused, DNS, timeout).
    #[error("registry at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    /// The registry refused the credentials (HTTP 401/403).
    #[error(
        "registry at {url} refused the credentials (set MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN)"
    )]
    Unauthorized { url: String },
    /// The registry answered with an error hoist has no better name for.
    #[error("registry at {url} answered {status} {code}: {message}")]
    Remote {
        url: String,
        status: u16,
        code: String,
        message: String,
    },
    /// A version whose registration failed, or did not finish in time.
    #[error("model '{name}' version {version} is not usable: {reason}")]
    NotReady {
        name: String,
        version: String,
        reason: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Refuses a package that is not closed ([`hoist_types::check_package`]: a file it
/// names, or an external-data file of its model, outside it; a symlink leaving it).
/// Every registration and every fetch calls this, so a refused package is never
/// stored or handed out.
pub fn check_package(path: &std::path::Path) -> Result<()> {
    hoist_types::check_package(path)
        .map(|_| ())
        .map_err(|e| Error::Invalid(format!("model package refused: {e}")))
}

/// What every registry can do.
pub trait Registry: Send + Sync {
    /// A stable identity for events and logs: `embedded:/path` or the tracking URI.
    fn id(&self) -> String;
    fn list_models(&self) -> Result<Vec<RegisteredModel>>;
    /// Versions of `name`, newest first.
    fn list_versions(&self, name: &str) -> Result<Vec<ModelVersion>>;
    fn get_version(&self, name: &str, version: &str) -> Result<ModelVersion>;
    /// The one version `r` selects.
    fn resolve(&self, r: &ModelRef) -> Result<ModelVersion>;
    /// The version's files in the local cache, verified against its digest.
    fn fetch(&self, v: &ModelVersion) -> Result<Fetched>;
    fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()>;
    fn delete_alias(&self, name: &str, alias: &str) -> Result<()>;
    fn set_tag(&self, name: &str, version: &str, key: &str, value: &str) -> Result<()>;
    fn delete_tag(&self, name: &str, version: &str, key: &str) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_as_users_write_them() {
        let r = |s: &str| ModelRef::parse(s).unwrap();
        assert_eq!(r("m").selector, Selector::Latest);
        assert_eq!(r("m/3").selector, Selector::Version("3".into()));
        assert_eq!(r("m@champion").selector, Selector::Alias("champion".into()));
        assert_eq!(
            r("m/Production").selector,
            Selector::Stage("Production".into())
        );
        assert_eq!(r("models:/m@champion").name, "m");
        assert_eq!(r("m@champion").to_string(), "m@champion");
        for bad in ["", "@x", "m@", "m/", "/3"] {
            assert!(ModelRef::parse(bad).is_err(), "{bad}");
        }
    }
}
