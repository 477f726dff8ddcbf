//! The validated configuration the gateway runs with: plain runtime types, built only by
//! [`super::validate`], plus the masked rendering `check-config` prints.

use std::path::PathBuf;
use std::time::Duration;

use actors::registry::RegistrySettings;
use actors::routing::ModelAlias;
use actors::store::DatabaseTarget;
use actors::Protocol;

use super::raw::{LogFormat, RawConfig};

/// Every problem found, each as `path: message`.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub bind: String,
    pub workers: usize,
    pub max_body_bytes: usize,
    pub max_response_bytes: usize,
    pub shutdown_timeout: Duration,
    pub keep_alive: Duration,
    pub request_body_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    pub static_file: PathBuf,
    pub poll_interval: Duration,
    /// How instances with both an HTTP `port` and a `grpc_port` are reached.
    pub preferred_protocol: Protocol,
    /// Which back-end feeds the pools.
    pub backend: DiscoveryBackend,
    /// `DISCOVERY_REQUIRED`: an unreachable back-end at start-up stops start-up (true) or
    /// starts the gateway degraded (false).
    pub required: bool,
}

#[derive(Debug, Clone)]
pub enum DiscoveryBackend {
    /// The file in `static_file`, polled every `poll_interval`.
    Static,
    Consul(ConsulConfig),
    Kubernetes(KubernetesConfig),
}

/// Which Consul services are watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsulSelection {
    Services(Vec<String>),
    /// Every service carrying the tag, found with a blocking query on `/v1/catalog/services`.
    Tag(String),
}

#[derive(Clone)]
pub struct ConsulConfig {
    /// `http://host:port`.
    pub base_url: String,
    pub token: Option<String>,
    pub datacenter: Option<String>,
    pub selection: ConsulSelection,
    pub wait: Duration,
    pub min_query_interval: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Self-registration: the service name and the address to register (bind address or
    /// `$HOSTNAME` when unset).
    pub register: Option<(String, Option<String>)>,
}

impl std::fmt::Debug for ConsulConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulConfig")
            .field("base_url", &self.base_url)
            .field("token", &self.token.as_ref().map(|_| "********"))
            .field("datacenter", &self.datacenter)
            .field("selection", &self.selection)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    pub namespace: String,
    /// The EndpointSlice label selector: the configured label, or
    /// `kubernetes.io/service-name in (…)` for a configured list of services.
    pub label_selector: String,
    pub api_url: Option<String>,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

/// The validated configuration the gateway runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub env: String,
    pub server: ServerConfig,
    pub tls: Option<TlsConfig>,
    pub gzip: bool,
    /// `None` when CORS is off.
    pub cors_allowed_origins: Option<Vec<String>>,
    pub metrics: bool,
    /// Where Prometheus scrapes (`METRICS_BIND`), when `metrics` is on.
    pub metrics_bind: String,
    /// Proxies whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`).
    pub trusted_proxies: crate::client_ip::TrustedProxies,
    pub protocol_conversion: bool,
    pub log_format: LogFormat,
    pub log_level: String,
    /// `None` when discovery is off: only configured services exist, without endpoints.
    pub discovery: Option<DiscoveryConfig>,
    pub registry: RegistrySettings,
    pub models: Vec<ModelAlias>,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub usage: UsageConfig,
    pub websocket: WebSocketConfig,
    pub graphql: GraphqlConfig,
    pub rate_limit: RateLimitConfig,
    /// `None` when `CACHE_ENABLED=false`.
    pub cache: Option<CacheConfig>,
    pub dashboard: DashboardConfig,
    /// The merged raw layers, for `check-config`.
    pub raw: RawConfig,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub target: DatabaseTarget,
    pub auto_migrate: bool,
    pub max_connections: usize,
}

#[derive(Clone)]
pub struct AuthConfig {
    pub enabled: bool,
    pub jwt_secret: String,
    /// True when no secret was configured and a random one was made (development only):
    /// tokens then die with the process.
    pub jwt_secret_generated: bool,
    pub jwt_expiry: Duration,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub key_cache_ttl: Duration,
    pub user_cache_ttl: Duration,
    pub max_failures_per_minute: u64,
    pub login_max_concurrent: usize,
    pub login_wait: Duration,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("enabled", &self.enabled)
            .field("jwt_secret", &"********")
            .field("jwt_expiry", &self.jwt_expiry)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct UsageConfig {
    pub settings: actors::usage::UsageSettings,
    pub default_max_tokens: i64,
    pub max_tokens_cap: i64,
}

/// Limits of one WebSocket connection, and the caps on sessions and tickets.
#[derive(Debug, Clone)]
pub struct WebSocketConfig {
    pub max_message_bytes: usize,
    pub max_concurrent_requests: usize,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub outbound_queue: usize,
    pub ticket_ttl: Duration,
    pub max_session_lifetime: Duration,
    pub credential_check_interval: Duration,
    pub max_sessions: usize,
    pub max_sessions_per_key: usize,
    pub max_tickets: usize,
    pub max_tickets_per_key: usize,
    pub tickets_per_minute: u64,
}

#[derive(Debug, Clone)]
pub struct GraphqlConfig {
    pub enabled: bool,
    pub playground: bool,
    pub introspection: bool,
    pub max_depth: usize,
    pub max_complexity: usize,
}

/// The web dashboard's build. GraphiQL (`dir/graphiql.html`) is served at `GET /graphql`
/// whenever the playground is on, even with the dashboard itself off.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    pub enabled: bool,
    pub dir: std::path::PathBuf,
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub ttl: Duration,
    pub max_bytes: u64,
}

/// Rate limits. `None` fields are unlimited.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub requests_per_minute: u64,
    pub burst: u64,
    pub tokens_per_minute: Option<u64>,
    pub login_requests_per_minute: u64,
    pub max_buckets: usize,
    /// `Some` when limits are shared through Redis.
    pub redis: Option<actors::shared::SharedSettings>,
}

impl Config {
    /// The effective configuration as TOML with secrets masked.
    pub fn render_masked(&self) -> String {
        let mut raw = self.raw.clone();
        for service in std::iter::once(&mut raw.upstream_defaults).chain(raw.services.values_mut())
        {
            if service.api_key.is_some() {
                service.api_key = Some("********".into());
            }
        }
        if raw.auth.jwt_secret.is_some() {
            raw.auth.jwt_secret = Some("********".into());
        }
        if raw.discovery.consul.token.is_some() {
            raw.discovery.consul.token = Some("********".into());
        }
        if raw.redis.url.is_some() {
            raw.redis.url = Some("********".into());
        }
        if let Some(url) = &raw.database.url {
            raw.database.url = Some(
                DatabaseTarget::parse(Some(url))
                    .map_or_else(|_| url.clone(), |t| t.display_masked()),
            );
        }
        toml::to_string_pretty(&raw).unwrap_or_else(|error| format!("# cannot render: {error}\n"))
    }
}
