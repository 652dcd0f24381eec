//! Real SMTP clients (swaks, curl, Python's smtplib) and a hand-driven socket against the
//! `mail-gateway` example on loopback.
//!
//! Each test starts its own gateway (free port, own Maildir under the temp directory),
//! sends mail, and checks what landed on disk: exactly one file per mailbox, whose
//! content after the `Received:` header is byte for byte the message the client meant
//! to send (after SMTP dot-unstuffing, i.e. the original message).
//!
//! A test whose client program is missing is skipped with a notice, except in CI
//! (`CI=true`), where it fails. Every child process and socket is time-limited.
//!
//! Run: `cargo test --all-features --test real_clients` (the harness builds the example).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// The tests own the clock for their time limits; the library bans reading it.
#![allow(clippy::disallowed_methods)]

#[path = "common/gw_harness.rs"]
mod gw_harness;

use std::fs;
use std::process::Command;
use std::time::Duration;

use gw_harness::{CLIENT_TIMEOUT, Delivered, Gateway, Output, require_tool, run};

/// The test message: MIME headers, 8-bit UTF-8 text, lines that start with a dot
/// (including a line that is only a dot, which would end DATA if the client did not
/// stuff it), and about 30 KB of body so it spans several socket reads and
/// `MessageData` events. Every line ends in CRLF, the message included.
fn message(client: &str) -> Vec<u8> {
    let mut m = format!(
        "From: Bob <bob@sender.test>\r\n\
         To: Alice <alice@example.test>\r\n\
         Subject: postern real-client test via {client}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         Grüße aus Köln, ¡hola!, 日本語のテキスト, emoji 📬.\r\n\
         .a line starting with a dot\r\n\
         ..two dots\r\n\
         .\r\n\
         . a dot and a space\r\n"
    );
    for i in 0..300 {
        m.push_str(&format!(
            "line {i:04}: the quick brown fox jumps over the lazy dog, ünïcödé {}\r\n",
            "x".repeat(i % 60)
        ));
    }
    m.push_str(".\r\nlast line\r\n");
    m.into_bytes()
}

/// Asserts two byte strings are equal, reporting the first difference (not 30 KB).
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
    let around =
        |b: &[u8]| String::from_utf8_lossy(&b[at.saturating_sub(40)..(at + 40).min(b.len())]).into_owned();
    panic!(
        "{what}: content differs at byte {at} (got {} bytes, want {}):\n got: {:?}\nwant: {:?}",
        got.len(),
        want.len(),
        around(got),
        around(want)
    );
}

/// SMTP transparency (RFC 5321 §4.5.2): a dot at the start of a line is doubled.
fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut line_start = true;
    for &b in message {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    out
}

/// The queue id from a `250 2.0.0 Ok: queued as <id>` reply somewhere in `text`.
fn queue_id(text: &str) -> Option<String> {
    let at = text.find("queued as ")? + "queued as ".len();
    Some(text[at..].split_whitespace().next()?.to_owned())
}

/// Checks one delivered file: the gateway's `Received:` header, then `want` exactly.
fn check_delivered(d: &Delivered, want: &[u8], id: Option<&str>) {
    let (received, rest) = d.split_received();
    assert!(received.starts_with("Received: from "), "{received}");
    assert!(received.contains("([127.0.0.1])"), "{received}");
    assert!(received.contains("by mx.example.test with "), "{received}");
    if let Some(id) = id {
        assert!(received.contains(&format!(" id {id}")), "queue id {id} not in {received}");
        let file = d.path.file_name().unwrap().to_string_lossy();
        let (secs, pid_n) =
            (id.split('-').next().unwrap(), id.split('-').skip(1).collect::<Vec<_>>().join("_"));
        assert!(file.starts_with(&format!("{secs}.{pid_n}.")), "file {file} does not match id {id}");
    }
    assert_same(rest, want, &d.path.display().to_string());
}

/// Exactly one message landed, in `mailbox`, and it is `want`.
fn check_single_delivery(gw: &Gateway, mailbox: &str, want: &[u8], id: Option<&str>) {
    let delivered = gw.delivered();
    let where_: Vec<_> = delivered.iter().map(|d| d.path.display().to_string()).collect();
    assert_eq!(delivered.len(), 1, "expected one message, found {where_:?}");
    assert_eq!(delivered[0].mailbox, mailbox);
    check_delivered(&delivered[0], want, id);
    assert!(gw.tmp_files().is_empty(), "files left in tmp/: {:?}", gw.tmp_files());
}

