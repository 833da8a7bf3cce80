//! One reminder version: the domain state, the fields the claims query, the lease and the
//! version number. The same document is a version in `reminder_versions` (`_id` =
//! `"{application_id}#{version}"`, inserted once: the fence) and the head in `reminders`
//! (`_id` = application id, a copy of the latest version the claims query).
//!
//! Times are BSON dates, which keep milliseconds: stored times are rounded up to the
//! millisecond and `now` down, so a reminder is never claimed before its time nor a lease taken
//! before its end. A field without a value is left out.

use chrono::{DateTime, Utc};
use enrollstream_domain::reminder::Reminder;
use enrollstream_ports::StoreError;
use mongodb::bson::{doc, Bson, DateTime as BsonDate, Document};

use crate::codec::{to_bson, Fields};

pub(super) const VERSION: &str = "version";
pub(super) const STATUS: &str = "status";
pub(super) const NEXT_DUE: &str = "next_due_at";
pub(super) const LEASE_OWNER: &str = "lease_owner";
pub(super) const LEASE_UNTIL: &str = "lease_until";
pub(super) const APPLICATION: &str = "application_id";
pub(super) const STATE: &str = "state";

/// A stored reminder version as read: what the next version builds on.
#[derive(Clone, Debug)]
pub(super) struct Record {
    pub(super) reminder: Reminder,
    pub(super) version: i64,
    pub(super) lease_owner: Option<String>,
    pub(super) lease_until: Option<Bson>,
}

impl Record {
    pub(super) fn from_doc(doc: &Document) -> Result<Self, StoreError> {
        let f = Fields::new(doc, "reminder");
        // Read to check it is a date; carried over as stored.
        f.opt_date(LEASE_UNTIL)?;
        Ok(Self {
            reminder: f.json(STATE)?,
            version: f.i64(VERSION)?,
            lease_owner: f.opt_str(LEASE_OWNER)?,
            lease_until: doc.get(LEASE_UNTIL).cloned(),
        })
    }

    /// The head document of `reminder` at `version`, with the given lease.
    pub(super) fn head(
        reminder: &Reminder,
        version: i64,
        lease_owner: Option<&str>,
        lease_until: Option<Bson>,
    ) -> Result<Document, StoreError> {
        let mut d = doc! {
            "_id": &reminder.application_id,
            VERSION: version,
            STATUS: reminder.status.as_str(),
            STATE: to_bson(reminder).map_err(|e| StoreError::Fatal(e.0))?,
        };
        if let Some(due) = reminder.next_due_at {
            d.insert(NEXT_DUE, date_up(due));
        }
        if let Some(owner) = lease_owner {
            d.insert(LEASE_OWNER, owner);
        }
        if let Some(until) = lease_until {
            d.insert(LEASE_UNTIL, until);
        }
        Ok(d)
    }
}

/// `_id` of a version: unique per application and version (the version has no `#`).
pub(super) fn version_id(application_id: &str, version: i64) -> String {
    format!("{application_id}#{version}")
}

/// The version document of a head: the same fields under its own `_id`.
pub(super) fn version_doc(head: &Document) -> Result<Document, StoreError> {
    let f = Fields::new(head, "reminder");
    let application_id = f.str("_id")?;
    let mut d = head.clone();
    d.insert("_id", version_id(application_id, f.i64(VERSION)?));
    d.insert(APPLICATION, application_id);
    Ok(d)
}

/// The head document of a version.
pub(super) fn head_of(version: &Document) -> Result<Document, StoreError> {
    let f = Fields::new(version, "reminder version");
    let mut d = version.clone();
    d.insert("_id", f.str(APPLICATION)?);
    d.remove(APPLICATION);
    Ok(d)
}

/// Rounded up: a stored due time or lease end is never earlier than the real one.
pub(super) fn date_up(t: DateTime<Utc>) -> Bson {
    let millis = t.timestamp_millis();
    let up = if t.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
        millis
    } else {
        millis + 1
    };
    Bson::DateTime(BsonDate::from_millis(up))
}

/// Rounded down: `now` never reaches a stored time before the real now does.
pub(super) fn date_down(t: DateTime<Utc>) -> Bson {
    Bson::DateTime(BsonDate::from_millis(t.timestamp_millis()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn millis(b: Bson) -> i64 {
        b.as_datetime().expect("a date").timestamp_millis()
    }

    #[test]
    fn rounding_keeps_stored_times_on_the_safe_side() {
        let t: DateTime<Utc> = "2026-03-01T09:00:00.0015Z".parse().unwrap();
        assert_eq!(millis(date_up(t)), millis(date_down(t)) + 1);
        let whole = t - Duration::microseconds(500);
        assert_eq!(millis(date_up(whole)), millis(date_down(whole)));
    }

    #[test]
    fn version_ids_do_not_collide() {
        assert_ne!(version_id("A#1", 2), version_id("A", 12));
        assert_eq!(version_id("A-1", 3), "A-1#3");
    }
}
