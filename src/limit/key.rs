//! Keys: client addresses grouped by prefix, users and domains, and the allowlist.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::LimitError;

/// How client addresses are grouped into keys.
///
/// The IPv6 default is /64: it is the smallest prefix normally assigned to one site or one
/// customer LAN (SLAAC needs a /64, RFC 7421), so one subscriber controls all 2^64 addresses of
/// it and could otherwise rotate addresses to escape a per-address limit or fill the table.
/// Postfix's anvil uses /84 by default, which still leaves a single /64 holder 2^20 distinct
/// keys: enough to occupy a million-slot table alone. Coarser prefixes (/56, /48) are stricter
/// still but put more unrelated customers behind one key; hosts that share a /64 (some VPS
/// providers) share a limit with /64, which is the safe side for a mail server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyConfig {
    ipv4_prefix: u8,
    ipv6_prefix: u8,
}

impl Default for KeyConfig {
    /// IPv4 /32, IPv6 /64.
    fn default() -> Self {
        KeyConfig { ipv4_prefix: 32, ipv6_prefix: 64 }
    }
}

impl KeyConfig {
    /// Group IPv4 clients by `/ipv4_prefix` and IPv6 clients by `/ipv6_prefix`.
    ///
    /// # Errors
    /// [`LimitError::InvalidPrefix`] for an IPv4 prefix over 32 or an IPv6 prefix over 128.
    pub fn new(ipv4_prefix: u8, ipv6_prefix: u8) -> Result<Self, LimitError> {
        if ipv4_prefix > 32 {
            return Err(LimitError::InvalidPrefix(ipv4_prefix));
        }
        if ipv6_prefix > 128 {
            return Err(LimitError::InvalidPrefix(ipv6_prefix));
        }
        Ok(KeyConfig { ipv4_prefix, ipv6_prefix })
    }

    /// The IPv4 prefix length.
    #[must_use]
    pub fn ipv4_prefix(&self) -> u8 {
        self.ipv4_prefix
    }

    /// The IPv6 prefix length.
    #[must_use]
    pub fn ipv6_prefix(&self) -> u8 {
        self.ipv6_prefix
    }
}

const KIND_V4: u8 = 4;
const KIND_V6: u8 = 6;
const KIND_USER: u8 = b'u';
const KIND_DOMAIN: u8 = b'd';
const KIND_CUSTOM: u8 = b'c';

/// What a limit is counted against: a client network, an authenticated user or a sender
/// domain. 17 bytes, `Copy`; tables store only a 64-bit keyed fingerprint of it.
///
/// Users and domains are hashed to 128 bits (a fixed-size key keeps table slots compact).
/// The name hash is not cryptographic, so two crafted names can collide and share a limit;
/// that gives an attacker nothing they could not do directly, since whoever can make uses
/// count against a name they choose can choose the victim's name itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey {
    kind: u8,
    value: u128,
}

