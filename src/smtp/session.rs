//! The SMTP server session state machine.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::command::{Command, ForwardPath, ParseError, ReversePath, decode_xtext};
use super::config::{Config, EarlyTalkerPolicy, VerifyPolicy};
use super::data::{BdatReceiver, DataReceiver, DataViolations};
use super::event::{
    AbortReason, Address, AuthStart, CloseReason, Event, Helo, MailFrom, MessageEnd, RcptTo, Violation,
};
use super::reply::{EnhancedStatus as S, Reply};
use crate::TlsInfo;
use crate::line::{self, BareLineEnding, Framed, LineError, LineFramer};
use crate::sasl_wire::{self, SaslLine};

/// Misuse of the session API by the application. Peer errors never show up here: they
/// become SMTP replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A decision method was called while no decision was pending.
    #[error("no decision is pending")]
    NoPendingDecision,
    /// The decision does not fit the pending event (for example `accept` while an AUTH
    /// exchange is pending, or `auth_challenge` while `RCPT` is pending).
    #[error("this decision does not answer the pending event")]
    WrongDecision,
    /// `reject` needs a 4xx or 5xx reply; `accept_with` a positive reply of the right kind.
    #[error("reply code does not fit the decision")]
    InvalidReply,
    /// `tls_established` was called without a preceding [`Event::StartTls`].
    #[error("no TLS handshake was expected")]
    UnexpectedTls,
    /// The session is closed.
    #[error("the session is closed")]
    Closed,
}

/// A sans-IO SMTP server session for one connection.
///
/// # Driving it
/// The application owns the socket, the clock and the TLS library. In a loop:
///
/// 0. Write out the greeting ([`poll_transmit`](Self::poll_transmit)) before the first
///    read: bytes received before the application has taken the greeting are early talk
///    ([`Violation::EarlyTalker`], refused by default).
/// 1. [`receive`](Self::receive) the bytes read from the socket, with the current time;
///    call [`handle_eof`](Self::handle_eof) when the peer closes.
/// 2. Drain [`poll_event`](Self::poll_event). Answer each *decision* event with
///    [`accept`](Self::accept), [`accept_with`](Self::accept_with),
///    [`reject`](Self::reject) or the `auth_*` methods: the session stops at a
///    pending decision, and the answer resumes it (possibly producing more events).
/// 3. Write out what [`poll_transmit`](Self::poll_transmit) appends.
/// 4. On [`Event::StartTls`], write out the `220`, run the handshake and call
///    [`tls_established`](Self::tls_established).
/// 5. Sleep until [`poll_timeout`](Self::poll_timeout) or readable input, calling
///    [`handle_timeout`](Self::handle_timeout) when the deadline passes.
/// 6. Stop when [`is_closed`](Self::is_closed) and the transmit buffer is written.
///
/// Read only when [`wants_read`](Self::wants_read) is `true`: while a decision is
/// pending the session does not consume input, and it caps what it will buffer.
///
/// The result never depends on how the input was split across `receive` calls, except
/// where it must: bytes that arrive before the reply they should wait for are
/// pipelining, and RFC 2920 restricts that.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use std::time::Instant;
/// use postern::smtp::{Config, Event, Session};
///
/// let now = Instant::now();
/// let mut session = Session::new(Arc::new(Config::new("mx.example.test")), now);
/// let mut wire = Vec::new();
/// session.poll_transmit(&mut wire);
/// assert_eq!(wire, b"220 mx.example.test ESMTP\r\n");
///
/// session.receive(b"HELO client.example.org\r\n", now);
/// let Some(Event::Helo(helo)) = session.poll_event() else { panic!() };
/// assert_eq!(helo.name, "client.example.org");
/// session.accept().unwrap();
/// wire.clear();
/// session.poll_transmit(&mut wire);
/// assert_eq!(wire, b"250 mx.example.test\r\n");
/// ```
pub struct Session {
    config: Arc<Config>,
    phase: Phase,
    pending: Option<Pending>,
    framer: LineFramer,
    /// Received bytes not yet processed (only while a decision is pending or a line is
    /// incomplete).
    inbuf: Vec<u8>,
    out: Vec<u8>,
    events: VecDeque<Event>,
    /// Message content produced by the current `receive`, emitted as one event.
    body: Vec<u8>,
    deadline: Option<Instant>,
    now: Instant,
    helo: Option<Helo>,
    tls: Option<TlsInfo>,
    authenticated: Option<String>,
    txn: Option<Transaction>,
    /// The greeting is in `out` and the application has not taken it yet.
    greeting_unsent: bool,
    /// Connection refused at the greeting (RFC 5321 §3.1): only QUIT is served.
    refused: bool,
    /// The command being answered, for [`Event::Refused`].
    verb: &'static str,
    /// Bytes received after the command line being executed.
    pipelined: usize,
    errors: u32,
    junk: u32,
    auth_failures: u32,
    session_bytes: u64,
    close_reason: Option<CloseReason>,
}

#[derive(Debug)]
enum Phase {
    /// Waiting out the greeting delay.
    Greeting,
    Command,
    /// Waiting for a SASL response line.
    AuthResponse,
    Data(Box<DataState>),
    /// Reading a BDAT chunk (the receiver lives in the transaction).
    Bdat(BdatChunk),
    TlsHandshake,
    Closed,
}

#[derive(Debug)]
struct DataState {
    rx: DataReceiver,
    aborted: Option<AbortReason>,
}

#[derive(Debug)]
struct BdatChunk {
    last: bool,
    /// The chunk size as announced.
    total: u64,
    /// Octets still to swallow when the chunk is refused.
    size: u64,
    /// Swallow the chunk and answer this instead.
    refused: Option<Reply>,
}

#[derive(Debug)]
enum Pending {
    Helo(Helo),
    Mail(MailFrom),
    Rcpt,
    DataStart { bdat: Option<(u64, bool)> },
    MessageEnd,
    Auth,
}

#[derive(Debug)]
struct Transaction {
    smtputf8: bool,
    recipients: usize,
    first_recipient: Option<Address>,
    pending_recipient: Option<Address>,
    bdat: Option<Box<BdatState>>,
}

#[derive(Debug)]
struct BdatState {
    rx: BdatReceiver,
    aborted: Option<AbortReason>,
    failed: bool,
}

