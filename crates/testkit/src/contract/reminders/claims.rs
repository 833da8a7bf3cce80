//! Claims, attempts, leases and durability of the reminder store contract: who may send which
//! reminder when, fenced against a second scheduler and a crash.

use super::*;

async fn claim_one(store: &dyn ReminderStore, now: DateTime<Utc>, owner: &str) -> ClaimedReminder {
    let mut claimed = claim(store, now, owner, 10).await;
    assert_eq!(claimed.len(), 1, "exactly one reminder due at {now}");
    claimed.remove(0)
}

pub async fn claims_only_due_reminders_and_leases_them(store: &dyn ReminderStore) {
    submitted(store, "A-1").await;
    assert!(
        claim(store, hours(23), "s1", 10).await.is_empty(),
        "not due yet"
    );
    let c = claim_one(store, hours(24), "s1").await;
    assert_eq!(c.owner, "s1");
    assert_eq!(c.lease_until, hours(24) + Duration::minutes(2));
    assert_eq!(
        c.reminder.next_step(&policy()),
        Some(Step::Send { attempt: 1 })
    );
    assert!(
        claim(store, hours(24) + Duration::minutes(1), "s2", 10)
            .await
            .is_empty(),
        "a live lease hides the reminder from other schedulers"
    );
    assert_eq!(
        store.next_wake().await.unwrap(),
        Some(c.lease_until),
        "a leased reminder wakes when its lease ends"
    );
    assert_eq!(
        store.due_backlog(hours(24)).await.unwrap(),
        1,
        "leased still counts"
    );
    // The holder crashed: once the lease ran out another scheduler takes the same attempt.
    let taken = claim_one(store, c.lease_until, "s2").await;
    assert_eq!(taken.owner, "s2");
    assert_eq!(
        taken.reminder.next_step(&policy()),
        Some(Step::Send { attempt: 1 })
    );
    assert!(matches!(
        store
            .record_attempt(&c, 1, c.lease_until, None, &policy())
            .await
            .unwrap(),
        Fenced::Stale(_)
    ));
    assert_eq!(
        store
            .record_attempt(&taken, 1, c.lease_until, None, &policy())
            .await
            .unwrap(),
        Fenced::Applied
    );
}

pub async fn claims_respect_limit_and_due_order(store: &dyn ReminderStore) {
    submitted_at(store, &[("A-3", 2), ("A-1", 0), ("A-2", 1)]).await;
    assert_eq!(store.next_wake().await.unwrap(), Some(hours(24)));
    let first = claim(store, hours(48), "s1", 2).await;
    let ids: Vec<&str> = first
        .iter()
        .map(|c| c.reminder.application_id.as_str())
        .collect();
    assert_eq!(ids, ["A-1", "A-2"]);
    let rest = claim(store, hours(48), "s1", 2).await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].reminder.application_id, "A-3");
    assert!(claim(store, hours(48), "s1", 0).await.is_empty());
}

pub async fn attempts_are_fenced_on_owner_and_number(store: &dyn ReminderStore) {
    submitted(store, "A-1").await;
    let c = claim_one(store, hours(24), "s1").await;
    let mut thief = c.clone();
    thief.owner = "s2".into();
    let p = policy();
    assert!(matches!(
        store
            .record_attempt(&thief, 1, hours(24), None, &p)
            .await
            .unwrap(),
        Fenced::Stale(_)
    ));
    assert!(matches!(
        store
            .record_attempt(&c, 2, hours(24), None, &p)
            .await
            .unwrap(),
        Fenced::Stale(_)
    ));
    assert_eq!(
        store
            .record_attempt(&c, 1, hours(24), None, &p)
            .await
            .unwrap(),
        Fenced::Applied
    );
    assert!(
        matches!(
            store
                .record_attempt(&c, 1, hours(24), None, &p)
                .await
                .unwrap(),
            Fenced::Stale(_)
        ),
        "recording ends the lease, so a repeat is refused"
    );
    let r = store.get("A-1").await.unwrap().unwrap();
    assert_eq!(r.attempts, 1);
    assert_eq!(r.last_sent_at, Some(hours(24)));
    assert_eq!(r.next_due_at, Some(hours(48)));
    let next = claim_one(store, hours(48), "s2").await;
    assert_eq!(next.reminder.next_step(&p), Some(Step::Send { attempt: 2 }));
}

