//! A virtual-clock driver for the POP3 session, through the public API only.
//!
//! - [`Store`] is the application's message store: mailboxes for `alice`/`secret` and
//!   `bob`/`hunter2` (APOP secrets `alice-apop` and `bob-apop`), with a message whose lines
//!   start with dots, a stored bare-`LF` message, one without a final newline and a large
//!   one, plus an exclusive lock per maildrop.
//! - [`App`] answers the session's decisions from the store: USER/PASS, APOP (checked with
//!   [`apop_verify`]) and SASL PLAIN (decoded and checked here), `-ERR [IN-USE]` for a
//!   locked maildrop, RETR/TOP either through [`serve_maildrop`] ([`Feed::Serve`]) or by
//!   pushing tiny chunks to `message_data` ([`Feed::Chunks`]), UPDATE by removing the
//!   deleted messages. Knobs make reads, commits and logins fail.
//! - [`Driver`] owns a [`Session`], the virtual clock and an [`App`].
//! - [`Script`] is a `C:`/`S:` transcript; [`Transcript`] replays one whole, split at every
//!   byte offset of every client step and byte by byte, each with both feeds, and asserts
//!   that all replays give the same output, events and final store.
//!
//! # Script syntax
//! One item per line; leading whitespace is ignored, `#` starts a comment line.
//! - `C: text` client bytes: `text` with escapes, then `CRLF`. `R: text`: raw bytes, no
//!   `CRLF` appended. Escapes: `\r`, `\n`, `\t`, `\0`, `\\`, `\xHH`.
//! - Consecutive `C:`/`R:` lines form one *step* (one flight the client sends without
//!   waiting). `--` ends a step.
//! - `S: text` expects the server line `text` exactly (`CRLF` implied); `S~ text` a line
//!   starting with `text`; `S* ` leaves the rest of the step's output unchecked (the test
//!   checks it itself). `S:` lines belong to the step before them (or to the greeting when
//!   they come first) and must match its whole output.
//! - `T: secs` advances the virtual clock; `TLS` completes the TLS handshake; `EOF` is the
//!   peer closing the connection.
#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use postern::TlsInfo;
use postern::pop3::{
    CloseReason, Config, Error, Event, Maildrop, MessageInfo, Reply, ResponseCode, ServeError, Served,
    Session, Violation, apop_verify, serve_maildrop,
};

// ----- clock and configuration -------------------------------------------------------

/// The one real clock read of the POP3 tests: the base of every virtual clock.
pub fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    #[allow(clippy::disallowed_methods)]
    *BASE.get_or_init(Instant::now)
}

/// The server name.
pub const HOST: &str = "pop.example.test";

/// The randomness every session gets, so the APOP timestamp is known.
pub const RANDOM: [u8; 16] = [0x5a; 16];

/// The APOP timestamp of a session started with [`RANDOM`].
pub fn timestamp() -> String {
    format!("<{}@{HOST}>", "5a".repeat(16))
}

/// The greeting line of a session started with [`RANDOM`].
pub fn greeting() -> String {
    format!("+OK POP3 server ready {}", timestamp())
}

/// Loopback-style configuration: plaintext logins allowed, SASL PLAIN offered.
pub fn config() -> Config {
    let mut c = Config::new(HOST);
    c.allow_plaintext_auth = true;
    c.sasl_mechanisms = vec!["PLAIN".into()];
    c
}

/// The secure configuration: STLS offered, plaintext logins only inside TLS.
pub fn tls_config() -> Config {
    let mut c = Config::new(HOST);
    c.stls = true;
    c.sasl_mechanisms = vec!["PLAIN".into()];
    c
}

/// The TLS connection the tests pretend to run.
pub fn tls_info() -> TlsInfo {
    TlsInfo::new("TLSv1.3", "TLS13_AES_256_GCM_SHA384")
}

/// Base64 for the test's SASL PLAIN strings (the crate's encoder is private).
pub fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ----- the message store -------------------------------------------------------------

/// A stored message, bytes as the store holds them (possibly with bare `LF`s).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub uid: String,
    /// Shared, so cloning a store for each replay is cheap.
    pub bytes: Rc<[u8]>,
    size: u64,
}

impl Stored {
    pub fn new(uid: &str, bytes: impl Into<Vec<u8>>) -> Self {
        let bytes: Vec<u8> = bytes.into();
        let lf = bytes.iter().filter(|b| **b == b'\n').count();
        let crlf = bytes.windows(2).filter(|w| w == b"\r\n").count();
        let size = (bytes.len() + lf - crlf) as u64;
        Self { uid: uid.into(), bytes: Rc::from(bytes), size }
    }

