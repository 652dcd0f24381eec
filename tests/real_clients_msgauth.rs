//! Message authentication in the `mail-gateway` example with swaks: DNS from a zone file
//! (`--dns-zone`), SPF/DKIM/DMARC at the end of DATA on `--smtp`, DKIM signing on submission.
//!
//! The sending addresses are chosen with `swaks --local-interface 127.0.0.x` (Linux routes
//! all of 127.0.0.0/8 to loopback).
//!
//! Run: `cargo test --all-features --test real_clients_msgauth` (the harness builds the example).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// The tests own the clock for their time limits; the library bans reading it.
#![allow(clippy::disallowed_methods)]

// Not every harness helper is used here.
#[allow(dead_code)]
#[path = "common/gw_harness.rs"]
mod gw_harness;

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::SystemTime;

use gw_harness::{CLIENT_TIMEOUT, Gateway, Output, require_tool, run};
use postern::msgauth::{AuthResult, CheckInput, DnsAnswer, DnsQuery, Record, RecordType, Signer, Verifier};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/msgauth")
}

/// The sending domains' policies, and the key of sender.test's signer.
fn zone(signer: &Signer) -> String {
    format!(
        "# sender.test: only 127.0.0.2 may send, DMARC reject, DKIM selector s1\n\
         sender.test TXT \"v=spf1 ip4:127.0.0.2 -all\"\n\
         _dmarc.sender.test TXT \"v=DMARC1; p=reject\"\n\
         s1._domainkey.sender.test TXT \"{}\"\n\
         # quarantine.test: DMARC quarantine, nobody authorised\n\
         quarantine.test TXT \"v=spf1 -all\"\n\
         _dmarc.quarantine.test TXT \"v=DMARC1; p=quarantine\"\n\
         127.0.0.2 PTR mx.sender.test\n\
         mx.sender.test A 127.0.0.2\n",
        signer.dns_record()
    )
}

fn start(name: &str, signer: &Signer, extra: &[&str]) -> Gateway {
    // The gateway reads the zone at start; the file can go once it listens.
    let zone_file = std::env::temp_dir().join(format!("postern-zone-{}-{name}.txt", std::process::id()));
    fs::write(&zone_file, zone(signer)).unwrap();
    let zone_arg = zone_file.display().to_string();
    let mut args = vec!["--msgauth", "on", "--hostname", "mx.example.test", "--dns-zone", &zone_arg];
    args.extend_from_slice(extra);
    let gw = Gateway::start(name, &args);
    let _ = fs::remove_file(&zone_file);
    gw
}

fn swaks(gw: &Gateway, source: &str, mail_from: &str, data: &str) -> Output {
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", "127.0.0.1", "--port", &gw.port().to_string(), "--timeout", "20"]);
    cmd.args(["--local-interface", source, "--from", mail_from, "--helo", "client.sender.test"]);
    cmd.args(["--to", "bob@example.test", "--data", data]);
    run(cmd, None, CLIENT_TIMEOUT)
}

fn data_file(gw: &Gateway, name: &str, message: &[u8]) -> String {
    let path = gw.dir.join(name);
    fs::write(&path, message.strip_suffix(b"\r\n").unwrap()).unwrap();
    path.display().to_string()
}

fn message(from: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: bob@example.test\r\nSubject: {subject}\r\nDate: Sun, 29 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <{}@sender.test>\r\n\r\nHello Bob,\r\n\r\nthe report is attached.\r\n",
        subject.replace(' ', "-")
    )
    .into_bytes()
}

fn signer() -> Signer {
    let pem = fs::read_to_string(data_dir().join("ed25519.pem")).unwrap();
    Signer::from_pem(&pem, "sender.test", "s1").unwrap()
}

fn header_block(content: &[u8]) -> String {
    let end = content.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    String::from_utf8_lossy(&content[..end + 2]).into_owned()
}

