//! `MongoCredentialStore`: API keys on MongoDB, collection `api_keys`, so every API process
//! sees the same keys. `_id` is the key's name (names are unique for ever), `hash` has a
//! unique index (the lookup of every request). Every write is one single-document operation.
//! Times are fixed-width RFC 3339 strings with nanoseconds: they read back exactly, and text
//! order is time order (the `last_used_at` update compares them).

use std::future::Future;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use enrollstream_ports::{ApiKeyRecord, CredentialStore, KeyCreation, StoreError};
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::{CollectionOptions, IndexOptions, ReadConcern};
use mongodb::{Collection, Database, IndexModel};

use crate::db::write_concern;
use crate::error::{classify, is_duplicate_key};
use crate::MongoSettings;

pub const COLLECTION: &str = "api_keys";

pub struct MongoCredentialStore {
    keys: Collection<Document>,
    settings: MongoSettings,
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn bad(field: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Fatal(format!("api_keys document: {field} {reason}"))
}

fn text<'a>(d: &'a Document, field: &str) -> Result<Option<&'a str>, StoreError> {
    match d.get(field) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::String(s)) => Ok(Some(s)),
        Some(other) => Err(bad(field, format!("is not a string: {other}"))),
    }
}

fn required<'a>(d: &'a Document, field: &str) -> Result<&'a str, StoreError> {
    text(d, field)?.ok_or_else(|| bad(field, "is missing"))
}

fn parse_time(field: &str, s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| bad(field, e))
}

fn decode(d: &Document) -> Result<ApiKeyRecord, StoreError> {
    let optional = |field| text(d, field)?.map(|s| parse_time(field, s)).transpose();
    let scopes = d
        .get_array("scopes")
        .map_err(|e| bad("scopes", e))?
        .iter()
        .map(|s| {
            s.as_str()
                .map(str::to_string)
                .ok_or_else(|| bad("scopes", "holds a non-string"))
        })
        .collect::<Result<_, _>>()?;
    Ok(ApiKeyRecord {
        name: required(d, "_id")?.to_string(),
        hash: required(d, "hash")?.to_string(),
        scopes,
        created_at: parse_time("created_at", required(d, "created_at")?)?,
        last_used_at: optional("last_used_at")?,
        revoked_at: optional("revoked_at")?,
    })
}

impl MongoCredentialStore {
    /// Connects with its own client (the `api-key` commands need nothing else) and creates the
    /// index (idempotent).
    pub async fn connect_with(
        uri: &str,
        database: &str,
        settings: MongoSettings,
    ) -> Result<Self, StoreError> {
        let database = crate::store::client(uri, &settings, None)
            .await?
            .database(database);
        Self::on(database, settings).await
    }

    /// On a database whose client is already open (see [`crate::MongoStore::credential_store`]).
    pub(crate) async fn on(
        database: Database,
        settings: MongoSettings,
    ) -> Result<Self, StoreError> {
        let options = CollectionOptions::builder()
            .write_concern(write_concern())
            // A revocation acknowledged by a majority is seen by every API process.
            .read_concern(ReadConcern::majority())
            .build();
        let store = Self {
            keys: database.collection_with_options(COLLECTION, options),
            settings,
        };
        let index = IndexModel::builder()
            .keys(doc! { "hash": 1 })
            .options(
                IndexOptions::builder()
                    .name("hash".to_string())
                    .unique(true)
                    .build(),
            )
            .build();
        store
            .bounded(async { store.keys.create_index(index).await.map_err(classify) })
            .await?;
        Ok(store)
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let limit = self.settings.operation_timeout;
        tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "MongoDB did not answer within {limit:?}"
            )))
        })
    }
}

#[async_trait]
impl CredentialStore for MongoCredentialStore {
    async fn create_api_key(&self, record: &ApiKeyRecord) -> Result<KeyCreation, StoreError> {
        let document = doc! {
            "_id": &record.name,
            "hash": &record.hash,
            "scopes": &record.scopes,
            "created_at": time(record.created_at),
            "last_used_at": Bson::Null,
            "revoked_at": Bson::Null,
        };
        self.bounded(async {
            match self.keys.insert_one(document).await {
                Ok(_) => Ok(KeyCreation::Created),
                // On `_id` (the name) or on `hash` (a 256-bit collision: never in practice).
                Err(e) if is_duplicate_key(&e) => Ok(KeyCreation::NameTaken),
                Err(e) => Err(classify(e)),
            }
        })
        .await
    }

    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.bounded(async {
            let found = self
                .keys
                .find_one(doc! { "hash": hash })
                .await
                .map_err(classify)?;
            found.as_ref().map(decode).transpose()
        })
        .await
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.bounded(async {
            let all: Vec<Document> = self
                .keys
                .find(doc! {})
                .sort(doc! { "_id": 1 })
                .await
                .map_err(classify)?
                .try_collect()
                .await
                .map_err(classify)?;
            all.iter().map(decode).collect()
        })
        .await
    }

    async fn revoke_api_key(&self, name: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.bounded(async {
            let done = self
                .keys
                .update_one(
                    doc! { "_id": name, "revoked_at": Bson::Null },
                    doc! { "$set": { "revoked_at": time(at) } },
                )
                .await
                .map_err(classify)?;
            Ok(done.modified_count == 1)
        })
        .await
    }

    async fn touch_api_key(&self, name: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let at = time(at);
        self.bounded(async {
            self.keys
                .update_one(
                    doc! { "_id": name, "$or": [
                        { "last_used_at": Bson::Null },
                        { "last_used_at": { "$lt": &at } },
                    ] },
                    doc! { "$set": { "last_used_at": &at } },
                )
                .await
                .map_err(classify)?;
            Ok(())
        })
        .await
    }
}
