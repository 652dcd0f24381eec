//! Message-data receivers for `DATA` (dot-stuffed, RFC 5321 §4.5.2) and `BDAT`
//! (counted chunks, RFC 3030).
//!
//! # The rules, designed against SMTP smuggling
//! - The end of `DATA` is only `CRLF . CRLF`, where the first `CRLF` may be the start of
//!   the body (an empty message is `.CRLF`). A bare `LF`, a bare `CR`, `NUL` or a run of
//!   `CR`s never ends a message, under any policy.
//! - Dot-unstuffing happens only at a line start: the first byte of the body, or a byte
//!   after `CRLF` (and, under [`BareLineEnding::Normalize`], after a normalised bare
//!   line ending, as Postfix does).
//! - [`BareLineEnding::Reject`]: a bare `LF` or bare `CR` is a violation; the message is
//!   doomed, output stops, and the receiver keeps scanning to the real end so that no
//!   byte of the message body ever reaches the command parser.
//! - [`BareLineEnding::Normalize`]: every bare `LF` and bare `CR` is written out as `CRLF`;
//!   the terminator must still be a real `CRLF . CRLF`.
//! - Lines longer than the text-line limit (RFC 5321 §4.5.3.1.6: 1000 octets including
//!   `CRLF`, not counting a transparency dot) are a violation under both policies.
//!
//! Message bytes are appended to a caller-supplied `Vec<u8>`; the receiver itself holds
//! only a few bytes of state, whatever the input.

use crate::line::BareLineEnding;

/// What a receiver found wrong with a message. All counts saturate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DataViolations {
    /// `LF` not preceded by `CR`.
    pub bare_lf: u64,
    /// `CR` not followed by `LF`.
    pub bare_cr: u64,
    /// Lines longer than the text-line limit.
    pub long_lines: u64,
}

impl DataViolations {
    /// `true` if nothing was found.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        *self == Self::default()
    }
}

/// Receives the body of a `DATA` command up to and including `CRLF . CRLF`.
///
/// ```
/// use postern::line::BareLineEnding;
/// use postern::smtp::data::DataReceiver;
///
/// let mut rx = DataReceiver::new(BareLineEnding::Reject, Some(1000));
/// let mut body = Vec::new();
/// let input = b"Subject: hi\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n";
/// let (used, done) = rx.ingest(input, &mut body);
/// assert!(done);
/// assert_eq!(&input[used..], b"QUIT\r\n");
/// assert_eq!(body, b"Subject: hi\r\n\r\n.leading dot\r\n");
/// assert!(rx.violations().is_clean());
/// ```
#[derive(Clone, Debug)]
pub struct DataReceiver {
    policy: BareLineEnding,
    max_line: Option<usize>,
    state: State,
    /// `true` at a line start (for dot-unstuffing).
    line_start: bool,
    /// `true` if the current line start came from a real `CRLF` (or the body start), so
    /// that a `.CRLF` here ends the message.
    real_line_start: bool,
    /// Octets of the current line so far, including its terminator once seen.
    line_len: usize,
    discard: bool,
    received: u64,
    written: u64,
    violations: DataViolations,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Inside a line.
    Text,
    /// After a `CR` that is not yet known to be followed by `LF`.
    Cr,
    /// After a dot at a line start.
    Dot,
    /// After a dot at a real line start followed by `CR`.
    DotCr,
    /// The terminator was seen.
    Done,
}

impl DataReceiver {
    /// Creates a receiver for one message.
    ///
    /// `max_text_line` is the longest allowed line in octets including `CRLF` (`None`
    /// for no limit; RFC 5321 says 1000).
    #[must_use]
    pub fn new(policy: BareLineEnding, max_text_line: Option<usize>) -> Self {
        Self {
            policy,
            max_line: max_text_line,
            state: State::Text,
            line_start: true,
            real_line_start: true,
            line_len: 0,
            discard: false,
            received: 0,
            written: 0,
            violations: DataViolations::default(),
        }
    }

