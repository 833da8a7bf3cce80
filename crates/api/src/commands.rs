//! Commands: a request becomes one validated domain event, wrapped in a CloudEvent and published
//! to the entity's topic; 202 once the bus has it durably.
//!
//! Consistency: the API checks a command against the read model, but the projector is the
//! authority. Two commands racing on one entity can both pass here; the projector applies the
//! first and dead-letters the loser with its reason (invalid transition). The check exists to
//! give the client an immediate, exact 404/409 in the common case, not to serialise writers.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use enrollstream_domain::envelope::{continue_trace, trace_id};
use enrollstream_domain::ids::new_id;
use enrollstream_domain::projection::{project, ProjectionError};
use enrollstream_domain::{CloudEvent, DomainEvent, EntityKind, FieldError};
use enrollstream_ports::{IdempotencyRecord, Reservation};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use tokio::time::Instant;
use tracing::field::Empty;
use tracing::Instrument;

use crate::dto::{self, CommandBody};
use crate::extract::{self, Body, EntityId};
use crate::problem::Problem;
use crate::publish::publish;
use crate::Shared;

/// What the idempotency fingerprint and the traceparent are taken from.
pub struct CommandRequest {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
}

impl<S: Send + Sync> FromRequestParts<S> for CommandRequest {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
            headers: parts.headers.clone(),
        })
    }
}

/// A command as either transport (REST, GraphQL) hands it to `execute`: the body as JSON, the
/// fingerprint its `Idempotency-Key` is tied to, and what the request's headers said.
pub(crate) struct CommandInput {
    pub body: Value,
    pub fingerprint: String,
    pub idempotency_key: Option<String>,
    pub traceparent: Option<String>,
    /// Event ids the command must see projected first (`X-Enrollstream-After`).
    pub after: Vec<String>,
}

/// A command the bus has durably: what the caller is told.
pub(crate) struct Accepted {
    pub status: StatusCode,
    pub kind: EntityKind,
    pub entity_id: String,
    pub event_id: String,
    /// The 202 body (as stored with an idempotency key, so a retry answers the same).
    pub body: Value,
}

impl IntoResponse for Accepted {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        let location = format!("/v1/{}s/{}", self.kind.as_str(), self.entity_id);
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        response
    }
}

/// A command that creates an entity (`POST /v1/quotes`, `POST /v1/applications`): its event
/// names a fresh entity id.
pub async fn create<C: CommandBody>(
    State(shared): State<Shared>,
    req: CommandRequest,
    body: Body,
) -> Result<Response, Problem> {
    let input = rest_input(&req, &body, false)?;
    Ok(execute::<C>(&shared, input, new_id(), false)
        .await?
        .into_response())
}

/// A command on the entity named by the path: it must already be in the read model and accept
/// the event.
pub async fn on_existing<C: CommandBody>(
    State(shared): State<Shared>,
    EntityId(id): EntityId,
    req: CommandRequest,
    body: Body,
) -> Result<Response, Problem> {
    let input = rest_input(&req, &body, true)?;
    Ok(execute::<C>(&shared, input, id, true)
        .await?
        .into_response())
}

fn rest_input(
    req: &CommandRequest,
    body: &Body,
    must_exist: bool,
) -> Result<CommandInput, Problem> {
    let json = body.command_json()?;
    Ok(CommandInput {
        body: json,
        fingerprint: fingerprint(req, &body.bytes),
        idempotency_key: extract::idempotency_key(&req.headers)?,
        traceparent: extract::traceparent(&req.headers),
        after: if must_exist {
            extract::after_header(&req.headers)?
        } else {
            Vec::new()
        },
    })
}

/// The one path of every command, whichever transport it came by, in the span the command's
/// event carries on (its `traceparent`): the caller's trace continued, or a new one.
pub(crate) async fn execute<C: CommandBody>(
    shared: &Shared,
    input: CommandInput,
    entity_id: String,
    must_exist: bool,
) -> Result<Accepted, Problem> {
    let traceparent = continue_trace(input.traceparent.as_deref());
    let span = tracing::info_span!(
        "api.request",
        trace_parent = input.traceparent.as_deref(),
        trace_span = %traceparent,
        trace_id = trace_id(&traceparent),
        event_id = Empty,
        entity_id = Empty,
        event_type = Empty,
    );
    command::<C>(shared, input, entity_id, must_exist, traceparent)
        .instrument(span)
        .await
}

