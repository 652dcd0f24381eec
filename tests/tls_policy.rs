//! TLS policy: what handshakes actually negotiate per profile, mutual TLS and the identity
//! it yields, PEM loading errors, certificate hot swap and SNI, and what `explain()` flags.
//!
//! Every handshake runs in memory between a rustls client and server, driven by hand with
//! `read_tls`/`write_tls` over byte buffers, on a fixed clock (2026-01-01).
#![cfg(feature = "tls")]
// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postern::tls::{
    CertNote, CertStore, ClientAuth, LoadedCert, PeerIdentity, Profile, TlsError, TlsPolicy, TlsVersion,
    Weakness, certificates_from_pem, is_post_quantum, load_certified_key, private_key_from_pem,
    root_store_from_pem,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::ring::cipher_suite as suites;
use rustls::crypto::ring::kx_group;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::time_provider::TimeProvider;
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, NamedGroup, PeerIncompatible,
    ProtocolVersion, RootCertStore, ServerConfig, ServerConnection, SignatureScheme, SupportedCipherSuite,
};

// ---------------------------------------------------------------------------------------
// Clock, PKI and the in-memory driver
// ---------------------------------------------------------------------------------------

/// 2026-01-01T00:00:00Z: the tests' "now", for loading and for rustls.
const NOW_UNIX: u64 = 1_767_225_600;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_UNIX)
}

#[derive(Debug)]
struct FixedClock;

impl TimeProvider for FixedClock {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(Duration::from_secs(NOW_UNIX)))
    }
}

fn clock() -> Arc<dyn TimeProvider> {
    Arc::new(FixedClock)
}

fn modern() -> TlsPolicy {
    TlsPolicy::modern().time_provider(clock())
}

fn compatible() -> TlsPolicy {
    TlsPolicy::compatible().time_provider(clock())
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// A calendar date (year, month, day).
type Ymd = (i32, u8, u8);

fn set_validity(params: &mut CertificateParams, from: Ymd, to: Ymd) {
    params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
}

/// A certificate authority that issues end-entity certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// An issued certificate and its key, in PEM.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new(cn: &str) -> Self {
        let mut params = Self::ca_params(cn);
        set_validity(&mut params, (2020, 1, 1), (2040, 1, 1));
        Self { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    fn ca_params(cn: &str) -> CertificateParams {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = dn(cn);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params
    }

    /// An intermediate CA under this one.
    fn intermediate(&self, cn: &str, not_after: Ymd) -> Self {
        let mut params = Self::ca_params(cn);
        set_validity(&mut params, (2020, 1, 1), not_after);
        Self {
            issuer: CertifiedIssuer::signed_by(params, KeyPair::generate().unwrap(), &self.issuer).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        Arc::new(roots)
    }

    fn issue(&self, params: CertificateParams, key: KeyPair) -> Leaf {
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }

    /// A P-256 server certificate for `names`, valid 2020..2040.
    fn server(&self, names: &[&str]) -> Leaf {
        self.server_with_key(names, KeyPair::generate().unwrap())
    }

    fn server_with_key(&self, names: &[&str], key: KeyPair) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name = dn(names.first().copied().unwrap_or("server"));
        set_validity(&mut params, (2020, 1, 1), (2040, 1, 1));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, key)
    }

    /// A client certificate for alice, with every kind of SAN.
    fn client(&self) -> Leaf {
        let mut params = CertificateParams::new(vec!["client.example.org".to_string()]).unwrap();
        params.distinguished_name = dn("alice");
        params.distinguished_name.push(DnType::OrganizationName, "Example Org");
        params.subject_alt_names.push(SanType::Rfc822Name("alice@example.org".try_into().unwrap()));
        params.subject_alt_names.push(SanType::URI("spiffe://example.org/mta".try_into().unwrap()));
        params.subject_alt_names.push(SanType::IpAddress("192.0.2.7".parse().unwrap()));
        set_validity(&mut params, (2020, 1, 1), (2040, 1, 1));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, KeyPair::generate().unwrap())
    }
}

impl Leaf {
    fn load(&self) -> LoadedCert {
        load_certified_key(self.cert_pem.as_bytes(), self.key_pem.as_bytes(), now()).unwrap()
    }

    fn load_with_chain(&self, rest: &[&str]) -> Result<LoadedCert, TlsError> {
        let chain = std::iter::once(self.cert_pem.as_str()).chain(rest.iter().copied()).collect::<String>();
        load_certified_key(chain.as_bytes(), self.key_pem.as_bytes(), now())
    }
}

/// How a handshake (or a later exchange) ended on each side.
#[derive(Debug, Default)]
struct Outcome {
    client: Option<rustls::Error>,
    server: Option<rustls::Error>,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.client.is_none() && self.server.is_none()
    }
}

/// One side of an in-memory connection.
trait Endpoint {
    /// Hands `data` to the TLS engine and processes it.
    fn feed(&mut self, data: &[u8]) -> Result<(), rustls::Error>;
    /// Takes everything the TLS engine wants to send.
    fn drain(&mut self) -> Vec<u8>;
}

macro_rules! endpoint {
    ($conn:ty) => {
        impl Endpoint for $conn {
            fn feed(&mut self, mut data: &[u8]) -> Result<(), rustls::Error> {
                while !data.is_empty() {
                    let n = self.read_tls(&mut data).unwrap();
                    self.process_new_packets()?;
                    if n == 0 {
                        break;
                    }
                }
                Ok(())
            }

            fn drain(&mut self) -> Vec<u8> {
                let mut out = Vec::new();
                while self.wants_write() {
                    self.write_tls(&mut out).unwrap();
                }
                out
            }
        }
    };
}

endpoint!(ClientConnection);
endpoint!(ServerConnection);

/// Moves TLS records both ways until nothing moves any more.
fn pump(client: &mut ClientConnection, server: &mut ServerConnection) -> Outcome {
    let mut outcome = Outcome::default();
    for _ in 0..100 {
        let mut moved = false;
        let buf = client.drain();
        if !buf.is_empty() && outcome.server.is_none() {
            moved = true;
            if let Err(e) = server.feed(&buf) {
                outcome.server = Some(e);
            }
        }
        let buf = server.drain();
        if !buf.is_empty() && outcome.client.is_none() {
            moved = true;
            if let Err(e) = client.feed(&buf) {
                outcome.client = Some(e);
            }
        }
        if !moved {
            return outcome;
        }
    }
    panic!("the handshake did not settle");
}

fn connect(
    client: &Arc<ClientConfig>,
    server: &Arc<ServerConfig>,
    name: &str,
) -> (ClientConnection, ServerConnection) {
    let name = ServerName::try_from(name.to_string()).unwrap();
    (ClientConnection::new(client.clone(), name).unwrap(), ServerConnection::new(server.clone()).unwrap())
}

fn handshake(
    client: &Arc<ClientConfig>,
    server: &Arc<ServerConfig>,
    name: &str,
) -> (ClientConnection, ServerConnection, Outcome) {
    let (mut c, mut s) = connect(client, server, name);
    let outcome = pump(&mut c, &mut s);
    (c, s, outcome)
}

