//! The JSON message protocol of `GET /v1/ws`: what clients send, what the gateway answers, and
//! the SSE-to-message conversion. Pure functions, unit-tested without a socket.
//!
//! Client → gateway:
//! - `{"type":"chat.request","id":<string|number>,"body":<OpenAI chat request>}`
//! - `{"type":"cancel","id":…}`
//!
//! Gateway → client:
//! - `{"type":"chat.delta","id":…,"chunk":<OpenAI chat.completion.chunk>}`, one per chunk
//! - `{"type":"chat.done","id":…,"usage":{…}|null}` once a stream completes
//! - `{"type":"chat.cancelled","id":…}` after a cancel
//! - `{"type":"error","id":…|null,"status":<HTTP status>,"error":{OpenAI error}}`

use bytes::{Bytes, BytesMut};
use memchr::memmem;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::GatewayError;

/// What the writer sends on the socket.
pub enum Outbound {
    Text(String),
    Ping,
    Pong(Bytes),
}

/// A request id as the client chose it (a string or a number), kept as JSON text so it is
/// echoed back exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageId(String);

impl MessageId {
    pub fn json(&self) -> &str {
        &self.0
    }
}

#[derive(Debug)]
pub enum ClientMessage {
    Chat { id: MessageId, body: Bytes },
    Cancel { id: MessageId },
}

/// A message that could not be understood, with the id when it had a usable one.
#[derive(Debug)]
pub struct Rejected {
    pub id: Option<MessageId>,
    pub error: GatewayError,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    body: Option<&'a RawValue>,
}

const MAX_ID_LEN: usize = 256;

pub fn parse(text: &str) -> Result<ClientMessage, Rejected> {
    let envelope: Envelope<'_> = serde_json::from_str(text).map_err(|error| Rejected {
        id: None,
        error: GatewayError::InvalidJson(error.to_string()),
    })?;
    let id = envelope.id.and_then(|raw| {
        let value: Value = serde_json::from_str(raw.get()).ok()?;
        match value {
            Value::String(_) | Value::Number(_) => Some(MessageId(value.to_string())),
            _ => None,
        }
    });
    let reject = |id: Option<MessageId>, error| Err(Rejected { id, error });
    let Some(id) = id.filter(|id| id.0.len() <= MAX_ID_LEN) else {
        return reject(
            None,
            GatewayError::InvalidParameter {
                param: "id",
                message: format!("every message needs an \"id\": a string or number of at most {MAX_ID_LEN} characters"),
            },
        );
    };
    match envelope.kind.as_deref() {
        Some("chat.request") => {
            let Some(body) = envelope.body else {
                return reject(Some(id), GatewayError::MissingParameter("body"));
            };
            match stream_body(body) {
                Ok(body) => Ok(ClientMessage::Chat { id, body }),
                Err(error) => reject(Some(id), error),
            }
        }
        Some("cancel") => Ok(ClientMessage::Cancel { id }),
        Some(other) => reject(
            Some(id),
            GatewayError::InvalidParameter {
                param: "type",
                message: format!(
                    "unknown message type {other:?}; use \"chat.request\" or \"cancel\""
                ),
            },
        ),
        None => reject(Some(id), GatewayError::MissingParameter("type")),
    }
}

/// The chat body as forwarded: always a stream, always with usage (reported in `chat.done`).
fn stream_body(body: &RawValue) -> Result<Bytes, GatewayError> {
    let mut object: Map<String, Value> =
        serde_json::from_str(body.get()).map_err(|_| GatewayError::InvalidParameter {
            param: "body",
            message: "must be an OpenAI chat completion request (a JSON object)".into(),
        })?;
    object.insert("stream".into(), Value::Bool(true));
    let options = object
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(options) = options {
        options.insert("include_usage".into(), Value::Bool(true));
    }
    serde_json::to_vec(&object)
        .map(Bytes::from)
        .map_err(|error| GatewayError::Internal(error.to_string()))
}

pub fn delta(id: &MessageId, chunk: &str) -> String {
    format!(r#"{{"type":"chat.delta","id":{},"chunk":{chunk}}}"#, id.0)
}

pub fn done(id: &MessageId, usage: Option<&str>) -> String {
    format!(
        r#"{{"type":"chat.done","id":{},"usage":{}}}"#,
        id.0,
        usage.unwrap_or("null")
    )
}

pub fn cancelled(id: &MessageId) -> String {
    format!(r#"{{"type":"chat.cancelled","id":{}}}"#, id.0)
}

pub fn error(id: Option<&MessageId>, error: &GatewayError) -> String {
    let body = serde_json::to_string(&error.body().error).unwrap_or_else(|_| "null".into());
    error_with(id, error.status().as_u16(), &body)
}

/// An error whose OpenAI `error` object is already JSON text (an upstream's own error).
pub fn error_with(id: Option<&MessageId>, status: u16, error_json: &str) -> String {
    format!(
        r#"{{"type":"error","id":{},"status":{status},"error":{error_json}}}"#,
        id.map_or("null", |id| id.0.as_str())
    )
}

/// One server-sent event: its `event:` name and its `data:` lines joined.
#[derive(Debug, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Cuts an SSE byte stream into events, whatever the chunking.
#[derive(Debug, Default)]
pub struct SseEvents {
    pending: BytesMut,
}

impl SseEvents {
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        self.pending.extend_from_slice(chunk);
        loop {
            let lf = memmem::find(&self.pending, b"\n\n").map(|at| (at, 2));
            let crlf = memmem::find(&self.pending, b"\r\n\r\n").map(|at| (at, 4));
            let Some((at, length)) = [lf, crlf].into_iter().flatten().min() else {
                return;
            };
            let event = self.pending.split_to(at + length);
            if let Some(event) = parse_event(&event[..at]) {
                out.push(event);
            }
        }
    }

    /// The last event when the stream ends without a blank line.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let rest = self.pending.split();
        parse_event(&rest)
    }
}

