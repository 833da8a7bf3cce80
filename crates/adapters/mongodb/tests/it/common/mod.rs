//! One FerretDB server per test process; each test gets a database of its own.

use std::sync::OnceLock;

use enrollstream_mongodb::MongoStore;
use enrollstream_testkit::testbed::Mongo;

pub fn server() -> &'static Mongo {
    static SERVER: OnceLock<Mongo> = OnceLock::new();
    SERVER.get_or_init(|| Mongo::start().unwrap_or_else(|e| panic!("FerretDB must start: {e:#}")))
}

pub fn fresh_database() -> String {
    format!("enrollstream_{}", uuid::Uuid::new_v4().simple())
}

pub async fn connect(uri: &str, database: &str) -> MongoStore {
    MongoStore::connect(uri, database)
        .await
        .unwrap_or_else(|e| panic!("connecting to {uri}: {e}"))
}
