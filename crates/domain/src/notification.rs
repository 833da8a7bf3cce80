//! Notifications: what the relay publishes after the read model changed. They are computed here,
//! stored in the same atomic write as the state change (the outbox), and published later.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::envelope::{child_traceparent, CloudEvent, JSON, SPEC_VERSION};
use crate::events::EntityKind;
use crate::ids::derived_id;
use crate::routing::{Route, RoutingRules};

pub const NOTIFICATION: &str = "com.enrollstream.notification.v1";
pub const ENTITY_UPDATED: &str = "com.enrollstream.entity.updated.v1";
pub const NOTIFICATION_SOURCE: &str = "/enrollstream/read-model";

/// CloudEvents extension attributes that carry the route; on Kafka they become the headers
/// `ce_routingtargets`, `ce_routingpriority`, `ce_routingtriggertype`, so a delivery consumer
/// can skip a message meant for other targets without decoding its payload.
pub const EXT_TARGETS: &str = "routingtargets";
pub const EXT_PRIORITY: &str = "routingpriority";
pub const EXT_TRIGGER: &str = "routingtriggertype";

/// The `data` of a notification CloudEvent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NotificationData {
    pub notification_id: String,
    pub event_id: String,
    pub event_type: String,
    pub entity_kind: EntityKind,
    pub entity_id: String,
    /// Version of the entity after the event (1 for the first event).
    pub entity_version: u64,
    pub occurred_at: DateTime<Utc>,
    pub routing: Route,
    /// The business event's data.
    pub payload: serde_json::Value,
    /// The entity's state after the event.
    pub state: serde_json::Value,
}

/// A message waiting in the outbox: published by the relay, at least once, always with this id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Deterministic: derived from the causing event id and the topic.
    pub id: String,
    pub topic: String,
    /// Partition key: the entity id, so notifications of one entity stay in order.
    pub key: String,
    pub event: CloudEvent,
}

/// What a change of the read model announces. Pure: the same event and state always give the
/// same messages with the same ids, byte for byte, which is what makes rebuilds and redeliveries
/// harmless.
pub fn outbox_for(
    rules: &RoutingRules,
    event: &CloudEvent,
    kind: EntityKind,
    version: u64,
    state: &serde_json::Value,
) -> Vec<OutboxMessage> {
    let occurred_at = event.time.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let trace = event.traceparent.as_deref().map(child_traceparent);
    let entity_id = event.entity_id().to_string();
    let mut out = Vec::new();
    for (topic, route) in rules.routes(&event.ty) {
        let id = derived_id(&["notification", &event.id, &topic]);
        let data = NotificationData {
            notification_id: id.clone(),
            event_id: event.id.clone(),
            event_type: event.ty.clone(),
            entity_kind: kind,
            entity_id: entity_id.clone(),
            entity_version: version,
            occurred_at,
            routing: route.clone(),
            payload: event.data.clone(),
            state: state.clone(),
        };
        let mut ce = envelope(
            &id,
            NOTIFICATION,
            &entity_id,
            occurred_at,
            trace.clone(),
            serde_json::to_value(&data).expect("serialisable"),
        );
        ce.extensions
            .insert(EXT_TARGETS.into(), json!(route.targets.join(",")));
        ce.extensions
            .insert(EXT_PRIORITY.into(), json!(route.priority.as_str()));
        ce.extensions
            .insert(EXT_TRIGGER.into(), json!(route.trigger_type));
        out.push(OutboxMessage {
            id,
            topic,
            key: entity_id.clone(),
            event: ce,
        });
    }
    if let Some(topic) = &rules.entity_updates_topic {
        let id = derived_id(&["entity-updated", &event.id]);
        let data = json!({
            "entity_kind": kind,
            "entity_id": entity_id,
            "entity_version": version,
            "caused_by": { "event_id": event.id, "event_type": event.ty },
            "state": state,
        });
        let ce = envelope(&id, ENTITY_UPDATED, &entity_id, occurred_at, trace, data);
        out.push(OutboxMessage {
            id,
            topic: topic.clone(),
            key: entity_id,
            event: ce,
        });
    }
    out
}

fn envelope(
    id: &str,
    ty: &str,
    subject: &str,
    time: DateTime<Utc>,
    traceparent: Option<String>,
    data: serde_json::Value,
) -> CloudEvent {
    CloudEvent {
        specversion: SPEC_VERSION.to_string(),
        id: id.to_string(),
        source: NOTIFICATION_SOURCE.to_string(),
        ty: ty.to_string(),
        subject: Some(subject.to_string()),
        time: Some(time),
        datacontenttype: Some(JSON.to_string()),
        dataschema: None,
        traceparent,
        data,
        extensions: Default::default(),
    }
}

/// The targets named by a notification's routing attribute (or header value).
pub fn parse_targets(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}
