//! Configuration: built-in defaults → `config/default.toml` → `config/<env>.toml` →
//! environment, validated into [`Config`] with every error named by its path.

mod env;
pub mod raw;
mod secret_files;

use std::path::{Path, PathBuf};
use std::time::Duration;

use actors::registry::RegistrySettings;
use actors::routing::ModelAlias;
use actors::store::DatabaseTarget;
use actors::{BalanceStrategy, HealthCheckSettings, OutlierSettings, Protocol, ServiceSettings};
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;

pub use raw::{DiscoveryType, LogFormat, RawConfig};
use raw::{RawServiceSettings, RawStrategy};

/// Where to look for configuration files, and which environment to layer on top.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub dir: PathBuf,
    /// `GATEWAY_ENV`: selects `config/<env>.toml`.
    pub env: String,
}

impl ConfigSource {
    pub fn from_env(dir: Option<PathBuf>) -> Self {
        ConfigSource {
            dir: dir
                .or_else(|| std::env::var_os("GATEWAY_CONFIG_DIR").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("config")),
            env: std::env::var("GATEWAY_ENV").unwrap_or_else(|_| "development".into()),
        }
    }
}

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
}

/// Limits of one WebSocket connection.
#[derive(Debug, Clone)]
pub struct WebSocketConfig {
    pub max_message_bytes: usize,
    pub max_concurrent_requests: usize,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub outbound_queue: usize,
    pub ticket_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct GraphqlConfig {
    pub enabled: bool,
    pub playground: bool,
    pub introspection: bool,
    pub max_depth: usize,
    pub max_complexity: usize,
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
    pub redis: Option<actors::limits::SharedSettings>,
}

/// Parses `24h`, `30m`, `45s` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let value: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => value,
        "m" => value.checked_mul(60)?,
        "h" => value.checked_mul(3600)?,
        "d" => value.checked_mul(86_400)?,
        _ => return None,
    };
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// Why a JWT secret is unfit for production, if it is.
pub fn weak_secret(secret: &str) -> Option<&'static str> {
    let lower = secret.to_ascii_lowercase();
    if secret.len() < 32 {
        return Some("it is shorter than 32 bytes");
    }
    if [
        "change", "secret", "default", "example", "password", "your-", "dev-", "test",
    ]
    .iter()
    .any(|word| lower.contains(word))
    {
        return Some("it looks like a placeholder");
    }
    let distinct: std::collections::HashSet<char> = secret.chars().collect();
    if distinct.len() < 8 {
        return Some("it has too few distinct characters");
    }
    None
}

/// A development-only secret: 32 random bytes, gone with the process.
fn random_secret() -> String {
    actors::store::keys::generate_secret().0
}

impl Config {
    /// Loads and validates every layer.
    pub fn load(source: &ConfigSource) -> Result<Config, ConfigError> {
        let raw = load_raw(source, env::environment_layer(std::env::vars()))?;
        validate(raw, &source.env)
    }

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

/// Merges the layers without validating them.
pub fn load_raw(source: &ConfigSource, environment: Figment) -> Result<RawConfig, ConfigError> {
    let file = |name: &str| {
        let path = source.dir.join(name);
        path.exists().then(|| Toml::file_exact(path))
    };
    let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
    if let Some(default) = file("default.toml") {
        figment = figment.merge(default);
    }
    if let Some(env_file) = file(&format!("{}.toml", source.env)) {
        figment = figment.merge(env_file);
    }
    figment
        .merge(environment)
        .extract::<RawConfig>()
        .map_err(|error| ConfigError(error.into_iter().map(|e| describe(&e)).collect()))
}

fn describe(error: &figment::Error) -> String {
    let path = error.path.join(".");
    let origin = error
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(source) => format!(" (from {source})"),
            None => format!(" (from {})", m.name),
        })
        .unwrap_or_default();
    if path.is_empty() {
        format!("{}{origin}", error.kind)
    } else {
        format!("{path}: {}{origin}", error.kind)
    }
}

