//! One SMTP connection: drives a [`postern::smtp::Session`] over a blocking
//! [`TcpStream`] and answers its decisions.
//!
//! The loop is the one the `Session` docs describe:
//!
//! 1. drain [`Session::poll_event`], answering each decision at once;
//! 2. write out [`Session::poll_transmit`];
//! 3. stop if [`Session::is_closed`];
//! 4. read (only while [`Session::wants_read`]) with the socket's read timeout set to
//!    [`Session::poll_timeout`]; bytes go to [`Session::receive`], end of stream to
//!    [`Session::handle_eof`], a timeout to [`Session::handle_timeout`].
//!
//! The read timeout is capped at one second so the thread also notices a shutdown.

use std::io::{self, Read as _, Write as _};
use std::net::{Shutdown as Direction, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use postern::smtp::{Config, EnhancedStatus, Event, Reply, Session};

use crate::log::Log;
use crate::maildir::{Delivery, Maildir, Unique};
use crate::policy::Policy;
use crate::shutdown::Shutdown;

/// How often a connection thread wakes up to check for shutdown.
const TICK: Duration = Duration::from_secs(1);
/// Bytes read from the socket at a time (one `receive` call).
const READ_BUFFER: usize = 16 * 1024;
/// A client that stops reading our replies for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything the connections share.
#[derive(Debug)]
pub(crate) struct Gateway {
    /// The session configuration, shared by all sessions.
    pub(crate) config: Arc<Config>,
    /// Which recipients are accepted.
    pub(crate) policy: Policy,
    /// Where messages go.
    pub(crate) maildir: Maildir,
    /// Set by Ctrl-C; shared with the POP3 side.
    pub(crate) shutdown: Arc<Shutdown>,
}

/// Serves one accepted connection until the session ends; logs as `conn=<id>`.
pub(crate) fn serve(gateway: &Gateway, stream: TcpStream, peer: SocketAddr, id: u64) {
    let log = Log::conn(id);
    log.line(format_args!("connect from {peer}"));
    let started = Instant::now();
    let setup = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_nodelay(true))
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)));
    if let Err(e) = setup {
        log.line(format_args!("socket setup failed: {e}"));
        return;
    }
    let mut conn = Connection {
        gateway,
        log,
        peer,
        session: Session::new(Arc::clone(&gateway.config), Instant::now()),
        stream,
        in_transaction: false,
        mailboxes: Vec::new(),
        message: None,
        delivered: 0,
    };
    let outcome = conn.run();
    let Connection { stream, delivered, .. } = conn;
    match outcome {
        Ok(()) => linger_close(&stream),
        Err(e) => log.line(format_args!("connection error: {e}")),
    }
    log.line(format_args!(
        "disconnect from {peer}, {delivered} message(s) delivered, {:.1}s",
        started.elapsed().as_secs_f64()
    ));
}

/// A message being received: its queue id and its files.
struct Message {
    unique: Unique,
    delivery: Delivery,
}

struct Connection<'a> {
    gateway: &'a Gateway,
    log: Log,
    peer: SocketAddr,
    session: Session,
    stream: TcpStream,
    /// MAIL was accepted and the transaction has not ended yet.
    in_transaction: bool,
    /// Mailboxes of the recipients accepted in this transaction, without duplicates.
    mailboxes: Vec<String>,
    /// The message being received, between `DataStart` and `MessageEnd`.
    message: Option<Message>,
    delivered: u64,
}

