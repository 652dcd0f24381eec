//! CRLF line framing with a hard length cap, shared by the SMTP and POP3 sessions.
//!
//! Text protocols such as SMTP (RFC 5321 §2.3.8) and POP3 (RFC 1939 §3) end every
//! command line with `CRLF`. Attacks live in the places where implementations disagree
//! about what a line ending is: a bare `LF` or a bare `CR` that one hop treats as the end
//! of a line and the next does not is the root of SMTP smuggling. [`LineFramer`] makes
//! that decision explicit ([`BareLineEnding`]) and never buffers more than its cap:
//! an overlong line is consumed and discarded, then reported once when its end arrives.
//!
//! The framer is sans-IO and allocation-free: it looks at a slice the caller owns and
//! says how many bytes it used.
//!
//! ```
//! use postern::line::{BareLineEnding, Framed, LineError, LineFramer};
//!
//! let mut framer = LineFramer::new(16, BareLineEnding::Reject);
//!
//! // A complete line: the terminator is consumed but not part of the line.
//! assert_eq!(framer.decode(b"NOOP\r\nQU"), (6, Framed::Line(&b"NOOP"[..])));
//! // An incomplete line: nothing is consumed, call again with more bytes.
//! assert_eq!(framer.decode(b"QU"), (0, Framed::Partial));
//! // A bare LF is refused (it never becomes a line the parser sees).
//! assert_eq!(framer.decode(b"QUIT\n"), (5, Framed::Error(LineError::BareLf)));
//! // An overlong line is swallowed (never buffered) and reported once it ends.
//! let (used, framed) = framer.decode(b"AAAAAAAAAAAAAAAAAAAAAAAA");
//! assert_eq!((used, framed), (24, Framed::Partial));
//! assert_eq!(framer.decode(b"AAAA\r\n"), (6, Framed::Error(LineError::TooLong)));
//! ```

/// What to do with a line that ends in a bare `LF` or contains a bare `CR`.
///
/// The same policy drives the SMTP DATA receiver, where it decides between refusing a
/// message and normalising it. In no mode does a bare line ending end a message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BareLineEnding {
    /// Refuse the line (default). A bare `LF` or `CR` is a protocol error.
    #[default]
    Reject,
    /// Treat a bare `LF` as if the peer had sent `CRLF` (Postfix's
    /// `smtpd_forbid_bare_newline = normalize`). A bare `CR` inside a command line is
    /// still an error; in message data it is normalised to `CRLF` as well.
    Normalize,
}

/// Why a line was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// The line was longer than the framer's cap. The whole line, up to and including its
    /// terminator, was consumed and discarded.
    #[error("line too long")]
    TooLong,
    /// The line ended in `LF` without a preceding `CR` (under [`BareLineEnding::Reject`]).
    #[error("bare LF line ending")]
    BareLf,
    /// The line contained a `CR` that is not followed by `LF`.
    #[error("bare CR in line")]
    BareCr,
}

/// The outcome of one [`LineFramer::decode`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framed<'a> {
    /// No complete line yet; feed more bytes (the consumed count says what was used,
    /// which is non-zero only while an overlong line is being discarded).
    Partial,
    /// One complete line, without its terminator.
    Line(&'a [u8]),
    /// A line was refused; its bytes, terminator included, were consumed.
    Error(LineError),
}

/// A stateful, allocation-free CRLF line splitter with a hard length cap.
///
/// The cap counts the terminator, as RFC 5321 §4.5.3.1 does ("512 octets including the
/// CRLF"): with a cap of 512 the longest accepted line has 510 octets of content.
#[derive(Clone, Debug)]
pub struct LineFramer {
    max_line: usize,
    bare: BareLineEnding,
    /// `true` while the rest of an overlong line is being thrown away.
    discarding: bool,
}

impl LineFramer {
    /// Creates a framer that accepts lines of at most `max_line` octets including `CRLF`.
    ///
    /// A `max_line` below 3 is raised to 3 (one octet plus `CRLF`).
    #[must_use]
    pub fn new(max_line: usize, bare: BareLineEnding) -> Self {
        Self { max_line: max_line.max(3), bare, discarding: false }
    }

