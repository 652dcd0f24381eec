//! X-Wing (draft-connolly-cfrg-xwing-kem): X25519 and ML-KEM-768 combined with SHA3-256.
//!
//! | item | bytes | layout |
//! |---|---|---|
//! | secret key | 32 | a seed; SHAKE256(seed, 96) = ML-KEM `d ‖ z` (64) ‖ X25519 scalar (32) |
//! | public key | 1216 | ML-KEM-768 encapsulation key (1184) ‖ X25519 public key (32) |
//! | ciphertext | 1120 | ML-KEM-768 ciphertext (1088) ‖ X25519 ephemeral public key (32) |
//! | shared secret | 32 | SHA3-256(ss_M ‖ ss_X ‖ ct_X ‖ pk_X ‖ `\.//^\`) |
//!
//! ML-KEM comes from postern's one ML-KEM core (the `ml-kem` crate, FIPS 203 final), the
//! same one the TLS X25519MLKEM768 group uses. The sender's ephemeral X25519 key is
//! ring's; the recipient's long-lived X25519 key is an `x25519-dalek` `StaticSecret`.

use core::fmt;

use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey};
use ring::rand::SecureRandom;
use sha3::{Digest as _, Sha3_256};
use shake::{ExtendableOutput as _, Shake256, Update as _, XofReader as _};
use subtle::ConstantTimeEq as _;
use zeroize::{Zeroize as _, Zeroizing};

use super::HybridError;
use crate::mlkem;

/// Bytes of an X-Wing secret key (a seed).
pub const SECRET_KEY_LEN: usize = 32;
/// Bytes of an X-Wing public (encapsulation) key.
pub const PUBLIC_KEY_LEN: usize = mlkem::ENCAPSULATION_KEY_LEN + X25519_LEN;
/// Bytes of an X-Wing ciphertext.
pub const CIPHERTEXT_LEN: usize = mlkem::CIPHERTEXT_LEN + X25519_LEN;
/// Bytes of an X-Wing shared secret.
pub const SHARED_SECRET_LEN: usize = 32;
/// Bytes of the randomness one encapsulation consumes (ML-KEM `m` ‖ X25519 scalar).
pub const ENCAPSULATION_SEED_LEN: usize = 64;

/// The draft's domain-separation label, `\.//^\`.
const LABEL: &[u8; 6] = br"\.//^\";
/// Bytes of an X25519 key or shared secret.
const X25519_LEN: usize = 32;

/// The encodings of every X25519 point of small order (on the curve and its twist),
/// compared with the most significant bit masked as RFC 7748 §5 decodes them: 0, 1, the
/// two points of order 8, p − 1, p and p + 1. A public key equal to one of them would
/// make every exchange with it all-zero (RFC 7748 §6.1).
const SMALL_ORDER: [[u8; 32]; 7] = [
    [0; 32],
    [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda,
        0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00,
    ],
    [
        0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef, 0x5b, 0x04,
        0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57,
    ],
    high_fe(0xec),
    high_fe(0xed),
    high_fe(0xee),
];

/// `low ‖ ff × 30 ‖ 7f`: p − 1, p and p + 1 for `low` = ec, ed, ee.
const fn high_fe(low: u8) -> [u8; 32] {
    let mut out = [0xff; 32];
    out[0] = low;
    out[31] = 0x7f;
    out
}

/// Whether `u` encodes an X25519 point of small order.
fn is_small_order(u: &[u8; 32]) -> bool {
    SMALL_ORDER.iter().any(|bad| {
        let (head, last) = (u.get(..31), u.get(31).map(|b| b & 0x7f));
        head == bad.get(..31) && last == bad.get(31).copied()
    })
}

/// An X-Wing secret key: the 32-byte seed and the keys expanded from it.
///
/// The seed is the key's only encoding ([`to_bytes`](Self::to_bytes)); the ML-KEM and
/// X25519 keys are expanded once, at construction, so that decapsulation does not repeat
/// key generation. Every part zeroizes on drop. `Debug` shows no key material, and `==`
/// compares the seeds in constant time.
pub struct SecretKey {
    seed: Zeroizing<[u8; SECRET_KEY_LEN]>,
    mlkem: mlkem::DecapsulationKey,
    x25519: x25519_dalek::StaticSecret,
    public: PublicKey,
}

