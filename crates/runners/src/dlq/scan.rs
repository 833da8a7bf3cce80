//! Reading a whole DLQ topic: from its beginning, by a group of its own that commits nothing.

use enrollstream_ports::{BusError, EventBus, InboundMessage, StartFrom, SubscriptionSpec};
use std::collections::HashMap;
use std::time::Duration;

/// How long a Kafka group join may take before the topic is taken as unreadable.
const JOIN: Duration = Duration::from_secs(60);
/// Where the bus cannot say where a topic ends (or a transaction marker takes its last
/// offset), the read stops after this long without a message.
const QUIET: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(250);

/// Every message of `topic`, markers included. It stops at the end the bus reports when it
/// started (what arrives after belongs to the next scan), or once the topic is quiet.
pub async fn scan(bus: &dyn EventBus, topic: &str) -> Result<Vec<InboundMessage>, BusError> {
    let ends: Option<HashMap<i32, i64>> = match bus.end_offsets(&[topic.to_string()]).await {
        Ok(ends) => Some(
            ends.into_iter()
                .filter(|p| p.next_offset > 0)
                .map(|p| (p.partition, p.next_offset))
                .collect(),
        ),
        Err(e) => {
            tracing::debug!(error = %e, topic, "no end offsets: reading until the topic is quiet");
            None
        }
    };
    if ends.as_ref().is_some_and(HashMap::is_empty) {
        return Ok(Vec::new());
    }
    let mut sub = bus
        .subscribe(SubscriptionSpec {
            group: format!("dlq-inspect-{}", enrollstream_domain::ids::new_id()),
            topics: vec![topic.to_string()],
            start: StartFrom::Earliest,
            client_id: "dlq-inspect".into(),
        })
        .await?;
    let mut read: Vec<InboundMessage> = Vec::new();
    let reached = |read: &[InboundMessage], ends: &HashMap<i32, i64>| {
        ends.iter().all(|(partition, end)| {
            read.iter()
                .any(|m| m.partition == *partition && m.offset + 1 >= *end)
        })
    };
    let joined_by = tokio::time::Instant::now() + JOIN;
    while sub.assignment().is_empty() && tokio::time::Instant::now() < joined_by {
        read.extend(sub.poll(100, POLL).await?);
    }
    let mut quiet = Duration::ZERO;
    while quiet < QUIET && !ends.as_ref().is_some_and(|e| reached(&read, e)) {
        let batch = sub.poll(100, POLL).await?;
        quiet = if batch.is_empty() {
            quiet + POLL
        } else {
            Duration::ZERO
        };
        read.extend(batch);
    }
    sub.close().await?;
    Ok(read)
}
