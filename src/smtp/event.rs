//! What the session reports to the application.

use std::fmt;

use bytes::Bytes;

use super::command::{self, Body, Notify, Ret};
pub use crate::sasl_wire::{AuthStart, SaslData};

/// Something the application must look at, returned by
/// [`Session::poll_event`](super::Session::poll_event).
///
/// Events marked *decision* stop the session until the application answers with
/// [`accept`](super::Session::accept), [`accept_with`](super::Session::accept_with) or
/// [`reject`](super::Session::reject) (or, for AUTH, the `auth_*` methods). Everything
/// else is information.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// *Decision*: the client introduced itself with HELO or EHLO.
    Helo(Helo),
    /// *Decision*: `MAIL FROM` started a transaction.
    Mail(MailFrom),
    /// *Decision*: `RCPT TO` named a recipient.
    Rcpt(RcptTo),
    /// *Decision*: the client wants to send the message (`DATA`, or the first `BDAT`).
    /// Accepting sends `354` for DATA; for BDAT the chunk is read.
    DataStart {
        /// `true` for BDAT (RFC 3030), `false` for DATA.
        chunking: bool,
    },
    /// A piece of the message body, in order. Write it to the message sink; nothing
    /// is final until [`Event::MessageEnd`].
    MessageData(Bytes),
    /// *Decision*: the whole message arrived intact. Accept it (the usual reply is `250`
    /// with a queue id) or reject it.
    MessageEnd(MessageEnd),
    /// The message being received will not be accepted: throw away what
    /// [`Event::MessageData`] delivered. The session answers the client itself.
    ///
    /// When the session refuses a message for its content (size, bare line endings, line
    /// length), [`Event::MessageData`] stops as soon as the session knows, and this event
    /// comes at the end of the message with the reason decided from the whole message, so
    /// the reason and the reply never depend on how the input was split. A timeout, a lost
    /// connection or a reset reports it at once.
    MessageAborted(AbortReason),
    /// The client asked for TLS and the session answered `220`. Send everything
    /// [`poll_transmit`](super::Session::poll_transmit) has, run the TLS handshake, then
    /// call [`tls_established`](super::Session::tls_established). Every byte the client
    /// sent after STARTTLS in plaintext has already been discarded.
    StartTls,
    /// *Decision*: the client started SASL authentication.
    Auth(AuthStart),
    /// *Decision*: the client's answer to a challenge (decoded from base64).
    AuthResponse(SaslData),
    /// The client cancelled the exchange with `*`, or sent an invalid response; the
    /// session answered `501`. Drop the mechanism's state.
    AuthAborted,
    /// The transaction was discarded (RSET, a new HELO/EHLO, STARTTLS or QUIT); a
    /// message in progress was aborted first with [`Event::MessageAborted`].
    ///
    /// A transaction also ends, without this event, when the application answers
    /// [`Event::MessageEnd`] or when [`Event::MessageAborted`] is reported for a message.
    Reset,
    /// The session refused a command by itself (a syntax error, a command out of
    /// sequence, a declared SIZE over the limit, ...), with this reply. For logs and
    /// audit trails; the application's own rejections are not repeated here.
    Refused {
        /// The command verb (`MAIL`, `RCPT`, ...), or `unparsable command`,
        /// `command line` for a framing error, `DATA`/`BDAT` for a refused message.
        command: &'static str,
        /// The reply sent.
        reply: super::Reply,
    },
    /// The client broke a rule that matters for security. The session has already
    /// answered; this is for logs, audit trails and penalty boxes.
    Violation(Violation),
    /// The session is closed: send what `poll_transmit` has, then close the connection.
    Closed(CloseReason),
}

/// An address as written in a path: `local-part@domain`.
///
/// The local part is kept exactly as the client wrote it (a quoted local part keeps its
/// quotes); the domain is kept as written (an address literal keeps its brackets).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Address {
    local_part: String,
    domain: String,
}

impl Address {
    /// Creates an address from its parts.
    #[must_use]
    pub fn new(local_part: impl Into<String>, domain: impl Into<String>) -> Self {
        Self { local_part: local_part.into(), domain: domain.into() }
    }

    pub(crate) fn from_mailbox(m: &command::Mailbox<'_>) -> Self {
        Self { local_part: m.local_part.to_owned(), domain: m.domain.to_string() }
    }

    /// The local part, as written.
    #[must_use]
    pub fn local_part(&self) -> &str {
        &self.local_part
    }

    /// The domain or address literal, as written; empty for the bare `<Postmaster>`.
    #[must_use]
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// `true` for `postmaster` (any case), with or without a domain. RFC 5321 §4.5.1
    /// requires a server to accept mail for its postmaster.
    #[must_use]
    pub fn is_postmaster(&self) -> bool {
        self.local_part.eq_ignore_ascii_case("postmaster")
    }

