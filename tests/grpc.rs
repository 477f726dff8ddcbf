//! HTTP→gRPC conversion end to end: clients speak OpenAI HTTP to the gateway, which reaches the
//! REAL python-models over gRPC (`grpc_port` of a dual-port instance, preferred by default).
//! One python-models process is shared by the binary's tests; the kill-and-recover test starts
//! its own. python-models must be installed (`python-models/install.sh`, run here if the venv is
//! missing); a server that cannot start fails the tests.

mod common;

use std::sync::OnceLock;

use common::python_models::PythonModels;
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

const CHAT_MODEL: &str = "python-models/smollm2-135m-instruct";

/// The process shared by most tests; it lives as long as the test binary.
fn shared() -> &'static PythonModels {
    static SHARED: OnceLock<PythonModels> = OnceLock::new();
    SHARED.get_or_init(PythonModels::start)
}

async fn gateway_for(python: &PythonModels) -> TestGateway {
    let gateway = start_gateway(test_config(), &python.services()).await;
    gateway.wait_ready().await;
    gateway
}

fn chat_body(content: &str, max_tokens: u32) -> Value {
    json!({"model": CHAT_MODEL, "temperature": 0, "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": content}]})
}

fn json_body(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("JSON: {}", String::from_utf8_lossy(body)))
}

#[actix_rt::test]
async fn chat_over_grpc_returns_text_and_usage() {
    let python = shared();
    let gateway = gateway_for(python).await;
    let grpc_chats = python
        .metric(
            "model_server_requests_total",
            &[r#"protocol="grpc""#, r#"endpoint="Chat""#],
        )
        .await;
    let (status, headers, body) = gateway
        .post("/v1/chat/completions", &chat_body("Name a colour.", 8))
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    let body = json_body(&body);
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "smollm2-135m-instruct");
    let text = body["choices"][0]["message"]["content"]
        .as_str()
        .expect("text");
    assert!(!text.trim().is_empty(), "real text: {body}");
    assert!(body["choices"][0]["finish_reason"].is_string());
    let usage = &body["usage"];
    assert!(
        usage["prompt_tokens"].as_u64() > Some(0) && usage["completion_tokens"].as_u64() > Some(0)
    );
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(
            usage["prompt_tokens"].as_u64().unwrap_or(0)
                + usage["completion_tokens"].as_u64().unwrap_or(0)
        )
    );
    // It went over gRPC, not HTTP.
    let after = python
        .metric(
            "model_server_requests_total",
            &[r#"protocol="grpc""#, r#"endpoint="Chat""#],
        )
        .await;
    // Other tests share this python-models process, so the count may have grown further.
    assert!(after >= grpc_chats + 1.0, "{after} after {grpc_chats}");
    gateway.stop().await;
}

#[actix_rt::test]
async fn streaming_chat_arrives_as_chunk_events_then_done() {
    let python = shared();
    let gateway = gateway_for(python).await;
    let mut body = chat_body("Count to five.", 8);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let mut response = client()
        .post(gateway.url("/v1/chat/completions"))
        .send_json(&body)
        .await
        .expect("response");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/event-stream"[..])
    );
    let mut sse = Vec::new();
    let mut reads = 0;
    while let Some(chunk) = response.next().await {
        sse.extend_from_slice(&chunk.expect("bytes"));
        reads += 1;
    }
    assert!(reads > 1, "the stream arrived in one piece");
    let text = String::from_utf8(sse).expect("utf-8");
    let data: Vec<&str> = text
        .split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| {
            event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {event:?}"))
        })
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"));
    let events: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| json_body(d.as_bytes()))
        .collect();
    assert!(events
        .iter()
        .all(|e| e["object"] == "chat.completion.chunk"));
    let contents = events
        .iter()
        .filter_map(|e| e["choices"].get(0)?["delta"]["content"].as_str())
        .filter(|c| !c.is_empty())
        .count();
    assert!(contents >= 2, "several content chunks: {text}");
    let usage = &events.last().expect("usage event")["usage"];
    assert_eq!(events.last().expect("usage")["choices"], json!([]));
    assert!(usage["completion_tokens"].as_u64() > Some(0), "{text}");
    assert!(!text.contains("event: error"));
    gateway.stop().await;
}

#[actix_rt::test]
async fn embeddings_over_grpc_have_384_dimensions() {
    let python = shared();
    let gateway = gateway_for(python).await;
    let (status, _, body) = gateway
        .post(
            "/v1/embeddings",
            &json!({"model": "python-models/all-minilm-l6-v2", "input": ["A man is eating food.", "A cat sleeps."]}),
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let body = json_body(&body);
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(2));
    for (i, item) in body["data"].as_array().expect("data").iter().enumerate() {
        assert_eq!(item["index"], i);
        let vector = item["embedding"].as_array().expect("floats");
        assert_eq!(vector.len(), 384);
        let norm: f64 = vector.iter().filter_map(Value::as_f64).map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-3, "L2-normalised: {norm}");
    }
    assert!(body["usage"]["prompt_tokens"].as_u64() > Some(0));
    gateway.stop().await;
}