fn read_plaintext(reader: &mut rustls::Reader<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return out,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Sends application data both ways over an established connection.
fn exchange(client: &mut ClientConnection, server: &mut ServerConnection, tag: &str) {
    let hello = format!("EHLO {tag}\r\n");
    client.writer().write_all(hello.as_bytes()).unwrap();
    assert!(pump(client, server).ok());
    assert_eq!(read_plaintext(&mut server.reader()), hello.as_bytes());
    let reply = format!("250 {tag}\r\n");
    server.writer().write_all(reply.as_bytes()).unwrap();
    assert!(pump(client, server).ok());
    assert_eq!(read_plaintext(&mut client.reader()), reply.as_bytes());
}

fn suite_of(conn: &rustls::CommonState) -> String {
    format!("{:?}", conn.negotiated_cipher_suite().unwrap().suite())
}

fn group_of(conn: &rustls::CommonState) -> NamedGroup {
    conn.negotiated_key_exchange_group().unwrap().name()
}

/// A server with one certificate for `mx.example.test`, and a client trusting its CA.
struct Pair {
    ca: Ca,
    store: Arc<CertStore>,
}

impl Pair {
    fn new() -> Self {
        let ca = Ca::new("Test Root CA");
        let store = Arc::new(CertStore::with_default(ca.server(&["mx.example.test"]).load()));
        Self { ca, store }
    }

    fn rsa() -> Self {
        let ca = Ca::new("Test Root CA");
        let key = KeyPair::from_pem(RSA_2048_KEY).unwrap();
        let store = Arc::new(CertStore::with_default(ca.server_with_key(&["mx.example.test"], key).load()));
        Self { ca, store }
    }

    fn server(&self, policy: &TlsPolicy) -> Arc<ServerConfig> {
        policy.server_config(self.store.clone()).unwrap()
    }

    fn client(&self, policy: &TlsPolicy) -> Arc<ClientConfig> {
        policy.client_config(self.ca.roots(), None).unwrap()
    }
}

// ---------------------------------------------------------------------------------------
// What each profile negotiates
// ---------------------------------------------------------------------------------------

#[test]
fn modern_negotiates_tls13() {
    let pair = Pair::new();
    let (client, server, outcome) =
        handshake(&pair.client(&modern()), &pair.server(&modern()), "mx.example.test");
    assert!(outcome.ok(), "{outcome:?}");
    for side in [&*client as &rustls::CommonState, &*server] {
        assert_eq!(side.protocol_version(), Some(ProtocolVersion::TLSv1_3));
        assert!(suite_of(side).starts_with("TLS13_"), "{}", suite_of(side));
        assert_eq!(group_of(side), modern_first_classical_or_pq());
    }
    assert_eq!(suite_of(&server), "TLS13_AES_256_GCM_SHA384");
}

/// The group a postern client and server agree on by default: the first in the policy.
fn modern_first_classical_or_pq() -> NamedGroup {
    let first = modern().explain().kx_groups[0].clone();
    if first == "X25519MLKEM768" { NamedGroup::X25519MLKEM768 } else { NamedGroup::X25519 }
}

#[test]
fn the_client_preferred_group_wins() {
    let pair = Pair::new();
    let server = pair.server(&modern());
    for (groups, expect) in [
        (vec![kx_group::SECP384R1, kx_group::X25519], NamedGroup::secp384r1),
        (vec![kx_group::SECP256R1], NamedGroup::secp256r1),
        (vec![kx_group::X25519, kx_group::SECP256R1], NamedGroup::X25519),
    ] {
        let client = pair.client(&modern().with_kx_groups(groups));
        let (c, s, outcome) = handshake(&client, &server, "mx.example.test");
        assert!(outcome.ok(), "{outcome:?}");
        assert_eq!(group_of(&c), expect);
        assert_eq!(group_of(&s), expect);
    }
}

#[test]
fn a_tls12_only_client_fails_against_modern() {
    let pair = Pair::new();
    let client = pair.client(&compatible().versions(&[TlsVersion::Tls12]));
    let (_, server, outcome) = handshake(&client, &pair.server(&modern()), "mx.example.test");
    assert!(!outcome.ok());
    assert!(matches!(outcome.server, Some(rustls::Error::PeerIncompatible(_))), "{outcome:?}");
    assert!(server.protocol_version().is_none());
}

#[test]
fn a_tls12_only_client_succeeds_against_compatible() {
    let pair = Pair::new();
    let client = pair.client(&compatible().versions(&[TlsVersion::Tls12]));
    let (mut c, mut s, outcome) = handshake(&client, &pair.server(&compatible()), "mx.example.test");
    assert!(outcome.ok(), "{outcome:?}");
    assert_eq!(s.protocol_version(), Some(ProtocolVersion::TLSv1_2));
    assert_eq!(suite_of(&s), "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384");
    assert_eq!(group_of(&s), NamedGroup::X25519);
    exchange(&mut c, &mut s, "tls12");
}

#[test]
fn a_tls13_client_gets_tls13_from_compatible() {
    let pair = Pair::new();
    let (_, s, outcome) =
        handshake(&pair.client(&compatible()), &pair.server(&compatible()), "mx.example.test");
    assert!(outcome.ok(), "{outcome:?}");
    assert_eq!(s.protocol_version(), Some(ProtocolVersion::TLSv1_3));
}

/// Every suite Compatible allows, forced one at a time from the client, with ECDSA and
/// RSA certificates: each negotiates, and each is ECDHE (or TLS 1.3) with an AEAD.
#[test]
fn every_compatible_suite_negotiates_and_is_ecdhe_aead() {
    let ecdsa = Pair::new();
    let rsa = Pair::rsa();
    let servers = [(&ecdsa, ecdsa.server(&compatible())), (&rsa, rsa.server(&compatible()))];
    let allowed = compatible().explain().cipher_suites;
    assert_eq!(allowed.len(), 9);
    let all: Vec<SupportedCipherSuite> = rustls::crypto::ring::ALL_CIPHER_SUITES.to_vec();
    for suite in all {
        let name = format!("{:?}", suite.suite());
        assert!(allowed.contains(&name), "{name} is not in Compatible");
        let version = if name.starts_with("TLS13_") { TlsVersion::Tls13 } else { TlsVersion::Tls12 };
        let client_policy = compatible().versions(&[version]).cipher_suites(vec![suite]);
        for (pair, server) in &servers {
            let wants_rsa = name.contains("_RSA_");
            let is_rsa = std::ptr::eq(*pair, &rsa);
            if version == TlsVersion::Tls12 && wants_rsa != is_rsa {
                continue;
            }
            let (_, s, outcome) = handshake(&pair.client(&client_policy), server, "mx.example.test");
            assert!(outcome.ok(), "{name}: {outcome:?}");
            let got = suite_of(&s);
            assert_eq!(got, name);
            assert!(got.starts_with("TLS13_") || got.starts_with("TLS_ECDHE_"), "{got}");
            assert!(got.contains("_GCM_") || got.contains("CHACHA20_POLY1305"), "{got}");
        }
    }
}

#[test]
fn rsa_certificates_use_ecdhe_rsa_in_tls12() {
    let pair = Pair::rsa();
    let client = pair.client(&compatible().versions(&[TlsVersion::Tls12]));
    let (_, s, outcome) = handshake(&client, &pair.server(&compatible()), "mx.example.test");
    assert!(outcome.ok(), "{outcome:?}");
    assert_eq!(suite_of(&s), "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384");
}

#[test]
fn server_cipher_order_is_a_knob() {
    let pair = Pair::new();
    let client = pair.client(
        &modern()
            .cipher_suites(vec![suites::TLS13_CHACHA20_POLY1305_SHA256, suites::TLS13_AES_256_GCM_SHA384]),
    );
    let (_, s, _) = handshake(&client, &pair.server(&modern()), "mx.example.test");
    assert_eq!(suite_of(&s), "TLS13_CHACHA20_POLY1305_SHA256");
    let (_, s, _) =
        handshake(&client, &pair.server(&modern().prefer_server_cipher_order(true)), "mx.example.test");
    assert_eq!(suite_of(&s), "TLS13_AES_256_GCM_SHA384");
}

// A ClientHello written by hand, offering what rustls clients never offer: CBC, static RSA
// and DHE key exchange, RC4, 3DES.

const TLS_RSA_WITH_3DES_EDE_CBC_SHA: u16 = 0x000a;
const TLS_RSA_WITH_AES_128_CBC_SHA: u16 = 0x002f;
const TLS_RSA_WITH_AES_256_CBC_SHA256: u16 = 0x003d;
const TLS_RSA_WITH_AES_128_GCM_SHA256: u16 = 0x009c;
const TLS_RSA_WITH_AES_256_GCM_SHA384: u16 = 0x009d;
const TLS_DHE_RSA_WITH_AES_128_GCM_SHA256: u16 = 0x009e;
const TLS_ECDHE_RSA_WITH_RC4_128_SHA: u16 = 0xc011;
const TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA: u16 = 0xc013;
const TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256: u16 = 0xc023;
const TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384: u16 = 0xc028;
const TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: u16 = 0xc02b;
const TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: u16 = 0xc02f;

const LEGACY_SUITES: [u16; 10] = [
    TLS_RSA_WITH_3DES_EDE_CBC_SHA,
    TLS_RSA_WITH_AES_128_CBC_SHA,
    TLS_RSA_WITH_AES_256_CBC_SHA256,
    TLS_RSA_WITH_AES_128_GCM_SHA256,
    TLS_RSA_WITH_AES_256_GCM_SHA384,
    TLS_DHE_RSA_WITH_AES_128_GCM_SHA256,
    TLS_ECDHE_RSA_WITH_RC4_128_SHA,
    TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
    TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
    TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384,
];

fn extension(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

/// A TLS 1.2 ClientHello record (no supported_versions extension).
fn tls12_client_hello(suites: &[u16], ems: bool) -> Vec<u8> {
    let mut ext = Vec::new();
    extension(&mut ext, 0x000a, &[0x00, 0x06, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18]); // groups
    extension(&mut ext, 0x000b, &[0x01, 0x00]); // ec_point_formats: uncompressed
    extension(&mut ext, 0x000d, &[0x00, 0x08, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01, 0x05, 0x03]); // sig algs
    extension(&mut ext, 0xff01, &[0x00]); // renegotiation_info
    if ems {
        extension(&mut ext, 0x0017, &[]); // extended_master_secret
    }
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x5a; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut handshake = vec![0x01];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// Feeds a raw ClientHello to a server: the suite it chose, or its error.
fn raw_hello(server: &Arc<ServerConfig>, hello: &[u8]) -> Result<u16, rustls::Error> {
    let mut conn = ServerConnection::new(server.clone()).unwrap();
    conn.read_tls(&mut &hello[..]).unwrap();
    conn.process_new_packets()?;
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    // record header (5), handshake header (4), version (2), random (32), session id
    assert_eq!((out[0], out[5]), (0x16, 0x02), "a ServerHello");
    let sid = usize::from(out[5 + 4 + 2 + 32]);
    let at = 5 + 4 + 2 + 32 + 1 + sid;
    Ok(u16::from_be_bytes([out[at], out[at + 1]]))
}

#[test]
fn compatible_refuses_cbc_rc4_3des_static_rsa_and_dhe() {
    for pair in [Pair::new(), Pair::rsa()] {
        let server = pair.server(&compatible());
        let err = raw_hello(&server, &tls12_client_hello(&LEGACY_SUITES, true)).unwrap_err();
        assert_eq!(err, rustls::Error::PeerIncompatible(PeerIncompatible::NoCipherSuitesInCommon));
        for suite in LEGACY_SUITES {
            assert!(raw_hello(&server, &tls12_client_hello(&[suite], true)).is_err(), "{suite:#06x}");
        }
    }
}

#[test]
fn compatible_picks_the_aead_suite_among_legacy_ones() {
    let server = Pair::new().server(&compatible());
    let mut offer = LEGACY_SUITES.to_vec();
    offer.push(TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
    assert_eq!(
        raw_hello(&server, &tls12_client_hello(&offer, true)),
        Ok(TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
    );
    let server = Pair::rsa().server(&compatible());
    let mut offer = LEGACY_SUITES.to_vec();
    offer.insert(3, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256);
    assert_eq!(
        raw_hello(&server, &tls12_client_hello(&offer, true)),
        Ok(TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
    );
}

#[test]
fn modern_refuses_a_raw_tls12_hello() {
    let server = Pair::new().server(&modern());
    let hello = tls12_client_hello(&[TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256], true);
    assert!(matches!(raw_hello(&server, &hello), Err(rustls::Error::PeerIncompatible(_))));
}

#[test]
fn compatible_requires_the_extended_master_secret() {
    let pair = Pair::new();
    let hello = tls12_client_hello(&[TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256], false);
    assert_eq!(
        raw_hello(&pair.server(&compatible()), &hello),
        Err(rustls::Error::PeerIncompatible(PeerIncompatible::ExtendedMasterSecretExtensionRequired))
    );
    // rustls's own default would have let it through: the knob turns our default off.
    let relaxed = pair.server(&compatible().require_extended_master_secret(false));
    assert_eq!(raw_hello(&relaxed, &hello), Ok(TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256));
}

/// An independent client: rustls on aws-lc-rs with its default (post-quantum first) groups.
#[test]
fn interoperates_with_an_aws_lc_rs_client() {
    let pair = Pair::new();
    let explained = modern().explain();
    for (policy, version) in [
        (modern(), ProtocolVersion::TLSv1_3),
        (compatible(), ProtocolVersion::TLSv1_3),
        (compatible(), ProtocolVersion::TLSv1_2),
    ] {
        let versions: &[&rustls::SupportedProtocolVersion] = if version == ProtocolVersion::TLSv1_2 {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        let client =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(pair.ca.roots())
                .with_no_client_auth();
        let (mut c, mut s, outcome) = handshake(&Arc::new(client), &pair.server(&policy), "mx.example.test");
        assert!(outcome.ok(), "{outcome:?}");
        assert_eq!(s.protocol_version(), Some(version));
        let group = rustls_group_name(group_of(&s));
        assert!(explained.kx_groups.contains(&group), "{group}");
        if version == ProtocolVersion::TLSv1_3 && explained.kx_groups.iter().any(|g| g == "X25519MLKEM768") {
            assert_eq!(group, "X25519MLKEM768");
        }
        exchange(&mut c, &mut s, "aws-lc-rs");
    }
}

fn rustls_group_name(group: NamedGroup) -> String {
    format!("{group:?}")
}

// ---------------------------------------------------------------------------------------
// Knobs: resumption, ALPN, fragment size, post-quantum requirement, clock
// ---------------------------------------------------------------------------------------

#[test]
fn resumption_follows_the_policy() {
    let pair = Pair::new();
    for (policy, version, resumes) in [
        (modern(), TlsVersion::Tls13, true),
        (modern().session_tickets(true), TlsVersion::Tls13, true),
        (modern().session_cache(0).session_tickets(true), TlsVersion::Tls13, true),
        (modern().resumption(false), TlsVersion::Tls13, false),
        (compatible(), TlsVersion::Tls12, true),
        (compatible().session_tickets(true), TlsVersion::Tls12, true),
        (compatible().resumption(false), TlsVersion::Tls12, false),
    ] {
        let server = pair.server(&policy);
        let client = pair.client(&policy.clone().versions(&[version]));
        let (_, first, outcome) = handshake(&client, &server, "mx.example.test");
        assert!(outcome.ok(), "{outcome:?}");
        assert_eq!(first.handshake_kind(), Some(HandshakeKind::Full));
        let (_, second, outcome) = handshake(&client, &server, "mx.example.test");
        assert!(outcome.ok(), "{outcome:?}");
        let expect = if resumes { HandshakeKind::Resumed } else { HandshakeKind::Full };
        assert_eq!(second.handshake_kind(), Some(expect), "{:?} {version}", policy.explain());
    }
}

#[test]
fn alpn_is_off_by_default_and_strict_when_set() {
    let pair = Pair::new();
    let (_, s, _) = handshake(&pair.client(&modern()), &pair.server(&modern()), "mx.example.test");
    assert_eq!(s.alpn_protocol(), None);
    let smtp = modern().alpn_protocols(vec![b"smtp".to_vec()]);
    let (_, s, outcome) = handshake(&pair.client(&smtp), &pair.server(&smtp), "mx.example.test");
    assert!(outcome.ok());
    assert_eq!(s.alpn_protocol(), Some(&b"smtp"[..]));
    // ALPACA: an HTTP client must not be able to talk to the mail server.
    let http = modern().alpn_protocols(vec![b"http/1.1".to_vec()]);
    let (_, _, outcome) = handshake(&pair.client(&http), &pair.server(&smtp), "mx.example.test");
    assert_eq!(outcome.server, Some(rustls::Error::NoApplicationProtocol));
}

#[test]
fn max_fragment_size_limits_records() {
    let pair = Pair::new();
    let policy = modern().max_fragment_size(Some(512));
    let (mut c, mut s, outcome) =
        handshake(&pair.client(&modern()), &pair.server(&policy), "mx.example.test");
    assert!(outcome.ok());
    s.writer().write_all(&[b'x'; 4000]).unwrap();
    let wire = s.drain();
    let mut records = 0;
    let mut rest = &wire[..];
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if rest[0] == 0x17 {
            // TLS 1.3 ciphertext: plaintext + content type (1) + AEAD tag (16).
            assert!(len <= 512 - 5 + 17, "record of {len} bytes");
            records += 1;
        }
        rest = &rest[5 + len..];
    }
    assert!(records >= 8, "{records}");
    assert!(c.feed(&wire).is_ok());
    assert_eq!(read_plaintext(&mut c.reader()).len(), 4000);
    assert!(matches!(
        modern().max_fragment_size(Some(16)).server_config(pair.store.clone()),
        Err(TlsError::MaxFragmentSize(16))
    ));
}

#[test]
fn require_post_quantum_offers_only_pq_groups() {
    // Modern offers the hybrid group first by default; requiring it keeps only it.
    assert_eq!(modern().explain().kx_groups[0], "X25519MLKEM768");
    assert!(!modern().explain().weaknesses.contains(&Weakness::NoPostQuantumGroup));
    let policy = modern().require_post_quantum(true);
    let explained = policy.explain();
    assert_eq!(explained.kx_groups, ["X25519MLKEM768"]);
    assert!(explained.require_post_quantum);
    assert!(explained.to_string().contains("post-quantum required"));
    // A classical-only client cannot get in.
    let pair = Pair::new();
    let classical = modern().with_kx_groups(vec![kx_group::X25519]);
    let (_, _, outcome) = handshake(&pair.client(&classical), &pair.server(&policy), "mx.example.test");
    assert_eq!(outcome.server, Some(rustls::Error::PeerIncompatible(PeerIncompatible::NoKxGroupsInCommon)));
    // A default (Modern) client negotiates the hybrid group with it.
    let (client, _, outcome) = handshake(&pair.client(&modern()), &pair.server(&policy), "mx.example.test");
    assert_eq!(outcome.server, None);
    assert_eq!(client.negotiated_key_exchange_group().map(|g| g.name()), Some(NamedGroup::X25519MLKEM768));
}

#[test]
fn require_post_quantum_errors() {
    let store = Pair::new().store;
    let classical = modern().with_kx_groups(vec![kx_group::X25519]).require_post_quantum(true);
    assert!(matches!(classical.server_config(store.clone()), Err(TlsError::NoPostQuantumGroup)));
    let with_tls12 =
        compatible().prefer_kx_groups(vec![postern::tls::X25519MLKEM768]).require_post_quantum(true);
    assert!(matches!(with_tls12.server_config(store.clone()), Err(TlsError::PostQuantumWithTls12)));
}

#[test]
fn inconsistent_policies_are_refused() {
    let pair = Pair::new();
    let store = pair.store.clone();
    assert!(matches!(modern().versions(&[]).server_config(store.clone()), Err(TlsError::NoProtocolVersions)));
    let tls13_suites_only = compatible().cipher_suites(vec![suites::TLS13_AES_128_GCM_SHA256]);
    assert!(matches!(
        tls13_suites_only.server_config(store.clone()),
        Err(TlsError::NoCipherSuite { version: TlsVersion::Tls12 })
    ));
    assert!(matches!(
        modern().with_kx_groups(vec![]).server_config(store.clone()),
        Err(TlsError::NoKxGroups)
    ));
    let empty = Arc::new(RootCertStore::empty());
    assert!(matches!(
        modern().client_auth(ClientAuth::Required(empty.clone())).server_config(store.clone()),
        Err(TlsError::Verifier(_))
    ));
    assert!(matches!(modern().client_config(empty, None), Err(TlsError::Verifier(_))));
    let message = TlsError::NoCipherSuite { version: TlsVersion::Tls12 }.to_string();
    assert_eq!(message, "TLSv1.2 is enabled but no configured cipher suite is usable with it");
}

#[test]
fn the_policy_clock_is_used_for_certificate_checks() {
    // A server certificate that expired in 2025 verifies with a 2024 clock only.
    let ca = Ca::new("Clock CA");
    let mut params = CertificateParams::new(vec!["mx.example.test".to_string()]).unwrap();
    set_validity(&mut params, (2024, 1, 1), (2025, 1, 1));
    let leaf = ca.issue(params, KeyPair::generate().unwrap());
    let chain = certificates_from_pem(leaf.cert_pem.as_bytes()).unwrap();
    let key = private_key_from_pem(leaf.key_pem.as_bytes()).unwrap();
    let in_2024 = UNIX_EPOCH + Duration::from_secs(1_719_792_000);
    let loaded = postern::tls::load_certified_key_der(chain, key, in_2024).unwrap();
    let store = Arc::new(CertStore::with_default(loaded));
    let server = modern().server_config(store).unwrap();
    let (_, _, outcome) =
        handshake(&modern().client_config(ca.roots(), None).unwrap(), &server, "mx.example.test");
    assert!(
        matches!(
            outcome.client,
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. }
            ))
        ),
        "{outcome:?}"
    );

    #[derive(Debug)]
    struct In2024;
    impl TimeProvider for In2024 {
        fn current_time(&self) -> Option<UnixTime> {
            Some(UnixTime::since_unix_epoch(Duration::from_secs(1_719_792_000)))
        }
    }
    let client = TlsPolicy::modern().time_provider(Arc::new(In2024)).client_config(ca.roots(), None).unwrap();
    let (_, _, outcome) = handshake(&client, &server, "mx.example.test");
    assert!(outcome.ok(), "{outcome:?}");
}

// ---------------------------------------------------------------------------------------
// Mutual TLS
// ---------------------------------------------------------------------------------------

struct Mtls {
    pair: Pair,
    client_ca: Ca,
    client: Leaf,
}

impl Mtls {
    fn new() -> Self {
        let client_ca = Ca::new("Client CA");
        let client = client_ca.client();
        Self { pair: Pair::new(), client_ca, client }
    }

    fn client_config(&self, policy: &TlsPolicy, cert: Option<&Leaf>) -> Arc<ClientConfig> {
        policy.client_config(self.pair.ca.roots(), cert.map(|c| c.load().key)).unwrap()
    }
}

#[test]
fn required_client_auth_rejects_a_client_without_certificate() {
    let m = Mtls::new();
    for profile in [Profile::Modern, Profile::Compatible] {
        let policy = TlsPolicy::new(profile).time_provider(clock());
        let server = m.pair.server(&policy.clone().client_auth(ClientAuth::Required(m.client_ca.roots())));
        for version in [TlsVersion::Tls13, TlsVersion::Tls12] {
            if profile == Profile::Modern && version == TlsVersion::Tls12 {
                continue;
            }
            let client = m.client_config(&policy.clone().versions(&[version]), None);
            let (_, s, outcome) = handshake(&client, &server, "mx.example.test");
            assert_eq!(outcome.server, Some(rustls::Error::NoCertificatesPresented), "{version}");
            assert!(outcome.client.is_some());
            assert_eq!(PeerIdentity::from_connection(&s).unwrap(), None);
        }
    }
}

#[test]
fn required_client_auth_rejects_a_certificate_from_another_ca() {
    let m = Mtls::new();
    let stranger = Ca::new("Some Other CA").client();
    let server = m.pair.server(&modern().client_auth(ClientAuth::Required(m.client_ca.roots())));
    let (_, _, outcome) = handshake(&m.client_config(&modern(), Some(&stranger)), &server, "mx.example.test");
    assert!(
        matches!(
            outcome.server,
            Some(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer))
        ),
        "{outcome:?}"
    );
}

#[test]
fn required_client_auth_accepts_a_good_certificate_and_yields_its_identity() {
    let m = Mtls::new();
    for policy in [modern(), compatible().versions(&[TlsVersion::Tls12])] {
        let server = m.pair.server(&policy.clone().client_auth(ClientAuth::Required(m.client_ca.roots())));
        let (mut c, mut s, outcome) =
            handshake(&m.client_config(&policy, Some(&m.client)), &server, "mx.example.test");
        assert!(outcome.ok(), "{outcome:?}");
        exchange(&mut c, &mut s, "mtls");

        let id = PeerIdentity::from_connection(&s).unwrap().expect("a verified client identity");
        assert_eq!(id.subject, "CN=alice, O=Example Org");
        assert_eq!(id.common_names, ["alice"]);
        assert_eq!(id.issuer, "CN=Client CA");
        assert_eq!(id.dns_names, ["client.example.org"]);
        assert_eq!(id.emails, ["alice@example.org"]);
        assert_eq!(id.uris, ["spiffe://example.org/mta"]);
        assert_eq!(id.ip_addresses, ["192.0.2.7".parse::<std::net::IpAddr>().unwrap()]);

        let digest = ring::digest::digest(&ring::digest::SHA256, m.client.der.as_ref());
        assert_eq!(id.sha256.as_slice(), digest.as_ref());
        assert!(id.sha256_matches(digest.as_ref()));
        assert!(!id.sha256_matches(&[0u8; 32]));
        assert!(!id.sha256_matches(&digest.as_ref()[..31]));
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(id.sha256_hex(), hex);
        assert_eq!(id.to_tls_info_string(), format!("CN=alice, O=Example Org (sha256:{hex})"));

        let info = id.apply_to(postern::TlsInfo::new("TLSv1.3", suite_of(&s)));
        assert_eq!(info.peer_identity.as_deref(), Some(id.to_tls_info_string().as_str()));
        // And the client sees the server's identity the same way.
        let server_id = PeerIdentity::from_connection(&c).unwrap().unwrap();
        assert_eq!(server_id.dns_names, ["mx.example.test"]);
    }
}

#[test]
fn optional_client_auth_accepts_both_but_not_a_bad_certificate() {
    let m = Mtls::new();
    let server = m.pair.server(&modern().client_auth(ClientAuth::Optional(m.client_ca.roots())));

    let (_, s, outcome) = handshake(&m.client_config(&modern(), None), &server, "mx.example.test");
    assert!(outcome.ok(), "{outcome:?}");
    assert_eq!(PeerIdentity::from_connection(&s).unwrap(), None);

    let (_, s, outcome) = handshake(&m.client_config(&modern(), Some(&m.client)), &server, "mx.example.test");
    assert!(outcome.ok(), "{outcome:?}");
    assert_eq!(PeerIdentity::from_connection(&s).unwrap().unwrap().common_names, ["alice"]);

    let stranger = Ca::new("Some Other CA").client();
    let (_, _, outcome) = handshake(&m.client_config(&modern(), Some(&stranger)), &server, "mx.example.test");
    assert!(outcome.server.is_some(), "a certificate that is sent must verify");
}

#[test]
fn no_identity_while_handshaking() {
    let m = Mtls::new();
    let server = m.pair.server(&modern().client_auth(ClientAuth::Required(m.client_ca.roots())));
    let (_, s) = connect(&m.client_config(&modern(), Some(&m.client)), &server, "mx.example.test");
    assert!(s.is_handshaking());
    assert_eq!(PeerIdentity::from_connection(&s).unwrap(), None);
}

// ---------------------------------------------------------------------------------------
// PEM loading errors and notes
// ---------------------------------------------------------------------------------------

#[test]
fn pem_wrong_key_for_certificate() {
    let ca = Ca::new("PEM CA");
    let a = ca.server(&["a.example.test"]);
    let b = ca.server(&["b.example.test"]);
    let err = load_certified_key(a.cert_pem.as_bytes(), b.key_pem.as_bytes(), now()).unwrap_err();
    assert!(matches!(&err, TlsError::KeyMismatch { subject } if subject == "CN=a.example.test"), "{err:?}");
    assert!(err.to_string().contains("does not match the certificate"));
    // A key of another type (P-384 for a P-256 certificate) is a mismatch too.
    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap().serialize_pem();
    let err = load_certified_key(a.cert_pem.as_bytes(), p384.as_bytes(), now()).unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
}

#[test]
fn pem_expired_and_not_yet_valid() {
    let ca = Ca::new("PEM CA");
    let dated = |from: Ymd, to: Ymd| {
        let mut params = CertificateParams::new(vec!["mx.example.test".to_string()]).unwrap();
        set_validity(&mut params, from, to);
        ca.issue(params, KeyPair::generate().unwrap())
    };
    let expired = dated((2024, 1, 1), (2025, 6, 1));
    let err = expired.load_with_chain(&[]).unwrap_err();
    assert!(matches!(&err, TlsError::CertificateExpired { index: 0, .. }), "{err:?}");
    assert!(err.to_string().contains("expired on Sun, 01 Jun 2025"), "{err}");

    let future = dated((2027, 1, 1), (2028, 1, 1));
    let err = future.load_with_chain(&[]).unwrap_err();
    assert!(matches!(&err, TlsError::CertificateNotYetValid { index: 0, .. }), "{err:?}");
    assert!(err.to_string().contains("not valid before"), "{err}");

    // An expired intermediate breaks the chain just as much.
    let old_intermediate = ca.intermediate("Old Intermediate", (2025, 1, 1));
    let leaf = old_intermediate.server(&["mx.example.test"]);
    let err = leaf.load_with_chain(&[&old_intermediate.pem()]).unwrap_err();
    assert!(
        matches!(&err, TlsError::CertificateExpired { index: 1, subject, .. } if subject == "CN=Old Intermediate")
    );
}

#[test]
fn pem_garbage_and_empty() {
    let leaf = Ca::new("PEM CA").server(&["mx.example.test"]);
    let key = leaf.key_pem.as_bytes();
    for garbage in
        [&b""[..], b"\x00\xff\xfe not PEM at all", b"-----BEGIN NOTHING-----\nAAAA\n-----END NOTHING-----\n"]
    {
        assert!(matches!(load_certified_key(garbage, key, now()), Err(TlsError::NoCertificate)));
    }
    let bad_base64 = b"-----BEGIN CERTIFICATE-----\n!!!! not base64 !!!!\n-----END CERTIFICATE-----\n";
    assert!(matches!(load_certified_key(bad_base64, key, now()), Err(TlsError::Pem(_))));
    let no_end = b"-----BEGIN CERTIFICATE-----\nMIIB\n";
    assert!(matches!(load_certified_key(no_end, key, now()), Err(TlsError::Pem(_))));
    let not_der = b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        load_certified_key(not_der, key, now()),
        Err(TlsError::InvalidCertificate { index: 0, .. })
    ));

    let cert = leaf.cert_pem.as_bytes();
    assert!(matches!(load_certified_key(cert, b"", now()), Err(TlsError::NoPrivateKey)));
    // A certificate is not a key.
    assert!(matches!(load_certified_key(cert, cert, now()), Err(TlsError::NoPrivateKey)));
    let two_keys = format!("{}{}", leaf.key_pem, leaf.key_pem);
    assert!(matches!(
        load_certified_key(cert, two_keys.as_bytes(), now()),
        Err(TlsError::MultiplePrivateKeys)
    ));
    let encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
    assert!(matches!(load_certified_key(cert, encrypted, now()), Err(TlsError::EncryptedPrivateKey)));
    let dsa = b"-----BEGIN DSA PRIVATE KEY-----\nMIIB\n-----END DSA PRIVATE KEY-----\n";
    assert!(matches!(
        load_certified_key(cert, dsa, now()),
        Err(TlsError::UnsupportedKeyType { algorithm }) if algorithm == "DSA"
    ));
    // A combined file (chain and key together) works for both arguments.
    let combined = format!("{}{}", leaf.cert_pem, leaf.key_pem);
    assert!(load_certified_key(combined.as_bytes(), combined.as_bytes(), now()).is_ok());
}