    /// Stops appending message bytes to the output (the message is already refused, for
    /// example because it is too large); the end is still found exactly.
    pub fn set_discard(&mut self) {
        self.discard = true;
    }

    /// `true` once output has stopped, by [`set_discard`](Self::set_discard) or because
    /// a violation doomed the message.
    #[must_use]
    pub fn is_discarding(&self) -> bool {
        self.discard
    }

    /// `true` once the terminator has been seen.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Octets received so far, terminator included.
    #[must_use]
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Octets of message content produced so far (the message size), whether or not
    /// they were written out.
    #[must_use]
    pub fn message_size(&self) -> u64 {
        self.written
    }

    /// What was wrong with the message so far.
    #[must_use]
    pub fn violations(&self) -> DataViolations {
        self.violations
    }

    /// Scans `input`, appending message content to `out`.
    ///
    /// Returns how many bytes were consumed and whether the end of data was reached. When
    /// it was, the bytes after `consumed` belong to the next command.
    pub fn ingest(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        if self.state == State::Done {
            return (0, true);
        }
        for (i, &b) in input.iter().enumerate() {
            self.step(b, out);
            if self.state == State::Done {
                let used = i + 1;
                self.received = self.received.saturating_add(used as u64);
                return (used, true);
            }
        }
        self.received = self.received.saturating_add(input.len() as u64);
        (input.len(), false)
    }

    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        self.written = self.written.saturating_add(bytes.len() as u64);
        if !self.discard {
            out.extend_from_slice(bytes);
        }
    }

    fn violation(&mut self, kind: fn(&mut DataViolations) -> &mut u64) {
        let n = kind(&mut self.violations);
        *n = n.saturating_add(1);
        if self.policy == BareLineEnding::Reject {
            self.discard = true;
        }
    }

    /// Ends the current line (`real` if by a real `CRLF`), after its terminator.
    fn end_line(&mut self, real: bool) {
        if let Some(max) = self.max_line {
            if self.line_len > max {
                self.violations.long_lines = self.violations.long_lines.saturating_add(1);
                self.discard = true;
            }
        }
        self.line_len = 0;
        self.line_start = true;
        self.real_line_start = real;
    }

    /// A bare line ending: a violation; under `Normalize` it becomes `CRLF`.
    fn bare_ending(&mut self, out: &mut Vec<u8>, lf: bool) {
        if lf {
            self.violation(|v| &mut v.bare_lf);
        } else {
            self.violation(|v| &mut v.bare_cr);
        }
        if self.policy == BareLineEnding::Normalize {
            self.emit(out, b"\r\n");
            self.line_len = self.line_len.saturating_add(2);
            self.end_line(false);
        } else {
            self.line_len = self.line_len.saturating_add(1);
            self.line_start = false;
        }
    }

    fn step(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.state {
            State::Done => {}
            State::Cr => {
                if b == b'\n' {
                    self.emit(out, b"\r\n");
                    self.line_len = self.line_len.saturating_add(2);
                    self.end_line(true);
                    self.state = State::Text;
                } else {
                    // The CR was bare.
                    self.bare_ending(out, false);
                    self.state = State::Text;
                    self.step(b, out);
                }
            }
            State::Dot => {
                if b == b'\r' && self.real_line_start {
                    self.state = State::DotCr;
                } else if b == b'\r' || b == b'\n' {
                    // A line holding only a dot (not a terminator): keep the dot.
                    self.emit(out, b".");
                    self.line_len = self.line_len.saturating_add(1);
                    self.state = State::Text;
                    self.step(b, out);
                } else {
                    // A stuffed dot: drop it and keep the rest of the line.
                    self.state = State::Text;
                    self.step(b, out);
                }
            }
            State::DotCr => {
                if b == b'\n' {
                    self.state = State::Done;
                } else {
                    // ".\r" then something else: the dot is content, the CR is bare.
                    self.emit(out, b".");
                    self.line_len = self.line_len.saturating_add(1);
                    self.state = State::Cr;
                    self.step(b, out);
                }
            }
            State::Text => {
                let at_start = self.line_start;
                self.line_start = false;
                match b {
                    b'.' if at_start => {
                        self.line_start = false;
                        self.state = State::Dot;
                    }
                    b'\r' => self.state = State::Cr,
                    b'\n' => self.bare_ending(out, true),
                    _ => {
                        self.emit(out, &[b]);
                        self.line_len = self.line_len.saturating_add(1);
                    }
                }
            }
        }
    }
}