fn swaks(gw: &Gateway, args: &[&str]) -> Output {
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", "127.0.0.1", "--port", &gw.port().to_string(), "--timeout", "20"]);
    cmd.args(["--from", "bob@sender.test", "--helo", "client.sender.test"]);
    cmd.args(args);
    run(cmd, None, CLIENT_TIMEOUT)
}

/// swaks sends its data followed by `CRLF . CRLF`, so a data file ending in CRLF would
/// gain an empty line: give it the message without its last CRLF.
fn swaks_data_file(gw: &Gateway, message: &[u8]) -> String {
    let path = gw.dir.join("swaks-data.eml");
    fs::write(&path, message.strip_suffix(b"\r\n").unwrap()).unwrap();
    path.display().to_string()
}

fn python(gw: &Gateway, script: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script, &gw.port().to_string()]).args(args);
    run(cmd, Some(stdin), CLIENT_TIMEOUT)
}

#[test]
fn swaks_delivers_byte_exact() {
    if !require_tool("swaks") {
        return;
    }
    let gw = Gateway::start("swaks", &[]);
    let msg = message("swaks");
    let data = swaks_data_file(&gw, &msg);
    let out = swaks(&gw, &["--to", "alice@example.test", "--data", &data]);
    assert!(out.status.success(), "swaks failed:\n{}", out.text());
    let id = queue_id(&out.text()).expect("no queue id in swaks output");
    check_single_delivery(&gw, "alice", &msg, Some(&id));
}

#[test]
fn swaks_pipelines_several_recipients() {
    if !require_tool("swaks") {
        return;
    }
    let gw = Gateway::start("swaks-pipe", &["--domain", "example.test", "--domain", "other.test"]);
    let msg = message("swaks --pipeline");
    let data = swaks_data_file(&gw, &msg);
    let to = "alice@example.test,Carol@OTHER.test,ALICE@Example.Test,postmaster";
    let out = swaks(&gw, &["--pipeline", "--to", to, "--data", &data]);
    assert!(out.status.success(), "swaks failed:\n{}", out.text());
    assert!(out.text().contains("PIPELINING"), "{}", out.text());
    let id = queue_id(&out.text()).expect("no queue id in swaks output");
    // alice twice (case differs) is one mailbox: one copy each for alice, carol, postmaster.
    let delivered = gw.delivered();
    let boxes: Vec<_> = delivered.iter().map(|d| d.mailbox.as_str()).collect();
    assert_eq!(boxes, ["alice", "carol", "postmaster"]);
    for d in &delivered {
        check_delivered(d, &msg, Some(&id));
    }
}

#[test]
fn curl_uploads_byte_exact() {
    if !require_tool("curl") {
        return;
    }
    let gw = Gateway::start("curl", &[]);
    let msg = message("curl");
    let file = gw.dir.join("curl-upload.eml");
    fs::write(&file, &msg).unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--verbose", "--max-time", "20"])
        .arg(format!("smtp://127.0.0.1:{}/client.sender.test", gw.port()))
        .args(["--mail-from", "bob@sender.test", "--mail-rcpt", "alice@example.test", "-T"])
        .arg(&file);
    let out = run(cmd, None, CLIENT_TIMEOUT);
    assert!(out.status.success(), "curl failed:\n{}", out.text());
    let id = queue_id(&out.text()).expect("no queue id in curl's verbose output");
    check_single_delivery(&gw, "alice", &msg, Some(&id));
}

/// Python's smtplib, the usual way: `sendmail` (which declares SIZE) with 8-bit data.
const SMTPLIB_SENDMAIL: &str = r#"
import smtplib, sys
port, rcpts = int(sys.argv[1]), sys.argv[2].split(',')
msg = sys.stdin.buffer.read()
s = smtplib.SMTP('127.0.0.1', port, local_hostname='client.sender.test', timeout=15)
try:
    s.ehlo()
    print('features', ' '.join(sorted(s.esmtp_features)))
    s.sendmail('bob@sender.test', rcpts, msg, mail_options=['BODY=8BITMIME'])
    print('sent')
except smtplib.SMTPSenderRefused as e:
    print('sender refused', e.smtp_code, e.smtp_error.decode())
except smtplib.SMTPDataError as e:
    print('data refused', e.smtp_code, e.smtp_error.decode())
finally:
    try:
        s.quit()
    except Exception:
        pass
"#;

