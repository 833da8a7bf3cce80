//! What only the Kafka bus promises beyond the contract: topics are created once and then left
//! alone, and `check` tells a broker that answers from one that does not.

use enrollstream_kafka::{KafkaBus, KafkaConfig};
use enrollstream_ports::{BusError, EventBus, Retention, TopicNames, TopicSpec};
use enrollstream_testkit::testbed::{free_port, Kafka};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::time::Duration;

fn bus(brokers: String) -> KafkaBus {
    let config = KafkaConfig {
        brokers,
        request_timeout_ms: 2_000,
        ..KafkaConfig::default()
    };
    KafkaBus::new(config).unwrap_or_else(|e| panic!("kafka bus: {e}"))
}

/// Partition count per topic, as the broker reports it to a plain client. A topic just created
/// can be reported without partitions for a moment (in KRaft the broker applies the controller's
/// record after CreateTopics answered), so each is read again until it has some, up to 10 s.
fn partitions(topics: &[String]) -> Vec<usize> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", Kafka::shared().bootstrap())
        .create()
        .expect("plain client");
    topics
        .iter()
        .map(|t| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let metadata = client
                    .fetch_metadata(Some(t), Duration::from_secs(10))
                    .expect("metadata");
                let count = metadata.topics()[0].partitions().len();
                if count > 0 {
                    break count;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{t}: no partitions reported 10 s after its creation"
                );
                std::thread::sleep(Duration::from_millis(50)); // between polls, not a wait for the answer
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_once_and_then_left_alone() {
    let bus = bus(Kafka::shared().bootstrap());
    let name = format!("provisioning-{}", uuid::Uuid::new_v4().simple());
    let spec = |partitions| TopicSpec {
        name: name.clone(),
        partitions,
        replication: 1,
        retention: None,
    };
    bus.ensure_topics(&[spec(2)]).await.expect("create");
    bus.ensure_topics(&[spec(2)])
        .await
        .expect("an existing topic is success");
    bus.ensure_topics(&[spec(5)])
        .await
        .expect("an existing topic with other settings is success");
    assert_eq!(
        partitions(std::slice::from_ref(&name)),
        vec![2],
        "the existing topic kept its partitions"
    );

    let names = TopicNames {
        enrollment_events: format!("{name}-enrollment-events"),
        quote_events: format!("{name}-quote-events"),
        ..TopicNames::default()
    };
    let specs: Vec<TopicSpec> = bus
        .topic_specs(&names)
        .into_iter()
        .filter(|s| s.name.starts_with(&name))
        .collect();
    assert_eq!(
        specs.len(),
        4,
        "two topics and their dead-letter topics: {specs:?}"
    );
    bus.ensure_topics(&specs)
        .await
        .expect("create the system's topics");
    let created: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    assert_eq!(
        partitions(&created),
        vec![3; 4],
        "the configured default of 3 partitions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_tells_an_answering_broker_from_a_silent_one() {
    let up = bus(Kafka::shared().bootstrap());
    up.check().await.expect("the broker answers");
    assert_eq!(up.name(), "kafka");

    let down = bus(format!("127.0.0.1:{}", free_port()));
    match down.check().await {
        Err(BusError::Unavailable(reason)) => assert!(!reason.is_empty()),
        other => panic!("a port nobody listens on: {other:?}"),
    }
}

/// `retention.ms` of a topic as the broker reports it.
async fn retention_ms(topic: &str) -> String {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", Kafka::shared().bootstrap())
        .create()
        .expect("admin client");
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .expect("describe configs");
    let resource = described[0].as_ref().expect("the topic's configs");
    resource
        .get("retention.ms")
        .and_then(|e| e.value.clone())
        .expect("retention.ms is reported")
}

/// Event topics are the source of truth: created to keep their events forever; a topic without
/// a retention keeps the broker's default (7 days).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_with_the_retention_asked_for() {
    let bus = bus(Kafka::shared().bootstrap());
    let forever = format!("events-{}", uuid::Uuid::new_v4().simple());
    let month = format!("month-{}", uuid::Uuid::new_v4().simple());
    let default = format!("default-{}", uuid::Uuid::new_v4().simple());
    let spec = |name: &str, retention| TopicSpec {
        name: name.to_string(),
        partitions: 1,
        replication: 1,
        retention,
    };
    bus.ensure_topics(&[
        spec(&forever, Some(Retention::Forever)),
        spec(
            &month,
            Some(Retention::For(Duration::from_secs(30 * 24 * 3600))),
        ),
        spec(&default, None),
    ])
    .await
    .expect("create");
    assert_eq!(retention_ms(&forever).await, "-1");
    assert_eq!(retention_ms(&month).await, "2592000000");
    assert_eq!(retention_ms(&default).await, "604800000");
}
