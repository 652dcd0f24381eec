//! POP3 transcripts through the public API (RFC 1939, RFC 2449, RFC 3206, RFC 5034).
//!
//! Every transcript run with [`run`]/[`Transcript::run`] is replayed whole, with each
//! client step split at every byte offset into two `receive` calls, and byte by byte,
//! each with the `serve_maildrop` feed and the tiny-chunk `message_data` feed; all
//! replays must give the same output, events and final maildrop state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod pop3_harness;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use pop3_harness::*;
use postern::pop3::{CloseReason, Expire, Violation, apop_verify};

/// alice's listed sizes.
fn sizes() -> Vec<u64> {
    store().mailboxes["alice"].messages.iter().map(Stored::wire_size).collect()
}

fn total() -> u64 {
    sizes().iter().sum()
}

/// The greeting and alice's login, then `body`.
fn login(body: &str) -> String {
    format!("S: {}\n{LOGIN_ALICE}\n{body}", greeting())
}

/// `S:` lines for wire bytes (which must end in `CRLF`).
fn s_lines(wire: &[u8]) -> String {
    let text = std::str::from_utf8(wire).unwrap();
    let body = text.strip_suffix("\r\n").unwrap();
    body.split("\r\n").map(|l| format!("S: {l}\n")).collect()
}

// ----- RFC 1939 §10 and APOP ---------------------------------------------------------

#[test]
fn rfc1939_section10_example_session() {
    // RFC 1939 §10, with USER/PASS in place of APOP: the RFC's digest is bound to the
    // RFC's timestamp, and this session's timestamp is its own (see the next test).
    let msg = |i: usize| rfc_store().mailboxes["mrose"].messages[i].bytes.clone();
    let script = format!(
        "S: {greeting}
         C: USER mrose
         S: +OK
         C: PASS tanstaaf
         S: +OK Logged in, 2 messages
         C: STAT
         S: +OK 2 320
         C: LIST
         S: +OK 2 messages
         S: 1 120
         S: 2 200
         S: .
         C: RETR 1
         S: +OK 120 octets
         {m1}C: DELE 1
         S: +OK message 1 deleted
         C: RETR 2
         S: +OK 200 octets
         {m2}C: DELE 2
         S: +OK message 2 deleted
         C: QUIT
         S: +OK Bye, 2 messages deleted
        ",
        greeting = greeting(),
        m1 = s_lines(&stuffed(&msg(0), None)),
        m2 = s_lines(&stuffed(&msg(1), None)),
    );
    let o = Transcript::new(&script).store(|s| *s = rfc_store()).run();
    assert_eq!(o.updates(), vec![vec![0, 1]]);
    assert!(o.store.mailboxes["mrose"].messages.is_empty(), "the maildrop is empty after UPDATE");
    assert_eq!(o.store.commits, vec![("mrose".to_owned(), vec![0, 1])]);
    assert!(o.store.locked.is_empty());
    assert_eq!(o.close_reason, Some(CloseReason::Quit));
}

#[test]
fn apop_verify_rfc1939_vector() {
    let ts = "<1896.697170952@dbc.mtview.ca.us>";
    assert!(apop_verify(ts, b"tanstaaf", "c4c9334bac560ecc979e58001b3e22fb"));
    assert!(apop_verify(ts, b"tanstaaf", "C4C9334BAC560ECC979E58001B3E22FB"));
    assert!(!apop_verify(ts, b"tanstaaF", "c4c9334bac560ecc979e58001b3e22fb"));
    assert!(!apop_verify(ts, b"tanstaaf", "c4c9334bac560ecc979e58001b3e22f"));
    assert!(!apop_verify(ts, b"tanstaaf", "c4c9334bac560ecc979e58001b3e22fbb"));
    assert!(!apop_verify(ts, b"tanstaaf", "x4c9334bac560ecc979e58001b3e22fb"));
    // The same digest against another session's timestamp: a replay fails.
    assert!(!apop_verify(&timestamp(), b"tanstaaf", "c4c9334bac560ecc979e58001b3e22fb"));
}

#[test]
fn apop_event_carries_this_sessions_timestamp_and_a_replayed_digest_fails() {
    let script = format!(
        "S: {greeting}
         C: APOP mrose c4c9334bac560ecc979e58001b3e22fb
         S: -ERR [AUTH] invalid user name or password
         C: APOP alice 00000000000000000000000000000000
         S: -ERR [AUTH] invalid user name or password
         C: STAT
         S: -ERR command not valid before login
        ",
        greeting = greeting()
    );
    let o = Transcript::new(&script).store(|s| s.mailboxes.extend(rfc_store().mailboxes)).run();
    assert!(greeting().ends_with(&timestamp()));
    assert_eq!(
        o.events[0],
        Ev::Apop {
            user: "mrose".into(),
            timestamp: timestamp(),
            digest: "c4c9334bac560ecc979e58001b3e22fb".into()
        }
    );
    assert!(matches!(&o.events[1], Ev::Apop { timestamp: t, .. } if *t == timestamp()));
}

#[test]
fn apop_timestamp_is_unique_per_session() {
    use postern::pop3::Session;
    use std::sync::Arc;
    let c = Arc::new(config());
    let a = Session::new(c.clone(), [1; 16], base());
    let b = Session::new(c, [2; 16], base());
    assert_ne!(a.timestamp(), b.timestamp());
    assert!(a.timestamp().starts_with('<') && a.timestamp().ends_with(&format!("@{HOST}>")));
}

