//! The journal: every release, every transition (event, new state, the actions it
//! implies) and what is live in each environment, in SQLite (WAL). A transition is
//! committed before the driver performs its actions, so a driver killed at any point
//! resumes from the last committed state and never runs a completed step again.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::machine::{Action, Event, Plan, Release, ReleaseId};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("journal: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("journal: corrupt record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("journal: no release {0}")]
    NoRelease(ReleaseId),
    #[error(
        "journal: written by a newer hoist (schema version {0}; this one reads up to {1}): upgrade hoist"
    )]
    Newer(i64, i64),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A release as the journal holds it.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseRecord {
    #[serde(flatten)]
    pub release: Release,
    /// `sha256:…` once fetched and verified.
    pub digest: Option<String>,
    /// Local path of the verified files.
    pub path: Option<String>,
    /// What started it: `alias champion → 3`, `cli`, `api`, `rollback`.
    pub trigger: String,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// One recorded transition.
#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    pub seq: u64,
    pub at_ms: u64,
    pub event: Event,
    pub actions: Vec<Action>,
    pub phase: String,
}

/// What serves in an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Live {
    pub env: String,
    pub model: String,
    pub version: String,
    pub digest: String,
    pub path: String,
    pub release_id: ReleaseId,
    pub since_ms: u64,
}

/// A registry tag a transition asked for, not yet confirmed written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingTag {
    pub release_id: ReleaseId,
    pub model: String,
    pub version: String,
    pub key: String,
    pub value: String,
}

/// A `releases` row as read: state, digest, path, trigger, created, updated.
type Row = (String, Option<String>, Option<String>, String, i64, i64);

pub struct Journal {
    conn: Mutex<Connection>,
}

/// The tables as the first release of hoist wrote them (`PRAGMA user_version` 0);
/// [`migrate`] brings them to [`SCHEMA_VERSION`].
const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS releases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    trigger TEXT NOT NULL,
    digest TEXT,
    path TEXT,
    state TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS transitions (
    release_id INTEGER NOT NULL REFERENCES releases(id),
    seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    event TEXT NOT NULL,
    actions TEXT NOT NULL,
    phase TEXT NOT NULL,
    PRIMARY KEY (release_id, seq)
);
-- Every version that went live in an environment; the newest row is what serves.
CREATE TABLE IF NOT EXISTS live_history (
    env TEXT NOT NULL,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    path TEXT NOT NULL,
    release_id INTEGER NOT NULL,
    since_ms INTEGER NOT NULL
);
-- Registry tags a transition asked for and the registry has not confirmed yet: a
-- driver that restarts writes them again (tags are idempotent), so a release
-- finished just before a kill still ends with its `hoist.<env>` and
-- `hoist.rollback_reason` tags.
CREATE TABLE IF NOT EXISTS pending_tags (
    release_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (release_id, key)
);
";

/// Version 1: every query is by (model, environment); indexes make those lookups
/// cheap with many models. The tables themselves are unchanged (`releases` and
/// `live_history` always carried `model`).
const SCHEMA_VERSION: i64 = 1;

