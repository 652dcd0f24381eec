//! One SMTP connection: drives a [`postern::smtp::Session`] over a blocking
//! [`TcpStream`] (through a [`Transport`]: plaintext or TLS) and answers its decisions.
//!
//! The loop is the one the `Session` docs describe:
//!
//! 1. drain [`Session::poll_event`], answering each decision at once;
//! 2. write out [`Session::poll_transmit`];
//! 3. on [`Event::StartTls`] (after the `220` went out in plaintext), run the TLS
//!    handshake and call [`Session::tls_established`];
//! 4. stop if [`Session::is_closed`];
//! 5. read (only while [`Session::wants_read`]) with a timeout of
//!    [`Session::poll_timeout`]; bytes go to [`Session::receive`], end of stream to
//!    [`Session::handle_eof`], a timeout to [`Session::handle_timeout`].
//!
//! The read timeout is capped at one second so the thread also notices a shutdown.
//!
//! Three kinds of listener share this code ([`Port`]): the MX port (`--smtp`: STARTTLS,
//! no AUTH, mail for the accepted domains only), submission (`--submission`: STARTTLS,
//! AUTH (see `auth.rs`) only inside TLS, AUTH required before MAIL) and smtps (`--smtps`: like
//! submission, TLS from the first byte, RFC 8314).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use postern::sasl::{Exchange, Failure, Step};
use postern::smtp::{Address, Config, EnhancedStatus, Event, Reply, Session};
use rustls::ServerConfig;

use crate::admission::{self, GatewayAdmission};
use crate::log::Log;
use crate::maildir::{Delivery, Maildir, Unique};
use crate::policy::Policy;
use crate::shutdown::Shutdown;
use crate::transport::{Input, Transport};
use crate::users::Users;

/// How often a connection thread wakes up to check for shutdown.
const TICK: Duration = Duration::from_secs(1);
/// Bytes read from the socket at a time (one `receive` call).
const READ_BUFFER: usize = 16 * 1024;
/// A client that stops reading our replies for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a TLS handshake may take (STARTTLS: or less, if the session's own
/// deadline comes first).
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the connections share.
#[derive(Debug)]
pub(crate) struct Gateway {
    /// Which recipients are accepted.
    pub(crate) policy: Policy,
    /// Where messages go.
    pub(crate) maildir: Maildir,
    /// The accounts that may authenticate on submission (the POP3 users).
    pub(crate) users: Arc<Users>,
    /// Set by Ctrl-C; shared with the POP3 side.
    pub(crate) shutdown: Arc<Shutdown>,
    /// Per-client rates and the penalty box; shared with every listener.
    pub(crate) admission: Arc<Mutex<GatewayAdmission>>,
    /// SPF/DKIM/DMARC/ARC verification on `--smtp`, DKIM signing on submission.
    pub(crate) msgauth: crate::msgauth::MsgAuth,
}

/// What one SMTP listener offers.
#[derive(Debug)]
pub(crate) struct Port {
    /// `smtp`, `submission` or `smtps`, for the log.
    pub(crate) name: &'static str,
    /// The session configuration, shared by the sessions of this listener.
    pub(crate) config: Arc<Config>,
    /// Submission rules (RFC 6409): AUTH before MAIL; once authenticated, any recipient
    /// domain is accepted by the envelope (delivered only to the accepted domains).
    pub(crate) submission: bool,
    /// The TLS server configuration, for STARTTLS or implicit TLS.
    pub(crate) tls: Arc<ServerConfig>,
    /// TLS from the first byte (RFC 8314) instead of STARTTLS.
    pub(crate) implicit: bool,
}

