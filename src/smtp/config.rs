//! Session configuration and limits.

use std::time::Duration;

use crate::line::BareLineEnding;

/// Limits on everything a client controls, with RFC 5321 and Postfix-backed defaults.
///
/// Every limit bounds memory or time; none can be switched off entirely except the
/// text-line length and the minimum data rate, which are `Option`s.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Longest command line in octets including `CRLF` (RFC 5321 §4.5.3.1.4: 512).
    ///
    /// After EHLO, the allowances of the advertised extensions are added, as their RFCs
    /// require: SIZE +26 (RFC 1870), DSN +500 for `ORCPT` and +100 for `ENVID`
    /// (RFC 3461), AUTH +500 for `AUTH=` (RFC 4954).
    pub command_line: usize,
    /// Longest line of a SASL response in octets (RFC 4954 §4: at least 12288).
    pub auth_line: usize,
    /// Longest text line of a message in octets including `CRLF` (RFC 5321
    /// §4.5.3.1.6: 1000). Longer lines refuse the message. `None` disables the check.
    pub text_line: Option<usize>,
    /// Recipients per transaction (RFC 5321 §4.5.3.1.8 requires at least 100).
    /// Further `RCPT` commands get `452 4.5.3`.
    pub recipients: usize,
    /// Largest message in octets, advertised with SIZE (RFC 1870). Default 10 240 000,
    /// Postfix's `message_size_limit`.
    pub message_size: u64,
    /// Negative replies (4xx/5xx) before the session is closed with `421`; the count
    /// restarts after each accepted message (Postfix `smtpd_hard_error_limit`: 20).
    pub errors: u32,
    /// NOOP, RSET, VRFY, EXPN and HELP commands tolerated before each further one also
    /// counts as an error; the count restarts after each accepted message (Postfix
    /// `smtpd_junk_command_limit`: 100).
    pub junk_commands: u32,
    /// Failed AUTH attempts before the session is closed with `421 4.7.0`.
    pub auth_failures: u32,
    /// Bytes a client may send in one session, all messages included.
    pub session_bytes: u64,
    /// Bytes the session will hold for the application while a decision is pending
    /// (see [`Session::wants_read`](super::Session::wants_read)). A client that makes the
    /// session buffer more is disconnected.
    pub buffered_input: usize,
    /// Time the client has to complete a command, measured from the moment the session
    /// started waiting for it, so a command trickled byte by byte cannot extend it
    /// (RFC 5321 §4.5.3.2.7: 5 minutes).
    pub command_timeout: Duration,
    /// Time the client has between two blocks of message data (RFC 5321 §4.5.3.2.6:
    /// 3 minutes).
    pub data_timeout: Duration,
    /// The slowest message-data rate tolerated, in bytes per second (Postfix
    /// `smtpd_min_data_rate`: 500). Each block of data extends the data deadline by only
    /// `bytes / rate`, never beyond `data_timeout` from now, so a slowloris trickle times
    /// out. `None` resets the deadline on every block.
    pub min_data_rate: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            command_line: 512,
            auth_line: 12288,
            text_line: Some(1000),
            recipients: 100,
            message_size: 10_240_000,
            errors: 20,
            junk_commands: 100,
            auth_failures: 3,
            session_bytes: 512 * 1024 * 1024,
            buffered_input: 256 * 1024,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            min_data_rate: Some(500),
        }
    }
}

/// How `VRFY` and `EXPN` are answered. Neither ever reveals whether a user exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VerifyPolicy {
    /// `252 2.5.0` "cannot verify, but will attempt delivery" (RFC 5321 §3.5.3).
    #[default]
    CannotVerify,
    /// `502 5.5.1` command not implemented.
    Disabled,
}

/// What to do with a client that sends before the greeting (a "pregreet" in Postfix
/// postscreen's words): spam engines talk first, real MTAs wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EarlyTalkerPolicy {
    /// Report a [`Violation::EarlyTalker`](super::Violation::EarlyTalker), then process
    /// the bytes once the greeting has been sent.
    Report,
    /// Report it, answer `554 5.5.1` instead of the greeting and close (default).
    #[default]
    Reject,
}

