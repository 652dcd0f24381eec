//! The MTA-STS and TLS-RPT parsers on arbitrary bytes: `Policy::parse` (both duplicate
//! rules), `StsRecord::parse`/`select`, `TlsRptRecord::parse`, `MxPattern::parse` and
//! matching. None may panic; a parsed policy reads back equal from its rendered text; the
//! first-wins rule accepts whatever the strict rule accepts, with the same result; a parsed
//! record's id is 1 to 32 letters and digits; a pattern matches only the names it should.
//! For the pattern check the input is split at its first LF into a pattern and a host.
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use postern::tls::mta_sts::{
    decide, CachedPolicy, DuplicateFields, MxPattern, Policy, StsRecord, TlsOutcome, MAX_MAX_AGE,
};
use postern::tls::tlsrpt::TlsRptRecord;

fuzz_target!(|data: &[u8]| {
    let strict = Policy::parse(data);
    let lenient = Policy::parse_with(data, DuplicateFields::KeepFirst);
    if let Ok(policy) = &strict {
        assert_eq!(lenient.as_ref(), Ok(policy));
        let text = policy.to_string();
        assert_eq!(Policy::parse(&text).as_ref(), Ok(policy), "{text:?}");
        assert!(policy.max_age() <= Duration::from_secs(u64::from(MAX_MAX_AGE)));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let cached = CachedPolicy::new("fuzz", policy.clone(), now);
        for pattern in policy.mx() {
            let host = pattern.to_string().replace('*', "mx");
            assert!(policy.matches_mx(&host), "{host}");
            assert!(decide(Some(&cached), now, &host, TlsOutcome::Valid).may_deliver());
        }
    }
    if let Ok(policy) = &lenient {
        assert_eq!(Policy::parse(policy.to_string()).as_ref(), Ok(policy));
    }

    if let Ok(record) = StsRecord::parse(data) {
        let id = record.id();
        assert!((1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(StsRecord::select([data]).as_ref(), Ok(&record));
    }
    if let Ok(record) = TlsRptRecord::parse(data) {
        assert!(!record.rua().is_empty());
        assert_eq!(TlsRptRecord::select([data]).as_ref(), Ok(&record));
    }

    let Ok(text) = std::str::from_utf8(data) else { return };
    let (pattern, host) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(parsed) = MxPattern::parse(pattern) {
        assert_eq!(MxPattern::parse(&parsed.to_string()).as_ref(), Ok(&parsed));
        if parsed.matches(host) {
            let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
            if parsed.is_wildcard() {
                let (label, rest) = host.split_once('.').expect("a wildcard match has a label");
                assert!(!label.is_empty() && rest == parsed.domain(), "{pattern} {host}");
            } else {
                assert_eq!(host, parsed.domain());
            }
        }
    }
});
