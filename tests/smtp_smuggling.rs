//! SMTP smuggling (CVE-2023-51764/51765/51766 and relatives): no end-of-data variant but
//! `CRLF . CRLF` ends a message, in DATA or BDAT, under either bare-line-ending policy;
//! body bytes never reach the command parser; pipelining rules hold.
// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::*;
use postern::line::BareLineEnding;
use postern::smtp::{AbortReason, CloseReason, Violation};

/// The smuggled transaction an attacker appends after a fake end of data. Its own end is
/// the real `CRLF . CRLF` that closes the flight.
const SMUGGLED: &[u8] = b"MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n\
From: ceo@example.test\r\nSubject: smuggled\r\n\r\nPay now";

/// Fake ends of data: none of them may end a message.
const FAKE_ENDS: &[(&str, &[u8])] = &[
    ("LF . LF", b"\n.\n"),
    ("LF . CRLF", b"\n.\r\n"),
    ("CRLF . LF", b"\r\n.\n"),
    ("CR . CR", b"\r.\r"),
    ("CRLF . CR", b"\r\n.\r"),
    ("CR . CRLF", b"\r.\r\n"),
    ("CRLF . CR CRLF", b"\r\n.\r\r\n"),
    ("CRLF NUL . CRLF", b"\r\n\0.\r\n"),
    ("CRLF . NUL CRLF", b"\r\n.\0\r\n"),
    ("CRLF SP . CRLF", b"\r\n .\r\n"),
    ("CR CR . CR CR", b"\r\r.\r\r"),
    ("CRLF CR . CR CRLF", b"\r\n\r.\r\r\n"),
    ("LF CR . CR LF", b"\n\r.\r\n"),
    ("LF LF . LF LF", b"\n\n.\n\n"),
    ("CRLF . LF CRLF", b"\r\n.\n\r\n"),
    ("CR CR CR LF . CR CR", b"\r\r\r\n.\r\r"),
    (". LF", b".\n"),
    (". CR", b".\r"),
    (". CR CR LF", b".\r\r\n"),
    ("CRLF .. CRLF (stuffed)", b"\r\n..\r\n"),
];

/// Where the fake end sits in the legitimate message.
const POSITIONS: &[(&str, &[u8])] = &[
    ("start", b""),
    ("middle", b"Subject: test\r\n\r\nfirst line\r\nsecond"),
    ("end", b"Subject: test\r\n\r\nthe whole message\r\n"),
];

/// What a line in DATA ended with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Term {
    Crlf,
    BareLf,
    BareCr,
}

/// A reference model of the DATA rules (see `postern::smtp::data`): returns where the
/// message ends (after the terminator), the message under `Normalize`, and whether a bare
/// line ending was seen.
fn model_data(input: &[u8]) -> (Option<usize>, Vec<u8>, bool) {
    let mut body = Vec::new();
    let mut bare = false;
    let mut real_start = true;
    let mut i = 0;
    while i < input.len() {
        let start = i;
        let (end, term, next) = loop {
            match input.get(i) {
                None => break (i, None, i),
                Some(b'\n') => break (i, Some(Term::BareLf), i + 1),
                Some(b'\r') if input.get(i + 1) == Some(&b'\n') => break (i, Some(Term::Crlf), i + 2),
                Some(b'\r') if i + 1 < input.len() => break (i, Some(Term::BareCr), i + 1),
                Some(b'\r') => break (i, None, i), // a CR at the very end: undecided
                Some(_) => i += 1,
            }
        };
        let Some(term) = term else { break };
        let line = &input[start..end];
        if line == b"." && real_start && term == Term::Crlf {
            return (Some(next), body, bare);
        }
        let content = if line.len() > 1 && line[0] == b'.' { &line[1..] } else { line };
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
        bare |= term != Term::Crlf;
        real_start = term == Term::Crlf;
        i = next;
    }
    (None, body, bare)
}

