//! One POP3 connection: drives a [`postern::pop3::Session`] over a blocking
//! [`TcpStream`] (through a [`Transport`]: plaintext or TLS) and answers its decisions
//! with [`Users`] and a [`MaildirDrop`].
//!
//! The loop is the one the `Session` docs describe, as in `smtp.rs`:
//!
//! 1. drain [`Session::poll_event`], answering each decision at once;
//! 2. write out [`Session::poll_transmit`];
//! 3. on [`Event::StartTls`] (after the `+OK` went out in plaintext), run the TLS
//!    handshake and call [`Session::tls_established`];
//! 4. stop if [`Session::is_closed`];
//! 5. read (only while [`Session::wants_read`]) with a timeout of
//!    [`Session::poll_timeout`]; bytes go to [`Session::receive`], end of stream to
//!    [`Session::handle_eof`], a timeout to [`Session::handle_timeout`].
//!
//! `--pop3` offers STLS (RFC 2595); `--pop3s` is TLS from the first byte (RFC 8314).
//! Logins (USER/PASS, APOP, AUTH: see `auth.rs`) need TLS unless `--allow-plaintext-auth`.
//!
//! RETR and TOP are streamed: each 64 KiB read from the file goes through
//! [`Session::message_data`] and straight out to the socket, so neither this program nor
//! the session ever holds a whole message. (`postern::pop3::serve_maildrop` is not used:
//! it pushes the whole message into the session's output before the caller can write
//! any of it, and it drops the I/O error of a failed UPDATE, which belongs in the log.)
//!
//! On Ctrl-C the POP3 session has no polite close (the protocol has no unsolicited
//! reply), so a connection is dropped: at once before login, at the end of the grace
//! period after it (time for a client to finish and QUIT). Dropping deletes nothing,
//! because only QUIT enters the UPDATE state.

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postern::pop3::{AuthStart, Config, Event, Maildrop as _, Reply, ResponseCode, Session};
use postern::sasl::{Exchange, Failure, Step};
use rustls::ServerConfig;

use crate::admission::{self, GatewayAdmission};
use crate::log::Log;
use crate::maildrop::{MaildirDrop, OpenError};
use crate::shutdown::Shutdown;
use crate::smtp::HANDSHAKE_TIMEOUT;
use crate::transport::{Input, Transport};
use crate::users::Users;

/// How often a connection thread wakes up to check for shutdown.
const TICK: Duration = Duration::from_secs(1);
/// Bytes read from the socket at a time (one `receive` call).
const READ_BUFFER: usize = 16 * 1024;
/// Bytes read from a message file at a time while streaming RETR/TOP.
const MESSAGE_CHUNK: usize = 64 * 1024;
/// A client that stops reading our replies for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything the POP3 connections share.
#[derive(Debug)]
pub(crate) struct Pop3Gateway {
    /// The session configuration, shared by all sessions.
    pub(crate) config: Arc<Config>,
    /// The accounts (shared with SMTP submission).
    pub(crate) users: Arc<Users>,
    /// The root of the Maildirs (`<root>/<user>/`).
    pub(crate) maildir: PathBuf,
    /// Set by Ctrl-C.
    pub(crate) shutdown: Arc<Shutdown>,
    /// The TLS server configuration, for STLS and POP3S.
    pub(crate) tls: Arc<ServerConfig>,
    /// The penalty box for failed logins; shared with every listener.
    pub(crate) admission: Arc<Mutex<GatewayAdmission>>,
}

/// The one reply to every failed login, whatever failed: an unknown user and a wrong
/// password must look the same.
fn invalid_credentials() -> Reply {
    Reply::err(Some(ResponseCode::Auth), "invalid credentials")
}