    /// The size as listed: `CRLF` line endings, before dot-stuffing, without the `CRLF`
    /// the session adds to a message lacking a final newline.
    pub fn wire_size(&self) -> u64 {
        self.size
    }
}

/// One user's maildrop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    pub password: Vec<u8>,
    pub apop_secret: Vec<u8>,
    pub messages: Vec<Stored>,
}

/// All maildrops, their locks and the UPDATE commits applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Store {
    pub mailboxes: BTreeMap<String, Mailbox>,
    pub locked: BTreeSet<String>,
    /// `(user, deleted indexes)` for every successful UPDATE.
    pub commits: Vec<(String, Vec<usize>)>,
}

/// A store shared by the sessions of one test.
pub type Shared = Rc<RefCell<Store>>;

/// alice's messages, by index.
pub const A_HELLO: usize = 0;
pub const A_DOTS: usize = 1;
pub const A_BARE_LF: usize = 2;
pub const A_NO_NEWLINE: usize = 3;
pub const A_LARGE: usize = 4;

pub const HELLO: &[u8] =
    b"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: hello\r\n\r\nHi Alice,\r\nlunch?\r\n";
pub const DOTS: &[u8] =
    b"Subject: dots\r\n\r\n.leading dot\r\n.\r\n..two dots\r\nnot . a dot\r\n.\r\n\r\n. \r\nlast\r\n";
pub const BARE_LF: &[u8] = b"Subject: bare lf\n\nline one\n.dot line\n\nline four\n";
pub const NO_NEWLINE: &[u8] = b"Subject: no newline\r\n\r\nfirst\r\n.last line without newline";

/// The large message: 3000 lines of 78 characters, every seventh starting with a dot,
/// (~240 KiB, more than the 64 KiB `serve_maildrop` reads at a time).
pub fn large() -> Vec<u8> {
    let mut m = b"Subject: large\r\n\r\n".to_vec();
    for i in 0..3000u32 {
        let first = if i % 7 == 0 { '.' } else { 'x' };
        let line = format!("{first}{i:06}{}", "abcdefghij".repeat(8));
        m.extend_from_slice(&line.as_bytes()[..78]);
        m.extend_from_slice(b"\r\n");
    }
    m
}

/// The store every test starts from.
pub fn store() -> Store {
    let mut s = Store::default();
    s.mailboxes.insert(
        "alice".into(),
        Mailbox {
            password: b"secret".to_vec(),
            apop_secret: b"alice-apop".to_vec(),
            messages: vec![
                Stored::new("a-hello", HELLO),
                Stored::new("a-dots", DOTS),
                Stored::new("a-bare-lf", BARE_LF),
                Stored::new("a-no-newline", NO_NEWLINE),
                Stored::new("a-large", large()),
            ],
        },
    );
    s.mailboxes.insert(
        "bob".into(),
        Mailbox {
            password: b"hunter2".to_vec(),
            apop_secret: b"bob-apop".to_vec(),
            messages: vec![
                Stored::new("b-1", &b"Subject: for bob\r\n\r\nHello Bob\r\n"[..]),
                Stored::new("b-2", &b"Subject: second\r\n\r\nline 1\r\nline 2\r\nline 3\r\n"[..]),
            ],
        },
    );
    s
}

/// The RFC 1939 §10 store: mrose with messages of 120 and 200 octets.
pub fn rfc_store() -> Store {
    let mut s = Store::default();
    let msg = |n: usize, tag: &str| {
        let mut m = format!("Subject: {tag}\r\n\r\n").into_bytes();
        while m.len() < n - 2 {
            m.push(b'x');
        }
        m.extend_from_slice(b"\r\n");
        m
    };
    s.mailboxes.insert(
        "mrose".into(),
        Mailbox {
            password: b"tanstaaf".to_vec(),
            apop_secret: b"tanstaaf".to_vec(),
            messages: vec![Stored::new("m1", msg(120, "one")), Stored::new("m2", msg(200, "two"))],
        },
    );
    s
}

