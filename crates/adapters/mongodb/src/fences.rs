//! Parked outbox messages and named leases, in collections of their own (`outbox_parked`,
//! `leases`) beside the read model, so they depend on nothing of how entities keep their
//! outbox. Each write is one atomic single-document operation, fenced by its `_id`.

use chrono::{DateTime, Utc};
use enrollstream_ports::{Lease, OutboundMessage, StoreError, StoredOutboxMessage};
use mongodb::bson::{doc, Binary, Document};
use mongodb::options::ReturnDocument;
use mongodb::{Collection, Database};

use crate::db::write_concern;
use crate::error::{classify, corrupt, is_duplicate_key};

pub(crate) const PARKED: &str = "outbox_parked";
pub(crate) const LEASES: &str = "leases";

fn collection(database: &Database, name: &str) -> Collection<Document> {
    database.collection_with_options(
        name,
        mongodb::options::CollectionOptions::builder()
            .write_concern(write_concern())
            .read_concern(mongodb::options::ReadConcern::majority())
            .build(),
    )
}

/// A unique-index refusal: a write error of an insert, a command error of `findAndModify`.
fn duplicate(e: &mongodb::error::Error) -> bool {
    use mongodb::error::ErrorKind;
    is_duplicate_key(e)
        || matches!(e.kind.as_ref(), ErrorKind::Command(c) if c.code == crate::error::DUPLICATE_KEY)
}

pub(crate) async fn park(
    database: &Database,
    m: &StoredOutboxMessage,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    // Documents, not pairs: FerretDB refuses nested arrays.
    let headers: Vec<Document> = m
        .message
        .headers
        .iter()
        .map(|(k, v)| doc! { "k": k, "v": v })
        .collect();
    let document = doc! {
        "_id": &m.id,
        "topic": &m.topic,
        "key": &m.message.key,
        "headers": headers,
        "payload": Binary { subtype: mongodb::bson::spec::BinarySubtype::Generic, bytes: m.message.payload.clone() },
        "event_id": &m.event_id,
        "created_at_ms": m.created_at.timestamp_millis(),
        "reason": reason,
        "parked_at_ms": at.timestamp_millis(),
    };
    match collection(database, PARKED).insert_one(document).await {
        Ok(_) => Ok(()),
        Err(e) if duplicate(&e) => Ok(()),
        Err(e) => Err(classify(e)),
    }
}

pub(crate) async fn parked(
    database: &Database,
    limit: usize,
) -> Result<Vec<(StoredOutboxMessage, String)>, StoreError> {
    use futures::TryStreamExt;
    let found: Vec<Document> = collection(database, PARKED)
        .find(doc! {})
        .sort(doc! { "parked_at_ms": 1, "_id": 1 })
        .limit(i64::try_from(limit).unwrap_or(i64::MAX))
        .await
        .map_err(classify)?
        .try_collect()
        .await
        .map_err(classify)?;
    found.iter().map(read_parked).collect()
}