/// Checks a merged configuration and builds the runtime form.
pub fn validate(raw: RawConfig, env: &str) -> Result<Config, ConfigError> {
    let mut errors = Vec::new();
    let server = &raw.server;
    if server.bind.parse::<std::net::SocketAddr>().is_err() && !server.bind.contains(':') {
        errors.push(format!("server.bind: {:?} is not host:port", server.bind));
    }
    if server.max_body_bytes == 0 {
        errors.push("server.max_body_bytes: must be positive".into());
    }
    let tls = if raw.tls.enabled {
        match (&raw.tls.cert_file, &raw.tls.key_file) {
            (Some(cert), Some(key)) => {
                for (name, path) in [("tls.cert_file", cert), ("tls.key_file", key)] {
                    if !Path::new(path).is_file() {
                        errors.push(format!("{name}: {path:?} does not exist"));
                    }
                }
                Some(TlsConfig {
                    cert_file: cert.into(),
                    key_file: key.into(),
                })
            }
            _ => {
                errors.push(
                    "tls: cert_file and key_file are required when tls.enabled = true".into(),
                );
                None
            }
        }
    } else {
        None
    };
    let discovery = if raw.discovery.enabled {
        let backend = match raw.discovery.kind {
            DiscoveryType::Static => DiscoveryBackend::Static,
            DiscoveryType::Consul => {
                DiscoveryBackend::Consul(consul_config(&raw.discovery.consul, &mut errors))
            }
            DiscoveryType::Kubernetes => DiscoveryBackend::Kubernetes(kubernetes_config(
                &raw.discovery.kubernetes,
                &mut errors,
            )),
        };
        Some(DiscoveryConfig {
            static_file: raw.discovery.static_file.clone().into(),
            poll_interval: Duration::from_millis(raw.discovery.poll_interval_ms.max(50)),
            preferred_protocol: if raw.protocol_conversion.enabled
                && raw.protocol_conversion.http_to_grpc
            {
                Protocol::Grpc
            } else {
                Protocol::Http
            },
            backend,
            required: raw.discovery.required,
        })
    } else {
        None
    };
    if let Err(error) = tracing_subscriber::EnvFilter::try_new(&raw.logging.level) {
        errors.push(format!("logging.level: {error}"));
    }

    let defaults = service_settings(
        &ServiceSettings::default(),
        &raw.upstream_defaults,
        "upstream_defaults",
        &mut errors,
    );
    let mut services = std::collections::BTreeMap::new();
    for (name, overrides) in &raw.services {
        if name.is_empty() || name.contains('/') {
            errors.push(format!(
                "services.{name}: a service name must be non-empty without '/'"
            ));
        }
        let settings = service_settings(
            &defaults,
            overrides,
            &format!("services.{name}"),
            &mut errors,
        );
        services.insert(name.clone(), settings);
    }
    let mut models = Vec::new();
    for (i, model) in raw.models.iter().enumerate() {
        if model.name.is_empty() || model.service.is_empty() || model.upstream_model.is_empty() {
            errors.push(format!(
                "models[{i}]: name, service and upstream_model must be non-empty"
            ));
        }
        if raw.models[..i].iter().any(|m| m.name == model.name) {
            errors.push(format!(
                "models[{i}].name: {:?} is defined twice",
                model.name
            ));
        }
        models.push(ModelAlias {
            name: model.name.clone(),
            service: model.service.clone(),
            upstream_model: model.upstream_model.clone(),
        });
    }
    let database = match DatabaseTarget::parse(raw.database.url.as_deref()) {
        Ok(target) => Some(DatabaseConfig {
            target,
            auto_migrate: raw.database.auto_migrate,
            max_connections: raw.database.max_connections.max(1),
        }),
        Err(error) => {
            errors.push(format!("database.url: {error}"));
            None
        }
    };
    let production = env == "production";
    let (jwt_secret, jwt_secret_generated) = match raw
        .auth
        .jwt_secret
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        Some(secret) => {
            if production {
                if let Some(reason) = weak_secret(secret) {
                    errors.push(format!("auth.jwt_secret (JWT_SECRET): refusing to run in production because {reason}"));
                }
            }
            (secret.to_string(), false)
        }
        None if production => {
            errors.push(
                "auth.jwt_secret (JWT_SECRET): required in production (at least 32 random bytes)"
                    .into(),
            );
            (String::new(), false)
        }
        None => (random_secret(), true),
    };
    let jwt_expiry = parse_duration(&raw.auth.jwt_expiry).unwrap_or_else(|| {
        errors.push(format!(
            "auth.jwt_expiry: {:?} is not a duration like 24h, 30m or 3600s",
            raw.auth.jwt_expiry
        ));
        Duration::from_secs(86_400)
    });
    if raw.usage.batch_size == 0 || raw.usage.buffer_capacity == 0 {
        errors.push("usage: batch_size and buffer_capacity must be positive".into());
    }
    if raw.usage.default_max_tokens < 0 {
        errors.push("usage.default_max_tokens: must not be negative".into());
    }
    let websocket = websocket_config(&raw.websocket, &mut errors);
    let graphql = GraphqlConfig {
        enabled: raw.graphql.enabled,
        playground: raw.graphql.playground,
        introspection: raw.graphql.introspection.unwrap_or(!production),
        max_depth: raw.graphql.max_depth,
        max_complexity: raw.graphql.max_complexity,
    };
    if graphql.max_depth < 2 || graphql.max_complexity == 0 {
        errors.push("graphql: max_depth must be at least 2 and max_complexity positive".into());
    }
    let rate_limit = rate_limit(&raw, &mut errors);
    if raw.cache.ttl_secs == 0 || raw.cache.max_bytes == 0 {
        errors.push("cache: ttl_secs and max_bytes must be positive".into());
    }
    let cache = raw.cache.enabled.then(|| CacheConfig {
        ttl: Duration::from_secs(raw.cache.ttl_secs),
        max_bytes: raw.cache.max_bytes,
    });
    let (Some(database), true) = (database, errors.is_empty()) else {
        return Err(ConfigError(errors));
    };
    let auth = AuthConfig {
        enabled: raw.auth.enabled,
        jwt_secret,
        jwt_secret_generated,
        jwt_expiry,
        jwt_issuer: raw.auth.jwt_issuer.clone(),
        jwt_audience: raw.auth.jwt_audience.clone(),
        key_cache_ttl: Duration::from_secs(raw.auth.key_cache_ttl_secs),
    };
    let usage = UsageConfig {
        settings: actors::usage::UsageSettings {
            batch_size: raw.usage.batch_size,
            flush_interval: Duration::from_millis(raw.usage.flush_interval_ms.max(10)),
            capacity: raw.usage.buffer_capacity,
            ..actors::usage::UsageSettings::default()
        },
        default_max_tokens: raw.usage.default_max_tokens,
    };
    Ok(Config {
        websocket,
        graphql,
        database,
        auth,
        usage,
        rate_limit,
        cache,
        env: env.to_string(),
        server: ServerConfig {
            bind: server.bind.clone(),
            workers: server.workers,
            max_body_bytes: server.max_body_bytes,
            max_response_bytes: server.max_response_bytes,
            shutdown_timeout: Duration::from_secs(server.shutdown_timeout_secs),
            keep_alive: Duration::from_secs(server.keep_alive_secs),
        },
        tls,
        gzip: raw.gzip.enabled,
        cors_allowed_origins: raw.cors.enabled.then(|| raw.cors.allowed_origins.clone()),
        metrics: raw.monitoring.enabled && raw.monitoring.prometheus_enabled,
        protocol_conversion: raw.protocol_conversion.enabled,
        log_format: raw.logging.format,
        log_level: raw.logging.level.clone(),
        discovery,
        registry: RegistrySettings { defaults, services },
        models,
        raw,
    })
}

