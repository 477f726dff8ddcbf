//! Validation: a merged [`RawConfig`] becomes the runtime [`Config`], or every problem is
//! reported at once as `path: message`. One function per section; each pushes its own errors
//! and returns its runtime form, so a section reads alone.

mod auth;
mod discovery;
mod limits;
mod upstreams;

use std::path::Path;
use std::time::Duration;

use actors::registry::RegistrySettings;
use actors::store::DatabaseTarget;

pub use auth::{parse_duration, weak_secret};

use super::raw::{self, RawConfig};
use super::runtime::{
    CacheConfig, Config, ConfigError, DashboardConfig, DatabaseConfig, GraphqlConfig, ServerConfig,
    TlsConfig, UsageConfig, WebSocketConfig,
};

/// Problems found so far, each as `path: message`.
type Errors = Vec<String>;

/// Checks a merged configuration and builds the runtime form.
pub fn validate(raw: RawConfig, env: &str) -> Result<Config, ConfigError> {
    let mut errors = Errors::new();
    let production = env == "production";
    // The sections run in the order their errors have always been listed.
    let server = server(&raw.server, &mut errors);
    let trusted_proxies = trusted_proxies(&raw.server, &mut errors);
    let metrics_bind = metrics_bind(&raw.monitoring, &mut errors);
    let tls = tls(&raw.tls, &mut errors);
    let discovery = discovery::discovery(&raw, &mut errors);
    logging(&raw.logging, &mut errors);
    let (defaults, services) = upstreams::services(&raw, &mut errors);
    let models = upstreams::models(&raw.models, &mut errors);
    let database = database(&raw.database, &mut errors);
    let auth = auth::auth(&raw.auth, production, &mut errors);
    let usage = usage(&raw.usage, &mut errors);
    let websocket = websocket(&raw.websocket, &mut errors);
    let graphql = graphql(&raw.graphql, production, &mut errors);
    let rate_limit = limits::rate_limit(&raw, &mut errors);
    let cache = cache(&raw.cache, &mut errors);
    let (Some(database), true) = (database, errors.is_empty()) else {
        return Err(ConfigError(errors));
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
        server,
        tls,
        gzip: raw.gzip.enabled,
        cors_allowed_origins: raw.cors.enabled.then(|| raw.cors.allowed_origins.clone()),
        metrics: raw.monitoring.enabled && raw.monitoring.prometheus_enabled,
        metrics_bind,
        trusted_proxies,
        protocol_conversion: raw.protocol_conversion.enabled,
        log_format: raw.logging.format,
        log_level: raw.logging.level.clone(),
        discovery,
        registry: RegistrySettings { defaults, services },
        models,
        dashboard: DashboardConfig {
            enabled: raw.dashboard.enabled,
            dir: std::path::PathBuf::from(&raw.dashboard.dir),
        },
        raw,
    })
}

fn trusted_proxies(
    server: &raw::RawServer,
    errors: &mut Errors,
) -> crate::client_ip::TrustedProxies {
    crate::client_ip::TrustedProxies::parse(&server.trusted_proxies).unwrap_or_else(|bad| {
        errors.extend(
            bad.into_iter()
                .map(|e| format!("server.trusted_proxies: {e}")),
        );
        Default::default()
    })
}

fn metrics_bind(monitoring: &raw::RawMonitoring, errors: &mut Errors) -> String {
    let bind = &monitoring.metrics_bind;
    if bind.parse::<std::net::SocketAddr>().is_err() && !bind.contains(':') {
        errors.push(format!(
            "monitoring.metrics_bind: {bind:?} is not host:port"
        ));
    }
    bind.clone()
}

fn server(server: &raw::RawServer, errors: &mut Errors) -> ServerConfig {
    if server.bind.parse::<std::net::SocketAddr>().is_err() && !server.bind.contains(':') {
        errors.push(format!("server.bind: {:?} is not host:port", server.bind));
    }
    if server.max_body_bytes == 0 {
        errors.push("server.max_body_bytes: must be positive".into());
    }
    if !(1..=3_600).contains(&server.request_body_timeout_secs) {
        errors.push("server.request_body_timeout_secs: must be 1 to 3600".into());
    }
    ServerConfig {
        bind: server.bind.clone(),
        workers: server.workers,
        max_body_bytes: server.max_body_bytes,
        max_response_bytes: server.max_response_bytes,
        shutdown_timeout: Duration::from_secs(server.shutdown_timeout_secs),
        keep_alive: Duration::from_secs(server.keep_alive_secs),
        request_body_timeout: Duration::from_secs(server.request_body_timeout_secs),
    }
}

fn tls(tls: &raw::RawTls, errors: &mut Errors) -> Option<TlsConfig> {
    if !tls.enabled {
        return None;
    }
    match (&tls.cert_file, &tls.key_file) {
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
            errors.push("tls: cert_file and key_file are required when tls.enabled = true".into());
            None
        }
    }
}

