//! The API's idempotency keys: one document per key, inserted once (the `_id` is the fence).
//!
//! A key lives `idempotency_ttl` on the callers' clock, as in the SQLite store: a stored record
//! older than that when the key comes again counts as absent and is replaced. Expired records
//! are purged every `PURGE_EVERY` reservations and at start-up; MongoDB's TTL index (where the
//! server has one) only drops them sooner.

use std::time::Duration;

use chrono::{DateTime, Utc};
use enrollstream_ports::{IdempotencyRecord, Reservation, StoreError};
use mongodb::bson::doc;

use crate::codec::date;
use crate::db::Db;
use crate::entry::{idempotency_doc, idempotency_from};
use crate::error::{classify, is_duplicate_key};

/// Reservations between two purges of expired keys.
pub(crate) const PURGE_EVERY: u64 = 1024;

fn expired_before(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    now - chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)
}

pub(crate) async fn reserve(
    db: &Db,
    record: &IdempotencyRecord,
    ttl: Duration,
) -> Result<Reservation, StoreError> {
    let fresh = idempotency_doc(record)?;
    let expired = expired_before(record.created_at, ttl);
    // A few times at most: the stored record can expire, or be replaced, between two steps.
    for _ in 0..3 {
        match db.idempotency.insert_one(&fresh).await {
            Ok(_) => return Ok(Reservation::Reserved),
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(classify(e)),
        }
        let stored = db
            .idempotency
            .find_one(doc! { "_id": &record.key })
            .await
            .map_err(classify)?;
        let Some(stored) = stored else { continue };
        let stored = idempotency_from(&stored)?;
        if stored.created_at < expired {
            // Only the generation read: a record made meanwhile by another caller stays.
            db.idempotency
                .delete_one(doc! { "_id": &record.key, "created_at": date(stored.created_at) })
                .await
                .map_err(classify)?;
            continue;
        }
        return Ok(if stored.fingerprint == record.fingerprint {
            Reservation::Existing(Box::new(stored))
        } else {
            Reservation::Mismatch
        });
    }
    Err(StoreError::Unavailable(format!(
        "idempotency key {} keeps changing while being reserved",
        record.key
    )))
}

/// Drops the records that expired by `now` (a caller's time).
pub(crate) async fn purge(db: &Db, now: DateTime<Utc>, ttl: Duration) -> Result<u64, StoreError> {
    let result = db
        .idempotency
        .delete_many(doc! { "created_at": { "$lt": date(expired_before(now, ttl)) } })
        .await
        .map_err(classify)?;
    Ok(result.deleted_count)
}

/// The newest reservation's time: the store has no clock of its own, so start-up purges
/// measure expiry on the callers' clock as it last was.
pub(crate) async fn newest(db: &Db) -> Result<Option<DateTime<Utc>>, StoreError> {
    let found = db
        .idempotency
        .find_one(doc! {})
        .sort(doc! { "created_at": -1 })
        .await
        .map_err(classify)?;
    found
        .as_ref()
        .map(|d| idempotency_from(d).map(|r| r.created_at))
        .transpose()
}

pub(crate) async fn mark_published(db: &Db, key: &str) -> Result<(), StoreError> {
    db.idempotency
        .update_one(doc! { "_id": key }, doc! { "$set": { "published": true } })
        .await
        .map_err(classify)?;
    Ok(())
}
