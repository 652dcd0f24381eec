//! The TLS policy: named profiles and explicit knobs that build rustls configurations on
//! the *ring* provider, and explain themselves.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::{Resumption, Tls12Resumption, WebPkiServerVerifier};
use rustls::crypto::ring as ring_provider;
use rustls::crypto::{CryptoProvider, KeyExchangeAlgorithm, SupportedKxGroup};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{
    NoServerSessionStorage, ResolvesServerCert, ServerSessionMemoryCache, WebPkiClientVerifier,
};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::time_provider::TimeProvider;
use rustls::{
    ClientConfig, NamedGroup, RootCertStore, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion,
};

/// Everything that can go wrong when building a TLS configuration or loading certificates.
///
/// Every variant says what is wrong and, where it helps, what to do about it; the messages
/// are written to be shown to an operator as they are.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    // --- policy ---
    /// The policy enables no protocol version.
    #[error("the TLS policy enables no protocol version")]
    NoProtocolVersions,
    /// A protocol version is enabled but none of the configured cipher suites belongs to it.
    #[error("{version} is enabled but no configured cipher suite is usable with it")]
    NoCipherSuite {
        /// The version without a suite.
        version: TlsVersion,
    },
    /// A configured cipher suite is refused: TLS 1.2 suites must use ECDHE key exchange and
    /// an AEAD cipher (no CBC, no static-RSA or DHE key exchange, no NULL/RC4/3DES).
    #[error("cipher suite {suite} is refused: TLS 1.2 suites must be ECDHE with an AEAD cipher")]
    WeakCipherSuite {
        /// The suite's IANA name.
        suite: String,
    },
    /// The policy has no key-exchange group.
    #[error("the TLS policy has no key-exchange group")]
    NoKxGroups,
    /// `require_post_quantum(true)` but no post-quantum group is configured.
    #[error(
        "post-quantum key exchange is required but no post-quantum group (e.g. X25519MLKEM768) is configured"
    )]
    NoPostQuantumGroup,
    /// `require_post_quantum(true)` together with TLS 1.2, which has no post-quantum key exchange.
    #[error("post-quantum key exchange is required but TLS 1.2 is enabled, and TLS 1.2 cannot use it")]
    PostQuantumWithTls12,
    /// The maximum fragment size is outside what TLS allows.
    #[error("max fragment size {0} is out of range (32 ..= 16389 bytes, record header included)")]
    MaxFragmentSize(usize),
    /// An unknown profile name was parsed.
    #[error("unknown TLS profile {0:?} (expected \"modern\" or \"compatible\")")]
    UnknownProfile(String),
    /// Building a certificate verifier failed, for example because the CA set for client
    /// certificates (or for servers, on the client side) is empty.
    #[error("certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// rustls refused the configuration or the key.
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),

    // --- certificates and keys ---
    /// The PEM input holds no certificate.
    #[error("no certificate found (expected a \"-----BEGIN CERTIFICATE-----\" block)")]
    NoCertificate,
    /// The PEM input holds no private key.
    #[error(
        "no private key found (expected a \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" block)"
    )]
    NoPrivateKey,
    /// The PEM input holds more than one private key, so which one is meant is ambiguous.
    #[error("more than one private key found; give exactly one")]
    MultiplePrivateKeys,
    /// The private key is encrypted (PKCS#8 `ENCRYPTED PRIVATE KEY`).
    #[error(
        "the private key is encrypted; decrypt it first (e.g. `openssl pkey -in key.pem -out plain.pem`)"
    )]
    EncryptedPrivateKey,
    /// The PEM text itself is malformed (bad base64, a missing END line, ...).
    #[error("malformed PEM: {0}")]
    Pem(String),
    /// A certificate in the chain does not parse as X.509.
    #[error("certificate {index} in the chain does not parse: {reason}")]
    InvalidCertificate {
        /// Position in the chain, 0 being the end-entity certificate.
        index: usize,
        /// What the parser said.
        reason: String,
    },
    /// The key's algorithm cannot be used for TLS with the *ring* provider.
    #[error(
        "unsupported private key type {algorithm}: use RSA (2048 to 8192 bits), ECDSA P-256 or P-384, or Ed25519"
    )]
    UnsupportedKeyType {
        /// The algorithm found, e.g. `Ed448` or `ECDSA P-521`.
        algorithm: String,
    },
    /// The key has a supported algorithm but was rejected (too small, corrupt, ...).
    #[error("the {algorithm} private key was rejected: {reason}")]
    InvalidKey {
        /// The algorithm found.
        algorithm: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The private key does not belong to the end-entity certificate.
    #[error("the private key does not match the certificate for {subject} (wrong key for this certificate?)")]
    KeyMismatch {
        /// The certificate's subject.
        subject: String,
    },
    /// A certificate in the chain has expired.
    #[error("certificate {index} in the chain ({subject}) expired on {not_after}")]
    CertificateExpired {
        /// Position in the chain, 0 being the end-entity certificate.
        index: usize,
        /// The certificate's subject.
        subject: String,
        /// When it expired.
        not_after: String,
    },
    /// A certificate in the chain is not valid yet.
    #[error("certificate {index} in the chain ({subject}) is not valid before {not_before}")]
    CertificateNotYetValid {
        /// Position in the chain, 0 being the end-entity certificate.
        index: usize,
        /// The certificate's subject.
        subject: String,
        /// When it becomes valid.
        not_before: String,
    },
    /// A CA certificate given as a trust anchor could not be used.
    #[error("CA certificate {index} cannot be used as a trust anchor: {reason}")]
    InvalidTrustAnchor {
        /// Position among the CA certificates given.
        index: usize,
        /// Why.
        reason: String,
    },
    /// [`CertStore::replace_for_names`](super::CertStore::replace_for_names) was given a
    /// certificate without DNS names.
    #[error("the certificate for {subject} has no DNS name in its subjectAltName")]
    NoDnsNames {
        /// The certificate's subject.
        subject: String,
    },
    /// A name given to the [`CertStore`](super::CertStore) is not a DNS name (or `*.` wildcard).
    #[error("{0:?} is not a DNS name or a \"*.\" wildcard over at least two labels")]
    InvalidName(String),
}

