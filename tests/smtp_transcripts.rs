//! SMTP session transcripts: the happy paths and every reply code the session can send,
//! each replayed whole, split at every byte offset and byte by byte.
// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::*;
use postern::smtp::{AbortReason, CloseReason, EarlyTalkerPolicy, VerifyPolicy, Violation};

fn b64(s: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

// ----- greeting, HELO, EHLO ----------------------------------------------------------

#[test]
fn greeting_helo_quit() {
    let o = run("
        S: 220 mx.example.test ESMTP
        C: HELO client.example.org
        S: 250 mx.example.test
        C: QUIT
        S: 221 2.0.0 mx.example.test closing connection
    ");
    assert_eq!(o.close_reason, Some(CloseReason::Quit));
    assert!(matches!(o.events[0], Ev::Helo(ref h) if h.name == "client.example.org" && !h.extended));
    assert_eq!(o.events.last(), Some(&Ev::Closed(CloseReason::Quit)));
}

#[test]
fn greeting_text_is_configurable() {
    let o = Transcript::new("S: 220 mx.example.test Postern ready")
        .config(|c| c.greeting_text = "Postern ready".into())
        .run();
    assert!(o.events.is_empty());
}

#[test]
fn ehlo_keywords_default() {
    let o = run(&format!("{}C: QUIT\nS: 221 2.0.0 mx.example.test closing connection\n", ehlo()));
    assert!(matches!(o.events[0], Ev::Helo(ref h) if h.extended));
}

#[test]
fn ehlo_keywords_all_off() {
    Transcript::new(
        "S: 220 mx.example.test ESMTP
         C: EHLO client.example.org
         S: 250-mx.example.test
         S: 250-PIPELINING
         S: 250-SIZE 1000
         S: 250-8BITMIME
         S: 250 ENHANCEDSTATUSCODES
    ",
    )
    .config(|c| {
        c.smtputf8 = false;
        c.chunking = false;
        c.dsn = false;
        c.limits.message_size = 1000;
    })
    .run();
}

#[test]
fn ehlo_keywords_with_starttls_and_auth() {
    Transcript::new(
        "S: 220 mx.example.test ESMTP
         C: EHLO client.example.org
         S: 250-mx.example.test
         S: 250-PIPELINING
         S: 250-SIZE 10240000
         S: 250-8BITMIME
         S: 250-ENHANCEDSTATUSCODES
         S: 250-SMTPUTF8
         S: 250-CHUNKING
         S: 250-DSN
         S: 250-STARTTLS
         S: 250 AUTH PLAIN LOGIN
    ",
    )
    .config(|c| {
        c.starttls = true;
        c.auth_mechanisms = vec!["PLAIN".into(), "LOGIN".into()];
        c.allow_plaintext_auth = true;
    })
    .run();
}

#[test]
fn ehlo_address_literal_and_second_ehlo_resets() {
    let o = run(&format!(
        "{GREETING}
        C: EHLO [192.0.2.7]
        {EHLO_REPLY}
        C: MAIL FROM:<alice@example.org>
        S: 250 2.1.0 Sender ok
        C: EHLO again.example.org
        {EHLO_REPLY}
        C: RCPT TO:<bob@example.test>
        S: 503 5.5.1 Error: need MAIL command
        "
    ));
    assert!(o.events.contains(&Ev::Reset), "{:?}", o.events);
}

#[test]
fn helo_rejected_by_application() {
    let o = Transcript::new(
        "S: 220 mx.example.test ESMTP
         C: HELO bad.example.org
         S: 550 5.7.1 Go away
         C: MAIL FROM:<a@example.org>
         S: 503 5.5.1 Error: send HELO/EHLO first
    ",
    )
    .policy(|p| p.reject_helo = Some(reply(550, (5, 7, 1), "Go away")))
    .run();
    assert!(o.mails().is_empty());
}

#[test]
fn helo_syntax_errors() {
    run("S: 220 mx.example.test ESMTP
         C: HELO
         S: 501 5.5.4 Error: syntax error in parameters or arguments
         C: EHLO
         S: 501 5.5.4 Error: syntax error in parameters or arguments
         C: HELO bad host name
         S: 501 5.5.4 Error: syntax error in parameters or arguments
    ");
}

// ----- a whole transaction -----------------------------------------------------------

#[test]
fn mail_rcpt_data_one_step_at_a_time() {
    let o = run(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        S: 250 2.1.0 Sender ok
        C: RCPT TO:<bob@example.test>
        S: 250 2.1.5 Recipient ok
        C: RCPT TO:<carol@elsewhere.test>
        S: 550 5.1.1 Error: no such user here
        C: RCPT TO:<Dave@EXAMPLE.TEST>
        S: 250 2.1.5 Recipient ok
        C: DATA
        S: 354 2.0.0 End data with <CR><LF>.<CR><LF>
        C: Subject: hello
        C:
        C: Hi Bob.
        C: .
        S: 250 2.0.0 Ok: queued as 1
        C: QUIT
        S: 221 2.0.0 mx.example.test closing connection
        ",
        ehlo()
    ));
    assert_eq!(o.messages.len(), 1);
    let m = &o.messages[0];
    assert_eq!(m.from().as_deref(), Some("alice@example.org"));
    assert_eq!(m.rcpts(), ["bob@example.test", "Dave@EXAMPLE.TEST"]);
    assert_eq!(m.body, b"Subject: hello\r\n\r\nHi Bob.\r\n");
    assert_eq!(m.end.size, m.body.len() as u64);
    assert_eq!(m.end.recipients, 2);
    assert!(!m.end.normalized);
    assert_eq!(m.helo.as_deref(), Some("client.example.org"));
}

#[test]
fn pipelined_transaction_and_two_messages() {
    let o = run(&format!(
        "{}
        C: Hello
        C: .
        S: 250 2.0.0 Ok: queued as 1
        C: MAIL FROM:<>
        C: RCPT TO:<x@example.test>
        C: RCPT TO:<y@example.test>
        C: DATA
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        S: 250 2.1.5 Recipient ok
        S: 354 2.0.0 End data with <CR><LF>.<CR><LF>
        C: Second
        C: .
        C: QUIT
        S: 250 2.0.0 Ok: queued as 2
        S: 221 2.0.0 mx.example.test closing connection
        ",
        to_data()
    ));
    assert_eq!(o.messages.len(), 2);
    assert_eq!(o.messages[1].from(), None);
    assert_eq!(o.messages[1].rcpts(), ["x@example.test", "y@example.test"]);
    assert_eq!(o.messages[1].body, b"Second\r\n");
}

#[test]
fn message_rejected_by_application() {
    let o = Transcript::new(&format!(
        "{}
        C: spam
        C: .
        S: 554 5.7.1 Spam
        C: RCPT TO:<bob@example.test>
        S: 503 5.5.1 Error: need MAIL command
        ",
        to_data()
    ))
    .policy(|p| p.reject_message = Some(reply(554, (5, 7, 1), "Spam")))
    .run();
    assert!(o.messages.is_empty());
}

#[test]
fn data_rejected_by_application() {
    // The client waits for the 354 it does not get, and carries on with commands.
    let o = Transcript::new(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<bob@example.test>
        C: DATA
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        S: 451 4.3.0 Try later
        C: RSET
        S: 250 2.0.0 Ok
        ",
        ehlo()
    ))
    .policy(|p| p.reject_data = Some(reply(451, (4, 3, 0), "Try later")))
    .run();
    assert!(o.messages.is_empty());
}

#[test]
fn rset_noop_vrfy_expn_help() {
    let o = run(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        S: 250 2.1.0 Sender ok
        C: RSET
        S: 250 2.0.0 Ok
        C: RCPT TO:<bob@example.test>
        S: 503 5.5.1 Error: need MAIL command
        C: NOOP
        S: 250 2.0.0 Ok
        C: NOOP whatever text
        S: 250 2.0.0 Ok
        C: VRFY bob
        S: 252 2.5.0 Cannot verify the user, but will accept the message
        C: EXPN staff
        S: 502 5.5.1 Error: command not implemented
        C: HELP
        S: 214 2.0.0 See https://www.rfc-editor.org/rfc/rfc5321
        C: HELP MAIL
        S: 214 2.0.0 See https://www.rfc-editor.org/rfc/rfc5321
        C: rset
        S: 250 2.0.0 Ok
        ",
        ehlo()
    ));
    assert_eq!(o.events.iter().filter(|e| **e == Ev::Reset).count(), 1, "{:?}", o.events);
}