/// Decode and validate, (reserve the idempotency key), check against the read model, publish,
/// answer.
async fn command<C: CommandBody>(
    shared: &Shared,
    input: CommandInput,
    entity_id: String,
    must_exist: bool,
    traceparent: String,
) -> Result<Accepted, Problem> {
    let limits = &shared.api.config.event_limits;
    // An id from the caller (path or GraphQL argument) becomes a header value and a document
    // key downstream: checked before anything else is done with it.
    if must_exist && !limits.is_id(&entity_id) {
        return Err(Problem::invalid(vec![FieldError::new(
            "id",
            limits.id_rule(),
        )]));
    }
    let command: C = dto::decode(&input.body)?;
    let event = command.into_event(entity_id)?;
    let api = &shared.api;
    let key = input.idempotency_key;
    let kind = event.kind();
    let entity_id = event.entity_id().to_string();
    let envelope = CloudEvent::new(
        &event,
        &api.config.source,
        api.clock.now(),
        Some(traceparent),
    );
    let in_body = |errors: Vec<FieldError>| {
        Problem::invalid(
            errors
                .into_iter()
                .map(|e| FieldError::new(C::body_field(&e.field), e.reason))
                .collect(),
        )
    };
    let decoded = DomainEvent::from_cloud_event(&envelope).map_err(|err| in_body(err.errors))?;
    let mut errors = limits.check(&envelope, &decoded);
    errors.extend(limits.check_times(&envelope, &decoded, api.clock.now()));
    limits.check_size(envelope.to_vec().len(), &mut errors);
    if !errors.is_empty() {
        return Err(in_body(errors));
    }
    let topic = api.config.topics.events_for(kind).to_string();
    let response = json!({ id_field(kind): entity_id, "event_id": envelope.id });

    // The key is reserved before the read-model check so that a retry of a command that already
    // went through answers as the first time did, instead of failing the (now moved-on) check.
    let (envelope, topic, response) = match &key {
        None => (envelope, topic, response),
        Some(key) => {
            let record = IdempotencyRecord {
                key: key.clone(),
                fingerprint: input.fingerprint,
                topic,
                event: envelope,
                status: StatusCode::ACCEPTED.as_u16(),
                response,
                published: false,
                created_at: api.clock.now(),
            };
            match api
                .store
                .reserve_idempotency(&record)
                .await
                .map_err(|e| Problem::store(&e))?
            {
                Reservation::Reserved => (record.event, record.topic, record.response),
                Reservation::Mismatch => return Err(Problem::idempotency_mismatch(key)),
                Reservation::Existing(stored) if stored.published => {
                    return Ok(replay(*stored, kind))
                }
                // A previous attempt stopped between reserving and publishing, or between
                // publishing and marking. Its event (same id, so downstream dedupes) goes out
                // now; if the read model already has it, it was published.
                Reservation::Existing(stored) => {
                    let applied = api
                        .store
                        .applied(std::slice::from_ref(&stored.event.id))
                        .await
                        .map_err(|e| Problem::store(&e))?;
                    if applied.contains(&stored.event.id) {
                        mark_published(shared, key).await;
                        return Ok(replay(*stored, kind));
                    }
                    (stored.event, stored.topic, stored.response)
                }
            }
        }
    };

    // A replayed create carries the id of its first attempt, not the one made just now.
    let entity_id = envelope.entity_id().to_string();
    let span = tracing::Span::current();
    span.record("event_id", envelope.id.as_str());
    span.record("entity_id", entity_id.as_str());
    span.record("event_type", envelope.ty.as_str());
    if must_exist {
        check_against_read_model(shared, &input.after, kind, &entity_id, &envelope).await?;
    }
    publish(api, &topic, std::slice::from_ref(&envelope)).await?;
    if let Some(key) = &key {
        mark_published(shared, key).await;
    }
    shared.recent.remember(kind, &entity_id, &envelope.id);
    Ok(Accepted {
        status: StatusCode::ACCEPTED,
        kind,
        entity_id,
        event_id: envelope.id,
        body: response,
    })
}

