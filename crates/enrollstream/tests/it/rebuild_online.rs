//! `enrollstream rebuild` beside a running `serve` on the embedded default (issue 18): reads
//! keep answering while it runs, it is SIGKILLed mid-way and resumes where it was, it switches
//! the read model to the rebuilt generation while quotes keep arriving, and no notification is
//! published twice.

use crate::support;

use enrollstream_ports::{codec, EventBus};
use enrollstream_sqlite::bus::EmbeddedBus;
use enrollstream_testkit::contract::store::fixtures::{quote_created, quote_id};
use serde_json::json;
use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{eventually, read_all, TestApp};

/// Enough events that the rebuild is still at work when the test sees its first progress.
const PRELOADED: usize = 8000;
const NOTIFICATION_TOPICS: [&str; 2] = ["quote-notifications", "entity-updates"];

/// The pointer row and the build's recorded progress, read from `store.db` as they are.
fn pointer(dir: &Path) -> (i64, Option<String>, i64) {
    let db = rusqlite::Connection::open_with_flags(
        dir.join("store.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open store.db");
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let (generation, building) = db
        .query_row(
            "SELECT generation, building FROM read_model WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the pointer row");
    let applied = db
        .query_row(
            "SELECT coalesce(sum(next_offset), 0) FROM shadow_progress",
            [],
            |r| r.get(0),
        )
        .expect("the build's progress");
    (generation, building, applied)
}

fn rebuild_command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_enrollstream"));
    command
        .args(["rebuild", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// A quote through the API; answers its id and event id.
async fn post_quote(app: &TestApp, i: usize) -> (String, String) {
    let r = app
        .post(
            "/v1/quotes",
            json!({"customer_id": format!("C-{i}"), "product": "dental-basic", "amount_minor": 100, "currency": "EUR"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let v: serde_json::Value = r.json().await.unwrap();
    (
        v["quote_id"].as_str().unwrap().to_string(),
        v["event_id"].as_str().unwrap().to_string(),
    )
}

async fn read_after(app: &TestApp, id: &str, event: &str) {
    eventually(
        &format!("quote {id} to be readable after {event}"),
        Duration::from_secs(60),
        || async {
            let (status, body) = app
                .get_json(&format!("/v1/quotes/{id}?after={event}&wait_ms=5000"))
                .await;
            assert!(status == 200 || status == 409, "{id}: {status} {body}");
            (status == 200).then_some(())
        },
    )
    .await;
}

async fn read_answers(app: &TestApp, id: &str) {
    let (status, body) = app.get_json(&format!("/v1/quotes/{id}")).await;
    assert_eq!(status, 200, "reads answer during the rebuild: {body}");
    assert_eq!(body["quote_id"], id, "{body}");
}

#[tokio::test]
async fn a_rebuild_beside_serve_resumes_after_a_kill_and_switches_without_notifying_twice() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..PRELOADED).map(|_| quote_id()).collect();
    {
        // Straight onto the bus, as an upstream producer would: the API would take minutes.
        let bus = EmbeddedBus::open(dir.path(), 3).unwrap();
        let publisher = bus.publisher();
        for chunk in ids.chunks(500) {
            let messages = chunk
                .iter()
                .map(|id| codec::encode(&quote_created(id)))
                .collect();
            publisher.publish("quote-events", messages).await.unwrap();
        }
    }
    let mut app = TestApp::spawn(dir.path(), &[]);
    let (first, last) = (&ids[0], &ids[PRELOADED - 1]);
    eventually(
        "the preloaded quotes to be projected and announced",
        Duration::from_secs(300),
        || async {
            let (status, _) = app.get_json(&format!("/v1/quotes/{last}")).await;
            let (_, ready) = app.get_json("/readyz").await;
            (status == 200 && ready["outbox_backlog"] == 0).then_some(())
        },
    )
    .await;
    assert_eq!(
        pointer(dir.path()).0,
        1,
        "a store never rebuilt is at generation 1"
    );

    // First run, SIGKILLed once it has recorded progress; reads answer meanwhile.
    let mut killed = rebuild_command(dir.path()).spawn().unwrap();
    let reads_during = std::cell::Cell::new(0);
    eventually(
        "the rebuild to record progress",
        Duration::from_secs(120),
        || async {
            read_answers(&app, first).await;
            reads_during.set(reads_during.get() + 1);
            (pointer(dir.path()).2 > 0).then_some(())
        },
    )
    .await;
    assert!(
        killed.try_wait().unwrap().is_none(),
        "the rebuild finished before the test could kill it; preload more events"
    );
    killed.kill().unwrap();
    killed.wait().unwrap();
    let (generation, building, applied) = pointer(dir.path());
    assert_eq!(generation, 1, "a killed rebuild switched nothing");
    assert!(
        building.is_some() && applied > 0,
        "the build and its progress stay"
    );
    assert!(
        reads_during.get() > 0,
        "reads were asked while the rebuild ran"
    );
    read_answers(&app, last).await;

    // Second run resumes (after the killed run's lease expired), while reads and new quotes go
    // on until it is done: the live projector applies them to generation 1 as the rebuild
    // chases it, and to generation 2 after the switch.
    let resumed = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || rebuild_command(&dir).output().unwrap()
    });
    let mut live = Vec::new();
    let mut i = 0;
    while !resumed.is_finished() {
        read_answers(&app, &ids[i % PRELOADED]).await;
        live.push(post_quote(&app, i).await);
        i += 1;
    }
    let out = resumed.await.unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the resumed rebuild succeeds: {said}");
    assert!(
        said.contains(&format!(
            "resuming the rebuild of generation 2 (build {})",
            building.unwrap()
        )),
        "it resumes the killed build: {said}"
    );
    assert!(said.contains("generation 2 is active"), "{said}");
    assert_eq!(
        pointer(dir.path()).0,
        2,
        "the pointer names the rebuilt generation"
    );
    assert_eq!(pointer(dir.path()).1, None, "no build is left open");

    // The rebuilt generation holds what the live one had, and what arrived meanwhile.
    read_answers(&app, first).await;
    read_answers(&app, last).await;
    for (id, event) in &live {
        read_after(&app, id, event).await;
    }
    let after = post_quote(&app, 1000).await;
    read_after(&app, &after.0, &after.1).await;
    let (_, log) = app.get_json(&format!("/v1/quotes/{first}/events")).await;
    assert_eq!(log["events"].as_array().map(Vec::len), Some(1), "{log}");
    eventually("the outbox to drain", Duration::from_secs(60), || async {
        let (_, ready) = app.get_json("/readyz").await;
        (ready["outbox_backlog"] == 0).then_some(())
    })
    .await;
    app.stop();

    // Each quote announced once: one notification and one entity update, whatever the rebuild did.
    let bus = EmbeddedBus::open(dir.path(), 3).unwrap();
    let published = read_all(&bus, &NOTIFICATION_TOPICS).await;
    let quotes = PRELOADED + live.len() + 1;
    let unique: HashSet<&str> = published.iter().filter_map(|m| m.header("ce_id")).collect();
    assert_eq!(unique.len(), 2 * quotes, "every quote announced");
    assert_eq!(published.len(), unique.len(), "nothing announced twice");
}
