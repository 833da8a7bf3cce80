//! Crash safety on the production engines: Kafka (a real Apache Kafka broker) and MongoDB (a
//! real MongoDB-protocol server). One process runs the API and the relay; two processes run the
//! projector in one consumer group. Projectors are SIGKILLed at random moments while events flow
//! and restarted; afterwards every accepted event is in the read model exactly once and every
//! notification was published at least once.

use crate::support;

use enrollstream_domain::routing::RoutingRules;
use enrollstream_kafka::{KafkaBus, KafkaConfig};
use enrollstream_mongodb::MongoStore;
use enrollstream_ports::{codec, CommitPosition, EventBus, InboundMessage, Store};
use enrollstream_testkit::testbed::{Kafka, Mongo};
use rand::Rng;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{drained, eventually, read_until, TestApp};

const DATABASE: &str = "enrollstream";

fn engines(kafka: &Kafka, mongo: &Mongo) -> Vec<String> {
    vec![
        "--kafka-brokers".into(),
        kafka.bootstrap(),
        "--mongodb-uri".into(),
        format!("{}/{DATABASE}", mongo.uri()),
    ]
}

/// Each process logs at info into a file of its own under `logs` (a restarted projector gets a
/// new one), so that a failure can show what every process said.
fn spawn(
    dir: &std::path::Path,
    roles: &[&str],
    engines: &[String],
    logs: &std::path::Path,
    name: &str,
) -> TestApp {
    let mut args: Vec<&str> = roles.iter().flat_map(|r| ["--role", r]).collect();
    args.extend(engines.iter().map(String::as_str));
    TestApp::spawn_to_log(dir, &args, &logs.join(format!("{name}.log")), "info")
}