fn websocket_config(raw: &raw::RawWebSocket, errors: &mut Vec<String>) -> WebSocketConfig {
    let config = WebSocketConfig {
        max_message_bytes: raw.max_message_bytes,
        max_concurrent_requests: raw.max_concurrent_requests,
        ping_interval: Duration::from_millis(raw.ping_interval_ms),
        idle_timeout: Duration::from_millis(raw.idle_timeout_ms),
        outbound_queue: raw.outbound_queue,
        ticket_ttl: Duration::from_secs(raw.ticket_ttl_secs),
    };
    for (field, value) in [
        ("max_message_bytes", config.max_message_bytes),
        ("max_concurrent_requests", config.max_concurrent_requests),
        ("outbound_queue", config.outbound_queue),
    ] {
        if value == 0 {
            errors.push(format!("websocket.{field}: must be positive"));
        }
    }
    if config.ping_interval.is_zero() || config.ping_interval >= config.idle_timeout {
        errors.push(
            "websocket.ping_interval_ms: must be positive and shorter than idle_timeout_ms".into(),
        );
    }
    if config.ticket_ttl.is_zero() || config.ticket_ttl > Duration::from_secs(300) {
        errors.push("websocket.ticket_ttl_secs: must be 1 to 300 (tickets are short-lived)".into());
    }
    config
}

