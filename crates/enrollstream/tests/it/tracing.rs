//! Tracing through the real binary (issue 18): with `[telemetry] otlp_endpoint` naming an OTLP
//! receiver on 127.0.0.1, one application's spans — the API request, the projector applying
//! its event, the relay publishing its notifications and each delivery attempt to Logic Apps —
//! arrive in the caller's trace, each under the span before it; the JSON log lines of the
//! delivery carry event, entity and trace id. With the collector down or silent the pipeline
//! still flows, and the process still stops cleanly.

use crate::support;

use enrollstream_testkit::otlp::{OtlpReceiver, ReceivedSpan};
use enrollstream_testkit::targets::Fake;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use support::{create_key, eventually, TestApp};

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn write_config(dir: &Path, endpoint: &str, trigger_url: &str) -> std::path::PathBuf {
    let config = dir.join("enrollstream.toml");
    std::fs::write(
        &config,
        format!(
            "[telemetry]\notlp_endpoint = \"{endpoint}\"\notlp_timeout = \"500ms\"\n\n\
             [log]\nformat = \"json\"\n\n\
             [deliveries.logic_apps.target]\nurl = \"{trigger_url}\"\n"
        ),
    )
    .unwrap();
    config
}

/// Start the binary on `config` with its log in `log`; the deliveries' debug lines are kept.
fn spawn(dir: &Path, config: &Path, log: &Path) -> TestApp {
    let data = dir.join("data");
    let args = ["--config", config.to_str().unwrap()];
    let key = create_key(&data, &args, "tracing", &["admin"]);
    TestApp::spawn_logged(
        &data,
        &args,
        key,
        &[
            ("ENROLLSTREAM_API__LIMITS__RATE_PER_SECOND", "0"),
            ("RUST_LOG", "warn,enrollstream_runners::deliveries=debug"),
        ],
        log,
    )
}

async fn start_application(app: &TestApp) -> (String, String) {
    let r = app
        .client
        .post(app.url("/v1/applications"))
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .json(&json!({"applicant":{"name":"Jane Doe","email":"jane@example.com"},"product":"dental-basic"}))
        .send()
        .await
        .expect("request reaches the API");
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    (
        body["application_id"].as_str().unwrap().to_string(),
        body["event_id"].as_str().unwrap().to_string(),
    )
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test]
async fn one_application_is_one_trace_from_the_api_to_its_delivery() {
    let receiver = OtlpReceiver::start().await;
    let workflow = Fake::logic_apps("trigger-sig", None).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), receiver.base_url(), &workflow.trigger_url());
    let log = dir.path().join("serve.log");
    let mut app = spawn(dir.path(), &config, &log);

    let (application_id, event_id) = start_application(&app).await;
    let spans = eventually(
        "the delivery attempt's span at the receiver",
        Duration::from_secs(60),
        || async {
            let spans: Vec<ReceivedSpan> = receiver
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == CALLER_TRACE)
                .collect();
            let names = [
                "api.request",
                "projector.apply",
                "relay.publish",
                "delivery.attempt",
            ];
            names
                .iter()
                .all(|n| !named(&spans, n).is_empty())
                .then_some(spans)
        },
    )
    .await;

    // Every span of the trace hangs under another of it, or under the caller's.
    let ids: Vec<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    for span in &spans {
        assert!(
            span.parent_span_id == CALLER_SPAN || ids.contains(&span.parent_span_id.as_str()),
            "{} has a parent outside the trace: {spans:#?}",
            span.name
        );
        assert_eq!(span.service, "enrollstream");
    }
    let api = named(&spans, "api.request");
    assert_eq!(api.len(), 1, "{spans:#?}");
    let api = api[0];
    assert_eq!(api.parent_span_id, CALLER_SPAN);
    assert_eq!(api.attribute("event_id"), Some(event_id.as_str()));
    assert_eq!(api.attribute("entity_id"), Some(application_id.as_str()));

    let apply = named(&spans, "projector.apply");
    assert_eq!(apply.len(), 1, "{spans:#?}");
    let apply = apply[0];
    assert_eq!(apply.parent_span_id, api.span_id);
    assert_eq!(apply.attribute("event_id"), Some(event_id.as_str()));

    let notifications = named(&spans, "notification");
    assert!(!notifications.is_empty(), "{spans:#?}");
    assert!(notifications
        .iter()
        .all(|n| n.parent_span_id == apply.span_id));
    let notification_ids: Vec<&str> = notifications.iter().map(|n| n.span_id.as_str()).collect();
    for publish in named(&spans, "relay.publish") {
        assert!(
            notification_ids.contains(&publish.parent_span_id.as_str()),
            "{publish:#?}"
        );
        assert_eq!(publish.attribute("event_id"), Some(event_id.as_str()));
    }
    let attempt = named(&spans, "delivery.attempt")[0];
    assert!(
        notification_ids.contains(&attempt.parent_span_id.as_str()),
        "{attempt:#?}"
    );
    assert_eq!(attempt.attribute("target_name"), Some("logic_apps"));
    assert_eq!(attempt.attribute("outcome"), Some("delivered"));
    // The workflow was called in the attempt's span: its own trace continues from there.
    let called = workflow.requests();
    let sent = called[0].header("traceparent").expect("a traceparent");
    assert_eq!(sent, format!("00-{CALLER_TRACE}-{}-01", attempt.span_id));

    // The JSON log line of the delivery names the event, the entity and the trace.
    let logged = eventually("the delivery's log line", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        async move {
            text.lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .find(|line| line["fields"]["message"] == "delivered")
        }
    })
    .await;
    assert_eq!(logged["span"]["trace_id"], CALLER_TRACE, "{logged}");
    assert_eq!(logged["span"]["event_id"], event_id.as_str(), "{logged}");
    assert_eq!(
        logged["span"]["entity_id"],
        application_id.as_str(),
        "{logged}"
    );
    app.stop();
}

/// One application through a binary exporting to `endpoint`, which takes no spans.
async fn the_pipeline_flows_despite(endpoint: &str) {
    let workflow = Fake::logic_apps("trigger-sig", None).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), endpoint, &workflow.trigger_url());
    let mut app = spawn(dir.path(), &config, &dir.path().join("serve.log"));

    let (application_id, _) = start_application(&app).await;
    eventually(
        "the notification at the workflow",
        Duration::from_secs(60),
        || async {
            workflow
                .versions_by_entity()
                .contains_key(&application_id)
                .then_some(())
        },
    )
    .await;
    // And it still stops cleanly, the last export bounded by `otlp_timeout`.
    app.stop();
}

#[tokio::test]
async fn without_a_collector_the_pipeline_still_flows() {
    // A port nobody listens on: every export is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    the_pipeline_flows_despite(&endpoint).await;
}

#[tokio::test]
async fn a_collector_that_never_answers_holds_nothing_up() {
    // Connections are taken (the kernel's backlog) and never answered: every export times out.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    the_pipeline_flows_despite(&endpoint).await;
    drop(silent);
}
