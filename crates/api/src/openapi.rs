//! The OpenAPI 3.1 document of this API. Bodies are described by schemas generated from the very
//! types the handlers decode and encode, so the document cannot drift from the code on shapes;
//! a test checks it lists every route of the router.

use enrollstream_domain::limits::Limits;
use enrollstream_domain::{Application, CloudEvent, Quote};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::dto;
use crate::ingest::{BATCH, STRUCTURED};
use crate::ops::PROMETHEUS_TEXT;
use crate::problem;

pub fn openapi() -> Value {
    let mut gen = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas/".into())
        .into_generator();
    let mut paths = paths(&mut gen);
    let mut schemas = gen.take_definitions(true);
    schemas.insert("Problem".into(), problem_schema());
    // The default bounds (`[limits]`, configurable) on the fields the schemas describe, and on
    // the inline bodies of the paths.
    let limits = Limits::default();
    for schema in schemas.values_mut() {
        bound(schema, &limits);
    }
    bound(&mut paths, &limits);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "enrollstream API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Commands on quotes and enrollment applications become validated \
                CloudEvents on the bus and are answered 202 once the bus has them durably; reads \
                come from the read model the projector builds. Read-your-writes: pass a command's \
                `event_id` as `?after=` or `X-Enrollstream-After`. Commands on one entity made \
                through one API process wait for each other automatically. The API checks \
                commands against the read model; the projector is the authority and dead-letters \
                a command that lost a race, with its reason. Every error is RFC 9457 \
                `application/problem+json` with the offending fields in `errors`. Every event is \
                bounded (`x-enrollstream-limits`, the defaults; operators set them under \
                `[limits]`): ids are 1 to `max_id_len` of `A-Z a-z 0-9 - _ :`; free text at most \
                `max_text_len` characters without control characters (tab and newline allowed); \
                other strings at most `max_string_len`; `data` at most `max_depth` levels deep \
                with at most `max_items` members or items per object or array; integers within \
                64-bit signed range; an event at most `max_event_bytes` as JSON; `time` (and \
                `signed_at`) at most `max_event_age` old and `max_clock_skew` ahead.",
            "x-enrollstream-limits": limits_document(),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": parameters(),
        },
    })
}

