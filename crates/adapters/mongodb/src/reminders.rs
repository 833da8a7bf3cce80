//! `MongoReminderStore`: the reminder store port on MongoDB, collections `reminders` and
//! `reminder_versions`.
//!
//! Each write of a reminder inserts its next version into `reminder_versions` (the domain
//! state, [`Reminder`] under `state` with the applied event ids that make a redelivery a
//! no-op, its status, due time and lease); the unique `_id` of the version is the fence, and a
//! writer that lost the race reads again (see `writes`). `reminders` holds one head per
//! application (`_id` = application id), a copy of its latest version for the claims' query.
//! No multi-document transactions. The documents are described in `record`.
//!
//! Its own collections, beside the read model's: rebuilding the read model empties `event_log`
//! and `entities` and leaves reminder state alone.

mod record;
mod writes;

use std::future::Future;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use enrollstream_domain::events::ApplicationEvent;
use enrollstream_domain::reminder::{Reminder, ReminderPolicy};
use enrollstream_ports::reminders::{
    ClaimedReminder, EventOutcome, Fenced, ReminderQuery, ReminderStore, ScheduledReminder,
};
use enrollstream_ports::StoreError;
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::options::{CollectionOptions, IndexOptions, ReadConcern};
use mongodb::{Collection, Database, IndexModel};

use crate::codec::Fields;
use crate::db::write_concern;
use crate::error::classify;
use crate::MongoSettings;
use record::{date_down, LEASE_OWNER, LEASE_UNTIL, NEXT_DUE, STATE, STATUS};

/// The heads.
pub const COLLECTION: &str = "reminders";
/// Every version ever written, the fences.
pub const VERSIONS: &str = "reminder_versions";

pub struct MongoReminderStore {
    collections: Collections,
    settings: MongoSettings,
}

/// What the writes work on.
pub(crate) struct Collections {
    database: Database,
    /// Bound of one round trip.
    timeout: std::time::Duration,
    lookups: crate::Lookups,
    reminders: Collection<Document>,
    versions: Collection<Document>,
}

impl MongoReminderStore {
    /// Connects with the default settings and creates the indexes (idempotent).
    pub async fn connect(uri: &str, database: &str) -> Result<Self, StoreError> {
        Self::connect_with(uri, database, MongoSettings::default()).await
    }

    /// The same connection settings as [`crate::MongoStore::connect_with`];
    /// `idempotency_ttl` and `outbox_poll_interval` do not concern reminders.
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

    /// On a database whose client is already open (see [`crate::MongoStore::reminder_store`]).
    pub(crate) async fn on(
        database: Database,
        settings: MongoSettings,
    ) -> Result<Self, StoreError> {
        let collection_options = CollectionOptions::builder()
            // A recorded attempt survives a failover: it is never sent twice for that reason.
            .write_concern(write_concern())
            .read_concern(ReadConcern::majority())
            .build();
        let store = Self {
            collections: Collections {
                reminders: database.collection_with_options(COLLECTION, collection_options.clone()),
                versions: database.collection_with_options(VERSIONS, collection_options),
                database,
                timeout: settings.operation_timeout,
                lookups: settings.lookups,
            },
            settings,
        };
        store.bounded(store.ensure_indexes()).await?;
        Ok(store)
    }

