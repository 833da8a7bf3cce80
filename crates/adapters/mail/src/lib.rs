//! Mailers.
