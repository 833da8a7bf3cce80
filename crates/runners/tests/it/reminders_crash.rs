//! A scheduler that dies between sending a reminder and recording it: the next scheduler
//! resends that attempt once, with the same Message-ID, after the dead one's lease ran out —
//! never a burst.

use crate::reminders_support;

use async_trait::async_trait;
use enrollstream_domain::reminder::ReminderStatus;
use enrollstream_ports::mailer::{MailError, Mailer, ReminderEmail};
use enrollstream_ports::reminders::ReminderStore;
use reminders_support::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Notify;

/// Sends through the real mailer, then never returns: the process "dies" here.
struct DiesAfterSending {
    inner: Arc<dyn Mailer>,
    sent: Arc<Notify>,
}

#[async_trait]
impl Mailer for DiesAfterSending {
    async fn send(&self, email: &ReminderEmail) -> Result<(), MailError> {
        self.inner.send(email).await?;
        self.sent.notify_one();
        std::future::pending().await
    }

    fn name(&self) -> &'static str {
        "dies-after-sending"
    }
}

/// Never sends: the process "dies" right after claiming.
struct DiesBeforeSending {
    claimed: Arc<Notify>,
}

#[async_trait]
impl Mailer for DiesBeforeSending {
    async fn send(&self, _: &ReminderEmail) -> Result<(), MailError> {
        self.claimed.notify_one();
        std::future::pending().await
    }

    fn name(&self) -> &'static str {
        "dies-before-sending"
    }
}

async fn crash(task: tokio::task::JoinHandle<()>) {
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_send_and_record_costs_one_duplicate_with_the_same_message_id() {
    let h = Harness::start().await;
    h.submit("A-1", true).await;
    let sent = Arc::new(Notify::new());
    let doomed = h.scheduler(
        h.store.clone(),
        Arc::new(DiesAfterSending {
            inner: h.smtp_mailer(),
            sent: sent.clone(),
        }),
    );
    let (_, doomed_task) = h.spawn(doomed);
    h.clock.advance(interval());
    tokio::time::timeout(DEADLINE, sent.notified())
        .await
        .expect("the first reminder went out");
    crash(doomed_task).await;
    assert_eq!(h.mail_counts(), BTreeMap::from([(mid("A-1", 1), 1)]));
    let r = h.store.get("A-1").await.unwrap().unwrap();
    assert_eq!(r.attempts, 0, "the send was never recorded");

    let (mut progress, _task) = h.spawn(h.scheduler(h.store.clone(), h.smtp_mailer()));
    // The dead scheduler's lease still holds the reminder: no resend yet, however often the
    // new scheduler looks.
    for _ in 0..3 {
        h.advance(chrono::Duration::seconds(30), &mut [&mut progress])
            .await;
        assert_eq!(h.smtp.messages().len(), 1);
    }
    // Lease over: attempt 1 once more, same Message-ID, then recorded.
    h.advance(
        chrono::Duration::from_std(config().lease).unwrap(),
        &mut [&mut progress],
    )
    .await;
    assert_eq!(h.mail_counts(), BTreeMap::from([(mid("A-1", 1), 2)]));
    assert_eq!(h.store.get("A-1").await.unwrap().unwrap().attempts, 1);

    for _ in 2..=6 {
        h.advance(interval(), &mut [&mut progress]).await;
    }
    let counts = h.mail_counts();
    let expected: BTreeMap<String, usize> = (1..=5)
        .map(|a| (mid("A-1", a), if a == 1 { 2 } else { 1 }))
        .collect();
    assert_eq!(
        counts, expected,
        "exactly one email per attempt plus one copy for the crash"
    );
    assert_eq!(h.smtp.messages().len(), 5 + 1);
    assert_eq!(
        h.store.get("A-1").await.unwrap().unwrap().status,
        ReminderStatus::Exhausted
    );
    assert_eq!(h.exhaustion_events().await.len(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_claim_and_before_the_send_costs_nothing() {
    let h = Harness::start().await;
    h.submit("A-2", true).await;
    let claimed = Arc::new(Notify::new());
    let doomed = h.scheduler(
        h.store.clone(),
        Arc::new(DiesBeforeSending {
            claimed: claimed.clone(),
        }),
    );
    let (_, doomed_task) = h.spawn(doomed);
    h.clock.advance(interval());
    tokio::time::timeout(DEADLINE, claimed.notified())
        .await
        .expect("the reminder was claimed");
    crash(doomed_task).await;

    let (mut progress, _task) = h.spawn(h.scheduler(h.store.clone(), h.smtp_mailer()));
    h.advance(
        chrono::Duration::from_std(config().lease).unwrap(),
        &mut [&mut progress],
    )
    .await;
    assert_eq!(h.mail_counts(), BTreeMap::from([(mid("A-2", 1), 1)]));
    assert_eq!(h.store.get("A-2").await.unwrap().unwrap().attempts, 1);
    h.stop().await;
}
