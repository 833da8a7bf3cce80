//! Opening `store.db`: connection settings and the schema, versioned by `PRAGMA user_version`.

use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

use super::rows::{Failure, Result};

/// How long a statement waits for another process's write lock before the store reports
/// itself unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Each entry migrates from version `index` to `index + 1`; append, never edit.
const MIGRATIONS: &[&str] = &[r#"
    CREATE TABLE event_log (
        event_id    TEXT PRIMARY KEY,
        entity_kind TEXT NOT NULL,
        entity_id   TEXT NOT NULL,
        version     INTEGER NOT NULL,
        event_type  TEXT NOT NULL,
        occurred_at TEXT NOT NULL,
        envelope    TEXT NOT NULL,
        source      TEXT,
        recorded_at TEXT NOT NULL,
        UNIQUE (entity_kind, entity_id, version)
    );
    CREATE TABLE entities (
        kind          TEXT NOT NULL,
        id            TEXT NOT NULL,
        version       INTEGER NOT NULL,
        status        TEXT NOT NULL,
        state         TEXT NOT NULL,
        last_event_id TEXT NOT NULL,
        updated_at    TEXT NOT NULL,
        PRIMARY KEY (kind, id)
    );
    CREATE TABLE outbox (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        id           TEXT NOT NULL UNIQUE,
        topic        TEXT NOT NULL,
        key          TEXT NOT NULL,
        event        TEXT NOT NULL,
        event_id     TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        published_at TEXT
    );
    CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
    CREATE TABLE idempotency (
        key         TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        topic       TEXT NOT NULL,
        event       TEXT NOT NULL,
        status      INTEGER NOT NULL,
        response    TEXT NOT NULL,
        published   INTEGER NOT NULL,
        created_at  TEXT NOT NULL
    );
    CREATE INDEX idempotency_created_at ON idempotency (created_at);
"#];

/// The one connection that writes. WAL lets readers run beside it; `synchronous=FULL` makes a
/// commit that returned survive a power loss, which the projector relies on before it commits
/// its bus offsets.
pub(crate) fn open_writer(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Failure::Corrupt(format!(
            "{} cannot use WAL (journal_mode is {mode})",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    migrate(&conn)?;
    Ok(conn)
}

pub(crate) fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(Failure::Corrupt(format!(
            "store.db has schema version {current}, this build knows up to {known}"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        // The schema step and its version number commit together, so a crash mid-migration
        // leaves the old version and the step runs again.
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
