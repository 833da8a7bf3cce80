//! Pages of entities by status and broker (`Store::list_entities`), in `entity_id` order.
//!
//! The event log is the truth (see `read`): a head may lag behind its entries, or be missing
//! altogether when a process died between an apply's insert and its head write, so a listing
//! of heads could leave an entity out. A page is found on the log instead: the entries whose
//! status (or broker) matches, in `entity_id` order through an index, name the candidates;
//! each candidate's latest state (`read::latest`) decides whether it belongs, since an older
//! entry may match what the entity has left. A scan that keeps too few goes on after its last
//! candidate, so a page is full unless the log has no more.

use std::collections::BTreeSet;

use enrollstream_domain::EntityKind;
use enrollstream_ports::{EntityQuery, EntityRecord, StoreError};
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::IndexModel;

use crate::codec::{entity_key, Fields};
use crate::db::Db;
use crate::error::classify;
use crate::read::latest;

/// Where a broker submission keeps the broker's id in an application's state (the state is
/// stored as a BSON document, so the path is queryable and indexable).
const BROKER_ID: &str = "state.submission.broker.id";

/// Entries read per scan round, as a multiple of the page size: entities have a handful of
/// entries each, so one round usually fills a page.
const SCAN_FACTOR: usize = 4;
const MAX_SCAN: usize = 2_000;

/// One index per filter the API offers; each ends in `entity_id` so a scan is an index range.
/// One index per command: FerretDB 1.24 panics on a `createIndexes` naming several that exist.
pub(crate) async fn ensure_indexes(db: &Db) -> Result<(), StoreError> {
    let index = |keys: Document, name: &str| {
        IndexModel::builder()
            .keys(keys)
            .options(IndexOptions::builder().name(name.to_string()).build())
            .build()
    };
    for model in [
        index(
            doc! { "entity_kind": 1, "status": 1, "entity_id": 1 },
            "by_status",
        ),
        index(
            doc! { "entity_kind": 1, BROKER_ID: 1, "entity_id": 1 },
            "by_broker",
        ),
    ] {
        db.event_log.create_index(model).await.map_err(classify)?;
    }
    Ok(())
}

pub(crate) async fn list_entities(
    db: &Db,
    query: &EntityQuery,
) -> Result<Vec<EntityRecord>, StoreError> {
    let mut page = Vec::new();
    if query.limit == 0 {
        return Ok(page);
    }
    let scan = (query.limit * SCAN_FACTOR).clamp(1, MAX_SCAN);
    let mut after = query.after.clone();
    loop {
        let mut filter = doc! { "entity_kind": query.kind.as_str() };
        if let Some(status) = &query.status {
            filter.insert("status", status);
        }
        if let Some(broker) = &query.broker_id {
            filter.insert(BROKER_ID, broker);
        }
        if let Some(after) = &after {
            filter.insert("entity_id", doc! { "$gt": after });
        }
        let entries: Vec<Document> = db
            .within(async {
                db.event_log
                    .find(filter)
                    .sort(doc! { "entity_id": 1 })
                    .limit(i64::try_from(scan).unwrap_or(i64::MAX))
                    .projection(doc! { "entity_id": 1 })
                    .await
                    .map_err(classify)?
                    .try_collect()
                    .await
                    .map_err(classify)
            })
            .await?;
        let exhausted = entries.len() < scan;
        let candidates: BTreeSet<String> = entries
            .iter()
            .map(|d| {
                Ok(Fields::new(d, "event_log entry")
                    .str("entity_id")?
                    .to_string())
            })
            .collect::<Result<_, StoreError>>()?;
        let keys: Vec<(EntityKind, String)> = candidates
            .iter()
            .map(|id| (query.kind, id.clone()))
            .collect();
        let mut states = latest(db, &keys).await?;
        for id in &candidates {
            let Some(record) = states.remove(&entity_key(query.kind, id)) else {
                continue;
            };
            if matches(&record, query) {
                page.push(record);
                if page.len() == query.limit {
                    return Ok(page);
                }
            }
        }
        // Every entry of the last candidate need not have been read, but its latest state was:
        // the next round starts after it.
        match candidates.last() {
            Some(last) if !exhausted => after = Some(last.clone()),
            _ => return Ok(page),
        }
    }
}

/// Whether the entity as it is now, not as an older entry left it, belongs in the page.
fn matches(record: &EntityRecord, query: &EntityQuery) -> bool {
    let status = query.status.as_ref().is_none_or(|s| *s == record.status);
    let broker = query.broker_id.as_ref().is_none_or(|b| {
        record
            .state
            .pointer("/submission/broker/id")
            .and_then(|v| v.as_str())
            == Some(b.as_str())
    });
    status && broker
}
