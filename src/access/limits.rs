//! A plain-text limits file for [`Admission`](super::admission::Admission): one
//! `setting = value` per line, `#` comments, errors with line numbers.
//!
//! ```text
//! # Connections: 5 per second per client, bursts of 5; at most 3 at once.
//! conn-rate       = 5/1s burst 5
//! max-conn-per-ip = 3
//! # Port 587 (users authenticate there) gets its own, looser rate; 995 none.
//! conn-rate@587   = 60/1m
//! conn-rate@995   = off
//! rcpt-rate       = 100/1h
//! msg-rate        = 20/1h burst 5
//! auth-failures-ban = on
//! allow = 10.0.0.0/8
//! deny  = 192.0.2.0/24
//! deny  = 2001:db8::/32
//! ```
//!
//! | Setting | Value | [`AdmissionConfig`] field |
//! |---|---|---|
//! | `conn-rate` | rate or `off` | `connection_rate` |
//! | `conn-rate@PORT` | rate or `off` | `port_connection_rates` |
//! | `max-conn-per-ip` | count, `0` or `off` | `max_concurrent_per_client` |
//! | `rcpt-rate` | rate or `off` | `recipient_rate` |
//! | `msg-rate` | rate or `off` | `message_rate` |
//! | `auth-failures-ban` | `on` or `off` | `penalty` (the default ladder) |
//! | `allow`, `deny` | a network or address, repeatable | `lists` |
//! | `table-capacity` | clients tracked per table, 4 to [`MAX_TABLE_CAPACITY`] | `table_capacity` |
//! | `ipv4-prefix`, `ipv6-prefix` | bits that make one client | `key_config` |
//!
//! A rate is `COUNT/PERIOD`, optionally followed by `burst N` (default: `COUNT`); `PERIOD`
//! is a number of seconds, or a number followed by `s`, `m`, `h` or `d`. Every setting but
//! `allow`, `deny` and `conn-rate@PORT` (once per port) may appear once.
//!
//! ```
//! use postern::access::admission::AdmissionConfig;
//! use postern::access::limits::{Limits, LimitsError};
//!
//! let limits = Limits::parse("conn-rate = 5/1s burst 5\nmax-conn-per-ip = 3\ndeny = 192.0.2.0/24\n")?;
//! assert_eq!(limits.max_concurrent_per_client, Some(Some(3)));
//! let mut config = AdmissionConfig::new(0x5eed);
//! limits.apply_to(&mut config)?;
//! assert_eq!(config.max_concurrent_per_client, Some(3));
//!
//! let err = Limits::parse("conn-rate = 5/1s\nconn-rate = 9/1s\n").unwrap_err();
//! assert_eq!(err.to_string(), "line 2: conn-rate is already set on line 1");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::admission::AdmissionConfig;
use super::cidr::{CidrError, CidrListBuilder, IpNet, Verdict};
use crate::limit::{Gcra, KeyConfig, PenaltyConfig};

/// The longest line accepted (longer lines are an error, not truncated).
pub const MAX_LINE_LEN: usize = 1000;

/// The largest `table-capacity` accepted: each table takes 16 to 32 bytes per client, and
/// admission has up to three tables plus one per `conn-rate@PORT`.
pub const MAX_TABLE_CAPACITY: usize = 10_000_000;

/// An error in a limits file. Line numbers start at 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitsError {
    /// A line that is not `setting = value`.
    #[error("line {line}: expected `setting = value`")]
    MissingEquals {
        /// The line number.
        line: usize,
    },
    /// A setting this module does not know.
    #[error("line {line}: unknown setting {name:?}")]
    UnknownSetting {
        /// The line number.
        line: usize,
        /// The setting as written (at most 64 characters of it).
        name: String,
    },
    /// A value that does not parse.
    #[error("line {line}: {setting} {value:?}: expected {expected}")]
    InvalidValue {
        /// The line number.
        line: usize,
        /// The setting.
        setting: String,
        /// The value as written (at most 64 characters of it).
        value: String,
        /// What the setting takes.
        expected: &'static str,
    },
    /// A setting given a second time.
    #[error("line {line}: {setting} is already set on line {first_line}")]
    Duplicate {
        /// The line of the second occurrence.
        line: usize,
        /// The line of the first.
        first_line: usize,
        /// The setting.
        setting: String,
    },
    /// A line longer than [`MAX_LINE_LEN`].
    #[error("line {line}: longer than {MAX_LINE_LEN} bytes")]
    LineTooLong {
        /// The line number.
        line: usize,
    },
}

