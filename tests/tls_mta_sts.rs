//! MTA-STS and TLS-RPT through the public API: a sender's life with a recipient domain
//! whose policy changes (TXT id change, refetch, failed fetch, DNS record gone, expiry),
//! a TLS-RPT report over a mix of outcomes read back by Python's `json` module, and
//! property tests of the parsers.
//!
//! The Python check is skipped with a notice when `python3` is missing, except in CI
//! (`CI=true`), where it fails.
// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
#![cfg(feature = "tls")]

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use postern::tls::mta_sts::{
    CachedPolicy, CertificateProblem, Failure, Mode, MxPattern, Policy, PolicyCache, StsRecord,
    StsRecordError, TlsOutcome, Verdict, decide,
};
use postern::tls::tlsrpt::{
    Aggregator, AppliedPolicy, FailureDetail, ReportMetadata, ResultType, TlsRptRecord,
};
use proptest::prelude::*;

const DAY: u64 = 86_400;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// The recipient domain's published state, as the application's DNS resolver and HTTPS
/// client would see it.
struct Internet {
    txt: HashMap<String, Vec<String>>,
    policies: HashMap<String, String>,
    fetches: usize,
}

impl Internet {
    fn txt(&self, name: &str) -> Vec<String> {
        self.txt.get(name).cloned().unwrap_or_default()
    }

    fn fetch(&mut self, domain: &str) -> Option<String> {
        self.fetches += 1;
        self.policies.get(&format!("https://mta-sts.{domain}/.well-known/mta-sts.txt")).cloned()
    }

    fn publish(&mut self, domain: &str, id: Option<&str>, body: &str) {
        let txt =
            id.map(|id| vec!["v=spf1 -all".to_owned(), format!("v=STSv1; id={id};")]).unwrap_or_default();
        self.txt.insert(format!("_mta-sts.{domain}"), txt);
        self.policies.insert(format!("https://mta-sts.{domain}/.well-known/mta-sts.txt"), body.to_owned());
    }
}

/// What a sending MTA does before each delivery to `domain` (RFC 8461 §3, §5.1): look up
/// the TXT record; fetch the policy only when the cached one is missing, expired, has
/// another id or is a day old; keep the cached one when the fetch fails or the record is
/// gone.
fn refresh(net: &mut Internet, cache: &mut PolicyCache, domain: &str, now: SystemTime) {
    let Ok(record) = StsRecord::select(net.txt(&format!("_mta-sts.{domain}"))) else { return };
    if !cache.should_fetch(domain, record.id(), now, Duration::from_secs(DAY)) {
        return;
    }
    let Some(body) = net.fetch(domain) else { return };
    if let Ok(policy) = Policy::parse(&body) {
        cache.insert(domain, CachedPolicy::new(record.id(), policy, now));
    }
}

