//! The SASL exchange as the protocol sessions surface it (RFC 4954 for SMTP, RFC 5034
//! for POP3): mechanism names, base64 handled inside, `*` cancels.

use std::fmt;

use base64::Engine as _;
use zeroize::Zeroizing;

/// Authentication requested with `AUTH`.
#[derive(Debug)]
#[non_exhaustive]
pub struct AuthStart {
    /// The mechanism, upper-cased; always one of the configured mechanisms.
    pub mechanism: String,
    /// The initial response, decoded from base64 (`=` gives an empty response).
    pub initial_response: Option<SaslData>,
}

/// Decoded SASL data from the client (it may hold a password): zeroized on drop and
/// never printed by `Debug`.
pub struct SaslData(Zeroizing<Vec<u8>>);

impl SaslData {
    pub(crate) fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SaslData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SaslData({} bytes, redacted)", self.0.len())
    }
}

/// What a SASL response line from the client means.
pub(crate) enum SaslLine {
    /// `*`: the client cancelled.
    Cancel,
    /// Decoded response data.
    Data(SaslData),
    /// Not valid base64.
    Invalid,
}

/// Decodes one client response line (RFC 4954 §4, RFC 5034 §4): `*` cancels, `=` is
/// an empty response when `allow_equals` (initial responses only), else base64.
pub(crate) fn decode_line(line: &[u8], allow_equals: bool) -> SaslLine {
    match line {
        b"*" => SaslLine::Cancel,
        b"=" if allow_equals => SaslLine::Data(SaslData::new(Vec::new())),
        _ => match base64::engine::general_purpose::STANDARD.decode(line) {
            Ok(v) => SaslLine::Data(SaslData::new(v)),
            Err(_) => SaslLine::Invalid,
        },
    }
}

/// Encodes a server challenge for the wire.
pub(crate) fn encode(challenge: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(challenge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert!(matches!(decode_line(b"*", false), SaslLine::Cancel));
        assert!(matches!(decode_line(b"=", false), SaslLine::Invalid));
        let SaslLine::Data(d) = decode_line(b"=", true) else { panic!() };
        assert!(d.as_bytes().is_empty());
        let SaslLine::Data(d) = decode_line(b"AGFsaWNlAHNlY3JldA==", false) else { panic!() };
        assert_eq!(d.as_bytes(), b"\0alice\0secret");
        assert!(matches!(decode_line(b"!!", false), SaslLine::Invalid));
        assert_eq!(encode(b"\0alice\0secret"), "AGFsaWNlAHNlY3JldA==");
        assert_eq!(format!("{d:?}"), "SaslData(13 bytes, redacted)");
    }
}
