//! Authentication inside the API: the key cache and revocation, `/readyz`'s details, and JWT
//! bearer tokens against a JWKS file and a JWKS URL (served on 127.0.0.1).

use crate::common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{client_with_key, problem, App};
use enrollstream_api::auth::{AuthConfig, JwtConfig, Scope};
use enrollstream_api::ApiConfig;
use enrollstream_ports::CredentialStore;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn spawn(auth: AuthConfig) -> App {
    App::spawn_with_auth(ApiConfig::default(), auth, Arc::new(String::new)).await
}

/// The status of `GET /v1/schemas` (any valid credential may read it).
async fn schemas(client: &reqwest::Client, app: &App) -> u16 {
    client
        .get(app.url("/v1/schemas"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn with_ttl(ttl: Duration) -> AuthConfig {
    AuthConfig {
        key_cache_ttl: ttl,
        ..AuthConfig::default()
    }
}

#[tokio::test]
async fn a_revoked_key_is_refused_once_its_cache_entry_expires() {
    // A long TTL: the key stays trusted from the cache after its revocation...
    let app = spawn(with_ttl(Duration::from_secs(600))).await;
    let key = app.key("cached", &[Scope::Read]).await;
    let client = client_with_key(&key);
    assert_eq!(schemas(&client, &app).await, 200);
    assert!(app
        .keys
        .revoke_api_key("cached", common::start_time())
        .await
        .unwrap());
    assert_eq!(schemas(&client, &app).await, 200);

    // ...and with none, it is refused at once; an unknown key is never cached, so a key created
    // after a refusal works at once.
    let app = spawn(with_ttl(Duration::ZERO)).await;
    let key = app.key("uncached", &[Scope::Read]).await;
    let client = client_with_key(&key);
    assert_eq!(schemas(&client, &app).await, 200);
    app.keys
        .revoke_api_key("uncached", common::start_time())
        .await
        .unwrap();
    let p = problem(
        client.get(app.url("/v1/schemas")).send().await.unwrap(),
        401,
    )
    .await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("\"uncached\" is revoked"),
        "{p}"
    );
}

#[tokio::test]
async fn readyz_tells_reasons_only_to_admins() {
    let app = App::spawn().await;
    app.health.set(
        "projector",
        false,
        "store unavailable: connection refused to db-7.internal:27017",
    );
    let anonymous = problem(
        app.anonymous.get(app.url("/readyz")).send().await.unwrap(),
        503,
    )
    .await;
    assert_eq!(anonymous["components"]["projector"]["detail"], "not ready");
    assert_eq!(anonymous["components"]["store"]["detail"], "ok");
    assert!(!anonymous.to_string().contains("db-7"), "{anonymous}");
    let reader = client_with_key(&app.key("reader", &[Scope::Read]).await);
    let p = problem(reader.get(app.url("/readyz")).send().await.unwrap(), 503).await;
    assert!(!p.to_string().contains("db-7"));
    let admin = problem(app.get("/readyz").await, 503).await;
    assert!(admin["components"]["projector"]["detail"]
        .as_str()
        .unwrap()
        .contains("db-7"));
}

#[tokio::test]
async fn metrics_need_admin_unless_public() {
    let app = App::spawn().await;
    problem(
        app.anonymous.get(app.url("/metrics")).send().await.unwrap(),
        401,
    )
    .await;
    let reader = client_with_key(&app.key("reader", &[Scope::Read]).await);
    problem(reader.get(app.url("/metrics")).send().await.unwrap(), 403).await;
    let public = AuthConfig {
        public_metrics: true,
        ..AuthConfig::default()
    };
    let app = spawn(public).await;
    assert_eq!(
        app.anonymous
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// An Ed25519 signing key and its JWK.
struct Signer {
    kid: String,
    key: EncodingKey,
    jwk: Value,
}

fn signer(kid: &str) -> Signer {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    Signer {
        kid: kid.into(),
        key: EncodingKey::from_ed_der(pkcs8.as_ref()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()), "kid": kid, "alg": "EdDSA", "use": "sig"}),
    }
}

const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "enrollstream";

fn claims(scope: Value) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "portal-7", "iat": now, "exp": now + 300, "scope": scope})
}

