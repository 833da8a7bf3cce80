//! Issue 15 through the real binary: no input stops the pipeline. Inputs that would are refused
//! at the edge (problem+json naming the field), poison that reaches the bus anyway is parked and
//! the partition moves on, a role that dies takes the process down non-zero, configuration is
//! strict, reminders never act on what the projector refused, redrive and rebuild report what
//! they cannot do. Each poison is followed by a valid event that must be projected and notified.

use crate::support;

use enrollstream_ports::{codec, EventBus, Store};
use enrollstream_testkit::targets::{Fake, LogicApps};
use enrollstream_testkit::testbed::Kafka;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{eventually, TestApp};

const PARTNER: &str = "/partner";

fn binary() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_enrollstream"));
    c.env("RUST_LOG", "warn");
    c
}

/// An upstream event as a partner sends it to `/v1/events`.
fn upstream(ty: &str, subject: &str, data: Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": uuid::Uuid::new_v4().to_string(),
        "source": PARTNER,
        "type": format!("com.enrollstream.application.{ty}.v1"),
        "subject": subject,
        "time": chrono::Utc::now().to_rfc3339(),
        "datacontenttype": "application/json",
        "data": data,
    })
}

fn started(id: &str) -> Value {
    upstream(
        "started",
        id,
        json!({"application_id": id, "applicant": {"name": "Jane Doe", "email": "jane@example.com"}, "product": "dental-basic"}),
    )
}

async fn post_events(app: &TestApp, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/events"))
        .header("content-type", "application/cloudevents+json")
        .json(body)
        .send()
        .await
        .expect("request reaches the API")
}

/// Post an event that must be accepted; returns its read-model key.
async fn accepted(app: &TestApp, body: &Value) -> String {
    let r = post_events(app, body).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
    let v: Value = r.json().await.unwrap();
    v["accepted"][0]["event_key"].as_str().unwrap().to_string()
}

/// Wait until `event` is in the read model of `path`, and return the entity.
async fn read_after(app: &TestApp, path: &str, event: &str) -> Value {
    eventually(
        &format!("{event} to reach the read model"),
        Duration::from_secs(60),
        || async {
            let (status, body) = app
                .get_json(&format!("{path}?after={event}&wait_ms=5000"))
                .await;
            (status == 200).then_some(body)
        },
    )
    .await
}

/// A config file delivering to a Logic Apps workflow, plus `extra` TOML.
fn config_with_workflow(dir: &Path, workflow: &Fake<LogicApps>, extra: &str) -> std::path::PathBuf {
    let path = dir.join("enrollstream.toml");
    std::fs::write(
        &path,
        format!(
            "{extra}\n[deliveries.logic_apps.target]\nurl = \"{}\"\n",
            workflow.trigger_url()
        ),
    )
    .unwrap();
    path
}

/// The valid event after the poison is projected and its notification delivered.
async fn notified(workflow: &Fake<LogicApps>, entity: &str) {
    eventually(
        &format!("a notification of {entity} at the workflow"),
        Duration::from_secs(90),
        || async {
            workflow
                .versions_by_entity()
                .contains_key(entity)
                .then_some(())
        },
    )
    .await;
}

#[test]
fn configuration_is_strict_and_checked_without_starting() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[reminders]\nintervl = \"2h\"\n").unwrap();
    let out = binary()
        .args(["config", "--check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a bad file is refused: {stderr}");
    assert!(
        stderr.contains("unknown key `reminders.intervl`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("did you mean `reminders.interval`?"),
        "{stderr}"
    );

    let bogus = dir.path().join("bogus.toml");
    std::fs::write(&bogus, "[bogus]\nx = 1\n").unwrap();
    let out = binary()
        .args(["config", "--check", "--config"])
        .arg(&bogus)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("unknown key `bogus`"), "{stderr}");

    let zero = dir.path().join("zero.toml");
    std::fs::write(
        &zero,
        "[deliveries.logic_apps.target]\nurl = \"https://x.test/run?sig=s\"\n[deliveries.logic_apps.delivery]\nmax_in_flight = 0\n",
    )
    .unwrap();
    let out = binary()
        .args(["config", "--check", "--config"])
        .arg(&zero)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "max_in_flight = 0 is refused: {stderr}"
    );
    assert!(stderr.contains("max_in_flight"), "{stderr}");

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[reminders]\ninterval_hours = 2\n").unwrap();
    let out = binary()
        .args(["config", "--check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));

    // `serve` refuses the bad file before it listens.
    let out = binary()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
}

#[test]
fn a_role_that_dies_takes_the_process_down_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out = binary()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("ENROLLSTREAM_FAILPOINT_PANIC", "relay@300")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("listening"),
        "it started first: {stderr}"
    );
    assert!(
        !out.status.success(),
        "a dead role is a failed process: {stderr}"
    );
    assert!(
        stderr.contains("role relay stopped: it panicked"),
        "{stderr}"
    );
}

