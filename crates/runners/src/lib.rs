//! The roles of enrollstream. Each runner wires ports to the pure domain and runs until its
//! shutdown token is cancelled:
//!
//! - `consumer`: the shared consumer loop (poll, handle, dead-letter, commit) every role that
//!   reads the bus runs on, so that "commit only after the effect is durable" and "a bad message
//!   never blocks a partition" are written once.
//! - `backlog`: samples how far behind the pipeline is (lag, dead letters, outbox) into gauges.
//! - `fence`: the lease that keeps an in-place rebuild and live projectors apart.
//! - `projector`: builds the read model and records the outbox in one atomic write per event.
//! - `rebuild`: the rebuild without downtime (the read model's next generation, then the switch).
//! - `relay`: publishes the outbox to the notification topics.
//! - `deliveries`: one consumer group per downstream target (Logic Apps, Salesforce, ...).
//! - `leads`: the lead producer and the lead integration service.
//! - `reminders`: broker signature reminders (state from events, durable timers, email).
//! - `redrive_plan`: which dead letters a redrive moves, which stay parked, and why.
//! - `dlq`: list, inspect and redrive dead letters, each redrive audited (CLI and admin API).

pub mod backlog;
pub mod backoff;
pub mod consumer;
pub mod dead_letter;
pub mod deliveries;
pub mod dlq;
pub mod fence;
pub mod leads;
pub mod projector;
pub mod rebuild;
pub mod redrive_plan;
pub mod relay;
pub mod reminders;
