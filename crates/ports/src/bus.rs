//! The event bus port: topics split into partitions by key, consumer groups with committed
//! offsets, redelivery of everything not committed, and reading from the beginning.
//! Shaped after Kafka's semantics, which the embedded adapter reproduces on one machine.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The broker or log is unreachable or refused; worth retrying.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// A configuration or programming error; retrying will not help.
    #[error("bus error: {0}")]
    Fatal(String),
    /// The subscription was closed or the group generation moved on (rebalance); the caller
    /// drops what it holds uncommitted and polls again.
    #[error("subscription fenced: {0}")]
    Fenced(String),
}

/// A message header. Values are strings: CloudEvents binary-mode attributes are strings and
/// strings keep headers readable in every Kafka tool.
pub type Header = (String, String);

#[derive(Clone, Debug, PartialEq)]
pub struct OutboundMessage {
    /// Partition key: the entity id. All messages of one key land in one partition, in order.
    pub key: String,
    pub headers: Vec<Header>,
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct InboundMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub headers: Vec<Header>,
    pub payload: Vec<u8>,
    /// Broker append time in milliseconds since the epoch, where known.
    pub timestamp_ms: Option<i64>,
}

impl InboundMessage {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The position to commit once this message is done: the next offset to read.
    pub fn next_position(&self) -> CommitPosition {
        CommitPosition {
            topic: self.topic.clone(),
            partition: self.partition,
            next_offset: self.offset + 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CommitPosition {
    pub topic: String,
    pub partition: i32,
    /// Kafka semantics: the offset of the next message to read, i.e. last processed + 1.
    pub next_offset: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication: i16,
    /// How long the broker keeps messages: `Some(Retention::Forever)` for the event topics,
    /// which are the source of truth; `None` leaves the broker's default.
    pub retention: Option<Retention>,
}

/// How long a topic keeps its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    Forever,
    For(std::time::Duration),
}

impl Retention {
    /// Kafka's `retention.ms`: -1 is forever.
    pub fn as_millis(self) -> i64 {
        match self {
            Retention::Forever => -1,
            Retention::For(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFrom {
    /// Where the group committed; from the beginning if it never did.
    Committed,
    /// From the beginning of every partition regardless of commits (replay / rebuild).
    Earliest,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionSpec {
    /// Consumer group: members of one group split the partitions; each group sees every message.
    pub group: String,
    pub topics: Vec<String>,
    pub start: StartFrom,
    /// Name of this member in logs and metrics.
    pub client_id: String,
}

impl SubscriptionSpec {
    pub fn new(group: impl Into<String>, topics: &[&str]) -> Self {
        let group = group.into();
        Self {
            client_id: group.clone(),
            group,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            start: StartFrom::Committed,
        }
    }
}

#[async_trait]
pub trait Publisher: Send + Sync {
    /// Append `messages` to `topic`. When this returns `Ok` every message is durable (fsync'ed
    /// locally, or acknowledged by all in-sync replicas) and will be delivered to every group.
    /// Order is kept per key within one call and across calls from one task.
    async fn publish(&self, topic: &str, messages: Vec<OutboundMessage>) -> Result<(), BusError>;
}

#[async_trait]
pub trait Subscription: Send {
    /// Wait up to `max_wait` for at most `max` messages. Messages of one partition come in
    /// offset order. After a crash or a rebalance, everything not committed is delivered again.
    async fn poll(
        &mut self,
        max: usize,
        max_wait: Duration,
    ) -> Result<Vec<InboundMessage>, BusError>;

    /// Commit positions for the group. Call only after the effects of every message before each
    /// position are durable.
    async fn commit(&mut self, positions: &[CommitPosition]) -> Result<(), BusError>;

    /// Partitions currently assigned to this member, as (topic, partition).
    fn assignment(&self) -> Vec<(String, i32)>;

    /// Leave the group cleanly so that its partitions move to other members at once.
    async fn close(self: Box<Self>) -> Result<(), BusError>;
}

#[async_trait]
pub trait EventBus: Send + Sync {
    /// Create missing topics (with their retention where the bus has one); existing topics are
    /// left as they are.
    async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError>;

    fn publisher(&self) -> Arc<dyn Publisher>;

    async fn subscribe(&self, spec: SubscriptionSpec) -> Result<Box<dyn Subscription>, BusError>;

    /// The positions `group` has committed on `topics` (partitions without a commit are absent).
    /// The rebuild uses it to tell events whose side effects already happened from new ones.
    async fn committed(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<CommitPosition>, BusError> {
        let _ = (group, topics);
        Err(BusError::Fatal(format!(
            "the {} bus cannot report committed offsets",
            self.name()
        )))
    }

    /// The end of each partition of `topics` (the offset the next appended message gets, Kafka's
    /// high watermark); a consumer group's lag is this minus what it committed.
    async fn end_offsets(&self, topics: &[String]) -> Result<Vec<CommitPosition>, BusError> {
        let _ = topics;
        Err(BusError::Fatal(format!(
            "the {} bus cannot report end offsets",
            self.name()
        )))
    }

    /// Cheap liveness check for `/readyz`.
    async fn check(&self) -> Result<(), BusError>;

    /// Which adapter this is, for logs and `/readyz` ("embedded", "kafka").
    fn name(&self) -> &'static str;
}