#[test]
fn python_smtplib_delivers_byte_exact() {
    if !require_tool("python3") {
        return;
    }
    let gw = Gateway::start("smtplib", &[]);
    let msg = message("smtplib");
    let out = python(&gw, SMTPLIB_SENDMAIL, &["alice@example.test"], &msg);
    assert!(out.status.success() && out.text().contains("\nsent\n"), "smtplib failed:\n{}", out.text());
    for ext in ["8bitmime", "pipelining", "size", "chunking", "enhancedstatuscodes", "smtputf8"] {
        assert!(out.text().contains(ext), "EHLO does not offer {ext}:\n{}", out.text());
    }
    check_single_delivery(&gw, "alice", &msg, None);
}

/// smtplib does not pipeline by itself: send the group by hand (RFC 2920: MAIL, RCPTs,
/// and DATA last) and read the replies with smtplib's reply parser.
const SMTPLIB_PIPELINING: &str = r#"
import re, smtplib, sys
port, rcpts = int(sys.argv[1]), sys.argv[2].split(',')
msg = sys.stdin.buffer.read()
s = smtplib.SMTP('127.0.0.1', port, local_hostname='client.sender.test', timeout=15)
s.ehlo()
assert s.has_extn('pipelining'), s.esmtp_features
group = b'MAIL FROM:<bob@sender.test> BODY=8BITMIME\r\n'
group += b''.join(b'RCPT TO:<' + r.encode() + b'>\r\n' for r in rcpts)
group += b'DATA\r\n'
s.send(group)
for _ in range(len(rcpts) + 2):
    code, text = s.getreply()
    print(code, text.decode())
s.send(re.sub(rb'(?m)^\.', b'..', msg) + b'.\r\n')
code, text = s.getreply()
print(code, text.decode())
s.quit()
"#;

#[test]
fn python_pipelining_with_several_recipients() {
    if !require_tool("python3") {
        return;
    }
    let gw = Gateway::start("smtplib-pipe", &[]);
    let msg = message("smtplib pipelining");
    let rcpts = "alice@example.test,Bob@Example.TEST,mallory@elsewhere.test,Postmaster";
    let out = python(&gw, SMTPLIB_PIPELINING, &[rcpts], &msg);
    assert!(out.status.success(), "smtplib failed:\n{}", out.text());
    let text = out.text();
    let codes: Vec<&str> = text.lines().map(|l| &l[..3]).collect();
    assert_eq!(codes, ["250", "250", "250", "554", "250", "354", "250"], "{}", out.text());
    assert!(out.text().contains("554 5.7.1"), "{}", out.text());
    let id = queue_id(&out.text()).expect("no queue id");
    let delivered = gw.delivered();
    let boxes: Vec<_> = delivered.iter().map(|d| d.mailbox.as_str()).collect();
    assert_eq!(boxes, ["alice", "bob", "postmaster"]);
    for d in &delivered {
        check_delivered(d, &msg, Some(&id));
    }
}

/// BDAT (RFC 3030) driven through smtplib's connection: the message is cut at the
/// offsets given, each chunk sent as `BDAT n` right after its command line (no
/// dot-stuffing: BDAT counts octets), the final one as `BDAT n LAST`.
const SMTPLIB_BDAT: &str = r#"
import smtplib, sys
port, cuts = int(sys.argv[1]), [int(c) for c in sys.argv[2:]]
msg = sys.stdin.buffer.read()
bounds = [0] + cuts + [len(msg)]
chunks = [msg[a:b] for a, b in zip(bounds, bounds[1:])]
s = smtplib.SMTP('127.0.0.1', port, local_hostname='client.sender.test', timeout=15)
s.ehlo()
assert s.has_extn('chunking'), s.esmtp_features
print(*s.mail('bob@sender.test'))
print(*s.rcpt('alice@example.test'))
for i, chunk in enumerate(chunks):
    last = b' LAST' if i == len(chunks) - 1 else b''
    s.send(b'BDAT %d%s\r\n' % (len(chunk), last) + chunk)
    code, text = s.getreply()
    print(code, text.decode())
s.quit()
"#;

