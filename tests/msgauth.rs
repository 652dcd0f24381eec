//! Message authentication through the public API: DMARC tables (RFC 7489 examples,
//! alignment, sp=, pct=), sign → verify round trips and tampering, the DNS loop's bounds,
//! replay and spoofing signals.
#![cfg(feature = "msgauth")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
#![allow(clippy::disallowed_methods)] // one real Instant: the base of the virtual clock

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use postern::msgauth::{
    AuthResult, CheckInput, Disposition, DnsAnswer, DnsLimits, DnsQuery, MsgAuthError, Policy, Progress,
    Record, RecordType, ReplayConfig, ReplayDetector, ReplaySignal, SignOptions, Signer, SpoofSignal,
    Verdict, Verifier, coverage_signals, spoof_signals,
};

#[derive(Default, Clone)]
struct Zone(HashMap<(String, RecordType), DnsAnswer>);

impl Zone {
    fn txt(mut self, name: &str, text: &str) -> Self {
        self.0.insert(
            (DnsQuery::new(name, RecordType::Txt).name, RecordType::Txt),
            DnsAnswer::Records(vec![Record::Txt(text.to_owned())]),
        );
        self
    }
    fn answer(mut self, name: &str, rtype: RecordType, answer: DnsAnswer) -> Self {
        self.0.insert((DnsQuery::new(name, rtype).name, rtype), answer);
        self
    }
    fn resolve(&self, q: &DnsQuery) -> DnsAnswer {
        self.0.get(&(q.name.clone(), q.rtype)).cloned().unwrap_or(DnsAnswer::NxDomain)
    }
}

const NOW: u64 = 1_800_000_000;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
}

fn message(from: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@{from}>\r\nTo: bob@example.net\r\nSubject: quarterly report\r\n\
         Date: Thu, 1 Jan 2026 00:00:00 +0000\r\nMessage-ID: <1@{from}>\r\n\r\nHello Bob,\r\nsee attached.\r\n"
    )
    .into_bytes()
}

fn check(zone: &Zone, ip: &str, mail_from: &str, msg: Vec<u8>, roll: u8) -> Verdict {
    let verifier = Verifier::new("mx.example.net").unwrap();
    let helo = mail_from.rsplit_once('@').map_or("client.example", |(_, d)| d);
    let input = CheckInput::new(ip.parse().unwrap(), helo, mail_from, msg, now()).with_dmarc_roll(roll);
    verifier.start(input).run_with(|q| zone.resolve(q))
}

fn spf_zone() -> Zone {
    Zone::default()
        .txt("example.com", "v=spf1 ip4:192.0.2.0/24 -all")
        .txt("bounce.example.com", "v=spf1 ip4:192.0.2.0/24 -all")
        .txt("news.example.com", "v=spf1 ip4:192.0.2.0/24 -all")
        .txt("other.example", "v=spf1 ip4:203.0.113.0/24 -all")
}

