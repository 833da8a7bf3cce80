//! `POST /v1/events`: upstream CloudEvents, single or batch, all or nothing, ids kept.

use crate::common;

use common::*;
use enrollstream_domain::events::*;
use enrollstream_domain::{ApplicationEvent, CloudEvent, DomainEvent};
use serde_json::{json, Value};

/// `event` as an upstream producer would send it.
fn upstream(event: DomainEvent) -> Value {
    serde_json::to_value(CloudEvent::new(
        &event,
        "/partner/portal",
        start_time(),
        None,
    ))
    .unwrap()
}

fn started(id: &str) -> Value {
    upstream(DomainEvent::Application(ApplicationEvent::Started(
        ApplicationStarted {
            application_id: id.into(),
            applicant: Applicant {
                name: "Jane Doe".into(),
                email: "jane@example.com".into(),
            },
            product: "dental-basic".into(),
            quote_id: None,
        },
    )))
}

fn submitted(id: &str) -> Value {
    upstream(DomainEvent::Application(ApplicationEvent::Submitted(
        ApplicationSubmitted {
            application_id: id.into(),
            submitter: Submitter::Member,
        },
    )))
}

fn quote_requested(id: &str) -> Value {
    upstream(DomainEvent::Quote(
        enrollstream_domain::QuoteEvent::Requested(QuoteRequested {
            quote_id: id.into(),
            customer_id: "C-1".into(),
            product: "vision".into(),
        }),
    ))
}

async fn send(app: &App, content_type: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url("/v1/events"))
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_single_structured_event_is_published_with_its_own_id() {
    let app = App::spawn().await;
    let event = started("A-100");
    let res = send(&app, "application/cloudevents+json; charset=utf-8", &event).await;
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({"accepted":[{
            "id": event["id"],
            "type":"com.enrollstream.application.started.v1",
            "subject":"A-100",
            // Ids are unique per source: the read model keys the event by both.
            "event_key": enrollstream_domain::ids::derived_id(&["event", "/partner/portal", event["id"].as_str().unwrap()]),
        }]})
    );
    let published = app.published(APPLICATIONS).await;
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].0, "A-100");
    assert_eq!(serde_json::to_value(&published[0].1).unwrap(), event);
}

