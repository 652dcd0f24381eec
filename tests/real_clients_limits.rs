//! Admission control and rate limits of the `mail-gateway` example on loopback:
//! `--deny`, `--max-conn-per-ip`, `--conn-rate` under a flood, `--auth-failures-ban`,
//! `--rcpt-rate`, `--msg-rate`, and the same limits from `--limits FILE` (and a bad file's
//! error).
//!
//! Distinct clients are distinct loopback addresses: the gateway listens on 127.0.0.1 and
//! a client socket bound to 127.0.0.2 or 127.0.0.3 (Linux routes all of 127/8 to `lo`)
//! is another client. `std` cannot bind a socket before connecting, so those clients are
//! a small Python script (`python3`, skipped with a notice if missing, except in CI).
//!
//! Run: `cargo test --all-features --test real_clients_limits`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// The tests own the clock for their time limits; the library bans reading it.
#![allow(clippy::disallowed_methods)]

// Each test binary uses part of the shared harness.
#[allow(dead_code)]
#[path = "common/gw_harness.rs"]
mod gw_harness;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use gw_harness::{Gateway, RawClient, SOCKET_TIMEOUT, gateway_binary, require_tool, run};

/// Connects from `src` (a loopback address) to `addr`, `n` times one after the other,
/// reading the first line of each greeting; returns `(first line, milliseconds)` each.
const FROM_SCRIPT: &str = r#"
import socket, sys, time
src, host, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for _ in range(n):
    t = time.monotonic()
    s = socket.socket()
    s.settimeout(10)
    s.bind((src, 0))
    s.connect((host, port))
    line = s.makefile("rb").readline().decode("ascii", "replace").strip()
    ms = (time.monotonic() - t) * 1000
    s.close()
    print(f"{ms:.3f} {line}", flush=True)
"#;

/// `(milliseconds, first greeting line)` of `n` connections from `src` to `addr`, or `None`
/// without python3.
fn connect_from(src: &str, addr: SocketAddr, n: usize) -> Option<Vec<(f64, String)>> {
    if !require_tool("python3") {
        return None;
    }
    let mut cmd = Command::new("python3");
    cmd.args(["-c", FROM_SCRIPT, src, &addr.ip().to_string(), &addr.port().to_string(), &n.to_string()]);
    let out = run(cmd, None, Duration::from_secs(60));
    assert!(out.status.success(), "python3 client failed: {}", out.text());
    let lines: Vec<(f64, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (ms, line) = l.split_once(' ').unwrap_or((l, ""));
            (ms.parse().expect("milliseconds"), line.to_owned())
        })
        .collect();
    assert_eq!(lines.len(), n, "one line per connection: {}", out.text());
    Some(lines)
}

/// The greeting (or refusal) of a plain connection from 127.0.0.1, and the connection.
fn greet(addr: SocketAddr) -> (String, BufReader<TcpStream>) {
    let stream = TcpStream::connect_timeout(&addr, SOCKET_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(SOCKET_TIMEOUT)).unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("read the greeting");
    (line, reader)
}

/// Delivers one message from 127.0.0.1 on the MX port; the final reply of DATA.
fn deliver(gw: &Gateway, n: usize) -> String {
    let mut c = RawClient::connect(gw.addr);
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<bob@sender.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<alice@example.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    let reply = c.cmd(&format!("Subject: well-behaved {n}\r\n\r\nhello {n}\r\n."));
    c.cmd("QUIT");
    reply
}

