//! MTA-STS, SMTP MTA Strict Transport Security (RFC 8461), for outbound delivery.
//!
//! A receiving domain publishes a `_mta-sts.<domain>` TXT record and a policy file at
//! `https://mta-sts.<domain>/.well-known/mta-sts.txt`. A sending MTA that honours the
//! policy delivers only to MX hosts the policy lists, and only over STARTTLS with a
//! certificate valid for that host; in `testing` mode it delivers anyway and reports.
//!
//! postern does no I/O: the application resolves the TXT record, fetches the policy over
//! HTTPS (no redirects, `text/plain`, certificate valid for `mta-sts.<domain>`), performs
//! the TLS handshake with the MX, and reads its clock. This module parses what it fetched,
//! keeps the newest policy per domain in a bounded cache, and turns what it observed into
//! a [`Verdict`].
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use postern::tls::mta_sts::{decide, CachedPolicy, Policy, PolicyCache, StsRecord, TlsOutcome, Verdict};
//!
//! let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//! let mut cache = PolicyCache::new(1000);
//!
//! // 1. DNS: the TXT records at _mta-sts.example.com.
//! let record = StsRecord::select(["v=STSv1; id=20240101T000000;"]).unwrap();
//! // 2. Fetch the policy only if the cached one is missing, expired or has another id.
//! if !cache.is_current("example.com", record.id(), now) {
//!     let body = "version: STSv1\r\nmode: enforce\r\nmx: *.mail.example.com\r\nmax_age: 604800\r\n";
//!     let policy = Policy::parse(body).unwrap();
//!     cache.insert("example.com", CachedPolicy::new(record.id(), policy, now));
//! }
//! // 3. Connect to the MX, run STARTTLS, verify the certificate; then decide.
//! let cached = cache.get("example.com", now);
//! let verdict = decide(cached, now, "mx1.mail.example.com", TlsOutcome::NoStartTls);
//! assert!(matches!(verdict, Verdict::Refuse(_)));
//! assert_eq!(decide(cached, now, "mx1.mail.example.com", TlsOutcome::Valid), Verdict::Deliver);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use super::tlsrpt::ResultType;

/// The largest policy body [`Policy::parse`] accepts: 64 KiB.
///
/// RFC 8461 sets no number, but a policy is a handful of short lines (the §3.2 example is
/// 112 bytes) and §3.3 tells senders to bound what they fetch. The application should stop
/// reading the HTTPS response at this size too.
pub const MAX_POLICY_LEN: usize = 64 * 1024;

/// The largest `max_age` RFC 8461 §3.2 allows: 31 557 600 seconds (one year).
pub const MAX_MAX_AGE: u32 = 31_557_600;

/// The most `mx` patterns one policy may list: 1000.
///
/// Real policies list a handful. The cap keeps a parsed policy, and so every entry of a
/// [`PolicyCache`], under roughly 100 KiB whatever the body says.
pub const MAX_MX_PATTERNS: usize = 1000;

/// The longest policy id a TXT record may carry (RFC 8461 §3.1).
const MAX_ID_LEN: usize = 32;

/// The longest domain name, in its text form without the trailing dot (RFC 1035 §2.3.4).
const MAX_DOMAIN_LEN: usize = 253;

// ----- the _mta-sts TXT record (RFC 8461 §3.1) ----------------------------------------

/// Why a `_mta-sts` TXT record was not accepted.
///
/// Any of these means the domain has no usable MTA-STS policy right now (RFC 8461 §3.1):
/// keep using a cached, unexpired policy if there is one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StsRecordError {
    /// Not one of the TXT records at the name starts with `v=STSv1`.
    #[error("no TXT record starts with `v=STSv1`")]
    NoRecord,
    /// More than one TXT record starts with `v=STSv1`; RFC 8461 §3.1 says to treat this as
    /// no policy.
    #[error("{count} TXT records start with `v=STSv1`; exactly one is allowed")]
    MultipleRecords {
        /// How many records started with `v=STSv1`.
        count: usize,
    },
    /// The record does not start with `v=STSv1` followed by `;`.
    #[error("not an MTA-STS record: it must start with `v=STSv1;`")]
    NotSts,
    /// The record holds a byte outside US-ASCII.
    #[error("the record is not US-ASCII")]
    NotAscii,
    /// Two `;` with nothing between them.
    #[error("field {field} is empty")]
    EmptyField {
        /// The 1-based position of the field after `v=STSv1`.
        field: usize,
    },
    /// Whitespace after the last field, without a closing `;`.
    #[error("whitespace after the last field (only `;` may follow it)")]
    TrailingWhitespace,
    /// A field is not `name=value` with a valid name (a letter or digit, then up to 31
    /// letters, digits, `_`, `-` or `.`) and value (printable ASCII other than `=`, `;`
    /// and space).
    #[error("field {field} is not `name=value` with a valid name and value")]
    InvalidField {
        /// The 1-based position of the field after `v=STSv1`.
        field: usize,
    },
    /// The required `id` field is missing.
    #[error("the record has no `id` field")]
    MissingId,
    /// The `id` is not 1 to 32 letters and digits.
    #[error("`id` must be 1 to 32 letters and digits")]
    InvalidId,
    /// The `id` field appears twice.
    #[error("`id` appears more than once")]
    DuplicateId,
}

/// A parsed `_mta-sts` TXT record: `v=STSv1; id=...;` (RFC 8461 §3.1).
///
/// The `id` changes whenever the domain publishes a new policy; compare it with the id of
/// the cached policy to know whether to fetch again. Extension fields are checked for
/// syntax and otherwise ignored.
///
/// ```
/// use postern::tls::mta_sts::{StsRecord, StsRecordError};
///
/// let record = StsRecord::parse("v=STSv1; id=20160831085700Z;").unwrap();
/// assert_eq!(record.id(), "20160831085700Z");
/// assert_eq!(StsRecord::parse("v=STSv1; id=not-alphanumeric"), Err(StsRecordError::InvalidId));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsRecord {
    id: String,
}

impl StsRecord {
    /// Parses one TXT record. A record split into several character-strings must be
    /// passed concatenated.
    ///
    /// # Errors
    /// [`StsRecordError`] for anything outside the RFC 8461 §3.1 grammar.
    pub fn parse(record: impl AsRef<[u8]>) -> Result<Self, StsRecordError> {
        let record = record.as_ref();
        if !record.is_ascii() {
            return Err(StsRecordError::NotAscii);
        }
        let record = std::str::from_utf8(record).map_err(|_| StsRecordError::NotAscii)?;
        let fields = txt_fields(record, "v=STSv1").map_err(|e| match e {
            TxtSyntax::NotVersion => StsRecordError::NotSts,
            TxtSyntax::EmptyField { field } => StsRecordError::EmptyField { field },
            TxtSyntax::TrailingWhitespace => StsRecordError::TrailingWhitespace,
        })?;
        let mut id = None;
        for (n, field) in fields.into_iter().enumerate() {
            let (name, value) = field.split_once('=').ok_or(StsRecordError::InvalidField { field: n + 1 })?;
            if name == "id" {
                if id.is_some() {
                    return Err(StsRecordError::DuplicateId);
                }
                if value.is_empty()
                    || value.len() > MAX_ID_LEN
                    || !value.bytes().all(|b| b.is_ascii_alphanumeric())
                {
                    return Err(StsRecordError::InvalidId);
                }
                id = Some(value);
            } else if !is_ext_name(name) || !is_txt_ext_value(value) {
                return Err(StsRecordError::InvalidField { field: n + 1 });
            }
        }
        let id = id.ok_or(StsRecordError::MissingId)?;
        Ok(Self { id: id.to_owned() })
    }

    /// Picks the MTA-STS record out of all the TXT records at `_mta-sts.<domain>` and
    /// parses it (RFC 8461 §3.1): records that do not start with `v=STSv1` are discarded,
    /// and exactly one must remain.
    ///
    /// ```
    /// use postern::tls::mta_sts::{StsRecord, StsRecordError};
    ///
    /// let txt = ["some-verification=abc", "v=STSv1; id=2024a"];
    /// assert_eq!(StsRecord::select(txt).unwrap().id(), "2024a");
    /// let two = ["v=STSv1; id=1", "v=STSv1; id=2"];
    /// assert_eq!(StsRecord::select(two), Err(StsRecordError::MultipleRecords { count: 2 }));
    /// ```
    ///
    /// # Errors
    /// [`StsRecordError::NoRecord`], [`StsRecordError::MultipleRecords`], or why the one
    /// record did not parse.
    pub fn select<I, T>(records: I) -> Result<Self, StsRecordError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        select_one(records, b"v=STSv1", StsRecordError::NoRecord, |count| StsRecordError::MultipleRecords {
            count,
        })
        .and_then(Self::parse)
    }

    /// The policy id: 1 to 32 letters and digits.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// How a `v=...;`-style TXT record (RFC 8461 §3.1, RFC 8460 §3) failed to split.
