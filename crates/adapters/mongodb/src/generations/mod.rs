//! Generations of the read model on MongoDB (the `Generations` port): a rebuild writes the next
//! generation into collections of its own while the active one serves, then moves the pointer.
//!
//! - Generation 1 is `event_log` and `entities` (a store never rebuilt this way is generation
//!   1 as it is); generation N > 1 is `event_log_g<N>` and `entities_g<N>`.
//! - `read_model_generations` is the pointer: one document per generation switched in
//!   (`_id: "active/<N>"`, with the retired generations not dropped yet; the highest names the
//!   active generation, none means 1), the build in progress (`_id: "build"`: its id and
//!   generation, its applied offsets, whether a switch to it is under way) and one marker per
//!   dropped generation (`_id: "dropped/<N>"`). Only the rebuild writes the build (one at a
//!   time, under its lease); a switch and a drop are inserts, fenced by their `_id`, so no two
//!   writers ever race on one document (FerretDB's updates are not atomic against each other).
//! - The switch is one insert: `active/<N+1>`. Without transactions, live applies cannot be
//!   kept out of it by the switch itself, so they fence themselves (see `live`): each
//!   reads the pointer again after writing and, when a switch began or happened meanwhile,
//!   applies the same changes to the generation it switches to, without outbox messages (the
//!   generation it wrote holds them, and stays until the relay drained it).
//! - The outbox lives in the log entries, so it is generational here: the relay reads every
//!   generation not dropped yet, and an event's messages are kept by exactly one of them (the
//!   earliest that holds the event; see `live`).
//! - A retired generation is dropped once `MongoSettings::retired_grace` passed since its switch
//!   and its outbox is empty, by `drop_retired` (the rebuild, and the relay every few seconds).

mod build;
pub(crate) mod live;
mod port;

use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use enrollstream_ports::{CommitPosition, StoreError, SWITCH_LEASE};
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::Collection;
use tokio::time::Instant;

use crate::codec::Fields;
use crate::db::{collection, Db};
use crate::error::classify;

pub(crate) const GENERATIONS: &str = "read_model_generations";
const ACTIVE: &str = "active/";
const BUILD: &str = "build";
const DROPPED: &str = "dropped/";

/// A live apply sends no insert later than this after the pointer last named its generation
/// active (a long one reads it again): with the pointer's lifetime (`MongoSettings::pointer_ttl`)
/// and one round trip, it bounds how long after a switch a write can still land in the
/// generation switched out (see `MongoSettings::retired_grace`).
pub(crate) const WRITE_WITHIN: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Build {
    pub(crate) id: String,
    pub(crate) generation: u64,
    pub(crate) applied: Vec<CommitPosition>,
}

/// A generation switched out and not dropped yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Retired {
    pub(crate) generation: u64,
    pub(crate) retired_at_ms: i64,
}

/// The pointer as its documents have it, less the retired generations already dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pointer {
    pub(crate) generation: u64,
    /// Oldest first.
    pub(crate) retired: Vec<Retired>,
    pub(crate) build: Option<Build>,
    /// A switch to the build is under way: live applies also write to the build.
    pub(crate) switching: bool,
}

impl Pointer {
    /// The build a live apply must also write to: the one a switch is under way to.
    pub(crate) fn switching_to(&self) -> Option<u64> {
        self.build
            .as_ref()
            .filter(|_| self.switching)
            .map(|b| b.generation)
    }
}

/// What a process knows of the pointer and the switch lease, and since when.
#[derive(Clone, Debug)]
pub(crate) struct View {
    pub(crate) pointer: Pointer,
    pub(crate) read_at: Instant,
    /// Until when the switch lease is held (milliseconds since the epoch), when it is.
    paused_until_ms: Option<i64>,
    lease_read_at: Option<Instant>,
}

impl View {
    pub(crate) fn paused(&self) -> bool {
        self.paused_until_ms
            .is_some_and(|until| until > Utc::now().timestamp_millis())
    }
}

