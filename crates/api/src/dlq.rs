//! Dead letters over HTTP, for `admin` credentials: what `enrollstream dlq` does, through the
//! `DeadLetters` port (the runners' service, wired by the binary). Every redrive, dry runs
//! included, is recorded in the audit under the credential's name. A redrive is a dry run
//! unless the body says `"dry_run": false`: a bare request never moves anything.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, MethodRouter};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use enrollstream_domain::FieldError;
use enrollstream_ports::{
    DeadLetterError, DeadLetterFilter, DeadLetters, DlqName, RedriveRequest, RedriveSelection,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

use crate::auth::Principal;
use crate::extract::Body;
use crate::problem::Problem;
use crate::Shared;

pub const LIST: &str = "/v1/admin/dlq";
pub const ONE: &str = "/v1/admin/dlq/{id}";
pub const REDRIVE: &str = "/v1/admin/dlq/redrive";
pub const AUDIT: &str = "/v1/admin/dlq/audit";

pub(crate) const DEFAULT_LIMIT: usize = 100;
pub(crate) const MAX_LIMIT: usize = 1000;
/// Ids one redrive may name, and dead letters one filtered redrive moves at most.
const MAX_IDS: usize = 1000;
pub(crate) const MAX_TEXT: usize = 512;

pub(crate) fn routes() -> Vec<(&'static str, MethodRouter<Shared>)> {
    vec![
        (LIST, get(list)),
        (AUDIT, get(audit)),
        (REDRIVE, post(redrive)),
        (ONE, get(inspect)),
    ]
}

fn service(shared: &Shared) -> Result<&Arc<dyn DeadLetters>, Problem> {
    shared.api.dead_letters.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "dead-letters-unavailable",
            "Dead letters are not available here",
            "this process was started without access to the dead-letter topics",
        )
    })
}

fn problem(field: &str, e: DeadLetterError) -> Problem {
    match e {
        DeadLetterError::Invalid(reason) => Problem::invalid(vec![FieldError::new(field, reason)]),
        DeadLetterError::Bus(e) => Problem::bus(&e),
        DeadLetterError::Store(e) => Problem::store(&e),
    }
}

pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> Problem {
    Problem::invalid(vec![FieldError::new(field, reason)])
}

pub(crate) fn text(field: &str, value: Option<&String>) -> Result<Option<String>, Problem> {
    match value {
        Some(v) if v.is_empty() || v.len() > MAX_TEXT => Err(invalid(
            field,
            format!("must be 1 to {MAX_TEXT} characters"),
        )),
        other => Ok(other.cloned()),
    }
}

pub(crate) fn limit(raw: Option<&String>) -> Result<usize, Problem> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| invalid("limit", format!("must be an integer from 1 to {MAX_LIMIT}"))),
    }
}

/// The query of a listing: only the parameters it knows.
pub(crate) fn query(raw: &HashMap<String, String>, known: &[&str]) -> Result<(), Problem> {
    match raw.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(invalid(
            unknown,
            format!("unknown parameter; known: {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

fn time(field: &str, raw: Option<&String>) -> Result<Option<DateTime<Utc>>, Problem> {
    raw.map(|t| {
        DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| invalid(field, "must be an RFC 3339 time"))
    })
    .transpose()
}

async fn list(
    State(shared): State<Shared>,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Problem> {
    let known = [
        "topic",
        "target",
        "reason",
        "entity_id",
        "since",
        "until",
        "limit",
    ];
    query(&raw, &known)?;
    let dlq = DlqName {
        topic: text("topic", raw.get("topic"))?.ok_or_else(|| invalid("topic", "is required"))?,
        target: text("target", raw.get("target"))?,
    };
    let filter = DeadLetterFilter {
        reason: text("reason", raw.get("reason"))?,
        entity_id: text("entity_id", raw.get("entity_id"))?,
        failed_since: time("since", raw.get("since"))?,
        failed_until: time("until", raw.get("until"))?,
    };
    let limit = limit(raw.get("limit"))?;
    let dead_letters = service(&shared)?;
    let topic = dead_letters
        .resolve(&dlq)
        .map_err(|e| problem("topic", e))?;
    let listed = dead_letters
        .list(&dlq, &filter, limit)
        .await
        .map_err(|e| problem("topic", e))?;
    Ok(Json(json!({"topic": topic, "dead_letters": listed})))
}

async fn inspect(
    State(shared): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    if id.len() > MAX_TEXT {
        return Err(invalid("id", format!("at most {MAX_TEXT} characters")));
    }
    service(&shared)?
        .inspect(&id)
        .await
        .map_err(|e| problem("id", e))?
        .map(Json)
        .ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                format!("no dead letter {id:?}"),
            )
            .with_errors(vec![FieldError::new("id", "no such dead letter")])
        })
}

/// Body of `POST /v1/admin/dlq/redrive`: `ids`, or `topic` (and `target`) with filters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Redrive {
    #[serde(default)]
    ids: Option<Vec<String>>,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    entity_id: Option<String>,
    #[serde(default)]
    since: Option<DateTime<Utc>>,
    #[serde(default)]
    until: Option<DateTime<Utc>>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default = "dry_run_by_default")]
    dry_run: bool,
}

