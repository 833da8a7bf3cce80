//! Spans of the pipeline as OpenTelemetry spans. The crates below the binary know no
//! OpenTelemetry: they name a span's place in a trace with two `tracing` fields holding W3C
//! traceparents, the ones events and notifications already carry:
//!
//! - `trace_parent`: the span this one continues (an incoming request's, an event's);
//! - `trace_span`: this span itself, when its id is carried on by a message (the API request
//!   whose span the event names, the notification whose span relay and deliveries continue).
//!
//! A span declaring neither is not exported; one with neither recorded hangs under its nearest
//! exported `tracing` ancestor, or is not exported. Ids are fixed when the span opens; the span
//! is handed to the export queue when it closes.

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, IdGenerator, RandomIdGenerator, SpanData, SpanEvents, SpanLinks,
    SpanProcessor,
};
use std::sync::Arc;
use std::time::SystemTime;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

const PARENT: &str = "trace_parent";
const OWN: &str = "trace_span";
/// In the traceparents already; kept for log lines only.
const TRACE_ID: &str = "trace_id";
/// Bounds on what one span sends, whatever its fields hold.
const MAX_ATTRIBUTES: usize = 32;
const MAX_VALUE_CHARS: usize = 1024;

/// Whether a span takes part in traces at all (the per-layer filter): an `info` (or louder)
/// span declaring a trace field.
pub fn declares_trace(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.is_span()
        && *metadata.level() <= tracing::Level::INFO
        && (metadata.fields().field(PARENT).is_some() || metadata.fields().field(OWN).is_some())
}

pub struct SpanExport {
    processor: Arc<BatchSpanProcessor>,
    scope: InstrumentationScope,
    ids: RandomIdGenerator,
}

impl SpanExport {
    pub fn new(processor: Arc<BatchSpanProcessor>) -> Self {
        Self {
            processor,
            scope: InstrumentationScope::builder("enrollstream")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            ids: RandomIdGenerator::default(),
        }
    }
}

/// A span on its way: where it sits in its trace, and what it recorded.
struct Open {
    context: SpanContext,
    parent: Option<(SpanId, bool)>,
    start: SystemTime,
    attributes: Vec<KeyValue>,
}

impl<S> Layer<S> for SpanExport
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let ancestor = || {
            span.parent().and_then(|p| {
                p.extensions()
                    .get::<Open>()
                    .map(|open| open.context.clone())
            })
        };
        let parent = fields
            .parent
            .as_deref()
            .and_then(parse)
            .map(|c| (c, true))
            .or_else(|| ancestor().map(|c| (c, false)));
        let context = match (fields.own.as_deref().and_then(parse), &parent) {
            (Some(own), _) => own,
            (None, Some((parent, _))) => SpanContext::new(
                parent.trace_id(),
                self.ids.new_span_id(),
                parent.trace_flags(),
                false,
                TraceState::default(),
            ),
            (None, None) => return,
        };
        span.extensions_mut().insert(Open {
            parent: parent.map(|(c, remote)| (c.span_id(), remote)),
            context,
            start: SystemTime::now(),
            attributes: fields.attributes,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(open) = extensions.get_mut::<Open>() {
            let mut fields = Fields {
                attributes: std::mem::take(&mut open.attributes),
                ..Fields::default()
            };
            values.record(&mut fields);
            open.attributes = fields.attributes;
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(open) = span.extensions_mut().remove::<Open>() else {
            return;
        };
        if !open.context.is_sampled() {
            return;
        }
        let (parent_span_id, parent_span_is_remote) =
            open.parent.unwrap_or((SpanId::INVALID, false));
        // `on_end` only queues (or drops when the queue is full): never waits for the collector.
        self.processor.on_end(SpanData {
            span_context: open.context,
            parent_span_id,
            parent_span_is_remote,
            span_kind: SpanKind::Internal,
            name: span.name().into(),
            start_time: open.start,
            end_time: SystemTime::now(),
            attributes: open.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: self.scope.clone(),
        });
    }
}

/// A W3C traceparent as the context of a remote span; `None` when malformed or all zeros.
fn parse(traceparent: &str) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

#[derive(Default)]
struct Fields {
    parent: Option<String>,
    own: Option<String>,
    attributes: Vec<KeyValue>,
}

impl Fields {
    fn attribute(&mut self, field: &Field, value: opentelemetry::Value) {
        if self.attributes.len() < MAX_ATTRIBUTES {
            self.attributes.push(KeyValue::new(field.name(), value));
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            PARENT => self.parent = Some(value.to_string()),
            OWN => self.own = Some(value.to_string()),
            TRACE_ID => {}
            _ => self.attribute(field, bounded(value).into()),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.attribute(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.attribute(field, i64::try_from(value).unwrap_or(i64::MAX).into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.attribute(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.attribute(field, value.into());
    }
}

fn bounded(value: &str) -> String {
    value.chars().take(MAX_VALUE_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_parses_into_a_remote_context() {
        let c = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(
            c.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(c.span_id(), SpanId::from_hex("00f067aa0ba902b7").unwrap());
        assert!(c.is_sampled() && c.is_remote());
        assert!(parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
        assert!(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7").is_none());
        assert!(parse("garbage").is_none());
    }
}