#[test]
fn txt_id_change_refetches_and_the_new_policy_applies() {
    let mut net = Internet { txt: HashMap::new(), policies: HashMap::new(), fetches: 0 };
    let mut cache = PolicyCache::new(100);
    let domain = "example.com";
    let t0 = 1_700_000_000;

    // Day 0: a testing policy for the old MX fleet.
    net.publish(
        domain,
        Some("20231114v1"),
        "version: STSv1\r\nmode: testing\r\nmx: *.mail.example.com\r\nmax_age: 604800\r\n",
    );
    refresh(&mut net, &mut cache, domain, at(t0));
    assert_eq!(net.fetches, 1);
    let cached = cache.get(domain, at(t0));
    assert_eq!(cached.map(|c| c.policy().mode()), Some(Mode::Testing));
    assert_eq!(
        decide(cached, at(t0), "mx1.mail.example.com", TlsOutcome::NoStartTls),
        Verdict::DeliverAndReport(Failure::NoStartTls)
    );
    assert_eq!(decide(cached, at(t0), "mx1.mail.example.com", TlsOutcome::Valid), Verdict::Deliver);

    // An hour later, same id: nothing is fetched.
    refresh(&mut net, &mut cache, domain, at(t0 + 3600));
    assert_eq!(net.fetches, 1);

    // Day 1: the domain moves to enforce with a new fleet and a new id.
    net.publish(
        domain,
        Some("20231115v2"),
        "version: STSv1\nmode: enforce\nmx: mx.new.example.com\nmx: *.backup.example.net\nmax_age: 86400\n",
    );
    let t1 = t0 + DAY;
    refresh(&mut net, &mut cache, domain, at(t1));
    assert_eq!(net.fetches, 2);
    let cached = cache.get(domain, at(t1));
    assert_eq!(cached.map(CachedPolicy::id), Some("20231115v2"));
    assert_eq!(
        decide(cached, at(t1), "mx1.mail.example.com", TlsOutcome::Valid),
        Verdict::Refuse(Failure::MxNotListed)
    );
    assert_eq!(decide(cached, at(t1), "MX.NEW.EXAMPLE.COM.", TlsOutcome::Valid), Verdict::Deliver);
    assert_eq!(decide(cached, at(t1), "b1.backup.example.net", TlsOutcome::Valid), Verdict::Deliver);
    assert_eq!(
        decide(
            cached,
            at(t1),
            "mx.new.example.com",
            TlsOutcome::Certificate(CertificateProblem::HostMismatch)
        ),
        Verdict::Refuse(Failure::Certificate(CertificateProblem::HostMismatch))
    );

    // A new id whose policy is broken: the fetch fails to parse, the enforce policy stays.
    net.publish(domain, Some("v3"), "version: STSv1\nmode: enforce\nmax_age: 86400\n");
    refresh(&mut net, &mut cache, domain, at(t1 + 60));
    assert_eq!(net.fetches, 3);
    assert!(!cache.is_current(domain, "v3", at(t1 + 60)));
    let cached = cache.get(domain, at(t1 + 60));
    assert_eq!(cached.map(CachedPolicy::id), Some("20231115v2"));
    assert!(matches!(
        decide(cached, at(t1 + 60), "mx.new.example.com", TlsOutcome::NoStartTls),
        Verdict::Refuse(_)
    ));

    // The TXT record disappears (an attacker stripping DNS, or a withdrawal): the cached
    // policy still applies until it expires.
    net.txt.insert(format!("_mta-sts.{domain}"), Vec::new());
    assert_eq!(StsRecord::select(net.txt("_mta-sts.example.com")), Err(StsRecordError::NoRecord));
    refresh(&mut net, &mut cache, domain, at(t1 + 120));
    assert_eq!(net.fetches, 3);
    let cached = cache.get(domain, at(t1 + DAY));
    assert!(matches!(
        decide(cached, at(t1 + DAY), "mx.new.example.com", TlsOutcome::NoStartTls),
        Verdict::Refuse(_)
    ));

    // A second past max_age it is gone, and delivery is opportunistic again.
    let expired = at(t1 + DAY + 1);
    assert!(cache.get(domain, expired).is_none());
    assert_eq!(
        decide(cache.get(domain, expired), expired, "mx.new.example.com", TlsOutcome::NoStartTls),
        Verdict::Deliver
    );

    // The domain withdraws its policy properly: mode none under a new id.
    net.publish(domain, Some("v4"), "version: STSv1\nmode: none\nmax_age: 86400\n");
    refresh(&mut net, &mut cache, domain, expired);
    assert_eq!(net.fetches, 4);
    let cached = cache.get(domain, expired);
    assert_eq!(cached.map(|c| c.policy().mode()), Some(Mode::None));
    assert_eq!(decide(cached, expired, "anything.example", TlsOutcome::NoStartTls), Verdict::Deliver);
}

// ----- TLS-RPT, read back by Python ----------------------------------------------------

/// Runs `python3 -c script args...` with `input` on stdin; `None` (after a notice) if
/// python3 is missing outside CI.
fn python(script: &str, args: &[&str], input: &str) -> Option<String> {
    let child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => panic!("python3 is required in CI: {e}"),
        Err(e) => {
            eprintln!("SKIPPED: python3 not available ({e}); the TLS-RPT JSON was not checked by Python");
            return None;
        }
    };
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "python3 rejected the report:\n{}\n--- report ---\n{input}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8(output.stdout).unwrap())
}

/// Checks the RFC 8460 §4.4 field names and types, that each policy's failure-details add
/// up to its failure total, and that the strings decode to the originals; prints one line
/// per policy and per failure detail.
const CHECK_REPORT: &str = r#"
import json, sys
org, contact = sys.argv[1], sys.argv[2]
r = json.load(sys.stdin)
assert set(r) == {"organization-name", "date-range", "contact-info", "report-id", "policies"}, sorted(r)
assert r["organization-name"] == org, repr(r["organization-name"])
assert r["contact-info"] == contact
assert r["date-range"] == {"start-datetime": "2016-04-01T00:00:00Z", "end-datetime": "2016-04-01T23:59:59Z"}, r["date-range"]
details = {"result-type", "sending-mta-ip", "receiving-mx-hostname", "receiving-mx-helo",
           "receiving-ip", "failed-session-count", "additional-information", "failure-reason-code"}
