//! The production event bus: Kafka through rdkafka (librdkafka, vendored).
//!
//! - Publishing: idempotent producer, `acks=all`, keyed by entity id, a batch acknowledged as a
//!   whole ([`producer`]).
//! - Consuming: one consumer per subscription in the subscription's group, manual synchronous
//!   commits, the assignment tracked by the rebalance callback ([`membership`]), and fetched
//!   messages of revoked partitions dropped ([`consumer`]). Rebalances are incremental
//!   (cooperative-sticky) unless configured otherwise; static membership is opt-in.
//! - `StartFrom::Earliest`: the rebalance callback points every partition this subscription is
//!   assigned at the beginning (or, when it comes back after a rebalance, at what this very
//!   subscription committed), whatever the group committed before. The caller keeps its group.
//! - Commits of partitions this member no longer owns are skipped, not refused: the new owner
//!   redoes them from the last commit and the effects are idempotent.

mod admin;
mod config;
mod consumer;
mod context;
mod errors;
mod membership;
mod offsets;
mod producer;
pub mod throughput;

pub use config::KafkaConfig;
pub use consumer::KafkaSubscription;
pub use producer::KafkaPublisher;

use async_trait::async_trait;
use enrollstream_ports::{
    BusError, CommitPosition, EventBus, Publisher, Subscription, SubscriptionSpec, TopicNames,
    TopicSpec,
};
use rdkafka::admin::AdminClient;
use rdkafka::producer::{FutureProducer, Producer};
use std::sync::Arc;
use std::time::Duration;

use context::Logging;
use errors::classify;

pub struct KafkaBus {
    config: KafkaConfig,
    publisher: Arc<KafkaPublisher>,
    admin: AdminClient<Logging>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KafkaBus {
    /// Create the clients. Nothing connects yet: librdkafka connects in the background and
    /// `check()` tells whether the brokers answer.
    pub fn new(config: KafkaConfig) -> Result<Self, BusError> {
        let producer: FutureProducer<Logging> = config
            .producer()
            .create_with_context(Logging)
            .map_err(|e| classify(&e))?;
        let admin: AdminClient<Logging> = config
            .admin()
            .create_with_context(Logging)
            .map_err(|e| classify(&e))?;
        tracing::info!(brokers = %config.brokers, "kafka bus created");
        Ok(Self {
            config,
            publisher: Arc::new(KafkaPublisher::new(producer)),
            admin,
        })
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// Every topic of `names` (dead-letter topics included) with this bus's partitions and
    /// replication.
    pub fn topic_specs(&self, names: &TopicNames) -> Vec<TopicSpec> {
        names
            .all()
            .into_iter()
            .map(|name| TopicSpec {
                name,
                partitions: self.config.partitions,
                replication: self.config.replication,
                retention: None,
            })
            .collect()
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms)
    }
}

#[async_trait]
impl EventBus for KafkaBus {
    async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError> {
        admin::ensure_topics(&self.admin, topics, self.request_timeout()).await
    }

    fn publisher(&self) -> Arc<dyn Publisher> {
        self.publisher.clone()
    }

    async fn subscribe(&self, spec: SubscriptionSpec) -> Result<Box<dyn Subscription>, BusError> {
        Ok(Box::new(consumer::subscribe(&self.config, spec)?))
    }

    async fn committed(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<CommitPosition>, BusError> {
        let (config, group, topics) = (self.config.clone(), group.to_string(), topics.to_vec());
        let timeout = self.request_timeout();
        tokio::task::spawn_blocking(move || offsets::committed(&config, &group, &topics, timeout))
            .await
            .map_err(|e| BusError::Fatal(format!("offsets task failed: {e}")))?
    }

    async fn end_offsets(&self, topics: &[String]) -> Result<Vec<CommitPosition>, BusError> {
        let (config, topics) = (self.config.clone(), topics.to_vec());
        let timeout = self.request_timeout();
        tokio::task::spawn_blocking(move || offsets::end_offsets(&config, &topics, timeout))
            .await
            .map_err(|e| BusError::Fatal(format!("offsets task failed: {e}")))?
    }

    async fn check(&self) -> Result<(), BusError> {
        let producer = self.publisher.producer().clone();
        let timeout = self.request_timeout();
        tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, timeout))
            .await
            .map_err(|e| BusError::Fatal(format!("metadata task failed: {e}")))?
            .map(drop)
            .map_err(|e| BusError::Unavailable(format!("brokers do not answer: {e}")))
    }

    fn name(&self) -> &'static str {
        "kafka"
    }
}
