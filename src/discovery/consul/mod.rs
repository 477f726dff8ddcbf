//! Consul discovery: one blocking-query loop per watched service (and one on the catalog when
//! services are chosen by tag), multiplexed in one back-end so each answer yields the complete
//! service set the watcher expects. Also the gateway's optional self-registration.
//!
//! Instances come from `GET /v1/health/service/<name>?passing=true`: address (the service's,
//! else the node's), port, weight (`Meta.weight`, else `Weights.Passing`), protocol (`grpc`
//! from `Meta.protocol` or a `grpc` tag; a `Meta.grpc_port` is the second port of an HTTP
//! instance, used when gRPC is preferred) and health path (`Meta.health_check`).

mod api;

use std::collections::BTreeMap;
use std::time::Duration;

use actors::discovery::backoff::{Backoff, BlockingIndex};
use actors::discovery::{DiscoveredService, DiscoveryError, ServiceDiscovery, ServiceSet};
use actors::{Origin, Protocol};
use futures_util::future::LocalBoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;

pub use api::{parse_catalog, parse_health, ConsulClient, ConsulRegistration};

use crate::config::{ConsulConfig, ConsulSelection};

/// What one blocking query watches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Watched {
    Catalog,
    Service(String),
}

impl Watched {
    fn path(&self) -> String {
        match self {
            Watched::Catalog => "/v1/catalog/services".into(),
            Watched::Service(name) => format!("/v1/health/service/{name}?passing=true"),
        }
    }
}

/// One blocking-query loop's state.
struct Watch {
    index: BlockingIndex,
    backoff: Backoff,
    /// The last good answer (services only); `None` until the first one.
    service: Option<DiscoveredService>,
    failing: bool,
}

type Answer = (Watched, Result<(u64, bytes::Bytes), String>);

/// The Consul back-end. `discover` returns after every answer that changes the set (and after
/// recovering from an error), keeping every other query in flight.
pub struct ConsulDiscovery {
    client: ConsulClient,
    selection: ConsulSelection,
    wait: Duration,
    min_query_interval: Duration,
    retry: (Duration, Duration),
    preferred: Protocol,
    watches: BTreeMap<Watched, Watch>,
    in_flight: FuturesUnordered<LocalBoxFuture<'static, Answer>>,
}

impl ConsulDiscovery {
    pub fn new(config: &ConsulConfig, preferred: Protocol) -> Self {
        let mut discovery = ConsulDiscovery {
            client: ConsulClient::new(config),
            selection: config.selection.clone(),
            wait: config.wait,
            min_query_interval: config.min_query_interval,
            retry: (config.retry_base, config.retry_max),
            preferred,
            watches: BTreeMap::new(),
            in_flight: FuturesUnordered::new(),
        };
        let first: Vec<Watched> = match &config.selection {
            ConsulSelection::Tag(_) => vec![Watched::Catalog],
            ConsulSelection::Services(names) => {
                names.iter().cloned().map(Watched::Service).collect()
            }
        };
        for watched in first {
            discovery.start_watch(watched);
        }
        discovery
    }

    fn start_watch(&mut self, watched: Watched) {
        self.watches.insert(
            watched.clone(),
            Watch {
                index: BlockingIndex::default(),
                backoff: Backoff::new(self.retry.0, self.retry.1),
                service: None,
                failing: false,
            },
        );
        self.query(watched, Duration::ZERO);
    }