for p in r["policies"]:
    assert set(p) == {"policy", "summary", "failure-details"}, sorted(p)
    pol, summary = p["policy"], p["summary"]
    if pol["policy-type"] == "no-policy-found":
        assert set(pol) == {"policy-type", "policy-domain"}, sorted(pol)
    else:
        assert set(pol) == {"policy-type", "policy-string", "policy-domain", "mx-host"}, sorted(pol)
        assert all(isinstance(s, str) for s in pol["policy-string"] + pol["mx-host"])
    assert set(summary) == {"total-successful-session-count", "total-failure-session-count"}
    ok, failed = summary["total-successful-session-count"], summary["total-failure-session-count"]
    assert isinstance(ok, int) and isinstance(failed, int)
    assert sum(d["failed-session-count"] for d in p["failure-details"]) == failed
    print(pol["policy-type"], pol["policy-domain"], ok, failed, "|".join(pol.get("policy-string", [])),
          ",".join(pol.get("mx-host", [])))
    for d in p["failure-details"]:
        assert set(d) <= details and "result-type" in d and "failed-session-count" in d, sorted(d)
        print(" ", d["result-type"], d.get("sending-mta-ip", "-"), d.get("receiving-mx-hostname", "-"),
              d.get("receiving-ip", "-"), d.get("failure-reason-code", "-"), d["failed-session-count"])
"#;

#[test]
fn tlsrpt_report_for_mixed_outcomes_parses_in_python() {
    let record =
        TlsRptRecord::select(["v=TLSRPTv1; rua=mailto:tlsrpt@example.com,https://rpt.example.com/v1"])
            .unwrap();
    assert_eq!(record.rua().len(), 2);

    let day = at(1_459_468_800); // 2016-04-01T00:00:00Z
    let mut cache = PolicyCache::new(10);
    let policy =
        Policy::parse("version: STSv1\nmode: testing\nmx: *.mail.example.com\nmax_age: 86400\n").unwrap();
    cache.insert("example.com", CachedPolicy::new("1", policy, day));

    let sending: IpAddr = "2001:db8:abcd:12::1".parse().unwrap();
    let mut aggregator = Aggregator::default();
    // (domain, mx host, mx address, outcome, how many sessions)
    let sessions: [(&str, &str, &str, TlsOutcome, u64); 7] = [
        ("example.com", "mx1.mail.example.com", "203.0.113.1", TlsOutcome::Valid, 5),
        ("example.com", "mx2.mail.example.com", "203.0.113.2", TlsOutcome::NoStartTls, 2),
        (
            "example.com",
            "mx1.mail.example.com",
            "203.0.113.1",
            TlsOutcome::Certificate(CertificateProblem::Expired),
            3,
        ),
        ("example.com", "rogue.example.net", "198.51.100.9", TlsOutcome::Valid, 1),
        ("example.com", "mx2.mail.example.com", "203.0.113.2", TlsOutcome::HandshakeFailed, 1),
        ("no-sts.example", "mx.no-sts.example", "192.0.2.7", TlsOutcome::Valid, 4),
        ("no-sts.example", "mx.no-sts.example", "192.0.2.7", TlsOutcome::NoStartTls, 2),
    ];
    for (domain, mx, ip, outcome, count) in sessions {
        for n in 0..count {
            let now = day + Duration::from_secs(3600 * n);
            let cached = cache.get(domain, now);
            let applied = AppliedPolicy::for_delivery(domain, cached, now);
            // Under a policy the verdict says what failed; without one, the TLS outcome does.
            let failure = match cached {
                Some(_) => decide(cached, now, mx, outcome).failure(),
                None => outcome.failure(),
            };
            match failure {
                None => aggregator.record_success(&applied),
                Some(failure) => aggregator.record_failure(
                    &applied,
                    FailureDetail::from_failure(failure)
                        .with_sending_mta_ip(sending)
                        .with_receiving_mx_hostname(mx)
                        .with_receiving_ip(ip.parse().unwrap()),
                ),
            }
        }
    }
    // A policy fetch error for a third domain.
    aggregator.record_failure(
        &AppliedPolicy::no_policy_found("broken.example"),
        FailureDetail::new(ResultType::StsPolicyFetchError).with_failure_reason_code("HTTP 503"),
    );
    assert_eq!(aggregator.policy_domains(), ["broken.example", "example.com", "no-sts.example"]);
    assert_eq!(aggregator.totals("example.com"), (5, 7));
    assert_eq!(aggregator.totals("no-sts.example"), (4, 2));

    let org = "Sender \"Q\" Inc.\\\n\u{e9}\u{1}";
    let contact = "tlsrpt@sender.example";
    let meta = ReportMetadata::new(
        org,
        contact,
        "2016-04-01T00:00:00Z_example.com",
        day,
        day + Duration::from_secs(DAY - 1),
    );
    let json = aggregator.report_json("example.com", &meta).unwrap();
    let expected = "\
sts example.com 5 7 version: STSv1|mode: testing|mx: *.mail.example.com|max_age: 86400 *.mail.example.com
  starttls-not-supported 2001:db8:abcd:12::1 mx2.mail.example.com 203.0.113.2 - 2
  certificate-expired 2001:db8:abcd:12::1 mx1.mail.example.com 203.0.113.1 - 3
  validation-failure 2001:db8:abcd:12::1 mx2.mail.example.com 203.0.113.2 tls-handshake-failed 1
  validation-failure 2001:db8:abcd:12::1 rogue.example.net 198.51.100.9 mx-not-in-sts-policy 1
";
    if let Some(out) = python(CHECK_REPORT, &[org, contact], &json) {
        assert_eq!(out, expected);
    }

    let json = aggregator.report_json("no-sts.example", &meta).unwrap();
    let expected = "\
no-policy-found no-sts.example 4 2  \n  starttls-not-supported 2001:db8:abcd:12::1 mx.no-sts.example 192.0.2.7 - 2
";
    if let Some(out) = python(CHECK_REPORT, &[org, contact], &json) {
        assert_eq!(out, expected);
    }
    let json = aggregator.report_json("broken.example", &meta).unwrap();
    if let Some(out) = python(CHECK_REPORT, &[org, contact], &json) {
        assert_eq!(out, "no-policy-found broken.example 0 1  \n  sts-policy-fetch-error - - - HTTP 503 1\n");
    }
    // Plain `json.load` on stdin, as the brief says.
    python("import json,sys; json.load(sys.stdin)", &[], &json);
}