/// A named starting point for a [`TlsPolicy`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Profile {
    /// TLS 1.3 only, AEAD suites, (EC)DHE key exchange. The default.
    #[default]
    Modern,
    /// TLS 1.3 plus TLS 1.2 restricted to ECDHE key exchange with AES-GCM or
    /// CHACHA20-POLY1305 (ECDSA or RSA certificates); no CBC, no static-RSA key exchange,
    /// and the extended master secret (RFC 7627) is required.
    Compatible,
}

impl Profile {
    /// The lowercase name, as accepted by [`FromStr`].
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Modern => "modern",
            Self::Compatible => "compatible",
        }
    }

    fn versions(self) -> Vec<TlsVersion> {
        match self {
            Self::Modern => vec![TlsVersion::Tls13],
            Self::Compatible => vec![TlsVersion::Tls13, TlsVersion::Tls12],
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Profile {
    type Err = TlsError;

    /// Parses `modern` or `compatible` (ASCII case-insensitive), e.g. from a
    /// `--tls-profile` flag.
    fn from_str(s: &str) -> Result<Self, TlsError> {
        if s.eq_ignore_ascii_case("modern") {
            Ok(Self::Modern)
        } else if s.eq_ignore_ascii_case("compatible") {
            Ok(Self::Compatible)
        } else {
            Err(TlsError::UnknownProfile(s.to_owned()))
        }
    }
}

/// A TLS protocol version postern can enable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246).
    Tls12,
    /// TLS 1.3 (RFC 8446).
    Tls13,
}

impl TlsVersion {
    /// The name used in [`TlsInfo::protocol`](crate::TlsInfo::protocol): `TLSv1.2` or `TLSv1.3`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Tls12 => "TLSv1.2",
            Self::Tls13 => "TLSv1.3",
        }
    }

    /// The rustls version this stands for.
    #[must_use]
    pub fn to_rustls(self) -> &'static SupportedProtocolVersion {
        match self {
            Self::Tls12 => &rustls::version::TLS12,
            Self::Tls13 => &rustls::version::TLS13,
        }
    }

    fn of_suite(suite: &SupportedCipherSuite) -> Self {
        match suite {
            SupportedCipherSuite::Tls12(_) => Self::Tls12,
            SupportedCipherSuite::Tls13(_) => Self::Tls13,
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether and how the server asks for client certificates (mutual TLS).
///
/// Certificates are verified by rustls's `WebPkiClientVerifier` against the CA set given
/// here (chain, validity, and the `clientAuth` extended key usage when the certificate has
/// an EKU extension). Read the verified identity with
/// [`PeerIdentity::from_connection`](super::PeerIdentity::from_connection).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum ClientAuth {
    /// No certificate is requested. The default.
    #[default]
    None,
    /// A certificate is requested; a client may send none, but one it sends must verify.
    Optional(Arc<RootCertStore>),
    /// A certificate that verifies against these CAs is required to complete the handshake.
    Required(Arc<RootCertStore>),
}

impl ClientAuth {
    /// `none`, `optional` or `required`.
    #[must_use]
    pub fn mode(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Optional(_) => "optional",
            Self::Required(_) => "required",
        }
    }

    fn roots(&self) -> usize {
        match self {
            Self::None => 0,
            Self::Optional(roots) | Self::Required(roots) => roots.len(),
        }
    }
}

/// Cipher suites of [`Profile::Modern`], most preferred first: TLS 1.3 only.
const MODERN_SUITES: [SupportedCipherSuite; 3] = [
    ring_provider::cipher_suite::TLS13_AES_256_GCM_SHA384,
    ring_provider::cipher_suite::TLS13_AES_128_GCM_SHA256,
    ring_provider::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
];

/// TLS 1.2 suites added by [`Profile::Compatible`]: ECDHE + AEAD only.
const COMPATIBLE_TLS12_SUITES: [SupportedCipherSuite; 6] = [
    ring_provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ring_provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ring_provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ring_provider::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ring_provider::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ring_provider::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// The default session cache size (sessions), as in rustls.
const DEFAULT_SESSION_CACHE: usize = 256;

/// How many TLS 1.3 tickets the server sends after a full handshake when resumption is on.
const TLS13_TICKETS: usize = 2;

/// Allowed `max_fragment_size` values (rustls: 32 up to 2^14 plus the 5-byte record header).
const FRAGMENT_RANGE: std::ops::RangeInclusive<usize> = 32..=16_389;

/// The key-exchange groups every profile starts from, most preferred first.
fn default_kx_groups() -> Vec<&'static dyn SupportedKxGroup> {
    // The hybrid post-quantum group first, so that every TLS 1.3 handshake with a client
    // that supports it is protected against "harvest now, decrypt later"; clients that
    // do not get X25519 without a HelloRetryRequest (our group also sends an X25519 share).
    vec![
        super::pq::X25519MLKEM768,
        ring_provider::kx_group::X25519,
        ring_provider::kx_group::SECP256R1,
        ring_provider::kx_group::SECP384R1,
    ]
}

