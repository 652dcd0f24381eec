//! HOTP and TOTP through the public API: RFC 4226 Appendix D, RFC 6238 Appendix B (all
//! three hashes), the replay guard, the drift window, and enrolment URIs.
// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::{Duration, SystemTime};

use postern::otp::{Algorithm, Hotp, OtpSecret, ReplayGuard, Totp, split_code};
use proptest::prelude::*;

const SEED_SHA1: &[u8] = b"12345678901234567890";
const SEED_SHA256: &[u8] = b"12345678901234567890123456789012";
const SEED_SHA512: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn rfc4226_appendix_d() {
    let hotp = Hotp::new(OtpSecret::new(SEED_SHA1.to_vec()), Algorithm::Sha1, 6).unwrap();
    let want =
        ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"];
    for (counter, code) in want.iter().enumerate() {
        assert_eq!(hotp.code(counter as u64).as_str(), *code, "counter {counter}");
        assert!(hotp.check(counter as u64, code));
        assert!(!hotp.check(counter as u64 + 1, code));
    }
}

#[test]
fn rfc6238_appendix_b() {
    let table: [(u64, &str, &str, &str); 6] = [
        (59, "94287082", "46119246", "90693936"),
        (1_111_111_109, "07081804", "68084774", "25091201"),
        (1_111_111_111, "14050471", "67062674", "99943326"),
        (1_234_567_890, "89005924", "91819424", "93441116"),
        (2_000_000_000, "69279037", "90698825", "38618901"),
        (20_000_000_000, "65353130", "77737706", "47863826"),
    ];
    let sha1 = Totp::new(OtpSecret::new(SEED_SHA1.to_vec()), Algorithm::Sha1, 8).unwrap();
    let sha256 = Totp::new(OtpSecret::new(SEED_SHA256.to_vec()), Algorithm::Sha256, 8).unwrap();
    let sha512 = Totp::new(OtpSecret::new(SEED_SHA512.to_vec()), Algorithm::Sha512, 8).unwrap();
    for (t, c1, c256, c512) in table {
        assert_eq!(sha1.code_at(at(t)).as_str(), c1, "SHA1 T={t}");
        assert_eq!(sha256.code_at(at(t)).as_str(), c256, "SHA256 T={t}");
        assert_eq!(sha512.code_at(at(t)).as_str(), c512, "SHA512 T={t}");
        for (totp, code) in [(&sha1, c1), (&sha256, c256), (&sha512, c512)] {
            let mut guard = ReplayGuard::default();
            assert_eq!(totp.verify(code, at(t), &mut guard), Some(t / 30));
            assert_eq!(totp.verify(code, at(t), &mut guard), None, "replayed");
        }
    }
}

#[test]
fn digits_step_and_window() {
    let totp = Totp::new(OtpSecret::new(SEED_SHA1.to_vec()), Algorithm::Sha1, 7)
        .unwrap()
        .with_step(60)
        .unwrap()
        .with_window(2)
        .with_t0(100);
    let code = totp.code_at(at(100 + 60 * 50));
    assert_eq!(code.len(), 7);
    assert_eq!(totp.step_at(at(100 + 60 * 50)), 50);
    // Two steps either way are accepted; three are not.
    let mut g = ReplayGuard::default();
    assert_eq!(totp.verify(&code, at(100 + 60 * 53), &mut g), None);
    assert_eq!(totp.verify(&code, at(100 + 60 * 52), &mut g), Some(50));
    // A later code is still fine after an earlier one, an earlier one is not.
    let later = totp.code_at(at(100 + 60 * 51));
    assert_eq!(totp.verify(&later, at(100 + 60 * 51), &mut g), Some(51));
    assert_eq!(totp.verify(&code, at(100 + 60 * 51), &mut g), None);
    assert_eq!(g.last(), Some(51));
    assert_eq!(totp.step_at(at(5)), 0, "before T0");
}

#[test]
fn enrolment_uri() {
    let totp =
        Totp::new(OtpSecret::new(SEED_SHA256.to_vec()), Algorithm::Sha256, 8).unwrap().with_step(60).unwrap();
    let uri = totp.otpauth_uri("ACME Co", "john.doe+x@email.com");
    assert_eq!(
        uri.as_str(),
        "otpauth://totp/ACME%20Co:john.doe%2Bx%40email.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA\
         &issuer=ACME%20Co&algorithm=SHA256&digits=8&period=60"
    );
    let back = OtpSecret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA").unwrap();
    assert_eq!(back.to_base32().as_str(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA");
    let fresh = OtpSecret::generate(&ring::rand::SystemRandom::new()).unwrap();
    assert_eq!(fresh.to_base32().len(), 32);
}

#[test]
fn split_password_and_code() {
    assert_eq!(split_code(b"pw123456", 6), Some((&b"pw"[..], "123456")));
    assert_eq!(split_code(b"123456", 6), Some((&b""[..], "123456")));
    assert_eq!(split_code(b"12345", 6), None);
    assert_eq!(split_code(b"pw12345a", 6), None);
}

proptest! {
    /// Any string is either the right code or refused; nothing panics.
    #[test]
    fn arbitrary_codes(code in ".{0,12}", t in 0_u64..4_000_000_000) {
        let totp = Totp::new(OtpSecret::new(SEED_SHA1.to_vec()), Algorithm::Sha1, 6).unwrap();
        let mut g = ReplayGuard::default();
        let right = (0..3).any(|d| totp.code_at(at((t + d * 30).saturating_sub(30))).as_str() == code);
        prop_assert_eq!(totp.verify(&code, at(t), &mut g).is_some(), right);
    }
}