#[test]
fn pem_unsupported_key_types() {
    let cert = Ca::new("PEM CA").server(&["mx.example.test"]).cert_pem;
    for (key, algorithm) in [(ED448_KEY, "Ed448"), (P521_KEY, "ECDSA P-521")] {
        let err = load_certified_key(cert.as_bytes(), key.as_bytes(), now()).unwrap_err();
        assert!(matches!(&err, TlsError::UnsupportedKeyType { algorithm: a } if a == algorithm), "{err:?}");
        assert!(err.to_string().contains("use RSA (2048 to 8192 bits), ECDSA P-256 or P-384, or Ed25519"));
    }
    // A supported algorithm with a key too small to be used.
    let err = load_certified_key(cert.as_bytes(), RSA_1024_KEY.as_bytes(), now()).unwrap_err();
    assert!(matches!(&err, TlsError::InvalidKey { algorithm, .. } if algorithm == "RSA"), "{err:?}");
}

#[test]
fn pem_supported_key_types_load() {
    let ca = Ca::new("PEM CA");
    for key in [
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
        KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
        KeyPair::from_pem(RSA_2048_KEY).unwrap(),
    ] {
        let leaf = ca.server_with_key(&["mx.example.test"], key);
        let loaded = leaf.load();
        assert_eq!(loaded.names, ["mx.example.test"]);
        assert_eq!(loaded.subject, "CN=mx.example.test");
    }
}