    /// The cap in octets, terminator included.
    #[must_use]
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Changes the cap (for example when a session switches to a SASL response line).
    pub fn set_max_line(&mut self, max_line: usize) {
        self.max_line = max_line.max(3);
    }

    /// The bare line-ending policy.
    #[must_use]
    pub fn policy(&self) -> BareLineEnding {
        self.bare
    }

    /// `true` while an overlong line is being discarded.
    #[must_use]
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// Forgets any partially discarded line (used when a session changes mode, for
    /// example after STARTTLS).
    pub fn reset(&mut self) {
        self.discarding = false;
    }

    /// Looks for the next line at the start of `input`.
    ///
    /// Returns how many bytes of `input` were consumed and what was found. The caller
    /// drops the consumed bytes and calls again with the rest; a [`Framed::Partial`] with a
    /// consumed count of 0 means "keep these bytes and append more".
    ///
    /// Whatever `input` holds, the framer never asks the caller to keep more than
    /// `max_line` bytes.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> (usize, Framed<'a>) {
        let Some(lf) = memchr::memchr(b'\n', input) else {
            if self.discarding || input.len() >= self.max_line {
                // Overlong (or continuing to be): throw it away, never buffer it.
                self.discarding = true;
                return (input.len(), Framed::Partial);
            }
            return (0, Framed::Partial);
        };
        let consumed = lf + 1;
        if self.discarding {
            self.discarding = false;
            return (consumed, Framed::Error(LineError::TooLong));
        }
        // `lf < input.len()` so both slices are in bounds.
        let before_lf = input.get(..lf).unwrap_or_default();
        let (content, has_cr) = match before_lf.split_last() {
            Some((b'\r', rest)) => (rest, true),
            _ => (before_lf, false),
        };
        if consumed > self.max_line {
            return (consumed, Framed::Error(LineError::TooLong));
        }
        if memchr::memchr(b'\r', content).is_some() {
            return (consumed, Framed::Error(LineError::BareCr));
        }
        if !has_cr && self.bare == BareLineEnding::Reject {
            return (consumed, Framed::Error(LineError::BareLf));
        }
        (consumed, Framed::Line(content))
    }
}

/// Drops the first `n` bytes of a session's input buffer, wiping them first: consumed
/// input may hold a password (POP3 `PASS`) or a SASL response, which must not linger in
/// the buffer's spare capacity after it was handed over in a zeroizing type.
#[cfg(any(feature = "smtp", feature = "pop3"))]
pub(crate) fn consume_wiping(buf: &mut Vec<u8>, n: usize) {
    let n = wipe_prefix(buf, n);
    buf.drain(..n);
}

/// Zeroes the first `n` bytes (at most all of them); returns how many.
#[cfg(any(feature = "smtp", feature = "pop3"))]
fn wipe_prefix(buf: &mut [u8], n: usize) -> usize {
    let n = n.min(buf.len());
    zeroize::Zeroize::zeroize(buf.get_mut(..n).unwrap_or_default());
    n
}

