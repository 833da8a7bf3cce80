//! The database handle: the three collections, their indexes, and the raw `update` command
//! that sends many single-document writes in one round trip.

use std::time::Duration;

use enrollstream_ports::StoreError;
use futures::TryStreamExt;
use mongodb::bson::{self, doc, Bson, Document};
use mongodb::options::{
    Acknowledgment, CollectionOptions, IndexOptions, ReadConcern, WriteConcern,
};
use mongodb::{Collection, Database, IndexModel};

use crate::codec::Fields;
use crate::error::{classify, is_transient_code, DUPLICATE_KEY};

pub(crate) const EVENT_LOG: &str = "event_log";
pub(crate) const ENTITIES: &str = "entities";
pub(crate) const IDEMPOTENCY: &str = "idempotency";
pub(crate) const OUTBOX_INDEX: &str = "outbox_index";

/// A raw `update` command stays well under the 16 MiB command limit.
const COMMAND_BYTES: usize = 8 * 1024 * 1024;

#[derive(Clone, Debug)]
pub(crate) struct Db {
    pub(crate) database: Database,
    pub(crate) event_log: Collection<Document>,
    pub(crate) entities: Collection<Document>,
    pub(crate) idempotency: Collection<Document>,
    /// `_id` = outbox message id, with the event that recorded it and its entity.
    pub(crate) outbox_index: Collection<Document>,
}

/// One single-document write of a raw `update` command.
#[derive(Clone, Debug)]
pub(crate) struct Statement {
    pub(crate) filter: Document,
    pub(crate) update: Document,
    pub(crate) upsert: bool,
}

/// What a raw `update` command reports: only totals, plus the statements refused by a unique
/// index (by position).
#[derive(Debug, Default)]
pub(crate) struct BatchResult {
    pub(crate) matched: u64,
    pub(crate) duplicates: Vec<usize>,
}

/// Every write waits for a majority of the replica set and the journal: an acknowledged effect
/// survives a failover and a crash.
pub(crate) fn write_concern() -> WriteConcern {
    WriteConcern::builder()
        .w(Acknowledgment::Majority)
        .journal(true)
        .build()
}

fn write_concern_doc() -> Document {
    doc! { "w": "majority", "j": true }
}

impl Db {
    pub(crate) fn new(database: Database) -> Self {
        let options = CollectionOptions::builder()
            .write_concern(write_concern())
            // Reads see only what a majority has: nothing a failover could roll back.
            .read_concern(ReadConcern::majority())
            .build();
        let collection = |name| database.collection_with_options::<Document>(name, options.clone());
        Self {
            event_log: collection(EVENT_LOG),
            entities: collection(ENTITIES),
            idempotency: collection(IDEMPOTENCY),
            outbox_index: collection(OUTBOX_INDEX),
            database,
        }
    }

    /// Creating an index that exists with the same keys and options is a no-op, so this runs at
    /// every start-up.
    pub(crate) async fn ensure_indexes(&self, idempotency_ttl: Duration) -> Result<(), StoreError> {
        let named = |name: &str| IndexOptions::builder().name(name.to_string()).build();
        self.event_log
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "entity_kind": 1, "entity_id": 1, "version": 1 })
                    .options(
                        IndexOptions::builder()
                            .name("entity_version".to_string())
                            .unique(true)
                            .build(),
                    )
                    .build(),
            )
            .await
            .map_err(classify)?;
        self.entities
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "outbox_pending": 1, "outbox_oldest": 1 })
                    .options(named("outbox_pending"))
                    .build(),
            )
            .await
            .map_err(classify)?;
        self.idempotency
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "created_at": 1 })
                    .options(
                        IndexOptions::builder()
                            .name("expire".to_string())
                            .expire_after(idempotency_ttl)
                            .build(),
                    )
                    .build(),
            )
            .await
            .map_err(classify)?;
        Ok(())
    }

    pub(crate) async fn find_all(
        &self,
        collection: &Collection<Document>,
        filter: Document,
        projection: Option<Document>,
    ) -> Result<Vec<Document>, StoreError> {
        let mut find = collection.find(filter);
        if let Some(projection) = projection {
            find = find.projection(projection);
        }
        find.await
            .map_err(classify)?
            .try_collect()
            .await
            .map_err(classify)
    }

    /// Runs `statements` against `collection` in as few raw `update` commands as their size
    /// allows. `ordered` runs them in sequence and stops at the first refused one.
    ///
    /// The raw command, not the driver's `Client::bulk_write`, because the latter needs
    /// MongoDB 8.0 and this adapter supports 6.0.
    pub(crate) async fn update_batch(
        &self,
        collection: &str,
        statements: &[Statement],
        ordered: bool,
    ) -> Result<BatchResult, StoreError> {
        let mut result = BatchResult::default();
        let mut start = 0;
        while start < statements.len() {
            let mut bytes = 0;
            let mut chunk = Vec::new();
            for s in &statements[start..] {
                let encoded =
                    doc! { "q": &s.filter, "u": &s.update, "upsert": s.upsert, "multi": false };
                let size = bson::to_vec(&encoded)
                    .map_err(|e| StoreError::Fatal(format!("cannot encode an update: {e}")))?
                    .len();
                if !chunk.is_empty() && bytes + size > COMMAND_BYTES {
                    break;
                }
                bytes += size;
                chunk.push(encoded);
            }
            let count = chunk.len();
            let reply = self
                .database
                .run_command(doc! {
                    "update": collection,
                    "updates": chunk,
                    "ordered": ordered,
                    "writeConcern": write_concern_doc(),
                })
                .await
                .map_err(classify)?;
            let part = read_update_reply(&reply)?;
            result.matched += part.matched;
            result
                .duplicates
                .extend(part.duplicates.into_iter().map(|i| i + start));
            start += count;
            if ordered && !result.duplicates.is_empty() {
                break;
            }
        }
        Ok(result)
    }
}

fn read_update_reply(reply: &Document) -> Result<BatchResult, StoreError> {
    if let Ok(wce) = reply.get_document("writeConcernError") {
        return Err(StoreError::Unavailable(format!(
            "write concern not satisfied: {wce}"
        )));
    }
    let f = Fields::new(reply, "update reply");
    let matched = f.u64("n")?;
    let mut duplicates = Vec::new();
    for e in f.array("writeErrors")? {
        let e = e
            .as_document()
            .ok_or_else(|| StoreError::Fatal(format!("odd write error {e}")))?;
        let ef = Fields::new(e, "write error");
        let code = ef.i64("code")?;
        let index = ef.u64("index")?;
        let message = e.get("errmsg").map(Bson::to_string).unwrap_or_default();
        match i32::try_from(code) {
            Ok(DUPLICATE_KEY) => duplicates.push(index as usize),
            Ok(c) if is_transient_code(c) => {
                return Err(StoreError::Unavailable(format!(
                    "update refused ({code}): {message}"
                )))
            }
            _ => {
                return Err(StoreError::Fatal(format!(
                    "update refused ({code}): {message}"
                )))
            }
        }
    }
    Ok(BatchResult {
        matched,
        duplicates,
    })
}
