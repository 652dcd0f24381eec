//! CIDR allow/deny lists for IPv4 and IPv6 where the longest matching prefix wins.
//!
//! A [`CidrList`] is immutable once built: build it with a [`CidrListBuilder`] or load it
//! from text with [`CidrList::parse`] (one `allow`/`deny` rule per line) or
//! [`CidrList::parse_with_verdict`] (a plain list of networks, all with one verdict).
//!
//! # Lookup cost
//!
//! Each address family keeps one sorted vector of networks per prefix length present in the
//! list, longest length first. A lookup masks the address once per present length and
//! binary-searches that vector, so it costs `O(L · log n)` where `L` is the number of
//! distinct prefix lengths present (at most 33 for IPv4, 129 for IPv6; in practice a handful)
//! and `n` the number of entries. It allocates nothing.
//!
//! # IPv4-mapped IPv6
//!
//! An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) is looked up as the IPv4 address it
//! carries, and a mapped network in a list (`::ffff:192.0.2.0/120`) is stored as the IPv4
//! network it covers (`192.0.2.0/24`), so a dual-stack listener cannot be used to dodge an
//! IPv4 rule.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// The network type of the lists, re-exported from the `ipnet` crate.
pub use ipnet::IpNet;

/// The default cap on the number of entries [`CidrList::parse`] accepts.
pub const DEFAULT_MAX_ENTRIES: usize = 1_000_000;

/// What a list says about an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// The address is explicitly allowed.
    Allow,
    /// The address is explicitly denied.
    Deny,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        })
    }
}

/// The result of a successful [`CidrList::lookup`]: the verdict and the prefix that gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Match {
    /// The verdict of the longest matching prefix.
    pub verdict: Verdict,
    /// The longest matching prefix (IPv4 for IPv4-mapped IPv6 addresses).
    pub prefix: IpNet,
}

/// An error loading or building a [`CidrList`]. Line numbers start at 1; for entries added
/// with [`CidrListBuilder::push`] the "line" is the 1-based order of the push.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrError {
    /// The first word of a rule is neither `allow` nor `deny`.
    #[error("line {line}: unknown keyword {keyword:?} (expected `allow` or `deny`)")]
    UnknownKeyword {
        /// The line number.
        line: usize,
        /// The word found.
        keyword: String,
    },
    /// A rule has a keyword but no network.
    #[error("line {line}: missing network after `{verdict}`")]
    MissingNetwork {
        /// The line number.
        line: usize,
        /// The keyword of the rule.
        verdict: Verdict,
    },
    /// The text is neither a CIDR network nor an IP address.
    #[error("line {line}: invalid network or address {text:?}")]
    InvalidNetwork {
        /// The line number.
        line: usize,
        /// The text that did not parse.
        text: String,
    },
    /// A network has bits set past its prefix length (`10.0.0.1/8`), usually a typo.
    #[error("line {line}: {network} has host bits set (did you mean {}?)", network.trunc())]
    HostBitsSet {
        /// The line number.
        line: usize,
        /// The network as written.
        network: IpNet,
    },
    /// Something follows the network on the line.
    #[error("line {line}: unexpected text {text:?} after the network")]
    TrailingText {
        /// The line number.
        line: usize,
        /// The unexpected text.
        text: String,
    },
    /// The same network is both allowed and denied.
    #[error("line {line}: {network} is {verdict} here but {} on line {first_line}", other(*verdict))]
    Conflict {
        /// The line of the second, conflicting rule.
        line: usize,
        /// The line of the first rule for that network.
        first_line: usize,
        /// The network.
        network: IpNet,
        /// The verdict of the second rule.
        verdict: Verdict,
    },
    /// More entries than the configured cap.
    #[error("line {line}: more than {max} entries")]
    TooManyEntries {
        /// The line number of the first entry past the cap.
        line: usize,
        /// The cap.
        max: usize,
    },
}

fn other(verdict: Verdict) -> Verdict {
    match verdict {
        Verdict::Allow => Verdict::Deny,
        Verdict::Deny => Verdict::Allow,
    }
}

/// The integer form of an address family, for masking and ordering.
trait Bits: Copy + Ord {
    fn mask(self, len: u8) -> Self;
}