#[test]
fn apop_disabled() {
    let o = Transcript::new(
        "S: +OK POP3 server ready
         C: APOP alice c4c9334bac560ecc979e58001b3e22fb
         S: -ERR APOP not available on this connection
        ",
    )
    .config(|c| c.apop = false)
    .run();
    assert!(o.events.is_empty());
}

#[test]
fn apop_malformed_arguments() {
    run(&format!(
        "S: {}
         C: APOP alice
         S: -ERR invalid arguments
         C: APOP alice abc def
         S: -ERR invalid arguments
         C: APOP alice short
         S: -ERR [AUTH] invalid user name or password
        ",
        greeting()
    ));
}

// ----- every command in each state ---------------------------------------------------

#[test]
fn every_command_in_authorization() {
    let cases: &[(&str, &str)] = &[
        ("STAT", "-ERR command not valid before login"),
        ("LIST", "-ERR command not valid before login"),
        ("LIST 1", "-ERR command not valid before login"),
        ("UIDL", "-ERR command not valid before login"),
        ("UIDL 1", "-ERR command not valid before login"),
        ("RETR 1", "-ERR command not valid before login"),
        ("TOP 1 1", "-ERR command not valid before login"),
        ("DELE 1", "-ERR command not valid before login"),
        ("NOOP", "-ERR command not valid before login"),
        ("RSET", "-ERR command not valid before login"),
        ("PASS secret", "-ERR send USER first"),
        ("USER alice", "+OK"),
        ("user alice", "+OK"),
        ("USER", "-ERR invalid arguments"),
        ("USER a b", "-ERR invalid arguments"),
        ("STLS", "-ERR STLS not supported"),
        ("AUTH CRAM-MD5", "-ERR unsupported authentication mechanism"),
        ("XTND XMIT", "-ERR unknown command"),
        ("", "-ERR unknown command"),
        ("RETR x", "-ERR invalid arguments"),
        ("LIST 1 2", "-ERR invalid arguments"),
        ("QUIT", "+OK Bye"),
    ];
    for (cmd, want) in cases {
        let script = format!("S: {}\nC: {cmd}\nS: {want}\n", greeting());
        let o = run(&script);
        assert_eq!(o.closed, *cmd == "QUIT", "{cmd}");
        assert!(o.updates().is_empty());
    }
}

#[test]
fn every_command_in_transaction() {
    let s = sizes();
    let uids = ["a-hello", "a-dots", "a-bare-lf", "a-no-newline", "a-large"];
    let list: String = s.iter().enumerate().map(|(i, n)| format!("S: {} {n}\n", i + 1)).collect();
    let uidl: String = uids.iter().enumerate().map(|(i, u)| format!("S: {} {u}\n", i + 1)).collect();
    let hello = s_lines(&stuffed(HELLO, None));
    let cases: Vec<(&str, String)> = vec![
        ("STAT", format!("S: +OK 5 {}\n", total())),
        ("LIST", format!("S: +OK 5 messages\n{list}S: .\n")),
        ("LIST 2", format!("S: +OK 2 {}\n", s[1])),
        ("list 5", format!("S: +OK 5 {}\n", s[4])),
        ("LIST 0", "S: -ERR no such message\n".into()),
        ("LIST 6", "S: -ERR no such message\n".into()),
        ("LIST 4294967295", "S: -ERR no such message\n".into()),
        ("LIST 4294967296", "S: -ERR invalid arguments\n".into()),
        ("LIST 99999999999999999999", "S: -ERR invalid arguments\n".into()),
        ("LIST x", "S: -ERR invalid arguments\n".into()),
        ("LIST -1", "S: -ERR invalid arguments\n".into()),
        ("LIST +1", "S: -ERR invalid arguments\n".into()),
        ("LIST 1 2", "S: -ERR invalid arguments\n".into()),
        ("LIST 0001", format!("S: +OK 1 {}\n", s[0])),
        ("UIDL", format!("S: +OK unique-id listing follows\n{uidl}S: .\n")),
        ("UIDL 3", "S: +OK 3 a-bare-lf\n".into()),
        ("UIDL 0", "S: -ERR no such message\n".into()),
        ("UIDL 9", "S: -ERR no such message\n".into()),
        ("UIDL y", "S: -ERR invalid arguments\n".into()),
        ("RETR 1", format!("S: +OK {} octets\n{hello}", s[0])),
        ("RETR 0", "S: -ERR no such message\n".into()),
        ("RETR 6", "S: -ERR no such message\n".into()),
        ("RETR 4294967295", "S: -ERR no such message\n".into()),
        ("RETR 1x", "S: -ERR invalid arguments\n".into()),
        ("RETR", "S: -ERR invalid arguments\n".into()),
        ("TOP 1 0", format!("S: +OK top of message follows\n{}", s_lines(&stuffed(HELLO, Some(0))))),
        ("TOP 0 1", "S: -ERR no such message\n".into()),
        ("TOP 6 1", "S: -ERR no such message\n".into()),
        ("TOP 1", "S: -ERR invalid arguments\n".into()),
        ("TOP 1 -1", "S: -ERR invalid arguments\n".into()),
        ("TOP x 1", "S: -ERR invalid arguments\n".into()),
        ("DELE 2", "S: +OK message 2 deleted\n".into()),
        ("DELE 0", "S: -ERR no such message\n".into()),
        ("DELE 6", "S: -ERR no such message\n".into()),
        ("DELE z", "S: -ERR invalid arguments\n".into()),
        ("NOOP", "S: +OK\n".into()),
        ("NOOP 1", "S: -ERR invalid arguments\n".into()),
        ("RSET", "S: +OK maildrop has 5 messages\n".into()),
        ("USER bob", "S: -ERR command not valid after login\n".into()),
        ("PASS hunter2", "S: -ERR command not valid after login\n".into()),
        ("APOP bob c4c9334bac560ecc979e58001b3e22fb", "S: -ERR command not valid after login\n".into()),
        ("AUTH PLAIN", "S: -ERR command not valid after login\n".into()),
        ("AUTH", "S: -ERR command not valid after login\n".into()),
        ("STLS", "S: -ERR STLS not supported\n".into()),
        ("XTND XMIT", "S: -ERR unknown command\n".into()),
        ("QUIT", "S: +OK Bye, 0 messages deleted\n".into()),
    ];
    for (cmd, want) in cases {
        let o = run(&login(&format!("C: {cmd}\n{want}")));
        assert_eq!(o.closed, cmd == "QUIT", "{cmd}");
        assert_eq!(o.updates(), if cmd == "QUIT" { vec![Vec::<usize>::new()] } else { Vec::new() }, "{cmd}");
        assert_eq!(o.store.mailboxes["alice"].messages.len(), 5, "{cmd}: nothing removed");
    }
}

