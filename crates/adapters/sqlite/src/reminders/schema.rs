//! The schema of `reminders.db`, versioned by `PRAGMA user_version`.

use rusqlite::Connection;
use std::path::Path;

use crate::sqlite::{self, Result};

/// Each entry migrates from version `index` to `index + 1`; append, never edit.
///
/// `next_due_at` and `lease_until` are fixed-width RFC 3339 texts, so text order is time order
/// and the claim's comparisons run on the index.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE reminders (
        application_id TEXT PRIMARY KEY,
        status         TEXT NOT NULL,
        next_due_at    TEXT,
        lease_owner    TEXT,
        lease_until    TEXT,
        state          TEXT NOT NULL,
        updated_at     TEXT NOT NULL
    );
    CREATE INDEX reminders_due ON reminders (next_due_at) WHERE next_due_at IS NOT NULL;
"#,
    // The schedule's listing by status, in application id order.
    r#"
    CREATE INDEX reminders_status ON reminders (status, application_id);
"#,
];

/// The connection that writes, the schema brought up to date. Durable commits: a recorded
/// attempt survives a power loss, otherwise a restart could send that attempt again.
pub(super) fn open_writer(path: &Path) -> Result<Connection> {
    sqlite::open_writer(path, MIGRATIONS)
}
