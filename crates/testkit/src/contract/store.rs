//! The store contract: what every `Store` adapter must do, one public async function per case.
//!
//! Each case takes a fresh, empty store of its own (a new SQLite directory, a new MongoDB
//! database): cases count the whole outbox and one resets the read model. Each panics with the
//! rule it saw broken. Durability across a restart is a pair, `durable_write` then
//! `durable_read_back` on the store reopened by the caller.

pub mod fixtures;

use enrollstream_ports::{
    codec, ApplyOutcome, Change, IdempotencyRecord, Reservation, Store, StoreError,
    StoredOutboxMessage,
};
use std::collections::HashSet;
use std::time::Duration;

use fixtures::{application_history, idempotency_key, idempotency_record, new_quote};

/// Long enough for any healthy store to commit, bounded so a broken wake-up fails the case
/// instead of hanging it. Never reached when the adapter works.
const PATIENCE: Duration = Duration::from_secs(30);

fn ok<T>(what: &str, result: Result<T, StoreError>) -> T {
    result.unwrap_or_else(|e| panic!("{what} failed: {e}"))
}

async fn apply(store: &dyn Store, changes: &[Change]) -> Vec<ApplyOutcome> {
    let outcomes = ok("apply", store.apply(changes).await);
    assert_eq!(
        outcomes.len(),
        changes.len(),
        "apply must answer one outcome per change"
    );
    outcomes
}

async fn apply_all(store: &dyn Store, changes: &[Change]) {
    let outcomes = apply(store, changes).await;
    assert!(
        outcomes.iter().all(|o| *o == ApplyOutcome::Applied),
        "fresh changes must all apply, got {outcomes:?}"
    );
}

/// The whole pending outbox (cases run on their own store, so this is all of theirs).
async fn pending(store: &dyn Store) -> Vec<StoredOutboxMessage> {
    ok("pending_outbox", store.pending_outbox(10_000).await)
}

fn outbox_ids(changes: &[&Change]) -> Vec<String> {
    changes
        .iter()
        .flat_map(|c| c.outbox.iter().map(|m| m.id.clone()))
        .collect()
}

fn pending_ids(pending: &[StoredOutboxMessage]) -> Vec<String> {
    pending.iter().map(|m| m.id.clone()).collect()
}

/// The entity and its event log read back exactly as the changes wrote them.
async fn assert_read_back(store: &dyn Store, history: &[Change]) {
    let last = history.last().expect("a history has changes");
    let e = &last.event;
    let entity = ok("entity", store.entity(e.entity_kind, &e.entity_id).await)
        .unwrap_or_else(|| panic!("entity {} must exist after its change applied", e.entity_id));
    assert_eq!(entity.kind, e.entity_kind, "entity kind");
    assert_eq!(entity.id, e.entity_id, "entity id");
    assert_eq!(
        entity.version, e.version,
        "entity version is the last event's version"
    );
    assert_eq!(
        entity.status, last.status,
        "entity status is the last change's"
    );
    assert_eq!(
        entity.state, last.state,
        "entity state is the last change's"
    );
    assert_eq!(
        entity.last_event_id, e.event_id,
        "last_event_id is the last applied event"
    );
    assert_eq!(
        entity.updated_at, e.recorded_at,
        "updated_at is the last event's recorded_at"
    );
    let log = ok(
        "event_log",
        store.event_log(e.entity_kind, &e.entity_id).await,
    );
    let expected: Vec<_> = history.iter().map(|c| c.event.clone()).collect();
    assert_eq!(
        log, expected,
        "the event log holds each applied event once, oldest first"
    );
}

/// Apply changes one call at a time and read back the entity and its event log.
pub async fn apply_then_read_back(store: &dyn Store) {
    let history = application_history();
    let first = &history[0].event;
    assert_eq!(
        ok(
            "entity",
            store.entity(first.entity_kind, &first.entity_id).await
        ),
        None,
        "an entity without events does not exist"
    );
    assert!(
        ok(
            "event_log",
            store.event_log(first.entity_kind, &first.entity_id).await
        )
        .is_empty(),
        "an entity without events has an empty log"
    );
    for n in 1..=history.len() {
        apply_all(store, &history[n - 1..n]).await;
        assert_read_back(store, &history[..n]).await;
    }
}