#[test]
fn vrfy_disabled_expn_enabled() {
    Transcript::new(&format!(
        "{}
        C: VRFY bob
        S: 502 5.5.1 Error: command not implemented
        C: EXPN staff
        S: 252 2.5.0 Cannot verify the user, but will accept the message
        ",
        ehlo()
    ))
    .config(|c| {
        c.vrfy = VerifyPolicy::Disabled;
        c.expn = VerifyPolicy::CannotVerify;
    })
    .run();
}

#[test]
fn rset_with_nothing_to_reset_and_quit_mid_transaction() {
    let o = run(&format!(
        "{}
        C: RSET
        S: 250 2.0.0 Ok
        C: MAIL FROM:<alice@example.org>
        S: 250 2.1.0 Sender ok
        C: QUIT
        S: 221 2.0.0 mx.example.test closing connection
        ",
        ehlo()
    ));
    assert!(o.events.contains(&Ev::Reset));
    assert_eq!(o.close_reason, Some(CloseReason::Quit));
}

// ----- errors ------------------------------------------------------------------------

#[test]
fn unknown_and_syntax_errors() {
    run(&format!(
        "{}
        C: FOO bar
        S: 500 5.5.1 Error: command not recognized
        C:
        S: 500 5.5.1 Error: command not recognized
        C: STARTTLSX
        S: 500 5.5.1 Error: command not recognized
        C: MAIL FROM:alice@example.org
        S: 501 5.1.3 Error: bad address syntax
        C: MAIL TO:<alice@example.org>
        S: 501 5.5.4 Error: syntax error in parameters or arguments
        C: MAIL
        S: 501 5.5.4 Error: syntax error in parameters or arguments
        C: RCPT TO:<>
        S: 501 5.1.3 Error: bad address syntax
        C: DATA now
        S: 501 5.5.4 Error: syntax error in parameters or arguments
        C: QUIT now
        S: 501 5.5.4 Error: syntax error in parameters or arguments
        C: BDAT ten
        S: 501 5.5.4 Error: syntax error in parameters or arguments
        C: MAIL FROM:<a\\x01b@example.org>
        S: 501 5.5.4 Error: syntax error in parameters or arguments
        R: MAIL FROM:<\\xff@example.org>\\r\\n
        S: 500 5.5.2 Error: command is not valid UTF-8
        ",
        ehlo()
    ));
}

#[test]
fn session_refusals_are_reported_application_rejections_are_not() {
    let o = run(&format!(
        "{}
        C: FOO
        S: 500 5.5.1 Error: command not recognized
        R: NOOP\\n
        S: 500 5.5.2 Error: bare <CR> or <LF> received
        C: RCPT TO:<bob@example.test>
        S: 503 5.5.1 Error: need MAIL command
        C: MAIL FROM:<alice@example.org> SIZE=99999999999
        S: 552 5.3.4 Error: message size exceeds fixed maximum message size
        C: MAIL FROM:<alice@example.org>
        S: 250 2.1.0 Sender ok
        C: RCPT TO:<nobody@elsewhere.test>
        S: 550 5.1.1 Error: no such user here
        C: DATA
        S: 554 5.5.1 Error: no valid recipients
        ",
        ehlo()
    ));
    let refusals: Vec<_> =
        o.refusals().into_iter().map(|(verb, reply)| (verb, reply[..9].to_owned())).collect();
    assert_eq!(
        refusals,
        [
            ("unparsable command", "500 5.5.1".to_owned()),
            ("command line", "500 5.5.2".to_owned()),
            ("RCPT", "503 5.5.1".to_owned()),
            ("MAIL", "552 5.3.4".to_owned()),
            ("DATA", "554 5.5.1".to_owned()),
        ]
    );
}

#[test]
fn refused_message_is_reported() {
    let o = Transcript::new(&format!(
        "{}
        R: a\\nb\\r\\n.\\r\\n
        S: 550 5.5.2 Error: bare <CR> or <LF> in message data (RFC 5321 section 2.3.8)
        ",
        to_data()
    ))
    .run();
    assert_eq!(
        o.refusals(),
        [("DATA", "550 5.5.2 Error: bare <CR> or <LF> in message data (RFC 5321 section 2.3.8)".to_owned())]
    );
}

