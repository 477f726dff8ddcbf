//! 500 concurrent WebSocket sessions within a stated memory figure. A test binary of its own:
//! resident memory is per process, so no other test may allocate while it measures.

mod common;

use awc::http::Method;
use awc::ws::{Frame, Message};
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// 500 open sockets, both ends in this process: the process's resident memory grows by less
/// than 32 MiB (65 KiB per socket for client and gateway together; about 30 KiB is measured).
#[actix_rt::test]
async fn five_hundred_sockets_within_a_memory_bound() {
    const SOCKETS: usize = 500;
    const BOUND_KIB: u64 = 32 * 1024;
    let upstream = mock("a");
    let mut raw = config_on(Db::Sqlite).await;
    // One key holds every socket here: above the default per-key cap of 100 sessions.
    raw.websocket.max_sessions_per_key = SOCKETS + 1;
    let gateway = start_gateway(raw, &services_for("llm", &[&upstream], &[])).await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    let (_, key) = gateway.create_key(&admin, json!({"name": "many"})).await;
    // A client without awc's default limit of 100 connections.
    let client = awc::Client::builder()
        .connector(awc::Connector::new().limit(0))
        .finish();
    let url = format!("ws://{}/v1/ws", gateway.addr);
    let open = || async {
        client
            .ws(url.as_str())
            .bearer_auth(&key)
            .connect()
            .await
            .expect("upgrade accepted")
            .1
    };
    let chat = |id: String| {
        json!({"type": "chat.request", "id": id, "body": {
            "model": "llm/echo", "messages": [{"role": "user", "content": "still here"}]}})
        .to_string()
    };
    // One socket and one request first, so one-time allocations are not counted.
    let mut warm = open().await;
    warm.send(Message::Text(chat("w".into()).into()))
        .await
        .expect("send");
    warm.next().await.expect("open").expect("frame");

    let before = rss_kib();
    let mut sockets = Vec::with_capacity(SOCKETS);
    for _ in 0..SOCKETS {
        sockets.push(open().await);
    }
    let (status, list) = gateway
        .send_as(Method::GET, "/admin/ws", &admin, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().map(Vec::len), Some(SOCKETS + 1));
    // Every socket is served: one request on each of a spread of them.
    for (i, socket) in sockets.iter_mut().enumerate().step_by(50) {
        socket
            .send(Message::Text(chat(format!("s{i}")).into()))
            .await
            .expect("send");
        let frame = tokio::time::timeout(DEADLINE, socket.next())
            .await
            .expect("an answer")
            .expect("open")
            .expect("frame");
        let Frame::Text(text) = frame else {
            panic!("expected a message, got {frame:?}");
        };
        let message: Value = serde_json::from_slice(&text).expect("json");
        assert_eq!(message["type"], "chat.delta");
    }
    let grown = rss_kib().saturating_sub(before);
    eprintln!(
        "{SOCKETS} websockets: RSS grew by {grown} KiB ({} KiB per socket, both ends)",
        grown / SOCKETS as u64
    );
    assert!(
        grown < BOUND_KIB,
        "RSS grew by {grown} KiB for {SOCKETS} sockets"
    );
    drop(sockets);
    gateway.stop().await;
}
