//! The SMTP command parser (RFC 5321 §4.1, RFC 6531, ESMTP parameters).
//!
//! [`Command::parse`] borrows from the line it is given (without its `CRLF`) and never
//! allocates. It checks syntax and the RFC 5321 §4.5.3.1 size limits; what a command
//! *means* in the current session state is the session's business.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// One parsed SMTP command, borrowing from the input line.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command<'a> {
    /// `HELO domain`
    Helo(&'a str),
    /// `EHLO domain` or `EHLO address-literal` (kept as written, brackets included).
    Ehlo(&'a str),
    /// `MAIL FROM:<reverse-path> [params]`
    Mail {
        /// The reverse path (`<>` is [`ReversePath::Null`]).
        from: ReversePath<'a>,
        /// ESMTP parameters.
        params: MailParameters<'a>,
    },
    /// `RCPT TO:<forward-path> [params]`
    Rcpt {
        /// The forward path.
        to: ForwardPath<'a>,
        /// ESMTP parameters.
        params: RcptParameters<'a>,
    },
    /// `DATA`
    Data,
    /// `BDAT size [LAST]` (RFC 3030)
    Bdat {
        /// Octets of message data that follow the command line.
        size: u64,
        /// `true` for the last chunk.
        last: bool,
    },
    /// `RSET`
    Rset,
    /// `NOOP [string]`
    Noop,
    /// `QUIT`
    Quit,
    /// `VRFY string`
    Vrfy(&'a str),
    /// `EXPN string`
    Expn(&'a str),
    /// `HELP [string]`
    Help(Option<&'a str>),
    /// `STARTTLS` (RFC 3207)
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954)
    Auth {
        /// The SASL mechanism name, as sent (compare case-insensitively).
        mechanism: &'a str,
        /// The initial response, still base64-encoded; `=` stands for an empty response.
        initial_response: Option<&'a str>,
    },
}

/// The reverse path of `MAIL FROM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReversePath<'a> {
    /// `<>`: the null reverse path used by bounces.
    Null,
    /// A mailbox.
    Mailbox(Mailbox<'a>),
}

/// The forward path of `RCPT TO`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForwardPath<'a> {
    /// `<Postmaster>` without a domain (RFC 5321 §4.1.1.3), matched case-insensitively.
    Postmaster,
    /// A mailbox (which may itself be `postmaster@domain`).
    Mailbox(Mailbox<'a>),
}

/// `local-part@domain` as written in a path (source routes removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mailbox<'a> {
    /// The local part exactly as written (a quoted string keeps its quotes and escapes).
    pub local_part: &'a str,
    /// The domain or address literal.
    pub domain: Host<'a>,
}

/// The part of a mailbox after `@`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host<'a> {
    /// A domain name (possibly a U-label domain when SMTPUTF8 is used).
    Domain(&'a str),
    /// `[192.0.2.1]`
    Ipv4(Ipv4Addr),
    /// `[IPv6:2001:db8::1]`
    Ipv6(Ipv6Addr),
    /// `[tag:content]`, a general address literal.
    General {
        /// The standardized tag.
        tag: &'a str,
        /// The content after the colon.
        content: &'a str,
    },
}

/// `BODY=` (RFC 6152, RFC 3030).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Body {
    /// `BODY=7BIT`
    SevenBit,
    /// `BODY=8BITMIME`
    EightBitMime,
    /// `BODY=BINARYMIME` (only valid with BDAT; postern does not advertise it)
    BinaryMime,
}

/// `RET=` (RFC 3461).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ret {
    /// `RET=FULL`
    Full,
    /// `RET=HDRS`
    Headers,
}

/// The parameters of `MAIL FROM`.
///
/// xtext values (RFC 3461 §4) are kept encoded as sent; decode with [`decode_xtext`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailParameters<'a> {
    /// `SIZE=n` (RFC 1870)
    pub size: Option<u64>,
    /// `BODY=`
    pub body: Option<Body>,
    /// `SMTPUTF8` (RFC 6531)
    pub smtputf8: bool,
    /// `REQUIRETLS` (RFC 8689)
    pub requiretls: bool,
    /// `RET=` (RFC 3461)
    pub ret: Option<Ret>,
    /// `ENVID=` xtext (RFC 3461)
    pub envid: Option<&'a str>,
    /// `AUTH=` xtext mailbox or `<>` (RFC 4954 §5)
    pub auth: Option<&'a str>,
}

/// `NOTIFY=` (RFC 3461): either never, or a set of conditions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Notify {
    /// `NEVER`
    pub never: bool,
    /// `SUCCESS`
    pub success: bool,
    /// `FAILURE`
    pub failure: bool,
    /// `DELAY`
    pub delay: bool,
}

