//! The outbox, kept in the log entries of the changes that recorded it (see `entry`): what the
//! relay reads, how it marks messages published, and how it is woken.
//!
//! Pending entries are those with `outbox_pending: true`; the index on it and `outbox_seq`
//! serves "oldest first" without touching the published history, and FerretDB (which serves
//! no range from an index) looks the equality up in its index trigger's twin (docs/testbed.md). Marking published removes the messages from their
//! entry: one update per entry unsets them from `outbox` and pulls their ids from `outbox_ids`
//! (`$pullAll` of exact values: FerretDB's `$pull` ignores conditions), and when no id is left
//! also unsets `outbox_seq`. Only relays write entries after their insert and messages are
//! never added to an entry, so what a mark read is a superset of what is left: clearing the
//! sequence when the read showed nothing else pending is never wrong. A mark racing another
//! relay's on a server without atomic updates may put back a message the other removed: it is
//! published again under its same id, which consumers dedupe; none is ever lost. An entry left
//! with a sequence and no ids (two relays each removing half) is cleared by `pending`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enrollstream_ports::StoreError;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{doc, Bson, Document};
use mongodb::Collection;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::codec::Fields;
use crate::db::{Db, Statement, FIND_BATCH};
use crate::entry::{pending_of, Pending, OUTBOX, OUTBOX_IDS, OUTBOX_PENDING, OUTBOX_SEQ};
use crate::error::classify;

/// Entries with something to publish.
fn pending_filter() -> Document {
    doc! { OUTBOX_PENDING: true }
}

/// The `limit` oldest pending messages of one generation, with what orders them among other
/// generations' (their `outbox_seq`, a time-ordered id).
pub(crate) async fn pending_ordered(db: &Db, limit: usize) -> Result<Vec<Pending>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    // Each pending entry holds at least one message, so the `limit` oldest entries hold the
    // `limit` oldest messages.
    let find = db
        .event_log
        .find(pending_filter())
        .sort(doc! { OUTBOX_SEQ: 1 })
        .limit(i64::try_from(limit).unwrap_or(i64::MAX))
        .batch_size(u32::try_from(limit).unwrap_or(FIND_BATCH).min(FIND_BATCH))
        .projection(doc! { OUTBOX: 1, OUTBOX_IDS: 1, OUTBOX_SEQ: 1, "recorded_at": 1 });
    let docs: Vec<Document> = db
        .within(async {
            find.await
                .map_err(classify)?
                .try_collect()
                .await
                .map_err(classify)
        })
        .await?;
    let mut messages = Vec::new();
    let mut empty = Vec::new();
    for d in &docs {
        let before = messages.len();
        messages.extend(pending_of(d)?);
        if messages.len() == before {
            let id = Fields::new(d, "event_log entry").str("_id")?;
            empty.push(Statement {
                filter: doc! { "_id": id },
                update: cleared(),
                upsert: false,
            });
        }
    }
    if !empty.is_empty() {
        db.update_batch(&db.event_log_name(), &empty).await?;
    }
    messages.sort_by(|a, b| (&a.seq, a.position).cmp(&(&b.seq, b.position)));
    messages.truncate(limit);
    Ok(messages)
}

fn cleared() -> Document {
    doc! { "$unset": { OUTBOX: "", OUTBOX_IDS: "", OUTBOX_SEQ: "", OUTBOX_PENDING: "" } }
}

/// Takes every message out of the entries of `event_ids`, unpublished: they are another
/// generation's to publish. One round trip.
pub(crate) async fn clear(db: &Db, event_ids: &[String]) -> Result<(), StoreError> {
    let statements: Vec<Statement> = event_ids
        .iter()
        .map(|id| Statement {
            filter: doc! { "_id": id },
            update: cleared(),
            upsert: false,
        })
        .collect();
    db.update_batch(&db.event_log_name(), &statements).await
}

/// Whether the generation holds any message to publish.
pub(crate) async fn any_pending_in(db: &Db) -> Result<bool, StoreError> {
    let found = db
        .within(async {
            db.event_log
                .find_one(pending_filter())
                .projection(doc! { "_id": 1 })
                .await
                .map_err(classify)
        })
        .await?;
    Ok(found.is_some())
}

/// Two round trips whatever the number of messages (with [`crate::Lookups::Point`], a find per
/// message): the entries holding them, then one update per entry.
pub(crate) async fn mark_published(db: &Db, ids: &[String]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let docs = db
        .find_in(&db.event_log, OUTBOX_IDS, ids, Some(doc! { OUTBOX_IDS: 1 }))
        .await?;
    let mut statements = Vec::with_capacity(docs.len());
    for d in &docs {
        let f = Fields::new(d, "event_log entry");
        let (published, left): (Vec<&str>, Vec<&str>) = f
            .strings(OUTBOX_IDS)?
            .into_iter()
            .partition(|id| wanted.contains(id));
        let update = if left.is_empty() {
            cleared()
        } else {
            let unset: Document = published
                .iter()
                .map(|id| (format!("{OUTBOX}.{id}"), Bson::from("")))
                .collect();
            doc! { "$unset": unset, "$pullAll": { OUTBOX_IDS: published } }
        };
        statements.push(Statement {
            filter: doc! { "_id": f.str("_id")? },
            update,
            upsert: false,
        });
    }
    db.update_batch(&db.event_log_name(), &statements).await
}

pub(crate) async fn backlog(db: &Db) -> Result<u64, StoreError> {
    let docs: Vec<Document> = db
        .event_log
        .aggregate([
            doc! { "$match": pending_filter() },
            doc! { "$unwind": format!("${OUTBOX_IDS}") },
            doc! { "$count": "n" },
        ])
        .await
        .map_err(classify)?
        .try_collect()
        .await
        .map_err(classify)?;
    match docs.first() {
        Some(d) => Fields::new(d, "backlog count").u64("n"),
        None => Ok(0),
    }
}

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
