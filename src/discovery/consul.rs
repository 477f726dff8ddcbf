//! Consul discovery: one blocking-query loop per watched service (and one on the catalog when
//! services are chosen by tag), multiplexed in one back-end so each answer yields the complete
//! service set the watcher expects. Also the gateway's optional self-registration.
//!
//! Instances come from `GET /v1/health/service/<name>?passing=true`: address (the service's,
//! else the node's), port, weight (`Meta.weight`, else `Weights.Passing`), protocol (`grpc`
//! from `Meta.protocol` or a `grpc` tag; a `Meta.grpc_port` is the second port of an HTTP
//! instance, used when gRPC is preferred) and health path (`Meta.health_check`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use actors::discovery::backoff::{Backoff, BlockingIndex};
use actors::discovery::{DiscoveredService, DiscoveryError, ServiceDiscovery, ServiceSet};
use actors::{EndpointSpec, Origin, Protocol};
use futures_util::future::LocalBoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use serde::Deserialize;

use super::DEFAULT_HEALTH_PATH;
use crate::config::{ConsulConfig, ConsulSelection};
use crate::upstream::nodelay_connector;

/// A direct client for the few Consul HTTP API calls the gateway makes.
#[derive(Clone)]
pub struct ConsulClient {
    http: awc::Client,
    base_url: String,
    token: Option<String>,
    datacenter: Option<String>,
}

impl ConsulClient {
    pub fn new(config: &ConsulConfig) -> Self {
        let connector = awc::Connector::new()
            .connector(nodelay_connector())
            .timeout(Duration::from_secs(5));
        let http = awc::Client::builder()
            .connector(connector)
            // Each request sets its own timeout: a blocking query may rightly take `wait`.
            .disable_timeout()
            .disable_redirects()
            .finish();
        ConsulClient {
            http,
            base_url: config.base_url.clone(),
            token: config.token.clone(),
            datacenter: config.datacenter.clone(),
        }
    }

    fn request(&self, method: awc::http::Method, path: &str) -> awc::ClientRequest {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        if let Some(token) = &self.token {
            request = request.insert_header(("X-Consul-Token", token.as_str()));
        }
        request
    }

