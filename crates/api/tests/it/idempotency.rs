//! `Idempotency-Key`: a retry answers as the first attempt did and publishes nothing new; the
//! same key with another request is refused; an attempt that stopped before publishing is
//! completed by the retry with the event it had reserved.

use crate::common;

use common::*;
use enrollstream_domain::envelope::new_traceparent;
use enrollstream_domain::events::{QuoteCreated, QuoteEvent};
use enrollstream_domain::{CloudEvent, DomainEvent, Money};
use enrollstream_ports::{IdempotencyRecord, Reservation, Store};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

async fn post_with_key(app: &App, path: &str, key: &str, body: &str) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_retried_create_returns_the_same_ids_and_publishes_once() {
    let app = App::spawn().await;
    let body =
        r#"{"customer_id":"C-1","product":"dental-basic","amount_minor":5000,"currency":"USD"}"#;
    let first = post_with_key(&app, "/v1/quotes", "key-1", body).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let second = post_with_key(&app, "/v1/quotes", "key-1", body).await;
    assert_eq!(second.status(), 202);
    assert_eq!(
        second.headers()["location"].to_str().unwrap(),
        format!("/v1/quotes/{}", first["quote_id"].as_str().unwrap())
    );
    let second: Value = second.json().await.unwrap();
    assert_eq!(first, second);
    let published = app.published(QUOTES).await;
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].1.id, first["event_id"].as_str().unwrap());
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused() {
    let app = App::spawn().await;
    let body = r#"{"customer_id":"C-1","product":"dental-basic"}"#;
    assert_eq!(
        post_with_key(&app, "/v1/quotes", "key-2", body)
            .await
            .status(),
        202
    );
    let other = r#"{"customer_id":"C-2","product":"dental-basic"}"#;
    let p = problem(post_with_key(&app, "/v1/quotes", "key-2", other).await, 422).await;
    assert_eq!(
        p["type"],
        "https://enrollstream.dev/problems/idempotency-key-mismatch"
    );
    assert_eq!(
        p["title"],
        "Idempotency-Key reused with a different request"
    );
    assert_eq!(fields(&p), vec!["Idempotency-Key"]);
    // Another route is another request too.
    let application =
        r#"{"applicant":{"name":"Jane Doe","email":"jane@example.com"},"product":"dental-basic"}"#;
    let p = problem(
        post_with_key(&app, "/v1/applications", "key-2", application).await,
        422,
    )
    .await;
    assert_eq!(fields(&p), vec!["Idempotency-Key"]);
    assert_eq!(app.total().await, 1);
}

#[tokio::test]
async fn a_malformed_key_is_refused() {
    let app = App::spawn().await;
    let long = "k".repeat(256);
    let p = problem(
        post_with_key(
            &app,
            "/v1/quotes",
            &long,
            r#"{"customer_id":"C","product":"p"}"#,
        )
        .await,
        422,
    )
    .await;
    assert_eq!(fields(&p), vec!["Idempotency-Key"]);
    assert_eq!(app.total().await, 0);
}

#[tokio::test]
async fn a_retried_command_answers_as_before_even_after_it_was_projected() {
    let app = App::spawn().await;
    let id = app.application().await;
    let path = format!("/v1/applications/{id}/submit");
    let body = broker_submission().to_string();
    let first = post_with_key(&app, &path, "submit-1", &body).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    app.project().await;
    // Without the key this would now be a 409 (already submitted); with it, the first answer.
    let second = post_with_key(&app, &path, "submit-1", &body).await;
    assert_eq!(second.status(), 202);
    assert_eq!(second.json::<Value>().await.unwrap(), first);
    assert_eq!(app.count(APPLICATIONS).await, 2);
    let p = problem(app.post(&path, broker_submission()).await, 409).await;
    assert_eq!(p["current_status"], "AWAITING_SIGNATURE");
}

#[tokio::test]
async fn a_refused_command_keeps_refusing_under_its_key() {
    let app = App::spawn().await;
    let id = app.application().await;
    let path = format!("/v1/applications/{id}/approve");
    problem(post_with_key(&app, &path, "approve-1", "{}").await, 409).await;
    problem(post_with_key(&app, &path, "approve-1", "{}").await, 409).await;
    assert_eq!(app.count(APPLICATIONS).await, 1);
}

#[tokio::test]
async fn an_attempt_that_stopped_before_publishing_is_completed_by_the_retry() {
    let app = App::spawn().await;
    let body =
        r#"{"customer_id":"C-1","product":"dental-basic","amount_minor":5000,"currency":"USD"}"#;
    // What a crashed first attempt left behind: the reservation, nothing on the bus.
    let event = DomainEvent::Quote(QuoteEvent::Created(QuoteCreated {
        quote_id: "Q-crashed".into(),
        customer_id: "C-1".into(),
        product: "dental-basic".into(),
        premium: Money::new(5000, "USD"),
    }));
    let envelope = CloudEvent::new(
        &event,
        "/enrollstream/api",
        start_time(),
        Some(new_traceparent()),
    );
    let mut hash = Sha256::new();
    hash.update(b"POST\n/v1/quotes\n");
    hash.update(body.as_bytes());
    let fingerprint: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let response = json!({"quote_id":"Q-crashed","event_id": envelope.id});
    let record = IdempotencyRecord {
        key: "key-crashed".into(),
        fingerprint,
        topic: QUOTES.into(),
        event: envelope.clone(),
        status: 202,
        response: response.clone(),
        published: false,
        created_at: start_time(),
    };
    assert_eq!(
        app.store.reserve_idempotency(&record).await.unwrap(),
        Reservation::Reserved
    );

    for _ in 0..2 {
        let res = post_with_key(&app, "/v1/quotes", "key-crashed", body).await;
        assert_eq!(res.status(), 202);
        assert_eq!(res.json::<Value>().await.unwrap(), response);
    }
    let published = app.published(QUOTES).await;
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].1.id, envelope.id);
    assert_eq!(published[0].0, "Q-crashed");
    match app.store.reserve_idempotency(&record).await.unwrap() {
        Reservation::Existing(stored) => assert!(stored.published),
        other => panic!("expected the stored record, got {other:?}"),
    }
}
