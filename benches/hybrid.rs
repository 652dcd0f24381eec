//! Hybrid KEM and sealing benches, side by side with the `x-wing` crate and the raw
//! primitives.
//!
//! - `hybrid_kem`: X-Wing key generation, encapsulation and decapsulation, for postern
//!   (ring's ephemeral X25519 on the sender, dalek's static X25519 and pre-expanded keys
//!   on the recipient) and the `x-wing` crate 0.1 (dalek on both sides; expands the seed
//!   on every decapsulation).
//! - `hybrid_primitives`: ML-KEM-768 from `ml-kem` (the one postern uses),
//!   `pqcrypto-mlkem` and `pqcrypto-kyber` (PQClean C, AVX2; bench-only), X25519 from
//!   ring (ephemeral key generation + agreement, what a sender does) and dalek (one
//!   static Diffie-Hellman, what a recipient does; a base-point multiplication).
//! - `hybrid_seal`: sealing 1 MiB as a streamed envelope (64 KiB chunks) and as a
//!   single-shot envelope, against ring's raw AES-256-GCM over the same 1 MiB.
//!
//! Run with `cargo bench --bench hybrid -- --warm-up-time 1 --measurement-time 3`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey};
use ring::rand::{SecureRandom as _, SystemRandom};

use postern::hybrid::envelope::{self, DEFAULT_CHUNK_SIZE, StreamSealer};
use postern::hybrid::xwing::{Ciphertext, SecretKey};
use postern::hybrid::{KeyId, hpke};

fn random<const N: usize>(rng: &SystemRandom) -> [u8; N] {
    let mut out = [0u8; N];
    rng.fill(&mut out).unwrap();
    out
}

fn kem(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let mut g = c.benchmark_group("hybrid_kem");

    // postern
    g.bench_function("postern/keygen", |b| b.iter(|| black_box(SecretKey::generate(&rng).unwrap())));
    let sk = SecretKey::generate(&rng).unwrap();
    let pk = sk.public_key().clone();
    g.bench_function("postern/encaps", |b| b.iter(|| black_box(pk.encapsulate(&rng).unwrap())));
    let (ct, _) = pk.encapsulate(&rng).unwrap();
    g.bench_function("postern/decaps", |b| b.iter(|| black_box(sk.decapsulate(black_box(&ct)).unwrap())));
    g.bench_function("postern/decaps from stored seed", |b| {
        let seed = sk.to_bytes();
        b.iter(|| black_box(SecretKey::from_seed(&seed).decapsulate(&ct).unwrap()))
    });

    // x-wing 0.1
    {
        use x_wing::{Decapsulate as _, TryKeyInit as _};
        g.bench_function("x-wing/keygen", |b| {
            b.iter(|| black_box(x_wing::DecapsulationKey::from(random::<32>(&rng))))
        });
        let seed = sk.to_bytes();
        let theirs = x_wing::DecapsulationKey::from(*seed);
        let their_pk = x_wing::EncapsulationKey::new(pk.as_bytes().as_slice().try_into().unwrap()).unwrap();
        g.bench_function("x-wing/encaps", |b| {
            b.iter(|| black_box(their_pk.encapsulate_deterministic(&random::<64>(&rng).into())))
        });
        let their_ct = x_wing::Ciphertext::try_from(&ct.as_bytes()[..]).unwrap();
        g.bench_function("x-wing/decaps", |b| b.iter(|| black_box(theirs.decapsulate(black_box(&their_ct)))));
    }
    g.finish();
}