/// Commands after which RFC 2920 §3.1 (and RFC 3207 for STARTTLS) forbids pipelining.
fn must_be_last(cmd: &Command<'_>) -> Option<&'static str> {
    Some(match cmd {
        Command::Helo(_) => "HELO",
        Command::Ehlo(_) => "EHLO",
        Command::Data => "DATA",
        Command::Vrfy(_) => "VRFY",
        Command::Expn(_) => "EXPN",
        Command::Noop => "NOOP",
        Command::StartTls => "STARTTLS",
        _ => return None,
    })
}

/// The verb of a command, for reports.
fn verb(cmd: &Command<'_>) -> &'static str {
    match cmd {
        Command::Helo(_) => "HELO",
        Command::Ehlo(_) => "EHLO",
        Command::Mail { .. } => "MAIL",
        Command::Rcpt { .. } => "RCPT",
        Command::Data => "DATA",
        Command::Bdat { .. } => "BDAT",
        Command::Rset => "RSET",
        Command::Noop => "NOOP",
        Command::Quit => "QUIT",
        Command::Vrfy(_) => "VRFY",
        Command::Expn(_) => "EXPN",
        Command::Help(_) => "HELP",
        Command::StartTls => "STARTTLS",
        Command::Auth { .. } => "AUTH",
    }
}

fn r(code: u16, status: (u8, u16, u16), text: &'static str) -> Reply {
    Reply::new(code, S::new(status.0, status.1, status.2), text)
}

impl Session {
    /// Starts a session on a new plaintext connection. The greeting is queued at once,
    /// or after [`Config::greeting_delay`].
    #[must_use]
    pub fn new(config: Arc<Config>, now: Instant) -> Self {
        let framer = LineFramer::new(config.limits.command_line, config.bare_line_ending);
        let mut s = Self {
            config,
            phase: Phase::Greeting,
            pending: None,
            framer,
            inbuf: Vec::new(),
            out: Vec::new(),
            events: VecDeque::new(),
            body: Vec::new(),
            deadline: None,
            now,
            helo: None,
            tls: None,
            authenticated: None,
            txn: None,
            greeting_unsent: false,
            refused: false,
            verb: "connect",
            pipelined: 0,
            errors: 0,
            junk: 0,
            auth_failures: 0,
            session_bytes: 0,
            close_reason: None,
        };
        match s.config.greeting_delay {
            Some(delay) => s.deadline = Some(now + delay),
            None => s.greet(),
        }
        s
    }

    /// Starts a session on a connection that is already inside TLS (implicit TLS,
    /// RFC 8314, port 465). STARTTLS is not offered.
    #[must_use]
    pub fn new_implicit_tls(config: Arc<Config>, tls: TlsInfo, now: Instant) -> Self {
        let mut s = Self::new(config, now);
        s.tls = Some(tls);
        s
    }

    /// Starts a session that refuses the connection: the greeting is `reply` (use a
    /// `554`, RFC 5321 §3.1), after which only QUIT is served (`503` to everything
    /// else). Use it when admission control says no but the client deserves a reply.
    #[must_use]
    pub fn new_refused(config: Arc<Config>, reply: Reply, now: Instant) -> Self {
        let mut s = Self::new(Arc::clone(&config), now);
        s.out.clear();
        let reply = if reply.is_negative() {
            reply
        } else {
            Reply::plain(554, format!("{} Service unavailable", config.hostname))
        };
        reply.write_to(&mut s.out);
        s.greeting_unsent = true;
        s.refused = true;
        s.phase = Phase::Command;
        s.deadline = Some(now + s.config.limits.command_timeout);
        s
    }

    // ----- getters -------------------------------------------------------------------

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The accepted HELO/EHLO, if any (forgotten after STARTTLS).
    #[must_use]
    pub fn helo(&self) -> Option<&Helo> {
        self.helo.as_ref()
    }

    /// The TLS connection, if the session runs inside TLS.
    #[must_use]
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The identity given to [`auth_succeed`](Self::auth_succeed), if any.
    #[must_use]
    pub fn authenticated(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    /// `true` once the session has ended; write out `poll_transmit` and close.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Why the session ended, once it has.
    #[must_use]
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason
    }

    /// `true` if a decision is pending.
    #[must_use]
    pub fn is_decision_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// `true` when the session can take more input: it is open, no decision is pending,
    /// and it is not waiting for a TLS handshake.
    #[must_use]
    pub fn wants_read(&self) -> bool {
        self.pending.is_none()
            && !matches!(self.phase, Phase::Closed | Phase::TlsHandshake)
            && self.inbuf.len() < self.config.limits.buffered_input
    }

    // ----- inputs --------------------------------------------------------------------

    /// Processes bytes read from the connection at time `now`.
    ///
    /// Everything is consumed or buffered (within
    /// [`Limits::buffered_input`](super::Limits::buffered_input)); processing stops at a
    /// pending decision and resumes when it is answered.
    pub fn receive(&mut self, input: &[u8], now: Instant) {
        self.now = now;
        if input.is_empty() || self.is_closed() {
            return;
        }
        self.session_bytes = self.session_bytes.saturating_add(input.len() as u64);
        if self.session_bytes > self.config.limits.session_bytes {
            self.violation(Violation::TooMuchInput);
            self.close(Some(r(421, (4, 7, 0), "Error: too much input")), CloseReason::Violation);
            return;
        }
        match self.phase {
            Phase::TlsHandshake => {
                self.violation(Violation::InputDuringTlsHandshake { dropped: input.len() });
                return;
            }
            Phase::Greeting => {
                self.violation(Violation::EarlyTalker { bytes: input.len() });
                if self.config.early_talker == EarlyTalkerPolicy::Reject {
                    self.refuse_early_talker();
                    return;
                }
            }
            _ if self.greeting_unsent && !self.refused => {
                self.violation(Violation::EarlyTalker { bytes: input.len() });
                if self.config.early_talker == EarlyTalkerPolicy::Reject {
                    self.out.clear();
                    self.refuse_early_talker();
                    return;
                }
            }
            Phase::Data(_) | Phase::Bdat(_) => self.extend_data_deadline(input.len(), now),
            _ => {}
        }
        if let Some(after) = self.pending_must_be_last() {
            // The client did not wait for the reply to a command that must end a group.
            if !self.pipelining_allowed_anyway() {
                self.inbuf.extend_from_slice(input);
                self.pipelining_violation(after);
                return;
            }
        }
        if self.inbuf.is_empty() && self.pending.is_none() {
            let used = self.process(input);
            if let Some(rest) = input.get(used..) {
                self.inbuf.extend_from_slice(rest);
            }
        } else {
            self.inbuf.extend_from_slice(input);
            self.resume();
        }
        self.flush_body();
        // Without a pending decision the buffer only holds a partial line, which the
        // framer already caps.
        if self.pending.is_some() && self.inbuf.len() > self.config.limits.buffered_input && !self.is_closed()
        {
            self.violation(Violation::TooMuchInput);
            self.close(Some(r(421, (4, 7, 0), "Error: too much pipelined input")), CloseReason::Violation);
        }
    }

    /// Tells the session that the peer closed its side of the connection.
    pub fn handle_eof(&mut self, now: Instant) {
        self.now = now;
        if !self.is_closed() {
            self.close(None, CloseReason::ConnectionLost);
        }
    }

    /// The next deadline: call [`handle_timeout`](Self::handle_timeout) when it passes.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() { None } else { self.deadline }
    }

    /// Handles the passage of time. Sends the delayed greeting, or closes the session
    /// with `421 4.4.2` if the client took too long.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        let Some(deadline) = self.deadline else { return };
        if now < deadline || self.is_closed() {
            return;
        }
        if matches!(self.phase, Phase::Greeting) {
            self.greet();
            return;
        }
        let text = format!("{} Error: timeout exceeded", self.config.hostname);
        self.abort_message(AbortReason::Timeout);
        self.close(Some(Reply::new(421, S::new(4, 4, 2), text)), CloseReason::Timeout);
    }

    /// Records the TLS connection after a STARTTLS handshake. All pre-TLS state (HELO,
    /// transaction, authentication) is forgotten, as RFC 3207 §4.2 requires; the client
    /// starts again with EHLO, and STARTTLS is no longer offered.
    pub fn tls_established(&mut self, info: TlsInfo, now: Instant) -> Result<(), Error> {
        self.now = now;
        if !matches!(self.phase, Phase::TlsHandshake) {
            return Err(if self.is_closed() { Error::Closed } else { Error::UnexpectedTls });
        }
        self.tls = Some(info);
        self.helo = None;
        self.authenticated = None;
        self.txn = None;
        line::wipe(&mut self.inbuf);
        self.framer.reset();
        self.framer.set_max_line(self.command_line_limit());
        self.phase = Phase::Command;
        self.command_deadline();
        Ok(())
    }

    // ----- outputs -------------------------------------------------------------------

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Appends the bytes to send to `buf` and returns how many were appended. An empty
    /// `buf` takes the session's buffer whole, without copying.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> usize {
        self.greeting_unsent = false;
        let n = self.out.len();
        if buf.is_empty() {
            std::mem::swap(buf, &mut self.out);
        } else {
            buf.append(&mut self.out);
        }
        n
    }

    /// `true` if [`poll_transmit`](Self::poll_transmit) has bytes.
    #[must_use]
    pub fn has_transmit(&self) -> bool {
        !self.out.is_empty()
    }

    // ----- decisions -----------------------------------------------------------------

    /// Accepts the pending HELO/EHLO, MAIL, RCPT, DATA/BDAT or message with the
    /// standard reply.
    pub fn accept(&mut self) -> Result<(), Error> {
        self.decide(true, None)
    }

    /// Accepts with a reply of the application's choosing: a `2xx` (for example
    /// `250 2.0.0 Ok: queued as 4F2A`); for DATA only `354` fits.
    pub fn accept_with(&mut self, reply: Reply) -> Result<(), Error> {
        self.decide(true, Some(reply))
    }

    /// Rejects the pending event with a `4xx` or `5xx` reply. A `421` also closes the
    /// session. For AUTH it counts a failed attempt.
    pub fn reject(&mut self, reply: Reply) -> Result<(), Error> {
        if !reply.is_negative() {
            return Err(Error::InvalidReply);
        }
        self.decide(false, Some(reply))
    }

    /// Answers a pending AUTH event with a SASL challenge (sent as `334` + base64).
    pub fn auth_challenge(&mut self, challenge: &[u8]) -> Result<(), Error> {
        self.check_pending(|p| matches!(p, Pending::Auth))?;
        self.pending = None;
        Reply::plain(334, sasl_wire::encode(challenge)).write_to(&mut self.out);
        self.framer.set_max_line(self.config.limits.auth_line);
        self.phase = Phase::AuthResponse;
        self.command_deadline();
        self.resume();
        Ok(())
    }

    /// Ends a pending AUTH exchange successfully (`235 2.7.0`): the client is
    /// authenticated as `identity`.
    pub fn auth_succeed(&mut self, identity: impl Into<String>) -> Result<(), Error> {
        self.check_pending(|p| matches!(p, Pending::Auth))?;
        self.pending = None;
        self.authenticated = Some(identity.into());
        self.end_auth();
        self.send(r(235, (2, 7, 0), "Authentication successful"));
        self.resume();
        Ok(())
    }

    /// Ends the session from the application's side, for example at server shutdown:
    /// sends `reply` (normally `421 4.3.2 ... shutting down`), aborts a message in flight
    /// ([`Event::MessageAborted`]) and closes ([`Event::Closed`] with
    /// [`CloseReason::Shutdown`]). Does nothing if the session is already closed.
    pub fn shutdown(&mut self, reply: Reply) {
        self.close(Some(reply), CloseReason::Shutdown);
    }

    /// Ends a pending AUTH exchange with the standard failure `535 5.7.8`.
    pub fn auth_fail(&mut self) -> Result<(), Error> {
        self.reject(r(535, (5, 7, 8), "Error: authentication failed"))
    }

    // ----- helpers for applications --------------------------------------------------

    /// A `Received:` header field (RFC 5321 §4.4, protocol names from RFC 3848 and
    /// RFC 6531) for the current transaction, ending in `CRLF`, for the application to
    /// put in front of the message.
    ///
    /// `peer` is the client's address as the application sees it, `id` the queue id,
    /// and `date` the time of receipt (passed in: the session never reads the clock).
    ///
    /// It describes the transaction in progress, so call it between
    /// [`Event::DataStart`] and the answer to [`Event::MessageEnd`] (typically when
    /// accepting `DataStart`, before the first [`Event::MessageData`]); the transaction
    /// ends with that answer or with [`Event::MessageAborted`].
    #[must_use]
    pub fn received_header(&self, peer: std::net::IpAddr, id: &str, date: SystemTime) -> String {
        let helo = self.helo.as_ref().map_or("unknown", |h| h.name.as_str());
        let esmtp = self.helo.as_ref().is_some_and(|h| h.extended);
        let utf8 = self.txn.as_ref().is_some_and(|t| t.smtputf8);
        let mut proto = String::from(match (utf8, esmtp) {
            (true, _) => "UTF8SMTP",
            (false, true) => "ESMTP",
            (false, false) => "SMTP",
        });
        if self.tls.is_some() && esmtp {
            proto.push('S');
        }
        if self.authenticated.is_some() && esmtp {
            proto.push('A');
        }
        let mut h = format!(
            "Received: from {} ({})\r\n\tby {} with {}",
            clean(helo),
            match peer {
                std::net::IpAddr::V4(ip) => format!("[{ip}]"),
                std::net::IpAddr::V6(ip) => format!("[IPv6:{ip}]"),
            },
            clean(&self.config.hostname),
            proto
        );
        if let Some(tls) = &self.tls {
            h.push_str(&format!(" ({} {})", clean(&tls.protocol), clean(&tls.cipher_suite)));
        }
        h.push_str(&format!(" id {}", clean(id)));
        if let Some(t) = &self.txn
            && t.recipients == 1
            && let Some(rcpt) = &t.first_recipient
        {
            h.push_str(&format!("\r\n\tfor <{}>", clean(&rcpt.to_string())));
        }
        h.push_str(&format!(";\r\n\t{}\r\n", rfc5322_date(date)));
        h
    }

    // ----- internals -----------------------------------------------------------------

    fn greet(&mut self) {
        let c = &self.config;
        Reply::plain(220, format!("{} {}", c.hostname, c.greeting_text)).write_to(&mut self.out);
        self.greeting_unsent = true;
        self.phase = Phase::Command;
        self.command_deadline();
        // Early-talker bytes kept under `EarlyTalkerPolicy::Report` run now.
        self.resume();
    }

    fn refuse_early_talker(&mut self) {
        line::wipe(&mut self.inbuf);
        self.close(
            Some(r(554, (5, 5, 1), "Error: protocol error, talking before the greeting")),
            CloseReason::Violation,
        );
    }

    fn command_deadline(&mut self) {
        self.deadline = Some(self.now + self.config.limits.command_timeout);
    }

    fn extend_data_deadline(&mut self, n: usize, now: Instant) {
        let limits = &self.config.limits;
        let cap = now + limits.data_timeout;
        self.deadline = Some(match (limits.min_data_rate, self.deadline) {
            (Some(rate), Some(old)) if rate > 0 => {
                let earned = Duration::from_secs_f64(n as f64 / f64::from(rate));
                (old + earned).min(cap)
            }
            _ => cap,
        });
    }

    fn violation(&mut self, v: Violation) {
        self.events.push_back(Event::Violation(v));
    }

    /// Queues a reply of the session's own; a negative one is reported with
    /// [`Event::Refused`].
    fn send(&mut self, reply: Reply) {
        if reply.is_negative() {
            self.events.push_back(Event::Refused { command: self.verb, reply: reply.clone() });
        }
        self.queue(reply);
    }

    /// Queues a reply; negative replies count towards the error limit.
    fn queue(&mut self, reply: Reply) {
        reply.write_to(&mut self.out);
        if reply.code() == 421 {
            self.close(None, CloseReason::Rejected);
            return;
        }
        if reply.is_negative() {
            self.errors = self.errors.saturating_add(1);
            if self.errors >= self.config.limits.errors {
                self.violation(Violation::TooManyErrors);
                self.close(Some(r(421, (4, 7, 0), "Error: too many errors")), CloseReason::Violation);
            }
        }
    }

    fn close(&mut self, reply: Option<Reply>, reason: CloseReason) {
        if self.is_closed() {
            return;
        }
        self.abort_message(AbortReason::ConnectionLost);
        self.flush_body();
        if let Some(reply) = reply {
            reply.write_to(&mut self.out);
        }
        self.phase = Phase::Closed;
        self.pending = None;
        line::wipe(&mut self.inbuf);
        self.deadline = None;
        self.close_reason = Some(reason);
        self.events.push_back(Event::Closed(reason));
    }

    /// Emits `MessageAborted` if a message is in flight and not already aborted.
    fn abort_message(&mut self, reason: AbortReason) {
        let in_flight = match &mut self.phase {
            Phase::Data(d) => d.aborted.replace(reason).is_none(),
            Phase::Bdat(_) => self
                .txn
                .as_mut()
                .and_then(|t| t.bdat.as_mut())
                .is_some_and(|b| !b.failed && b.aborted.replace(reason).is_none()),
            _ => {
                matches!(self.pending, Some(Pending::MessageEnd))
                    || self
                        .txn
                        .as_ref()
                        .and_then(|t| t.bdat.as_ref())
                        .is_some_and(|b| !b.failed && b.aborted.is_none())
            }
        };
        if in_flight {
            self.body.clear();
            self.events.push_back(Event::MessageAborted(reason));
        }
    }

    fn flush_body(&mut self) {
        if !self.body.is_empty() {
            let body = std::mem::take(&mut self.body);
            self.events.push_back(Event::MessageData(Bytes::from(body)));
        }
    }

    /// The command whose reply the client must wait for, while its decision is pending:
    /// EHLO/HELO and DATA always (RFC 2920 §3.1), and any command while PIPELINING has
    /// not been negotiated.
    fn pending_must_be_last(&self) -> Option<&'static str> {
        let negotiated = self.helo.as_ref().is_some_and(|h| h.extended);
        match self.pending.as_ref()? {
            Pending::Helo(h) => Some(if h.extended { "EHLO" } else { "HELO" }),
            Pending::DataStart { bdat: None } => Some("DATA"),
            _ if negotiated => None,
            Pending::Mail(_) => Some("MAIL"),
            Pending::Rcpt => Some("RCPT"),
            Pending::DataStart { bdat: Some(_) } => Some("BDAT"),
            Pending::MessageEnd => Some("end of data"),
            Pending::Auth => Some("AUTH"),
        }
    }

    fn pipelining_allowed_anyway(&self) -> bool {
        !self.config.forbid_unauth_pipelining || self.authenticated.is_some()
    }

    fn pipelining_violation(&mut self, after: &'static str) {
        self.violation(Violation::Pipelining { after });
        self.close(Some(r(554, (5, 5, 0), "Error: SMTP protocol synchronization")), CloseReason::Violation);
    }

    fn check_pending(&self, ok: impl Fn(&Pending) -> bool) -> Result<(), Error> {
        match &self.pending {
            _ if self.is_closed() => Err(Error::Closed),
            None => Err(Error::NoPendingDecision),
            Some(p) if ok(p) => Ok(()),
            Some(_) => Err(Error::WrongDecision),
        }
    }

    fn end_auth(&mut self) {
        self.framer.set_max_line(self.command_line_limit());
        if matches!(self.phase, Phase::AuthResponse) {
            self.phase = Phase::Command;
        }
    }

    /// The command-line cap with the allowances of advertised extensions.
    fn command_line_limit(&self) -> usize {
        let mut cap = self.config.limits.command_line;
        if self.helo.as_ref().is_some_and(|h| h.extended) {
            cap += 26; // SIZE
            if self.config.dsn {
                cap += 600; // ORCPT and ENVID
            }
            if !self.config.auth_mechanisms.is_empty() {
                cap += 500; // AUTH=
            }
        }
        cap
    }

    fn decide(&mut self, positive: bool, reply: Option<Reply>) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let Some(pending) = self.pending.take() else { return Err(Error::NoPendingDecision) };
        if let Some(reply) = &reply {
            let fits = match (&pending, positive) {
                (_, false) => reply.is_negative(),
                (Pending::DataStart { bdat: None }, true) => reply.code() == 354,
                // BDAT has no intermediate reply to customise.
                (Pending::DataStart { bdat: Some(_) }, true) => false,
                (Pending::Auth, true) => false,
                (_, true) => (200..300).contains(&reply.code()),
            };
            if !fits {
                self.pending = Some(pending);
                return Err(Error::InvalidReply);
            }
        }
        if positive && matches!(pending, Pending::Auth) {
            self.pending = Some(pending);
            return Err(Error::WrongDecision);
        }
        match pending {
            Pending::Helo(helo) => {
                if positive {
                    let reply = reply.unwrap_or_else(|| self.helo_reply(helo.extended));
                    reply.write_to(&mut self.out);
                    self.helo = Some(helo);
                    self.txn = None;
                    self.framer.set_max_line(self.command_line_limit());
                } else if let Some(reply) = reply {
                    self.queue(reply);
                }
            }
            Pending::Mail(mail) => {
                if positive {
                    self.txn = Some(Transaction {
                        smtputf8: mail.smtputf8,
                        recipients: 0,
                        first_recipient: None,
                        pending_recipient: None,
                        bdat: None,
                    });
                    self.send(reply.unwrap_or_else(|| r(250, (2, 1, 0), "Sender ok")));
                } else if let Some(reply) = reply {
                    self.queue(reply);
                }
            }
            Pending::Rcpt => {
                let rcpt = self.txn.as_mut().and_then(|t| t.pending_recipient.take());
                if positive {
                    if let Some(t) = self.txn.as_mut() {
                        t.recipients += 1;
                        if t.first_recipient.is_none() {
                            t.first_recipient = rcpt;
                        }
                    }
                    self.send(reply.unwrap_or_else(|| r(250, (2, 1, 5), "Recipient ok")));
                } else if let Some(reply) = reply {
                    self.queue(reply);
                }
            }
            Pending::DataStart { bdat: None } => {
                if positive {
                    self.send(reply.unwrap_or_else(|| {
                        Reply::new(354, S::new(2, 0, 0), "End data with <CR><LF>.<CR><LF>")
                    }));
                    let rx = DataReceiver::new(self.config.bare_line_ending, self.config.limits.text_line);
                    self.phase = Phase::Data(Box::new(DataState { rx, aborted: None }));
                    self.deadline = Some(self.now + self.config.limits.data_timeout);
                } else if let Some(reply) = reply {
                    self.queue(reply);
                    // Body bytes already pipelined after a refused DATA must never run
                    // as commands.
                    if !self.inbuf.is_empty() {
                        self.violation(Violation::DataAfterRefusedData);
                        self.close(None, CloseReason::Violation);
                    }
                }
            }
            Pending::DataStart { bdat: Some((size, last)) } => {
                let refused = if positive { None } else { reply };
                if let Some(reply) = refused.as_ref().filter(|r| r.code() == 421) {
                    // Closing now: no need to make the client send the chunk first.
                    self.queue(reply.clone());
                    return Ok(());
                }
                if let Some(t) = self.txn.as_mut() {
                    t.bdat = Some(Box::new(BdatState {
                        rx: BdatReceiver::new(self.config.bare_line_ending, self.config.limits.text_line),
                        aborted: None,
                        failed: refused.is_some(),
                    }));
                }
                self.start_chunk(size, last, refused);
            }
            Pending::MessageEnd => {
                if positive {
                    self.errors = 0;
                    self.junk = 0;
                    self.send(reply.unwrap_or_else(|| r(250, (2, 0, 0), "Ok: message accepted")));
                } else if let Some(reply) = reply {
                    self.queue(reply);
                }
                self.txn = None;
            }
            Pending::Auth => {
                // Only `reject` gets here (accept was refused above).
                self.end_auth();
                self.auth_failures = self.auth_failures.saturating_add(1);
                if self.auth_failures >= self.config.limits.auth_failures {
                    self.violation(Violation::TooManyAuthFailures);
                    self.close(
                        Some(r(421, (4, 7, 0), "Error: too many failed authentication attempts")),
                        CloseReason::Violation,
                    );
                } else if let Some(reply) = reply {
                    self.queue(reply);
                }
            }
        }
        if !self.is_closed() && !matches!(self.phase, Phase::Data(_) | Phase::Bdat(_)) {
            self.command_deadline();
        }
        self.resume();
        Ok(())
    }

    fn helo_reply(&self, extended: bool) -> Reply {
        let c = &self.config;
        let mut reply = Reply::plain(250, c.hostname.clone());
        if !extended {
            return reply;
        }
        reply = reply
            .with_line("PIPELINING")
            .with_line(format!("SIZE {}", c.limits.message_size))
            .with_line("8BITMIME")
            .with_line("ENHANCEDSTATUSCODES");
        if c.smtputf8 {
            reply = reply.with_line("SMTPUTF8");
        }
        if c.chunking {
            reply = reply.with_line("CHUNKING");
        }
        if c.dsn {
            reply = reply.with_line("DSN");
        }
        if c.starttls && self.tls.is_none() {
            reply = reply.with_line("STARTTLS");
        }
        if self.auth_allowed() && self.authenticated.is_none() {
            let offered: Vec<&str> = self.offered_mechanisms().collect();
            reply = reply.with_line(format!("AUTH {}", offered.join(" ")));
        }
        if c.requiretls && self.tls.is_some() {
            reply = reply.with_line("REQUIRETLS");
        }
        reply
    }

    /// The configured mechanisms usable on this connection: channel-bound `-PLUS`
    /// mechanisms (RFC 5056 naming) and `EXTERNAL` only over TLS.
    fn offered_mechanisms(&self) -> impl Iterator<Item = &str> {
        let tls = self.tls.is_some();
        self.config.auth_mechanisms.iter().map(String::as_str).filter(move |m| {
            tls || !(m.to_ascii_uppercase().ends_with("-PLUS") || m.eq_ignore_ascii_case("EXTERNAL"))
        })
    }

    fn auth_allowed(&self) -> bool {
        !self.config.auth_mechanisms.is_empty() && (self.tls.is_some() || self.config.allow_plaintext_auth)
    }

    fn start_chunk(&mut self, size: u64, last: bool, refused: Option<Reply>) {
        if let Some(b) = self.txn.as_mut().and_then(|t| t.bdat.as_mut()) {
            b.rx.start_chunk(size);
        }
        self.phase = Phase::Bdat(BdatChunk { last, total: size, size, refused });
        self.deadline = Some(self.now + self.config.limits.data_timeout);
        if size == 0 {
            // Nothing to read (`BDAT 0 LAST`): the chunk is complete now.
            self.after_bdat(true);
        }
    }

    /// Processes buffered input after a decision or phase change.
    fn resume(&mut self) {
        if self.inbuf.is_empty() || self.pending.is_some() {
            return;
        }
        let buf = std::mem::take(&mut self.inbuf);
        let used = self.process(&buf);
        let mut buf = buf;
        if self.is_closed() {
            line::wipe(&mut buf);
            return;
        }
        line::consume_wiping(&mut buf, used);
        self.inbuf = buf;
        self.flush_body();
    }

    /// Processes as much of `input` as possible; returns how much was consumed.
    fn process(&mut self, input: &[u8]) -> usize {
        let mut pos = 0;
        while pos < input.len() && self.pending.is_none() {
            let rest = input.get(pos..).unwrap_or_default();
            match &mut self.phase {
                Phase::Command | Phase::AuthResponse => {
                    let (used, framed) = self.framer.decode(rest);
                    pos += used;
                    let remaining = input.len() - pos;
                    match framed {
                        Framed::Partial => {
                            if used == 0 {
                                break;
                            }
                        }
                        Framed::Line(line) => self.handle_line(line, remaining),
                        Framed::Error(e) => self.line_error(e),
                    }
                }
                Phase::Data(d) => {
                    let (used, done) = d.rx.ingest(rest, &mut self.body);
                    pos += used;
                    self.after_data(done);
                }
                Phase::Bdat(chunk) => {
                    let (used, done) = match self.txn.as_mut().and_then(|t| t.bdat.as_mut()) {
                        Some(b) if chunk.refused.is_none() => b.rx.ingest(rest, &mut self.body),
                        _ => {
                            // Swallow a refused chunk without keeping it.
                            let take = usize::try_from(chunk.size).unwrap_or(usize::MAX).min(rest.len());
                            chunk.size -= take as u64;
                            (take, chunk.size == 0)
                        }
                    };
                    pos += used;
                    self.after_bdat(done);
                }
                Phase::Greeting | Phase::TlsHandshake | Phase::Closed => break,
            }
            if self.is_closed() {
                return input.len();
            }
        }
        pos
    }

    fn line_error(&mut self, e: LineError) {
        self.verb = "command line";
        if matches!(self.phase, Phase::AuthResponse) {
            self.end_auth();
            self.events.push_back(Event::AuthAborted);
            self.send(r(501, (5, 5, 2), "Error: invalid authentication response"));
            return;
        }
        match e {
            LineError::TooLong => {
                self.violation(Violation::LineTooLong);
                self.send(r(500, (5, 5, 2), "Error: line too long"));
            }
            LineError::BareLf | LineError::BareCr => {
                self.violation(Violation::BareLineEndingInCommand);
                self.send(r(500, (5, 5, 2), "Error: bare <CR> or <LF> received"));
            }
        }
    }

    fn handle_line(&mut self, line: &[u8], remaining: usize) {
        if matches!(self.phase, Phase::AuthResponse) {
            self.auth_response(line);
            return;
        }
        self.command_deadline();
        let cmd = match Command::parse(line) {
            Ok(cmd) => {
                self.verb = verb(&cmd);
                cmd
            }
            Err(e) => {
                self.verb = "unparsable command";
                let (code, status) = e.reply_code();
                let text = match e {
                    ParseError::UnknownCommand => "Error: command not recognized",
                    ParseError::InvalidUtf8 => "Error: command is not valid UTF-8",
                    ParseError::Syntax => "Error: syntax error in parameters or arguments",
                    ParseError::BadAddress => "Error: bad address syntax",
                    ParseError::AddressTooLong => "Error: address too long",
                    _ => "Error: unrecognized or invalid parameter",
                };
                self.send(Reply::new(code, status, text));
                return;
            }
        };
        if remaining > 0 && !matches!(cmd, Command::Quit) {
            if matches!(cmd, Command::StartTls) && self.starttls_offered() {
                self.violation(Violation::StartTlsInjection { dropped: remaining });
                self.close(
                    Some(r(554, (5, 5, 0), "Error: command pipelined after STARTTLS")),
                    CloseReason::Violation,
                );
                return;
            }
            let negotiated = self.helo.as_ref().is_some_and(|h| h.extended);
            let after = must_be_last(&cmd).or(if negotiated { None } else { Some(verb(&cmd)) });
            if let Some(after) = after
                && !self.pipelining_allowed_anyway()
            {
                self.pipelining_violation(after);
                return;
            }
        }
        self.pipelined = remaining;
        if self.refused && !matches!(cmd, Command::Quit) {
            let reply = r(503, (5, 5, 1), "Error: service unavailable, send QUIT");
            match cmd {
                // The chunk that follows is data, never commands.
                Command::Bdat { size, last } => self.start_chunk(size, last, Some(reply)),
                _ => self.send(reply),
            }
            return;
        }
        self.command(cmd);
    }

    fn starttls_offered(&self) -> bool {
        self.config.starttls && self.tls.is_none()
    }

    /// Counts a junk command; past the junk limit each one also counts as an error
    /// (Postfix's `smtpd_junk_command_limit`). Returns `true` if the session closed.
    fn junk(&mut self) -> bool {
        self.junk = self.junk.saturating_add(1);
        if self.junk > self.config.limits.junk_commands {
            self.errors = self.errors.saturating_add(1);
            if self.errors >= self.config.limits.errors {
                self.violation(Violation::TooManyJunkCommands);
                self.close(Some(r(421, (4, 7, 0), "Error: too many junk commands")), CloseReason::Violation);
                return true;
            }
        }
        false
    }

    fn reset_transaction(&mut self) {
        if let Some(txn) = self.txn.take() {
            if txn.bdat.is_some_and(|b| !b.failed && b.aborted.is_none()) {
                self.body.clear();
                self.events.push_back(Event::MessageAborted(AbortReason::Reset));
            }
            self.events.push_back(Event::Reset);
        }
    }

    fn command(&mut self, cmd: Command<'_>) {
        match cmd {
            Command::Helo(name) | Command::Ehlo(name) => {
                let extended = matches!(cmd, Command::Ehlo(_));
                self.reset_transaction();
                let helo = Helo { name: name.to_owned(), extended };
                self.events.push_back(Event::Helo(helo.clone()));
                self.pending = Some(Pending::Helo(helo));
            }
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to, params } => self.rcpt(to, params),
            Command::Data => {
                if let Some(reply) = self.data_precondition(false) {
                    self.send(reply);
                    // Whatever was pipelined after a refused DATA is the message body: it
                    // must never run as commands, whoever the client is.
                    if self.pipelined > 0 && !self.is_closed() {
                        self.violation(Violation::DataAfterRefusedData);
                        self.close(None, CloseReason::Violation);
                    }
                    return;
                }
                self.events.push_back(Event::DataStart { chunking: false });
                self.pending = Some(Pending::DataStart { bdat: None });
            }
            Command::Bdat { size, last } => self.bdat(size, last),
            Command::Rset => {
                if self.junk() {
                    return;
                }
                self.reset_transaction();
                self.send(r(250, (2, 0, 0), "Ok"));
            }
            Command::Noop => {
                if !self.junk() {
                    self.send(r(250, (2, 0, 0), "Ok"));
                }
            }
            Command::Quit => {
                self.reset_transaction();
                let text = format!("{} closing connection", self.config.hostname);
                Reply::new(221, S::new(2, 0, 0), text).write_to(&mut self.out);
                self.close(None, CloseReason::Quit);
            }
            Command::Vrfy(_) | Command::Expn(_) => {
                if self.junk() {
                    return;
                }
                let policy =
                    if matches!(cmd, Command::Vrfy(_)) { self.config.vrfy } else { self.config.expn };
                self.send(match policy {
                    VerifyPolicy::CannotVerify => {
                        r(252, (2, 5, 0), "Cannot verify the user, but will accept the message")
                    }
                    _ => r(502, (5, 5, 1), "Error: command not implemented"),
                });
            }
            Command::Help(_) => {
                if !self.junk() {
                    self.send(r(214, (2, 0, 0), "See https://www.rfc-editor.org/rfc/rfc5321"));
                }
            }
            Command::StartTls => {
                if self.tls.is_some() {
                    self.send(r(503, (5, 5, 1), "Error: TLS already active"));
                } else if !self.config.starttls {
                    self.send(r(502, (5, 5, 1), "Error: command not implemented"));
                } else {
                    self.reset_transaction();
                    Reply::new(220, S::new(2, 0, 0), "Ready to start TLS").write_to(&mut self.out);
                    self.phase = Phase::TlsHandshake;
                    self.events.push_back(Event::StartTls);
                }
            }
            Command::Auth { mechanism, initial_response } => self.auth(mechanism, initial_response),
        }
    }

    fn mail(&mut self, from: ReversePath<'_>, p: super::command::MailParameters<'_>) {
        let Some(helo) = &self.helo else {
            self.send(r(503, (5, 5, 1), "Error: send HELO/EHLO first"));
            return;
        };
        let esmtp = helo.extended;
        if self.txn.is_some() {
            self.send(r(503, (5, 5, 1), "Error: nested MAIL command"));
            return;
        }
        if self.config.require_auth && self.authenticated.is_none() {
            self.send(r(530, (5, 7, 0), "Authentication required"));
            return;
        }
        if self.config.auth_mechanisms.is_empty() && p.auth.is_some()
            || !esmtp && p != Default::default()
            || !self.config.smtputf8 && p.smtputf8
            || !self.config.dsn && (p.ret.is_some() || p.envid.is_some())
            || p.requiretls && !(self.config.requiretls && self.tls.is_some())
            || p.body == Some(super::command::Body::BinaryMime)
        {
            self.send(r(555, (5, 5, 4), "Error: unsupported MAIL parameter"));
            return;
        }
        if let Some(size) = p.size
            && size > self.config.limits.message_size
        {
            self.send(r(552, (5, 3, 4), "Error: message size exceeds fixed maximum message size"));
            return;
        }
        let from = match from {
            ReversePath::Null => None,
            ReversePath::Mailbox(m) => Some(Address::from_mailbox(&m)),
        };
        if from.as_ref().is_some_and(Address::is_utf8) && !p.smtputf8 {
            self.violation(Violation::Utf8WithoutSmtputf8);
            self.send(r(553, (5, 6, 7), "Error: non-ASCII address requires SMTPUTF8"));
            return;
        }
        let envid = match p.envid.map(decode_xtext) {
            Some(None) => return self.send(r(501, (5, 5, 4), "Error: invalid ENVID")),
            Some(Some(v)) => Some(v),
            None => None,
        };
        let auth = match p.auth.map(decode_xtext) {
            Some(None) => return self.send(r(501, (5, 5, 4), "Error: invalid AUTH parameter")),
            Some(Some(v)) => Some(v),
            None => None,
        };
        let mail = MailFrom {
            from,
            size: p.size,
            body: p.body,
            smtputf8: p.smtputf8,
            requiretls: p.requiretls,
            ret: p.ret,
            envid,
            auth,
        };
        self.events.push_back(Event::Mail(mail.clone()));
        self.pending = Some(Pending::Mail(mail));
    }

    fn rcpt(&mut self, to: ForwardPath<'_>, p: super::command::RcptParameters<'_>) {
        let esmtp = self.helo.as_ref().is_some_and(|h| h.extended);
        let Some(txn) = &self.txn else {
            self.send(r(503, (5, 5, 1), "Error: need MAIL command"));
            return;
        };
        if txn.bdat.is_some() {
            self.send(r(503, (5, 5, 1), "Error: RCPT after BDAT"));
            return;
        }
        if txn.recipients >= self.config.limits.recipients {
            self.send(r(452, (4, 5, 3), "Error: too many recipients"));
            return;
        }
        if (!esmtp || !self.config.dsn) && p != Default::default() {
            self.send(r(555, (5, 5, 4), "Error: unsupported RCPT parameter"));
            return;
        }
        let to = match to {
            ForwardPath::Postmaster => Address::new("Postmaster", ""),
            ForwardPath::Mailbox(m) => Address::from_mailbox(&m),
        };
        if to.is_utf8() && !txn.smtputf8 {
            self.violation(Violation::Utf8WithoutSmtputf8);
            self.send(r(553, (5, 6, 7), "Error: non-ASCII address requires SMTPUTF8"));
            return;
        }
        let orcpt = match p.orcpt {
            Some((kind, xtext)) => match decode_xtext(xtext) {
                Some(v) => Some((kind.to_owned(), v)),
                None => return self.send(r(501, (5, 5, 4), "Error: invalid ORCPT")),
            },
            None => None,
        };
        if let Some(t) = self.txn.as_mut() {
            t.pending_recipient = Some(to.clone());
        }
        self.events.push_back(Event::Rcpt(RcptTo { to, notify: p.notify, orcpt }));
        self.pending = Some(Pending::Rcpt);
    }

    /// Why DATA/BDAT cannot start now, if it cannot.
    fn data_precondition(&self, bdat: bool) -> Option<Reply> {
        if bdat && (!self.config.chunking || !self.helo.as_ref().is_some_and(|h| h.extended)) {
            return Some(r(502, (5, 5, 1), "Error: command not implemented"));
        }
        let Some(txn) = &self.txn else {
            return Some(r(503, (5, 5, 1), "Error: need MAIL command"));
        };
        if !bdat && txn.bdat.is_some() {
            return Some(r(503, (5, 5, 1), "Error: DATA after BDAT"));
        }
        if txn.recipients == 0 {
            return Some(r(554, (5, 5, 1), "Error: no valid recipients"));
        }
        None
    }

    fn bdat(&mut self, size: u64, last: bool) {
        if let Some(reply) = self.data_precondition(true) {
            // RFC 3030 §2: the chunk is read (and thrown away) even when refused.
            self.start_chunk(size, last, Some(reply));
            return;
        }
        let failed = self.txn.as_ref().and_then(|t| t.bdat.as_ref()).map(|b| b.failed);
        match failed {
            None => {
                self.events.push_back(Event::DataStart { chunking: true });
                self.pending = Some(Pending::DataStart { bdat: Some((size, last)) });
            }
            Some(true) => {
                self.start_chunk(
                    size,
                    last,
                    Some(r(503, (5, 5, 1), "Error: earlier BDAT failed, send RSET")),
                );
            }
            Some(false) => self.start_chunk(size, last, None),
        }
    }

    fn auth(&mut self, mechanism: &str, initial: Option<&str>) {
        if self.authenticated.is_some() {
            return self.send(r(503, (5, 5, 1), "Error: already authenticated"));
        }
        if !self.helo.as_ref().is_some_and(|h| h.extended) {
            return self.send(r(503, (5, 5, 1), "Error: send EHLO first"));
        }
        if self.txn.is_some() {
            return self.send(r(503, (5, 5, 1), "Error: AUTH not permitted during a mail transaction"));
        }
        if self.config.auth_mechanisms.is_empty() {
            return self.send(r(502, (5, 5, 1), "Error: command not implemented"));
        }
        if !self.auth_allowed() {
            return self.send(r(
                538,
                (5, 7, 11),
                "Error: encryption required for requested authentication mechanism",
            ));
        }
        let Some(mech) = self.offered_mechanisms().find(|m| m.eq_ignore_ascii_case(mechanism)) else {
            return self.send(r(504, (5, 5, 4), "Error: unrecognized authentication type"));
        };
        let mechanism = mech.to_ascii_uppercase();
        let initial_response = match initial.map(|i| sasl_wire::decode_line(i.as_bytes(), true)) {
            None => None,
            Some(SaslLine::Data(d)) => Some(d),
            Some(_) => return self.send(r(501, (5, 5, 2), "Error: invalid base64 in initial response")),
        };
        self.events.push_back(Event::Auth(AuthStart { mechanism, initial_response }));
        self.pending = Some(Pending::Auth);
    }

    fn auth_response(&mut self, line: &[u8]) {
        match sasl_wire::decode_line(line, false) {
            SaslLine::Data(d) => {
                self.events.push_back(Event::AuthResponse(d));
                self.pending = Some(Pending::Auth);
            }
            SaslLine::Cancel => {
                self.end_auth();
                self.events.push_back(Event::AuthAborted);
                self.send(r(501, (5, 0, 0), "Authentication cancelled"));
            }
            SaslLine::Invalid => {
                self.end_auth();
                self.events.push_back(Event::AuthAborted);
                self.send(r(501, (5, 5, 2), "Error: invalid base64 in response"));
            }
        }
    }

    /// After DATA input: size and policy checks, and the end of the message.
    fn after_data(&mut self, done: bool) {
        let Phase::Data(d) = &mut self.phase else { return };
        let (v, size) = (d.rx.violations(), d.rx.message_size());
        if !d.rx.is_discarding() && self.doom_reason(v, size).is_some() {
            if let Phase::Data(d) = &mut self.phase {
                d.rx.set_discard();
            }
            // Nothing more reaches the application; the reason and the reply are decided
            // at the end of the message, from the final counts, so that they never depend
            // on how the input was split.
            self.body.clear();
        }
        if !done {
            return;
        }
        let Phase::Data(d) = std::mem::replace(&mut self.phase, Phase::Command) else { return };
        self.finish_message(d.aborted.is_some(), d.rx.violations(), d.rx.message_size());
    }

    fn after_bdat(&mut self, done: bool) {
        let Phase::Bdat(chunk) = &self.phase else { return };
        let refused = chunk.refused.is_some();
        let last = chunk.last;
        if !refused && let Some(b) = self.txn.as_ref().and_then(|t| t.bdat.as_ref()) {
            let (v, size) = (b.rx.violations(), b.rx.message_size());
            if !b.rx.is_discarding() && self.doom_reason(v, size).is_some() {
                if let Some(b) = self.txn.as_mut().and_then(|t| t.bdat.as_mut()) {
                    b.rx.set_discard();
                }
                self.body.clear();
            }
        }
        if !done {
            return;
        }
        let Phase::Bdat(chunk) = std::mem::replace(&mut self.phase, Phase::Command) else { return };
        self.command_deadline();
        if let Some(reply) = chunk.refused {
            self.send(reply);
            return;
        }
        let Some(b) = self.txn.as_mut().and_then(|t| t.bdat.as_mut()) else { return };
        if !last {
            let text = format!("Ok: {} octets received", chunk.total);
            self.send(Reply::new(250, S::new(2, 0, 0), text));
            return;
        }
        // `finish` may find a trailing bare CR.
        b.rx.finish(&mut self.body);
        let (aborted, v, size) = (b.aborted.is_some(), b.rx.violations(), b.rx.message_size());
        self.finish_message(aborted, v, size);
    }

    /// Why a message must be refused, from its counts. The order is fixed (bare line
    /// endings, then size, then line length), so the same message always gets the same
    /// reply.
    fn doom_reason(&self, v: DataViolations, size: u64) -> Option<AbortReason> {
        if self.config.bare_line_ending == BareLineEnding::Reject && (v.bare_lf > 0 || v.bare_cr > 0) {
            Some(AbortReason::BareLineEnding)
        } else if size > self.config.limits.message_size {
            Some(AbortReason::TooLarge)
        } else if v.long_lines > 0 {
            Some(AbortReason::LineTooLong)
        } else {
            None
        }
    }

    /// The end of a message: refuse it (reporting why) or ask the application.
    /// `aborted` is `true` if [`Event::MessageAborted`] was already reported.
    fn finish_message(&mut self, aborted: bool, v: DataViolations, size: u64) {
        self.command_deadline();
        let bare = v.bare_lf > 0 || v.bare_cr > 0;
        if let Some(reason) = self.doom_reason(v, size) {
            self.body.clear();
            self.txn = None;
            if reason == AbortReason::BareLineEnding {
                self.violation(Violation::BareLineEndingInData {
                    bare_lf: v.bare_lf,
                    bare_cr: v.bare_cr,
                    normalized: false,
                });
            }
            if !aborted {
                self.events.push_back(Event::MessageAborted(reason));
            }
            self.send(match reason {
                AbortReason::TooLarge => {
                    r(552, (5, 3, 4), "Error: message size exceeds fixed maximum message size")
                }
                AbortReason::BareLineEnding => {
                    r(550, (5, 5, 2), "Error: bare <CR> or <LF> in message data (RFC 5321 section 2.3.8)")
                }
                _ => r(550, (5, 6, 0), "Error: message has lines that are too long"),
            });
            return;
        }
        self.flush_body();
        if bare {
            self.violation(Violation::BareLineEndingInData {
                bare_lf: v.bare_lf,
                bare_cr: v.bare_cr,
                normalized: true,
            });
        }
        let recipients = self.txn.as_ref().map_or(0, |t| t.recipients);
        self.events.push_back(Event::MessageEnd(MessageEnd { size, recipients, normalized: bare }));
        self.pending = Some(Pending::MessageEnd);
    }
}

