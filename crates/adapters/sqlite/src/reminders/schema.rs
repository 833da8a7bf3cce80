//! Opening `reminders.db`: connection settings and the schema, versioned by
//! `PRAGMA user_version`.

use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

use super::rows::{Failure, Result};

/// How long a statement waits for another process's write lock (a second scheduler) before
/// the store reports itself unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Each entry migrates from version `index` to `index + 1`; append, never edit.
///
/// `next_due_at` and `lease_until` are fixed-width RFC 3339 texts, so text order is time order
/// and the claim's comparisons run on the index.
const MIGRATIONS: &[&str] = &[r#"
    CREATE TABLE reminders (
        application_id TEXT PRIMARY KEY,
        status         TEXT NOT NULL,
        next_due_at    TEXT,
        lease_owner    TEXT,
        lease_until    TEXT,
        state          TEXT NOT NULL,
        updated_at     TEXT NOT NULL
    );
    CREATE INDEX reminders_due ON reminders (next_due_at) WHERE next_due_at IS NOT NULL;
"#];

/// The connection that writes. `synchronous=FULL`: a recorded attempt survives a power loss,
/// otherwise a restart could send that attempt again.
pub(super) fn open_writer(path: &Path) -> Result<Connection> {
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

pub(super) fn open_reader(path: &Path) -> Result<Connection> {
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
            "reminders.db has schema version {current}, this build knows up to {known}"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        // The step and its version number commit together; a crash mid-way repeats the step.
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
