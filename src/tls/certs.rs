//! Certificates: PEM loading with clear errors, and an SNI-aware store whose certificates
//! can be replaced while the server runs.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::RootCertStore;
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use x509_parser::asn1_rs::{Any, Class, FromDer, Oid, Tag};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::time::ASN1Time;

use super::policy::TlsError;

/// Parses a DER certificate, reporting its position in the chain on failure.
pub(crate) fn parse_certificate(der: &[u8], index: usize) -> Result<X509Certificate<'_>, TlsError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => Ok(cert),
        Err(e) => Err(TlsError::InvalidCertificate { index, reason: e.to_string() }),
    }
}

/// Replaces control characters so that certificate text is safe in logs and headers.
pub(crate) fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

fn time_text(time: ASN1Time) -> String {
    time.to_rfc2822().unwrap_or_else(|_| time.to_string())
}

fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

fn system_time(unix: i64) -> SystemTime {
    let magnitude = Duration::from_secs(unix.unsigned_abs());
    let shifted =
        if unix >= 0 { UNIX_EPOCH.checked_add(magnitude) } else { UNIX_EPOCH.checked_sub(magnitude) };
    shifted.unwrap_or(UNIX_EPOCH)
}

fn pem_error(e: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::Pem(e.to_string())
}

/// Reads every `CERTIFICATE` block of a PEM input, in order; other blocks (keys, ...) are
/// skipped, so a combined chain-and-key file works.
///
/// # Errors
/// [`TlsError::NoCertificate`] when there is none, [`TlsError::Pem`] for broken PEM.
///
/// ```
/// use postern::tls::{certificates_from_pem, TlsError};
///
/// let key = rcgen::KeyPair::generate().unwrap();
/// let cert = rcgen::CertificateParams::new(vec!["a.test".into()]).unwrap().self_signed(&key).unwrap();
/// assert_eq!(certificates_from_pem(cert.pem().as_bytes()).unwrap().len(), 1);
/// assert!(matches!(certificates_from_pem(b"hello"), Err(TlsError::NoCertificate)));
/// ```
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem) {
        certs.push(item.map_err(pem_error)?);
    }
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(certs)
}

/// Reads the one private key of a PEM input: PKCS#8 `PRIVATE KEY`, PKCS#1
/// `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`. Certificates are skipped.
///
/// # Errors
/// [`TlsError::NoPrivateKey`], [`TlsError::MultiplePrivateKeys`],
/// [`TlsError::EncryptedPrivateKey`], [`TlsError::UnsupportedKeyType`] (for DSA or
/// OpenSSH keys), or [`TlsError::Pem`] for broken PEM.
pub fn private_key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    let mut key = None;
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) = item.map_err(pem_error)?;
        let parsed = match kind {
            SectionKind::PrivateKey => PrivateKeyDer::Pkcs8(der.into()),
            SectionKind::RsaPrivateKey => PrivateKeyDer::Pkcs1(der.into()),
            SectionKind::EcPrivateKey => PrivateKeyDer::Sec1(der.into()),
            _ => continue,
        };
        if key.replace(parsed).is_some() {
            return Err(TlsError::MultiplePrivateKeys);
        }
    }
    if let Some(key) = key {
        return Ok(key);
    }
    // Name the blocks rustls does not read, rather than saying "no key".
    let text = String::from_utf8_lossy(pem);
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Err(TlsError::EncryptedPrivateKey);
    }
    for (marker, algorithm) in [
        ("-----BEGIN DSA PRIVATE KEY-----", "DSA"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----", "OpenSSH key file (convert it to PKCS#8)"),
    ] {
        if text.contains(marker) {
            return Err(TlsError::UnsupportedKeyType { algorithm: algorithm.to_owned() });
        }
    }
    Err(TlsError::NoPrivateKey)
}

/// Reads CA certificates from PEM into a root store, for [`ClientAuth`](super::ClientAuth)
/// or [`TlsPolicy::client_config`](super::TlsPolicy::client_config).
///
/// # Errors
/// [`TlsError::NoCertificate`], [`TlsError::Pem`], or [`TlsError::InvalidTrustAnchor`] when
/// a certificate cannot serve as a trust anchor.
pub fn root_store_from_pem(pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for (index, cert) in certificates_from_pem(pem)?.into_iter().enumerate() {
        store.add(cert).map_err(|e| TlsError::InvalidTrustAnchor { index, reason: e.to_string() })?;
    }
    Ok(store)
}

/// Something worth knowing about a certificate chain that does not stop it from loading.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertNote {
    /// The chain is only the end-entity certificate, and another party issued it. That is
    /// right when the issuer is a root the peers trust (a private CA, common for mutual TLS
    /// and internal relays); for a public CA, append the intermediates or clients fail.
    NoIntermediates {
        /// The issuer's name.
        issuer: String,
    },
    /// Certificate `index` is not followed by its issuer: the chain is out of order or
    /// misses an intermediate.
    ChainGap {
        /// Position of the certificate whose issuer does not follow.
        index: usize,
        /// The issuer expected next.
        issuer: String,
    },
    /// The chain includes a self-signed root at `index`. Harmless, but peers must have it
    /// already, so it only costs bytes in every handshake.
    ContainsRoot {
        /// Its position in the chain.
        index: usize,
    },
    /// The end-entity certificate is self-signed: only peers that pin it will accept it.
    SelfSigned,
    /// Less than a third of the end-entity certificate's lifetime is left (the point at
    /// which ACME clients renew).
    ExpiresSoon {
        /// When it expires.
        not_after: String,
    },
    /// The end-entity certificate has no DNS name in its subjectAltName: clients that check
    /// host names will reject it.
    NoDnsNames,
}

