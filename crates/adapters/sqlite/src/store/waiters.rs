//! Read-your-writes waiters, woken by the event ids a commit applied rather than by every
//! commit. Waking every waiter on every group commit made each of them query the file again; in
//! a burst at the API hundreds of reads were waiting, and their queries (each on a blocking
//! thread, most on a freshly opened connection) took the CPU from the writer they waited for.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::oneshot;

#[derive(Default)]
pub(crate) struct Waiters {
    by_event: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
}

impl Waiters {
    /// Register before checking the file, so that a commit between the check and the wait is
    /// not missed.
    pub(crate) fn register(&self, event_id: &str) -> Waiter<'_> {
        let (tx, rx) = oneshot::channel();
        self.lock()
            .entry(event_id.to_string())
            .or_default()
            .push(tx);
        Waiter {
            waiters: self,
            event_id: event_id.to_string(),
            woken: rx,
        }
    }

    /// After a commit: wake whoever waits for one of these events.
    pub(crate) fn applied<'a>(&self, event_ids: impl IntoIterator<Item = &'a str>) {
        let mut by_event = self.lock();
        if by_event.is_empty() {
            return;
        }
        for id in event_ids {
            for tx in by_event.remove(id).into_iter().flatten() {
                let _ = tx.send(());
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<oneshot::Sender<()>>>> {
        // The map holds no invariant a panicking holder could break.
        self.by_event
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub(crate) struct Waiter<'a> {
    waiters: &'a Waiters,
    event_id: String,
    pub(crate) woken: oneshot::Receiver<()>,
}

/// A waiter that timed out (or whose read was dropped) takes its entry with it, so waits for
/// event ids that never arrive do not pile up.
impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.woken.close();
        let mut by_event = self.waiters.lock();
        if let Some(senders) = by_event.get_mut(&self.event_id) {
            senders.retain(|tx| !tx.is_closed());
            if senders.is_empty() {
                by_event.remove(&self.event_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_only_the_waiters_of_applied_events() {
        let waiters = Waiters::default();
        let mut a = waiters.register("a");
        let mut b = waiters.register("b");
        waiters.applied(["a"]);
        assert!((&mut a.woken).await.is_ok());
        assert!(b.woken.try_recv().is_err());
        drop(a);
        drop(b);
        assert!(waiters.lock().is_empty());
    }

    #[test]
    fn a_dropped_waiter_leaves_the_others_registered() {
        let waiters = Waiters::default();
        let first = waiters.register("a");
        let mut second = waiters.register("a");
        drop(first);
        assert_eq!(waiters.lock()["a"].len(), 1);
        waiters.applied(["a"]);
        assert!(second.woken.try_recv().is_ok());
    }
}
