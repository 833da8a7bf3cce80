//! Embedded adapters on SQLite: the event bus (`bus`) and the store (`store`).
