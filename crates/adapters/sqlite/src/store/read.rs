//! Queries of the read model, run on the read connections.

use enrollstream_domain::EntityKind;
use enrollstream_ports::{EntityRecord, StoredEvent, StoredOutboxMessage};
use rusqlite::{params_from_iter, Connection, OptionalExtension};
use std::collections::HashSet;

use super::generations::Tables;
use super::rows::{
    int, EntityRow, EventRow, OutboxReadRow, ENTITY_COLUMNS, EVENT_COLUMNS, OUTBOX_COLUMNS,
};
use crate::sqlite::Result;

/// Ids per `IN (...)` query, well under SQLite's bound-parameter limit.
const IDS_PER_QUERY: usize = 500;

pub(crate) fn applied(
    conn: &Connection,
    tables: Tables,
    event_ids: &[String],
) -> Result<HashSet<String>> {
    let mut found = HashSet::new();
    for chunk in event_ids.chunks(IDS_PER_QUERY) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let mut stmt = conn.prepare(&format!(
            "SELECT event_id FROM {} WHERE event_id IN ({marks})",
            tables.event_log
        ))?;
        let rows = stmt.query_map(params_from_iter(chunk), |r| r.get::<_, String>(0))?;
        for id in rows {
            found.insert(id?);
        }
    }
    Ok(found)
}

pub(crate) fn is_applied(conn: &Connection, tables: Tables, event_id: &str) -> Result<bool> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT 1 FROM {} WHERE event_id = ?1",
        tables.event_log
    ))?;
    Ok(stmt.exists([event_id])?)
}

pub(crate) fn entity(
    conn: &Connection,
    tables: Tables,
    kind: EntityKind,
    id: &str,
) -> Result<Option<EntityRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ENTITY_COLUMNS} FROM {} WHERE kind = ?1 AND id = ?2",
        tables.entities
    ))?;
    stmt.query_row([kind.as_str(), id], EntityRow::read)
        .optional()?
        .map(EntityRow::decode)
        .transpose()
}

/// Every existing entity among `keys`, on one connection with one cached statement.
pub(crate) fn entities(
    conn: &Connection,
    tables: Tables,
    keys: &[(EntityKind, String)],
) -> Result<Vec<EntityRecord>> {
    let mut found = Vec::with_capacity(keys.len());
    for (kind, id) in keys {
        if let Some(record) = entity(conn, tables, *kind, id)? {
            found.push(record);
        }
    }
    Ok(found)
}

pub(crate) fn event_log(
    conn: &Connection,
    tables: Tables,
    kind: EntityKind,
    id: &str,
) -> Result<Vec<StoredEvent>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM {} WHERE entity_kind = ?1 AND entity_id = ?2 \
         ORDER BY version",
        tables.event_log
    ))?;
    let rows = stmt.query_map([kind.as_str(), id], EventRow::read)?;
    rows.map(|row| row?.decode()).collect()
}

/// Creation order (`seq`) is also per-entity order, since an entity's changes commit in order.
pub(crate) fn pending_outbox(conn: &Connection, limit: usize) -> Result<Vec<StoredOutboxMessage>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY seq LIMIT ?1"
    ))?;
    let rows = stmt.query_map([int("limit", limit as u64)?], OutboxReadRow::read)?;
    rows.map(|row| row?.decode()).collect()
}

pub(crate) fn outbox_backlog(conn: &Connection) -> Result<u64> {
    let n: i64 = conn.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?;
    // count(*) is never negative.
    Ok(n as u64)
}
