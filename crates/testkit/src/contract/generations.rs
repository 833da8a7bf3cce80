//! The contract of the read model's generations (`Store::generations`): a build of the next
//! generation beside the active one, its recorded progress, the pause of live applies and the
//! atomic switch. Each case takes a fresh store of its own that has generations.

use chrono::Utc;
use enrollstream_ports::{
    ApplyOutcome, CommitPosition, Generations, Store, StoreError, SwitchError, SWITCH_LEASE,
};

use super::store::fixtures::{application_history, new_quote};

fn ok<T>(what: &str, result: Result<T, StoreError>) -> T {
    result.unwrap_or_else(|e| panic!("{what} failed: {e}"))
}

fn generations(store: &dyn Store) -> &dyn Generations {
    store
        .generations()
        .expect("this suite runs on stores that keep generations")
}

fn position(topic: &str, partition: i32, next_offset: i64) -> CommitPosition {
    CommitPosition {
        topic: topic.into(),
        partition,
        next_offset,
    }
}

async fn pause(store: &dyn Store, owner: &str) {
    let until = Utc::now() + chrono::Duration::seconds(30);
    assert_eq!(
        ok(
            "take the switch lease",
            store
                .take_lease(SWITCH_LEASE, owner, until, Utc::now())
                .await
        ),
        None,
        "the switch lease is free"
    );
}

/// A build is written beside the active generation without touching it or the outbox; the
/// switch refuses until the build holds every event of the active generation and the switch
/// lease is held; then reads, the log and applies are the build's.
pub async fn a_build_switches_in_once_it_holds_every_event(store: &dyn Store) {
    let gens = generations(store);
    assert_eq!(ok("active", gens.active_generation().await), 1);
    let history = application_history();
    let outcomes = ok("apply live", store.apply(&history).await);
    assert!(outcomes.iter().all(|o| *o == ApplyOutcome::Applied));
    let pending_before = ok("pending", store.pending_outbox(1000).await).len();
    assert!(pending_before > 0, "the live history announces something");

    let build = ok("open_shadow", gens.open_shadow(false).await);
    assert_eq!(build.generation, 2, "the build is the next generation");
    assert!(build.applied.is_empty(), "a new build has applied nothing");
    let shadow = gens.shadow();
    let e = &history[0].event;
    assert_eq!(
        ok(
            "shadow entity",
            shadow.entity(e.entity_kind, &e.entity_id).await
        ),
        None,
        "a new build is empty"
    );
    assert_eq!(
        ok("missing", gens.missing_from_shadow(100).await).len(),
        history.len(),
        "every live event is missing from a new build"
    );

    let outcomes = ok("apply to the build", shadow.apply(&history).await);
    assert!(outcomes.iter().all(|o| *o == ApplyOutcome::Applied));
    assert_eq!(
        ok("pending", store.pending_outbox(1000).await).len(),
        pending_before,
        "a build records no outbox message, even for a change that is not marked replay"
    );
    assert_eq!(
        ok(
            "shadow entity",
            shadow.entity(e.entity_kind, &e.entity_id).await
        )
        .map(|r| r.version),
        Some(history.last().unwrap().event.version),
        "the build reads back what it applied"
    );
    assert!(ok("missing", gens.missing_from_shadow(100).await).is_empty());

    // The live generation moves on meanwhile.
    let late = new_quote();
    let outcomes = ok("apply live", store.apply(std::slice::from_ref(&late)).await);
    assert_eq!(outcomes, [ApplyOutcome::Applied]);
    assert_eq!(
        ok(
            "live quote",
            store
                .entity(late.event.entity_kind, &late.event.entity_id)
                .await
        )
        .map(|r| r.version),
        Some(1),
        "reads of the active generation answer while a build runs"
    );

    let owner = "rebuild-contract";
    let held_past = Utc::now();
    assert!(
        matches!(
            gens.switch_to_shadow(&build.build_id, owner, held_past)
                .await,
            Err(SwitchError::NotPaused)
        ),
        "no switch without the switch lease"
    );
    pause(store, owner).await;
    match gens
        .switch_to_shadow(&build.build_id, owner, held_past)
        .await
    {
        Err(SwitchError::Missing(sources)) => assert_eq!(
            sources,
            [late.event.source.clone().unwrap()],
            "the switch names the live event the build lacks"
        ),
        other => panic!("a build lacking a live event must not switch in: {other:?}"),
    }
    assert_eq!(ok("active", gens.active_generation().await), 1);
    ok(
        "apply to the build",
        shadow.apply(std::slice::from_ref(&late)).await,
    );

    let active = gens
        .switch_to_shadow(&build.build_id, owner, held_past)
        .await
        .unwrap_or_else(|e| panic!("a complete build under the lease switches in: {e}"));
    assert_eq!(active, 2);
    assert_eq!(ok("active", gens.active_generation().await), 2);
    assert_eq!(
        ok("leases", store.leases(SWITCH_LEASE, Utc::now()).await),
        [],
        "the switch releases the switch lease"
    );
    ok("drop_retired", gens.drop_retired().await);
    ok("drop_retired again", gens.drop_retired().await);

    let log = ok(
        "event_log",
        store.event_log(e.entity_kind, &e.entity_id).await,
    );
    assert_eq!(
        log.len(),
        history.len(),
        "the switched-in log is the build's"
    );
    let again = ok("apply live", store.apply(&history).await);
    assert!(
        again.iter().all(|o| *o == ApplyOutcome::AlreadyApplied),
        "events the build holds are fenced for the live projector: {again:?}"
    );
    let next = new_quote();
    ok("apply live", store.apply(std::slice::from_ref(&next)).await);
    assert_eq!(
        ok("pending", store.pending_outbox(1000).await).len(),
        pending_before + late.outbox.len() + next.outbox.len(),
        "live applies after the switch announce as before, and nothing else was announced"
    );
    let build = ok("open_shadow", gens.open_shadow(false).await);
    assert_eq!(
        build.generation, 3,
        "the next build follows the new active generation"
    );
}

