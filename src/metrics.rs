//! The gateway's own Prometheus metrics, beside the per-route ones actix-web-prom records into
//! the same registry.

use std::time::Duration;

use actors::UpstreamRegistryHandle;
use prometheus::core::Collector;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Fine buckets: the gateway's own work is measured in microseconds.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1,
];
const UPSTREAM_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
];

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    upstream_duration: HistogramVec,
    overhead: HistogramVec,
    endpoint_healthy: IntGaugeVec,
    endpoint_in_flight: IntGaugeVec,
    stream_faults: IntCounterVec,
    discovery_errors: IntGauge,
    discovery_degraded: IntGauge,
    endpoint_state: IntGaugeVec,
    tokens: IntCounterVec,
    pending_usage: IntGauge,
    key_cache: IntGaugeVec,
    rate_limit_buckets: IntGauge,
    rate_limit_redis_failures: prometheus::IntCounter,
}

/// Registers `metric` with `registry` and hands it back.
fn register<M: Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> Result<M, prometheus::Error> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
    labels: &[&str],
) -> Result<HistogramVec, prometheus::Error> {
    let options = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    register(registry, HistogramVec::new(options, labels)?)
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let r = &registry;
        Ok(Metrics {
            upstream_duration: histogram_vec(
                r,
                "gateway_upstream_request_duration_seconds",
                "Time from sending a request upstream to its response head (whole body when buffered), per attempt.",
                UPSTREAM_BUCKETS,
                &["service", "endpoint", "outcome"],
            )?,
            overhead: histogram_vec(
                r,
                "gateway_overhead_seconds",
                "Time a request spends in the gateway itself, upstream time excluded.",
                OVERHEAD_BUCKETS,
                &["route"],
            )?,
            endpoint_healthy: register(r, IntGaugeVec::new(
                Opts::new(
                    "gateway_upstream_endpoint_healthy",
                    "1 when the endpoint is eligible for requests (healthy and not ejected).",
                ),
                &["service", "endpoint", "origin"],
            )?)?,
            endpoint_in_flight: register(r, IntGaugeVec::new(
                Opts::new("gateway_upstream_endpoint_in_flight", "Requests in flight per endpoint."),
                &["service", "endpoint"],
            )?)?,
            stream_faults: register(r, IntCounterVec::new(
                Opts::new(
                    "gateway_stream_faults_total",
                    "Streams that ended without completing, by cause.",
                ),
                &["service", "fault"],
            )?)?,
            discovery_errors: register(r, IntGauge::new(
                "gateway_discovery_errors_total",
                "Discovery results rejected (broken service files, unreachable back-ends); the last good set stays.",
            )?)?,
            discovery_degraded: register(r, IntGauge::new(
                "gateway_discovery_degraded",
                "1 while the discovery back-end cannot be reached; the pools keep their last good set.",
            )?)?,
            endpoint_state: register(r, IntGaugeVec::new(
                Opts::new(
                    "gateway_upstream_endpoint_state",
                    "1 for each endpoint's current state: eligible, pending (before its first passing check), unhealthy, ejected or draining.",
                ),
                &["service", "endpoint", "origin", "state"],
            )?)?,
            tokens: register(r, IntCounterVec::new(
                Opts::new(
                    "gateway_tokens_total",
                    "Tokens billed, by key, model and direction (prompt or completion).",
                ),
                &["key", "model", "direction"],
            )?)?,
            pending_usage: register(r, IntGauge::new(
                "gateway_usage_pending_events",
                "Usage events not yet written to the database.",
            )?)?,
            key_cache: register(r, IntGaugeVec::new(
                Opts::new(
                    "gateway_key_cache_lookups",
                    "API-key lookups answered from the cache (hit) or the database (miss).",
                ),
                &["result"],
            )?)?,
            rate_limit_buckets: register(r, IntGauge::new(
                "gateway_rate_limit_buckets",
                "Subjects (keys, client IPs) the in-process rate limiter holds; idle ones are evicted.",
            )?)?,
            rate_limit_redis_failures: register(r, prometheus::IntCounter::new(
                "gateway_rate_limit_redis_failures_total",
                "Rate-limit decisions Redis failed to make in time (the fallback decided).",
            )?)?,
            registry,
        })
    }

    pub fn observe_upstream(
        &self,
        service: &str,
        endpoint: &str,
        outcome: &str,
        elapsed: Duration,
    ) {
        self.upstream_duration
            .with_label_values(&[service, endpoint, outcome])
            .observe(elapsed.as_secs_f64());
    }

    pub fn observe_overhead(&self, route: &str, overhead: Duration) {
        self.overhead
            .with_label_values(&[route])
            .observe(overhead.as_secs_f64());
    }

    pub fn count_tokens(&self, key: &str, model: &str, prompt: i64, completion: i64) {
        for (direction, count) in [("prompt", prompt), ("completion", completion)] {
            if count > 0 {
                self.tokens
                    .with_label_values(&[key, model, direction])
                    .inc_by(u64::try_from(count).unwrap_or(0));
            }
        }
    }

    /// Refreshes the usage and key-cache gauges; called on every scrape.
    pub fn refresh_accounting(&self, pending_usage: usize, key_cache_counts: (u64, u64)) {
        self.pending_usage
            .set(i64::try_from(pending_usage).unwrap_or(i64::MAX));
        let (hits, misses) = key_cache_counts;
        self.key_cache
            .with_label_values(&["hit"])
            .set(i64::try_from(hits).unwrap_or(i64::MAX));
        self.key_cache
            .with_label_values(&["miss"])
            .set(i64::try_from(misses).unwrap_or(i64::MAX));
    }

    /// Refreshes the rate-limit gauges from the limiter; called on every scrape.
    pub fn refresh_limits(&self, limiter: &actors::limits::RateLimiter) {
        self.rate_limit_buckets
            .set(i64::try_from(limiter.local_limiter().len()).unwrap_or(i64::MAX));
        if let Some(shared) = limiter.shared_limiter() {
            let total = shared.failures();
            let counted = self.rate_limit_redis_failures.get();
            self.rate_limit_redis_failures
                .inc_by(total.saturating_sub(counted));
        }
    }

    pub fn count_stream_fault(&self, service: &str, fault: &str) {
        self.stream_faults
            .with_label_values(&[service, fault])
            .inc();
    }

    /// Refreshes the endpoint gauges from the pools; called on every scrape, so the request
    /// path never touches them.
    pub async fn refresh_endpoints(&self, registry: &UpstreamRegistryHandle) {
        self.discovery_errors
            .set(i64::try_from(registry.discovery_errors()).unwrap_or(i64::MAX));
        self.discovery_degraded
            .set(i64::from(registry.discovery_degraded()));
        self.endpoint_healthy.reset();
        self.endpoint_state.reset();
        self.endpoint_in_flight.reset();
        for (service, pool) in registry.pools() {
            let Ok(state) = pool.state().await else {
                continue;
            };
            for endpoint in state.endpoints {
                self.endpoint_state
                    .with_label_values(&[
                        service.as_str(),
                        endpoint.address.as_str(),
                        endpoint.origin,
                        endpoint.state,
                    ])
                    .set(1);
                if endpoint.state == "draining" {
                    // A drained endpoint is not a member; only its in-flight count matters.
                    self.endpoint_in_flight
                        .with_label_values(&[service.as_str(), endpoint.address.as_str()])
                        .set(i64::from(endpoint.in_flight));
                    continue;
                }
                self.endpoint_healthy
                    .with_label_values(&[
                        service.as_str(),
                        endpoint.address.as_str(),
                        endpoint.origin,
                    ])
                    .set(i64::from(endpoint.eligible));
                self.endpoint_in_flight
                    .with_label_values(&[service.as_str(), endpoint.address.as_str()])
                    .set(i64::from(endpoint.in_flight));
            }
        }
    }

    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|error| format!("# encoding failed: {error}\n"))
    }
}