impl Bits for u32 {
    fn mask(self, len: u8) -> Self {
        if len == 0 { 0 } else { self & (u32::MAX << (32 - u32::from(len.min(32)))) }
    }
}

impl Bits for u128 {
    fn mask(self, len: u8) -> Self {
        if len == 0 { 0 } else { self & (u128::MAX << (128 - u32::from(len.min(128)))) }
    }
}

/// One address family: per present prefix length (longest first), sorted networks.
#[derive(Debug, Clone, Default)]
struct Family<T> {
    levels: Vec<(u8, Vec<(T, Verdict)>)>,
}

impl<T: Bits> Family<T> {
    fn build(mut entries: Vec<(u8, T, Verdict)>) -> Self {
        // Longest prefix first, then by network; duplicates were removed by the builder.
        entries.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut levels: Vec<(u8, Vec<(T, Verdict)>)> = Vec::new();
        for (len, net, verdict) in entries {
            match levels.last_mut() {
                Some((l, v)) if *l == len => v.push((net, verdict)),
                _ => levels.push((len, vec![(net, verdict)])),
            }
        }
        Family { levels }
    }

    fn lookup(&self, addr: T) -> Option<(u8, T, Verdict)> {
        self.levels.iter().find_map(|(len, nets)| {
            let key = addr.mask(*len);
            nets.binary_search_by(|(n, _)| n.cmp(&key))
                .ok()
                .and_then(|i| nets.get(i))
                .map(|&(n, verdict)| (*len, n, verdict))
        })
    }

    fn len(&self) -> usize {
        self.levels.iter().map(|(_, v)| v.len()).sum()
    }
}

/// An immutable CIDR allow/deny list; the longest matching prefix decides.
///
/// ```
/// use postern::access::cidr::{CidrList, Verdict};
///
/// let list = CidrList::parse(
///     "# our networks\n\
///      deny  10.0.0.0/8\n\
///      allow 10.1.0.0/16   # the office\n\
///      allow 2001:db8::/32\n",
/// )?;
/// let hit = list.lookup("10.1.2.3".parse()?).unwrap();
/// assert_eq!(hit.verdict, Verdict::Allow);
/// assert_eq!(hit.prefix.to_string(), "10.1.0.0/16");
/// assert_eq!(list.verdict("10.2.0.1".parse()?), Some(Verdict::Deny));
/// // IPv4-mapped IPv6 is looked up as IPv4.
/// assert_eq!(list.verdict("::ffff:10.2.0.1".parse()?), Some(Verdict::Deny));
/// assert_eq!(list.verdict("192.0.2.1".parse()?), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct CidrList {
    v4: Family<u32>,
    v6: Family<u128>,
}

impl CidrList {
    /// An empty list: every lookup returns `None`.
    ///
    /// ```
    /// use postern::access::cidr::CidrList;
    /// assert!(CidrList::new().lookup("192.0.2.1".parse().unwrap()).is_none());
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses rules, one per line: `allow NETWORK` or `deny NETWORK`, where `NETWORK` is a
    /// CIDR network (`192.0.2.0/24`, `2001:db8::/32`) or a single address. `#` starts a
    /// comment; blank lines are ignored. At most [`DEFAULT_MAX_ENTRIES`] entries.
    ///
    /// # Errors
    ///
    /// A [`CidrError`] naming the first offending line.
    ///
    /// ```
    /// use postern::access::cidr::{CidrError, CidrList};
    ///
    /// let err = CidrList::parse("allow 192.0.2.0/24\n\nblock 10.0.0.0/8\n").unwrap_err();
    /// assert!(matches!(err, CidrError::UnknownKeyword { line: 3, .. }));
    /// ```
    pub fn parse(text: &str) -> Result<Self, CidrError> {
        Self::parse_with_limit(text, DEFAULT_MAX_ENTRIES)
    }