/// The parameters of `RCPT TO`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RcptParameters<'a> {
    /// `NOTIFY=` (RFC 3461)
    pub notify: Option<Notify>,
    /// `ORCPT=addr-type;xtext` (RFC 3461): the address type and the xtext, as sent.
    pub orcpt: Option<(&'a str, &'a str)>,
}

/// Why a command line could not be parsed; each maps to the reply RFC 5321 asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not a known command verb (`500 5.5.1`).
    #[error("command not recognized")]
    UnknownCommand,
    /// The line is not valid UTF-8 (`500 5.5.2`).
    #[error("command line is not valid UTF-8")]
    InvalidUtf8,
    /// The command's arguments are malformed (`501 5.5.4`).
    #[error("syntax error in parameters or arguments")]
    Syntax,
    /// A path could not be parsed (`501 5.1.3`).
    #[error("bad address syntax")]
    BadAddress,
    /// Local part over 64, domain over 255 or path over 256 octets (`501 5.1.3`; RFC 5321 §4.5.3.1).
    #[error("address too long")]
    AddressTooLong,
    /// An unknown, duplicated or malformed ESMTP parameter (`555 5.5.4`).
    #[error("unrecognized or invalid parameter")]
    BadParameter,
}

impl ParseError {
    /// The reply code and enhanced status for this error.
    #[must_use]
    pub fn reply_code(self) -> (u16, super::EnhancedStatus) {
        use super::EnhancedStatus as S;
        match self {
            Self::UnknownCommand => (500, S::new(5, 5, 1)),
            Self::InvalidUtf8 => (500, S::new(5, 5, 2)),
            Self::Syntax => (501, S::new(5, 5, 4)),
            Self::BadAddress | Self::AddressTooLong => (501, S::new(5, 1, 3)),
            Self::BadParameter => (555, S::new(5, 5, 4)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Limits (RFC 5321 §4.5.3.1, RFC 3461 §4.4, RFC 4422 §3.1)
// ---------------------------------------------------------------------------------------

/// Longest local part, in octets (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART_LEN: usize = 64;
/// Longest domain, in octets (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN_LEN: usize = 255;
/// Longest path, `<` and `>` included, in octets (RFC 5321 §4.5.3.1.3).
pub const MAX_PATH_LEN: usize = 256;
/// Longest `ENVID=` value, as sent (xtext-encoded) (RFC 3461 §4.4).
pub const MAX_ENVID_LEN: usize = 100;
/// Longest SASL mechanism name (RFC 4422 §3.1).
pub const MAX_MECHANISM_LEN: usize = 20;

// ---------------------------------------------------------------------------------------
// Character classes
// ---------------------------------------------------------------------------------------

/// RFC 5322 `atext`, plus UTF-8 non-ASCII bytes (RFC 6531 §3.3).
const ATEXT: u8 = 1 << 0;
/// Letter, digit or hyphen, plus UTF-8 non-ASCII bytes (U-labels, RFC 6531 §3.3).
const LDH: u8 = 1 << 1;
/// RFC 5321 `qtextSMTP`, plus UTF-8 non-ASCII bytes.
const QTEXT: u8 = 1 << 2;
/// RFC 3461 `xchar` other than `+`: `!`..=`~` except `+` and `=`.
const XCHAR: u8 = 1 << 3;
/// The base64 alphabet without padding.
const BASE64: u8 = 1 << 4;
/// SASL mechanism characters (RFC 4422 §3.1), lower case accepted.
const MECH: u8 = 1 << 5;
/// RFC 5321 `dcontent`: printable ASCII except `[`, `\` and `]`.
const DCONTENT: u8 = 1 << 6;
/// ASCII letters and digits.
const ALNUM: u8 = 1 << 7;

const CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        #[allow(clippy::cast_possible_truncation)]
        let c = i as u8;
        let mut k = 0;
        let alnum = c.is_ascii_alphanumeric();
        if alnum
            || c >= 0x80
            || matches!(c, b'!' | b'#'..=b'\'' | b'*' | b'+' | b'-' | b'/')
            || matches!(c, b'=' | b'?' | b'^'..=b'`' | b'{'..=b'~')
        {
            k |= ATEXT;
        }
        if alnum || c == b'-' || c >= 0x80 {
            k |= LDH;
        }
        if matches!(c, 32 | 33 | 35..=91 | 93..=126) || c >= 0x80 {
            k |= QTEXT;
        }
        if matches!(c, 33..=126) && c != b'+' && c != b'=' {
            k |= XCHAR;
        }
        if alnum || c == b'+' || c == b'/' {
            k |= BASE64;
        }
        if alnum || c == b'-' || c == b'_' {
            k |= MECH;
        }
        if matches!(c, 33..=90 | 94..=126) {
            k |= DCONTENT;
        }
        if alnum {
            k |= ALNUM;
        }
        table[i] = k;
        i += 1;
    }
    table
};

#[inline(always)]
fn class(c: u8) -> u8 {
    // Never `None`: the table has one entry per byte value.
    CLASS.get(usize::from(c)).copied().unwrap_or(0)
}

#[inline(always)]
fn all_in(bytes: &[u8], k: u8) -> bool {
    bytes.iter().all(|&c| class(c) & k != 0)
}

/// `true` if `line` holds an ASCII control character (0x00..=0x1F or DEL).
///
/// Branch-free over the whole line so that it vectorises; lines are short.
#[inline(always)]
fn has_control(line: &[u8]) -> bool {
    line.iter().fold(0u8, |acc, &c| acc | u8::from(c < 0x20) | u8::from(c == 0x7f)) != 0
}

/// The first four bytes of a verb or keyword, ASCII-lowercased, as a little-endian `u32`.
///
/// `x | 0x2020_2020 == tag(b"mail")` holds exactly when each byte is that letter in either
/// case, because every constant byte is a lower-case letter.
const fn tag(s: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*s)
}

const LOWER: u32 = 0x2020_2020;

const HELO: u32 = tag(b"helo");
const EHLO: u32 = tag(b"ehlo");
const MAIL: u32 = tag(b"mail");
const RCPT: u32 = tag(b"rcpt");
const DATA: u32 = tag(b"data");
const BDAT: u32 = tag(b"bdat");
const RSET: u32 = tag(b"rset");
const NOOP: u32 = tag(b"noop");
const QUIT: u32 = tag(b"quit");
const VRFY: u32 = tag(b"vrfy");
const EXPN: u32 = tag(b"expn");
const HELP: u32 = tag(b"help");
const STAR: u32 = tag(b"star");
const TTLS: u32 = tag(b"ttls");
const AUTH: u32 = tag(b"auth");

/// `s[from..to]` for indices at ASCII delimiters (always char boundaries).
#[inline(always)]
fn sub(s: &str, from: usize, to: usize) -> Result<&str, ParseError> {
    s.get(from..to).ok_or(ParseError::Syntax)
}

/// `s[from..]` for an index at an ASCII delimiter.
#[inline(always)]
fn tail(s: &str, from: usize) -> Result<&str, ParseError> {
    s.get(from..).ok_or(ParseError::Syntax)
}

/// Parses decimal digits (at least one, no sign) into a `u64`; `None` on overflow.
#[inline]
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(value)
}

