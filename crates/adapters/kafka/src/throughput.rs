//! Raw rdkafka throughput against a broker: the ceiling the bus adapter and the pipeline are
//! measured against. Used by `benches/raw.rs`; public so the pipeline benchmark can print the
//! same numbers next to its own.

use enrollstream_ports::StartFrom;
use enrollstream_ports::{BusError, EventBus, Header, OutboundMessage, SubscriptionSpec};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::future_producer::DeliveryFuture;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::config::KafkaConfig;
use crate::context::Logging;
use crate::errors::classify;
use crate::producer::kafka_headers;

/// How many messages (and bytes) went through in how long.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub messages: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Rate {
    pub fn per_second(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    pub fn megabytes_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} msgs in {:.2} s = {:.0} msgs/s ({:.1} MB/s)",
            self.messages,
            self.elapsed.as_secs_f64(),
            self.per_second(),
            self.megabytes_per_second()
        )
    }
}

/// Keys spread over many entities, as the pipeline's are.
fn key(i: usize) -> String {
    format!("entity-{:05}", i % 10_000)
}

/// Produce `count` messages of `size` bytes, each carrying `headers`, to `topic` with the bus's
/// producer settings (idempotent, `acks=all`), all in flight at once, and wait for every
/// acknowledgement. Headers matter: they add to every record's size and to its encoding cost.
pub async fn produce(
    config: &KafkaConfig,
    topic: &str,
    count: usize,
    size: usize,
    headers: &[Header],
) -> Result<Rate, BusError> {
    let producer: FutureProducer<Logging> = config
        .producer()
        .create_with_context(Logging)
        .map_err(|e| classify(&e))?;
    let payload = vec![b'x'; size];
    let started = Instant::now();
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    for i in 0..count {
        let key = key(i);
        let mut record = FutureRecord::to(topic)
            .key(key.as_str())
            .payload(payload.as_slice());
        if !headers.is_empty() {
            record = record.headers(kafka_headers(headers));
        }
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push_back(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    match pending.pop_front() {
                        Some(oldest) => acknowledged(oldest.await)?,
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((e, _)) => return Err(classify(&e)),
            }
        }
    }
    for delivery in pending {
        acknowledged(delivery.await)?;
    }
    Ok(Rate {
        messages: count as u64,
        bytes: (count * size) as u64,
        elapsed: started.elapsed(),
    })
}

fn acknowledged(delivery: <DeliveryFuture as std::future::Future>::Output) -> Result<(), BusError> {
    match delivery {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(classify(&e)),
        Err(_) => Err(BusError::Unavailable("producer shut down".into())),
    }
}

/// Read `count` messages of `topic` from the beginning of every partition, with the bus's
/// consumer settings but assigned directly (no group join, so the broker's join time is not
/// counted). Blocking: call it from a blocking thread.
pub fn consume(
    config: &KafkaConfig,
    topic: &str,
    count: usize,
    limit: Duration,
) -> Result<Rate, BusError> {
    let consumer = tool_consumer(config, "throughput")?;
    let metadata = consumer
        .fetch_metadata(
            Some(topic),
            Duration::from_millis(config.request_timeout_ms),
        )
        .map_err(|e| classify(&e))?;
    let partitions = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    if partitions == 0 {
        return Err(BusError::Fatal(format!("topic {topic} has no partitions")));
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| classify(&e))?;
    }
    consumer.assign(&tpl).map_err(|e| classify(&e))?;
    let started = Instant::now();
    let (mut messages, mut bytes) = (0u64, 0u64);
    while messages < count as u64 {
        if started.elapsed() > limit {
            return Err(BusError::Unavailable(format!(
                "read {messages} of {count} messages in {limit:?}"
            )));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                messages += 1;
                bytes += m.payload_len() as u64;
            }
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
            None => {}
        }
    }
    Ok(Rate {
        messages,
        bytes,
        elapsed: started.elapsed(),
    })
}

