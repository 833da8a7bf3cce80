//! The live view of a store with generations: applies that fence themselves against a switch,
//! and the relay over every generation not dropped yet.
//!
//! A live apply costs one round trip more than on a store without generations: the pointer,
//! read again after the write (a lookup of a tiny collection). The pointer and the switch
//! lease before it come from the view (`MongoSettings::pointer_ttl`); while an earlier generation is not
//! dropped yet, the apply also asks it which of the batch's events it holds (one round trip
//! per such generation, concurrent with the versions the apply reads anyway).
//!
//! Why the check after the write is enough without transactions: the switch sets `switching`
//! on the pointer, then compares the generations, then moves the pointer. A write that lands
//! before the comparison is seen by it (the switch is refused until the build has it); one
//! that lands after it is followed by this apply's check, which then sees `switching` or the
//! moved pointer and applies the same changes to the build, without their messages.

use std::collections::{HashMap, HashSet};

use enrollstream_ports::{ApplyOutcome, Change, StoreError, StoredOutboxMessage};

use std::sync::Mutex;
use tokio::time::Instant;

use super::{Gens, View, WRITE_WITHIN};
use crate::apply::{self, Applied, Policy, WriteFence};
use crate::db::Db;
use crate::entry::Pending;
use crate::outbox::{self, Holders};
use crate::read::logged;

/// Where the relay's hand-outs and failed marks are logged (at debug and warn), so a test can
/// tell which generation a message went out from.
pub const RELAY_LOG: &str = "enrollstream_mongodb::relay";

pub(crate) async fn apply(gens: &Gens, changes: &[Change]) -> Result<Applied, StoreError> {
    let began = Instant::now();
    let view = gens.view().await?;
    if view.paused() {
        return Err(StoreError::Unavailable(
            "the read model is paused while a rebuild switches it to a rebuilt generation; applying waits".into(),
        ));
    }
    let active = view.pointer.generation;
    let earlier: Vec<Db> = earlier_than(gens, &view, active);
    let fence = Fence {
        gens,
        generation: active,
        until: Mutex::new(began + WRITE_WITHIN),
    };
    let policy = Policy {
        silent: false,
        announced_in: &earlier,
        fence: Some(&fence),
    };
    let applied = apply::apply(&gens.db(active), changes, &policy)
        .await
        .inspect_err(|_| gens.forget())?;
    follow(gens, active, changes, &applied.outcomes)
        .await
        .inspect_err(|_| gens.forget())?;
    Ok(applied)
}

/// A long apply reads the pointer again every `WRITE_WITHIN`: no insert goes to a generation
/// that was not seen active less than `WRITE_WITHIN` (plus the pointer's lifetime) before.
struct Fence<'a> {
    gens: &'a Gens,
    generation: u64,
    until: Mutex<Instant>,
}

#[async_trait::async_trait]
impl WriteFence for Fence<'_> {
    async fn before_insert(&self) -> Result<(), StoreError> {
        if Instant::now() < *self.until.lock().expect("fence") {
            return Ok(());
        }
        let now = self.gens.pointer().await?;
        if now.generation != self.generation {
            return Err(StoreError::Unavailable(
                "the read model switched generations during the apply; retried against the current one".into(),
            ));
        }
        *self.until.lock().expect("fence") = Instant::now() + WRITE_WITHIN;
        Ok(())
    }
}

/// The generations before `active` that are not dropped, oldest first.
fn earlier_than(gens: &Gens, view: &View, active: u64) -> Vec<Db> {
    view.pointer
        .retired
        .iter()
        .filter(|r| r.generation < active)
        .map(|r| gens.db(r.generation))
        .collect()
}

/// The fence after a live apply to `written` (see the module documentation).
async fn follow(
    gens: &Gens,
    written: u64,
    changes: &[Change],
    outcomes: &[ApplyOutcome],
) -> Result<(), StoreError> {
    let now = gens.pointer().await?;
    let mut targets: Vec<u64> = Vec::new();
    if now.generation != written {
        targets.push(now.generation);
    }
    if let Some(build) = now.switching_to().filter(|b| *b != written) {
        targets.push(build);
    }
    if targets.is_empty() {
        return Ok(());
    }
    let followed: Vec<Change> = changes
        .iter()
        .zip(outcomes)
        .filter(|(_, o)| matches!(o, ApplyOutcome::Applied | ApplyOutcome::AlreadyApplied))
        .map(|(c, _)| c.clone())
        .collect();
    if followed.is_empty() {
        return Ok(());
    }
    for target in targets {
        let silent = Policy {
            silent: true,
            ..Policy::default()
        };
        let done = apply::apply(&gens.db(target), &followed, &silent).await?;
        let odd = done
            .outcomes
            .iter()
            .filter(|o| !matches!(o, ApplyOutcome::Applied | ApplyOutcome::AlreadyApplied))
            .count();
        tracing::info!(
            written,
            target,
            changes = followed.len(),
            odd,
            "an apply raced a switch of the read model; applied to the generation switched to as well"
        );
    }
    Ok(())
}

