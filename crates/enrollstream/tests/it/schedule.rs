//! The reminder schedule and the delivery log over HTTP, through the real binary on the embedded
//! adapters: broker-submitted applications appear on `/v1/admin/reminders` in application id
//! order, filtered by state and paged by cursor; bad parameters are refused with problem+json.

use crate::support;

use serde_json::{json, Value};
use std::time::Duration;
use support::{eventually, TestApp};

async fn application(app: &TestApp, by_broker: bool) -> String {
    let r = app.post("/v1/applications", json!({"applicant":{"name":"Jane Doe","email":"jane@example.com"},"product":"dental-basic"})).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["application_id"]
        .as_str()
        .unwrap()
        .to_string();
    let submission = if by_broker {
        json!({"submitted_by":"broker","broker":{"id":"B-9","name":"Acme Brokers","email":"agent@acme.test"}})
    } else {
        json!({"submitted_by":"member"})
    };
    let r = app
        .post(&format!("/v1/applications/{id}/submit"), submission)
        .await;
    assert_eq!(r.status(), 202);
    id
}

fn ids(page: &Value) -> Vec<String> {
    page["reminders"]
        .as_array()
        .unwrap_or_else(|| panic!("a page of reminders: {page}"))
        .iter()
        .map(|r| r["application_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_lists_pages_and_filters_reminders() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&dir.path().join("data"), &[]);
    let mut brokered = Vec::new();
    for _ in 0..3 {
        brokered.push(application(&app, true).await);
    }
    let member = application(&app, false).await;
    brokered.sort();

    let awaiting = eventually(
        "three reminders awaiting a signature",
        Duration::from_secs(30),
        || async {
            let (status, page) = app
                .get_json("/v1/admin/reminders?state=awaiting_signature")
                .await;
            (status == 200 && ids(&page).len() == 3).then_some(page)
        },
    )
    .await;
    assert_eq!(ids(&awaiting), brokered, "in application id order");
    assert!(awaiting["next_after"].is_null(), "one page: {awaiting}");
    let first = &awaiting["reminders"][0];
    assert_eq!(first["status"], "AWAITING_SIGNATURE");
    assert_eq!(first["attempts"], 0);
    assert!(first["next_due_at"].is_string(), "{first}");
    assert_eq!(first["overdue"], false, "due a day after the submission");
    assert!(
        first["last_sent_at"].is_null() && first["lease"].is_null(),
        "{first}"
    );
    assert_eq!(first["broker"]["name"], "Acme Brokers");

    // The member's application has a reminder record too, one that needs no reminder.
    let (_, all) = eventually("all four listed", Duration::from_secs(30), || async {
        let (status, page) = app.get_json("/v1/admin/reminders").await;
        (status == 200 && ids(&page).len() == 4).then_some((status, page))
    })
    .await;
    let not_required = all["reminders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["application_id"] == member.as_str())
        .unwrap_or_else(|| panic!("the member's application is listed: {all}"));
    assert_eq!(not_required["status"], "NOT_REQUIRED");

    let (status, page) = app
        .get_json("/v1/admin/reminders?state=AWAITING_SIGNATURE&limit=2")
        .await;
    assert_eq!(status, 200);
    assert_eq!(ids(&page), brokered[..2]);
    assert_eq!(page["next_after"], brokered[1].as_str());
    let (_, rest) = app
        .get_json(&format!(
            "/v1/admin/reminders?state=AWAITING_SIGNATURE&limit=2&after={}",
            brokered[1]
        ))
        .await;
    assert_eq!(ids(&rest), brokered[2..]);
    assert!(rest["next_after"].is_null(), "the last page: {rest}");

    let long = "x".repeat(513);
    for (path, field) in [
        ("/v1/admin/reminders?state=PENDING".to_string(), "state"),
        ("/v1/admin/reminders?limit=0".into(), "limit"),
        ("/v1/admin/reminders?limit=1001".into(), "limit"),
        ("/v1/admin/reminders?limit=ten".into(), "limit"),
        ("/v1/admin/reminders?after=".into(), "after"),
        (format!("/v1/admin/reminders?after={long}"), "after"),
        ("/v1/admin/reminders?colour=red".into(), "colour"),
        ("/v1/admin/deliveries".into(), "entity_id"),
        ("/v1/admin/deliveries?entity_id=A-1&limit=0".into(), "limit"),
        (
            "/v1/admin/deliveries?entity_id=A-1&limit=1001".into(),
            "limit",
        ),
        (
            "/v1/admin/deliveries?entity_id=A-1&colour=red".into(),
            "colour",
        ),
    ] {
        let r = app.client.get(app.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 422, "{path}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let problem: Value = r.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{path}: {problem}");
    }
    // No target configured here: nothing delivered, an empty log rather than an error.
    let (status, none) = app
        .get_json(&format!("/v1/admin/deliveries?entity_id={member}"))
        .await;
    assert_eq!(status, 200, "{none}");
    assert_eq!(none["deliveries"], json!([]));
}

/// The same wiring on MongoDB (FerretDB in the test bed): the binary opens the reminder store
/// and the delivery log through the store's client; a broker submission is on the schedule and
/// its deliveries to a Logic Apps workflow are in the `deliveries` collection's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_mongodb_the_schedule_and_the_delivery_log_are_wired() {
    let mongo = enrollstream_testkit::testbed::Mongo::start()
        .unwrap_or_else(|e| panic!("FerretDB must start (bash scripts/testbed/install.sh): {e:#}"));
    let workflow = enrollstream_testkit::targets::Fake::logic_apps("trigger-sig", None).await;
    let dir = tempfile::tempdir().unwrap();
    let config = support::logic_apps_config(dir.path(), &workflow.trigger_url());
    let uri = format!("{}/enrollstream_schedule", mongo.uri());
    let args = ["--mongodb-uri", &uri, "--config", config.to_str().unwrap()];
    let app = TestApp::spawn(&dir.path().join("data"), &args);
    let id = application(&app, true).await;

    let schedule = eventually(
        "the reminder on the schedule",
        Duration::from_secs(30),
        || async {
            let (status, page) = app
                .get_json("/v1/admin/reminders?state=AWAITING_SIGNATURE")
                .await;
            (status == 200 && ids(&page) == [id.clone()]).then_some(page)
        },
    )
    .await;
    assert_eq!(schedule["reminders"][0]["broker"]["id"], "B-9");
    let log = eventually(
        "both deliveries in the log",
        Duration::from_secs(60),
        || async {
            let (status, body) = app
                .get_json(&format!("/v1/admin/deliveries?entity_id={id}"))
                .await;
            (status == 200 && body["deliveries"].as_array().is_some_and(|d| d.len() == 2))
                .then_some(body)
        },
    )
    .await;
    for d in log["deliveries"].as_array().unwrap() {
        assert_eq!(d["target"], "logic_apps", "{log}");
        assert_eq!(d["outcome"], "delivered", "{log}");
    }
}
