//! SMTP TLS Reporting, TLS-RPT (RFC 8460): the `_smtp._tls` TXT record, a bounded
//! aggregator of delivery results, and the JSON report.
//!
//! A sending MTA counts, per recipient (policy) domain and report window (usually a UTC
//! day), the sessions that negotiated TLS as the domain's policy required and the ones that
//! failed, with details of the failures; at the end of the window it sends each domain
//! that publishes a `_smtp._tls` record a JSON report at the `rua` addresses. postern
//! builds the report; the application sends it (gzip, mail or HTTPS POST).
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use postern::tls::mta_sts::{Failure, Policy};
//! use postern::tls::tlsrpt::{Aggregator, AppliedPolicy, FailureDetail, ReportMetadata, TlsRptRecord};
//!
//! let policy = Policy::parse("version: STSv1\nmode: testing\nmx: *.mail.example.com\nmax_age: 86400\n").unwrap();
//! let applied = AppliedPolicy::sts("example.com", &policy);
//!
//! let mut aggregator = Aggregator::default();
//! aggregator.record_success(&applied);
//! aggregator.record_failure(
//!     &applied,
//!     FailureDetail::from_failure(Failure::NoStartTls)
//!         .with_sending_mta_ip("192.0.2.1".parse().unwrap())
//!         .with_receiving_mx_hostname("mx2.mail.example.com"),
//! );
//!
//! let record = TlsRptRecord::select(["v=TLSRPTv1; rua=mailto:tlsrpt@example.com"]).unwrap();
//! assert_eq!(record.rua()[0].mailto_address(), Some("tlsrpt@example.com"));
//!
//! let day = SystemTime::UNIX_EPOCH + Duration::from_secs(1_459_468_800); // 2016-04-01
//! let meta = ReportMetadata::new("Sender Inc.", "tlsrpt@sender.example", "2016-04-01-1", day, day + Duration::from_secs(86_399));
//! let json = aggregator.report_json("example.com", &meta).unwrap();
//! assert!(json.contains(r#""date-range":{"start-datetime":"2016-04-01T00:00:00Z","end-datetime":"2016-04-01T23:59:59Z"}"#));
//! assert!(json.contains(r#""summary":{"total-successful-session-count":1,"total-failure-session-count":1}"#));
//! assert!(json.contains(r#""result-type":"starttls-not-supported""#));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use super::mta_sts::{
    CachedPolicy, Failure, Policy, TxtSyntax, is_ext_name, is_txt_ext_value, select_one, txt_fields,
};

/// The longest text kept for a host name, HELO name, reason code or URI in a failure
/// detail, or for a policy domain: longer values are cut (at a character boundary), so
/// that a peer's 1 MB HELO name cannot grow the aggregator.
pub const MAX_FIELD_LEN: usize = 255;

// ----- the _smtp._tls TXT record (RFC 8460 §3) ------------------------------------------

/// Why a `_smtp._tls` TXT record was not accepted. Any of these means: send no reports to
/// the domain (RFC 8460 §3).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsRptRecordError {
    /// Not one of the TXT records at the name starts with `v=TLSRPTv1`.
    #[error("no TXT record starts with `v=TLSRPTv1`")]
    NoRecord,
    /// More than one TXT record starts with `v=TLSRPTv1`.
    #[error("{count} TXT records start with `v=TLSRPTv1`; exactly one is allowed")]
    MultipleRecords {
        /// How many records started with `v=TLSRPTv1`.
        count: usize,
    },
    /// The record does not start with `v=TLSRPTv1` followed by `;`.
    #[error("not a TLS-RPT record: it must start with `v=TLSRPTv1;`")]
    NotTlsRpt,
    /// The record holds a byte outside US-ASCII.
    #[error("the record is not US-ASCII")]
    NotAscii,
    /// Two `;` with nothing between them.
    #[error("field {field} is empty")]
    EmptyField {
        /// The 1-based position of the field after `v=TLSRPTv1`.
        field: usize,
    },
    /// Whitespace after the last field, without a closing `;`.
    #[error("whitespace after the last field (only `;` may follow it)")]
    TrailingWhitespace,
    /// A field is not `name=value` with a valid name and value.
    #[error("field {field} is not `name=value` with a valid name and value")]
    InvalidField {
        /// The 1-based position of the field after `v=TLSRPTv1`.
        field: usize,
    },
    /// The required `rua` field is missing.
    #[error("the record has no `rua` field")]
    MissingRua,
    /// `rua` appears twice.
    #[error("`rua` appears more than once")]
    DuplicateRua,
    /// An `rua` entry is not a URI (RFC 3986 characters, a scheme, and for `mailto:` an
    /// address, for `https:` a host; `,` and `!` must be percent-encoded).
    #[error("rua entry {index} is not a valid URI")]
    InvalidUri {
        /// The 1-based position of the URI in the `rua` list.
        index: usize,
    },
}

/// Where to send reports: one entry of `rua`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReportUri {
    /// `mailto:` (RFC 8460 §5.3): the whole URI.
    Mailto(String),
    /// `https:` (RFC 8460 §5.4), for an HTTP POST: the whole URI.
    Https(String),
    /// Another scheme, which RFC 8460 does not define: the whole URI. Skip it.
    Other(String),
}

