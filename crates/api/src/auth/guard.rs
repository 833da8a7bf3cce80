//! The middleware in front of every route: the route's access rule, the credential, the
//! caller's rate, the scope; then the caller rides along in the request's extensions.

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use tracing::Span;

use super::access::{self, Access};
use super::{problems, Refusal};
use crate::problem::Problem;
use crate::Shared;

pub(crate) async fn guard(State(shared): State<Shared>, mut req: Request, next: Next) -> Response {
    // No route matched: the fallback answers 404, and there is nothing to protect.
    let Some(route) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
    else {
        return next.run(req).await;
    };
    let auth = &shared.auth;
    let access = access::required(req.method(), &route, auth.public_metrics());
    if access == Access::Public {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    // An address that spent its budget of refused credentials gets no store lookups for a
    // while; keys verified recently (cached) still pass, so a bad client behind a shared
    // address does not lock out the others.
    let throttled = peer.and_then(|p| shared.limits.check_refusals(p).err());
    let principal = match auth
        .authenticate_with(req.headers(), throttled.is_none())
        .await
    {
        Ok(principal) => principal,
        Err(Refusal::Throttled) => {
            refused("refusals_rate_limited");
            return problems::rate_limited(throttled.unwrap_or(1)).into_response();
        }
        Err(Refusal::Unauthenticated(reason)) => {
            refused("unauthenticated");
            tracing::warn!(%reason, %route, ?peer, "refused: no valid credential");
            if let Some(retry_after) = peer.and_then(|p| shared.limits.refused(p)) {
                tracing::warn!(
                    ?peer,
                    retry_after,
                    "too many refused credentials from this address"
                );
                return problems::rate_limited(retry_after).into_response();
            }
            return problems::unauthenticated(&reason);
        }
        Err(Refusal::Unavailable(e)) => return Problem::store(&e).into_response(),
    };
    Span::current().record("credential", principal.name.as_str());
    if let Err(retry_after) = shared.limits.check_rate(&principal.name) {
        refused("rate_limited");
        tracing::warn!(credential = %principal.name, %route, retry_after, "refused: over the request rate");
        return problems::rate_limited(retry_after).into_response();
    }
    if let Access::Scope(scope) = access {
        if !principal.allows(scope) {
            refused("forbidden");
            tracing::warn!(credential = %principal.name, %scope, %route, "refused: missing scope");
            return problems::forbidden_problem(&principal.name, scope).into_response();
        }
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

fn refused(reason: &'static str) {
    metrics::counter!("enrollstream_http_refused_total", "reason" => reason).increment(1);
}
