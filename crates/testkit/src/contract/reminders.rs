//! The reminder store contract: what every `ReminderStore` adapter must do, one public async
//! function per case. An adapter's test file runs each on a fresh store; the two-store cases
//! take two handles on the same data (two processes on one file, or two clients of one
//! database).

use chrono::{DateTime, Duration, Utc};
use enrollstream_domain::events::{
    Applicant, ApplicationDeclined, ApplicationEvent, ApplicationStarted, ApplicationSubmitted,
    ApplicationWithdrawn, Broker, SignatureReceived, SignatureRemindersExhausted, Submitter,
};
use enrollstream_domain::reminder::{ReminderPolicy, ReminderStatus, Step};
use enrollstream_ports::reminders::{ClaimedReminder, EventOutcome, Fenced, ReminderStore};
use std::collections::HashSet;

mod claims;
mod listing;
pub use claims::*;
pub use listing::*;

pub fn t0() -> DateTime<Utc> {
    "2026-03-01T09:00:00Z".parse().expect("valid time")
}

pub fn hours(n: i64) -> DateTime<Utc> {
    t0() + Duration::hours(n)
}

pub fn policy() -> ReminderPolicy {
    ReminderPolicy {
        interval: Duration::hours(24),
        max_attempts: 5,
    }
}

pub fn started(app: &str) -> ApplicationEvent {
    ApplicationEvent::Started(ApplicationStarted {
        application_id: app.into(),
        applicant: Applicant {
            name: "Jane Doe".into(),
            email: "jane@example.com".into(),
        },
        product: "dental-basic".into(),
        quote_id: None,
    })
}

pub fn broker_submission(app: &str) -> ApplicationEvent {
    ApplicationEvent::Submitted(ApplicationSubmitted {
        application_id: app.into(),
        submitter: Submitter::Broker {
            broker: Broker {
                id: "B-1".into(),
                name: "Acme Brokers".into(),
                email: "broker@acme.test".into(),
            },
        },
    })
}

pub fn member_submission(app: &str) -> ApplicationEvent {
    ApplicationEvent::Submitted(ApplicationSubmitted {
        application_id: app.into(),
        submitter: Submitter::Member,
    })
}

pub fn signature(app: &str) -> ApplicationEvent {
    ApplicationEvent::SignatureReceived(SignatureReceived {
        application_id: app.into(),
        signed_by: "Jane Doe".into(),
        signed_at: None,
    })
}

pub fn withdrawal(app: &str) -> ApplicationEvent {
    ApplicationEvent::Withdrawn(ApplicationWithdrawn {
        application_id: app.into(),
        reason: None,
    })
}

pub fn decline(app: &str) -> ApplicationEvent {
    ApplicationEvent::Declined(ApplicationDeclined {
        application_id: app.into(),
        reason: "underwriting".into(),
    })
}

async fn apply(store: &dyn ReminderStore, id: &str, event: &ApplicationEvent, at: DateTime<Utc>) {
    let outcome = store
        .apply_event(id, event, at, &policy())
        .await
        .expect("apply_event");
    assert_eq!(outcome, EventOutcome::Applied, "event {id}");
}

/// A broker submission of each `(app, hour)`, at `hours(hour)`.
async fn submitted_at(store: &dyn ReminderStore, submissions: &[(&str, i64)]) {
    for (app, hour) in submissions {
        apply(
            store,
            &format!("{app}-sub"),
            &broker_submission(app),
            hours(*hour),
        )
        .await;
    }
}

/// A broker-submitted application `app`, submitted at `hours(0)`.
async fn submitted(store: &dyn ReminderStore, app: &str) {
    apply(store, &format!("{app}-started"), &started(app), hours(0)).await;
    apply(
        store,
        &format!("{app}-submitted"),
        &broker_submission(app),
        hours(0),
    )
    .await;
}

