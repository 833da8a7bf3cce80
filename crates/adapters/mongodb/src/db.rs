//! The database handle: the collections, their indexes, and the raw `update` command that sends
//! many single-document writes in one round trip.

use std::time::Duration;

use enrollstream_ports::StoreError;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{self, doc, Bson, Document};
use mongodb::error::ErrorKind;
use mongodb::options::{
    Acknowledgment, CollectionOptions, IndexOptions, ReadConcern, WriteConcern,
};
use mongodb::{Collection, Database, IndexModel};

use crate::codec::Fields;
use crate::entry::{OUTBOX_IDS, OUTBOX_PENDING, OUTBOX_SEQ};
use crate::error::{classify, is_transient_code, DUPLICATE_KEY};
use crate::settings::Lookups;

pub(crate) const EVENT_LOG: &str = "event_log";
pub(crate) const ENTITIES: &str = "entities";
pub(crate) const IDEMPOTENCY: &str = "idempotency";

/// A raw `update` command stays well under the 16 MiB command limit.
const COMMAND_BYTES: usize = 8 * 1024 * 1024;
/// Statements per raw `update` command. MongoDB takes 100,000; FerretDB 1.24 keeps a cursor
/// (and one of its 100 SQLite connections) per statement until the command ends, so a command
/// of 100 statements or more waits forever (docs/testbed.md). With [`Lookups::Point`] a command
/// holds one statement (see [`update_shape`]).
const COMMAND_STATEMENTS: usize = 64;
/// Documents asked for per reply of a read; the server caps a reply at 16 MiB.
pub(crate) const FIND_BATCH: u32 = 100_000;
/// MongoDB's code for an operation the server does not implement (FerretDB's TTL indexes).
const NOT_IMPLEMENTED: i32 = 238;

/// The server refused an operation it does not implement (FerretDB: TTL indexes).
pub(crate) fn is_not_implemented(e: &mongodb::error::Error) -> bool {
    matches!(e.kind.as_ref(), ErrorKind::Command(c) if c.code == NOT_IMPLEMENTED)
}

#[derive(Clone, Debug)]
pub(crate) struct Db {
    pub(crate) database: Database,
    /// Bound of one round trip (see [`Db::within`]).
    timeout: Duration,
    pub(crate) event_log: Collection<Document>,
    pub(crate) entities: Collection<Document>,
    pub(crate) idempotency: Collection<Document>,
    /// The read model's generation these collections hold (see `generations`).
    pub(crate) generation: u64,
    lookups: Lookups,
}

/// The collections of generation `generation` of the read model, `(event_log, entities)`:
/// generation 1 keeps the names of a store never rebuilt without downtime, so its data is
/// generation 1 as it is.
pub(crate) fn collection_names(generation: u64) -> (String, String) {
    match generation {
        0 | 1 => (EVENT_LOG.to_string(), ENTITIES.to_string()),
        g => (format!("{EVENT_LOG}_g{g}"), format!("{ENTITIES}_g{g}")),
    }
}

/// One single-document write of a raw `update` command.
#[derive(Clone, Debug)]
pub(crate) struct Statement {
    pub(crate) filter: Document,
    pub(crate) update: Document,
    pub(crate) upsert: bool,
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

/// Finds of one key each that [`Lookups::Point`] keeps in flight at once.
pub(crate) const POINT_LOOKUPS_IN_FLIGHT: usize = 16;

/// `{field: value}` for one value (the only filter FerretDB's SQLite handler looks up by key
/// instead of scanning, when the field is `_id`), `{field: {$in: values}}` for several.
fn any_of<S: AsRef<str>>(field: &str, values: &[S]) -> Document {
    match values {
        [one] => doc! { field: one.as_ref() },
        _ => doc! { field: { "$in": values.iter().map(|s| s.as_ref()).collect::<Vec<_>>() } },
    }
}

impl Db {
    pub(crate) fn new(database: Database, timeout: Duration, lookups: Lookups) -> Self {
        let collection = |name: &str| collection(&database, name);
        Self {
            event_log: collection(EVENT_LOG),
            entities: collection(ENTITIES),
            idempotency: collection(IDEMPOTENCY),
            generation: 1,
            database,
            timeout,
            lookups,
        }
    }

    /// The same database, on the read model's generation `generation`.
    pub(crate) fn generation(&self, generation: u64) -> Self {
        if generation == self.generation {
            return self.clone();
        }
        let (event_log, entities) = collection_names(generation);
        Self {
            event_log: collection(&self.database, &event_log),
            entities: collection(&self.database, &entities),
            idempotency: self.idempotency.clone(),
            generation,
            database: self.database.clone(),
            timeout: self.timeout,
            lookups: self.lookups,
        }
    }

    pub(crate) fn event_log_name(&self) -> String {
        collection_names(self.generation).0
    }

    pub(crate) fn entities_name(&self) -> String {
        collection_names(self.generation).1
    }

