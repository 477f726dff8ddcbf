//! Stage one of [`Pipeline::execute`]: admission. Resolves the model to a service and its pool,
//! checks the key's allow-list, answers from the response cache when it can, and otherwise
//! takes what the request must hold while it runs (rate-limit decisions, a usage slot, the
//! budget's worst case), all bundled into an [`Admission`] for the next stages.

use std::sync::Arc;

use actix_web::http::header::{HeaderName, HeaderValue};
use actors::budget::{BudgetError, Reservation};
use actors::keys::ApiKey;
use actors::routing::Route;
use actors::tokens::WorstCase;
use actors::UpstreamPoolHandle;
use bytes::Bytes;

use super::accounting::{TicketSpec, UsageTicket};
use super::{cache, ApiKind, ParsedRequest, Pipeline, PipelineResponse, RequestContext};
use crate::error::GatewayError;

/// Admission's verdict: forward the request, or it was answered already (from the cache).
pub(super) enum Admitted {
    Forward(Admission),
    Answered(PipelineResponse),
}

/// What admission hands on: where the request goes and what it carries there (to `forward`),
/// and what finishing it needs (to `finish`).
pub(super) struct Admission {
    pub pool: UpstreamPoolHandle,
    /// The body as forwarded: the upstream model spliced in (and `include_usage` for streams).
    pub body: Bytes,
    pub settlement: Settlement,
}

/// What the finish stage needs once the upstream has answered.
pub(super) struct Settlement {
    pub ticket: UsageTicket,
    /// The `x-ratelimit-*` headers of the admitting decisions.
    pub limit_headers: Vec<(HeaderName, HeaderValue)>,
    /// Set when the request may be answered from, and so fill, the response cache.
    pub cache_key: Option<[u8; 32]>,
    /// The gateway injected `include_usage`, so the usage-only event is hidden again.
    pub hide_usage: bool,
    pub stream: bool,
}

impl Pipeline {
    /// Routes, authorises and admits one request, or answers it from the cache.
    pub(super) async fn admit(
        &self,
        request: &ParsedRequest,
        context: &RequestContext<'_>,
    ) -> Result<Admitted, GatewayError> {
        if let Some(limit) = request
            .completion_limit
            .filter(|&l| l > self.max_tokens_cap)
        {
            return Err(GatewayError::InvalidParameter {
                param: "max_tokens",
                message: format!(
                    "{limit} is more than any model's context allows here (at most {})",
                    self.max_tokens_cap
                ),
            });
        }
        let (route, pool) = self.route(request, context)?;
        let cache_key = self.cache_key(request, context, &route, &pool);
        if let (Some(cache), Some(cache_key)) = (&self.cache, &cache_key) {
            // Optional stages are boxed: inline, their futures would size (and so move, on
            // every request) `execute`'s state even when the stage is switched off.
            if let Some(answer) = Box::pin(cache.get(cache_key)).await {
                return Box::pin(self.answer_from_cache(request, context, &route, &answer))
                    .await
                    .map(Admitted::Answered);
            }
        }
        // Rate limits first (a refusal there costs nothing), then a place for the usage event,
        // then the budget. All are released if the request never reaches an upstream.
        let key = context.key.as_deref();
        let worst_case = self.worst_case(request, key).await?;
        let admitted = match self.limits.as_ref().zip(key) {
            Some((limits, key)) => Some(limits.admit(key, Some(worst_case.tokens)).await?),
            None => None,
        };
        if self.limits.is_some() {
            self.admit_service(&pool, route.service).await?;
        }
        let slot = self
            .usage
            .reserve()
            .map_err(|backlog| GatewayError::UsageBacklog(backlog.to_string()))?;
        let reservation = self.reserve_budget(key, worst_case.tokens).await?;
        let (limit_headers, rate_tokens, in_flight) = match admitted {
            Some(admitted) => (admitted.headers, admitted.tokens, admitted.in_flight),
            None => (Vec::new(), None, None),
        };
        let body = request.upstream_body(route.upstream_model, worst_case.ceiling);
        let ticket = UsageTicket::new(TicketSpec {
            slot,
            reservation,
            rate_tokens,
            in_flight,
            cached: false,
            request_id: context.request_id,
            key_id: context.key.as_ref().map(|k| k.id),
            model: &request.model,
            route_label: route.label(&request.model),
            service: route.service,
            kind: request.kind,
            metrics: Arc::clone(&self.metrics),
            prompt_tokens: worst_case.prompt,
            prompt_body: body.clone(),
        });
        Ok(Admitted::Forward(Admission {
            pool,
            body,
            settlement: Settlement {
                ticket,
                limit_headers,
                cache_key,
                hide_usage: request.usage_injected(),
                stream: request.stream,
            },
        }))
    }

