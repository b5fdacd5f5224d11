//! Who a request comes from, for per-client limits (docs/relay.md "Limits"): rate limits,
//! storage quotas and long-poll slots are per client, where a client is
//!
//! - an IPv4 address (an IPv4-mapped IPv6 address counts as its IPv4 address),
//! - an IPv6 /64 (one subscriber usually holds a whole /64, so single addresses would let
//!   one host take 2^64 quotas),
//! - behind a configured trusted proxy (`--trusted-proxy`): the address that proxy reports in
//!   `X-Forwarded-For`, and only when the TCP peer IS that proxy. Anyone else's
//!   `X-Forwarded-For` is ignored (it is client-controlled text).
//!
//! Requests without a socket address (the in-process tests' `oneshot`) are
//! [`ClientId::Unknown`], one client of its own.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use crate::config::Config;

/// Header a reverse proxy appends the address of its client to.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// A client for per-client limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientId {
    /// An IPv4 address.
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6([u8; 8]),
    /// No socket address known (in-process requests).
    Unknown,
}

impl ClientId {
    /// The client of a peer address: IPv4 as is, IPv6 grouped by /64.
    pub fn from_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    let mut p = [0u8; 8];
                    p.copy_from_slice(&o[..8]);
                    Self::V6(p)
                }
            },
        }
    }

    /// A stable byte encoding (kind tag, then the address bytes), the input of the
    /// pseudonymous storage key (`crate::quota::ClientKeys`).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::V4(a) => [&[4u8][..], a].concat(),
            Self::V6(p) => [&[6u8][..], p].concat(),
            Self::Unknown => vec![0],
        }
    }
}

/// The client of a request from `peer` with `headers`, given the trusted proxies.
///
/// `X-Forwarded-For` counts only when `peer` is a trusted proxy. Its entries are read from the
/// right (the hop nearest to us first): trusted proxies are skipped, the first other address
/// is the client. An entry that does not parse stops the walk at the proxy that wrote it (its
/// own address is then the client: a broken or hostile chain shares one quota). If every entry
/// is a trusted proxy, the leftmost one is the client.
pub fn identify(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpAddr]) -> ClientId {
    let Some(peer) = peer else {
        return ClientId::Unknown;
    };
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|t| same_ip(t, ip));
    if !is_trusted(&peer) {
        return ClientId::from_ip(peer);
    }
    let mut entries: Vec<&str> = Vec::new();
    for v in headers.get_all(X_FORWARDED_FOR) {
        let Ok(s) = v.to_str() else {
            return ClientId::from_ip(peer);
        };
        entries.extend(s.split(',').map(str::trim).filter(|e| !e.is_empty()));
    }
    let mut client = peer;
    for e in entries.iter().rev() {
        match parse_hop(e) {
            Some(ip) if is_trusted(&ip) => client = ip,
            Some(ip) => return ClientId::from_ip(ip),
            None => break,
        }
    }
    ClientId::from_ip(client)
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`1.2.3.4:5`,
/// `[2001:db8::1]:5`).
fn parse_hop(e: &str) -> Option<IpAddr> {
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(ip);
    }
    e.parse::<SocketAddr>().ok().map(|s| s.ip())
}

/// Equality with IPv4-mapped IPv6 addresses equal to their IPv4 address.
fn same_ip(a: &IpAddr, b: &IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// Parses `--trusted-proxy`: addresses separated by commas (empty: none).
pub fn parse_trusted(list: &str) -> Result<Vec<IpAddr>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpAddr>()
                .map_err(|_| format!("--trusted-proxy: not an IP address: {s}"))
        })
        .collect()
}

/// Middleware: works out the request's [`ClientId`] once and stores it in the extensions.
pub async fn identify_layer(
    State(config): State<Arc<Config>>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip());
    let id = identify(peer, req.headers(), &config.trusted_proxies);
    req.extensions_mut().insert(id);
    next.run(req).await
}

impl<S: Send + Sync> FromRequestParts<S> for ClientId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientId>()
            .copied()
            .unwrap_or(ClientId::Unknown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(X_FORWARDED_FOR, v.parse().expect("value"));
        }
        h
    }

    #[test]
    fn addresses_and_prefixes() {
        assert_eq!(
            ClientId::from_ip(ip("192.0.2.7")),
            ClientId::V4([192, 0, 2, 7])
        );
        assert_eq!(
            ClientId::from_ip(ip("::ffff:192.0.2.7")),
            ClientId::V4([192, 0, 2, 7])
        );
        // One /64: one client; the next /64: another.
        let a = ClientId::from_ip(ip("2001:db8:1:2:aaaa::1"));
        assert_eq!(a, ClientId::from_ip(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")));
        assert_ne!(a, ClientId::from_ip(ip("2001:db8:1:3::1")));
        assert_eq!(identify(None, &HeaderMap::new(), &[]), ClientId::Unknown);
    }

    #[test]
    fn forwarded_for_only_from_a_trusted_peer() {
        let proxy = ip("10.0.0.1");
        let trusted = [proxy];
        let h = xff(&["198.51.100.9"]);
        // The proxy reports its client.
        assert_eq!(
            identify(Some(proxy), &h, &trusted),
            ClientId::V4([198, 51, 100, 9])
        );
        // Anybody else's header is ignored.
        assert_eq!(
            identify(Some(ip("203.0.113.5")), &h, &trusted),
            ClientId::V4([203, 0, 113, 5])
        );
        // Without a configured proxy it is ignored too.
        assert_eq!(identify(Some(proxy), &h, &[]), ClientId::V4([10, 0, 0, 1]));
        // A client-sent (spoofed) entry left of the proxy's own entry does not count.
        let h = xff(&["1.1.1.1, 198.51.100.9"]);
        assert_eq!(
            identify(Some(proxy), &h, &trusted),
            ClientId::V4([198, 51, 100, 9])
        );
        // Several headers read as one list; trusted hops are skipped.
        let two = [proxy, ip("10.0.0.2")];
        let h = xff(&["198.51.100.9", "10.0.0.2"]);
        assert_eq!(
            identify(Some(proxy), &h, &two),
            ClientId::V4([198, 51, 100, 9])
        );
        // Garbage stops at the proxy; ports and brackets are understood.
        assert_eq!(
            identify(Some(proxy), &xff(&["nonsense"]), &trusted),
            ClientId::V4([10, 0, 0, 1])
        );
        assert_eq!(
            identify(Some(proxy), &xff(&["[2001:db8::5]:443"]), &trusted),
            ClientId::from_ip(ip("2001:db8::"))
        );
        // No header: the proxy itself.
        assert_eq!(
            identify(Some(proxy), &HeaderMap::new(), &trusted),
            ClientId::V4([10, 0, 0, 1])
        );
        assert!(parse_trusted("10.0.0.1, ::1").is_ok());
        assert!(parse_trusted("").expect("empty").is_empty());
        assert!(parse_trusted("10.0.0.0/8").is_err());
    }
}
