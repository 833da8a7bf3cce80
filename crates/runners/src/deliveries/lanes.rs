//! Per-key lanes: one message of a key is under way at a time and the rest of that key waits in
//! order behind it, while other keys go ahead in their own lanes. A key whose message is being
//! retried holds back only its own later messages.

use enrollstream_ports::InboundMessage;
use std::collections::{HashMap, VecDeque};

/// A key within its partition: the unit of ordering.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LaneKey {
    pub topic: String,
    pub partition: i32,
    pub key: String,
}

impl LaneKey {
    pub fn of(message: &InboundMessage) -> Self {
        Self {
            topic: message.topic.clone(),
            partition: message.partition,
            key: message.key.clone().unwrap_or_default(),
        }
    }
}

#[derive(Debug, Default)]
pub struct Lanes {
    /// Busy lanes, each with the messages waiting behind the one under way.
    busy: HashMap<LaneKey, VecDeque<InboundMessage>>,
}

impl Lanes {
    /// Queue `message`; returns it back if its lane was idle and it should start now.
    pub fn offer(&mut self, message: InboundMessage) -> Option<InboundMessage> {
        let lane = LaneKey::of(&message);
        match self.busy.get_mut(&lane) {
            Some(waiting) => {
                waiting.push_back(message);
                None
            }
            None => {
                self.busy.insert(lane, VecDeque::new());
                Some(message)
            }
        }
    }

    /// The message under way in `lane` finished: the next one of the lane, if any.
    pub fn next(&mut self, lane: &LaneKey) -> Option<InboundMessage> {
        let waiting = self.busy.get_mut(lane)?;
        let next = waiting.pop_front();
        if next.is_none() {
            self.busy.remove(lane);
        }
        next
    }

    /// Forget every lane of a partition (revoked or rewound).
    pub fn drop_partition(&mut self, topic: &str, partition: i32) {
        self.busy
            .retain(|lane, _| !(lane.topic == topic && lane.partition == partition));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(key: &str, offset: i64) -> InboundMessage {
        InboundMessage {
            topic: "t".into(),
            partition: 0,
            offset,
            key: Some(key.into()),
            headers: vec![],
            payload: vec![],
            timestamp_ms: None,
        }
    }

    #[test]
    fn a_key_waits_behind_itself_only() {
        let mut lanes = Lanes::default();
        assert_eq!(lanes.offer(message("a", 0)).map(|m| m.offset), Some(0));
        assert!(lanes.offer(message("a", 1)).is_none());
        assert_eq!(lanes.offer(message("b", 2)).map(|m| m.offset), Some(2));
        assert!(lanes.offer(message("a", 3)).is_none());
        let a = LaneKey::of(&message("a", 0));
        assert_eq!(lanes.next(&a).map(|m| m.offset), Some(1));
        assert_eq!(lanes.next(&a).map(|m| m.offset), Some(3));
        assert_eq!(lanes.next(&a), None);
        // An idle lane starts again at once.
        assert!(lanes.offer(message("a", 4)).is_some());
        // "b" is still busy until its partition is dropped.
        assert!(lanes.offer(message("b", 5)).is_none());
        lanes.drop_partition("t", 0);
        assert!(lanes.offer(message("b", 6)).is_some());
    }
}
