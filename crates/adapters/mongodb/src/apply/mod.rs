//! Applying changes without multi-document transactions: one insert per change.
//!
//! A change is applied by inserting its entry into `event_log` (see `entry`): the event, the
//! entity's state after it, and its outbox messages, in one document. That insert is the whole
//! apply, atomic on any server, and fenced twice by unique indexes: `_id` = event id (an event
//! is applied once) and `(entity_kind, entity_id, version)` (at most one event moves an entity
//! to a given version). There is nothing to finish after a crash and nothing to undo after a
//! refusal: an entry exists exactly for the applied changes.
//!
//! Before inserting, the batch is decided in order, as one change after the other would be: a
//! change whose expected version is not the entity's current one (or whose version does not
//! follow it) does not apply, and is AlreadyApplied if its event is logged, else a Conflict with
//! the current version; a change the server could never keep is Refused. A later change of the
//! same entity then sees the version the earlier ones leave. One query reads what that needs:
//! each entity's entries from its first change's expected version up (one entry when the
//! caller is right). An entity with one change in the batch that expects nothing (a new quote,
//! a new application) is not read: versions follow one another from 1, so its insert of
//! version 1 meets the unique index exactly when the entity exists, and that refusal is
//! settled like a lost race (below). A redelivered event costs a refused insert then, not a
//! read per new entity of every batch. (With more changes, the later ones must be decided
//! against what a redelivered first one left, so the entity is read.)
//!
//! The inserts go in chunks of whole entity chains, each an ordered `insert_many`, chunks sent
//! concurrently: an ordered insert stops at its first refused entry, so no entry is written on
//! top of one that was not. A refusal there (a unique index: another writer took the event or
//! the version meanwhile; or the server refused the document) settles that change and drops the
//! rest of its entity's chain, and the chunk's other entries are sent again. FerretDB honours
//! `ordered` only within 100 documents, hence chunks of at most 100.
//!
//! Last, one head per entity moved (see `read`): a cache, written with a plain replace by `_id`
//! after the entries, so a head write that is lost or lands late costs a longer read, never a
//! wrong one.

mod insert;

use std::collections::{HashMap, HashSet};

use enrollstream_domain::ids::new_id;
use enrollstream_domain::EntityKind;
use enrollstream_ports::{ApplyOutcome, Change, EntityRecord, StoreError};
use futures::stream::{self, StreamExt, TryStreamExt};
use mongodb::bson::Document;

use crate::codec::{entity_key, Unwritable};
use crate::db::{Db, Statement};
use crate::entry::{entry_doc, head_doc};
use crate::read::{latest, logged, versions_from};
use insert::{insert_lane, lanes};

/// Documents per ordered insert (FerretDB's internal batch; MongoDB takes far more).
const CHUNK: usize = 100;
/// Chunks in flight at once.
const PARALLEL_CHUNKS: usize = 4;

/// What the decision of a change is, before and after the inserts.
#[derive(Clone, Debug)]
enum Plan {
    Done(ApplyOutcome),
    /// To insert.
    Insert,
    /// The same event as change `first` earlier in the batch: it shares that one's fate.
    Repeat(usize),
    /// Does not follow its entity: a Conflict with the entity's version, read once the batch's
    /// inserts are done.
    Conflict,
}

/// Where an apply may record outbox messages, and until when it may write.
#[derive(Default)]
pub(crate) struct Policy<'a> {
    /// The generation being built records none (everything it holds was announced before).
    pub(crate) silent: bool,
    /// Earlier generations not dropped yet: an event one of them holds has its messages there
    /// (announced, or to be), so an apply here records none for it. Read in the same round
    /// trip as the versions (concurrently), only while such a generation exists.
    pub(crate) announced_in: &'a [Db],
    /// Asked before each insert: bounds how late a write to a generation can land after the
    /// pointer last named it active (see `generations`).
    pub(crate) fence: Option<&'a dyn WriteFence>,
}

/// Before each insert of a live apply: an error when the generation written to may have been
/// switched out.
#[async_trait::async_trait]
pub(crate) trait WriteFence: Send + Sync {
    async fn before_insert(&self) -> Result<(), StoreError>;
}

pub(crate) struct Applied {
    pub(crate) outcomes: Vec<ApplyOutcome>,
    /// Whether an applied change recorded outbox messages to publish.
    pub(crate) new_outbox: bool,
}

