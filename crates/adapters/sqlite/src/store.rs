//! The store on SQLite: the event log, the entities' current state, the outbox and the API's
//! idempotency keys, in `store.db` of the data directory.
//!
//! rusqlite is blocking, so every call runs on tokio's blocking threads: writes share one
//! connection behind a mutex (SQLite has one writer anyway), reads use their own connections
//! and, thanks to WAL, never wait for a commit's fsync. A thread of its own copies the WAL back
//! into the file (`Checkpointer`), so no write waits for a checkpoint either.

mod fences;
mod generations;
mod listing;
mod read;
mod readers;
mod rows;
mod schema;
mod waiters;
mod write;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use enrollstream_domain::EntityKind;
use enrollstream_ports::{
    ApplyOutcome, Change, CommitPosition, EntityQuery, EntityRecord, Generations,
    IdempotencyRecord, Lease, Reservation, ShadowBuild, Store, StoreError, StoredEvent,
    StoredOutboxMessage, SwitchError,
};
use rusqlite::Connection;
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::sqlite::{self, blocking, time, Checkpointer};
use generations::{Tables, ACTIVE, NEXT};
use readers::Readers;
use rows::{ChangeRow, IdempotencyRow};
use waiters::Waiters;

/// How long the API promises to remember an idempotency key.
fn idempotency_ttl() -> chrono::Duration {
    chrono::Duration::hours(24)
}

/// `wait_applied` wakes as soon as this store commits the event; an event applied through
/// another connection to the file (another `SqliteStore` on it) is seen at the latest this much
/// later.
const OTHER_PROCESS_RECHECK: Duration = Duration::from_millis(250);

/// Reservations between two purges of expired idempotency keys.
const PURGE_EVERY: u64 = 1024;

pub struct SqliteStore {
    shared: Arc<Shared>,
    /// The active generation's tables, or (the handle `Generations::shadow` gives) the next's.
    tables: Tables,
}

struct Shared {
    writer: Mutex<Connection>,
    checkpoints: Checkpointer,
    readers: Readers,
    /// Reads waiting for an event to be applied (read-your-writes).
    waiters: Waiters,
    /// Signalled after every commit that recorded outbox messages to publish.
    outbox: Notify,
    reservations: AtomicU64,
}

impl SqliteStore {
    /// Open (or create) `data_dir/store.db` and bring its schema up to date. API idempotency
    /// keys past their 24 h are purged here, and then every `PURGE_EVERY` reservations, so a
    /// process that runs for weeks keeps the table bounded without a timer of its own.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        sqlite::create_data_dir(data_dir)?;
        let path = data_dir.join("store.db");
        let writer = schema::open_writer(&path)?;
        purge_expired_idempotency(&writer)?;
        let checkpoints = Checkpointer::start(&writer, &path).map_err(|e| {
            StoreError::Fatal(format!(
                "cannot start checkpoints of {}: {e}",
                path.display()
            ))
        })?;
        Ok(Self {
            shared: Arc::new(Shared {
                writer: Mutex::new(writer),
                checkpoints,
                readers: Readers::new(path),
                waiters: Waiters::default(),
                outbox: Notify::new(),
                reservations: AtomicU64::new(0),
            }),
            tables: ACTIVE,
        })
    }

    async fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Shared, &mut Connection) -> sqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = self.shared.clone();
        blocking("store", move || {
            // A panic mid-transaction rolled it back while unwinding: the connection is usable.
            let mut conn = shared
                .writer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let done = op(&shared, &mut conn);
            shared.checkpoints.committed();
            done
        })
        .await
    }

    async fn read<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> sqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = self.shared.clone();
        blocking("store", move || shared.readers.with(op)).await
    }
}

fn purge_expired_idempotency(conn: &Connection) -> Result<(), StoreError> {
    if let Some(newest) = write::newest_idempotency(conn)? {
        let newest = sqlite::parse_time("created_at", &newest)?;
        let purged = write::purge_idempotency(conn, &time(newest - idempotency_ttl()))?;
        tracing::debug!(purged, "expired idempotency keys purged");
    }
    Ok(())
}

