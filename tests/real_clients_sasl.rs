//! Real clients authenticating against the `mail-gateway` example through
//! `postern::sasl`: swaks and curl with AUTH PLAIN, LOGIN and CRAM-MD5 (`--cram-md5`),
//! Python's smtplib `login`, poplib APOP, and a SCRAM-SHA-256 client (the `scramp`
//! package from PyPI) over smtplib and over POP3; accounts from `--user` and from a
//! users file written by `mail-gateway adduser`.
//!
//! A test whose client is missing is skipped with a notice, except in CI (`CI=true`).
//!
//! Run: `cargo test --all-features --test real_clients_sasl` (the harness builds the example).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// The tests own the clock for their time limits; the library bans reading it.
#![allow(clippy::disallowed_methods)]

#[allow(dead_code)]
#[path = "common/gw_harness.rs"]
mod gw_harness;

use std::fs;
use std::process::Command;

use gw_harness::{CLIENT_TIMEOUT, Gateway, Output, gateway_binary, require_tool, run};

/// alice is a `--user` account (APOP and CRAM-MD5 work for her); the switch allows
/// logins without TLS on loopback.
const BASE: &[&str] = &["--user", "alice:secret", "--allow-plaintext-auth"];

fn message(subject: &str) -> Vec<u8> {
    format!("From: alice@example.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n")
        .into_bytes()
}

/// swaks against the submission port with `--auth MECH`.
fn swaks_auth(gw: &Gateway, mech: &str, user: &str, password: &str, subject: &str) -> Output {
    let path = gw.dir.join(format!("{subject}.eml"));
    fs::write(&path, message(subject).strip_suffix(b"\r\n").unwrap()).unwrap();
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", "127.0.0.1", "--port", &gw.submission_addr.port().to_string(), "--timeout", "20"])
        .args(["--from", "alice@example.test", "--to", "alice@example.test", "--helo", "client.example.test"])
        .args(["--auth", mech, "--auth-user", user, "--auth-password", password, "--data"])
        .arg(&path);
    run(cmd, None, CLIENT_TIMEOUT)
}

/// curl against the submission port with `--login-options AUTH=MECH`.
fn curl_auth(gw: &Gateway, mech: &str, user: &str, password: &str, subject: &str) -> Output {
    let path = gw.dir.join(format!("{subject}.eml"));
    fs::write(&path, message(subject)).unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--max-time", "20"])
        .arg(format!("smtp://127.0.0.1:{}", gw.submission_addr.port()))
        .args(["--login-options", &format!("AUTH={mech}"), "--user", &format!("{user}:{password}")])
        .args(["--mail-from", "alice@example.test", "--mail-rcpt", "alice@example.test", "-T"])
        .arg(&path);
    run(cmd, None, CLIENT_TIMEOUT)
}

/// Messages delivered to alice whose subject line is `subject`.
fn delivered(gw: &Gateway, subject: &str) -> usize {
    let needle = format!("Subject: {subject}\r\n");
    gw.delivered().iter().filter(|d| String::from_utf8_lossy(&d.content).contains(&needle)).count()
}

#[test]
fn swaks_plain_login_and_cram_md5() {
    if !require_tool("swaks") {
        return;
    }
    let mut args = BASE.to_vec();
    args.push("--cram-md5");
    let gw = Gateway::start("sasl-swaks", &args);
    for mech in ["PLAIN", "LOGIN", "CRAM-MD5"] {
        let subject = format!("swaks-{mech}");
        let out = swaks_auth(&gw, mech, "alice", "secret", &subject);
        assert!(out.status.success(), "swaks {mech}:\n{}\n{}", out.text(), gw.log());
        assert_eq!(delivered(&gw, &subject), 1, "{mech}");
        assert!(gw.log().contains(&format!("AUTH {mech}: authenticated as \"alice\"")), "{}", gw.log());
        let bad = swaks_auth(&gw, mech, "alice", "wrong", &format!("{subject}-bad"));
        assert!(!bad.status.success(), "{mech} with a wrong password");
        assert!(bad.text().contains("535 5.7.8"), "{}", bad.text());
        let unknown = swaks_auth(&gw, mech, "nobody", "secret", &format!("{subject}-unknown"));
        assert!(unknown.text().contains("535 5.7.8"), "{}", unknown.text());
    }
    // Without --cram-md5 it is not offered.
    let plain = Gateway::start("sasl-swaks-nocram", BASE);
    let out = swaks_auth(&plain, "CRAM-MD5", "alice", "secret", "nocram");
    assert!(!out.status.success());
}

