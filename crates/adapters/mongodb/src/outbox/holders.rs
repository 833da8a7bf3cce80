//! Which entry holds each message the relay was handed, so marking it published needs no read.
//!
//! `mark_published` must know the entry of each message and every message the entry still
//! lists (to clear the entry when none is left). The read of pending messages just saw both,
//! so it leaves them here and the mark takes them back: one update per entry, where a find
//! first would cost a query per message with [`crate::Lookups::Point`] and one per batch
//! otherwise. What the read saw is a superset of what the entry lists at the mark (only
//! relays change an entry after its insert, and they only take messages out), which is all
//! the mark needs (see the parent module). A message not found here (handed out by another
//! process, read from another generation, or forgotten) is looked up as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Messages remembered at most; past it everything is forgotten at once (the marks of those
/// look their entries up). Ten relay batches of the largest size and more.
const CAPACITY: usize = 100_000;

/// An entry as the read of pending messages saw it.
#[derive(Debug, PartialEq)]
pub(crate) struct Holder {
    /// The entry's `_id` (its event id).
    pub(crate) entry: String,
    /// Every message id the entry listed.
    pub(crate) ids: Vec<String>,
}

/// By generation and message id.
#[derive(Default)]
pub(crate) struct Holders(Mutex<HashMap<(u64, String), Arc<Holder>>>);

impl Holders {
    /// `entry` of `generation` listed `ids`, all pending.
    pub(crate) fn saw(&self, generation: u64, entry: &str, ids: Vec<String>) {
        let holder = Arc::new(Holder {
            entry: entry.to_string(),
            ids,
        });
        let mut known = self.0.lock().expect("outbox holders lock");
        if known.len() + holder.ids.len() > CAPACITY {
            known.clear();
        }
        for id in &holder.ids {
            known.insert((generation, id.clone()), holder.clone());
        }
    }

    /// Takes the holders of `ids` in `generation` out; the ids without one come back alone.
    pub(crate) fn take(&self, generation: u64, ids: &[String]) -> (Vec<Arc<Holder>>, Vec<String>) {
        let mut known = self.0.lock().expect("outbox holders lock");
        let mut holders: Vec<Arc<Holder>> = Vec::new();
        let mut unknown = Vec::new();
        for id in ids {
            match known.remove(&(generation, id.clone())) {
                Some(h) if !holders.iter().any(|k| Arc::ptr_eq(k, &h)) => holders.push(h),
                Some(_) => {}
                None => unknown.push(id.clone()),
            }
        }
        (holders, unknown)
    }

    /// Forgets everything (the read model was emptied).
    pub(crate) fn forget(&self) {
        self.0.lock().expect("outbox holders lock").clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_holder_is_taken_once_for_all_its_messages_and_per_generation() {
        let holders = Holders::default();
        holders.saw(1, "e1", ids(&["a", "b"]));
        holders.saw(2, "e1", ids(&["a", "b"]));
        let (found, unknown) = holders.take(1, &ids(&["a", "b", "c"]));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].entry, "e1");
        assert_eq!(found[0].ids, ids(&["a", "b"]));
        assert_eq!(unknown, ids(&["c"]));
        // Taken: a second mark looks the entry up.
        assert_eq!(holders.take(1, &ids(&["a"])).1, ids(&["a"]));
        // Generation 2's entry is its own.
        assert_eq!(holders.take(2, &ids(&["b"])).0.len(), 1);
    }

    #[test]
    fn past_capacity_everything_is_forgotten() {
        let holders = Holders::default();
        holders.saw(1, "old", ids(&["a"]));
        let many: Vec<String> = (0..CAPACITY).map(|i| i.to_string()).collect();
        holders.saw(1, "big", many);
        assert_eq!(holders.take(1, &ids(&["a"])).1, ids(&["a"]));
        assert_eq!(holders.take(1, &ids(&["7"])).0[0].entry, "big");
        holders.forget();
        assert_eq!(holders.take(1, &ids(&["8"])).1, ids(&["8"]));
    }
}