/// The BDAT rules under `Normalize`: every bare CR or LF becomes CRLF; nothing else changes.
fn model_bdat(input: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut bare = false;
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\r' if input.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' | b'\n' => {
                out.extend_from_slice(b"\r\n");
                bare = true;
            }
            b => out.push(b),
        }
        i += 1;
    }
    (out, bare)
}

#[test]
fn model_sanity() {
    assert_eq!(model_data(b".\r\n"), (Some(3), Vec::new(), false));
    assert_eq!(model_data(b"a\r\n..b\r\n.\r\n"), (Some(11), b"a\r\n.b\r\n".to_vec(), false));
    assert_eq!(model_data(b"a\n.\nb\r\n.\r\n").0, Some(10));
    assert_eq!(model_bdat(b"a\rb\nc\r\n"), (b"a\r\nb\r\nc\r\n".to_vec(), true));
}

/// `true` if `b` has a CR not followed by LF or an LF not preceded by CR.
fn has_bare(b: &[u8]) -> bool {
    b.iter().enumerate().any(|(i, &c)| match c {
        b'\r' => b.get(i + 1) != Some(&b'\n'),
        b'\n' => i == 0 || b[i - 1] != b'\r',
        _ => false,
    })
}

fn policy_name(p: BareLineEnding) -> &'static str {
    if p == BareLineEnding::Reject { "Reject" } else { "Normalize" }
}

/// Invariants of every smuggling replay: nothing injected ran, at most one message, and
/// a delivered message is the whole flight.
#[track_caller]
fn assert_not_smuggled(label: &str, o: &Outcome, expected_body: Option<&[u8]>) {
    let evil: Vec<_> = o
        .mails()
        .into_iter()
        .filter(|m| m.from.as_ref().is_some_and(|a| a.domain() == "attacker.test"))
        .collect();
    assert!(evil.is_empty(), "{label}: the smuggled MAIL ran: {evil:?}");
    assert!(o.messages.len() <= 1, "{label}: {} messages delivered", o.messages.len());
    assert!(
        !o.events.iter().any(|e| matches!(e, Ev::Rcpt(r) if r.to.local_part() == "victim")),
        "{label}: the smuggled RCPT ran"
    );
    match (expected_body, o.messages.first()) {
        (Some(body), Some(m)) => {
            assert_eq!(m.body, body, "{label}: the message was cut or altered");
            assert_eq!(m.from().as_deref(), Some("alice@example.org"), "{label}");
        }
        (None, None) => {}
        (want, got) => panic!("{label}: expected a message: {}, got {:?}", want.is_some(), got),
    }
}

/// DATA with `prefix + fake + SMUGGLED + CRLF.CRLF`, then QUIT.
fn data_case(policy: BareLineEnding, prefix: &[u8], fake: &[u8]) -> (Transcript, Option<Vec<u8>>) {
    let mut flight = prefix.to_vec();
    flight.extend_from_slice(fake);
    flight.extend_from_slice(SMUGGLED);
    flight.extend_from_slice(b"\r\n.\r\n");
    let (end, body, bare) = model_data(&flight);
    assert_eq!(end, Some(flight.len()), "test error: the flight must end only at its end");
    let refused = bare && policy == BareLineEnding::Reject;
    let mut script = Script::parse(&to_data());
    script.flight(&flight);
    if refused {
        script.exact("550 5.5.2 Error: bare <CR> or <LF> in message data (RFC 5321 section 2.3.8)");
    } else {
        script.exact("250 2.0.0 Ok: queued as 1");
    }
    script.flight(b"QUIT\r\n").exact("221 2.0.0 mx.example.test closing connection");
    let t = Transcript::from_script(script).config(|c| c.bare_line_ending = policy);
    (t, (!refused).then_some(body))
}

