//! The delivery log on SQLite, in its own file `deliveries.db` of the data directory: the
//! delivery runners' journal never queues behind the read model's or the reminders' write lock,
//! and rebuilding the read model leaves it alone.
//!
//! A journal: its commits are relaxed (`synchronous=NORMAL`), so a power loss may take the last
//! records with it, which the port allows; a crash of the process does not.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use enrollstream_ports::delivery_log::{DeliveryLog, DeliveryOutcome, DeliveryRecord};
use enrollstream_ports::StoreError;
use rusqlite::{params, Connection};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::sqlite::{self, blocking, parse_time, time, Durability, Failure, Result};

pub const FILE_NAME: &str = "deliveries.db";

/// Each entry migrates from version `index` to `index + 1`; append, never edit. `at` is a
/// fixed-width RFC 3339 text, so text order is time order for the listing and the purge.
const MIGRATIONS: &[&str] = &[r#"
    CREATE TABLE deliveries (
        seq             INTEGER PRIMARY KEY,
        entity_id       TEXT NOT NULL,
        at              TEXT NOT NULL,
        notification_id TEXT NOT NULL,
        event_id        TEXT,
        entity_kind     TEXT,
        target          TEXT NOT NULL,
        outcome         TEXT NOT NULL,
        attempts        INTEGER NOT NULL,
        status          INTEGER,
        error           TEXT,
        dlq_topic       TEXT
    );
    CREATE INDEX deliveries_entity ON deliveries (entity_id, at);
    CREATE INDEX deliveries_at ON deliveries (at);
"#];

pub struct SqliteDeliveryLog {
    shared: Arc<Shared>,
}

struct Shared {
    writer: Mutex<Connection>,
    /// The API's listing runs beside a write thanks to WAL.
    reader: Mutex<Connection>,
}

impl SqliteDeliveryLog {
    /// Open (or create) `data_dir/deliveries.db` and bring its schema up to date.
    pub fn open(data_dir: &Path) -> std::result::Result<Self, StoreError> {
        sqlite::create_data_dir(data_dir)?;
        let path = data_dir.join(FILE_NAME);
        let writer = sqlite::open_writer(&path, MIGRATIONS)?;
        sqlite::set_durability(&writer, Durability::Relaxed).map_err(Failure::from)?;
        let reader = sqlite::open_reader(&path)?;
        Ok(Self {
            shared: Arc::new(Shared {
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
            }),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        write: bool,
        op: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> std::result::Result<T, StoreError> {
        let shared = self.shared.clone();
        blocking("delivery log", move || {
            let conn = if write {
                &shared.writer
            } else {
                &shared.reader
            };
            let conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            op(&conn)
        })
        .await
    }
}

fn insert(conn: &Connection, r: &DeliveryRecord) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO deliveries (entity_id, at, notification_id, event_id, entity_kind, target,
                                 outcome, attempts, status, error, dlq_topic)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        r.entity_id,
        time(r.at),
        r.notification_id,
        r.event_id,
        r.entity_kind,
        r.target,
        r.outcome.as_str(),
        r.attempts,
        r.status,
        r.error,
        r.dlq_topic,
    ])?;
    Ok(())
}

fn by_entity(conn: &Connection, entity_id: &str, limit: usize) -> Result<Vec<DeliveryRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT at, notification_id, event_id, entity_kind, target, outcome, attempts, status,
                error, dlq_topic
         FROM deliveries WHERE entity_id = ?1 ORDER BY at DESC, seq DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(
        params![entity_id, i64::try_from(limit).unwrap_or(i64::MAX)],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, u32>(6)?,
                r.get::<_, Option<u16>>(7)?,
                r.get::<_, Option<String>>(8)?,
                r.get::<_, Option<String>>(9)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (
            at,
            notification_id,
            event_id,
            entity_kind,
            target,
            outcome,
            attempts,
            status,
            error,
            dlq_topic,
        ) = row?;
        let outcome = DeliveryOutcome::parse(&outcome).ok_or_else(|| {
            Failure::Corrupt(format!("deliveries.outcome {outcome:?} is not an outcome"))
        })?;
        out.push(DeliveryRecord {
            notification_id,
            event_id,
            entity_kind,
            entity_id: entity_id.to_string(),
            target,
            outcome,
            attempts,
            status,
            error,
            dlq_topic,
            at: parse_time("deliveries.at", &at)?,
        });
    }
    Ok(out)
}

#[async_trait]
impl DeliveryLog for SqliteDeliveryLog {
    async fn record(&self, record: &DeliveryRecord) -> std::result::Result<(), StoreError> {
        let record = record.clone();
        self.with(true, move |conn| insert(conn, &record)).await
    }

    async fn by_entity(
        &self,
        entity_id: &str,
        limit: usize,
    ) -> std::result::Result<Vec<DeliveryRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let entity_id = entity_id.to_string();
        self.with(false, move |conn| by_entity(conn, &entity_id, limit))
            .await
    }

    async fn purge(&self, before: DateTime<Utc>) -> std::result::Result<u64, StoreError> {
        self.with(true, move |conn| {
            let gone = conn.execute(
                "DELETE FROM deliveries WHERE at < ?1",
                params![time(before)],
            )?;
            Ok(gone as u64)
        })
        .await
    }

    async fn check(&self) -> std::result::Result<(), StoreError> {
        self.with(false, sqlite::check).await
    }

    fn name(&self) -> &'static str {
        "sqlite"
    }
}
