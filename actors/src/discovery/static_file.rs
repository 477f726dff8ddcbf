//! The static discovery back-end: a JSON file that operators edit, re-read while the gateway
//! runs.
//!
//! ```json
//! {"python-models": {"host": "python-models", "port": 5000, "protocol": "http",
//!                    "health_check": "/health"}}
//! ```
//! A service may instead list `"instances": [{"host": "a", "port": 5001, "weight": 2}, ...]`.
//!
//! An HTTP instance that also serves the gRPC contract names its second port with
//! `"grpc_port": 50051`; the gateway's preferred protocol (see [`StaticFileDiscovery::preferring`])
//! decides which of the two ports it is reached on, so one file serves both set-ups.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use serde::Deserialize;

use super::{DiscoveredService, DiscoveryError, ServiceDiscovery, ServiceSet};
use crate::endpoint::{EndpointSpec, Origin, Protocol};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileService {
    host: Option<String>,
    port: Option<u16>,
    #[serde(default)]
    protocol: Option<FileProtocol>,
    #[serde(default)]
    health_check: Option<String>,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    grpc_port: Option<u16>,
    #[serde(default)]
    instances: Option<Vec<FileInstance>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileInstance {
    host: String,
    port: u16,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    protocol: Option<FileProtocol>,
    #[serde(default)]
    grpc_port: Option<u16>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FileProtocol {
    Http,
    Grpc,
}

impl From<FileProtocol> for Protocol {
    fn from(protocol: FileProtocol) -> Self {
        match protocol {
            FileProtocol::Http => Protocol::Http,
            FileProtocol::Grpc => Protocol::Grpc,
        }
    }
}

/// Parses and validates the file's text. Errors name the service and field at fault.
/// `preferred` picks the port of instances that list both a `port` and a `grpc_port`.
pub fn parse_services(text: &str, preferred: Protocol) -> Result<ServiceSet, String> {
    let raw: BTreeMap<String, FileService> =
        serde_json::from_str(text).map_err(|error| error.to_string())?;
    raw.into_iter()
        .map(|(name, service)| {
            let parsed = parse_service(&name, service, preferred)
                .map_err(|e| format!("service {name:?}: {e}"))?;
            Ok((name, parsed))
        })
        .collect()
}

fn parse_service(
    name: &str,
    service: FileService,
    preferred: Protocol,
) -> Result<DiscoveredService, String> {
    if name.is_empty() || name.contains('/') || name.chars().any(char::is_whitespace) {
        return Err("a service name must be non-empty without '/' or spaces".into());
    }
    if let Some(path) = &service.health_check {
        if !path.starts_with('/') {
            return Err(format!("health_check {path:?} must start with '/'"));
        }
    }
    let default_protocol = service.protocol.unwrap_or(FileProtocol::Http);
    let default_weight = service.weight.unwrap_or(1);
    let mut endpoints = Vec::new();
    match (service.host, service.port, service.instances) {
        (Some(host), Some(port), None) => {
            let ports = Ports {
                port,
                protocol: default_protocol,
                grpc_port: service.grpc_port,
            };
            endpoints.push(instance(host, ports.choose(preferred)?, default_weight)?);
        }
        (None, None, Some(instances)) => {
            if service.grpc_port.is_some() {
                return Err("grpc_port goes with host/port or on each instance".into());
            }
            for i in instances {
                let ports = Ports {
                    port: i.port,
                    protocol: i.protocol.unwrap_or(default_protocol),
                    grpc_port: i.grpc_port,
                };
                endpoints.push(instance(
                    i.host,
                    ports.choose(preferred)?,
                    i.weight.unwrap_or(default_weight),
                )?);
            }
        }
        (None, None, None) => return Err("needs host and port, or instances".into()),
        (_, _, Some(_)) => return Err("give either host/port or instances, not both".into()),
        _ => return Err("host and port go together".into()),
    }
    let mut addresses: Vec<String> = endpoints.iter().map(EndpointSpec::address).collect();
    addresses.sort();
    if let Some(pair) = addresses.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(format!("instance {} is listed twice", pair[0]));
    }
    Ok(DiscoveredService {
        endpoints,
        health_path: service.health_check,
    })
}

/// An instance's ports as the file states them.
struct Ports {
    port: u16,
    protocol: FileProtocol,
    grpc_port: Option<u16>,
}

impl Ports {
    /// The port and protocol the gateway uses: the gRPC port of a dual instance when gRPC is
    /// preferred, otherwise `port` with its own protocol.
    fn choose(self, preferred: Protocol) -> Result<(u16, Protocol), String> {
        match (self.protocol, self.grpc_port, preferred) {
            (FileProtocol::Grpc, Some(_), _) => {
                Err("grpc_port is the second port of an http instance; this one is grpc".into())
            }
            (FileProtocol::Http, Some(grpc_port), Protocol::Grpc) => {
                Ok((grpc_port, Protocol::Grpc))
            }
            (protocol, _, _) => Ok((self.port, protocol.into())),
        }
    }
}

fn instance(
    host: String,
    (port, protocol): (u16, Protocol),
    weight: u32,
) -> Result<EndpointSpec, String> {
    if host.is_empty() || host.contains('/') || host.chars().any(char::is_whitespace) {
        return Err(format!("host {host:?} is not a host name or address"));
    }
    if port == 0 {
        return Err("port 0 is not a port".into());
    }
    Ok(EndpointSpec {
        host,
        port,
        weight,
        protocol,
        origin: Origin::Static,
    })
}

/// Reads the file on every call; the watcher applies only changed results.
pub struct StaticFileDiscovery {
    path: PathBuf,
    interval: Duration,
    preferred: Protocol,
}

impl StaticFileDiscovery {
    pub fn new(path: impl Into<PathBuf>, interval: Duration) -> Self {
        StaticFileDiscovery {
            path: path.into(),
            interval,
            preferred: Protocol::Http,
        }
    }

    /// Reach instances that list both a `port` and a `grpc_port` over `protocol` (HTTP unless
    /// said otherwise).
    pub fn preferring(mut self, protocol: Protocol) -> Self {
        self.preferred = protocol;
        self
    }

    /// One read, for start-up and `check-config`.
    pub async fn read(&self) -> Result<ServiceSet, DiscoveryError> {
        let path = self.path.display().to_string();
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|source| DiscoveryError::Read {
                path: path.clone(),
                source,
            })?;
        parse_services(&text, self.preferred)
            .map_err(|message| DiscoveryError::Invalid { path, message })
    }
}