#[test]
fn shutdown_mid_message() {
    let mut d = Driver::default_session();
    d.exchange(b"EHLO client.example.org\r\n");
    d.exchange(b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n");
    d.exchange(b"Subject: half a message\r\n");
    d.session.shutdown(reply(421, (4, 3, 2), "mx.example.test shutting down"));
    d.flush();
    assert_eq!(d.take_output(), "421 4.3.2 mx.example.test shutting down\r\n");
    assert!(d.app.events.contains(&Ev::Aborted(AbortReason::ConnectionLost)), "{:?}", d.app.events);
    assert_eq!(d.session.close_reason(), Some(CloseReason::Shutdown));
    assert!(d.app.messages.is_empty());
    // Idempotent.
    d.session.shutdown(reply(421, (4, 3, 2), "again"));
    d.flush();
    assert_eq!(d.take_output(), "");
}

#[test]
fn address_too_long() {
    let local = "a".repeat(65);
    run(&format!(
        "{}
        C: MAIL FROM:<{local}@example.org>
        S: 501 5.1.3 Error: address too long
        ",
        ehlo()
    ));
}

#[test]
fn bad_parameters_555() {
    run(&format!(
        "{}
        C: MAIL FROM:<alice@example.org> FOO=BAR
        S: 555 5.5.4 Error: unrecognized or invalid parameter
        C: MAIL FROM:<alice@example.org> SIZE=1 SIZE=2
        S: 555 5.5.4 Error: unrecognized or invalid parameter
        C: MAIL FROM:<alice@example.org> BODY=BINARYMIME
        S: 555 5.5.4 Error: unsupported MAIL parameter
        C: MAIL FROM:<alice@example.org> REQUIRETLS
        S: 555 5.5.4 Error: unsupported MAIL parameter
        C: MAIL FROM:<alice@example.org>
        S: 250 2.1.0 Sender ok
        C: RCPT TO:<bob@example.test> FOO=BAR
        S: 555 5.5.4 Error: unrecognized or invalid parameter
        ",
        ehlo()
    ));
}

#[test]
fn esmtp_parameters_need_ehlo() {
    run("S: 220 mx.example.test ESMTP
         C: HELO client.example.org
         S: 250 mx.example.test
         C: MAIL FROM:<alice@example.org> SIZE=100
         S: 555 5.5.4 Error: unsupported MAIL parameter
         C: MAIL FROM:<alice@example.org>
         S: 250 2.1.0 Sender ok
         C: RCPT TO:<bob@example.test> NOTIFY=NEVER
         S: 555 5.5.4 Error: unsupported RCPT parameter
         C: BDAT 6 LAST
         --
         # A refused chunk is still read (RFC 3030 section 2), and only then answered.
         C: QUIT
         S: 502 5.5.1 Error: command not implemented
         C: QUIT
         S: 221 2.0.0 mx.example.test closing connection
    ");
}

#[test]
fn bdat_with_its_chunk_under_helo_is_pipelining() {
    // Without EHLO nothing may be pipelined, not even a BDAT chunk.
    let o = Transcript::new(
        "S: 220 mx.example.test ESMTP
         C: HELO client.example.org
         S: 250 mx.example.test
         R: BDAT 6 LAST\\r\\nQUIT\\r\\n
         S: 554 5.5.0 Error: SMTP protocol synchronization
    ",
    )
    .splits(Splits::WholeOnly)
    .run();
    assert_eq!(o.violations(), [Violation::Pipelining { after: "BDAT" }]);
}

#[test]
fn dsn_disabled_refuses_dsn_parameters() {
    Transcript::new(&format!(
        "{GREETING}
        C: EHLO client.example.org
        S~ 250-
        S~ 250-
        S~ 250-
        S~ 250-
        S~ 250-
        S~ 250-
        S: 250 CHUNKING
        C: MAIL FROM:<alice@example.org> RET=FULL
        S: 555 5.5.4 Error: unsupported MAIL parameter
        C: MAIL FROM:<alice@example.org>
        S: 250 2.1.0 Sender ok
        C: RCPT TO:<bob@example.test> NOTIFY=NEVER
        S: 555 5.5.4 Error: unsupported RCPT parameter
        "
    ))
    .config(|c| c.dsn = false)
    .run();
}

#[test]
fn sequence_errors_503_554() {
    run("S: 220 mx.example.test ESMTP
         C: MAIL FROM:<alice@example.org>
         S: 503 5.5.1 Error: send HELO/EHLO first
         C: HELO client.example.org
         S: 250 mx.example.test
         C: RCPT TO:<bob@example.test>
         S: 503 5.5.1 Error: need MAIL command
         C: DATA
         S: 503 5.5.1 Error: need MAIL command
         C: MAIL FROM:<alice@example.org>
         S: 250 2.1.0 Sender ok
         C: DATA
         S: 554 5.5.1 Error: no valid recipients
         C: MAIL FROM:<alice@example.org>
         S: 503 5.5.1 Error: nested MAIL command
         C: RCPT TO:<nobody@elsewhere.test>
         S: 550 5.1.1 Error: no such user here
         C: DATA
         S: 554 5.5.1 Error: no valid recipients
    ");
}

#[test]
fn size_declared_too_big_552() {
    let o = Transcript::new(&format!(
        "{}
        C: MAIL FROM:<alice@example.org> SIZE=1001
        S: 552 5.3.4 Error: message size exceeds fixed maximum message size
        C: MAIL FROM:<alice@example.org> SIZE=1000
        S: 250 2.1.0 Sender ok
        ",
        ehlo().replace("SIZE 10240000", "SIZE 1000")
    ))
    .config(|c| c.limits.message_size = 1000)
    .run();
    let mails = o.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].size, Some(1000));
}

#[test]
fn size_exceeded_mid_stream_552() {
    let big = "x".repeat(60);
    let o = Transcript::new(&format!(
        "{}
        C: {big}
        C: {big}
        --
        C: .
        S: 552 5.3.4 Error: message size exceeds fixed maximum message size
        C: MAIL FROM:<alice@example.org>
        S: 250 2.1.0 Sender ok
        ",
        to_data().replace("SIZE 10240000", "SIZE 100")
    ))
    .config(|c| c.limits.message_size = 100)
    .run();
    assert!(o.messages.is_empty());
    assert!(o.events.contains(&Ev::Aborted(AbortReason::TooLarge)), "{:?}", o.events);
}

#[test]

fn refusal_reason_does_not_depend_on_split_size_and_bare_cr() {
    // Two limits trip in one message: the reply must not depend on the packet boundaries.
    // Size 3: "a", a bare CR, then "bcd" goes over the size.
    let o = Transcript::new(&format!(
        "{}
        R: a\\rbcd\\r\\n.\\r\\n
        S~ 55
        ",
        to_data().replace("SIZE 10240000", "SIZE 3")
    ))
    .config(|c| c.limits.message_size = 3)
    .run();
    assert!(o.messages.is_empty());
}

#[test]

fn refusal_reason_does_not_depend_on_split_long_line_and_bare_lf() {
    // A line over 10 octets, then a bare LF.
    let o = Transcript::new(&format!(
        "{}
        R: 0123456789ab\\r\\nc\\nd\\r\\n.\\r\\n
        S~ 550
        ",
        to_data()
    ))
    .config(|c| c.limits.text_line = Some(10))
    .run();
    assert!(o.messages.is_empty());
}

#[test]
fn too_many_recipients_452() {
    let o = Transcript::new(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<a@example.test>
        C: RCPT TO:<nobody@elsewhere.test>
        C: RCPT TO:<b@example.test>
        C: RCPT TO:<c@example.test>
        C: DATA
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        S: 550 5.1.1 Error: no such user here
        S: 250 2.1.5 Recipient ok
        S: 452 4.5.3 Error: too many recipients
        S: 354 2.0.0 End data with <CR><LF>.<CR><LF>
        C: .
        S: 250 2.0.0 Ok: queued as 1
        ",
        ehlo()
    ))
    .config(|c| c.limits.recipients = 2)
    .run();
    assert_eq!(o.messages[0].rcpts(), ["a@example.test", "b@example.test"]);
    assert_eq!(o.messages[0].end.recipients, 2);
}

#[test]
fn postmaster() {
    let o = run(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<Postmaster>
        C: RCPT TO:<postmaster@elsewhere.test>
        C: RCPT TO:<POSTMASTER@example.test>
        C: DATA
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        S: 250 2.1.5 Recipient ok
        S: 250 2.1.5 Recipient ok
        S: 354 2.0.0 End data with <CR><LF>.<CR><LF>
        C: .
        S: 250 2.0.0 Ok: queued as 1
        ",
        ehlo()
    ));
    let m = &o.messages[0];
    assert!(m.rcpts.iter().all(|a| a.is_postmaster()));
    assert_eq!(m.rcpts[0].domain(), "");
    assert_eq!(m.body, b"");
    assert_eq!(m.end.size, 0);
}

