//! The export side: a bounded batch queue drained by the SDK's own thread into an OTLP/HTTP
//! (protobuf) exporter, whose HTTP calls run on our runtime with our reqwest client.

use async_trait::async_trait;
use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SpanProcessor};
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::TelemetryConfig;

/// How often queued spans leave, and at most how many in one request.
const EXPORT_EVERY: Duration = Duration::from_secs(1);
const MAX_BATCH: usize = 512;
/// The collector's answer is a status and a small protobuf; nothing larger is read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The running export; [`Traces::shutdown`] sends what is queued before the process exits.
pub struct Traces {
    processor: Arc<BatchSpanProcessor>,
    timeout: Duration,
}

impl Traces {
    pub fn start(config: &TelemetryConfig, url: &reqwest::Url) -> anyhow::Result<Self> {
        let client = RuntimeClient {
            http: reqwest::Client::builder()
                .timeout(config.otlp_timeout)
                .connect_timeout(config.otlp_timeout)
                .build()?,
            runtime: tokio::runtime::Handle::current(),
            failing: Arc::new(AtomicBool::new(false)),
            url: url.to_string(),
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url.as_str())
            .with_timeout(config.otlp_timeout)
            .build()?;
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(config.otlp_queue_size)
            .with_max_export_batch_size(MAX_BATCH.min(config.otlp_queue_size))
            .with_scheduled_delay(EXPORT_EVERY)
            .build();
        let mut processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        // `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME` are read as the SDK reads them.
        processor.set_resource(
            &Resource::builder()
                .with_service_name(service_name())
                .build(),
        );
        Ok(Self {
            processor: Arc::new(processor),
            timeout: config.otlp_timeout,
        })
    }

    pub fn processor(&self) -> Arc<BatchSpanProcessor> {
        self.processor.clone()
    }

    /// Send what is queued (bounded by the export timeout, twice: flush and the last export).
    pub async fn shutdown(self) {
        let processor = self.processor;
        let timeout = self.timeout * 2;
        let done = tokio::task::spawn_blocking(move || processor.shutdown_with_timeout(timeout));
        match done.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "spans queued at shutdown were not all exported")
            }
            Err(e) => tracing::warn!(error = %e, "the span export did not shut down"),
        }
    }
}

fn service_name() -> String {
    std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "enrollstream".to_string())
}

/// The exporter's HTTP client. The SDK exports from a thread of its own with no Tokio runtime,
/// where an async client panics (opentelemetry-rust #2673); the call is handed to our runtime
/// and awaited from there.
#[derive(Debug)]
struct RuntimeClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
    /// A collector that is down is logged once when it goes, once when it is back.
    failing: Arc<AtomicBool>,
    url: String,
}

#[async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let http = self.http.clone();
        let answer = self
            .runtime
            .spawn(async move {
                let mut response = http.execute(request).await?;
                let mut answer = Response::builder().status(response.status());
                if let Some(headers) = answer.headers_mut() {
                    *headers = response.headers().clone();
                }
                let mut body = Vec::new();
                while let Some(chunk) = response.chunk().await? {
                    if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                        break;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok::<_, HttpError>(answer.body(Bytes::from(body))?)
            })
            .await
            .map_err(HttpError::from)
            .and_then(|answer| answer);
        let ok = answer.as_ref().is_ok_and(|r| r.status().is_success());
        let was_failing = self.failing.swap(!ok, Ordering::Relaxed);
        if was_failing == ok {
            match &answer {
                _ if ok => tracing::info!(url = %self.url, "span export works again"),
                Ok(r) => {
                    tracing::warn!(url = %self.url, status = r.status().as_u16(), "the collector refuses spans; they are dropped until it takes them")
                }
                Err(e) => {
                    tracing::warn!(url = %self.url, error = %e, "the collector is unreachable; spans are dropped until it is back")
                }
            }
        }
        answer
    }
}
