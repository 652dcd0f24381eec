//! The hybrid KEM and sealing through the public API: X-Wing known answers (the draft's
//! vectors as shipped by the `x-wing` crate), interoperability with the `x-wing` and
//! `hpke` crates in both directions, malformed inputs, and open(seal(m)) == m.
#![cfg(feature = "hybrid-hazmat")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use hpke::{Deserializable as _, Serializable as _};
use proptest::prelude::*;
use ring::rand::{SecureRandom as _, SystemRandom};

use postern::hybrid::envelope::{self, PREFIX_LEN, StreamSealer};
use postern::hybrid::hpke as phpke;
use postern::hybrid::xwing::{self, Ciphertext, PublicKey, SecretKey};
use postern::hybrid::{HybridError, KeyId, KeyRing};

/// draft-connolly-cfrg-xwing-kem Appendix C, as in the `x-wing` crate's
/// `tests/test-vectors.json` (copied verbatim into `tests/data/`).
const VECTORS: &str = include_str!("data/xwing-test-vectors.json");

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2));
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// The test vectors: a JSON array of flat objects with hex string values. Parsed by hand
/// (no JSON dependency for three objects).
fn vectors() -> Vec<Vec<(String, Vec<u8>)>> {
    VECTORS
        .split('{')
        .skip(1)
        .map(|object| {
            let object = object.split('}').next().unwrap();
            object
                .split(',')
                .filter(|f| f.contains(':'))
                .map(|field| {
                    let (k, v) = field.split_once(':').unwrap();
                    (k.trim().trim_matches('"').to_owned(), hex(v.trim().trim_matches('"')))
                })
                .collect()
        })
        .collect()
}

fn field<'a>(v: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &v.iter().find(|(k, _)| k == name).unwrap_or_else(|| panic!("no {name}")).1
}

#[test]
fn xwing_test_vectors() {
    let all = vectors();
    assert_eq!(all.len(), 3);
    for v in &all {
        let seed: [u8; 32] = field(v, "seed").try_into().unwrap();
        let sk = SecretKey::from_seed(&seed);
        assert_eq!(sk.to_bytes().as_slice(), field(v, "sk"));
        assert_eq!(&sk.public_key().as_bytes()[..], field(v, "pk"));
        let pk = PublicKey::from_bytes(field(v, "pk")).unwrap();
        let eseed: [u8; 64] = field(v, "eseed").try_into().unwrap();
        let (ct, ss) = pk.encapsulate_derand(&eseed).unwrap();
        assert_eq!(&ct.as_bytes()[..], field(v, "ct"));
        assert_eq!(&ss.as_bytes()[..], field(v, "ss"));
        let ct = Ciphertext::from_bytes(field(v, "ct")).unwrap();
        assert_eq!(&sk.decapsulate(&ct).unwrap().as_bytes()[..], field(v, "ss"));
    }
}

#[test]
fn interop_with_the_x_wing_crate_both_directions() {
    use x_wing::{Decapsulate as _, KeyExport as _, TryKeyInit as _};
    let rng = SystemRandom::new();
    for _ in 0..8 {
        let mut seed = [0u8; 32];
        rng.fill(&mut seed).unwrap();
        let ours = SecretKey::from_seed(&seed);
        let theirs = x_wing::DecapsulationKey::from(seed);
        let their_pk =
            x_wing::EncapsulationKey::new(ours.public_key().as_bytes().as_slice().try_into().unwrap())
                .unwrap();
        assert_eq!(&their_pk.to_bytes()[..], &ours.public_key().as_bytes()[..]);

        // postern encapsulates (ring's X25519), x-wing decapsulates.
        let (ct, ss) = ours.public_key().encapsulate(&rng).unwrap();
        let their_ct = x_wing::Ciphertext::try_from(&ct.as_bytes()[..]).unwrap();
        assert_eq!(&theirs.decapsulate(&their_ct)[..], &ss.as_bytes()[..]);

        // x-wing encapsulates, postern decapsulates.
        let mut eseed = [0u8; 64];
        rng.fill(&mut eseed).unwrap();
        let (their_ct, their_ss) = their_pk.encapsulate_deterministic(&eseed.into());
        let ct = Ciphertext::from_bytes(&their_ct[..]).unwrap();
        assert_eq!(&ours.decapsulate(&ct).unwrap().as_bytes()[..], &their_ss[..]);
    }
}

/// ring's `SystemRandom` as the `hpke` crate's RNG.
struct Rng(SystemRandom);

impl hpke::rand_core::TryRng for Rng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        hpke::rand_core::utils::next_word_via_fill(self)
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        hpke::rand_core::utils::next_word_via_fill(self)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill(dst).unwrap();
        Ok(())
    }
}

impl hpke::rand_core::TryCryptoRng for Rng {}

type Suite = (hpke::aead::AesGcm256, hpke::kdf::HkdfSha256, hpke::kem::XWing);
type TheirSk = <hpke::kem::XWing as hpke::Kem>::PrivateKey;
type TheirPk = <hpke::kem::XWing as hpke::Kem>::PublicKey;
type TheirEnc = <hpke::kem::XWing as hpke::Kem>::EncappedKey;