fn primitives(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let mut g = c.benchmark_group("hybrid_primitives");

    // ml-kem 0.3 (RustCrypto, pure Rust): what postern uses.
    {
        use ml_kem::kem::Decapsulate as _;
        use ml_kem::{B32, DecapsulationKey768, Seed};
        g.bench_function("ml-kem/keygen", |b| {
            b.iter(|| black_box(DecapsulationKey768::from_seed(Seed::from(random::<64>(&rng)))))
        });
        let dk = DecapsulationKey768::from_seed(Seed::from(random::<64>(&rng)));
        let ek = dk.encapsulation_key().clone();
        g.bench_function("ml-kem/encaps", |b| {
            b.iter(|| black_box(ek.encapsulate_deterministic(&B32::from(random::<32>(&rng)))))
        });
        let (ct, _) = ek.encapsulate_deterministic(&B32::from(random::<32>(&rng)));
        g.bench_function("ml-kem/decaps", |b| b.iter(|| black_box(dk.decapsulate(black_box(&ct)))));
    }

    // pqcrypto-mlkem 0.1 (PQClean, final ML-KEM) and pqcrypto-kyber 0.8 (the draft).
    {
        use pqcrypto_mlkem::mlkem768;
        g.bench_function("pqcrypto-mlkem/keygen", |b| b.iter(|| black_box(mlkem768::keypair())));
        let (pk, sk) = mlkem768::keypair();
        g.bench_function("pqcrypto-mlkem/encaps", |b| b.iter(|| black_box(mlkem768::encapsulate(&pk))));
        let (_, ct) = mlkem768::encapsulate(&pk);
        g.bench_function("pqcrypto-mlkem/decaps", |b| b.iter(|| black_box(mlkem768::decapsulate(&ct, &sk))));
    }
    {
        use pqcrypto_kyber::kyber768;
        g.bench_function("pqcrypto-kyber/keygen", |b| b.iter(|| black_box(kyber768::keypair())));
        let (pk, sk) = kyber768::keypair();
        g.bench_function("pqcrypto-kyber/encaps", |b| b.iter(|| black_box(kyber768::encapsulate(&pk))));
        let (_, ct) = kyber768::encapsulate(&pk);
        g.bench_function("pqcrypto-kyber/decaps", |b| b.iter(|| black_box(kyber768::decapsulate(&ct, &sk))));
    }

    // X25519.
    let peer = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(random::<32>(&rng)));
    g.bench_function("ring X25519/ephemeral keygen+agree", |b| {
        b.iter(|| {
            let key = EphemeralPrivateKey::generate(&agreement::X25519, &rng).unwrap();
            let public = key.compute_public_key().unwrap();
            let peer = UnparsedPublicKey::new(&agreement::X25519, peer.as_bytes());
            black_box((public, agreement::agree_ephemeral(key, &peer, |s| s[0]).unwrap()))
        })
    });
    let secret = x25519_dalek::StaticSecret::from(random::<32>(&rng));
    g.bench_function("dalek X25519/static DH", |b| {
        b.iter(|| black_box(secret.diffie_hellman(black_box(&peer))))
    });
    g.bench_function("dalek X25519/public from secret", |b| {
        b.iter(|| black_box(x25519_dalek::PublicKey::from(black_box(&secret))))
    });
    g.finish();
}

fn seal(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let sk = SecretKey::generate(&rng).unwrap();
    let plain = vec![0x61u8; 1 << 20];
    let mut g = c.benchmark_group("hybrid_seal");
    g.throughput(Throughput::Bytes(plain.len() as u64));
    g.sample_size(30);

    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &random::<32>(&rng)).unwrap());
    g.bench_function("ring AES-256-GCM 1 MiB (copy + seal)", |b| {
        b.iter(|| {
            let mut buf = Vec::with_capacity(plain.len() + 16);
            buf.extend_from_slice(&plain);
            key.seal_in_place_append_tag(Nonce::assume_unique_for_key([0; 12]), Aad::empty(), &mut buf)
                .unwrap();
            black_box(buf)
        })
    });
    g.bench_function("postern stream envelope 1 MiB (64 KiB chunks)", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(plain.len() + 4096);
            let mut s =
                StreamSealer::new(&rng, sk.public_key(), KeyId(1), DEFAULT_CHUNK_SIZE, b"", b"", &mut out)
                    .unwrap();
            s.push(&plain, &mut out).unwrap();
            s.finish(&mut out).unwrap();
            black_box(out)
        })
    });
    // The per-message fixed cost (X-Wing encapsulation + HPKE key schedule), to separate
    // it from the data path in the 1 MiB figures.
    g.bench_function("postern stream envelope 0 bytes (fixed cost)", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(2048);
            let s =
                StreamSealer::new(&rng, sk.public_key(), KeyId(1), DEFAULT_CHUNK_SIZE, b"", b"", &mut out)
                    .unwrap();
            s.finish(&mut out).unwrap();
            black_box(out)
        })
    });
    g.bench_function("postern single-shot envelope 1 MiB", |b| {
        b.iter(|| black_box(envelope::seal(&rng, sk.public_key(), KeyId(1), b"", b"", &plain).unwrap()))
    });
    let sealed = envelope::seal(&rng, sk.public_key(), KeyId(1), b"", b"", &plain).unwrap();
    g.bench_function("postern open single-shot envelope 1 MiB", |b| {
        b.iter(|| black_box(envelope::open(&sk, &sealed, b"", b"").unwrap()))
    });
    g.finish();

    let mut g = c.benchmark_group("hybrid_hpke");
    let (enc, _) = hpke::seal(&rng, sk.public_key(), b"", b"", b"x").unwrap();
    g.bench_function("postern setup_receiver (decaps + key schedule)", |b| {
        b.iter_batched(
            || Ciphertext::from_bytes(enc.as_bytes()).unwrap(),
            |enc| black_box(hpke::setup_receiver(&sk, &enc, b"").unwrap()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, kem, primitives, seal);
criterion_main!(benches);
