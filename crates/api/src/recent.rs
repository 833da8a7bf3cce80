//! Read-your-writes for commands: per entity, the id of the last event this process published.
//! A command on that entity first waits until that event is in the read model, so that
//! create-then-submit works at once without the client passing `X-Enrollstream-After`.
//! Bounded (least recently used entries go first): forgetting an entry only loses the wait.

use enrollstream_domain::EntityKind;
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::Mutex;

const CAPACITY: usize = 100_000;

pub struct RecentWrites {
    inner: Mutex<LruCache<(EntityKind, String), String>>,
}

impl Default for RecentWrites {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl RecentWrites {
    pub fn with_capacity(capacity: usize) -> Self {
        let cap = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            inner: Mutex::new(LruCache::new(cap)),
        }
    }

    pub fn remember(&self, kind: EntityKind, entity_id: &str, event_id: &str) {
        self.lock()
            .put((kind, entity_id.to_string()), event_id.to_string());
    }

    pub fn last(&self, kind: EntityKind, entity_id: &str) -> Option<String> {
        self.lock().get(&(kind, entity_id.to_string())).cloned()
    }

    /// Drop the entry if it still names `event_id` (a newer write keeps its own entry).
    pub fn forget(&self, kind: EntityKind, entity_id: &str, event_id: &str) {
        let mut map = self.lock();
        let key = (kind, entity_id.to_string());
        if map.peek(&key).is_some_and(|e| e == event_id) {
            map.pop(&key);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<(EntityKind, String), String>> {
        // A panic while holding this lock cannot leave the map inconsistent for our use.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_latest_and_stays_bounded() {
        let r = RecentWrites::with_capacity(2);
        r.remember(EntityKind::Quote, "Q1", "e1");
        r.remember(EntityKind::Quote, "Q1", "e2");
        assert_eq!(r.last(EntityKind::Quote, "Q1").as_deref(), Some("e2"));
        assert_eq!(r.last(EntityKind::Application, "Q1"), None);
        r.forget(EntityKind::Quote, "Q1", "e1");
        assert_eq!(r.last(EntityKind::Quote, "Q1").as_deref(), Some("e2"));
        r.remember(EntityKind::Quote, "Q2", "e3");
        r.remember(EntityKind::Quote, "Q3", "e4");
        assert_eq!(r.last(EntityKind::Quote, "Q1"), None);
        r.forget(EntityKind::Quote, "Q3", "e4");
        assert_eq!(r.last(EntityKind::Quote, "Q3"), None);
    }
}