/// A redelivered change (same event id) is AlreadyApplied and writes nothing, even when its
/// expected version is stale by then.
pub async fn redelivery_is_already_applied(store: &dyn Store) {
    let history = application_history();
    let (first, second) = (&history[0], &history[1]);
    apply_all(store, std::slice::from_ref(first)).await;
    assert_eq!(
        apply(store, std::slice::from_ref(first)).await,
        vec![ApplyOutcome::AlreadyApplied],
        "the same event applied twice"
    );
    assert_eq!(
        apply(store, &[first.clone(), second.clone()]).await,
        vec![ApplyOutcome::AlreadyApplied, ApplyOutcome::Applied],
        "a batch redelivering an applied event followed by a new one"
    );
    assert_eq!(
        apply(store, &[first.clone(), second.clone()]).await,
        vec![ApplyOutcome::AlreadyApplied, ApplyOutcome::AlreadyApplied],
        "an applied event is AlreadyApplied, never a Conflict, whatever its expected version"
    );
    assert_read_back(store, &history[..2]).await;
    let expected = outbox_ids(&[first, second]);
    assert_eq!(
        pending_ids(&pending(store).await),
        expected,
        "redeliveries must not duplicate outbox messages"
    );
    assert_eq!(
        ok("outbox_backlog", store.outbox_backlog().await),
        expected.len() as u64,
        "outbox backlog after redeliveries"
    );
}

/// A change whose expected version is not the entity's version is refused and writes nothing.
pub async fn version_conflict_writes_nothing(store: &dyn Store) {
    let history = application_history();
    apply_all(store, &history[..1]).await;

    let mut stale = history[1].clone();
    stale.expected_version = 3;
    let mut recreate = history[1].clone();
    recreate.expected_version = 0;
    let mut unknown = new_quote();
    unknown.expected_version = 2;
    assert_eq!(
        apply(store, &[stale.clone(), recreate.clone(), unknown.clone()]).await,
        vec![
            ApplyOutcome::Conflict { current_version: 1 },
            ApplyOutcome::Conflict { current_version: 1 },
            ApplyOutcome::Conflict { current_version: 0 },
        ],
        "changes expecting another version than the entity's"
    );
    assert_read_back(store, &history[..1]).await;
    let q = &unknown.event;
    assert_eq!(
        ok("entity", store.entity(q.entity_kind, &q.entity_id).await),
        None,
        "a refused first change must not create the entity"
    );
    assert!(
        ok(
            "event_log",
            store.event_log(q.entity_kind, &q.entity_id).await
        )
        .is_empty(),
        "a refused change must not reach the event log"
    );
    let refused: Vec<String> = vec![stale.event.event_id.clone(), unknown.event.event_id.clone()];
    assert!(
        ok("applied", store.applied(&refused).await).is_empty(),
        "refused events must not count as applied"
    );
    assert_eq!(
        pending_ids(&pending(store).await),
        outbox_ids(&[&history[0]]),
        "a refused change must not record outbox messages"
    );
}

/// Changes to one entity in one batch chain by version.
pub async fn batch_chains_versions(store: &dyn Store) {
    let history = application_history();
    apply_all(store, &history).await;
    assert_read_back(store, &history).await;
    let entity = ok(
        "entity",
        store
            .entity(history[0].event.entity_kind, &history[0].event.entity_id)
            .await,
    )
    .expect("entity exists");
    assert_eq!(
        entity.status, "APPROVED",
        "status after the whole lifecycle"
    );
    assert_eq!(entity.version, 4, "version after four events");
    let all: Vec<&Change> = history.iter().collect();
    assert_eq!(
        pending_ids(&pending(store).await),
        outbox_ids(&all),
        "a batch records its outbox messages in change order"
    );
}