impl ServiceDiscovery for StaticFileDiscovery {
    fn origin(&self) -> Origin {
        Origin::Static
    }

    fn discover(&mut self) -> LocalBoxFuture<'_, Result<ServiceSet, DiscoveryError>> {
        Box::pin(self.read())
    }

    fn interval(&self) -> Duration {
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_error(text: &str, expected: &str) {
        let error = parse_services(text, Protocol::Http).expect_err("should be rejected");
        assert!(error.contains(expected), "{error:?} lacks {expected:?}");
    }

    #[test]
    fn operators_format_parses() {
        let set = parse_services(
            r#"{"python-models": {"host": "python-models", "port": 5000, "protocol": "http", "health_check": "/health"}}"#,
            Protocol::Http,
        )
        .expect("valid");
        let service = &set["python-models"];
        assert_eq!(service.health_path.as_deref(), Some("/health"));
        assert_eq!(service.endpoints.len(), 1);
        assert_eq!(service.endpoints[0].address(), "python-models:5000");
        assert_eq!(service.endpoints[0].weight, 1);
    }

    #[test]
    fn instances_with_weights_and_protocols() {
        let set = parse_services(
            r#"{"llm": {"protocol": "grpc", "instances": [
                {"host": "a", "port": 1, "weight": 2},
                {"host": "b", "port": 2, "protocol": "http"}]}}"#,
            Protocol::Http,
        )
        .expect("valid");
        let endpoints = &set["llm"].endpoints;
        assert_eq!(
            (endpoints[0].weight, endpoints[0].protocol),
            (2, Protocol::Grpc)
        );
        assert_eq!(
            (endpoints[1].weight, endpoints[1].protocol),
            (1, Protocol::Http)
        );
    }

    #[test]
    fn a_grpc_port_is_used_when_grpc_is_preferred() {
        let text = r#"{"pm": {"host": "h", "port": 5000, "protocol": "http", "grpc_port": 50051},
                       "llm": {"instances": [{"host": "a", "port": 1, "grpc_port": 2},
                                             {"host": "b", "port": 3, "protocol": "grpc"},
                                             {"host": "c", "port": 4}]}}"#;
        let chosen = |preferred| {
            let set = parse_services(text, preferred).expect("valid");
            set.values()
                .flat_map(|service| &service.endpoints)
                .map(|e| (e.address(), e.protocol))
                .collect::<Vec<_>>()
        };
        let owned = |list: &[(&str, Protocol)]| {
            list.iter()
                .map(|(a, p)| (a.to_string(), *p))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            chosen(Protocol::Grpc),
            owned(&[
                ("a:2", Protocol::Grpc),
                ("b:3", Protocol::Grpc),
                ("c:4", Protocol::Http),
                ("h:50051", Protocol::Grpc)
            ])
        );
        assert_eq!(
            chosen(Protocol::Http),
            owned(&[
                ("a:1", Protocol::Http),
                ("b:3", Protocol::Grpc),
                ("c:4", Protocol::Http),
                ("h:5000", Protocol::Http)
            ])
        );
    }

    #[test]
    fn bad_files_are_rejected_with_reasons() {
        check_error("{", "EOF");
        check_error(r#"{"s": {"host": "a"}}"#, "host and port go together");
        check_error(r#"{"s": {}}"#, "needs host and port");
        check_error(
            r#"{"s": {"host": "a", "port": 1, "instances": []}}"#,
            "not both",
        );
        check_error(r#"{"s": {"host": "a", "port": 0}}"#, "port 0");
        check_error(r#"{"s": {"host": "a", "port": 70000}}"#, "70000");
        check_error(
            r#"{"s": {"host": "a", "port": 1, "colour": "red"}}"#,
            "unknown field `colour`",
        );
        check_error(
            r#"{"s": {"host": "a", "port": 1, "protocol": "ftp"}}"#,
            "unknown variant `ftp`",
        );
        check_error(
            r#"{"s": {"host": "a", "port": 1, "health_check": "health"}}"#,
            "must start with '/'",
        );
        check_error(r#"{"a/b": {"host": "a", "port": 1}}"#, "service \"a/b\"");
        check_error(
            r#"{"s": {"instances": [{"host": "a", "port": 1}, {"host": "a", "port": 1}]}}"#,
            "listed twice",
        );
        check_error(
            r#"{"s": {"host": "a", "port": 1, "protocol": "grpc", "grpc_port": 2}}"#,
            "this one is grpc",
        );
        check_error(
            r#"{"s": {"grpc_port": 2, "instances": [{"host": "a", "port": 1}]}}"#,
            "on each instance",
        );
    }
}
