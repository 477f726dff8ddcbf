//! OpenAI JSON ⇄ `aigateway.model.v1` messages, as pure functions. Requests are read field by
//! field so a wrong type names its parameter; ranges are the model server's to check (it
//! answers INVALID_ARGUMENT with its own message). Fields the contract cannot carry are ignored,
//! as python-models' HTTP API ignores unknown fields, unless dropping them would change the
//! answer (`n` > 1, token-id inputs), which is a 400.

use std::collections::HashMap;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::GatewayError;
use crate::upstream::grpc::proto;

mod embed;
#[cfg(test)]
use embed::{base64_encode, EmbedOptions};
pub use embed::{embed_request, embed_response};

type Object = Map<String, Value>;

/// What the client asked of the answer's shape, beside the proto request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatOptions {
    pub stream: bool,
    pub include_usage: bool,
}

pub fn chat_request(
    body: &[u8],
    request_id: &str,
) -> Result<(proto::ChatRequest, ChatOptions), GatewayError> {
    let mut body = object(body)?;
    let model: String = take(&mut body, "model")?.ok_or(GatewayError::MissingParameter("model"))?;
    let messages: Vec<Value> =
        take(&mut body, "messages")?.ok_or(GatewayError::MissingParameter("messages"))?;
    let messages = messages
        .into_iter()
        .map(chat_message)
        .collect::<Result<Vec<_>, _>>()?;
    let sampling = proto::SamplingParams {
        temperature: take(&mut body, "temperature")?,
        top_p: take(&mut body, "top_p")?,
        top_k: take(&mut body, "top_k")?,
        seed: take(&mut body, "seed")?,
        presence_penalty: take(&mut body, "presence_penalty")?,
        frequency_penalty: take(&mut body, "frequency_penalty")?,
        repetition_penalty: take(&mut body, "repetition_penalty")?,
        min_p: take(&mut body, "min_p")?,
    };
    // python-models reads max_tokens first, then max_completion_tokens.
    let max_tokens: Option<i32> = take(&mut body, "max_tokens")?;
    let max_completion_tokens: Option<i32> = take(&mut body, "max_completion_tokens")?;
    if take::<u64>(&mut body, "n")?.is_some_and(|n| n != 1) {
        return Err(invalid("n", "only one choice (n = 1) is supported"));
    }
    let stop = match take::<StringOrList>(&mut body, "stop")? {
        None => Vec::new(),
        Some(StringOrList::One(stop)) => vec![stop],
        Some(StringOrList::Many(stops)) => stops,
    };
    let logit_bias = take::<HashMap<String, f32>>(&mut body, "logit_bias")?
        .unwrap_or_default()
        .into_iter()
        .map(|(token, bias)| match token.parse::<i32>() {
            Ok(token) => Ok((token, bias)),
            Err(_) => Err(invalid(
                "logit_bias",
                &format!("keys must be token ids, got {token:?}"),
            )),
        })
        .collect::<Result<HashMap<_, _>, _>>()?;
    let json_schema = json_schema(
        take::<Value>(&mut body, "json_schema")?,
        take::<Object>(&mut body, "response_format")?,
    )?;
    let stream_options: Option<StreamOptions> = take(&mut body, "stream_options")?;
    let options = ChatOptions {
        stream: take(&mut body, "stream")?.unwrap_or(false),
        include_usage: stream_options.and_then(|o| o.include_usage) == Some(true),
    };
    let request = proto::ChatRequest {
        model,
        messages,
        sampling: Some(sampling),
        max_tokens: max_tokens.or(max_completion_tokens),
        stop,
        request_id: request_id.to_string(),
        logit_bias,
        ignore_eos: take(&mut body, "ignore_eos")?.unwrap_or(false),
        grammar: take(&mut body, "grammar")?,
        json_schema,
        user: take(&mut body, "user")?.unwrap_or_default(),
        metadata: take(&mut body, "metadata")?.unwrap_or_default(),
        priority: 0,
    };
    Ok((request, options))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// `{"role", "content", "name"}` with content as text, null or a list of text parts.
fn chat_message(message: Value) -> Result<proto::ChatMessage, GatewayError> {
    #[derive(Deserialize)]
    struct Message {
        role: String,
        #[serde(default)]
        content: Option<Content>,
        #[serde(default)]
        name: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Content {
        Text(String),
        Parts(Vec<Part>),
    }
    #[derive(Deserialize)]
    struct Part {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        text: Option<String>,
    }
    let message: Message =
        serde_json::from_value(message).map_err(|error| invalid("messages", &error.to_string()))?;
    let content = match message.content {
        None => String::new(),
        Some(Content::Text(text)) => text,
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part.kind.as_str(), part.text) {
                    ("text", Some(part)) => text.push_str(&part),
                    (kind, _) => {
                        return Err(invalid(
                            "messages",
                            &format!("content parts of type {kind:?} cannot be sent to this model; only text"),
                        ))
                    }
                }
            }
            text
        }
    };
    Ok(proto::ChatMessage {
        role: message.role,
        content,
        name: message.name,
    })
}