const MIGRATIONS: [&str; 1] = ["
CREATE INDEX IF NOT EXISTS live_history_model_env ON live_history (model, env);
CREATE INDEX IF NOT EXISTS releases_model_done ON releases (model, done);
"];

/// Brings a journal of any earlier version to [`SCHEMA_VERSION`], in one transaction
/// (a crash leaves it as it was), and refuses one written by a newer hoist.
fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Error::Newer(version, SCHEMA_VERSION));
    }
    for sql in &MIGRATIONS[version as usize..] {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

fn phase_name(r: &Release) -> String {
    serde_json::to_value(&r.phase)
        .ok()
        .and_then(|v| v.get("phase").and_then(|p| p.as_str()).map(str::to_string))
        .unwrap_or_default()
}

impl Journal {
    /// Opens (or creates) the journal at `path`, migrating an earlier version's in
    /// place.
    pub fn open(path: &Path) -> Result<Journal> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        migrate(&mut conn)?;
        Ok(Journal {
            conn: Mutex::new(conn),
        })
    }

    /// The journal as the first release of hoist opened it: its tables, no
    /// migration (tests write a journal of that version with it).
    #[cfg(test)]
    fn open_version_0(path: &Path) -> Result<Journal> {
        let conn = Connection::open(path)?;
        conn.execute_batch(SCHEMA)?;
        Ok(Journal {
            conn: Mutex::new(conn),
        })
    }

    pub fn in_memory() -> Result<Journal> {
        let mut conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        migrate(&mut conn)?;
        Ok(Journal {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Create a queued release; the journal assigns its id.
    pub fn create(
        &self,
        model: &str,
        version: &str,
        plan: Plan,
        trigger: &str,
        now_ms: u64,
    ) -> Result<Release> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO releases (model, version, trigger, state, created_ms, updated_ms) VALUES (?1, ?2, ?3, '', ?4, ?4)",
            params![model, version, trigger, now_ms as i64],
        )?;
        let id = tx.last_insert_rowid() as ReleaseId;
        let r = Release::new(id, model, version, plan);
        tx.execute(
            "UPDATE releases SET state = ?1 WHERE id = ?2",
            params![serde_json::to_string(&r)?, id as i64],
        )?;
        tx.commit()?;
        Ok(r)
    }

    /// Record the files a release fetched and verified.
    pub fn set_artifact(&self, id: ReleaseId, digest: &str, path: &str) -> Result<()> {
        let n = self.conn().execute(
            "UPDATE releases SET digest = ?1, path = ?2 WHERE id = ?3",
            params![digest, path, id as i64],
        )?;
        if n == 0 {
            return Err(Error::NoRelease(id));
        }
        Ok(())
    }

    /// Commit one transition: the event, the new state and its actions. When the
    /// actions promote the candidate in an environment, that environment's live
    /// version changes in the same transaction.
    pub fn record(
        &self,
        next: &Release,
        event: &Event,
        actions: &[Action],
        now_ms: u64,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let (digest, path): (Option<String>, Option<String>) = tx
            .query_row(
                "SELECT digest, path FROM releases WHERE id = ?1",
                params![next.id as i64],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?
            .ok_or(Error::NoRelease(next.id))?;
        let seq: i64 = tx.query_row(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM transitions WHERE release_id = ?1",
            params![next.id as i64],
            |row| row.get(0),
        )?;
        tx.execute(
            "INSERT INTO transitions (release_id, seq, at_ms, event, actions, phase) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                next.id as i64,
                seq,
                now_ms as i64,
                serde_json::to_string(event)?,
                serde_json::to_string(actions)?,
                phase_name(next)
            ],
        )?;
        tx.execute(
            "UPDATE releases SET state = ?1, done = ?2, updated_ms = ?3 WHERE id = ?4",
            params![
                serde_json::to_string(next)?,
                next.is_done() as i64,
                now_ms as i64,
                next.id as i64
            ],
        )?;
        for a in actions {
            match a {
                Action::PromoteCandidate { env } => {
                    let digest = digest.clone().unwrap_or_default();
                    let path = path.clone().unwrap_or_default();
                    tx.execute(
                        "INSERT INTO live_history (env, model, version, digest, path, release_id, since_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![env, next.model, next.version, digest, path, next.id as i64, now_ms as i64],
                    )?;
                }
                // The newest value of a key wins: a later transition's tag replaces an
                // unwritten earlier one.
                Action::Tag { key, value } => {
                    tx.execute(
                        "INSERT OR REPLACE INTO pending_tags (release_id, key, value) VALUES (?1, ?2, ?3)",
                        params![next.id as i64, key, value],
                    )?;
                }
                _ => {}
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        Ok((
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
        ))
    }

    fn to_record(
        (state, digest, path, trigger, created, updated): (
            String,
            Option<String>,
            Option<String>,
            String,
            i64,
            i64,
        ),
    ) -> Result<ReleaseRecord> {
        Ok(ReleaseRecord {
            release: serde_json::from_str(&state)?,
            digest,
            path,
            trigger,
            created_ms: created as u64,
            updated_ms: updated as u64,
        })
    }

    const COLUMNS: &'static str = "state, digest, path, trigger, created_ms, updated_ms";

    pub fn get(&self, id: ReleaseId) -> Result<ReleaseRecord> {
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!("SELECT {} FROM releases WHERE id = ?1", Self::COLUMNS),
                params![id as i64],
                Self::read,
            )
            .optional()?
            .ok_or(Error::NoRelease(id))?;
        Self::to_record(row)
    }

    /// Releases not finished, oldest first: of `model`, or of every model.
    pub fn active(&self, model: Option<&str>) -> Result<Vec<ReleaseRecord>> {
        self.query(
            &format!(
                "SELECT {} FROM releases WHERE done = 0 AND (?1 IS NULL OR model = ?1) ORDER BY id",
                Self::COLUMNS
            ),
            &[&model],
        )
    }

    /// The newest releases first, of `model` (or every model); `env` keeps those
    /// whose plan includes it.
    pub fn list(
        &self,
        model: Option<&str>,
        env: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ReleaseRecord>> {
        let all = self.query(
            &format!(
                "SELECT {} FROM releases WHERE ?1 IS NULL OR model = ?1 ORDER BY id DESC",
                Self::COLUMNS
            ),
            &[&model],
        )?;
        Ok(all
            .into_iter()
            .filter(|r| env.is_none_or(|e| r.release.plan.envs.iter().any(|p| p.name == e)))
            .take(limit)
            .collect())
    }

    fn query(&self, sql: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<ReleaseRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt
            .query_map(args, Self::read)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(Self::to_record).collect()
    }

    pub fn transitions(&self, id: ReleaseId) -> Result<Vec<Transition>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT seq, at_ms, event, actions, phase FROM transitions WHERE release_id = ?1 ORDER BY seq",
        )?;
        let rows = stmt
            .query_map(params![id as i64], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(seq, at, event, actions, phase)| {
                Ok(Transition {
                    seq: seq as u64,
                    at_ms: at as u64,
                    event: serde_json::from_str(&event)?,
                    actions: serde_json::from_str(&actions)?,
                    phase,
                })
            })
            .collect()
    }

    fn read_live(row: &rusqlite::Row<'_>) -> rusqlite::Result<Live> {
        Ok(Live {
            env: row.get(0)?,
            model: row.get(1)?,
            version: row.get(2)?,
            digest: row.get(3)?,
            path: row.get(4)?,
            release_id: row.get::<_, i64>(5)? as ReleaseId,
            since_ms: row.get::<_, i64>(6)? as u64,
        })
    }

    /// What serves `model` in `env`.
    pub fn live(&self, model: &str, env: &str) -> Result<Option<Live>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT env, model, version, digest, path, release_id, since_ms FROM live_history WHERE model = ?1 AND env = ?2 ORDER BY rowid DESC LIMIT 1",
                params![model, env],
                Self::read_live,
            )
            .optional()?)
    }

    /// The registry tags transitions asked for that are not confirmed written, oldest
    /// release first, of `model` (or every model): what a restarted driver writes again.
    pub fn pending_tags(&self, model: Option<&str>) -> Result<Vec<PendingTag>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT p.release_id, r.model, r.version, p.key, p.value FROM pending_tags p \
             JOIN releases r ON r.id = p.release_id WHERE ?1 IS NULL OR r.model = ?1 \
             ORDER BY p.release_id, p.rowid",
        )?;
        let rows = stmt
            .query_map(params![model], |row| {
                Ok(PendingTag {
                    release_id: row.get::<_, i64>(0)? as ReleaseId,
                    model: row.get(1)?,
                    version: row.get(2)?,
                    key: row.get(3)?,
                    value: row.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// The registry confirmed tag `key` = `value` of release `id`: no longer pending
    /// (unless a newer value of the key waits).
    pub fn tag_written(&self, id: ReleaseId, key: &str, value: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM pending_tags WHERE release_id = ?1 AND key = ?2 AND value = ?3",
            params![id as i64, key, value],
        )?;
        Ok(())
    }

    /// Every version of `model` that went live in `env`, newest first.
    pub fn live_history(&self, model: &str, env: &str) -> Result<Vec<Live>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT env, model, version, digest, path, release_id, since_ms FROM live_history WHERE model = ?1 AND env = ?2 ORDER BY rowid DESC",
        )?;
        let rows = stmt
            .query_map(params![model, env], Self::read_live)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::machine::{Phase, step};

    #[test]
    fn transitions_and_live_versions_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("hoist-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("journal.db");
        let _ = std::fs::remove_file(&path);
        {
            let j = Journal::open(&path).unwrap();
            let r = drive_live(&j, "m", "1", "sha256:ab");
            assert!(r.is_done());
        }
        let j = Journal::open(&path).unwrap();
        let live = j.live("m", "staging").unwrap().unwrap();
        assert_eq!(
            (live.version.as_str(), live.digest.as_str()),
            ("1", "sha256:ab")
        );
        assert!(j.active(None).unwrap().is_empty());
        let rec = j.get(1).unwrap();
        assert_eq!(rec.release.phase, Phase::Done);
        assert_eq!(j.transitions(1).unwrap().len(), 4);
        assert_eq!(j.list(None, Some("staging"), 10).unwrap().len(), 1);
        assert_eq!(j.list(None, Some("production"), 10).unwrap().len(), 0);
        // The finished release's tag waits for the registry's confirmation, across
        // reopening.
        let pending = j.pending_tags(None).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            (pending[0].key.as_str(), pending[0].value.as_str()),
            ("hoist.staging", "live")
        );
        j.tag_written(1, "hoist.staging", "live").unwrap();
        assert!(j.pending_tags(None).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_newer_tag_value_replaces_an_unwritten_one() {
        let j = Journal::in_memory().unwrap();
        let plan = Plan::from_config(&Config::default(), Some("staging")).unwrap();
        let r = j.create("m", "1", plan, "cli", 1).unwrap();
        let tag = |v: &str| Action::Tag {
            key: "hoist.staging".into(),
            value: v.into(),
        };
        j.record(&r, &Event::Start, &[tag("passed")], 2).unwrap();
        j.record(&r, &Event::Tick, &[tag("rolled-back")], 3)
            .unwrap();
        // A late confirmation of the old value leaves the new one pending.
        j.tag_written(r.id, "hoist.staging", "passed").unwrap();
        let pending = j.pending_tags(None).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].value, "rolled-back");
        assert_eq!(
            (pending[0].model.as_str(), pending[0].version.as_str()),
            ("m", "1")
        );
    }

    /// Drives `model`'s release of `version` through staging to live.
    fn go_live(j: &Journal, model: &str, version: &str) -> ReleaseId {
        drive_live(j, model, version, &format!("sha256:{model}{version}")).id
    }

    /// Drives `model`'s release of `version` (files of `digest`) through staging;
    /// returns the release as it ends.
    fn drive_live(j: &Journal, model: &str, version: &str, digest: &str) -> Release {
        let plan = Plan::from_config(&Config::default(), Some("staging")).unwrap();
        let mut r = j.create(model, version, plan, "cli", 1).unwrap();
        j.set_artifact(r.id, digest, "/tmp/m").unwrap();
        for ev in [
            Event::Start,
            Event::Fetched,
            Event::CandidateReady { has_stable: false },
            Event::SmokePassed,
        ] {
            let (n, a) = step(&r, &ev, 5).unwrap();
            j.record(&n, &ev, &a, 5).unwrap();
            r = n;
        }
        r
    }

    #[test]
    fn a_version_0_journal_is_migrated_in_place_and_keeps_its_live_versions() {
        let dir = std::env::temp_dir().join(format!("hoist-journal-v0-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("journal.db");
        let _ = std::fs::remove_file(&path);
        {
            let j = Journal::open_version_0(&path).unwrap();
            go_live(&j, "fraud", "1");
            // A second release, left unfinished as a killed daemon leaves it.
            let plan = Plan::from_config(&Config::default(), Some("staging")).unwrap();
            let r = j.create("fraud", "2", plan, "cli", 6).unwrap();
            let (n, a) = step(&r, &Event::Start, 7).unwrap();
            j.record(&n, &Event::Start, &a, 7).unwrap();
            let v: i64 = j
                .conn()
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(v, 0);
        }
        let j = Journal::open(&path).unwrap();
        let v: i64 = j
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let live = j.live("fraud", "staging").unwrap().unwrap();
        assert_eq!(
            (live.version.as_str(), live.digest.as_str()),
            ("1", "sha256:fraud1")
        );
        let active = j.active(Some("fraud")).unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].release.version, "2");
        assert_eq!(j.pending_tags(Some("fraud")).unwrap().len(), 1);
        // Opening again changes nothing.
        drop(j);
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.live("fraud", "staging").unwrap().unwrap().version, "1");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_journal_of_a_newer_hoist_is_refused() {
        let dir = std::env::temp_dir().join(format!("hoist-journal-v9-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("journal.db");
        let _ = std::fs::remove_file(&path);
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 9)
            .unwrap();
        let err = Journal::open(&path).err().unwrap().to_string();
        assert!(err.contains("newer hoist (schema version 9"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn each_model_has_its_own_live_versions_releases_and_tags() {
        let j = Journal::in_memory().unwrap();
        go_live(&j, "fraud", "1");
        go_live(&j, "churn", "7");
        go_live(&j, "fraud", "2");
        assert_eq!(j.live("fraud", "staging").unwrap().unwrap().version, "2");
        assert_eq!(j.live("churn", "staging").unwrap().unwrap().version, "7");
        assert!(j.live("other", "staging").unwrap().is_none());
        let versions = |m| -> Vec<String> {
            j.live_history(m, "staging")
                .unwrap()
                .into_iter()
                .map(|l| l.version)
                .collect()
        };
        assert_eq!(versions("fraud"), ["2", "1"]);
        assert_eq!(versions("churn"), ["7"]);
        assert_eq!(j.list(Some("churn"), None, 10).unwrap().len(), 1);
        assert_eq!(j.list(Some("fraud"), Some("staging"), 10).unwrap().len(), 2);
        assert_eq!(j.list(None, None, 10).unwrap().len(), 3);
        let plan = Plan::from_config(&Config::default(), Some("staging")).unwrap();
        j.create("churn", "8", plan, "cli", 9).unwrap();
        assert!(j.active(Some("fraud")).unwrap().is_empty());
        assert_eq!(j.active(Some("churn")).unwrap().len(), 1);
        assert_eq!(j.active(None).unwrap().len(), 1);
        assert!(
            j.pending_tags(Some("churn"))
                .unwrap()
                .iter()
                .all(|t| t.model == "churn")
        );
        assert_eq!(j.pending_tags(None).unwrap().len(), 3);
    }
}
