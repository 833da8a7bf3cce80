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

use super::gate::{Position, ProjectorGate, Verdict};
use super::ReminderConfig;
use crate::consumer::{BatchHandler, ConsumerLoop, ConsumerSettings, Outcome, Retry};
use crate::dead_letter::DeadLetter;

pub const GROUP: &str = "broker-email-service";

pub struct ReminderConsumer {
    store: Arc<dyn ReminderStore>,
    policy: ReminderPolicy,
    clock: Arc<dyn Clock>,
    /// The projector's verdicts (`gate`); `None` folds every valid event, for tests of the
    /// reminder timers alone.
    gate: Option<ProjectorGate>,
}

impl ReminderConsumer {
    pub fn new(
        store: Arc<dyn ReminderStore>,
        config: &ReminderConfig,
        clock: Arc<dyn Clock>,
        gate: Option<ProjectorGate>,
    ) -> Self {
        Self {
            store,
            policy: config.policy(),
            clock,
            gate,
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
        let mut outcomes = vec![Outcome::Done; batch.len()];
        let mut relevant = Vec::new();
        for (i, message) in batch.iter().enumerate() {
            match decode(message) {
                Ok(Some((envelope, event))) => relevant.push((i, envelope, event)),
                Ok(None) => {}
                Err(why) => outcomes[i] = Outcome::DeadLetter(why),
            }
        }
        if relevant.is_empty() {
            return Ok(outcomes);
        }
        let verdicts = match &self.gate {
            Some(gate) => {
                let positions: Vec<Position> = relevant
                    .iter()
                    .map(|(i, envelope, _)| Position {
                        key: envelope.key(),
                        topic: batch[*i].topic.clone(),
                        partition: batch[*i].partition,
                        offset: batch[*i].offset,
                    })
                    .collect();
                gate.verdicts(&positions).await.map_err(Retry)?
            }
            None => vec![Verdict::Accepted; relevant.len()],
        };
        for ((_, envelope, event), verdict) in relevant.iter().zip(verdicts) {
            if verdict == Verdict::Refused {
                tracing::info!(event_id = %envelope.id, source = %envelope.source, "the projector refused this event; reminders ignore it");
                metrics::counter!("enrollstream_reminder_events_total", "outcome" => "refused_by_projector")
                    .increment(1);
                continue;
            }
            // When it happened, as the producer saw it; never in our future, so a skewed
            // producer clock cannot push the first reminder out.
            let now = self.clock.now();
            let at = envelope.time.map_or(now, |t| t.min(now));
            let outcome = self
                .store
                .apply_event(&envelope.key(), event, at, &self.policy)
                .await
                .map_err(|e| Retry(format!("reminder store: {e}")))?;
            let label = match outcome {
                EventOutcome::Applied => "applied",
                EventOutcome::AlreadyApplied => "already_applied",
                EventOutcome::Ignored => "ignored",
            };
            metrics::counter!("enrollstream_reminder_events_total", "outcome" => label)
                .increment(1);
        }
        Ok(outcomes)
    }
}

/// Run the reminder consumer (built with [`ReminderConsumer::new`]) on the enrollment events
/// topic until `shutdown`.
pub async fn run_consumer(
    bus: Arc<dyn EventBus>,
    consumer: ReminderConsumer,
    topics: TopicNames,
    health: HealthRegistry,
    shutdown: CancellationToken,
) {
    let mut settings = ConsumerSettings::new(GROUP, vec![topics.enrollment_events.clone()]);
    settings.dlq_suffix = topics.dlq_suffix;
    ConsumerLoop {
        bus,
        handler: consumer,
        settings,
        health,
        shutdown,
    }
    .run()
    .await
}
