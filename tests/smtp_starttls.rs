//! STARTTLS (RFC 3207) and implicit TLS: command injection (CVE-2011-0411), input during the
//! handshake, the reset of all pre-TLS state, and what is offered inside and outside TLS.
// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::*;
use postern::smtp::{CloseReason, Error, Violation};

fn starttls(c: &mut postern::smtp::Config) {
    c.starttls = true;
}

fn starttls_auth(c: &mut postern::smtp::Config) {
    c.starttls = true;
    c.auth_mechanisms = vec!["PLAIN".into()];
}

/// The EHLO reply before TLS with STARTTLS offered.
fn ehlo_plain() -> String {
    format!(
        "{GREETING}C: EHLO client.example.org\n{}",
        EHLO_REPLY.replace("S: 250 DSN", "S: 250-DSN\nS: 250 STARTTLS")
    )
}

/// The EHLO reply inside TLS: no STARTTLS, REQUIRETLS.
fn ehlo_tls() -> String {
    format!(
        "C: EHLO client.example.org\n{}",
        EHLO_REPLY.replace("S: 250 DSN", "S: 250-DSN\nS: 250 REQUIRETLS")
    )
}

const READY: &str = "S: 220 2.0.0 Ready to start TLS\n";

#[test]
fn starttls_then_ehlo_inside_tls() {
    let o = Transcript::new(&format!(
        "{}
        C: STARTTLS
        {READY}
        TLS
        {}
        C: MAIL FROM:<alice@example.org> REQUIRETLS
        C: RCPT TO:<bob@example.test>
        C: DATA
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        S: 354 2.0.0 End data with <CR><LF>.<CR><LF>
        C: secret
        C: .
        S: 250 2.0.0 Ok: queued as 1
        ",
        ehlo_plain(),
        ehlo_tls(),
    ))
    .config(starttls)
    .run();
    assert_eq!(o.tls_results, [Ok(())]);
    assert!(o.events.contains(&Ev::StartTls));
    let m = &o.messages[0];
    assert!(m.mail.requiretls);
    assert!(m.received.contains("with ESMTPS (TLSv1.3 TLS13_AES_256_GCM_SHA384)"), "{}", m.received);
    assert!(o.violations().is_empty());
}

#[test]
fn injection_in_one_segment_is_refused() {
    let t = Transcript::new(&format!(
        "{}
        C: STARTTLS
        C: MAIL FROM:<evil@attacker.test>
        C: RCPT TO:<victim@example.test>
        S: 554 5.5.0 Error: command pipelined after STARTTLS
        TLS
        ",
        ehlo_plain(),
    ))
    .config(starttls)
    .splits(Splits::WholeOnly);
    let o = t.run();
    assert_eq!(o.close_reason, Some(CloseReason::Violation));
    assert_eq!(o.violations(), [Violation::StartTlsInjection { dropped: 63 }]);
    assert!(!o.events.contains(&Ev::StartTls), "no handshake for an injecting client");
    assert_eq!(o.tls_results, [Err(Error::Closed)]);
    // Whatever the split, nothing injected ever runs.
    for (label, o) in t.replays() {
        assert!(o.mails().is_empty(), "{label}: injected MAIL ran\n{}", t.render(&o));
        assert!(!o.events.iter().any(|e| matches!(e, Ev::Rcpt(_))), "{label}");
        // Either the injection is seen in one piece, or the bytes come after the 220 and
        // are dropped (one report per `receive`).
        let v = o.violations();
        assert!(
            matches!(v[..], [Violation::StartTlsInjection { .. }])
                || !v.is_empty() && v.iter().all(|v| matches!(v, Violation::InputDuringTlsHandshake { .. })),
            "{label}: {v:?}"
        );
    }
}

#[test]
fn injection_of_quit_is_still_injection() {
    let o = Transcript::new(&format!(
        "{}
        C: STARTTLS
        C: QUIT
        S: 554 5.5.0 Error: command pipelined after STARTTLS
        ",
        ehlo_plain(),
    ))
    .config(starttls)
    .splits(Splits::WholeOnly)
    .run();
    assert_eq!(o.violations(), [Violation::StartTlsInjection { dropped: 6 }]);
}

#[test]
fn injection_after_pipelined_group_is_refused() {
    // STARTTLS last of a group is fine; anything after it is not.
    let o = Transcript::new(&format!(
        "{}
        C: RSET
        C: STARTTLS
        C: EHLO evil.example
        S: 250 2.0.0 Ok
        S: 554 5.5.0 Error: command pipelined after STARTTLS
        ",
        ehlo_plain(),
    ))
    .config(starttls)
    .splits(Splits::WholeOnly)
    .run();
    assert_eq!(o.violations(), [Violation::StartTlsInjection { dropped: 19 }]);
}

