//! The Kafka event bus adapter.
