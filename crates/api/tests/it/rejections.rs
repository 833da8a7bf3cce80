//! Bad input for every endpoint: each answer is problem+json with the right status, type and
//! named field, and nothing reaches the bus.

use crate::common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

/// Send `body` with `content_type` and assert the problem, the named field, and an untouched bus.
/// Flat arguments keep the case tables below one line per case.
#[allow(clippy::too_many_arguments)]
async fn refused(
    app: &App,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
    status: u16,
    slug: &str,
    field: Option<&str>,
) -> Value {
    let before = app.total().await;
    let mut req = app.http.request(method.clone(), app.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let p = problem(req.send().await.unwrap(), status).await;
    assert_eq!(
        p["type"],
        format!("https://enrollstream.dev/problems/{slug}"),
        "{method} {path}: {p}"
    );
    if let Some(field) = field {
        assert!(
            fields(&p).iter().any(|f| f == field),
            "{method} {path}: expected field {field} in {p}"
        );
    }
    assert_eq!(
        app.total().await,
        before,
        "{method} {path} published something"
    );
    p
}

async fn json_refused(
    app: &App,
    method: Method,
    path: &str,
    body: Value,
    status: u16,
    slug: &str,
    field: impl Into<Option<&str>>,
) -> Value {
    refused(
        app,
        method,
        path,
        Some("application/json"),
        body.to_string().into_bytes(),
        status,
        slug,
        field.into(),
    )
    .await
}

/// 422 validation refusals of one endpoint: each case is a body and the field it must name.
async fn invalid(app: &App, method: Method, path: &str, cases: Vec<(Value, &str)>) {
    for (body, field) in cases {
        json_refused(app, method.clone(), path, body, 422, "validation", field).await;
    }
}

/// The refusals every JSON command shares: malformed JSON, wrong content type, oversize body.
async fn common_refusals(app: &App, method: Method, path: &str) {
    let huge = format!("{{\"product\":\"{}\"}}", "x".repeat(300 * 1024));
    let cases = [
        (
            Some("application/json"),
            b"{\"product\":".to_vec(),
            400,
            "malformed-json",
            Some("$"),
        ),
        (
            Some("text/plain"),
            b"{}".to_vec(),
            415,
            "unsupported-media-type",
            Some("Content-Type"),
        ),
        (
            None,
            b"{}".to_vec(),
            415,
            "unsupported-media-type",
            Some("Content-Type"),
        ),
        (
            Some("application/json"),
            huge.into_bytes(),
            413,
            "payload-too-large",
            None,
        ),
    ];
    for (content_type, body, status, slug, field) in cases {
        refused(
            app,
            method.clone(),
            path,
            content_type,
            body,
            status,
            slug,
            field,
        )
        .await;
    }
    invalid(app, method, path, vec![(json!([1, 2]), "$")]).await;
}

#[tokio::test]
async fn create_quote_refusals() {
    let app = App::spawn().await;
    let path = "/v1/quotes";
    common_refusals(&app, Method::POST, path).await;
    let ok =
        json!({"customer_id":"C-1","product":"dental-basic","amount_minor":5000,"currency":"USD"});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = ok.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let cases = vec![
        (without("customer_id"), "customer_id"),
        (with("amount_minor", json!(-1)), "amount_minor"),
        (with("amount_minor", json!(50.5)), "amount_minor"),
        (with("currency", json!("usd")), "currency"),
        (with("currency", json!("DOLLARS")), "currency"),
        (without("currency"), "currency"),
        (without("amount_minor"), "amount_minor"),
        (with("product", json!("")), "product"),
        (with("product", json!(7)), "product"),
    ];
    invalid(&app, Method::POST, path, cases).await;
    let p = json_refused(
        &app,
        Method::POST,
        path,
        with("ammount_minor", json!(1)),
        422,
        "validation",
        "ammount_minor",
    )
    .await;
    assert!(p["errors"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("unknown field"));
}

#[tokio::test]
async fn update_quote_refusals() {
    let app = App::spawn().await;
    let id = app.quote().await;
    let path = format!("/v1/quotes/{id}");
    common_refusals(&app, Method::PATCH, &path).await;
    let cases = vec![
        (json!({}), "$"),
        (json!({"amount_minor":-5,"currency":"USD"}), "amount_minor"),
        (json!({"currency":"USD"}), "amount_minor"),
        (json!({"amount_minor":1,"currency":"US"}), "currency"),
        (json!({"product":""}), "product"),
    ];
    invalid(&app, Method::PATCH, &path, cases).await;
    let p = refused(
        &app,
        Method::PATCH,
        "/v1/quotes/no-such-quote",
        Some("application/json"),
        br#"{"product":"x"}"#.to_vec(),
        404,
        "not-found",
        Some("id"),
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("no-such-quote"));

    // A requested (unpriced) quote cannot change only its product.
    let requested = app
        .accepted(
            "/v1/quotes",
            json!({"customer_id":"C-9","product":"vision"}),
        )
        .await;
    app.project().await;
    let p = json_refused(
        &app,
        Method::PATCH,
        &format!("/v1/quotes/{}", requested["quote_id"].as_str().unwrap()),
        json!({"product":"x"}),
        409,
        "invalid-transition",
        None,
    )
    .await;
    assert_eq!(p["current_status"], "REQUESTED");
    assert_eq!(p["reason"], "a requested quote needs a premium");
}

#[tokio::test]
async fn start_application_refusals() {
    let app = App::spawn().await;
    let path = "/v1/applications";
    common_refusals(&app, Method::POST, path).await;
    let applicant = |name: Value, email: Value| json!({"applicant":{"name":name,"email":email},"product":"dental-basic"});
    let p = json_refused(
        &app,
        Method::POST,
        path,
        applicant(json!("Jane"), json!("not-an-email")),
        422,
        "validation",
        "applicant.email",
    )
    .await;
    assert_eq!(p["errors"][0]["reason"], "must be an email address");
    let cases = vec![
        (applicant(json!("Jane"), json!(42)), "applicant.email"),
        (applicant(json!(""), json!("j@x.io")), "applicant.name"),
        (
            json!({"applicant":{"name":"Jane"},"product":"p"}),
            "applicant.email",
        ),
        (
            json!({"applicant":{"name":"Jane","email":"j@x.io"}}),
            "product",
        ),
        (json!({"applicant":"Jane","product":"p"}), "applicant"),
        (
            json!({"applicant":{"name":"J","email":"j@x.io","age":40},"product":"p"}),
            "applicant.age",
        ),
    ];
    invalid(&app, Method::POST, path, cases).await;
}

/// The refusals every command on an existing application shares, for `action` on `id`: the
/// shared body refusals, then `invalid` (422 with the named field), then 404 for `valid` on an
/// unknown application, then 409 for `valid` on `id`, whose problem is returned.
async fn application_refusals(
    app: &App,
    id: &str,
    action: &str,
    invalid_cases: Vec<(Value, &str)>,
    valid: Value,
) -> Value {
    let path = format!("/v1/applications/{id}/{action}");
    common_refusals(app, Method::POST, &path).await;
    invalid(app, Method::POST, &path, invalid_cases).await;
    json_refused(
        app,
        Method::POST,
        &format!("/v1/applications/nope/{action}"),
        valid.clone(),
        404,
        "not-found",
        "id",
    )
    .await;
    json_refused(
        app,
        Method::POST,
        &path,
        valid,
        409,
        "invalid-transition",
        None,
    )
    .await
}

#[tokio::test]
async fn submit_refusals() {
    let app = App::spawn().await;
    let id = app.application().await;
    let path = format!("/v1/applications/{id}/submit");
    common_refusals(&app, Method::POST, &path).await;
    let cases = vec![
        (json!({"submitted_by":"broker"}), "broker"),
        (json!({"submitted_by":"robot"}), "submitted_by"),
        (json!({}), "submitted_by"),
        (
            json!({"submitted_by":"member","broker":{"id":"B","name":"A","email":"a@b.io"}}),
            "broker",
        ),
        (
            json!({"submitted_by":"broker","broker":{"id":"B-7","name":"Acme","email":"agent-at-acme"}}),
            "broker.email",
        ),
        (
            json!({"submitted_by":"broker","broker":{"id":"B-7","email":"a@acme.test"}}),
            "broker.name",
        ),
    ];
    invalid(&app, Method::POST, &path, cases).await;
    json_refused(
        &app,
        Method::POST,
        "/v1/applications/no-such-app/submit",
        json!({"submitted_by":"member"}),
        404,
        "not-found",
        "id",
    )
    .await;

    // Submitted twice: the second does not fit.
    app.accepted(&path, broker_submission()).await;
    app.project().await;
    let p = json_refused(
        &app,
        Method::POST,
        &path,
        json!({"submitted_by":"member"}),
        409,
        "invalid-transition",
        None,
    )
    .await;
    assert_eq!(p["current_status"], "AWAITING_SIGNATURE");
    assert_eq!(p["reason"], "only a started application can be submitted");
}

#[tokio::test]
async fn signature_refusals() {
    let app = App::spawn().await;
    let id = app.application().await;
    let cases = vec![
        (json!({}), "signed_by"),
        (json!({"signed_by":""}), "signed_by"),
        (
            json!({"signed_by":"Jane","signed_at":"yesterday"}),
            "signed_at",
        ),
    ];
    let p = application_refusals(&app, &id, "signature", cases, json!({"signed_by":"Jane"})).await;
    assert_eq!(p["current_status"], "STARTED");
    assert!(p["detail"].as_str().unwrap().contains("STARTED"));
}

#[tokio::test]
async fn approve_refusals() {
    let app = App::spawn().await;
    let id = app.application().await;
    let cases = vec![
        (json!({"approved_by":5}), "approved_by"),
        (json!({"approver":"x"}), "approver"),
    ];
    let p = application_refusals(&app, &id, "approve", cases, json!({})).await;
    assert_eq!(p["current_status"], "STARTED");
    assert_eq!(p["reason"], "only a signed application can be approved");
}

#[tokio::test]
async fn decline_refusals() {
    let app = App::spawn().await;
    let id = app.application().await;
    let cases = vec![(json!({}), "reason"), (json!({"reason":"  "}), "reason")];
    let p = application_refusals(&app, &id, "decline", cases, json!({"reason":"r"})).await;
    assert_eq!(p["current_status"], "STARTED");
}

#[tokio::test]
async fn withdraw_refusals() {
    let app = App::spawn().await;
    let id = app.application_after(&[("withdraw", json!({}))]).await;
    let cases = vec![(json!({"reason":5}), "reason")];
    let p = application_refusals(&app, &id, "withdraw", cases, json!({})).await;
    assert_eq!(p["current_status"], "WITHDRAWN");
    assert_eq!(p["reason"], "the application is already closed");
}

#[tokio::test]
async fn reads_refusals() {
    let app = App::spawn().await;
    for path in [
        "/v1/quotes/nope",
        "/v1/applications/nope",
        "/v1/quotes/nope/events",
        "/v1/applications/nope/events",
    ] {
        refused(
            &app,
            Method::GET,
            path,
            None,
            vec![],
            404,
            "not-found",
            Some("id"),
        )
        .await;
        refused(
            &app,
            Method::GET,
            &format!("{path}?wait_ms=soon"),
            None,
            vec![],
            422,
            "validation",
            Some("wait_ms"),
        )
        .await;
        let p = refused(
            &app,
            Method::GET,
            &format!("{path}?after=never-published&wait_ms=0"),
            None,
            vec![],
            409,
            "not-yet-projected",
            None,
        )
        .await;
        assert_eq!(p["awaited_event_id"], "never-published");
    }
    refused(
        &app,
        Method::GET,
        "/v1/schemas/com.example.unknown.v1",
        None,
        vec![],
        404,
        "not-found",
        Some("id"),
    )
    .await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = App::spawn().await;
    let p = refused(
        &app,
        Method::GET,
        "/v2/nothing",
        None,
        vec![],
        404,
        "route-not-found",
        None,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("/v2/nothing"));
    let before = app.total().await;
    let res = app.http.delete(app.url("/v1/quotes")).send().await.unwrap();
    let allow = res
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_string());
    let p = problem(res, 405).await;
    assert_eq!(
        p["type"],
        "https://enrollstream.dev/problems/method-not-allowed"
    );
    assert_eq!(allow.as_deref(), Some("POST"));
    let res = app
        .http
        .put(app.url("/v1/applications/x/submit"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    problem(res, 405).await;
    assert_eq!(app.total().await, before);
}

#[tokio::test]
async fn a_bus_that_refuses_is_a_503_and_nothing_is_remembered() {
    let mut config = enrollstream_api::ApiConfig::default();
    // An illegal topic name: the real embedded bus refuses every publish to it.
    config.topics.quote_events = "quote events!".into();
    let app = App::spawn_with(config, std::sync::Arc::new(String::new)).await;
    let res = app
        .post(
            "/v1/quotes",
            json!({"customer_id":"C-1","product":"dental-basic","amount_minor":1,"currency":"USD"}),
        )
        .await;
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let p = problem(res, 503).await;
    assert_eq!(
        p["type"],
        "https://enrollstream.dev/problems/bus-unavailable"
    );
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(app.total().await, 0);
}
