//! CloudEvents Kafka protocol binding, binary mode, between our bus and plain Kafka clients on a
//! real Apache Kafka broker: what we publish is readable by any consumer from the headers alone, and what
//! any producer writes in binary (or structured) mode decodes into our events.

use chrono::{TimeZone, Utc};
use enrollstream_domain::envelope::{new_traceparent, CloudEvent};
use enrollstream_domain::events::{
    ApplicationEvent, ApplicationSubmitted, Broker, Submitter, APPLICATION_SUBMITTED,
};
use enrollstream_domain::notification::{outbox_for, NOTIFICATION};
use enrollstream_domain::routing::RoutingRules;
use enrollstream_domain::{DomainEvent, EntityKind};
use enrollstream_kafka::{KafkaBus, KafkaConfig};
use enrollstream_ports::{codec, EventBus, InboundMessage, StartFrom, SubscriptionSpec, TopicSpec};
use enrollstream_testkit::testbed::Kafka;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Only reached when something is wrong.
const DEADLINE: Duration = Duration::from_secs(60);

fn bus() -> KafkaBus {
    let config = KafkaConfig {
        brokers: Kafka::shared().bootstrap(),
        ..KafkaConfig::default()
    };
    KafkaBus::new(config).unwrap_or_else(|e| panic!("kafka bus: {e}"))
}

async fn topic(bus: &KafkaBus, what: &str) -> String {
    let name = format!("cloudevents-{what}-{}", uuid::Uuid::new_v4().simple());
    bus.ensure_topics(&[TopicSpec {
        name: name.clone(),
        partitions: 3,
        replication: 1,
        retention: None,
    }])
    .await
    .unwrap_or_else(|e| panic!("create {name}: {e}"));
    name
}

fn submitted() -> CloudEvent {
    let event = DomainEvent::Application(ApplicationEvent::Submitted(ApplicationSubmitted {
        application_id: "APP-2026-000123".into(),
        submitter: Submitter::Broker {
            broker: Broker {
                id: "BRK-77".into(),
                name: "Acme Brokerage".into(),
                email: "agent@acme.example".into(),
            },
        },
    }));
    let time = Utc.with_ymd_and_hms(2026, 3, 14, 9, 26, 53).unwrap();
    CloudEvent::new(&event, "/enrollstream/api", time, Some(new_traceparent()))
}

/// A plain librdkafka consumer, no group: reads `count` messages of `topic` from the start.
fn read_plain(topic: &str, count: usize) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", Kafka::shared().bootstrap())
        .set("group.id", "plain-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("plain consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + DEADLINE;
    let mut got = Vec::new();
    while got.len() < count {
        assert!(
            Instant::now() < deadline,
            "read {} of {count} messages of {topic}",
            got.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            got.push(m.expect("plain consumer message").detach());
        }
    }
    got
}

