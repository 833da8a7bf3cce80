//! GraphQL at `/graphql` (async-graphql), the ingest path of the design notes beside REST. The
//! mutations run the REST commands' own code (`commands::execute`): same validation, same
//! `Idempotency-Key` (the request's header, for one mutation per request), same scopes, and
//! errors carry REST's problem codes in `extensions`. Introspection and GraphiQL are off unless
//! configured; depth and complexity are bounded. The SDL is served at
//! `/graphql/schema.graphql` and kept in `docs/schema.graphql` (a test checks they match).

mod errors;
mod inputs;
mod mutations;
mod queries;

use async_graphql::{EmptySubscription, ErrorExtensions, Schema};
use async_graphql_axum::GraphQLResponse;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Extension;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

use crate::auth::Principal;
use crate::extract;
use crate::problem::Problem;
use crate::Shared;

pub use mutations::Mutation;
pub use queries::Query;

pub const PATH: &str = "/graphql";
pub const SDL_PATH: &str = "/graphql/schema.graphql";

pub type ApiSchema = Schema<Query, Mutation, EmptySubscription>;

/// Mutations one request may run: each is a command, and the rate limit counts requests.
pub const MAX_MUTATIONS: usize = 10;

/// `[api.graphql]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GraphqlConfig {
    /// Answer introspection queries (`__schema`); the SDL is served either way.
    pub introspection: bool,
    /// Serve GraphiQL at `GET /graphql` (its page loads its scripts from a CDN).
    pub playground: bool,
    /// Deepest selection nesting a query may have.
    pub max_depth: usize,
    /// Largest complexity a query may have (each field 1, lists of events 10 times theirs,
    /// a page of applications `first` times theirs).
    pub max_complexity: usize,
}

impl Default for GraphqlConfig {
    fn default() -> Self {
        Self {
            introspection: false,
            playground: false,
            max_depth: 10,
            max_complexity: 1000,
        }
    }
}

impl GraphqlConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_depth < 3 || self.max_complexity < 10 {
            return Err(
                "api.graphql: max_depth must be at least 3 and max_complexity at least 10".into(),
            );
        }
        Ok(())
    }
}

/// The schema with this configuration's limits.
pub fn schema(config: &GraphqlConfig) -> ApiSchema {
    let mut builder = Schema::build(Query, Mutation, EmptySubscription)
        .limit_depth(config.max_depth)
        .limit_complexity(config.max_complexity)
        // Bounds the parser's recursion (nested lists and objects in arguments) as well.
        .limit_recursive_depth(32)
        .limit_directives(16);
    if !config.introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}

/// The SDL, as served and as checked into `docs/schema.graphql`.
pub fn sdl() -> String {
    schema(&GraphqlConfig::default()).sdl()
}

/// What a request brings to its resolvers.
pub(crate) struct RequestContext {
    pub shared: Shared,
    pub principal: Principal,
    pub traceparent: Option<String>,
    /// The request's `Idempotency-Key`, taken by the first mutation that runs.
    idempotency_key: Mutex<Option<Result<Option<String>, Problem>>>,
    mutations: std::sync::atomic::AtomicUsize,
}

impl RequestContext {
    /// Count a mutation of the request; refused past `MAX_MUTATIONS`.
    pub fn count_mutation(&self) -> Result<(), Problem> {
        let n = self
            .mutations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n < MAX_MUTATIONS {
            Ok(())
        } else {
            Err(Problem::invalid(vec![
                enrollstream_domain::FieldError::new(
                    "mutation",
                    format!("a request runs at most {MAX_MUTATIONS} mutations"),
                ),
            ]))
        }
    }

    /// The key for the first mutation of the request; a second mutation of a request with a
    /// key is refused, since one key can only ever stand for one command.
    pub fn take_idempotency_key(&self) -> Result<Option<String>, Problem> {
        let mut slot = self
            .idempotency_key
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match slot.take() {
            // No key: every mutation of the request runs without one.
            Some(Ok(None)) => {
                *slot = Some(Ok(None));
                Ok(None)
            }
            Some(key) => key,
            None => Err(Problem::invalid(vec![
                enrollstream_domain::FieldError::new(
                    "Idempotency-Key",
                    "covers one mutation; send each mutation in a request of its own",
                ),
            ])),
        }
    }
}

pub(crate) fn routes(config: &GraphqlConfig) -> Vec<(&'static str, MethodRouter<Shared>)> {
    let endpoint = if config.playground {
        get(graphiql).post(execute)
    } else {
        post(execute)
    };
    vec![(PATH, endpoint), (SDL_PATH, get(serve_sdl))]
}

