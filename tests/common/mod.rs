//! A virtual-clock driver for the SMTP session, through the public API only.
//!
//! - [`App`] is the application: it answers every decision by a small policy (accept HELO,
//!   MAIL and DATA; accept RCPT for `example.test` and postmaster, `550 5.1.1` otherwise;
//!   AUTH PLAIN for `alice`/`secret`; `250 2.0.0 Ok: queued as N` for each message) and
//!   records every event and every delivered message with its envelope.
//! - [`Driver`] owns a [`Session`], the virtual clock and the application, and is what a
//!   test calls: `receive`, `advance`, `eof`, `tls`.
//! - [`Script`] is a `C:`/`S:` transcript; [`Transcript`] replays one whole, split at every
//!   byte offset and byte by byte, and asserts that every replay gives the same server
//!   output, events and delivered messages.
//!
//! # Script syntax
//! One item per line; leading whitespace is ignored, `#` starts a comment line.
//! - `C: text` client bytes: `text` with escapes, then `CRLF`.
//! - `R: text` raw client bytes: `text` with escapes and nothing appended.
//! - Escapes: `\r`, `\n`, `\t`, `\0`, `\\`, `\xHH`.
//! - Consecutive `C:`/`R:` lines form one *flight*: bytes the client sends without
//!   waiting for a reply. `--` ends a flight without expecting a reply.
//! - `S: text` expects the server line `text` (exact, `CRLF` implied); `S~ text` expects a
//!   line starting with `text`. `S:` lines belong to the step before them (or to the
//!   greeting when they come first) and must match its whole output.
//! - `T: secs` advances the virtual clock (fractions allowed), firing timers on the way.
//! - `TLS` tells the session the TLS handshake finished; `EOF` that the peer closed.
#![allow(dead_code, unreachable_pub)]

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use postern::TlsInfo;
use postern::smtp::{
    AbortReason, Address, CloseReason, Config, EnhancedStatus, Event, Helo, MailFrom, MessageEnd, RcptTo,
    Reply, Session, Violation,
};

// ----- clock and configuration -------------------------------------------------------

/// The one real clock read of the test suite: the base of every virtual clock.
pub fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    #[allow(clippy::disallowed_methods)]
    *BASE.get_or_init(Instant::now)
}

/// The server name used everywhere.
pub const HOST: &str = "mx.example.test";

/// The default configuration of the tests.
pub fn config() -> Config {
    Config::new(HOST)
}

/// The peer address given to `received_header`.
pub const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// The date given to `received_header`: 2023-11-14 22:13:20 UTC.
pub fn date() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// The TLS connection the tests pretend to run.
pub fn tls_info() -> TlsInfo {
    TlsInfo::new("TLSv1.3", "TLS13_AES_256_GCM_SHA384")
}

/// A reply built from parts.
pub fn reply(code: u16, status: (u8, u16, u16), text: &'static str) -> Reply {
    Reply::new(code, EnhancedStatus::new(status.0, status.1, status.2), text)
}

// ----- recorded events ---------------------------------------------------------------

/// An owned, comparable copy of an [`Event`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ev {
    Helo(Helo),
    Mail(MailFrom),
    Rcpt(RcptTo),
    DataStart {
        chunking: bool,
    },
    /// Consecutive `MessageData` events are merged: their boundaries depend on the input
    /// split, their concatenation must not.
    Data(Vec<u8>),
    MessageEnd(MessageEnd),
    Aborted(AbortReason),
    StartTls,
    Auth {
        mechanism: String,
        initial: Option<Vec<u8>>,
    },
    AuthResponse(Vec<u8>),
    AuthAborted,
    Reset,
    /// The session's own refusal: the command verb and the reply.
    Refused(&'static str, Reply),
    Violation(Violation),
    Closed(CloseReason),
    Other(String),
}

impl Ev {
    fn is_decision(&self) -> bool {
        matches!(
            self,
            Ev::Helo(_)
                | Ev::Mail(_)
                | Ev::Rcpt(_)
                | Ev::DataStart { .. }
                | Ev::MessageEnd(_)
                | Ev::Auth { .. }
                | Ev::AuthResponse(_)
        )
    }
}

/// A message the application accepted, with its envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub queue_id: u32,
    pub helo: Option<String>,
    pub mail: MailFrom,
    pub rcpts: Vec<Address>,
    pub body: Vec<u8>,
    pub end: MessageEnd,
    /// `Session::received_header(PEER, "Q<queue_id>", date())` taken at `MessageEnd`.
    pub received: String,
}