impl ClientKey {
    /// The key of a client address under `config`: IPv4 (and IPv4-mapped IPv6, `::ffff:a.b.c.d`)
    /// masked to the IPv4 prefix, IPv6 masked to the IPv6 prefix.
    #[must_use]
    pub fn from_ip(ip: IpAddr, config: &KeyConfig) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientKey::ipv4(v4, config.ipv4_prefix),
            IpAddr::V6(v6) => ClientKey::ipv6(v6, config.ipv6_prefix),
        }
    }

    /// The key of the IPv4 network of `addr` with `prefix` bits (clamped to 32).
    #[must_use]
    pub fn ipv4(addr: Ipv4Addr, prefix: u8) -> Self {
        let bits = u32::from(addr);
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0);
        ClientKey { kind: KIND_V4, value: u128::from(bits & mask) }
    }

    /// The key of the IPv6 network of `addr` with `prefix` bits (clamped to 128).
    #[must_use]
    pub fn ipv6(addr: Ipv6Addr, prefix: u8) -> Self {
        let bits = u128::from(addr);
        let mask = u128::MAX.checked_shl(128 - u32::from(prefix.min(128))).unwrap_or(0);
        ClientKey { kind: KIND_V6, value: bits & mask }
    }

    /// The key of an authenticated user name, byte for byte (normalise it first if your
    /// authentication is case-insensitive).
    #[must_use]
    pub fn user(name: &str) -> Self {
        ClientKey { kind: KIND_USER, value: hash128(KIND_USER, name.bytes()) }
    }

    /// The key of a domain (a sender domain, a HELO name): ASCII case-insensitive, a trailing
    /// dot ignored.
    #[must_use]
    pub fn domain(name: &str) -> Self {
        let name = name.strip_suffix('.').unwrap_or(name);
        ClientKey {
            kind: KIND_DOMAIN,
            value: hash128(KIND_DOMAIN, name.bytes().map(|b| b.to_ascii_lowercase())),
        }
    }

    /// An application-defined key (a tenant id, a listener, a hash of your own).
    #[must_use]
    pub fn custom(value: u128) -> Self {
        ClientKey { kind: KIND_CUSTOM, value }
    }

    pub(crate) fn parts(&self) -> (u8, u128) {
        (self.kind, self.value)
    }
}

impl From<IpAddr> for ClientKey {
    /// [`ClientKey::from_ip`] with the default [`KeyConfig`] (IPv4 /32, IPv6 /64).
    fn from(ip: IpAddr) -> Self {
        ClientKey::from_ip(ip, &KeyConfig::default())
    }
}

/// Two FNV-1a lanes with different offsets, then a final mix: fast, fixed-size, not
/// cryptographic (see [`ClientKey`]).
fn hash128(kind: u8, bytes: impl Iterator<Item = u8>) -> u128 {
    const P: u64 = 0x0000_0100_0000_01b3;
    let mut a: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(kind);
    let mut b: u64 = 0x6c62_272e_07bb_0142;
    let mut len: u64 = 0;
    for byte in bytes {
        a = (a ^ u64::from(byte)).wrapping_mul(P);
        b = (b ^ u64::from(byte)).wrapping_mul(P).rotate_left(29);
        len += 1;
    }
    let a = fmix(a ^ len);
    let b = fmix(b.wrapping_add(a));
    (u128::from(a) << 64) | u128::from(b)
}

/// The murmur3 finaliser.
pub(crate) fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Clients that bypass the limits: IP networks and exact keys. Meant to be small (your own
/// relays, monitoring, trusted users): lookups are linear. Access control's CIDR lists
/// live in another module; use this for the few exemptions a limiter itself should know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    keys: Vec<ClientKey>,
}

impl Allowlist {
    /// An empty allowlist.
    #[must_use]
    pub fn new() -> Self {
        Allowlist::default()
    }

