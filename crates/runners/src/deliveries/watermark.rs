//! The commit watermark per partition: messages finish out of order (lanes run in parallel, a
//! retried key waits while others flow on), but the committed offset never passes a message
//! that is not finished, so a crash redelivers everything unfinished and loses nothing.

use enrollstream_ports::{CommitPosition, InboundMessage};
use std::collections::{BTreeSet, HashMap};

pub type TopicPartition = (String, i32);

#[derive(Debug, Default)]
struct Partition {
    unfinished: BTreeSet<i64>,
    /// Highest offset seen + 1.
    next: i64,
    /// The last position committed (or being committed).
    committed: Option<i64>,
}

impl Partition {
    /// Where a restart would have to begin: the oldest unfinished message, or past the newest.
    fn position(&self) -> i64 {
        self.unfinished.first().copied().unwrap_or(self.next)
    }
}

#[derive(Debug, Default)]
pub struct Watermarks {
    partitions: HashMap<TopicPartition, Partition>,
    unfinished: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Tracked {
    New,
    /// The bus went back to an offset already seen (the partition was reassigned and restarted
    /// from the committed offset): what is held for the partition is stale.
    Rewound,
}

impl Watermarks {
    /// Start tracking `message` as unfinished.
    pub fn track(&mut self, message: &InboundMessage) -> Tracked {
        let p = self
            .partitions
            .entry((message.topic.clone(), message.partition))
            .or_default();
        if p.next > 0 && message.offset < p.next {
            return Tracked::Rewound;
        }
        p.next = message.offset + 1;
        if p.unfinished.insert(message.offset) {
            self.unfinished += 1;
        }
        Tracked::New
    }

    /// Mark a message finished; false if it was not tracked (its partition was dropped).
    pub fn finish(&mut self, tp: &TopicPartition, offset: i64) -> bool {
        let Some(p) = self.partitions.get_mut(tp) else {
            return false;
        };
        let removed = p.unfinished.remove(&offset);
        if removed {
            self.unfinished -= 1;
        }
        removed
    }

    /// Forget a partition (revoked, or rewound by the bus).
    pub fn drop_partition(&mut self, tp: &TopicPartition) {
        if let Some(p) = self.partitions.remove(tp) {
            self.unfinished -= p.unfinished.len();
        }
    }

    pub fn partitions(&self) -> Vec<TopicPartition> {
        self.partitions.keys().cloned().collect()
    }

    pub fn unfinished(&self) -> usize {
        self.unfinished
    }

    /// Positions that moved since the last commit.
    pub fn to_commit(&self) -> Vec<CommitPosition> {
        let mut out: Vec<CommitPosition> = self
            .partitions
            .iter()
            .filter(|(_, p)| p.committed != Some(p.position()))
            .map(|((topic, partition), p)| CommitPosition {
                topic: topic.clone(),
                partition: *partition,
                next_offset: p.position(),
            })
            .collect();
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        out
    }

    pub fn committed(&mut self, positions: &[CommitPosition]) {
        for c in positions {
            if let Some(p) = self.partitions.get_mut(&(c.topic.clone(), c.partition)) {
                p.committed = Some(c.next_offset);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(partition: i32, offset: i64) -> InboundMessage {
        InboundMessage {
            topic: "t".into(),
            partition,
            offset,
            key: None,
            headers: vec![],
            payload: vec![],
            timestamp_ms: None,
        }
    }

    fn positions(w: &Watermarks) -> Vec<(i32, i64)> {
        w.to_commit()
            .into_iter()
            .map(|c| (c.partition, c.next_offset))
            .collect()
    }

    #[test]
    fn never_passes_an_unfinished_message() {
        let mut w = Watermarks::default();
        for o in 10..15 {
            assert_eq!(w.track(&message(0, o)), Tracked::New);
        }
        assert_eq!(positions(&w), vec![(0, 10)]);
        let tp = ("t".to_string(), 0);
        // 11..14 finish, 10 is still being retried.
        for o in 11..15 {
            assert!(w.finish(&tp, o));
        }
        assert_eq!(positions(&w), vec![(0, 10)]);
        assert_eq!(w.unfinished(), 1);
        w.committed(&w.to_commit());
        assert!(w.to_commit().is_empty());
        assert!(w.finish(&tp, 10));
        assert_eq!(positions(&w), vec![(0, 15)]);
        assert_eq!(w.unfinished(), 0);
    }

    #[test]
    fn partitions_are_independent_and_rewinds_are_seen() {
        let mut w = Watermarks::default();
        w.track(&message(0, 0));
        w.track(&message(1, 0));
        w.track(&message(1, 1));
        w.finish(&("t".into(), 1), 0);
        w.finish(&("t".into(), 1), 1);
        assert_eq!(positions(&w), vec![(0, 0), (1, 2)]);
        assert_eq!(w.track(&message(1, 1)), Tracked::Rewound);
        w.drop_partition(&("t".into(), 0));
        assert_eq!(w.unfinished(), 0);
        assert!(!w.finish(&("t".into(), 0), 0));
    }
}