/// What a limits file sets. A field left `None` (or empty) was not in the file; for the
/// rates and the concurrency, `Some(None)` means `off`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// `conn-rate`.
    pub connection_rate: Option<Option<Gcra>>,
    /// `conn-rate@PORT`, in file order.
    pub port_connection_rates: Vec<(u16, Option<Gcra>)>,
    /// `max-conn-per-ip` (`0` and `off` are `Some(None)`).
    pub max_concurrent_per_client: Option<Option<u32>>,
    /// `rcpt-rate`.
    pub recipient_rate: Option<Option<Gcra>>,
    /// `msg-rate`.
    pub message_rate: Option<Option<Gcra>>,
    /// `auth-failures-ban`.
    pub auth_failures_ban: Option<bool>,
    /// `allow` and `deny`, in file order, with their line numbers.
    pub networks: Vec<(usize, IpNet, Verdict)>,
    /// `table-capacity`.
    pub table_capacity: Option<usize>,
    /// `ipv4-prefix`.
    pub ipv4_prefix: Option<u8>,
    /// `ipv6-prefix`.
    pub ipv6_prefix: Option<u8>,
}

const RATE: &str = "COUNT/PERIOD [burst N] (e.g. 30/1m or 5/1s burst 10) or off";

/// A rate: `COUNT/PERIOD [burst N]`, `PERIOD` in seconds or with a unit `s`, `m`, `h`, `d`
/// (the syntax of the limits file; `off` is not a rate). `None` if it does not parse or
/// is zero anywhere.
///
/// ```
/// use std::time::Duration;
/// use postern::access::limits::parse_rate;
/// let r = parse_rate("30/1m burst 5").unwrap();
/// assert_eq!((r.interval(), r.burst()), (Duration::from_secs(2), 5));
/// assert_eq!(parse_rate("30/60").unwrap().burst(), 30);
/// assert!(parse_rate("0/1s").is_none() && parse_rate("5/0").is_none() && parse_rate("5").is_none());
/// ```
#[must_use]
pub fn parse_rate(text: &str) -> Option<Gcra> {
    let mut words = text.split_whitespace();
    let (count, period) = words.next()?.split_once('/')?;
    let count: u32 = count.parse().ok()?;
    let period = parse_period(period)?;
    let burst = match (words.next(), words.next(), words.next()) {
        (None, _, _) => count,
        (Some("burst"), Some(n), None) => n.parse().ok()?,
        _ => return None,
    };
    Gcra::new(count, period, burst).ok()
}

/// `60`, `60s`, `1m`, `1h`, `1d`: a positive duration.
fn parse_period(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let unit = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    let secs = n.checked_mul(unit)?;
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// A network (`192.0.2.0/24`) or one address (a /32 or /128); `None` if it does not parse
/// or has host bits set past its prefix (`10.0.0.1/8`, usually a typo).
///
/// ```
/// use postern::access::limits::parse_network;
/// assert_eq!(parse_network("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
/// assert!(parse_network("2001:db8::/32").is_some());
/// assert!(parse_network("10.0.0.1/8").is_none() && parse_network("ten").is_none());
/// ```
#[must_use]
pub fn parse_network(text: &str) -> Option<IpNet> {
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => IpNet::from(text.parse::<IpAddr>().ok()?),
    };
    (net.trunc() == net).then_some(net)
}

/// At most 64 characters of `s`, for an error message.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

