//! The production store: MongoDB through the official Rust driver (3.x).
//!
//! Targets MongoDB 6.0 and later, standalone or replica set; the test bed runs it on FerretDB
//! 1.24 (docs/testbed.md). Change streams (used only to wake the outbox relay early) need a
//! replica set; elsewhere the adapter polls. Every write asks for majority and journal
//! acknowledgement, reads use majority read concern.
//!
//! No multi-document transactions anywhere, and no update whose condition is a fence: every
//! effect that must happen once is one insert, fenced by a unique key, because an insert is
//! atomic on any server that speaks the protocol while FerretDB's updates are not (they read,
//! then write the whole document). Updates only write what may be lost or land late: caches
//! that reads complete from the inserted documents, and the relay's marks, whose loss means a
//! message is published again under its same id.
//!
//! Collections: `event_log` (one entry per applied event, `_id` = event id, unique on
//! `(entity_kind, entity_id, version)`, carrying the entity's state after the event and its
//! unpublished outbox messages: see `entry` and `apply`), `entities` (`_id` = `"kind:id"`, the
//! head: each entity's latest state, a cache), `idempotency` (`_id` = the API's key),
//! `reminders` and `reminder_versions` (see `reminders`), `deliveries` (the delivery log, see
//! `deliveries`); `event_log_g<N>` and `entities_g<N>`, later generations of the read model, and
//! `read_model_generations`, their pointer (see `generations`). Ids are strings, integers Int64,
//! times BSON dates, money integer minor units inside the states: no ObjectId, Decimal128 or Binary.

pub mod api_keys;
mod apply;
pub mod audit;
mod codec;
mod db;
pub mod deliveries;
mod entry;
mod error;
mod fences;
mod generations;
mod idempotency;
mod listing;
mod monitor;
mod outbox;
mod read;
pub mod reminders;
mod settings;
mod store;

pub use api_keys::MongoCredentialStore;
pub use audit::MongoAuditLog;
pub use deliveries::MongoDeliveryLog;
pub use entry::entry_document;
pub use generations::live::RELAY_LOG;
pub use monitor::CommandStats;
pub use reminders::MongoReminderStore;
pub use settings::Lookups;
pub use store::{MongoSettings, MongoStore};
