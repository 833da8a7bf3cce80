//! The embedded event bus on SQLite: Kafka's semantics on one machine, in one process.
//!
//! - The log is `bus.db` in the data directory (WAL, `synchronous=FULL`): topics, messages
//!   per (topic, partition, offset), and committed offsets per (group, topic, partition).
//!   A transaction of offset commits alone is not fsync'ed (`writer`): losing one to a power
//!   loss only means redelivery.
//! - A key's partition is Kafka's murmur2 partition (`partitioner`), so a key lands in the same
//!   partition here and on Kafka with `partitioner=murmur2_random`.
//! - `publish` returns once its messages are fsync'ed; one writer thread commits everything
//!   pending in one transaction (`writer`, group commit). Publishing to an unknown topic
//!   creates it with the default partition count (dead-letter topics appear on first use);
//!   so does subscribing to one.
//! - Consumer groups live in this process (`group`): members split the partitions (range
//!   assignment), a member that closes or is dropped hands its partitions over at once, and
//!   their new owner starts at the committed offset (a `StartFrom::Earliest` member: at 0).
//!   Partitions a member keeps through a rebalance keep its in-memory position. A commit for
//!   a partition the member no longer holds is ignored (`Ok`, not `Fenced`: its effects are
//!   durable and fenced, the new owner redoes them as no-ops); committed offsets never move
//!   backwards.
//! - Consumers wait for a signal from the writer (`wakeup`), never on a timer.
//!
//! One process per data directory: a second process could read and append safely (offsets
//! are allocated inside the write transaction), but would not share groups or wake-ups.

mod group;
mod log;
mod partitioner;
mod subscription;
mod wakeup;
mod writer;

use async_trait::async_trait;
use enrollstream_ports::{
    BusError, CommitPosition, EventBus, OutboundMessage, Publisher, Subscription, SubscriptionSpec,
    TopicSpec,
};
use group::Coordinator;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use subscription::{EmbeddedSubscription, Member};
use wakeup::Wakeups;
use writer::Writer;

/// The embedded bus. Cheap to clone: clones share the log, the writer and the groups.
#[derive(Clone)]
pub struct EmbeddedBus {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    default_partitions: i32,
    writer: Writer,
    groups: Coordinator,
    wakeups: Wakeups,
}

impl EmbeddedBus {
    /// Opens (creating if needed) the log `bus.db` in `data_dir`. Topics created on first use
    /// get `default_partitions` partitions.
    pub fn open(data_dir: &Path, default_partitions: i32) -> Result<Self, BusError> {
        if default_partitions < 1 {
            return Err(BusError::Fatal(format!(
                "default partition count must be at least 1, not {default_partitions}"
            )));
        }
        std::fs::create_dir_all(data_dir).map_err(|e| {
            log::unavailable(
                &format!("cannot create data directory {}", data_dir.display()),
                e,
            )
        })?;
        let path = data_dir.join(log::FILE);
        let conn = log::open_writer(&path)?;
        let wakeups = Wakeups::default();
        let writer = Writer::start(conn, default_partitions, wakeups.clone())?;
        Ok(Self {
            shared: Arc::new(Shared {
                path,
                default_partitions,
                writer,
                groups: Coordinator::default(),
                wakeups,
            }),
        })
    }
}

/// Topic names follow Kafka's rules, so a configuration that works here works on Kafka.
fn check_topic(topic: &str) -> Result<(), BusError> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if topic.is_empty()
        || topic.len() > 249
        || topic == "."
        || topic == ".."
        || !topic.chars().all(legal)
    {
        return Err(BusError::Fatal(format!(
            "illegal topic name {topic:?}: 1 to 249 characters of [a-zA-Z0-9._-], not '.' or '..'"
        )));
    }
    Ok(())
}

#[async_trait]
impl Publisher for EmbeddedBus {
    async fn publish(&self, topic: &str, messages: Vec<OutboundMessage>) -> Result<(), BusError> {
        check_topic(topic)?;
        if messages.is_empty() {
            return Ok(());
        }
        self.shared.writer.append(topic.to_string(), messages).await
    }
}