fn consul_config(raw: &raw::RawConsul, errors: &mut Vec<String>) -> ConsulConfig {
    let addr = raw.addr.trim();
    let base_url = if let Some(rest) = addr.strip_prefix("http://") {
        format!("http://{}", rest.trim_end_matches('/'))
    } else if addr.starts_with("https://") {
        errors.push(format!(
            "discovery.consul.addr (CONSUL_ADDR): {addr:?}: https is not supported; talk to the local agent over http"
        ));
        String::new()
    } else {
        format!("http://{}", addr.trim_end_matches('/'))
    };
    let authority = base_url.trim_start_matches("http://");
    if authority.is_empty() || authority.contains('/') || authority.contains(char::is_whitespace) {
        errors.push(format!(
            "discovery.consul.addr (CONSUL_ADDR): {addr:?} is not host:port or http://host:port"
        ));
    }
    let selection = if raw.services.is_empty() {
        if raw.tag.trim().is_empty() {
            errors.push(
                "discovery.consul: give services (CONSUL_SERVICES) or a tag (CONSUL_TAG)".into(),
            );
        }
        ConsulSelection::Tag(raw.tag.trim().to_string())
    } else {
        ConsulSelection::Services(raw.services.clone())
    };
    if raw.wait_secs == 0 || raw.wait_secs > 600 {
        errors.push("discovery.consul.wait_secs: must be between 1 and 600".into());
    }
    if raw.retry_base_ms == 0 || raw.retry_base_ms > raw.retry_max_ms {
        errors.push(
            "discovery.consul.retry_base_ms: must be positive and at most retry_max_ms".into(),
        );
    }
    if raw.register && raw.register_name.trim().is_empty() {
        errors.push("discovery.consul.register_name: must not be empty".into());
    }
    ConsulConfig {
        base_url,
        token: raw.token.clone().filter(|t| !t.is_empty()),
        datacenter: raw.datacenter.clone().filter(|d| !d.is_empty()),
        selection,
        wait: Duration::from_secs(raw.wait_secs),
        min_query_interval: Duration::from_millis(raw.min_query_interval_ms),
        retry_base: Duration::from_millis(raw.retry_base_ms),
        retry_max: Duration::from_millis(raw.retry_max_ms),
        register: raw
            .register
            .then(|| (raw.register_name.clone(), raw.register_address.clone())),
    }
}

