//! `UpstreamPool`: the actor that owns one service's endpoints, their health and ejection
//! state, and publishes an immutable snapshot that requests read without a message round trip.
//! Requests hold an [`UpstreamPoolHandle`] (`handle.rs`); operators read [`PoolState`]
//! (`state.rs`).

mod handle;
mod state;

pub use handle::{PoolError, UpstreamPoolHandle};
pub use state::{EndpointState, PoolState};

use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use arc_swap::ArcSwap;
use futures_util::future::LocalBoxFuture;

use crate::endpoint::{Endpoint, EndpointSpec};
use crate::health::{HealthStatus, HealthTracker, OutlierState};
use crate::retry::RetryBudget;
use crate::settings::ServiceSettings;

/// Messages waiting for a pool beyond this are refused rather than queued.
const MAILBOX_CAPACITY: usize = 256;

/// Sends one active health probe. The gateway implements it with an HTTP `GET` or a gRPC
/// health check, by the endpoint's protocol; tests implement it with whatever they need.
pub trait HealthProbe {
    /// Resolves to true when the endpoint answered `path` successfully within `timeout`.
    fn probe(
        &self,
        endpoint: Arc<Endpoint>,
        path: String,
        timeout: Duration,
    ) -> LocalBoxFuture<'static, bool>;
}

/// What requests see of a pool: the endpoints they may use right now.
#[derive(Debug)]
pub struct PoolSnapshot {
    pub service: Arc<str>,
    pub settings: Arc<ServiceSettings>,
    /// Endpoints that are healthy and not ejected, in a stable order.
    pub eligible: Vec<Arc<Endpoint>>,
    /// All known endpoints, eligible or not.
    pub known: usize,
}

impl PoolSnapshot {
    /// A pool is ready when it has no endpoints at all or at least one eligible one.
    pub fn is_ready(&self) -> bool {
        self.known == 0 || !self.eligible.is_empty()
    }
}

/// State shared between the actor and every handle.
#[derive(Debug)]
struct PoolShared {
    snapshot: ArcSwap<PoolSnapshot>,
    pick_counter: AtomicU64,
    retry_budget: RetryBudget,
}

struct Member {
    endpoint: Arc<Endpoint>,
    health: HealthTracker,
    outlier: OutlierState,
    probing: bool,
}

pub struct UpstreamPool {
    service: Arc<str>,
    settings: Arc<ServiceSettings>,
    health_path: Option<String>,
    members: Vec<Member>,
    /// Endpoints discovery no longer reports that still carry requests or streams. They are
    /// never picked again; they are kept only to be shown until their last request ends.
    draining: Vec<Arc<Endpoint>>,
    shared: Arc<PoolShared>,
    probe: Rc<dyn HealthProbe>,
}

impl UpstreamPool {
    /// Starts a pool with no endpoints on the current arbiter.
    pub fn start_pool(
        service: &str,
        settings: ServiceSettings,
        probe: Rc<dyn HealthProbe>,
    ) -> UpstreamPoolHandle {
        let service: Arc<str> = Arc::from(service);
        let settings = Arc::new(settings);
        let shared = Arc::new(PoolShared {
            snapshot: ArcSwap::from_pointee(PoolSnapshot {
                service: Arc::clone(&service),
                settings: Arc::clone(&settings),
                eligible: Vec::new(),
                known: 0,
            }),
            pick_counter: AtomicU64::new(0),
            retry_budget: RetryBudget::new(settings.retry_budget_ratio, settings.retry_budget_min),
        });
        let pool = UpstreamPool {
            service,
            health_path: settings.health.path.clone(),
            settings,
            members: Vec::new(),
            draining: Vec::new(),
            shared: Arc::clone(&shared),
            probe,
        };
        let addr = pool.start();
        UpstreamPoolHandle::new(addr, shared)
    }

    fn now() -> Instant {
        // tokio's clock, so tests with paused time drive ejections too.
        tokio::time::Instant::now().into_std()
    }

    fn is_eligible(member: &Member, now: Instant) -> bool {
        member.health.status() == HealthStatus::Healthy && !member.outlier.is_ejected(now)
    }

    fn publish(&self) {
        let now = Self::now();
        let eligible = self
            .members
            .iter()
            .filter(|m| Self::is_eligible(m, now))
            .map(|m| Arc::clone(&m.endpoint))
            .collect();
        self.shared.snapshot.store(Arc::new(PoolSnapshot {
            service: Arc::clone(&self.service),
            settings: Arc::clone(&self.settings),
            eligible,
            known: self.members.len(),
        }));
    }

