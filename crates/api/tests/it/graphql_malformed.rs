//! Malformed and hostile GraphQL: each is answered with a bounded error that names what is
//! wrong (a problem+json for a request that is not GraphQL at all, `extensions.code` for one
//! that is), never a 5xx; and the API answers a valid query afterwards.

use crate::common;

use common::{problem, App};
use enrollstream_api::ApiConfig;
use serde_json::{json, Value};
use std::sync::Arc;

async fn post_raw(
    app: &App,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    app.http
        .post(app.url("/graphql"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn graphql(app: &App, request: Value) -> Value {
    let r = app
        .http
        .post(app.url("/graphql"))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a GraphQL request is answered 200");
    r.json().await.unwrap()
}

/// The codes of a response's errors; every error has one.
fn codes(response: &Value) -> Vec<String> {
    let errors = response["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("errors expected: {response}"));
    assert!(!errors.is_empty(), "{response}");
    errors
        .iter()
        .map(|e| {
            e["extensions"]["code"]
                .as_str()
                .unwrap_or_else(|| panic!("an error without a code: {e}"))
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn requests_that_are_not_graphql_get_problems() {
    let app = App::spawn().await;
    for (content_type, body) in [
        ("application/json", "{not json"),
        ("application/json", "[{\"query\": \"{ __typename }\"}]"),
        ("application/json", "42"),
        ("text/plain", "{ __typename }"),
    ] {
        let r = post_raw(&app, content_type, body).await;
        let status = r.status().as_u16();
        assert!((400..500).contains(&status), "{body}: {status}");
        problem(r, status).await;
    }
    let huge = format!("{{\"query\": \"{{ {} }}\"}}", "__typename ".repeat(40_000));
    let r = post_raw(&app, "application/json", huge).await;
    problem(r, 413).await;
    // No GraphiQL unless configured: GET is not a method of /graphql.
    problem(app.get("/graphql").await, 405).await;
}

#[tokio::test]
async fn malformed_queries_are_named_errors() {
    let app = App::spawn().await;
    let deep_list = format!(
        "{{ quote(id: {}\"x\"{}) {{ id }} }}",
        "[".repeat(200),
        "]".repeat(200)
    );
    let aliases: String = (0..600)
        .map(|i| format!("q{i}: quote(id: \"x\") {{ id }} "))
        .collect();
    let cases: Vec<(&str, Value)> = vec![
        ("syntax", json!({"query": "{ quote(id: \"x\" { id } }"})),
        ("empty", json!({"query": ""})),
        ("no query", json!({"variables": {}})),
        ("unknown field", json!({"query": "{ nope }"})),
        (
            "unknown argument",
            json!({"query": "{ quote(id: \"x\", colour: 1) { id } }"}),
        ),
        ("missing argument", json!({"query": "{ quote { id } }"})),
        (
            "wrong argument type",
            json!({"query": "{ applications(first: \"ten\") { edges { cursor } } }"}),
        ),
        (
            "wrong enum",
            json!({"query": "{ applications(status: LOST) { edges { cursor } } }"}),
        ),
        (
            "object without selection",
            json!({"query": "{ quote(id: \"x\") }"}),
        ),
        (
            "wrong variable type",
            json!({"query": "query($f: Int) { applications(first: $f) { edges { cursor } } }", "variables": {"f": "x"}}),
        ),
        (
            "undeclared variable",
            json!({"query": "{ applications(first: $f) { edges { cursor } } }"}),
        ),
        (
            "fragment cycle",
            json!({"query": "fragment A on Query { ...B } fragment B on Query { ...A } { ...A }"}),
        ),
        (
            "unknown operation",
            json!({"query": "query A { __typename }", "operationName": "B"}),
        ),
        (
            "two anonymous operations",
            json!({"query": "{ __typename } { __typename }"}),
        ),
        ("subscription", json!({"query": "subscription { x }"})),
        (
            "mutation without input",
            json!({"query": "mutation { createQuote { quoteId } }"}),
        ),
        (
            "input with an unknown field",
            json!({"query": "mutation { createQuote(input: {customerId: \"C\", product: \"p\", ammountMinor: 1}) { quoteId } }"}),
        ),
        (
            "nested lists past the parser's bound",
            json!({"query": deep_list}),
        ),
        (
            "too complex",
            json!({"query": "{ applications(first: 100) { edges { node { id status events { id type version time source data recordedAt } } } } }"}),
        ),
        ("alias flood", json!({"query": format!("{{ {aliases} }}")})),
        (
            "too many directives",
            json!({"query": format!("{{ __typename {} }}", "@skip(if: false) ".repeat(50))}),
        ),
    ];
    for (what, request) in cases {
        let response = graphql(&app, request).await;
        let codes = codes(&response);
        assert!(
            codes.iter().all(|c| c == "bad-query"),
            "{what}: {codes:?} {response}"
        );
        assert!(
            response["data"].is_null() || response["data"].is_object(),
            "{what}"
        );
    }
    // Values the schema accepts but the API refuses: REST's codes, the field named.
    for (what, query, field) in [
        (
            "page too large",
            "{ applications(first: 1000) { edges { cursor } } }",
            "first",
        ),
        (
            "page empty",
            "{ applications(first: 0) { edges { cursor } } }",
            "first",
        ),
        (
            "foreign cursor",
            "{ applications(after: \"%%%\") { edges { cursor } } }",
            "after",
        ),
    ] {
        let response = graphql(&app, json!({"query": query})).await;
        assert_eq!(codes(&response), ["validation"], "{what}: {response}");
        assert_eq!(
            response["errors"][0]["extensions"]["errors"][0]["field"], field,
            "{what}"
        );
        assert_eq!(response["errors"][0]["extensions"]["status"], 422, "{what}");
    }
    // And the API still answers.
    let fine = graphql(&app, json!({"query": "{ quote(id: \"x\") { id } }"})).await;
    assert_eq!(fine, json!({"data": {"quote": null}}));
}

#[tokio::test]
async fn the_depth_bound_is_configurable() {
    let mut config = ApiConfig::default();
    config.graphql.max_depth = 3;
    let app = App::spawn_with(config, Arc::new(String::new)).await;
    let shallow = graphql(&app, json!({"query": "{ quote(id: \"x\") { id } }"})).await;
    assert!(shallow["errors"].is_null(), "{shallow}");
    let deep = graphql(
        &app,
        json!({"query": "{ applications { edges { node { broker { id } } } } }"}),
    )
    .await;
    assert_eq!(codes(&deep), ["bad-query"]);
    assert!(
        deep["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("deep"),
        "{deep}"
    );
}

#[tokio::test]
async fn introspection_and_graphiql_only_where_configured() {
    let mut config = ApiConfig::default();
    config.graphql.introspection = true;
    config.graphql.playground = true;
    let app = App::spawn_with(config, Arc::new(String::new)).await;
    let types = graphql(
        &app,
        json!({"query": "{ __schema { queryType { name } } }"}),
    )
    .await;
    assert_eq!(
        types["data"]["__schema"]["queryType"]["name"], "Query",
        "{types}"
    );
    let page = app.anonymous.get(app.url("/graphql")).send().await.unwrap();
    assert_eq!(
        page.status(),
        200,
        "the page is static; its queries carry the credential"
    );
    assert!(page.text().await.unwrap().contains("graphiql"));
    let r = app
        .anonymous
        .post(app.url("/graphql"))
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await
        .unwrap();
    problem(r, 401).await;
}

#[tokio::test]
async fn a_request_runs_at_most_ten_mutations() {
    let app = App::spawn().await;
    let mutations: String = (0..12)
        .map(|i| format!("m{i}: createQuote(input: {{customerId: \"C-{i}\", product: \"p\"}}) {{ quoteId }} "))
        .collect();
    let response = graphql(
        &app,
        json!({"query": format!("mutation {{ {mutations} }}")}),
    )
    .await;
    let data = &response["data"];
    assert!(data["m9"]["quoteId"].is_string(), "{response}");
    assert!(data["m10"].is_null() && data["m11"].is_null(), "{response}");
    assert_eq!(codes(&response), ["validation", "validation"]);
    assert_eq!(
        response["errors"][0]["extensions"]["errors"][0]["field"],
        "mutation"
    );
    assert_eq!(
        app.count(common::QUOTES).await,
        10,
        "ten commands published, no more"
    );
}
