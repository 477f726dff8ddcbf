//! The environment layer: the variable names operators already use, plus
//! `GATEWAY__SECTION__KEY` for everything else.

use figment::value::{Dict, Map, Value};
use figment::{Error, Figment, Metadata, Profile, Provider};

/// Operator-facing variable → configuration path.
pub const ENV_NAMES: &[(&str, &str)] = &[
    ("GATEWAY_BIND", "server.bind"),
    ("GATEWAY_WORKERS", "server.workers"),
    ("SERVICE_DISCOVERY_ENABLED", "discovery.enabled"),
    ("SERVICE_DISCOVERY_TYPE", "discovery.type"),
    ("SERVICE_DISCOVERY_STATIC_FILE", "discovery.static_file"),
    ("DISCOVERY_REQUIRED", "discovery.required"),
    ("CONSUL_ADDR", "discovery.consul.addr"),
    ("CONSUL_TOKEN", "discovery.consul.token"),
    ("CONSUL_DATACENTER", "discovery.consul.datacenter"),
    ("CONSUL_SERVICES", "discovery.consul.services"),
    ("CONSUL_TAG", "discovery.consul.tag"),
    ("CONSUL_REGISTER", "discovery.consul.register"),
    ("K8S_NAMESPACE", "discovery.kubernetes.namespace"),
    ("K8S_LABEL_SELECTOR", "discovery.kubernetes.label_selector"),
    ("K8S_SERVICES", "discovery.kubernetes.services"),
    ("K8S_API_URL", "discovery.kubernetes.api_url"),
    ("PROTOCOL_CONVERSION_ENABLED", "protocol_conversion.enabled"),
    ("HTTP_TO_GRPC_ENABLED", "protocol_conversion.http_to_grpc"),
    ("MONITORING_ENABLED", "monitoring.enabled"),
    ("PROMETHEUS_ENABLED", "monitoring.prometheus_enabled"),
    ("METRICS_BIND", "monitoring.metrics_bind"),
    ("TRUSTED_PROXIES", "server.trusted_proxies"),
    ("TLS_ENABLED", "tls.enabled"),
    ("TLS_CERT_FILE", "tls.cert_file"),
    ("TLS_KEY_FILE", "tls.key_file"),
    ("GZIP_ENABLED", "gzip.enabled"),
    ("CORS_ENABLED", "cors.enabled"),
    ("CORS_ALLOWED_ORIGINS", "cors.allowed_origins"),
    ("LOG_FORMAT", "logging.format"),
    ("LOG_LEVEL", "logging.level"),
    ("DATABASE_URL", "database.url"),
    ("DATABASE_AUTO_MIGRATE", "database.auto_migrate"),
    ("DATABASE_MAX_CONNECTIONS", "database.max_connections"),
    ("AUTH_ENABLED", "auth.enabled"),
    ("JWT_SECRET", "auth.jwt_secret"),
    ("JWT_EXPIRY", "auth.jwt_expiry"),
    ("AUTH_KEY_CACHE_TTL_SECS", "auth.key_cache_ttl_secs"),
    ("AUTH_USER_CACHE_TTL_SECS", "auth.user_cache_ttl_secs"),
    (
        "AUTH_MAX_FAILURES_PER_MINUTE",
        "auth.max_failures_per_minute",
    ),
    ("AUTH_LOGIN_MAX_CONCURRENT", "auth.login_max_concurrent"),
    ("AUTH_LOGIN_WAIT_MS", "auth.login_wait_ms"),
    (
        "REQUEST_BODY_TIMEOUT_SECS",
        "server.request_body_timeout_secs",
    ),
    ("WS_MAX_MESSAGE_BYTES", "websocket.max_message_bytes"),
    (
        "WS_MAX_CONCURRENT_REQUESTS",
        "websocket.max_concurrent_requests",
    ),
    ("WS_PING_INTERVAL_MS", "websocket.ping_interval_ms"),
    ("WS_IDLE_TIMEOUT_MS", "websocket.idle_timeout_ms"),
    (
        "WS_MAX_SESSION_LIFETIME_MS",
        "websocket.max_session_lifetime_ms",
    ),
    (
        "WS_CREDENTIAL_CHECK_INTERVAL_MS",
        "websocket.credential_check_interval_ms",
    ),
    ("WS_MAX_SESSIONS", "websocket.max_sessions"),
    ("WS_MAX_SESSIONS_PER_KEY", "websocket.max_sessions_per_key"),
    ("WS_MAX_TICKETS", "websocket.max_tickets"),
    ("WS_MAX_TICKETS_PER_KEY", "websocket.max_tickets_per_key"),
    ("WS_TICKETS_PER_MINUTE", "websocket.tickets_per_minute"),
    ("GRAPHQL_ENABLED", "graphql.enabled"),
    ("GRAPHQL_PLAYGROUND", "graphql.playground"),
    ("GRAPHQL_INTROSPECTION", "graphql.introspection"),
    ("RATE_LIMIT_ENABLED", "rate_limit.enabled"),
    (
        "RATE_LIMIT_REQUESTS_PER_MINUTE",
        "rate_limit.requests_per_minute",
    ),
    ("RATE_LIMIT_BURST", "rate_limit.burst"),
    (
        "RATE_LIMIT_TOKENS_PER_MINUTE",
        "rate_limit.tokens_per_minute",
    ),
    ("RATE_LIMIT_REDIS_FAILURE", "rate_limit.redis_failure"),
    ("REDIS_ENABLED", "redis.enabled"),
    ("REDIS_URL", "redis.url"),
    ("REDIS_KEY_PREFIX", "redis.key_prefix"),
    ("REDIS_TIMEOUT_MS", "redis.timeout_ms"),
    ("REDIS_BUDGET_LEASE_MS", "redis.budget_lease_ms"),
    ("REDIS_BUDGET_RECONCILE_MS", "redis.budget_reconcile_ms"),
    ("CACHE_ENABLED", "cache.enabled"),
    ("CACHE_TTL_SECS", "cache.ttl_secs"),
    ("CACHE_MAX_BYTES", "cache.max_bytes"),
    ("DASHBOARD_ENABLED", "dashboard.enabled"),
    ("DASHBOARD_DIR", "dashboard.dir"),
];