impl SecretKey {
    /// A fresh key from 32 bytes of `rng`.
    ///
    /// ```
    /// use postern::hybrid::xwing::SecretKey;
    /// let rng = ring::rand::SystemRandom::new();
    /// let sk = SecretKey::generate(&rng)?;
    /// let (ct, ss) = sk.public_key().encapsulate(&rng)?;
    /// assert!(sk.decapsulate(&ct)? == ss);
    /// # Ok::<(), postern::hybrid::HybridError>(())
    /// ```
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, HybridError> {
        let mut seed = Zeroizing::new([0u8; SECRET_KEY_LEN]);
        rng.fill(seed.as_mut_slice()).map_err(|_| HybridError::Random)?;
        Ok(Self::from_seed(&seed))
    }

    /// The key for a 32-byte seed (the draft's `GenerateKeyPairDerand`; every seed is a
    /// valid key). This is also how a stored key is loaded.
    pub fn from_seed(seed: &[u8; SECRET_KEY_LEN]) -> Self {
        let mut expanded = Zeroizing::new([0u8; mlkem::SEED_LEN + X25519_LEN]);
        let mut shake = Shake256::default();
        shake.update(seed);
        shake.finalize_xof().read(expanded.as_mut_slice());
        let mut mlkem_seed = Zeroizing::new([0u8; mlkem::SEED_LEN]);
        let mut x25519_seed = Zeroizing::new([0u8; X25519_LEN]);
        let (m, x) = expanded.split_at(mlkem::SEED_LEN);
        mlkem_seed.copy_from_slice(m);
        x25519_seed.copy_from_slice(x);

        let mlkem = mlkem::DecapsulationKey::from_seed(&mlkem_seed);
        let x25519 = x25519_dalek::StaticSecret::from(*x25519_seed);
        let x25519_public = x25519_dalek::PublicKey::from(&x25519);
        let mut bytes = Box::new([0u8; PUBLIC_KEY_LEN]);
        let (m, x) = bytes.split_at_mut(mlkem::ENCAPSULATION_KEY_LEN);
        let ek = mlkem.encapsulation_key_bytes();
        m.copy_from_slice(&ek);
        x.copy_from_slice(x25519_public.as_bytes());
        let public = PublicKey { mlkem: mlkem.encapsulation_key(), x25519: *x25519_public.as_bytes(), bytes };
        Self { seed: Zeroizing::new(*seed), mlkem, x25519, public }
    }

    /// Decodes a secret key: exactly [`SECRET_KEY_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HybridError> {
        let seed: &[u8; SECRET_KEY_LEN] = bytes.try_into().map_err(|_| HybridError::Length {
            what: "X-Wing secret key",
            expected: SECRET_KEY_LEN,
            got: bytes.len(),
        })?;
        Ok(Self::from_seed(seed))
    }

    /// The seed, in a buffer that zeroizes on drop.
    pub fn to_bytes(&self) -> Zeroizing<[u8; SECRET_KEY_LEN]> {
        Zeroizing::new(*self.seed)
    }

    /// The matching public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// `Decapsulate`: the shared secret for `ciphertext`.
    ///
    /// A corrupted ML-KEM part cannot be detected (implicit rejection: it yields an
    /// unrelated secret, and the AEAD above fails). An X25519 part of small order is
    /// refused with [`HybridError::LowOrderPoint`] (the exchange would be all zeros).
    pub fn decapsulate(&self, ciphertext: &Ciphertext) -> Result<SharedSecret, HybridError> {
        let (ct_m, ct_x) = ciphertext.parts();
        let ss_m = self.mlkem.decapsulate(ct_m).map_err(|_| HybridError::Length {
            what: "ML-KEM-768 ciphertext",
            expected: mlkem::CIPHERTEXT_LEN,
            got: ct_m.len(),
        })?;
        let ss_x = self.x25519.diffie_hellman(&x25519_dalek::PublicKey::from(*ct_x));
        if !ss_x.was_contributory() {
            return Err(HybridError::LowOrderPoint);
        }
        Ok(combine(&ss_m, ss_x.as_bytes(), ct_x, &self.public.x25519))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey").field("public", &self.public).finish_non_exhaustive()
    }
}