/// A refused change in a batch does not stop the others.
pub async fn refused_change_does_not_block_batch(store: &dyn Store) {
    let a = application_history();
    let mut conflicting = new_quote();
    conflicting.expected_version = 7;
    let b = new_quote();
    let batch = vec![
        a[0].clone(),
        conflicting.clone(),
        b.clone(),
        a[0].clone(),
        a[1].clone(),
    ];
    assert_eq!(
        apply(store, &batch).await,
        vec![
            ApplyOutcome::Applied,
            ApplyOutcome::Conflict { current_version: 0 },
            ApplyOutcome::Applied,
            ApplyOutcome::AlreadyApplied,
            ApplyOutcome::Applied,
        ],
        "outcomes of a batch mixing good, conflicting and repeated changes"
    );
    assert_read_back(store, &a[..2]).await;
    assert_read_back(store, std::slice::from_ref(&b)).await;
    assert_eq!(
        pending_ids(&pending(store).await),
        outbox_ids(&[&a[0], &b, &a[1]]),
        "only the applied changes' outbox messages, in order"
    );
}

/// A change the store can never write (see `fixtures::unwritable_histories`) is refused on its
/// own, with nothing of it written, and so is the next change of its entity, computed on top of
/// it; the other changes of the call apply. A store that can write such a change applies it and
/// reads it back exactly.
pub async fn unwritable_change_is_refused_alone(store: &dyn Store) {
    for (what, unwritable) in fixtures::unwritable_histories() {
        let before = new_quote();
        let after = new_quote();
        let batch = vec![
            before.clone(),
            unwritable[0].clone(),
            after.clone(),
            unwritable[1].clone(),
        ];
        let outcomes = apply(store, &batch).await;
        assert_eq!(
            (&outcomes[0], &outcomes[2]),
            (&ApplyOutcome::Applied, &ApplyOutcome::Applied),
            "{what}: the other changes of the batch apply, got {outcomes:?}"
        );
        assert_read_back(store, std::slice::from_ref(&before)).await;
        assert_read_back(store, std::slice::from_ref(&after)).await;
        let e = &unwritable[0].event;
        match &outcomes[1] {
            ApplyOutcome::Applied => {
                assert_eq!(
                    outcomes[3],
                    ApplyOutcome::Applied,
                    "{what}: a change chained onto an applied one applies"
                );
                assert_read_back(store, &unwritable).await;
            }
            ApplyOutcome::Refused { reason } => {
                assert!(!reason.is_empty(), "{what}: a refusal says why");
                assert_eq!(
                    outcomes[3],
                    ApplyOutcome::Conflict { current_version: 0 },
                    "{what}: a change computed on top of a refused one is a conflict"
                );
                assert_eq!(
                    ok("entity", store.entity(e.entity_kind, &e.entity_id).await),
                    None,
                    "{what}: a refused change must not create its entity"
                );
                assert!(
                    ok(
                        "event_log",
                        store.event_log(e.entity_kind, &e.entity_id).await
                    )
                    .is_empty(),
                    "{what}: a refused change must not reach the event log"
                );
                let ids: Vec<String> = unwritable
                    .iter()
                    .map(|c| c.event.event_id.clone())
                    .collect();
                assert!(
                    ok("applied", store.applied(&ids).await).is_empty(),
                    "{what}: a refused change is not applied"
                );
            }
            other => panic!("{what}: an unwritable change is applied or refused, got {other:?}"),
        }
        let mut expected = outbox_ids(&[&before, &after]);
        if outcomes[1] == ApplyOutcome::Applied {
            expected = outbox_ids(&[&before, &unwritable[0], &after, &unwritable[1]]);
        }
        let mut pending_now = pending_ids(&pending(store).await);
        let mut expected_sorted = expected.clone();
        pending_now.sort();
        expected_sorted.sort();
        assert_eq!(
            pending_now, expected_sorted,
            "{what}: only the written changes' outbox messages are pending"
        );
        ok("mark_published", store.mark_published(&expected).await);
    }
}

/// `applied` answers exactly the subset of ids that are in the read model.
pub async fn applied_is_the_applied_subset(store: &dyn Store) {
    let a = application_history();
    let q = new_quote();
    let mut refused = new_quote();
    refused.expected_version = 1;
    apply(store, &[a[0].clone(), q.clone(), refused.clone()]).await;
    let asked = vec![
        a[0].event.event_id.clone(),
        a[1].event.event_id.clone(),
        q.event.event_id.clone(),
        refused.event.event_id.clone(),
        fixtures::application_id(),
    ];
    let expected: HashSet<String> = [a[0].event.event_id.clone(), q.event.event_id.clone()]
        .into_iter()
        .collect();
    assert_eq!(
        ok("applied", store.applied(&asked).await),
        expected,
        "applied subset"
    );
    assert!(
        ok("applied", store.applied(&[]).await).is_empty(),
        "applied of no ids"
    );
}