#[test]
fn python_bdat_chunks() {
    if !require_tool("python3") {
        return;
    }
    let gw = Gateway::start("bdat", &[]);
    let mut msg = message("BDAT");
    // In BDAT a line that is only a dot is plain data, and dots are never stuffed.
    msg.extend_from_slice(b"\r\n.\r\n..\r\nthe end\r\n");
    // Cut between CR and LF, just after a CRLF, an empty chunk, and a big last chunk.
    let crlf = msg.windows(2).position(|w| w == b"\r\n").unwrap();
    let cuts = [crlf + 1, crlf + 2, crlf + 2, 5000, 5001];
    let args: Vec<String> = cuts.iter().map(ToString::to_string).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = python(&gw, SMTPLIB_BDAT, &args, &msg);
    assert!(out.status.success(), "smtplib BDAT failed:\n{}", out.text());
    let text = out.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2 + cuts.len() + 1, "{}", out.text());
    assert!(lines.iter().all(|l| l.starts_with("250 ")), "{}", out.text());
    assert!(lines[4].contains(" 0 octets received"), "empty chunk: {}", out.text());
    let id = queue_id(lines.last().unwrap()).expect("no queue id after BDAT LAST");
    check_single_delivery(&gw, "alice", &msg, Some(&id));
}

#[test]
fn relay_is_refused() {
    if !require_tool("swaks") {
        return;
    }
    let gw = Gateway::start("relay", &[]);
    let out = swaks(&gw, &["--to", "someone@elsewhere.test"]);
    assert!(!out.status.success(), "swaks should fail:\n{}", out.text());
    assert!(out.text().contains("554 5.7.1"), "no 554 5.7.1 in:\n{}", out.text());
    assert!(out.text().contains("Relay access denied"), "{}", out.text());
    assert!(gw.delivered().is_empty());
}

