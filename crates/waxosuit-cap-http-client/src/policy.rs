//! The per-binding egress policy: which hosts an actor may reach, and which
//! resolved addresses it may connect to.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Host names refused even under `*` or a wildcard because they serve cloud
/// instance credentials; only an exact `ALLOWED_HOSTS` entry permits them.
const METADATA_HOSTS: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
];

/// An IP network from an `ALLOWED_HOSTS` entry (a bare IP is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    fn parse(entry: &str) -> Option<IpNet> {
        let (ip, prefix) = match entry.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (entry, None),
        };
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        let addr: IpAddr = ip.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        // An IPv4-mapped entry names IPv4 hosts: kept as IPv4, with the
        // prefix counted in IPv4's 32 bits, so that it is compared as one.
        // (A mapped entry shorter than /96 also covers other IPv6 addresses;
        // it stays IPv6 and matches no IPv4 host.)
        if let IpAddr::V6(v6) = addr
            && let Some(v4) = v6.to_ipv4_mapped()
            && prefix >= 96
        {
            return Some(IpNet {
                addr: IpAddr::V4(v4),
                prefix: prefix - 96,
            });
        }
        Some(IpNet { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4-mapped IPv6 address is the same host as its IPv4 form, so
        // `::ffff:10.0.0.1` matches `10.0.0.0/8` and vice versa.
        // `parse` keeps the prefix within the family's bits; a prefix past
        // them matches nothing rather than everything.
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => match 32u32.checked_sub(self.prefix.into()) {
                Some(host_bits) => {
                    let mask = u32::MAX.checked_shl(host_bits).unwrap_or(0);
                    u32::from(net) & mask == u32::from(ip) & mask
                }
                None => false,
            },
            (IpAddr::V6(net), IpAddr::V6(ip)) => match 128u32.checked_sub(self.prefix.into()) {
                Some(host_bits) => {
                    let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
                    u128::from(net) & mask == u128::from(ip) & mask
                }
                None => false,
            },
            _ => false,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        IpAddr::V4(_) => ip,
    }
}

/// A host as it appears in a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host {
    /// An IP literal (`127.0.0.1`, `[::1]`).
    Ip(IpAddr),
    /// A DNS name, lower-cased, without a trailing dot.
    Name(String),
}

impl Host {
    /// Classifies the host part of a URI.
    pub(crate) fn parse(host: &str) -> Host {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(normalize_name(host)),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

fn normalize_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Why an `ALLOWED_HOSTS` entry is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "entry `{entry}` is not a host name, `*.domain` wildcard, `*`, IP address or CIDR \
     (no scheme, port or path)"
)]
pub(crate) struct PolicyError {
    entry: String,
}

/// Why the policy refused a destination. The text completes "actor … may
/// not reach …: ", so it says why and what the operator can do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EgressRefusal {
    /// No entry matches the host.
    #[error(
        "host `{host}` is not in ALLOWED_HOSTS for this binding{hint}; add it to the binding's \
         values"
    )]
    NotAllowed {
        /// The refused host.
        host: String,
        /// Extra explanation when the list is empty.
        hint: &'static str,
    },
    /// The host is a cloud metadata name matched only by a wildcard or `*`.
    #[error(
        "host `{host}` is a cloud metadata endpoint; only an exact ALLOWED_HOSTS entry for it \
         permits it"
    )]
    MetadataHost {
        /// The refused host.
        host: String,
    },
    /// The host is, or resolves to, an address outside the public internet.
    #[error(
        "host `{host}` resolves to {addr}, a {kind} address; only an ALLOWED_HOSTS entry naming \
         this host exactly, this IP or a CIDR containing it permits that"
    )]
    SpecialAddress {
        /// The refused host.
        host: String,
        /// The address it is or resolved to.
        addr: IpAddr,
        /// What kind of address it is.
        kind: &'static str,
    },
}