impl Limits {
    /// Parses a limits file (see the [module](self) docs).
    ///
    /// # Errors
    /// The first offending line, as a [`LimitsError`].
    pub fn parse(text: &str) -> Result<Limits, LimitsError> {
        let mut limits = Limits::default();
        // (setting, first line) of the settings seen, for duplicates.
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index.saturating_add(1);
            if raw.len() > MAX_LINE_LEN {
                return Err(LimitsError::LineTooLong { line });
            }
            let content = raw.split_once('#').map_or(raw, |(before, _)| before).trim();
            if content.is_empty() {
                continue;
            }
            let Some((name, value)) = content.split_once('=') else {
                return Err(LimitsError::MissingEquals { line });
            };
            let (mut name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            // `conn-rate@0587` is `conn-rate@587` (for the duplicate check).
            if let Some(Ok(port)) = name.strip_prefix("conn-rate@").map(str::parse::<u16>) {
                name = format!("conn-rate@{port}");
            }
            let invalid = |expected: &'static str| LimitsError::InvalidValue {
                line,
                setting: clip(&name),
                value: clip(value),
                expected,
            };
            if name != "allow"
                && name != "deny"
                && let Some(first_line) = seen.get(&name)
            {
                return Err(LimitsError::Duplicate { line, first_line: *first_line, setting: name });
            }
            let rate = || -> Result<Option<Gcra>, LimitsError> {
                if value.eq_ignore_ascii_case("off") {
                    Ok(None)
                } else {
                    parse_rate(value).map(Some).ok_or(invalid(RATE))
                }
            };
            match name.as_str() {
                "conn-rate" => limits.connection_rate = Some(rate()?),
                "rcpt-rate" => limits.recipient_rate = Some(rate()?),
                "msg-rate" => limits.message_rate = Some(rate()?),
                "max-conn-per-ip" => {
                    let n: u32 = if value.eq_ignore_ascii_case("off") {
                        0
                    } else {
                        value.parse().map_err(|_| invalid("a number of connections, 0 or off"))?
                    };
                    limits.max_concurrent_per_client = Some((n > 0).then_some(n));
                }
                "auth-failures-ban" => {
                    limits.auth_failures_ban = Some(match value.to_ascii_lowercase().as_str() {
                        "on" | "yes" | "true" => true,
                        "off" | "no" | "false" => false,
                        _ => return Err(invalid("on or off")),
                    });
                }
                "allow" | "deny" => {
                    let net = parse_network(value)
                        .ok_or(invalid("a network such as 192.0.2.0/24 (no host bits) or an address"))?;
                    let verdict = if name == "allow" { Verdict::Allow } else { Verdict::Deny };
                    limits.networks.push((line, net, verdict));
                }
                "table-capacity" => {
                    const EXPECTED: &str = "a number of clients, 4 to 10000000";
                    let n: usize = value.parse().map_err(|_| invalid(EXPECTED))?;
                    if !(4..=MAX_TABLE_CAPACITY).contains(&n) {
                        return Err(invalid(EXPECTED));
                    }
                    limits.table_capacity = Some(n);
                }
                "ipv4-prefix" => {
                    limits.ipv4_prefix = Some(
                        value.parse().ok().filter(|p| *p <= 32).ok_or(invalid("a prefix length, 0 to 32"))?,
                    );
                }
                "ipv6-prefix" => {
                    limits.ipv6_prefix = Some(
                        value
                            .parse()
                            .ok()
                            .filter(|p| *p <= 128)
                            .ok_or(invalid("a prefix length, 0 to 128"))?,
                    );
                }
                other => {
                    let port = other.strip_prefix("conn-rate@").map(str::parse::<u16>);
                    match port {
                        Some(Ok(port)) if port > 0 => limits.port_connection_rates.push((port, rate()?)),
                        Some(_) => return Err(invalid_port(line, &name)),
                        None => return Err(LimitsError::UnknownSetting { line, name: clip(&name) }),
                    }
                }
            }
            if name != "allow" && name != "deny" {
                seen.insert(name, line);
            }
        }
        Ok(limits)
    }

    /// Sets the fields of `config` that this file sets (the others are left alone). The
    /// `allow`/`deny` networks, if any, replace `config.lists`.
    ///
    /// # Errors
    /// A [`CidrError`] if the networks conflict (one network both allowed and denied); its
    /// line numbers are those of the file.
    pub fn apply_to(&self, config: &mut AdmissionConfig) -> Result<(), CidrError> {
        if let Some(rate) = self.connection_rate {
            config.connection_rate = rate;
        }
        for (port, rate) in &self.port_connection_rates {
            config.port_connection_rates.retain(|(p, _)| p != port);
            config.port_connection_rates.push((*port, *rate));
        }
        if let Some(max) = self.max_concurrent_per_client {
            config.max_concurrent_per_client = max;
        }
        if let Some(rate) = self.recipient_rate {
            config.recipient_rate = rate;
        }
        if let Some(rate) = self.message_rate {
            config.message_rate = rate;
        }
        if let Some(ban) = self.auth_failures_ban {
            config.penalty = ban.then(PenaltyConfig::default);
        }
        if let Some(cap) = self.table_capacity {
            config.table_capacity = cap;
        }
        if self.ipv4_prefix.is_some() || self.ipv6_prefix.is_some() {
            let v4 = self.ipv4_prefix.unwrap_or(config.key_config.ipv4_prefix());
            let v6 = self.ipv6_prefix.unwrap_or(config.key_config.ipv6_prefix());
            // parse() checked both ranges.
            if let Ok(keys) = KeyConfig::new(v4, v6) {
                config.key_config = keys;
            }
        }
        if !self.networks.is_empty() {
            config.lists = Some(self.cidr_list_builder()?.build()?);
        }
        Ok(())
    }

    /// The `allow`/`deny` networks in a builder (to add more before building).
    ///
    /// # Errors
    /// [`CidrError::TooManyEntries`] past the builder's default cap.
    pub fn cidr_list_builder(&self) -> Result<CidrListBuilder, CidrError> {
        let mut builder = CidrListBuilder::new();
        for (line, net, verdict) in &self.networks {
            builder.push_line(*line, *net, *verdict)?;
        }
        Ok(builder)
    }
}