impl fmt::Display for CertNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoIntermediates { issuer } => write!(
                f,
                "the chain has no intermediate: fine if {issuer} is a root your peers trust, otherwise append the intermediates"
            ),
            Self::ChainGap { index, issuer } => {
                write!(
                    f,
                    "certificate {index} is not followed by its issuer {issuer} (order, or a missing intermediate)"
                )
            }
            Self::ContainsRoot { index } => {
                write!(f, "certificate {index} is a self-signed root; peers ignore it, it can be left out")
            }
            Self::SelfSigned => {
                f.write_str("the certificate is self-signed; only peers that pin it will accept it")
            }
            Self::ExpiresSoon { not_after } => {
                write!(f, "the certificate expires soon ({not_after}): renew it")
            }
            Self::NoDnsNames => {
                f.write_str("the certificate has no DNS subjectAltName; host-name checks will fail")
            }
        }
    }
}

/// A checked certificate chain with its key, ready for a [`CertStore`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LoadedCert {
    /// The chain, key and OCSP staple, as rustls uses them.
    pub key: Arc<CertifiedKey>,
    /// The end-entity certificate's subject, e.g. `CN=mx.example.test`.
    pub subject: String,
    /// The DNS names of its subjectAltName (wildcards included), lowercase.
    pub names: Vec<String>,
    /// Start of its validity.
    pub not_before: SystemTime,
    /// End of its validity.
    pub not_after: SystemTime,
    /// Warnings about the chain; see [`CertNote`].
    pub notes: Vec<CertNote>,
}

impl LoadedCert {
    /// Attaches an OCSP response (DER, from the CA's responder, fetched by the application)
    /// to be stapled in handshakes. An empty response removes the staple.
    #[must_use]
    pub fn with_ocsp(mut self, response: Vec<u8>) -> Self {
        let mut key = CertifiedKey::clone(&self.key);
        key.ocsp = if response.is_empty() { None } else { Some(response) };
        self.key = Arc::new(key);
        self
    }

    /// Whether the certificate expires within `window` of `now`: the application's cue to
    /// renew (and then [`CertStore::replace`]).
    #[must_use]
    pub fn expires_within(&self, now: SystemTime, window: Duration) -> bool {
        now.checked_add(window).is_none_or(|limit| limit >= self.not_after)
    }
}

impl From<LoadedCert> for Arc<CertifiedKey> {
    fn from(cert: LoadedCert) -> Self {
        cert.key
    }
}

