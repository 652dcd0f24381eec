//! postern's message-authentication path against calling mail-auth 0.13 directly, on the
//! same message and the same DNS records.
//!
//! The message is DKIM-signed (RSA-2048 or Ed25519) by example.com, sent from an SPF-authorised
//! address, with `_dmarc.example.com` at `p=reject`: SPF (HELO and MAIL FROM), DKIM, ARC and
//! DMARC all run. Both sides start from the raw TXT records for every message, as a
//! receiver does (records parsed into mail-auth's cache types each time):
//! - `mail_auth_direct`: caches filled from the records, then `verify_spf` ×2, `verify_dkim`,
//!   `verify_arc`, `verify_dmarc`, each polled once with a no-op waker;
//! - `postern_preloaded`: a `Check` with every answer preloaded (an application with a DNS
//!   cache), one `poll`;
//! - `postern_cold`: the query/answer loop from nothing (three rounds here, each a full
//!   evaluation): the cost of discovering the queries.
//!
//! Run with `cargo bench --bench msgauth -- --warm-up-time 1 --measurement-time 3`;
//! benches/README.md has the measured ratios.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::SystemTime;

use criterion::{BatchSize, Criterion, criterion_group};
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dmarc::Dmarc;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{ResolveHosts, ResolverConfig, ResolverOpts};
use mail_auth::spf::Spf;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticatedMessage, MX, MessageAuthenticator, Parameters, RecordSet, ResolverCache, Txt};
use postern::msgauth::{CheckInput, DnsAnswer, DnsQuery, Progress, Record, RecordType, Signer, Verifier};

const IP: &str = "192.0.2.10";
const HELO: &str = "mail.example.com";
const MAIL_FROM: &str = "alice@example.com";

struct Cache<V>(RefCell<HashMap<Box<str>, V>>);

impl<V: Clone> ResolverCache<Box<str>, V> for Cache<V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.borrow().get(name).cloned()
    }
    fn remove<Q>(&self, _: &Q) -> Option<V>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }
    fn insert(&self, k: Box<str>, v: V, _: std::time::Instant) {
        self.0.borrow_mut().insert(k, v);
    }
}

struct PtrCache;
impl ResolverCache<IpAddr, RecordSet<Box<str>>> for PtrCache {
    fn get<Q>(&self, _: &Q) -> Option<RecordSet<Box<str>>>
    where
        IpAddr: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }
    fn remove<Q>(&self, _: &Q) -> Option<RecordSet<Box<str>>>
    where
        IpAddr: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }
    fn insert(&self, _: IpAddr, _: RecordSet<Box<str>>, _: std::time::Instant) {}
}

fn once<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("pending"),
    }
}

fn not_found() -> Txt {
    Txt::Error(mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(
        mail_auth::hickory_resolver::proto::op::ResponseCode::NXDomain,
    )))
}

/// The zone: (name, raw TXT) for every TXT name the checks ask; all other names NXDOMAIN.
fn zone(signer: &Signer) -> Vec<(String, Option<String>)> {
    vec![
        ("example.com.".into(), Some("v=spf1 ip4:192.0.2.0/24 -all".into())),
        ("mail.example.com.".into(), Some("v=spf1 a -all".into())),
        (format!("{}._domainkey.example.com.", signer.selector()), Some(signer.dns_record())),
        ("_dmarc.example.com.".into(), Some("v=DMARC1; p=reject".into())),
        ("_dmarc.com.".into(), None),
        ("_dmarc.mail.example.com.".into(), None),
    ]
}

