//! Security events: the typed record, its compact binary body and its JSON-lines rendering.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::AuditError;

/// The longest text field stored, in bytes; longer text is cut at a character boundary
/// (client-controlled text such as a user name or a violation detail must not make a record
/// grow without bound).
pub const MAX_TEXT: usize = 1024;

/// What an admission check decided about a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AdmissionDecision {
    /// The connection was accepted.
    Admitted,
    /// The connection was told to come back later (4xx).
    Deferred,
    /// The connection was refused (5xx).
    Refused,
}

impl AdmissionDecision {
    fn code(self) -> u8 {
        match self {
            Self::Admitted => 0,
            Self::Deferred => 1,
            Self::Refused => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Admitted),
            1 => Some(Self::Deferred),
            2 => Some(Self::Refused),
            _ => None,
        }
    }

    /// `admitted`, `deferred` or `refused`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admitted => "admitted",
            Self::Deferred => "deferred",
            Self::Refused => "refused",
        }
    }
}

/// The kind of an [`Event`], stored in the clear next to every record (also in encrypted
/// segments), so a verifier without the encryption key can still count events by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EventKind {
    /// [`Event::SessionStart`].
    SessionStart,
    /// [`Event::SessionEnd`].
    SessionEnd,
    /// [`Event::TlsEstablished`].
    TlsEstablished,
    /// [`Event::AuthSuccess`].
    AuthSuccess,
    /// [`Event::AuthFailure`].
    AuthFailure,
    /// [`Event::Admission`].
    Admission,
    /// [`Event::RateLimited`].
    RateLimited,
    /// [`Event::PolicyRejection`].
    PolicyRejection,
    /// [`Event::ProtocolViolation`].
    ProtocolViolation,
    /// [`Event::MessageAccepted`].
    MessageAccepted,
    /// [`Event::KeyRotation`].
    KeyRotation,
    /// [`Event::Other`].
    Other,
    /// A kind this version does not know (written by a newer version).
    Unknown(u16),
}

impl EventKind {
    /// Every kind this version knows, in code order.
    pub const ALL: [EventKind; 12] = [
        Self::SessionStart,
        Self::SessionEnd,
        Self::TlsEstablished,
        Self::AuthSuccess,
        Self::AuthFailure,
        Self::Admission,
        Self::RateLimited,
        Self::PolicyRejection,
        Self::ProtocolViolation,
        Self::MessageAccepted,
        Self::KeyRotation,
        Self::Other,
    ];

    /// The stable numeric code stored in records.
    #[must_use]
    pub fn code(self) -> u16 {
        match self {
            Self::SessionStart => 1,
            Self::SessionEnd => 2,
            Self::TlsEstablished => 3,
            Self::AuthSuccess => 4,
            Self::AuthFailure => 5,
            Self::Admission => 6,
            Self::RateLimited => 7,
            Self::PolicyRejection => 8,
            Self::ProtocolViolation => 9,
            Self::MessageAccepted => 10,
            Self::KeyRotation => 11,
            Self::Other => 12,
            Self::Unknown(code) => code,
        }
    }

    /// The kind for a stored code.
    #[must_use]
    pub fn from_code(code: u16) -> Self {
        match code {
            1 => Self::SessionStart,
            2 => Self::SessionEnd,
            3 => Self::TlsEstablished,
            4 => Self::AuthSuccess,
            5 => Self::AuthFailure,
            6 => Self::Admission,
            7 => Self::RateLimited,
            8 => Self::PolicyRejection,
            9 => Self::ProtocolViolation,
            10 => Self::MessageAccepted,
            11 => Self::KeyRotation,
            12 => Self::Other,
            other => Self::Unknown(other),
        }
    }

