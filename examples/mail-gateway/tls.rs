//! The gateway's TLS settings: the rustls server configurations, built in this one place.
//!
//! - the certificate: `--cert`/`--key` (PEM), or, without them, a self-signed demo CA and a
//!   server certificate for `localhost`, `127.0.0.1`, `::1` and `--hostname`, generated at
//!   start; the CA's certificate is written next to the Maildir (`<maildir>/../postern-ca.pem`)
//!   for clients to trust, its key only ever lives in memory;
//! - the profile (`--tls-profile`): `modern` is TLS 1.3 only; `compatible` adds TLS 1.2 with
//!   ECDHE key exchange and AEAD suites only;
//! - mutual TLS (`--client-ca`): a client certificate issued by that CA is required on every
//!   TLS port (submission, smtps, pop3 after STLS, pop3s). On the MX port (`--smtp`, port
//!   25 style) it is optional, because other mail servers have none; one that is presented
//!   must verify all the same.
//!
//! The rustls ring provider is used directly here until postern's own TLS policy API
//! (`postern::tls::TlsPolicy`) can build these configurations; only this file changes then.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use postern::TlsInfo;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};

/// How a generated server certificate and CA are valid: from a day ago (clock skew) for
/// this long. The gateway makes new ones at every start.
const GENERATED_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// The file the generated CA certificate is written to, beside the Maildir root.
pub(crate) const CA_FILE: &str = "postern-ca.pem";

/// `--tls-profile`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Profile {
    /// TLS 1.3 only (the default).
    #[default]
    Modern,
    /// TLS 1.3 and TLS 1.2 with ECDHE + AEAD suites.
    Compatible,
}

impl Profile {
    /// Parses `modern` or `compatible`.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "modern" => Some(Self::Modern),
            "compatible" => Some(Self::Compatible),
            _ => None,
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Modern => "modern (TLS 1.3 only)",
            Self::Compatible => "compatible (TLS 1.3, TLS 1.2 with ECDHE+AEAD)",
        })
    }
}

/// What the command line says about TLS.
#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    /// `--cert`: the certificate chain, PEM, end-entity first.
    pub(crate) cert: Option<PathBuf>,
    /// `--key`: its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub(crate) key: Option<PathBuf>,
    /// `--tls-profile`.
    pub(crate) profile: Profile,
    /// `--client-ca`: the CA certificates (PEM) client certificates must chain to.
    pub(crate) client_ca: Option<PathBuf>,
}

/// The server configurations the listeners use.
#[derive(Debug)]
pub(crate) struct Tls {
    /// Submission, smtps, POP3 STLS and pop3s: a client certificate is required when
    /// `--client-ca` is given.
    pub(crate) clients: Arc<ServerConfig>,
    /// STARTTLS on the MX port (`--smtp`): a client certificate is optional (verified
    /// against `--client-ca` when one is presented).
    pub(crate) mx: Arc<ServerConfig>,
    /// Where the generated CA certificate was written, if the certificate was generated.
    pub(crate) generated_ca: Option<PathBuf>,
    /// One line for the startup log.
    pub(crate) summary: String,
}

/// Builds the configurations. `maildir` is the Maildir root (the generated CA goes
/// beside it); `hostname` goes into a generated certificate.
pub(crate) fn setup(options: &Options, maildir: &Path, hostname: &str) -> io::Result<Tls> {
    let provider = Arc::new(provider(options.profile));
    let (chain, key, generated_ca, origin) = match (&options.cert, &options.key) {
        (Some(cert), Some(key)) => {
            let (chain, key) = load_identity(cert, key)?;
            (chain, key, None, format!("certificate {}", cert.display()))
        }
        (None, None) => {
            let ca_file = ca_path(maildir);
            let (chain, key) = generate(&ca_file, hostname)?;
            let origin = format!(
                "generated certificate for localhost, 127.0.0.1, ::1, {hostname} (CA: {})",
                ca_file.display()
            );
            (chain, key, Some(ca_file), origin)
        }
        _ => return Err(invalid("--cert and --key go together".into())),
    };
    let (clients_verifier, mx_verifier, auth) = match &options.client_ca {
        None => {
            (WebPkiClientVerifier::no_client_auth(), WebPkiClientVerifier::no_client_auth(), String::new())
        }
        Some(path) => {
            let roots = Arc::new(load_roots(path)?);
            let build = |optional: bool| -> io::Result<Arc<dyn ClientCertVerifier>> {
                let builder =
                    WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider));
                let builder = if optional { builder.allow_unauthenticated() } else { builder };
                builder.build().map_err(|e| invalid(format!("--client-ca {}: {e}", path.display())))
            };
            (build(false)?, build(true)?, format!(", client certificates from {} required", path.display()))
        }
    };
    let config = |verifier: Arc<dyn ClientCertVerifier>| -> io::Result<Arc<ServerConfig>> {
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions(options.profile))
            .map_err(|e| invalid(format!("TLS profile: {e}")))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| invalid(format!("{origin}: {}", key_error(&e))))?;
        // The server's order of suites wins; no 0-RTT (the default), no ALPN.
        config.ignore_client_order = true;
        Ok(Arc::new(config))
    };
    let clients = config(clients_verifier)?;
    let mx = config(mx_verifier)?;
    let summary = format!("TLS {}, {origin}{auth}", options.profile);
    Ok(Tls { clients, mx, generated_ca, summary })
}