fn token(signer: &Signer, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(signer.kid.clone());
    jsonwebtoken::encode(&header, claims, &signer.key).unwrap()
}

fn jwt_config(file: Option<std::path::PathBuf>, url: Option<String>) -> AuthConfig {
    AuthConfig {
        jwt: Some(JwtConfig {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            jwks_file: file,
            jwks_url: url,
            scopes_claim: "scope".into(),
            name_claim: "sub".into(),
            algorithms: vec!["EdDSA".into()],
            leeway: Duration::from_secs(5),
            jwks_refresh: Duration::from_secs(1),
        }),
        ..AuthConfig::default()
    }
}

async fn status(
    app: &App,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> u16 {
    let mut request = app
        .anonymous
        .request(method, app.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn jwts_from_a_jwks_file_are_checked_in_full() {
    let good = signer("k1");
    let stranger = signer("k1");
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [good.jwk]}).to_string()).unwrap();
    let app = spawn(jwt_config(Some(jwks), None)).await;
    let get = reqwest::Method::GET;
    let quote = json!({"customer_id": "C-1", "product": "dental-basic"});

    let reader = token(&good, &claims(json!("read quotes:write")));
    assert_eq!(
        status(&app, &reader, get.clone(), "/v1/quotes/Q-none", None).await,
        404,
        "valid: past the guard"
    );
    assert_eq!(
        status(
            &app,
            &reader,
            reqwest::Method::POST,
            "/v1/quotes",
            Some(quote.clone())
        )
        .await,
        202
    );
    assert_eq!(
        status(
            &app,
            &reader,
            reqwest::Method::POST,
            "/v1/applications",
            Some(json!({}))
        )
        .await,
        403,
        "scope missing"
    );
    let as_array = token(&good, &claims(json!(["applications:write"])));
    assert_eq!(
        status(
            &app,
            &as_array,
            reqwest::Method::POST,
            "/v1/applications",
            Some(json!({}))
        )
        .await,
        422,
        "scopes as an array"
    );

    let mut refused = Vec::new();
    let mut c = claims(json!("read"));
    c["aud"] = json!("someone-else");
    refused.push(("wrong audience", token(&good, &c)));
    let mut c = claims(json!("read"));
    c["iss"] = json!("https://evil.test");
    refused.push(("wrong issuer", token(&good, &c)));
    let mut c = claims(json!("read"));
    c["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
    refused.push(("expired", token(&good, &c)));
    let mut c = claims(json!("read"));
    c["nbf"] = json!(chrono::Utc::now().timestamp() + 3600);
    refused.push(("not yet valid", token(&good, &c)));
    let mut c = claims(json!("read"));
    c.as_object_mut().unwrap().remove("sub");
    refused.push(("no subject", token(&good, &c)));
    refused.push((
        "another key, same kid",
        token(&stranger, &claims(json!("read"))),
    ));
    let other_kid = signer("k9");
    refused.push(("unknown kid", token(&other_kid, &claims(json!("read")))));
    let payload = URL_SAFE_NO_PAD.encode(claims(json!("read")).to_string());
    refused.push((
        "alg none",
        format!(
            "{}.{payload}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
        ),
    ));
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(json!("read")),
        &EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    refused.push(("HS256", hs));
    refused.push(("garbage", "a.b.c".into()));
    for (what, token) in refused {
        assert_eq!(
            status(&app, &token, get.clone(), "/v1/quotes/Q-none", None).await,
            401,
            "{what}"
        );
    }
}

#[tokio::test]
async fn a_jwks_url_is_fetched_and_follows_a_rotation() {
    let (first, second) = (signer("k1"), signer("k2"));
    let served = Arc::new(Mutex::new(json!({"keys": [first.jwk]})));
    let jwks = {
        let served = served.clone();
        axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let served = served.clone();
                async move { axum::Json(served.lock().unwrap().clone()) }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/jwks?tenant=t-secret",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, jwks).await.unwrap() });
    let app = spawn(jwt_config(None, Some(url))).await;
    let get = reqwest::Method::GET;
    assert_eq!(
        status(
            &app,
            &token(&first, &claims(json!("read"))),
            get.clone(),
            "/v1/quotes/Q-none",
            None
        )
        .await,
        404
    );
    let rotated = token(&second, &claims(json!("read")));
    assert_eq!(
        status(&app, &rotated, get.clone(), "/v1/quotes/Q-none", None).await,
        401,
        "not in the JWKS yet"
    );
    served.lock().unwrap()["keys"] = json!([first.jwk, second.jwk]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if status(&app, &rotated, get.clone(), "/v1/quotes/Q-none", None).await == 404 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotated key was never fetched"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn admins_manage_keys_over_http() {
    let app = spawn(with_ttl(Duration::ZERO)).await;
    let r = app
        .http
        .post(app.url("/v1/admin/api-keys"))
        .json(&json!({"name": "portal", "scopes": ["read", "applications:write", "read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"], "/v1/admin/api-keys/portal");
    let created: Value = r.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    assert_eq!(created["scopes"], json!(["applications:write", "read"]));
    let portal = client_with_key(&key);
    assert_eq!(
        schemas(&portal, &app).await,
        200,
        "the new key works at once"
    );
    problem(
        portal
            .get(app.url("/v1/admin/api-keys"))
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;

    let listed: Value = app.get("/v1/admin/api-keys").await.json().await.unwrap();
    let names: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["portal", "test-admin"]);
    assert!(
        !listed.to_string().contains(&key),
        "a listing never shows a key"
    );
    assert!(!listed.to_string().contains("hash"));

    let again = app
        .http
        .post(app.url("/v1/admin/api-keys"))
        .json(&json!({"name": "portal", "scopes": ["read"]}))
        .send()
        .await
        .unwrap();
    let p = problem(again, 409).await;
    assert_eq!(p["errors"][0]["field"], "name");
    for (body, field) in [
        (json!({"name": "portal 2", "scopes": ["read"]}), "name"),
        (json!({"name": "p2", "scopes": []}), "scopes"),
        (json!({"name": "p2", "scopes": ["write"]}), "scopes[0]"),
        (
            json!({"name": "p2", "scopes": ["read"], "key": "es_mine"}),
            "key",
        ),
    ] {
        let r = app
            .http
            .post(app.url("/v1/admin/api-keys"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let p = problem(r, 422).await;
        assert_eq!(p["errors"][0]["field"], field, "{body}: {p}");
    }

    let r = app
        .http
        .delete(app.url("/v1/admin/api-keys/portal"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(schemas(&portal, &app).await, 401, "revoked");
    problem(
        app.http
            .delete(app.url("/v1/admin/api-keys/portal"))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
}

#[tokio::test]
async fn an_address_guessing_keys_gets_no_lookups_but_known_keys_pass() {
    let mut config = ApiConfig::default();
    config.limits.refusals_per_second = 1;
    config.limits.refusals_burst = 3;
    let app = App::spawn_with_auth(
        config,
        with_ttl(Duration::from_secs(600)),
        Arc::new(String::new),
    )
    .await;
    // A key used before the guessing starts is in the cache.
    let known = client_with_key(&app.key("known", &[Scope::Read]).await);
    assert_eq!(schemas(&known, &app).await, 200);
    let guess = |i: usize| format!("es_{:0>43}", i);
    // Three refusals are the budget; then 429 (counted, as a slow machine may refill a token).
    let mut refused = 0;
    let r = loop {
        let r = client_with_key(&guess(refused))
            .get(app.url("/v1/schemas"))
            .send()
            .await
            .unwrap();
        if r.status() != 401 {
            break r;
        }
        refused += 1;
        assert!(refused < 20, "no bound after {refused} refusals");
    };
    assert!(refused >= 3, "{refused}");
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // Past the budget: no lookups for this address, so a key it never used waits too...
    let fresh = client_with_key(&app.key("fresh", &[Scope::Read]).await);
    assert_eq!(schemas(&fresh, &app).await, 429);
    assert_eq!(schemas(&client_with_key(&guess(99)), &app).await, 429);
    // ...while a key verified before keeps working.
    assert_eq!(schemas(&known, &app).await, 200);
    // Once the budget refills (a second here), lookups resume.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while schemas(&fresh, &app).await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "lookups never resumed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
