//! APOP (RFC 1939 §7): `MD5(timestamp + shared secret)`.

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

/// Checks an APOP digest in constant time: `digest` (hex, either case) must be the MD5 of
/// the session's greeting `timestamp` (angle brackets included) followed by `secret`.
///
/// APOP needs the plaintext secret on the server and MD5 is weak: prefer SCRAM. The
/// session refuses APOP outside TLS unless plaintext logins are allowed.
///
/// ```
/// use postern::pop3::apop_verify;
///
/// // The example of RFC 1939 §7.
/// let ts = "<1896.697170952@dbc.mtview.ca.us>";
/// assert!(apop_verify(ts, b"tanstaaf", "c4c9334bac560ecc979e58001b3e22fb"));
/// assert!(!apop_verify(ts, b"tanstaaF", "c4c9334bac560ecc979e58001b3e22fb"));
/// ```
#[must_use]
pub fn apop_verify(timestamp: &str, secret: &[u8], digest: &str) -> bool {
    let mut h = Md5::new();
    h.update(timestamp.as_bytes());
    h.update(secret);
    let expected = h.finalize();
    let mut given = [0u8; 16];
    if digest.len() != 32 {
        return false;
    }
    for (i, pair) in digest.as_bytes().chunks_exact(2).enumerate() {
        let (Some(hi), Some(lo)) = (pair.first().and_then(hex), pair.get(1).and_then(hex)) else {
            return false;
        };
        if let Some(b) = given.get_mut(i) {
            *b = hi << 4 | lo;
        }
    }
    expected.as_slice().ct_eq(&given).into()
}

fn hex(c: &u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1939_vector_and_malformed_digests() {
        let ts = "<1896.697170952@dbc.mtview.ca.us>";
        assert!(apop_verify(ts, b"tanstaaf", "C4C9334BAC560ECC979E58001B3E22FB"));
        assert!(!apop_verify(ts, b"tanstaaf", "c4c9334bac560ecc979e58001b3e22f"));
        assert!(!apop_verify(ts, b"tanstaaf", "g4c9334bac560ecc979e58001b3e22fb"));
        assert!(!apop_verify(ts, b"tanstaaf", ""));
        assert!(!apop_verify("<other@x>", b"tanstaaf", "c4c9334bac560ecc979e58001b3e22fb"));
    }
}