    /// The snake-case name used in JSON (`auth_failure`), `unknown` for unknown kinds.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::SessionStart => "session_start",
            Self::SessionEnd => "session_end",
            Self::TlsEstablished => "tls_established",
            Self::AuthSuccess => "auth_success",
            Self::AuthFailure => "auth_failure",
            Self::Admission => "admission",
            Self::RateLimited => "rate_limited",
            Self::PolicyRejection => "policy_rejection",
            Self::ProtocolViolation => "protocol_violation",
            Self::MessageAccepted => "message_accepted",
            Self::KeyRotation => "key_rotation",
            Self::Other => "other",
            Self::Unknown(_) => "unknown",
        }
    }

    /// Whether this kind is a security anomaly worth counting in a summary: failed logins,
    /// refusals, rate limits, policy rejections and protocol violations.
    #[must_use]
    pub fn is_anomaly(self) -> bool {
        matches!(
            self,
            Self::AuthFailure | Self::RateLimited | Self::PolicyRejection | Self::ProtocolViolation
        )
    }
}

/// One security event. Text fields borrow from the caller (or, when decoding, from the
/// record), so recording an event allocates nothing.
///
/// `session` is the application's connection number (0 when there is none). Text is
/// client-controlled in places (user names, violation details): it is stored as given, cut
/// at [`MAX_TEXT`] bytes, and escaped when rendered as JSON.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use postern::audit::{Event, Record};
///
/// let event = Event::AuthFailure { session: 7, mechanism: "PLAIN", user: "bob\"", reason: "bad password" };
/// let mut body = Vec::new();
/// event.encode(&mut body);
/// assert_eq!(Event::decode(event.kind().code(), &body).unwrap(), event);
///
/// let record = Record { number: 3, time: UNIX_EPOCH + Duration::from_secs(1_800_000_000), event };
/// let mut line = String::new();
/// record.write_json(&mut line);
/// assert_eq!(
///     line,
///     r#"{"record":3,"time":"2027-01-15T08:00:00.000000Z","kind":"auth_failure","session":7,"mechanism":"PLAIN","user":"bob\"","reason":"bad password"}"#
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A client connected and a protocol session began.
    SessionStart {
        /// The session number.
        session: u64,
        /// The service, e.g. `smtp`, `submission`, `smtps`, `pop3`, `pop3s`.
        service: &'a str,
        /// The client's address.
        peer: IpAddr,
        /// The client's port.
        peer_port: u16,
    },
    /// A session ended.
    SessionEnd {
        /// The session number.
        session: u64,
        /// Why, e.g. `quit`, `timeout`, `error`.
        reason: &'a str,
    },
    /// A TLS handshake completed.
    TlsEstablished {
        /// The session number.
        session: u64,
        /// The protocol version, e.g. `TLSv1.3`.
        version: &'a str,
        /// The cipher suite.
        suite: &'a str,
        /// The key-exchange group (empty when unknown).
        group: &'a str,
    },
    /// A client authenticated.
    AuthSuccess {
        /// The session number.
        session: u64,
        /// The mechanism, e.g. `PLAIN`, `USER`, `APOP`.
        mechanism: &'a str,
        /// The authenticated identity.
        user: &'a str,
    },
    /// An authentication attempt failed.
    AuthFailure {
        /// The session number.
        session: u64,
        /// The mechanism.
        mechanism: &'a str,
        /// The identity the client claimed (client-controlled).
        user: &'a str,
        /// Why, e.g. `bad credentials`, `aborted`, `too many attempts`.
        reason: &'a str,
    },
    /// A connection admission decision.
    Admission {
        /// The client's address.
        peer: IpAddr,
        /// The decision.
        decision: AdmissionDecision,
        /// Why, e.g. `deny list`, `connection rate`, `concurrency`.
        reason: &'a str,
    },
    /// A rate limit hit inside a session (recipients, messages, commands).
    RateLimited {
        /// The session number.
        session: u64,
        /// The client's address.
        peer: IpAddr,
        /// Which limit, e.g. `rcpt-rate`.
        limit: &'a str,
        /// How long the client was told to wait, in milliseconds.
        retry_after_ms: u64,
    },
    /// A policy rejected a command or message (relay denied, sender refused, ...).
    PolicyRejection {
        /// The session number.
        session: u64,
        /// Where, e.g. `rcpt`, `mail`, `data`.
        stage: &'a str,
        /// Why.
        reason: &'a str,
    },
    /// A protocol violation: SMTP smuggling attempts, bare CR/LF, pipelining abuse,
    /// command injection, early talk.
    ProtocolViolation {
        /// The session number.
        session: u64,
        /// The violation's name.
        violation: &'a str,
        /// Details (client-controlled).
        detail: &'a str,
    },
    /// A message was accepted for delivery.
    MessageAccepted {
        /// The session number.
        session: u64,
        /// The message size in bytes.
        size: u64,
        /// The queue or file id.
        id: &'a str,
        /// Authentication verdicts (e.g. `spf=pass dkim=pass dmarc=pass`), empty if none.
        auth: &'a str,
    },
    /// A key was rotated (TLS certificate, sealing key, audit key).
    KeyRotation {
        /// What the key is for, e.g. `audit-mac`, `sealing`, `tls`.
        purpose: &'a str,
        /// The old key's id.
        old_id: u32,
        /// The new key's id.
        new_id: u32,
    },
    /// An application-defined event.
    Other {
        /// The event's name.
        name: &'a str,
        /// Details.
        detail: &'a str,
    },
    /// An event of a kind this version does not know, kept as raw bytes.
    Unknown {
        /// The kind code.
        kind: u16,
        /// The undecoded body.
        body: &'a [u8],
    },
}

