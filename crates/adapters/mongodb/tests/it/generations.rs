//! The read model's generations on the test bed's MongoDB-protocol server (FerretDB): the
//! contract, an apply racing a switch, and what only a store without transactions has to get
//! right: an event whose first write landed in the retired generation and was never followed
//! (the process died), redelivered after the switch, is announced once; a retired generation is
//! dropped only past its grace and once drained.

use crate::common;

use chrono::Utc;
use common::{connect, fresh_database, server};
use enrollstream_mongodb::{entry_document, MongoSettings, MongoStore};
use enrollstream_ports::{ApplyOutcome, Store, SWITCH_LEASE};
use enrollstream_testkit::contract::generations as contract;
use enrollstream_testkit::contract::store::fixtures::new_quote;
use std::time::Duration;

async fn fresh_store() -> MongoStore {
    connect(&server().uri(), &fresh_database()).await
}

async fn with(database: &str, settings: MongoSettings) -> MongoStore {
    MongoStore::connect_with(&server().uri(), database, settings)
        .await
        .unwrap_or_else(|e| panic!("connecting: {e}"))
}

enrollstream_testkit::generations_contract_tests!(store, store = fresh_store().await);

#[tokio::test]
async fn an_apply_that_lands_after_a_switch_follows_it() {
    let database = fresh_database();
    let store = with(&database, MongoSettings::default()).await;
    // Keeps the pointer it read for the whole case: its apply after the switch writes to the
    // generation switched out, as a process that read the pointer just before would.
    let stale = MongoSettings {
        pointer_ttl: Duration::from_secs(600),
        ..MongoSettings::default()
    };
    let other = with(&database, stale).await;
    contract::an_apply_that_lands_after_a_switch_follows_it(&store, &other).await;
}

/// Switches `store` to a build holding `changes`; answers the new generation.
async fn switch(store: &MongoStore, changes: &[enrollstream_ports::Change]) -> u64 {
    let gens = store.generations().expect("generations");
    let build = gens.open_shadow(false).await.unwrap();
    gens.shadow().apply(changes).await.unwrap();
    let owner = "rebuild-test";
    let until = Utc::now() + chrono::Duration::seconds(30);
    assert_eq!(
        store
            .take_lease(SWITCH_LEASE, owner, until, Utc::now())
            .await
            .unwrap(),
        None
    );
    gens.switch_to_shadow(&build.build_id, owner, Utc::now())
        .await
        .unwrap_or_else(|e| panic!("switch: {e}"))
}

async fn collections(database: &str) -> Vec<String> {
    let client = mongodb::Client::with_uri_str(server().uri()).await.unwrap();
    let mut names = client
        .database(database)
        .list_collection_names()
        .await
        .unwrap();
    names.sort();
    names
}

#[tokio::test]
async fn a_redelivery_of_an_event_the_retired_generation_holds_is_announced_once() {
    let database = fresh_database();
    let store = with(&database, MongoSettings::default()).await;
    let before = new_quote();
    store.apply(std::slice::from_ref(&before)).await.unwrap();
    assert_eq!(switch(&store, std::slice::from_ref(&before)).await, 2);

    // Landed in generation 1 after the switch; the process died before following it.
    let orphan = new_quote();
    let client = mongodb::Client::with_uri_str(server().uri()).await.unwrap();
    client
        .database(&database)
        .collection("event_log")
        .insert_one(entry_document(&orphan).unwrap())
        .await
        .unwrap();
    let outcomes = store.apply(std::slice::from_ref(&orphan)).await.unwrap();
    assert_eq!(
        outcomes,
        [ApplyOutcome::Applied],
        "redelivered into generation 2"
    );
    let e = &orphan.event;
    assert!(store
        .entity(e.entity_kind, &e.entity_id)
        .await
        .unwrap()
        .is_some());

    let pending = store.pending_outbox(1000).await.unwrap();
    let mut ids: Vec<String> = pending.iter().map(|m| m.id.clone()).collect();
    let mut expected: Vec<String> = before
        .outbox
        .iter()
        .chain(&orphan.outbox)
        .map(|m| m.id.clone())
        .collect();
    ids.sort();
    expected.sort();
    assert_eq!(ids, expected, "each message once, from generation 1");
    store.mark_published(&ids).await.unwrap();
    assert_eq!(store.pending_outbox(1000).await.unwrap(), []);
    assert_eq!(store.outbox_backlog().await.unwrap(), 0);
}

#[tokio::test]
async fn a_retired_generation_is_dropped_past_its_grace_once_drained() {
    let database = fresh_database();
    let settings = MongoSettings {
        retired_grace: Duration::ZERO,
        ..MongoSettings::default()
    };
    let store = with(&database, settings).await;
    let quote = new_quote();
    store.apply(std::slice::from_ref(&quote)).await.unwrap();
    assert_eq!(switch(&store, std::slice::from_ref(&quote)).await, 2);
    let gens = store.generations().unwrap();
    gens.drop_retired().await.unwrap();
    assert!(
        collections(&database)
            .await
            .contains(&"event_log".to_string()),
        "kept while it holds messages to publish"
    );
    let ids: Vec<String> = store
        .pending_outbox(1000)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids.len(), quote.outbox.len());
    store.mark_published(&ids).await.unwrap();
    gens.drop_retired().await.unwrap();
    gens.drop_retired().await.unwrap();
    let left = collections(&database).await;
    assert!(
        !left.contains(&"event_log".to_string()) && !left.contains(&"entities".to_string()),
        "dropped once drained: {left:?}"
    );
    assert!(left.contains(&"event_log_g2".to_string()), "{left:?}");
    let e = &quote.event;
    assert!(store
        .entity(e.entity_kind, &e.entity_id)
        .await
        .unwrap()
        .is_some());
    let next = new_quote();
    assert_eq!(
        store.apply(std::slice::from_ref(&next)).await.unwrap(),
        [ApplyOutcome::Applied]
    );
    assert_eq!(
        store.pending_outbox(1000).await.unwrap().len(),
        next.outbox.len()
    );
}

/// Round trips of one live apply of a new quote (the view warm): the insert (a new entity's
/// versions are not read), the head, and the pointer read again after the write; one more,
/// while a retired generation is not dropped, asking it which events it holds.
#[tokio::test]
async fn a_live_apply_costs_one_round_trip_more_and_one_per_retired_generation() {
    let settings = MongoSettings {
        count_commands: true,
        pointer_ttl: Duration::from_secs(600),
        ..MongoSettings::default()
    };
    let store = with(&fresh_database(), settings).await;
    let round_trips = |store: &MongoStore| -> (u64, Vec<String>) {
        let taken = store.take_commands();
        let names = taken
            .iter()
            .map(|(name, stats)| format!("{name}×{}", stats.count))
            .collect();
        (taken.values().map(|s| s.count).sum(), names)
    };
    let warm = new_quote();
    store.apply(std::slice::from_ref(&warm)).await.unwrap();
    round_trips(&store);
    let second = new_quote();
    store.apply(std::slice::from_ref(&second)).await.unwrap();
    let (count, names) = round_trips(&store);
    assert_eq!(count, 3, "insert, head, pointer: {names:?}");

    assert_eq!(switch(&store, &[warm, second]).await, 2);
    store.apply(&[new_quote()]).await.unwrap();
    round_trips(&store);
    store.apply(&[new_quote()]).await.unwrap();
    let (count, names) = round_trips(&store);
    assert_eq!(count, 4, "and generation 1, not dropped yet: {names:?}");
}