#[test]
fn smtputf8() {
    let o = run(&format!(
        "{}
        C: MAIL FROM:<jöran@example.org>
        S: 553 5.6.7 Error: non-ASCII address requires SMTPUTF8
        C: MAIL FROM:<alice@example.org>
        S: 250 2.1.0 Sender ok
        C: RCPT TO:<bjørn@example.test>
        S: 553 5.6.7 Error: non-ASCII address requires SMTPUTF8
        C: RSET
        S: 250 2.0.0 Ok
        C: MAIL FROM:<jöran@bücher.example> SMTPUTF8
        S: 250 2.1.0 Sender ok
        C: RCPT TO:<bjørn@example.test>
        S: 250 2.1.5 Recipient ok
        C: DATA
        S: 354 2.0.0 End data with <CR><LF>.<CR><LF>
        C: Hej
        C: .
        S: 250 2.0.0 Ok: queued as 1
        ",
        ehlo()
    ));
    assert_eq!(o.violations(), [Violation::Utf8WithoutSmtputf8, Violation::Utf8WithoutSmtputf8]);
    let m = &o.messages[0];
    assert!(m.mail.smtputf8);
    assert_eq!(m.from().as_deref(), Some("jöran@bücher.example"));
    assert!(m.received.contains("with UTF8SMTP"), "{}", m.received);
}

#[test]
fn smtputf8_disabled() {
    Transcript::new(&format!(
        "{GREETING}
        C: EHLO client.example.org
        S: 250-mx.example.test
        S: 250-PIPELINING
        S: 250-SIZE 10240000
        S: 250-8BITMIME
        S: 250-ENHANCEDSTATUSCODES
        S: 250-CHUNKING
        S: 250 DSN
        C: MAIL FROM:<jöran@example.org> SMTPUTF8
        S: 555 5.5.4 Error: unsupported MAIL parameter
        "
    ))
    .config(|c| c.smtputf8 = false)
    .run();
}

#[test]
fn dsn_parameters_surfaced() {
    let o = run(&format!(
        "{}
        C: MAIL FROM:<alice@example.org> RET=HDRS ENVID=QQ314159+2Bx BODY=8BITMIME SIZE=12
        C: RCPT TO:<bob@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+40example.test
        C: RCPT TO:<carol@example.test> NOTIFY=NEVER
        C: DATA
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        S: 250 2.1.5 Recipient ok
        S: 354 2.0.0 End data with <CR><LF>.<CR><LF>
        C: 0123456789
        C: .
        S: 250 2.0.0 Ok: queued as 1
        ",
        ehlo()
    ));
    let m = &o.messages[0];
    assert_eq!(m.mail.ret, Some(postern::smtp::command::Ret::Headers));
    assert_eq!(m.mail.envid.as_deref(), Some("QQ314159+x"));
    assert_eq!(m.mail.body, Some(postern::smtp::command::Body::EightBitMime));
    assert_eq!(m.mail.size, Some(12));
    let rcpts: Vec<_> = o
        .events
        .iter()
        .filter_map(|e| match e {
            Ev::Rcpt(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    let n = rcpts[0].notify.expect("NOTIFY");
    assert!(n.success && n.failure && !n.delay && !n.never);
    assert_eq!(rcpts[0].orcpt, Some(("rfc822".to_owned(), "bob@example.test".to_owned())));
    assert!(rcpts[1].notify.expect("NOTIFY").never);
    assert_eq!(rcpts[1].orcpt, None);
}

#[test]
fn invalid_xtext_501() {
    run(&format!(
        "{}
        C: MAIL FROM:<alice@example.org> ENVID=bad+zz
        S~ 5
        ",
        ehlo()
    ));
}

// ----- BDAT --------------------------------------------------------------------------

#[test]
fn bdat_chunks() {
    let o = run(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<bob@example.test>
        R: BDAT 7\\r\\nHello, 
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        S: 250 2.0.0 Ok: 7 octets received
        R: BDAT 9 LAST\\r\\nworld!\\r\\n.
        S: 250 2.0.0 Ok: queued as 1
        C: QUIT
        S: 221 2.0.0 mx.example.test closing connection
        ",
        ehlo()
    ));
    let m = &o.messages[0];
    assert_eq!(m.body, b"Hello, world!\r\n.");
    assert_eq!(m.end.size, 16);
    assert!(o.events.contains(&Ev::DataStart { chunking: true }));
}

#[test]
fn bdat_pipelined_with_following_commands() {
    let o = run(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<bob@example.test>
        R: BDAT 3\\r\\nabcBDAT 3 LAST\\r\\ndef
        C: MAIL FROM:<second@example.org>
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        S: 250 2.0.0 Ok: 3 octets received
        S: 250 2.0.0 Ok: queued as 1
        S: 250 2.1.0 Sender ok
        ",
        ehlo()
    ));
    assert_eq!(o.messages[0].body, b"abcdef");
    assert_eq!(o.mails().len(), 2);
}

#[test]
fn bdat_zero_last() {
    let o = run(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<bob@example.test>
        R: BDAT 5\\r\\nHello
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        S: 250 2.0.0 Ok: 5 octets received
        C: BDAT 0 LAST
        S: 250 2.0.0 Ok: queued as 1
        ",
        ehlo()
    ));
    assert_eq!(o.messages[0].body, b"Hello");
}

#[test]
fn bdat_zero_last_only_chunk() {
    let o = run(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<bob@example.test>
        C: BDAT 0 LAST
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        S: 250 2.0.0 Ok: queued as 1
        ",
        ehlo()
    ));
    assert_eq!(o.messages[0].body, b"");
}

#[test]
fn bdat_without_mail_consumes_the_chunk() {
    let o = run(&format!(
        "{}
        R: BDAT 20\\r\\nMAIL FROM:<evil@x>\\r\\n
        S: 503 5.5.1 Error: need MAIL command
        C: NOOP
        S: 250 2.0.0 Ok
        ",
        ehlo()
    ));
    assert!(o.mails().is_empty());
}

#[test]
fn bdat_without_recipients_consumes_the_chunk() {
    let o = run(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        S: 250 2.1.0 Sender ok
        R: BDAT 26 LAST\\r\\nRCPT TO:<x@example.test>\\r\\n
        S: 554 5.5.1 Error: no valid recipients
        C: NOOP
        S: 250 2.0.0 Ok
        ",
        ehlo()
    ));
    assert!(o.events.iter().all(|e| !matches!(e, Ev::Rcpt(_))));
}

#[test]
fn bdat_refused_by_application_consumes_chunks() {
    let o = Transcript::new(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<bob@example.test>
        R: BDAT 18\\r\\nRSET\\r\\nQUIT\\r\\nNOOP\\r\\n
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        S: 452 4.3.1 Insufficient storage
        R: BDAT 6 LAST\\r\\nQUIT\\r\\n
        S: 503 5.5.1 Error: earlier BDAT failed, send RSET
        C: RSET
        S: 250 2.0.0 Ok
        ",
        ehlo()
    ))
    .policy(|p| p.reject_data = Some(reply(452, (4, 3, 1), "Insufficient storage")))
    .run();
    assert!(o.messages.is_empty());
    assert_ne!(o.close_reason, Some(CloseReason::Quit));
}

