//! Real POP3 clients (curl, Python's poplib, mpop) and a hand-driven socket against the
//! `mail-gateway` example on loopback: mail delivered over SMTP (swaks, or a raw SMTP
//! socket where the sending client does not matter) is read back over POP3 from the
//! same Maildir, byte for byte.
//!
//! Each test starts its own gateway (free SMTP and POP3 ports, own Maildir under the
//! temp directory). A test whose client program is missing is skipped with a notice,
//! except in CI (`CI=true`), where it fails. Every child process and socket is
//! time-limited.
//!
//! Run: `cargo test --all-features --test real_clients_pop3` (the harness builds the
//! example).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// The tests own the clock for their time limits; the library bans reading it.
#![allow(clippy::disallowed_methods)]

// The SMTP tests use the parts of the harness these tests do not.
#[allow(dead_code)]
#[path = "common/gw_harness.rs"]
mod gw_harness;

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gw_harness::{CLIENT_TIMEOUT, Gateway, Output, SOCKET_TIMEOUT, require_tool, run};

/// The demo accounts: carol's password holds a colon (`--user` splits at the first).
const ACCOUNTS: &[&str] = &["--user", "alice:secret", "--user", "carol:c0rrect:horse"];
/// The switch without which every plaintext login is refused.
const PLAINTEXT: &str = "--allow-plaintext-auth";
/// The one reply to every failed login.
const INVALID: &str = "-ERR [AUTH] invalid credentials\r\n";

fn start(name: &str, extra: &[&str]) -> Gateway {
    let mut args: Vec<&str> = ACCOUNTS.to_vec();
    args.extend_from_slice(extra);
    Gateway::start(name, &args)
}

/// A test message like the SMTP tests' one: UTF-8, lines starting with dots (a line
/// that is only a dot included), CRLF everywhere, and `lines` numbered body lines.
fn message(subject: &str, lines: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Bob <bob@sender.test>\r\n\
         To: Alice <alice@example.test>\r\n\
         Subject: {subject}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Grüße aus Köln, 日本語のテキスト, emoji 📬.\r\n\
         .a line starting with a dot\r\n\
         ..two dots\r\n\
         .\r\n"
    );
    for i in 0..lines {
        m.push_str(&format!(
            "line {i:05}: the quick brown fox jumps over the lazy dog {}\r\n",
            "x".repeat(i % 70)
        ));
    }
    m.push_str(".\r\nlast line\r\n");
    m.into_bytes()
}

/// Asserts two byte strings are equal, reporting the first difference.
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

/// Delivers `msg` to `rcpt` with swaks.
fn deliver_swaks(gw: &Gateway, rcpt: &str, msg: &[u8]) {
    // swaks adds `CRLF . CRLF` after its data: give it the message without its last CRLF.
    let path = gw.dir.join("swaks-data.eml");
    fs::write(&path, msg.strip_suffix(b"\r\n").unwrap()).unwrap();
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", "127.0.0.1", "--port", &gw.port().to_string(), "--timeout", "20"])
        .args(["--from", "bob@sender.test", "--helo", "client.sender.test", "--to", rcpt, "--data"])
        .arg(&path);
    let out = run(cmd, None, CLIENT_TIMEOUT);
    assert!(out.status.success(), "swaks failed:\n{}", out.text());
}

/// Delivers `msg` to `rcpt` over a raw SMTP connection (where the sender does not matter).
fn deliver_raw(gw: &Gateway, rcpt: &str, msg: &[u8]) {
    let mut c = gw.connect();
    assert!(c.cmd("EHLO client.sender.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<bob@sender.test>").starts_with("250 "));
    assert!(c.cmd(&format!("RCPT TO:<{rcpt}>")).starts_with("250 "));
    assert!(c.cmd("DATA").starts_with("354 "));
    let mut stuffed = Vec::with_capacity(msg.len() + 64);
    let mut line_start = true;
    for &b in msg {
        if line_start && b == b'.' {
            stuffed.push(b'.');
        }
        stuffed.push(b);
        line_start = b == b'\n';
    }
    c.send(&stuffed);
    c.send(b".\r\n");
    assert!(c.reply().starts_with("250 "));
    assert!(c.cmd("QUIT").starts_with("221 "));
}

/// A message file in a user's Maildir.
#[derive(Debug, Clone)]
struct Stored {
    /// `new` or `cur`.
    sub: &'static str,
    name: String,
    content: Vec<u8>,
}

impl Stored {
    /// The Maildir unique name: the file name before the `:2,` info.
    fn unique(&self) -> &str {
        self.name.split_once(':').map_or(&self.name, |(u, _)| u)
    }
}

