//! `--seal-store` with real clients: swaks delivers over SMTP, the message lands sealed
//! (X-Wing + AES-256-GCM) in the Maildir, Python's poplib reads the original back with
//! RETR and TOP; `mail-gateway keyring rotate` gives the mailbox a new key while both
//! old and new messages stay readable; a tampered file is never served.
//!
//! A test whose client program is missing is skipped with a notice, except in CI
//! (`CI=true`), where it fails. Every child process and socket is time-limited.
//!
//! Run: `cargo test --all-features --test real_clients_seal` (the harness builds the
//! example).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// The tests own the clock for their time limits; the library bans reading it.
#![allow(clippy::disallowed_methods)]

#[allow(dead_code)]
#[path = "common/gw_harness.rs"]
mod gw_harness;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use gw_harness::{CLIENT_TIMEOUT, Gateway, Output, gateway_binary, require_tool, run};

/// A message with a recognisable body, CRLF everywhere, dot lines included.
fn message(subject: &str, lines: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Bob <bob@sender.test>\r\nTo: Alice <alice@example.test>\r\nSubject: {subject}\r\n\r\n\
         TOP-SECRET-MARKER body of {subject}\r\n.a line starting with a dot\r\n"
    );
    for i in 0..lines {
        m.push_str(&format!("line {i:05}: the quick brown fox jumps over the lazy dog\r\n"));
    }
    m.push_str("last line\r\n");
    m.into_bytes()
}

fn deliver_swaks(gw: &Gateway, rcpt: &str, msg: &[u8]) {
    let path = gw.dir.join("swaks-data.eml");
    fs::write(&path, msg.strip_suffix(b"\r\n").unwrap()).unwrap();
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", "127.0.0.1", "--port", &gw.port().to_string(), "--timeout", "20"])
        .args(["--from", "bob@sender.test", "--helo", "client.sender.test", "--to", rcpt, "--data"])
        .arg(&path);
    let out = run(cmd, None, CLIENT_TIMEOUT);
    assert!(out.status.success(), "swaks failed:\n{}", out.text());
}

/// The message files in a mailbox's `new/` and `cur/`, sorted by name.
fn stored(gw: &Gateway, mailbox: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["new", "cur"]
        .iter()
        .flat_map(|sub| fs::read_dir(gw.maildir.join(mailbox).join(sub)).into_iter().flatten().flatten())
        .map(|e| e.path())
        .collect();
    files.sort_by_key(|p| p.file_name().unwrap().to_owned());
    files
}

fn keyring(gw: &Gateway, args: &[&str]) -> Output {
    let mut cmd = Command::new(gateway_binary());
    cmd.arg("keyring").args(args).arg("--maildir").arg(&gw.maildir);
    run(cmd, None, CLIENT_TIMEOUT)
}

/// poplib: USER/PASS, STAT, LIST, TOP 1 2, RETR of every message; writes each RETR to
/// `<out>.retrN` and TOP to `<out>.top`.
const POPLIB: &str = r#"
import poplib, sys
port, out = int(sys.argv[1]), sys.argv[2]
p = poplib.POP3('127.0.0.1', port, timeout=15)
p.user('alice')
try:
    print('pass', p.pass_('secret').decode(), sep='\t')
except poplib.error_proto as e:
    print('pass', e.args[0].decode(), sep='\t')
    sys.exit(0)
count, size = p.stat()
print('stat', count, size, sep='\t')
print('list', ','.join(l.decode() for l in p.list()[1]), sep='\t')
resp, lines, octets = p.top(1, 2)
open(out + '.top', 'wb').write(b'\r\n'.join(lines) + b'\r\n')
for i in range(1, count + 1):
    resp, lines, octets = p.retr(i)
    print('retr%d' % i, resp.decode(), octets, sep='\t')
    open(out + '.retr%d' % i, 'wb').write(b'\r\n'.join(lines) + b'\r\n')
print('quit', p.quit().decode(), sep='\t')
"#;

