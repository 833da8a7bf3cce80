//! The outbox embedded in entity documents: reading what is pending, marking it published, and
//! waking the relay.
//!
//! An entity with unpublished messages has `outbox_pending: true` and `outbox_oldest` = the
//! recording sequence of its oldest unpublished message; the index on both serves the relay's
//! "oldest first" query without scanning published history.
//!
//! Marking published finds the entities through `outbox_index` (message id -> entity, an `_id`
//! lookup; nx-27017 can neither index nor `$in`-match fields inside arrays), then updates one
//! array element per message with the positional operator
//! (`outbox.$.published`, filter `{_id, "outbox.id": id}`), not `arrayFilters`: nx-27017 accepts
//! `arrayFilters` and silently changes nothing. Then a second write clears `outbox_pending`
//! when nothing unpublished is left, fenced on the entity version read before: only an apply
//! adds unpublished messages and every apply moves the version, so a cleared flag is never
//! wrong. A clear that lost a race (two relays marking one entity) leaves a pending flag with
//! nothing behind it, which `pending_outbox` clears when it meets one. Published messages stay
//! in the document (an entity has a handful of events, so the document stays small) as the
//! record of what was announced and as the fence for their ids.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enrollstream_ports::{StoreError, StoredOutboxMessage};
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{doc, Document};
use mongodb::Collection;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::codec::{outbox_of, Fields, OutboxEntry};
use crate::db::{Db, Statement, ENTITIES};
use crate::error::classify;

pub(crate) async fn pending(db: &Db, limit: usize) -> Result<Vec<StoredOutboxMessage>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    // Each pending entity holds at least one unpublished message, so the `limit` entities with
    // the oldest ones hold the `limit` oldest messages.
    let docs: Vec<Document> = db
        .entities
        .find(doc! { "outbox_pending": true })
        .sort(doc! { "outbox_oldest": 1, "_id": 1 })
        .limit(i64::try_from(limit).unwrap_or(i64::MAX))
        .projection(doc! { "version": 1, "outbox": 1 })
        .await
        .map_err(classify)?
        .try_collect()
        .await
        .map_err(classify)?;
    let mut entries: Vec<OutboxEntry> = Vec::new();
    let mut empty = Vec::new();
    for d in &docs {
        let before = entries.len();
        entries.extend(outbox_of(d)?.into_iter().filter(|m| !m.published));
        if entries.len() == before {
            empty.push(clear_pending(d)?);
        }
    }
    if !empty.is_empty() {
        db.update_batch(ENTITIES, &empty, false).await?;
    }
    entries.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    entries.truncate(limit);
    Ok(entries.iter().map(OutboxEntry::to_stored).collect())
}

pub(crate) async fn mark_published(db: &Db, ids: &[String]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    // `$or` of equalities: nx-27017 does not match `$in` inside arrays.
    let clauses: Vec<Document> = wanted.iter().map(|id| doc! { "outbox.id": *id }).collect();
    let docs = db
        .find_all(
            &db.entities,
            doc! { "outbox_pending": true, "$or": clauses },
            Some(doc! { "version": 1, "outbox": 1 }),
        )
        .await?;
    let mut statements = Vec::new();
    for d in &docs {
        let id = Fields::new(d, "entity").str("_id")?;
        let mut oldest_left: Option<String> = None;
        for m in outbox_of(d)?.into_iter().filter(|m| !m.published) {
            if wanted.contains(m.message.id.as_str()) {
                statements.push(Statement {
                    filter: doc! { "_id": id, "outbox.id": &m.message.id },
                    update: doc! { "$set": { "outbox.$.published": true } },
                    upsert: false,
                });
            } else if oldest_left.as_deref().is_none_or(|o| m.seq.as_str() < o) {
                oldest_left = Some(m.seq);
            }
        }
        statements.push(match oldest_left {
            None => clear_pending(d)?,
            Some(oldest) => Statement {
                filter: version_fence(d)?,
                update: doc! { "$set": { "outbox_oldest": oldest } },
                upsert: false,
            },
        });
    }
    // Ordered: an entity's flag is only touched after its messages were marked.
    db.update_batch(ENTITIES, &statements, true).await?;
    Ok(())
}

pub(crate) async fn backlog(db: &Db) -> Result<u64, StoreError> {
    let docs: Vec<Document> = db
        .entities
        .aggregate([
            doc! { "$match": { "outbox_pending": true } },
            doc! { "$unwind": "$outbox" },
            doc! { "$match": { "outbox.published": false } },
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

fn version_fence(entity: &Document) -> Result<Document, StoreError> {
    let f = Fields::new(entity, "entity");
    Ok(doc! { "_id": f.str("_id")?, "version": f.i64("version")? })
}

fn clear_pending(entity: &Document) -> Result<Statement, StoreError> {
    Ok(Statement {
        filter: version_fence(entity)?,
        update: doc! { "$set": { "outbox_pending": false }, "$unset": { "outbox_oldest": "" } },
        upsert: false,
    })
}

async fn any_pending(entities: &Collection<Document>) -> bool {
    matches!(
        entities
            .find_one(doc! { "outbox_pending": true })
            .projection(doc! { "_id": 1 })
            .await,
        Ok(Some(_))
    )
}

/// Wakes `wait_for_outbox`: a change stream on `entities` where the server offers one
/// (replica sets), polling otherwise. Whether change streams work is found out once and
/// remembered; a stream lost to the network is reopened by the next wait.
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

    pub(crate) async fn wait(&self, entities: &Collection<Document>, max: Duration) {
        let deadline = Instant::now() + max;
        self.open_stream(entities, deadline).await;
        loop {
            // With a stream, polling is only the safety net for a missed event.
            let streaming = self.streaming.load(Ordering::Acquire);
            let step = if streaming { self.poll * 20 } else { self.poll };
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if streaming != self.streaming.load(Ordering::Acquire) {
                continue;
            }
            tokio::select! {
                () = &mut notified => {
                    if self.streaming.load(Ordering::Acquire) {
                        return;
                    }
                }
                () = tokio::time::sleep_until(deadline.min(Instant::now() + step)) => {}
            }
            if Instant::now() >= deadline || any_pending(entities).await {
                return;
            }
        }
    }

    async fn open_stream(&self, entities: &Collection<Document>, deadline: Instant) {
        if self.unsupported.load(Ordering::Acquire) || self.streaming.load(Ordering::Acquire) {
            return;
        }
        let watch = entities.watch().pipeline([
            doc! { "$match": { "operationType": { "$in": ["insert", "update", "replace"] } } },
        ]);
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
            // Waiters fall back to polling.
            notify.notify_waiters();
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