#[derive(Debug)]
pub(super) enum TxtSyntax {
    NotVersion,
    EmptyField { field: usize },
    TrailingWhitespace,
}

const fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Splits `version 1*(field-delim field) [field-delim]` with `field-delim = *WSP ";" *WSP`
/// into its fields (without the version). A field runs to the next `;`; whether it is a
/// valid `name=value` is for the caller to check.
pub(super) fn txt_fields<'a>(record: &'a str, version: &str) -> Result<Vec<&'a str>, TxtSyntax> {
    let rest = record.strip_prefix(version).ok_or(TxtSyntax::NotVersion)?;
    let mut parts = rest.split(';').peekable();
    // Before the first `;`: only the delimiter's leading whitespace.
    let head = parts.next().unwrap_or_default();
    if !head.chars().all(is_wsp) {
        return Err(TxtSyntax::NotVersion);
    }
    if parts.peek().is_none() {
        // No `;` at all: `v=STSv1` alone, maybe followed by whitespace.
        return if head.is_empty() { Ok(Vec::new()) } else { Err(TxtSyntax::TrailingWhitespace) };
    }
    let mut fields = Vec::new();
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        let start = part.trim_start_matches(is_wsp);
        if start.is_empty() {
            if last {
                break; // the optional closing delimiter
            }
            return Err(TxtSyntax::EmptyField { field: fields.len() + 1 });
        }
        let field = start.trim_end_matches(is_wsp);
        if last && field.len() != start.len() {
            return Err(TxtSyntax::TrailingWhitespace);
        }
        fields.push(field);
    }
    Ok(fields)
}

/// Keeps the records that start with `version` followed by whitespace, `;` or the end,
/// and returns the only one.
pub(super) fn select_one<I, T, E>(
    records: I,
    version: &[u8],
    none: E,
    many: impl FnOnce(usize) -> E,
) -> Result<Vec<u8>, E>
where
    I: IntoIterator<Item = T>,
    T: AsRef<[u8]>,
{
    let mut found: Option<Vec<u8>> = None;
    let mut count = 0usize;
    for record in records {
        let record = record.as_ref();
        let Some(rest) = record.strip_prefix(version) else { continue };
        if matches!(rest.first(), None | Some(b';' | b' ' | b'\t')) {
            count += 1;
            if found.is_none() {
                found = Some(record.to_vec());
            }
        }
    }
    match (count, found) {
        (1, Some(record)) => Ok(record),
        (0, _) | (_, None) => Err(none),
        (n, Some(_)) => Err(many(n)),
    }
}

/// `(ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")`: the extension-name rule of both
/// RFC 8461 (TXT record and policy) and RFC 8460.
pub(super) fn is_ext_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.len() <= 32
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// `1*(%x21-3A / %x3C / %x3E-7E)`: printable ASCII other than `=`, `;` and space.
pub(super) fn is_txt_ext_value(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| matches!(b, 0x21..=0x3A | 0x3C | 0x3E..=0x7E))
}

// ----- MX patterns (RFC 8461 §3.2, §4.1) ------------------------------------------------

/// Why an `mx` pattern is not `["*."] Domain`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MxPatternError {
    /// Nothing, or nothing after `*.`.
    #[error("empty host name")]
    Empty,
    /// Longer than 253 characters.
    #[error("host name longer than 253 characters")]
    TooLong,
    /// Two dots in a row, or a leading or trailing dot.
    #[error("empty label (a leading, trailing or doubled dot)")]
    EmptyLabel,
    /// A label longer than 63 characters.
    #[error("label longer than 63 characters")]
    LabelTooLong,
    /// A label starts or ends with `-`.
    #[error("label starts or ends with `-`")]
    HyphenAtLabelEdge,
    /// A `*` anywhere but as the whole leftmost label.
    #[error("`*` is only allowed as the whole leftmost label (`*.example.com`)")]
    MisplacedWildcard,
    /// A character other than ASCII letters, digits, `-` and `.` (IDNs must be given as
    /// A-labels, `xn--...`).
    #[error("character other than letters, digits, `-` and `.`")]
    InvalidCharacter,
}

/// One `mx` pattern of a policy: a host name, or `*.` and a host name (RFC 8461 §3.2).
///
/// Stored in lower case. The wildcard stands for exactly one leftmost label (§4.1).
///
/// ```
/// use postern::tls::mta_sts::MxPattern;
///
/// let pattern = MxPattern::parse("*.Example.com").unwrap();
/// assert!(pattern.matches("mx1.example.com"));
/// assert!(pattern.matches("MX1.EXAMPLE.COM."));
/// assert!(!pattern.matches("example.com"));
/// assert!(!pattern.matches("a.b.example.com"));
/// assert_eq!(pattern.to_string(), "*.example.com");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MxPattern {
    wildcard: bool,
    domain: String,
}

impl MxPattern {
    /// Parses `["*."] Domain`, with `Domain` as in RFC 5321 §4.1.2: dot-separated labels of
    /// letters, digits and inner hyphens, no trailing dot.
    ///
    /// # Errors
    /// [`MxPatternError`] says what is wrong.
    pub fn parse(pattern: &str) -> Result<Self, MxPatternError> {
        let (wildcard, domain) = match pattern.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        validate_domain(domain)?;
        Ok(Self { wildcard, domain: domain.to_ascii_lowercase() })
    }

    /// Whether this is a `*.` pattern.
    #[must_use]
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// The host name, or for a wildcard the part after `*.`, in lower case.
    #[must_use]
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Whether `host` matches: equal ignoring ASCII case and one trailing dot; for a
    /// wildcard, exactly one non-empty label followed by the domain (RFC 8461 §4.1).
    #[must_use]
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        if self.wildcard {
            match host.split_once('.') {
                Some((label, rest)) => {
                    !label.is_empty() && !label.contains('*') && rest.eq_ignore_ascii_case(&self.domain)
                }
                None => false,
            }
        } else {
            host.eq_ignore_ascii_case(&self.domain)
        }
    }
}

impl fmt::Display for MxPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(&self.domain)
    }
}

fn validate_domain(domain: &str) -> Result<(), MxPatternError> {
    if domain.is_empty() {
        return Err(MxPatternError::Empty);
    }
    if domain.contains('*') {
        return Err(MxPatternError::MisplacedWildcard);
    }
    if domain.len() > MAX_DOMAIN_LEN {
        return Err(MxPatternError::TooLong);
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(MxPatternError::EmptyLabel);
        }
        if label.len() > 63 {
            return Err(MxPatternError::LabelTooLong);
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(MxPatternError::InvalidCharacter);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(MxPatternError::HyphenAtLabelEdge);
        }
    }
    Ok(())
}

// ----- the policy file (RFC 8461 §3.2) --------------------------------------------------

/// The policy mode (RFC 8461 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Deliver only to listed MX hosts over validated TLS; refuse otherwise, and report.
    Enforce,
    /// Check and report failures, but deliver anyway.
    Testing,
    /// The domain has withdrawn its policy: behave as if there were none.
    None,
}