// ---------------------------------------------------------------------------------------
// The entry point
// ---------------------------------------------------------------------------------------

impl<'a> Command<'a> {
    /// Parses one command line, given without its `CRLF`.
    ///
    /// Verbs, `FROM:`/`TO:` and parameter keywords are matched case-insensitively.
    /// Trailing spaces are ignored; otherwise the RFC 5321 §4.1 grammar is applied
    /// strictly (single spaces between elements), with one tolerance: a single space after
    /// `FROM:`/`TO:`. Errors are checked in this order: an empty line is
    /// [`ParseError::UnknownCommand`], invalid UTF-8 is [`ParseError::InvalidUtf8`], a
    /// control character anywhere is [`ParseError::Syntax`], then the verb and its
    /// arguments are checked.
    ///
    /// ```
    /// use postern::smtp::command::{Command, ReversePath};
    ///
    /// let cmd = Command::parse(b"MAIL FROM:<alice@example.test> SIZE=1000").unwrap();
    /// let Command::Mail { from: ReversePath::Mailbox(m), params } = cmd else { panic!() };
    /// assert_eq!(m.local_part, "alice");
    /// assert_eq!(params.size, Some(1000));
    /// ```
    ///
    /// # Errors
    ///
    /// A [`ParseError`] that says which reply to send ([`ParseError::reply_code`]).
    pub fn parse(line: &'a [u8]) -> Result<Self, ParseError> {
        let mut line = line;
        while let [rest @ .., b' '] = line {
            line = rest;
        }
        if line.is_empty() {
            return Err(ParseError::UnknownCommand);
        }
        let text = std::str::from_utf8(line).map_err(|_| ParseError::InvalidUtf8)?;
        if has_control(line) {
            return Err(ParseError::Syntax);
        }
        let Some(head) = line.first_chunk::<4>() else {
            return Err(ParseError::UnknownCommand);
        };
        let verb = u32::from_le_bytes(*head) | LOWER;
        // `None`: no arguments; `Some(args)`: the text after "VERB ".
        let args = match line.get(4) {
            None => None,
            Some(b' ') => Some(tail(text, 5)?),
            Some(_) => return parse_long_verb(verb, line),
        };
        match verb {
            MAIL => parse_mail(args.ok_or(ParseError::Syntax)?),
            RCPT => parse_rcpt(args.ok_or(ParseError::Syntax)?),
            EHLO => parse_ehlo(args.ok_or(ParseError::Syntax)?),
            HELO => parse_helo(args.ok_or(ParseError::Syntax)?),
            DATA => no_args(args, Command::Data),
            RSET => no_args(args, Command::Rset),
            QUIT => no_args(args, Command::Quit),
            NOOP => Ok(Command::Noop),
            BDAT => parse_bdat(args.ok_or(ParseError::Syntax)?),
            AUTH => parse_auth(args.ok_or(ParseError::Syntax)?),
            VRFY => Ok(Command::Vrfy(args.ok_or(ParseError::Syntax)?)),
            EXPN => Ok(Command::Expn(args.ok_or(ParseError::Syntax)?)),
            HELP => Ok(Command::Help(args)),
            _ => Err(ParseError::UnknownCommand),
        }
    }
}