/// The messages in `<maildir>/<user>/{new,cur}`, sorted by file name (dot files and
/// directories left out), as the gateway lists them.
fn stored(gw: &Gateway, user: &str) -> Vec<Stored> {
    let mut found = Vec::new();
    for sub in ["new", "cur"] {
        for entry in fs::read_dir(gw.maildir.join(user).join(sub)).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.file_type().unwrap().is_file() {
                continue;
            }
            found.push(Stored { sub, content: fs::read(entry.path()).unwrap(), name });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// Waits until the gateway log holds `needle` at least `count` times.
fn wait_for_log(gw: &Gateway, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.log().matches(needle).count() < count {
        assert!(Instant::now() < deadline, "{needle:?} not logged {count} times:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the connection of the last successful login has ended (its maildrop
/// lock is free then) and returns that connection's log lines.
fn wait_for_last_login_to_end(gw: &Gateway) -> String {
    let log = gw.log();
    let login = log.lines().rev().find(|l| l.contains(" login: ")).expect("no login in the log");
    let conn = login.split(' ').find(|w| w.starts_with("conn=")).unwrap().to_owned();
    wait_for_log(gw, &format!("{conn} pop3 disconnect"), 1);
    let tag = format!("{conn} ");
    gw.log().lines().filter(|l| l.contains(&tag)).collect::<Vec<_>>().join("\n")
}

/// No password ever reaches the log.
fn assert_no_passwords_logged(gw: &Gateway) {
    let log = gw.log();
    for password in ["secret", "c0rrect", "wrong-password"] {
        assert!(!log.contains(password), "the log holds a password ({password}):\n{log}");
    }
}

/// RFC 4648 base64, for SASL responses.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A hand-driven POP3 client for exact replies and for what real clients will not do.
#[derive(Debug)]
struct Pop3 {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
    greeting: String,
}

impl Pop3 {
    fn connect(addr: SocketAddr) -> Pop3 {
        let stream = TcpStream::connect_timeout(&addr, SOCKET_TIMEOUT).expect("connect to the gateway");
        stream.set_read_timeout(Some(SOCKET_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(SOCKET_TIMEOUT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut client = Pop3 { reader, stream, greeting: String::new() };
        client.greeting = client.line();
        assert!(client.greeting.starts_with("+OK "), "greeting: {:?}", client.greeting);
        client
    }

    /// The APOP timestamp of the greeting, angle brackets included.
    fn timestamp(&self) -> &str {
        let start = self.greeting.find('<').expect("no APOP timestamp in the greeting");
        let end = self.greeting.rfind('>').unwrap();
        &self.greeting[start..=end]
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to the gateway");
    }

    /// One line with its CRLF; empty at end of stream.
    fn line(&mut self) -> String {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(_) => line,
            Err(e) => panic!("reading a POP3 line failed: {e}"),
        }
    }

    /// Sends one command (CRLF added) and reads its one-line reply.
    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.line()
    }

    /// Reads the rest of a multi-line response, up to and including `.CRLF`, as sent
    /// (dot-stuffed).
    fn multi(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = self.reader.read_until(b'\n', &mut line).expect("read a multi-line response");
            assert!(
                n > 0,
                "connection closed inside a multi-line response: {:?}",
                String::from_utf8_lossy(&body)
            );
            body.extend_from_slice(&line);
            if line == b".\r\n" {
                return body;
            }
        }
    }

    /// USER + PASS; returns the reply to PASS.
    fn login(&mut self, user: &str, password: &str) -> String {
        let user_reply = self.cmd(&format!("USER {user}"));
        assert_eq!(user_reply, "+OK\r\n", "USER {user}");
        self.cmd(&format!("PASS {password}"))
    }

    /// `true` if the server closes the connection within `timeout`.
    fn closed_within(&mut self, timeout: Duration) -> bool {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let mut rest = Vec::new();
        let closed = self.reader.read_to_end(&mut rest).is_ok();
        self.stream.set_read_timeout(Some(SOCKET_TIMEOUT)).unwrap();
        closed
    }
}

/// Removes dot-stuffing and the terminating `.CRLF` from a multi-line response body.
fn unstuff(body: &[u8]) -> Vec<u8> {
    let body = body.strip_suffix(b".\r\n").expect("ends with .CRLF");
    let mut out = Vec::with_capacity(body.len());
    let mut line_start = true;
    for (i, &b) in body.iter().enumerate() {
        if !(line_start && b == b'.' && i + 1 < body.len()) {
            out.push(b);
        }
        line_start = b == b'\n';
    }
    out
}

fn curl(args: &[&str]) -> Output {
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--max-time", "20"]).args(args);
    run(cmd, None, CLIENT_TIMEOUT)
}

fn python(gw: &Gateway, script: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script, &gw.pop3_port().to_string()]).args(args);
    run(cmd, None, CLIENT_TIMEOUT)
}

/// `key<TAB>value` lines printed by the Python scripts.
fn fields(out: &Output) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().filter_map(|l| l.split_once('\t')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// swaks delivers, curl reads: LIST, RETR byte-exact (a 300 KB message, several 64 KiB
/// reads), the message is marked seen (new/ -> cur/, `:2,S`), APOP via curl, and
/// DELE via curl (curl sends QUIT) removes the file.
#[test]
fn swaks_then_curl_byte_exact() {
    if !require_tool("swaks") || !require_tool("curl") {
        return;
    }
    let gw = start("curl", &[PLAINTEXT]);
    let msg = message("swaks to curl", 3500);
    assert!(msg.len() > 4 * 64 * 1024);
    deliver_swaks(&gw, "alice@example.test", &msg);
    let before = stored(&gw, "alice");
    assert_eq!(before.len(), 1);
    let file = &before[0];
    assert_eq!(file.sub, "new");
    assert!(file.content.ends_with(&msg) && file.content.starts_with(b"Received: "));
    let port = gw.pop3_port();

    // LIST: one message of the file's size (CRLF already, so the size is the file size).
    let list = curl(&[&format!("pop3://alice:secret@127.0.0.1:{port}/")]);
    assert!(list.status.success(), "curl LIST failed:\n{}", list.text());
    assert_eq!(String::from_utf8_lossy(&list.stdout), format!("1 {}\r\n", file.content.len()));

    // RETR: byte for byte the file.
    let out_path = gw.dir.join("curl-retr.eml");
    let retr =
        curl(&["--output", out_path.to_str().unwrap(), &format!("pop3://alice:secret@127.0.0.1:{port}/1")]);
    assert!(retr.status.success(), "curl RETR failed:\n{}", retr.text());
    assert_same(&fs::read(&out_path).unwrap(), &file.content, "curl RETR");

    // Sent completely: seen, in cur/ with the S flag, same content.
    let after = stored(&gw, "alice");
    assert_eq!(after.len(), 1);
    assert_eq!((after[0].sub, after[0].name.as_str()), ("cur", format!("{}:2,S", file.name).as_str()));
    assert_eq!(after[0].content, file.content);

    // APOP (curl's ;AUTH=+APOP); the seen message is still listed.
    let apop = curl(&[&format!("pop3://alice;AUTH=+APOP:secret@127.0.0.1:{port}/")]);
    assert!(apop.status.success(), "curl APOP failed:\n{}", apop.text());
    assert_eq!(String::from_utf8_lossy(&apop.stdout), format!("1 {}\r\n", file.content.len()));

    // DELE, then curl's QUIT: removed.
    let dele = curl(&["--request", "DELE", "--head", &format!("pop3://alice:secret@127.0.0.1:{port}/1")]);
    assert!(dele.status.success(), "curl DELE failed:\n{}", dele.text());
    assert!(stored(&gw, "alice").is_empty(), "{:?}", stored(&gw, "alice"));

    let log = gw.log();
    assert!(log.contains("login: AUTH PLAIN as \"alice\""), "{log}");
    assert!(log.contains("login: APOP as \"alice\""), "{log}");
    assert!(log.contains("UPDATE: 1 message(s) deleted"), "{log}");
    assert_no_passwords_logged(&gw);
}

/// poplib: CAPA, USER/PASS, STAT, LIST, UIDL, TOP, RETR. Prints `key<TAB>value`
/// lines; writes TOP and RETR (lines joined with CRLF, as poplib un-stuffs and strips
/// them) to `<out>.top` and `<out>.retrN`.
const POPLIB_TOUR: &str = r#"
import poplib, sys
port, out = int(sys.argv[1]), sys.argv[2]
p = poplib.POP3('127.0.0.1', port, timeout=15)
print('capa', ' '.join(sorted(k + (' ' + ' '.join(v) if v else '') for k, v in p.capa().items())), sep='\t')
print('user', p.user('alice').decode(), sep='\t')
print('pass', p.pass_('secret').decode(), sep='\t')
print('stat', *p.stat(), sep='\t')
print('list', ','.join(l.decode() for l in p.list()[1]), sep='\t')
print('uidl', ','.join(l.decode() for l in p.uidl()[1]), sep='\t')
print('uidl2', p.uidl(2).decode(), sep='\t')
resp, lines, octets = p.top(1, 3)
print('top', resp.decode(), sep='\t')
open(out + '.top', 'wb').write(b'\r\n'.join(lines) + b'\r\n')
for i in (1, 2):
    resp, lines, octets = p.retr(i)
    print('retr%d' % i, resp.decode(), octets, sep='\t')
    open(out + '.retr%d' % i, 'wb').write(b'\r\n'.join(lines) + b'\r\n')
print('quit', p.quit().decode(), sep='\t')
"#;

#[test]
fn poplib_user_pass_list_uidl_top_retr() {
    if !require_tool("swaks") || !require_tool("python3") {
        return;
    }
    let gw = start("poplib", &[PLAINTEXT]);
    let (big, small) = (message("poplib 1", 1200), message("poplib 2", 3));
    deliver_swaks(&gw, "alice@example.test", &big);
    deliver_swaks(&gw, "Alice@Example.TEST", &small);
    let files = stored(&gw, "alice");
    assert_eq!(files.len(), 2);
    let (s1, s2) = (files[0].content.len(), files[1].content.len());

    let out_base = gw.dir.join("poplib");
    let out = python(&gw, POPLIB_TOUR, &[out_base.to_str().unwrap()]);
    assert!(out.status.success(), "poplib failed:\n{}", out.text());
    let f = fields(&out);
    let capa = &f["capa"];
    for cap in ["PIPELINING", "RESP-CODES", "SASL PLAIN", "TOP", "UIDL", "USER"] {
        assert!(capa.split(' ').any(|c| c == cap.split(' ').next().unwrap()), "CAPA lacks {cap}: {capa}");
    }
    assert!(capa.contains("SASL PLAIN"), "{capa}");
    // STLS is offered (the gateway has TLS); no software name is disclosed.
    assert!(capa.contains("STLS") && !capa.contains("IMPLEMENTATION"), "{capa}");
    assert_eq!(f["user"], "+OK");
    assert_eq!(f["pass"], "+OK Logged in, 2 messages");
    assert_eq!(f["stat"], format!("2\t{}", s1 + s2));
    assert_eq!(f["list"], format!("1 {s1},2 {s2}"));
    assert_eq!(f["uidl"], format!("1 {},2 {}", files[0].unique(), files[1].unique()));
    assert_eq!(f["uidl2"], format!("+OK 2 {}", files[1].unique()));
    assert_eq!(f["top"], "+OK top of message follows");
    // TOP 1 3: the header, the empty line, three body lines.
    let content = &files[0].content;
    let header_end = content.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut top_end = header_end;
    for _ in 0..3 {
        top_end += content[top_end..].windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    }
    assert_same(&fs::read(out_base.with_extension("top")).unwrap(), &content[..top_end], "TOP 1 3");
    // RETR: byte-exact after poplib's line handling; poplib's octet count is the size.
    assert_eq!(f["retr1"], format!("+OK {s1} octets\t{s1}"));
    assert_eq!(f["retr2"], format!("+OK {s2} octets\t{s2}"));
    assert_same(&fs::read(out_base.with_extension("retr1")).unwrap(), &files[0].content, "RETR 1");
    assert_same(&fs::read(out_base.with_extension("retr2")).unwrap(), &files[1].content, "RETR 2");
    assert_eq!(f["quit"], "+OK Bye, 0 messages deleted");
    // Both retrieved: both seen; nothing deleted.
    let after = stored(&gw, "alice");
    let names: Vec<_> = after.iter().map(|s| (s.sub, s.name.clone())).collect();
    let want: Vec<_> = files.iter().map(|s| ("cur", format!("{}:2,S", s.name))).collect();
    assert_eq!(names, want);
    assert_no_passwords_logged(&gw);
}

/// poplib's `apop`: the right secret logs in; a wrong one and an unknown user get the
/// same reply. carol's password holds a colon.
const POPLIB_APOP: &str = r#"
import poplib, sys
port = int(sys.argv[1])
def attempt(name, user, secret, apop=True):
    p = poplib.POP3('127.0.0.1', port, timeout=15)
    try:
        r = p.apop(user, secret) if apop else (p.user(user), p.pass_(secret))[1]
        print(name, r.decode(), *p.stat(), sep='\t')
        p.quit()
    except poplib.error_proto as e:
        print(name, e.args[0].decode(), sep='\t')
        p.close()
attempt('apop-ok', 'alice', 'secret')
attempt('apop-wrong', 'alice', 'wrong-password')
attempt('apop-unknown', 'nobody', 'secret')
attempt('carol', 'carol', 'c0rrect:horse', apop=False)
attempt('carol-apop', 'carol', 'c0rrect:horse')
"#;

#[test]
fn poplib_apop() {
    if !require_tool("python3") {
        return;
    }
    let gw = start("apop", &[PLAINTEXT]);
    deliver_raw(&gw, "alice@example.test", &message("apop", 10));
    let size = stored(&gw, "alice")[0].content.len();
    let out = python(&gw, POPLIB_APOP, &[]);
    assert!(out.status.success(), "poplib failed:\n{}", out.text());
    let f = fields(&out);
    assert_eq!(f["apop-ok"], format!("+OK Logged in, 1 message\t1\t{size}"));
    assert_eq!(f["apop-wrong"], INVALID.trim_end());
    assert_eq!(f["apop-unknown"], INVALID.trim_end());
    assert_eq!(f["carol"], "+OK Logged in, 0 messages\t0\t0");
    assert_eq!(f["carol-apop"], "+OK Logged in, 0 messages\t0\t0");
    assert_no_passwords_logged(&gw);
}

/// Marks message `DELE` in `argv[2]` (comma-separated), optionally `RSET`, then
/// `QUIT` or drop the connection (`argv[3]`). Prints the replies.
const POPLIB_DELE: &str = r#"
import poplib, sys
port, dele, end = int(sys.argv[1]), sys.argv[2], sys.argv[3]
p = poplib.POP3('127.0.0.1', port, timeout=15)
p.user('alice'); p.pass_('secret')
print('stat-before', *p.stat(), sep='\t')
for n in dele.split(','):
    print('dele', p.dele(int(n)).decode(), sep='\t')
print('stat-marked', *p.stat(), sep='\t')
if end == 'rset':
    print('rset', p.rset().decode(), sep='\t')
    print('stat-rset', *p.stat(), sep='\t')
if end == 'drop':
    p.sock.close()  # no QUIT: the UPDATE state never happens
    print('dropped', 'yes', sep='\t')
else:
    print('quit', p.quit().decode(), sep='\t')
"#;

/// DELE + dropped connection deletes nothing; DELE + RSET + QUIT deletes nothing;
/// DELE + QUIT removes exactly the marked file.
#[test]
fn poplib_dele_rset_quit_and_dropped_connection() {
    if !require_tool("python3") {
        return;
    }
    let gw = start("dele", &[PLAINTEXT]);
    deliver_raw(&gw, "alice@example.test", &message("first", 5));
    deliver_raw(&gw, "alice@example.test", &message("second", 5));
    let files = stored(&gw, "alice");
    assert_eq!(files.len(), 2);
    let names = |gw: &Gateway| stored(gw, "alice").into_iter().map(|s| s.name).collect::<Vec<_>>();
    let all: Vec<String> = files.iter().map(|s| s.name.clone()).collect();

    // DELE, then the connection is dropped: nothing deleted.
    let out = python(&gw, POPLIB_DELE, &["1,2", "drop"]);
    assert!(out.status.success(), "poplib failed:\n{}", out.text());
    assert_eq!(fields(&out)["stat-marked"], "0\t0");
    let ended = wait_for_last_login_to_end(&gw);
    assert!(ended.contains("pop3 session closed: ConnectionLost"), "{ended}");
    assert_eq!(names(&gw), all);

    // DELE, RSET, QUIT: nothing deleted.
    let out = python(&gw, POPLIB_DELE, &["1", "rset"]);
    assert!(out.status.success(), "poplib failed:\n{}", out.text());
    let f = fields(&out);
    assert_eq!(f["rset"], "+OK maildrop has 2 messages");
    assert_eq!(f["stat-rset"], f["stat-before"]);
    assert_eq!(f["quit"], "+OK Bye, 0 messages deleted");
    assert_eq!(names(&gw), all);

    // DELE 1, QUIT: exactly the first message removed.
    let out = python(&gw, POPLIB_DELE, &["1", "quit"]);
    assert!(out.status.success(), "poplib failed:\n{}", out.text());
    assert_eq!(fields(&out)["quit"], "+OK Bye, 1 message deleted");
    assert_eq!(names(&gw), all[1..].to_vec());
    assert_eq!(stored(&gw, "alice")[0].content, files[1].content);
}

/// A conversation on a fresh connection, giving the last reply.
type Dialogue<'a> = &'a dyn Fn(&mut Pop3) -> String;

/// Every way of failing a login gets the same reply, whether the user exists or not;
/// AUTH PLAIN with an authorization identity other than the user is refused the same
/// way even with the right password; three failures close the session.
#[test]
fn unknown_user_and_wrong_password_look_the_same() {
    let gw = start("credentials", &[PLAINTEXT]);
    let addr = gw.pop3_addr;
    let reply = |f: Dialogue<'_>| {
        let mut c = Pop3::connect(addr);
        f(&mut c)
    };
    // USER/PASS.
    for (user, password) in [("alice", "wrong-password"), ("nobody", "secret"), ("nobody", "wrong-password")]
    {
        assert_eq!(reply(&|c| c.login(user, password)), INVALID, "USER {user} / PASS");
    }
    // APOP with a digest that is not the right one, for an existing and a missing user.
    for user in ["alice", "nobody"] {
        assert_eq!(reply(&|c| c.cmd(&format!("APOP {user} {}", "0".repeat(32)))), INVALID, "APOP {user}");
    }
    // AUTH PLAIN with an initial response, and after an empty challenge.
    let plain = |authzid: &str, user: &str, password: &str| {
        base64(format!("{authzid}\0{user}\0{password}").as_bytes())
    };
    for response in [
        plain("", "alice", "wrong-password"),
        plain("", "nobody", "secret"),
        plain("carol", "alice", "secret"),
    ] {
        assert_eq!(reply(&|c| c.cmd(&format!("AUTH PLAIN {response}"))), INVALID, "AUTH PLAIN {response}");
        assert_eq!(
            reply(&|c| {
                assert_eq!(c.cmd("AUTH PLAIN"), "+ \r\n");
                c.cmd(&response)
            }),
            INVALID,
            "AUTH PLAIN, then {response}"
        );
    }
    // The right ones work, both ways.
    assert_eq!(
        reply(&|c| c.cmd(&format!("AUTH PLAIN {}", plain("alice", "alice", "secret")))),
        "+OK Logged in, 0 messages\r\n"
    );
    assert_eq!(
        reply(&|c| {
            assert_eq!(c.cmd("AUTH PLAIN"), "+ \r\n");
            c.cmd(&plain("", "carol", "c0rrect:horse"))
        }),
        "+OK Logged in, 0 messages\r\n"
    );
    // The APOP timestamp names the server and differs on every connection.
    let (one, two) = (Pop3::connect(addr), Pop3::connect(addr));
    assert!(one.timestamp().ends_with("@mx.example.test>"), "{}", one.greeting);
    assert_ne!(one.timestamp(), two.timestamp());
    // Three failures on one connection: closed.
    let mut c = Pop3::connect(addr);
    assert_eq!(c.login("alice", "wrong-password"), INVALID);
    assert_eq!(c.login("nobody", "wrong-password"), INVALID);
    assert_eq!(c.login("alice", "wrong-password"), INVALID);
    assert_eq!(c.line(), "-ERR [AUTH] too many failures\r\n");
    assert!(c.closed_within(Duration::from_secs(5)));
    assert_no_passwords_logged(&gw);
}

/// One session per maildrop: a second login for the same user gets `[IN-USE]` (another
/// user is not affected); the lock is free again as soon as QUIT is answered, and after
/// a dropped connection.
#[test]
fn second_login_is_in_use() {
    let gw = start("in-use", &[PLAINTEXT]);
    deliver_raw(&gw, "alice@example.test", &message("locked", 3));
    let addr = gw.pop3_addr;
    let mut first = Pop3::connect(addr);
    assert_eq!(first.login("alice", "secret"), "+OK Logged in, 1 message\r\n");
    let mut second = Pop3::connect(addr);
    assert_eq!(second.login("alice", "secret"), "-ERR [IN-USE] maildrop is locked\r\n");
    let apop = Pop3::connect(addr).cmd(&format!("APOP ALICE {}", "0".repeat(32)));
    assert_eq!(apop, INVALID, "wrong credentials are refused before the lock is looked at");
    assert_eq!(second.login("carol", "c0rrect:horse"), "+OK Logged in, 0 messages\r\n");
    assert_eq!(first.cmd("QUIT"), "+OK Bye, 0 messages deleted\r\n");
    // Released before the QUIT reply: an immediate new login succeeds.
    let mut third = Pop3::connect(addr);
    assert_eq!(third.login("alice", "secret"), "+OK Logged in, 1 message\r\n");
    // A dropped connection releases it too (once the server has seen the close).
    drop(third);
    let ended = wait_for_last_login_to_end(&gw);
    assert!(ended.contains("pop3 session closed: ConnectionLost"), "{ended}");
    assert_eq!(Pop3::connect(addr).login("Alice", "secret"), "+OK Logged in, 1 message\r\n");
    assert!(gw.log().contains("maildrop is locked"), "{}", gw.log());
}

/// Without `--allow-plaintext-auth`, before STLS: CAPA offers STLS but neither USER nor
/// SASL, and USER, APOP and AUTH PLAIN get the session's `[AUTH] ... use STLS`.
#[test]
fn plaintext_logins_refused_without_the_switch() {
    let gw = start("no-plaintext", &[]);
    let refusal = "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections, use STLS\r\n";
    let mut c = Pop3::connect(gw.pop3_addr);
    assert_eq!(c.cmd("CAPA"), "+OK Capability list follows\r\n");
    let capa = String::from_utf8(c.multi()).unwrap();
    let caps: Vec<&str> = capa.lines().collect();
    assert!(caps.contains(&"TOP") && caps.contains(&"UIDL"), "{capa}");
    assert!(!caps.contains(&"USER") && !capa.contains("SASL") && caps.contains(&"STLS"), "{capa}");
    assert_eq!(c.cmd("USER alice"), refusal);
    assert_eq!(c.cmd("PASS secret"), refusal);
    assert_eq!(c.cmd(&format!("APOP alice {}", "0".repeat(32))), refusal);
    assert_eq!(c.cmd(&format!("AUTH PLAIN {}", base64(b"\0alice\0secret"))), refusal);
    assert_eq!(c.cmd("QUIT"), "+OK Bye\r\n");
    if require_tool("python3") {
        let script = "import poplib, sys\np = poplib.POP3('127.0.0.1', int(sys.argv[1]), timeout=15)\n\
                      try:\n    p.user('alice')\nexcept poplib.error_proto as e:\n    print('user', e.args[0].decode(), sep='\\t')\n";
        let out = python(&gw, script, &[]);
        assert!(out.status.success(), "{}", out.text());
        assert_eq!(fields(&out)["user"], refusal.trim_end());
    }
    if require_tool("curl") {
        let out = curl(&[&format!("pop3://alice:secret@127.0.0.1:{}/", gw.pop3_port())]);
        assert!(!out.status.success(), "curl logged in without TLS:\n{}", out.text());
    }
    assert!(!gw.log().contains("login: "), "{}", gw.log());
}

/// Files that another program put into the Maildir: bare LF line endings (LIST counts
/// the CRs the session adds, RETR sends CRLF), a unique name too long for a UID
/// (hashed), a dot file and a directory (not listed), a message already in cur/.
#[test]
fn maildir_written_by_other_programs() {
    let gw = start("foreign", &[PLAINTEXT]);
    let dir = gw.maildir.join("alice");
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let bare = b"Subject: bare LF\n\nline one\n.dot line\nlast line\n";
    let long_name = format!("1000000001.{}", "x".repeat(80));
    let crlf = b"Subject: long name\r\n\r\nbody\r\n";
    let seen = b"Subject: seen before\r\n\r\nold\r\n";
    fs::write(dir.join("new/1000000000.bare-lf.host"), bare).unwrap();
    fs::write(dir.join("new").join(&long_name), crlf).unwrap();
    fs::write(dir.join("new/.hidden"), b"not a message").unwrap();
    fs::create_dir(dir.join("new/subdir")).unwrap();
    fs::write(dir.join("cur/1000000002.seen.host:2,S"), seen).unwrap();

    let mut c = Pop3::connect(gw.pop3_addr);
    assert_eq!(c.login("alice", "secret"), "+OK Logged in, 3 messages\r\n");
    let bare_size = bare.len() + bare.iter().filter(|b| **b == b'\n').count();
    assert_eq!(c.cmd("LIST"), "+OK 3 messages\r\n");
    let list = String::from_utf8(c.multi()).unwrap();
    assert_eq!(list, format!("1 {bare_size}\r\n2 {}\r\n3 {}\r\n.\r\n", crlf.len(), seen.len()));
    assert_eq!(c.cmd("UIDL 1"), "+OK 1 1000000000.bare-lf.host\r\n");
    let uid2 = c.cmd("UIDL 2");
    let uid2 = uid2.trim_end().strip_prefix("+OK 2 ").unwrap();
    assert!(uid2.len() <= 70 && uid2.starts_with("h-"), "{uid2}");
    assert!(uid2.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{uid2}");
    assert_eq!(c.cmd("UIDL 3"), "+OK 3 1000000002.seen.host\r\n");

    assert_eq!(c.cmd("RETR 1"), format!("+OK {bare_size} octets\r\n"));
    let body = c.multi();
    assert_eq!(body, b"Subject: bare LF\r\n\r\nline one\r\n..dot line\r\nlast line\r\n.\r\n");
    assert_eq!(unstuff(&body).len(), bare_size);
    assert_eq!(c.cmd("RETR 3"), format!("+OK {} octets\r\n", seen.len()));
    assert_eq!(unstuff(&c.multi()), seen);
    assert_eq!(c.cmd("QUIT"), "+OK Bye, 0 messages deleted\r\n");

    // Only the message retrieved from new/ moved; its content is untouched.
    assert_eq!(fs::read(dir.join("cur/1000000000.bare-lf.host:2,S")).unwrap(), bare);
    assert!(dir.join("new").join(&long_name).is_file());
    assert!(dir.join("cur/1000000002.seen.host:2,S").is_file());
    assert!(dir.join("new/.hidden").is_file());
    // The UID is stable across sessions.
    let mut again = Pop3::connect(gw.pop3_addr);
    assert!(again.login("alice", "secret").starts_with("+OK"));
    assert_eq!(again.cmd("UIDL 2"), format!("+OK 2 {uid2}\r\n"));
}

/// mpop fetches over USER/PASS (pipelined UIDL, RETR, DELE), delivers into a Maildir
/// of its own, and deletes on the server (`keep off`); a second run finds nothing new.
#[test]
fn mpop_fetches_and_deletes() {
    if !require_tool("mpop") {
        return;
    }
    let gw = start("mpop", &[PLAINTEXT]);
    deliver_raw(&gw, "alice@example.test", &message("mpop 1", 400));
    deliver_raw(&gw, "alice@example.test", &message("mpop 2", 3));
    let originals = stored(&gw, "alice");
    assert_eq!(originals.len(), 2);

    let local = gw.dir.join("mpop-maildir");
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir_all(local.join(sub)).unwrap();
    }
    let config = gw.dir.join("mpoprc");
    fs::write(
        &config,
        format!(
            "account test\nhost 127.0.0.1\nport {}\ntimeout 15\ntls off\nauth user\nuser alice\n\
             password secret\ndelivery maildir {}\nreceived_header off\nkeep off\nuidls_file {}\n",
            gw.pop3_port(),
            local.display(),
            gw.dir.join("mpop-uidls").display()
        ),
    )
    .unwrap();
    restrict(&config);
    let mpop = || {
        let mut cmd = Command::new("mpop");
        cmd.arg(format!("--file={}", config.display())).arg("test");
        run(cmd, None, CLIENT_TIMEOUT)
    };
    let out = mpop();
    assert!(out.status.success(), "mpop failed:\n{}\n{}", out.text(), gw.log());

    // mpop stores with LF line endings: compare after the same conversion.
    let lf = |b: &[u8]| String::from_utf8_lossy(b).replace("\r\n", "\n");
    let mut fetched: Vec<String> =
        fs::read_dir(local.join("new")).unwrap().map(|e| lf(&fs::read(e.unwrap().path()).unwrap())).collect();
    let mut want: Vec<String> = originals.iter().map(|s| lf(&s.content)).collect();
    fetched.sort();
    want.sort();
    assert_eq!(fetched.len(), 2, "mpop delivered {} messages:\n{}", fetched.len(), out.text());
    assert!(fetched == want, "mpop's copies differ from the originals");
    assert!(stored(&gw, "alice").is_empty(), "keep off: the server copies are gone");
    assert!(gw.log().contains("UPDATE: 2 message(s) deleted"), "{}", gw.log());

    let again = mpop();
    assert!(again.status.success(), "second mpop run failed:\n{}", again.text());
    assert_eq!(fs::read_dir(local.join("new")).unwrap().count(), 2);
    assert_no_passwords_logged(&gw);
}

/// mpop refuses a configuration file with a password that others can read.
fn restrict(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Ctrl-C: a POP3 session before login is dropped at once; a logged-in one may go on
/// for the grace period, then is dropped too, and its DELE is not applied (no QUIT).
/// The process exits 0.
#[cfg(unix)]
#[test]
fn ctrl_c_drops_pop3_sessions_and_deletes_nothing() {
    let mut gw = start("pop3-shutdown", &[PLAINTEXT, "--grace", "3"]);
    deliver_raw(&gw, "alice@example.test", &message("kept", 3));
    let before = stored(&gw, "alice");
    let mut idle = Pop3::connect(gw.pop3_addr);
    let mut busy = Pop3::connect(gw.pop3_addr);
    assert_eq!(busy.login("alice", "secret"), "+OK Logged in, 1 message\r\n");
    assert_eq!(busy.cmd("DELE 1"), "+OK message 1 deleted\r\n");

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
    let signalled = Instant::now();
    // Within the grace period the logged-in session still works.
    assert_eq!(busy.cmd("NOOP"), "+OK\r\n");
    // The one that never logged in is dropped within the gateway's 1 s tick.
    assert!(idle.closed_within(Duration::from_secs(5)), "the idle session was not closed");
    // New connections are refused once the listeners are closed.
    std::thread::sleep(Duration::from_millis(300));
    assert!(TcpStream::connect_timeout(&gw.pop3_addr, Duration::from_secs(2)).is_err());
    // The logged-in one is dropped at the end of the grace period.
    assert!(busy.closed_within(Duration::from_secs(10)), "the logged-in session was not closed");
    assert!(signalled.elapsed() >= Duration::from_secs(2), "closed before the grace period");

    let status = gw.wait_exit(Duration::from_secs(15)).expect("the gateway did not exit after Ctrl-C");
    assert!(status.success(), "exit status {status:?}\n{}", gw.log());
    assert!(gw.log().contains("shut down cleanly"), "{}", gw.log());
    let after = stored(&gw, "alice");
    assert_eq!(after.len(), 1, "DELE without QUIT must not delete");
    assert_eq!(after[0].content, before[0].content);
}

#[test]
fn command_line_pop3_options() {
    let binary = gw_harness::gateway_binary();
    let gateway = |args: &[&str]| {
        let mut c = Command::new(binary);
        c.args(args);
        run(c, None, CLIENT_TIMEOUT)
    };
    let help = gateway(&["--help"]);
    assert!(help.status.success());
    for option in ["--pop3", "--user NAME:PASSWORD", "--allow-plaintext-auth"] {
        assert!(help.text().contains(option), "--help does not mention {option}");
    }
    for (args, why) in [
        (&["--user", "alice"][..], "--user wants NAME:PASSWORD"),
        (&["--user", "alice:"], "the password must be"),
        (&["--user", "..etc:topsecret"], "dot sequence"),
        (&["--user", "a/b:topsecret"], "path separator"),
        (&["--user", "alice:one", "--user", "ALICE:two"], "given twice"),
        (&["--pop3", "nowhere"], "--pop3 nowhere"),
        (&["--allow-plaintext-auth=yes"], "takes no value"),
    ] {
        let out = gateway(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.text());
        assert!(out.text().contains(why), "{args:?}: {}", out.text());
        assert!(!out.text().contains("topsecret"), "{args:?}: the password was echoed: {}", out.text());
    }
}
