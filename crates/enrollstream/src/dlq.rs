//! Operations on what was parked: dead letters (`dlq list`, `dlq inspect`, `dlq redrive`) and
//! outbox messages the relay kept in the store (`outbox parked`).

use enrollstream_ports::{EventBus, InboundMessage, Publisher, StartFrom, SubscriptionSpec};
use enrollstream_runners::dead_letter;
use enrollstream_runners::deliveries::DLQ_TARGET;
use enrollstream_runners::redrive_plan::{self, DeadLetterId, Decision, Entry, Filter};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::app::open_adapters;
use crate::cli::{DlqCommand, DlqSelect};
use crate::config::Config;

/// A payload as JSON when it is, else as text.
fn payload_json(payload: &[u8]) -> serde_json::Value {
    serde_json::from_slice(payload).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(payload).into_owned())
    })
}

pub async fn dlq(config: Config, command: DlqCommand) -> anyhow::Result<()> {
    let adapters = open_adapters(&config).await?;
    let bus = adapters.bus.as_ref();
    match command {
        DlqCommand::List { select, limit } => {
            let topic = dlq_topic(&config, &select)?;
            let filter = filter(&select);
            let all = redrive_plan::entries(scan(bus, &topic).await?);
            let mut listed = 0;
            for entry in all
                .iter()
                .filter(|e| filter.matches(&e.message))
                .take(limit)
            {
                println!("{}", view(entry, false));
                listed += 1;
            }
            eprintln!("listed {listed} dead letter(s) of {topic}");
        }
        DlqCommand::Inspect { id } => {
            let id: DeadLetterId = id.parse().map_err(anyhow::Error::msg)?;
            let all = redrive_plan::entries(scan(bus, &id.topic).await?);
            let entry = all
                .iter()
                .find(|e| e.id == id)
                .ok_or_else(|| anyhow::anyhow!("no dead letter {id}"))?;
            println!("{:#}", view(entry, true));
        }
        DlqCommand::Redrive {
            select,
            ids,
            dry_run,
        } => {
            let wanted = ids
                .iter()
                .map(|id| id.parse::<DeadLetterId>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(anyhow::Error::msg)?;
            let topics: BTreeSet<String> = if wanted.is_empty() {
                BTreeSet::from([dlq_topic(&config, &select)?])
            } else {
                wanted.iter().map(|id| id.topic.clone()).collect()
            };
            let redrive = Redrive {
                publisher: bus.publisher(),
                max_redrives: config.dlq.max_redrives,
                dry_run,
            };
            for topic in topics {
                let all = redrive_plan::entries(scan(bus, &topic).await?);
                let of_topic: Vec<&DeadLetterId> =
                    wanted.iter().filter(|id| id.topic == topic).collect();
                for id in of_topic
                    .iter()
                    .filter(|id| all.iter().all(|e| e.id != ***id))
                {
                    println!(
                        "{}",
                        json!({"id": id.to_string(), "action": "skipped", "reason": "no such dead letter"})
                    );
                }
                let filter = filter(&select);
                let picked = all.iter().filter(|e| {
                    if of_topic.is_empty() {
                        filter.matches(&e.message)
                    } else {
                        of_topic.contains(&&e.id)
                    }
                });
                redrive.run(&topic, picked).await?;
            }
        }
    }
    Ok(())
}

/// The DLQ topic the operator named: `<topic>.dlq`, or `<topic>.<target>.dlq` for deliveries.
fn dlq_topic(config: &Config, select: &DlqSelect) -> anyhow::Result<String> {
    let topic = select
        .topic
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--topic is required (or --id, for a redrive)"))?;
    Ok(match &select.target {
        Some(target) => config.topics.dlq(&format!("{topic}.{target}")),
        None => config.topics.dlq(topic),
    })
}

fn filter(select: &DlqSelect) -> Filter {
    Filter {
        reason: select.reason.clone(),
        entity_id: select.entity_id.clone(),
        failed_since: select.since,
        failed_until: select.until,
    }
}

struct Redrive {
    publisher: Arc<dyn Publisher>,
    max_redrives: u32,
    dry_run: bool,
}

impl Redrive {
    /// Move what may move (or say so, in a dry run), one JSON line per dead letter. The marker
    /// is written after the message: a crash between the two moves it again on the next run
    /// (at least once, like every other path), never loses it.
    async fn run<'a>(
        &self,
        topic: &str,
        picked: impl Iterator<Item = &'a Entry>,
    ) -> anyhow::Result<()> {
        let (mut moved, mut skipped) = (0, 0);
        for entry in picked {
            let id = entry.id.to_string();
            match redrive_plan::decide(entry, self.max_redrives) {
                Decision::Move { topic: to, message } => {
                    if !self.dry_run {
                        self.publisher.publish(&to, vec![message]).await?;
                        self.publisher
                            .publish(topic, vec![redrive_plan::marker(entry)])
                            .await?;
                    }
                    let action = if self.dry_run { "would_move" } else { "moved" };
                    println!("{}", json!({"id": id, "action": action, "to": to}));
                    moved += 1;
                }
                Decision::Skip(reason) => {
                    println!(
                        "{}",
                        json!({"id": id, "action": "skipped", "reason": reason})
                    );
                    skipped += 1;
                }
            }
        }
        if self.dry_run {
            eprintln!("dry run: would redrive {moved} dead letter(s) of {topic}, skip {skipped}");
        } else {
            eprintln!("redrove {moved} dead letter(s) of {topic}, skipped {skipped}");
        }
        Ok(())
    }
}