/// `entities` returns exactly the existing entities among the keys asked, with their state.
pub async fn entities_are_the_existing_subset(store: &dyn Store) {
    let a = application_history();
    let q = new_quote();
    apply(store, &[a[0].clone(), q.clone()]).await;
    let app_key = (a[0].event.entity_kind, a[0].event.entity_id.clone());
    let quote_key = (q.event.entity_kind, q.event.entity_id.clone());
    let unknown = (a[0].event.entity_kind, fixtures::application_id());
    let mut found = ok(
        "entities",
        store
            .entities(&[app_key.clone(), unknown, quote_key.clone()])
            .await,
    );
    found.sort_by(|x, y| x.id.cmp(&y.id));
    let mut expected = vec![
        ok("entity", store.entity(app_key.0, &app_key.1).await).expect("application exists"),
        ok("entity", store.entity(quote_key.0, &quote_key.1).await).expect("quote exists"),
    ];
    expected.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(
        found, expected,
        "entities returns the existing ones, as entity() does"
    );
    assert!(
        ok("entities", store.entities(&[]).await).is_empty(),
        "entities of no keys"
    );
}

/// Pending outbox messages come oldest first across entities, `mark_published` is idempotent,
/// and the backlog counts what is left.
pub async fn outbox_in_creation_order(store: &dyn Store) {
    let a = application_history();
    let q = new_quote();
    apply_all(store, &a[..1]).await;
    apply_all(store, std::slice::from_ref(&q)).await;
    apply_all(store, &a[1..2]).await;
    let expected = outbox_ids(&[&a[0], &q, &a[1]]);
    assert!(
        expected.len() >= 4,
        "fixtures must announce several messages"
    );

    let all = pending(store).await;
    assert_eq!(
        pending_ids(&all),
        expected,
        "pending outbox in creation order"
    );
    let sources = [&a[0], &q, &a[1]];
    for stored in &all {
        let change = sources
            .iter()
            .find(|c| c.outbox.iter().any(|m| m.id == stored.id))
            .expect("every pending message comes from an applied change");
        let original = change
            .outbox
            .iter()
            .find(|m| m.id == stored.id)
            .expect("found");
        assert_eq!(
            (&stored.topic, &stored.message),
            (&original.topic, &codec::encode_outbox(original)),
            "an outbox message reads back as recorded, encoded for the bus"
        );
        assert_eq!(
            stored.event_id, change.event.event_id,
            "an outbox message names its event"
        );
    }
    assert_eq!(
        ok("outbox_backlog", store.outbox_backlog().await),
        expected.len() as u64,
        "backlog"
    );
    assert_eq!(
        pending_ids(&ok("pending_outbox", store.pending_outbox(2).await)),
        expected[..2].to_vec(),
        "pending_outbox honours its limit and keeps the oldest"
    );

    let first_two = expected[..2].to_vec();
    ok("mark_published", store.mark_published(&first_two).await);
    ok(
        "mark_published again",
        store.mark_published(&first_two).await,
    );
    ok(
        "mark_published of an unknown id",
        store.mark_published(&[fixtures::application_id()]).await,
    );
    assert_eq!(
        pending_ids(&pending(store).await),
        expected[2..].to_vec(),
        "published messages leave the pending outbox"
    );
    assert_eq!(
        ok("outbox_backlog", store.outbox_backlog().await),
        (expected.len() - 2) as u64,
        "backlog after publishing two (twice)"
    );
    ok("mark_published", store.mark_published(&expected).await);
    assert!(pending(store).await.is_empty(), "everything published");
    assert_eq!(
        ok("outbox_backlog", store.outbox_backlog().await),
        0,
        "empty backlog"
    );
}

