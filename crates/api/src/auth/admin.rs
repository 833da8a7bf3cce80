//! Key management over HTTP, for `admin` credentials: what `enrollstream api-key` does, for
//! operators who cannot run the binary beside the store. A new key is in the 201's body once.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, MethodRouter};
use axum::{Extension, Json};
use enrollstream_domain::FieldError;
use enrollstream_ports::KeyCreation;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{keys, Principal, Scope};
use crate::extract::Body;
use crate::problem::Problem;
use crate::Shared;

pub const KEYS: &str = "/v1/admin/api-keys";
pub const KEY: &str = "/v1/admin/api-keys/{name}";

/// Body of `POST /v1/admin/api-keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Unique for ever; what logs name.
    pub name: String,
    pub scopes: Vec<Scope>,
}

pub(crate) fn routes() -> Vec<(&'static str, MethodRouter<Shared>)> {
    vec![(KEYS, get(list).post(create)), (KEY, delete(revoke))]
}

async fn create(
    State(shared): State<Shared>,
    Extension(by): Extension<Principal>,
    body: Body,
) -> Result<Response, Problem> {
    let request: CreateKey = crate::dto::decode(&body.command_json()?)?;
    let (key, record) = keys::new_key(&request.name, &request.scopes, shared.api.clock.now())
        .map_err(|reason| {
            let field = if request.scopes.is_empty() {
                "scopes"
            } else {
                "name"
            };
            Problem::invalid(vec![FieldError::new(field, reason)])
        })?;
    match shared
        .auth
        .keys()
        .create_api_key(&record)
        .await
        .map_err(|e| Problem::store(&e))?
    {
        KeyCreation::Created => {
            tracing::info!(credential = %by.name, key_name = %record.name, scopes = ?record.scopes, "API key created");
            let mut body = keys::listed(&record);
            body["key"] = Value::String(key);
            let mut response = (StatusCode::CREATED, Json(body)).into_response();
            if let Ok(location) = HeaderValue::from_str(&format!("{KEYS}/{}", record.name)) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(response)
        }
        KeyCreation::NameTaken => Err(Problem::new(
            StatusCode::CONFLICT,
            "name-taken",
            "The key name is taken",
            format!(
                "a key named {:?} exists or existed; names are never reused",
                record.name
            ),
        )
        .with_errors(vec![FieldError::new("name", "is taken")])),
    }
}

async fn list(State(shared): State<Shared>) -> Result<Json<Value>, Problem> {
    let all = shared
        .auth
        .keys()
        .api_keys()
        .await
        .map_err(|e| Problem::store(&e))?;
    Ok(Json(
        json!({"keys": all.iter().map(keys::listed).collect::<Vec<_>>()}),
    ))
}

async fn revoke(
    State(shared): State<Shared>,
    Extension(by): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    let revoked = shared
        .auth
        .keys()
        .revoke_api_key(&name, shared.api.clock.now())
        .await
        .map_err(|e| Problem::store(&e))?;
    if !revoked {
        return Err(Problem::not_found("active API key", &name));
    }
    tracing::info!(credential = %by.name, key_name = %name, "API key revoked");
    Ok(StatusCode::NO_CONTENT)
}
