//! The embedded bus against the bus contract, each case on a fresh data directory, plus what
//! only the embedded bus promises: its log and offsets survive a process crash, unknown topics
//! appear on first use, keys land in Kafka's partitions, commits never move backwards.

use async_trait::async_trait;
use enrollstream_ports::{
    CommitPosition, EventBus, InboundMessage, OutboundMessage, StartFrom, Subscription,
    SubscriptionSpec, TopicSpec,
};
use enrollstream_sqlite::bus::EmbeddedBus;
use enrollstream_testkit::contract::bus::{self as contract, BusFactory};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

const DEFAULT_PARTITIONS: i32 = 3;
/// Only reached when something is wrong.
const DEADLINE: Duration = Duration::from_secs(60);

/// A restarted process: the same data directory, opened again.
struct Reopen(PathBuf);

#[async_trait]
impl BusFactory for Reopen {
    async fn open(&self) -> Arc<dyn EventBus> {
        Arc::new(open(&self.0))
    }
}

fn open(dir: &Path) -> EmbeddedBus {
    EmbeddedBus::open(dir, DEFAULT_PARTITIONS)
        .unwrap_or_else(|e| panic!("open bus in {}: {e}", dir.display()))
}

fn fresh() -> (TempDir, Arc<dyn EventBus>, Reopen) {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = Arc::new(open(dir.path()));
    let reopen = Reopen(dir.path().to_path_buf());
    (dir, bus, reopen)
}

/// One test per contract case; the cases after `restarting:` also get the process restart.
macro_rules! contract_cases {
    ($($case:ident),* ; restarting: $($restarting:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (_dir, bus, _) = fresh();
                contract::$case(bus).await;
            }
        )*
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $restarting() {
                let (_dir, bus, reopen) = fresh();
                contract::$restarting(bus, &reopen).await;
            }
        )*
    };
}

contract_cases!(
    per_key_ordering,
    group_members_split_partitions,
    replay_from_earliest,
    headers_and_keys_round_trip,
    lost_partition_commit_is_not_applied,
    committed_offsets_are_reported,
    end_offsets_are_reported;
    restarting: redelivery_after_crash, publish_is_durable,
);

// --- What only the embedded bus promises -------------------------------------------------

fn message(key: &str, n: usize) -> OutboundMessage {
    OutboundMessage {
        key: key.into(),
        headers: vec![("n".into(), n.to_string())],
        payload: format!("{key}#{n}").into_bytes(),
    }
}

async fn subscribe(
    bus: &dyn EventBus,
    group: &str,
    topic: &str,
    start: StartFrom,
) -> Box<dyn Subscription> {
    let mut spec = SubscriptionSpec::new(group, &[topic]);
    spec.start = start;
    bus.subscribe(spec).await.expect("subscribe")
}

/// Polls until `count` messages arrived; the embedded bus has them at once, the deadline is
/// only reached when it is broken.
async fn take(sub: &mut Box<dyn Subscription>, count: usize) -> Vec<InboundMessage> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while seen.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {count} messages arrived",
            seen.len()
        );
        seen.extend(
            sub.poll(count - seen.len(), Duration::from_millis(200))
                .await
                .expect("poll"),
        );
    }
    assert_eq!(seen.len(), count);
    seen
}