/// The generations of one store, shared by its live and build views.
pub(crate) struct Gens {
    /// Generation 1's collections; the others are derived from it.
    pub(crate) db: Db,
    pointers: Collection<Document>,
    cache: Mutex<Option<View>>,
    /// The build this process opened: where the build view reads and applies.
    pub(crate) building: Mutex<Option<Build>>,
    pub(crate) grace: Duration,
    /// How long the pointer and the switch lease read are used (`MongoSettings::pointer_ttl`).
    ttl: Duration,
    last_drop: Mutex<Option<Instant>>,
}

impl Gens {
    pub(crate) fn new(db: Db, grace: Duration, ttl: Duration) -> Self {
        Self {
            ttl,
            pointers: collection(&db.database, GENERATIONS),
            db,
            cache: Mutex::new(None),
            building: Mutex::new(None),
            grace,
            last_drop: Mutex::new(None),
        }
    }

    pub(crate) fn db(&self, generation: u64) -> Db {
        self.db.generation(generation)
    }

    /// The pointer as stored now; remembered for `view`.
    pub(crate) async fn pointer(&self) -> Result<Pointer, StoreError> {
        let docs: Vec<Document> = self
            .db
            .within(async {
                self.pointers
                    .find(doc! {})
                    .await
                    .map_err(classify)?
                    .try_collect()
                    .await
                    .map_err(classify)
            })
            .await?;
        let pointer = pointer_from(&docs)?;
        let mut cache = self.cache.lock().expect("pointer cache");
        match cache.as_mut() {
            // Never back to an older generation: a lagging read must not undo a switch seen.
            Some(v) if v.pointer.generation > pointer.generation => {}
            Some(v) => {
                v.pointer = pointer.clone();
                v.read_at = Instant::now();
            }
            None => {
                *cache = Some(View {
                    pointer: pointer.clone(),
                    read_at: Instant::now(),
                    paused_until_ms: None,
                    lease_read_at: None,
                })
            }
        }
        Ok(pointer)
    }

    /// The pointer and the switch lease, read again where older than the pointer's lifetime.
    pub(crate) async fn view(&self) -> Result<View, StoreError> {
        let (pointer_stale, lease_stale) = {
            let cache = self.cache.lock().expect("pointer cache");
            match cache.as_ref() {
                None => (true, true),
                Some(v) => (
                    v.read_at.elapsed() >= self.ttl,
                    v.lease_read_at.is_none_or(|at| at.elapsed() >= self.ttl),
                ),
            }
        };
        let read_lease = async {
            if !lease_stale {
                return Ok(None);
            }
            let lease = crate::db::within(
                self.db.timeout(),
                crate::fences::lease(&self.db.database, SWITCH_LEASE),
            )
            .await?;
            Ok(Some(lease.map(|l| l.until.timestamp_millis())))
        };
        let read_pointer = async {
            match pointer_stale {
                true => self.pointer().await.map(Some),
                false => Ok(None),
            }
        };
        let (lease, read) = tokio::try_join!(read_lease, read_pointer)?;
        let mut cache = self.cache.lock().expect("pointer cache");
        // Forgotten meanwhile (another call failed): the pointer this call read will do.
        let pointer = match (cache.as_ref(), read) {
            (None, Some(pointer)) => pointer,
            (None, None) => {
                return Err(StoreError::Unavailable(
                    "the read model's pointer was forgotten; ask again".into(),
                ))
            }
            (Some(v), _) => v.pointer.clone(),
        };
        let view = cache.get_or_insert_with(|| View {
            pointer,
            read_at: Instant::now(),
            paused_until_ms: None,
            lease_read_at: None,
        });
        if let Some(until) = lease {
            view.paused_until_ms = until;
            view.lease_read_at = Some(Instant::now());
        }
        Ok(view.clone())
    }

