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
    let trace = |child_id: &str| {
        event
            .traceparent
            .as_deref()
            .map(|parent| child_traceparent(parent, child_id))
    };
    let entity_id = event.entity_id().to_string();
    let key = event.key();
    let mut out = Vec::new();
    for (topic, route) in rules.routes(&event.ty) {
        let id = derived_id(&["notification", &key, &topic]);
        let data = notification_data(
            &id,
            event,
            kind,
            &entity_id,
            version,
            occurred_at,
            &route,
            state,
        );
        let mut ce = envelope(&id, NOTIFICATION, &entity_id, occurred_at, trace(&id), data);
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
        let id = derived_id(&["entity-updated", &key]);
        let data = json!({
            "entity_kind": kind,
            "entity_id": entity_id,
            "entity_version": version,
            "caused_by": { "event_id": key, "event_type": event.ty },
            "state": state,
        });
        let ce = envelope(
            &id,
            ENTITY_UPDATED,
            &entity_id,
            occurred_at,
            trace(&id),
            data,
        );
        out.push(OutboxMessage {
            id,
            topic: topic.clone(),
            key: entity_id,
            event: ce,
        });
    }
    out
}

/// A notification's data as [`NotificationData`] serialises it, field for field and in the same
/// order, built in place: the event's data and the state are copied once, where a
/// `NotificationData` would copy them twice (into the struct, then into the JSON value). A test
/// keeps the two the same.
#[allow(clippy::too_many_arguments)]
fn notification_data(
    id: &str,
    event: &CloudEvent,
    kind: EntityKind,
    entity_id: &str,
    version: u64,
    occurred_at: DateTime<Utc>,
    route: &Route,
    state: &serde_json::Value,
) -> serde_json::Value {
    let mut data = serde_json::Map::new();
    data.insert("notification_id".into(), id.into());
    data.insert("event_id".into(), event.key().into());
    data.insert("event_type".into(), event.ty.as_str().into());
    data.insert("entity_kind".into(), json!(kind));
    data.insert("entity_id".into(), entity_id.into());
    data.insert("entity_version".into(), version.into());
    data.insert("occurred_at".into(), json!(occurred_at));
    data.insert("routing".into(), json!(route));
    data.insert("payload".into(), event.data.clone());
    data.insert("state".into(), state.clone());
    serde_json::Value::Object(data)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{DomainEvent, QuoteCreated, QuoteEvent};
    use crate::Money;

    #[test]
    fn notification_data_is_built_as_its_type_serialises() {
        let event = CloudEvent::new(
            &DomainEvent::Quote(QuoteEvent::Created(QuoteCreated {
                quote_id: "Q-1".into(),
                customer_id: "C-1".into(),
                product: "dental-basic".into(),
                premium: Money {
                    amount_minor: 5000,
                    currency: "USD".into(),
                },
            })),
            "/test",
            "2026-05-04T08:00:00Z".parse().unwrap(),
            None,
        );
        let state = json!({"quote_id": "Q-1", "status": "CREATED"});
        let outbox = outbox_for(
            &RoutingRules::default(),
            &event,
            EntityKind::Quote,
            1,
            &state,
        );
        let built = &outbox
            .iter()
            .find(|m| m.event.ty == NOTIFICATION)
            .expect("a quote notification")
            .event
            .data;
        let typed: NotificationData =
            serde_json::from_value(built.clone()).expect("reads as NotificationData");
        assert_eq!(typed.payload, event.data);
        assert_eq!(typed.state, state);
        // Nothing added, nothing renamed, and (serde_json keeps insertion order: the workspace
        // sets preserve_order) the same order, so the same bytes as the typed value.
        let serialised = serde_json::to_value(&typed).unwrap();
        assert_eq!(&serialised, built);
        assert_eq!(
            serde_json::to_string(&serialised).unwrap(),
            serde_json::to_string(built).unwrap()
        );
    }
}