fn dry_run_by_default() -> bool {
    true
}

impl Redrive {
    fn selection(self) -> Result<(RedriveSelection, bool), Problem> {
        let selection = match (self.ids, self.topic) {
            (Some(_), Some(_)) => return Err(invalid("ids", "name ids or a topic, not both")),
            (None, None) => return Err(invalid("topic", "name ids or a topic")),
            (Some(ids), None) => {
                if ids.is_empty() || ids.len() > MAX_IDS {
                    return Err(invalid("ids", format!("must name 1 to {MAX_IDS} ids")));
                }
                for (i, id) in ids.iter().enumerate() {
                    text(&format!("ids[{i}]"), Some(id))?;
                }
                RedriveSelection::Ids(ids)
            }
            (None, Some(topic)) => {
                if self.limit.is_some_and(|n| !(1..=MAX_IDS).contains(&n)) {
                    return Err(invalid("limit", format!("must be from 1 to {MAX_IDS}")));
                }
                RedriveSelection::Filter {
                    dlq: DlqName {
                        topic: text("topic", Some(&topic))?.unwrap_or_default(),
                        target: text("target", self.target.as_ref())?,
                    },
                    filter: DeadLetterFilter {
                        reason: text("reason", self.reason.as_ref())?,
                        entity_id: text("entity_id", self.entity_id.as_ref())?,
                        failed_since: self.since,
                        failed_until: self.until,
                    },
                    limit: Some(self.limit.unwrap_or(MAX_IDS)),
                }
            }
        };
        Ok((selection, self.dry_run))
    }
}

async fn redrive(
    State(shared): State<Shared>,
    Extension(by): Extension<Principal>,
    body: Body,
) -> Result<Json<Value>, Problem> {
    let request: Redrive = crate::dto::decode(&body.command_json()?)?;
    let (selection, dry_run) = request.selection()?;
    let field = match selection {
        RedriveSelection::Ids(_) => "ids",
        RedriveSelection::Filter { .. } => "topic",
    };
    let report = service(&shared)?
        .redrive(&RedriveRequest {
            selection,
            dry_run,
            by: by.name.clone(),
        })
        .await
        .map_err(|e| problem(field, e))?;
    Ok(Json(serde_json::to_value(&report).map_err(|e| {
        Problem::internal(format!("redrive report: {e}"))
    })?))
}

