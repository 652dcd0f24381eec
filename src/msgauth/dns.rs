//! DNS questions and answers exchanged with the application, and the caches that feed
//! the answers to mail-auth.
//!
//! mail-auth 0.13 has no resolver trait: it asks one cache per record type first and only
//! falls through to its own resolver on a miss. postern gives it caches built from the
//! application's answers, records every miss (the name recovered from the bytes the key's
//! `Hash` impl writes, see [`key_bytes`]) and builds the authenticator with no name servers,
//! so a miss costs no I/O: it becomes a temporary error in this round and a query for the
//! application before the next one.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mail_auth::{ResolverCache, common::resolver::ToReverseName};

/// A DNS record type postern may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RecordType {
    /// TXT: SPF policies and explanations, DKIM keys, DMARC policies.
    Txt,
    /// A: IPv4 addresses (SPF `a`, `mx`, `exists`, `ptr` validation).
    A,
    /// AAAA: IPv6 addresses.
    Aaaa,
    /// MX: mail exchangers (SPF `mx`).
    Mx,
    /// PTR: the client's reverse name (SPF `ptr`, `%{p}`).
    Ptr,
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordType::Txt => "TXT",
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Mx => "MX",
            RecordType::Ptr => "PTR",
        })
    }
}

/// One DNS question the check needs answered.
///
/// `name` is a lowercase fully qualified name with a trailing dot; for [`RecordType::Ptr`]
/// it is the reverse name (`4.3.2.1.in-addr.arpa.`) of [`DnsQuery::ptr_addr`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DnsQuery {
    /// The name to look up.
    pub name: String,
    /// The record type to look up.
    pub rtype: RecordType,
}

impl DnsQuery {
    /// A query for `name` (normalised: lowercase, trailing dot) and `rtype`.
    #[must_use]
    pub fn new(name: &str, rtype: RecordType) -> Self {
        DnsQuery { name: fqdn(name), rtype }
    }

    /// The PTR query for `ip`.
    #[must_use]
    pub fn ptr(ip: IpAddr) -> Self {
        let suffix = if ip.is_ipv4() { "in-addr.arpa." } else { "ip6.arpa." };
        DnsQuery { name: format!("{}.{suffix}", ip.to_reverse_name()), rtype: RecordType::Ptr }
    }

    /// For a PTR query: the address it asks about.
    #[must_use]
    pub fn ptr_addr(&self) -> Option<IpAddr> {
        if self.rtype != RecordType::Ptr {
            return None;
        }
        let name = self.name.trim_end_matches('.');
        if let Some(v4) = name.strip_suffix(".in-addr.arpa") {
            let mut octets = [0u8; 4];
            let mut parts = v4.split('.');
            for slot in octets.iter_mut().rev() {
                *slot = parts.next()?.parse().ok()?;
            }
            return parts.next().is_none().then_some(IpAddr::V4(Ipv4Addr::from(octets)));
        }
        let v6 = name.strip_suffix(".ip6.arpa")?;
        let mut value: u128 = 0;
        let mut count = 0;
        for (i, nibble) in v6.split('.').enumerate() {
            let digit = u128::from(u8::from_str_radix(nibble, 16).ok()?);
            if nibble.len() != 1 || i >= 32 {
                return None;
            }
            value |= digit << (4 * i);
            count += 1;
        }
        (count == 32).then_some(IpAddr::V6(Ipv6Addr::from(value)))
    }
}

impl fmt::Display for DnsQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.rtype)
    }
}

/// One resource record in an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Record {
    /// A TXT record: its character-strings already concatenated.
    Txt(String),
    /// An A record.
    A(Ipv4Addr),
    /// An AAAA record.
    Aaaa(Ipv6Addr),
    /// An MX record.
    Mx {
        /// Preference (lower is preferred).
        preference: u16,
        /// Exchange host name.
        exchange: String,
    },
    /// A PTR record: a host name.
    Ptr(String),
}