#[test]
fn quit_in_authorization_enters_no_update() {
    let o = run(&format!(
        "S: {}
         C: USER alice
         S: +OK
         C: QUIT
         S: +OK Bye
        ",
        greeting()
    ));
    assert!(o.updates().is_empty());
    assert_eq!(o.close_reason, Some(CloseReason::Quit));
    assert!(o.store.commits.is_empty());
}

#[test]
fn commands_after_quit_are_ignored() {
    let o = run(&login(
        "C: QUIT
         C: DELE 1
         C: QUIT
         S: +OK Bye, 0 messages deleted
        ",
    ));
    assert_eq!(o.updates(), vec![Vec::<usize>::new()]);
    assert_eq!(o.uids("alice").len(), 5);
}

// ----- USER/PASS ---------------------------------------------------------------------

#[test]
fn user_pass_failures() {
    let o = run(&format!(
        "S: {}
         C: USER alice
         S: +OK
         C: PASS wrong
         S: -ERR [AUTH] invalid user name or password
         C: PASS secret
         S: -ERR send USER first
         C: USER nobody
         S: +OK
         C: PASS secret
         S: -ERR [AUTH] invalid user name or password
        ",
        greeting()
    ));
    assert_eq!(
        o.events,
        vec![
            Ev::Login { user: "alice".into(), password: b"wrong".to_vec() },
            Ev::Login { user: "nobody".into(), password: b"secret".to_vec() },
        ]
    );
    assert!(!o.closed);
}

#[test]
fn pass_takes_the_rest_of_the_line() {
    let o = run(&format!(
        "S: {}
         C: USER bob
         S: +OK
         C: PASS two words 
         S: -ERR [AUTH] invalid user name or password
         C: USER bob
         S: +OK
         C: PASS hunter2
         S: +OK Logged in, 2 messages
        ",
        greeting()
    ));
    assert_eq!(o.events[0], Ev::Login { user: "bob".into(), password: b"two words ".to_vec() });
}

#[test]
fn user_name_too_long_is_refused() {
    run(&format!(
        "S: {}
         C: USER {}
         S: -ERR invalid arguments
        ",
        greeting(),
        "a".repeat(41)
    ));
}

// ----- AUTH PLAIN (RFC 5034) ---------------------------------------------------------

#[test]
fn auth_plain_with_initial_response() {
    let o = run(&format!(
        "S: {}
         C: AUTH PLAIN {}
         S: +OK Logged in, 5 messages
         C: STAT
         S: +OK 5 {}
        ",
        greeting(),
        b64(b"\0alice\0secret"),
        total()
    ));
    assert_eq!(
        o.events[0],
        Ev::Auth { mechanism: "PLAIN".into(), initial: Some(b"\0alice\0secret".to_vec()) }
    );
}

#[test]
fn auth_plain_without_initial_response() {
    let o = run(&format!(
        "S: {}
         C: auth plain
         S: + 
         C: {}
         S: +OK Logged in, 2 messages
        ",
        greeting(),
        b64(b"bob\0bob\0hunter2"),
    ));
    assert_eq!(
        o.events,
        vec![
            Ev::Auth { mechanism: "PLAIN".into(), initial: None },
            Ev::AuthResponse(b"bob\0bob\0hunter2".to_vec()),
        ]
    );
}

