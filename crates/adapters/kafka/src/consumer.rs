//! Consuming: one librdkafka consumer per subscription, a member of the subscription's group,
//! with offsets committed only when the caller says so.
//!
//! librdkafka's consumer API is blocking, so polls and commits run on tokio's blocking pool. A
//! poll that is cancelled keeps its messages for the next poll: the consumer has already moved
//! past them, and dropping them would skip them until the next restart.

use async_trait::async_trait;
use enrollstream_ports::{
    BusError, CommitPosition, InboundMessage, Subscription, SubscriptionSpec,
};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

use crate::config::KafkaConfig;
use crate::errors::{self, classify};
use crate::membership::{Membership, Partition};

type SharedConsumer = Arc<BaseConsumer<Membership>>;
type Batch = Result<Vec<InboundMessage>, BusError>;

pub struct KafkaSubscription {
    /// `None` only once closed.
    consumer: Option<SharedConsumer>,
    /// A poll whose caller went away; its messages are the next poll's answer.
    inflight: Option<JoinHandle<Batch>>,
}

pub(crate) fn subscribe(
    config: &KafkaConfig,
    spec: SubscriptionSpec,
) -> Result<KafkaSubscription, BusError> {
    let membership = Membership::new(spec.group.clone(), spec.start);
    let consumer: BaseConsumer<Membership> = config
        .member(&spec.group, &spec.client_id)
        .create_with_context(membership)
        .map_err(|e| classify(&e))?;
    let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| BusError::Fatal(format!("cannot subscribe to {topics:?}: {e}")))?;
    tracing::info!(group = %spec.group, member = %spec.client_id, topics = ?spec.topics, start = ?spec.start, "subscribed");
    Ok(KafkaSubscription {
        consumer: Some(Arc::new(consumer)),
        inflight: None,
    })
}

fn inbound(message: &BorrowedMessage<'_>) -> InboundMessage {
    // Our keys and header values are UTF-8 strings; a foreign producer's bytes that are not are
    // carried lossily rather than refused, and the runner dead-letters what it cannot decode.
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| (h.key.to_string(), h.value.map(text).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    InboundMessage {
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(text),
        headers,
        payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        timestamp_ms: message.timestamp().to_millis(),
    }
}

/// Wait up to `max_wait` for a first message, then take what is already fetched, up to `max`.
fn collect(consumer: &BaseConsumer<Membership>, max: usize, max_wait: Duration) -> Batch {
    let deadline = Instant::now() + max_wait;
    let mut batch: Vec<InboundMessage> = Vec::new();
    let mut last_error = None;
    while batch.len() < max {
        let waiting = batch.is_empty();
        let timeout = if waiting {
            deadline.saturating_duration_since(Instant::now())
        } else {
            Duration::ZERO
        };
        let polled = consumer.poll(timeout).map(|r| r.map(|m| inbound(&m)));
        // A rebalance served during this poll revoked partitions: what we fetched from them
        // before belongs to their next owner. What this poll returned is already from after it.
        let revoked = consumer.context().take_revoked();
        if !revoked.is_empty() {
            batch.retain(|m| !revoked.contains(&(m.topic.clone(), m.partition)));
        }
        match polled {
            Some(Ok(message)) => batch.push(message),
            Some(Err(error)) => {
                let bus_error = classify(&error);
                if matches!(bus_error, BusError::Fatal(_)) {
                    return Err(bus_error);
                }
                // Consumer errors are reports: librdkafka reconnects and refetches by itself.
                // Only those that mean "nothing can come" are worth an error for the caller
                // (and its readiness), and only if nothing came.
                tracing::warn!(%error, "consumer error");
                if error
                    .rdkafka_error_code()
                    .is_some_and(errors::means_unavailable)
                {
                    last_error = Some(bus_error);
                }
            }
            None if waiting && Instant::now() < deadline => {}
            None => break,
        }
    }
    match last_error {
        Some(error) if batch.is_empty() => Err(error),
        _ => Ok(batch),
    }
}

/// Commit the highest position per partition among those this member still owns. Positions of
/// partitions that moved to another member are skipped: their new owner starts from the last
/// commit and redoes the rest, which the effects' idempotence makes harmless, while committing
/// them could move the new owner's position under its feet. The broker does not stop that: the
/// classic group protocol checks a commit's generation and member id, not which member owns
/// the partition, and under the cooperative protocol a revoked partition's commit in the same
/// generation is accepted.
fn commit(
    consumer: &BaseConsumer<Membership>,
    positions: &[CommitPosition],
) -> Result<(), BusError> {
    let assigned = consumer.context().assigned();
    let mut latest: BTreeMap<Partition, i64> = BTreeMap::new();
    for p in positions {
        let key = (p.topic.clone(), p.partition);
        if !assigned.contains(&key) {
            tracing::debug!(topic = %p.topic, partition = p.partition, "not committing a partition this member no longer owns");
            continue;
        }
        let next = latest.entry(key).or_insert(p.next_offset);
        *next = (*next).max(p.next_offset);
    }
    if latest.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::with_capacity(latest.len());
    for ((topic, partition), next) in &latest {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))
            .map_err(|e| classify(&e))?;
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .map_err(|e| classify(&e))?;
    consumer.context().record_commits(&latest);
    Ok(())
}

