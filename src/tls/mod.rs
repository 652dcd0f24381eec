//! TLS policy on rustls with the ring provider: strict defaults (TLS 1.3 only), mutual
//! TLS, certificates swappable at run time, STARTTLS glue, the X25519MLKEM768 hybrid
//! post-quantum key exchange, and MTA-STS / TLS-RPT for outbound delivery.

mod starttls;

pub use starttls::{ChannelError, TlsChannel, tls_info};

/// A one-line summary of a verified client certificate for [`crate::TlsInfo::peer_identity`]:
/// its subject distinguished name.
pub(crate) fn peer_identity_summary(cert: &rustls::pki_types::CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(parsed.subject().to_string())
}
