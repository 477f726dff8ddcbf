//! Kubernetes discovery: EndpointSlices (discovery.k8s.io/v1) in one namespace, selected by a
//! label or by service name, followed with kube-runtime's watcher, which re-lists after a
//! `410 Gone` and resumes from bookmarks.
//!
//! Ready endpoints that are not terminating become pool endpoints; a terminating one leaves the
//! set, so the pool drains it (no new requests, running ones finish). The port is the slice's
//! port named `grpc` (when gRPC is preferred) or `http`, else its only port. A slice may carry
//! the annotations `aigateway.io/weight` and `aigateway.io/health-check`.

use std::collections::BTreeMap;
use std::time::Duration;

use actors::discovery::backoff::Backoff;
use actors::discovery::{DiscoveredService, DiscoveryError, ServiceDiscovery, ServiceSet};
use actors::{EndpointSpec, Origin, Protocol};
use futures_util::future::LocalBoxFuture;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;

use super::DEFAULT_HEALTH_PATH;
use crate::config::KubernetesConfig;

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const WEIGHT_ANNOTATION: &str = "aigateway.io/weight";
const HEALTH_ANNOTATION: &str = "aigateway.io/health-check";

type SliceEvents = BoxStream<'static, Result<watcher::Event<EndpointSlice>, watcher::Error>>;

/// The Kubernetes back-end. `discover` returns after each change once the first list is
/// complete; during a re-list the previous slices stay until the new list is whole. Without a
/// client yet (no credentials, a bad URL) each call tries to build one, with back-off.
pub struct KubernetesDiscovery {
    config: KubernetesConfig,
    events: Option<SliceEvents>,
    slices: BTreeMap<String, EndpointSlice>,
    /// Slices of a list in progress; swapped in whole at `InitDone`.
    relisting: Option<BTreeMap<String, EndpointSlice>>,
    listed: bool,
    backoff: Backoff,
    pause: Duration,
    preferred: Protocol,
    /// Watches that expired (410 Gone) and were re-listed.
    pub relists: u64,
}

fn unreachable(message: String) -> DiscoveryError {
    DiscoveryError::Unreachable {
        backend: "kubernetes",
        message,
    }
}

impl KubernetesDiscovery {
    pub fn new(config: &KubernetesConfig, preferred: Protocol) -> Self {
        KubernetesDiscovery {
            config: config.clone(),
            events: None,
            slices: BTreeMap::new(),
            relisting: None,
            listed: false,
            backoff: Backoff::new(config.retry_base, config.retry_max),
            pause: Duration::ZERO,
            preferred,
            relists: 0,
        }
    }

    /// Builds the client and the watch: `api_url` without credentials when configured,
    /// otherwise the in-cluster service account, otherwise the kubeconfig.
    async fn connect(&self) -> Result<SliceEvents, DiscoveryError> {
        let config = &self.config;
        let mut client_config = match &config.api_url {
            Some(url) => {
                let uri = url
                    .parse()
                    .map_err(|error| unreachable(format!("K8S_API_URL {url:?}: {error}")))?;
                let mut client_config = kube::Config::new(uri);
                client_config.default_namespace = config.namespace.clone();
                client_config
            }
            None => kube::Config::infer().await.map_err(|error| {
                unreachable(format!(
                    "no cluster credentials (neither in-cluster nor a kubeconfig): {error}"
                ))
            })?,
        };
        // kube retries 429/503/504 up to 15 times with back-off growing to minutes, which would
        // hide an outage; the watcher's own jittered back-off retries, and the outage shows.
        client_config.default_retry = false;
        let client = kube::Client::try_from(client_config)
            .map_err(|error| unreachable(format!("cannot build the client: {error}")))?;
        let api: kube::Api<EndpointSlice> = kube::Api::namespaced(client, &config.namespace);
        let watch_config = watcher::Config::default().labels(&config.label_selector);
        Ok(watcher(api, watch_config).boxed())
    }