impl Message {
    pub fn from(&self) -> Option<String> {
        self.mail.from.as_ref().map(ToString::to_string)
    }

    pub fn rcpts(&self) -> Vec<String> {
        self.rcpts.iter().map(ToString::to_string).collect()
    }
}

// ----- the application ---------------------------------------------------------------

/// How the application answers decisions.
#[derive(Clone, Debug)]
pub struct Policy {
    /// RCPT is accepted for this domain (any case) and for postmaster.
    pub rcpt_domain: String,
    pub user: String,
    pub password: String,
    /// Answer for HELO/EHLO instead of accepting.
    pub reject_helo: Option<Reply>,
    /// Answer for MAIL instead of accepting.
    pub reject_mail: Option<Reply>,
    /// Answer for DATA/BDAT start instead of accepting.
    pub reject_data: Option<Reply>,
    /// Answer for a complete message instead of queueing it.
    pub reject_message: Option<Reply>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            rcpt_domain: "example.test".into(),
            user: "alice".into(),
            password: "secret".into(),
            reject_helo: None,
            reject_mail: None,
            reject_data: None,
            reject_message: None,
        }
    }
}

/// The application model: decisions, records, the message sink.
#[derive(Debug, Default)]
pub struct App {
    pub policy: Policy,
    pub events: Vec<Ev>,
    pub messages: Vec<Message>,
    /// Errors returned by the session's decision methods (misuse, or a closed session).
    pub api_errors: Vec<String>,
    /// Decision events the application never answered because the session closed first.
    pub unanswered: Vec<Ev>,
    helo: Option<String>,
    mail: Option<MailFrom>,
    rcpts: Vec<Address>,
    body: Vec<u8>,
    next_id: u32,
}

impl App {
    fn new(policy: Policy) -> Self {
        Self { policy, next_id: 1, ..Self::default() }
    }

    fn record(&mut self, ev: Ev) {
        if let (Ev::Data(new), Some(Ev::Data(old))) = (&ev, self.events.last_mut()) {
            old.extend_from_slice(new);
            return;
        }
        self.events.push(ev);
    }

    /// Records an event; returns it back if it is a decision still to answer.
    fn observe(&mut self, ev: Event) -> Option<Event> {
        let rec = match &ev {
            Event::Helo(h) => Ev::Helo(h.clone()),
            Event::Mail(m) => Ev::Mail(m.clone()),
            Event::Rcpt(r) => Ev::Rcpt(r.clone()),
            Event::DataStart { chunking } => Ev::DataStart { chunking: *chunking },
            Event::MessageData(b) => {
                self.body.extend_from_slice(b);
                Ev::Data(b.to_vec())
            }
            Event::MessageEnd(e) => Ev::MessageEnd(e.clone()),
            Event::MessageAborted(r) => {
                self.body.clear();
                Ev::Aborted(*r)
            }
            Event::StartTls => {
                self.helo = None;
                self.mail = None;
                self.rcpts.clear();
                Ev::StartTls
            }
            Event::Auth(a) => Ev::Auth {
                mechanism: a.mechanism.clone(),
                initial: a.initial_response.as_ref().map(|d| d.as_bytes().to_vec()),
            },
            Event::AuthResponse(d) => Ev::AuthResponse(d.as_bytes().to_vec()),
            Event::AuthAborted => Ev::AuthAborted,
            Event::Reset => {
                self.mail = None;
                self.rcpts.clear();
                self.body.clear();
                Ev::Reset
            }
            Event::Refused { command, reply } => Ev::Refused(command, reply.clone()),
            Event::Violation(v) => Ev::Violation(*v),
            Event::Closed(c) => Ev::Closed(*c),
            other => Ev::Other(format!("{other:?}")),
        };
        let decision = rec.is_decision();
        self.record(rec);
        decision.then_some(ev)
    }

