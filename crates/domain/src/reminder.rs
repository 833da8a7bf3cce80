//! Broker signature reminder policy (pure).