/// Nothing more is delivered now: a zero-wait poll reads the log and finds nothing.
async fn assert_drained(sub: &mut Box<dyn Subscription>) {
    let more = sub.poll(100, Duration::ZERO).await.expect("poll");
    assert!(more.is_empty(), "unexpected messages: {more:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_and_offsets_survive_a_crash_and_offsets_continue() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = open(dir.path());
    bus.ensure_topics(&[TopicSpec {
        name: "events".into(),
        partitions: 2,
        replication: 1,
        retention: None,
    }])
    .await
    .expect("topics");
    let sent: Vec<OutboundMessage> = (0..30)
        .map(|n| message(&format!("k{}", n % 5), n))
        .collect();
    bus.publisher()
        .publish("events", sent.clone())
        .await
        .expect("publish");

    let mut half = subscribe(&bus, "half", "events", StartFrom::Committed).await;
    let mut all = subscribe(&bus, "all", "events", StartFrom::Committed).await;
    let got = take(&mut half, 30).await;
    take(&mut all, 30).await;
    let positions: Vec<CommitPosition> = [0, 1]
        .iter()
        .filter_map(|p| {
            got.iter()
                .filter(|m| m.partition == *p)
                .nth(2)
                .map(InboundMessage::next_position)
        })
        .collect();
    half.commit(&positions).await.expect("commit");
    let ends: Vec<CommitPosition> = [0, 1]
        .iter()
        .filter_map(|p| {
            got.iter()
                .rev()
                .find(|m| m.partition == *p)
                .map(InboundMessage::next_position)
        })
        .collect();
    all.commit(&ends).await.expect("commit");
    drop((half, all, bus));

    let bus = open(dir.path());
    let mut half = subscribe(&bus, "half", "events", StartFrom::Committed).await;
    let mut all = subscribe(&bus, "all", "events", StartFrom::Committed).await;
    let rest = take(&mut half, 30 - 3 * positions.len()).await;
    for m in &rest {
        let committed = positions
            .iter()
            .find(|p| p.partition == m.partition)
            .expect("partition")
            .next_offset;
        assert!(
            m.offset >= committed,
            "committed message redelivered: {m:?}"
        );
    }
    assert_drained(&mut half).await;
    assert_drained(&mut all).await;

    // New messages continue each partition's offsets; nothing is overwritten.
    bus.publisher()
        .publish("events", vec![message("k0", 30)])
        .await
        .expect("publish");
    let new = take(&mut all, 1).await;
    let end = ends
        .iter()
        .find(|p| p.partition == new[0].partition)
        .expect("partition")
        .next_offset;
    assert_eq!(new[0].offset, end);
    let mut replay = subscribe(&bus, "replay", "events", StartFrom::Earliest).await;
    let everything = take(&mut replay, 31).await;
    for out in &sent {
        assert!(everything
            .iter()
            .any(|m| m.payload == out.payload && m.headers == out.headers));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topics_appear_on_first_use_and_existing_ones_keep_their_partitions() {
    let (_dir, bus, _) = fresh();
    bus.publisher()
        .publish("enrollment-events.dlq", vec![message("k", 0)])
        .await
        .expect("publish");
    let sub = subscribe(
        bus.as_ref(),
        "g",
        "enrollment-events.dlq",
        StartFrom::Committed,
    )
    .await;
    assert_eq!(sub.assignment().len(), DEFAULT_PARTITIONS as usize);
    drop(sub);

    let spec = |partitions| TopicSpec {
        name: "quotes".into(),
        partitions,
        replication: 1,
        retention: None,
    };
    bus.ensure_topics(&[spec(2)]).await.expect("create");
    bus.ensure_topics(&[spec(6)])
        .await
        .expect("existing topic is left alone");
    let mut sub = subscribe(bus.as_ref(), "g", "quotes", StartFrom::Committed).await;
    assert_eq!(
        sub.assignment(),
        vec![("quotes".to_string(), 0), ("quotes".to_string(), 1)]
    );
    let many: Vec<OutboundMessage> = (0..40).map(|n| message(&format!("key-{n}"), n)).collect();
    bus.publisher()
        .publish("quotes", many)
        .await
        .expect("publish");
    assert!(take(&mut sub, 40).await.iter().all(|m| m.partition < 2));

    let subscribed_first =
        subscribe(bus.as_ref(), "g", "not-yet-published", StartFrom::Committed).await;
    assert_eq!(
        subscribed_first.assignment().len(),
        DEFAULT_PARTITIONS as usize
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_land_in_kafkas_murmur2_partition() {
    let (_dir, bus, _) = fresh();
    bus.ensure_topics(&[TopicSpec {
        name: "t".into(),
        partitions: 12,
        replication: 1,
        retention: None,
    }])
    .await
    .expect("topics");
    // (key, murmur2 from Kafka's UtilsTest): partition = (hash & 0x7fffffff) % 12.
    let vectors = [
        ("21", -973932308i32),
        ("foobar", -790332482),
        ("abc", 479470107),
    ];
    let sent = vectors.iter().map(|(k, _)| message(k, 0)).collect();
    bus.publisher().publish("t", sent).await.expect("publish");
    let mut sub = subscribe(bus.as_ref(), "g", "t", StartFrom::Committed).await;
    for m in take(&mut sub, 3).await {
        let hash = vectors
            .iter()
            .find(|(k, _)| Some(*k) == m.key.as_deref())
            .expect("known key")
            .1;
        assert_eq!(
            m.partition,
            (hash & 0x7fff_ffff) % 12,
            "partition of {:?}",
            m.key
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_never_move_backwards() {
    let (_dir, bus, _) = fresh();
    bus.ensure_topics(&[TopicSpec {
        name: "t".into(),
        partitions: 1,
        replication: 1,
        retention: None,
    }])
    .await
    .expect("topics");
    bus.publisher()
        .publish("t", (0..10).map(|n| message("k", n)).collect())
        .await
        .expect("publish");
    let mut sub = subscribe(bus.as_ref(), "g", "t", StartFrom::Committed).await;
    let got = take(&mut sub, 10).await;
    sub.commit(&[got[7].next_position()]).await.expect("commit");
    sub.commit(&[got[2].next_position()])
        .await
        .expect("late commit");
    sub.close().await.expect("close");
    let mut again = subscribe(bus.as_ref(), "g", "t", StartFrom::Committed).await;
    let rest = take(&mut again, 2).await;
    assert_eq!(
        rest.iter().map(|m| m.offset).collect::<Vec<_>>(),
        vec![8, 9]
    );
    assert_drained(&mut again).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_member_hands_its_partitions_over_at_once() {
    let (_dir, bus, _) = fresh();
    bus.ensure_topics(&[TopicSpec {
        name: "t".into(),
        partitions: 4,
        replication: 1,
        retention: None,
    }])
    .await
    .expect("topics");
    let mut a = subscribe(bus.as_ref(), "g", "t", StartFrom::Committed).await;
    let b = subscribe(bus.as_ref(), "g", "t", StartFrom::Committed).await;
    assert_eq!(a.assignment().len() + b.assignment().len(), 4);
    assert_eq!(a.assignment().len(), 2);
    drop(b);
    assert_eq!(
        a.assignment().len(),
        4,
        "the crashed member's partitions moved without waiting"
    );
    bus.publisher()
        .publish("t", (0..20).map(|n| message(&format!("k{n}"), n)).collect())
        .await
        .expect("publish");
    take(&mut a, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_poll_wakes_up_on_publish() {
    let (_dir, bus, _) = fresh();
    let mut sub = subscribe(bus.as_ref(), "g", "t", StartFrom::Committed).await;
    let publisher = bus.publisher();
    let waiting =
        tokio::spawn(async move { sub.poll(10, Duration::from_secs(3600)).await.expect("poll") });
    publisher
        .publish("t", vec![message("k", 0)])
        .await
        .expect("publish");
    let got = tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("a poll waiting for an hour was not woken by the publish")
        .expect("poll task");
    assert_eq!(got.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_names_are_refused_and_check_answers() {
    let (_dir, bus, _) = fresh();
    bus.check().await.expect("check");
    assert_eq!(bus.name(), "embedded");
    for topic in ["", "has space", "slash/topic", ".."] {
        let result = bus.publisher().publish(topic, vec![message("k", 0)]).await;
        assert!(
            matches!(result, Err(enrollstream_ports::BusError::Fatal(_))),
            "{topic:?}: {result:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_takes_a_share_of_every_partition() {
    let (_dir, bus, _) = fresh();
    let topic = TopicSpec {
        name: "t".into(),
        partitions: 4,
        replication: 1,
        retention: None,
    };
    bus.ensure_topics(&[topic]).await.expect("topics");
    let batch = (0..200)
        .map(|n| message(&format!("k{}", n % 40), n))
        .collect();
    bus.publisher().publish("t", batch).await.expect("publish");
    let mut all = subscribe(bus.as_ref(), "all", "t", StartFrom::Committed).await;
    let with_data: BTreeSet<i32> = take(&mut all, 200)
        .await
        .iter()
        .map(|m| m.partition)
        .collect();

    let mut sub = subscribe(bus.as_ref(), "g", "t", StartFrom::Committed).await;
    let first = sub.poll(8, Duration::ZERO).await.expect("poll");
    assert_eq!(first.len(), 8);
    let spread: BTreeSet<i32> = first.iter().map(|m| m.partition).collect();
    assert_eq!(
        spread,
        with_data,
        "8 messages from {} partitions with data",
        with_data.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_member_is_woken_to_take_over() {
    let (_dir, bus, _) = fresh();
    let topic = TopicSpec {
        name: "t".into(),
        partitions: 2,
        replication: 1,
        retention: None,
    };
    bus.ensure_topics(&[topic]).await.expect("topics");
    let a = subscribe(bus.as_ref(), "g", "t", StartFrom::Committed).await;
    let b = subscribe(bus.as_ref(), "g", "t", StartFrom::Committed).await;
    let mut idle = subscribe(bus.as_ref(), "g", "t", StartFrom::Committed).await;
    assert!(
        idle.assignment().is_empty(),
        "three members, two partitions"
    );
    let batch = (0..20).map(|n| message(&format!("k{n}"), n)).collect();
    bus.publisher().publish("t", batch).await.expect("publish");

    let waiting = tokio::spawn(async move {
        let got = idle
            .poll(100, Duration::from_secs(3600))
            .await
            .expect("poll");
        (idle, got)
    });
    drop(a);
    let (idle, got) = tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("the idle member was not woken by the rebalance")
        .expect("poll task");
    let held: Vec<i32> = idle.assignment().iter().map(|(_, p)| *p).collect();
    assert_eq!(held.len(), 1);
    assert!(!got.is_empty() && got.iter().all(|m| m.partition == held[0]));
    assert_eq!(
        got[0].offset, 0,
        "nothing was committed: the new owner starts at the beginning"
    );
    drop(b);
}