/// Serves one accepted connection until the session ends; logs as `conn=<id>`.
pub(crate) fn serve(gateway: &Gateway, port: &Port, stream: TcpStream, peer: SocketAddr, id: u64) {
    let log = Log::conn(id);
    log.line(format_args!("connect from {peer} on {}", port.name));
    let started = Instant::now();
    let setup = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_nodelay(true))
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)));
    if let Err(e) = setup {
        log.line(format_args!("socket setup failed: {e}"));
        return;
    }
    let mut transport = Transport::new(stream);
    let session = if port.implicit {
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        match transport.start_tls(Arc::clone(&port.tls), deadline, &|| gateway.shutdown.is_requested()) {
            Ok(info) => {
                log.line(format_args!("TLS established: {}", crate::tls::describe(&info)));
                crate::audit::tls(id, &info);
                Session::new_implicit_tls(Arc::clone(&port.config), info, Instant::now())
            }
            Err(e) => {
                log.line(format_args!("TLS handshake failed: {e}"));
                transport.close();
                log.line(format_args!(
                    "disconnect from {peer}, 0 message(s) delivered, {:.1}s",
                    started.elapsed().as_secs_f64()
                ));
                return;
            }
        }
    } else {
        Session::new(Arc::clone(&port.config), Instant::now())
    };
    let mut conn = Connection {
        gateway,
        port,
        log,
        peer,
        session,
        transport,
        starttls: false,
        sasl: None,
        in_transaction: false,
        mailboxes: Vec::new(),
        message: None,
        held: None,
        mail_from: String::new(),
        delivered: 0,
    };
    let outcome = conn.run();
    let Connection { transport, delivered, .. } = conn;
    match outcome {
        Ok(()) => transport.close(),
        Err(e) => {
            log.line(format_args!("connection error: {e}"));
            transport.abort();
        }
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
    port: &'a Port,
    log: Log,
    peer: SocketAddr,
    session: Session,
    transport: Transport,
    /// STARTTLS was accepted: run the handshake once the `220` is out.
    starttls: bool,
    /// The SASL exchange of an AUTH command in progress.
    sasl: Option<Exchange>,
    /// MAIL was accepted and the transaction has not ended yet.
    in_transaction: bool,
    /// Mailboxes of the recipients accepted in this transaction, without duplicates.
    mailboxes: Vec<String>,
    /// The message being received, between `DataStart` and `MessageEnd`.
    message: Option<Message>,
    /// A message held in memory for message authentication (instead of `message`).
    held: Option<crate::msgauth::Held>,
    /// The MAIL FROM address of the transaction (empty for the null sender).
    mail_from: String,
    delivered: u64,
}