impl ReportUri {
    /// The URI as published.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Mailto(uri) | Self::Https(uri) | Self::Other(uri) => uri,
        }
    }

    /// For `mailto:`, the address: the text between `mailto:` and any `?`, still
    /// percent-encoded as published.
    #[must_use]
    pub fn mailto_address(&self) -> Option<&str> {
        match self {
            Self::Mailto(uri) => {
                let rest = uri.get("mailto:".len()..)?;
                Some(rest.split_once('?').map_or(rest, |(address, _)| address))
            }
            Self::Https(_) | Self::Other(_) => None,
        }
    }

    fn parse(uri: &str) -> Option<Self> {
        let (scheme, rest) = uri.split_once(':')?;
        let mut scheme_bytes = scheme.bytes();
        let scheme_ok = scheme_bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
            && scheme_bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok || rest.is_empty() || !is_uri_text(uri) {
            return None;
        }
        if scheme.eq_ignore_ascii_case("mailto") {
            let address = rest.split_once('?').map_or(rest, |(address, _)| address);
            let (local, domain) = address.rsplit_once('@')?;
            (!local.is_empty() && !domain.is_empty()).then(|| Self::Mailto(uri.to_owned()))
        } else if scheme.eq_ignore_ascii_case("https") {
            let authority = rest.strip_prefix("//")?;
            let host = authority.split(['/', '?', '#']).next().unwrap_or_default();
            (!host.is_empty()).then(|| Self::Https(uri.to_owned()))
        } else {
            Some(Self::Other(uri.to_owned()))
        }
    }
}

impl fmt::Display for ReportUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 3986 characters (unreserved, reserved, `%XX`), less `,` and `!` (which RFC 8460 §3
/// says must be encoded) and `;` (the record's field delimiter).
fn is_uri_text(uri: &str) -> bool {
    let bytes = uri.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = |at: usize| bytes.get(at).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        let ok = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b':'
                    | b'/'
                    | b'?'
                    | b'#'
                    | b'['
                    | b']'
                    | b'@'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b'='
            );
        if !ok {
            return false;
        }
        i += 1;
    }
    true
}

/// A parsed `_smtp._tls` TXT record: `v=TLSRPTv1; rua=...` (RFC 8460 §3).
///
/// ```
/// use postern::tls::tlsrpt::{ReportUri, TlsRptRecord, TlsRptRecordError};
///
/// let record = TlsRptRecord::parse(
///     "v=TLSRPTv1; rua=mailto:reports@example.com , https://reporting.example.com/v1/tlsrpt",
/// )
/// .unwrap();
/// assert_eq!(record.rua().len(), 2);
/// assert!(matches!(&record.rua()[1], ReportUri::Https(uri) if uri.ends_with("/tlsrpt")));
/// assert_eq!(TlsRptRecord::parse("v=TLSRPTv1;"), Err(TlsRptRecordError::MissingRua));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsRptRecord {
    rua: Vec<ReportUri>,
}

impl TlsRptRecord {
    /// Parses one TXT record (its character-strings concatenated).
    ///
    /// The grammar is RFC 8460 §3: `v=TLSRPTv1`, then `;`-separated fields (whitespace
    /// allowed around `;`), one of them `rua=` with a comma-separated list of URIs
    /// (whitespace allowed around `,`); other `name=value` fields are checked and ignored.
    ///
    /// # Errors
    /// [`TlsRptRecordError`] for anything else.
    pub fn parse(record: impl AsRef<[u8]>) -> Result<Self, TlsRptRecordError> {
        let record = record.as_ref();
        if !record.is_ascii() {
            return Err(TlsRptRecordError::NotAscii);
        }
        let record = std::str::from_utf8(record).map_err(|_| TlsRptRecordError::NotAscii)?;
        let fields = txt_fields(record, "v=TLSRPTv1").map_err(|e| match e {
            TxtSyntax::NotVersion => TlsRptRecordError::NotTlsRpt,
            TxtSyntax::EmptyField { field } => TlsRptRecordError::EmptyField { field },
            TxtSyntax::TrailingWhitespace => TlsRptRecordError::TrailingWhitespace,
        })?;
        let mut rua: Option<Vec<ReportUri>> = None;
        for (n, field) in fields.into_iter().enumerate() {
            let invalid = TlsRptRecordError::InvalidField { field: n + 1 };
            let (name, value) = field.split_once('=').ok_or(invalid.clone())?;
            if name == "rua" {
                if rua.is_some() {
                    return Err(TlsRptRecordError::DuplicateRua);
                }
                let uris: Vec<&str> = value.split(',').collect();
                let last = uris.len().saturating_sub(1);
                let mut parsed = Vec::with_capacity(uris.len());
                for (i, uri) in uris.into_iter().enumerate() {
                    // Whitespace is allowed next to the commas only.
                    let uri = if i > 0 { uri.trim_start_matches([' ', '\t']) } else { uri };
                    let uri = if i < last { uri.trim_end_matches([' ', '\t']) } else { uri };
                    parsed.push(ReportUri::parse(uri).ok_or(TlsRptRecordError::InvalidUri { index: i + 1 })?);
                }
                rua = Some(parsed);
            } else if !is_ext_name(name) || !is_txt_ext_value(value) {
                return Err(invalid);
            }
        }
        let rua = rua.ok_or(TlsRptRecordError::MissingRua)?;
        Ok(Self { rua })
    }

