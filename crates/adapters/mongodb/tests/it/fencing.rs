//! What the MongoDB adapter adds to the contract: the window between an apply's insert and its
//! head write, heads that fell behind, appliers racing on the same change, and MongoDB going
//! away and coming back.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::{connect, fresh_database, server};
use enrollstream_domain::EntityKind;
use enrollstream_mongodb::{MongoSettings, MongoStore};
use enrollstream_ports::{ApplyOutcome, Change, Store, StoreError};
use enrollstream_testkit::contract::store::fixtures::{application_history, new_quote};
use enrollstream_testkit::testbed::Mongo;
use mongodb::bson::{doc, Document};
use mongodb::Client;

async fn entities(uri: &str, database: &str) -> mongodb::Collection<Document> {
    Client::with_uri_str(uri)
        .await
        .expect("driver client")
        .database(database)
        .collection::<Document>("entities")
}

fn head_id(c: &Change) -> String {
    format!("{}:{}", c.event.entity_kind.as_str(), c.event.entity_id)
}

fn outbox_ids(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .flat_map(|c| c.outbox.iter().map(|m| m.id.clone()))
        .collect()
}

async fn pending_ids(store: &MongoStore) -> Vec<String> {
    let pending = store.pending_outbox(10_000).await.expect("pending_outbox");
    pending.into_iter().map(|m| m.id).collect()
}

fn event_ids(changes: &[Change]) -> Vec<String> {
    changes.iter().map(|c| c.event.event_id.clone()).collect()
}

/// Everything a reader sees of an entity is its last change, however its head stands.
async fn assert_reads_last(store: &MongoStore, history: &[Change]) {
    let last = history.last().expect("a history");
    let e = &last.event;
    let one = store
        .entity(e.entity_kind, &e.entity_id)
        .await
        .expect("entity")
        .expect("the entity exists");
    let many = store
        .entities(&[(e.entity_kind, e.entity_id.clone())])
        .await
        .expect("entities");
    assert_eq!(many, vec![one.clone()], "entity and entities agree");
    assert_eq!(
        (one.version, &one.state, &one.last_event_id),
        (e.version, &last.state, &e.event_id),
        "reads give the last applied change"
    );
    assert_eq!(
        store
            .event_log(e.entity_kind, &e.entity_id)
            .await
            .expect("event_log"),
        history.iter().map(|c| c.event.clone()).collect::<Vec<_>>(),
        "the log holds each change once"
    );
}

/// An apply is one insert per change; a crash after it loses only the head write. The change
/// is applied all the same, reads give it, its redelivery is AlreadyApplied and the next change
/// builds on it.
#[tokio::test]
async fn lost_head_write_loses_nothing() {
    let database = fresh_database();
    let store = connect(&server().uri(), &database).await;
    let heads = entities(&server().uri(), &database).await;
    let history = application_history();
    assert_eq!(
        store.apply(&history[..1]).await.expect("apply"),
        vec![ApplyOutcome::Applied]
    );
    // The process died before the head write.
    heads
        .delete_one(doc! { "_id": head_id(&history[0]) })
        .await
        .expect("head removed by hand");

    assert_eq!(
        store
            .applied(&event_ids(&history[..1]))
            .await
            .expect("applied"),
        event_ids(&history[..1]).into_iter().collect::<HashSet<_>>(),
        "the change is applied without its head"
    );
    assert!(store
        .wait_applied(&history[0].event.event_id, Duration::ZERO)
        .await
        .expect("wait_applied"));
    assert_reads_last(&store, &history[..1]).await;
    assert_eq!(
        store.apply(&history[..1]).await.expect("apply"),
        vec![ApplyOutcome::AlreadyApplied],
        "a redelivery has nothing to finish"
    );
    assert_eq!(pending_ids(&store).await, outbox_ids(&history[..1]));

    // A whole batch whose heads were lost, then the next change on top of it.
    assert_eq!(
        store.apply(&history[1..3]).await.expect("apply"),
        vec![ApplyOutcome::Applied; 2]
    );
    heads
        .delete_one(doc! { "_id": head_id(&history[0]) })
        .await
        .expect("head removed by hand");
    assert_reads_last(&store, &history[..3]).await;
    assert_eq!(
        store.apply(&history[3..]).await.expect("apply"),
        vec![ApplyOutcome::Applied],
        "the next change builds on the log, not on the head"
    );
    assert_reads_last(&store, &history).await;
    assert_eq!(pending_ids(&store).await, outbox_ids(&history));
}

