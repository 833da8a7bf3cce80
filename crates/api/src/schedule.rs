//! The reminder schedule over HTTP, for `admin` credentials: every broker signature reminder
//! with its status, attempts, due time, last attempt and lease, a page at a time in application
//! id order (`after` is the last id of the previous page, `next_after` says where the next one
//! starts). What an operator reads to see whether reminders go out, and which one is stuck.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, MethodRouter};
use axum::Json;
use chrono::{DateTime, Utc};
use enrollstream_domain::reminder::ReminderStatus;
use enrollstream_ports::reminders::{ReminderQuery, ReminderStore, ScheduledReminder};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

use crate::dlq::{invalid, limit, query, text, DEFAULT_LIMIT, MAX_LIMIT, MAX_TEXT};
use crate::problem::Problem;
use crate::Shared;

pub const LIST: &str = "/v1/admin/reminders";

const STATES: [ReminderStatus; 5] = [
    ReminderStatus::NotRequired,
    ReminderStatus::AwaitingSignature,
    ReminderStatus::Signed,
    ReminderStatus::Cancelled,
    ReminderStatus::Exhausted,
];

pub(crate) fn routes() -> Vec<(&'static str, MethodRouter<Shared>)> {
    vec![(LIST, get(list))]
}

fn store(shared: &Shared) -> Result<&Arc<dyn ReminderStore>, Problem> {
    shared.api.reminders.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "reminders-unavailable",
            "The reminder schedule is not available here",
            "this process was started without access to the reminder store",
        )
    })
}

/// `AWAITING_SIGNATURE` as stored, or `awaiting_signature` as typed.
fn state(raw: Option<&String>) -> Result<Option<ReminderStatus>, Problem> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    STATES
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(raw))
        .map(Some)
        .ok_or_else(|| {
            let known: Vec<&str> = STATES.iter().map(|s| s.as_str()).collect();
            invalid("state", format!("must be one of {}", known.join(", ")))
        })
}

async fn list(
    State(shared): State<Shared>,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Problem> {
    query(&raw, &["state", "after", "limit"])?;
    let q = ReminderQuery {
        status: state(raw.get("state"))?,
        after: text("after", raw.get("after"))?,
        limit: limit(raw.get("limit"))?,
    };
    let listed = store(&shared)?
        .list(&q)
        .await
        .map_err(|e| Problem::store(&e))?;
    let now = shared.api.clock.now();
    let next_after = (listed.len() == q.limit)
        .then(|| listed.last().map(|s| s.reminder.application_id.clone()))
        .flatten();
    let reminders: Vec<Value> = listed.iter().map(|s| view(s, now)).collect();
    Ok(Json(
        json!({"reminders": reminders, "next_after": next_after, "now": now}),
    ))
}

/// One row of the schedule. The lease is spelt out, since "nobody holds it" and "its holder
/// died" look alike otherwise: `held` (a scheduler is sending), `expired` (its holder stopped
/// before finishing; claimable again), `backoff` (a failed send waits until `until`).
fn view(s: &ScheduledReminder, now: DateTime<Utc>) -> Value {
    let r = &s.reminder;
    let lease = match (&s.lease_owner, s.lease_until) {
        (Some(owner), until) => {
            let held = until.is_some_and(|u| u > now);
            json!({"owner": owner, "until": until, "state": if held { "held" } else { "expired" }})
        }
        (None, Some(until)) if until > now => {
            json!({"owner": null, "until": until, "state": "backoff"})
        }
        (None, _) => Value::Null,
    };
    let broker = r
        .broker()
        .map(|b| json!({"id": b.id, "name": b.name, "email": b.email}));
    json!({
        "application_id": r.application_id,
        "status": r.status,
        "attempts": r.attempts,
        "next_due_at": r.next_due_at,
        "overdue": r.next_due_at.is_some_and(|due| due <= now),
        "last_sent_at": r.last_sent_at,
        "failures": r.failures,
        "last_error": r.last_error,
        "submitted_at": r.submission.as_ref().map(|s| s.at),
        "exhausted_at": r.exhausted_at,
        "broker": broker,
        "lease": lease,
        "updated_at": r.updated_at,
    })
}

/// The route in the OpenAPI document (`security` adds who may call it).
pub fn document(doc: &mut Value) {
    let problem =
        json!({"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}});
    let answer =
        |description: &str| json!({"description": description, "content": problem.clone()});
    let param = |name: &str, description: &str, schema: Value| json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema});
    let time = json!({"type": ["string", "null"], "format": "date-time"});
    let states: Vec<&str> = STATES.iter().map(|s| s.as_str()).collect();
    let row = json!({"type": "object", "properties": {
        "application_id": {"type": "string"},
        "status": {"enum": states},
        "attempts": {"type": "integer", "description": "Reminders sent (or refused for good by the mail server)"},
        "next_due_at": time, "overdue": {"type": "boolean", "description": "Due at or before `now`: the scheduler should have sent it"},
        "last_sent_at": time, "failures": {"type": "integer", "description": "Failed sends since the last attempt (not consuming attempts)"},
        "last_error": {"type": ["string", "null"]}, "submitted_at": time, "exhausted_at": time,
        "broker": {"type": ["object", "null"], "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "email": {"type": "string"}}},
        "lease": {"type": ["object", "null"], "description": "held: a scheduler is sending; expired: its holder stopped, claimable again; backoff: a failed send waits until `until`", "properties": {
            "owner": {"type": ["string", "null"]}, "until": time, "state": {"enum": ["held", "expired", "backoff"]}}},
        "updated_at": {"type": "string", "format": "date-time"},
    }});
    doc["paths"][LIST]["get"] = json!({
        "summary": "The reminder schedule: broker signature reminders in application id order, a page at a time",
        "parameters": [
            param("state", "Only reminders in this status (case-insensitive)", json!({"enum": states})),
            param("after", "Only application ids after this one: the `next_after` of the previous page", json!({"type": "string", "maxLength": MAX_TEXT})),
            param("limit", "At most this many", json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT})),
        ],
        "responses": {
            "200": {"description": "A page of the schedule; `next_after` is null on the last page", "content": {"application/json": {"schema": {"type": "object", "properties": {
                "reminders": {"type": "array", "items": row},
                "next_after": {"type": ["string", "null"]},
                "now": {"type": "string", "format": "date-time"}}}}}},
            "422": answer("a parameter is unknown or out of bounds"),
            "503": answer("the reminder store is unavailable, or not open in this process"),
        },
    });
}
