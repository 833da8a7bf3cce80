//! JSON Schemas generated from the Rust types, served by the API at `/v1/schemas/{type}`.
//! Generating them keeps the documentation and the decoder from drifting apart.

use schemars::{schema_for, Schema};
use serde_json::Value;

use crate::envelope::CloudEvent;
use crate::events::*;
use crate::notification::{NotificationData, NOTIFICATION};

/// The schema of the `data` of each event type, by type.
pub fn data_schemas() -> Vec<(&'static str, Schema)> {
    vec![
        (QUOTE_REQUESTED, schema_for!(QuoteRequested)),
        (QUOTE_CREATED, schema_for!(QuoteCreated)),
        (QUOTE_UPDATED, schema_for!(QuoteUpdated)),
        (APPLICATION_STARTED, schema_for!(ApplicationStarted)),
        (APPLICATION_SUBMITTED, schema_for!(ApplicationSubmitted)),
        (SIGNATURE_RECEIVED, schema_for!(SignatureReceived)),
        (APPLICATION_APPROVED, schema_for!(ApplicationApproved)),
        (APPLICATION_DECLINED, schema_for!(ApplicationDeclined)),
        (APPLICATION_WITHDRAWN, schema_for!(ApplicationWithdrawn)),
        (
            SIGNATURE_REMINDERS_EXHAUSTED,
            schema_for!(SignatureRemindersExhausted),
        ),
        (NOTIFICATION, schema_for!(NotificationData)),
    ]
}

pub fn data_schema(event_type: &str) -> Option<Value> {
    data_schemas()
        .into_iter()
        .find(|(t, _)| *t == event_type)
        .map(|(_, s)| s.to_value())
}

/// The schema of the envelope itself.
pub fn envelope_schema() -> Value {
    schema_for!(CloudEvent).to_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_a_schema() {
        for t in ALL_TYPES {
            let s = data_schema(t).unwrap_or_else(|| panic!("no schema for {t}"));
            assert!(
                s.get("properties").is_some()
                    || s.get("oneOf").is_some()
                    || s.get("anyOf").is_some(),
                "{t}: {s}"
            );
        }
        assert!(envelope_schema()["properties"]["specversion"].is_object());
    }
}
