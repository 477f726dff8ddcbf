//! SSE streaming: passthrough, flushing, truncation, cancellation, no retry after the first
//! byte, and idle timeouts.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::json;

async fn read_all(
    response: &mut awc::ClientResponse<
        impl futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
    >,
) -> Vec<u8> {
    let mut all = Vec::new();
    while let Some(chunk) = response.next().await {
        all.extend_from_slice(&chunk.expect("chunk"));
    }
    all
}

#[actix_rt::test]
async fn streams_pass_through_byte_for_byte() {
    let upstream = mock("a");
    let gateway = start_gateway(test_config(), &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let client = client();
    let mut direct = client
        .post(format!("{}/v1/chat/completions", upstream.url()))
        .send_json(&json!({"model": "echo-1", "stream": true, "messages": [{"role": "user", "content": "hello there"}]}))
        .await
        .expect("direct");
    let direct = read_all(&mut direct).await;
    let mut through = client
        .post(gateway.url("/v1/chat/completions"))
        .insert_header(("accept-encoding", "gzip"))
        .send_json(&chat_stream("llm/echo-1"))
        .await
        .expect("gateway");
    assert_eq!(through.status().as_u16(), 200);
    assert_eq!(
        through.headers().get("content-type").expect("type"),
        "text/event-stream"
    );
    assert_ne!(
        through
            .headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap_or("")),
        Some("gzip"),
        "SSE is never compressed"
    );
    let through = read_all(&mut through).await;
    assert!(direct.ends_with(b"data: [DONE]\n\n"));
    assert_eq!(
        String::from_utf8_lossy(&through),
        String::from_utf8_lossy(&direct)
    );
    gateway.stop().await;
}

#[actix_rt::test]
async fn the_first_chunk_arrives_before_the_upstream_sends_the_last() {
    let upstream = gated_mock("a", 6);
    let gateway = start_gateway(test_config(), &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let mut response = client()
        .post(gateway.url("/v1/chat/completions"))
        .send_json(&chat_stream("llm/m"))
        .await
        .expect("response");
    // The mock holds everything after its first chunk until the gate opens.
    let first = response.next().await.expect("a chunk").expect("bytes");
    assert!(first.starts_with(b"data: {"), "{first:?}");
    assert_eq!(
        upstream
            .state
            .streams_completed
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    upstream.state.gate.as_ref().expect("gate").add_permits(1);
    let rest = read_all(&mut response).await;
    assert!(rest.ends_with(b"data: [DONE]\n\n"));
    gateway.stop().await;
}

#[actix_rt::test]
async fn a_truncated_stream_ends_with_an_error_event() {
    let first = mock("a");
    let second = mock("b");
    first.state.set_mode(Mode::TruncateAfter(2));
    second.state.set_mode(Mode::TruncateAfter(2));
    let gateway = start_gateway(test_config(), &services_for("llm", &[&first, &second], &[])).await;
    gateway.wait_ready().await;
    let mut response = client()
        .post(gateway.url("/v1/chat/completions"))
        .send_json(&chat_stream("llm/m"))
        .await
        .expect("response");
    assert_eq!(response.status().as_u16(), 200);
    let body = String::from_utf8(read_all(&mut response).await).expect("utf8");
    assert!(!body.contains("[DONE]"), "{body}");
    assert!(body.ends_with("\n\n"), "{body}");
    let last_event = body.trim_end().rsplit("\n\n").next().expect("an event");
    assert!(
        last_event.starts_with("event: error\ndata: "),
        "{last_event}"
    );
    let error: serde_json::Value =
        serde_json::from_str(last_event.trim_start_matches("event: error\ndata: ")).expect("json");
    assert_eq!(error["error"]["code"], "stream_truncated");
    // The first byte had gone to the client: no retry on the other endpoint.
    assert_eq!(first.state.requests() + second.state.requests(), 1);

    let metrics = gateway.metrics_text().await;
    assert!(
        metrics.contains(r#"gateway_stream_faults_total{fault="truncated",service="llm"} 1"#),
        "{metrics}"
    );
    gateway.stop().await;
}

#[actix_rt::test]
async fn a_client_disconnect_cancels_the_upstream_stream() {
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
    .expect("mock");
    let gateway = start_gateway(test_config(), &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let mut response = client()
        .post(gateway.url("/v1/chat/completions"))
        .send_json(&chat_stream("llm/m"))
        .await
        .expect("response");
    response.next().await.expect("first chunk").expect("bytes");
    let pool = gateway.registry.pool("llm").expect("pool");
    assert_eq!(pool.snapshot().eligible[0].stats.in_flight(), 1);
    drop(response);
    // Let the mock go on writing: it can only notice the gateway left by failing to write.
    upstream.state.gate.as_ref().expect("gate").add_permits(1);
    let state = upstream.state.clone();
    wait_for("the upstream stream to be cancelled", || {
        let state = state.clone();
        async move {
            state
                .streams_cancelled
                .load(std::sync::atomic::Ordering::SeqCst)
                == 1
        }
    })
    .await;
    assert_eq!(
        upstream
            .state
            .streams_completed
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    wait_for("the in-flight slot to be released", || {
        let pool = pool.clone();
        async move { pool.snapshot().eligible[0].stats.in_flight() == 0 }
    })
    .await;
    gateway.stop().await;
}

#[actix_rt::test]
async fn a_silent_upstream_hits_the_idle_timeout() {
    let upstream = gated_mock("a", 6);
    let mut raw = test_config();
    raw.upstream_defaults.idle_timeout_ms = Some(300);
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let mut response = client()
        .post(gateway.url("/v1/chat/completions"))
        .send_json(&chat_stream("llm/m"))
        .await
        .expect("response");
    let body = String::from_utf8(read_all(&mut response).await).expect("utf8");
    assert!(body.contains("event: error"), "{body}");
    assert!(body.contains("\"code\":\"upstream_timeout\""), "{body}");
    gateway.stop().await;
}