/// Keeps header text to printable characters.
fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Formats `date` as an RFC 5322 date-time in UTC.
fn rfc5322_date(date: SystemTime) -> String {
    let secs = date.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let wd = DAYS.get((days % 7) as usize).copied().unwrap_or("Thu");
    let mon = MONTHS.get((month - 1) as usize).copied().unwrap_or("Jan");
    format!("{wd}, {d} {mon} {year} {h:02}:{m:02}:{s:02} +0000")
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("phase", &self.phase)
            .field("pending", &self.pending)
            .field("helo", &self.helo)
            .field("tls", &self.tls)
            .field("authenticated", &self.authenticated)
            .field("buffered", &self.inbuf.len())
            .field("close_reason", &self.close_reason)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a real Instant is the base of the virtual clock
mod tests {
    use super::*;

    fn session(config: Config) -> (Session, Instant) {
        let now = Instant::now();
        let mut s = Session::new(Arc::new(config), now);
        let mut greeting = Vec::new();
        s.poll_transmit(&mut greeting);
        (s, now)
    }

    /// Sends `input`, accepts every decision, returns what the server wrote.
    fn talk(s: &mut Session, input: &[u8], now: Instant) -> String {
        s.receive(input, now);
        while let Some(e) = s.poll_event() {
            match e {
                Event::Helo(_)
                | Event::Mail(_)
                | Event::Rcpt(_)
                | Event::DataStart { .. }
                | Event::MessageEnd(_) => s.accept().unwrap(),
                _ => {}
            }
        }
        let mut out = Vec::new();
        s.poll_transmit(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn reply_code_paths() {
        // (setup commands, command, expected reply prefix)
        let cases: &[(&[&str], &str, &str)] = &[
            (&[], "MAIL FROM:<a@b>", "503 5.5.1"),
            (&["EHLO x"], "RCPT TO:<a@b>", "503 5.5.1"),
            (&["EHLO x"], "DATA", "503 5.5.1"),
            (&["EHLO x", "MAIL FROM:<a@b>"], "DATA", "554 5.5.1"),
            (&["EHLO x", "MAIL FROM:<a@b>"], "MAIL FROM:<a@b>", "503 5.5.1"),
            (&["EHLO x"], "MAIL FROM:<a@b> SIZE=999999999", "552 5.3.4"),
            (&["EHLO x"], "MAIL FROM:<a@b> BODY=BINARYMIME", "555 5.5.4"),
            (&["EHLO x"], "MAIL FROM:<a@b> REQUIRETLS", "555 5.5.4"),
            (&["HELO x"], "MAIL FROM:<a@b> SIZE=10", "555 5.5.4"),
            (&["EHLO x"], "MAIL FROM:<δ@b>", "553 5.6.7"),
            (&["EHLO x"], "MAIL FROM:<δ@b> SMTPUTF8", "250 2.1.0"),
            (&["EHLO x", "MAIL FROM:<a@b>"], "RCPT TO:<δ@b>", "553 5.6.7"),
            (&["EHLO x"], "VRFY bob", "252 2.5.0"),
            (&["EHLO x"], "EXPN list", "502 5.5.1"),
            (&["EHLO x"], "HELP", "214 2.0.0"),
            (&["EHLO x"], "NOOP", "250 2.0.0"),
            (&["EHLO x"], "RSET", "250 2.0.0"),
            (&["EHLO x"], "STARTTLS", "502 5.5.1"),
            (&["EHLO x"], "AUTH PLAIN", "502 5.5.1"),
            (&[], "AUTH PLAIN", "503 5.5.1"),
            (&["EHLO x"], "BOGUS", "500 5.5.1"),
            (&["EHLO x"], "MAIL FROM:a@b", "501"),
            (&["EHLO x"], "BDAT 3 LAST\r\nabc", "503 5.5.1"),
            (&["HELO x"], "BDAT 2 LAST\\r\\nab", "554 5.5.0"),
            (&["EHLO x"], "BDAT 2 LAST\\r\\nab", "503 5.5.1"),
            (&["EHLO x"], "QUIT", "221 2.0.0"),
        ];
        let mut submission = Config::new("mx.test");
        submission.require_auth = true;
        let (mut s, now) = session(submission);
        talk(&mut s, b"EHLO x\r\n", now);
        assert!(talk(&mut s, b"MAIL FROM:<a@b>\r\n", now).starts_with("530 5.7.0"));
        for (setup, cmd, want) in cases {
            let (mut s, now) = session(Config::new("mx.test"));
            for line in *setup {
                talk(&mut s, format!("{line}\r\n").as_bytes(), now);
            }
            let cmd = cmd.replace("\\r\\n", "\r\n");
            let got = talk(&mut s, format!("{cmd}\r\n").as_bytes(), now);
            assert!(got.starts_with(want), "{setup:?} then {cmd:?}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn auth_requires_tls_unless_allowed() {
        let mut c = Config::new("mx.test");
        c.auth_mechanisms = vec!["PLAIN".into()];
        let (mut s, now) = session(c.clone());
        let ehlo = talk(&mut s, b"EHLO x\r\n", now);
        assert!(!ehlo.contains("AUTH"));
        assert!(talk(&mut s, b"AUTH PLAIN\r\n", now).starts_with("538 5.7.11"));
        c.allow_plaintext_auth = true;
        let (mut s, now) = session(c);
        assert!(talk(&mut s, b"EHLO x\r\n", now).contains("250 AUTH PLAIN\r\n"));
        assert!(talk(&mut s, b"AUTH LOGIN\r\n", now).starts_with("504 5.5.4"));
    }

    #[test]
    fn decision_misuse_is_an_error() {
        let (mut s, now) = session(Config::new("mx.test"));
        assert_eq!(s.accept(), Err(Error::NoPendingDecision));
        s.receive(b"EHLO x\r\n", now);
        assert!(matches!(s.poll_event(), Some(Event::Helo(_))));
        assert!(!s.wants_read());
        let ok = Reply::new(250, S::new(2, 0, 0), "ok");
        assert_eq!(s.reject(ok), Err(Error::InvalidReply));
        assert_eq!(s.auth_challenge(b""), Err(Error::WrongDecision));
        assert_eq!(s.auth_succeed("x"), Err(Error::WrongDecision));
        assert_eq!(s.tls_established(TlsInfo::new("TLSv1.3", "x"), now), Err(Error::UnexpectedTls));
        s.accept().unwrap();
        assert!(s.wants_read());
        s.receive(b"MAIL FROM:<a@b>\r\n", now);
        assert!(matches!(s.poll_event(), Some(Event::Mail(_))));
        assert_eq!(s.accept_with(Reply::new(354, S::new(2, 0, 0), "x")), Err(Error::InvalidReply));
        s.reject(Reply::new(421, S::new(4, 7, 0), "go away")).unwrap();
        assert!(s.is_closed());
        assert_eq!(s.accept(), Err(Error::Closed));
    }

    #[test]
    fn command_line_cap_grows_with_extensions() {
        let (mut s, now) = session(Config::new("mx.test"));
        assert_eq!(s.command_line_limit(), 512);
        talk(&mut s, b"EHLO x\r\n", now);
        assert_eq!(s.command_line_limit(), 512 + 26 + 600);
        // A 600-octet RCPT line with ORCPT is fine after EHLO.
        talk(&mut s, b"MAIL FROM:<a@b>\r\n", now);
        let line = format!("RCPT TO:<a@b> ORCPT=rfc822;{}\r\n", "x".repeat(560));
        assert!(talk(&mut s, line.as_bytes(), now).starts_with("250 2.1.5"));
        let line = format!("NOOP {}\r\n", "x".repeat(1200));
        assert!(talk(&mut s, line.as_bytes(), now).starts_with("500 5.5.2"));
    }

    #[test]
    fn command_deadline_is_not_extended_by_trickling() {
        let (mut s, now) = session(Config::new("mx.test"));
        let timeout = s.config().limits.command_timeout;
        assert_eq!(s.poll_timeout(), Some(now + timeout));
        for i in 1..100u64 {
            s.receive(b"N", now + Duration::from_secs(i));
        }
        assert_eq!(s.poll_timeout(), Some(now + timeout));
        s.handle_timeout(now + timeout);
        let mut out = Vec::new();
        s.poll_transmit(&mut out);
        assert!(out.starts_with(b"421 4.4.2"));
        assert_eq!(s.close_reason(), Some(CloseReason::Timeout));
    }

    #[test]
    fn received_header() {
        let (mut s, now) = session(Config::new("mx.test"));
        for line in ["EHLO client.test\r\n", "MAIL FROM:<a@b>\r\n", "RCPT TO:<c@d>\r\n"] {
            talk(&mut s, line.as_bytes(), now);
        }
        let date = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let h = s.received_header("192.0.2.1".parse().unwrap(), "Q1", date);
        assert_eq!(
            h,
            "Received: from client.test ([192.0.2.1])\r\n\tby mx.test with ESMTP id Q1\r\n\t\
             for <c@d>;\r\n\tTue, 14 Nov 2023 22:13:20 +0000\r\n"
        );
    }

    #[test]
    fn date_format() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(rfc5322_date(t), "Tue, 14 Nov 2023 22:13:20 +0000");
        assert_eq!(rfc5322_date(SystemTime::UNIX_EPOCH), "Thu, 1 Jan 1970 00:00:00 +0000");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc5322_date(leap), "Tue, 29 Feb 2000 00:00:00 +0000");
    }
}
