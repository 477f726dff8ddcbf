//! The `upstream_defaults`, `services` and `models` sections as written.

use serde::{Deserialize, Serialize};

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
