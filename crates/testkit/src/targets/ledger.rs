//! What a fake target applied: once per dedupe identity, in order, with the keys it was sent.

use std::collections::{BTreeMap, BTreeSet, HashSet};

/// One application of a notification (or lead message) at the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub notification_id: String,
    /// The key the target was given (Idempotency-Key, or the external id path).
    pub key: String,
    pub entity_id: String,
    pub entity_version: u64,
}

#[derive(Debug, Default)]
pub struct Ledger {
    applied: Vec<Applied>,
    seen: HashSet<String>,
    keys: BTreeMap<String, BTreeSet<String>>,
    duplicates: usize,
}

impl Ledger {
    /// Apply unless `dedupe` was seen before (the target's own idempotency). True if applied.
    pub fn apply(&mut self, dedupe: &str, applied: Applied) -> bool {
        self.keys
            .entry(applied.notification_id.clone())
            .or_default()
            .insert(applied.key.clone());
        if !self.seen.insert(dedupe.to_string()) {
            self.duplicates += 1;
            return false;
        }
        self.applied.push(applied);
        true
    }

    /// Everything applied, in order.
    pub fn applied(&self) -> &[Applied] {
        &self.applied
    }

    /// How often the target applied `notification_id`: more than once means two different
    /// keys were sent for one notification.
    pub fn times_applied(&self, notification_id: &str) -> usize {
        self.applied
            .iter()
            .filter(|a| a.notification_id == notification_id)
            .count()
    }

    /// The keys the target was sent for `notification_id`.
    pub fn keys_of(&self, notification_id: &str) -> BTreeSet<String> {
        self.keys.get(notification_id).cloned().unwrap_or_default()
    }

    /// Requests that repeated something already applied (retries, redeliveries).
    pub fn duplicates(&self) -> usize {
        self.duplicates
    }

    /// Entity versions in the order they were first applied, per entity.
    pub fn versions_by_entity(&self) -> BTreeMap<String, Vec<u64>> {
        let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for a in &self.applied {
            out.entry(a.entity_id.clone())
                .or_default()
                .push(a.entity_version);
        }
        out
    }
}
