//! POP3 configuration, replies, events and maildrop descriptions.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use crate::line::BareLineEnding;
pub use crate::sasl_wire::{AuthStart, SaslData};

/// Limits on what a client can make the session do.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Longest command line in octets including `CRLF` (RFC 2449 §4: 255).
    pub command_line: usize,
    /// Longest SASL response line (RFC 5034 leaves it open; SMTP's 12288 is used).
    pub auth_line: usize,
    /// Failed logins (USER/PASS, APOP or AUTH) before the session is closed.
    pub auth_failures: u32,
    /// Commands answered with `-ERR` before the session is closed.
    pub bad_commands: u32,
    /// The inactivity autologout timer (RFC 1939 §3: at least 10 minutes), measured from
    /// the last complete command, so a command trickled byte by byte cannot extend it.
    pub idle_timeout: Duration,
    /// Bytes the session holds while a decision is pending; a client that makes it hold
    /// more is disconnected.
    pub buffered_input: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            command_line: 255,
            auth_line: 12288,
            auth_failures: 3,
            bad_commands: 20,
            idle_timeout: Duration::from_secs(600),
            buffered_input: 64 * 1024,
        }
    }
}

/// The `EXPIRE` capability (RFC 2449 §6.7): how long the server keeps messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Expire {
    /// `EXPIRE NEVER`
    Never,
    /// `EXPIRE n`: days.
    Days(u32),
}

/// The configuration shared by the sessions of one listener.
///
/// ```
/// use postern::pop3::Config;
///
/// let mut config = Config::new("pop.example.test");
/// config.stls = true;
/// config.sasl_mechanisms = vec!["PLAIN".into()];
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The server's name, used in the APOP timestamp.
    pub hostname: String,
    /// Limits.
    pub limits: Limits,
    /// Bare `LF` policy for command lines.
    pub bare_line_ending: BareLineEnding,
    /// Offer STLS (RFC 2595). Set it when the application can run a TLS handshake.
    pub stls: bool,
    /// Allow USER/PASS, APOP and the plaintext SASL mechanisms (PLAIN, LOGIN, and the
    /// bearer-token XOAUTH2 and OAUTHBEARER) outside TLS. Off by default: they are refused with `-ERR [AUTH]` until STLS.
    pub allow_plaintext_auth: bool,
    /// SASL mechanisms to offer (RFC 5034). Empty: no AUTH. `-PLUS` (channel-bound)
    /// mechanisms and `EXTERNAL` are only offered over TLS.
    pub sasl_mechanisms: Vec<String>,
    /// Offer and accept every SASL mechanism (not only PLAIN and LOGIN) only over TLS or
    /// with `allow_plaintext_auth`, as the SMTP session does for AUTH. Off by default.
    pub sasl_requires_tls: bool,
    /// Offer APOP (a timestamp in the greeting). On by default; APOP's MD5 is weak, so
    /// it is refused outside TLS like a plaintext password.
    pub apop: bool,
    /// The `IMPLEMENTATION` capability. `None` by default: do not disclose software or
    /// versions.
    pub implementation: Option<String>,
    /// The `LOGIN-DELAY` capability (RFC 2449 §6.5) in seconds; the application enforces
    /// it by rejecting early logins with [`ResponseCode::LoginDelay`].
    pub login_delay: Option<u32>,
    /// The `EXPIRE` capability.
    pub expire: Option<Expire>,
}

impl Config {
    /// Secure defaults for a server called `hostname`.
    #[must_use]
    pub fn new(hostname: impl Into<String>) -> Self {
        Self {
            hostname: hostname.into(),
            limits: Limits::default(),
            bare_line_ending: BareLineEnding::Reject,
            stls: false,
            allow_plaintext_auth: false,
            sasl_mechanisms: Vec::new(),
            sasl_requires_tls: false,
            apop: true,
            implementation: None,
            login_delay: None,
            expire: None,
        }
    }
}

/// Extended response codes (RFC 2449 §8, RFC 3206).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResponseCode {
    /// `[IN-USE]`: the maildrop is locked by another session.
    InUse,
    /// `[LOGIN-DELAY]`: the user logged in too recently.
    LoginDelay,
    /// `[SYS/TEMP]`: a temporary system problem.
    SysTemp,
    /// `[SYS/PERM]`: a permanent system problem.
    SysPerm,
    /// `[AUTH]`: a problem with the credentials (or their transport).
    Auth,
}

impl ResponseCode {
    fn as_str(self) -> &'static str {
        match self {
            Self::InUse => "IN-USE",
            Self::LoginDelay => "LOGIN-DELAY",
            Self::SysTemp => "SYS/TEMP",
            Self::SysPerm => "SYS/PERM",
            Self::Auth => "AUTH",
        }
    }
}

/// A single-line POP3 status response.
///
/// Text is sanitised when written (control characters become spaces).
///
/// ```
/// use postern::pop3::{Reply, ResponseCode};
///
/// assert_eq!(Reply::ok("done").to_string(), "+OK done\r\n");
/// let busy = Reply::err(Some(ResponseCode::InUse), "maildrop locked");
/// assert_eq!(busy.to_string(), "-ERR [IN-USE] maildrop locked\r\n");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    ok: bool,
    code: Option<ResponseCode>,
    text: Cow<'static, str>,
}

impl Reply {
    /// `+OK text`
    #[must_use]
    pub fn ok(text: impl Into<Cow<'static, str>>) -> Self {
        Self { ok: true, code: None, text: text.into() }
    }

    /// `-ERR [code] text`
    #[must_use]
    pub fn err(code: Option<ResponseCode>, text: impl Into<Cow<'static, str>>) -> Self {
        Self { ok: false, code, text: text.into() }
    }