/// Whether a key-exchange group is (hybrid) post-quantum: ML-KEM and its hybrids, and the
/// obsolete Kyber drafts.
///
/// ```
/// use postern::tls::is_post_quantum;
/// use rustls::NamedGroup;
///
/// assert!(is_post_quantum(NamedGroup::X25519MLKEM768));
/// assert!(!is_post_quantum(NamedGroup::X25519));
/// ```
#[must_use]
pub fn is_post_quantum(group: NamedGroup) -> bool {
    matches!(
        u16::from(group),
        // MLKEM512, MLKEM768, MLKEM1024
        0x0200..=0x0202
        // SecP256r1MLKEM768, X25519MLKEM768, SecP384r1MLKEM1024
        | 0x11eb..=0x11ed
        // X25519Kyber768Draft00, SecP256r1Kyber768Draft00
        | 0x6399 | 0x639a
    )
}

/// The IANA name of a group, e.g. `X25519`, `secp256r1`, `X25519MLKEM768`.
pub(crate) fn group_name(group: NamedGroup) -> String {
    match group.as_str() {
        Some(name) => name.to_owned(),
        None => format!("0x{:04x}", u16::from(group)),
    }
}

/// The IANA name of a cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
pub(crate) fn suite_name(suite: &SupportedCipherSuite) -> String {
    let id = suite.suite();
    match id.as_str() {
        Some(name) => name.to_owned(),
        None => format!("0x{:04x}", u16::from(id)),
    }
}

/// The TLS policy of an endpoint: one object that yields correct rustls configurations.
///
/// Start from a [`Profile`] ([`TlsPolicy::modern`], the default, or [`TlsPolicy::compatible`]),
/// adjust the knobs, then build a [`ServerConfig`] with [`server_config`](Self::server_config)
/// or a [`ClientConfig`] with [`client_config`](Self::client_config). Configurations always
/// use an explicit *ring* [`CryptoProvider`], never the process-default provider. Ask the
/// policy what it allows with [`explain`](Self::explain).
///
/// Defaults, and why:
///
/// | Knob | Default | Why |
/// |---|---|---|
/// | versions | Modern: TLS 1.3; Compatible: TLS 1.3 and 1.2 | TLS 1.3 has no known-weak modes |
/// | cipher suites | AES-256-GCM, AES-128-GCM, CHACHA20-POLY1305 (+ ECDHE-ECDSA/RSA TLS 1.2 variants in Compatible) | AEAD only; rustls implements no CBC or static-RSA suite, and custom suites are checked |
/// | key exchange | X25519MLKEM768 (hybrid post-quantum, see [`X25519MLKEM768`](super::X25519MLKEM768)), X25519, secp256r1, secp384r1 | the client's most preferred common group wins on the server side; the order is what a client offers; `require_post_quantum(true)` keeps only the hybrid |
/// | client order | followed (`prefer_server_cipher_order(false)`) | all suites are strong; clients without AES hardware rightly prefer ChaCha20 |
/// | EMS (RFC 7627) | required for TLS 1.2 | rustls *offers* EMS always but accepts a TLS 1.2 peer without it unless told otherwise |
/// | resumption | stateful cache of 256 sessions, no stateless tickets | resumption saves a full handshake per repeated MTA connection; a bounded cache keeps no long-lived ticket key in memory |
/// | 0-RTT / early data | off, not configurable | replayable data has no place in SMTP/POP3 |
/// | ALPN | none | mail protocols rarely use it; set `smtp`/`pop3` to defend against cross-protocol (ALPACA) attacks when clients send it |
/// | max fragment size | none (16 KiB records) | |
/// | client auth | none | see [`ClientAuth`] |
///
/// ```
/// use std::sync::Arc;
/// use std::time::SystemTime;
/// use postern::tls::{load_certified_key, CertStore, Profile, TlsPolicy, Weakness};
///
/// // A certificate (normally read from the files your ACME client writes).
/// let key = rcgen::KeyPair::generate().unwrap();
/// let cert = rcgen::CertificateParams::new(vec!["mx.example.test".into()])
///     .unwrap()
///     .self_signed(&key)
///     .unwrap();
/// let loaded = load_certified_key(cert.pem().as_bytes(), key.serialize_pem().as_bytes(), SystemTime::now())
///     .unwrap();
/// let store = Arc::new(CertStore::with_default(loaded));
///
/// let policy = TlsPolicy::new(Profile::Compatible).require_extended_master_secret(true);
/// let server = policy.server_config(store).unwrap();
/// assert_eq!(server.alpn_protocols, Vec::<Vec<u8>>::new());
///
/// let report = policy.explain();
/// assert!(report.weaknesses.contains(&Weakness::Tls12Enabled));
/// assert!(!report.weaknesses.contains(&Weakness::Tls12WithoutEms));
/// println!("{report}");
/// ```
#[derive(Clone, Debug)]
pub struct TlsPolicy {
    profile: Profile,
    versions: Vec<TlsVersion>,
    cipher_suites: Option<Vec<SupportedCipherSuite>>,
    kx_groups: Vec<&'static dyn SupportedKxGroup>,
    require_post_quantum: bool,
    alpn_protocols: Vec<Vec<u8>>,
    session_cache: usize,
    session_tickets: bool,
    max_fragment_size: Option<usize>,
    prefer_server_cipher_order: bool,
    require_ems: bool,
    client_auth: ClientAuth,
    time_provider: Option<Arc<dyn TimeProvider>>,
}

