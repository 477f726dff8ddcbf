//! The `rate_limit` and `redis` sections: the limiter's defaults and, when Redis is on, how
//! limits, budgets and the cache are shared between replicas.

use std::time::Duration;

use super::Errors;
use crate::config::raw::{RawConfig, RawRedisFailure};
use crate::config::runtime::RateLimitConfig;

pub(super) fn rate_limit(raw: &RawConfig, errors: &mut Errors) -> RateLimitConfig {
    let limits = &raw.rate_limit;
    for (field, value) in [
        ("requests_per_minute", limits.requests_per_minute),
        ("burst", limits.burst),
        (
            "login_requests_per_minute",
            limits.login_requests_per_minute,
        ),
    ] {
        if value == 0 {
            errors.push(format!("rate_limit.{field}: must be positive"));
        }
    }
    if limits.tokens_per_minute == Some(0) {
        errors.push(
            "rate_limit.tokens_per_minute: must be positive (leave unset for no limit)".into(),
        );
    }
    if limits.max_buckets == 0 {
        errors.push("rate_limit.max_buckets: must be positive".into());
    }
    let redis = &raw.redis;
    let shared = if redis.enabled {
        match redis.url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) if url.starts_with("redis://") => Some(actors::shared::SharedSettings {
                url: url.to_string(),
                prefix: redis.key_prefix.clone(),
                timeout: Duration::from_millis(redis.timeout_ms.max(1)),
                pool_size: redis.pool_size.max(1),
                failure: match limits.redis_failure {
                    RawRedisFailure::Local => actors::shared::RedisFailureMode::Local,
                    RawRedisFailure::Allow => actors::shared::RedisFailureMode::Allow,
                    RawRedisFailure::Deny => actors::shared::RedisFailureMode::Deny,
                },
                budget_lease: Duration::from_millis(redis.budget_lease_ms),
                budget_reconcile: Duration::from_millis(redis.budget_reconcile_ms),
            }),
            Some(_) => {
                errors.push(
                    "redis.url (REDIS_URL): must start with redis:// (TLS is not built in)".into(),
                );
                None
            }
            None => {
                errors.push("redis.url (REDIS_URL): required when redis.enabled = true".into());
                None
            }
        }
    } else {
        None
    };
    for (field, value) in [
        ("budget_lease_ms", redis.budget_lease_ms),
        ("budget_reconcile_ms", redis.budget_reconcile_ms),
    ] {
        if value == 0 {
            errors.push(format!("redis.{field}: must be positive"));
        }
    }
    if redis.key_prefix.is_empty() {
        errors.push("redis.key_prefix: must not be empty".into());
    }
    RateLimitConfig {
        enabled: limits.enabled,
        requests_per_minute: limits.requests_per_minute,
        burst: limits.burst,
        tokens_per_minute: limits.tokens_per_minute,
        login_requests_per_minute: limits.login_requests_per_minute,
        max_buckets: limits.max_buckets,
        redis: shared,
    }
}
