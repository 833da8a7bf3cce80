//! What a notification becomes in Salesforce: the fields of an upserted record, or of a
//! Platform Event. Field names are fixed and documented in docs/integrations.md; the org
//! creates them once.

use enrollstream_domain::notification::NotificationData;
use serde_json::{json, Value};

/// The fields of the entity's record. Upserting by the entity's external id is idempotent: the
/// same notification sent twice writes the same values.
pub fn record_fields(n: &NotificationData) -> Value {
    json!({
        "Status__c": status(n),
        "Entity_Version__c": n.entity_version,
        "Last_Event_Type__c": n.event_type,
        "Last_Event_Id__c": n.event_id,
        "Last_Notification_Id__c": n.notification_id,
        "Last_Event_At__c": n.occurred_at.to_rfc3339(),
        "Priority__c": n.routing.priority.as_str(),
        "State_Json__c": n.state.to_string(),
    })
}

/// The fields of the Platform Event. Salesforce does not dedupe events, so subscribers dedupe
/// by `Notification_Id__c`.
pub fn event_fields(n: &NotificationData) -> Value {
    json!({
        "Notification_Id__c": n.notification_id,
        "Event_Id__c": n.event_id,
        "Event_Type__c": n.event_type,
        "Entity_Kind__c": n.entity_kind.as_str(),
        "Entity_Id__c": n.entity_id,
        "Entity_Version__c": n.entity_version,
        "Status__c": status(n),
        "Priority__c": n.routing.priority.as_str(),
        "Trigger_Type__c": n.routing.trigger_type,
        "Occurred_At__c": n.occurred_at.to_rfc3339(),
        "Payload_Json__c": n.payload.to_string(),
        "State_Json__c": n.state.to_string(),
    })
}

fn status(n: &NotificationData) -> Value {
    n.state.get("status").cloned().unwrap_or(Value::Null)
}
