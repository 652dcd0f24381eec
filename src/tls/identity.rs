//! The identity a verified client certificate carries, for authorisation by certificate.

use std::fmt::Write as _;
use std::net::IpAddr;

use rustls::CommonState;
use rustls::pki_types::CertificateDer;
use subtle::ConstantTimeEq;
use x509_parser::extensions::GeneralName;

use super::certs::{parse_certificate, sanitize};
use super::policy::TlsError;

/// Who the peer is, according to its (verified) end-entity certificate.
///
/// With [`ClientAuth::Required`](super::ClientAuth::Required) or
/// [`ClientAuth::Optional`](super::ClientAuth::Optional), rustls has verified the chain
/// against the application's CAs before the handshake completes; this type then reads the
/// names out of the certificate so that the application can authorise by them, and
/// [`to_tls_info_string`](Self::to_tls_info_string) gives the value for
/// [`TlsInfo::peer_identity`](crate::TlsInfo::peer_identity).
///
/// Text taken from the certificate has control characters escaped (`\u{d}`), so it is
/// safe to log or to put in a header.
///
/// ```
/// use postern::tls::PeerIdentity;
///
/// let key = rcgen::KeyPair::generate().unwrap();
/// let mut params = rcgen::CertificateParams::new(vec!["relay.example.org".into()]).unwrap();
/// params.distinguished_name = rcgen::DistinguishedName::new();
/// params.distinguished_name.push(rcgen::DnType::CommonName, "relay");
/// let cert = params.self_signed(&key).unwrap();
///
/// let id = PeerIdentity::from_certificate(cert.der()).unwrap();
/// assert_eq!(id.subject, "CN=relay");
/// assert_eq!(id.dns_names, ["relay.example.org"]);
/// assert_eq!(id.sha256_hex().len(), 64);
/// assert!(id.to_tls_info_string().starts_with("CN=relay (sha256:"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerIdentity {
    /// The subject distinguished name, e.g. `CN=relay, O=Example` (RFC 4514 style, in the
    /// certificate's order).
    pub subject: String,
    /// The subject's common names (usually one).
    pub common_names: Vec<String>,
    /// subjectAltName DNS names.
    pub dns_names: Vec<String>,
    /// subjectAltName e-mail addresses (rfc822Name).
    pub emails: Vec<String>,
    /// subjectAltName URIs (e.g. SPIFFE IDs).
    pub uris: Vec<String>,
    /// subjectAltName IP addresses.
    pub ip_addresses: Vec<IpAddr>,
    /// The issuer distinguished name.
    pub issuer: String,
    /// SHA-256 over the DER certificate: the pin for "this exact certificate".
    pub sha256: [u8; 32],
}

impl PeerIdentity {
    /// Reads the identity out of a DER certificate. It does not verify anything: use it on
    /// certificates rustls has verified (see [`from_connection`](Self::from_connection)).
    ///
    /// # Errors
    /// [`TlsError::InvalidCertificate`] if the certificate does not parse.
    pub fn from_certificate(der: &CertificateDer<'_>) -> Result<Self, TlsError> {
        let cert = parse_certificate(der, 0)?;
        let mut identity = Self {
            subject: sanitize(&cert.subject().to_string()),
            common_names: cert
                .subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(sanitize)
                .collect(),
            dns_names: Vec::new(),
            emails: Vec::new(),
            uris: Vec::new(),
            ip_addresses: Vec::new(),
            issuer: sanitize(&cert.issuer().to_string()),
            sha256: sha256(der.as_ref()),
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => identity.dns_names.push(sanitize(dns)),
                    GeneralName::RFC822Name(email) => identity.emails.push(sanitize(email)),
                    GeneralName::URI(uri) => identity.uris.push(sanitize(uri)),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_address(bytes) {
                            identity.ip_addresses.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(identity)
    }

    /// The verified client (or server) identity of a connection whose handshake is
    /// complete: `None` while it is still handshaking, or when the peer sent no certificate
    /// (possible with [`ClientAuth::Optional`](super::ClientAuth::Optional)).
    ///
    /// `conn` is a `rustls::ServerConnection` or `ClientConnection` (both dereference to
    /// [`CommonState`]).
    ///
    /// # Errors
    /// [`TlsError::InvalidCertificate`] if the certificate does not parse (rustls parses it
    /// too, so this does not happen with a verified certificate).
    pub fn from_connection(conn: &CommonState) -> Result<Option<Self>, TlsError> {
        if conn.is_handshaking() {
            return Ok(None);
        }
        match conn.peer_certificates().and_then(|chain| chain.first()) {
            Some(end_entity) => Self::from_certificate(end_entity).map(Some),
            None => Ok(None),
        }
    }

    /// The SHA-256 fingerprint in lowercase hex, without separators.
    #[must_use]
    pub fn sha256_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for byte in self.sha256 {
            let _ = write!(out, "{byte:02x}");
        }
        out
    }

    /// Whether the certificate's SHA-256 fingerprint is `expected`, compared in constant
    /// time (for pinning).
    #[must_use]
    pub fn sha256_matches(&self, expected: &[u8]) -> bool {
        expected.len() == self.sha256.len() && bool::from(self.sha256.as_slice().ct_eq(expected))
    }

    /// A one-line summary for [`TlsInfo::peer_identity`](crate::TlsInfo::peer_identity)
    /// and logs: `<subject> (sha256:<hex>)`. The subject is replaced by the first of the
    /// e-mail, DNS and URI names when it is empty.
    #[must_use]
    pub fn to_tls_info_string(&self) -> String {
        let name = if self.subject.is_empty() {
            self.emails
                .first()
                .or(self.dns_names.first())
                .or(self.uris.first())
                .map_or("(no name)", String::as_str)
        } else {
            self.subject.as_str()
        };
        format!("{name} (sha256:{})", self.sha256_hex())
    }

    /// Records this identity in a [`TlsInfo`](crate::TlsInfo).
    #[must_use]
    pub fn apply_to(&self, info: crate::TlsInfo) -> crate::TlsInfo {
        info.with_peer_identity(self.to_tls_info_string())
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    for (o, d) in out.iter_mut().zip(digest.as_ref()) {
        *o = *d;
    }
    out
}

fn ip_address(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answer() {
        let d = sha256(b"abc");
        assert_eq!(d[..4], [0xba, 0x78, 0x16, 0xbf]);
    }

    #[test]
    fn ip_addresses() {
        assert_eq!(ip_address(&[192, 0, 2, 1]), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(ip_address(&[0; 16]), Some("::".parse().unwrap()));
        assert_eq!(ip_address(&[1, 2, 3]), None);
    }
}