impl Default for TlsPolicy {
    fn default() -> Self {
        Self::new(Profile::Modern)
    }
}

impl TlsPolicy {
    /// The policy of a profile, with every other knob at its default.
    #[must_use]
    pub fn new(profile: Profile) -> Self {
        Self {
            profile,
            versions: profile.versions(),
            cipher_suites: None,
            kx_groups: default_kx_groups(),
            require_post_quantum: false,
            alpn_protocols: Vec::new(),
            session_cache: DEFAULT_SESSION_CACHE,
            session_tickets: false,
            max_fragment_size: None,
            prefer_server_cipher_order: false,
            require_ems: true,
            client_auth: ClientAuth::None,
            time_provider: None,
        }
    }

    /// [`Profile::Modern`]: TLS 1.3 only. Same as `TlsPolicy::default()`.
    #[must_use]
    pub fn modern() -> Self {
        Self::new(Profile::Modern)
    }

    /// [`Profile::Compatible`]: TLS 1.3 and ECDHE + AEAD TLS 1.2.
    #[must_use]
    pub fn compatible() -> Self {
        Self::new(Profile::Compatible)
    }

    /// The profile this policy started from.
    #[must_use]
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Sets the enabled protocol versions (order does not matter: the highest common
    /// version is always negotiated).
    ///
    /// Unless [`cipher_suites`](Self::cipher_suites) was set, the suites follow: every
    /// version gets its AEAD suites, so `TlsPolicy::modern().versions(&[Tls13, Tls12])`
    /// equals the Compatible profile.
    #[must_use]
    pub fn versions(mut self, versions: &[TlsVersion]) -> Self {
        let mut list = Vec::with_capacity(versions.len());
        for v in versions {
            if !list.contains(v) {
                list.push(*v);
            }
        }
        list.sort_by(|a, b| b.cmp(a));
        self.versions = list;
        self
    }

    /// Sets the cipher suites, most preferred first. Suites of versions that are not
    /// enabled are ignored; building fails with [`TlsError::NoCipherSuite`] if an enabled
    /// version is left without one, and with [`TlsError::WeakCipherSuite`] for a TLS 1.2
    /// suite that is not ECDHE + AEAD.
    ///
    /// ```
    /// use postern::tls::TlsPolicy;
    /// use rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256;
    ///
    /// let policy = TlsPolicy::modern().cipher_suites(vec![TLS13_CHACHA20_POLY1305_SHA256]);
    /// assert_eq!(policy.explain().cipher_suites, ["TLS13_CHACHA20_POLY1305_SHA256"]);
    /// ```
    #[must_use]
    pub fn cipher_suites(mut self, suites: Vec<SupportedCipherSuite>) -> Self {
        self.cipher_suites = Some(suites);
        self
    }

    /// Replaces the key-exchange groups, most preferred first (duplicates are dropped).
    ///
    /// This is the hook for groups from outside the *ring* provider, such as the
    /// X25519MLKEM768 hybrid: put it first so that a client sends its key share first.
    /// On the server side rustls picks the group the *client* prefers among those both
    /// support, so the order matters for what postern offers as a client.
    #[must_use]
    pub fn with_kx_groups(mut self, groups: Vec<&'static dyn SupportedKxGroup>) -> Self {
        let mut list: Vec<&'static dyn SupportedKxGroup> = Vec::with_capacity(groups.len());
        for g in groups {
            if !list.iter().any(|have| have.name() == g.name()) {
                list.push(g);
            }
        }
        self.kx_groups = list;
        self
    }

    /// Puts groups in front of the current list (dropping their older positions), e.g. a
    /// post-quantum group ahead of the classical defaults.
    #[must_use]
    pub fn prefer_kx_groups(self, groups: Vec<&'static dyn SupportedKxGroup>) -> Self {
        let mut list = groups;
        list.extend(self.kx_groups.iter().copied());
        self.with_kx_groups(list)
    }

    /// With `true`, only post-quantum (hybrid) groups, as told by [`is_post_quantum`], are
    /// offered and accepted: peers that cannot do ML-KEM fail the handshake. Building fails with
    /// [`TlsError::NoPostQuantumGroup`] if none is configured, and with
    /// [`TlsError::PostQuantumWithTls12`] if TLS 1.2 is enabled. Default `false`.
    #[must_use]
    pub fn require_post_quantum(mut self, require: bool) -> Self {
        self.require_post_quantum = require;
        self
    }

    /// Sets the ALPN protocols, most preferred first (default: none, no ALPN). With a list
    /// set, a server refuses clients that offer ALPN without a common protocol.
    #[must_use]
    pub fn alpn_protocols(mut self, protocols: Vec<Vec<u8>>) -> Self {
        self.alpn_protocols = protocols;
        self
    }

    /// Turns session resumption on or off as a whole. `resumption(true)` restores the
    /// default stateful cache if it was off; `resumption(false)` disables the cache and
    /// tickets: every connection does a full handshake.
    #[must_use]
    pub fn resumption(mut self, enabled: bool) -> Self {
        if enabled {
            if self.session_cache == 0 {
                self.session_cache = DEFAULT_SESSION_CACHE;
            }
        } else {
            self.session_cache = 0;
            self.session_tickets = false;
        }
        self
    }

    /// Sets the size of the stateful session cache (sessions kept in memory, the oldest
    /// evicted first); 0 disables it. Default 256. A client policy uses it as the number
    /// of servers whose sessions it remembers.
    #[must_use]
    pub fn session_cache(mut self, sessions: usize) -> Self {
        self.session_cache = sessions;
        self
    }

    /// Enables stateless session tickets (RFC 5077 for TLS 1.2, and TLS 1.3 tickets that
    /// carry the session instead of naming a cache entry). Default `false`.
    ///
    /// Tickets are sealed with ChaCha20-Poly1305 under a random key that rustls rotates
    /// every 6 hours (tickets live 12 hours); whoever steals that key can decrypt the
    /// sessions resumed with it, which is why the stateful cache is the default.
    #[must_use]
    pub fn session_tickets(mut self, enabled: bool) -> Self {
        self.session_tickets = enabled;
        self
    }

    /// Sets the maximum TLS record size including the 5-byte header (32 ..= 16389), or
    /// `None` for the TLS maximum. Smaller records can help latency on slow links.
    #[must_use]
    pub fn max_fragment_size(mut self, size: Option<usize>) -> Self {
        self.max_fragment_size = size;
        self
    }

    /// With `true` the server picks its own most preferred cipher suite among those the
    /// client offers (rustls's `ignore_client_order`); with `false` (default) it follows
    /// the client's order. It does not affect the key-exchange group, which rustls always
    /// chooses in the client's order.
    #[must_use]
    pub fn prefer_server_cipher_order(mut self, prefer: bool) -> Self {
        self.prefer_server_cipher_order = prefer;
        self
    }

    /// With `true` (default), a TLS 1.2 peer must support the extended master secret
    /// (RFC 7627), which closes the triple-handshake attack. rustls always offers EMS, but
    /// its own default accepts TLS 1.2 peers without it. Meaningless for TLS 1.3.
    #[must_use]
    pub fn require_extended_master_secret(mut self, require: bool) -> Self {
        self.require_ems = require;
        self
    }

    /// Sets client-certificate authentication (mutual TLS) for server configurations.
    #[must_use]
    pub fn client_auth(mut self, client_auth: ClientAuth) -> Self {
        self.client_auth = client_auth;
        self
    }

    /// Sets the clock rustls uses to check certificate validity and ticket ages.
    ///
    /// postern itself never reads the clock; without this, rustls's configurations use
    /// its default time provider (the system clock), as any rustls user does. Tests and
    /// simulations can pass a fixed time here.
    #[must_use]
    pub fn time_provider(mut self, provider: Arc<dyn TimeProvider>) -> Self {
        self.time_provider = Some(provider);
        self
    }

    /// The cipher suites in effect: configured (or the defaults), restricted to the
    /// enabled versions, in preference order.
    fn effective_suites(&self) -> Vec<SupportedCipherSuite> {
        let configured: Vec<SupportedCipherSuite> = match &self.cipher_suites {
            Some(list) => list.clone(),
            None => MODERN_SUITES.iter().chain(COMPATIBLE_TLS12_SUITES.iter()).copied().collect(),
        };
        let mut out: Vec<SupportedCipherSuite> = Vec::with_capacity(configured.len());
        for suite in configured {
            if self.versions.contains(&TlsVersion::of_suite(&suite))
                && !out.iter().any(|s| s.suite() == suite.suite())
            {
                out.push(suite);
            }
        }
        out
    }

    /// The groups in effect: all configured ones, or only the post-quantum ones.
    fn effective_groups(&self) -> Vec<&'static dyn SupportedKxGroup> {
        self.kx_groups
            .iter()
            .copied()
            .filter(|g| !self.require_post_quantum || is_post_quantum(g.name()))
            .collect()
    }

