//! Where an organization's own provider address may send the server: the
//! public internet only. Otherwise a tenant admin could point "their model" at
//! `http://169.254.169.254/` or a database port on the server's private network
//! and read the answers back through the chat. Addresses the operator sets
//! (`LLM_BASE_URL`) are trusted; `ALLOW_PRIVATE_PROVIDER_URLS=true` trusts the
//! organizations' too (a single-tenant install with Ollama on the same box).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Whether `ip` is an address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        // Shared address space (carrier-grade NAT), 100.64.0.0/10.
        || (a == 100 && (64..128).contains(&b))
        // Benchmarking, 198.18.0.0/15, and reserved, 240.0.0.0/4.
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

/// The IPv4 address an IPv6 one carries to an IPv4 host: mapped
/// (`::ffff:a.b.c.d`), compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`, which
/// a NAT64 gateway forwards to that IPv4 host, private ones included) and
/// 6to4 (`2002::/16`). Judged by the IPv4 rules, or `64:ff9b::10.0.0.5` would
/// pass as public.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let [.., a, b, c, d] = ip.octets();
    match s {
        [0, 0, 0, 0, 0, 0xffff, ..] | [0, 0, 0, 0, 0, 0, ..] | [0x64, 0xff9b, 0, 0, 0, 0, ..] => {
            Some(Ipv4Addr::new(a, b, c, d))
        }
        [0x2002, hi, lo, ..] => {
            let [a, b] = hi.to_be_bytes();
            let [c, d] = lo.to_be_bytes();
            Some(Ipv4Addr::new(a, b, c, d))
        }
        _ => None,
    }
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // Unique local fc00::/7, link-local fe80::/10, old site-local fec0::/10.
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        // Teredo 2001::/32 (an IPv4 address inside, obscured).
        || (s[0] == 0x2001 && s[1] == 0)
        // Documentation 2001:db8::/32.
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        // Local-use NAT64 64:ff9b:1::/48: translated to whatever the network chose.
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
        // Discard-only 100::/64.
        || (s[0] == 0x100 && s[1..4] == [0, 0, 0]))
}

/// A DNS resolver for reqwest that drops every non-public address, so a name
/// that resolves (or is rebound) to a private one cannot be reached either.
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!(
                    "{host} resolves only to private or local addresses, which an organization's provider address may not use"
                )
                .into());
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Refuses an address literal that is not public (names are checked when they
/// are resolved, by [`PublicOnly`]).
pub fn check_host(url: &url::Url) -> Result<(), String> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(url::Host::Domain(name)) if name.eq_ignore_ascii_case("localhost") => {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
        _ => return Ok(()),
    };
    if is_public(ip) {
        Ok(())
    } else {
        Err(format!(
            "{ip} is a private or local address; an organization's provider must be on the public internet"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::{check_host, is_public};

    #[test]
    fn private_local_and_metadata_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            // IPv4 inside IPv6: NAT64, 6to4, compatible; Teredo, site-local.
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::10.0.0.5",
            "64:ff9b:1::1.1.1.1",
            "2002:7f00:1::1",
            "2002:c0a8:101::",
            "::10.0.0.1",
            "2001:0:4136:e378::1",
            "fec0::1",
            "100::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "104.18.6.192",
            "2606:4700::6810:1",
            "64:ff9b::1.1.1.1",
            "2002:101:101::1",
            "::ffff:1.1.1.1",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn names_resolving_to_local_addresses_are_not_reached() {
        use reqwest::dns::Resolve as _;
        let name = "localhost".parse().unwrap();
        let refused = match super::PublicOnly.resolve(name).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e.to_string(),
        };
        assert!(refused.contains("private or local"), "{refused}");
    }

    #[test]
    fn address_literals_are_checked_names_are_left_to_the_resolver() {
        let url = |s: &str| url::Url::parse(s).unwrap();
        assert!(check_host(&url("http://169.254.169.254/latest")).is_err());
        assert!(check_host(&url("http://[::1]:11434")).is_err());
        assert!(check_host(&url("http://LOCALHOST:8080")).is_err());
        assert!(check_host(&url("https://api.mistral.ai")).is_ok());
        assert!(check_host(&url("https://1.1.1.1")).is_ok());
    }
}