/// The ring provider, trimmed to what the profile allows: TLS 1.3 suites, and for
/// `compatible` the TLS 1.2 suites with ECDHE key exchange and an AEAD cipher.
fn provider(profile: Profile) -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.retain(|suite| match suite {
        SupportedCipherSuite::Tls13(_) => true,
        SupportedCipherSuite::Tls12(_) => {
            let name = format!("{:?}", suite.suite());
            profile == Profile::Compatible
                && name.contains("_ECDHE_")
                && (name.contains("_GCM_") || name.contains("_CHACHA20_POLY1305_"))
        }
    });
    provider
}

fn versions(profile: Profile) -> &'static [&'static SupportedProtocolVersion] {
    static MODERN: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    static COMPATIBLE: [&SupportedProtocolVersion; 2] = [&rustls::version::TLS13, &rustls::version::TLS12];
    match profile {
        Profile::Modern => &MODERN,
        Profile::Compatible => &COMPATIBLE,
    }
}

/// `<maildir>/../postern-ca.pem` (the Maildir root's parent directory).
fn ca_path(maildir: &Path) -> PathBuf {
    match maildir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.join(CA_FILE),
        Some(_) => PathBuf::from(CA_FILE),
        None => maildir.join(CA_FILE),
    }
}

/// Reads `--cert` and `--key`, with errors that say what is wrong with which file.
fn load_identity(
    cert: &Path,
    key: &Path,
) -> io::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = load_certs(cert, "--cert")?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            invalid(format!("--key {}: no private key (PKCS#8, RSA or EC PEM block) found", key.display()))
        }
        e => invalid(format!("--key {}: {}", key.display(), pem_error(&e))),
    })?;
    Ok((chain, key))
}

/// The certificates in a PEM file; at least one.
fn load_certs(path: &Path, option: &str) -> io::Result<Vec<CertificateDer<'static>>> {
    let fail =
        |e: rustls::pki_types::pem::Error| invalid(format!("{option} {}: {}", path.display(), pem_error(&e)));
    let certs =
        CertificateDer::pem_file_iter(path).map_err(fail)?.collect::<Result<Vec<_>, _>>().map_err(fail)?;
    if certs.is_empty() {
        return Err(invalid(format!("{option} {}: no CERTIFICATE PEM block found", path.display())));
    }
    Ok(certs)
}

/// `--client-ca`: every certificate in the file is a trust anchor.
fn load_roots(path: &Path) -> io::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path, "--client-ca")? {
        roots.add(cert).map_err(|e| {
            invalid(format!("--client-ca {}: not a usable CA certificate: {e}", path.display()))
        })?;
    }
    Ok(roots)
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => e.to_string(),
        e => format!("not valid PEM: {e:?}"),
    }
}

/// rustls's reason a certificate and key cannot be used together, in words.
fn key_error(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            "the private key (--key) does not belong to the certificate (--cert)".into()
        }
        e => format!("unusable certificate or key: {e}"),
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// A demo CA and a server certificate it signs, for `localhost`, `127.0.0.1`, `::1` and
/// `hostname`. The CA certificate is written to `ca_file` (atomically: clients may be
/// reading the previous one); its key is dropped when this returns.
fn generate(
    ca_file: &Path,
    hostname: &str,
) -> io::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    let failed = |what: &str, e: rcgen::Error| io::Error::other(format!("cannot generate the {what}: {e}"));
    let now = SystemTime::now();
    let not_before = now.checked_sub(Duration::from_secs(24 * 3600)).unwrap_or(now);
    let not_after = now + GENERATED_VALIDITY;

    let ca_key = KeyPair::generate().map_err(|e| failed("CA key", e))?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(|e| failed("CA", e))?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name.push(DnType::CommonName, "postern mail-gateway demo CA");
    ca.not_before = not_before.into();
    ca.not_after = not_after.into();
    let ca_cert = ca.self_signed(&ca_key).map_err(|e| failed("CA", e))?;
    let issuer = Issuer::new(ca, ca_key);

    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if !names.iter().any(|n| n.eq_ignore_ascii_case(hostname)) {
        names.push(hostname.to_owned());
    }
    let server_key = KeyPair::generate().map_err(|e| failed("server key", e))?;
    let mut server = CertificateParams::new(names).map_err(|e| failed("server certificate", e))?;
    server.distinguished_name.push(DnType::CommonName, hostname);
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.not_before = not_before.into();
    server.not_after = not_after.into();
    let server_cert = server.signed_by(&server_key, &issuer).map_err(|e| failed("server certificate", e))?;

    let tmp = ca_file.with_extension("pem.tmp");
    fs::write(&tmp, ca_cert.pem()).and_then(|()| fs::rename(&tmp, ca_file)).map_err(|e| {
        io::Error::new(e.kind(), format!("cannot write the CA certificate {}: {e}", ca_file.display()))
    })?;
    let key = PrivateKeyDer::try_from(server_key.serialize_der())
        .map_err(|e| io::Error::other(format!("generated key: {e}")))?;
    Ok((vec![server_cert.der().clone()], key))
}

/// The negotiated parameters, for the log: `TLSv1.3 TLS13_AES_256_GCM_SHA384 X25519
/// sni="localhost" client="CN=alice"`.
pub(crate) fn describe(info: &TlsInfo) -> String {
    let mut s = format!("{} {}", info.protocol, info.cipher_suite);
    if let Some(group) = &info.key_exchange {
        s.push(' ');
        s.push_str(group);
    }
    match &info.sni {
        Some(sni) => s.push_str(&format!(" sni={sni:?}")),
        None => s.push_str(" no-sni"),
    }
    if let Some(identity) = &info.peer_identity {
        s.push_str(&format!(" client-certificate={identity:?}"));
    }
    s
}
