//! The SSRF guard of deliveries (§11): an endpoint's address is checked when the
//! connection is made, after resolution, so a name that resolves to an internal address
//! (or starts to, after the endpoint was added) is refused like the address itself.
//! Redirects are never followed: a 3xx is a failed attempt.

use hyper_util::client::legacy::connect::dns::Name;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Why an address may not be connected to, or `None` when it may.
pub fn refused(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(match () {
        _ if ip.is_loopback() => "loopback",
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => "cloud metadata",
        _ if ip.is_link_local() => "link-local",
        _ if ip.is_private() => "private",
        _ if a == 100 && (64..128).contains(&b) => "shared (CGNAT)",
        _ if a == 0 => "this network",
        _ if ip.is_broadcast() || ip.is_multicast() || a >= 240 => "not unicast",
        _ if a == 192 && b == 0 && ip.octets()[2] == 0 => "IETF protocol assignments",
        _ if a == 198 && (b == 18 || b == 19) => "benchmarking",
        _ => return None,
    })
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    // An IPv4 address carried in IPv6 is judged as itself.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return refused_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return refused_v4(Ipv4Addr::new(a, b, c, d));
    }
    Some(match () {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        _ if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) => "cloud metadata",
        _ if (s[0] & 0xffc0) == 0xfe80 => "link-local",
        _ if (s[0] & 0xfe00) == 0xfc00 => "private (unique local)",
        _ if (s[0] & 0xffc0) == 0xfec0 => "site-local",
        _ if ip.is_multicast() => "not unicast",
        // 2002::/16 (6to4) carries an IPv4 address in its next 32 bits.
        _ if s[0] == 0x2002 => {
            let [a, b] = s[1].to_be_bytes();
            let [c, d] = s[2].to_be_bytes();
            return refused_v4(Ipv4Addr::new(a, b, c, d));
        }
        _ => return None,
    })
}

/// A resolver for the HTTP connector that drops refused addresses, and fails when none is
/// left, so the connection is never made to one.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

/// The error of a name that resolves only to refused addresses.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to a {why} address ({ip}); deliveries there are refused")]
pub struct Refused {
    host: String,
    ip: IpAddr,
    why: &'static str,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if allow_private {
                return Ok(addrs.into_iter());
            }
            let mut first_refused = None;
            let kept: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match refused(a.ip()) {
                    Some(why) => {
                        first_refused.get_or_insert((a.ip(), why));
                        false
                    }
                    None => true,
                })
                .collect();
            match (kept.is_empty(), first_refused) {
                (true, Some((ip, why))) => Err(Box::new(Refused { host, ip, why }) as _),
                _ => Ok(kept.into_iter()),
            }
        })
    }
}

/// The refusal of a URL whose host is an address (the connector does not resolve those).
pub fn refused_literal(uri: &http::Uri, allow_private: bool) -> Option<String> {
    if allow_private {
        return None;
    }
    let host = uri.host()?;
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    refused(ip).map(|why| format!("{ip} is a {why} address; deliveries there are refused"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_service::Service;

    #[test]
    fn every_internal_range_is_refused() {
        for (ip, why) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "cloud metadata"),
            ("169.254.10.1", "link-local"),
            ("100.64.0.1", "shared (CGNAT)"),
            ("100.127.255.254", "shared (CGNAT)"),
            ("0.0.0.0", "this network"),
            ("255.255.255.255", "not unicast"),
            ("224.0.0.1", "not unicast"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fc00::1", "private (unique local)"),
            ("fd12:3456::1", "private (unique local)"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "cloud metadata"),
            ("64:ff9b::a00:1", "private"),
            ("2002:c0a8:101::1", "private"),
            ("fd00:ec2::254", "cloud metadata"),
        ] {
            let ip: IpAddr = ip.parse().expect(ip);
            assert_eq!(refused(ip), Some(why), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:2800:220:1::1",
            "::ffff:8.8.8.8",
        ] {
            let parsed: IpAddr = ip.parse().expect(ip);
            assert_eq!(refused(parsed), None, "{ip}");
        }
    }

    #[test]
    fn literal_hosts_are_judged_before_connecting() {
        let uri: http::Uri = "http://[::1]:8080/hook".parse().expect("uri");
        assert!(refused_literal(&uri, false).is_some());
        assert!(refused_literal(&uri, true).is_none());
        let uri: http::Uri = "http://169.254.169.254/latest".parse().expect("uri");
        assert!(
            refused_literal(&uri, false)
                .expect("refused")
                .contains("metadata")
        );
        let uri: http::Uri = "https://example.com/hook".parse().expect("uri");
        assert!(refused_literal(&uri, false).is_none());
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused() {
        let mut r = GuardedResolver {
            allow_private: false,
        };
        let name: Name = "localhost".parse().expect("name");
        let err = r.call(name.clone()).await.expect_err("refused");
        assert!(err.to_string().contains("localhost resolves to a"), "{err}");
        let mut open = GuardedResolver {
            allow_private: true,
        };
        assert!(open.call(name).await.expect("allowed").next().is_some());
    }
}
