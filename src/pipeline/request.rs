//! Reading just enough of an OpenAI request to route it: `model`, `stream` and the presence of
//! the required input. The rest of the body is forwarded byte for byte.

use std::borrow::Cow;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::GatewayError;

/// The OpenAI endpoints the pipeline serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKind {
    ChatCompletions,
    Completions,
    Embeddings,
}

impl ApiKind {
    /// The upstream path, the same as the gateway's.
    pub fn path(self) -> &'static str {
        match self {
            ApiKind::ChatCompletions => "/v1/chat/completions",
            ApiKind::Completions => "/v1/completions",
            ApiKind::Embeddings => "/v1/embeddings",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ApiKind::ChatCompletions => "chat_completions",
            ApiKind::Completions => "completions",
            ApiKind::Embeddings => "embeddings",
        }
    }

    fn required_field(self) -> &'static str {
        match self {
            ApiKind::ChatCompletions => "messages",
            ApiKind::Completions => "prompt",
            ApiKind::Embeddings => "input",
        }
    }
}

/// The fields the gateway reads; everything else is skipped without being materialised.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(borrow, default)]
    messages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stream_options: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_completion_tokens: Option<&'a RawValue>,
}

/// A validated request.
#[derive(Debug, Clone)]
pub struct ParsedRequest {
    pub kind: ApiKind,
    pub model: String,
    pub stream: bool,
    /// Where the `model` value (quotes included) sits in the body.
    model_span: Range<usize>,
    /// The client set `stream_options` itself.
    has_stream_options: bool,
    /// The larger of `max_tokens` and `max_completion_tokens`, when the client gave either.
    pub completion_limit: Option<i64>,
    pub body: Bytes,
}

impl ParsedRequest {
    pub fn parse(kind: ApiKind, body: Bytes) -> Result<ParsedRequest, GatewayError> {
        // serde accepts a struct written as an array; the wire format does not.
        if body.trim_ascii_start().first().is_some_and(|&b| b != b'{') {
            return Err(GatewayError::InvalidJson(
                "the body must be a JSON object".into(),
            ));
        }
        let envelope: Envelope<'_> = serde_json::from_slice(&body)
            .map_err(|error| GatewayError::InvalidJson(error.to_string()))?;
        let raw_model = envelope
            .model
            .ok_or(GatewayError::MissingParameter("model"))?;
        let model: Cow<'_, str> =
            serde_json::from_str(raw_model.get()).map_err(|_| GatewayError::InvalidParameter {
                param: "model",
                message: "must be a string".into(),
            })?;
        check_model(&model)?;
        let required = match kind {
            ApiKind::ChatCompletions => envelope.messages,
            ApiKind::Completions => envelope.prompt,
            ApiKind::Embeddings => envelope.input,
        };
        let required_field = kind.required_field();
        let required = required.ok_or(GatewayError::MissingParameter(required_field))?;
        if kind == ApiKind::ChatCompletions {
            check_non_empty_array(required, "messages")?;
        }
        if kind == ApiKind::Embeddings && envelope.stream == Some(true) {
            return Err(GatewayError::InvalidParameter {
                param: "stream",
                message: "embeddings cannot be streamed".into(),
            });
        }
        let completion_limit = completion_limit(&envelope)?;
        let start = raw_model.get().as_ptr() as usize - body.as_ptr() as usize;
        let model_span = start..start + raw_model.get().len();
        Ok(ParsedRequest {
            kind,
            model: model.into_owned(),
            stream: envelope.stream.unwrap_or(false),
            model_span,
            has_stream_options: envelope.stream_options.is_some(),
            completion_limit,
            body: body.clone(),
        })
    }

    /// The body to send upstream: unchanged when the upstream knows the model by the same name,
    /// otherwise with only the `model` value replaced.
    pub fn upstream_body(&self, upstream_model: &str) -> Bytes {
        if upstream_model == self.model {
            return self.body.clone();
        }
        let quoted = serde_json::Value::from(upstream_model).to_string();
        let mut out = BytesMut::with_capacity(self.body.len() + quoted.len());
        out.put_slice(&self.body[..self.model_span.start]);
        out.put_slice(quoted.as_bytes());
        out.put_slice(&self.body[self.model_span.end..]);
        out.freeze()
    }
}

impl ParsedRequest {
    /// True when the gateway adds `stream_options.include_usage` for billing, so the usage
    /// event must be hidden from the client, who did not ask for it.
    pub fn usage_injected(&self) -> bool {
        self.stream && !self.has_stream_options && self.kind != ApiKind::Embeddings
    }
}

