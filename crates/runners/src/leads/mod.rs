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

use enrollstream_ports::target::Target;
use enrollstream_ports::{Clock, EventBus, HealthRegistry};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use crate::deliveries::{self, DeliverySettings, Journal};

pub const INTEGRATION_GROUP: &str = "lead-integration-service";

/// The runner settings of the lead integration service: `settings` tune it like any target
/// (concurrency, retry, breaker, pause); what it reads is fixed: lead messages on `topic`, in
/// group `lead-integration-service` unless another is given.
pub fn integration_settings(mut settings: DeliverySettings, topic: &str) -> DeliverySettings {
    settings
        .group
        .get_or_insert_with(|| INTEGRATION_GROUP.to_string());
    settings.topics = vec![topic.to_string()];
    settings.event_types = vec![LEAD.to_string()];
    settings
}

/// Run the lead integration service until `shutdown`: lead messages on `topic` delivered to
/// `target` (the Lead Management API), each outcome journaled like any target's.
#[allow(clippy::too_many_arguments)]
pub async fn run_integration(
    bus: Arc<dyn EventBus>,
    target: Arc<dyn Target>,
    settings: DeliverySettings,
    topic: &str,
    clock: Arc<dyn Clock>,
    health: HealthRegistry,
    shutdown: CancellationToken,
    journal: Option<Journal>,
) {
    let settings = integration_settings(settings, topic);
    deliveries::run_journaled(bus, target, settings, clock, health, shutdown, journal).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_integration_service_reads_lead_messages_in_its_own_group() {
        let s = integration_settings(DeliverySettings::default(), "leads-topic");
        assert_eq!(s.group_for("lead_management"), INTEGRATION_GROUP);
        assert_eq!(s.topics, vec!["leads-topic"]);
        assert_eq!(s.event_types, vec![LEAD]);
        assert_eq!(
            s.dlq_topic("leads-topic", "lead_management"),
            "leads-topic.lead-management.dlq"
        );
        let custom = DeliverySettings {
            group: Some("other".into()),
            ..DeliverySettings::default()
        };
        assert_eq!(integration_settings(custom, "t").group_for("x"), "other");
    }
}
