//! Deliveries to downstream targets (Azure Logic Apps, Salesforce, the Lead Management API),
//! each by its own consumer group (`delivery-logic-apps`, `delivery-salesforce`,
//! `lead-integration-service`), so a slow or failing target never delays the read model or
//! the other targets.
//!
//! - `selection`: a message is for this target if its `ce_routingtargets` header names it;
//!   others are done at once, payload untouched.
//! - `lanes`: per-key lanes inside a partition, run in parallel up to `concurrency`; one
//!   message per key at a time, so a later notification of an entity never overtakes an
//!   earlier one, not even one that is being retried.
//! - `worker`: one message through its lane: attempts, backoff with jitter honouring
//!   Retry-After, the target's DLQ once the retry budget is spent or the target rejects it.
//!   Retries stay in the lane: only that key waits, the rest of the partition flows on.
//! - `guard`: the circuit breaker, the pause on refused credentials, the Retry-After hold.
//! - `state`: the target's state in gauges (healthy, retrying, paused, circuit_open), written
//!   by the guard as it changes.
//! - `watermark`: commits never pass an unfinished message; a crash redelivers from there.
//! - `journal`: each outcome (delivered, dead-lettered, a duplicate) into the `DeliveryLog`
//!   port, through a bounded channel and a background writer: dropped and counted when it
//!   cannot keep up, never waited for.
//!
//! Dead letters of `<topic>` go to `<topic>.<target><dlq_suffix>`, e.g.
//! `enrollment-notifications.salesforce.dlq`, with the standard `dlq_*` headers plus
//! `dlq_target`, `dlq_attempts` and `dlq_last_status`; `redrive_delivery` turns one back into
//! a message for that target alone.

mod guard;
mod journal;
mod lanes;
mod redrive;
mod runner;
mod selection;
mod settings;
mod state;
mod watermark;
mod worker;

pub use journal::{run_purge, Journal, CAPACITY as JOURNAL_CAPACITY, DROPPED as JOURNAL_DROPPED};
pub use redrive::redrive_delivery;
pub use runner::{run, run_journaled};
pub use settings::{BreakerSettings, DeliverySettings, RetryPolicy};
pub use worker::{DLQ_LAST_STATUS, DLQ_TARGET};