/// Empties a session's input buffer, wiping its whole capacity.
#[cfg(any(feature = "smtp", feature = "pop3"))]
pub(crate) fn wipe(buf: &mut Vec<u8>) {
    zeroize::Zeroize::zeroize(buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(framer: &mut LineFramer, mut input: &[u8]) -> Vec<Result<Vec<u8>, LineError>> {
        let mut out = Vec::new();
        loop {
            let (used, framed) = framer.decode(input);
            match framed {
                Framed::Partial => {
                    input = &input[used..];
                    if used == 0 || input.is_empty() {
                        return out;
                    }
                }
                Framed::Line(l) => out.push(Ok(l.to_vec())),
                Framed::Error(e) => out.push(Err(e)),
            }
            if !matches!(framed, Framed::Partial) {
                input = &input[used..];
            }
        }
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn table() {
        use LineError::*;
        let cases: &[(&[u8], BareLineEnding, &[Result<&[u8], LineError>])] = &[
            (b"A\r\n", BareLineEnding::Reject, &[Ok(b"A")]),
            (b"\r\n", BareLineEnding::Reject, &[Ok(b"")]),
            (b"A\n", BareLineEnding::Reject, &[Err(BareLf)]),
            (b"A\n", BareLineEnding::Normalize, &[Ok(b"A")]),
            (b"A\rB\r\n", BareLineEnding::Reject, &[Err(BareCr)]),
            (b"A\rB\r\n", BareLineEnding::Normalize, &[Err(BareCr)]),
            (b"A\r\r\n", BareLineEnding::Reject, &[Err(BareCr)]),
            (b"12345678\r\n", BareLineEnding::Reject, &[Ok(b"12345678")]),
            (b"123456789\r\n", BareLineEnding::Reject, &[Err(TooLong)]),
            (b"1234567890123\r\nOK\r\n", BareLineEnding::Reject, &[Err(TooLong), Ok(b"OK")]),
            (b"A\r\nB\r\n", BareLineEnding::Reject, &[Ok(b"A"), Ok(b"B")]),
            (b"A\nB\r\n", BareLineEnding::Reject, &[Err(BareLf), Ok(b"B")]),
        ];
        for (input, policy, want) in cases {
            let mut f = LineFramer::new(10, *policy);
            let got = all(&mut f, input);
            let want: Vec<_> = want.iter().map(|r| r.map(<[u8]>::to_vec)).collect();
            assert_eq!(got, want, "input {:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn consumed_input_is_wiped() {
        let mut buf = b"PASS secret\r\nNOOP".to_vec();
        assert_eq!(wipe_prefix(&mut buf, 13), 13);
        assert_eq!(buf, b"\0\0\0\0\0\0\0\0\0\0\0\0\0NOOP");
        assert_eq!(wipe_prefix(&mut buf, 100), 17);
        assert!(buf.iter().all(|&b| b == 0));
        let mut buf = b"PASS secret\r\nNOOP".to_vec();
        consume_wiping(&mut buf, 13);
        assert_eq!(buf, b"NOOP");
        consume_wiping(&mut buf, 100);
        assert!(buf.is_empty());
        let mut buf = b"PASS secret".to_vec();
        wipe(&mut buf);
        assert!(buf.is_empty());
    }

    #[test]
    fn overlong_is_never_buffered() {
        let mut f = LineFramer::new(8, BareLineEnding::Reject);
        assert_eq!(f.decode(b"1234567"), (0, Framed::Partial));
        assert_eq!(f.decode(b"12345678"), (8, Framed::Partial));
        assert!(f.is_discarding());
        assert_eq!(f.decode(b"xx"), (2, Framed::Partial));
        assert_eq!(f.decode(b"x\r\nNOOP\r\n"), (3, Framed::Error(LineError::TooLong)));
        assert_eq!(f.decode(b"NOOP\r\n"), (6, Framed::Line(b"NOOP")));
    }

    proptest::proptest! {
        #[test]
        fn split_anywhere_gives_same_lines(
            input in proptest::collection::vec(
                proptest::sample::select(vec![b'a', b'\r', b'\n', b' ', b'.']), 0..200),
            split in 0usize..200,
        ) {
            let split = split.min(input.len());
            let mut whole = LineFramer::new(12, BareLineEnding::Reject);
            let expected = all(&mut whole, &input);
            // Feed in two parts through a caller-side buffer, as a session does.
            let mut f = LineFramer::new(12, BareLineEnding::Reject);
            let mut buf: Vec<u8> = Vec::new();
            let mut got = Vec::new();
            for part in [&input[..split], &input[split..]] {
                buf.extend_from_slice(part);
                loop {
                    let (used, framed) = f.decode(&buf);
                    match framed {
                        Framed::Line(l) => got.push(Ok(l.to_vec())),
                        Framed::Error(e) => got.push(Err(e)),
                        Framed::Partial => { buf.drain(..used); break; }
                    }
                    buf.drain(..used);
                }
                proptest::prop_assert!(buf.len() < 12);
            }
            proptest::prop_assert_eq!(got, expected);
        }
    }
}
