//! The reminder store port: durable timers for broker signature reminders.
//!
//! Each reminder is one record (one row, one document) holding the domain state
//! ([`Reminder`]), its due time and a lease. Every method is one atomic write to one record, so
//! an adapter needs no transaction spanning records:
//!
//! - `apply_event` folds an event in with [`Reminder::apply`]; the event id list inside the
//!   record is the fence that makes a redelivery a no-op. It leaves the lease alone.
//! - `claim_due` leases due, unleased reminders to one scheduler: a conditional update per
//!   record (SQLite: `UPDATE … WHERE next_due_at <= now AND (lease_until IS NULL OR
//!   lease_until <= now)` under the write lock; MongoDB: `findOneAndUpdate` with that filter),
//!   so two schedulers never hold the same record at once.
//! - `record_attempt`, `release` and `mark_exhausted` are fenced on the lease owner (and the
//!   domain fences the attempt number), then clear the lease.
//!
//! Adapters without a multi-statement lock (MongoDB) do the read-compute-write of the domain
//! functions as a compare-and-set on a version field of the record and retry on a lost race.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use enrollstream_domain::events::ApplicationEvent;
use enrollstream_domain::reminder::{Reminder, ReminderPolicy, ReminderStatus};

use crate::store::StoreError;

/// A reminder leased to one scheduler (`owner`) until `lease_until`. It is the handle for the
/// writes that finish the claim.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedReminder {
    pub reminder: Reminder,
    pub owner: String,
    pub lease_until: DateTime<Utc>,
}

/// One reminder as the schedule lists it: the state and the lease kept beside it.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduledReminder {
    pub reminder: Reminder,
    /// The scheduler holding the claim while a send is under way (or that held it when it
    /// died: the lease then runs out at `lease_until`).
    pub lease_owner: Option<String>,
    /// With an owner, the claim's end; without one, the time a released reminder (a failed
    /// send) may be claimed again.
    pub lease_until: Option<DateTime<Utc>>,
}

/// Which reminders `ReminderStore::list` returns: application id order, a page at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReminderQuery {
    /// Only reminders in this status.
    pub status: Option<ReminderStatus>,
    /// Only application ids that sort after this one (the last id of the previous page).
    pub after: Option<String>,
    pub limit: usize,
}

/// What applying an event did to the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventOutcome {
    Applied,
    /// This event id was applied before; nothing changed.
    AlreadyApplied,
    /// The event does not concern reminders; nothing was written.
    Ignored,
}

/// The result of a write fenced on a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fenced {
    Applied,
    /// Refused: the lease went to another scheduler, the attempt was recorded already, or the
    /// reminder stopped or is gone. The reason says which.
    Stale(String),
}

#[async_trait]
pub trait ReminderStore: Send + Sync {
    /// Fold one application event into the reminder of its application, creating the record
    /// when needed. `at` is when the event happened.
    async fn apply_event(
        &self,
        event_id: &str,
        event: &ApplicationEvent,
        at: DateTime<Utc>,
        policy: &ReminderPolicy,
    ) -> Result<EventOutcome, StoreError>;

    async fn get(&self, application_id: &str) -> Result<Option<Reminder>, StoreError>;

    /// The schedule: up to `query.limit` reminders with their leases, in application id order
    /// (byte order of the id), so a cursor of the last id read pages through all of them once.
    async fn list(&self, query: &ReminderQuery) -> Result<Vec<ScheduledReminder>, StoreError>;

    /// Lease up to `limit` reminders due at `now` (due time reached, no live lease) to `owner`
    /// until `lease_until`, earliest due first.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<ClaimedReminder>, StoreError>;

    /// Record reminder `attempt` as done at `at` (sent, or refused for good with `refused`),
    /// schedule the next step one interval later and clear the lease. Fenced on the claim's
    /// owner and on `attempt` being the next one.
    async fn record_attempt(
        &self,
        claim: &ClaimedReminder,
        attempt: u32,
        at: DateTime<Utc>,
        refused: Option<&str>,
        policy: &ReminderPolicy,
    ) -> Result<Fenced, StoreError>;

    /// Give the claim back without consuming an attempt; the reminder is not claimable before
    /// `retry_at`. With `failure`, the failed send is counted and its error kept.
    async fn release(
        &self,
        claim: &ClaimedReminder,
        retry_at: DateTime<Utc>,
        failure: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Fenced, StoreError>;

    /// Flag the claimed reminder as exhausted and clear the lease. Fenced on the claim's owner;
    /// stale if the signature or a withdrawal arrived meanwhile.
    async fn mark_exhausted(
        &self,
        claim: &ClaimedReminder,
        at: DateTime<Utc>,
        policy: &ReminderPolicy,
    ) -> Result<Fenced, StoreError>;

    /// How many reminders are due at `now` (leased or not): the scheduler's backlog.
    async fn due_backlog(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// The earliest time a reminder known now becomes claimable (its due time, or its lease's
    /// end if later); `None` when nothing is scheduled.
    async fn next_wake(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    async fn check(&self) -> Result<(), StoreError>;

    /// Which adapter this is ("sqlite", "mongodb").
    fn name(&self) -> &'static str;
}
