//! X-Wing decoding and decapsulation of arbitrary bytes: `PublicKey::from_bytes`,
//! `Ciphertext::from_bytes`, `SecretKey::decapsulate` and HPKE `setup_receiver` never
//! panic; a public key that decodes re-encodes to the same bytes and can be encapsulated
//! to (with fixed randomness, `hybrid-hazmat`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use postern::hybrid::hpke;
use postern::hybrid::xwing::{Ciphertext, PublicKey, SecretKey, CIPHERTEXT_LEN, PUBLIC_KEY_LEN};

fn key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| SecretKey::from_seed(&[0x24; 32]))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(ct) = Ciphertext::from_bytes(data.get(..CIPHERTEXT_LEN).unwrap_or(data)) {
        let _ = key().decapsulate(&ct);
        let _ = hpke::setup_receiver(key(), &ct, b"");
    }
    let _ = Ciphertext::from_bytes(data);
    let _ = SecretKey::from_bytes(data);
    if let Ok(pk) = PublicKey::from_bytes(data.get(..PUBLIC_KEY_LEN).unwrap_or(data)) {
        assert_eq!(&pk.as_bytes()[..], &data[..PUBLIC_KEY_LEN]);
        let _ = pk.encapsulate_derand(&[1; 64]);
    }
});
