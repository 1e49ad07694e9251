//! The SQL under the registry: connection setup, the transactions' row helpers
//! (aliases, tags, the change log), and reading versions back.

use super::*;

/// Sets up a connection: WAL (readers never block the writer), a busy timeout (writers
/// wait for each other), durable commits, and the schema.
pub(super) fn init(conn: &mut Connection) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
    // Switching a new database to WAL needs an exclusive lock, and SQLite does not
    // call the busy handler for it: two processes creating the registry at once must
    // retry here.
    let mut attempts = 0;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => break,
            Ok(mode) => {
                return Err(Error::Store(format!(
                    "cannot use WAL mode (journal_mode is {mode})"
                )));
            }
            Err(e) if is_busy(&e) && attempts < 600 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(db(e)),
        }
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db)?;
    conn.pragma_update(None, "foreign_keys", true).map_err(db)?;
    let tx = immediate(conn)?;
    let found: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(db)?;
    if found > SCHEMA_VERSION {
        return Err(Error::Store(format!(
            "schema version {found} is newer than this hoist understands ({SCHEMA_VERSION}); upgrade hoist"
        )));
    }
    if found < SCHEMA_VERSION {
        tx.execute_batch(SCHEMA).map_err(db)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(db)?;
    }
    tx.commit().map_err(db)
}

/// A write transaction that takes the write lock at once, so that what it reads (the
/// latest version number) cannot change before it writes.
pub(super) fn immediate(conn: &mut Connection) -> Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)
}

pub(super) fn set_alias_tx(
    tx: &Connection,
    name: &str,
    alias: &str,
    version: i64,
    now: i64,
) -> Result<()> {
    let old: Option<i64> = tx
        .query_row(
            "SELECT version FROM aliases WHERE name = ?1 AND alias = ?2",
            params![name, alias],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    // Setting an alias to where it already points is not a promotion: no change.
    if old == Some(version) {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO aliases (name, alias, version) VALUES (?1, ?2, ?3)
         ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version",
        params![name, alias, version],
    )
    .map_err(db)?;
    let kind = ChangeKind::AliasSet {
        alias: alias.to_string(),
    };
    record(tx, name, version, &kind, now)
}

pub(super) fn set_tag_tx(
    tx: &Connection,
    name: &str,
    version: i64,
    key: &str,
    value: &str,
    now: i64,
) -> Result<()> {
    let old: Option<String> = tx
        .query_row(
            "SELECT value FROM tags WHERE name = ?1 AND version = ?2 AND key = ?3",
            params![name, version, key],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    if old.as_deref() == Some(value) {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO tags (name, version, key, value) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name, version, key) DO UPDATE SET value = excluded.value",
        params![name, version, key, value],
    )
    .map_err(db)?;
    let kind = ChangeKind::TagSet {
        key: key.to_string(),
    };
    record(tx, name, version, &kind, now)
}

/// Appends to the change log (inside the caller's transaction).
pub(super) fn record(
    tx: &Connection,
    name: &str,
    version: i64,
    kind: &ChangeKind,
    now: i64,
) -> Result<()> {
    let (kind, key) = kind.columns();
    tx.execute(
        "INSERT INTO changes (name, version, kind, key, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![name, version, kind, key, now],
    )
    .map_err(db)?;
    Ok(())
}

pub(super) fn require_model(conn: &Connection, name: &str) -> Result<()> {
    let exists = conn
        .query_row("SELECT 1 FROM models WHERE name = ?1", [name], |_| Ok(()))
        .optional()
        .map_err(db)?
        .is_some();
    if exists {
        Ok(())
    } else {
        Err(Error::ModelNotFound(name.to_string()))
    }
}

/// The number of an existing version (`ModelNotFound` or `VersionNotFound` otherwise).
pub(super) fn version_number(conn: &Connection, name: &str, version: &str) -> Result<i64> {
    require_model(conn, name)?;
    let not_found = || Error::VersionNotFound {
        name: name.to_string(),
        version: version.to_string(),
    };
    let v: i64 = version.parse().map_err(|_| not_found())?;
    conn.query_row(
        "SELECT version FROM versions WHERE name = ?1 AND version = ?2",
        params![name, v],
        |r| r.get(0),
    )
    .optional()
    .map_err(db)?
    .ok_or_else(not_found)
}

/// Alias → version for one model.
pub(super) fn aliases_of(conn: &Connection, name: &str) -> Result<BTreeMap<String, i64>> {
    let mut stmt = conn
        .prepare("SELECT alias, version FROM aliases WHERE name = ?1")
        .map_err(db)?;
    stmt.query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db)?
        .collect::<rusqlite::Result<_>>()
        .map_err(db)
}

/// The versions of `name` (only `only` if given), newest first, with tags and aliases.
pub(super) fn load_versions(
    conn: &Connection,
    name: &str,
    only: Option<i64>,
) -> Result<Vec<ModelVersion>> {
    let mut stmt = conn
        .prepare(
            "SELECT version, digest, source, stage, run_id, created_at_ms FROM versions
             WHERE name = ?1 AND (?2 IS NULL OR version = ?2) ORDER BY version DESC",
        )
        .map_err(db)?;
    let mut versions: Vec<(i64, ModelVersion)> = stmt
        .query_map(params![name, only], |r| {
            let v: i64 = r.get(0)?;
            Ok((
                v,
                ModelVersion {
                    name: name.to_string(),
                    version: v.to_string(),
                    digest: Some(r.get(1)?),
                    source: r.get(2)?,
                    status: VersionStatus::Ready,
                    stage: r.get(3)?,
                    aliases: Vec::new(),
                    tags: BTreeMap::new(),
                    run_id: r.get(4)?,
                    created_at_ms: r.get(5)?,
                },
            ))
        })
        .map_err(db)?
        .collect::<rusqlite::Result<_>>()
        .map_err(db)?;
    for (alias, v) in aliases_of(conn, name)? {
        if let Some((_, mv)) = versions.iter_mut().find(|(n, _)| *n == v) {
            mv.aliases.push(alias);
        }
    }
    let mut stmt = conn
        .prepare(
            "SELECT version, key, value FROM tags
             WHERE name = ?1 AND (?2 IS NULL OR version = ?2)",
        )
        .map_err(db)?;
    let tags = stmt
        .query_map(params![name, only], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(db)?;
    for t in tags {
        let (v, k, val) = t.map_err(db)?;
        if let Some((_, mv)) = versions.iter_mut().find(|(n, _)| *n == v) {
            mv.tags.insert(k, val);
        }
    }
    Ok(versions.into_iter().map(|(_, mv)| mv).collect())
}

pub(super) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

pub(super) fn db(e: rusqlite::Error) -> Error {
    Error::Store(e.to_string())
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