/// Outbox ids are fences: a message id recorded once is never recorded (or pending) again.
pub async fn outbox_ids_are_fences(store: &dyn Store) {
    let a = application_history();
    apply_all(store, &a[..1]).await;
    let ids = outbox_ids(&[&a[0]]);
    ok("mark_published", store.mark_published(&ids).await);
    // Outbox ids derive from the event id, so the event's fence is theirs: the same change
    // delivered again records none of its messages, published or not.
    assert_eq!(
        ok("apply", store.apply(&a[..1]).await),
        vec![ApplyOutcome::AlreadyApplied],
        "the same change again"
    );
    apply_all(store, &a[1..2]).await;
    assert_eq!(
        pending_ids(&pending(store).await),
        outbox_ids(&[&a[1]]),
        "a published message must not be pending again"
    );
}

/// A replayed change (rebuild) applies and leaves none of its outbox messages pending: they were
/// published when the event was first projected.
pub async fn replay_leaves_no_outbox_pending(store: &dyn Store) {
    let mut history = application_history();
    for c in &mut history {
        c.replay = true;
    }
    apply_all(store, &history).await;
    assert_read_back(store, &history).await;
    assert!(
        pending(store).await.is_empty(),
        "replayed changes must not leave pending messages"
    );
    assert_eq!(
        ok("outbox_backlog", store.outbox_backlog().await),
        0,
        "backlog after a replay"
    );
    // The live projector meeting a replayed event again (its offset was not committed yet)
    // is fenced by the event id: its messages do not come back.
    let mut live = history[0].clone();
    live.replay = false;
    assert_eq!(
        ok("apply", store.apply(std::slice::from_ref(&live)).await),
        vec![ApplyOutcome::AlreadyApplied],
        "a replayed change applied live"
    );
    assert!(
        pending(store).await.is_empty(),
        "messages of a replayed event stay published"
    );
}

/// `wait_applied` returns true once the event is applied by someone else, without polling
/// from the caller's side.
pub async fn wait_applied_sees_a_concurrent_apply(store: &dyn Store) {
    let change = new_quote();
    let id = change.event.event_id.clone();
    let (seen, outcomes) = tokio::join!(
        store.wait_applied(&id, PATIENCE),
        store.apply(std::slice::from_ref(&change))
    );
    assert_eq!(
        ok("apply", outcomes),
        vec![ApplyOutcome::Applied],
        "apply beside a waiter"
    );
    assert!(
        ok("wait_applied", seen),
        "wait_applied must see an event applied while it waits"
    );
    assert!(
        ok(
            "wait_applied",
            store.wait_applied(&id, Duration::ZERO).await
        ),
        "wait_applied of an applied event is true at once, even with no time to wait"
    );
}

/// `wait_applied` of an event nobody applies gives up at its timeout with false.
pub async fn wait_applied_times_out(store: &dyn Store) {
    let unknown = fixtures::application_id();
    let seen = tokio::time::timeout(
        PATIENCE,
        store.wait_applied(&unknown, Duration::from_millis(50)),
    )
    .await
    .expect("wait_applied must return at its own timeout");
    assert!(
        !ok("wait_applied", seen),
        "an event nobody applied is not applied"
    );
}

/// `wait_for_outbox` wakes when an applied change records outbox messages, long before `max`.
pub async fn wait_for_outbox_wakes_after_apply(store: &dyn Store) {
    let change = new_quote();
    let woke = tokio::time::timeout(PATIENCE, async {
        tokio::join!(
            store.wait_for_outbox(Duration::from_secs(3600)),
            store.apply(std::slice::from_ref(&change))
        )
    })
    .await;
    let ((), outcomes) = woke.expect("wait_for_outbox must wake after an apply recorded messages");
    assert_eq!(
        ok("apply", outcomes),
        vec![ApplyOutcome::Applied],
        "apply beside an outbox waiter"
    );
}

