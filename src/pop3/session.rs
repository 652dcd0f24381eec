//! The POP3 server session state machine.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use super::command::{Command, ParseError};
use super::types::{
    AuthStart, CloseReason, Config, Event, Expire, MessageInfo, Reply, ResponseCode, Violation,
};
use crate::TlsInfo;
use crate::line::{self, Framed, LineError, LineFramer};
use crate::sasl_wire::{self, SaslLine};

/// Misuse of the session API by the application. Client errors become `-ERR` replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A decision method was called while no decision was pending.
    #[error("no decision is pending")]
    NoPendingDecision,
    /// The decision does not answer the pending event.
    #[error("this decision does not answer the pending event")]
    WrongDecision,
    /// `reject` needs an `-ERR` reply.
    #[error("reject needs an -ERR reply")]
    InvalidReply,
    /// `tls_established` without a preceding [`Event::StartTls`].
    #[error("no TLS handshake was expected")]
    UnexpectedTls,
    /// The session is closed.
    #[error("the session is closed")]
    Closed,
}

/// A sans-IO POP3 server session for one connection (RFC 1939 with RFC 2449 CAPA,
/// RFC 2595 STLS, RFC 3206 response codes and RFC 5034 AUTH).
///
/// It is driven exactly like [`smtp::Session`](crate::smtp::Session): `receive` bytes,
/// drain `poll_event` and answer decisions, write out `poll_transmit`, honour
/// `poll_timeout`/`handle_timeout`, and call `tls_established` after [`Event::StartTls`].
/// Messages are streamed: on [`Event::Retrieve`] the application pushes the message in
/// chunks ([`message_data`](Self::message_data)) and the session dot-stuffs them on the
/// fly, so no message is ever held whole. [`Maildrop`](super::Maildrop) and
/// [`serve_maildrop`](super::serve_maildrop) do this for a blocking store.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Instant;
/// use postern::pop3::{Config, Event, MessageInfo, Session};
///
/// let now = Instant::now();
/// let mut config = Config::new("pop.example.test");
/// config.allow_plaintext_auth = true; // a loopback demo: no TLS here
/// let mut s = Session::new(Arc::new(config), [7; 16], now);
/// let mut wire = Vec::new();
/// s.poll_transmit(&mut wire);
/// assert!(wire.starts_with(b"+OK POP3 server ready <"));
///
/// s.receive(b"USER alice\r\nPASS secret\r\n", now);
/// let Some(Event::Login { user, password }) = s.poll_event() else { panic!() };
/// assert_eq!((user.as_str(), password.as_bytes()), ("alice", &b"secret"[..]));
/// s.accept_login(user, vec![MessageInfo::new(5, "uid-1").unwrap()]).unwrap();
///
/// s.receive(b"RETR 1\r\n", now);
/// let Some(Event::Retrieve { index: 0, top_lines: None }) = s.poll_event() else { panic!() };
/// s.message_data(b".hi\r\n").unwrap();
/// s.message_end().unwrap();
/// wire.clear();
/// s.poll_transmit(&mut wire);
/// assert_eq!(wire, b"+OK\r\n+OK Logged in, 1 message\r\n+OK 5 octets\r\n..hi\r\n.\r\n");
/// ```
pub struct Session {
    config: Arc<Config>,
    phase: Phase,
    pending: Option<Pending>,
    framer: LineFramer,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    events: VecDeque<Event>,
    deadline: Option<Instant>,
    now: Instant,
    timestamp: String,
    tls: Option<TlsInfo>,
    /// Name from USER, waiting for PASS.
    user: Option<String>,
    identity: Option<String>,
    messages: Vec<MessageInfo>,
    deleted: Vec<bool>,
    bad_commands: u32,
    auth_failures: u32,
    /// The greeting carried the APOP timestamp.
    apop_offered: bool,
    close_reason: Option<CloseReason>,
}

#[derive(Debug)]
enum Phase {
    Authorization,
    /// Waiting for a SASL response line.
    AuthResponse,
    Transaction,
    TlsHandshake,
    Closed,
}

#[derive(Debug)]
enum Pending {
    Login,
    Auth,
    Retrieve(Stream),
    Update,
}

/// The state of a message being streamed out.
#[derive(Debug)]
struct Stream {
    size: u64,
    top: Option<u32>,
    started: bool,
    line_start: bool,
    prev_cr: bool,
    /// For TOP: `true` once the empty line ending the header was sent.
    in_body: bool,
    /// For TOP: `true` once enough lines were sent.
    done: bool,
    /// Bytes of the current line so far (for TOP's empty-line detection).
    line_len: u64,
}

impl Session {
    /// Starts a session. `random` makes the APOP timestamp unique and unguessable: pass
    /// 16 bytes from a cryptographic RNG (for example `ring::rand::SystemRandom`).
    #[must_use]
    pub fn new(config: Arc<Config>, random: [u8; 16], now: Instant) -> Self {
        let mut hex = String::with_capacity(32);
        for b in random {
            hex.push_str(&format!("{b:02x}"));
        }
        let timestamp = format!("<{hex}@{}>", config.hostname);
        let framer = LineFramer::new(config.limits.command_line, config.bare_line_ending);
        let mut s = Self {
            config,
            phase: Phase::Authorization,
            pending: None,
            framer,
            inbuf: Vec::new(),
            out: Vec::new(),
            events: VecDeque::new(),
            deadline: None,
            now,
            timestamp,
            tls: None,
            user: None,
            identity: None,
            messages: Vec::new(),
            deleted: Vec::new(),
            bad_commands: 0,
            auth_failures: 0,
            apop_offered: false,
            close_reason: None,
        };
        // The timestamp is only offered when APOP can be used on this connection, now or
        // after STLS (a client would otherwise try APOP and fail).
        s.apop_offered = s.config.apop && (s.config.allow_plaintext_auth || s.config.stls);
        let greeting = if s.apop_offered {
            format!("POP3 server ready {}", s.timestamp)
        } else {
            "POP3 server ready".to_owned()
        };
        Reply::ok(greeting).write_to(&mut s.out);
        s.idle_deadline();
        s
    }

