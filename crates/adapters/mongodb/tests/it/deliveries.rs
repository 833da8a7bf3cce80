//! The delivery log on a MongoDB-protocol server (FerretDB in the test bed), each case on a
//! database of its own, opened through the store's client as the binary does.

use crate::common;

use enrollstream_mongodb::deliveries::COLLECTION;
use enrollstream_mongodb::MongoDeliveryLog;
use enrollstream_ports::delivery_log::RETENTION;
use futures::TryStreamExt;
use mongodb::bson::Document;
use mongodb::Client;

async fn fresh_log(database: &str) -> MongoDeliveryLog {
    let store = common::connect(&common::server().uri(), database).await;
    store
        .delivery_log()
        .await
        .unwrap_or_else(|e| panic!("opening the delivery log: {e}"))
}

enrollstream_testkit::delivery_log_contract_tests!(
    log,
    log = fresh_log(&common::fresh_database()).await
);

/// The server drops old records by itself where it can: a TTL index on the record's time,
/// with the port's retention (else an index on the time for the hourly purge), and the
/// listing's index beside it.
#[tokio::test]
async fn the_collection_has_its_ttl_and_entity_indexes() {
    let database = common::fresh_database();
    fresh_log(&database).await;
    let indexes: Vec<Document> = Client::with_uri_str(common::server().uri())
        .await
        .expect("client")
        .database(&database)
        .collection::<Document>(COLLECTION)
        .list_indexes()
        .await
        .expect("list indexes")
        .try_collect::<Vec<_>>()
        .await
        .expect("indexes")
        .into_iter()
        .map(|i| {
            let mut d = i.keys.clone();
            if let Some(options) = i.options {
                d.insert("name", options.name.unwrap_or_default());
                if let Some(ttl) = options.expire_after {
                    d.insert("ttl", ttl.as_secs() as i64);
                }
            }
            d
        })
        .collect();
    let named = |name: &str| indexes.iter().find(|d| d.get_str("name") == Ok(name));
    match named("ttl") {
        Some(ttl) => assert_eq!(
            ttl.get_i64("ttl"),
            Ok(RETENTION.num_seconds()),
            "{indexes:?}"
        ),
        // FerretDB 1.24 has no TTL indexes: the purge's plain index on the time instead.
        None => assert!(
            named("at").is_some_and(|d| d.contains_key("at") && !d.contains_key("ttl")),
            "a ttl index, or the purge's index on `at`: {indexes:?}"
        ),
    }
    assert!(
        indexes.iter().any(|d| d.get_str("name") == Ok("entity")
            && d.contains_key("entity_id")
            && d.contains_key("at")),
        "an entity index: {indexes:?}"
    );
}
