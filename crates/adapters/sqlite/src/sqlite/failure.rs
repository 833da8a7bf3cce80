//! Failures of the store files, and how they become `StoreError`s.

use enrollstream_ports::StoreError;
use rusqlite::ErrorCode;
use std::path::Path;

/// A failure inside a store, before it is classified for the caller.
#[derive(Debug)]
pub(crate) enum Failure {
    Sql(rusqlite::Error),
    /// A row that cannot be read back, or a value that cannot be written.
    Corrupt(String),
    /// A write the store refuses for now (a rebuild is switching the read model); retry later.
    Paused(String),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Sql(e)
    }
}

impl From<Failure> for StoreError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Sql(e) if is_transient(&e) => StoreError::Unavailable(e.to_string()),
            Failure::Sql(e) => StoreError::Fatal(e.to_string()),
            Failure::Corrupt(reason) => StoreError::Fatal(reason),
            Failure::Paused(reason) => StoreError::Unavailable(reason),
        }
    }
}

/// Lock contention (another process holds the write lock past the busy timeout) and I/O
/// trouble pass; everything else is a bug or a broken file.
fn is_transient(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _) if matches!(
            f.code,
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory
                | ErrorCode::FileLockingProtocolFailed
        )
    )
}

pub(crate) type Result<T> = std::result::Result<T, Failure>;

pub(crate) fn create_data_dir(data_dir: &Path) -> std::result::Result<(), StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        StoreError::Fatal(format!(
            "cannot create data directory {}: {e}",
            data_dir.display()
        ))
    })
}

/// Run blocking rusqlite work on tokio's blocking threads; `task` names it if it panics.
pub(crate) async fn blocking<T: Send + 'static>(
    task: &'static str,
    op: impl FnOnce() -> Result<T> + Send + 'static,
) -> std::result::Result<T, StoreError> {
    tokio::task::spawn_blocking(op)
        .await
        .map_err(|e| StoreError::Fatal(format!("{task} task failed: {e}")))?
        .map_err(StoreError::from)
}
