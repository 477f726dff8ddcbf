//! The Consul HTTP API calls the gateway makes, on a direct awc client: blocking GETs that
//! return `X-Consul-Index`, the agent's register/deregister PUTs, and the parsing of health and
//! catalog answers into endpoints.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use actors::discovery::DiscoveredService;
use actors::{EndpointSpec, Origin, Protocol};
use serde::Deserialize;

use crate::config::ConsulConfig;
use crate::discovery::DEFAULT_HEALTH_PATH;
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
    pub(super) async fn blocking_get(
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
