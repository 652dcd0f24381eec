//! The X25519MLKEM768 hybrid post-quantum key exchange for rustls's ring provider.
//!
//! rustls 0.23 ships X25519MLKEM768 only with its aws-lc-rs provider. postern builds on
//! the ring provider, so this module supplies the group itself: ring's X25519 for the
//! classical half and FIPS 203 ML-KEM-768 from the pure-Rust `ml-kem` crate for the
//! post-quantum half, with randomness from ring's `SystemRandom`. The ML-KEM code is
//! postern's one ML-KEM-768 core (`src/mlkem.rs`, with its known-answer tests), shared
//! with the X-Wing KEM of `hybrid`.
//!
//! # Wire format
//!
//! As in draft-ietf-tls-ecdhe-mlkem (codepoint 0x11EC) and rustls/aws-lc-rs, with the
//! ML-KEM part first in every field:
//!
//! | field | layout | bytes |
//! |---|---|---|
//! | client key share | ML-KEM-768 encapsulation key ‖ X25519 public key | 1184 + 32 |
//! | server key share | ML-KEM-768 ciphertext ‖ X25519 public key | 1088 + 32 |
//! | shared secret | ML-KEM-768 shared secret ‖ X25519 shared secret | 32 + 32 |
//!
//! The concatenated secret is only safe as input to the TLS 1.3 key schedule, which is
//! why the group is usable with TLS 1.3 only.
//!
//! # Checks
//!
//! - Both key shares must have exactly their length.
//! - The client's encapsulation key must pass the FIPS 203 §7.2 modulus check (every
//!   12-bit coefficient below q = 3329); anything else is refused before encapsulating.
//! - An X25519 exchange whose result is all zeros (a low-order peer point, RFC 7748 §6.1)
//!   is refused.
//! - A malformed ML-KEM ciphertext cannot be detected: decapsulation then yields an
//!   unrelated secret (implicit rejection), and the handshake fails at `Finished`.
//!
//! Every refusal is `rustls::Error::PeerMisbehaved(PeerMisbehaved::InvalidKeyShare)`;
//! a rustls server answers it with an `illegal_parameter` alert. Nothing here panics
//! on peer input.
//!
//! Secrets are wiped where postern holds them: the ML-KEM decapsulation key zeroizes
//! itself on drop (`ml-kem`'s `zeroize` feature), seeds and intermediate secrets live in
//! [`zeroize::Zeroizing`] buffers, and the combined secret is handed (without a copy) to
//! rustls's `SharedSecret`, which zeroizes it. The X25519 private key is ring's single-use
//! `EphemeralPrivateKey`, which ring drops without zeroizing, exactly as with rustls's
//! own ring X25519 group.
//!
//! # Cost
//!
//! Measured with `benches/tls_pq.rs` (release, 2-vCPU Zen 5): over plain X25519, the
//! pure-Rust ML-KEM-768 adds about 55 µs to a server's handshake (encapsulation) and about
//! 130 µs to a client's (key generation, then decapsulation); a whole in-memory TLS 1.3
//! handshake on the ring provider goes from ~110 µs to ~300 µs. rustls's aws-lc-rs group
//! (AVX2 assembly) is about 3x faster per ML-KEM operation.

use rustls::crypto::{
    ActiveKeyExchange, CompletedKeyExchange, GetRandomFailed, SharedSecret, SupportedKxGroup,
};
use rustls::ffdhe_groups::FfdheGroup;
use rustls::{NamedGroup, PeerMisbehaved, ProtocolVersion};

use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey};
use ring::rand::SystemRandom;
use zeroize::Zeroizing;

use crate::mlkem as mlkem768;