/// Loads a certificate chain (end-entity first) and its private key from PEM, and checks
/// them at time `now`.
///
/// Errors are for what breaks every handshake: no certificate or no key, an unsupported or
/// rejected key, a key that does not belong to the certificate, and any certificate of the
/// chain expired or not yet valid at `now` (an expired certificate further up the chain
/// helps no client: current clients build their path around it and old ones reject it, so
/// it is to be removed or renewed). What may be right or wrong depending on the
/// peers (a chain without intermediates, a self-signed certificate, an expiry close by) is
/// returned as [`CertNote`]s: a leaf issued directly by a private root is normal for mutual
/// TLS and internal relays, so a missing intermediate cannot be told from that case here.
///
/// The key is loaded with the *ring* provider: RSA 2048 to 8192 bits, ECDSA P-256 or
/// P-384, or Ed25519.
///
/// # Errors
/// Every certificate and key variant of [`TlsError`].
///
/// ```
/// use std::time::SystemTime;
/// use postern::tls::{load_certified_key, CertNote, TlsError};
///
/// let key = rcgen::KeyPair::generate().unwrap();
/// let cert = rcgen::CertificateParams::new(vec!["mx.example.test".into()])
///     .unwrap()
///     .self_signed(&key)
///     .unwrap();
/// let now = SystemTime::now();
/// let loaded = load_certified_key(cert.pem().as_bytes(), key.serialize_pem().as_bytes(), now).unwrap();
/// assert_eq!(loaded.names, ["mx.example.test"]);
/// assert!(loaded.notes.contains(&CertNote::SelfSigned));
///
/// // Someone else's key.
/// let other = rcgen::KeyPair::generate().unwrap();
/// let err = load_certified_key(cert.pem().as_bytes(), other.serialize_pem().as_bytes(), now).unwrap_err();
/// assert!(matches!(err, TlsError::KeyMismatch { .. }));
/// ```
pub fn load_certified_key(chain_pem: &[u8], key_pem: &[u8], now: SystemTime) -> Result<LoadedCert, TlsError> {
    let chain = certificates_from_pem(chain_pem)?;
    let key = private_key_from_pem(key_pem)?;
    load_certified_key_der(chain, key, now)
}

/// [`load_certified_key`] for DER input.
///
/// # Errors
/// As [`load_certified_key`].
pub fn load_certified_key_der(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    now: SystemTime,
) -> Result<LoadedCert, TlsError> {
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let now_unix = unix_seconds(now);
    let mut parsed = Vec::with_capacity(chain.len());
    for (index, der) in chain.iter().enumerate() {
        let cert = parse_certificate(der, index)?;
        let validity = cert.validity();
        let subject = sanitize(&cert.subject().to_string());
        if now_unix < validity.not_before.timestamp() {
            return Err(TlsError::CertificateNotYetValid {
                index,
                subject,
                not_before: time_text(validity.not_before),
            });
        }
        if now_unix > validity.not_after.timestamp() {
            return Err(TlsError::CertificateExpired {
                index,
                subject,
                not_after: time_text(validity.not_after),
            });
        }
        parsed.push(cert);
    }
    let Some(leaf) = parsed.first() else {
        return Err(TlsError::NoCertificate);
    };
    let subject = sanitize(&leaf.subject().to_string());

    let algorithm = key_algorithm(&key);
    let signing_key = match rustls::crypto::ring::sign::any_supported_type(&key) {
        Ok(signing_key) => signing_key,
        Err(e) => {
            return Err(match algorithm {
                KeyAlgorithm::Unsupported(algorithm) => TlsError::UnsupportedKeyType { algorithm },
                KeyAlgorithm::Supported(algorithm) => {
                    let reason = match e {
                        rustls::Error::General(text) => text,
                        other => other.to_string(),
                    };
                    TlsError::InvalidKey { algorithm, reason }
                }
            });
        }
    };
    let certified = CertifiedKey::new(chain.clone(), signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch { subject });
        }
        Err(e) => return Err(TlsError::Rustls(e)),
    }

    let validity = leaf.validity();
    let (not_before, not_after) = (validity.not_before.timestamp(), validity.not_after.timestamp());
    let names = dns_names(leaf);
    let notes = chain_notes(&parsed, now_unix, names.is_empty());
    Ok(LoadedCert {
        key: Arc::new(certified),
        subject,
        names,
        not_before: system_time(not_before),
        not_after: system_time(not_after),
        notes,
    })
}

fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(sanitize(&dns.to_ascii_lowercase())),
            _ => None,
        })
        .collect()
}

fn self_issued(cert: &X509Certificate<'_>) -> bool {
    cert.subject().as_raw() == cert.issuer().as_raw()
}

