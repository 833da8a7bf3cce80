//! GraphQL errors carry what REST's problem+json carries, in `extensions`: the same `code`
//! (the problem type's slug: `validation`, `not-found`, `invalid-transition`, `forbidden`, …),
//! the HTTP status REST would answer, and the offending fields, named as in GraphQL
//! (`input.applicant.email`).

use async_graphql::{Context, Error, ErrorExtensions};
use serde_json::Value;

use super::RequestContext;
use crate::auth::problems::forbidden_problem;
use crate::auth::{Principal, Scope};
use crate::problem::{Problem, TYPE_BASE};

/// A problem of a command: its fields are named as in the command's REST body, which is the
/// mutation's `input`.
pub fn from_command(problem: Problem) -> Error {
    convert(problem, graphql_field)
}

/// A problem whose fields are already named as in GraphQL (arguments of a query).
pub fn from_problem(problem: Problem) -> Error {
    convert(problem, str::to_string)
}

fn convert(problem: Problem, field: fn(&str) -> String) -> Error {
    let details = problem.details();
    let code = details
        .ty
        .strip_prefix(TYPE_BASE)
        .unwrap_or(&details.ty)
        .to_string();
    let status = details.status.as_u16();
    let errors: Vec<Value> = details
        .errors
        .iter()
        .map(|e| serde_json::json!({"field": field(&e.field), "reason": e.reason}))
        .collect();
    let extensions = details.extensions.clone();
    Error::new(details.detail.clone()).extend_with(move |_, e| {
        e.set("code", code.clone());
        e.set("status", status);
        if !errors.is_empty() {
            e.set(
                "errors",
                async_graphql::Value::from_json(Value::Array(errors.clone())).unwrap_or_default(),
            );
        }
        for (name, value) in &extensions {
            if let Ok(v) = async_graphql::Value::from_json(value.clone()) {
                e.set(name.clone(), v);
            }
        }
    })
}

/// `applicant.email` → `input.applicant.email`, `amount_minor` → `input.amountMinor`; the
/// entity id and headers keep their names.
pub fn graphql_field(rest: &str) -> String {
    match rest {
        "id" => "id".into(),
        "$" => "input".into(),
        f if f.chars().next().is_some_and(|c| c.is_ascii_uppercase()) => f.into(),
        f => {
            let camel: Vec<String> = f.split('.').map(camel_case).collect();
            format!("input.{}", camel.join("."))
        }
    }
}

fn camel_case(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    let mut upper = false;
    for c in segment.chars() {
        match (c, upper) {
            ('_', _) => upper = true,
            (c, true) => {
                out.extend(c.to_uppercase());
                upper = false;
            }
            (c, false) => out.push(c),
        }
    }
    out
}

/// The caller, if it holds `scope` (as REST's guard would check it for the route).
pub fn require<'a>(ctx: &'a Context<'_>, scope: Scope) -> Result<&'a Principal, Error> {
    let request = ctx.data::<RequestContext>()?;
    let principal = &request.principal;
    if principal.allows(scope) {
        Ok(principal)
    } else {
        metrics::counter!("enrollstream_http_refused_total", "reason" => "forbidden").increment(1);
        tracing::warn!(credential = %principal.name, %scope, field = %ctx.field().name(), "refused: missing scope (GraphQL)");
        Err(from_problem(forbidden_problem(&principal.name, scope)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_named_as_in_graphql() {
        assert_eq!(graphql_field("applicant.email"), "input.applicant.email");
        assert_eq!(graphql_field("amount_minor"), "input.amountMinor");
        assert_eq!(graphql_field("broker"), "input.broker");
        assert_eq!(graphql_field("Idempotency-Key"), "Idempotency-Key");
        assert_eq!(graphql_field("id"), "id");
        assert_eq!(graphql_field("$"), "input");
    }
}
