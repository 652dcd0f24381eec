//! HPKE (RFC 9180) base mode with KEM X-Wing (0x647A), KDF HKDF-SHA256 (0x0001) and
//! AEAD AES-256-GCM (0x0002), on ring's HMAC, HKDF and AES-GCM.
//!
//! - [`seal`] / [`open`]: the single-shot API (RFC 9180 §6.1): one message, one
//!   encapsulation.
//! - [`setup_sender`] / [`setup_receiver`]: an encryption context for a sequence of
//!   messages under one encapsulation (RFC 9180 §5.2), each with the nonce
//!   `base_nonce XOR seq`. The [streaming envelope](super::envelope) builds on it.
//!
//! The X-Wing shared secret is HPKE's `shared_secret` as it is (X-Wing is a KEM in its
//! own right; no `ExtractAndExpand` as in DHKEM), as in draft-ietf-hpke-pq and the `hpke`
//! crate, which the tests check against byte for byte.
//!
//! ```
//! use postern::hybrid::{hpke, xwing::SecretKey};
//! let rng = ring::rand::SystemRandom::new();
//! let sk = SecretKey::generate(&rng)?;
//! let (enc, ct) = hpke::seal(&rng, sk.public_key(), b"info", b"aad", b"hello")?;
//! assert_eq!(&*hpke::open(&sk, &enc, b"info", b"aad", &ct)?, b"hello");
//! assert!(hpke::open(&sk, &enc, b"info", b"other aad", &ct).is_err());
//! # Ok::<(), postern::hybrid::HybridError>(())
//! ```

use core::fmt;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf::{self, HKDF_SHA256};
use ring::hmac;
use ring::rand::SecureRandom;
use zeroize::{Zeroize as _, Zeroizing};

use super::HybridError;
use super::xwing::{Ciphertext, PublicKey, SecretKey, SharedSecret};

/// The HPKE KEM identifier of X-Wing (draft-connolly-cfrg-xwing-kem, draft-ietf-hpke-pq).
pub const KEM_ID: u16 = 0x647a;
/// The HPKE KDF identifier of HKDF-SHA256.
pub const KDF_ID: u16 = 0x0001;
/// The HPKE AEAD identifier of AES-256-GCM.
pub const AEAD_ID: u16 = 0x0002;
/// Bytes of an AES-256-GCM tag, added to every sealed message.
pub const TAG_LEN: usize = 16;

/// RFC 9180 mode_base.
const MODE_BASE: u8 = 0x00;
/// Nk, Nn, Nh for AES-256-GCM and HKDF-SHA256.
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const HASH_LEN: usize = 32;

/// `"HPKE" ‖ kem_id ‖ kdf_id ‖ aead_id`.
const SUITE_ID: [u8; 10] = {
    let [k0, k1] = KEM_ID.to_be_bytes();
    let [d0, d1] = KDF_ID.to_be_bytes();
    let [a0, a1] = AEAD_ID.to_be_bytes();
    [b'H', b'P', b'K', b'E', k0, k1, d0, d1, a0, a1]
};

/// `LabeledExtract(salt, label, ikm)`: HKDF-Extract (HMAC-SHA256 keyed with the salt)
/// over `"HPKE-v1" ‖ suite_id ‖ label ‖ ikm`.
fn labeled_extract(salt: &[u8], label: &[u8], ikm: &[u8]) -> Zeroizing<[u8; HASH_LEN]> {
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, salt));
    ctx.update(b"HPKE-v1");
    ctx.update(&SUITE_ID);
    ctx.update(label);
    ctx.update(ikm);
    let tag = ctx.sign();
    let mut out = Zeroizing::new([0u8; HASH_LEN]);
    out.copy_from_slice(tag.as_ref());
    out
}

/// An output length for ring's HKDF-Expand.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// `LabeledExpand(prk, label, info, L)` into `out` (L = `out.len()`).
fn labeled_expand(
    prk: &[u8; HASH_LEN],
    label: &[u8],
    info: &[u8],
    out: &mut [u8],
) -> Result<(), HybridError> {
    let prk = hkdf::Prk::new_less_safe(HKDF_SHA256, prk);
    let length = u16::try_from(out.len()).map_err(|_| HybridError::Random)?.to_be_bytes();
    let parts: [&[u8]; 5] = [&length, b"HPKE-v1", &SUITE_ID, label, info];
    prk.expand(&parts, Len(out.len())).and_then(|okm| okm.fill(out)).map_err(|_| HybridError::Random)
}

