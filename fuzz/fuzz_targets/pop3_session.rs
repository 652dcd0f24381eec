//! A whole POP3 session driven by fuzzer-chosen operations: `receive` with arbitrary chunk
//! boundaries, clock advances, login/AUTH/retrieve/update decisions (answered at once or
//! left pending), `tls_established`, EOF and shutdown.
//!
//! Input: a flags byte, then operations: `0..=8 len bytes` receive, `9 n` advance n
//! minutes, `10` tls_established, `11` EOF, `12 p` answer the pending decision with policy
//! `p`, `13` shutdown, `14..` fire timers.
//!
//! Checked: no panic; UPDATE only ever happens after a login and a QUIT line; a closed
//! session stays closed, with no deadline and no appetite for input.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use postern::TlsInfo;
use postern::pop3::{Config, Event, MessageInfo, Reply, ResponseCode, Session};

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    #[allow(clippy::disallowed_methods)] // the one real clock read: the virtual clock's base
    *BASE.get_or_init(Instant::now)
}

fn config(flags: u8) -> Config {
    let mut c = Config::new("pop.example.test");
    c.stls = flags & 1 != 0;
    c.allow_plaintext_auth = flags & 2 != 0;
    if flags & 4 != 0 {
        c.sasl_mechanisms = vec!["PLAIN".into(), "SCRAM-SHA-256".into()];
    }
    c.apop = flags & 8 != 0;
    if flags & 16 != 0 {
        c.limits.command_line = 32;
        c.limits.auth_line = 32;
        c.limits.auth_failures = 2;
        c.limits.bad_commands = 4;
        c.limits.buffered_input = 256;
    }
    c
}

fn listing() -> Vec<MessageInfo> {
    (1..=3u64).filter_map(|i| MessageInfo::new(10 * i, format!("uid{i}")).ok()).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut ops)) = data.split_first() else { return };
    let mut now = base();
    let mut s = Session::new(Arc::new(config(flags)), [flags; 16], now);
    let mut out = Vec::new();
    let mut pending: Vec<Event> = Vec::new();
    let mut logged_in = false;
    let mut sent: Vec<u8> = Vec::new();
    let quit_sent = |sent: &[u8]| sent.windows(6).any(|w| w.eq_ignore_ascii_case(b"QUIT\r\n"));
    while let Some((&op, rest)) = ops.split_first() {
        ops = rest;
        match op {
            0..=8 => {
                let n = ops.first().copied().unwrap_or(0) as usize;
                ops = ops.get(1..).unwrap_or_default();
                let (chunk, rest) = ops.split_at(n.min(ops.len()));
                ops = rest;
                sent.extend_from_slice(chunk);
                s.receive(chunk, now);
            }
            9 => {
                let n = ops.first().copied().unwrap_or(1);
                ops = ops.get(1..).unwrap_or_default();
                now += Duration::from_secs(60 * u64::from(n));
            }
            10 => {
                let _ = s.tls_established(TlsInfo::new("TLSv1.3", "TLS13_AES_128_GCM_SHA256"), now);
            }
            11 => s.handle_eof(now),
            12 => {
                let p = ops.first().copied().unwrap_or(0);
                ops = ops.get(1..).unwrap_or_default();
                if let Some(e) = pending.pop() {
                    let r = match (e, p % 4) {
                        (Event::Login { user, .. } | Event::Apop { user, .. }, 0 | 1) => {
                            let r = s.accept_login(user, listing());
                            logged_in |= r.is_ok();
                            r
                        }
                        (Event::Auth(_) | Event::AuthResponse(_), 0) => s.auth_challenge(b"more"),
                        (Event::Auth(_) | Event::AuthResponse(_), 1) => {
                            let r = s.accept_login("alice", listing());
                            logged_in |= r.is_ok();
                            r
                        }
                        (Event::Retrieve { .. }, 0 | 1) => {
                            let _ = s.message_data(b"Subject: x\r\n\r\n.dot\nline\r\n.\r\n");
                            s.message_end()
                        }
                        (Event::Update { .. }, 0) => {
                            s.accept()
                        }
                        _ => s.reject(Reply::err(Some(ResponseCode::SysTemp), "no")),
                    };
                    let _ = r;
                }
            }
            13 => s.shutdown(Reply::err(Some(ResponseCode::SysTemp), "shutting down")),
            _ => {
                if let Some(deadline) = s.poll_timeout() {
                    now = now.max(deadline);
                    s.handle_timeout(now);
                }
            }
        }
        while let Some(e) = s.poll_event() {
            if let Event::Update { .. } = e {
                assert!(logged_in && quit_sent(&sent), "UPDATE without a login and a QUIT");
            }
            if matches!(
                e,
                Event::Login { .. } | Event::Apop { .. } | Event::Auth(_) | Event::AuthResponse(_)
                    | Event::Retrieve { .. } | Event::Update { .. }
            ) {
                pending.push(e);
            }
        }
        out.clear();
        s.poll_transmit(&mut out);
        if s.is_closed() {
            assert!(s.poll_timeout().is_none());
            assert!(!s.wants_read());
        }
    }
});