#[test]
fn denied_network_gets_554_and_others_are_served() {
    let gw = Gateway::start("limits-deny", &["--deny", "127.0.0.3/32"]);
    let Some(denied) = connect_from("127.0.0.3", gw.addr, 1) else { return };
    assert!(denied[0].1.starts_with("554 5.7.1 "), "denied client: {:?}", denied[0]);
    let Some(pop3) = connect_from("127.0.0.3", gw.pop3_addr, 1) else { return };
    assert!(pop3[0].1.starts_with("-ERR [AUTH] "), "denied POP3 client: {:?}", pop3[0]);
    let served = connect_from("127.0.0.2", gw.addr, 1).unwrap();
    assert!(served[0].1.starts_with("220 "), "other client: {:?}", served[0]);
    let (line, _) = greet(gw.addr);
    assert!(line.starts_with("220 "), "127.0.0.1: {line:?}");
    assert!(gw.log().contains("127.0.0.3") && gw.log().contains("refused: Denied"), "{}", gw.log());
}

#[test]
fn third_simultaneous_connection_from_one_address_gets_421() {
    let gw = Gateway::start("limits-conc", &["--max-conn-per-ip", "2"]);
    let (first, a) = greet(gw.addr);
    let (second, _b) = greet(gw.addr);
    assert!(first.starts_with("220 ") && second.starts_with("220 "), "{first:?} {second:?}");
    let (third, mut c) = greet(gw.addr);
    assert!(third.starts_with("421 4.7.0 "), "third connection: {third:?}");
    // And it is closed.
    let mut rest = String::new();
    assert_eq!(std::io::Read::read_to_string(c.get_mut(), &mut rest).unwrap_or(0), 0, "{rest:?}");
    // One closes: there is room again.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (again, _c) = greet(gw.addr);
        if again.starts_with("220 ") {
            break;
        }
        assert!(Instant::now() < deadline, "no room after a close: {again:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn flood_is_refused_fast_while_a_well_behaved_client_delivers() {
    const FLOOD: usize = 300;
    let started = Instant::now();
    let gw = Gateway::start("limits-flood", &["--conn-rate", "5/60"]);
    if !require_tool("python3") {
        return;
    }
    let addr = gw.addr;
    let flood = thread::spawn(move || connect_from("127.0.0.2", addr, FLOOD).unwrap());
    // Interleaved with the flood: three messages from 127.0.0.1 (within its own rate).
    let mut delivered = 0;
    for n in 0..3 {
        let reply = deliver(&gw, n);
        assert!(reply.starts_with("250 "), "well-behaved client, message {n}: {reply:?}");
        delivered += 1;
        thread::sleep(Duration::from_millis(20));
    }
    let flood = flood.join().unwrap();
    let accepted = flood.iter().filter(|(_, l)| l.starts_with("220 ")).count();
    let refused: Vec<f64> =
        flood.iter().filter(|(_, l)| l.starts_with("421 4.7.0 ")).map(|(ms, _)| *ms).collect();
    assert_eq!(accepted, 5, "the burst of --conn-rate 5/60");
    assert_eq!(refused.len(), FLOOD - 5, "everything else refused: {:?}", &flood[..10]);
    let slowest = refused.iter().copied().fold(0.0_f64, f64::max);
    let mean = refused.iter().sum::<f64>() / refused.len() as f64;
    eprintln!(
        "flood: {FLOOD} connections, {} refused, mean {mean:.2} ms, slowest {slowest:.2} ms",
        refused.len()
    );
    assert!(slowest < 100.0, "a refusal took {slowest} ms");
    assert!(
        flood.iter().filter(|(_, l)| l.starts_with("421")).all(|(_, l)| l.contains("try again in ")),
        "refusals say when to retry"
    );
    assert_eq!(delivered, 3);
    assert_eq!(gw.delivered().len(), 3, "the well-behaved client's messages are on disk");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
}

#[test]
fn failed_logins_get_the_client_deferred() {
    let gw = Gateway::start(
        "limits-auth",
        &["--auth-failures-ban", "--allow-plaintext-auth", "--user", "alice:right-password"],
    );
    // AUTH PLAIN "\0alice\0wrong", three times on submission (one connection each).
    for _ in 0..3 {
        let mut c = RawClient::connect(gw.submission_addr);
        assert!(c.cmd("EHLO client.test").starts_with("250"));
        let reply = c.cmd("AUTH PLAIN AGFsaWNlAHdyb25n");
        assert!(reply.starts_with("535 "), "bad password: {reply:?}");
        c.cmd("QUIT");
    }
    // Banned: the next connections, SMTP or POP3, are deferred with the wait.
    let (smtp, _) = greet(gw.submission_addr);
    assert!(smtp.starts_with("421 4.7.0 ") && smtp.contains("try again in "), "after 3 failures: {smtp:?}");
    let (mx, _) = greet(gw.addr);
    assert!(mx.starts_with("421 4.7.0 "), "the MX port too: {mx:?}");
    let (pop3, _) = greet(gw.pop3_addr);
    assert!(pop3.starts_with("-ERR [SYS/TEMP] "), "POP3 too: {pop3:?}");
    assert!(gw.log().contains("banned for 60s"), "{}", gw.log());
    // Another address is not affected.
    if let Some(other) = connect_from("127.0.0.2", gw.addr, 1) {
        assert!(other[0].1.starts_with("220 "), "{other:?}");
    }
}

#[test]
fn failed_pop3_logins_get_the_client_deferred() {
    let gw = Gateway::start(
        "limits-pop3",
        &["--auth-failures-ban", "--allow-plaintext-auth", "--user", "alice:right-password"],
    );
    for _ in 0..3 {
        let (greeting, mut r) = greet(gw.pop3_addr);
        assert!(greeting.starts_with("+OK"), "{greeting:?}");
        let mut line = String::new();
        r.get_mut().write_all(b"USER alice\r\n").unwrap();
        r.read_line(&mut line).unwrap();
        line.clear();
        r.get_mut().write_all(b"PASS wrong\r\n").unwrap();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("-ERR"), "bad password: {line:?}");
        r.get_mut().write_all(b"QUIT\r\n").unwrap();
    }
    let (pop3, _) = greet(gw.pop3_addr);
    assert!(pop3.starts_with("-ERR [SYS/TEMP] "), "after 3 failures: {pop3:?}");
}