/// Publish `count` messages of `size` bytes through the bus port, `batch` per `publish` call.
pub async fn bus_publish(
    bus: &dyn EventBus,
    topic: &str,
    count: usize,
    size: usize,
    batch: usize,
) -> Result<Rate, BusError> {
    let publisher = bus.publisher();
    let payload = vec![b'x'; size];
    let started = Instant::now();
    let mut sent = 0;
    while sent < count {
        let n = batch.min(count - sent);
        let messages = (sent..sent + n)
            .map(|i| OutboundMessage {
                key: key(i),
                headers: Vec::new(),
                payload: payload.clone(),
            })
            .collect();
        publisher.publish(topic, messages).await?;
        sent += n;
    }
    Ok(Rate {
        messages: count as u64,
        bytes: (count * size) as u64,
        elapsed: started.elapsed(),
    })
}

/// Read `count` messages of `topic` through the bus port from the beginning in a fresh group,
/// committing after every poll. The clock starts at the first message, after the group join.
pub async fn bus_consume(
    bus: &dyn EventBus,
    topic: &str,
    count: usize,
    batch: usize,
    limit: Duration,
) -> Result<Rate, BusError> {
    let mut spec = SubscriptionSpec::new(format!("throughput-{}", std::process::id()), &[topic]);
    spec.start = StartFrom::Earliest;
    let mut subscription = bus.subscribe(spec).await?;
    let deadline = Instant::now() + limit;
    let (mut messages, mut bytes, mut started) = (0u64, 0u64, None);
    while messages < count as u64 {
        if Instant::now() > deadline {
            return Err(BusError::Unavailable(format!(
                "read {messages} of {count} messages in {limit:?}"
            )));
        }
        let polled = subscription.poll(batch, Duration::from_millis(200)).await?;
        if polled.is_empty() {
            continue;
        }
        started.get_or_insert_with(Instant::now);
        messages += polled.len() as u64;
        bytes += polled.iter().map(|m| m.payload.len() as u64).sum::<u64>();
        let positions: Vec<_> = polled.iter().map(|m| m.next_position()).collect();
        subscription.commit(&positions).await?;
    }
    subscription.close().await?;
    let elapsed = started.map_or(Duration::ZERO, |s| s.elapsed());
    Ok(Rate {
        messages,
        bytes,
        elapsed,
    })
}

/// How many messages each topic holds: the sum of its partitions' high minus low watermarks.
/// `None` counts every topic with at least one message. Exact, unlike reading until quiet, which
/// on Kafka cannot tell "the end" from "not yet". Blocking.
pub fn messages_on(
    config: &KafkaConfig,
    topics: Option<&[&str]>,
) -> Result<Vec<(String, i64)>, BusError> {
    let consumer = tool_consumer(config, "watermarks")?;
    let timeout = Duration::from_millis(config.request_timeout_ms);
    let metadata = consumer
        .fetch_metadata(None, timeout)
        .map_err(|e| classify(&e))?;
    let mut counts = Vec::new();
    for topic in metadata.topics() {
        if topics.is_some_and(|wanted| !wanted.contains(&topic.name())) {
            continue;
        }
        let mut messages = 0;
        for partition in topic.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic.name(), partition.id(), timeout)
                .map_err(|e| classify(&e))?;
            messages += high - low;
        }
        if topics.is_some() || messages > 0 {
            counts.push((topic.name().to_string(), messages));
        }
    }
    Ok(counts)
}

/// A consumer of its own group for a measuring tool (`purpose` names group and client).
fn tool_consumer(config: &KafkaConfig, purpose: &str) -> Result<BaseConsumer<Logging>, BusError> {
    config
        .consumer(
            &format!("enrollstream-{purpose}"),
            &format!("{}-{purpose}", config.client_id),
        )
        .create_with_context(Logging)
        .map_err(|e| classify(&e))
}