    /// Forget what was read: after a failed apply, whose retry must not trust a pointer that
    /// a switch may have moved meanwhile.
    pub(crate) fn forget(&self) {
        *self.cache.lock().expect("pointer cache") = None;
    }

    /// This process took or released the switch lease: its own applies see it at once.
    pub(crate) fn lease_changed(&self) {
        if let Some(v) = self.cache.lock().expect("pointer cache").as_mut() {
            v.lease_read_at = None;
        }
    }

    /// Whether the relay should try to drop retired generations now (every few seconds).
    fn drop_due(&self) -> bool {
        let mut last = self.last_drop.lock().expect("drop clock");
        let due = last.is_none_or(|at| at.elapsed() >= Duration::from_secs(5));
        if due {
            *last = Some(Instant::now());
        }
        due
    }
}

fn pointer_from(docs: &[Document]) -> Result<Pointer, StoreError> {
    let mut dropped = Vec::new();
    let mut active: Option<(u64, &Document)> = None;
    let mut build = None;
    for d in docs {
        let id = Fields::new(d, "generations document").str("_id")?;
        if id == BUILD {
            build = Some(d);
        } else if let Some(g) = id.strip_prefix(ACTIVE).and_then(|g| g.parse::<u64>().ok()) {
            if active.is_none_or(|(a, _)| g > a) {
                active = Some((g, d));
            }
        } else if let Some(g) = id.strip_prefix(DROPPED).and_then(|g| g.parse::<u64>().ok()) {
            dropped.push(g);
        }
    }
    let generation = active.map_or(1, |(g, _)| g.max(1));
    let mut retired = Vec::new();
    if let Some((_, d)) = active {
        for r in d
            .get_array("retired")
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let r = r
                .as_document()
                .ok_or_else(|| crate::error::corrupt("generations pointer", "retired"))?;
            let rf = Fields::new(r, "retired generation");
            let g = rf.u64("generation")?;
            if !dropped.contains(&g) {
                retired.push(Retired {
                    generation: g,
                    retired_at_ms: rf.i64("retired_at_ms")?,
                });
            }
        }
    }
    retired.sort_by_key(|r| r.generation);
    let (build, switching) = match build.map(build_from).transpose()? {
        // A build of a generation already switched in (or older) is what a switch left.
        Some((b, switching)) if b.generation == generation + 1 => (Some(b), switching),
        _ => (None, false),
    };
    Ok(Pointer {
        generation,
        retired,
        build,
        switching,
    })
}

fn build_from(b: &Document) -> Result<(Build, bool), StoreError> {
    let bf = Fields::new(b, "build");
    let mut applied = Vec::new();
    for p in b
        .get_array("applied")
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let p = p
            .as_document()
            .ok_or_else(|| crate::error::corrupt("build", "applied"))?;
        let pf = Fields::new(p, "build progress");
        applied.push(CommitPosition {
            topic: pf.str("topic")?.to_string(),
            partition: i32::try_from(pf.i64("partition")?)
                .map_err(|_| crate::error::corrupt("build progress", "partition"))?,
            next_offset: pf.i64("next_offset")?,
        });
    }
    applied.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let build = Build {
        id: bf.str("id")?.to_string(),
        generation: bf.u64("generation")?,
        applied,
    };
    Ok((build, b.get_bool("switching").unwrap_or(false)))
}

fn build_doc(build: &Build, switching: bool) -> Document {
    let applied: Vec<Bson> = build
        .applied
        .iter()
        .map(|p| {
            Bson::Document(doc! {
                "topic": &p.topic, "partition": i64::from(p.partition), "next_offset": p.next_offset,
            })
        })
        .collect();
    doc! {
        "_id": BUILD, "id": &build.id, "generation": build.generation as i64, "applied": applied,
        "switching": switching,
    }
}

fn retired_doc(r: &Retired) -> Bson {
    Bson::Document(doc! { "generation": r.generation as i64, "retired_at_ms": r.retired_at_ms })
}
