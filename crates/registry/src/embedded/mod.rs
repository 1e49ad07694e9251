//! hoist's own registry: nothing to install, one directory (`HOIST_HOME`, default
//! `~/.hoist`) holding
//! - `registry.db`: SQLite (WAL mode) with the models, their versions, aliases, tags,
//!   stages, and the change log a poller follows ([`EmbeddedRegistry::changes_since`]);
//! - `artifacts/`: the [`ArtifactStore`] with every version's files, by digest.
//!
//! This module owns the registry's rows and their rules (version numbering,
//! immutability, idempotent registration, safe concurrent writers). Bytes and their
//! verification belong to [`crate::cas`]; turning changes into promotion events belongs
//! to the watcher. It never starts anything: it records and answers.
//!
//! # Guarantees
//! - Versions of a model are numbered 1, 2, 3… and never change once registered: a
//!   version's digest and files are fixed; only its aliases, tags and stage move.
//! - Any number of threads and processes may register at once: each registration
//!   allocates its number inside one `BEGIN IMMEDIATE` transaction, so all succeed
//!   with distinct versions (SQLite serialises the writers; `busy_timeout` makes the
//!   others wait instead of failing).
//! - A version is visible only once complete: its files are in the artifact store
//!   before the transaction that creates its row commits. A registration killed at any
//!   point leaves no version behind (at worst an unreferenced store entry, reused by
//!   the next registration of the same files).
//! - Every mutation writes its [`Change`] in the same transaction, and writers are
//!   serialised, so change numbers increase in commit order: a poller that remembers
//!   the last `seq` it saw never misses a change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::cas::ArtifactStore;
use crate::{
    Error, Fetched, ModelRef, ModelVersion, RegisteredModel, Registry, Result, Selector,
    VersionStatus,
};

/// The schema this code writes (`PRAGMA user_version`). A database from a newer hoist
mod rows;
mod rules;
use rows::*;
use rules::canonical_stage;
pub(crate) use rules::{check_alias, check_model_name, check_tag_key};

/// is refused rather than misread.
const SCHEMA_VERSION: i64 = 1;

/// How long a writer waits for another to finish before giving up. Registrations
/// copy files outside the transaction, so the lock is held for milliseconds; this is
/// generous so that a burst of parallel writers never fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS models (
    name          TEXT PRIMARY KEY,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    name          TEXT NOT NULL REFERENCES models(name),
    version       INTEGER NOT NULL,
    digest        TEXT NOT NULL,
    source        TEXT NOT NULL,
    stage         TEXT,
    run_id        TEXT,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS aliases (
    name    TEXT NOT NULL,
    alias   TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (name, alias),
    FOREIGN KEY (name, version) REFERENCES versions(name, version)
);
CREATE TABLE IF NOT EXISTS tags (
    name    TEXT NOT NULL,
    version INTEGER NOT NULL,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (name, version, key),
    FOREIGN KEY (name, version) REFERENCES versions(name, version)
);
CREATE TABLE IF NOT EXISTS changes (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    name    TEXT NOT NULL,
    version INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    key     TEXT,
    at_ms   INTEGER NOT NULL
);
";

/// The stages MLflow knows, in their canonical spelling. `None` is "no stage".
const STAGES: [&str; 4] = ["None", "Staging", "Production", "Archived"];

/// The embedded registry. Cheap to share between threads (`Arc`); several processes
/// may open the same home at once.
pub struct EmbeddedRegistry {
    /// The data directory, canonical, for [`Registry::id`] and messages.
    home: PathBuf,
    /// One connection, serialised by the mutex: SQLite connections are not `Sync`,
    /// and registry calls are short.
    conn: Mutex<Connection>,
    /// Where versions' files live, by digest.
    store: ArtifactStore,
    /// A named point at which `register` fails on purpose, for tests of
    /// interrupted registrations. `None` in normal use.
    fail_at: Option<FailPoint>,
}

/// One mutation of the registry, as the change log records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// Increases by at least one per change, in commit order.
    pub seq: i64,
    pub name: String,
    pub version: String,
    pub kind: ChangeKind,
    /// Milliseconds since the epoch.
    pub at_ms: i64,
}

/// What a [`Change`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChangeKind {
    VersionCreated,
    /// `alias` now points at the change's version (set or moved).
    AliasSet {
        alias: String,
    },
    /// `alias` was removed; the change's version is the one it pointed at.
    AliasDeleted {
        alias: String,
    },
    TagSet {
        key: String,
    },
    TagDeleted {
        key: String,
    },
    /// The version moved to `stage` (`None`: no stage).
    StageSet {
        stage: Option<String>,
    },
}