/// The wire form of a retrieved message, computed independently of the session: every
/// line ending `CRLF` (a stored bare `LF` becomes `CRLF`), lines starting with `.` get one
/// more, a missing final newline is added, then the `.` line.
pub fn stuffed(message: &[u8], top: Option<u32>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut lines: Vec<&[u8]> = message.split(|b| *b == b'\n').collect();
    // The piece after the last LF: a line without a final newline, kept as it is.
    let unterminated = lines.pop().filter(|l| !l.is_empty());
    let lines = lines.into_iter().map(|l| l.strip_suffix(b"\r").unwrap_or(l)).chain(unterminated);
    let mut in_body = false;
    let mut body_lines = 0u32;
    for line in lines {
        if top.is_some_and(|n| in_body && body_lines >= n) {
            break;
        }
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        if in_body {
            body_lines += 1;
        } else if line.is_empty() {
            in_body = true;
        }
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The store's view of one user's maildrop, for [`serve_maildrop`].
struct View<'a> {
    store: &'a RefCell<Store>,
    user: &'a str,
    fail_read_at: Option<u64>,
    fail_commit: bool,
}

impl Maildrop for View<'_> {
    fn read(&mut self, index: usize, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let store = self.store.borrow();
        let msg = &store.mailboxes[self.user].messages[index].bytes;
        let mut end = msg.len() as u64;
        if let Some(fail) = self.fail_read_at {
            if offset >= fail {
                return Err(io::Error::other("injected read failure"));
            }
            end = end.min(fail);
        }
        let rest = &msg[offset as usize..end as usize];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }

    fn commit(&mut self, deleted: &[usize]) -> io::Result<()> {
        if self.fail_commit {
            return Err(io::Error::other("injected commit failure"));
        }
        remove(&mut self.store.borrow_mut(), self.user, deleted);
        Ok(())
    }
}

fn remove(store: &mut Store, user: &str, deleted: &[usize]) {
    let mailbox = store.mailboxes.get_mut(user).unwrap();
    let mut sorted = deleted.to_vec();
    sorted.sort_unstable();
    for i in sorted.into_iter().rev() {
        mailbox.messages.remove(i);
    }
    store.commits.push((user.to_owned(), deleted.to_vec()));
}

// ----- recorded events ---------------------------------------------------------------

/// An owned, comparable copy of an [`Event`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ev {
    Login { user: String, password: Vec<u8> },
    Apop { user: String, timestamp: String, digest: String },
    Auth { mechanism: String, initial: Option<Vec<u8>> },
    AuthResponse(Vec<u8>),
    AuthAborted,
    Retrieve { index: usize, top_lines: Option<u32> },
    Update { deleted: Vec<usize> },
    StartTls,
    Violation(Violation),
    Closed(CloseReason),
    Other(String),
}

impl Ev {
    pub fn of(e: &Event) -> Self {
        match e {
            Event::Login { user, password } => {
                Ev::Login { user: user.clone(), password: password.as_bytes().to_vec() }
            }
            Event::Apop { user, timestamp, digest } => {
                Ev::Apop { user: user.clone(), timestamp: timestamp.clone(), digest: digest.clone() }
            }
            Event::Auth(start) => Ev::Auth {
                mechanism: start.mechanism.clone(),
                initial: start.initial_response.as_ref().map(|d| d.as_bytes().to_vec()),
            },
            Event::AuthResponse(d) => Ev::AuthResponse(d.as_bytes().to_vec()),
            Event::AuthAborted => Ev::AuthAborted,
            Event::Retrieve { index, top_lines } => Ev::Retrieve { index: *index, top_lines: *top_lines },
            Event::Update { deleted } => Ev::Update { deleted: deleted.clone() },
            Event::StartTls => Ev::StartTls,
            Event::Violation(v) => Ev::Violation(*v),
            Event::Closed(r) => Ev::Closed(*r),
            other => Ev::Other(format!("{other:?}")),
        }
    }

    pub fn is_decision(&self) -> bool {
        matches!(
            self,
            Ev::Login { .. }
                | Ev::Apop { .. }
                | Ev::Auth { .. }
                | Ev::AuthResponse(_)
                | Ev::Retrieve { .. }
                | Ev::Update { .. }
        )
    }
}

/// The violations among `events`.
pub fn violations(events: &[Ev]) -> Vec<Violation> {
    events.iter().filter_map(|e| if let Ev::Violation(v) = e { Some(*v) } else { None }).collect()
}

// ----- the application ---------------------------------------------------------------

/// How RETR/TOP are answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// Through [`serve_maildrop`] and the [`Maildrop`] trait (64 KiB reads).
    Serve,
    /// `message_data` with tiny chunks (1, 2, 3, 5, 8, 13 bytes, cycling), then
    /// `message_end`.
    Chunks,
}

/// Ways to make the application fail.
#[derive(Clone, Debug, Default)]
pub struct Knobs {
    /// Reading any message fails at this offset (0: before any data).
    pub fail_read_at: Option<u64>,
    /// The UPDATE commit fails.
    pub fail_commit: bool,
    /// Logins with good credentials get `-ERR [LOGIN-DELAY]`.
    pub login_delay: bool,
    /// Decisions are queued and only answered by [`Driver::answer_deferred`].
    pub defer: bool,
}