/// Idempotency keys: first reservation, same request again, another request with the key,
/// and the published flag.
pub async fn idempotency_reservations(store: &dyn Store) {
    let key = idempotency_key();
    let record = idempotency_record(&key, "fp-1");
    assert_eq!(
        ok(
            "reserve_idempotency",
            store.reserve_idempotency(&record).await
        ),
        Reservation::Reserved,
        "first use of a key"
    );
    let mut later = idempotency_record(&key, "fp-1");
    later.status = 500;
    assert_eq!(
        ok(
            "reserve_idempotency",
            store.reserve_idempotency(&later).await
        ),
        Reservation::Existing(Box::new(record.clone())),
        "the same request again gets the stored record, unchanged"
    );
    assert_eq!(
        ok(
            "reserve_idempotency",
            store
                .reserve_idempotency(&idempotency_record(&key, "fp-2"))
                .await
        ),
        Reservation::Mismatch,
        "the key with another request"
    );
    ok(
        "mark_idempotency_published",
        store.mark_idempotency_published(&key).await,
    );
    ok(
        "mark_idempotency_published again",
        store.mark_idempotency_published(&key).await,
    );
    ok(
        "mark_idempotency_published of an unknown key",
        store.mark_idempotency_published(&idempotency_key()).await,
    );
    let published = IdempotencyRecord {
        published: true,
        ..record.clone()
    };
    assert_eq!(
        ok(
            "reserve_idempotency",
            store.reserve_idempotency(&record).await
        ),
        Reservation::Existing(Box::new(published)),
        "the stored record remembers it was published"
    );
    let other = idempotency_record(&idempotency_key(), "fp-1");
    assert_eq!(
        ok(
            "reserve_idempotency",
            store.reserve_idempotency(&other).await
        ),
        Reservation::Reserved,
        "keys are independent even with equal fingerprints"
    );
}

/// `reset_read_model` drops event log, entities and outbox, keeps idempotency keys, and the
/// same events apply again afterwards (a rebuild).
pub async fn reset_keeps_idempotency(store: &dyn Store) {
    let history = application_history();
    apply_all(store, &history).await;
    let record = idempotency_record(&idempotency_key(), "fp");
    assert_eq!(
        ok("reserve", store.reserve_idempotency(&record).await),
        Reservation::Reserved,
        "reserve"
    );

    ok("reset_read_model", store.reset_read_model().await);
    let e = &history[0].event;
    assert_eq!(
        ok("entity", store.entity(e.entity_kind, &e.entity_id).await),
        None,
        "entities are gone"
    );
    assert!(
        ok(
            "event_log",
            store.event_log(e.entity_kind, &e.entity_id).await
        )
        .is_empty(),
        "event log is gone"
    );
    assert!(pending(store).await.is_empty(), "outbox is gone");
    assert_eq!(
        ok("outbox_backlog", store.outbox_backlog().await),
        0,
        "backlog is gone"
    );
    let ids: Vec<String> = history.iter().map(|c| c.event.event_id.clone()).collect();
    assert!(
        ok("applied", store.applied(&ids).await).is_empty(),
        "no event is applied any more"
    );
    assert_eq!(
        ok("reserve", store.reserve_idempotency(&record).await),
        Reservation::Existing(Box::new(record.clone())),
        "idempotency keys survive a reset"
    );

    let mut replay = history.clone();
    for c in &mut replay {
        c.replay = true;
    }
    apply_all(store, &replay).await;
    assert_read_back(store, &replay).await;
    assert!(
        pending(store).await.is_empty(),
        "a rebuild publishes nothing"
    );
}

/// `check` passes on a working store and the adapter names itself.
pub async fn check_and_name(store: &dyn Store) {
    ok("check", store.check().await);
    assert!(!store.name().is_empty(), "an adapter has a name");
}

/// What `durable_write` wrote, for `durable_read_back` after the caller reopened the store.
#[derive(Clone, Debug)]
pub struct Durable {
    history: Vec<Change>,
    record: IdempotencyRecord,
}

/// First half of the restart case: write, then the caller drops and reopens the store.
pub async fn durable_write(store: &dyn Store) -> Durable {
    let history = application_history();
    apply_all(store, &history[..2]).await;
    apply_all(store, &history[2..]).await;
    ok(
        "mark_published",
        store.mark_published(&outbox_ids(&[&history[0]])).await,
    );
    let record = idempotency_record(&idempotency_key(), "fp");
    assert_eq!(
        ok("reserve", store.reserve_idempotency(&record).await),
        Reservation::Reserved,
        "reserve"
    );
    ok(
        "mark_idempotency_published",
        store.mark_idempotency_published(&record.key).await,
    );
    Durable { history, record }
}