/// The configuration shared by the sessions of one listener.
///
/// Build it with [`Config::new`] and adjust the public fields:
///
/// ```
/// use postern::smtp::Config;
///
/// let mut config = Config::new("mx.example.test");
/// config.starttls = true;
/// config.auth_mechanisms = vec!["PLAIN".into(), "SCRAM-SHA-256".into()];
/// config.limits.message_size = 50 * 1024 * 1024;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The server's name, used in the greeting, the EHLO reply and Received headers.
    pub hostname: String,
    /// Text after the hostname in the greeting. The default, `ESMTP`, discloses no
    /// software name or version.
    pub greeting_text: String,
    /// Limits on what a client can make the session do.
    pub limits: Limits,
    /// Bare `LF` / bare `CR` policy for commands and message data.
    pub bare_line_ending: BareLineEnding,
    /// Offer STARTTLS (RFC 3207). Set it when the application can run a TLS handshake.
    pub starttls: bool,
    /// SASL mechanisms to advertise, in order (RFC 4954). Empty: no AUTH. `-PLUS`
    /// (channel-bound) mechanisms and `EXTERNAL` are only offered and accepted over TLS.
    pub auth_mechanisms: Vec<String>,
    /// Allow AUTH without TLS. Off by default: AUTH is then neither advertised nor
    /// accepted before TLS (`538 5.7.11`).
    pub allow_plaintext_auth: bool,
    /// Require AUTH before MAIL (a submission service, RFC 6409 §4.3): an unauthenticated
    /// `MAIL` gets `530 5.7.0 Authentication required`. Off by default (port 25).
    pub require_auth: bool,
    /// Advertise and accept CHUNKING/BDAT (RFC 3030).
    pub chunking: bool,
    /// Advertise and accept SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// Advertise and accept DSN parameters (RFC 3461).
    pub dsn: bool,
    /// Advertise REQUIRETLS (RFC 8689); it is only ever advertised inside TLS.
    pub requiretls: bool,
    /// `VRFY` answer.
    pub vrfy: VerifyPolicy,
    /// `EXPN` answer.
    pub expn: VerifyPolicy,
    /// Wait this long before sending the greeting, to catch clients that talk first.
    /// `None` (default) greets at once; early talk is then still detected when bytes
    /// arrive before the application has taken the greeting with `poll_transmit`.
    pub greeting_delay: Option<Duration>,
    /// What to do with early talkers.
    pub early_talker: EarlyTalkerPolicy,
    /// Disconnect unauthenticated clients that pipeline where RFC 2920 forbids it
    /// (without PIPELINING negotiated, or after EHLO, HELO, DATA, VRFY, EXPN, NOOP,
    /// QUIT or STARTTLS), as Postfix's `smtpd_forbid_unauth_pipelining` does. Default on.
    /// Body bytes pipelined after a refused DATA and commands pipelined after STARTTLS are
    /// never executed, whatever this says.
    pub forbid_unauth_pipelining: bool,
}

impl Config {
    /// A configuration with secure defaults for a server called `hostname`.
    #[must_use]
    pub fn new(hostname: impl Into<String>) -> Self {
        Self {
            hostname: hostname.into(),
            greeting_text: "ESMTP".into(),
            limits: Limits::default(),
            bare_line_ending: BareLineEnding::Reject,
            starttls: false,
            auth_mechanisms: Vec::new(),
            allow_plaintext_auth: false,
            require_auth: false,
            chunking: true,
            smtputf8: true,
            dsn: true,
            requiretls: true,
            vrfy: VerifyPolicy::CannotVerify,
            expn: VerifyPolicy::Disabled,
            greeting_delay: None,
            early_talker: EarlyTalkerPolicy::Reject,
            forbid_unauth_pipelining: true,
        }
    }
}