#[test]
fn signed_mail_from_an_authorised_ip_is_delivered_with_authentication_results() {
    if !require_tool("swaks") {
        return;
    }
    let signer = signer();
    let gw = start("msgauth-pass", &signer, &[]);
    let mut msg =
        signer.sign(&message("Alice <alice@sender.test>", "quarterly report")).unwrap().into_bytes();
    msg.extend_from_slice(&message("Alice <alice@sender.test>", "quarterly report"));
    let data = data_file(&gw, "signed.eml", &msg);
    let out = swaks(&gw, "127.0.0.2", "alice@sender.test", &data);
    assert!(out.status.success(), "swaks failed:\n{}\n{}", out.text(), gw.log());
    let delivered = gw.delivered();
    assert_eq!(delivered.len(), 1, "{}", gw.log());
    let (received, rest) = delivered[0].split_received();
    assert!(received.starts_with("Received: from "));
    let headers = header_block(rest);
    assert!(headers.starts_with("Authentication-Results: mx.example.test;"), "{headers}");
    for want in [
        "dkim=pass header.d=sender.test header.s=s1",
        "spf=pass smtp.mailfrom=alice@sender.test",
        "dmarc=pass (p=reject dis=none) header.from=sender.test",
    ] {
        assert!(headers.contains(want), "missing {want:?} in\n{headers}");
    }
    // After Authentication-Results: the message exactly as sent.
    let ar_end = rest
        .windows(2)
        .enumerate()
        .find(|(i, w)| *w == b"\r\n" && rest.get(i + 2) != Some(&b'\t'))
        .unwrap()
        .0;
    assert_eq!(&rest[ar_end + 2..], &msg[..]);
    // The audit trail records the delivery with its verdicts.
    let records = audit_records(&gw);
    assert!(
        records.iter().any(|r| r.contains("\"kind\":\"message_accepted\"")
            && r.contains("dkim=pass")
            && r.contains("dmarc=pass")),
        "{records:#?}"
    );
}