    /// `true` for `+OK`.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.ok
    }

    /// The response code, if any.
    #[must_use]
    pub fn code(&self) -> Option<ResponseCode> {
        self.code
    }

    /// Appends the wire form.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if self.ok { b"+OK" } else { b"-ERR" });
        if let Some(code) = self.code {
            out.extend_from_slice(b" [");
            out.extend_from_slice(code.as_str().as_bytes());
            out.push(b']');
        }
        if !self.text.is_empty() {
            out.push(b' ');
            out.extend(self.text.bytes().map(|b| if b.is_ascii_control() { b' ' } else { b }));
        }
        out.extend_from_slice(b"\r\n");
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::new();
        self.write_to(&mut out);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

/// One message of a maildrop, as the application lists it when a login succeeds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MessageInfo {
    size: u64,
    uid: String,
}

/// Why a [`MessageInfo`] could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum MessageInfoError {
    /// RFC 1939 §7: a unique-id is 1 to 70 characters in the range 0x21 to 0x7E.
    #[error("a unique-id must be 1 to 70 characters from 0x21 to 0x7E")]
    InvalidUid,
}

impl MessageInfo {
    /// A message of `size` octets (as it will be sent, with `CRLF` line endings, before
    /// dot-stuffing) with the unique id `uid`.
    pub fn new(size: u64, uid: impl Into<String>) -> Result<Self, MessageInfoError> {
        let uid = uid.into();
        if uid.is_empty() || uid.len() > 70 || !uid.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(MessageInfoError::InvalidUid);
        }
        Ok(Self { size, uid })
    }

    /// The size in octets.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The unique id.
    #[must_use]
    pub fn uid(&self) -> &str {
        &self.uid
    }
}

/// Something the application must look at, from
/// [`Session::poll_event`](super::Session::poll_event). *Decision* events stop the
/// session until answered.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// *Decision*: `USER` + `PASS`. Verify in constant time, lock the maildrop, then
    /// [`accept_login`](super::Session::accept_login) with its listing, or
    /// [`reject`](super::Session::reject) (`[AUTH]` for bad credentials, `[IN-USE]` for a
    /// locked maildrop). Answer unknown users exactly like wrong passwords.
    Login {
        /// The name given with USER.
        user: String,
        /// The password (zeroized on drop, redacted in `Debug`).
        password: SaslData,
    },
    /// *Decision*: `APOP`. Check `digest` = MD5(`timestamp` + secret) with
    /// [`apop_verify`](super::apop_verify), then answer as for [`Event::Login`].
    Apop {
        /// The mailbox name.
        user: String,
        /// This session's greeting timestamp, angle brackets included.
        timestamp: String,
        /// The client's digest (hex).
        digest: String,
    },
    /// *Decision*: AUTH started (RFC 5034). Answer with
    /// [`auth_challenge`](super::Session::auth_challenge),
    /// [`accept_login`](super::Session::accept_login) or [`reject`](super::Session::reject).
    Auth(AuthStart),
    /// *Decision*: the client's answer to a challenge.
    AuthResponse(SaslData),
    /// The client cancelled the SASL exchange (`*`) or sent bad base64.
    AuthAborted,
    /// *Decision*: send message `index` (0-based in the listing). Push its bytes with
    /// [`message_data`](super::Session::message_data) and finish with
    /// [`message_end`](super::Session::message_end); or `reject` if it cannot be read.
    Retrieve {
        /// The message's index in the listing given at login (0-based).
        index: usize,
        /// For `TOP`: the number of body lines after the header.
        top_lines: Option<u32>,
    },
    /// *Decision*: the client sent QUIT in the TRANSACTION state. Remove the messages
    /// listed (indexes into the listing), unlock, and [`accept`](super::Session::accept),
    /// or `reject` with `[SYS/TEMP]` if some could not be removed. Only this event ever
    /// removes anything: a dropped connection deletes nothing.
    Update {
        /// Indexes of the messages marked deleted.
        deleted: Vec<usize>,
    },
    /// The client asked for TLS and got `+OK`: write out `poll_transmit`, run the
    /// handshake, call [`tls_established`](super::Session::tls_established).
    StartTls,
    /// A client misbehaviour that matters for security.
    Violation(Violation),
    /// The session ended: write out `poll_transmit` and close the connection.
    Closed(CloseReason),
}

/// A client misbehaviour, reported with [`Event::Violation`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Violation {
    /// Commands were pipelined after STLS: dropped unexecuted, session closed.
    StlsInjection {
        /// Bytes dropped.
        dropped: usize,
    },
    /// Bytes arrived between the STLS reply and `tls_established`: dropped.
    InputDuringTlsHandshake {
        /// Bytes dropped.
        dropped: usize,
    },
    /// A plaintext login was attempted outside TLS.
    PlaintextAuthRefused,
    /// A command line ended in a bare `LF` or held a bare `CR`.
    BareLineEnding,
    /// A command line was longer than the limit.
    LineTooLong,
    /// The bad-command limit was reached.
    TooManyBadCommands,
    /// The failed-login limit was reached.
    TooManyAuthFailures,
    /// The client made the session buffer too much input.
    TooMuchInput,
}

/// Why the session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// QUIT (after the UPDATE state if the client had logged in).
    Quit,
    /// The autologout timer expired (RFC 1939: no response is sent, nothing deleted).
    Timeout,
    /// The client broke a rule; see the preceding [`Event::Violation`].
    Violation,
    /// The application ended it (for example a failed message read mid-stream).
    Aborted,
    /// The connection ended without QUIT.
    ConnectionLost,
}
