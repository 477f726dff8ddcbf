//! The configuration as written: every layer deserializes into these structs, which reject
//! unknown keys. Validation turns them into the runtime [`super::Config`].

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

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
                "http://localhost:3000".into(),
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscoveryType {
    #[default]
    Static,
    Consul,
    Kubernetes,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDiscovery {
    pub enabled: bool,
    #[serde(rename = "type")]
    pub kind: DiscoveryType,
    pub static_file: String,
    pub poll_interval_ms: u64,
    /// `DISCOVERY_REQUIRED`: true makes an unreachable back-end at start-up a start-up error;
    /// false starts degraded (warning, metric, `/ready` says so) and keeps trying.
    pub required: bool,
    pub consul: RawConsul,
    pub kubernetes: RawKubernetes,
}

impl Default for RawDiscovery {
    fn default() -> Self {
        RawDiscovery {
            enabled: true,
            kind: DiscoveryType::Static,
            static_file: "config/services.json".into(),
            poll_interval_ms: 1000,
            required: true,
            consul: RawConsul::default(),
            kubernetes: RawKubernetes::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConsul {
    /// `CONSUL_ADDR`: `host:port` or `http://host:port` of a Consul agent.
    pub addr: String,
    /// `CONSUL_TOKEN`: sent as `X-Consul-Token`. Masked by `check-config`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// `CONSUL_DATACENTER`: `dc` on every query; the agent's own when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    /// Services to watch by name. Empty: every service carrying `tag`.
    #[serde(deserialize_with = "comma_list")]
    pub services: Vec<String>,
    pub tag: String,
    /// Longest time one blocking query may wait (Consul's `wait`).
    pub wait_secs: u64,
    /// Least time between two queries of one service when the index does not move.
    pub min_query_interval_ms: u64,
    /// First and longest pause after an error (jittered, doubling).
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// `CONSUL_REGISTER`: register this gateway with an HTTP check on `/health`, deregister
    /// on graceful shutdown.
    pub register: bool,
    pub register_name: String,
    /// Address Consul should check and others should call; the bind address when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub register_address: Option<String>,
}

impl Default for RawConsul {
    fn default() -> Self {
        RawConsul {
            addr: "127.0.0.1:8500".into(),
            token: None,
            datacenter: None,
            services: Vec::new(),
            tag: "ai-model".into(),
            wait_secs: 60,
            min_query_interval_ms: 1000,
            retry_base_ms: 500,
            retry_max_ms: 30_000,
            register: false,
            register_name: "ai-gateway".into(),
            register_address: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawKubernetes {
    /// `K8S_NAMESPACE`: where EndpointSlices are watched.
    pub namespace: String,
    /// EndpointSlices carrying this label are watched, unless `services` names them.
    pub label_selector: String,
    /// Services to route to by name (their `kubernetes.io/service-name` label).
    #[serde(deserialize_with = "comma_list")]
    pub services: Vec<String>,
    /// `K8S_API_URL`: talk to this API server without credentials instead of the in-cluster
    /// or kubeconfig configuration (`kubectl proxy`, tests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
}

impl Default for RawKubernetes {
    fn default() -> Self {
        RawKubernetes {
            namespace: "default".into(),
            label_selector: "aigateway.io/upstream=true".into(),
            services: Vec::new(),
            api_url: None,
            retry_base_ms: 500,
            retry_max_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawStrategy {
    RoundRobin,
    Weighted,
    LeastInflight,
    P2cEwma,
}

/// Per-service policy; every field is optional and falls back to `upstream_defaults`, then to
/// the built-in defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServiceSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<RawStrategy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_byte_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_budget_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_budget_min: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check_interval_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ejection_consecutive_failures: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ejection_base_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ejection_max_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_eligible_endpoints: Option<usize>,
    /// Bearer credential the gateway sends upstream. Masked by `check-config`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Share cached answers between keys (for services whose answers are not private).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_shared: Option<bool>,
    /// Requests per minute for the whole service (every key together), shared through Redis
    /// when it is on. Needs `rate_limit.enabled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    /// Burst for `requests_per_minute` (default: one second's worth, at least 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub name: String,
    pub service: String,
    pub upstream_model: String,
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
}

impl Default for RawUsage {
    fn default() -> Self {
        RawUsage {
            batch_size: 500,
            flush_interval_ms: 500,
            buffer_capacity: 100_000,
            default_max_tokens: 1024,
        }
    }
}

/// `GET /v1/ws`: per-socket limits.
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
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawRedisFailure {
    /// Decide in-process (limits then hold per replica).
    #[default]
    Local,
    /// Let requests through unlimited.
    Allow,
    /// Refuse requests with 503.
    Deny,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRateLimit {
    /// Master switch: off, no limit of any kind is enforced (keys' own rpm/tpm included).
    pub enabled: bool,
    /// Requests per minute for keys without their own `rpm`.
    pub requests_per_minute: u64,
    /// Largest burst of requests, for every key.
    pub burst: u64,
    /// Tokens per minute for keys without their own `tpm`; unset: no token limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// `/auth/login` attempts per minute per client IP (burst = the same number).
    pub login_requests_per_minute: u64,
    /// What decides when Redis fails: `local`, `allow` or `deny`.
    pub redis_failure: RawRedisFailure,
    /// Most subjects the in-process limiter holds (idle ones are evicted first).
    pub max_buckets: usize,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        RawRateLimit {
            enabled: false,
            requests_per_minute: 60,
            burst: 10,
            tokens_per_minute: None,
            login_requests_per_minute: 10,
            redis_failure: RawRedisFailure::Local,
            max_buckets: 1_000_000,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRedis {
    /// Share rate limits across replicas through `url`.
    pub enabled: bool,
    /// `redis://[:password@]host:port[/db]`. Masked by `check-config`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Prepended to every key the gateway writes.
    pub key_prefix: String,
    /// Longest a decision waits for Redis before the fallback decides.
    pub timeout_ms: u64,
    pub pool_size: usize,
}

impl Default for RawRedis {
    fn default() -> Self {
        RawRedis {
            enabled: false,
            url: None,
            key_prefix: "gw".into(),
            timeout_ms: 50,
            pool_size: 16,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCache {
    /// Exact-match cache of deterministic chat, completion and embedding answers.
    pub enabled: bool,
    pub ttl_secs: u64,
    /// Bytes of cached bodies held; the least useful entries go first.
    pub max_bytes: u64,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache {
            enabled: false,
            ttl_secs: 300,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}