    /// The first complete list, for start-up: fails on the first error.
    pub async fn initial(&mut self) -> Result<ServiceSet, DiscoveryError> {
        self.next_change().await
    }

    async fn next_change(&mut self) -> Result<ServiceSet, DiscoveryError> {
        self.pause = Duration::ZERO;
        let mut events = match self.events.take() {
            Some(events) => events,
            None => match self.connect().await {
                Ok(events) => events,
                Err(error) => {
                    self.pause = self.backoff.next_delay(&mut rand::rng());
                    return Err(error);
                }
            },
        };
        let result = self.follow(&mut events).await;
        self.events = Some(events);
        result
    }

    /// Reads watch events until the set changes or the watch fails.
    async fn follow(&mut self, events: &mut SliceEvents) -> Result<ServiceSet, DiscoveryError> {
        loop {
            let Some(event) = events.next().await else {
                return Err(unreachable("the watch stream ended".into()));
            };
            match event {
                Ok(watcher::Event::Init) => self.relisting = Some(BTreeMap::new()),
                Ok(watcher::Event::InitApply(slice)) => {
                    let name = slice.metadata.name.clone().unwrap_or_default();
                    self.relisting
                        .get_or_insert_with(BTreeMap::new)
                        .insert(name, slice);
                }
                Ok(watcher::Event::InitDone) => {
                    self.slices = self.relisting.take().unwrap_or_default();
                    self.listed = true;
                    self.backoff.reset();
                    return Ok(self.current());
                }
                Ok(watcher::Event::Apply(slice)) => {
                    let name = slice.metadata.name.clone().unwrap_or_default();
                    self.slices.insert(name, slice);
                    self.backoff.reset();
                    if self.listed {
                        return Ok(self.current());
                    }
                }
                Ok(watcher::Event::Delete(slice)) => {
                    let name = slice.metadata.name.clone().unwrap_or_default();
                    self.slices.remove(&name);
                    if self.listed {
                        return Ok(self.current());
                    }
                }
                Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                    // The resource version expired: the watcher lists again from scratch and
                    // the current slices stay until that list is complete.
                    self.relists += 1;
                    tracing::info!(message = %status.message, "kubernetes watch expired; re-listing");
                }
                Err(error) => {
                    self.pause = self.backoff.next_delay(&mut rand::rng());
                    return Err(unreachable(error.to_string()));
                }
            }
        }
    }

    fn current(&self) -> ServiceSet {
        build_services(self.slices.values(), self.preferred)
    }
}

/// Groups slices by their service and keeps their ready, non-terminating endpoints.
pub fn build_services<'a>(
    slices: impl Iterator<Item = &'a EndpointSlice>,
    preferred: Protocol,
) -> ServiceSet {
    let mut services: ServiceSet = BTreeMap::new();
    for slice in slices {
        let metadata = &slice.metadata;
        let Some(service_name) = metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(SERVICE_NAME_LABEL))
            .or(metadata.name.as_ref())
            .cloned()
        else {
            continue;
        };
        let annotations = metadata.annotations.clone().unwrap_or_default();
        let weight = annotations
            .get(WEIGHT_ANNOTATION)
            .and_then(|w| w.parse::<u32>().ok())
            .unwrap_or(1)
            .max(1);
        let health_path = annotations
            .get(HEALTH_ANNOTATION)
            .filter(|p| p.starts_with('/'))
            .cloned()
            .unwrap_or_else(|| DEFAULT_HEALTH_PATH.into());
        let service = services
            .entry(service_name.clone())
            .or_insert_with(|| DiscoveredService {
                endpoints: Vec::new(),
                health_path: Some(health_path),
            });
        let Some((port, protocol)) = choose_port(slice, preferred) else {
            tracing::warn!(slice = ?metadata.name, service = %service_name, "EndpointSlice has no port named http or grpc; skipped");
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten() {
            let conditions = endpoint.conditions.as_ref();
            // A nil `ready` means ready; `terminating` endpoints are drained.
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            if !ready || terminating {
                continue;
            }
            let Some(address) = endpoint.addresses.first() else {
                continue;
            };
            let host = if address.contains(':') {
                format!("[{address}]")
            } else {
                address.clone()
            };
            let spec = EndpointSpec {
                host,
                port,
                weight,
                protocol,
                origin: Origin::Kubernetes,
            };
            if !service
                .endpoints
                .iter()
                .any(|e| e.address() == spec.address())
            {
                service.endpoints.push(spec);
            }
        }
    }
    for service in services.values_mut() {
        service.endpoints.sort_by_key(EndpointSpec::address);
    }
    services
}

