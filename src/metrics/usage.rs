//! The business metrics: requests and tokens by key and model, keys, caches, limits and the
//! usage buffer. Counted on the request path (requests, tokens, refusals) or copied in at
//! scrape time (the rest, see `scrape.rs`).

use std::sync::Arc;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Registry};

use super::requests::RequestCounters;
use super::{counter, counter_vec, gauge, MAX_MODEL_LABELS};

#[derive(Clone)]
pub(super) struct UsageMetrics {
    /// `gateway_requests_total` and `gateway_tokens_total`, with their resolved handles.
    pub(super) requests: Arc<RequestCounters>,
    pub(super) pending_usage: IntGauge,
    pub(super) dead_letters: IntCounter,
    pub(super) key_cache: IntCounterVec,
    pub(super) response_cache: IntCounterVec,
    pub(super) active_keys: IntGauge,
    pub(super) budget_reserved: IntGauge,
    pub(super) budget_settlement_retries: IntCounter,
    pub(super) budget_settlements_abandoned: IntCounter,
    pub(super) budget_reconciled_tokens: IntCounter,
    pub(super) rate_limit_buckets: IntGauge,
    pub(super) rate_limit_redis_failures: IntCounter,
    /// Handed to the limiter's callers (`RateLimits`), which count every 429 they decide.
    pub(super) rate_limit_refusals: IntCounterVec,
}

impl UsageMetrics {
    pub(super) fn new(r: &Registry) -> Result<UsageMetrics, prometheus::Error> {
        Ok(UsageMetrics {
            requests: Arc::new(RequestCounters::new(
                counter_vec(
                    r,
                    "gateway_requests_total",
                    "Requests that reached an upstream or the response cache, by key id, model and status class.",
                    &["key", "model", "status"],
                )?,
                counter_vec(
                    r,
                    "gateway_tokens_total",
                    "Tokens billed, by key id, model and direction (prompt or completion).",
                    &["key", "model", "direction"],
                )?,
                MAX_MODEL_LABELS,
            )),
            pending_usage: gauge(
                r,
                "gateway_usage_pending_events",
                "Usage events not yet written to the database (the usage buffer's depth).",
            )?,
            dead_letters: counter(
                r,
                "gateway_usage_dead_letters_total",
                "Usage events the database refused for what they hold, kept in usage_dead_letters.",
            )?,
            key_cache: counter_vec(
                r,
                "gateway_key_cache_lookups_total",
                "API-key lookups answered from the cache (hit) or the database (miss).",
                &["result"],
            )?,
            response_cache: counter_vec(
                r,
                "gateway_response_cache_lookups_total",
                "Response-cache lookups of cacheable requests: hit (answered from the cache) or miss.",
                &["result"],
            )?,
            active_keys: gauge(
                r,
                "gateway_active_keys",
                "API keys that are neither revoked nor expired.",
            )?,
            budget_reserved: gauge(
                r,
                "gateway_budget_reserved_tokens",
                "Tokens this process's budget ledger holds for requests in flight (Redis holds the shared ledger's).",
            )?,
            budget_settlement_retries: counter(
                r,
                "gateway_budget_settlement_retries_total",
                "Batches of shared budget settlements Redis did not take at once and that were tried again.",
            )?,
            budget_settlements_abandoned: counter(
                r,
                "gateway_budget_settlements_abandoned_total",
                "Shared budget settlements given up (queue full, or Redis away for two leases); leases and reconciliation correct the ledger.",
            )?,
            budget_reconciled_tokens: counter(
                r,
                "gateway_budget_reconciled_tokens_total",
                "Tokens by which reconciliation with usage_events moved shared budget ledgers (either way).",
            )?,
            rate_limit_buckets: gauge(
                r,
                "gateway_rate_limit_buckets",
                "Subjects (keys, client IPs) the in-process rate limiter holds; idle ones are evicted.",
            )?,
            rate_limit_redis_failures: counter(
                r,
                "gateway_rate_limit_redis_failures_total",
                "Rate-limit decisions Redis failed to make in time (the fallback decided).",
            )?,
            rate_limit_refusals: counter_vec(
                r,
                "gateway_rate_limit_refusals_total",
                "Requests refused with 429 by a rate limit, by scope (key, service, login) and limit (requests, tokens).",
                &["scope", "limit"],
            )?,
        })
    }
}
