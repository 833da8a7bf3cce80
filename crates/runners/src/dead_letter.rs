//! The dead-letter path: a message that cannot be processed goes to `<topic>.dlq` unchanged
//! (key, headers, payload), with the reason in headers, so it can be inspected and redriven.

use chrono::{SecondsFormat, Utc};
use enrollstream_ports::{BusError, Header, InboundMessage, OutboundMessage, Publisher};

pub const REASON: &str = "dlq_reason";
pub const ERROR: &str = "dlq_error";
pub const ORIGINAL_TOPIC: &str = "dlq_original_topic";
pub const ORIGINAL_PARTITION: &str = "dlq_original_partition";
pub const ORIGINAL_OFFSET: &str = "dlq_original_offset";
pub const FAILED_AT: &str = "dlq_failed_at";
pub const CONSUMER_GROUP: &str = "dlq_consumer_group";
pub const ATTEMPTS: &str = "dlq_attempts";
/// Set on a dead letter the DLQ would not take whole: why its payload was left out. The
/// original is still on its topic at `dlq_original_offset`.
pub const PAYLOAD_DROPPED: &str = "dlq_payload_dropped";
/// How often the message was redriven out of a DLQ (the loop guard counts it). Not a `dlq_`
/// header: it travels with the message back to its topic and into the next dead letter.
pub const REDRIVES: &str = "enrollstream_redrives";
/// When the message was first dead-lettered; kept through redrives like `REDRIVES`.
pub const FIRST_FAILED_AT: &str = "enrollstream_first_failed_at";

/// Where a dead letter ended up.
#[derive(Debug, PartialEq, Eq)]
pub enum Parked {
    Whole,
    /// Without its payload (the DLQ refused it whole, e.g. too large).
    WithoutPayload,
    /// The DLQ refused even that; the reason was logged as an error and counted.
    Lost(String),
}

/// Publish dead letters to `topic`. A refusal that will never heal (`BusError::Fatal`: too
/// large, say) is not retried: the batch is tried message by message, a refused message goes
/// again without its payload, and one refused even so is reported lost (an error log and
/// `enrollstream_dead_letters_lost_total`) so the partition moves on. `Err` only for transient
/// failures, which the caller retries.
pub async fn publish_dead_letters(
    publisher: &dyn Publisher,
    topic: &str,
    messages: Vec<OutboundMessage>,
) -> Result<Vec<Parked>, BusError> {
    let n = messages.len();
    match publisher.publish(topic, messages.clone()).await {
        Ok(()) => return Ok((0..n).map(|_| Parked::Whole).collect()),
        Err(BusError::Fatal(_)) if n > 1 => {}
        Err(BusError::Fatal(why)) => {
            return Ok(vec![
                without_payload(publisher, topic, &messages[0], why).await?,
            ])
        }
        Err(e) => return Err(e),
    }
    let mut parked = Vec::with_capacity(n);
    for message in messages {
        match publisher.publish(topic, vec![message.clone()]).await {
            Ok(()) => parked.push(Parked::Whole),
            Err(BusError::Fatal(why)) => {
                parked.push(without_payload(publisher, topic, &message, why).await?)
            }
            Err(e) => return Err(e),
        }
    }
    Ok(parked)
}

async fn without_payload(
    publisher: &dyn Publisher,
    topic: &str,
    message: &OutboundMessage,
    why: String,
) -> Result<Parked, BusError> {
    let mut stub = OutboundMessage {
        key: message.key.clone(),
        headers: message.headers.clone(),
        payload: Vec::new(),
    };
    stub.headers
        .push((PAYLOAD_DROPPED.to_string(), truncate(&why, 1024)));
    match publisher.publish(topic, vec![stub]).await {
        Ok(()) => {
            tracing::warn!(%topic, key = %message.key, error = %why, "the DLQ refused a dead letter whole; parked it without its payload");
            Ok(Parked::WithoutPayload)
        }
        Err(BusError::Fatal(again)) => {
            tracing::error!(%topic, key = %message.key, error = %why, again = %again, headers = ?message.headers, "ALERT: the DLQ refused a dead letter even without its payload; it is lost from the DLQ (its origin is in these headers)");
            metrics::counter!("enrollstream_dead_letters_lost_total", "topic" => topic.to_string())
                .increment(1);
            Ok(Parked::Lost(again))
        }
        Err(e) => Err(e),
    }
}