    pub(crate) fn lookups(&self) -> Lookups {
        self.lookups
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// One round trip, failing as Unavailable past the operation timeout: the driver has no
    /// socket timeout, so a hung server would otherwise hang the caller. Calls that make many
    /// round trips (an apply's chunks, a relay's marks) bound each, so a slow server that keeps
    /// answering (FerretDB's updates cost a scan of the collection each) is not taken for a
    /// hung one.
    pub(crate) async fn within<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        within(self.timeout, call).await
    }

    /// Creating an index that exists with the same keys and options is a no-op, so this runs at
    /// every start-up.
    /// The indexes of the collections every generation shares.
    pub(crate) async fn ensure_indexes_shared(
        &self,
        idempotency_ttl: Duration,
    ) -> Result<(), StoreError> {
        self.ensure_expiry_index(idempotency_ttl).await
    }

    /// The indexes of this generation's event log.
    pub(crate) async fn ensure_log_indexes(&self) -> Result<(), StoreError> {
        for model in log_indexes() {
            self.event_log.create_index(model).await.map_err(classify)?;
        }
        Ok(())
    }

    /// A TTL index where the server has them, so MongoDB drops expired keys by itself; a plain
    /// index for the adapter's own purge elsewhere. Expiry means the same either way: the
    /// adapter treats a record past its lifetime as absent (see `idempotency`).
    async fn ensure_expiry_index(&self, ttl: Duration) -> Result<(), StoreError> {
        let model = |ttl: Option<Duration>| {
            IndexModel::builder()
                .keys(doc! { "created_at": 1 })
                .options(
                    IndexOptions::builder()
                        .name("expire".to_string())
                        .expire_after(ttl)
                        .build(),
                )
                .build()
        };
        match self.idempotency.create_index(model(Some(ttl))).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_implemented(&e) => {
                tracing::info!("no TTL indexes on this server; expired idempotency keys are purged by the store");
                self.idempotency
                    .create_index(model(None))
                    .await
                    .map(drop)
                    .map_err(classify)
            }
            Err(e) => Err(classify(e)),
        }
    }

    pub(crate) async fn find_all(
        &self,
        collection: &Collection<Document>,
        filter: Document,
        projection: Option<Document>,
    ) -> Result<Vec<Document>, StoreError> {
        // Whole answers in one reply where they fit (16 MiB), not a first batch of 101 and
        // `getMore`s.
        let mut find = collection.find(filter).batch_size(FIND_BATCH);
        if let Some(projection) = projection {
            find = find.projection(projection);
        }
        self.within(async {
            find.await
                .map_err(classify)?
                .try_collect()
                .await
                .map_err(classify)
        })
        .await
    }

    /// The documents whose `field` (a string, or an array of strings) holds one of `values`.
    pub(crate) async fn find_in<S: AsRef<str>>(
        &self,
        collection: &Collection<Document>,
        field: &str,
        values: &[S],
        projection: Option<Document>,
    ) -> Result<Vec<Document>, StoreError> {
        match self.lookups {
            Lookups::Batched => {
                self.find_all(collection, any_of(field, values), projection)
                    .await
            }
            Lookups::Point => {
                let filters: Vec<Document> =
                    values.iter().map(|v| doc! { field: v.as_ref() }).collect();
                self.find_each(collection, filters, projection).await
            }
        }
    }

    /// The documents matching any of `clauses`: one `$or` find, or with [`Lookups::Point`]
    /// one find per clause (whose equalities FerretDB looks up in an index, and whose ranges
    /// it checks on what they found).
    pub(crate) async fn find_any(
        &self,
        collection: &Collection<Document>,
        clauses: Vec<Document>,
        projection: Option<Document>,
    ) -> Result<Vec<Document>, StoreError> {
        match (self.lookups, clauses.len()) {
            (_, 0) => Ok(Vec::new()),
            (Lookups::Batched, _) => {
                self.find_all(collection, doc! { "$or": clauses }, projection)
                    .await
            }
            (Lookups::Point, _) => self.find_each(collection, clauses, projection).await,
        }
    }