    /// `true` if the address uses non-ASCII characters (needs SMTPUTF8).
    #[must_use]
    pub fn is_utf8(&self) -> bool {
        !self.local_part.is_ascii() || !self.domain.is_ascii()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.domain.is_empty() {
            f.write_str(&self.local_part)
        } else {
            write!(f, "{}@{}", self.local_part, self.domain)
        }
    }
}

/// HELO or EHLO.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Helo {
    /// The name the client gave, as written.
    pub name: String,
    /// `true` for EHLO.
    pub extended: bool,
}

/// `MAIL FROM` and its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MailFrom {
    /// The reverse path; `None` for the null path `<>` (bounces).
    pub from: Option<Address>,
    /// `SIZE=` declared by the client (already checked against the limit).
    pub size: Option<u64>,
    /// `BODY=`.
    pub body: Option<Body>,
    /// `SMTPUTF8` was given.
    pub smtputf8: bool,
    /// `REQUIRETLS` was given (RFC 8689; only accepted inside TLS).
    pub requiretls: bool,
    /// `RET=` (RFC 3461).
    pub ret: Option<Ret>,
    /// `ENVID=`, decoded from xtext (RFC 3461).
    pub envid: Option<String>,
    /// `AUTH=`, decoded from xtext (RFC 4954 §5): `<>` or a mailbox.
    pub auth: Option<String>,
}

/// `RCPT TO` and its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RcptTo {
    /// The forward path. The bare `<Postmaster>` has an empty domain.
    pub to: Address,
    /// `NOTIFY=` (RFC 3461).
    pub notify: Option<Notify>,
    /// `ORCPT=`: the address type and the decoded original recipient (RFC 3461).
    pub orcpt: Option<(String, String)>,
}

/// The end of a message that arrived intact.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MessageEnd {
    /// Octets of message content (after dot-unstuffing).
    pub size: u64,
    /// Recipients accepted in this transaction.
    pub recipients: usize,
    /// `true` if bare line endings were normalised ([`crate::line::BareLineEnding::Normalize`]).
    pub normalized: bool,
}

/// Why a message was abandoned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AbortReason {
    /// It grew past [`Limits::message_size`](super::Limits::message_size) (`552 5.3.4`).
    TooLarge,
    /// It contained a bare `LF` or `CR` under [`crate::line::BareLineEnding::Reject`]
    /// (`550 5.5.2`).
    BareLineEnding,
    /// A line was longer than [`Limits::text_line`](super::Limits::text_line) (`550 5.6.0`).
    LineTooLong,
    /// The client went silent past the data timeout.
    Timeout,
    /// The client reset the transaction (RSET, HELO/EHLO or QUIT) between BDAT chunks.
    Reset,
    /// The connection ended (see [`Session::handle_eof`](super::Session::handle_eof)) or
    /// the session was closed for another reason.
    ConnectionLost,
}

/// A client misbehaviour that matters for security, reported with [`Event::Violation`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Violation {
    /// Bytes arrived before the greeting was sent.
    EarlyTalker {
        /// How many.
        bytes: usize,
    },
    /// Commands or data were pipelined after STARTTLS (the CVE-2011-0411 injection):
    /// they were dropped, unexecuted, and the session closed.
    StartTlsInjection {
        /// Bytes dropped.
        dropped: usize,
    },
    /// Bytes arrived between the STARTTLS reply and `tls_established`: dropped.
    InputDuringTlsHandshake {
        /// Bytes dropped.
        dropped: usize,
    },
    /// Pipelining where RFC 2920 forbids it, by an unauthenticated client.
    Pipelining {
        /// The command after which the client did not wait.
        after: &'static str,
    },
    /// Message data was pipelined after a DATA command that was refused; it was never
    /// executed as commands and the session closed.
    DataAfterRefusedData,
    /// A command line ended in a bare `LF` or held a bare `CR`.
    BareLineEndingInCommand,
    /// A message held bare line endings (counts as found by the receiver).
    BareLineEndingInData {
        /// Bare `LF`s.
        bare_lf: u64,
        /// Bare `CR`s.
        bare_cr: u64,
        /// `true` if they were normalised and the message kept.
        normalized: bool,
    },
    /// A command line was longer than the limit.
    LineTooLong,
    /// The error limit was reached.
    TooManyErrors,
    /// The junk-command limit was reached.
    TooManyJunkCommands,
    /// The failed-AUTH limit was reached.
    TooManyAuthFailures,
    /// The client sent more than the session-byte or buffered-input limit.
    TooMuchInput,
    /// An address used non-ASCII characters without SMTPUTF8.
    Utf8WithoutSmtputf8,
}

/// Why the session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client sent QUIT.
    Quit,
    /// The client was too slow (`421 4.4.2`).
    Timeout,
    /// The client broke a rule; see the preceding [`Event::Violation`].
    Violation,
    /// The application ended the session with [`Session::shutdown`](super::Session::shutdown).
    Shutdown,
    /// The application rejected the connection or answered with a `421`.
    Rejected,
    /// The connection ended without QUIT.
    ConnectionLost,
}