fn kubernetes_config(raw: &raw::RawKubernetes, errors: &mut Vec<String>) -> KubernetesConfig {
    let valid_name = |name: &str| {
        !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if !valid_name(&raw.namespace) {
        errors.push(format!(
            "discovery.kubernetes.namespace (K8S_NAMESPACE): {:?} is not a namespace name",
            raw.namespace
        ));
    }
    let label_selector = if raw.services.is_empty() {
        if raw.label_selector.trim().is_empty() {
            errors.push("discovery.kubernetes: give services (K8S_SERVICES) or a label_selector (K8S_LABEL_SELECTOR)".into());
        }
        raw.label_selector.trim().to_string()
    } else {
        if let Some(bad) = raw.services.iter().find(|s| !valid_name(s)) {
            errors.push(format!(
                "discovery.kubernetes.services (K8S_SERVICES): {bad:?} is not a service name"
            ));
        }
        format!("kubernetes.io/service-name in ({})", raw.services.join(","))
    };
    if let Some(url) = &raw.api_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            errors.push(format!(
                "discovery.kubernetes.api_url (K8S_API_URL): {url:?} must start with http:// or https://"
            ));
        }
    }
    if raw.retry_base_ms == 0 || raw.retry_base_ms > raw.retry_max_ms {
        errors.push(
            "discovery.kubernetes.retry_base_ms: must be positive and at most retry_max_ms".into(),
        );
    }
    KubernetesConfig {
        namespace: raw.namespace.clone(),
        label_selector,
        api_url: raw.api_url.clone(),
        retry_base: Duration::from_millis(raw.retry_base_ms),
        retry_max: Duration::from_millis(raw.retry_max_ms),
    }
}

fn rate_limit(raw: &RawConfig, errors: &mut Vec<String>) -> RateLimitConfig {
    let limits = &raw.rate_limit;
    for (field, value) in [
        ("requests_per_minute", limits.requests_per_minute),
        ("burst", limits.burst),
        (
            "login_requests_per_minute",
            limits.login_requests_per_minute,
        ),
    ] {
        if value == 0 {
            errors.push(format!("rate_limit.{field}: must be positive"));
        }
    }
    if limits.tokens_per_minute == Some(0) {
        errors.push(
            "rate_limit.tokens_per_minute: must be positive (leave unset for no limit)".into(),
        );
    }
    if limits.max_buckets == 0 {
        errors.push("rate_limit.max_buckets: must be positive".into());
    }
    let redis = &raw.redis;
    let shared = if redis.enabled {
        match redis.url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) if url.starts_with("redis://") => Some(actors::limits::SharedSettings {
                url: url.to_string(),
                prefix: redis.key_prefix.clone(),
                timeout: Duration::from_millis(redis.timeout_ms.max(1)),
                pool_size: redis.pool_size.max(1),
                failure: match limits.redis_failure {
                    raw::RawRedisFailure::Local => actors::limits::RedisFailureMode::Local,
                    raw::RawRedisFailure::Allow => actors::limits::RedisFailureMode::Allow,
                    raw::RawRedisFailure::Deny => actors::limits::RedisFailureMode::Deny,
                },
            }),
            Some(_) => {
                errors.push(
                    "redis.url (REDIS_URL): must start with redis:// (TLS is not built in)".into(),
                );
                None
            }
            None => {
                errors.push("redis.url (REDIS_URL): required when redis.enabled = true".into());
                None
            }
        }
    } else {
        None
    };
    if redis.key_prefix.is_empty() {
        errors.push("redis.key_prefix: must not be empty".into());
    }
    RateLimitConfig {
        enabled: limits.enabled,
        requests_per_minute: limits.requests_per_minute,
        burst: limits.burst,
        tokens_per_minute: limits.tokens_per_minute,
        login_requests_per_minute: limits.login_requests_per_minute,
        max_buckets: limits.max_buckets,
        redis: shared,
    }
}

