//! The `mail-gateway` example's audit trail with real clients: swaks (STARTTLS, AUTH with a
//! wrong and a right password) and Python's smtplib send mail, a raw client commits a
//! protocol violation; with small segments (rotation by size), after a graceful stop and a
//! restart `audit-verify` reports an intact chain across all segments of both runs with
//! the expected events; one flipped byte makes it name the broken link (file, offset,
//! record); a cut tail is recovered and reported. With `--audit-retention-days 0` old
//! segments are pruned and the rest still verifies.
//!
//! Run: `cargo test --all-features --test real_clients_audit`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// The tests own the clock for their time limits; the library bans reading it.
#![allow(clippy::disallowed_methods)]

// Each test binary uses part of the shared harness.
#[allow(dead_code)]
#[path = "common/gw_harness.rs"]
mod gw_harness;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use gw_harness::{CLIENT_TIMEOUT, Gateway, Output, audit_verify as verify, require_tool, run};
use serde_json::Value;

fn verify_json(dir: &Path) -> (Option<i32>, Value) {
    let out = verify(dir, &["--json"]);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.text()));
    (out.status.code(), json)
}

/// Stops the gateway as Ctrl-C does (it closes the open segment) and waits for it.
fn stop(gw: &mut Gateway) {
    let status = Command::new("kill").args(["-INT", &gw.pid().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(gw.wait_exit(Duration::from_secs(20)).is_some(), "the gateway did not stop:\n{}", gw.log());
}

fn swaks(port: u16, extra: &[&str]) -> Output {
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", "127.0.0.1", "--port", &port.to_string(), "--tls"])
        .args(["--from", "alice@example.test", "--to", "alice@example.test", "--timeout", "20"])
        .args(extra);
    run(cmd, None, CLIENT_TIMEOUT)
}

const SMTPLIB: &str = r#"
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20) as s:
    s.sendmail("bob@sender.test", ["alice@example.test"], b"Subject: py\r\n\r\nfrom python\r\n")
"#;

#[test]
fn audit_trail_of_real_sessions_verifies_and_shows_tampering() {
    if !require_tool("swaks") || !require_tool("python3") {
        return;
    }
    let base = std::env::temp_dir().join(format!("postern-audit-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(&base).unwrap();
    let audit = base.join("audit");
    let key = base.join("audit.key");
    let args = [
        "--user",
        "alice:correct horse",
        "--audit-dir",
        audit.to_str().unwrap(),
        "--audit-key",
        key.to_str().unwrap(),
        "--grace",
        "1",
        // Small segments: the first run alone fills several.
        "--audit-max-segment",
        "1024",
    ];

    // First run: STARTTLS delivery, a failed and a good AUTH, Python, a violation.
    let mut gw = Gateway::start("audit1", &args);
    let out = swaks(gw.port(), &[]);
    assert!(out.status.success(), "{}", out.text());
    let out = swaks(
        gw.submission_addr.port(),
        &["--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "wrong"],
    );
    assert!(!out.status.success(), "{}", out.text());
    let out = swaks(
        gw.submission_addr.port(),
        &["--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "correct horse"],
    );
    assert!(out.status.success(), "{}", out.text());
    let mut py = Command::new("python3");
    py.args(["-c", SMTPLIB, &gw.port().to_string()]);
    let out = run(py, None, CLIENT_TIMEOUT);
    assert!(out.status.success(), "{}", out.text());
    let mut raw = gw.connect();
    raw.send(b"EHLO bare.example\nQUIT\r\n");
    let _ = raw.read_to_end();
    drop(raw);
    assert_eq!(gw.delivered().len(), 3, "{}", gw.log());
    let key_mode = fs::metadata(&key).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(key_mode.permissions().mode() & 0o777, 0o600);
    }
    stop(&mut gw);
    drop(gw);

    // Second run continues the chain in a new segment.
    let mut gw = Gateway::start("audit2", &args);
    assert!(gw.log().contains("continuing at record"), "{}", gw.log());
    let out = swaks(gw.port(), &[]);
    assert!(out.status.success(), "{}", out.text());
    stop(&mut gw);
    drop(gw);

    let (code, report) = verify_json(&audit);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["intact"], true, "{report}");
    let segments = report["segments"].as_u64().unwrap();
    // The first run rotated at least once, the second run opened one more.
    assert!(segments >= 3, "rotation by size: {report}");
    assert_eq!(segments as usize, fs::read_dir(&audit).unwrap().count(), "{report}");
    assert_eq!(report["starts_at_genesis"], true, "{report}");
    assert_eq!(report["last_closed"], true, "{report}");
    assert_eq!(report["anomalies"]["unclosed_segments"], 0, "{report}");
    let kinds = &report["by_kind"];
    for kind in ["admission", "session_start", "session_end", "tls_established", "auth_success"] {
        assert!(kinds[kind].as_u64().unwrap_or(0) >= 1, "{kind}: {report}");
    }
    assert_eq!(kinds["auth_failure"], 1, "{report}");
    assert_eq!(kinds["message_accepted"], 4, "{report}");
    assert!(kinds["protocol_violation"].as_u64().unwrap_or(0) >= 1, "{report}");
    let text = verify(&audit, &[]).text();
    assert!(text.contains("result: OK, the chain is intact"), "{text}");
    assert!(text.contains("1 auth_failure"), "{text}");

    // The records, as JSON lines: the failed login names its user.
    let records = verify(&audit, &["--records"]);
    let lines: Vec<Value> =
        String::from_utf8_lossy(&records.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len() as u64, report["records"].as_u64().unwrap());
    assert!(lines.iter().any(|r| r["kind"] == "auth_failure" && r["user"] == "alice"), "{lines:?}");
    assert!(lines.iter().enumerate().all(|(i, r)| r["record"] == i as u64));

    // One flipped byte in the first segment: the verifier names the link.
    let first = audit.join("segment-0000000000.audit");
    let original = fs::read(&first).unwrap();
    let mut bytes = original.clone();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    fs::write(&first, &bytes).unwrap();
    let (code, report) = verify_json(&audit);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["intact"], false);
    let broken = &report["broken"];
    assert_eq!(broken["file"], "segment-0000000000.audit", "{report}");
    assert_eq!(broken["segment"], 0);
    let offset = broken["offset"].as_u64().unwrap() as usize;
    assert!(offset <= at && at - offset < 2048, "flipped {at}, reported {offset}: {report}");
    assert_eq!(broken["record"], report["records"], "{report}");
    let text = verify(&audit, &[]).text();
    assert!(text.contains("result: BROKEN at segment-0000000000.audit (segment 0) at offset"), "{text}");

    // A cut tail (a crash while writing) is recovered up to the last whole record.
    fs::write(&first, &original).unwrap();
    let last_name = format!("segment-{:010}.audit", segments - 1);
    let second = audit.join(&last_name);
    let mut tail = fs::read(&second).unwrap();
    tail.truncate(tail.len() - 10);
    fs::write(&second, &tail).unwrap();
    let (code, report) = verify_json(&audit);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["anomalies"]["truncated_count"], 1, "{report}");
    assert_eq!(report["anomalies"]["truncated"][0]["file"], last_name.as_str());
    assert_eq!(report["last_closed"], false);

    let _ = fs::remove_dir_all(&base);
}

#[test]
fn pruned_segments_leave_the_rest_verifiable() {
    if !require_tool("swaks") {
        return;
    }
    let base = std::env::temp_dir().join(format!("postern-audit-prune-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(&base).unwrap();
    let audit = base.join("audit");
    // Retention 0 days: every closed segment but the newest is deleted at each rotation and
    // start; small segments rotate often.
    let args = [
        "--audit-dir",
        audit.to_str().unwrap(),
        "--audit-max-segment",
        "1024",
        "--audit-retention-days",
        "0",
    ];
    let mut gw = Gateway::start("prune", &args);
    // About 500 bytes of records per session: three rotations or more.
    for _ in 0..10 {
        let out = swaks(gw.port(), &[]);
        assert!(out.status.success(), "{}", out.text());
    }
    stop(&mut gw);
    let log = gw.log();
    drop(gw);
    assert!(log.contains("audit: pruned"), "{log}");
    assert!(!audit.join("segment-0000000000.audit").exists());

    let key = base.join("audit.key");
    let out = verify(&audit, &["--json", "--key", key.to_str().unwrap()]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.text()));
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["starts_at_genesis"], false, "{report}");
    assert!(report["start"]["record"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["last_closed"], true, "{report}");
    let text = verify(&audit, &[]).text();
    assert!(text.contains("(older segments pruned)"), "{text}");
    let _ = fs::remove_dir_all(&base);
}
