//! The SMTP server goes away for a while: sends fail without consuming attempts, are retried
//! every tick, and the reminder goes out (once) when the server is back.

use crate::reminders_support;

use enrollstream_ports::reminders::ReminderStore;
use enrollstream_ports::Clock;
use reminders_support::*;
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_down_for_a_while_then_back() {
    let mut h = Harness::start().await;
    let (mut progress, _task) = h.spawn(h.scheduler(h.store.clone(), h.smtp_mailer()));
    h.submit("A-1", true).await;

    h.smtp.stop();
    h.advance(interval(), &mut [&mut progress]).await;
    let tick = chrono::Duration::from_std(config().tick).unwrap();
    // Down for several ticks: every one retries, none consumes an attempt.
    for _ in 0..3 {
        h.advance(tick, &mut [&mut progress]).await;
    }
    let r = h.store.get("A-1").await.unwrap().unwrap();
    assert_eq!(r.attempts, 0);
    assert_eq!(r.failures, 4, "one failed send per tick: {r:#?}");
    assert!(
        r.last_error.as_deref().unwrap().starts_with("connect"),
        "{r:#?}"
    );
    assert_eq!(progress.borrow().failed, 4);

    h.smtp.start_again().expect("SMTP server back");
    h.advance(tick, &mut [&mut progress]).await;
    assert_eq!(h.mail_counts(), BTreeMap::from([(mid("A-1", 1), 1)]));
    let r = h.store.get("A-1").await.unwrap().unwrap();
    assert_eq!((r.attempts, r.failures, r.last_error), (1, 0, None));
    // The schedule counts from the send that succeeded.
    assert_eq!(r.next_due_at, Some(h.clock.now() + interval()));

    h.advance(interval(), &mut [&mut progress]).await;
    assert_eq!(
        h.mail_counts(),
        BTreeMap::from([(mid("A-1", 1), 1), (mid("A-1", 2), 1)])
    );
    h.stop().await;
}
