//! The reminder consumer (group `broker-email-service`): folds the enrollment events into the
//! reminder store, one atomic write per event, fenced by the event id inside the record, and
//! lets the consumer loop commit only after the writes are durable.

use async_trait::async_trait;
use enrollstream_domain::reminder::{Reminder, ReminderPolicy};
use enrollstream_domain::{ApplicationEvent, CloudEvent, DomainEvent};
use enrollstream_ports::reminders::{EventOutcome, ReminderStore};
use enrollstream_ports::{codec, Clock, EventBus, HealthRegistry, InboundMessage, TopicNames};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use super::ReminderConfig;
use crate::consumer::{BatchHandler, ConsumerLoop, ConsumerSettings, Outcome, Retry};
use crate::dead_letter::DeadLetter;

pub const GROUP: &str = "broker-email-service";

pub struct ReminderConsumer {
    store: Arc<dyn ReminderStore>,
    policy: ReminderPolicy,
    clock: Arc<dyn Clock>,
}

impl ReminderConsumer {
    pub fn new(
        store: Arc<dyn ReminderStore>,
        config: &ReminderConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            policy: config.policy(),
            clock,
        }
    }
}

/// The event of a message if it concerns reminders; `None` for a valid event that does not
/// (an approval, another entity).
fn decode(message: &InboundMessage) -> Result<Option<(CloudEvent, ApplicationEvent)>, DeadLetter> {
    let envelope = codec::decode(message).map_err(|e| DeadLetter::new("undecodable", &e))?;
    match DomainEvent::from_cloud_event(&envelope) {
        Ok(DomainEvent::Application(event)) if Reminder::concerns(&event) => {
            Ok(Some((envelope, event)))
        }
        Ok(_) => Ok(None),
        Err(e) => Err(DeadLetter::new("invalid_event", &e)),
    }
}

#[async_trait]
impl BatchHandler for ReminderConsumer {
    async fn handle(&mut self, batch: &[InboundMessage]) -> Result<Vec<Outcome>, Retry> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for message in batch {
            let (envelope, event) = match decode(message) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => {
                    outcomes.push(Outcome::Done);
                    continue;
                }
                Err(why) => {
                    outcomes.push(Outcome::DeadLetter(why));
                    continue;
                }
            };
            // When it happened, as the producer saw it; never in our future, so a skewed
            // producer clock cannot push the first reminder out.
            let now = self.clock.now();
            let at = envelope.time.map_or(now, |t| t.min(now));
            let outcome = self
                .store
                .apply_event(&envelope.id, &event, at, &self.policy)
                .await
                .map_err(|e| Retry(format!("reminder store: {e}")))?;
            let label = match outcome {
                EventOutcome::Applied => "applied",
                EventOutcome::AlreadyApplied => "already_applied",
                EventOutcome::Ignored => "ignored",
            };
            metrics::counter!("enrollstream_reminder_events_total", "outcome" => label)
                .increment(1);
            outcomes.push(Outcome::Done);
        }
        Ok(outcomes)
    }
}

/// Run the reminder consumer on the enrollment events topic until `shutdown`.
pub async fn run_consumer(
    bus: Arc<dyn EventBus>,
    store: Arc<dyn ReminderStore>,
    config: ReminderConfig,
    topics: TopicNames,
    clock: Arc<dyn Clock>,
    health: HealthRegistry,
    shutdown: CancellationToken,
) {
    let mut settings = ConsumerSettings::new(GROUP, vec![topics.enrollment_events.clone()]);
    settings.dlq_suffix = topics.dlq_suffix;
    ConsumerLoop {
        bus,
        handler: ReminderConsumer::new(store, &config, clock),
        settings,
        health,
        shutdown,
    }
    .run()
    .await
}
