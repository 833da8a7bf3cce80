//! What the MongoDB adapter adds to the contract: an apply interrupted between its two writes,
//! appliers racing on the same change, and MongoDB going away and coming back.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{connect, fresh_database, server};
use enrollstream_mongodb::{MongoSettings, MongoStore};
use enrollstream_ports::{ApplyOutcome, Change, Store, StoreError, StoredEvent};
use enrollstream_testkit::contract::store::fixtures::{application_history, new_quote};
use enrollstream_testkit::testbed::Mongo;
use mongodb::bson::{doc, to_bson, Bson, DateTime, Document};
use mongodb::Client;

fn log_entry(e: &StoredEvent) -> Document {
    let date = |t: chrono::DateTime<chrono::Utc>| {
        Bson::DateTime(DateTime::from_millis(t.timestamp_millis()))
    };
    doc! {
        "_id": &e.event_id,
        "entity_kind": e.entity_kind.as_str(),
        "entity_id": &e.entity_id,
        "version": e.version as i64,
        "event_type": &e.event_type,
        "occurred_at": date(e.occurred_at),
        "envelope": to_bson(&e.envelope).expect("an envelope is BSON"),
        "source": e.source.clone(),
        "recorded_at": date(e.recorded_at),
    }
}

/// Step 1 of an apply, done by hand: the event log entry without its entity write.
async fn interrupted_apply(uri: &str, database: &str, changes: &[Change]) {
    let client = Client::with_uri_str(uri).await.expect("driver client");
    let log = client
        .database(database)
        .collection::<Document>("event_log");
    let entries: Vec<Document> = changes.iter().map(|c| log_entry(&c.event)).collect();
    log.insert_many(entries)
        .await
        .expect("log entries inserted by hand");
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

#[tokio::test]
async fn crash_between_log_and_entity_is_finished_by_redelivery() {
    let database = fresh_database();
    let store = connect(&server().uri(), &database).await;
    let history = application_history();
    let single = &history[..1];
    interrupted_apply(&server().uri(), &database, single).await;

    let e = &single[0].event;
    assert!(
        store
            .applied(&event_ids(single))
            .await
            .expect("applied")
            .is_empty(),
        "a log entry alone is not applied"
    );
    assert!(
        store
            .event_log(e.entity_kind, &e.entity_id)
            .await
            .expect("event_log")
            .is_empty(),
        "nor visible in the log"
    );
    assert!(
        !store
            .wait_applied(&e.event_id, Duration::ZERO)
            .await
            .expect("wait_applied"),
        "nor awaited as applied"
    );

    assert_eq!(
        store.apply(single).await.expect("apply"),
        vec![ApplyOutcome::Applied],
        "the redelivery finishes the apply"
    );
    assert_eq!(
        store.apply(single).await.expect("apply"),
        vec![ApplyOutcome::AlreadyApplied],
        "and only once"
    );
    assert_eq!(
        store
            .event_log(e.entity_kind, &e.entity_id)
            .await
            .expect("event_log"),
        vec![e.clone()],
        "one log entry"
    );
    assert_eq!(
        pending_ids(&store).await,
        outbox_ids(single),
        "the outbox holds the messages once"
    );

    // The same for a batch whose slots were all claimed before the crash.
    let rest = &history[1..];
    interrupted_apply(&server().uri(), &database, rest).await;
    assert_eq!(
        store.apply(rest).await.expect("apply"),
        vec![ApplyOutcome::Applied; rest.len()],
        "a redelivered batch"
    );
    assert_eq!(
        store.applied(&event_ids(&history)).await.expect("applied"),
        event_ids(&history).into_iter().collect::<HashSet<_>>(),
        "every event applied"
    );
    let log = store
        .event_log(e.entity_kind, &e.entity_id)
        .await
        .expect("event_log");
    assert_eq!(
        log,
        history.iter().map(|c| c.event.clone()).collect::<Vec<_>>(),
        "each event logged once"
    );
    assert_eq!(
        pending_ids(&store).await,
        outbox_ids(&history),
        "each message recorded once"
    );
}

/// An interrupted apply computed on another state left the event at a slot its entity never
/// reached: the change recomputed on the real state takes the entry over.
#[tokio::test]
async fn interrupted_apply_at_another_version_is_taken_over() {
    let database = fresh_database();
    let store = connect(&server().uri(), &database).await;
    let change = new_quote();
    let mut stale = change.clone();
    stale.event.version = 5;
    stale.expected_version = 4;
    interrupted_apply(&server().uri(), &database, std::slice::from_ref(&stale)).await;

    assert_eq!(
        store
            .apply(std::slice::from_ref(&change))
            .await
            .expect("apply"),
        vec![ApplyOutcome::Applied]
    );
    let e = &change.event;
    assert_eq!(
        store
            .event_log(e.entity_kind, &e.entity_id)
            .await
            .expect("event_log"),
        vec![e.clone()]
    );
    assert_eq!(
        pending_ids(&store).await,
        outbox_ids(std::slice::from_ref(&change))
    );
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
    let mut mongo =
        Mongo::start_persistent().unwrap_or_else(|e| panic!("nx-27017 must start: {e:#}"));
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
        .unwrap_or_else(|e| panic!("nx-27017 must come back: {e:#}"));

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
