//! Everything that writes `store.db`, each function one transaction on the writer connection.

use enrollstream_ports::{ApplyOutcome, Reservation};
use rusqlite::{params, Connection, OptionalExtension};

use super::generations::{self, Tables};
use super::rows::{ChangeRow, IdempotencyRow, IDEMPOTENCY_COLUMNS};
use crate::sqlite::{immediate, Result};

/// What a batch did, for the outcomes and for waking waiters after the commit.
pub(crate) struct Applied {
    pub outcomes: Vec<ApplyOutcome>,
    pub new_outbox: bool,
}

/// The whole batch is one transaction: one fsync for many events (group commit). Each change
/// is decided before anything of it is written (already applied, version conflict), so a change
/// that is refused leaves no trace and never stops the next one. An SQL error aborts the whole
/// batch (the transaction rolls back on drop), and the caller retries it: every change in it is
/// fenced by its event id.
///
/// On the active generation the switch lease is read inside the same transaction, so no apply
/// lands once a rebuild has paused the read model to switch it. A generation being built
/// records no outbox message: what it holds was announced already, or is a replay.
pub(crate) fn apply(
    conn: &mut Connection,
    tables: Tables,
    changes: &[ChangeRow],
) -> Result<Applied> {
    let tx = immediate(conn)?;
    if tables.active {
        generations::refuse_while_switching(&tx)?;
    }
    let mut applied = Applied {
        outcomes: Vec::with_capacity(changes.len()),
        new_outbox: false,
    };
    {
        let (log_table, entity_table) = (tables.event_log, tables.entities);
        let mut seen =
            tx.prepare_cached(&format!("SELECT 1 FROM {log_table} WHERE event_id = ?1"))?;
        let mut version = tx.prepare_cached(&format!(
            "SELECT version FROM {entity_table} WHERE kind = ?1 AND id = ?2"
        ))?;
        let mut log = tx.prepare_cached(&format!(
            "INSERT INTO {log_table} (event_id, entity_kind, entity_id, version, event_type, \
             occurred_at, envelope, source, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ))?;
        let mut entity = tx.prepare_cached(&format!(
            "INSERT INTO {entity_table} (kind, id, version, status, state, last_event_id, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (kind, id) DO UPDATE SET version = excluded.version, \
             status = excluded.status, state = excluded.state, \
             last_event_id = excluded.last_event_id, updated_at = excluded.updated_at"
        ))?;
        let mut outbox = tx.prepare_cached(
            "INSERT OR IGNORE INTO outbox (id, topic, key, headers, payload, event_id, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for c in changes {
            if seen.exists([&c.event_id])? {
                applied.outcomes.push(ApplyOutcome::AlreadyApplied);
                continue;
            }
            let current: i64 = version
                .query_row([c.entity_kind, c.entity_id.as_str()], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            if current != c.expected_version {
                // Never negative: versions are written from u64 values only.
                applied.outcomes.push(ApplyOutcome::Conflict {
                    current_version: current as u64,
                });
                continue;
            }
            log.execute(params![
                c.event_id,
                c.entity_kind,
                c.entity_id,
                c.version,
                c.event_type,
                c.occurred_at,
                c.envelope,
                c.source,
                c.recorded_at,
            ])?;
            entity.execute(params![
                c.entity_kind,
                c.entity_id,
                c.version,
                c.status,
                c.state,
                c.event_id,
                c.recorded_at,
            ])?;
            // A replayed event's messages were published when it was first projected: a rebuild
            // leaves them out, so it never fires them again.
            let outbox_messages = if c.replay || !tables.active {
                &[][..]
            } else {
                &c.outbox[..]
            };
            for m in outbox_messages {
                let inserted = outbox.execute(params![
                    m.id,
                    m.topic,
                    m.key,
                    m.headers,
                    m.payload,
                    c.event_id,
                    c.recorded_at,
                ])?;
                applied.new_outbox |= inserted > 0;
            }
            applied.outcomes.push(ApplyOutcome::Applied);
        }
    }
    tx.commit()?;
    Ok(applied)
}

/// Published messages leave the outbox: it is a queue, the notification topics are the history.
pub(crate) fn mark_published(conn: &mut Connection, ids: &[String]) -> Result<()> {
    let tx = immediate(conn)?;
    {
        let mut mark = tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
        for id in ids {
            mark.execute([id])?;
        }
    }
    tx.commit()?;
    Ok(())
}

pub(crate) fn reset_read_model(conn: &mut Connection) -> Result<()> {
    let tx = immediate(conn)?;
    tx.execute_batch("DELETE FROM event_log; DELETE FROM entities; DELETE FROM outbox;")?;
    tx.commit()?;
    Ok(())
}

/// `expired_before`: records created before it count as absent (they are past their 24 h) and
/// are replaced.
pub(crate) fn reserve_idempotency(
    conn: &mut Connection,
    record: &IdempotencyRow,
    expired_before: &str,
) -> Result<Option<IdempotencyRow>> {
    let tx = immediate(conn)?;
    tx.execute(
        "DELETE FROM idempotency WHERE key = ?1 AND created_at < ?2",
        params![record.key, expired_before],
    )?;
    let inserted = tx.execute(
        &format!(
            "INSERT INTO idempotency ({IDEMPOTENCY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (key) DO NOTHING"
        ),
        params![
            record.key,
            record.fingerprint,
            record.topic,
            record.event,
            record.status,
            record.response,
            record.published,
            record.created_at,
        ],
    )?;
    let existing = if inserted == 1 {
        None
    } else {
        Some(tx.query_row(
            &format!("SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency WHERE key = ?1"),
            [&record.key],
            IdempotencyRow::read,
        )?)
    };
    tx.commit()?;
    Ok(existing)
}

/// Turn the stored row of a reservation attempt into the port's answer.
pub(crate) fn reservation(
    fingerprint: &str,
    existing: Option<IdempotencyRow>,
) -> Result<Reservation> {
    Ok(match existing {
        None => Reservation::Reserved,
        Some(row) if row.fingerprint == fingerprint => {
            Reservation::Existing(Box::new(row.decode()?))
        }
        Some(_) => Reservation::Mismatch,
    })
}

pub(crate) fn mark_idempotency_published(conn: &Connection, key: &str) -> Result<()> {
    conn.execute("UPDATE idempotency SET published = 1 WHERE key = ?1", [key])?;
    Ok(())
}

/// The newest reservation's time: the store has no clock of its own, so expiry is measured
/// on the callers' clock (a test's manual clock included).
pub(crate) fn newest_idempotency(conn: &Connection) -> Result<Option<String>> {
    Ok(conn.query_row("SELECT max(created_at) FROM idempotency", [], |r| r.get(0))?)
}

pub(crate) fn purge_idempotency(conn: &Connection, expired_before: &str) -> Result<usize> {
    Ok(conn.execute(
        "DELETE FROM idempotency WHERE created_at < ?1",
        [expired_before],
    )?)
}
