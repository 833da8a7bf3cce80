//! The outbox, kept in the log entries of the changes that recorded it (see `entry`): what the
//! relay reads, how it marks messages published, and how it is woken.
//!
//! Pending entries are those with `outbox_pending: true`; the index on it and `outbox_seq`
//! serves "oldest first" without touching the published history, and FerretDB (which serves
//! no range from an index) looks the equality up in its index trigger's twin (docs/testbed.md).
//! Marking published removes the messages from their entry, which the read of pending messages
//! remembers (`holders`; a find where it does not): one update per entry unsets them from `outbox` and pulls their ids from `outbox_ids`
//! (`$pullAll` of exact values: FerretDB's `$pull` ignores conditions), and when no id is left
//! also unsets `outbox_seq`. Only relays write entries after their insert and messages are
//! never added to an entry, so what a mark read is a superset of what is left: clearing the
//! sequence when the read showed nothing else pending is never wrong. A mark racing another
//! relay's on a server without atomic updates may put back a message the other removed: it is
//! published again under its same id, which consumers dedupe; none is ever lost. An entry left
//! with a sequence and no ids (two relays each removing half) is cleared by `pending`.

mod holders;
mod wake;

pub(crate) use holders::Holders;
pub(crate) use wake::Wake;

use std::collections::{HashMap, HashSet};

use enrollstream_ports::StoreError;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};

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
pub(crate) async fn pending_ordered(
    db: &Db,
    limit: usize,
    holders: &Holders,
) -> Result<Vec<Pending>, StoreError> {
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
        let held = pending_of(d)?;
        let id = Fields::new(d, "event_log entry").str("_id")?;
        if held.is_empty() {
            empty.push(Statement {
                filter: doc! { "_id": id },
                update: cleared(),
                upsert: false,
            });
        } else {
            holders.saw(
                db.generation,
                id,
                held.iter().map(|m| m.stored.id.clone()).collect(),
            );
        }
        messages.extend(held);
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

/// One update per entry holding one of `ids`, after a find of the entries `holders` does not
/// know (with [`crate::Lookups::Point`], a find per message).
pub(crate) async fn mark_published(
    db: &Db,
    ids: &[String],
    holders: &Holders,
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let (known, unknown) = holders.take(db.generation, ids);
    // Entry id → the message ids it lists (as last read).
    let mut listed: HashMap<String, Vec<String>> = known
        .iter()
        .map(|h| (h.entry.clone(), h.ids.clone()))
        .collect();
    if !unknown.is_empty() {
        let docs = db
            .find_in(
                &db.event_log,
                OUTBOX_IDS,
                &unknown,
                Some(doc! { OUTBOX_IDS: 1 }),
            )
            .await?;
        for d in &docs {
            let f = Fields::new(d, "event_log entry");
            let ids = f.strings(OUTBOX_IDS)?.into_iter().map(String::from);
            // A find is newer than what a holder saw: it wins.
            listed.insert(f.str("_id")?.to_string(), ids.collect());
        }
    }
    let mut statements = Vec::with_capacity(listed.len());
    for (entry, ids) in &listed {
        let (published, left): (Vec<&str>, Vec<&str>) = ids
            .iter()
            .map(String::as_str)
            .partition(|id| wanted.contains(id));
        let update = if left.is_empty() {
            cleared()
        } else {
            // What is left is all the entry can list after this mark.
            holders.saw(
                db.generation,
                entry,
                left.iter().map(|s| s.to_string()).collect(),
            );
            let unset: Document = published
                .iter()
                .map(|id| (format!("{OUTBOX}.{id}"), Bson::from("")))
                .collect();
            doc! { "$unset": unset, "$pullAll": { OUTBOX_IDS: published } }
        };
        statements.push(Statement {
            filter: doc! { "_id": entry },
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
