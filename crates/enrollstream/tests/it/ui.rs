//! The dashboard at /ui, through the real binary and a real browser: headless Debian chromium
//! driven by playwright-core (tests/ui/e2e.mjs). Screenshots land in target/ui-artifacts/.
//! Needs node, chromium and playwright-core (scripts/install-build-deps.sh and
//! scripts/testbed/install.sh); without them the test fails and says which is missing.

use crate::support;

use enrollstream_testkit::targets::Fake;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::{create_key, eventually, TestApp};

fn tool(var: &str, default: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var(var).unwrap_or_else(|_| default.to_string()));
    assert!(
        path.exists(),
        "{} not found ({var}): run scripts/install-build-deps.sh and scripts/testbed/install.sh, then `source scripts/testbed/env.sh`",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_the_pipeline_an_application_its_deliveries_reminders_and_dead_letters()
{
    let home = std::env::var("HOME").unwrap_or_default();
    let playwright = tool(
        "ENROLLSTREAM_PLAYWRIGHT",
        &format!("{home}/.cache/enrollstream/playwright-core-1.64.1/node_modules"),
    );
    assert!(
        playwright.join("playwright-core").exists(),
        "playwright-core missing in {}: run scripts/testbed/install.sh",
        playwright.display()
    );
    let chromium = tool("ENROLLSTREAM_CHROMIUM", "/usr/bin/chromium");
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node not found on PATH: the dashboard's test runs tests/ui/e2e.mjs with Node.js"
    );

    // A Logic Apps workflow to deliver to: the entity view shows what reached it.
    let workflow = Fake::logic_apps("trigger-sig", None).await;
    let dir = tempfile::tempdir().unwrap();
    let config = support::logic_apps_config(dir.path(), &workflow.trigger_url());
    let args = ["--config", config.to_str().unwrap()];
    let data = dir.path().join("data");
    let read_key = create_key(&data, &args, "dashboard-reader", &["read"]);
    let app = TestApp::spawn(&data, &args);

    let started = app.post("/v1/applications", json!({"applicant":{"name":"Jane Doe","email":"jane@example.com"},"product":"dental-basic"})).await;
    assert_eq!(started.status(), 202);
    let id = started.json::<Value>().await.unwrap()["application_id"]
        .as_str()
        .unwrap()
        .to_string();
    let submitted = app
        .post(
            &format!("/v1/applications/{id}/submit"),
            json!({"submitted_by":"broker","broker":{"id":"B-ui","name":"Acme Brokers","email":"agent@acme.test"}}),
        )
        .await;
    assert_eq!(submitted.status(), 202);
    let log = eventually("both events projected", Duration::from_secs(30), || async {
        let (status, log) = app.get_json(&format!("/v1/applications/{id}/events")).await;
        (status == 200 && log["events"].as_array().is_some_and(|e| e.len() == 2)).then_some(log)
    })
    .await;
    let (_, state) = app.get_json(&format!("/v1/applications/{id}")).await;
    // Both notifications delivered, and journaled (off the delivery path, so polled for).
    let deliveries = eventually(
        "both deliveries journaled",
        Duration::from_secs(60),
        || async {
            let (status, body) = app
                .get_json(&format!("/v1/admin/deliveries?entity_id={id}"))
                .await;
            (status == 200 && body["deliveries"].as_array().is_some_and(|d| d.len() >= 2))
                .then_some(body)
        },
    )
    .await;
    assert!(workflow
        .versions_by_entity()
        .get(&id)
        .is_some_and(|v| v.len() >= 2));
    let delivered = deliveries["deliveries"].as_array().unwrap();
    assert!(
        delivered
            .iter()
            .all(|d| d["target"] == "logic_apps" && d["entity_id"] == id.as_str()),
        "{deliveries}"
    );
    // The broker's submission put the application on the reminder schedule.
    let (status, schedule) = app
        .get_json("/v1/admin/reminders?state=AWAITING_SIGNATURE")
        .await;
    assert_eq!(status, 200, "{schedule}");
    assert!(
        schedule["reminders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["application_id"] == id.as_str()),
        "{schedule}"
    );
    let event_types: Vec<&str> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();

    // A signature for an application that does not exist: a dead letter to browse and redrive.
    let orphan = json!({"specversion":"1.0","id":uuid::Uuid::new_v4().to_string(),"source":"/partner",
        "type":"com.enrollstream.application.signature_received.v1","subject":"A-ui-1","time":"2026-01-01T00:00:02Z",
        "datacontenttype":"application/json","data":{"application_id":"A-ui-1","signed_by":"Jane"}});
    assert_eq!(app.post_cloudevent(&orphan).await.status(), 202);
    eventually(
        "the orphan dead-lettered",
        Duration::from_secs(30),
        || async {
            let (status, body) = app.get_json("/v1/admin/dlq?topic=enrollment-events").await;
            (status == 200
                && body["dead_letters"]
                    .as_array()
                    .is_some_and(|d| d.len() == 1))
            .then_some(())
        },
    )
    .await;

    let expected = json!({
        "admin_key": app.key,
        "read_key": read_key,
        "application_id": id,
        "status": state["status"],
        "event_types": event_types,
        "events_published": 2,
        "dlq_topic": "enrollment-events",
        "dead_letter_entity": "A-ui-1",
        "deliveries": delivered.len(),
        "delivery_target": "logic_apps",
        "lag_metrics": ["enrollstream_consumer_lag_messages", "enrollstream_outbox_oldest_age_seconds", "enrollstream_reminders_scheduled", "enrollstream_reminder_next_due_seconds"],
    });
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-artifacts");
    let output = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/e2e.mjs"))
        .env("UI_BASE_URL", &app.base_url)
        .env("UI_ARTIFACTS", &artifacts)
        .env("UI_EXPECTED", expected.to_string())
        .env("ENROLLSTREAM_PLAYWRIGHT", &playwright)
        .env("ENROLLSTREAM_CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser test failed (screenshots in {}):\n{stdout}\n{stderr}",
        artifacts.display()
    );
    for shot in [
        "login.png",
        "pipeline.png",
        "entity.png",
        "reminders.png",
        "dlq.png",
        "dlq-dry-run.png",
        "dlq-redriven.png",
    ] {
        assert!(artifacts.join(shot).exists(), "{shot} was saved");
    }
}