/// The application's answer to a [`DnsQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DnsAnswer {
    /// The records found (records of another type than the query's are ignored). An empty
    /// list means the name exists without records of that type (NODATA).
    Records(Vec<Record>),
    /// The name does not exist (NXDOMAIN).
    NxDomain,
    /// The lookup failed (SERVFAIL, timeout, refused): a temporary error.
    ServFail,
}

/// Bounds on the DNS work one check may cause. The defaults follow RFC 7208 §4.6.4 (at most
/// 10 SPF lookups that cause further lookups, 2 void lookups) with headroom for DKIM
/// (one key per signature), DMARC (tree walks) and ARC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsLimits {
    /// Query/answer rounds before the check completes with what it has; queries still open
    /// then count as temporary errors.
    pub max_rounds: u32,
    /// Distinct queries a check may ask in total.
    pub max_queries: usize,
    /// Records accepted in one answer (more is an error, the answer counts as SERVFAIL).
    pub max_records: usize,
    /// Bytes of one TXT record (after concatenation) or host name.
    pub max_record_len: usize,
}

impl Default for DnsLimits {
    fn default() -> Self {
        DnsLimits { max_rounds: 12, max_queries: 96, max_records: 32, max_record_len: 4096 }
    }
}

/// Lowercase, trailing dot.
pub(crate) fn fqdn(name: &str) -> String {
    // One allocation, with room for the dot.
    let mut out = String::with_capacity(name.len() + 1);
    out.push_str(name);
    out.make_ascii_lowercase();
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// A `Hasher` that keeps the bytes it is fed: inline up to [`INLINE`] bytes (every DNS
/// name fits), so a cache lookup allocates nothing.
struct KeyBytes {
    inline: [u8; INLINE],
    len: usize,
    spill: Vec<u8>,
}

const INLINE: usize = 272;

impl KeyBytes {
    fn new() -> Self {
        KeyBytes { inline: [0; INLINE], len: 0, spill: Vec::new() }
    }

    fn as_slice(&self) -> &[u8] {
        if self.spill.is_empty() { self.inline.get(..self.len).unwrap_or_default() } else { &self.spill }
    }
}

impl Hasher for KeyBytes {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if self.spill.is_empty()
            && let Some(slot) = self.inline.get_mut(self.len..end)
        {
            slot.copy_from_slice(bytes);
            self.len = end;
            return;
        }
        if self.spill.is_empty() {
            self.spill.extend_from_slice(self.inline.get(..self.len).unwrap_or_default());
        }
        self.spill.extend_from_slice(bytes);
    }
}

/// The bytes `key`'s `Hash` impl writes: for `str` (and `Box<str>`, which hashes as `str`)
/// the UTF-8 bytes followed by `0xff`.
///
/// mail-auth's caches are asked through `get<Q: Hash + Eq + ?Sized>`, so these bytes are
/// the only way to learn which name missed; [`name_from_key`] turns them back into a name.
pub(crate) fn key_bytes<Q: Hash + ?Sized>(key: &Q) -> Vec<u8> {
    let mut hasher = KeyBytes::new();
    key.hash(&mut hasher);
    hasher.as_slice().to_vec()
}

/// The name whose `str` key bytes are `bytes`.
pub(crate) fn name_from_key(bytes: &[u8]) -> Option<String> {
    let name = bytes.strip_suffix(&[0xff])?;
    std::str::from_utf8(name).ok().map(str::to_owned)
}

/// A cache filled from the application's answers that records what mail-auth missed.
///
/// A check holds at most [`DnsLimits::max_queries`] answers plus its preloaded ones, a few
/// per type: a vector searched linearly beats a hash map here (no hashing), and the keys
/// share one buffer (no allocation per entry).
pub(crate) struct AnswerCache<V> {
    keys: Vec<u8>,
    entries: Vec<(std::ops::Range<usize>, V)>,
    misses: RefCell<Vec<Vec<u8>>>,
}

impl<V> AnswerCache<V> {
    pub(crate) fn new() -> Self {
        AnswerCache { keys: Vec::new(), entries: Vec::new(), misses: RefCell::new(Vec::new()) }
    }