/// The application model.
#[derive(Debug)]
pub struct App {
    pub store: Shared,
    pub feed: Feed,
    pub knobs: Knobs,
    /// The maildrop this session holds locked.
    pub user: Option<String>,
    pub events: Vec<Ev>,
    /// Successful logins.
    pub logins: usize,
    /// Errors returned by the session's decision methods other than `Closed`.
    pub api_errors: Vec<Error>,
    pub deferred: VecDeque<Event>,
    /// What `serve_maildrop` wrote to the connection (the driver moves it to its output).
    pub sink: Vec<u8>,
    chunk: usize,
}

const CHUNKS: [usize; 6] = [1, 2, 3, 5, 8, 13];

impl App {
    pub fn new(store: Shared, feed: Feed, knobs: Knobs) -> Self {
        Self {
            store,
            feed,
            knobs,
            user: None,
            events: Vec::new(),
            logins: 0,
            api_errors: Vec::new(),
            deferred: VecDeque::new(),
            sink: Vec::new(),
            chunk: 0,
        }
    }

    fn check(&mut self, r: Result<(), Error>) {
        match r {
            Ok(()) | Err(Error::Closed) => {}
            Err(e) => self.api_errors.push(e),
        }
    }

    /// Records `event` and answers it if it is a decision.
    pub fn handle(&mut self, s: &mut Session, event: Event) {
        let ev = Ev::of(&event);
        self.events.push(ev.clone());
        if matches!(ev, Ev::Closed(_))
            && let Some(user) = self.user.take()
        {
            self.store.borrow_mut().locked.remove(&user);
        }
        if !ev.is_decision() {
            return;
        }
        if self.knobs.defer {
            self.deferred.push_back(event);
            return;
        }
        self.decide(s, event);
    }

    /// Answers one decision event.
    pub fn decide(&mut self, s: &mut Session, event: Event) {
        match event {
            Event::Login { user, password } => {
                let ok = self
                    .store
                    .borrow()
                    .mailboxes
                    .get(&user)
                    .is_some_and(|m| m.password == password.as_bytes());
                self.login(s, ok.then_some(user));
            }
            Event::Apop { user, timestamp, digest } => {
                let ok = self
                    .store
                    .borrow()
                    .mailboxes
                    .get(&user)
                    .is_some_and(|m| apop_verify(&timestamp, &m.apop_secret, &digest));
                self.login(s, ok.then_some(user));
            }
            Event::Auth(start) => match start.initial_response {
                Some(ir) => {
                    let user = self.plain(ir.as_bytes());
                    self.login(s, user);
                }
                None => {
                    let r = s.auth_challenge(b"");
                    self.check(r);
                }
            },
            Event::AuthResponse(data) => {
                let user = self.plain(data.as_bytes());
                self.login(s, user);
            }
            Event::Retrieve { index, top_lines } => match self.feed {
                Feed::Serve => {
                    let user = self.user.clone().expect("RETR before login");
                    let mut view = View {
                        store: &self.store,
                        user: &user,
                        fail_read_at: self.knobs.fail_read_at,
                        fail_commit: self.knobs.fail_commit,
                    };
                    let r =
                        serve_maildrop(s, Event::Retrieve { index, top_lines }, &mut view, &mut self.sink);
                    assert!(
                        matches!(
                            r,
                            Ok(Served::Sent { .. } | Served::ReadFailed { .. })
                                | Err(ServeError::Session(Error::Closed))
                        ),
                        "{r:?}"
                    );
                }
                Feed::Chunks => self.chunks(s, index),
            },
            Event::Update { deleted } => match self.feed {
                Feed::Serve => {
                    let user = self.user.clone().expect("UPDATE before login");
                    let mut view = View {
                        store: &self.store,
                        user: &user,
                        fail_read_at: self.knobs.fail_read_at,
                        fail_commit: self.knobs.fail_commit,
                    };
                    let r = serve_maildrop(s, Event::Update { deleted }, &mut view, &mut self.sink);
                    assert!(
                        matches!(
                            r,
                            Ok(Served::Updated { .. } | Served::UpdateFailed(_))
                                | Err(ServeError::Session(Error::Closed))
                        ),
                        "{r:?}"
                    );
                }
                Feed::Chunks => {
                    let r = if self.knobs.fail_commit {
                        s.reject(Reply::err(Some(ResponseCode::SysTemp), "some deleted messages not removed"))
                    } else {
                        let user = self.user.clone().expect("UPDATE before login");
                        remove(&mut self.store.borrow_mut(), &user, &deleted);
                        s.accept()
                    };
                    self.check(r);
                }
            },
            other => panic!("not a decision: {other:?}"),
        }
    }