impl<'a> Event<'a> {
    /// The event's kind.
    #[must_use]
    pub fn kind(&self) -> EventKind {
        match self {
            Self::SessionStart { .. } => EventKind::SessionStart,
            Self::SessionEnd { .. } => EventKind::SessionEnd,
            Self::TlsEstablished { .. } => EventKind::TlsEstablished,
            Self::AuthSuccess { .. } => EventKind::AuthSuccess,
            Self::AuthFailure { .. } => EventKind::AuthFailure,
            Self::Admission { .. } => EventKind::Admission,
            Self::RateLimited { .. } => EventKind::RateLimited,
            Self::PolicyRejection { .. } => EventKind::PolicyRejection,
            Self::ProtocolViolation { .. } => EventKind::ProtocolViolation,
            Self::MessageAccepted { .. } => EventKind::MessageAccepted,
            Self::KeyRotation { .. } => EventKind::KeyRotation,
            Self::Other { .. } => EventKind::Other,
            Self::Unknown { kind, .. } => EventKind::Unknown(*kind),
        }
    }

    /// Appends the compact binary body (fields in order: integers little-endian, text as a
    /// 16-bit length and UTF-8 bytes cut at [`MAX_TEXT`], addresses as 0/4/16 bytes after a
    /// family byte). The kind is not part of the body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Self::SessionStart { session, service, peer, peer_port } => {
                put_u64(out, session);
                put_str(out, service);
                put_ip(out, peer);
                out.extend_from_slice(&peer_port.to_le_bytes());
            }
            Self::SessionEnd { session, reason } => {
                put_u64(out, session);
                put_str(out, reason);
            }
            Self::TlsEstablished { session, version, suite, group } => {
                put_u64(out, session);
                put_str(out, version);
                put_str(out, suite);
                put_str(out, group);
            }
            Self::AuthSuccess { session, mechanism, user } => {
                put_u64(out, session);
                put_str(out, mechanism);
                put_str(out, user);
            }
            Self::AuthFailure { session, mechanism, user, reason } => {
                put_u64(out, session);
                put_str(out, mechanism);
                put_str(out, user);
                put_str(out, reason);
            }
            Self::Admission { peer, decision, reason } => {
                put_ip(out, peer);
                out.push(decision.code());
                put_str(out, reason);
            }
            Self::RateLimited { session, peer, limit, retry_after_ms } => {
                put_u64(out, session);
                put_ip(out, peer);
                put_str(out, limit);
                put_u64(out, retry_after_ms);
            }
            Self::PolicyRejection { session, stage, reason } => {
                put_u64(out, session);
                put_str(out, stage);
                put_str(out, reason);
            }
            Self::ProtocolViolation { session, violation, detail } => {
                put_u64(out, session);
                put_str(out, violation);
                put_str(out, detail);
            }
            Self::MessageAccepted { session, size, id, auth } => {
                put_u64(out, session);
                put_u64(out, size);
                put_str(out, id);
                put_str(out, auth);
            }
            Self::KeyRotation { purpose, old_id, new_id } => {
                put_str(out, purpose);
                out.extend_from_slice(&old_id.to_le_bytes());
                out.extend_from_slice(&new_id.to_le_bytes());
            }
            Self::Other { name, detail } => {
                put_str(out, name);
                put_str(out, detail);
            }
            Self::Unknown { body, .. } => {
                let n = body.len().min(super::MAX_BODY);
                out.extend_from_slice(body.get(..n).unwrap_or_default());
            }
        }
    }

    /// Decodes a body written by [`Event::encode`] for the kind `code`. Unknown kinds give
    /// [`Event::Unknown`]; a malformed body (short, invalid UTF-8, trailing bytes) is an error.
    ///
    /// # Errors
    /// [`AuditError::Malformed`] when the body does not match its kind.
    pub fn decode(code: u16, body: &'a [u8]) -> Result<Self, AuditError> {
        let mut r = Reader { rest: body };
        let event = match EventKind::from_code(code) {
            EventKind::SessionStart => Self::SessionStart {
                session: r.u64()?,
                service: r.str()?,
                peer: r.ip()?,
                peer_port: r.u16()?,
            },
            EventKind::SessionEnd => Self::SessionEnd { session: r.u64()?, reason: r.str()? },
            EventKind::TlsEstablished => Self::TlsEstablished {
                session: r.u64()?,
                version: r.str()?,
                suite: r.str()?,
                group: r.str()?,
            },
            EventKind::AuthSuccess => {
                Self::AuthSuccess { session: r.u64()?, mechanism: r.str()?, user: r.str()? }
            }
            EventKind::AuthFailure => {
                Self::AuthFailure { session: r.u64()?, mechanism: r.str()?, user: r.str()?, reason: r.str()? }
            }
            EventKind::Admission => Self::Admission {
                peer: r.ip()?,
                decision: AdmissionDecision::from_code(r.u8()?)
                    .ok_or(AuditError::Malformed("admission decision"))?,
                reason: r.str()?,
            },
            EventKind::RateLimited => Self::RateLimited {
                session: r.u64()?,
                peer: r.ip()?,
                limit: r.str()?,
                retry_after_ms: r.u64()?,
            },
            EventKind::PolicyRejection => {
                Self::PolicyRejection { session: r.u64()?, stage: r.str()?, reason: r.str()? }
            }
            EventKind::ProtocolViolation => {
                Self::ProtocolViolation { session: r.u64()?, violation: r.str()?, detail: r.str()? }
            }
            EventKind::MessageAccepted => {
                Self::MessageAccepted { session: r.u64()?, size: r.u64()?, id: r.str()?, auth: r.str()? }
            }
            EventKind::KeyRotation => {
                Self::KeyRotation { purpose: r.str()?, old_id: r.u32()?, new_id: r.u32()? }
            }
            EventKind::Other => Self::Other { name: r.str()?, detail: r.str()? },
            EventKind::Unknown(kind) => return Ok(Self::Unknown { kind, body }),
        };
        if r.rest.is_empty() { Ok(event) } else { Err(AuditError::Malformed("trailing bytes")) }
    }

    /// Appends the event's fields as JSON members (`"session":7,"user":"..."`), each
    /// preceded by a comma.
    fn write_json_fields(&self, out: &mut String) {
        match *self {
            Self::SessionStart { session, service, peer, peer_port } => {
                num(out, "session", session);
                text(out, "service", service);
                ip(out, "peer", peer);
                num(out, "peer_port", u64::from(peer_port));
            }
            Self::SessionEnd { session, reason } => {
                num(out, "session", session);
                text(out, "reason", reason);
            }
            Self::TlsEstablished { session, version, suite, group } => {
                num(out, "session", session);
                text(out, "version", version);
                text(out, "suite", suite);
                text(out, "group", group);
            }
            Self::AuthSuccess { session, mechanism, user } => {
                num(out, "session", session);
                text(out, "mechanism", mechanism);
                text(out, "user", user);
            }
            Self::AuthFailure { session, mechanism, user, reason } => {
                num(out, "session", session);
                text(out, "mechanism", mechanism);
                text(out, "user", user);
                text(out, "reason", reason);
            }
            Self::Admission { peer, decision, reason } => {
                ip(out, "peer", peer);
                text(out, "decision", decision.as_str());
                text(out, "reason", reason);
            }
            Self::RateLimited { session, peer, limit, retry_after_ms } => {
                num(out, "session", session);
                ip(out, "peer", peer);
                text(out, "limit", limit);
                num(out, "retry_after_ms", retry_after_ms);
            }
            Self::PolicyRejection { session, stage, reason } => {
                num(out, "session", session);
                text(out, "stage", stage);
                text(out, "reason", reason);
            }
            Self::ProtocolViolation { session, violation, detail } => {
                num(out, "session", session);
                text(out, "violation", violation);
                text(out, "detail", detail);
            }
            Self::MessageAccepted { session, size, id, auth } => {
                num(out, "session", session);
                num(out, "size", size);
                text(out, "id", id);
                text(out, "auth", auth);
            }
            Self::KeyRotation { purpose, old_id, new_id } => {
                text(out, "purpose", purpose);
                num(out, "old_id", u64::from(old_id));
                num(out, "new_id", u64::from(new_id));
            }
            Self::Other { name, detail } => {
                text(out, "name", name);
                text(out, "detail", detail);
            }
            Self::Unknown { kind, body } => {
                num(out, "code", u64::from(kind));
                num(out, "body_len", body.len() as u64);
            }
        }
    }
}

