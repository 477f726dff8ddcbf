//! `/graphql`: queries and mutations with and without admin rights, limits, the playground,
//! and one-shot chat through the pipeline.

mod common;

use awc::http::Method;
use common::*;
use serde_json::{json, Value};

/// POSTs a query with an optional bearer credential; status and body.
async fn graphql(
    gateway: &TestGateway,
    credential: Option<&str>,
    query: &str,
    variables: Value,
) -> (u16, Value) {
    let mut request = gateway.client.post(gateway.url("/graphql"));
    if let Some(credential) = credential {
        request = request.bearer_auth(credential);
    }
    let mut response = request
        .send_json(&json!({"query": query, "variables": variables}))
        .await
        .expect("response");
    let body = response.body().limit(1 << 22).await.expect("body");
    (
        response.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

fn first_error_code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

async fn start(
    raw: gateway::config::RawConfig,
    upstream: &MockUpstream,
) -> (TestGateway, String, i64, String) {
    let gateway = start_gateway(raw, &services_for("llm", &[upstream], &[])).await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    let (key_id, key) = gateway
        .create_key(&admin, json!({"name": "explorer"}))
        .await;
    (gateway, admin, key_id, key)
}

#[actix_rt::test]
async fn playground_loads() {
    let upstream = mock("a");
    let (gateway, ..) = start(config_on(Db::Sqlite).await, &upstream).await;
    for path in ["/graphql", "/graphiql"] {
        let mut response = gateway
            .client
            .get(gateway.url(path))
            .send()
            .await
            .expect("page");
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(content_type.starts_with("text/html"), "{content_type}");
        let page = response.body().limit(1 << 20).await.expect("body");
        let page = String::from_utf8_lossy(&page).to_lowercase();
        assert!(
            page.contains("graphiql") && page.contains("/graphql"),
            "{page}"
        );
    }
    gateway.stop().await;
}

#[actix_rt::test]
async fn queries_and_mutations_respect_admin_rights() {
    let upstream = mock("a");
    let (gateway, admin, key_id, key) = start(config_on(Db::Sqlite).await, &upstream).await;

    // A key sees itself, models and services, but not endpoints or keys.
    let (status, body) = graphql(
        &gateway,
        Some(&key),
        "{ me { kind keyId admin } services { name eligibleEndpoints } }",
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["me"],
        json!({"kind": "api_key", "keyId": key_id.to_string(), "admin": false})
    );
    assert_eq!(
        body["data"]["services"],
        json!([{"name": "llm", "eligibleEndpoints": 1}])
    );
    for query in [
        "{ keys { id } }",
        "{ services { endpoints { address } } }",
        "{ usage { group } }",
    ] {
        let (status, body) = graphql(&gateway, Some(&key), query, json!({})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            first_error_code(&body),
            Some("insufficient_permissions"),
            "{query}: {body}"
        );
        assert_eq!(body["errors"][0]["extensions"]["status"], 403);
    }
    let (_, body) = graphql(
        &gateway,
        Some(&key),
        r#"mutation { createKey(input: {name: "sneaky"}) { secret } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        first_error_code(&body),
        Some("insufficient_permissions"),
        "{body}"
    );

    // Nobody: only `me`; a wrong credential is refused outright.
    let (_, body) = graphql(&gateway, None, "{ me { kind } }", json!({})).await;
    assert_eq!(body["data"]["me"]["kind"], "anonymous", "{body}");
    let (_, body) = graphql(&gateway, None, "{ models { name } }", json!({})).await;
    assert_eq!(first_error_code(&body), Some("missing_api_key"), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["status"], 401);
    let (status, body) = graphql(&gateway, Some("sk-gw-wrong"), "{ me { kind } }", json!({})).await;
    assert_eq!(
        (status, first_error_code(&body)),
        (401, Some("invalid_api_key")),
        "{body}"
    );

    // An admin sees endpoints and keys, and manages keys.
    let (_, body) = graphql(&gateway, Some(&admin), "{ services { name endpoints { address health inFlight latencyEwmaMs } } keys { id name } }", json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(
        body["data"]["services"][0]["endpoints"][0]["address"],
        format!("127.0.0.1:{}", upstream.addr.port())
    );
    assert_eq!(body["data"]["keys"][0]["name"], "explorer");

    let (_, body) = graphql(&gateway, Some(&admin), r#"mutation($name: String!) { createKey(input: {name: $name, rpm: 60}) { secret key { id rpm } } }"#, json!({"name": "made by graphql"})).await;
    assert!(body["errors"].is_null(), "{body}");
    let secret = body["data"]["createKey"]["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    let new_id = body["data"]["createKey"]["key"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(secret.starts_with("sk-gw-"));
    assert_eq!(body["data"]["createKey"]["key"]["rpm"], 60.0);

    let (_, body) = graphql(&gateway, Some(&admin), r#"mutation($id: ID!) { updateKeyLimits(id: $id, input: {tpm: 1000, rpm: null}) { rpm tpm } }"#, json!({"id": new_id})).await;
    assert_eq!(
        body["data"]["updateKeyLimits"],
        json!({"rpm": null, "tpm": 1000.0}),
        "{body}"
    );
    let (_, body) = graphql(
        &gateway,
        Some(&admin),
        r#"mutation { updateKeyLimits(id: "999999", input: {tpm: 1}) { tpm } }"#,
        json!({}),
    )
    .await;
    assert_eq!(first_error_code(&body), Some("not_found"), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["status"], 404);
    let (_, body) = graphql(
        &gateway,
        Some(&admin),
        r#"mutation { createKey(input: {name: "x", rpm: -1}) { secret } }"#,
        json!({}),
    )
    .await;
    assert_eq!(first_error_code(&body), Some("invalid_parameter"), "{body}");

    // The new key works until revoked through GraphQL.
    let (status, _) = gateway
        .send_as(
            Method::POST,
            "/v1/chat/completions",
            &secret,
            Some(&chat("llm/echo")),
        )
        .await;
    assert_eq!(status, 200);
    let (_, body) = graphql(
        &gateway,
        Some(&admin),
        r#"mutation($id: ID!) { revokeKey(id: $id) }"#,
        json!({"id": new_id}),
    )
    .await;
    assert_eq!(body["data"]["revokeKey"], true, "{body}");
    let (status, _) = gateway
        .send_as(
            Method::POST,
            "/v1/chat/completions",
            &secret,
            Some(&chat("llm/echo")),
        )
        .await;
    assert_eq!(status, 401);
    gateway.stop().await;
}

#[actix_rt::test]
async fn depth_complexity_and_introspection_limits() {
    let upstream = mock("a");
    let mut raw = config_on(Db::Sqlite).await;
    raw.graphql.max_depth = 4;
    raw.graphql.max_complexity = 20;
    let (gateway, admin, ..) = start(raw, &upstream).await;
    let (status, body) = graphql(
        &gateway,
        Some(&admin),
        "{ services { endpoints { address } } }",
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Introspection deeper than the limit passes: its answer is bounded by the schema...
    let deep = "{ __schema { types { fields { type { ofType { ofType { name } } } } } } }";
    let (status, body) = graphql(&gateway, Some(&admin), deep, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["__schema"]["types"].is_array(), "{body}");
    // ...also through fragments...
    let fragments = "{ __schema { ...T } } fragment T on __Schema { types { ...F } } fragment F on __Type { fields { type { ofType { name } } } }";
    let (status, body) = graphql(&gateway, Some(&admin), fragments, json!({})).await;
    assert_eq!(status, 200, "{body}");
    // ...while an ordinary operation as deep is refused, fragments counted too.
    let ordinary = "{ ... on Query { ... on Query { services { endpoints { address } } } } }";
    let (status, body) = graphql(&gateway, Some(&admin), ordinary, json!({})).await;
    assert_eq!(
        (status, first_error_code(&body)),
        (400, Some("query_too_deep")),
        "{body}"
    );
    let wide: String = (0..30).map(|i| format!("a{i}: me {{ kind }} ")).collect();
    let (status, body) = graphql(&gateway, Some(&admin), &format!("{{ {wide} }}"), json!({})).await;
    assert_eq!(
        (status, first_error_code(&body)),
        (400, Some("query_too_complex")),
        "{body}"
    );
    // Introspection is on in development...
    let (_, body) = graphql(
        &gateway,
        Some(&admin),
        "{ __schema { queryType { name } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        body["data"]["__schema"]["queryType"]["name"], "Query",
        "{body}"
    );
    let (status, body) = graphql(&gateway, Some(&admin), "{ nope }", json!({})).await;
    assert_eq!(
        (status, first_error_code(&body)),
        (400, Some("graphql_validation_failed")),
        "{body}"
    );
    gateway.stop().await;

    // ...and can be switched off.
    let mut raw = config_on(Db::Sqlite).await;
    raw.graphql.introspection = Some(false);
    let (gateway, admin, ..) = start(raw, &upstream).await;
    let (status, body) = graphql(
        &gateway,
        Some(&admin),
        "{ __schema { queryType { name } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        (status, first_error_code(&body)),
        (400, Some("graphql_validation_failed")),
        "{body}"
    );
    gateway.stop().await;
}

#[actix_rt::test]
async fn chat_and_usage_match_the_rest_view() {
    let upstream = mock("a");
    let (gateway, admin, key_id, key) = start(config_on(Db::Sqlite).await, &upstream).await;
    let query = r#"mutation($input: ChatInput!) { chatCompletion(input: $input) { content finishReason promptTokens completionTokens } }"#;
    let input = json!({"input": {"model": "llm/echo", "messages": [{"role": "user", "content": "hi graphql"}], "maxTokens": 16}});
    let (status, body) = graphql(&gateway, Some(&key), query, input.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["chatCompletion"],
        json!({"content": "echo: hi graphql", "finishReason": "stop", "promptTokens": 5.0, "completionTokens": 5.0})
    );
    // The upstream saw the pipeline's rewrite (the upstream model name only).
    let seen = upstream
        .state
        .last_body
        .lock()
        .map(|b| b.clone())
        .ok()
        .flatten()
        .expect("body");
    assert_eq!(
        (seen["model"].as_str(), seen["max_tokens"].as_u64()),
        (Some("echo"), Some(16))
    );
    // Pipeline errors keep their codes.
    let bad =
        json!({"input": {"model": "nope/none", "messages": [{"role": "user", "content": "x"}]}});
    let (_, body) = graphql(&gateway, Some(&key), query, bad).await;
    assert_eq!(first_error_code(&body), Some("model_not_found"), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["status"], 404);
    let (_, body) = graphql(&gateway, None, query, input.clone()).await;
    assert_eq!(first_error_code(&body), Some("missing_api_key"), "{body}");
    // A viewer's token may look around but not spend.
    gateway
        .store
        .create_user(
            "viewer1",
            "correct horse battery",
            actors::store::users::Role::Viewer,
        )
        .await
        .expect("viewer");
    let mut login = gateway
        .client
        .post(gateway.url("/auth/login"))
        .send_json(&json!({"username": "viewer1", "password": "correct horse battery"}))
        .await
        .expect("login");
    let token: Value = login.json().await.expect("token");
    let viewer = token["access_token"].as_str().expect("token");
    let (_, body) = graphql(&gateway, Some(viewer), query, input).await;
    assert_eq!(
        first_error_code(&body),
        Some("insufficient_permissions"),
        "{body}"
    );
    let (_, body) = graphql(
        &gateway,
        Some(viewer),
        "{ me { kind role admin } }",
        json!({}),
    )
    .await;
    assert_eq!(
        body["data"]["me"],
        json!({"kind": "user", "role": "viewer", "admin": false})
    );

    let (status, _) = gateway
        .send_as(
            Method::POST,
            "/v1/chat/completions",
            &key,
            Some(&chat("llm/echo")),
        )
        .await;
    assert_eq!(status, 200);
    // Two billed requests (the unknown model never reached an upstream).
    gateway.usage_rows(key_id, 2).await;
    for group in ["key", "model"] {
        let (status, rest) = gateway
            .send_as(
                Method::GET,
                &format!("/admin/usage?group_by={group}"),
                &admin,
                None,
            )
            .await;
        assert_eq!(status, 200);
        let (_, body) = graphql(&gateway, Some(&admin), "query($g: UsageGroup) { usage(groupBy: $g) { group requests promptTokens completionTokens totalTokens } }", json!({"g": group.to_uppercase()})).await;
        let graph = body["data"]["usage"].as_array().expect("usage").clone();
        let rest = rest["data"].as_array().expect("rest usage").clone();
        assert_eq!(graph.len(), rest.len());
        assert!(!graph.is_empty());
        for (g, r) in graph.iter().zip(&rest) {
            assert_eq!(g["group"], r["group"]);
            for (gk, rk) in [
                ("requests", "requests"),
                ("promptTokens", "prompt_tokens"),
                ("completionTokens", "completion_tokens"),
                ("totalTokens", "total_tokens"),
            ] {
                assert_eq!(g[gk].as_f64(), r[rk].as_f64(), "{group} {gk}");
            }
        }
        if group == "key" {
            assert_eq!(graph[0]["requests"], 2.0);
        }
    }
    gateway.stop().await;
}