    /// `due` serves the claims (due time, then the lease, both range-filtered), the backlog
    /// count and the earliest unleased due time; `leased` finds the leases for `next_wake`;
    /// `schedule` the listing by status in application id order.
    async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let index = |keys: Document, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_string()).build())
                .build()
        };
        // One index per command, as in the read model's store (FerretDB).
        for model in [
            index(doc! { NEXT_DUE: 1, LEASE_UNTIL: 1 }, "due"),
            index(doc! { LEASE_UNTIL: 1 }, "leased"),
            index(doc! { STATUS: 1, "_id": 1 }, "schedule"),
        ] {
            self.collections
                .reminders
                .create_index(model)
                .await
                .map_err(classify)?;
        }
        Ok(())
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

    /// A page of the heads in `_id` (application id) order. A head is a copy of its latest
    /// version and may lag it for a moment (see `writes`): the listing is a view, not a fence.
    async fn page(&self, query: &ReminderQuery) -> Result<Vec<ScheduledReminder>, StoreError> {
        let mut filter = doc! {};
        if let Some(status) = query.status {
            filter.insert(STATUS, status.as_str());
        }
        if let Some(after) = &query.after {
            filter.insert("_id", doc! { "$gt": after });
        }
        let heads: Vec<Document> = self
            .collections
            .reminders
            .find(filter)
            .sort(doc! { "_id": 1 })
            .limit(i64::try_from(query.limit).unwrap_or(i64::MAX))
            .await
            .map_err(classify)?
            .try_collect()
            .await
            .map_err(classify)?;
        heads
            .iter()
            .map(|d| {
                let f = Fields::new(d, "reminder");
                Ok(ScheduledReminder {
                    reminder: f.json(STATE)?,
                    lease_owner: f.opt_str(LEASE_OWNER)?,
                    lease_until: f.opt_date(LEASE_UNTIL)?,
                })
            })
            .collect()
    }

    /// The earliest claimable time: the earliest due time without a lease, or, for a leased
    /// reminder, the later of its due time and its lease's end. Leases are few (claims in
    /// flight and releases waiting to be retried), so they are read whole.
    async fn earliest_wake(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let reminders = &self.collections.reminders;
        let unleased = reminders
            .find_one(doc! { NEXT_DUE: { "$exists": true }, LEASE_UNTIL: { "$exists": false } })
            .sort(doc! { NEXT_DUE: 1 })
            .projection(doc! { NEXT_DUE: 1 })
            .await
            .map_err(classify)?;
        let mut wake = match &unleased {
            Some(d) => Some(Fields::new(d, "reminder").date(NEXT_DUE)?),
            None => None,
        };
        let leased: Vec<Document> = reminders
            .find(doc! { NEXT_DUE: { "$exists": true }, LEASE_UNTIL: { "$exists": true } })
            .projection(doc! { NEXT_DUE: 1, LEASE_UNTIL: 1 })
            .await
            .map_err(classify)?
            .try_collect()
            .await
            .map_err(classify)?;
        for d in &leased {
            let f = Fields::new(d, "reminder");
            let at = f.date(NEXT_DUE)?.max(f.date(LEASE_UNTIL)?);
            wake = Some(wake.map_or(at, |w| w.min(at)));
        }
        Ok(wake)
    }
}

#[async_trait]
impl ReminderStore for MongoReminderStore {
    async fn apply_event(
        &self,
        event_id: &str,
        event: &ApplicationEvent,
        at: DateTime<Utc>,
        policy: &ReminderPolicy,
    ) -> Result<EventOutcome, StoreError> {
        if !Reminder::concerns(event) {
            return Ok(EventOutcome::Ignored);
        }
        self.bounded(writes::apply_event(
            &self.collections,
            event_id,
            event,
            at,
            policy,
        ))
        .await
    }

    async fn get(&self, application_id: &str) -> Result<Option<Reminder>, StoreError> {
        self.bounded(async {
            Ok(writes::load(&self.collections, application_id)
                .await?
                .map(|r| r.reminder))
        })
        .await
    }

    async fn list(&self, query: &ReminderQuery) -> Result<Vec<ScheduledReminder>, StoreError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        self.bounded(self.page(query)).await
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<ClaimedReminder>, StoreError> {
        self.bounded(writes::claim_due(
            &self.collections,
            now,
            lease_until,
            owner,
            limit,
        ))
        .await
    }

    async fn record_attempt(
        &self,
        claim: &ClaimedReminder,
        attempt: u32,
        at: DateTime<Utc>,
        refused: Option<&str>,
        policy: &ReminderPolicy,
    ) -> Result<Fenced, StoreError> {
        self.bounded(writes::finish_claim(&self.collections, claim, None, |r| {
            r.record_attempt(attempt, at, refused, policy)
        }))
        .await
    }

    async fn release(
        &self,
        claim: &ClaimedReminder,
        retry_at: DateTime<Utc>,
        failure: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Fenced, StoreError> {
        self.bounded(writes::finish_claim(
            &self.collections,
            claim,
            Some(retry_at),
            |r| {
                Ok(match failure {
                    Some(error) => r.record_failure(at, error),
                    None => r.clone(),
                })
            },
        ))
        .await
    }

    async fn mark_exhausted(
        &self,
        claim: &ClaimedReminder,
        at: DateTime<Utc>,
        policy: &ReminderPolicy,
    ) -> Result<Fenced, StoreError> {
        self.bounded(writes::finish_claim(&self.collections, claim, None, |r| {
            r.mark_exhausted(at, policy)
        }))
        .await
    }

    async fn due_backlog(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.bounded(async {
            self.collections
                .reminders
                .count_documents(doc! { NEXT_DUE: { "$lte": date_down(now) } })
                .await
                .map_err(classify)
        })
        .await
    }

    async fn next_wake(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.bounded(self.earliest_wake()).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        let limit = self.settings.check_timeout;
        match tokio::time::timeout(
            limit,
            self.collections.database.run_command(doc! { "ping": 1 }),
        )
        .await
        {
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
