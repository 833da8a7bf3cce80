//! The writes: each a read, a domain function, then ONE fenced single-document write, retried
//! from the read when another writer moved the document first.
//!
//! The fence is `version`: every write, the claim included, moves it, and a state write is a
//! whole-document `replace_one` filtered on `{_id, version}` (an `insert_one` when the reminder
//! is new, where a duplicate key means another writer created it). A write that matches
//! nothing lost a race; it reads again and recomputes, so the domain decides on what is stored
//! now (the applied event ids, the lease holder, the attempt number). Replacing the whole
//! document also keeps the applied event ids an array of strings on nx-27017, which mangles
//! arrays grown by `$push`.

use chrono::{DateTime, Utc};
use enrollstream_domain::events::ApplicationEvent;
use enrollstream_domain::reminder::{
    self, Applied, Reminder, ReminderPolicy, ReminderStatus, Stale,
};
use enrollstream_ports::reminders::{ClaimedReminder, EventOutcome, Fenced};
use enrollstream_ports::StoreError;
use mongodb::bson::{doc, Document};
use mongodb::options::ReturnDocument;
use mongodb::Collection;

use super::record::{
    millis_down, millis_up, Record, LEASE_OWNER, LEASE_UNTIL, NEXT_DUE, STATUS, VERSION,
};
use crate::error::{classify, is_duplicate_key};

pub(super) async fn load(
    reminders: &Collection<Document>,
    application_id: &str,
) -> Result<Option<Record>, StoreError> {
    reminders
        .find_one(doc! { "_id": application_id })
        .await
        .map_err(classify)?
        .as_ref()
        .map(Record::from_doc)
        .transpose()
}

/// Writes `next` over `current` if nobody wrote since `current` was read; false if someone did.
async fn replace(
    reminders: &Collection<Document>,
    current: &Record,
    next: &Reminder,
    lease_owner: Option<&str>,
    lease_until_ms: Option<i64>,
) -> Result<bool, StoreError> {
    let document = Record::to_doc(next, current.version + 1, lease_owner, lease_until_ms)?;
    let result = reminders
        .replace_one(
            doc! { "_id": &next.application_id, VERSION: current.version },
            document,
        )
        .await
        .map_err(classify)?;
    Ok(result.matched_count == 1)
}

/// Creates the reminder; false if another writer created it first.
async fn insert(reminders: &Collection<Document>, next: &Reminder) -> Result<bool, StoreError> {
    match reminders
        .insert_one(Record::to_doc(next, 1, None, None)?)
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_duplicate_key(&e) => Ok(false),
        Err(e) => Err(classify(e)),
    }
}

pub(super) async fn apply_event(
    reminders: &Collection<Document>,
    event_id: &str,
    event: &ApplicationEvent,
    at: DateTime<Utc>,
    policy: &ReminderPolicy,
) -> Result<EventOutcome, StoreError> {
    let application_id = reminder::application_id(event);
    loop {
        let current = load(reminders, application_id).await?;
        let stored = current.as_ref().map(|c| &c.reminder);
        let next = match Reminder::apply(stored, event_id, event, at, policy) {
            Applied::Updated(next) => next,
            Applied::AlreadyApplied => return Ok(EventOutcome::AlreadyApplied),
            Applied::Ignored => return Ok(EventOutcome::Ignored),
        };
        let written = match &current {
            // The lease is carried over as read: the version fence makes sure it still is.
            Some(c) => {
                replace(
                    reminders,
                    c,
                    &next,
                    c.lease_owner.as_deref(),
                    c.lease_until_ms,
                )
                .await?
            }
            None => insert(reminders, &next).await?,
        };
        if written {
            return Ok(EventOutcome::Applied);
        }
    }
}

/// Leases due reminders one `findOneAndUpdate` each, earliest due first: the filter and the
/// lease are one atomic step per document, so two schedulers never get the same one.
pub(super) async fn claim_due(
    reminders: &Collection<Document>,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    owner: &str,
    limit: usize,
) -> Result<Vec<ClaimedReminder>, StoreError> {
    let now_ms = millis_down(now);
    let due = doc! {
        STATUS: ReminderStatus::AwaitingSignature.as_str(),
        NEXT_DUE: { "$lte": now_ms },
        "$or": [
            { LEASE_UNTIL: { "$exists": false } },
            { LEASE_UNTIL: { "$lte": now_ms } },
        ],
    };
    let lease = doc! {
        "$set": { LEASE_OWNER: owner, LEASE_UNTIL: millis_up(lease_until) },
        "$inc": { VERSION: 1_i64 },
    };
    let mut claimed = Vec::new();
    while claimed.len() < limit {
        let Some(document) = reminders
            .find_one_and_update(due.clone(), lease.clone())
            .sort(doc! { NEXT_DUE: 1, "_id": 1 })
            .return_document(ReturnDocument::After)
            .await
            .map_err(classify)?
        else {
            break;
        };
        claimed.push(ClaimedReminder {
            reminder: Record::from_doc(&document)?.reminder,
            owner: owner.to_string(),
            lease_until,
        });
    }
    Ok(claimed)
}

/// Finishes a claim: if `claim.owner` still holds the lease, applies `change` to the stored
/// reminder and ends the lease (claimable again from `retry_at`, or as soon as due).
pub(super) async fn finish_claim(
    reminders: &Collection<Document>,
    claim: &ClaimedReminder,
    retry_at: Option<DateTime<Utc>>,
    change: impl Fn(&Reminder) -> Result<Reminder, Stale>,
) -> Result<Fenced, StoreError> {
    let application_id = &claim.reminder.application_id;
    loop {
        let Some(current) = load(reminders, application_id).await? else {
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
        if replace(reminders, &current, &next, None, retry_at.map(millis_up)).await? {
            return Ok(Fenced::Applied);
        }
    }
}