#[test]
fn data_after_bdat_and_rcpt_after_bdat() {
    run(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<bob@example.test>
        R: BDAT 2\\r\\nab
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        S: 250 2.0.0 Ok: 2 octets received
        C: RCPT TO:<carol@example.test>
        S: 503 5.5.1 Error: RCPT after BDAT
        C: DATA
        S: 503 5.5.1 Error: DATA after BDAT
        ",
        ehlo()
    ));
}

#[test]
fn bdat_size_limit() {
    let o = Transcript::new(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<bob@example.test>
        R: BDAT 8\\r\\n12345678
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        S: 250 2.0.0 Ok: 8 octets received
        R: BDAT 8 LAST\\r\\n12345678
        S: 552 5.3.4 Error: message size exceeds fixed maximum message size
        ",
        ehlo().replace("SIZE 10240000", "SIZE 10")
    ))
    .config(|c| c.limits.message_size = 10)
    .run();
    assert!(o.messages.is_empty());
}

#[test]
fn bdat_rset_aborts_message() {
    let o = run(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<bob@example.test>
        R: BDAT 2\\r\\nab
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        S: 250 2.0.0 Ok: 2 octets received
        C: RSET
        S: 250 2.0.0 Ok
        ",
        ehlo()
    ));
    assert!(o.events.contains(&Ev::Aborted(AbortReason::Reset)), "{:?}", o.events);
}

#[test]
fn chunking_disabled() {
    Transcript::new(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<bob@example.test>
        C: BDAT 6 LAST
        C: QUIT
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        S: 502 5.5.1 Error: command not implemented
        ",
        ehlo().replace("S: 250-CHUNKING\n", "")
    ))
    .config(|c| c.chunking = false)
    .run();
}

// ----- AUTH --------------------------------------------------------------------------

fn auth_config(c: &mut postern::smtp::Config) {
    c.auth_mechanisms = vec!["PLAIN".into()];
    c.allow_plaintext_auth = true;
}

fn ehlo_auth() -> String {
    format!(
        "{GREETING}C: EHLO client.example.org\n{}",
        EHLO_REPLY.replace("S: 250 DSN", "S: 250-DSN\nS: 250 AUTH PLAIN")
    )
}

#[test]
fn auth_needs_tls_538() {
    let o = Transcript::new(&format!(
        "{}
        C: AUTH PLAIN {}
        S: 538 5.7.11 Error: encryption required for requested authentication mechanism
        ",
        ehlo(),
        b64(b"\0alice\0secret")
    ))
    .config(|c| c.auth_mechanisms = vec!["PLAIN".into()])
    .run();
    assert_eq!(o.authenticated, None);
}

#[test]
fn auth_plain_initial_response() {
    let o = Transcript::new(&format!(
        "{}
        C: AUTH PLAIN {}
        S: 235 2.7.0 Authentication successful
        C: AUTH PLAIN {}
        S: 503 5.5.1 Error: already authenticated
        C: EHLO client.example.org
        {EHLO_REPLY}
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<anyone@elsewhere.test>
        S: 250 2.1.0 Sender ok
        S: 550 5.1.1 Error: no such user here
        ",
        ehlo_auth(),
        b64(b"\0alice\0secret"),
        b64(b"\0alice\0secret"),
    ))
    .config(auth_config)
    .run();
    assert_eq!(o.authenticated.as_deref(), Some("alice"));
    assert!(o.events.iter().any(|e| matches!(e, Ev::Auth { mechanism, initial: Some(i) } if mechanism == "PLAIN" && i == b"\0alice\0secret")));
}

#[test]
fn auth_plain_with_challenge() {
    let o = Transcript::new(&format!(
        "{}
        C: auth plain
        S: 334 
        C: {}
        S: 235 2.7.0 Authentication successful
        ",
        ehlo_auth(),
        b64(b"admin\0alice\0secret"),
    ))
    .config(auth_config)
    .run();
    assert_eq!(o.authenticated.as_deref(), Some("alice"));
}

#[test]
fn auth_empty_initial_response() {
    // `=` is an empty initial response: a PLAIN message without NULs fails.
    let o = Transcript::new(&format!(
        "{}
        C: AUTH PLAIN =
        S: 535 5.7.8 Error: authentication failed
        ",
        ehlo_auth(),
    ))
    .config(auth_config)
    .run();
    assert!(o.events.iter().any(|e| matches!(e, Ev::Auth { initial: Some(i), .. } if i.is_empty())));
}

#[test]
fn auth_cancel_and_bad_base64() {
    let o = Transcript::new(&format!(
        "{}
        C: AUTH PLAIN
        S: 334 
        C: *
        S: 501 5.0.0 Authentication cancelled
        C: AUTH PLAIN
        S: 334 
        C: not base64!
        S: 501 5.5.2 Error: invalid base64 in response
        C: AUTH PLAIN Zm9v!
        S: 501 5.5.4 Error: syntax error in parameters or arguments
        C: AUTH PLAIN Zm9
        S: 501 5.5.2 Error: invalid base64 in initial response
        C: AUTH CRAM-MD5
        S: 504 5.5.4 Error: unrecognized authentication type
        C: NOOP
        S: 250 2.0.0 Ok
        ",
        ehlo_auth(),
    ))
    .config(auth_config)
    .run();
    assert_eq!(o.events.iter().filter(|e| **e == Ev::AuthAborted).count(), 2);
    assert_eq!(o.authenticated, None);
}

#[test]
fn auth_failures_limit_421() {
    let o = Transcript::new(&format!(
        "{}
        C: AUTH PLAIN {bad}
        S: 535 5.7.8 Error: authentication failed
        C: AUTH PLAIN
        S: 334 
        C: {bad}
        S: 535 5.7.8 Error: authentication failed
        C: AUTH PLAIN {bad}
        S: 421 4.7.0 Error: too many failed authentication attempts
        ",
        ehlo_auth(),
        bad = b64(b"\0alice\0wrong"),
    ))
    .config(auth_config)
    .run();
    assert_eq!(o.close_reason, Some(CloseReason::Violation));
    assert!(o.violations().contains(&Violation::TooManyAuthFailures));
}

#[test]
fn auth_sequence_errors() {
    Transcript::new(&format!(
        "{GREETING}
        C: HELO client.example.org
        S: 250 mx.example.test
        C: AUTH PLAIN
        S: 503 5.5.1 Error: send EHLO first
        C: EHLO client.example.org
        {}
        C: MAIL FROM:<alice@example.org>
        S: 250 2.1.0 Sender ok
        C: AUTH PLAIN
        S: 503 5.5.1 Error: AUTH not permitted during a mail transaction
        ",
        EHLO_REPLY.replace("S: 250 DSN", "S: 250-DSN\nS: 250 AUTH PLAIN")
    ))
    .config(auth_config)
    .run();
}