    /// One (blocking) GET: the body and its `X-Consul-Index`.
    async fn blocking_get(
        &self,
        path: &str,
        index: u64,
        wait: Duration,
    ) -> Result<(u64, bytes::Bytes), String> {
        let mut query = Vec::new();
        if index > 0 {
            query.push(format!("index={index}"));
            query.push(format!("wait={}s", wait.as_secs().max(1)));
        }
        if let Some(dc) = &self.datacenter {
            query.push(format!("dc={dc}"));
        }
        let separator = if path.contains('?') { '&' } else { '?' };
        let path = if query.is_empty() {
            path.to_string()
        } else {
            format!("{path}{separator}{}", query.join("&"))
        };
        // Consul adds up to wait/16 of jitter to a blocking query.
        let timeout = wait + wait / 16 + Duration::from_secs(5);
        let mut response = self
            .request(awc::http::Method::GET, &path)
            .timeout(timeout)
            .send()
            .await
            .map_err(|error| format!("GET {path}: {error}"))?;
        let status = response.status();
        let body = response
            .body()
            .limit(16 * 1024 * 1024)
            .await
            .map_err(|error| format!("GET {path}: {error}"))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(format!("GET {path}: {status} {}", text.trim()));
        }
        let index = response
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| format!("GET {path}: no X-Consul-Index header"))?;
        Ok((index, body))
    }

    async fn put(&self, path: &str, body: Option<serde_json::Value>) -> Result<(), String> {
        let request = self
            .request(awc::http::Method::PUT, path)
            .timeout(Duration::from_secs(5));
        let result = match body {
            Some(body) => request.send_json(&body).await,
            None => request.send().await,
        };
        let mut response = result.map_err(|error| format!("PUT {path}: {error}"))?;
        if response.status().is_success() {
            return Ok(());
        }
        let text = response.body().await.unwrap_or_default();
        Err(format!(
            "PUT {path}: {} {}",
            response.status(),
            String::from_utf8_lossy(&text).trim()
        ))
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthEntry {
    node: Node,
    service: ServiceEntry,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Node {
    #[serde(default)]
    address: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceEntry {
    #[serde(default)]
    address: String,
    port: u16,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    meta: Option<HashMap<String, String>>,
    #[serde(default)]
    weights: Option<Weights>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Weights {
    passing: u32,
}

/// Turns a `/v1/health/service/<name>` answer into the service's endpoints.
pub fn parse_health(body: &[u8], preferred: Protocol) -> Result<DiscoveredService, String> {
    let entries: Vec<HealthEntry> =
        serde_json::from_slice(body).map_err(|error| error.to_string())?;
    let mut endpoints: Vec<EndpointSpec> = Vec::new();
    let mut health_path = None;
    for entry in entries {
        let service = entry.service;
        let meta = service.meta.unwrap_or_default();
        let tags = service.tags.unwrap_or_default();
        let host = if service.address.is_empty() {
            entry.node.address
        } else {
            service.address
        };
        if host.is_empty() || service.port == 0 {
            tracing::warn!(%host, port = service.port, "consul instance without an address or port; skipped");
            continue;
        }
        let declared = match meta.get("protocol").map(String::as_str) {
            Some("grpc") => Protocol::Grpc,
            Some(_) => Protocol::Http,
            None if tags.iter().any(|t| t == "grpc") => Protocol::Grpc,
            None => Protocol::Http,
        };
        let grpc_port = meta.get("grpc_port").and_then(|p| p.parse::<u16>().ok());
        let (port, protocol) = match (declared, grpc_port, preferred) {
            (Protocol::Http, Some(grpc_port), Protocol::Grpc) if grpc_port > 0 => {
                (grpc_port, Protocol::Grpc)
            }
            _ => (service.port, declared),
        };
        let weight = meta
            .get("weight")
            .and_then(|w| w.parse::<u32>().ok())
            .or(service.weights.map(|w| w.passing))
            .unwrap_or(1)
            .max(1);
        if health_path.is_none() {
            health_path = meta
                .get("health_check")
                .filter(|p| p.starts_with('/'))
                .cloned();
        }
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        let spec = EndpointSpec {
            host,
            port,
            weight,
            protocol,
            origin: Origin::Consul,
        };
        // The same address registered twice (two agents) is one endpoint.
        if !endpoints.iter().any(|e| e.address() == spec.address()) {
            endpoints.push(spec);
        }
    }
    endpoints.sort_by_key(EndpointSpec::address);
    Ok(DiscoveredService {
        endpoints,
        health_path: Some(health_path.unwrap_or_else(|| DEFAULT_HEALTH_PATH.into())),
    })
}

/// Services in a `/v1/catalog/services` answer that carry `tag`.
pub fn parse_catalog(body: &[u8], tag: &str) -> Result<Vec<String>, String> {
    let services: BTreeMap<String, Vec<String>> =
        serde_json::from_slice(body).map_err(|error| error.to_string())?;
    Ok(services
        .into_iter()
        .filter(|(_, tags)| tags.iter().any(|t| t == tag))
        .map(|(name, _)| name)
        .collect())
}

/// What one blocking query watches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Watched {
    Catalog,
    Service(String),
}

impl Watched {
    fn path(&self) -> String {
        match self {
            Watched::Catalog => "/v1/catalog/services".into(),
            Watched::Service(name) => format!("/v1/health/service/{name}?passing=true"),
        }
    }
}

/// One blocking-query loop's state.
struct Watch {
    index: BlockingIndex,
    backoff: Backoff,
    /// The last good answer (services only); `None` until the first one.
    service: Option<DiscoveredService>,
    failing: bool,
}

type Answer = (Watched, Result<(u64, bytes::Bytes), String>);

/// The Consul back-end. `discover` returns after every answer that changes the set (and after
/// recovering from an error), keeping every other query in flight.
pub struct ConsulDiscovery {
    client: ConsulClient,
    selection: ConsulSelection,
    wait: Duration,
    min_query_interval: Duration,
    retry: (Duration, Duration),
    preferred: Protocol,
    watches: BTreeMap<Watched, Watch>,
    in_flight: FuturesUnordered<LocalBoxFuture<'static, Answer>>,
}

impl ConsulDiscovery {
    pub fn new(config: &ConsulConfig, preferred: Protocol) -> Self {
        let mut discovery = ConsulDiscovery {
            client: ConsulClient::new(config),
            selection: config.selection.clone(),
            wait: config.wait,
            min_query_interval: config.min_query_interval,
            retry: (config.retry_base, config.retry_max),
            preferred,
            watches: BTreeMap::new(),
            in_flight: FuturesUnordered::new(),
        };
        let first: Vec<Watched> = match &config.selection {
            ConsulSelection::Tag(_) => vec![Watched::Catalog],
            ConsulSelection::Services(names) => {
                names.iter().cloned().map(Watched::Service).collect()
            }
        };
        for watched in first {
            discovery.start_watch(watched);
        }
        discovery
    }

    fn start_watch(&mut self, watched: Watched) {
        self.watches.insert(
            watched.clone(),
            Watch {
                index: BlockingIndex::default(),
                backoff: Backoff::new(self.retry.0, self.retry.1),
                service: None,
                failing: false,
            },
        );
        self.query(watched, Duration::ZERO);
    }

    /// Starts the next query of `watched` after `delay`.
    fn query(&mut self, watched: Watched, delay: Duration) {
        let Some(watch) = self.watches.get(&watched) else {
            return;
        };
        let client = self.client.clone();
        let index = watch.index.current();
        let wait = self.wait;
        self.in_flight.push(Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let result = client.blocking_get(&watched.path(), index, wait).await;
            (watched, result)
        }));
    }

    /// True once every watched service has answered at least once.
    pub fn complete(&self) -> bool {
        self.watches.iter().all(|(watched, watch)| match watched {
            Watched::Catalog => watch.index.current() > 0,
            Watched::Service(_) => watch.service.is_some(),
        })
    }

    /// The first complete set, for start-up: fails on the first error.
    pub async fn initial(&mut self) -> Result<ServiceSet, DiscoveryError> {
        loop {
            let set = self.next_change().await?;
            if self.complete() {
                return Ok(set);
            }
        }
    }

    fn current(&self) -> ServiceSet {
        self.watches
            .iter()
            .filter_map(|(watched, watch)| match (watched, &watch.service) {
                (Watched::Service(name), Some(service)) => Some((name.clone(), service.clone())),
                _ => None,
            })
            .collect()
    }

    async fn next_change(&mut self) -> Result<ServiceSet, DiscoveryError> {
        loop {
            let Some((watched, result)) = self.in_flight.next().await else {
                // Nothing watched (a tag no service carries yet is still a catalog watch, so
                // this only happens with an empty list, which validation refuses).
                return Ok(self.current());
            };
            let Some(watch) = self.watches.get_mut(&watched) else {
                // A service that left the catalog: its last query ends here.
                continue;
            };
            match result {
                Err(message) => {
                    let delay = watch.backoff.next_delay(&mut rand::rng());
                    watch.failing = true;
                    tracing::debug!(
                        ?watched,
                        retry_in_ms = delay.as_millis() as u64,
                        "consul query failed"
                    );
                    self.query(watched, delay);
                    return Err(DiscoveryError::Unreachable {
                        backend: "consul",
                        message,
                    });
                }
                Ok((index, body)) => {
                    let step = watch.index.observe(index);
                    watch.backoff.reset();
                    let recovered = std::mem::take(&mut watch.failing);
                    let delay = if step.rate_limit {
                        self.min_query_interval
                    } else {
                        Duration::ZERO
                    };
                    let changed = if step.changed {
                        match self.absorb(&watched, &body) {
                            Ok(changed) => changed,
                            Err(message) => {
                                // A body Consul should never send: read it again later.
                                if let Some(watch) = self.watches.get_mut(&watched) {
                                    watch.index.reset();
                                    watch.failing = true;
                                }
                                self.query(watched.clone(), self.min_query_interval);
                                return Err(DiscoveryError::Invalid {
                                    path: format!("consul {}", watched.path()),
                                    message,
                                });
                            }
                        }
                    } else {
                        false
                    };
                    self.query(watched, delay);
                    if changed || recovered {
                        return Ok(self.current());
                    }
                }
            }
        }
    }

    /// Applies a changed answer; returns true when the service set may differ.
    fn absorb(&mut self, watched: &Watched, body: &[u8]) -> Result<bool, String> {
        match watched {
            Watched::Service(_) => {
                let service = parse_health(body, self.preferred)?;
                let Some(watch) = self.watches.get_mut(watched) else {
                    return Ok(false);
                };
                let changed = watch.service.as_ref() != Some(&service);
                watch.service = Some(service);
                Ok(changed)
            }
            Watched::Catalog => {
                let ConsulSelection::Tag(tag) = &self.selection else {
                    return Ok(false);
                };
                let names = parse_catalog(body, tag)?;
                let gone: Vec<Watched> = self
                    .watches
                    .keys()
                    .filter(|w| matches!(w, Watched::Service(n) if !names.contains(n)))
                    .cloned()
                    .collect();
                let changed = !gone.is_empty();
                for watched in gone {
                    tracing::info!(?watched, "consul service no longer carries the tag");
                    self.watches.remove(&watched);
                }
                for name in names {
                    let watched = Watched::Service(name);
                    if !self.watches.contains_key(&watched) {
                        tracing::info!(?watched, "consul service found by tag");
                        self.start_watch(watched);
                    }
                }
                Ok(changed)
            }
        }
    }
}

impl ServiceDiscovery for ConsulDiscovery {
    fn origin(&self) -> Origin {
        Origin::Consul
    }

    fn discover(&mut self) -> LocalBoxFuture<'_, Result<ServiceSet, DiscoveryError>> {
        Box::pin(self.next_change())
    }

    /// The queries pace themselves (blocking, rate limit, back-off), so the watcher does not.
    fn interval(&self) -> Duration {
        Duration::ZERO
    }
}

