//! `GET /admin/overview`: the dashboard's live numbers, from the gateway's own counters
//! (`crate::overview`) and the pools' states; Prometheus need not be enabled.

use std::time::Instant;

use actix_web::{web, HttpResponse};
use actors::UpstreamRegistryHandle;
use serde::Serialize;

use crate::error::GatewayError;
use crate::overview::{Percentiles, WINDOW_SECS};
use crate::principal::Admin;
use crate::state::AppState;
use crate::ws::WsState;

#[derive(Serialize)]
struct Overview {
    window_secs: u64,
    uptime_secs: u64,
    requests_per_second: f64,
    error_rate: f64,
    latency_ms: Percentiles,
    overhead_ms: Percentiles,
    tokens_per_minute: f64,
    active_streams: u64,
    websocket_sessions: usize,
    upstreams: UpstreamCounts,
}

/// Endpoints by state; `endpoints` counts them all, draining ones included.
#[derive(Serialize, Default, Debug, PartialEq)]
pub struct UpstreamCounts {
    pub services: usize,
    pub endpoints: usize,
    pub eligible: usize,
    pub pending: usize,
    pub unhealthy: usize,
    pub ejected: usize,
    pub draining: usize,
}

impl UpstreamCounts {
    fn count(&mut self, state: &str) {
        self.endpoints += 1;
        match state {
            "eligible" => self.eligible += 1,
            "pending" => self.pending += 1,
            "unhealthy" => self.unhealthy += 1,
            "ejected" => self.ejected += 1,
            "draining" => self.draining += 1,
            other => tracing::debug!(
                state = other,
                "an endpoint state the overview does not count"
            ),
        }
    }
}

async fn upstream_counts(registry: &UpstreamRegistryHandle) -> UpstreamCounts {
    let mut counts = UpstreamCounts::default();
    for (_, pool) in registry.pools() {
        counts.services += 1;
        // A pool that does not answer (stopping) contributes its service but no endpoints.
        if let Ok(state) = pool.state().await {
            for endpoint in &state.endpoints {
                counts.count(endpoint.state);
            }
        }
    }
    counts
}

pub async fn overview(
    _: Admin,
    state: web::Data<AppState>,
    ws: web::Data<WsState>,
) -> Result<HttpResponse, GatewayError> {
    let window = state.metrics.overview.read(Instant::now());
    let upstreams = upstream_counts(&state.pipeline.registry).await;
    let websocket_sessions = ws.hub.sessions().await.len();
    Ok(HttpResponse::Ok().json(Overview {
        window_secs: WINDOW_SECS,
        uptime_secs: window.uptime_secs,
        requests_per_second: window.requests_per_second,
        error_rate: window.error_rate,
        latency_ms: window.latency_ms,
        overhead_ms: window.overhead_ms,
        tokens_per_minute: window.tokens_per_minute,
        active_streams: window.active_streams,
        websocket_sessions,
        upstreams,
    }))
}