#[test]
fn pem_chain_notes() {
    let root = Ca::new("Root");
    let intermediate = root.intermediate("Intermediate", (2039, 1, 1));
    let leaf = intermediate.server(&["mx.example.test", "*.example.test"]);

    let alone = leaf.load_with_chain(&[]).unwrap();
    assert_eq!(alone.notes, [CertNote::NoIntermediates { issuer: "CN=Intermediate".into() }]);
    assert_eq!(alone.names, ["mx.example.test", "*.example.test"]);
    assert_eq!(alone.not_after, UNIX_EPOCH + Duration::from_secs(2_208_988_800)); // 2040-01-01

    let good = leaf.load_with_chain(&[&intermediate.pem()]).unwrap();
    assert_eq!(good.notes, []);
    assert_eq!(good.key.cert.len(), 2);

    let with_root = leaf.load_with_chain(&[&intermediate.pem(), &root.pem()]).unwrap();
    assert_eq!(with_root.notes, [CertNote::ContainsRoot { index: 2 }]);

    let out_of_order = leaf.load_with_chain(&[&root.pem(), &intermediate.pem()]).unwrap();
    assert!(out_of_order.notes.contains(&CertNote::ChainGap { index: 0, issuer: "CN=Intermediate".into() }));

    let self_signed = {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn("lonely");
        let cert = params.self_signed(&key).unwrap();
        load_certified_key(cert.pem().as_bytes(), key.serialize_pem().as_bytes(), now()).unwrap()
    };
    assert_eq!(self_signed.notes, [CertNote::SelfSigned, CertNote::NoDnsNames]);

    let mut params = CertificateParams::new(vec!["mx.example.test".to_string()]).unwrap();
    set_validity(&mut params, (2025, 10, 1), (2026, 1, 20));
    let soon = root.issue(params, KeyPair::generate().unwrap()).load();
    assert!(matches!(&soon.notes[..], [CertNote::NoIntermediates { .. }, CertNote::ExpiresSoon { .. }]));
    assert!(soon.expires_within(now(), Duration::from_secs(30 * 86_400)));
    assert!(!good.expires_within(now(), Duration::from_secs(30 * 86_400)));
    for note in soon.notes.iter().chain(&with_root.notes) {
        assert!(!note.to_string().is_empty());
    }
}