/// Receives the chunks of a `BDAT` transaction (RFC 3030): exactly `size` octets per
/// chunk, no dot-stuffing, with the same line-ending and line-length checks as
/// [`DataReceiver`] carried across chunk boundaries.
///
/// ```
/// use postern::line::BareLineEnding;
/// use postern::smtp::data::BdatReceiver;
///
/// let mut rx = BdatReceiver::new(BareLineEnding::Reject, Some(1000));
/// let mut body = Vec::new();
/// rx.start_chunk(9);
/// let (used, chunk_done) = rx.ingest(b"Hi\r\n.\r\n\r\nQUIT", &mut body);
/// assert_eq!((used, chunk_done), (9, true));
/// assert_eq!(body, b"Hi\r\n.\r\n\r\n");
/// ```
#[derive(Clone, Debug)]
pub struct BdatReceiver {
    policy: BareLineEnding,
    max_line: Option<usize>,
    remaining: u64,
    after_cr: bool,
    line_len: usize,
    discard: bool,
    written: u64,
    violations: DataViolations,
}

impl BdatReceiver {
    /// Creates a receiver for one message.
    #[must_use]
    pub fn new(policy: BareLineEnding, max_text_line: Option<usize>) -> Self {
        Self {
            policy,
            max_line: max_text_line,
            remaining: 0,
            after_cr: false,
            line_len: 0,
            discard: false,
            written: 0,
            violations: DataViolations::default(),
        }
    }

    /// Expects a new chunk of `size` octets.
    pub fn start_chunk(&mut self, size: u64) {
        self.remaining = size;
    }

    /// Octets of the current chunk still expected.
    #[must_use]
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Stops appending content to the output; chunks are still counted exactly.
    pub fn set_discard(&mut self) {
        self.discard = true;
    }

    /// `true` once output has stopped.
    #[must_use]
    pub fn is_discarding(&self) -> bool {
        self.discard
    }

    /// Octets of message content produced so far.
    #[must_use]
    pub fn message_size(&self) -> u64 {
        self.written
    }

    /// What was wrong with the message so far. A `CR` ending the last chunk is only
    /// counted by [`finish`](Self::finish).
    #[must_use]
    pub fn violations(&self) -> DataViolations {
        self.violations
    }

