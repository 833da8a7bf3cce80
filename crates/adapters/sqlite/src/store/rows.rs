//! How the store's values become SQLite columns and back, and how SQLite failures become
//! `StoreError`s.

use chrono::{DateTime, SecondsFormat, Utc};
use enrollstream_domain::notification::OutboxMessage;
use enrollstream_domain::{CloudEvent, EntityKind};
use enrollstream_ports::{
    Change, EntityRecord, IdempotencyRecord, StoreError, StoredEvent, StoredOutboxMessage,
};
use rusqlite::ErrorCode;

/// A failure inside the store, before it is classified for the caller.
#[derive(Debug)]
pub(crate) enum Failure {
    Sql(rusqlite::Error),
    /// A row that cannot be read back, or a value that cannot be written.
    Corrupt(String),
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

/// RFC 3339 with nanoseconds and `Z`: fixed width, so text order is time order (the idempotency
/// purge compares these strings), and exact, so a timestamp reads back equal.
pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

pub(crate) fn parse_time(column: &str, s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Failure::Corrupt(format!("{column} {s:?} is not a timestamp: {e}")))
}

pub(crate) fn parse_kind(s: &str) -> Result<EntityKind> {
    match s {
        "quote" => Ok(EntityKind::Quote),
        "application" => Ok(EntityKind::Application),
        other => Err(Failure::Corrupt(format!("unknown entity kind {other:?}"))),
    }
}

pub(crate) fn int(column: &str, v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Failure::Corrupt(format!("{column} {v} does not fit SQLite")))
}

fn uint(column: &str, v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| Failure::Corrupt(format!("{column} {v} is negative")))
}

pub(crate) fn json<T: serde::Serialize>(column: &str, v: &T) -> Result<String> {
    serde_json::to_string(v)
        .map_err(|e| Failure::Corrupt(format!("{column} cannot be encoded: {e}")))
}

fn parse_json<T: serde::de::DeserializeOwned>(column: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Failure::Corrupt(format!("{column} is not valid: {e}")))
}

/// A change encoded for the writer: all serialisation happens on the caller's task, so the
/// writer only binds strings while it holds the lock.
pub(crate) struct ChangeRow {
    pub event_id: String,
    pub entity_kind: &'static str,
    pub entity_id: String,
    pub version: i64,
    pub event_type: String,
    pub occurred_at: String,
    pub envelope: String,
    pub source: Option<String>,
    pub recorded_at: String,
    pub expected_version: i64,
    pub status: String,
    pub state: String,
    pub outbox: Vec<OutboxRow>,
    pub replay: bool,
}

pub(crate) struct OutboxRow {
    pub id: String,
    pub topic: String,
    pub key: String,
    pub event: String,
}

impl ChangeRow {
    pub(crate) fn encode(change: &Change) -> Result<Self> {
        let e = &change.event;
        let outbox = change
            .outbox
            .iter()
            .map(|m| {
                Ok(OutboxRow {
                    id: m.id.clone(),
                    topic: m.topic.clone(),
                    key: m.key.clone(),
                    event: json("outbox event", &m.event)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            event_id: e.event_id.clone(),
            entity_kind: e.entity_kind.as_str(),
            entity_id: e.entity_id.clone(),
            version: int("version", e.version)?,
            event_type: e.event_type.clone(),
            occurred_at: time(e.occurred_at),
            envelope: json("envelope", &e.envelope)?,
            source: e.source.clone(),
            recorded_at: time(e.recorded_at),
            expected_version: int("expected version", change.expected_version)?,
            status: change.status.clone(),
            state: json("state", &change.state)?,
            outbox,
            replay: change.replay,
        })
    }
}

/// An event-log row as read, decoded outside the row callback so decoding errors stay ours.
pub(crate) struct EventRow {
    pub event_id: String,
    pub entity_kind: String,
    pub entity_id: String,
    pub version: i64,
    pub event_type: String,
    pub occurred_at: String,
    pub envelope: String,
    pub source: Option<String>,
    pub recorded_at: String,
}

pub(crate) const EVENT_COLUMNS: &str =
    "event_id, entity_kind, entity_id, version, event_type, occurred_at, envelope, source, recorded_at";

impl EventRow {
    pub(crate) fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            event_id: row.get(0)?,
            entity_kind: row.get(1)?,
            entity_id: row.get(2)?,
            version: row.get(3)?,
            event_type: row.get(4)?,
            occurred_at: row.get(5)?,
            envelope: row.get(6)?,
            source: row.get(7)?,
            recorded_at: row.get(8)?,
        })
    }

    pub(crate) fn decode(self) -> Result<StoredEvent> {
        let envelope: CloudEvent = parse_json("envelope", &self.envelope)?;
        Ok(StoredEvent {
            event_id: self.event_id,
            entity_kind: parse_kind(&self.entity_kind)?,
            entity_id: self.entity_id,
            version: uint("version", self.version)?,
            event_type: self.event_type,
            occurred_at: parse_time("occurred_at", &self.occurred_at)?,
            envelope,
            source: self.source,
            recorded_at: parse_time("recorded_at", &self.recorded_at)?,
        })
    }
}

