//! Applying changes without multi-document transactions.
//!
//! Each change touches two documents: its entry in `event_log` (`_id` = event id, unique on
//! `(entity_kind, entity_id, version)`) and its entity in `entities`, which embeds the outbox.
//! They are written in two steps, each ONE atomic single-document write, fenced:
//!
//! 1. **Claim the log slot.** Insert the event into `event_log`. The unique index makes the
//!    insert a fence: at most one event holds version v of an entity. A duplicate key (code
//!    11000) on the event id means the event was seen before (maybe by an apply that crashed
//!    before step 2): carry on to step 2 to finish it. A duplicate on the version index means
//!    another event holds the slot: the change is a Conflict.
//! 2. **Move the entity.** Update the entity with a filter fenced on its version,
//!    `{_id, version: expected}` (an upsert of `{_id, version: 0}` when the entity is new, where a
//!    duplicate key means someone created it), setting state, status, version and
//!    last_event_id and adding the outbox messages (`outbox_pending: true`) in the same write.
//!    State and notifications therefore commit together or not at all, and the version fence
//!    means the messages are added once.
//! 3. **Explain a miss.** When the fenced write matched nothing, read the entity: if its version
//!    is at least the event's (and, by step 1, this event holds that slot of the log), the change
//!    was applied before: AlreadyApplied. Otherwise: Conflict with the entity's version.
//!
//! The invariant that makes this sound: an entity only reaches version v through a change whose
//! event holds log slot v. So "the log holds event E at version v and the entity's version is at
//! least v" is exactly "E is applied". A log entry above its entity's version is the trace of an
//! apply interrupted between steps 1 and 2 (or refused at step 2): it is not applied, `applied`,
//! `event_log` and `wait_applied` do not see it, its redelivery completes it, and a refused
//! change removes the entry it had just inserted, so that no foreign entry blocks the slot the
//! caller will retry with.
//!
//! Outbox message ids are fences too, across entities: a message id recorded once is never
//! recorded again. Alongside step 1, each message id is claimed in `outbox_index` (`_id` =
//! message id, with its event and entity): a duplicate key owned by another event means the id
//! is taken and the message is left out; owned by the same event, it is this change's own claim
//! from an interrupted attempt. The claim is only a fence and a locator (`mark_published` finds
//! the entity through it); the message itself is recorded by step 2, atomically with the state.
//! A refused change removes its claims with its log entry.
//!
//! Batches keep these guarantees in few round trips: two unordered `insert_many` (log slots and
//! message claims of the whole batch, sent concurrently), then one raw `update` command carries
//! one fenced write per entity (a run of chained changes of one
//! entity becomes one write to its last state). That command only reports totals, so each write
//! also sets a receipt token: when the total falls short, the receipts tell which writes took,
//! and the others are explained or retried one by one. A batch that repeats an event id is cut
//! into rounds at the repeat, so that the repeat sees the first occurrence's result.

use std::collections::{HashMap, HashSet};

use enrollstream_domain::ids::new_id;
use enrollstream_ports::{ApplyOutcome, Change, StoreError};
use mongodb::bson::{doc, Bson, Document};

use crate::codec::{date, entity_key, event_doc, int, to_bson, Fields, OutboxEntry};
use crate::db::{Db, Statement, ENTITIES};
use crate::error::{classify, duplicate_positions, is_duplicate_key};

pub(crate) async fn apply(db: &Db, changes: &[Change]) -> Result<Vec<ApplyOutcome>, StoreError> {
    let mut outcomes = Vec::with_capacity(changes.len());
    for round in rounds(changes) {
        outcomes.extend(Round::new(db, round).run().await?);
    }
    Ok(outcomes)
}

