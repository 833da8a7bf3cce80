//! The projector (consumer group `read-model-service`): validates each business event, appends it
//! to the event log, moves the entity's state and records the outbox messages the change
//! announces — one atomic, fenced write per event — and lets the consumer loop commit the offset
//! only after that write is durable.

use async_trait::async_trait;
use chrono::Utc;
use enrollstream_domain::envelope::trace_id;
use enrollstream_domain::limits::Limits;
use enrollstream_domain::projection::{project, Projection, ProjectionError};
use enrollstream_domain::routing::RoutingRules;
use enrollstream_domain::{CloudEvent, DomainEvent, EntityKind, ValidationError};
use enrollstream_ports::codec;
use enrollstream_ports::{ApplyOutcome, Change, InboundMessage, Store, StoreError, StoredEvent};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::consumer::{BatchHandler, Outcome, Retry};
use crate::dead_letter::DeadLetter;
use crate::fence::ProjectorFence;

pub const GROUP: &str = "read-model-service";

/// How many times in a row the store may fail one event with an error it does not explain
/// (`StoreError::Fatal` while it answers a health check) before the event is dead-lettered as
/// refused. One failure proves nothing: FerretDB on SQLite answers a write that waited out its
/// lock timeout under load with the same kind of error as a document it can never take, and
/// dead-lettering a good event on that would take it out of the read model until a redrive.
/// With the consumer's backoff (100 ms doubling) five attempts span a few seconds.
pub const REFUSAL_ATTEMPTS: u32 = 5;

pub struct Projector {
    pub store: Arc<dyn Store>,
    pub rules: Arc<RoutingRules>,
    /// Rebuild mode: events below these positions (the live projector's committed offsets,
    /// per topic and partition) had their side effects already, so their outbox messages are
    /// never left pending (`Change::replay`). `None` in normal operation.
    pub replay: Option<HashMap<(String, i32), i64>>,
    /// Bounds every event must keep (`[limits]`), whoever put it on the bus.
    pub limits: Arc<Limits>,
    /// The live projector's side of the rebuild fence; `None` for the rebuild itself.
    pub fence: Option<ProjectorFence>,
    /// Unexplained store failures per event of the batch being retried (see
    /// `REFUSAL_ATTEMPTS`); emptied whenever a batch is done, so it holds one batch at most.
    pub strikes: HashMap<String, u32>,
}

impl Projector {
    fn is_replay(&self, message: &InboundMessage) -> bool {
        self.replay.as_ref().is_some_and(|below| {
            below
                .get(&(message.topic.clone(), message.partition))
                .is_some_and(|next| message.offset < *next)
        })
    }
}

/// What the batch knows of an entity's state (absent: a new entity): the stored record, or the
/// change of this batch that moved it last (borrowed from there, not copied).
enum Known {
    Stored(u64, serde_json::Value),
    Changed(usize),
}

/// An event of the batch that still has to be applied.
struct Pending {
    index: usize,
    /// The event's key in the read model (`CloudEvent::key`).
    key: String,
    event: CloudEvent,
    kind: EntityKind,
    source: String,
    replay: bool,
}

#[async_trait]
impl BatchHandler for Projector {
    async fn handle(&mut self, batch: &[InboundMessage]) -> Result<Vec<Outcome>, Retry> {
        if let Some(fence) = &mut self.fence {
            fence.enter().await.map_err(Retry)?;
        }
        let projected = match self.project(batch, false).await {
            Err(Failure::Refused(why)) => {
                // One change the store can never take (a value it cannot encode, a document
                // too large) fails the whole call. Applying one by one finds it, dead-letters
                // it alone, and lets the rest of the partition move on.
                tracing::warn!(error = %why, "the store refused a batch; applying its events one by one");
                match self.project(batch, true).await {
                    Ok(outcomes) => Ok(outcomes),
                    Err(Failure::Retry(why) | Failure::Refused(why)) => Err(Retry(why)),
                }
            }
            Err(Failure::Retry(why)) => Err(Retry(why)),
            Ok(outcomes) => Ok(outcomes),
        };
        if projected.is_ok() {
            self.strikes.clear();
        }
        projected
    }

    async fn close(&mut self) {
        if let Some(fence) = &mut self.fence {
            fence.release().await;
        }
    }
}

/// Why a batch did not finish: worth a retry as a whole, or refused by the store as a whole.
enum Failure {
    Retry(String),
    Refused(String),
}

fn retry(e: StoreError) -> Failure {
    Failure::Retry(e.to_string())
}

