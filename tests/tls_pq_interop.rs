//! The X25519MLKEM768 group (`postern::tls::X25519MLKEM768`, ring X25519 + `ml-kem`)
//! against rustls's own, independent implementation on aws-lc-rs: byte-for-byte at the
//! key-exchange level, and in complete in-memory TLS 1.3 handshakes in both directions.
//! Also: what "require PQ" does to a classical-only peer, and malformed key shares.
// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::sync::{Arc, OnceLock};

use postern::tls::X25519MLKEM768;
use rustls::crypto::{
    ActiveKeyExchange, CompletedKeyExchange, CryptoProvider, SharedSecret, SupportedKxGroup, aws_lc_rs, ring,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{
    AlertDescription, ClientConfig, ClientConnection, Connection, Error, HandshakeKind, NamedGroup,
    PeerIncompatible, PeerMisbehaved, ProtocolVersion, RootCertStore, ServerConfig, ServerConnection,
};

const EK_LEN: usize = 1184;
const CT_LEN: usize = 1088;
const X25519_LEN: usize = 32;
const CLIENT_SHARE_LEN: usize = EK_LEN + X25519_LEN;
const SERVER_SHARE_LEN: usize = CT_LEN + X25519_LEN;

// ---------------------------------------------------------------------------------------
// Harness: configs and an in-memory handshake driven with read_tls / write_tls.

struct TestCert {
    der: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

fn test_cert() -> &'static TestCert {
    static CERT: OnceLock<TestCert> = OnceLock::new();
    CERT.get_or_init(|| {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        TestCert {
            der: certified.cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()),
        }
    })
}

/// The ring provider with exactly these groups (postern's setting).
fn ring_with(kx_groups: &[&'static dyn SupportedKxGroup]) -> CryptoProvider {
    CryptoProvider { kx_groups: kx_groups.to_vec(), ..ring::default_provider() }
}

/// The aws-lc-rs provider with exactly these groups (the independent implementation).
fn aws_lc_with(kx_groups: &[&'static dyn SupportedKxGroup]) -> CryptoProvider {
    CryptoProvider { kx_groups: kx_groups.to_vec(), ..aws_lc_rs::default_provider() }
}

fn server_config(provider: CryptoProvider) -> Arc<ServerConfig> {
    let cert = test_cert();
    let config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der.clone()], PrivateKeyDer::Pkcs8(cert.key.clone_key()))
        .unwrap();
    Arc::new(config)
}

fn client_config(provider: CryptoProvider) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(test_cert().der.clone()).unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Both sides' errors when a handshake fails: the side that failed first, and what its
/// alert made of the peer.
#[derive(Debug)]
struct Failure {
    client: Option<Error>,
    server: Option<Error>,
}

struct Pair {
    client: Connection,
    server: Connection,
}

impl Pair {
    fn new(client: Arc<ClientConfig>, server: Arc<ServerConfig>) -> Self {
        let name = ServerName::try_from("localhost").unwrap();
        Self {
            client: Connection::Client(ClientConnection::new(client, name).unwrap()),
            server: Connection::Server(ServerConnection::new(server).unwrap()),
        }
    }