    /// Picks the TLS-RPT record out of all the TXT records at `_smtp._tls.<domain>` and
    /// parses it: records that do not start with `v=TLSRPTv1` are discarded, and exactly
    /// one must remain (RFC 8460 §3).
    ///
    /// ```
    /// use postern::tls::tlsrpt::TlsRptRecord;
    ///
    /// let txt = ["v=spf1 -all", "v=TLSRPTv1;rua=https://tlsrpt.example.net/report"];
    /// assert_eq!(TlsRptRecord::select(txt).unwrap().rua()[0].as_str(), "https://tlsrpt.example.net/report");
    /// ```
    ///
    /// # Errors
    /// [`TlsRptRecordError::NoRecord`], [`TlsRptRecordError::MultipleRecords`], or why the
    /// one record did not parse.
    pub fn select<I, T>(records: I) -> Result<Self, TlsRptRecordError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        select_one(records, b"v=TLSRPTv1", TlsRptRecordError::NoRecord, |count| {
            TlsRptRecordError::MultipleRecords { count }
        })
        .and_then(Self::parse)
    }

    /// The report URIs, in the published order.
    #[must_use]
    pub fn rua(&self) -> &[ReportUri] {
        &self.rua
    }
}

// ----- result and policy types (RFC 8460 §4.3) ------------------------------------------

/// A TLS-RPT result type (RFC 8460 §4.3, and the IANA "STARTTLS Validation Result Types"
/// registry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ResultType {
    /// `starttls-not-supported`: the MX did not offer STARTTLS.
    StartTlsNotSupported,
    /// `certificate-host-mismatch`: the certificate does not name the MX host.
    CertificateHostMismatch,
    /// `certificate-expired`.
    CertificateExpired,
    /// `certificate-not-trusted`: an untrusted or unknown CA, a broken chain, ...
    CertificateNotTrusted,
    /// `validation-failure`: any other failure; add a `failure-reason-code`.
    ValidationFailure,
    /// `tlsa-invalid` (DANE).
    TlsaInvalid,
    /// `dnssec-invalid` (DANE).
    DnssecInvalid,
    /// `dane-required` (DANE).
    DaneRequired,
    /// `sts-policy-fetch-error`: the MTA-STS policy could not be fetched.
    StsPolicyFetchError,
    /// `sts-policy-invalid`: the fetched MTA-STS policy did not parse.
    StsPolicyInvalid,
    /// `sts-webpki-invalid`: the policy host's certificate did not verify.
    StsWebpkiInvalid,
}

impl ResultType {
    /// The name used in reports, e.g. `certificate-expired`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StartTlsNotSupported => "starttls-not-supported",
            Self::CertificateHostMismatch => "certificate-host-mismatch",
            Self::CertificateExpired => "certificate-expired",
            Self::CertificateNotTrusted => "certificate-not-trusted",
            Self::ValidationFailure => "validation-failure",
            Self::TlsaInvalid => "tlsa-invalid",
            Self::DnssecInvalid => "dnssec-invalid",
            Self::DaneRequired => "dane-required",
            Self::StsPolicyFetchError => "sts-policy-fetch-error",
            Self::StsPolicyInvalid => "sts-policy-invalid",
            Self::StsWebpkiInvalid => "sts-webpki-invalid",
        }
    }
}

impl fmt::Display for ResultType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of policy a session was held to (RFC 8460 §4.3 `policy-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum PolicyType {
    /// `sts`: an MTA-STS policy.
    Sts,
    /// `tlsa`: DANE TLSA records.
    Tlsa,
    /// `no-policy-found`: neither.
    NoPolicyFound,
}

impl PolicyType {
    /// The name used in reports.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sts => "sts",
            Self::Tlsa => "tlsa",
            Self::NoPolicyFound => "no-policy-found",
        }
    }
}

impl fmt::Display for PolicyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The policy a session was held to: the `policy` object of a report.
///
/// Build it once per policy and reuse it for every session; sessions under equal
/// `AppliedPolicy` values are counted together.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppliedPolicy {
    domain: String,
    policy_type: PolicyType,
    policy_string: Vec<String>,
    mx_host: Vec<String>,
}

impl AppliedPolicy {
    /// An MTA-STS policy of `domain`: `policy-string` is its lines, `mx-host` its patterns.
    #[must_use]
    pub fn sts(domain: &str, policy: &Policy) -> Self {
        Self {
            domain: normalize(domain),
            policy_type: PolicyType::Sts,
            policy_string: policy.lines(),
            mx_host: policy.mx().iter().map(ToString::to_string).collect(),
        }
    }

    /// No policy: `domain` publishes neither MTA-STS nor DANE (or its MTA-STS policy could
    /// not be fetched; report that with `sts-policy-fetch-error`).
    #[must_use]
    pub fn no_policy_found(domain: &str) -> Self {
        Self {
            domain: normalize(domain),
            policy_type: PolicyType::NoPolicyFound,
            policy_string: Vec::new(),
            mx_host: Vec::new(),
        }
    }

    /// DANE: `records` are the TLSA records in presentation form, `mx_hosts` the MX hosts
    /// they were found for.
    #[must_use]
    pub fn tlsa<R, M>(domain: &str, records: R, mx_hosts: M) -> Self
    where
        R: IntoIterator,
        R::Item: Into<String>,
        M: IntoIterator,
        M::Item: Into<String>,
    {
        Self {
            domain: normalize(domain),
            policy_type: PolicyType::Tlsa,
            policy_string: records.into_iter().map(Into::into).collect(),
            mx_host: mx_hosts.into_iter().map(Into::into).collect(),
        }
    }

    /// The MTA-STS policy that applies to a delivery, as [`mta_sts::decide`] sees it: the
    /// cached policy if present and unexpired at `now`, otherwise `no-policy-found`.
    ///
    /// [`mta_sts::decide`]: super::mta_sts::decide
    #[must_use]
    pub fn for_delivery(domain: &str, cached: Option<&CachedPolicy>, now: SystemTime) -> Self {
        match cached {
            Some(cached) if !cached.is_expired(now) => Self::sts(domain, cached.policy()),
            _ => Self::no_policy_found(domain),
        }
    }

    /// The policy domain, lower case without a trailing dot.
    #[must_use]
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The policy type.
    #[must_use]
    pub fn policy_type(&self) -> PolicyType {
        self.policy_type
    }
}

/// One failed session, as reported in `failure-details` (RFC 8460 §4.3). Sessions with
/// equal details are counted together.
///
/// Text fields longer than [`MAX_FIELD_LEN`] bytes are cut.
///
/// ```
/// use postern::tls::tlsrpt::{FailureDetail, ResultType};
///
/// let detail = FailureDetail::new(ResultType::CertificateExpired)
///     .with_sending_mta_ip("2001:db8:abcd:12::1".parse().unwrap())
///     .with_receiving_mx_hostname("mx1.mail.example.com")
///     .with_receiving_ip("203.0.113.56".parse().unwrap());
/// assert_eq!(detail.result_type(), ResultType::CertificateExpired);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FailureDetail {
    result_type: ResultType,
    sending_mta_ip: Option<IpAddr>,
    receiving_mx_hostname: Option<String>,
    receiving_mx_helo: Option<String>,
    receiving_ip: Option<IpAddr>,
    failure_reason_code: Option<String>,
    additional_information: Option<String>,
}

