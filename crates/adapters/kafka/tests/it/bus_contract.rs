//! The Kafka bus against the bus contract, every case on a real Apache Kafka broker (one per
//! test process, shared by the cases that process runs), with the production defaults.

use async_trait::async_trait;
use enrollstream_kafka::{KafkaBus, KafkaConfig};
use enrollstream_ports::EventBus;
use enrollstream_testkit::contract::bus::{self as contract, BusFactory};
use enrollstream_testkit::testbed::Kafka;
use std::sync::Arc;

fn config() -> KafkaConfig {
    let mut config = KafkaConfig {
        brokers: Kafka::shared().bootstrap(),
        ..KafkaConfig::default()
    };
    // librdkafka's own debug contexts, e.g. `cgrp,fetch`, logged at debug level.
    if let Ok(contexts) = std::env::var("ENROLLSTREAM_KAFKA_DEBUG") {
        config.extra.insert("debug".into(), contexts);
    }
    config
}

fn bus() -> Arc<dyn EventBus> {
    // `RUST_LOG=librdkafka=debug,enrollstream_kafka=debug` shows the group protocol at work.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    Arc::new(KafkaBus::new(config()).unwrap_or_else(|e| panic!("kafka bus: {e}")))
}

/// A restarted process: new clients of the same broker.
struct Reopen;

#[async_trait]
impl BusFactory for Reopen {
    async fn open(&self) -> Arc<dyn EventBus> {
        bus()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_ordering() {
    contract::per_key_ordering(bus()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_after_crash() {
    contract::redelivery_after_crash(bus(), &Reopen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_members_split_partitions() {
    contract::group_members_split_partitions(bus()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_earliest() {
    contract::replay_from_earliest(bus()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_keys_round_trip() {
    contract::headers_and_keys_round_trip(bus()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_is_durable() {
    contract::publish_is_durable(bus(), &Reopen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_partition_commit_is_not_applied() {
    contract::lost_partition_commit_is_not_applied(bus()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_are_reported() {
    contract::committed_offsets_are_reported(bus()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_offsets_are_reported() {
    contract::end_offsets_are_reported(bus()).await;
}
