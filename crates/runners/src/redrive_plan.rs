//! What a redrive does with each dead letter of a DLQ topic: which ones a filter picks, which
//! ones move and which stay parked, and why. Pure: reading the topic and publishing is the
//! caller's.
//!
//! A dead letter is named by where it sits, `DLQ_TOPIC:PARTITION:OFFSET`, which never changes.
//! A redrive leaves a marker on the DLQ topic (an empty message with `dlq_redriven` naming the
//! dead letter it moved), so the topic is its own ledger: a dead letter moves at most once, and
//! a message whose copy came back `max_redrives` times (`enrollstream_redrives`) stays parked.

use chrono::{DateTime, Utc};
use enrollstream_ports::{InboundMessage, OutboundMessage};
use std::fmt;
use std::str::FromStr;

use crate::dead_letter::{self, redrive_message, redrives};
use crate::deliveries::{redrive_delivery, DLQ_TARGET};

/// Header of a redrive marker: the id of the dead letter that was moved.
pub const REDRIVEN: &str = "dlq_redriven";

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeadLetterId {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl DeadLetterId {
    pub fn of(message: &InboundMessage) -> Self {
        Self {
            topic: message.topic.clone(),
            partition: message.partition,
            offset: message.offset,
        }
    }
}

impl fmt::Display for DeadLetterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.topic, self.partition, self.offset)
    }
}

impl FromStr for DeadLetterId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a dead-letter id (DLQ_TOPIC:PARTITION:OFFSET)");
        // Topic names may not hold ':' on Kafka, but split from the right all the same.
        let mut parts = s.rsplitn(3, ':');
        let offset = parts.next().and_then(|o| o.parse().ok()).ok_or_else(bad)?;
        let partition = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let topic = parts.next().filter(|t| !t.is_empty()).ok_or_else(bad)?;
        Ok(Self {
            topic: topic.to_string(),
            partition,
            offset,
        })
    }
}

/// One dead letter as a scan of its DLQ topic found it.
pub struct Entry {
    pub id: DeadLetterId,
    pub message: InboundMessage,
    /// Markers naming it: how often this very dead letter was moved (0 or 1, unless two
    /// redrives raced).
    pub moved: usize,
}

/// Fold a DLQ topic's messages into its dead letters, markers counted against theirs.
pub fn entries(messages: Vec<InboundMessage>) -> Vec<Entry> {
    let markers: Vec<String> = messages
        .iter()
        .filter_map(|m| m.header(REDRIVEN).map(str::to_string))
        .collect();
    messages
        .into_iter()
        .filter(|m| m.header(REDRIVEN).is_none())
        .map(|message| {
            let id = DeadLetterId::of(&message);
            let name = id.to_string();
            let moved = markers.iter().filter(|m| **m == name).count();
            Entry { id, message, moved }
        })
        .collect()
}

pub use enrollstream_ports::DeadLetterFilter as Filter;

/// Whether `filter` picks `m`: every field set must match.
pub fn matches(filter: &Filter, m: &InboundMessage) -> bool {
    let failed_at = m
        .header(dead_letter::FAILED_AT)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let within = |bound: Option<DateTime<Utc>>,
                  inside: fn(&DateTime<Utc>, &DateTime<Utc>) -> bool| {
        bound.is_none_or(|b| failed_at.is_some_and(|t| inside(&t, &b)))
    };
    filter
        .reason
        .as_deref()
        .is_none_or(|r| m.header(dead_letter::REASON) == Some(r))
        && filter
            .entity_id
            .as_deref()
            .is_none_or(|e| m.key.as_deref() == Some(e))
        && within(filter.failed_since, |t, b| t >= b)
        && within(filter.failed_until, |t, b| t < b)
}

/// What a redrive does with one dead letter.
#[derive(Debug)]
pub enum Decision {
    /// Publish this message to this topic, then the marker.
    Move {
        topic: String,
        message: OutboundMessage,
    },
    Skip(String),
}

