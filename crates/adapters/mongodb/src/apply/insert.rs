//! The inserts of an apply: lanes of ordered `insert_many`s (see the parent module).

use std::collections::{HashMap, HashSet};

use enrollstream_ports::{ApplyOutcome, StoreError};
use mongodb::bson::Document;
use mongodb::error::ErrorKind;

use super::{Plan, WriteFence, CHUNK};
use crate::db::Db;
use crate::error::{classify, is_transient_code, DUPLICATE_KEY};

/// Groups the planned changes into lanes, each a sequence of ordered inserts of at most
/// `CHUNK` entries: short chains share a lane, a long chain has lanes of its own in sequence.
/// Lanes are independent: no chain spans two of them.
pub(super) fn lanes(planned: &[usize], keys: &[String]) -> Vec<Vec<Vec<usize>>> {
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
pub(super) async fn insert_lane(
    db: &Db,
    lane: Vec<Vec<usize>>,
    keys: &[String],
    documents: &HashMap<usize, Document>,
    fence: Option<&dyn WriteFence>,
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
            if let Some(fence) = fence {
                fence.before_insert().await?;
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
