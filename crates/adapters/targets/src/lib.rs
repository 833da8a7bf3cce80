//! HTTP delivery targets.