fn paths(gen: &mut SchemaGenerator) -> Value {
    let quote_accepted = accepted::<dto::QuoteAccepted>(gen);
    let application_accepted = accepted::<dto::ApplicationAccepted>(gen);
    let quote_view = json!({"allOf": [gen.subschema_for::<Quote>(), gen.subschema_for::<dto::ReadModelFields>()]});
    let application_view = json!({"allOf": [gen.subschema_for::<Application>(), gen.subschema_for::<dto::ReadModelFields>()]});
    let event_log = gen.subschema_for::<dto::EventLog>();
    let cloud_event = gen.subschema_for::<CloudEvent>();

    let mut p = Map::new();
    let mut add = |path: &str, method: &str, op: Value| {
        p.entry(path.to_string()).or_insert_with(|| json!({}))[method] = op;
    };
    let body = schema::<dto::CreateQuote>(gen);
    add(
        "/v1/quotes",
        "post",
        command(
            "Create a quote (priced) or request one (without premium)",
            body,
            &quote_accepted,
            false,
        ),
    );
    add(
        "/v1/quotes/{id}",
        "get",
        read("The current state of a quote", quote_view),
    );
    let body = schema::<dto::UpdateQuote>(gen);
    add(
        "/v1/quotes/{id}",
        "patch",
        command(
            "Change a quote's premium and/or product",
            body,
            &quote_accepted,
            true,
        ),
    );
    add(
        "/v1/quotes/{id}/events",
        "get",
        read("A quote's event log, oldest first", event_log.clone()),
    );
    let body = schema::<dto::StartApplication>(gen);
    add(
        "/v1/applications",
        "post",
        command(
            "Start an enrollment application",
            body,
            &application_accepted,
            false,
        ),
    );
    add(
        "/v1/applications/{id}",
        "get",
        read("The current state of an application", application_view),
    );
    add(
        "/v1/applications/{id}/events",
        "get",
        read("An application's event log, oldest first", event_log),
    );
    for (action, summary, body) in [
        (
            "submit",
            "Submit an application (by a broker or by the member)",
            schema::<dto::SubmitApplication>(gen),
        ),
        (
            "signature",
            "Record the member's signature",
            schema::<dto::SignApplication>(gen),
        ),
        (
            "approve",
            "Approve a signed application (body optional)",
            schema::<dto::ApproveApplication>(gen),
        ),
        (
            "decline",
            "Decline a submitted application",
            schema::<dto::DeclineApplication>(gen),
        ),
        (
            "withdraw",
            "Withdraw an open application (body optional)",
            schema::<dto::WithdrawApplication>(gen),
        ),
    ] {
        let op = command(summary, body, &application_accepted, true);
        add(&format!("/v1/applications/{{id}}/{action}"), "post", op);
    }

    let events_accepted = accepted::<dto::EventsAccepted>(gen);
    let mut ingest = operation(
        "Publish CloudEvents from an upstream producer (one, or a batch)",
        vec![],
        Some(json!({
            "required": true,
            "content": {
                STRUCTURED: {"schema": cloud_event},
                BATCH: {"schema": {"type": "array", "minItems": 1, "items": cloud_event}},
                "application/json": {"schema": {"oneOf": [cloud_event, {"type": "array", "minItems": 1, "items": cloud_event}]}},
            },
        })),
        ok(
            202,
            "Every event was valid and is on the bus",
            events_accepted,
        ),
        &[400, 413, 415, 422, 503],
    );
    ingest["description"] = json!(
        "Structured-mode CloudEvents. Each needs `time`, a known `type` and `data` matching \
         `/v1/schemas/{type}`; transitions are not checked (these are facts; the projector \
         decides). All or nothing: one invalid event refuses the batch, naming `[index].field`. \
         The producer's `id` must be a UUID and is kept; the read model dedupes by `(source, \
         id)` and answers that key as `event_key` (pass it as `?after=`), so a retried batch is \
         harmless; `Idempotency-Key` is therefore not used on this route. Refused: types only \
         enrollstream produces (`signature_reminders_exhausted`), sources under \
         `/enrollstream/`, control characters in anything that becomes a header (`id`, \
         `source`, `type`, `subject`, extension attributes, which are strings, booleans or \
         integers named by 1 to 20 lower-case letters or digits), and everything outside the \
         limits of `info.x-enrollstream-limits`."
    );
    add("/v1/events", "post", ingest);

    add(
        "/v1/schemas",
        "get",
        operation(
            "Event types and where their data schemas are",
            vec![],
            None,
            ok(
                200,
                "The list",
                json!({"type": "object", "properties": {
            "envelope": {"type": "string"},
            "types": {"type": "array", "items": {"type": "object", "properties": {
                "type": {"type": "string"}, "schema": {"type": "string"}}}}}}),
            ),
            &[],
        ),
    );
    add(
        "/v1/schemas/cloudevent",
        "get",
        schema_op("The JSON Schema of the CloudEvents envelope", vec![]),
    );
    add(
        "/v1/schemas/{type}",
        "get",
        schema_op(
            "The JSON Schema of one event type's data",
            vec![
                json!({"name": "type", "in": "path", "required": true, "schema": {"type": "string"}}),
            ],
        ),
    );
    add(
        "/openapi.json",
        "get",
        operation(
            "This document",
            vec![],
            None,
            ok(200, "OpenAPI 3.1", json!({"type": "object"})),
            &[],
        ),
    );
    add(
        "/healthz",
        "get",
        operation(
            "Liveness: 200 while the process runs",
            vec![],
            None,
            ok(
                200,
                "Alive",
                json!({"type": "object", "properties": {"status": {"const": "ok"}}}),
            ),
            &[],
        ),
    );
    add(
        "/readyz",
        "get",
        operation(
            "Readiness: store, bus and every running role are ready",
            vec![],
            None,
            ok(
                200,
                "Ready",
                json!({"type": "object", "properties": {
            "status": {"const": "ready"},
            "components": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                "ready": {"type": "boolean"}, "detail": {"type": "string"}}}}}}),
            ),
            &[503],
        ),
    );
    let mut metrics = operation("Prometheus metrics", vec![], None, json!({}), &[]);
    metrics["responses"]["200"] = json!({"description": "Text exposition format",
        "content": {PROMETHEUS_TEXT: {"schema": {"type": "string"}}}});
    add("/metrics", "get", metrics);
    Value::Object(p)
}