    fn plain_ok(&self, msg: &[u8]) -> bool {
        let mut parts = msg.split(|&b| b == 0);
        let (Some(_authzid), Some(user), Some(pass), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        user == self.policy.user.as_bytes() && pass == self.policy.password.as_bytes()
    }

    fn auth_result(&mut self, session: &mut Session, msg: &[u8]) -> Result<(), postern::smtp::Error> {
        if self.plain_ok(msg) { session.auth_succeed(self.policy.user.clone()) } else { session.auth_fail() }
    }

    /// Answers one decision event.
    fn decide(&mut self, session: &mut Session, ev: Event) {
        let result = match ev {
            Event::Helo(h) => match self.policy.reject_helo.clone() {
                Some(r) => session.reject(r),
                None => {
                    self.helo = Some(h.name);
                    self.mail = None;
                    self.rcpts.clear();
                    session.accept()
                }
            },
            Event::Mail(m) => match self.policy.reject_mail.clone() {
                Some(r) => session.reject(r),
                None => {
                    self.mail = Some(m);
                    self.rcpts.clear();
                    self.body.clear();
                    session.accept()
                }
            },
            Event::Rcpt(r) => {
                if r.to.is_postmaster() || r.to.domain().eq_ignore_ascii_case(&self.policy.rcpt_domain) {
                    self.rcpts.push(r.to);
                    session.accept()
                } else {
                    session.reject(reply(550, (5, 1, 1), "Error: no such user here"))
                }
            }
            Event::DataStart { .. } => match self.policy.reject_data.clone() {
                Some(r) => session.reject(r),
                None => {
                    self.body.clear();
                    session.accept()
                }
            },
            Event::MessageEnd(end) => {
                let id = self.next_id;
                let received = session.received_header(PEER, &format!("Q{id}"), date());
                let body = std::mem::take(&mut self.body);
                let result = match self.policy.reject_message.clone() {
                    Some(r) => session.reject(r),
                    None => {
                        self.next_id += 1;
                        session.accept_with(Reply::new(
                            250,
                            EnhancedStatus::new(2, 0, 0),
                            format!("Ok: queued as {id}"),
                        ))
                    }
                };
                if result.is_ok() && self.policy.reject_message.is_none() {
                    self.messages.push(Message {
                        queue_id: id,
                        helo: self.helo.clone(),
                        mail: self.mail.clone().unwrap_or_else(|| {
                            panic!("MessageEnd without an accepted MAIL; events: {:?}", self.events)
                        }),
                        rcpts: self.rcpts.clone(),
                        body,
                        end,
                        received,
                    });
                }
                self.mail = None;
                self.rcpts.clear();
                result
            }
            Event::Auth(a) => match a.initial_response {
                None if a.mechanism == "PLAIN" => session.auth_challenge(b""),
                Some(d) if a.mechanism == "PLAIN" => self.auth_result(session, d.as_bytes()),
                _ => session.auth_fail(),
            },
            Event::AuthResponse(d) => self.auth_result(session, d.as_bytes()),
            other => panic!("not a decision: {other:?}"),
        };
        if let Err(e) = result {
            if e == postern::smtp::Error::Closed {
                // The session closed (e.g. pipelined bytes arrived while the decision was
                // deferred): the decision was never seen by the client. Forget it.
                if let Some(pos) = self.events.iter().rposition(Ev::is_decision) {
                    let ev = self.events.remove(pos);
                    self.unanswered.push(ev);
                }
            } else {
                self.api_errors.push(format!("{e:?}"));
            }
        }
    }
}

// ----- the driver --------------------------------------------------------------------

/// When the application answers decisions relative to reading input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// After every `receive`, before reading again (the documented driving loop).
    Eager,
    /// Only once the client's whole flight has been read: the application keeps reading
    /// while a decision is pending (a slow policy lookup, say).
    Lazy,
}

/// A session, its application and a virtual clock.
#[derive(Debug)]
pub struct Driver {
    pub session: Session,
    pub app: App,
    pub now: Instant,
    pub mode: Mode,
    /// Everything transmitted since the last `take_output`.
    pub out: Vec<u8>,
    /// Total bytes given to `receive`.
    pub received: usize,
    deferred: Option<Event>,
}

impl Driver {
    pub fn new(config: Config, policy: Policy) -> Self {
        let now = base();
        Self::with_session(Session::new(Arc::new(config), now), policy, now)
    }

    pub fn with_session(session: Session, policy: Policy, now: Instant) -> Self {
        let mut d = Self {
            session,
            app: App::new(policy),
            now,
            mode: Mode::Eager,
            out: Vec::new(),
            received: 0,
            deferred: None,
        };
        d.drive(true);
        d
    }