#[test]
fn recipients_over_the_rate_get_450() {
    let gw = Gateway::start("limits-rcpt", &["--rcpt-rate", "3/60"]);
    let mut c = RawClient::connect(gw.addr);
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<bob@sender.test>").starts_with("250"));
    for n in 0..3 {
        let reply = c.cmd(&format!("RCPT TO:<user{n}@example.test>"));
        assert!(reply.starts_with("250"), "recipient {n}: {reply:?}");
    }
    let over = c.cmd("RCPT TO:<user3@example.test>");
    assert!(over.starts_with("450 4.7.1 ") && over.contains("in 20 s"), "fourth recipient: {over:?}");
    // The session goes on: the accepted recipients still get the message.
    assert!(c.cmd("DATA").starts_with("354"));
    assert!(c.cmd("Subject: rate\r\n\r\nhello\r\n.").starts_with("250"));
    c.cmd("QUIT");
    assert_eq!(gw.delivered().len(), 3);
}

#[test]
fn messages_over_the_rate_get_450_at_data() {
    let gw = Gateway::start("limits-msg", &["--msg-rate", "1/60"]);
    assert!(deliver(&gw, 0).starts_with("250 "));
    let mut c = RawClient::connect(gw.addr);
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<bob@sender.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<alice@example.test>").starts_with("250"));
    let data = c.cmd("DATA");
    assert!(data.starts_with("450 4.7.1 "), "second message: {data:?}");
}

/// A limits file in the temporary directory, removed on drop.
struct LimitsFile(std::path::PathBuf);