#[async_trait]
impl EventBus for EmbeddedBus {
    async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError> {
        for spec in topics {
            check_topic(&spec.name)?;
            if spec.partitions < 1 {
                return Err(BusError::Fatal(format!(
                    "topic {} needs at least 1 partition, not {}",
                    spec.name, spec.partitions
                )));
            }
        }
        let requested: Vec<(String, i32)> = topics
            .iter()
            .map(|t| (t.name.clone(), t.partitions))
            .collect();
        let actual = self.shared.writer.topics(requested.clone()).await?;
        for ((topic, wanted), actual) in requested.iter().zip(actual) {
            if *wanted != actual {
                tracing::info!(%topic, wanted, actual, "topic exists with another partition count; left as it is");
            }
        }
        Ok(())
    }

    fn publisher(&self) -> Arc<dyn Publisher> {
        Arc::new(self.clone())
    }

    async fn subscribe(&self, spec: SubscriptionSpec) -> Result<Box<dyn Subscription>, BusError> {
        if spec.group.is_empty() {
            return Err(BusError::Fatal(
                "a subscription needs a consumer group".into(),
            ));
        }
        if spec.topics.is_empty() {
            return Err(BusError::Fatal(format!(
                "group {} subscribes to no topic",
                spec.group
            )));
        }
        let mut topics = spec.topics.clone();
        topics.sort();
        topics.dedup();
        for topic in &topics {
            check_topic(topic)?;
        }
        let shared = &self.shared;
        let requested = topics
            .iter()
            .map(|t| (t.clone(), shared.default_partitions))
            .collect();
        let counts = shared.writer.topics(requested).await?;
        let path = shared.path.clone();
        let reader = tokio::task::spawn_blocking(move || log::open_reader(&path))
            .await
            .map_err(|e| BusError::Fatal(format!("bus reader task failed: {e}")))?
            .map_err(|e| log::unavailable("cannot open a bus log reader", e))?;
        let appended = topics.iter().map(|t| shared.wakeups.watch(t)).collect();
        let partitions: Vec<(String, i32)> = topics.into_iter().zip(counts).collect();
        let joined = shared.groups.join(&spec.group, &partitions);
        tracing::debug!(group = %spec.group, client_id = %spec.client_id, ?partitions, "joined the group");
        let member = Member {
            group: spec.group,
            client_id: spec.client_id,
            start: spec.start,
            member: joined.member,
            generation: joined.generation,
            appended,
        };
        Ok(Box::new(EmbeddedSubscription::new(
            Arc::clone(shared),
            reader,
            member,
        )))
    }

    async fn committed(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<CommitPosition>, BusError> {
        let (path, group, topics) = (self.shared.path.clone(), group.to_string(), topics.to_vec());
        // A connection of its own: commits acknowledged before this call are visible to it.
        tokio::task::spawn_blocking(move || {
            let conn = log::open_reader(&path)?;
            let mut positions = Vec::new();
            for topic in &topics {
                positions.extend(log::committed_on(&conn, &group, topic)?);
            }
            Ok(positions)
        })
        .await
        .map_err(|e| BusError::Fatal(format!("bus read task failed: {e}")))?
        .map_err(|e: rusqlite::Error| log::unavailable("cannot read committed offsets", e))
    }

    async fn end_offsets(&self, topics: &[String]) -> Result<Vec<CommitPosition>, BusError> {
        let (path, topics) = (self.shared.path.clone(), topics.to_vec());
        tokio::task::spawn_blocking(move || {
            let conn = log::open_reader(&path)?;
            let mut positions = Vec::new();
            for topic in &topics {
                positions.extend(log::end_offsets(&conn, topic)?);
            }
            Ok(positions)
        })
        .await
        .map_err(|e| BusError::Fatal(format!("bus read task failed: {e}")))?
        .map_err(|e: rusqlite::Error| log::unavailable("cannot read end offsets", e))
    }

    async fn check(&self) -> Result<(), BusError> {
        self.shared.writer.check().await
    }

    fn name(&self) -> &'static str {
        "embedded"
    }
}
