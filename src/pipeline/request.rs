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

    pub const fn label(self) -> &'static str {
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
    #[serde(borrow, default, deserialize_with = "present")]
    stream_options: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_completion_tokens: Option<&'a RawValue>,
}

/// A member that is there, `null` included: the gateway rewrites those two members' values in
/// place rather than adding a second member that a later `null` would override upstream.
fn present<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<&'a RawValue>, D::Error> {
    <&'a RawValue>::deserialize(deserializer).map(Some)
}

/// A validated request.
#[derive(Debug, Clone)]
pub struct ParsedRequest {
    pub kind: ApiKind,
    pub model: String,
    pub stream: bool,
    /// Where the `model` value (quotes included) sits in the body.
    model_span: Range<usize>,
    /// A stream whose client did not ask for usage itself: where its `stream_options` value
    /// sits (`None`: the client sent none) and the value to send instead, which asks for it.
    usage_request: Option<UsageRequest>,
    /// The larger of `max_tokens` and `max_completion_tokens`, when the client gave either.
    pub completion_limit: Option<i64>,
    /// Where a `max_tokens` value sits (`null` included), for a reserved ceiling to replace.
    max_tokens_span: Option<Range<usize>>,
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
        let stream = envelope.stream.unwrap_or(false);
        let usage_request = if stream && kind != ApiKind::Embeddings {
            UsageRequest::of(envelope.stream_options, &body)?
        } else {
            None
        };
        Ok(ParsedRequest {
            kind,
            model: model.into_owned(),
            stream,
            model_span: span_of(raw_model, &body),
            usage_request,
            completion_limit,
            max_tokens_span: envelope.max_tokens.map(|raw| span_of(raw, &body)),
            body: body.clone(),
        })
    }

    /// True when the gateway asks the upstream for the usage event on the client's behalf
    /// (billing needs it), so that event must be hidden from the client, who did not ask.
    pub fn usage_injected(&self) -> bool {
        self.usage_request.as_ref().is_some_and(|usage| usage.hide)
    }

    /// The body to send upstream, in one copy, with every other byte as the client sent it:
    /// - `model` replaced when the upstream knows the model by another name;
    /// - a stream always asks for its usage (`stream_options.include_usage`, which billing
    ///   needs): added when the client sent no `stream_options`, rewritten when it said
    ///   `false`, `null`, nothing or said it twice;
    /// - a completion `ceiling` the budget reserved and the client did not state goes in as
    ///   `max_tokens`, so the upstream cannot generate past the reservation.
    ///
    /// With nothing to change the body is returned as it is.
    pub fn upstream_body(&self, upstream_model: &str, ceiling: Option<i64>) -> Bytes {
        const USAGE: &str = r#""stream_options":{"include_usage":true},"#;
        // At most three edits; allocated only when there is one.
        let mut edits: Vec<(Range<usize>, Cow<'_, str>)> = Vec::new();
        let brace = self.body.iter().position(|&b| b == b'{').unwrap_or(0) + 1;
        match (ceiling, &self.max_tokens_span) {
            (Some(tokens), None) => {
                edits.push((brace..brace, format!(r#""max_tokens":{tokens},"#).into()));
            }
            // A ceiling is only set when the client's `max_tokens` is `null`.
            (Some(tokens), Some(span)) => edits.push((span.clone(), tokens.to_string().into())),
            (None, _) => {}
        }
        match &self.usage_request {
            Some(UsageRequest { span: None, .. }) => edits.push((brace..brace, USAGE.into())),
            Some(UsageRequest {
                span: Some(span),
                value,
                ..
            }) => edits.push((span.clone(), value.as_str().into())),
            None => {}
        }
        if upstream_model != self.model {
            // Serialised straight from the `&str`: no `Value` copy, no `Display` pass.
            let quoted = serde_json::to_string(upstream_model).unwrap_or_default();
            edits.push((self.model_span.clone(), quoted.into()));
        }
        if edits.is_empty() {
            return self.body.clone();
        }
        edits.sort_by_key(|(span, _)| span.start);
        let extra: usize = edits.iter().map(|(_, text)| text.len()).sum();
        let mut out = BytesMut::with_capacity(self.body.len() + extra);
        let mut at = 0;
        for (span, text) in &edits {
            out.put_slice(&self.body[at..span.start]);
            out.put_slice(text.as_bytes());
            at = span.end;
        }
        out.put_slice(&self.body[at..]);
        out.freeze()
    }
}

/// How a stream that did not ask for usage is made to: see [`ParsedRequest::upstream_body`].
#[derive(Debug, Clone)]
struct UsageRequest {
    span: Option<Range<usize>>,
    value: String,
    /// The client did not ask: the usage event is the gateway's, not the client's.
    hide: bool,
}

impl UsageRequest {
    /// `None` when the client asked for usage itself, exactly once; a `stream_options` that is
    /// neither an object nor `null` is the client's mistake (400).
    fn of(raw: Option<&RawValue>, body: &[u8]) -> Result<Option<UsageRequest>, GatewayError> {
        let Some(raw) = raw else {
            return Ok(Some(UsageRequest {
                span: None,
                value: String::new(),
                hide: true,
            }));
        };
        let invalid = || GatewayError::InvalidParameter {
            param: "stream_options",
            message: "must be an object".into(),
        };
        let options: Option<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_str(raw.get()).map_err(|_| invalid())?;
        // `null` is there, and gets a value of its own in its place.
        let mut options = options.unwrap_or_default();
        let asked = options.get("include_usage") == Some(&serde_json::Value::Bool(true));
        // A repeated key leaves the last one in the map; upstreams may read the first.
        let said_once =
            memchr::memmem::find_iter(raw.get().as_bytes(), b"\"include_usage\"").count() == 1;
        if asked && said_once {
            return Ok(None);
        }
        options.insert("include_usage".into(), serde_json::Value::Bool(true));
        Ok(Some(UsageRequest {
            span: Some(span_of(raw, body)),
            value: serde_json::Value::Object(options).to_string(),
            hide: !asked,
        }))
    }
}

/// Where a borrowed raw value sits in the body it was parsed from.
fn span_of(raw: &RawValue, body: &[u8]) -> Range<usize> {
    let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
    start..start + raw.get().len()
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
        let rewritten = request.upstream_body("Smol \"2\"", None);
        assert_eq!(
            std::str::from_utf8(&rewritten).expect("utf8"),
            r#"{ "temperature": 0, "model" : "Smol \"2\"", "messages": [{"role":"user","content":"model"}] }"#
        );
        assert_eq!(
            request.upstream_body("smol/x", None),
            Bytes::copy_from_slice(body.as_bytes())
        );
    }

    fn sent(request: &ParsedRequest, model: &str, ceiling: Option<i64>) -> serde_json::Value {
        serde_json::from_slice(&request.upstream_body(model, ceiling)).expect("still JSON")
    }

    #[test]
    fn streaming_requests_always_ask_for_usage() {
        let chat = ApiKind::ChatCompletions;
        let request = parse(chat, r#" {"model":"a/b","stream":true,"messages":[{}]}"#).expect("ok");
        let value = sent(&request, "a/b", None);
        assert_eq!(value["stream_options"]["include_usage"], true);
        assert_eq!(value["model"], "a/b");
        assert!(request.usage_injected());
        // A client that asked itself, once, is forwarded untouched and sees its usage event.
        let own = parse(chat, r#"{"model":"a/b","stream":true,"stream_options":{"include_usage":true},"messages":[{}]}"#).expect("ok");
        assert_eq!(own.upstream_body("a/b", None), own.body);
        assert!(!own.usage_injected());
        // Saying no, null, nothing or twice cannot turn the upstream's count off.
        for options in [
            r#"{"include_usage":false}"#,
            r#"{"include_usage":null,"other":1}"#,
            "null",
            "{}",
            r#"{"include_usage":false,"include_usage":true}"#,
            r#"{"include_usage":true,"include_usage":false}"#,
        ] {
            let body = format!(
                r#"{{"model":"a/b","stream":true,"stream_options":{options},"messages":[{{}}]}}"#
            );
            let request = parse(chat, &body).expect(options);
            let value = sent(&request, "c/d", Some(9));
            assert_eq!(value["stream_options"]["include_usage"], true, "{options}");
            assert_eq!(
                (value["model"].as_str(), value["max_tokens"].as_i64()),
                (Some("c/d"), Some(9))
            );
            let forwarded = request.upstream_body("c/d", Some(9));
            let asked = memchr::memmem::find_iter(&forwarded, b"include_usage").count();
            assert_eq!(asked, 1, "{options}: one include_usage goes upstream");
            if options.contains("other") {
                assert_eq!(value["stream_options"]["other"], 1);
            }
        }
        let wrong = r#"{"model":"a/b","stream":true,"stream_options":[true],"messages":[{}]}"#;
        check_error(chat, wrong, "invalid_parameter", "must be an object");
        // Non-streaming requests and embeddings are left alone.
        let plain = parse(chat, r#"{"model":"a/b","messages":[{}]}"#).expect("ok");
        assert_eq!(plain.upstream_body("a/b", None), plain.body);
        assert!(!plain.usage_injected());
        // A reserved ceiling the client did not state goes upstream.
        let value = sent(&plain, "a/b", Some(7));
        assert_eq!(
            (value["max_tokens"].as_i64(), value["model"].as_str()),
            (Some(7), Some("a/b"))
        );
        // A `null` the client sent is replaced, not shadowed by a second member.
        let null = parse(chat, r#"{"model":"a/b","max_tokens":null,"messages":[{}]}"#).expect("ok");
        let forwarded = null.upstream_body("a/b", Some(7));
        assert_eq!(
            memchr::memmem::find_iter(&forwarded, b"max_tokens").count(),
            1
        );
        assert_eq!(sent(&null, "a/b", Some(7))["max_tokens"], 7);
        let value = sent(&request, "a/b", Some(64));
        assert_eq!(
            (
                value["max_tokens"].as_i64(),
                value["stream_options"]["include_usage"].as_bool()
            ),
            (Some(64), Some(true))
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