impl FailureDetail {
    /// A failure of type `result_type`, with no other detail yet.
    #[must_use]
    pub fn new(result_type: ResultType) -> Self {
        Self {
            result_type,
            sending_mta_ip: None,
            receiving_mx_hostname: None,
            receiving_mx_helo: None,
            receiving_ip: None,
            failure_reason_code: None,
            additional_information: None,
        }
    }

    /// The detail for an MTA-STS [`Failure`]: its result type and reason code.
    #[must_use]
    pub fn from_failure(failure: Failure) -> Self {
        let detail = Self::new(failure.result_type());
        match failure.reason_code() {
            Some(code) => detail.with_failure_reason_code(code),
            None => detail,
        }
    }

    /// The result type.
    #[must_use]
    pub fn result_type(&self) -> ResultType {
        self.result_type
    }

    /// `sending-mta-ip`: the address the session was sent from.
    #[must_use]
    pub fn with_sending_mta_ip(mut self, ip: IpAddr) -> Self {
        self.sending_mta_ip = Some(ip);
        self
    }

    /// `receiving-mx-hostname`: the MX host name.
    #[must_use]
    pub fn with_receiving_mx_hostname(mut self, host: &str) -> Self {
        self.receiving_mx_hostname = Some(cut(host.strip_suffix('.').unwrap_or(host)));
        self
    }

    /// `receiving-mx-helo`: the name in the MX's greeting or EHLO reply.
    #[must_use]
    pub fn with_receiving_mx_helo(mut self, helo: &str) -> Self {
        self.receiving_mx_helo = Some(cut(helo));
        self
    }

    /// `receiving-ip`: the MX's address.
    #[must_use]
    pub fn with_receiving_ip(mut self, ip: IpAddr) -> Self {
        self.receiving_ip = Some(ip);
        self
    }

    /// `failure-reason-code`: free text saying more, e.g. a TLS library's error name.
    #[must_use]
    pub fn with_failure_reason_code(mut self, code: &str) -> Self {
        self.failure_reason_code = Some(cut(code));
        self
    }

    /// `additional-information`: a URI where the receiving domain can read more.
    #[must_use]
    pub fn with_additional_information(mut self, uri: &str) -> Self {
        self.additional_information = Some(cut(uri));
        self
    }
}

/// At most [`MAX_FIELD_LEN`] bytes of `text`, cut at a character boundary.
fn cut(text: &str) -> String {
    let mut end = text.len().min(MAX_FIELD_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_owned()
}

fn normalize(domain: &str) -> String {
    cut(domain.strip_suffix('.').unwrap_or(domain)).to_ascii_lowercase()
}

// ----- the aggregator -------------------------------------------------------------------

#[derive(Debug, Default)]
struct Tally {
    successes: u64,
    failures: u64,
    details: BTreeMap<FailureDetail, u64>,
}

/// What an [`Aggregator`] could not keep because a cap was reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Overflow {
    /// Sessions not counted at all: their policy was new and the policy cap was reached.
    pub sessions: u64,
    /// Failed sessions counted in their policy's `total-failure-session-count` but with
    /// no `failure-details` entry: their detail was new and the detail cap was reached.
    pub failure_details: u64,
}

/// Counts sessions per policy over one report window, with bounded memory.
///
/// Successes and failures are counted per [`AppliedPolicy`], and failures also per
/// [`FailureDetail`]. At most `max_policies` policies and `max_failure_details` distinct
/// details (over all policies) are kept; what does not fit is counted in [`Overflow`]:
/// a failed session whose detail is new once the detail cap is reached still counts in
/// its policy's failure total. Each kept detail holds at most five [`MAX_FIELD_LEN`]-byte
/// strings, and each policy what the application put in its [`AppliedPolicy`] (for MTA-STS,
/// a parsed policy's lines).
///
/// The report for a domain lists its policies and details in a fixed (sorted) order, so
/// the same sessions always give the same JSON. Call [`Aggregator::clear`] (or make a new
/// one) when a window ends.
#[derive(Debug)]
pub struct Aggregator {
    tallies: BTreeMap<AppliedPolicy, Tally>,
    details: usize,
    max_policies: usize,
    max_failure_details: usize,
    overflow: Overflow,
}