impl PartialEq for SecretKey {
    /// Constant time in the seeds.
    fn eq(&self, other: &Self) -> bool {
        self.seed.as_slice().ct_eq(other.seed.as_slice()).into()
    }
}

impl Eq for SecretKey {}

/// An X-Wing public (encapsulation) key, validated when decoded: the ML-KEM part passes
/// the FIPS 203 §7.2 modulus check and the X25519 part is not a point of small order.
#[derive(Clone)]
pub struct PublicKey {
    mlkem: mlkem::EncapsulationKey,
    x25519: [u8; X25519_LEN],
    bytes: Box<[u8; PUBLIC_KEY_LEN]>,
}

impl PublicKey {
    /// Decodes and validates a public key.
    ///
    /// ```
    /// use postern::hybrid::{HybridError, xwing::PublicKey};
    /// assert!(matches!(PublicKey::from_bytes(&[0; 12]), Err(HybridError::Length { .. })));
    /// // An all-zero key: zero is a valid ML-KEM encoding, but X25519's 0 has small order.
    /// assert_eq!(PublicKey::from_bytes(&[0; 1216]).unwrap_err(), HybridError::LowOrderPoint);
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HybridError> {
        let array: &[u8; PUBLIC_KEY_LEN] = bytes.try_into().map_err(|_| HybridError::Length {
            what: "X-Wing public key",
            expected: PUBLIC_KEY_LEN,
            got: bytes.len(),
        })?;
        let (m, x) = array.split_at(mlkem::ENCAPSULATION_KEY_LEN);
        let x25519: [u8; X25519_LEN] = x.try_into().map_err(|_| HybridError::InvalidPublicKey)?;
        if is_small_order(&x25519) {
            return Err(HybridError::LowOrderPoint);
        }
        let mlkem = mlkem::EncapsulationKey::from_bytes(m).map_err(|_| HybridError::InvalidPublicKey)?;
        Ok(Self { mlkem, x25519, bytes: Box::new(*array) })
    }

    /// The encoding: ML-KEM-768 encapsulation key ‖ X25519 public key.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.bytes
    }

    /// `Encapsulate`: a fresh ciphertext and the shared secret it carries, with ML-KEM's
    /// `m` from `rng` and ring's ephemeral X25519 key.
    pub fn encapsulate(&self, rng: &dyn SecureRandom) -> Result<(Ciphertext, SharedSecret), HybridError> {
        let mut m = Zeroizing::new([0u8; mlkem::MESSAGE_LEN]);
        rng.fill(m.as_mut_slice()).map_err(|_| HybridError::Random)?;
        let (ct_m, ss_m) = self.mlkem.encapsulate_with_message(&m);

        let ephemeral =
            EphemeralPrivateKey::generate(&agreement::X25519, rng).map_err(|_| HybridError::Random)?;
        let ct_x: [u8; X25519_LEN] = ephemeral
            .compute_public_key()
            .ok()
            .and_then(|p| p.as_ref().try_into().ok())
            .ok_or(HybridError::Random)?;
        let peer = UnparsedPublicKey::new(&agreement::X25519, &self.x25519[..]);
        // ring refuses an all-zero result (a small-order peer point).
        let ss_x = agreement::agree_ephemeral(ephemeral, &peer, |shared| {
            let mut out = Zeroizing::new([0u8; X25519_LEN]);
            if shared.len() == X25519_LEN {
                out.copy_from_slice(shared);
                Some(out)
            } else {
                None
            }
        })
        .ok()
        .flatten()
        .ok_or(HybridError::LowOrderPoint)?;
        let ss = combine(&ss_m, &ss_x, &ct_x, &self.x25519);
        Ok((Ciphertext::from_parts(&ct_m, &ct_x), ss))
    }

    /// `EncapsulateDerand`: encapsulation with caller-chosen randomness, `eseed` = ML-KEM
    /// `m` (32) ‖ X25519 ephemeral scalar (32). For known-answer tests only: reusing or
    /// predicting `eseed` destroys all security.
    #[cfg(any(feature = "hybrid-hazmat", test))]
    pub fn encapsulate_derand(
        &self,
        eseed: &[u8; ENCAPSULATION_SEED_LEN],
    ) -> Result<(Ciphertext, SharedSecret), HybridError> {
        let mut m = Zeroizing::new([0u8; mlkem::MESSAGE_LEN]);
        let mut scalar = [0u8; X25519_LEN];
        let (a, b) = eseed.split_at(mlkem::MESSAGE_LEN);
        m.copy_from_slice(a);
        scalar.copy_from_slice(b);
        let (ct_m, ss_m) = self.mlkem.encapsulate_with_message(&m);
        let ephemeral = x25519_dalek::StaticSecret::from(scalar);
        scalar.zeroize();
        let ct_x = *x25519_dalek::PublicKey::from(&ephemeral).as_bytes();
        let ss_x = ephemeral.diffie_hellman(&x25519_dalek::PublicKey::from(self.x25519));
        if !ss_x.was_contributory() {
            return Err(HybridError::LowOrderPoint);
        }
        let ss = combine(&ss_m, ss_x.as_bytes(), &ct_x, &self.x25519);
        Ok((Ciphertext::from_parts(&ct_m, &ct_x), ss))
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    /// The X25519 half in hex: enough to tell keys apart.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(x25519=")?;
        for b in &self.x25519 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ", ..)")
    }
}

