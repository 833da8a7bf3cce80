//! Cross-cutting layers: request ids, tracing spans, HTTP metrics, panics and bare error
//! statuses turned into problem+json.

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderName, Response as HttpResponse};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::{Duration, Instant};
use tracing::Span;

use crate::problem::{self, Problem};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The route template (`/v1/applications/{id}`), never the raw path: labels must stay few.
fn route_of(req: &Request) -> String {
    req.extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string())
}

pub fn make_span(req: &Request) -> Span {
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "http",
        method = %req.method(),
        route = %route_of(req),
        path = %req.uri().path(),
        request_id,
        credential = tracing::field::Empty,
        status = tracing::field::Empty,
    )
}

pub fn on_response(response: &Response, latency: Duration, span: &Span) {
    span.record("status", response.status().as_u16());
    tracing::info!(
        status = response.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1e3,
        "response"
    );
}

pub async fn record_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = match req.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m.to_string(),
        _ => "other".to_string(),
    };
    let route = route_of(&req);
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(
        "enrollstream_http_requests_total",
        "method" => method,
        "route" => route.clone(),
        "status" => status
    )
    .increment(1);
    metrics::histogram!("enrollstream_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Errors made outside our handlers (405 from method routing, anything from a layer) come with
/// a plain or empty body; rewrite them as problem+json, keeping their headers (`Allow`).
pub async fn problem_for_bare_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let response = next.run(req).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(problem::CONTENT_TYPE));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let detail = match status.as_u16() {
        405 => {
            let allow = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            format!("{method} is not allowed on {path}; allowed: {allow}")
        }
        // A server error's text may name internals: logged, not sent.
        _ if status.is_server_error() => {
            if !text.is_empty() {
                tracing::error!(status = status.as_u16(), error = %text, "server error");
            }
            status.canonical_reason().unwrap_or("error").to_string()
        }
        _ if !text.is_empty() => text,
        _ => status.canonical_reason().unwrap_or("error").to_string(),
    };
    let mut rewritten = Problem::from_status(status, detail).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().append(name.clone(), value.clone());
        }
    }
    rewritten
}

pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> HttpResponse<Body> {
    Problem::internal("the request handler panicked").into_response()
}

pub async fn route_not_found(uri: axum::http::Uri) -> Problem {
    Problem::route_not_found(uri.path())
}
