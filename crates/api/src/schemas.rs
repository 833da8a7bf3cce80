//! The JSON Schemas of event data and of the envelope, generated from the domain types.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use enrollstream_domain::envelope::schema_uri;
use enrollstream_domain::schema::{data_schema, data_schemas, envelope_schema};
use serde_json::{json, Value};

use crate::extract::EntityId;
use crate::problem::Problem;

pub const ENVELOPE_PATH: &str = "/v1/schemas/cloudevent";
const SCHEMA_JSON: &str = "application/schema+json";

pub async fn list() -> Json<Value> {
    let types: Vec<Value> = data_schemas()
        .into_iter()
        .map(|(ty, _)| json!({"type": ty, "schema": schema_uri(ty)}))
        .collect();
    Json(json!({"envelope": ENVELOPE_PATH, "types": types}))
}

pub async fn envelope() -> Response {
    schema_response(envelope_schema())
}

pub async fn data(EntityId(event_type): EntityId) -> Result<Response, Problem> {
    data_schema(&event_type)
        .map(schema_response)
        .ok_or_else(|| Problem::not_found("event type", &event_type))
}

fn schema_response(schema: Value) -> Response {
    let mut response = Json(schema).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCHEMA_JSON));
    response
}
