//! Reminder state on SQLite, in its own file `reminders.db` of the data directory.
//!
//! Its own file rather than tables in `store.db`: the scheduler's claims and records and the
//! reminder consumer's writes never queue behind the projector's write lock (SQLite has one
//! writer per file), the schema has its own version (`PRAGMA user_version` of `store.db`
//! belongs to the store), and rebuilding the read model cannot touch reminder state.
//!
//! Every write is one `BEGIN IMMEDIATE` transaction on one row: the write lock is taken first,
//! so reading the row, folding it with the domain and writing it back is atomic even against
//! another process on the same file (two schedulers, or the consumer and a scheduler).

mod rows;
mod schema;
mod write;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use enrollstream_domain::events::ApplicationEvent;
use enrollstream_domain::reminder::{Reminder, ReminderPolicy};
use enrollstream_ports::reminders::{
    ClaimedReminder, EventOutcome, Fenced, ReminderQuery, ReminderStore, ScheduledReminder,
};
use enrollstream_ports::StoreError;
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::sqlite::{self, blocking, Result};

pub const FILE_NAME: &str = "reminders.db";

pub struct SqliteReminderStore {
    shared: Arc<Shared>,
}

struct Shared {
    writer: Mutex<Connection>,
    /// Reads (the API's `GET`, the backlog gauge) run beside a write's fsync thanks to WAL.
    reader: Mutex<Connection>,
}

impl SqliteReminderStore {
    /// Open (or create) `data_dir/reminders.db` and bring its schema up to date.
    pub fn open(data_dir: &Path) -> std::result::Result<Self, StoreError> {
        sqlite::create_data_dir(data_dir)?;
        let path = data_dir.join(FILE_NAME);
        let writer = schema::open_writer(&path)?;
        let reader = sqlite::open_reader(&path)?;
        Ok(Self {
            shared: Arc::new(Shared {
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
            }),
        })
    }

    async fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> std::result::Result<T, StoreError> {
        let shared = self.shared.clone();
        blocking("reminder store", move || {
            // A panic mid-transaction rolled it back while unwinding: the connection is usable.
            let mut conn = shared
                .writer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            op(&mut conn)
        })
        .await
    }

    async fn read<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> std::result::Result<T, StoreError> {
        let shared = self.shared.clone();
        blocking("reminder store", move || {
            let conn = shared
                .reader
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            op(&conn)
        })
        .await
    }
}

#[async_trait]
impl ReminderStore for SqliteReminderStore {
    async fn apply_event(
        &self,
        event_id: &str,
        event: &ApplicationEvent,
        at: DateTime<Utc>,
        policy: &ReminderPolicy,
    ) -> std::result::Result<EventOutcome, StoreError> {
        if !Reminder::concerns(event) {
            return Ok(EventOutcome::Ignored);
        }
        let (event_id, event, policy) = (event_id.to_string(), event.clone(), *policy);
        self.write(move |conn| write::apply_event(conn, &event_id, &event, at, &policy))
            .await
    }

    async fn get(&self, application_id: &str) -> std::result::Result<Option<Reminder>, StoreError> {
        let id = application_id.to_string();
        self.read(move |conn| Ok(rows::load(conn, &id)?.map(|row| row.reminder)))
            .await
    }

    async fn list(
        &self,
        query: &ReminderQuery,
    ) -> std::result::Result<Vec<ScheduledReminder>, StoreError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let query = query.clone();
        self.read(move |conn| rows::list(conn, &query)).await
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        owner: &str,
        limit: usize,
    ) -> std::result::Result<Vec<ClaimedReminder>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let owner = owner.to_string();
        self.write(move |conn| write::claim_due(conn, now, lease_until, &owner, limit))
            .await
    }

    async fn record_attempt(
        &self,
        claim: &ClaimedReminder,
        attempt: u32,
        at: DateTime<Utc>,
        refused: Option<&str>,
        policy: &ReminderPolicy,
    ) -> std::result::Result<Fenced, StoreError> {
        let (claim, refused, policy) = (claim.clone(), refused.map(str::to_string), *policy);
        self.write(move |conn| {
            write::finish_claim(conn, &claim, None, |r| {
                r.record_attempt(attempt, at, refused.as_deref(), &policy)
            })
        })
        .await
    }

    async fn release(
        &self,
        claim: &ClaimedReminder,
        retry_at: DateTime<Utc>,
        failure: Option<&str>,
        at: DateTime<Utc>,
    ) -> std::result::Result<Fenced, StoreError> {
        let (claim, failure) = (claim.clone(), failure.map(str::to_string));
        self.write(move |conn| {
            write::finish_claim(conn, &claim, Some(retry_at), |r| {
                Ok(match &failure {
                    Some(error) => r.record_failure(at, error),
                    None => r.clone(),
                })
            })
        })
        .await
    }

    async fn mark_exhausted(
        &self,
        claim: &ClaimedReminder,
        at: DateTime<Utc>,
        policy: &ReminderPolicy,
    ) -> std::result::Result<Fenced, StoreError> {
        let (claim, policy) = (claim.clone(), *policy);
        self.write(move |conn| {
            write::finish_claim(conn, &claim, None, |r| r.mark_exhausted(at, &policy))
        })
        .await
    }

    async fn due_backlog(&self, now: DateTime<Utc>) -> std::result::Result<u64, StoreError> {
        self.read(move |conn| rows::due_backlog(conn, now)).await
    }

    async fn next_wake(&self) -> std::result::Result<Option<DateTime<Utc>>, StoreError> {
        self.read(rows::next_wake).await
    }

    async fn check(&self) -> std::result::Result<(), StoreError> {
        self.read(sqlite::check).await
    }

    fn name(&self) -> &'static str {
        "sqlite"
    }
}