#[test]
fn aggregator_memory_is_capped_under_a_flood_of_distinct_failures() {
    let mut aggregator = Aggregator::new(100, 1000);
    for n in 0..50_000u32 {
        let applied = AppliedPolicy::no_policy_found(&format!("d{}.example", n % 200));
        let helo = format!("{n}-{}", "x".repeat(1000));
        aggregator.record_failure(
            &applied,
            FailureDetail::new(ResultType::StartTlsNotSupported).with_receiving_mx_helo(&helo),
        );
    }
    let overflow = aggregator.overflow();
    let kept: u64 = aggregator.policy_domains().iter().map(|d| aggregator.totals(d).1).sum();
    assert_eq!(aggregator.policy_domains().len(), 100);
    assert_eq!(kept + overflow.sessions, 50_000);
    assert_eq!(overflow.sessions, 25_000);
    assert_eq!(overflow.failure_details, 25_000 - 1000);
}

// ----- properties -----------------------------------------------------------------------

const POLICY_LINES: &[&str] = &[
    "version: STSv1",
    "version:STSv1",
    "version: STSv2",
    "mode: enforce",
    "mode: testing",
    "mode: none",
    "mode:\tenforce ",
    "mode: Enforce",
    "mx: mail.example.com",
    "mx: *.example.net",
    "mx: MX.Example.ORG",
    "mx: *.*.bad",
    "mx: bad_host",
    "max_age: 604800",
    "max_age: 0",
    "max_age: 31557600",
    "max_age: 31557601",
    "max_age: 00086400",
    "x-extension: some value; with = signs",
    "x-\u{e9}: v",
    "",
    " mode: enforce",
    "just text",
];

fn policy_text() -> impl Strategy<Value = String> {
    (prop::collection::vec(prop::sample::select(POLICY_LINES), 0..12), any::<bool>(), any::<bool>()).prop_map(
        |(lines, crlf, final_terminator)| {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut text = lines.join(eol);
            if final_terminator {
                text.push_str(eol);
            }
            text
        },
    )
}

