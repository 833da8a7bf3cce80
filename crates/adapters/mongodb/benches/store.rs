//! The MongoDB store's write rate next to the server's raw bulk-insert rate, and where a batch's
//! time goes, against the test bed's server (FerretDB) or any MongoDB at `BENCH_MONGODB_URI`.
//!
//! 1. Raw: the driver's unordered `insert_many` of documents shaped like the store's event-log
//!    entries (event, state, outbox messages), batches of 500, majority/journaled.
//! 2. `MongoStore::apply` on realistic changes (the contract fixtures: one quote and one
//!    application lifecycle of four chained changes in five), batches of 1, 100 and 500, as
//!    events/s and as a ratio of (1).
//! 3. One projector batch of 500 (`applied`, `entities`, `apply`) and one relay round (read 500
//!    pending messages, mark them published) on a store holding earlier batches: round trips,
//!    documents and bytes per command, and the server's time next to the call's.
//!
//! `cargo bench -p enrollstream-mongodb --bench store` (env: BENCH_SECONDS per measure, default
//! 3; BENCH_MONGODB_URI to use a server of your own). docs/benchmarks.md records the figures.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use enrollstream_domain::EntityKind;
use enrollstream_mongodb::{CommandStats, MongoSettings, MongoStore};
use enrollstream_ports::{ApplyOutcome, Change, Store};
use enrollstream_testkit::contract::store::fixtures::{application_history, new_quote};
use enrollstream_testkit::testbed::Mongo;
use mongodb::bson::{doc, to_bson, Bson, Document};
use mongodb::options::{Acknowledgment, CollectionOptions, WriteConcern};
use mongodb::Client;

fn budget() -> Duration {
    let seconds = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    Duration::from_secs(seconds)
}

fn database() -> String {
    format!("bench_{}", uuid::Uuid::new_v4().simple())
}

/// Realistic changes: one quote and one application lifecycle (four chained changes) in five;
/// a batch of one is a quote.
fn changes(count: usize) -> Vec<Change> {
    let mut out = Vec::with_capacity(count + 5);
    while out.len() < count {
        out.push(new_quote());
        out.extend(application_history());
    }
    out.truncate(count);
    out
}

/// A document as large as the store's entry for `change`, under a fresh id.
fn entry_like(change: &Change) -> Document {
    let e = &change.event;
    let outbox: Vec<Bson> = change
        .outbox
        .iter()
        .map(|m| {
            Bson::Document(doc! {
                "id": &m.id, "topic": &m.topic, "key": &m.key,
                "event": to_bson(&m.event).expect("bson"),
            })
        })
        .collect();
    doc! {
        "_id": uuid::Uuid::now_v7().to_string(),
        "entity_kind": e.entity_kind.as_str(),
        "entity_id": &e.entity_id,
        "version": e.version as i64,
        "event_type": &e.event_type,
        "envelope": to_bson(&e.envelope).expect("bson"),
        "status": &change.status,
        "state": to_bson(&change.state).expect("bson"),
        "outbox": outbox,
    }
}

fn rate(events: usize, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64()
}

fn report(what: &str, events: usize, elapsed: Duration) -> f64 {
    let r = rate(events, elapsed);
    println!(
        "{what:<44} {events:>7} events in {:>6.2} s = {r:>8.0} events/s",
        elapsed.as_secs_f64()
    );
    r
}

/// With `indexed`, into a collection with the event log's three indexes (the version fence and
/// the relay's two), which any store of these documents needs.
async fn raw_insert_many(uri: &str, batch: usize, indexed: bool) -> f64 {
    let client = Client::with_uri_str(uri).await.expect("client");
    let wc = WriteConcern::builder()
        .w(Acknowledgment::Majority)
        .journal(true)
        .build();
    let coll = client
        .database(&database())
        .collection_with_options::<Document>(
            "event_log",
            CollectionOptions::builder().write_concern(wc).build(),
        );
    if indexed {
        for keys in [
            doc! { "entity_kind": 1, "entity_id": 1, "version": 1 },
            doc! { "outbox_pending": 1, "outbox_seq": 1 },
            doc! { "outbox_ids": 1 },
        ] {
            let unique = keys.contains_key("version");
            let model = mongodb::IndexModel::builder()
                .keys(keys)
                .options(
                    mongodb::options::IndexOptions::builder()
                        .unique(unique)
                        .build(),
                )
                .build();
            coll.create_index(model).await.expect("index");
        }
    }
    let mut spent = Duration::ZERO;
    let mut n = 0;
    while spent < budget() {
        // Fresh entities each batch, as the unique version index wants.
        let docs: Vec<Document> = changes(batch).iter().map(entry_like).collect();
        let start = Instant::now();
        coll.insert_many(docs)
            .ordered(false)
            .await
            .expect("insert_many");
        spent += start.elapsed();
        n += batch;
    }
    let indexes = if indexed { ", 3 indexes" } else { "" };
    report(
        &format!("raw insert_many of entries, batches of {batch}{indexes}"),
        n,
        spent,
    )
}