#[test]
fn hpke_interop_with_the_hpke_crate_both_directions() {
    let _: Option<Suite> = None;
    let rng = SystemRandom::new();
    let mut their_rng = Rng(SystemRandom::new());
    for len in [0usize, 1, 15, 16, 17, 1000] {
        let sk = SecretKey::generate(&rng).unwrap();
        let their_sk = TheirSk::from_bytes(sk.to_bytes().as_slice()).unwrap();
        let their_pk = TheirPk::from_bytes(sk.public_key().as_bytes()).unwrap();
        let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();

        // postern seals, hpke opens.
        let (enc, ct) = phpke::seal(&rng, sk.public_key(), b"info", b"aad", &plain).unwrap();
        let their_enc = TheirEnc::from_bytes(enc.as_bytes()).unwrap();
        let opened =
            hpke::single_shot_open::<hpke::aead::AesGcm256, hpke::kdf::HkdfSha256, hpke::kem::XWing>(
                &hpke::OpModeR::Base,
                &their_sk,
                &their_enc,
                b"info",
                &ct,
                b"aad",
            )
            .unwrap();
        assert_eq!(opened, plain);

        // hpke seals, postern opens.
        let (their_enc, ct) = hpke::single_shot_seal_with_rng::<
            hpke::aead::AesGcm256,
            hpke::kdf::HkdfSha256,
            hpke::kem::XWing,
        >(
            &hpke::OpModeS::Base, &their_pk, b"info", &plain, b"aad", &mut their_rng
        )
        .unwrap();
        let enc = Ciphertext::from_bytes(&their_enc.to_bytes()).unwrap();
        assert_eq!(&*phpke::open(&sk, &enc, b"info", b"aad", &ct).unwrap(), &plain[..]);
        assert_eq!(phpke::open(&sk, &enc, b"info", b"aaD", &ct).unwrap_err(), HybridError::Open);
    }
}

#[test]
fn hpke_contexts_interoperate_over_several_messages() {
    let rng = SystemRandom::new();
    let sk = SecretKey::generate(&rng).unwrap();
    let their_sk = TheirSk::from_bytes(sk.to_bytes().as_slice()).unwrap();
    let (enc, mut tx) = phpke::setup_sender(&rng, sk.public_key(), b"ctx").unwrap();
    let their_enc = TheirEnc::from_bytes(enc.as_bytes()).unwrap();
    let mut rx = hpke::setup_receiver::<hpke::aead::AesGcm256, hpke::kdf::HkdfSha256, hpke::kem::XWing>(
        &hpke::OpModeR::Base,
        &their_sk,
        &their_enc,
        b"ctx",
    )
    .unwrap();
    for i in 0..5u8 {
        let ct = tx.seal(&[i], &[i; 33]).unwrap();
        assert_eq!(rx.open(&ct, &[i]).unwrap(), vec![i; 33]);
    }
}

#[test]
fn malformed_inputs_give_clear_errors() {
    let rng = SystemRandom::new();
    let sk = SecretKey::generate(&rng).unwrap();
    assert!(matches!(
        SecretKey::from_bytes(&[0; 31]),
        Err(HybridError::Length { expected: 32, got: 31, .. })
    ));
    assert!(matches!(PublicKey::from_bytes(&[0; 1215]), Err(HybridError::Length { expected: 1216, .. })));
    assert!(matches!(Ciphertext::from_bytes(&[0; 1121]), Err(HybridError::Length { expected: 1120, .. })));
    let mut bad_pk = *sk.public_key().as_bytes();
    bad_pk[1150] = 0xff;
    bad_pk[1151] = 0xff;
    assert_eq!(PublicKey::from_bytes(&bad_pk).unwrap_err(), HybridError::InvalidPublicKey);

    // Envelopes: every single flipped bit of the ciphertext or tag is caught.
    let ring = KeyRing::generate(&rng, SystemTime::UNIX_EPOCH).unwrap();
    let sealed = ring.seal(&rng, b"", b"", b"sixteen bytes!!!").unwrap();
    for i in PREFIX_LEN..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x80;
        assert_eq!(ring.open(&bad, b"", b"").unwrap_err(), HybridError::Open, "byte {i}");
    }
    for len in [0, 3, 19, 20, PREFIX_LEN - 1] {
        assert_eq!(ring.open(&sealed[..len], b"", b"").unwrap_err(), HybridError::Truncated, "len {len}");
    }
    assert_eq!(ring.open(&sealed[..PREFIX_LEN + 15], b"", b"").unwrap_err(), HybridError::Open);
    assert_eq!(ring.open(b"not an envelope at all", b"", b"").unwrap_err(), HybridError::BadMagic);

    // Wrong key id: sealed to key 2 of another ring.
    let mut other = KeyRing::generate(&rng, SystemTime::UNIX_EPOCH).unwrap();
    other.rotate(&rng, SystemTime::UNIX_EPOCH).unwrap();
    let foreign = other.seal(&rng, b"", b"", b"x").unwrap();
    assert_eq!(ring.open(&foreign, b"", b"").unwrap_err(), HybridError::UnknownKeyId(KeyId(2)));
    // Same id, different key: authentication fails.
    let foreign =
        KeyRing::generate(&rng, SystemTime::UNIX_EPOCH).unwrap().seal(&rng, b"", b"", b"x").unwrap();
    assert_eq!(ring.open(&foreign, b"", b"").unwrap_err(), HybridError::Open);
    // A key id rewritten in the header is caught too (the header is bound into HPKE's info).
    let mut relabelled = sealed.clone();
    relabelled[15] = 2;
    let mut rotated = KeyRing::from_bytes(&ring.to_bytes()).unwrap();
    rotated.rotate(&rng, SystemTime::UNIX_EPOCH).unwrap();
    assert_eq!(rotated.open(&relabelled, b"", b"").unwrap_err(), HybridError::Open);
    assert_eq!(&*rotated.open(&sealed, b"", b"").unwrap(), b"sixteen bytes!!!");
}