impl Connection<'_> {
    fn run(&mut self) -> io::Result<()> {
        let mut buf = vec![0_u8; READ_BUFFER];
        let mut out = Vec::with_capacity(1024);
        loop {
            while let Some(event) = self.session.poll_event() {
                self.handle(event);
            }
            if self.session.poll_transmit(&mut out) > 0 {
                self.stream.write_all(&out)?;
                out.clear();
            }
            if self.session.is_closed() {
                return Ok(());
            }
            let now = Instant::now();
            if self.gateway.shutdown.must_close(self.in_transaction, now) {
                self.log.line(format_args!("closing: server shutting down"));
                let text = format!("{} Service shutting down, closing transmission channel", self.host());
                // The session sends the 421, aborts a message in flight and reports Closed;
                // the loop then writes it out and returns.
                self.session.shutdown(Reply::new(421, EnhancedStatus::new(4, 3, 2), text));
                continue;
            }
            if !self.session.wants_read() {
                // Decisions are answered synchronously above and STARTTLS is not offered,
                // so the session only stops reading when it is about to close.
                self.log.line(format_args!("session stopped reading: {:?}", self.session));
                return Ok(());
            }
            let wait = match self.session.poll_timeout() {
                Some(deadline) => deadline.saturating_duration_since(now).min(TICK),
                None => TICK,
            };
            if wait.is_zero() {
                self.session.handle_timeout(now);
                continue;
            }
            self.stream.set_read_timeout(Some(wait))?;
            match self.stream.read(&mut buf) {
                Ok(0) => self.session.handle_eof(Instant::now()),
                Ok(n) => self.session.receive(buf.get(..n).unwrap_or_default(), Instant::now()),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    // Does nothing before the deadline.
                    self.session.handle_timeout(Instant::now());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.log.line(format_args!("read error: {e}"));
                    self.session.handle_eof(Instant::now());
                }
            }
        }
    }

    fn host(&self) -> &str {
        &self.gateway.config.hostname
    }

    fn handle(&mut self, event: Event) {
        let log = self.log;
        match event {
            Event::Helo(helo) => {
                let verb = if helo.extended { "EHLO" } else { "HELO" };
                log.line(format_args!("{verb} {:?}", helo.name));
                decided(log, "HELO", self.session.accept());
            }
            Event::Mail(mail) => {
                // A new transaction: the session refuses MAIL inside one, so nothing of
                // the previous envelope is still wanted.
                self.end_transaction();
                let from = mail.from.as_ref().map(ToString::to_string).unwrap_or_default();
                log.line(format_args!(
                    "MAIL FROM:<{}> size={:?} smtputf8={}",
                    from.escape_debug(),
                    mail.size,
                    mail.smtputf8
                ));
                self.in_transaction = true;
                decided(log, "MAIL", self.session.accept());
            }
            Event::Rcpt(rcpt) => {
                let to = rcpt.to.to_string();
                match self.gateway.policy.recipient(&rcpt.to) {
                    Ok(mailbox) => {
                        log.line(format_args!(
                            "RCPT TO:<{}> accepted, mailbox {mailbox:?}",
                            to.escape_debug()
                        ));
                        if !self.mailboxes.contains(&mailbox) {
                            self.mailboxes.push(mailbox);
                        }
                        decided(log, "RCPT", self.session.accept());
                    }
                    Err(reply) => {
                        log.line(format_args!("RCPT TO:<{}> refused: {}", to.escape_debug(), reply.code()));
                        decided(log, "RCPT", self.session.reject(reply));
                    }
                }
            }
            Event::DataStart { chunking } => {
                let verb = if chunking { "BDAT" } else { "DATA" };
                match self.begin_message() {
                    Ok(message) => {
                        log.line(format_args!(
                            "{verb} started, id {}, {} mailbox(es)",
                            message.unique.id,
                            self.mailboxes.len()
                        ));
                        self.message = Some(message);
                        decided(log, verb, self.session.accept());
                    }
                    Err(e) => {
                        log.line(format_args!("{verb} refused: cannot create message files: {e}"));
                        decided(log, verb, self.session.reject(local_error()));
                    }
                }
            }
            Event::MessageData(bytes) => {
                if let Some(m) = &mut self.message {
                    m.delivery.write(&bytes);
                }
            }
            Event::MessageEnd(end) => {
                let Some(Message { unique, delivery }) = self.message.take() else {
                    log.line(format_args!("message ended without DataStart (bug)"));
                    decided(log, "message", self.session.reject(local_error()));
                    return;
                };
                match delivery.commit() {
                    Ok(paths) => {
                        log.line(format_args!(
                            "message {} delivered: {} octets to {} mailbox(es){}",
                            unique.id,
                            end.size,
                            paths.len(),
                            if end.normalized { " (bare line endings normalised)" } else { "" }
                        ));
                        self.delivered += 1;
                        let text = format!("Ok: queued as {}", unique.id);
                        decided(
                            log,
                            "message",
                            self.session.accept_with(Reply::new(250, EnhancedStatus::new(2, 0, 0), text)),
                        );
                    }
                    Err(e) => {
                        log.line(format_args!("message {} not delivered: {e}", unique.id));
                        decided(log, "message", self.session.reject(local_error()));
                    }
                }
                self.end_transaction();
            }
            Event::MessageAborted(reason) => {
                if let Some(m) = self.message.take() {
                    log.line(format_args!("message {} aborted: {reason:?}", m.unique.id));
                } else {
                    log.line(format_args!("message aborted: {reason:?}"));
                }
                self.end_transaction();
            }
            Event::Reset => {
                log.line(format_args!("transaction reset"));
                self.end_transaction();
            }
            Event::StartTls => {
                // Config::starttls is false in this version, so the session never offers
                // it; a TLS-capable version runs the handshake here.
                log.line(format_args!("STARTTLS requested but TLS is not configured"));
            }
            Event::Auth(start) => {
                // No SASL mechanisms are configured, so the session answers AUTH itself.
                log.line(format_args!("AUTH {} refused: not configured", start.mechanism));
                let reply =
                    Reply::new(504, EnhancedStatus::new(5, 5, 4), "Error: unrecognized authentication type");
                decided(log, "AUTH", self.session.reject(reply));
            }
            Event::AuthResponse(_) => {
                decided(log, "AUTH", self.session.auth_fail());
            }
            Event::AuthAborted => log.line(format_args!("AUTH aborted")),
            Event::Refused { command, reply } => {
                log.line(format_args!("refused {command}: {}", reply.to_string().trim_end()))
            }
            Event::Violation(v) => log.line(format_args!("violation: {v:?}")),
            Event::Closed(reason) => log.line(format_args!("session closed: {reason:?}")),
            other => log.line(format_args!("unhandled event {other:?}")),
        }
    }

    /// Opens the message files and writes the `Received:` header into them.
    fn begin_message(&mut self) -> io::Result<Message> {
        let now = SystemTime::now();
        let unique = self.gateway.maildir.unique(now);
        let header = self.session.received_header(self.peer.ip(), &unique.id, now);
        let delivery = self.gateway.maildir.begin(&self.mailboxes, &unique, header.as_bytes())?;
        Ok(Message { unique, delivery })
    }

    /// Forgets the envelope; an unfinished message's temporary files are removed.
    fn end_transaction(&mut self) {
        self.in_transaction = false;
        self.mailboxes.clear();
        self.message = None;
    }
}

/// Logs a decision the session refused: that is a bug in this program, not the client's.
fn decided(log: Log, what: &str, result: Result<(), postern::smtp::Error>) {
    if let Err(e) = result {
        log.line(format_args!("BUG: {what} decision refused by the session: {e}"));
    }
}

/// `451 4.3.0`: a local problem; the client keeps the message and retries later.
fn local_error() -> Reply {
    Reply::new(451, EnhancedStatus::new(4, 3, 0), "Error: local error in processing, try again later")
}

/// Closes politely: our side first, then read (and drop) what the client still sends
/// for a moment. Closing a socket with unread input makes the kernel send a reset,
/// which can destroy the last reply before the client has read it.
pub(crate) fn linger_close(stream: &TcpStream) {
    let _ = stream.shutdown(Direction::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut sink = [0_u8; 4096];
    let mut budget = 64 * 1024_usize;
    let mut reader = stream;
    while budget > 0 {
        match reader.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => budget = budget.saturating_sub(n),
        }
    }
}
