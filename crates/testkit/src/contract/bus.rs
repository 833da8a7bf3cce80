//! The bus contract: what every `EventBus` adapter must show, whatever carries the messages.
//!
//! Each case creates its own topics and groups (uuid suffix), so cases run in parallel against
//! one broker. Nothing here assumes timing: a Kafka group join takes seconds, so every wait
//! polls until a condition holds, with a generous deadline, and fails with what it saw.
//! Absence ("nothing else is delivered") is proved without waiting: after the messages of
//! interest, one end marker per key is published; a key's marker comes after all of that
//! key's messages in its partition, so once every marker is seen, everything before is too.

use async_trait::async_trait;
use enrollstream_ports::{
    BusError, CommitPosition, EventBus, InboundMessage, OutboundMessage, StartFrom, Subscription,
    SubscriptionSpec, TopicSpec,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

mod offsets;
pub use offsets::{committed_offsets_are_reported, end_offsets_are_reported};

/// Opens another client of the log under test, as a restarted process would: the same data
/// directory for the embedded bus, the same broker for Kafka.
#[async_trait]
pub trait BusFactory: Send + Sync {
    async fn open(&self) -> Arc<dyn EventBus>;
}

/// Only reached when something is wrong; Kafka group joins alone take several seconds.
const DEADLINE: Duration = Duration::from_secs(120);
const POLL_WAIT: Duration = Duration::from_millis(250);
const POLL_MAX: usize = 100;
const MARKER: &str = "end";

fn unique(what: &str) -> String {
    format!("contract-{what}-{}", uuid::Uuid::new_v4().simple())
}

async fn create_topic(bus: &dyn EventBus, name: &str, partitions: i32) {
    let spec = TopicSpec {
        name: name.to_string(),
        partitions,
        replication: 1,
        retention: None,
    };
    bus.ensure_topics(&[spec])
        .await
        .unwrap_or_else(|e| panic!("ensure_topics({name}): {e}"));
}

/// A message of key `key`, identified by its payload `key#seq`.
fn message(key: &str, seq: &str) -> OutboundMessage {
    OutboundMessage {
        key: key.to_string(),
        headers: vec![("contract-seq".into(), seq.to_string())],
        payload: format!("{key}#{seq}").into_bytes(),
    }
}

fn keys(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

/// The identity of a message as published: its payload.
fn id(m: &InboundMessage) -> String {
    String::from_utf8_lossy(&m.payload).into_owned()
}

fn is_marker(m: &InboundMessage) -> bool {
    m.header("contract-seq") == Some(MARKER)
}

async fn publish(bus: &dyn EventBus, topic: &str, messages: Vec<OutboundMessage>) {
    bus.publisher()
        .publish(topic, messages)
        .await
        .unwrap_or_else(|e| panic!("publish to {topic}: {e}"));
}

async fn publish_markers(bus: &dyn EventBus, topic: &str, keys: &[String]) {
    publish(
        bus,
        topic,
        keys.iter().map(|k| message(k, MARKER)).collect(),
    )
    .await;
}

fn markers_seen(seen: &[InboundMessage], keys: &[String]) -> bool {
    let found: BTreeSet<String> = seen
        .iter()
        .filter(|m| is_marker(m))
        .filter_map(|m| m.key.clone())
        .collect();
    keys.iter().all(|k| found.contains(k))
}

/// A group member and everything it received.
struct Member {
    name: &'static str,
    sub: Option<Box<dyn Subscription>>,
    seen: Vec<InboundMessage>,
    /// Commit after every poll, before polling again.
    commits: bool,
    /// A commit was refused as `Fenced` (allowed during a rebalance): duplicates may follow.
    fenced: bool,
}

impl Member {
    async fn join(
        bus: &dyn EventBus,
        name: &'static str,
        group: &str,
        topic: &str,
        start: StartFrom,
    ) -> Self {
        let mut spec = SubscriptionSpec::new(group, &[topic]);
        spec.start = start;
        spec.client_id = format!("{group}-{name}");
        let sub = bus
            .subscribe(spec)
            .await
            .unwrap_or_else(|e| panic!("{name} subscribe to {topic}: {e}"));
        Self {
            name,
            sub: Some(sub),
            seen: Vec::new(),
            commits: false,
            fenced: false,
        }
    }

    fn committing(mut self) -> Self {
        self.commits = true;
        self
    }

    fn sub(&mut self) -> &mut Box<dyn Subscription> {
        self.sub.as_mut().expect("member is subscribed")
    }

    fn assignment(&self) -> BTreeSet<i32> {
        let sub = self.sub.as_ref().expect("member is subscribed");
        sub.assignment().into_iter().map(|(_, p)| p).collect()
    }

    async fn poll(&mut self) {
        let name = self.name;
        let batch = self
            .sub()
            .poll(POLL_MAX, POLL_WAIT)
            .await
            .unwrap_or_else(|e| panic!("{name} poll: {e}"));
        if self.commits && !batch.is_empty() {
            let positions = last_positions(&batch);
            match self.sub().commit(&positions).await {
                Ok(()) => {}
                Err(BusError::Fenced(_)) => self.fenced = true,
                Err(e) => panic!("{name} commit {positions:?}: {e}"),
            }
        }
        self.seen.extend(batch);
    }

    async fn commit(&mut self, positions: &[CommitPosition]) {
        let name = self.name;
        self.sub()
            .commit(positions)
            .await
            .unwrap_or_else(|e| panic!("{name} commit {positions:?}: {e}"));
    }

    async fn close(&mut self) {
        let name = self.name;
        let sub = self.sub.take().expect("member is subscribed");
        sub.close()
            .await
            .unwrap_or_else(|e| panic!("{name} close: {e}"));
    }

    /// A crash: the subscription goes away without commit and without leaving cleanly.
    fn crash(&mut self) {
        drop(self.sub.take());
    }

    fn data(&self) -> Vec<&InboundMessage> {
        self.seen.iter().filter(|m| !is_marker(m)).collect()
    }
}

/// The position after the last message of each partition in `batch`.
fn last_positions(batch: &[InboundMessage]) -> Vec<CommitPosition> {
    let mut last: BTreeMap<(String, i32), CommitPosition> = BTreeMap::new();
    for m in batch {
        last.insert((m.topic.clone(), m.partition), m.next_position());
    }
    last.into_values().collect()
}

/// Polls every member in turn (a Kafka member must keep polling for its group to rebalance)
/// until `done` holds; panics with what each member saw after the deadline.
async fn poll_until(
    members: &mut [&mut Member],
    what: &str,
    done: impl Fn(&[&mut Member]) -> bool,
) {
    let deadline = Instant::now() + DEADLINE;
    while !done(members) {
        if Instant::now() > deadline {
            let report: Vec<String> = members
                .iter()
                .map(|m| {
                    let ids: Vec<String> = m
                        .seen
                        .iter()
                        .map(|x| format!("{}@{}:{}", id(x), x.partition, x.offset))
                        .collect();
                    let assigned = m.sub.as_ref().map(|s| s.assignment());
                    format!(
                        "{} (assigned {assigned:?}) saw {} messages: {ids:?}",
                        m.name,
                        ids.len()
                    )
                })
                .collect();
            panic!(
                "gave up after {DEADLINE:?} waiting for {what}; {}",
                report.join("; ")
            );
        }
        for member in members.iter_mut() {
            member.poll().await;
        }
    }
}

/// Messages of `topic` by key, in delivery order.
fn by_key<'a>(
    messages: impl IntoIterator<Item = &'a InboundMessage>,
) -> BTreeMap<String, Vec<&'a InboundMessage>> {
    let mut out: BTreeMap<String, Vec<&InboundMessage>> = BTreeMap::new();
    for m in messages {
        out.entry(m.key.clone().expect("every contract message has a key"))
            .or_default()
            .push(m);
    }
    out
}