    /// Moves every pending record of `from` into `to` and processes it. Returns whether
    /// anything moved, and `to`'s error if processing failed.
    fn flow(from: &mut Connection, to: &mut Connection) -> (bool, Result<(), Error>) {
        let mut wire = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut wire).unwrap();
        }
        let mut rest = &wire[..];
        while !rest.is_empty() {
            to.read_tls(&mut rest).unwrap();
            if let Err(e) = to.process_new_packets() {
                return (true, Err(e));
            }
        }
        (!wire.is_empty(), Ok(()))
    }

    /// Runs the handshake to its end, or to the first error (whose alert is then
    /// delivered, so that both sides' view of the failure is reported).
    fn handshake(&mut self) -> Result<(), Box<Failure>> {
        for _ in 0..32 {
            let (c2s, result) = Self::flow(&mut self.client, &mut self.server);
            if let Err(e) = result {
                let (_, client) = Self::flow(&mut self.server, &mut self.client);
                return Err(Box::new(Failure { client: client.err(), server: Some(e) }));
            }
            let (s2c, result) = Self::flow(&mut self.server, &mut self.client);
            if let Err(e) = result {
                let (_, server) = Self::flow(&mut self.client, &mut self.server);
                return Err(Box::new(Failure { client: Some(e), server: server.err() }));
            }
            if !c2s && !s2c {
                assert!(!self.client.is_handshaking() && !self.server.is_handshaking(), "handshake stalled");
                return Ok(());
            }
        }
        panic!("handshake did not finish in 32 flights");
    }

    /// Application data both ways after the handshake.
    fn exchange_data(&mut self) {
        self.client.writer().write_all(b"EHLO client.example.org\r\n").unwrap();
        assert!(Self::flow(&mut self.client, &mut self.server).1.is_ok());
        assert_eq!(read_all(&mut self.server), b"EHLO client.example.org\r\n");
        self.server.writer().write_all(b"250 mx.example.test\r\n").unwrap();
        assert!(Self::flow(&mut self.server, &mut self.client).1.is_ok());
        assert_eq!(read_all(&mut self.client), b"250 mx.example.test\r\n");
    }

    fn groups(&self) -> (NamedGroup, NamedGroup) {
        (
            self.client.negotiated_key_exchange_group().unwrap().name(),
            self.server.negotiated_key_exchange_group().unwrap().name(),
        )
    }
}

fn read_all(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match conn.reader().read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    out
}

/// Whether a negotiated group is postern's (and not rustls's aws-lc-rs one).
fn is_postern(group: &dyn SupportedKxGroup) -> bool {
    std::ptr::addr_eq(group as *const dyn SupportedKxGroup, X25519MLKEM768 as *const dyn SupportedKxGroup)
}

