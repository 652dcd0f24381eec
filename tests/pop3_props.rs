//! Property tests of the POP3 session through the public API: no input panics, UPDATE
//! only after QUIT in the TRANSACTION state, the split of the input never matters, and
//! buffered input stays bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod pop3_harness;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use pop3_harness::*;
use postern::line::BareLineEnding;
use postern::pop3::{CloseReason, Config, Violation};
use proptest::prelude::*;

/// The harness store without the large message (keeps each case fast).
fn small_store() -> Store {
    let mut s = store();
    s.mailboxes.get_mut("alice").unwrap().messages.truncate(A_LARGE);
    s
}

fn configs() -> impl Strategy<Value = (Config, bool)> {
    (0..5usize).prop_map(|i| {
        let mut c = match i {
            0 | 4 => config(),
            1 => tls_config(),
            2 => {
                let mut c = tls_config();
                c.allow_plaintext_auth = true;
                c
            }
            _ => {
                let mut c = config();
                c.bare_line_ending = BareLineEnding::Normalize;
                c
            }
        };
        c.limits.auth_failures = 5;
        (c, i == 4)
    })
}

/// One command line from a POP3 grammar, valid or not, with its line ending.
fn command() -> impl Strategy<Value = Vec<u8>> {
    let plain_alice = b64(b"\0alice\0secret");
    let plain_bob = b64(b"bob\0bob\0hunter2");
    let n = || 0u32..8;
    let line = prop_oneof![
        3 => prop::sample::select(vec![
            "USER alice", "USER bob", "USER mallory", "PASS secret", "PASS hunter2", "PASS wrong",
            "APOP alice 0123456789abcdef0123456789abcdef", "AUTH", "AUTH PLAIN", "AUTH CRAM-MD5",
            "*", "=", "STAT", "LIST", "UIDL", "NOOP", "RSET", "CAPA", "QUIT", "quit", "STLS",
            "LIST 4294967295", "RETR 99999999999", "TOP 1", "DELE x", "",
        ])
        .prop_map(str::to_owned),
        1 => prop::sample::select(vec![plain_alice.clone(), plain_bob.clone()]),
        1 => prop::sample::select(vec![plain_alice, plain_bob]).prop_map(|r| format!("AUTH PLAIN {r}")),
        1 => n().prop_map(|m| format!("LIST {m}")),
        1 => n().prop_map(|m| format!("UIDL {m}")),
        2 => n().prop_map(|m| format!("RETR {m}")),
        2 => (n(), 0u32..4).prop_map(|(m, l)| format!("TOP {m} {l}")),
        2 => n().prop_map(|m| format!("DELE {m}")),
        1 => "[ -~]{0,12}",
        1 => (250usize..300).prop_map(|k| "X".repeat(k)),
    ];
    let ending = prop_oneof![8 => Just(&b"\r\n"[..]), 1 => Just(&b"\n"[..]), 1 => Just(&b"\r"[..])];
    (line, ending).prop_map(|(l, e)| [l.as_bytes(), e].concat())
}

/// Bytes from the grammar, sometimes with arbitrary bytes mixed in.
fn input() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![4 => command(), 1 => prop::collection::vec(any::<u8>(), 0..20)];
    prop::collection::vec(piece, 0..30).prop_map(|v| v.concat())
}

/// Cuts `input` at the given offsets (taken modulo its length).
fn pieces(input: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> =
        cuts.iter().map(|c| if input.is_empty() { 0 } else { c % input.len() }).collect();
    at.push(0);
    at.push(input.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| input[w[0]..w[1]].to_vec()).collect()
}

fn driver(config: &Config, implicit: bool, feed: Feed) -> Driver {
    let store = Rc::new(RefCell::new(small_store()));
    if implicit {
        let mut d = Driver::implicit_tls(config.clone(), store);
        d.app.feed = feed;
        d
    } else {
        Driver::new(config.clone(), store, feed, Knobs::default())
    }
}

/// `true` if `input` holds a `QUIT` line after the first line that could log in.
fn quit_after_login_line(input: &[u8]) -> bool {
    let mut login_seen = false;
    let mut rest = input;
    while let Some(i) = rest.iter().position(|b| *b == b'\n') {
        let line = &rest[..i];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let upper = line.to_ascii_uppercase();
        if upper.starts_with(b"PASS ") || upper.starts_with(b"APOP ") || upper.starts_with(b"AUTH ") {
            login_seen = true;
        } else if login_seen && upper == b"QUIT" {
            return true;
        }
        rest = &rest[i + 1..];
    }
    false
}