#[test]
fn auth_plain_cancel_bad_base64_and_wrong_credentials() {
    let o = run(&format!(
        "S: {}
         C: AUTH PLAIN
         S: + 
         C: *
         S: -ERR authentication cancelled
         C: AUTH PLAIN
         S: + 
         C: !!not base64!!
         S: -ERR invalid base64
         C: AUTH PLAIN !!!!
         S: -ERR invalid base64
         C: AUTH PLAIN =
         S: -ERR [AUTH] invalid user name or password
         C: AUTH PLAIN {}
         S: -ERR [AUTH] invalid user name or password
         C: AUTH PLAIN {}
         S: +OK Logged in, 5 messages
        ",
        greeting(),
        b64(b"\0alice\0wrong"),
        b64(b"alice\0alice\0secret"),
    ));
    assert_eq!(
        o.events,
        vec![
            Ev::Auth { mechanism: "PLAIN".into(), initial: None },
            Ev::AuthAborted,
            Ev::Auth { mechanism: "PLAIN".into(), initial: None },
            Ev::AuthAborted,
            Ev::Auth { mechanism: "PLAIN".into(), initial: Some(vec![]) },
            Ev::Auth { mechanism: "PLAIN".into(), initial: Some(b"\0alice\0wrong".to_vec()) },
            Ev::Auth { mechanism: "PLAIN".into(), initial: Some(b"alice\0alice\0secret".to_vec()) },
        ]
    );
}

#[test]
fn auth_lists_mechanisms_and_refuses_others() {
    run(&format!(
        "S: {}
         C: AUTH
         S: +OK
         S: PLAIN
         S: .
         C: AUTH CRAM-MD5
         S: -ERR unsupported authentication mechanism
         C: AUTH PL@IN
         S: -ERR invalid arguments
        ",
        greeting()
    ));
}

#[test]
fn auth_response_line_may_exceed_the_command_line_limit() {
    // RFC 5034 §4: the 255-octet limit is for the AUTH command; the response line is
    // bounded by `auth_line` instead.
    let long = b64(&[b"\0alice\0".as_slice(), &[b'x'; 400]].concat());
    let o = run(&format!(
        "S: {}
         C: AUTH PLAIN
         S: + 
         C: {long}
         S: -ERR [AUTH] invalid user name or password
        ",
        greeting()
    ));
    assert!(o.violations().is_empty());
}

// ----- CAPA --------------------------------------------------------------------------

const CAPA_COMMON: &str = "S: TOP\nS: UIDL\nS: RESP-CODES\nS: AUTH-RESP-CODE\nS: PIPELINING\n";

#[test]
fn capa_in_each_state_default() {
    let o = run(&format!(
        "S: {}
         C: CAPA
         S: +OK Capability list follows
         {CAPA_COMMON}S: USER
         S: SASL PLAIN
         S: .
         C: USER alice
         S: +OK
         C: PASS secret
         S: +OK Logged in, 5 messages
         C: CAPA
         S: +OK Capability list follows
         {CAPA_COMMON}S: .
        ",
        greeting()
    ));
    assert!(!o.output().contains("IMPLEMENTATION"), "no IMPLEMENTATION by default");
}

#[test]
fn capa_with_implementation_login_delay_and_expire() {
    let body = "S: LOGIN-DELAY 900\nS: EXPIRE 31\nS: IMPLEMENTATION postern-test\nS: .\n";
    Transcript::new(&format!(
        "S: {}
         C: CAPA
         S: +OK Capability list follows
         {CAPA_COMMON}S: USER
         S: SASL PLAIN
         {body}C: USER alice
         S: +OK
         C: PASS secret
         S: +OK Logged in, 5 messages
         C: CAPA
         S: +OK Capability list follows
         {CAPA_COMMON}{body}",
        greeting()
    ))
    .config(|c| {
        c.implementation = Some("postern-test".into());
        c.login_delay = Some(900);
        c.expire = Some(Expire::Days(31));
    })
    .run();
    Transcript::new(&format!(
        "S: {}
         C: CAPA
         S: +OK Capability list follows
         {CAPA_COMMON}S: USER
         S: SASL PLAIN
         S: EXPIRE NEVER
         S: .
        ",
        greeting()
    ))
    .config(|c| c.expire = Some(Expire::Never))
    .run();
}

#[test]
fn capa_sanitises_the_implementation_string() {
    let o = Transcript::new(&format!("S: {}\nC: CAPA\nS* \n", greeting()))
        .config(|c| c.implementation = Some("evil\r\n.\r\n+OK injected".into()))
        .run();
    let out = o.output();
    assert!(out.contains("IMPLEMENTATION evil  .  +OK injected\r\n.\r\n"), "{out:?}");
}

#[test]
fn capa_before_tls_offers_stls_and_no_plaintext_login() {
    Transcript::new(&format!(
        "S: {}
         C: CAPA
         S: +OK Capability list follows
         {CAPA_COMMON}S: STLS
         S: .
        ",
        greeting()
    ))
    .with_config(tls_config())
    .run();
}

// ----- response codes (RFC 2449 §8, RFC 3206) -----------------------------------------

#[test]
fn in_use_for_a_locked_maildrop() {
    let o = Transcript::new(&format!(
        "S: {}
         C: USER alice
         S: +OK
         C: PASS secret
         S: -ERR [IN-USE] maildrop already locked
         C: USER bob
         S: +OK
         C: PASS hunter2
         S: +OK Logged in, 2 messages
        ",
        greeting()
    ))
    .store(|s| {
        s.locked.insert("alice".into());
    })
    .run();
    assert!(o.store.locked.contains("alice"), "the other session's lock is untouched");
}

