//! Logs (tracing, text or JSON) and metrics (Prometheus text rendered at `/metrics`).

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

pub fn init_logs(config: &LogConfig) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init`: a second call (tests) keeps the first subscriber instead of panicking.
    let _ = if config.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
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