#[test]
fn auth_not_configured_502() {
    run(&format!(
        "{}
        C: AUTH PLAIN
        S: 502 5.5.1 Error: command not implemented
        ",
        ehlo()
    ));
}

#[test]
fn auth_response_line_too_long() {
    let long = "A".repeat(100);
    Transcript::new(&format!(
        "{}
        C: AUTH PLAIN
        S: 334 
        C: {long}
        S: 501 5.5.2 Error: invalid authentication response
        C: NOOP
        S: 250 2.0.0 Ok
        ",
        ehlo_auth(),
    ))
    .config(|c| {
        auth_config(c);
        c.limits.auth_line = 64;
    })
    .run();
}

// ----- limits ------------------------------------------------------------------------

#[test]
fn error_limit_421() {
    let o = Transcript::new(
        "S: 220 mx.example.test ESMTP
         C: FOO
         S: 500 5.5.1 Error: command not recognized
         C: BAR
         S: 500 5.5.1 Error: command not recognized
         C: BAZ
         S: 500 5.5.1 Error: command not recognized
         S: 421 4.7.0 Error: too many errors
         C: HELO client.example.org
    ",
    )
    .config(|c| c.limits.errors = 3)
    .run();
    assert_eq!(o.close_reason, Some(CloseReason::Violation));
    assert!(o.violations().contains(&Violation::TooManyErrors));
    assert!(!o.events.iter().any(|e| matches!(e, Ev::Helo(_))));
}

#[test]
fn accepted_message_resets_error_count() {
    Transcript::new(&format!(
        "{}
        C: FOO
        S: 500 5.5.1 Error: command not recognized
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<bob@example.test>
        C: DATA
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        S: 354 2.0.0 End data with <CR><LF>.<CR><LF>
        C: .
        S: 250 2.0.0 Ok: queued as 1
        C: FOO
        S: 500 5.5.1 Error: command not recognized
        C: NOOP
        S: 250 2.0.0 Ok
        ",
        ehlo()
    ))
    .config(|c| c.limits.errors = 2)
    .run();
}

#[test]
fn junk_command_limit() {
    // Past the junk limit every junk command also counts as an error (Postfix's
    // smtpd_junk_command_limit); the error limit then closes the session.
    let o = Transcript::new(&format!(
        "{}
        C: NOOP
        S: 250 2.0.0 Ok
        C: RSET
        S: 250 2.0.0 Ok
        C: VRFY x
        S: 252 2.5.0 Cannot verify the user, but will accept the message
        C: HELP
        S: 214 2.0.0 See https://www.rfc-editor.org/rfc/rfc5321
        C: NOOP
        S: 421 4.7.0 Error: too many junk commands
        ",
        ehlo()
    ))
    .config(|c| {
        c.limits.junk_commands = 3;
        c.limits.errors = 2;
    })
    .run();
    assert_eq!(o.close_reason, Some(CloseReason::Violation));
    assert!(o.violations().contains(&Violation::TooManyJunkCommands));
}

#[test]
fn junk_count_restarts_after_a_delivered_message() {
    let o = Transcript::new(&format!(
        "{}
        C: NOOP
        S: 250 2.0.0 Ok
        C: NOOP
        S: 250 2.0.0 Ok
        C: MAIL FROM:<alice@example.org>
        S: 250 2.1.0 Sender ok
        C: RCPT TO:<bob@example.test>
        S: 250 2.1.5 Recipient ok
        C: DATA
        S: 354 2.0.0 End data with <CR><LF>.<CR><LF>
        C: hi
        C: .
        S: 250 2.0.0 Ok: queued as 1
        C: NOOP
        S: 250 2.0.0 Ok
        C: NOOP
        S: 250 2.0.0 Ok
        C: QUIT
        S: 221 2.0.0 mx.example.test closing connection
        ",
        ehlo()
    ))
    .config(|c| {
        c.limits.junk_commands = 2;
        c.limits.errors = 1;
    })
    .run();
    assert_eq!(o.close_reason, Some(CloseReason::Quit));
}

#[test]
fn line_too_long_500() {
    let long = format!("NOOP {}", "x".repeat(505)); // 510 octets + CRLF = 512: fits
    let longer = format!("NOOP {}", "x".repeat(506));
    let o = run(&format!(
        "{GREETING}
        C: {long}
        S: 250 2.0.0 Ok
        C: {longer}
        S: 500 5.5.2 Error: line too long
        C: NOOP
        S: 250 2.0.0 Ok
        "
    ));
    assert_eq!(o.violations(), [Violation::LineTooLong]);
}

#[test]
fn line_allowance_after_ehlo() {
    // After EHLO the SIZE and DSN allowances are added to the 512 octets (RFC 1870,
    // RFC 3461): a 251-octet path with NOTIFY and a 300-octet ORCPT fits.
    let domain = format!("{}.{}.{}.example.org", "d".repeat(60), "e".repeat(60), "f".repeat(50));
    let rcpt = format!(
        "RCPT TO:<{}@{domain}> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;{}",
        "a".repeat(64),
        "o".repeat(300)
    );
    assert!(rcpt.len() > 600);
    let o = run(&format!(
        "{GREETING}
        C: HELO client.example.org
        S: 250 mx.example.test
        C: MAIL FROM:<alice@example.org>
        S: 250 2.1.0 Sender ok
        C: {rcpt}
        S: 500 5.5.2 Error: line too long
        C: EHLO client.example.org
        {EHLO_REPLY}
        C: MAIL FROM:<alice@example.org>
        S: 250 2.1.0 Sender ok
        C: {rcpt}
        S: 550 5.1.1 Error: no such user here
        "
    ));
    assert_eq!(o.violations(), [Violation::LineTooLong]);
    let rcpt = o.events.iter().find_map(|e| match e {
        Ev::Rcpt(r) => Some(r),
        _ => None,
    });
    assert_eq!(rcpt.expect("RCPT reached the application").orcpt.as_ref().map(|o| o.1.len()), Some(300));
}

#[test]
fn session_bytes_limit() {
    let o = Transcript::new(&format!(
        "{}
        C: NOOP
        S: 250 2.0.0 Ok
        C: NOOP
        S: 421 4.7.0 Error: too much input
        ",
        ehlo()
    ))
    .config(|c| c.limits.session_bytes = 33)
    .splits(Splits::WholeOnly)
    .run();
    assert!(o.violations().contains(&Violation::TooMuchInput));
}

#[test]

fn partial_line_longer_than_buffered_input() {
    // A command line within the line limit, arriving in two pieces, must not trip the
    // buffered-input cap (meant for input held while a decision is pending).
    let long = format!("NOOP {}", "x".repeat(300));
    Transcript::new(&format!(
        "{GREETING}
        C: {long}
        S: 250 2.0.0 Ok
        "
    ))
    .config(|c| c.limits.buffered_input = 100)
    .run();
}

// ----- timeouts ----------------------------------------------------------------------