impl ChangeKind {
    /// The `kind` and `key` columns.
    fn columns(&self) -> (&'static str, Option<&str>) {
        match self {
            ChangeKind::VersionCreated => ("version_created", None),
            ChangeKind::AliasSet { alias } => ("alias_set", Some(alias)),
            ChangeKind::AliasDeleted { alias } => ("alias_deleted", Some(alias)),
            ChangeKind::TagSet { key } => ("tag_set", Some(key)),
            ChangeKind::TagDeleted { key } => ("tag_deleted", Some(key)),
            ChangeKind::StageSet { stage } => ("stage_set", stage.as_deref()),
        }
    }

    fn from_columns(kind: &str, key: Option<String>) -> Result<ChangeKind> {
        let key_of = |key: Option<String>| {
            key.ok_or_else(|| Error::Store(format!("change '{kind}' without a key")))
        };
        Ok(match kind {
            "version_created" => ChangeKind::VersionCreated,
            "alias_set" => ChangeKind::AliasSet {
                alias: key_of(key)?,
            },
            "alias_deleted" => ChangeKind::AliasDeleted {
                alias: key_of(key)?,
            },
            "tag_set" => ChangeKind::TagSet { key: key_of(key)? },
            "tag_deleted" => ChangeKind::TagDeleted { key: key_of(key)? },
            "stage_set" => ChangeKind::StageSet { stage: key },
            other => return Err(Error::Store(format!("unknown change kind '{other}'"))),
        })
    }
}

/// The outcome of [`EmbeddedRegistry::register_detailed`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Registration {
    pub version: ModelVersion,
    /// `false` when the files equal the latest version's and that version was returned.
    pub created: bool,
}

/// Where an injected failure strikes during `register`. Tests use these to show that
/// an interrupted registration leaves nothing visible; the CLI reads them from
/// `HOIST_TEST_FAIL_AT` so that tests can interrupt a real process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailAt {
    /// The files are in the artifact store; no transaction has begun.
    AfterArtifacts,
    /// The version's rows are written inside the open transaction; not committed.
    BeforeCommit,
}

/// A [`FailAt`] and how to fail there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailPoint {
    pub at: FailAt,
    /// Abort the process (as a kill would) instead of returning an error.
    pub abort: bool,
}

impl FailPoint {
    /// Parses `after_artifacts` or `before_commit`, optionally followed by `:abort`.
    pub fn parse(s: &str) -> Result<FailPoint> {
        let (at, abort) = match s.strip_suffix(":abort") {
            Some(at) => (at, true),
            None => (s, false),
        };
        let at = match at {
            "after_artifacts" => FailAt::AfterArtifacts,
            "before_commit" => FailAt::BeforeCommit,
            _ => {
                return Err(Error::Invalid(format!(
                    "unknown fail point '{s}': use after_artifacts or before_commit, optionally with :abort"
                )));
            }
        };
        Ok(FailPoint { at, abort })
    }
}

/// The registry's home when none is given: `HOIST_HOME`, else `$HOME/.hoist`.
/// `var` reads the environment (a map in tests).
pub fn default_home(var: impl Fn(&str) -> Option<String>) -> Result<PathBuf> {
    if let Some(h) = var("HOIST_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(h));
    }
    match var("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(Path::new(&home).join(".hoist")),
        None => Err(Error::Invalid(
            "no registry home: set HOIST_HOME (or HOME for the default ~/.hoist)".into(),
        )),
    }
}

impl EmbeddedRegistry {
    /// Opens (creating if needed) the registry at `home`.
    pub fn open(home: impl AsRef<Path>) -> Result<EmbeddedRegistry> {
        let home = home.as_ref();
        std::fs::create_dir_all(home).map_err(|source| Error::Io {
            context: format!("creating registry home {}", home.display()),
            source,
        })?;
        let home = home.canonicalize().map_err(|source| Error::Io {
            context: format!("resolving {}", home.display()),
            source,
        })?;
        let store = ArtifactStore::open(home.join("artifacts"))?;
        let db_path = home.join("registry.db");
        let mut conn = Connection::open(&db_path)
            .map_err(|e| Error::Store(format!("opening {}: {e}", db_path.display())))?;
        init(&mut conn).map_err(|e| match e {
            Error::Store(m) => Error::Store(format!("{}: {m}", db_path.display())),
            other => other,
        })?;
        Ok(EmbeddedRegistry {
            home,
            conn: Mutex::new(conn),
            store,
            fail_at: None,
        })
    }

