//! `POST /v1/events`: CloudEvents from upstream producers, one or a batch, in structured JSON.
//!
//! These are facts that already happened elsewhere, so only their shape is checked here (envelope,
//! data schema, `time`), never their transition: the projector decides, and dead-letters an event
//! that does not fit with its reason. The producer's `id` is kept, which makes a retried batch
//! harmless: every consumer is idempotent by event id. For the same reason `Idempotency-Key` is
//! not used on this route.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use enrollstream_domain::{CloudEvent, DomainEvent, FieldError};
use serde_json::Value;

use crate::dto::{AcceptedEvent, EventsAccepted};
use crate::extract::Body;
use crate::problem::Problem;
use crate::publish::publish;
use crate::Shared;

pub const STRUCTURED: &str = "application/cloudevents+json";
pub const BATCH: &str = "application/cloudevents-batch+json";
const JSON: &str = "application/json";

pub async fn ingest(State(shared): State<Shared>, body: Body) -> Result<Response, Problem> {
    let media_type = body.media_type.as_deref();
    if !matches!(media_type, Some(STRUCTURED | BATCH | JSON)) {
        return Err(Problem::unsupported_media_type(
            media_type,
            &[STRUCTURED, BATCH, JSON],
        ));
    }
    let (items, batch) = match body.json()? {
        Value::Array(items) => (items, true),
        _ if media_type == Some(BATCH) => {
            return Err(Problem::invalid(vec![FieldError::new(
                "$",
                "a batch must be a JSON array of CloudEvents",
            )]));
        }
        single => (vec![single], false),
    };
    if items.is_empty() {
        return Err(Problem::invalid(vec![FieldError::new(
            "$",
            "a batch needs at least one event",
        )]));
    }

    // All or nothing: every event is checked before any is published.
    let mut events = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let name = |field: &str| match (batch, field) {
            (false, f) => f.to_string(),
            (true, "$") => format!("[{index}]"),
            (true, f) => format!("[{index}].{f}"),
        };
        match check(item) {
            Ok(event) => events.push(event),
            Err(errs) => errors.extend(
                errs.into_iter()
                    .map(|e| FieldError::new(name(&e.field), e.reason)),
            ),
        }
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }

    // One publish per topic keeps the batch's order within each entity (one entity, one topic).
    let api = &shared.api;
    let mut by_topic: Vec<(String, Vec<CloudEvent>)> = Vec::new();
    for (event, kind) in &events {
        let topic = api.config.topics.events_for(*kind);
        match by_topic.iter_mut().find(|(t, _)| t == topic) {
            Some((_, list)) => list.push(event.clone()),
            None => by_topic.push((topic.to_string(), vec![event.clone()])),
        }
    }
    for (topic, list) in &by_topic {
        publish(api, topic, list).await?;
    }
    for (event, kind) in &events {
        shared.recent.remember(*kind, event.entity_id(), &event.id);
    }
    let accepted = events
        .into_iter()
        .map(|(e, _)| AcceptedEvent {
            subject: e.entity_id().to_string(),
            id: e.id,
            ty: e.ty,
        })
        .collect();
    Ok((StatusCode::ACCEPTED, Json(EventsAccepted { accepted })).into_response())
}

fn check(item: &Value) -> Result<(CloudEvent, enrollstream_domain::EntityKind), Vec<FieldError>> {
    let event = CloudEvent::from_json(item).map_err(|e| e.errors)?;
    let decoded = DomainEvent::from_cloud_event(&event).map_err(|e| e.errors)?;
    if event.time.is_none() {
        return Err(vec![FieldError::new(
            "time",
            "is required: the read model records when the fact happened",
        )]);
    }
    Ok((event, decoded.kind()))
}