/// Why a message was dead-lettered: a short code (also a metrics label) and the full error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub reason: String,
    pub error: String,
    /// Extra headers a role wants to add (e.g. last HTTP status of a delivery).
    pub extra: Vec<Header>,
}

impl DeadLetter {
    pub fn new(reason: impl Into<String>, error: impl ToString) -> Self {
        Self {
            reason: reason.into(),
            error: error.to_string(),
            extra: Vec::new(),
        }
    }
}

/// The DLQ copy of `message`.
pub fn dead_letter_message(
    message: &InboundMessage,
    group: &str,
    why: &DeadLetter,
) -> OutboundMessage {
    let mut headers: Vec<Header> = message
        .headers
        .iter()
        .filter(|(k, _)| !k.starts_with("dlq_"))
        .cloned()
        .collect();
    let failed_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    if message.header(FIRST_FAILED_AT).is_none() {
        headers.push((FIRST_FAILED_AT.to_string(), failed_at.clone()));
    }
    headers.extend([
        (REASON.to_string(), why.reason.clone()),
        (ERROR.to_string(), truncate(&why.error, 4096)),
        (ORIGINAL_TOPIC.to_string(), message.topic.clone()),
        (
            ORIGINAL_PARTITION.to_string(),
            message.partition.to_string(),
        ),
        (ORIGINAL_OFFSET.to_string(), message.offset.to_string()),
        (FAILED_AT.to_string(), failed_at),
        (CONSUMER_GROUP.to_string(), group.to_string()),
    ]);
    headers.extend(why.extra.iter().cloned());
    OutboundMessage {
        key: message.key.clone().unwrap_or_default(),
        headers,
        payload: message.payload.clone(),
    }
}

/// How often `message` was redriven already (0 when it never was).
pub fn redrives(message: &InboundMessage) -> u32 {
    message
        .header(REDRIVES)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The original message of a dead letter, for redrive: same key, headers and payload, minus ours,
/// with its redrive count one up. None when it cannot be redriven: it names no original topic,
/// or its payload was left out.
pub fn redrive_message(dead: &InboundMessage) -> Option<(String, OutboundMessage)> {
    if dead.header(PAYLOAD_DROPPED).is_some() {
        return None;
    }
    let topic = dead.header(ORIGINAL_TOPIC)?.to_string();
    let mut headers: Vec<Header> = dead
        .headers
        .iter()
        .filter(|(k, _)| !k.starts_with("dlq_") && k != REDRIVES)
        .cloned()
        .collect();
    headers.push((REDRIVES.to_string(), (redrives(dead) + 1).to_string()));
    Some((
        topic,
        OutboundMessage {
            key: dead.key.clone().unwrap_or_default(),
            headers,
            payload: dead.payload.clone(),
        },
    ))
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_round_trips_to_the_original() {
        let original = InboundMessage {
            topic: "enrollment-events".into(),
            partition: 2,
            offset: 41,
            key: Some("A-1".into()),
            headers: vec![("ce_id".into(), "e1".into())],
            payload: b"{}".to_vec(),
            timestamp_ms: None,
        };
        let dl = dead_letter_message(
            &original,
            "read-model-service",
            &DeadLetter::new("invalid_event", "data.x: bad"),
        );
        assert_eq!(dl.key, "A-1");
        let as_inbound = InboundMessage {
            topic: "enrollment-events.dlq".into(),
            partition: 0,
            offset: 0,
            key: Some(dl.key.clone()),
            headers: dl.headers.clone(),
            payload: dl.payload.clone(),
            timestamp_ms: None,
        };
        assert_eq!(as_inbound.header(REASON), Some("invalid_event"));
        assert_eq!(as_inbound.header(ORIGINAL_OFFSET), Some("41"));
        let (topic, back) = redrive_message(&as_inbound).unwrap();
        assert_eq!(topic, "enrollment-events");
        assert_eq!(back.headers[0], original.headers[0]);
        assert!(back.headers.contains(&(REDRIVES.into(), "1".into())));
        assert_eq!(back.payload, original.payload);
    }
}