    fn chunks(&mut self, s: &mut Session, index: usize) {
        let user = self.user.clone().expect("RETR before login");
        let msg = Rc::clone(&self.store.borrow().mailboxes[&user].messages[index].bytes);
        let end = self.knobs.fail_read_at.map_or(msg.len(), |f| (f as usize).min(msg.len()));
        let mut pos = 0;
        while pos < end {
            let n = CHUNKS[self.chunk % CHUNKS.len()].min(end - pos);
            self.chunk += 1;
            match s.message_data(&msg[pos..pos + n]) {
                Ok(true) => pos += n,
                Ok(false) => break,
                Err(e) => return self.check(Err(e)),
            }
        }
        let r = if self.knobs.fail_read_at.is_some_and(|f| (f as usize) < msg.len()) && pos >= end {
            s.reject(Reply::err(Some(ResponseCode::SysTemp), "cannot read message"))
        } else {
            s.message_end()
        };
        self.check(r);
    }

    /// SASL PLAIN: `authzid NUL authcid NUL password`; the user it proves, if any.
    fn plain(&self, msg: &[u8]) -> Option<String> {
        let mut parts = msg.split(|b| *b == 0);
        let (authz, authc, pass) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !(authz.is_empty() || authz == authc) {
            return None;
        }
        let user = String::from_utf8(authc.to_vec()).ok()?;
        let ok = self.store.borrow().mailboxes.get(&user).is_some_and(|m| m.password == pass);
        ok.then_some(user)
    }

    /// Answers a login whose credentials proved `user` (or nothing).
    fn login(&mut self, s: &mut Session, user: Option<String>) {
        let Some(user) = user else {
            let r = s.reject(Reply::err(Some(ResponseCode::Auth), "invalid user name or password"));
            return self.check(r);
        };
        if self.knobs.login_delay {
            let r = s.reject(Reply::err(Some(ResponseCode::LoginDelay), "wait before logging in again"));
            return self.check(r);
        }
        if !self.store.borrow_mut().locked.insert(user.clone()) {
            let r = s.reject(Reply::err(Some(ResponseCode::InUse), "maildrop already locked"));
            return self.check(r);
        }
        let listing: Vec<MessageInfo> = self.store.borrow().mailboxes[&user]
            .messages
            .iter()
            .map(|m| MessageInfo::new(m.wire_size(), m.uid.clone()).unwrap())
            .collect();
        self.user = Some(user.clone());
        match s.accept_login(user.clone(), listing) {
            Ok(()) => self.logins += 1,
            Err(e) => {
                // Closed before the answer: give the lock back.
                self.store.borrow_mut().locked.remove(&user);
                self.user = None;
                self.check(Err(e));
            }
        }
    }
}

// ----- the driver --------------------------------------------------------------------

/// A session, its application and the virtual clock.
#[derive(Debug)]
pub struct Driver {
    pub session: Session,
    pub app: App,
    pub now: Instant,
    /// Everything the server sent.
    pub out: Vec<u8>,
    /// Where [`Driver::take_output`] starts.
    taken: usize,
    /// Everything the client sent.
    pub input: Vec<u8>,
}

impl Driver {
    pub fn with_session(session: Session, store: Shared, feed: Feed, knobs: Knobs) -> Self {
        let mut d = Self {
            session,
            app: App::new(store, feed, knobs),
            now: base(),
            out: Vec::new(),
            taken: 0,
            input: Vec::new(),
        };
        d.pump();
        d
    }

    pub fn new(config: Config, store: Shared, feed: Feed, knobs: Knobs) -> Self {
        Self::with_session(Session::new(Arc::new(config), RANDOM, base()), store, feed, knobs)
    }

    pub fn implicit_tls(config: Config, store: Shared) -> Self {
        let s = Session::new_implicit_tls(Arc::new(config), RANDOM, tls_info(), base());
        Self::with_session(s, store, Feed::Serve, Knobs::default())
    }

    /// A driver over a fresh [`store`] with [`config`].
    pub fn plain() -> Self {
        Self::new(config(), Rc::new(RefCell::new(store())), Feed::Serve, Knobs::default())
    }

    /// Drains events (answering decisions) and output.
    pub fn pump(&mut self) {
        while let Some(e) = self.session.poll_event() {
            self.app.handle(&mut self.session, e);
        }
        // What serve_maildrop already wrote comes before what the session still holds.
        self.out.append(&mut self.app.sink);
        self.session.poll_transmit(&mut self.out);
    }

    pub fn receive(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
        self.session.receive(bytes, self.now);
        self.pump();
    }

