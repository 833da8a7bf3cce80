//! The log on disk: the schema of `bus.db` and the statements the writer and the readers run.
//! Synchronous rusqlite; callers run it on the writer thread or in `spawn_blocking`.

use enrollstream_ports::{BusError, CommitPosition, Header, InboundMessage, OutboundMessage};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::time::Duration;

use crate::sqlite::{self, Failure};

pub(super) const FILE: &str = "bus.db";

/// How long a connection waits for another one's lock (WAL recovery, a checkpoint) before the
/// statement fails as `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL CHECK (partitions > 0)
);
CREATE TABLE IF NOT EXISTS messages (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    key TEXT,
    headers TEXT NOT NULL,
    payload BLOB NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, partition, "offset")
);
CREATE TABLE IF NOT EXISTS group_offsets (
    "group" TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY ("group", topic, partition)
);
"#;

pub(super) fn unavailable(context: &str, e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(format!("{context}: {e}"))
}

/// The connection of the single writer: WAL so that readers never wait for it, and
/// `synchronous=FULL` so that a commit is on disk (the WAL fsync'ed) when it returns. Every
/// SQLite error here is `Unavailable`; a file that refuses WAL is `Fatal`.
pub(super) fn open_writer(path: &Path) -> Result<Connection, BusError> {
    let context = format!("cannot open bus log {}", path.display());
    let fail = |e: rusqlite::Error| unavailable(&context, e);
    let conn = sqlite::open_durable(path, BUSY_TIMEOUT).map_err(|f| match f {
        Failure::Sql(e) => fail(e),
        Failure::Corrupt(reason) => BusError::Fatal(format!("{context}: {reason}")),
        Failure::Paused(reason) => BusError::Unavailable(format!("{context}: {reason}")),
    })?;
    conn.execute_batch(SCHEMA).map_err(fail)?;
    Ok(conn)
}

/// A connection for one subscription's reads; it never writes.
pub(super) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// Creates `topic` with `partitions` unless it exists; returns its partition count either way.
pub(super) fn ensure_topic(
    conn: &Connection,
    topic: &str,
    partitions: i32,
) -> rusqlite::Result<i32> {
    conn.prepare_cached("INSERT OR IGNORE INTO topics (name, partitions) VALUES (?1, ?2)")?
        .execute(params![topic, partitions])?;
    conn.prepare_cached("SELECT partitions FROM topics WHERE name = ?1")?
        .query_row(params![topic], |row| row.get(0))
}

/// The offset the next message of a partition gets. Read inside the writer's transaction, so
/// offsets stay dense and unique even if another connection appended before.
pub(super) fn next_offset(conn: &Connection, topic: &str, partition: i32) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        r#"SELECT COALESCE(MAX("offset") + 1, 0) FROM messages WHERE topic = ?1 AND partition = ?2"#,
    )?
    .query_row(params![topic, partition], |row| row.get(0))
}

pub(super) fn append(
    conn: &Connection,
    topic: &str,
    partition: i32,
    offset: i64,
    message: &OutboundMessage,
    timestamp_ms: i64,
) -> rusqlite::Result<()> {
    let headers = serde_json::to_string(&message.headers)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.prepare_cached(
        r#"INSERT INTO messages (topic, partition, "offset", key, headers, payload, timestamp_ms)
           VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"#,
    )?
    .execute(params![
        topic,
        partition,
        offset,
        message.key,
        headers,
        message.payload,
        timestamp_ms
    ])?;
    Ok(())
}

/// Records a group's position; a position behind the stored one is ignored, so a late commit
/// (a member that lost the partition, a retry) never moves the group backwards.
pub(super) fn commit(
    conn: &Connection,
    group: &str,
    topic: &str,
    partition: i32,
    next_offset: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        r#"INSERT INTO group_offsets ("group", topic, partition, next_offset) VALUES (?1, ?2, ?3, ?4)
           ON CONFLICT ("group", topic, partition)
           DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)"#,
    )?
    .execute(params![group, topic, partition, next_offset])?;
    Ok(())
}

pub(super) fn committed(
    conn: &Connection,
    group: &str,
    topic: &str,
    partition: i32,
) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        r#"SELECT next_offset FROM group_offsets WHERE "group" = ?1 AND topic = ?2 AND partition = ?3"#,
    )?
    .query_row(params![group, topic, partition], |row| row.get(0))
    .optional()
}

/// Every position `group` committed on `topic`, by partition.
pub(super) fn committed_on(
    conn: &Connection,
    group: &str,
    topic: &str,
) -> rusqlite::Result<Vec<CommitPosition>> {
    let mut stmt = conn.prepare_cached(
        r#"SELECT partition, next_offset FROM group_offsets WHERE "group" = ?1 AND topic = ?2
           ORDER BY partition"#,
    )?;
    let rows = stmt.query_map(params![group, topic], |row| {
        Ok(CommitPosition {
            topic: topic.to_string(),
            partition: row.get(0)?,
            next_offset: row.get(1)?,
        })
    })?;
    rows.collect()
}

/// The next offset of every partition of `topic`, 0 for one that holds no message yet (as
/// Kafka reports it).
pub(super) fn end_offsets(conn: &Connection, topic: &str) -> rusqlite::Result<Vec<CommitPosition>> {
    let mut stmt = conn.prepare_cached(
        r#"WITH RECURSIVE parts(p) AS (
               SELECT 0 FROM topics WHERE name = ?1
               UNION ALL
               SELECT p + 1 FROM parts WHERE p + 1 < (SELECT partitions FROM topics WHERE name = ?1)
           ),
           ends(p, next) AS (
               SELECT partition, max("offset") + 1 FROM messages WHERE topic = ?1 GROUP BY partition
           )
           SELECT p, COALESCE(max(next), 0) FROM (
               SELECT p, NULL AS next FROM parts UNION ALL SELECT p, next FROM ends
           ) GROUP BY p ORDER BY p"#,
    )?;
    let rows = stmt.query_map(params![topic], |row| {
        Ok(CommitPosition {
            topic: topic.to_string(),
            partition: row.get(0)?,
            next_offset: row.get(1)?,
        })
    })?;
    rows.collect()
}

/// Up to `limit` messages of one partition from offset `from` on, in offset order.
pub(super) fn read(
    conn: &Connection,
    topic: &str,
    partition: i32,
    from: i64,
    limit: usize,
) -> rusqlite::Result<Vec<InboundMessage>> {
    let mut stmt = conn.prepare_cached(
        r#"SELECT "offset", key, headers, payload, timestamp_ms FROM messages
           WHERE topic = ?1 AND partition = ?2 AND "offset" >= ?3
           ORDER BY "offset" LIMIT ?4"#,
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![topic, partition, from, limit], |row| {
        let headers: String = row.get(2)?;
        let headers: Vec<Header> = serde_json::from_str(&headers).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
        })?;
        Ok(InboundMessage {
            topic: topic.to_string(),
            partition,
            offset: row.get(0)?,
            key: row.get(1)?,
            headers,
            payload: row.get(3)?,
            timestamp_ms: Some(row.get(4)?),
        })
    })?;
    rows.collect()
}
