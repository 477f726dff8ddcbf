//! The protocol-independent request pipeline: route → pick endpoint → forward → account.
//!
//! REST handlers call [`Pipeline::execute`] and turn the [`PipelineResponse`] into HTTP; the
//! WebSocket, GraphQL and gRPC front-ends to come reuse it unchanged.

pub mod accounting;
pub mod cache;
mod forward;
mod grpc;
pub mod limits;
pub mod request;
pub mod sse;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actors::keys::{ApiKey, BudgetError, BudgetLedger};
use actors::routing::ModelRouter;
use actors::usage::UsageHandle;
use actors::UpstreamRegistryHandle;
use bytes::Bytes;

use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::upstream::UpstreamClients;
pub use request::{ApiKind, ParsedRequest};
pub use sse::SseRelay;

/// Shared, read-only state of the pipeline.
pub struct Pipeline {
    pub registry: UpstreamRegistryHandle,
    pub router: ModelRouter,
    pub metrics: Arc<Metrics>,
    pub max_response_bytes: usize,
    pub usage: UsageHandle,
    pub budgets: BudgetLedger,
    /// Completion tokens reserved when a request sets no `max_tokens`.
    pub default_max_tokens: i64,
    /// `None` when `RATE_LIMIT_ENABLED=false`.
    pub limits: Option<limits::RateLimits>,
    /// `None` when `CACHE_ENABLED=false`.
    pub cache: Option<actors::cache::ResponseCache>,
}

/// Who is asking, for policy and billing.
pub struct RequestContext<'a> {
    pub request_id: &'a str,
    /// `None` only when authentication is off.
    pub key: Option<Arc<ApiKey>>,
    /// The client opted a non-deterministic request into the response cache
    /// ([`cache::OPT_IN_HEADER`]).
    pub cache_opt_in: bool,
}

/// What the upstream answered, ready for any front-end.
pub struct PipelineResponse {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: PipelineBody,
    /// Time spent waiting for upstreams, all attempts together.
    pub upstream_time: Duration,
    /// The endpoint that answered.
    pub endpoint: String,
}

pub enum PipelineBody {
    /// A buffered answer (non-streaming, or an upstream error).
    Full(Bytes),
    /// A live SSE stream.
    Sse(SseRelay),
}

