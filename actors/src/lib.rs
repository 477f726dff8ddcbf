//! The gateway's core: upstream pools, load balancing, health, discovery, model routing, rate
//! limits, budgets, usage and the store.
//!
//! Nothing in this crate knows HTTP status codes, headers or actix-web; it reads only the few
//! OpenAI request fields its own work needs ([`tokens`] for estimates, [`cache`] for keys).
//! Request handlers in the `gateway` crate read the snapshots published here and report
//! outcomes back through [`pool::UpstreamPoolHandle`].

pub mod balance;
pub mod budget;
pub mod cache;
pub mod discovery;
pub mod endpoint;
pub mod ewma;
pub mod health;
pub mod keys;
pub mod limits;
pub mod pool;
pub mod registry;
pub mod retry;
pub mod routing;
pub mod settings;
pub mod shared;
pub mod store;
pub mod tokens;
pub mod usage;
pub mod users;

pub use endpoint::{Endpoint, EndpointSpec, Origin, Protocol};
pub use pool::{PoolSnapshot, UpstreamPool, UpstreamPoolHandle};
pub use registry::{UpstreamRegistry, UpstreamRegistryHandle};
pub use settings::{BalanceStrategy, HealthCheckSettings, OutlierSettings, ServiceSettings};