#[test]
fn input_during_handshake_is_dropped() {
    let o = Transcript::new(&format!(
        "{}
        C: STARTTLS
        {READY}
        C: MAIL FROM:<evil@attacker.test>
        C: RCPT TO:<victim@example.test>
        TLS
        {}
        C: RCPT TO:<bob@example.test>
        S: 503 5.5.1 Error: need MAIL command
        ",
        ehlo_plain(),
        ehlo_tls(),
    ))
    .config(starttls)
    .run();
    assert_eq!(o.violations(), [Violation::InputDuringTlsHandshake { dropped: 63 }]);
    assert!(o.mails().is_empty());
    assert_eq!(o.tls_results, [Ok(())]);
}

#[test]
fn pre_tls_state_is_forgotten() {
    let o = Transcript::new(&format!(
        "{}
        C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
        S: 235 2.7.0 Authentication successful
        C: MAIL FROM:<alice@example.org>
        S: 250 2.1.0 Sender ok
        C: STARTTLS
        {READY}
        TLS
        C: MAIL FROM:<alice@example.org>
        S: 503 5.5.1 Error: send HELO/EHLO first
        C: RCPT TO:<bob@example.test>
        S: 503 5.5.1 Error: need MAIL command
        {}
        C: RCPT TO:<bob@example.test>
        S: 503 5.5.1 Error: need MAIL command
        ",
        ehlo_plain().replace("S: 250 STARTTLS", "S: 250-STARTTLS\nS: 250 AUTH PLAIN"),
        ehlo_tls().replace("S: 250-DSN", "S: 250-DSN\nS: 250-AUTH PLAIN"),
    ))
    .config(|c| {
        starttls_auth(c);
        c.allow_plaintext_auth = true;
    })
    .run();
    assert_eq!(o.authenticated, None, "pre-TLS authentication must not survive STARTTLS");
    assert!(o.events.contains(&Ev::Reset), "the transaction is reset: {:?}", o.events);
}

#[test]
fn helo_name_is_forgotten() {
    let mut d = Driver::new(
        {
            let mut c = config();
            starttls(&mut c);
            c
        },
        Policy::default(),
    );
    d.exchange(b"EHLO client.example.org\r\n");
    assert!(d.session.helo().is_some());
    assert_eq!(d.exchange(b"STARTTLS\r\n"), "220 2.0.0 Ready to start TLS\r\n");
    assert!(!d.session.wants_read(), "no reading while the handshake runs");
    d.tls().unwrap();
    assert!(d.session.helo().is_none());
    assert!(d.session.tls().is_some());
    assert!(d.session.wants_read());
}

#[test]

fn command_line_cap_returns_to_512_after_starttls() {
    // The EHLO allowances (SIZE, DSN, AUTH) belong to the EHLO that TLS discarded.
    let long = format!("NOOP {}", "x".repeat(600));
    let o = Transcript::new(&format!(
        "{}
        C: STARTTLS
        {READY}
        TLS
        C: {long}
        S: 500 5.5.2 Error: line too long
        ",
        ehlo_plain(),
    ))
    .config(starttls)
    .run();
    assert_eq!(o.violations(), [Violation::LineTooLong]);
}

#[test]
fn second_starttls_503() {
    Transcript::new(&format!(
        "{}
        C: STARTTLS
        {READY}
        TLS
        C: STARTTLS
        S: 503 5.5.1 Error: TLS already active
        {}
        C: STARTTLS
        S: 503 5.5.1 Error: TLS already active
        ",
        ehlo_plain(),
        ehlo_tls(),
    ))
    .config(starttls)
    .run();
}

#[test]
fn second_starttls_with_pipelined_bytes() {
    // Inside TLS STARTTLS is no longer offered: pipelining after it is not an injection,
    // but STARTTLS still ends a pipelined group.
    let o = Transcript::new(&format!(
        "{}
        C: STARTTLS
        {READY}
        TLS
        {}
        C: STARTTLS
        C: NOOP
        S: 554 5.5.0 Error: SMTP protocol synchronization
        ",
        ehlo_plain(),
        ehlo_tls(),
    ))
    .config(starttls)
    .splits(Splits::WholeOnly)
    .run();
    assert_eq!(o.violations(), [Violation::Pipelining { after: "STARTTLS" }]);
}

#[test]
fn starttls_not_configured_502() {
    run(&format!(
        "{}
        C: STARTTLS
        S: 502 5.5.1 Error: command not implemented
        ",
        ehlo()
    ));
}