    /// [`CidrList::parse`] with a cap of `max_entries` entries.
    ///
    /// # Errors
    ///
    /// As [`CidrList::parse`], plus [`CidrError::TooManyEntries`] past the cap.
    ///
    /// ```
    /// use postern::access::cidr::{CidrError, CidrList};
    ///
    /// let err = CidrList::parse_with_limit("deny 10.0.0.1\ndeny 10.0.0.2\n", 1).unwrap_err();
    /// assert_eq!(err, CidrError::TooManyEntries { line: 2, max: 1 });
    /// ```
    pub fn parse_with_limit(text: &str, max_entries: usize) -> Result<Self, CidrError> {
        let mut builder = CidrListBuilder::with_limit(max_entries);
        for (line, content) in content_lines(text) {
            let mut words = content.split_whitespace();
            let Some(keyword) = words.next() else { continue };
            let verdict = match keyword.to_ascii_lowercase().as_str() {
                "allow" => Verdict::Allow,
                "deny" => Verdict::Deny,
                _ => return Err(CidrError::UnknownKeyword { line, keyword: keyword.to_owned() }),
            };
            let net = words.next().ok_or(CidrError::MissingNetwork { line, verdict })?;
            if let Some(extra) = words.next() {
                return Err(CidrError::TrailingText { line, text: extra.to_owned() });
            }
            builder.push_at(line, parse_network(net, line)?, verdict)?;
        }
        builder.build()
    }

    /// Parses a plain list, one network or address per line, every entry with `verdict`
    /// (for separate allow and deny files). `#` comments and blank lines are ignored.
    ///
    /// # Errors
    ///
    /// A [`CidrError`] naming the first offending line.
    ///
    /// ```
    /// use postern::access::cidr::{CidrList, Verdict};
    ///
    /// let deny = CidrList::parse_with_verdict("198.51.100.0/24\n203.0.113.7 # one host\n", Verdict::Deny)?;
    /// assert_eq!(deny.verdict("203.0.113.7".parse()?), Some(Verdict::Deny));
    /// assert_eq!(deny.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn parse_with_verdict(text: &str, verdict: Verdict) -> Result<Self, CidrError> {
        let mut builder = CidrListBuilder::new();
        builder.extend_from_text(text, verdict)?;
        builder.build()
    }

    /// The verdict and prefix of the longest prefix containing `ip`, if any.
    ///
    /// ```
    /// use postern::access::cidr::{CidrList, Verdict};
    ///
    /// let list = CidrList::parse("deny ::/0\nallow 2001:db8::/48\n")?;
    /// let hit = list.lookup("2001:db8::25".parse()?).unwrap();
    /// assert_eq!((hit.verdict, hit.prefix.prefix_len()), (Verdict::Allow, 48));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn lookup(&self, ip: IpAddr) -> Option<Match> {
        match ip.to_canonical() {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)).map(|(len, n, verdict)| Match {
                verdict,
                prefix: IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::from(n), len)),
            }),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)).map(|(len, n, verdict)| Match {
                verdict,
                prefix: IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from(n), len)),
            }),
        }
    }

    /// The verdict of the longest matching prefix, if any: [`CidrList::lookup`] without the
    /// prefix.
    ///
    /// ```
    /// use postern::access::cidr::{CidrList, Verdict};
    /// let list = CidrList::parse("allow 127.0.0.1\n").unwrap();
    /// assert_eq!(list.verdict("127.0.0.1".parse().unwrap()), Some(Verdict::Allow));
    /// ```
    #[must_use]
    pub fn verdict(&self, ip: IpAddr) -> Option<Verdict> {
        self.lookup(ip).map(|m| m.verdict)
    }

    /// The number of entries (after IPv4-mapped networks became IPv4 and duplicates merged).
    ///
    /// ```
    /// use postern::access::cidr::CidrList;
    /// assert_eq!(CidrList::parse("deny 10.0.0.0/8\ndeny 10.0.0.0/8\n").unwrap().len(), 1);
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether the list has no entries.
    ///
    /// ```
    /// use postern::access::cidr::CidrList;
    /// assert!(CidrList::new().is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Collects entries for a [`CidrList`], then sorts them once in [`CidrListBuilder::build`].
///
/// ```
/// use postern::access::cidr::{CidrListBuilder, Verdict};
///
/// let mut builder = CidrListBuilder::new();
/// builder.push("192.0.2.0/24".parse()?, Verdict::Deny)?;
/// builder.extend_from_text("192.0.2.128/25\n", Verdict::Allow)?;
/// let list = builder.build()?;
/// assert_eq!(list.verdict("192.0.2.200".parse()?), Some(Verdict::Allow));
/// assert_eq!(list.verdict("192.0.2.100".parse()?), Some(Verdict::Deny));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct CidrListBuilder {
    /// (line, network, verdict)
    entries: Vec<(usize, IpNet, Verdict)>,
    max_entries: usize,
    pushes: usize,
}

