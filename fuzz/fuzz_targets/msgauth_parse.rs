//! The parsing entry points msgauth adds, on arbitrary bytes: the DMARC `pct=` reader,
//! spoofing signals (header parsing, IDN/confusable skeletons), DKIM coverage signals,
//! the registrable-domain heuristic, PTR names, and PEM key loading. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::msgauth::{
    AuthResult, DkimVerdict, DnsQuery, RecordType, Signer, coverage_signals, dmarc_pct, registrable_domain,
    spoof_signals,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    assert!(dmarc_pct(&text) <= 100);
    let _ = registrable_domain(&text);
    let _ = DnsQuery::new(&text, RecordType::Ptr).ptr_addr();
    let first_line = text.lines().next().unwrap_or("");
    let _ = spoof_signals(data, first_line, &["example.com", first_line], &["example.com", "paypal.com", first_line]);
    let verdict = DkimVerdict {
        result: AuthResult::Pass,
        reason: None,
        domain: "example.com".into(),
        selector: "s".into(),
        identity: String::new(),
        b: Vec::new(),
        signed_headers: text.split(':').take(64).map(str::to_owned).collect(),
        body_length: data.first().map(|&b| u64::from(b)),
        timestamp: 0,
        expiration: 1,
        expired: data.len() % 2 == 0,
    };
    let _ = coverage_signals(&verdict, data);
    let _ = Signer::from_pem(&text, "example.com", "s1");
});