/// The recipient policy and mailbox-name sanitising, by hand.
#[test]
fn recipient_policy() {
    let gw = Gateway::start("policy", &[]);
    let mut c = gw.connect();
    assert!(c.cmd("EHLO client.sender.test").starts_with("250-"));
    assert!(c.cmd("MAIL FROM:<bob@sender.test>").starts_with("250 "));
    let cases = [
        ("<someone@elsewhere.test>", "554 5.7.1"),
        ("<postmaster@elsewhere.test>", "554 5.7.1"),
        ("<alice@example.test.evil>", "554 5.7.1"),
        ("<alice@[127.0.0.1]>", "554 5.7.1"),
        ("<\"../../etc\"@example.test>", "550 5.1.1"),
        ("<\".hidden\"@example.test>", "550 5.1.1"),
        ("<\"a/b\"@example.test>", "550 5.1.1"),
        ("<\"a\\\\b\"@example.test>", "550 5.1.1"),
        ("<Postmaster>", "250 "),
        ("<POSTMASTER@Example.TEST>", "250 "),
        ("<Alice@EXAMPLE.test>", "250 "),
        ("<\"alice\"@example.test>", "250 "),
    ];
    for (rcpt, want) in cases {
        let reply = c.cmd(&format!("RCPT TO:{rcpt}"));
        assert!(reply.starts_with(want), "RCPT TO:{rcpt}: got {reply:?}, want {want}");
    }
    assert!(c.cmd("DATA").starts_with("354 "));
    c.send(b"Subject: policy\r\n\r\nhello\r\n.\r\n");
    assert!(c.reply().starts_with("250 2.0.0 Ok: queued as "));
    assert!(c.cmd("QUIT").starts_with("221 "));
    let delivered = gw.delivered();
    let boxes: Vec<_> = delivered.iter().map(|d| d.mailbox.as_str()).collect();
    assert_eq!(boxes, ["alice", "postmaster"]);
    for d in &delivered {
        check_delivered(d, b"Subject: policy\r\n\r\nhello\r\n", None);
    }
    // Nothing outside the Maildir root, and no other directory was made.
    assert!(!gw.dir.join("etc").exists());
    let dirs: Vec<_> = fs::read_dir(&gw.maildir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(dirs.len(), 2, "{dirs:?}");
}

#[test]
fn oversized_message_is_refused() {
    let have_swaks = require_tool("swaks");
    let have_python = require_tool("python3");
    let gw = Gateway::start("size", &["--max-message-size", "10000"]);
    let msg = message("too big");
    assert!(msg.len() > 20_000);
    if have_swaks {
        // swaks does not declare SIZE: refused at the end of DATA.
        let data = swaks_data_file(&gw, &msg);
        let out = swaks(&gw, &["--to", "alice@example.test", "--data", &data]);
        assert!(!out.status.success(), "swaks should fail:\n{}", out.text());
        assert!(out.text().contains("552 5.3.4"), "no 552 5.3.4 in:\n{}", out.text());
        assert!(out.text().contains("SIZE 10000"), "EHLO should advertise the limit:\n{}", out.text());
    }
    if have_python {
        // smtplib declares SIZE= at MAIL: refused there.
        let out = python(&gw, SMTPLIB_SENDMAIL, &["alice@example.test"], &msg);
        assert!(out.text().contains("sender refused 552 5.3.4"), "{}", out.text());
    }
    // By hand, without SIZE, with the data over the limit: refused after the end.
    let mut c = gw.connect();
    c.cmd("EHLO client.sender.test");
    assert!(c.cmd("MAIL FROM:<bob@sender.test>").starts_with("250 "));
    assert!(c.cmd("RCPT TO:<alice@example.test>").starts_with("250 "));
    assert!(c.cmd("DATA").starts_with("354 "));
    c.send(&dot_stuff(&msg));
    c.send(b".\r\n");
    assert!(c.reply().starts_with("552 5.3.4"));
    // The session goes on: a small message still passes.
    assert!(c.cmd("MAIL FROM:<bob@sender.test>").starts_with("250 "));
    assert!(c.cmd("RCPT TO:<alice@example.test>").starts_with("250 "));
    assert!(c.cmd("DATA").starts_with("354 "));
    c.send(b"Subject: small\r\n\r\nfits\r\n.\r\n");
    assert!(c.reply().starts_with("250 "));
    assert!(c.cmd("QUIT").starts_with("221 "));
    check_single_delivery(&gw, "alice", b"Subject: small\r\n\r\nfits\r\n", None);
}

/// SMTP smuggling: a fake end of data made of bare line endings, followed by the
/// commands of a second message, then the real end. The gateway must see one message
/// (or refuse it), never two, and never the smuggled envelope.
#[test]
fn smtp_smuggling_is_not_possible() {
    let gw = Gateway::start("smuggling", &[]);
    let fake_ends: [&[u8]; 7] =
        [b"\n.\n", b"\r\n.\r", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n", b"\r\n.\r\r\n", b"\r\n\x00.\r\n"];
    for fake in fake_ends {
        let before = gw.delivered().len();
        let mut c = gw.connect();
        assert!(c.cmd("EHLO attacker.sender.test").starts_with("250"));
        assert!(c.cmd("MAIL FROM:<attacker@sender.test>").starts_with("250 "));
        assert!(c.cmd("RCPT TO:<alice@example.test>").starts_with("250 "));
        assert!(c.cmd("DATA").starts_with("354 "));
        let mut data = b"Subject: first\r\n\r\nfirst message".to_vec();
        data.extend_from_slice(fake);
        data.extend_from_slice(
            b"MAIL FROM:<smuggled@evil.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n\
              Subject: smuggled\r\n\r\nsmuggled message\r\n.\r\n",
        );
        c.send(&data);
        let verdict = c.reply();
        eprintln!("fake end {fake:?}: {}", verdict.trim_end());
        assert!(
            verdict.starts_with("250 ") || verdict.starts_with("550 "),
            "fake end {fake:?}: one reply for the one message, got {verdict:?}"
        );
        // If the fake end had ended the message, the smuggled MAIL/RCPT/DATA would have
        // been answered too, before the reply to QUIT.
        c.send(b"QUIT\r\n");
        let rest = c.read_to_end();
        assert!(rest.starts_with("221 ") && rest.lines().count() == 1, "fake end {fake:?}: {rest:?}");
        let delivered = gw.delivered();
        assert!(delivered.len() <= before + 1, "fake end {fake:?}: two messages landed");
        for d in &delivered {
            assert_eq!(d.mailbox, "alice", "fake end {fake:?}: a message for {}", d.mailbox);
            let (received, _) = d.split_received();
            assert!(!received.contains("victim"), "{received}");
        }
    }
    assert!(!gw.maildir.join("victim").exists());
    assert!(gw.tmp_files().is_empty(), "files left in tmp/: {:?}", gw.tmp_files());
}

/// A local I/O failure is a temporary error (`451 4.3.0`): the client keeps the message
/// and retries. Provoked by putting files where the Maildir's directories should be.
#[test]
fn delivery_failure_is_temporary() {
    let gw = Gateway::start("io-error", &[]);
    let mut c = gw.connect();
    c.cmd("EHLO client.sender.test");

    // The mailbox directory cannot be created: refused at DATA.
    fs::write(gw.maildir.join("carol"), b"not a directory").unwrap();
    assert!(c.cmd("MAIL FROM:<bob@sender.test>").starts_with("250 "));
    assert!(c.cmd("RCPT TO:<carol@example.test>").starts_with("250 "));
    let reply = c.cmd("DATA");
    assert!(reply.starts_with("451 4.3.0"), "{reply:?}");
    assert!(c.cmd("RSET").starts_with("250 "));

    // The message cannot be moved into new/: refused at the end, nothing left behind.
    assert!(c.cmd("MAIL FROM:<bob@sender.test>").starts_with("250 "));
    assert!(c.cmd("RCPT TO:<alice@example.test>").starts_with("250 "));
    assert!(c.cmd("RCPT TO:<dave@example.test>").starts_with("250 "));
    assert!(c.cmd("DATA").starts_with("354 "));
    let new = gw.maildir.join("dave").join("new");
    fs::remove_dir(&new).unwrap();
    fs::write(&new, b"not a directory").unwrap();
    c.send(b"Subject: lost\r\n\r\nnot delivered\r\n.\r\n");
    let reply = c.reply();
    assert!(reply.starts_with("451 4.3.0"), "{reply:?}");
    // All or nothing: alice's copy was not kept either, so a retry does not duplicate it.
    assert!(gw.delivered().is_empty(), "{:?}", gw.delivered());
    assert!(gw.tmp_files().is_empty(), "files left in tmp/: {:?}", gw.tmp_files());
    assert!(c.cmd("QUIT").starts_with("221 "));
}

/// Ctrl-C (SIGINT): an idle session is closed at once with `421 4.3.2`, a message in
/// progress may finish within the grace period, and the process exits with status 0.
#[cfg(unix)]
#[test]
fn ctrl_c_shuts_down_cleanly() {
    let mut gw = Gateway::start("shutdown", &["--grace", "10"]);
    let mut busy = gw.connect();
    busy.cmd("EHLO client.sender.test");
    assert!(busy.cmd("MAIL FROM:<bob@sender.test>").starts_with("250 "));
    assert!(busy.cmd("RCPT TO:<alice@example.test>").starts_with("250 "));
    assert!(busy.cmd("DATA").starts_with("354 "));
    busy.send(b"Subject: in flight\r\n\r\nstarted before Ctrl-C\r\n");
    let mut idle = gw.connect();
    assert!(idle.cmd("EHLO idle.sender.test").starts_with("250"));

    let kill = run(
        {
            let mut k = Command::new("kill");
            k.args(["-INT", &gw.pid().to_string()]);
            k
        },
        None,
        CLIENT_TIMEOUT,
    );
    assert!(kill.status.success(), "kill -INT failed: {}", kill.text());

    // The idle session is told at once (within the gateway's 1 s tick).
    let bye = idle.reply();
    assert!(bye.starts_with("421 4.3.2"), "idle session: {bye:?}");
    // New connections are refused once the listener is closed.
    std::thread::sleep(Duration::from_millis(300));
    assert!(std::net::TcpStream::connect_timeout(&gw.addr, Duration::from_secs(2)).is_err());
    // The busy session finishes its message, then is closed.
    busy.send(b"finished after Ctrl-C\r\n.\r\n");
    assert!(busy.reply().starts_with("250 2.0.0 Ok: queued as "));
    assert!(busy.reply().starts_with("421 4.3.2"));

    let status = gw.wait_exit(Duration::from_secs(15)).expect("the gateway did not exit after Ctrl-C");
    assert!(status.success(), "exit status {status:?}\n{}", gw.log());
    assert!(gw.log().contains("shut down cleanly"), "{}", gw.log());
    check_single_delivery(
        &gw,
        "alice",
        b"Subject: in flight\r\n\r\nstarted before Ctrl-C\r\nfinished after Ctrl-C\r\n",
        None,
    );
}

#[test]
fn command_line_help_and_errors() {
    let binary = gw_harness::gateway_binary();
    let help = run(
        {
            let mut c = Command::new(binary);
            c.arg("--help");
            c
        },
        None,
        CLIENT_TIMEOUT,
    );
    assert!(help.status.success());
    for option in ["--smtp", "--maildir", "--domain", "--hostname", "--max-message-size"] {
        assert!(help.text().contains(option), "--help does not mention {option}");
    }
    let bad = run(
        {
            let mut c = Command::new(binary);
            c.args(["--max-message-size", "lots"]);
            c
        },
        None,
        CLIENT_TIMEOUT,
    );
    assert_eq!(bad.status.code(), Some(2), "{}", bad.text());
    assert!(bad.text().contains("--max-message-size lots"), "{}", bad.text());
}