async fn claim(
    store: &dyn ReminderStore,
    now: DateTime<Utc>,
    owner: &str,
    limit: usize,
) -> Vec<ClaimedReminder> {
    store
        .claim_due(now, now + Duration::minutes(2), owner, limit)
        .await
        .expect("claim_due")
}

pub async fn broker_submission_creates_a_due_reminder(store: &dyn ReminderStore) {
    submitted(store, "A-1").await;
    let r = store.get("A-1").await.unwrap().expect("reminder exists");
    assert_eq!(r.status, ReminderStatus::AwaitingSignature);
    assert_eq!(r.next_due_at, Some(hours(24)));
    assert_eq!(r.broker().unwrap().email, "broker@acme.test");
    assert_eq!(r.applicant.as_ref().unwrap().name, "Jane Doe");
    assert_eq!(r.attempts, 0);
    assert!(store.get("nope").await.unwrap().is_none());
}

pub async fn redelivered_event_is_a_no_op(store: &dyn ReminderStore) {
    submitted(store, "A-1").await;
    let before = store.get("A-1").await.unwrap();
    let again = store
        .apply_event(
            "A-1-submitted",
            &broker_submission("A-1"),
            hours(7),
            &policy(),
        )
        .await
        .unwrap();
    assert_eq!(again, EventOutcome::AlreadyApplied);
    assert_eq!(store.get("A-1").await.unwrap(), before);
}

pub async fn approval_is_ignored(store: &dyn ReminderStore) {
    let approved = ApplicationEvent::Approved(enrollstream_domain::events::ApplicationApproved {
        application_id: "A-1".into(),
        approved_by: None,
    });
    let outcome = store
        .apply_event("e", &approved, hours(0), &policy())
        .await
        .unwrap();
    assert_eq!(outcome, EventOutcome::Ignored);
    assert!(store.get("A-1").await.unwrap().is_none());
}

pub async fn stop_events_end_the_schedule(store: &dyn ReminderStore) {
    let stops = [
        ("A-sig", signature("A-sig"), ReminderStatus::Signed),
        ("A-wd", withdrawal("A-wd"), ReminderStatus::Cancelled),
        ("A-dec", decline("A-dec"), ReminderStatus::Cancelled),
    ];
    for (app, stop, status) in stops {
        submitted(store, app).await;
        apply(store, &format!("{app}-stop"), &stop, hours(1)).await;
        let r = store.get(app).await.unwrap().unwrap();
        assert_eq!((r.status, r.next_due_at), (status, None), "{app}");
    }
    assert!(claim(store, hours(24 * 30), "s1", 10).await.is_empty());
    assert_eq!(store.due_backlog(hours(24 * 30)).await.unwrap(), 0);
    assert_eq!(store.next_wake().await.unwrap(), None);
}

pub async fn stop_before_submission_stays_stopped(store: &dyn ReminderStore) {
    apply(store, "A-1-sig", &signature("A-1"), hours(0)).await;
    apply(store, "A-1-sub", &broker_submission("A-1"), hours(0)).await;
    apply(store, "A-2-wd", &withdrawal("A-2"), hours(0)).await;
    apply(store, "A-2-sub", &broker_submission("A-2"), hours(0)).await;
    assert_eq!(
        store.get("A-1").await.unwrap().unwrap().status,
        ReminderStatus::Signed
    );
    assert_eq!(
        store.get("A-2").await.unwrap().unwrap().status,
        ReminderStatus::Cancelled
    );
    assert!(claim(store, hours(24 * 30), "s1", 10).await.is_empty());
}

pub async fn member_submission_is_never_due(store: &dyn ReminderStore) {
    apply(store, "M-1-started", &started("M-1"), hours(0)).await;
    apply(store, "M-1-sub", &member_submission("M-1"), hours(0)).await;
    let r = store.get("M-1").await.unwrap().unwrap();
    assert_eq!(
        (r.status, r.next_due_at),
        (ReminderStatus::NotRequired, None)
    );
    assert!(claim(store, hours(24 * 30), "s1", 10).await.is_empty());
}