/// BDAT with the same bytes, in one LAST chunk or in two chunks cut inside the fake end.
fn bdat_case(
    policy: BareLineEnding,
    prefix: &[u8],
    fake: &[u8],
    two_chunks: bool,
) -> (Transcript, Option<Vec<u8>>) {
    let mut chunk = prefix.to_vec();
    chunk.extend_from_slice(fake);
    chunk.extend_from_slice(SMUGGLED);
    chunk.extend_from_slice(b"\r\n.\r\n");
    let (body, bare) = model_bdat(&chunk);
    let refused = bare && policy == BareLineEnding::Reject;
    let mut script = Script::parse(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<bob@example.test>
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        ",
        ehlo()
    ));
    if two_chunks {
        let cut = prefix.len() + 1;
        let (a, b) = chunk.split_at(cut);
        let mut first = format!("BDAT {}\r\n", a.len()).into_bytes();
        first.extend_from_slice(a);
        script.flight(&first).exact(&format!("250 2.0.0 Ok: {} octets received", a.len()));
        let mut second = format!("BDAT {} LAST\r\n", b.len()).into_bytes();
        second.extend_from_slice(b);
        script.flight(&second);
    } else {
        let mut flight = format!("BDAT {} LAST\r\n", chunk.len()).into_bytes();
        flight.extend_from_slice(&chunk);
        script.flight(&flight);
    }
    if refused {
        script.exact("550 5.5.2 Error: bare <CR> or <LF> in message data (RFC 5321 section 2.3.8)");
    } else {
        script.exact("250 2.0.0 Ok: queued as 1");
    }
    script.flight(b"QUIT\r\n").exact("221 2.0.0 mx.example.test closing connection");
    let t = Transcript::from_script(script).config(|c| c.bare_line_ending = policy);
    (t, (!refused).then_some(body))
}

fn check(label: &str, t: &Transcript, body: Option<&[u8]>, policy: BareLineEnding) {
    let o = t.run();
    assert_not_smuggled(label, &o, body);
    assert_eq!(o.close_reason, Some(CloseReason::Quit), "{label}: the session lost sync");
    let bare_reported = o.violations().iter().any(|v| matches!(v, Violation::BareLineEndingInData { .. }));
    if body.is_none() {
        assert!(o.events.contains(&Ev::Aborted(AbortReason::BareLineEnding)), "{label}");
        assert!(bare_reported, "{label}");
    } else {
        let m = &o.messages[0];
        assert_eq!(m.end.normalized, bare_reported, "{label}");
        assert_eq!(m.end.size, m.body.len() as u64, "{label}");
        if policy == BareLineEnding::Normalize {
            assert!(!has_bare(&m.body), "{label}: bare line ending left in a normalised message");
        }
    }
}

fn matrix_data(policy: BareLineEnding) {
    for (pos, prefix) in POSITIONS {
        for (name, fake) in FAKE_ENDS {
            let label = format!("DATA {} {name} at {pos}", policy_name(policy));
            let (t, body) = data_case(policy, prefix, fake);
            check(&label, &t, body.as_deref(), policy);
        }
    }
}

fn matrix_bdat(policy: BareLineEnding, two_chunks: bool) {
    for (pos, prefix) in POSITIONS {
        for (name, fake) in FAKE_ENDS {
            let label = format!(
                "BDAT{} {} {name} at {pos}",
                if two_chunks { " x2" } else { "" },
                policy_name(policy)
            );
            let (t, body) = bdat_case(policy, prefix, fake, two_chunks);
            check(&label, &t, body.as_deref(), policy);
        }
    }
}

#[test]
fn data_fake_ends_reject() {
    matrix_data(BareLineEnding::Reject);
}

#[test]
fn data_fake_ends_normalize() {
    matrix_data(BareLineEnding::Normalize);
}

#[test]
fn bdat_fake_ends_reject() {
    matrix_bdat(BareLineEnding::Reject, false);
}