fn sorted_ids<'a>(messages: impl IntoIterator<Item = &'a InboundMessage>) -> Vec<String> {
    let mut ids: Vec<String> = messages.into_iter().map(id).collect();
    ids.sort();
    ids
}

/// Each key's messages arrive in publish order, all from one partition, whether published one
/// per call, several per call, or from several tasks at once (each task owning its keys).
pub async fn per_key_ordering(bus: Arc<dyn EventBus>) {
    const PARTITIONS: i32 = 4;
    const TASKS: usize = 4;
    const PER_KEY: usize = 20;
    let topic = unique("ordering");
    create_topic(bus.as_ref(), &topic, PARTITIONS).await;
    let keys = keys("entity", 24);

    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let own: Vec<String> = keys.iter().skip(task).step_by(TASKS).cloned().collect();
        let (publisher, topic) = (bus.publisher(), topic.clone());
        tasks.push(tokio::spawn(async move {
            // Rotate call shapes: all own keys in one call, each key twice in a row in one
            // call, one message per call.
            let (mut seq, mut round) = (0, 0);
            while seq < PER_KEY {
                match round % 3 {
                    0 => {
                        let batch = own.iter().map(|k| message(k, &seq.to_string())).collect();
                        publisher.publish(&topic, batch).await.expect("publish");
                        seq += 1;
                    }
                    1 if seq + 1 < PER_KEY => {
                        let batch = own
                            .iter()
                            .flat_map(|k| {
                                [
                                    message(k, &seq.to_string()),
                                    message(k, &(seq + 1).to_string()),
                                ]
                            })
                            .collect();
                        publisher.publish(&topic, batch).await.expect("publish");
                        seq += 2;
                    }
                    _ => {
                        for k in &own {
                            publisher
                                .publish(&topic, vec![message(k, &seq.to_string())])
                                .await
                                .expect("publish");
                        }
                        seq += 1;
                    }
                }
                round += 1;
            }
        }));
    }
    for task in tasks {
        task.await.expect("publishing task");
    }
    publish_markers(bus.as_ref(), &topic, &keys).await;

    let mut reader = Member::join(
        bus.as_ref(),
        "reader",
        &unique("group"),
        &topic,
        StartFrom::Committed,
    )
    .await;
    poll_until(&mut [&mut reader], "every key's end marker", |m| {
        markers_seen(&m[0].seen, &keys)
    })
    .await;

    let expected: Vec<String> = (0..PER_KEY)
        .map(|s| s.to_string())
        .chain([MARKER.to_string()])
        .collect();
    for (key, messages) in by_key(&reader.seen) {
        let seqs: Vec<String> = messages
            .iter()
            .map(|m| m.header("contract-seq").unwrap_or("?").to_string())
            .collect();
        assert_eq!(seqs, expected, "messages of {key} in delivery order");
        let partitions: BTreeSet<i32> = messages.iter().map(|m| m.partition).collect();
        assert_eq!(
            partitions.len(),
            1,
            "{key} spread over partitions {partitions:?}"
        );
        assert!(
            (0..PARTITIONS).contains(&messages[0].partition),
            "{key} in partition {}",
            messages[0].partition
        );
    }
    let mut last_offset: BTreeMap<i32, i64> = BTreeMap::new();
    for m in &reader.seen {
        assert_eq!(m.topic, topic);
        if let Some(previous) = last_offset.insert(m.partition, m.offset) {
            assert!(
                m.offset > previous,
                "partition {} went from offset {previous} to {}",
                m.partition,
                m.offset
            );
        }
    }
    reader.close().await;
}