    /// Checks the policy and returns the pieces a configuration is built from.
    fn resolve(&self) -> Result<Resolved, TlsError> {
        if self.versions.is_empty() {
            return Err(TlsError::NoProtocolVersions);
        }
        if let Some(size) = self.max_fragment_size
            && !FRAGMENT_RANGE.contains(&size)
        {
            return Err(TlsError::MaxFragmentSize(size));
        }
        let suites = self.effective_suites();
        for suite in &suites {
            check_suite(suite)?;
        }
        for version in &self.versions {
            if !suites.iter().any(|s| TlsVersion::of_suite(s) == *version) {
                return Err(TlsError::NoCipherSuite { version: *version });
            }
        }
        if self.require_post_quantum && self.versions.contains(&TlsVersion::Tls12) {
            return Err(TlsError::PostQuantumWithTls12);
        }
        let groups = self.effective_groups();
        if groups.is_empty() {
            return Err(if self.require_post_quantum {
                TlsError::NoPostQuantumGroup
            } else {
                TlsError::NoKxGroups
            });
        }
        let versions = self.versions.iter().map(|v| v.to_rustls()).collect();
        let base = ring_provider::default_provider();
        let provider = Arc::new(CryptoProvider { cipher_suites: suites, kx_groups: groups, ..base });
        Ok(Resolved { provider, versions })
    }

