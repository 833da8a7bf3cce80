//! Deliveries wired through the real binary: a `[deliveries.logic_apps]` section in the config
//! file makes the `deliveries` role push every routed notification to a Logic Apps HTTP trigger
//! (a real HTTP server on 127.0.0.1 playing the workflow), in order per entity, once each, signed;
//! and the printed configuration never shows the trigger's signature or the signing key.

use crate::support;

use enrollstream_testkit::targets::Fake;
use serde_json::json;
use std::time::Duration;
use support::{eventually, TestApp};

#[tokio::test]
async fn notifications_reach_logic_apps_once_in_order_and_signed() {
    let workflow = Fake::logic_apps("trigger-sas-signature", Some("hmac-key-for-tests")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("enrollstream.toml");
    std::fs::write(
        &config,
        format!(
            "[deliveries.logic_apps.target]\nurl = \"{}\"\nsigning_key = \"hmac-key-for-tests\"\n",
            workflow.trigger_url()
        ),
    )
    .unwrap();
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_enrollstream"))
        .arg("config")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(printed.status.success());
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.contains("logic_apps"), "{printed}");
    assert!(
        !printed.contains("trigger-sas-signature") && !printed.contains("hmac-key-for-tests"),
        "secrets printed: {printed}"
    );

    let data = dir.path().join("data");
    let mut app = TestApp::spawn(&data, &["--config", config.to_str().unwrap()]);
    let r = app.post("/v1/applications", json!({"applicant":{"name":"Jane Doe","email":"jane@example.com"},"product":"dental-basic"})).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<serde_json::Value>().await.unwrap()["application_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .post(
            &format!("/v1/applications/{id}/submit"),
            json!({"submitted_by":"member"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let r = app
        .post(
            &format!("/v1/applications/{id}/signature"),
            json!({"signed_by":"Jane Doe"}),
        )
        .await;
    assert_eq!(r.status(), 202);

    let versions = eventually(
        "three notifications at the workflow",
        Duration::from_secs(60),
        || async {
            let versions = workflow
                .versions_by_entity()
                .get(&id)
                .cloned()
                .unwrap_or_default();
            (versions.len() >= 3).then_some(versions)
        },
    )
    .await;
    assert_eq!(versions, [1, 2, 3], "in entity order, each once");
    // Each delivery journaled for the entity, off the delivery path: polled for.
    let journaled = eventually(
        "three deliveries in the log",
        Duration::from_secs(30),
        || async {
            let (status, body) = app
                .get_json(&format!("/v1/admin/deliveries?entity_id={id}"))
                .await;
            (status == 200 && body["deliveries"].as_array().is_some_and(|d| d.len() == 3))
                .then_some(body)
        },
    )
    .await;
    let records = journaled["deliveries"].as_array().unwrap();
    let mut events: Vec<&str> = records
        .iter()
        .map(|d| {
            assert_eq!(d["target"], "logic_apps", "{d}");
            assert_eq!(d["outcome"], "delivered", "{d}");
            assert_eq!(d["entity_kind"], "application", "{d}");
            assert_eq!(d["attempts"], 1, "{d}");
            assert!(
                d["status"]
                    .as_u64()
                    .is_some_and(|s| (200..300).contains(&s)),
                "{d}"
            );
            d["event_id"].as_str().expect("the causing event")
        })
        .collect();
    events.sort();
    events.dedup();
    assert_eq!(events.len(), 3, "one record per notification: {journaled}");
    let newest_first: Vec<chrono::DateTime<chrono::Utc>> = records
        .iter()
        .map(|d| d["at"].as_str().unwrap().parse().expect("an RFC 3339 time"))
        .collect();
    let mut sorted = newest_first.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(newest_first, sorted, "newest first");
    assert_eq!(workflow.duplicates(), 0);
    let request = workflow.requests().into_iter().next().expect("a request");
    assert!(request.header("idempotency-key").is_some());
    assert!(request
        .header("x-enrollstream-signature")
        .is_some_and(|s| s.starts_with("sha256=")));
    app.stop();
}

/// The lead integration service journals like the notification targets: an application's leads
/// show in its deliveries, under `lead_management`, each naming the event it announces.
#[tokio::test]
async fn lead_management_deliveries_are_journaled_for_the_entity() {
    let leads = Fake::lead_management("lead-api-key").await;
    let dir = tempfile::tempdir().unwrap();
    let config = support::write_config(
        dir.path(),
        &format!(
            "[deliveries.lead_management.target]\nendpoint = \"{}\"\napi_key = \"lead-api-key\"\n",
            leads.endpoint()
        ),
    );
    let app = TestApp::spawn(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let r = app.post("/v1/applications", json!({"applicant":{"name":"Jane Doe","email":"jane@example.com"},"product":"dental-basic"})).await;
    assert_eq!(r.status(), 202);
    let created: serde_json::Value = r.json().await.unwrap();
    let id = created["application_id"].as_str().unwrap().to_string();
    let applied = eventually(
        "the lead at Lead Management",
        Duration::from_secs(60),
        || async { (leads.applied_count() >= 1).then(|| leads.applied()) },
    )
    .await;
    assert_eq!(applied.len(), 1, "one lead for one event: {applied:?}");
    let journaled = eventually(
        "the lead delivery in the log",
        Duration::from_secs(30),
        || async {
            let (status, body) = app
                .get_json(&format!("/v1/admin/deliveries?entity_id={id}"))
                .await;
            (status == 200 && body["deliveries"].as_array().is_some_and(|d| !d.is_empty()))
                .then_some(body)
        },
    )
    .await;
    let records = journaled["deliveries"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{journaled}");
    let d = &records[0];
    assert_eq!(d["target"], "lead_management", "{d}");
    assert_eq!(d["outcome"], "delivered", "{d}");
    assert_eq!(d["entity_kind"], "application", "{d}");
    assert_eq!(d["event_id"], created["event_id"], "{d}");
}
