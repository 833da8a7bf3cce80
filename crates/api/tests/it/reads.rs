//! Reads from the read model and read-your-writes, for reads and for commands.

use crate::common;

use common::*;
use enrollstream_api::ApiConfig;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

async fn start(app: &App) -> (String, String) {
    let body = app
        .accepted("/v1/applications", json!({"applicant":{"name":"Jane Doe","email":"jane@example.com"},"product":"dental-basic"}))
        .await;
    (
        body["application_id"].as_str().unwrap().into(),
        body["event_id"].as_str().unwrap().into(),
    )
}

#[tokio::test]
async fn an_application_reads_as_its_state_plus_read_model_fields() {
    let app = App::spawn().await;
    let (id, event_id) = start(&app).await;
    app.project().await;
    let res = app.get(&format!("/v1/applications/{id}")).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["application_id"], id.as_str());
    assert_eq!(body["status"], "STARTED");
    assert_eq!(body["version"], 1);
    assert_eq!(body["last_event_id"], event_id.as_str());
    assert!(body["updated_at"].is_string());
    assert!(body["projected_at"].is_string());
    assert_eq!(
        body["applicant"],
        json!({"name":"Jane Doe","email":"jane@example.com"})
    );
    assert_eq!(body["product"], "dental-basic");
}

#[tokio::test]
async fn a_quote_reads_with_its_premium_and_version() {
    let app = App::spawn().await;
    let id = app.quote().await;
    let updated = app
        .http
        .patch(app.url(&format!("/v1/quotes/{id}")))
        .json(&json!({"amount_minor":4200,"currency":"EUR"}))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), 202);
    let event_id = updated.json::<Value>().await.unwrap()["event_id"].clone();
    app.project().await;
    let body: Value = app
        .get(&format!("/v1/quotes/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["quote_id"], id.as_str());
    assert_eq!(body["status"], "QUOTED");
    assert_eq!(body["version"], 2);
    assert_eq!(body["last_event_id"], event_id);
    assert_eq!(
        body["premium"],
        json!({"amount_minor":4200,"currency":"EUR"})
    );
}

#[tokio::test]
async fn event_logs_list_events_oldest_first() {
    let app = App::spawn().await;
    let id = app
        .application_after(&[
            ("submit", broker_submission()),
            ("signature", json!({"signed_by":"Jane Doe"})),
        ])
        .await;
    let body: Value = app
        .get(&format!("/v1/applications/{id}/events"))
        .await
        .json()
        .await
        .unwrap();
    let events = body["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        vec![
            "com.enrollstream.application.started.v1",
            "com.enrollstream.application.submitted.v1",
            "com.enrollstream.application.signature_received.v1"
        ]
    );
    let versions: Vec<u64> = events
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, vec![1, 2, 3]);
    assert_eq!(
        events[2]["data"],
        json!({"application_id": id, "signed_by":"Jane Doe"})
    );
    assert_eq!(events[0]["source"], "/enrollstream/api");
    assert_eq!(events[0]["time"], "2026-03-01T09:00:00Z");
    assert!(events[0]["position"]
        .as_str()
        .unwrap()
        .starts_with("enrollment-events/"));
    let published: Vec<String> = app
        .published(APPLICATIONS)
        .await
        .into_iter()
        .map(|(_, e)| e.id)
        .collect();
    let logged: Vec<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(logged, published);

    let quote = app.quote().await;
    let body: Value = app
        .get(&format!("/v1/quotes/{quote}/events"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["events"][0]["type"],
        "com.enrollstream.quote.created.v1"
    );
}

#[tokio::test]
async fn a_read_waits_for_the_event_it_names() {
    let app = Arc::new(App::spawn().await);
    let (id, event_id) = start(&app).await;

    // Not projected yet and no patience: 409 with Retry-After, by query and by header.
    let res = app
        .get(&format!("/v1/applications/{id}?after={event_id}&wait_ms=0"))
        .await;
    assert_eq!(res.headers()["retry-after"], "1");
    let p = problem(res, 409).await;
    assert_eq!(
        p["type"],
        "https://enrollstream.dev/problems/not-yet-projected"
    );
    let res = app
        .http
        .get(app.url(&format!("/v1/applications/{id}/events?wait_ms=0")))
        .header("x-enrollstream-after", &event_id)
        .send()
        .await
        .unwrap();
    problem(res, 409).await;

    // A patient read is answered once the projector caught up.
    let reader = {
        let app = app.clone();
        let path = format!("/v1/applications/{id}?after={event_id}&wait_ms=10000");
        tokio::spawn(async move { app.get(&path).await })
    };
    app.project().await;
    let res = reader.await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["last_event_id"], event_id.as_str());

    let res = app
        .http
        .get(app.url(&format!("/v1/applications/{id}/events")))
        .header("x-enrollstream-after", &event_id)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn the_wait_is_capped_by_max_read_wait() {
    let config = ApiConfig {
        max_read_wait: Duration::from_millis(50),
        ..ApiConfig::default()
    };
    let app = App::spawn_with(config, Arc::new(String::new)).await;
    let res = app
        .get("/v1/quotes/Q-1?after=never-published&wait_ms=600000")
        .await;
    problem(res, 409).await;
}

#[tokio::test]
async fn a_command_right_after_create_waits_for_the_create() {
    let app = Arc::new(App::spawn().await);
    let (id, _) = start(&app).await;
    let submit = {
        let app = app.clone();
        let path = format!("/v1/applications/{id}/submit");
        tokio::spawn(async move { app.post(&path, broker_submission()).await })
    };
    app.project().await;
    let res = submit.await.unwrap();
    assert_eq!(res.status(), 202);
    app.project().await;
    let body: Value = app
        .get(&format!("/v1/applications/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "AWAITING_SIGNATURE");
}

#[tokio::test]
async fn a_command_whose_predecessor_is_not_projected_in_time_is_409_then_forgotten() {
    let config = ApiConfig {
        command_wait: Duration::from_millis(50),
        ..ApiConfig::default()
    };
    let app = App::spawn_with(config, Arc::new(String::new)).await;
    let (id, event_id) = start(&app).await;
    let path = format!("/v1/applications/{id}/submit");

    let res = app.post(&path, broker_submission()).await;
    let p = problem(res, 409).await;
    assert_eq!(
        p["type"],
        "https://enrollstream.dev/problems/not-yet-projected"
    );
    assert_eq!(p["awaited_event_id"], event_id.as_str());
    // The remembered event is dropped so a dead-lettered one cannot stall the entity: the next
    // command is judged on the read model as it is.
    problem(app.post(&path, broker_submission()).await, 404).await;
    assert_eq!(app.count(APPLICATIONS).await, 1);

    app.project().await;
    assert_eq!(app.post(&path, broker_submission()).await.status(), 202);
}

#[tokio::test]
async fn a_command_waits_for_an_event_named_by_the_client() {
    let config = ApiConfig {
        command_wait: Duration::from_millis(50),
        ..ApiConfig::default()
    };
    let app = App::spawn_with(config, Arc::new(String::new)).await;
    let id = app.application().await;
    let res = app
        .http
        .post(app.url(&format!("/v1/applications/{id}/withdraw")))
        .header("x-enrollstream-after", "published-elsewhere")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let p = problem(res, 409).await;
    assert_eq!(p["awaited_event_id"], "published-elsewhere");
    assert_eq!(app.count(APPLICATIONS).await, 1);
}
