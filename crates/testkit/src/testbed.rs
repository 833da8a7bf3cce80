//! Real components for tests.
