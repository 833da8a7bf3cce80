//! The soak's own Kafka client (the production adapter): reading topics whole, and the lag of
//! the consumer groups (end offsets minus committed positions).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use enrollstream_kafka::{KafkaBus, KafkaConfig};
use enrollstream_ports::{EventBus, InboundMessage, StartFrom, SubscriptionSpec};

pub fn connect(bootstrap: &str) -> anyhow::Result<KafkaBus> {
    KafkaBus::new(KafkaConfig {
        brokers: bootstrap.to_string(),
        ..KafkaConfig::default()
    })
    .map_err(|e| anyhow!("the soak's Kafka client: {e}"))
}

/// Every message of `topics` up to their ends as they are now, read by a fresh group from the
/// beginning; an error if that takes past `until`.
pub async fn read_all(
    bus: &KafkaBus,
    topics: &[String],
    until: Instant,
) -> anyhow::Result<Vec<InboundMessage>> {
    let ends: HashMap<(String, i32), i64> = bus
        .end_offsets(topics)
        .await
        .context("end offsets")?
        .into_iter()
        .filter(|p| p.next_offset > 0)
        .map(|p| ((p.topic, p.partition), p.next_offset))
        .collect();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut spec = SubscriptionSpec::new(format!("soak-reader-{}", uuid::Uuid::new_v4()), &names);
    spec.start = StartFrom::Earliest;
    let mut subscription = bus.subscribe(spec).await.context("subscribing")?;
    let mut reached: HashMap<(String, i32), i64> = HashMap::new();
    let mut all = Vec::new();
    let done = |reached: &HashMap<(String, i32), i64>| {
        ends.iter()
            .all(|(tp, end)| reached.get(tp).is_some_and(|r| r >= end))
    };
    while !done(&reached) {
        if Instant::now() > until {
            anyhow::bail!(
                "read {} message(s) of {topics:?} before the deadline, not to their end",
                all.len()
            );
        }
        let batch = subscription
            .poll(1000, Duration::from_millis(500))
            .await
            .context("polling")?;
        for m in batch {
            let next = reached.entry((m.topic.clone(), m.partition)).or_default();
            *next = (*next).max(m.offset + 1);
            all.push(m);
        }
    }
    let _ = subscription.close().await;
    Ok(all)
}

/// Messages of `topics` that `group` has not committed, summed over partitions.
pub async fn lag(bus: &KafkaBus, group: &str, topics: &[String]) -> anyhow::Result<i64> {
    let committed: HashMap<(String, i32), i64> = bus
        .committed(group, topics)
        .await
        .with_context(|| format!("committed offsets of {group}"))?
        .into_iter()
        .map(|p| ((p.topic, p.partition), p.next_offset))
        .collect();
    let ends = bus.end_offsets(topics).await.context("end offsets")?;
    Ok(ends
        .into_iter()
        .map(|end| {
            let done = committed
                .get(&(end.topic, end.partition))
                .copied()
                .unwrap_or(0);
            (end.next_offset - done).max(0)
        })
        .sum())
}

/// The committed position of `group` on one partition (0 when it never committed).
pub async fn committed_at(
    bus: &KafkaBus,
    group: &str,
    topic: &str,
    partition: i32,
) -> anyhow::Result<i64> {
    Ok(bus
        .committed(group, &[topic.to_string()])
        .await
        .with_context(|| format!("committed offsets of {group}"))?
        .into_iter()
        .find(|p| p.partition == partition)
        .map_or(0, |p| p.next_offset))
}
