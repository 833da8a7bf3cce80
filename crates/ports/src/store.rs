//! The store port, shaped by what the pipeline needs: the event log, the current state of each
//! entity, the outbox of messages a change announces, and the API's idempotency keys.
//!
//! Every method is a single atomic effect in every adapter (no multi-document transactions on
//! MongoDB), and every write is fenced so that doing it twice is the same as doing it once.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use enrollstream_domain::notification::OutboxMessage;
use enrollstream_domain::{CloudEvent, EntityKind};

use crate::bus::OutboundMessage;
use std::collections::HashSet;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Unreachable or overloaded; the caller pauses and retries.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A bug, a corrupt row, or a misconfiguration; retrying will not help.
    #[error("store error: {0}")]
    Fatal(String),
}

/// One event as kept in the event log.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub event_id: String,
    pub entity_kind: EntityKind,
    pub entity_id: String,
    /// The entity's version after this event (1 for the first event of the entity).
    pub version: u64,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub envelope: CloudEvent,
    /// Where the event was read from, as "topic/partition/offset".
    pub source: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

/// The current state of one entity.
#[derive(Clone, Debug, PartialEq)]
pub struct EntityRecord {
    pub kind: EntityKind,
    pub id: String,
    pub version: u64,
    pub status: String,
    pub state: serde_json::Value,
    pub last_event_id: String,
    pub updated_at: DateTime<Utc>,
}

/// One event's effect on the read model, applied atomically: the event is appended to the log,
/// the entity moves from `expected_version` to `event.version`, and the outbox messages are
/// recorded, all or nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub event: StoredEvent,
    /// 0 when the entity does not exist yet.
    pub expected_version: u64,
    pub status: String,
    pub state: serde_json::Value,
    pub outbox: Vec<OutboxMessage>,
    /// Set while rebuilding the read model: the outbox messages were published when the event
    /// was first projected, so the store leaves none of them pending (it may record them as
    /// published, or not at all) and a replay never fires side effects a second time.
    pub replay: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied,
    /// The event id is already in the read model; nothing changed.
    AlreadyApplied,
    /// The entity is not at `expected_version`: someone else moved it (a rebalance overlap).
    /// The caller reloads the entity and tries again.
    Conflict {
        current_version: u64,
    },
    /// The store can never write this change (a number, a nesting depth or a size beyond what
    /// it keeps); nothing of it was written and retrying cannot help, so the caller parks the
    /// event. Only this change is refused: the others of the call are applied as usual, and a
    /// later change of the same entity, computed on top of this one, is a `Conflict`.
    Refused {
        reason: String,
    },
}

/// A recorded outbox message as the relay publishes it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredOutboxMessage {
    /// The message id (deterministic, derived from the causing event id).
    pub id: String,
    pub topic: String,
    /// Ready to publish: the CloudEvent in the bus binding (`codec::encode_outbox`). Stores keep
    /// it encoded where they can, so the relay neither parses nor re-encodes it.
    pub message: OutboundMessage,
    pub event_id: String,
    pub created_at: DateTime<Utc>,
}

impl StoredOutboxMessage {
    pub fn encode(message: &OutboxMessage, event_id: &str, created_at: DateTime<Utc>) -> Self {
        Self {
            id: message.id.clone(),
            topic: message.topic.clone(),
            message: crate::codec::encode_outbox(message),
            event_id: event_id.to_string(),
            created_at,
        }
    }
}

/// A remembered API write, keyed by the client's `Idempotency-Key`.
#[derive(Clone, Debug, PartialEq)]
pub struct IdempotencyRecord {
    pub key: String,
    /// Hash of method, path and body: the same key with another request is refused.
    pub fingerprint: String,
    pub topic: String,
    pub event: CloudEvent,
    pub status: u16,
    pub response: serde_json::Value,
    /// True once the event is known to be durably on the bus.
    pub published: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Reservation {
    /// First time this key is seen: the record was stored, go ahead and publish.
    Reserved,
    /// Seen before with the same request: answer with what is stored.
    Existing(Box<IdempotencyRecord>),
    /// Seen before with a different request.
    Mismatch,
}

/// A page of entities of one kind, in entity id order (ids are time-ordered UUIDv7s for the
/// entities the API creates, so this is roughly creation order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityQuery {
    pub kind: EntityKind,
    /// Only entities in this status.
    pub status: Option<String>,
    /// Only applications submitted by this broker (`submission.broker.id` of the state).
    pub broker_id: Option<String>,
    /// Only entities whose id sorts after this one (the cursor of the previous page).
    pub after: Option<String>,
    pub limit: usize,
}

