//! Group membership on a real Apache Kafka broker, beyond the bus contract: the default
//! cooperative-sticky assignment moves only the partitions that must move, and a static member
//! (`instance_id`) that restarts within its session gets its partitions back without the
//! others giving anything up.

use enrollstream_kafka::{KafkaBus, KafkaConfig};
use enrollstream_ports::{
    EventBus, InboundMessage, OutboundMessage, Subscription, SubscriptionSpec, TopicSpec,
};
use enrollstream_testkit::testbed::Kafka;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 4;
/// Only reached when something is wrong: a join takes about a second, a rebalance about two.
const DEADLINE: Duration = Duration::from_secs(60);

fn bus(instance_id: Option<&str>) -> KafkaBus {
    KafkaBus::new(KafkaConfig {
        brokers: Kafka::shared().bootstrap(),
        instance_id: instance_id.map(str::to_string),
        ..KafkaConfig::default()
    })
    .expect("kafka bus")
}

async fn topic(bus: &KafkaBus) -> String {
    let name = format!("membership-{}", uuid::Uuid::new_v4().simple());
    bus.ensure_topics(&[TopicSpec {
        name: name.clone(),
        partitions: PARTITIONS,
        replication: 1,
        retention: None,
    }])
    .await
    .expect("topic");
    name
}

async fn join(bus: &KafkaBus, group: &str, topic: &str, name: &str) -> Box<dyn Subscription> {
    let mut spec = SubscriptionSpec::new(group, &[topic]);
    spec.client_id = name.to_string();
    bus.subscribe(spec).await.expect("subscribe")
}

fn held(sub: &dyn Subscription) -> BTreeSet<i32> {
    sub.assignment().into_iter().map(|(_, p)| p).collect()
}

/// What a member was seen holding after each poll, and every message it received.
#[derive(Clone, Default)]
struct Seen {
    assignments: Vec<BTreeSet<i32>>,
    messages: Vec<InboundMessage>,
}

/// Poll every member (their polls serve the group protocol) until `done` holds for their
/// assignments and what they received; commits nothing.
async fn poll_until(
    members: &mut [&mut Box<dyn Subscription>],
    what: &str,
    done: impl Fn(&[BTreeSet<i32>], &[Seen]) -> bool,
) -> Vec<Seen> {
    let started = Instant::now();
    let mut seen = vec![Seen::default(); members.len()];
    loop {
        for (i, m) in members.iter_mut().enumerate() {
            let batch = m.poll(100, Duration::from_millis(50)).await.expect("poll");
            seen[i].messages.extend(batch);
            seen[i].assignments.push(held(m.as_ref()));
        }
        let now: Vec<BTreeSet<i32>> = members.iter().map(|m| held(m.as_ref())).collect();
        if done(&now, &seen) {
            return seen;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{what}: still {now:?} after {DEADLINE:?}"
        );
    }
}

fn split(now: &[BTreeSet<i32>], _: &[Seen]) -> bool {
    let all: BTreeSet<i32> = (0..PARTITIONS).collect();
    now.iter().all(|s| !s.is_empty())
        && now[0].is_disjoint(&now[1])
        && now[0].union(&now[1]).copied().collect::<BTreeSet<_>>() == all
}

async fn publish(bus: &KafkaBus, topic: &str, keys: &[String], what: &str) {
    let messages = keys
        .iter()
        .map(|key| OutboundMessage {
            key: key.clone(),
            headers: Vec::new(),
            payload: format!("{key}#{what}").into_bytes(),
        })
        .collect();
    bus.publisher()
        .publish(topic, messages)
        .await
        .expect("publish");
}

fn payloads(messages: &[InboundMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_member_takes_only_what_moves_and_the_other_keeps_the_rest_throughout() {
    let bus = bus(None);
    let topic = topic(&bus).await;
    let group = format!("group-{}", uuid::Uuid::new_v4().simple());
    let keys: Vec<String> = (0..16).map(|i| format!("entity-{i}")).collect();
    publish(&bus, &topic, &keys, "first").await;
    // a reads everything and commits nothing: a partition it were to give up and get back
    // would be read again from the start.
    let mut a = join(&bus, &group, &topic, "a").await;
    let first = poll_until(
        &mut [&mut a],
        "a reading every first message",
        |now, seen| now[0].len() == PARTITIONS as usize && seen[0].messages.len() >= keys.len(),
    )
    .await;

    let mut b = join(&bus, &group, &topic, "b").await;
    poll_until(&mut [&mut a, &mut b], "a split between a and b", split).await;
    publish(&bus, &topic, &keys, "last").await;
    let last = |seen: &Seen| {
        payloads(&seen.messages)
            .iter()
            .filter(|p| p.ends_with("#last"))
            .count()
    };
    let seen = poll_until(
        &mut [&mut a, &mut b],
        "every last message across a and b",
        |_, seen| last(&seen[0]) + last(&seen[1]) == keys.len(),
    )
    .await;
    let kept = held(a.as_ref());
    // Eager assignment takes everything from a and hands its share back, and a reads its kept
    // partitions again from the group's commit; the cooperative protocol revokes only what b got.
    assert!(
        seen[0].assignments.iter().all(|s| s.is_superset(&kept)),
        "a gave up partitions it kept: {:?}",
        seen[0].assignments
    );
    let mut a_read = payloads(&first[0].messages);
    a_read.extend(payloads(&seen[0].messages));
    let once: BTreeSet<&String> = a_read.iter().collect();
    assert_eq!(
        once.len(),
        a_read.len(),
        "a read a message twice: {a_read:?}"
    );
    assert!(seen[0].messages.iter().all(|m| kept.contains(&m.partition)));
    b.close().await.expect("b leaves");
    poll_until(
        &mut [&mut a],
        "a holding every partition again",
        |now, _| now[0].len() == PARTITIONS as usize,
    )
    .await;
    a.close().await.expect("a leaves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_restarted_within_its_session_gets_its_partitions_back() {
    let dynamic = bus(None);
    let topic = topic(&dynamic).await;
    let group = format!("group-{}", uuid::Uuid::new_v4().simple());
    let mut a = join(&dynamic, &group, &topic, "a").await;
    let mut b = join(&bus(Some("b")), &group, &topic, "b").await;
    poll_until(&mut [&mut a, &mut b], "a split between a and b", split).await;
    let (a_share, b_share) = (held(a.as_ref()), held(b.as_ref()));

    // A static member does not leave when it stops: its partitions wait for it (up to the
    // session timeout, 10 s) instead of moving to a.
    b.close().await.expect("b stops");
    let mut b = join(&bus(Some("b")), &group, &topic, "b").await;
    let seen = poll_until(
        &mut [&mut a, &mut b],
        "b back with its partitions",
        |now, _| !now[1].is_empty(),
    )
    .await;
    assert_eq!(held(b.as_ref()), b_share, "b got its own partitions back");
    assert!(
        seen[0].assignments.iter().all(|s| *s == a_share),
        "a never took b's partitions nor gave up its own: {:?}",
        seen[0].assignments
    );
    a.close().await.expect("a leaves");
    b.close().await.expect("b stops");
}