#[test]
fn in_use_with_two_real_sessions_sharing_the_store() {
    let shared: Shared = Rc::new(RefCell::new(store()));
    let mut a = Driver::new(config(), shared.clone(), Feed::Serve, Knobs::default());
    let mut b = Driver::new(config(), shared.clone(), Feed::Chunks, Knobs::default());
    a.take_output();
    b.take_output();
    assert_eq!(a.talk(b"USER alice\r\nPASS secret\r\n"), "+OK\r\n+OK Logged in, 5 messages\r\n");
    assert_eq!(b.talk(b"USER alice\r\nPASS secret\r\n"), "+OK\r\n-ERR [IN-USE] maildrop already locked\r\n");
    let auth = format!("AUTH PLAIN {}\r\n", b64(b"\0alice\0secret"));
    assert_eq!(b.talk(auth.as_bytes()), "-ERR [IN-USE] maildrop already locked\r\n");
    assert_eq!(a.talk(b"DELE 1\r\nQUIT\r\n"), "+OK message 1 deleted\r\n+OK Bye, 1 message deleted\r\n");
    assert!(shared.borrow().locked.is_empty());
    assert_eq!(b.talk(b"USER alice\r\nPASS secret\r\n"), "+OK\r\n+OK Logged in, 4 messages\r\n");
    // A dropped connection releases the lock too (the application does it on Closed).
    b.eof();
    assert!(shared.borrow().locked.is_empty());
    assert_eq!(shared.borrow().mailboxes["alice"].messages.len(), 4);
}

#[test]
fn login_delay_response_code() {
    let o = Transcript::new(&format!(
        "S: {}
         C: USER alice
         S: +OK
         C: PASS secret
         S: -ERR [LOGIN-DELAY] wait before logging in again
        ",
        greeting()
    ))
    .knobs(|k| k.login_delay = true)
    .run();
    assert!(o.store.locked.is_empty());
}

#[test]
fn sys_temp_when_a_message_cannot_be_read() {
    // Nothing sent yet: -ERR [SYS/TEMP] and the session goes on.
    let o = Transcript::new(&login(
        "C: RETR 1
         S: -ERR [SYS/TEMP] cannot read message
         C: TOP 2 0
         S: -ERR [SYS/TEMP] cannot read message
         C: NOOP
         S: +OK
         C: QUIT
         S: +OK Bye, 0 messages deleted
        ",
    ))
    .knobs(|k| k.fail_read_at = Some(0))
    .run();
    assert_eq!(o.close_reason, Some(CloseReason::Quit));
}

#[test]
fn read_failure_after_data_closes_without_terminator_and_deletes_nothing() {
    let o = Transcript::new(&login(&format!(
        "C: DELE 2
         S: +OK message 2 deleted
         C: RETR 1
         S: +OK {} octets
         S* 
         C: QUIT
        ",
        sizes()[0]
    )))
    .knobs(|k| k.fail_read_at = Some(30))
    .run();
    let retr = o.step(3);
    let expected_prefix = &stuffed(HELLO, None)[..30];
    assert!(retr.ends_with(expected_prefix), "{:?}", String::from_utf8_lossy(retr));
    assert!(!retr.ends_with(b".\r\n"), "no terminating dot after a failed read");
    assert!(o.step(4).is_empty(), "QUIT after the close is ignored");
    assert_eq!(o.close_reason, Some(CloseReason::Aborted));
    assert!(o.updates().is_empty());
    assert_eq!(o.uids("alice").len(), 5);
    assert!(o.store.locked.is_empty());
}

#[test]
fn sys_temp_when_the_update_commit_fails() {
    let o = Transcript::new(&login(
        "C: DELE 1
         S: +OK message 1 deleted
         C: QUIT
         S: -ERR [SYS/TEMP] some deleted messages not removed
         C: NOOP
        ",
    ))
    .knobs(|k| k.fail_commit = true)
    .run();
    assert_eq!(o.updates(), vec![vec![0]]);
    assert!(o.closed);
    assert_eq!(o.uids("alice").len(), 5);
    assert!(o.store.commits.is_empty());
    assert!(o.store.locked.is_empty());
}

// ----- RETR and TOP: streaming and dot-stuffing --------------------------------------

#[test]
fn retr_stuffs_lines_starting_with_a_dot() {
    let o = run(&login(&format!(
        "C: RETR 2
         S: +OK {} octets
         S: Subject: dots
         S:
         S: ..leading dot
         S: ..
         S: ...two dots
         S: not . a dot
         S: ..
         S:
         S: .. 
         S: last
         S: .
        ",
        sizes()[1]
    )));
    assert_eq!(o.events.last(), Some(&Ev::Retrieve { index: A_DOTS, top_lines: None }));
}

#[test]
fn retr_sends_a_bare_lf_message_with_crlf() {
    let o = run(&login(&format!(
        "C: RETR 3
         S: +OK {} octets
         S: Subject: bare lf
         S:
         S: line one
         S: ..dot line
         S:
         S: line four
         S: .
        ",
        sizes()[2]
    )));
    assert_eq!(sizes()[2], BARE_LF.len() as u64 + 6);
    assert!(!o.output().replace("\r\n", "").contains('\n'), "no bare LF on the wire");
}

#[test]
fn retr_adds_crlf_before_the_dot_when_the_message_lacks_a_final_newline() {
    run(&login(&format!(
        "C: RETR 4
         S: +OK {} octets
         S: Subject: no newline
         S:
         S: first
         S: ..last line without newline
         S: .
         C: NOOP
         S: +OK
        ",
        sizes()[3]
    )));
}