#[test]
fn curl_plain_login_and_cram_md5() {
    if !require_tool("curl") {
        return;
    }
    let mut args = BASE.to_vec();
    args.push("--cram-md5");
    let gw = Gateway::start("sasl-curl", &args);
    for mech in ["PLAIN", "LOGIN", "CRAM-MD5"] {
        let subject = format!("curl-{mech}");
        let out = curl_auth(&gw, mech, "alice", "secret", &subject);
        assert!(out.status.success(), "curl {mech}:\n{}\n{}", out.text(), gw.log());
        assert_eq!(delivered(&gw, &subject), 1, "{mech}");
        let bad = curl_auth(&gw, mech, "alice", "nope", &format!("{subject}-bad"));
        assert!(!bad.status.success(), "curl {mech} with a wrong password:\n{}", bad.text());
    }
    assert!(gw.log().contains("AUTH CRAM-MD5: authenticated as \"alice\""), "{}", gw.log());
}

/// smtplib's `login` (it picks PLAIN here: CRAM-MD5 is not offered), and a wrong password.
const SMTPLIB_LOGIN: &str = r#"
import smtplib, sys
port = int(sys.argv[1])
s = smtplib.SMTP('127.0.0.1', port, timeout=10)
s.ehlo('client.example.test')
print('auth\t' + s.esmtp_features.get('auth', '').strip())
try:
    s.login('alice', 'wrong')
except smtplib.SMTPAuthenticationError as e:
    print('wrong\t%d' % e.smtp_code)
s.login('alice', 'secret')
s.sendmail('alice@example.test', ['alice@example.test'], b'Subject: smtplib-login\r\n\r\nhello\r\n')
s.quit()
print('ok\tyes')
"#;

#[test]
fn python_smtplib_login() {
    if !require_tool("python3") {
        return;
    }
    let gw = Gateway::start("sasl-smtplib", BASE);
    let mut cmd = Command::new("python3");
    cmd.args(["-c", SMTPLIB_LOGIN, &gw.submission_addr.port().to_string()]);
    let out = run(cmd, None, CLIENT_TIMEOUT);
    assert!(out.status.success(), "{}\n{}", out.text(), gw.log());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("auth\tPLAIN LOGIN SCRAM-SHA-256\n"), "no -PLUS without TLS: {text}");
    assert!(text.contains("wrong\t535") && text.contains("ok\tyes"), "{text}");
    assert_eq!(delivered(&gw, "smtplib-login"), 1);
}

/// SCRAM-SHA-256 with scramp over smtplib's `docmd` (SMTP) or a raw POP3 socket: the
/// server-final signature is checked by scramp (`set_server_final` raises if wrong).
const SCRAMP: &str = r#"
import base64, smtplib, socket, sys
from scramp import ScramClient
proto, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
b64 = lambda s: base64.b64encode(s.encode()).decode()
unb64 = lambda s: base64.b64decode(s).decode()
c = ScramClient(['SCRAM-SHA-256'], user, password)
if proto == 'smtp':
    s = smtplib.SMTP('127.0.0.1', port, timeout=10)
    s.ehlo('client.example.test')
    code, resp = s.docmd('AUTH', 'SCRAM-SHA-256 ' + b64(c.get_client_first()))
    if code != 334:
        print('result\t%d' % code); sys.exit(0)
    c.set_server_first(unb64(resp))
    code, resp = s.docmd(b64(c.get_client_final()))
    if code != 334:
        print('result\t%d' % code); sys.exit(0)
    c.set_server_final(unb64(resp))
    code, resp = s.docmd('')
    print('result\t%d' % code)
    s.quit()
