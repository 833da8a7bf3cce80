//! What a group has committed, read with OffsetFetch by a client that never joins the group (so
//! asking does not trigger a rebalance of its members).

use enrollstream_ports::{BusError, CommitPosition};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

use crate::config::KafkaConfig;
use crate::context::Logging;
use crate::errors::classify;

/// Blocking: run it on a blocking thread.
pub(crate) fn committed(
    config: &KafkaConfig,
    group: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<CommitPosition>, BusError> {
    let consumer = offsets_client(config, group)?;
    let tpl = partitions(&consumer, topics, timeout)?;
    if tpl.count() == 0 {
        return Ok(Vec::new());
    }
    let committed = while_the_coordinator_moves(timeout, |left| {
        consumer.committed_offsets(tpl.clone(), left)
    })
    .map_err(|e| classify(&e))?;
    let mut positions: Vec<CommitPosition> = committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(next) => Some(CommitPosition {
                topic: e.topic().to_string(),
                partition: e.partition(),
                next_offset: next,
            }),
            _ => None,
        })
        .collect();
    positions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(positions)
}

/// Blocking: the high watermark of every partition of `topics`.
pub(crate) fn end_offsets(
    config: &KafkaConfig,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<CommitPosition>, BusError> {
    // Never joins: the group name only satisfies the client's configuration.
    let consumer = offsets_client(config, "enrollstream-watermarks")?;
    let tpl = partitions(&consumer, topics, timeout)?;
    let mut positions = Vec::with_capacity(tpl.count());
    for e in tpl.elements() {
        let (_, high) = consumer
            .fetch_watermarks(e.topic(), e.partition(), timeout)
            .map_err(|e| classify(&e))?;
        positions.push(CommitPosition {
            topic: e.topic().to_string(),
            partition: e.partition(),
            next_offset: high,
        });
    }
    Ok(positions)
}

fn offsets_client(config: &KafkaConfig, group: &str) -> Result<BaseConsumer<Logging>, BusError> {
    let client_id = format!("{}-offsets", config.client_id);
    config
        .consumer(group, &client_id)
        .create_with_context(Logging)
        .map_err(|e| classify(&e))
}

/// Every partition of `topics`; a topic that does not exist has none.
fn partitions(
    consumer: &BaseConsumer<Logging>,
    topics: &[String],
    timeout: Duration,
) -> Result<TopicPartitionList, BusError> {
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| classify(&e))?;
        for t in metadata.topics() {
            if t.error().is_some() {
                continue;
            }
            for p in t.partitions() {
                tpl.add_partition(t.name(), p.id());
            }
        }
    }
    Ok(tpl)
}

/// Retry `ask` while the group's coordinator is not ready (a broker that just started or
/// restarted is still loading `__consumer_offsets`, or the coordinator moved), until `timeout`.
/// librdkafka does not retry these for a one-off OffsetFetch.
fn while_the_coordinator_moves<T>(
    timeout: Duration,
    mut ask: impl FnMut(Duration) -> KafkaResult<T>,
) -> KafkaResult<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match ask(left) {
            Err(e) if coordinator_moving(&e) && Instant::now() + RETRY_PAUSE < deadline => {
                tracing::debug!(error = %e, "group coordinator not ready; asking again");
                std::thread::sleep(RETRY_PAUSE);
            }
            answer => return answer,
        }
    }
}

const RETRY_PAUSE: Duration = Duration::from_millis(100);

fn coordinator_moving(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        error.rdkafka_error_code(),
        Some(NotCoordinator | CoordinatorLoadInProgress | CoordinatorNotAvailable)
    )
}
