//! Write rates against nx-27017: the driver's raw inserts next to `MongoStore::apply` with
//! realistic changes (the contract fixtures: application lifecycles and quotes, each recording
//! its outbox messages). `cargo bench -p enrollstream-mongodb`; each measure runs a few seconds.

use std::time::{Duration, Instant};

use enrollstream_mongodb::MongoStore;
use enrollstream_ports::{ApplyOutcome, Change, Store};
use enrollstream_testkit::contract::store::fixtures::{application_history, new_quote};
use enrollstream_testkit::testbed::Mongo;
use mongodb::bson::{doc, Document};
use mongodb::options::{Acknowledgment, WriteConcern};
use mongodb::{Client, Collection};

/// Each measure stops after this long (or its count), whichever comes first.
const BUDGET: Duration = Duration::from_secs(3);

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

fn event_document(i: usize, change: &Change) -> Document {
    doc! {
        "_id": format!("{}-{i}", change.event.event_id),
        "entity_id": &change.event.entity_id,
        "version": i as i64,
        "event_type": &change.event.event_type,
        "envelope": mongodb::bson::to_bson(&change.event.envelope).expect("bson"),
    }
}

fn report(what: &str, events: usize, elapsed: Duration) {
    let rate = events as f64 / elapsed.as_secs_f64();
    println!(
        "{what:<48} {events:>7} events in {:>6.2} s = {rate:>9.0} events/s",
        elapsed.as_secs_f64()
    );
}

async fn raw_collection(uri: &str) -> Collection<Document> {
    let client = Client::with_uri_str(uri).await.expect("client");
    let wc = WriteConcern::builder()
        .w(Acknowledgment::Majority)
        .journal(true)
        .build();
    client.database(&database()).collection_with_options(
        "event_log",
        mongodb::options::CollectionOptions::builder()
            .write_concern(wc)
            .build(),
    )
}

/// The raw inserts reuse a few envelopes under fresh ids: only the write is measured.
async fn raw_insert_one(uri: &str, sample: &[Change]) {
    let coll = raw_collection(uri).await;
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < BUDGET {
        coll.insert_one(event_document(n, &sample[n % sample.len()]))
            .await
            .expect("insert_one");
        n += 1;
    }
    report("driver insert_one, sequential", n, start.elapsed());
}

async fn raw_insert_many(uri: &str, sample: &[Change], batch: usize) {
    let coll = raw_collection(uri).await;
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < BUDGET {
        let docs: Vec<Document> = (n..n + batch)
            .map(|i| event_document(i, &sample[i % sample.len()]))
            .collect();
        coll.insert_many(docs)
            .ordered(false)
            .await
            .expect("insert_many");
        n += batch;
    }
    report(
        &format!("driver insert_many, batches of {batch}"),
        n,
        start.elapsed(),
    );
}

/// Only the `apply` calls are timed; the changes of each batch are made before its call.
async fn store_apply(uri: &str, batch: usize) {
    let store = MongoStore::connect(uri, &database())
        .await
        .expect("connect");
    let mut spent = Duration::ZERO;
    let mut n = 0;
    while spent < BUDGET {
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
    report(&format!("MongoStore::apply, batches of {batch}"), n, spent);
}

#[tokio::main]
async fn main() {
    let server = Mongo::start().unwrap_or_else(|e| panic!("nx-27017 must start: {e:#}"));
    let uri = server.uri();
    println!("nx-27017 at {uri}; each measure stops after {BUDGET:?}");
    let sample = changes(100);
    raw_insert_one(&uri, &sample).await;
    raw_insert_many(&uri, &sample, 500).await;
    store_apply(&uri, 1).await;
    store_apply(&uri, 100).await;
    store_apply(&uri, 500).await;
}