    /// A driver whose application has not yet taken the greeting with `poll_transmit`.
    pub fn holding_greeting(config: Config, policy: Policy) -> Self {
        let now = base();
        Self {
            session: Session::new(Arc::new(config), now),
            app: App::new(policy),
            now,
            mode: Mode::Eager,
            out: Vec::new(),
            received: 0,
            deferred: None,
        }
    }

    pub fn default_session() -> Self {
        Self::new(config(), Policy::default())
    }

    /// Drains events (answering decisions unless deferred) and transmit.
    fn drive(&mut self, answer: bool) {
        if answer && let Some(ev) = self.deferred.take() {
            self.app.decide(&mut self.session, ev);
        }
        while let Some(ev) = self.session.poll_event() {
            if let Some(decision) = self.app.observe(ev) {
                if answer {
                    self.app.decide(&mut self.session, decision);
                } else {
                    assert!(self.deferred.is_none(), "two decisions pending at once");
                    self.deferred = Some(decision);
                }
            }
        }
        self.session.poll_transmit(&mut self.out);
    }

    /// One `receive` call at the current time.
    pub fn receive(&mut self, bytes: &[u8]) {
        self.received += bytes.len();
        self.session.receive(bytes, self.now);
        self.drive(self.mode == Mode::Eager);
    }

    /// The end of a client flight: a lazy application now answers what it deferred.
    pub fn flush(&mut self) {
        self.drive(true);
    }

    /// `receive` then `flush`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.receive(bytes);
        self.flush();
    }

    /// Advances the virtual clock by `d`, calling `handle_timeout` at every deadline
    /// passed on the way.
    pub fn advance(&mut self, d: Duration) {
        self.flush();
        let target = self.now + d;
        while let Some(t) = self.session.poll_timeout() {
            if t > target {
                break;
            }
            self.now = self.now.max(t);
            self.session.handle_timeout(self.now);
            self.flush();
            if self.session.poll_timeout() == Some(t) {
                break; // the deadline did not move: do not spin
            }
        }
        self.now = target;
    }

    pub fn eof(&mut self) {
        self.flush();
        self.session.handle_eof(self.now);
        self.flush();
    }

    pub fn tls(&mut self) -> Result<(), postern::smtp::Error> {
        self.flush();
        let r = self.session.tls_established(tls_info(), self.now);
        self.flush();
        r
    }

    pub fn take_output(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.out)).into_owned()
    }

    /// `send` and return what the server answered.
    pub fn exchange(&mut self, bytes: &[u8]) -> String {
        self.send(bytes);
        self.take_output()
    }

    pub fn violations(&self) -> Vec<Violation> {
        violations(&self.app.events)
    }
}

pub fn refusals(events: &[Ev]) -> Vec<(&'static str, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Ev::Refused(verb, reply) => Some((*verb, reply.to_string().trim_end().to_owned())),
            _ => None,
        })
        .collect()
}

pub fn violations(events: &[Ev]) -> Vec<Violation> {
    events
        .iter()
        .filter_map(|e| match e {
            Ev::Violation(v) => Some(*v),
            _ => None,
        })
        .collect()
}

// ----- scripts -----------------------------------------------------------------------

/// One expected server line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    Exact(String),
    Prefix(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Send(Vec<u8>),
    Advance(Duration),
    Tls,
    Eof,
}

#[derive(Clone, Debug)]
pub struct Step {
    pub op: Op,
    pub expect: Vec<Expect>,
    /// Where the step came from, for messages.
    pub line: usize,
}

/// A transcript: what the greeting must be, then steps and the replies each produces.
#[derive(Clone, Debug, Default)]
pub struct Script {
    pub greeting: Vec<Expect>,
    pub steps: Vec<Step>,
    open_flight: bool,
}

/// Decodes the escapes of a script line.
pub fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            i += 1;
            match b[i] {
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'0' => out.push(0),
                b'\\' => out.push(b'\\'),
                b'x' => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex escape");
                    out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
                    i += 2;
                }
                c => panic!("unknown escape \\{}", c as char),
            }
        } else {
            out.push(b[i]);
        }
        i += 1;
    }
    out
}

