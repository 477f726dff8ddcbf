//! `UpstreamRegistry`: the actor that turns discovery results into one pool per service and
//! publishes the service → pool map that requests read.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use arc_swap::ArcSwap;

use crate::discovery::ServiceSet;
use crate::endpoint::Origin;
use crate::pool::{HealthProbe, SetEndpoints, UpstreamPool, UpstreamPoolHandle};
use crate::settings::ServiceSettings;

type PoolMap = HashMap<String, UpstreamPoolHandle>;

/// Read side of the registry: which services exist and their pools.
#[derive(Clone)]
pub struct UpstreamRegistryHandle {
    addr: Addr<UpstreamRegistry>,
    pools: Arc<ArcSwap<PoolMap>>,
    discovered: Arc<AtomicBool>,
    discovery_errors: Arc<AtomicU64>,
    degraded: Arc<AtomicBool>,
}

impl UpstreamRegistryHandle {
    /// True while the discovery back-end cannot be reached (or answers nonsense): the pools
    /// serve the last good set, or nothing if there never was one.
    pub fn discovery_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Marks discovery as degraded (its last call failed) or healthy again.
    pub fn set_discovery_degraded(&self, degraded: bool) {
        self.degraded.store(degraded, Ordering::Relaxed);
    }

    /// Discovery results rejected so far (broken files, unreachable back-ends).
    pub fn discovery_errors(&self) -> u64 {
        self.discovery_errors.load(Ordering::Relaxed)
    }

    pub fn note_discovery_error(&self) {
        self.discovery_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn pool(&self, service: &str) -> Option<UpstreamPoolHandle> {
        self.pools.load().get(service).cloned()
    }

    pub fn contains(&self, service: &str) -> bool {
        self.pools.load().contains_key(service)
    }

    /// Every service and its pool, sorted by name.
    pub fn pools(&self) -> Vec<(String, UpstreamPoolHandle)> {
        let mut pools: Vec<_> = self
            .pools
            .load()
            .iter()
            .map(|(name, pool)| (name.clone(), pool.clone()))
            .collect();
        pools.sort_by(|a, b| a.0.cmp(&b.0));
        pools
    }

    /// True once the first discovery result has been applied.
    pub fn has_discovered(&self) -> bool {
        self.discovered.load(Ordering::Acquire)
    }

    /// Applies one discovery result; waits until the pools have it.
    pub async fn apply(&self, origin: Origin, services: ServiceSet) -> Result<(), MailboxError> {
        self.addr.send(ApplyDiscovery { origin, services }).await
    }
}

/// Settings for services, by name, with defaults for services only discovery knows.
#[derive(Debug, Clone, Default)]
pub struct RegistrySettings {
    pub defaults: ServiceSettings,
    pub services: BTreeMap<String, ServiceSettings>,
}

impl RegistrySettings {
    fn for_service(&self, name: &str) -> ServiceSettings {
        self.services
            .get(name)
            .cloned()
            .unwrap_or_else(|| self.defaults.clone())
    }
}

pub struct UpstreamRegistry {
    settings: RegistrySettings,
    probe: Rc<dyn HealthProbe>,
    pools: PoolMap,
    /// Which origin last reported each service, so a back-end only removes what it added.
    origins: HashMap<String, Origin>,
    shared: Arc<ArcSwap<PoolMap>>,
    discovered: Arc<AtomicBool>,
}

impl UpstreamRegistry {
    /// Starts the registry on the current arbiter with an (empty) pool for every configured
    /// service, so configured model aliases resolve before discovery has run.
    pub fn start_registry(
        settings: RegistrySettings,
        probe: Rc<dyn HealthProbe>,
    ) -> UpstreamRegistryHandle {
        let mut pools = PoolMap::new();
        for (name, service_settings) in &settings.services {
            let pool = UpstreamPool::start_pool(name, service_settings.clone(), Rc::clone(&probe));
            pools.insert(name.clone(), pool);
        }
        let shared = Arc::new(ArcSwap::from_pointee(pools.clone()));
        let discovered = Arc::new(AtomicBool::new(false));
        let registry = UpstreamRegistry {
            settings,
            probe,
            pools,
            origins: HashMap::new(),
            shared: Arc::clone(&shared),
            discovered: Arc::clone(&discovered),
        };
        let addr = registry.start();
        UpstreamRegistryHandle {
            addr,
            pools: shared,
            discovered,
            discovery_errors: Arc::new(AtomicU64::new(0)),
            degraded: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Actor for UpstreamRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
    }
}

/// A discovery back-end's complete current view of its services.
#[derive(Message)]
#[rtype(result = "()")]
struct ApplyDiscovery {
    origin: Origin,
    services: ServiceSet,
}

impl Handler<ApplyDiscovery> for UpstreamRegistry {
    type Result = ();

    fn handle(&mut self, update: ApplyDiscovery, _: &mut Self::Context) {
        let ApplyDiscovery { origin, services } = update;
        // Services this origin reported before but not now lose their endpoints. The pool
        // stays, so requests for it get "no healthy endpoint" rather than "unknown model".
        let vanished: Vec<String> = self
            .origins
            .iter()
            .filter(|(name, o)| **o == origin && !services.contains_key(*name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in vanished {
            self.origins.remove(&name);
            if let Some(pool) = self.pools.get(&name) {
                let update = SetEndpoints {
                    endpoints: Vec::new(),
                    health_path: None,
                };
                if let Err(error) = pool.set_endpoints(update) {
                    tracing::warn!(service = %name, %error, "could not clear a vanished service");
                }
            }
        }
        let mut map_changed = false;
        for (name, service) in services {
            self.origins.insert(name.clone(), origin);
            let pool = self.pools.entry(name.clone()).or_insert_with(|| {
                map_changed = true;
                UpstreamPool::start_pool(
                    &name,
                    self.settings.for_service(&name),
                    Rc::clone(&self.probe),
                )
            });
            let update = SetEndpoints {
                endpoints: service.endpoints,
                health_path: service.health_path,
            };
            if let Err(error) = pool.set_endpoints(update) {
                tracing::warn!(service = %name, %error, "could not update endpoints");
            }
        }
        if map_changed {
            self.shared.store(Arc::new(self.pools.clone()));
        }
        self.discovered.store(true, Ordering::Release);
    }
}
