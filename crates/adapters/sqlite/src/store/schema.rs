//! The schema of `store.db`, versioned by `PRAGMA user_version`.

use rusqlite::Connection;
use std::path::Path;

use crate::sqlite::{self, Result};

/// Each entry migrates from version `index` to `index + 1`; append, never edit.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE event_log (
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
    CREATE TABLE entities (
        kind          TEXT NOT NULL,
        id            TEXT NOT NULL,
        version       INTEGER NOT NULL,
        status        TEXT NOT NULL,
        state         TEXT NOT NULL,
        last_event_id TEXT NOT NULL,
        updated_at    TEXT NOT NULL,
        PRIMARY KEY (kind, id)
    );
    CREATE TABLE outbox (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        id           TEXT NOT NULL UNIQUE,
        topic        TEXT NOT NULL,
        key          TEXT NOT NULL,
        event        TEXT NOT NULL,
        event_id     TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        published_at TEXT
    );
    CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
    CREATE TABLE idempotency (
        key         TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        topic       TEXT NOT NULL,
        event       TEXT NOT NULL,
        status      INTEGER NOT NULL,
        response    TEXT NOT NULL,
        published   INTEGER NOT NULL,
        created_at  TEXT NOT NULL
    );
    CREATE INDEX idempotency_created_at ON idempotency (created_at);
"#,
    // The outbox became a queue: the relay deletes what it published. Published rows were only
    // history (the notification topics keep that), yet each mark rewrote a large row, and the
    // rows made store.db grow by about 2 KB per event.
    r#"
    DELETE FROM outbox WHERE published_at IS NOT NULL;
    DROP INDEX outbox_unpublished;
    ALTER TABLE outbox DROP COLUMN published_at;
"#,
    // Messages are kept as the bus will carry them (CloudEvents binary binding: headers, and the
    // data as payload), so the relay publishes them without parsing and re-encoding each one.
    // `event` (the CloudEvent as JSON) remains only for rows written before, which the relay
    // encodes when it meets them.
    r#"
    CREATE TABLE outbox_v3 (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        id           TEXT NOT NULL UNIQUE,
        topic        TEXT NOT NULL,
        key          TEXT NOT NULL,
        headers      TEXT,
        payload      BLOB,
        event        TEXT,
        event_id     TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        CHECK ((headers IS NOT NULL AND payload IS NOT NULL) OR event IS NOT NULL)
    );
    INSERT INTO outbox_v3 (seq, id, topic, key, event, event_id, created_at)
        SELECT seq, id, topic, key, event, event_id, created_at FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_v3 RENAME TO outbox;
"#,
    // Pages of applications by status or by broker (`Store::list_entities`, in id order). The
    // broker expression is exactly the one `listing` filters on, so SQLite uses this index.
    r#"
    CREATE INDEX entities_by_status ON entities (kind, status, id);
    CREATE INDEX entities_by_broker
        ON entities (kind, json_extract(state, '$.submission.broker.id'), id);
"#,
    // Outbox messages the bus will never take, kept with their reason instead of blocking the
    // relay; and named leases, the fence between a rebuild and live projectors.
    r#"
    CREATE TABLE outbox_parked (
        id         TEXT PRIMARY KEY,
        topic      TEXT NOT NULL,
        key        TEXT NOT NULL,
        headers    TEXT NOT NULL,
        payload    BLOB NOT NULL,
        event_id   TEXT NOT NULL,
        created_at TEXT NOT NULL,
        reason     TEXT NOT NULL,
        parked_at  TEXT NOT NULL
    );
    CREATE TABLE leases (
        name     TEXT PRIMARY KEY,
        owner    TEXT NOT NULL,
        until_ms INTEGER NOT NULL
    );
"#,
    // Generations of the read model (`generations`): the pointer row names the active one and
    // the build of the next, which records its applied offsets per partition to resume.
    r#"
    CREATE TABLE read_model (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        generation INTEGER NOT NULL,
        building   TEXT
    );
    INSERT INTO read_model (id, generation, building) VALUES (1, 1, NULL);
    CREATE TABLE shadow_progress (
        build_id    TEXT NOT NULL,
        topic       TEXT NOT NULL,
        partition   INTEGER NOT NULL,
        next_offset INTEGER NOT NULL,
        PRIMARY KEY (build_id, topic, partition)
    );
"#,
];

/// The one connection that writes (durable commits: the projector relies on them before it
/// commits its bus offsets), the schema brought up to date.
pub(crate) fn open_writer(path: &Path) -> Result<Connection> {
    sqlite::open_writer(path, MIGRATIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outbox_migration_keeps_only_unpublished_messages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        {
            let v1 = sqlite::open_writer(&path, &MIGRATIONS[..1]).unwrap();
            v1.execute_batch(
                "INSERT INTO outbox (id, topic, key, event, event_id, created_at, published_at)
                 VALUES ('sent', 't', 'k', '{}', 'e1', 'now', 'now'),
                        ('waiting', 't', 'k', '{}', 'e2', 'now', NULL);",
            )
            .unwrap();
        }
        let conn = open_writer(&path).unwrap();
        let ids: Vec<String> = conn
            .prepare("SELECT id FROM outbox ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(ids, ["waiting"]);
        let (event, headers): (Option<String>, Option<String>) = conn
            .query_row("SELECT event, headers FROM outbox", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(
            (event.as_deref(), headers),
            (Some("{}"), None),
            "a row from before keeps its event for the relay to encode"
        );
    }
}
