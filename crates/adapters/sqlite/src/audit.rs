//! The audit of redrives on SQLite, in its own file `audit.db` of the data directory: like
//! `credentials.db`, so that `enrollstream dlq audit` reads it beside a serving process (which
//! holds the data directory's lock), and a rebuild of the read model never touches it.

use async_trait::async_trait;
use enrollstream_ports::{AuditLog, RedriveAudit, RedriveStatus, StoreError};
use std::path::Path;

use crate::sqlite::{self, parse_json, parse_time, time, Result, SingleFile};

pub const FILE_NAME: &str = "audit.db";

/// Each entry migrates from version `index` to `index + 1`; append, never edit.
const MIGRATIONS: &[&str] = &[r#"
    CREATE TABLE redrives (
        id          TEXT PRIMARY KEY,
        at          TEXT NOT NULL,
        by_whom     TEXT NOT NULL,
        dry_run     INTEGER NOT NULL,
        selection   TEXT NOT NULL,
        status      TEXT NOT NULL,
        moved       INTEGER NOT NULL,
        skipped     INTEGER NOT NULL,
        finished_at TEXT,
        error       TEXT
    );
    CREATE INDEX redrives_by_time ON redrives (at DESC, id DESC);
"#];

pub struct SqliteAuditLog {
    file: SingleFile,
}

impl SqliteAuditLog {
    /// Open (or create) `data_dir/audit.db` and bring its schema up to date.
    pub fn open(data_dir: &Path) -> std::result::Result<Self, StoreError> {
        Ok(Self {
            file: SingleFile::open(data_dir, FILE_NAME, MIGRATIONS, "audit log")?,
        })
    }
}

type Row = (
    String,
    String,
    String,
    bool,
    String,
    String,
    i64,
    i64,
    Option<String>,
    Option<String>,
);

fn decode(
    (id, at, by, dry_run, selection, status, moved, skipped, finished, error): Row,
) -> Result<RedriveAudit> {
    Ok(RedriveAudit {
        id,
        at: parse_time("at", &at)?,
        by,
        dry_run,
        selection: parse_json("selection", &selection)?,
        status: RedriveStatus::parse(&status).ok_or_else(|| {
            sqlite::Failure::Corrupt(format!("redrives.status {status:?} is not a status"))
        })?,
        moved: moved.max(0) as u64,
        skipped: skipped.max(0) as u64,
        finished_at: finished
            .map(|t| parse_time("finished_at", &t))
            .transpose()?,
        error,
    })
}

#[async_trait]
impl AuditLog for SqliteAuditLog {
    async fn record_redrive(&self, record: &RedriveAudit) -> std::result::Result<(), StoreError> {
        let r = record.clone();
        self.file
            .with(move |conn| {
                conn.execute(
                    "INSERT INTO redrives
                   (id, at, by_whom, dry_run, selection, status, moved, skipped, finished_at, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (id) DO UPDATE SET
                   status = excluded.status, moved = excluded.moved, skipped = excluded.skipped,
                   finished_at = excluded.finished_at, error = excluded.error",
                    rusqlite::params![
                        r.id,
                        time(r.at),
                        r.by,
                        r.dry_run,
                        sqlite::json("selection", &r.selection)?,
                        r.status.as_str(),
                        r.moved as i64,
                        r.skipped as i64,
                        r.finished_at.map(time),
                        r.error,
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn redrives(&self, limit: usize) -> std::result::Result<Vec<RedriveAudit>, StoreError> {
        self.file.with(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, at, by_whom, dry_run, selection, status, moved, skipped, finished_at, error
                 FROM redrives ORDER BY at DESC, id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit.min(i64::MAX as usize) as i64], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                    row.get(6)?,
                    row.get(7)?,
                    row.get(8)?,
                    row.get(9)?,
                ))
            })?;
            rows.map(|row| decode(row?)).collect()
        })
        .await
    }
}
