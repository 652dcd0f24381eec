//! STLS (RFC 2595) through the public API: the injection rule (nothing sent after STLS
//! and before the handshake is ever executed), pre-TLS state forgotten, plaintext
//! logins refused outside TLS, and implicit TLS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod pop3_harness;

use pop3_harness::*;
use postern::pop3::{CloseReason, Config, Error, Violation};

const CAPA_COMMON: &str = "S: TOP\nS: UIDL\nS: RESP-CODES\nS: AUTH-RESP-CODE\nS: PIPELINING\n";

/// STLS offered and plaintext logins allowed anyway (so USER works before TLS).
fn lax_config() -> Config {
    let mut c = tls_config();
    c.allow_plaintext_auth = true;
    c
}

fn start() -> String {
    format!("S: {}\n", greeting())
}

#[test]
fn stls_with_a_pipelined_command_is_refused_and_nothing_runs() {
    let t = Transcript::new(&format!("{}C: STLS\nC: CAPA\nS: -ERR command pipelined after STLS\n", start()))
        .with_config(tls_config());
    let o = t.run_whole();
    assert_eq!(
        o.events,
        vec![Ev::Violation(Violation::StlsInjection { dropped: 6 }), Ev::Closed(CloseReason::Violation)]
    );
    assert!(o.closed);
    // Split anywhere: CAPA is never executed. Only a split right after `STLS\r\n` lets
    // the session believe the client waited; then the CAPA bytes arrive during the
    // handshake and are dropped.
    let flight = b"STLS\r\nCAPA\r\n";
    for feed in [Feed::Serve, Feed::Chunks] {
        for split in t.splits() {
            let o = t.replay(feed, split);
            let out = o.output();
            assert!(!out.contains("Capability"), "{split:?}: {out}");
            let want = match split {
                Split::At { at: 6, .. } | Split::Bytewise => vec![
                    Ev::StartTls,
                    Ev::Violation(Violation::InputDuringTlsHandshake { dropped: flight.len() - 6 }),
                ],
                Split::At { at, .. } if at > 6 => vec![
                    Ev::Violation(Violation::StlsInjection { dropped: at - 6 }),
                    Ev::Closed(CloseReason::Violation),
                ],
                _ => vec![
                    Ev::Violation(Violation::StlsInjection { dropped: 6 }),
                    Ev::Closed(CloseReason::Violation),
                ],
            };
            assert_eq!(o.events, want, "{split:?}");
        }
    }
}

#[test]
fn stls_injection_of_a_login() {
    let o = Transcript::new(&format!(
        "{}C: STLS\nC: USER alice\nC: PASS secret\nS: -ERR command pipelined after STLS\n",
        start()
    ))
    .with_config(lax_config())
    .run_whole();
    assert!(o.events.iter().all(|e| !matches!(e, Ev::Login { .. })));
    assert_eq!(o.violations(), vec![Violation::StlsInjection { dropped: 25 }]);
}

#[test]
fn stls_injection_behind_earlier_pipelined_commands() {
    // The STLS line is not first in the segment: still nothing after it runs.
    let o = Transcript::new(&format!(
        "{}C: CAPA\nC: STLS\nC: NOOP\nS: +OK Capability list follows\n{CAPA_COMMON}S: STLS\nS: .\nS: -ERR command pipelined after STLS\n",
        start()
    ))
    .with_config(tls_config())
    .run_whole();
    assert_eq!(o.violations(), vec![Violation::StlsInjection { dropped: 6 }]);
}

#[test]
fn bytes_during_the_handshake_are_dropped() {
    let o = Transcript::new(&format!(
        "{}
         C: STLS
         S: +OK Begin TLS negotiation
         C: CAPA
         C: USER alice
         TLS
         C: PASS secret
         S: -ERR send USER first
         C: CAPA
         S: +OK Capability list follows
         {CAPA_COMMON}S: USER
         S: SASL PLAIN
         S: .
        ",
        start()
    ))
    .with_config(tls_config())
    .run();
    assert_eq!(
        o.events,
        vec![Ev::StartTls, Ev::Violation(Violation::InputDuringTlsHandshake { dropped: 18 })]
    );
    assert!(o.tls_errors.is_empty());
}