/// X25519MLKEM768 (TLS codepoint 0x11EC): X25519 combined with ML-KEM-768, as in
/// draft-ietf-tls-ecdhe-mlkem and rustls's own aws-lc-rs implementation, built on
/// ring's X25519 and the `ml-kem` crate so that it works with the ring provider.
///
/// # When to use it
///
/// Offer it first whenever TLS 1.3 is on: traffic recorded today stays confidential
/// against a future quantum computer ("harvest now, decrypt later"), and the X25519 half
/// keeps today's security should ML-KEM turn out weaker than believed. It costs a ClientHello
/// ~1.2 KB and a ServerHello ~1.1 KB larger, and CPU: measured with `benches/tls_pq.rs`
/// (release, 2-vCPU Zen 5), the pure-Rust ML-KEM-768 adds about 55 µs to a server's
/// handshake and 130 µs to a client's over X25519 alone; a whole in-memory TLS 1.3
/// handshake goes from ~110 µs to ~300 µs.
///
/// - **Prefer PQ** (postern's `Modern` profile): list this group first and X25519 next,
///   `[X25519MLKEM768, X25519, ...]`. A rustls client then sends both key shares in one
///   ClientHello (the X25519 private key is shared, see
///   [`ActiveKeyExchange::hybrid_component`]), so a server without PQ support picks
///   X25519 without a HelloRetryRequest.
/// - **Require PQ**: list only this group. Peers that cannot do X25519MLKEM768 fail the
///   handshake (no common group) instead of silently falling back to classical crypto.
///
/// The group is TLS 1.3 only ([`SupportedKxGroup::usable_for_version`]) and is not
/// FIPS-validated ([`SupportedKxGroup::fips`] is `false`).
///
/// # Checks
///
/// Key shares of the wrong length, a client encapsulation key that fails the FIPS 203
/// §7.2 modulus check, and an X25519 exchange with an all-zero result (a low-order
/// point) are refused with `PeerMisbehaved::InvalidKeyShare`, which a rustls server
/// answers with an `illegal_parameter` alert. A corrupted ML-KEM ciphertext cannot be
/// detected (implicit rejection): it yields unrelated keys and the handshake fails at
/// `Finished`.
///
/// ```
/// use std::sync::Arc;
/// use rustls::crypto::{CryptoProvider, ring};
///
/// // Prefer PQ, fall back to X25519 without an extra round trip.
/// let prefer = CryptoProvider {
///     kx_groups: vec![postern::tls::X25519MLKEM768, ring::kx_group::X25519],
///     ..ring::default_provider()
/// };
/// // Require PQ: a peer without X25519MLKEM768 has no group in common with us.
/// let require = CryptoProvider { kx_groups: vec![postern::tls::X25519MLKEM768], ..ring::default_provider() };
/// let config = rustls::ClientConfig::builder_with_provider(Arc::new(require))
///     .with_protocol_versions(&[&rustls::version::TLS13])
///     .unwrap();
/// # let _ = (prefer, config);
/// ```
pub static X25519MLKEM768: &dyn SupportedKxGroup = &X25519MlKem768;

/// Length of an X25519 public key and of an X25519 shared secret.
const X25519_LEN: usize = 32;
/// The client's key share: encapsulation key ‖ X25519 public key.
const CLIENT_SHARE_LEN: usize = mlkem768::ENCAPSULATION_KEY_LEN + X25519_LEN;
/// The server's key share: ciphertext ‖ X25519 public key.
const SERVER_SHARE_LEN: usize = mlkem768::CIPHERTEXT_LEN + X25519_LEN;
/// The combined secret: ML-KEM shared secret ‖ X25519 shared secret.
const SECRET_LEN: usize = mlkem768::SHARED_SECRET_LEN + X25519_LEN;

/// The group behind [`X25519MLKEM768`].
struct X25519MlKem768;

impl core::fmt::Debug for X25519MlKem768 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("X25519MLKEM768")
    }
}

impl SupportedKxGroup for X25519MlKem768 {
    /// Client side: a fresh ML-KEM-768 key pair and X25519 ephemeral key.
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        let rng = SystemRandom::new();
        let mlkem = mlkem768::DecapsulationKey::generate(&rng).map_err(|_| GetRandomFailed)?;
        let x25519 = EphemeralPrivateKey::generate(&agreement::X25519, &rng).map_err(|_| GetRandomFailed)?;
        let x25519_public = x25519.compute_public_key().map_err(|_| GetRandomFailed)?;

        let mut pub_key = Vec::with_capacity(CLIENT_SHARE_LEN);
        pub_key.extend_from_slice(&mlkem.encapsulation_key_bytes());
        pub_key.extend_from_slice(x25519_public.as_ref());
        Ok(Box::new(ClientKeyExchange { mlkem, x25519, pub_key }))
    }

    /// Server side: encapsulate to the client's ML-KEM key and answer its X25519 share.
    /// The server share depends on the client's, so this cannot be `start` + `complete`.
    fn start_and_complete(&self, client_share: &[u8]) -> Result<CompletedKeyExchange, rustls::Error> {
        if client_share.len() != CLIENT_SHARE_LEN {
            return Err(invalid_key_share());
        }
        let (ek, peer_x25519) = client_share.split_at(mlkem768::ENCAPSULATION_KEY_LEN);
        // The cheap checks first: the modulus check refuses a non-canonical key before
        // any randomness or scalar multiplication is spent on it.
        let ek = mlkem768::EncapsulationKey::from_bytes(ek).map_err(|_| invalid_key_share())?;

        let rng = SystemRandom::new();
        let x25519 = EphemeralPrivateKey::generate(&agreement::X25519, &rng).map_err(|_| GetRandomFailed)?;
        let x25519_public = x25519.compute_public_key().map_err(|_| GetRandomFailed)?;
        let x25519_secret = x25519_agree(x25519, peer_x25519)?;
        let (ciphertext, mlkem_secret) = ek.encapsulate(&rng).map_err(|_| GetRandomFailed)?;

        let mut pub_key = Vec::with_capacity(SERVER_SHARE_LEN);
        pub_key.extend_from_slice(&ciphertext);
        pub_key.extend_from_slice(x25519_public.as_ref());
        Ok(CompletedKeyExchange {
            group: NamedGroup::X25519MLKEM768,
            pub_key,
            secret: combine(&mlkem_secret, &x25519_secret),
        })
    }

    fn ffdhe_group(&self) -> Option<FfdheGroup<'static>> {
        None
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519MLKEM768
    }

    /// ring's X25519 is not a FIPS-approved key agreement and `ml-kem` is not a
    /// validated module.
    fn fips(&self) -> bool {
        false
    }

    /// The concatenated secret relies on the TLS 1.3 key schedule.
    fn usable_for_version(&self, version: ProtocolVersion) -> bool {
        version == ProtocolVersion::TLSv1_3
    }
}

