//! Who may call what, through the real binary and keys made by `enrollstream api-key create`:
//! every endpoint × no credential / a key without the scope / a key with it / a revoked key,
//! and what the log says about it (the key's name, never the key).

use crate::support;

use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use support::{api_key, client_with_key, create_key, eventually, TestApp};

/// (method, path, body, the scope it needs: None = any valid credential)
fn endpoints(quote: &str, application: &str) -> Vec<(Method, String, Value, Option<&'static str>)> {
    let q = |p: &str| format!("/v1/quotes/{quote}{p}");
    let a = |p: &str| format!("/v1/applications/{application}{p}");
    let event = json!({"specversion":"1.0","id":uuid::Uuid::new_v4().to_string(),"source":"/upstream","type":"com.enrollstream.quote.requested.v1","subject":"Q-auth-1","time":"2026-03-01T09:00:00Z","datacontenttype":"application/json","data":{"quote_id":"Q-auth-1","customer_id":"C-1","product":"dental-basic"}});
    vec![
        (
            Method::POST,
            "/v1/quotes".into(),
            json!({"customer_id":"C-1","product":"dental-basic"}),
            Some("quotes:write"),
        ),
        (Method::GET, q(""), Value::Null, Some("read")),
        (
            Method::PATCH,
            q(""),
            json!({"product":"vision-plus"}),
            Some("quotes:write"),
        ),
        (Method::GET, q("/events"), Value::Null, Some("read")),
        (
            Method::POST,
            "/v1/applications".into(),
            json!({"applicant":{"name":"Jane Doe","email":"jane@example.com"},"product":"dental-basic"}),
            Some("applications:write"),
        ),
        (Method::GET, a(""), Value::Null, Some("read")),
        (Method::GET, a("/events"), Value::Null, Some("read")),
        (
            Method::POST,
            a("/submit"),
            json!({"submitted_by":"member"}),
            Some("applications:write"),
        ),
        (
            Method::POST,
            a("/signature"),
            json!({"signed_by":"Jane Doe"}),
            Some("applications:write"),
        ),
        (
            Method::POST,
            a("/approve"),
            json!({}),
            Some("applications:write"),
        ),
        (
            Method::POST,
            a("/decline"),
            json!({"reason":"no"}),
            Some("applications:write"),
        ),
        (
            Method::POST,
            a("/withdraw"),
            json!({}),
            Some("applications:write"),
        ),
        (
            Method::POST,
            "/v1/events".into(),
            event,
            Some("events:write"),
        ),
        (Method::GET, "/v1/schemas".into(), Value::Null, None),
        (
            Method::GET,
            "/v1/schemas/cloudevent".into(),
            Value::Null,
            None,
        ),
        (
            Method::GET,
            "/v1/schemas/com.enrollstream.quote.created.v1".into(),
            Value::Null,
            None,
        ),
        (Method::GET, "/openapi.json".into(), Value::Null, None),
        (
            Method::POST,
            "/graphql".into(),
            json!({"query":"{ quote(id: \"none\") { id } }"}),
            None,
        ),
        (
            Method::GET,
            "/graphql/schema.graphql".into(),
            Value::Null,
            None,
        ),
        (Method::GET, "/metrics".into(), Value::Null, Some("admin")),
        (
            Method::GET,
            "/v1/admin/api-keys".into(),
            Value::Null,
            Some("admin"),
        ),
        (
            Method::GET,
            "/v1/admin/dlq?topic=enrollment-events".into(),
            Value::Null,
            Some("admin"),
        ),
        (
            Method::GET,
            "/v1/admin/dlq/enrollment-events.dlq:0:0".into(),
            Value::Null,
            Some("admin"),
        ),
        (
            Method::POST,
            "/v1/admin/dlq/redrive".into(),
            json!({"topic":"enrollment-events"}),
            Some("admin"),
        ),
        (
            Method::GET,
            "/v1/admin/dlq/audit".into(),
            Value::Null,
            Some("admin"),
        ),
        (
            Method::GET,
            "/v1/admin/reminders?state=awaiting_signature&limit=10".into(),
            Value::Null,
            Some("admin"),
        ),
        (
            Method::GET,
            format!("/v1/admin/deliveries?entity_id={application}&limit=10"),
            Value::Null,
            Some("admin"),
        ),
    ]
}

/// A scope other than `needed` (and not admin), for the "wrong scope" column.
fn other_scope(needed: &str) -> &'static str {
    if needed == "read" {
        "events:write"
    } else {
        "read"
    }
}

