//! Redrive of a delivery dead letter: the original message goes back to its topic routed to the
//! one target that failed it, so the other targets' runners skip it by its headers. It carries
//! its original id, so the target still sees the same idempotency key.

use enrollstream_domain::notification::EXT_TARGETS;
use enrollstream_ports::{InboundMessage, OutboundMessage};

use super::worker::DLQ_TARGET;
use crate::dead_letter::redrive_message;

/// The topic and message to publish to redeliver `dead` to its target; `None` if it is not a
/// delivery dead letter.
pub fn redrive_delivery(dead: &InboundMessage) -> Option<(String, OutboundMessage)> {
    let target = dead.header(DLQ_TARGET)?.to_string();
    let (topic, mut message) = redrive_message(dead)?;
    let routing = format!("ce_{EXT_TARGETS}");
    message
        .headers
        .retain(|(k, _)| !k.eq_ignore_ascii_case(&routing));
    message.headers.push((routing, target));
    Some((topic, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::{dead_letter_message, DeadLetter};

    #[test]
    fn routes_the_redrive_to_the_failed_target_only() {
        let original = InboundMessage {
            topic: "enrollment-notifications".into(),
            partition: 1,
            offset: 7,
            key: Some("A-1".into()),
            headers: vec![
                ("ce_id".into(), "n-1".into()),
                ("ce_routingtargets".into(), "logic_apps,salesforce".into()),
            ],
            payload: b"{}".to_vec(),
            timestamp_ms: None,
        };
        let mut why = DeadLetter::new("rejected", "HTTP 400");
        why.extra.push((DLQ_TARGET.into(), "salesforce".into()));
        let dead = dead_letter_message(&original, "delivery-salesforce", &why);
        let dead = InboundMessage {
            topic: "enrollment-notifications.salesforce.dlq".into(),
            key: Some(dead.key),
            headers: dead.headers,
            payload: dead.payload,
            ..original.clone()
        };
        let (topic, message) = redrive_delivery(&dead).unwrap();
        assert_eq!(topic, "enrollment-notifications");
        assert_eq!(message.key, "A-1");
        assert_eq!(message.payload, original.payload);
        assert!(message.headers.contains(&("ce_id".into(), "n-1".into())));
        assert!(message
            .headers
            .contains(&("ce_routingtargets".into(), "salesforce".into())));
        assert!(message.headers.iter().all(|(k, _)| !k.starts_with("dlq_")));
        assert_eq!(
            message
                .headers
                .iter()
                .filter(|(k, _)| k == "ce_routingtargets")
                .count(),
            1
        );
    }
}
