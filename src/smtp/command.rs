//! The SMTP command parser (RFC 5321 §4.1, RFC 6531, ESMTP parameters).
//!
//! [`Command::parse`] borrows from the line it is given (without its `CRLF`) and never
//! allocates. It checks syntax and the RFC 5321 §4.5.3.1 size limits; what a command
//! *means* in the current session state is the session's business.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// One parsed SMTP command, borrowing from the input line.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command<'a> {
    /// `HELO domain`
    Helo(&'a str),
    /// `EHLO domain` or `EHLO address-literal` (kept as written, brackets included).
    Ehlo(&'a str),
    /// `MAIL FROM:<reverse-path> [params]`
    Mail {
        /// The reverse path (`<>` is [`ReversePath::Null`]).
        from: ReversePath<'a>,
        /// ESMTP parameters.
        params: MailParameters<'a>,
    },
    /// `RCPT TO:<forward-path> [params]`
    Rcpt {
        /// The forward path.
        to: ForwardPath<'a>,
        /// ESMTP parameters.
        params: RcptParameters<'a>,
    },
    /// `DATA`
    Data,
    /// `BDAT size [LAST]` (RFC 3030)
    Bdat {
        /// Octets of message data that follow the command line.
        size: u64,
        /// `true` for the last chunk.
        last: bool,
    },
    /// `RSET`
    Rset,
    /// `NOOP [string]`
    Noop,
    /// `QUIT`
    Quit,
    /// `VRFY string`
    Vrfy(&'a str),
    /// `EXPN string`
    Expn(&'a str),
    /// `HELP [string]`
    Help(Option<&'a str>),
    /// `STARTTLS` (RFC 3207)
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954)
    Auth {
        /// The SASL mechanism name, as sent (compare case-insensitively).
        mechanism: &'a str,
        /// The initial response, still base64-encoded; `=` stands for an empty response.
        initial_response: Option<&'a str>,
    },
}

/// The reverse path of `MAIL FROM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReversePath<'a> {
    /// `<>`: the null reverse path used by bounces.
    Null,
    /// A mailbox.
    Mailbox(Mailbox<'a>),
}

/// The forward path of `RCPT TO`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForwardPath<'a> {
    /// `<Postmaster>` without a domain (RFC 5321 §4.1.1.3), matched case-insensitively.
    Postmaster,
    /// A mailbox (which may itself be `postmaster@domain`).
    Mailbox(Mailbox<'a>),
}

/// `local-part@domain` as written in a path (source routes removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mailbox<'a> {
    /// The local part exactly as written (a quoted string keeps its quotes and escapes).
    pub local_part: &'a str,
    /// The domain or address literal.
    pub domain: Host<'a>,
}

/// The part of a mailbox after `@`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host<'a> {
    /// A domain name (possibly a U-label domain when SMTPUTF8 is used).
    Domain(&'a str),
    /// `[192.0.2.1]`
    Ipv4(Ipv4Addr),
    /// `[IPv6:2001:db8::1]`
    Ipv6(Ipv6Addr),
    /// `[tag:content]`, a general address literal.
    General {
        /// The standardized tag.
        tag: &'a str,
        /// The content after the colon.
        content: &'a str,
    },
}

/// `BODY=` (RFC 6152, RFC 3030).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Body {
    /// `BODY=7BIT`
    SevenBit,
    /// `BODY=8BITMIME`
    EightBitMime,
    /// `BODY=BINARYMIME` (only valid with BDAT; postern does not advertise it)
    BinaryMime,
}

/// `RET=` (RFC 3461).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ret {
    /// `RET=FULL`
    Full,
    /// `RET=HDRS`
    Headers,
}

