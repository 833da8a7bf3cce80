//! Reminders end to end on real parts: events on the embedded bus, the reminder consumer, the
//! SQLite reminder store, the scheduler and a real SMTP server; time moved by a manual clock.

use crate::reminders_support;

use enrollstream_domain::reminder::ReminderStatus;
use enrollstream_ports::reminders::ReminderStore;
use reminders_support::*;
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_reminders_then_the_exhaustion_event() {
    let h = Harness::start().await;
    let (mut progress, _task) = h.spawn(h.scheduler(h.store.clone(), h.smtp_mailer()));
    h.submit("A-1", true).await;

    // Not before the interval has passed.
    h.advance(
        interval() - chrono::Duration::minutes(1),
        &mut [&mut progress],
    )
    .await;
    assert!(h.mail_counts().is_empty());

    for attempt in 1..=5u32 {
        let wait = if attempt == 1 {
            chrono::Duration::minutes(1)
        } else {
            interval()
        };
        h.advance(wait, &mut [&mut progress]).await;
        let counts = h.mail_counts();
        let expected: BTreeMap<String, usize> = (1..=attempt).map(|a| (mid("A-1", a), 1)).collect();
        assert_eq!(counts, expected, "after reminder {attempt}");
        let r = h.store.get("A-1").await.unwrap().unwrap();
        assert_eq!(
            (r.attempts, r.status),
            (attempt, ReminderStatus::AwaitingSignature)
        );
    }
    let last = h.smtp.messages().pop().unwrap();
    assert_eq!(last.to(), Some("\"Acme Brokers\" <broker@acme.test>"));
    assert!(last.text.as_deref().unwrap().contains("It is the last one"));

    // One interval after the fifth reminder: flagged and announced, no sixth email.
    h.advance(interval(), &mut [&mut progress]).await;
    let r = h.store.get("A-1").await.unwrap().unwrap();
    assert_eq!(r.status, ReminderStatus::Exhausted);
    assert_eq!((r.attempts, r.next_due_at), (5, None));
    let events = h.exhaustion_events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "A-1");
    assert_eq!(
        events[0].1,
        enrollstream_domain::ids::derived_id(&["reminders-exhausted", "A-1"])
    );
    // The consumer reads its own announcement back without changing the outcome.
    h.wait_for_reminder("A-1", "the announcement folded in", |r| {
        r.applied_event_ids.contains(&events[0].1)
    })
    .await;

    for _ in 0..3 {
        h.advance(interval(), &mut [&mut progress]).await;
    }
    assert_eq!(h.mail_counts().len(), 5);
    assert_eq!(h.smtp.messages().len(), 5);
    assert_eq!(h.exhaustion_events().await.len(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reminder_after_the_signature() {
    let h = Harness::start().await;
    let (mut progress, _task) = h.spawn(h.scheduler(h.store.clone(), h.smtp_mailer()));
    h.submit("A-2", true).await;
    h.advance(interval(), &mut [&mut progress]).await;
    h.advance(interval(), &mut [&mut progress]).await;
    assert_eq!(h.smtp.messages().len(), 2);

    h.publish(signed("A-2")).await;
    h.wait_for_reminder("A-2", "SIGNED", |r| r.status == ReminderStatus::Signed)
        .await;
    for _ in 0..6 {
        h.advance(interval(), &mut [&mut progress]).await;
    }
    let counts = h.mail_counts();
    assert_eq!(
        counts,
        BTreeMap::from([(mid("A-2", 1), 1), (mid("A-2", 2), 1)])
    );
    let r = h.store.get("A-2").await.unwrap().unwrap();
    assert_eq!((r.attempts, r.next_due_at), (2, None));
    assert!(h.exhaustion_events().await.is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_that_overtakes_the_submission_still_stops_reminders() {
    let h = Harness::start().await;
    let (mut progress, _task) = h.spawn(h.scheduler(h.store.clone(), h.smtp_mailer()));
    h.publish(signed("A-3")).await;
    h.wait_for_reminder("A-3", "the signature", |r| r.signature_obtained)
        .await;
    h.submit("A-3", true).await;
    let r = h.store.get("A-3").await.unwrap().unwrap();
    assert_eq!(r.status, ReminderStatus::Signed);
    for _ in 0..6 {
        h.advance(interval(), &mut [&mut progress]).await;
    }
    assert!(h.smtp.messages().is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reminder_for_a_member_submission() {
    let h = Harness::start().await;
    let (mut progress, _task) = h.spawn(h.scheduler(h.store.clone(), h.smtp_mailer()));
    h.submit("M-1", false).await;
    // A broker submission alongside proves that the scheduler was sending all along.
    h.submit("B-1", true).await;
    let r = h.store.get("M-1").await.unwrap().unwrap();
    assert_eq!(
        (r.status, r.next_due_at),
        (ReminderStatus::NotRequired, None)
    );
    for _ in 0..7 {
        h.advance(interval(), &mut [&mut progress]).await;
    }
    let counts = h.mail_counts();
    assert_eq!(counts.len(), 5);
    assert!(counts.keys().all(|id| id.contains("-B-1-")), "{counts:?}");
    assert_eq!(
        h.store.get("M-1").await.unwrap().unwrap().status,
        ReminderStatus::NotRequired
    );
    let events = h.exhaustion_events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "B-1");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_submission_is_a_no_op_and_an_invalid_event_is_dead_lettered() {
    let h = Harness::start().await;
    let (mut progress, _task) = h.spawn(h.scheduler(h.store.clone(), h.smtp_mailer()));
    h.publish(started("A-5")).await;
    let submission = h.publish(submitted("A-5", true)).await;
    h.wait_for_reminder("A-5", "the submission", |r| r.submission.is_some())
        .await;
    h.advance(interval(), &mut [&mut progress]).await;
    let before = h.store.get("A-5").await.unwrap().unwrap();
    assert_eq!(before.attempts, 1);

    h.republish(&submission).await;
    // Same key, so same partition and after the copy: once it is dead-lettered, the copy was
    // handled.
    let mut invalid = submission.clone();
    invalid.id = enrollstream_domain::ids::new_id();
    invalid.data["broker"]["email"] = "not-an-email".into();
    h.republish(&invalid).await;
    let dead = h.wait_for_dead_letters(1).await;
    assert_eq!(dead[0].header("ce_id"), Some(invalid.id.as_str()));
    assert_eq!(
        dead[0].header("dlq_consumer_group"),
        Some(enrollstream_runners::reminders::GROUP)
    );
    assert_eq!(dead[0].header("dlq_reason"), Some("invalid_event"));

    let after = h.store.get("A-5").await.unwrap().unwrap();
    assert_eq!(after, before, "the redelivered submission changed nothing");
    h.advance(interval(), &mut [&mut progress]).await;
    assert_eq!(
        h.mail_counts(),
        BTreeMap::from([(mid("A-5", 1), 1), (mid("A-5", 2), 1)])
    );
    h.stop().await;
}
