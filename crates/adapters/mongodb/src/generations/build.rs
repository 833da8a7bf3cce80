//! The rebuild's side: opening a build, its progress, the comparison with the active
//! generation, the switch, and dropping retired generations.
//!
//! Crash windows, each costing at most a retry: killed after `open_shadow` wrote the pointer
//! and before the collections exist, the next open (or apply) creates them; killed after
//! `switching` was set, live applies go on also writing to the build (without messages) until
//! the next rebuild opens, resumes and switches it; killed after the switch, the retired
//! generation is dropped by the relay once drained.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use enrollstream_domain::ids::new_id;
use enrollstream_ports::{CommitPosition, ShadowBuild, StoreError, SWITCH_LEASE};
use mongodb::bson::{doc, Bson, Document};

use super::{build_doc, retired_doc, Build, Gens, Pointer, Retired, ACTIVE, BUILD, DROPPED};
use crate::codec::Fields;
use crate::db::{collection_names, Db};
use crate::error::{classify, is_duplicate_key};

/// Events listed when a switch is refused for missing ones.
const MISSING_PAGE: usize = 100;

pub(crate) enum Refusal {
    Missing(Vec<String>),
    NotPaused,
}

pub(crate) async fn open_shadow(gens: &Gens, fresh: bool) -> Result<ShadowBuild, StoreError> {
    let pointer = gens.pointer().await?;
    if let (Some(build), false) = (pointer.build.clone(), fresh) {
        // The collections may be missing after a kill right after the build was written.
        prepare(&gens.db(build.generation)).await?;
        *gens.building.lock().expect("build") = Some(build.clone());
        return Ok(shadow_build(&build));
    }
    let build = Build {
        id: new_id(),
        generation: pointer.generation + 1,
        applied: Vec::new(),
    };
    // The build first: from here on no apply follows into the collections of a replaced
    // build (`switching` is cleared), and a kill leaves a build that the next open resumes.
    write_build(gens, None, &build, false).await?;
    let db = gens.db(build.generation);
    for name in [db.event_log_name(), db.entities_name()] {
        drop_collection(&db, &name).await?;
    }
    prepare(&db).await?;
    *gens.building.lock().expect("build") = Some(build.clone());
    Ok(shadow_build(&build))
}

fn shadow_build(build: &Build) -> ShadowBuild {
    ShadowBuild {
        generation: build.generation,
        build_id: build.id.clone(),
        applied: build.applied.clone(),
    }
}

/// The indexes of a generation (creating them creates its collections).
async fn prepare(db: &Db) -> Result<(), StoreError> {
    db.within(db.ensure_log_indexes()).await?;
    db.within(crate::listing::ensure_indexes(db)).await
}

/// Writes the build document whole: where `replacing` is given, only over that build (an
/// error when another replaced it). Only the rebuild holding the shadow lease writes it.
async fn write_build(
    gens: &Gens,
    replacing: Option<&str>,
    build: &Build,
    switching: bool,
) -> Result<(), StoreError> {
    let filter = match replacing {
        Some(id) => doc! { "_id": BUILD, "id": id },
        None => doc! { "_id": BUILD },
    };
    let document = build_doc(build, switching);
    let pointers = &gens.pointers;
    let done = gens
        .db
        .within(async {
            pointers
                .replace_one(filter, document)
                .upsert(replacing.is_none())
                .await
                .map_err(classify)
        })
        .await?;
    if replacing.is_some() && done.matched_count == 0 {
        return Err(StoreError::Fatal(format!(
            "build {} is not the build in progress: another rebuild replaced it",
            build.id
        )));
    }
    gens.forget();
    Ok(())
}

async fn drop_collection(db: &Db, name: &str) -> Result<(), StoreError> {
    let collection = db.database.collection::<Document>(name);
    db.within(async {
        match collection.drop().await {
            Ok(()) => Ok(()),
            // "ns not found" on servers that refuse to drop what does not exist.
            Err(e) if matches!(e.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == 26) => Ok(()),
            Err(e) => Err(classify(e)),
        }
    })
    .await
}

/// The open build as the pointer has it, if it is `build_id`.
async fn current_build(gens: &Gens, build_id: &str) -> Result<(Pointer, Build), StoreError> {
    let pointer = gens.pointer().await?;
    match pointer.build.clone() {
        Some(b) if b.id == build_id => Ok((pointer, b)),
        open => Err(StoreError::Fatal(format!(
            "build {build_id} is not the build in progress ({:?}): another rebuild replaced it",
            open.map(|b| b.id)
        ))),
    }
}

pub(crate) async fn record_progress(
    gens: &Gens,
    build_id: &str,
    positions: &[CommitPosition],
) -> Result<(), StoreError> {
    let (pointer, mut build) = current_build(gens, build_id).await?;
    for p in positions {
        match build
            .applied
            .iter_mut()
            .find(|a| a.topic == p.topic && a.partition == p.partition)
        {
            Some(a) => a.next_offset = a.next_offset.max(p.next_offset),
            None => build.applied.push(p.clone()),
        }
    }
    write_build(gens, Some(build_id), &build, pointer.switching).await
}

