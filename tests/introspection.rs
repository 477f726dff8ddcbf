//! The standard introspection query (graphql-js `getIntrospectionQuery()`, tests/fixtures)
//! passes the document limits, which still refuse ordinary operations as deep.

mod common;

use common::*;
use serde_json::{json, Value};

const DEFAULT_QUERY: &str = include_str!("fixtures/graphql/introspection-default.graphql");
const FULL_QUERY: &str = include_str!("fixtures/graphql/introspection-full.graphql");

async fn graphql(gateway: &TestGateway, token: &str, body: Value) -> (u16, Value) {
    let mut response = gateway
        .client
        .post(gateway.url("/graphql"))
        .bearer_auth(token)
        .send_json(&body)
        .await
        .expect("response");
    let bytes = response.body().limit(1 << 24).await.expect("body");
    (
        response.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn error_code_of(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .and_then(|items| items.iter().find(|item| item["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

/// `[Service!]!` as introspection spells it: NON_NULL → LIST → NON_NULL → OBJECT.
fn unwrap_type(mut reference: &Value) -> Vec<String> {
    let mut kinds = Vec::new();
    while reference.is_object() {
        kinds.push(reference["kind"].as_str().unwrap_or("?").to_string());
        reference = &reference["ofType"];
    }
    kinds
}

#[actix_rt::test]
async fn standard_introspection_passes_the_limits() {
    let upstream = mock("a");
    // The default limits (depth 12, 500 fields), which refused these queries before.
    let gateway = start_gateway(
        config_on(Db::Sqlite).await,
        &services_for("llm", &[&upstream], &[]),
    )
    .await;
    let admin = gateway.admin_token().await;
    for query in [DEFAULT_QUERY, FULL_QUERY] {
        let (status, body) = graphql(
            &gateway,
            &admin,
            json!({"query": query, "operationName": "IntrospectionQuery", "variables": {}}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(body["errors"].is_null(), "{body}");
        let schema = &body["data"]["__schema"];
        assert_eq!(schema["queryType"]["name"], "Query");
        assert_eq!(schema["mutationType"]["name"], "Mutation");
        let query_type = named(&schema["types"], "Query");
        assert_eq!(query_type["kind"], "OBJECT");
        let services = named(&query_type["fields"], "services");
        assert_eq!(
            unwrap_type(&services["type"]),
            ["NON_NULL", "LIST", "NON_NULL", "OBJECT"],
            "{services}"
        );
        let skip = named(&schema["directives"], "skip");
        assert_eq!(named(&skip["args"], "if")["type"]["kind"], "NON_NULL");
        for scalar in ["String", "Boolean", "ID"] {
            assert_eq!(named(&schema["types"], scalar)["kind"], "SCALAR");
        }
    }
    // The full form's extra fields are answered, not refused.
    let (_, body) = graphql(&gateway, &admin, json!({"query": FULL_QUERY})).await;
    let schema = &body["data"]["__schema"];
    assert_eq!(
        named(&schema["directives"], "deprecated")["isRepeatable"],
        false,
        "{body}"
    );
    let string = named(&schema["types"], "String");
    assert!(string.get("specifiedByURL").is_some(), "{string}");
    assert!(named(&schema["types"], "Query").get("isOneOf").is_some());
    gateway.stop().await;
}

#[actix_rt::test]
async fn ordinary_operations_keep_the_limits() {
    let upstream = mock("a");
    let gateway = start_gateway(
        config_on(Db::Sqlite).await,
        &services_for("llm", &[&upstream], &[]),
    )
    .await;
    let admin = gateway.admin_token().await;
    // Twelve nested inline fragments around a real selection: deeper than 12 levels.
    let nested = (0..12).fold("services { name }".to_string(), |inner, _| {
        format!("... on Query {{ {inner} }}")
    });
    let ordinary = format!("{{ {nested} }}");
    let (status, body) = graphql(&gateway, &admin, json!({"query": ordinary})).await;
    assert_eq!(
        (status, error_code_of(&body)),
        (400, Some("query_too_deep")),
        "{body}"
    );
    // The same depth without the nesting is fine, so the depth is what was refused.
    let (status, body) = graphql(&gateway, &admin, json!({"query": "{ services { name } }"})).await;
    assert_eq!(status, 200, "{body}");

    // Introspection beside an ordinary field is an ordinary operation.
    let type_ref = (0..9).fold("name".to_string(), |inner, _| {
        format!("ofType {{ {inner} }}")
    });
    let mixed = format!(
        "{{ __schema {{ types {{ fields {{ type {{ {type_ref} }} }} }} }} services {{ name }} }}"
    );
    let (status, body) = graphql(&gateway, &admin, json!({"query": mixed})).await;
    assert_eq!(
        (status, error_code_of(&body)),
        (400, Some("query_too_deep")),
        "{body}"
    );
    // Alone it passes.
    let alone = format!("{{ __schema {{ types {{ fields {{ type {{ {type_ref} }} }} }} }} }}");
    let (status, body) = graphql(&gateway, &admin, json!({"query": alone})).await;
    assert_eq!(status, 200, "{body}");

    // Introspection has limits of its own: 40 levels of ofType are refused.
    let too_deep = (0..40).fold("name".to_string(), |inner, _| {
        format!("ofType {{ {inner} }}")
    });
    let too_deep = format!("{{ __type(name: \"Query\") {{ {too_deep} }} }}");
    let (status, body) = graphql(&gateway, &admin, json!({"query": too_deep})).await;
    assert_eq!(
        (status, error_code_of(&body)),
        (400, Some("query_too_deep")),
        "{body}"
    );
    // So are more fields than its field limit (aliases of one field).
    let wide: String = (0..1_100).map(|i| format!("n{i}: name ")).collect();
    let wide = format!("{{ __schema {{ types {{ {wide} }} }} }}");
    let (status, body) = graphql(&gateway, &admin, json!({"query": wide})).await;
    assert_eq!(
        (status, error_code_of(&body)),
        (400, Some("query_too_complex")),
        "{body}"
    );
    gateway.stop().await;
}

#[actix_rt::test]
async fn introspection_switched_off_stays_off_however_deep() {
    let upstream = mock("a");
    let mut raw = config_on(Db::Sqlite).await;
    raw.graphql.introspection = Some(false);
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    let admin = gateway.admin_token().await;
    let (status, body) = graphql(&gateway, &admin, json!({"query": FULL_QUERY})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["data"].is_null(), "{body}");
    gateway.stop().await;
}
