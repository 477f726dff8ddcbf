//! The configuration as written: every layer deserializes into these structs, which reject
//! unknown keys. Validation turns them into the runtime [`super::Config`].
//!
//! Sections with more than a few keys live beside this file: `discovery.rs`, `upstreams.rs`
//! (services and models) and `limits.rs` (rate limits, Redis, cache).

mod discovery;
mod limits;
mod upstreams;

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

pub use discovery::{DiscoveryType, RawConsul, RawDiscovery, RawKubernetes};
pub use limits::{RawCache, RawRateLimit, RawRedis, RawRedisFailure};
pub use upstreams::{RawModel, RawServiceSettings, RawStrategy};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub tls: RawTls,
    pub gzip: RawToggle,
    pub cors: RawCors,
    pub monitoring: RawMonitoring,
    pub protocol_conversion: RawProtocolConversion,
    pub logging: RawLogging,
    pub discovery: RawDiscovery,
    pub upstream_defaults: RawServiceSettings,
    pub services: BTreeMap<String, RawServiceSettings>,
    pub models: Vec<RawModel>,
    pub database: RawDatabase,
    pub auth: RawAuth,
    pub usage: RawUsage,
    pub websocket: RawWebSocket,
    pub graphql: RawGraphql,
    pub rate_limit: RawRateLimit,
    pub redis: RawRedis,
    pub cache: RawCache,
    pub dashboard: RawDashboard,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub bind: String,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    pub max_body_bytes: usize,
    /// Largest non-streaming upstream answer the gateway will hold.
    pub max_response_bytes: usize,
    pub shutdown_timeout_secs: u64,
    pub keep_alive_secs: u64,
    /// How long a request's body may take to arrive once its head has (slow-body clients get
    /// 408 `request_body_timeout`).
    pub request_body_timeout_secs: u64,
    /// Proxies (IPs or CIDR ranges) whose `X-Forwarded-For` names the client; empty: the
    /// header is ignored and the peer is the client.
    #[serde(deserialize_with = "comma_list")]
    pub trusted_proxies: Vec<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            bind: "0.0.0.0:8080".into(),
            workers: 0,
            max_body_bytes: 4 * 1024 * 1024,
            max_response_bytes: 64 * 1024 * 1024,
            shutdown_timeout_secs: 30,
            keep_alive_secs: 75,
            request_body_timeout_secs: 30,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    pub enabled: bool,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawToggle {
    pub enabled: bool,
}

