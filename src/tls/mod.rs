//! TLS policy on rustls with the ring provider: strict defaults (TLS 1.3 only), mutual
//! TLS, certificates swappable at run time, STARTTLS glue, the X25519MLKEM768 hybrid
//! post-quantum key exchange, and MTA-STS / TLS-RPT for outbound delivery.

// --- policy, certificates, identity (tls-policy) ---
mod certs;
mod identity;
mod policy;

pub use certs::{
    CertNote, CertStore, LoadedCert, certificates_from_pem, load_certified_key, load_certified_key_der,
    private_key_from_pem, root_store_from_pem,
};
pub use identity::PeerIdentity;
pub use policy::{
    ClientAuth, Explanation, Profile, TlsError, TlsPolicy, TlsVersion, Weakness, is_post_quantum,
};
// --- end tls-policy ---

// --- STARTTLS glue ---
mod starttls;

pub use starttls::{ChannelError, TlsChannel, tls_info};
// --- end STARTTLS glue ---

// --- MTA-STS (RFC 8461) and TLS-RPT (RFC 8460) ---
pub mod mta_sts;
pub mod tlsrpt;
// --- end MTA-STS ---

// --- post-quantum hybrid key exchange ---
pub(crate) mod pq;

pub use pq::X25519MLKEM768;
// --- end post-quantum ---