impl Pipeline {
    /// Routes, authorises, reserves, forwards and bills one request.
    pub async fn execute(
        &self,
        clients: &UpstreamClients,
        request: ParsedRequest,
        context: RequestContext<'_>,
    ) -> Result<PipelineResponse, GatewayError> {
        let route = self
            .router
            .resolve(&request.model, |service| self.registry.contains(service))
            .ok_or_else(|| GatewayError::ModelNotFound(request.model.clone()))?;
        if let Some(key) = &context.key {
            if !key.allows(&request.model, route.service) {
                return Err(GatewayError::ModelNotAllowed(request.model.clone()));
            }
        }
        let pool =
            self.registry
                .pool(route.service)
                .ok_or_else(|| GatewayError::NoHealthyEndpoint {
                    service: route.service.to_string(),
                })?;
        let cache_key = self.cache.as_ref().and_then(|_| {
            let scope = if pool.snapshot().settings.cache_shared {
                format!("service:{}", route.service)
            } else {
                context
                    .key
                    .as_ref()
                    .map_or_else(|| "anonymous".to_string(), |k| format!("key:{}", k.id))
            };
            cache::key_of(&request, &scope, context.cache_opt_in)
        });
        if let (Some(cache), Some(cache_key)) = (&self.cache, &cache_key) {
            // Optional stages are boxed: inline, their futures would size (and so move, on
            // every request) `execute`'s state even when the stage is switched off.
            if let Some(answer) = Box::pin(cache.get(cache_key)).await {
                return Box::pin(self.answer_from_cache(
                    &request,
                    &context,
                    route.service,
                    &answer,
                ))
                .await;
            }
        }
        // Admission: rate limits first (a refusal there costs nothing), then a place for the
        // usage event, then the budget. All are released if the request never reaches an
        // upstream.
        let key = context.key.as_deref();
        let limits = self.limits.as_ref().zip(key);
        let needs_estimate = key.is_some_and(|k| k.token_budget.is_some())
            || limits.is_some_and(|(limits, key)| limits.limits_tokens(key));
        let worst_case = if needs_estimate {
            actors::tokens::worst_case(&request.body, self.default_max_tokens)
        } else {
            0
        };
        let admitted = match limits {
            Some((limits, key)) => Some(limits.admit(key, Some(worst_case)).await?),
            None => None,
        };
        if self.limits.is_some() {
            self.admit_service(&pool, route.service).await?;
        }
        let slot = self
            .usage
            .reserve()
            .map_err(|backlog| GatewayError::UsageBacklog(backlog.to_string()))?;
        let reservation = match key {
            Some(ApiKey {
                id,
                token_budget: Some(budget),
                ..
            }) => Some(
                Box::pin(self.budgets.reserve(*id, *budget, worst_case))
                    .await
                    .map_err(|error| match error {
                        BudgetError::Exhausted { .. } => GatewayError::QuotaExceeded(format!(
                            "You exceeded your token budget: {error}."
                        )),
                        BudgetError::Store(error) => {
                            GatewayError::StoreUnavailable(error.to_string())
                        }
                    })?,
            ),
            _ => None,
        };
        let (limit_headers, token_reservation, in_flight) = match admitted {
            Some(admitted) => (admitted.headers, admitted.tokens, admitted.in_flight),
            None => (Vec::new(), None, None),
        };
        let hide_usage = request.usage_injected();
        let body =
            request::with_stream_usage(&request, request.upstream_body(route.upstream_model));
        let ticket = accounting::UsageTicket::new(
            slot,
            reservation,
            context.request_id,
            context.key.as_ref().map(|k| k.id),
            &request.model,
            route.service,
            request.kind,
            Arc::clone(&self.metrics),
            body.clone(),
        )
        .holding_rate_tokens(token_reservation)
        .holding_in_flight(in_flight);
        let result = forward::forward(forward::Forward {
            clients,
            pool: &pool,
            kind: request.kind,
            stream: request.stream,
            body,
            request_id: context.request_id,
            metrics: &self.metrics,
            max_response_bytes: self.max_response_bytes,
        })
        .await;
        match result {
            Ok(mut response) => {
                response.headers.extend(limit_headers);
                if cache_key.is_some() {
                    response.headers.push(cache::x_cache(false));
                }
                let status = response.status.as_u16();
                let mut to_cache = None;
                response.body = match response.body {
                    PipelineBody::Full(bytes) => {
                        let tokens = ticket.tokens_of_body(status, &bytes);
                        ticket.finish(status, &response.endpoint, tokens);
                        // Only whole 200 answers to non-streaming requests are cached.
                        if status == 200 && !request.stream {
                            to_cache = cache_key.map(|key| {
                                let answer = actors::cache::CachedAnswer {
                                    body: bytes.clone(),
                                    prompt_tokens: tokens.prompt,
                                    completion_tokens: tokens.completion,
                                };
                                (key, answer)
                            });
                        }
                        PipelineBody::Full(bytes)
                    }
                    PipelineBody::Sse(relay) => {
                        let relay = if hide_usage {
                            relay.hide_usage_event()
                        } else {
                            relay
                        };
                        let endpoint = response.endpoint.clone();
                        PipelineBody::Sse(relay.on_drop(move |scanner, fault, reached_end| {
                            ticket.finish_stream(&endpoint, scanner, fault, reached_end);
                        }))
                    }
                };
                if let (Some(cache), Some((key, answer))) = (&self.cache, to_cache) {
                    Box::pin(cache.insert(key, answer)).await;
                }
                Ok(response)
            }
            Err(error) => {
                ticket.finish(error.status().as_u16(), "", accounting::Tokens::default());
                Err(error)
            }
        }
    }

    /// Answers from the cache: counts against the key's request limit (not its tokens or
    /// budget), and is recorded in usage as cached.
    async fn answer_from_cache(
        &self,
        request: &ParsedRequest,
        context: &RequestContext<'_>,
        service: &str,
        answer: &actors::cache::CachedAnswer,
    ) -> Result<PipelineResponse, GatewayError> {
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
        let ticket = accounting::UsageTicket::new(
            slot,
            None,
            context.request_id,
            context.key.as_ref().map(|k| k.id),
            &request.model,
            service,
            request.kind,
            Arc::clone(&self.metrics),
            Bytes::new(),
        )
        .from_cache();
        ticket.finish(
            200,
            "cache",
            accounting::Tokens {
                prompt: answer.prompt_tokens,
                completion: answer.completion_tokens,
                estimated: false,
            },
        );
        headers.push(cache::x_cache(true));
        let body = if request.stream {
            let include_usage = !request.usage_injected()
                && serde_json::from_slice::<serde_json::Value>(&request.body)
                    .ok()
                    .and_then(|b| b.pointer("/stream_options/include_usage")?.as_bool())
                    .unwrap_or(false);
            headers.push((
                actix_web::http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ));
            cache::replay_as_sse(request.kind, answer, include_usage)
        } else {
            headers.push((
                actix_web::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ));
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

    /// The service's own request limit (every key together), when it has one.
    async fn admit_service(
        &self,
        pool: &actors::UpstreamPoolHandle,
        service: &str,
    ) -> Result<(), GatewayError> {
        let Some(limits) = &self.limits else {
            return Ok(());
        };
        let settings = Arc::clone(&pool.snapshot().settings);
        let Some(per_minute) = settings.requests_per_minute else {
            return Ok(());
        };
        let burst = settings.burst.unwrap_or((per_minute / 60).max(1));
        limits
            .admit_subject("service", &format!("service:{service}"), per_minute, burst)
            .await
    }
}
