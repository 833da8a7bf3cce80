//! `MongoDeliveryLog`: the delivery log on MongoDB, collection `deliveries`, one document per
//! delivery outcome (`_id` a UUIDv7 of its own: records are occurrences, not facts to fence).
//!
//! Indexes: `entity` (`entity_id`, `at` descending) serves the listing of one entity; `ttl`
//! (`at`, expiring after the port's retention) lets the server drop old records. A server
//! without TTL indexes (FerretDB 1.24) gets a plain index `at` instead, for the runners' hourly
//! purge, which removes the same records everywhere.

use std::future::Future;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use enrollstream_ports::delivery_log::{DeliveryLog, DeliveryOutcome, DeliveryRecord, RETENTION};
use enrollstream_ports::StoreError;
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::options::{CollectionOptions, IndexOptions, ReadConcern};
use mongodb::{Collection, Database, IndexModel};

use crate::codec::{self, Fields};
use crate::db::{self, write_concern};
use crate::error::classify;
use crate::MongoSettings;

pub const COLLECTION: &str = "deliveries";

pub struct MongoDeliveryLog {
    deliveries: Collection<Document>,
    database: Database,
    settings: MongoSettings,
}

fn encode(r: &DeliveryRecord) -> Document {
    let mut d = doc! {
        "_id": uuid::Uuid::now_v7().to_string(),
        "entity_id": &r.entity_id,
        "at": codec::date(r.at),
        "notification_id": &r.notification_id,
        "target": &r.target,
        "outcome": r.outcome.as_str(),
        "attempts": i64::from(r.attempts),
    };
    // A field without a value is left out, as in the other collections.
    let optional = [
        ("event_id", r.event_id.as_deref()),
        ("entity_kind", r.entity_kind.as_deref()),
        ("error", r.error.as_deref()),
        ("dlq_topic", r.dlq_topic.as_deref()),
    ];
    for (field, value) in optional {
        if let Some(value) = value {
            d.insert(field, value);
        }
    }
    if let Some(status) = r.status {
        d.insert("status", i64::from(status));
    }
    d
}

fn decode(d: &Document) -> Result<DeliveryRecord, StoreError> {
    let f = Fields::new(d, COLLECTION);
    let outcome = f.str("outcome")?;
    let small = |field: &str, n: i64| {
        StoreError::Fatal(format!("{COLLECTION}: {field} {n} is out of range"))
    };
    let attempts = f.i64("attempts")?;
    let status = match d.get("status") {
        None => None,
        Some(_) => {
            let n = f.i64("status")?;
            Some(u16::try_from(n).map_err(|_| small("status", n))?)
        }
    };
    Ok(DeliveryRecord {
        notification_id: f.str("notification_id")?.to_string(),
        event_id: f.opt_str("event_id")?,
        entity_kind: f.opt_str("entity_kind")?,
        entity_id: f.str("entity_id")?.to_string(),
        target: f.str("target")?.to_string(),
        outcome: DeliveryOutcome::parse(outcome).ok_or_else(|| {
            StoreError::Fatal(format!(
                "{COLLECTION}: outcome {outcome:?} is not an outcome"
            ))
        })?,
        attempts: u32::try_from(attempts).map_err(|_| small("attempts", attempts))?,
        status,
        error: f.opt_str("error")?,
        dlq_topic: f.opt_str("dlq_topic")?,
        at: f.date("at")?,
    })
}

impl MongoDeliveryLog {
    /// On a database whose client is already open (see [`crate::MongoStore::delivery_log`]);
    /// creates the indexes (idempotent).
    pub(crate) async fn on(
        database: Database,
        settings: MongoSettings,
    ) -> Result<Self, StoreError> {
        let options = CollectionOptions::builder()
            .write_concern(write_concern())
            .read_concern(ReadConcern::majority())
            .build();
        let log = Self {
            deliveries: database.collection_with_options(COLLECTION, options),
            database,
            settings,
        };
        let index = |keys: Document, name: &str, ttl: Option<std::time::Duration>| {
            IndexModel::builder()
                .keys(keys)
                .options(
                    IndexOptions::builder()
                        .name(name.to_string())
                        .expire_after(ttl)
                        .build(),
                )
                .build()
        };
        let retention = RETENTION.to_std().expect("the retention is positive");
        // One index per command, as in the other collections (FerretDB).
        let entity = index(doc! { "entity_id": 1, "at": -1 }, "entity", None);
        log.bounded(async { log.deliveries.create_index(entity).await.map_err(classify) })
            .await?;
        let ttl = index(doc! { "at": 1 }, "ttl", Some(retention));
        log.bounded(async {
            match log.deliveries.create_index(ttl).await {
                Ok(_) => Ok(()),
                Err(e) if db::is_not_implemented(&e) => {
                    tracing::info!("no TTL indexes on this server; the hourly purge drops delivery records past the retention");
                    let at = index(doc! { "at": 1 }, "at", None);
                    log.deliveries.create_index(at).await.map(drop).map_err(classify)
                }
                Err(e) => Err(classify(e)),
            }
        })
        .await?;
        Ok(log)
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        db::within(self.settings.operation_timeout, call).await
    }
}

#[async_trait]
impl DeliveryLog for MongoDeliveryLog {
    async fn record(&self, record: &DeliveryRecord) -> Result<(), StoreError> {
        let document = encode(record);
        self.bounded(async {
            self.deliveries
                .insert_one(document)
                .await
                .map_err(classify)?;
            Ok(())
        })
        .await
    }

    async fn by_entity(
        &self,
        entity_id: &str,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        // A limit of 0 means none to MongoDB.
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.bounded(async {
            let found: Vec<Document> = self
                .deliveries
                .find(doc! { "entity_id": entity_id })
                .sort(doc! { "at": -1, "_id": -1 })
                .limit(limit)
                .await
                .map_err(classify)?
                .try_collect()
                .await
                .map_err(classify)?;
            found.iter().map(decode).collect()
        })
        .await
    }

    async fn purge(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.bounded(async {
            let gone = self
                .deliveries
                .delete_many(doc! { "at": { "$lt": codec::date(before) } })
                .await
                .map_err(classify)?;
            Ok(gone.deleted_count)
        })
        .await
    }

    async fn check(&self) -> Result<(), StoreError> {
        let limit = self.settings.check_timeout;
        match tokio::time::timeout(limit, self.database.run_command(doc! { "ping": 1 })).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(classify(e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "MongoDB did not answer a ping within {limit:?}"
            ))),
        }
    }

    fn name(&self) -> &'static str {
        "mongodb"
    }
}