#[test]
fn command_timeout_421() {
    let o = run("S: 220 mx.example.test ESMTP
         T: 299
         C: HELO client.example.org
         S: 250 mx.example.test
         T: 299
         T: 1
         S: 421 4.4.2 mx.example.test Error: timeout exceeded
    ");
    assert_eq!(o.close_reason, Some(CloseReason::Timeout));
}

#[test]
fn command_timeout_not_extended_by_trickle() {
    let mut script = Script::parse(GREETING);
    for b in b"NOOP" {
        script.flight(&[*b]).op(Op::Advance(Duration::from_secs(60)));
    }
    // 4 x 60 s without a complete command; the fifth minute closes.
    script.op(Op::Advance(Duration::from_secs(60)));
    script.exact("421 4.4.2 mx.example.test Error: timeout exceeded");
    let o = Transcript::from_script(script).run();
    assert_eq!(o.close_reason, Some(CloseReason::Timeout));
}

#[test]
fn data_timeout() {
    let o = run(&format!(
        "{}
        C: Subject: slow
        T: 179
        C: more
        T: 179
        S: 421 4.4.2 mx.example.test Error: timeout exceeded
        ",
        to_data()
    ));
    assert_eq!(o.close_reason, Some(CloseReason::Timeout));
    assert!(o.events.contains(&Ev::Aborted(AbortReason::Timeout)));
    assert!(o.messages.is_empty());
}

#[test]
fn data_timeout_without_min_rate_resets_per_block() {
    let o = Transcript::new(&format!(
        "{}
        C: Subject: slow
        T: 170
        C: more
        T: 170
        C: more
        T: 170
        C: .
        S: 250 2.0.0 Ok: queued as 1
        ",
        to_data()
    ))
    .config(|c| c.limits.min_data_rate = None)
    .run();
    assert_eq!(o.messages.len(), 1);
}

#[test]
fn slowloris_data_times_out_although_bytes_keep_coming() {
    let mut script = Script::parse(&to_data());
    // One byte every 10 s: well within the 180 s data timeout between blocks, but the
    // rate (0.1 B/s) is far below the 500 B/s minimum.
    for _ in 0..19 {
        script.flight(b"x").op(Op::Advance(Duration::from_secs(10)));
    }
    script.exact("421 4.4.2 mx.example.test Error: timeout exceeded");
    let o = Transcript::from_script(script).run();
    assert_eq!(o.close_reason, Some(CloseReason::Timeout));
    assert!(o.events.contains(&Ev::Aborted(AbortReason::Timeout)));
}

#[test]
fn bdat_chunk_timeout() {
    let o = run(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<bob@example.test>
        R: BDAT 10 LAST\\r\\nabc
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        T: 180
        S: 421 4.4.2 mx.example.test Error: timeout exceeded
        ",
        ehlo()
    ));
    assert_eq!(o.close_reason, Some(CloseReason::Timeout));
    assert!(o.events.contains(&Ev::Aborted(AbortReason::Timeout)), "{:?}", o.events);
}

#[test]
fn eof_mid_message() {
    let o = run(&format!(
        "{}
        C: Subject: cut
        EOF
        ",
        to_data()
    ));
    assert_eq!(o.close_reason, Some(CloseReason::ConnectionLost));
    assert!(o.events.contains(&Ev::Aborted(AbortReason::ConnectionLost)));
    assert!(o.messages.is_empty());
}

#[test]
fn eof_while_message_end_is_pending_aborts() {
    // The client never saw a 250: the message must not be kept.
    let mut d = Driver::default_session();
    d.exchange(b"EHLO client.example.org\r\n");
    d.exchange(b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n");
    d.mode = Mode::Lazy;
    d.receive(b"Hello\r\n.\r\n");
    assert!(matches!(d.app.events.last(), Some(Ev::MessageEnd(_))));
    d.session.handle_eof(d.now);
    d.flush();
    assert!(d.app.messages.is_empty());
    assert!(d.app.events.contains(&Ev::Aborted(AbortReason::ConnectionLost)), "{:?}", d.app.events);
    assert_eq!(d.session.close_reason(), Some(CloseReason::ConnectionLost));
}

#[test]
fn timeout_while_decision_pending_closes() {
    let mut d = Driver::default_session();
    d.exchange(b"EHLO client.example.org\r\n");
    d.mode = Mode::Lazy;
    d.receive(b"MAIL FROM:<alice@example.org>\r\n");
    assert!(d.session.is_decision_pending());
    let deadline = d.session.poll_timeout().expect("deadline");
    d.session.handle_timeout(deadline);
    d.flush();
    assert_eq!(d.take_output(), "421 4.4.2 mx.example.test Error: timeout exceeded\r\n");
    assert_eq!(d.session.close_reason(), Some(CloseReason::Timeout));
}

#[test]

fn bdat_start_rejected_with_421_closes_at_once() {
    // `reject` documents that a 421 closes the session; for a BDAT the client must not be
    // kept sending a chunk the server has already given up on.
    let o = Transcript::new(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<bob@example.test>
        C: BDAT 1000000 LAST
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        S: 421 4.3.2 Shutting down
        ",
        ehlo()
    ))
    .policy(|p| p.reject_data = Some(reply(421, (4, 3, 2), "Shutting down")))
    .run();
    assert_eq!(o.close_reason, Some(CloseReason::Rejected));
}

// ----- early talkers and refused connections -----------------------------------------

#[test]
fn early_talker_rejected_with_greeting_delay() {
    let o = Transcript::new(
        "C: EHLO spammer.example
         S: 554 5.5.1 Error: protocol error, talking before the greeting
    ",
    )
    .config(|c| c.greeting_delay = Some(Duration::from_secs(5)))
    .run();
    assert_eq!(o.close_reason, Some(CloseReason::Violation));
    assert!(matches!(o.violations()[..], [Violation::EarlyTalker { bytes: 22 }]));
    assert!(!o.events.iter().any(|e| matches!(e, Ev::Helo(_))));
}

#[test]
fn early_talker_reported_then_processed() {
    let o = Transcript::new(&format!(
        "C: EHLO client.example.org
         T: 5
         S: 220 mx.example.test ESMTP
         {EHLO_REPLY}
         C: QUIT
         S: 221 2.0.0 mx.example.test closing connection
    "
    ))
    .config(|c| {
        c.greeting_delay = Some(Duration::from_secs(5));
        c.early_talker = EarlyTalkerPolicy::Report;
    })
    .run();
    assert!(matches!(o.violations()[..], [Violation::EarlyTalker { bytes: 25 }]));
    assert_eq!(o.close_reason, Some(CloseReason::Quit));
}

#[test]
fn greeting_delay_for_a_patient_client() {
    let o = Transcript::new(&format!(
        "T: 4
         T: 1
         S: 220 mx.example.test ESMTP
         C: EHLO client.example.org
         {EHLO_REPLY}
    "
    ))
    .config(|c| c.greeting_delay = Some(Duration::from_secs(5)))
    .run();
    assert!(o.violations().is_empty());
}

#[test]
fn early_talker_without_delay_before_greeting_is_taken() {
    let o = Transcript::new(
        "C: EHLO spammer.example
         S: 554 5.5.1 Error: protocol error, talking before the greeting
    ",
    )
    .start(Start::HoldGreeting)
    .run();
    assert_eq!(o.close_reason, Some(CloseReason::Violation));
}