/// Verbs longer than four letters: only `STARTTLS`.
#[cold]
fn parse_long_verb(verb: u32, line: &[u8]) -> Result<Command<'_>, ParseError> {
    if verb != STAR {
        return Err(ParseError::UnknownCommand);
    }
    let Some((_, rest)) = line.split_first_chunk::<4>() else {
        return Err(ParseError::UnknownCommand);
    };
    match rest.split_first_chunk::<4>() {
        Some((ttls, after)) if u32::from_le_bytes(*ttls) | LOWER == TTLS => match after {
            [] => Ok(Command::StartTls),
            [b' ', ..] => Err(ParseError::Syntax),
            _ => Err(ParseError::UnknownCommand),
        },
        _ => Err(ParseError::UnknownCommand),
    }
}

#[inline(always)]
fn no_args<'a>(args: Option<&str>, cmd: Command<'a>) -> Result<Command<'a>, ParseError> {
    match args {
        None => Ok(cmd),
        Some(_) => Err(ParseError::Syntax),
    }
}

// ---------------------------------------------------------------------------------------
// HELO, EHLO, BDAT, AUTH
// ---------------------------------------------------------------------------------------

fn parse_helo(arg: &str) -> Result<Command<'_>, ParseError> {
    match scan_domain(arg.as_bytes(), 0) {
        Some(end) if end == arg.len() && end <= MAX_DOMAIN_LEN => Ok(Command::Helo(arg)),
        _ => Err(ParseError::Syntax),
    }
}

fn parse_ehlo(arg: &str) -> Result<Command<'_>, ParseError> {
    let end = if arg.as_bytes().first() == Some(&b'[') {
        parse_address_literal(arg, 0).map(|(_, end)| end)
    } else {
        scan_domain(arg.as_bytes(), 0)
    };
    match end {
        Some(end) if end == arg.len() && end <= MAX_DOMAIN_LEN => Ok(Command::Ehlo(arg)),
        _ => Err(ParseError::Syntax),
    }
}

fn parse_bdat(args: &str) -> Result<Command<'_>, ParseError> {
    let (size, last) = match args.split_once(' ') {
        None => (args, false),
        Some((size, last)) if last.eq_ignore_ascii_case("LAST") => (size, true),
        Some(_) => return Err(ParseError::Syntax),
    };
    let size = parse_u64(size.as_bytes()).ok_or(ParseError::Syntax)?;
    Ok(Command::Bdat { size, last })
}

fn parse_auth(args: &str) -> Result<Command<'_>, ParseError> {
    let (mechanism, initial_response) = match args.split_once(' ') {
        None => (args, None),
        Some((mechanism, response)) => (mechanism, Some(response)),
    };
    if mechanism.is_empty() || mechanism.len() > MAX_MECHANISM_LEN || !all_in(mechanism.as_bytes(), MECH) {
        return Err(ParseError::Syntax);
    }
    if let Some(response) = initial_response
        && !is_initial_response(response.as_bytes())
    {
        return Err(ParseError::Syntax);
    }
    Ok(Command::Auth { mechanism, initial_response })
}

/// base64 (at least one character, up to two `=` of padding at the end) or a lone `=`.
fn is_initial_response(s: &[u8]) -> bool {
    if s == b"=" {
        return true;
    }
    let body = s.strip_suffix(b"==").or_else(|| s.strip_suffix(b"=")).unwrap_or(s);
    !body.is_empty() && all_in(body, BASE64)
}

// ---------------------------------------------------------------------------------------
// MAIL and RCPT
// ---------------------------------------------------------------------------------------

/// A parsed path before it is known to be a reverse or forward path.
enum Path<'a> {
    Null,
    Postmaster,
    Mailbox(Mailbox<'a>),
}

