//! Tracing (issue 18): one trace from the API request through projector, relay and every
//! delivery attempt, exported over OTLP/HTTP when `[telemetry] otlp_endpoint` is set. The spans
//! are made where the work is (api, runners) with plain `tracing`; this module turns those that
//! name their place in a trace into OpenTelemetry spans (`layer`) and sends them (`export`).

mod export;
mod layer;
mod settings;

pub use export::Traces;
pub use layer::{declares_trace, SpanExport};
