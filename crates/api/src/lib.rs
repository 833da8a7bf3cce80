//! The HTTP API (axum): commands become validated CloudEvents on the bus; reads come from the
//! read model. Every error is RFC 9457 problem+json. See `openapi()` for the contract.

pub mod auth;
mod commands;
mod config;
mod deliveries;
mod dlq;
mod dto;
mod extract;
pub mod graphql;
mod ingest;
pub mod limits;
mod middleware;
mod openapi;
mod ops;
mod problem;
mod publish;
mod reads;
mod recent;
mod schedule;
mod schemas;
mod security;
pub mod server;
mod ui;

use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::routing::{get, patch, post, MethodRouter};
use axum::Router;
use enrollstream_domain::routing::RoutingRules;
use enrollstream_domain::EntityKind;
use enrollstream_ports::{Clock, EventBus, HealthRegistry, Store};
use std::sync::Arc;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use auth::Authenticator;
pub use config::ApiConfig;
pub use problem::Problem;

/// Everything the API needs from the process that runs it.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn EventBus>,
    pub clock: Arc<dyn Clock>,
    pub health: HealthRegistry,
    /// Renders the process's metrics in the Prometheus text format.
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
    pub config: Arc<ApiConfig>,
    /// Broker signature reminders, shown with the application they belong to (when the
    /// reminders role's store is available to this process).
    pub reminders: Option<Arc<dyn enrollstream_ports::reminders::ReminderStore>>,
    /// Checks credentials (API keys in the store, JWTs) unless `[api] auth = "off"`.
    pub auth: Arc<Authenticator>,
    /// Dead letters to list, inspect and redrive (`/v1/admin/dlq`); without it those routes
    /// answer 503.
    pub dead_letters: Option<Arc<dyn enrollstream_ports::DeadLetters>>,
    /// The delivery runners' journal (`/v1/admin/deliveries`); without it that route answers
    /// 503.
    pub deliveries: Option<Arc<dyn enrollstream_ports::DeliveryLog>>,
}

/// The OpenAPI document: the routes and bodies (`openapi`), and who may call each
/// (`security`).
pub fn openapi() -> serde_json::Value {
    let mut doc = openapi::openapi();
    dlq::document(&mut doc);
    schedule::document(&mut doc);
    deliveries::document(&mut doc);
    security::document(&mut doc);
    doc
}

/// The router's own state: the caller's plus what the API keeps between requests.
#[derive(Clone)]
pub(crate) struct Shared {
    pub api: ApiState,
    pub recent: Arc<recent::RecentWrites>,
    pub rules: Arc<RoutingRules>,
    pub auth: Arc<Authenticator>,
    pub limits: Arc<limits::Limits>,
    pub graphql: graphql::ApiSchema,
}

/// Every route: the router is built from this table and `openapi()` is checked against it.
pub(crate) fn routes() -> Vec<(&'static str, Method, MethodRouter<Shared>)> {
    use commands::{create, on_existing};
    use EntityKind::{Application, Quote};
    vec![
        ("/v1/quotes", Method::POST, post(create::<dto::CreateQuote>)),
        ("/v1/quotes/{id}", Method::GET, reads::state(Quote)),
        (
            "/v1/quotes/{id}",
            Method::PATCH,
            patch(on_existing::<dto::UpdateQuote>),
        ),
        ("/v1/quotes/{id}/events", Method::GET, reads::log(Quote)),
        (
            "/v1/applications",
            Method::POST,
            post(create::<dto::StartApplication>),
        ),
        (
            "/v1/applications/{id}",
            Method::GET,
            reads::state(Application),
        ),
        (
            "/v1/applications/{id}/events",
            Method::GET,
            reads::log(Application),
        ),
        (
            "/v1/applications/{id}/submit",
            Method::POST,
            post(on_existing::<dto::SubmitApplication>),
        ),
        (
            "/v1/applications/{id}/signature",
            Method::POST,
            post(on_existing::<dto::SignApplication>),
        ),
        (
            "/v1/applications/{id}/approve",
            Method::POST,
            post(on_existing::<dto::ApproveApplication>),
        ),
        (
            "/v1/applications/{id}/decline",
            Method::POST,
            post(on_existing::<dto::DeclineApplication>),
        ),
        (
            "/v1/applications/{id}/withdraw",
            Method::POST,
            post(on_existing::<dto::WithdrawApplication>),
        ),
        ("/v1/events", Method::POST, post(ingest::ingest)),
        ("/v1/schemas", Method::GET, get(schemas::list)),
        (schemas::ENVELOPE_PATH, Method::GET, get(schemas::envelope)),
        ("/v1/schemas/{type}", Method::GET, get(schemas::data)),
        (
            "/openapi.json",
            Method::GET,
            get(|| async { axum::Json(openapi()) }),
        ),
        ("/healthz", Method::GET, get(ops::healthz)),
        ("/readyz", Method::GET, get(ops::readyz)),
        ("/metrics", Method::GET, get(ops::metrics)),
    ]
}