impl LimitsFile {
    fn new(name: &str, text: &str) -> LimitsFile {
        let path = std::env::temp_dir().join(format!("postern-limits-{}-{name}.conf", std::process::id()));
        std::fs::write(&path, text).unwrap();
        LimitsFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for LimitsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn limits_file_is_applied_and_flags_override_it() {
    let file = LimitsFile::new(
        "applied",
        "# limits for the test\n\
         conn-rate       = 1/1m      # overridden: the harness passes --conn-rate off\n\
         max-conn-per-ip = 1\n\
         rcpt-rate       = 2/1m burst 2\n\
         deny            = 127.0.0.3\n",
    );
    let gw = Gateway::start("limits-file", &["--limits", file.path()]);
    // max-conn-per-ip = 1: a second connection at once is deferred.
    let (first, a) = greet(gw.addr);
    assert!(first.starts_with("220 "), "{first:?}");
    let (second, _) = greet(gw.addr);
    assert!(
        second.starts_with("421 4.7.0 ") && second.contains("try again in "),
        "second at once: {second:?}"
    );
    drop(a);
    // conn-rate = 1/1m would defer every new connection for a minute; the flag turned it
    // off, so connections go on being served one after the other (each waits for the
    // previous session to end: max-conn-per-ip = 1).
    let mut served = None;
    for n in 0..3 {
        drop(served.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        served = loop {
            let (again, c) = greet(gw.addr);
            if again.starts_with("220 ") {
                break Some(c);
            }
            assert!(Instant::now() < deadline, "connection {n} after a close: {again:?}");
            thread::sleep(Duration::from_millis(50));
        };
    }
    // rcpt-rate = 2/1m burst 2: the third recipient gets 450 4.7.1 with the wait.
    let mut c = served.unwrap();
    let mut cmd = |line: &str| {
        c.get_mut().write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let mut reply = String::new();
        loop {
            let mut l = String::new();
            c.read_line(&mut l).unwrap();
            reply.push_str(&l);
            if l.as_bytes().get(3) != Some(&b'-') {
                return reply;
            }
        }
    };
    assert!(cmd("EHLO client.test").starts_with("250"));
    assert!(cmd("MAIL FROM:<bob@sender.test>").starts_with("250"));
    assert!(cmd("RCPT TO:<a@example.test>").starts_with("250"));
    assert!(cmd("RCPT TO:<b@example.test>").starts_with("250"));
    let over = cmd("RCPT TO:<c@example.test>");
    assert!(over.starts_with("450 4.7.1 ") && over.contains("in 30 s"), "third recipient: {over:?}");
    cmd("QUIT");
    let log = gw.log();
    assert!(log.contains("connection rate no limit") && log.contains("connections per client 1"), "{log}");
    // deny = 127.0.0.3: refused (needs python3 to connect from another address).
    let Some(denied) = connect_from("127.0.0.3", gw.addr, 1) else { return };
    assert!(denied[0].1.starts_with("554 5.7.1 "), "denied client: {:?}", denied[0]);
}

#[test]
fn bad_limits_file_is_refused_with_its_line_number() {
    let file = LimitsFile::new("bad", "# fine\nmax-conn-per-ip = 3\nconn-rate = fast\n");
    let dir = std::env::temp_dir().join(format!("postern-limits-{}-bad-maildir", std::process::id()));
    let mut cmd = Command::new(gateway_binary());
    cmd.args(["--smtp", "127.0.0.1:0", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0"])
        .args(["--pop3", "127.0.0.1:0", "--pop3s", "127.0.0.1:0", "--limits", file.path()])
        .arg("--maildir")
        .arg(&dir);
    let out = run(cmd, None, Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2), "{}", out.text());
    let text = out.text();
    assert!(
        text.contains(&format!(
            "error: --limits {}: line 3: conn-rate \"fast\": expected COUNT/PERIOD",
            file.path()
        )),
        "{text}"
    );
    // A missing file names the file.
    let mut cmd = Command::new(gateway_binary());
    cmd.args(["--limits", "/nonexistent/postern-limits.conf"]);
    let out = run(cmd, None, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2), "{}", out.text());
    assert!(out.text().contains("--limits /nonexistent/postern-limits.conf: "), "{}", out.text());
}