fn chain_notes(chain: &[X509Certificate<'_>], now_unix: i64, no_dns_names: bool) -> Vec<CertNote> {
    let mut notes = Vec::new();
    let Some(leaf) = chain.first() else {
        return notes;
    };
    if self_issued(leaf) {
        notes.push(CertNote::SelfSigned);
    } else if chain.len() == 1 {
        notes.push(CertNote::NoIntermediates { issuer: sanitize(&leaf.issuer().to_string()) });
    }
    for (index, pair) in chain.windows(2).enumerate() {
        if let [cert, next] = pair
            && !self_issued(cert)
            && cert.issuer().as_raw() != next.subject().as_raw()
        {
            notes.push(CertNote::ChainGap { index, issuer: sanitize(&cert.issuer().to_string()) });
        }
    }
    for (index, cert) in chain.iter().enumerate().skip(1) {
        if self_issued(cert) {
            notes.push(CertNote::ContainsRoot { index });
        }
    }
    let validity = leaf.validity();
    let (start, end) = (validity.not_before.timestamp(), validity.not_after.timestamp());
    let lifetime = end.saturating_sub(start);
    if end.saturating_sub(now_unix) < lifetime / 3 {
        notes.push(CertNote::ExpiresSoon { not_after: time_text(validity.not_after) });
    }
    if no_dns_names {
        notes.push(CertNote::NoDnsNames);
    }
    notes
}

/// What a private key is, as far as the *ring* provider is concerned.
enum KeyAlgorithm {
    /// *ring* signs with this algorithm (the key may still be rejected: size, encoding).
    Supported(String),
    /// *ring* cannot use this algorithm at all.
    Unsupported(String),
}

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_RSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";

fn curve(oid: &str) -> KeyAlgorithm {
    match oid {
        "1.2.840.10045.3.1.7" => KeyAlgorithm::Supported("ECDSA P-256".into()),
        "1.3.132.0.34" => KeyAlgorithm::Supported("ECDSA P-384".into()),
        "1.3.132.0.35" => KeyAlgorithm::Unsupported("ECDSA P-521".into()),
        "1.3.132.0.10" => KeyAlgorithm::Unsupported("ECDSA secp256k1".into()),
        other => KeyAlgorithm::Unsupported(format!("ECDSA on curve {other}")),
    }
}

/// The elements of a DER SEQUENCE, or nothing if `der` is not one.
fn sequence_items(der: &[u8]) -> Vec<Any<'_>> {
    let mut items = Vec::new();
    let Ok((_, outer)) = Any::from_der(der) else {
        return items;
    };
    if outer.tag() != Tag::Sequence {
        return items;
    }
    let mut rest = outer.data;
    while !rest.is_empty() {
        match Any::from_der(rest) {
            Ok((next, item)) => {
                items.push(item);
                rest = next;
            }
            Err(_) => break,
        }
    }
    items
}

fn oid_text(der: &[u8]) -> Option<String> {
    Oid::from_der(der).ok().map(|(_, oid)| oid.to_id_string())
}

fn key_algorithm(key: &PrivateKeyDer<'_>) -> KeyAlgorithm {
    match key {
        PrivateKeyDer::Pkcs1(_) => KeyAlgorithm::Supported("RSA".into()),
        PrivateKeyDer::Sec1(der) => {
            // ECPrivateKey ::= SEQUENCE { version, privateKey, [0] parameters OPTIONAL, [1] publicKey OPTIONAL }
            let params = sequence_items(der.secret_sec1_der())
                .into_iter()
                .find(|item| item.class() == Class::ContextSpecific && item.tag() == Tag(0))
                .and_then(|item| oid_text(item.data));
            match params {
                Some(oid) => curve(&oid),
                None => KeyAlgorithm::Supported("ECDSA".into()),
            }
        }
        PrivateKeyDer::Pkcs8(der) => {
            // PrivateKeyInfo ::= SEQUENCE { version, AlgorithmIdentifier, privateKey, ... }
            let items = sequence_items(der.secret_pkcs8_der());
            let Some(algorithm) = items.get(1) else {
                return KeyAlgorithm::Supported("PKCS#8".into());
            };
            // AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL }
            let (oid, param) = match Oid::from_der(algorithm.data) {
                Ok((rest, oid)) => (Some(oid.to_id_string()), oid_text(rest)),
                Err(_) => (None, None),
            };
            match oid.as_deref() {
                Some(OID_RSA) => KeyAlgorithm::Supported("RSA".into()),
                Some(OID_RSA_PSS) => KeyAlgorithm::Unsupported("RSASSA-PSS-only RSA key".into()),
                Some(OID_EC) => match param {
                    Some(p) => curve(&p),
                    None => KeyAlgorithm::Supported("ECDSA".into()),
                },
                Some(OID_ED25519) => KeyAlgorithm::Supported("Ed25519".into()),
                Some("1.3.101.113") => KeyAlgorithm::Unsupported("Ed448".into()),
                Some("1.3.101.110") => KeyAlgorithm::Unsupported("X25519 (a key-agreement key)".into()),
                Some("1.3.101.111") => KeyAlgorithm::Unsupported("X448 (a key-agreement key)".into()),
                Some("1.2.840.10040.4.1") => KeyAlgorithm::Unsupported("DSA".into()),
                Some(other) => KeyAlgorithm::Unsupported(format!("algorithm {other}")),
                None => KeyAlgorithm::Supported("PKCS#8".into()),
            }
        }
        _ => KeyAlgorithm::Unsupported("unknown key format".into()),
    }
}

