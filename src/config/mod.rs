//! Configuration: built-in defaults → `config/default.toml` → `config/<env>.toml` →
//! environment, validated into [`Config`] with every error named by its path.
//!
//! One job per file: [`raw`] is what files and the environment may say, `env.rs` the one
//! place where operator variable names map to keys (`secret_files.rs` first turns
//! `<NAME>_FILE` secrets into plain variables), `load.rs` the layering, `validate/` the
//! checks (one function per section) and `runtime.rs` the types the gateway runs with.

mod env;
mod load;
pub mod raw;
mod runtime;
mod secret_files;
mod validate;

pub use load::{load_raw, ConfigSource};
pub use raw::{DiscoveryType, LogFormat, RawConfig};
pub use runtime::{
    AuthConfig, CacheConfig, Config, ConfigError, ConsulConfig, ConsulSelection, DashboardConfig,
    DatabaseConfig, DiscoveryBackend, DiscoveryConfig, GraphqlConfig, KubernetesConfig,
    RateLimitConfig, ServerConfig, TlsConfig, UsageConfig, WebSocketConfig,
};
pub use validate::{parse_duration, validate, weak_secret};

#[cfg(test)]
mod tests;
