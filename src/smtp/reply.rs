//! SMTP replies: a three-digit code, an optional enhanced status code, and text.

use std::borrow::Cow;
use std::fmt;

/// An RFC 3463 enhanced mail system status code such as `5.1.1`.
///
/// Sent in front of the reply text when the session advertises ENHANCEDSTATUSCODES
/// (RFC 2034), which it always does: on every reply but the greeting and the EHLO reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnhancedStatus {
    class: u8,
    subject: u16,
    detail: u16,
}

impl EnhancedStatus {
    /// Creates `class.subject.detail`. `class` must be 2, 4 or 5 for the code to be
    /// meaningful; other values are clamped to 5 when the reply is written.
    #[must_use]
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        Self { class, subject, detail }
    }

    /// The class digit (2 success, 4 persistent transient failure, 5 permanent failure).
    #[must_use]
    pub const fn class(self) -> u8 {
        self.class
    }

    /// The subject number.
    #[must_use]
    pub const fn subject(self) -> u16 {
        self.subject
    }

    /// The detail number.
    #[must_use]
    pub const fn detail(self) -> u16 {
        self.detail
    }
}

impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = if matches!(self.class, 2 | 4 | 5) { self.class } else { 5 };
        write!(f, "{}.{}.{}", class, self.subject.min(999), self.detail.min(999))
    }
}

/// An SMTP reply the session will send.
///
/// Reply text supplied by the application is sanitised when the reply is written:
/// control characters (including `CR` and `LF`) become spaces, so no text can inject a
/// second reply line or a fake reply. Use [`Reply::with_line`] for a multi-line reply.
///
/// ```
/// use postern::smtp::{EnhancedStatus, Reply};
///
/// let reply = Reply::new(550, EnhancedStatus::new(5, 1, 1), "No such user here");
/// assert_eq!(reply.code(), 550);
/// assert_eq!(reply.to_string(), "550 5.1.1 No such user here\r\n");
///
/// // Text cannot smuggle a second reply.
/// let evil = Reply::new(250, EnhancedStatus::new(2, 0, 0), "ok\r\n250 fake");
/// assert_eq!(evil.to_string(), "250 2.0.0 ok  250 fake\r\n");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    status: Option<EnhancedStatus>,
    lines: Vec<Cow<'static, str>>,
}

impl Reply {
    /// A reply with an enhanced status code.
    ///
    /// Codes outside `200..=599` are written as `451` (a transient local error), so a
    /// mistake in the application never produces an invalid reply.
    #[must_use]
    pub fn new(code: u16, status: EnhancedStatus, text: impl Into<Cow<'static, str>>) -> Self {
        Self { code, status: Some(status), lines: vec![text.into()] }
    }

    /// A reply without an enhanced status code (the greeting and the EHLO reply).
    #[must_use]
    pub fn plain(code: u16, text: impl Into<Cow<'static, str>>) -> Self {
        Self { code, status: None, lines: vec![text.into()] }
    }

    /// Adds a line to a multi-line reply.
    #[must_use]
    pub fn with_line(mut self, text: impl Into<Cow<'static, str>>) -> Self {
        self.lines.push(text.into());
        self
    }

    /// The three-digit reply code, as it will be written.
    #[must_use]
    pub fn code(&self) -> u16 {
        if (200..=599).contains(&self.code) { self.code } else { 451 }
    }

    /// The enhanced status code, if any.
    #[must_use]
    pub fn status(&self) -> Option<EnhancedStatus> {
        self.status
    }

    /// The text lines (unsanitised, as given).
    #[must_use]
    pub fn lines(&self) -> &[Cow<'static, str>] {
        &self.lines
    }

    /// `true` for 2xx and 3xx replies.
    #[must_use]
    pub fn is_positive(&self) -> bool {
        self.code() < 400
    }

    /// `true` for 4xx and 5xx replies.
    #[must_use]
    pub fn is_negative(&self) -> bool {
        self.code() >= 400
    }

    /// Appends the wire form to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let code = self.code();
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            out.extend_from_slice(itoa3(code).as_slice());
            out.push(if i == last { b' ' } else { b'-' });
            if let Some(status) = self.status {
                out.extend_from_slice(status.to_string().as_bytes());
                if !line.is_empty() {
                    out.push(b' ');
                }
            }
            out.extend(line.bytes().map(|b| if b.is_ascii_control() { b' ' } else { b }));
            out.extend_from_slice(b"\r\n");
        }
        if self.lines.is_empty() {
            out.extend_from_slice(itoa3(code).as_slice());
            out.extend_from_slice(b" \r\n");
        }
    }
}

fn itoa3(code: u16) -> [u8; 3] {
    // `code` is always in 200..=599 here, so each digit fits in one byte.
    let d = |n: u16| b'0' + (n % 10) as u8;
    [d(code / 100), d(code / 10), d(code)]
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::new();
        self.write_to(&mut out);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line() {
        let r = Reply::plain(250, "mx.example.test").with_line("PIPELINING").with_line("8BITMIME");
        assert_eq!(r.to_string(), "250-mx.example.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
    }

    #[test]
    fn invalid_code_becomes_451() {
        let r = Reply::new(999, EnhancedStatus::new(9, 0, 0), "x");
        assert_eq!(r.to_string(), "451 5.0.0 x\r\n");
        assert!(r.is_negative());
    }

    #[test]
    fn non_ascii_text_passes_controls_do_not() {
        let r = Reply::new(250, EnhancedStatus::new(2, 0, 0), "ok\u{7}é");
        assert_eq!(r.to_string(), "250 2.0.0 ok é\r\n");
    }
}