impl Script {
    pub fn parse(text: &str) -> Self {
        let mut s = Self::default();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim_start();
            let n = n + 1;
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line == "--" {
                s.open_flight = false;
            } else if line == "TLS" {
                s.push(Op::Tls, n);
            } else if line == "EOF" {
                s.push(Op::Eof, n);
            } else if let Some(rest) = line.strip_prefix("T:") {
                let secs: f64 = rest.trim().parse().expect("T: seconds");
                s.push(Op::Advance(Duration::from_secs_f64(secs)), n);
            } else if let Some(rest) = line.strip_prefix("C:") {
                let mut bytes = unescape(rest.strip_prefix(' ').unwrap_or(rest));
                bytes.extend_from_slice(b"\r\n");
                s.send_at(&bytes, n);
            } else if let Some(rest) = line.strip_prefix("R:") {
                s.send_at(&unescape(rest.strip_prefix(' ').unwrap_or(rest)), n);
            } else if let Some(rest) = line.strip_prefix("S:") {
                s.expect(Expect::Exact(rest.strip_prefix(' ').unwrap_or(rest).to_owned()));
            } else if let Some(rest) = line.strip_prefix("S~") {
                s.expect(Expect::Prefix(rest.strip_prefix(' ').unwrap_or(rest).to_owned()));
            } else {
                panic!("script line {n}: cannot parse {raw:?}");
            }
        }
        s
    }

    fn push(&mut self, op: Op, line: usize) {
        self.open_flight = false;
        self.steps.push(Step { op, expect: Vec::new(), line });
    }

    fn send_at(&mut self, bytes: &[u8], line: usize) {
        if self.open_flight
            && let Some(Step { op: Op::Send(b), .. }) = self.steps.last_mut()
        {
            b.extend_from_slice(bytes);
            return;
        }
        self.push(Op::Send(bytes.to_vec()), line);
        self.open_flight = true;
    }

    /// Appends client bytes to the current flight (or starts one).
    pub fn send(&mut self, bytes: &[u8]) -> &mut Self {
        self.send_at(bytes, 0);
        self
    }

    /// Starts a new flight with these bytes.
    pub fn flight(&mut self, bytes: &[u8]) -> &mut Self {
        self.open_flight = false;
        self.send_at(bytes, 0);
        self
    }

    pub fn op(&mut self, op: Op) -> &mut Self {
        self.push(op, 0);
        self
    }

    pub fn expect(&mut self, e: Expect) -> &mut Self {
        self.open_flight = false;
        match self.steps.last_mut() {
            Some(step) => step.expect.push(e),
            None => self.greeting.push(e),
        }
        self
    }

    pub fn exact(&mut self, line: &str) -> &mut Self {
        self.expect(Expect::Exact(line.to_owned()))
    }

    pub fn prefix(&mut self, line: &str) -> &mut Self {
        self.expect(Expect::Prefix(line.to_owned()))
    }

    /// Appends another script's steps (its greeting expectations go to the last step).
    pub fn then(&mut self, text: &str) -> &mut Self {
        let other = Self::parse(text);
        for e in other.greeting {
            self.expect(e);
        }
        self.open_flight = false;
        self.steps.extend(other.steps);
        self
    }
}

// ----- transcripts -------------------------------------------------------------------

/// How a session is started.
#[derive(Clone, Debug)]
pub enum Start {
    Plain,
    ImplicitTls,
    Refused(Reply),
    /// Plain, but the application has not yet taken the greeting when input arrives.
    HoldGreeting,
}

/// How a flight is cut into `receive` calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Whole,
    /// Every flight is cut at `min(n, len)` into two calls.
    At(usize),
    /// One call per byte.
    Bytes,
}

/// What a replay produced; two replays must produce equal outcomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The greeting output, then the output after each step.
    pub outputs: Vec<String>,
    pub events: Vec<Ev>,
    pub messages: Vec<Message>,
    pub api_errors: Vec<String>,
    pub close_reason: Option<CloseReason>,
    pub authenticated: Option<String>,
    pub tls_results: Vec<Result<(), postern::smtp::Error>>,
}

impl Outcome {
    pub fn violations(&self) -> Vec<Violation> {
        violations(&self.events)
    }

    pub fn refusals(&self) -> Vec<(&'static str, String)> {
        refusals(&self.events)
    }

