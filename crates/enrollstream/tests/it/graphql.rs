//! GraphQL through the real binary: the REST flow of an application again as mutations and
//! queries, with the same validation, idempotency, scopes and error codes as REST.

use crate::support;

use serde_json::{json, Value};
use std::time::Duration;
use support::{client_with_key, create_key, eventually, TestApp};

async fn gql(
    client: &reqwest::Client,
    app: &TestApp,
    query: &str,
    variables: Value,
    key: Option<&str>,
) -> Value {
    let mut request = client
        .post(app.url("/graphql"))
        .json(&json!({"query": query, "variables": variables}));
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.expect("the API answers");
    assert_eq!(
        response.status(),
        200,
        "GraphQL answers 200, errors in the body"
    );
    response.json().await.expect("a GraphQL response")
}

/// The data of a response without errors.
fn data(response: Value) -> Value {
    assert!(
        response["errors"].is_null(),
        "unexpected errors: {response}"
    );
    response["data"].clone()
}

/// The first error's extensions.
fn error(response: &Value) -> &Value {
    &response["errors"][0]["extensions"]
}

const START: &str = "mutation($input: StartApplicationInput!) { startApplication(input: $input) { applicationId eventId } }";
const APPLICATION: &str = "query($id: ID!, $after: ID) { application(id: $id, afterEvent: $after) { id status version product quoteId submittedBy broker { id name } signature { signedBy } events { id type version } reminder { status attempts nextDueAt } } }";

