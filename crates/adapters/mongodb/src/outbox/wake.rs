//! Waking the relay when there may be something to publish.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enrollstream_ports::StoreError;
use futures::StreamExt;
use mongodb::bson::{doc, Document};
use mongodb::Collection;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::pending_filter;
use crate::error::classify;

async fn any_pending(log: &Collection<Document>) -> bool {
    matches!(
        log.find_one(pending_filter())
            .projection(doc! { "_id": 1 })
            .await,
        Ok(Some(_))
    )
}

/// Wakes `wait_for_outbox`: at once when this process applied a change with messages; on a
/// change stream of `event_log` where the server offers one (replica sets; not FerretDB);
/// and by polling for pending entries, which also covers other processes' applies where there
/// is no stream. Whether change streams work is found out once and remembered; a stream lost
/// to the network is reopened by the next wait.
pub(crate) struct Wake {
    notify: Arc<Notify>,
    streaming: Arc<AtomicBool>,
    unsupported: Arc<AtomicBool>,
    task: Mutex<Option<JoinHandle<()>>>,
    poll: Duration,
}

impl Wake {
    pub(crate) fn new(poll: Duration) -> Self {
        Self {
            notify: Arc::new(Notify::new()),
            streaming: Arc::new(AtomicBool::new(false)),
            unsupported: Arc::new(AtomicBool::new(false)),
            task: Mutex::new(None),
            poll,
        }
    }

    /// This process recorded messages to publish. A permit is kept when nobody waits yet, so
    /// a relay between its read and its wait is not left to the poll.
    pub(crate) fn recorded(&self) {
        self.notify.notify_one();
    }

    /// Returns on a hint (a local apply, a streamed insert, the stream ending), once a poll
    /// finds something pending, or at `max`.
    pub(crate) async fn wait(&self, log: &Collection<Document>, max: Duration) {
        let deadline = Instant::now() + max;
        self.open_stream(log, deadline).await;
        loop {
            // With a stream, polling is only the safety net for a missed event.
            let step = if self.streaming.load(Ordering::Acquire) {
                self.poll * 20
            } else {
                self.poll
            };
            tokio::select! {
                () = self.notify.notified() => return,
                () = tokio::time::sleep_until(deadline.min(Instant::now() + step)) => {}
            }
            if Instant::now() >= deadline || any_pending(log).await {
                return;
            }
        }
    }

    async fn open_stream(&self, log: &Collection<Document>, deadline: Instant) {
        if self.unsupported.load(Ordering::Acquire) || self.streaming.load(Ordering::Acquire) {
            return;
        }
        let watch = log
            .watch()
            .pipeline([doc! { "$match": { "operationType": "insert" } }]);
        let stream = match tokio::time::timeout_at(deadline, watch).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                self.remember_failure(e);
                return;
            }
            Err(_) => return,
        };
        self.streaming.store(true, Ordering::Release);
        let (notify, streaming, unsupported) = (
            self.notify.clone(),
            self.streaming.clone(),
            self.unsupported.clone(),
        );
        let task = tokio::spawn(async move {
            let mut stream = stream;
            loop {
                match stream.next().await {
                    Some(Ok(_)) => notify.notify_one(),
                    Some(Err(e)) => {
                        if matches!(classify(e), StoreError::Fatal(_)) {
                            unsupported.store(true, Ordering::Release);
                        }
                        break;
                    }
                    None => break,
                }
            }
            streaming.store(false, Ordering::Release);
            // The waiter falls back to polling.
            notify.notify_one();
        });
        if let Some(old) = self.task.lock().expect("wake task lock").replace(task) {
            old.abort();
        }
    }

    fn remember_failure(&self, error: mongodb::error::Error) {
        match classify(error) {
            StoreError::Unavailable(_) => {}
            StoreError::Fatal(reason) => {
                tracing::info!(%reason, "change streams unavailable on this server; polling the outbox");
                self.unsupported.store(true, Ordering::Release);
            }
        }
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}