async fn audit(
    State(shared): State<Shared>,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Problem> {
    query(&raw, &["limit"])?;
    let limit = limit(raw.get("limit"))?;
    let redrives = service(&shared)?
        .audit(limit)
        .await
        .map_err(|e| problem("limit", e))?;
    Ok(Json(json!({"redrives": redrives})))
}

/// The routes in the OpenAPI document (`security` adds who may call them).
pub fn document(doc: &mut Value) {
    let problem =
        json!({"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}});
    let answer =
        |description: &str| json!({"description": description, "content": problem.clone()});
    let ok = |description: &str, schema: Value| json!({"description": description, "content": {"application/json": {"schema": schema}}});
    let string = |description: &str| json!({"type": "string", "maxLength": MAX_TEXT, "description": description});
    let param = |name: &str, description: &str, schema: Value| json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema});
    let time = json!({"type": "string", "format": "date-time"});
    let limit =
        json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT});
    let dead_letter = json!({"type": "object", "description": "id (DLQ_TOPIC:PARTITION:OFFSET), topic, original_topic, original_partition, original_offset, target, consumer_group, reason, error, attempts, first_failure, last_failure, redrives, redriven, event_id, entity_id, payload (and headers, when inspected)", "properties": {"id": {"type": "string"}, "reason": {"type": ["string", "null"]}, "payload": {}}});
    let mut filters = vec![
        json!({"name": "topic", "in": "query", "required": true, "description": "The original topic, e.g. enrollment-events (its .dlq is read)", "schema": string("")}),
        param(
            "target",
            "A delivery target (logic-apps, salesforce, lead-management): read <topic>.<target>.dlq",
            string(""),
        ),
        param("reason", "Only this dlq_reason", string("")),
        param("entity_id", "Only this entity (the message key)", string("")),
        param("since", "Failed at or after", time.clone()),
        param("until", "Failed before", time.clone()),
    ];
    filters.push(param("limit", "At most this many", limit.clone()));
    doc["paths"][LIST]["get"] = json!({
        "summary": "Dead letters of one DLQ topic, filtered",
        "parameters": filters,
        "responses": {
            "200": ok("The DLQ topic read and its dead letters", json!({"type": "object", "properties": {"topic": {"type": "string"}, "dead_letters": {"type": "array", "items": dead_letter}}})),
            "422": answer("a parameter is unknown, out of bounds, or names no known topic or target"),
            "503": answer("the bus is unavailable"),
        },
    });
    doc["paths"][ONE]["get"] = json!({
        "summary": "One dead letter, whole (payload, reason, attempts, first and last failure, headers)",
        "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "maxLength": MAX_TEXT}, "description": "DLQ_TOPIC:PARTITION:OFFSET"}],
        "responses": {
            "200": ok("The dead letter", dead_letter),
            "404": answer("no dead letter of that id"),
            "422": answer("not an id of a known DLQ topic"),
        },
    });
    let outcome = json!({"type": "object", "properties": {"id": {"type": "string"}, "action": {"enum": ["moved", "would_move", "skipped"]}, "to": {"type": "string"}, "reason": {"type": "string"}}});
    doc["paths"][REDRIVE]["post"] = json!({
        "summary": "Redrive dead letters (a dry run unless dry_run is false), recorded in the audit",
        "description": "Name `ids`, or a `topic` (and `target`) with filters. A dead letter moves once; a delivery dead letter goes to its one target only; one redriven `[dlq] max_redrives` times stays parked.",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "ids": {"type": "array", "minItems": 1, "maxItems": MAX_IDS, "items": {"type": "string", "maxLength": MAX_TEXT}},
                "topic": string("The original topic"), "target": string("A delivery target"),
                "reason": string("Only this dlq_reason"), "entity_id": string("Only this entity"),
                "since": time.clone(), "until": time,
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_IDS, "default": MAX_IDS},
                "dry_run": {"type": "boolean", "default": true},
            },
        }}}},
        "responses": {
            "200": ok("What moved (or would move) and what was skipped, and the audit record's id", json!({"type": "object", "properties": {
                "audit_id": {"type": "string"}, "dry_run": {"type": "boolean"}, "topics": {"type": "array", "items": {"type": "string"}},
                "moved": {"type": "integer"}, "skipped": {"type": "integer"}, "outcomes": {"type": "array", "items": outcome}}})),
            "422": answer("the body does not match its schema, or names no known topic, target or id"),
            "503": answer("the bus or the audit is unavailable; nothing moved unless the audit says so"),
        },
    });
    doc["paths"][AUDIT]["get"] = json!({
        "summary": "The audit of redrives, newest first: who, when, what, dry run or not, result",
        "parameters": [param("limit", "At most this many", limit)],
        "responses": {
            "200": ok("The redrives", json!({"type": "object", "properties": {"redrives": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string"}, "at": {"type": "string", "format": "date-time"}, "by": {"type": "string"}, "dry_run": {"type": "boolean"},
                "selection": {"type": "object"}, "status": {"enum": ["started", "completed", "failed"]},
                "moved": {"type": "integer"}, "skipped": {"type": "integer"},
                "finished_at": {"type": ["string", "null"], "format": "date-time"}, "error": {"type": ["string", "null"]}}}}}})),
            "422": answer("a parameter is unknown or out of bounds"),
        },
    });
}
