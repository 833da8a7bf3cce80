//! Read connections. WAL lets any number of them read beside the writer, so reads never wait
//! for a group commit's fsync.
//!
//! A plain stack of idle connections rather than a pool crate: r2d2_sqlite and deadpool-sqlite
//! each pin their own rusqlite, and the bundled SQLite can only be linked once per build.

use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::sqlite::{open_reader, Result};

/// Enough for the API, the relay and the readiness probe to read at once on a small machine;
/// more readers at a time open extra connections that are closed after use.
const MAX_IDLE: usize = 4;

pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Run `read` on an idle connection (or a new one). Blocking: call from a blocking thread.
    pub(crate) fn with<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let taken = self.lock().pop();
        let conn = match taken {
            Some(conn) => conn,
            None => open_reader(&self.path)?,
        };
        let out = read(&conn);
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // The list holds no invariant a panicking holder could break.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
