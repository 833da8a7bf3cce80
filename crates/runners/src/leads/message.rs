//! The lead message: what the Lead Management system learns from an application's
//! notification. Pure and deterministic: the same notification always gives the same lead
//! message, id included, so a redelivered notification produces a message the lead API
//! recognises.

use enrollstream_domain::envelope::{child_traceparent, CloudEvent, JSON, SPEC_VERSION};
use enrollstream_domain::ids::derived_id;
use enrollstream_domain::notification::{NotificationData, EXT_PRIORITY, EXT_TARGETS, EXT_TRIGGER};
use enrollstream_domain::routing::LEAD_MANAGEMENT;
use enrollstream_domain::EntityKind;
use serde_json::{json, Value};

pub const LEAD: &str = "com.enrollstream.lead.v1";
pub const LEAD_SOURCE: &str = "/enrollstream/lead-producer";

/// The lead of an entity: one per application (or quote), stable across all its events.
pub fn lead_id(kind: EntityKind, entity_id: &str) -> String {
    derived_id(&["lead", kind.as_str(), entity_id])
}

/// The lead message id of a notification.
pub fn lead_message_id(notification_id: &str) -> String {
    derived_id(&["lead-message", notification_id])
}

/// The lead message announcing `n` (carried by `notification`).
pub fn lead_event(n: &NotificationData, notification: &CloudEvent) -> CloudEvent {
    let state = &n.state;
    let pick = |field: &str| state.get(field).cloned().unwrap_or(Value::Null);
    // "com.enrollstream.application.submitted.v1" -> "submitted"
    let stage = n.event_type.rsplit('.').nth(1).unwrap_or_default();
    let (broker, submitted_by) = match state.get("submission") {
        Some(s) => (
            s.get("broker").cloned().unwrap_or(Value::Null),
            s.get("submitted_by").cloned().unwrap_or(Value::Null),
        ),
        None => (Value::Null, Value::Null),
    };
    let mut data = json!({
        "lead_id": lead_id(n.entity_kind, &n.entity_id),
        "notification_id": n.notification_id,
        "source_event_id": n.event_id,
        "source_event_type": n.event_type,
        "stage": stage,
        "entity_kind": n.entity_kind,
        "entity_id": n.entity_id,
        "entity_version": n.entity_version,
        "status": pick("status"),
        "product": pick("product"),
        "contact": pick("applicant"),
        "broker": broker,
        "submitted_by": submitted_by,
        "occurred_at": n.occurred_at,
    });
    match n.entity_kind {
        EntityKind::Application => {
            data["application_id"] = json!(n.entity_id);
            data["quote_id"] = pick("quote_id");
        }
        EntityKind::Quote => data["quote_id"] = json!(n.entity_id),
    }
    let mut extensions = std::collections::BTreeMap::new();
    extensions.insert(EXT_TARGETS.to_string(), json!(LEAD_MANAGEMENT));
    extensions.insert(EXT_PRIORITY.to_string(), json!(n.routing.priority.as_str()));
    extensions.insert(EXT_TRIGGER.to_string(), json!("lead"));
    let id = lead_message_id(&n.notification_id);
    CloudEvent {
        specversion: SPEC_VERSION.to_string(),
        source: LEAD_SOURCE.to_string(),
        ty: LEAD.to_string(),
        subject: Some(n.entity_id.clone()),
        time: Some(n.occurred_at),
        datacontenttype: Some(JSON.to_string()),
        dataschema: None,
        traceparent: notification
            .traceparent
            .as_deref()
            .map(|parent| child_traceparent(parent, &id)),
        id,
        data,
        extensions,
    }
}
