//! Generations of the read model on SQLite: the active one in `event_log` and `entities`, the
//! one a rebuild is writing in `event_log_next` and `entities_next`, and the pointer row
//! `read_model` (the active generation's number, the build in progress).
//!
//! The switch is one write transaction: it checks the switch lease and that the next
//! generation holds every event of the active one, renames the tables and moves the pointer.
//! SQLite's DDL is transactional, so every apply and every read (each a transaction of its
//! own, on any connection of any process) sees the generation before or the one after, whole;
//! prepared statements name the tables and are prepared again by SQLite on the schema change.
//! Renaming instead of pointing at numbered tables keeps every query of the active
//! generation as it was, with no pointer read on the read path.

use chrono::{DateTime, Utc};
use enrollstream_domain::ids::new_id;
use enrollstream_ports::{CommitPosition, ShadowBuild, SWITCH_LEASE};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::sqlite::{immediate, Failure, Result};

/// Which tables a store handle reads and applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tables {
    pub event_log: &'static str,
    pub entities: &'static str,
    /// The active generation: applies check the switch lease and record outbox messages.
    pub active: bool,
}

pub(crate) const ACTIVE: Tables = Tables {
    event_log: "event_log",
    entities: "entities",
    active: true,
};

pub(crate) const NEXT: Tables = Tables {
    event_log: "event_log_next",
    entities: "entities_next",
    active: false,
};

const RETIRED: [&str; 2] = ["event_log_retired", "entities_retired"];

/// The next generation's tables, as the active ones are after every migration (indexes named
/// by generation: index names are global in SQLite, and a renamed table keeps its indexes).
/// Written again rather than derived from the migrations, which are history and never edited;
/// the test below keeps the two equal.
fn create_next(tx: &Transaction<'_>, generation: u64) -> Result<()> {
    tx.execute_batch(&format!(
        r#"
        CREATE TABLE event_log_next (
            event_id    TEXT PRIMARY KEY,
            entity_kind TEXT NOT NULL,
            entity_id   TEXT NOT NULL,
            version     INTEGER NOT NULL,
            event_type  TEXT NOT NULL,
            occurred_at TEXT NOT NULL,
            envelope    TEXT NOT NULL,
            source      TEXT,
            recorded_at TEXT NOT NULL,
            UNIQUE (entity_kind, entity_id, version)
        );
        CREATE TABLE entities_next (
            kind          TEXT NOT NULL,
            id            TEXT NOT NULL,
            version       INTEGER NOT NULL,
            status        TEXT NOT NULL,
            state         TEXT NOT NULL,
            last_event_id TEXT NOT NULL,
            updated_at    TEXT NOT NULL,
            PRIMARY KEY (kind, id)
        );
        CREATE INDEX entities_by_status_g{generation} ON entities_next (kind, status, id);
        CREATE INDEX entities_by_broker_g{generation}
            ON entities_next (kind, json_extract(state, '$.submission.broker.id'), id);
        "#
    ))?;
    Ok(())
}

fn drop_next(tx: &Transaction<'_>) -> Result<()> {
    tx.execute_batch("DROP TABLE IF EXISTS event_log_next; DROP TABLE IF EXISTS entities_next;")?;
    Ok(())
}

/// Inside an apply to the active generation: refused while a rebuild holds the switch lease
/// (on the wall clock, which the lease's holder also uses: the binary's clock is the system's).
pub(crate) fn refuse_while_switching(tx: &Transaction<'_>) -> Result<()> {
    let holder: Option<String> = tx
        .prepare_cached("SELECT owner FROM leases WHERE name = ?1 AND until_ms > ?2")?
        .query_row(params![SWITCH_LEASE, Utc::now().timestamp_millis()], |r| {
            r.get(0)
        })
        .optional()?;
    match holder {
        Some(owner) => Err(Failure::Paused(format!(
            "the read model is paused while {owner} switches it to a rebuilt generation; applying waits"
        ))),
        None => Ok(()),
    }
}