/// The gateway's own entry in Consul, removed again on graceful shutdown.
pub struct ConsulRegistration {
    client: ConsulClient,
    pub id: String,
}

impl ConsulRegistration {
    /// `PUT /v1/agent/service/register` with an HTTP check on `/health`.
    pub async fn register(
        config: &ConsulConfig,
        name: &str,
        address: &str,
        port: u16,
    ) -> Result<ConsulRegistration, String> {
        let client = ConsulClient::new(config);
        let id = format!("{name}-{address}-{port}");
        let body = serde_json::json!({
            "ID": id,
            "Name": name,
            "Address": address,
            "Port": port,
            "Tags": ["ai-gateway"],
            "Check": {
                "HTTP": format!("http://{address}:{port}/health"),
                "Interval": "10s",
                "Timeout": "2s",
                "DeregisterCriticalServiceAfter": "5m",
            },
        });
        client.put("/v1/agent/service/register", Some(body)).await?;
        Ok(ConsulRegistration { client, id })
    }

    /// `PUT /v1/agent/service/deregister/<id>`.
    pub async fn deregister(&self) -> Result<(), String> {
        self.client
            .put(&format!("/v1/agent/service/deregister/{}", self.id), None)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_answers_map_onto_endpoints() {
        let body = br#"[
          {"Node": {"Node": "n1", "Address": "10.0.0.1"},
           "Service": {"Service": "llm", "Address": "", "Port": 5000, "Tags": ["ai-model"],
                       "Meta": {"health_check": "/healthz"}, "Weights": {"Passing": 3, "Warning": 1}}},
          {"Node": {"Node": "n2", "Address": "10.0.0.2"},
           "Service": {"Service": "llm", "Address": "10.0.1.2", "Port": 5001, "Tags": ["grpc"],
                       "Meta": {"weight": "7"}, "Weights": {"Passing": 1, "Warning": 1}}},
          {"Node": {"Node": "n3", "Address": "10.0.0.3"},
           "Service": {"Service": "llm", "Address": "10.0.1.3", "Port": 5000,
                       "Meta": {"protocol": "http", "grpc_port": "50051"}, "Weights": null}}
        ]"#;
        let over_http = parse_health(body, Protocol::Http).expect("valid");
        assert_eq!(over_http.health_path.as_deref(), Some("/healthz"));
        let seen: Vec<_> = over_http
            .endpoints
            .iter()
            .map(|e| (e.address(), e.weight, e.protocol, e.origin))
            .collect();
        assert_eq!(
            seen,
            vec![
                (
                    "10.0.0.1:5000".to_string(),
                    3,
                    Protocol::Http,
                    Origin::Consul
                ),
                (
                    "10.0.1.2:5001".to_string(),
                    7,
                    Protocol::Grpc,
                    Origin::Consul
                ),
                (
                    "10.0.1.3:5000".to_string(),
                    1,
                    Protocol::Http,
                    Origin::Consul
                ),
            ]
        );
        let over_grpc = parse_health(body, Protocol::Grpc).expect("valid");
        assert_eq!(over_grpc.endpoints[2].address(), "10.0.1.3:50051");
        assert_eq!(over_grpc.endpoints[2].protocol, Protocol::Grpc);
    }

    #[test]
    fn no_health_check_in_meta_means_the_default_path() {
        let body = br#"[{"Node": {"Address": "h"}, "Service": {"Port": 1}}]"#;
        let service = parse_health(body, Protocol::Http).expect("valid");
        assert_eq!(service.health_path.as_deref(), Some(DEFAULT_HEALTH_PATH));
        assert!(parse_health(b"{", Protocol::Http).is_err());
    }

    #[test]
    fn the_catalog_is_filtered_by_tag() {
        let body =
            br#"{"consul": [], "llm": ["ai-model", "grpc"], "db": ["sql"], "embed": ["ai-model"]}"#;
        assert_eq!(
            parse_catalog(body, "ai-model").expect("valid"),
            vec!["embed".to_string(), "llm".to_string()]
        );
    }
}