    /// Builds a server configuration that chooses certificates with `certs` (usually a
    /// [`CertStore`](super::CertStore)) and authenticates clients per
    /// [`client_auth`](Self::client_auth).
    ///
    /// # Errors
    /// A [`TlsError`] when the policy is inconsistent (see the knobs) or the client CA set
    /// is empty.
    pub fn server_config(&self, certs: Arc<dyn ResolvesServerCert>) -> Result<Arc<ServerConfig>, TlsError> {
        let Resolved { provider, versions } = self.resolve()?;
        let builder = match &self.time_provider {
            Some(time) => ServerConfig::builder_with_details(provider.clone(), time.clone()),
            None => ServerConfig::builder_with_provider(provider.clone()),
        }
        .with_protocol_versions(&versions)?;
        let verifier: Arc<dyn ClientCertVerifier> = match &self.client_auth {
            ClientAuth::None => WebPkiClientVerifier::no_client_auth(),
            ClientAuth::Optional(roots) => {
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .allow_unauthenticated()
                    .build()?
            }
            ClientAuth::Required(roots) => {
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).build()?
            }
        };
        let mut config = builder.with_client_cert_verifier(verifier).with_cert_resolver(certs);
        config.ignore_client_order = self.prefer_server_cipher_order;
        config.max_fragment_size = self.max_fragment_size;
        config.alpn_protocols = self.alpn_protocols.clone();
        config.require_ems = self.require_ems;
        config.max_early_data_size = 0;
        config.send_half_rtt_data = false;
        config.session_storage = if self.session_cache > 0 {
            ServerSessionMemoryCache::new(self.session_cache)
        } else {
            Arc::new(NoServerSessionStorage {})
        };
        if self.session_tickets {
            config.ticketer = ring_provider::Ticketer::new()?;
        }
        config.send_tls13_tickets = if self.resumption_enabled() { TLS13_TICKETS } else { 0 };
        Ok(Arc::new(config))
    }

    /// Builds a client configuration that verifies servers against `roots` (with rustls's
    /// WebPKI verifier, host name included) and presents `client_cert` if the server asks.
    ///
    /// # Errors
    /// A [`TlsError`] when the policy is inconsistent (see the knobs) or `roots` is empty.
    pub fn client_config(
        &self,
        roots: Arc<RootCertStore>,
        client_cert: Option<Arc<CertifiedKey>>,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        let Resolved { provider, versions } = self.resolve()?;
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone()).build()?;
        self.build_client(provider, &versions, ServerVerifier::WebPki(verifier), client_cert)
    }

    /// Builds a client configuration with an application-supplied server-certificate
    /// verifier: DANE, MTA-STS, certificate pinning, or opportunistic TLS for SMTP relay
    /// (RFC 7435), where the application decides what an unverifiable certificate means.
    ///
    /// # Errors
    /// A [`TlsError`] when the policy is inconsistent (see the knobs).
    pub fn client_config_with_verifier(
        &self,
        verifier: Arc<dyn ServerCertVerifier>,
        client_cert: Option<Arc<CertifiedKey>>,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        let Resolved { provider, versions } = self.resolve()?;
        self.build_client(provider, &versions, ServerVerifier::Custom(verifier), client_cert)
    }

    fn build_client(
        &self,
        provider: Arc<CryptoProvider>,
        versions: &[&'static SupportedProtocolVersion],
        verifier: ServerVerifier,
        client_cert: Option<Arc<CertifiedKey>>,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        let builder = match &self.time_provider {
            Some(time) => ClientConfig::builder_with_details(provider, time.clone()),
            None => ClientConfig::builder_with_provider(provider),
        }
        .with_protocol_versions(versions)?;
        let builder = match verifier {
            ServerVerifier::WebPki(verifier) => builder.with_webpki_verifier(verifier),
            ServerVerifier::Custom(verifier) => {
                builder.dangerous().with_custom_certificate_verifier(verifier)
            }
        };
        let mut config = match client_cert {
            Some(key) => builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(key))),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn_protocols.clone();
        config.max_fragment_size = self.max_fragment_size;
        config.require_ems = self.require_ems;
        config.enable_early_data = false;
        config.enable_sni = true;
        config.resumption = if self.resumption_enabled() {
            let tls12 = if self.session_tickets {
                Tls12Resumption::SessionIdOrTickets
            } else {
                Tls12Resumption::SessionIdOnly
            };
            // With tickets only (no server-side cache), the client still needs somewhere to
            // keep them.
            let sessions = if self.session_cache == 0 { DEFAULT_SESSION_CACHE } else { self.session_cache };
            Resumption::in_memory_sessions(sessions).tls12_resumption(tls12)
        } else {
            Resumption::disabled()
        };
        Ok(Arc::new(config))
    }

    fn resumption_enabled(&self) -> bool {
        self.session_cache > 0 || self.session_tickets
    }

    /// Describes what this policy allows and flags its weaknesses.
    ///
    /// The lists are those in effect: suites restricted to the enabled versions, groups
    /// restricted to post-quantum ones when that is required. An inconsistent policy (one
    /// that [`server_config`](Self::server_config) refuses) is still described.
    ///
    /// ```
    /// use postern::tls::{TlsPolicy, Weakness};
    ///
    /// let report = TlsPolicy::modern().explain();
    /// assert_eq!(report.versions, ["TLSv1.3"]);
    /// assert!(report.weaknesses.contains(&Weakness::NoClientAuth));
    /// assert!(!report.weaknesses.contains(&Weakness::Tls12Enabled));
    /// ```
    #[must_use]
    pub fn explain(&self) -> Explanation {
        let suites = self.effective_suites();
        let groups = self.effective_groups();
        let tls12 = self.versions.contains(&TlsVersion::Tls12);
        let mut weaknesses = Vec::new();
        if tls12 {
            weaknesses.push(Weakness::Tls12Enabled);
            if !self.require_ems {
                weaknesses.push(Weakness::Tls12WithoutEms);
            }
            if self.resumption_enabled() {
                weaknesses.push(Weakness::Tls12Resumption);
            }
        }
        match self.client_auth {
            ClientAuth::None => weaknesses.push(Weakness::NoClientAuth),
            ClientAuth::Optional(_) => weaknesses.push(Weakness::OptionalClientAuth),
            ClientAuth::Required(_) => {}
        }
        if !groups.iter().any(|g| is_post_quantum(g.name())) {
            weaknesses.push(Weakness::NoPostQuantumGroup);
        }
        if self.session_tickets {
            weaknesses.push(Weakness::SessionTickets);
        }
        Explanation {
            profile: self.profile,
            versions: self.versions.iter().map(|v| v.name().to_owned()).collect(),
            cipher_suites: suites.iter().map(suite_name).collect(),
            kx_groups: groups.iter().map(|g| group_name(g.name())).collect(),
            require_post_quantum: self.require_post_quantum,
            client_auth: self.client_auth.mode(),
            client_auth_roots: self.client_auth.roots(),
            session_cache: self.session_cache,
            session_tickets: self.session_tickets,
            require_extended_master_secret: self.require_ems,
            prefer_server_cipher_order: self.prefer_server_cipher_order,
            alpn_protocols: self
                .alpn_protocols
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect(),
            max_fragment_size: self.max_fragment_size,
            weaknesses,
        }
    }
}