/// A full handshake that must succeed on `group`, without a HelloRetryRequest, with
/// application data afterwards. Returns the finished pair.
fn assert_negotiates(client: Arc<ClientConfig>, server: Arc<ServerConfig>, group: NamedGroup) -> Pair {
    let mut pair = Pair::new(client, server);
    pair.handshake().unwrap();
    assert_eq!(pair.groups(), (group, group));
    assert_eq!(pair.client.handshake_kind(), Some(HandshakeKind::Full));
    assert_eq!(pair.server.handshake_kind(), Some(HandshakeKind::Full));
    assert_eq!(pair.client.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    pair.exchange_data();
    pair
}

// ---------------------------------------------------------------------------------------
// The group on its own.

#[test]
fn group_properties() {
    assert_eq!(X25519MLKEM768.name(), NamedGroup::X25519MLKEM768);
    assert_eq!(u16::from(X25519MLKEM768.name()), 0x11EC);
    assert!(!X25519MLKEM768.fips());
    assert!(X25519MLKEM768.ffdhe_group().is_none());
    assert!(X25519MLKEM768.usable_for_version(ProtocolVersion::TLSv1_3));
    assert!(!X25519MLKEM768.usable_for_version(ProtocolVersion::TLSv1_2));
    assert_eq!(format!("{X25519MLKEM768:?}"), "X25519MLKEM768");

    let kx = X25519MLKEM768.start().unwrap();
    assert_eq!(kx.group(), NamedGroup::X25519MLKEM768);
    assert_eq!(kx.pub_key().len(), CLIENT_SHARE_LEN);
    // The X25519 half doubles as a plain X25519 key share.
    let (classical, share) = kx.hybrid_component().unwrap();
    assert_eq!(classical, NamedGroup::X25519);
    assert_eq!(share, &kx.pub_key()[EK_LEN..]);
    // Fresh keys every time.
    assert_ne!(X25519MLKEM768.start().unwrap().pub_key(), kx.pub_key());
}

#[test]
fn postern_with_itself_at_the_key_exchange_level() {
    let client = X25519MLKEM768.start().unwrap();
    let server = X25519MLKEM768.start_and_complete(client.pub_key()).unwrap();
    assert_eq!(server.group, NamedGroup::X25519MLKEM768);
    assert_eq!(server.pub_key.len(), SERVER_SHARE_LEN);
    let client_secret = client.complete(&server.pub_key).unwrap();
    assert_eq!(client_secret.secret_bytes().len(), 64);
    assert_eq!(client_secret.secret_bytes(), server.secret.secret_bytes());
}

/// The wire format, proved against aws-lc-rs: the same 64-byte secret from each side, in
/// both roles, with the layout ML-KEM part first.
#[test]
fn byte_for_byte_with_aws_lc_rs() {
    let aws = aws_lc_rs::kx_group::X25519MLKEM768;
    for _ in 0..16 {
        // aws-lc-rs client, postern server.
        let client = aws.start().unwrap();
        let server = X25519MLKEM768.start_and_complete(client.pub_key()).unwrap();
        assert_eq!(server.pub_key.len(), SERVER_SHARE_LEN);
        let client_secret = client.complete(&server.pub_key).unwrap();
        assert_eq!(client_secret.secret_bytes(), server.secret.secret_bytes());
        assert_eq!(server.secret.secret_bytes().len(), 64);

        // postern client, aws-lc-rs server.
        let client = X25519MLKEM768.start().unwrap();
        let server = aws.start_and_complete(client.pub_key()).unwrap();
        let client_secret = client.complete(&server.pub_key).unwrap();
        assert_eq!(client_secret.secret_bytes(), server.secret.secret_bytes());
    }

    // The X25519 half sits last in the share and last in the secret: completing the
    // classical halves alone with aws-lc-rs's X25519 gives the secret's second half.
    let client = X25519MLKEM768.start().unwrap();
    let x25519_share = client.pub_key()[EK_LEN..].to_vec();
    let server = aws_lc_rs::kx_group::X25519.start_and_complete(&x25519_share).unwrap();
    let classical = client.complete_hybrid_component(&server.pub_key).unwrap();
    assert_eq!(classical.secret_bytes(), server.secret.secret_bytes());

    let aws_client = aws.start().unwrap();
    let ours = X25519MLKEM768.start_and_complete(aws_client.pub_key()).unwrap();
    let secret = aws_client.complete(&ours.pub_key).unwrap();
    assert_eq!(&secret.secret_bytes()[32..], &ours.secret.secret_bytes()[32..]);
}

// ---------------------------------------------------------------------------------------
// Handshakes.

#[test]
fn postern_on_both_sides() {
    let pair = assert_negotiates(
        client_config(ring_with(&[X25519MLKEM768])),
        server_config(ring_with(&[X25519MLKEM768])),
        NamedGroup::X25519MLKEM768,
    );
    assert!(is_postern(pair.client.negotiated_key_exchange_group().unwrap()));
    assert!(is_postern(pair.server.negotiated_key_exchange_group().unwrap()));
    // The Modern-style list on both sides: PQ first, X25519 as a fallback.
    assert_negotiates(
        client_config(ring_with(&[X25519MLKEM768, ring::kx_group::X25519])),
        server_config(ring_with(&[X25519MLKEM768, ring::kx_group::X25519])),
        NamedGroup::X25519MLKEM768,
    );
}

#[test]
fn postern_server_aws_lc_rs_client() {
    let server = server_config(ring_with(&[X25519MLKEM768]));
    let pair = assert_negotiates(
        client_config(aws_lc_with(&[aws_lc_rs::kx_group::X25519MLKEM768])),
        server.clone(),
        NamedGroup::X25519MLKEM768,
    );
    assert!(is_postern(pair.server.negotiated_key_exchange_group().unwrap()));
    assert!(!is_postern(pair.client.negotiated_key_exchange_group().unwrap()));
    // rustls's default aws-lc-rs client (prefer-post-quantum): hybrid and X25519 shares.
    assert_negotiates(client_config(aws_lc_rs::default_provider()), server, NamedGroup::X25519MLKEM768);
}

#[test]
fn aws_lc_rs_server_postern_client() {
    let client = client_config(ring_with(&[X25519MLKEM768]));
    let pair = assert_negotiates(
        client.clone(),
        server_config(aws_lc_with(&[aws_lc_rs::kx_group::X25519MLKEM768])),
        NamedGroup::X25519MLKEM768,
    );
    assert!(is_postern(pair.client.negotiated_key_exchange_group().unwrap()));
    assert!(!is_postern(pair.server.negotiated_key_exchange_group().unwrap()));
    assert_negotiates(
        client_config(ring_with(&[X25519MLKEM768, ring::kx_group::X25519])),
        server_config(aws_lc_rs::default_provider()),
        NamedGroup::X25519MLKEM768,
    );
}

#[test]
fn classical_client_against_a_server_that_requires_pq() {
    let failure = Pair::new(
        client_config(ring_with(&[ring::kx_group::X25519])),
        server_config(ring_with(&[X25519MLKEM768])),
    )
    .handshake()
    .unwrap_err();
    assert_eq!(failure.server, Some(Error::PeerIncompatible(PeerIncompatible::NoKxGroupsInCommon)));
    assert_eq!(failure.client, Some(Error::AlertReceived(AlertDescription::HandshakeFailure)));
}

#[test]
fn classical_client_against_a_server_that_prefers_pq() {
    assert_negotiates(
        client_config(ring_with(&[ring::kx_group::X25519])),
        server_config(ring_with(&[X25519MLKEM768, ring::kx_group::X25519])),
        NamedGroup::X25519,
    );
}

/// A client offering [X25519MLKEM768, X25519] sends both key shares, so a classical
/// server answers X25519 at once: no HelloRetryRequest (checked in `assert_negotiates`).
#[test]
fn pq_preferring_client_against_a_classical_server_needs_no_retry() {
    let client = client_config(ring_with(&[X25519MLKEM768, ring::kx_group::X25519]));
    assert_negotiates(
        client.clone(),
        server_config(ring_with(&[ring::kx_group::X25519])),
        NamedGroup::X25519,
    );
    assert_negotiates(client, server_config(aws_lc_with(&[aws_lc_rs::kx_group::X25519])), NamedGroup::X25519);

    // The contrast, showing the check above can fail: with X25519 listed first the client
    // sends only an X25519 share, and a PQ-only server must ask for another.
    let mut pair = Pair::new(
        client_config(ring_with(&[ring::kx_group::X25519, X25519MLKEM768])),
        server_config(ring_with(&[X25519MLKEM768])),
    );
    pair.handshake().unwrap();
    assert_eq!(pair.groups(), (NamedGroup::X25519MLKEM768, NamedGroup::X25519MLKEM768));
    assert_eq!(pair.client.handshake_kind(), Some(HandshakeKind::FullWithHelloRetryRequest));
    pair.exchange_data();
}

#[test]
fn client_that_requires_pq_against_a_classical_server() {
    let failure = Pair::new(
        client_config(ring_with(&[X25519MLKEM768])),
        server_config(ring_with(&[ring::kx_group::X25519])),
    )
    .handshake()
    .unwrap_err();
    assert_eq!(failure.server, Some(Error::PeerIncompatible(PeerIncompatible::NoKxGroupsInCommon)));
    assert_eq!(failure.client, Some(Error::AlertReceived(AlertDescription::HandshakeFailure)));
}

// ---------------------------------------------------------------------------------------
// Malformed key shares.

const INVALID_KEY_SHARE: Error = Error::PeerMisbehaved(PeerMisbehaved::InvalidKeyShare);

/// X25519 public keys whose shared secret is all zeros (RFC 7748 §6.1): zero, the
/// points of order 4 and 8, and the zero point's non-canonical encoding p.
fn low_order_x25519() -> Vec<[u8; 32]> {
    let mut one = [0u8; 32];
    one[0] = 1;
    let order8 = [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda,
        0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00,
    ];
    let mut p = [0xff; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    vec![[0; 32], one, order8, p]
}

/// Sets coefficient 0 of the encoded encapsulation key to q = 3329: non-canonical.
fn make_non_canonical(ek: &mut [u8]) {
    ek[0] = 0x01;
    ek[1] = (ek[1] & 0xf0) | 0x0d;
}

/// A valid client share to mangle.
fn valid_client_share() -> Vec<u8> {
    X25519MLKEM768.start().unwrap().pub_key().to_vec()
}

#[test]
fn server_refuses_malformed_client_shares() {
    let valid = valid_client_share();
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), Vec::new()),
        ("X25519 only".into(), valid[EK_LEN..].to_vec()),
        ("ML-KEM only".into(), valid[..EK_LEN].to_vec()),
        ("one byte short".into(), valid[..CLIENT_SHARE_LEN - 1].to_vec()),
        ("one byte long".into(), [&valid[..], &[0]].concat()),
        ("a server share".into(), valid[..SERVER_SHARE_LEN].to_vec()),
    ];
    let mut non_canonical = valid.clone();
    make_non_canonical(&mut non_canonical);
    cases.push(("non-canonical encapsulation key".into(), non_canonical));
    for (i, point) in low_order_x25519().into_iter().enumerate() {
        let mut share = valid.clone();
        share[EK_LEN..].copy_from_slice(&point);
        cases.push((format!("low-order X25519 point #{i}"), share));
    }
    for (what, share) in cases {
        let result = X25519MLKEM768.start_and_complete(&share);
        assert_eq!(result.err(), Some(INVALID_KEY_SHARE), "{what}");
    }
    // The unmangled share is fine.
    assert!(X25519MLKEM768.start_and_complete(&valid).is_ok());
}