#[test]
fn bdat_fake_ends_normalize() {
    matrix_bdat(BareLineEnding::Normalize, false);
}

#[test]
fn bdat_two_chunks_fake_ends_reject() {
    matrix_bdat(BareLineEnding::Reject, true);
}

#[test]
fn bdat_two_chunks_fake_ends_normalize() {
    matrix_bdat(BareLineEnding::Normalize, true);
}

#[test]
fn reject_swallows_to_the_real_end_exactly() {
    // The bytes after the real CRLF.CRLF are commands again, in step with the client.
    let o = run(&format!(
        "{}
        R: hello\\n.\\nMAIL FROM:<evil@attacker.test>\\r\\n\\r\\n.\\r\\nNOOP\\r\\n
        S: 550 5.5.2 Error: bare <CR> or <LF> in message data (RFC 5321 section 2.3.8)
        S: 250 2.0.0 Ok
        C: MAIL FROM:<alice@example.org>
        S: 250 2.1.0 Sender ok
        ",
        to_data()
    ));
    assert_eq!(o.mails().len(), 2);
    assert_eq!(
        o.violations(),
        [Violation::BareLineEndingInData { bare_lf: 2, bare_cr: 0, normalized: false }]
    );
}

#[test]
fn normalize_reports_counts() {
    let o = Transcript::new(&format!(
        "{}
        R: a\\nb\\rc\\r\\n.\\r\\n
        S: 250 2.0.0 Ok: queued as 1
        ",
        to_data()
    ))
    .config(|c| c.bare_line_ending = BareLineEnding::Normalize)
    .run();
    assert_eq!(o.messages[0].body, b"a\r\nb\r\nc\r\n");
    assert!(o.messages[0].end.normalized);
    assert_eq!(
        o.violations(),
        [Violation::BareLineEndingInData { bare_lf: 1, bare_cr: 1, normalized: true }]
    );
}

#[test]

fn reject_counts_do_not_depend_on_split() {
    // `Violation::BareLineEndingInData` carries "counts as found by the receiver"; under
    // `Reject` they are taken when the message is doomed, so they depend on the split.
    let t = Transcript::new(&format!(
        "{}
        R: a\\nb\\nc\\r\\n.\\r\\n
        S: 550 5.5.2 Error: bare <CR> or <LF> in message data (RFC 5321 section 2.3.8)
        ",
        to_data()
    ));
    let whole = t.replay(Mode::Eager, Split::Whole);
    let bytes = t.replay(Mode::Eager, Split::Bytes);
    let want = [Violation::BareLineEndingInData { bare_lf: 2, bare_cr: 0, normalized: false }];
    assert_eq!(whole.violations(), want);
    assert_eq!(bytes.violations(), want);
}

// ----- dot-stuffing ------------------------------------------------------------------

#[test]
fn dot_unstuffing_first_line_and_dot_lines() {
    let o = run(&format!(
        "{}
        C: ..first line starts with a dot
        C: ..
        C: ...
        C: . not the end
        C: a.b
        C: .
        S: 250 2.0.0 Ok: queued as 1
        ",
        to_data()
    ));
    assert_eq!(o.messages[0].body, b".first line starts with a dot\r\n.\r\n..\r\n not the end\r\na.b\r\n");
}

#[test]
fn empty_message() {
    let o = run(&format!("{}C: .\nS: 250 2.0.0 Ok: queued as 1\n", to_data()));
    assert_eq!(o.messages[0].body, b"");
    assert_eq!(o.messages[0].end.size, 0);
}

#[test]
fn message_of_empty_lines() {
    let o = run(&format!("{}R: \\r\\n\\r\\n.\\r\\n\nS: 250 2.0.0 Ok: queued as 1\n", to_data()));
    assert_eq!(o.messages[0].body, b"\r\n\r\n");
}