fn headers_of(m: &rdkafka::message::OwnedMessage) -> BTreeMap<String, String> {
    m.headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        String::from_utf8(h.value.unwrap_or_default().to_vec())
                            .expect("UTF-8 header"),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Reads `count` messages through the bus (a fresh group from the beginning).
async fn read_bus(bus: &KafkaBus, topic: &str, count: usize) -> Vec<InboundMessage> {
    let mut spec = SubscriptionSpec::new(
        format!("ce-reader-{}", uuid::Uuid::new_v4().simple()),
        &[topic],
    );
    spec.start = StartFrom::Earliest;
    let mut sub = bus.subscribe(spec).await.expect("subscribe");
    let deadline = Instant::now() + DEADLINE;
    let mut got = Vec::new();
    while got.len() < count {
        assert!(
            Instant::now() < deadline,
            "read {} of {count} messages of {topic}",
            got.len()
        );
        got.extend(
            sub.poll(count, Duration::from_millis(250))
                .await
                .expect("poll"),
        );
    }
    sub.close().await.expect("close");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_events_carry_cloudevents_headers_for_any_consumer() {
    let bus = bus();
    let topic = topic(&bus, "ours").await;
    let event = submitted();
    let state = json!({"status": "pending_signature"});
    let notifications = outbox_for(
        &RoutingRules::default(),
        &event,
        EntityKind::Application,
        2,
        &state,
    );
    let notification = notifications
        .iter()
        .find(|m| m.event.ty == NOTIFICATION)
        .expect("a submitted application notifies")
        .event
        .clone();
    bus.publisher()
        .publish(
            &topic,
            vec![codec::encode(&event), codec::encode(&notification)],
        )
        .await
        .expect("publish");

    let got = tokio::task::spawn_blocking({
        let topic = topic.clone();
        move || read_plain(&topic, 2)
    })
    .await
    .expect("reader");
    let by_id: BTreeMap<String, &rdkafka::message::OwnedMessage> = got
        .iter()
        .map(|m| (headers_of(m)["ce_id"].clone(), m))
        .collect();

    let m = by_id[&event.id];
    let h = headers_of(m);
    assert_eq!(
        m.key(),
        Some("APP-2026-000123".as_bytes()),
        "key is the entity id"
    );
    assert_eq!(h["ce_specversion"], "1.0");
    assert_eq!(h["ce_source"], "/enrollstream/api");
    assert_eq!(h["ce_type"], APPLICATION_SUBMITTED);
    assert_eq!(h["ce_subject"], "APP-2026-000123");
    assert_eq!(h["ce_time"], "2026-03-14T09:26:53.000000Z");
    assert_eq!(
        h["ce_dataschema"],
        format!("/v1/schemas/{APPLICATION_SUBMITTED}")
    );
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(Some(&h["traceparent"]), event.traceparent.as_ref());
    let data: serde_json::Value =
        serde_json::from_slice(m.payload().expect("payload")).expect("JSON data");
    assert_eq!(
        data,
        json!({
            "application_id": "APP-2026-000123",
            "submitted_by": "broker",
            "broker": {"id": "BRK-77", "name": "Acme Brokerage", "email": "agent@acme.example"}
        })
    );

    let m = by_id[&notification.id];
    let h = headers_of(m);
    assert_eq!(m.key(), Some("APP-2026-000123".as_bytes()));
    assert_eq!(h["ce_type"], NOTIFICATION);
    assert_eq!(h["ce_source"], "/enrollstream/read-model");
    assert_eq!(
        h["ce_routingtargets"],
        "logic_apps,salesforce,lead_management"
    );
    assert_eq!(h["ce_routingpriority"], "normal");
    assert_eq!(h["ce_routingtriggertype"], "enrollment_lifecycle");
    let trace = |tp: &str| tp.split('-').nth(1).map(str::to_string);
    assert_eq!(
        trace(&h["traceparent"]),
        event.traceparent.as_deref().and_then(trace),
        "same trace"
    );
    let data: serde_json::Value =
        serde_json::from_slice(m.payload().expect("payload")).expect("JSON data");
    assert_eq!(data["event_id"], json!(event.id));
    assert_eq!(
        data["routing"]["targets"],
        json!(["logic_apps", "salesforce", "lead_management"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_producers_binary_and_structured_events_decode() {
    let bus = bus();
    let topic = topic(&bus, "theirs").await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", Kafka::shared().bootstrap())
        .create()
        .expect("plain producer");
    let headers = [
        ("ce_specversion", "1.0"),
        ("ce_id", "7f1c9a52-1111-4e0b-9d1e-3c2b1a000001"),
        ("ce_source", "/partner/portal"),
        ("ce_type", APPLICATION_SUBMITTED),
        ("ce_subject", "APP-9"),
        ("ce_time", "2026-03-14T09:26:53.123456Z"),
        ("content-type", "application/json"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("ce_partnerid", "p-42"),
    ]
    .iter()
    .fold(OwnedHeaders::new(), |hs, (key, value)| {
        hs.insert(Header {
            key,
            value: Some(*value),
        })
    });
    let binary = br#"{"application_id":"APP-9","submitted_by":"member"}"#;
    producer
        .send(
            FutureRecord::to(&topic)
                .key("APP-9")
                .payload(&binary[..])
                .headers(headers),
            Duration::from_secs(5),
        )
        .await
        .expect("binary-mode produce");
    let structured = json!({
        "specversion": "1.0",
        "id": "7f1c9a52-1111-4e0b-9d1e-3c2b1a000002",
        "source": "/partner/portal",
        "type": APPLICATION_SUBMITTED,
        "subject": "APP-10",
        "datacontenttype": "application/json",
        "data": {"application_id": "APP-10", "submitted_by": "member"}
    })
    .to_string();
    let structured_headers = OwnedHeaders::new().insert(Header {
        key: "content-type",
        value: Some("application/cloudevents+json; charset=utf-8"),
    });
    producer
        .send(
            FutureRecord::to(&topic)
                .key("APP-10")
                .payload(structured.as_bytes())
                .headers(structured_headers),
            Duration::from_secs(5),
        )
        .await
        .expect("structured-mode produce");

    let got = read_bus(&bus, &topic, 2).await;
    let decoded: BTreeMap<String, CloudEvent> = got
        .iter()
        .map(|m| codec::decode(m).unwrap_or_else(|e| panic!("decode {:?}: {e}", m.key)))
        .map(|e| (e.id.clone(), e))
        .collect();

    let e = &decoded["7f1c9a52-1111-4e0b-9d1e-3c2b1a000001"];
    assert_eq!(e.source, "/partner/portal");
    assert_eq!(e.ty, APPLICATION_SUBMITTED);
    assert_eq!(e.subject.as_deref(), Some("APP-9"));
    assert_eq!(
        e.time_rfc3339().as_deref(),
        Some("2026-03-14T09:26:53.123456Z")
    );
    assert_eq!(
        e.traceparent.as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    assert_eq!(e.extensions.get("partnerid"), Some(&json!("p-42")));
    assert_eq!(
        DomainEvent::from_cloud_event(e).expect("valid event"),
        DomainEvent::Application(ApplicationEvent::Submitted(ApplicationSubmitted {
            application_id: "APP-9".into(),
            submitter: Submitter::Member,
        }))
    );

    let e = &decoded["7f1c9a52-1111-4e0b-9d1e-3c2b1a000002"];
    assert_eq!(e.subject.as_deref(), Some("APP-10"));
    assert_eq!(
        DomainEvent::from_cloud_event(e).expect("valid event"),
        DomainEvent::Application(ApplicationEvent::Submitted(ApplicationSubmitted {
            application_id: "APP-10".into(),
            submitter: Submitter::Member,
        }))
    );
}