fn poplib(gw: &Gateway, out: &Path) -> HashMap<String, String> {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", POPLIB, &gw.pop3_port().to_string(), out.to_str().unwrap()]);
    let result = run(cmd, None, CLIENT_TIMEOUT);
    assert!(result.status.success(), "poplib failed:\n{}", result.text());
    String::from_utf8_lossy(&result.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The key id in a sealed file's envelope header (bytes 12..16).
fn key_id(path: &Path) -> u32 {
    let bytes = fs::read(path).unwrap();
    u32::from_be_bytes(bytes[12..16].try_into().unwrap())
}

#[test]
fn swaks_delivers_sealed_poplib_reads_the_original_across_a_rotation() {
    if !require_tool("swaks") || !require_tool("python3") {
        return;
    }
    let gw = Gateway::start("seal", &["--user", "alice:secret", "--allow-plaintext-auth", "--seal-store"]);
    // The key ring was created at start, private to the gateway's user.
    let ring = gw.dir.join("postern-keys").join("alice.keyring");
    let mode = fs::metadata(&ring).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "key ring mode {mode:o}");
    assert_eq!(fs::metadata(ring.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    assert!(gw.log().contains("seal store: messages sealed at rest"), "{}", gw.log());

    let first = message("sealed one", 2000);
    deliver_swaks(&gw, "alice@example.test", &first);
    let files = stored(&gw, "alice");
    assert_eq!(files.len(), 1);
    let on_disk = fs::read(&files[0]).unwrap();
    assert!(on_disk.starts_with(b"PSTN\x01"), "not an envelope");
    for needle in [&b"TOP-SECRET-MARKER"[..], b"Subject:", b"Received:", b"quick brown fox"] {
        assert!(!on_disk.windows(needle.len()).any(|w| w == needle), "plaintext on disk");
    }
    assert_eq!(key_id(&files[0]), 1);
    assert!(gw.tmp_files().is_empty(), "left in tmp/: {:?}", gw.tmp_files());

    // Rotate while the gateway runs: the next message is sealed to key 2.
    let out = keyring(&gw, &["rotate"]);
    assert!(out.status.success(), "rotate failed:\n{}", out.text());
    assert!(out.text().contains("alice: new current key 2"), "{}", out.text());
    let second = message("sealed two", 3);
    deliver_swaks(&gw, "alice@example.test", &second);
    let files = stored(&gw, "alice");
    assert_eq!(files.len(), 2);
    assert_eq!((key_id(&files[0]), key_id(&files[1])), (1, 2));
    let out = keyring(&gw, &["list"]);
    assert!(out.status.success(), "{}", out.text());
    let listing = out.text();
    assert!(listing.contains("alice: key 1 created") && listing.contains("current"), "{listing}");
    assert!(listing.lines().any(|l| l.starts_with("alice: key 2 ") && l.ends_with(" current")), "{listing}");

    // Both read back over POP3, byte for byte after the gateway's Received: header.
    let out_base = gw.dir.join("poplib");
    let f = poplib(&gw, &out_base);
    assert_eq!(f["pass"], "+OK Logged in, 2 messages");
    for (i, original) in [(1, &first), (2, &second)] {
        let got = fs::read(out_base.with_extension(format!("retr{i}"))).unwrap();
        assert!(got.starts_with(b"Received: "), "RETR {i}");
        assert!(got.ends_with(original), "RETR {i} does not end with the original message");
        // The listed size is the plaintext's (poplib's octet count is what was sent).
        let size = f["list"].split(',').nth(i - 1).unwrap().split(' ').nth(1).unwrap().to_owned();
        assert_eq!(f[&format!("retr{i}")], format!("+OK {size} octets\t{size}"));
        assert_eq!(size.parse::<usize>().unwrap(), got.len());
    }
    let top = String::from_utf8(fs::read(out_base.with_extension("top")).unwrap()).unwrap();
    assert!(top.contains("Subject: sealed one\r\n\r\nTOP-SECRET-MARKER"), "{top}");
    assert!(!top.contains("quick brown fox"), "TOP 1 2 sent more than two body lines");
    assert_eq!(f["quit"], "+OK Bye, 0 messages deleted");
    // The audit trail has the ring's creation at start and the rotation, seen by the
    // gateway when it first sealed to key 2.
    let out = gw_harness::audit_verify(&gw.dir.join("audit"), &["--records"]);
    assert!(out.status.success(), "audit-verify failed:\n{}", out.text());
    let records = String::from_utf8_lossy(&out.stdout).into_owned();
    let rotations: Vec<&str> = records.lines().filter(|l| l.contains("\"kind\":\"key_rotation\"")).collect();
    assert_eq!(rotations.len(), 2, "{records}");
    assert!(rotations[0].contains("\"old_id\":0") && rotations[0].contains("\"new_id\":1"), "{records}");
    assert!(rotations[1].contains("\"old_id\":1") && rotations[1].contains("\"new_id\":2"), "{records}");
    assert!(rotations.iter().all(|r| r.contains("sealing alice")), "{records}");
    // Still sealed after being read (moved to cur/ with the seen flag).
    for path in stored(&gw, "alice") {
        assert!(fs::read(&path).unwrap().starts_with(b"PSTN"), "{}", path.display());
    }
}

#[test]
fn a_tampered_sealed_message_is_never_served() {
    if !require_tool("swaks") || !require_tool("python3") {
        return;
    }
    let gw =
        Gateway::start("seal-tamper", &["--user", "alice:secret", "--allow-plaintext-auth", "--seal-store"]);
    deliver_swaks(&gw, "alice@example.test", &message("tampered", 10));
    let path = stored(&gw, "alice").remove(0);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let out_base = gw.dir.join("poplib");
    let f = poplib(&gw, &out_base);
    assert!(f["pass"].starts_with("-ERR"), "{:?}", f);
    assert!(!out_base.with_extension("retr1").exists());
    assert!(gw.log().contains("decryption failed"), "{}", gw.log());
}

#[test]
fn keyring_command_errors_are_clear() {
    let gw = Gateway::start("seal-cli", &["--user", "alice:secret", "--seal-store"]);
    let out = keyring(&gw, &["spin"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.text());
    assert!(out.text().contains("unknown keyring action \"spin\""), "{}", out.text());
    let out = keyring(&gw, &["retire", "--user", "alice", "--key", "1"]);
    assert!(!out.status.success());
    assert!(out.text().contains("current key cannot be retired"), "{}", out.text());
    let out = keyring(&gw, &["rotate", "--user", "nobody"]);
    assert!(!out.status.success());
    assert!(out.text().contains("nobody.keyring"), "{}", out.text());
}
