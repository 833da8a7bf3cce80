//! API keys on SQLite, in their own file `credentials.db` of the data directory.
//!
//! Its own file, like `reminders.db`: `enrollstream api-key create` runs beside a serving
//! process (which holds the data directory's lock for the bus and the read model), so it must
//! not need that lock; a key write never queues behind the projector; and rebuilding the read
//! model cannot touch credentials. Every write is one statement, atomic on its own.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use enrollstream_ports::{ApiKeyRecord, CredentialStore, KeyCreation, StoreError};
use rusqlite::OptionalExtension;
use std::path::Path;

use crate::sqlite::{self, parse_json, parse_time, time, Result, SingleFile};

pub const FILE_NAME: &str = "credentials.db";

/// Each entry migrates from version `index` to `index + 1`; append, never edit.
const MIGRATIONS: &[&str] = &[r#"
    CREATE TABLE api_keys (
        name         TEXT PRIMARY KEY,
        hash         TEXT NOT NULL UNIQUE,
        scopes       TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        last_used_at TEXT,
        revoked_at   TEXT
    );
"#];

const COLUMNS: &str = "name, hash, scopes, created_at, last_used_at, revoked_at";

pub struct SqliteCredentialStore {
    file: SingleFile,
}

impl SqliteCredentialStore {
    /// Open (or create) `data_dir/credentials.db` and bring its schema up to date.
    pub fn open(data_dir: &Path) -> std::result::Result<Self, StoreError> {
        Ok(Self {
            file: SingleFile::open(data_dir, FILE_NAME, MIGRATIONS, "credential store")?,
        })
    }
}

fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<[Option<String>; 6]> {
    Ok([
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ])
}

fn decode(
    [name, hash, scopes, created, used, revoked]: [Option<String>; 6],
) -> Result<ApiKeyRecord> {
    let optional_time = |column, v: Option<String>| v.map(|t| parse_time(column, &t)).transpose();
    Ok(ApiKeyRecord {
        name: name.unwrap_or_default(),
        hash: hash.unwrap_or_default(),
        scopes: parse_json("scopes", scopes.as_deref().unwrap_or("[]"))?,
        created_at: parse_time("created_at", created.as_deref().unwrap_or_default())?,
        last_used_at: optional_time("last_used_at", used)?,
        revoked_at: optional_time("revoked_at", revoked)?,
    })
}

#[async_trait]
impl CredentialStore for SqliteCredentialStore {
    async fn create_api_key(
        &self,
        record: &ApiKeyRecord,
    ) -> std::result::Result<KeyCreation, StoreError> {
        let r = record.clone();
        self.file
            .with(move |conn| {
                let inserted = conn.execute(
                    "INSERT INTO api_keys (name, hash, scopes, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
                    (
                        &r.name,
                        &r.hash,
                        sqlite::json("scopes", &r.scopes)?,
                        time(r.created_at),
                    ),
                )?;
                Ok(if inserted == 1 {
                    KeyCreation::Created
                } else {
                    KeyCreation::NameTaken
                })
            })
            .await
    }

    async fn api_key_by_hash(
        &self,
        hash: &str,
    ) -> std::result::Result<Option<ApiKeyRecord>, StoreError> {
        let hash = hash.to_string();
        self.file
            .with(move |conn| {
                conn.prepare_cached(&format!("SELECT {COLUMNS} FROM api_keys WHERE hash = ?1"))?
                    .query_row([hash], read)
                    .optional()?
                    .map(decode)
                    .transpose()
            })
            .await
    }

    async fn api_keys(&self) -> std::result::Result<Vec<ApiKeyRecord>, StoreError> {
        self.file
            .with(|conn| {
                let mut stmt =
                    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM api_keys ORDER BY name"))?;
                let rows = stmt.query_map([], read)?;
                rows.map(|row| decode(row?)).collect()
            })
            .await
    }

    async fn revoke_api_key(
        &self,
        name: &str,
        at: DateTime<Utc>,
    ) -> std::result::Result<bool, StoreError> {
        let name = name.to_string();
        self.file
            .with(move |conn| {
                let revoked = conn.execute(
                    "UPDATE api_keys SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                    (name, time(at)),
                )?;
                Ok(revoked == 1)
            })
            .await
    }

    async fn touch_api_key(
        &self,
        name: &str,
        at: DateTime<Utc>,
    ) -> std::result::Result<(), StoreError> {
        let name = name.to_string();
        // Fixed-width times compare as text; a late touch never moves the time back.
        self.file
            .with(move |conn| {
                conn.execute(
                    "UPDATE api_keys SET last_used_at = ?2
                 WHERE name = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
                    (name, time(at)),
                )?;
                Ok(())
            })
            .await
    }
}
