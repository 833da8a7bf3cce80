//! The writes: each reads the latest version, lets the domain decide, then inserts the next
//! version, retried from the read when another writer inserted it first.
//!
//! The insert into `reminder_versions` (`_id` = application and version) is the write: a
//! unique `_id` makes it atomic on any server, so of two writers building on the same version
//! exactly one succeeds, and the other reads again and recomputes on what is stored now (the
//! applied event ids, the lease holder, the attempt number). A conditional update cannot do
//! that on FerretDB, whose updates read and then write the whole document unguarded.
//!
//! The head in `reminders` is copied from the latest version after the insert, with a filter
//! that only moves it forward (on MongoDB; FerretDB may briefly put an older copy back). The
//! claims query heads, so a head that lags (a writer died between its insert and its copy) or
//! fell back shows a stale reminder: a write built on it finds its version taken, and `load`,
//! which always looks for the versions above the head, brings the head up to date before the
//! retry. The versions are the reminder's history: a handful per attempt, kept beside it.

use chrono::{DateTime, Utc};
use enrollstream_domain::events::ApplicationEvent;
use enrollstream_domain::reminder::{
    self, Applied, Reminder, ReminderPolicy, ReminderStatus, Stale,
};
use enrollstream_ports::reminders::{ClaimedReminder, EventOutcome, Fenced};
use enrollstream_ports::StoreError;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};

use super::record::{
    date_down, date_up, head_of, version_doc, version_id, Record, LEASE_UNTIL, NEXT_DUE, STATUS,
    VERSION,
};
use super::Collections;
use crate::db::{update_batch, Statement, UpdateTarget};
use crate::error::{classify, duplicate_positions, is_duplicate_key};

/// Rounds of a batch claim that lost reminders to other writers before it gives back what it
/// has; each round brings the lost reminders' heads up to date.
const CLAIM_ROUNDS: usize = 8;

/// The latest version of a reminder: its head, then any versions above it (each brought into
/// the head on the way).
pub(super) async fn load(
    c: &Collections,
    application_id: &str,
) -> Result<Option<Record>, StoreError> {
    let head = c
        .reminders
        .find_one(doc! { "_id": application_id })
        .await
        .map_err(classify)?;
    let mut latest = head.as_ref().map(Record::from_doc).transpose()?;
    let mut newer = None;
    loop {
        let next = latest.as_ref().map_or(1, |r| r.version + 1);
        let Some(version) = c
            .versions
            .find_one(doc! { "_id": version_id(application_id, next) })
            .await
            .map_err(classify)?
        else {
            break;
        };
        latest = Some(Record::from_doc(&version)?);
        newer = Some(version);
    }
    if let Some(version) = newer {
        copy_to_head(c, &head_of(&version)?).await;
    }
    Ok(latest)
}

/// Moves the head forward to `head` (never back, where updates are atomic). A copy that fails
/// is logged, not returned: the version it copies is written, and the next `load` copies it.
async fn copy_to_head(c: &Collections, head: &Document) {
    let id = head.get_str("_id").unwrap_or_default();
    let version = head.get_i64(VERSION).unwrap_or_default();
    let filter = doc! { "_id": id, VERSION: { "$lt": version } };
    match c.reminders.replace_one(filter, head).upsert(true).await {
        Ok(_) => {}
        // The head exists at this version or later: someone else moved it.
        Err(e) if is_duplicate_key(&e) => {}
        Err(e) => tracing::warn!(reminder = id, error = %classify(e), "reminder head not copied"),
    }
}

/// Writes the version after `current` (the first when `None`); false if another writer
/// inserted that version first.
async fn write(
    c: &Collections,
    current: Option<&Record>,
    next: &Reminder,
    lease_owner: Option<&str>,
    lease_until: Option<Bson>,
) -> Result<bool, StoreError> {
    let version = current.map_or(1, |r| r.version + 1);
    let head = Record::head(next, version, lease_owner, lease_until)?;
    match c.versions.insert_one(version_doc(&head)?).await {
        Ok(_) => {}
        Err(e) if is_duplicate_key(&e) => return Ok(false),
        Err(e) => return Err(classify(e)),
    }
    copy_to_head(c, &head).await;
    Ok(true)
}

pub(super) async fn apply_event(
    c: &Collections,
    event_id: &str,
    event: &ApplicationEvent,
    at: DateTime<Utc>,
    policy: &ReminderPolicy,
) -> Result<EventOutcome, StoreError> {
    let application_id = reminder::application_id(event);
    loop {
        let current = load(c, application_id).await?;
        let stored = current.as_ref().map(|r| &r.reminder);
        let next = match Reminder::apply(stored, event_id, event, at, policy) {
            Applied::Updated(next) => next,
            Applied::AlreadyApplied => return Ok(EventOutcome::AlreadyApplied),
            Applied::Ignored => return Ok(EventOutcome::Ignored),
        };
        // The lease is carried over as read: the version fence makes sure it still is.
        let (owner, until) = current.as_ref().map_or((None, None), |r| {
            (r.lease_owner.as_deref(), r.lease_until.clone())
        });
        if write(c, current.as_ref(), &next, owner, until).await? {
            return Ok(EventOutcome::Applied);
        }
    }
}