/// A decoded record: its number in the chain, its time and its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The record's number in the chain (0 for the first record ever written).
    pub number: u64,
    /// When the application recorded it (microsecond precision).
    pub time: SystemTime,
    /// The event.
    pub event: Event<'a>,
}

impl Record<'_> {
    /// Appends the record as one line of JSON (without the newline). Client-controlled text
    /// is escaped (quotes, backslashes, control characters, U+2028/U+2029), so a line can
    /// never be split or closed early by a hostile user name.
    pub fn write_json(&self, out: &mut String) {
        out.push_str("{\"record\":");
        push_u64(out, self.number);
        out.push_str(",\"time\":\"");
        write_rfc3339(out, self.time);
        out.push_str("\",\"kind\":\"");
        out.push_str(self.event.kind().name());
        out.push('"');
        self.event.write_json_fields(out);
        out.push('}');
    }
}

/// `,"name":` (names are fixed ASCII identifiers: no escaping needed).
fn member(out: &mut String, name: &str) {
    out.push_str(",\"");
    out.push_str(name);
    out.push_str("\":");
}

fn num(out: &mut String, name: &str, value: u64) {
    member(out, name);
    push_u64(out, value);
}

fn text(out: &mut String, name: &str, value: &str) {
    member(out, name);
    write_json_string(out, value);
}

