//! The gateway's TLS settings: the rustls server configurations, built in this one place
//! from a [`postern::tls::TlsPolicy`].
//!
//! - the certificate: `--cert`/`--key` (PEM, loaded by [`load_certified_key`], which says
//!   what is wrong with a chain or a key), or, without them, a self-signed demo CA and a
//!   server certificate for `localhost`, `127.0.0.1`, `::1` and `--hostname`, generated at
//!   start; the CA's certificate is written next to the Maildir
//!   (`<maildir>/../postern-ca.pem`) for clients to trust, its key only ever lives in
//!   memory. Either way the certificate sits in a [`CertStore`], the resolver whose
//!   certificates can be replaced at run time: [`Reload`] watches `--cert`/`--key` and
//!   swaps in a renewed certificate (an ACME client's renewal) for new handshakes, while
//!   running connections go on with the old one;
//! - the profile (`--tls-profile`, [`Profile`]): `modern` is TLS 1.3 only; `compatible` adds
//!   TLS 1.2 with ECDHE key exchange and AEAD suites only, and the extended master secret
//!   required (the policy's defaults);
//! - mutual TLS (`--client-ca`): a client certificate issued by that CA is required
//!   ([`ClientAuth::Required`]) on every TLS port but one: submission, smtps, pop3 after
//!   STLS, pop3s. On the MX port (`--smtp`, port 25 style) it is optional
//!   ([`ClientAuth::Optional`]), because other mail servers have none; one that is
//!   presented must verify all the same.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use postern::TlsInfo;
use postern::tls::{
    CertStore, ClientAuth, LoadedCert, Profile, TlsPolicy, certificates_from_pem, load_certified_key,
    private_key_from_pem, root_store_from_pem,
};
use rustls::ServerConfig;

/// How a generated server certificate and CA are valid: from a day ago (clock skew) for
/// this long. The gateway makes new ones at every start.
const GENERATED_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// The file the generated CA certificate is written to, beside the Maildir root.
pub(crate) const CA_FILE: &str = "postern-ca.pem";

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
    /// Lines for the startup log: the policy, the certificate, and notes about it.
    pub(crate) summary: Vec<String>,
    /// Watches `--cert`/`--key` for a renewed certificate (`None` for a generated one).
    pub(crate) reload: Option<Reload>,
}

/// Builds the configurations. `maildir` is the Maildir root (the generated CA goes
/// beside it); `hostname` goes into a generated certificate.
pub(crate) fn setup(options: &Options, maildir: &Path, hostname: &str) -> io::Result<Tls> {
    let now = SystemTime::now();
    let (cert, generated_ca, origin) = match (&options.cert, &options.key) {
        (Some(cert), Some(key)) => {
            let read = |option: &str, path: &Path| {
                fs::read(path)
                    .map_err(|e| io::Error::new(e.kind(), format!("{option} {}: {e}", path.display())))
            };
            let (chain, key_pem) = (read("--cert", cert)?, read("--key", key)?);
            // Each file on its own first, so an error names the file at fault.
            certificates_from_pem(&chain).map_err(|e| invalid(format!("--cert {}: {e}", cert.display())))?;
            private_key_from_pem(&key_pem).map_err(|e| invalid(format!("--key {}: {e}", key.display())))?;
            let loaded = load_certified_key(&chain, &key_pem, now)
                .map_err(|e| invalid(format!("--cert {} --key {}: {e}", cert.display(), key.display())))?;
            (loaded, None, format!("certificate {}", cert.display()))
        }
        (None, None) => {
            let ca_file = ca_path(maildir);
            let loaded = generate(&ca_file, hostname, now)?;
            let origin = format!(
                "generated certificate for localhost, 127.0.0.1, ::1, {hostname} (CA: {})",
                ca_file.display()
            );
            (loaded, Some(ca_file), origin)
        }
        _ => return Err(invalid("--cert and --key go together".into())),
    };
    let mut summary =
        vec![format!("{origin}: {}, valid until {}", cert.subject, crate::log::utc(cert.not_after))];
    for note in &cert.notes {
        summary.push(format!("certificate note: {note}"));
    }
    // The resolver every handshake asks; `CertStore::replace_default` swaps the
    // certificate for new handshakes without touching running connections.
    let store = Arc::new(CertStore::with_default(cert));
    let reload = match (&options.cert, &options.key) {
        (Some(cert), Some(key)) => Some(Reload::new(Arc::clone(&store), cert.clone(), key.clone())),
        _ => None,
    };

    let roots = match &options.client_ca {
        None => None,
        Some(path) => {
            let pem = fs::read(path)
                .map_err(|e| io::Error::new(e.kind(), format!("--client-ca {}: {e}", path.display())))?;
            let roots = root_store_from_pem(&pem)
                .map_err(|e| invalid(format!("--client-ca {}: {e}", path.display())))?;
            Some(Arc::new(roots))
        }
    };
    let policy = TlsPolicy::new(options.profile);
    let (clients_auth, mx_auth) = match roots {
        None => (ClientAuth::None, ClientAuth::None),
        Some(roots) => (ClientAuth::Required(Arc::clone(&roots)), ClientAuth::Optional(roots)),
    };
    let clients_policy = policy.clone().client_auth(clients_auth);
    let mx_policy = policy.client_auth(mx_auth);
    let build = |policy: &TlsPolicy| {
        policy.server_config(Arc::clone(&store) as _).map_err(|e| invalid(format!("TLS policy: {e}")))
    };
    let (clients, mx) = (build(&clients_policy)?, build(&mx_policy)?);

    let explained = clients_policy.explain();
    summary.insert(
        0,
        format!(
            "TLS policy {}: {}; suites {}; groups {}; client certificates {} ({} CA), on the MX port {}",
            explained.profile,
            explained.versions.join(" "),
            explained.cipher_suites.join(" "),
            explained.kx_groups.join(" "),
            explained.client_auth,
            explained.client_auth_roots,
            mx_policy.explain().client_auth,
        ),
    );
    for weakness in &explained.weaknesses {
        summary.push(format!("TLS policy note: {weakness}"));
    }
    Ok(Tls { clients, mx, generated_ca, summary, reload })
}

