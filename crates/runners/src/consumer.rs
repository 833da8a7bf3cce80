//! The consumer loop every bus-reading role runs on: poll a batch, let the handler make its
//! effects durable, send what it could not process to the dead-letter topic, and only then
//! commit. A crash anywhere in between means redelivery, which the handlers' fences turn into
//! no-ops; a bad message costs one DLQ write and never blocks its partition.

use async_trait::async_trait;
use enrollstream_ports::{
    BusError, CommitPosition, EventBus, HealthRegistry, InboundMessage, StartFrom, Subscription,
    SubscriptionSpec,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::dead_letter::{dead_letter_message, DeadLetter};

/// What became of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its effect is durable (or it needed none).
    Done,
    /// It can never be processed as it is; park it in the DLQ with the reason.
    DeadLetter(DeadLetter),
}

/// A failure of the whole batch that may heal (store or bus away): the batch is retried as a
/// whole after a backoff, nothing is committed meanwhile.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Retry(pub String);

#[async_trait]
pub trait BatchHandler: Send {
    /// One outcome per message, in order. When this returns `Ok`, the effects of every `Done`
    /// message are durable. Must be idempotent: the same batch may come again after a crash.
    async fn handle(&mut self, batch: &[InboundMessage]) -> Result<Vec<Outcome>, Retry>;
}

#[derive(Clone, Debug)]
pub struct ConsumerSettings {
    pub group: String,
    pub topics: Vec<String>,
    pub start: StartFrom,
    pub batch_size: usize,
    pub poll_wait: Duration,
    pub dlq_suffix: String,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

impl ConsumerSettings {
    pub fn new(group: &str, topics: Vec<String>) -> Self {
        Self {
            group: group.to_string(),
            topics,
            start: StartFrom::Committed,
            batch_size: 500,
            poll_wait: Duration::from_millis(500),
            dlq_suffix: ".dlq".to_string(),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
        }
    }
}

pub struct ConsumerLoop<H> {
    pub bus: Arc<dyn EventBus>,
    pub handler: H,
    pub settings: ConsumerSettings,
    pub health: HealthRegistry,
    pub shutdown: CancellationToken,
}

impl<H: BatchHandler> ConsumerLoop<H> {
    /// Runs until shutdown; returns after leaving the group cleanly.
    pub async fn run(mut self) {
        let component = format!("consumer:{}", self.settings.group);
        let mut backoff = Backoff::new(self.settings.retry_initial, self.settings.retry_max);
        let Some(mut sub) = self.subscribe(&component, &mut backoff).await else {
            return;
        };
        self.health.ready(&component);
        while !self.shutdown.is_cancelled() {
            let polled = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                r = sub.poll(self.settings.batch_size, self.settings.poll_wait) => r,
            };
            let batch = match polled {
                Ok(b) if b.is_empty() => continue,
                Ok(b) => b,
                Err(e) => {
                    self.health
                        .set(&component, false, format!("poll failed: {e}"));
                    tracing::warn!(group = %self.settings.group, error = %e, "poll failed");
                    if !self.pause(&mut backoff).await {
                        break;
                    }
                    continue;
                }
            };
            if !self
                .process(&component, sub.as_mut(), &batch, &mut backoff)
                .await
            {
                break;
            }
        }
        if let Err(e) = sub.close().await {
            tracing::warn!(group = %self.settings.group, error = %e, "leaving the group failed");
        }
    }

