//! Commands over real HTTP: each happy path publishes exactly one well-formed CloudEvent to the
//! entity's topic, keyed by the entity id.

use crate::common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn create_quote_publishes_quote_created() {
    let app = App::spawn().await;
    let res = app
        .post("/v1/quotes", json!({"customer_id":"C-1","product":"dental-basic","amount_minor":5000,"currency":"USD"}))
        .await;
    assert_eq!(res.status(), 202);
    let quote_id_header = res.headers()["location"].to_str().unwrap().to_string();
    let body: serde_json::Value = res.json().await.unwrap();
    let quote_id = body["quote_id"].as_str().unwrap();
    assert_eq!(quote_id_header, format!("/v1/quotes/{quote_id}"));

    let published = app.published(QUOTES).await;
    assert_eq!(published.len(), 1);
    let (key, event) = &published[0];
    assert_eq!(key, quote_id);
    assert_eq!(event.id, body["event_id"].as_str().unwrap());
    assert_eq!(event.ty, "com.enrollstream.quote.created.v1");
    assert_eq!(event.source, "/enrollstream/api");
    assert_eq!(event.subject.as_deref(), Some(quote_id));
    assert_eq!(event.time, Some(start_time()));
    assert_eq!(
        event.dataschema.as_deref(),
        Some("/v1/schemas/com.enrollstream.quote.created.v1")
    );
    assert!(event.traceparent.is_some());
    assert_eq!(
        event.data,
        json!({"quote_id": quote_id, "customer_id":"C-1","product":"dental-basic","premium":{"amount_minor":5000,"currency":"USD"}})
    );
    assert_eq!(app.count(APPLICATIONS).await, 0);
}

#[tokio::test]
async fn quote_without_premium_is_a_request() {
    let app = App::spawn().await;
    let body = app
        .accepted(
            "/v1/quotes",
            json!({"customer_id":"C-2","product":"vision"}),
        )
        .await;
    let published = app.published(QUOTES).await;
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].1.ty, "com.enrollstream.quote.requested.v1");
    assert_eq!(
        published[0].1.data,
        json!({"quote_id": body["quote_id"], "customer_id":"C-2","product":"vision"})
    );
}

