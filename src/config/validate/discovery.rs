//! The `discovery` section: which back-end feeds the pools (static file, Consul, Kubernetes)
//! and how each is reached.

use std::time::Duration;

use actors::Protocol;

use super::Errors;
use crate::config::raw::{DiscoveryType, RawConfig, RawConsul, RawKubernetes};
use crate::config::runtime::{
    ConsulConfig, ConsulSelection, DiscoveryBackend, DiscoveryConfig, KubernetesConfig,
};

/// `None` when discovery is off.
pub(super) fn discovery(raw: &RawConfig, errors: &mut Errors) -> Option<DiscoveryConfig> {
    if !raw.discovery.enabled {
        return None;
    }
    let backend = match raw.discovery.kind {
        DiscoveryType::Static => DiscoveryBackend::Static,
        DiscoveryType::Consul => DiscoveryBackend::Consul(consul(&raw.discovery.consul, errors)),
        DiscoveryType::Kubernetes => {
            DiscoveryBackend::Kubernetes(kubernetes(&raw.discovery.kubernetes, errors))
        }
    };
    Some(DiscoveryConfig {
        static_file: raw.discovery.static_file.clone().into(),
        poll_interval: Duration::from_millis(raw.discovery.poll_interval_ms.max(50)),
        preferred_protocol: if raw.protocol_conversion.enabled
            && raw.protocol_conversion.http_to_grpc
        {
            Protocol::Grpc
        } else {
            Protocol::Http
        },
        backend,
        required: raw.discovery.required,
    })
}

fn consul(raw: &RawConsul, errors: &mut Errors) -> ConsulConfig {
    let addr = raw.addr.trim();
    let base_url = if let Some(rest) = addr.strip_prefix("http://") {
        format!("http://{}", rest.trim_end_matches('/'))
    } else if addr.starts_with("https://") {
        errors.push(format!(
            "discovery.consul.addr (CONSUL_ADDR): {addr:?}: https is not supported; talk to the local agent over http"
        ));
        String::new()
    } else {
        format!("http://{}", addr.trim_end_matches('/'))
    };
    let authority = base_url.trim_start_matches("http://");
    if authority.is_empty() || authority.contains('/') || authority.contains(char::is_whitespace) {
        errors.push(format!(
            "discovery.consul.addr (CONSUL_ADDR): {addr:?} is not host:port or http://host:port"
        ));
    }
    let selection = if raw.services.is_empty() {
        if raw.tag.trim().is_empty() {
            errors.push(
                "discovery.consul: give services (CONSUL_SERVICES) or a tag (CONSUL_TAG)".into(),
            );
        }
        ConsulSelection::Tag(raw.tag.trim().to_string())
    } else {
        ConsulSelection::Services(raw.services.clone())
    };
    if raw.wait_secs == 0 || raw.wait_secs > 600 {
        errors.push("discovery.consul.wait_secs: must be between 1 and 600".into());
    }
    if raw.retry_base_ms == 0 || raw.retry_base_ms > raw.retry_max_ms {
        errors.push(
            "discovery.consul.retry_base_ms: must be positive and at most retry_max_ms".into(),
        );
    }
    if raw.register && raw.register_name.trim().is_empty() {
        errors.push("discovery.consul.register_name: must not be empty".into());
    }
    ConsulConfig {
        base_url,
        token: raw.token.clone().filter(|t| !t.is_empty()),
        datacenter: raw.datacenter.clone().filter(|d| !d.is_empty()),
        selection,
        wait: Duration::from_secs(raw.wait_secs),
        min_query_interval: Duration::from_millis(raw.min_query_interval_ms),
        retry_base: Duration::from_millis(raw.retry_base_ms),
        retry_max: Duration::from_millis(raw.retry_max_ms),
        register: raw
            .register
            .then(|| (raw.register_name.clone(), raw.register_address.clone())),
    }
}

fn kubernetes(raw: &RawKubernetes, errors: &mut Errors) -> KubernetesConfig {
    let valid_name = |name: &str| {
        !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if !valid_name(&raw.namespace) {
        errors.push(format!(
            "discovery.kubernetes.namespace (K8S_NAMESPACE): {:?} is not a namespace name",
            raw.namespace
        ));
    }
    let label_selector = if raw.services.is_empty() {
        if raw.label_selector.trim().is_empty() {
            errors.push("discovery.kubernetes: give services (K8S_SERVICES) or a label_selector (K8S_LABEL_SELECTOR)".into());
        }
        raw.label_selector.trim().to_string()
    } else {
        if let Some(bad) = raw.services.iter().find(|s| !valid_name(s)) {
            errors.push(format!(
                "discovery.kubernetes.services (K8S_SERVICES): {bad:?} is not a service name"
            ));
        }
        format!("kubernetes.io/service-name in ({})", raw.services.join(","))
    };
    if let Some(url) = &raw.api_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            errors.push(format!(
                "discovery.kubernetes.api_url (K8S_API_URL): {url:?} must start with http:// or https://"
            ));
        }
    }
    if raw.retry_base_ms == 0 || raw.retry_base_ms > raw.retry_max_ms {
        errors.push(
            "discovery.kubernetes.retry_base_ms: must be positive and at most retry_max_ms".into(),
        );
    }
    KubernetesConfig {
        namespace: raw.namespace.clone(),
        label_selector,
        api_url: raw.api_url.clone(),
        retry_base: Duration::from_millis(raw.retry_base_ms),
        retry_max: Duration::from_millis(raw.retry_max_ms),
    }
}