/// An X-Wing ciphertext: ML-KEM-768 ciphertext ‖ X25519 ephemeral public key.
#[derive(Clone, PartialEq, Eq)]
pub struct Ciphertext(Box<[u8; CIPHERTEXT_LEN]>);

impl Ciphertext {
    /// Decodes a ciphertext: exactly [`CIPHERTEXT_LEN`] bytes. Every such string is
    /// accepted here; see [`SecretKey::decapsulate`] for what it then checks.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HybridError> {
        let array: &[u8; CIPHERTEXT_LEN] = bytes.try_into().map_err(|_| HybridError::Length {
            what: "X-Wing ciphertext",
            expected: CIPHERTEXT_LEN,
            got: bytes.len(),
        })?;
        Ok(Self(Box::new(*array)))
    }

    /// The encoding.
    pub fn as_bytes(&self) -> &[u8; CIPHERTEXT_LEN] {
        &self.0
    }

    fn from_parts(ct_m: &[u8; mlkem::CIPHERTEXT_LEN], ct_x: &[u8; X25519_LEN]) -> Self {
        let mut out = Box::new([0u8; CIPHERTEXT_LEN]);
        let (m, x) = out.split_at_mut(mlkem::CIPHERTEXT_LEN);
        m.copy_from_slice(ct_m);
        x.copy_from_slice(ct_x);
        Self(out)
    }

    fn parts(&self) -> (&[u8], &[u8; X25519_LEN]) {
        let (m, x) = self.0.split_at(mlkem::CIPHERTEXT_LEN);
        // `x` has exactly X25519_LEN bytes by construction; the fallback is unreachable.
        (m, x.try_into().unwrap_or(&[0; X25519_LEN]))
    }
}

impl fmt::Debug for Ciphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ciphertext({} bytes)", CIPHERTEXT_LEN)
    }
}

/// A 32-byte X-Wing shared secret. Zeroizes on drop, compares in constant time, and
/// its `Debug` shows no bytes.
pub struct SharedSecret(Zeroizing<[u8; SHARED_SECRET_LEN]>);

impl SharedSecret {
    /// The secret bytes.
    pub fn as_bytes(&self) -> &[u8; SHARED_SECRET_LEN] {
        &self.0
    }
}

impl PartialEq for SharedSecret {
    /// Constant time.
    fn eq(&self, other: &Self) -> bool {
        self.0.as_slice().ct_eq(other.0.as_slice()).into()
    }
}

impl Eq for SharedSecret {}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