#[test]
fn client_refuses_malformed_server_shares() {
    let client_share = valid_client_share();
    let valid = X25519MLKEM768.start_and_complete(&client_share).unwrap().pub_key;
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), Vec::new()),
        ("one byte short".into(), valid[..SERVER_SHARE_LEN - 1].to_vec()),
        ("one byte long".into(), [&valid[..], &[0]].concat()),
        ("a client share".into(), client_share.clone()),
    ];
    for (i, point) in low_order_x25519().into_iter().enumerate() {
        let mut share = valid.clone();
        share[CT_LEN..].copy_from_slice(&point);
        cases.push((format!("low-order X25519 point #{i}"), share));
    }
    for (what, share) in cases {
        let client = X25519MLKEM768.start().unwrap();
        assert_eq!(client.complete(&share).err(), Some(INVALID_KEY_SHARE), "{what}");
    }
    // The classical-only completion checks too.
    for point in low_order_x25519() {
        let client = X25519MLKEM768.start().unwrap();
        assert_eq!(client.complete_hybrid_component(&point).err(), Some(INVALID_KEY_SHARE));
    }
    let client = X25519MLKEM768.start().unwrap();
    assert_eq!(client.complete_hybrid_component(&[9; 31]).err(), Some(INVALID_KEY_SHARE));
}

