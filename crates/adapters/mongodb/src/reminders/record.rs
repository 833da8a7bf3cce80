//! One reminder document: the domain state, the fields the claims query, the lease and the
//! version that fences every write.
//!
//! `next_due_at_ms` and `lease_until_ms` are epoch milliseconds (Int64), not BSON dates:
//! nx-27017 stores a date written by `$set` (as the claim writes the lease) as a string, and
//! then both `$lte` and `$gt` of a date match it, so a live lease would look expired. Integers
//! compare and sort the same on MongoDB and on nx-27017. Stored times are rounded up to the
//! millisecond and `now` down, so a reminder is never claimed before its time nor a lease
//! taken before its end.
//!
//! A field without a value is left out, never `null`: nx-27017 matches a stored `null`
//! differently in `find` and in `findAndModify`, and not at all inside `$or`.

use chrono::{DateTime, Utc};
use enrollstream_domain::reminder::Reminder;
use enrollstream_ports::StoreError;
use mongodb::bson::{doc, Bson, Document};

use crate::codec::{to_bson, Fields};
use crate::error::corrupt;

pub(super) const VERSION: &str = "version";
pub(super) const STATUS: &str = "status";
pub(super) const NEXT_DUE: &str = "next_due_at_ms";
pub(super) const LEASE_OWNER: &str = "lease_owner";
pub(super) const LEASE_UNTIL: &str = "lease_until_ms";
const STATE: &str = "state";

/// A stored reminder as read: what a fenced write must carry over or compare against.
#[derive(Debug)]
pub(super) struct Record {
    pub(super) reminder: Reminder,
    pub(super) version: i64,
    pub(super) lease_owner: Option<String>,
    pub(super) lease_until_ms: Option<i64>,
}

impl Record {
    pub(super) fn from_doc(doc: &Document) -> Result<Self, StoreError> {
        let f = Fields::new(doc, "reminder");
        Ok(Self {
            reminder: f.json(STATE)?,
            version: f.i64(VERSION)?,
            lease_owner: f.opt_str(LEASE_OWNER)?,
            lease_until_ms: opt_i64(&f, doc, LEASE_UNTIL)?,
        })
    }

    /// The whole document of `reminder` at `version`, with the given lease.
    pub(super) fn to_doc(
        reminder: &Reminder,
        version: i64,
        lease_owner: Option<&str>,
        lease_until_ms: Option<i64>,
    ) -> Result<Document, StoreError> {
        let mut d = doc! {
            "_id": &reminder.application_id,
            VERSION: version,
            STATUS: reminder.status.as_str(),
            STATE: to_bson(reminder)?,
        };
        if let Some(due) = reminder.next_due_at {
            d.insert(NEXT_DUE, millis_up(due));
        }
        if let Some(owner) = lease_owner {
            d.insert(LEASE_OWNER, owner);
        }
        if let Some(until) = lease_until_ms {
            d.insert(LEASE_UNTIL, until);
        }
        Ok(d)
    }
}

fn opt_i64(f: &Fields<'_>, doc: &Document, field: &str) -> Result<Option<i64>, StoreError> {
    match doc.get(field) {
        None | Some(Bson::Null) => Ok(None),
        Some(_) => f.i64(field).map(Some),
    }
}

/// Rounded up: a stored due time or lease end is never earlier than the real one.
pub(super) fn millis_up(t: DateTime<Utc>) -> i64 {
    let millis = t.timestamp_millis();
    if t.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
        millis
    } else {
        millis + 1
    }
}

/// Rounded down: `now` never reaches a stored time before the real now does.
pub(super) fn millis_down(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(super) fn time(millis: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(millis)
        .ok_or_else(|| corrupt("reminder", format!("time {millis} ms is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn rounding_keeps_stored_times_on_the_safe_side() {
        let t: DateTime<Utc> = "2026-03-01T09:00:00.0015Z".parse().unwrap();
        assert_eq!(millis_up(t), millis_down(t) + 1);
        let whole = t - Duration::microseconds(500);
        assert_eq!(millis_up(whole), millis_down(whole));
        assert_eq!(time(millis_up(whole)).unwrap(), whole);
    }
}
