//! The walking skeleton end to end: the real binary on a temporary data directory, driven over
//! HTTP: quote and application created, submitted by a broker, signed; read model, event log and
//! notification topic read back.

use crate::support;

use enrollstream_domain::notification::NotificationData;
use enrollstream_ports::codec;
use serde_json::json;
use std::time::Duration;
use support::{read_all, TestApp};

#[tokio::test]
async fn broker_application_flow_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = TestApp::spawn(dir.path(), &[]);

    let r = app.post("/v1/quotes", json!({"customer_id":"C-1","product":"dental-basic","amount_minor":5000,"currency":"USD"})).await;
    assert_eq!(r.status(), 202);
    let quote: serde_json::Value = r.json().await.unwrap();
    let quote_id = quote["quote_id"].as_str().unwrap().to_string();

    let r = app.post("/v1/applications", json!({"applicant":{"name":"Jane Doe","email":"jane@example.com"},"product":"dental-basic","quote_id":quote_id})).await;
    assert_eq!(r.status(), 202);
    let created: serde_json::Value = r.json().await.unwrap();
    let app_id = created["application_id"].as_str().unwrap().to_string();

    // Commands right after creation work: the API waits for its own earlier event to project.
    let r = app
        .post(&format!("/v1/applications/{app_id}/submit"), json!({"submitted_by":"broker","broker":{"id":"B-7","name":"Acme Brokers","email":"agent@acme.test"}}))
        .await;
    assert_eq!(r.status(), 202);
    let submitted: serde_json::Value = r.json().await.unwrap();
    let (status, body) = app
        .get_json(&format!(
            "/v1/applications/{app_id}?after={}",
            submitted["event_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "AWAITING_SIGNATURE");
    // The reminders role keeps its own state from the same events (its own consumer group).
    let reminder = support::eventually(
        "a reminder for the broker submission",
        Duration::from_secs(30),
        || async {
            let (_, body) = app.get_json(&format!("/v1/applications/{app_id}")).await;
            (body["reminder"]["status"] == "AWAITING_SIGNATURE").then(|| body["reminder"].clone())
        },
    )
    .await;
    assert_eq!(reminder["attempts"], 0);
    assert!(
        reminder["next_due_at"].is_string(),
        "the first reminder is scheduled: {reminder}"
    );

    let r = app
        .post(
            &format!("/v1/applications/{app_id}/signature"),
            json!({"signed_by":"Jane Doe"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let signed: serde_json::Value = r.json().await.unwrap();
    let signed_event = signed["event_id"].as_str().unwrap().to_string();

    let (status, body) = app
        .get_json(&format!("/v1/applications/{app_id}?after={signed_event}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["application_id"], app_id);
    assert_eq!(body["status"], "SIGNED");
    assert_eq!(body["version"], 3);
    support::eventually(
        "the signature to stop the reminders",
        Duration::from_secs(30),
        || async {
            let (_, body) = app.get_json(&format!("/v1/applications/{app_id}")).await;
            (body["reminder"]["status"] == "SIGNED").then_some(())
        },
    )
    .await;

    let (status, log) = app
        .get_json(&format!("/v1/applications/{app_id}/events"))
        .await;
    assert_eq!(status, 200);
    let types: Vec<&str> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "com.enrollstream.application.started.v1",
            "com.enrollstream.application.submitted.v1",
            "com.enrollstream.application.signature_received.v1"
        ]
    );

    let (status, q) = app.get_json(&format!("/v1/quotes/{quote_id}")).await;
    assert_eq!(status, 200, "{q}");
    assert_eq!(q["status"], "QUOTED");
    assert_eq!(q["premium"], json!({"amount_minor":5000,"currency":"USD"}));

    // Every notification reaches its topic: wait until the relay drained the outbox, then stop
    // the process (the embedded bus serves one process) and read the topics.
    support::eventually("the outbox to drain", Duration::from_secs(30), || async {
        let (_, ready) = app.get_json("/readyz").await;
        (ready["outbox_backlog"] == 0).then_some(())
    })
    .await;
    app.stop();

    let bus = enrollstream_sqlite::bus::EmbeddedBus::open(dir.path(), 3).unwrap();
    let notes = read_all(&bus, &["enrollment-notifications"]).await;
    let ours: Vec<NotificationData> = notes
        .iter()
        .map(|m| codec::decode(m).unwrap())
        .filter(|e| e.subject.as_deref() == Some(app_id.as_str()))
        .map(|e| serde_json::from_value(e.data).unwrap())
        .collect();
    let kinds: Vec<&str> = ours.iter().map(|n| n.event_type.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "com.enrollstream.application.started.v1",
            "com.enrollstream.application.submitted.v1",
            "com.enrollstream.application.signature_received.v1"
        ],
        "notifications in entity order"
    );
    let signed_note = ours.last().unwrap();
    assert_eq!(signed_note.event_id, signed_event);
    assert_eq!(
        signed_note.routing.targets,
        ["logic_apps", "salesforce", "lead_management"]
    );
    assert_eq!(signed_note.state["status"], "SIGNED");
    let m = notes
        .iter()
        .find(|m| m.header("ce_id") == Some(signed_note.notification_id.as_str()))
        .unwrap();
    assert_eq!(m.key.as_deref(), Some(app_id.as_str()));
    assert_eq!(m.header("ce_routingpriority"), Some("high"));
    assert_eq!(
        m.header("ce_routingtargets"),
        Some("logic_apps,salesforce,lead_management")
    );

    let updates = read_all(&bus, &["entity-updates"]).await;
    assert!(
        updates
            .iter()
            .any(|m| m.key.as_deref() == Some(quote_id.as_str())),
        "EntityUpdated for the quote"
    );
}

#[tokio::test]
async fn a_second_process_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _app = TestApp::spawn(dir.path(), &[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_enrollstream"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use by another enrollstream process"),
        "{stderr}"
    );
}

const UPSTREAM_1: &str = "0192f4c1-7d2e-7a3b-9c4d-000000000001";
const UPSTREAM_2: &str = "0192f4c1-7d2e-7a3b-9c4d-000000000002";

#[tokio::test]
async fn a_bad_event_from_upstream_is_dead_lettered_and_does_not_block() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = TestApp::spawn(dir.path(), &[]);
    // Schema-valid but an invalid transition: a signature for an application never started.
    let orphan = json!({
        "specversion":"1.0","id":UPSTREAM_1,"source":"/partner","type":"com.enrollstream.application.signature_received.v1",
        "subject":"A-ORPHAN","time":"2026-01-01T00:00:00Z","datacontenttype":"application/json",
        "data":{"application_id":"A-ORPHAN","signed_by":"Nobody"}
    });
    let r = app
        .client
        .post(app.url("/v1/events"))
        .header("content-type", "application/cloudevents+json")
        .json(&orphan)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // An event behind it on the same key still gets through.
    let good = json!({
        "specversion":"1.0","id":UPSTREAM_2,"source":"/partner","type":"com.enrollstream.application.started.v1",
        "subject":"A-ORPHAN","time":"2026-01-01T00:00:01Z","datacontenttype":"application/json",
        "data":{"application_id":"A-ORPHAN","applicant":{"name":"Late Starter","email":"late@example.com"},"product":"dental-basic"}
    });
    let r = app
        .client
        .post(app.url("/v1/events"))
        .header("content-type", "application/cloudevents+json")
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let accepted: serde_json::Value = r.json().await.unwrap();
    let key = accepted["accepted"][0]["event_key"].as_str().unwrap();
    let (status, body) = app
        .get_json(&format!("/v1/applications/A-ORPHAN?after={key}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "STARTED");
    app.stop();

    let bus = enrollstream_sqlite::bus::EmbeddedBus::open(dir.path(), 3).unwrap();
    let dead = read_all(&bus, &["enrollment-events.dlq"]).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].header("ce_id"), Some(UPSTREAM_1));
    assert_eq!(dead[0].header("dlq_reason"), Some("invalid_transition"));
    assert_eq!(
        dead[0].header("dlq_consumer_group"),
        Some("read-model-service")
    );
    assert!(dead[0]
        .header("dlq_error")
        .unwrap()
        .contains("not been started"));
}

#[tokio::test]
async fn a_process_without_the_api_role_serves_probes_and_metrics_only() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(dir.path(), &["--role", "projector", "--role", "relay"]);
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path} on a projector and relay process");
    }
    let ready: serde_json::Value = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let components = ready["components"].to_string();
    assert!(
        components.contains("read-model-service") && components.contains("relay"),
        "readiness names the roles this process runs: {ready}"
    );
    let r = app
        .client
        .post(app.url("/v1/quotes"))
        .json(&json!({"customer_id":"C-1","product":"dental-basic","amount_minor":5000,"currency":"USD"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "commands belong to the api role");
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "the refusal is a problem document"
    );
}
