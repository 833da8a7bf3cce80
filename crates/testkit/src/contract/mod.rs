//! Contract suites: the behaviour every adapter of a port must show. Each case is a public async
//! function so that an adapter's test file runs each case as its own test (and a slow adapter,
//! such as Kafka with its group joins, runs them in parallel).

pub mod audit;
pub mod bus;
pub mod credentials;
pub mod deliveries;
pub mod generations;
pub mod listing;
pub mod reminders;
pub mod store;

/// Expands to one `#[tokio::test]` per case of the store contract, so every adapter runs every
/// case and a new case reaches all adapters at once. `store` names the binding the setup creates:
/// `store_contract_tests!(store, (_dir, store) = fresh());`
#[macro_export]
macro_rules! store_contract_tests {
    ($store:ident, $pat:pat = $init:expr) => {
        $crate::contract_tests!(store, $store, $pat = $init;
            apply_then_read_back,
            redelivery_is_already_applied,
            version_conflict_writes_nothing,
            batch_chains_versions,
            refused_change_does_not_block_batch,
            unwritable_change_is_refused_alone,
            applied_is_the_applied_subset,
            entities_are_the_existing_subset,
            outbox_in_creation_order,
            outbox_ids_are_fences,
            replay_leaves_no_outbox_pending,
            wait_applied_sees_a_concurrent_apply,
            wait_applied_times_out,
            wait_for_outbox_wakes_after_apply,
            idempotency_reservations,
            reset_keeps_idempotency,
            check_and_name,
            leases_fence_one_owner_at_a_time,
            parked_outbox_is_kept_once,
        );
    };
}

/// The same for the read model's generations (stores whose `generations()` is `Some`).
#[macro_export]
macro_rules! generations_contract_tests {
    ($store:ident, $pat:pat = $init:expr) => {
        $crate::contract_tests!(generations, $store, $pat = $init;
            a_build_switches_in_once_it_holds_every_event,
            live_applies_wait_while_a_switch_is_held,
            an_interrupted_build_resumes_where_it_was,
        );
    };
}

/// The same for the credential store contract.
#[macro_export]
macro_rules! credential_contract_tests {
    ($store:ident, $pat:pat = $init:expr) => {
        $crate::contract_tests!(credentials, $store, $pat = $init;
            create_then_find_by_hash,
            names_are_never_reused,
            revoke_once_and_keep_the_record,
            list_by_name,
            last_use_only_moves_forward,
        );
    };
}

/// The same for the audit of redrives (`AuditLog`).
#[macro_export]
macro_rules! audit_contract_tests {
    ($store:ident, $pat:pat = $init:expr) => {
        $crate::contract_tests!(audit, $store, $pat = $init;
            a_redrive_reads_back_as_recorded,
            the_end_replaces_the_start,
            newest_first_and_bounded,
        );
    };
}

/// The same for the listing queries of the store (`Store::list_entities`).
#[macro_export]
macro_rules! listing_contract_tests {
    ($store:ident, $pat:pat = $init:expr) => {
        $crate::contract_tests!(listing, $store, $pat = $init;
            filters_by_status_and_broker_in_id_order,
            pages_follow_the_cursor,
        );
    };
}

/// The same for the delivery log contract (`DeliveryLog`).
#[macro_export]
macro_rules! delivery_log_contract_tests {
    ($store:ident, $pat:pat = $init:expr) => {
        $crate::contract_tests!(deliveries, $store, $pat = $init;
            records_read_back_newest_first_by_entity,
            purge_drops_what_is_past_the_retention,
            check_and_name,
        );
    };
}

/// The same for the reminder store contract (single-store cases; the two-store and restart
/// cases need adapter-specific set-up and are called by hand).
#[macro_export]
macro_rules! reminder_contract_tests {
    ($store:ident, $pat:pat = $init:expr) => {
        $crate::contract_tests!(reminders, $store, $pat = $init;
            broker_submission_creates_a_due_reminder,
            redelivered_event_is_a_no_op,
            approval_is_ignored,
            stop_events_end_the_schedule,
            stop_before_submission_stays_stopped,
            member_submission_is_never_due,
            claims_only_due_reminders_and_leases_them,
            claims_respect_limit_and_due_order,
            attempts_are_fenced_on_owner_and_number,
            release_keeps_the_attempt_and_delays,
            exhaustion_after_the_last_interval,
            signature_during_a_claim_stops_after_the_record,
            events_keep_the_lease,
            refused_attempt_is_consumed,
            due_backlog_counts_due_reminders,
            check_and_name,
            lists_by_status_in_application_order,
            pages_follow_the_application_id_cursor,
            listing_shows_leases_attempts_and_backoff,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! contract_tests {
    ($suite:ident, $store:ident, $pat:pat = $init:expr; $($case:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $case() {
            let $pat = $init;
            $crate::contract::$suite::$case(&$store).await;
        }
    )*};
}
