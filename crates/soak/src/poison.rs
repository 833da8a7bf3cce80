//! Poison: messages published straight to the event topics, past the API's checks, that the
//! projector must dead-letter with the right reason while its partition moves on: undecodable
//! (not JSON), oversize (above `limits.max_event_bytes`) and invalid transitions (a signature
//! for an application never started). Each carries a `soak_poison` header to be found by.

use std::collections::HashMap;
use std::time::Instant;

use chrono::Utc;
use enrollstream_domain::events::{
    Applicant, ApplicationEvent, ApplicationStarted, SignatureReceived,
};
use enrollstream_domain::{CloudEvent, DomainEvent};
use enrollstream_kafka::KafkaBus;
use enrollstream_ports::{codec, EventBus, OutboundMessage};

use crate::accounting::Check;
use crate::bus;

pub const HEADER: &str = "soak_poison";
const PROJECTOR_GROUP: &str = "read-model-service";
const EVENT_TOPICS: [&str; 2] = ["enrollment-events", "quote-events"];

/// One poison message published (durable on the broker).
pub struct Sent {
    pub tag: String,
    pub reason: &'static str,
}

/// Publishes poison number `n` (the kind goes round); None if the broker did not take it
/// (it may be restarting): the caller tries again later.
pub async fn publish(bus: &KafkaBus, n: u64) -> Option<Sent> {
    let tag = format!("poison-{n}");
    let (topic, reason, mut message) = match n % 3 {
        0 => (
            EVENT_TOPICS[(n / 3 % 2) as usize],
            "undecodable",
            undecodable(&tag),
        ),
        1 => ("enrollment-events", "invalid_event", oversize(&tag)),
        _ => (
            "enrollment-events",
            "invalid_transition",
            invalid_transition(&tag),
        ),
    };
    message.headers.push((HEADER.into(), tag.clone()));
    match bus.publisher().publish(topic, vec![message]).await {
        Ok(()) => Some(Sent { tag, reason }),
        Err(e) => {
            println!("soak: poison {tag} not published yet ({e})");
            None
        }
    }
}

/// Well-formed headers, a value that is not JSON.
fn undecodable(tag: &str) -> OutboundMessage {
    let mut message = codec::encode(&started(tag));
    message.payload = b"\xff\xfe{not json at all".to_vec();
    message
}

/// A valid start whose data carries 20 unknown fields of 4,000 characters: every field within
/// its own bound, the event above the 64 KiB `max_event_bytes`.
fn oversize(tag: &str) -> OutboundMessage {
    let mut event = started(tag);
    if let Some(data) = event.data.as_object_mut() {
        for i in 0..20 {
            data.insert(format!("padding_{i}"), "x".repeat(4000).into());
        }
    }
    codec::encode(&event)
}

/// A signature for an application that was never started.
fn invalid_transition(tag: &str) -> OutboundMessage {
    let event = DomainEvent::Application(ApplicationEvent::SignatureReceived(SignatureReceived {
        application_id: tag.to_string(),
        signed_by: "Nobody".into(),
        signed_at: None,
    }));
    codec::encode(&envelope(&event))
}

fn started(tag: &str) -> CloudEvent {
    envelope(&DomainEvent::Application(ApplicationEvent::Started(
        ApplicationStarted {
            application_id: tag.to_string(),
            applicant: Applicant {
                name: "Poison".into(),
                email: "poison@example.com".into(),
            },
            product: "dental-basic".into(),
            quote_id: None,
        },
    )))
}

fn envelope(event: &DomainEvent) -> CloudEvent {
    CloudEvent::with_id(
        uuid::Uuid::new_v4().to_string(),
        event,
        "/soak/poison",
        Utc::now(),
        None,
    )
}

/// Reads the dead-letter topics of the event topics and checks that every poison message is
/// there, dead-lettered by the projector with its reason, and that the projector committed
/// past it (its partition moved on).
pub async fn checks(bus: &KafkaBus, sent: &[Sent], until: Instant) -> anyhow::Result<Vec<Check>> {
    let topics: Vec<String> = EVENT_TOPICS.iter().map(|t| format!("{t}.dlq")).collect();
    let dead = bus::read_all(bus, &topics, until).await?;
    // tag -> (reason, original topic, partition, offset) of the projector's dead letter.
    let mut found: HashMap<String, (String, String, i32, i64)> = HashMap::new();
    for m in &dead {
        let (Some(tag), Some(PROJECTOR_GROUP)) = (m.header(HEADER), m.header("dlq_consumer_group"))
        else {
            continue;
        };
        let field = |name: &str| m.header(name).unwrap_or_default().to_string();
        found.insert(
            tag.to_string(),
            (
                field("dlq_reason"),
                field("dlq_original_topic"),
                field("dlq_original_partition").parse().unwrap_or(-1),
                field("dlq_original_offset").parse().unwrap_or(i64::MAX),
            ),
        );
    }
    let mut in_dlq = 0;
    let mut wrong_reason = Vec::new();
    let mut moved_on = 0;
    for s in sent {
        let Some((reason, topic, partition, offset)) = found.get(&s.tag) else {
            continue;
        };
        in_dlq += 1;
        if reason != s.reason {
            wrong_reason.push(format!("{}: {reason} (expected {})", s.tag, s.reason));
        }
        if bus::committed_at(bus, PROJECTOR_GROUP, topic, *partition).await? > *offset {
            moved_on += 1;
        }
    }
    if !wrong_reason.is_empty() {
        println!("poison with the wrong dead-letter reason: {wrong_reason:?}");
    }
    let n = sent.len();
    Ok(vec![
        Check::new(
            "poison messages published to the event topics",
            "> 0",
            n,
            n > 0,
        ),
        Check::equal("poison dead-lettered by the projector", n as u64, in_dlq),
        Check::equal("poison with the wrong reason", 0, wrong_reason.len() as u64),
        Check::equal("poison the projector committed past", n as u64, moved_on),
    ])
}