/// A client's X25519MLKEM768 exchange between ClientHello and ServerHello.
struct ClientKeyExchange {
    /// Zeroizes itself on drop.
    mlkem: mlkem768::DecapsulationKey,
    /// Single use: consumed by whichever completion rustls calls.
    x25519: EphemeralPrivateKey,
    /// The key share sent: encapsulation key ‖ X25519 public key.
    pub_key: Vec<u8>,
}

impl ActiveKeyExchange for ClientKeyExchange {
    fn complete(self: Box<Self>, server_share: &[u8]) -> Result<SharedSecret, rustls::Error> {
        if server_share.len() != SERVER_SHARE_LEN {
            return Err(invalid_key_share());
        }
        let (ciphertext, peer_x25519) = server_share.split_at(mlkem768::CIPHERTEXT_LEN);
        let Self { mlkem, x25519, .. } = *self;
        let x25519_secret = x25519_agree(x25519, peer_x25519)?;
        let mlkem_secret = mlkem.decapsulate(ciphertext).map_err(|_| invalid_key_share())?;
        Ok(combine(&mlkem_secret, &x25519_secret))
    }

    /// The X25519 half, offered as a separate X25519 key share when the client also
    /// lists X25519: a server without PQ support can then answer without a
    /// HelloRetryRequest (draft-ietf-tls-hybrid-design §3.2 allows the reuse).
    fn hybrid_component(&self) -> Option<(NamedGroup, &[u8])> {
        Some((NamedGroup::X25519, self.pub_key.get(mlkem768::ENCAPSULATION_KEY_LEN..)?))
    }

    /// The server chose plain X25519: complete only the classical half.
    fn complete_hybrid_component(
        self: Box<Self>,
        peer_pub_key: &[u8],
    ) -> Result<SharedSecret, rustls::Error> {
        let secret = x25519_agree(self.x25519, peer_pub_key)?;
        Ok(SharedSecret::from(&secret[..]))
    }

    fn pub_key(&self) -> &[u8] {
        &self.pub_key
    }

    fn ffdhe_group(&self) -> Option<FfdheGroup<'static>> {
        None
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519MLKEM768
    }
}

/// The error for every malformed or unacceptable key share.
fn invalid_key_share() -> rustls::Error {
    rustls::Error::PeerMisbehaved(PeerMisbehaved::InvalidKeyShare)
}

/// X25519 with the peer's public key. ring refuses a result of all zeros (a low-order
/// peer point, RFC 7748 §6.1); a key of the wrong length is refused here.
fn x25519_agree(
    private: EphemeralPrivateKey,
    peer: &[u8],
) -> Result<Zeroizing<[u8; X25519_LEN]>, rustls::Error> {
    if peer.len() != X25519_LEN {
        return Err(invalid_key_share());
    }
    let peer = UnparsedPublicKey::new(&agreement::X25519, peer);
    agreement::agree_ephemeral(private, &peer, |shared| {
        let mut out = Zeroizing::new([0u8; X25519_LEN]);
        if shared.len() != X25519_LEN {
            return None;
        }
        out.copy_from_slice(shared);
        Some(out)
    })
    .ok()
    .flatten()
    .ok_or_else(invalid_key_share)
}

/// ML-KEM secret ‖ X25519 secret, in a buffer that rustls's `SharedSecret` takes over
/// (without a copy) and zeroizes on drop.
fn combine(mlkem: &[u8; mlkem768::SHARED_SECRET_LEN], x25519: &[u8; X25519_LEN]) -> SharedSecret {
    let mut secret = Vec::with_capacity(SECRET_LEN);
    secret.extend_from_slice(mlkem);
    secret.extend_from_slice(x25519);
    SharedSecret::from(secret)
}
