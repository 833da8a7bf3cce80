//! The deliveries an entity caused, over HTTP, for `admin` credentials: what each delivery
//! runner journaled (the `DeliveryLog` port), newest first. A journal kept off the delivery
//! path: it may miss a delivery (counted in `enrollstream_delivery_log_dropped_total`), and
//! keeps 30 days.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, MethodRouter};
use axum::Json;
use enrollstream_ports::delivery_log::{DeliveryLog, DeliveryOutcome, MAX_ERROR};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

use crate::dlq::{invalid, limit, query, text, DEFAULT_LIMIT, MAX_LIMIT, MAX_TEXT};
use crate::problem::Problem;
use crate::Shared;

pub const LIST: &str = "/v1/admin/deliveries";

pub(crate) fn routes() -> Vec<(&'static str, MethodRouter<Shared>)> {
    vec![(LIST, get(list))]
}

fn log(shared: &Shared) -> Result<&Arc<dyn DeliveryLog>, Problem> {
    shared.api.deliveries.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "deliveries-unavailable",
            "The delivery log is not available here",
            "this process was started without access to the delivery log",
        )
    })
}

async fn list(
    State(shared): State<Shared>,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Problem> {
    query(&raw, &["entity_id", "limit"])?;
    let entity_id = text("entity_id", raw.get("entity_id"))?
        .ok_or_else(|| invalid("entity_id", "is required"))?;
    let limit = limit(raw.get("limit"))?;
    let records = log(&shared)?
        .by_entity(&entity_id, limit)
        .await
        .map_err(|e| Problem::store(&e))?;
    Ok(Json(json!({"entity_id": entity_id, "deliveries": records})))
}

/// The route in the OpenAPI document (`security` adds who may call it).
pub fn document(doc: &mut Value) {
    let problem =
        json!({"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}});
    let answer =
        |description: &str| json!({"description": description, "content": problem.clone()});
    let param = |name: &str, required: bool, description: &str, schema: Value| json!({"name": name, "in": "query", "required": required, "description": description, "schema": schema});
    let nullable = json!({"type": ["string", "null"]});
    let outcomes: Vec<&str> = DeliveryOutcome::ALL.iter().map(|o| o.as_str()).collect();
    let record = json!({"type": "object", "properties": {
        "notification_id": {"type": "string"},
        "event_id": nullable, "entity_kind": nullable,
        "entity_id": {"type": "string"},
        "target": {"type": "string", "description": "The runner's target name: logic_apps, salesforce, lead_management"},
        "outcome": {"enum": outcomes, "description": "skipped_duplicate: accepted again after this process had delivered it (a redelivery the target dedupes by its idempotency key)"},
        "attempts": {"type": "integer"},
        "status": {"type": ["integer", "null"], "description": "HTTP status of the last answer"},
        "error": {"type": ["string", "null"], "maxLength": MAX_ERROR, "description": "Why the last attempt failed"},
        "dlq_topic": {"type": ["string", "null"], "description": "Where a dead-lettered notification went: <topic>.<target>.dlq"},
        "at": {"type": "string", "format": "date-time"},
    }});
    doc["paths"][LIST]["get"] = json!({
        "summary": "The deliveries an entity caused, newest first (kept 30 days)",
        "parameters": [
            param("entity_id", true, "The quote or application id", json!({"type": "string", "maxLength": MAX_TEXT})),
            param("limit", false, "At most this many", json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT})),
        ],
        "responses": {
            "200": {"description": "The entity's delivery records", "content": {"application/json": {"schema": {"type": "object", "properties": {
                "entity_id": {"type": "string"}, "deliveries": {"type": "array", "items": record}}}}}},
            "422": answer("entity_id is missing, or a parameter is unknown or out of bounds"),
            "503": answer("the delivery log is unavailable, or not open in this process"),
        },
    });
}
