//! A pool as operators see it: every member's health, ejection and statistics, plus the
//! endpoints still draining, answered by the actor on request (never on the request path).

use std::time::{Duration, Instant};

use actix::prelude::*;

use super::{Member, UpstreamPool};
use crate::health::HealthStatus;

/// One endpoint as operators see it.
#[derive(Debug, Clone)]
pub struct EndpointState {
    pub address: String,
    pub weight: u32,
    pub protocol: &'static str,
    pub origin: &'static str,
    pub health: &'static str,
    /// One word for operators: `eligible`, `pending` (waiting for its first passing check),
    /// `unhealthy`, `ejected`, or `draining` (removed by discovery, requests still running).
    pub state: &'static str,
    pub eligible: bool,
    /// Time left in the current ejection.
    pub ejected_for: Option<Duration>,
    pub ejections: u32,
    pub in_flight: u32,
    pub latency_ewma_ms: f64,
    pub consecutive_failures: u32,
}

/// A pool as operators see it.
#[derive(Debug, Clone)]
pub struct PoolState {
    pub service: String,
    pub strategy: &'static str,
    pub endpoints: Vec<EndpointState>,
}

#[derive(Message)]
#[rtype(result = "PoolState")]
pub(super) struct GetPoolState;

impl Handler<GetPoolState> for UpstreamPool {
    type Result = MessageResult<GetPoolState>;

    fn handle(&mut self, _: GetPoolState, _: &mut Self::Context) -> Self::Result {
        let now = Self::now();
        let mut endpoints: Vec<EndpointState> = self
            .members
            .iter()
            .map(|m| EndpointState {
                address: m.endpoint.address.clone(),
                weight: m.endpoint.spec.weight,
                protocol: m.endpoint.spec.protocol.as_str(),
                origin: m.endpoint.spec.origin.as_str(),
                health: m.health.status().as_str(),
                state: state_word(m, now),
                eligible: Self::is_eligible(m, now),
                ejected_for: m
                    .outlier
                    .ejected_until()
                    .and_then(|until| until.checked_duration_since(now)),
                ejections: m.outlier.ejections(),
                in_flight: m.endpoint.stats.in_flight(),
                latency_ewma_ms: m.endpoint.stats.latency_ewma_micros() / 1000.0,
                consecutive_failures: m.endpoint.stats.consecutive_failures(),
            })
            .collect();
        endpoints.extend(self.draining.iter().map(|e| EndpointState {
            address: e.address.clone(),
            weight: e.spec.weight,
            protocol: e.spec.protocol.as_str(),
            origin: e.spec.origin.as_str(),
            health: "draining",
            state: "draining",
            eligible: false,
            ejected_for: None,
            ejections: 0,
            in_flight: e.stats.in_flight(),
            latency_ewma_ms: e.stats.latency_ewma_micros() / 1000.0,
            consecutive_failures: e.stats.consecutive_failures(),
        }));
        MessageResult(PoolState {
            service: self.service.to_string(),
            strategy: self.settings.strategy.as_str(),
            endpoints,
        })
    }
}

/// One word for operators; see [`EndpointState::state`].
fn state_word(member: &Member, now: Instant) -> &'static str {
    if member.outlier.is_ejected(now) {
        return "ejected";
    }
    match member.health.status() {
        HealthStatus::Healthy => "eligible",
        HealthStatus::Pending => "pending",
        HealthStatus::Unhealthy => "unhealthy",
    }
}