/// The default limits as the document states them.
fn limits_document() -> Value {
    let mut v = serde_json::to_value(Limits::default()).expect("limits serialise");
    v["id_pattern"] = json!(ID_PATTERN);
    v
}

const ID_PATTERN: &str = "^[A-Za-z0-9_:-]+$";

/// `maxLength`, `pattern` and ranges on the properties the limits bound, by name, wherever they
/// appear in `schema`.
fn bound(schema: &mut Value, limits: &Limits) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get_mut("properties") {
                for (name, prop) in props.iter_mut() {
                    let Value::Object(p) = prop else { continue };
                    let is_string = p.get("type").is_some_and(|t| {
                        t == "string" || t.as_array().is_some_and(|a| a.contains(&json!("string")))
                    });
                    match name.as_str() {
                        "customer_id" | "quote_id" | "application_id" | "subject" | "entity_id"
                            if is_string =>
                        {
                            p.insert("maxLength".into(), json!(limits.max_id_len));
                            p.insert("pattern".into(), json!(ID_PATTERN));
                        }
                        "name" | "product" | "reason" | "signed_by" | "approved_by"
                            if is_string =>
                        {
                            p.insert("maxLength".into(), json!(limits.max_text_len));
                        }
                        "email" | "broker_email" if is_string => {
                            p.insert("maxLength".into(), json!(limits.max_email_len));
                        }
                        "amount_minor" => {
                            p.insert("maximum".into(), json!(limits.max_amount_minor));
                        }
                        _ => {}
                    }
                }
            }
            for v in map.values_mut() {
                bound(v, limits);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| bound(v, limits)),
        _ => {}
    }
}

fn accepted<T: JsonSchema>(gen: &mut SchemaGenerator) -> Value {
    schema::<T>(gen)
}

fn schema<T: JsonSchema>(gen: &mut SchemaGenerator) -> Value {
    gen.subschema_for::<T>().to_value()
}

/// A command: JSON body in, 202 with the ids out.
fn command(summary: &str, body: Value, accepted: &Value, on_existing: bool) -> Value {
    let mut params = vec![param("IdempotencyKey"), param("Traceparent")];
    let mut errors = vec![400, 413, 415, 422, 503];
    if on_existing {
        params.extend([param("EntityId"), param("AfterHeader")]);
        errors.extend([404, 409]);
    }
    operation(
        summary,
        params,
        Some(json_body(body)),
        ok(202, "Published to the bus", accepted.clone()),
        &errors,
    )
}

fn read(summary: &str, schema: impl Into<Value>) -> Value {
    let mut op = operation(
        summary,
        vec![
            param("EntityId"),
            param("After"),
            param("WaitMs"),
            param("AfterHeader"),
        ],
        None,
        ok(200, "From the read model", schema.into()),
        &[404, 409, 422, 503],
    );
    op["responses"]["409"]["description"] = json!(
        "not-yet-projected: the awaited event is not in the read model within the wait; \
         retry after `Retry-After` seconds"
    );
    op
}

fn schema_op(summary: &str, params: Vec<Value>) -> Value {
    let mut op = operation(summary, params, None, json!({}), &[404]);
    op["responses"]["200"] = json!({"description": "A JSON Schema (draft 2020-12)",
        "content": {"application/schema+json": {"schema": {"type": "object"}}}});
    op
}

fn json_body(schema: impl Into<Value>) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema.into()}}})
}

fn ok(status: u16, description: &str, schema: impl Into<Value>) -> Value {
    json!({status.to_string(): {"description": description, "content": {"application/json": {"schema": schema.into()}}}})
}