struct Resolved {
    provider: Arc<CryptoProvider>,
    versions: Vec<&'static SupportedProtocolVersion>,
}

enum ServerVerifier {
    WebPki(Arc<WebPkiServerVerifier>),
    Custom(Arc<dyn ServerCertVerifier>),
}

/// Refuses TLS 1.2 suites that are not ECDHE + AEAD. rustls implements none, but a custom
/// provider could supply them.
fn check_suite(suite: &SupportedCipherSuite) -> Result<(), TlsError> {
    let name = suite_name(suite);
    let weak_name = ["_CBC_", "_NULL_", "_RC4_", "3DES", "_EXPORT", "_anon_", "_MD5"]
        .iter()
        .any(|bad| name.contains(bad))
        || name.ends_with("_NULL");
    let weak_kx = match suite {
        SupportedCipherSuite::Tls12(s) => s.kx != KeyExchangeAlgorithm::ECDHE,
        SupportedCipherSuite::Tls13(_) => false,
    };
    if weak_name || weak_kx { Err(TlsError::WeakCipherSuite { suite: name }) } else { Ok(()) }
}

/// A weakness [`TlsPolicy::explain`] flags. None of them is fatal; each is a deliberate
/// trade-off the operator should know about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Weakness {
    /// TLS 1.2 is enabled (downgrade-protected, but more complex and with no encrypted
    /// handshake).
    Tls12Enabled,
    /// TLS 1.2 peers without the extended master secret are accepted (triple-handshake
    /// attack, RFC 7627).
    Tls12WithoutEms,
    /// TLS 1.2 sessions can be resumed: a resumed TLS 1.2 session has no fresh key
    /// exchange, so it is not forward secret against a stolen cache or ticket key.
    Tls12Resumption,
    /// Clients are not asked for a certificate (no mutual TLS).
    NoClientAuth,
    /// Client certificates are requested but not required.
    OptionalClientAuth,
    /// No post-quantum key-exchange group: recorded traffic could be decrypted later by a
    /// quantum computer ("harvest now, decrypt later").
    NoPostQuantumGroup,
    /// Stateless session tickets are on: the ticket key (rotated every 6 hours) protects
    /// every session resumed with it.
    SessionTickets,
}

impl Weakness {
    /// A one-line explanation for operators.
    #[must_use]
    pub fn description(self) -> &'static str {
        match self {
            Self::Tls12Enabled => "TLS 1.2 is enabled (older protocol, unencrypted handshake)",
            Self::Tls12WithoutEms => {
                "TLS 1.2 peers without the extended master secret are accepted (triple handshake, RFC 7627)"
            }
            Self::Tls12Resumption => {
                "resumed TLS 1.2 sessions are not forward secret (no fresh key exchange)"
            }
            Self::NoClientAuth => "no client authentication (clients are not asked for a certificate)",
            Self::OptionalClientAuth => {
                "client certificates are optional: unauthenticated clients are let in"
            }
            Self::NoPostQuantumGroup => {
                "no post-quantum key exchange (traffic recorded today could be decrypted later)"
            }
            Self::SessionTickets => {
                "stateless session tickets: one ticket key (rotated every 6 h) protects many sessions"
            }
        }
    }
}

