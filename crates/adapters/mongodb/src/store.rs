//! `MongoStore`: the `Store` port on MongoDB.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use enrollstream_domain::EntityKind;
use enrollstream_ports::{
    ApplyOutcome, Change, EntityQuery, EntityRecord, Generations, IdempotencyRecord, Reservation,
    Store, StoreError, StoredEvent, StoredOutboxMessage, SWITCH_LEASE,
};
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use tokio::time::Instant;

use crate::db::Db;
use crate::entry::{event_from, event_projection};
use crate::error::classify;
use crate::generations::{live, Gens};
use crate::monitor::{CommandStats, Monitor};
use crate::outbox::{Holders, Wake};
pub(crate) use crate::settings::client;
pub use crate::settings::MongoSettings;
use crate::{apply, idempotency, read};

pub struct MongoStore {
    /// Generation 1's collections and the shared ones; read-model calls go to `target()`.
    pub(crate) db: Db,
    settings: MongoSettings,
    wake: Wake,
    /// The entries of the messages handed to the relay, for their marks.
    holders: Holders,
    reservations: AtomicU64,
    monitor: Option<Arc<Monitor>>,
    pub(crate) gens: Arc<Gens>,
    /// The live read model, or the build of its next generation (`Generations::shadow`).
    pub(crate) building: bool,
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
        let monitor = settings.count_commands.then(Arc::<Monitor>::default);
        let client = client(uri, &settings, monitor.as_ref()).await?;
        let db = Db::new(
            client.database(database),
            settings.operation_timeout,
            settings.lookups,
        );
        let store = Self {
            gens: Arc::new(Gens::new(
                db.clone(),
                settings.retired_grace,
                settings.pointer_ttl,
            )),
            db,
            wake: Wake::new(settings.outbox_poll_interval),
            holders: Holders::default(),
            settings,
            reservations: AtomicU64::new(0),
            monitor,
            building: false,
        };
        let active = store.target().await?;
        store
            .bounded(async {
                refuse_earlier_format(&store.db).await?;
                active.ensure_log_indexes().await?;
                store
                    .db
                    .ensure_indexes_shared(store.settings.idempotency_ttl)
                    .await?;
                if let Some(newest) = idempotency::newest(&store.db).await? {
                    idempotency::purge(&store.db, newest, store.settings.idempotency_ttl).await?;
                }
                Ok(())
            })
            .await?;
        store
            .bounded(crate::listing::ensure_indexes(&active))
            .await?;
        Ok(store)
    }

    /// The reminder store on this store's client and database, so one process keeps one
    /// connection pool (and one set of server monitors) to MongoDB, not one per store.
    pub async fn reminder_store(&self) -> Result<crate::MongoReminderStore, StoreError> {
        crate::MongoReminderStore::on(self.db.database.clone(), self.settings.clone()).await
    }

    /// The API-key store on this store's client and database.
    pub async fn credential_store(&self) -> Result<crate::MongoCredentialStore, StoreError> {
        crate::MongoCredentialStore::on(self.db.database.clone(), self.settings.clone()).await
    }

    /// The delivery log on this store's client and database.
    pub async fn delivery_log(&self) -> Result<crate::MongoDeliveryLog, StoreError> {
        crate::MongoDeliveryLog::on(self.db.database.clone(), self.settings.clone()).await
    }

    /// The audit of redrives on this store's client and database.
    pub async fn audit_log(&self) -> Result<crate::MongoAuditLog, StoreError> {
        crate::MongoAuditLog::on(self.db.database.clone(), self.settings.clone()).await
    }

    /// What each kind of command cost since the store opened or since the last call, when
    /// [`MongoSettings::count_commands`] is on (empty otherwise). Covers the reminder store
    /// opened from this one too.
    pub fn take_commands(&self) -> BTreeMap<String, CommandStats> {
        self.monitor.as_ref().map(|m| m.take()).unwrap_or_default()
    }

    /// The collections read-model calls go to: the active generation's (as of at most
    /// `MongoSettings::pointer_ttl` ago), or the build's.
    pub(crate) async fn target(&self) -> Result<Db, StoreError> {
        if self.building {
            let build = self.gens.building.lock().expect("build").clone();
            return build
                .map(|b| self.gens.db(b.generation))
                .ok_or_else(|| StoreError::Fatal("no build of the read model is open".into()));
        }
        let view = self.gens.view().await?;
        Ok(self.gens.db(view.pointer.generation))
    }

    /// The build view of this store (`Generations::shadow`).
    pub(crate) fn build_view(&self) -> Self {
        Self {
            db: self.db.clone(),
            settings: self.settings.clone(),
            wake: Wake::new(self.settings.outbox_poll_interval),
            holders: Holders::default(),
            reservations: AtomicU64::new(0),
            monitor: self.monitor.clone(),
            gens: self.gens.clone(),
            building: true,
        }
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

/// The read model of earlier versions embedded the outbox in the entity documents and kept an
/// `outbox_index` collection; this version cannot read it. Refused rather than misread.
async fn refuse_earlier_format(db: &Db) -> Result<(), StoreError> {
    let earlier = db
        .entities
        .find_one(doc! { "outbox": { "$exists": true } })
        .projection(doc! { "_id": 1 })
        .await
        .map_err(classify)?;
    if earlier.is_some() {
        return Err(StoreError::Fatal(format!(
            "database {} holds a read model of an earlier enrollstream (the outbox inside `entities`): \
             let that version's relay publish what is pending, drop the collections `event_log`, \
             `entities` and `outbox_index`, then run `enrollstream rebuild`",
            db.database.name()
        )));
    }
    Ok(())
}

#[async_trait]
impl Store for MongoStore {
    async fn applied(&self, event_ids: &[String]) -> Result<HashSet<String>, StoreError> {
        match self.building {
            true => {
                let db = self.target().await?;
                self.bounded(read::logged(&db, event_ids)).await
            }
            false => self.bounded(live::applied(&self.gens, event_ids)).await,
        }
    }

    async fn entity(&self, kind: EntityKind, id: &str) -> Result<Option<EntityRecord>, StoreError> {
        let db = self.target().await?;
        self.bounded(read::latest_one(&db, kind, id)).await
    }

    /// Bounded per round trip, not as a whole: a page may take several scans.
    async fn list_entities(&self, query: &EntityQuery) -> Result<Vec<EntityRecord>, StoreError> {
        crate::listing::list_entities(&self.target().await?, query).await
    }

    async fn entities(
        &self,
        keys: &[(EntityKind, String)],
    ) -> Result<Vec<EntityRecord>, StoreError> {
        let db = self.target().await?;
        self.bounded(async { Ok(read::latest(&db, keys).await?.into_values().collect()) })
            .await
    }

    /// Bounded per round trip, not as a whole: a batch makes many (see `Db::within`).
    async fn apply(&self, changes: &[Change]) -> Result<Vec<ApplyOutcome>, StoreError> {
        let applied = match self.building {
            true => {
                let silent = apply::Policy {
                    silent: true,
                    ..Default::default()
                };
                apply::apply(&self.target().await?, changes, &silent).await?
            }
            false => live::apply(&self.gens, changes).await?,
        };
        if applied.new_outbox {
            self.wake.recorded();
        }
        Ok(applied.outcomes)
    }

    async fn event_log(&self, kind: EntityKind, id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let db = self.target().await?;
        self.bounded(async {
            let docs: Vec<Document> = db
                .event_log
                .find(doc! { "entity_kind": kind.as_str(), "entity_id": id })
                .sort(doc! { "version": 1 })
                .projection(event_projection())
                .await
                .map_err(classify)?
                .try_collect()
                .await
                .map_err(classify)?;
            docs.iter().map(event_from).collect()
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
        // The log goes first: it is the read model; heads without it are read as nothing new.
        let db = self.target().await?;
        self.holders.forget();
        self.bounded(async {
            db.event_log.delete_many(doc! {}).await.map_err(classify)?;
            db.entities.delete_many(doc! {}).await.map_err(classify)?;
            Ok(())
        })
        .await
    }

    /// Bounded per round trip, as `apply`. Every generation not dropped yet (see
    /// `generations`); the build records no messages.
    async fn pending_outbox(&self, limit: usize) -> Result<Vec<StoredOutboxMessage>, StoreError> {
        match self.building {
            true => Ok(Vec::new()),
            false => live::pending(&self.gens, limit, &self.holders).await,
        }
    }

    /// Bounded per round trip, as `apply`.
    async fn mark_published(&self, ids: &[String]) -> Result<(), StoreError> {
        match self.building {
            true => Ok(()),
            false => live::mark_published(&self.gens, ids, &self.holders).await,
        }
    }

    /// Polls the active generation only: what a retired one still holds was there at the
    /// switch, and the relay reads it with the rest after any wait.
    async fn wait_for_outbox(&self, max: Duration) {
        match self.target().await {
            Ok(db) if !self.building => self.wake.wait(&db.event_log, max).await,
            _ => tokio::time::sleep(max).await,
        }
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        match self.building {
            true => Ok(0),
            false => self.bounded(live::backlog(&self.gens)).await,
        }
    }

    async fn reserve_idempotency(
        &self,
        record: &IdempotencyRecord,
    ) -> Result<Reservation, StoreError> {
        let ttl = self.settings.idempotency_ttl;
        let purge = self.reservations.fetch_add(1, Ordering::Relaxed) % idempotency::PURGE_EVERY
            == idempotency::PURGE_EVERY - 1;
        self.bounded(async {
            if purge {
                let purged = idempotency::purge(&self.db, record.created_at, ttl).await?;
                tracing::debug!(purged, "expired idempotency keys purged");
            }
            idempotency::reserve(&self.db, record, ttl).await
        })
        .await
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

    // Parked messages and leases live in collections of their own (fences.rs).
    async fn park_outbox(
        &self,
        message: &StoredOutboxMessage,
        reason: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        self.bounded(crate::fences::park(&self.db.database, message, reason, at))
            .await
    }

    async fn parked_outbox(
        &self,
        limit: usize,
    ) -> Result<Vec<(StoredOutboxMessage, String)>, StoreError> {
        self.bounded(crate::fences::parked(&self.db.database, limit))
            .await
    }

    async fn take_lease(
        &self,
        name: &str,
        owner: &str,
        until: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<enrollstream_ports::Lease>, StoreError> {
        let taken = self
            .bounded(crate::fences::take_lease(
                &self.db.database,
                name,
                owner,
                until,
                now,
            ))
            .await;
        if name == SWITCH_LEASE {
            self.gens.lease_changed();
        }
        taken
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let released = self
            .bounded(crate::fences::release_lease(&self.db.database, name, owner))
            .await;
        if name == SWITCH_LEASE {
            self.gens.lease_changed();
        }
        released
    }

    async fn leases(
        &self,
        prefix: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<enrollstream_ports::Lease>, StoreError> {
        self.bounded(crate::fences::leases(&self.db.database, prefix, now))
            .await
    }

    fn generations(&self) -> Option<&dyn Generations> {
        (!self.building).then_some(self as &dyn Generations)
    }

    fn name(&self) -> &'static str {
        "mongodb"
    }
}