/// The AEAD key and base nonce for `shared_secret` and `info` (RFC 9180 §5.1, base mode:
/// empty `psk` and `psk_id`).
fn key_schedule(shared_secret: &SharedSecret, info: &[u8]) -> Result<Keys, HybridError> {
    let psk_id_hash = labeled_extract(b"", b"psk_id_hash", b"");
    let info_hash = labeled_extract(b"", b"info_hash", info);
    let mut context = [0u8; 1 + 2 * HASH_LEN];
    context[0] = MODE_BASE;
    context[1..=HASH_LEN].copy_from_slice(psk_id_hash.as_slice());
    context[1 + HASH_LEN..].copy_from_slice(info_hash.as_slice());
    let secret = labeled_extract(shared_secret.as_bytes(), b"secret", b"");
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    labeled_expand(&secret, b"key", &context, key.as_mut_slice())?;
    let mut base_nonce = [0u8; NONCE_LEN];
    labeled_expand(&secret, b"base_nonce", &context, &mut base_nonce)?;
    let unbound = UnboundKey::new(&AES_256_GCM, key.as_slice()).map_err(|_| HybridError::Random)?;
    Ok(Keys { key: LessSafeKey::new(unbound), base_nonce, seq: 0 })
}

/// The AEAD state shared by both directions.
struct Keys {
    /// ring's key schedule; ring does not zeroize it (see the module docs).
    key: LessSafeKey,
    base_nonce: [u8; NONCE_LEN],
    seq: u64,
}

impl Keys {
    /// `ComputeNonce(seq)` and the increment; refuses to wrap (RFC 9180 §5.2).
    fn next_nonce(&mut self) -> Result<Nonce, HybridError> {
        let mut nonce = self.base_nonce;
        for (n, s) in nonce.iter_mut().skip(NONCE_LEN - 8).zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        self.seq = self.seq.checked_add(1).ok_or(HybridError::MessageLimit)?;
        Ok(Nonce::assume_unique_for_key(nonce))
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.base_nonce.zeroize();
    }
}

/// The sender's context: seals messages in order.
pub struct SenderContext(Keys);

impl SenderContext {
    /// Seals `plaintext` with `aad` as the next message: `plaintext ‖ tag` in place.
    pub fn seal_in_place(&mut self, aad: &[u8], in_out: &mut Vec<u8>) -> Result<(), HybridError> {
        let nonce = self.0.next_nonce()?;
        self.0
            .key
            .seal_in_place_append_tag(nonce, Aad::from(aad), in_out)
            .map_err(|_| HybridError::MessageLimit)
    }

    /// Seals `in_out` in place as the next message and returns its tag.
    pub(crate) fn seal_detached(
        &mut self,
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], HybridError> {
        let nonce = self.0.next_nonce()?;
        let tag = self
            .0
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(aad), in_out)
            .map_err(|_| HybridError::MessageLimit)?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Seals `plaintext` with `aad` as the next message.
    pub fn seal(&mut self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, HybridError> {
        let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN);
        out.extend_from_slice(plaintext);
        self.seal_in_place(aad, &mut out)?;
        Ok(out)
    }

    /// How many messages this context has sealed.
    pub fn sequence(&self) -> u64 {
        self.0.seq
    }
}

/// The recipient's context: opens messages in the order they were sealed.
pub struct ReceiverContext(Keys);