pub async fn release_keeps_the_attempt_and_delays(store: &dyn ReminderStore) {
    submitted(store, "A-1").await;
    let c = claim_one(store, hours(24), "s1").await;
    let retry_at = hours(24) + Duration::seconds(30);
    assert_eq!(
        store
            .release(&c, retry_at, Some("connection refused"), hours(24))
            .await
            .unwrap(),
        Fenced::Applied
    );
    let r = store.get("A-1").await.unwrap().unwrap();
    assert_eq!((r.attempts, r.failures), (0, 1));
    assert_eq!(r.last_error.as_deref(), Some("connection refused"));
    assert_eq!(r.next_due_at, Some(hours(24)), "still due");
    assert!(claim(store, retry_at - Duration::seconds(1), "s1", 10)
        .await
        .is_empty());
    assert_eq!(store.next_wake().await.unwrap(), Some(retry_at));
    let again = claim_one(store, retry_at, "s2").await;
    assert_eq!(
        again.reminder.next_step(&policy()),
        Some(Step::Send { attempt: 1 })
    );
    // A release by the old holder changes nothing.
    assert!(matches!(
        store
            .release(&c, retry_at, Some("late"), retry_at)
            .await
            .unwrap(),
        Fenced::Stale(_)
    ));
    // Released without a failure (the holder ran out of lease before sending).
    assert_eq!(
        store
            .release(&again, retry_at, None, retry_at)
            .await
            .unwrap(),
        Fenced::Applied
    );
    let r = store.get("A-1").await.unwrap().unwrap();
    assert_eq!((r.attempts, r.failures), (0, 1));
}

pub async fn exhaustion_after_the_last_interval(store: &dyn ReminderStore) {
    submitted(store, "A-1").await;
    let p = policy();
    for attempt in 1..=p.max_attempts {
        let now = hours(24 * attempt as i64);
        let c = claim_one(store, now, "s1").await;
        assert_eq!(c.reminder.next_step(&p), Some(Step::Send { attempt }));
        assert_eq!(
            store
                .record_attempt(&c, attempt, now, None, &p)
                .await
                .unwrap(),
            Fenced::Applied
        );
    }
    let end = hours(24 * 6);
    assert!(claim(store, end - Duration::seconds(1), "s1", 10)
        .await
        .is_empty());
    let c = claim_one(store, end, "s1").await;
    assert_eq!(c.reminder.next_step(&p), Some(Step::Exhaust));
    let mut thief = c.clone();
    thief.owner = "s2".into();
    assert!(matches!(
        store.mark_exhausted(&thief, end, &p).await.unwrap(),
        Fenced::Stale(_)
    ));
    assert_eq!(
        store.mark_exhausted(&c, end, &p).await.unwrap(),
        Fenced::Applied
    );
    let r = store.get("A-1").await.unwrap().unwrap();
    assert_eq!(r.status, ReminderStatus::Exhausted);
    assert_eq!((r.attempts, r.next_due_at), (5, None));
    assert!(claim(store, hours(24 * 30), "s1", 10).await.is_empty());
    // The announcement read back by the consumer is folded in without effect.
    let announced = ApplicationEvent::RemindersExhausted(SignatureRemindersExhausted {
        application_id: "A-1".into(),
        attempts: 5,
        broker_email: "broker@acme.test".into(),
    });
    apply(store, "A-1-exhausted", &announced, end).await;
    assert_eq!(
        store.get("A-1").await.unwrap().unwrap().exhausted_at,
        Some(end)
    );
}

pub async fn signature_during_a_claim_stops_after_the_record(store: &dyn ReminderStore) {
    submitted(store, "A-1").await;
    let c = claim_one(store, hours(24), "s1").await;
    apply(store, "A-1-sig", &signature("A-1"), hours(24)).await;
    assert_eq!(
        store
            .record_attempt(&c, 1, hours(24), None, &policy())
            .await
            .unwrap(),
        Fenced::Applied,
        "the email went out; it is counted"
    );
    let r = store.get("A-1").await.unwrap().unwrap();
    assert_eq!(
        (r.status, r.attempts, r.next_due_at),
        (ReminderStatus::Signed, 1, None)
    );
    assert!(claim(store, hours(24 * 30), "s1", 10).await.is_empty());
}