#[test]
fn body_without_final_crlf_is_not_ended_by_dot() {
    // "text." then CRLF is content; the message needs its own CRLF.CRLF.
    let o = run(&format!(
        "{}
        R: text.\\r\\n
        --
        R: .\\r\\n
        S: 250 2.0.0 Ok: queued as 1
        ",
        to_data()
    ));
    assert_eq!(o.messages[0].body, b"text.\r\n");
}

#[test]
fn long_text_line_refuses_the_message() {
    let long = "x".repeat(999); // 999 + CRLF = 1001 > 1000
    let o = run(&format!(
        "{}
        C: {long}
        C: MAIL FROM:<evil@attacker.test>
        C: .
        S: 550 5.6.0 Error: message has lines that are too long
        C: NOOP
        S: 250 2.0.0 Ok
        ",
        to_data()
    ));
    assert!(o.events.contains(&Ev::Aborted(AbortReason::LineTooLong)));
    assert_not_smuggled("long line", &o, None);
}

#[test]
fn dot_stuffed_line_of_1000_octets_fits() {
    let line = ".".repeat(999); // 999 octets + CRLF, one of them a transparency dot
    let o = run(&format!("{}C: {line}\nC: .\nS: 250 2.0.0 Ok: queued as 1\n", to_data()));
    assert_eq!(o.messages[0].body.len(), 998 + 2);
}

// ----- DATA pipelined after refusals -------------------------------------------------

const BODY_WITH_COMMANDS: &str = "
        C: MAIL FROM:<evil@attacker.test>
        C: RCPT TO:<victim@example.test>
        C: DATA
        C: Subject: smuggled
        C: .
        C: QUIT
";

#[test]
fn data_pipelined_after_rejected_recipients_closes() {
    // Default: DATA must end a pipelined group (RFC 2920), so the body is never read.
    let o = Transcript::new(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<nobody@elsewhere.test>
        C: DATA
        {BODY_WITH_COMMANDS}
        S: 250 2.1.0 Sender ok
        S: 550 5.1.1 Error: no such user here
        S: 554 5.5.0 Error: SMTP protocol synchronization
        ",
        ehlo()
    ))
    .splits(Splits::LazyOnly)
    .run();
    assert_not_smuggled("rejected rcpts", &o, None);
    assert_eq!(o.close_reason, Some(CloseReason::Violation));
    assert_eq!(o.violations(), [Violation::Pipelining { after: "DATA" }]);
}

#[test]

fn data_pipelined_after_rejected_recipients_without_pipelining_ban() {
    // With `forbid_unauth_pipelining` off, the config promises that "body bytes pipelined
    // after a refused DATA ... are never executed, whatever this says".
    let t = Transcript::new(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<nobody@elsewhere.test>
        C: DATA
        {BODY_WITH_COMMANDS}
        S: 250 2.1.0 Sender ok
        S: 550 5.1.1 Error: no such user here
        S: 554 5.5.1 Error: no valid recipients
        ",
        ehlo()
    ))
    .config(|c| c.forbid_unauth_pipelining = false)
    .splits(Splits::LazyOnly);
    let o = t.replay(Mode::Eager, Split::Whole);
    assert_not_smuggled("rejected rcpts, pipelining allowed", &o, None);
    assert!(o.violations().contains(&Violation::DataAfterRefusedData), "{}", t.render(&o));
    assert_eq!(o.close_reason, Some(CloseReason::Violation));
    t.run();
}

#[test]

