//! Two schedulers, each with its own handle on the reminder store (as two processes would
//! open the same file), share the work and never send the same attempt twice.

use crate::reminders_support;

use enrollstream_domain::reminder::ReminderStatus;
use enrollstream_ports::reminders::ReminderStore;
use enrollstream_sqlite::reminders::SqliteReminderStore;
use reminders_support::*;
use std::collections::BTreeMap;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_never_send_the_same_attempt_twice() {
    const APPLICATIONS: usize = 12;
    let h = Harness::start().await;
    let apps: Vec<String> = (0..APPLICATIONS).map(|i| format!("A-{i:02}")).collect();
    for app in &apps {
        h.submit(app, true).await;
    }
    let second_handle: Arc<dyn ReminderStore> =
        Arc::new(SqliteReminderStore::open(h.dir.path()).expect("a second store handle"));
    let first = h.scheduler(h.store.clone(), h.smtp_mailer());
    let second = h.scheduler(second_handle, h.smtp_mailer());
    assert_ne!(first.owner(), second.owner());
    let (mut p1, _t1) = h.spawn(first);
    let (mut p2, _t2) = h.spawn(second);

    for _ in 1..=6 {
        h.advance(interval(), &mut [&mut p1, &mut p2]).await;
    }
    let expected: BTreeMap<String, usize> = apps
        .iter()
        .flat_map(|app| (1..=5).map(move |a| (mid(app, a), 1)))
        .collect();
    assert_eq!(h.mail_counts(), expected);
    assert_eq!(h.smtp.messages().len(), APPLICATIONS * 5);
    let (s1, s2) = (p1.borrow().clone(), p2.borrow().clone());
    assert_eq!(
        s1.sent + s2.sent,
        (APPLICATIONS * 5) as u64,
        "{s1:?} {s2:?}"
    );
    assert_eq!(
        s1.exhausted + s2.exhausted,
        APPLICATIONS as u64,
        "{s1:?} {s2:?}"
    );
    let mut exhausted: Vec<String> = h
        .exhaustion_events()
        .await
        .into_iter()
        .map(|(app, _)| app)
        .collect();
    exhausted.sort();
    assert_eq!(exhausted, apps, "one announcement per application");
    for app in &apps {
        let r = h.store.get(app).await.unwrap().unwrap();
        assert_eq!(
            (r.status, r.attempts),
            (ReminderStatus::Exhausted, 5),
            "{app}"
        );
    }
    h.stop().await;
}