/// How the host part of a URL matched the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostMatch {
    /// Named exactly (host name, IP or CIDR): any address it resolves to is
    /// accepted, because the operator asked for exactly this destination.
    Explicit,
    /// Matched by `*` or a wildcard: only public addresses are accepted.
    PublicOnly,
}

/// The parsed `ALLOWED_HOSTS` of one binding. Empty denies everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EgressPolicy {
    any_public: bool,
    names: Vec<String>,
    /// Suffixes including the leading dot (`.example.com`).
    wildcard_suffixes: Vec<String>,
    nets: Vec<IpNet>,
}

impl EgressPolicy {
    /// Parses a comma-separated `ALLOWED_HOSTS` value.
    pub(crate) fn parse(value: &str) -> Result<EgressPolicy, PolicyError> {
        let mut policy = EgressPolicy::default();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                policy.any_public = true;
            } else if let Some(domain) = entry.strip_prefix("*.") {
                if !valid_name(domain) {
                    return Err(PolicyError {
                        entry: entry.to_string(),
                    });
                }
                policy
                    .wildcard_suffixes
                    .push(format!(".{}", normalize_name(domain)));
            } else if let Some(net) = IpNet::parse(entry) {
                policy.nets.push(net);
            } else if valid_name(entry) {
                policy.names.push(normalize_name(entry));
            } else {
                return Err(PolicyError {
                    entry: entry.to_string(),
                });
            }
        }
        Ok(policy)
    }

    /// Whether the policy denies all egress.
    pub(crate) fn is_empty(&self) -> bool {
        !self.any_public
            && self.names.is_empty()
            && self.wildcard_suffixes.is_empty()
            && self.nets.is_empty()
    }

    /// Checks the host part of a URL before anything is resolved.
    pub(crate) fn check_host(&self, host: &Host) -> Result<HostMatch, EgressRefusal> {
        match host {
            Host::Ip(ip) => {
                if self.nets.iter().any(|n| n.contains(*ip)) {
                    return Ok(HostMatch::Explicit);
                }
                if self.any_public {
                    return match special_kind(*ip) {
                        Some(kind) => Err(EgressRefusal::SpecialAddress {
                            host: host.to_string(),
                            addr: *ip,
                            kind,
                        }),
                        None => Ok(HostMatch::PublicOnly),
                    };
                }
                Err(self.not_allowed(host))
            }
            Host::Name(name) => {
                if self.names.iter().any(|n| n == name) {
                    return Ok(HostMatch::Explicit);
                }
                let wildcard = self
                    .wildcard_suffixes
                    .iter()
                    .any(|suffix| name.ends_with(suffix.as_str()));
                if !(wildcard || self.any_public) {
                    return Err(self.not_allowed(host));
                }
                if METADATA_HOSTS.contains(&name.as_str()) {
                    return Err(EgressRefusal::MetadataHost { host: name.clone() });
                }
                Ok(HostMatch::PublicOnly)
            }
        }
    }

    /// Checks one address a host name resolved to. Called for every
    /// resolution, so a name that starts resolving elsewhere (DNS
    /// rebinding) is checked again.
    pub(crate) fn check_resolved(&self, name: &str, ip: IpAddr) -> Result<(), EgressRefusal> {
        let host = Host::parse(name);
        match self.check_host(&host)? {
            HostMatch::Explicit => Ok(()),
            HostMatch::PublicOnly => {
                if self.nets.iter().any(|n| n.contains(ip)) {
                    return Ok(());
                }
                match special_kind(ip) {
                    Some(kind) => Err(EgressRefusal::SpecialAddress {
                        host: host.to_string(),
                        addr: ip,
                        kind,
                    }),
                    None => Ok(()),
                }
            }
        }
    }

    fn not_allowed(&self, host: &Host) -> EgressRefusal {
        EgressRefusal::NotAllowed {
            host: host.to_string(),
            hint: if self.is_empty() {
                " (ALLOWED_HOSTS is empty or absent, which denies all egress)"
            } else {
                ""
            },
        }
    }
}