/// The body as sent upstream: a streaming request asks for its usage chunk
/// (`stream_options.include_usage`, which billing needs) unless the client set
/// `stream_options` itself, and a request whose budget reserved a completion `ceiling` it did
/// not state is told it as `max_tokens`, so the upstream cannot generate past the reservation.
/// Members are spliced in after the opening brace, in one copy, so every other byte stays as
/// sent; with nothing to add the body is returned as it is.
pub fn with_injected(request: &ParsedRequest, body: Bytes, ceiling: Option<i64>) -> Bytes {
    const USAGE: &[u8] = br#""stream_options":{"include_usage":true},"#;
    let usage = request.usage_injected();
    if !usage && ceiling.is_none() {
        return body;
    }
    let Some(brace) = body.iter().position(|&b| b == b'{') else {
        return body;
    };
    let ceiling = ceiling.map(|tokens| format!(r#""max_tokens":{tokens},"#));
    let extra = ceiling.as_ref().map_or(0, String::len) + if usage { USAGE.len() } else { 0 };
    let mut out = BytesMut::with_capacity(body.len() + extra);
    out.put_slice(&body[..=brace]);
    if usage {
        out.put_slice(USAGE);
    }
    if let Some(ceiling) = &ceiling {
        out.put_slice(ceiling.as_bytes());
    }
    out.put_slice(&body[brace + 1..]);
    out.freeze()
}

/// The larger completion limit the client gave. Each must be a non-negative integer (or
/// `null`): a budget reserves it, so a negative or fractional one is refused here, before any
/// arithmetic meets it. Only the few bytes of the numbers are read.
fn completion_limit(envelope: &Envelope<'_>) -> Result<Option<i64>, GatewayError> {
    let mut limit = None;
    for (param, raw) in [
        ("max_tokens", envelope.max_tokens),
        ("max_completion_tokens", envelope.max_completion_tokens),
    ] {
        let Some(raw) = raw else { continue };
        match serde_json::from_str::<Option<i64>>(raw.get()) {
            Ok(None) => {}
            Ok(Some(tokens)) if tokens >= 0 => limit = limit.max(Some(tokens)),
            _ => {
                return Err(GatewayError::InvalidParameter {
                    param,
                    message: "must be a non-negative integer".into(),
                })
            }
        }
    }
    Ok(limit)
}

/// A model name is routed, logged, used as a metric label and stored with every usage row:
/// bounded, and free of control characters (a NUL would make PostgreSQL refuse the row).
fn check_model(model: &str) -> Result<(), GatewayError> {
    use actors::store::text::{is_clean, MAX_MODEL};
    let message = if model.is_empty() {
        "must not be empty".to_string()
    } else if model.len() > MAX_MODEL {
        format!("must be at most {MAX_MODEL} bytes")
    } else if !is_clean(model, MAX_MODEL) {
        "must not contain control characters".to_string()
    } else {
        return Ok(());
    };
    Err(GatewayError::InvalidParameter {
        param: "model",
        message,
    })
}

fn check_non_empty_array(raw: &RawValue, param: &'static str) -> Result<(), GatewayError> {
    let text = raw.get().trim_start();
    let invalid = |message: &str| GatewayError::InvalidParameter {
        param,
        message: message.into(),
    };
    let inner = text
        .strip_prefix('[')
        .ok_or_else(|| invalid("must be an array"))?;
    if inner.trim_start().starts_with(']') {
        return Err(invalid("must not be empty"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(kind: ApiKind, body: &str) -> Result<ParsedRequest, GatewayError> {
        ParsedRequest::parse(kind, Bytes::copy_from_slice(body.as_bytes()))
    }

    fn check_error(kind: ApiKind, body: &str, code: &str, fragment: &str) {
        let error = parse(kind, body).expect_err(body);
        assert_eq!(error.code(), code, "{body}: {error}");
        assert!(
            error.to_string().contains(fragment),
            "{error} lacks {fragment}"
        );
    }

    #[test]
    fn reads_model_and_stream() {
        let request = parse(
            ApiKind::ChatCompletions,
            r#"{"model":"svc/m","messages":[{"role":"user","content":"hi"}],"stream":true,"extra":{"a":[1,2]}}"#,
        )
        .expect("valid");
        assert_eq!(request.model, "svc/m");
        assert!(request.stream);
    }

    #[test]
    fn rewrites_only_the_model_value() {
        let body = r#"{ "temperature": 0, "model" : "smol\/x", "messages": [{"role":"user","content":"model"}] }"#;
        let request = parse(ApiKind::ChatCompletions, body).expect("valid");
        assert_eq!(request.model, "smol/x");
        let rewritten = request.upstream_body("Smol \"2\"");
        assert_eq!(
            std::str::from_utf8(&rewritten).expect("utf8"),
            r#"{ "temperature": 0, "model" : "Smol \"2\"", "messages": [{"role":"user","content":"model"}] }"#
        );
        assert_eq!(
            request.upstream_body("smol/x"),
            Bytes::copy_from_slice(body.as_bytes())
        );
    }

    #[test]
    fn streaming_requests_ask_for_usage_once() {
        let request = parse(
            ApiKind::ChatCompletions,
            r#" {"model":"a/b","stream":true,"messages":[{}]}"#,
        )
        .expect("valid");
        let body = with_injected(&request, request.body.clone(), None);
        let value: serde_json::Value = serde_json::from_slice(&body).expect("still JSON");
        assert_eq!(value["stream_options"]["include_usage"], true);
        assert_eq!(value["model"], "a/b");
        let own = parse(ApiKind::ChatCompletions, r#"{"model":"a/b","stream":true,"stream_options":{"include_usage":false},"messages":[{}]}"#).expect("valid");
        assert_eq!(with_injected(&own, own.body.clone(), None), own.body);
        let plain = parse(
            ApiKind::ChatCompletions,
            r#"{"model":"a/b","messages":[{}]}"#,
        )
        .expect("valid");
        assert_eq!(with_injected(&plain, plain.body.clone(), None), plain.body);
        // A reserved ceiling the client did not state goes upstream with the usage request.
        let body = with_injected(&request, request.body.clone(), Some(64));
        let value: serde_json::Value = serde_json::from_slice(&body).expect("still JSON");
        assert_eq!(value["max_tokens"], 64);
        assert_eq!(value["stream_options"]["include_usage"], true);
        let body = with_injected(&plain, plain.body.clone(), Some(7));
        let value: serde_json::Value = serde_json::from_slice(&body).expect("still JSON");
        assert_eq!(
            (value["max_tokens"].as_i64(), value["model"].as_str()),
            (Some(7), Some("a/b"))
        );
    }

    #[test]
    fn bad_requests_are_named() {
        let chat = ApiKind::ChatCompletions;
        check_error(chat, "{", "invalid_json", "EOF");
        check_error(chat, "[1]", "invalid_json", "");
        check_error(
            chat,
            r#"{"messages":[{}]}"#,
            "missing_required_parameter",
            "'model'",
        );
        check_error(
            chat,
            r#"{"model":"a/b"}"#,
            "missing_required_parameter",
            "'messages'",
        );
        check_error(
            chat,
            r#"{"model":"a/b","messages":[]}"#,
            "invalid_parameter",
            "must not be empty",
        );
        check_error(
            chat,
            r#"{"model":"a/b","messages":"hi"}"#,
            "invalid_parameter",
            "must be an array",
        );
        check_error(
            chat,
            r#"{"model":7,"messages":[{}]}"#,
            "invalid_parameter",
            "must be a string",
        );
        check_error(
            chat,
            r#"{"model":"","messages":[{}]}"#,
            "invalid_parameter",
            "must not be empty",
        );
        check_error(
            chat,
            r#"{"model":"a/b","messages":[{}],"stream":"yes"}"#,
            "invalid_json",
            "invalid type",
        );
        check_error(
            chat,
            r#"{"model":"a","model":"b","messages":[{}]}"#,
            "invalid_json",
            "duplicate field",
        );
        check_error(
            ApiKind::Embeddings,
            r#"{"model":"a/b"}"#,
            "missing_required_parameter",
            "'input'",
        );
        check_error(
            ApiKind::Embeddings,
            r#"{"model":"a/b","input":"x","stream":true}"#,
            "invalid_parameter",
            "streamed",
        );
        check_error(
            ApiKind::Completions,
            r#"{"model":"a/b"}"#,
            "missing_required_parameter",
            "'prompt'",
        );
    }

    /// A model name reaches logs, metrics and a `text` column: bounded, no control characters.
    #[test]
    fn model_names_are_bounded_and_clean() {
        let chat = ApiKind::ChatCompletions;
        check_error(
            chat,
            r#"{"model":"llm/\u0000","messages":[{}]}"#,
            "invalid_parameter",
            "control characters",
        );
        check_error(
            chat,
            r#"{"model":"llm/\u0085","messages":[{}]}"#,
            "invalid_parameter",
            "control characters",
        );
        check_error(
            chat,
            "{\"model\":\"llm/a\nb\",\"messages\":[{}]}",
            "invalid_json",
            "control character",
        );
        check_error(
            chat,
            &format!(r#"{{"model":"llm/{}","messages":[{{}}]}}"#, "m".repeat(300)),
            "invalid_parameter",
            "at most 256 bytes",
        );
        let longest = format!("llm/{}", "m".repeat(252));
        let body = format!(r#"{{"model":"{longest}","messages":[{{}}]}}"#);
        assert_eq!(parse(chat, &body).expect("256 bytes fit").model, longest);
    }

    /// Completion limits are numbers a budget reserves: non-negative integers, the larger wins.
    #[test]
    fn completion_limits_are_non_negative_integers() {
        let chat = ApiKind::ChatCompletions;
        let limit = |extra: &str| {
            parse(
                chat,
                &format!(r#"{{"model":"a/b","messages":[{{}}]{extra}}}"#),
            )
            .map(|request| request.completion_limit)
        };
        assert_eq!(limit("").expect("none"), None);
        assert_eq!(limit(r#","max_tokens":null"#).expect("null"), None);
        assert_eq!(limit(r#","max_tokens":7"#).expect("one"), Some(7));
        assert_eq!(
            limit(r#","max_completion_tokens":1,"max_tokens":4000"#).expect("both"),
            Some(4000)
        );
        for bad in [
            r#","max_tokens":-1"#,
            r#","max_completion_tokens":-5"#,
            r#","max_tokens":1.5"#,
            r#","max_tokens":"10""#,
            r#","max_tokens":1e12"#,
            r#","max_tokens":99999999999999999999"#,
        ] {
            let error = limit(bad).expect_err(bad);
            assert_eq!(error.code(), "invalid_parameter", "{bad}: {error}");
        }
    }
}