fn choose_port(slice: &EndpointSlice, preferred: Protocol) -> Option<(u16, Protocol)> {
    let ports = slice.ports.as_deref().unwrap_or_default();
    let named = |name: &str| {
        ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
    };
    let grpc = named("grpc").map(|p| (p, Protocol::Grpc));
    let http = named("http").map(|p| (p, Protocol::Http));
    let chosen = match preferred {
        Protocol::Grpc => grpc.or(http),
        Protocol::Http => http.or(grpc),
    };
    chosen.or_else(|| match ports {
        [only] => only
            .port
            .and_then(|p| u16::try_from(p).ok())
            .map(|p| (p, Protocol::Http)),
        _ => None,
    })
}

impl ServiceDiscovery for KubernetesDiscovery {
    fn origin(&self) -> Origin {
        Origin::Kubernetes
    }

    fn discover(&mut self) -> LocalBoxFuture<'_, Result<ServiceSet, DiscoveryError>> {
        Box::pin(self.next_change())
    }

    /// Zero while the watch is healthy (it blocks by itself); the jittered back-off after an
    /// error.
    fn interval(&self) -> Duration {
        self.pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(json: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json).expect("an EndpointSlice")
    }

    #[test]
    fn ready_endpoints_become_pool_endpoints() {
        let slices = [
            slice(serde_json::json!({
            "metadata": {"name": "llm-abc", "labels": {"kubernetes.io/service-name": "llm"},
                         "annotations": {"aigateway.io/weight": "3"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8000}, {"name": "grpc", "port": 50051}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.2"]},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.4"], "conditions": {"ready": true, "terminating": true}}
            ]})),
            slice(serde_json::json!({
                "metadata": {"name": "llm-def", "labels": {"kubernetes.io/service-name": "llm"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8000}],
                "endpoints": [{"addresses": ["10.0.0.5"]}]})),
        ];
        let set = build_services(slices.iter(), Protocol::Http);
        let seen: Vec<_> = set["llm"]
            .endpoints
            .iter()
            .map(|e| (e.address(), e.weight, e.protocol))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("10.0.0.1:8000".to_string(), 3, Protocol::Http),
                ("10.0.0.2:8000".to_string(), 3, Protocol::Http),
                ("10.0.0.5:8000".to_string(), 1, Protocol::Http),
            ]
        );
        assert_eq!(set["llm"].health_path.as_deref(), Some(DEFAULT_HEALTH_PATH));
        let set = build_services(slices[..1].iter(), Protocol::Grpc);
        assert_eq!(set["llm"].endpoints[0].address(), "10.0.0.1:50051");
        assert_eq!(set["llm"].endpoints[0].protocol, Protocol::Grpc);
    }

    #[test]
    fn a_slice_without_a_usable_port_is_skipped() {
        let slices = [slice(serde_json::json!({
            "metadata": {"name": "x", "labels": {"kubernetes.io/service-name": "x"}},
            "addressType": "IPv4",
            "ports": [{"name": "metrics", "port": 9090}, {"name": "admin", "port": 9091}],
            "endpoints": [{"addresses": ["10.0.0.1"]}]}))];
        let set = build_services(slices.iter(), Protocol::Http);
        assert!(set["x"].endpoints.is_empty());
    }
}