/// Strips the case-insensitive `keyword` (e.g. `FROM:`) and one optional space.
#[inline(always)]
fn strip_path_keyword<'a>(args: &'a str, keyword: &str) -> Result<&'a str, ParseError> {
    let (head, rest) = args.split_at_checked(keyword.len()).ok_or(ParseError::Syntax)?;
    if !head.eq_ignore_ascii_case(keyword) {
        return Err(ParseError::Syntax);
    }
    Ok(rest.strip_prefix(' ').unwrap_or(rest))
}

/// Splits what follows a path into its parameters (`""` when there are none).
#[inline(always)]
fn params_after_path(rest: &str) -> Result<&str, ParseError> {
    match rest.as_bytes().first() {
        None => Ok(""),
        Some(b' ') => tail(rest, 1),
        Some(_) => Err(ParseError::Syntax),
    }
}

fn parse_mail(args: &str) -> Result<Command<'_>, ParseError> {
    let rest = strip_path_keyword(args, "FROM:")?;
    let (path, end) = parse_path(rest)?;
    let from = match path {
        Path::Null => ReversePath::Null,
        Path::Mailbox(mailbox) => ReversePath::Mailbox(mailbox),
        Path::Postmaster => return Err(ParseError::BadAddress),
    };
    let params = params_after_path(tail(rest, end)?)?;
    let params = if params.is_empty() { MailParameters::default() } else { parse_mail_params(params)? };
    Ok(Command::Mail { from, params })
}

fn parse_rcpt(args: &str) -> Result<Command<'_>, ParseError> {
    let rest = strip_path_keyword(args, "TO:")?;
    let (path, end) = parse_path(rest)?;
    let to = match path {
        Path::Postmaster => ForwardPath::Postmaster,
        Path::Mailbox(mailbox) => ForwardPath::Mailbox(mailbox),
        Path::Null => return Err(ParseError::BadAddress),
    };
    let params = params_after_path(tail(rest, end)?)?;
    let params = if params.is_empty() { RcptParameters::default() } else { parse_rcpt_params(params)? };
    Ok(Command::Rcpt { to, params })
}

/// Parses `<...>` at the start of `s`; returns the path and the index after `>`.
fn parse_path(s: &str) -> Result<(Path<'_>, usize), ParseError> {
    let b = s.as_bytes();
    let mut i = match b {
        [b'<', b'>', ..] => return Ok((Path::Null, 2)),
        [b'<', b'@', ..] => skip_source_route(b)?,
        [b'<', ..] => 1,
        _ => return Err(ParseError::BadAddress),
    };
    let local_start = i;
    i = match b.get(i) {
        Some(b'"') => scan_quoted(b, i),
        _ => scan_dot_string(b, i),
    }
    .ok_or(ParseError::BadAddress)?;
    let local_part = sub(s, local_start, i)?;
    match b.get(i) {
        Some(b'@') => {}
        Some(b'>') if local_start == 1 && local_part.eq_ignore_ascii_case("Postmaster") => {
            return Ok((Path::Postmaster, i + 1));
        }
        _ => return Err(ParseError::BadAddress),
    }
    if local_part.len() > MAX_LOCAL_PART_LEN {
        return Err(ParseError::AddressTooLong);
    }
    let domain_start = i + 1;
    let (domain, domain_end) = if b.get(domain_start) == Some(&b'[') {
        parse_address_literal(s, domain_start).ok_or(ParseError::BadAddress)?
    } else {
        let end = scan_domain(b, domain_start).ok_or(ParseError::BadAddress)?;
        (Host::Domain(sub(s, domain_start, end)?), end)
    };
    if b.get(domain_end) != Some(&b'>') {
        return Err(ParseError::BadAddress);
    }
    if domain_end - domain_start > MAX_DOMAIN_LEN || domain_end + 1 > MAX_PATH_LEN {
        return Err(ParseError::AddressTooLong);
    }
    Ok((Path::Mailbox(Mailbox { local_part, domain }), domain_end + 1))
}

/// Skips `@domain,@domain:` after the `<`; returns the index after the `:`.
#[cold]
fn skip_source_route(b: &[u8]) -> Result<usize, ParseError> {
    let mut i = 1;
    loop {
        if b.get(i) != Some(&b'@') {
            return Err(ParseError::BadAddress);
        }
        let end = scan_domain(b, i + 1).ok_or(ParseError::BadAddress)?;
        if end - (i + 1) > MAX_DOMAIN_LEN {
            return Err(ParseError::AddressTooLong);
        }
        match b.get(end) {
            Some(b',') => i = end + 1,
            Some(b':') => return Ok(end + 1),
            _ => return Err(ParseError::BadAddress),
        }
    }
}

