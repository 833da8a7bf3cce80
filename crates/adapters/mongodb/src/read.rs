//! Reading the read model: what is applied, and the latest state of entities.
//!
//! The event log is the truth: an event is applied exactly when its entry exists, and an
//! entity's state is the state of its entry with the highest version. Heads (`entities`) cache
//! that state so a batch reads its entities by `_id`, but a head may lag behind the log (the
//! process died between an apply's insert and its head write) or, on a server whose updates
//! are not atomic, briefly fall back to an older version. So every read of a head is
//! completed by the entries above the head's version: usually none, one indexed range each.
//! With [`Lookups::Point`] a batch reads no heads: one find per entity of its latest entry is
//! one query where the head and the entries above it would be two, each costing the server
//! about the same whatever it returns (docs/benchmarks.md). Heads are still written, for
//! listings.

use std::collections::{HashMap, HashSet};

use enrollstream_domain::EntityKind;
use enrollstream_ports::{EntityRecord, StoreError};
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{doc, Document};

use crate::codec::{entity_key, int, Fields};
use crate::db::{Db, POINT_LOOKUPS_IN_FLIGHT};
use crate::entry::{entity_from_entry, entity_from_head, entity_projection};
use crate::error::classify;
use crate::settings::Lookups;

/// Which of `ids` have their entry in the event log, i.e. are applied.
pub(crate) async fn logged(db: &Db, ids: &[String]) -> Result<HashSet<String>, StoreError> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let docs = db
        .find_in(&db.event_log, "_id", ids, Some(doc! { "_id": 1 }))
        .await?;
    docs.iter()
        .map(|d| Ok(Fields::new(d, "event_log entry").str("_id")?.to_string()))
        .collect()
}

/// The latest state of one entity: its entry with the highest version.
pub(crate) async fn latest_one(
    db: &Db,
    kind: EntityKind,
    id: &str,
) -> Result<Option<EntityRecord>, StoreError> {
    db.event_log
        .find_one(doc! { "entity_kind": kind.as_str(), "entity_id": id })
        .sort(doc! { "version": -1 })
        .projection(entity_projection())
        .await
        .map_err(classify)?
        .as_ref()
        .map(entity_from_entry)
        .transpose()
}

/// The latest state of each existing entity among `keys`, by entity key: the heads, completed
/// by the entries above them, in two round trips; with [`Lookups::Point`], each entity's
/// latest entry, a find each.
pub(crate) async fn latest(
    db: &Db,
    keys: &[(EntityKind, String)],
) -> Result<HashMap<String, EntityRecord>, StoreError> {
    let keys: HashMap<String, &(EntityKind, String)> =
        keys.iter().map(|k| (entity_key(k.0, &k.1), k)).collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    if db.lookups() == Lookups::Point {
        return latest_entries(db, keys.into_values()).await;
    }
    let ids: Vec<&String> = keys.keys().collect();
    let mut found: HashMap<String, EntityRecord> = HashMap::new();
    for d in db.find_in(&db.entities, "_id", &ids, None).await? {
        let record = entity_from_head(&d)?;
        found.insert(entity_key(record.kind, &record.id), record);
    }
    let clauses = keys
        .iter()
        .map(|(key, (kind, id))| {
            let above = found.get(key).map_or(0, |r| r.version);
            Ok(doc! {
                "entity_kind": kind.as_str(),
                "entity_id": id,
                "version": { "$gt": int(above)? },
            })
        })
        .collect::<Result<Vec<Document>, StoreError>>()?;
    let later = db
        .find_any(&db.event_log, clauses, Some(entity_projection()))
        .await?;
    for d in &later {
        let record = entity_from_entry(d)?;
        let key = entity_key(record.kind, &record.id);
        if found.get(&key).is_none_or(|r| r.version < record.version) {
            found.insert(key, record);
        }
    }
    Ok(found)
}

/// Each entity's latest entry, one find per entity, [`POINT_LOOKUPS_IN_FLIGHT`] at a time.
async fn latest_entries<'a>(
    db: &Db,
    keys: impl Iterator<Item = &'a (EntityKind, String)>,
) -> Result<HashMap<String, EntityRecord>, StoreError> {
    // Made before they are streamed, as in `Db::find_each` (rust-lang/rust#102211).
    let finds: Vec<_> = keys
        .map(|(kind, id)| db.within(latest_one(db, *kind, id)))
        .collect();
    let found: Vec<Option<EntityRecord>> = futures::stream::iter(finds)
        .buffer_unordered(POINT_LOOKUPS_IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(found
        .into_iter()
        .flatten()
        .map(|r| (entity_key(r.kind, &r.id), r))
        .collect())
}

/// For each `(kind, id, from)`, the highest version of the entity's entries at or above
/// `from` (absent when it has none there). One round trip, usually one small document each.
pub(crate) async fn versions_from(
    db: &Db,
    wanted: &[(EntityKind, &str, u64)],
) -> Result<HashMap<String, u64>, StoreError> {
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let clauses = wanted
        .iter()
        .map(|(kind, id, from)| {
            Ok(doc! {
                "entity_kind": kind.as_str(),
                "entity_id": *id,
                "version": { "$gte": int(*from)? },
            })
        })
        .collect::<Result<Vec<Document>, StoreError>>()?;
    let docs = db
        .find_any(
            &db.event_log,
            clauses,
            Some(doc! { "entity_kind": 1, "entity_id": 1, "version": 1 }),
        )
        .await?;
    let mut versions: HashMap<String, u64> = HashMap::new();
    for d in &docs {
        let f = Fields::new(d, "event_log entry");
        let key = entity_key(f.kind("entity_kind")?, f.str("entity_id")?);
        let version = f.u64("version")?;
        let v = versions.entry(key).or_insert(version);
        *v = (*v).max(version);
    }
    Ok(versions)
}