/// Serves one accepted connection until the session ends; logs as `conn=<id>`.
/// `implicit`: TLS from the first byte (POP3S).
pub(crate) fn serve(gateway: &Pop3Gateway, implicit: bool, stream: TcpStream, peer: SocketAddr, id: u64) {
    let log = Log::conn(id);
    log.line(format_args!("pop3 connect from {peer} on {}", if implicit { "pop3s" } else { "pop3" }));
    let started = Instant::now();
    let setup = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_nodelay(true))
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)));
    if let Err(e) = setup {
        log.line(format_args!("socket setup failed: {e}"));
        return;
    }
    let random = match random_bytes() {
        Ok(random) => random,
        Err(e) => {
            log.line(format_args!("no randomness for the APOP timestamp: {e}"));
            if !implicit {
                let mut s = &stream;
                let _ = s.write_all(b"-ERR [SYS/TEMP] temporary problem, try again later\r\n");
            }
            return;
        }
    };
    let mut transport = Transport::new(stream);
    let session = if implicit {
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        match transport.start_tls(Arc::clone(&gateway.tls), deadline, &|| gateway.shutdown.is_requested()) {
            Ok(info) => {
                log.line(format_args!("TLS established: {}", crate::tls::describe(&info)));
                crate::audit::tls(id, &info);
                Session::new_implicit_tls(Arc::clone(&gateway.config), random, info, Instant::now())
            }
            Err(e) => {
                log.line(format_args!("TLS handshake failed: {e}"));
                transport.close();
                log.line(format_args!(
                    "pop3 disconnect from {peer}, 0 message(s) retrieved, 0 deleted, {:.1}s",
                    started.elapsed().as_secs_f64()
                ));
                return;
            }
        }
    } else {
        Session::new(Arc::clone(&gateway.config), random, Instant::now())
    };
    let mut conn = Connection {
        gateway,
        log,
        peer,
        session,
        transport,
        out: Vec::with_capacity(MESSAGE_CHUNK + 1024),
        starttls: false,
        maildrop: None,
        sasl: None,
        retrieved: 0,
        deleted: 0,
    };
    let outcome = conn.run();
    let Connection { transport, retrieved, deleted, maildrop, .. } = conn;
    // Unlocks the maildrop (if the session ended without UPDATE, nothing was deleted).
    drop(maildrop);
    match outcome {
        Ok(()) => transport.close(),
        Err(e) => {
            log.line(format_args!("connection error: {e}"));
            transport.abort();
        }
    }
    log.line(format_args!(
        "pop3 disconnect from {peer}, {retrieved} message(s) retrieved, {deleted} deleted, {:.1}s",
        started.elapsed().as_secs_f64()
    ));
}

struct Connection<'a> {
    gateway: &'a Pop3Gateway,
    log: Log,
    peer: SocketAddr,
    session: Session,
    transport: Transport,
    /// Bytes from `poll_transmit`, written out and cleared at once.
    out: Vec<u8>,
    /// STLS was accepted: run the handshake once the `+OK` is out.
    starttls: bool,
    /// The locked maildrop, from a successful login until the connection ends.
    maildrop: Option<MaildirDrop>,
    /// The SASL exchange of an AUTH command in progress.
    sasl: Option<Exchange>,
    retrieved: u64,
    deleted: usize,
}