/// Scans a `Dot-string` from `start`; returns its end, or `None` if empty or malformed.
#[inline]
fn scan_dot_string(b: &[u8], start: usize) -> Option<usize> {
    let rest = b.get(start..)?;
    let mut after_dot = true;
    for (n, &c) in rest.iter().enumerate() {
        if class(c) & ATEXT != 0 {
            after_dot = false;
        } else if c == b'.' && !after_dot {
            after_dot = true;
        } else {
            return (!after_dot).then_some(start + n);
        }
    }
    (!after_dot).then_some(b.len())
}

/// Scans a `Quoted-string` whose `"` is at `start`; returns the index after the closing `"`.
fn scan_quoted(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        match *b.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => {
                if !matches!(b.get(i + 1)?, 32..=126) {
                    return None;
                }
                i += 2;
            }
            c if class(c) & QTEXT != 0 => i += 1,
            _ => return None,
        }
    }
}

/// Scans a `Domain` (RFC 5321 §4.1.2, with U-labels) from `start`; returns its end, or
/// `None` if empty or malformed. Stops at the first byte that cannot continue it.
#[inline]
fn scan_domain(b: &[u8], start: usize) -> Option<usize> {
    let rest = b.get(start..)?;
    // `prev` is the previous byte, or `.` at the start of a label.
    let mut prev = b'.';
    let mut end = b.len();
    for (n, &c) in rest.iter().enumerate() {
        if class(c) & LDH != 0 {
            if c == b'-' && prev == b'.' {
                return None;
            }
        } else if c == b'.' {
            if prev == b'.' || prev == b'-' {
                return None;
            }
        } else {
            end = start + n;
            break;
        }
        prev = c;
    }
    (prev != b'.' && prev != b'-').then_some(end)
}

/// Parses an address literal whose `[` is at `start`; returns it and the index after `]`.
fn parse_address_literal(s: &str, start: usize) -> Option<(Host<'_>, usize)> {
    let inner_start = start + 1;
    let close = inner_start + memchr::memchr(b']', s.as_bytes().get(inner_start..)?)?;
    let inner = s.get(inner_start..close)?;
    let host = match inner.split_once(':') {
        None => Host::Ipv4(inner.parse().ok()?),
        Some((tag, content)) if tag.eq_ignore_ascii_case("IPv6") => Host::Ipv6(content.parse().ok()?),
        Some((tag, content)) => {
            let t = tag.as_bytes();
            let ldh_str = t.last().is_some_and(|&c| class(c) & ALNUM != 0)
                && t.iter().all(|&c| c == b'-' || class(c) & ALNUM != 0);
            if !ldh_str || content.is_empty() || !all_in(content.as_bytes(), DCONTENT) {
                return None;
            }
            Host::General { tag, content }
        }
    };
    Some((host, close + 1))
}

// ---------------------------------------------------------------------------------------
// ESMTP parameters
// ---------------------------------------------------------------------------------------

/// Splits `keyword[=value]`. An empty parameter (two spaces in a row) is a syntax error.
#[inline(always)]
fn split_param(param: &str) -> Result<(&str, Option<&str>), ParseError> {
    if param.is_empty() {
        return Err(ParseError::Syntax);
    }
    Ok(match memchr::memchr(b'=', param.as_bytes()) {
        Some(eq) => (sub(param, 0, eq)?, Some(tail(param, eq + 1)?)),
        None => (param, None),
    })
}

/// Stores `value` in an empty `slot`; a second occurrence is [`ParseError::BadParameter`].
#[inline(always)]
fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), ParseError> {
    if slot.is_some() {
        return Err(ParseError::BadParameter);
    }
    *slot = Some(value);
    Ok(())
}

/// Sets a value-less flag parameter once.
#[inline(always)]
fn set_flag(flag: &mut bool, value: Option<&str>) -> Result<(), ParseError> {
    if *flag || value.is_some() {
        return Err(ParseError::BadParameter);
    }
    *flag = true;
    Ok(())
}

