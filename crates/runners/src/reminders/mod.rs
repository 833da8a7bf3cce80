//! Broker signature reminders (the seeds' broker-email-service): when a broker submits an
//! application, the broker is emailed every `interval` (24h) until the member's signature
//! arrives, at most `max_attempts` times; one interval after the last email without a
//! signature the reminder is exhausted (flagged) and a `SignatureRemindersExhausted` event
//! announces it on the enrollment events topic.
//!
//! Two runners share the reminder store (durable timers: one record per application with its
//! due time and a lease):
//!
//! - [`consumer`] (group `broker-email-service`) folds the application events into the
//!   reminder state: a broker submission starts the timer, a signature, withdrawal or decline
//!   stops it, whatever the order and however often they arrive.
//!   It acts only on events the projector accepted ([`gate`]).
//! - [`scheduler`] wakes on the clock port when the next reminder is due, leases due reminders
//!   (several schedulers may run; a lease goes to one), sends the email with a Message-ID
//!   derived from application id and attempt, and records the attempt. A crash between the
//!   send and the record costs one duplicate email with the same Message-ID after the lease
//!   ends, never a burst.

mod config;
pub mod consumer;
pub mod gate;
pub mod scheduler;

pub use config::ReminderConfig;
pub use consumer::{run_consumer, ReminderConsumer, GROUP};
pub use scheduler::{run_scheduler, Progress, Scheduler};