    /// Answers the decisions queued under [`Knobs::defer`].
    pub fn answer_deferred(&mut self) {
        while let Some(e) = self.app.deferred.pop_front() {
            self.app.decide(&mut self.session, e);
            self.pump();
        }
    }

    /// Advances the virtual clock by `d`, firing due timers at their deadlines.
    pub fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        while let Some(t) = self.session.poll_timeout() {
            if t > target {
                break;
            }
            self.now = self.now.max(t);
            self.session.handle_timeout(self.now);
            self.pump();
            if self.session.poll_timeout() == Some(t) {
                // The session did not act on its own deadline (see the tests): stop here
                // rather than spin.
                break;
            }
        }
        self.now = target;
    }

    pub fn eof(&mut self) {
        self.session.handle_eof(self.now);
        self.pump();
    }

    pub fn tls(&mut self) -> Result<(), Error> {
        let r = self.session.tls_established(tls_info(), self.now);
        self.pump();
        r
    }

    /// Output produced since the last call.
    pub fn take_output(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.out[self.taken..]).into_owned();
        self.taken = self.out.len();
        s
    }

    /// Sends `bytes`, returns what the server answered.
    pub fn talk(&mut self, bytes: &[u8]) -> String {
        self.receive(bytes);
        self.take_output()
    }

    pub fn violations(&self) -> Vec<Violation> {
        violations(&self.app.events)
    }

    pub fn updates(&self) -> Vec<Vec<usize>> {
        self.app
            .events
            .iter()
            .filter_map(|e| if let Ev::Update { deleted } = e { Some(deleted.clone()) } else { None })
            .collect()
    }
}

// ----- scripts -----------------------------------------------------------------------

/// An expected server line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    Exact(String),
    Prefix(String),
    /// Anything from here to the end of the step's output.
    Rest,
}

/// What the client (or the world) does.
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
    /// The script line, for messages.
    pub line: usize,
}

/// A parsed `C:`/`S:` script.
#[derive(Clone, Debug, Default)]
pub struct Script {
    pub greeting: Vec<Expect>,
    pub steps: Vec<Step>,
}

pub fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let (byte, used) = match b[i + 1] {
                b'r' => (b'\r', 2),
                b'n' => (b'\n', 2),
                b't' => (b'\t', 2),
                b'0' => (0, 2),
                b'\\' => (b'\\', 2),
                b'x' => (u8::from_str_radix(&s[i + 2..i + 4], 16).unwrap(), 4),
                _ => (b'\\', 1),
            };
            out.push(byte);
            i += used;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

impl Script {
    pub fn parse(text: &str) -> Self {
        let mut script = Script::default();
        let mut open = false; // the last step is a flight still accepting C: lines
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (tag, rest) = line.split_at(line.find(' ').unwrap_or(line.len()));
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            match tag {
                "C:" | "R:" => {
                    let mut bytes = unescape(rest);
                    if tag == "C:" {
                        bytes.extend_from_slice(b"\r\n");
                    }
                    match script.steps.last_mut() {
                        Some(Step { op: Op::Send(b), expect, .. }) if open && expect.is_empty() => {
                            b.extend_from_slice(&bytes)
                        }
                        _ => script.steps.push(Step { op: Op::Send(bytes), expect: vec![], line: n + 1 }),
                    }
                    open = true;
                }
                "--" => open = false,
                "S:" | "S~" | "S*" => {
                    open = false;
                    let e = match tag {
                        "S:" => Expect::Exact(rest.to_owned()),
                        "S~" => Expect::Prefix(rest.to_owned()),
                        _ => Expect::Rest,
                    };
                    match script.steps.last_mut() {
                        Some(step) => step.expect.push(e),
                        None => script.greeting.push(e),
                    }
                }
                "T:" => {
                    open = false;
                    let secs: f64 = rest.trim().parse().unwrap();
                    let op = Op::Advance(Duration::from_secs_f64(secs));
                    script.steps.push(Step { op, expect: vec![], line: n + 1 });
                }
                "TLS" | "EOF" => {
                    open = false;
                    let op = if tag == "TLS" { Op::Tls } else { Op::Eof };
                    script.steps.push(Step { op, expect: vec![], line: n + 1 });
                }
                _ => panic!("script line {}: cannot parse {raw:?}", n + 1),
            }
        }
        script
    }
}

/// How the client steps are cut into `receive` calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Whole,
    /// Step `step` in two calls, the first of `at` bytes.
    At {
        step: usize,
        at: usize,
    },
    Bytewise,
}