/// The contract's one structured-output field, from `json_schema` or `response_format`.
fn json_schema(
    schema: Option<Value>,
    response_format: Option<Object>,
) -> Result<Option<String>, GatewayError> {
    let from_format = match response_format {
        None => None,
        Some(format) => match format.get("type").and_then(Value::as_str) {
            Some("text") => None,
            Some("json_object") => Some(json!({"type": "object"})),
            Some("json_schema") => Some(
                format
                    .get("json_schema")
                    .and_then(|spec| spec.get("schema"))
                    .cloned()
                    .ok_or_else(|| invalid("response_format", "json_schema.schema is missing"))?,
            ),
            _ => {
                return Err(invalid(
                    "response_format",
                    "type must be text, json_object or json_schema",
                ))
            }
        },
    };
    match (schema, from_format) {
        (Some(_), Some(_)) => Err(invalid(
            "json_schema",
            "give either json_schema or a JSON response_format, not both",
        )),
        (Some(schema), None) | (None, Some(schema)) => Ok(Some(schema.to_string())),
        (None, None) => Ok(None),
    }
}

fn finish_reason(reason: proto::FinishReason) -> &'static str {
    match reason {
        proto::FinishReason::Stop | proto::FinishReason::Unspecified => "stop",
        proto::FinishReason::Length => "length",
        proto::FinishReason::ContentFilter => "content_filter",
        proto::FinishReason::ToolCalls => "tool_calls",
    }
}

fn usage_json(usage: Option<&proto::Usage>) -> Value {
    let usage = usage.cloned().unwrap_or_default();
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    })
}

/// A non-streaming answer assembled from the chunks of one `Chat` stream.
#[derive(Debug, Default)]
pub struct ChatCompletion {
    first: Option<proto::ChatChunk>,
    content: String,
    last: Option<proto::ChatChunk>,
}

impl ChatCompletion {
    pub fn push(&mut self, mut chunk: proto::ChatChunk) {
        self.content.push_str(&chunk.delta);
        if chunk.finish_reason.is_some() {
            chunk.delta.clear();
            self.last = Some(chunk);
        } else if self.first.is_none() {
            chunk.delta.clear();
            self.first = Some(chunk);
        }
    }

    /// Bytes of text so far, for the response size limit.
    pub fn len(&self) -> usize {
        self.content.len()
    }

    /// The `chat.completion` object, or `None` when the stream never said it was finished.
    pub fn finish(self) -> Option<Bytes> {
        let last = self.last?;
        let reason = finish_reason(last.finish_reason());
        let body = json!({
            "id": last.id,
            "object": "chat.completion",
            "created": last.created,
            "model": last.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": self.content},
                "logprobs": null,
                "finish_reason": reason,
            }],
            "usage": usage_json(last.usage.as_ref()),
        });
        Some(Bytes::from(body.to_string()))
    }
}

/// Turns `ChatChunk`s into `chat.completion.chunk` events: the assistant role with the first
/// text, one event per chunk, then the finish event, the usage event when the client asked for
/// it (`choices: []`, usage from the last chunk) and `data: [DONE]`.
#[derive(Debug)]
pub struct ChunkEncoder {
    include_usage: bool,
    sent_role: bool,
    finished: bool,
}

impl ChunkEncoder {
    pub fn new(include_usage: bool) -> Self {
        ChunkEncoder {
            include_usage,
            sent_role: false,
            finished: false,
        }
    }

    /// True once the last chunk has been encoded, with `[DONE]`.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    pub fn encode(&mut self, chunk: &proto::ChatChunk) -> Bytes {
        let mut out = String::new();
        let event = |out: &mut String, choices: Value, usage: Option<Value>| {
            let mut event = json!({
                "id": chunk.id,
                "object": "chat.completion.chunk",
                "created": chunk.created,
                "model": chunk.model,
                "choices": choices,
            });
            if self.include_usage {
                event["usage"] = usage.unwrap_or(Value::Null);
            }
            out.push_str("data: ");
            out.push_str(&event.to_string());
            out.push_str("\n\n");
        };
        let choice = |delta: Value, reason: Option<&str>| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": reason}]);
        if !self.sent_role {
            self.sent_role = true;
            event(
                &mut out,
                choice(json!({"role": "assistant", "content": ""}), None),
                None,
            );
        }
        if !chunk.delta.is_empty() {
            event(
                &mut out,
                choice(json!({"content": chunk.delta}), None),
                None,
            );
        }
        if chunk.finish_reason.is_some() {
            let reason = finish_reason(chunk.finish_reason());
            event(&mut out, choice(json!({}), Some(reason)), None);
            if self.include_usage {
                event(&mut out, json!([]), Some(usage_json(chunk.usage.as_ref())));
            }
            out.push_str("data: [DONE]\n\n");
            self.finished = true;
        }
        Bytes::from(out)
    }
}

fn object(body: &[u8]) -> Result<Object, GatewayError> {
    serde_json::from_slice(body).map_err(|error| GatewayError::InvalidJson(error.to_string()))
}

/// Takes `name` out of the body as a `T`; `null` counts as absent.
fn take<T: DeserializeOwned>(
    body: &mut Object,
    name: &'static str,
) -> Result<Option<T>, GatewayError> {
    match body.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value)
            .map(Some)
            .map_err(|error| invalid(name, &error.to_string())),
    }
}

fn invalid(param: &'static str, message: &str) -> GatewayError {
    GatewayError::InvalidParameter {
        param,
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests;
