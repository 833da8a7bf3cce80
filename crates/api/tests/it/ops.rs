//! Health, readiness, metrics, schemas, the OpenAPI document and request ids.

use crate::common;

use common::*;
use enrollstream_api::ApiConfig;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};

/// One recorder per test process (the `metrics` facade has one global recorder).
fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("install the recorder")
        })
        .clone()
}

#[tokio::test]
async fn healthz_is_ok() {
    let app = App::spawn().await;
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"status":"ok"}));
}

#[tokio::test]
async fn readyz_lists_components_and_follows_the_health_registry() {
    let app = App::spawn().await;
    app.health.ready("projector");
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(
        body["components"]["store"],
        json!({"ready": true, "detail": "sqlite: ok"})
    );
    assert_eq!(
        body["components"]["bus"],
        json!({"ready": true, "detail": "embedded: ok"})
    );
    assert_eq!(body["components"]["projector"]["ready"], true);
    assert_eq!(
        body["outbox_backlog"], 0,
        "nothing recorded, nothing waiting"
    );

    app.health
        .set("projector", false, "store unreachable: disk full");
    let res = app.get("/readyz").await;
    let p = problem(res, 503).await;
    assert_eq!(p["type"], "https://enrollstream.dev/problems/not-ready");
    assert_eq!(p["components"]["projector"]["ready"], false);
    assert_eq!(
        p["components"]["projector"]["detail"],
        "store unreachable: disk full"
    );
    assert_eq!(p["components"]["store"]["ready"], true);
    assert!(p["detail"].as_str().unwrap().contains("projector"));
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_http_and_publish_counters() {
    let handle = prometheus();
    let app = App::spawn_with(ApiConfig::default(), Arc::new(move || handle.render())).await;
    app.accepted(
        "/v1/quotes",
        json!({"customer_id":"C-1","product":"dental-basic"}),
    )
    .await;
    problem(app.get("/v1/quotes/none").await, 404).await;
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/plain; version=0.0.4");
    let text = res.text().await.unwrap();
    let has = |needle: &str| {
        text.lines()
            .any(|l| l.starts_with("enrollstream_") && needle.split('|').all(|n| l.contains(n)))
    };
    assert!(
        has(r#"enrollstream_http_requests_total{|method="POST"|route="/v1/quotes"|status="202"}"#),
        "{text}"
    );
    assert!(
        has(r#"enrollstream_http_requests_total{|route="/v1/quotes/{id}"|status="404"}"#),
        "{text}"
    );
    assert!(
        has(r#"enrollstream_http_request_duration_seconds|route="/v1/quotes""#),
        "{text}"
    );
    assert!(
        has(r#"enrollstream_events_published_total{topic="quote-events"}"#),
        "{text}"
    );
}

#[tokio::test]
async fn request_ids_are_made_or_propagated() {
    let app = App::spawn().await;
    let res = app.get("/healthz").await;
    let made = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(made.len(), 36, "a UUID: {made}");
    let res = app
        .http
        .get(app.url("/v1/nothing"))
        .header("x-request-id", "req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "req-42");
    problem(res, 404).await;
}

#[tokio::test]
async fn schemas_are_served_for_every_event_type_and_the_envelope() {
    let app = App::spawn().await;
    let list: Value = app.get("/v1/schemas").await.json().await.unwrap();
    assert_eq!(list["envelope"], "/v1/schemas/cloudevent");
    let types = list["types"].as_array().unwrap();
    for ty in enrollstream_domain::events::ALL_TYPES {
        let entry = types
            .iter()
            .find(|t| t["type"] == *ty)
            .unwrap_or_else(|| panic!("{ty} not listed"));
        let res = app.get(entry["schema"].as_str().unwrap()).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "application/schema+json");
        let schema: Value = res.json().await.unwrap();
        assert_eq!(
            schema,
            enrollstream_domain::schema::data_schema(ty).unwrap()
        );
    }
    let envelope: Value = app
        .get("/v1/schemas/cloudevent")
        .await
        .json()
        .await
        .unwrap();
    assert!(envelope["properties"]["specversion"].is_object());
}

#[tokio::test]
async fn openapi_json_describes_every_route_and_every_route_in_it_is_served() {
    let app = App::spawn().await;
    let res = app.get("/openapi.json").await;
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc, enrollstream_api::openapi());
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("post", "/v1/quotes"),
        ("get", "/v1/quotes/{id}"),
        ("patch", "/v1/quotes/{id}"),
        ("get", "/v1/quotes/{id}/events"),
        ("post", "/v1/applications"),
        ("get", "/v1/applications/{id}"),
        ("get", "/v1/applications/{id}/events"),
        ("post", "/v1/applications/{id}/submit"),
        ("post", "/v1/applications/{id}/signature"),
        ("post", "/v1/applications/{id}/approve"),
        ("post", "/v1/applications/{id}/decline"),
        ("post", "/v1/applications/{id}/withdraw"),
        ("post", "/v1/events"),
        ("get", "/v1/schemas"),
        ("get", "/v1/schemas/cloudevent"),
        ("get", "/v1/schemas/{type}"),
        ("get", "/openapi.json"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("post", "/graphql"),
        ("get", "/graphql/schema.graphql"),
        ("get", "/v1/admin/api-keys"),
        ("post", "/v1/admin/api-keys"),
        ("delete", "/v1/admin/api-keys/{name}"),
        ("get", "/v1/admin/dlq"),
        ("get", "/v1/admin/dlq/{id}"),
        ("post", "/v1/admin/dlq/redrive"),
        ("get", "/v1/admin/dlq/audit"),
        ("get", "/v1/admin/reminders"),
        ("get", "/v1/admin/deliveries"),
        ("get", "/ui"),
        ("get", "/ui/{asset}"),
    ];
    for (method, path) in expected {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} not documented"
        );
    }
    // And the other way: every documented operation exists (answers anything but a routing error).
    let mut operations = 0;
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            operations += 1;
            let concrete = path
                .replace("{id}", "X-1")
                .replace("{type}", "com.enrollstream.quote.created.v1")
                .replace("{asset}", "app.js");
            let res = app
                .http
                .request(
                    Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    app.url(&concrete),
                )
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body = res.text().await.unwrap();
            assert!(
                status != 405 && !body.contains("route-not-found"),
                "{method} {path}: {status} {body}"
            );
        }
    }
    assert_eq!(operations, expected.len());
    let ingest = &paths["/v1/events"]["post"];
    assert!(ingest["description"]
        .as_str()
        .unwrap()
        .contains("Idempotency-Key"));
    assert!(ingest["requestBody"]["content"]["application/cloudevents-batch+json"].is_object());
    let submit = &paths["/v1/applications/{id}/submit"]["post"];
    assert_eq!(
        submit["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/SubmitApplication"
    );
    assert!(submit["responses"]["409"].is_object() && submit["responses"]["202"].is_object());
}