impl Shared {
    fn signal(&self, rows: &[ChangeRow], applied: &write::Applied) {
        // A conflict left its event unapplied: its waiters keep waiting for the retry.
        let in_log = rows
            .iter()
            .zip(&applied.outcomes)
            .filter(|(_, outcome)| !matches!(outcome, ApplyOutcome::Conflict { .. }))
            .map(|(row, _)| row.event_id.as_str());
        self.waiters.applied(in_log);
        if applied.new_outbox {
            // Wake every relay waiting now, and leave one permit for a relay that looked at the
            // outbox just before this commit and is about to wait.
            self.outbox.notify_waiters();
            self.outbox.notify_one();
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn applied(&self, event_ids: &[String]) -> Result<HashSet<String>, StoreError> {
        let (ids, tables) = (event_ids.to_vec(), self.tables);
        self.read(move |conn| read::applied(conn, tables, &ids))
            .await
    }

    async fn entity(&self, kind: EntityKind, id: &str) -> Result<Option<EntityRecord>, StoreError> {
        let (id, tables) = (id.to_string(), self.tables);
        self.read(move |conn| read::entity(conn, tables, kind, &id))
            .await
    }

    async fn entities(
        &self,
        keys: &[(EntityKind, String)],
    ) -> Result<Vec<EntityRecord>, StoreError> {
        let (keys, tables) = (keys.to_vec(), self.tables);
        self.read(move |conn| read::entities(conn, tables, &keys))
            .await
    }

    async fn list_entities(&self, query: &EntityQuery) -> Result<Vec<EntityRecord>, StoreError> {
        let (query, tables) = (query.clone(), self.tables);
        self.read(move |conn| listing::list_entities(conn, tables, &query))
            .await
    }

    async fn apply(&self, changes: &[Change]) -> Result<Vec<ApplyOutcome>, StoreError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let rows = changes
            .iter()
            .map(ChangeRow::encode)
            .collect::<sqlite::Result<Vec<_>>>()?;
        let tables = self.tables;
        self.write(move |shared, conn| {
            let applied = write::apply(conn, tables, &rows)?;
            shared.signal(&rows, &applied);
            Ok(applied.outcomes)
        })
        .await
    }

    async fn event_log(&self, kind: EntityKind, id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let (id, tables) = (id.to_string(), self.tables);
        self.read(move |conn| read::event_log(conn, tables, kind, &id))
            .await
    }

    async fn wait_applied(&self, event_id: &str, timeout: Duration) -> Result<bool, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut waiter = self.shared.waiters.register(event_id);
            let (id, tables) = (event_id.to_string(), self.tables);
            if self
                .read(move |conn| read::is_applied(conn, tables, &id))
                .await?
            {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let recheck = (deadline - now).min(OTHER_PROCESS_RECHECK);
            tokio::select! {
                // Sent by the commit that applies the event (the map lives as long as `self`).
                _ = &mut waiter.woken => {}
                _ = tokio::time::sleep(recheck) => {}
            }
        }
    }

    async fn reset_read_model(&self) -> Result<(), StoreError> {
        self.write(|_, conn| write::reset_read_model(conn)).await
    }

    async fn pending_outbox(&self, limit: usize) -> Result<Vec<StoredOutboxMessage>, StoreError> {
        self.read(move |conn| read::pending_outbox(conn, limit))
            .await
    }

    async fn mark_published(&self, ids: &[String]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids.to_vec();
        // Not fsync'ed: a mark lost to a power loss only makes the relay publish those messages
        // again, with the same ids, which consumers dedupe (as after a crash before marking).
        self.write(move |_, conn| sqlite::relaxed(conn, |conn| write::mark_published(conn, &ids)))
            .await
    }

    async fn wait_for_outbox(&self, max: Duration) {
        // Elapsing is a normal outcome: the caller looks at the outbox either way.
        let _ = tokio::time::timeout(max, self.shared.outbox.notified()).await;
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        self.read(read::outbox_backlog).await
    }