fn direct(auth: &MessageAuthenticator, zone: &[(String, Option<String>)], message: Vec<u8>) -> usize {
    // The caches ignore the expiry: one clock read per message, as postern makes none.
    let now = std::time::Instant::now();
    let txt: Cache<Txt> = Cache(RefCell::new(HashMap::new()));
    for (name, record) in zone {
        let value = match record {
            None => not_found(),
            Some(r) if name.starts_with("_dmarc.") => Dmarc::parse(r.as_bytes()).into(),
            Some(r) if name.contains("._domainkey.") => DomainKey::parse(r.as_bytes()).into(),
            Some(r) => Spf::parse(r.as_bytes()).into(),
        };
        txt.insert(name.as_str().into(), value, now);
    }
    let v4: Cache<RecordSet<Ipv4Addr>> = Cache(RefCell::new(HashMap::new()));
    v4.insert(
        "mail.example.com.".into(),
        RecordSet {
            rrset: Arc::from(vec![IP.parse::<Ipv4Addr>().unwrap()]),
            dnssec_status: mail_auth::DnssecStatus::Indeterminate,
        },
        now,
    );
    let v6: Cache<RecordSet<Ipv6Addr>> = Cache(RefCell::new(HashMap::new()));
    let mx: Cache<RecordSet<MX>> = Cache(RefCell::new(HashMap::new()));
    let ptr = PtrCache;
    macro_rules! params {
        ($p:expr) => {
            Parameters::new($p)
                .with_txt_cache(&txt)
                .with_mx_cache(&mx)
                .with_ipv4_cache(&v4)
                .with_ipv6_cache(&v6)
                .with_ptr_cache(&ptr)
        };
    }
    let ip: IpAddr = IP.parse().unwrap();
    let helo = once(auth.verify_spf(params!(SpfParameters::verify_ehlo(ip, HELO, "mx.example.net"))));
    let spf = once(auth.verify_spf(params!(SpfParameters::verify_mail_from(
        ip,
        HELO,
        "mx.example.net",
        MAIL_FROM
    ))));
    let msg = AuthenticatedMessage::parse(&message).unwrap();
    let dkim = once(auth.verify_dkim(params!(&msg)));
    let arc = once(auth.verify_arc(params!(&msg)));
    let dmarc = once(auth.verify_dmarc(params!(DmarcParameters::new(&msg, &dkim, "example.com", &spf))));
    assert_eq!(spf.result(), mail_auth::SpfResult::Pass);
    assert_eq!(dkim[0].result(), &mail_auth::DkimResult::Pass);
    assert_eq!(*dmarc.dkim_result(), mail_auth::DmarcResult::Pass);
    usize::from(helo.result() == mail_auth::SpfResult::Pass) + arc.sets().len() + dkim.len()
}

fn answer_for(zone: &[(String, Option<String>)], q: &DnsQuery) -> DnsAnswer {
    match (q.rtype, q.name.as_str()) {
        (RecordType::Txt, name) => match zone.iter().find(|(n, _)| n == name) {
            Some((_, Some(r))) => DnsAnswer::Records(vec![Record::Txt(r.clone())]),
            _ => DnsAnswer::NxDomain,
        },
        (RecordType::A, "mail.example.com.") => DnsAnswer::Records(vec![Record::A(IP.parse().unwrap())]),
        _ => DnsAnswer::NxDomain,
    }
}

fn postern_preloaded(verifier: &Verifier, zone: &[(String, Option<String>)], message: Vec<u8>) -> usize {
    let input = CheckInput::new(IP.parse().unwrap(), HELO, MAIL_FROM, message, SystemTime::UNIX_EPOCH);
    let mut check = verifier.start(input);
    for (name, _) in zone {
        let q = DnsQuery::new(name, RecordType::Txt);
        let a = answer_for(zone, &q);
        check.preload(q, a).unwrap();
    }
    let q = DnsQuery::new(HELO, RecordType::A);
    let a = answer_for(zone, &q);
    check.preload(q, a).unwrap();
    match check.poll() {
        Progress::Done(v) => {
            assert_eq!(v.dmarc.result, postern::msgauth::AuthResult::Pass);
            v.dkim.len()
        }
        Progress::NeedDns(q) => panic!("not preloaded: {q:?}"),
        _ => unreachable!(),
    }
}

fn postern_cold(verifier: &Verifier, zone: &[(String, Option<String>)], message: Vec<u8>) -> usize {
    let input = CheckInput::new(IP.parse().unwrap(), HELO, MAIL_FROM, message, SystemTime::UNIX_EPOCH);
    let v = verifier.start(input).run_with(|q| answer_for(zone, q));
    assert_eq!(v.dmarc.result, postern::msgauth::AuthResult::Pass);
    v.dkim.len()
}