/// A failure here only means a retry republishes the same event id, which downstream dedupes.
async fn mark_published(shared: &Shared, key: &str) {
    if let Err(err) = shared.api.store.mark_idempotency_published(key).await {
        tracing::warn!(error = %err, key, "could not mark an idempotency key published");
    }
}

/// Wait for the writes this command must see, then check the event against the entity's state.
async fn check_against_read_model(
    shared: &Shared,
    after: &[String],
    kind: EntityKind,
    entity_id: &str,
    envelope: &CloudEvent,
) -> Result<(), Problem> {
    let api = &shared.api;
    let deadline = Instant::now() + api.config.command_wait;
    for event_id in after {
        if !wait_until(shared, event_id, deadline).await? {
            return Err(Problem::not_yet_projected(event_id));
        }
    }
    if let Some(event_id) = shared.recent.last(kind, entity_id) {
        let applied = wait_until(shared, &event_id, deadline).await?;
        // Forgotten either way: once applied there is nothing left to wait for, and an event
        // the projector dead-lettered must not stall every later command on the entity.
        shared.recent.forget(kind, entity_id, &event_id);
        if !applied {
            return Err(Problem::not_yet_projected(&event_id));
        }
    }
    let record = api
        .store
        .entity(kind, entity_id)
        .await
        .map_err(|e| Problem::store(&e))?
        .ok_or_else(|| Problem::not_found(kind.as_str(), entity_id))?;
    match project(
        envelope,
        Some((record.version, &record.state)),
        &shared.rules,
    ) {
        Ok(_) => Ok(()),
        Err(ProjectionError::Transition(err)) => Err(Problem::invalid_transition(&err)),
        Err(ProjectionError::Invalid(err)) => Err(Problem::validation(err)),
        Err(err @ ProjectionError::CorruptState(..)) => Err(Problem::internal(err.to_string())),
    }
}

pub(crate) async fn wait_until(
    shared: &Shared,
    event_id: &str,
    deadline: Instant,
) -> Result<bool, Problem> {
    let left = deadline.saturating_duration_since(Instant::now());
    shared
        .api
        .store
        .wait_applied(event_id, left)
        .await
        .map_err(|e| Problem::store(&e))
}

fn id_field(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Quote => "quote_id",
        EntityKind::Application => "application_id",
    }
}

/// The answer stored with an idempotency key, as first given.
/// The kind is the command's: the fingerprint ties a key to one path, so to one entity kind.
fn replay(stored: IdempotencyRecord, kind: EntityKind) -> Accepted {
    Accepted {
        status: StatusCode::from_u16(stored.status).unwrap_or(StatusCode::ACCEPTED),
        kind,
        entity_id: stored.event.entity_id().to_string(),
        event_id: stored.event.id,
        body: stored.response,
    }
}

/// The same key may only ever stand for one request: method, path and exact body bytes.
fn fingerprint(req: &CommandRequest, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(req.method.as_str().as_bytes());
    hash.update(b"\n");
    hash.update(req.path.as_bytes());
    hash.update(b"\n");
    hash.update(body);
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_covers_method_path_and_body() {
        let req = |m: Method, p: &str| CommandRequest {
            method: m,
            path: p.into(),
            headers: HeaderMap::new(),
        };
        let a = fingerprint(&req(Method::POST, "/v1/quotes"), b"{}");
        assert_eq!(a.len(), 64);
        assert_eq!(a, fingerprint(&req(Method::POST, "/v1/quotes"), b"{}"));
        assert_ne!(a, fingerprint(&req(Method::POST, "/v1/quotes"), b"{ }"));
        assert_ne!(a, fingerprint(&req(Method::PATCH, "/v1/quotes"), b"{}"));
        assert_ne!(
            a,
            fingerprint(&req(Method::POST, "/v1/applications"), b"{}")
        );
    }
}
