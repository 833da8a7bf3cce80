//! `MongoStore`: the `Store` port on MongoDB.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use enrollstream_domain::EntityKind;
use enrollstream_ports::{
    ApplyOutcome, Change, EntityRecord, IdempotencyRecord, Reservation, Store, StoreError,
    StoredEvent, StoredOutboxMessage,
};
use mongodb::bson::doc;
use mongodb::options::ClientOptions;
use mongodb::Client;
use tokio::time::Instant;

use crate::apply::{entity_version, entity_versions};
use crate::codec::{entity_from, entity_key, event_from, int, Fields};
use crate::db::Db;
use crate::error::classify;
use crate::outbox::Wake;
use crate::{apply, idempotency, outbox};

/// Connection and timing settings. The defaults keep `/readyz` and the runners' retry loop
/// responsive when MongoDB is away; a URI that sets `serverSelectionTimeoutMS` or
/// `connectTimeoutMS` wins over them.
#[derive(Clone, Debug)]
pub struct MongoSettings {
    /// How long an operation waits for a usable server before failing as Unavailable.
    pub server_selection_timeout: Duration,
    pub connect_timeout: Duration,
    /// Upper bound of any one store call; past it the call fails as Unavailable (the driver
    /// has no socket timeout, so a hung server would otherwise hang the caller).
    pub operation_timeout: Duration,
    /// Bound of `check`.
    pub check_timeout: Duration,
    /// How often `wait_for_outbox` looks for pending messages without a change stream.
    pub outbox_poll_interval: Duration,
    /// Lifetime of idempotency keys (the TTL index; set when the index is first created).
    pub idempotency_ttl: Duration,
}

impl Default for MongoSettings {
    fn default() -> Self {
        Self {
            server_selection_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(15),
            check_timeout: Duration::from_secs(2),
            outbox_poll_interval: Duration::from_millis(50),
            idempotency_ttl: Duration::from_secs(24 * 60 * 60),
        }
    }
}

pub struct MongoStore {
    db: Db,
    settings: MongoSettings,
    wake: Wake,
}

/// A client with our timeouts: short server selection and connect, so `/readyz` and the
/// runners' retry loop notice an absent server quickly. A URI that sets them wins.
pub(crate) async fn client(uri: &str, settings: &MongoSettings) -> Result<Client, StoreError> {
    let mut options = ClientOptions::parse(uri).await.map_err(classify)?;
    options
        .server_selection_timeout
        .get_or_insert(settings.server_selection_timeout);
    options
        .connect_timeout
        .get_or_insert(settings.connect_timeout);
    options
        .app_name
        .get_or_insert_with(|| "enrollstream".to_string());
    Client::with_options(options).map_err(classify)
}

impl MongoStore {
    /// Connects with the default settings and creates the indexes (idempotent).
    pub async fn connect(uri: &str, database: &str) -> Result<Self, StoreError> {
        Self::connect_with(uri, database, MongoSettings::default()).await
    }

    pub async fn connect_with(
        uri: &str,
        database: &str,
        settings: MongoSettings,
    ) -> Result<Self, StoreError> {
        let client = client(uri, &settings).await?;
        let store = Self {
            db: Db::new(client.database(database)),
            wake: Wake::new(settings.outbox_poll_interval),
            settings,
        };
        store
            .bounded(store.db.ensure_indexes(store.settings.idempotency_ttl))
            .await?;
        Ok(store)
    }