impl Default for CidrListBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl CidrListBuilder {
    /// A builder capped at [`DEFAULT_MAX_ENTRIES`] entries.
    ///
    /// ```
    /// let list = postern::access::cidr::CidrListBuilder::new().build().unwrap();
    /// assert!(list.is_empty());
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::with_limit(DEFAULT_MAX_ENTRIES)
    }

    /// A builder capped at `max_entries` entries.
    ///
    /// ```
    /// use postern::access::cidr::{CidrListBuilder, Verdict};
    /// let mut builder = CidrListBuilder::with_limit(1);
    /// builder.push("10.0.0.0/8".parse().unwrap(), Verdict::Deny).unwrap();
    /// assert!(builder.push("11.0.0.0/8".parse().unwrap(), Verdict::Deny).is_err());
    /// ```
    #[must_use]
    pub fn with_limit(max_entries: usize) -> Self {
        CidrListBuilder { entries: Vec::new(), max_entries, pushes: 0 }
    }

    /// Adds one network; its "line" in errors is the 1-based order of this push.
    ///
    /// # Errors
    ///
    /// [`CidrError::HostBitsSet`] if `net` has bits set past its prefix, or
    /// [`CidrError::TooManyEntries`] past the cap.
    ///
    /// ```
    /// use postern::access::cidr::{CidrListBuilder, Verdict};
    /// let mut builder = CidrListBuilder::new();
    /// assert!(builder.push("10.0.0.1/8".parse().unwrap(), Verdict::Deny).is_err());
    /// ```
    pub fn push(&mut self, net: IpNet, verdict: Verdict) -> Result<&mut Self, CidrError> {
        let line = self.pushes.saturating_add(1);
        if net.trunc() != net {
            return Err(CidrError::HostBitsSet { line, network: net });
        }
        self.push_at(line, net, verdict)?;
        Ok(self)
    }

    /// Adds one network read from line `line` of some text of the caller's (errors,
    /// including a later [`CidrError::Conflict`], name that line).
    ///
    /// # Errors
    ///
    /// As [`CidrListBuilder::push`].
    pub fn push_line(&mut self, line: usize, net: IpNet, verdict: Verdict) -> Result<&mut Self, CidrError> {
        if net.trunc() != net {
            return Err(CidrError::HostBitsSet { line, network: net });
        }
        self.push_at(line, net, verdict)?;
        Ok(self)
    }

    /// Adds the networks of a plain list (one network or address per line, `#` comments,
    /// blank lines) with `verdict`. Line numbers in errors are those of `text`.
    ///
    /// # Errors
    ///
    /// A [`CidrError`] naming the first offending line of `text`.
    ///
    /// ```
    /// use postern::access::cidr::{CidrError, CidrListBuilder, Verdict};
    /// let mut builder = CidrListBuilder::new();
    /// let err = builder.extend_from_text("# header\n10.0.0.0/33\n", Verdict::Deny).unwrap_err();
    /// assert!(matches!(err, CidrError::InvalidNetwork { line: 2, .. }));
    /// ```
    pub fn extend_from_text(&mut self, text: &str, verdict: Verdict) -> Result<&mut Self, CidrError> {
        for (line, content) in content_lines(text) {
            let mut words = content.split_whitespace();
            let Some(net) = words.next() else { continue };
            if let Some(extra) = words.next() {
                return Err(CidrError::TrailingText { line, text: extra.to_owned() });
            }
            self.push_at(line, parse_network(net, line)?, verdict)?;
        }
        Ok(self)
    }

    fn push_at(&mut self, line: usize, net: IpNet, verdict: Verdict) -> Result<(), CidrError> {
        if self.entries.len() >= self.max_entries {
            return Err(CidrError::TooManyEntries { line, max: self.max_entries });
        }
        self.pushes = self.pushes.saturating_add(1);
        self.entries.push((line, canonical_net(net), verdict));
        Ok(())
    }

    /// Sorts the entries into a [`CidrList`]. Duplicate networks with the same verdict merge.
    ///
    /// # Errors
    ///
    /// [`CidrError::Conflict`] if one network is both allowed and denied.
    ///
    /// ```
    /// use postern::access::cidr::{CidrError, CidrList};
    /// let err = CidrList::parse("allow 10.0.0.0/8\ndeny 10.0.0.0/8\n").unwrap_err();
    /// assert!(matches!(err, CidrError::Conflict { line: 2, first_line: 1, .. }));
    /// ```
    pub fn build(mut self) -> Result<CidrList, CidrError> {
        // Stable sort by network keeps the input order (line order) among duplicates.
        self.entries.sort_by_key(|e| e.1);
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut previous: Option<(usize, IpNet, Verdict)> = None;
        for (line, net, verdict) in self.entries {
            if let Some((first_line, prev_net, prev_verdict)) = previous
                && prev_net == net
            {
                if prev_verdict != verdict {
                    return Err(CidrError::Conflict { line, first_line, network: net, verdict });
                }
                continue;
            }
            previous = Some((line, net, verdict));
            match net {
                IpNet::V4(n) => v4.push((n.prefix_len(), u32::from(n.network()), verdict)),
                IpNet::V6(n) => v6.push((n.prefix_len(), u128::from(n.network()), verdict)),
            }
        }
        Ok(CidrList { v4: Family::build(v4), v6: Family::build(v6) })
    }
}

