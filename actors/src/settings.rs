//! Per-service policy the pools and the request pipeline follow: balancing, health, ejection,
//! timeouts and retries. Plain values, validated by the gateway's configuration loader.

use std::time::Duration;

/// How a pool chooses an endpoint for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BalanceStrategy {
    RoundRobin,
    Weighted,
    LeastInFlight,
    /// Power of two random choices on in-flight count × latency EWMA.
    #[default]
    P2cEwma,
}

impl BalanceStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            BalanceStrategy::RoundRobin => "round_robin",
            BalanceStrategy::Weighted => "weighted",
            BalanceStrategy::LeastInFlight => "least_inflight",
            BalanceStrategy::P2cEwma => "p2c_ewma",
        }
    }
}

/// Active health checking: probe `path` every `interval`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckSettings {
    /// `None` disables active checks; endpoints are then eligible as soon as they are known.
    pub path: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive passing probes that make an unhealthy endpoint healthy.
    pub healthy_threshold: u32,
    /// Consecutive failing probes that make a healthy endpoint unhealthy.
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheckSettings {
    fn default() -> Self {
        HealthCheckSettings {
            path: None,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }
}

/// Passive outlier ejection from failures seen by real requests.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierSettings {
    /// Consecutive connect errors, 5xx answers or timeouts that eject an endpoint.
    pub consecutive_failures: u32,
    /// First ejection length; each further ejection doubles it up to `max_ejection`.
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    /// Ejection never leaves fewer eligible endpoints than this.
    pub min_eligible: usize,
}

impl Default for OutlierSettings {
    fn default() -> Self {
        OutlierSettings {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
            min_eligible: 1,
        }
    }
}

/// Everything the gateway needs to know about one upstream service besides its endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSettings {
    pub strategy: BalanceStrategy,
    pub health: HealthCheckSettings,
    pub outlier: OutlierSettings,
    pub connect_timeout: Duration,
    /// Time from sending the request to the response head.
    pub first_byte_timeout: Duration,
    /// Longest silence allowed between two chunks of a response body.
    pub idle_timeout: Duration,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// Retries allowed as a fraction of requests, beyond `retry_budget_min`.
    pub retry_budget_ratio: f64,
    pub retry_budget_min: u32,
    /// Credential the gateway presents upstream, if the service needs one.
    pub api_key: Option<String>,
    /// Cached answers are shared by every key (otherwise each key has its own).
    pub cache_shared: bool,
    /// Requests per minute the whole service accepts through this gateway (all keys together),
    /// to protect self-hosted model servers; `None`: unlimited.
    pub requests_per_minute: Option<u64>,
    /// Largest burst of requests for `requests_per_minute`.
    pub burst: Option<u64>,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            strategy: BalanceStrategy::default(),
            health: HealthCheckSettings::default(),
            outlier: OutlierSettings::default(),
            connect_timeout: Duration::from_secs(2),
            first_byte_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(60),
            max_attempts: 3,
            retry_budget_ratio: 0.2,
            retry_budget_min: 10,
            api_key: None,
            cache_shared: false,
            requests_per_minute: None,
            burst: None,
        }
    }
}