impl Mode {
    /// The keyword as it appears in a policy: `enforce`, `testing` or `none`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Testing => "testing",
            Self::None => "none",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a policy body was not accepted. Lines are numbered from 1.
///
/// A policy that fails to parse counts as not fetched (RFC 8461 §5.1): keep using a
/// cached, unexpired policy if there is one, and report `sts-policy-invalid`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The body is longer than [`MAX_POLICY_LEN`].
    #[error("policy is {len} bytes, over the {MAX_POLICY_LEN}-byte limit")]
    TooLarge {
        /// The body's length in bytes.
        len: usize,
    },
    /// A line is not valid UTF-8.
    #[error("line {line}: not valid UTF-8")]
    InvalidUtf8 {
        /// The line number.
        line: usize,
    },
    /// A control character: a bare CR, a NUL, ... (lines end in LF or CRLF; only spaces
    /// and tabs may surround a value).
    #[error("line {line}: control character")]
    ControlCharacter {
        /// The line number.
        line: usize,
    },
    /// A line without `:`.
    #[error("line {line}: expected `key: value`")]
    MissingColon {
        /// The line number.
        line: usize,
    },
    /// The text before `:` is not a field name: a letter or digit, then up to 31
    /// letters, digits, `_`, `-` or `.`, with nothing before it and no space before `:`.
    #[error(
        "line {line}: invalid field name (a letter or digit, then up to 31 letters, digits, `_`, `-` or `.`, directly followed by `:`)"
    )]
    InvalidKey {
        /// The line number.
        line: usize,
    },
    /// `version` is not `STSv1`.
    #[error("line {line}: unsupported version `{found}` (expected `STSv1`)")]
    UnsupportedVersion {
        /// The line number.
        line: usize,
        /// The value found (cut at 64 characters).
        found: String,
    },
    /// `mode` is not `enforce`, `testing` or `none` (lower case).
    #[error("line {line}: invalid mode `{found}` (expected `enforce`, `testing` or `none`)")]
    InvalidMode {
        /// The line number.
        line: usize,
        /// The value found (cut at 64 characters).
        found: String,
    },
    /// `max_age` is not 1 to 10 decimal digits.
    #[error("line {line}: max_age must be 1 to 10 decimal digits")]
    InvalidMaxAge {
        /// The line number.
        line: usize,
    },
    /// `max_age` is over [`MAX_MAX_AGE`].
    #[error("line {line}: max_age {value} is over the maximum of {MAX_MAX_AGE} seconds (one year)")]
    MaxAgeTooLarge {
        /// The line number.
        line: usize,
        /// The value found.
        value: u64,
    },
    /// An `mx` value is not a valid pattern.
    #[error("line {line}: invalid mx pattern: {source}")]
    InvalidMx {
        /// The line number.
        line: usize,
        /// What is wrong with it.
        source: MxPatternError,
    },
    /// More than [`MAX_MX_PATTERNS`] `mx` lines.
    #[error("line {line}: more than {MAX_MX_PATTERNS} mx patterns")]
    TooManyMx {
        /// The line number of the first `mx` over the limit.
        line: usize,
    },
    /// An unknown field's value is empty or holds a tab.
    #[error("line {line}: invalid value for an extension field")]
    InvalidExtensionValue {
        /// The line number.
        line: usize,
    },
    /// `version`, `mode` or `max_age` appears twice (see [`DuplicateFields`]).
    #[error("line {line}: duplicate `{field}` (first on line {first})")]
    Duplicate {
        /// The line number of the repeat.
        line: usize,
        /// The line number of the first occurrence.
        first: usize,
        /// The field name.
        field: &'static str,
    },
    /// A required field is absent: `version`, `mode`, `max_age`, or `mx` (which a policy
    /// in mode `none` may leave out).
    #[error("missing required field `{field}`")]
    Missing {
        /// The field name.
        field: &'static str,
    },
}

/// What [`Policy::parse_with`] does when `version`, `mode` or `max_age` appears twice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DuplicateFields {
    /// Reject the policy with [`PolicyError::Duplicate`]: two `mode` lines mean the
    /// publisher's intent is unclear. The default, and what [`Policy::parse`] does.
    #[default]
    Reject,
    /// Use the first and ignore the rest (checking only that they are `key: value`
    /// lines), as RFC 8461 §3.2 says parsers SHOULD.
    KeepFirst,
}

/// A validated MTA-STS policy (RFC 8461 §3.2).
///
/// Parsing follows the §3.2 grammar: `key: value` lines ending in LF or CRLF, field names
/// case-sensitive, whitespace allowed after `:` and at the end of a line (not before the
/// key or before `:`), fields in any order, unknown fields checked for syntax and ignored.
/// Two deliberate departures, both documented on [`Policy::parse`]: empty lines are
/// skipped, and duplicated single-valued fields are rejected by default.
///
/// ```
/// use std::time::Duration;
/// use postern::tls::mta_sts::{Mode, Policy, PolicyError};
///
/// // The example of RFC 8461 §3.2.
/// let policy = Policy::parse(
///     "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n\
///      mx: backupmx.example.com\r\nmax_age: 604800\r\n",
/// )
/// .unwrap();
/// assert_eq!(policy.mode(), Mode::Enforce);
/// assert_eq!(policy.max_age(), Duration::from_secs(604_800));
/// assert!(policy.matches_mx("mx1.example.net"));
/// assert!(!policy.matches_mx("example.net"));
/// assert!(!policy.matches_mx("mx.mail.example.com"));
///
/// let err = Policy::parse("version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n").unwrap_err();
/// assert!(matches!(err, PolicyError::InvalidMode { line: 2, .. }));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Policy {
    mode: Mode,
    mx: Vec<MxPattern>,
    max_age: u32,
}

impl Policy {
    /// Parses and validates a policy body, rejecting duplicated single-valued fields.
    ///
    /// Beyond the RFC 8461 §3.2 grammar:
    /// - bodies over [`MAX_POLICY_LEN`] bytes and policies with more than
    ///   [`MAX_MX_PATTERNS`] `mx` lines are rejected;
    /// - empty lines are skipped: the grammar has no place for them, but rejecting a
    ///   policy for a stray blank line would downgrade its domain to "no policy";
    /// - a second `version`, `mode` or `max_age` is an error (§3.2 says to keep the first;
    ///   use [`Policy::parse_with`] and [`DuplicateFields::KeepFirst`] for that).
    ///
    /// # Errors
    /// [`PolicyError`], with the line number where one applies.
    pub fn parse(body: impl AsRef<[u8]>) -> Result<Self, PolicyError> {
        Self::parse_with(body, DuplicateFields::Reject)
    }

