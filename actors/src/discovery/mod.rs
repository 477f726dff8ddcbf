//! Service discovery: back-ends that report services and their endpoints, and the watcher actor
//! that feeds what they report into the registry.
//!
//! A back-end implements [`ServiceDiscovery`]; it never touches pools. Static files (here),
//! Consul and Kubernetes (in the gateway crate, which knows HTTP) all go through
//! [`DiscoveryWatcher`]. [`backoff`] holds the pure retry and blocking-query arithmetic the
//! remote back-ends share.

pub mod backoff;
pub mod static_file;

use std::collections::BTreeMap;
use std::time::Duration;

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;

use crate::endpoint::{EndpointSpec, Origin};
use crate::registry::UpstreamRegistryHandle;

/// One service as a back-end reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredService {
    pub endpoints: Vec<EndpointSpec>,
    pub health_path: Option<String>,
}

/// A back-end's complete view: service name → service.
pub type ServiceSet = BTreeMap<String, DiscoveredService>;

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    /// A remote back-end could not be reached or failed to answer; the last set stays.
    #[error("{backend} is unreachable: {message}")]
    Unreachable {
        backend: &'static str,
        message: String,
    },
}

/// A source of services. `discover` returns the complete current set; a back-end with
/// blocking queries or watch streams may wait inside it until something changes.
pub trait ServiceDiscovery: 'static {
    fn origin(&self) -> Origin;

    fn discover(&mut self) -> LocalBoxFuture<'_, Result<ServiceSet, DiscoveryError>>;

    /// Pause between two calls of `discover`.
    fn interval(&self) -> Duration;
}

/// Calls a back-end in a loop and hands changed results to the registry. A failed call keeps
/// the last good set, so a broken file or an unreachable back-end never empties a pool.
pub struct DiscoveryWatcher {
    backend: Option<Box<dyn ServiceDiscovery>>,
    registry: UpstreamRegistryHandle,
    last: Option<ServiceSet>,
}

impl DiscoveryWatcher {
    /// `last` is the set already applied at start-up, if any.
    pub fn start_watcher(
        backend: Box<dyn ServiceDiscovery>,
        registry: UpstreamRegistryHandle,
        last: Option<ServiceSet>,
    ) -> Addr<DiscoveryWatcher> {
        DiscoveryWatcher {
            backend: Some(backend),
            registry,
            last,
        }
        .start()
    }

    fn recovered(&self, origin: Origin) {
        if self.registry.discovery_degraded() {
            tracing::info!(
                origin = origin.as_str(),
                "discovery answers again; no longer degraded"
            );
            self.registry.set_discovery_degraded(false);
        }
    }

    fn schedule(&mut self, ctx: &mut Context<Self>, delay: Duration) {
        ctx.run_later(delay, |watcher, ctx| watcher.poll(ctx));
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        let Some(mut backend) = self.backend.take() else {
            return;
        };
        let registry = self.registry.clone();
        let last = self.last.clone();
        let work = async move {
            let origin = backend.origin();
            let outcome = match backend.discover().await {
                Ok(set) if Some(&set) == last.as_ref() => Ok(None),
                Ok(set) => match registry.apply(origin, set.clone()).await {
                    Ok(()) => Ok(Some(set)),
                    Err(error) => Err(format!("registry unavailable: {error}")),
                },
                Err(error) => Err(error.to_string()),
            };
            (backend, outcome)
        };
        ctx.spawn(
            work.into_actor(self)
                .map(|(backend, outcome), watcher, ctx| {
                    let interval = backend.interval();
                    let origin = backend.origin();
                    watcher.backend = Some(backend);
                    match outcome {
                        Ok(Some(set)) => {
                            tracing::info!(origin = origin.as_str(), services = set.len(), "discovery applied a new service set");
                            watcher.last = Some(set);
                            watcher.recovered(origin);
                        }
                        Ok(None) => watcher.recovered(origin),
                        Err(error) => {
                            watcher.registry.note_discovery_error();
                            watcher.registry.set_discovery_degraded(true);
                            tracing::warn!(origin = origin.as_str(), %error, "discovery failed; keeping the last good service set");
                        }
                    }
                    watcher.schedule(ctx, interval);
                }),
        );
    }
}

impl Actor for DiscoveryWatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let interval = self
            .backend
            .as_ref()
            .map_or(Duration::from_secs(1), |b| b.interval());
        self.schedule(ctx, interval);
    }
}
