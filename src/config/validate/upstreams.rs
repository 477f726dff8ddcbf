//! The `upstream_defaults`, `services` and `models` sections: per-service policy (defaults,
//! then each service's overrides) and the model aliases routed to services.

use std::collections::BTreeMap;
use std::time::Duration;

use actors::routing::ModelAlias;
use actors::{BalanceStrategy, HealthCheckSettings, OutlierSettings, ServiceSettings};

use super::Errors;
use crate::config::raw::{RawConfig, RawModel, RawServiceSettings, RawStrategy};

/// The defaults every service starts from, and each configured service's settings.
pub(super) fn services(
    raw: &RawConfig,
    errors: &mut Errors,
) -> (ServiceSettings, BTreeMap<String, ServiceSettings>) {
    let defaults = service_settings(
        &ServiceSettings::default(),
        &raw.upstream_defaults,
        "upstream_defaults",
        errors,
    );
    let mut services = BTreeMap::new();
    for (name, overrides) in &raw.services {
        if name.is_empty() || name.contains('/') {
            errors.push(format!(
                "services.{name}: a service name must be non-empty without '/'"
            ));
        }
        let settings = service_settings(&defaults, overrides, &format!("services.{name}"), errors);
        services.insert(name.clone(), settings);
    }
    // A default `api_key` belongs to the services the configuration names; a service only
    // discovery knows of (any Consul or Kubernetes registration) is never sent it.
    let defaults = ServiceSettings {
        api_key: None,
        ..defaults
    };
    (defaults, services)
}

pub(super) fn models(raw: &[RawModel], errors: &mut Errors) -> Vec<ModelAlias> {
    let mut models = Vec::new();
    for (i, model) in raw.iter().enumerate() {
        if model.name.is_empty() || model.service.is_empty() || model.upstream_model.is_empty() {
            errors.push(format!(
                "models[{i}]: name, service and upstream_model must be non-empty"
            ));
        }
        if raw[..i].iter().any(|m| m.name == model.name) {
            errors.push(format!(
                "models[{i}].name: {:?} is defined twice",
                model.name
            ));
        }
        models.push(ModelAlias {
            name: model.name.clone(),
            service: model.service.clone(),
            upstream_model: model.upstream_model.clone(),
        });
    }
    models
}

/// `raw`'s overrides on top of `base`, checked; errors are named under `path`.
fn service_settings(
    base: &ServiceSettings,
    raw: &RawServiceSettings,
    path: &str,
    errors: &mut Errors,
) -> ServiceSettings {
    let settings = merge(base, raw);
    check_service(&settings, path, errors);
    settings
}

/// Every field `raw` sets replaces `base`'s.
fn merge(base: &ServiceSettings, raw: &RawServiceSettings) -> ServiceSettings {
    let ms = |value: Option<u64>, fallback: Duration| value.map_or(fallback, Duration::from_millis);
    ServiceSettings {
        strategy: raw.strategy.map_or(base.strategy, |s| match s {
            RawStrategy::RoundRobin => BalanceStrategy::RoundRobin,
            RawStrategy::Weighted => BalanceStrategy::Weighted,
            RawStrategy::LeastInflight => BalanceStrategy::LeastInFlight,
            RawStrategy::P2cEwma => BalanceStrategy::P2cEwma,
        }),
        health: HealthCheckSettings {
            path: raw
                .health_check_path
                .clone()
                .or_else(|| base.health.path.clone()),
            interval: ms(raw.health_check_interval_ms, base.health.interval),
            timeout: ms(raw.health_check_timeout_ms, base.health.timeout),
            healthy_threshold: raw
                .healthy_threshold
                .unwrap_or(base.health.healthy_threshold),
            unhealthy_threshold: raw
                .unhealthy_threshold
                .unwrap_or(base.health.unhealthy_threshold),
        },
        outlier: OutlierSettings {
            consecutive_failures: raw
                .ejection_consecutive_failures
                .unwrap_or(base.outlier.consecutive_failures),
            base_ejection: ms(raw.ejection_base_ms, base.outlier.base_ejection),
            max_ejection: ms(raw.ejection_max_ms, base.outlier.max_ejection),
            min_eligible: raw
                .min_eligible_endpoints
                .unwrap_or(base.outlier.min_eligible),
        },
        connect_timeout: ms(raw.connect_timeout_ms, base.connect_timeout),
        first_byte_timeout: ms(raw.first_byte_timeout_ms, base.first_byte_timeout),
        idle_timeout: ms(raw.idle_timeout_ms, base.idle_timeout),
        max_attempts: raw.max_attempts.unwrap_or(base.max_attempts),
        retry_budget_ratio: raw.retry_budget_ratio.unwrap_or(base.retry_budget_ratio),
        retry_budget_min: raw.retry_budget_min.unwrap_or(base.retry_budget_min),
        api_key: raw.api_key.clone().or_else(|| base.api_key.clone()),
        cache_shared: raw.cache_shared.unwrap_or(base.cache_shared),
        requests_per_minute: raw.requests_per_minute.or(base.requests_per_minute),
        burst: raw.burst.or(base.burst),
    }
}

fn check_service(settings: &ServiceSettings, path: &str, errors: &mut Errors) {
    let mut check = |ok: bool, field: &str, message: &str| {
        if !ok {
            errors.push(format!("{path}.{field}: {message}"));
        }
    };
    check(
        settings.requests_per_minute != Some(0) && settings.burst != Some(0),
        "requests_per_minute",
        "requests_per_minute and burst must be positive",
    );
    check(
        settings.max_attempts >= 1,
        "max_attempts",
        "must be at least 1",
    );
    check(
        (0.0..=10.0).contains(&settings.retry_budget_ratio),
        "retry_budget_ratio",
        "must be between 0 and 10",
    );
    for (field, value) in [
        ("connect_timeout_ms", settings.connect_timeout),
        ("first_byte_timeout_ms", settings.first_byte_timeout),
        ("idle_timeout_ms", settings.idle_timeout),
        ("health_check_interval_ms", settings.health.interval),
        ("health_check_timeout_ms", settings.health.timeout),
    ] {
        check(!value.is_zero(), field, "must be positive");
    }
    check(
        settings.outlier.base_ejection <= settings.outlier.max_ejection,
        "ejection_base_ms",
        "must not exceed ejection_max_ms",
    );
    if let Some(path_value) = &settings.health.path {
        check(
            path_value.starts_with('/'),
            "health_check_path",
            "must start with '/'",
        );
    }
}