impl Projector {
    /// Project a batch: in one store call (`one_by_one` false), or each event in its own call so
    /// that a change the store refuses is dead-lettered alone.
    async fn project(
        &mut self,
        batch: &[InboundMessage],
        one_by_one: bool,
    ) -> Result<Vec<Outcome>, Failure> {
        let mut outcomes = vec![Outcome::Done; batch.len()];
        let mut pending = Vec::with_capacity(batch.len());
        for (index, message) in batch.iter().enumerate() {
            match decode(message, &self.limits) {
                Ok((event, kind)) => pending.push(Pending {
                    index,
                    key: event.key(),
                    event,
                    kind,
                    source: format!("{}/{}/{}", message.topic, message.partition, message.offset),
                    replay: self.is_replay(message),
                }),
                Err(why) => outcomes[index] = Outcome::DeadLetter(why),
            }
        }

        // Fence 1: events already in the read model are skipped before anything is folded, so a
        // redelivered old event is never judged against a newer state.
        let keys: Vec<String> = pending.iter().map(|p| p.key.clone()).collect();
        let applied = self.store.applied(&keys).await.map_err(retry)?;
        let mut seen: HashSet<String> = HashSet::new();
        pending.retain(|p| !applied.contains(&p.key) && seen.insert(p.key.clone()));
        if pending.is_empty() {
            return Ok(outcomes);
        }

        // Current state of every entity the batch touches; folded forward within the batch.
        // One read for the whole batch: a lookup per event would cost a round trip each.
        let entities: HashSet<(EntityKind, String)> = pending
            .iter()
            .map(|p| (p.kind, p.event.entity_id().to_string()))
            .collect();
        let entities: Vec<(EntityKind, String)> = entities.into_iter().collect();
        let records = self.store.entities(&entities).await.map_err(retry)?;
        let mut current: HashMap<(EntityKind, String), Known> = records
            .into_iter()
            .map(|r| ((r.kind, r.id), Known::Stored(r.version, r.state)))
            .collect();

        let now = Utc::now();
        let mut changes: Vec<Change> = Vec::with_capacity(pending.len());
        // Open until the write is done (dropped on return): how long applying took.
        let mut spans = Vec::new();
        for p in pending {
            let entity = (p.kind, p.event.entity_id().to_string());
            let state = match current.get(&entity) {
                Some(Known::Stored(version, state)) => Some((*version, state)),
                Some(Known::Changed(i)) => Some((changes[*i].event.version, &changes[*i].state)),
                None => None,
            };
            let expected_version = state.map(|(v, _)| v).unwrap_or(0);
            let projection = match project(&p.event, state, &self.rules) {
                Ok(projection) => projection,
                Err(ProjectionError::CorruptState(id, why)) => {
                    // Not the event's fault: stop here and retry rather than dead-letter good events.
                    return Err(Failure::Retry(format!(
                        "stored state of {id} is unreadable: {why}"
                    )));
                }
                Err(e) => {
                    outcomes[p.index] = Outcome::DeadLetter(DeadLetter::new(e.code(), &e));
                    continue;
                }
            };
            if self.replay.is_none() {
                spans.extend(apply_spans(&p.event, &projection));
            }
            let change = Change {
                event: StoredEvent {
                    event_id: p.key,
                    entity_kind: p.kind,
                    entity_id: projection.entity_id.clone(),
                    version: projection.version,
                    event_type: p.event.ty.clone(),
                    occurred_at: p.event.time.unwrap_or(now),
                    envelope: p.event,
                    source: Some(p.source),
                    recorded_at: now,
                },
                expected_version,
                status: projection.status,
                state: projection.state,
                outbox: projection.outbox,
                replay: p.replay,
            };
            if !one_by_one {
                current.insert(entity, Known::Changed(changes.len()));
                changes.push(change);
                continue;
            }
            match self.store.apply(std::slice::from_ref(&change)).await {
                Ok(results) => match record(std::slice::from_ref(&change), &results) {
                    Ok(()) => {
                        current.insert(entity, Known::Stored(change.event.version, change.state));
                    }
                    Err(Failure::Refused(why)) => {
                        tracing::warn!(event_id = %change.event.event_id, entity_id = %change.event.entity_id, trace_id = change.event.envelope.traceparent.as_deref().map(trace_id), error = %why, "the store refused an event");
                        outcomes[p.index] =
                            Outcome::DeadLetter(DeadLetter::new("store_refused", &why));
                    }
                    Err(e) => return Err(e),
                },
                Err(StoreError::Fatal(why)) => {
                    // A store that fails everything is down, not refusing this event.
                    self.store.check().await.map_err(retry)?;
                    let strikes = self
                        .strikes
                        .entry(change.event.event_id.clone())
                        .or_default();
                    *strikes += 1;
                    if *strikes < REFUSAL_ATTEMPTS {
                        return Err(Failure::Retry(format!(
                            "the store failed {} ({} of {REFUSAL_ATTEMPTS} attempts before it counts as refused): {why}",
                            change.event.event_id, strikes
                        )));
                    }
                    tracing::warn!(event_id = %change.event.event_id, entity_id = %change.event.entity_id, trace_id = change.event.envelope.traceparent.as_deref().map(trace_id), error = %why, "the store refused an event");
                    outcomes[p.index] = Outcome::DeadLetter(DeadLetter::new("store_refused", &why));
                }
                Err(e) => return Err(retry(e)),
            }
        }
        if changes.is_empty() {
            return Ok(outcomes);
        }
        match self.store.apply(&changes).await {
            Ok(results) => record(&changes, &results)?,
            Err(StoreError::Fatal(why)) => return Err(Failure::Refused(why)),
            Err(e) => return Err(retry(e)),
        }
        Ok(outcomes)
    }
}

