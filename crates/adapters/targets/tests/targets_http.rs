//! Each target against a real HTTP server on 127.0.0.1 playing its downstream system: the
//! request it sends, the key it derives, and how every failure is classified.

use chrono::{DateTime, Utc};
use enrollstream_domain::routing::RoutingRules;
use enrollstream_domain::CloudEvent;
use enrollstream_ports::target::{Delivery, DeliveryError, Target};
use enrollstream_ports::{Clock, SystemClock};
use enrollstream_targets::salesforce::SObjectMapping;
use enrollstream_targets::{
    HttpSettings, LeadManagementConfig, LeadManagementTarget, LogicAppsConfig, LogicAppsTarget,
    SalesforceConfig, SalesforceMode, SalesforceTarget, Secret,
};
use enrollstream_testkit::targets::fixtures::{application_journey, outbox_of};
use enrollstream_testkit::targets::{Fake, Fault, FaultRule};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

fn at() -> DateTime<Utc> {
    "2026-03-01T09:00:00Z".parse().unwrap()
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// The notifications of one application journey on `enrollment-notifications`.
fn notifications(application_id: &str) -> Vec<CloudEvent> {
    outbox_of(
        &application_journey(application_id, at()),
        &RoutingRules::default(),
    )
    .into_iter()
    .filter(|m| m.topic == "enrollment-notifications")
    .map(|m| m.event)
    .collect()
}

fn delivery(event: &CloudEvent) -> Delivery {
    Delivery {
        event: event.clone(),
        attempt: 1,
    }
}

fn quick() -> HttpSettings {
    HttpSettings {
        timeout: Duration::from_millis(1500),
        ..HttpSettings::default()
    }
}

#[tokio::test]
async fn logic_apps_posts_signed_notifications_once_per_key() {
    let fake = Fake::logic_apps("SAS-SIG", Some("hmac-key")).await;
    let mut config = LogicAppsConfig::new(fake.trigger_url());
    config.signing_key = Some(Secret::new("hmac-key"));
    let target = LogicAppsTarget::new(&config, clock()).unwrap();
    let n = notifications("A-1");

    let ok = target.deliver(&delivery(&n[0])).await.unwrap();
    assert_eq!(ok.status, 202);
    // A retry of the same notification carries the same key: the workflow drops it.
    target.deliver(&delivery(&n[0])).await.unwrap();
    target.deliver(&delivery(&n[1])).await.unwrap();
    assert_eq!(fake.applied_count(), 2);
    assert_eq!(fake.duplicates(), 1);
    assert_eq!(fake.keys_of(&n[0].id).len(), 1);

    let request = &fake.requests()[0];
    let body = request.json().unwrap();
    assert_eq!(body["notification_id"], json!(n[0].id));
    assert_eq!(body["entity_id"], json!("A-1"));
    assert_eq!(
        body["routing"]["trigger_type"],
        json!("enrollment_lifecycle")
    );
    assert_eq!(request.header("ce-id"), Some(n[0].id.as_str()));
    assert!(request.header("traceparent").is_some());
    assert_eq!(
        request.header("idempotency-key").map(str::to_string),
        Some(enrollstream_targets::idempotency_key(
            "logic_apps",
            &n[0].id
        ))
    );
}

#[tokio::test]
async fn logic_apps_failures_follow_the_error_policy() {
    let fake = Fake::logic_apps("SAS-SIG", None).await;
    let mut config = LogicAppsConfig::new(fake.trigger_url());
    config.http = quick();
    let target = LogicAppsTarget::new(&config, clock()).unwrap();
    let n = &notifications("A-2")[0];

    fake.inject(FaultRule::next(1, Fault::status(500)));
    let e = target.deliver(&delivery(n)).await.unwrap_err();
    assert!(
        matches!(
            e,
            DeliveryError::Transient {
                status: Some(500),
                ..
            }
        ),
        "{e:?}"
    );

    fake.inject(FaultRule::next(1, Fault::too_many_requests(7)));
    match target.deliver(&delivery(n)).await.unwrap_err() {
        DeliveryError::Transient {
            status: Some(429),
            retry_after,
            ..
        } => assert_eq!(retry_after, Some(Duration::from_secs(7))),
        other => panic!("{other:?}"),
    }

    fake.inject(FaultRule::next(1, Fault::Reset));
    let e = target.deliver(&delivery(n)).await.unwrap_err();
    assert!(
        matches!(e, DeliveryError::Transient { status: None, .. }),
        "{e:?}"
    );

    fake.inject(FaultRule::next(1, Fault::with_body(400, "bad")));
    let e = target.deliver(&delivery(n)).await.unwrap_err();
    assert!(
        matches!(
            e,
            DeliveryError::Permanent {
                status: Some(400),
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(fake.applied_count(), 0);

    // Slow: the workflow ran, the answer came too late. The retry is recognised.
    fake.inject(FaultRule::next(1, Fault::Delay(Duration::from_secs(5))));
    let e = target.deliver(&delivery(n)).await.unwrap_err();
    assert!(e.error().contains("timed out"), "{e:?}");
    assert_eq!(fake.applied_count(), 1);
    target.deliver(&delivery(n)).await.unwrap();
    assert_eq!(fake.times_applied(&n.id), 1);

    fake.rotate_signature("NEW-SIG");
    let e = target.deliver(&delivery(n)).await.unwrap_err();
    assert!(
        matches!(e, DeliveryError::Unauthorized { status: 401, .. }),
        "{e:?}"
    );
    assert!(!e.to_string().contains("SAS-SIG"), "{e}");
}

#[tokio::test]
async fn logic_apps_errors_never_show_the_signature() {
    // Nothing listens on this port: the error names the failure, not the URL.
    let config = LogicAppsConfig::new("http://127.0.0.1:9/invoke?api-version=1&sig=TOPSECRET");
    let target = LogicAppsTarget::new(&config, clock()).unwrap();
    let e = target
        .deliver(&delivery(&notifications("A-3")[0]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "transient");
    assert!(!format!("{e} {e:?}").contains("TOPSECRET"), "{e:?}");
}

fn salesforce_config(fake: &Fake<enrollstream_testkit::targets::Salesforce>) -> SalesforceConfig {
    let mut config = SalesforceConfig::new(fake.base_url(), "client-id", "client-secret");
    config.http = quick();
    config
}

#[tokio::test]
async fn salesforce_upserts_by_external_id_with_a_cached_token() {
    let fake = Fake::salesforce("client-id", "client-secret").await;
    let target = SalesforceTarget::new(&salesforce_config(&fake), clock()).unwrap();
    let n = notifications("A-10");

    let first = target.deliver(&delivery(&n[0])).await.unwrap();
    assert_eq!((first.status, first.detail.as_str()), (201, "created"));
    let second = target.deliver(&delivery(&n[1])).await.unwrap();
    assert_eq!((second.status, second.detail.as_str()), (200, "updated"));
    // A retried call updates the same record: no duplicate.
    target.deliver(&delivery(&n[1])).await.unwrap();
    assert_eq!(fake.record_count(), 1);
    assert_eq!(fake.token_requests(), 1);
    let record = fake
        .record("Enrollment__c", "Enrollment_Id__c", "A-10")
        .unwrap();
    assert_eq!(record["Status__c"], json!("AWAITING_SIGNATURE"));
    assert_eq!(record["Entity_Version__c"], json!(2));
    assert_eq!(record["Last_Notification_Id__c"], json!(n[1].id));
    assert_eq!(fake.times_applied(&n[1].id), 1);

    // The session expires: one new token, one more try, success.
    fake.expire_tokens();
    target.deliver(&delivery(&n[2])).await.unwrap();
    assert_eq!(fake.token_requests(), 2);

    // The secret is rotated: refused after one refresh, reported as unauthorized.
    fake.rotate_client_secret("rotated");
    let e = target.deliver(&delivery(&n[3])).await.unwrap_err();
    assert!(matches!(e, DeliveryError::Unauthorized { .. }), "{e:?}");
    assert!(e.error().contains("invalid_client"), "{e}");
}

#[tokio::test]
async fn salesforce_error_bodies_map_onto_the_policy() {
    let fake = Fake::salesforce("client-id", "client-secret").await;
    let target = SalesforceTarget::new(&salesforce_config(&fake), clock()).unwrap();
    let n = &notifications("A-11")[0];
    let api = "/services/data/";

    fake.inject(
        FaultRule::next(
            1,
            Fault::with_body(
                400,
                r#"[{"message":"No such column 'Status__c' on sobject of type Enrollment__c","errorCode":"INVALID_FIELD"}]"#,
            ),
        )
        .on_path(api),
    );
    let e = target.deliver(&delivery(n)).await.unwrap_err();
    assert!(
        matches!(
            e,
            DeliveryError::Permanent {
                status: Some(400),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.error().contains("INVALID_FIELD"), "{e}");

    fake.inject(
        FaultRule::next(
            1,
            Fault::with_body(
                403,
                r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
            ),
        )
        .on_path(api),
    );
    let e = target.deliver(&delivery(n)).await.unwrap_err();
    assert!(
        matches!(
            e,
            DeliveryError::Transient {
                status: Some(403),
                ..
            }
        ),
        "{e:?}"
    );

    fake.inject(FaultRule::next(1, Fault::status(503)).on_path("/oauth2/token"));
    fake.expire_tokens();
    let e = target.deliver(&delivery(n)).await.unwrap_err();
    assert!(
        matches!(
            e,
            DeliveryError::Transient {
                status: Some(503),
                ..
            }
        ),
        "{e:?}"
    );

    target.deliver(&delivery(n)).await.unwrap();
    assert_eq!(fake.times_applied(&n.id), 1);
}

#[tokio::test]
async fn salesforce_publishes_platform_events_when_configured() {
    let fake = Fake::salesforce("client-id", "client-secret").await;
    let mut config = salesforce_config(&fake);
    config.mode = SalesforceMode::PlatformEvent {
        event: "Enrollstream_Notification__e".into(),
    };
    let target = SalesforceTarget::new(&config, clock()).unwrap();
    let n = notifications("A-12");
    for event in &n {
        let ok = target.deliver(&delivery(event)).await.unwrap();
        assert_eq!(ok.detail, "published");
    }
    target.deliver(&delivery(&n[0])).await.unwrap();
    assert_eq!(fake.applied_count(), n.len());
    assert_eq!(fake.duplicates(), 1);
    let request = fake.requests().pop().unwrap();
    assert_eq!(
        request.path,
        "/services/data/v62.0/sobjects/Enrollstream_Notification__e"
    );
    assert_eq!(
        request.json().unwrap()["Notification_Id__c"],
        json!(n[0].id)
    );
}

#[tokio::test]
async fn salesforce_objects_are_configurable_per_entity_kind() {
    let fake = Fake::salesforce("client-id", "client-secret").await;
    let mut config = salesforce_config(&fake);
    config.mode = SalesforceMode::Upsert {
        application: SObjectMapping {
            object: "Opportunity".into(),
            external_id_field: "Application_Id__c".into(),
        },
        quote: SObjectMapping::quote(),
    };
    let target = SalesforceTarget::new(&config, clock()).unwrap();
    target
        .deliver(&delivery(&notifications("A-13")[0]))
        .await
        .unwrap();
    assert!(fake
        .record("Opportunity", "Application_Id__c", "A-13")
        .is_some());
}

#[tokio::test]
async fn lead_management_posts_with_the_api_key() {
    let fake = Fake::lead_management("lead-key").await;
    let mut config = LeadManagementConfig::new(fake.endpoint());
    config.api_key = Some(Secret::new("lead-key"));
    let target = LeadManagementTarget::new(&config, clock()).unwrap();
    let mut lead = notifications("A-20")[0].clone();
    lead.ty = "com.enrollstream.lead.v1".into();
    lead.data = json!({
        "lead_id": "L-1",
        "notification_id": "n-1",
        "application_id": "A-20",
        "entity_version": 1,
    });
    assert_eq!(target.deliver(&delivery(&lead)).await.unwrap().status, 201);
    assert_eq!(target.deliver(&delivery(&lead)).await.unwrap().status, 200);
    assert_eq!(fake.times_applied("n-1"), 1);

    let mut not_a_lead = lead.clone();
    not_a_lead.data = json!({"x": 1});
    let e = target.deliver(&delivery(&not_a_lead)).await.unwrap_err();
    assert_eq!(e.kind(), "rejected");

    fake.rotate_api_key("other");
    let e = target.deliver(&delivery(&lead)).await.unwrap_err();
    assert!(
        matches!(e, DeliveryError::Unauthorized { status: 401, .. }),
        "{e:?}"
    );
}
