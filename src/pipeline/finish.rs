//! Stage three of [`Pipeline::execute`]: finishing. Bills the request through its
//! [`UsageTicket`] (at once for a buffered answer, when the relay goes away for a stream),
//! settles what admission reserved, adds the admission's headers, and fills the response cache.

use actors::cache::CachedAnswer;

use super::accounting::{Tokens, UsageTicket};
use super::admit::Settlement;
use super::forward::Failed;
use super::{cache, Pipeline, PipelineBody, PipelineResponse};
use crate::error::GatewayError;

impl Pipeline {
    /// Completes a forwarded request, however the upstream answered.
    pub(super) async fn finish(
        &self,
        settlement: Settlement,
        result: Result<PipelineResponse, Failed>,
    ) -> Result<PipelineResponse, GatewayError> {
        let Settlement {
            ticket,
            limit_headers,
            cache_key,
            hide_usage,
            stream,
        } = settlement;
        let mut response = match result {
            Ok(response) => response,
            Err(Failed {
                error,
                endpoint,
                work,
            }) => {
                // Upstream work is billed even when the client gets an error.
                let tokens = ticket.tokens_of_work(work);
                ticket.finish(error.status().as_u16(), &endpoint, tokens);
                return Err(error);
            }
        };
        response.headers.extend(limit_headers);
        if cache_key.is_some() {
            response.headers.push(cache::x_cache(false));
        }
        let mut to_cache = None;
        response.body = match response.body {
            PipelineBody::Full(bytes) => {
                let status = response.status.as_u16();
                let tokens = ticket.tokens_of_body(status, &bytes);
                ticket.finish(status, &response.endpoint, tokens);
                // Only whole 200 answers to non-streaming requests are cached.
                if status == 200 && !stream {
                    to_cache = cache_key.map(|key| (key, cached_answer(&bytes, tokens)));
                }
                PipelineBody::Full(bytes)
            }
            PipelineBody::Sse(relay) => {
                PipelineBody::Sse(bill_on_drop(relay, ticket, &response.endpoint, hide_usage))
            }
        };
        if let (Some(cache), Some((key, answer))) = (&self.cache, to_cache) {
            // Boxed like every optional stage (see `admit`).
            Box::pin(cache.insert(key, answer)).await;
        }
        Ok(response)
    }
}

fn cached_answer(body: &bytes::Bytes, tokens: Tokens) -> CachedAnswer {
    CachedAnswer {
        body: body.clone(),
        prompt_tokens: tokens.prompt,
        completion_tokens: tokens.completion,
    }
}

/// A stream is billed when its relay goes away: at its end, on a fault, or when the client
/// leaves.
fn bill_on_drop(
    relay: super::SseRelay,
    ticket: UsageTicket,
    endpoint: &str,
    hide_usage: bool,
) -> super::SseRelay {
    let relay = if hide_usage {
        relay.hide_usage_event()
    } else {
        relay
    };
    let endpoint = endpoint.to_string();
    relay.on_drop(move |scanner, fault, reached_end| {
        ticket.finish_stream(&endpoint, scanner, fault, reached_end);
    })
}