impl Default for Aggregator {
    /// [`Aggregator::DEFAULT_MAX_POLICIES`] and [`Aggregator::DEFAULT_MAX_FAILURE_DETAILS`].
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_POLICIES, Self::DEFAULT_MAX_FAILURE_DETAILS)
    }
}

impl Aggregator {
    /// The default cap on policies: 10 000.
    pub const DEFAULT_MAX_POLICIES: usize = 10_000;
    /// The default cap on distinct failure details: 10 000.
    pub const DEFAULT_MAX_FAILURE_DETAILS: usize = 10_000;

    /// An empty aggregator keeping at most `max_policies` policies and
    /// `max_failure_details` distinct failure details.
    #[must_use]
    pub fn new(max_policies: usize, max_failure_details: usize) -> Self {
        Self {
            tallies: BTreeMap::new(),
            details: 0,
            max_policies,
            max_failure_details,
            overflow: Overflow::default(),
        }
    }

    /// Counts a session that met `policy` (for `no-policy-found`: one that completed).
    pub fn record_success(&mut self, policy: &AppliedPolicy) {
        if let Some(tally) = tally_of(&mut self.tallies, &mut self.overflow, self.max_policies, policy) {
            tally.successes = tally.successes.saturating_add(1);
        }
    }

    /// Counts a session that failed `policy`, with its detail.
    pub fn record_failure(&mut self, policy: &AppliedPolicy, detail: FailureDetail) {
        let Some(tally) = tally_of(&mut self.tallies, &mut self.overflow, self.max_policies, policy) else {
            return;
        };
        tally.failures = tally.failures.saturating_add(1);
        if let Some(count) = tally.details.get_mut(&detail) {
            *count = count.saturating_add(1);
        } else if self.details < self.max_failure_details {
            tally.details.insert(detail, 1);
            self.details += 1;
        } else {
            self.overflow.failure_details = self.overflow.failure_details.saturating_add(1);
        }
    }

    /// What did not fit under the caps.
    #[must_use]
    pub fn overflow(&self) -> Overflow {
        self.overflow
    }

    /// The policy domains with at least one session, sorted, each once.
    #[must_use]
    pub fn policy_domains(&self) -> Vec<&str> {
        let mut domains: Vec<&str> = self.tallies.keys().map(|policy| policy.domain.as_str()).collect();
        domains.dedup(); // sorted by domain first, so equal domains are adjacent
        domains
    }

    /// `(successful, failed)` session counts over all policies of `domain`.
    #[must_use]
    pub fn totals(&self, domain: &str) -> (u64, u64) {
        self.policies_of(&normalize(domain)).fold((0, 0), |(ok, failed), (_, tally)| {
            (ok.saturating_add(tally.successes), failed.saturating_add(tally.failures))
        })
    }

    fn policies_of<'a>(&'a self, domain: &'a str) -> impl Iterator<Item = (&'a AppliedPolicy, &'a Tally)> {
        self.tallies.iter().filter(move |(policy, _)| policy.domain == domain)
    }

    /// Forgets every count, to start a new window.
    pub fn clear(&mut self) {
        self.tallies.clear();
        self.details = 0;
        self.overflow = Overflow::default();
    }

    /// The RFC 8460 §4.4 JSON report for `domain` (compact, UTF-8).
    ///
    /// Fields absent from a [`FailureDetail`] are left out. For `no-policy-found`,
    /// `policy-string` and `mx-host` are left out; for other types they are always
    /// present (as lists).
    ///
    /// # Errors
    /// [`ReportError::NoSessions`] if nothing was recorded for `domain`; a time error if
    /// the window cannot be written as RFC 3339 (before 1970, after 9999) or ends before it
    /// starts.
    pub fn report_json(&self, domain: &str, meta: &ReportMetadata) -> Result<String, ReportError> {
        let domain = normalize(domain);
        if meta.end < meta.start {
            return Err(ReportError::EndBeforeStart);
        }
        let start = rfc3339(meta.start)?;
        let end = rfc3339(meta.end)?;
        let mut policies = self.policies_of(&domain).peekable();
        if policies.peek().is_none() {
            return Err(ReportError::NoSessions);
        }

        let mut out = String::with_capacity(512);
        out.push_str("{\"organization-name\":");
        json_str(&mut out, &meta.organization_name);
        out.push_str(",\"date-range\":{\"start-datetime\":");
        json_str(&mut out, &start);
        out.push_str(",\"end-datetime\":");
        json_str(&mut out, &end);
        out.push_str("},\"contact-info\":");
        json_str(&mut out, &meta.contact_info);
        out.push_str(",\"report-id\":");
        json_str(&mut out, &meta.report_id);
        out.push_str(",\"policies\":[");
        for (n, (policy, tally)) in policies.enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push_str("{\"policy\":{\"policy-type\":");
            json_str(&mut out, policy.policy_type.as_str());
            if policy.policy_type != PolicyType::NoPolicyFound {
                out.push_str(",\"policy-string\":");
                json_str_list(&mut out, &policy.policy_string);
            }
            out.push_str(",\"policy-domain\":");
            json_str(&mut out, &policy.domain);
            if policy.policy_type != PolicyType::NoPolicyFound {
                out.push_str(",\"mx-host\":");
                json_str_list(&mut out, &policy.mx_host);
            }
            out.push_str(&format!(
                "}},\"summary\":{{\"total-successful-session-count\":{},\"total-failure-session-count\":{}}}",
                tally.successes, tally.failures
            ));
            out.push_str(",\"failure-details\":[");
            for (i, (detail, count)) in tally.details.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"result-type\":");
                json_str(&mut out, detail.result_type.as_str());
                if let Some(ip) = detail.sending_mta_ip {
                    out.push_str(",\"sending-mta-ip\":");
                    json_str(&mut out, &ip.to_string());
                }
                let optional = [
                    ("receiving-mx-hostname", &detail.receiving_mx_hostname),
                    ("receiving-mx-helo", &detail.receiving_mx_helo),
                ];
                for (name, value) in optional {
                    if let Some(value) = value {
                        out.push_str(&format!(",\"{name}\":"));
                        json_str(&mut out, value);
                    }
                }
                if let Some(ip) = detail.receiving_ip {
                    out.push_str(",\"receiving-ip\":");
                    json_str(&mut out, &ip.to_string());
                }
                out.push_str(&format!(",\"failed-session-count\":{count}"));
                let optional = [
                    ("additional-information", &detail.additional_information),
                    ("failure-reason-code", &detail.failure_reason_code),
                ];
                for (name, value) in optional {
                    if let Some(value) = value {
                        out.push_str(&format!(",\"{name}\":"));
                        json_str(&mut out, value);
                    }
                }
                out.push('}');
            }
            out.push_str("]}");
        }
        out.push_str("]}");
        Ok(out)
    }
}