/// Lines with their 1-based numbers, comments stripped and trimmed; blank ones skipped.
fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(i, raw)| {
        let content = raw.split_once('#').map_or(raw, |(before, _)| before).trim();
        (!content.is_empty()).then_some((i.saturating_add(1), content))
    })
}

fn parse_network(text: &str, line: usize) -> Result<IpNet, CidrError> {
    let net = if text.contains('/') {
        text.parse::<IpNet>().map_err(|_| CidrError::InvalidNetwork { line, text: text.to_owned() })?
    } else {
        let addr =
            text.parse::<IpAddr>().map_err(|_| CidrError::InvalidNetwork { line, text: text.to_owned() })?;
        IpNet::from(addr)
    };
    if net.trunc() != net {
        return Err(CidrError::HostBitsSet { line, network: net });
    }
    Ok(net)
}

/// An IPv4-mapped IPv6 network of length ≥ 96 becomes the IPv4 network it covers.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(n) = net
        && n.prefix_len() >= 96
        && let Some(v4) = n.network().to_ipv4_mapped()
    {
        return IpNet::V4(Ipv4Net::new_assert(v4, n.prefix_len().saturating_sub(96)));
    }
    net
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const RULES: &str = "\
# a comment line
deny 0.0.0.0/0
allow 10.0.0.0/8
deny 10.1.0.0/16      # trailing comment
allow 10.1.2.0/24
deny 10.1.2.3
   