/// Everything a replay produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub greeting: Vec<u8>,
    /// The server's output for each step.
    pub steps: Vec<Vec<u8>>,
    /// Events, with consecutive `InputDuringTlsHandshake` merged (their count depends on
    /// how the input was split, their total must not).
    pub events: Vec<Ev>,
    pub store: Store,
    pub closed: bool,
    pub close_reason: Option<CloseReason>,
    pub api_errors: Vec<Error>,
    pub tls_errors: Vec<Error>,
}

impl Outcome {
    /// The whole server output as text.
    pub fn output(&self) -> String {
        let mut all = self.greeting.clone();
        for s in &self.steps {
            all.extend_from_slice(s);
        }
        String::from_utf8_lossy(&all).into_owned()
    }

    pub fn step(&self, i: usize) -> &[u8] {
        &self.steps[i]
    }

    pub fn violations(&self) -> Vec<Violation> {
        violations(&self.events)
    }

    pub fn updates(&self) -> Vec<Vec<usize>> {
        self.events
            .iter()
            .filter_map(|e| if let Ev::Update { deleted } = e { Some(deleted.clone()) } else { None })
            .collect()
    }

    /// alice's remaining messages, by uid.
    pub fn uids(&self, user: &str) -> Vec<String> {
        self.store.mailboxes[user].messages.iter().map(|m| m.uid.clone()).collect()
    }
}

fn normalize(events: Vec<Ev>) -> Vec<Ev> {
    let mut out: Vec<Ev> = Vec::new();
    for e in events {
        if let (
            Ev::Violation(Violation::InputDuringTlsHandshake { dropped: new }),
            Some(Ev::Violation(Violation::InputDuringTlsHandshake { dropped })),
        ) = (&e, out.last_mut())
        {
            *dropped += new;
            continue;
        }
        out.push(e);
    }
    out
}

/// A script with its configuration, store and application knobs.
#[derive(Clone, Debug)]
pub struct Transcript {
    pub script: Script,
    pub config: Config,
    pub store: Store,
    pub knobs: Knobs,
    pub implicit_tls: bool,
}

impl Transcript {
    pub fn new(script: &str) -> Self {
        Self {
            script: Script::parse(script),
            config: config(),
            store: store(),
            knobs: Knobs::default(),
            implicit_tls: false,
        }
    }

    pub fn config(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }

    pub fn with_config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    pub fn store(mut self, f: impl FnOnce(&mut Store)) -> Self {
        f(&mut self.store);
        self
    }

    pub fn knobs(mut self, f: impl FnOnce(&mut Knobs)) -> Self {
        f(&mut self.knobs);
        self
    }

    pub fn implicit_tls(mut self) -> Self {
        self.implicit_tls = true;
        self
    }

    fn driver(&self, feed: Feed) -> Driver {
        let store = Rc::new(RefCell::new(self.store.clone()));
        let session = if self.implicit_tls {
            Session::new_implicit_tls(Arc::new(self.config.clone()), RANDOM, tls_info(), base())
        } else {
            Session::new(Arc::new(self.config.clone()), RANDOM, base())
        };
        Driver::with_session(session, store, feed, self.knobs.clone())
    }

    /// One replay.
    pub fn replay(&self, feed: Feed, split: Split) -> Outcome {
        let mut d = self.driver(feed);
        let greeting = std::mem::take(&mut d.out);
        let mut steps = Vec::new();
        let mut tls_errors = Vec::new();
        for (i, step) in self.script.steps.iter().enumerate() {
            let before = d.out.len();
            match &step.op {
                Op::Send(bytes) => match split {
                    Split::Whole => d.receive(bytes),
                    Split::At { step, at } if step == i => {
                        d.receive(&bytes[..at]);
                        d.receive(&bytes[at..]);
                    }
                    Split::At { .. } => d.receive(bytes),
                    Split::Bytewise => {
                        for b in bytes {
                            d.receive(std::slice::from_ref(b));
                        }
                    }
                },
                Op::Advance(t) => d.advance(*t),
                Op::Tls => {
                    if let Err(e) = d.tls() {
                        tls_errors.push(e);
                    }
                }
                Op::Eof => d.eof(),
            }
            steps.push(d.out[before..].to_vec());
        }
        Outcome {
            greeting,
            steps,
            events: normalize(d.app.events),
            store: d.app.store.borrow().clone(),
            closed: d.session.is_closed(),
            close_reason: d.session.close_reason(),
            api_errors: d.app.api_errors,
            tls_errors,
        }
    }