async fn send(
    client: &reqwest::Client,
    app: &TestApp,
    method: &Method,
    path: &str,
    body: &Value,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut request = client.request(method.clone(), app.url(path));
    if !body.is_null() {
        request = request.json(body);
    }
    let response = request.send().await.expect("the API answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_needs_its_credential_and_scope() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys: Vec<(&str, String)> = [
        "read",
        "quotes:write",
        "applications:write",
        "events:write",
        "admin",
    ]
    .into_iter()
    .map(|scope| {
        let name = format!("key-{}", scope.replace(':', "-"));
        (scope, create_key(&data, &[], &name, &[scope]))
    })
    .collect();
    let key_for = |scope: &str| keys.iter().find(|(s, _)| *s == scope).unwrap().1.clone();
    let doomed = create_key(&data, &[], "doomed", &["admin"]);
    let log = dir.path().join("serve.log");
    // No cache of verified keys: the revocation below is seen at once (the cache has a test of
    // its own in the API crate).
    let app = TestApp::spawn_logged(
        &data,
        &[],
        key_for("admin"),
        &[
            ("ENROLLSTREAM_AUTH__KEY_CACHE_TTL", "0s"),
            ("ENROLLSTREAM_API__LIMITS__RATE_PER_SECOND", "0"),
        ],
        &log,
    );

    // Something to act on.
    let quote = app.post("/v1/quotes", json!({"customer_id":"C-1","product":"dental-basic","amount_minor":100,"currency":"USD"})).await;
    assert_eq!(quote.status(), 202);
    let quote: Value = quote.json().await.unwrap();
    let application = app.post("/v1/applications", json!({"applicant":{"name":"Jane Doe","email":"jane@example.com"},"product":"dental-basic"})).await;
    let application: Value = application.json().await.unwrap();
    let (quote_id, application_id) = (
        quote["quote_id"].as_str().unwrap(),
        application["application_id"].as_str().unwrap(),
    );

    let anonymous = reqwest::Client::new();
    let (ok, _) = api_key(&data, &["revoke", "doomed"]);
    assert!(ok, "api-key revoke succeeds");
    let revoked = client_with_key(&doomed);

    for (method, path, body, needed) in endpoints(quote_id, application_id) {
        let what = format!("{method} {path}");
        let (status, problem, headers) = send(&anonymous, &app, &method, &path, &body).await;
        assert_eq!(status, 401, "{what} without a credential: {problem}");
        assert_eq!(
            problem["type"], "https://enrollstream.dev/problems/unauthenticated",
            "{what}"
        );
        assert!(headers.contains_key("www-authenticate"), "{what}");

        let (status, problem, _) = send(&revoked, &app, &method, &path, &body).await;
        assert_eq!(status, 401, "{what} with a revoked key: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("revoked"),
            "{what}: {problem}"
        );

        let allowed: Vec<&str> = match needed {
            Some(scope) => vec![scope, "admin"],
            None => vec!["read", "events:write", "quotes:write"],
        };
        for scope in allowed {
            let (status, problem, _) = send(
                &client_with_key(&key_for(scope)),
                &app,
                &method,
                &path,
                &body,
            )
            .await;
            assert!(
                status != 401 && status != 403 && status != 429,
                "{what} with scope {scope}: {status} {problem}"
            );
        }
        if let Some(scope) = needed {
            let wrong = other_scope(scope);
            let (status, problem, _) = send(
                &client_with_key(&key_for(wrong)),
                &app,
                &method,
                &path,
                &body,
            )
            .await;
            assert_eq!(status, 403, "{what} with scope {wrong}: {problem}");
            assert_eq!(
                problem["type"], "https://enrollstream.dev/problems/forbidden",
                "{what}"
            );
            assert_eq!(problem["required_scope"], scope, "{what}");
        }
    }

    // Probes answer anyone.
    for path in ["/healthz", "/readyz"] {
        let (status, _, _) = send(&anonymous, &app, &Method::GET, path, &Value::Null).await;
        assert_eq!(status, 200, "{path}");
    }

    // Both headers carry a key; a key that is not one of ours, or malformed, is 401 too.
    let via_header = anonymous
        .get(app.url("/v1/schemas"))
        .header("x-api-key", key_for("read"))
        .send()
        .await
        .unwrap();
    assert_eq!(via_header.status(), 200);
    for bogus in [
        "es_notakey",
        "es_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "Basic-looking",
        "a.b.c",
    ] {
        let r = anonymous
            .get(app.url("/v1/schemas"))
            .header("x-api-key", bogus)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{bogus}");
    }

    // The log names the keys that were refused or used, never a key.
    let logged = eventually(
        "the refusals to reach the log",
        Duration::from_secs(10),
        || {
            let log = log.clone();
            async move {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                (text.contains("refused: missing scope") && text.contains("doomed")).then_some(text)
            }
        },
    )
    .await;
    assert!(
        logged.contains("key-read"),
        "the log names the key: {logged}"
    );
    for (_, key) in &keys {
        assert!(!logged.contains(key.as_str()), "a key appears in the log");
    }
    assert!(!logged.contains(&doomed));

    // `api-key list` shows names and use, never a key.
    let (ok, listed) = api_key(&data, &["list"]);
    assert!(ok);
    let lines: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "{listed}");
    let doomed_line = lines.iter().find(|l| l["name"] == "doomed").unwrap();
    assert!(doomed_line["revoked_at"].is_string());
    let used = lines.iter().find(|l| l["name"] == "key-admin").unwrap();
    assert!(
        used["last_used_at"].is_string(),
        "last use is recorded: {used}"
    );
    for (_, key) in &keys {
        assert!(!listed.contains(key.as_str()));
    }
    // Names are never reused, and revoking twice is an error.
    let (ok, out) = api_key(&data, &["create", "--name", "doomed", "--scope", "read"]);
    assert!(
        !ok && out.is_empty(),
        "a refused create prints nothing on stdout"
    );
    assert!(!api_key(&data, &["revoke", "doomed"]).0);
    assert!(
        !api_key(&data, &["create", "--name", "x", "--scope", "write"]).0,
        "unknown scopes are refused"
    );
}

#[tokio::test]
async fn auth_off_lets_anyone_in_and_says_so_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("try-it.toml");
    std::fs::write(&config, "[api]\nauth = \"off\"\n").unwrap();
    let log = dir.path().join("serve.log");
    let args = ["--config", config.to_str().unwrap()];
    let app = TestApp::spawn_logged(&dir.path().join("data"), &args, String::new(), &[], &log);
    let r = reqwest::Client::new()
        .post(app.url("/v1/quotes"))
        .json(&json!({"customer_id":"C-1","product":"dental-basic"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("WARN") && text.contains("auth = \"off\""),
        "{text}"
    );
}
