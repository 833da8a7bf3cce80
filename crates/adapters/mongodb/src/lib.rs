//! The production store: MongoDB through the official Rust driver (3.x).
//!
//! Targets MongoDB 6.0 and later, standalone or replica set. Change streams (used only to wake
//! the outbox relay early) need a replica set; elsewhere the adapter polls. Every write asks for
//! majority and journal acknowledgement, reads use majority read concern.
//!
//! No multi-document transactions anywhere: every effect is one atomic single-document write,
//! fenced by a unique key or a version so that doing it twice is doing it once. The design is
//! described in the documentation of the `apply` module (event log, entity and message-id
//! fences) and of the `outbox` module (the embedded outbox and how it is marked published).
//!
//! Collections: `event_log` (one document per event, `_id` = event id, unique on
//! `(entity_kind, entity_id, version)`), `entities` (`_id` = `"kind:id"`: state, status, version,
//! last event, and the outbox messages the entity's changes announced), `outbox_index` (`_id` =
//! outbox message id: the fence that records a message id once, and where it lives),
//! `idempotency` (`_id` =
//! the API's key, expired by a TTL index). Ids are strings, integers Int64 (read back
//! tolerantly), money integer minor units inside the states: no ObjectId, Decimal128 or Binary.

mod apply;
mod codec;
mod db;
mod error;
mod idempotency;
mod outbox;
pub mod reminders;
mod store;

pub use reminders::MongoReminderStore;
pub use store::{MongoSettings, MongoStore};
