//! A small OTLP/HTTP trace receiver on a random port of 127.0.0.1: takes
//! `POST /v1/traces` in protobuf (`application/x-protobuf`), as a collector does, and keeps
//! every span it was sent for the test to look at.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// Larger requests are refused (the exporter sends batches of at most a few hundred spans).
const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// A span as received, ids in lower-case hex (the parent empty for a root).
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    /// Attribute values as text.
    pub attributes: BTreeMap<String, String>,
    /// `service.name` of the resource the span came with.
    pub service: String,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

#[derive(Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    requests: usize,
}

/// The receiver; stops when dropped.
pub struct OtlpReceiver {
    base_url: String,
    received: Arc<Mutex<Received>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl OtlpReceiver {
    /// Bind a random port of 127.0.0.1 and serve on the current runtime.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("OTLP receiver cannot bind 127.0.0.1: {e}"));
        let addr = listener.local_addr().expect("bound address");
        let received = Arc::new(Mutex::new(Received::default()));
        let server = tokio::spawn(accept(listener, received.clone()));
        Self {
            base_url: format!("http://{addr}"),
            received,
            server,
        }
    }

    /// `http://127.0.0.1:PORT`, the base URL an exporter is given.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        lock(&self.received).spans.clone()
    }

    /// Export requests taken so far.
    pub fn requests(&self) -> usize {
        lock(&self.received).requests
    }
}

fn lock(m: &Mutex<Received>) -> std::sync::MutexGuard<'_, Received> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn accept(listener: TcpListener, received: Arc<Mutex<Received>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let received = received.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, received.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    received: Arc<Mutex<Received>>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let reply = |status: u16, body: Vec<u8>| {
        Response::builder()
            .status(status)
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    };
    let protobuf = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-protobuf"));
    if req.method() != hyper::Method::POST || req.uri().path() != "/v1/traces" || !protobuf {
        return Ok(reply(404, Vec::new()));
    }
    let Ok(body) = Limited::new(req.into_body(), MAX_REQUEST_BYTES)
        .collect()
        .await
    else {
        return Ok(reply(413, Vec::new()));
    };
    let Ok(export) = ExportTraceServiceRequest::decode(body.to_bytes()) else {
        return Ok(reply(400, Vec::new()));
    };
    let mut received = lock(&received);
    received.requests += 1;
    for resource_spans in export.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                received.spans.push(ReceivedSpan {
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent_span_id: hex::encode(&span.parent_span_id),
                    name: span.name,
                    attributes: attributes(&span.attributes),
                    service: service.clone(),
                });
            }
        }
    }
    Ok(reply(
        200,
        ExportTraceServiceResponse::default().encode_to_vec(),
    ))
}

fn attributes(
    pairs: &[opentelemetry_proto::tonic::common::v1::KeyValue],
) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            (kv.key.clone(), value)
        })
        .collect()
}