/// The whole API: commands, reads, schemas, and the operational endpoints.
pub fn router(state: ApiState) -> Router {
    if state.auth.mode() == auth::AuthMode::Off {
        tracing::warn!("[api] auth = \"off\": ANYONE who reaches this port can read and change every quote and application; use it only to try enrollstream out");
    }
    build(state, |_| true)
}

/// Paths every process serves, whatever its roles.
const OPS_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// What a process without the API role serves on its listen address: `/healthz`, `/readyz` and
/// `/metrics`, so that a projector or a relay running alone can be probed and scraped too.
pub fn ops_router(state: ApiState) -> Router {
    build(state, |path| OPS_PATHS.contains(&path))
}

fn build(state: ApiState, serves: impl Fn(&str) -> bool) -> Router {
    describe_metrics();
    let max_body = state.config.max_body_bytes;
    let limits = Arc::new(limits::Limits::new(&state.config.limits));
    let shared = Shared {
        auth: state.auth.clone(),
        graphql: graphql::schema(&state.config.graphql),
        api: state,
        recent: Arc::new(recent::RecentWrites::default()),
        rules: Arc::new(RoutingRules::default()),
        limits: limits.clone(),
    };
    let mut router = Router::new();
    for (path, _, method_router) in routes() {
        if serves(path) {
            router = router.route(path, method_router);
        }
    }
    // Beside `routes()`, whose table `openapi.rs` documents; `security` documents these.
    if serves(graphql::PATH) {
        let extra = graphql::routes(&shared.api.config.graphql)
            .into_iter()
            .chain(auth::admin::routes())
            .chain(dlq::routes())
            .chain(schedule::routes())
            .chain(deliveries::routes())
            .chain(ui::routes());
        for (path, method_router) in extra {
            router = router.route(path, method_router);
        }
    }
    let layers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(
            middleware::REQUEST_ID,
            MakeRequestUuid,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(middleware::make_span)
                .on_response(middleware::on_response),
        )
        .layer(PropagateRequestIdLayer::new(middleware::REQUEST_ID))
        .layer(axum::middleware::from_fn(middleware::record_metrics))
        .layer(axum::middleware::from_fn(
            middleware::problem_for_bare_errors,
        ))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::from_fn_with_state(limits, limits::bound))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            auth::guard::guard,
        ))
        .layer(DefaultBodyLimit::max(max_body));
    router
        .fallback(middleware::route_not_found)
        .layer(layers)
        .with_state(shared)
}

/// Descriptions for the metrics this crate records (shown as `# HELP` by the exporter).
fn describe_metrics() {
    metrics::describe_counter!(
        "enrollstream_http_requests_total",
        "HTTP requests by method, route and status"
    );
    metrics::describe_histogram!(
        "enrollstream_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency by route"
    );
    metrics::describe_counter!(
        "enrollstream_events_published_total",
        "Events the API published, by topic"
    );
}