/// A member that crashes (no close, no commit) after committing part of what it consumed:
/// a new member of the group on a new client gets exactly the uncommitted rest, nothing that
/// was committed.
pub async fn redelivery_after_crash(bus: Arc<dyn EventBus>, reopen: &dyn BusFactory) {
    let topic = unique("crash");
    let group = unique("group");
    create_topic(bus.as_ref(), &topic, 3).await;
    let keys = keys("application", 6);
    for seq in 0..10 {
        let batch = keys.iter().map(|k| message(k, &seq.to_string())).collect();
        publish(bus.as_ref(), &topic, batch).await;
    }

    let mut first = Member::join(bus.as_ref(), "first", &group, &topic, StartFrom::Committed).await;
    poll_until(&mut [&mut first], "all 60 messages", |m| {
        m[0].seen.len() >= 60
    })
    .await;
    assert_eq!(sorted_ids(&first.seen).len(), 60);

    // Commit about half of each partition: the position after its middle message.
    let mut per_partition: BTreeMap<i32, Vec<&InboundMessage>> = BTreeMap::new();
    for m in &first.seen {
        per_partition.entry(m.partition).or_default().push(m);
    }
    let positions: Vec<CommitPosition> = per_partition
        .values()
        .map(|ms| ms[ms.len() / 2].next_position())
        .collect();
    let committed: BTreeMap<i32, i64> = positions
        .iter()
        .map(|p| (p.partition, p.next_offset))
        .collect();
    let rest: Vec<String> = sorted_ids(
        first
            .seen
            .iter()
            .filter(|m| m.offset >= committed[&m.partition]),
    );
    assert!(!rest.is_empty() && rest.len() < 60);
    first.commit(&positions).await;

    first.crash();
    drop(bus);
    let bus = reopen.open().await;
    publish_markers(bus.as_ref(), &topic, &keys).await;

    let mut second =
        Member::join(bus.as_ref(), "second", &group, &topic, StartFrom::Committed).await;
    poll_until(&mut [&mut second], "every key's end marker", |m| {
        markers_seen(&m[0].seen, &keys)
    })
    .await;
    assert_eq!(
        sorted_ids(second.data()),
        rest,
        "redelivered after the crash: exactly the uncommitted messages"
    );
    for m in second.data() {
        assert!(
            m.offset >= committed[&m.partition],
            "committed message {} redelivered",
            id(m)
        );
    }
    second.close().await;
}

