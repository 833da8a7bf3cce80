//! MongoDB goes away for a while under the running binary (embedded bus, MongoDB store): the API
//! keeps accepting (the bus is the source of truth), `/readyz` says the store is down, the
//! projector pauses and retries, and once MongoDB is back everything accepted meanwhile is in
//! the read model exactly once.

use crate::support;

use enrollstream_mongodb::MongoStore;
use enrollstream_ports::Store;
use enrollstream_testkit::testbed::Mongo;
use serde_json::json;
use std::time::Duration;
use support::{eventually, TestApp};

#[tokio::test]
async fn the_pipeline_pauses_while_mongodb_is_away_and_resumes_without_loss() {
    let mut mongo = Mongo::start()
        .expect("the MongoDB-protocol server starts (bash scripts/testbed/install.sh)");
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("{}/enrollstream", mongo.uri());
    let mut app = TestApp::spawn(dir.path(), &["--mongodb-uri", &uri]);

    let post = |i: u32| json!({"customer_id": format!("C-{i}"), "product":"dental-basic","amount_minor": 100 + i,"currency":"USD"});
    let r = app.post("/v1/quotes", post(0)).await;
    assert_eq!(r.status(), 202);
    let first: serde_json::Value = r.json().await.unwrap();
    let (status, _) = app
        .get_json(&format!(
            "/v1/quotes/{}?after={}",
            first["quote_id"].as_str().unwrap(),
            first["event_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200);

    mongo.pause();
    let down = eventually(
        "/readyz to report the store down",
        Duration::from_secs(30),
        || async {
            let r = app.client.get(app.url("/readyz")).send().await.unwrap();
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap();
            (status == 503).then_some(body)
        },
    )
    .await;
    assert_eq!(down["components"]["store"]["ready"], false, "{down}");

    // Accepted while the store is away: the events are durable on the bus.
    let mut accepted = Vec::new();
    for i in 1..=10 {
        let r = app.post("/v1/quotes", post(i)).await;
        assert_eq!(r.status(), 202, "the API accepts while MongoDB is away");
        let v: serde_json::Value = r.json().await.unwrap();
        accepted.push((
            v["quote_id"].as_str().unwrap().to_string(),
            v["event_id"].as_str().unwrap().to_string(),
        ));
    }

    mongo.resume().expect("MongoDB comes back on the same port");
    for (id, event) in &accepted {
        eventually(
            &format!("quote {id} in the read model"),
            Duration::from_secs(60),
            || async {
                let (status, _) = app
                    .get_json(&format!("/v1/quotes/{id}?after={event}&wait_ms=5000"))
                    .await;
                (status == 200).then_some(())
            },
        )
        .await;
    }
    eventually("/readyz to recover", Duration::from_secs(30), || async {
        let r = app.client.get(app.url("/readyz")).send().await.unwrap();
        (r.status() == 200).then_some(())
    })
    .await;
    app.stop();

    let store = MongoStore::connect(&mongo.uri(), "enrollstream")
        .await
        .unwrap();
    for (id, event) in &accepted {
        let log = store
            .event_log(enrollstream_domain::EntityKind::Quote, id)
            .await
            .unwrap();
        assert_eq!(log.len(), 1, "quote {id}: its event once");
        assert_eq!(&log[0].event_id, event);
    }
}