#[test]
fn streams_through_a_key_ring_with_rotation() {
    let rng = SystemRandom::new();
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let mut ring = KeyRing::generate(&rng, t0).unwrap();
    let plain = vec![0x5au8; 300_000];
    let seal = |ring: &KeyRing| {
        let mut out = Vec::new();
        let mut s = ring.stream_sealer(&rng, envelope::DEFAULT_CHUNK_SIZE, b"alice", b"", &mut out).unwrap();
        for piece in plain.chunks(7777) {
            s.push(piece, &mut out).unwrap();
        }
        s.finish(&mut out).unwrap();
        out
    };
    let old = seal(&ring);
    ring.rotate(&rng, t0 + Duration::from_secs(60)).unwrap();
    let new = seal(&ring);
    for sealed in [&old, &new] {
        let mut opener = ring.stream_opener(&sealed[..PREFIX_LEN], b"alice", b"").unwrap();
        let mut out = Vec::new();
        for piece in sealed[PREFIX_LEN..].chunks(4096) {
            opener.push(piece, &mut out).unwrap();
        }
        opener.finish(&mut out).unwrap();
        assert_eq!(out, plain);
    }
    assert_eq!(ring.retire_created_before(t0 + Duration::from_secs(1)), 1);
    assert_eq!(ring.open(&old, b"alice", b"").unwrap_err(), HybridError::UnknownKeyId(KeyId(1)));
    assert_eq!(&*ring.open(&new, b"alice", b"").unwrap(), &plain[..]);
}

#[test]
fn error_converts_into_the_crate_error() {
    let e: postern::Error = HybridError::Truncated.into();
    assert_eq!(e.to_string(), "sealed data is truncated");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn open_seal_round_trips(
        plain in proptest::collection::vec(any::<u8>(), 0..3000),
        chunk in 1u32..600,
        split in 1usize..800,
        aad in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let sk = SecretKey::from_seed(&[0x11; 32]);
        let eseed = [0x22; xwing::ENCAPSULATION_SEED_LEN];
        // Single-shot.
        let (enc, ct) = {
            let (enc, mut tx) = phpke::setup_sender_derand(sk.public_key(), &eseed, b"p").unwrap();
            (enc, tx.seal(&aad, &plain).unwrap())
        };
        prop_assert_eq!(&*phpke::open(&sk, &enc, b"p", &aad, &ct).unwrap(), &plain[..]);
        // Streamed, pushed in pieces of `split` bytes, opened in pieces of `split + 3`.
        let mut sealed = Vec::new();
        let mut s = StreamSealer::new_derand(sk.public_key(), &eseed, KeyId(9), chunk, b"p", &aad, &mut sealed).unwrap();
        for piece in plain.chunks(split) {
            s.push(piece, &mut sealed).unwrap();
        }
        s.finish(&mut sealed).unwrap();
        // Full chunks, and a final one that may be full; an empty stream has one empty chunk.
        let chunks = plain.len().div_ceil(chunk as usize).max(1);
        prop_assert_eq!(sealed.len(), PREFIX_LEN + plain.len() + 16 * chunks);
        prop_assert_eq!(&*envelope::open(&sk, &sealed, b"p", &aad).unwrap(), &plain[..]);
        let (header, enc) = envelope::parse_prefix(&sealed).unwrap();
        let mut opener = envelope::StreamOpener::new(&sk, &header, &enc, b"p", &aad).unwrap();
        let mut out = Vec::new();
        for piece in sealed[PREFIX_LEN..].chunks(split + 3) {
            opener.push(piece, &mut out).unwrap();
        }
        opener.finish(&mut out).unwrap();
        prop_assert_eq!(out, plain);
    }

    #[test]
    fn arbitrary_envelopes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
        let sk = SecretKey::from_seed(&[0x33; 32]);
        prop_assert!(envelope::open(&sk, &bytes, b"", b"").is_err());
        let _ = envelope::Header::parse(&bytes);
        let _ = KeyRing::from_bytes(&bytes);
        if let Ok(ct) = Ciphertext::from_bytes(bytes.get(..1120).unwrap_or(&bytes)) {
            let _ = sk.decapsulate(&ct);
        }
    }
}
