//! DKIM signing (RFC 6376) with RSA-SHA256 or Ed25519-SHA256 (RFC 8463).

use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::dkim::{DkimSigner, Done};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

use super::MsgAuthError;

/// Header fields signed by default. From, Subject, To and Date are listed twice
/// (oversigned: a second instance added in transit breaks the signature); the others once
/// (signing an absent field also prevents its later addition).
pub const DEFAULT_SIGNED_HEADERS: &[&str] = &[
    "From",
    "From",
    "Subject",
    "Subject",
    "To",
    "To",
    "Date",
    "Date",
    "Cc",
    "Reply-To",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Id",
    "List-Unsubscribe",
];

/// Options for a [`Signer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignOptions {
    /// Header fields to sign, in order; list a name twice to oversign it.
    pub headers: Vec<String>,
    /// `x=`: the signature expires this many seconds after signing.
    pub expiry_secs: Option<u64>,
}

impl Default for SignOptions {
    fn default() -> Self {
        SignOptions {
            headers: DEFAULT_SIGNED_HEADERS.iter().map(|h| (*h).to_owned()).collect(),
            expiry_secs: None,
        }
    }
}

/// The key algorithm of a [`Signer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// `rsa-sha256`
    RsaSha256,
    /// `ed25519-sha256` (RFC 8463)
    Ed25519Sha256,
}

/// A DKIM signer for one domain and selector. No `l=` tag is ever written.
///
/// ```
/// use postern::msgauth::Signer;
/// let pkcs8 = Signer::generate_ed25519_pkcs8().unwrap();
/// let signer = Signer::from_ed25519_pkcs8(&pkcs8, "example.org", "s1").unwrap();
/// let header = signer.sign(b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nbody\r\n").unwrap();
/// assert!(header.starts_with("DKIM-Signature: v=1; a=ed25519-sha256;"));
/// assert!(header.contains("d=example.org") && header.contains("s=s1"));
/// assert!(!header.contains(" l="));
/// ```
pub struct Signer {
    inner: DkimSigner<DkimKey, Done>,
    algorithm: KeyAlgorithm,
    public_key: Vec<u8>,
    domain: String,
    selector: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("algorithm", &self.algorithm)
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .finish_non_exhaustive()
    }
}

fn key_err(what: &str, e: impl std::fmt::Display) -> MsgAuthError {
    MsgAuthError::Key(format!("{what}: {e}"))
}

fn check_name(kind: &'static str, value: &str) -> Result<(), MsgAuthError> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if ok { Ok(()) } else { Err(MsgAuthError::InvalidName(kind, value.to_owned())) }
}

