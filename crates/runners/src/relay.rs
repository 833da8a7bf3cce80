//! The relay: publishes outbox messages to their topics, then marks them published. A crash
//! after publishing and before marking publishes them again on restart, with the same ids
//! (deterministic), which consumers dedupe; nothing recorded is ever lost.
//!
//! A message the bus will never take (larger than `max_message_bytes`, or refused with a
//! `Fatal` error on its own) is parked instead of stopping every notification behind it: to
//! `<topic><dlq_suffix>` with the reason, or, when the DLQ refuses it too, in the store
//! (`Store::park_outbox`) with `enrollstream_outbox_parked_total` and an error log. Either way
//! it leaves the outbox, and the relay moves on.

use chrono::{SecondsFormat, Utc};
use enrollstream_domain::envelope::trace_id;
use enrollstream_ports::codec;
use enrollstream_ports::{
    BusError, EventBus, HealthRegistry, OutboundMessage, Publisher, Store, StoredOutboxMessage,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::dead_letter::{CONSUMER_GROUP, ERROR, FAILED_AT, ORIGINAL_TOPIC, REASON};

pub const COMPONENT: &str = "relay";

pub struct Relay {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn EventBus>,
    pub health: HealthRegistry,
    pub shutdown: CancellationToken,
    pub batch_size: usize,
    /// Upper bound of an idle wait; the store's wake-up normally ends it much sooner.
    pub idle_wait: Duration,
    /// Largest message published (key, header names and values, payload); larger ones are
    /// parked without trying.
    pub max_message_bytes: usize,
    /// Parked messages of `<topic>` go to `<topic><dlq_suffix>`.
    pub dlq_suffix: String,
}

/// The trace of relaying a message: under the span its `traceparent` names (the notification's).
fn publish_span(m: &StoredOutboxMessage) -> tracing::Span {
    let traceparent = m
        .message
        .headers
        .iter()
        .find(|(name, _)| name == codec::TRACEPARENT)
        .map(|(_, value)| value.as_str());
    tracing::info_span!(
        "relay.publish",
        trace_parent = traceparent,
        trace_id = traceparent.map(trace_id),
        notification_id = %m.id,
        topic = %m.topic,
        event_id = %m.event_id,
        entity_id = %m.message.key,
    )
}

/// The size a message has on the bus, near enough to compare with the broker's limit.
pub fn message_size(m: &OutboundMessage) -> usize {
    m.key.len()
        + m.payload.len()
        + m.headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

impl Relay {
    pub async fn run(self) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let publisher = self.bus.publisher();
        self.health.ready(COMPONENT);
        while !self.shutdown.is_cancelled() {
            match self.relay_once(publisher.as_ref()).await {
                Ok(0) => {
                    backoff.reset();
                    self.health.ready(COMPONENT);
                    tokio::select! {
                        _ = self.shutdown.cancelled() => break,
                        _ = self.store.wait_for_outbox(self.idle_wait) => {}
                    }
                }
                Ok(_) => {
                    backoff.reset();
                    self.health.ready(COMPONENT);
                }
                Err(e) => {
                    self.health.set(COMPONENT, false, e.clone());
                    tracing::warn!(error = %e, "relay failed, retrying");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
    }

    /// Publish one batch of pending messages; returns how many left the outbox (published or
    /// parked).
    pub async fn relay_once(&self, publisher: &dyn Publisher) -> Result<usize, String> {
        let pending = self
            .store
            .pending_outbox(self.batch_size)
            .await
            .map_err(|e| e.to_string())?;
        if pending.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = pending.iter().map(|p| p.id.clone()).collect();
        // Open until the batch is marked published (dropped on return).
        let _spans: Vec<tracing::Span> = pending.iter().map(publish_span).collect();
        // Per topic, in creation order: a key's messages stay in order because one publish call
        // keeps per-key order and topics are independent.
        let mut by_topic: BTreeMap<String, Vec<StoredOutboxMessage>> = BTreeMap::new();
        for p in pending {
            if message_size(&p.message) > self.max_message_bytes {
                let why = format!(
                    "{} bytes, more than relay.max_message_bytes ({})",
                    message_size(&p.message),
                    self.max_message_bytes
                );
                self.park(publisher, &p, "message_too_large", &why).await?;
            } else {
                by_topic.entry(p.topic.clone()).or_default().push(p);
            }
        }
        // The topics go out at once, so a bus that commits concurrent publishes together (the
        // embedded one, Kafka's producer batches) pays one durable write for all of them.
        let publishes = by_topic.into_iter().map(|(topic, messages)| async move {
            let n = messages.len() as u64;
            let batch: Vec<OutboundMessage> = messages.iter().map(|m| m.message.clone()).collect();
            match publisher.publish(&topic, batch).await {
                Ok(()) => {}
                // One message the bus refuses for good fails the call: publish one by one to
                // find it (the others go out again with their ids, which consumers dedupe).
                Err(BusError::Fatal(why)) => {
                    tracing::warn!(%topic, error = %why, "the bus refused a batch; publishing one by one");
                    for m in &messages {
                        match publisher.publish(&topic, vec![m.message.clone()]).await {
                            Ok(()) => {}
                            Err(BusError::Fatal(why)) => {
                                self.park(publisher, m, "refused_by_bus", &why).await?
                            }
                            Err(e) => return Err(format!("publish to {topic}: {e}")),
                        }
                    }
                }
                Err(e) => return Err(format!("publish to {topic}: {e}")),
            }
            metrics::counter!("enrollstream_outbox_published_total", "topic" => topic).increment(n);
            Ok::<_, String>(())
        });
        futures::future::try_join_all(publishes).await?;
        self.store
            .mark_published(&ids)
            .await
            .map_err(|e| e.to_string())?;
        Ok(ids.len())
    }

    /// Take `m` out of the way: to its topic's DLQ with the reason, or into the store when the
    /// DLQ refuses it too. Err only when that could not be made durable (retried).
    async fn park(
        &self,
        publisher: &dyn Publisher,
        m: &StoredOutboxMessage,
        reason: &str,
        error: &str,
    ) -> Result<(), String> {
        let dlq = format!("{}{}", m.topic, self.dlq_suffix);
        let mut dead = m.message.clone();
        dead.headers.retain(|(k, _)| !k.starts_with("dlq_"));
        dead.headers.extend([
            (REASON.to_string(), reason.to_string()),
            (ERROR.to_string(), error.chars().take(4096).collect()),
            (ORIGINAL_TOPIC.to_string(), m.topic.clone()),
            (
                FAILED_AT.to_string(),
                Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            ),
            (CONSUMER_GROUP.to_string(), COMPONENT.to_string()),
        ]);
        let refused = if message_size(&dead) > self.max_message_bytes {
            format!("{error} (too large for its DLQ too)")
        } else {
            match publisher.publish(&dlq, vec![dead]).await {
                Ok(()) => {
                    tracing::warn!(id = %m.id, topic = %m.topic, event_id = %m.event_id, entity_id = %m.message.key, %dlq, %reason, %error, "outbox message dead-lettered");
                    metrics::counter!("enrollstream_outbox_parked_total", "topic" => m.topic.clone(), "where" => "dlq").increment(1);
                    return Ok(());
                }
                Err(BusError::Fatal(again)) => {
                    format!("{error}; its DLQ {dlq} refused it too: {again}")
                }
                Err(e) => return Err(format!("dead-letter to {dlq}: {e}")),
            }
        };
        self.store
            .park_outbox(m, &format!("{reason}: {refused}"), Utc::now())
            .await
            .map_err(|e| format!("parking outbox message {}: {e}", m.id))?;
        tracing::error!(id = %m.id, topic = %m.topic, event_id = %m.event_id, entity_id = %m.message.key, %reason, error = %refused, "ALERT: an outbox message the bus will not take is parked in the store; raise the limit or inspect it, then publish it by hand");
        metrics::counter!("enrollstream_outbox_parked_total", "topic" => m.topic.clone(), "where" => "store").increment(1);
        Ok(())
    }
}