allow 2001:db8::/32
deny 2001:db8:bad::/48
allow ::ffff:192.0.2.0/120
";

    #[test]
    fn longest_prefix_wins() {
        let list = CidrList::parse(RULES).unwrap();
        let table: &[(&str, Option<(Verdict, &str)>)] = &[
            ("10.1.2.3", Some((Verdict::Deny, "10.1.2.3/32"))),
            ("10.1.2.4", Some((Verdict::Allow, "10.1.2.0/24"))),
            ("10.1.3.1", Some((Verdict::Deny, "10.1.0.0/16"))),
            ("10.2.0.0", Some((Verdict::Allow, "10.0.0.0/8"))),
            ("11.0.0.1", Some((Verdict::Deny, "0.0.0.0/0"))),
            ("192.0.2.9", Some((Verdict::Allow, "192.0.2.0/24"))),
            ("::ffff:10.1.2.3", Some((Verdict::Deny, "10.1.2.3/32"))),
            ("::ffff:192.0.2.1", Some((Verdict::Allow, "192.0.2.0/24"))),
            ("::ffff:11.0.0.1", Some((Verdict::Deny, "0.0.0.0/0"))),
            ("2001:db8:bad::1", Some((Verdict::Deny, "2001:db8:bad::/48"))),
            ("2001:db8:bae::1", Some((Verdict::Allow, "2001:db8::/32"))),
            ("2001:db9::1", None),
            ("::1", None),
        ];
        for (addr, expected) in table {
            let got = list.lookup(ip(addr)).map(|m| (m.verdict, m.prefix.to_string()));
            let expected = expected.map(|(v, p)| (v, p.to_owned()));
            assert_eq!(got, expected, "{addr}");
        }
        assert_eq!(list.len(), 8);
    }

    #[test]
    fn errors_carry_line_numbers() {
        let table: &[(&str, CidrError)] = &[
            (
                "allow 10.0.0.0/8\n\n  permit 1.2.3.4\n",
                CidrError::UnknownKeyword { line: 3, keyword: "permit".into() },
            ),
            ("# x\ndeny\n", CidrError::MissingNetwork { line: 2, verdict: Verdict::Deny }),
            ("deny 10.0.0.0/33\n", CidrError::InvalidNetwork { line: 1, text: "10.0.0.0/33".into() }),
            ("deny 10.0.0.256\n", CidrError::InvalidNetwork { line: 1, text: "10.0.0.256".into() }),
            (
                "\n\ndeny 10.0.0.1/8\n",
                CidrError::HostBitsSet { line: 3, network: "10.0.0.1/8".parse().unwrap() },
            ),
            ("deny 10.0.0.0/8 now\n", CidrError::TrailingText { line: 1, text: "now".into() }),
            (
                "deny 10.0.0.0/8\nallow 10.0.0.0/8\n",
                CidrError::Conflict {
                    line: 2,
                    first_line: 1,
                    network: "10.0.0.0/8".parse().unwrap(),
                    verdict: Verdict::Allow,
                },
            ),
            (
                "allow ::ffff:10.0.0.0/104\nallow 1.1.1.1\ndeny 10.0.0.0/8\n",
                CidrError::Conflict {
                    line: 3,
                    first_line: 1,
                    network: "10.0.0.0/8".parse().unwrap(),
                    verdict: Verdict::Deny,
                },
            ),
        ];
        for (text, expected) in table {
            assert_eq!(&CidrList::parse(text).unwrap_err(), expected, "{text:?}");
        }
        let msg = CidrList::parse("deny 10.0.0.1/8").unwrap_err().to_string();
        assert_eq!(msg, "line 1: 10.0.0.1/8 has host bits set (did you mean 10.0.0.0/8?)");
    }

    #[test]
    fn entry_cap() {
        let text = "deny 10.0.0.1\n# c\n\ndeny 10.0.0.2\ndeny 10.0.0.3\n";
        assert!(CidrList::parse_with_limit(text, 3).is_ok());
        assert_eq!(
            CidrList::parse_with_limit(text, 2).unwrap_err(),
            CidrError::TooManyEntries { line: 5, max: 2 }
        );
    }

    #[test]
    fn mapped_networks_shorter_than_96_stay_ipv6() {
        let list = CidrList::parse("deny ::fffe:0:0/95\n").unwrap();
        // ::fffe:0:0/95 also covers addresses that are not IPv4-mapped: it stays IPv6, and
        // mapped addresses (looked up as IPv4) do not match it.
        assert_eq!(list.verdict(ip("::ffff:1.2.3.4")), None);
        assert_eq!(list.verdict(ip("::fffe:1.2.3.4")), Some(Verdict::Deny));
    }

    #[test]
    fn separate_lists_and_case() {
        let mut b = CidrListBuilder::new();
        b.extend_from_text("10.0.0.0/8\n", Verdict::Deny).unwrap();
        b.extend_from_text("10.9.0.0/16\n", Verdict::Allow).unwrap();
        let list = b.build().unwrap();
        assert_eq!(list.verdict(ip("10.9.1.1")), Some(Verdict::Allow));
        assert_eq!(list.verdict(ip("10.8.1.1")), Some(Verdict::Deny));
        let upper = CidrList::parse("ALLOW 10.0.0.0/8\n").unwrap();
        assert_eq!(upper.verdict(ip("10.0.0.1")), Some(Verdict::Allow));
    }

    #[test]
    fn zero_length_prefixes() {
        let list = CidrList::parse("deny ::/0\nallow 0.0.0.0/0\n").unwrap();
        assert_eq!(list.verdict(ip("1.2.3.4")), Some(Verdict::Allow));
        assert_eq!(list.verdict(ip("::1")), Some(Verdict::Deny));
        assert_eq!(list.lookup(ip("::1")).unwrap().prefix.to_string(), "::/0");
    }
}