/// `true` if `s` is non-empty RFC 3461 xtext.
fn is_xtext(s: &[u8]) -> bool {
    if s.is_empty() {
        return false;
    }
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        if c == b'+' {
            if !(s.get(i + 1).is_some_and(is_upper_hex) && s.get(i + 2).is_some_and(is_upper_hex)) {
                return false;
            }
            i += 3;
        } else if class(c) & XCHAR != 0 {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

fn is_upper_hex(c: &u8) -> bool {
    matches!(c, b'0'..=b'9' | b'A'..=b'F')
}

fn parse_mail_params(params: &str) -> Result<MailParameters<'_>, ParseError> {
    let mut p = MailParameters::default();
    for param in params.split(' ') {
        let (keyword, value) = split_param(param)?;
        let k = keyword.as_bytes();
        match k.len() {
            4 if k.eq_ignore_ascii_case(b"SIZE") => {
                let size = value.and_then(|v| parse_u64(v.as_bytes()));
                set_once(&mut p.size, size.ok_or(ParseError::BadParameter)?)?;
            }
            4 if k.eq_ignore_ascii_case(b"BODY") => {
                let body = match value {
                    Some(v) if v.eq_ignore_ascii_case("8BITMIME") => Body::EightBitMime,
                    Some(v) if v.eq_ignore_ascii_case("7BIT") => Body::SevenBit,
                    Some(v) if v.eq_ignore_ascii_case("BINARYMIME") => Body::BinaryMime,
                    _ => return Err(ParseError::BadParameter),
                };
                set_once(&mut p.body, body)?;
            }
            4 if k.eq_ignore_ascii_case(b"AUTH") => match value {
                Some(v) if is_xtext(v.as_bytes()) => set_once(&mut p.auth, v)?,
                _ => return Err(ParseError::BadParameter),
            },
            8 if k.eq_ignore_ascii_case(b"SMTPUTF8") => set_flag(&mut p.smtputf8, value)?,
            10 if k.eq_ignore_ascii_case(b"REQUIRETLS") => set_flag(&mut p.requiretls, value)?,
            3 if k.eq_ignore_ascii_case(b"RET") => {
                let ret = match value {
                    Some(v) if v.eq_ignore_ascii_case("FULL") => Ret::Full,
                    Some(v) if v.eq_ignore_ascii_case("HDRS") => Ret::Headers,
                    _ => return Err(ParseError::BadParameter),
                };
                set_once(&mut p.ret, ret)?;
            }
            5 if k.eq_ignore_ascii_case(b"ENVID") => match value {
                Some(v) if v.len() <= MAX_ENVID_LEN && is_xtext(v.as_bytes()) => {
                    set_once(&mut p.envid, v)?;
                }
                _ => return Err(ParseError::BadParameter),
            },
            _ => return Err(ParseError::BadParameter),
        }
    }
    Ok(p)
}

fn parse_rcpt_params(params: &str) -> Result<RcptParameters<'_>, ParseError> {
    let mut p = RcptParameters::default();
    for param in params.split(' ') {
        let (keyword, value) = split_param(param)?;
        let k = keyword.as_bytes();
        match k.len() {
            6 if k.eq_ignore_ascii_case(b"NOTIFY") => {
                let notify = value.and_then(parse_notify).ok_or(ParseError::BadParameter)?;
                set_once(&mut p.notify, notify)?;
            }
            5 if k.eq_ignore_ascii_case(b"ORCPT") => {
                let orcpt = value.and_then(parse_orcpt).ok_or(ParseError::BadParameter)?;
                set_once(&mut p.orcpt, orcpt)?;
            }
            _ => return Err(ParseError::BadParameter),
        }
    }
    Ok(p)
}

/// `NEVER`, or a comma list of distinct `SUCCESS`, `FAILURE`, `DELAY`.
fn parse_notify(value: &str) -> Option<Notify> {
    let mut n = Notify::default();
    for item in value.split(',') {
        let flag = match item.len() {
            7 if item.eq_ignore_ascii_case("SUCCESS") => &mut n.success,
            7 if item.eq_ignore_ascii_case("FAILURE") => &mut n.failure,
            5 if item.eq_ignore_ascii_case("DELAY") => &mut n.delay,
            5 if item.eq_ignore_ascii_case("NEVER") => &mut n.never,
            _ => return None,
        };
        if *flag {
            return None;
        }
        *flag = true;
    }
    if n.never && (n.success || n.failure || n.delay) {
        return None;
    }
    Some(n)
}

/// `addr-type ";" xtext`, where `addr-type` is an RFC 822 atom (without `=`).
fn parse_orcpt(value: &str) -> Option<(&str, &str)> {
    let (addr_type, address) = value.split_once(';')?;
    let t = addr_type.as_bytes();
    let atom = !t.is_empty() && t.iter().all(|&c| c < 0x80 && c != b'=' && class(c) & ATEXT != 0);
    (atom && is_xtext(address.as_bytes())).then_some((addr_type, address))
}

// ---------------------------------------------------------------------------------------
// xtext
// ---------------------------------------------------------------------------------------