/// Everything one algorithm's runs share: the message and the zone, signed with `pem`.
fn fixture(pem: &str) -> (Vec<u8>, Vec<(String, Option<String>)>) {
    let body = "From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: report\r\n\
                Date: Sun, 29 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\n"
        .to_owned()
        + &"A line of a typical message body, about seventy characters long....\r\n".repeat(60);
    let signer = Signer::from_pem(pem, "example.com", "s1").unwrap();
    let mut message = signer.sign(body.as_bytes()).unwrap().into_bytes();
    message.extend_from_slice(body.as_bytes());
    (message, zone(&signer))
}

fn keys() -> [(&'static str, String); 2] {
    let read = |f: &str| {
        std::fs::read_to_string(format!("{}/tests/data/msgauth/{f}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    };
    [("rsa2048", read("rsa2048.pem")), ("ed25519", read("ed25519.pem"))]
}

fn direct_authenticator() -> MessageAuthenticator {
    let mut opts = ResolverOpts::default();
    opts.use_hosts_file = ResolveHosts::Never;
    MessageAuthenticator::new(ResolverConfig::from_parts(None, vec![], vec![]), opts).unwrap()
}

/// `MSGAUTH_COUNT=N` (and optionally `MSGAUTH_ALG=rsa2048|ed25519`): instead of timing, run N
/// checks of each side, each side in its own never-inlined function, for an instruction
/// counter to compare:
/// `valgrind --tool=callgrind --callgrind-out-file=cg.out target/release/deps/msgauth-* ` then
/// `callgrind_annotate --inclusive=yes cg.out | grep count_` (inclusive Ir / N per check).
/// Both sides get (and drop) an owned copy of the message, made outside the counted function.
fn count(n: usize) {
    let auth = direct_authenticator();
    let verifier = Verifier::new("mx.example.net").unwrap();
    let only = std::env::var("MSGAUTH_ALG").ok();
    for (alg, pem) in keys() {
        if only.as_deref().is_some_and(|o| o != alg) {
            continue;
        }
        let (message, zone) = fixture(&pem);
        let copies = || (0..n).map(|_| message.clone()).collect::<Vec<_>>();
        let a = count_direct(&auth, &zone, copies());
        let b = count_postern_preloaded(&verifier, &zone, copies());
        println!("{alg}: {a} {b}");
    }
}

#[inline(never)]
fn count_direct(
    auth: &MessageAuthenticator,
    zone: &[(String, Option<String>)],
    copies: Vec<Vec<u8>>,
) -> usize {
    copies.into_iter().map(|m| black_box(direct(auth, zone, black_box(m)))).sum()
}

#[inline(never)]
fn count_postern_preloaded(
    verifier: &Verifier,
    zone: &[(String, Option<String>)],
    copies: Vec<Vec<u8>>,
) -> usize {
    copies.into_iter().map(|m| black_box(postern_preloaded(verifier, zone, black_box(m)))).sum()
}

fn bench(c: &mut Criterion) {
    let auth = direct_authenticator();
    let verifier = Verifier::new("mx.example.net").unwrap();
    for (alg, pem) in keys() {
        let (message, zone) = fixture(&pem);
        let mut group = c.benchmark_group(format!("msgauth_verify/{alg}"));
        // The application owns the received message and hands it over; both sides get a
        // copy made in setup, outside the timing, and drop it inside (postern's `Check`
        // owns the message, so its drop is part of the check).
        group.bench_function("mail_auth_direct", |b| {
            b.iter_batched(|| message.clone(), |m| black_box(direct(&auth, &zone, m)), BatchSize::SmallInput)
        });
        group.bench_function("postern_preloaded", |b| {
            b.iter_batched(
                || message.clone(),
                |m| black_box(postern_preloaded(&verifier, &zone, m)),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("postern_cold", |b| {
            b.iter_batched(
                || message.clone(),
                |m| black_box(postern_cold(&verifier, &zone, m)),
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

criterion_group!(benches, bench);

fn main() {
    if let Some(n) = std::env::var("MSGAUTH_COUNT").ok().and_then(|n| n.parse().ok()) {
        count(n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