#[actix_rt::test]
async fn upstream_rejections_keep_their_meaning() {
    let python = shared();
    let gateway = gateway_for(python).await;
    // Out of range: python-models answers INVALID_ARGUMENT.
    let mut bad = chat_body("hi", 4);
    bad["temperature"] = json!(5);
    let (status, _, body) = gateway.post("/v1/chat/completions", &bad).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let body = json_body(&body);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("temperature"),
        "{body}"
    );
    // A wrong type is caught by the conversion itself, naming the parameter.
    bad["temperature"] = json!("0.5");
    let (status, _, body) = gateway.post("/v1/chat/completions", &bad).await;
    assert_eq!(status, 400);
    assert_eq!(json_body(&body)["error"]["param"], "temperature");
    // An unknown upstream model: NOT_FOUND.
    let (status, _, body) = gateway
        .post("/v1/chat/completions", &chat("python-models/nope"))
        .await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    // The contract has no text completions.
    let (status, _, body) = gateway
        .post(
            "/v1/completions",
            &json!({"model": CHAT_MODEL, "prompt": "Once"}),
        )
        .await;
    assert_eq!(status, 501);
    assert_eq!(error_code(&body), "unsupported_by_service");
    // None of this is the endpoint's fault: it stays eligible with a clean record.
    let pool = gateway.registry.pool("python-models").expect("pool");
    assert_eq!(pool.snapshot().eligible.len(), 1);
    assert_eq!(pool.snapshot().eligible[0].stats.consecutive_failures(), 0);
    gateway.stop().await;
}

#[actix_rt::test]
async fn models_of_grpc_services_are_listed() {
    let python = shared();
    let gateway = gateway_for(python).await;
    let (status, list) = gateway.get_json("/v1/models").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.contains(&CHAT_MODEL), "{ids:?}");
    assert!(ids.contains(&"python-models/all-minilm-l6-v2"), "{ids:?}");
    gateway.stop().await;
}

#[actix_rt::test]
async fn a_client_that_leaves_stops_generation_upstream() {
    let python = shared();
    let gateway = gateway_for(python).await;
    let cancelled = python
        .metric("model_server_cancelled_generations_total", &[])
        .await;
    let mut body = chat_body("Write a long story about the sea.", 400);
    body["stream"] = json!(true);
    body["ignore_eos"] = json!(true);
    let mut response = client()
        .post(gateway.url("/v1/chat/completions"))
        .send_json(&body)
        .await
        .expect("response");
    assert_eq!(response.status().as_u16(), 200);
    response.next().await.expect("first chunk").expect("bytes");
    drop(response);
    wait_for("python-models to cancel the generation", || async {
        python
            .metric("model_server_cancelled_generations_total", &[])
            .await
            > cancelled
    })
    .await;
    let pool = gateway.registry.pool("python-models").expect("pool");
    wait_for("the in-flight count to drop", || {
        let pool = pool.clone();
        async move {
            pool.snapshot()
                .eligible
                .iter()
                .all(|e| e.stats.in_flight() == 0)
        }
    })
    .await;
    gateway.stop().await;
}

#[actix_rt::test]
async fn conversion_off_uses_http_and_refuses_grpc_only_endpoints() {
    let python = shared();
    let mut config = test_config();
    config.protocol_conversion.enabled = false;
    let mut services = python.services();
    services["grpc-only"] =
        json!({"host": "127.0.0.1", "port": python.grpc_port, "protocol": "grpc"});
    let gateway = start_gateway(config, &services).await;
    gateway.wait_ready().await;
    let http_chats = python
        .metric(
            "model_server_requests_total",
            &[r#"protocol="http""#, r#"endpoint="chat""#],
        )
        .await;
    let (status, _, body) = gateway
        .post("/v1/chat/completions", &chat_body("Hi", 2))
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let after = python
        .metric(
            "model_server_requests_total",
            &[r#"protocol="http""#, r#"endpoint="chat""#],
        )
        .await;
    assert_eq!(
        after,
        http_chats + 1.0,
        "the dual-port instance is reached over HTTP"
    );
    let (status, _, body) = gateway
        .post(
            "/v1/chat/completions",
            &chat("grpc-only/smollm2-135m-instruct"),
        )
        .await;
    assert_eq!(status, 501);
    let message = json_body(&body)["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(message.contains("PROTOCOL_CONVERSION_ENABLED"), "{message}");
    gateway.stop().await;
}

#[actix_rt::test]
async fn a_killed_server_is_503_until_it_is_back() {
    let python = PythonModels::start();
    let gateway = gateway_for(&python).await;
    let (status, _, _) = gateway
        .post("/v1/chat/completions", &chat_body("Hi", 2))
        .await;
    assert_eq!(status, 200);
    let (http_port, grpc_port) = python.kill();
    let (status, _, body) = gateway
        .post("/v1/chat/completions", &chat_body("Hi", 2))
        .await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    let message = json_body(&body)["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(message.contains("'python-models'"), "{message}");
    // Back on the same ports: health checks bring the endpoint back.
    let python = PythonModels::start_on(http_port, grpc_port);
    gateway.wait_ready().await;
    let (status, _, body) = gateway
        .post("/v1/chat/completions", &chat_body("Hi", 2))
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    gateway.stop().await;
    drop(python);
}
