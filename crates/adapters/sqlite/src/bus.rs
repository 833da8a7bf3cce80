//! The embedded event bus on SQLite.