#[test]
fn retr_large_message_is_streamed_and_stuffed() {
    let o = run(&login(&format!("C: RETR 5\nS: +OK {} octets\nS* \n", sizes()[4])));
    let head = format!("+OK {} octets\r\n", sizes()[4]);
    let mut want = head.into_bytes();
    want.extend_from_slice(&stuffed(&large(), None));
    assert_eq!(o.step(2), want.as_slice());
    assert!(large().len() > 3 * 64 * 1024);
}

#[test]
fn top_header_and_n_body_lines() {
    let hello_top = |n| s_lines(&stuffed(HELLO, Some(n)));
    run(&login(&format!(
        "C: TOP 1 0
         S: +OK top of message follows
         {}C: TOP 1 1
         S: +OK top of message follows
         {}C: TOP 1 100
         S: +OK top of message follows
         {}",
        hello_top(0),
        hello_top(1),
        s_lines(&stuffed(HELLO, None)),
    )));
    // Spelled out once, to check the reference implementation too.
    run(&login(
        "C: TOP 1 0
         S: +OK top of message follows
         S: From: bob@example.test
         S: To: alice@example.test
         S: Subject: hello
         S:
         S: .
         C: TOP 2 2
         S: +OK top of message follows
         S: Subject: dots
         S:
         S: ..leading dot
         S: ..
         S: .
         C: TOP 3 1
         S: +OK top of message follows
         S: Subject: bare lf
         S:
         S: line one
         S: .
         C: TOP 4 5
         S: +OK top of message follows
         S: Subject: no newline
         S:
         S: first
         S: ..last line without newline
         S: .
        ",
    ));
}

#[test]
fn top_of_the_large_message() {
    for n in [0u32, 1, 3, 2999, 3000, 5000] {
        let o = run(&login(&format!("C: TOP 5 {n}\nS: +OK top of message follows\nS* \n")));
        let mut want = b"+OK top of message follows\r\n".to_vec();
        want.extend_from_slice(&stuffed(&large(), Some(n)));
        assert_eq!(o.step(2), want.as_slice(), "TOP 5 {n}");
    }
}

#[test]
fn top_counts_lines_across_every_stored_line_ending() {
    // Header/body separator as bare LF, CR LF split across chunks, and a body line that
    // is only a dot.
    let o = run(&login(&format!(
        "C: DELE 1
         S: +OK message 1 deleted
         C: TOP 2 3
         S: +OK top of message follows
         {}C: TOP 3 2
         S: +OK top of message follows
         {}",
        s_lines(&stuffed(DOTS, Some(3))),
        s_lines(&stuffed(BARE_LF, Some(2))),
    )));
    assert_eq!(
        o.events[1..],
        [
            Ev::Retrieve { index: A_DOTS, top_lines: Some(3) },
            Ev::Retrieve { index: A_BARE_LF, top_lines: Some(2) }
        ]
    );
}

// ----- DELE, RSET, QUIT, UPDATE ------------------------------------------------------

#[test]
fn deleted_messages_are_hidden_until_rset() {
    let s = sizes();
    run(&login(&format!(
        "C: DELE 2
         S: +OK message 2 deleted
         C: DELE 2
         S: -ERR message 2 already deleted
         C: RETR 2
         S: -ERR message 2 already deleted
         C: TOP 2 0
         S: -ERR message 2 already deleted
         C: LIST 2
         S: -ERR message 2 already deleted
         C: UIDL 2
         S: -ERR message 2 already deleted
         C: STAT
         S: +OK 4 {stat}
         C: LIST
         S: +OK 4 messages
         S: 1 {s0}
         S: 3 {s2}
         S: 4 {s3}
         S: 5 {s4}
         S: .
         C: UIDL
         S: +OK unique-id listing follows
         S: 1 a-hello
         S: 3 a-bare-lf
         S: 4 a-no-newline
         S: 5 a-large
         S: .
         C: RSET
         S: +OK maildrop has 5 messages
         C: LIST 2
         S: +OK 2 {s1}
         C: QUIT
         S: +OK Bye, 0 messages deleted
        ",
        stat = total() - s[1],
        s0 = s[0],
        s1 = s[1],
        s2 = s[2],
        s3 = s[3],
        s4 = s[4],
    )));
}

#[test]
fn dele_then_rset_deletes_nothing() {
    let o = run(&login(
        "C: DELE 1
         S: +OK message 1 deleted
         C: DELE 5
         S: +OK message 5 deleted
         C: RSET
         S: +OK maildrop has 5 messages
         C: QUIT
         S: +OK Bye, 0 messages deleted
        ",
    ));
    assert_eq!(o.updates(), vec![Vec::<usize>::new()]);
    assert_eq!(o.uids("alice").len(), 5);
}

#[test]
fn dele_then_quit_updates_exactly_those_messages() {
    let o = run(&login(
        "C: DELE 1
         S: +OK message 1 deleted
         C: DELE 3
         S: +OK message 3 deleted
         C: DELE 5
         S: +OK message 5 deleted
         C: QUIT
         S: +OK Bye, 3 messages deleted
        ",
    ));
    assert_eq!(o.updates(), vec![vec![0, 2, 4]]);
    assert_eq!(o.uids("alice"), vec!["a-dots", "a-no-newline"]);
    assert_eq!(o.store.commits, vec![("alice".to_owned(), vec![0, 2, 4])]);
    assert_eq!(o.close_reason, Some(CloseReason::Quit));
    assert!(o.store.locked.is_empty());
    assert_eq!(o.events.last(), Some(&Ev::Closed(CloseReason::Quit)));
}

