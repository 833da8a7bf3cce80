//! Deliveries to downstream targets.
