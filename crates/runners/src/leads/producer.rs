//! The lead producer (consumer group `lead-producer-service`): picks the notifications routed to
//! the Lead Management system whose event type the configuration names, and publishes a lead
//! message for each to `lead-integration-events`, keyed by entity id. Publishing is its only
//! effect, so the shared consumer loop fits: the batch's lead messages are durable before the
//! commit, and a redelivered notification yields the same message id, which the lead API
//! dedupes.

use async_trait::async_trait;
use enrollstream_domain::events;
use enrollstream_domain::notification::{
    parse_targets, NotificationData, EXT_TARGETS, NOTIFICATION,
};
use enrollstream_domain::routing::LEAD_MANAGEMENT;
use enrollstream_ports::{codec, BusError, EventBus, HealthRegistry, InboundMessage, Publisher};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use super::message::lead_event;
use crate::consumer::{BatchHandler, ConsumerLoop, ConsumerSettings, Outcome, Retry};
use crate::dead_letter::DeadLetter;

pub const GROUP: &str = "lead-producer-service";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeadProducerSettings {
    pub group: String,
    /// Notification topics to read.
    pub topics: Vec<String>,
    /// Business event types that make a lead message (exact, or a prefix ending in `*`).
    pub event_types: Vec<String>,
    pub output_topic: String,
    pub batch_size: usize,
}

impl Default for LeadProducerSettings {
    fn default() -> Self {
        Self {
            group: GROUP.to_string(),
            topics: vec!["enrollment-notifications".into()],
            event_types: vec![
                events::APPLICATION_STARTED.into(),
                events::APPLICATION_SUBMITTED.into(),
                events::SIGNATURE_RECEIVED.into(),
            ],
            output_topic: "lead-integration-events".into(),
            batch_size: 500,
        }
    }
}

impl LeadProducerSettings {
    pub fn validate(&self, section: &str) -> Result<(), String> {
        if !(1..=10_000).contains(&self.batch_size) {
            return Err(format!("{section}.batch_size must be between 1 and 10000"));
        }
        if self.event_types.is_empty() {
            return Err(format!("{section}.event_types must name at least one type"));
        }
        Ok(())
    }

    fn wants(&self, event_type: &str) -> bool {
        self.event_types.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => event_type.starts_with(prefix),
            None => p == event_type,
        })
    }
}

pub struct LeadProducer {
    pub publisher: Arc<dyn Publisher>,
    pub settings: LeadProducerSettings,
}

/// Routed to the Lead Management system, judged by headers alone.
fn routed_to_leads(message: &InboundMessage) -> bool {
    message.header("ce_type") == Some(NOTIFICATION)
        && message
            .header(&format!("ce_{EXT_TARGETS}"))
            .is_some_and(|v| parse_targets(v).any(|t| t == LEAD_MANAGEMENT))
}

#[async_trait]
impl BatchHandler for LeadProducer {
    async fn handle(&mut self, batch: &[InboundMessage]) -> Result<Vec<Outcome>, Retry> {
        let mut outcomes = vec![Outcome::Done; batch.len()];
        let mut leads = Vec::new();
        let mut spans = Vec::new();
        for (i, message) in batch.iter().enumerate() {
            if !routed_to_leads(message) {
                continue;
            }
            let event = match codec::decode(message) {
                Ok(e) => e,
                Err(e) => {
                    outcomes[i] = Outcome::DeadLetter(DeadLetter::new("undecodable", &e));
                    continue;
                }
            };
            let n: NotificationData = match serde_json::from_value(event.data.clone()) {
                Ok(n) => n,
                Err(e) => {
                    outcomes[i] = Outcome::DeadLetter(DeadLetter::new(
                        "invalid_notification",
                        format!("data is not a notification: {e}"),
                    ));
                    continue;
                }
            };
            if !self.settings.wants(&n.event_type) {
                continue;
            }
            let lead = lead_event(&n, &event);
            // Open until the batch is published: the span the lead message carries on.
            spans.push(tracing::info_span!(
                "lead.produce",
                trace_parent = event.traceparent.as_deref(),
                trace_span = lead.traceparent.as_deref(),
                notification_id = %n.notification_id,
                lead_id = %lead.id,
                event_id = %n.event_id,
                entity_id = %n.entity_id,
            ));
            let mut out = codec::encode(&lead);
            out.key = n.entity_id.clone();
            leads.push((i, out));
        }
        if leads.is_empty() {
            return Ok(outcomes);
        }
        let topic = &self.settings.output_topic;
        let count = leads.len() as u64;
        let retry = |e| Retry(format!("publish to {topic}: {e}"));
        // One call for the batch: per-key order is kept within it.
        let batch = leads.iter().map(|(_, m)| m.clone()).collect();
        match self.publisher.publish(topic, batch).await {
            Ok(()) => {}
            // A lead the bus refuses for good fails the call: one by one, the refused lead's
            // notification is dead-lettered and the others go out (again, with their ids).
            Err(BusError::Fatal(why)) => {
                tracing::warn!(%topic, error = %why, "the bus refused a batch of leads; publishing one by one");
                for (i, lead) in leads {
                    match self.publisher.publish(topic, vec![lead]).await {
                        Ok(()) => {}
                        Err(BusError::Fatal(why)) => {
                            outcomes[i] =
                                Outcome::DeadLetter(DeadLetter::new("refused_by_bus", why))
                        }
                        Err(e) => return Err(retry(e)),
                    }
                }
            }
            Err(e) => return Err(retry(e)),
        }
        metrics::counter!("enrollstream_leads_published_total").increment(count);
        Ok(outcomes)
    }
}

/// Run the lead producer until `shutdown`.
/// Dead letters go to `<topic><dlq_suffix>` (`topics.dlq_suffix`).
pub async fn run_producer(
    bus: Arc<dyn EventBus>,
    settings: LeadProducerSettings,
    dlq_suffix: String,
    health: HealthRegistry,
    shutdown: CancellationToken,
) {
    let mut consumer = ConsumerSettings::new(&settings.group, settings.topics.clone());
    consumer.batch_size = settings.batch_size;
    consumer.dlq_suffix = dlq_suffix;
    ConsumerLoop {
        handler: LeadProducer {
            publisher: bus.publisher(),
            settings,
        },
        bus,
        settings: consumer,
        health,
        shutdown,
    }
    .run()
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_match_exactly_or_by_prefix() {
        let mut s = LeadProducerSettings::default();
        assert!(s.wants(events::APPLICATION_SUBMITTED));
        assert!(!s.wants(events::APPLICATION_APPROVED));
        s.event_types = vec!["com.enrollstream.application.*".into()];
        assert!(s.wants(events::APPLICATION_APPROVED));
        assert!(!s.wants(events::QUOTE_CREATED));
    }
}