    /// Starts a session on a connection already inside TLS (POP3S, port 995).
    #[must_use]
    pub fn new_implicit_tls(config: Arc<Config>, random: [u8; 16], tls: TlsInfo, now: Instant) -> Self {
        let mut s = Self::new(Arc::clone(&config), random, now);
        s.tls = Some(tls);
        if config.apop && !s.apop_offered {
            s.apop_offered = true;
            s.out.clear();
            Reply::ok(format!("POP3 server ready {}", s.timestamp)).write_to(&mut s.out);
        }
        s
    }

    // ----- getters -------------------------------------------------------------------

    /// The APOP timestamp of this session's greeting, angle brackets included.
    #[must_use]
    pub fn timestamp(&self) -> &str {
        &self.timestamp
    }

    /// The logged-in identity, once in the TRANSACTION state.
    #[must_use]
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// The TLS connection, if any.
    #[must_use]
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// `true` once the session has ended.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Why the session ended.
    #[must_use]
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason
    }

    /// `true` when the session can take more input.
    #[must_use]
    pub fn wants_read(&self) -> bool {
        self.pending.is_none()
            && !matches!(self.phase, Phase::Closed | Phase::TlsHandshake)
            && self.inbuf.len() < self.config.limits.buffered_input
    }

    /// `true` while a [`Event::Retrieve`] is being answered and wants more bytes (for TOP,
    /// it turns `false` once enough lines were sent).
    #[must_use]
    pub fn wants_message_data(&self) -> bool {
        matches!(&self.pending, Some(Pending::Retrieve(s)) if !s.done)
    }

    // ----- inputs --------------------------------------------------------------------

    /// Processes bytes read from the connection.
    pub fn receive(&mut self, input: &[u8], now: Instant) {
        self.now = now;
        if input.is_empty() || self.is_closed() {
            return;
        }
        if matches!(self.phase, Phase::TlsHandshake) {
            self.events
                .push_back(Event::Violation(Violation::InputDuringTlsHandshake { dropped: input.len() }));
            return;
        }
        self.inbuf.extend_from_slice(input);
        self.resume();
        if self.inbuf.len() > self.config.limits.buffered_input && !self.is_closed() {
            self.violation(Violation::TooMuchInput);
            self.close(Some(Reply::err(None, "too much pipelined input")), CloseReason::Violation);
        }
    }

    /// The peer closed the connection: the session ends without entering UPDATE.
    pub fn handle_eof(&mut self, now: Instant) {
        self.now = now;
        self.close(None, CloseReason::ConnectionLost);
    }

    /// The next deadline. `None` while the session is closed or a decision is pending
    /// (the autologout timer measures the client's idleness, not the application's).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() || self.pending.is_some() { None } else { self.deadline }
    }

    /// Handles the passage of time: past the autologout timer the session closes
    /// without a response and without deleting anything (RFC 1939 §3).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if self.deadline.is_some_and(|d| now >= d) && self.pending.is_none() {
            self.close(None, CloseReason::Timeout);
        }
    }

    /// Records the TLS connection after STLS. The USER name and anything else from
    /// before the handshake is forgotten (RFC 2595 §4).
    pub fn tls_established(&mut self, info: TlsInfo, now: Instant) -> Result<(), Error> {
        self.now = now;
        if !matches!(self.phase, Phase::TlsHandshake) {
            return Err(if self.is_closed() { Error::Closed } else { Error::UnexpectedTls });
        }
        self.tls = Some(info);
        self.user = None;
        line::wipe(&mut self.inbuf);
        self.framer.reset();
        self.phase = Phase::Authorization;
        self.idle_deadline();
        Ok(())
    }

    // ----- outputs -------------------------------------------------------------------

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Appends the bytes to send to `buf`; returns how many. An empty `buf` takes the
    /// session's buffer whole, without copying.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> usize {
        let n = self.out.len();
        if buf.is_empty() {
            std::mem::swap(buf, &mut self.out);
        } else {
            buf.append(&mut self.out);
        }
        n
    }

    // ----- decisions -----------------------------------------------------------------

    /// Accepts a login ([`Event::Login`], [`Event::Apop`], or an AUTH exchange): the
    /// maildrop of `identity` is locked by the application and holds `messages`.
    pub fn accept_login(
        &mut self,
        identity: impl Into<String>,
        messages: Vec<MessageInfo>,
    ) -> Result<(), Error> {
        self.check(|p| matches!(p, Pending::Login | Pending::Auth))?;
        self.pending = None;
        self.end_auth();
        self.identity = Some(identity.into());
        self.deleted = vec![false; messages.len()];
        let text = match messages.len() {
            1 => "Logged in, 1 message".to_owned(),
            n => format!("Logged in, {n} messages"),
        };
        self.messages = messages;
        self.user = None;
        self.phase = Phase::Transaction;
        Reply::ok(text).write_to(&mut self.out);
        self.idle_deadline();
        self.resume();
        Ok(())
    }

    /// Sends a SASL challenge (`+ base64`) for a pending AUTH.
    pub fn auth_challenge(&mut self, challenge: &[u8]) -> Result<(), Error> {
        self.check(|p| matches!(p, Pending::Auth))?;
        self.pending = None;
        self.out.extend_from_slice(b"+ ");
        self.out.extend_from_slice(sasl_wire::encode(challenge).as_bytes());
        self.out.extend_from_slice(b"\r\n");
        self.framer.set_max_line(self.config.limits.auth_line);
        self.phase = Phase::AuthResponse;
        self.idle_deadline();
        self.resume();
        Ok(())
    }

    /// Pushes the next bytes of the message being retrieved. Returns `false` once the
    /// session wants no more (TOP has its lines): stop reading and call
    /// [`message_end`](Self::message_end).
    ///
    /// Line endings are sent as `CRLF` (a stored bare `LF` becomes `CRLF`) and lines that
    /// start with `.` are dot-stuffed.
    pub fn message_data(&mut self, data: &[u8]) -> Result<bool, Error> {
        let Some(Pending::Retrieve(stream)) = &mut self.pending else {
            return Err(if self.is_closed() { Error::Closed } else { Error::WrongDecision });
        };
        if !stream.started {
            stream.started = true;
            let head = match stream.top {
                Some(_) => Reply::ok("top of message follows"),
                None => Reply::ok(format!("{} octets", stream.size)),
            };
            head.write_to(&mut self.out);
        }
        stream.write(data, &mut self.out);
        Ok(!stream.done)
    }

    /// Ends the message being retrieved (`.` line).
    pub fn message_end(&mut self) -> Result<(), Error> {
        if !matches!(self.pending, Some(Pending::Retrieve(_))) {
            return Err(if self.is_closed() { Error::Closed } else { Error::WrongDecision });
        }
        self.message_data(b"")?;
        if let Some(Pending::Retrieve(stream)) = self.pending.take() {
            if !stream.line_start {
                self.out.extend_from_slice(b"\r\n");
            }
            self.out.extend_from_slice(b".\r\n");
        }
        self.idle_deadline();
        self.resume();
        Ok(())
    }

    /// Accepts a pending [`Event::Update`]: `+OK` and close.
    pub fn accept(&mut self) -> Result<(), Error> {
        self.check(|p| matches!(p, Pending::Update))?;
        self.pending = None;
        let n = self.deleted.iter().filter(|d| **d).count();
        let text = match n {
            1 => "Bye, 1 message deleted".to_owned(),
            n => format!("Bye, {n} messages deleted"),
        };
        Reply::ok(text).write_to(&mut self.out);
        self.close(None, CloseReason::Quit);
        Ok(())
    }

    /// Ends the session from the application's side (server shutdown): sends `reply`
    /// (normally `-ERR [SYS/TEMP] server shutting down`) and closes with
    /// [`CloseReason::Aborted`]. Nothing is deleted: the UPDATE state is never entered. A
    /// message being streamed is cut off, so the reply is only sent if none is.
    pub fn shutdown(&mut self, reply: Reply) {
        let streaming = matches!(&self.pending, Some(Pending::Retrieve(s)) if s.started);
        self.close(if streaming { None } else { Some(reply) }, CloseReason::Aborted);
    }

    /// Rejects a pending login, AUTH step, retrieval (before any data was pushed) or
    /// UPDATE with an `-ERR` reply. Failed logins count towards the limit. If message data
    /// was already sent, the only honest answer left is to close the connection, which
    /// this does.
    pub fn reject(&mut self, reply: Reply) -> Result<(), Error> {
        if reply.is_ok() {
            return Err(Error::InvalidReply);
        }
        self.check(|_| true)?;
        match self.pending.take() {
            Some(Pending::Login | Pending::Auth) => {
                self.end_auth();
                self.user = None;
                // Only credential failures count: a locked maildrop ([IN-USE]), a login
                // delay or a system problem is not the client guessing passwords.
                let credential_failure = matches!(reply.code(), None | Some(ResponseCode::Auth));
                if credential_failure {
                    self.auth_failures = self.auth_failures.saturating_add(1);
                }
                reply.write_to(&mut self.out);
                if credential_failure && self.auth_failures >= self.config.limits.auth_failures {
                    self.violation(Violation::TooManyAuthFailures);
                    self.close(
                        Some(Reply::err(Some(ResponseCode::Auth), "too many failures")),
                        CloseReason::Violation,
                    );
                }
            }
            Some(Pending::Retrieve(stream)) => {
                if stream.started {
                    self.close(None, CloseReason::Aborted);
                } else {
                    reply.write_to(&mut self.out);
                }
            }
            Some(Pending::Update) => {
                reply.write_to(&mut self.out);
                self.close(None, CloseReason::Quit);
            }
            None => {}
        }
        self.idle_deadline();
        self.resume();
        Ok(())
    }

    // ----- internals -----------------------------------------------------------------

    fn check(&self, ok: impl Fn(&Pending) -> bool) -> Result<(), Error> {
        match &self.pending {
            _ if self.is_closed() => Err(Error::Closed),
            None => Err(Error::NoPendingDecision),
            Some(p) if ok(p) => Ok(()),
            Some(_) => Err(Error::WrongDecision),
        }
    }

    fn idle_deadline(&mut self) {
        self.deadline = Some(self.now + self.config.limits.idle_timeout);
    }

    fn violation(&mut self, v: Violation) {
        self.events.push_back(Event::Violation(v));
    }

    fn close(&mut self, reply: Option<Reply>, reason: CloseReason) {
        if self.is_closed() {
            return;
        }
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

    fn end_auth(&mut self) {
        self.framer.set_max_line(self.config.limits.command_line);
        if matches!(self.phase, Phase::AuthResponse) {
            self.phase = Phase::Authorization;
        }
    }

    /// An `-ERR` for a bad command; too many close the session.
    fn bad(&mut self, reply: Reply) {
        reply.write_to(&mut self.out);
        self.bad_commands = self.bad_commands.saturating_add(1);
        if self.bad_commands >= self.config.limits.bad_commands {
            self.violation(Violation::TooManyBadCommands);
            self.close(Some(Reply::err(None, "too many bad commands")), CloseReason::Violation);
        }
    }

    fn resume(&mut self) {
        let mut pos = 0;
        let buf = std::mem::take(&mut self.inbuf);
        while pos < buf.len()
            && self.pending.is_none()
            && matches!(self.phase, Phase::Authorization | Phase::AuthResponse | Phase::Transaction)
        {
            let rest = buf.get(pos..).unwrap_or_default();
            let (used, framed) = self.framer.decode(rest);
            pos += used;
            match framed {
                Framed::Partial if used == 0 => break,
                Framed::Partial => {}
                Framed::Line(line) => self.line(line, buf.len() - pos),
                Framed::Error(e) => self.line_error(e),
            }
        }
        let mut buf = buf;
        if self.is_closed() {
            line::wipe(&mut buf);
        } else {
            line::consume_wiping(&mut buf, pos);
            self.inbuf = buf;
        }
    }

    fn line_error(&mut self, e: LineError) {
        if matches!(self.phase, Phase::AuthResponse) {
            self.end_auth();
            self.events.push_back(Event::AuthAborted);
            self.bad(Reply::err(None, "invalid authentication response"));
            return;
        }
        match e {
            LineError::TooLong => {
                self.violation(Violation::LineTooLong);
                self.bad(Reply::err(None, "line too long"));
            }
            LineError::BareLf | LineError::BareCr => {
                self.violation(Violation::BareLineEnding);
                self.bad(Reply::err(None, "bare CR or LF received"));
            }
        }
    }

    fn plaintext_allowed(&self) -> bool {
        self.tls.is_some() || self.config.allow_plaintext_auth
    }

    fn refuse_plaintext(&mut self) {
        self.violation(Violation::PlaintextAuthRefused);
        self.bad(Reply::err(
            Some(ResponseCode::Auth),
            "Plaintext authentication disallowed on non-secure connections, use STLS",
        ));
    }

    fn line(&mut self, line: &[u8], remaining: usize) {
        if matches!(self.phase, Phase::AuthResponse) {
            match sasl_wire::decode_line(line, false) {
                SaslLine::Data(d) => {
                    self.events.push_back(Event::AuthResponse(d));
                    self.pending = Some(Pending::Auth);
                }
                SaslLine::Cancel => {
                    self.end_auth();
                    self.events.push_back(Event::AuthAborted);
                    self.bad(Reply::err(None, "authentication cancelled"));
                }
                SaslLine::Invalid => {
                    self.end_auth();
                    self.events.push_back(Event::AuthAborted);
                    self.bad(Reply::err(None, "invalid base64"));
                }
            }
            return;
        }
        self.idle_deadline();
        let cmd = match Command::parse(line) {
            Ok(cmd) => cmd,
            Err(ParseError::UnknownCommand) => return self.bad(Reply::err(None, "unknown command")),
            Err(ParseError::InvalidUtf8) => return self.bad(Reply::err(None, "command is not valid UTF-8")),
            Err(_) => return self.bad(Reply::err(None, "invalid arguments")),
        };
        let authorization = matches!(self.phase, Phase::Authorization);
        if !matches!(cmd, Command::Pass(_)) {
            // RFC 1939 §7: PASS only immediately after a successful USER.
            self.user = None;
        }
        match cmd {
            Command::Capa => self.capa(),
            Command::Noop if !authorization => Reply::ok("").write_to(&mut self.out),
            Command::Quit => {
                if authorization {
                    Reply::ok("Bye").write_to(&mut self.out);
                    self.close(None, CloseReason::Quit);
                } else {
                    let deleted =
                        self.deleted.iter().enumerate().filter(|(_, d)| **d).map(|(i, _)| i).collect();
                    self.events.push_back(Event::Update { deleted });
                    self.pending = Some(Pending::Update);
                }
            }
            Command::Stls => self.stls(authorization, remaining),
            Command::User(name) if authorization => {
                if !self.plaintext_allowed() {
                    return self.refuse_plaintext();
                }
                self.user = Some(name.to_owned());
                Reply::ok("").write_to(&mut self.out);
            }
            Command::Pass(password) if authorization => {
                if !self.plaintext_allowed() {
                    return self.refuse_plaintext();
                }
                let Some(user) = self.user.take() else {
                    return self.bad(Reply::err(None, "send USER first"));
                };
                let password = crate::sasl_wire::SaslData::new(password.as_bytes().to_vec());
                self.events.push_back(Event::Login { user, password });
                self.pending = Some(Pending::Login);
            }
            Command::Apop { name, digest } if authorization => {
                if !self.plaintext_allowed() {
                    return self.refuse_plaintext();
                }
                if !self.apop_offered {
                    return self.bad(Reply::err(None, "APOP not available on this connection"));
                }
                if !self.plaintext_allowed() {
                    return self.refuse_plaintext();
                }
                self.events.push_back(Event::Apop {
                    user: name.to_owned(),
                    timestamp: self.timestamp.clone(),
                    digest: digest.to_owned(),
                });
                self.pending = Some(Pending::Login);
            }
            Command::Auth { mechanism, initial_response } if authorization => {
                self.auth(mechanism, initial_response)
            }
            Command::Stat if !authorization => {
                let (n, size) = self.live().fold((0u64, 0u64), |(n, s), (_, m)| (n + 1, s + m.size()));
                Reply::ok(format!("{n} {size}")).write_to(&mut self.out);
            }
            Command::List(None) | Command::Uidl(None) if !authorization => {
                let uidl = matches!(cmd, Command::Uidl(_));
                let mut body = String::new();
                let mut n = 0u64;
                for (i, m) in self.live() {
                    n += 1;
                    if uidl {
                        body.push_str(&format!("{} {}\r\n", i + 1, m.uid()));
                    } else {
                        body.push_str(&format!("{} {}\r\n", i + 1, m.size()));
                    }
                }
                let head =
                    if uidl { "unique-id listing follows".to_owned() } else { format!("{n} messages") };
                Reply::ok(head).write_to(&mut self.out);
                self.out.extend_from_slice(body.as_bytes());
                self.out.extend_from_slice(b".\r\n");
            }
            Command::List(Some(msg)) | Command::Uidl(Some(msg)) if !authorization => {
                let uidl = matches!(cmd, Command::Uidl(_));
                match self.message(msg) {
                    Ok((i, m)) => {
                        let text = if uidl {
                            format!("{} {}", i + 1, m.uid())
                        } else {
                            format!("{} {}", i + 1, m.size())
                        };
                        Reply::ok(text).write_to(&mut self.out);
                    }
                    Err(reply) => self.bad(reply),
                }
            }
            Command::Retr(msg) | Command::Top { msg, .. } if !authorization => match self.message(msg) {
                Ok((index, m)) => {
                    let top = if let Command::Top { lines, .. } = cmd { Some(lines) } else { None };
                    let size = m.size();
                    self.events.push_back(Event::Retrieve { index, top_lines: top });
                    self.pending = Some(Pending::Retrieve(Stream {
                        size,
                        top,
                        started: false,
                        line_start: true,
                        prev_cr: false,
                        in_body: false,
                        done: false,
                        line_len: 0,
                    }));
                }
                Err(reply) => self.bad(reply),
            },
            Command::Dele(msg) if !authorization => match self.message(msg) {
                Ok((i, _)) => {
                    if let Some(d) = self.deleted.get_mut(i) {
                        *d = true;
                    }
                    Reply::ok(format!("message {msg} deleted")).write_to(&mut self.out);
                }
                Err(reply) => self.bad(reply),
            },
            Command::Rset if !authorization => {
                self.deleted.iter_mut().for_each(|d| *d = false);
                let n = self.messages.len();
                Reply::ok(format!("maildrop has {n} messages")).write_to(&mut self.out);
            }
            _ if authorization => self.bad(Reply::err(None, "command not valid before login")),
            _ => self.bad(Reply::err(None, "command not valid after login")),
        }
    }

    /// Messages not marked deleted, with their indexes.
    fn live(&self) -> impl Iterator<Item = (usize, &MessageInfo)> {
        self.messages.iter().enumerate().filter(|(i, _)| !self.deleted.get(*i).copied().unwrap_or(true))
    }

    fn message(&self, msg: u32) -> Result<(usize, &MessageInfo), Reply> {
        let i = (msg as usize).checked_sub(1).ok_or_else(|| Reply::err(None, "no such message"))?;
        let m = self.messages.get(i).ok_or_else(|| Reply::err(None, "no such message"))?;
        if self.deleted.get(i).copied().unwrap_or(false) {
            return Err(Reply::err(None, format!("message {msg} already deleted")));
        }
        Ok((i, m))
    }

    fn stls(&mut self, authorization: bool, remaining: usize) {
        if self.tls.is_some() {
            return self.bad(Reply::err(None, "TLS already active"));
        }
        if !self.config.stls {
            return self.bad(Reply::err(None, "STLS not supported"));
        }
        if !authorization {
            return self.bad(Reply::err(None, "STLS only in the AUTHORIZATION state"));
        }
        if remaining > 0 {
            // CVE-2011-0411 class: whatever follows STLS in plaintext is never executed.
            self.violation(Violation::StlsInjection { dropped: remaining });
            return self
                .close(Some(Reply::err(None, "command pipelined after STLS")), CloseReason::Violation);
        }
        self.user = None;
        Reply::ok("Begin TLS negotiation").write_to(&mut self.out);
        self.phase = Phase::TlsHandshake;
        self.events.push_back(Event::StartTls);
    }

    fn auth(&mut self, mechanism: Option<&str>, initial: Option<&str>) {
        let offered = self.offered_mechanisms();
        let Some(mechanism) = mechanism else {
            // RFC 1734 style listing.
            Reply::ok("").write_to(&mut self.out);
            for m in &offered {
                self.out.extend_from_slice(m.as_bytes());
                self.out.extend_from_slice(b"\r\n");
            }
            self.out.extend_from_slice(b".\r\n");
            return;
        };
        let upper = mechanism.to_ascii_uppercase();
        if !offered.contains(&upper) {
            if self.config.sasl_mechanisms.iter().any(|m| m.eq_ignore_ascii_case(&upper)) {
                return self.refuse_plaintext();
            }
            return self.bad(Reply::err(None, "unsupported authentication mechanism"));
        }
        let initial_response = match initial.map(|i| sasl_wire::decode_line(i.as_bytes(), true)) {
            None => None,
            Some(SaslLine::Data(d)) => Some(d),
            Some(_) => return self.bad(Reply::err(None, "invalid base64")),
        };
        self.events.push_back(Event::Auth(AuthStart { mechanism: upper, initial_response }));
        self.pending = Some(Pending::Auth);
    }

    /// The SASL mechanisms usable now (those that send a password or a bearer token only
    /// inside TLS unless allowed; `-PLUS` and `EXTERNAL` only inside TLS).
    fn offered_mechanisms(&self) -> Vec<String> {
        self.config
            .sasl_mechanisms
            .iter()
            .map(|m| m.to_ascii_uppercase())
            .filter(|m| {
                self.plaintext_allowed()
                    || !(self.config.sasl_requires_tls
                        || matches!(m.as_str(), "PLAIN" | "LOGIN" | "XOAUTH2" | "OAUTHBEARER"))
            })
            // Channel-bound (-PLUS) mechanisms and EXTERNAL need TLS.
            .filter(|m| self.tls.is_some() || !(m.ends_with("-PLUS") || m == "EXTERNAL"))
            .collect()
    }

    fn capa(&mut self) {
        let authorization = matches!(self.phase, Phase::Authorization);
        let mut lines: Vec<String> = vec!["TOP".into(), "UIDL".into(), "RESP-CODES".into()];
        lines.push("AUTH-RESP-CODE".into());
        lines.push("PIPELINING".into());
        if authorization {
            if self.plaintext_allowed() {
                lines.push("USER".into());
            }
            let mechs = self.offered_mechanisms();
            if !mechs.is_empty() {
                lines.push(format!("SASL {}", mechs.join(" ")));
            }
            if self.config.stls && self.tls.is_none() {
                lines.push("STLS".into());
            }
        }
        if let Some(d) = self.config.login_delay {
            lines.push(format!("LOGIN-DELAY {d}"));
        }
        match self.config.expire {
            Some(Expire::Never) => lines.push("EXPIRE NEVER".into()),
            Some(Expire::Days(n)) => lines.push(format!("EXPIRE {n}")),
            None => {}
        }
        if let Some(imp) = &self.config.implementation {
            let imp: String = imp.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
            lines.push(format!("IMPLEMENTATION {imp}"));
        }
        Reply::ok("Capability list follows").write_to(&mut self.out);
        for l in lines {
            self.out.extend_from_slice(l.as_bytes());
            self.out.extend_from_slice(b"\r\n");
        }
        self.out.extend_from_slice(b".\r\n");
    }
}

