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
//! caller is right).
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

use std::collections::{HashMap, HashSet};

use enrollstream_domain::ids::new_id;
use enrollstream_domain::EntityKind;
use enrollstream_ports::{ApplyOutcome, Change, EntityRecord, StoreError};
use futures::stream::{self, StreamExt, TryStreamExt};
use mongodb::bson::Document;
use mongodb::error::ErrorKind;

use crate::codec::{entity_key, Unwritable};
use crate::db::{Db, Statement, ENTITIES};
use crate::entry::{entry_doc, head_doc};
use crate::error::{classify, is_transient_code, DUPLICATE_KEY};
use crate::read::{latest, logged, versions_from};

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

pub(crate) struct Applied {
    pub(crate) outcomes: Vec<ApplyOutcome>,
    /// Whether an applied change recorded outbox messages to publish.
    pub(crate) new_outbox: bool,
}

pub(crate) async fn apply(db: &Db, changes: &[Change]) -> Result<Applied, StoreError> {
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
    // Time-ordered, taken in batch order: the relay reads outboxes back in this order.
    let entries = changes
        .iter()
        .map(|c| entry_doc(c, &new_id()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut plans = decide(db, changes, &keys, &entries).await?;

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
        .map(|lane| insert_lane(db, lane, &keys, &documents))
        .buffer_unordered(PARALLEL_CHUNKS)
        .try_collect()
        .await?;
    for (i, plan) in results.into_iter().flatten() {
        plans[i] = plan;
    }
    let outcomes = settle(db, changes, &keys, plans).await?;

    write_heads(db, changes, &keys, &outcomes).await;
    let new_outbox = changes
        .iter()
        .zip(&outcomes)
        .any(|(c, o)| *o == ApplyOutcome::Applied && !c.replay && !c.outbox.is_empty());
    Ok(Applied {
        outcomes,
        new_outbox,
    })
}

/// Decides every change in order against the versions stored (see the module documentation).
/// An event logged already does not follow its entity's version, or its insert meets its
/// `_id`: either way `settle` finds it logged and answers AlreadyApplied.
async fn decide(
    db: &Db,
    changes: &[Change],
    keys: &[String],
    entries: &[Result<Document, Unwritable>],
) -> Result<Vec<Plan>, StoreError> {
    let mut firsts: HashMap<&str, &Change> = HashMap::new();
    for (c, key) in changes.iter().zip(keys) {
        firsts.entry(key.as_str()).or_insert(c);
    }
    let wanted: Vec<(EntityKind, &str, u64)> = firsts
        .values()
        .map(|c| {
            let e = &c.event;
            (
                e.entity_kind,
                e.entity_id.as_str(),
                c.expected_version.max(1),
            )
        })
        .collect();
    let found = versions_from(db, &wanted).await?;

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
    Ok(plans)
}

/// Groups the planned changes into lanes, each a sequence of ordered inserts of at most
/// `CHUNK` entries: short chains share a lane, a long chain has lanes of its own in sequence.
/// Lanes are independent: no chain spans two of them.
fn lanes(planned: &[usize], keys: &[String]) -> Vec<Vec<Vec<usize>>> {
    let mut chains: Vec<Vec<usize>> = Vec::new();
    let mut chain_of: HashMap<&str, usize> = HashMap::new();
    for &i in planned {
        let c = *chain_of.entry(keys[i].as_str()).or_insert_with(|| {
            chains.push(Vec::new());
            chains.len() - 1
        });
        chains[c].push(i);
    }
    let mut lanes: Vec<Vec<Vec<usize>>> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    for chain in chains {
        if chain.len() > CHUNK {
            lanes.push(chain.chunks(CHUNK).map(<[usize]>::to_vec).collect());
            continue;
        }
        if open.len() + chain.len() > CHUNK {
            lanes.push(vec![std::mem::take(&mut open)]);
        }
        open.extend(chain);
    }
    if !open.is_empty() {
        lanes.push(vec![open]);
    }
    for lane in &mut lanes {
        for chunk in lane.iter_mut() {
            chunk.sort_unstable();
        }
    }
    lanes
}

/// Inserts one lane; the plan each of its changes ends with.
async fn insert_lane(
    db: &Db,
    lane: Vec<Vec<usize>>,
    keys: &[String],
    documents: &HashMap<usize, Document>,
) -> Result<Vec<(usize, Plan)>, StoreError> {
    let mut settled = Vec::new();
    let mut broken: HashSet<&str> = HashSet::new();
    for chunk in lane {
        let mut queue: Vec<usize> = chunk;
        while !queue.is_empty() {
            queue.retain(|&i| {
                let dropped = broken.contains(keys[i].as_str());
                if dropped {
                    settled.push((i, Plan::Conflict));
                }
                !dropped
            });
            if queue.is_empty() {
                break;
            }
            let docs: Vec<&Document> = queue.iter().map(|i| &documents[i]).collect();
            let insert = db.event_log.insert_many(docs).ordered(true);
            let refused = db
                .within(async {
                    match insert.await {
                        Ok(_) => Ok(None),
                        Err(e) => first_refusal(e).map(Some),
                    }
                })
                .await?;
            let Some((p, refusal)) = refused else {
                settled.extend(
                    queue
                        .drain(..)
                        .map(|i| (i, Plan::Done(ApplyOutcome::Applied))),
                );
                break;
            };
            settled.extend(
                queue[..p]
                    .iter()
                    .map(|&i| (i, Plan::Done(ApplyOutcome::Applied))),
            );
            let failed = queue[p];
            // Whatever refused it, the rest of its chain was computed on top of it.
            broken.insert(keys[failed].as_str());
            settled.push((
                failed,
                match refusal {
                    // Another writer took the event or the version: `settle` tells which.
                    Refusal::Duplicate => Plan::Conflict,
                    Refusal::Refused(reason) => Plan::Done(ApplyOutcome::Refused { reason }),
                },
            ));
            queue.drain(..=p);
        }
    }
    Ok(settled)
}

enum Refusal {
    Duplicate,
    Refused(String),
}

/// The position and kind of the entry an ordered insert stopped at, or the error when the
/// insert failed as a whole (unreachable server, write concern).
fn first_refusal(error: mongodb::error::Error) -> Result<(usize, Refusal), StoreError> {
    if let ErrorKind::InsertMany(e) = error.kind.as_ref() {
        if e.write_concern_error.is_none() {
            if let Some(w) = e
                .write_errors
                .as_deref()
                .and_then(|w| w.iter().min_by_key(|w| w.index))
            {
                return match w.code {
                    DUPLICATE_KEY => Ok((w.index, Refusal::Duplicate)),
                    code if is_transient_code(code) => Err(classify(error)),
                    code => Ok((
                        w.index,
                        Refusal::Refused(format!(
                            "MongoDB refused the entry ({code}): {}",
                            w.message
                        )),
                    )),
                };
            }
        }
    }
    Err(classify(error))
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
    if let Err(e) = db.update_batch(ENTITIES, &statements).await {
        tracing::warn!(error = %e, "entity heads not written; reads complete them from the event log");
    }
}