/// The invariants every run must keep.
fn check_invariants(d: &Driver) -> Result<(), TestCaseError> {
    let events = &d.app.events;
    prop_assert!(d.app.api_errors.is_empty(), "API errors {:?}", d.app.api_errors);
    let closed: Vec<usize> =
        events.iter().enumerate().filter(|(_, e)| matches!(e, Ev::Closed(_))).map(|(i, _)| i).collect();
    prop_assert!(closed.len() <= 1, "closed twice: {events:?}");
    if let Some(&i) = closed.first() {
        prop_assert_eq!(i, events.len() - 1, "events after Closed: {:?}", events);
        prop_assert!(d.session.is_closed());
    }
    prop_assert_eq!(d.session.is_closed(), d.session.close_reason().is_some());
    let updates: Vec<usize> =
        events.iter().enumerate().filter(|(_, e)| matches!(e, Ev::Update { .. })).map(|(i, _)| i).collect();
    prop_assert!(updates.len() <= 1);
    if let Some(&i) = updates.first() {
        prop_assert!(d.app.logins >= 1, "UPDATE without a login");
        prop_assert!(quit_after_login_line(&d.input), "UPDATE without QUIT after login: {:?}", d.input);
        prop_assert_eq!(&events[i + 1..], &[Ev::Closed(CloseReason::Quit)][..]);
    }
    if d.session.is_closed() {
        prop_assert!(d.app.store.borrow().locked.is_empty(), "lock left behind");
    }
    Ok(())
}

#[derive(Clone, Debug)]
enum Act {
    Send(Vec<u8>),
    Advance(u16),
    Tls,
    Eof,
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        12 => input().prop_map(Act::Send),
        2 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Act::Send),
        2 => (0u16..700).prop_map(Act::Advance),
        2 => Just(Act::Tls),
        1 => Just(Act::Eof),
    ]
}

/// What a run produced, for comparing runs.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    out: String,
    events: Vec<Ev>,
    uids: Vec<(String, Vec<String>)>,
    locked: Vec<String>,
    commits: Vec<(String, Vec<usize>)>,
    reason: Option<CloseReason>,
}

fn finish(d: Driver) -> Run {
    let store = d.app.store.borrow();
    Run {
        out: String::from_utf8_lossy(&d.out).into_owned(),
        events: d.app.events.clone(),
        uids: store
            .mailboxes
            .iter()
            .map(|(u, m)| (u.clone(), m.messages.iter().map(|m| m.uid.clone()).collect()))
            .collect(),
        locked: store.locked.iter().cloned().collect(),
        commits: store.commits.clone(),
        reason: d.session.close_reason(),
    }
}

