//! Checkpoints off the writer's path, for `store.db`.
//!
//! SQLite's automatic checkpoint runs inside the commit that fills the WAL past 1,000 pages:
//! that commit copies the pages back into the database file and fsyncs it while its writer,
//! and everyone waiting on that writer, stands still. And since a hot page (an index leaf, the
//! tail of a table) is in the WAL once per transaction that touched it, checkpointing often
//! copies the same page many times. The store writes hundreds of pages per batch (the outbox
//! id index takes random inserts), so there it checkpointed every few batches, in the
//! projector's and the relay's way. Here a thread of its own checkpoints the file at most
//! every `INTERVAL` while commits come in (`PASSIVE`: it never blocks the writer or a reader),
//! so the writer never pays for it and each page is copied once per interval.
//!
//! The price: SQLite starts a WAL over from its beginning only when a write transaction begins
//! on a WAL that is copied in full, and under steady commits some always land while this thread
//! copies. So the WAL grows to `WRITER_FALLBACK_PAGES` (128 MiB), where the writer's own
//! automatic checkpoint copies the short rest and the WAL starts over; from then on the file
//! is reused at that size. Copying the rest with commits held off every interval kept the WAL
//! small, but held the writer 10-20 ms each time (an fsync of the database file) and did not
//! improve the pipeline bench's latency measurably (docs/benchmarks.md).
//!
//! Not for `bus.db`: its batches touch a few pages each, its checkpoints are small, and
//! measured with the pipeline bench, moving them to a thread only added latency to publishes.

use rusqlite::Connection;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::Duration;

use super::connection::{set_durability, Durability};

/// At most one checkpoint per interval: long enough for a hot page to be copied once for many
/// transactions, short enough to keep the WAL to some megabytes under full load.
const INTERVAL: Duration = Duration::from_millis(500);

/// Pages (4 KiB) in the WAL past which the writer checkpoints by itself after all.
const WRITER_FALLBACK_PAGES: i64 = 32_768;

/// Wakes the checkpoint thread of one file; the thread ends once every handle is dropped.
pub(crate) struct Checkpointer {
    wake: SyncSender<()>,
}

impl Checkpointer {
    /// Takes over checkpoints of the file `writer` writes, on a connection of its own.
    pub(crate) fn start(writer: &Connection, path: &Path) -> std::io::Result<Self> {
        let conn = Connection::open(path).map_err(std::io::Error::other)?;
        // A checkpoint fsyncs the WAL before it copies and the database after.
        set_durability(&conn, Durability::Durable).map_err(std::io::Error::other)?;
        writer
            .pragma_update(None, "wal_autocheckpoint", WRITER_FALLBACK_PAGES)
            .map_err(std::io::Error::other)?;
        let (wake, woken) = mpsc::sync_channel(1);
        let name = path
            .file_name()
            .map_or_else(|| "db".into(), |n| n.to_string_lossy().into_owned());
        std::thread::Builder::new()
            .name(format!("checkpoint-{name}"))
            .spawn(move || run(&conn, &woken, &name))?;
        Ok(Self { wake })
    }

    /// Tells the thread a commit added pages to the WAL. Never blocks: a wake-up already
    /// pending covers this commit too, and should the thread be gone, the writer's fallback
    /// checkpoint keeps the WAL bounded.
    pub(crate) fn committed(&self) {
        let _ = self.wake.try_send(());
    }
}

fn run(conn: &Connection, woken: &Receiver<()>, file: &str) {
    while woken.recv().is_ok() {
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        match done {
            Ok((wal_pages, copied)) => tracing::trace!(file, wal_pages, copied, "checkpoint"),
            // Passing trouble (a lock, I/O): the next commit wakes us again.
            Err(e) => tracing::debug!(file, error = %e, "checkpoint failed"),
        }
        std::thread::sleep(INTERVAL);
    }
}
