//! The protocol-independent request pipeline: route → pick endpoint → forward → account.
//!
//! REST handlers call [`Pipeline::execute`] and turn the [`PipelineResponse`] into HTTP; the
//! WebSocket and GraphQL front-ends call it the same way, and gRPC endpoints sit behind it.

pub mod accounting;
mod admit;
pub mod cache;
mod finish;
mod forward;
mod grpc;
pub mod limits;
pub mod request;
pub mod sse;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actors::budget::BudgetLedger;
use actors::keys::ApiKey;
use actors::routing::ModelRouter;
use actors::usage::UsageHandle;
use actors::UpstreamRegistryHandle;
use bytes::Bytes;

use admit::{Admission, Admitted};

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
    /// The largest completion limit a request may ask for (`usage.max_tokens_cap`); beyond
    /// it, 400.
    pub max_tokens_cap: i64,
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
    /// Serves one request in three stages: `admit` (admit.rs: route, allow-list, cache lookup,
    /// limits, usage slot, budget), `forward` (forward.rs: pick, send, fail over) and `finish`
    /// (finish.rs: bill, settle, fill the cache). Each hands the next what it needs
    /// explicitly: an `Admission` (the pool, the body to send, a `Settlement`), then the
    /// upstream's answer.
    pub async fn execute(
        &self,
        clients: &UpstreamClients,
        request: ParsedRequest,
        context: RequestContext<'_>,
    ) -> Result<PipelineResponse, GatewayError> {
        let Admission {
            pool,
            body,
            settlement,
        } = match self.admit(&request, &context).await? {
            Admitted::Forward(admission) => admission,
            Admitted::Answered(response) => return Ok(response),
        };
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
        self.finish(settlement, result).await
    }
}

/// A model a client may name: an alias, or `<service>/<model>` as the service reports it.
pub struct ListedModel {
    pub id: String,
    pub owned_by: String,
}

impl Pipeline {
    /// Configured aliases plus `<service>/<model>` for what each reachable service reports,
    /// sorted by id.
    pub async fn list_models(&self, clients: &UpstreamClients) -> Vec<ListedModel> {
        let mut models: Vec<ListedModel> = self
            .router
            .aliases()
            .map(|alias| ListedModel {
                id: alias.name.clone(),
                owned_by: alias.service.clone(),
            })
            .collect();
        for (service, ids) in crate::upstream::service_models(&self.registry, clients).await {
            models.extend(ids.into_iter().map(|id| ListedModel {
                id: format!("{service}/{id}"),
                owned_by: service.clone(),
            }));
        }
        models.sort_by(|a, b| a.id.cmp(&b.id));
        models
    }
}
