//! Topic provisioning through the admin API.

use enrollstream_ports::{BusError, TopicSpec};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::time::Duration;

use crate::context::Logging;
use crate::errors::classify;

/// Create the topics that do not exist; a topic that exists is left exactly as it is, even if
/// its partition count differs from the spec (changing it would move keys between partitions).
pub(crate) async fn ensure_topics(
    admin: &AdminClient<Logging>,
    topics: &[TopicSpec],
    timeout: Duration,
) -> Result<(), BusError> {
    if topics.is_empty() {
        return Ok(());
    }
    let retention: Vec<Option<String>> = topics
        .iter()
        .map(|t| t.retention.map(|r| r.as_millis().to_string()))
        .collect();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .zip(&retention)
        .map(|(t, retention)| {
            let topic = NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(i32::from(t.replication)),
            );
            match retention {
                Some(ms) => topic.set("retention.ms", ms),
                None => topic,
            }
        })
        .collect();
    let options = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let results = admin
        .create_topics(&new, &options)
        .await
        .map_err(|e| classify(&e))?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = %name, "topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(match classify(&KafkaError::AdminOp(code)) {
                    BusError::Fatal(e) => {
                        BusError::Fatal(format!("cannot create topic {name}: {e}"))
                    }
                    other => BusError::Unavailable(format!("cannot create topic {name}: {other}")),
                })
            }
        }
    }
    Ok(())
}