impl Signer {
    /// Loads a PEM private key: `PRIVATE KEY` (PKCS#8, RSA or Ed25519) or `RSA PRIVATE KEY`
    /// (PKCS#1).
    ///
    /// # Errors
    /// [`MsgAuthError::Key`] naming what is wrong (not PEM, unsupported type, weak or invalid
    /// key); [`MsgAuthError::InvalidName`] for a bad domain or selector.
    pub fn from_pem(pem: &str, domain: &str, selector: &str) -> Result<Self, MsgAuthError> {
        check_name("domain", domain)?;
        check_name("selector", selector)?;
        let key = match PrivateKeyDer::from_pem_slice(pem.as_bytes()) {
            Ok(PrivateKeyDer::Pkcs1(der)) => DkimKey::Rsa(
                RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs1(der))
                    .map_err(|e| key_err("invalid RSA (PKCS#1) key", e))?,
            ),
            Ok(PrivateKeyDer::Pkcs8(der)) => {
                let bytes = Zeroizing::new(der.secret_pkcs8_der().to_vec());
                match RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                    bytes.to_vec(),
                ))) {
                    Ok(k) => DkimKey::Rsa(k),
                    Err(rsa_err) => DkimKey::Ed25519(
                        Ed25519Key::from_pkcs8_maybe_unchecked_der(&bytes).map_err(|ed_err| {
                            MsgAuthError::Key(format!(
                                "PKCS#8 key is neither a usable RSA key ({rsa_err}) nor Ed25519 ({ed_err})"
                            ))
                        })?,
                    ),
                }
            }
            Ok(PrivateKeyDer::Sec1(_)) => {
                return Err(MsgAuthError::Key(
                    "EC (SEC1) keys are not DKIM algorithms; use RSA or Ed25519".into(),
                ));
            }
            Ok(_) => return Err(MsgAuthError::Key("unsupported private key type".into())),
            Err(e) => return Err(key_err("no PEM private key found", e)),
        };
        Ok(Self::build(key, domain, selector, &SignOptions::default()))
    }

    /// An RSA key from PKCS#1 DER (`RSAPrivateKey`).
    ///
    /// # Errors
    /// [`MsgAuthError::Key`] if the key is invalid or its size is unsupported.
    pub fn from_rsa_pkcs1_der(der: &[u8], domain: &str, selector: &str) -> Result<Self, MsgAuthError> {
        check_name("domain", domain)?;
        check_name("selector", selector)?;
        let key =
            RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der.to_vec())))
                .map_err(|e| key_err("invalid RSA key", e))?;
        Ok(Self::build(DkimKey::Rsa(key), domain, selector, &SignOptions::default()))
    }

    /// An Ed25519 key from PKCS#8 DER.
    ///
    /// # Errors
    /// [`MsgAuthError::Key`] if the key is invalid.
    pub fn from_ed25519_pkcs8(der: &[u8], domain: &str, selector: &str) -> Result<Self, MsgAuthError> {
        check_name("domain", domain)?;
        check_name("selector", selector)?;
        let key =
            Ed25519Key::from_pkcs8_maybe_unchecked_der(der).map_err(|e| key_err("invalid Ed25519 key", e))?;
        Ok(Self::build(DkimKey::Ed25519(key), domain, selector, &SignOptions::default()))
    }

    /// A new Ed25519 key as PKCS#8 DER (from the system's secure random source).
    ///
    /// # Errors
    /// [`MsgAuthError::Key`] if key generation fails.
    pub fn generate_ed25519_pkcs8() -> Result<Zeroizing<Vec<u8>>, MsgAuthError> {
        Ed25519Key::generate_pkcs8().map(Zeroizing::new).map_err(|e| key_err("key generation failed", e))
    }

    /// Rebuilds the signer with `options` (headers to sign, `x=`).
    #[must_use]
    pub fn with_options(self, options: &SignOptions) -> Self {
        let Signer { inner, domain, selector, .. } = self;
        Self::build(inner.key, &domain, &selector, options)
    }

    fn build(key: DkimKey, domain: &str, selector: &str, options: &SignOptions) -> Self {
        let (algorithm, public_key) = match &key {
            DkimKey::Rsa(k) => (KeyAlgorithm::RsaSha256, k.public_key()),
            DkimKey::Ed25519(k) => (KeyAlgorithm::Ed25519Sha256, k.public_key()),
        };
        let mut inner = DkimSigner::from_key(key)
            .domain(domain.to_ascii_lowercase())
            .selector(selector)
            .headers(&options.headers);
        if let Some(x) = options.expiry_secs {
            inner = inner.expiration(x);
        }
        Signer {
            inner,
            algorithm,
            public_key,
            domain: domain.to_ascii_lowercase(),
            selector: selector.to_owned(),
        }
    }

    /// The key algorithm.
    #[must_use]
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The public key record for `<selector>._domainkey.<domain> TXT`.
    #[must_use]
    pub fn dns_record(&self) -> String {
        use base64::Engine as _;
        let k = match self.algorithm {
            KeyAlgorithm::RsaSha256 => "rsa",
            KeyAlgorithm::Ed25519Sha256 => "ed25519",
        };
        format!("v=DKIM1; k={k}; p={}", base64::engine::general_purpose::STANDARD.encode(&self.public_key))
    }

    /// The domain (`d=`).
    #[must_use]
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The selector (`s=`).
    #[must_use]
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// Signs `message` and returns the `DKIM-Signature: ...\r\n` header line to prepend.
    ///
    /// mail-auth stamps `t=` (and computes `x=`) from the system clock: signing is the one
    /// place where postern's dependency reads the wall clock.
    ///
    /// # Errors
    /// [`MsgAuthError::Sign`] if the message has none of the signed headers or the key fails.
    pub fn sign(&self, message: &[u8]) -> Result<String, MsgAuthError> {
        let signature = self.inner.sign(message).map_err(|e| MsgAuthError::Sign(e.to_string()))?;
        Ok(signature.to_header())
    }
}
