//! The audit of redrives on a MongoDB-protocol server (FerretDB in the test bed), each case on
//! a database of its own.

// The shared helpers of the MongoDB tests; this file uses the server and fresh databases only.
#[allow(dead_code)]
use crate::common;

use enrollstream_mongodb::{MongoAuditLog, MongoSettings};

async fn fresh_log(database: &str) -> MongoAuditLog {
    let uri = common::server().uri();
    MongoAuditLog::connect_with(&uri, database, MongoSettings::default())
        .await
        .unwrap_or_else(|e| panic!("connecting to {uri}: {e}"))
}

enrollstream_testkit::audit_contract_tests!(log, log = fresh_log(&common::fresh_database()).await);
