//! The reminder store contract against the test bed's MongoDB-protocol server (FerretDB), one
//! test per case, each on a database of its own.

use crate::common;

use common::{connect, fresh_database, server};
use enrollstream_mongodb::reminders::{COLLECTION, VERSIONS};
use enrollstream_mongodb::MongoReminderStore;
use enrollstream_ports::reminders::{EventOutcome, Fenced, ReminderStore};
use enrollstream_ports::Store;
use enrollstream_testkit::contract::reminders as contract;
use enrollstream_testkit::testbed::Mongo;
use mongodb::bson::{doc, Bson, Document};
use mongodb::Client;

async fn connect_reminders(uri: &str, database: &str) -> MongoReminderStore {
    MongoReminderStore::connect(uri, database)
        .await
        .unwrap_or_else(|e| panic!("connecting the reminder store to {uri}: {e}"))
}

async fn fresh_store() -> MongoReminderStore {
    connect_reminders(&server().uri(), &fresh_database()).await
}

enrollstream_testkit::reminder_contract_tests!(store, store = fresh_store().await);

/// Two clients of one database, as two scheduler processes would connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_from_two_clients_never_overlap() {
    let database = fresh_database();
    let a = connect_reminders(&server().uri(), &database).await;
    let b = connect_reminders(&server().uri(), &database).await;
    contract::concurrent_claims_never_overlap(&a, &b).await;
}

/// State and leases survive a restart of the server itself, not only a new client.
#[tokio::test]
async fn state_and_leases_survive_a_restart() {
    let mut server = Mongo::start().unwrap_or_else(|e| panic!("FerretDB must start: {e:#}"));
    let database = fresh_database();
    let leased = contract::durable_write(&connect_reminders(&server.uri(), &database).await).await;
    server.pause();
    server
        .resume()
        .unwrap_or_else(|e| panic!("FerretDB must restart: {e:#}"));
    contract::durable_read_back(&connect_reminders(&server.uri(), &database).await, &leased).await;
}

/// Rebuilding the read model in the same database leaves reminder state alone.
#[tokio::test]
async fn keeps_its_own_collection() {
    let database = fresh_database();
    let reminders = connect_reminders(&server().uri(), &database).await;
    let store = connect(&server().uri(), &database).await;
    assert_eq!(reminders.name(), "mongodb");
    contract::broker_submission_creates_a_due_reminder(&reminders).await;
    store
        .reset_read_model()
        .await
        .expect("reset the read model");
    let kept = reminders.get("A-1").await.unwrap();
    assert_eq!(kept.map(|r| r.attempts), Some(0));
}

/// The documents are what the module says: times as dates, no nulls, the applied event ids a
/// plain array of strings; every write a version of its own, the head a copy of the last.
#[tokio::test]
async fn every_write_is_a_version_and_the_head_copies_the_last() {
    let database = fresh_database();
    let store = connect_reminders(&server().uri(), &database).await;
    contract::durable_write(&store).await;
    let db = Client::with_uri_str(server().uri())
        .await
        .expect("client")
        .database(&database);
    let head: Document = db
        .collection::<Document>(COLLECTION)
        .find_one(doc! { "_id": "D-1" })
        .await
        .expect("read the head")
        .expect("the head exists");
    for field in ["next_due_at", "lease_until"] {
        assert!(
            matches!(head.get(field), Some(Bson::DateTime(_))),
            "{field} is a date: {head}"
        );
    }
    assert!(
        head.values().all(|v| !matches!(v, Bson::Null)),
        "no null fields: {head}"
    );
    let ids = head
        .get_document("state")
        .and_then(|s| s.get_array("applied_event_ids"))
        .expect("applied event ids");
    assert_eq!(
        ids,
        &vec![Bson::from("D-1-started"), Bson::from("D-1-submitted")]
    );
    // Started, submitted, claimed, attempt recorded, claimed again.
    assert_eq!(head.get_i64("version").expect("version"), 5);
    let versions = db.collection::<Document>(VERSIONS);
    for v in 1..=5 {
        let id = format!("D-1#{v}");
        let version = versions
            .find_one(doc! { "_id": &id })
            .await
            .expect("read a version")
            .unwrap_or_else(|| panic!("version {id} is kept"));
        assert_eq!(version.get_i64("version").expect("version"), v);
        if v == 5 {
            let mut copy = version.clone();
            copy.insert("_id", "D-1");
            copy.remove("application_id");
            assert_eq!(copy, head, "the head is a copy of the last version");
        }
    }
    assert!(versions
        .find_one(doc! { "_id": "D-1#6" })
        .await
        .expect("read")
        .is_none());
}

