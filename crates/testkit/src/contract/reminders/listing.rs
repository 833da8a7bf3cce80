//! The schedule's listing (`ReminderStore::list`): every reminder once, in application id
//! order, filtered by status, a page at a time, with the lease beside the state.

use chrono::{DateTime, Duration, Utc};
use enrollstream_domain::reminder::ReminderStatus;
use enrollstream_ports::reminders::{
    ClaimedReminder, ReminderQuery, ReminderStore, ScheduledReminder,
};

use super::{apply, hours, member_submission, policy, signature, started, submitted};

async fn list(store: &dyn ReminderStore, query: ReminderQuery) -> Vec<ScheduledReminder> {
    store
        .list(&query)
        .await
        .unwrap_or_else(|e| panic!("list({query:?}) failed: {e}"))
}

async fn ids(store: &dyn ReminderStore, query: ReminderQuery) -> Vec<String> {
    list(store, query)
        .await
        .into_iter()
        .map(|s| s.reminder.application_id)
        .collect()
}

fn everything() -> ReminderQuery {
    ReminderQuery {
        status: None,
        after: None,
        limit: 100,
    }
}

pub async fn lists_by_status_in_application_order(store: &dyn ReminderStore) {
    // Created out of order: the listing's order is the ids', not the writes'.
    for app in ["A-3", "A-1", "A-2"] {
        submitted(store, app).await;
    }
    submitted(store, "S-1").await;
    apply(store, "S-1-sig", &signature("S-1"), hours(1)).await;
    apply(store, "M-1-started", &started("M-1"), hours(0)).await;
    apply(store, "M-1-sub", &member_submission("M-1"), hours(0)).await;

    assert_eq!(
        ids(store, everything()).await,
        ["A-1", "A-2", "A-3", "M-1", "S-1"],
        "every reminder once, in application id order"
    );
    let awaiting = ReminderQuery {
        status: Some(ReminderStatus::AwaitingSignature),
        ..everything()
    };
    assert_eq!(ids(store, awaiting).await, ["A-1", "A-2", "A-3"]);
    let signed = ReminderQuery {
        status: Some(ReminderStatus::Signed),
        ..everything()
    };
    let signed = list(store, signed).await;
    assert_eq!(signed.len(), 1);
    assert_eq!(signed[0].reminder.application_id, "S-1");
    assert_eq!(signed[0].reminder.status, ReminderStatus::Signed);
    let exhausted = ReminderQuery {
        status: Some(ReminderStatus::Exhausted),
        ..everything()
    };
    assert!(ids(store, exhausted).await.is_empty());
    let none = ReminderQuery {
        limit: 0,
        ..everything()
    };
    assert!(ids(store, none).await.is_empty(), "limit 0 lists nothing");
}

pub async fn pages_follow_the_application_id_cursor(store: &dyn ReminderStore) {
    for i in [4, 0, 2, 1, 3] {
        submitted(store, &format!("P-{i}")).await;
    }
    submitted(store, "Q-0").await;
    apply(store, "Q-0-sig", &signature("Q-0"), hours(1)).await;
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = ids(
            store,
            ReminderQuery {
                status: Some(ReminderStatus::AwaitingSignature),
                after: after.clone(),
                limit: 2,
            },
        )
        .await;
        assert!(page.len() <= 2, "a page holds at most `limit` reminders");
        let Some(last) = page.last().cloned() else {
            break;
        };
        seen.extend(page);
        after = Some(last);
    }
    assert_eq!(
        seen,
        ["P-0", "P-1", "P-2", "P-3", "P-4"],
        "the pages together are every awaiting reminder once, in order"
    );
    let after_all = ReminderQuery {
        after: Some("P-4".into()),
        ..everything()
    };
    assert_eq!(ids(store, after_all).await, ["Q-0"]);
}

pub async fn listing_shows_leases_attempts_and_backoff(store: &dyn ReminderStore) {
    submitted(store, "L-1").await;
    submitted(store, "L-2").await;
    let one = |listed: Vec<ScheduledReminder>, app: &str| {
        listed
            .into_iter()
            .find(|s| s.reminder.application_id == app)
            .unwrap_or_else(|| panic!("{app} is listed"))
    };
    let idle = one(list(store, everything()).await, "L-1");
    assert_eq!((idle.lease_owner, idle.lease_until), (None, None));
    assert_eq!(idle.reminder.next_due_at, Some(hours(24)));

    // Both due at hour 24: the claim takes the earliest due, then the lower id.
    let claim = claim_one_of(store, hours(24), "s1", "L-1").await;
    let leased = one(list(store, everything()).await, "L-1");
    assert_eq!(leased.lease_owner.as_deref(), Some("s1"));
    assert_eq!(leased.lease_until, Some(claim.lease_until));

    let retry_at = hours(24) + Duration::minutes(5);
    store
        .release(&claim, retry_at, Some("connection refused"), hours(24))
        .await
        .expect("release");
    let backoff = one(list(store, everything()).await, "L-1");
    assert_eq!(backoff.lease_owner, None, "released: nobody holds it");
    assert_eq!(backoff.lease_until, Some(retry_at), "not claimable before");
    assert_eq!(backoff.reminder.failures, 1);
    assert_eq!(
        backoff.reminder.last_error.as_deref(),
        Some("connection refused")
    );

    let again = claim_one_of(store, retry_at, "s2", "L-1").await;
    store
        .record_attempt(&again, 1, retry_at, None, &policy())
        .await
        .expect("record");
    let sent = one(list(store, everything()).await, "L-1");
    assert_eq!((sent.lease_owner, sent.lease_until), (None, None));
    assert_eq!(sent.reminder.attempts, 1);
    assert_eq!(sent.reminder.last_sent_at, Some(retry_at));
    assert_eq!(
        sent.reminder.next_due_at,
        Some(retry_at + policy().interval)
    );
}

/// Claims at `now` with room for one (the earliest due, then the lowest id): `app`.
async fn claim_one_of(
    store: &dyn ReminderStore,
    now: DateTime<Utc>,
    owner: &str,
    app: &str,
) -> ClaimedReminder {
    let mut claimed = store
        .claim_due(now, now + Duration::minutes(2), owner, 1)
        .await
        .expect("claim_due");
    assert_eq!(claimed.len(), 1, "one claimed");
    let claim = claimed.remove(0);
    assert_eq!(claim.reminder.application_id, app);
    claim
}
