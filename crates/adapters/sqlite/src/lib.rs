//! Embedded adapters on SQLite (WAL, durable commits) in a data directory: the event bus
//! (`bus`, file `bus.db`) and the store (`store`, file `store.db`). Two files, so that appends
//! to the log and writes to the read model never wait for each other's lock.

pub mod audit;
pub mod bus;
pub mod credentials;
pub mod deliveries;
pub mod reminders;
pub mod store;

mod sqlite;
