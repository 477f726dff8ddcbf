//! What a scrape does: gauges and counters kept elsewhere (pools, key cache, limiter, usage
//! buffer, store) are copied into the registry, so the request path never touches them.

use actors::UpstreamRegistryHandle;
use prometheus::IntCounter;

use super::Metrics;
use crate::state::AppState;

impl Metrics {
    /// Brings every scrape-time metric up to date and renders the registry.
    pub async fn scrape(&self, state: &AppState) -> String {
        self.refresh_endpoints(&state.pipeline.registry).await;
        self.active_streams
            .set(saturating_i64(self.overview.active_streams()));
        self.usage
            .pending_usage
            .set(saturating_i64(state.pipeline.usage.pending() as u64));
        advance_to(
            &self.usage.dead_letters,
            state
                .pipeline
                .usage
                .counters()
                .dead_lettered
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        let (hits, misses) = state.keys.counts();
        advance_to(&self.usage.key_cache.with_label_values(&["hit"]), hits);
        advance_to(&self.usage.key_cache.with_label_values(&["miss"]), misses);
        if let Some(cache) = &state.pipeline.cache {
            let (hits, misses) = cache.counts();
            advance_to(&self.usage.response_cache.with_label_values(&["hit"]), hits);
            advance_to(
                &self.usage.response_cache.with_label_values(&["miss"]),
                misses,
            );
        }
        if let Some(limits) = &state.pipeline.limits {
            let limiter = &limits.limiter;
            self.usage
                .rate_limit_buckets
                .set(saturating_i64(limiter.local_limiter().len() as u64));
            if let Some(shared) = limiter.shared_limiter() {
                advance_to(&self.usage.rate_limit_redis_failures, shared.failures());
            }
        }
        self.usage
            .budget_reserved
            .set(state.pipeline.budgets.reserved_tokens());
        if let Some(shared) = state.pipeline.budgets.shared() {
            let counters = shared.budget_counters();
            let total = |counter: &std::sync::atomic::AtomicU64| {
                counter.load(std::sync::atomic::Ordering::Relaxed)
            };
            advance_to(
                &self.usage.budget_settlement_retries,
                total(&counters.settlement_retries),
            );
            advance_to(
                &self.usage.budget_settlements_abandoned,
                total(&counters.settlements_abandoned),
            );
            advance_to(
                &self.usage.budget_reconciled_tokens,
                total(&counters.reconciled_tokens),
            );
        }
        // A failed count keeps the last value: the store's own health shows elsewhere.
        if let Ok(active) = state.store.count_active_keys().await {
            self.usage.active_keys.set(saturating_i64(active));
        }
        self.render()
    }

    /// Refreshes the endpoint gauges from the pools.
    async fn refresh_endpoints(&self, registry: &UpstreamRegistryHandle) {
        advance_to(&self.discovery_errors, registry.discovery_errors());
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
                let (service, address) = (service.as_str(), endpoint.address.as_str());
                self.endpoint_state
                    .with_label_values(&[service, address, endpoint.origin, endpoint.state])
                    .set(1);
                self.endpoint_in_flight
                    .with_label_values(&[service, address])
                    .set(i64::from(endpoint.in_flight));
                // A drained endpoint is not a member; only its in-flight count matters.
                if endpoint.state != "draining" {
                    self.endpoint_healthy
                        .with_label_values(&[service, address, endpoint.origin])
                        .set(i64::from(endpoint.eligible));
                }
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

/// Counters kept as atomics elsewhere are exported by advancing ours to their total.
fn advance_to(counter: &IntCounter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