/// The trace of applying an event: `projector.apply` under the span the event carries, and a
/// `notification` span under it for each outbox message, whose id is the one the message
/// carries on (`child_traceparent`), so relay and deliveries hang under it.
fn apply_spans(event: &CloudEvent, projection: &Projection) -> Vec<tracing::Span> {
    let traceparent = event.traceparent.as_deref();
    let event_id = event.key();
    let apply = tracing::info_span!(
        "projector.apply",
        trace_parent = traceparent,
        trace_id = traceparent.map(trace_id),
        event_id = %event_id,
        entity_id = %projection.entity_id,
        event_type = %event.ty,
        version = projection.version,
    );
    let mut spans: Vec<tracing::Span> = projection
        .outbox
        .iter()
        .map(|m| {
            tracing::info_span!(
                parent: &apply,
                "notification",
                trace_span = m.event.traceparent.as_deref(),
                trace_id = traceparent.map(trace_id),
                notification_id = %m.event.id,
                topic = %m.topic,
                event_id = %event_id,
                entity_id = %projection.entity_id,
            )
        })
        .collect();
    spans.push(apply);
    spans
}

/// Metrics of what was applied; a version conflict retries the batch.
fn record(changes: &[Change], results: &[ApplyOutcome]) -> Result<(), Failure> {
    if results.len() != changes.len() {
        return Err(Failure::Retry(format!(
            "the store answered {} outcomes for {} changes",
            results.len(),
            changes.len()
        )));
    }
    for (change, result) in changes.iter().zip(results) {
        match result {
            ApplyOutcome::Applied => {
                metrics::counter!("enrollstream_events_projected_total", "type" => change.event.event_type.clone()).increment(1);
                if let Ok(lag) = (Utc::now() - change.event.occurred_at).to_std() {
                    metrics::histogram!("enrollstream_projection_lag_seconds")
                        .record(lag.as_secs_f64());
                }
            }
            ApplyOutcome::AlreadyApplied => {}
            ApplyOutcome::Refused { reason } => {
                // This change alone can never be written (the others of the call were applied):
                // the caller applies the batch again one by one and dead-letters it.
                return Err(Failure::Refused(format!(
                    "store refused {}: {reason}",
                    change.event.event_id
                )));
            }
            ApplyOutcome::Conflict { current_version } => {
                // Another member moved the entity (partitions overlapped during a rebalance).
                // Retrying the batch reloads the state; applied events are then skipped.
                return Err(Failure::Retry(format!(
                    "version conflict on {} {} (expected {}, found {current_version})",
                    change.event.entity_kind, change.event.entity_id, change.expected_version
                )));
            }
        }
    }
    Ok(())
}

/// The event of a message, checked against its schema and the limits before anything is read.
fn decode(
    message: &InboundMessage,
    limits: &Limits,
) -> Result<(CloudEvent, EntityKind), DeadLetter> {
    let event = codec::decode(message).map_err(|e| DeadLetter::new("undecodable", &e))?;
    let decoded =
        DomainEvent::from_cloud_event(&event).map_err(|e| DeadLetter::new("invalid_event", &e))?;
    let mut errors = limits.check(&event, &decoded);
    limits.check_size(message.payload.len(), &mut errors);
    if !errors.is_empty() {
        return Err(DeadLetter::new("invalid_event", ValidationError { errors }));
    }
    Ok((event, decoded.kind()))
}