/// A corrupted ciphertext is not detectable (ML-KEM's implicit rejection): the client
/// derives an unrelated secret and the handshake fails later, at Finished.
#[test]
fn corrupted_ciphertext_gives_an_unrelated_secret() {
    let client = X25519MLKEM768.start().unwrap();
    let server = X25519MLKEM768.start_and_complete(client.pub_key()).unwrap();
    let mut share = server.pub_key.clone();
    share[100] ^= 0x80;
    let secret = client.complete(&share).unwrap();
    assert_ne!(&secret.secret_bytes()[..32], &server.secret.secret_bytes()[..32]);
    assert_eq!(&secret.secret_bytes()[32..], &server.secret.secret_bytes()[32..]);
}

/// A key-exchange group that claims to be X25519MLKEM768 and mangles its key share:
/// a misbehaving peer, on either side of a real handshake.
struct Mangled {
    what: &'static str,
    mangle: fn(&mut Vec<u8>),
}

impl std::fmt::Debug for Mangled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "X25519MLKEM768 with {}", self.what)
    }
}

struct MangledActive {
    inner: Box<dyn ActiveKeyExchange>,
    pub_key: Vec<u8>,
}

impl ActiveKeyExchange for MangledActive {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, Error> {
        self.inner.complete(peer)
    }
    fn pub_key(&self) -> &[u8] {
        &self.pub_key
    }
    fn group(&self) -> NamedGroup {
        NamedGroup::X25519MLKEM768
    }
}