/// The tally of `policy`, created if there is room under `max_policies`; a session that
/// does not fit is counted in `overflow`.
fn tally_of<'a>(
    tallies: &'a mut BTreeMap<AppliedPolicy, Tally>,
    overflow: &mut Overflow,
    max_policies: usize,
    policy: &AppliedPolicy,
) -> Option<&'a mut Tally> {
    if !tallies.contains_key(policy) {
        if tallies.len() >= max_policies {
            overflow.sessions = overflow.sessions.saturating_add(1);
            return None;
        }
        tallies.insert(policy.clone(), Tally::default());
    }
    tallies.get_mut(policy)
}

// ----- the report -----------------------------------------------------------------------

/// Why a report could not be written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// No session was recorded for the domain.
    #[error("no sessions were recorded for this domain")]
    NoSessions,
    /// A time before 1970-01-01 or after 9999-12-31 (RFC 3339 has four-digit years, and
    /// report file names count seconds since 1970).
    #[error("time outside 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z")]
    TimeOutOfRange,
    /// The window ends before it starts.
    #[error("the report window ends before it starts")]
    EndBeforeStart,
    /// A report file name's unique id is not 1 or more letters and digits.
    #[error("unique id must be letters and digits")]
    InvalidUniqueId,
}

/// The report's own fields: who sends it, for which window, under which id.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReportMetadata {
    /// `organization-name`: the sending organisation.
    pub organization_name: String,
    /// `contact-info`: an e-mail address (or URI) to reach the sender.
    pub contact_info: String,
    /// `report-id`: unique per report.
    pub report_id: String,
    /// The window's start (`start-datetime`).
    pub start: SystemTime,
    /// The window's end (`end-datetime`).
    pub end: SystemTime,
}

impl ReportMetadata {
    /// The fields of a report covering `start` to `end`.
    #[must_use]
    pub fn new(
        organization_name: &str,
        contact_info: &str,
        report_id: &str,
        start: SystemTime,
        end: SystemTime,
    ) -> Self {
        Self {
            organization_name: organization_name.to_owned(),
            contact_info: contact_info.to_owned(),
            report_id: report_id.to_owned(),
            start,
            end,
        }
    }
}

/// The recommended file name of a report (RFC 8460 §5.1):
/// `sender!policy-domain!begin!end[!unique-id].json[.gz]`, with the times in seconds
/// since 1970.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use postern::tls::tlsrpt::report_filename;
///
/// let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_470_013_207);
/// let end = SystemTime::UNIX_EPOCH + Duration::from_secs(1_470_186_007);
/// let name = report_filename("mail.sndr.example.com", "example.net", start, end, Some("10"), true).unwrap();
/// assert_eq!(name, "mail.sndr.example.com!example.net!1470013207!1470186007!10.json.gz");
/// ```
///
/// # Errors
/// [`ReportError::TimeOutOfRange`] for times before 1970, [`ReportError::InvalidUniqueId`].
pub fn report_filename(
    sender: &str,
    policy_domain: &str,
    start: SystemTime,
    end: SystemTime,
    unique_id: Option<&str>,
    gzip: bool,
) -> Result<String, ReportError> {
    let seconds = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).map_err(|_| ReportError::TimeOutOfRange)
    };
    let mut name =
        format!("{}!{}!{}!{}", normalize(sender), normalize(policy_domain), seconds(start)?, seconds(end)?);
    if let Some(id) = unique_id {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ReportError::InvalidUniqueId);
        }
        name.push('!');
        name.push_str(id);
    }
    name.push_str(if gzip { ".json.gz" } else { ".json" });
    Ok(name)
}