#[test]
fn starttls_with_argument_501() {
    Transcript::new(&format!(
        "{}
        C: STARTTLS now
        S: 501 5.5.4 Error: syntax error in parameters or arguments
        ",
        ehlo_plain()
    ))
    .config(starttls)
    .run();
}

#[test]
fn starttls_before_ehlo() {
    // RFC 3207 does not require EHLO first; the session allows it.
    let o = Transcript::new(&format!(
        "{GREETING}
        C: STARTTLS
        {READY}
        TLS
        {}
        ",
        ehlo_tls()
    ))
    .config(starttls)
    .run();
    assert_eq!(o.tls_results, [Ok(())]);
}

#[test]
fn timeout_during_handshake() {
    let o = Transcript::new(&format!(
        "{}
        C: STARTTLS
        {READY}
        T: 300
        S: 421 4.4.2 mx.example.test Error: timeout exceeded
        TLS
        ",
        ehlo_plain()
    ))
    .config(starttls)
    .run();
    assert_eq!(o.close_reason, Some(CloseReason::Timeout));
    assert_eq!(o.tls_results, [Err(Error::Closed)]);
}

#[test]
fn eof_during_handshake() {
    let o = Transcript::new(&format!(
        "{}
        C: STARTTLS
        {READY}
        EOF
        TLS
        ",
        ehlo_plain()
    ))
    .config(starttls)
    .run();
    assert_eq!(o.close_reason, Some(CloseReason::ConnectionLost));
    assert_eq!(o.tls_results, [Err(Error::Closed)]);
}

#[test]
fn implicit_tls_does_not_offer_starttls() {
    let o = Transcript::new(&format!(
        "{GREETING}
        {}
        C: STARTTLS
        S: 503 5.5.1 Error: TLS already active
        C: MAIL FROM:<alice@example.org> REQUIRETLS
        S: 250 2.1.0 Sender ok
        ",
        ehlo_tls()
    ))
    .config(starttls)
    .start(Start::ImplicitTls)
    .run();
    assert!(o.mails()[0].requiretls);
}

#[test]
fn implicit_tls_session_reports_tls() {
    let d = Driver::with_session(
        postern::smtp::Session::new_implicit_tls(
            std::sync::Arc::new(config()),
            tls_info().with_sni("mx.example.test"),
            base(),
        ),
        Policy::default(),
        base(),
    );
    assert_eq!(d.session.tls().and_then(|t| t.sni.as_deref()), Some("mx.example.test"));
}

#[test]
fn auth_offered_only_inside_tls() {
    let o = Transcript::new(&format!(
        "{}
        C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
        S: 538 5.7.11 Error: encryption required for requested authentication mechanism
        C: STARTTLS
        {READY}
        TLS
        {}
        C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
        S: 235 2.7.0 Authentication successful
        {}
        ",
        ehlo_plain(),
        ehlo_tls().replace("S: 250-DSN", "S: 250-DSN\nS: 250-AUTH PLAIN"),
        // Once authenticated, AUTH is no longer offered.
        ehlo_tls(),
    ))
    .config(starttls_auth)
    .run();
    assert_eq!(o.authenticated.as_deref(), Some("alice"));
}

#[test]
fn requiretls_refused_outside_tls() {
    Transcript::new(&format!(
        "{}
        C: MAIL FROM:<alice@example.org> REQUIRETLS
        S: 555 5.5.4 Error: unsupported MAIL parameter
        ",
        ehlo_plain()
    ))
    .config(starttls)
    .run();
}

#[test]
fn requiretls_not_advertised_when_disabled() {
    Transcript::new(&format!(
        "{GREETING}
        {}
        C: MAIL FROM:<alice@example.org> REQUIRETLS
        S: 555 5.5.4 Error: unsupported MAIL parameter
        ",
        ehlo_tls().replace("S: 250-DSN\nS: 250 REQUIRETLS", "S: 250 DSN")
    ))
    .config(|c| c.requiretls = false)
    .start(Start::ImplicitTls)
    .run();
}

#[test]
fn early_talker_policy_does_not_apply_after_starttls() {
    // The client may speak first inside TLS (the server sends no new greeting).
    let o = Transcript::new(&format!(
        "T: 1
        {}
        C: STARTTLS
        {READY}
        TLS
        {}
        ",
        ehlo_plain(),
        ehlo_tls()
    ))
    .config(|c| {
        starttls(c);
        c.greeting_delay = Some(std::time::Duration::from_secs(1));
    })
    .run();
    assert!(o.violations().is_empty());
}