#[test]
fn root_stores_from_pem() {
    let a = Ca::new("A");
    let b = Ca::new("B");
    let both = format!("{}{}", a.pem(), b.pem());
    assert_eq!(root_store_from_pem(both.as_bytes()).unwrap().len(), 2);
    assert!(matches!(root_store_from_pem(b""), Err(TlsError::NoCertificate)));
}

// ---------------------------------------------------------------------------------------
// Hot swap, SNI, OCSP
// ---------------------------------------------------------------------------------------

fn served(client: &ClientConnection) -> CertificateDer<'static> {
    client.peer_certificates().unwrap()[0].clone()
}

#[test]
fn replace_serves_new_handshakes_and_keeps_old_connections() {
    let ca = Ca::new("Swap CA");
    let old = ca.server(&["mx.example.test"]);
    let new = ca.server(&["mx.example.test"]);
    let store = Arc::new(CertStore::with_default(old.load()));
    let server = modern().server_config(store.clone()).unwrap();
    // Resumption would skip the certificate altogether (see below), so this client does full
    // handshakes only.
    let client = modern().resumption(false).client_config(ca.roots(), None).unwrap();
    let resuming_client = modern().client_config(ca.roots(), None).unwrap();

    let (mut c1, mut s1, outcome) = handshake(&client, &server, "mx.example.test");
    assert!(outcome.ok());
    assert_eq!(served(&c1), old.der);
    assert!(handshake(&resuming_client, &server, "mx.example.test").2.ok());

    // A handshake in flight: the server has resolved its certificate, not finished.
    let (mut c_mid, mut s_mid) = connect(&client, &server, "mx.example.test");
    let mut hello = Vec::new();
    c_mid.write_tls(&mut hello).unwrap();
    s_mid.read_tls(&mut &hello[..]).unwrap();
    s_mid.process_new_packets().unwrap();

    let previous = store.replace_default(new.load()).unwrap();
    assert_eq!(previous.cert[0], old.der);

    let (mut c2, mut s2, outcome) = handshake(&client, &server, "mx.example.test");
    assert!(outcome.ok());
    assert_eq!(served(&c2), new.der);

    // A session established before the swap may still be resumed: it was authenticated
    // with the old certificate, and resumption sends none.
    let (_, resumed, outcome) = handshake(&resuming_client, &server, "mx.example.test");
    assert!(outcome.ok());
    assert_eq!(resumed.handshake_kind(), Some(HandshakeKind::Resumed));

    // The in-flight handshake completes with the certificate it had chosen.
    assert!(pump(&mut c_mid, &mut s_mid).ok());
    assert_eq!(served(&c_mid), old.der);

    // The connection made before the swap still carries data both ways.
    exchange(&mut c1, &mut s1, "before-swap");
    exchange(&mut c2, &mut s2, "after-swap");
    exchange(&mut c1, &mut s1, "still-going");
}

