//! Logs (tracing, text or JSON), spans (OTLP, when configured) and metrics (Prometheus text
//! rendered at `/metrics`).

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::filter::{filter_fn, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, TelemetryConfig};
use crate::traces::{declares_trace, SpanExport, Traces};

/// Start logging, and span export when `telemetry` names a collector. The log filter does not
/// apply to exported spans: a quiet log still traces.
pub fn init_logs(
    config: &LogConfig,
    telemetry: Option<&TelemetryConfig>,
) -> anyhow::Result<Option<Traces>> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.filter));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = if config.format == "json" {
        logs.json().boxed()
    } else {
        logs.boxed()
    };
    let traces = match telemetry.map(|t| t.otlp_traces_url().map(|url| (t, url))) {
        Some(Ok((telemetry, Some(url)))) => Some(Traces::start(telemetry, &url)?),
        Some(Err(e)) => return Err(e),
        _ => None,
    };
    // Decided per callsite once (metadata only); the pipeline's spans are all `info`.
    let spans = traces.as_ref().map(|t| {
        SpanExport::new(t.processor())
            .with_filter(filter_fn(declares_trace).with_max_level_hint(LevelFilter::INFO))
    });
    // `try_init`: a second call (tests) keeps the first subscriber instead of panicking.
    let _ = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(spans)
        .try_init();
    Ok(traces)
}

pub fn init_metrics() -> anyhow::Result<PrometheusHandle> {
    let latency_buckets = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    // Accept to delivered spans the whole pipeline and any retries: seconds to an hour.
    let end_to_end_buckets = [
        0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets(&latency_buckets)?
        .set_buckets_for_metric(
            Matcher::Full("enrollstream_delivery_latency_seconds".into()),
            &end_to_end_buckets,
        )?
        .install_recorder()?;
    Ok(handle)
}
