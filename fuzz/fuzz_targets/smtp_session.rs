//! A whole SMTP session driven by a fuzzer-chosen sequence of operations: `receive` with
//! arbitrary chunk boundaries, clock advances, accept/reject/AUTH decisions (answered at
//! once or left pending while more input arrives), `tls_established` and EOF.
//!
//! Input format: a flags byte and a limits byte (see `config`; the top two bits of the
//! limits byte pick implicit TLS, a refused connection or a plain session), then
//! operations: `0..=8 len bytes` receive, `9 n` advance 3n seconds, `10` toggle answering
//! decisions at once, `11` tls_established, `12` EOF, `13 p` set the answering policy,
//! `14..=15` fire timers.
//!
//! Checked on every step: no panic; replies are well-formed lines; a closed session stays
//! closed with no deadline; an open one always has one; the session never holds more than
//! `Limits::buffered_input` unprocessed bytes; message data never exceeds twice the input.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use postern::TlsInfo;
use postern::line::BareLineEnding;
use postern::smtp::{Config, EarlyTalkerPolicy, EnhancedStatus, Event, Reply, Session};

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    #[allow(clippy::disallowed_methods)] // the one real clock read: the virtual clock's base
    *BASE.get_or_init(Instant::now)
}

/// Reads the fuzzer's bytes as a stream of choices.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

fn config(flags: u8, limits: u8) -> Config {
    let mut c = Config::new("mx.example.test");
    c.starttls = flags & 1 != 0;
    if flags & 2 != 0 {
        c.auth_mechanisms = vec!["PLAIN".into(), "LOGIN".into()];
    }
    c.allow_plaintext_auth = flags & 4 != 0;
    c.bare_line_ending = if flags & 8 != 0 { BareLineEnding::Normalize } else { BareLineEnding::Reject };
    c.forbid_unauth_pipelining = flags & 16 == 0;
    c.chunking = flags & 32 == 0;
    if flags & 64 != 0 {
        c.greeting_delay = Some(Duration::from_secs(2));
    }
    c.early_talker = if flags & 128 != 0 { EarlyTalkerPolicy::Report } else { EarlyTalkerPolicy::Reject };
    if limits & 1 != 0 {
        // Small limits, so that every limit is reachable.
        c.limits.command_line = 64;
        c.limits.auth_line = 64;
        c.limits.text_line = Some(40);
        c.limits.recipients = 2;
        c.limits.message_size = 200;
        c.limits.errors = 8;
        c.limits.junk_commands = 8;
        c.limits.buffered_input = 1024;
        c.limits.session_bytes = 64 * 1024;
    }
    if limits & 2 != 0 {
        c.limits.min_data_rate = None;
    }
    c
}

fn buffered(s: &Session) -> usize {
    let dbg = format!("{s:?}");
    dbg.split("buffered: ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn check_replies(out: &[u8]) {
    if out.is_empty() {
        return;
    }
    assert!(out.ends_with(b"\r\n"), "output does not end in CRLF: {:?}", String::from_utf8_lossy(out));
    for line in out[..out.len() - 2].split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        assert!(line.len() >= 4, "short reply line {:?}", String::from_utf8_lossy(line));
        let code = std::str::from_utf8(&line[..3]).ok().and_then(|s| s.parse::<u16>().ok()).unwrap_or(0);
        assert!((200..=599).contains(&code), "bad reply {:?}", String::from_utf8_lossy(line));
        assert!(line[3] == b' ' || line[3] == b'-');
        assert!(!line.contains(&b'\r'));
    }
}

/// Answers a decision as the fuzzer says. Errors (a wrong kind of answer) are allowed:
/// they must leave the session usable.
fn decide(s: &mut Session, choice: u8) {
    let r = match choice % 8 {
        0 | 1 => s.accept(),
        2 => s.accept_with(Reply::new(250, EnhancedStatus::new(2, 0, 0), "Ok: queued as X")),
        3 => s.reject(Reply::new(550, EnhancedStatus::new(5, 7, 1), "No")),
        4 => s.reject(Reply::new(451, EnhancedStatus::new(4, 3, 0), "Later")),
        5 => s.auth_challenge(b"challenge"),
        6 => s.auth_succeed("alice"),
        _ => s.reject(Reply::new(421, EnhancedStatus::new(4, 3, 2), "Bye")),
    };
    if r.is_err() {
        // A mistaken answer keeps the decision pending; answer it properly.
        let _ = s.auth_fail().or_else(|_| s.accept());
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let (Some(flags), Some(limits)) = (input.byte(), input.byte()) else { return };
    let config = Arc::new(config(flags, limits));
    let buffered_cap = config.limits.buffered_input;
    let mut now = base();
    let mut s = match limits >> 6 {
        0 => Session::new_implicit_tls(Arc::clone(&config), TlsInfo::new("TLSv1.3", "X"), now),
        1 => Session::new_refused(
            Arc::clone(&config),
            Reply::new(554, EnhancedStatus::new(5, 7, 1), "No"),
            now,
        ),
        _ => Session::new(Arc::clone(&config), now),
    };
    let mut out = Vec::new();
    let mut received = 0usize;
    let mut data_bytes = 0usize;
    let mut answer_now = true;
    // How decisions are answered (see `decide`); 0 accepts everything.
    let mut policy = 0u8;
    let mut pending: Option<Event> = None;
    if limits & 4 == 0 {
        s.poll_transmit(&mut out);
    }
    while let Some(op) = input.byte() {
        match op % 16 {
            0..=8 => {
                let n = usize::from(input.byte().unwrap_or(0));
                let bytes = input.bytes(n);
                received += bytes.len();
                s.receive(bytes, now);
                if !s.is_closed() {
                    assert!(buffered(&s) <= buffered_cap, "{s:?}");
                }
            }
            9 => now += Duration::from_secs(u64::from(input.byte().unwrap_or(0)) * 3),
            10 => answer_now = !answer_now,
            11 => {
                let _ = s.tls_established(TlsInfo::new("TLSv1.3", "X"), now);
            }
            12 => s.handle_eof(now),
            13 => {
                // A new answering policy; answers a decision left pending.
                policy = input.byte().unwrap_or(0);
                if s.is_decision_pending() {
                    decide(&mut s, policy);
                }
                pending = None;
            }
            _ => {
                if let Some(t) = s.poll_timeout()
                    && t <= now
                {
                    s.handle_timeout(now);
                }
            }
        }
        // The application's side: events, decisions, transmit.
        loop {
            while let Some(ev) = s.poll_event() {
                if let Event::MessageData(b) = &ev {
                    data_bytes += b.len();
                }
                let is_decision = matches!(
                    ev,
                    Event::Helo(_)
                        | Event::Mail(_)
                        | Event::Rcpt(_)
                        | Event::DataStart { .. }
                        | Event::MessageEnd(_)
                        | Event::Auth(_)
                        | Event::AuthResponse(_)
                );
                if is_decision {
                    pending = Some(ev);
                }
            }
            if pending.is_some() && answer_now && s.is_decision_pending() {
                pending = None;
                decide(&mut s, policy);
                continue;
            }
            break;
        }
        let before = out.len();
        s.poll_transmit(&mut out);
        assert!(out.len() >= before);
        if s.is_closed() {
            assert!(!s.wants_read());
            assert_eq!(s.poll_timeout(), None);
            assert!(s.close_reason().is_some());
        } else {
            assert!(s.poll_timeout().is_some(), "an open session has a deadline");
        }
        assert!(data_bytes <= 2 * received, "{data_bytes} bytes of message from {received} of input");
    }
    check_replies(&out);
});