#[tokio::test]
async fn a_batch_goes_to_each_topic_in_order_without_transition_checks() {
    let app = App::spawn().await;
    // Submitted before Started on purpose: upstream facts are not judged here.
    let batch = json!([submitted("A-7"), quote_requested("Q-7"), started("A-7")]);
    let res = send(&app, "application/cloudevents-batch+json", &batch).await;
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    let ids: Vec<&Value> = body["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["id"])
        .collect();
    assert_eq!(ids, vec![&batch[0]["id"], &batch[1]["id"], &batch[2]["id"]]);
    let apps: Vec<String> = app
        .published(APPLICATIONS)
        .await
        .into_iter()
        .map(|(_, e)| e.id)
        .collect();
    assert_eq!(
        apps,
        vec![
            batch[0]["id"].as_str().unwrap(),
            batch[2]["id"].as_str().unwrap()
        ]
    );
    let quotes = app.published(QUOTES).await;
    assert_eq!(quotes.len(), 1);
    assert_eq!(quotes[0].0, "Q-7");
}

#[tokio::test]
async fn a_plain_json_array_is_a_batch() {
    let app = App::spawn().await;
    let res = send(
        &app,
        "application/json",
        &json!([started("A-1"), started("A-2")]),
    )
    .await;
    assert_eq!(res.status(), 202);
    assert_eq!(app.count(APPLICATIONS).await, 2);
}

#[tokio::test]
async fn one_bad_event_refuses_the_whole_batch_naming_index_and_field() {
    let app = App::spawn().await;
    let mut bad = started("A-2");
    bad["data"]["applicant"]["email"] = json!("jane-at-example");
    let mut untimed = started("A-3");
    untimed.as_object_mut().unwrap().remove("time");
    let res = send(
        &app,
        "application/cloudevents-batch+json",
        &json!([started("A-1"), bad, untimed]),
    )
    .await;
    let p = problem(res, 422).await;
    assert_eq!(fields(&p), vec!["[1].data.applicant.email", "[2].time"]);
    assert_eq!(app.total().await, 0);
}

#[tokio::test]
async fn refusals_name_the_field_and_publish_nothing() {
    let app = App::spawn().await;
    let with = |f: &dyn Fn(&mut Value)| {
        let mut e = started("A-1");
        f(&mut e);
        e
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "application/cloudevents+json",
            b"{\"id\":".to_vec(),
            400,
            "$",
        ),
        (
            "text/plain",
            started("A-1").to_string().into_bytes(),
            415,
            "Content-Type",
        ),
        (
            "application/cloudevents-batch+json",
            started("A-1").to_string().into_bytes(),
            422,
            "$",
        ),
        (
            "application/cloudevents-batch+json",
            b"[]".to_vec(),
            422,
            "$",
        ),
        ("application/cloudevents+json", b"42".to_vec(), 422, "$"),
        (
            "application/cloudevents+json",
            with(&|e| {
                e.as_object_mut().unwrap().remove("id");
            })
            .to_string()
            .into_bytes(),
            422,
            "id",
        ),
        (
            "application/cloudevents+json",
            with(&|e| e["specversion"] = json!("0.3"))
                .to_string()
                .into_bytes(),
            422,
            "specversion",
        ),
        (
            "application/cloudevents+json",
            with(&|e| e["type"] = json!("com.example.unknown.v1"))
                .to_string()
                .into_bytes(),
            422,
            "type",
        ),
        (
            "application/cloudevents+json",
            with(&|e| e["subject"] = json!("A-other"))
                .to_string()
                .into_bytes(),
            422,
            "subject",
        ),
        (
            "application/cloudevents+json",
            with(&|e| {
                e.as_object_mut().unwrap().remove("time");
            })
            .to_string()
            .into_bytes(),
            422,
            "time",
        ),
        (
            "application/cloudevents+json",
            with(&|e| e["data"]["product"] = json!(7))
                .to_string()
                .into_bytes(),
            422,
            "data.product",
        ),
        (
            "application/cloudevents+json",
            with(&|e| e["data"]["applicant"]["email"] = json!("nope"))
                .to_string()
                .into_bytes(),
            422,
            "data.applicant.email",
        ),
        (
            "application/cloudevents+json",
            with(&|e| e["traceparent"] = json!("not-a-trace"))
                .to_string()
                .into_bytes(),
            422,
            "traceparent",
        ),
    ];
    for (content_type, body, status, field) in cases {
        let res = app
            .http
            .post(app.url("/v1/events"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let p = problem(res, status).await;
        assert!(
            fields(&p).iter().any(|f| f == field),
            "expected {field} in {p}"
        );
    }
    let huge = json!([started("A-1")])
        .to_string()
        .replace("Jane Doe", &"J".repeat(300 * 1024));
    let res = app
        .http
        .post(app.url("/v1/events"))
        .header("content-type", "application/cloudevents-batch+json")
        .body(huge)
        .send()
        .await
        .unwrap();
    problem(res, 413).await;
    assert_eq!(app.total().await, 0);
}

/// Issue 15: every input that would later stop the pipeline is refused here, naming the field.
#[tokio::test]
async fn inputs_that_would_stop_the_pipeline_are_refused_at_the_edge() {
    let app = App::spawn().await;
    let with = |f: &dyn Fn(&mut Value)| {
        let mut e = started("A-1");
        f(&mut e);
        e
    };
    let exhausted = upstream(DomainEvent::Application(
        ApplicationEvent::RemindersExhausted(SignatureRemindersExhausted {
            application_id: "A-1".into(),
            attempts: 5,
            broker_email: "b@example.com".into(),
        }),
    ));
    let cases: Vec<(Value, &str)> = vec![
        (with(&|e| e["id"] = json!("upstream-1")), "id"),
        (exhausted, "type"),
        (
            with(&|e| e["source"] = json!("/enrollstream/reminders")),
            "source",
        ),
        (with(&|e| e["source"] = json!("/Enrollstream")), "source"),
        (
            with(&|e| {
                e["subject"] = json!("A-1\r\nX-Evil: 1");
                e["data"]["application_id"] = json!("A-1\r\nX-Evil: 1");
            }),
            "subject",
        ),
        (
            with(&|e| e["time"] = json!("+10000-01-01T00:00:00Z")),
            "time",
        ),
        (with(&|e| e["time"] = json!("2999-01-01T00:00:00Z")), "time"),
        (
            with(&|e| e["data"]["extra"] = json!(u64::MAX)),
            "data.extra",
        ),
        (
            with(&|e| e["data"]["deep"] = json!([[[[[[[[[[1]]]]]]]]]])),
            "data.deep[0][0][0][0][0][0][0]",
        ),
        (
            with(&|e| e["data"]["applicant"]["name"] = json!("J".repeat(5000))),
            "data.applicant.name",
        ),
        (
            with(&|e| e["partnerid"] = json!({"nested": 1})),
            "partnerid",
        ),
    ];
    for (event, field) in cases {
        let res = send(&app, "application/cloudevents+json", &event).await;
        let p = problem(res, 422).await;
        assert!(
            fields(&p).iter().any(|f| f == field),
            "expected {field} in {p}"
        );
    }
    assert_eq!(app.total().await, 0, "nothing refused reached the bus");
}
