//! Publishing to the bus in the CloudEvents Kafka binary binding, keyed by entity id.

use enrollstream_domain::CloudEvent;
use enrollstream_ports::codec;

use crate::problem::Problem;
use crate::ApiState;

/// Publish `events` to `topic` in order. Returns once the bus has them durably; on error nothing
/// of this call may be assumed published (503, the client retries).
pub async fn publish(api: &ApiState, topic: &str, events: &[CloudEvent]) -> Result<(), Problem> {
    let messages = events.iter().map(codec::encode).collect();
    api.bus
        .publisher()
        .publish(topic, messages)
        .await
        .map_err(|e| Problem::bus(&e))?;
    metrics::counter!("enrollstream_events_published_total", "topic" => topic.to_string())
        .increment(events.len() as u64);
    Ok(())
}