impl Connection<'_> {
    fn run(&mut self) -> io::Result<()> {
        let mut input = Vec::with_capacity(READ_BUFFER);
        let mut out = Vec::with_capacity(1024);
        loop {
            while let Some(event) = self.session.poll_event() {
                self.handle(event);
            }
            if self.session.poll_transmit(&mut out) > 0 {
                self.transport.write(&out)?;
                out.clear();
            }
            if std::mem::take(&mut self.starttls) {
                self.upgrade();
                continue;
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
                // Decisions are answered synchronously above and the TLS handshake runs
                // to its end before the loop goes on, so the session only stops reading
                // when it is about to close.
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
            match self.transport.read(&mut input, wait) {
                Ok(Input::Data) => {
                    self.session.receive(&input, Instant::now());
                    input.clear();
                }
                Ok(Input::Eof) => self.session.handle_eof(Instant::now()),
                // Does nothing before the deadline.
                Ok(Input::Timeout) => self.session.handle_timeout(Instant::now()),
                Err(e) => {
                    self.log.line(format_args!("read error: {e}"));
                    self.session.handle_eof(Instant::now());
                }
            }
        }
    }

    /// STARTTLS: the `220` is out; the handshake must complete before the session's
    /// deadline and within [`HANDSHAKE_TIMEOUT`]. A failed handshake ends the session
    /// (nothing more can be said to the client in plaintext).
    fn upgrade(&mut self) {
        let now = Instant::now();
        let limit = now + HANDSHAKE_TIMEOUT;
        let deadline = self.session.poll_timeout().map_or(limit, |d| d.min(limit));
        let shutdown = &self.gateway.shutdown;
        match self.transport.start_tls(Arc::clone(&self.port.tls), deadline, &|| shutdown.is_requested()) {
            Ok(info) => {
                self.log.line(format_args!("STARTTLS: TLS established: {}", crate::tls::describe(&info)));
                crate::audit::tls(self.log.id(), &info);
                // A new session state: everything from before the handshake is gone.
                self.end_transaction();
                self.sasl = None;
                decided(self.log, "STARTTLS", self.session.tls_established(info, Instant::now()));
            }
            Err(e) => {
                self.log.line(format_args!("STARTTLS: TLS handshake failed: {e}"));
                self.session.handle_eof(Instant::now());
                // Drains the Closed event into the log.
                while let Some(event) = self.session.poll_event() {
                    self.handle(event);
                }
            }
        }
    }

    fn host(&self) -> &str {
        &self.port.config.hostname
    }

    fn handle(&mut self, event: Event) {
        let log = self.log;
        crate::audit::smtp_event(log.id(), &event);
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
                    "MAIL FROM:<{}> size={:?} smtputf8={}{}",
                    from.escape_debug(),
                    mail.size,
                    mail.smtputf8,
                    self.session
                        .authenticated()
                        .map(|who| format!(" authenticated as {who:?}"))
                        .unwrap_or_default()
                ));
                self.in_transaction = true;
                self.mail_from = from;
                decided(log, "MAIL", self.session.accept());
            }
            Event::Rcpt(rcpt) => {
                let to = rcpt.to.to_string();
                let user = self.session.authenticated();
                let rate =
                    admission::lock(&self.gateway.admission).check_rcpt(self.peer.ip(), user, Instant::now());
                if let Some(wait) = rate.retry_after() {
                    log.line(format_args!("RCPT TO:<{}> deferred: over --rcpt-rate", to.escape_debug()));
                    crate::audit::rate_limited(log.id(), self.peer.ip(), "rcpt-rate", wait);
                    decided(log, "RCPT", self.session.reject(rate_limited(wait)));
                    return;
                }
                match self.recipient(&rcpt.to) {
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
                        crate::audit::rejected(log.id(), "rcpt", &reply.to_string());
                        decided(log, "RCPT", self.session.reject(reply));
                    }
                }
            }
            Event::DataStart { chunking } => {
                let verb = if chunking { "BDAT" } else { "DATA" };
                let user = self.session.authenticated();
                let rate = admission::lock(&self.gateway.admission).check_message(
                    self.peer.ip(),
                    user,
                    Instant::now(),
                );
                if let Some(wait) = rate.retry_after() {
                    log.line(format_args!("{verb} deferred: over --msg-rate"));
                    crate::audit::rate_limited(log.id(), self.peer.ip(), "msg-rate", wait);
                    decided(log, verb, self.session.reject(rate_limited(wait)));
                    return;
                }
                if self.gateway.msgauth.holds(self.port.submission, self.session.authenticated().is_some()) {
                    let held = self.hold_message();
                    log.line(format_args!(
                        "{verb} started, id {}, held for message authentication",
                        held.id()
                    ));
                    self.held = Some(held);
                    decided(log, verb, self.session.accept());
                    return;
                }
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
                if let Some(h) = &mut self.held {
                    h.push(&bytes);
                } else if let Some(m) = &mut self.message {
                    m.delivery.write(&bytes);
                }
            }
            Event::MessageEnd(end) => {
                if let Some(held) = self.held.take() {
                    let helo = self.session.helo().map(|h| h.name.clone()).unwrap_or_default();
                    let g = self.gateway;
                    let out = crate::msgauth::finish(
                        &g.msgauth,
                        &g.maildir,
                        log,
                        held,
                        &self.mailboxes,
                        self.peer.ip(),
                        &helo,
                        self.port.submission,
                    );
                    self.delivered += u64::from(out.delivered);
                    let result = if out.reply.code() < 400 {
                        self.session.accept_with(out.reply)
                    } else {
                        self.session.reject(out.reply)
                    };
                    decided(log, "message", result);
                    self.end_transaction();
                    return;
                }
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
                        crate::audit::message(log.id(), end.size, &unique.id, "");
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
                // The session has queued the `220`; the loop writes it out, then runs
                // the handshake (`upgrade`).
                log.line(format_args!("STARTTLS"));
                self.starttls = true;
            }
            Event::Auth(start) => {
                // Config::auth_mechanisms is empty on the MX port (the session answers
                // AUTH itself there), and auth::mechanisms() on submission and smtps.
                let gateway = self.gateway;
                match crate::auth::begin(&gateway.users, &start.mechanism, &self.transport) {
                    Ok(mut exchange) => {
                        let initial = start.initial_response.as_ref().map(|d| d.as_bytes());
                        let step = exchange.start(initial, &*gateway.users);
                        self.sasl = Some(exchange);
                        self.sasl_step(step);
                    }
                    Err(e) => {
                        log.line(format_args!("AUTH {:?} refused: {e}", start.mechanism));
                        let reply = Reply::new(
                            504,
                            EnhancedStatus::new(5, 5, 4),
                            "Error: unrecognized authentication type",
                        );
                        decided(log, "AUTH", self.session.reject(reply));
                    }
                }
            }
            Event::AuthResponse(response) => {
                let gateway = self.gateway;
                match self.sasl.as_mut() {
                    Some(exchange) => {
                        let step = exchange.respond(response.as_bytes(), &*gateway.users);
                        self.sasl_step(step);
                    }
                    None => {
                        log.line(format_args!("SASL response without an exchange (bug)"));
                        decided(log, "AUTH", self.session.auth_fail());
                    }
                }
            }
            Event::AuthAborted => {
                self.sasl = None;
                log.line(format_args!("AUTH aborted"));
            }
            Event::Refused { command, reply } => {
                log.line(format_args!("refused {command}: {}", reply.to_string().trim_end()))
            }
            Event::Violation(v) => log.line(format_args!("violation: {v:?}")),
            Event::Closed(reason) => log.line(format_args!("session closed: {reason:?}")),
            other => log.line(format_args!("unhandled event {other:?}")),
        }
    }

    /// The recipient policy of this port: `Ok(mailbox)` or the refusal.
    ///
    /// On the MX port, the accepted domains only ([`Policy::recipient`]). On submission
    /// (the client has authenticated, or MAIL would have been refused), other domains are
    /// relaying, which this demo does not implement: `554 5.7.1`, said as such.
    fn recipient(&self, to: &Address) -> Result<String, Reply> {
        let policy = &self.gateway.policy;
        let ours = policy.is_local_domain(to.domain()) || to.domain().is_empty() && to.is_postmaster();
        if self.port.submission && !ours {
            let text = format!("<{}>: relay not implemented in this demo", printable(&to.to_string()));
            return Err(Reply::new(554, EnhancedStatus::new(5, 7, 1), text));
        }
        policy.recipient(to)
    }

    /// Answers the session with what the SASL exchange says. Every failure gets the same
    /// `535 5.7.8`, whatever the reason (an unknown user and a wrong password alike; an
    /// authorization identity other than the user's own is refused the same way).
    fn sasl_step(&mut self, step: Step) {
        let log = self.log;
        let mechanism = self.sasl.as_ref().map_or("?", |x| x.mechanism().name());
        let step = crate::auth::second_factor(&self.gateway.users, step);
        match step {
            Step::Challenge(challenge) => decided(log, "AUTH", self.session.auth_challenge(&challenge)),
            Step::Success(who) => {
                let users = &self.gateway.users;
                let name = users.canonical(who.identity()).unwrap_or(who.identity()).to_owned();
                log.line(format_args!("AUTH {mechanism}: authenticated as {name:?}"));
                crate::audit::auth(log.id(), mechanism, &name, true);
                self.sasl = None;
                decided(log, "AUTH", self.session.auth_succeed(name));
            }
            Step::SecondFactor { .. } | Step::Failure(_) => {
                let why = match step {
                    Step::Failure(Failure::Credentials) => "invalid credentials".to_owned(),
                    Step::Failure(f) => format!("{f:?}"),
                    _ => "second factor unresolved (bug)".to_owned(),
                };
                let claimed = self.sasl.as_ref().and_then(|x| x.claimed_identity()).unwrap_or_default();
                log.line(format_args!("AUTH {mechanism} failed for {claimed:?}: {why}"));
                crate::audit::auth(log.id(), mechanism, claimed, false);
                self.sasl = None;
                self.violation();
                decided(log, "AUTH", self.session.auth_fail());
            }
        }
    }

    /// A failed login: counts against the client in the penalty box (`--auth-failures-ban`).
    fn violation(&self) {
        let decision =
            admission::lock(&self.gateway.admission).record_violation(self.peer.ip(), Instant::now());
        if let Some(wait) = decision.retry_after() {
            self.log.line(format_args!(
                "{} banned for {}s: failed logins",
                self.peer.ip(),
                admission::secs(wait)
            ));
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
        self.held = None;
        self.mail_from.clear();
    }

    /// Starts a message held in memory for [`crate::msgauth::finish`].
    fn hold_message(&mut self) -> crate::msgauth::Held {
        let now = SystemTime::now();
        let unique = self.gateway.maildir.unique(now);
        let header = self.session.received_header(self.peer.ip(), &unique.id, now);
        crate::msgauth::Held::new(unique, header, self.mail_from.clone())
    }
}

/// Logs a decision the session refused: that is a bug in this program, not the client's.
fn decided(log: Log, what: &str, result: Result<(), postern::smtp::Error>) {
    if let Err(e) = result {
        log.line(format_args!("BUG: {what} decision refused by the session: {e}"));
    }
}

/// `450 4.7.1` with the wait: a command over a per-client rate (the session goes on).
fn rate_limited(wait: Duration) -> Reply {
    postern::access::admission::rate_limited_reply(wait)
}

/// `451 4.3.0`: a local problem; the client keeps the message and retries later.
fn local_error() -> Reply {
    Reply::new(451, EnhancedStatus::new(4, 3, 0), "Error: local error in processing, try again later")
}

/// The address for a reply text: control characters become `?`.
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}