fn valid_name(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// What kind of non-public address `ip` is, or `None` for a public one.
pub(crate) fn special_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        Some("cloud metadata")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_private() {
        Some("private-use")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified (\"this network\")")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if a == 192 && b == 0 && c == 0 {
        Some("IETF protocol assignment")
    } else if a == 198 && (18..20).contains(&b) {
        Some("benchmarking")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast() || a >= 240 {
        Some("reserved")
    } else {
        None
    }
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) {
        Some("cloud metadata")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if segments[0] & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if segments[0] & 0xffc0 == 0xfec0 {
        Some("site-local")
    } else if segments[0] & 0xfe00 == 0xfc00 {
        Some("unique-local (private-use)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if let Some(v4) = embedded_v4(ip) {
        // Mapped, compatible, NAT64 and 6to4 addresses reach the embedded
        // IPv4 host, so they are as special as it is.
        special_v4(v4)
    } else if segments[0] == 0x2001 && segments[1] == 0x0db8 {
        Some("documentation")
    } else {
        None
    }
}

fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if let Some(v4) = ip.to_ipv4_mapped() {
        Some(v4)
    } else if s[..6] == [0; 6] {
        // Deprecated IPv4-compatible form `::a.b.c.d`.
        Some(low(s[6], s[7]))
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        Some(low(s[6], s[7]))
    } else if s[0] == 0x2002 {
        Some(low(s[1], s[2]))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn special_addresses_are_classified() {
        for (addr, kind) in [
            ("127.0.0.1", "loopback"),
            ("127.9.9.9", "loopback"),
            ("::1", "loopback"),
            ("169.254.169.254", "cloud metadata"),
            ("fd00:ec2::254", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("fe80::1", "link-local"),
            ("10.1.2.3", "private-use"),
            ("172.16.0.1", "private-use"),
            ("192.168.1.1", "private-use"),
            ("fd12::1", "unique-local (private-use)"),
            ("0.0.0.0", "unspecified (\"this network\")"),
            ("::", "unspecified"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "cloud metadata"),
            ("64:ff9b::a00:1", "private-use"),
            ("2002:7f00:1::", "loopback"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
        ] {
            assert_eq!(special_kind(ip(addr)), Some(kind), "{addr}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700::1111", "172.32.0.1"] {
            assert_eq!(special_kind(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn empty_policy_denies_everything_and_says_so() {
        let policy = EgressPolicy::parse("  ").unwrap();
        let err = policy.check_host(&Host::parse("example.com")).unwrap_err();
        assert!(err.to_string().contains("denies all egress"), "{err}");
        assert!(policy.check_host(&Host::parse("93.184.216.34")).is_err());
    }

    #[test]
    fn names_wildcards_and_star() {
        let policy = EgressPolicy::parse("Example.COM, *.api.test").unwrap();
        assert_eq!(
            policy.check_host(&Host::parse("example.com.")),
            Ok(HostMatch::Explicit)
        );
        assert_eq!(
            policy.check_host(&Host::parse("v1.api.test")),
            Ok(HostMatch::PublicOnly)
        );
        // The wildcard covers subdomains only, not the apex or look-alikes.
        assert!(policy.check_host(&Host::parse("api.test")).is_err());
        assert!(policy.check_host(&Host::parse("evilapi.test")).is_err());
        assert!(policy.check_host(&Host::parse("www.example.com")).is_err());

        let star = EgressPolicy::parse("*").unwrap();
        assert_eq!(
            star.check_host(&Host::parse("anything.test")),
            Ok(HostMatch::PublicOnly)
        );
        assert!(matches!(
            star.check_host(&Host::parse("metadata.google.internal")),
            Err(EgressRefusal::MetadataHost { .. })
        ));
        assert!(matches!(
            star.check_host(&Host::parse("127.0.0.1")),
            Err(EgressRefusal::SpecialAddress { .. })
        ));
    }

    #[test]
    fn resolved_addresses_are_rechecked() {
        let policy = EgressPolicy::parse("*.example.com, internal.test, 10.0.0.0/8").unwrap();
        // Wildcard match: public addresses only, unless a CIDR names it.
        assert!(
            policy
                .check_resolved("a.example.com", ip("1.2.3.4"))
                .is_ok()
        );
        assert!(matches!(
            policy.check_resolved("a.example.com", ip("127.0.0.1")),
            Err(EgressRefusal::SpecialAddress {
                kind: "loopback",
                ..
            })
        ));
        assert!(
            policy
                .check_resolved("a.example.com", ip("10.2.3.4"))
                .is_ok()
        );
        assert!(
            policy
                .check_resolved("a.example.com", ip("192.168.1.1"))
                .is_err()
        );
        // An exactly named host may resolve anywhere: the operator asked for it.
        assert!(
            policy
                .check_resolved("internal.test", ip("192.168.1.1"))
                .is_ok()
        );
    }

    #[test]
    fn cidrs_and_ips() {
        let policy = EgressPolicy::parse("127.0.0.1, 192.168.0.0/16, [::1], fd00::/8").unwrap();
        for allowed in [
            "127.0.0.1",
            "192.168.44.1",
            "::1",
            "fd00:1::1",
            "::ffff:127.0.0.1",
        ] {
            assert_eq!(
                policy.check_host(&Host::parse(allowed)),
                Ok(HostMatch::Explicit),
                "{allowed}"
            );
        }
        for refused in ["127.0.0.2", "192.169.0.1", "::2", "fe00::1"] {
            assert!(
                policy.check_host(&Host::parse(refused)).is_err(),
                "{refused}"
            );
        }
        let zero = EgressPolicy::parse("0.0.0.0/0").unwrap();
        assert!(zero.check_host(&Host::parse("8.8.8.8")).is_ok());
    }

    /// An IPv4-mapped entry is one IPv4 host (or a network of them, its
    /// prefix counted past the 96 mapped bits), never every IPv4 host: its
    /// IPv6 prefix was once applied to IPv4's 32 bits, which wrapped to an
    /// empty mask in release builds and matched `169.254.169.254`.
    #[test]
    fn an_ipv4_mapped_entry_allows_its_own_hosts_only() {
        let one = EgressPolicy::parse("::ffff:10.1.2.3").unwrap();
        for allowed in ["10.1.2.3", "::ffff:10.1.2.3"] {
            assert_eq!(
                one.check_host(&Host::parse(allowed)),
                Ok(HostMatch::Explicit),
                "{allowed}"
            );
        }
        for refused in ["169.254.169.254", "127.0.0.1", "10.1.2.4", "8.8.8.8"] {
            assert!(one.check_host(&Host::parse(refused)).is_err(), "{refused}");
            assert!(
                one.check_resolved("a.example.com", ip(refused)).is_err(),
                "{refused}"
            );
        }
        let net = EgressPolicy::parse("[::ffff:10.0.0.0]/104").unwrap();
        assert_eq!(
            net.check_host(&Host::parse("10.200.0.1")),
            Ok(HostMatch::Explicit)
        );
        assert!(net.check_host(&Host::parse("11.0.0.1")).is_err());
        assert!(net.check_host(&Host::parse("127.0.0.1")).is_err());
        // Shorter than the mapped range: an IPv6 network, no IPv4 host in it.
        let wide = EgressPolicy::parse("::ffff:0:0/80").unwrap();
        assert!(wide.check_host(&Host::parse("127.0.0.1")).is_err());
        assert!(wide.check_host(&Host::parse("8.8.8.8")).is_err());
    }

    #[test]
    fn invalid_entries_are_rejected() {
        for bad in [
            "http://example.com",
            "example.com:443",
            "example.com/path",
            "10.0.0.0/33",
            "*.",
            "a..b",
        ] {
            assert!(EgressPolicy::parse(bad).is_err(), "{bad}");
        }
    }
}