/// The decision for `entry`. A delivery dead letter (it names its target) goes back routed to
/// that one target only: the others delivered it already, and Salesforce would not dedupe it.
pub fn decide(entry: &Entry, max_redrives: u32) -> Decision {
    let m = &entry.message;
    if entry.moved > 0 {
        return Decision::Skip("already redriven".into());
    }
    let count = redrives(m);
    if count >= max_redrives {
        return Decision::Skip(format!(
            "loop guard: redriven {count} time(s) already ([dlq] max_redrives = {max_redrives})"
        ));
    }
    let moved = if m.header(DLQ_TARGET).is_some() {
        redrive_delivery(m)
    } else {
        redrive_message(m)
    };
    match moved {
        Some((topic, message)) => Decision::Move { topic, message },
        None => Decision::Skip(match m.header(dead_letter::PAYLOAD_DROPPED) {
            Some(dropped) => format!(
                "its payload was left out ({dropped}); the original is at {} partition {} offset {}",
                m.header(dead_letter::ORIGINAL_TOPIC).unwrap_or("?"),
                m.header(dead_letter::ORIGINAL_PARTITION).unwrap_or("?"),
                m.header(dead_letter::ORIGINAL_OFFSET).unwrap_or("?")
            ),
            None => format!("it has no {} header", dead_letter::ORIGINAL_TOPIC),
        }),
    }
}

/// The marker that records `id` as moved; same key, so it lands after the dead letter.
pub fn marker(entry: &Entry) -> OutboundMessage {
    OutboundMessage {
        key: entry.message.key.clone().unwrap_or_default(),
        headers: vec![(REDRIVEN.to_string(), entry.id.to_string())],
        payload: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::{dead_letter_message, DeadLetter, REDRIVES};

    fn dead(offset: i64, redrives: u32) -> InboundMessage {
        let original = InboundMessage {
            topic: "enrollment-events".into(),
            partition: 0,
            offset: 3,
            key: Some("A-1".into()),
            headers: vec![(REDRIVES.into(), redrives.to_string())],
            payload: b"{}".to_vec(),
            timestamp_ms: None,
        };
        let dl = dead_letter_message(
            &original,
            "read-model-service",
            &DeadLetter::new("invalid_transition", "x"),
        );
        InboundMessage {
            topic: "enrollment-events.dlq".into(),
            partition: 0,
            offset,
            key: Some(dl.key),
            headers: dl.headers,
            payload: dl.payload,
            timestamp_ms: None,
        }
    }

    #[test]
    fn ids_round_trip() {
        let id: DeadLetterId = "enrollment-events.dlq:2:41".parse().unwrap();
        assert_eq!(id.partition, 2);
        assert_eq!(id.offset, 41);
        assert_eq!(id.to_string(), "enrollment-events.dlq:2:41");
        assert!("enrollment-events.dlq:x:1".parse::<DeadLetterId>().is_err());
        assert!(":0:1".parse::<DeadLetterId>().is_err());
    }

    #[test]
    fn a_marked_dead_letter_does_not_move_again() {
        let first = dead(0, 0);
        let mut marker_msg = first.clone();
        let m = marker(&Entry {
            id: DeadLetterId::of(&first),
            message: first.clone(),
            moved: 0,
        });
        marker_msg.offset = 1;
        marker_msg.headers = m.headers;
        let all = entries(vec![first, marker_msg, dead(2, 0)]);
        assert_eq!(all.len(), 2);
        assert!(matches!(decide(&all[0], 3), Decision::Skip(why) if why == "already redriven"));
        match decide(&all[1], 3) {
            Decision::Move { topic, message } => {
                assert_eq!(topic, "enrollment-events");
                assert!(message.headers.contains(&(REDRIVES.into(), "1".into())));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_loop_guard_parks_a_message_redriven_max_times() {
        let entry = |n| Entry {
            id: DeadLetterId::of(&dead(0, n)),
            message: dead(0, n),
            moved: 0,
        };
        assert!(matches!(decide(&entry(2), 3), Decision::Move { .. }));
        assert!(
            matches!(decide(&entry(3), 3), Decision::Skip(why) if why.starts_with("loop guard"))
        );
    }

    #[test]
    fn filters_match_every_field_set() {
        let m = dead(0, 0);
        assert!(matches(&Filter::default(), &m));
        let reason = |r: &str| Filter {
            reason: Some(r.into()),
            ..Filter::default()
        };
        assert!(matches(&reason("invalid_transition"), &m));
        assert!(!matches(&reason("invalid_event"), &m));
        let entity = |e: &str| Filter {
            entity_id: Some(e.into()),
            ..Filter::default()
        };
        assert!(matches(&entity("A-1"), &m));
        assert!(!matches(&entity("A-2"), &m));
        let since = |t: &str| Filter {
            failed_since: Some(t.parse().unwrap()),
            ..Filter::default()
        };
        assert!(matches(&since("2000-01-01T00:00:00Z"), &m));
        assert!(!matches(&since("2999-01-01T00:00:00Z"), &m));
        let until = Filter {
            failed_until: Some("2000-01-01T00:00:00Z".parse().unwrap()),
            ..Filter::default()
        };
        assert!(!matches(&until, &m));
    }
}