fn data_pipelined_by_authenticated_client_after_rejected_recipients() {
    // Authenticated clients may pipeline; the body must still never run as commands.
    let t = Transcript::new(&format!(
        "{GREETING}
        C: EHLO client.example.org
        S~ 250-
        S~ 250-
        S~ 250-
        S~ 250-
        S~ 250-
        S~ 250-
        S~ 250-
        S~ 250-
        S~ 250-
        S: 250 REQUIRETLS
        C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
        S: 235 2.7.0 Authentication successful
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<nobody@elsewhere.test>
        C: DATA
        {BODY_WITH_COMMANDS}
        S: 250 2.1.0 Sender ok
        S: 550 5.1.1 Error: no such user here
        S: 554 5.5.1 Error: no valid recipients
        "
    ))
    .config(|c| c.auth_mechanisms = vec!["PLAIN".into()])
    .start(Start::ImplicitTls)
    .splits(Splits::LazyOnly);
    let o = t.replay(Mode::Eager, Split::Whole);
    assert_eq!(o.authenticated.as_deref(), Some("alice"));
    assert_not_smuggled("authenticated, rejected rcpts", &o, None);
    assert!(o.violations().contains(&Violation::DataAfterRefusedData), "{}", t.render(&o));
    t.run();
}

#[test]
fn data_refused_by_application_with_pipelined_body() {
    let o = Transcript::new(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<bob@example.test>
        C: DATA
        {BODY_WITH_COMMANDS}
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        S: 451 4.3.0 Try later
        ",
        ehlo()
    ))
    .config(|c| c.forbid_unauth_pipelining = false)
    .policy(|p| p.reject_data = Some(reply(451, (4, 3, 0), "Try later")))
    .splits(Splits::LazyOnly)
    .run();
    assert_not_smuggled("DATA refused", &o, None);
    assert_eq!(o.violations(), [Violation::DataAfterRefusedData]);
    assert_eq!(o.close_reason, Some(CloseReason::Violation));
}

#[test]
fn data_pipelined_with_body_when_allowed_is_a_message() {
    let o = Transcript::new(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<bob@example.test>
        C: DATA
        C: Hello
        C: .
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        S: 354 2.0.0 End data with <CR><LF>.<CR><LF>
        S: 250 2.0.0 Ok: queued as 1
        ",
        ehlo()
    ))
    .config(|c| c.forbid_unauth_pipelining = false)
    .run();
    assert_eq!(o.messages[0].body, b"Hello\r\n");
}

// ----- pipelining rules --------------------------------------------------------------

#[test]
fn ehlo_and_mail_in_one_segment() {
    let o = Transcript::new(
        "S: 220 mx.example.test ESMTP
         C: EHLO client.example.org
         C: MAIL FROM:<alice@example.org>
         S: 554 5.5.0 Error: SMTP protocol synchronization
         C: RCPT TO:<bob@example.test>
    ",
    )
    .splits(Splits::LazyOnly)
    .run();
    assert_eq!(o.violations(), [Violation::Pipelining { after: "EHLO" }]);
    assert_eq!(o.close_reason, Some(CloseReason::Violation));
    assert!(o.mails().is_empty());
    assert!(!o.events.iter().any(|e| matches!(e, Ev::Helo(_))), "{:?}", o.events);
}

#[test]
fn helo_session_cannot_pipeline_at_all() {
    let o = Transcript::new(
        "S: 220 mx.example.test ESMTP
         C: HELO client.example.org
         S: 250 mx.example.test
         C: MAIL FROM:<alice@example.org>
         C: RCPT TO:<bob@example.test>
         S: 554 5.5.0 Error: SMTP protocol synchronization
    ",
    )
    .splits(Splits::WholeOnly)
    .run();
    assert_eq!(o.violations(), [Violation::Pipelining { after: "MAIL" }]);
    assert!(o.mails().is_empty());
}

#[test]

fn helo_session_pipelining_detected_while_decision_pending() {
    // The same flight as above, but the RCPT arrives while the application is still
    // deciding on MAIL: the client did not wait for the reply, which is still unsent.
    let mut d = Driver::default_session();
    d.mode = Mode::Lazy;
    assert_eq!(d.take_output(), "220 mx.example.test ESMTP\r\n");
    assert_eq!(d.exchange(b"HELO client.example.org\r\n"), "250 mx.example.test\r\n");
    d.receive(b"MAIL FROM:<alice@example.org>\r\n");
    assert!(d.session.is_decision_pending());
    d.receive(b"RCPT TO:<bob@example.test>\r\n");
    d.flush();
    assert_eq!(d.take_output(), "554 5.5.0 Error: SMTP protocol synchronization\r\n");
    assert_eq!(d.violations(), [Violation::Pipelining { after: "MAIL" }]);
}

