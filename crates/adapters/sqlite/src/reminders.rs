//! Reminder state on SQLite.