fn pointer(conn: &Connection) -> Result<(u64, Option<String>)> {
    let (generation, building): (i64, Option<String>) = conn.query_row(
        "SELECT generation, building FROM read_model WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((generation.max(1) as u64, building))
}

pub(crate) fn active_generation(conn: &Connection) -> Result<u64> {
    Ok(pointer(conn)?.0)
}

pub(crate) fn open_shadow(conn: &mut Connection, fresh: bool) -> Result<ShadowBuild> {
    let tx = immediate(conn)?;
    let (generation, building) = pointer(&tx)?;
    let next = generation + 1;
    if let (Some(build_id), false) = (building.clone(), fresh) {
        let applied = progress(&tx, &build_id)?;
        tx.commit()?;
        return Ok(ShadowBuild {
            generation: next,
            build_id,
            applied,
        });
    }
    if let Some(old) = building {
        tx.execute("DELETE FROM shadow_progress WHERE build_id = ?1", [old])?;
    }
    drop_next(&tx)?;
    create_next(&tx, next)?;
    let build_id = new_id();
    tx.execute(
        "UPDATE read_model SET building = ?1 WHERE id = 1",
        [&build_id],
    )?;
    tx.commit()?;
    Ok(ShadowBuild {
        generation: next,
        build_id,
        applied: Vec::new(),
    })
}

fn progress(conn: &Connection, build_id: &str) -> Result<Vec<CommitPosition>> {
    let mut stmt = conn.prepare(
        "SELECT topic, partition, next_offset FROM shadow_progress WHERE build_id = ?1 \
         ORDER BY topic, partition",
    )?;
    let rows = stmt.query_map([build_id], |r| {
        Ok(CommitPosition {
            topic: r.get(0)?,
            partition: r.get(1)?,
            next_offset: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn current_build(conn: &Connection, build_id: &str) -> Result<()> {
    match pointer(conn)?.1 {
        Some(open) if open == build_id => Ok(()),
        open => Err(Failure::Corrupt(format!(
            "build {build_id} is not the build in progress ({open:?}): another rebuild replaced it"
        ))),
    }
}

pub(crate) fn record_progress(
    conn: &mut Connection,
    build_id: &str,
    positions: &[CommitPosition],
) -> Result<()> {
    let tx = immediate(conn)?;
    current_build(&tx, build_id)?;
    {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO shadow_progress (build_id, topic, partition, next_offset) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (build_id, topic, partition) \
             DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)",
        )?;
        for p in positions {
            upsert.execute(params![build_id, p.topic, p.partition, p.next_offset])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Events of the active generation the next one lacks, by their source.
pub(crate) fn missing(conn: &Connection, limit: usize) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT coalesce(source, 'event ' || event_id) FROM event_log AS a \
         WHERE NOT EXISTS (SELECT 1 FROM event_log_next AS n WHERE n.event_id = a.event_id) \
         LIMIT ?1",
    )?;
    let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Why a switch was refused (nothing changed).
pub(crate) enum Refusal {
    Missing(Vec<String>),
    NotPaused,
}

/// Events listed when a switch is refused for missing ones.
const MISSING_PAGE: usize = 100;

pub(crate) fn switch(
    conn: &mut Connection,
    build_id: &str,
    owner: &str,
    held_past: DateTime<Utc>,
) -> Result<std::result::Result<u64, Refusal>> {
    let tx = immediate(conn)?;
    current_build(&tx, build_id)?;
    let paused = tx
        .prepare("SELECT 1 FROM leases WHERE name = ?1 AND owner = ?2 AND until_ms > ?3")?
        .exists(params![SWITCH_LEASE, owner, held_past.timestamp_millis()])?;
    if !paused {
        return Ok(Err(Refusal::NotPaused));
    }
    let missing = missing(&tx, MISSING_PAGE)?;
    if !missing.is_empty() {
        return Ok(Err(Refusal::Missing(missing)));
    }
    let (generation, _) = pointer(&tx)?;
    tx.execute_batch(
        "DROP TABLE IF EXISTS event_log_retired;
         DROP TABLE IF EXISTS entities_retired;
         ALTER TABLE event_log RENAME TO event_log_retired;
         ALTER TABLE entities RENAME TO entities_retired;
         ALTER TABLE event_log_next RENAME TO event_log;
         ALTER TABLE entities_next RENAME TO entities;",
    )?;
    tx.execute(
        "UPDATE read_model SET generation = ?1, building = NULL WHERE id = 1",
        [generation as i64 + 1],
    )?;
    tx.execute(
        "DELETE FROM shadow_progress WHERE build_id = ?1",
        [build_id],
    )?;
    tx.execute(
        "DELETE FROM leases WHERE name = ?1 AND owner = ?2",
        [SWITCH_LEASE, owner],
    )?;
    tx.commit()?;
    Ok(Ok(generation + 1))
}

pub(crate) fn drop_retired(conn: &mut Connection) -> Result<()> {
    let tx = immediate(conn)?;
    for table in RETIRED {
        tx.execute_batch(&format!("DROP TABLE IF EXISTS {table};"))?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(conn: &Connection, table: &str) -> (Vec<String>, Vec<String>) {
        let columns = conn
            .prepare(&format!(
                "SELECT name, type, \"notnull\", pk FROM pragma_table_info('{table}')"
            ))
            .unwrap()
            .query_map([], |r| {
                Ok(format!(
                    "{} {} {} {}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?
                ))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let mut indexes: Vec<String> = conn
            .prepare(&format!(
                "SELECT l.\"unique\", group_concat(coalesce(i.name, 'expr'), ',') \
                 FROM pragma_index_list('{table}') AS l, pragma_index_xinfo(l.name) AS i \
                 WHERE i.key GROUP BY l.name"
            ))
            .unwrap()
            .query_map([], |r| {
                Ok(format!(
                    "{} {}",
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?
                ))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        indexes.sort();
        (columns, indexes)
    }

    #[test]
    fn the_next_generation_has_the_active_generations_shape() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = super::super::schema::open_writer(&dir.path().join("store.db")).unwrap();
        open_shadow(&mut conn, false).unwrap();
        for (active, next) in [
            (ACTIVE.event_log, NEXT.event_log),
            (ACTIVE.entities, NEXT.entities),
        ] {
            assert_eq!(
                shape(&conn, active),
                shape(&conn, next),
                "{next} is shaped as {active}"
            );
        }
    }
}