/// Builds the layer from the given variables: the process environment in production, a fixed
/// list in tests (so tests never mutate the real environment).
pub fn environment_layer(vars: impl Iterator<Item = (String, String)>) -> Figment {
    let mut figment = Figment::new();
    // `<NAME>_FILE` secrets first; an unreadable one fails the load like any bad value.
    let (vars, errors) = super::secret_files::resolve(vars.collect());
    for error in errors {
        figment = figment.merge(SecretFileError(error));
    }
    for (name, value) in vars {
        let (path, verbatim) = match ENV_NAMES.iter().find(|(env_name, _)| *env_name == name) {
            Some((_, path)) => (path.to_string(), VERBATIM.contains(&name.as_str())),
            None => match name.strip_prefix("GATEWAY__") {
                Some(rest) => (rest.to_ascii_lowercase().replace("__", "."), false),
                None => continue,
            },
        };
        figment = figment.merge(EnvVar {
            name,
            path,
            value,
            verbatim,
        });
    }
    figment
}

/// Variables that are always strings: a secret or URL must never turn into a number.
const VERBATIM: &[&str] = &[
    "GATEWAY_BIND",
    "METRICS_BIND",
    "TRUSTED_PROXIES",
    "SERVICE_DISCOVERY_STATIC_FILE",
    "CONSUL_ADDR",
    "CONSUL_TOKEN",
    "CONSUL_DATACENTER",
    "CONSUL_SERVICES",
    "CONSUL_TAG",
    "K8S_NAMESPACE",
    "K8S_LABEL_SELECTOR",
    "K8S_SERVICES",
    "K8S_API_URL",
    "TLS_CERT_FILE",
    "TLS_KEY_FILE",
    "CORS_ALLOWED_ORIGINS",
    "LOG_LEVEL",
    "DATABASE_URL",
    "JWT_SECRET",
    "JWT_EXPIRY",
    "RATE_LIMIT_REDIS_FAILURE",
    "REDIS_URL",
    "REDIS_KEY_PREFIX",
    "DASHBOARD_DIR",
];

/// A `<NAME>_FILE` that could not be used, as a provider whose data is the error.
struct SecretFileError(String);

impl Provider for SecretFileError {
    fn metadata(&self) -> Metadata {
        Metadata::named("a secret file")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        Err(Error::from(self.0.clone()))
    }
}

/// One variable as a figment provider, so an error names the variable it came from.
struct EnvVar {
    name: String,
    path: String,
    value: String,
    verbatim: bool,
}

impl Provider for EnvVar {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("environment variable {}", self.name))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        // Parsed as figment parses environment values: `true`, `8080`, `[a, b]`, or a string.
        let value = if self.verbatim {
            Value::from(self.value.clone())
        } else {
            let Ok(parsed) = self.value.parse::<Value>();
            parsed
        };
        let nested = figment::util::nest(&self.path, value);
        let dict = nested
            .into_dict()
            .ok_or_else(|| Error::from(format!("{}: empty configuration path", self.name)))?;
        Ok(Profile::Default.collect(dict))
    }
}
