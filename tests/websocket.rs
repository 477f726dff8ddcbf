//! `GET /v1/ws`: streaming chat over WebSocket through the same pipeline as REST.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use awc::http::Method;
use awc::ws::{CloseCode, Frame, Message};
use bytes::Bytes;
use common::ws::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

/// The data of every SSE event of a REST stream, `[DONE]` excluded.
fn sse_chunks(body: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).expect("chunk JSON"))
        .collect()
}

#[actix_rt::test]
async fn deltas_stream_incrementally_and_match_rest() {
    let upstream = gated_mock("a", 4);
    let gate = upstream.state.gate.clone().expect("gated");
    let Setup {
        gateway,
        key_id,
        key,
        ..
    } = setup(config_on(Db::Sqlite).await, &upstream).await;

    // The REST stream for the same request, as the reference.
    gate.add_permits(1);
    let mut rest = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .send_json(&json!({"model": "llm/echo", "stream": true,
            "messages": [{"role": "user", "content": "one two three"}]}))
        .await
        .expect("rest");
    let rest_body = rest.body().limit(1 << 20).await.expect("rest body");
    let reference = sse_chunks(&rest_body);
    assert_eq!(reference.len(), 5, "4 words and the finish chunk");

    let mut socket = connect(&gateway, &key).await;
    send(&mut socket, &request("r1", "llm/echo", "one two three")).await;
    // The first delta arrives while the upstream still holds the rest of its stream.
    let first = next_json(&mut socket).await;
    assert_eq!(
        (first["type"].as_str(), first["id"].as_str()),
        (Some("chat.delta"), Some("r1"))
    );
    assert_eq!(
        upstream.state.streams_completed.load(Ordering::SeqCst),
        1,
        "only the REST one"
    );
    gate.add_permits(1);
    let mut chunks = vec![first["chunk"].clone()];
    let done = loop {
        let message = next_json(&mut socket).await;
        match message["type"].as_str() {
            Some("chat.delta") => chunks.push(message["chunk"].clone()),
            _ => break message,
        }
    };
    assert_eq!(chunks, reference);
    assert_eq!(done["type"], "chat.done");
    assert_eq!(done["id"], "r1");
    assert_eq!(done["usage"]["prompt_tokens"], 5);
    assert_eq!(done["usage"]["completion_tokens"], 4);

    // Both are billed the same way, as complete requests with the upstream's counts.
    let rows = gateway.usage_rows(key_id, 2).await;
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(
            (
                row.status,
                row.prompt_tokens,
                row.completion_tokens,
                row.estimated
            ),
            (200, 5, 4, false),
            "{row:?}"
        );
    }
    gateway.stop().await;
}

#[actix_rt::test]
async fn cancel_stops_the_upstream_and_bills_what_was_delivered() {
    // A long, paced stream, so the mock is still writing when the gateway has left.
    let upstream = MockUpstream::start(
        "127.0.0.1:0",
        MockOptions {
            name: "a".into(),
            gated: true,
            chunks: 200,
            chunk_delay: Duration::from_millis(5),
            ..MockOptions::default()
        },
    )
    .expect("mock starts");
    let Setup {
        gateway,
        key_id,
        key,
        ..
    } = setup(config_on(Db::Sqlite).await, &upstream).await;
    let mut socket = connect(&gateway, &key).await;
    send(
        &mut socket,
        &request(7.to_string().as_str(), "llm/echo", "alpha beta"),
    )
    .await;
    let first = next_json(&mut socket).await;
    assert_eq!(first["type"], "chat.delta");
    send(&mut socket, &json!({"type": "cancel", "id": "7"})).await;
    let ack = next_json(&mut socket).await;
    assert_eq!(
        (ack["type"].as_str(), ack["id"].as_str()),
        (Some("chat.cancelled"), Some("7"))
    );
    // The gateway let go of the upstream at once...
    let pool = gateway.registry.pool("llm").expect("pool");
    wait_for("the in-flight count to drop", || {
        let pool = pool.clone();
        async move { pool.snapshot().eligible[0].stats.in_flight() == 0 }
    })
    .await;
    // ...and the mock, which only notices when its next write fails, saw it cancelled.
    upstream.state.gate.as_ref().expect("gate").add_permits(1);
    let state = upstream.state.clone();
    wait_for("the upstream stream to be cancelled", || {
        let state = state.clone();
        async move { state.streams_cancelled.load(Ordering::SeqCst) == 1 }
    })
    .await;
    assert_eq!(upstream.state.streams_completed.load(Ordering::SeqCst), 0);
    let rows = gateway.usage_rows(key_id, 1).await;
    assert_eq!(rows[0].status, 499, "{:?}", rows[0]);
    assert!(
        rows[0].completion_tokens > 0,
        "the delivered word is billed"
    );
    assert!(rows[0].estimated);
    // Cancelling again: nothing runs under that id.
    send(&mut socket, &json!({"type": "cancel", "id": "7"})).await;
    let error = next_json(&mut socket).await;
    assert_eq!(
        (error["type"].as_str(), error["error"]["code"].as_str()),
        (Some("error"), Some("not_found"))
    );
    gateway.stop().await;
}

