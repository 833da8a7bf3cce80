//! The writes, each one `BEGIN IMMEDIATE` transaction on one row.

use chrono::{DateTime, Utc};
use enrollstream_domain::events::ApplicationEvent;
use enrollstream_domain::reminder::{self, Applied, Reminder, ReminderPolicy, Stale};
use enrollstream_ports::reminders::{ClaimedReminder, EventOutcome, Fenced};
use rusqlite::{params, Connection, Transaction};

use super::rows::{self, decode, encode};
use crate::sqlite::{immediate, time, Result};

/// Write the reminder's state and the columns derived from it; the lease is left alone.
fn save(tx: &Transaction<'_>, reminder: &Reminder) -> Result<()> {
    tx.execute(
        "INSERT INTO reminders (application_id, status, next_due_at, state, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (application_id) DO UPDATE SET
           status = excluded.status, next_due_at = excluded.next_due_at,
           state = excluded.state, updated_at = excluded.updated_at",
        params![
            reminder.application_id,
            reminder.status.as_str(),
            reminder.next_due_at.map(time),
            encode(reminder)?,
            time(reminder.updated_at),
        ],
    )?;
    Ok(())
}

pub(super) fn apply_event(
    conn: &mut Connection,
    event_id: &str,
    event: &ApplicationEvent,
    at: DateTime<Utc>,
    policy: &ReminderPolicy,
) -> Result<EventOutcome> {
    let tx = immediate(conn)?;
    let application_id = reminder::application_id(event);
    let current = rows::load(&tx, application_id)?.map(|row| row.reminder);
    let outcome = match Reminder::apply(current.as_ref(), event_id, event, at, policy) {
        Applied::Updated(next) => {
            save(&tx, &next)?;
            EventOutcome::Applied
        }
        Applied::AlreadyApplied => EventOutcome::AlreadyApplied,
        Applied::Ignored => EventOutcome::Ignored,
    };
    tx.commit()?;
    Ok(outcome)
}

pub(super) fn claim_due(
    conn: &mut Connection,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    owner: &str,
    limit: usize,
) -> Result<Vec<ClaimedReminder>> {
    let tx = immediate(conn)?;
    let due: Vec<(String, String)> = {
        let mut stmt = tx.prepare(
            "SELECT application_id, state FROM reminders
             WHERE next_due_at IS NOT NULL AND next_due_at <= ?1
               AND (lease_until IS NULL OR lease_until <= ?1)
             ORDER BY next_due_at, application_id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![time(now), limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        rows.collect::<std::result::Result<_, _>>()?
    };
    let mut claimed = Vec::with_capacity(due.len());
    for (application_id, state) in due {
        tx.execute(
            "UPDATE reminders SET lease_owner = ?2, lease_until = ?3 WHERE application_id = ?1",
            params![application_id, owner, time(lease_until)],
        )?;
        claimed.push(ClaimedReminder {
            reminder: decode(&state)?,
            owner: owner.to_string(),
            lease_until,
        });
    }
    tx.commit()?;
    Ok(claimed)
}

/// Finish a claim: if `claim.owner` still holds the lease, apply `change` to the stored
/// reminder, save it and end the lease (`lease_until = retry_at`, claimable again from then).
pub(super) fn finish_claim(
    conn: &mut Connection,
    claim: &ClaimedReminder,
    retry_at: Option<DateTime<Utc>>,
    change: impl FnOnce(&Reminder) -> std::result::Result<Reminder, Stale>,
) -> Result<Fenced> {
    let tx = immediate(conn)?;
    let application_id = &claim.reminder.application_id;
    let Some(row) = rows::load(&tx, application_id)? else {
        return Ok(Fenced::Stale(format!("reminder {application_id} is gone")));
    };
    if row.lease_owner.as_deref() != Some(claim.owner.as_str()) {
        return Ok(Fenced::Stale(format!(
            "reminder {application_id} is no longer leased to {} (holder: {})",
            claim.owner,
            row.lease_owner.as_deref().unwrap_or("nobody")
        )));
    }
    let next = match change(&row.reminder) {
        Ok(next) => next,
        Err(stale) => return Ok(Fenced::Stale(stale.to_string())),
    };
    save(&tx, &next)?;
    tx.execute(
        "UPDATE reminders SET lease_owner = NULL, lease_until = ?2 WHERE application_id = ?1",
        params![application_id, retry_at.map(time)],
    )?;
    tx.commit()?;
    Ok(Fenced::Applied)
}
