//! The relay: publishes outbox messages to their topics, then marks them published. A crash
//! after publishing and before marking publishes them again on restart, with the same ids
//! (deterministic), which consumers dedupe; nothing recorded is ever lost.

use enrollstream_ports::{EventBus, HealthRegistry, Store};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

pub const COMPONENT: &str = "relay";

pub struct Relay {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn EventBus>,
    pub health: HealthRegistry,
    pub shutdown: CancellationToken,
    pub batch_size: usize,
    /// Upper bound of an idle wait; the store's wake-up normally ends it much sooner.
    pub idle_wait: Duration,
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

    /// Publish one batch of pending messages; returns how many were published.
    pub async fn relay_once(
        &self,
        publisher: &dyn enrollstream_ports::Publisher,
    ) -> Result<usize, String> {
        let pending = self
            .store
            .pending_outbox(self.batch_size)
            .await
            .map_err(|e| e.to_string())?;
        if pending.is_empty() {
            return Ok(0);
        }
        // Per topic, in creation order: a key's messages stay in order because one publish call
        // keeps per-key order and topics are independent.
        let ids: Vec<String> = pending.iter().map(|p| p.id.clone()).collect();
        let mut by_topic: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for p in pending {
            by_topic.entry(p.topic).or_default().push(p.message);
        }
        // The topics go out at once, so a bus that commits concurrent publishes together (the
        // embedded one, Kafka's producer batches) pays one durable write for all of them.
        let publishes = by_topic.into_iter().map(|(topic, messages)| async move {
            let n = messages.len() as u64;
            publisher
                .publish(&topic, messages)
                .await
                .map_err(|e| format!("publish to {topic}: {e}"))?;
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
}
