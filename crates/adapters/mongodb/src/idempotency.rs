//! The API's idempotency keys: one document per key, inserted once (the `_id` is the fence),
//! expired by a TTL index on `created_at`.

use enrollstream_ports::{IdempotencyRecord, Reservation, StoreError};
use mongodb::bson::doc;

use crate::codec::{idempotency_doc, idempotency_from};
use crate::db::Db;
use crate::error::{classify, is_duplicate_key};

pub(crate) async fn reserve(
    db: &Db,
    record: &IdempotencyRecord,
) -> Result<Reservation, StoreError> {
    let fresh = idempotency_doc(record)?;
    // Twice at most: the stored record can expire between the refused insert and the read.
    for _ in 0..2 {
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
        if let Some(stored) = stored {
            let stored = idempotency_from(&stored)?;
            return Ok(if stored.fingerprint == record.fingerprint {
                Reservation::Existing(Box::new(stored))
            } else {
                Reservation::Mismatch
            });
        }
    }
    Err(StoreError::Unavailable(format!(
        "idempotency key {} keeps expiring while being reserved",
        record.key
    )))
}

pub(crate) async fn mark_published(db: &Db, key: &str) -> Result<(), StoreError> {
    db.idempotency
        .update_one(doc! { "_id": key }, doc! { "$set": { "published": true } })
        .await
        .map_err(classify)?;
    Ok(())
}