fn parse_event(block: &[u8]) -> Option<SseEvent> {
    let text = String::from_utf8_lossy(block);
    let mut event = None;
    let mut data: Vec<&str> = Vec::new();
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("data:") {
            data.push(value.strip_prefix(' ').unwrap_or(value));
        } else if let Some(value) = line.strip_prefix("event:") {
            event = Some(value.trim().to_string());
        }
    }
    (!data.is_empty()).then(|| SseEvent {
        event,
        data: data.join("\n"),
    })
}

/// What a chunk's data means for the socket.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkKind<'a> {
    /// `[DONE]`.
    Done,
    /// The usage-only chunk (`"choices": []`): its `usage` object, for `chat.done`.
    Usage(&'a str),
    /// A chunk to forward as `chat.delta`.
    Delta,
    /// Not JSON: dropped rather than breaking the client's parser.
    Invalid,
}

pub fn classify(data: &str) -> ChunkKind<'_> {
    if data.trim() == "[DONE]" {
        return ChunkKind::Done;
    }
    #[derive(Deserialize)]
    struct Chunk<'a> {
        #[serde(default, borrow)]
        choices: Option<&'a RawValue>,
        #[serde(default, borrow)]
        usage: Option<&'a RawValue>,
    }
    match serde_json::from_str::<Chunk<'_>>(data) {
        Ok(Chunk {
            choices,
            usage: Some(usage),
        }) if choices.is_none_or(|c| c.get().trim() == "[]") && usage.get() != "null" => {
            ChunkKind::Usage(usage.get())
        }
        Ok(_) => ChunkKind::Delta,
        Err(_) => ChunkKind::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> (Option<String>, String) {
        match parse(text) {
            Err(rejected) => (
                rejected.id.map(|id| id.0),
                rejected.error.code().to_string(),
            ),
            Ok(message) => panic!("accepted {message:?}"),
        }
    }

    #[test]
    fn requests_become_streams_with_usage() {
        let message = parse(r#"{"type":"chat.request","id":"a1","body":{"model":"m","messages":[],"stream":false}}"#)
            .expect("valid");
        let ClientMessage::Chat { id, body } = message else {
            panic!("not a chat request");
        };
        assert_eq!(id.json(), "\"a1\"");
        let body: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["model"], "m");
        assert!(matches!(
            parse(r#"{"type":"cancel","id":7}"#),
            Ok(ClientMessage::Cancel { id }) if id.json() == "7"
        ));
    }

    #[test]
    fn bad_messages_are_rejected_with_their_id() {
        assert_eq!(code("{nope"), (None, "invalid_json".into()));
        assert_eq!(code(r#"{"type":"chat.request"}"#).1, "invalid_parameter");
        assert_eq!(code(r#"{"type":"chat.request","id":{"x":1}}"#).0, None);
        assert_eq!(
            code(r#"{"type":"dance","id":"d"}"#),
            (Some("\"d\"".into()), "invalid_parameter".into())
        );
        assert_eq!(
            code(r#"{"id":"d"}"#),
            (Some("\"d\"".into()), "missing_required_parameter".into())
        );
        assert_eq!(
            code(r#"{"type":"chat.request","id":"b"}"#).1,
            "missing_required_parameter"
        );
        assert_eq!(
            code(r#"{"type":"chat.request","id":"b","body":[1]}"#).1,
            "invalid_parameter"
        );
        assert_eq!(
            code(&format!(
                r#"{{"type":"cancel","id":"{}"}}"#,
                "x".repeat(300)
            ))
            .0,
            None
        );
    }

    #[test]
    fn events_are_cut_whatever_the_chunking() {
        let stream = "data: {\"a\":1}\n\nevent: error\ndata: {\"error\":{}}\n\ndata: [DONE]\r\n\r\ndata: tail";
        for size in [1, 3, 7, stream.len()] {
            let mut events = SseEvents::default();
            let mut out = Vec::new();
            for piece in stream.as_bytes().chunks(size) {
                events.push(piece, &mut out);
            }
            out.extend(events.finish());
            let seen: Vec<(Option<&str>, &str)> = out
                .iter()
                .map(|e| (e.event.as_deref(), e.data.as_str()))
                .collect();
            assert_eq!(
                seen,
                [
                    (None, "{\"a\":1}"),
                    (Some("error"), "{\"error\":{}}"),
                    (None, "[DONE]"),
                    (None, "tail")
                ],
                "chunk size {size}"
            );
        }
    }

    #[test]
    fn chunks_are_classified() {
        assert_eq!(classify("[DONE]"), ChunkKind::Done);
        assert_eq!(
            classify(r#"{"choices":[],"usage":{"prompt_tokens":1}}"#),
            ChunkKind::Usage(r#"{"prompt_tokens":1}"#)
        );
        assert_eq!(
            classify(r#"{"choices":[{"delta":{"content":"x"}}],"usage":null}"#),
            ChunkKind::Delta
        );
        assert_eq!(classify("not json"), ChunkKind::Invalid);
        let id = MessageId("\"q\"".into());
        let message: Value = serde_json::from_str(&delta(&id, r#"{"choices":[]}"#)).expect("json");
        assert_eq!(message["id"], "q");
        let message: Value =
            serde_json::from_str(&error(Some(&id), &GatewayError::ModelNotFound("m".into())))
                .expect("json");
        assert_eq!(
            (
                message["status"].as_u64(),
                message["error"]["code"].as_str()
            ),
            (Some(404), Some("model_not_found"))
        );
    }
}