pub async fn events_keep_the_lease(store: &dyn ReminderStore) {
    submitted(store, "A-1").await;
    let c = claim_one(store, hours(24), "s1").await;
    apply(store, "A-1-late-start", &started("A-1"), hours(24)).await;
    assert!(
        claim(store, hours(24), "s2", 10).await.is_empty(),
        "applying an event must not drop a live lease"
    );
    assert_eq!(
        store
            .record_attempt(&c, 1, hours(24), None, &policy())
            .await
            .unwrap(),
        Fenced::Applied
    );
}

pub async fn refused_attempt_is_consumed(store: &dyn ReminderStore) {
    submitted(store, "A-1").await;
    let c = claim_one(store, hours(24), "s1").await;
    assert_eq!(
        store
            .record_attempt(&c, 1, hours(24), Some("550 no such user"), &policy())
            .await
            .unwrap(),
        Fenced::Applied
    );
    let r = store.get("A-1").await.unwrap().unwrap();
    assert_eq!(r.attempts, 1);
    assert_eq!(r.last_sent_at, None);
    assert_eq!(r.last_error.as_deref(), Some("550 no such user"));
}

pub async fn due_backlog_counts_due_reminders(store: &dyn ReminderStore) {
    assert_eq!(store.due_backlog(hours(100)).await.unwrap(), 0);
    submitted_at(store, &[("A-1", 0), ("A-2", 10), ("A-3", 30)]).await;
    assert_eq!(store.due_backlog(hours(23)).await.unwrap(), 0);
    assert_eq!(store.due_backlog(hours(24)).await.unwrap(), 1);
    assert_eq!(store.due_backlog(hours(40)).await.unwrap(), 2);
    assert_eq!(store.due_backlog(hours(100)).await.unwrap(), 3);
}

pub async fn check_and_name(store: &dyn ReminderStore) {
    store.check().await.expect("check");
    assert!(!store.name().is_empty());
}

/// Two handles on the same data claim concurrently: every due reminder is claimed exactly once.
pub async fn concurrent_claims_never_overlap(a: &dyn ReminderStore, b: &dyn ReminderStore) {
    const REMINDERS: usize = 40;
    for i in 0..REMINDERS {
        let app = format!("C-{i:02}");
        apply(a, &format!("{app}-sub"), &broker_submission(&app), hours(0)).await;
    }
    let now = hours(24);
    let (x, y, z) = futures::join!(
        claim_all(a, now, "a1"),
        claim_all(b, now, "b1"),
        claim_all(a, now, "a2")
    );
    let all: Vec<&String> = x.iter().chain(&y).chain(&z).collect();
    let unique: HashSet<&String> = all.iter().copied().collect();
    assert_eq!(all.len(), REMINDERS, "claimed {} times", all.len());
    assert_eq!(unique.len(), REMINDERS);
}

/// Claims in small batches until nothing is due; the ids claimed.
async fn claim_all(store: &dyn ReminderStore, now: DateTime<Utc>, owner: &str) -> Vec<String> {
    let mut mine = Vec::new();
    loop {
        let batch = claim(store, now, owner, 3).await;
        if batch.is_empty() {
            return mine;
        }
        mine.extend(batch.into_iter().map(|c| c.reminder.application_id));
        // Let the other claimers in between batches, as separate processes would.
        tokio::task::yield_now().await;
    }
}

/// What `durable_read_back` checks after the adapter reopened its storage.
pub async fn durable_write(store: &dyn ReminderStore) -> ClaimedReminder {
    submitted(store, "D-1").await;
    let c = claim_one(store, hours(24), "s1").await;
    assert_eq!(
        store
            .record_attempt(&c, 1, hours(24), None, &policy())
            .await
            .unwrap(),
        Fenced::Applied
    );
    claim_one(store, hours(48), "s1").await
}

pub async fn durable_read_back(store: &dyn ReminderStore, leased: &ClaimedReminder) {
    let r = store.get("D-1").await.unwrap().expect("survives a reopen");
    assert_eq!((r.attempts, r.next_due_at), (1, Some(hours(48))));
    assert!(
        claim(store, hours(48), "s2", 10).await.is_empty(),
        "the lease survives too"
    );
    assert_eq!(
        store
            .record_attempt(leased, 2, hours(48), None, &policy())
            .await
            .unwrap(),
        Fenced::Applied
    );
}