#[test]
fn sni_picks_exact_then_wildcard_then_default() {
    let ca = Ca::new("SNI CA");
    let default = ca.server(&["default.example.test"]).load();
    let mx = ca.server(&["mx.example.test"]).load();
    let wildcard = ca.server(&["*.example.org"]).load();
    let store = Arc::new(CertStore::with_default(default.clone()));
    assert!(store.replace("MX.Example.Test.", mx.clone()).unwrap().is_none());
    store.replace("*.example.org", wildcard.clone()).unwrap();
    assert_eq!(store.names(), ["*.example.org", "mx.example.test"]);

    let server = modern().server_config(store.clone()).unwrap();
    let client = modern().client_config(ca.roots(), None).unwrap();
    for (name, expect) in [
        ("mx.example.test", &mx),
        ("smtp.example.org", &wildcard),
        ("imap.example.org", &wildcard),
        ("default.example.test", &default),
    ] {
        let (c, s, outcome) = handshake(&client, &server, name);
        assert!(outcome.ok(), "{name}: {outcome:?}");
        assert_eq!(served(&c), mx_der(expect), "{name}");
        assert_eq!(s.server_name(), Some(name));
    }
    // A wildcard covers exactly one label: not the apex, not two labels deep.
    for name in ["example.org", "a.b.example.org", "unknown.example.test"] {
        assert!(Arc::ptr_eq(&store.get(Some(name)).unwrap(), &default.key), "{name}");
    }
    assert!(Arc::ptr_eq(&store.get(None).unwrap(), &default.key));
    assert!(Arc::ptr_eq(&store.get(Some("WWW.EXAMPLE.ORG")).unwrap(), &wildcard.key));

    // An exact name beats the wildcard; removing it falls back to the wildcard.
    let special = ca.server(&["special.example.org"]).load();
    store.replace("special.example.org", special.clone()).unwrap();
    let (c, _, _) = handshake(&client, &server, "special.example.org");
    assert_eq!(served(&c), mx_der(&special));
    assert!(store.remove("special.example.org").unwrap().is_some());
    assert!(Arc::ptr_eq(&store.get(Some("special.example.org")).unwrap(), &wildcard.key));

    assert!(matches!(store.replace("*.org", mx.clone()), Err(TlsError::InvalidName(_))));
    assert!(matches!(store.replace("not a name", mx), Err(TlsError::InvalidName(_))));
}