/// Leases due reminders, earliest due first, a batch at a time: the due heads, then one
/// insert of the next version of each with the lease. A reminder whose version was taken
/// meanwhile is another writer's; its head is brought up to date and the claim looks again.
pub(super) async fn claim_due(
    c: &Collections,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    owner: &str,
    limit: usize,
) -> Result<Vec<ClaimedReminder>, StoreError> {
    let now_ms = date_down(now);
    let due = doc! {
        STATUS: ReminderStatus::AwaitingSignature.as_str(),
        NEXT_DUE: { "$lte": now_ms.clone() },
        "$or": [
            { LEASE_UNTIL: { "$exists": false } },
            { LEASE_UNTIL: { "$lte": now_ms } },
        ],
    };
    let mut claimed = Vec::new();
    for _ in 0..CLAIM_ROUNDS {
        if claimed.len() >= limit {
            break;
        }
        let heads: Vec<Document> = c
            .reminders
            .find(due.clone())
            .sort(doc! { NEXT_DUE: 1, "_id": 1 })
            .limit(i64::try_from(limit - claimed.len()).unwrap_or(i64::MAX))
            .await
            .map_err(classify)?
            .try_collect()
            .await
            .map_err(classify)?;
        if heads.is_empty() {
            break;
        }
        let candidates = heads
            .iter()
            .map(Record::from_doc)
            .collect::<Result<Vec<_>, _>>()?;
        let leased = candidates
            .iter()
            .map(|r| {
                Record::head(
                    &r.reminder,
                    r.version + 1,
                    Some(owner),
                    Some(date_up(lease_until)),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let versions = leased
            .iter()
            .map(version_doc)
            .collect::<Result<Vec<_>, _>>()?;
        let lost: Vec<usize> = match c.versions.insert_many(versions).ordered(false).await {
            Ok(_) => Vec::new(),
            Err(e) => duplicate_positions(e)?,
        };
        let mut copies = Vec::new();
        for (i, (record, head)) in candidates.iter().zip(&leased).enumerate() {
            if lost.contains(&i) {
                continue;
            }
            copies.push(Statement {
                filter: doc! { "_id": &record.reminder.application_id, VERSION: { "$lt": record.version + 1 } },
                update: head.clone(),
                upsert: false,
            });
            claimed.push(ClaimedReminder {
                reminder: record.reminder.clone(),
                owner: owner.to_string(),
                lease_until,
            });
        }
        let target = UpdateTarget {
            database: &c.database,
            timeout: c.timeout,
            lookups: c.lookups,
        };
        if let Err(e) = update_batch(&target, super::COLLECTION, &copies).await {
            tracing::warn!(error = %e, "claimed reminders' heads not copied; the next load copies them");
        }
        if lost.is_empty() {
            break;
        }
        let stale: Vec<&str> = lost
            .iter()
            .map(|&i| candidates[i].reminder.application_id.as_str())
            .collect();
        for application_id in stale {
            load(c, application_id).await?;
        }
    }
    Ok(claimed)
}

/// Finishes a claim: if `claim.owner` still holds the lease, applies `change` to the stored
/// reminder and ends the lease (claimable again from `retry_at`, or as soon as due).
pub(super) async fn finish_claim(
    c: &Collections,
    claim: &ClaimedReminder,
    retry_at: Option<DateTime<Utc>>,
    change: impl Fn(&Reminder) -> Result<Reminder, Stale>,
) -> Result<Fenced, StoreError> {
    let application_id = &claim.reminder.application_id;
    loop {
        let Some(current) = load(c, application_id).await? else {
            return Ok(Fenced::Stale(format!("reminder {application_id} is gone")));
        };
        if current.lease_owner.as_deref() != Some(claim.owner.as_str()) {
            return Ok(Fenced::Stale(format!(
                "reminder {application_id} is no longer leased to {} (holder: {})",
                claim.owner,
                current.lease_owner.as_deref().unwrap_or("nobody")
            )));
        }
        let next = match change(&current.reminder) {
            Ok(next) => next,
            Err(stale) => return Ok(Fenced::Stale(stale.to_string())),
        };
        if write(c, Some(&current), &next, None, retry_at.map(date_up)).await? {
            return Ok(Fenced::Applied);
        }
    }
}