/// A normalised name in the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Name {
    /// `mx.example.test`
    Exact(String),
    /// `*.example.test`, stored as `example.test`
    Wildcard(String),
}

fn normalise(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

fn parse_name(name: &str) -> Result<Name, TlsError> {
    let lower = normalise(name);
    let invalid = || TlsError::InvalidName(name.to_owned());
    if let Some(parent) = lower.strip_prefix("*.") {
        // A wildcard covers one label under a parent of at least two labels (no `*.com`).
        if !parent.contains('.') || DnsName::try_from(parent).is_err() {
            return Err(invalid());
        }
        return Ok(Name::Wildcard(parent.to_owned()));
    }
    if lower.contains('*')
        || DnsName::try_from(lower.as_str()).is_err()
        || lower.parse::<std::net::IpAddr>().is_ok()
    {
        return Err(invalid());
    }
    Ok(Name::Exact(lower))
}

#[derive(Clone, Debug, Default)]
struct Table {
    default: Option<Arc<CertifiedKey>>,
    names: HashMap<Name, Arc<CertifiedKey>>,
}

impl Table {
    fn find(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(sni) = server_name {
            let sni = normalise(sni);
            if let Some(key) = self.names.get(&Name::Exact(sni.clone())) {
                return Some(key.clone());
            }
            if let Some((_, parent)) = sni.split_once('.')
                && let Some(key) = self.names.get(&Name::Wildcard(parent.to_owned()))
            {
                return Some(key.clone());
            }
        }
        self.default.clone()
    }
}

/// An SNI-aware certificate resolver whose certificates can be replaced at run time.
///
/// It holds a default certificate (used when the client sends no SNI or a name the store
/// does not know) and certificates per name, exact (`mx.example.test`) or wildcard
/// (`*.example.test`, one label deep, as in RFC 6125). An exact name wins over a wildcard,
/// a wildcard over the default; with no default, an unknown name fails the handshake.
///
/// Replacing is copy-on-write: [`replace`](Self::replace) builds a new table and swaps an
/// `Arc` under a write lock held for a pointer store. Handshakes in progress keep the
/// certificate they already resolved, established connections are untouched, and every
/// handshake that starts afterwards gets the new certificate. An ACME renewal is a
/// [`load_certified_key`] followed by `replace` (or [`replace_default`](Self::replace_default)).
/// A session resumed from before the swap is not shown a certificate at all (resumption
/// skips it): it stays authenticated by the old one until it leaves the session cache or
/// its ticket expires; turn resumption off if a revoked certificate must stop at once.
///
/// ```
/// use std::sync::Arc;
/// use std::time::SystemTime;
/// use postern::tls::{load_certified_key, CertStore, TlsPolicy};
///
/// fn issue(name: &str) -> postern::tls::LoadedCert {
///     let key = rcgen::KeyPair::generate().unwrap();
///     let cert = rcgen::CertificateParams::new(vec![name.into()]).unwrap().self_signed(&key).unwrap();
///     load_certified_key(cert.pem().as_bytes(), key.serialize_pem().as_bytes(), SystemTime::now()).unwrap()
/// }
///
/// let store = Arc::new(CertStore::with_default(issue("mx.example.test")));
/// store.replace("*.example.org", issue("*.example.org")).unwrap();
/// let server_config = TlsPolicy::modern().server_config(store.clone()).unwrap();
///
/// // Later, on renewal; connections keep running, new handshakes see the new certificate.
/// let renewed = issue("mx.example.test");
/// store.replace_default(renewed.clone());
/// assert!(Arc::ptr_eq(&store.get(None).unwrap(), &renewed.key));
/// assert!(store.get(Some("smtp.example.org")).is_some());
/// # drop(server_config);
/// ```
pub struct CertStore {
    table: RwLock<Arc<Table>>,
}

impl Default for CertStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.snapshot();
        f.debug_struct("CertStore")
            .field("default", &table.default.is_some())
            .field("names", &self.names())
            .finish()
    }
}