#[test]
fn the_session_waits_for_the_handshake() {
    let mut d = Driver::new(
        tls_config(),
        std::rc::Rc::new(std::cell::RefCell::new(store())),
        Feed::Serve,
        Knobs::default(),
    );
    d.take_output();
    assert!(d.session.wants_read());
    assert_eq!(d.talk(b"STLS\r\n"), "+OK Begin TLS negotiation\r\n");
    assert!(!d.session.wants_read(), "no reads between +OK and the handshake");
    assert!(d.session.tls().is_none());
    d.tls().unwrap();
    assert!(d.session.wants_read());
    assert_eq!(d.session.tls(), Some(&tls_info()));
    assert_eq!(d.tls(), Err(Error::UnexpectedTls), "a second handshake was not asked for");
}

#[test]
fn tls_established_without_stls_is_an_api_error() {
    let mut d = Driver::plain();
    assert_eq!(d.tls(), Err(Error::UnexpectedTls));
    d.talk(b"QUIT\r\n");
    assert_eq!(d.tls(), Err(Error::Closed));
}

#[test]
fn user_before_stls_is_forgotten() {
    // Plaintext USER allowed here, so the name is really taken before STLS.
    let o = Transcript::new(&format!(
        "{}
         C: USER alice
         S: +OK
         C: STLS
         S: +OK Begin TLS negotiation
         TLS
         C: PASS secret
         S: -ERR send USER first
         C: USER alice
         S: +OK
         C: PASS secret
         S: +OK Logged in, 5 messages
        ",
        start()
    ))
    .with_config(lax_config())
    .run();
    assert_eq!(o.events.iter().filter(|e| matches!(e, Ev::Login { .. })).count(), 1);
}

#[test]
fn user_before_stls_pipelined_with_it_is_forgotten() {
    // `USER` and `STLS` in one segment: STLS is the last line, so it is accepted, and
    // the name is still forgotten.
    Transcript::new(&format!(
        "{}
         C: USER alice
         C: STLS
         S: +OK
         S: +OK Begin TLS negotiation
         TLS
         C: PASS secret
         S: -ERR send USER first
        ",
        start()
    ))
    .with_config(lax_config())
    .run();
}

#[test]
fn stls_twice_is_refused() {
    Transcript::new(&format!(
        "{}
         C: STLS
         S: +OK Begin TLS negotiation
         TLS
         C: STLS
         S: -ERR TLS already active
         C: CAPA
         S: +OK Capability list follows
         {CAPA_COMMON}S: USER
         S: SASL PLAIN
         S: .
        ",
        start()
    ))
    .with_config(tls_config())
    .run();
}

#[test]
fn stls_in_transaction_is_refused() {
    // Logged in without TLS (plaintext allowed): STLS is for the AUTHORIZATION state.
    let o = Transcript::new(&format!(
        "{}{LOGIN_ALICE}
         C: STLS
         S: -ERR STLS only in the AUTHORIZATION state
         C: STAT
         S~ +OK 5
        ",
        start()
    ))
    .with_config(lax_config())
    .run();
    assert!(!o.events.contains(&Ev::StartTls));
    // And inside TLS, after login.
    Transcript::new(&format!(
        "{}
         C: STLS
         S: +OK Begin TLS negotiation
         TLS
         {LOGIN_ALICE}
         C: STLS
         S: -ERR TLS already active
        ",
        start()
    ))
    .with_config(tls_config())
    .run();
}