    pub(crate) fn put<K: Hash + ?Sized>(&mut self, key: &K, value: V) {
        let mut bytes = KeyBytes::new();
        key.hash(&mut bytes);
        let key = bytes.as_slice();
        match self.position(key) {
            Some(i) => {
                if let Some(slot) = self.entries.get_mut(i) {
                    slot.1 = value;
                }
            }
            None => {
                let start = self.keys.len();
                self.keys.extend_from_slice(key);
                self.entries.push((start..self.keys.len(), value));
            }
        }
    }

    fn position(&self, key: &[u8]) -> Option<usize> {
        self.entries.iter().position(|(range, _)| self.keys.get(range.clone()) == Some(key))
    }

    fn lookup(&self, key: &[u8]) -> Option<&V> {
        self.position(key).and_then(|i| self.entries.get(i)).map(|(_, v)| v)
    }

    pub(crate) fn take_misses(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.misses.borrow_mut())
    }
}

impl<K, V: Clone> ResolverCache<K, V> for AnswerCache<V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut key = KeyBytes::new();
        name.hash(&mut key);
        match self.lookup(key.as_slice()) {
            Some(value) => Some(value.clone()),
            None => {
                let mut misses = self.misses.borrow_mut();
                // Bounded: a check asks at most a few hundred names per round.
                if misses.len() < 4096 {
                    misses.push(key.as_slice().to_vec());
                }
                None
            }
        }
    }

    fn remove<Q>(&self, _name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, _key: K, _value: V, _valid_until: std::time::Instant) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_and_box_str_hash_to_name_and_0xff() {
        let boxed: Box<str> = Box::from("example.org.");
        assert_eq!(key_bytes("example.org."), b"example.org.\xff");
        assert_eq!(key_bytes(&*boxed), key_bytes("example.org."));
        assert_eq!(name_from_key(&key_bytes("a.b.")).as_deref(), Some("a.b."));
        assert_eq!(name_from_key(b"no-terminator"), None);
    }

    #[test]
    fn long_keys_spill_to_the_heap() {
        let long = "a".repeat(1000);
        let mut expected = long.clone().into_bytes();
        expected.push(0xff);
        assert_eq!(key_bytes(long.as_str()), expected);
        let mut cache: AnswerCache<u8> = AnswerCache::new();
        cache.put(long.as_str(), 1);
        assert_eq!(ResolverCache::<Box<str>, u8>::get(&cache, long.as_str()), Some(1));
    }

    #[test]
    fn cache_records_misses_and_serves_hits() {
        let mut cache: AnswerCache<u32> = AnswerCache::new();
        cache.put("hit.", 7);
        assert_eq!(ResolverCache::<Box<str>, u32>::get(&cache, "hit."), Some(7));
        assert_eq!(ResolverCache::<Box<str>, u32>::get(&cache, "miss."), None);
        cache.put("hit.", 8);
        cache.put("other.", 9);
        assert_eq!(ResolverCache::<Box<str>, u32>::get(&cache, "hit."), Some(8));
        assert_eq!(ResolverCache::<Box<str>, u32>::get(&cache, "other."), Some(9));
        assert_eq!(cache.entries.len(), 2);
        let misses = cache.take_misses();
        assert_eq!(misses.len(), 1);
        assert_eq!(name_from_key(&misses[0]).as_deref(), Some("miss."));
    }

    #[test]
    fn ptr_query_round_trips_the_address() {
        for ip in ["192.0.2.7", "2001:db8::cb01"] {
            let ip: IpAddr = ip.parse().unwrap();
            let q = DnsQuery::ptr(ip);
            assert_eq!(q.ptr_addr(), Some(ip), "{q}");
        }
        assert_eq!(DnsQuery::ptr("192.0.2.7".parse().unwrap()).name, "7.2.0.192.in-addr.arpa.");
        assert_eq!(DnsQuery::new("x.in-addr.arpa", RecordType::Ptr).ptr_addr(), None);
    }
}
