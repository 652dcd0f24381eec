//! Geofencing: allowed and denied countries, from a country lookup the application supplies.
//!
//! [`CountryLookup`] is the seam: plug in any geolocation database. [`RangeTable`] is a
//! built-in one, loaded from a plain CSV range-to-country table (`start_ip,end_ip,CC` per
//! line, as the free DB-IP and IP2Location LITE exports can be converted to), so geofencing
//! works without proprietary databases. Lookups are a binary search, `O(log n)`.
//!
//! ```
//! use postern::access::geofence::{Geofence, GeoVerdict, RangeTable};
//!
//! let table = RangeTable::parse_csv(
//!     "192.0.2.0,192.0.2.255,FR\n\
//!      198.51.100.0,198.51.100.255,XX\n\
//!      2001:db8::,2001:db8:ffff:ffff:ffff:ffff:ffff:ffff,DE\n",
//! )?;
//! let fence = Geofence::new(table).deny(*b"XX");
//! assert_eq!(fence.check("192.0.2.1".parse()?), GeoVerdict::Allowed { country: Some(*b"FR") });
//! assert_eq!(fence.check("198.51.100.7".parse()?), GeoVerdict::Denied { country: Some(*b"XX") });
//! assert_eq!(fence.check("203.0.113.1".parse()?), GeoVerdict::Allowed { country: None });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeSet;
use std::net::IpAddr;

/// The default cap on the number of ranges [`RangeTable::parse_csv`] accepts.
pub const DEFAULT_MAX_RANGES: usize = 10_000_000;

/// A source of countries for addresses (ISO 3166-1 alpha-2 codes, upper case ASCII).
///
/// ```
/// use std::net::IpAddr;
/// use postern::access::geofence::CountryLookup;
///
/// struct Everywhere;
/// impl CountryLookup for Everywhere {
///     fn country(&self, _ip: IpAddr) -> Option<[u8; 2]> {
///         Some(*b"ZZ")
///     }
/// }
/// assert_eq!(Everywhere.country("192.0.2.1".parse().unwrap()), Some(*b"ZZ"));
/// ```
pub trait CountryLookup {
    /// The country of `ip`, if known.
    fn country(&self, ip: IpAddr) -> Option<[u8; 2]>;
}

impl<T: CountryLookup + ?Sized> CountryLookup for &T {
    fn country(&self, ip: IpAddr) -> Option<[u8; 2]> {
        (**self).country(ip)
    }
}

impl<T: CountryLookup + ?Sized> CountryLookup for Box<T> {
    fn country(&self, ip: IpAddr) -> Option<[u8; 2]> {
        (**self).country(ip)
    }
}

/// An error loading a [`RangeTable`]. Line numbers start at 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GeoError {
    /// The line does not have exactly three comma-separated fields.
    #[error("line {line}: expected start_ip,end_ip,CC")]
    FieldCount {
        /// The line number.
        line: usize,
    },
    /// A field is not an IP address.
    #[error("line {line}: invalid address {text:?}")]
    InvalidAddress {
        /// The line number.
        line: usize,
        /// The field.
        text: String,
    },
    /// The country is not two ASCII letters.
    #[error("line {line}: invalid country code {text:?}")]
    InvalidCountry {
        /// The line number.
        line: usize,
        /// The field.
        text: String,
    },
    /// The start and end are of different families, or the end comes before the start.
    #[error("line {line}: invalid range")]
    InvalidRange {
        /// The line number.
        line: usize,
    },
    /// The range starts at or before the end of the previous range of its family.
    #[error("line {line}: range not sorted or overlapping the previous one")]
    Unsorted {
        /// The line number.
        line: usize,
    },
    /// More ranges than the cap.
    #[error("line {line}: more than {max} ranges")]
    TooManyRanges {
        /// The line number.
        line: usize,
        /// The cap.
        max: usize,
    },
}

/// A sorted, non-overlapping table of address ranges and their countries.
///
/// ```
/// use postern::access::geofence::{CountryLookup, RangeTable};
/// let table = RangeTable::parse_csv("# start,end,country\n10.0.0.0,10.255.255.255,nl\n")?;
/// assert_eq!(table.country("::ffff:10.1.2.3".parse()?), Some(*b"NL"));
/// assert_eq!(table.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct RangeTable {
    v4: Vec<(u32, u32, [u8; 2])>,
    v6: Vec<(u128, u128, [u8; 2])>,
}