/// Who holds a named lease, and until when (the holders' clock, the `Clock` port's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub owner: String,
    pub until: DateTime<Utc>,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Which of `event_ids` are already in the read model.
    async fn applied(&self, event_ids: &[String]) -> Result<HashSet<String>, StoreError>;

    async fn entity(&self, kind: EntityKind, id: &str) -> Result<Option<EntityRecord>, StoreError>;

    /// The entities among `keys` that exist, in any order. Adapters answer in one round trip
    /// where they can; this default asks one by one.
    async fn entities(
        &self,
        keys: &[(EntityKind, String)],
    ) -> Result<Vec<EntityRecord>, StoreError> {
        let mut found = Vec::with_capacity(keys.len());
        for (kind, id) in keys {
            if let Some(record) = self.entity(*kind, id).await? {
                found.push(record);
            }
        }
        Ok(found)
    }

    /// The entities matching `query`, at most `query.limit`, in id order.
    async fn list_entities(&self, query: &EntityQuery) -> Result<Vec<EntityRecord>, StoreError>;

    /// Apply changes in order. Each change is atomic on its own; adapters may group them into
    /// fewer round trips. Changes to one entity in one call chain by version.
    async fn apply(&self, changes: &[Change]) -> Result<Vec<ApplyOutcome>, StoreError>;

    /// The event log of one entity, oldest first.
    async fn event_log(&self, kind: EntityKind, id: &str) -> Result<Vec<StoredEvent>, StoreError>;

    /// Wait until `event_id` is in the read model, at most `timeout`. True if it is.
    async fn wait_applied(&self, event_id: &str, timeout: Duration) -> Result<bool, StoreError>;

    /// Drop the read model (event log, entities, outbox) before a rebuild. Idempotency keys and
    /// other roles' state stay.
    async fn reset_read_model(&self) -> Result<(), StoreError>;

    /// Outbox messages not yet published, oldest first.
    async fn pending_outbox(&self, limit: usize) -> Result<Vec<StoredOutboxMessage>, StoreError>;

    async fn mark_published(&self, ids: &[String]) -> Result<(), StoreError>;

    /// Resolves when new outbox messages may exist, or after `max`. A hint, never a guarantee.
    async fn wait_for_outbox(&self, max: Duration);

    /// Number of unpublished outbox messages (for metrics and `/readyz`).
    async fn outbox_backlog(&self) -> Result<u64, StoreError>;

    async fn reserve_idempotency(
        &self,
        record: &IdempotencyRecord,
    ) -> Result<Reservation, StoreError>;

    async fn mark_idempotency_published(&self, key: &str) -> Result<(), StoreError>;

    async fn check(&self) -> Result<(), StoreError>;

    /// Keep an outbox message the bus will never take (too large, say) outside the outbox,
    /// with the reason, so the relay can mark it published and move on without losing it.
    /// Fenced by the message id: parking it twice keeps it once.
    async fn park_outbox(
        &self,
        message: &StoredOutboxMessage,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The messages parked so far, oldest first, with their reasons.
    async fn parked_outbox(
        &self,
        limit: usize,
    ) -> Result<Vec<(StoredOutboxMessage, String)>, StoreError>;

    /// Take or renew the lease `name` for `owner` until `until`: one atomic, fenced write.
    /// `Ok(None)` when `owner` holds it now; `Ok(Some(holder))` when another owner holds it
    /// past `now`. A fence between roles that must not run together (a rebuild and a live
    /// projector); an expired lease goes to whoever asks.
    async fn take_lease(
        &self,
        name: &str,
        owner: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Lease>, StoreError>;

    /// Give the lease up if `owner` holds it.
    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError>;

    /// The leases whose names start with `prefix` and that last past `now`.
    async fn leases(&self, prefix: &str, now: DateTime<Utc>) -> Result<Vec<Lease>, StoreError>;

    /// The read model's generations, where this store keeps them (a rebuild without downtime
    /// builds the next one beside the active one); `None`: it rebuilds in place only.
    fn generations(&self) -> Option<&dyn crate::generations::Generations> {
        None
    }

    /// Which adapter this is ("sqlite", "mongodb").
    fn name(&self) -> &'static str;
}