    pub fn mails(&self) -> Vec<&MailFrom> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Ev::Mail(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    pub fn output(&self) -> String {
        self.outputs.concat()
    }

    /// The comparable form: the byte counts of early-talker reports depend on how much
    /// arrived in the first `receive`, so only their presence is compared; message content
    /// delivered before a `MessageAborted`, or in a message the transcript never finished,
    /// is dropped; data is ordered before violations and refusals
    /// reported with it.
    pub fn normalized(&self) -> Self {
        let mut o = self.clone();
        let mut events: Vec<Ev> = Vec::new();
        for ev in o.events {
            let ev = match ev {
                Ev::Violation(Violation::EarlyTalker { .. }) => {
                    Ev::Violation(Violation::EarlyTalker { bytes: 0 })
                }
                other => other,
            };
            // Content delivered before an abort is thrown away by the application, and how
            // much of it got out before the abort depends on the split.
            if matches!(ev, Ev::Aborted(_)) {
                let mut i = events.len();
                while i > 0 && matches!(events[i - 1], Ev::Data(_) | Ev::Violation(_) | Ev::Refused(..)) {
                    i -= 1;
                    if matches!(events[i], Ev::Data(_)) {
                        events.remove(i);
                    }
                }
            }
            // Per-`receive` reports of the same kind are merged.
            match (&ev, events.last_mut()) {
                (
                    Ev::Violation(Violation::EarlyTalker { .. }),
                    Some(Ev::Violation(Violation::EarlyTalker { .. })),
                ) => continue,
                (
                    Ev::Violation(Violation::InputDuringTlsHandshake { dropped: n }),
                    Some(Ev::Violation(Violation::InputDuringTlsHandshake { dropped: m })),
                ) => *m += n,
                _ => events.push(ev),
            }
        }
        // Message data is handed out at the end of each `receive`, so a violation or refusal
        // caused by a later command in the same input can come before it: order each run of
        // data, violations and refusals as data first.
        let mut ordered: Vec<Ev> = Vec::with_capacity(events.len());
        let mut run: Vec<Ev> = Vec::new();
        let flush = |run: &mut Vec<Ev>, ordered: &mut Vec<Ev>| {
            let (data, other): (Vec<Ev>, Vec<Ev>) = run.drain(..).partition(|e| matches!(e, Ev::Data(_)));
            let bytes: Vec<u8> = data
                .into_iter()
                .flat_map(|e| match e {
                    Ev::Data(d) => d,
                    _ => Vec::new(),
                })
                .collect();
            if !bytes.is_empty() {
                ordered.push(Ev::Data(bytes));
            }
            ordered.extend(other);
        };
        for ev in events {
            if matches!(ev, Ev::Data(_) | Ev::Violation(_) | Ev::Refused(..)) {
                run.push(ev);
            } else {
                flush(&mut run, &mut ordered);
                ordered.push(ev);
            }
        }
        flush(&mut run, &mut ordered);
        // The content of a message that never ended (the transcript stopped inside it) is
        // not final: if the message was already refused, how much got out before the
        // session stopped handing it over depends on the split.
        let unfinished = ordered
            .iter()
            .rposition(|e| matches!(e, Ev::DataStart { .. }))
            .filter(|&i| !ordered[i..].iter().any(|e| matches!(e, Ev::MessageEnd(_) | Ev::Aborted(_))));
        if let Some(i) = unfinished {
            let tail: Vec<Ev> = ordered.split_off(i);
            ordered.extend(tail.into_iter().filter(|e| !matches!(e, Ev::Data(_))));
        }
        o.events = ordered;
        o
    }
}

/// Which replays a transcript must agree on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Splits {
    /// Whole, split at every offset and byte by byte, eager and lazy.
    All,
    /// The transcript breaks RFC 2920 pipelining rules: a split after a complete command
    /// is indistinguishable from a client that waited, so only lazy replays (the bytes
    /// arrive while the decision is pending) are compared.
    LazyOnly,
    /// Only the whole replay (use [`Transcript::replays`] to check invariants instead).
    WholeOnly,
}

/// A transcript with the configuration to replay it under.
#[derive(Clone, Debug)]
pub struct Transcript {
    pub config: Config,
    pub policy: Policy,
    pub start: Start,
    pub script: Script,
    pub splits: Splits,
}

impl Transcript {
    pub fn new(script: &str) -> Self {
        Self::from_script(Script::parse(script))
    }

    pub fn from_script(script: Script) -> Self {
        Self { config: config(), policy: Policy::default(), start: Start::Plain, script, splits: Splits::All }
    }

    pub fn config(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }

    pub fn policy(mut self, f: impl FnOnce(&mut Policy)) -> Self {
        f(&mut self.policy);
        self
    }