impl RangeTable {
    /// Parses `start_ip,end_ip,CC` lines (inclusive ranges, IPv4 or IPv6, sorted ascending
    /// and non-overlapping within each family). Fields may be double-quoted and surrounded
    /// by spaces; `#` comment lines and blank lines are skipped; country codes are made upper
    /// case. At most [`DEFAULT_MAX_RANGES`] ranges.
    ///
    /// # Errors
    ///
    /// A [`GeoError`] naming the first offending line.
    ///
    /// ```
    /// use postern::access::geofence::{GeoError, RangeTable};
    /// let err = RangeTable::parse_csv("10.0.0.0,10.0.0.255,NL\n9.0.0.0,9.0.0.255,US\n").unwrap_err();
    /// assert_eq!(err, GeoError::Unsorted { line: 2 });
    /// ```
    pub fn parse_csv(text: &str) -> Result<Self, GeoError> {
        Self::parse_csv_with_limit(text, DEFAULT_MAX_RANGES)
    }

    /// [`RangeTable::parse_csv`] with a cap of `max_ranges` ranges.
    ///
    /// # Errors
    ///
    /// As [`RangeTable::parse_csv`], plus [`GeoError::TooManyRanges`].
    ///
    /// ```
    /// use postern::access::geofence::{GeoError, RangeTable};
    /// let err = RangeTable::parse_csv_with_limit("1.0.0.0,1.0.0.1,AU\n2.0.0.0,2.0.0.1,FR\n", 1);
    /// assert_eq!(err.unwrap_err(), GeoError::TooManyRanges { line: 2, max: 1 });
    /// ```
    pub fn parse_csv_with_limit(text: &str, max_ranges: usize) -> Result<Self, GeoError> {
        let mut table = RangeTable::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i.saturating_add(1);
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            if table.len() >= max_ranges {
                return Err(GeoError::TooManyRanges { line, max: max_ranges });
            }
            let fields: Vec<&str> = content.split(',').map(|f| f.trim().trim_matches('"').trim()).collect();
            let [start, end, cc] = fields.as_slice() else {
                return Err(GeoError::FieldCount { line });
            };
            let addr = |text: &str| {
                text.parse::<IpAddr>()
                    .map(|a| a.to_canonical())
                    .map_err(|_| GeoError::InvalidAddress { line, text: text.to_owned() })
            };
            let (start, end) = (addr(start)?, addr(end)?);
            let country = match cc.as_bytes() {
                [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                    [a.to_ascii_uppercase(), b.to_ascii_uppercase()]
                }
                _ => return Err(GeoError::InvalidCountry { line, text: (*cc).to_owned() }),
            };
            match (start, end) {
                (IpAddr::V4(s), IpAddr::V4(e)) => {
                    push(&mut table.v4, u32::from(s), u32::from(e), country, line)?
                }
                (IpAddr::V6(s), IpAddr::V6(e)) => {
                    push(&mut table.v6, u128::from(s), u128::from(e), country, line)?;
                }
                _ => return Err(GeoError::InvalidRange { line }),
            }
        }
        Ok(table)
    }

    /// The number of ranges.
    ///
    /// ```
    /// assert_eq!(postern::access::geofence::RangeTable::default().len(), 0);
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.v4.len().saturating_add(self.v6.len())
    }

    /// Whether the table has no ranges.
    ///
    /// ```
    /// assert!(postern::access::geofence::RangeTable::default().is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn push<T: Ord + Copy>(
    ranges: &mut Vec<(T, T, [u8; 2])>,
    start: T,
    end: T,
    country: [u8; 2],
    line: usize,
) -> Result<(), GeoError> {
    if end < start {
        return Err(GeoError::InvalidRange { line });
    }
    if ranges.last().is_some_and(|&(_, prev_end, _)| start <= prev_end) {
        return Err(GeoError::Unsorted { line });
    }
    ranges.push((start, end, country));
    Ok(())
}

fn find<T: Ord + Copy>(ranges: &[(T, T, [u8; 2])], addr: T) -> Option<[u8; 2]> {
    // The last range starting at or before addr, if it also ends at or after it.
    let i = ranges.partition_point(|&(start, _, _)| start <= addr);
    let &(_, end, country) = ranges.get(i.checked_sub(1)?)?;
    (addr <= end).then_some(country)
}

impl CountryLookup for RangeTable {
    fn country(&self, ip: IpAddr) -> Option<[u8; 2]> {
        match ip.to_canonical() {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }
}

/// The result of [`Geofence::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GeoVerdict {
    /// The address may connect.
    Allowed {
        /// Its country, if the lookup knew it.
        country: Option<[u8; 2]>,
    },
    /// The address is fenced out.
    Denied {
        /// Its country, if the lookup knew it.
        country: Option<[u8; 2]>,
    },
}

impl GeoVerdict {
    /// Whether the verdict is [`GeoVerdict::Allowed`].
    ///
    /// ```
    /// use postern::access::geofence::GeoVerdict;
    /// assert!(GeoVerdict::Allowed { country: None }.is_allowed());
    /// ```
    #[must_use]
    pub fn is_allowed(&self) -> bool {
        matches!(self, GeoVerdict::Allowed { .. })
    }
}