/// The draft's combiner: SHA3-256(ss_M ‖ ss_X ‖ ct_X ‖ pk_X ‖ label).
fn combine(ss_m: &[u8; 32], ss_x: &[u8; 32], ct_x: &[u8; 32], pk_x: &[u8; 32]) -> SharedSecret {
    let mut hash = Sha3_256::new();
    for part in [&ss_m[..], ss_x, ct_x, pk_x, LABEL] {
        sha3::Digest::update(&mut hash, part);
    }
    let mut digest = hash.finalize();
    let mut out = Zeroizing::new([0u8; SHARED_SECRET_LEN]);
    out.copy_from_slice(&digest);
    digest.as_mut_slice().zeroize();
    SharedSecret(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    #[test]
    fn small_order_list_is_exactly_the_points_that_zero_an_exchange() {
        let scalar = [0x5a; 32];
        for (i, u) in SMALL_ORDER.iter().enumerate() {
            for top in [0u8, 0x80] {
                let mut u = *u;
                u[31] |= top;
                assert_eq!(x25519_dalek::x25519(scalar, u), [0; 32], "entry {i}");
                assert!(is_small_order(&u));
            }
        }
        // A few ordinary points are not refused.
        let rng = SystemRandom::new();
        for _ in 0..8 {
            let sk = SecretKey::generate(&rng).unwrap();
            assert!(!is_small_order(&sk.public.x25519));
        }
        assert!(!is_small_order(&[9; 32]));
    }

    #[test]
    fn round_trip_and_encodings() {
        let rng = SystemRandom::new();
        let sk = SecretKey::generate(&rng).unwrap();
        let pk = PublicKey::from_bytes(sk.public_key().as_bytes()).unwrap();
        assert_eq!(&pk, sk.public_key());
        let (ct, ss) = pk.encapsulate(&rng).unwrap();
        let ct = Ciphertext::from_bytes(ct.as_bytes()).unwrap();
        assert_eq!(sk.decapsulate(&ct).unwrap(), ss);
        let again = SecretKey::from_bytes(sk.to_bytes().as_slice()).unwrap();
        assert!(again == sk);
        assert_eq!(again.decapsulate(&ct).unwrap(), ss);
    }

    #[test]
    fn ring_and_dalek_encapsulations_agree() {
        let sk = SecretKey::from_seed(&[3; 32]);
        let (ct, ss) = sk.public_key().encapsulate_derand(&[4; 64]).unwrap();
        assert_eq!(sk.decapsulate(&ct).unwrap(), ss);
    }

    #[test]
    fn low_order_ciphertext_is_refused() {
        let sk = SecretKey::from_seed(&[1; 32]);
        let (ct, _) = sk.public_key().encapsulate(&SystemRandom::new()).unwrap();
        for bad in SMALL_ORDER {
            let mut bytes = *ct.as_bytes();
            bytes[mlkem::CIPHERTEXT_LEN..].copy_from_slice(&bad);
            let ct = Ciphertext::from_bytes(&bytes).unwrap();
            assert_eq!(sk.decapsulate(&ct).unwrap_err(), HybridError::LowOrderPoint);
        }
    }

    #[test]
    fn public_key_checks() {
        let sk = SecretKey::from_seed(&[2; 32]);
        let good = *sk.public_key().as_bytes();
        for len in [0, PUBLIC_KEY_LEN - 1, PUBLIC_KEY_LEN + 1] {
            assert!(matches!(PublicKey::from_bytes(&vec![1; len]), Err(HybridError::Length { .. })));
        }
        let mut bad = good;
        bad[0] = 0xff;
        bad[1] = 0xff; // first coefficient 0xfff >= q
        assert_eq!(PublicKey::from_bytes(&bad).unwrap_err(), HybridError::InvalidPublicKey);
        for point in SMALL_ORDER {
            let mut bad = good;
            bad[mlkem::ENCAPSULATION_KEY_LEN..].copy_from_slice(&point);
            assert_eq!(PublicKey::from_bytes(&bad).unwrap_err(), HybridError::LowOrderPoint);
        }
    }

    #[test]
    fn debug_shows_no_secrets() {
        let sk = SecretKey::from_seed(&[0xab; 32]);
        let text = format!("{sk:?}");
        assert!(!text.contains("abab"), "{text}");
        let (_, ss) = sk.public_key().encapsulate_derand(&[5; 64]).unwrap();
        assert_eq!(format!("{ss:?}"), "SharedSecret(..)");
    }
}