    /// One find per filter, [`POINT_LOOKUPS_IN_FLIGHT`] at a time; a document two filters
    /// match is returned once.
    async fn find_each(
        &self,
        collection: &Collection<Document>,
        filters: Vec<Document>,
        projection: Option<Document>,
    ) -> Result<Vec<Document>, StoreError> {
        // The finds are made before they are streamed: a closure inside the stream would make
        // the callers' futures too general to be `Send` (rust-lang/rust#102211).
        let mut finds = Vec::with_capacity(filters.len());
        for filter in filters {
            finds.push(self.find_all(collection, filter, projection.clone()));
        }
        let answers: Vec<Vec<Document>> = futures::stream::iter(finds)
            .buffer_unordered(POINT_LOOKUPS_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut seen = std::collections::HashSet::new();
        Ok(answers
            .into_iter()
            .flatten()
            .filter(|d| match d.get("_id") {
                Some(id) => seen.insert(id.to_string()),
                None => true,
            })
            .collect())
    }

    /// Runs `statements` against `collection` in as few raw `update` commands as their size
    /// allows, unordered. A statement refused by a unique index (an upsert that lost the race
    /// to create its document) is skipped; any other refusal is an error. So only writes that
    /// may be lost belong here (caches and marks, never fences): FerretDB also skips the rest
    /// of a command after a refused statement, and leaves the matched counts out of its reply.
    ///
    /// The raw command, not the driver's `Client::bulk_write`, because the latter needs
    /// MongoDB 8.0 and this adapter supports 6.0.
    pub(crate) async fn update_batch(
        &self,
        collection: &str,
        statements: &[Statement],
    ) -> Result<(), StoreError> {
        let target = UpdateTarget {
            database: &self.database,
            timeout: self.timeout,
            lookups: self.lookups,
        };
        update_batch(&target, collection, statements).await
    }
}

/// The event log's indexes. One index per command: FerretDB 1.24 panics on a `createIndexes`
/// naming several that exist already (docs/testbed.md).
fn log_indexes() -> [IndexModel; 3] {
    let index = |keys: Document, name: &str, unique: bool| {
        IndexModel::builder()
            .keys(keys)
            .options(
                IndexOptions::builder()
                    .name(name.to_string())
                    .unique(unique.then_some(true))
                    .build(),
            )
            .build()
    };
    [
        // The version fence: at most one event per version of an entity.
        index(
            doc! { "entity_kind": 1, "entity_id": 1, "version": 1 },
            "entity_version",
            true,
        ),
        // The relay's "oldest unpublished first"; entries with nothing pending have neither
        // field. (Event logs written before `outbox_pending` existed need
        // `updateMany({outbox_seq: {$gt: ""}}, {$set: {outbox_pending: true}})` once:
        // docs/operations.md.)
        index(
            doc! { OUTBOX_PENDING: 1, OUTBOX_SEQ: 1 },
            "outbox_pending",
            false,
        ),
        // Marks find the entries of published message ids.
        index(doc! { OUTBOX_IDS: 1 }, "outbox_ids", false),
    ]
}

/// A collection with the store's concerns: majority and journal for writes, majority reads
/// (nothing a failover could roll back).
pub(crate) fn collection(database: &Database, name: &str) -> Collection<Document> {
    let options = CollectionOptions::builder()
        .write_concern(write_concern())
        .read_concern(ReadConcern::majority())
        .build();
    database.collection_with_options::<Document>(name, options)
}

/// [`Db::within`] for any call.
pub(crate) async fn within<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "MongoDB did not answer within {timeout:?}"
            )))
        })
}

/// Where [`update_batch`] writes: a database, the bound of each command, and the server's
/// kind of lookups, which shapes the commands.
pub(crate) struct UpdateTarget<'a> {
    pub(crate) database: &'a Database,
    pub(crate) timeout: Duration,
    pub(crate) lookups: Lookups,
}

/// Statements per command and commands in flight. FerretDB holds a connection per statement
/// of an `update` until the command ends (`defer closer.Close()` in its handler's loop), so a
/// command of more statements than its pool of PostgreSQL connections (the test bed's: 20)
/// waits forever, and so do commands that together hold the pool. One statement per command
/// never holds one connection while waiting for another.
fn update_shape(lookups: Lookups) -> (usize, usize) {
    match lookups {
        Lookups::Batched => (COMMAND_STATEMENTS, 1),
        Lookups::Point => (1, POINT_LOOKUPS_IN_FLIGHT),
    }
}

/// [`Db::update_batch`] on any database, each command bounded by `timeout`.
pub(crate) async fn update_batch(
    target: &UpdateTarget<'_>,
    collection: &str,
    statements: &[Statement],
) -> Result<(), StoreError> {
    let (per_command, in_flight) = update_shape(target.lookups);
    let mut commands = Vec::new();
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
            if !chunk.is_empty() && (bytes + size > COMMAND_BYTES || chunk.len() == per_command) {
                break;
            }
            bytes += size;
            chunk.push(encoded);
        }
        start += chunk.len();
        let command = target.database.run_command(doc! {
            "update": collection,
            "updates": chunk,
            "ordered": false,
            "writeConcern": write_concern_doc(),
        });
        commands.push(within(target.timeout, async {
            check_update_reply(&command.await.map_err(classify)?)
        }));
    }
    futures::stream::iter(commands)
        .buffer_unordered(in_flight)
        .try_collect::<Vec<()>>()
        .await
        .map(drop)
}

/// Refusals by a unique index pass; other refusals are errors.
fn check_update_reply(reply: &Document) -> Result<(), StoreError> {
    if let Ok(wce) = reply.get_document("writeConcernError") {
        return Err(StoreError::Unavailable(format!(
            "write concern not satisfied: {wce}"
        )));
    }
    let errors = match reply.get("writeErrors") {
        None => return Ok(()),
        Some(Bson::Array(errors)) => errors,
        Some(other) => {
            return Err(crate::error::corrupt(
                "update reply",
                format!("writeErrors {other}"),
            ))
        }
    };
    for e in errors {
        let e = e
            .as_document()
            .ok_or_else(|| StoreError::Fatal(format!("odd write error {e}")))?;
        let ef = Fields::new(e, "write error");
        let code = ef.i64("code")?;
        let message = e.get("errmsg").map(Bson::to_string).unwrap_or_default();
        match i32::try_from(code) {
            Ok(DUPLICATE_KEY) => {}
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
    Ok(())
}
