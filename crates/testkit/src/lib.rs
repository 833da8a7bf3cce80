//! Test support shared by the adapters' and the application's tests.
//!
//! - `testbed`: starts the real components the tests talk to (a Kafka-protocol broker, a
//!   MongoDB-protocol server, an SMTP server) as child processes on free ports of 127.0.0.1, and
//!   fails loudly with the reason when one cannot start.
//! - `contract`: the behaviour every adapter of a port must show, as suites each adapter runs.
//! - `otlp`: an OTLP/HTTP trace receiver, standing in for an OpenTelemetry collector.

pub mod contract;
pub mod otlp;
pub mod targets;
pub mod testbed;
