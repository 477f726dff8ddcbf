//! The protocol-independent request pipeline: route → pick endpoint → forward → account.
//!
//! REST handlers call [`Pipeline::execute`] and turn the [`PipelineResponse`] into HTTP; the
//! WebSocket, GraphQL and gRPC front-ends to come reuse it unchanged.

mod forward;
pub mod request;
pub mod sse;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actors::routing::ModelRouter;
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
}

/// What the upstream answered, ready for any front-end.
pub struct PipelineResponse {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: PipelineBody,
    /// Time spent waiting for upstreams, all attempts together.
    pub upstream_time: Duration,
}

pub enum PipelineBody {
    /// A buffered answer (non-streaming, or an upstream error).
    Full(Bytes),
    /// A live SSE stream.
    Sse(SseRelay),
}

impl Pipeline {
    pub async fn execute(
        &self,
        clients: &UpstreamClients,
        request: ParsedRequest,
        request_id: &str,
    ) -> Result<PipelineResponse, GatewayError> {
        let route = self
            .router
            .resolve(&request.model, |service| self.registry.contains(service))
            .ok_or_else(|| GatewayError::ModelNotFound(request.model.clone()))?;
        let pool =
            self.registry
                .pool(route.service)
                .ok_or_else(|| GatewayError::NoHealthyEndpoint {
                    service: route.service.to_string(),
                })?;
        let body = request.upstream_body(route.upstream_model);
        forward::forward(forward::Forward {
            clients,
            pool: &pool,
            kind: request.kind,
            stream: request.stream,
            body,
            request_id,
            metrics: &self.metrics,
            max_response_bytes: self.max_response_bytes,
        })
        .await
    }
}