pub(crate) struct EntityRow {
    pub kind: String,
    pub id: String,
    pub version: i64,
    pub status: String,
    pub state: String,
    pub last_event_id: String,
    pub updated_at: String,
}

pub(crate) const ENTITY_COLUMNS: &str =
    "kind, id, version, status, state, last_event_id, updated_at";

impl EntityRow {
    pub(crate) fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            kind: row.get(0)?,
            id: row.get(1)?,
            version: row.get(2)?,
            status: row.get(3)?,
            state: row.get(4)?,
            last_event_id: row.get(5)?,
            updated_at: row.get(6)?,
        })
    }

    pub(crate) fn decode(self) -> Result<EntityRecord> {
        Ok(EntityRecord {
            kind: parse_kind(&self.kind)?,
            id: self.id,
            version: uint("version", self.version)?,
            status: self.status,
            state: parse_json("state", &self.state)?,
            last_event_id: self.last_event_id,
            updated_at: parse_time("updated_at", &self.updated_at)?,
        })
    }
}

pub(crate) struct OutboxReadRow {
    pub id: String,
    pub topic: String,
    pub key: String,
    pub event: String,
    pub event_id: String,
    pub created_at: String,
}

pub(crate) const OUTBOX_COLUMNS: &str = "id, topic, key, event, event_id, created_at";

impl OutboxReadRow {
    pub(crate) fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            topic: row.get(1)?,
            key: row.get(2)?,
            event: row.get(3)?,
            event_id: row.get(4)?,
            created_at: row.get(5)?,
        })
    }

    pub(crate) fn decode(self) -> Result<StoredOutboxMessage> {
        Ok(StoredOutboxMessage {
            message: OutboxMessage {
                id: self.id,
                topic: self.topic,
                key: self.key,
                event: parse_json("outbox event", &self.event)?,
            },
            event_id: self.event_id,
            created_at: parse_time("created_at", &self.created_at)?,
        })
    }
}

pub(crate) struct IdempotencyRow {
    pub key: String,
    pub fingerprint: String,
    pub topic: String,
    pub event: String,
    pub status: i64,
    pub response: String,
    pub published: bool,
    pub created_at: String,
}

pub(crate) const IDEMPOTENCY_COLUMNS: &str =
    "key, fingerprint, topic, event, status, response, published, created_at";

impl IdempotencyRow {
    pub(crate) fn encode(r: &IdempotencyRecord) -> Result<Self> {
        Ok(Self {
            key: r.key.clone(),
            fingerprint: r.fingerprint.clone(),
            topic: r.topic.clone(),
            event: json("idempotency event", &r.event)?,
            status: i64::from(r.status),
            response: json("response", &r.response)?,
            published: r.published,
            created_at: time(r.created_at),
        })
    }

    pub(crate) fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            key: row.get(0)?,
            fingerprint: row.get(1)?,
            topic: row.get(2)?,
            event: row.get(3)?,
            status: row.get(4)?,
            response: row.get(5)?,
            published: row.get(6)?,
            created_at: row.get(7)?,
        })
    }

    pub(crate) fn decode(self) -> Result<IdempotencyRecord> {
        Ok(IdempotencyRecord {
            key: self.key,
            fingerprint: self.fingerprint,
            topic: self.topic,
            event: parse_json("idempotency event", &self.event)?,
            status: u16::try_from(self.status)
                .map_err(|_| Failure::Corrupt(format!("status {} is not HTTP", self.status)))?,
            response: parse_json("response", &self.response)?,
            published: self.published,
            created_at: parse_time("created_at", &self.created_at)?,
        })
    }
}