    async fn reserve_idempotency(
        &self,
        record: &IdempotencyRecord,
    ) -> Result<Reservation, StoreError> {
        let row = IdempotencyRow::encode(record)?;
        // Expiry is measured on the caller's clock (the record's time), never on the store's.
        let expired_before = time(record.created_at - idempotency_ttl());
        let purge = self.shared.reservations.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY
            == PURGE_EVERY - 1;
        self.write(move |_, conn| {
            let existing = write::reserve_idempotency(conn, &row, &expired_before)?;
            if purge {
                let purged = write::purge_idempotency(conn, &expired_before)?;
                tracing::debug!(purged, "expired idempotency keys purged");
            }
            write::reservation(&row.fingerprint, existing)
        })
        .await
    }

    async fn mark_idempotency_published(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_string();
        self.write(move |_, conn| write::mark_idempotency_published(conn, &key))
            .await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.read(sqlite::check).await
    }

    async fn park_outbox(
        &self,
        message: &StoredOutboxMessage,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (message, reason) = (message.clone(), reason.to_string());
        self.write(move |_, conn| fences::park(conn, &message, &reason, at))
            .await
    }

    async fn parked_outbox(
        &self,
        limit: usize,
    ) -> Result<Vec<(StoredOutboxMessage, String)>, StoreError> {
        self.read(move |conn| fences::parked(conn, limit)).await
    }

    async fn take_lease(
        &self,
        name: &str,
        owner: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Lease>, StoreError> {
        let (name, owner) = (name.to_string(), owner.to_string());
        self.write(move |_, conn| fences::take_lease(conn, &name, &owner, until, now))
            .await
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let (name, owner) = (name.to_string(), owner.to_string());
        self.write(move |_, conn| fences::release_lease(conn, &name, &owner))
            .await
    }

    async fn leases(&self, prefix: &str, now: DateTime<Utc>) -> Result<Vec<Lease>, StoreError> {
        let prefix = prefix.to_string();
        self.read(move |conn| fences::leases(conn, &prefix, now))
            .await
    }

    fn generations(&self) -> Option<&dyn Generations> {
        self.tables.active.then_some(self as &dyn Generations)
    }

    fn name(&self) -> &'static str {
        "sqlite"
    }
}

#[async_trait]
impl Generations for SqliteStore {
    async fn active_generation(&self) -> Result<u64, StoreError> {
        self.read(generations::active_generation).await
    }

    async fn open_shadow(&self, fresh: bool) -> Result<ShadowBuild, StoreError> {
        self.write(move |_, conn| generations::open_shadow(conn, fresh))
            .await
    }

    fn shadow(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore {
            shared: self.shared.clone(),
            tables: NEXT,
        })
    }

    async fn record_shadow_progress(
        &self,
        build_id: &str,
        positions: &[CommitPosition],
    ) -> Result<(), StoreError> {
        let (build_id, positions) = (build_id.to_string(), positions.to_vec());
        self.write(move |_, conn| generations::record_progress(conn, &build_id, &positions))
            .await
    }

    async fn missing_from_shadow(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        self.read(move |conn| generations::missing(conn, limit))
            .await
    }

    async fn switch_to_shadow(
        &self,
        build_id: &str,
        owner: &str,
        held_past: DateTime<Utc>,
    ) -> Result<u64, SwitchError> {
        let (build_id, owner) = (build_id.to_string(), owner.to_string());
        let switched = self
            .write(move |_, conn| generations::switch(conn, &build_id, &owner, held_past))
            .await?;
        switched.map_err(|refusal| match refusal {
            generations::Refusal::Missing(sources) => SwitchError::Missing(sources),
            generations::Refusal::NotPaused => SwitchError::NotPaused,
        })
    }

    async fn drop_retired(&self) -> Result<(), StoreError> {
        self.write(|_, conn| generations::drop_retired(conn)).await
    }
}
