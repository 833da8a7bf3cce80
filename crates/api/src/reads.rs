//! Reads from the read model, with read-your-writes on request.
//!
//! `?after=<event id>` (or `X-Enrollstream-After`) makes a read wait until that event is
//! projected, at most `min(?wait_ms, max_read_wait)`. If it is not projected in time the answer is
//! `409 not-yet-projected` with `Retry-After: 1`: the state the client asked to see does not exist
//! yet, and answering 200 with an older state would silently break the guarantee it asked for.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Json;
use enrollstream_domain::EntityKind;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

use crate::commands::wait_until;
use crate::dto::{EventLog, EventLogEntry, ReadModelFields};
use crate::extract::{EntityId, ReadOptions};
use crate::problem::Problem;
use crate::Shared;

/// `GET /v1/{kind}s/{id}`: the entity's current state plus the read-model fields.
pub fn state(kind: EntityKind) -> MethodRouter<Shared> {
    get(
        move |shared: State<Shared>, id: EntityId, opts: ReadOptions| {
            entity(shared, kind, id, opts)
        },
    )
}

/// `GET /v1/{kind}s/{id}/events`: the entity's event log, oldest first.
pub fn log(kind: EntityKind) -> MethodRouter<Shared> {
    get(
        move |shared: State<Shared>, id: EntityId, opts: ReadOptions| {
            events(shared, kind, id, opts)
        },
    )
}

async fn entity(
    State(shared): State<Shared>,
    kind: EntityKind,
    EntityId(id): EntityId,
    opts: ReadOptions,
) -> Result<Response, Problem> {
    await_projected(&shared, &opts).await?;
    let record = shared
        .api
        .store
        .entity(kind, &id)
        .await
        .map_err(|e| Problem::store(&e))?
        .ok_or_else(|| Problem::not_found(kind.as_str(), &id))?;
    let Value::Object(mut body) = record.state else {
        return Err(Problem::internal(format!(
            "stored state of {kind} {id} is not a JSON object"
        )));
    };
    let fields = ReadModelFields {
        version: record.version,
        status: record.status,
        last_event_id: record.last_event_id,
        projected_at: record.updated_at,
    };
    if let Value::Object(extra) = serde_json::to_value(fields).expect("fields serialise") {
        body.extend(extra);
    }
    if kind == EntityKind::Application {
        if let Some(reminders) = &shared.api.reminders {
            let reminder = reminders.get(&id).await.map_err(|e| Problem::store(&e))?;
            body.insert("reminder".into(), reminder_view(reminder.as_ref()));
        }
    }
    Ok(Json(Value::Object(body)).into_response())
}

async fn events(
    State(shared): State<Shared>,
    kind: EntityKind,
    EntityId(id): EntityId,
    opts: ReadOptions,
) -> Result<Response, Problem> {
    await_projected(&shared, &opts).await?;
    let log = shared
        .api
        .store
        .event_log(kind, &id)
        .await
        .map_err(|e| Problem::store(&e))?;
    if log.is_empty() {
        return Err(Problem::not_found(kind.as_str(), &id));
    }
    let events = log
        .into_iter()
        .map(|e| EventLogEntry {
            event_id: e.event_id,
            ty: e.event_type,
            version: e.version,
            time: e.occurred_at,
            source: e.envelope.source,
            traceparent: e.envelope.traceparent,
            data: e.envelope.data,
            position: e.source,
            recorded_at: e.recorded_at,
        })
        .collect();
    Ok(Json(EventLog { events }).into_response())
}

async fn await_projected(shared: &Shared, opts: &ReadOptions) -> Result<(), Problem> {
    let max = shared.api.config.max_read_wait;
    let wait = opts
        .wait_ms
        .map(Duration::from_millis)
        .unwrap_or(max)
        .min(max);
    let deadline = Instant::now() + wait;
    for event_id in &opts.after {
        if !wait_until(shared, event_id, deadline).await? {
            return Err(Problem::not_yet_projected(event_id));
        }
    }
    Ok(())
}

/// What an operator or a broker portal needs to know of an application's signature reminders;
/// the fence bookkeeping (applied event ids, leases) stays inside the store.
fn reminder_view(reminder: Option<&enrollstream_domain::reminder::Reminder>) -> Value {
    let Some(r) = reminder else {
        return Value::Null;
    };
    serde_json::json!({
        "status": r.status,
        "signature_obtained": r.signature_obtained,
        "attempts": r.attempts,
        "last_sent_at": r.last_sent_at,
        "next_due_at": r.next_due_at,
        "exhausted_at": r.exhausted_at,
        "failures": r.failures,
        "last_error": r.last_error,
    })
}