    /// Makes `register` fail at `point` (see [`FailAt`]). For tests.
    pub fn with_fail_point(mut self, point: Option<FailPoint>) -> EmbeddedRegistry {
        self.fail_at = point;
        self
    }

    /// The registry's data directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The artifact store holding every version's files.
    pub fn store(&self) -> &ArtifactStore {
        &self.store
    }

    /// Registers the model package at `path` (an MLflow model directory or a bare
    /// `.onnx` file) as the next version of `name`, with `tags` and optionally
    /// `alias` pointing at it. See [`register_detailed`](Self::register_detailed).
    pub fn register(
        &self,
        path: impl AsRef<Path>,
        name: &str,
        tags: &BTreeMap<String, String>,
        alias: Option<&str>,
    ) -> Result<ModelVersion> {
        Ok(self.register_detailed(path, name, tags, alias)?.version)
    }

    /// Registers like [`register`](Self::register) and says whether a version was
    /// created.
    ///
    /// If the files' digest equals the latest version's, no version is created: that
    /// version is returned, and `tags` and `alias` are applied to it (so re-running a
    /// registration script is harmless). Files equal to an *older* version make a new
    /// version, as in MLflow: re-registering is how a team rolls forward to old files.
    pub fn register_detailed(
        &self,
        path: impl AsRef<Path>,
        name: &str,
        tags: &BTreeMap<String, String>,
        alias: Option<&str>,
    ) -> Result<Registration> {
        let path = path.as_ref();
        check_model_name(name)?;
        for key in tags.keys() {
            check_tag_key(key)?;
        }
        if let Some(a) = alias {
            check_alias(a)?;
        }
        let source = path.canonicalize().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Invalid(format!("{} does not exist", path.display()))
            } else {
                Error::Io {
                    context: format!("reading {}", path.display()),
                    source: e,
                }
            }
        })?;
        crate::check_package(&source)?;
        // The slow part (copy and hash) happens before any lock is taken.
        let digest = self.store.put_dir(&source)?;
        self.maybe_fail(FailAt::AfterArtifacts)?;

        let (version, created) = {
            let mut conn = self.conn();
            let tx = immediate(&mut conn)?;
            let now = now_ms();
            let latest: Option<(i64, String)> = tx
                .query_row(
                    "SELECT version, digest FROM versions WHERE name = ?1
                     ORDER BY version DESC LIMIT 1",
                    [name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db)?;
            let (version, created) = match latest {
                Some((v, d)) if d == digest => (v, false),
                latest => {
                    let v = latest.map_or(1, |(v, _)| v + 1);
                    tx.execute(
                        "INSERT OR IGNORE INTO models (name, created_at_ms) VALUES (?1, ?2)",
                        params![name, now],
                    )
                    .map_err(db)?;
                    tx.execute(
                        "INSERT INTO versions (name, version, digest, source, created_at_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![name, v, digest, source.to_string_lossy(), now],
                    )
                    .map_err(db)?;
                    record(&tx, name, v, &ChangeKind::VersionCreated, now)?;
                    (v, true)
                }
            };
            for (k, val) in tags {
                set_tag_tx(&tx, name, version, k, val, now)?;
            }
            if let Some(a) = alias {
                set_alias_tx(&tx, name, a, version, now)?;
            }
            // Dropping the transaction here rolls every row of it back.
            self.maybe_fail(FailAt::BeforeCommit)?;
            tx.commit().map_err(db)?;
            (version, created)
        };
        if created {
            tracing::info!(model = name, version, %digest, "registered");
        }
        let version = self.get_version(name, &version.to_string())?;
        Ok(Registration { version, created })
    }

    /// Moves version `version` of `name` to `stage` (`Staging`, `Production`,
    /// `Archived`; `None` or `"None"` for no stage). Stages are MLflow's older way to
    /// promote; hoist supports them for teams that still use them.
    pub fn set_stage(&self, name: &str, version: &str, stage: Option<&str>) -> Result<()> {
        let stage = match stage {
            None => None,
            Some(s) => canonical_stage(s)?,
        };
        let mut conn = self.conn();
        let tx = immediate(&mut conn)?;
        let v = version_number(&tx, name, version)?;
        let old: Option<String> = tx
            .query_row(
                "SELECT stage FROM versions WHERE name = ?1 AND version = ?2",
                params![name, v],
                |r| r.get(0),
            )
            .map_err(db)?;
        if old.as_deref() != stage {
            tx.execute(
                "UPDATE versions SET stage = ?3 WHERE name = ?1 AND version = ?2",
                params![name, v, stage],
            )
            .map_err(db)?;
            let kind = ChangeKind::StageSet {
                stage: stage.map(str::to_string),
            };
            record(&tx, name, v, &kind, now_ms())?;
        }
        tx.commit().map_err(db)
    }

    /// The changes after `seq`, oldest first. Start with `0` for the whole history,
    /// or with [`last_change_seq`](Self::last_change_seq) for changes from now on.
    pub fn changes_since(&self, seq: i64) -> Result<Vec<Change>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT seq, name, version, kind, key, at_ms FROM changes
                 WHERE seq > ?1 ORDER BY seq",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([seq], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, name, version, kind, key, at_ms) = row.map_err(db)?;
            out.push(Change {
                seq,
                name,
                version: version.to_string(),
                kind: ChangeKind::from_columns(&kind, key)?,
                at_ms,
            });
        }
        Ok(out)
    }

    /// The newest change's `seq` (0 when there is none).
    pub fn last_change_seq(&self) -> Result<i64> {
        self.conn()
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| {
                r.get(0)
            })
            .map_err(db)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock rolled its transaction back on unwind, so
        // the connection is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn maybe_fail(&self, at: FailAt) -> Result<()> {
        match self.fail_at {
            Some(p) if p.at == at => {
                if p.abort {
                    eprintln!("hoist: aborting at fail point {at:?} (HOIST_TEST_FAIL_AT)");
                    std::process::abort();
                }
                Err(Error::Store(format!("injected failure at {at:?}")))
            }
            _ => Ok(()),
        }
    }
}