/// Two members of one group split the partitions, each message goes to exactly one of them;
/// when one leaves, the other takes over its partitions and gets what it had not committed.
pub async fn group_members_split_partitions(bus: Arc<dyn EventBus>) {
    const PARTITIONS: i32 = 4;
    let topic = unique("split");
    let group = unique("group");
    create_topic(bus.as_ref(), &topic, PARTITIONS).await;
    let all: BTreeSet<i32> = (0..PARTITIONS).collect();
    let keys = keys("quote", 16);

    let mut a = Member::join(bus.as_ref(), "a", &group, &topic, StartFrom::Committed)
        .await
        .committing();
    let mut b = Member::join(bus.as_ref(), "b", &group, &topic, StartFrom::Committed)
        .await
        .committing();
    poll_until(&mut [&mut a, &mut b], "a split of the partitions", |m| {
        let (x, y) = (m[0].assignment(), m[1].assignment());
        !x.is_empty()
            && !y.is_empty()
            && x.is_disjoint(&y)
            && x.union(&y).copied().collect::<BTreeSet<_>>() == all
    })
    .await;
    let (a_parts, b_parts) = (a.assignment(), b.assignment());

    // Phase 1: both commit what they get; every message reaches exactly one member.
    for seq in 0..5 {
        publish(
            bus.as_ref(),
            &topic,
            keys.iter().map(|k| message(k, &seq.to_string())).collect(),
        )
        .await;
    }
    publish_markers(bus.as_ref(), &topic, &keys).await;
    poll_until(
        &mut [&mut a, &mut b],
        "every key's end marker across both",
        |m| {
            let seen: Vec<InboundMessage> = m.iter().flat_map(|x| x.seen.iter().cloned()).collect();
            markers_seen(&seen, &keys)
        },
    )
    .await;
    let expected: Vec<String> = sorted_ids(a.seen.iter().chain(&b.seen));
    assert_eq!(
        expected.len(),
        keys.len() * 6,
        "each message once across both members: {expected:?}"
    );
    assert!(
        a.seen.iter().all(|m| a_parts.contains(&m.partition)),
        "a got only its partitions {a_parts:?}"
    );
    assert!(
        b.seen.iter().all(|m| b_parts.contains(&m.partition)),
        "b got only its partitions {b_parts:?}"
    );
    let partition_of: BTreeMap<String, i32> = a
        .seen
        .iter()
        .chain(&b.seen)
        .map(|m| (m.key.clone().expect("key"), m.partition))
        .collect();
    let a_keys: Vec<String> = keys
        .iter()
        .filter(|k| a_parts.contains(&partition_of[*k]))
        .cloned()
        .collect();
    let b_keys: Vec<String> = keys
        .iter()
        .filter(|k| b_parts.contains(&partition_of[*k]))
        .cloned()
        .collect();

    // Phase 2: a consumes its share without committing, then leaves.
    a.commits = false;
    let (a_before, b_before) = (a.seen.len(), b.seen.len());
    for seq in 0..3 {
        publish(
            bus.as_ref(),
            &topic,
            keys.iter()
                .map(|k| message(k, &format!("late-{seq}")))
                .collect(),
        )
        .await;
    }
    publish(
        bus.as_ref(),
        &topic,
        keys.iter().map(|k| message(k, "late-end")).collect(),
    )
    .await;
    let late_end = |seen: &[InboundMessage], keys: &[String]| {
        let found: BTreeSet<&str> = seen
            .iter()
            .filter(|m| m.header("contract-seq") == Some("late-end"))
            .filter_map(|m| m.key.as_deref())
            .collect();
        keys.iter().all(|k| found.contains(k.as_str()))
    };
    poll_until(
        &mut [&mut a, &mut b],
        "each member's share of the late messages",
        |m| late_end(&m[0].seen[a_before..], &a_keys) && late_end(&m[1].seen[b_before..], &b_keys),
    )
    .await;
    let uncommitted: Vec<String> = sorted_ids(&a.seen[a_before..]);
    assert_eq!(uncommitted.len(), a_keys.len() * 4);
    a.close().await;

    let b_after = b.seen.len();
    poll_until(&mut [&mut b], "b holding every partition", |m| {
        m[0].assignment() == all
    })
    .await;
    publish_markers(bus.as_ref(), &topic, &keys).await;
    poll_until(&mut [&mut b], "the end markers after a left", |m| {
        let late_markers = m[0].seen[b_after..]
            .iter()
            .filter(|x| is_marker(x))
            .filter_map(|x| x.key.clone());
        let found: BTreeSet<String> = late_markers.collect();
        keys.iter().all(|k| found.contains(k))
    })
    .await;
    let taken_over: Vec<&InboundMessage> =
        b.seen[b_after..].iter().filter(|m| !is_marker(m)).collect();
    let mut got = sorted_ids(taken_over.iter().copied());
    if b.fenced {
        got.dedup();
    }
    assert_eq!(got, uncommitted, "b got exactly what a had not committed");
    b.close().await;
}