/// `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC, whole seconds rounded down).
fn rfc3339(time: SystemTime) -> Result<String, ReportError> {
    let seconds = time.duration_since(SystemTime::UNIX_EPOCH).map_err(|_| ReportError::TimeOutOfRange)?;
    if seconds > Duration::from_secs(253_402_300_799) {
        return Err(ReportError::TimeOutOfRange); // after 9999-12-31T23:59:59Z
    }
    let seconds = seconds.as_secs();
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days);
    Ok(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    ))
}

/// The proleptic Gregorian date `days` after 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Appends `text` as a JSON string (RFC 8259 §7): `"` and `\` escaped, control characters
/// as `\n`-style or `\u00XX` escapes, everything else as UTF-8.
fn json_str(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_str_list(out: &mut String, items: &[String]) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(out, item);
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::mta_sts::CertificateProblem;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn txt_record_grammar() {
        let ok: [(&str, &[&str]); 7] = [
            ("v=TLSRPTv1; rua=mailto:reports@example.com", &["mailto:reports@example.com"]),
            (
                "v=TLSRPTv1;rua=https://reporting.example.com/v1/tlsrpt;",
                &["https://reporting.example.com/v1/tlsrpt"],
            ),
            (
                "v=TLSRPTv1; rua=mailto:a@example.com,https://r.example/x?y=1 ;",
                &["mailto:a@example.com", "https://r.example/x?y=1"],
            ),
            (
                "v=TLSRPTv1; rua=mailto:a@example.com \t, \tmailto:b%2Cc@example.com",
                &["mailto:a@example.com", "mailto:b%2Cc@example.com"],
            ),
            ("v=TLSRPTv1 ; ext=1; rua=MAILTO:x@y.example", &["MAILTO:x@y.example"]),
            (
                "v=TLSRPTv1; rua=mailto:tls@example.com?subject=TLS%20report",
                &["mailto:tls@example.com?subject=TLS%20report"],
            ),
            ("v=TLSRPTv1; rua=urn:example:foo", &["urn:example:foo"]),
        ];
        for (text, uris) in ok {
            let record = TlsRptRecord::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let got: Vec<&str> = record.rua().iter().map(ReportUri::as_str).collect();
            assert_eq!(got, uris, "{text}");
        }
        let record =
            TlsRptRecord::parse("v=TLSRPTv1; rua=mailto:a@x.example?s=1,https://h.example,ftp://f.example")
                .unwrap();
        assert!(matches!(record.rua(), [ReportUri::Mailto(_), ReportUri::Https(_), ReportUri::Other(_)]));
        assert_eq!(record.rua()[0].mailto_address(), Some("a@x.example"));
        assert_eq!(record.rua()[1].mailto_address(), None);

        use TlsRptRecordError as E;
        let bad = [
            ("v=TLSRPTv2; rua=mailto:a@b", E::NotTlsRpt),
            ("v=TLSRPTv10; rua=mailto:a@b", E::NotTlsRpt),
            ("rua=mailto:a@b; v=TLSRPTv1", E::NotTlsRpt),
            ("v=TLSRPTv1", E::MissingRua),
            ("v=TLSRPTv1; ext=1", E::MissingRua),
            ("v=TLSRPTv1; rua=mailto:a@b ", E::TrailingWhitespace),
            ("v=TLSRPTv1;; rua=mailto:a@b", E::EmptyField { field: 1 }),
            ("v=TLSRPTv1; rua=mailto:a@b; rua=mailto:c@d", E::DuplicateRua),
            ("v=TLSRPTv1; rua=", E::InvalidUri { index: 1 }),
            ("v=TLSRPTv1; rua= mailto:a@b", E::InvalidUri { index: 1 }),
            ("v=TLSRPTv1; rua=mailto:a@b,", E::InvalidUri { index: 2 }),
            ("v=TLSRPTv1; rua=mailto:a@b,,mailto:c@d", E::InvalidUri { index: 2 }),
            ("v=TLSRPTv1; rua=mailto:a@b!10m", E::InvalidUri { index: 1 }),
            ("v=TLSRPTv1; rua=mailto:nobody", E::InvalidUri { index: 1 }),
            ("v=TLSRPTv1; rua=mailto:@b", E::InvalidUri { index: 1 }),
            ("v=TLSRPTv1; rua=https:/x", E::InvalidUri { index: 1 }),
            ("v=TLSRPTv1; rua=https:///path", E::InvalidUri { index: 1 }),
            ("v=TLSRPTv1; rua=reports@example.com", E::InvalidUri { index: 1 }),
            ("v=TLSRPTv1; rua=1x:y", E::InvalidUri { index: 1 }),
            ("v=TLSRPTv1; rua=https://a.example/%zz", E::InvalidUri { index: 1 }),
            ("v=TLSRPTv1; rua=https://a.example/a b", E::InvalidUri { index: 1 }),
            ("v=TLSRPTv1; rua=https://a.example/\"", E::InvalidUri { index: 1 }),
            ("v=TLSRPTv1; rua=mailto:a@b; x", E::InvalidField { field: 2 }),
            ("v=TLSRPTv1; rua=mailto:a@b; x=a b", E::InvalidField { field: 2 }),
            ("v=TLSRPTv1; rua=mailto:\u{e9}@b", E::NotAscii),
        ];
        for (text, err) in bad {
            assert_eq!(TlsRptRecord::parse(text), Err(err), "{text:?}");
        }
        assert_eq!(TlsRptRecord::select(["v=spf1 -all"]), Err(E::NoRecord));
        assert_eq!(
            TlsRptRecord::select(["v=TLSRPTv1; rua=mailto:a@b", "v=TLSRPTv1;rua=mailto:c@d"]),
            Err(E::MultipleRecords { count: 2 })
        );
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(t(0)).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(t(1_459_468_800)).unwrap(), "2016-04-01T00:00:00Z");
        assert_eq!(rfc3339(t(1_459_555_199)).unwrap(), "2016-04-01T23:59:59Z");
        assert_eq!(rfc3339(t(951_782_400)).unwrap(), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(t(4_107_542_400)).unwrap(), "2100-03-01T00:00:00Z");
        assert_eq!(rfc3339(t(253_402_300_799)).unwrap(), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(t(1_700_000_000) + Duration::from_millis(999)).unwrap(), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(t(253_402_300_800)), Err(ReportError::TimeOutOfRange));
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH - Duration::from_secs(1)),
            Err(ReportError::TimeOutOfRange)
        );
        // Every day boundary over 400 years agrees with a naive day-by-day walk.
        let (mut year, mut month, mut day) = (1970u64, 1u64, 1u64);
        for days in 0..146_097u64 {
            assert_eq!(civil_from_days(days), (year, month, day));
            let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
            let length = match month {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            day += 1;
            if day > length {
                day = 1;
                month += 1;
                if month > 12 {
                    month = 1;
                    year += 1;
                }
            }
        }
    }

    #[test]
    fn json_escaping() {
        let mut out = String::new();
        json_str(&mut out, "a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{1f} \u{7f} caf\u{e9} \u{2028} /");
        assert_eq!(out, "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f \u{7f} caf\u{e9} \u{2028} /\"");
    }

    #[test]
    fn aggregator_counts_and_caps() {
        let policy =
            Policy::parse("version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n").unwrap();
        let sts = AppliedPolicy::sts("Example.COM.", &policy);
        let none = AppliedPolicy::no_policy_found("other.example");
        let mut agg = Aggregator::new(2, 2);
        for _ in 0..5 {
            agg.record_success(&sts);
        }
        let expired = FailureDetail::from_failure(Failure::Certificate(CertificateProblem::Expired))
            .with_receiving_mx_hostname("mx.example.com.");
        agg.record_failure(&sts, expired.clone());
        agg.record_failure(&sts, expired.clone());
        agg.record_failure(&none, FailureDetail::new(ResultType::StartTlsNotSupported));
        // The detail cap (2) is reached: a new detail only counts in the totals.
        agg.record_failure(&sts, FailureDetail::new(ResultType::ValidationFailure));
        // The policy cap (2) is reached: a third policy is not counted.
        agg.record_success(&AppliedPolicy::no_policy_found("third.example"));
        assert_eq!(agg.totals("example.com"), (5, 3));
        assert_eq!(agg.totals("other.example"), (0, 1));
        assert_eq!(agg.totals("third.example"), (0, 0));
        assert_eq!(agg.overflow(), Overflow { sessions: 1, failure_details: 1 });
        assert_eq!(agg.policy_domains(), ["example.com", "other.example"]);
        assert_eq!(agg.details, 2);
        // Existing details still count once the cap is reached.
        agg.record_failure(&sts, expired);
        assert_eq!(agg.tallies[&sts].details.values().copied().collect::<Vec<_>>(), [3]);
        agg.clear();
        assert!(agg.policy_domains().is_empty());
        assert_eq!(agg.overflow(), Overflow::default());
    }

    #[test]
    fn report_errors_and_field_limits() {
        let agg = Aggregator::default();
        let meta = ReportMetadata::new("o", "c", "r", t(10), t(20));
        assert_eq!(agg.report_json("example.com", &meta), Err(ReportError::NoSessions));
        let mut agg = Aggregator::default();
        agg.record_success(&AppliedPolicy::no_policy_found("example.com"));
        let backwards = ReportMetadata::new("o", "c", "r", t(20), t(10));
        assert_eq!(agg.report_json("example.com", &backwards), Err(ReportError::EndBeforeStart));
        let json = agg.report_json("EXAMPLE.com.", &meta).unwrap();
        assert_eq!(
            json,
            "{\"organization-name\":\"o\",\"date-range\":{\"start-datetime\":\"1970-01-01T00:00:10Z\",\
             \"end-datetime\":\"1970-01-01T00:00:20Z\"},\"contact-info\":\"c\",\"report-id\":\"r\",\
             \"policies\":[{\"policy\":{\"policy-type\":\"no-policy-found\",\"policy-domain\":\"example.com\"},\
             \"summary\":{\"total-successful-session-count\":1,\"total-failure-session-count\":0},\
             \"failure-details\":[]}]}"
        );
        let long = "\u{e9}".repeat(200); // 400 bytes
        let detail = FailureDetail::new(ResultType::ValidationFailure).with_receiving_mx_helo(&long);
        assert_eq!(detail.receiving_mx_helo.as_ref().map(String::len), Some(254));
        assert_eq!(
            report_filename("S.example", "d.example", t(1), t(2), None, false).unwrap(),
            "s.example!d.example!1!2.json"
        );
        assert_eq!(
            report_filename("s", "d", t(1), t(2), Some("a-b"), false),
            Err(ReportError::InvalidUniqueId)
        );
    }
}