#[test]
fn dropped_connection_deletes_nothing() {
    let o = run(&login(
        "C: DELE 1
         S: +OK message 1 deleted
         C: DELE 2
         S: +OK message 2 deleted
         EOF
        ",
    ));
    assert!(o.updates().is_empty());
    assert_eq!(o.close_reason, Some(CloseReason::ConnectionLost));
    assert_eq!(o.uids("alice").len(), 5);
    assert!(o.store.locked.is_empty());
}

#[test]
fn dropped_connection_mid_command_deletes_nothing() {
    let o = run(&login(
        "C: DELE 1
         S: +OK message 1 deleted
         R: QUI
         EOF
        ",
    ));
    assert!(o.updates().is_empty());
    assert_eq!(o.uids("alice").len(), 5);
}

// ----- timers ------------------------------------------------------------------------

#[test]
fn autologout_closes_silently_and_deletes_nothing() {
    let o = run(&login(
        "C: DELE 1
         S: +OK message 1 deleted
         T: 599
         C: NOOP
         S: +OK
         T: 599
         R: NOO
         T: 1
         C: NOOP
        ",
    ));
    assert_eq!(o.close_reason, Some(CloseReason::Timeout));
    assert_eq!(o.events.last(), Some(&Ev::Closed(CloseReason::Timeout)));
    assert!(o.updates().is_empty());
    assert_eq!(o.uids("alice").len(), 5);
    assert!(o.store.locked.is_empty());
}

#[test]
fn autologout_in_authorization() {
    let o = run(&format!(
        "S: {}
         C: USER alice
         S: +OK
         T: 600
         C: PASS secret
        ",
        greeting()
    ));
    assert_eq!(o.close_reason, Some(CloseReason::Timeout));
    assert!(o.events.iter().all(|e| !matches!(e, Ev::Login { .. })));
}

#[test]
fn the_idle_timeout_is_at_least_ten_minutes_by_default() {
    let d = Driver::plain();
    assert_eq!(d.session.poll_timeout(), Some(base() + Duration::from_secs(600)));
}

#[test]
fn a_trickled_command_does_not_extend_the_timer() {
    let mut d = Driver::plain();
    d.take_output();
    for b in b"NOOP" {
        d.advance(Duration::from_secs(149));
        d.receive(std::slice::from_ref(b));
    }
    d.advance(Duration::from_secs(5));
    assert!(d.session.is_closed(), "600 s after the greeting, whatever trickled in");
    assert_eq!(d.take_output(), "");
}

#[test]
fn poll_timeout_is_not_stale_while_a_decision_is_pending() {
    let mut d = Driver::new(
        config(),
        Rc::new(RefCell::new(store())),
        Feed::Serve,
        Knobs { defer: true, ..Knobs::default() },
    );
    d.receive(b"USER alice\r\nPASS secret\r\n");
    assert_eq!(d.app.deferred.len(), 1);
    d.now += Duration::from_secs(601);
    let now = d.now;
    d.session.handle_timeout(now);
    assert!(!d.session.is_closed(), "a pending decision holds the timer");
    // An event loop sleeps until poll_timeout() and then calls handle_timeout(): a deadline
    // that is already past and that handle_timeout() does not act on makes it spin.
    assert!(
        d.session.poll_timeout().is_none_or(|t| t > now),
        "poll_timeout() = {:?} is not after now",
        d.session.poll_timeout().map(|t| t - base())
    );
}

// ----- limits ------------------------------------------------------------------------

#[test]
fn failed_login_limit_closes_the_session() {
    let o = run(&format!(
        "S: {}
         C: USER alice
         S: +OK
         C: PASS wrong
         S: -ERR [AUTH] invalid user name or password
         C: APOP alice 0123456789abcdef0123456789abcdef
         S: -ERR [AUTH] invalid user name or password
         C: AUTH PLAIN {}
         S: -ERR [AUTH] invalid user name or password
         S: -ERR [AUTH] too many failures
         C: USER alice
         C: PASS secret
        ",
        greeting(),
        b64(b"\0alice\0nope")
    ));
    assert_eq!(o.violations(), vec![Violation::TooManyAuthFailures]);
    assert_eq!(o.close_reason, Some(CloseReason::Violation));
    assert!(o.store.locked.is_empty());
}

#[test]
fn bad_command_limit_closes_the_session() {
    let mut script = format!("S: {}\n", greeting());
    for _ in 0..19 {
        script += "C: BOGUS\nS: -ERR unknown command\n";
    }
    let o = run(&script);
    assert!(!o.closed, "19 bad commands are tolerated");
    script += "C: BOGUS\nS: -ERR unknown command\nS: -ERR too many bad commands\nC: CAPA\n";
    let o = run(&script);
    assert_eq!(o.violations(), vec![Violation::TooManyBadCommands]);
    assert_eq!(o.close_reason, Some(CloseReason::Violation));
}

#[test]
fn overlong_line_is_refused_and_the_session_goes_on() {
    // 255 octets with CRLF is the longest line (RFC 2449 §4).
    let pass_255 = format!("PASS {}", "p".repeat(248));
    let pass_256 = format!("PASS {}", "p".repeat(249));
    let o = run(&format!(
        "S: {}
         C: USER alice
         S: +OK
         C: {pass_255}
         S: -ERR [AUTH] invalid user name or password
         C: USER alice
         S: +OK
         C: {pass_256}
         S: -ERR line too long
         C: {}
         S: -ERR line too long
         C: PASS secret
         S: +OK Logged in, 5 messages
        ",
        greeting(),
        "X".repeat(700),
    ));
    assert_eq!(o.violations(), vec![Violation::LineTooLong, Violation::LineTooLong]);
    assert_eq!(o.events[0], Ev::Login { user: "alice".into(), password: vec![b'p'; 248] });
}