/// With STLS on offer, `STLS` followed by more bytes is refused in one segment and
/// accepted when the client waits: the one place where the split matters by design
/// (tests/pop3_stls.rs). Those lines become NOOP here.
fn without_stls(config: &Config, implicit: bool, input: Vec<u8>) -> Vec<u8> {
    if !config.stls || implicit {
        return input;
    }
    let mut out = input;
    for i in 0..out.len().saturating_sub(3) {
        if out[i..i + 4].eq_ignore_ascii_case(b"STLS") {
            out[i..i + 4].copy_from_slice(b"NOOP");
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary bytes, timers, handshakes and EOFs, cut anywhere: no panic, no API error,
    /// and the invariants hold.
    #[test]
    fn arbitrary_input_never_panics(
        (config, implicit) in configs(),
        acts in prop::collection::vec(act(), 0..12),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
        chunks in any::<bool>(),
    ) {
        let mut d = driver(&config, implicit, if chunks { Feed::Chunks } else { Feed::Serve });
        for a in acts {
            match a {
                Act::Send(bytes) => {
                    for p in pieces(&bytes, &cuts) {
                        d.receive(&p);
                    }
                }
                Act::Advance(s) => d.advance(Duration::from_secs(s.into())),
                Act::Tls => {
                    let _ = d.tls();
                }
                Act::Eof => d.eof(),
            }
            check_invariants(&d)?;
        }
    }

    /// The session never enters UPDATE unless a QUIT line followed a successful login.
    #[test]
    fn no_update_without_quit_after_login(
        (config, implicit) in configs(),
        input in input(),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        let mut d = driver(&config, implicit, Feed::Serve);
        for p in pieces(&input, &cuts) {
            d.receive(&p);
        }
        check_invariants(&d)?;
        d.eof();
        check_invariants(&d)?;
    }

    /// Grammar-drawn command sequences give the same output, events and store whole,
    /// cut anywhere, or byte by byte, with either feed.
    #[test]
    fn split_never_changes_the_outcome(
        (config, implicit) in configs(),
        input in input(),
        cuts in prop::collection::vec(any::<usize>(), 1..8),
    ) {
        let input = without_stls(&config, implicit, input);
        let whole = {
            let mut d = driver(&config, implicit, Feed::Serve);
            d.receive(&input);
            finish(d)
        };
        let cut = {
            let mut d = driver(&config, implicit, Feed::Chunks);
            for p in pieces(&input, &cuts) {
                d.receive(&p);
            }
            finish(d)
        };
        prop_assert_eq!(&whole, &cut);
        let bytewise = {
            let mut d = driver(&config, implicit, Feed::Serve);
            for b in &input {
                d.receive(std::slice::from_ref(b));
            }
            finish(d)
        };
        prop_assert_eq!(&whole, &bytewise);
    }

    /// While a decision is pending `wants_read` is false; a driver that reads anyway has
    /// its input buffered up to `buffered_input`, and past it the session refuses to hold
    /// more (closes with TooMuchInput).
    #[test]
    fn buffered_input_is_bounded(
        reads in prop::collection::vec(1usize..9000, 1..40),
        limit in 100usize..20_000,
    ) {
        let mut c = config();
        c.limits.buffered_input = limit;
        let store = Rc::new(RefCell::new(small_store()));
        let mut d = Driver::new(c, store, Feed::Serve, Knobs { defer: true, ..Knobs::default() });
        d.receive(b"USER alice\r\nPASS secret\r\n");
        prop_assert_eq!(d.app.deferred.len(), 1);
        let mut held = 0usize;
        for n in reads {
            prop_assert!(!d.session.wants_read(), "a decision is pending");
            d.receive(&vec![b'N'; n]);
            held += n;
            if held > limit {
                prop_assert!(d.session.is_closed(), "holding {} > {}", held, limit);
                prop_assert_eq!(d.violations(), vec![Violation::TooMuchInput]);
                break;
            }
            prop_assert!(!d.session.is_closed());
        }
        if !d.session.is_closed() {
            // Answered: the buffered lines run (each an unknown command) and reading resumes.
            d.answer_deferred();
            prop_assert!(d.session.is_closed() || d.session.wants_read());
        }
        check_invariants(&d)?;
    }

    /// Output grows with the number of command lines, never more: each line earns at
    /// most one reply (the largest being a whole small message).
    #[test]
    fn output_is_bounded_by_the_lines_sent(
        (config, implicit) in configs(),
        input in input(),
    ) {
        let mut d = driver(&config, implicit, Feed::Serve);
        let greeting = d.out.len();
        d.receive(&input);
        let per_line: usize = small_store()
            .mailboxes
            .values()
            .flat_map(|m| m.messages.iter())
            .map(|m| stuffed(&m.bytes, None).len() + 64)
            .sum::<usize>()
            + 512;
        let lines = input.iter().filter(|b| **b == b'\n' || **b == b'\r').count() + 1;
        prop_assert!(
            d.out.len() - greeting <= lines * per_line,
            "{} bytes of output for {} lines",
            d.out.len() - greeting,
            lines
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// RETR and TOP of arbitrary stored bytes (dots, CR, LF in any order), pushed in
    /// arbitrary chunks, give exactly the reference wire form.
    #[test]
    fn streamed_message_matches_the_reference(
        message in prop_oneof![
            // Any bytes that matter, in any order.
            prop::collection::vec(prop::sample::select(vec![b'a', b'.', b'\r', b'\n', b' ']), 0..400),
            // Mostly ordinary CRLF lines (long runs with nothing to change), some special.
            prop::collection::vec(
                prop_oneof![
                    8 => (0usize..120).prop_map(|n| [vec![b'a'; n], b"\r\n".to_vec()].concat()),
                    1 => prop::sample::select(vec![&b".\r\n"[..], b"..x\r\n", b"bare\n", b"\n", b"\r", b".", b"\r\n."])
                        .prop_map(<[u8]>::to_vec),
                ],
                0..60,
            )
            .prop_map(|v| v.concat()),
        ],
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        top in prop::option::of(0u32..6),
    ) {
        use postern::pop3::{Event, MessageInfo, Session};
        use std::sync::Arc;
        let mut s = Session::new(Arc::new(config()), RANDOM, base());
        let cmd = match top {
            Some(n) => format!("USER a\r\nPASS b\r\nTOP 1 {n}\r\n"),
            None => "USER a\r\nPASS b\r\nRETR 1\r\n".to_owned(),
        };
        s.receive(cmd.as_bytes(), base());
        let Some(Event::Login { user, .. }) = s.poll_event() else { panic!("no login") };
        s.accept_login(user, vec![MessageInfo::new(7, "u").unwrap()]).unwrap();
        let Some(Event::Retrieve { index: 0, top_lines }) = s.poll_event() else { panic!("no retrieve") };
        prop_assert_eq!(top_lines, top);
        let mut head = Vec::new();
        s.poll_transmit(&mut head);
        let mut out = Vec::new();
        for p in pieces(&message, &cuts) {
            if !s.message_data(&p).unwrap() {
                break;
            }
            s.poll_transmit(&mut out);
        }
        s.message_end().unwrap();
        s.poll_transmit(&mut out);
        let head_len = if top.is_some() { "+OK top of message follows\r\n".len() } else { "+OK 7 octets\r\n".len() };
        let want = stuffed(&message, top);
        prop_assert_eq!(
            String::from_utf8_lossy(&out[head_len..]),
            String::from_utf8_lossy(&want),
            "message {:?}",
            String::from_utf8_lossy(&message)
        );
    }
}