    pub fn start(mut self, start: Start) -> Self {
        self.start = start;
        self
    }

    pub fn splits(mut self, splits: Splits) -> Self {
        self.splits = splits;
        self
    }

    fn driver(&self) -> Driver {
        let config = Arc::new(self.config.clone());
        let now = base();
        match &self.start {
            Start::Plain => Driver::new(self.config.clone(), self.policy.clone()),
            Start::ImplicitTls => Driver::with_session(
                Session::new_implicit_tls(config, tls_info(), now),
                self.policy.clone(),
                now,
            ),
            Start::Refused(r) => {
                Driver::with_session(Session::new_refused(config, r.clone(), now), self.policy.clone(), now)
            }
            Start::HoldGreeting => Driver::holding_greeting(self.config.clone(), self.policy.clone()),
        }
    }

    /// Replays once.
    pub fn replay(&self, mode: Mode, split: Split) -> Outcome {
        let mut d = self.driver();
        d.mode = mode;
        let mut outputs = vec![d.take_output()];
        let mut tls_results = Vec::new();
        for step in &self.script.steps {
            match &step.op {
                Op::Send(bytes) => {
                    match split {
                        Split::Whole => d.receive(bytes),
                        Split::At(n) => {
                            let (a, b) = bytes.split_at(n.min(bytes.len()));
                            d.receive(a);
                            d.receive(b);
                        }
                        Split::Bytes => {
                            for b in bytes {
                                d.receive(std::slice::from_ref(b));
                            }
                        }
                    }
                    d.flush();
                }
                Op::Advance(t) => d.advance(*t),
                Op::Tls => tls_results.push(d.tls()),
                Op::Eof => d.eof(),
            }
            outputs.push(d.take_output());
        }
        Outcome {
            outputs,
            events: d.app.events,
            messages: d.app.messages,
            api_errors: d.app.api_errors,
            close_reason: d.session.close_reason(),
            authenticated: d.session.authenticated().map(str::to_owned),
            tls_results,
        }
    }