else:
    sock = socket.create_connection(('127.0.0.1', port), timeout=10)
    f = sock.makefile('rb')
    line = lambda: f.readline().decode().rstrip('\r\n')
    send = lambda t: sock.sendall((t + '\r\n').encode())
    line()
    send('AUTH SCRAM-SHA-256 ' + b64(c.get_client_first()))
    r = line()
    if not r.startswith('+ '):
        print('result\t' + r); sys.exit(0)
    c.set_server_first(unb64(r[2:]))
    send(b64(c.get_client_final()))
    r = line()
    if not r.startswith('+ '):
        print('result\t' + r); sys.exit(0)
    c.set_server_final(unb64(r[2:]))
    send('')
    print('result\t' + line())
    send('QUIT')
"#;

fn scramp(gw: &Gateway, proto: &str, user: &str, password: &str) -> String {
    let port = if proto == "smtp" { gw.submission_addr.port() } else { gw.pop3_port() };
    let mut cmd = Command::new("python3");
    cmd.args(["-c", SCRAMP, proto, &port.to_string(), user, password]);
    let out = run(cmd, None, CLIENT_TIMEOUT);
    assert!(out.status.success(), "scramp {proto}:\n{}\n{}", out.text(), gw.log());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().find_map(|l| l.strip_prefix("result\t")).unwrap_or_default().to_owned()
}

/// `python3 -c "import scramp"` works (the package is installed by `.ci/run`).
fn require_scramp() -> bool {
    if !require_tool("python3") {
        return false;
    }
    let ok = Command::new("python3").args(["-c", "import scramp"]).status().is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "the scramp Python package is required in CI");
        eprintln!("skipping: the scramp Python package is not installed (pip install scramp)");
    }
    ok
}

#[test]
fn scramp_scram_sha256_over_smtp_and_pop3() {
    if !require_scramp() {
        return;
    }
    let gw = Gateway::start("sasl-scramp", BASE);
    assert_eq!(scramp(&gw, "smtp", "alice", "secret"), "235");
    assert!(gw.log().contains("AUTH SCRAM-SHA-256: authenticated as \"alice\""), "{}", gw.log());
    assert_eq!(scramp(&gw, "smtp", "alice", "wrong"), "535");
    assert_eq!(scramp(&gw, "smtp", "nobody", "secret"), "535");
    assert_eq!(scramp(&gw, "pop3", "alice", "secret"), "+OK Logged in, 0 messages");
    assert_eq!(scramp(&gw, "pop3", "alice", "wrong"), "-ERR [AUTH] invalid credentials");
}

/// poplib APOP for a `--user` account; a users-file account has no plaintext secret, so
/// APOP fails for it with the usual reply while USER/PASS works.
const POPLIB_APOP: &str = r#"
import poplib, sys
port = int(sys.argv[1])
def attempt(name, user, secret, apop=True):
    p = poplib.POP3('127.0.0.1', port, timeout=10)
    try:
        r = p.apop(user, secret) if apop else (p.user(user), p.pass_(secret))[1]
        print('%s\t%s' % (name, r.decode()))
    except poplib.error_proto as e:
        print('%s\t%s' % (name, e.args[0].decode()))
    p.quit()
attempt('alice-apop', 'alice', 'secret')
attempt('alice-apop-wrong', 'alice', 'wrong')
attempt('bob-apop', 'bob', 'hunter2')
attempt('bob-pass', 'bob', 'hunter2', apop=False)
"#;