/// RFC 7489 Appendix B.2 policy records, the From domain example.com, SPF only.
#[test]
fn dmarc_rfc7489_appendix_b_records() {
    struct Case {
        record: &'static str,
        ip: &'static str,
        mail_from: &'static str,
        result: AuthResult,
        policy: Policy,
        disposition: Disposition,
    }
    let cases = [
        // B.2.1: monitoring only.
        Case {
            record: "v=DMARC1; p=none; rua=mailto:dmarc-feedback@example.com",
            ip: "198.51.100.1",
            mail_from: "alice@example.com",
            result: AuthResult::Fail,
            policy: Policy::None,
            disposition: Disposition::Accept,
        },
        // B.2.2: failure reports to a third party; still p=none.
        Case {
            record: "v=DMARC1; p=none; rua=mailto:dmarc-feedback@example.com; ruf=mailto:auth-reports@thirdparty.example.net",
            ip: "192.0.2.10",
            mail_from: "alice@example.com",
            result: AuthResult::Pass,
            policy: Policy::None,
            disposition: Disposition::Accept,
        },
        // B.2.3: quarantine at 25 %; roll 0 is sampled.
        Case {
            record: "v=DMARC1; p=quarantine; rua=mailto:dmarc-feedback@example.com,mailto:tld-test@thirdparty.example.net!10m; pct=25",
            ip: "198.51.100.1",
            mail_from: "alice@example.com",
            result: AuthResult::Fail,
            policy: Policy::Quarantine,
            disposition: Disposition::Quarantine,
        },
        // Relaxed SPF alignment: bounce.example.com aligns with example.com.
        Case {
            record: "v=DMARC1; p=reject",
            ip: "192.0.2.10",
            mail_from: "bounces@bounce.example.com",
            result: AuthResult::Pass,
            policy: Policy::Reject,
            disposition: Disposition::Accept,
        },
        // Strict SPF alignment: it does not.
        Case {
            record: "v=DMARC1; p=reject; aspf=s",
            ip: "192.0.2.10",
            mail_from: "bounces@bounce.example.com",
            result: AuthResult::Fail,
            policy: Policy::Reject,
            disposition: Disposition::Reject,
        },
        // SPF passes for an unrelated domain: not aligned.
        Case {
            record: "v=DMARC1; p=reject",
            ip: "203.0.113.5",
            mail_from: "x@other.example",
            result: AuthResult::Fail,
            policy: Policy::Reject,
            disposition: Disposition::Reject,
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        let zone = spf_zone().txt("_dmarc.example.com", c.record);
        let v = check(&zone, c.ip, c.mail_from, message("example.com"), 0);
        assert_eq!(v.dmarc.result, c.result, "case {i}: {:?}", v.dmarc);
        assert_eq!(v.dmarc.policy, c.policy, "case {i}");
        assert_eq!(v.dmarc.disposition, c.disposition, "case {i}");
        assert_eq!(v.dmarc.policy_domain.as_deref(), Some("example.com"), "case {i}");
        assert_eq!(v.dmarc.from_domain, "example.com");
    }
}

#[test]
fn dmarc_subdomain_policy_sp() {
    // news.example.com has no record: the organizational domain's sp= applies.
    let zone = spf_zone().txt("_dmarc.example.com", "v=DMARC1; p=none; sp=reject");
    let v = check(&zone, "198.51.100.1", "x@news.example.com", message("news.example.com"), 0);
    assert_eq!(v.dmarc.result, AuthResult::Fail);
    assert_eq!(v.dmarc.policy, Policy::Reject);
    assert_eq!(v.dmarc.policy_domain.as_deref(), Some("example.com"));
    assert_eq!(v.dmarc.disposition, Disposition::Reject);
    // The organizational domain itself gets p=.
    let v = check(&zone, "198.51.100.1", "x@example.com", message("example.com"), 0);
    assert_eq!(v.dmarc.policy, Policy::None);
    assert_eq!(v.dmarc.disposition, Disposition::Accept);
    // A subdomain with its own record uses its own p=.
    let zone = zone.txt("_dmarc.news.example.com", "v=DMARC1; p=quarantine");
    let v = check(&zone, "198.51.100.1", "x@news.example.com", message("news.example.com"), 0);
    assert_eq!(v.dmarc.policy, Policy::Quarantine);
    assert_eq!(v.dmarc.policy_domain.as_deref(), Some("news.example.com"));
}

#[test]
fn dmarc_pct_sampling_with_the_callers_roll() {
    let table = [
        // (record, roll, disposition)
        ("v=DMARC1; p=reject; pct=20", 0, Disposition::Reject),
        ("v=DMARC1; p=reject; pct=20", 19, Disposition::Reject),
        ("v=DMARC1; p=reject; pct=20", 20, Disposition::Quarantine),
        ("v=DMARC1; p=reject; pct=20", 99, Disposition::Quarantine),
        ("v=DMARC1; p=reject", 99, Disposition::Reject),
        ("v=DMARC1; p=quarantine; pct=50", 49, Disposition::Quarantine),
        ("v=DMARC1; p=quarantine; pct=50", 50, Disposition::Accept),
        ("v=DMARC1; p=quarantine; pct=0", 0, Disposition::Accept),
        ("v=DMARC1; p=none; pct=100", 0, Disposition::Accept),
    ];
    for (record, roll, expected) in table {
        let zone = spf_zone().txt("_dmarc.example.com", record);
        let v = check(&zone, "198.51.100.1", "x@example.com", message("example.com"), roll);
        assert_eq!(v.dmarc.disposition, expected, "{record} roll {roll}");
        // Deterministic: the same inputs give the same verdict.
        assert_eq!(v, check(&zone, "198.51.100.1", "x@example.com", message("example.com"), roll));
    }
}

#[test]
fn dmarc_none_and_temperror() {
    let v = check(&spf_zone(), "198.51.100.1", "x@example.com", message("example.com"), 0);
    assert_eq!(v.dmarc.result, AuthResult::None);
    assert_eq!(v.dmarc.disposition, Disposition::Accept);
    let zone = spf_zone().answer("_dmarc.example.com", RecordType::Txt, DnsAnswer::ServFail);
    let v = check(&zone, "198.51.100.1", "x@example.com", message("example.com"), 0);
    assert_eq!(v.dmarc.result, AuthResult::TempError);
    assert_eq!(v.dmarc.disposition, Disposition::Accept);
    assert!(v.authentication_results().contains("dmarc=temperror"));
    // SPF SERVFAIL is a temperror too.
    let zone = Zone::default().answer("example.com", RecordType::Txt, DnsAnswer::ServFail);
    let v = check(&zone, "198.51.100.1", "x@example.com", message("example.com"), 0);
    assert_eq!(v.spf_mail_from.result, AuthResult::TempError);
}

fn ed25519_signer(domain: &str) -> Signer {
    let pkcs8 = Signer::generate_ed25519_pkcs8().unwrap();
    Signer::from_ed25519_pkcs8(&pkcs8, domain, "s1").unwrap()
}

fn signed(signer: &Signer, msg: &[u8]) -> Vec<u8> {
    let mut out = signer.sign(msg).unwrap().into_bytes();
    out.extend_from_slice(msg);
    out
}

fn dkim_zone(signers: &[&Signer]) -> Zone {
    let mut zone = Zone::default().txt("_dmarc.example.com", "v=DMARC1; p=reject");
    for s in signers {
        zone = zone.txt(&format!("{}._domainkey.{}", s.selector(), s.domain()), &s.dns_record());
    }
    zone
}

#[test]
fn sign_then_verify_round_trip_ed25519_and_rsa() {
    let rsa_pem =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/msgauth/rsa2048.pem"))
            .unwrap();
    let rsa = Signer::from_pem(&rsa_pem, "example.com", "rsa1").unwrap();
    let ed = ed25519_signer("example.com");
    for signer in [&ed, &rsa] {
        let zone = dkim_zone(&[signer]);
        let msg = signed(signer, &message("example.com"));
        let header = String::from_utf8_lossy(&msg);
        let h_tag = header
            .split("h=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .replace(['\r', '\n', '\t', ' '], "");
        let names: Vec<&str> = h_tag.split(':').collect();
        for oversigned in ["From", "Subject", "To", "Date"] {
            assert_eq!(names.iter().filter(|n| n.eq_ignore_ascii_case(oversigned)).count(), 2, "{h_tag}");
        }
        assert!(!header.contains("; l="));
        // Unauthorised IP, no SPF: DKIM alone carries DMARC.
        let v = check(&zone, "198.51.100.1", "x@elsewhere.example", msg.clone(), 0);
        assert_eq!(v.dkim.len(), 1);
        assert_eq!(v.dkim[0].result, AuthResult::Pass, "{:?}", v.dkim[0]);
        assert_eq!(v.dkim[0].domain, "example.com");
        assert!(v.dmarc.dkim_aligned);
        assert_eq!(v.dmarc.result, AuthResult::Pass);
        assert_eq!(v.dmarc.disposition, Disposition::Accept);
        assert!(coverage_signals(&v.dkim[0], &msg).is_empty(), "{:?}", coverage_signals(&v.dkim[0], &msg));
        let ar = v.authentication_results();
        assert!(ar.contains("dkim=pass header.d=example.com"), "{ar}");

        // Tamper with one header byte, then one body byte: fail, and DMARC rejects.
        for (needle, replacement) in
            [(&b"quarterly"[..], &b"Quarterly"[..]), (b"see attached", b"see attacked")]
        {
            let mut bad = msg.clone();
            let at = bad.windows(needle.len()).position(|w| w == needle).unwrap();
            bad[at..at + needle.len()].copy_from_slice(replacement);
            let v = check(&zone, "198.51.100.1", "x@elsewhere.example", bad, 0);
            assert_ne!(v.dkim[0].result, AuthResult::Pass);
            assert_eq!(v.dmarc.result, AuthResult::Fail);
            assert_eq!(v.dmarc.disposition, Disposition::Reject);
        }
    }
}

#[test]
fn oversigned_from_resists_an_added_from() {
    let ed = ed25519_signer("example.com");
    let zone = dkim_zone(&[&ed]);
    let msg = signed(&ed, &message("example.com"));
    let mut forged = b"From: ceo@example.com\r\n".to_vec();
    forged.extend_from_slice(&msg);
    let v = check(&zone, "198.51.100.1", "x@elsewhere.example", forged, 0);
    assert_ne!(v.dkim.first().map(|d| d.result), Some(AuthResult::Pass));
}

#[test]
fn expiry_is_judged_against_the_callers_clock() {
    // x= one hour after signing (signing stamps t= from the system clock).
    let pkcs8 = Signer::generate_ed25519_pkcs8().unwrap();
    let ed = Signer::from_ed25519_pkcs8(&pkcs8, "example.com", "s1")
        .unwrap()
        .with_options(&SignOptions { expiry_secs: Some(3600), ..SignOptions::default() });
    let zone = dkim_zone(&[&ed]);
    let msg = signed(&ed, &message("example.com"));
    let system_now = SystemTime::now();
    let verifier = Verifier::new("mx.example.net").unwrap();
    let run = |at: SystemTime| {
        let input = CheckInput::new("198.51.100.1".parse().unwrap(), "h.example", "", msg.clone(), at);
        verifier.start(input).run_with(|q| zone.resolve(q))
    };
    let fresh = run(system_now);
    assert_eq!(fresh.dkim[0].result, AuthResult::Pass);
    assert!(!fresh.dkim[0].expired);
    let later = run(system_now + Duration::from_secs(7200));
    assert_eq!(later.dkim[0].result, AuthResult::Neutral);
    assert!(later.dkim[0].expired);
    assert_eq!(later.dmarc.result, AuthResult::Fail, "an expired signature does not carry DMARC");
    assert!(coverage_signals(&later.dkim[0], &msg).iter().any(|s| matches!(s, ReplaySignal::Expired { .. })));
}

#[test]
fn key_loading_errors_are_clear() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/msgauth/");
    for (file, alg) in [
        ("rsa2048.pem", postern::msgauth::KeyAlgorithm::RsaSha256),
        ("rsa2048-pkcs1.pem", postern::msgauth::KeyAlgorithm::RsaSha256),
        ("ed25519.pem", postern::msgauth::KeyAlgorithm::Ed25519Sha256),
    ] {
        let pem = std::fs::read_to_string(format!("{dir}{file}")).unwrap();
        let signer = Signer::from_pem(&pem, "Example.COM", "sel").unwrap();
        assert_eq!(signer.algorithm(), alg, "{file}");
        assert_eq!(signer.domain(), "example.com");
        assert!(format!("{signer:?}").find("PRIVATE").is_none());
        // Signed with the PEM key, verified with the published record.
        let zone = dkim_zone(&[&signer]);
        let v = check(&zone, "198.51.100.1", "", signed(&signer, &message("example.com")), 0);
        assert_eq!(v.dkim[0].result, AuthResult::Pass, "{file}");
    }
    let e = Signer::from_pem("not a key", "example.com", "s1").unwrap_err();
    assert!(matches!(e, MsgAuthError::Key(_)), "{e}");
    assert!(e.to_string().contains("no PEM private key"), "{e}");
    let e = Signer::from_ed25519_pkcs8(b"\x30\x00", "example.com", "s1").unwrap_err();
    assert!(e.to_string().contains("invalid Ed25519 key"), "{e}");
    let e = Signer::from_pem("x", "bad domain", "s1").unwrap_err();
    assert!(matches!(e, MsgAuthError::InvalidName("domain", _)), "{e}");
    let ec = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBYr\n-----END EC PRIVATE KEY-----\n";
    let e = Signer::from_pem(ec, "example.com", "s1").unwrap_err();
    assert!(e.to_string().contains("EC") || e.to_string().contains("PEM"), "{e}");
}

#[test]
fn replay_from_many_ips_signals_but_a_list_forward_does_not() {
    let ed = ed25519_signer("example.com");
    let zone = dkim_zone(&[&ed]);
    let msg = signed(&ed, &message("example.com"));
    let v = check(&zone, "192.0.2.10", "alice@example.com", msg.clone(), 0);
    let sig = &v.dkim[0];
    assert_eq!(sig.result, AuthResult::Pass);
    let t0 = Instant::now();
    let mut replay = ReplayDetector::new(ReplayConfig::default());

    // A mailing list: one list server forwards the message to a handful of our users.
    let list: IpAddr = "203.0.113.7".parse().unwrap();
    let members = ["a@example.net", "b@example.net", "c@example.net", "d@example.net", "e@example.net"];
    assert!(replay.observe(sig, "192.0.2.10".parse().unwrap(), &["list@lists.example"], t0).is_empty());
    assert!(replay.observe(sig, list, &members, t0 + Duration::from_secs(30)).is_empty());

    // A replay: the same signed message from many unrelated addresses within the hour.
    let mut fired = Vec::new();
    for i in 1..=10u8 {
        let ip = IpAddr::from([198, 51, 100, i]);
        fired = replay.observe(sig, ip, &["victim@example.net"], t0 + Duration::from_secs(60 * u64::from(i)));
        if !fired.is_empty() {
            break;
        }
    }
    assert!(
        matches!(fired.first(), Some(ReplaySignal::ManySources { domain, .. }) if domain == "example.com"),
        "{fired:?}"
    );
    // Failing signatures are not counted.
    let mut failing = sig.clone();
    failing.result = AuthResult::Fail;
    assert!(replay.observe(&failing, "198.51.100.200".parse().unwrap(), &[], t0).is_empty());
}

#[test]
fn weak_coverage_and_l_tag_signals() {
    let ed = ed25519_signer("example.com")
        .with_options(&SignOptions { headers: vec!["From".into(), "Subject".into()], expiry_secs: None });
    let zone = dkim_zone(&[&ed]);
    let msg = signed(&ed, &message("example.com"));
    let v = check(&zone, "192.0.2.10", "alice@example.com", msg.clone(), 0);
    let signals = coverage_signals(&v.dkim[0], &msg);
    assert!(
        signals
            .iter()
            .any(|s| matches!(s, ReplaySignal::WeakHeaderCoverage { from_not_oversigned: true, missing, .. }
            if missing == &["To".to_owned(), "Date".to_owned()])),
        "{signals:?}"
    );
    // A hand-made verdict with l= shorter than the body.
    let mut with_l = v.dkim[0].clone();
    with_l.body_length = Some(5);
    assert!(
        coverage_signals(&with_l, &msg)
            .iter()
            .any(|s| matches!(s, ReplaySignal::UnsignedBodyContent { signed: 5, .. }))
    );
}

#[test]
fn spoofing_signals() {
    let internal = ["example.com"];
    let msg = b"From: \"ceo@example.com\" <ceo@evil.example>\r\nReply-To: pay@collect.example\r\nSubject: wire\r\n\r\nx\r\n";
    let s = spoof_signals(msg, "bounce@evil.example", &internal, &internal);
    assert!(
        s.iter().any(
            |x| matches!(x, SpoofSignal::DisplayNameSpoof { internal, .. } if internal == "example.com")
        ),
        "{s:?}"
    );
    assert!(s.iter().any(
        |x| matches!(x, SpoofSignal::ReplyToMisaligned { reply_to, .. } if reply_to == "collect.example")
    ));
    assert!(!s.iter().any(|x| matches!(x, SpoofSignal::ReturnPathMisaligned { .. })));
    // Cyrillic 'а' in exаmple.com, sent as an IDN A-label and as UTF-8.
    for from in ["xn--exmple-4nf.com", "exаmple.com", "examp1e.com"] {
        let msg = format!("From: Boss <boss@{from}>\r\nSubject: hi\r\n\r\nx\r\n");
        let s = spoof_signals(msg.as_bytes(), "", &internal, &internal);
        assert!(
            s.iter()
                .any(|x| matches!(x, SpoofSignal::LookAlike { resembles, .. } if resembles == "example.com")),
            "{from}: {s:?}"
        );
    }
    // Legitimate mail: nothing.
    let msg = b"From: Alice <alice@example.com>\r\nReply-To: alice@lists.example.com\r\n\r\nx\r\n";
    assert!(spoof_signals(msg, "bounce@mail.example.com", &internal, &internal).is_empty());
    let msg = b"From: Alice <alice@example.com>\r\n\r\nx\r\n";
    let s = spoof_signals(msg, "bounce@esp.example", &internal, &internal);
    assert!(matches!(s.as_slice(), [SpoofSignal::ReturnPathMisaligned { .. }]), "{s:?}");
}

#[test]
fn the_query_loop_is_bounded_and_strict() {
    let verifier = Verifier::new("mx.example.net").unwrap();
    // Unasked answers are refused.
    let input = CheckInput::new(
        "192.0.2.1".parse().unwrap(),
        "h.example",
        "a@example.com",
        message("example.com"),
        now(),
    );
    let mut check = verifier.start(input.clone());
    let q = DnsQuery::new("never-asked.example", RecordType::Txt);
    assert!(matches!(check.answer(&q, DnsAnswer::NxDomain), Err(MsgAuthError::UnexpectedAnswer(_))));
    // Oversized answers are refused and count as SERVFAIL.
    let Progress::NeedDns(queries) = check.poll() else { panic!("expected queries") };
    let spf = queries.iter().find(|q| q.name == "example.com." && q.rtype == RecordType::Txt).unwrap();
    let huge = DnsAnswer::Records(vec![Record::Txt("v=spf1 ".to_owned() + &"a".repeat(10_000))]);
    assert!(matches!(check.answer(spf, huge), Err(MsgAuthError::AnswerTooLarge(_))));
    let many = DnsAnswer::Records((0..100).map(|_| Record::Txt("x".into())).collect());
    assert!(matches!(check.answer(spf, many), Err(MsgAuthError::AnswerTooLarge(_))));
    for q in queries.iter().filter(|q| *q != spf) {
        check.answer(q, DnsAnswer::NxDomain).unwrap();
    }
    let verdict = loop {
        match check.poll() {
            Progress::Done(v) => break v,
            Progress::NeedDns(qs) => qs.iter().for_each(|q| check.answer(q, DnsAnswer::NxDomain).unwrap()),
            _ => unreachable!(),
        }
    };
    assert_eq!(verdict.spf_mail_from.result, AuthResult::TempError);

    // An include chain longer than the round limit completes (with what it has).
    let mut zone = Zone::default().txt("example.com", "v=spf1 include:l1.example.com -all");
    for i in 1..30 {
        zone = zone.txt(&format!("l{i}.example.com"), &format!("v=spf1 include:l{}.example.com -all", i + 1));
    }
    let verifier = Verifier::new("mx.example.net")
        .unwrap()
        .with_limits(DnsLimits { max_rounds: 4, ..DnsLimits::default() });
    let mut check = verifier.start(input);
    let mut rounds = 0;
    let verdict = loop {
        match check.poll() {
            Progress::Done(v) => break v,
            Progress::NeedDns(qs) => {
                rounds += 1;
                qs.iter().for_each(|q| check.answer(q, zone.resolve(q)).unwrap());
            }
            _ => unreachable!(),
        }
    };
    assert!(rounds <= 4);
    assert!(matches!(verdict.spf_mail_from.result, AuthResult::TempError | AuthResult::PermError));
    // Once done, poll keeps returning the same verdict.
    assert!(matches!(check.poll(), Progress::Done(v) if *v == *verdict));
}

#[test]
fn authentication_results_is_a_safe_header_value() {
    let zone = spf_zone().txt("_dmarc.example.com", "v=DMARC1; p=reject");
    let v = check(&zone, "192.0.2.10", "alice@example.com", message("example.com"), 0);
    let ar = v.authentication_results();
    assert_eq!(
        ar,
        "mx.example.net;\r\n\tdkim=none;\r\n\tspf=pass smtp.mailfrom=alice@example.com;\r\n\t\
         spf=pass smtp.helo=example.com;\r\n\tdmarc=pass (p=reject dis=none) header.from=example.com;\r\n\tarc=none"
    );
    // Every line after the first is a continuation line; no bare CR or LF.
    for line in ar.split("\r\n").skip(1) {
        assert!(line.starts_with('\t'));
        assert!(!line.contains('\r') && !line.contains('\n'));
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    fn verifier() -> &'static Verifier {
        static V: OnceLock<Verifier> = OnceLock::new();
        V.get_or_init(|| Verifier::new("mx.example.net").unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// The verdict depends on the answers, not on the order they are given in or on
        /// how the application splits them across polls; and pct= follows the roll.
        #[test]
        fn answer_order_does_not_matter(pct in 0u8..=100, roll in 0u8..100, reverse: bool, authorised: bool) {
            let zone = spf_zone().txt("_dmarc.example.com", &format!("v=DMARC1; p=reject; pct={pct}"));
            let ip = if authorised { "192.0.2.10" } else { "198.51.100.1" };
            let input = CheckInput::new(ip.parse().unwrap(), "example.com", "a@example.com", message("example.com"), now())
                .with_dmarc_roll(roll);
            let straight = verifier().start(input.clone()).run_with(|q| zone.resolve(q));
            let mut check = verifier().start(input);
            let other = loop {
                match check.poll() {
                    Progress::Done(v) => break v,
                    Progress::NeedDns(mut qs) => {
                        if reverse {
                            qs.reverse();
                        }
                        for q in &qs {
                            check.answer(q, zone.resolve(q)).unwrap();
                        }
                    }
                    _ => unreachable!(),
                }
            };
            prop_assert_eq!(&straight, &*other);
            let expected = match (authorised, roll < pct) {
                (true, _) => Disposition::Accept,
                (false, true) => Disposition::Reject,
                (false, false) => Disposition::Quarantine,
            };
            prop_assert_eq!(straight.dmarc.disposition, expected);
        }

        #[test]
        fn text_parsers_never_panic(s in "\\PC{0,200}") {
            prop_assert!(postern::msgauth::dmarc_pct(&s) <= 100);
            let _ = postern::msgauth::registrable_domain(&s);
            let _ = spoof_signals(s.as_bytes(), &s, &["example.com"], &["example.com", &s]);
        }

        #[test]
        fn pct_tag_is_read(v in 0u16..300, spaces in " {0,3}") {
            let got = postern::msgauth::dmarc_pct(&format!("v=DMARC1;{spaces}p=none;{spaces}pct{spaces}={spaces}{v}"));
            prop_assert_eq!(u16::from(got), if v <= 100 { v } else { 100 });
        }
    }
}
