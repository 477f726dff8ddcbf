//! WebSocket client helpers for the `/v1/ws` tests: open a socket (or see the refusal), send
//! messages and wait for the next one, within the harness's deadline.

use awc::error::WsClientError;
use awc::ws::{Frame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{json, Value};

use super::{services_for, start_gateway, MockUpstream, TestGateway, DEADLINE};

pub trait Socket:
    Stream<Item = Result<Frame, awc::error::WsProtocolError>>
    + Sink<Message, Error = awc::error::WsProtocolError>
    + Unpin
{
}
impl<T> Socket for T where
    T: Stream<Item = Result<Frame, awc::error::WsProtocolError>>
        + Sink<Message, Error = awc::error::WsProtocolError>
        + Unpin
{
}

/// Opens `path` with optional headers and subprotocols; the handshake response's status and
/// chosen protocol, or the refusal status.
pub async fn open(
    gateway: &TestGateway,
    path: &str,
    bearer: Option<&str>,
    protocols: &[&str],
) -> Result<(Option<String>, impl Socket), u16> {
    open_with(&gateway.client, gateway, path, bearer, protocols).await
}

pub async fn open_with(
    client: &awc::Client,
    gateway: &TestGateway,
    path: &str,
    bearer: Option<&str>,
    protocols: &[&str],
) -> Result<(Option<String>, impl Socket), u16> {
    let mut request = client
        .ws(format!("ws://{}{}", gateway.addr, path))
        .max_frame_size(16 * 1024 * 1024);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    if !protocols.is_empty() {
        request = request.protocols(protocols.iter().copied());
    }
    match request.connect().await {
        Ok((response, socket)) => Ok((
            response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok())
                .map(String::from),
            socket,
        )),
        Err(WsClientError::InvalidResponseStatus(status)) => Err(status.as_u16()),
        Err(other) => panic!("handshake failed: {other}"),
    }
}

pub async fn connect(gateway: &TestGateway, key: &str) -> impl Socket {
    open(gateway, "/v1/ws", Some(key), &[])
        .await
        .expect("upgrade accepted")
        .1
}

pub async fn send(socket: &mut impl Socket, message: &Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .expect("send");
}

/// The next frame that is not a ping, within the deadline.
pub async fn next_frame(socket: &mut impl Socket) -> Frame {
    loop {
        let frame = tokio::time::timeout(DEADLINE, socket.next())
            .await
            .expect("a frame within the deadline")
            .expect("socket open")
            .expect("valid frame");
        if !matches!(frame, Frame::Ping(_) | Frame::Pong(_)) {
            return frame;
        }
    }
}

pub async fn next_json(socket: &mut impl Socket) -> Value {
    match next_frame(socket).await {
        Frame::Text(text) => serde_json::from_slice(&text).expect("JSON message"),
        other => panic!("expected a text message, got {other:?}"),
    }
}

pub async fn next_close(socket: &mut impl Socket) -> Option<awc::ws::CloseReason> {
    loop {
        match next_frame(socket).await {
            Frame::Close(reason) => return reason,
            Frame::Text(_) => continue,
            other => panic!("expected close, got {other:?}"),
        }
    }
}

pub fn request(id: &str, model: &str, content: &str) -> Value {
    json!({"type": "chat.request", "id": id, "body": {
        "model": model, "messages": [{"role": "user", "content": content}]
    }})
}

pub struct Setup {
    pub gateway: TestGateway,
    pub admin: String,
    pub key_id: i64,
    pub key: String,
}

pub async fn setup(raw: gateway::config::RawConfig, upstream: &MockUpstream) -> Setup {
    let gateway = start_gateway(raw, &services_for("llm", &[upstream], &[])).await;
    gateway.wait_ready().await;
    let admin = gateway.admin_token().await;
    let (key_id, key) = gateway.create_key(&admin, json!({"name": "browser"})).await;
    Setup {
        gateway,
        admin,
        key_id,
        key,
    }
}
