//! Requests through the gateway to mock upstreams: routing, rewriting, headers.

mod common;

use common::*;
use serde_json::{json, Value};

#[actix_rt::test]
async fn chat_round_trip_rewrites_only_the_model() {
    let upstream = mock("a");
    let mut raw = test_config();
    raw.models.push(gateway::config::raw::RawModel {
        name: "smol".into(),
        service: "llm".into(),
        upstream_model: "smollm2".into(),
    });
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;

    let body = json!({"model": "smol", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5, "vendor_extra": {"k": [1, 2]}});
    let (status, headers, reply) = gateway.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
    let reply: Value = serde_json::from_slice(&reply).expect("json reply");
    assert_eq!(reply["choices"][0]["message"]["content"], "echo: hi");
    assert!(headers.get("x-request-id").is_some());

    let seen = upstream
        .state
        .last_body
        .lock()
        .expect("lock")
        .clone()
        .expect("upstream saw a body");
    let mut expected = body.clone();
    expected["model"] = json!("smollm2");
    assert_eq!(
        seen, expected,
        "only the model may change on the way upstream"
    );

    let (status, _, _) = gateway
        .post("/v1/chat/completions", &chat("llm/custom-model"))
        .await;
    assert_eq!(status, 200);
    let seen = upstream
        .state
        .last_body
        .lock()
        .expect("lock")
        .clone()
        .expect("body");
    assert_eq!(seen["model"], "custom-model");
    gateway.stop().await;
}

#[actix_rt::test]
async fn request_ids_are_honoured_and_forwarded() {
    let upstream = mock("a");
    let gateway = start_gateway(test_config(), &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let response = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .insert_header(("x-request-id", "trace-123"))
        .send_json(&chat("llm/m"))
        .await
        .expect("response");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers().get("x-request-id").expect("id"),
        "trace-123"
    );
    let forwarded = upstream.state.last_headers.lock().expect("lock").clone();
    assert!(
        forwarded
            .iter()
            .any(|(k, v)| k == "x-request-id" && v == "trace-123"),
        "{forwarded:?}"
    );
    // The client's own credentials never travel upstream.
    assert!(!forwarded.iter().any(|(k, _)| k == "authorization"));

    let (_, headers, _) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
    let generated = headers
        .get("x-request-id")
        .expect("generated id")
        .to_str()
        .expect("ascii");
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    gateway.stop().await;
}

#[actix_rt::test]
async fn completions_embeddings_and_models() {
    let upstream = mock("a");
    let gateway = start_gateway(test_config(), &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;

    let (status, _, body) = gateway
        .post(
            "/v1/completions",
            &json!({"model": "llm/m", "prompt": "say"}),
        )
        .await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["choices"][0]["text"], "echo: say");

    let (status, _, body) = gateway
        .post(
            "/v1/embeddings",
            &json!({"model": "llm/e", "input": ["a", "b"]}),
        )
        .await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["data"].as_array().expect("data").len(), 2);

    let (status, models) = gateway.get_json("/v1/models").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = models["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["llm/echo-1"]);
    gateway.stop().await;
}

#[actix_rt::test]
async fn upstream_client_errors_pass_through_without_retry() {
    let first = mock("a");
    let second = mock("b");
    first.state.set_mode(Mode::Reject);
    second.state.set_mode(Mode::Reject);
    let gateway = start_gateway(test_config(), &services_for("llm", &[&first, &second], &[])).await;
    gateway.wait_ready().await;
    let (status, _, body) = gateway.post("/v1/chat/completions", &chat("llm/m")).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        error_code(&body),
        "mock_reject",
        "the upstream's own error reaches the client"
    );
    assert_eq!(
        first.state.requests() + second.state.requests(),
        1,
        "a 4xx is not retried"
    );
    gateway.stop().await;
}