/// Second half: everything `durable_write` committed is there after the reopen.
pub async fn durable_read_back(store: &dyn Store, written: &Durable) {
    assert_read_back(store, &written.history).await;
    let ids: Vec<String> = written
        .history
        .iter()
        .map(|c| c.event.event_id.clone())
        .collect();
    assert_eq!(
        ok("applied", store.applied(&ids).await),
        ids.iter().cloned().collect::<HashSet<_>>(),
        "applied events survive a restart"
    );
    let rest: Vec<&Change> = written.history[1..].iter().collect();
    assert_eq!(
        pending_ids(&pending(store).await),
        outbox_ids(&rest),
        "pending and published outbox messages survive a restart"
    );
    assert_eq!(
        apply(store, &written.history).await,
        vec![ApplyOutcome::AlreadyApplied; written.history.len()],
        "fences survive a restart"
    );
    assert_eq!(
        ok("reserve", store.reserve_idempotency(&written.record).await),
        Reservation::Existing(Box::new(IdempotencyRecord {
            published: true,
            ..written.record.clone()
        })),
        "idempotency records survive a restart"
    );
}

/// A lease goes to one owner at a time until it expires or is released; `leases` lists the
/// live ones under a prefix.
pub async fn leases_fence_one_owner_at_a_time(store: &dyn Store) {
    let now = fixtures::now();
    let later = now + chrono::Duration::seconds(30);
    assert_eq!(
        ok(
            "take_lease",
            store.take_lease("fence/a", "one", later, now).await
        ),
        None,
        "a free lease is taken"
    );
    let held = ok(
        "take_lease",
        store.take_lease("fence/a", "two", later, now).await,
    )
    .expect("a held lease is refused to another owner");
    assert_eq!(
        (held.owner.as_str(), held.until),
        ("one", later),
        "the holder is named"
    );
    assert_eq!(
        ok(
            "take_lease",
            store
                .take_lease("fence/a", "one", later + chrono::Duration::seconds(5), now)
                .await
        ),
        None,
        "its owner renews it"
    );
    let after = later + chrono::Duration::seconds(10);
    assert_eq!(
        ok(
            "take_lease",
            store
                .take_lease(
                    "fence/a",
                    "two",
                    after + chrono::Duration::seconds(30),
                    after
                )
                .await
        ),
        None,
        "an expired lease goes to whoever asks"
    );
    ok(
        "take_lease",
        store.take_lease("fence/b", "three", later, now).await,
    );
    ok(
        "take_lease",
        store.take_lease("other", "four", later, now).await,
    );
    let live = ok("leases", store.leases("fence/", now).await);
    let names: Vec<&str> = live.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        ["fence/a", "fence/b"],
        "live leases under the prefix"
    );
    assert!(
        ok(
            "leases",
            store
                .leases("fence/", later + chrono::Duration::seconds(1))
                .await
        )
        .iter()
        .all(|l| l.name == "fence/a"),
        "an expired lease is not listed"
    );
    ok("release_lease", store.release_lease("fence/a", "one").await);
    assert_eq!(
        ok("leases", store.leases("fence/a", now).await).len(),
        1,
        "only its owner releases a lease"
    );
    ok("release_lease", store.release_lease("fence/a", "two").await);
    assert!(
        ok("leases", store.leases("fence/a", now).await).is_empty(),
        "a released lease is free"
    );
}

/// A parked outbox message is kept whole with its reason, once however often it is parked.
pub async fn parked_outbox_is_kept_once(store: &dyn Store) {
    let change = new_quote();
    apply_all(store, std::slice::from_ref(&change)).await;
    let message = pending(store).await.remove(0);
    ok(
        "park_outbox",
        store
            .park_outbox(
                &message,
                "message_too_large: 2000000 bytes",
                fixtures::now(),
            )
            .await,
    );
    ok(
        "park_outbox",
        store.park_outbox(&message, "again", fixtures::now()).await,
    );
    let parked = ok("parked_outbox", store.parked_outbox(10).await);
    assert_eq!(parked.len(), 1, "parked once");
    assert_eq!(parked[0].0, message, "parked whole");
    assert_eq!(
        parked[0].1, "message_too_large: 2000000 bytes",
        "with the first reason"
    );
}