impl Registry for EmbeddedRegistry {
    fn id(&self) -> String {
        format!("embedded:{}", self.home.display())
    }

    fn list_models(&self) -> Result<Vec<RegisteredModel>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT m.name, (SELECT MAX(version) FROM versions v WHERE v.name = m.name)
                 FROM models m ORDER BY m.name",
            )
            .map_err(db)?;
        let models: Vec<(String, Option<i64>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db)?
            .collect::<rusqlite::Result<_>>()
            .map_err(db)?;
        let mut out = Vec::with_capacity(models.len());
        for (name, latest) in models {
            let aliases = aliases_of(&conn, &name)?
                .into_iter()
                .map(|(alias, v)| (alias, v.to_string()))
                .collect();
            out.push(RegisteredModel {
                name,
                aliases,
                latest_version: latest.map(|v| v.to_string()),
            });
        }
        Ok(out)
    }

    fn list_versions(&self, name: &str) -> Result<Vec<ModelVersion>> {
        let conn = self.conn();
        require_model(&conn, name)?;
        load_versions(&conn, name, None)
    }

    fn get_version(&self, name: &str, version: &str) -> Result<ModelVersion> {
        let conn = self.conn();
        let v = version_number(&conn, name, version)?;
        let mut found = load_versions(&conn, name, Some(v))?;
        found.pop().ok_or_else(|| Error::VersionNotFound {
            name: name.to_string(),
            version: version.to_string(),
        })
    }

    fn resolve(&self, r: &ModelRef) -> Result<ModelVersion> {
        let version = {
            let conn = self.conn();
            require_model(&conn, &r.name)?;
            match &r.selector {
                Selector::Latest => conn
                    .query_row(
                        "SELECT MAX(version) FROM versions WHERE name = ?1",
                        [&r.name],
                        |row| row.get::<_, Option<i64>>(0),
                    )
                    .map_err(db)?
                    .ok_or_else(|| Error::ModelNotFound(r.name.clone()))?,
                Selector::Version(v) => version_number(&conn, &r.name, v)?,
                Selector::Alias(a) => conn
                    .query_row(
                        "SELECT version FROM aliases WHERE name = ?1 AND alias = ?2",
                        params![r.name, a],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(db)?
                    .ok_or_else(|| Error::AliasNotFound {
                        name: r.name.clone(),
                        alias: a.clone(),
                    })?,
                Selector::Stage(s) => {
                    let stage = canonical_stage(s)?;
                    conn.query_row(
                        "SELECT MAX(version) FROM versions WHERE name = ?1 AND stage IS ?2",
                        params![r.name, stage],
                        |row| row.get::<_, Option<i64>>(0),
                    )
                    .map_err(db)?
                    .ok_or_else(|| Error::StageEmpty {
                        name: r.name.clone(),
                        stage: stage.unwrap_or("None").to_string(),
                    })?
                }
            }
        };
        self.get_version(&r.name, &version.to_string())
    }

    fn fetch(&self, v: &ModelVersion) -> Result<Fetched> {
        let current = self.get_version(&v.name, &v.version)?;
        let digest = current
            .digest
            .clone()
            .ok_or_else(|| Error::Store(format!("{}/{} has no digest", v.name, v.version)))?;
        // A caller holding a digest for this version (from a journal, say) must get
        // those bytes or an error, never different ones.
        if let Some(expected) = v.digest.as_ref().filter(|d| **d != digest) {
            return Err(Error::DigestMismatch {
                what: format!("model '{}' version {}", v.name, v.version),
                expected: expected.clone(),
                found: digest,
            });
        }
        // Stored before packages were checked, or the store was edited: never hand
        // out a package whose files reach outside it (checked before hashing, which
        // refuses such a package too, with a less helpful error).
        let entry = self.store.entry_path(&digest)?;
        if entry.is_dir() {
            crate::check_package(&entry)?;
        }
        let dir = self.store.get(&digest).map_err(|e| match e {
            Error::DigestMismatch {
                what,
                expected,
                found,
            } => Error::DigestMismatch {
                what: format!(
                    "model '{}' version {} (stored at {what})",
                    v.name, v.version
                ),
                expected,
                found,
            },
            other => other,
        })?;
        Ok(Fetched {
            version: current,
            dir,
            digest,
        })
    }

    fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        check_alias(alias)?;
        let mut conn = self.conn();
        let tx = immediate(&mut conn)?;
        let v = version_number(&tx, name, version)?;
        set_alias_tx(&tx, name, alias, v, now_ms())?;
        tx.commit().map_err(db)
    }

    fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = immediate(&mut conn)?;
        require_model(&tx, name)?;
        let v: i64 = tx
            .query_row(
                "SELECT version FROM aliases WHERE name = ?1 AND alias = ?2",
                params![name, alias],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?
            .ok_or_else(|| Error::AliasNotFound {
                name: name.to_string(),
                alias: alias.to_string(),
            })?;
        tx.execute(
            "DELETE FROM aliases WHERE name = ?1 AND alias = ?2",
            params![name, alias],
        )
        .map_err(db)?;
        let kind = ChangeKind::AliasDeleted {
            alias: alias.to_string(),
        };
        record(&tx, name, v, &kind, now_ms())?;
        tx.commit().map_err(db)
    }

    fn set_tag(&self, name: &str, version: &str, key: &str, value: &str) -> Result<()> {
        check_tag_key(key)?;
        let mut conn = self.conn();
        let tx = immediate(&mut conn)?;
        let v = version_number(&tx, name, version)?;
        set_tag_tx(&tx, name, v, key, value, now_ms())?;
        tx.commit().map_err(db)
    }

    /// Deleting a tag that is not set succeeds and records nothing: callers clean up
    /// without checking first.
    fn delete_tag(&self, name: &str, version: &str, key: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = immediate(&mut conn)?;
        let v = version_number(&tx, name, version)?;
        let n = tx
            .execute(
                "DELETE FROM tags WHERE name = ?1 AND version = ?2 AND key = ?3",
                params![name, v, key],
            )
            .map_err(db)?;
        if n > 0 {
            let kind = ChangeKind::TagDeleted {
                key: key.to_string(),
            };
            record(&tx, name, v, &kind, now_ms())?;
        }
        tx.commit().map_err(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_defaults_to_hoist_home_then_dot_hoist() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            default_home(env(&[("HOIST_HOME", "/h"), ("HOME", "/u")])).unwrap(),
            PathBuf::from("/h")
        );
        assert_eq!(
            default_home(env(&[("HOME", "/u")])).unwrap(),
            PathBuf::from("/u/.hoist")
        );
        assert!(default_home(env(&[])).is_err());
    }

    #[test]
    fn names_aliases_and_stages_are_checked() {
        assert!(check_model_name("breast-cancer_v2.onnx").is_ok());
        for bad in ["", "a/b", "a@b", " a", "a\n"] {
            assert!(check_model_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_alias("champion").is_ok());
        assert!(check_alias("v2-candidate").is_ok());
        for bad in ["", "latest", "V3", "a b", "a.b"] {
            assert!(check_alias(bad).is_err(), "{bad:?}");
        }
        assert_eq!(canonical_stage("production").unwrap(), Some("Production"));
        assert_eq!(canonical_stage("none").unwrap(), None);
        assert!(canonical_stage("prod").is_err());
        assert_eq!(
            FailPoint::parse("before_commit:abort").unwrap(),
            FailPoint {
                at: FailAt::BeforeCommit,
                abort: true
            }
        );
        assert!(FailPoint::parse("later").is_err());
    }
}
