//! Wakes the subscriptions of a topic when the writer has committed new messages to it, so
//! that consumers wait on a signal instead of polling the log on a timer.
//!
//! One `watch` channel per topic: a receiver remembers which version it has seen, so a
//! publish that lands between a consumer's read and its wait is not lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

#[derive(Clone, Default)]
pub(super) struct Wakeups {
    topics: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
}

impl Wakeups {
    pub(super) fn watch(&self, topic: &str) -> watch::Receiver<u64> {
        let mut topics = self.topics.lock().expect("wakeups lock");
        topics
            .entry(topic.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Called after the commit that made messages of `topic` visible to readers.
    pub(super) fn appended(&self, topic: &str) {
        let topics = self.topics.lock().expect("wakeups lock");
        if let Some(sender) = topics.get(topic) {
            sender.send_modify(|version| *version = version.wrapping_add(1));
        }
    }
}