impl ReceiverContext {
    /// Opens the next message in place: returns the plaintext part of `in_out` if the
    /// tag is valid. On failure the sequence number does not advance and nothing of the
    /// plaintext may be used (ring leaves `in_out` in an unspecified state).
    pub fn open_in_place<'a>(
        &mut self,
        aad: &[u8],
        in_out: &'a mut [u8],
    ) -> Result<&'a mut [u8], HybridError> {
        let seq = self.0.seq;
        let nonce = self.0.next_nonce()?;
        match self.0.key.open_in_place(nonce, Aad::from(aad), in_out) {
            Ok(plain) => Ok(plain),
            Err(_) => {
                self.0.seq = seq;
                Err(HybridError::Open)
            }
        }
    }

    /// Opens the next message.
    pub fn open(&mut self, aad: &[u8], ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, HybridError> {
        let mut buf = Zeroizing::new(ciphertext.to_vec());
        let len = self.open_in_place(aad, &mut buf)?.len();
        buf.truncate(len);
        Ok(buf)
    }

    /// How many messages this context has opened.
    pub fn sequence(&self) -> u64 {
        self.0.seq
    }

    /// Checks the tag of the next message without keeping its plaintext or advancing:
    /// used to tell a truncated stream from a corrupted one.
    pub(crate) fn would_open(&self, aad: &[u8], ciphertext: &[u8]) -> bool {
        let mut probe = Keys { key: self.0.key.clone(), base_nonce: self.0.base_nonce, seq: self.0.seq };
        let Ok(nonce) = probe.next_nonce() else { return false };
        let mut buf = Zeroizing::new(ciphertext.to_vec());
        probe.key.open_in_place(nonce, Aad::from(aad), &mut buf).is_ok()
    }
}

impl fmt::Debug for SenderContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderContext").field("seq", &self.0.seq).finish_non_exhaustive()
    }
}

impl fmt::Debug for ReceiverContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiverContext").field("seq", &self.0.seq).finish_non_exhaustive()
    }
}

/// `SetupBaseS(pkR, info)`: encapsulates to `recipient` and returns the encapsulated key
/// (to send) and the sender's context.
pub fn setup_sender(
    rng: &dyn SecureRandom,
    recipient: &PublicKey,
    info: &[u8],
) -> Result<(Ciphertext, SenderContext), HybridError> {
    let (enc, shared) = recipient.encapsulate(rng)?;
    Ok((enc, SenderContext(key_schedule(&shared, info)?)))
}

/// [`setup_sender`] with the encapsulation randomness given: for known-answer tests only.
#[cfg(any(feature = "hybrid-hazmat", test))]
pub fn setup_sender_derand(
    recipient: &PublicKey,
    eseed: &[u8; super::xwing::ENCAPSULATION_SEED_LEN],
    info: &[u8],
) -> Result<(Ciphertext, SenderContext), HybridError> {
    let (enc, shared) = recipient.encapsulate_derand(eseed)?;
    Ok((enc, SenderContext(key_schedule(&shared, info)?)))
}

/// `SetupBaseR(enc, skR, info)`: the recipient's context for an encapsulated key.
pub fn setup_receiver(sk: &SecretKey, enc: &Ciphertext, info: &[u8]) -> Result<ReceiverContext, HybridError> {
    let shared = sk.decapsulate(enc)?;
    Ok(ReceiverContext(key_schedule(&shared, info)?))
}