#[test]
fn refused_connection_serves_only_quit() {
    let o = Transcript::new(
        "S: 554 5.7.1 mx.example.test Go away
         C: HELO client.example.org
         S: 503 5.5.1 Error: service unavailable, send QUIT
         C: MAIL FROM:<a@example.org>
         S: 503 5.5.1 Error: service unavailable, send QUIT
         C: QUIT
         S: 221 2.0.0 mx.example.test closing connection
    ",
    )
    .start(Start::Refused(reply(554, (5, 7, 1), "mx.example.test Go away")))
    .run();
    assert_eq!(
        o.refusals(),
        [
            ("HELO", "503 5.5.1 Error: service unavailable, send QUIT".to_owned()),
            ("MAIL", "503 5.5.1 Error: service unavailable, send QUIT".to_owned()),
        ]
    );
    assert!(o.events.iter().all(|e| matches!(e, Ev::Closed(_) | Ev::Refused(..))), "{:?}", o.events);
    assert_eq!(o.close_reason, Some(CloseReason::Quit));
}

#[test]
fn refused_connection_reads_bdat_chunks_as_data() {
    let o = Transcript::new(
        "S: 554 5.7.1 mx.example.test Go away
         C: BDAT 6 LAST
         --
         # The chunk that follows is data, never a command.
         C: QUIT
         S: 503 5.5.1 Error: service unavailable, send QUIT
         C: QUIT
         S: 221 2.0.0 mx.example.test closing connection
    ",
    )
    .start(Start::Refused(reply(554, (5, 7, 1), "mx.example.test Go away")))
    .run();
    assert_eq!(o.close_reason, Some(CloseReason::Quit));
}

#[test]
fn refused_connection_positive_reply_becomes_554() {
    Transcript::new("S: 554 mx.example.test Service unavailable")
        .start(Start::Refused(reply(250, (2, 0, 0), "welcome")))
        .run();
}

// ----- Received header ---------------------------------------------------------------

#[test]
fn received_header_esmtp_one_recipient() {
    let o = run(&format!("{}C: .\nS: 250 2.0.0 Ok: queued as 1\n", to_data()));
    assert_eq!(
        o.messages[0].received,
        "Received: from client.example.org ([192.0.2.1])\r\n\tby mx.example.test with ESMTP id Q1\r\n\tfor \
         <bob@example.test>;\r\n\tTue, 14 Nov 2023 22:13:20 +0000\r\n"
    );
}

#[test]
fn received_header_smtp_two_recipients() {
    let o = run("S: 220 mx.example.test ESMTP
         C: HELO client.example.org
         S: 250 mx.example.test
         C: MAIL FROM:<alice@example.org>
         S: 250 2.1.0 Sender ok
         C: RCPT TO:<bob@example.test>
         S: 250 2.1.5 Recipient ok
         C: RCPT TO:<carol@example.test>
         S: 250 2.1.5 Recipient ok
         C: DATA
         S: 354 2.0.0 End data with <CR><LF>.<CR><LF>
         C: .
         S: 250 2.0.0 Ok: queued as 1
    ");
    assert_eq!(
        o.messages[0].received,
        "Received: from client.example.org ([192.0.2.1])\r\n\tby mx.example.test with SMTP id Q1;\r\n\tTue, \
         14 Nov 2023 22:13:20 +0000\r\n"
    );
}

#[test]
fn received_header_esmtpsa() {
    let o = Transcript::new(&format!(
        "{GREETING}
        C: EHLO client.example.org
        {}
        C: AUTH PLAIN {}
        S: 235 2.7.0 Authentication successful
        C: MAIL FROM:<alice@example.org>
        C: RCPT TO:<bob@example.test>
        C: DATA
        S: 250 2.1.0 Sender ok
        S: 250 2.1.5 Recipient ok
        S: 354 2.0.0 End data with <CR><LF>.<CR><LF>
        C: .
        S: 250 2.0.0 Ok: queued as 1
        ",
        EHLO_REPLY.replace("S: 250 DSN", "S: 250-DSN\nS: 250-AUTH PLAIN\nS: 250 REQUIRETLS"),
        b64(b"\0alice\0secret"),
    ))
    .config(|c| c.auth_mechanisms = vec!["PLAIN".into()])
    .start(Start::ImplicitTls)
    .run();
    assert_eq!(
        o.messages[0].received,
        "Received: from client.example.org ([192.0.2.1])\r\n\tby mx.example.test with ESMTPSA (TLSv1.3 \
         TLS13_AES_256_GCM_SHA384) id Q1\r\n\tfor <bob@example.test>;\r\n\tTue, 14 Nov 2023 22:13:20 +0000\r\n"
    );
}

#[test]
fn received_header_sanitises_helo_and_ipv6() {
    let mut d = Driver::default_session();
    d.exchange(b"EHLO [IPv6:2001:db8::1]\r\n");
    let h = d.session.received_header("2001:db8::1".parse().unwrap(), "id\r\nX-Evil: 1", date());
    assert_eq!(
        h,
        "Received: from [IPv6:2001:db8::1] ([IPv6:2001:db8::1])\r\n\tby mx.example.test with ESMTP id id  \
         X-Evil: 1;\r\n\tTue, 14 Nov 2023 22:13:20 +0000\r\n"
    );
    assert_eq!(h.matches("\r\n").count(), 3, "no injected header line");
}

// ----- API misuse --------------------------------------------------------------------

#[test]
fn decision_api_errors() {
    use postern::smtp::Error;
    let mut d = Driver::default_session();
    assert_eq!(d.session.accept(), Err(Error::NoPendingDecision));
    d.session.receive(b"EHLO client.example.org\r\n", d.now);
    assert!(matches!(d.session.poll_event(), Some(postern::smtp::Event::Helo(_))));
    assert!(!d.session.wants_read());
    assert!(d.session.is_decision_pending());
    assert_eq!(d.session.auth_challenge(b""), Err(Error::WrongDecision));
    assert_eq!(d.session.reject(reply(250, (2, 0, 0), "no")), Err(Error::InvalidReply));
    assert_eq!(d.session.accept_with(reply(354, (2, 0, 0), "no")), Err(Error::InvalidReply));
    assert!(d.session.is_decision_pending(), "a refused decision keeps the event pending");
    d.session.accept().unwrap();
    assert!(d.session.wants_read());
    assert_eq!(d.session.tls_established(tls_info(), d.now), Err(Error::UnexpectedTls));
    d.session.receive(b"QUIT\r\n", d.now);
    assert!(d.session.is_closed());
    assert_eq!(d.session.accept(), Err(Error::Closed));
    assert_eq!(d.session.tls_established(tls_info(), d.now), Err(Error::Closed));
    assert_eq!(d.session.poll_timeout(), None);
}

#[test]
fn reject_with_421_closes() {
    let o = Transcript::new(&format!(
        "{}
        C: MAIL FROM:<alice@example.org>
        S: 421 4.3.2 Shutting down
        ",
        ehlo()
    ))
    .policy(|p| p.reject_mail = Some(reply(421, (4, 3, 2), "Shutting down")))
    .run();
    assert_eq!(o.close_reason, Some(CloseReason::Rejected));
}
