//! Liveness, readiness and metrics for orchestrators and scrapers.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use std::time::Duration;

use crate::auth::Scope;
use crate::problem::Problem;
use crate::Shared;

pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4";

/// A check that hangs counts as failed: `/readyz` must answer quickly to be of any use.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Public, so by default it names each component and whether it is ready, not why: the reasons
/// are driver errors (hosts, internals) and go to the log. An `admin` credential sees them.
pub async fn readyz(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    let api = &shared.api;
    let detailed = shared
        .auth
        .authenticate(&headers)
        .await
        .is_ok_and(|p| p.allows(Scope::Admin));
    let (store, bus, backlog) = tokio::join!(
        tokio::time::timeout(CHECK_TIMEOUT, api.store.check()),
        tokio::time::timeout(CHECK_TIMEOUT, api.bus.check()),
        tokio::time::timeout(CHECK_TIMEOUT, api.store.outbox_backlog()),
    );
    // How many recorded notifications still wait for the relay: an operator's first question
    // when downstream systems seem late, and what tests wait on before reading the topics.
    let backlog = match backlog {
        Ok(Ok(n)) => json!(n),
        _ => Value::Null,
    };
    let store = outcome(
        api.store.name(),
        store.map(|r| r.map_err(|e| e.to_string())),
    );
    let bus = outcome(api.bus.name(), bus.map(|r| r.map_err(|e| e.to_string())));
    let mut components = Map::new();
    let mut ready = store.0 && bus.0;
    components.insert("store".into(), store.1);
    components.insert("bus".into(), bus.1);
    for (name, health) in api.health.snapshot() {
        ready &= health.ready;
        components.insert(
            name,
            serde_json::to_value(health).expect("health serialises"),
        );
    }
    for (name, component) in components.iter_mut() {
        if component["ready"] == false {
            tracing::debug!(component = %name, detail = %component["detail"], "not ready");
        }
        if !detailed {
            component["detail"] = json!(if component["ready"] == true {
                "ok"
            } else {
                "not ready"
            });
        }
    }
    if ready {
        Json(json!({"status": "ready", "components": components, "outbox_backlog": backlog}))
            .into_response()
    } else {
        let failing: Vec<&String> = components
            .iter()
            .filter(|(_, c)| c["ready"] == false)
            .map(|(name, _)| name)
            .collect();
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "Not ready",
            format!(
                "not ready: {}",
                failing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .with_extension("components", Value::Object(components))
        .with_extension("outbox_backlog", backlog)
        .with_retry_after(1)
        .into_response()
    }
}

fn outcome(
    adapter: &str,
    result: Result<Result<(), String>, tokio::time::error::Elapsed>,
) -> (bool, Value) {
    let (ready, detail) = match result {
        Ok(Ok(())) => (true, format!("{adapter}: ok")),
        Ok(Err(err)) => {
            tracing::warn!(adapter, error = %err, "readiness check failed");
            (false, format!("{adapter}: {err}"))
        }
        Err(_) => (
            false,
            format!("{adapter}: check timed out after {CHECK_TIMEOUT:?}"),
        ),
    };
    (ready, json!({"ready": ready, "detail": detail}))
}

pub async fn metrics(State(shared): State<Shared>) -> Response {
    let text = (shared.api.metrics)();
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROMETHEUS_TEXT),
    );
    response
}
