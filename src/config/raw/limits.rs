//! The `rate_limit`, `redis` and `cache` sections as written.

use serde::{Deserialize, Serialize};

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
    /// How long a shared budget reservation holds without its process renewing it: a crashed
    /// or redeployed replica's reservations are released this long after its last renewal.
    pub budget_lease_ms: u64,
    /// How often one replica reconciles the shared budget ledgers with `usage_events`.
    pub budget_reconcile_ms: u64,
}

impl Default for RawRedis {
    fn default() -> Self {
        RawRedis {
            enabled: false,
            url: None,
            key_prefix: "gw".into(),
            timeout_ms: 50,
            pool_size: 16,
            budget_lease_ms: 60_000,
            budget_reconcile_ms: 60_000,
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