/// While the switch lease is held, applies to the active generation refuse (and write
/// nothing); applies to the build go on; an expired or released lease pauses nothing.
pub async fn live_applies_wait_while_a_switch_is_held(store: &dyn Store) {
    let gens = generations(store);
    ok("open_shadow", gens.open_shadow(false).await);
    pause(store, "rebuild-pausing").await;
    let quote = new_quote();
    match store.apply(std::slice::from_ref(&quote)).await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("a live apply during a switch must wait (Unavailable), got {other:?}"),
    }
    assert!(
        ok(
            "applied",
            store
                .applied(std::slice::from_ref(&quote.event.event_id))
                .await
        )
        .is_empty(),
        "a refused live apply wrote nothing"
    );
    let outcomes = ok(
        "apply to the build",
        gens.shadow().apply(std::slice::from_ref(&quote)).await,
    );
    assert_eq!(outcomes, [ApplyOutcome::Applied], "the build is not paused");
    ok(
        "release",
        store.release_lease(SWITCH_LEASE, "rebuild-pausing").await,
    );
    let outcomes = ok(
        "apply live",
        store.apply(std::slice::from_ref(&quote)).await,
    );
    assert_eq!(
        outcomes,
        [ApplyOutcome::Applied],
        "released: live applies go on"
    );

    let past = Utc::now() - chrono::Duration::seconds(1);
    ok(
        "take an expired lease",
        store
            .take_lease(SWITCH_LEASE, "rebuild-gone", past, past)
            .await,
    );
    let other = new_quote();
    let outcomes = ok(
        "apply live",
        store.apply(std::slice::from_ref(&other)).await,
    );
    assert_eq!(
        outcomes,
        [ApplyOutcome::Applied],
        "an expired lease pauses nothing"
    );
}