    /// The reminder store on this store's client and database, so one process keeps one
    /// connection pool (and one set of server monitors) to MongoDB, not one per store.
    pub async fn reminder_store(&self) -> Result<crate::MongoReminderStore, StoreError> {
        crate::MongoReminderStore::on(self.db.database.clone(), self.settings.clone()).await
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

    async fn applied_now(&self, event_ids: &[String]) -> Result<HashSet<String>, StoreError> {
        if event_ids.is_empty() {
            return Ok(HashSet::new());
        }
        let logged = self
            .db
            .find_all(
                &self.db.event_log,
                doc! { "_id": { "$in": event_ids } },
                Some(doc! { "entity_kind": 1, "entity_id": 1, "version": 1 }),
            )
            .await?;
        let mut slots = HashMap::new();
        for d in &logged {
            let f = Fields::new(d, "event_log entry");
            let key = entity_key(f.kind("entity_kind")?, f.str("entity_id")?);
            slots.insert(f.str("_id")?.to_string(), (key, f.u64("version")?));
        }
        // A log entry counts only once its entity reached its version: the entry of an apply
        // interrupted before its entity write is not applied.
        let versions = entity_versions(&self.db, slots.values().map(|(k, _)| k.clone())).await?;
        Ok(slots
            .into_iter()
            .filter(|(_, (key, v))| versions.get(key).is_some_and(|current| current >= v))
            .map(|(id, _)| id)
            .collect())
    }
}

#[async_trait]
impl Store for MongoStore {
    async fn applied(&self, event_ids: &[String]) -> Result<HashSet<String>, StoreError> {
        self.bounded(self.applied_now(event_ids)).await
    }

    async fn entity(&self, kind: EntityKind, id: &str) -> Result<Option<EntityRecord>, StoreError> {
        self.bounded(async {
            let found = self
                .db
                .entities
                .find_one(doc! { "_id": entity_key(kind, id) })
                .projection(doc! { "outbox": 0 })
                .await
                .map_err(classify)?;
            found.as_ref().map(entity_from).transpose()
        })
        .await
    }

    async fn apply(&self, changes: &[Change]) -> Result<Vec<ApplyOutcome>, StoreError> {
        self.bounded(apply::apply(&self.db, changes)).await
    }

    async fn event_log(&self, kind: EntityKind, id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        self.bounded(async {
            let current = entity_version(&self.db, &entity_key(kind, id)).await?;
            if current == 0 {
                return Ok(Vec::new());
            }
            let mut events = self
                .db
                .find_all(
                    &self.db.event_log,
                    doc! { "entity_kind": kind.as_str(), "entity_id": id, "version": { "$lte": int(current)? } },
                    None,
                )
                .await?
                .iter()
                .map(event_from)
                .collect::<Result<Vec<_>, _>>()?;
            events.sort_by_key(|e| e.version);
            Ok(events)
        })
        .await
    }

    async fn wait_applied(&self, event_id: &str, timeout: Duration) -> Result<bool, StoreError> {
        let deadline = Instant::now() + timeout;
        let ids = [event_id.to_string()];
        let mut pause = Duration::from_millis(5);
        loop {
            if !self.applied(&ids).await?.is_empty() {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    async fn reset_read_model(&self) -> Result<(), StoreError> {
        // Emptied, not dropped: the unique index fencing the log stays in place throughout.
        // The log goes first: an entity without its log reads as applied nowhere.
        self.bounded(async {
            self.db
                .event_log
                .delete_many(doc! {})
                .await
                .map_err(classify)?;
            self.db
                .entities
                .delete_many(doc! {})
                .await
                .map_err(classify)?;
            Ok(())
        })
        .await
    }

    async fn pending_outbox(&self, limit: usize) -> Result<Vec<StoredOutboxMessage>, StoreError> {
        self.bounded(outbox::pending(&self.db, limit)).await
    }

    async fn mark_published(&self, ids: &[String]) -> Result<(), StoreError> {
        self.bounded(outbox::mark_published(&self.db, ids)).await
    }

    async fn wait_for_outbox(&self, max: Duration) {
        self.wake.wait(&self.db.entities, max).await
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        self.bounded(outbox::backlog(&self.db)).await
    }

    async fn reserve_idempotency(
        &self,
        record: &IdempotencyRecord,
    ) -> Result<Reservation, StoreError> {
        self.bounded(idempotency::reserve(&self.db, record)).await
    }

    async fn mark_idempotency_published(&self, key: &str) -> Result<(), StoreError> {
        self.bounded(idempotency::mark_published(&self.db, key))
            .await
    }

    async fn check(&self) -> Result<(), StoreError> {
        let limit = self.settings.check_timeout;
        match tokio::time::timeout(limit, self.db.database.run_command(doc! { "ping": 1 })).await {
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