#[test]
fn users_file_from_adduser_then_scram_plain_and_apop() {
    if !require_tool("python3") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("postern-sasl-users-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("users");
    let adduser = |name: &str, password: &str| {
        let mut cmd = Command::new(gateway_binary());
        cmd.arg("adduser").arg(&file).arg(name).args(["--hash-iterations", "1000"]);
        run(cmd, Some(format!("{password}\n").as_bytes()), CLIENT_TIMEOUT)
    };
    let out = adduser("bob", "first");
    assert!(out.status.success(), "{}", out.text());
    assert!(out.text().contains("added bob"), "{}", out.text());
    let out = adduser("bob", "hunter2");
    assert!(out.text().contains("password changed for bob"), "{}", out.text());
    assert!(adduser("Dave", "pw").status.success());
    let text = fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(!text.contains("hunter2") && text.starts_with("bob:$pbkdf2-sha256$i=1000$"), "{text}");
    assert!(text.contains(":SCRAM-SHA-256$4096:"), "{text}");
    assert!(text.contains("\ndave:"), "names are lower-cased: {text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(!adduser("bad name", "pw").status.success());
    assert!(!adduser("eve", "").status.success());

    let mut args = BASE.to_vec();
    let path = file.display().to_string();
    args.extend(["--users", &path]);
    let gw = Gateway::start("sasl-users-file", &args);
    assert!(gw.log().contains("users alice,bob,dave"), "{}", gw.log());
    let mut cmd = Command::new("python3");
    cmd.args(["-c", POPLIB_APOP, &gw.pop3_port().to_string()]);
    let out = run(cmd, None, CLIENT_TIMEOUT);
    assert!(out.status.success(), "{}", out.text());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("alice-apop\t+OK Logged in, 0 messages"), "{text}");
    assert!(text.contains("alice-apop-wrong\t-ERR [AUTH] invalid credentials"), "{text}");
    assert!(text.contains("bob-apop\t-ERR [AUTH] invalid credentials"), "{text}");
    assert!(text.contains("bob-pass\t+OK Logged in, 0 messages"), "{text}");
    if require_scramp() {
        assert_eq!(scramp(&gw, "smtp", "bob", "hunter2"), "235");
        assert_eq!(scramp(&gw, "smtp", "BOB", "first"), "535");
    }
    if require_tool("curl") {
        let out = curl_auth(&gw, "PLAIN", "bob", "hunter2", "file-user");
        assert!(out.status.success(), "{}", out.text());
        assert!(gw.log().contains("AUTH PLAIN: authenticated as \"bob\""), "{}", gw.log());
    }
    // A broken users file stops the gateway at startup, naming the line.
    fs::write(&file, "bob:not-a-hash:x\n").unwrap();
    let mut cmd = Command::new(gateway_binary());
    cmd.args([
        "--users",
        &path,
        "--smtp",
        "127.0.0.1:0",
        "--submission",
        "127.0.0.1:0",
        "--smtps",
        "127.0.0.1:0",
    ])
    .args(["--pop3", "127.0.0.1:0", "--pop3s", "127.0.0.1:0", "--maildir"])
    .arg(dir.join("Maildir"));
    let out = run(cmd, None, CLIENT_TIMEOUT);
    assert!(!out.status.success() && out.text().contains("line 1"), "{}", out.text());
    let _ = fs::remove_dir_all(&dir);
}

// ----- SCRAM-SHA-256-PLUS against the gateway, over implicit TLS ------------------------

/// A blocking SMTP client over `postern::tls::TlsChannel` (rustls), trusting the
/// gateway's demo CA.
struct TlsClient {
    stream: std::net::TcpStream,
    tls: postern::tls::TlsChannel,
    plain: Vec<u8>,
}

impl TlsClient {
    fn connect(addr: std::net::SocketAddr, ca: &std::path::Path) -> TlsClient {
        use std::io::Write as _;
        let mut roots = rustls::RootCertStore::empty();
        for cert in postern::tls::certificates_from_pem(&fs::read(ca).unwrap()).unwrap() {
            roots.add(cert).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tls = postern::tls::TlsChannel::client(std::sync::Arc::new(config), "localhost").unwrap();
        let stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(gw_harness::SOCKET_TIMEOUT)).unwrap();
        let mut c = TlsClient { stream, tls, plain: Vec::new() };
        while c.tls.is_handshaking() {
            let mut out = Vec::new();
            c.tls.poll_transmit(&mut out);
            c.stream.write_all(&out).unwrap();
            if c.tls.is_handshaking() {
                c.read_some();
            }
        }
        c
    }

    fn read_some(&mut self) {
        use std::io::Read as _;
        let mut buf = [0_u8; 16 * 1024];
        let n = self.stream.read(&mut buf).unwrap();
        assert!(n > 0, "the gateway closed the connection");
        self.tls.receive(&buf[..n], &mut self.plain).unwrap();
        let mut out = Vec::new();
        self.tls.poll_transmit(&mut out);
        std::io::Write::write_all(&mut self.stream, &out).unwrap();
    }

    /// One complete SMTP reply.
    fn reply(&mut self) -> String {
        loop {
            let text = String::from_utf8_lossy(&self.plain).into_owned();
            if let Some(end) = text
                .split_inclusive("\r\n")
                .scan(0, |pos, line| {
                    *pos += line.len();
                    Some((*pos, line))
                })
                .find(|(_, line)| line.len() > 3 && line.as_bytes()[3] == b' ' && line.ends_with("\r\n"))
                .map(|(pos, _)| pos)
            {
                self.plain.drain(..end);
                return text[..end].to_owned();
            }
            self.read_some();
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.tls.send(format!("{line}\r\n").as_bytes()).unwrap();
        let mut out = Vec::new();
        self.tls.poll_transmit(&mut out);
        std::io::Write::write_all(&mut self.stream, &out).unwrap();
        self.reply()
    }
}

/// The SCRAM-SHA-256 client proof (RFC 5802 §3) for `server_first`, with `cbind` as the
/// channel-binding input (GS2 header, then the binding data for -PLUS).
fn client_final(
    password: &[u8],
    client_first_bare: &str,
    server_first: &str,
    cbind: &[u8],
) -> (String, Vec<u8>) {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use ring::hmac;
    let mut fields = server_first.split(',');
    let nonce = fields.next().unwrap().strip_prefix("r=").unwrap();
    let salt = STANDARD.decode(fields.next().unwrap().strip_prefix("s=").unwrap()).unwrap();
    let iterations: u32 = fields.next().unwrap().strip_prefix("i=").unwrap().parse().unwrap();
    let mut salted = [0_u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations.try_into().unwrap(),
        &salt,
        password,
        &mut salted,
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
    let client_key = hmac::sign(&key, b"Client Key");
    let stored_key = ring::digest::digest(&ring::digest::SHA256, client_key.as_ref());
    let without_proof = format!("c={},r={nonce}", STANDARD.encode(cbind));
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature =
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, stored_key.as_ref()), auth_message.as_bytes());
    let proof: Vec<u8> = client_key.as_ref().iter().zip(signature.as_ref()).map(|(a, b)| a ^ b).collect();
    let server_key = hmac::sign(&key, b"Server Key");
    let v = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, server_key.as_ref()), auth_message.as_bytes());
    (
        format!("{without_proof},p={}", STANDARD.encode(proof)),
        format!("v={}", STANDARD.encode(v.as_ref())).into_bytes(),
    )
}