/// Which of `ids` are applied: in the active generation, and while a switch is under way in
/// the build too (an event the build lacks is applied again, so that it follows).
pub(crate) async fn applied(gens: &Gens, ids: &[String]) -> Result<HashSet<String>, StoreError> {
    let view = gens.view().await?;
    let active = logged(&gens.db(view.pointer.generation), ids).await?;
    match view.pointer.switching_to() {
        None => Ok(active),
        Some(build) => {
            let built = logged(&gens.db(build), ids).await?;
            Ok(active.intersection(&built).cloned().collect())
        }
    }
}

/// Every generation the relay reads, oldest first.
fn outbox_generations(gens: &Gens, view: &View) -> Vec<Db> {
    let active = view.pointer.generation;
    let mut dbs = earlier_than(gens, view, active);
    dbs.push(gens.db(active));
    dbs
}

/// The oldest pending messages of every generation not dropped. A message of an event an
/// earlier generation holds is that generation's to publish (or published by it already): it
/// is taken out of the later generation unpublished, and never handed out from there.
pub(crate) async fn pending(
    gens: &Gens,
    limit: usize,
    holders: &Holders,
) -> Result<Vec<StoredOutboxMessage>, StoreError> {
    let view = gens.view().await?;
    if !view.pointer.retired.is_empty() && gens.drop_due() {
        if let Err(e) = super::build::drop_retired(gens).await {
            tracing::warn!(error = %e, "could not drop a retired generation; trying again later");
        }
    }
    let dbs = outbox_generations(gens, &view);
    let found = futures::future::try_join_all(
        dbs.iter()
            .map(|db| outbox::pending_ordered(db, limit, holders)),
    )
    .await?;
    let mut all: Vec<(u64, Pending)> = Vec::new();
    for (i, messages) in found.into_iter().enumerate() {
        let messages = superseded(&dbs[..i], &dbs[i], messages).await?;
        all.extend(messages.into_iter().map(|m| (dbs[i].generation, m)));
    }
    all.sort_by(|(_, a), (_, b)| (&a.seq, a.position).cmp(&(&b.seq, b.position)));
    let mut seen: HashSet<String> = HashSet::new();
    all.retain(|(_, m)| seen.insert(m.stored.id.clone()));
    all.truncate(limit);
    if tracing::enabled!(target: RELAY_LOG, tracing::Level::DEBUG) {
        let mut by_generation: HashMap<u64, Vec<&str>> = HashMap::new();
        for (g, m) in &all {
            by_generation.entry(*g).or_default().push(&m.stored.id);
        }
        for (generation, ids) in by_generation {
            tracing::debug!(target: RELAY_LOG, generation, ids = %ids.join(","), "outbox messages handed to the relay");
        }
    }
    Ok(all.into_iter().map(|(_, m)| m.stored).collect())
}

/// `messages` of `db` less those whose event one of `earlier` holds; those are taken out of
/// `db`'s entries.
async fn superseded(
    earlier: &[Db],
    db: &Db,
    messages: Vec<Pending>,
) -> Result<Vec<Pending>, StoreError> {
    if earlier.is_empty() || messages.is_empty() {
        return Ok(messages);
    }
    let events: Vec<String> = messages
        .iter()
        .map(|m| m.stored.event_id.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let held = futures::future::try_join_all(earlier.iter().map(|e| logged(e, &events))).await?;
    let held: HashSet<String> = held.into_iter().flatten().collect();
    if held.is_empty() {
        return Ok(messages);
    }
    let listed: Vec<String> = held.iter().cloned().collect();
    tracing::warn!(
        target: RELAY_LOG,
        generation = db.generation,
        events = %listed.join(","),
        "messages an earlier generation holds were recorded again; not published from this one"
    );
    outbox::clear(db, &listed).await?;
    Ok(messages
        .into_iter()
        .filter(|m| !held.contains(&m.stored.event_id))
        .collect())
}

/// Marks in every generation not dropped: a message may be pending in more than one.
pub(crate) async fn mark_published(
    gens: &Gens,
    ids: &[String],
    holders: &Holders,
) -> Result<(), StoreError> {
    let view = gens.view().await?;
    let dbs = outbox_generations(gens, &view);
    let marked = futures::future::try_join_all(
        dbs.iter()
            .map(|db| outbox::mark_published(db, ids, holders)),
    )
    .await;
    if let Err(e) = &marked {
        tracing::warn!(target: RELAY_LOG, ids = %ids.join(","), error = %e, "marking published failed; these messages go out again");
    }
    marked.map(drop)
}

pub(crate) async fn backlog(gens: &Gens) -> Result<u64, StoreError> {
    let view = gens.view().await?;
    let dbs = outbox_generations(gens, &view);
    let counts = futures::future::try_join_all(dbs.iter().map(outbox::backlog)).await?;
    Ok(counts.into_iter().sum())
}
