//! The client's IP address behind reverse proxies: `X-Forwarded-For` is believed only as far
//! as the hops that appended to it are trusted (`TRUSTED_PROXIES`).
//!
//! A client can write anything into `X-Forwarded-For`; a proxy appends the address it saw.
//! So the header is read from the right: the peer must be trusted for the header to count at
//! all, each trusted hop vouches for the entry before it, and the first untrusted entry is the
//! client. Without trusted proxies the peer address is the client, whatever the header says.

use std::net::IpAddr;

use actix_web::http::header::HeaderMap;
use actix_web::HttpRequest;
use ipnet::IpNet;

/// Addresses (single IPs or CIDR ranges) of the proxies in front of the gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses `10.0.0.0/8`, `127.0.0.1`, `::1`; every bad entry is reported.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, Vec<String>> {
        let mut networks = Vec::with_capacity(entries.len());
        let mut errors = Vec::new();
        for entry in entries {
            let entry = entry.trim();
            match entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
            {
                Ok(network) => networks.push(network),
                Err(_) => errors.push(format!("{entry:?} is not an IP address or CIDR range")),
            }
        }
        if errors.is_empty() {
            Ok(TrustedProxies { networks })
        } else {
            Err(errors)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.networks
            .iter()
            .any(|network| network.contains(&address))
    }

    /// The client address of a request that arrived from `peer` with these headers.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        // Every header line, in order, then every entry from the right.
        let values: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .filter_map(|value| value.to_str().ok())
            .collect();
        for entry in values.iter().rev().flat_map(|value| value.rsplit(',')) {
            let Some(address) = parse_entry(entry) else {
                // Garbage from the client's side of a trusted hop: stop at the last good hop.
                return client;
            };
            client = address;
            if !self.trusts(address) {
                return client;
            }
        }
        client
    }

    /// The client address of an actix request (`None` only for requests without a peer, as in
    /// unit tests).
    pub fn of_request(&self, request: &HttpRequest) -> Option<IpAddr> {
        let peer = request.peer_addr()?.ip();
        if self.is_empty() {
            return Some(canonical(peer));
        }
        Some(self.client_ip(peer, request.headers()))
    }
}

/// An entry of `X-Forwarded-For`: an IP, or an IP with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(address) = entry.parse::<IpAddr>() {
        return Some(canonical(address));
    }
    entry
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|address| canonical(address.ip()))
}

/// IPv4-mapped IPv6 addresses (dual-stack listeners) compare as the IPv4 address they carry.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn proxies(entries: &[&str]) -> TrustedProxies {
        let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        TrustedProxies::parse(&entries).expect("valid")
    }

    fn check(trusted: &[&str], peer: &str, forwarded: &[&str], expected: &str) {
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(value).expect("header"),
            );
        }
        let peer: IpAddr = peer.parse().expect("peer");
        let got = proxies(trusted).client_ip(peer, &headers);
        assert_eq!(
            got.to_string(),
            expected,
            "trusted {trusted:?}, peer {peer}, x-forwarded-for {forwarded:?}"
        );
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_forward() {
        check(&[], "203.0.113.9", &["198.51.100.1"], "203.0.113.9");
        check(
            &["10.0.0.0/8"],
            "203.0.113.9",
            &["198.51.100.1"],
            "203.0.113.9",
        );
    }

    #[test]
    fn a_trusted_proxy_vouches_for_the_entry_it_appended() {
        check(
            &["127.0.0.2"],
            "127.0.0.2",
            &["198.51.100.1"],
            "198.51.100.1",
        );
        check(
            &["10.0.0.0/8"],
            "10.1.2.3",
            &["198.51.100.1"],
            "198.51.100.1",
        );
        // Dual-stack listeners see IPv4 peers as mapped IPv6 addresses.
        check(
            &["10.0.0.0/8"],
            "::ffff:10.1.2.3",
            &["198.51.100.1"],
            "198.51.100.1",
        );
    }

    #[test]
    fn a_forged_entry_before_the_real_client_is_ignored() {
        // The client sent `X-Forwarded-For: 1.1.1.1`; nginx appended the address it saw.
        check(
            &["127.0.0.2"],
            "127.0.0.2",
            &["1.1.1.1, 127.0.0.1"],
            "127.0.0.1",
        );
        check(
            &["127.0.0.2"],
            "127.0.0.2",
            &["1.1.1.1", "127.0.0.1"],
            "127.0.0.1",
        );
    }

    #[test]
    fn chains_of_trusted_proxies_are_walked_from_the_right() {
        check(
            &["10.0.0.0/8"],
            "10.0.0.1",
            &["198.51.100.1, 10.0.0.7, 10.0.0.8"],
            "198.51.100.1",
        );
        // Everything trusted: the leftmost address is the best there is.
        check(&["10.0.0.0/8"], "10.0.0.1", &["10.0.0.7"], "10.0.0.7");
    }

    #[test]
    fn garbage_stops_at_the_last_trusted_hop() {
        check(&["10.0.0.0/8"], "10.0.0.1", &["nonsense"], "10.0.0.1");
        check(&["10.0.0.0/8"], "10.0.0.1", &["x, 10.0.0.9"], "10.0.0.9");
        check(
            &["10.0.0.0/8"],
            "10.0.0.1",
            &["[2001:db8::1]:443"],
            "2001:db8::1",
        );
        check(&["10.0.0.0/8"], "10.0.0.1", &[], "10.0.0.1");
    }

    #[test]
    fn bad_entries_are_each_reported() {
        let entries = vec!["10.0.0.0/8".to_string(), "nope".into(), "1.2.3.4/99".into()];
        let errors = TrustedProxies::parse(&entries).expect_err("invalid");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("nope"));
    }
}
