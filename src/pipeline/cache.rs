//! The response cache at the edge: which requests may be answered from it, how a cached
//! answer is replayed to a client that asked for a stream, and the cache hit as an answer.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actors::cache::CachedAnswer;
use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

use super::accounting::{TicketSpec, Tokens, UsageTicket};
use super::{ApiKind, ParsedRequest, Pipeline, PipelineBody, PipelineResponse, RequestContext};
use crate::error::GatewayError;

/// The request header that opts a non-zero-temperature request into the cache. A name, not a
/// `&str`: every request looks it up, and a `&str` would be parsed into a name each time.
pub const OPT_IN_HEADER: HeaderName = HeaderName::from_static("x-gateway-cache");

pub fn x_cache(hit: bool) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static("x-cache"),
        HeaderValue::from_static(if hit { "HIT" } else { "MISS" }),
    )
}

/// The cache key of `request` when its answer is deterministic (embeddings, or
/// `temperature: 0`), or the client opted in; `None` otherwise. Only a cacheable body is
/// parsed whole, and this is only called when the cache is on.
pub fn key_of(request: &ParsedRequest, scope: &str, opted_in: bool) -> Option<[u8; 32]> {
    /// Reads `temperature` alone; the rest of the body is skipped, not materialised.
    #[derive(serde::Deserialize)]
    struct Probe {
        temperature: Option<f64>,
    }
    let deterministic = match request.kind {
        ApiKind::Embeddings => true,
        ApiKind::ChatCompletions | ApiKind::Completions => {
            opted_in
                || serde_json::from_slice::<Probe>(&request.body)
                    .is_ok_and(|probe| probe.temperature == Some(0.0))
        }
    };
    if !deterministic {
        return None;
    }
    let body: Value = serde_json::from_slice(&request.body).ok()?;
    Some(actors::cache::cache_key(scope, request.kind.label(), &body))
}

/// A cached (non-streaming) answer as the SSE stream the upstream would have sent: one chunk
/// per choice with the whole content, a usage event when the client asked for one, `[DONE]`.
pub fn replay_as_sse(kind: ApiKind, answer: &CachedAnswer, include_usage: bool) -> Bytes {
    let whole: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    let id = whole.get("id").cloned().unwrap_or(Value::Null);
    let model = whole.get("model").cloned().unwrap_or(Value::Null);
    let created = whole.get("created").cloned().unwrap_or(json!(0));
    let choices = whole
        .get("choices")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let object = match kind {
        ApiKind::ChatCompletions => "chat.completion.chunk",
        ApiKind::Completions | ApiKind::Embeddings => "text_completion",
    };
    let mut out = BytesMut::new();
    let mut event = |value: Value| {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(value.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
    };
    for (position, choice) in choices.iter().enumerate() {
        let index = choice.get("index").cloned().unwrap_or(json!(position));
        let finish = choice
            .get("finish_reason")
            .cloned()
            .unwrap_or(json!("stop"));
        let (content, last) = match kind {
            ApiKind::ChatCompletions => {
                let message = choice.get("message").cloned().unwrap_or(json!({}));
                let role = message.get("role").cloned().unwrap_or(json!("assistant"));
                let content = message.get("content").cloned().unwrap_or(json!(""));
                (
                    json!({"index": index, "delta": {"role": role, "content": content}, "finish_reason": null}),
                    json!({"index": index, "delta": {}, "finish_reason": finish}),
                )
            }
            ApiKind::Completions | ApiKind::Embeddings => {
                let text = choice.get("text").cloned().unwrap_or(json!(""));
                (
                    json!({"index": index, "text": text, "finish_reason": null}),
                    json!({"index": index, "text": "", "finish_reason": finish}),
                )
            }
        };
        for choice in [content, last] {
            event(
                json!({"id": id, "object": object, "created": created, "model": model,
                "choices": [choice]}),
            );
        }
    }
    if include_usage {
        event(
            json!({"id": id, "object": object, "created": created, "model": model,
            "choices": [], "usage": {
                "prompt_tokens": answer.prompt_tokens,
                "completion_tokens": answer.completion_tokens,
                "total_tokens": answer.prompt_tokens + answer.completion_tokens}}),
        );
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    out.freeze()
}

/// A cache hit, answered in place of admission's forwarding.
impl Pipeline {
    /// Answers from the cache: counts against the key's request limit (not its tokens or
    /// budget), and is recorded in usage as cached.
    pub(super) async fn answer_from_cache(
        &self,
        request: &ParsedRequest,
        context: &RequestContext<'_>,
        route: &actors::routing::Route<'_>,
        answer: &CachedAnswer,
    ) -> Result<PipelineResponse, GatewayError> {
        let service = route.service;
        let mut headers = match (&self.limits, context.key.as_deref()) {
            (Some(limits), Some(key)) => limits.admit(key, None).await?.headers,
            _ => Vec::new(),
        };
        if let Some(pool) = self.registry.pool(service) {
            self.admit_service(&pool, service).await?;
        }
        let slot = self
            .usage
            .reserve()
            .map_err(|backlog| GatewayError::UsageBacklog(backlog.to_string()))?;
        let ticket = UsageTicket::new(TicketSpec {
            slot,
            reservation: None,
            rate_tokens: None,
            in_flight: None,
            cached: true,
            request_id: context.request_id,
            key_id: context.key.as_ref().map(|k| k.id),
            model: &request.model,
            route_label: route.label(&request.model),
            service,
            kind: request.kind,
            metrics: Arc::clone(&self.metrics),
            prompt_tokens: None,
            prompt_body: Bytes::new(),
        });
        ticket.finish(
            200,
            "cache",
            Tokens {
                prompt: answer.prompt_tokens,
                completion: answer.completion_tokens,
                estimated: false,
            },
        );
        headers.push(x_cache(true));
        let body = if request.stream {
            // A stream the gateway asks usage for on its client's behalf hides it.
            let include_usage = !request.usage_injected();
            headers.push((CONTENT_TYPE, HeaderValue::from_static("text/event-stream")));
            replay_as_sse(request.kind, answer, include_usage)
        } else {
            headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
            answer.body.clone()
        };
        Ok(PipelineResponse {
            status: StatusCode::OK,
            headers,
            body: PipelineBody::Full(body),
            upstream_time: Duration::ZERO,
            endpoint: "cache".to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_chat_answer_replays_as_complete_sse() {
        let answer = CachedAnswer {
            body: Bytes::from_static(
                br#"{"id":"c1","object":"chat.completion","created":5,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
            ),
            prompt_tokens: 3,
            completion_tokens: 2,
        };
        let stream = replay_as_sse(ApiKind::ChatCompletions, &answer, true);
        let mut scanner = super::super::sse::SseScanner::default();
        scanner.feed(&stream);
        scanner.finish();
        assert!(scanner.is_complete());
        assert_eq!(scanner.delivered_text, "hi there");
        assert_eq!(scanner.usage, Some((3, 2)));
        assert!(stream.ends_with(b"data: [DONE]\n\n"));
        let without = replay_as_sse(ApiKind::ChatCompletions, &answer, false);
        assert!(!String::from_utf8_lossy(&without).contains("usage"));
    }
}
