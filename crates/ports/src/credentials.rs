//! The credential port: API keys, kept in the store so that every API process sees the same
//! keys. A key itself is never stored, only its SHA-256 (the key is 256 random bits, so a fast
//! hash is as strong as a slow one here and costs nothing per request).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::StoreError;

/// One API key as stored: its name (unique for ever, so that logs and audits keep meaning the
/// same key), the hex SHA-256 of the key, its scopes, and its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub name: String,
    pub hash: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// Recorded at most about once a minute per key and process; a hint for audits.
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyCreation {
    Created,
    /// A key of that name exists (or existed: names are never reused).
    NameTaken,
}

#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// Record a new key; names are unique over every key ever created.
    async fn create_api_key(&self, record: &ApiKeyRecord) -> Result<KeyCreation, StoreError>;

    /// The key whose hash is `hash`, revoked or not.
    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// Every key, revoked ones included, by name.
    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;

    /// Revoke the key `name`; false if no key of that name is active.
    async fn revoke_api_key(&self, name: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Record that the key was used at `at` (only ever moves forward).
    async fn touch_api_key(&self, name: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
}