fn invalid_port(line: usize, name: &str) -> LimitsError {
    LimitsError::InvalidValue {
        line,
        setting: clip(name),
        value: clip(name.strip_prefix("conn-rate@").unwrap_or(name)),
        expected: "conn-rate@PORT with a port from 1 to 65535",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "\
# a comment
conn-rate       = 5/1s burst 5   # trailing comment
conn-rate@587   = 60/1m
conn-rate@995   = off
max-conn-per-ip = 3
RCPT-RATE       = 100/1h
msg-rate        = 20/1h burst 5
auth-failures-ban = on

allow = 10.0.0.0/8
deny  = 192.0.2.0/24
deny  = 2001:db8::/32
deny  = 198.51.100.7
table-capacity = 5000
ipv4-prefix = 24
ipv6-prefix = 56
";

    #[test]
    fn every_setting() {
        let l = Limits::parse(FULL).unwrap();
        let g = |c, p, b| Some(Gcra::new(c, Duration::from_secs(p), b).unwrap());
        assert_eq!(l.connection_rate, Some(g(5, 1, 5)));
        assert_eq!(l.port_connection_rates, vec![(587, g(60, 60, 60)), (995, None)]);
        assert_eq!(l.max_concurrent_per_client, Some(Some(3)));
        assert_eq!(l.recipient_rate, Some(g(100, 3600, 100)));
        assert_eq!(l.message_rate, Some(g(20, 3600, 5)));
        assert_eq!(l.auth_failures_ban, Some(true));
        assert_eq!(l.networks.len(), 4);
        assert_eq!(l.networks[3], (13, "198.51.100.7/32".parse().unwrap(), Verdict::Deny));
        assert_eq!((l.table_capacity, l.ipv4_prefix, l.ipv6_prefix), (Some(5000), Some(24), Some(56)));

        let mut config = AdmissionConfig::new(1);
        config.port_connection_rates = vec![(995, g(1, 1, 1)), (25, None)];
        l.apply_to(&mut config).unwrap();
        assert_eq!(config.connection_rate, g(5, 1, 5));
        assert_eq!(config.port_connection_rates, vec![(25, None), (587, g(60, 60, 60)), (995, None)]);
        assert_eq!(config.max_concurrent_per_client, Some(3));
        assert_eq!(config.recipient_rate, g(100, 3600, 100));
        assert_eq!(config.message_rate, g(20, 3600, 5));
        assert!(config.penalty.is_some());
        assert_eq!(config.table_capacity, 5000);
        assert_eq!(config.key_config, KeyConfig::new(24, 56).unwrap());
        let lists = config.lists.as_ref().unwrap();
        assert_eq!(lists.verdict("10.1.2.3".parse().unwrap()), Some(Verdict::Allow));
        assert_eq!(lists.verdict("198.51.100.7".parse().unwrap()), Some(Verdict::Deny));
    }

    #[test]
    fn off_and_untouched() {
        let l = Limits::parse("conn-rate = off\nmax-conn-per-ip = 0\nauth-failures-ban = off\n").unwrap();
        let mut config = AdmissionConfig::new(1);
        config.connection_rate = Some(Gcra::new(1, Duration::from_secs(1), 1).unwrap());
        config.max_concurrent_per_client = Some(9);
        config.penalty = Some(PenaltyConfig::default());
        config.recipient_rate = Some(Gcra::new(1, Duration::from_secs(1), 1).unwrap());
        l.apply_to(&mut config).unwrap();
        assert_eq!(config.connection_rate, None);
        assert_eq!(config.max_concurrent_per_client, None);
        assert!(config.penalty.is_none());
        // Not in the file: unchanged.
        assert!(config.recipient_rate.is_some());
        assert!(config.lists.is_none());
        assert_eq!(Limits::parse("").unwrap(), Limits::default());
        assert_eq!(Limits::parse("max-conn-per-ip = off").unwrap().max_concurrent_per_client, Some(None));
    }

    #[test]
    fn errors_name_the_line() {
        let cases: [(&str, &str); 15] = [
            ("\n\nconn-rate 5/1s", "line 3: expected `setting = value`"),
            ("conn-rat = 5/1s", "line 1: unknown setting \"conn-rat\""),
            (
                "# x\nconn-rate = 5",
                "line 2: conn-rate \"5\": expected COUNT/PERIOD [burst N] (e.g. 30/1m or 5/1s burst 10) or off",
            ),
            (
                "conn-rate = 5/1s burst",
                "line 1: conn-rate \"5/1s burst\": expected COUNT/PERIOD [burst N] (e.g. 30/1m or 5/1s burst 10) or off",
            ),
            (
                "msg-rate = 0/1s",
                "line 1: msg-rate \"0/1s\": expected COUNT/PERIOD [burst N] (e.g. 30/1m or 5/1s burst 10) or off",
            ),
            (
                "rcpt-rate = 5/1w",
                "line 1: rcpt-rate \"5/1w\": expected COUNT/PERIOD [burst N] (e.g. 30/1m or 5/1s burst 10) or off",
            ),
            (
                "max-conn-per-ip = many",
                "line 1: max-conn-per-ip \"many\": expected a number of connections, 0 or off",
            ),
            ("auth-failures-ban = maybe", "line 1: auth-failures-ban \"maybe\": expected on or off"),
            (
                "deny = 10.0.0.1/8",
                "line 1: deny \"10.0.0.1/8\": expected a network such as 192.0.2.0/24 (no host bits) or an address",
            ),
            (
                "conn-rate@0 = off",
                "line 1: conn-rate@0 \"0\": expected conn-rate@PORT with a port from 1 to 65535",
            ),
            ("conn-rate@25 = off\nconn-rate@25 = 1/1s", "line 2: conn-rate@25 is already set on line 1"),
            ("ipv6-prefix = 129", "line 1: ipv6-prefix \"129\": expected a prefix length, 0 to 128"),
            (
                "table-capacity = 3",
                "line 1: table-capacity \"3\": expected a number of clients, 4 to 10000000",
            ),
            (
                "table-capacity = 10000001",
                "line 1: table-capacity \"10000001\": expected a number of clients, 4 to 10000000",
            ),
            ("conn-rate@25 = off\nconn-rate@025 = 1/1s", "line 2: conn-rate@25 is already set on line 1"),
        ];
        for (text, message) in cases {
            assert_eq!(Limits::parse(text).unwrap_err().to_string(), message, "{text:?}");
        }
        let long = format!("deny = 10.0.0.0/8\n# {}", "x".repeat(MAX_LINE_LEN));
        assert_eq!(Limits::parse(&long).unwrap_err(), LimitsError::LineTooLong { line: 2 });
        // A network both allowed and denied: the error names the file's lines.
        let l = Limits::parse("allow = 10.0.0.0/8\n\ndeny = 10.0.0.0/8\n").unwrap();
        let err = l.apply_to(&mut AdmissionConfig::new(1)).unwrap_err();
        assert!(matches!(err, CidrError::Conflict { line: 3, first_line: 1, .. }), "{err}");
    }

    #[test]
    fn periods() {
        assert_eq!(parse_period("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_period("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_period("1d"), Some(Duration::from_secs(86_400)));
        for bad in ["", "s", "0", "0s", "-1", "1.5s", "1 m", "99999999999999999999d", "18446744073709551615d"]
        {
            assert_eq!(parse_period(bad), None, "{bad}");
        }
    }
}
