//! `POST /v1/events`: CloudEvents from upstream producers, one or a batch, in structured JSON.
//!
//! These are facts that already happened elsewhere, so only their shape is checked here (envelope,
//! data schema, `time`, the limits), never their transition: the projector decides, and
//! dead-letters an event that does not fit with its reason. The producer's `id` (a UUID) is kept,
//! which makes a retried batch harmless: the read model dedupes by `(source, id)`, answered as
//! `event_key` (pass it as `?after=`). For the same reason `Idempotency-Key` is not used on this
//! route. Types only enrollstream produces and enrollstream's own sources are refused.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use enrollstream_domain::envelope::OWN_SOURCE_PREFIX;
use enrollstream_domain::events::INTERNAL_TYPES;
use enrollstream_domain::limits::Limits;
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
        match check(
            item,
            &shared.api.config.event_limits,
            shared.api.clock.now(),
        ) {
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
        shared
            .recent
            .remember(*kind, event.entity_id(), &event.key());
    }
    let accepted = events
        .into_iter()
        .map(|(e, _)| AcceptedEvent {
            subject: e.entity_id().to_string(),
            event_key: e.key(),
            id: e.id,
            ty: e.ty,
        })
        .collect();
    Ok((StatusCode::ACCEPTED, Json(EventsAccepted { accepted })).into_response())
}

/// What an upstream event must be to be accepted: a valid CloudEvent of a known, public type,
/// with an id that is a UUID, a source that is not ours, and everything within the limits.
fn check(
    item: &Value,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<(CloudEvent, enrollstream_domain::EntityKind), Vec<FieldError>> {
    let event = CloudEvent::from_json(item).map_err(|e| e.errors)?;
    let decoded = DomainEvent::from_cloud_event(&event).map_err(|e| e.errors)?;
    let mut errors = Vec::new();
    if event.time.is_none() {
        errors.push(FieldError::new(
            "time",
            "is required: the read model records when the fact happened",
        ));
    }
    if uuid::Uuid::try_parse(&event.id).is_err() {
        errors.push(FieldError::new(
            "id",
            "must be a UUID (e.g. 0192f4c1-7d2e-7a3b-9c4d-5e6f7a8b9c0d)",
        ));
    }
    if INTERNAL_TYPES.contains(&event.ty.as_str()) {
        errors.push(FieldError::new(
            "type",
            "is an event enrollstream produces itself; it is not accepted from outside",
        ));
    }
    if event
        .source
        .to_ascii_lowercase()
        .starts_with(OWN_SOURCE_PREFIX.trim_end_matches('/'))
    {
        errors.push(FieldError::new(
            "source",
            format!("{OWN_SOURCE_PREFIX}… is enrollstream's own source; name your producer"),
        ));
    }
    errors.extend(limits.check(&event, &decoded));
    errors.extend(limits.check_times(&event, &decoded, now));
    limits.check_size(item.to_string().len(), &mut errors);
    if errors.is_empty() {
        Ok((event, decoded.kind()))
    } else {
        Err(errors)
    }
}