impl CertStore {
    /// An empty store: every handshake fails until a certificate is added.
    #[must_use]
    pub fn new() -> Self {
        Self { table: RwLock::new(Arc::new(Table::default())) }
    }

    /// A store with a default certificate.
    #[must_use]
    pub fn with_default(key: impl Into<Arc<CertifiedKey>>) -> Self {
        let store = Self::new();
        store.replace_default(key);
        store
    }

    fn snapshot(&self) -> Arc<Table> {
        // A poisoned lock still holds a consistent table: writers only swap whole Arcs.
        self.table.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn update<T>(&self, change: impl FnOnce(&mut Table) -> T) -> T {
        let mut guard = self.table.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = Table::clone(&guard);
        let result = change(&mut next);
        *guard = Arc::new(next);
        result
    }

    /// Sets the certificate for a name (`mx.example.test` or `*.example.test`, any case, a
    /// trailing dot ignored) and returns the one it replaces.
    ///
    /// # Errors
    /// [`TlsError::InvalidName`] if `name` is not a DNS name or a wildcard over at least
    /// two labels.
    pub fn replace(
        &self,
        name: &str,
        key: impl Into<Arc<CertifiedKey>>,
    ) -> Result<Option<Arc<CertifiedKey>>, TlsError> {
        let name = parse_name(name)?;
        let key = key.into();
        Ok(self.update(|table| table.names.insert(name, key)))
    }

    /// Sets the certificate under every DNS name of its subjectAltName, in one swap:
    /// handshakes see either all the old certificates or all the new ones.
    ///
    /// # Errors
    /// [`TlsError::InvalidName`] if a name is unusable (nothing is changed then), or
    /// [`TlsError::NoDnsNames`] if the certificate has no DNS name.
    pub fn replace_for_names(&self, cert: &LoadedCert) -> Result<(), TlsError> {
        if cert.names.is_empty() {
            return Err(TlsError::NoDnsNames { subject: cert.subject.clone() });
        }
        let names = cert.names.iter().map(|n| parse_name(n)).collect::<Result<Vec<_>, _>>()?;
        self.update(|table| {
            for name in names {
                table.names.insert(name, cert.key.clone());
            }
        });
        Ok(())
    }

    /// Sets the default certificate and returns the previous one.
    pub fn replace_default(&self, key: impl Into<Arc<CertifiedKey>>) -> Option<Arc<CertifiedKey>> {
        let key = key.into();
        self.update(|table| table.default.replace(key))
    }

    /// Removes the certificate of a name and returns it.
    ///
    /// # Errors
    /// [`TlsError::InvalidName`] as for [`replace`](Self::replace).
    pub fn remove(&self, name: &str) -> Result<Option<Arc<CertifiedKey>>, TlsError> {
        let name = parse_name(name)?;
        Ok(self.update(|table| table.names.remove(&name)))
    }

    /// The certificate a handshake with this SNI value (or none) would get.
    #[must_use]
    pub fn get(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        self.snapshot().find(server_name)
    }

    /// The names with a certificate, sorted (`*.` for wildcards).
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .snapshot()
            .names
            .keys()
            .map(|n| match n {
                Name::Exact(name) => name.clone(),
                Name::Wildcard(parent) => format!("*.{parent}"),
            })
            .collect();
        names.sort();
        names
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.get(client_hello.server_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!(parse_name("MX.Example.TEST.").unwrap(), Name::Exact("mx.example.test".into()));
        assert_eq!(parse_name("*.example.test").unwrap(), Name::Wildcard("example.test".into()));
        for bad in ["*.com", "a.*.example.test", "*", "", "exa mple.test", "192.0.2.1", "*.*.example.test"] {
            assert!(matches!(parse_name(bad), Err(TlsError::InvalidName(_))), "{bad}");
        }
    }

    #[test]
    fn sanitize_controls() {
        assert_eq!(sanitize("CN=a\r\nb"), "CN=a\\u{d}\\u{a}b");
        assert_eq!(sanitize("CN=Jürgen"), "CN=Jürgen");
    }

    #[test]
    fn unix_time_round_trip() {
        for t in [0i64, 1, 1_700_000_000, -86_400] {
            assert_eq!(unix_seconds(system_time(t)), t);
        }
    }
}