impl fmt::Display for Weakness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// What a [`TlsPolicy`] allows, from [`TlsPolicy::explain`]. Its `Display` is a report
/// for humans; the fields are for programs (and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Explanation {
    /// The profile the policy started from.
    pub profile: Profile,
    /// Enabled versions, newest first (`TLSv1.3`, `TLSv1.2`).
    pub versions: Vec<String>,
    /// Cipher suites in effect, most preferred first (IANA names).
    pub cipher_suites: Vec<String>,
    /// Key-exchange groups in effect, most preferred first (IANA names).
    pub kx_groups: Vec<String>,
    /// Whether only post-quantum groups are allowed.
    pub require_post_quantum: bool,
    /// Client authentication: `none`, `optional` or `required`.
    pub client_auth: &'static str,
    /// Number of CA certificates client certificates are verified against.
    pub client_auth_roots: usize,
    /// Stateful session cache size (0: off).
    pub session_cache: usize,
    /// Whether stateless session tickets are on.
    pub session_tickets: bool,
    /// Whether TLS 1.2 peers must support the extended master secret.
    pub require_extended_master_secret: bool,
    /// Whether the server's cipher-suite order wins over the client's.
    pub prefer_server_cipher_order: bool,
    /// ALPN protocols (lossy UTF-8), most preferred first.
    pub alpn_protocols: Vec<String>,
    /// Maximum record size, if limited.
    pub max_fragment_size: Option<usize>,
    /// The weaknesses found.
    pub weaknesses: Vec<Weakness>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list(items: &[String]) -> String {
            if items.is_empty() { "(none)".to_owned() } else { items.join(", ") }
        }
        writeln!(f, "TLS policy (profile {})", self.profile)?;
        writeln!(f, "  versions:       {}", list(&self.versions))?;
        writeln!(f, "  cipher suites:  {}", list(&self.cipher_suites))?;
        let pq = if self.require_post_quantum { " (post-quantum required)" } else { "" };
        writeln!(f, "  key exchange:   {}{pq}", list(&self.kx_groups))?;
        match self.client_auth {
            "none" => writeln!(f, "  client auth:    none")?,
            mode => writeln!(f, "  client auth:    {mode} ({} CA certificates)", self.client_auth_roots)?,
        }
        let cache = match self.session_cache {
            0 => "no session cache".to_owned(),
            n => format!("session cache of {n}"),
        };
        let tickets = if self.session_tickets { "stateless tickets" } else { "no tickets" };
        writeln!(f, "  resumption:     {cache}, {tickets}")?;
        if self.versions.iter().any(|v| v == "TLSv1.2") {
            let ems = if self.require_extended_master_secret { "required" } else { "optional" };
            writeln!(f, "  TLS 1.2 EMS:    {ems}")?;
        }
        let order = if self.prefer_server_cipher_order { "server's" } else { "client's" };
        writeln!(f, "  suite order:    {order}")?;
        writeln!(f, "  ALPN:           {}", list(&self.alpn_protocols))?;
        if let Some(size) = self.max_fragment_size {
            writeln!(f, "  max record:     {size} bytes")?;
        }
        if self.weaknesses.is_empty() {
            writeln!(f, "weaknesses: none")
        } else {
            writeln!(f, "weaknesses:")?;
            for w in &self.weaknesses {
                writeln!(f, "  - {w}")?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_quantum_codepoints() {
        for (group, pq) in [
            (NamedGroup::X25519MLKEM768, true),
            (NamedGroup::secp256r1MLKEM768, true),
            (NamedGroup::MLKEM768, true),
            (NamedGroup::Unknown(0x11ed), true),
            (NamedGroup::Unknown(0x6399), true),
            (NamedGroup::X25519, false),
            (NamedGroup::secp384r1, false),
            (NamedGroup::FFDHE2048, false),
        ] {
            assert_eq!(is_post_quantum(group), pq, "{group:?}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(group_name(NamedGroup::X25519MLKEM768), "X25519MLKEM768");
        assert_eq!(group_name(NamedGroup::Unknown(0x1234)), "0x1234");
        assert_eq!(suite_name(&MODERN_SUITES[0]), "TLS13_AES_256_GCM_SHA384");
    }

    #[test]
    fn profiles_parse() {
        assert_eq!("Modern".parse::<Profile>().unwrap(), Profile::Modern);
        assert_eq!("compatible".parse::<Profile>().unwrap(), Profile::Compatible);
        assert!(matches!("legacy".parse::<Profile>(), Err(TlsError::UnknownProfile(_))));
    }

    #[test]
    fn every_builtin_suite_passes_the_check() {
        for s in MODERN_SUITES.iter().chain(COMPATIBLE_TLS12_SUITES.iter()) {
            check_suite(s).unwrap();
        }
    }

    #[test]
    fn modern_plus_tls12_is_compatible() {
        let a = TlsPolicy::modern().versions(&[TlsVersion::Tls12, TlsVersion::Tls13]).explain();
        let b = TlsPolicy::compatible().explain();
        assert_eq!(a.versions, b.versions);
        assert_eq!(a.cipher_suites, b.cipher_suites);
    }

    #[test]
    fn kx_groups_dedup_and_prefer() {
        let p = TlsPolicy::modern()
            .prefer_kx_groups(vec![ring_provider::kx_group::SECP384R1, ring_provider::kx_group::SECP384R1]);
        assert_eq!(p.explain().kx_groups, ["secp384r1", "X25519MLKEM768", "X25519", "secp256r1"]);
    }
}
