//! Operations through the real binary: dead letters listed and redriven once their cause is
//! fixed, and the read model rebuilt from the bus without publishing a notification twice.

mod support;

use serde_json::json;
use std::path::Path;
use std::time::Duration;
use support::{eventually, read_all, TestApp};

fn enrollstream(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_enrollstream"))
        .args(args)
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

fn event(id: &str, ty: &str, time: &str, data: serde_json::Value) -> serde_json::Value {
    json!({"specversion":"1.0","id":id,"source":"/partner","type":format!("com.enrollstream.application.{ty}.v1"),
           "subject":"A-1","time":time,"datacontenttype":"application/json","data":data})
}

#[tokio::test]
async fn dead_letters_are_listed_and_redriven_after_the_cause_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = TestApp::spawn(dir.path(), &[]);
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
    let (status, body) = app.get_json("/v1/applications/A-1?after=submit-1").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("AWAITING_SIGNATURE"))
    );
    app.stop();

    let listed = enrollstream(dir.path(), &["dlq", "list", "--topic", "enrollment-events"]);
    let lines: Vec<serde_json::Value> = String::from_utf8(listed.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["reason"], "invalid_transition");
    assert_eq!(lines[0]["original_topic"], "enrollment-events");
    assert_eq!(lines[0]["payload"]["signed_by"], "Jane");

    enrollstream(
        dir.path(),
        &["dlq", "redrive", "--topic", "enrollment-events"],
    );
    // A second redrive moves nothing: the redrive group committed what it moved.
    let again = enrollstream(
        dir.path(),
        &["dlq", "redrive", "--topic", "enrollment-events"],
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("redrove 0 dead letter(s)"));

    let mut app = TestApp::spawn(dir.path(), &[]);
    let (status, body) = app.get_json("/v1/applications/A-1?after=sig-1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "SIGNED");
    app.stop();
}

#[tokio::test]
async fn rebuild_restores_the_read_model_without_notifying_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = TestApp::spawn(dir.path(), &[]);
    let mut last = String::new();
    let mut ids = Vec::new();
    for i in 0..20 {
        let r = app.post("/v1/quotes", json!({"customer_id": format!("C-{i}"), "product":"dental-basic","amount_minor": 100 * i,"currency":"EUR"})).await;
        assert_eq!(r.status(), 202);
        let v: serde_json::Value = r.json().await.unwrap();
        ids.push(v["quote_id"].as_str().unwrap().to_string());
        last = v["event_id"].as_str().unwrap().to_string();
    }
    let (before_status, before) = app
        .get_json(&format!("/v1/quotes/{}?after={last}", ids[19]))
        .await;
    assert_eq!(before_status, 200);
    eventually("the outbox to drain", Duration::from_secs(30), || async {
        let (_, ready) = app.get_json("/readyz").await;
        (ready["outbox_backlog"] == 0).then_some(())
    })
    .await;
    app.stop();
    let notifications_before = {
        let bus = enrollstream_sqlite::bus::EmbeddedBus::open(dir.path(), 3).unwrap();
        read_all(&bus, &["quote-notifications", "entity-updates"])
            .await
            .len()
    };
    assert_eq!(notifications_before, 40);

    let out = enrollstream(dir.path(), &["rebuild"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rebuilt the read model from 20 event(s)")
    );

    let mut app = TestApp::spawn(dir.path(), &[]);
    let (status, mut after) = app.get_json(&format!("/v1/quotes/{}", ids[19])).await;
    assert_eq!(status, 200);
    let mut before = before;
    // Only the wall-clock time of the store write differs; the entity itself is identical.
    assert_ne!(after["projected_at"], before["projected_at"]);
    after["projected_at"] = json!(null);
    before["projected_at"] = json!(null);
    assert_eq!(after, before, "the rebuilt state equals the original");
    let (_, log) = app.get_json(&format!("/v1/quotes/{}/events", ids[0])).await;
    assert_eq!(log["events"].as_array().unwrap().len(), 1);
    let (_, ready) = app.get_json("/readyz").await;
    assert_eq!(
        ready["outbox_backlog"], 0,
        "replayed notifications are recorded as already published"
    );
    app.stop();
    let bus = enrollstream_sqlite::bus::EmbeddedBus::open(dir.path(), 3).unwrap();
    assert_eq!(
        read_all(&bus, &["quote-notifications", "entity-updates"])
            .await
            .len(),
        notifications_before,
        "no notification published twice"
    );
}
