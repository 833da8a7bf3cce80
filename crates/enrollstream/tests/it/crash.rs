//! Crash safety of the embedded pipeline: the process is SIGKILLed repeatedly while a stream of
//! requests is ingested. Afterwards every accepted event is in the read model exactly once and
//! every notification its change announced was published at least once.

use crate::support;

use enrollstream_domain::routing::RoutingRules;
use enrollstream_ports::{codec, Store};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{client_with_key, eventually, read_all, TestApp};

/// (entity path, event id) of every request the API acknowledged with 202.
type Accepted = Arc<Mutex<Vec<(String, String)>>>;

async fn ingest(app_url: String, key: String, accepted: Accepted, worker: usize) {
    let client = client_with_key(&key);
    for i in 0.. {
        let (path, body, entity) = if (i + worker).is_multiple_of(2) {
            (
                "/v1/quotes",
                json!({"customer_id": format!("C-{worker}-{i}"), "product":"dental-basic","amount_minor": 1000 + i,"currency":"USD"}),
                "quotes",
            )
        } else {
            (
                "/v1/applications",
                json!({"applicant":{"name":"Jane Doe","email":"jane@example.com"},"product":"dental-basic"}),
                "applications",
            )
        };
        // Any error ends this worker: the process was killed under it.
        let Ok(r) = client
            .post(format!("{app_url}{path}"))
            .json(&body)
            .send()
            .await
        else {
            return;
        };
        if r.status() != 202 {
            return;
        }
        let Ok(v) = r.json::<serde_json::Value>().await else {
            return;
        };
        let id_field = if entity == "quotes" {
            "quote_id"
        } else {
            "application_id"
        };
        let id = v[id_field].as_str().unwrap().to_string();
        let event = v["event_id"].as_str().unwrap().to_string();
        accepted
            .lock()
            .unwrap()
            .push((format!("/v1/{entity}/{id}"), event.clone()));
        if entity == "applications" {
            // A chain on the same key, so redelivery after a crash meets already-advanced state.
            let Ok(r) = client
                .post(format!("{app_url}/v1/applications/{id}/submit"))
                .json(&json!({"submitted_by":"broker","broker":{"id":"B-1","name":"Acme","email":"agent@acme.test"}}))
                .send()
                .await
            else {
                return;
            };
            if r.status() != 202 {
                return;
            }
            let Ok(v) = r.json::<serde_json::Value>().await else {
                return;
            };
            accepted.lock().unwrap().push((
                format!("/v1/applications/{id}"),
                v["event_id"].as_str().unwrap().to_string(),
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_ingest_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let accepted: Accepted = Arc::default();
    for round in 0..5u64 {
        let mut app = TestApp::spawn(dir.path(), &[]);
        let workers: Vec<_> = (0..6)
            .map(|w| {
                tokio::spawn(ingest(
                    app.base_url.clone(),
                    app.key.clone(),
                    accepted.clone(),
                    w,
                ))
            })
            .collect();
        // Let some requests through, then pull the plug at a moment that varies per round.
        let before = accepted.lock().unwrap().len();
        eventually("some requests accepted", Duration::from_secs(30), || {
            let accepted = accepted.clone();
            async move {
                (accepted.lock().unwrap().len() >= before + 20 + 15 * round as usize).then_some(())
            }
        })
        .await;
        app.kill9();
        for w in workers {
            w.await.unwrap();
        }
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() >= 100,
        "the test ingested too little to mean anything: {}",
        accepted.len()
    );

    // Restart once more and let the pipeline catch up on everything accepted.
    let mut app = TestApp::spawn(dir.path(), &[]);
    for (path, event) in &accepted {
        let (status, body) = app
            .get_json(&format!("{path}?after={event}&wait_ms=10000"))
            .await;
        assert_eq!(
            status, 200,
            "accepted event {event} of {path} never reached the read model: {body}"
        );
    }
    eventually("the outbox to drain", Duration::from_secs(60), || async {
        let (_, ready) = app.get_json("/readyz").await;
        (ready["outbox_backlog"] == 0).then_some(())
    })
    .await;
    app.stop();

    // Exactly once in the read model: each accepted event once in its entity's log, and each
    // entity's version equals the length of its log.
    let store = enrollstream_sqlite::store::SqliteStore::open(dir.path()).unwrap();
    let mut by_entity: HashMap<&str, Vec<&str>> = HashMap::new();
    for (path, event) in &accepted {
        by_entity
            .entry(path.as_str())
            .or_default()
            .push(event.as_str());
    }
    let rules = RoutingRules::default();
    let mut expected_notifications = HashSet::new();
    for (path, events) in &by_entity {
        let (kind, id) = match path.strip_prefix("/v1/quotes/") {
            Some(id) => (enrollstream_domain::EntityKind::Quote, id),
            None => (
                enrollstream_domain::EntityKind::Application,
                path.strip_prefix("/v1/applications/").unwrap(),
            ),
        };
        let log = store.event_log(kind, id).await.unwrap();
        let ids: Vec<&str> = log.iter().map(|e| e.event_id.as_str()).collect();
        let unique: HashSet<&str> = ids.iter().copied().collect();
        assert_eq!(
            unique.len(),
            ids.len(),
            "duplicate event in the log of {path}: {ids:?}"
        );
        for e in events {
            assert!(
                unique.contains(e),
                "accepted event {e} missing from the log of {path}"
            );
        }
        let entity = store
            .entity(kind, id)
            .await
            .unwrap()
            .expect("entity exists");
        assert_eq!(
            entity.version as usize,
            log.len(),
            "version of {path} does not match its log"
        );
        for e in &log {
            for (topic, _) in rules.routes(&e.event_type) {
                expected_notifications.insert(enrollstream_domain::ids::derived_id(&[
                    "notification",
                    &e.event_id,
                    &topic,
                ]));
            }
        }
    }
    assert_eq!(store.outbox_backlog().await.unwrap(), 0);

    // At least once on the bus: every notification id present (duplicates allowed, same id).
    let bus = enrollstream_sqlite::bus::EmbeddedBus::open(dir.path(), 3).unwrap();
    let published: HashSet<String> =
        read_all(&bus, &["enrollment-notifications", "quote-notifications"])
            .await
            .iter()
            .map(|m| codec::decode(m).unwrap().id)
            .collect();
    let missing: Vec<_> = expected_notifications.difference(&published).collect();
    assert!(
        missing.is_empty(),
        "{} notification(s) never published, e.g. {:?}",
        missing.len(),
        missing.first()
    );
}
