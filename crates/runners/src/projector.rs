//! The projector (consumer group `read-model-service`): validates each business event, appends it
//! to the event log, moves the entity's state and records the outbox messages the change
//! announces — one atomic, fenced write per event — and lets the consumer loop commit the offset
//! only after that write is durable.

use async_trait::async_trait;
use chrono::Utc;
use enrollstream_domain::projection::{project, ProjectionError};
use enrollstream_domain::routing::RoutingRules;
use enrollstream_domain::{CloudEvent, EntityKind};
use enrollstream_ports::codec;
use enrollstream_ports::{ApplyOutcome, Change, InboundMessage, Store, StoredEvent};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::consumer::{BatchHandler, Outcome, Retry};
use crate::dead_letter::DeadLetter;

pub const GROUP: &str = "read-model-service";

pub struct Projector {
    pub store: Arc<dyn Store>,
    pub rules: Arc<RoutingRules>,
    /// Rebuild mode: events below these positions (the live projector's committed offsets,
    /// per topic and partition) had their side effects already, so their outbox messages are
    /// never left pending (`Change::replay`). `None` in normal operation.
    pub replay: Option<HashMap<(String, i32), i64>>,
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
    event: CloudEvent,
    kind: EntityKind,
    source: String,
    replay: bool,
}

#[async_trait]
impl BatchHandler for Projector {
    async fn handle(&mut self, batch: &[InboundMessage]) -> Result<Vec<Outcome>, Retry> {
        let mut outcomes = vec![Outcome::Done; batch.len()];
        let mut pending = Vec::with_capacity(batch.len());
        for (index, message) in batch.iter().enumerate() {
            match decode(message) {
                Ok((event, kind)) => pending.push(Pending {
                    index,
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
        let ids: Vec<String> = pending.iter().map(|p| p.event.id.clone()).collect();
        let applied = self
            .store
            .applied(&ids)
            .await
            .map_err(|e| Retry(e.to_string()))?;
        let mut seen: HashSet<String> = HashSet::new();
        pending.retain(|p| !applied.contains(&p.event.id) && seen.insert(p.event.id.clone()));

        // Current state of every entity the batch touches; folded forward within the batch.
        // One read for the whole batch: a lookup per event would cost a round trip each.
        let keys: HashSet<(EntityKind, String)> = pending
            .iter()
            .map(|p| (p.kind, p.event.entity_id().to_string()))
            .collect();
        let keys: Vec<(EntityKind, String)> = keys.into_iter().collect();
        let records = self
            .store
            .entities(&keys)
            .await
            .map_err(|e| Retry(e.to_string()))?;
        let mut current: HashMap<(EntityKind, String), Known> = records
            .into_iter()
            .map(|r| ((r.kind, r.id), Known::Stored(r.version, r.state)))
            .collect();

        let now = Utc::now();
        let mut changes: Vec<Change> = Vec::with_capacity(pending.len());
        for p in pending {
            let key = (p.kind, p.event.entity_id().to_string());
            let state = match current.get(&key) {
                Some(Known::Stored(version, state)) => Some((*version, state)),
                Some(Known::Changed(i)) => Some((changes[*i].event.version, &changes[*i].state)),
                None => None,
            };
            let expected_version = state.map(|(v, _)| v).unwrap_or(0);
            match project(&p.event, state, &self.rules) {
                Ok(projection) => {
                    current.insert(key, Known::Changed(changes.len()));
                    changes.push(Change {
                        event: StoredEvent {
                            event_id: p.event.id.clone(),
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
                    });
                }
                Err(ProjectionError::CorruptState(id, why)) => {
                    // Not the event's fault: stop here and retry rather than dead-letter good events.
                    return Err(Retry(format!("stored state of {id} is unreadable: {why}")));
                }
                Err(e) => outcomes[p.index] = Outcome::DeadLetter(DeadLetter::new(e.code(), &e)),
            }
        }
        if changes.is_empty() {
            return Ok(outcomes);
        }

        let results = self
            .store
            .apply(&changes)
            .await
            .map_err(|e| Retry(e.to_string()))?;
        for (change, result) in changes.iter().zip(&results) {
            match result {
                ApplyOutcome::Applied => {
                    metrics::counter!("enrollstream_events_projected_total", "type" => change.event.event_type.clone()).increment(1);
                    if let Ok(lag) = (Utc::now() - change.event.occurred_at).to_std() {
                        metrics::histogram!("enrollstream_projection_lag_seconds")
                            .record(lag.as_secs_f64());
                    }
                }
                ApplyOutcome::AlreadyApplied => {}
                ApplyOutcome::Conflict { current_version } => {
                    // Another member moved the entity (partitions overlapped during a rebalance).
                    // Retrying the batch reloads the state; applied events are then skipped.
                    return Err(Retry(format!(
                        "version conflict on {} {} (expected {}, found {current_version})",
                        change.event.entity_kind, change.event.entity_id, change.expected_version
                    )));
                }
            }
        }
        Ok(outcomes)
    }
}

fn decode(message: &InboundMessage) -> Result<(CloudEvent, EntityKind), DeadLetter> {
    let event = codec::decode(message).map_err(|e| DeadLetter::new("undecodable", &e))?;
    let kind = event.entity_kind().ok_or_else(|| {
        DeadLetter::new(
            "invalid_event",
            format!("type: unknown event type {:?}", event.ty),
        )
    })?;
    Ok((event, kind))
}
