//! No client choice turns billing off, and an estimate counts everything a model generated.

mod common;

use common::*;
use mock_upstream::TOOL_ARGUMENTS;
use serde_json::{json, Value};

/// Sends `body` with `key` and returns the status and the whole answer as text.
async fn send(gateway: &TestGateway, key: &str, body: &Value) -> (u16, String) {
    let (status, _, bytes) = chat_as(gateway, key, body).await;
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// A streaming client that says `include_usage: false` (or `null`, `{}`, or says it twice) is
/// still billed by the upstream's own count, and still does not see the usage event it did not
/// ask for; a client that asks sees it.
#[actix_rt::test]
async fn a_stream_cannot_turn_the_upstreams_count_off() {
    let upstream = MockUpstream::start(
        "127.0.0.1:0",
        MockOptions {
            name: "a".into(),
            chunks: 12,
            ..MockOptions::default()
        },
    )
    .expect("mock");
    let gateway = start_gateway(
        config_on(Db::Postgres).await,
        &services_for("llm", &[&upstream], &[]),
    )
    .await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    let (id, key) = gateway.create_key(&admin, json!({"name": "quiet"})).await;
    let cases = [
        (json!({"include_usage": false}), false),
        (Value::Null, false),
        (json!({}), false),
        (json!({"include_usage": true}), true),
    ];
    for (options, asked) in &cases {
        let mut body = chat_stream("llm/m");
        body["stream_options"] = options.clone();
        let (status, text) = send(&gateway, &key, &body).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(text.contains(r#""usage""#), *asked, "{options}: {text}");
        let seen = upstream.state.last_body.lock().expect("lock").clone();
        assert_eq!(
            seen.expect("forwarded")["stream_options"]["include_usage"],
            true
        );
    }
    // A key said twice: the upstream is sent one `include_usage`, `true`.
    let raw = r#"{"model":"llm/m","stream":true,"stream_options":{"include_usage":false,"include_usage":false},"messages":[{"role":"user","content":"hi"}]}"#;
    let mut response = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .insert_header(("authorization", format!("Bearer {key}")))
        .content_type("application/json")
        .send_body(raw)
        .await
        .expect("response");
    assert_eq!(response.status().as_u16(), 200);
    let text = response.body().await.expect("body");
    assert!(!String::from_utf8_lossy(&text).contains(r#""usage""#));

    let rows = gateway.usage_rows(id, cases.len() + 1).await;
    for row in &rows {
        assert_eq!(
            (row.prompt_tokens, row.completion_tokens, row.estimated),
            (5, 12, false),
            "billed by the upstream's count: {row:?}"
        );
    }
    gateway.stop().await;
}

/// An upstream that reports no usage is billed from an estimate that counts tool-call names
/// and arguments, not only message text; a stream of tool calls is billed by the count the
/// gateway always asks for.
#[actix_rt::test]
async fn tool_calls_are_billed() {
    let upstream = mock("tools");
    upstream.state.set_mode(Mode::ToolCalls);
    let gateway = start_gateway(
        config_on(Db::Sqlite).await,
        &services_for("llm", &[&upstream], &[]),
    )
    .await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    let (id, key) = gateway.create_key(&admin, json!({"name": "tools"})).await;
    let (status, text) = send(&gateway, &key, &chat("llm/m")).await;
    assert_eq!(status, 200, "{text}");
    let mut body = chat_stream("llm/m");
    body["stream_options"] = json!({"include_usage": false});
    let (status, text) = send(&gateway, &key, &body).await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains(r#""usage""#), "{text}");

    let rows = gateway.usage_rows(id, 2).await;
    let generated = actors::tokens::count(TOOL_ARGUMENTS) + actors::tokens::count("get_weather");
    let buffered = rows
        .iter()
        .find(|row| row.estimated)
        .expect("estimated row");
    assert!(buffered.prompt_tokens > 0, "{buffered:?}");
    assert!(
        buffered.completion_tokens >= generated,
        "the tool call's {generated} tokens are billed: {buffered:?}"
    );
    let streamed = rows.iter().find(|row| !row.estimated).expect("counted row");
    assert_eq!(
        (streamed.prompt_tokens, streamed.completion_tokens),
        (5, 50)
    );
    gateway.stop().await;
}