/// Cuts the batch where an event id repeats.
fn rounds(changes: &[Change]) -> Vec<Vec<&Change>> {
    let mut out = Vec::new();
    let mut current: Vec<&Change> = Vec::new();
    let mut seen = HashSet::new();
    for change in changes {
        if !seen.insert(change.event.event_id.as_str()) {
            out.push(std::mem::take(&mut current));
            seen = HashSet::from([change.event.event_id.as_str()]);
        }
        current.push(change);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A fenced write moving one entity through a run of chained changes.
struct Chain {
    key: String,
    members: Vec<usize>,
    receipt: String,
}

struct Round<'a> {
    db: &'a Db,
    changes: Vec<&'a Change>,
    keys: Vec<String>,
    outcomes: Vec<Option<ApplyOutcome>>,
    /// Log entries this round inserted (or rewrote): removed again if their change is refused.
    fresh: HashSet<usize>,
    /// Message ids this round claimed, with the event claiming them.
    claimed: HashMap<String, String>,
    /// The outbox messages each change records: its own, less ids claimed by other events.
    messages: Vec<Vec<OutboxEntry>>,
    /// Entities that refused a change in this round: later changes of theirs were computed on a
    /// state that does not exist, so they are refused without writing.
    refused: HashSet<String>,
}

impl<'a> Round<'a> {
    fn new(db: &'a Db, changes: Vec<&'a Change>) -> Self {
        let keys = changes
            .iter()
            .map(|c| entity_key(c.event.entity_kind, &c.event.entity_id))
            .collect();
        let n = changes.len();
        Self {
            db,
            changes,
            keys,
            outcomes: vec![None; n],
            fresh: HashSet::new(),
            claimed: HashMap::new(),
            messages: Vec::new(),
            refused: HashSet::new(),
        }
    }

    async fn run(mut self) -> Result<Vec<ApplyOutcome>, StoreError> {
        let docs = self
            .changes
            .iter()
            .map(|c| event_doc(&c.event))
            .collect::<Result<Vec<_>, _>>()?;
        let claims = self.claims();
        let (duplicates, owners) =
            tokio::try_join!(claim_slots(self.db, docs), claim_messages(self.db, &claims))?;
        let duplicates: HashSet<usize> = duplicates.into_iter().collect();
        self.fresh = (0..self.changes.len())
            .filter(|i| !duplicates.contains(i))
            .collect();
        self.claimed = claims
            .into_iter()
            .filter(|c| !owners.contains_key(&c.message_id))
            .map(|c| (c.message_id, c.event_id))
            .collect();
        let mut owners = owners;
        owners.extend(self.claimed.clone());
        self.messages = self.outbox_entries(&owners);
        if !duplicates.is_empty() {
            self.explain_duplicates(&duplicates).await?;
        }

        let (chains, alone) = self.chains();
        let statements = chains
            .iter()
            .map(|c| self.statement(&c.members, &c.receipt))
            .collect::<Result<Vec<_>, _>>()?;
        let mut retry = alone;
        if !statements.is_empty() {
            let result = self.db.update_batch(ENTITIES, &statements, false).await?;
            if result.matched == statements.len() as u64 && result.duplicates.is_empty() {
                for chain in &chains {
                    self.settle(&chain.members, ApplyOutcome::Applied);
                }
            } else {
                retry.extend(self.check_receipts(&chains).await?);
            }
        }
        retry.sort_unstable();
        for i in retry {
            self.apply_alone(i).await?;
        }
        self.discard_refused().await?;
        Ok(self
            .outcomes
            .into_iter()
            .map(|o| o.expect("every change of a round is settled"))
            .collect())
    }

    fn settle(&mut self, members: &[usize], outcome: ApplyOutcome) {
        for &i in members {
            self.outcomes[i] = Some(outcome.clone());
        }
    }

    fn refuse(&mut self, i: usize, current_version: u64) {
        self.refused.insert(self.keys[i].clone());
        self.outcomes[i] = Some(ApplyOutcome::Conflict { current_version });
    }

    /// The message ids of the round, each claimed by the first change carrying it.
    fn claims(&self) -> Vec<Claim> {
        let mut seen = HashSet::new();
        self.changes
            .iter()
            .enumerate()
            .flat_map(|(i, c)| c.outbox.iter().map(move |m| (i, c, m)))
            .filter(|(_, _, m)| seen.insert(m.id.as_str()))
            .map(|(i, c, m)| Claim {
                message_id: m.id.clone(),
                event_id: c.event.event_id.clone(),
                entity: self.keys[i].clone(),
            })
            .collect()
    }

    /// The messages each change records: those whose id its event owns, once each.
    fn outbox_entries(&self, owners: &HashMap<String, String>) -> Vec<Vec<OutboxEntry>> {
        self.changes
            .iter()
            .map(|c| {
                let seq = new_id();
                let mut taken = HashSet::new();
                c.outbox
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| {
                        owners
                            .get(&m.id)
                            .is_none_or(|owner| *owner == c.event.event_id)
                            && taken.insert(m.id.as_str())
                    })
                    .map(|(position, m)| OutboxEntry {
                        message: m.clone(),
                        event_id: c.event.event_id.clone(),
                        created_at: c.event.recorded_at,
                        seq: seq.clone(),
                        position: position as u64,
                        published: c.replay,
                    })
                    .collect()
            })
            .collect()
    }

    /// Step 1's duplicates: the event seen before (settled now if already applied), or its slot
    /// held by another event (a Conflict).
    async fn explain_duplicates(&mut self, duplicates: &HashSet<usize>) -> Result<(), StoreError> {
        let ids: Vec<&str> = duplicates
            .iter()
            .map(|&i| self.changes[i].event.event_id.as_str())
            .collect();
        let logged = self
            .db
            .find_all(
                &self.db.event_log,
                doc! { "_id": { "$in": ids } },
                Some(doc! { "entity_kind": 1, "entity_id": 1, "version": 1 }),
            )
            .await?;
        let mut slots: HashMap<String, (String, u64)> = HashMap::new();
        for d in &logged {
            let f = Fields::new(d, "event_log entry");
            let key = entity_key(f.kind("entity_kind")?, f.str("entity_id")?);
            slots.insert(f.str("_id")?.to_string(), (key, f.u64("version")?));
        }
        let mut keys: Vec<String> = duplicates.iter().map(|&i| self.keys[i].clone()).collect();
        keys.extend(slots.values().map(|(k, _)| k.clone()));
        let versions = entity_versions(self.db, keys).await?;
        let version_of = |key: &str| versions.get(key).copied().unwrap_or(0);

        let mut order: Vec<usize> = duplicates.iter().copied().collect();
        order.sort_unstable();
        for i in order {
            let change = self.changes[i];
            let current = version_of(&self.keys[i]);
            match slots.get(&change.event.event_id) {
                // Seen with this very slot: applied, or interrupted before step 2.
                Some((key, v)) if *key == self.keys[i] && *v == change.event.version => {
                    if current >= *v {
                        self.outcomes[i] = Some(ApplyOutcome::AlreadyApplied);
                    }
                }
                // Seen at another slot: applied there, or an interrupted apply computed on
                // another state, whose entry this change may take over.
                Some((key, v)) => {
                    if version_of(key) >= *v {
                        self.outcomes[i] = Some(ApplyOutcome::AlreadyApplied);
                    } else if self.rewrite_entry(change, *v).await? {
                        self.fresh.insert(i);
                    } else {
                        self.refuse(i, current);
                    }
                }
                // The slot is another event's.
                None => self.refuse(i, current),
            }
        }
        Ok(())
    }

    /// Replaces an unapplied log entry of this event (fenced on the version it holds).
    async fn rewrite_entry(&self, change: &Change, held: u64) -> Result<bool, StoreError> {
        let replacement = event_doc(&change.event)?;
        match self
            .db
            .event_log
            .replace_one(
                doc! { "_id": &change.event.event_id, "version": int(held)? },
                replacement,
            )
            .await
        {
            Ok(r) => Ok(r.matched_count == 1),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(classify(e)),
        }
    }

    /// Groups the unsettled changes into one chain per entity; the changes that do not extend
    /// their entity's chain are applied alone afterwards, in order.
    fn chains(&self) -> (Vec<Chain>, Vec<usize>) {
        let mut chains: Vec<Chain> = Vec::new();
        let mut open: HashMap<&str, usize> = HashMap::new();
        let mut closed: HashSet<&str> = HashSet::new();
        let mut alone = Vec::new();
        for (i, key) in self.keys.iter().enumerate() {
            let key = key.as_str();
            if self.outcomes[i].is_some() || self.refused.contains(key) {
                if open.remove(key).is_some() {
                    closed.insert(key);
                }
                if self.outcomes[i].is_none() {
                    alone.push(i);
                }
                continue;
            }
            if closed.contains(key) {
                alone.push(i);
                continue;
            }
            match open.get(key) {
                Some(&c) => {
                    let last = *chains[c].members.last().expect("a chain has members");
                    if self.changes[last].event.version == self.changes[i].expected_version {
                        chains[c].members.push(i);
                    } else {
                        open.remove(key);
                        closed.insert(key);
                        alone.push(i);
                    }
                }
                None => {
                    open.insert(key, chains.len());
                    chains.push(Chain {
                        key: key.to_string(),
                        members: vec![i],
                        receipt: new_id(),
                    });
                }
            }
        }
        (chains, alone)
    }

    /// The fenced single-document write moving an entity through `members` (chained changes of
    /// one entity, oldest first).
    fn statement(&self, members: &[usize], receipt: &str) -> Result<Statement, StoreError> {
        let first = self.changes[members[0]];
        let last = self.changes[*members.last().expect("a chain has members")];
        let e = &last.event;
        let upsert = first.expected_version == 0;
        let mut set = doc! {
            "kind": e.entity_kind.as_str(),
            "entity_id": &e.entity_id,
            "version": int(e.version)?,
            "status": &last.status,
            "state": to_bson(&last.state)?,
            "last_event_id": &e.event_id,
            "updated_at": date(e.recorded_at),
            "receipt": receipt,
        };
        let entries: Vec<&OutboxEntry> = members.iter().flat_map(|&i| &self.messages[i]).collect();
        let mut update = Document::new();
        match entries
            .iter()
            .filter(|m| !m.published)
            .map(|m| m.seq.as_str())
            .min()
        {
            Some(oldest) => {
                set.insert("outbox_pending", true);
                update.insert("$min", doc! { "outbox_oldest": oldest });
            }
            None if upsert => {
                set.insert("outbox_pending", false);
            }
            None => {}
        }
        if !entries.is_empty() {
            let docs = entries
                .iter()
                .map(|m| m.to_doc().map(Bson::Document))
                .collect::<Result<Vec<_>, _>>()?;
            // $addToSet, not $push: nx-27017 stores $push-ed documents as JSON strings. With
            // distinct message ids the two are the same on MongoDB.
            update.insert("$addToSet", doc! { "outbox": { "$each": docs } });
        } else if upsert {
            set.insert("outbox", Bson::Array(Vec::new()));
        }
        update.insert("$set", set);
        Ok(Statement {
            filter: doc! { "_id": &self.keys[members[0]], "version": int(first.expected_version)? },
            update,
            upsert,
        })
    }

    /// After a batch fell short: chains whose receipt is on their entity took effect; the others'
    /// changes are returned to be applied one by one.
    async fn check_receipts(&mut self, chains: &[Chain]) -> Result<Vec<usize>, StoreError> {
        let keys: Vec<&str> = chains.iter().map(|c| c.key.as_str()).collect();
        let docs = self
            .db
            .find_all(
                &self.db.entities,
                doc! { "_id": { "$in": keys } },
                Some(doc! { "receipt": 1 }),
            )
            .await?;
        let receipts: HashSet<&str> = docs
            .iter()
            .filter_map(|d| d.get_str("receipt").ok())
            .collect();
        let mut retry = Vec::new();
        for chain in chains {
            if receipts.contains(chain.receipt.as_str()) {
                self.settle(&chain.members, ApplyOutcome::Applied);
            } else {
                retry.extend(chain.members.iter().copied());
            }
        }
        Ok(retry)
    }

    /// Steps 2 and 3 for one change on its own.
    async fn apply_alone(&mut self, i: usize) -> Result<(), StoreError> {
        let change = self.changes[i];
        if self.refused.contains(&self.keys[i]) {
            let current = entity_version(self.db, &self.keys[i]).await?;
            self.refuse(i, current);
            return Ok(());
        }
        let s = self.statement(&[i], &new_id())?;
        let took = match self
            .db
            .entities
            .update_one(s.filter, s.update)
            .upsert(s.upsert)
            .await
        {
            Ok(r) => r.matched_count > 0 || r.upserted_id.is_some(),
            Err(e) if is_duplicate_key(&e) => false,
            Err(e) => return Err(classify(e)),
        };
        if took {
            self.outcomes[i] = Some(ApplyOutcome::Applied);
            return Ok(());
        }
        let current = entity_version(self.db, &self.keys[i]).await?;
        if current >= change.event.version {
            self.outcomes[i] = Some(ApplyOutcome::AlreadyApplied);
        } else {
            self.refuse(i, current);
        }
        Ok(())
    }

    /// Removes the log entries and message claims this round wrote for changes it refused.
    async fn discard_refused(&self) -> Result<(), StoreError> {
        let refused: HashSet<&str> = self
            .changes
            .iter()
            .zip(&self.outcomes)
            .filter(|(_, o)| matches!(o, Some(ApplyOutcome::Conflict { .. })))
            .map(|(c, _)| c.event.event_id.as_str())
            .collect();
        if refused.is_empty() {
            return Ok(());
        }
        let entries: Vec<&str> = self
            .fresh
            .iter()
            .map(|&i| self.changes[i].event.event_id.as_str())
            .filter(|id| refused.contains(id))
            .collect();
        let claims: Vec<&str> = self
            .claimed
            .iter()
            .filter(|(_, owner)| refused.contains(owner.as_str()))
            .map(|(id, _)| id.as_str())
            .collect();
        if !entries.is_empty() {
            self.db
                .event_log
                .delete_many(doc! { "_id": { "$in": entries } })
                .await
                .map_err(classify)?;
        }
        if !claims.is_empty() {
            self.db
                .outbox_index
                .delete_many(doc! { "_id": { "$in": claims } })
                .await
                .map_err(classify)?;
        }
        Ok(())
    }
}

