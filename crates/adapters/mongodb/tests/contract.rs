//! The store contract suite against nx-27017, one test per case.

mod common;

use common::{connect, fresh_database, server};
use enrollstream_mongodb::MongoStore;
use enrollstream_testkit::contract::store as contract;
use enrollstream_testkit::testbed::Mongo;

async fn fresh_store() -> MongoStore {
    connect(&server().uri(), &fresh_database()).await
}

macro_rules! contract_cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                contract::$case(&fresh_store().await).await;
            }
        )*
    };
}

contract_cases!(
    apply_then_read_back,
    redelivery_is_already_applied,
    version_conflict_writes_nothing,
    batch_chains_versions,
    refused_change_does_not_block_batch,
    applied_is_the_applied_subset,
    entities_are_the_existing_subset,
    outbox_in_creation_order,
    outbox_ids_are_fences,
    replay_records_outbox_as_published,
    wait_applied_sees_a_concurrent_apply,
    wait_applied_times_out,
    wait_for_outbox_wakes_after_apply,
    idempotency_reservations,
    reset_keeps_idempotency,
    check_and_name,
);

/// Durability across a restart of the server itself, not only of the client.
#[tokio::test]
async fn durable_across_restart() {
    let mut server =
        Mongo::start_persistent().unwrap_or_else(|e| panic!("nx-27017 must start: {e:#}"));
    let database = fresh_database();
    let written = contract::durable_write(&connect(&server.uri(), &database).await).await;
    server.pause();
    server
        .resume()
        .unwrap_or_else(|e| panic!("nx-27017 must restart: {e:#}"));
    contract::durable_read_back(&connect(&server.uri(), &database).await, &written).await;
}