/// Allowed and denied countries over a [`CountryLookup`].
///
/// A denied country is always denied. If any country is allowed, every other known country is
/// denied. An address whose country is unknown (private ranges, gaps in the database) is
/// allowed unless [`Geofence::deny_unknown`] says otherwise: geolocation data is incomplete,
/// and failing closed on it would refuse legitimate mail.
///
/// ```
/// use std::net::IpAddr;
/// use postern::access::geofence::{CountryLookup, Geofence, GeoVerdict};
///
/// struct Fixed;
/// impl CountryLookup for Fixed {
///     fn country(&self, ip: IpAddr) -> Option<[u8; 2]> {
///         if ip.is_loopback() { None } else { Some(*b"FR") }
///     }
/// }
/// let fence = Geofence::new(Fixed).allow(*b"de").deny_unknown(true);
/// assert_eq!(fence.check("192.0.2.1".parse()?), GeoVerdict::Denied { country: Some(*b"FR") });
/// assert_eq!(fence.check("127.0.0.1".parse()?), GeoVerdict::Denied { country: None });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Geofence<L> {
    lookup: L,
    allowed: BTreeSet<[u8; 2]>,
    denied: BTreeSet<[u8; 2]>,
    deny_unknown: bool,
}

impl<L: CountryLookup> Geofence<L> {
    /// A fence that allows everything until countries are added.
    ///
    /// ```
    /// use postern::access::geofence::{Geofence, RangeTable};
    /// let fence = Geofence::new(RangeTable::default());
    /// assert!(fence.check("192.0.2.1".parse().unwrap()).is_allowed());
    /// ```
    #[must_use]
    pub fn new(lookup: L) -> Self {
        Geofence { lookup, allowed: BTreeSet::new(), denied: BTreeSet::new(), deny_unknown: false }
    }

    /// Allows `country` (any case); once one country is allowed, the others are denied.
    ///
    /// ```
    /// use postern::access::geofence::{Geofence, RangeTable};
    /// let table = RangeTable::parse_csv("192.0.2.0,192.0.2.255,FR\n").unwrap();
    /// let fence = Geofence::new(table).allow(*b"DE");
    /// assert!(!fence.check("192.0.2.1".parse().unwrap()).is_allowed());
    /// ```
    #[must_use]
    pub fn allow(mut self, country: [u8; 2]) -> Self {
        self.allowed.insert(country.map(|b| b.to_ascii_uppercase()));
        self
    }

    /// Denies `country` (any case).
    ///
    /// ```
    /// use postern::access::geofence::{Geofence, RangeTable};
    /// let table = RangeTable::parse_csv("192.0.2.0,192.0.2.255,FR\n").unwrap();
    /// let fence = Geofence::new(table).deny(*b"fr");
    /// assert!(!fence.check("192.0.2.1".parse().unwrap()).is_allowed());
    /// ```
    #[must_use]
    pub fn deny(mut self, country: [u8; 2]) -> Self {
        self.denied.insert(country.map(|b| b.to_ascii_uppercase()));
        self
    }

    /// Whether addresses of unknown country are denied (default: allowed).
    ///
    /// ```
    /// use postern::access::geofence::{Geofence, RangeTable};
    /// let fence = Geofence::new(RangeTable::default()).deny_unknown(true);
    /// assert!(!fence.check("192.0.2.1".parse().unwrap()).is_allowed());
    /// ```
    #[must_use]
    pub fn deny_unknown(mut self, deny: bool) -> Self {
        self.deny_unknown = deny;
        self
    }

    /// The verdict for `ip`.
    ///
    /// ```
    /// use postern::access::geofence::{Geofence, GeoVerdict, RangeTable};
    /// let table = RangeTable::parse_csv("192.0.2.0,192.0.2.255,FR\n").unwrap();
    /// let fence = Geofence::new(table).allow(*b"FR");
    /// assert_eq!(fence.check("192.0.2.9".parse().unwrap()), GeoVerdict::Allowed { country: Some(*b"FR") });
    /// ```
    #[must_use]
    pub fn check(&self, ip: IpAddr) -> GeoVerdict {
        let country = self.lookup.country(ip).map(|c| c.map(|b| b.to_ascii_uppercase()));
        let allowed = match country {
            None => !self.deny_unknown,
            Some(c) => !self.denied.contains(&c) && (self.allowed.is_empty() || self.allowed.contains(&c)),
        };
        if allowed { GeoVerdict::Allowed { country } } else { GeoVerdict::Denied { country } }
    }