    async fn subscribe(
        &self,
        component: &str,
        backoff: &mut Backoff,
    ) -> Option<Box<dyn Subscription>> {
        loop {
            let spec = SubscriptionSpec {
                group: self.settings.group.clone(),
                topics: self.settings.topics.clone(),
                start: self.settings.start,
                client_id: self.settings.group.clone(),
            };
            match self.bus.subscribe(spec).await {
                Ok(sub) => return Some(sub),
                Err(e) => {
                    self.health
                        .set(component, false, format!("subscribe failed: {e}"));
                    tracing::warn!(group = %self.settings.group, error = %e, "subscribe failed");
                    if !self.pause(backoff).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Handle, dead-letter and commit one batch, retrying until done. False on shutdown.
    async fn process(
        &mut self,
        component: &str,
        sub: &mut dyn Subscription,
        batch: &[InboundMessage],
        backoff: &mut Backoff,
    ) -> bool {
        let group = self.settings.group.clone();
        let started = Instant::now();
        let outcomes = loop {
            match self.handler.handle(batch).await {
                Ok(outcomes) if outcomes.len() == batch.len() => break outcomes,
                Ok(outcomes) => {
                    // A handler bug must not lose messages: treat it as a failed batch.
                    tracing::error!(group = %group, expected = batch.len(), got = outcomes.len(), "handler returned the wrong number of outcomes");
                    self.health.set(
                        component,
                        false,
                        "handler returned the wrong number of outcomes",
                    );
                }
                Err(e) => {
                    self.health.set(component, false, e.0.clone());
                    tracing::warn!(group = %group, error = %e, "batch failed, retrying");
                }
            }
            if !self.pause(backoff).await {
                return false;
            }
        };
        // Dead letters are written before the commit: if we crash in between, the message is
        // redelivered and dead-lettered again (same content, harmless), never lost.
        let mut dead: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for (message, outcome) in batch.iter().zip(&outcomes) {
            if let Outcome::DeadLetter(why) = outcome {
                tracing::warn!(group = %group, topic = %message.topic, partition = message.partition, offset = message.offset, reason = %why.reason, error = %why.error, "dead-lettering message");
                metrics::counter!("enrollstream_dead_letters_total", "group" => group.clone(), "reason" => why.reason.clone()).increment(1);
                dead.entry(format!("{}{}", message.topic, self.settings.dlq_suffix))
                    .or_default()
                    .push(dead_letter_message(message, &group, why));
            }
        }
        let publisher = self.bus.publisher();
        for (topic, messages) in dead {
            loop {
                match publisher.publish(&topic, messages.clone()).await {
                    Ok(()) => break,
                    Err(e) => {
                        self.health.set(
                            component,
                            false,
                            format!("dead-letter publish failed: {e}"),
                        );
                        if !self.pause(backoff).await {
                            return false;
                        }
                    }
                }
            }
        }
        let positions = commit_positions(batch);
        loop {
            match sub.commit(&positions).await {
                Ok(()) => break,
                Err(BusError::Fenced(why)) => {
                    // The partition moved to another member, which re-reads from the last commit;
                    // our effects are fenced, so its redo is a no-op.
                    tracing::info!(group = %group, %why, "commit fenced after a rebalance");
                    break;
                }
                Err(e) => {
                    self.health
                        .set(component, false, format!("commit failed: {e}"));
                    if !self.pause(backoff).await {
                        return false;
                    }
                }
            }
        }
        backoff.reset();
        self.health.ready(component);
        let done = outcomes.iter().filter(|o| **o == Outcome::Done).count() as u64;
        metrics::counter!("enrollstream_consumer_messages_total", "group" => group.clone(), "outcome" => "done").increment(done);
        metrics::counter!("enrollstream_consumer_messages_total", "group" => group.clone(), "outcome" => "dead_letter").increment(batch.len() as u64 - done);
        metrics::histogram!("enrollstream_consumer_batch_seconds", "group" => group)
            .record(started.elapsed().as_secs_f64());
        true
    }

    /// Back off, unless shutting down. False on shutdown.
    async fn pause(&self, backoff: &mut Backoff) -> bool {
        let delay = backoff.next_delay();
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

/// The highest next offset per partition of a batch.
pub fn commit_positions(batch: &[InboundMessage]) -> Vec<CommitPosition> {
    let mut best: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for m in batch {
        let e = best
            .entry((m.topic.clone(), m.partition))
            .or_insert(m.offset + 1);
        *e = (*e).max(m.offset + 1);
    }
    best.into_iter()
        .map(|((topic, partition), next_offset)| CommitPosition {
            topic,
            partition,
            next_offset,
        })
        .collect()
}