/// Appends a decimal number without going through `core::fmt`.
fn push_u64(out: &mut String, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (value % 10) as u8;
        }
        value /= 10;
        if value == 0 || i == 0 {
            break;
        }
    }
    for &d in digits.get(i..).unwrap_or_default() {
        out.push(char::from(d));
    }
}

fn ip(out: &mut String, name: &str, value: IpAddr) {
    member(out, name);
    let _ = write!(out, "\"{value}\"");
}

/// Appends `value` as a JSON string literal, quotes included (RFC 8259 §7): `"` and `\`
/// escaped, control characters as `\n`, `\r`, `\t` or `\u00XX`, and U+2028/U+2029 escaped
/// so the output is also safe inside JavaScript.
pub fn write_json_string(out: &mut String, value: &str) {
    out.push('"');
    let plain = |b: &u8| *b >= 0x20 && *b != b'"' && *b != b'\\' && *b != 0x7f && *b != 0xe2;
    if value.as_bytes().iter().all(plain) {
        // Nothing to escape (0xE2 starts U+2028/U+2029, checked on the slow path).
        out.push_str(value);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, c) in value.char_indices() {
        let escape: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '\u{0}'..='\u{1f}' | '\u{7f}' | '\u{2028}' | '\u{2029}' => Some(""),
            _ => None,
        };
        if let Some(escape) = escape {
            out.push_str(value.get(start..i).unwrap_or_default());
            if escape.is_empty() {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            } else {
                out.push_str(escape);
            }
            start = i + c.len_utf8();
        }
    }
    out.push_str(value.get(start..).unwrap_or_default());
    out.push('"');
}