/// Decodes RFC 3461 xtext (`+XX` hex escapes, upper-case hex digits only).
///
/// Returns `None` for malformed xtext or if the decoded octets are not UTF-8.
///
/// ```
/// use postern::smtp::command::decode_xtext;
///
/// assert_eq!(decode_xtext("user+2Btag+40example.com").as_deref(), Some("user+tag@example.com"));
/// assert_eq!(decode_xtext("bad+2b"), None);
/// ```
#[must_use]
pub fn decode_xtext(xtext: &str) -> Option<String> {
    let b = xtext.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'+' {
            let hi = b.get(i + 1).copied().and_then(upper_hex_value)?;
            let lo = b.get(i + 2).copied().and_then(upper_hex_value)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else if class(c) & XCHAR != 0 {
            out.push(c);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

fn upper_hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Display
// ---------------------------------------------------------------------------------------

impl fmt::Display for Command<'_> {
    /// Writes the canonical form (without `CRLF`), which [`Command::parse`] reads back
    /// to an equal command: upper-case verbs and keywords, no space after `FROM:`/`TO:`,
    /// no source route, and parameters in a fixed order (`SIZE BODY SMTPUTF8 REQUIRETLS
    /// RET ENVID AUTH` for `MAIL`, `NOTIFY ORCPT` for `RCPT`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Helo(domain) => write!(f, "HELO {domain}"),
            Command::Ehlo(domain) => write!(f, "EHLO {domain}"),
            Command::Mail { from, params } => {
                write!(f, "MAIL FROM:{from}")?;
                fmt_mail_params(params, f)
            }
            Command::Rcpt { to, params } => {
                write!(f, "RCPT TO:{to}")?;
                fmt_rcpt_params(params, f)
            }
            Command::Data => f.write_str("DATA"),
            Command::Bdat { size, last: false } => write!(f, "BDAT {size}"),
            Command::Bdat { size, last: true } => write!(f, "BDAT {size} LAST"),
            Command::Rset => f.write_str("RSET"),
            Command::Noop => f.write_str("NOOP"),
            Command::Quit => f.write_str("QUIT"),
            Command::Vrfy(arg) => write!(f, "VRFY {arg}"),
            Command::Expn(arg) => write!(f, "EXPN {arg}"),
            Command::Help(None) => f.write_str("HELP"),
            Command::Help(Some(arg)) => write!(f, "HELP {arg}"),
            Command::StartTls => f.write_str("STARTTLS"),
            Command::Auth { mechanism, initial_response: None } => write!(f, "AUTH {mechanism}"),
            Command::Auth { mechanism, initial_response: Some(response) } => {
                write!(f, "AUTH {mechanism} {response}")
            }
        }
    }
}

fn fmt_mail_params(p: &MailParameters<'_>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if let Some(size) = p.size {
        write!(f, " SIZE={size}")?;
    }
    if let Some(body) = p.body {
        f.write_str(match body {
            Body::SevenBit => " BODY=7BIT",
            Body::EightBitMime => " BODY=8BITMIME",
            Body::BinaryMime => " BODY=BINARYMIME",
        })?;
    }
    if p.smtputf8 {
        f.write_str(" SMTPUTF8")?;
    }
    if p.requiretls {
        f.write_str(" REQUIRETLS")?;
    }
    if let Some(ret) = p.ret {
        f.write_str(match ret {
            Ret::Full => " RET=FULL",
            Ret::Headers => " RET=HDRS",
        })?;
    }
    if let Some(envid) = p.envid {
        write!(f, " ENVID={envid}")?;
    }
    if let Some(auth) = p.auth {
        write!(f, " AUTH={auth}")?;
    }
    Ok(())
}

fn fmt_rcpt_params(p: &RcptParameters<'_>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if let Some(n) = p.notify {
        f.write_str(" NOTIFY=")?;
        if n.never {
            f.write_str("NEVER")?;
        }
        let mut sep = "";
        for (set, name) in [(n.success, "SUCCESS"), (n.failure, "FAILURE"), (n.delay, "DELAY")] {
            if set {
                write!(f, "{sep}{name}")?;
                sep = ",";
            }
        }
    }
    if let Some((addr_type, address)) = p.orcpt {
        write!(f, " ORCPT={addr_type};{address}")?;
    }
    Ok(())
}

impl fmt::Display for ReversePath<'_> {
    /// `<>` or `<mailbox>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => f.write_str("<>"),
            ReversePath::Mailbox(mailbox) => write!(f, "<{mailbox}>"),
        }
    }
}

impl fmt::Display for ForwardPath<'_> {
    /// `<Postmaster>` or `<mailbox>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardPath::Postmaster => f.write_str("<Postmaster>"),
            ForwardPath::Mailbox(mailbox) => write!(f, "<{mailbox}>"),
        }
    }
}

impl fmt::Display for Mailbox<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local_part, self.domain)
    }
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(ip) => write!(f, "[{ip}]"),
            Host::Ipv6(ip) => write!(f, "[IPv6:{ip}]"),
            Host::General { tag, content } => write!(f, "[{tag}:{content}]"),
        }
    }
}
