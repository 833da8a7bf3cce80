//! Raw Kafka throughput on a fresh Apache Kafka broker: rdkafka alone (the ceiling), then through the
//! bus port. 3 partitions, ~1 KB messages.
//!
//! `cargo bench -p enrollstream-kafka --bench raw`; `ENROLLSTREAM_BENCH_MESSAGES` sets the count
//! (default 200000), `ENROLLSTREAM_BENCH_KAFKA="linger.ms=20,compression.type=none"` adds
//! librdkafka properties to try, `ENROLLSTREAM_BENCH_HEADERS=9` puts that many headers (of the
//! size of a CloudEvents attribute) on every raw message.

use enrollstream_kafka::throughput::{self, Rate};
use enrollstream_kafka::{KafkaBus, KafkaConfig};
use enrollstream_ports::{EventBus, TopicSpec};
use enrollstream_testkit::testbed::Kafka;
use std::time::Duration;

const SIZE: usize = 1024;
const PARTITIONS: i32 = 3;
const BUS_BATCH: usize = 500;
const LIMIT: Duration = Duration::from_secs(600);

fn report(what: &str, rate: Result<Rate, enrollstream_ports::BusError>) {
    match rate {
        Ok(rate) => println!("{what:<32} {rate}"),
        Err(e) => panic!("{what}: {e}"),
    }
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::var("ENROLLSTREAM_BENCH_MESSAGES")
        .ok()
        .map(|v| v.parse().expect("ENROLLSTREAM_BENCH_MESSAGES is a number"))
        .unwrap_or(200_000);
    let headers: Vec<(String, String)> = (0..std::env::var("ENROLLSTREAM_BENCH_HEADERS")
        .ok()
        .map(|v| v.parse().expect("ENROLLSTREAM_BENCH_HEADERS is a number"))
        .unwrap_or(0))
        .map(|i| {
            (
                format!("ce_attribute{i}"),
                "0195f3c2-7c1e-7a8b-9d3e-4f5a6b7c8d9e".into(),
            )
        })
        .collect();
    let kafka = Kafka::start_for_benchmark()
        .unwrap_or_else(|e| panic!("the Kafka broker did not start: {e:#}"));
    let mut config = KafkaConfig {
        brokers: kafka.bootstrap(),
        ..KafkaConfig::default()
    };
    if let Ok(properties) = std::env::var("ENROLLSTREAM_BENCH_KAFKA") {
        for property in properties.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = property
                .split_once('=')
                .expect("ENROLLSTREAM_BENCH_KAFKA is k=v,k=v");
            config.extra.insert(key.trim().into(), value.trim().into());
        }
    }
    let bus = KafkaBus::new(config.clone()).expect("kafka bus");
    let (raw, ported) = ("bench-raw", "bench-bus");
    let specs = [raw, ported].map(|name| TopicSpec {
        name: name.into(),
        partitions: PARTITIONS,
        replication: 1,
        retention: None,
    });
    bus.ensure_topics(&specs).await.expect("topics");

    println!("Apache Kafka 4.1.1 (KRaft, one node), {PARTITIONS} partitions, {count} messages of {SIZE} bytes with {} headers, extra {:?}", headers.len(), config.extra);
    report(
        "rdkafka produce",
        throughput::produce(&config, raw, count, SIZE, &headers).await,
    );
    let consumed = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || throughput::consume(&config, raw, count, LIMIT))
            .await
            .expect("consumer thread")
    };
    report("rdkafka consume", consumed);
    report(
        &format!("bus publish ({BUS_BATCH} per call)"),
        throughput::bus_publish(&bus, ported, count, SIZE, BUS_BATCH).await,
    );
    report(
        &format!("bus poll+commit ({BUS_BATCH} per poll)"),
        throughput::bus_consume(&bus, ported, count, BUS_BATCH, LIMIT).await,
    );
}
