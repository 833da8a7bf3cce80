//! The backlog gauges through the real binary on the embedded bus: after a run, `/metrics`
//! shows the projector caught up (lag 0 in messages and seconds), the outbox drained, and the
//! one poison event counted as dead-letter depth. A failing Logic Apps workflow (a real HTTP
//! server on 127.0.0.1) moves its target through retrying and circuit_open back to healthy, and
//! the deliveries that follow show in the accept-to-delivered histogram. A broker's submission
//! shows as a scheduled reminder with its next due time.

use crate::support;

use enrollstream_testkit::targets::{Fake, Fault, FaultRule};
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
            let text = app.scrape_metrics().await?;
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

/// Poll `/metrics` until `check` holds for it; the text it held for.
async fn metrics_until(app: &TestApp, what: &str, check: impl Fn(&str) -> bool) -> String {
    eventually(what, Duration::from_secs(60), || async {
        app.scrape_metrics().await.filter(|text| check(text))
    })
    .await
}

/// The state `enrollstream_delivery_target_state` shows as 1 for `target`, if exactly one.
fn target_state(text: &str, target: &str) -> Option<&'static str> {
    let on: Vec<&'static str> = ["healthy", "retrying", "paused", "circuit_open"]
        .into_iter()
        .filter(|state| {
            series(
                text,
                "enrollstream_delivery_target_state",
                &[
                    &format!(r#"target="{target}""#),
                    &format!(r#"state="{state}""#),
                ],
            ) == [1.0]
        })
        .collect();
    (on.len() == 1).then(|| on[0])
}

async fn start_application(app: &TestApp) -> String {
    let r = app.post("/v1/applications", json!({"applicant":{"name":"Jane Doe","email":"jane@example.com"},"product":"dental-basic"})).await;
    assert_eq!(r.status(), 202);
    r.json::<serde_json::Value>().await.unwrap()["application_id"]
        .as_str()
        .expect("an application id")
        .to_string()
}

#[tokio::test]
async fn a_failing_target_shows_retrying_then_circuit_open_then_healthy_and_latency() {
    let workflow = Fake::logic_apps("trigger-sig", None).await;
    // Rate limiting never opens the circuit: the target stays retrying while it lasts.
    workflow.inject(FaultRule::always(Fault::too_many_requests(1)));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("enrollstream.toml");
    std::fs::write(
        &config,
        format!(
            "[deliveries.logic_apps.target]\nurl = \"{}\"\n\
             [deliveries.logic_apps.delivery.retry]\nmax_attempts = 1000\ninitial_backoff = \"50ms\"\nmax_backoff = \"200ms\"\n\
             [deliveries.logic_apps.delivery.breaker]\nfailure_threshold = 2\nopen_for = \"200ms\"\nmax_open_for = \"400ms\"\n",
            workflow.trigger_url()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut app = TestApp::spawn(&data, &["--config", config.to_str().unwrap()]);
    metrics_until(&app, "a healthy target before any delivery", |text| {
        target_state(text, "logic_apps") == Some("healthy")
    })
    .await;
    let delivered = |text: &str| {
        series(
            text,
            "enrollstream_delivery_latency_seconds_count",
            &[r#"target="logic_apps""#],
        )
        .first()
        .copied()
        .unwrap_or(0.0)
    };
    let before = delivered(&app.scrape_metrics().await.expect("a scrape"));
    let id = start_application(&app).await;

    metrics_until(&app, "the target retrying on 429", |text| {
        target_state(text, "logic_apps") == Some("retrying")
    })
    .await;
    workflow.clear_faults();
    workflow.inject(FaultRule::always(Fault::status(503)));
    metrics_until(&app, "the circuit open on 503s", |text| {
        target_state(text, "logic_apps") == Some("circuit_open")
            && series(
                text,
                "enrollstream_delivery_circuit_state",
                &[r#"target="logic_apps""#],
            )
            .iter()
            .all(|v| *v > 0.0)
    })
    .await;
    assert_eq!(workflow.applied_count(), 0, "nothing got through yet");

    workflow.clear_faults();
    let text = metrics_until(
        &app,
        "the target healthy and the notification delivered",
        |text| target_state(text, "logic_apps") == Some("healthy") && delivered(text) > before,
    )
    .await;
    assert!(
        workflow.versions_by_entity().contains_key(&id),
        "the workflow got the application's notification"
    );
    assert!(
        series(
            &text,
            "enrollstream_delivery_latency_seconds_bucket",
            &[r#"target="logic_apps""#, r#"le="3600""#],
        )
        .first()
        .is_some_and(|n| *n >= 1.0),
        "the histogram has its own buckets, up to an hour:\n{text}"
    );
    assert!(text.contains("# HELP enrollstream_delivery_target_state"));
    app.stop();
}

#[tokio::test]
async fn a_broker_submission_shows_as_a_scheduled_reminder_with_its_due_time() {
    let dir = tempfile::tempdir().unwrap();
    let key = support::create_key(dir.path(), &[], "metrics-admin", &["admin"]);
    let mut app = TestApp::spawn_with(
        dir.path(),
        &[],
        key,
        &[
            ("ENROLLSTREAM_API__LIMITS__RATE_PER_SECOND", "0"),
            ("ENROLLSTREAM_TELEMETRY__SAMPLE_EVERY", "100ms"),
            ("ENROLLSTREAM_REMINDERS__INTERVAL", "1h"),
        ],
    );
    let next_due = |text: &str| series(text, "enrollstream_reminder_next_due_seconds", &[]);
    metrics_until(&app, "no reminder scheduled at the start", |text| {
        series(text, "enrollstream_reminders_scheduled", &[]) == [0.0]
            && next_due(text).first().is_some_and(|v| v.is_nan())
    })
    .await;
    let id = start_application(&app).await;
    let r = app
        .post(
            &format!("/v1/applications/{id}/submit"),
            json!({"submitted_by":"broker","broker":{"id":"B-7","name":"Acme Brokers","email":"agent@acme.test"}}),
        )
        .await;
    assert_eq!(r.status(), 202);
    // The two gauges are sampled one after the other: a scrape may fall between them.
    let text = metrics_until(&app, "the reminder scheduled, with its due time", |text| {
        series(text, "enrollstream_reminders_scheduled", &[]) == [1.0]
            && next_due(text).first().is_some_and(|v| !v.is_nan())
    })
    .await;
    let seconds = next_due(&text);
    assert!(
        seconds.len() == 1 && seconds[0] > 0.0 && seconds[0] <= 3600.0,
        "due within the interval of an hour, not yet: {seconds:?}"
    );
    assert!(text.contains("# HELP enrollstream_reminder_next_due_seconds"));
    app.stop();
}
