//! Every client mistake gets an OpenAI-shaped error with the right status, and nothing upstream.

mod common;

use common::*;
use serde_json::Value;

async fn check(
    gateway: &TestGateway,
    path: &str,
    content_type: &str,
    body: &[u8],
    status: u16,
    code: &str,
) {
    let (got, _, reply) = gateway.post_raw(path, content_type, body.to_vec()).await;
    let text = String::from_utf8_lossy(&reply).to_string();
    assert_eq!(
        got,
        status,
        "{path} {:?}: {text}",
        String::from_utf8_lossy(body)
    );
    let parsed: Value =
        serde_json::from_slice(&reply).unwrap_or_else(|_| panic!("JSON error body: {text}"));
    assert_eq!(parsed["error"]["code"], code, "{text}");
    assert!(parsed["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert!(parsed["error"]["type"].as_str().is_some());
}

#[actix_rt::test]
async fn bad_requests_get_clear_errors() {
    let upstream = mock("a");
    let mut raw = test_config();
    raw.server.max_body_bytes = 1024;
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let chat_path = "/v1/chat/completions";
    let json = "application/json";

    check(&gateway, chat_path, json, b"{not json", 400, "invalid_json").await;
    check(&gateway, chat_path, json, b"", 400, "invalid_json").await;
    check(&gateway, chat_path, json, b"[]", 400, "invalid_json").await;
    check(
        &gateway,
        chat_path,
        json,
        br#"{"messages":[{"role":"user","content":"x"}]}"#,
        400,
        "missing_required_parameter",
    )
    .await;
    check(
        &gateway,
        chat_path,
        json,
        br#"{"model":"llm/m"}"#,
        400,
        "missing_required_parameter",
    )
    .await;
    check(
        &gateway,
        chat_path,
        json,
        br#"{"model":"llm/m","messages":[]}"#,
        400,
        "invalid_parameter",
    )
    .await;
    check(
        &gateway,
        chat_path,
        json,
        br#"{"model":42,"messages":[{}]}"#,
        400,
        "invalid_parameter",
    )
    .await;
    // A NUL in the model would route (`llm/…`) and then make PostgreSQL refuse the usage row.
    check(
        &gateway,
        chat_path,
        json,
        br#"{"model":"llm/\u0000","messages":[{}]}"#,
        400,
        "invalid_parameter",
    )
    .await;
    check(
        &gateway,
        chat_path,
        json,
        format!(r#"{{"model":"llm/{}","messages":[{{}}]}}"#, "m".repeat(300)).as_bytes(),
        400,
        "invalid_parameter",
    )
    .await;
    // Completion limits a budget would reserve: negative, fractional, or beyond any context.
    for limits in [
        r#""max_tokens":-1"#,
        r#""max_completion_tokens":-1"#,
        r#""max_tokens":2.5"#,
        r#""max_tokens":9223372036854775807"#,
        r#""max_completion_tokens":1000001"#,
    ] {
        let body = format!(r#"{{"model":"llm/m","messages":[{{}}],{limits}}}"#);
        check(
            &gateway,
            chat_path,
            json,
            body.as_bytes(),
            400,
            "invalid_parameter",
        )
        .await;
    }
    check(
        &gateway,
        chat_path,
        json,
        br#"{"model":"nope","messages":[{}]}"#,
        404,
        "model_not_found",
    )
    .await;
    check(
        &gateway,
        chat_path,
        json,
        br#"{"model":"other/m","messages":[{}]}"#,
        404,
        "model_not_found",
    )
    .await;
    check(
        &gateway,
        chat_path,
        "text/plain",
        br#"{"model":"llm/m","messages":[{}]}"#,
        415,
        "unsupported_media_type",
    )
    .await;
    let big = format!(
        r#"{{"model":"llm/m","messages":[{{"content":"{}"}}]}}"#,
        "x".repeat(2048)
    );
    check(
        &gateway,
        chat_path,
        json,
        big.as_bytes(),
        413,
        "payload_too_large",
    )
    .await;
    check(
        &gateway,
        "/v1/embeddings",
        json,
        br#"{"model":"llm/m"}"#,
        400,
        "missing_required_parameter",
    )
    .await;
    check(&gateway, "/v1/nothing", json, b"{}", 404, "not_found").await;
    assert_eq!(
        upstream.state.requests(),
        0,
        "no bad request may reach the upstream"
    );

    let mut response = gateway
        .client
        .get(gateway.url(chat_path))
        .send()
        .await
        .expect("response");
    assert_eq!(response.status().as_u16(), 405);
    let body = response.body().await.expect("body");
    assert_eq!(error_code(&body), "method_not_allowed");
    gateway.stop().await;
}

#[actix_rt::test]
async fn oversized_body_without_content_length_is_refused() {
    let upstream = mock("a");
    let mut raw = test_config();
    raw.server.max_body_bytes = 1024;
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..8)
        .map(|_| Ok(bytes::Bytes::from(vec![b' '; 512])))
        .collect();
    let mut response = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .insert_header(("content-type", "application/json"))
        .send_stream(futures_util::stream::iter(chunks))
        .await
        .expect("response");
    assert_eq!(response.status().as_u16(), 413);
    assert_eq!(
        error_code(&response.body().await.expect("body")),
        "payload_too_large"
    );
    gateway.stop().await;
}