/// A new group reading from the earliest offset sees everything, even after another group
/// committed it all; a group replaying with `Earliest` sees everything again despite its own
/// commits, and the same group resuming from its commits sees only what is new.
pub async fn replay_from_earliest(bus: Arc<dyn EventBus>) {
    let topic = unique("replay");
    let group = unique("group");
    create_topic(bus.as_ref(), &topic, 3).await;
    let keys = keys("member", 5);
    for seq in 0..4 {
        publish(
            bus.as_ref(),
            &topic,
            keys.iter().map(|k| message(k, &seq.to_string())).collect(),
        )
        .await;
    }

    let mut first = Member::join(bus.as_ref(), "first", &group, &topic, StartFrom::Committed)
        .await
        .committing();
    poll_until(&mut [&mut first], "all 20 messages", |m| {
        m[0].seen.len() >= 20
    })
    .await;
    let published = sorted_ids(&first.seen);
    assert_eq!(published.len(), 20);
    first.close().await;
    publish_markers(bus.as_ref(), &topic, &keys).await;

    let mut everything = published.clone();
    everything.extend(keys.iter().map(|k| format!("{k}#{MARKER}")));
    everything.sort();
    let new_group = unique("group");
    for (name, group, start, expected) in [
        (
            "new group from earliest",
            new_group.as_str(),
            StartFrom::Earliest,
            everything.clone(),
        ),
        (
            "same group replaying",
            group.as_str(),
            StartFrom::Earliest,
            everything.clone(),
        ),
        (
            "same group resuming",
            group.as_str(),
            StartFrom::Committed,
            Vec::new(),
        ),
    ] {
        let mut member = Member::join(bus.as_ref(), "replayer", group, &topic, start).await;
        poll_until(&mut [&mut member], "every key's end marker", |m| {
            markers_seen(&m[0].seen, &keys)
        })
        .await;
        let got: Vec<String> = sorted_ids(
            member
                .seen
                .iter()
                .filter(|m| !is_marker(m) || start == StartFrom::Earliest),
        );
        assert_eq!(got, expected, "{name}");
        assert_eq!(
            member.seen.iter().filter(|m| is_marker(m)).count(),
            keys.len(),
            "{name}: markers once each"
        );
        member.close().await;
    }
}