fn applicant() -> Value {
    json!({"applicant": {"name": "Jane Doe", "email": "jane@example.com"}, "product": "dental-basic"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_flow_over_graphql() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(dir.path(), &[]);
    let c = &app.client;

    let quote = data(gql(c, &app, "mutation { createQuote(input: {customerId: \"C-1\", product: \"dental-basic\", amountMinor: 5000, currency: \"USD\"}) { quoteId eventId } }", json!({}), None).await);
    let quote_id = quote["createQuote"]["quoteId"]
        .as_str()
        .unwrap()
        .to_string();
    let mut input = applicant();
    input["quoteId"] = json!(quote_id);
    let started = data(gql(c, &app, START, json!({"input": input}), None).await);
    let id = started["startApplication"]["applicationId"]
        .as_str()
        .unwrap()
        .to_string();

    // At once, as over REST: the API waits for its own earlier event on the entity.
    let submitted = data(gql(c, &app, "mutation($id: ID!) { submitApplication(id: $id, input: {submittedBy: BROKER, broker: {id: \"B-7\", name: \"Acme Brokers\", email: \"agent@acme.test\"}}) { applicationId eventId } }", json!({"id": id}), None).await);
    let after = submitted["submitApplication"]["eventId"].clone();
    let view = data(
        gql(
            c,
            &app,
            APPLICATION,
            json!({"id": id, "after": after}),
            None,
        )
        .await,
    );
    let a = &view["application"];
    assert_eq!(a["status"], "AWAITING_SIGNATURE");
    assert_eq!(a["quoteId"], quote_id.as_str());
    assert_eq!(a["submittedBy"], "broker");
    assert_eq!(a["broker"]["id"], "B-7");
    assert_eq!(a["events"].as_array().unwrap().len(), 2);
    // Reminder state, kept by the reminders role from the same events.
    let reminder = eventually(
        "the reminder of the broker submission",
        Duration::from_secs(30),
        || async {
            let view = data(gql(c, &app, APPLICATION, json!({"id": id}), None).await);
            (view["application"]["reminder"]["status"] == "AWAITING_SIGNATURE")
                .then(|| view["application"]["reminder"].clone())
        },
    )
    .await;
    assert_eq!(reminder["attempts"], 0);
    assert!(reminder["nextDueAt"].is_string());

    data(gql(c, &app, "mutation($id: ID!) { recordSignature(id: $id, input: {signedBy: \"Jane Doe\"}) { eventId } }", json!({"id": id}), None).await);
    let approved = data(
        gql(
            c,
            &app,
            "mutation($id: ID!) { approveApplication(id: $id) { eventId } }",
            json!({"id": id}),
            None,
        )
        .await,
    );
    let view = data(
        gql(
            c,
            &app,
            APPLICATION,
            json!({"id": id, "after": approved["approveApplication"]["eventId"]}),
            None,
        )
        .await,
    );
    let a = &view["application"];
    assert_eq!(a["status"], "APPROVED");
    assert_eq!(a["version"], 4);
    assert_eq!(a["signature"]["signedBy"], "Jane Doe");

    // The same entity over REST: the same state and the same event log.
    let (status, rest) = app.get_json(&format!("/v1/applications/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(rest["status"], "APPROVED");
    assert_eq!(rest["version"], 4);
    let (_, rest_log) = app.get_json(&format!("/v1/applications/{id}/events")).await;
    let rest_ids: Vec<&Value> = rest_log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["event_id"])
        .collect();
    let gql_ids: Vec<&Value> = a["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["id"])
        .collect();
    assert_eq!(rest_ids, gql_ids);

    // The quote, with its premium.
    let q = data(gql(c, &app, "query($id: ID!) { quote(id: $id) { id status premium { amountMinor currency } events { type } } }", json!({"id": quote_id}), None).await);
    assert_eq!(
        q["quote"]["premium"],
        json!({"amountMinor": 5000, "currency": "USD"})
    );
    assert!(
        data(gql(c, &app, "{ quote(id: \"nope\") { id } }", json!({}), None).await)["quote"]
            .is_null()
    );

    // Pages of applications by status and broker.
    let mut started_ids = Vec::new();
    for _ in 0..3 {
        let s = data(gql(c, &app, START, json!({"input": applicant()}), None).await);
        let (sid, event) = (
            s["startApplication"]["applicationId"].clone(),
            s["startApplication"]["eventId"].clone(),
        );
        data(
            gql(
                c,
                &app,
                APPLICATION,
                json!({"id": sid, "after": event}),
                None,
            )
            .await,
        );
        started_ids.push(sid.as_str().unwrap().to_string());
    }
    started_ids.sort();
    const PAGE: &str = "query($after: String) { applications(status: STARTED, first: 2, after: $after) { edges { cursor node { id status } } pageInfo { hasNextPage endCursor } } }";
    let first = data(gql(c, &app, PAGE, json!({}), None).await);
    let page = &first["applications"];
    assert_eq!(page["edges"].as_array().unwrap().len(), 2);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    let second = data(
        gql(
            c,
            &app,
            PAGE,
            json!({"after": page["pageInfo"]["endCursor"]}),
            None,
        )
        .await,
    );
    let rest_page = &second["applications"];
    assert_eq!(rest_page["pageInfo"]["hasNextPage"], false);
    let mut paged: Vec<String> = page["edges"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest_page["edges"].as_array().unwrap())
        .map(|e| e["node"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        paged, started_ids,
        "the pages are every started application once, in order"
    );
    paged.clear();
    let by_broker = data(
        gql(
            c,
            &app,
            "{ applications(brokerId: \"B-7\") { edges { node { id status } } } }",
            json!({}),
            None,
        )
        .await,
    );
    assert_eq!(
        by_broker["applications"]["edges"],
        json!([{"node": {"id": id, "status": "APPROVED"}}])
    );
    let none = data(
        gql(
            c,
            &app,
            "{ applications(status: APPROVED, brokerId: \"B-0\") { edges { node { id } } } }",
            json!({}),
            None,
        )
        .await,
    );
    assert_eq!(none["applications"]["edges"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_validates_dedupes_and_checks_scopes_as_rest_does() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let reader = create_key(&data_dir, &[], "reader", &["read"]);
    let quoter = create_key(&data_dir, &[], "quoter", &["quotes:write"]);
    let app = TestApp::spawn(&data_dir, &[]);
    let c = &app.client;

    // Validation: the same code and status as REST's problem, the field named as in GraphQL.
    let bad = json!({"applicant": {"name": "Jane Doe", "email": "not-an-email"}, "product": "dental-basic"});
    let over_graphql = gql(c, &app, START, json!({"input": bad}), None).await;
    let rest = app.post("/v1/applications", json!({"applicant": {"name": "Jane Doe", "email": "not-an-email"}, "product": "dental-basic"})).await;
    assert_eq!(rest.status(), 422);
    let rest: Value = rest.json().await.unwrap();
    let e = error(&over_graphql);
    assert_eq!(
        format!(
            "https://enrollstream.dev/problems/{}",
            e["code"].as_str().unwrap()
        ),
        rest["type"]
    );
    assert_eq!(e["status"], 422);
    assert_eq!(e["errors"][0]["field"], "input.applicant.email");
    assert_eq!(rest["errors"][0]["field"], "applicant.email");

    // A transition the application does not allow, and an unknown application.
    let s = data(gql(c, &app, START, json!({"input": applicant()}), None).await);
    let id = s["startApplication"]["applicationId"]
        .as_str()
        .unwrap()
        .to_string();
    let refused = gql(
        c,
        &app,
        "mutation($id: ID!) { approveApplication(id: $id) { eventId } }",
        json!({"id": id}),
        None,
    )
    .await;
    assert_eq!(error(&refused)["code"], "invalid-transition", "{refused}");
    assert_eq!(error(&refused)["status"], 409);
    let rest = app
        .post(&format!("/v1/applications/{id}/approve"), json!({}))
        .await;
    assert_eq!(rest.status(), 409);
    let unknown = gql(
        c,
        &app,
        "mutation { declineApplication(id: \"A-none\", input: {reason: \"x\"}) { eventId } }",
        json!({}),
        None,
    )
    .await;
    assert_eq!(error(&unknown)["code"], "not-found", "{unknown}");

    // Idempotency-Key: a retry answers as the first time; another request under it is refused.
    let first = data(
        gql(
            c,
            &app,
            START,
            json!({"input": applicant()}),
            Some("gql-key-1"),
        )
        .await,
    );
    let again = data(
        gql(
            c,
            &app,
            START,
            json!({"input": applicant()}),
            Some("gql-key-1"),
        )
        .await,
    );
    assert_eq!(first, again);
    let mut other = applicant();
    other["product"] = json!("vision-plus");
    let mismatch = gql(c, &app, START, json!({"input": other}), Some("gql-key-1")).await;
    assert_eq!(
        error(&mismatch)["code"],
        "idempotency-key-mismatch",
        "{mismatch}"
    );
    let two = gql(c, &app, "mutation { a: startApplication(input: {applicant: {name: \"A\", email: \"a@x.io\"}, product: \"p\"}) { eventId } b: startApplication(input: {applicant: {name: \"B\", email: \"b@x.io\"}, product: \"p\"}) { eventId } }", json!({}), Some("gql-key-2")).await;
    assert!(two["data"]["a"]["eventId"].is_string(), "{two}");
    assert!(two["data"]["b"].is_null());
    assert_eq!(error(&two)["code"], "validation");
    assert_eq!(error(&two)["errors"][0]["field"], "Idempotency-Key");

    // Scopes, per field.
    let read_only = client_with_key(&reader);
    let denied = gql(&read_only, &app, START, json!({"input": applicant()}), None).await;
    assert_eq!(error(&denied)["code"], "forbidden");
    assert_eq!(error(&denied)["status"], 403);
    assert_eq!(error(&denied)["required_scope"], "applications:write");
    let seen = gql(
        &read_only,
        &app,
        "query($id: ID!) { application(id: $id) { id } }",
        json!({"id": id}),
        None,
    )
    .await;
    assert_eq!(data(seen)["application"]["id"], id.as_str());
    let quotes_only = client_with_key(&quoter);
    let q = gql(
        &quotes_only,
        &app,
        "mutation { createQuote(input: {customerId: \"C\", product: \"p\"}) { quoteId } }",
        json!({}),
        None,
    )
    .await;
    assert!(q["errors"].is_null(), "{q}");
    let r = gql(
        &quotes_only,
        &app,
        "{ applications { edges { cursor } } }",
        json!({}),
        None,
    )
    .await;
    assert_eq!(error(&r)["code"], "forbidden");

    // Introspection is off unless configured; the SDL is served, and is the one in docs/.
    let introspect = gql(c, &app, "{ __schema { types { name } } }", json!({}), None).await;
    assert!(introspect["data"]["__schema"].is_null(), "{introspect}");
    let introspect = gql(
        c,
        &app,
        "{ __type(name: \"Application\") { fields { name } } }",
        json!({}),
        None,
    )
    .await;
    assert!(introspect["data"]["__type"].is_null(), "{introspect}");
    let sdl = c
        .get(app.url("/graphql/schema.graphql"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/schema.graphql"
    ))
    .unwrap();
    assert_eq!(sdl, docs);
    // GraphiQL is off too.
    let page = c.get(app.url("/graphql")).send().await.unwrap();
    assert_eq!(page.status(), 405);
}