/// Policies that follow the grammar: the required fields (in their spelling variants),
/// some `mx` patterns, extensions and empty lines, in any order.
fn valid_policy_text() -> impl Strategy<Value = (String, bool)> {
    let required = (
        prop::sample::select(&["version: STSv1", "version:STSv1", "version:\t STSv1 "][..]),
        prop::sample::select(&["mode: enforce", "mode: testing", "mode:\tnone", "mode: none"][..]),
        (0u32..=31_557_600).prop_map(|age| format!("max_age: {age}")),
    );
    let mx = prop::collection::vec(
        (any::<bool>(), prop::collection::vec(label(), 1..4)).prop_map(|(wild, labels)| {
            format!("mx: {}{}", if wild { "*." } else { "" }, labels.join(".").to_ascii_uppercase())
        }),
        0..4,
    );
    let extras = prop::collection::vec(
        prop::sample::select(&["x-note: caf\u{e9} = yes; ok", "policy_id: 7", "", "x.y-z_1: a b c"][..]),
        0..3,
    );
    (required, mx, extras, any::<bool>())
        .prop_flat_map(|((version, mode, age), mx, extras, crlf)| {
            let has_mx = !mx.is_empty() || mode.ends_with("none");
            let mut lines: Vec<String> = vec![version.to_owned(), mode.to_owned(), age];
            lines.extend(mx);
            lines.extend(extras.into_iter().map(str::to_owned));
            (Just(lines).prop_shuffle(), Just(crlf), Just(has_mx))
        })
        .prop_map(|(lines, crlf, has_mx)| (lines.join(if crlf { "\r\n" } else { "\n" }), has_mx))
}

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_parsers(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Policy::parse(&bytes);
        let _ = StsRecord::parse(&bytes);
        let _ = TlsRptRecord::parse(&bytes);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = MxPattern::parse(text);
        }
    }

    #[test]
    fn policy_like_text_round_trips(text in policy_text()) {
        if let Ok(policy) = Policy::parse(&text) {
            let rendered = policy.to_string();
            let reparsed = Policy::parse(&rendered).unwrap();
            prop_assert_eq!(&reparsed, &policy);
            prop_assert_eq!(reparsed.to_string(), rendered);
            prop_assert!(policy.max_age() <= Duration::from_secs(31_557_600));
            prop_assert!(policy.mode() == Mode::None || !policy.mx().is_empty());
        }
    }

    #[test]
    fn valid_policies_parse_and_round_trip((text, has_mx) in valid_policy_text()) {
        match Policy::parse(&text) {
            Ok(policy) => {
                prop_assert!(has_mx);
                let reparsed = Policy::parse(policy.to_string()).unwrap();
                prop_assert_eq!(&reparsed, &policy);
                prop_assert!(policy.mx().iter().all(|p| p.domain() == p.domain().to_ascii_lowercase()));
            }
            Err(e) => prop_assert!(!has_mx && e.to_string() == "missing required field `mx`", "{e}: {text:?}"),
        }
    }

    #[test]
    fn sts_records_round_trip(id in "[A-Za-z0-9]{1,32}", ext in prop::option::of("x[a-z0-9_.-]{0,10}=[!-:<>-~]{1,10}"), trailing in any::<bool>()) {
        let mut record = format!("v=STSv1; id={id}");
        if let Some(ext) = &ext {
            record.push_str("; ");
            record.push_str(ext);
        }
        if trailing {
            record.push(';');
        }
        let parsed = StsRecord::parse(&record).unwrap();
        prop_assert_eq!(parsed.id(), id.as_str());
    }

    #[test]
    fn wildcard_covers_exactly_one_label(first in label(), second in label(), base in prop::collection::vec(label(), 1..4)) {
        let base = base.join(".");
        let wildcard = MxPattern::parse(&format!("*.{base}")).unwrap();
        let exact = MxPattern::parse(&base).unwrap();
        let one = format!("{first}.{base}");
        prop_assert!(wildcard.matches(&one));
        prop_assert!(wildcard.matches(&one.to_ascii_uppercase()));
        let dotted = format!("{one}.");
        let two = format!("{second}.{one}");
        prop_assert!(wildcard.matches(&dotted));
        prop_assert!(!wildcard.matches(&base));
        prop_assert!(!wildcard.matches(&two));
        prop_assert!(exact.matches(&base) && !exact.matches(&one));
    }
}