#[tokio::test]
async fn patch_quote_publishes_quote_updated() {
    let app = App::spawn().await;
    let id = app.quote().await;
    let res = app
        .http
        .patch(app.url(&format!("/v1/quotes/{id}")))
        .json(&json!({"amount_minor":4500,"currency":"USD","product":"dental-plus"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["quote_id"], id.as_str());
    let published = app.published(QUOTES).await;
    assert_eq!(published.len(), 2);
    let (key, event) = &published[1];
    assert_eq!(key, &id);
    assert_eq!(event.id, body["event_id"].as_str().unwrap());
    assert_eq!(event.ty, "com.enrollstream.quote.updated.v1");
    assert_eq!(
        event.data,
        json!({"quote_id": id, "premium":{"amount_minor":4500,"currency":"USD"}, "product":"dental-plus"})
    );
}

#[tokio::test]
async fn the_event_continues_the_request_trace_under_the_api_span() {
    let app = App::spawn().await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let res = app
        .http
        .post(app.url("/v1/applications"))
        .header("traceparent", traceparent)
        .json(&json!({"applicant":{"name":"Jane Doe","email":"jane@example.com"},"product":"dental-basic"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let published = app.published(APPLICATIONS).await;
    let carried = published[0].1.traceparent.clone().expect("a traceparent");
    // The same trace and flags; the span is the API's own (the caller's is its parent).
    assert_eq!(&carried[..36], &traceparent[..36], "{carried}");
    assert_eq!(&carried[52..], &traceparent[52..], "{carried}");
    assert_ne!(carried, traceparent);
}

#[tokio::test]
async fn start_application_publishes_application_started() {
    let app = App::spawn().await;
    let body = app
        .accepted(
            "/v1/applications",
            json!({"applicant":{"name":"Jane Doe","email":"jane@example.com"},"product":"dental-basic","quote_id":"Q-1"}),
        )
        .await;
    let id = body["application_id"].as_str().unwrap();
    let published = app.published(APPLICATIONS).await;
    assert_eq!(published.len(), 1);
    let (key, event) = &published[0];
    assert_eq!(key, id);
    assert_eq!(event.id, body["event_id"].as_str().unwrap());
    assert_eq!(event.ty, "com.enrollstream.application.started.v1");
    assert_eq!(
        event.data,
        json!({"application_id": id, "applicant":{"name":"Jane Doe","email":"jane@example.com"},"product":"dental-basic","quote_id":"Q-1"})
    );
}

#[tokio::test]
async fn broker_flow_submit_sign_approve() {
    let app = App::spawn().await;
    let id = app.application().await;
    let steps = [
        (
            "submit",
            broker_submission(),
            "com.enrollstream.application.submitted.v1",
            json!({"application_id": id, "submitted_by":"broker","broker":{"id":"B-7","name":"Acme Brokers","email":"agent@acme.test"}}),
        ),
        (
            "signature",
            json!({"signed_by":"Jane Doe"}),
            "com.enrollstream.application.signature_received.v1",
            json!({"application_id": id, "signed_by":"Jane Doe"}),
        ),
        (
            "approve",
            json!({"approved_by":"underwriter-1"}),
            "com.enrollstream.application.approved.v1",
            json!({"application_id": id, "approved_by":"underwriter-1"}),
        ),
    ];
    for (i, (action, body, ty, data)) in steps.into_iter().enumerate() {
        let answer = app
            .accepted(&format!("/v1/applications/{id}/{action}"), body)
            .await;
        assert_eq!(answer["application_id"], id.as_str());
        let published = app.published(APPLICATIONS).await;
        assert_eq!(published.len(), i + 2, "{action}");
        let (key, event) = published.last().unwrap();
        assert_eq!(key, &id);
        assert_eq!(event.id, answer["event_id"].as_str().unwrap());
        assert_eq!(event.ty, ty);
        assert_eq!(event.data, data, "{action}");
        app.project().await;
    }
    let state: serde_json::Value = app
        .get(&format!("/v1/applications/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(state["status"], "APPROVED");
}

#[tokio::test]
async fn member_submission_then_decline() {
    let app = App::spawn().await;
    let id = app
        .application_after(&[("submit", json!({"submitted_by":"member"}))])
        .await;
    let published = app.published(APPLICATIONS).await;
    assert_eq!(
        published[1].1.data,
        json!({"application_id": id, "submitted_by":"member"})
    );
    let answer = app
        .accepted(
            &format!("/v1/applications/{id}/decline"),
            json!({"reason":"outside coverage area"}),
        )
        .await;
    let published = app.published(APPLICATIONS).await;
    assert_eq!(published.len(), 3);
    assert_eq!(published[2].1.id, answer["event_id"].as_str().unwrap());
    assert_eq!(
        published[2].1.ty,
        "com.enrollstream.application.declined.v1"
    );
    assert_eq!(
        published[2].1.data,
        json!({"application_id": id, "reason":"outside coverage area"})
    );
}

#[tokio::test]
async fn withdraw_and_approve_take_an_empty_body() {
    let app = App::spawn().await;
    let id = app.application().await;
    let res = app
        .http
        .post(app.url(&format!("/v1/applications/{id}/withdraw")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let published = app.published(APPLICATIONS).await;
    assert_eq!(
        published[1].1.ty,
        "com.enrollstream.application.withdrawn.v1"
    );
    assert_eq!(published[1].1.data, json!({"application_id": id}));

    let id = app
        .application_after(&[("submit", json!({"submitted_by":"member"}))])
        .await;
    let res = app
        .http
        .post(app.url(&format!("/v1/applications/{id}/approve")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    // Two applications may sit on two partitions: order only holds per key.
    let published: Vec<_> = app
        .published(APPLICATIONS)
        .await
        .into_iter()
        .filter(|(key, _)| key == &id)
        .collect();
    assert_eq!(published.len(), 3);
    assert_eq!(
        published[2].1.ty,
        "com.enrollstream.application.approved.v1"
    );
}

#[tokio::test]
async fn withdraw_with_a_reason() {
    let app = App::spawn().await;
    let id = app.application().await;
    app.accepted(
        &format!("/v1/applications/{id}/withdraw"),
        json!({"reason":"changed my mind"}),
    )
    .await;
    let published = app.published(APPLICATIONS).await;
    assert_eq!(
        published[1].1.data,
        json!({"application_id": id, "reason":"changed my mind"})
    );
}