fn operation(
    summary: &str,
    parameters: Vec<Value>,
    body: Option<Value>,
    success: Value,
    errors: &[u16],
) -> Value {
    let mut responses = success.as_object().cloned().unwrap_or_default();
    for status in errors {
        let description = match status {
            400 => "Malformed JSON",
            404 => "Unknown entity (not in the read model yet)",
            409 => "The command does not fit the entity's status, or the awaited event is not projected yet",
            413 => "Body larger than the limit",
            415 => "Wrong Content-Type",
            422 => "Schema violation, naming each field and reason",
            503 => "Bus or store unavailable (Retry-After)",
            _ => "Error",
        };
        responses.insert(
            status.to_string(),
            json!({"description": description,
                "content": {problem::CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}),
        );
    }
    let mut op = json!({"summary": summary, "responses": responses});
    if !parameters.is_empty() {
        op["parameters"] = Value::Array(parameters);
    }
    if let Some(body) = body {
        op["requestBody"] = body;
    }
    op
}

fn param(name: &str) -> Value {
    json!({"$ref": format!("#/components/parameters/{name}")})
}

fn parameters() -> Value {
    json!({
        "EntityId": {"name": "id", "in": "path", "required": true, "schema": {"type": "string"},
            "description": "The quote or application id"},
        "After": {"name": "after", "in": "query", "required": false, "schema": {"type": "string"},
            "description": "Wait until this event id is projected before reading"},
        "WaitMs": {"name": "wait_ms", "in": "query", "required": false,
            "schema": {"type": "integer", "minimum": 0},
            "description": "Bound of the wait for `after`, capped by the server's max_read_wait"},
        "AfterHeader": {"name": "X-Enrollstream-After", "in": "header", "required": false,
            "schema": {"type": "string"},
            "description": "Comma-separated event ids (published elsewhere) to wait for first"},
        "IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": false,
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            "description": "A retry with the same key and the same request answers as the first \
                time (same event id) and publishes nothing new; with another request it is a 422"},
        "Traceparent": {"name": "traceparent", "in": "header", "required": false,
            "schema": {"type": "string"},
            "description": "W3C trace context: the event carries the API request's span in this trace, a child of this one"},
    })
}

fn problem_schema() -> Value {
    json!({
        "type": "object",
        "description": "RFC 9457 problem details",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "format": "uri", "examples": [format!("{}validation", problem::TYPE_BASE)]},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "errors": {"type": "array", "items": {
                "type": "object",
                "required": ["field", "reason"],
                "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
            }},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_of_the_router_is_documented() {
        let doc = openapi();
        for (path, method, _) in crate::routes() {
            let op = &doc["paths"][path][method.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "{method} {path} missing from openapi.json");
            assert!(
                !op["responses"].as_object().unwrap().is_empty(),
                "{method} {path} has no responses"
            );
        }
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(
            documented,
            crate::routes().len(),
            "openapi.json documents a route the router lacks"
        );
    }

    #[test]
    fn the_bounds_are_documented() {
        let doc = openapi();
        let limits = &doc["info"]["x-enrollstream-limits"];
        assert_eq!(limits["max_id_len"], 128);
        assert!(
            limits["max_event_age"].is_string(),
            "durations as in the config file"
        );
        let schemas = &doc["components"]["schemas"];
        let quote = &schemas["CreateQuote"]["properties"];
        assert_eq!(quote["customer_id"]["maxLength"], 128);
        assert_eq!(quote["customer_id"]["pattern"], ID_PATTERN);
        assert_eq!(quote["product"]["maxLength"], 1024);
        assert!(quote["amount_minor"]["maximum"].is_number());
        let applicant = &schemas["ApplicantInput"]["properties"];
        assert_eq!(applicant["email"]["maxLength"], 254);
        let ingest = doc["paths"]["/v1/events"]["post"]["description"]
            .as_str()
            .unwrap();
        assert!(ingest.contains("UUID") && ingest.contains("signature_reminders_exhausted"));
    }

    #[test]
    fn every_reference_resolves() {
        let doc = openapi();
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("non-local $ref {r}"));
            assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
        }
    }

    fn collect_refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| collect_refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn request_bodies_use_the_command_schemas() {
        let doc = openapi();
        let create = &doc["components"]["schemas"]["CreateQuote"];
        assert_eq!(create["additionalProperties"], false);
        assert!(create["required"]
            .as_array()
            .unwrap()
            .contains(&json!("customer_id")));
        assert!(doc["components"]["schemas"]["Application"].is_object());
    }
}