fn service_settings(
    base: &ServiceSettings,
    raw: &RawServiceSettings,
    path: &str,
    errors: &mut Vec<String>,
) -> ServiceSettings {
    let ms = |value: Option<u64>, fallback: Duration| value.map_or(fallback, Duration::from_millis);
    let settings = ServiceSettings {
        strategy: raw.strategy.map_or(base.strategy, |s| match s {
            RawStrategy::RoundRobin => BalanceStrategy::RoundRobin,
            RawStrategy::Weighted => BalanceStrategy::Weighted,
            RawStrategy::LeastInflight => BalanceStrategy::LeastInFlight,
            RawStrategy::P2cEwma => BalanceStrategy::P2cEwma,
        }),
        health: HealthCheckSettings {
            path: raw
                .health_check_path
                .clone()
                .or_else(|| base.health.path.clone()),
            interval: ms(raw.health_check_interval_ms, base.health.interval),
            timeout: ms(raw.health_check_timeout_ms, base.health.timeout),
            healthy_threshold: raw
                .healthy_threshold
                .unwrap_or(base.health.healthy_threshold),
            unhealthy_threshold: raw
                .unhealthy_threshold
                .unwrap_or(base.health.unhealthy_threshold),
        },
        outlier: OutlierSettings {
            consecutive_failures: raw
                .ejection_consecutive_failures
                .unwrap_or(base.outlier.consecutive_failures),
            base_ejection: ms(raw.ejection_base_ms, base.outlier.base_ejection),
            max_ejection: ms(raw.ejection_max_ms, base.outlier.max_ejection),
            min_eligible: raw
                .min_eligible_endpoints
                .unwrap_or(base.outlier.min_eligible),
        },
        connect_timeout: ms(raw.connect_timeout_ms, base.connect_timeout),
        first_byte_timeout: ms(raw.first_byte_timeout_ms, base.first_byte_timeout),
        idle_timeout: ms(raw.idle_timeout_ms, base.idle_timeout),
        max_attempts: raw.max_attempts.unwrap_or(base.max_attempts),
        retry_budget_ratio: raw.retry_budget_ratio.unwrap_or(base.retry_budget_ratio),
        retry_budget_min: raw.retry_budget_min.unwrap_or(base.retry_budget_min),
        api_key: raw.api_key.clone().or_else(|| base.api_key.clone()),
        cache_shared: raw.cache_shared.unwrap_or(base.cache_shared),
        requests_per_minute: raw.requests_per_minute.or(base.requests_per_minute),
        burst: raw.burst.or(base.burst),
    };
    let mut check = |ok: bool, field: &str, message: &str| {
        if !ok {
            errors.push(format!("{path}.{field}: {message}"));
        }
    };
    check(
        settings.requests_per_minute != Some(0) && settings.burst != Some(0),
        "requests_per_minute",
        "requests_per_minute and burst must be positive",
    );
    check(
        settings.max_attempts >= 1,
        "max_attempts",
        "must be at least 1",
    );
    check(
        (0.0..=10.0).contains(&settings.retry_budget_ratio),
        "retry_budget_ratio",
        "must be between 0 and 10",
    );
    for (field, value) in [
        ("connect_timeout_ms", settings.connect_timeout),
        ("first_byte_timeout_ms", settings.first_byte_timeout),
        ("idle_timeout_ms", settings.idle_timeout),
        ("health_check_interval_ms", settings.health.interval),
        ("health_check_timeout_ms", settings.health.timeout),
    ] {
        check(!value.is_zero(), field, "must be positive");
    }
    check(
        settings.outlier.base_ejection <= settings.outlier.max_ejection,
        "ejection_base_ms",
        "must not exceed ejection_max_ms",
    );
    if let Some(path_value) = &settings.health.path {
        check(
            path_value.starts_with('/'),
            "health_check_path",
            "must start with '/'",
        );
    }
    settings
}

#[cfg(test)]
mod tests;