/// A build records its applied offsets, which never move back; opening again resumes the
/// same build with them; a fresh open starts a new, empty build, and the old one's progress
/// is refused.
pub async fn an_interrupted_build_resumes_where_it_was(store: &dyn Store) {
    let gens = generations(store);
    let build = ok("open_shadow", gens.open_shadow(false).await);
    let shadow = gens.shadow();
    let history = application_history();
    ok("apply to the build", shadow.apply(&history).await);
    ok(
        "record",
        gens.record_shadow_progress(
            &build.build_id,
            &[
                position("enrollment-events", 0, 5),
                position("quote-events", 1, 2),
            ],
        )
        .await,
    );
    ok(
        "record",
        gens.record_shadow_progress(&build.build_id, &[position("enrollment-events", 0, 3)])
            .await,
    );
    let resumed = ok("open_shadow", gens.open_shadow(false).await);
    assert_eq!(
        resumed.build_id, build.build_id,
        "the build in progress resumes"
    );
    assert_eq!(
        resumed.applied,
        [
            position("enrollment-events", 0, 5),
            position("quote-events", 1, 2)
        ],
        "with the offsets it applied, never moved back"
    );
    let e = &history[0].event;
    assert!(
        ok(
            "shadow entity",
            gens.shadow().entity(e.entity_kind, &e.entity_id).await
        )
        .is_some(),
        "and with what it applied"
    );

    let fresh = ok("open_shadow fresh", gens.open_shadow(true).await);
    assert_ne!(fresh.build_id, build.build_id, "a fresh build is a new one");
    assert!(
        fresh.applied.is_empty(),
        "a fresh build has applied nothing"
    );
    assert_eq!(
        ok(
            "shadow entity",
            gens.shadow().entity(e.entity_kind, &e.entity_id).await
        ),
        None,
        "a fresh build starts empty"
    );
    assert!(
        gens.record_shadow_progress(&build.build_id, &[position("enrollment-events", 0, 9)])
            .await
            .is_err(),
        "a replaced build cannot record progress"
    );
}

/// A live apply through a second handle on the same store, which read the read model before a
/// switch, lands after it: the switched-in generation holds it (read through either handle),
/// each message is pending exactly once, and a redelivery announces nothing. A store whose
/// switch shuts applies out (one transaction) passes by applying to the new generation; one
/// without transactions must follow the switch (`other` should keep what it read for longer
/// than the case takes).
pub async fn an_apply_that_lands_after_a_switch_follows_it(store: &dyn Store, other: &dyn Store) {
    let gens = generations(store);
    let warm = new_quote();
    let outcomes = ok("apply live", other.apply(std::slice::from_ref(&warm)).await);
    assert_eq!(outcomes, [ApplyOutcome::Applied]);
    let build = ok("open_shadow", gens.open_shadow(false).await);
    ok(
        "apply to the build",
        gens.shadow().apply(std::slice::from_ref(&warm)).await,
    );
    let owner = "rebuild-racing";
    pause(store, owner).await;
    let active = gens
        .switch_to_shadow(&build.build_id, owner, Utc::now())
        .await
        .unwrap_or_else(|e| panic!("a complete build under the lease switches in: {e}"));
    assert_eq!(active, 2);

    let late = new_quote();
    let outcomes = ok("apply live", other.apply(std::slice::from_ref(&late)).await);
    assert_eq!(outcomes, [ApplyOutcome::Applied], "the late apply lands");
    let e = &late.event;
    for (name, handle) in [("switching", store), ("other", other)] {
        assert_eq!(
            ok("entity", handle.entity(e.entity_kind, &e.entity_id).await).map(|r| r.version),
            Some(1),
            "the switched-in generation holds the late apply, read through the {name} handle"
        );
    }
    let pending = ok("pending", store.pending_outbox(1000).await);
    let mut ids: Vec<&str> = pending.iter().map(|m| m.id.as_str()).collect();
    let mut expected: Vec<&str> = warm
        .outbox
        .iter()
        .chain(&late.outbox)
        .map(|m| m.id.as_str())
        .collect();
    ids.sort_unstable();
    expected.sort_unstable();
    assert_eq!(ids, expected, "each message pending exactly once");
    let all: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    ok("mark", store.mark_published(&all).await);
    assert_eq!(ok("pending", other.pending_outbox(1000).await), []);
    for handle in [store, other] {
        let again = ok("redeliver", handle.apply(std::slice::from_ref(&late)).await);
        assert_eq!(again, [ApplyOutcome::AlreadyApplied]);
    }
    assert_eq!(
        ok("pending", store.pending_outbox(1000).await),
        [],
        "a redelivery announces nothing again"
    );
}