    /// The replays this transcript's `splits` compares, with labels.
    pub fn variants(&self) -> Vec<(Mode, Split)> {
        let longest = self
            .script
            .steps
            .iter()
            .map(|s| match &s.op {
                Op::Send(b) => b.len(),
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        let mut v = Vec::new();
        let modes: &[Mode] = match self.splits {
            Splits::All => &[Mode::Eager, Mode::Lazy],
            Splits::LazyOnly => &[Mode::Lazy],
            Splits::WholeOnly => &[],
        };
        for &mode in modes {
            for n in 1..longest {
                v.push((mode, Split::At(n)));
            }
            v.push((mode, Split::Bytes));
        }
        v
    }

    /// Every replay (whole first), for invariant checks where replays may differ.
    pub fn replays(&self) -> Vec<(String, Outcome)> {
        let longest = self
            .script
            .steps
            .iter()
            .map(|s| match &s.op {
                Op::Send(b) => b.len(),
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        let mut out = vec![("whole".to_owned(), self.replay(Mode::Eager, Split::Whole))];
        for mode in [Mode::Eager, Mode::Lazy] {
            for n in 1..longest {
                out.push((format!("{mode:?} split at {n}"), self.replay(mode, Split::At(n))));
            }
            out.push((format!("{mode:?} byte by byte"), self.replay(mode, Split::Bytes)));
        }
        out
    }

    /// Replays whole, checks the expected replies and that every variant agrees; returns
    /// the whole replay's outcome for further assertions.
    #[track_caller]
    pub fn run(&self) -> Outcome {
        let whole = self.replay(Mode::Eager, Split::Whole);
        self.check_expectations(&whole);
        assert!(whole.api_errors.is_empty(), "API errors: {:?}\n{}", whole.api_errors, self.render(&whole));
        let reference = whole.normalized();
        for (mode, split) in self.variants() {
            let got = self.replay(mode, split).normalized();
            if got != reference {
                panic!(
                    "replay {mode:?} {split:?} differs from the whole replay\n--- whole:\n{}\n--- \
                     {mode:?} {split:?}:\n{}\n--- differences (whole / split):\n{}",
                    self.render(&reference),
                    self.render(&got),
                    diff(&reference, &got),
                );
            }
        }
        whole
    }

    /// The transcript as it ran: client flights and server output interleaved.
    pub fn render(&self, o: &Outcome) -> String {
        let mut s = String::new();
        let show = |s: &mut String, prefix: &str, text: &str| {
            for line in text.split_inclusive('\n') {
                let _ = writeln!(s, "{prefix}{}", line.escape_debug());
            }
        };
        if let Some(g) = o.outputs.first() {
            show(&mut s, "S: ", g);
        }
        for (i, step) in self.script.steps.iter().enumerate() {
            match &step.op {
                Op::Send(b) => show(&mut s, "C: ", &String::from_utf8_lossy(b)),
                other => {
                    let _ = writeln!(s, "   {other:?}");
                }
            }
            if let Some(out) = o.outputs.get(i + 1) {
                show(&mut s, "S: ", out);
            }
        }
        s
    }

    #[track_caller]
    fn check_expectations(&self, o: &Outcome) {
        let expects = std::iter::once((0, &self.script.greeting))
            .chain(self.script.steps.iter().map(|s| (s.line, &s.expect)));
        for (i, (line, expect)) in expects.enumerate() {
            let out = &o.outputs[i];
            let ok_shape = out.is_empty() || out.ends_with("\r\n");
            let got: Vec<&str> = if out.is_empty() {
                Vec::new()
            } else {
                out.trim_end_matches("\r\n").split("\r\n").collect()
            };
            let matches = ok_shape
                && got.len() == expect.len()
                && got.iter().zip(expect.iter()).all(|(g, e)| match e {
                    Expect::Exact(t) => g == t,
                    Expect::Prefix(p) => g.starts_with(p.as_str()),
                });
            if !matches {
                panic!(
                    "step {i} (script line {line}): expected {expect:#?}\ngot {got:#?}\n--- transcript:\n{}\n--- \
                     events: {:#?}",
                    self.render(o),
                    o.events
                );
            }
        }
    }
}

/// The first differences between two outcomes, for failure messages.
pub fn diff(a: &Outcome, b: &Outcome) -> String {
    fn first<T: std::fmt::Debug + PartialEq>(name: &str, a: &[T], b: &[T], out: &mut String) {
        if a == b {
            return;
        }
        let i = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        let _ = writeln!(
            out,
            "{name}: first difference at index {i} (lengths {} / {}):\n  whole: {:?}\n  split: {:?}",
            a.len(),
            b.len(),
            &a[i.saturating_sub(1).min(a.len())..(i + 2).min(a.len())],
            &b[i.saturating_sub(1).min(b.len())..(i + 2).min(b.len())],
        );
    }
    let mut out = String::new();
    first("outputs", &a.outputs, &b.outputs, &mut out);
    first("events", &a.events, &b.events, &mut out);
    first("messages", &a.messages, &b.messages, &mut out);
    first("api_errors", &a.api_errors, &b.api_errors, &mut out);
    first("tls_results", &a.tls_results, &b.tls_results, &mut out);
    if a.close_reason != b.close_reason {
        let _ = writeln!(out, "close_reason: {:?} / {:?}", a.close_reason, b.close_reason);
    }
    if a.authenticated != b.authenticated {
        let _ = writeln!(out, "authenticated: {:?} / {:?}", a.authenticated, b.authenticated);
    }
    out
}

/// Shorthand: run a script under the default configuration.
#[track_caller]
pub fn run(script: &str) -> Outcome {
    Transcript::new(script).run()
}

// ----- common script fragments -------------------------------------------------------

/// The greeting under the default configuration.
pub const GREETING: &str = "S: 220 mx.example.test ESMTP\n";

/// The EHLO reply under the default configuration, as script lines.
pub const EHLO_REPLY: &str = "
    S: 250-mx.example.test
    S: 250-PIPELINING
    S: 250-SIZE 10240000
    S: 250-8BITMIME
    S: 250-ENHANCEDSTATUSCODES
    S: 250-SMTPUTF8
    S: 250-CHUNKING
    S: 250 DSN
";

/// Greeting and EHLO.
pub fn ehlo() -> String {
    format!("{GREETING}C: EHLO client.example.org\n{EHLO_REPLY}")
}

/// Greeting, EHLO and MAIL FROM:<alice@example.org>, RCPT TO:<bob@example.test>, DATA.
pub fn to_data() -> String {
    format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<bob@example.test>
        C: DATA
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        S: 354 2.0.0 End data with <CR><LF>.<CR><LF>
        ",
        ehlo()
    )
}
