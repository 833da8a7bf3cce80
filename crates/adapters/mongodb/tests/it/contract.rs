//! The store contract suite against the test bed's MongoDB-protocol server (FerretDB), one test
//! per case.

use crate::common;

use common::{connect, fresh_database, server};
use enrollstream_mongodb::MongoStore;
use enrollstream_testkit::contract::store as contract;
use enrollstream_testkit::testbed::Mongo;

async fn fresh_store() -> MongoStore {
    connect(&server().uri(), &fresh_database()).await
}

enrollstream_testkit::store_contract_tests!(store, store = fresh_store().await);
enrollstream_testkit::listing_contract_tests!(store, store = fresh_store().await);

/// The same contract with a find per key instead of one per batch (for FerretDB on
/// PostgreSQL): what a batch reads must not change with how it is read.
mod point_lookups {
    use super::*;
    use enrollstream_mongodb::{Lookups, MongoSettings};

    async fn fresh_store() -> MongoStore {
        let settings = MongoSettings {
            lookups: Lookups::Point,
            ..MongoSettings::default()
        };
        let uri = server().uri();
        MongoStore::connect_with(&uri, &fresh_database(), settings)
            .await
            .unwrap_or_else(|e| panic!("connecting to {uri}: {e}"))
    }

    enrollstream_testkit::store_contract_tests!(store, store = fresh_store().await);
}

/// Durability across a restart of the server itself, not only of the client.
#[tokio::test]
async fn durable_across_restart() {
    let mut server = Mongo::start().unwrap_or_else(|e| panic!("FerretDB must start: {e:#}"));
    let database = fresh_database();
    let written = contract::durable_write(&connect(&server.uri(), &database).await).await;
    server.pause();
    server
        .resume()
        .unwrap_or_else(|e| panic!("FerretDB must restart: {e:#}"));
    contract::durable_read_back(&connect(&server.uri(), &database).await, &written).await;
}
