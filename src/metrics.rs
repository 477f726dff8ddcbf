//! The gateway's Prometheus metrics: per-route HTTP series (`http.rs`), upstreams, streams,
//! discovery, and what requests were billed.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::overview::{OpenStream, OverviewCounters};
use crate::pipeline::ApiKind;
use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
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

/// The `route` labels of `gateway_overhead_seconds` every REST request observes.
const OVERHEAD_ROUTES: [&str; 3] = [
    ApiKind::ChatCompletions.label(),
    ApiKind::Completions.label(),
    ApiKind::Embeddings.label(),
];

pub mod http;
mod labels;
pub mod listener;
mod requests;
mod scrape;
mod usage;

pub use labels::BoundedLabels;
use usage::UsageMetrics;

/// Model names become label values only when an upstream accepted them, and at most this
/// many: a client cannot grow the series count by sending made-up model names.
const MAX_MODEL_LABELS: usize = 200;

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    upstream_duration: HistogramVec,
    overhead: HistogramVec,
    /// `overhead`'s series for the REST routes, resolved on their first request.
    overhead_routes: [(&'static str, OnceLock<Histogram>); OVERHEAD_ROUTES.len()],
    endpoint_healthy: IntGaugeVec,
    endpoint_in_flight: IntGaugeVec,
    stream_faults: IntCounterVec,
    active_streams: IntGauge,
    discovery_errors: IntCounter,
    discovery_degraded: IntGauge,
    endpoint_state: IntGaugeVec,
    /// Requests, tokens, keys, caches and limits: what operators bill and budget by.
    usage: UsageMetrics,
    /// The dashboard's sliding-window counters; kept whether or not Prometheus is scraped.
    pub overview: Arc<OverviewCounters>,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let r = &registry;
        Ok(Metrics {
            overview: Arc::new(OverviewCounters::default()),
            upstream_duration: histogram(
                r,
                "gateway_upstream_request_duration_seconds",
                "Time from sending a request upstream to its response head (whole body when buffered), per attempt.",
                UPSTREAM_BUCKETS,
                &["service", "endpoint", "outcome"],
            )?,
            overhead: histogram(
                r,
                "gateway_overhead_seconds",
                "Time a request spends in the gateway itself, upstream time excluded.",
                OVERHEAD_BUCKETS,
                &["route"],
            )?,
            overhead_routes: OVERHEAD_ROUTES.map(|route| (route, OnceLock::new())),
            endpoint_healthy: gauge_vec(
                r,
                "gateway_upstream_endpoint_healthy",
                "1 when the endpoint is eligible for requests (healthy and not ejected).",
                &["service", "endpoint", "origin"],
            )?,
            endpoint_in_flight: gauge_vec(
                r,
                "gateway_upstream_endpoint_in_flight",
                "Requests in flight per endpoint.",
                &["service", "endpoint"],
            )?,
            stream_faults: counter_vec(
                r,
                "gateway_stream_faults_total",
                "Streams that ended without completing, by cause.",
                &["service", "fault"],
            )?,
            active_streams: gauge(
                r,
                "gateway_active_streams",
                "SSE streams being relayed to clients now (REST and WebSocket).",
            )?,
            discovery_errors: counter(
                r,
                "gateway_discovery_errors_total",
                "Discovery results rejected (broken service files, unreachable back-ends); the last good set stays.",
            )?,
            discovery_degraded: gauge(
                r,
                "gateway_discovery_degraded",
                "1 while the discovery back-end cannot be reached; the pools keep their last good set.",
            )?,
            endpoint_state: gauge_vec(
                r,
                "gateway_upstream_endpoint_state",
                "1 for each endpoint's current state: eligible, pending (before its first passing check), unhealthy, ejected or draining.",
                &["service", "endpoint", "origin", "state"],
            )?,
            usage: UsageMetrics::new(r)?,
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
        let seconds = overhead.as_secs_f64();
        match self
            .overhead_routes
            .iter()
            .find(|(known, _)| *known == route)
        {
            Some((_, histogram)) => histogram
                .get_or_init(|| self.overhead.with_label_values(&[route]))
                .observe(seconds),
            None => self.overhead.with_label_values(&[route]).observe(seconds),
        }
    }

    /// Counts one billed request and its tokens. `model` is the route's label (an alias, or
    /// `<service>/*`), a set the configuration and discovery bound, capped all the same; the
    /// key is its numeric id. A warm series is counted through handles resolved on its first
    /// request (`metrics/requests.rs`), with no allocation and no label hashing.
    pub fn count_request(&self, request: BilledRequest<'_>) {
        self.usage.requests.count(&request);
    }

    /// `gateway_rate_limit_refusals_total`, for the limiter's callers to count their 429s.
    pub fn rate_limit_refusals(&self) -> IntCounterVec {
        self.usage.rate_limit_refusals.clone()
    }

    /// Counts an open SSE stream until the returned guard is dropped. One count serves both
    /// readers: the overview reads it live, and a scrape copies it into `gateway_active_streams`.
    pub fn stream_opened(&self) -> OpenStream {
        self.overview.stream_opened()
    }

    pub fn count_stream_fault(&self, service: &str, fault: &str) {
        self.stream_faults
            .with_label_values(&[service, fault])
            .inc();
    }
}

/// One request as billed, for [`Metrics::count_request`].
pub struct BilledRequest<'a> {
    pub key_id: Option<i64>,
    pub model: &'a str,
    pub status: u16,
    /// Cached answers count as requests but bill no tokens (pass zero).
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> Result<C, prometheus::Error> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
    register(registry, IntCounter::new(name, help)?)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    register(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    register(registry, IntGauge::new(name, help)?)
}

fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, prometheus::Error> {
    register(registry, IntGaugeVec::new(Opts::new(name, help), labels)?)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
    labels: &[&str],
) -> Result<HistogramVec, prometheus::Error> {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    register(registry, HistogramVec::new(opts, labels)?)
}
