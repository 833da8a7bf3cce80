//! The topics of a configuration: what `serve` provisions and what each role reads.

use enrollstream_ports::TopicSpec;

use crate::config::Config;

/// Every topic the system publishes to or reads from, dead-letter topics included.
pub(crate) fn topic_specs(config: &Config) -> anyhow::Result<Vec<TopicSpec>> {
    let mut names = config.topics.all();
    for t in config.routing.topics() {
        for name in [t.clone(), config.topics.dlq(&t)] {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let events = event_topics(config);
    let retention = config.event_topic_retention()?;
    Ok(names
        .into_iter()
        .map(|name| TopicSpec {
            retention: events.contains(&name).then_some(retention),
            name,
            partitions: config.partitions,
            replication: config.replication,
        })
        .collect())
}

pub(crate) fn event_topics(config: &Config) -> Vec<String> {
    vec![
        config.topics.enrollment_events.clone(),
        config.topics.quote_events.clone(),
    ]
}

pub(crate) fn notification_topics(config: &Config) -> Vec<String> {
    vec![
        config.topics.enrollment_notifications.clone(),
        config.topics.quote_notifications.clone(),
    ]
}
