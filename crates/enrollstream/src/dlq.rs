//! Operations on what was parked: dead letters (`dlq list`, `dlq redrive`) and outbox messages
//! the relay kept in the store (`outbox parked`).

use enrollstream_ports::{StartFrom, SubscriptionSpec};
use enrollstream_runners::dead_letter;
use std::time::Duration;

use crate::app::open_adapters;
use crate::cli::DlqCommand;
use crate::config::Config;

/// A payload as JSON when it is, else as text.
fn payload_json(payload: &[u8]) -> serde_json::Value {
    serde_json::from_slice(payload).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(payload).into_owned())
    })
}

/// Read a dead-letter topic from its beginning without committing (inspection) or with the
/// redrive group (redrive), until it has been quiet for a moment.
pub async fn dlq(config: Config, command: DlqCommand) -> anyhow::Result<()> {
    let adapters = open_adapters(&config).await?;
    let bus = adapters.bus.clone();
    let (topic, redrive) = match &command {
        DlqCommand::List { topic, .. } => (topic.clone(), false),
        DlqCommand::Redrive { topic } => (topic.clone(), true),
    };
    let dlq_topic = config.topics.dlq(&topic);
    let spec = if redrive {
        SubscriptionSpec {
            group: "dlq-redrive".into(),
            topics: vec![dlq_topic.clone()],
            start: StartFrom::Committed,
            client_id: "dlq-redrive".into(),
        }
    } else {
        SubscriptionSpec {
            group: format!("dlq-inspect-{}", enrollstream_domain::ids::new_id()),
            topics: vec![dlq_topic.clone()],
            start: StartFrom::Earliest,
            client_id: "dlq-inspect".into(),
        }
    };
    let limit = match command {
        DlqCommand::List { limit, .. } => limit,
        DlqCommand::Redrive { .. } => usize::MAX,
    };
    let mut sub = bus.subscribe(spec).await?;
    let publisher = bus.publisher();
    let mut seen = 0usize;
    let mut tally = Tally::default();
    // Wait for an assignment first (a Kafka group join takes seconds), then read until quiet.
    let joined_by = tokio::time::Instant::now() + Duration::from_secs(60);
    while sub.assignment().is_empty() && tokio::time::Instant::now() < joined_by {
        let batch = sub.poll(100, Duration::from_millis(500)).await?;
        seen += handle_dead_letters(
            &batch,
            redrive,
            limit - seen.min(limit),
            publisher.as_ref(),
            &mut tally,
        )
        .await?;
        if redrive && !batch.is_empty() {
            sub.commit(&enrollstream_runners::consumer::commit_positions(&batch))
                .await?;
        }
    }
    while seen < limit {
        let batch = sub.poll(100, Duration::from_secs(2)).await?;
        if batch.is_empty() {
            break;
        }
        seen += handle_dead_letters(
            &batch,
            redrive,
            limit - seen,
            publisher.as_ref(),
            &mut tally,
        )
        .await?;
        if redrive {
            sub.commit(&enrollstream_runners::consumer::commit_positions(&batch))
                .await?;
        }
    }
    sub.close().await?;
    eprintln!(
        "{} {seen} dead letter(s) of {dlq_topic}",
        if redrive { "redrove" } else { "listed" }
    );
    if tally.skipped > 0 {
        eprintln!(
            "skipped {} dead letter(s) that cannot be redriven; see them with `enrollstream dlq list --topic {topic}`",
            tally.skipped
        );
    }
    Ok(())
}

/// Dead letters skipped by a redrive (they name no original topic).
#[derive(Default)]
struct Tally {
    skipped: usize,
}

async fn handle_dead_letters(
    batch: &[enrollstream_ports::InboundMessage],
    redrive: bool,
    room: usize,
    publisher: &dyn enrollstream_ports::Publisher,
    tally: &mut Tally,
) -> anyhow::Result<usize> {
    let mut n = 0;
    for m in batch.iter().take(room) {
        if redrive {
            // A dead letter that does not say where it came from (written by hand, or by an
            // older tool) is reported and passed over: it must not stop the redrive of the
            // others, forever. It stays on the DLQ topic for `dlq list`.
            let Some((topic, original)) = dead_letter::redrive_message(m) else {
                let why = match m.header(dead_letter::PAYLOAD_DROPPED) {
                    Some(dropped) => format!("its payload was left out ({dropped}); the original is at {} partition {} offset {}", m.header(dead_letter::ORIGINAL_TOPIC).unwrap_or("?"), m.header(dead_letter::ORIGINAL_PARTITION).unwrap_or("?"), m.header(dead_letter::ORIGINAL_OFFSET).unwrap_or("?")),
                    None => format!("it has no {} header", dead_letter::ORIGINAL_TOPIC),
                };
                eprintln!(
                    "skipped the dead letter at partition {} offset {}: {why}",
                    m.partition, m.offset
                );
                tally.skipped += 1;
                continue;
            };
            publisher.publish(&topic, vec![original]).await?;
        } else {
            let payload = payload_json(&m.payload);
            let line = serde_json::json!({
                "dlq_offset": m.offset,
                "dlq_partition": m.partition,
                "key": m.key,
                "reason": m.header(dead_letter::REASON),
                "error": m.header(dead_letter::ERROR),
                "original_topic": m.header(dead_letter::ORIGINAL_TOPIC),
                "original_partition": m.header(dead_letter::ORIGINAL_PARTITION),
                "original_offset": m.header(dead_letter::ORIGINAL_OFFSET),
                "failed_at": m.header(dead_letter::FAILED_AT),
                "consumer_group": m.header(dead_letter::CONSUMER_GROUP),
                "headers": m.headers.iter().filter(|(k, _)| !k.starts_with("dlq_")).collect::<Vec<_>>(),
                "payload": payload,
            });
            println!("{line}");
        }
        n += 1;
    }
    Ok(n)
}

/// `enrollstream outbox parked`: what the relay could not publish, as JSON lines.
pub async fn parked(config: Config, limit: usize) -> anyhow::Result<()> {
    let adapters = open_adapters(&config).await?;
    let parked = adapters.store.parked_outbox(limit).await?;
    for (m, reason) in &parked {
        let payload = payload_json(&m.message.payload);
        let line = serde_json::json!({
            "id": m.id,
            "topic": m.topic,
            "key": m.message.key,
            "event_id": m.event_id,
            "created_at": m.created_at,
            "reason": reason,
            "bytes": enrollstream_runners::relay::message_size(&m.message),
            "headers": m.message.headers,
            "payload": payload,
        });
        println!("{line}");
    }
    eprintln!("{} parked outbox message(s)", parked.len());
    Ok(())
}