impl SupportedKxGroup for Mangled {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let inner = X25519MLKEM768.start()?;
        let mut pub_key = inner.pub_key().to_vec();
        (self.mangle)(&mut pub_key);
        Ok(Box::new(MangledActive { inner, pub_key }))
    }
    fn start_and_complete(&self, client_share: &[u8]) -> Result<CompletedKeyExchange, Error> {
        let mut completed = X25519MLKEM768.start_and_complete(client_share)?;
        (self.mangle)(&mut completed.pub_key);
        Ok(completed)
    }
    fn name(&self) -> NamedGroup {
        NamedGroup::X25519MLKEM768
    }
}

static TRUNCATED: Mangled =
    Mangled { what: "a truncated share", mangle: |share| share.truncate(share.len() - 1) };
static EXTENDED: Mangled = Mangled { what: "a byte too many", mangle: |share| share.push(0) };
static NON_CANONICAL: Mangled =
    Mangled { what: "a non-canonical encapsulation key", mangle: |share| make_non_canonical(share) };
static ZERO_X25519: Mangled = Mangled {
    what: "an all-zero X25519 key",
    mangle: |share| {
        let at = share.len() - X25519_LEN;
        share[at..].fill(0);
    },
};
static FLIPPED_CIPHERTEXT: Mangled =
    Mangled { what: "a flipped ciphertext bit", mangle: |share| share[5] ^= 1 };

#[test]
fn handshake_with_malformed_client_shares_fails_cleanly() {
    for evil in [&TRUNCATED, &EXTENDED, &NON_CANONICAL, &ZERO_X25519] {
        let failure =
            Pair::new(client_config(ring_with(&[evil])), server_config(ring_with(&[X25519MLKEM768])))
                .handshake()
                .unwrap_err();
        assert_eq!(failure.server, Some(INVALID_KEY_SHARE), "{evil:?}");
        assert_eq!(
            failure.client,
            Some(Error::AlertReceived(AlertDescription::IllegalParameter)),
            "{evil:?}"
        );
    }
}

#[test]
fn handshake_with_malformed_server_shares_fails_cleanly() {
    for evil in [&TRUNCATED, &EXTENDED, &ZERO_X25519] {
        let failure =
            Pair::new(client_config(ring_with(&[X25519MLKEM768])), server_config(ring_with(&[evil])))
                .handshake()
                .unwrap_err();
        assert_eq!(failure.client, Some(INVALID_KEY_SHARE), "{evil:?}");
        assert_eq!(
            failure.server,
            Some(Error::AlertReceived(AlertDescription::IllegalParameter)),
            "{evil:?}"
        );
    }
    // A flipped ciphertext bit: implicit rejection, different handshake keys, and the
    // client cannot decrypt the server's first encrypted record.
    let failure = Pair::new(
        client_config(ring_with(&[X25519MLKEM768])),
        server_config(ring_with(&[&FLIPPED_CIPHERTEXT])),
    )
    .handshake()
    .unwrap_err();
    assert_eq!(failure.client, Some(Error::DecryptError));
    assert!(failure.server.is_some());
}