#[test]
fn scram_sha256_plus_against_the_gateway_over_smtps() {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    let gw = Gateway::start("sasl-plus", &["--user", "alice:secret"]);
    for (password, want) in [("secret", "235 2.7.0"), ("wrong", "535 5.7.8")] {
        let mut c = TlsClient::connect(gw.smtps_addr, &gw.ca());
        let binding = c.tls.tls_exporter().expect("a TLS 1.3 binding");
        assert!(c.reply().starts_with("220 "));
        let ehlo = c.cmd("EHLO client.example.test");
        assert!(ehlo.contains("AUTH PLAIN LOGIN SCRAM-SHA-256 SCRAM-SHA-256-PLUS\r\n"), "{ehlo}");
        let first = "p=tls-exporter,,n=alice,r=gatewaytestnonce";
        let r = c.cmd(&format!("AUTH SCRAM-SHA-256-PLUS {}", STANDARD.encode(first)));
        let server_first =
            String::from_utf8(STANDARD.decode(r.trim_end().strip_prefix("334 ").unwrap()).unwrap()).unwrap();
        let mut cbind = b"p=tls-exporter,,".to_vec();
        cbind.extend_from_slice(&binding);
        let (fin, v) = client_final(password.as_bytes(), "n=alice,r=gatewaytestnonce", &server_first, &cbind);
        let r = c.cmd(&STANDARD.encode(fin));
        if password == "secret" {
            assert_eq!(r, format!("334 {}\r\n", STANDARD.encode(&v)), "the server proved it knows the key");
            assert!(c.cmd("").starts_with(want));
        } else {
            assert!(r.starts_with(want), "{r}");
        }
    }
    // A binding from another connection (a relay in the middle) is refused.
    let mut c = TlsClient::connect(gw.smtps_addr, &gw.ca());
    let other = TlsClient::connect(gw.smtps_addr, &gw.ca()).tls.tls_exporter().unwrap();
    assert!(c.reply().starts_with("220 "));
    c.cmd("EHLO client.example.test");
    let first = "p=tls-exporter,,n=alice,r=n2";
    let r = c.cmd(&format!("AUTH SCRAM-SHA-256-PLUS {}", STANDARD.encode(first)));
    let server_first =
        String::from_utf8(STANDARD.decode(r.trim_end().strip_prefix("334 ").unwrap()).unwrap()).unwrap();
    let mut cbind = b"p=tls-exporter,,".to_vec();
    cbind.extend_from_slice(&other);
    let (fin, _) = client_final(b"secret", "n=alice,r=n2", &server_first, &cbind);
    assert!(c.cmd(&STANDARD.encode(fin)).starts_with("535 5.7.8"));
    assert!(gw.log().contains("AUTH SCRAM-SHA-256-PLUS: authenticated as \"alice\""), "{}", gw.log());
    assert!(
        gw.log().contains("AUTH SCRAM-SHA-256-PLUS failed for \"alice\": ChannelBinding"),
        "{}",
        gw.log()
    );
}