/// Single-document updates by `_id`, one at a time: what each head write and each relay mark
/// is made of.
async fn raw_update_one(uri: &str) {
    let client = Client::with_uri_str(uri).await.expect("client");
    let coll = client
        .database(&database())
        .collection::<Document>("entities");
    let docs: Vec<Document> = changes(500).iter().map(entry_like).collect();
    let ids: Vec<Bson> = docs
        .iter()
        .map(|d| d.get("_id").cloned().expect("_id"))
        .collect();
    coll.insert_many(docs).await.expect("insert_many");
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < budget() {
        coll.update_one(
            doc! { "_id": &ids[n % ids.len()] },
            doc! { "$set": { "status": "UPDATED" } },
        )
        .await
        .expect("update_one");
        n += 1;
    }
    report(
        "raw update_one by _id (500 documents), sequential",
        n,
        start.elapsed(),
    );
}

async fn store(uri: &str) -> MongoStore {
    let settings = MongoSettings {
        count_commands: true,
        // FerretDB takes seconds for a batch once its collections grow.
        operation_timeout: Duration::from_secs(120),
        ..MongoSettings::default()
    };
    MongoStore::connect_with(uri, &database(), settings)
        .await
        .expect("connect")
}

/// Only the `apply` calls are timed; the changes of each batch are made before its call.
async fn store_apply(uri: &str, batch: usize) -> f64 {
    let store = store(uri).await;
    let mut spent = Duration::ZERO;
    let mut n = 0;
    while spent < budget() {
        let changes = changes(batch);
        let start = Instant::now();
        let outcomes = store.apply(&changes).await.expect("apply");
        spent += start.elapsed();
        assert!(
            outcomes.iter().all(|o| *o == ApplyOutcome::Applied),
            "bench changes must apply"
        );
        n += batch;
    }
    report(&format!("MongoStore::apply, batches of {batch}"), n, spent)
}

fn print_commands(what: &str, wall: Duration, commands: &BTreeMap<String, CommandStats>) {
    let server: Duration = commands.values().map(|c| c.time).sum();
    let trips: u64 = commands.values().map(|c| c.count).sum();
    println!(
        "  {what}: {:.1} ms, {trips} round trips, {:.1} ms of it waiting for the server",
        wall.as_secs_f64() * 1e3,
        server.as_secs_f64() * 1e3
    );
    for (name, c) in commands {
        println!(
            "    {name:<10} {:>3} trips {:>6} docs {:>8} B out {:>8} B in {:>8.1} ms",
            c.count,
            c.documents,
            c.bytes_sent,
            c.bytes_received,
            c.time.as_secs_f64() * 1e3
        );
    }
}

/// One projector batch and one relay round of `batch`, on a store already holding `before`
/// events, their messages not yet published (FerretDB's reads and updates scan whole
/// collections, so its costs grow with them).
async fn breakdown(uri: &str, batch: usize, before: usize) {
    let store = store(uri).await;
    for chunk in changes(before).chunks(batch) {
        store.apply(chunk).await.expect("fill");
    }
    store.take_commands();
    println!("one batch of {batch} on a store holding {before} events:");

    let changes = changes(batch);
    let ids: Vec<String> = changes.iter().map(|c| c.event.event_id.clone()).collect();
    let keys: Vec<(EntityKind, String)> = changes
        .iter()
        .map(|c| (c.event.entity_kind, c.event.entity_id.clone()))
        .collect();
    let start = Instant::now();
    store.applied(&ids).await.expect("applied");
    store.entities(&keys).await.expect("entities");
    let reads = start.elapsed();
    print_commands(
        "projector reads (applied, entities)",
        reads,
        &store.take_commands(),
    );
    let start = Instant::now();
    store.apply(&changes).await.expect("apply");
    print_commands("apply", start.elapsed(), &store.take_commands());

    let start = Instant::now();
    let pending = store.pending_outbox(batch).await.expect("pending");
    let read = start.elapsed();
    let messages = pending.len();
    print_commands(
        &format!("relay reads {messages} pending messages"),
        read,
        &store.take_commands(),
    );
    let ids: Vec<String> = pending.into_iter().map(|m| m.id).collect();
    let start = Instant::now();
    store.mark_published(&ids).await.expect("mark");
    print_commands(
        &format!("relay marks {messages} published"),
        start.elapsed(),
        &store.take_commands(),
    );
}

#[tokio::main]
async fn main() {
    let (server, uri) = match std::env::var("BENCH_MONGODB_URI") {
        Ok(uri) => (None, uri),
        Err(_) => {
            let server = Mongo::start().unwrap_or_else(|e| panic!("FerretDB must start: {e:#}"));
            let uri = server.uri();
            (Some(server), uri)
        }
    };
    println!(
        "{} at {uri}; each measure runs {:?}",
        if server.is_some() {
            "FerretDB (test bed)"
        } else {
            "server"
        },
        budget()
    );
    let raw = raw_insert_many(&uri, 500, false).await;
    let indexed = raw_insert_many(&uri, 500, true).await;
    for batch in [1, 100, 500] {
        let applied = store_apply(&uri, batch).await;
        println!(
            "  = {:.2} of the raw bulk-insert rate, {:.2} of it with the indexes",
            applied / raw,
            applied / indexed
        );
    }
    raw_update_one(&uri).await;
    breakdown(&uri, 500, 0).await;
    breakdown(&uri, 500, 2_000).await;
}