/// The parameters of `MAIL FROM`.
///
/// xtext values (RFC 3461 §4) are kept encoded as sent; decode with [`decode_xtext`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailParameters<'a> {
    /// `SIZE=n` (RFC 1870)
    pub size: Option<u64>,
    /// `BODY=`
    pub body: Option<Body>,
    /// `SMTPUTF8` (RFC 6531)
    pub smtputf8: bool,
    /// `REQUIRETLS` (RFC 8689)
    pub requiretls: bool,
    /// `RET=` (RFC 3461)
    pub ret: Option<Ret>,
    /// `ENVID=` xtext (RFC 3461)
    pub envid: Option<&'a str>,
    /// `AUTH=` xtext mailbox or `<>` (RFC 4954 §5)
    pub auth: Option<&'a str>,
}

/// `NOTIFY=` (RFC 3461): either never, or a set of conditions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Notify {
    /// `NEVER`
    pub never: bool,
    /// `SUCCESS`
    pub success: bool,
    /// `FAILURE`
    pub failure: bool,
    /// `DELAY`
    pub delay: bool,
}

/// The parameters of `RCPT TO`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RcptParameters<'a> {
    /// `NOTIFY=` (RFC 3461)
    pub notify: Option<Notify>,
    /// `ORCPT=addr-type;xtext` (RFC 3461): the address type and the xtext, as sent.
    pub orcpt: Option<(&'a str, &'a str)>,
}

/// Why a command line could not be parsed; each maps to the reply RFC 5321 asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not a known command verb (`500 5.5.1`).
    #[error("command not recognized")]
    UnknownCommand,
    /// The line is not valid UTF-8 (`500 5.5.2`).
    #[error("command line is not valid UTF-8")]
    InvalidUtf8,
    /// The command's arguments are malformed (`501 5.5.4`).
    #[error("syntax error in parameters or arguments")]
    Syntax,
    /// A path could not be parsed (`501 5.1.3`).
    #[error("bad address syntax")]
    BadAddress,
    /// Local part over 64, domain over 255 or path over 256 octets (`501 5.1.3`; RFC 5321 §4.5.3.1).
    #[error("address too long")]
    AddressTooLong,
    /// An unknown, duplicated or malformed ESMTP parameter (`555 5.5.4`).
    #[error("unrecognized or invalid parameter")]
    BadParameter,
}

impl ParseError {
    /// The reply code and enhanced status for this error.
    #[must_use]
    pub fn reply_code(self) -> (u16, super::EnhancedStatus) {
        use super::EnhancedStatus as S;
        match self {
            Self::UnknownCommand => (500, S::new(5, 5, 1)),
            Self::InvalidUtf8 => (500, S::new(5, 5, 2)),
            Self::Syntax => (501, S::new(5, 5, 4)),
            Self::BadAddress | Self::AddressTooLong => (501, S::new(5, 1, 3)),
            Self::BadParameter => (555, S::new(5, 5, 4)),
        }
    }
}

impl<'a> Command<'a> {
    /// Parses one command line, given without its `CRLF`.
    ///
    /// ```
    /// use postern::smtp::command::{Command, ReversePath};
    ///
    /// let cmd = Command::parse(b"MAIL FROM:<alice@example.test> SIZE=1000").unwrap();
    /// let Command::Mail { from: ReversePath::Mailbox(m), params } = cmd else { panic!() };
    /// assert_eq!(m.local_part, "alice");
    /// assert_eq!(params.size, Some(1000));
    /// ```
    pub fn parse(line: &'a [u8]) -> Result<Self, ParseError> {
        let _ = line;
        Err(ParseError::UnknownCommand)
    }
}

/// Decodes RFC 3461 xtext (`+XX` hex escapes). Returns `None` for malformed xtext.
#[must_use]
pub fn decode_xtext(xtext: &str) -> Option<String> {
    let _ = xtext;
    None
}

impl fmt::Display for Command<'_> {
    /// Writes the canonical form (without `CRLF`), which [`Command::parse`] reads back
    /// to an equal command.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = f;
        Ok(())
    }
}

impl fmt::Display for Mailbox<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local_part, self.domain)
    }
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(ip) => write!(f, "[{ip}]"),
            Host::Ipv6(ip) => write!(f, "[IPv6:{ip}]"),
            Host::General { tag, content } => write!(f, "[{tag}:{content}]"),
        }
    }
}
