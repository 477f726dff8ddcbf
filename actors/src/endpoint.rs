//! One upstream instance: what discovery says about it and the live counters requests update.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::ewma::AtomicEwma;

/// How the gateway speaks to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http,
    Grpc,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        }
    }
}

/// Which discovery back-end reported an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    Static,
    Consul,
    Kubernetes,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Static => "static",
            Origin::Consul => "consul",
            Origin::Kubernetes => "kubernetes",
        }
    }
}

/// An endpoint as discovery reports it. Two specs with the same address are the same endpoint;
/// a change of weight or protocol updates it in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    pub host: String,
    pub port: u16,
    pub weight: u32,
    pub protocol: Protocol,
    pub origin: Origin,
}

impl EndpointSpec {
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Whether traffic to this endpoint stays on this machine (upstreams are spoken to in
    /// plain `http://`, so only then does a service's `api_key` not cross a network).
    pub fn is_loopback(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// Counters that the request path updates without a message round trip.
#[derive(Debug, Default)]
pub struct EndpointStats {
    in_flight: AtomicU32,
    consecutive_failures: AtomicU32,
    latency: AtomicEwma,
}

impl EndpointStats {
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn latency_ewma_micros(&self) -> f64 {
        self.latency.get()
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    /// A success clears the failure streak and feeds the latency average.
    pub fn record_success(&self, latency_micros: f64) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.latency.observe(latency_micros);
    }

    /// Returns the failure streak including this failure.
    pub fn record_failure(&self) -> u32 {
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn reset_failures(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }
}

/// A live endpoint shared by the pool actor and the requests using it.
#[derive(Debug)]
pub struct Endpoint {
    pub spec: EndpointSpec,
    /// `host:port`, the endpoint's identity and its metric label.
    pub address: String,
    /// `http://host:port`, prebuilt so a request does not format it.
    pub base_url: String,
    pub stats: EndpointStats,
}

impl Endpoint {
    pub fn new(spec: EndpointSpec) -> Arc<Self> {
        let address = spec.address();
        let base_url = format!("http://{address}");
        Arc::new(Endpoint {
            spec,
            address,
            base_url,
            stats: EndpointStats::default(),
        })
    }

    /// Marks one request as started; the guard ends it when dropped, so a cancelled or panicking
    /// request can never leak an in-flight count.
    pub fn start_request(self: &Arc<Self>) -> InFlightGuard {
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightGuard {
            endpoint: Arc::clone(self),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

/// Holds one in-flight slot of an endpoint for as long as a request (or its stream) lives.
#[derive(Debug)]
pub struct InFlightGuard {
    endpoint: Arc<Endpoint>,
}

impl InFlightGuard {
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.endpoint
            .stats
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn loopback_hosts_are_recognised() {
        let spec = |host: &str| EndpointSpec {
            host: host.into(),
            port: 1,
            weight: 1,
            protocol: Protocol::Http,
            origin: Origin::Static,
        };
        for host in [
            "127.0.0.1",
            "127.8.9.1",
            "::1",
            "[::1]",
            "localhost",
            "LOCALHOST",
        ] {
            assert!(spec(host).is_loopback(), "{host}");
        }
        for host in [
            "10.0.0.5",
            "python-models",
            "localhost.example.com",
            "::ffff:10.0.0.1",
        ] {
            assert!(!spec(host).is_loopback(), "{host}");
        }
    }

    use super::*;

    fn spec() -> EndpointSpec {
        EndpointSpec {
            host: "127.0.0.1".into(),
            port: 9,
            weight: 1,
            protocol: Protocol::Http,
            origin: Origin::Static,
        }
    }

    #[test]
    fn guard_releases_in_flight_slot() {
        let endpoint = Endpoint::new(spec());
        let first = endpoint.start_request();
        let second = endpoint.start_request();
        assert_eq!(endpoint.stats.in_flight(), 2);
        drop(first);
        assert_eq!(endpoint.stats.in_flight(), 1);
        drop(second);
        assert_eq!(endpoint.stats.in_flight(), 0);
    }

    #[test]
    fn success_clears_failure_streak() {
        let endpoint = Endpoint::new(spec());
        assert_eq!(endpoint.stats.record_failure(), 1);
        assert_eq!(endpoint.stats.record_failure(), 2);
        endpoint.stats.record_success(10.0);
        assert_eq!(endpoint.stats.record_failure(), 1);
    }
}