impl Default for RawToggle {
    fn default() -> Self {
        RawToggle { enabled: true }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawProtocolConversion {
    /// Off: endpoints that speak gRPC cannot be used (a clear 501 per request).
    pub enabled: bool,
    /// Reach instances that offer both an HTTP `port` and a `grpc_port` (python-models) over
    /// gRPC rather than HTTP.
    pub http_to_grpc: bool,
}

impl Default for RawProtocolConversion {
    fn default() -> Self {
        RawProtocolConversion {
            enabled: true,
            http_to_grpc: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCors {
    pub enabled: bool,
    /// Origins allowed to call the gateway from a browser; `*` allows any.
    #[serde(deserialize_with = "comma_list")]
    pub allowed_origins: Vec<String>,
}

impl Default for RawCors {
    fn default() -> Self {
        RawCors {
            enabled: true,
            allowed_origins: vec![
                // The dashboard's Vite dev server, under both names a browser may use.
                "http://localhost:3000".into(),
                "http://127.0.0.1:3000".into(),
                "http://localhost:5173".into(),
            ],
        }
    }
}

/// Accepts a list, or one comma-separated string as environment variables carry it.
fn comma_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrString {
        List(Vec<String>),
        String(String),
    }
    Ok(match ListOrString::deserialize(deserializer)? {
        ListOrString::List(list) => list,
        ListOrString::String(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMonitoring {
    pub enabled: bool,
    pub prometheus_enabled: bool,
    /// The Prometheus listener's address; metrics are never served on the API port.
    pub metrics_bind: String,
}

impl Default for RawMonitoring {
    fn default() -> Self {
        RawMonitoring {
            enabled: true,
            prometheus_enabled: true,
            metrics_bind: "0.0.0.0:9091".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLogging {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `gateway=debug,actix_web=warn`.
    pub level: String,
}

impl Default for RawLogging {
    fn default() -> Self {
        RawLogging {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDatabase {
    /// `DATABASE_URL`: unset → SQLite `data/gateway.db`; `sqlite://<path>`; `postgres://…`.
    pub url: Option<String>,
    /// Apply pending migrations at start-up.
    pub auto_migrate: bool,
    pub max_connections: usize,
}

impl Default for RawDatabase {
    fn default() -> Self {
        RawDatabase {
            url: None,
            auto_migrate: true,
            max_connections: 8,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    /// API keys required on /v1/*. `false` is for local experiments only.
    pub enabled: bool,
    /// HS256 secret for dashboard and admin tokens. Masked by `check-config`.
    pub jwt_secret: Option<String>,
    /// Token lifetime, e.g. `24h`, `30m`, `3600s`.
    pub jwt_expiry: String,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    /// How long a looked-up key is trusted before it is read again (revocation delay).
    pub key_cache_ttl_secs: u64,
    /// How long a token's user (its role, or that it was deleted) is trusted before it is
    /// read again: the delay before a deletion or demotion takes effect (1 to 60).
    pub user_cache_ttl_secs: u64,
    /// Failed API-key authentications one client (IP) may make per minute before its lookups
    /// get 429 `too_many_failed_authentications`; 0 turns the throttle off.
    pub max_failures_per_minute: u64,
    /// Password hashes (Argon2, ~19 MiB each) `/auth/login` runs at once.
    pub login_max_concurrent: usize,
    /// How long a login waits for a hashing slot before 503 `login_busy`.
    pub login_wait_ms: u64,
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth {
            enabled: true,
            jwt_secret: None,
            jwt_expiry: "24h".into(),
            jwt_issuer: "ai-gateway".into(),
            jwt_audience: "ai-gateway-admin".into(),
            key_cache_ttl_secs: 5,
            user_cache_ttl_secs: 5,
            max_failures_per_minute: 20,
            login_max_concurrent: 4,
            login_wait_ms: 1_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUsage {
    pub batch_size: usize,
    pub flush_interval_ms: u64,
    /// Usage events that may wait for the database; beyond it requests get 503.
    pub buffer_capacity: usize,
    /// Completion tokens reserved against a budget when a request sets no `max_tokens`.
    pub default_max_tokens: i64,
    /// The largest `max_tokens` a request may ask for (beyond any model's context): 400 above.
    pub max_tokens_cap: i64,
}

impl Default for RawUsage {
    fn default() -> Self {
        RawUsage {
            batch_size: 500,
            flush_interval_ms: 500,
            buffer_capacity: 100_000,
            default_max_tokens: 1024,
            max_tokens_cap: 1_000_000,
        }
    }
}

/// `GET /v1/ws`: per-socket limits, and the caps on sessions and tickets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWebSocket {
    /// Largest client message (a frame, or continuation frames together); larger closes the
    /// socket with 1009.
    pub max_message_bytes: usize,
    /// Chat requests one socket may run at once; more get an error message.
    pub max_concurrent_requests: usize,
    pub ping_interval_ms: u64,
    /// A socket that sends nothing (not even a pong) for this long is closed.
    pub idle_timeout_ms: u64,
    /// Messages waiting to be written to one socket; when full, streams stop reading upstream.
    pub outbound_queue: usize,
    /// Lifetime of a single-use ticket from `POST /v1/ws/ticket`.
    pub ticket_ttl_secs: u64,
    /// A session is closed (4000) this long after it opened, whatever it is doing; the client
    /// reconnects with a credential that is checked again.
    pub max_session_lifetime_ms: u64,
    /// How often an open session checks its credential again (through the key and user
    /// caches), so a revoked key or deleted user ends even an idle or streaming socket.
    pub credential_check_interval_ms: u64,
    /// Open sessions at most, in total and per API key or user; over either: 429.
    pub max_sessions: usize,
    pub max_sessions_per_key: usize,
    /// Unredeemed tickets at most, in total and per API key or user; over either: 429.
    pub max_tickets: usize,
    pub max_tickets_per_key: usize,
    /// `POST /v1/ws/ticket` calls per minute per API key or user (bursts of as many).
    pub tickets_per_minute: u64,
}

impl Default for RawWebSocket {
    fn default() -> Self {
        RawWebSocket {
            max_message_bytes: 1024 * 1024,
            max_concurrent_requests: 8,
            ping_interval_ms: 15_000,
            idle_timeout_ms: 45_000,
            outbound_queue: 64,
            ticket_ttl_secs: 30,
            max_session_lifetime_ms: 3_600_000,
            credential_check_interval_ms: 5_000,
            max_sessions: 10_000,
            max_sessions_per_key: 100,
            max_tickets: 10_000,
            max_tickets_per_key: 16,
            tickets_per_minute: 60,
        }
    }
}

/// The web dashboard (`frontend/`'s build) served at `/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDashboard {
    pub enabled: bool,
    /// The built dashboard (`index.html`, `graphiql.html`, `assets/`), relative to the
    /// working directory.
    pub dir: String,
}

impl Default for RawDashboard {
    fn default() -> Self {
        RawDashboard {
            enabled: true,
            dir: "frontend/dist".into(),
        }
    }
}

/// `/graphql`: the API and its playground.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGraphql {
    pub enabled: bool,
    /// Serve GraphiQL at `GET /graphql`.
    pub playground: bool,
    /// Allow `__schema`/`__type` queries; unset means on, except in production.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub introspection: Option<bool>,
    /// Deepest nesting of selections, fragments and input values a document may have.
    pub max_depth: usize,
    /// Most fields one operation may select, fragments counted once per spread.
    pub max_complexity: usize,
}

impl Default for RawGraphql {
    fn default() -> Self {
        RawGraphql {
            enabled: true,
            playground: true,
            introspection: None,
            max_depth: 12,
            max_complexity: 500,
        }
    }
}
