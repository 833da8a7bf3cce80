//! What callers cannot make the API do, through the real binary: exceed their request rate,
//! pile up requests in flight, hold a request or a connection for ever, wait on unbounded
//! lists of events, or read the drivers' errors.

use crate::support;

use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use support::{client_with_key, create_key, eventually, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The binary with `config` (TOML) and an admin key.
fn spawn(dir: &Path, config: &str) -> TestApp {
    let file = dir.join("limits.toml");
    std::fs::write(&file, config).unwrap();
    let data = dir.join("data");
    let args = ["--config", file.to_str().unwrap()];
    let key = create_key(
        &data,
        &args,
        &format!("admin-{}", uuid::Uuid::new_v4().simple()),
        &["admin"],
    );
    TestApp::spawn_with(&data, &args, key, &[])
}

#[tokio::test]
async fn each_credential_has_its_rate() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(dir.path(), "[api.limits]\nrate_per_second = 1\nburst = 3\n");
    // The burst goes through, then 429. (A slow machine may earn a token back meanwhile, so
    // the test counts instead of expecting the fourth exactly.)
    let started = Instant::now();
    let mut passed = 0;
    let r = loop {
        let r = app.client.get(app.url("/v1/schemas")).send().await.unwrap();
        if r.status() != 200 {
            break r;
        }
        passed += 1;
        assert!(passed < 50, "no limit after {passed} requests");
    };
    assert_eq!(r.status(), 429);
    let earned = started.elapsed().as_secs() as usize + 1;
    assert!(
        (3..=3 + earned).contains(&passed),
        "{passed} requests passed: the burst of 3, plus at most one a second"
    );
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["type"], "https://enrollstream.dev/problems/rate-limited");
    // Another credential has its own budget; probes have none.
    let other = create_key(
        &app.data_dir,
        &["--config", dir.path().join("limits.toml").to_str().unwrap()],
        "other",
        &["read"],
    );
    let r = client_with_key(&other)
        .get(app.url("/v1/schemas"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_in_flight_bound_are_shed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(
        dir.path(),
        "[api.limits]\nmax_in_flight = 1\nrate_per_second = 0\n",
    );
    // One request that waits (for an event that never comes) holds the only slot (tried again
    // if one of the probing requests below held the slot when it came)...
    let holder = {
        let (client, url) = (
            app.client.clone(),
            app.url("/v1/quotes/Q-1?after=never&wait_ms=8000"),
        );
        tokio::spawn(async move {
            loop {
                let status = client.get(&url).send().await.unwrap().status().as_u16();
                if status != 503 {
                    return status;
                }
            }
        })
    };
    // ...so the others are answered 503 at once, not queued.
    let shed = eventually("a request to be shed", Duration::from_secs(6), || async {
        let started = Instant::now();
        let r = app.client.get(app.url("/v1/schemas")).send().await.unwrap();
        (r.status() == 503).then(|| (r, started.elapsed()))
    })
    .await;
    let (r, took) = shed;
    assert!(took < Duration::from_secs(2), "shed at once, took {took:?}");
    assert_eq!(r.headers()["retry-after"], "1");
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["type"], "https://enrollstream.dev/problems/overloaded");
    // An overloaded process is still alive.
    assert_eq!(
        reqwest::get(app.url("/healthz")).await.unwrap().status(),
        200
    );
    assert_eq!(
        holder.await.unwrap(),
        409,
        "the waiting read ends as it would have"
    );
    assert_eq!(
        app.client
            .get(app.url("/v1/schemas"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

async fn post_quote(app: &TestApp, idempotency_key: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/quotes"))
        .header("idempotency-key", idempotency_key)
        .json(&json!({"customer_id":"C-1","product":"dental-basic"}))
        .send()
        .await
        .unwrap()
}

/// Another process holding `store.db`'s write lock (as a second writer would): the API's writes
/// wait for it.
fn hold_store_lock(data: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(data.join("store.db")).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    conn
}

#[tokio::test]
async fn a_request_that_takes_too_long_is_answered_503() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(
        dir.path(),
        "[api]\nmax_read_wait = \"1s\"\ncommand_wait = \"1s\"\n[api.limits]\nrequest_timeout = \"1500ms\"\n",
    );
    let lock = hold_store_lock(&app.data_dir);
    let started = Instant::now();
    let r = post_quote(&app, "slow-1").await;
    let took = started.elapsed();
    assert_eq!(r.status(), 503);
    let p: Value = r.json().await.unwrap();
    assert_eq!(
        p["type"], "https://enrollstream.dev/problems/request-timeout",
        "{p}"
    );
    assert!(
        took < Duration::from_secs(4),
        "answered at the timeout, took {took:?}"
    );
    drop(lock);
    // With the lock gone, the retry under the same key goes through.
    let r = post_quote(&app, "slow-1").await;
    assert_eq!(r.status(), 202);
}

#[tokio::test]
async fn driver_errors_are_logged_not_sent() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(dir.path(), "");
    let lock = hold_store_lock(&app.data_dir);
    // The write waits out SQLite's busy timeout and fails as unavailable.
    let r = post_quote(&app, "locked-1").await;
    assert_eq!(r.status(), 503);
    let text = r.text().await.unwrap();
    drop(lock);
    let p: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        p["type"],
        "https://enrollstream.dev/problems/store-unavailable"
    );
    for leak in ["locked", "sqlite", "database", "store.db"] {
        assert!(
            !text.to_lowercase().contains(leak),
            "the answer names the driver's error: {text}"
        );
    }
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(
        dir.path(),
        "[api.limits]\nheader_read_timeout = \"300ms\"\n",
    );
    let addr = app.base_url.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    assert!(
        closed.is_ok(),
        "the server closed the connection of a client that never finished its headers"
    );
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "{answer:?}"
    );
    // A client that sends its request at once is served.
    let mut quick = tokio::net::TcpStream::connect(&addr).await.unwrap();
    quick
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    quick.read_to_end(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_read_waits_for_at_most_sixteen_events() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(dir.path(), "");
    let ids: Vec<String> = (0..17).map(|i| format!("e-{i}")).collect();
    let r = app
        .client
        .get(app.url("/v1/quotes/Q-1"))
        .header("x-enrollstream-after", ids.join(","))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["errors"][0]["field"], "X-Enrollstream-After", "{p}");
    let r = app
        .client
        .get(app.url("/v1/quotes/Q-1?after=e-16&wait_ms=0"))
        .header("x-enrollstream-after", ids[..16].join(","))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["errors"][0]["field"], "after", "{p}");
}