    /// Exempt the network `addr/prefix`.
    ///
    /// # Errors
    /// [`LimitError::InvalidPrefix`] when the prefix is longer than the address.
    pub fn add_network(&mut self, addr: IpAddr, prefix: u8) -> Result<&mut Self, LimitError> {
        match addr.to_canonical() {
            IpAddr::V4(v4) => {
                let p = if addr.is_ipv6() { prefix.checked_sub(96) } else { Some(prefix) };
                let p = p.filter(|p| *p <= 32).ok_or(LimitError::InvalidPrefix(prefix))?;
                let mask = u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0);
                self.v4.push((u32::from(v4) & mask, mask));
            }
            IpAddr::V6(v6) => {
                if prefix > 128 {
                    return Err(LimitError::InvalidPrefix(prefix));
                }
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                self.v6.push((u128::from(v6) & mask, mask));
            }
        }
        Ok(self)
    }

    /// Exempt one key (a user, a domain).
    pub fn add_key(&mut self, key: ClientKey) -> &mut Self {
        self.keys.push(key);
        self
    }

    /// Whether `ip` is in an exempt network.
    #[must_use]
    pub fn contains_ip(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let a = u32::from(v4);
                self.v4.iter().any(|(net, mask)| a & mask == *net)
            }
            IpAddr::V6(v6) => {
                let a = u128::from(v6);
                self.v6.iter().any(|(net, mask)| a & mask == *net)
            }
        }
    }

    /// Whether `key` is exempt.
    #[must_use]
    pub fn contains_key(&self, key: &ClientKey) -> bool {
        self.keys.contains(key)
    }

    /// Whether nothing is exempt.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty() && self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn prefixes_group_addresses() {
        let c = KeyConfig::default();
        assert_eq!(
            ClientKey::from_ip(ip("2001:db8:1:2::1"), &c),
            ClientKey::from_ip(ip("2001:db8:1:2:ffff::9"), &c)
        );
        assert_ne!(
            ClientKey::from_ip(ip("2001:db8:1:2::1"), &c),
            ClientKey::from_ip(ip("2001:db8:1:3::1"), &c)
        );
        assert_ne!(ClientKey::from_ip(ip("192.0.2.1"), &c), ClientKey::from_ip(ip("192.0.2.2"), &c));
        assert_eq!(ClientKey::from_ip(ip("::ffff:192.0.2.1"), &c), ClientKey::from_ip(ip("192.0.2.1"), &c));
        let c24 = KeyConfig::new(24, 48).unwrap();
        assert_eq!(ClientKey::from_ip(ip("192.0.2.1"), &c24), ClientKey::from_ip(ip("192.0.2.200"), &c24));
        assert_eq!(
            ClientKey::from_ip(ip("2001:db8:1:2::1"), &c24),
            ClientKey::from_ip(ip("2001:db8:1:ff::1"), &c24)
        );
        let all = KeyConfig::new(0, 0).unwrap();
        assert_eq!(ClientKey::from_ip(ip("1.2.3.4"), &all), ClientKey::from_ip(ip("9.9.9.9"), &all));
        assert!(KeyConfig::new(33, 64).is_err());
        assert!(KeyConfig::new(32, 129).is_err());
        // IPv4 0.0.0.0 and the IPv6 ::/64 stay distinct keys.
        assert_ne!(ClientKey::from_ip(ip("0.0.0.0"), &c), ClientKey::from_ip(ip("::1"), &c));
    }

    #[test]
    fn names() {
        assert_eq!(ClientKey::domain("Example.ORG."), ClientKey::domain("example.org"));
        assert_ne!(ClientKey::domain("example.org"), ClientKey::domain("example.com"));
        assert_ne!(ClientKey::user("Alice"), ClientKey::user("alice"));
        assert_ne!(ClientKey::user("alice"), ClientKey::domain("alice"));
        assert_ne!(ClientKey::user(""), ClientKey::user("\0"));
    }

    #[test]
    fn allowlist() {
        let mut a = Allowlist::new();
        assert!(a.is_empty());
        a.add_network(ip("192.0.2.0"), 24).unwrap().add_network(ip("2001:db8::"), 32).unwrap();
        a.add_key(ClientKey::user("monitor"));
        assert!(a.contains_ip(ip("192.0.2.77")));
        assert!(a.contains_ip(ip("::ffff:192.0.2.77")));
        assert!(!a.contains_ip(ip("192.0.3.1")));
        assert!(a.contains_ip(ip("2001:db8:ffff::1")));
        assert!(!a.contains_ip(ip("2001:db9::1")));
        assert!(a.contains_key(&ClientKey::user("monitor")));
        assert!(!a.contains_key(&ClientKey::user("other")));
        assert!(a.add_network(ip("10.0.0.0"), 33).is_err());
        assert!(a.add_network(ip("::ffff:10.0.0.0"), 104).is_ok());
        assert!(a.contains_ip(ip("10.0.0.9")));
    }
}