    /// The model's service and pool; 404 for an unknown model, 403 outside the key's
    /// allow-list.
    fn route<'a>(
        &'a self,
        request: &'a ParsedRequest,
        context: &RequestContext<'_>,
    ) -> Result<(Route<'a>, UpstreamPoolHandle), GatewayError> {
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
        Ok((route, pool))
    }

    /// The response-cache key, when the cache is on and the request is cacheable. Answers are
    /// shared per service when the service says so, otherwise per key.
    fn cache_key(
        &self,
        request: &ParsedRequest,
        context: &RequestContext<'_>,
        route: &Route<'_>,
        pool: &UpstreamPoolHandle,
    ) -> Option<[u8; 32]> {
        self.cache.as_ref()?;
        let scope = if pool.snapshot().settings.cache_shared {
            format!("service:{}", route.service)
        } else {
            context
                .key
                .as_ref()
                .map_or_else(|| "anonymous".to_string(), |k| format!("key:{}", k.id))
        };
        cache::key_of(request, &scope, context.cache_opt_in)
    }

    /// The request's worst-case tokens, counted only when a budget or a token limit needs it
    /// (otherwise zero, and the body is not parsed). A large body is counted on a blocking
    /// thread (`actors::tokens::worst_case_off_thread`), never on this one.
    async fn worst_case(
        &self,
        request: &ParsedRequest,
        key: Option<&ApiKey>,
    ) -> Result<WorstCase, GatewayError> {
        let limits = self.limits.as_ref().zip(key);
        let needs_estimate = key.is_some_and(|k| k.token_budget.is_some())
            || limits.is_some_and(|(limits, key)| limits.limits_tokens(key));
        if !needs_estimate {
            return Ok(WorstCase::NONE);
        }
        let default = (request.kind != ApiKind::Embeddings).then_some(self.default_max_tokens);
        // Boxed like every optional stage: it holds a semaphore wait and a join handle.
        Box::pin(actors::tokens::worst_case_off_thread(
            request.body.clone(),
            default,
        ))
        .await
        .map_err(|failed| GatewayError::Internal(failed.to_string()))
    }

    /// Reserves the worst case against the key's token budget, when it has one (429 when it
    /// does not fit; 503 when the shared ledger cannot decide and the failure mode is `deny`).
    async fn reserve_budget(
        &self,
        key: Option<&ApiKey>,
        worst_case: i64,
    ) -> Result<Option<Reservation>, GatewayError> {
        let Some(ApiKey {
            id,
            token_budget: Some(budget),
            ..
        }) = key
        else {
            return Ok(None);
        };
        Box::pin(self.budgets.reserve(*id, *budget, worst_case))
            .await
            .map(Some)
            .map_err(|error| match error {
                BudgetError::Exhausted { .. } => {
                    GatewayError::QuotaExceeded(format!("You exceeded your token budget: {error}."))
                }
                BudgetError::Unavailable(reason) => GatewayError::BudgetUnavailable(reason),
                BudgetError::Store(error) => GatewayError::StoreUnavailable(error.to_string()),
            })
    }

    /// The service's own request limit (every key together), when it has one.
    pub(super) async fn admit_service(
        &self,
        pool: &UpstreamPoolHandle,
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
