//! The credential store contract on a MongoDB-protocol server (FerretDB in the test bed), each
//! case on a database of its own. (The listing queries run their contract from a unit test of
//! `listing`.)

// The shared helpers of the MongoDB tests; this file uses the server and fresh databases only.
#[allow(dead_code)]
use crate::common;

use enrollstream_mongodb::{MongoCredentialStore, MongoSettings};

async fn fresh_keys(database: &str) -> MongoCredentialStore {
    let uri = common::server().uri();
    MongoCredentialStore::connect_with(&uri, database, MongoSettings::default())
        .await
        .unwrap_or_else(|e| panic!("connecting to {uri}: {e}"))
}

enrollstream_testkit::credential_contract_tests!(
    store,
    store = fresh_keys(&common::fresh_database()).await
);

/// Two API processes (two clients) see one set of keys: a key created through one is found and
/// revoked through the other.
#[tokio::test]
async fn every_process_sees_the_same_keys() {
    use enrollstream_ports::CredentialStore;
    let database = common::fresh_database();
    let cli = fresh_keys(&database).await;
    let serving = fresh_keys(&database).await;
    enrollstream_testkit::contract::credentials::create_then_find_by_hash(&cli).await;
    let keys = serving.api_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert!(serving
        .revoke_api_key(&keys[0].name, chrono::Utc::now())
        .await
        .unwrap());
    let seen = cli.api_key_by_hash(&keys[0].hash).await.unwrap().unwrap();
    assert!(seen.revoked_at.is_some());
}
