//! Opening a file: connection settings and the schema, versioned by `PRAGMA user_version`.

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use std::path::Path;
use std::time::Duration;

use super::failure::{Failure, Result};

/// How long a statement of a store file waits for another process's write lock (a second
/// scheduler, a role run apart) before the store reports itself unavailable.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection that writes. WAL lets readers run beside it; `synchronous=FULL` makes a commit
/// that returned survive a power loss, which every writer of this crate relies on (the
/// projector before it commits its bus offsets, the scheduler before it sends again, the bus
/// before it acknowledges a publish). Only writes whose loss a redo repairs commit `Relaxed`.
pub(crate) fn open_durable(path: &Path, busy_timeout: Duration) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy_timeout)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Failure::Corrupt(format!(
            "{} cannot use WAL (journal_mode is {mode})",
            path.display()
        )));
    }
    set_durability(&conn, Durability::Durable)?;
    Ok(conn)
}

/// How a commit reaches the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    /// `synchronous=FULL`: on disk (the WAL fsync'ed) when the commit returns.
    Durable,
    /// `synchronous=NORMAL`: in the WAL, not fsync'ed. It survives a crash of the process (the
    /// WAL is in the OS's cache) and becomes durable with the next `Durable` commit on the file,
    /// whose fsync covers every earlier frame; only a power loss before that can undo it. For
    /// writes whose loss costs a redo that is a no-op, never for an effect.
    Relaxed,
}

/// Not inside a transaction: SQLite refuses to change the level there.
pub(crate) fn set_durability(conn: &Connection, durability: Durability) -> rusqlite::Result<()> {
    let level = match durability {
        Durability::Durable => "FULL",
        Durability::Relaxed => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", level)
}

/// Runs `op`, whose commits are `Relaxed`, and restores `Durable` for every other writer of the
/// connection. If the level cannot be restored the call fails; that happens only inside a
/// transaction `op` could not end, where nothing else commits either.
pub(crate) fn relaxed<T>(
    conn: &mut Connection,
    op: impl FnOnce(&mut Connection) -> Result<T>,
) -> Result<T> {
    set_durability(conn, Durability::Relaxed)?;
    let done = op(conn);
    set_durability(conn, Durability::Durable)?;
    done
}

/// The writer of a store file, its schema brought up to date. Each entry of `migrations`
/// migrates from version `index` to `index + 1`; append, never edit.
pub(crate) fn open_writer(path: &Path, migrations: &[&str]) -> Result<Connection> {
    let conn = open_durable(path, BUSY_TIMEOUT)?;
    migrate(&conn, path, migrations)?;
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

/// A write transaction that takes the write lock first (`BEGIN IMMEDIATE`), so what it reads
/// cannot change before it writes, even from another process.
pub(crate) fn immediate(conn: &mut Connection) -> Result<Transaction<'_>> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

/// The readiness probe: the file answers a query.
pub(crate) fn check(conn: &Connection) -> Result<()> {
    conn.query_row("SELECT 1", [], |_| Ok(()))?;
    Ok(())
}

fn migrate(conn: &Connection, path: &Path, migrations: &[&str]) -> Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = migrations.len() as i64;
    if current > known {
        let file = path
            .file_name()
            .unwrap_or(path.as_os_str())
            .to_string_lossy();
        return Err(Failure::Corrupt(format!(
            "{file} has schema version {current}, this build knows up to {known}"
        )));
    }
    for (version, sql) in migrations.iter().enumerate().skip(current as usize) {
        // The schema step and its version number commit together, so a crash mid-migration
        // leaves the old version and the step runs again.
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// A file of its own with one writer connection (`credentials.db`, `audit.db`): every
/// operation is one statement, run off the async threads.
pub(crate) struct SingleFile {
    conn: std::sync::Arc<std::sync::Mutex<Connection>>,
    what: &'static str,
}

impl SingleFile {
    /// Open (or create) `data_dir/file` and bring its schema up to date.
    pub(crate) fn open(
        data_dir: &Path,
        file: &str,
        migrations: &[&str],
        what: &'static str,
    ) -> std::result::Result<Self, enrollstream_ports::StoreError> {
        super::create_data_dir(data_dir)?;
        let conn = open_writer(&data_dir.join(file), migrations)?;
        Ok(Self {
            conn: std::sync::Arc::new(std::sync::Mutex::new(conn)),
            what,
        })
    }

    pub(crate) async fn with<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> std::result::Result<T, enrollstream_ports::StoreError> {
        let conn = self.conn.clone();
        super::blocking(self.what, move || {
            op(&conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
        })
        .await
    }
}