/// USER/PASS over a raw POP3 socket: the reply to PASS.
fn pop3_user_pass(gw: &Gateway, user: &str, password: &str) -> String {
    use std::io::{BufRead as _, Write as _};
    let stream = std::net::TcpStream::connect(gw.pop3_addr).unwrap();
    stream.set_read_timeout(Some(gw_harness::SOCKET_TIMEOUT)).unwrap();
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut w = &stream;
    w.write_all(format!("USER {user}\r\nPASS {password}\r\n").as_bytes()).unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    let _ = w.write_all(b"QUIT\r\n");
    line.trim_end().to_owned()
}

#[test]
fn totp_second_factor_from_adduser() {
    use postern::otp::{Algorithm, OtpSecret, Totp};
    let dir = std::env::temp_dir().join(format!("postern-sasl-totp-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("users");
    let mut cmd = Command::new(gateway_binary());
    cmd.arg("adduser").arg(&file).args(["erin", "--hash-iterations", "1000", "--totp"]);
    let out = run(cmd, Some(b"pass phrase\n"), CLIENT_TIMEOUT);
    assert!(out.status.success(), "{}", out.text());
    let uri = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(uri.starts_with("otpauth://totp/postern%20mail-gateway:erin?secret="), "{uri}");
    let secret = uri.split("secret=").nth(1).unwrap().split('&').next().unwrap();
    let totp = Totp::new(OtpSecret::from_base32(secret).unwrap(), Algorithm::Sha1, 6).unwrap();
    assert!(fs::read_to_string(&file).unwrap().contains(&format!(":totp={secret}\n")));

    let path = file.display().to_string();
    let gw = Gateway::start("sasl-totp", &["--users", &path, "--allow-plaintext-auth"]);
    // The password alone, or with a wrong code, is refused.
    assert_eq!(pop3_user_pass(&gw, "erin", "pass phrase"), "-ERR [AUTH] invalid credentials");
    assert_eq!(pop3_user_pass(&gw, "erin", "pass phrase000000x"), "-ERR [AUTH] invalid credentials");
    // Password + the current code: accepted once, over SMTP AUTH PLAIN (curl)...
    let code = totp.code_at(std::time::SystemTime::now());
    if require_tool("curl") {
        let out = curl_auth(&gw, "PLAIN", "erin", &format!("pass phrase{}", code.as_str()), "totp");
        assert!(out.status.success(), "{}\n{}", out.text(), gw.log());
        // ... and never again (a replay), here over POP3.
        let again = pop3_user_pass(&gw, "erin", &format!("pass phrase{}", code.as_str()));
        assert_eq!(again, "-ERR [AUTH] invalid credentials");
    } else {
        let first = pop3_user_pass(&gw, "erin", &format!("pass phrase{}", code.as_str()));
        assert!(first.starts_with("+OK"), "{first}");
    }
    // SCRAM cannot carry the code: refused for this user.
    if require_scramp() {
        assert_eq!(scramp(&gw, "smtp", "erin", "pass phrase"), "535");
    }
    let _ = fs::remove_dir_all(&dir);
}