/// Step 1 for a whole batch; the positions whose insert hit a unique index.
async fn claim_slots(db: &Db, docs: Vec<Document>) -> Result<Vec<usize>, StoreError> {
    match db.event_log.insert_many(docs).ordered(false).await {
        Ok(_) => Ok(Vec::new()),
        Err(e) => duplicate_positions(e),
    }
}

/// A message id claimed by an event (a document of `outbox_index`).
struct Claim {
    message_id: String,
    event_id: String,
    entity: String,
}

/// Claims the message ids; answers the owners of those claimed before (by whichever event).
async fn claim_messages(db: &Db, claims: &[Claim]) -> Result<HashMap<String, String>, StoreError> {
    if claims.is_empty() {
        return Ok(HashMap::new());
    }
    let docs: Vec<Document> = claims
        .iter()
        .map(|c| doc! { "_id": &c.message_id, "event_id": &c.event_id, "entity": &c.entity })
        .collect();
    let taken = match db.outbox_index.insert_many(docs).ordered(false).await {
        Ok(_) => return Ok(HashMap::new()),
        Err(e) => duplicate_positions(e)?,
    };
    let ids: Vec<&str> = taken
        .iter()
        .map(|&i| claims[i].message_id.as_str())
        .collect();
    let found = db
        .find_all(&db.outbox_index, doc! { "_id": { "$in": ids } }, None)
        .await?;
    found
        .iter()
        .map(|d| {
            let f = Fields::new(d, "outbox_index entry");
            Ok((f.str("_id")?.to_string(), f.str("event_id")?.to_string()))
        })
        .collect()
}

/// The versions of the entities with these keys (absent ones are at version 0).
pub(crate) async fn entity_versions(
    db: &Db,
    keys: impl IntoIterator<Item = String>,
) -> Result<HashMap<String, u64>, StoreError> {
    let keys: Vec<String> = keys
        .into_iter()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let docs = db
        .find_all(
            &db.entities,
            doc! { "_id": { "$in": keys } },
            Some(doc! { "version": 1 }),
        )
        .await?;
    docs.iter()
        .map(|d| {
            let f = Fields::new(d, "entity");
            Ok((f.str("_id")?.to_string(), f.u64("version")?))
        })
        .collect()
}

pub(crate) async fn entity_version(db: &Db, key: &str) -> Result<u64, StoreError> {
    Ok(entity_versions(db, [key.to_string()])
        .await?
        .get(key)
        .copied()
        .unwrap_or(0))
}