    /// The lookup.
    ///
    /// ```
    /// use postern::access::geofence::{Geofence, RangeTable};
    /// assert!(Geofence::new(RangeTable::default()).lookup().is_empty());
    /// ```
    #[must_use]
    pub fn lookup(&self) -> &L {
        &self.lookup
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const CSV: &str = "\
# start,end,country
\"1.0.0.0\",\"1.0.0.255\",\"AU\"
1.0.1.0, 1.0.3.255 ,cn

1.0.4.0,1.0.4.0,JP
::ffff:2.0.0.0,::ffff:2.0.0.255,FR
2001:db8::,2001:db8::ffff,DE
2001:db8:1::,2001:db8:1::,NL
";

    #[test]
    fn csv_lookups() {
        let t = RangeTable::parse_csv(CSV).unwrap();
        let table: &[(&str, Option<&[u8; 2]>)] = &[
            ("0.255.255.255", None),
            ("1.0.0.0", Some(b"AU")),
            ("1.0.0.255", Some(b"AU")),
            ("1.0.1.0", Some(b"CN")),
            ("1.0.3.255", Some(b"CN")),
            ("1.0.4.0", Some(b"JP")),
            ("1.0.4.1", None),
            ("2.0.0.7", Some(b"FR")),
            ("::ffff:1.0.2.3", Some(b"CN")),
            ("2001:db8::ffff", Some(b"DE")),
            ("2001:db8::1:0", None),
            ("2001:db8:1::", Some(b"NL")),
            ("2001:db8:1::1", None),
            ("::", None),
            ("255.255.255.255", None),
        ];
        for (addr, expected) in table {
            assert_eq!(t.country(ip(addr)), expected.copied(), "{addr}");
        }
        assert_eq!(t.len(), 6);
    }

    #[test]
    fn csv_errors_with_line_numbers() {
        let table: &[(&str, GeoError)] = &[
            ("1.0.0.0,1.0.0.255\n", GeoError::FieldCount { line: 1 }),
            ("# c\n1.0.0.0,1.0.0.255,AU,x\n", GeoError::FieldCount { line: 2 }),
            ("1.0.0.0,1.0.0.256,AU\n", GeoError::InvalidAddress { line: 1, text: "1.0.0.256".into() }),
            ("1.0.0.0,1.0.0.255,AUS\n", GeoError::InvalidCountry { line: 1, text: "AUS".into() }),
            ("1.0.0.0,1.0.0.255,A1\n", GeoError::InvalidCountry { line: 1, text: "A1".into() }),
            ("1.0.0.0,1.0.0.255,\n", GeoError::InvalidCountry { line: 1, text: "".into() }),
            ("\n1.0.0.9,1.0.0.1,AU\n", GeoError::InvalidRange { line: 2 }),
            ("1.0.0.0,::1,AU\n", GeoError::InvalidRange { line: 1 }),
            ("1.0.0.0,1.0.0.255,AU\n1.0.0.255,1.0.1.0,CN\n", GeoError::Unsorted { line: 2 }),
            ("2001:db8::,2001:db8::ff,DE\n2001:db7::,2001:db7::ff,DE\n", GeoError::Unsorted { line: 2 }),
        ];
        for (text, expected) in table {
            assert_eq!(&RangeTable::parse_csv(text).unwrap_err(), expected, "{text:?}");
        }
        // Families are sorted independently.
        assert!(
            RangeTable::parse_csv("9.0.0.0,9.0.0.1,US\n2001:db8::,2001:db8::1,DE\n1.0.0.0,1.0.0.1,AU\n")
                .is_err()
        );
        assert!(
            RangeTable::parse_csv("1.0.0.0,1.0.0.1,AU\n2001:db8::,2001:db8::1,DE\n9.0.0.0,9.0.0.1,US\n")
                .is_ok()
        );
    }

    #[test]
    fn fence_rules() {
        let t = RangeTable::parse_csv(CSV).unwrap();
        let cases: &[(Geofence<&RangeTable>, &str, bool)] = &[
            (Geofence::new(&t), "1.0.0.1", true),
            (Geofence::new(&t).deny(*b"AU"), "1.0.0.1", false),
            (Geofence::new(&t).deny(*b"AU"), "1.0.1.1", true),
            (Geofence::new(&t).allow(*b"AU"), "1.0.1.1", false),
            (Geofence::new(&t).allow(*b"au"), "1.0.0.1", true),
            (Geofence::new(&t).allow(*b"AU").deny(*b"AU"), "1.0.0.1", false),
            (Geofence::new(&t).allow(*b"AU"), "10.0.0.1", true),
            (Geofence::new(&t).deny_unknown(true), "10.0.0.1", false),
        ];
        for (fence, addr, allowed) in cases {
            assert_eq!(fence.check(ip(addr)).is_allowed(), *allowed, "{addr} {fence:?}");
        }
    }
}