/// Leave the group: dropping the last handle runs librdkafka's consumer close, which serves the
/// final revoke and waits until the member is gone. Messages fetched but not committed go to
/// the partitions' next owners.
fn leave(consumer: SharedConsumer) {
    tracing::debug!(group = %consumer.context().group(), "leaving the group");
    drop(consumer);
}

fn join_error(e: tokio::task::JoinError) -> BusError {
    BusError::Fatal(format!("consumer task failed: {e}"))
}

impl KafkaSubscription {
    fn consumer(&self) -> Result<&SharedConsumer, BusError> {
        self.consumer
            .as_ref()
            .ok_or_else(|| BusError::Fenced("subscription closed".into()))
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn poll(
        &mut self,
        max: usize,
        max_wait: Duration,
    ) -> Result<Vec<InboundMessage>, BusError> {
        if self.inflight.is_none() {
            let consumer = Arc::clone(self.consumer()?);
            let max = max.max(1);
            self.inflight = Some(tokio::task::spawn_blocking(move || {
                collect(&consumer, max, max_wait)
            }));
        }
        let handle = self.inflight.as_mut().expect("a poll is in flight");
        let batch = handle.await;
        self.inflight = None;
        batch.map_err(join_error)?
    }

    async fn commit(&mut self, positions: &[CommitPosition]) -> Result<(), BusError> {
        if positions.is_empty() {
            return Ok(());
        }
        let consumer = Arc::clone(self.consumer()?);
        let positions = positions.to_vec();
        tokio::task::spawn_blocking(move || commit(&consumer, &positions))
            .await
            .map_err(join_error)?
    }

    fn assignment(&self) -> Vec<(String, i32)> {
        self.consumer
            .as_ref()
            .map(|c| c.context().assigned().into_iter().collect())
            .unwrap_or_default()
    }

    async fn close(mut self: Box<Self>) -> Result<(), BusError> {
        // Let an abandoned poll finish so that this is the last handle and the close below is
        // the real one (bounded by that poll's wait).
        if let Some(handle) = self.inflight.take() {
            let _ = handle.await;
        }
        let Some(consumer) = self.consumer.take() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || leave(consumer))
            .await
            .map_err(join_error)
    }
}

impl Drop for KafkaSubscription {
    fn drop(&mut self) {
        // Dropped without `close`: the member still leaves the group, which blocks, so that
        // happens on a thread of its own rather than on the async runtime. Nothing uncommitted
        // is committed. A process that dies instead loses its partitions after
        // `session.timeout.ms`.
        if let Some(consumer) = self.consumer.take() {
            let spawned = std::thread::Builder::new()
                .name("kafka-consumer-close".into())
                .spawn(move || leave(consumer));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "closing the consumer in place");
            }
        }
    }
}