/// Reloads `--cert`/`--key` when they change on disk: the new certificate goes into the
/// [`CertStore`] with `replace_default`, so new handshakes get it and connections already
/// running keep theirs. A pair that does not load (an ACME client halfway through writing
/// the two files, a wrong key) leaves the current certificate in place; the next change
/// is tried again.
#[derive(Debug)]
pub(crate) struct Reload {
    store: Arc<CertStore>,
    cert: PathBuf,
    key: PathBuf,
    /// Modification time and length of both files when last looked at.
    seen: Option<[(SystemTime, u64); 2]>,
}

impl Reload {
    fn new(store: Arc<CertStore>, cert: PathBuf, key: PathBuf) -> Self {
        let mut reload = Self { store, cert, key, seen: None };
        reload.seen = reload.stamp();
        reload
    }

    fn stamp(&self) -> Option<[(SystemTime, u64); 2]> {
        let one = |path: &Path| {
            fs::metadata(path).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
        };
        Some([one(&self.cert)?, one(&self.key)?])
    }

    /// Looks at the files; if they changed since the last look, loads them and swaps the
    /// certificate in. Returns what happened, for the log (`None`: nothing changed).
    pub(crate) fn check(&mut self, now: SystemTime) -> Option<String> {
        let stamp = self.stamp();
        if stamp.is_none() || stamp == self.seen {
            return None;
        }
        self.seen = stamp;
        let loaded = fs::read(&self.cert)
            .and_then(|chain| Ok((chain, fs::read(&self.key)?)))
            .map_err(|e| e.to_string())
            .and_then(|(chain, key)| load_certified_key(&chain, &key, now).map_err(|e| e.to_string()));
        Some(match loaded {
            Ok(cert) => {
                let line = format!(
                    "certificate reloaded from {}: {}, valid until {}; new handshakes use it",
                    self.cert.display(),
                    cert.subject,
                    crate::log::utc(cert.not_after)
                );
                self.store.replace_default(cert);
                line
            }
            Err(e) => format!(
                "certificate in {} / {} changed but does not load, keeping the current one: {e}",
                self.cert.display(),
                self.key.display()
            ),
        })
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

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// A demo CA and a server certificate it signs, for `localhost`, `127.0.0.1`, `::1` and
/// `hostname`. The CA certificate is written to `ca_file` (atomically: clients may be
/// reading the previous one); its key is dropped when this returns.
fn generate(ca_file: &Path, hostname: &str, now: SystemTime) -> io::Result<LoadedCert> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    let failed = |what: &str, e: rcgen::Error| io::Error::other(format!("cannot generate the {what}: {e}"));
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
    // Through the same loader as `--cert`/`--key`: the generated pair gets the same checks.
    load_certified_key(server_cert.pem().as_bytes(), server_key.serialize_pem().as_bytes(), now)
        .map_err(|e| io::Error::other(format!("the generated certificate: {e}")))
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