impl Stream {
    /// Writes `data` dot-stuffed with `CRLF` line endings, honouring TOP's line count.
    fn write(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.top.is_none() {
            return self.write_all(data, out);
        }
        let mut rest = data;
        while !rest.is_empty() && !self.done {
            let (segment, lf) = match memchr::memchr(b'\n', rest) {
                Some(i) => (rest.get(..i).unwrap_or_default(), true),
                None => (rest, false),
            };
            rest = rest.get(segment.len() + usize::from(lf)..).unwrap_or_default();
            if self.line_start && segment.first() == Some(&b'.') {
                out.push(b'.');
            }
            if !segment.is_empty() {
                out.extend_from_slice(segment);
                self.line_start = false;
                self.line_len += segment.len() as u64;
                self.prev_cr = segment.last() == Some(&b'\r');
            }
            if lf {
                if !self.prev_cr {
                    out.push(b'\r');
                }
                out.push(b'\n');
                // A line holding only CR LF is the empty line that ends the header.
                let empty = self.line_len == 0 || (self.line_len == 1 && self.prev_cr);
                self.line_start = true;
                self.prev_cr = false;
                self.line_len = 0;
                if let Some(n) = self.top.as_mut() {
                    if self.in_body {
                        *n = n.saturating_sub(1);
                    } else if empty {
                        self.in_body = true;
                    }
                    if self.in_body && *n == 0 {
                        self.done = true;
                    }
                }
            }
        }
    }
}

