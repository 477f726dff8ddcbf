//! One chat request of a WebSocket session: through [`Pipeline::execute`] like REST, with the
//! SSE answer turned into `chat.delta` messages.
//!
//! Back-pressure: every message waits for room in the session's bounded outbound queue, and
//! while it waits the upstream stream is not read, so a slow client pauses generation (TCP
//! flow control reaches the upstream) instead of making the gateway buffer.

use std::sync::Arc;
use std::time::Instant;

use actix_web::web;
use actors::keys::ApiKey;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::protocol::{self, ChunkKind, MessageId, Outbound, SseEvents};
use crate::error::GatewayError;
use crate::overview::RequestOutcome;
use crate::pipeline::{ApiKind, ParsedRequest, PipelineBody, RequestContext, SseRelay};
use crate::state::AppState;
use crate::upstream::UpstreamClients;

pub struct ChatRequest {
    pub id: MessageId,
    pub body: Bytes,
    pub key: Option<Arc<ApiKey>>,
}

/// Runs the request to its end; returns early (dropping the stream, which bills what was
/// delivered and closes the upstream) when the socket is gone. Cancellation drops this future.
pub async fn run(
    request: ChatRequest,
    state: web::Data<AppState>,
    clients: web::Data<UpstreamClients>,
    out: mpsc::Sender<Outbound>,
) {
    let id = request.id;
    let parsed = match ParsedRequest::parse(ApiKind::ChatCompletions, request.body) {
        Ok(parsed) => parsed,
        Err(error) => {
            send(&out, protocol::error(Some(&id), &error)).await;
            return;
        }
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let context = RequestContext {
        request_id: &request_id,
        key: request.key,
        // The cache opt-in header is a REST feature; deterministic requests still hit.
        cache_opt_in: false,
    };
    let started = Instant::now();
    let result = state.pipeline.execute(&clients, parsed, context).await;
    let outcome = RequestOutcome::of_pipeline(started.elapsed(), &result);
    state.metrics.overview.record_request(started, outcome);
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            send(&out, protocol::error(Some(&id), &error)).await;
            return;
        }
    };
    let status = response.status.as_u16();
    match response.body {
        PipelineBody::Sse(relay) => relay_stream(&id, relay, &response.endpoint, &out).await,
        PipelineBody::Full(body) => {
            for message in full_answer(&id, status, &body, &response.endpoint) {
                if !send(&out, message).await {
                    return;
                }
            }
        }
    }
}

/// Queues one message, waiting for room; `false` when the socket is gone.
async fn send(out: &mpsc::Sender<Outbound>, text: String) -> bool {
    out.send(Outbound::Text(text)).await.is_ok()
}

/// Turns the SSE answer into `chat.delta` messages, then `chat.done` unless the stream failed.
async fn relay_stream(
    id: &MessageId,
    mut relay: SseRelay,
    endpoint: &str,
    out: &mpsc::Sender<Outbound>,
) {
    let mut events = SseEvents::default();
    let mut batch = Vec::new();
    let mut usage: Option<String> = None;
    let mut failed = false;
    while let Some(chunk) = relay.next().await {
        match chunk {
            Ok(chunk) => events.push(&chunk, &mut batch),
            Err(error) => {
                let error = GatewayError::upstream_protocol(endpoint, error.to_string());
                send(out, protocol::error(Some(id), &error)).await;
                return;
            }
        }
        for event in batch.drain(..) {
            if event.event.as_deref() == Some("error") {
                failed = true;
                if !send(out, relay_fault(id, &event.data)).await {
                    return;
                }
                continue;
            }
            match protocol::classify(&event.data) {
                ChunkKind::Done | ChunkKind::Invalid => {}
                ChunkKind::Usage(found) => usage = Some(found.to_string()),
                ChunkKind::Delta => {
                    if !send(out, protocol::delta(id, &event.data)).await {
                        return;
                    }
                }
            }
        }
    }
    // The relay reached its end: dropping it now bills the request as complete.
    drop(relay);
    if !failed {
        send(out, protocol::done(id, usage.as_deref())).await;
    }
}

/// The relay's own fault event (truncation, idle upstream), already OpenAI-shaped, as an
/// error message.
fn relay_fault(id: &MessageId, data: &str) -> String {
    let error = serde_json::from_str::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.get("error").cloned())
        .unwrap_or_default();
    let status = if error["code"] == "upstream_timeout" {
        504
    } else {
        502
    };
    protocol::error_with(Some(id), status, &error.to_string())
}

/// A buffered answer: an upstream's own error (4xx/5xx) or, rarely, a whole completion.
fn full_answer(id: &MessageId, status: u16, body: &[u8], endpoint: &str) -> Vec<String> {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    if (200..300).contains(&status) {
        let usage = parsed
            .as_ref()
            .and_then(|v| v.get("usage"))
            .map(ToString::to_string);
        let chunk = parsed.map_or_else(|| "null".to_string(), |v| v.to_string());
        // One delta carrying the whole completion, then done.
        return vec![
            protocol::delta(id, &chunk),
            protocol::done(id, usage.as_deref()),
        ];
    }
    let error = match parsed.as_ref().and_then(|v| v.get("error")) {
        Some(error) => protocol::error_with(Some(id), status, &error.to_string()),
        None => protocol::error(
            Some(id),
            &GatewayError::UpstreamStatus {
                service: endpoint.to_string(),
                status,
                detail: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            },
        ),
    };
    vec![error]
}