fn mx_der(cert: &LoadedCert) -> CertificateDer<'static> {
    cert.key.cert[0].clone()
}

#[test]
fn without_a_default_unknown_names_fail_the_handshake() {
    let ca = Ca::new("SNI CA");
    let store = Arc::new(CertStore::new());
    let server = modern().server_config(store.clone()).unwrap();
    let client = modern().client_config(ca.roots(), None).unwrap();
    let (_, _, outcome) = handshake(&client, &server, "mx.example.test");
    assert!(outcome.server.is_some());
    // Registering under every name of the certificate fixes it, in one swap.
    let multi = ca.server(&["mx.example.test", "*.mx.example.test"]).load();
    store.replace_for_names(&multi).unwrap();
    assert_eq!(store.names(), ["*.mx.example.test", "mx.example.test"]);
    for name in ["mx.example.test", "backup.mx.example.test"] {
        let (_, _, outcome) = handshake(&client, &server, name);
        assert!(outcome.ok(), "{name}: {outcome:?}");
    }
    assert!(format!("{store:?}").contains("mx.example.test"));
    // A certificate without DNS names cannot be registered by its names.
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = dn("nameless");
    let nameless = ca.issue(params, KeyPair::generate().unwrap()).load();
    assert!(matches!(
        store.replace_for_names(&nameless),
        Err(TlsError::NoDnsNames { subject }) if subject == "CN=nameless"
    ));
}

/// A verifier that records the OCSP response the server staples, then defers to WebPKI.
#[derive(Debug)]
struct RecordOcsp {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    seen: Mutex<Vec<Vec<u8>>>,
}

