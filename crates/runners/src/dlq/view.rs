//! A dead letter as an operator reads it (the CLI's JSON lines, the admin API's bodies).

use serde_json::json;

use crate::dead_letter;
use crate::deliveries::DLQ_TARGET;
use crate::redrive_plan::Entry;

/// A payload as JSON when it is, else as text.
pub fn payload_json(payload: &[u8]) -> serde_json::Value {
    serde_json::from_slice(payload).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(payload).into_owned())
    })
}

/// `whole` adds the message's own headers (the `dlq_` ones are the fields above them).
pub fn view(entry: &Entry, whole: bool) -> serde_json::Value {
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