/// The body through the API's own extractor, not async-graphql-axum's: that one streams the
/// body without the API's size limit. JSON only (no multipart: nothing here takes uploads).
fn decode(body: &extract::Body) -> Result<async_graphql::Request, Problem> {
    if body.media_type.as_deref() != Some("application/json") {
        return Err(Problem::unsupported_media_type(
            body.media_type.as_deref(),
            &["application/json"],
        ));
    }
    serde_json::from_slice(&body.bytes).map_err(Problem::malformed_json)
}

async fn execute(
    State(shared): State<Shared>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: extract::Body,
) -> Result<GraphQLResponse, Problem> {
    let request = decode(&body)?;
    let context = RequestContext {
        shared: shared.clone(),
        principal,
        traceparent: extract::traceparent(&headers),
        idempotency_key: Mutex::new(Some(extract::idempotency_key(&headers))),
        mutations: Default::default(),
    };
    let request = request.data(context);
    let mut response = shared.graphql.execute(request).await;
    // Errors of the query itself (syntax, limits, unknown fields) get a code too.
    for error in &mut response.errors {
        let has_code = error
            .extensions
            .as_ref()
            .is_some_and(|e| e.get("code").is_some());
        if !has_code {
            let coded = async_graphql::Error::new(error.message.clone())
                .extend_with(|_, e| e.set("code", "bad-query"));
            error.extensions = coded.extensions;
        }
    }
    Ok(response.into())
}

async fn serve_sdl(State(shared): State<Shared>) -> Response {
    let mut response = shared.graphql.sdl().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn graphiql() -> Html<String> {
    Html(
        async_graphql::http::GraphiQLSource::build()
            .endpoint(PATH)
            .finish(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/schema.graphql` is the SDL of this build; `UPDATE_SDL=1 cargo test -p
    /// enrollstream-api sdl` rewrites it after a deliberate change.
    #[test]
    fn the_sdl_in_docs_is_this_schema() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/schema.graphql");
        let current = sdl();
        if std::env::var_os("UPDATE_SDL").is_some() {
            std::fs::write(path, &current).expect("write docs/schema.graphql");
        }
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == current,
            "docs/schema.graphql is not the schema of this build; run UPDATE_SDL=1 cargo test -p enrollstream-api sdl and commit it"
        );
    }

    /// Each input's fields are the REST body's, so a field added to one and not the other fails.
    #[test]
    fn inputs_have_the_fields_of_the_rest_bodies() {
        use crate::dto;
        use schemars::JsonSchema;
        fn rest<T: JsonSchema>() -> Vec<String> {
            let schema = schemars::schema_for!(T);
            let mut fields: Vec<String> = schema
                .get("properties")
                .and_then(|p| p.as_object())
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            fields.sort();
            fields
        }
        let sdl = sdl();
        let graphql = |input: &str| -> Vec<String> {
            let start = sdl
                .find(&format!("input {input} {{"))
                .unwrap_or_else(|| panic!("input {input} missing"));
            let body = &sdl[start..];
            let body = &body[body.find('{').unwrap() + 1..body.find('}').unwrap()];
            let mut fields: Vec<String> = body
                .lines()
                .filter_map(|l| l.trim().split_once(':').map(|(f, _)| f.trim().to_string()))
                .filter(|f| !f.starts_with('"'))
                .map(|f| snake(&f))
                .collect();
            fields.sort();
            fields
        };
        fn snake(camel: &str) -> String {
            let mut out = String::new();
            for c in camel.chars() {
                if c.is_ascii_uppercase() {
                    out.push('_');
                    out.push(c.to_ascii_lowercase());
                } else {
                    out.push(c);
                }
            }
            out
        }
        assert_eq!(graphql("CreateQuoteInput"), rest::<dto::CreateQuote>());
        assert_eq!(graphql("UpdateQuoteInput"), rest::<dto::UpdateQuote>());
        assert_eq!(
            graphql("StartApplicationInput"),
            rest::<dto::StartApplication>()
        );
        assert_eq!(graphql("ApplicantInput"), rest::<dto::ApplicantInput>());
        assert_eq!(graphql("BrokerInput"), rest::<dto::BrokerInput>());
        assert_eq!(
            graphql("SubmitApplicationInput"),
            rest::<dto::SubmitApplication>()
        );
        assert_eq!(
            graphql("RecordSignatureInput"),
            rest::<dto::SignApplication>()
        );
        assert_eq!(
            graphql("ApproveApplicationInput"),
            rest::<dto::ApproveApplication>()
        );
        assert_eq!(
            graphql("DeclineApplicationInput"),
            rest::<dto::DeclineApplication>()
        );
        assert_eq!(
            graphql("WithdrawApplicationInput"),
            rest::<dto::WithdrawApplication>()
        );
    }
}
