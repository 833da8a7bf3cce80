//! Random input thrown at the real binary (proptest): arbitrary JSON, and valid events and
//! commands with one field replaced by arbitrary JSON, at `/v1/events` and every command. Each
//! answer must be a client error or an acceptance, never a 5xx; and after all of it, a valid
//! event is still projected and its notification delivered, so nothing thrown stopped the
//! pipeline (issue 15).

use crate::support;

use enrollstream_testkit::targets::Fake;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::{eventually, TestApp};

/// Arbitrary JSON: scalars of every kind (huge integers, floats, control characters, long
/// strings), nested arrays and objects.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        "[\\x00-\\x1f\\x7f]{1,5}".prop_map(Value::String),
        (1usize..5000).prop_map(|n| Value::String("x".repeat(n))),
        Just(json!("+10000-01-01T00:00:00Z")),
        Just(json!(
            "com.enrollstream.application.signature_reminders_exhausted.v1"
        )),
    ];
    leaf.prop_recursive(12, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn valid_event(n: u32) -> Value {
    json!({
        "specversion": "1.0",
        "id": uuid::Uuid::new_v4().to_string(),
        "source": "/partner",
        "type": "com.enrollstream.application.started.v1",
        "subject": format!("A-{n}"),
        "time": chrono::Utc::now().to_rfc3339(),
        "datacontenttype": "application/json",
        "data": {"application_id": format!("A-{n}"), "applicant": {"name": "Jane", "email": "jane@example.com"}, "product": "p"},
    })
}

/// A body every command route reads its fields from (each ignores the others').
fn command_body() -> Value {
    json!({"customer_id": "C-1", "product": "p", "applicant": {"name": "J", "email": "j@x.io"}, "submitted_by": "member", "signed_by": "J", "reason": "r"})
}

/// A valid body with the value at one path (dotted, into objects) replaced.
fn mutate(mut body: Value, path: &str, value: Value) -> Value {
    let mut at = &mut body;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            if let Value::Object(m) = at {
                m.insert(part.to_string(), value);
            }
            break;
        }
        at = match at.get_mut(part) {
            Some(next) => next,
            None => break,
        };
    }
    body
}

const EVENT_FIELDS: &[&str] = &[
    "id",
    "source",
    "type",
    "subject",
    "time",
    "traceparent",
    "partnerid",
    "data",
    "data.application_id",
    "data.applicant",
    "data.applicant.name",
    "data.applicant.email",
    "data.product",
    "data.extra",
];

/// Where an input goes: a path and a content type.
#[derive(Clone, Debug)]
enum Target {
    Events(&'static str),
    Command(&'static str),
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        Just(Target::Events("application/cloudevents+json")),
        Just(Target::Events("application/cloudevents-batch+json")),
        Just(Target::Events("application/json")),
        Just(Target::Command("/v1/quotes")),
        Just(Target::Command("/v1/applications")),
        Just(Target::Command("/v1/applications/A-1/submit")),
        Just(Target::Command("/v1/applications/A-1/signature")),
        Just(Target::Command("/v1/applications/A-1/decline")),
        Just(Target::Command("/v1/applications/A-1/withdraw")),
        Just(Target::Command("/v1/applications/A-1/approve")),
    ]
}

#[derive(Clone, Debug)]
enum Input {
    Raw(Value),
    Mutated(usize, Value),
    /// A valid body (for events: a new application's start), so that a run always mixes
    /// accepted input among the refused: without it, acceptance hung on a mutation that
    /// happened to stay valid (about 1 % of the cases), and one run in a few saw none.
    Valid(u32),
}

fn input() -> impl Strategy<Value = (Target, Input)> {
    (
        target(),
        prop_oneof![
            4 => any_json().prop_map(Input::Raw),
            4 => (0..EVENT_FIELDS.len(), any_json()).prop_map(|(i, v)| Input::Mutated(i, v)),
            1 => (1_000u32..1_000_000).prop_map(Input::Valid),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_input_never_stops_the_pipeline() {
    let workflow = Fake::logic_apps("sig", None).await;
    let dir = tempfile::tempdir().unwrap();
    let config = support::logic_apps_config(dir.path(), &workflow.trigger_url());
    let app = TestApp::spawn(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    // An application for the commands on `A-1` to act on, so that some are accepted.
    let r = app.post("/v1/events", valid_event(1)).await;
    assert!(r.status().is_client_error() || r.status() == 202);

    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases: 200,
        failure_persistence: None,
        ..Config::default()
    });
    let (accepted, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::<u16, usize>::new());
    let result = runner.run(&input(), |(target, input)| {
        let (path, content_type, body) = match (&target, input) {
            (Target::Events(ct), Input::Raw(v)) => ("/v1/events", *ct, v),
            (Target::Events(ct), Input::Mutated(i, v)) => {
                let event = mutate(valid_event(2), EVENT_FIELDS[i], v);
                let body = if *ct == "application/cloudevents-batch+json" {
                    json!([event])
                } else {
                    event
                };
                ("/v1/events", *ct, body)
            }
            (Target::Events(ct), Input::Valid(n)) => {
                let event = valid_event(n);
                let body = if *ct == "application/cloudevents-batch+json" {
                    json!([event])
                } else {
                    event
                };
                ("/v1/events", *ct, body)
            }
            (Target::Command(p), Input::Raw(v)) => (*p, "application/json", v),
            (Target::Command(p), Input::Mutated(i, v)) => {
                let field = EVENT_FIELDS[i].trim_start_matches("data.");
                (*p, "application/json", mutate(command_body(), field, v))
            }
            (Target::Command(p), Input::Valid(_)) => (*p, "application/json", command_body()),
        };
        let status = tokio::task::block_in_place(|| {
            handle.block_on(async {
                app.client
                    .post(app.url(path))
                    .header("content-type", content_type)
                    .body(body.to_string())
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .map_err(|e| TestCaseError::fail(format!("{path}: no answer: {e}")))?;
        *statuses.lock().unwrap().entry(status).or_default() += 1;
        match status {
            202 => accepted.fetch_add(1, Ordering::Relaxed),
            _ => refused.fetch_add(1, Ordering::Relaxed),
        };
        prop_assert!(
            status < 500,
            "{path} answered {status} to {}",
            body.to_string().chars().take(500).collect::<String>()
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (accepted, refused) = (accepted.into_inner(), refused.into_inner());
    assert!(
        accepted > 0 && refused > 0,
        "both kinds were thrown: {accepted} accepted, {refused} refused (by status: {:?})",
        statuses.into_inner().unwrap()
    );

    // After all of it, the pipeline still projects and notifies.
    let r = app.post("/v1/events", valid_event(9)).await;
    assert_eq!(r.status(), 202);
    let key = r.json::<Value>().await.unwrap()["accepted"][0]["event_key"]
        .as_str()
        .unwrap()
        .to_string();
    eventually(
        "the valid event in the read model",
        Duration::from_secs(60),
        || async {
            let (status, _) = app
                .get_json(&format!("/v1/applications/A-9?after={key}&wait_ms=5000"))
                .await;
            (status == 200).then_some(())
        },
    )
    .await;
    eventually(
        "its notification at the workflow",
        Duration::from_secs(60),
        || async {
            workflow
                .versions_by_entity()
                .contains_key("A-9")
                .then_some(())
        },
    )
    .await;
    let (_, ready) = app.get_json("/readyz").await;
    assert_eq!(ready["status"], "ready", "{ready}");
}
