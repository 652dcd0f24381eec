//! SASL and OTP benches: what one login costs the server.
//!
//! - `sasl/plain_pbkdf2_{4096,100000}`: a whole PLAIN exchange (the server runs PBKDF2).
//! - `sasl/plain_unknown_user_100000`: the same for an unknown user (the dummy hash):
//!   should match the line above.
//! - `sasl/scram_sha256_server`: a whole SCRAM-SHA-256 exchange on the server side
//!   (client-first, client-final, the empty ack); the client's PBKDF2 is done once
//!   outside the loop, since the server never runs it.
//! - `otp/totp_verify_window1`: a TOTP check over the default ±1 step window.
//!
//! Run with `cargo bench --bench sasl -- --warm-up-time 1 --measurement-time 3`;
//! benches/README.md has the ratios.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use criterion::{Criterion, criterion_group, criterion_main};
use postern::otp::{Algorithm, OtpSecret, ReplayGuard, Totp};
use postern::sasl::{Channel, Config, CredentialStore, Exchange, Mechanism, PasswordHash, ScramSecret, Step};
use ring::hmac;

struct Store {
    hash: PasswordHash,
    scram: ScramSecret,
}

impl CredentialStore for Store {
    fn password(&self, user: &str) -> Option<PasswordHash> {
        (user == "alice").then(|| self.hash.clone())
    }
    fn scram_sha256(&self, user: &str) -> Option<ScramSecret> {
        (user == "alice").then(|| self.scram.clone())
    }
}

/// The client-final message for a fixed nonce pair (the server nonce is fixed with
/// `Exchange::with_nonce`, so one proof serves every iteration).
fn client_final(server_first: &str) -> String {
    let salt = STANDARD.decode(server_first.split(",s=").nth(1).unwrap().split(',').next().unwrap()).unwrap();
    let nonce = server_first.strip_prefix("r=").unwrap().split(',').next().unwrap();
    let mut salted = [0_u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        4096.try_into().unwrap(),
        &salt,
        b"secret",
        &mut salted,
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
    let client_key = hmac::sign(&key, b"Client Key");
    let stored = ring::digest::digest(&ring::digest::SHA256, client_key.as_ref());
    let without_proof = format!("c=biws,r={nonce}");
    let auth = format!("n=alice,r=cnonce,{server_first},{without_proof}");
    let sig = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, stored.as_ref()), auth.as_bytes());
    let proof: Vec<u8> = client_key.as_ref().iter().zip(sig.as_ref()).map(|(a, b)| a ^ b).collect();
    format!("{without_proof},p={}", STANDARD.encode(proof))
}

fn benches(c: &mut Criterion) {
    let rng = ring::rand::SystemRandom::new();
    let mut g = c.benchmark_group("sasl");
    for iterations in [4096_u32, 100_000] {
        let store = Store {
            hash: PasswordHash::with_salt(b"secret", b"0123456789abcdef", iterations).unwrap(),
            scram: ScramSecret::with_salt(b"secret", b"0123456789abcdef", 4096).unwrap(),
        };
        let config = Arc::new(Config::new(&rng).unwrap().with_dummy_iterations(iterations).unwrap());
        g.bench_function(format!("plain_pbkdf2_{iterations}"), |b| {
            b.iter(|| {
                let mut x =
                    Exchange::with_nonce(Mechanism::Plain, Arc::clone(&config), Channel::default(), "n")
                        .unwrap();
                assert!(matches!(x.start(Some(black_box(b"\0alice\0secret")), &store), Step::Success(_)));
            });
        });
        if iterations == 100_000 {
            g.bench_function("plain_unknown_user_100000", |b| {
                b.iter(|| {
                    let mut x =
                        Exchange::with_nonce(Mechanism::Plain, Arc::clone(&config), Channel::default(), "n")
                            .unwrap();
                    assert!(matches!(
                        x.start(Some(black_box(b"\0nobody\0secret")), &store),
                        Step::Failure(_)
                    ));
                });
            });
        }
        if iterations == 4096 {
            let mut x = Exchange::with_nonce(
                Mechanism::ScramSha256,
                Arc::clone(&config),
                Channel::default(),
                "snonce",
            )
            .unwrap();
            let Step::Challenge(first) = x.start(Some(b"n,,n=alice,r=cnonce"), &store) else { panic!() };
            let fin = client_final(std::str::from_utf8(&first).unwrap());
            g.bench_function("scram_sha256_server", |b| {
                b.iter(|| {
                    let mut x = Exchange::with_nonce(
                        Mechanism::ScramSha256,
                        Arc::clone(&config),
                        Channel::default(),
                        "snonce",
                    )
                    .unwrap();
                    let Step::Challenge(_) = x.start(Some(b"n,,n=alice,r=cnonce"), &store) else { panic!() };
                    let Step::Challenge(_) = x.respond(black_box(fin.as_bytes()), &store) else { panic!() };
                    assert!(matches!(x.respond(b"", &store), Step::Success(_)));
                });
            });
        }
    }
    g.finish();

    let totp = Totp::new(OtpSecret::new(b"12345678901234567890".to_vec()), Algorithm::Sha1, 6).unwrap();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let code = totp.code_at(now);
    c.bench_function("otp/totp_verify_window1", |b| {
        b.iter(|| {
            let mut guard = ReplayGuard::default();
            assert!(totp.verify(black_box(&code), now, &mut guard).is_some());
        });
    });
}

criterion_group!(sasl, benches);
criterion_main!(sasl);
