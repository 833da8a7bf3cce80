//! `enrollstream rebuild` beside a running `serve` on Kafka and MongoDB (FerretDB), every
//! process real (issue 18): reads keep answering while it runs, quotes keep arriving, it
//! switches the read model to generation 2, the rebuilt generation holds what the live one
//! held, and no notification is published twice. When one is, the test names it and the
//! generations the relay took it from (the store logs each hand-out, `RELAY_LOG`), and counts
//! apart the re-sends that follow a failed mark (at least once, by design).

use crate::support;

use enrollstream_kafka::{KafkaBus, KafkaConfig};
use enrollstream_ports::{codec, EventBus, StartFrom, SubscriptionSpec};
use enrollstream_testkit::contract::store::fixtures::{quote_created, quote_id};
use enrollstream_testkit::testbed::{Kafka, Mongo};
use mongodb::bson::{doc, Document};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{eventually, TestApp};

const DATABASE: &str = "enrollstream";
/// Enough that the rebuild takes a while on FerretDB beside live writes, few enough for a test
/// (1,000 took the whole test 160-380 s).
const PRELOADED: usize = 400;
const NOTIFICATION_TOPICS: [&str; 2] = ["quote-notifications", "entity-updates"];

fn engines(kafka: &Kafka, mongo: &Mongo) -> Vec<String> {
    vec![
        "--kafka-brokers".into(),
        kafka.bootstrap(),
        "--mongodb-uri".into(),
        format!("{}/{DATABASE}", mongo.uri()),
    ]
}

async fn database(mongo: &Mongo) -> mongodb::Database {
    mongodb::Client::with_uri_str(mongo.uri())
        .await
        .unwrap()
        .database(DATABASE)
}

/// The highest `active/<N>` document of the pointer names the active generation (none: 1).
async fn active_generation(db: &mongodb::Database) -> u64 {
    let mut cursor = db
        .collection::<Document>("read_model_generations")
        .find(doc! {})
        .await
        .unwrap();
    let mut active = 1;
    while cursor.advance().await.unwrap() {
        let d = cursor.deserialize_current().unwrap();
        if let Some(g) = d
            .get_str("_id")
            .ok()
            .and_then(|id| id.strip_prefix("active/"))
        {
            active = active.max(g.parse().unwrap());
        }
    }
    active
}

/// Every log entry of a collection, by event id: what an entity was after each event.
async fn entries(db: &mongodb::Database, collection: &str) -> BTreeMap<String, Document> {
    let projection =
        doc! { "entity_kind": 1, "entity_id": 1, "version": 1, "status": 1, "state": 1 };
    let mut cursor = db
        .collection::<Document>(collection)
        .find(doc! {})
        .projection(projection)
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    while cursor.advance().await.unwrap() {
        let d = cursor.deserialize_current().unwrap();
        out.insert(d.get_str("_id").unwrap().to_string(), d);
    }
    out
}