    /// Starts the next query of `watched` after `delay`.
    fn query(&mut self, watched: Watched, delay: Duration) {
        let Some(watch) = self.watches.get(&watched) else {
            return;
        };
        let client = self.client.clone();
        let index = watch.index.current();
        let wait = self.wait;
        self.in_flight.push(Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let result = client.blocking_get(&watched.path(), index, wait).await;
            (watched, result)
        }));
    }

    /// True once every watched service has answered at least once.
    pub fn complete(&self) -> bool {
        self.watches.iter().all(|(watched, watch)| match watched {
            Watched::Catalog => watch.index.current() > 0,
            Watched::Service(_) => watch.service.is_some(),
        })
    }

    /// The first complete set, for start-up: fails on the first error.
    pub async fn initial(&mut self) -> Result<ServiceSet, DiscoveryError> {
        loop {
            let set = self.next_change().await?;
            if self.complete() {
                return Ok(set);
            }
        }
    }

    fn current(&self) -> ServiceSet {
        self.watches
            .iter()
            .filter_map(|(watched, watch)| match (watched, &watch.service) {
                (Watched::Service(name), Some(service)) => Some((name.clone(), service.clone())),
                _ => None,
            })
            .collect()
    }

    async fn next_change(&mut self) -> Result<ServiceSet, DiscoveryError> {
        loop {
            let Some((watched, result)) = self.in_flight.next().await else {
                // Nothing watched (a tag no service carries yet is still a catalog watch, so
                // this only happens with an empty list, which validation refuses).
                return Ok(self.current());
            };
            let Some(watch) = self.watches.get_mut(&watched) else {
                // A service that left the catalog: its last query ends here.
                continue;
            };
            match result {
                Err(message) => {
                    let delay = watch.backoff.next_delay(&mut rand::rng());
                    watch.failing = true;
                    tracing::debug!(
                        ?watched,
                        retry_in_ms = delay.as_millis() as u64,
                        "consul query failed"
                    );
                    self.query(watched, delay);
                    return Err(DiscoveryError::Unreachable {
                        backend: "consul",
                        message,
                    });
                }
                Ok((index, body)) => {
                    let step = watch.index.observe(index);
                    watch.backoff.reset();
                    let recovered = std::mem::take(&mut watch.failing);
                    let delay = if step.rate_limit {
                        self.min_query_interval
                    } else {
                        Duration::ZERO
                    };
                    let changed = if step.changed {
                        match self.absorb(&watched, &body) {
                            Ok(changed) => changed,
                            Err(message) => {
                                // A body Consul should never send: read it again later.
                                if let Some(watch) = self.watches.get_mut(&watched) {
                                    watch.index.reset();
                                    watch.failing = true;
                                }
                                self.query(watched.clone(), self.min_query_interval);
                                return Err(DiscoveryError::Invalid {
                                    path: format!("consul {}", watched.path()),
                                    message,
                                });
                            }
                        }
                    } else {
                        false
                    };
                    self.query(watched, delay);
                    if changed || recovered {
                        return Ok(self.current());
                    }
                }
            }
        }
    }

    /// Applies a changed answer; returns true when the service set may differ.
    fn absorb(&mut self, watched: &Watched, body: &[u8]) -> Result<bool, String> {
        match watched {
            Watched::Service(_) => {
                let service = parse_health(body, self.preferred)?;
                let Some(watch) = self.watches.get_mut(watched) else {
                    return Ok(false);
                };
                let changed = watch.service.as_ref() != Some(&service);
                watch.service = Some(service);
                Ok(changed)
            }
            Watched::Catalog => {
                let ConsulSelection::Tag(tag) = &self.selection else {
                    return Ok(false);
                };
                let names = parse_catalog(body, tag)?;
                let gone: Vec<Watched> = self
                    .watches
                    .keys()
                    .filter(|w| matches!(w, Watched::Service(n) if !names.contains(n)))
                    .cloned()
                    .collect();
                let changed = !gone.is_empty();
                for watched in gone {
                    tracing::info!(?watched, "consul service no longer carries the tag");
                    self.watches.remove(&watched);
                }
                for name in names {
                    let watched = Watched::Service(name);
                    if !self.watches.contains_key(&watched) {
                        tracing::info!(?watched, "consul service found by tag");
                        self.start_watch(watched);
                    }
                }
                Ok(changed)
            }
        }
    }
}

impl ServiceDiscovery for ConsulDiscovery {
    fn origin(&self) -> Origin {
        Origin::Consul
    }

    fn discover(&mut self) -> LocalBoxFuture<'_, Result<ServiceSet, DiscoveryError>> {
        Box::pin(self.next_change())
    }

    /// The queries pace themselves (blocking, rate limit, back-off), so the watcher does not.
    fn interval(&self) -> Duration {
        Duration::ZERO
    }
}
