//! What a group has committed, read with OffsetFetch by a client that never joins the group (so
//! asking does not trigger a rebalance of its members).

use enrollstream_ports::{BusError, CommitPosition};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::time::Duration;

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
    let client_id = format!("{}-offsets", config.client_id);
    let consumer: BaseConsumer<Logging> = config
        .consumer(group, &client_id)
        .create_with_context(Logging)
        .map_err(|e| classify(&e))?;
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| classify(&e))?;
        for t in metadata.topics() {
            // A topic that does not exist has no commits: nothing to ask for.
            if t.error().is_some() {
                continue;
            }
            for p in t.partitions() {
                tpl.add_partition(t.name(), p.id());
            }
        }
    }
    if tpl.count() == 0 {
        return Ok(Vec::new());
    }
    let committed = consumer
        .committed_offsets(tpl, timeout)
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