/// Bytes [`Stream::write_all`] checks at a time for an `LF` that needs a byte inserted.
const BLOCK: usize = 64;

/// `true` if the block `window[1..=BLOCK]` has an `LF` that is not preceded by `CR` or
/// is followed by `.` (`window` holds one byte on each side of the block). Branch-free,
/// so the compiler vectorises it.
fn special_lf(window: &[u8]) -> bool {
    let (Some(before), Some(block), Some(after)) =
        (window.get(..BLOCK), window.get(1..=BLOCK), window.get(2..BLOCK + 2))
    else {
        return true;
    };
    let mut found = 0u8;
    for ((a, b), c) in before.iter().zip(block).zip(after) {
        found |= u8::from(*b == b'\n') & (u8::from(*a != b'\r') | u8::from(*c == b'.'));
    }
    found != 0
}

impl Stream {
    /// RETR's path (no line count): same output as the line-by-line path, but copies runs
    /// of ordinary lines in one piece. Blocks of [`BLOCK`] bytes are checked for the two
    /// cases that need a byte inserted (a line starting with `.`, a bare `LF`), and only a
    /// block that has one is looked at `LF` by `LF`.
    fn write_all(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let Some(&last) = data.last() else { return };
        // Stuffing every line of a 1-octet-per-line message at most triples it.
        out.reserve(data.len() + data.len() / 8 + 2);
        if self.line_start && data.first() == Some(&b'.') {
            out.push(b'.');
        }
        let mut copied = 0;
        if data.first() == Some(&b'\n') {
            self.lf(data, 0, out, &mut copied);
        }
        let mut pos = 1;
        while let Some(window) = data.get(pos - 1..pos + BLOCK + 1) {
            if special_lf(window) {
                for i in memchr::memchr_iter(b'\n', window.get(1..=BLOCK).unwrap_or_default()) {
                    self.lf(data, pos + i, out, &mut copied);
                }
            }
            pos += BLOCK;
        }
        for i in memchr::memchr_iter(b'\n', data.get(pos..).unwrap_or_default()) {
            self.lf(data, pos + i, out, &mut copied);
        }
        out.extend_from_slice(data.get(copied..).unwrap_or_default());
        self.line_start = last == b'\n';
        self.prev_cr = last == b'\r';
    }