#[test]
fn plaintext_logins_refused_before_tls_and_accepted_after() {
    let refused = "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections, use STLS";
    let plain = b64(b"\0alice\0secret");
    let o = Transcript::new(&format!(
        "{start}
         C: USER alice
         S: {refused}
         C: PASS secret
         S: {refused}
         C: APOP alice 0123456789abcdef0123456789abcdef
         S: {refused}
         C: AUTH PLAIN {plain}
         S: {refused}
         C: AUTH PLAIN
         S: {refused}
         C: AUTH
         S: +OK
         S: .
         C: STLS
         S: +OK Begin TLS negotiation
         TLS
         C: AUTH
         S: +OK
         S: PLAIN
         S: .
         C: APOP alice 0123456789abcdef0123456789abcdef
         S: -ERR [AUTH] invalid user name or password
         C: AUTH PLAIN {plain}
         S: +OK Logged in, 5 messages
        ",
        start = start(),
    ))
    .with_config(tls_config())
    .run();
    assert_eq!(o.violations(), vec![Violation::PlaintextAuthRefused; 5]);
    assert!(
        o.events
            .contains(&Ev::Auth { mechanism: "PLAIN".into(), initial: Some(b"\0alice\0secret".to_vec()) })
    );
    for user_pass in [true, false] {
        let login = if user_pass {
            "C: USER bob\nS: +OK\nC: PASS hunter2\n".to_owned()
        } else {
            format!("C: AUTH PLAIN\nS: + \nC: {}\n", b64(b"\0bob\0hunter2"))
        };
        Transcript::new(&format!(
            "{}C: STLS\nS: +OK Begin TLS negotiation\nTLS\n{login}S: +OK Logged in, 2 messages\n",
            start()
        ))
        .with_config(tls_config())
        .run();
    }
}

#[test]
fn plaintext_refusals_count_as_bad_commands() {
    let mut script = start();
    for _ in 0..19 {
        script += "C: USER alice\nS~ -ERR [AUTH]\n";
    }
    script += "C: USER alice\nS~ -ERR [AUTH]\nS: -ERR too many bad commands\n";
    let o = Transcript::new(&script).with_config(tls_config()).run_whole();
    assert_eq!(o.close_reason, Some(CloseReason::Violation));
}

#[test]
fn implicit_tls_never_offers_stls() {
    let o = Transcript::new(&format!(
        "{}
         C: CAPA
         S: +OK Capability list follows
         {CAPA_COMMON}S: USER
         S: SASL PLAIN
         S: .
         C: STLS
         S: -ERR TLS already active
         {LOGIN_ALICE}
         C: CAPA
         S: +OK Capability list follows
         {CAPA_COMMON}S: .
        ",
        start()
    ))
    .with_config(tls_config())
    .implicit_tls()
    .run();
    assert!(!o.output().contains("STLS\r\n"));
    assert!(!o.events.contains(&Ev::StartTls));
}

#[test]
fn timeout_and_eof_during_the_handshake() {
    let o = Transcript::new(&format!("{}C: STLS\nS: +OK Begin TLS negotiation\nT: 600\nTLS\n", start()))
        .with_config(tls_config())
        .run();
    assert_eq!(o.close_reason, Some(CloseReason::Timeout));
    assert_eq!(o.tls_errors, vec![Error::Closed]);
    let o = Transcript::new(&format!("{}C: STLS\nS: +OK Begin TLS negotiation\nEOF\n", start()))
        .with_config(tls_config())
        .run();
    assert_eq!(o.close_reason, Some(CloseReason::ConnectionLost));
}

#[test]
fn stls_after_a_failed_pipelined_login_is_accepted_when_last() {
    // STLS waited behind a pending decision; nothing follows it, so it is honest.
    let o = Transcript::new(&format!(
        "{}
         C: USER alice
         C: PASS wrong
         C: STLS
         S: +OK
         S: -ERR [AUTH] invalid user name or password
         S: +OK Begin TLS negotiation
         TLS
        ",
        start()
    ))
    .with_config(lax_config())
    .run();
    assert!(o.events.contains(&Ev::StartTls));
}

#[test]
fn stls_behind_a_pending_decision_with_bytes_after_it_is_refused() {
    let o = Transcript::new(&format!(
        "{}
         C: USER alice
         C: PASS wrong
         C: STLS
         C: CAPA
         S: +OK
         S: -ERR [AUTH] invalid user name or password
         S: -ERR command pipelined after STLS
        ",
        start()
    ))
    .with_config(lax_config())
    .run_whole();
    assert!(o.violations().contains(&Violation::StlsInjection { dropped: 6 }));
}
