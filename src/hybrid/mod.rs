//! Hybrid post-quantum encryption for data at rest: the X-Wing KEM (X25519 +
//! ML-KEM-768), HPKE (RFC 9180) sealing with AES-256-GCM, a streaming envelope, and key
//! rings with rotation.
//!
//! | Layer | Module | What it does |
//! |---|---|---|
//! | KEM | [`xwing`] | draft-connolly-cfrg-xwing-kem: 32-byte seed keys, 1216-byte public keys, 1120-byte ciphertexts, SHA3-256 combiner |
//! | HPKE | [`hpke`] | RFC 9180 base mode, KEM 0x647A, HKDF-SHA256, AES-256-GCM; single-shot and contexts |
//! | Envelope | [`envelope`] | a versioned header (magic, version, algorithms, key id) + single-shot or chunked stream |
//! | Keys | [`KeyRing`] | several keys with ids, one current, `rotate(now)`, `retire`, bytes in and out |
//!
//! Why hybrid: a message sealed today must stay confidential when a quantum computer
//! can break X25519 ("harvest now, decrypt later"); X25519 keeps today's security should
//! ML-KEM turn out weaker than believed. X-Wing hashes both shared secrets together with
//! the X25519 ciphertext and public key, which makes it a KEM in its own right (plain
//! concatenation, as in TLS's X25519MLKEM768, is only safe inside TLS's key schedule).
//!
//! # Crates
//!
//! ML-KEM-768 is the pure-Rust FIPS 203 implementation of the `ml-kem` crate (RustCrypto),
//! shared with the TLS X25519MLKEM768 group: one implementation in postern. ring provides
//! randomness, HMAC/HKDF-SHA256, AES-256-GCM and the sender's ephemeral X25519;
//! `x25519-dalek` the recipient's long-lived X25519 key (ring's X25519 keys are
//! ephemeral-only); `sha3`/`shake` SHA3-256 and SHAKE256.
//!
//! # Secrets
//!
//! Secret keys and shared secrets zeroize on drop, compare in constant time and print no
//! bytes in `Debug`; opened plaintext comes back in [`zeroize::Zeroizing`] buffers. Not
//! wiped: ring's expanded AES key schedule inside an HPKE context (ring offers no way).
//!
//! ```
//! use std::time::SystemTime;
//! use postern::hybrid::KeyRing;
//!
//! let rng = ring::rand::SystemRandom::new();
//! # let now = SystemTime::UNIX_EPOCH;
//! let ring = KeyRing::generate(&rng, now)?;
//! let sealed = ring.seal(&rng, b"mailbox alice", b"", b"Subject: hi\r\n\r\nhello\r\n")?;
//! assert_eq!(&*ring.open(&sealed, b"mailbox alice", b"")?, b"Subject: hi\r\n\r\nhello\r\n");
//! # Ok::<(), postern::hybrid::HybridError>(())
//! ```

use core::fmt;

pub mod envelope;
pub mod hpke;
mod keyring;
pub mod xwing;

pub use keyring::{KeyRing, MAX_KEYS, RingKey};

/// The id of a key in a [`KeyRing`], written into every envelope sealed to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a hybrid operation failed. Every malformed input gets one of these, never a panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HybridError {
    /// A key or ciphertext does not have its fixed length.
    #[error("{what} must be {expected} bytes, got {got}")]
    Length {
        /// What was decoded.
        what: &'static str,
        /// Its required length.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// The ML-KEM part of a public key fails the FIPS 203 §7.2 modulus check.
    #[error("X-Wing public key: the ML-KEM-768 key is not canonical (FIPS 203 modulus check)")]
    InvalidPublicKey,
    /// An X25519 public key or ciphertext is a point of small order (the exchange would
    /// be all zeros, RFC 7748 §6.1).
    #[error("X25519 point of small order refused")]
    LowOrderPoint,
    /// The random number generator failed.
    #[error("the random number generator failed")]
    Random,
    /// Authentication failed: wrong key, info or AAD, or a changed, reordered or
    /// missing byte. No plaintext is released.
    #[error("decryption failed: wrong key, or the data was modified or reordered")]
    Open,
    /// The data ended early: a header cut short, or a stream without its final chunk.
    #[error("sealed data is truncated")]
    Truncated,
    /// Bytes follow a stream's final chunk.
    #[error("data after the final chunk of a sealed stream")]
    TrailingData,
    /// Not an envelope: the magic bytes are wrong.
    #[error("not a sealed envelope (bad magic)")]
    BadMagic,
    /// An envelope version this code does not read.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    /// An envelope mode this code does not read (or the wrong mode for the call).
    #[error("unsupported envelope mode {0}")]
    UnsupportedMode(u8),
    /// An envelope names an algorithm this code does not implement.
    #[error("unsupported {what} id {id:#06x}")]
    UnsupportedAlgorithm {
        /// `"KEM"`, `"KDF"` or `"AEAD"`.
        what: &'static str,
        /// The HPKE identifier found.
        id: u16,
    },
    /// A stream chunk size outside 1..=16 MiB (or non-zero for a single-shot envelope).
    #[error("invalid chunk size {0}")]
    ChunkSize(u32),
    /// The envelope was sealed to a key the ring does not have (never had, or retired).
    #[error("no key with id {0} in the key ring")]
    UnknownKeyId(KeyId),
    /// Too many messages under one HPKE context (the sequence number would wrap).
    #[error("message limit of the encryption context reached")]
    MessageLimit,
    /// A key-ring operation or encoding is invalid.
    #[error("key ring: {0}")]
    KeyRing(&'static str),
}
