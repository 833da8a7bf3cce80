//! The backlog gauges through the real binary on the embedded bus: after a run, `/metrics`
//! shows the projector caught up (lag 0 in messages and seconds), the outbox drained, and the
//! one poison event counted as dead-letter depth.

mod support;

use serde_json::json;
use std::time::Duration;
use support::{eventually, TestApp};

fn event(id: &str, ty: &str, time: &str, data: serde_json::Value) -> serde_json::Value {
    json!({"specversion":"1.0","id":uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, id.as_bytes()).to_string(),
           "source":"/partner","type":format!("com.enrollstream.application.{ty}.v1"),
           "subject":"A-1","time":time,"datacontenttype":"application/json","data":data})
}

async fn post_event(app: &TestApp, event: serde_json::Value) {
    let r = app
        .client
        .post(app.url("/v1/events"))
        .header("content-type", "application/cloudevents+json")
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
}

/// The value of every series of `name` whose labels contain each of `labels`.
fn series(text: &str, name: &str, labels: &[&str]) -> Vec<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

#[tokio::test]
async fn backlog_gauges_show_a_caught_up_pipeline_and_the_poison_message() {
    let dir = tempfile::tempdir().unwrap();
    let key = support::create_key(dir.path(), &[], "metrics-admin", &["admin"]);
    let app = TestApp::spawn_with(
        dir.path(),
        &[],
        key,
        &[
            ("ENROLLSTREAM_API__LIMITS__RATE_PER_SECOND", "0"),
            ("ENROLLSTREAM_TELEMETRY__SAMPLE_EVERY", "100ms"),
        ],
    );
    // A signature for an application that does not exist: the projector dead-letters it.
    post_event(
        &app,
        event(
            "sig-1",
            "signature_received",
            "2026-01-01T00:00:02Z",
            json!({"application_id":"A-1","signed_by":"Jane"}),
        ),
    )
    .await;
    post_event(&app, event("start-1", "started", "2026-01-01T00:00:00Z", json!({"application_id":"A-1","applicant":{"name":"Jane","email":"jane@example.com"},"product":"dental-basic"}))).await;

    let text = eventually(
        "the gauges to show the run settled",
        Duration::from_secs(60),
        || async {
            let text = app
                .client
                .get(app.url("/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let depth = series(
                &text,
                "enrollstream_dlq_depth",
                &[r#"topic="enrollment-events.dlq""#],
            );
            let lag = series(
                &text,
                "enrollstream_consumer_lag_messages",
                &[
                    r#"group="read-model-service""#,
                    r#"topic="enrollment-events""#,
                ],
            );
            let lag_seconds = series(
                &text,
                "enrollstream_consumer_lag_seconds",
                &[r#"group="read-model-service""#],
            );
            let backlog = series(&text, "enrollstream_outbox_backlog", &[]);
            let settled = depth == [1.0]
                && !lag.is_empty()
                && lag.iter().all(|v| *v == 0.0)
                && !lag_seconds.is_empty()
                && lag_seconds.iter().all(|v| *v == 0.0)
                && backlog == [0.0];
            settled.then_some(text)
        },
    )
    .await;
    assert_eq!(
        series(&text, "enrollstream_outbox_oldest_age_seconds", &[]),
        [0.0],
        "an empty outbox has no age"
    );
    assert_eq!(
        series(
            &text,
            "enrollstream_dlq_depth",
            &[r#"topic="quote-events.dlq""#]
        ),
        [0.0],
        "every dead-letter topic is reported, empty ones as 0"
    );
    assert!(
        text.contains("# HELP enrollstream_consumer_lag_messages"),
        "the gauges are described"
    );
}