#[test]
fn non_utf8_command_is_refused() {
    let o = run(&login(
        "C: USER \\xff\\xfe
         S: -ERR command is not valid UTF-8
         C: \\xc3\\x28
         S: -ERR command is not valid UTF-8
         C: NOOP
         S: +OK
        ",
    ));
    assert!(o.violations().is_empty());
}

#[test]
fn control_characters_in_arguments_are_refused() {
    run(&login(
        "C: RETR 1\\x00
         S: -ERR invalid arguments
         C: NOOP\\t
         S: -ERR unknown command
        ",
    ));
}

#[test]
fn bare_line_endings_are_refused_by_default() {
    let o = run(&login(
        "R: NOOP\\n
         S: -ERR bare CR or LF received
         R: NO\\rOP\\r\\n
         S: -ERR bare CR or LF received
         C: NOOP
         S: +OK
        ",
    ));
    assert_eq!(o.violations(), vec![Violation::BareLineEnding, Violation::BareLineEnding]);
}

#[test]
fn bare_lf_commands_can_be_normalised() {
    Transcript::new(&login(
        "R: NOOP\\n
         S: +OK
         R: QUIT\\n
         S: +OK Bye, 0 messages deleted
        ",
    ))
    .config(|c| c.bare_line_ending = postern::line::BareLineEnding::Normalize)
    .run();
}

// ----- pipelining (RFC 2449 §6.6) ----------------------------------------------------

#[test]
fn pipelined_groups_are_answered_in_order() {
    let s = sizes();
    let o = run(&format!(
        "S: {greeting}
         C: CAPA
         C: USER alice
         C: PASS secret
         C: STAT
         C: LIST 1
         C: UIDL 1
         C: RETR 1
         C: TOP 2 0
         C: DELE 1
         C: BOGUS
         C: NOOP
         C: QUIT
         S: +OK Capability list follows
         {CAPA_COMMON}S: USER
         S: SASL PLAIN
         S: .
         S: +OK
         S: +OK Logged in, 5 messages
         S: +OK 5 {total}
         S: +OK 1 {s0}
         S: +OK 1 a-hello
         S: +OK {s0} octets
         {hello}S: +OK top of message follows
         {dots}S: +OK message 1 deleted
         S: -ERR unknown command
         S: +OK
         S: +OK Bye, 1 message deleted
        ",
        greeting = greeting(),
        total = total(),
        s0 = s[0],
        hello = s_lines(&stuffed(HELLO, None)),
        dots = s_lines(&stuffed(DOTS, Some(0))),
    ));
    assert_eq!(o.updates(), vec![vec![0]]);
    assert_eq!(o.uids("alice").len(), 4);
}

#[test]
fn pipelining_across_a_failed_and_a_successful_login() {
    let o = run(&format!(
        "S: {}
         C: USER alice
         C: PASS wrong
         C: STAT
         C: USER bob
         C: PASS hunter2
         C: STAT
         C: DELE 2
         C: QUIT
         S: +OK
         S: -ERR [AUTH] invalid user name or password
         S: -ERR command not valid before login
         S: +OK
         S: +OK Logged in, 2 messages
         S: +OK 2 {}
         S: +OK message 2 deleted
         S: +OK Bye, 1 message deleted
        ",
        greeting(),
        store().mailboxes["bob"].messages.iter().map(Stored::wire_size).sum::<u64>()
    ));
    assert_eq!(o.uids("bob"), vec!["b-1"]);
    assert_eq!(o.uids("alice").len(), 5);
}

#[test]
fn pipelined_auth_exchange() {
    run(&format!(
        "S: {}
         C: AUTH PLAIN
         C: {}
         C: STAT
         S: + 
         S: +OK Logged in, 5 messages
         S: +OK 5 {}
        ",
        greeting(),
        b64(b"\0alice\0secret"),
        total()
    ));
}

#[test]
fn pass_only_immediately_after_user() {
    run(&format!(
        "S: {}
         C: USER alice
         S: +OK
         C: NOOP
         S: -ERR command not valid before login
         C: PASS secret
         S: -ERR send USER first
        ",
        greeting()
    ));
}

#[test]
fn in_use_rejections_do_not_count_as_failed_logins() {
    // A client with the right password whose maildrop is locked is not guessing
    // passwords: [IN-USE] (like [LOGIN-DELAY] and [SYS/...]) does not count towards
    // `auth_failures`.
    let o = Transcript::new(&format!(
        "S: {}
         C: USER alice
         C: PASS secret
         C: USER alice
         C: PASS secret
         C: USER alice
         C: PASS secret
         C: QUIT
         S: +OK
         S: -ERR [IN-USE] maildrop already locked
         S: +OK
         S: -ERR [IN-USE] maildrop already locked
         S: +OK
         S: -ERR [IN-USE] maildrop already locked
         S: +OK Bye
        ",
        greeting()
    ))
    .store(|s| {
        s.locked.insert("alice".into());
    })
    .run();
    assert_eq!(o.violations(), vec![]);
}