/// What to look at when the read model stays short, kept short enough to survive a CI log's
/// truncation: where each missing event sits on the bus against the group's commit there (a
/// commit past it means a skipped message, one short of it a partition nobody consumes), any
/// dead letter naming it, and the lines of every process's log that name it or a rebalance. The
/// whole logs stay on disk, at the path printed.
async fn report(kafka: &Kafka, logs: &std::path::Path, missing: &[String]) -> String {
    let mut out = format!("missing from the read model: {missing:?}\n");
    let bus = KafkaBus::new(KafkaConfig {
        brokers: kafka.bootstrap(),
        ..Default::default()
    })
    .unwrap();
    let topics = ["enrollment-events", "quote-events"];
    let dlqs = ["enrollment-events.dlq", "quote-events.dlq"];
    let names = |ts: &[&str]| ts.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    let committed = bus
        .committed(enrollstream_runners::projector::GROUP, &names(&topics))
        .await;
    let ends = bus.end_offsets(&names(&topics)).await;
    let names_missing = |m: &&InboundMessage| {
        let payload = String::from_utf8_lossy(&m.payload);
        missing.iter().any(|id| payload.contains(id.as_str()))
    };
    let on_bus: Vec<_> = scan(&bus, &topics)
        .await
        .iter()
        .filter(names_missing)
        .map(|m| (m.topic.clone(), m.partition, m.offset))
        .collect();
    out += &format!("on the bus at (topic, partition, offset): {on_bus:?}\n");
    for (topic, partition, _) in &on_bus {
        let at = |positions: &Result<Vec<CommitPosition>, _>| {
            positions
                .as_ref()
                .ok()
                .and_then(|ps: &Vec<CommitPosition>| {
                    ps.iter()
                        .find(|p| p.topic == *topic && p.partition == *partition)
                        .map(|p| p.next_offset)
                })
        };
        out += &format!(
            "{topic}/{partition}: committed by {} {:?}, end {:?}\n",
            enrollstream_runners::projector::GROUP,
            at(&committed),
            at(&ends)
        );
    }
    let dead: Vec<_> = scan(&bus, &dlqs)
        .await
        .iter()
        .filter(names_missing)
        .map(|m| format!("{:?}", m.headers))
        .collect();
    out += &format!("dead letters naming them: {dead:?}\n");

    let kept = std::env::temp_dir().join(format!("kafka_crash-logs-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&kept);
    let mut files: Vec<_> = std::fs::read_dir(logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    out += &format!("whole logs in {}\n", kept.display());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let _ = std::fs::write(kept.join(file.file_name().unwrap()), &text);
        out += &format!("--- {} ({} lines)\n", file.display(), text.lines().count());
        for line in text.lines().filter(|l| {
            missing.iter().any(|m| l.contains(m.as_str()))
                || l.contains("partitions assigned")
                || l.contains("partitions revoked")
                || l.contains("rebalance failed")
                || l.contains("ERROR")
        }) {
            out += &format!("{}\n", line.chars().take(400).collect::<String>());
        }
    }
    out
}

/// Everything on `topics` now, for a report: read from the beginning until a poll finds nothing
/// for two seconds (or a minute has passed); errors end the scan with what was read.
async fn scan(bus: &KafkaBus, topics: &[&str]) -> Vec<InboundMessage> {
    use enrollstream_ports::{StartFrom, SubscriptionSpec};
    let mut spec = SubscriptionSpec::new(format!("test-report-{}", uuid::Uuid::new_v4()), topics);
    spec.start = StartFrom::Earliest;
    let Ok(mut sub) = bus.subscribe(spec).await else {
        return Vec::new();
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut all = Vec::new();
    while std::time::Instant::now() < deadline {
        match sub.poll(1000, Duration::from_secs(2)).await {
            Ok(batch) if !batch.is_empty() => all.extend(batch),
            _ => break,
        }
    }
    let _ = sub.close().await;
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn projectors_killed_at_random_lose_and_duplicate_nothing() {
    let kafka = Kafka::start()
        .expect("the Kafka broker starts (bash scripts/testbed/install.sh installs it)");
    let mongo = Mongo::start()
        .expect("the MongoDB-protocol server starts (bash scripts/testbed/install.sh installs it)");
    let engines = engines(&kafka, &mongo);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let logs = tempfile::tempdir().unwrap();
    let logs = logs.path();

    let front = spawn(dirs[0].path(), &["api", "relay"], &engines, logs, "front");
    // Projector processes serve only probes and metrics; the test waits for their listen line.
    let mut projectors = [
        spawn(
            dirs[1].path(),
            &["projector"],
            &engines,
            logs,
            "projector-0-0",
        ),
        spawn(
            dirs[2].path(),
            &["projector"],
            &engines,
            logs,
            "projector-1-0",
        ),
    ];

    let accepted: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (url, accepted, stop) = (front.base_url.clone(), accepted.clone(), stop.clone());
            let client = front.client.clone();
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let (path, body, field) = if (i + w).is_multiple_of(2) {
                        ("quotes", json!({"customer_id": format!("C-{w}-{i}"), "product":"dental-basic","amount_minor": i,"currency":"USD"}), "quote_id")
                    } else {
                        ("applications", json!({"applicant":{"name":"Jane Doe","email":"jane@example.com"},"product":"dental-basic"}), "application_id")
                    };
                    let r = client.post(format!("{url}/v1/{path}")).json(&body).send().await.expect("the front process stays up");
                    assert_eq!(r.status(), 202);
                    let v: serde_json::Value = r.json().await.unwrap();
                    let entry = (format!("/v1/{path}/{}", v[field].as_str().unwrap()), v["event_id"].as_str().unwrap().to_string());
                    accepted.lock().unwrap().push(entry);
                }
            })
        })
        .collect();

    // Kill a projector at a random moment (after a random number of further accepted events),
    // three times, each time restarting it in the same group.
    for round in 0..3 {
        let target = accepted.lock().unwrap().len() + rand::rng().random_range(20..200);
        eventually("more events accepted", Duration::from_secs(60), || {
            let accepted = accepted.clone();
            async move { (accepted.lock().unwrap().len() >= target).then_some(()) }
        })
        .await;
        let victim = round % 2;
        projectors[victim].kill9();
        projectors[victim] = spawn(
            dirs[1 + victim].path(),
            &["projector"],
            &engines,
            logs,
            &format!("projector-{victim}-{}", round + 1),
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() >= 50,
        "too little load to mean anything: {}",
        accepted.len()
    );

    // A SIGKILLed member is noticed only after its session timeout; then the group rebalances
    // and its partitions move to the live projector, which redoes what was not committed.
    // Asked of the store in batches of ids (one `_id` lookup each), since a read through the
    // API costs FerretDB a scan of the event log (it uses no secondary index), about a second
    // per read on a busy machine; a sample of reads then goes through the API.
    let store = MongoStore::connect(&mongo.uri(), DATABASE).await.unwrap();
    let event_ids: Vec<String> = accepted.iter().map(|(_, event)| event.clone()).collect();
    let read_model = drained(
        "accepted events into the read model",
        Duration::from_secs(120),
        || async {
            let mut missing = 0;
            for chunk in event_ids.chunks(200) {
                missing += chunk.len() - store.applied(chunk).await.ok()?.len();
            }
            Some(missing as u64)
        },
    )
    .await;
    if let Err(stalled) = read_model {
        let mut missing = Vec::new();
        for chunk in event_ids.chunks(200) {
            let applied = store.applied(chunk).await.unwrap();
            missing.extend(chunk.iter().filter(|id| !applied.contains(*id)).cloned());
        }
        panic!("{stalled}\n{}", report(&kafka, logs, &missing).await);
    }
    for (path, event) in accepted.iter().rev().take(10) {
        let (status, body) = front
            .get_json(&format!("{path}?after={event}&wait_ms=10000"))
            .await;
        assert_eq!(status, 200, "{path} through the API: {body}");
    }
    let outbox = drained("the outbox", Duration::from_secs(120), || async {
        let (_, ready) = front.get_json("/readyz").await;
        ready["outbox_backlog"].as_u64()
    })
    .await;
    if let Err(stalled) = outbox {
        panic!("{stalled}\n{}", report(&kafka, logs, &[]).await);
    }

    // The whole event log in one scan, then the entities in batches: FerretDB answers a filter
    // on entity_id with a scan of the collection, so one query per entity would make this check
    // quadratic in the number of events.
    let mongo_client = mongodb::Client::with_uri_str(mongo.uri()).await.unwrap();
    let mut cursor = mongo_client
        .database(DATABASE)
        .collection::<mongodb::bson::Document>("event_log")
        .find(mongodb::bson::doc! {})
        .projection(mongodb::bson::doc! {"entity_kind": 1, "entity_id": 1, "event_type": 1})
        .await
        .unwrap();
    let mut logs: HashMap<(String, String), Vec<(String, String)>> = HashMap::new();
    while cursor.advance().await.unwrap() {
        let entry = cursor.deserialize_current().unwrap();
        let field = |name: &str| entry.get_str(name).unwrap().to_string();
        logs.entry((field("entity_kind"), field("entity_id")))
            .or_default()
            .push((field("_id"), field("event_type")));
    }
    let rules = RoutingRules::default();
    let mut expected = HashSet::new();
    let mut keys = Vec::new();
    for (path, event) in &accepted {
        let (kind, id) = match path.strip_prefix("/v1/quotes/") {
            Some(id) => (enrollstream_domain::EntityKind::Quote, id),
            None => (
                enrollstream_domain::EntityKind::Application,
                path.strip_prefix("/v1/applications/").unwrap(),
            ),
        };
        let log = logs
            .get(&(kind.as_str().to_string(), id.to_string()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert_eq!(
            log.len(),
            1,
            "{path}: exactly one event in its log, found {}",
            log.len()
        );
        let (event_id, event_type) = &log[0];
        assert_eq!(event_id, event);
        for (topic, _) in rules.routes(event_type) {
            expected.insert(enrollstream_domain::ids::derived_id(&[
                "notification",
                event,
                &topic,
            ]));
        }
        keys.push((kind, id.to_string()));
    }
    for chunk in keys.chunks(100) {
        let found = store.entities(chunk).await.unwrap();
        assert_eq!(found.len(), chunk.len(), "every accepted entity exists");
        for record in found {
            assert_eq!(record.version, 1, "{:?} {}", record.kind, record.id);
        }
    }

    let bus = KafkaBus::new(KafkaConfig {
        brokers: kafka.bootstrap(),
        ..Default::default()
    })
    .unwrap();
    let ids = |messages: &[InboundMessage]| -> HashSet<String> {
        messages
            .iter()
            .map(|m| codec::decode(m).unwrap().id)
            .collect()
    };
    // Every expected notification id turns up (duplicates allowed: at least once, same id).
    let messages = read_until(
        &bus,
        &["enrollment-notifications", "quote-notifications"],
        Duration::from_secs(120),
        |read| expected.is_subset(&ids(read)),
    )
    .await;
    assert!(messages.len() >= expected.len());
}