#[tokio::test]
async fn inputs_that_would_stop_the_pipeline_are_refused_and_valid_ones_still_flow() {
    let workflow = Fake::logic_apps("sig", None).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_workflow(dir.path(), &workflow, "");
    let app = TestApp::spawn(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let mut exhausted = upstream(
        "signature_reminders_exhausted",
        "A-X",
        json!({"application_id": "A-X", "attempts": 5, "broker_email": "b@example.com"}),
    );
    exhausted["id"] = json!(enrollstream_domain::ids::derived_id(&[
        "reminders-exhausted",
        "A-X"
    ]));
    let mut bad_subject = started("A-X");
    bad_subject["subject"] = json!("A-X\u{7}");
    bad_subject["data"]["application_id"] = json!("A-X\u{7}");
    let mut far_future = started("A-X");
    far_future["time"] = json!("+10000-01-01T00:00:00Z");
    let mut not_a_uuid = started("A-X");
    not_a_uuid["id"] = json!("upstream-1");
    let mut ours = started("A-X");
    ours["source"] = json!("/enrollstream/api");
    for (event, field) in [
        (exhausted, "type"),
        (bad_subject, "subject"),
        (far_future, "time"),
        (not_a_uuid, "id"),
        (ours, "source"),
    ] {
        let r = post_events(&app, &event).await;
        assert_eq!(r.status(), 422, "{field}");
        let problem: Value = r.json().await.unwrap();
        assert!(
            problem["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == field),
            "{field}: {problem}"
        );
    }
    let r = app
        .post(
            "/v1/quotes",
            json!({"customer_id": "C\r\n1", "product": "p"}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let key = accepted(&app, &started("A-VALID")).await;
    read_after(&app, "/v1/applications/A-VALID", &key).await;
    notified(&workflow, "A-VALID").await;
}

#[tokio::test]
async fn a_forged_submission_schedules_no_reminder_and_a_cycle_runs_in_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("enrollstream.toml");
    std::fs::write(
        &config,
        "[reminders]\ninterval = \"1s\"\nmax_attempts = 2\ntick = \"100ms\"\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let app = TestApp::spawn(&data, &["--config", config.to_str().unwrap()]);
    // A broker submission of an application that was never started: the projector refuses it.
    let forged = upstream(
        "submitted",
        "A-FORGED",
        json!({"application_id": "A-FORGED", "submitted_by": "broker",
               "broker": {"id": "B-1", "name": "Mallory", "email": "victim@example.com"}}),
    );
    accepted(&app, &forged).await;
    eventually(
        "the reminder consumer to pass over the refused submission",
        Duration::from_secs(60),
        || async {
            let text = app.scrape_metrics().await?;
            text.lines()
                .any(|l| {
                    l.starts_with("enrollstream_reminder_events_total")
                        && l.contains("refused_by_projector")
                })
                .then_some(())
        },
    )
    .await;

    // A real broker submission: two reminders a second apart, then exhaustion, in seconds.
    let r = app
        .post(
            "/v1/applications",
            json!({"applicant": {"name": "Jane", "email": "jane@example.com"}, "product": "p"}),
        )
        .await;
    let id = r.json::<Value>().await.unwrap()["application_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut submitted = None;
    for _ in 0..100 {
        let r = app
            .post(
                &format!("/v1/applications/{id}/submit"),
                json!({"submitted_by": "broker", "broker": {"id": "B-7", "name": "Acme", "email": "agent@acme.test"}}),
            )
            .await;
        if r.status() == 202 {
            submitted = Some(());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    submitted.expect("the submission is accepted once the start is projected");
    eventually(
        "the reminders to run out",
        Duration::from_secs(60),
        || async {
            let (status, log) = app.get_json(&format!("/v1/applications/{id}/events")).await;
            (status == 200
                && log["events"].as_array()?.iter().any(|e| {
                    e["type"] == "com.enrollstream.application.signature_reminders_exhausted.v1"
                }))
            .then_some(())
        },
    )
    .await;
    let mails: Vec<String> = std::fs::read_dir(data.join("outbox-mail"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(
        mails
            .iter()
            .filter(|m| m.contains("agent@acme.test"))
            .count(),
        2,
        "two reminders to the real broker"
    );
    assert!(
        !mails.iter().any(|m| m.contains("victim@example.com")),
        "nothing to the address of the forged submission"
    );
}

#[tokio::test]
async fn redrive_skips_and_counts_what_it_cannot_redrive() {
    let dir = tempfile::tempdir().unwrap();
    {
        // A dead letter that says nothing of where it came from, ahead of a real one.
        let bus = enrollstream_sqlite::bus::EmbeddedBus::open(dir.path(), 3).unwrap();
        bus.ensure_topics(&[enrollstream_ports::TopicSpec {
            name: "enrollment-events.dlq".into(),
            partitions: 3,
            replication: 1,
            retention: None,
        }])
        .await
        .unwrap();
        bus.publisher()
            .publish(
                "enrollment-events.dlq",
                vec![enrollstream_ports::OutboundMessage {
                    key: "A-1".into(),
                    headers: vec![],
                    payload: b"{}".to_vec(),
                }],
            )
            .await
            .unwrap();
    }
    let mut app = TestApp::spawn(dir.path(), &[]);
    let orphan = upstream(
        "signature_received",
        "A-1",
        json!({"application_id": "A-1", "signed_by": "Jane"}),
    );
    accepted(&app, &orphan).await;
    let key = accepted(&app, &started("A-2")).await;
    read_after(&app, "/v1/applications/A-2", &key).await;
    eventually(
        "the orphan to be dead-lettered",
        Duration::from_secs(30),
        || async {
            let text = app.scrape_metrics().await?;
            text.lines()
                .any(|l| {
                    l.starts_with("enrollstream_dead_letters_total")
                        && l.contains("invalid_transition")
                })
                .then_some(())
        },
    )
    .await;
    app.stop();
    let out = binary()
        .args([
            "dlq",
            "redrive",
            "--topic",
            "enrollment-events",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("redrove 1 dead letter(s)"), "{stderr}");
    assert!(stderr.contains(", skipped 1"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains(r#""action":"skipped""#))
            .count(),
        1,
        "one JSON line names the skipped dead letter: {stdout}"
    );
}

#[tokio::test]
async fn an_in_place_rebuild_that_cannot_project_every_event_fails_with_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = TestApp::spawn(dir.path(), &[]);
    let orphan = upstream(
        "signature_received",
        "A-1",
        json!({"application_id": "A-1", "signed_by": "Jane"}),
    );
    accepted(&app, &orphan).await;
    let key = accepted(&app, &started("A-2")).await;
    read_after(&app, "/v1/applications/A-2", &key).await;
    eventually("the outbox to drain", Duration::from_secs(30), || async {
        let (_, ready) = app.get_json("/readyz").await;
        (ready["outbox_backlog"] == 0).then_some(())
    })
    .await;
    app.stop();
    // Into a shadow copy, an event the live read model refused too does not block the
    // switch: it is listed, counted, and the rebuild succeeds.
    let out = binary()
        .args(["rebuild", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("could not project 1 of 2 event(s)")
            && stderr.contains("invalid_transition")
            && stderr.contains("generation 2 is active"),
        "{stderr}"
    );

    let out = binary()
        .args(["rebuild", "--in-place", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("could not project 1 of 2 event(s)"),
        "{stderr}"
    );
    assert!(stderr.contains("invalid_transition"), "{stderr}");
    // The read model holds the rest.
    let store = enrollstream_sqlite::store::SqliteStore::open(dir.path()).unwrap();
    assert!(store
        .applied(std::slice::from_ref(&key))
        .await
        .unwrap()
        .contains(&key));
}

/// Kafka: poison put on the bus by another producer (past the API) is dead-lettered with its
/// reason, and the valid event behind it on the same partition is projected and notified.
#[tokio::test]
async fn poison_on_the_bus_is_parked_and_its_partition_moves_on() {
    let kafka = Kafka::start().expect("the Kafka broker starts (scripts/testbed/install.sh)");
    let workflow = Fake::logic_apps("sig", None).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_workflow(dir.path(), &workflow, "");
    let app = TestApp::spawn(
        &dir.path().join("data"),
        &[
            "--config",
            config.to_str().unwrap(),
            "--kafka-brokers",
            &kafka.bootstrap(),
        ],
    );
    let bus = enrollstream_kafka::KafkaBus::new(enrollstream_kafka::KafkaConfig {
        brokers: kafka.bootstrap(),
        ..Default::default()
    })
    .unwrap();
    // Same key as the valid event, so the same partition: a number no store can keep exactly
    // and JSON nested past the limit.
    let mut poison = enrollstream_domain::CloudEvent::from_json(&started("A-SAME")).unwrap();
    poison.data["extra"] = json!(u64::MAX);
    poison.data["deep"] = json!([[[[[[[[[[[[1]]]]]]]]]]]]);
    bus.publisher()
        .publish("enrollment-events", vec![codec::encode(&poison)])
        .await
        .unwrap();
    let key = accepted(&app, &started("A-SAME")).await;
    read_after(&app, "/v1/applications/A-SAME", &key).await;
    notified(&workflow, "A-SAME").await;
    let dead = support::read_until(
        &bus,
        &["enrollment-events.dlq"],
        Duration::from_secs(60),
        |m| !m.is_empty(),
    )
    .await;
    assert_eq!(dead[0].header("ce_id"), Some(poison.id.as_str()));
    assert_eq!(dead[0].header("dlq_reason"), Some("invalid_event"));
    assert!(dead[0].header("dlq_error").unwrap().contains("data.extra"));
}

/// Kafka: a notification larger than the broker takes (`MessageSizeTooLarge`, Fatal) is parked
/// (its DLQ cannot take it either, so in the store, with an alert) and the relay moves on.
#[tokio::test]
async fn a_notification_the_broker_refuses_is_parked_and_the_relay_moves_on() {
    let kafka = Kafka::start().expect("the Kafka broker starts (scripts/testbed/install.sh)");
    let workflow = Fake::logic_apps("sig", None).await;
    let dir = tempfile::tempdir().unwrap();
    // A small producer limit stands for the broker's: events fit, their notifications do not.
    let config = config_with_workflow(
        dir.path(),
        &workflow,
        "[kafka.extra]\n\"message.max.bytes\" = \"2500\"\n",
    );
    let data = dir.path().join("data");
    let mut app = TestApp::spawn(
        &data,
        &[
            "--config",
            config.to_str().unwrap(),
            "--kafka-brokers",
            &kafka.bootstrap(),
        ],
    );
    let big = app
        .post(
            "/v1/quotes",
            json!({"customer_id": "C-BIG", "product": "p".repeat(1000), "amount_minor": 1, "currency": "EUR"}),
        )
        .await;
    assert_eq!(big.status(), 202, "{}", big.text().await.unwrap());
    let small = app
        .post(
            "/v1/quotes",
            json!({"customer_id": "C-1", "product": "dental", "amount_minor": 1, "currency": "EUR"}),
        )
        .await;
    assert_eq!(small.status(), 202);
    let small: Value = small.json().await.unwrap();
    let small_id = small["quote_id"].as_str().unwrap();
    notified(&workflow, small_id).await;
    eventually("the outbox to drain", Duration::from_secs(60), || async {
        let (_, ready) = app.get_json("/readyz").await;
        (ready["outbox_backlog"] == 0).then_some(())
    })
    .await;
    app.stop();
    let out = binary()
        .args(["outbox", "parked", "--data-dir"])
        .arg(&data)
        .args(["--kafka-brokers", &kafka.bootstrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parked: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0]["topic"], "quote-notifications");
    let reason = parked[0]["reason"].as_str().unwrap();
    assert!(reason.contains("refused_by_bus"), "{reason}");
    assert_ne!(
        parked[0]["key"], small_id,
        "the big quote's notification is the one parked"
    );
    assert!(parked[0]["bytes"].as_u64().unwrap() > 2500);
}
