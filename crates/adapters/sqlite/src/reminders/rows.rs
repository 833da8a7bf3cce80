//! Rows of `reminders` and back, and the reads.

use chrono::{DateTime, Utc};
use enrollstream_domain::reminder::Reminder;
use enrollstream_ports::reminders::{ReminderQuery, ScheduledReminder};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use crate::sqlite::{json, parse_json, parse_time, time, Result};

/// One row: the domain state plus the lease the store keeps beside it.
pub(super) struct Row {
    pub reminder: Reminder,
    pub lease_owner: Option<String>,
}

pub(super) fn decode(state: &str) -> Result<Reminder> {
    parse_json("reminders.state", state)
}

pub(super) fn encode(reminder: &Reminder) -> Result<String> {
    json("reminders.state", reminder)
}

pub(super) fn load(conn: &Connection, application_id: &str) -> Result<Option<Row>> {
    let found: Option<(String, Option<String>)> = conn
        .query_row(
            "SELECT state, lease_owner FROM reminders WHERE application_id = ?1",
            params![application_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    found
        .map(|(state, lease_owner)| {
            Ok(Row {
                reminder: decode(&state)?,
                lease_owner,
            })
        })
        .transpose()
}

pub(super) fn due_backlog(conn: &Connection, now: DateTime<Utc>) -> Result<u64> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM reminders WHERE next_due_at IS NOT NULL AND next_due_at <= ?1",
        params![time(now)],
        |r| r.get(0),
    )?;
    Ok(n as u64)
}

pub(super) fn next_wake(conn: &Connection) -> Result<Option<DateTime<Utc>>> {
    let wake: Option<String> = conn.query_row(
        "SELECT MIN(CASE WHEN lease_until > next_due_at THEN lease_until ELSE next_due_at END)
         FROM reminders WHERE next_due_at IS NOT NULL",
        [],
        |r| r.get(0),
    )?;
    wake.map(|t| parse_time("reminders.next_due_at", &t))
        .transpose()
}

/// A page of the schedule in application id order. The statement names only the filters that
/// are set, so the `(status, application_id)` index serves the filtered listing.
pub(super) fn list(conn: &Connection, query: &ReminderQuery) -> Result<Vec<ScheduledReminder>> {
    let mut sql = String::from("SELECT state, lease_owner, lease_until FROM reminders WHERE 1 = 1");
    let mut args: Vec<Value> = Vec::new();
    if let Some(status) = query.status {
        sql.push_str(" AND status = ?");
        args.push(Value::Text(status.as_str().to_string()));
    }
    if let Some(after) = &query.after {
        sql.push_str(" AND application_id > ?");
        args.push(Value::Text(after.clone()));
    }
    sql.push_str(" ORDER BY application_id LIMIT ?");
    args.push(Value::Integer(
        i64::try_from(query.limit).unwrap_or(i64::MAX),
    ));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })?;
    let mut listed = Vec::new();
    for row in rows {
        let (state, lease_owner, lease_until) = row?;
        listed.push(ScheduledReminder {
            reminder: decode(&state)?,
            lease_owner,
            lease_until: lease_until
                .map(|t| parse_time("reminders.lease_until", &t))
                .transpose()?,
        });
    }
    Ok(listed)
}
