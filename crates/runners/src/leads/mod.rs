//! The lead integration of the design notes, in two consumer groups:
//!
//! - the lead producer (`lead-producer-service`) turns the notifications routed to
//!   `lead_management`, of the configured event types, into lead messages
//!   (`com.enrollstream.lead.v1`, id derived from the notification id) on
//!   `lead-integration-events`, keyed by entity id;
//! - the lead integration service (`lead-integration-service`) is a delivery runner over
//!   `lead-integration-events` with the Lead Management target: the same lanes, retries,
//!   breaker, pause and DLQ (`lead-integration-events.lead-management.dlq`) as every target.

mod message;
mod producer;

pub use message::{lead_event, lead_id, lead_message_id, LEAD, LEAD_SOURCE};
pub use producer::{run_producer, LeadProducer, LeadProducerSettings, GROUP as PRODUCER_GROUP};

use crate::deliveries::DeliverySettings;

pub const INTEGRATION_GROUP: &str = "lead-integration-service";

/// Delivery settings of the lead integration service; tune the rest (retry, breaker,
/// concurrency) like any target's.
pub fn integration_settings() -> DeliverySettings {
    DeliverySettings {
        group: Some(INTEGRATION_GROUP.to_string()),
        topics: vec!["lead-integration-events".to_string()],
        event_types: vec![LEAD.to_string()],
        ..DeliverySettings::default()
    }
}
