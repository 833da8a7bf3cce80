//! The OpenAPI document's security: the two ways to send an API key (and a JWT as bearer), the
//! scope each operation needs, its 401/403/429 answers, and the GraphQL routes.

use axum::http::Method;
use serde_json::{json, Value};

use crate::auth::access::{self, Access};
use crate::auth::admin;
use crate::auth::Scope;

pub fn document(doc: &mut Value) {
    doc["components"]["securitySchemes"] = json!({
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`enrollstream api-key create`), or a JWT where `[auth.jwt]` is configured."
        },
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}
    });
    let problem =
        json!({"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}});
    let answer =
        |description: &str| json!({"description": description, "content": problem.clone()});
    doc["paths"]["/graphql"]["post"] = json!({
        "summary": "GraphQL: the mutations of the commands, and queries of quotes and applications (SDL at /graphql/schema.graphql)",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["query"], "properties": {"query": {"type": "string"}, "variables": {"type": "object"}, "operationName": {"type": "string"}}}}}},
        "responses": {"200": {"description": "A GraphQL response; errors carry `extensions.code`, the problem type slugs of REST"}},
    });
    doc["paths"]["/graphql/schema.graphql"]["get"] = json!({
        "summary": "The GraphQL schema (SDL)",
        "responses": {"200": {"description": "SDL", "content": {"text/plain": {"schema": {"type": "string"}}}}},
    });
    let scopes: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    let listed = json!({"type": "object", "properties": {
        "name": {"type": "string"},
        "scopes": {"type": "array", "items": {"enum": scopes}},
        "created_at": {"type": "string", "format": "date-time"},
        "last_used_at": {"type": ["string", "null"], "format": "date-time"},
        "revoked_at": {"type": ["string", "null"], "format": "date-time"},
    }});
    doc["paths"][admin::KEYS]["get"] = json!({
        "summary": "Every API key (never a key itself)",
        "responses": {"200": {"description": "The keys", "content": {"application/json": {"schema": {"type": "object", "properties": {"keys": {"type": "array", "items": listed}}}}}}},
    });
    doc["paths"][admin::KEYS]["post"] = json!({
        "summary": "Create an API key; the 201 carries the key, this once",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {
            "type": "object", "required": ["name", "scopes"], "additionalProperties": false,
            "properties": {"name": {"type": "string", "pattern": "^[A-Za-z0-9._@-]{1,64}$"}, "scopes": {"type": "array", "minItems": 1, "items": {"enum": scopes}}},
        }}}},
        "responses": {
            "201": {"description": "Created: `key` is the secret, shown only now", "content": {"application/json": {"schema": {"allOf": [listed, {"type": "object", "properties": {"key": {"type": "string"}}}]}}}},
            "409": answer("a key of that name exists or existed"),
            "422": answer("the body does not match its schema"),
        },
    });
    doc["paths"][admin::KEY]["delete"] = json!({
        "summary": "Revoke an API key; API processes refuse it within [auth] key_cache_ttl",
        "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
        "responses": {"204": {"description": "Revoked"}, "404": answer("no active key of that name")},
    });
    let html = json!({"text/html": {"schema": {"type": "string"}}});
    doc["paths"][crate::ui::PATH]["get"] = json!({
        "summary": "The operator's dashboard (static; its data calls need an `admin` credential)",
        "responses": {"200": {"description": "The dashboard's shell", "content": html}},
    });
    doc["paths"][crate::ui::ASSET_PATH]["get"] = json!({
        "summary": "A file of the dashboard (HTML, CSS, ES modules), served with a strict Content-Security-Policy",
        "parameters": [{"name": "asset", "in": "path", "required": true, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "The file"}, "404": {"description": "No such file"}},
    });
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in operations.iter_mut() {
            let Ok(method) = method.to_ascii_uppercase().parse::<Method>() else {
                continue;
            };
            let scope = match access::required(&method, path, false) {
                Access::Public => continue,
                Access::Authenticated => None,
                Access::Scope(scope) => Some(scope.as_str()),
            };
            let scopes: Vec<&str> = scope.into_iter().collect();
            op["security"] = json!([{"bearer": scopes}, {"apiKey": scopes}]);
            if let Some(scope) = scope {
                op["x-required-scope"] = json!(scope);
                op["responses"]["403"] = answer(&format!(
                    "the credential lacks the scope `{scope}` (or `admin`)"
                ));
            }
            op["responses"]["401"] =
                answer("no credential, or one that is unknown, revoked or malformed");
            op["responses"]["429"] = answer("over this credential's request rate; see Retry-After");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_protected_operation_names_its_security() {
        let doc = crate::openapi();
        assert!(doc["paths"]["/graphql"]["post"]["security"].is_array());
        assert!(doc["paths"]["/healthz"]["get"]["security"].is_null());
        assert_eq!(
            doc["paths"]["/v1/quotes"]["post"]["x-required-scope"],
            "quotes:write"
        );
        assert_eq!(
            doc["paths"]["/v1/applications/{id}"]["get"]["x-required-scope"],
            "read"
        );
        assert!(doc["paths"]["/metrics"]["get"]["responses"]["403"].is_object());
        assert_eq!(
            doc["paths"]["/v1/admin/api-keys"]["post"]["x-required-scope"],
            "admin"
        );
    }
}