/// Every message of a DLQ topic, read from its beginning by a group of its own that commits
/// nothing, until the topic has been quiet for a moment.
async fn scan(bus: &dyn EventBus, topic: &str) -> anyhow::Result<Vec<InboundMessage>> {
    let mut sub = bus
        .subscribe(SubscriptionSpec {
            group: format!("dlq-inspect-{}", enrollstream_domain::ids::new_id()),
            topics: vec![topic.to_string()],
            start: StartFrom::Earliest,
            client_id: "dlq-inspect".into(),
        })
        .await?;
    let mut read = Vec::new();
    // Wait for an assignment first (a Kafka group join takes seconds), then read until quiet.
    let joined_by = tokio::time::Instant::now() + Duration::from_secs(60);
    while sub.assignment().is_empty() && tokio::time::Instant::now() < joined_by {
        read.extend(sub.poll(100, Duration::from_millis(500)).await?);
    }
    loop {
        let batch = sub.poll(100, Duration::from_secs(2)).await?;
        if batch.is_empty() {
            break;
        }
        read.extend(batch);
    }
    sub.close().await?;
    Ok(read)
}

/// A dead letter as an operator reads it; `whole` adds payload and headers.
fn view(entry: &Entry, whole: bool) -> serde_json::Value {
    let m = &entry.message;
    let failed_at = m.header(dead_letter::FAILED_AT);
    let mut line = json!({
        "id": entry.id.to_string(),
        "topic": entry.id.topic,
        "original_topic": m.header(dead_letter::ORIGINAL_TOPIC),
        "original_partition": m.header(dead_letter::ORIGINAL_PARTITION),
        "original_offset": m.header(dead_letter::ORIGINAL_OFFSET),
        "target": m.header(DLQ_TARGET),
        "consumer_group": m.header(dead_letter::CONSUMER_GROUP),
        "reason": m.header(dead_letter::REASON),
        "error": m.header(dead_letter::ERROR),
        "attempts": m.header(dead_letter::ATTEMPTS).and_then(|a| a.parse::<u64>().ok()),
        "first_failure": m.header(dead_letter::FIRST_FAILED_AT).or(failed_at),
        "last_failure": failed_at,
        "redrives": dead_letter::redrives(m),
        "redriven": entry.moved > 0,
        "event_id": m.header("ce_id"),
        "entity_id": m.key,
        "payload": payload_json(&m.payload),
    });
    if whole {
        line["headers"] = m
            .headers
            .iter()
            .filter(|(k, _)| !k.starts_with("dlq_"))
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    line
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
