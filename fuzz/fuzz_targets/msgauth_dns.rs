//! The message-authentication query loop on arbitrary messages and DNS answers: the input
//! is split at its first NUL into a message and answer material; every query the check
//! asks is answered from the next chunk of the material (split at 0x01): a TXT string,
//! addresses, an MX host, NXDOMAIN or SERVFAIL, chosen by its first byte. The check must
//! complete within its round bound, never panic, and produce a header value without bare
//! CR/LF outside the folding.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use postern::msgauth::{CheckInput, DnsAnswer, DnsLimits, Progress, Record, RecordType, Verifier};

fn answer(rtype: RecordType, chunk: &[u8]) -> DnsAnswer {
    let Some((&kind, rest)) = chunk.split_first() else { return DnsAnswer::NxDomain };
    let text = String::from_utf8_lossy(rest).into_owned();
    match kind % 8 {
        0 => DnsAnswer::NxDomain,
        1 => DnsAnswer::ServFail,
        2 => DnsAnswer::Records(Vec::new()),
        _ => DnsAnswer::Records(match rtype {
            RecordType::Txt => text.split('\u{2}').map(|t| Record::Txt(t.to_owned())).collect(),
            RecordType::A => rest.chunks(4).map(|c| Record::A(Ipv4Addr::new(c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0), *c.get(3).unwrap_or(&1)))).collect(),
            RecordType::Aaaa => vec![Record::Aaaa(Ipv6Addr::from(u128::from_le_bytes({
                let mut b = [0u8; 16];
                for (d, s) in b.iter_mut().zip(rest) {
                    *d = *s;
                }
                b
            })))],
            RecordType::Mx => vec![Record::Mx { preference: u16::from(kind), exchange: text }],
            _ => vec![Record::Ptr(text)],
        }),
    }
}

fuzz_target!(|data: &[u8]| {
    let (message, material) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let mut chunks = material.split(|&b| b == 1);
    // Built once: a Verifier is long-lived in an application too.
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    let verifier = VERIFIER.get_or_init(|| {
        let limits = DnsLimits { max_rounds: 6, max_queries: 48, ..DnsLimits::default() };
        Verifier::new("mx.fuzz.test").unwrap().with_limits(limits)
    });
    let ip = IpAddr::from([192, 0, 2, *data.first().unwrap_or(&1)]);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let input = CheckInput::new(ip, "helo.fuzz.test", "a@fuzz.test", message.to_vec(), now)
        .with_dmarc_roll(*data.last().unwrap_or(&0));
    let mut check = verifier.start(input);
    let mut polls = 0;
    let verdict = loop {
        polls += 1;
        assert!(polls <= 8, "the round bound was not honoured");
        match check.poll() {
            Progress::Done(v) => break v,
            Progress::NeedDns(queries) => {
                for q in queries {
                    let a = answer(q.rtype, chunks.next().unwrap_or(&[]));
                    let _ = check.answer(&q, a);
                }
            }
            _ => unreachable!(),
        }
    };
    let header = verdict.authentication_results();
    for line in header.split("\r\n\t") {
        assert!(!line.contains('\r') && !line.contains('\n'), "{header:?}");
    }
});