/// Single-shot `SealBase`: the encapsulated key and `plaintext ‖ tag`.
pub fn seal(
    rng: &dyn SecureRandom,
    recipient: &PublicKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<(Ciphertext, Vec<u8>), HybridError> {
    let (enc, mut ctx) = setup_sender(rng, recipient, info)?;
    Ok((enc, ctx.seal(aad, plaintext)?))
}

/// Single-shot `OpenBase`. A wrong key, `info`, `aad`, or any changed byte of `enc` or
/// `ciphertext` gives [`HybridError::Open`] (or, for a small-order X25519 part of `enc`,
/// [`HybridError::LowOrderPoint`]).
pub fn open(
    sk: &SecretKey,
    enc: &Ciphertext,
    info: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, HybridError> {
    setup_receiver(sk, enc, info)?.open(aad, ciphertext)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// RFC 9180 publishes no vectors for X-Wing; its A.1.1 (mode_base, DHKEM(X25519),
    /// HKDF-SHA256, AES-128-GCM) checks the labelled HKDF steps of the key schedule with
    /// the same KDF. (The whole X-Wing suite is checked against the `hpke` crate in
    /// `tests/hybrid.rs`.)
    #[test]
    fn key_schedule_matches_rfc9180_a1_for_hkdf_sha256() {
        // The suite id differs (it names the KEM and AEAD), so recompute with A.1's.
        fn extract(suite: &[u8], salt: &[u8], label: &[u8], ikm: &[u8]) -> [u8; 32] {
            let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, salt));
            for part in [b"HPKE-v1".as_slice(), suite, label, ikm] {
                ctx.update(part);
            }
            ctx.sign().as_ref().try_into().unwrap()
        }
        fn expand(suite: &[u8], prk: &[u8; 32], label: &[u8], info: &[u8], len: usize) -> Vec<u8> {
            let prk = hkdf::Prk::new_less_safe(HKDF_SHA256, prk);
            let l = (len as u16).to_be_bytes();
            let parts: [&[u8]; 5] = [&l, b"HPKE-v1", suite, label, info];
            let mut out = vec![0; len];
            prk.expand(&parts, Len(len)).unwrap().fill(&mut out).unwrap();
            out
        }
        let suite = [b'H', b'P', b'K', b'E', 0x00, 0x20, 0x00, 0x01, 0x00, 0x01];
        let shared = hex("fe0e18c9f024ce43799ae393c7e8fe8fce9d218875e8227b0187c04e7d2ea1fc");
        let info = hex("4f6465206f6e2061204772656369616e2055726e");
        let psk_id_hash = extract(&suite, b"", b"psk_id_hash", b"");
        let info_hash = extract(&suite, b"", b"info_hash", &info);
        let mut context = vec![0u8];
        context.extend_from_slice(&psk_id_hash);
        context.extend_from_slice(&info_hash);
        assert_eq!(
            context,
            hex(
                "00725611c9d98c07c03f60095cd32d400d8347d45ed67097bbad50fc56da742d07cb6cffde367bb0565ba28bb02c90744a20f5ef37f30523526106f637abb05449"
            )
        );
        let secret = extract(&suite, &shared, b"secret", b"");
        assert_eq!(expand(&suite, &secret, b"key", &context, 16), hex("4531685d41d65f03dc48f6b8302c05b0"));
        assert_eq!(expand(&suite, &secret, b"base_nonce", &context, 12), hex("56d890e5accaaf011cff4b7d"));
    }

    #[test]
    fn nonces_follow_the_sequence() {
        let sk = SecretKey::from_seed(&[1; 32]);
        let (enc, mut tx) = setup_sender_derand(sk.public_key(), &[2; 64], b"i").unwrap();
        let mut rx = setup_receiver(&sk, &enc, b"i").unwrap();
        let a = tx.seal(b"", b"first").unwrap();
        let b = tx.seal(b"", b"second").unwrap();
        assert_eq!(tx.sequence(), 2);
        // Out of order fails and does not advance.
        assert_eq!(rx.open(b"", &b).unwrap_err(), HybridError::Open);
        assert_eq!(rx.sequence(), 0);
        assert_eq!(&*rx.open(b"", &a).unwrap(), b"first");
        assert!(rx.would_open(b"", &b));
        assert_eq!(&*rx.open(b"", &b).unwrap(), b"second");
    }

    #[test]
    fn any_flipped_byte_fails() {
        let sk = SecretKey::from_seed(&[7; 32]);
        let (enc, mut tx) = setup_sender_derand(sk.public_key(), &[8; 64], b"info").unwrap();
        let ct = tx.seal(b"aad", b"attack at dawn").unwrap();
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 0x01;
            assert_eq!(open(&sk, &enc, b"info", b"aad", &bad).unwrap_err(), HybridError::Open, "byte {i}");
        }
        for i in [0, 500, 1087, 1088, 1119] {
            let mut bad = *enc.as_bytes();
            bad[i] ^= 0x01;
            let bad = Ciphertext::from_bytes(&bad).unwrap();
            assert!(open(&sk, &bad, b"info", b"aad", &ct).is_err(), "enc byte {i}");
        }
        assert_eq!(open(&sk, &enc, b"inf0", b"aad", &ct).unwrap_err(), HybridError::Open);
        assert_eq!(open(&sk, &enc, b"info", b"aad", &ct[..5]).unwrap_err(), HybridError::Open);
        assert_eq!(&*open(&sk, &enc, b"info", b"aad", &ct).unwrap(), b"attack at dawn");
    }
}