    /// [`Policy::parse`], choosing what a duplicated single-valued field does.
    ///
    /// ```
    /// use postern::tls::mta_sts::{DuplicateFields, Mode, Policy, PolicyError};
    ///
    /// let body = "version: STSv1\nmode: testing\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n";
    /// assert_eq!(
    ///     Policy::parse(body),
    ///     Err(PolicyError::Duplicate { line: 3, first: 2, field: "mode" })
    /// );
    /// let first_wins = Policy::parse_with(body, DuplicateFields::KeepFirst).unwrap();
    /// assert_eq!(first_wins.mode(), Mode::Testing);
    /// ```
    ///
    /// # Errors
    /// As [`Policy::parse`].
    pub fn parse_with(body: impl AsRef<[u8]>, duplicates: DuplicateFields) -> Result<Self, PolicyError> {
        let body = body.as_ref();
        if body.len() > MAX_POLICY_LEN {
            return Err(PolicyError::TooLarge { len: body.len() });
        }
        let mut version: Option<usize> = None;
        let mut mode: Option<(Mode, usize)> = None;
        let mut max_age: Option<(u32, usize)> = None;
        let mut mx = Vec::new();

        let mut segments = body.split(|&b| b == b'\n').peekable();
        let mut line = 0usize;
        while let Some(segment) = segments.next() {
            line += 1;
            let terminated = segments.peek().is_some();
            if !terminated && segment.is_empty() {
                break; // the body ended with a line terminator
            }
            // CRLF or LF end a line; a CR anywhere else is a control character below.
            let segment = if terminated { segment.strip_suffix(b"\r").unwrap_or(segment) } else { segment };
            if segment.is_empty() {
                continue;
            }
            let text = std::str::from_utf8(segment).map_err(|_| PolicyError::InvalidUtf8 { line })?;
            if text.chars().any(|c| c.is_control() && c != '\t') {
                return Err(PolicyError::ControlCharacter { line });
            }
            let (key, value) = text.split_once(':').ok_or(PolicyError::MissingColon { line })?;
            if !is_ext_name(key) {
                return Err(PolicyError::InvalidKey { line });
            }
            let value = value.trim_matches(is_wsp);
            let reject_duplicate = |first: usize, field: &'static str| match duplicates {
                DuplicateFields::Reject => Err(PolicyError::Duplicate { line, first, field }),
                DuplicateFields::KeepFirst => Ok(()),
            };
            match key {
                "version" => match version {
                    Some(first) => reject_duplicate(first, "version")?,
                    None => {
                        if value != "STSv1" {
                            return Err(PolicyError::UnsupportedVersion { line, found: cut(value) });
                        }
                        version = Some(line);
                    }
                },
                "mode" => match mode {
                    Some((_, first)) => reject_duplicate(first, "mode")?,
                    None => {
                        let parsed = match value {
                            "enforce" => Mode::Enforce,
                            "testing" => Mode::Testing,
                            "none" => Mode::None,
                            _ => return Err(PolicyError::InvalidMode { line, found: cut(value) }),
                        };
                        mode = Some((parsed, line));
                    }
                },
                "max_age" => match max_age {
                    Some((_, first)) => reject_duplicate(first, "max_age")?,
                    None => {
                        if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit())
                        {
                            return Err(PolicyError::InvalidMaxAge { line });
                        }
                        let seconds: u64 = value.parse().map_err(|_| PolicyError::InvalidMaxAge { line })?;
                        let seconds = u32::try_from(seconds)
                            .ok()
                            .filter(|&s| s <= MAX_MAX_AGE)
                            .ok_or(PolicyError::MaxAgeTooLarge { line, value: seconds })?;
                        max_age = Some((seconds, line));
                    }
                },
                "mx" => {
                    let pattern =
                        MxPattern::parse(value).map_err(|source| PolicyError::InvalidMx { line, source })?;
                    if mx.len() == MAX_MX_PATTERNS {
                        return Err(PolicyError::TooManyMx { line });
                    }
                    mx.push(pattern);
                }
                _ => {
                    // sts-policy-ext-value: visible characters (UTF-8 allowed) and inner spaces.
                    if value.is_empty() || value.contains('\t') {
                        return Err(PolicyError::InvalidExtensionValue { line });
                    }
                }
            }
        }

        if version.is_none() {
            return Err(PolicyError::Missing { field: "version" });
        }
        let (mode, _) = mode.ok_or(PolicyError::Missing { field: "mode" })?;
        let (max_age, _) = max_age.ok_or(PolicyError::Missing { field: "max_age" })?;
        if mx.is_empty() && mode != Mode::None {
            return Err(PolicyError::Missing { field: "mx" });
        }
        Ok(Self { mode, mx, max_age })
    }

    /// The mode.
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The `mx` patterns, in the order of the policy.
    #[must_use]
    pub fn mx(&self) -> &[MxPattern] {
        &self.mx
    }

    /// How long the policy may be cached after it was fetched.
    #[must_use]
    pub fn max_age(&self) -> Duration {
        Duration::from_secs(u64::from(self.max_age))
    }

    /// Whether `host` matches one of the `mx` patterns (RFC 8461 §4.1): ASCII case and a
    /// trailing dot are ignored, and `*.example.com` covers exactly one more label.
    ///
    /// In `enforce` mode, check this before connecting: an MX that does not match must
    /// not be used at all.
    ///
    /// ```
    /// use postern::tls::mta_sts::Policy;
    ///
    /// let policy = Policy::parse("version: STSv1\nmode: enforce\nmx: *.example.com\nmax_age: 86400").unwrap();
    /// assert!(policy.matches_mx("mx1.example.com."));
    /// assert!(!policy.matches_mx("example.com"));
    /// assert!(!policy.matches_mx("a.b.example.com"));
    /// ```
    #[must_use]
    pub fn matches_mx(&self, host: &str) -> bool {
        self.mx.iter().any(|pattern| pattern.matches(host))
    }

    /// The policy as lines without terminators, in canonical order (version, mode, mx,
    /// max_age): the `policy-string` of a TLS-RPT report (RFC 8460 §4.4).
    ///
    /// ```
    /// use postern::tls::mta_sts::Policy;
    ///
    /// let policy = Policy::parse("mode: testing\nmx: MX.example.com\nmax_age: 60\nversion: STSv1").unwrap();
    /// assert_eq!(policy.lines(), ["version: STSv1", "mode: testing", "mx: mx.example.com", "max_age: 60"]);
    /// ```
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::with_capacity(self.mx.len() + 3);
        lines.push("version: STSv1".to_owned());
        lines.push(format!("mode: {}", self.mode));
        lines.extend(self.mx.iter().map(|pattern| format!("mx: {pattern}")));
        lines.push(format!("max_age: {}", self.max_age));
        lines
    }

    /// Applies the policy to one delivery attempt, ignoring its age (see [`decide`] for
    /// the full rule with expiry).
    ///
    /// The attempt fails the policy if `mx_host` matches no `mx` pattern or `outcome` is
    /// not [`TlsOutcome::Valid`]. A failure refuses delivery in `enforce` mode and is
    /// reported but delivered in `testing` mode; `none` always delivers.
    #[must_use]
    pub fn decide(&self, mx_host: &str, outcome: TlsOutcome) -> Verdict {
        if self.mode == Mode::None {
            return Verdict::Deliver;
        }
        let failure = if self.matches_mx(mx_host) { outcome.failure() } else { Some(Failure::MxNotListed) };
        match (self.mode, failure) {
            (_, None) | (Mode::None, _) => Verdict::Deliver,
            (Mode::Testing, Some(failure)) => Verdict::DeliverAndReport(failure),
            (Mode::Enforce, Some(failure)) => Verdict::Refuse(failure),
        }
    }
}

/// The policy text, CRLF line endings, canonical order: [`Policy::parse`] reads it back
/// to an equal policy.
impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.lines() {
            f.write_str(&line)?;
            f.write_str("\r\n")?;
        }
        Ok(())
    }
}

/// At most 64 characters of a value, for an error message.
fn cut(value: &str) -> String {
    value.chars().take(64).collect()
}

// ----- applying a policy (RFC 8461 §4.2, §5) --------------------------------------------

/// A certificate problem the application's TLS verifier found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CertificateProblem {
    /// Valid, but not for the MX host name.
    HostMismatch,
    /// Expired (or not yet valid).
    Expired,
    /// Does not chain to a trusted root, or another path-validation failure.
    NotTrusted,
    /// Any other reason.
    Other,
}

/// What the application saw when it tried the MX host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsOutcome {
    /// STARTTLS was offered, the handshake completed, and the certificate is PKIX-valid
    /// for the MX host name (RFC 8461 §4.2).
    Valid,
    /// The MX did not offer STARTTLS (or refused it).
    NoStartTls,
    /// STARTTLS was offered but the handshake failed for a reason other than the
    /// certificate (protocol version, cipher suites, an alert, ...).
    HandshakeFailed,
    /// The handshake reached the certificate, which did not verify.
    Certificate(CertificateProblem),
}

impl TlsOutcome {
    /// The policy failure this outcome is, if any: `None` for [`TlsOutcome::Valid`].
    ///
    /// Also what to report for a domain without a policy (`no-policy-found`).
    #[must_use]
    pub fn failure(self) -> Option<Failure> {
        match self {
            Self::Valid => None,
            Self::NoStartTls => Some(Failure::NoStartTls),
            Self::HandshakeFailed => Some(Failure::HandshakeFailed),
            Self::Certificate(problem) => Some(Failure::Certificate(problem)),
        }
    }
}

/// Why a delivery attempt failed the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Failure {
    /// The MX host matches none of the policy's `mx` patterns.
    MxNotListed,
    /// The MX did not offer STARTTLS.
    NoStartTls,
    /// The TLS handshake failed.
    HandshakeFailed,
    /// The certificate did not verify.
    Certificate(CertificateProblem),
}

impl Failure {
    /// The TLS-RPT result type to report it under (RFC 8460 §4.3).
    ///
    /// An MX outside the policy and a failed handshake have no type of their own and are
    /// `validation-failure`, with [`Failure::reason_code`] saying which.
    ///
    /// ```
    /// use postern::tls::mta_sts::{CertificateProblem, Failure};
    ///
    /// assert_eq!(Failure::NoStartTls.result_type().as_str(), "starttls-not-supported");
    /// let expired = Failure::Certificate(CertificateProblem::Expired);
    /// assert_eq!(expired.result_type().as_str(), "certificate-expired");
    /// ```
    #[must_use]
    pub fn result_type(self) -> ResultType {
        match self {
            Self::MxNotListed | Self::HandshakeFailed | Self::Certificate(CertificateProblem::Other) => {
                ResultType::ValidationFailure
            }
            Self::NoStartTls => ResultType::StartTlsNotSupported,
            Self::Certificate(CertificateProblem::HostMismatch) => ResultType::CertificateHostMismatch,
            Self::Certificate(CertificateProblem::Expired) => ResultType::CertificateExpired,
            Self::Certificate(CertificateProblem::NotTrusted) => ResultType::CertificateNotTrusted,
        }
    }

    /// The `failure-reason-code` to add to a `validation-failure` report, if any.
    #[must_use]
    pub fn reason_code(self) -> Option<&'static str> {
        match self {
            Self::MxNotListed => Some("mx-not-in-sts-policy"),
            Self::HandshakeFailed => Some("tls-handshake-failed"),
            Self::NoStartTls | Self::Certificate(_) => None,
        }
    }
}

/// What to do with a delivery attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Deliver; nothing to report.
    Deliver,
    /// `testing` mode: the attempt failed the policy; deliver and report the failure.
    DeliverAndReport(Failure),
    /// `enforce` mode: the attempt failed the policy; do not deliver to this MX (try the
    /// next one, then queue) and report the failure.
    Refuse(Failure),
}

impl Verdict {
    /// Whether the message may go to this MX.
    #[must_use]
    pub fn may_deliver(self) -> bool {
        !matches!(self, Self::Refuse(_))
    }

    /// The failure to report, if any.
    #[must_use]
    pub fn failure(self) -> Option<Failure> {
        match self {
            Self::Deliver => None,
            Self::DeliverAndReport(failure) | Self::Refuse(failure) => Some(failure),
        }
    }
}

/// A policy with the TXT id it was fetched under and when it was fetched.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use postern::tls::mta_sts::{CachedPolicy, Policy};
///
/// let fetched = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
/// let policy = Policy::parse("version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 3600\n").unwrap();
/// let cached = CachedPolicy::new("abc", policy, fetched);
/// assert!(!cached.is_expired(fetched + Duration::from_secs(3600)));
/// assert!(cached.is_expired(fetched + Duration::from_secs(3601)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedPolicy {
    id: String,
    policy: Policy,
    fetched_at: SystemTime,
}