/// Appends `time` as RFC 3339 UTC with microseconds, e.g. `2026-11-29T10:00:00.000000Z`.
/// Times before 1970 are written as the epoch.
pub fn write_rfc3339(out: &mut String, time: SystemTime) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let parts = [
        (y, 4, '-'),
        (m, 2, '-'),
        (d, 2, 'T'),
        (rem / 3600, 2, ':'),
        ((rem / 60) % 60, 2, ':'),
        (rem % 60, 2, '.'),
        (u64::from(since.subsec_micros()), 6, 'Z'),
    ];
    for (value, width, separator) in parts {
        push_padded(out, value, width);
        out.push(separator);
    }
}

/// Appends `value` with at least `width` digits, zero-padded.
fn push_padded(out: &mut String, value: u64, width: usize) {
    let mut digits = 1;
    let mut v = value;
    while v >= 10 {
        v /= 10;
        digits += 1;
    }
    for _ in digits..width {
        out.push('0');
    }
    push_u64(out, value);
}

/// Howard Hinnant's days-to-civil algorithm for days since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Microseconds since the Unix epoch (0 before it, saturating far in the future).
pub(crate) fn to_micros(time: SystemTime) -> u64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
}

/// The time `micros` microseconds after the Unix epoch.
pub(crate) fn from_micros(micros: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(micros)
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut n = s.len().min(MAX_TEXT);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    // n <= MAX_TEXT < 65536
    out.extend_from_slice(&(n as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes().get(..n).unwrap_or_default());
}

fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], AuditError> {
        let (head, rest) = self.rest.split_first_chunk::<N>().ok_or(AuditError::Malformed("short body"))?;
        self.rest = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, AuditError> {
        Ok(self.take::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, AuditError> {
        Ok(u16::from_le_bytes(self.take()?))
    }

    fn u32(&mut self) -> Result<u32, AuditError> {
        Ok(u32::from_le_bytes(self.take()?))
    }

    fn u64(&mut self) -> Result<u64, AuditError> {
        Ok(u64::from_le_bytes(self.take()?))
    }

    fn str(&mut self) -> Result<&'a str, AuditError> {
        let n = usize::from(self.u16()?);
        if n > MAX_TEXT || n > self.rest.len() {
            return Err(AuditError::Malformed("text length"));
        }
        let (text, rest) = self.rest.split_at(n);
        self.rest = rest;
        std::str::from_utf8(text).map_err(|_| AuditError::Malformed("text is not UTF-8"))
    }

    fn ip(&mut self) -> Result<IpAddr, AuditError> {
        match self.u8()? {
            4 => Ok(IpAddr::V4(Ipv4Addr::from(self.take::<4>()?))),
            6 => Ok(IpAddr::V6(Ipv6Addr::from(self.take::<16>()?))),
            _ => Err(AuditError::Malformed("address family")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Event<'static>> {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        vec![
            Event::SessionStart { session: 1, service: "smtp", peer: v4, peer_port: 40_000 },
            Event::SessionEnd { session: 1, reason: "quit" },
            Event::TlsEstablished {
                session: 1,
                version: "TLSv1.3",
                suite: "TLS13_AES_256_GCM_SHA384",
                group: "X25519MLKEM768",
            },
            Event::AuthSuccess { session: 1, mechanism: "PLAIN", user: "alice" },
            Event::AuthFailure { session: 1, mechanism: "LOGIN", user: "ев\"a", reason: "bad" },
            Event::Admission { peer: v6, decision: AdmissionDecision::Deferred, reason: "rate" },
            Event::RateLimited { session: 2, peer: v6, limit: "rcpt-rate", retry_after_ms: 6000 },
            Event::PolicyRejection { session: 2, stage: "rcpt", reason: "relay denied" },
            Event::ProtocolViolation { session: 3, violation: "bare-lf", detail: "\r\n.\n" },
            Event::MessageAccepted { session: 3, size: 1234, id: "17.abc", auth: "spf=pass" },
            Event::KeyRotation { purpose: "audit-mac", old_id: 1, new_id: 2 },
            Event::Other { name: "x", detail: "" },
            Event::Unknown { kind: 999, body: b"\x01\x02" },
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        for event in samples() {
            let mut body = Vec::new();
            event.encode(&mut body);
            assert_eq!(Event::decode(event.kind().code(), &body).unwrap(), event);
            // Every strict prefix is malformed, never a panic.
            if !matches!(event, Event::Unknown { .. }) {
                for n in 0..body.len() {
                    assert!(Event::decode(event.kind().code(), &body[..n]).is_err());
                }
                body.push(0);
                assert!(Event::decode(event.kind().code(), &body).is_err());
            }
        }
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_code(kind.code()), kind);
        }
    }

    #[test]
    fn long_text_is_cut_at_a_char_boundary() {
        let long = "é".repeat(MAX_TEXT);
        let event = Event::Other { name: &long, detail: "d" };
        let mut body = Vec::new();
        event.encode(&mut body);
        let Event::Other { name, detail } = Event::decode(12, &body).unwrap() else { panic!() };
        assert_eq!(name.len(), MAX_TEXT);
        assert_eq!(detail, "d");
    }

    #[test]
    fn json_escapes_client_text() {
        let mut out = String::new();
        write_json_string(&mut out, "a\"b\\c\nd\u{1}\u{2028}é");
        assert_eq!(out, r#""a\"b\\c\nd\u0001\u2028é""#);
        let record = Record {
            number: 0,
            time: UNIX_EPOCH,
            event: Event::ProtocolViolation { session: 3, violation: "bare-lf", detail: "}\n{" },
        };
        let mut line = String::new();
        record.write_json(&mut line);
        assert!(!line.contains('\n'));
        assert_eq!(
            line,
            r#"{"record":0,"time":"1970-01-01T00:00:00.000000Z","kind":"protocol_violation","session":3,"violation":"bare-lf","detail":"}\n{"}"#
        );
    }

    #[test]
    fn rfc3339_dates() {
        let mut s = String::new();
        write_rfc3339(&mut s, UNIX_EPOCH + Duration::from_micros(1_796_034_400_123_456));
        assert_eq!(s, "2026-11-30T10:26:40.123456Z");
        s.clear();
        write_rfc3339(&mut s, UNIX_EPOCH + Duration::from_secs(951_782_400)); // leap day 2000
        assert_eq!(s, "2000-02-29T00:00:00.000000Z");
    }
}