pub(crate) async fn apply(
    db: &Db,
    changes: &[Change],
    policy: &Policy<'_>,
) -> Result<Applied, StoreError> {
    if changes.is_empty() {
        return Ok(Applied {
            outcomes: Vec::new(),
            new_outbox: false,
        });
    }
    let keys: Vec<String> = changes
        .iter()
        .map(|c| entity_key(c.event.entity_kind, &c.event.entity_id))
        .collect();
    let (found, announced) = tokio::try_join!(
        first_versions(db, changes, &keys),
        announced_elsewhere(policy.announced_in, changes)
    )?;
    let announces = |c: &Change| !policy.silent && !announced.contains(&c.event.event_id);
    // Time-ordered, taken in batch order: the relay reads outboxes back in this order.
    let entries = changes
        .iter()
        .map(|c| entry_doc(c, &new_id(), announces(c)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut plans = decide(changes, &keys, &entries, &found);

    let planned: Vec<usize> = (0..changes.len())
        .filter(|&i| matches!(plans[i], Plan::Insert))
        .collect();
    let documents: HashMap<usize, Document> = entries
        .into_iter()
        .enumerate()
        .filter(|(i, _)| matches!(plans[*i], Plan::Insert))
        .filter_map(|(i, entry)| entry.ok().map(|d| (i, d)))
        .collect();
    let results: Vec<Vec<(usize, Plan)>> = stream::iter(lanes(&planned, &keys))
        .map(|lane| insert_lane(db, lane, &keys, &documents, policy.fence))
        .buffer_unordered(PARALLEL_CHUNKS)
        .try_collect()
        .await?;
    for (i, plan) in results.into_iter().flatten() {
        plans[i] = plan;
    }
    let outcomes = settle(db, changes, &keys, plans).await?;

    write_heads(db, changes, &keys, &outcomes).await;
    let new_outbox = changes.iter().zip(&outcomes).any(|(c, o)| {
        *o == ApplyOutcome::Applied && !c.replay && !c.outbox.is_empty() && announces(c)
    });
    Ok(Applied {
        outcomes,
        new_outbox,
    })
}

/// The events of `changes` that one of `earlier` holds: one round trip per generation, all at
/// once.
async fn announced_elsewhere(
    earlier: &[Db],
    changes: &[Change],
) -> Result<HashSet<String>, StoreError> {
    if earlier.is_empty() {
        return Ok(HashSet::new());
    }
    let ids: Vec<String> = changes.iter().map(|c| c.event.event_id.clone()).collect();
    let found = futures::future::try_join_all(earlier.iter().map(|db| logged(db, &ids))).await?;
    Ok(found.into_iter().flatten().collect())
}

fn firsts<'a>(changes: &'a [Change], keys: &'a [String]) -> HashMap<&'a str, &'a Change> {
    let mut firsts: HashMap<&str, &Change> = HashMap::new();
    for (c, key) in changes.iter().zip(keys) {
        firsts.entry(key.as_str()).or_insert(c);
    }
    firsts
}

/// Each entity's highest version at or above its first change's expected version, but for
/// the entities whose only change expects nothing (see the module documentation).
async fn first_versions(
    db: &Db,
    changes: &[Change],
    keys: &[String],
) -> Result<HashMap<String, u64>, StoreError> {
    let mut changes_of: HashMap<&str, usize> = HashMap::new();
    for key in keys {
        *changes_of.entry(key.as_str()).or_default() += 1;
    }
    let wanted: Vec<(EntityKind, &str, u64)> = firsts(changes, keys)
        .iter()
        .filter(|(key, c)| c.expected_version > 0 || changes_of[*key] > 1)
        .map(|(_, c)| {
            let e = &c.event;
            (
                e.entity_kind,
                e.entity_id.as_str(),
                c.expected_version.max(1),
            )
        })
        .collect();
    versions_from(db, &wanted).await
}

/// Decides every change in order against the versions stored (see the module documentation).
/// An event logged already does not follow its entity's version, or its insert meets its
/// `_id`: either way `settle` finds it logged and answers AlreadyApplied.
fn decide(
    changes: &[Change],
    keys: &[String],
    entries: &[Result<Document, Unwritable>],
    found: &HashMap<String, u64>,
) -> Vec<Plan> {
    let firsts = firsts(changes, keys);

    // An entity with no entry at or above its first change's expected version is below it
    // (a Conflict, whose exact version `settle` reads), unless nothing was expected.
    let mut current: HashMap<&str, Option<u64>> = firsts
        .iter()
        .map(|(key, c)| {
            let v = found.get(*key).copied();
            (*key, v.or((c.expected_version == 0).then_some(0)))
        })
        .collect();
    let mut first_of: HashMap<&str, usize> = HashMap::new();
    let mut plans = Vec::with_capacity(changes.len());
    for (i, c) in changes.iter().enumerate() {
        let id = c.event.event_id.as_str();
        let key = keys[i].as_str();
        let plan = if let Some(&first) = first_of.get(id) {
            Plan::Repeat(first)
        } else if current.get(key).copied().flatten() != Some(c.expected_version)
            || c.event.version != c.expected_version + 1
        {
            Plan::Conflict
        } else if let Err(Unwritable(reason)) = &entries[i] {
            Plan::Done(ApplyOutcome::Refused {
                reason: reason.clone(),
            })
        } else {
            current.insert(key, Some(c.event.version));
            first_of.insert(id, i);
            Plan::Insert
        };
        plans.push(plan);
    }
    plans
}

/// Turns the plans into outcomes: an insert that lost to another writer is AlreadyApplied if
/// the event is logged now, and every Conflict gets its entity's version as it is now.
async fn settle(
    db: &Db,
    changes: &[Change],
    keys: &[String],
    plans: Vec<Plan>,
) -> Result<Vec<ApplyOutcome>, StoreError> {
    let conflicted: Vec<usize> = (0..plans.len())
        .filter(|&i| matches!(plans[i], Plan::Conflict))
        .collect();
    let (now_logged, versions) = if conflicted.is_empty() {
        (HashSet::new(), HashMap::new())
    } else {
        let ids: Vec<String> = conflicted
            .iter()
            .map(|&i| changes[i].event.event_id.clone())
            .collect();
        let entities: Vec<(EntityKind, String)> = conflicted
            .iter()
            .map(|&i| {
                (
                    changes[i].event.entity_kind,
                    changes[i].event.entity_id.clone(),
                )
            })
            .collect();
        let (l, found) = tokio::try_join!(logged(db, &ids), latest(db, &entities))?;
        let versions: HashMap<String, u64> =
            found.into_iter().map(|(k, r)| (k, r.version)).collect();
        (l, versions)
    };
    let mut outcomes: Vec<Option<ApplyOutcome>> = vec![None; plans.len()];
    for (i, plan) in plans.iter().enumerate() {
        outcomes[i] = match plan {
            Plan::Done(o) => Some(o.clone()),
            Plan::Conflict if now_logged.contains(&changes[i].event.event_id) => {
                Some(ApplyOutcome::AlreadyApplied)
            }
            Plan::Conflict => Some(ApplyOutcome::Conflict {
                current_version: versions.get(&keys[i]).copied().unwrap_or(0),
            }),
            Plan::Insert => unreachable!("every planned insert is settled by its lane"),
            Plan::Repeat(_) => None,
        };
    }
    for (i, plan) in plans.iter().enumerate() {
        if let Plan::Repeat(first) = plan {
            outcomes[i] = Some(
                match outcomes[*first]
                    .clone()
                    .expect("a first occurrence comes first")
                {
                    ApplyOutcome::Applied => ApplyOutcome::AlreadyApplied,
                    other => other,
                },
            );
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.expect("every change is settled"))
        .collect())
}

/// Writes the head of every entity this batch moved, to its last applied change. A head that
/// cannot be written is logged, not returned: the entries are durable and reads complete a
/// lagging head from them.
async fn write_heads(db: &Db, changes: &[Change], keys: &[String], outcomes: &[ApplyOutcome]) {
    let mut last: HashMap<&str, &Change> = HashMap::new();
    for ((c, key), o) in changes.iter().zip(keys).zip(outcomes) {
        if *o == ApplyOutcome::Applied {
            last.insert(key.as_str(), c);
        }
    }
    let mut statements = Vec::with_capacity(last.len());
    for (key, c) in last {
        let record = EntityRecord {
            kind: c.event.entity_kind,
            id: c.event.entity_id.clone(),
            version: c.event.version,
            status: c.status.clone(),
            state: c.state.clone(),
            last_event_id: c.event.event_id.clone(),
            updated_at: c.event.recorded_at,
        };
        match head_doc(&record) {
            Ok(head) => statements.push(Statement {
                filter: mongodb::bson::doc! { "_id": key },
                update: head,
                upsert: true,
            }),
            Err(Unwritable(reason)) => tracing::warn!(%key, %reason, "entity head not written"),
        }
    }
    if let Err(e) = db.update_batch(&db.entities_name(), &statements).await {
        tracing::warn!(error = %e, "entity heads not written; reads complete them from the event log");
    }
}