#[actix_rt::test]
async fn bad_messages_get_errors_and_the_socket_keeps_working() {
    let upstream = mock("a");
    let mut raw = config_on(Db::Sqlite).await;
    raw.websocket.max_message_bytes = 4096;
    raw.websocket.max_concurrent_requests = 1;
    let Setup { gateway, key, .. } = setup(raw, &upstream).await;
    let mut socket = connect(&gateway, &key).await;

    let cases: Vec<(Message, Option<&str>, &str)> = vec![
        (Message::Text("{not json".into()), None, "invalid_json"),
        (
            Message::Text(r#"{"type":"dance","id":"d1"}"#.into()),
            Some("d1"),
            "invalid_parameter",
        ),
        (
            Message::Text(r#"{"type":"chat.request","id":"b1"}"#.into()),
            Some("b1"),
            "missing_required_parameter",
        ),
        (
            Message::Text(r#"{"type":"chat.request","id":"b2","body":{"model":"llm/x"}}"#.into()),
            Some("b2"),
            "missing_required_parameter",
        ),
        (
            Message::Text(request("m1", "nope/none", "x").to_string().into()),
            Some("m1"),
            "model_not_found",
        ),
        (
            Message::Binary(Bytes::from_static(b"\x00\x01")),
            None,
            "invalid_parameter",
        ),
    ];
    for (message, id, code) in cases {
        socket.send(message).await.expect("send");
        let error = next_json(&mut socket).await;
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["id"].as_str(), id, "{error}");
        assert_eq!(error["error"]["code"], code, "{error}");
    }
    // Still serving after all that.
    send(&mut socket, &request("ok", "llm/echo", "fine")).await;
    let mut types = Vec::new();
    loop {
        let message = next_json(&mut socket).await;
        let kind = message["type"].as_str().unwrap_or("").to_string();
        types.push(kind.clone());
        if kind != "chat.delta" {
            assert_eq!(kind, "chat.done", "{message}");
            break;
        }
    }
    assert!(types.len() > 1);

    // A message over the limit closes the socket with 1009.
    let big = "x".repeat(8192);
    send(&mut socket, &request("big", "llm/echo", &big)).await;
    let reason = next_close(&mut socket).await.expect("a close reason");
    assert_eq!(reason.code, CloseCode::Size);
    gateway.stop().await;
}

#[actix_rt::test]
async fn concurrent_requests_are_bounded_per_socket() {
    let upstream = gated_mock("a", 4);
    let gate = upstream.state.gate.clone().expect("gated");
    let mut raw = config_on(Db::Sqlite).await;
    raw.websocket.max_concurrent_requests = 2;
    let Setup { gateway, key, .. } = setup(raw, &upstream).await;
    let mut socket = connect(&gateway, &key).await;
    for id in ["a", "b"] {
        send(&mut socket, &request(id, "llm/echo", "hold")).await;
        assert_eq!(next_json(&mut socket).await["type"], "chat.delta");
    }
    send(&mut socket, &request("c", "llm/echo", "hold")).await;
    let error = next_json(&mut socket).await;
    assert_eq!(
        (
            error["id"].as_str(),
            error["status"].as_u64(),
            error["error"]["code"].as_str()
        ),
        (Some("c"), Some(429), Some("too_many_concurrent_requests"))
    );
    // Both running requests finish, interleaved on one socket.
    gate.add_permits(2);
    let mut done = Vec::new();
    while done.len() < 2 {
        let message = next_json(&mut socket).await;
        if message["type"] == "chat.done" {
            done.push(message["id"].as_str().unwrap_or("").to_string());
        }
    }
    done.sort();
    assert_eq!(done, ["a", "b"]);
    gateway.stop().await;
}

#[actix_rt::test]
async fn authentication_at_the_upgrade() {
    let upstream = mock("a");
    let Setup {
        gateway,
        admin,
        key,
        ..
    } = setup(config_on(Db::Sqlite).await, &upstream).await;

    // No credential, a wrong key, a long-lived secret in the URL: refused.
    assert_eq!(open(&gateway, "/v1/ws", None, &[]).await.err(), Some(401));
    assert_eq!(
        open(&gateway, "/v1/ws", Some("sk-gw-wrong"), &[])
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        open(&gateway, &format!("/v1/ws?api_key={key}"), None, &[])
            .await
            .err(),
        Some(401)
    );

    // The subprotocol carries the key; the gateway answers with its protocol name if offered,
    // otherwise with the one protocol the browser sent.
    let auth_protocol = format!("openai-insecure-api-key.{key}");
    let (chosen, _) = open(&gateway, "/v1/ws", None, &["ai-gateway.v1", &auth_protocol])
        .await
        .expect("accepted");
    assert_eq!(chosen.as_deref(), Some("ai-gateway.v1"));
    let (chosen, _) = open(&gateway, "/v1/ws", None, &[&auth_protocol])
        .await
        .expect("accepted");
    assert_eq!(chosen.as_deref(), Some(auth_protocol.as_str()));

    // A ticket works once.
    let (status, ticket) = gateway
        .send_as(Method::POST, "/v1/ws/ticket", &key, None)
        .await;
    assert_eq!(status, 200, "{ticket}");
    let url = ticket["url"].as_str().expect("url").to_string();
    let (_, mut socket) = open(&gateway, &url, None, &[])
        .await
        .expect("ticket accepted");
    send(&mut socket, &request("t", "llm/echo", "via ticket")).await;
    assert_eq!(next_json(&mut socket).await["type"], "chat.delta");
    assert_eq!(open(&gateway, &url, None, &[]).await.err(), Some(401));
    let (status, _) = gateway
        .send_as(Method::POST, "/v1/ws/ticket", "sk-gw-wrong", None)
        .await;
    assert_eq!(status, 401);

    // An admin token works too (billed without a key).
    let (_, mut socket) = open(&gateway, "/v1/ws", Some(&admin), &[])
        .await
        .expect("admin");
    send(&mut socket, &request("j", "llm/echo", "as admin")).await;
    assert_eq!(next_json(&mut socket).await["type"], "chat.delta");
    gateway.stop().await;
}

#[actix_rt::test]
async fn idle_sockets_are_closed_and_shutdown_closes_the_rest() {
    let upstream = mock("a");
    let mut raw = config_on(Db::Sqlite).await;
    raw.websocket.ping_interval_ms = 50;
    raw.websocket.idle_timeout_ms = 300;
    let Setup {
        gateway,
        admin,
        key,
        ..
    } = setup(raw, &upstream).await;

    // This client never answers pings.
    let mut idle = connect(&gateway, &key).await;
    let reason = next_close(&mut idle).await.expect("a close reason");
    assert_eq!(reason.code, CloseCode::Normal);
    assert_eq!(reason.description.as_deref(), Some("idle timeout"));

    // This one answers every ping, so it stays, is listed, and is counted...
    let mut live = connect(&gateway, &key).await;
    let listed = {
        let gateway = &gateway;
        let admin = admin.clone();
        move || {
            let admin = admin.clone();
            async move {
                let (_, list) = gateway
                    .send_as(Method::GET, "/admin/ws", &admin, None)
                    .await;
                list["data"].as_array().map_or(0, Vec::len)
            }
        }
    };
    let mut pongs = 0;
    while pongs < 10 {
        let frame = tokio::time::timeout(DEADLINE, live.next())
            .await
            .expect("a ping")
            .expect("open")
            .expect("frame");
        match frame {
            Frame::Ping(bytes) => {
                live.send(Message::Pong(bytes)).await.expect("pong");
                pongs += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(listed().await, 1, "only the live socket");
    assert!(gateway
        .metrics_text()
        .await
        .contains("gateway_websocket_sessions 1"));

    // ...until the gateway shuts down: a 1001 close frame.
    assert_eq!(gateway.ws_hub.close_all().await, 1);
    let reason = loop {
        match tokio::time::timeout(DEADLINE, live.next())
            .await
            .expect("frame")
            .expect("open")
            .expect("frame")
        {
            Frame::Ping(bytes) => live.send(Message::Pong(bytes)).await.expect("pong"),
            Frame::Close(reason) => break reason,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(reason.expect("reason").code, CloseCode::Away);
    wait_for("the session list to empty", || {
        let listed = listed.clone();
        async move { listed().await == 0 }
    })
    .await;
    gateway.stop().await;
}

#[actix_rt::test]
async fn a_broken_upstream_stream_ends_with_an_error_not_done() {
    let upstream = mock("a");
    let Setup {
        gateway,
        key_id,
        key,
        ..
    } = setup(config_on(Db::Sqlite).await, &upstream).await;
    upstream.state.set_mode(Mode::TruncateAfter(2));
    let mut socket = connect(&gateway, &key).await;
    send(&mut socket, &request("t", "llm/echo", "cut short")).await;
    let mut deltas = 0;
    let last = loop {
        let message = next_json(&mut socket).await;
        if message["type"] != "chat.delta" {
            break message;
        }
        deltas += 1;
    };
    assert_eq!(deltas, 2);
    assert_eq!(
        (
            last["type"].as_str(),
            last["id"].as_str(),
            last["status"].as_u64(),
            last["error"]["code"].as_str()
        ),
        (
            Some("error"),
            Some("t"),
            Some(502),
            Some("stream_truncated")
        ),
        "{last}"
    );
    // Billed for what was delivered, as a failed stream.
    let rows = gateway.usage_rows(key_id, 1).await;
    assert_eq!(rows[0].status, 502, "{:?}", rows[0]);
    assert!(rows[0].completion_tokens > 0);
    // The socket serves the next request.
    upstream.state.set_mode(Mode::Normal);
    send(&mut socket, &request("u", "llm/echo", "whole")).await;
    let done = loop {
        let message = next_json(&mut socket).await;
        if message["type"] != "chat.delta" {
            break message;
        }
    };
    assert_eq!(done["type"], "chat.done", "{done}");
    gateway.stop().await;
}