/// Keys, headers (order, duplicates, empty and non-ASCII values) and payloads (any bytes,
/// empty) arrive byte-exact, also through a dead-letter topic with the reason in headers.
pub async fn headers_and_keys_round_trip(bus: Arc<dyn EventBus>) {
    let topic = unique("roundtrip");
    let dlq = format!("{topic}.dlq");
    create_topic(bus.as_ref(), &topic, 2).await;
    create_topic(bus.as_ref(), &dlq, 1).await;
    let h = |k: &str, v: &str| (k.to_string(), v.to_string());
    let sent = vec![
        OutboundMessage {
            key: "application-Müller-✓-0001".into(),
            headers: vec![
                h("ce_specversion", "1.0"),
                h("ce_id", "0190a0e2-7c1b-7cc1-9f3a-2f1c4b9e8d01"),
                h("ce_type", "com.enrollstream.application.submitted"),
                h("content-type", "application/json"),
                h("x-empty", ""),
                h("x-dup", "1"),
                h("x-dup", "2"),
                h("x-unicode", "Grüße ✓ 日本 \"quoted\" \\ back"),
            ],
            payload: br#"{"premium_cents":12345,"name":"M\u00fcller"}"#.to_vec(),
        },
        OutboundMessage {
            key: "binary".into(),
            headers: vec![],
            payload: vec![0, 255, 1, 128, 0, 10, 13, 0xfe],
        },
        OutboundMessage {
            key: "empty".into(),
            headers: vec![h("ce_id", "e")],
            payload: Vec::new(),
        },
    ];
    publish(bus.as_ref(), &topic, sent.clone()).await;

    let mut reader = Member::join(
        bus.as_ref(),
        "reader",
        &unique("group"),
        &topic,
        StartFrom::Committed,
    )
    .await;
    poll_until(&mut [&mut reader], "the three messages", |m| {
        m[0].seen.len() >= 3
    })
    .await;
    assert_eq!(reader.seen.len(), 3);
    for out in &sent {
        let got = reader
            .seen
            .iter()
            .find(|m| m.key.as_deref() == Some(out.key.as_str()));
        let got = got.unwrap_or_else(|| panic!("no message with key {:?}", out.key));
        assert_eq!(got.topic, topic);
        assert_eq!(got.headers, out.headers, "headers of {:?}", out.key);
        assert_eq!(got.payload, out.payload, "payload of {:?}", out.key);
        assert!((0..2).contains(&got.partition));
    }
    let original = reader
        .seen
        .iter()
        .find(|m| m.key.as_deref() == Some(sent[0].key.as_str()))
        .expect("first")
        .clone();
    assert_eq!(
        original.header("CE_TYPE"),
        Some("com.enrollstream.application.submitted")
    );
    assert_eq!(
        original.header("x-dup"),
        Some("1"),
        "header() finds the first of duplicates"
    );
    reader.close().await;

    let mut headers = original.headers.clone();
    headers.extend([
        h(
            "dlq-reason",
            "validation failed: data.premium_cents must be positive (got -1)",
        ),
        h("dlq-source-topic", &original.topic),
        h("dlq-source-partition", &original.partition.to_string()),
        h("dlq-source-offset", &original.offset.to_string()),
    ]);
    let dead = OutboundMessage {
        key: sent[0].key.clone(),
        headers,
        payload: original.payload.clone(),
    };
    publish(bus.as_ref(), &dlq, vec![dead.clone()]).await;
    let mut inspector = Member::join(
        bus.as_ref(),
        "inspector",
        &unique("group"),
        &dlq,
        StartFrom::Committed,
    )
    .await;
    poll_until(&mut [&mut inspector], "the dead letter", |m| {
        !m[0].seen.is_empty()
    })
    .await;
    let got = &inspector.seen[0];
    assert_eq!(inspector.seen.len(), 1);
    assert_eq!(
        (got.topic.as_str(), got.key.as_deref()),
        (dlq.as_str(), Some(dead.key.as_str()))
    );
    assert_eq!(got.headers, dead.headers);
    assert_eq!(got.payload, dead.payload);
    assert_eq!(
        got.header("dlq-source-offset"),
        Some(original.offset.to_string().as_str())
    );
    inspector.close().await;
}