fn logging(logging: &raw::RawLogging, errors: &mut Errors) {
    if let Err(error) = tracing_subscriber::EnvFilter::try_new(&logging.level) {
        errors.push(format!("logging.level: {error}"));
    }
}

fn database(database: &raw::RawDatabase, errors: &mut Errors) -> Option<DatabaseConfig> {
    match DatabaseTarget::parse(database.url.as_deref()) {
        Ok(target) => Some(DatabaseConfig {
            target,
            auto_migrate: database.auto_migrate,
            max_connections: database.max_connections.max(1),
        }),
        Err(error) => {
            errors.push(format!("database.url: {error}"));
            None
        }
    }
}

fn usage(usage: &raw::RawUsage, errors: &mut Errors) -> UsageConfig {
    if usage.batch_size == 0 || usage.buffer_capacity == 0 {
        errors.push("usage: batch_size and buffer_capacity must be positive".into());
    }
    if usage.default_max_tokens < 0 {
        errors.push("usage.default_max_tokens: must not be negative".into());
    }
    if usage.max_tokens_cap < 1 || usage.max_tokens_cap < usage.default_max_tokens {
        errors
            .push("usage.max_tokens_cap: must be positive and at least default_max_tokens".into());
    }
    UsageConfig {
        settings: actors::usage::UsageSettings {
            batch_size: usage.batch_size,
            flush_interval: Duration::from_millis(usage.flush_interval_ms.max(10)),
            capacity: usage.buffer_capacity,
            ..actors::usage::UsageSettings::default()
        },
        default_max_tokens: usage.default_max_tokens,
        max_tokens_cap: usage.max_tokens_cap,
    }
}

fn websocket(raw: &raw::RawWebSocket, errors: &mut Errors) -> WebSocketConfig {
    let config = WebSocketConfig {
        max_message_bytes: raw.max_message_bytes,
        max_concurrent_requests: raw.max_concurrent_requests,
        ping_interval: Duration::from_millis(raw.ping_interval_ms),
        idle_timeout: Duration::from_millis(raw.idle_timeout_ms),
        outbound_queue: raw.outbound_queue,
        ticket_ttl: Duration::from_secs(raw.ticket_ttl_secs),
        max_session_lifetime: Duration::from_millis(raw.max_session_lifetime_ms),
        credential_check_interval: Duration::from_millis(raw.credential_check_interval_ms),
        max_sessions: raw.max_sessions,
        max_sessions_per_key: raw.max_sessions_per_key,
        max_tickets: raw.max_tickets,
        max_tickets_per_key: raw.max_tickets_per_key,
        tickets_per_minute: raw.tickets_per_minute,
    };
    for (field, value) in [
        ("max_message_bytes", config.max_message_bytes),
        ("max_concurrent_requests", config.max_concurrent_requests),
        ("outbound_queue", config.outbound_queue),
        ("max_sessions", config.max_sessions),
        ("max_sessions_per_key", config.max_sessions_per_key),
        ("max_tickets", config.max_tickets),
        ("max_tickets_per_key", config.max_tickets_per_key),
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
    if config.max_session_lifetime.is_zero()
        || config.max_session_lifetime > Duration::from_secs(7 * 86_400)
    {
        errors
            .push("websocket.max_session_lifetime_ms: must be positive and at most 7 days".into());
    }
    if config.credential_check_interval < Duration::from_millis(10)
        || config.credential_check_interval > Duration::from_secs(300)
    {
        errors.push(
            "websocket.credential_check_interval_ms: must be 10 to 300000 (how late a revoked credential may keep a socket)"
                .into(),
        );
    }
    if config.tickets_per_minute == 0 || config.tickets_per_minute > 60_000 {
        errors.push("websocket.tickets_per_minute: must be 1 to 60000".into());
    }
    config
}

fn graphql(graphql: &raw::RawGraphql, production: bool, errors: &mut Errors) -> GraphqlConfig {
    let config = GraphqlConfig {
        enabled: graphql.enabled,
        playground: graphql.playground,
        introspection: graphql.introspection.unwrap_or(!production),
        max_depth: graphql.max_depth,
        max_complexity: graphql.max_complexity,
    };
    if config.max_depth < 2 || config.max_complexity == 0 {
        errors.push("graphql: max_depth must be at least 2 and max_complexity positive".into());
    }
    config
}

fn cache(cache: &raw::RawCache, errors: &mut Errors) -> Option<CacheConfig> {
    if cache.ttl_secs == 0 || cache.max_bytes == 0 {
        errors.push("cache: ttl_secs and max_bytes must be positive".into());
    }
    cache.enabled.then(|| CacheConfig {
        ttl: Duration::from_secs(cache.ttl_secs),
        max_bytes: cache.max_bytes,
    })
}
