//! `GET /admin/overview`: the dashboard's live numbers from the gateway's own counters, with
//! Prometheus switched off.

mod common;

use awc::http::Method;
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

async fn overview(gateway: &TestGateway, credential: Option<&str>) -> (u16, Value) {
    let mut request = gateway.client.get(gateway.url("/admin/overview"));
    if let Some(credential) = credential {
        request = request.bearer_auth(credential);
    }
    let mut response = request.send().await.expect("overview");
    let body = response.body().await.expect("body");
    (
        response.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

async fn admin_overview(gateway: &TestGateway, admin: &str) -> Value {
    let (status, body) = overview(gateway, Some(admin)).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn number(body: &Value, pointer: &str) -> f64 {
    body.pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} is not a number in {body}"))
}

/// `count` requests over a process that has lived `uptime_secs` whole seconds (under the
/// window) make a rate between count / (uptime + 1) and count / max(uptime, 1).
fn assert_rate(body: &Value, count: f64) {
    let rate = number(body, "/requests_per_second");
    let uptime = number(body, "/uptime_secs");
    assert!(uptime < 60.0, "the test outlived the window: {body}");
    let (low, high) = (count / (uptime + 1.0), count / uptime.max(1.0));
    assert!(
        (low - 1e-9..=high + 1e-9).contains(&rate),
        "{count} requests: rate {rate} not in {low}..={high}: {body}"
    );
}

#[actix_rt::test]
async fn overview_reports_traffic_streams_sessions_and_upstreams() {
    let upstream = gated_mock("a", 4);
    let mut raw = config_on(Db::Sqlite).await;
    // The dashboard must not depend on Prometheus.
    raw.monitoring.prometheus_enabled = false;
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    let (_, key) = gateway.create_key(&admin, json!({"name": "watched"})).await;
    assert_eq!(overview(&gateway, None).await.0, 401);
    assert_eq!(overview(&gateway, Some(&key)).await.0, 401);

    let idle = admin_overview(&gateway, &admin).await;
    assert_eq!(idle["window_secs"], 60, "{idle}");
    for pointer in [
        "/requests_per_second",
        "/error_rate",
        "/latency_ms/p50",
        "/latency_ms/p99",
        "/overhead_ms/p50",
        "/overhead_ms/p99",
        "/tokens_per_minute",
        "/active_streams",
        "/websocket_sessions",
    ] {
        assert_eq!(number(&idle, pointer), 0.0, "{pointer} in {idle}");
    }
    assert_eq!(
        idle["upstreams"],
        json!({"services": 1, "endpoints": 1, "eligible": 1, "pending": 0, "unhealthy": 0, "ejected": 0, "draining": 0})
    );

    for _ in 0..5 {
        let (status, _) = gateway
            .send_as(
                Method::POST,
                "/v1/chat/completions",
                &key,
                Some(&chat("llm/m")),
            )
            .await;
        assert_eq!(status, 200);
    }
    let busy = admin_overview(&gateway, &admin).await;
    assert_rate(&busy, 5.0);
    assert_eq!(number(&busy, "/error_rate"), 0.0, "{busy}");
    // The mock bills 5 + 5 tokens per request (usage is recorded when the answer is done).
    assert!(number(&busy, "/tokens_per_minute") > 0.0, "{busy}");
    let (p50, p99) = (
        number(&busy, "/latency_ms/p50"),
        number(&busy, "/latency_ms/p99"),
    );
    assert!(p50 > 0.0 && p99 >= p50, "{busy}");
    let overhead = number(&busy, "/overhead_ms/p50");
    assert!(overhead > 0.0 && overhead <= p99, "{busy}");

    // A stream is open from its head until its end.
    let mut stream = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .send_json(&chat_stream("llm/m"))
        .await
        .expect("stream");
    stream.next().await.expect("first chunk").expect("bytes");
    assert_eq!(admin_overview(&gateway, &admin).await["active_streams"], 1);
    upstream.state.gate.as_ref().expect("gate").add_permits(1);
    while let Some(chunk) = stream.next().await {
        chunk.expect("chunk");
    }
    wait_for("the stream to close", || async {
        admin_overview(&gateway, &admin).await["active_streams"] == 0
    })
    .await;

    // An open WebSocket is a session.
    let (_, socket) = gateway
        .client
        .ws(format!("ws://{}/v1/ws", gateway.addr))
        .bearer_auth(&key)
        .connect()
        .await
        .expect("websocket");
    wait_for("the websocket session", || async {
        admin_overview(&gateway, &admin).await["websocket_sessions"] == 1
    })
    .await;
    drop(socket);

    // A failing upstream: 5xx answers raise the error rate; health checks mark it unhealthy.
    upstream.state.set_mode(Mode::Fail);
    let (status, _) = gateway
        .send_as(
            Method::POST,
            "/v1/chat/completions",
            &key,
            Some(&chat("llm/m")),
        )
        .await;
    assert!(status >= 500, "{status}");
    let failing = admin_overview(&gateway, &admin).await;
    assert_rate(&failing, 7.0);
    let error_rate = number(&failing, "/error_rate");
    assert!((error_rate - 1.0 / 7.0).abs() < 1e-9, "{failing}");
    wait_for("the endpoint to turn unhealthy", || async {
        admin_overview(&gateway, &admin).await["upstreams"]["unhealthy"] == 1
    })
    .await;
    gateway.stop().await;
}