/// Events of the active generation the build lacks, by their source: every id of both, read
/// whole (no join on FerretDB) and compared here.
pub(crate) async fn missing(gens: &Gens, limit: usize) -> Result<Vec<String>, StoreError> {
    let pointer = gens.pointer().await?;
    let build = pointer
        .build
        .as_ref()
        .ok_or_else(|| StoreError::Fatal("no build of the read model is open".into()))?;
    missing_in(gens, pointer.generation, build.generation, limit).await
}

async fn missing_in(
    gens: &Gens,
    active: u64,
    build: u64,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let (a, b) = (gens.db(active), gens.db(build));
    let (live, built) = tokio::try_join!(
        a.find_all(&a.event_log, doc! {}, Some(doc! { "_id": 1, "source": 1 })),
        b.find_all(&b.event_log, doc! {}, Some(doc! { "_id": 1 }))
    )?;
    let built: HashSet<&str> = built.iter().filter_map(|d| d.get_str("_id").ok()).collect();
    let mut out = Vec::new();
    for d in &live {
        let f = Fields::new(d, "event_log entry");
        let id = f.str("_id")?;
        if built.contains(id) {
            continue;
        }
        out.push(
            f.opt_str("source")?
                .unwrap_or_else(|| format!("event {id}")),
        );
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

pub(crate) async fn switch(
    gens: &Gens,
    build_id: &str,
    owner: &str,
    held_past: DateTime<Utc>,
) -> Result<Result<u64, Refusal>, StoreError> {
    let (pointer, build) = current_build(gens, build_id).await?;
    let lease = gens
        .db
        .within(crate::fences::lease(&gens.db.database, SWITCH_LEASE))
        .await?;
    if !lease.is_some_and(|l| l.owner == owner && l.until > held_past) {
        return Ok(Err(Refusal::NotPaused));
    }
    // From here, a live apply that writes after the comparison below also writes to the
    // build (see `live`), so the comparison cannot miss one.
    if !pointer.switching {
        write_build(gens, Some(build_id), &build, true).await?;
    }
    let missing = missing_in(gens, pointer.generation, build.generation, MISSING_PAGE).await?;
    if !missing.is_empty() {
        write_build(gens, Some(build_id), &build, false).await?;
        return Ok(Err(Refusal::Missing(missing)));
    }
    let now = Utc::now().timestamp_millis();
    let mut retired: Vec<Bson> = pointer.retired.iter().map(retired_doc).collect();
    retired.push(retired_doc(&Retired {
        generation: pointer.generation,
        retired_at_ms: now,
    }));
    // The switch: one insert, fenced by its `_id` (one switch per generation).
    let active = doc! {
        "_id": format!("{ACTIVE}{}", build.generation),
        "retired": retired,
        "build_id": &build.id,
        "switched_at_ms": now,
    };
    let pointers = &gens.pointers;
    gens.db
        .within(async {
            match pointers.insert_one(active).await {
                Ok(_) => Ok(()),
                Err(e) if is_duplicate_key(&e) => Err(StoreError::Fatal(format!(
                    "generation {} was switched in by another rebuild",
                    build.generation
                ))),
                Err(e) => Err(classify(e)),
            }
        })
        .await?;
    gens.forget();
    *gens.building.lock().expect("build") = None;
    if let Err(e) = crate::fences::release_lease(&gens.db.database, SWITCH_LEASE, owner).await {
        tracing::warn!(error = %e, "the switch lease was not released; it expires by itself");
    }
    gens.lease_changed();
    Ok(Ok(build.generation))
}

/// Drops each retired generation switched out at least the grace ago whose outbox is empty;
/// the others stay (the relay still reads them). Idempotent.
pub(crate) async fn drop_retired(gens: &Gens) -> Result<(), StoreError> {
    let pointer = gens.pointer().await?;
    let now = Utc::now().timestamp_millis();
    let grace = i64::try_from(gens.grace.as_millis()).unwrap_or(i64::MAX);
    for r in &pointer.retired {
        if now.saturating_sub(r.retired_at_ms) < grace {
            continue;
        }
        let db = gens.db(r.generation);
        if crate::outbox::any_pending_in(&db).await? {
            tracing::info!(
                generation = r.generation,
                "a retired generation still holds messages to publish; dropped once the relay drained it"
            );
            continue;
        }
        let (log, entities) = collection_names(r.generation);
        drop_collection(&db, &log).await?;
        drop_collection(&db, &entities).await?;
        let marker = doc! { "_id": format!("{DROPPED}{}", r.generation), "dropped_at_ms": now };
        match gens.pointers.insert_one(marker).await {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(classify(e)),
        }
        tracing::info!(generation = r.generation, "retired generation dropped");
        gens.forget();
    }
    Ok(())
}