impl CachedPolicy {
    /// Records `policy`, fetched at `fetched_at` while the TXT record said `id`.
    #[must_use]
    pub fn new(id: &str, policy: Policy, fetched_at: SystemTime) -> Self {
        Self { id: id.to_owned(), policy, fetched_at }
    }

    /// The TXT record's id when the policy was fetched.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The policy.
    #[must_use]
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// When it was fetched.
    #[must_use]
    pub fn fetched_at(&self) -> SystemTime {
        self.fetched_at
    }

    /// When it expires: `fetched_at + max_age` (`None` if that is past what `SystemTime`
    /// can hold, which counts as never).
    #[must_use]
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.fetched_at.checked_add(self.policy.max_age())
    }

    /// Whether `now` is past `fetched_at + max_age`. An expired policy counts as absent.
    #[must_use]
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at().is_some_and(|expires| expires < now)
    }
}

/// Decides one delivery attempt (RFC 8461 §5).
///
/// `policy` is the domain's cached policy, if any; an expired one counts as absent.
/// Without a usable policy, or in mode `none`, the verdict is always
/// [`Verdict::Deliver`] (to report TLS results for such a domain, use
/// [`TlsOutcome::failure`] under a `no-policy-found` TLS-RPT policy). Otherwise the
/// attempt fails if `mx_host` matches no `mx` pattern or `outcome` is not
/// [`TlsOutcome::Valid`]; `enforce` refuses a failure, `testing` delivers and reports it.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use postern::tls::mta_sts::{decide, CachedPolicy, CertificateProblem, Failure, Policy, TlsOutcome, Verdict};
///
/// let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let body = "version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 86400\n";
/// let cached = CachedPolicy::new("1", Policy::parse(body).unwrap(), t0);
/// let expired = TlsOutcome::Certificate(CertificateProblem::Expired);
///
/// assert_eq!(
///     decide(Some(&cached), t0, "mx.example.com", expired),
///     Verdict::DeliverAndReport(Failure::Certificate(CertificateProblem::Expired))
/// );
/// // A day and a second later the policy has expired: no policy, deliver.
/// let later = t0 + Duration::from_secs(86_401);
/// assert_eq!(decide(Some(&cached), later, "mx.example.com", expired), Verdict::Deliver);
/// assert_eq!(decide(None, t0, "mx.example.com", TlsOutcome::NoStartTls), Verdict::Deliver);
/// ```
#[must_use]
pub fn decide(policy: Option<&CachedPolicy>, now: SystemTime, mx_host: &str, outcome: TlsOutcome) -> Verdict {
    match policy {
        Some(cached) if !cached.is_expired(now) => cached.policy.decide(mx_host, outcome),
        _ => Verdict::Deliver,
    }
}

// ----- the policy cache ------------------------------------------------------------------

/// The newest policy per domain, for at most `capacity` domains; the least recently used
/// domain is evicted to make room.
///
/// Memory is bounded: at most `capacity` entries, each a domain name of at most 253
/// bytes and a policy parsed from at most [`MAX_POLICY_LEN`] bytes with at most
/// [`MAX_MX_PATTERNS`] patterns (under about 100 KiB). Domain names are compared in ASCII
/// lower case without a trailing dot; longer names are never stored. Expired policies are
/// dropped when looked up.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use postern::tls::mta_sts::{CachedPolicy, Policy, PolicyCache};
///
/// let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let policy = Policy::parse("version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n").unwrap();
/// let mut cache = PolicyCache::new(2);
/// cache.insert("a.example", CachedPolicy::new("1", policy.clone(), t0));
/// cache.insert("b.example", CachedPolicy::new("1", policy.clone(), t0));
/// assert!(cache.get("A.EXAMPLE.", t0).is_some()); // a.example is now the most recent
/// cache.insert("c.example", CachedPolicy::new("1", policy, t0)); // evicts b.example
/// assert_eq!(cache.len(), 2);
/// assert!(cache.get("b.example", t0).is_none());
/// assert!(cache.is_current("a.example", "1", t0));
/// assert!(!cache.is_current("a.example", "2", t0)); // the TXT id changed: fetch again
/// ```
#[derive(Debug)]
pub struct PolicyCache {
    lru: Lru<CachedPolicy>,
}

impl PolicyCache {
    /// An empty cache for at most `capacity` domains (at least 1).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self { lru: Lru::new(capacity.max(1)) }
    }

    /// The most domains the cache holds.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.lru.capacity
    }

    /// How many domains it holds now (expired entries included until looked up).
    #[must_use]
    pub fn len(&self) -> usize {
        self.lru.slots.len()
    }

    /// Whether it holds nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lru.slots.is_empty()
    }

    /// The unexpired policy of `domain`, marking it as recently used. An expired one is
    /// removed and `None` returned.
    pub fn get(&mut self, domain: &str, now: SystemTime) -> Option<&CachedPolicy> {
        let key = normalize_domain(domain)?;
        let index = self.lru.find(&key)?;
        if self.lru.value(index).is_none_or(|cached| cached.is_expired(now)) {
            self.lru.remove_at(index);
            return None;
        }
        self.lru.touch(index);
        self.lru.value(index)
    }

    /// Whether the cache holds an unexpired policy for `domain` fetched under TXT id `id`:
    /// if so there is nothing to fetch (RFC 8461 §3.1, §5.1). Does not change the order
    /// of eviction.
    #[must_use]
    pub fn is_current(&self, domain: &str, id: &str, now: SystemTime) -> bool {
        normalize_domain(domain)
            .and_then(|key| self.lru.find(&key))
            .and_then(|index| self.lru.value(index))
            .is_some_and(|cached| cached.id == id && !cached.is_expired(now))
    }

    /// Whether to fetch `domain`'s policy now: [`is_current`](Self::is_current) is false
    /// (nothing cached, expired, or the TXT id changed), or the cached copy was fetched
    /// `refresh_after` or longer ago.
    ///
    /// Refetching an unchanged policy before it expires, and storing it again, restarts
    /// its `max_age`, so a busy domain's policy is not lost to one fetch that happens to
    /// fail (or be blocked) at the moment it expires. A day is a sensible `refresh_after`.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use postern::tls::mta_sts::{CachedPolicy, Policy, PolicyCache};
    ///
    /// let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    /// let day = Duration::from_secs(86_400);
    /// let policy = Policy::parse("version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 604800\n").unwrap();
    /// let mut cache = PolicyCache::new(10);
    /// assert!(cache.should_fetch("example.com", "1", t0, day));
    /// cache.insert("example.com", CachedPolicy::new("1", policy, t0));
    /// assert!(!cache.should_fetch("example.com", "1", t0 + day / 2, day));
    /// assert!(cache.should_fetch("example.com", "2", t0 + day / 2, day)); // new id
    /// assert!(cache.should_fetch("example.com", "1", t0 + day, day)); // time to refresh
    /// ```
    #[must_use]
    pub fn should_fetch(&self, domain: &str, id: &str, now: SystemTime, refresh_after: Duration) -> bool {
        let cached =
            normalize_domain(domain).and_then(|key| self.lru.find(&key)).and_then(|i| self.lru.value(i));
        match cached {
            Some(cached) if cached.id == id && !cached.is_expired(now) => {
                now.duration_since(cached.fetched_at).is_ok_and(|age| age >= refresh_after)
            }
            _ => true,
        }
    }

    /// Stores a freshly fetched policy for `domain`, replacing the one there unless that
    /// one was fetched later (the newest wins). When a new domain does not fit, the least
    /// recently used one is evicted. Returns whether `policy` was stored.
    ///
    /// Per RFC 8461 §5.1, store only a policy that parsed: when a fetch fails, keep the
    /// cached one until it expires.
    pub fn insert(&mut self, domain: &str, policy: CachedPolicy) -> bool {
        let Some(key) = normalize_domain(domain) else { return false };
        let newer = self.lru.find(&key).and_then(|index| self.lru.value(index));
        if newer.is_some_and(|old| old.fetched_at > policy.fetched_at) {
            return false;
        }
        self.lru.insert(key, policy);
        true
    }

    /// Forgets `domain`, returning its policy.
    pub fn remove(&mut self, domain: &str) -> Option<CachedPolicy> {
        let key = normalize_domain(domain)?;
        let index = self.lru.find(&key)?;
        self.lru.remove_at(index)
    }
}

/// ASCII lower case without one trailing dot; `None` if empty or over 253 bytes.
fn normalize_domain(domain: &str) -> Option<String> {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    (!domain.is_empty() && domain.len() <= MAX_DOMAIN_LEN).then(|| domain.to_ascii_lowercase())
}