    /// Ends the message (after the `LAST` chunk): a trailing bare `CR` or an overlong
    /// last line is counted.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.after_cr {
            self.after_cr = false;
            self.bare(out, false);
        }
        self.check_line();
    }

    /// Consumes up to the rest of the current chunk from `input`, appending content to
    /// `out`. Returns the bytes consumed and whether the chunk is complete.
    pub fn ingest(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        let take = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(input.len());
        let chunk = input.get(..take).unwrap_or_default();
        for &b in chunk {
            self.step(b, out);
        }
        self.remaining -= take as u64;
        (take, self.remaining == 0)
    }

    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        self.written = self.written.saturating_add(bytes.len() as u64);
        if !self.discard {
            out.extend_from_slice(bytes);
        }
    }

    fn check_line(&mut self) {
        if let Some(max) = self.max_line {
            if self.line_len > max {
                self.violations.long_lines = self.violations.long_lines.saturating_add(1);
                self.discard = true;
            }
        }
        self.line_len = 0;
    }

    fn bare(&mut self, out: &mut Vec<u8>, lf: bool) {
        let n = if lf { &mut self.violations.bare_lf } else { &mut self.violations.bare_cr };
        *n = n.saturating_add(1);
        match self.policy {
            BareLineEnding::Normalize => {
                self.emit(out, b"\r\n");
                self.line_len = self.line_len.saturating_add(2);
                self.check_line();
            }
            _ => {
                self.discard = true;
                self.line_len = self.line_len.saturating_add(1);
            }
        }
    }

    fn step(&mut self, b: u8, out: &mut Vec<u8>) {
        if self.after_cr {
            self.after_cr = false;
            if b == b'\n' {
                self.emit(out, b"\r\n");
                self.line_len = self.line_len.saturating_add(2);
                self.check_line();
                return;
            }
            self.bare(out, false);
        }
        match b {
            b'\r' => self.after_cr = true,
            b'\n' => self.bare(out, true),
            _ => {
                self.emit(out, &[b]);
                self.line_len = self.line_len.saturating_add(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(policy: BareLineEnding, input: &[u8]) -> (Option<usize>, Vec<u8>, DataViolations) {
        let mut rx = DataReceiver::new(policy, Some(1000));
        let mut out = Vec::new();
        let (used, done) = rx.ingest(input, &mut out);
        (done.then_some(used), out, rx.violations())
    }

    #[test]
    fn terminators() {
        use BareLineEnding::*;
        // (input, policy, end offset if the message ends, body when accepted)
        let cases: &[(&[u8], BareLineEnding, Option<usize>, &[u8])] = &[
            (b".\r\n", Reject, Some(3), b""),
            (b"a\r\n.\r\n", Reject, Some(6), b"a\r\n"),
            (b"..\r\n.\r\n", Reject, Some(7), b".\r\n"),
            (b"a\n.\n", Reject, None, b""),
            (b"a\r\n.\n", Reject, None, b""),
            (b"a\n.\r\n", Reject, None, b""),
            (b"a\r.\r", Reject, None, b""),
            (b"a\r\n.\r\r\n", Reject, None, b""),
            (b"a\n.\r\nX\r\n.\r\n", Normalize, Some(11), b"a\r\n.\r\nX\r\n"),
            (b"a\r\n.\nb\r\n.\r\n", Normalize, Some(11), b"a\r\n.\r\nb\r\n"),
            (b"a\n..b\r\n.\r\n", Normalize, Some(10), b"a\r\n.b\r\n"),
            (b"a\r\0.\r\n.\r\n", Normalize, Some(9), b"a\r\n\0.\r\n"),
        ];
        for (input, policy, end, body) in cases {
            let (got_end, out, v) = run(*policy, input);
            assert_eq!(got_end, *end, "{:?}", String::from_utf8_lossy(input));
            if *policy == Normalize || v.is_clean() {
                assert_eq!(out, *body, "{:?}", String::from_utf8_lossy(input));
            }
        }
    }

    #[test]
    fn reject_dooms_and_swallows_to_real_end() {
        let input = b"a\n.\nMAIL FROM:<x@y>\r\n\r\n.\r\nQUIT\r\n";
        let (end, _, v) = run(BareLineEnding::Reject, input);
        assert_eq!(v.bare_lf, 2);
        assert_eq!(&input[end.unwrap()..], b"QUIT\r\n");
    }

    #[test]
    fn long_lines() {
        let mut rx = DataReceiver::new(BareLineEnding::Reject, Some(10));
        let mut out = Vec::new();
        // 8 octets + CRLF = 10: fine. A stuffed dot does not count.
        let (_, done) = rx.ingest(b"12345678\r\n..2345678\r\n123456789\r\n.\r\n", &mut out);
        assert!(done);
        assert_eq!(rx.violations().long_lines, 1);
    }

    #[test]
    fn bdat_crosses_chunks() {
        let mut rx = BdatReceiver::new(BareLineEnding::Reject, None);
        let mut out = Vec::new();
        rx.start_chunk(2);
        assert_eq!(rx.ingest(b"a\r", &mut out), (2, true));
        rx.start_chunk(2);
        assert_eq!(rx.ingest(b"\nb", &mut out), (2, true));
        rx.finish(&mut out);
        assert!(rx.violations().is_clean());
        assert_eq!(out, b"a\r\nb");
    }
}