    /// Every split of every client step, plus whole and byte by byte.
    pub fn splits(&self) -> Vec<Split> {
        let mut v = vec![Split::Whole, Split::Bytewise];
        for (i, step) in self.script.steps.iter().enumerate() {
            if let Op::Send(bytes) = &step.op {
                v.extend((1..bytes.len()).map(|at| Split::At { step: i, at }));
            }
        }
        v
    }

    /// Replays whole with [`Feed::Serve`], checks the script's expectations, then replays
    /// every split with both feeds and asserts the same outcome.
    pub fn run(&self) -> Outcome {
        let reference = self.run_whole();
        for feed in [Feed::Serve, Feed::Chunks] {
            for split in self.splits() {
                let got = self.replay(feed, split);
                if got != reference {
                    panic!(
                        "replay {feed:?} {split:?} differs from the whole replay:\n{}",
                        diff(&reference, &got)
                    );
                }
            }
        }
        reference
    }

    /// Replays whole (both feeds, which must agree) and checks the expectations only.
    pub fn run_whole(&self) -> Outcome {
        let reference = self.replay(Feed::Serve, Split::Whole);
        self.check(&reference);
        let chunks = self.replay(Feed::Chunks, Split::Whole);
        assert!(chunks == reference, "Feed::Chunks differs from Feed::Serve:\n{}", diff(&reference, &chunks));
        assert!(reference.api_errors.is_empty(), "API errors: {:?}", reference.api_errors);
        reference
    }

    fn check(&self, o: &Outcome) {
        let mut want = vec![(0usize, &self.script.greeting)];
        want.extend(self.script.steps.iter().map(|s| (s.line, &s.expect)));
        let mut got = vec![o.greeting.as_slice()];
        got.extend(o.steps.iter().map(Vec::as_slice));
        for ((line, expect), out) in want.into_iter().zip(got) {
            if let Err(e) = matches(expect, out) {
                panic!(
                    "script line {line}: {e}\n--- output of the step ---\n{}\n--- whole transcript ---\n{}",
                    String::from_utf8_lossy(out),
                    o.output()
                );
            }
        }
    }
}

fn matches(expect: &[Expect], out: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(out);
    let mut lines: Vec<&str> = text.split_inclusive("\r\n").collect();
    let mut i = 0;
    for e in expect {
        if *e == Expect::Rest {
            return Ok(());
        }
        let Some(got) = lines.get(i) else {
            return Err(format!("expected {e:?}, output ended"));
        };
        let Some(got) = got.strip_suffix("\r\n") else {
            return Err(format!("expected {e:?}, got an unterminated line {got:?}"));
        };
        let ok = match e {
            Expect::Exact(s) => got == s,
            Expect::Prefix(s) => got.starts_with(s.as_str()),
            Expect::Rest => true,
        };
        if !ok {
            return Err(format!("expected {e:?}, got {got:?}"));
        }
        i += 1;
    }
    lines.drain(..i);
    if !lines.is_empty() {
        return Err(format!("unexpected output {:?}", lines.concat()));
    }
    Ok(())
}

/// Where two outcomes first differ.
pub fn diff(a: &Outcome, b: &Outcome) -> String {
    let mut s = String::new();
    if a.greeting != b.greeting {
        s += "greeting differs\n";
    }
    for (i, (x, y)) in a.steps.iter().zip(&b.steps).enumerate() {
        if x != y {
            s += &format!(
                "step {i} output:\n  want {:?}\n  got  {:?}\n",
                String::from_utf8_lossy(&x[..x.len().min(400)]),
                String::from_utf8_lossy(&y[..y.len().min(400)])
            );
            break;
        }
    }
    if a.events != b.events {
        s += &format!("events:\n  want {:?}\n  got  {:?}\n", a.events, b.events);
    }
    if a.store != b.store {
        s += &format!(
            "store: commits want {:?} got {:?}; locks want {:?} got {:?}\n",
            a.store.commits, b.store.commits, a.store.locked, b.store.locked
        );
    }
    if (a.closed, a.close_reason) != (b.closed, b.close_reason) {
        s += &format!("closed: want {:?} got {:?}\n", a.close_reason, b.close_reason);
    }
    if a.api_errors != b.api_errors || a.tls_errors != b.tls_errors {
        s += &format!(
            "errors: want {:?}/{:?} got {:?}/{:?}\n",
            a.api_errors, a.tls_errors, b.api_errors, b.tls_errors
        );
    }
    s
}

/// Runs `script` with the default configuration and store, in every split.
pub fn run(script: &str) -> Outcome {
    Transcript::new(script).run()
}

/// `USER alice` / `PASS secret` with the replies, for scripts.
pub const LOGIN_ALICE: &str = "
    C: USER alice
    S: +OK
    C: PASS secret
    S: +OK Logged in, 5 messages
";