    fn apply_endpoints(&mut self, update: SetEndpoints, ctx: &mut Context<Self>) {
        if update.health_path.is_some() || self.settings.health.path.is_none() {
            self.health_path = update
                .health_path
                .or_else(|| self.settings.health.path.clone());
        }
        let active = self.health_path.is_some();
        let mut previous = std::mem::take(&mut self.members);
        let mut added = Vec::new();
        for spec in update.endpoints {
            let address = spec.address();
            // An address that comes back while draining is a new member; its old requests
            // keep the old `Endpoint` object until they end.
            self.draining.retain(|e| e.address != address);
            let existing = previous
                .iter()
                .position(|m| m.endpoint.address == address)
                .map(|i| previous.swap_remove(i));
            let member = match existing {
                Some(member) if member.endpoint.spec == spec => member,
                // A changed weight or protocol is a new endpoint object with the old health.
                Some(member) => Member {
                    endpoint: Endpoint::new(spec),
                    ..member
                },
                None => {
                    if self.settings.api_key.is_some() && !spec.is_loopback() {
                        tracing::warn!(service = %self.service, endpoint = %address,
                            "this service's api_key is sent to this endpoint over plain http, \
                             unencrypted across the network");
                    }
                    added.push(address.clone());
                    Member {
                        endpoint: Endpoint::new(spec),
                        health: HealthTracker::new(active),
                        outlier: OutlierState::default(),
                        probing: false,
                    }
                }
            };
            self.members.push(member);
        }
        // Endpoints left in `previous` are gone from discovery. Requests that hold them keep
        // their `Arc` and finish; no new request can pick them once the snapshot is replaced.
        for gone in previous {
            let in_flight = gone.endpoint.stats.in_flight();
            tracing::info!(service = %self.service, endpoint = %gone.endpoint, in_flight, "endpoint removed, draining");
            if in_flight > 0 {
                self.draining.push(gone.endpoint);
            }
        }
        if !added.is_empty() {
            tracing::info!(service = %self.service, endpoints = ?added, "endpoints added");
        }
        self.publish();
        self.probe_all(ctx);
    }

    fn probe_all(&mut self, ctx: &mut Context<Self>) {
        let Some(path) = self.health_path.clone() else {
            return;
        };
        let timeout = self.settings.health.timeout;
        let mut probes = Vec::new();
        for member in self.members.iter_mut().filter(|m| !m.probing) {
            member.probing = true;
            let endpoint = Arc::clone(&member.endpoint);
            let probe = self
                .probe
                .probe(Arc::clone(&endpoint), path.clone(), timeout);
            probes.push((endpoint, probe));
        }
        for (endpoint, probe) in probes {
            ctx.spawn(probe.into_actor(self).map(move |passed, pool, _| {
                pool.record_probe(&endpoint, passed);
            }));
        }
    }

    fn record_probe(&mut self, endpoint: &Arc<Endpoint>, passed: bool) {
        let Some(member) = self
            .members
            .iter_mut()
            .find(|m| Arc::ptr_eq(&m.endpoint, endpoint))
        else {
            return;
        };
        member.probing = false;
        let before = member.health.status();
        if member.health.record(passed, &self.settings.health) {
            let after = member.health.status();
            if after == HealthStatus::Healthy {
                // A fresh start: failures from before it went down are history.
                member.endpoint.stats.reset_failures();
            }
            tracing::info!(
                service = %self.service,
                endpoint = %member.endpoint,
                from = before.as_str(),
                to = after.as_str(),
                "endpoint health changed"
            );
            self.publish();
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let service = &self.service;
        self.draining.retain(|endpoint| {
            let busy = endpoint.stats.in_flight() > 0;
            if !busy {
                tracing::info!(service = %service, endpoint = %endpoint, "endpoint drained");
            }
            busy
        });
        let now = Self::now();
        let mut changed = false;
        for member in &mut self.members {
            if member.outlier.expire(now) {
                tracing::info!(service = %self.service, endpoint = %member.endpoint, "ejection ended");
                changed = true;
            }
            member.outlier.forgive(now, &self.settings.outlier);
        }
        if changed {
            self.publish();
        }
        self.probe_all(ctx);
    }

    fn eject(&mut self, address: &str, ctx: &mut Context<Self>) {
        let now = Self::now();
        let eligible = self
            .members
            .iter()
            .filter(|m| Self::is_eligible(m, now))
            .count();
        let settings = &self.settings.outlier;
        let Some(member) = self
            .members
            .iter_mut()
            .find(|m| m.endpoint.address == address)
        else {
            return;
        };
        if member.outlier.is_ejected(now) {
            return;
        }
        let was_eligible = Self::is_eligible(member, now);
        if was_eligible && eligible <= settings.min_eligible {
            tracing::warn!(
                service = %self.service,
                endpoint = %member.endpoint,
                "endpoint is failing but ejecting it would leave too few endpoints"
            );
            member.endpoint.stats.reset_failures();
            return;
        }
        let length = member.outlier.eject(now, settings);
        member.endpoint.stats.reset_failures();
        tracing::warn!(
            service = %self.service,
            endpoint = %member.endpoint,
            seconds = length.as_secs_f64(),
            "endpoint ejected after consecutive failures"
        );
        ctx.run_later(length, |pool, ctx| pool.tick(ctx));
        self.publish();
    }
}

impl Actor for UpstreamPool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        let interval = self.settings.health.interval;
        ctx.run_interval(interval, |pool, ctx| pool.tick(ctx));
    }
}

/// Replaces the pool's endpoint set.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct SetEndpoints {
    pub endpoints: Vec<EndpointSpec>,
    /// The health-check path discovery reported for this service, if any.
    pub health_path: Option<String>,
}

impl Handler<SetEndpoints> for UpstreamPool {
    type Result = ();

    fn handle(&mut self, update: SetEndpoints, ctx: &mut Self::Context) {
        self.apply_endpoints(update, ctx);
    }
}

/// An endpoint's failure streak reached the ejection threshold.
#[derive(Message)]
#[rtype(result = "()")]
struct EndpointFailing {
    address: String,
}

impl Handler<EndpointFailing> for UpstreamPool {
    type Result = ();

    fn handle(&mut self, message: EndpointFailing, ctx: &mut Self::Context) {
        self.eject(&message.address, ctx);
    }
}
