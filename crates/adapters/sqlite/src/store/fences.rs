//! Parked outbox messages and named leases: small tables beside the read model, each write one
//! statement (so atomic and fenced on its own).

use chrono::{DateTime, Utc};
use enrollstream_ports::{Lease, OutboundMessage, StoredOutboxMessage};
use rusqlite::{params, Connection};

use crate::sqlite::{json, parse_json, parse_time, time, Result};

pub(crate) fn park(
    conn: &Connection,
    m: &StoredOutboxMessage,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    let headers = json("parked headers", &m.message.headers)?;
    conn.execute(
        "INSERT OR IGNORE INTO outbox_parked \
         (id, topic, key, headers, payload, event_id, created_at, reason, parked_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            m.id,
            m.topic,
            m.message.key,
            headers,
            m.message.payload,
            m.event_id,
            time(m.created_at),
            reason,
            time(at)
        ],
    )?;
    Ok(())
}

pub(crate) fn parked(
    conn: &Connection,
    limit: usize,
) -> Result<Vec<(StoredOutboxMessage, String)>> {
    let mut stmt = conn.prepare(
        "SELECT id, topic, key, headers, payload, event_id, created_at, reason \
         FROM outbox_parked ORDER BY parked_at, id LIMIT ?1",
    )?;
    let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, Vec<u8>>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, String>(6)?,
            r.get::<_, String>(7)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, topic, key, headers, payload, event_id, created_at, reason) = row?;
        out.push((
            StoredOutboxMessage {
                id,
                topic,
                message: OutboundMessage {
                    key,
                    headers: parse_json("parked headers", &headers)?,
                    payload,
                },
                event_id,
                created_at: parse_time("created_at", &created_at)?,
            },
            reason,
        ));
    }
    Ok(out)
}

/// One upsert: taken when free, expired, or already ours; else the holder is read back.
pub(crate) fn take_lease(
    conn: &Connection,
    name: &str,
    owner: &str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<Lease>> {
    let changed = conn.execute(
        "INSERT INTO leases (name, owner, until_ms) VALUES (?1, ?2, ?3) \
         ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms \
         WHERE leases.owner = excluded.owner OR leases.until_ms <= ?4",
        params![
            name,
            owner,
            until.timestamp_millis(),
            now.timestamp_millis()
        ],
    )?;
    if changed > 0 {
        return Ok(None);
    }
    let holder = conn.query_row(
        "SELECT name, owner, until_ms FROM leases WHERE name = ?1",
        [name],
        lease,
    )?;
    Ok(Some(holder))
}

pub(crate) fn release_lease(conn: &Connection, name: &str, owner: &str) -> Result<()> {
    conn.execute(
        "DELETE FROM leases WHERE name = ?1 AND owner = ?2",
        [name, owner],
    )?;
    Ok(())
}

pub(crate) fn leases(conn: &Connection, prefix: &str, now: DateTime<Utc>) -> Result<Vec<Lease>> {
    let mut stmt = conn.prepare(
        "SELECT name, owner, until_ms FROM leases \
         WHERE substr(name, 1, length(?1)) = ?1 AND until_ms > ?2 ORDER BY name",
    )?;
    let rows = stmt.query_map(params![prefix, now.timestamp_millis()], lease)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn lease(r: &rusqlite::Row<'_>) -> rusqlite::Result<Lease> {
    let until: i64 = r.get(2)?;
    Ok(Lease {
        name: r.get(0)?,
        owner: r.get(1)?,
        until: DateTime::from_timestamp_millis(until).unwrap_or(DateTime::<Utc>::MAX_UTC),
    })
}
