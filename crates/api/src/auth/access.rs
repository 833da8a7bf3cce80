//! What each route asks of its caller. One table for the whole router: a route missing here
//! needs `admin` (a new route is never open by accident), and a test checks every route of
//! `routes()` is named.

use axum::http::Method;

use super::scope::Scope;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Probes: orchestrators call them without credentials.
    Public,
    /// Any valid credential (the documents of the API; GraphQL, whose fields check scopes).
    Authenticated,
    Scope(Scope),
}

pub fn required(method: &Method, route: &str, public_metrics: bool) -> Access {
    use Access::{Authenticated, Public};
    let write = |scope| {
        if *method == Method::GET || *method == Method::HEAD {
            Access::Scope(Scope::Read)
        } else {
            Access::Scope(scope)
        }
    };
    match route {
        "/healthz" | "/readyz" => Public,
        // GraphiQL's page, where configured: static HTML; its queries POST with a credential.
        "/graphql" if *method == Method::GET => Public,
        // The dashboard's files hold no data; every call they make sends an admin credential.
        "/ui" | "/ui/{asset}" if *method == Method::GET => Public,
        "/metrics" if public_metrics => Public,
        "/metrics" => Access::Scope(Scope::Admin),
        "/openapi.json" | "/graphql" | "/graphql/schema.graphql" => Authenticated,
        r if r.starts_with("/v1/schemas") => Authenticated,
        r if r.starts_with("/v1/quotes") => write(Scope::QuotesWrite),
        r if r.starts_with("/v1/applications") => write(Scope::ApplicationsWrite),
        "/v1/events" => Access::Scope(Scope::EventsWrite),
        _ => Access::Scope(Scope::Admin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_its_scope() {
        for (path, method, _) in crate::routes() {
            let access = required(&method, path, false);
            let expected = match (method.as_str(), path) {
                (_, "/healthz" | "/readyz") => Access::Public,
                (_, "/metrics") => Access::Scope(Scope::Admin),
                ("GET", p) if p.starts_with("/v1/quotes") || p.starts_with("/v1/applications") => {
                    Access::Scope(Scope::Read)
                }
                (_, p) if p.starts_with("/v1/quotes") => Access::Scope(Scope::QuotesWrite),
                (_, p) if p.starts_with("/v1/applications") => {
                    Access::Scope(Scope::ApplicationsWrite)
                }
                (_, "/v1/events") => Access::Scope(Scope::EventsWrite),
                (_, "/openapi.json") => Access::Authenticated,
                (_, p) if p.starts_with("/v1/schemas") => Access::Authenticated,
                other => panic!("route {other:?} has no access rule in this test"),
            };
            assert_eq!(access, expected, "{method} {path}");
        }
        assert_eq!(required(&Method::GET, "/metrics", true), Access::Public);
        assert_eq!(required(&Method::GET, "/ui/{asset}", false), Access::Public);
        assert_eq!(
            required(&Method::POST, "/ui", false),
            Access::Scope(Scope::Admin)
        );
        assert_eq!(
            required(&Method::POST, "/v1/new-thing", false),
            Access::Scope(Scope::Admin)
        );
    }
}
