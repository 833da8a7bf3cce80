//! Publishing: an idempotent producer with `acks=all`. A batch is sent whole before any
//! acknowledgement is awaited, so one `publish` fills produce batches instead of paying a round
//! trip per message; it returns once every message is acknowledged.

use async_trait::async_trait;
use enrollstream_ports::{BusError, OutboundMessage, Publisher};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::future_producer::DeliveryFuture;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use crate::context::Logging;
use crate::errors::classify;

/// How long to back off when the local queue is full and none of our own messages is pending
/// (other publishers filled it).
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(10);

pub struct KafkaPublisher {
    producer: FutureProducer<Logging>,
}

impl KafkaPublisher {
    pub(crate) fn new(producer: FutureProducer<Logging>) -> Self {
        Self { producer }
    }

    pub(crate) fn producer(&self) -> &FutureProducer<Logging> {
        &self.producer
    }
}

pub(crate) fn kafka_headers(headers: &[enrollstream_ports::Header]) -> OwnedHeaders {
    headers.iter().fold(
        OwnedHeaders::new_with_capacity(headers.len()),
        |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value.as_str()),
            })
        },
    )
}

/// What a delivery future resolves to: the broker's answer, or cancellation if the producer went away.
type Acknowledgement = <DeliveryFuture as Future>::Output;

fn settle(delivery: Acknowledgement) -> Result<(), BusError> {
    match delivery {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, _))) => Err(classify(&error)),
        Err(_) => Err(BusError::Unavailable(
            "producer shut down before the acknowledgement".into(),
        )),
    }
}

#[async_trait]
impl Publisher for KafkaPublisher {
    async fn publish(&self, topic: &str, messages: Vec<OutboundMessage>) -> Result<(), BusError> {
        // Messages are enqueued one after another in order; librdkafka's idempotent producer keeps
        // that order per partition even across retries.
        let mut pending: VecDeque<DeliveryFuture> = VecDeque::with_capacity(messages.len());
        for message in &messages {
            let mut record = FutureRecord::to(topic)
                .key(message.key.as_str())
                .payload(message.payload.as_slice())
                .headers(kafka_headers(&message.headers));
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push_back(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        match pending.pop_front() {
                            Some(oldest) => settle(oldest.await)?,
                            None => tokio::time::sleep(QUEUE_FULL_BACKOFF).await,
                        }
                    }
                    Err((error, _)) => return Err(classify(&error)),
                }
            }
        }
        for delivery in pending {
            settle(delivery.await)?;
        }
        Ok(())
    }
}