fn rebuild(dir: &Path, engines: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_enrollstream"))
        .args(["rebuild", "--data-dir"])
        .arg(dir)
        .args(engines)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

async fn post_quote(app: &TestApp, i: usize) -> (String, String) {
    let r = app
        .post(
            "/v1/quotes",
            json!({"customer_id": format!("C-{i}"), "product": "dental-basic", "amount_minor": 100, "currency": "EUR"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let v: serde_json::Value = r.json().await.unwrap();
    (
        v["quote_id"].as_str().unwrap().to_string(),
        v["event_id"].as_str().unwrap().to_string(),
    )
}

async fn read_after(app: &TestApp, id: &str, event: &str) {
    eventually(
        &format!("quote {id} to be readable after {event}"),
        Duration::from_secs(120),
        || async {
            let (status, body) = app
                .get_json(&format!("/v1/quotes/{id}?after={event}&wait_ms=5000"))
                .await;
            assert!(status == 200 || status == 409, "{id}: {status} {body}");
            (status == 200).then_some(())
        },
    )
    .await;
}

/// Every notification on the topics, by id, with how often it was published: read until every
/// expected one is in and a poll after that finds nothing more.
async fn published(kafka: &Kafka, expected: usize) -> HashMap<String, usize> {
    let bus = KafkaBus::new(KafkaConfig {
        brokers: kafka.bootstrap(),
        ..Default::default()
    })
    .unwrap();
    let mut spec = SubscriptionSpec::new(
        format!("test-reader-{}", uuid::Uuid::new_v4()),
        &NOTIFICATION_TOPICS,
    );
    spec.start = StartFrom::Earliest;
    let mut sub = bus.subscribe(spec).await.unwrap();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let batch = sub.poll(1000, Duration::from_secs(2)).await.unwrap();
        if batch.is_empty() && counts.len() >= expected {
            break;
        }
        for m in &batch {
            *counts.entry(codec::decode(m).unwrap().id).or_default() += 1;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "read {} of {expected} notifications in 180 s",
            counts.len()
        );
    }
    sub.close().await.unwrap();
    counts
}

/// For each notification published twice: the generations the relay took it from, in order,
/// and whether a mark that failed named it (then its re-send is at least once, by design).
fn explain(log: &str, twice: &[&String]) -> (Vec<String>, usize) {
    let field = |line: &str, name: &str| -> Option<String> {
        let start = line.find(&format!("{name}="))? + name.len() + 1;
        let rest = &line[start..];
        Some(rest.split_whitespace().next().unwrap_or("").to_string())
    };
    let mut resent_after_failed_mark = 0;
    let mut unexplained = Vec::new();
    for id in twice {
        let mut from = Vec::new();
        let mut failed_mark = false;
        for line in log.lines().filter(|l| l.contains(id.as_str())) {
            if line.contains("handed to the relay") {
                from.push(field(line, "generation").unwrap_or_default());
            } else if line.contains("marking published failed") {
                failed_mark = true;
            }
        }
        from.dedup();
        // Handed out from two generations: the duplicate this test is about, failed mark or not.
        if failed_mark && from.len() <= 1 {
            resent_after_failed_mark += 1;
        } else {
            unexplained.push(format!("{id}: handed out from generation(s) {from:?}"));
        }
    }
    (unexplained, resent_after_failed_mark)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_beside_serve_on_mongodb_switches_without_notifying_twice() {
    let kafka = Kafka::start()
        .expect("the Kafka broker starts (bash scripts/testbed/install.sh installs it)");
    let mongo = Mongo::start()
        .expect("the MongoDB-protocol server starts (bash scripts/testbed/install.sh installs it)");
    let engines = engines(&kafka, &mongo);
    let args: Vec<&str> = engines.iter().map(String::as_str).collect();
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("serve.log");
    let filter = format!(
        "warn,{}=debug,enrollstream_mongodb::generations=info",
        enrollstream_mongodb::RELAY_LOG
    );
    let mut app = TestApp::spawn_to_log(dir.path(), &args, &log, &filter);

    // Straight onto the bus, as an upstream producer would (the topics exist once serve is up).
    let ids: Vec<String> = (0..PRELOADED).map(|_| quote_id()).collect();
    let bus = KafkaBus::new(KafkaConfig {
        brokers: kafka.bootstrap(),
        ..Default::default()
    })
    .unwrap();
    for chunk in ids.chunks(500) {
        let messages = chunk
            .iter()
            .map(|id| codec::encode(&quote_created(id)))
            .collect();
        bus.publisher()
            .publish("quote-events", messages)
            .await
            .unwrap();
    }
    let (first, last) = (&ids[0], &ids[PRELOADED - 1]);
    eventually(
        "the preloaded quotes to be projected and announced",
        Duration::from_secs(600),
        || async {
            let (status, _) = app.get_json(&format!("/v1/quotes/{last}")).await;
            let (_, ready) = app.get_json("/readyz").await;
            (status == 200 && ready["outbox_backlog"] == 0).then_some(())
        },
    )
    .await;
    let db = database(&mongo).await;
    assert_eq!(
        active_generation(&db).await,
        1,
        "never rebuilt: generation 1"
    );

    // The rebuild, while reads and new quotes go on until it is done: the live projector
    // applies them to generation 1 as the rebuild chases it, and to generation 2 after.
    let started = std::time::Instant::now();
    let rebuilt = tokio::task::spawn_blocking({
        let (dir, engines) = (dir.path().to_path_buf(), engines.clone());
        move || rebuild(&dir, &engines)
    });
    let (mut live, mut reads) = (Vec::new(), 0usize);
    let mut i = 0;
    while !rebuilt.is_finished() {
        let id = &ids[i % PRELOADED];
        let (status, body) = app.get_json(&format!("/v1/quotes/{id}")).await;
        assert_eq!(status, 200, "reads answer during the rebuild: {body}");
        reads += 1;
        live.push(post_quote(&app, i).await);
        i += 1;
    }
    let out = rebuilt.await.unwrap();
    let took = started.elapsed();
    let said = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "rebuild took {took:?}; {reads} reads answered and {} quotes accepted meanwhile",
        live.len()
    );
    assert!(out.status.success(), "the rebuild succeeds: {said}");
    assert!(said.contains("generation 2 is active"), "{said}");
    assert_eq!(
        active_generation(&db).await,
        2,
        "the pointer names generation 2"
    );

    // Generation 1 is retired, not dropped yet (its grace is a minute): everything it holds,
    // generation 2 holds alike.
    let (retired, active) = (
        entries(&db, "event_log").await,
        entries(&db, "event_log_g2").await,
    );
    assert!(retired.len() >= PRELOADED, "generation 1 is still there");
    let differing: Vec<&String> = retired
        .iter()
        .filter(|(id, entry)| active.get(*id) != Some(entry))
        .map(|(id, _)| id)
        .collect();
    assert!(
        differing.is_empty(),
        "{} of {} event(s) of the live generation are missing or different in the rebuilt one: {:?}",
        differing.len(),
        retired.len(),
        &differing[..differing.len().min(20)]
    );

    for (id, event) in &live {
        read_after(&app, id, event).await;
    }
    let after = post_quote(&app, 1_000_000).await;
    read_after(&app, &after.0, &after.1).await;
    let (status, _) = app.get_json(&format!("/v1/quotes/{first}")).await;
    assert_eq!(status, 200);
    eventually("the outbox to drain", Duration::from_secs(180), || async {
        let (_, ready) = app.get_json("/readyz").await;
        (ready["outbox_backlog"] == 0).then_some(())
    })
    .await;
    app.stop();

    // Each quote announced once: one notification and one entity update.
    let quotes = PRELOADED + live.len() + 1;
    let counts = published(&kafka, 2 * quotes).await;
    assert_eq!(counts.len(), 2 * quotes, "every quote announced");
    let twice: Vec<&String> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let (unexplained, resent) = explain(&text, &twice);
    let count = |what: &str| text.lines().filter(|l| l.contains(what)).count();
    eprintln!(
        "applies that raced the switch and followed it: {}; messages recorded again and not published from the later generation: {}",
        count("raced a switch"),
        count("not published from this one")
    );
    eprintln!(
        "{} notification(s) published, {} more than once: {resent} re-sent after a failed mark",
        counts.len(),
        twice.len()
    );
    assert!(
        unexplained.is_empty(),
        "{} of {} notification(s) published twice with no failed mark to explain it:\n{}",
        unexplained.len(),
        counts.len(),
        unexplained.join("\n")
    );
}