/// Once `publish` returned, the messages are durable: a new client (a restarted process)
/// reads every one of them, published by many concurrent callers.
pub async fn publish_is_durable(bus: Arc<dyn EventBus>, reopen: &dyn BusFactory) {
    const CALLERS: usize = 16;
    const EACH: usize = 25;
    let topic = unique("durable");
    create_topic(bus.as_ref(), &topic, 3).await;
    let keys = keys("caller", CALLERS);
    let mut callers = Vec::new();
    for key in keys.clone() {
        let (publisher, topic) = (bus.publisher(), topic.clone());
        callers.push(tokio::spawn(async move {
            for seq in 0..EACH {
                publisher
                    .publish(&topic, vec![message(&key, &seq.to_string())])
                    .await
                    .expect("publish");
            }
        }));
    }
    for caller in callers {
        caller.await.expect("publishing task");
    }
    drop(bus);

    let bus = reopen.open().await;
    publish_markers(bus.as_ref(), &topic, &keys).await;
    let mut reader = Member::join(
        bus.as_ref(),
        "reader",
        &unique("group"),
        &topic,
        StartFrom::Earliest,
    )
    .await;
    poll_until(&mut [&mut reader], "every key's end marker", |m| {
        markers_seen(&m[0].seen, &keys)
    })
    .await;
    let mut expected: Vec<String> = keys
        .iter()
        .flat_map(|k| (0..EACH).map(move |s| format!("{k}#{s}")))
        .collect();
    expected.sort();
    assert_eq!(sorted_ids(reader.data()), expected);
    for (key, messages) in by_key(reader.data()) {
        let seqs: Vec<usize> = messages
            .iter()
            .filter_map(|m| m.header("contract-seq")?.parse().ok())
            .collect();
        assert_eq!(seqs, (0..EACH).collect::<Vec<_>>(), "order of {key}");
    }
    reader.close().await;
}

/// A member that lost a partition in a rebalance cannot commit it any more: the commit is
/// ignored or refused as `Fenced`, and the group's position on that partition does not move.
pub async fn lost_partition_commit_is_not_applied(bus: Arc<dyn EventBus>) {
    let topic = unique("fenced");
    let group = unique("group");
    create_topic(bus.as_ref(), &topic, 2).await;
    let keys = keys("broker", 8);
    for seq in 0..3 {
        publish(
            bus.as_ref(),
            &topic,
            keys.iter().map(|k| message(k, &seq.to_string())).collect(),
        )
        .await;
    }

    let mut a = Member::join(bus.as_ref(), "a", &group, &topic, StartFrom::Committed).await;
    poll_until(&mut [&mut a], "all 24 messages", |m| m[0].seen.len() >= 24).await;
    let mut b = Member::join(bus.as_ref(), "b", &group, &topic, StartFrom::Committed).await;
    poll_until(
        &mut [&mut a, &mut b],
        "a split of the two partitions",
        |m| {
            let (x, y) = (m[0].assignment(), m[1].assignment());
            x.len() == 1 && y.len() == 1 && x != y
        },
    )
    .await;
    let lost = *b.assignment().first().expect("b holds a partition");

    // a commits everything it consumed, including the partition it lost.
    let positions = last_positions(&a.seen);
    assert!(
        positions.iter().any(|p| p.partition == lost),
        "a had consumed the partition it lost"
    );
    match a.sub().commit(&positions).await {
        Ok(()) | Err(BusError::Fenced(_)) => {}
        Err(e) => panic!("commit after losing a partition: {e}"),
    }
    b.close().await;
    a.close().await;

    // A later member of the group starts the lost partition where the group was: the start.
    let lost_partition: Vec<String> = sorted_ids(a.seen.iter().filter(|m| m.partition == lost));
    let lost_keys: Vec<String> = by_key(a.seen.iter().filter(|m| m.partition == lost))
        .into_keys()
        .collect();
    publish_markers(bus.as_ref(), &topic, &lost_keys).await;
    let mut c = Member::join(bus.as_ref(), "c", &group, &topic, StartFrom::Committed).await;
    poll_until(&mut [&mut c], "the lost partition's end markers", |m| {
        markers_seen(&m[0].seen, &lost_keys)
    })
    .await;
    let got = sorted_ids(c.data().into_iter().filter(|m| m.partition == lost));
    assert_eq!(
        got, lost_partition,
        "the lost partition from the group's last real commit (none)"
    );
    c.close().await;
}