    /// The `LF` at `data[lf]`: if it needs a `CR` before it or a `.` after it, writes
    /// `data[copied..=lf]` with those and moves `copied` past it.
    fn lf(&self, data: &[u8], lf: usize, out: &mut Vec<u8>, copied: &mut usize) {
        let cr = match lf.checked_sub(1) {
            Some(i) => data.get(i) == Some(&b'\r'),
            None => self.prev_cr,
        };
        let dot = data.get(lf + 1) == Some(&b'.');
        if !cr || dot {
            out.extend_from_slice(data.get(*copied..lf).unwrap_or_default());
            if !cr {
                out.push(b'\r');
            }
            out.push(b'\n');
            if dot {
                out.push(b'.');
            }
            *copied = lf + 1;
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("phase", &self.phase)
            .field("pending", &self.pending)
            .field("identity", &self.identity)
            .field("messages", &self.messages.len())
            .field("tls", &self.tls)
            .field("close_reason", &self.close_reason)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a real Instant is the base of the virtual clock
mod tests {
    use super::*;
    use crate::pop3::MessageInfo;

    fn config() -> Config {
        let mut c = Config::new("pop.test");
        c.allow_plaintext_auth = true;
        c.sasl_mechanisms = vec!["PLAIN".into()];
        c
    }

    /// Feeds `input`, answers decisions like a small app (user alice / secret, three
    /// messages), returns the server's output.
    fn talk(s: &mut Session, input: &[u8]) -> String {
        let now = s.now;
        s.receive(input, now);
        while let Some(e) = s.poll_event() {
            match e {
                Event::Login { user, password } => {
                    if user == "alice" && password.as_bytes() == b"secret" {
                        let msgs =
                            (1..=3).map(|i| MessageInfo::new(10 * i, format!("u{i}")).unwrap()).collect();
                        s.accept_login(user, msgs).unwrap();
                    } else {
                        s.reject(Reply::err(Some(ResponseCode::Auth), "invalid credentials")).unwrap();
                    }
                }
                Event::Retrieve { .. } => {
                    s.message_data(b"Subject: a\r\n\r\n.dot\nline2\r\n").unwrap();
                    s.message_end().unwrap();
                }
                Event::Update { .. } => s.accept().unwrap(),
                _ => {}
            }
        }
        let mut out = Vec::new();
        s.poll_transmit(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn logged_in() -> Session {
        let mut s = Session::new(Arc::new(config()), [0; 16], Instant::now());
        talk(&mut s, b"USER alice\r\nPASS secret\r\n");
        s
    }

    #[test]
    fn every_command_in_authorization() {
        let cases: &[(&str, &str)] = &[
            ("STAT", "-ERR command not valid before login"),
            ("LIST", "-ERR command not valid before login"),
            ("RETR 1", "-ERR command not valid before login"),
            ("DELE 1", "-ERR command not valid before login"),
            ("NOOP", "-ERR command not valid before login"),
            ("RSET", "-ERR command not valid before login"),
            ("TOP 1 1", "-ERR command not valid before login"),
            ("UIDL", "-ERR command not valid before login"),
            ("PASS secret", "-ERR send USER first"),
            ("USER alice", "+OK"),
            ("STLS", "-ERR STLS not supported"),
            ("AUTH", "+OK\r\nPLAIN\r\n.\r\n"),
            ("AUTH CRAM-MD5", "-ERR unsupported authentication mechanism"),
            ("AUTH PLAIN !!", "-ERR invalid base64"),
            ("FOO", "-ERR unknown command"),
            ("RETR x", "-ERR invalid arguments"),
            ("QUIT", "+OK Bye"),
        ];
        for (cmd, want) in cases {
            let mut s = Session::new(Arc::new(config()), [0; 16], Instant::now());
            let _ = talk(&mut s, b"");
            let mut greeting = Vec::new();
            s.poll_transmit(&mut greeting);
            let got = talk(&mut s, format!("{cmd}\r\n").as_bytes());
            assert_eq!(got, format!("{want}\r\n").replace("\r\n\r\n", "\r\n"), "{cmd}");
        }
    }

    #[test]
    fn every_command_in_transaction() {
        let body = "+OK 10 octets\r\nSubject: a\r\n\r\n..dot\r\nline2\r\n.\r\n";
        let cases: &[(&str, &str)] = &[
            ("STAT", "+OK 3 60\r\n"),
            ("LIST", "+OK 3 messages\r\n1 10\r\n2 20\r\n3 30\r\n.\r\n"),
            ("LIST 2", "+OK 2 20\r\n"),
            ("LIST 4", "-ERR no such message\r\n"),
            ("LIST 0", "-ERR no such message\r\n"),
            ("UIDL", "+OK unique-id listing follows\r\n1 u1\r\n2 u2\r\n3 u3\r\n.\r\n"),
            ("UIDL 3", "+OK 3 u3\r\n"),
            ("RETR 1", body),
            ("TOP 1 0", "+OK top of message follows\r\nSubject: a\r\n\r\n.\r\n"),
            ("TOP 1 1", "+OK top of message follows\r\nSubject: a\r\n\r\n..dot\r\n.\r\n"),
            ("DELE 2", "+OK message 2 deleted\r\n"),
            ("NOOP", "+OK\r\n"),
            ("RSET", "+OK maildrop has 3 messages\r\n"),
            ("USER bob", "-ERR command not valid after login\r\n"),
            ("PASS x", "-ERR command not valid after login\r\n"),
            ("APOP a b", "-ERR command not valid after login\r\n"),
            ("AUTH PLAIN", "-ERR command not valid after login\r\n"),
            ("STLS", "-ERR STLS not supported\r\n"),
            ("QUIT", "+OK Bye, 0 messages deleted\r\n"),
        ];
        for (cmd, want) in cases {
            let mut s = logged_in();
            assert_eq!(talk(&mut s, format!("{cmd}\r\n").as_bytes()), *want, "{cmd}");
        }
    }

    #[test]
    fn deletions_only_at_update() {
        let mut s = logged_in();
        assert_eq!(
            talk(&mut s, b"DELE 1\r\nDELE 1\r\n"),
            "+OK message 1 deleted\r\n-ERR message 1 already deleted\r\n"
        );
        assert_eq!(talk(&mut s, b"RETR 1\r\n"), "-ERR message 1 already deleted\r\n");
        assert_eq!(talk(&mut s, b"STAT\r\n"), "+OK 2 50\r\n");
        s.receive(b"QUIT\r\n", s.now);
        let mut update = None;
        while let Some(e) = s.poll_event() {
            if let Event::Update { deleted } = e {
                update = Some(deleted);
            }
        }
        assert_eq!(update, Some(vec![0]));
        // A dropped connection instead: no Update event at all.
        let mut s = logged_in();
        talk(&mut s, b"DELE 1\r\n");
        s.handle_eof(s.now);
        while let Some(e) = s.poll_event() {
            assert!(!matches!(e, Event::Update { .. }));
        }
    }

    #[test]
    fn plaintext_refused_without_tls() {
        let mut c = config();
        c.allow_plaintext_auth = false;
        c.stls = true;
        let mut s = Session::new(Arc::new(c), [0; 16], Instant::now());
        let _ = talk(&mut s, b"");
        let capa = talk(&mut s, b"CAPA\r\n");
        assert!(capa.contains("STLS\r\n") && !capa.contains("USER\r\n") && !capa.contains("SASL"));
        for cmd in ["USER alice", "APOP alice c4c9334bac560ecc979e58001b3e22fb", "AUTH PLAIN"] {
            let got = talk(&mut s, format!("{cmd}\r\n").as_bytes());
            assert!(got.starts_with("-ERR [AUTH] Plaintext authentication disallowed"), "{cmd}: {got}");
        }
        // STLS pipelined with a command: refused, closed, nothing executed.
        let got = talk(&mut s, b"STLS\r\nUSER alice\r\n");
        assert_eq!(got, "-ERR command pipelined after STLS\r\n");
        assert!(s.is_closed());
    }

    #[test]
    fn stls_forgets_user() {
        let mut c = config();
        c.stls = true;
        let mut s = Session::new(Arc::new(c), [0; 16], Instant::now());
        let _ = talk(&mut s, b"");
        assert_eq!(talk(&mut s, b"USER alice\r\n"), "+OK\r\n");
        assert_eq!(talk(&mut s, b"STLS\r\n"), "+OK Begin TLS negotiation\r\n");
        assert!(!s.wants_read());
        s.tls_established(TlsInfo::new("TLSv1.3", "TLS13_AES_128_GCM_SHA256"), s.now).unwrap();
        assert_eq!(talk(&mut s, b"PASS secret\r\n"), "-ERR send USER first\r\n");
        assert_eq!(talk(&mut s, b"STLS\r\n"), "-ERR TLS already active\r\n");
        assert!(!talk(&mut s, b"CAPA\r\n").contains("STLS"));
    }

    #[test]
    fn auth_failures_close() {
        let mut s = Session::new(Arc::new(config()), [0; 16], Instant::now());
        let _ = talk(&mut s, b"");
        for _ in 0..2 {
            assert_eq!(
                talk(&mut s, b"USER alice\r\nPASS wrong\r\n"),
                "+OK\r\n-ERR [AUTH] invalid credentials\r\n"
            );
        }
        let got = talk(&mut s, b"USER alice\r\nPASS wrong\r\n");
        assert!(got.ends_with("-ERR [AUTH] too many failures\r\n"), "{got}");
        assert!(s.is_closed());
    }

    #[test]
    fn sasl_plain_exchange() {
        let mut s = Session::new(Arc::new(config()), [0; 16], Instant::now());
        let _ = talk(&mut s, b"");
        s.receive(b"AUTH PLAIN\r\n", s.now);
        assert!(matches!(s.poll_event(), Some(Event::Auth(a)) if a.initial_response.is_none()));
        s.auth_challenge(b"").unwrap();
        s.receive(b"AGFsaWNlAHNlY3JldA==\r\n", s.now);
        let Some(Event::AuthResponse(r)) = s.poll_event() else { panic!() };
        assert_eq!(r.as_bytes(), b"\0alice\0secret");
        s.accept_login("alice", vec![]).unwrap();
        let mut out = Vec::new();
        s.poll_transmit(&mut out);
        assert!(out.ends_with(b"+ \r\n+OK Logged in, 0 messages\r\n"));
        // `*` cancels.
        let mut s = Session::new(Arc::new(config()), [0; 16], Instant::now());
        s.receive(b"AUTH PLAIN\r\n", s.now);
        let _ = s.poll_event();
        s.auth_challenge(b"").unwrap();
        assert!(talk(&mut s, b"*\r\n").ends_with("-ERR authentication cancelled\r\n"));
    }

    #[test]
    fn autologout_sends_nothing() {
        let mut s = logged_in();
        let deadline = s.poll_timeout().unwrap();
        s.handle_timeout(deadline);
        assert!(s.is_closed());
        assert_eq!(s.close_reason(), Some(CloseReason::Timeout));
        let mut out = Vec::new();
        assert_eq!(s.poll_transmit(&mut out), 0);
    }

    #[test]
    fn overlong_line_and_bad_command_limit() {
        let mut s = Session::new(Arc::new(config()), [0; 16], Instant::now());
        let _ = talk(&mut s, b"");
        let long = format!("USER {}\r\n", "a".repeat(300));
        assert_eq!(talk(&mut s, long.as_bytes()), "-ERR line too long\r\n");
        let mut last = String::new();
        for _ in 0..19 {
            last = talk(&mut s, b"BOGUS\r\n");
        }
        assert!(last.ends_with("-ERR too many bad commands\r\n"));
        assert!(s.is_closed());
    }

    #[test]
    fn streaming_normalises_and_stuffs_across_chunks() {
        let mut st = Stream {
            size: 0,
            top: None,
            started: true,
            line_start: true,
            prev_cr: false,
            in_body: false,
            done: false,
            line_len: 0,
        };
        let mut out = Vec::new();
        for chunk in [&b"a\r"[..], b"\n", b".", b"b\n", b"", b"..\r\n", b"c"] {
            st.write(chunk, &mut out);
        }
        assert_eq!(out, b"a\r\n..b\r\n...\r\nc");
        assert!(!st.line_start);
    }
}