/// A writer that died between inserting a version and copying it to the head lost nothing: the
/// next load finds the version, copies it, and claims and reads go on from it.
#[tokio::test]
async fn lost_head_copy_is_brought_back_by_the_next_load() {
    let database = fresh_database();
    let store = connect_reminders(&server().uri(), &database).await;
    let heads = Client::with_uri_str(server().uri())
        .await
        .expect("client")
        .database(&database)
        .collection::<Document>(COLLECTION);
    let policy = contract::policy();
    store
        .apply_event(
            "L-1-sub",
            &contract::broker_submission("L-1"),
            contract::hours(0),
            &policy,
        )
        .await
        .expect("apply_event");
    heads
        .delete_one(doc! { "_id": "L-1" })
        .await
        .expect("head removed by hand");
    let r = store
        .get("L-1")
        .await
        .unwrap()
        .expect("the version is there");
    assert_eq!(r.next_due_at, Some(contract::hours(24)));
    let now = contract::hours(24);
    let claimed = store
        .claim_due(now, now + chrono::Duration::minutes(2), "s1", 10)
        .await
        .expect("claim_due");
    assert_eq!(claimed.len(), 1, "the head is back, so the claim finds it");
    assert_eq!(
        store
            .record_attempt(&claimed[0], 1, now, None, &policy)
            .await
            .unwrap(),
        Fenced::Applied
    );
    let r = store.get("L-1").await.unwrap().expect("reminder");
    assert_eq!(r.attempts, 1);
}

/// Events of one application folded in at once through two clients: the version fence turns
/// every lost race into a retry, so no event id (and no fact) is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_events_are_all_folded_in() {
    const EVENTS: usize = 24;
    let database = fresh_database();
    let a = connect_reminders(&server().uri(), &database).await;
    let b = connect_reminders(&server().uri(), &database).await;
    let policy = contract::policy();
    let applies = (0..EVENTS).map(|i| {
        let (store, event) = match i {
            0 => (&a, contract::broker_submission("R-1")),
            _ if i % 2 == 0 => (&a, contract::started("R-1")),
            _ => (&b, contract::started("R-1")),
        };
        let policy = &policy;
        async move {
            store
                .apply_event(&format!("R-1-{i:02}"), &event, contract::hours(0), policy)
                .await
                .expect("apply_event")
        }
    });
    let outcomes = futures::future::join_all(applies).await;
    assert!(outcomes.iter().all(|o| *o == EventOutcome::Applied));
    let r = a.get("R-1").await.unwrap().expect("reminder exists");
    let mut ids = r.applied_event_ids.clone();
    ids.sort();
    let expected: Vec<String> = (0..EVENTS).map(|i| format!("R-1-{i:02}")).collect();
    assert_eq!(ids, expected);
    assert_eq!(
        r.next_due_at,
        Some(contract::hours(24)),
        "the submission is kept"
    );
}

/// A claim landing between an event's read and its write moves the version, so the event is
/// folded in again on top of the lease instead of writing the lease away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_racing_a_claim_keep_its_lease() {
    const EVENTS: usize = 16;
    let database = fresh_database();
    let a = connect_reminders(&server().uri(), &database).await;
    let b = connect_reminders(&server().uri(), &database).await;
    let policy = contract::policy();
    let submitted = a
        .apply_event(
            "R-1-sub",
            &contract::broker_submission("R-1"),
            contract::hours(0),
            &policy,
        )
        .await
        .expect("apply_event");
    assert_eq!(submitted, EventOutcome::Applied);
    let now = contract::hours(24);
    let lease_until = now + chrono::Duration::minutes(2);
    let events = futures::future::join_all((0..EVENTS).map(|i| {
        let (b, policy) = (&b, &policy);
        async move {
            b.apply_event(
                &format!("R-1-{i:02}"),
                &contract::started("R-1"),
                now,
                policy,
            )
            .await
            .expect("apply_event")
        }
    }));
    let (outcomes, mut claimed) = futures::join!(events, async {
        tokio::task::yield_now().await;
        a.claim_due(now, lease_until, "s1", 10)
            .await
            .expect("claim_due")
    });
    assert!(outcomes.iter().all(|o| *o == EventOutcome::Applied));
    assert_eq!(claimed.len(), 1);
    assert!(
        b.claim_due(now, lease_until, "s2", 10)
            .await
            .unwrap()
            .is_empty(),
        "the lease is still live"
    );
    let claim = claimed.remove(0);
    assert_eq!(
        a.record_attempt(&claim, 1, now, None, &policy)
            .await
            .unwrap(),
        Fenced::Applied
    );
    let r = a.get("R-1").await.unwrap().expect("reminder exists");
    assert_eq!((r.attempts, r.applied_event_ids.len()), (1, EVENTS + 1));
}