/// A head put back to an older version (a late write on a server whose updates are not
/// atomic) is completed from the log by every read, and a stale change is still refused.
#[tokio::test]
async fn head_that_fell_back_is_completed_from_the_log() {
    let database = fresh_database();
    let store = connect(&server().uri(), &database).await;
    let heads = entities(&server().uri(), &database).await;
    let history = application_history();
    store.apply(&history[..1]).await.expect("apply");
    let old_head = heads
        .find_one(doc! { "_id": head_id(&history[0]) })
        .await
        .expect("read head")
        .expect("the head exists");
    store.apply(&history[1..]).await.expect("apply");
    heads
        .replace_one(doc! { "_id": head_id(&history[0]) }, old_head)
        .await
        .expect("head put back by hand");

    assert_reads_last(&store, &history).await;
    let mut stale = history[1].clone();
    stale.event.event_id = enrollstream_domain::ids::new_id();
    assert_eq!(
        store.apply(&[stale]).await.expect("apply"),
        vec![ApplyOutcome::Conflict { current_version: 4 }],
        "a change built on the stale head conflicts with the log"
    );
    let quote = new_quote();
    store
        .apply(std::slice::from_ref(&quote))
        .await
        .expect("apply");
    let found = store
        .entities(&[
            (EntityKind::Application, history[0].event.entity_id.clone()),
            (EntityKind::Quote, quote.event.entity_id.clone()),
        ])
        .await
        .expect("entities");
    assert_eq!(found.len(), 2, "a batch read completes each head");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appliers_apply_a_change_once() {
    let database = fresh_database();
    let (a, b) = (
        connect(&server().uri(), &database).await,
        connect(&server().uri(), &database).await,
    );
    let mut all = Vec::new();
    for _ in 0..10 {
        let changes = [new_quote()];
        let (x, y) = tokio::join!(a.apply(&changes), b.apply(&changes));
        let mut outcomes = [x.expect("first applier"), y.expect("second applier")].concat();
        outcomes.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(
            outcomes,
            vec![ApplyOutcome::AlreadyApplied, ApplyOutcome::Applied],
            "one applier wins a change"
        );
        all.extend(changes);
    }
    // Whole lifecycles (one fenced write per entity in a batch) raced the same way.
    for _ in 0..5 {
        let history = application_history();
        let (x, y) = tokio::join!(a.apply(&history), b.apply(&history));
        let (x, y) = (x.expect("first applier"), y.expect("second applier"));
        for (i, pair) in x.iter().zip(&y).enumerate() {
            let applied = [pair.0, pair.1]
                .iter()
                .filter(|o| ***o == ApplyOutcome::Applied)
                .count();
            assert_eq!(
                applied, 1,
                "change {i} of a raced batch applies once: {x:?} / {y:?}"
            );
        }
        let e = &history[0].event;
        assert_eq!(
            a.event_log(e.entity_kind, &e.entity_id)
                .await
                .expect("event_log")
                .len(),
            history.len(),
            "each raced event logged once"
        );
        all.extend(history);
    }
    assert_eq!(
        pending_ids(&a).await,
        outbox_ids(&all),
        "each raced change recorded its messages once"
    );
}

fn unavailable<T: std::fmt::Debug>(what: &str, result: Result<T, StoreError>) {
    match result {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("{what} while MongoDB is away must be Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn mongodb_away_is_unavailable_then_nothing_is_duplicated() {
    let mut mongo = Mongo::start().unwrap_or_else(|e| panic!("FerretDB must start: {e:#}"));
    let settings = MongoSettings {
        server_selection_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        ..MongoSettings::default()
    };
    let store = MongoStore::connect_with(&mongo.uri(), &fresh_database(), settings)
        .await
        .expect("connect");
    let history = application_history();
    assert_eq!(
        store.apply(&history[..1]).await.expect("apply"),
        vec![ApplyOutcome::Applied]
    );

    mongo.pause();
    unavailable("apply", store.apply(&history[1..2]).await);
    unavailable("check", store.check().await);
    unavailable("pending_outbox", store.pending_outbox(10).await);
    mongo
        .resume()
        .unwrap_or_else(|e| panic!("FerretDB must come back: {e:#}"));

    // The runners retry an Unavailable apply; so does this test, until the server is selected.
    let mut attempts = 0;
    let outcomes = loop {
        attempts += 1;
        match store.apply(&history[1..]).await {
            Ok(outcomes) => break outcomes,
            Err(StoreError::Unavailable(e)) if attempts < 100 => tracing::debug!(%e, "still away"),
            Err(e) => panic!("apply after MongoDB came back: {e}"),
        }
    };
    assert_eq!(
        outcomes,
        vec![ApplyOutcome::Applied; history.len() - 1],
        "the retried changes apply"
    );
    store.check().await.expect("check after MongoDB came back");
    assert_eq!(
        store.apply(&history).await.expect("apply"),
        vec![ApplyOutcome::AlreadyApplied; history.len()]
    );
    let e = &history[0].event;
    assert_eq!(
        store
            .event_log(e.entity_kind, &e.entity_id)
            .await
            .expect("event_log"),
        history.iter().map(|c| c.event.clone()).collect::<Vec<_>>(),
        "each event logged once across the outage"
    );
    assert_eq!(
        pending_ids(&store).await,
        outbox_ids(&history),
        "each message recorded once across the outage"
    );
}

/// A database holding the read model of an earlier version (the outbox inside `entities`) is
/// refused at start with what to do, never misread.
#[tokio::test]
async fn read_model_of_the_earlier_format_is_refused() {
    let database = fresh_database();
    entities(&server().uri(), &database)
        .await
        .insert_one(doc! { "_id": "quote:Q-1", "version": 1_i64, "outbox": [] })
        .await
        .expect("an entity of the earlier format");
    match MongoStore::connect(&server().uri(), &database).await {
        Err(StoreError::Fatal(reason)) => assert!(
            reason.contains("enrollstream rebuild"),
            "the refusal says what to do: {reason}"
        ),
        Err(other) => panic!("refused as Fatal, got {other}"),
        Ok(_) => panic!("a read model of the earlier format must be refused"),
    }
}