impl ServerCertVerifier for RecordOcsp {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.seen.lock().unwrap().push(ocsp_response.to_vec());
        self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[test]
fn ocsp_responses_are_stapled_and_swappable() {
    let ca = Ca::new("OCSP CA");
    let leaf = ca.server(&["mx.example.test"]);
    let store = Arc::new(CertStore::with_default(leaf.load().with_ocsp(b"ocsp-response-1".to_vec())));
    let verifier = Arc::new(RecordOcsp {
        inner: rustls::client::WebPkiServerVerifier::builder_with_provider(
            ca.roots(),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap(),
        seen: Mutex::new(Vec::new()),
    });
    for policy in [modern(), compatible().versions(&[TlsVersion::Tls12])] {
        verifier.seen.lock().unwrap().clear();
        store.replace_default(leaf.load().with_ocsp(b"ocsp-response-1".to_vec()));
        let server = policy.server_config(store.clone()).unwrap();
        // Full handshakes only: a resumed session sends no certificate and no staple.
        let client =
            policy.clone().resumption(false).client_config_with_verifier(verifier.clone(), None).unwrap();
        assert!(handshake(&client, &server, "mx.example.test").2.ok());
        // A fresh response (the application refreshes it before the old one expires).
        store.replace_default(leaf.load().with_ocsp(b"ocsp-response-2".to_vec()));
        assert!(handshake(&client, &server, "mx.example.test").2.ok());
        // An empty response removes the staple.
        store.replace_default(leaf.load().with_ocsp(Vec::new()));
        assert!(handshake(&client, &server, "mx.example.test").2.ok());
        let seen = verifier.seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [b"ocsp-response-1".to_vec(), b"ocsp-response-2".to_vec(), Vec::new()],
            "{policy:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// explain()
// ---------------------------------------------------------------------------------------

fn has_pq(groups: &[String]) -> bool {
    groups.iter().any(|g| g == "X25519MLKEM768")
}

#[test]
fn explain_modern() {
    let e = TlsPolicy::modern().explain();
    assert_eq!(e.profile, Profile::Modern);
    assert_eq!(e.versions, ["TLSv1.3"]);
    assert_eq!(
        e.cipher_suites,
        ["TLS13_AES_256_GCM_SHA384", "TLS13_AES_128_GCM_SHA256", "TLS13_CHACHA20_POLY1305_SHA256"]
    );
    assert!(
        e.kx_groups.ends_with(&["X25519".into(), "secp256r1".into(), "secp384r1".into()]),
        "{:?}",
        e.kx_groups
    );
    assert_eq!((e.client_auth, e.session_cache, e.session_tickets), ("none", 256, false));
    assert!(e.require_extended_master_secret && !e.prefer_server_cipher_order);
    assert!(e.alpn_protocols.is_empty() && e.max_fragment_size.is_none());
    let mut expected = vec![Weakness::NoClientAuth];
    if !has_pq(&e.kx_groups) {
        expected.push(Weakness::NoPostQuantumGroup);
    }
    assert_eq!(e.weaknesses, expected);
    let text = e.to_string();
    for line in
        ["TLS policy (profile modern)", "versions:       TLSv1.3", "client auth:    none", "weaknesses:"]
    {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
    assert!(!text.contains("EMS"), "{text}");
}

#[test]
fn explain_compatible() {
    let e = TlsPolicy::compatible().explain();
    assert_eq!(e.versions, ["TLSv1.3", "TLSv1.2"]);
    assert_eq!(e.cipher_suites.len(), 9);
    assert!(e.cipher_suites.iter().all(|s| s.starts_with("TLS13_") || s.starts_with("TLS_ECDHE_")));
    assert!(e.cipher_suites.iter().all(|s| !s.contains("CBC")));
    let mut expected = vec![Weakness::Tls12Enabled, Weakness::Tls12Resumption, Weakness::NoClientAuth];
    if !has_pq(&e.kx_groups) {
        expected.push(Weakness::NoPostQuantumGroup);
    }
    assert_eq!(e.weaknesses, expected);
    assert!(e.to_string().contains("TLS 1.2 EMS:    required"));

    let relaxed = TlsPolicy::compatible().require_extended_master_secret(false).resumption(false).explain();
    assert!(relaxed.weaknesses.contains(&Weakness::Tls12WithoutEms));
    assert!(!relaxed.weaknesses.contains(&Weakness::Tls12Resumption));
    assert!(relaxed.to_string().contains(Weakness::Tls12WithoutEms.description()));
}

#[test]
fn explain_client_auth_tickets_and_knobs() {
    let roots = Ca::new("Explain CA").roots();
    let required = TlsPolicy::modern().client_auth(ClientAuth::Required(roots.clone())).explain();
    assert!(!required.weaknesses.contains(&Weakness::NoClientAuth));
    assert_eq!((required.client_auth, required.client_auth_roots), ("required", 1));
    assert!(required.to_string().contains("client auth:    required (1 CA certificates)"));

    let optional = TlsPolicy::modern().client_auth(ClientAuth::Optional(roots)).explain();
    assert!(optional.weaknesses.contains(&Weakness::OptionalClientAuth));
    assert!(!optional.weaknesses.contains(&Weakness::NoClientAuth));

    let tickets = TlsPolicy::modern().session_tickets(true).explain();
    assert!(tickets.weaknesses.contains(&Weakness::SessionTickets));
    assert!(tickets.to_string().contains("stateless tickets"));

    let knobs = TlsPolicy::modern()
        .alpn_protocols(vec![b"smtp".to_vec()])
        .max_fragment_size(Some(1400))
        .prefer_server_cipher_order(true)
        .explain();
    let text = knobs.to_string();
    for line in ["ALPN:           smtp", "max record:     1400 bytes", "suite order:    server's"] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }

    let pq = TlsPolicy::modern()
        .prefer_kx_groups(vec![postern::tls::X25519MLKEM768])
        .client_auth(ClientAuth::Required(Ca::new("x").roots()));
    assert_eq!(pq.explain().weaknesses, []);
    assert!(pq.explain().to_string().contains("weaknesses: none"));
    assert!(is_post_quantum(NamedGroup::X25519MLKEM768));
}

#[test]
fn profiles_parse_from_flags() {
    assert_eq!("modern".parse::<Profile>().unwrap(), Profile::Modern);
    assert_eq!("COMPATIBLE".parse::<Profile>().unwrap(), Profile::Compatible);
    let err = "tls10".parse::<Profile>().unwrap_err();
    assert_eq!(err.to_string(), "unknown TLS profile \"tls10\" (expected \"modern\" or \"compatible\")");
    assert_eq!(TlsPolicy::default().profile(), Profile::Modern);
    assert_eq!(Profile::Compatible.to_string(), "compatible");
}

// ---------------------------------------------------------------------------------------
// Keys made with `openssl genpkey`, for what rcgen on ring cannot generate.
// ---------------------------------------------------------------------------------------

const RSA_2048_KEY: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCkdLCOF7HmIJju\n\
tju3jritVXtjHAWL4285y6youX0542xslo00Bm86IF96pkuRecUIm1o5ITY4/dIB\n\
zCZIQx6V2kbVKnIoH3prvGwDamUC6BKK9Fk9UYMgfhiYRhu4ET/yYKsdMS3kibkJ\n\
Ejhj+voWxlsWg08/r81K3CIoCx+P+y9DsM+E0Q4R26iCpQYnxKsncfU8QIXYrrj7\n\
gh7iiueL7bQyp73MQ9idd0ekifxrtoX41o48jIapq7Lyhj26PvbBBjD/l2qM8me4\n\
bSdSkS+8MVm5RY1VTNl/jy/mzwD/PWkjVMJkQn+GyMmNLNd7bvB1mD9pb7GsbHGq\n\
fi3w1DI9AgMBAAECggEAN+rTU2UcIJbJ2TTORkH5ajpsC01uV1u8KGcn7HCxcxrw\n\
dVWVanCbpiR2woHDpRHF3IDSIyW3RZaMLv9GrwBfaG2A8x8NFLZrTjGRenHVKbFW\n\
CLg/lZlfIA+v9iq0Zxg6aYPT+seLhq8LYtm2ocwm99J3C0cXjZyNjZwe4wWxNCeU\n\
0GQuHDTzjCbpJPU6P4BZbGP4BtbbF8+28350DRGLVA7/VQvVE+vtaNM8zMvZ52aC\n\
wIKLpf7uSBdoCd+uw6yDmqap8+6Gq7LZplMGBgWyRUFHF7HAwJOdAVKsHDeBuk1+\n\
FtiIWxotKCTYWi4zIgWVh2B4FDYtSvLBwf93cX1JswKBgQDcHITzosMQziqXDJ/C\n\
TvXJd6n7bLqjooh3mARaAYggCNI8JVxdfM+hJALjV5Ip1AEntq+/4aXoSlg44L3I\n\
PEDtGwtvObgs+1LbBUBEFNqLtJqLu62KcEqnAPj8nvQ5Fl+Zk4SfkBk5qN263EgV\n\
TbTiB+IEyzJjWDrPnU5Ht7WvMwKBgQC/RRk1Jgk8aKZrvlXUi6Djkt89mYSKT/0n\n\
JxS/gI3HGO2x6wjMyqqJETyV+cvvWFEgBqN/nRh8e0ffRFFP3psdQ0TPOAsPwDbB\n\
QFAolvyVgkuXpTo3LJOdj4S6M2dwVKLHf7MCxlidAgI8MLBnEt1WHzNfLACebgTg\n\
vYe+1IZYzwKBgDazg7sEpROlGOKHCaEBfIXADmdkgxGtj9qg1dwEa28CojS+WDEH\n\
lpYGXA1hsvpgLJVRCmZWTqPm7fvcpm1/w+bpBLN0lbfgEZxKtsj0ocd8b7fwQVWZ\n\
SIQucrJdUnZpgAKrrZb1+b7hn5ETs3pP4HcX3GyyjugvghYcktqx5h4PAoGAIZzG\n\
AkYN53TIkjSfprtm6bc8zfl1hkzqQwAmMEUqJSvnUZXpNPwEnhPOXtjIEualUwh3\n\
oQx9ahrMFZtO4sdO4QSaSgQiRYFU3f8sVwW5m5iLKjoaEeoegtjezU4NRntJI9/4\n\
GGu81NKui99OkL6K8QCIqZf0/+J7rvb/rPRyK5cCgYEAhE5Vy5wF+SLYpvZTbxR1\n\
mkyn/QW6eSSCvQoNVG5ewu+cX6vGWwB8VRIMTC79vpVQPIwrlbhBCXug9n81uQKH\n\
NtZx/j7AXdicCNZMn6NPRWfrTVaNZ0/GoqvL4XfjTbcpvmE41dgXcmGkA9+E1nXp\n\
+SrwDPuEk+48Bx9jtRwMIQE=\n\
-----END PRIVATE KEY-----\n\
";

const RSA_1024_KEY: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIICdwIBADANBgkqhkiG9w0BAQEFAASCAmEwggJdAgEAAoGBAPDEEXOkxA2AlMbF\n\
8MhgN7k3wO+ASFMlWNP3W4nM//EbvKHhLqd+x4zt4TfgerxtxJBOBd/BMJHSfHAi\n\
9cYct7mqWZOjtLwk1pf7EKThP4pwnAGzoDwzhiq3EhsrkZJMN2pVSEraTLaLOze4\n\
8zjKsIcPmPQSUwm59CiyD4fuQ4D5AgMBAAECgYAVm+NdF7qo45N2y6kyssANlZ1x\n\
YXgcTkvMqnTCx21pPG4PsWA4lD5gvbDrDPC3HLr5oKcSUAqF6/hTMDAS2dz7VmXV\n\
PpUFBv9uPVACt3cdd/YS8Ck47/A/6h/TepS9o2nLrZVFsF2jAp0X5j/TaScu/4W7\n\
dbRm8ZQp4LUojSJTSQJBAP1Ht7tc+5i8kcQAgfI10/UzerG6zw9wx3+ZTPfc1iR8\n\
m4d02Kr640n+2vdss6tuL5YVEn3UwhnM49hWWvDLFS8CQQDzWfKyA9uH0QbKxJR2\n\
qWZwzwcKa22c2cSaoLCAeGcxPgZHYwPqD5xnytVBUd9YbAefm/MwDJIM0x6vzzr9\n\
3hJXAkBiql9+k5hHRZ4bFn+IlUN+j5FKTxV+VFbC9Dsxi0u4ZvpHaFNHN/j2yFsQ\n\
a74KGCBdfNP5RLpgRpqzmeBPUS1tAkEAlf6MLBNangVF5XdzdwyFGuVQlqiOwI4t\n\
s412HUmZeW2cmyW5xOxoYEVSWtenDa5QqJ2MMMKexw7eLElUOCRIMwJBAO69LX65\n\
qF691VfiUKMNud/oU+apY2mYtDqqLA8UtkNxOC6t5Ru0fepmCxgMMkt32mIAtAOh\n\
1GIp3QT2rbAYjL8=\n\
-----END PRIVATE KEY-----\n\
";

const P521_KEY: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIHuAgEAMBAGByqGSM49AgEGBSuBBAAjBIHWMIHTAgEBBEIAeBnQTI8QZLM42NTo\n\
JqSzPt8ykGloY0fR2Cgcpx/hesy+KTokwhUfVHr6BwP6omxt7u+4zksTPRwdFSHv\n\
6I1KtpWhgYkDgYYABAEIhWRKzDuOCz2T63y0dwHMGgjY9THecKD354C2OF2FtLIx\n\
wljO4PEDrUTZEFL+aGhpWPdF2YNuSKFHZlRaRn9X0QHJTaxJt4Ea/lRhScpEK+Sc\n\
qF8czz97d8sGgdN6BX2+RwdbZPYY0I/O5Tz8B0QsjjuFmzCoglaJnxV2hFLy4m6a\n\
lw==\n\
-----END PRIVATE KEY-----\n\
";

const ED448_KEY: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MEcCAQAwBQYDK2VxBDsEOaYm86Idhg0w1edZBxrihLxi2Vg4E6IysMQENuAYB91v\n\
dsXCKTlfYoU/G6djWeIzed2ldfo2uvr+pQ==\n\
-----END PRIVATE KEY-----\n\
";