impl Connection<'_> {
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

    fn run(&mut self) -> io::Result<()> {
        let mut input = Vec::with_capacity(READ_BUFFER);
        loop {
            while let Some(event) = self.session.poll_event() {
                self.handle(event)?;
            }
            self.flush()?;
            if std::mem::take(&mut self.starttls) {
                self.upgrade()?;
                continue;
            }
            if self.session.is_closed() {
                return Ok(());
            }
            let now = Instant::now();
            let logged_in = self.session.identity().is_some();
            if self.gateway.shutdown.must_close(logged_in, now) {
                // POP3 has no unsolicited reply and the session no shutdown method: drop
                // the connection. Nothing is deleted (no QUIT, so no UPDATE).
                self.log.line(format_args!("closing: server shutting down (nothing deleted)"));
                return Ok(());
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

    /// STLS: the `+OK` is out; the handshake must complete within [`HANDSHAKE_TIMEOUT`]
    /// (and before the session's idle deadline). A failed handshake ends the session.
    fn upgrade(&mut self) -> io::Result<()> {
        let now = Instant::now();
        let limit = now + HANDSHAKE_TIMEOUT;
        let deadline = self.session.poll_timeout().map_or(limit, |d| d.min(limit));
        let shutdown = &self.gateway.shutdown;
        match self.transport.start_tls(Arc::clone(&self.gateway.tls), deadline, &|| shutdown.is_requested()) {
            Ok(info) => {
                self.log.line(format_args!("STLS: TLS established: {}", crate::tls::describe(&info)));
                crate::audit::tls(self.log.id(), &info);
                self.sasl = None;
                decided(self.log, "STLS", self.session.tls_established(info, Instant::now()));
            }
            Err(e) => {
                self.log.line(format_args!("STLS: TLS handshake failed: {e}"));
                self.session.handle_eof(Instant::now());
                while let Some(event) = self.session.poll_event() {
                    self.handle(event)?;
                }
            }
        }
        Ok(())
    }

    /// Writes out what the session has to send.
    fn flush(&mut self) -> io::Result<()> {
        if self.session.poll_transmit(&mut self.out) > 0 {
            let written = self.transport.write(&self.out);
            self.out.clear();
            written?;
        }
        Ok(())
    }

    /// Answers one event. An `Err` is a socket error while streaming a message.
    fn handle(&mut self, event: Event) -> io::Result<()> {
        let log = self.log;
        crate::audit::pop3_event(log.id(), &event);
        match event {
            Event::Login { user, password } => {
                let name = self.gateway.users.check_password(&user, password.as_bytes()).map(str::to_owned);
                self.login("USER/PASS", &user, name);
            }
            Event::Apop { user, timestamp, digest } => {
                let name = self.gateway.users.check_apop(&user, &timestamp, &digest).map(str::to_owned);
                self.login("APOP", &user, name);
            }
            Event::Auth(AuthStart { mechanism, initial_response, .. }) => {
                let gateway = self.gateway;
                match crate::auth::begin(&gateway.users, &mechanism, &self.transport) {
                    Ok(mut exchange) => {
                        let step =
                            exchange.start(initial_response.as_ref().map(|d| d.as_bytes()), &*gateway.users);
                        self.sasl = Some(exchange);
                        self.sasl_step(step);
                    }
                    Err(e) => {
                        log.line(format_args!("AUTH {mechanism:?} refused: {e}"));
                        let reply = Reply::err(None, "unsupported authentication mechanism");
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
                        decided(log, "AUTH", self.session.reject(invalid_credentials()));
                    }
                }
            }
            Event::AuthAborted => {
                self.sasl = None;
                log.line(format_args!("AUTH aborted by the client"));
            }
            Event::Retrieve { index, top_lines } => self.retrieve(index, top_lines)?,
            Event::Update { deleted } => {
                let n = deleted.len();
                // Taken out so the lock is released (when it drops, below) before the
                // reply: a client that logs in again right after QUIT finds it free.
                let Some(mut maildrop) = self.maildrop.take() else {
                    log.line(format_args!("UPDATE without a maildrop (bug)"));
                    let reply = Reply::err(Some(ResponseCode::SysTemp), "maildrop not available");
                    decided(log, "UPDATE", self.session.reject(reply));
                    return Ok(());
                };
                // The UPDATE state: remove exactly the marked files, then +OK and close.
                let committed = maildrop.commit(&deleted);
                drop(maildrop);
                match committed {
                    Ok(()) => {
                        self.deleted = n;
                        log.line(format_args!("UPDATE: {n} message(s) deleted"));
                        decided(log, "UPDATE", self.session.accept());
                    }
                    Err(e) => {
                        log.line(format_args!("UPDATE failed: some of {n} message(s) not removed: {e}"));
                        let reply =
                            Reply::err(Some(ResponseCode::SysTemp), "some deleted messages not removed");
                        decided(log, "UPDATE", self.session.reject(reply));
                    }
                }
            }
            Event::StartTls => {
                // The session has queued the `+OK`; the loop writes it out, then runs the
                // handshake (`upgrade`).
                log.line(format_args!("STLS"));
                self.starttls = true;
            }
            Event::Violation(v) => log.line(format_args!("violation: {v:?}")),
            Event::Closed(reason) => {
                // Unlock at once (nothing is deleted here: only UPDATE deletes).
                self.maildrop = None;
                log.line(format_args!("pop3 session closed: {reason:?}"));
            }
            other => log.line(format_args!("unhandled event {other:?}")),
        }
        Ok(())
    }

    /// Answers the session with what the SASL exchange says; a success logs in (as
    /// `AUTH <mechanism>`), every failure gets the one [`invalid_credentials`] reply.
    fn sasl_step(&mut self, step: Step) {
        let log = self.log;
        let mechanism = self.sasl.as_ref().map_or("?", |x| x.mechanism().name());
        let step = crate::auth::second_factor(&self.gateway.users, step);
        let how = format!("AUTH {mechanism}");
        match step {
            Step::Challenge(challenge) => decided(log, "AUTH", self.session.auth_challenge(&challenge)),
            Step::Success(who) => {
                self.sasl = None;
                let name = self.gateway.users.canonical(who.identity()).map(str::to_owned);
                self.login(&how, who.identity(), name);
            }
            Step::SecondFactor { .. } | Step::Failure(_) => {
                if let Step::Failure(f) = step
                    && f != Failure::Credentials
                {
                    log.line(format_args!("{how}: {f:?}"));
                }
                let claimed = self.sasl.take().and_then(|x| x.claimed_identity().map(str::to_owned));
                self.login(&how, claimed.as_deref().unwrap_or("(SASL)"), None);
            }
        }
    }

    /// Ends a login attempt: `name` is the account if the credentials were right. Locks
    /// and lists its maildrop, or rejects.
    fn login(&mut self, how: &str, user: &str, name: Option<String>) {
        let log = self.log;
        let Some(name) = name else {
            // Deliberately the same reply for an unknown user and a wrong password.
            log.line(format_args!("login failed: {how} for {user:?}: invalid credentials"));
            crate::audit::auth(log.id(), how, user, false);
            self.violation();
            decided(log, how, self.session.reject(invalid_credentials()));
            return;
        };
        crate::audit::auth(log.id(), how, &name, true);
        match MaildirDrop::open(&self.gateway.maildir, &name) {
            Ok(maildrop) => {
                let listing = maildrop.listing();
                log.line(format_args!(
                    "login: {how} as {name:?}, {} message(s), {} octets",
                    listing.len(),
                    maildrop.total_size()
                ));
                self.maildrop = Some(maildrop);
                decided(log, how, self.session.accept_login(name, listing));
            }
            Err(OpenError::InUse) => {
                log.line(format_args!("login refused: {how} as {name:?}: maildrop is locked"));
                let reply = Reply::err(Some(ResponseCode::InUse), "maildrop is locked");
                decided(log, how, self.session.reject(reply));
            }
            Err(OpenError::Io(e)) => {
                log.line(format_args!("login refused: {how} as {name:?}: cannot open the maildrop: {e}"));
                let reply = Reply::err(Some(ResponseCode::SysTemp), "cannot open the maildrop, try later");
                decided(log, how, self.session.reject(reply));
            }
        }
    }

    /// RETR (`top_lines` is `None`) or TOP: streams message `index` in 64 KiB pieces,
    /// writing each to the socket before reading the next. A message sent completely
    /// by RETR is marked seen (moved from `new/` to `cur/`).
    fn retrieve(&mut self, index: usize, top_lines: Option<u32>) -> io::Result<()> {
        let log = self.log;
        let verb = if top_lines.is_some() { "TOP" } else { "RETR" };
        let mut chunk = vec![0_u8; MESSAGE_CHUNK];
        let mut offset = 0_u64;
        loop {
            let read = match self.maildrop.as_mut() {
                Some(maildrop) => maildrop.read(index, offset, &mut chunk),
                None => Err(io::Error::other("no maildrop (bug)")),
            };
            let n = match read {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Before any data: -ERR [SYS/TEMP]; after some: the session closes.
                    log.line(format_args!("{verb} {}: cannot read the message: {e}", index + 1));
                    let reply = Reply::err(Some(ResponseCode::SysTemp), "cannot read message");
                    decided(log, verb, self.session.reject(reply));
                    return Ok(());
                }
            };
            if n == 0 {
                break;
            }
            offset += n as u64;
            let more = self.session.message_data(chunk.get(..n).unwrap_or_default());
            // Out to the socket before the next read: the message is never held whole.
            self.flush()?;
            match more {
                Ok(true) => {}
                Ok(false) => break, // TOP has its lines.
                Err(e) => {
                    log.line(format_args!("BUG: {verb} data refused by the session: {e}"));
                    return Ok(());
                }
            }
        }
        decided(log, verb, self.session.message_end());
        self.flush()?;
        if top_lines.is_some() {
            log.line(format_args!("TOP {} {}: sent", index + 1, top_lines.unwrap_or(0)));
            return Ok(());
        }
        self.retrieved += 1;
        match self.maildrop.as_mut().map(|m| m.mark_seen(index)) {
            Some(Ok(Some(moved))) => log.line(format_args!(
                "RETR {}: sent {offset} octets from the file; seen, moved to {}",
                index + 1,
                moved.display()
            )),
            Some(Ok(None)) | None => {
                log.line(format_args!("RETR {}: sent {offset} octets from the file", index + 1))
            }
            Some(Err(e)) => log.line(format_args!("RETR {}: sent, but not marked seen: {e}", index + 1)),
        }
        Ok(())
    }
}

/// Logs a decision the session refused: that is a bug in this program, not the client's.
fn decided(log: Log, what: &str, result: Result<(), postern::pop3::Error>) {
    if let Err(e) = result {
        log.line(format_args!("BUG: {what} decision refused by the session: {e}"));
    }
}

/// 16 bytes from the operating system's CSPRNG, for the APOP timestamp.
///
/// The example has no RNG crate to use (`ring::rand::SystemRandom` in the design), so it
/// reads the kernel's: `/dev/urandom` never blocks once the system has booted.
fn random_bytes() -> io::Result<[u8; 16]> {
    let mut random = [0_u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    Ok(random)
}
