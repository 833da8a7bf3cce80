//! `MongoAuditLog`: the audit of redrives on MongoDB, collection `redrive_audit`, `_id` the
//! redrive's id; its start and its end are one replace (upsert) each. Times are BSON dates.

use std::future::Future;

use async_trait::async_trait;
use enrollstream_ports::{AuditLog, RedriveAudit, RedriveStatus, StoreError};
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::options::{CollectionOptions, IndexOptions, ReadConcern};
use mongodb::{Collection, Database, IndexModel};

use crate::codec::{self, Fields};
use crate::db::{self, write_concern};
use crate::error::classify;
use crate::MongoSettings;

pub const COLLECTION: &str = "redrive_audit";

pub struct MongoAuditLog {
    redrives: Collection<Document>,
    settings: MongoSettings,
}

fn encode(r: &RedriveAudit) -> Result<Document, StoreError> {
    let selection = codec::to_bson(&r.selection)
        .map_err(|e| StoreError::Fatal(format!("redrive_audit selection: {}", e.0)))?;
    Ok(doc! {
        "_id": &r.id,
        "at": codec::date(r.at),
        "by": &r.by,
        "dry_run": r.dry_run,
        "selection": selection,
        "status": r.status.as_str(),
        "moved": codec::int(r.moved)?,
        "skipped": codec::int(r.skipped)?,
        "finished_at": r.finished_at.map(codec::date),
        "error": r.error.as_deref(),
    })
}

fn decode(d: &Document) -> Result<RedriveAudit, StoreError> {
    let f = Fields::new(d, COLLECTION);
    let status = f.str("status")?;
    Ok(RedriveAudit {
        id: f.str("_id")?.to_string(),
        at: f.date("at")?,
        by: f.str("by")?.to_string(),
        dry_run: f.bool("dry_run")?,
        selection: f.json("selection")?,
        status: RedriveStatus::parse(status).ok_or_else(|| {
            StoreError::Fatal(format!("{COLLECTION}: status {status:?} is not a status"))
        })?,
        moved: f.u64("moved")?,
        skipped: f.u64("skipped")?,
        finished_at: f.opt_date("finished_at")?,
        error: f.opt_str("error")?,
    })
}

impl MongoAuditLog {
    /// Connects with its own client (`enrollstream dlq audit` needs nothing else) and creates
    /// the index (idempotent).
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

    /// On a database whose client is already open (see [`crate::MongoStore::audit_log`]).
    pub(crate) async fn on(
        database: Database,
        settings: MongoSettings,
    ) -> Result<Self, StoreError> {
        let options = CollectionOptions::builder()
            .write_concern(write_concern())
            .read_concern(ReadConcern::majority())
            .build();
        let log = Self {
            redrives: database.collection_with_options(COLLECTION, options),
            settings,
        };
        let index = IndexModel::builder()
            .keys(doc! { "at": -1, "_id": -1 })
            .options(IndexOptions::builder().name("at".to_string()).build())
            .build();
        log.bounded(async { log.redrives.create_index(index).await.map_err(classify) })
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
impl AuditLog for MongoAuditLog {
    async fn record_redrive(&self, record: &RedriveAudit) -> Result<(), StoreError> {
        let document = encode(record)?;
        self.bounded(async {
            self.redrives
                .replace_one(doc! { "_id": &record.id }, document)
                .upsert(true)
                .await
                .map_err(classify)?;
            Ok(())
        })
        .await
    }

    async fn redrives(&self, limit: usize) -> Result<Vec<RedriveAudit>, StoreError> {
        // A limit of 0 means none to MongoDB.
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = limit.min(i64::MAX as usize) as i64;
        self.bounded(async {
            let all: Vec<Document> = self
                .redrives
                .find(doc! {})
                .sort(doc! { "at": -1, "_id": -1 })
                .limit(limit)
                .await
                .map_err(classify)?
                .try_collect()
                .await
                .map_err(classify)?;
            all.iter().map(decode).collect()
        })
        .await
    }
}