const NIL: usize = usize::MAX;

#[derive(Debug)]
struct Slot<V> {
    key: String,
    value: V,
    prev: usize,
    next: usize,
}

/// A least-recently-used map with a hard capacity: a slab of slots in a doubly linked
/// list (most recent at `head`) and an index from key to slot.
#[derive(Debug)]
struct Lru<V> {
    index: HashMap<String, usize>,
    slots: Vec<Slot<V>>,
    head: usize,
    tail: usize,
    capacity: usize,
}

impl<V> Lru<V> {
    fn new(capacity: usize) -> Self {
        Self { index: HashMap::new(), slots: Vec::new(), head: NIL, tail: NIL, capacity }
    }

    fn find(&self, key: &str) -> Option<usize> {
        self.index.get(key).copied()
    }

    fn value(&self, index: usize) -> Option<&V> {
        self.slots.get(index).map(|slot| &slot.value)
    }

    fn set_next(&mut self, index: usize, next: usize) {
        match self.slots.get_mut(index) {
            Some(slot) => slot.next = next,
            None => self.head = next,
        }
    }

    fn set_prev(&mut self, index: usize, prev: usize) {
        match self.slots.get_mut(index) {
            Some(slot) => slot.prev = prev,
            None => self.tail = prev,
        }
    }

    fn unlink(&mut self, index: usize) {
        let Some(slot) = self.slots.get(index) else { return };
        let (prev, next) = (slot.prev, slot.next);
        self.set_next(prev, next); // prev == NIL: head = next
        self.set_prev(next, prev); // next == NIL: tail = prev
    }

    fn push_front(&mut self, index: usize) {
        let old_head = self.head;
        if let Some(slot) = self.slots.get_mut(index) {
            slot.prev = NIL;
            slot.next = old_head;
        }
        self.set_prev(old_head, index); // old_head == NIL: tail = index
        self.head = index;
    }

    fn touch(&mut self, index: usize) {
        if self.head != index {
            self.unlink(index);
            self.push_front(index);
        }
    }

    fn remove_at(&mut self, index: usize) -> Option<V> {
        if index >= self.slots.len() {
            return None;
        }
        self.unlink(index);
        let removed = self.slots.swap_remove(index);
        self.index.remove(&removed.key);
        // The former last slot now sits at `index`: repoint its neighbours and its key.
        if let Some(moved) = self.slots.get(index) {
            let (prev, next) = (moved.prev, moved.next);
            if let Some(entry) = self.index.get_mut(&moved.key) {
                *entry = index;
            }
            self.set_next(prev, index);
            self.set_prev(next, index);
        }
        Some(removed.value)
    }

