//! The MongoDB store adapter.