#[test]
fn commands_that_must_end_a_group() {
    for (cmd, verb) in
        [("NOOP", "NOOP"), ("VRFY bob", "VRFY"), ("EXPN staff", "EXPN"), ("EHLO again.example", "EHLO")]
    {
        let o = Transcript::new(&format!(
            "{}
            C: {cmd}
            C: MAIL FROM:<alice@example.org>
            S: 554 5.5.0 Error: SMTP protocol synchronization
            ",
            ehlo()
        ))
        .splits(if verb == "EHLO" { Splits::LazyOnly } else { Splits::WholeOnly })
        .run();
        assert_eq!(o.violations(), [Violation::Pipelining { after: verb }], "{cmd}");
        assert!(o.mails().is_empty(), "{cmd}");
    }
}

#[test]
fn allowed_pipelining_group() {
    let o = run(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<bob@example.test>
        C: RCPT TO:<nobody@elsewhere.test>
        C: RCPT TO:<carol@example.test>
        C: DATA
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        S: 550 5.1.1 Error: no such user here
        S: 250 2.1.5 Recipient ok
        S: 354 2.0.0 End data with <CR><LF>.<CR><LF>
        C: Hi
        C: .
        C: RSET
        C: QUIT
        S: 250 2.0.0 Ok: queued as 1
        S: 250 2.0.0 Ok
        S: 221 2.0.0 mx.example.test closing connection
        ",
        ehlo()
    ));
    assert!(o.violations().is_empty());
    assert_eq!(o.messages[0].rcpts(), ["bob@example.test", "carol@example.test"]);
}

#[test]
fn pipelining_allowed_when_not_forbidden() {
    let o = Transcript::new(
        "S: 220 mx.example.test ESMTP
         C: EHLO client.example.org
         C: MAIL FROM:<alice@example.org>
         S~ 250-
         S~ 250-
         S~ 250-
         S~ 250-
         S~ 250-
         S~ 250-
         S~ 250-
         S: 250 DSN
         S: 250 2.1.0 Sender ok
    ",
    )
    .config(|c| c.forbid_unauth_pipelining = false)
    .run();
    assert!(o.violations().is_empty());
}

// ----- bare line endings in commands -------------------------------------------------

#[test]
fn bare_line_endings_in_commands() {
    let o = run(&format!(
        "{}
        R: NOOP\\n
        S: 500 5.5.2 Error: bare <CR> or <LF> received
        R: NOOP\\rMAIL FROM:<evil@attacker.test>\\r\\n
        S: 500 5.5.2 Error: bare <CR> or <LF> received
        R: MAIL FROM:<evil@attacker.test>\\n
        S: 500 5.5.2 Error: bare <CR> or <LF> received
        C: NOOP
        S: 250 2.0.0 Ok
        ",
        ehlo()
    ));
    assert!(o.mails().is_empty());
    assert_eq!(o.violations(), [Violation::BareLineEndingInCommand; 3]);
}

#[test]
fn bare_lf_commands_under_normalize() {
    let o = Transcript::new(&format!(
        "{GREETING}
        R: EHLO client.example.org\\n
        {EHLO_REPLY}
        R: NOOP\\rMAIL FROM:<evil@attacker.test>\\r\\n
        S: 500 5.5.2 Error: bare <CR> or <LF> received
        R: NOOP\\n
        S: 250 2.0.0 Ok
        "
    ))
    .config(|c| c.bare_line_ending = BareLineEnding::Normalize)
    .run();
    assert!(o.mails().is_empty());
}
