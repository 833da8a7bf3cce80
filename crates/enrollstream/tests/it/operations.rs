//! Operations through the real binary, on the embedded bus and on Kafka (a real Apache Kafka
//! broker; the SQLite store in the data directory either way): dead letters listed and redriven
//! once their cause is fixed, and the read model rebuilt from the bus without publishing a
//! notification twice. Each scenario runs on both engines.

use crate::support;

use enrollstream_testkit::testbed::Kafka;
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use support::{eventually, read_all, TestApp};

/// The bus the binary runs on.
enum Engine {
    Embedded,
    Kafka(Box<Kafka>),
}

impl Engine {
    fn kafka() -> Self {
        let kafka = Kafka::start()
            .expect("the Kafka broker starts (bash scripts/testbed/install.sh installs it)");
        Engine::Kafka(Box::new(kafka))
    }

    fn args(&self) -> Vec<String> {
        match self {
            Engine::Embedded => Vec::new(),
            Engine::Kafka(kafka) => vec!["--kafka-brokers".into(), kafka.bootstrap()],
        }
    }

    fn spawn(&self, dir: &Path) -> TestApp {
        let args = self.args();
        TestApp::spawn(dir, &args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Run an `enrollstream` command to completion; panics with its stderr if it fails.
    fn run(&self, dir: &Path, args: &[&str]) -> std::process::Output {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_enrollstream"))
            .args(args)
            .args(self.args())
            .arg("--data-dir")
            .arg(dir)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "enrollstream {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// How many messages `topics` hold, counted exactly; call it while the binary is stopped.
    async fn messages_on(&self, dir: &Path, topics: &[&str]) -> i64 {
        match self {
            Engine::Embedded => {
                let bus = enrollstream_sqlite::bus::EmbeddedBus::open(dir, 3).unwrap();
                read_all(&bus, topics).await.len() as i64
            }
            Engine::Kafka(kafka) => watermarks(kafka, topics),
        }
    }
}

/// How many messages `topics` hold on the broker, summed.
fn watermarks(kafka: &Kafka, topics: &[&str]) -> i64 {
    let config = enrollstream_kafka::KafkaConfig {
        brokers: kafka.bootstrap(),
        ..Default::default()
    };
    let counts = enrollstream_kafka::throughput::messages_on(&config, Some(topics))
        .expect("watermarks of the topics");
    assert_eq!(counts.len(), topics.len(), "every topic exists: {counts:?}");
    counts.iter().map(|(_, messages)| messages).sum()
}

async fn outbox_drained(app: &TestApp) {
    eventually("the outbox to drain", Duration::from_secs(60), || async {
        let (_, ready) = app.get_json("/readyz").await;
        (ready["outbox_backlog"] == 0).then_some(())
    })
    .await;
}

/// Read `path` once `event` is in the read model. The API bounds one wait (10 s); right after
/// start-up the projector may still be joining its group on a busy machine, so a read may need a
/// second try.
async fn read_after(app: &TestApp, path: &str, event: &str) -> serde_json::Value {
    eventually(
        &format!("{event} to reach the read model"),
        Duration::from_secs(60),
        || async {
            let (status, body) = app
                .get_json(&format!("{path}?after={event}&wait_ms=10000"))
                .await;
            assert!(status == 200 || status == 409, "{path}: {status} {body}");
            (status == 200).then_some(body)
        },
    )
    .await
}

/// Post a quote and wait until it is in the read model; returns (quote id, the read).
async fn quote(app: &TestApp, i: u32) -> (String, serde_json::Value) {
    let r = app.post("/v1/quotes", json!({"customer_id": format!("C-{i}"), "product":"dental-basic","amount_minor": 100 * i,"currency":"EUR"})).await;
    assert_eq!(r.status(), 202);
    let v: serde_json::Value = r.json().await.unwrap();
    let (id, event) = (
        v["quote_id"].as_str().unwrap(),
        v["event_id"].as_str().unwrap(),
    );
    let body = read_after(app, &format!("/v1/quotes/{id}"), event).await;
    (id.to_string(), body)
}

async fn rebuild_restores_the_read_model_without_notifying_twice(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let notification_topics = ["quote-notifications", "entity-updates"];

    let mut app = engine.spawn(dir.path());
    let mut quotes = Vec::new();
    for i in 0..20 {
        quotes.push(quote(&app, i).await);
    }
    outbox_drained(&app).await;
    app.stop();
    // Each quote: one notification and one entity update, published once (no crash happened).
    assert_eq!(
        engine.messages_on(dir.path(), &notification_topics).await,
        40
    );

    let out = engine.run(dir.path(), &["rebuild"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("rebuilt the read model from 20 event(s)"),
        "{said}"
    );
    // The test's stderr is a pipe, not a terminal: plain progress lines, the last at the goal.
    let last = said
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("rebuild progress: "))
        .unwrap_or_else(|| panic!("no progress line: {said}"));
    let (position, rest) = last.split_once(" offsets (").unwrap();
    let (done, total) = position.split_once('/').unwrap();
    assert!(
        done == total && total.parse::<u64>().unwrap() >= 20 && rest.starts_with("100%)"),
        "{said}"
    );

    let mut app = engine.spawn(dir.path());
    for (id, before) in &quotes {
        let (status, mut after) = app.get_json(&format!("/v1/quotes/{id}")).await;
        assert_eq!(status, 200, "{id} is back in the read model");
        let mut before = before.clone();
        // Only the wall-clock time of the store write differs.
        after["projected_at"] = json!(null);
        before["projected_at"] = json!(null);
        assert_eq!(
            after, before,
            "the rebuilt state of {id} equals the original"
        );
        let (_, log) = app.get_json(&format!("/v1/quotes/{id}/events")).await;
        assert_eq!(log["events"].as_array().map(Vec::len), Some(1), "{log}");
    }
    // A quote after the rebuild goes through the relay like any other; had the replay recorded
    // its notifications as unpublished, the relay would have published them first.
    quote(&app, 20).await;
    outbox_drained(&app).await;
    app.stop();
    assert_eq!(
        engine.messages_on(dir.path(), &notification_topics).await,
        42,
        "only the new quote's two messages were added: nothing replayed was published again"
    );
}

/// Upstream event ids are UUIDs; the tests name them, and this makes the name one.
fn uuid_of(name: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
}

/// The read model's key of the upstream event named `name` (ids are unique per source).
fn key_of(name: &str) -> String {
    enrollstream_domain::ids::derived_id(&["event", "/partner", &uuid_of(name)])
}

fn event(name: &str, ty: &str, time: &str, data: serde_json::Value) -> serde_json::Value {
    json!({"specversion":"1.0","id":uuid_of(name),"source":"/partner","type":format!("com.enrollstream.application.{ty}.v1"),
           "subject":"A-1","time":time,"datacontenttype":"application/json","data":data})
}

async fn post_event(app: &TestApp, event: serde_json::Value) {
    let r = app
        .client
        .post(app.url("/v1/events"))
        .header("content-type", "application/cloudevents+json")
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
}

async fn dead_letters_are_listed_and_redriven_after_the_cause_is_fixed(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let mut app = engine.spawn(dir.path());
    // The signature arrives before the application exists: dead-lettered with its reason.
    post_event(
        &app,
        event(
            "sig-1",
            "signature_received",
            "2026-01-01T00:00:02Z",
            json!({"application_id":"A-1","signed_by":"Jane"}),
        ),
    )
    .await;
    post_event(&app, event("start-1", "started", "2026-01-01T00:00:00Z", json!({"application_id":"A-1","applicant":{"name":"Jane","email":"jane@example.com"},"product":"dental-basic"}))).await;
    post_event(&app, event("submit-1", "submitted", "2026-01-01T00:00:01Z", json!({"application_id":"A-1","submitted_by":"broker","broker":{"id":"B","name":"Acme","email":"a@acme.test"}}))).await;
    let body = read_after(&app, "/v1/applications/A-1", &key_of("submit-1")).await;
    assert_eq!(body["status"], "AWAITING_SIGNATURE", "{body}");
    app.stop();
    assert_eq!(
        engine
            .messages_on(dir.path(), &["enrollment-events.dlq"])
            .await,
        1
    );

    let listed = engine.run(dir.path(), &["dlq", "list", "--topic", "enrollment-events"]);
    let lines: Vec<serde_json::Value> = String::from_utf8(listed.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["reason"], "invalid_transition");
    assert_eq!(lines[0]["original_topic"], "enrollment-events");
    assert_eq!(lines[0]["consumer_group"], "read-model-service");
    assert_eq!(lines[0]["payload"]["signed_by"], "Jane");

    let redriven = engine.run(
        dir.path(),
        &["dlq", "redrive", "--topic", "enrollment-events"],
    );
    assert!(
        String::from_utf8_lossy(&redriven.stderr).contains("redrove 1 dead letter(s)"),
        "{}",
        String::from_utf8_lossy(&redriven.stderr)
    );
    // The redrive group committed what it moved: a second redrive moves nothing.
    let again = engine.run(
        dir.path(),
        &["dlq", "redrive", "--topic", "enrollment-events"],
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("redrove 0 dead letter(s)"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // Both redrives are in the audit, newest first, with who asked and what came of it.
    let audit = engine.run(dir.path(), &["dlq", "audit"]);
    let records: Vec<serde_json::Value> = String::from_utf8(audit.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(
        [&records[0]["moved"], &records[1]["moved"]],
        [&json!(0), &json!(1)],
        "{records:?}"
    );
    for record in &records {
        assert_eq!(record["status"], "completed", "{record}");
        assert_eq!(record["dry_run"], false, "{record}");
        assert!(
            record["by"].as_str().unwrap().starts_with("cli:"),
            "{record}"
        );
        assert_eq!(
            record["selection"]["filter"]["dlq"]["topic"], "enrollment-events",
            "{record}"
        );
    }

    let mut app = engine.spawn(dir.path());
    let body = read_after(&app, "/v1/applications/A-1", &key_of("sig-1")).await;
    assert_eq!(body["status"], "SIGNED", "{body}");
    app.stop();
}

/// The same operation through the admin API of a serving process (the only way beside a
/// running server on the embedded default; on both engines): list, inspect, a dry run (the default), the real
/// redrive, and both in the audit under the key's name.
async fn dead_letters_are_redriven_through_the_admin_api(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let mut app = engine.spawn(dir.path());
    post_event(
        &app,
        event(
            "sig-2",
            "signature_received",
            "2026-01-01T00:00:02Z",
            json!({"application_id":"A-1","signed_by":"Jane"}),
        ),
    )
    .await;
    let listed = eventually(
        "the dead letter listed",
        Duration::from_secs(60),
        || async {
            let (status, body) = app
                .get_json("/v1/admin/dlq?topic=enrollment-events&reason=invalid_transition")
                .await;
            assert_eq!(status, 200, "{body}");
            (body["dead_letters"].as_array().unwrap().len() == 1).then_some(body)
        },
    )
    .await;
    assert_eq!(listed["topic"], "enrollment-events.dlq");
    let id = listed["dead_letters"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, one) = app.get_json(&format!("/v1/admin/dlq/{id}")).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["payload"]["signed_by"], "Jane");
    assert_eq!(one["consumer_group"], "read-model-service");
    assert!(one["headers"]["ce_type"].is_string(), "{one}");

    for (path, field) in [
        ("/v1/admin/dlq?topic=nope", "topic"),
        ("/v1/admin/dlq?topic=enrollment-events&limit=0", "limit"),
        ("/v1/admin/dlq?topic=enrollment-events&colour=red", "colour"),
        ("/v1/admin/dlq/enrollment-events.dlq:x:1", "id"),
    ] {
        let (status, problem) = app.get_json(path).await;
        assert_eq!(status, 422, "{path}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{path}: {problem}");
    }
    let (status, missing) = app
        .get_json("/v1/admin/dlq/enrollment-events.dlq:0:999")
        .await;
    assert_eq!(status, 404, "{missing}");
    let both = app
        .post(
            "/v1/admin/dlq/redrive",
            json!({"ids": [id], "topic": "enrollment-events"}),
        )
        .await;
    assert_eq!(both.status(), 422);

    // No dry_run in the body: a dry run.
    let dry = app
        .post("/v1/admin/dlq/redrive", json!({"ids": [id]}))
        .await;
    assert_eq!(dry.status(), 200);
    let dry: serde_json::Value = dry.json().await.unwrap();
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(dry["outcomes"][0]["action"], "would_move", "{dry}");
    let (_, still) = app.get_json(&format!("/v1/admin/dlq/{id}")).await;
    assert_eq!(still["redriven"], false, "a dry run moves nothing");

    // The start of the application, then the real redrive: the signature applies.
    post_event(&app, event("start-2", "started", "2026-01-01T00:00:00Z", json!({"application_id":"A-1","applicant":{"name":"Jane","email":"jane@example.com"},"product":"dental-basic"}))).await;
    post_event(&app, event("submit-2", "submitted", "2026-01-01T00:00:01Z", json!({"application_id":"A-1","submitted_by":"broker","broker":{"id":"B","name":"Acme","email":"a@acme.test"}}))).await;
    read_after(&app, "/v1/applications/A-1", &key_of("submit-2")).await;
    let moved = app
        .post(
            "/v1/admin/dlq/redrive",
            json!({"topic": "enrollment-events", "reason": "invalid_transition", "dry_run": false}),
        )
        .await;
    assert_eq!(moved.status(), 200);
    let moved: serde_json::Value = moved.json().await.unwrap();
    assert_eq!(
        (moved["moved"].as_u64(), moved["skipped"].as_u64()),
        (Some(1), Some(0)),
        "{moved}"
    );
    assert_eq!(moved["outcomes"][0]["action"], "moved", "{moved}");
    let body = read_after(&app, "/v1/applications/A-1", &key_of("sig-2")).await;
    assert_eq!(body["status"], "SIGNED", "{body}");

    let (status, audit) = app.get_json("/v1/admin/dlq/audit?limit=10").await;
    assert_eq!(status, 200, "{audit}");
    let redrives = audit["redrives"].as_array().unwrap();
    assert_eq!(redrives.len(), 2, "{audit}");
    assert_eq!(redrives[0]["id"], moved["audit_id"]);
    assert_eq!(redrives[0]["dry_run"], false);
    assert_eq!(redrives[0]["moved"], 1);
    assert_eq!(
        redrives[0]["selection"]["filter"]["filter"]["reason"],
        "invalid_transition"
    );
    assert_eq!(redrives[1]["id"], dry["audit_id"]);
    assert_eq!(redrives[1]["dry_run"], true);
    assert_eq!(redrives[1]["selection"]["ids"][0], id.as_str());
    for r in redrives {
        // The name of the key `TestApp` made (`test-admin-…`), never the key.
        assert!(r["by"].as_str().unwrap().starts_with("test-admin-"), "{r}");
        assert_eq!(r["status"], "completed", "{r}");
    }
    app.stop();
}

#[tokio::test]
async fn embedded_dead_letters_are_redriven_through_the_admin_api() {
    dead_letters_are_redriven_through_the_admin_api(Engine::Embedded).await;
}

#[tokio::test]
async fn kafka_dead_letters_are_redriven_through_the_admin_api() {
    dead_letters_are_redriven_through_the_admin_api(Engine::kafka()).await;
}

#[tokio::test]
async fn embedded_dead_letters_are_listed_and_redriven_after_the_cause_is_fixed() {
    dead_letters_are_listed_and_redriven_after_the_cause_is_fixed(Engine::Embedded).await;
}

#[tokio::test]
async fn kafka_dead_letters_are_listed_and_redriven_after_the_cause_is_fixed() {
    dead_letters_are_listed_and_redriven_after_the_cause_is_fixed(Engine::kafka()).await;
}

#[tokio::test]
async fn embedded_rebuild_restores_the_read_model_without_notifying_twice() {
    rebuild_restores_the_read_model_without_notifying_twice(Engine::Embedded).await;
}

#[tokio::test]
async fn kafka_rebuild_restores_the_read_model_without_notifying_twice() {
    rebuild_restores_the_read_model_without_notifying_twice(Engine::kafka()).await;
}
