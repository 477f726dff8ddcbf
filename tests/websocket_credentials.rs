//! `GET /v1/ws` and the credential a socket was opened with: an open socket checks its key or
//! token again (at each request, periodically, at expiry) and closes with 4001 when it is gone;
//! it lives at most `max_session_lifetime_ms` (4000); sessions and tickets are capped per key
//! and in total, so one key filling its share never stops another.

mod common;

use actors::store::users::Role;
use awc::http::Method;
use awc::ws::Frame;
use common::ws::*;
use common::*;
use serde_json::{json, Value};

/// Every message up to the close frame, and the frame's code and reason.
async fn until_close(socket: &mut impl Socket) -> (Vec<Value>, u16, String) {
    let mut messages = Vec::new();
    loop {
        match next_frame(socket).await {
            Frame::Text(text) => messages.push(serde_json::from_slice(&text).expect("JSON")),
            Frame::Close(reason) => {
                let reason = reason.expect("a close reason");
                return (
                    messages,
                    u16::from(reason.code),
                    reason.description.unwrap_or_default(),
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Messages of one request up to its last (`chat.done` or an error).
async fn finish(socket: &mut impl Socket) -> Value {
    loop {
        let message = next_json(socket).await;
        if message["type"] != "chat.delta" {
            return message;
        }
    }
}

/// An `error` message's id, status and code.
fn error_of(message: &Value) -> (Value, u64, String) {
    assert_eq!(message["type"], "error", "{message}");
    (
        message["id"].clone(),
        message["status"].as_u64().unwrap_or(0),
        message["error"]["code"].as_str().unwrap_or("").to_string(),
    )
}

#[actix_rt::test]
async fn requests_run_under_the_key_as_it_is_now() {
    let upstream = mock("a");
    let mut raw = config_on(Db::Sqlite).await;
    // Only requests notice changes here: the periodic check is as slow as it may be.
    raw.websocket.credential_check_interval_ms = 300_000;
    let Setup {
        gateway,
        admin,
        key_id,
        key,
    } = setup(raw, &upstream).await;
    let mut socket = connect(&gateway, &key).await;
    send(&mut socket, &request("r1", "llm/echo", "before")).await;
    assert_eq!(finish(&mut socket).await["type"], "chat.done");

    // A narrower allow-list applies to the open socket's next request; the socket stays.
    let narrowed = json!({"allowed_models": ["llm/other"]});
    let path = format!("/admin/keys/{key_id}");
    let (status, body) = gateway
        .send_as(Method::PATCH, &path, &admin, Some(&narrowed))
        .await;
    assert_eq!(status, 200, "{body}");
    send(&mut socket, &request("r2", "llm/echo", "narrowed")).await;
    let refused = next_json(&mut socket).await;
    assert_eq!(
        error_of(&refused),
        (json!("r2"), 403, "model_not_allowed".into())
    );
    send(&mut socket, &request("r3", "llm/other", "allowed")).await;
    assert_eq!(finish(&mut socket).await["type"], "chat.done");

    // Revoked through the admin API: the next request is refused and the socket closes.
    let (status, _) = gateway
        .send_as(Method::POST, &format!("{path}/revoke"), &admin, None)
        .await;
    assert_eq!(status, 200);
    let served = upstream.state.requests();
    send(&mut socket, &request("r4", "llm/other", "after")).await;
    let (messages, code, reason) = until_close(&mut socket).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(
        error_of(&messages[0]),
        (json!("r4"), 401, "revoked_api_key".into())
    );
    assert_eq!((code, reason.as_str()), (4001, "the API key was revoked"));
    assert_eq!(upstream.state.requests(), served, "never forwarded");
    gateway.stop().await;
}

#[actix_rt::test]
async fn a_key_revoked_elsewhere_closes_a_streaming_socket() {
    let upstream = gated_mock("a", 4);
    // `config_on` trusts a looked-up key for 1 s (`auth.key_cache_ttl_secs`).
    let mut raw = config_on(Db::Sqlite).await;
    raw.websocket.credential_check_interval_ms = 50;
    let Setup {
        gateway,
        key_id,
        key,
        ..
    } = setup(raw, &upstream).await;
    let mut socket = connect(&gateway, &key).await;
    send(&mut socket, &request("s", "llm/echo", "one two three")).await;
    // The upstream holds the rest of its stream after the first chunk.
    assert_eq!(next_json(&mut socket).await["type"], "chat.delta");

    // Revoked by another replica: only the database knows, so this replica learns it when its
    // cached key ages out and the periodic check reads it again; no request is needed.
    assert!(gateway.store.revoke_key(key_id).await.expect("revoke"));
    let (messages, code, reason) = until_close(&mut socket).await;
    let last = messages.last().expect("an error before the close");
    assert_eq!(error_of(last), (Value::Null, 401, "revoked_api_key".into()));
    assert_eq!((code, reason.as_str()), (4001, "the API key was revoked"));
    // The stream ended with the socket and was billed for what it delivered.
    let rows = gateway.usage_rows(key_id, 1).await;
    assert_eq!(rows[0].status, 499, "{:?}", rows[0]);
    gateway.stop().await;
}

#[actix_rt::test]
async fn sockets_close_when_their_token_or_key_expires() {
    let upstream = mock("a");
    let mut raw = config_on(Db::Sqlite).await;
    raw.auth.jwt_expiry = "1s".into();
    let Setup { gateway, .. } = setup(raw, &upstream).await;

    // A token's socket closes when the token expires (1 s here), not at the idle timeout.
    let admin = gateway.admin_token().await;
    let (_, mut socket) = open(&gateway, "/v1/ws", Some(&admin), &[])
        .await
        .expect("admin token accepted");
    let (messages, code, reason) = until_close(&mut socket).await;
    assert_eq!(
        error_of(messages.last().expect("an error")),
        (Value::Null, 401, "invalid_token".into())
    );
    assert_eq!((code, reason.as_str()), (4001, "the token expired"));

    // A key's socket closes when the key expires, and not before.
    let admin = gateway.admin_token().await;
    let expires_at = actors::store::now_millis() + 1500;
    let (_, key) = gateway
        .create_key(&admin, json!({"name": "brief", "expires_at": expires_at}))
        .await;
    let mut socket = connect(&gateway, &key).await;
    let (_, code, reason) = until_close(&mut socket).await;
    assert!(actors::store::now_millis() >= expires_at);
    assert_eq!((code, reason.as_str()), (4001, "the API key expired"));
    gateway.stop().await;
}

#[actix_rt::test]
async fn sessions_end_at_their_lifetime() {
    let upstream = mock("a");
    let mut raw = config_on(Db::Sqlite).await;
    raw.websocket.max_session_lifetime_ms = 300;
    let Setup { gateway, key, .. } = setup(raw, &upstream).await;
    let mut socket = connect(&gateway, &key).await;
    let (_, code, reason) = until_close(&mut socket).await;
    assert_eq!(
        (code, reason.as_str()),
        (4000, "session lifetime reached; reconnect")
    );
    // A new socket is a new session.
    let mut socket = connect(&gateway, &key).await;
    send(&mut socket, &request("n", "llm/echo", "again")).await;
    assert_eq!(finish(&mut socket).await["type"], "chat.done");
    gateway.stop().await;
}

#[actix_rt::test]
async fn a_deleted_users_socket_closes_at_its_next_request() {
    let upstream = mock("a");
    let mut raw = config_on(Db::Sqlite).await;
    raw.websocket.credential_check_interval_ms = 300_000;
    let Setup { gateway, admin, .. } = setup(raw, &upstream).await;
    let (name, token) = gateway.user_token(Role::Admin).await;
    let (_, mut socket) = open(&gateway, "/v1/ws", Some(&token), &[])
        .await
        .expect("admin token accepted");
    send(&mut socket, &request("u1", "llm/echo", "hello")).await;
    assert_eq!(finish(&mut socket).await["type"], "chat.done");

    let (status, body) = gateway
        .send_as(
            Method::DELETE,
            &format!("/admin/users/{name}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    send(&mut socket, &request("u2", "llm/echo", "still there?")).await;
    let (messages, code, reason) = until_close(&mut socket).await;
    assert_eq!(
        error_of(&messages[0]),
        (json!("u2"), 401, "invalid_token".into())
    );
    assert_eq!(
        (code, reason.as_str()),
        (4001, "the token's user no longer exists")
    );
    gateway.stop().await;
}

/// `POST /v1/ws/ticket` as `key`: status, `retry-after`, body.
async fn ticket(gateway: &TestGateway, key: &str) -> (u16, Option<String>, Value) {
    let mut response = gateway
        .client
        .post(gateway.url("/v1/ws/ticket"))
        .bearer_auth(key)
        .send()
        .await
        .expect("response");
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = response.json().await.unwrap_or(Value::Null);
    (response.status().as_u16(), retry_after, body)
}

/// A plain `GET /v1/ws` (no upgrade) as `key`: 429 and the error code while the caps refuse
/// the key, 400 (not a handshake) once they would let it in.
async fn upgrade_refusal(gateway: &TestGateway, key: &str) -> (u16, Option<String>, String) {
    let mut response = gateway
        .client
        .get(gateway.url("/v1/ws"))
        .bearer_auth(key)
        .send()
        .await
        .expect("response");
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = response.body().await.expect("body");
    (response.status().as_u16(), retry_after, error_code(&body))
}

#[actix_rt::test]
async fn ticket_caps_are_per_key() {
    let upstream = mock("a");
    let mut raw = config_on(Db::Sqlite).await;
    raw.websocket.max_tickets_per_key = 2;
    raw.websocket.tickets_per_minute = 3;
    let Setup {
        gateway,
        admin,
        key: a,
        ..
    } = setup(raw, &upstream).await;
    let (_, b) = gateway.create_key(&admin, json!({"name": "other"})).await;
    let url = |answer: (u16, Option<String>, Value)| {
        assert_eq!(answer.0, 200, "{}", answer.2);
        answer.2["url"].as_str().expect("url").to_string()
    };

    // Key a holds its two unused tickets: a third is refused, key b is not affected.
    let first = url(ticket(&gateway, &a).await);
    let second = url(ticket(&gateway, &a).await);
    let (status, retry_after, body) = ticket(&gateway, &a).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("too_many_tickets"))
    );
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(
        retry_after.as_deref(),
        Some("30"),
        "when the oldest expires"
    );
    url(ticket(&gateway, &b).await);

    // Redeeming one gives its place back (the refusal cost nothing of the rate)...
    let _first_session = open(&gateway, &first, None, &[])
        .await
        .expect("first ticket");
    url(ticket(&gateway, &a).await);
    let _second_session = open(&gateway, &second, None, &[])
        .await
        .expect("second ticket");
    // ...until the rate (3 a minute) refuses the fourth.
    let (status, retry_after, body) = ticket(&gateway, &a).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("rate_limit_exceeded"))
    );
    assert_eq!(retry_after.as_deref(), Some("20"));
    url(ticket(&gateway, &b).await);
    gateway.stop().await;
}

#[actix_rt::test]
async fn session_caps_are_per_key_and_in_total() {
    let upstream = mock("a");
    let mut raw = config_on(Db::Sqlite).await;
    raw.websocket.max_sessions_per_key = 2;
    raw.websocket.max_sessions = 3;
    let Setup {
        gateway,
        admin,
        key: a,
        ..
    } = setup(raw, &upstream).await;
    let (_, b) = gateway.create_key(&admin, json!({"name": "other"})).await;

    // Key a opens its two sessions; a third upgrade, and a ticket for one, get 429.
    let mut first = connect(&gateway, &a).await;
    let _second = connect(&gateway, &a).await;
    assert_eq!(
        open(&gateway, "/v1/ws", Some(&a), &[]).await.err(),
        Some(429)
    );
    let (status, retry_after, code) = upgrade_refusal(&gateway, &a).await;
    assert_eq!(
        (status, code.as_str()),
        (429, "too_many_websocket_sessions")
    );
    assert!(retry_after.is_some());
    let (status, _, body) = ticket(&gateway, &a).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("too_many_websocket_sessions"))
    );

    // Key b is not affected by a's cap, only by the total (3).
    let mut other = connect(&gateway, &b).await;
    send(&mut other, &request("b", "llm/echo", "room for me")).await;
    assert_eq!(finish(&mut other).await["type"], "chat.done");
    let (status, _, code) = upgrade_refusal(&gateway, &b).await;
    assert_eq!((status, code.as_str()), (429, "websocket_sessions_full"));

    // A closed session gives its place back.
    futures_util::SinkExt::send(&mut first, awc::ws::Message::Close(None))
        .await
        .expect("close");
    let gateway_ref = &gateway;
    let a_ref = &a;
    wait_for("key a's closed session to free its place", || async move {
        upgrade_refusal(gateway_ref, a_ref).await.0 == 400
    })
    .await;
    let _again = connect(&gateway, &a).await;
    assert_eq!(
        open(&gateway, "/v1/ws", Some(&b), &[]).await.err(),
        Some(429),
        "the total is reached again"
    );
    gateway.stop().await;
}
