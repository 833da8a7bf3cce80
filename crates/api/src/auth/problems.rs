//! The answers of the guard: 401 (no or bad credential), 403 (missing scope), 429 (rate).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::scope::Scope;
use crate::problem::Problem;

pub fn unauthenticated(detail: &str) -> Response {
    let mut response = Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "A valid credential is required",
        format!("{detail}; send `Authorization: Bearer KEY` or `X-Api-Key: KEY`"),
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"enrollstream\""),
    );
    response
}

pub fn forbidden_problem(name: &str, scope: Scope) -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "The credential lacks the scope this needs",
        format!("credential {name:?} does not have the scope {scope:?}"),
    )
    .with_extension("required_scope", Value::String(scope.as_str().into()))
}

pub fn rate_limited(retry_after: u64) -> Problem {
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        "Too many requests for this credential",
        format!("the request rate of this credential is over its limit; retry in {retry_after} s"),
    )
    .with_retry_after(retry_after)
}
