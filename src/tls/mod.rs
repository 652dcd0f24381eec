//! TLS policy on rustls with the ring provider: strict defaults (TLS 1.3 only), mutual
//! TLS, certificates swappable at run time, STARTTLS glue, the X25519MLKEM768 hybrid
//! post-quantum key exchange, and MTA-STS / TLS-RPT for outbound delivery.

pub(crate) mod pq;

pub use pq::X25519MLKEM768;