fn read_parked(d: &Document) -> Result<(StoredOutboxMessage, String), StoreError> {
    let bad = |what: &str| corrupt("parked outbox message", what);
    let text = |k: &str| d.get_str(k).map(str::to_string).map_err(|_| bad(k));
    let headers = d
        .get_array("headers")
        .map_err(|_| bad("headers"))?
        .iter()
        .map(|pair| {
            let pair = pair.as_document().ok_or_else(|| bad("headers"))?;
            match (pair.get_str("k"), pair.get_str("v")) {
                (Ok(k), Ok(v)) => Ok((k.to_string(), v.to_string())),
                _ => Err(bad("headers")),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let payload = d
        .get_binary_generic("payload")
        .map_err(|_| bad("payload"))?
        .clone();
    let created = d
        .get_i64("created_at_ms")
        .map_err(|_| bad("created_at_ms"))?;
    Ok((
        StoredOutboxMessage {
            id: text("_id")?,
            topic: text("topic")?,
            message: OutboundMessage {
                key: text("key")?,
                headers,
                payload,
            },
            event_id: text("event_id")?,
            created_at: DateTime::from_timestamp_millis(created)
                .ok_or_else(|| bad("created_at_ms"))?,
        },
        text("reason")?,
    ))
}

/// Taken when free, expired or ours: an upsert whose filter matches only such a lease; when
/// another owner holds it, the upsert's insert hits the `_id` and the holder is read back.
pub(crate) async fn take_lease(
    database: &Database,
    name: &str,
    owner: &str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<Lease>, StoreError> {
    let leases = collection(database, LEASES);
    let filter = doc! {
        "_id": name,
        "$or": [ { "owner": owner }, { "until_ms": { "$lte": now.timestamp_millis() } } ],
    };
    let update = doc! { "$set": { "owner": owner, "until_ms": until.timestamp_millis() } };
    let taken = leases
        .find_one_and_update(filter, update)
        .upsert(true)
        .return_document(ReturnDocument::After)
        .await;
    match taken {
        Ok(_) => Ok(None),
        Err(e) if duplicate(&e) => {
            let holder = leases
                .find_one(doc! { "_id": name })
                .await
                .map_err(classify)?
                .ok_or_else(|| StoreError::Unavailable(format!("lease {name} moved; ask again")))?;
            Ok(Some(read_lease(&holder)?))
        }
        Err(e) => Err(classify(e)),
    }
}

pub(crate) async fn release_lease(
    database: &Database,
    name: &str,
    owner: &str,
) -> Result<(), StoreError> {
    collection(database, LEASES)
        .delete_one(doc! { "_id": name, "owner": owner })
        .await
        .map_err(classify)?;
    Ok(())
}

pub(crate) async fn leases(
    database: &Database,
    prefix: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Lease>, StoreError> {
    use futures::TryStreamExt;
    // No regular expression: a prefix range on `_id` is exact and uses the index.
    let upper = format!("{prefix}\u{10ffff}");
    let found: Vec<Document> = collection(database, LEASES)
        .find(doc! {
            "_id": { "$gte": prefix, "$lt": upper },
            "until_ms": { "$gt": now.timestamp_millis() },
        })
        .await
        .map_err(classify)?
        .try_collect()
        .await
        .map_err(classify)?;
    found.iter().map(read_lease).collect()
}

/// The lease `name` as stored, expired or not (one lookup by `_id`).
pub(crate) async fn lease(database: &Database, name: &str) -> Result<Option<Lease>, StoreError> {
    collection(database, LEASES)
        .find_one(doc! { "_id": name })
        .await
        .map_err(classify)?
        .as_ref()
        .map(read_lease)
        .transpose()
}

fn read_lease(d: &Document) -> Result<Lease, StoreError> {
    let bad = |what: &str| corrupt("lease", what);
    let until = d
        .get_i64("until_ms")
        .or_else(|_| d.get_i32("until_ms").map(i64::from))
        .map_err(|_| bad("until_ms"))?;
    Ok(Lease {
        name: d.get_str("_id").map_err(|_| bad("_id"))?.to_string(),
        owner: d.get_str("owner").map_err(|_| bad("owner"))?.to_string(),
        until: DateTime::from_timestamp_millis(until).ok_or_else(|| bad("until_ms"))?,
    })
}

/// On the test bed's MongoDB-protocol server, straight on a database (not through
/// `MongoStore::connect`, so that these collections are tested whatever the rest needs).
#[cfg(test)]
mod tests {
    use super::*;
    use enrollstream_testkit::testbed::Mongo;

    async fn database(server: &Mongo) -> Database {
        let client = mongodb::Client::with_uri_str(server.uri()).await.unwrap();
        client.database(&format!("fences_{}", uuid::Uuid::new_v4().simple()))
    }

    #[tokio::test]
    async fn leases_and_parked_messages() {
        let server = Mongo::start()
            .unwrap_or_else(|e| panic!("the MongoDB-protocol server must start: {e:#}"));
        let db = database(&server).await;
        let now = DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
        let later = now + chrono::Duration::seconds(30);
        assert_eq!(
            take_lease(&db, "fence/a", "one", later, now).await.unwrap(),
            None
        );
        let holder = take_lease(&db, "fence/a", "two", later, now).await.unwrap();
        assert_eq!(
            holder.map(|l| l.owner),
            Some("one".to_string()),
            "held by another"
        );
        assert_eq!(
            take_lease(&db, "fence/a", "one", later, now).await.unwrap(),
            None,
            "renewed"
        );
        let after = later + chrono::Duration::seconds(1);
        assert_eq!(
            take_lease(
                &db,
                "fence/a",
                "two",
                after + chrono::Duration::seconds(30),
                after
            )
            .await
            .unwrap(),
            None,
            "expired, so taken"
        );
        take_lease(&db, "other", "three", later, now).await.unwrap();
        let live = leases(&db, "fence/", now).await.unwrap();
        assert_eq!(
            live.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            ["fence/a"]
        );
        release_lease(&db, "fence/a", "one").await.unwrap();
        assert_eq!(
            leases(&db, "fence/", now).await.unwrap().len(),
            1,
            "only the owner releases"
        );
        release_lease(&db, "fence/a", "two").await.unwrap();
        assert!(leases(&db, "fence/", now).await.unwrap().is_empty());

        let message = StoredOutboxMessage {
            id: "m-1".into(),
            topic: "quote-notifications".into(),
            message: OutboundMessage {
                key: "Q-1".into(),
                headers: vec![("ce_id".into(), "m-1".into())],
                payload: b"{\"big\":true}".to_vec(),
            },
            event_id: "e-1".into(),
            created_at: now,
        };
        park(&db, &message, "message_too_large", now).await.unwrap();
        park(&db, &message, "again", now).await.unwrap();
        let parked = parked(&db, 10).await.unwrap();
        assert_eq!(parked, vec![(message, "message_too_large".to_string())]);
    }
}
