//! Sealed envelopes on arbitrary bytes, and the stream format under attack.
//!
//! The first byte picks a mode:
//! - even: the rest is an envelope (and a key ring, and a stream fed in pieces whose size
//!   comes from the second byte); parsing and opening never panic, and nothing opens
//!   (the key is fixed and the fuzzer cannot forge an AES-GCM tag).
//! - odd: the rest is a plaintext, sealed as a stream with a chunk size and a split size
//!   from the next bytes, then opened whole and piecewise (must round-trip), then damaged
//!   at a fuzzer-chosen place (a flipped bit, a cut, a duplicated chunk): opening the
//!   damaged envelope must fail, and the piecewise opener must never release more than a
//!   prefix of the original plaintext.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use postern::hybrid::envelope::{self, Header, StreamOpener, StreamSealer, PREFIX_LEN};
use postern::hybrid::xwing::SecretKey;
use postern::hybrid::{KeyId, KeyRing};

fn key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| SecretKey::from_seed(&[0x42; 32]))
}

fn open_in_pieces(sealed: &[u8], piece: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let Ok((header, enc)) = envelope::parse_prefix(sealed) else { return (out, false) };
    let Ok(mut opener) = StreamOpener::new(key(), &header, &enc, b"fuzz", b"") else { return (out, false) };
    for p in sealed.get(PREFIX_LEN..).unwrap_or_default().chunks(piece.max(1)) {
        if opener.push(p, &mut out).is_err() {
            return (out, false);
        }
    }
    let ok = opener.finish(&mut out).is_ok();
    (out, ok)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        let _ = Header::parse(rest);
        let _ = KeyRing::from_bytes(rest);
        assert!(envelope::open(key(), rest, b"fuzz", b"").is_err());
        let piece = rest.first().map_or(1, |&b| usize::from(b) + 1);
        let (released, ok) = open_in_pieces(rest, piece);
        assert!(!ok && released.is_empty());
        return;
    }
    let [chunk, split, at0, at1, damage, rest @ ..] = rest else { return };
    let chunk = u32::from(*chunk % 64) + 1;
    let split = usize::from(*split) + 1;
    let mut sealed = Vec::new();
    let mut sealer =
        StreamSealer::new_derand(key().public_key(), &[7; 64], KeyId(1), chunk, b"fuzz", b"", &mut sealed).unwrap();
    for piece in rest.chunks(split) {
        sealer.push(piece, &mut sealed).unwrap();
    }
    sealer.finish(&mut sealed).unwrap();
    assert_eq!(&*envelope::open(key(), &sealed, b"fuzz", b"").unwrap(), rest);
    let (whole, ok) = open_in_pieces(&sealed, split + 1);
    assert!(ok && whole == rest);

    let at = usize::from(u16::from_le_bytes([*at0, *at1])) % sealed.len();
    let mut bad = sealed.clone();
    match damage % 3 {
        0 => bad[at] ^= 1 << (damage / 3 % 8),
        1 => bad.truncate(at),
        _ => {
            // Duplicate the chunk that holds byte `at` (if it is in the body).
            let c = chunk as usize + 16;
            if at < PREFIX_LEN {
                bad[at] ^= 1;
            } else {
                let start = PREFIX_LEN + (at - PREFIX_LEN) / c * c;
                let copy = bad[start..(start + c).min(bad.len())].to_vec();
                bad.splice(start..start, copy);
            }
        }
    }
    assert!(envelope::open(key(), &bad, b"fuzz", b"").is_err(), "damaged envelope opened");
    let (released, ok) = open_in_pieces(&bad, split);
    assert!(!ok, "damaged stream finished");
    assert!(rest.starts_with(&released), "released plaintext is not a prefix of the original");
});