/// The gateway's audit records (default audit dir, next to the Maildir), as JSON lines.
fn audit_records(gw: &Gateway) -> Vec<String> {
    let out = gw_harness::audit_verify(&gw.dir.join("audit"), &["--records"]);
    assert!(out.status.success(), "audit-verify failed:\n{}", out.text());
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

#[test]
fn spoofed_mail_from_an_unauthorised_ip_is_refused_550_5_7_1() {
    if !require_tool("swaks") {
        return;
    }
    let signer = signer();
    let gw = start("msgauth-spoof", &signer, &[]);
    let data = data_file(&gw, "spoof.eml", &message("CEO <ceo@sender.test>", "urgent wire transfer"));
    let out = swaks(&gw, "127.0.0.3", "ceo@sender.test", &data);
    assert!(!out.status.success(), "swaks should fail:\n{}", out.text());
    let text = out.text();
    assert!(text.contains("550 5.7.1"), "{text}");
    assert!(text.contains("DMARC policy of sender.test"), "{text}");
    assert!(gw.delivered().is_empty());
    assert!(gw.log().contains("rejected: DMARC policy of sender.test"), "{}", gw.log());
    let records = audit_records(&gw);
    assert!(
        records.iter().any(|r| r.contains("\"kind\":\"policy_rejection\"")
            && r.contains("dmarc")
            && r.contains("550 5.7.1")),
        "{records:#?}"
    );
}

#[test]
fn dmarc_quarantine_goes_to_the_junk_folder() {
    if !require_tool("swaks") {
        return;
    }
    let signer = signer();
    let gw = start("msgauth-junk", &signer, &[]);
    let data = data_file(&gw, "junk.eml", &message("Promo <deals@quarantine.test>", "offer"));
    let out = swaks(&gw, "127.0.0.4", "deals@quarantine.test", &data);
    assert!(out.status.success(), "swaks failed:\n{}", out.text());
    assert!(gw.delivered().is_empty(), "not in the inbox");
    let junk = gw.maildir.join("bob/.Junk");
    assert!(junk.join("maildirfolder").is_file());
    let files: Vec<_> = fs::read_dir(junk.join("new")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1);
    let content = fs::read(&files[0]).unwrap();
    let text = String::from_utf8_lossy(&content);
    assert!(text.contains("dmarc=fail (p=quarantine dis=quarantine) header.from=quarantine.test"), "{text}");
}

#[test]
fn submission_from_an_authenticated_user_is_dkim_signed() {
    if !require_tool("swaks") {
        return;
    }
    let signer = signer();
    let key = data_dir().join("rsa2048.pem").display().to_string();
    let gw = start(
        "msgauth-sign",
        &signer,
        &[
            "--user",
            "alice:secret-pw",
            "--allow-plaintext-auth",
            "--dkim-key",
            &key,
            "--dkim-selector",
            "gw1",
        ],
    );
    let msg = message("Alice <alice@example.test>", "signed on submission");
    let data = data_file(&gw, "submit.eml", &msg);
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", "127.0.0.1", "--port", &gw.submission_addr.port().to_string(), "--timeout", "20"]);
    cmd.args(["--from", "alice@example.test", "--to", "bob@example.test", "--helo", "laptop.example.test"]);
    cmd.args(["--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "secret-pw", "--data", &data]);
    let out = run(cmd, None, CLIENT_TIMEOUT);
    assert!(out.status.success(), "swaks failed:\n{}\n{}", out.text(), gw.log());
    let delivered = gw.delivered();
    assert_eq!(delivered.len(), 1, "{}", gw.log());
    let (_, rest) = delivered[0].split_received();
    assert!(rest.starts_with(b"DKIM-Signature: v=1; a=rsa-sha256;"), "{}", String::from_utf8_lossy(rest));
    // The signature verifies against the key's public record.
    let gw_signer = Signer::from_pem(&fs::read_to_string(&key).unwrap(), "example.test", "gw1").unwrap();
    let record = gw_signer.dns_record();
    let verifier = Verifier::new("mx.check").unwrap();
    let input = CheckInput::new(
        "127.0.0.1".parse().unwrap(),
        "laptop.example.test",
        "",
        rest.to_vec(),
        SystemTime::now(),
    );
    let verdict = verifier.start(input).run_with(|q: &DnsQuery| {
        if q.rtype == RecordType::Txt && q.name == "gw1._domainkey.example.test." {
            DnsAnswer::Records(vec![Record::Txt(record.clone())])
        } else {
            DnsAnswer::NxDomain
        }
    });
    assert_eq!(verdict.dkim.len(), 1);
    assert_eq!(verdict.dkim[0].result, AuthResult::Pass, "{:?}", verdict.dkim[0]);
    assert_eq!(verdict.dkim[0].domain, "example.test");
}

/// A display name impersonating one of the gateway's own domains is a strong spoofing
/// signal: delivered to Junk (not the inbox), logged, and recorded in the audit trail. A
/// plain message from the same unknown domain still reaches the inbox.
#[test]
fn display_name_spoof_of_an_internal_domain_goes_to_junk() {
    if !require_tool("swaks") {
        return;
    }
    let signer = signer();
    let gw = start("msgauth-spoof-name", &signer, &[]);
    let plain = data_file(&gw, "plain.eml", &message("Newsletter <news@other.test>", "news"));
    let out = swaks(&gw, "127.0.0.5", "news@other.test", &plain);
    assert!(out.status.success(), "swaks failed:\n{}", out.text());
    assert_eq!(gw.delivered().len(), 1, "{}", gw.log());

    let spoof = data_file(
        &gw,
        "spoof-name.eml",
        &message("\"IT Desk it@example.test\" <helpdesk@other.test>", "password expiry"),
    );
    let out = swaks(&gw, "127.0.0.5", "helpdesk@other.test", &spoof);
    assert!(out.status.success(), "swaks failed:\n{}", out.text());
    assert_eq!(gw.delivered().len(), 1, "the spoof must not reach the inbox:\n{}", gw.log());
    let junk: Vec<_> =
        fs::read_dir(gw.maildir.join("bob/.Junk/new")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(junk.len(), 1);
    assert!(String::from_utf8_lossy(&fs::read(&junk[0]).unwrap()).contains("Subject: password expiry"));
    let log = gw.log();
    assert!(log.contains("signal DisplayNameSpoof"), "{log}");
    assert!(log.contains("quarantined (impersonation or replay) into Junk"), "{log}");
    let records = audit_records(&gw);
    assert!(
        records.iter().any(|r| r.contains("\"kind\":\"message_accepted\"") && r.contains("DisplayNameSpoof")),
        "{records:#?}"
    );
}

/// DKIM replay: the same signed message sent again from more and more addresses. Each
/// copy passes DKIM (and DMARC through it), but once the signature has come from as many
/// sources as `ReplayConfig::default().max_sources`, further copies go to Junk.
#[test]
fn a_dkim_signature_replayed_from_many_sources_goes_to_junk() {
    if !require_tool("swaks") {
        return;
    }
    let signer = signer();
    let gw = start("msgauth-replay", &signer, &[]);
    let body = message("Alice <alice@sender.test>", "invoice");
    let mut msg = signer.sign(&body).unwrap().into_bytes();
    msg.extend_from_slice(&body);
    let data = data_file(&gw, "replayed.eml", &msg);
    let sources = ["127.0.0.2", "127.0.0.6", "127.0.0.7", "127.0.0.8", "127.0.0.9"];
    for source in sources {
        let out = swaks(&gw, source, "alice@sender.test", &data);
        assert!(out.status.success(), "swaks from {source} failed:\n{}\n{}", out.text(), gw.log());
    }
    let threshold = postern::msgauth::ReplayConfig::default().max_sources;
    let junk = fs::read_dir(gw.maildir.join("bob/.Junk/new")).map_or(0, |d| d.count());
    assert_eq!(gw.delivered().len(), threshold - 1, "{}", gw.log());
    assert_eq!(junk, sources.len() - (threshold - 1), "{}", gw.log());
    assert!(gw.log().contains("signal ManySources"), "{}", gw.log());
}