    fn insert(&mut self, key: String, value: V) {
        if let Some(index) = self.find(&key) {
            if let Some(slot) = self.slots.get_mut(index) {
                slot.value = value;
            }
            self.touch(index);
            return;
        }
        if self.slots.len() >= self.capacity {
            self.remove_at(self.tail);
        }
        let index = self.slots.len();
        self.index.insert(key.clone(), index);
        self.slots.push(Slot { key, value, prev: NIL, next: NIL });
        self.push_front(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_EXAMPLE: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n";

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn policy(mode: &str) -> Policy {
        Policy::parse(format!(
            "version: STSv1\nmode: {mode}\nmx: *.mail.example.com\nmx: mx.example.com\nmax_age: 86400\n"
        ))
        .unwrap()
    }

    // ----- TXT record ------------------------------------------------------------------

    #[test]
    fn txt_record_grammar() {
        let ok = [
            ("v=STSv1; id=20160831085700Z;", "20160831085700Z"),
            ("v=STSv1; id=20160831085700Z", "20160831085700Z"),
            ("v=STSv1;id=abc", "abc"),
            ("v=STSv1 ;\tid=abc\t; ", "abc"),
            ("v=STSv1; id=a; ext=value!", "a"),
            ("v=STSv1; ext_1.x-y=a:b<c>; id=Z9", "Z9"),
            ("v=STSv1; v=STSv2; id=1", "1"), // `v` again is just an extension field
            ("v=STSv1; id=12345678901234567890123456789012", "12345678901234567890123456789012"),
        ];
        for (text, id) in ok {
            assert_eq!(StsRecord::parse(text).map(|r| r.id).as_deref(), Ok(id), "{text}");
        }
        use StsRecordError as E;
        let bad = [
            ("", E::NotSts),
            ("v=STSv2; id=1", E::NotSts),
            ("v=STSv10; id=1", E::NotSts),
            ("V=STSv1; id=1", E::NotSts),
            (" v=STSv1; id=1", E::NotSts),
            ("v = STSv1; id=1", E::NotSts),
            ("v=STSv1", E::MissingId),
            ("v=STSv1;", E::MissingId),
            ("v=STSv1 ", E::TrailingWhitespace),
            ("v=STSv1; id=1 ", E::TrailingWhitespace),
            ("v=STSv1;; id=1", E::EmptyField { field: 1 }),
            ("v=STSv1; id=1;;", E::EmptyField { field: 2 }),
            ("v=STSv1; id=1; ; x=y", E::EmptyField { field: 2 }),
            ("v=STSv1; id=", E::InvalidId),
            ("v=STSv1; id=123456789012345678901234567890123", E::InvalidId),
            ("v=STSv1; id=a-b", E::InvalidId),
            ("v=STSv1; id=a b", E::InvalidId),
            ("v=STSv1; id=1; id=2", E::DuplicateId),
            ("v=STSv1; ID=1", E::MissingId),
            ("v=STSv1; id=1; junk", E::InvalidField { field: 2 }),
            ("v=STSv1; id=1; =x", E::InvalidField { field: 2 }),
            ("v=STSv1; id=1; _x=1", E::InvalidField { field: 2 }),
            ("v=STSv1; id=1; x=", E::InvalidField { field: 2 }),
            ("v=STSv1; id=1; x=a=b", E::InvalidField { field: 2 }),
            ("v=STSv1; id=1; x=a b", E::InvalidField { field: 2 }),
            ("v=STSv1; id=1; abcdefghijabcdefghijabcdefghijabc=1", E::InvalidField { field: 2 }),
            ("v=STSv1; id=1; x=\u{e9}", E::NotAscii),
            ("v=STSv1; id=1; x=\x01", E::InvalidField { field: 2 }),
        ];
        for (text, err) in bad {
            assert_eq!(StsRecord::parse(text), Err(err), "{text:?}");
        }
    }

    #[test]
    fn txt_record_selection() {
        assert_eq!(StsRecord::select(Vec::<&str>::new()), Err(StsRecordError::NoRecord));
        assert_eq!(StsRecord::select(["v=spf1 -all", "v=STSv10; id=1"]), Err(StsRecordError::NoRecord));
        assert_eq!(StsRecord::select(["v=spf1 -all", "v=STSv1; id=x1"]).unwrap().id(), "x1");
        assert_eq!(
            StsRecord::select(["v=STSv1; id=1", "v=STSv1 ;id=2", "v=STSv1"]),
            Err(StsRecordError::MultipleRecords { count: 3 })
        );
        // The one STS record is invalid: no policy.
        assert_eq!(StsRecord::select([b"v=STSv1; id=-".as_slice()]), Err(StsRecordError::InvalidId));
    }

    // ----- policy parsing --------------------------------------------------------------

    #[test]
    fn rfc_8461_example_policy() {
        let policy = Policy::parse(RFC_EXAMPLE).unwrap();
        assert_eq!(policy.mode(), Mode::Enforce);
        assert_eq!(policy.max_age(), Duration::from_secs(604_800));
        let mx: Vec<String> = policy.mx().iter().map(ToString::to_string).collect();
        assert_eq!(mx, ["mail.example.com", "*.example.net", "backupmx.example.com"]);
        assert_eq!(policy.to_string(), RFC_EXAMPLE);
        // LF only, no final terminator, whitespace after `:` and at the end, any order.
        let lf = "mx: mail.example.com \nmax_age:\t604800\nmode:enforce\t\nversion:   STSv1\nmx: *.example.net\nmx: backupmx.example.com";
        let reordered = Policy::parse(lf).unwrap();
        assert_eq!(reordered.mode(), policy.mode());
        assert_eq!(reordered.max_age(), policy.max_age());
        assert_eq!(Policy::parse(reordered.to_string()).unwrap(), reordered);
    }

    #[test]
    fn unknown_fields_are_ignored_and_empty_lines_skipped() {
        let body =
            "version: STSv1\n\nx-note: caf\u{e9} = ok; see  https://example.com/\nmode: none\nmax_age: 0\n\n";
        let policy = Policy::parse(body).unwrap();
        assert_eq!(policy.mode(), Mode::None);
        assert!(policy.mx().is_empty()); // mx may be absent in mode none
        assert_eq!(policy.max_age(), Duration::ZERO);
        assert_eq!(Policy::parse(policy.to_string()).unwrap(), policy);
    }

    #[test]
    fn every_parse_error_has_its_line() {
        use PolicyError as E;
        let head = "version: STSv1\nmode: enforce\n";
        let cases: Vec<(String, PolicyError)> = vec![
            (format!("{head}mx: a.example\nmax_age: 1\n\u{0}x: y\n"), E::ControlCharacter { line: 5 }),
            (format!("{head}mx: a.example\rmax_age: 1\n"), E::ControlCharacter { line: 3 }),
            (format!("{head}mx: a.example\nmax_age: 1\r"), E::ControlCharacter { line: 4 }),
            (format!("{head}just text\n"), E::MissingColon { line: 3 }),
            (format!("{head} mx: a.example\n"), E::InvalidKey { line: 3 }),
            (format!("{head}mx : a.example\n"), E::InvalidKey { line: 3 }),
            (format!("{head}: a.example\n"), E::InvalidKey { line: 3 }),
            (format!("{head}-x: 1\n"), E::InvalidKey { line: 3 }),
            (format!("{head}\t\nmx: a\n"), E::MissingColon { line: 3 }),
            ("version: STSv2\n".to_owned(), E::UnsupportedVersion { line: 1, found: "STSv2".into() }),
            ("version: stsv1\n".to_owned(), E::UnsupportedVersion { line: 1, found: "stsv1".into() }),
            (
                "version: STSv1\nmode: Enforce\n".to_owned(),
                E::InvalidMode { line: 2, found: "Enforce".into() },
            ),
            ("version: STSv1\nmode: report\n".to_owned(), E::InvalidMode { line: 2, found: "report".into() }),
            (format!("{head}max_age: -1\n"), E::InvalidMaxAge { line: 3 }),
            (format!("{head}max_age: 1.5\n"), E::InvalidMaxAge { line: 3 }),
            (format!("{head}max_age:\n"), E::InvalidMaxAge { line: 3 }),
            (format!("{head}max_age: 12345678901\n"), E::InvalidMaxAge { line: 3 }),
            (format!("{head}max_age: 31557601\n"), E::MaxAgeTooLarge { line: 3, value: 31_557_601 }),
            (format!("{head}max_age: 9999999999\n"), E::MaxAgeTooLarge { line: 3, value: 9_999_999_999 }),
            (
                format!("{head}mx: *.*.example.com\n"),
                E::InvalidMx { line: 3, source: MxPatternError::MisplacedWildcard },
            ),
            (
                format!("{head}mx: mail.example.com.\n"),
                E::InvalidMx { line: 3, source: MxPatternError::EmptyLabel },
            ),
            (format!("{head}mx:\n"), E::InvalidMx { line: 3, source: MxPatternError::Empty }),
            (format!("{head}x-ext:\n"), E::InvalidExtensionValue { line: 3 }),
            (format!("{head}x-ext: a\tb\n"), E::InvalidExtensionValue { line: 3 }),
            (format!("{head}version: STSv1\n"), E::Duplicate { line: 3, first: 1, field: "version" }),
            (
                format!("{head}mx: a.example\nmode: enforce\n"),
                E::Duplicate { line: 4, first: 2, field: "mode" },
            ),
            (
                format!("{head}max_age: 1\r\n\r\nmax_age: 2\r\n"),
                E::Duplicate { line: 5, first: 3, field: "max_age" },
            ),
            ("mode: enforce\nmx: a.example\nmax_age: 1\n".to_owned(), E::Missing { field: "version" }),
            ("version: STSv1\nmx: a.example\nmax_age: 1\n".to_owned(), E::Missing { field: "mode" }),
            (format!("{head}mx: a.example\n"), E::Missing { field: "max_age" }),
            (format!("{head}max_age: 1\n"), E::Missing { field: "mx" }),
            ("version: STSv1\nmode: testing\nmax_age: 1\n".to_owned(), E::Missing { field: "mx" }),
            (format!("{head}Max_age: 1\nmx: a.example\n"), E::Missing { field: "max_age" }),
            (String::new(), E::Missing { field: "version" }),
        ];
        for (body, err) in cases {
            assert_eq!(Policy::parse(&body), Err(err), "{body:?}");
        }
        assert_eq!(Policy::parse(b"version: STSv1\nmode: \xffenforce\n"), Err(E::InvalidUtf8 { line: 2 }));
        let err = Policy::parse(format!("{head}max_age: 31557601\n")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 3: max_age 31557601 is over the maximum of 31557600 seconds (one year)"
        );
    }

    #[test]
    fn max_age_bounds() {
        for (value, expected) in
            [("0", Some(0)), ("31557600", Some(31_557_600)), ("0000000060", Some(60)), ("31557601", None)]
        {
            let body = format!("version: STSv1\nmode: enforce\nmx: mx.example\nmax_age: {value}\n");
            assert_eq!(Policy::parse(body).ok().map(|p| p.max_age().as_secs()), expected, "{value}");
        }
    }

    #[test]
    fn size_and_count_caps() {
        let mut body = String::from("version: STSv1\nmode: enforce\nmax_age: 60\n");
        while body.len() <= MAX_POLICY_LEN {
            body.push_str("x-pad: 0123456789\n");
        }
        assert_eq!(Policy::parse(&body), Err(PolicyError::TooLarge { len: body.len() }));
        let mut body = String::from("version: STSv1\nmode: enforce\nmax_age: 60\n");
        for n in 0..=MAX_MX_PATTERNS {
            body.push_str(&format!("mx: m{n}.example\n"));
        }
        assert_eq!(Policy::parse(&body), Err(PolicyError::TooManyMx { line: 4 + MAX_MX_PATTERNS }));
    }

    #[test]
    fn duplicates_keep_first_when_asked() {
        let body =
            "version: STSv1\nmax_age: 100\nmode: testing\nmx: mx.example\nmax_age: garbage\nversion: STSv9\n";
        let policy = Policy::parse_with(body, DuplicateFields::KeepFirst).unwrap();
        assert_eq!((policy.mode(), policy.max_age().as_secs()), (Mode::Testing, 100));
        // A repeat must still be a `key: value` line.
        let body = "version: STSv1\nmode: testing\nmode\nmx: mx.example\nmax_age: 1\n";
        assert_eq!(
            Policy::parse_with(body, DuplicateFields::KeepFirst),
            Err(PolicyError::MissingColon { line: 3 })
        );
        // mx repeats by design.
        assert_eq!(Policy::parse(RFC_EXAMPLE).unwrap().mx().len(), 3);
    }

    // ----- matching --------------------------------------------------------------------

    #[test]
    fn wildcard_matching_table() {
        let table = [
            ("*.example.com", "mx1.example.com", true),
            ("*.example.com", "MX1.Example.COM", true),
            ("*.example.com", "mx1.example.com.", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "a.b.example.com", false),
            ("*.example.com", ".example.com", false),
            ("*.example.com", "*.example.com", false),
            ("*.example.com", "mx1.example.com..", false),
            ("*.example.com", "mx1.example.net", false),
            ("*.example.com", "mx1example.com", false),
            ("*.example.com", "", false),
            ("mail.example.com", "mail.example.com", true),
            ("mail.example.com", "MAIL.EXAMPLE.COM.", true),
            ("mail.example.com", "x.mail.example.com", false),
            ("mail.example.com", "example.com", false),
            ("Mail.Example.Com", "mail.example.com", true),
            ("*.com", "example.com", true),
            ("xn--bcher-kva.example", "XN--BCHER-KVA.example", true),
        ];
        for (pattern, host, expected) in table {
            assert_eq!(MxPattern::parse(pattern).unwrap().matches(host), expected, "{pattern} vs {host}");
        }
        for (pattern, err) in [
            ("", MxPatternError::Empty),
            ("*.", MxPatternError::Empty),
            ("*", MxPatternError::MisplacedWildcard),
            ("*example.com", MxPatternError::MisplacedWildcard),
            ("mx.*.example.com", MxPatternError::MisplacedWildcard),
            ("mx*.example.com", MxPatternError::MisplacedWildcard),
            (".example.com", MxPatternError::EmptyLabel),
            ("a..example.com", MxPatternError::EmptyLabel),
            ("-mx.example.com", MxPatternError::HyphenAtLabelEdge),
            ("mx-.example.com", MxPatternError::HyphenAtLabelEdge),
            ("mx_1.example.com", MxPatternError::InvalidCharacter),
            ("b\u{fc}cher.example", MxPatternError::InvalidCharacter),
            ("mx example.com", MxPatternError::InvalidCharacter),
        ] {
            assert_eq!(MxPattern::parse(pattern), Err(err), "{pattern:?}");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert_eq!(MxPattern::parse(&long_label), Err(MxPatternError::LabelTooLong));
        let long_name = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(62)].join(".");
        assert_eq!(long_name.len(), 254);
        assert_eq!(MxPattern::parse(&long_name), Err(MxPatternError::TooLong));
        assert!(MxPattern::parse(long_name.get(1..).unwrap()).is_ok());
    }

    // ----- verdicts --------------------------------------------------------------------

    #[test]
    fn verdict_for_each_mode_and_outcome() {
        use CertificateProblem as C;
        let outcomes = [
            (TlsOutcome::Valid, None),
            (TlsOutcome::NoStartTls, Some(Failure::NoStartTls)),
            (TlsOutcome::HandshakeFailed, Some(Failure::HandshakeFailed)),
            (TlsOutcome::Certificate(C::HostMismatch), Some(Failure::Certificate(C::HostMismatch))),
            (TlsOutcome::Certificate(C::Expired), Some(Failure::Certificate(C::Expired))),
            (TlsOutcome::Certificate(C::NotTrusted), Some(Failure::Certificate(C::NotTrusted))),
            (TlsOutcome::Certificate(C::Other), Some(Failure::Certificate(C::Other))),
        ];
        let t0 = t(1_700_000_000);
        for mode in ["enforce", "testing", "none"] {
            let cached = CachedPolicy::new("1", policy(mode), t0);
            for (outcome, failure) in outcomes {
                for (host, listed) in
                    [("mx1.mail.example.com", true), ("MX.EXAMPLE.COM.", true), ("evil.example", false)]
                {
                    let failure = if listed { failure } else { Some(Failure::MxNotListed) };
                    let expected = match (mode, failure) {
                        ("none", _) | (_, None) => Verdict::Deliver,
                        ("testing", Some(f)) => Verdict::DeliverAndReport(f),
                        (_, Some(f)) => Verdict::Refuse(f),
                    };
                    let verdict = decide(Some(&cached), t0, host, outcome);
                    assert_eq!(verdict, expected, "{mode} {outcome:?} {host}");
                    assert_eq!(verdict.may_deliver(), !matches!(expected, Verdict::Refuse(_)));
                    // Without a policy: always deliver.
                    assert_eq!(decide(None, t0, host, outcome), Verdict::Deliver);
                }
            }
        }
    }

    #[test]
    fn expired_policy_is_absent() {
        let t0 = t(1_700_000_000);
        let cached = CachedPolicy::new("1", policy("enforce"), t0);
        let host = "mx.example.com";
        let last_valid = t0 + Duration::from_secs(86_400);
        assert_eq!(cached.expires_at(), Some(last_valid));
        assert!(matches!(
            decide(Some(&cached), last_valid, host, TlsOutcome::NoStartTls),
            Verdict::Refuse(_)
        ));
        let expired = last_valid + Duration::from_nanos(1);
        assert_eq!(decide(Some(&cached), expired, host, TlsOutcome::NoStartTls), Verdict::Deliver);
        // A clock that went backwards is not expiry.
        assert!(!cached.is_expired(t(0)));
    }

    #[test]
    fn failure_result_types() {
        use CertificateProblem as C;
        let table = [
            (Failure::MxNotListed, "validation-failure", Some("mx-not-in-sts-policy")),
            (Failure::NoStartTls, "starttls-not-supported", None),
            (Failure::HandshakeFailed, "validation-failure", Some("tls-handshake-failed")),
            (Failure::Certificate(C::HostMismatch), "certificate-host-mismatch", None),
            (Failure::Certificate(C::Expired), "certificate-expired", None),
            (Failure::Certificate(C::NotTrusted), "certificate-not-trusted", None),
            (Failure::Certificate(C::Other), "validation-failure", None),
        ];
        for (failure, result_type, reason) in table {
            assert_eq!(failure.result_type().as_str(), result_type);
            assert_eq!(failure.reason_code(), reason);
        }
    }

    // ----- cache -----------------------------------------------------------------------

    #[test]
    fn cache_evicts_least_recently_used_and_stays_bounded() {
        let t0 = t(1_700_000_000);
        let mut cache = PolicyCache::new(3);
        for n in 0..100 {
            assert!(cache.insert(&format!("d{n}.example"), CachedPolicy::new("1", policy("enforce"), t0)));
            assert!(cache.len() <= 3);
            // Keep d0 hot: it must survive every eviction.
            assert!(cache.get("d0.example", t0).is_some(), "d0 evicted at {n}");
            assert_eq!(cache.lru.index.len(), cache.len());
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get("d99.example", t0).is_some());
        assert!(cache.get("d98.example", t0).is_some());
        assert!(cache.get("d97.example", t0).is_none());
        check_links(&cache.lru);
    }

    #[test]
    fn cache_keeps_newest_and_tracks_ids() {
        let t0 = t(1_700_000_000);
        let later = t0 + Duration::from_secs(60);
        let mut cache = PolicyCache::new(10);
        assert!(!cache.is_current("example.com", "1", t0));
        assert!(cache.insert("Example.COM.", CachedPolicy::new("1", policy("testing"), later)));
        assert!(cache.is_current("example.com", "1", t0));
        assert!(!cache.is_current("example.com", "2", t0));
        // An older fetch (a slow response overtaken by a newer one) does not replace it.
        assert!(!cache.insert("example.com", CachedPolicy::new("0", policy("enforce"), t0)));
        assert_eq!(cache.get("example.com", later).unwrap().id(), "1");
        // The id changed and the new policy arrived.
        assert!(cache.insert("example.com", CachedPolicy::new("2", policy("enforce"), later)));
        let cached = cache.get("example.com", later).unwrap();
        assert_eq!((cached.id(), cached.policy().mode()), ("2", Mode::Enforce));
        assert_eq!(cache.len(), 1);
        // Expired: gone on lookup, and not current.
        let expired = later + Duration::from_secs(86_401);
        assert!(!cache.is_current("example.com", "2", expired));
        assert!(cache.get("example.com", expired).is_none());
        assert!(cache.is_empty());
        // Names that cannot be domains are not stored.
        assert!(!cache.insert("", CachedPolicy::new("1", policy("enforce"), t0)));
        assert!(!cache.insert(&"a".repeat(254), CachedPolicy::new("1", policy("enforce"), t0)));
        assert!(cache.insert("x.example", CachedPolicy::new("1", policy("enforce"), t0)));
        assert_eq!(cache.remove("X.example.").map(|c| c.id().to_owned()).as_deref(), Some("1"));
        assert_eq!(PolicyCache::new(0).capacity(), 1);

        // A daily refresh of an unchanged policy restarts its max_age.
        let day = Duration::from_secs(86_400);
        let mut cache = PolicyCache::new(1);
        cache.insert("example.com", CachedPolicy::new("1", policy("enforce"), t0));
        assert!(!cache.should_fetch("example.com", "1", t0 + day / 2, day));
        assert!(cache.should_fetch("example.com", "1", t0 + day, day));
        assert!(cache.insert("example.com", CachedPolicy::new("1", policy("enforce"), t0 + day)));
        assert!(cache.get("example.com", t0 + day + day / 2).is_some());
        assert!(cache.should_fetch("example.com", "1", t0 + day * 3, day)); // expired
        assert!(cache.should_fetch("other.example", "1", t0, day));
        assert!(!cache.should_fetch("example.com", "1", t0, day)); // a clock that went back
    }

    #[test]
    fn lru_links_survive_arbitrary_removal() {
        let mut lru = Lru::new(5);
        for n in 0..5 {
            lru.insert(format!("k{n}"), n);
        }
        for key in ["k2", "k0", "k4"] {
            let index = lru.find(key).unwrap();
            lru.remove_at(index);
            check_links(&lru);
        }
        lru.insert("k5".into(), 5);
        lru.insert("k1".into(), 11); // replace + touch
        check_links(&lru);
        let order = walk(&lru);
        assert_eq!(order, ["k1", "k5", "k3"]);
        assert_eq!(lru.value(lru.find("k1").unwrap()), Some(&11));
    }

    fn walk<V>(lru: &Lru<V>) -> Vec<String> {
        let mut keys = Vec::new();
        let mut at = lru.head;
        while at != NIL {
            keys.push(lru.slots[at].key.clone());
            at = lru.slots[at].next;
        }
        keys
    }

    fn check_links<V>(lru: &Lru<V>) {
        let forward = walk(lru);
        assert_eq!(forward.len(), lru.slots.len());
        let mut backward = Vec::new();
        let mut at = lru.tail;
        while at != NIL {
            backward.push(lru.slots[at].key.clone());
            at = lru.slots[at].prev;
        }
        backward.reverse();
        assert_eq!(forward, backward);
        for (key, &index) in &lru.index {
            assert_eq!(&lru.slots[index].key, key);
        }
    }
}
