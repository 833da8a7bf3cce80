//! Rows of `reminders` and back, reads, and how SQLite failures become `StoreError`s.

use chrono::{DateTime, SecondsFormat, Utc};
use enrollstream_domain::reminder::Reminder;
use enrollstream_ports::StoreError;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};

#[derive(Debug)]
pub(super) enum Failure {
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

/// Lock contention past the busy timeout and I/O trouble pass; the rest is a bug or a broken
/// file.
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

pub(super) type Result<T> = std::result::Result<T, Failure>;

/// RFC 3339 with nanoseconds and `Z`: fixed width, so text order is time order.
pub(super) fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

pub(super) fn parse_time(column: &str, text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Failure::Corrupt(format!("reminders.{column} {text:?}: {e}")))
}

/// One row: the domain state plus the lease the store keeps beside it.
pub(super) struct Row {
    pub reminder: Reminder,
    pub lease_owner: Option<String>,
}

pub(super) fn decode(state: &str) -> Result<Reminder> {
    serde_json::from_str(state)
        .map_err(|e| Failure::Corrupt(format!("reminders.state is unreadable: {e}")))
}

pub(super) fn encode(reminder: &Reminder) -> Result<String> {
    serde_json::to_string(reminder)
        .map_err(|e| Failure::Corrupt(format!("reminder does not serialise: {e}")))
}

pub(super) fn load(conn: &Connection, application_id: &str) -> Result<Option<Row>> {
    let found: Option<(String, Option<String>)> = conn
        .query_row(
            "SELECT state, lease_owner FROM reminders WHERE application_id = ?1",
            params![application_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    found
        .map(|(state, lease_owner)| {
            Ok(Row {
                reminder: decode(&state)?,
                lease_owner,
            })
        })
        .transpose()
}

pub(super) fn due_backlog(conn: &Connection, now: DateTime<Utc>) -> Result<u64> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM reminders WHERE next_due_at IS NOT NULL AND next_due_at <= ?1",
        params![time(now)],
        |r| r.get(0),
    )?;
    Ok(n as u64)
}

pub(super) fn next_wake(conn: &Connection) -> Result<Option<DateTime<Utc>>> {
    let wake: Option<String> = conn.query_row(
        "SELECT MIN(CASE WHEN lease_until > next_due_at THEN lease_until ELSE next_due_at END)
         FROM reminders WHERE next_due_at IS NOT NULL",
        [],
        |r| r.get(0),
    )?;
    wake.map(|t| parse_time("next_due_at", &t)).transpose()
}
