//! The POP3 command parser (RFC 1939 §3, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH).
//!
//! [`Command::parse`] borrows from the line (given without `CRLF`) and never allocates.

use std::fmt;

/// One parsed POP3 command.
///
/// Message numbers are as the client wrote them (1-based); the session checks them
/// against the maildrop.
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command<'a> {
    /// `USER name`
    User(&'a str),
    /// `PASS string`: the rest of the line, spaces included (RFC 1939 §7).
    Pass(&'a str),
    /// `APOP name digest` (RFC 1939 §7): the digest is 32 lower-case hex digits.
    Apop {
        /// The mailbox name.
        name: &'a str,
        /// The MD5 digest in hex, as sent.
        digest: &'a str,
    },
    /// `AUTH [mechanism [initial-response]]` (RFC 5034). Without a mechanism, the client
    /// asks for the list of mechanisms.
    Auth {
        /// The mechanism name, if any.
        mechanism: Option<&'a str>,
        /// The initial response, still base64-encoded; `=` is an empty response.
        initial_response: Option<&'a str>,
    },
    /// `STAT`
    Stat,
    /// `LIST [msg]`
    List(Option<u32>),
    /// `RETR msg`
    Retr(u32),
    /// `DELE msg`
    Dele(u32),
    /// `NOOP`
    Noop,
    /// `RSET`
    Rset,
    /// `QUIT`
    Quit,
    /// `TOP msg n`
    Top {
        /// The message number.
        msg: u32,
        /// Body lines to send after the header.
        lines: u32,
    },
    /// `UIDL [msg]`
    Uidl(Option<u32>),
    /// `CAPA` (RFC 2449)
    Capa,
    /// `STLS` (RFC 2595)
    Stls,
}

impl fmt::Debug for Command<'_> {
    /// Never prints a password or a SASL response.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pass(_) => f.write_str("Pass(<redacted>)"),
            Self::Auth { mechanism, initial_response } => f
                .debug_struct("Auth")
                .field("mechanism", mechanism)
                .field("initial_response", &initial_response.map(|_| "<redacted>"))
                .finish(),
            Self::User(n) => f.debug_tuple("User").field(n).finish(),
            Self::Apop { name, .. } => f.debug_struct("Apop").field("name", name).finish_non_exhaustive(),
            Self::Stat => f.write_str("Stat"),
            Self::List(m) => f.debug_tuple("List").field(m).finish(),
            Self::Retr(m) => f.debug_tuple("Retr").field(m).finish(),
            Self::Dele(m) => f.debug_tuple("Dele").field(m).finish(),
            Self::Noop => f.write_str("Noop"),
            Self::Rset => f.write_str("Rset"),
            Self::Quit => f.write_str("Quit"),
            Self::Top { msg, lines } => {
                f.debug_struct("Top").field("msg", msg).field("lines", lines).finish()
            }
            Self::Uidl(m) => f.debug_tuple("Uidl").field(m).finish(),
            Self::Capa => f.write_str("Capa"),
            Self::Stls => f.write_str("Stls"),
        }
    }
}

/// Why a command line could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not a POP3 command.
    #[error("unknown command")]
    UnknownCommand,
    /// The line is not valid UTF-8.
    #[error("command line is not valid UTF-8")]
    InvalidUtf8,
    /// Missing, extra or malformed arguments (RFC 1939 §3: arguments are at most 40
    /// characters, separated by single spaces).
    #[error("invalid arguments")]
    Syntax,
}

/// RFC 1939 §3: "each argument may be up to 40 characters long".
const MAX_ARG: usize = 40;

/// The verb lower-cased into a `u32` (little-endian, a 3-letter verb padded with 0).
///
/// `| 0x20` lower-cases ASCII letters and leaves every other byte outside `a..=z`, so
/// comparing with an all-letter keyword is an exact case-insensitive comparison.
fn keyword(word: &[u8]) -> Option<u32> {
    match *word {
        [a, b, c] => Some(u32::from_le_bytes([a, b, c, 0]) | 0x0020_2020),
        [a, b, c, d] => Some(u32::from_le_bytes([a, b, c, d]) | 0x2020_2020),
        _ => None,
    }
}

const fn kw(s: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*s)
}

const USER: u32 = kw(b"user");
const PASS: u32 = kw(b"pass");
const APOP: u32 = kw(b"apop");
const AUTH: u32 = kw(b"auth");
const STAT: u32 = kw(b"stat");
const LIST: u32 = kw(b"list");
const RETR: u32 = kw(b"retr");
const DELE: u32 = kw(b"dele");
const NOOP: u32 = kw(b"noop");
const RSET: u32 = kw(b"rset");
const QUIT: u32 = kw(b"quit");
const TOP: u32 = kw(b"top\0");
const UIDL: u32 = kw(b"uidl");
const CAPA: u32 = kw(b"capa");
const STLS: u32 = kw(b"stls");

fn number(arg: &[u8]) -> Result<u32, ParseError> {
    // Digits only (no sign), as RFC 1939's grammar says; at most 10 of them.
    if arg.is_empty() || arg.len() > 10 {
        return Err(ParseError::Syntax);
    }
    let mut n = 0u64;
    for b in arg {
        if !b.is_ascii_digit() {
            return Err(ParseError::Syntax);
        }
        n = n * 10 + u64::from(b - b'0');
    }
    u32::try_from(n).map_err(|_| ParseError::Syntax)
}

fn arg_ok(arg: &[u8]) -> bool {
    !arg.is_empty() && arg.len() <= MAX_ARG && !arg.iter().any(|b| b.is_ascii_control() || *b == b' ')
}

fn text(arg: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(arg).map_err(|_| ParseError::InvalidUtf8)
}

type Args<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Splits the arguments at single spaces: at most two, no control characters.
fn two_args(rest: Option<&[u8]>) -> Result<Args<'_>, ParseError> {
    let Some(rest) = rest else { return Ok((None, None)) };
    let mut space = None;
    for (i, b) in rest.iter().enumerate() {
        if b.is_ascii_control() || (*b == b' ' && space.is_some()) {
            return Err(ParseError::Syntax);
        }
        if *b == b' ' {
            space = Some(i);
        }
    }
    Ok(match space {
        Some(i) => (rest.get(..i), rest.get(i + 1..)),
        None => (Some(rest), None),
    })
}

impl<'a> Command<'a> {
    /// Parses one command line, given without its `CRLF`.
    ///
    /// ```
    /// use postern::pop3::command::Command;
    ///
    /// assert_eq!(Command::parse(b"retr 3"), Ok(Command::Retr(3)));
    /// assert_eq!(Command::parse(b"TOP 1 10"), Ok(Command::Top { msg: 1, lines: 10 }));
    /// assert_eq!(Command::parse(b"PASS a pass phrase"), Ok(Command::Pass("a pass phrase")));
    /// assert!(Command::parse(b"RETR -1").is_err());
    /// ```
    pub fn parse(line: &'a [u8]) -> Result<Self, ParseError> {
        // A line that is not UTF-8 is always `InvalidUtf8`. The parser works on bytes and
        // validates only the arguments it returns as text: whatever it accepts is UTF-8
        // (verbs and numbers are ASCII), so the whole line is validated on errors only.
        match Self::parse_bytes(line) {
            Err(e) if e != ParseError::InvalidUtf8 && std::str::from_utf8(line).is_err() => {
                Err(ParseError::InvalidUtf8)
            }
            r => r,
        }
    }

    fn parse_bytes(line: &'a [u8]) -> Result<Self, ParseError> {
        // Verbs have 3 or 4 letters: a space, if any, ends the verb within 5 bytes.
        let (word, rest) = match line.iter().take(5).position(|b| *b == b' ') {
            Some(i) => (line.get(..i).unwrap_or_default(), line.get(i + 1..)),
            None => (line, None),
        };
        let Some(k) = keyword(word) else { return Err(ParseError::UnknownCommand) };
        // PASS takes the rest of the line verbatim; everything else is split on single
        // spaces with RFC 1939's 40-character argument limit.
        if k == PASS {
            return match rest {
                Some(p) if !p.is_empty() && !p.iter().any(|b| b.is_ascii_control()) => {
                    Ok(Command::Pass(text(p)?))
                }
                _ => Err(ParseError::Syntax),
            };
        }
        let (a1, a2) = two_args(rest)?;
        let none = |cmd: Command<'a>| if a1.is_none() { Ok(cmd) } else { Err(ParseError::Syntax) };
        let one_num = || match (a1, a2) {
            (Some(a), None) => number(a),
            _ => Err(ParseError::Syntax),
        };
        let opt_num = || match (a1, a2) {
            (None, _) => Ok(None),
            (Some(a), None) => number(a).map(Some),
            _ => Err(ParseError::Syntax),
        };
        match k {
            USER => match (a1, a2) {
                (Some(n), None) if arg_ok(n) => Ok(Command::User(text(n)?)),
                _ => Err(ParseError::Syntax),
            },
            APOP => match (a1, a2) {
                (Some(name), Some(digest)) if arg_ok(name) && arg_ok(digest) => {
                    Ok(Command::Apop { name: text(name)?, digest: text(digest)? })
                }
                _ => Err(ParseError::Syntax),
            },
            AUTH => match (a1, a2) {
                (None, _) => Ok(Command::Auth { mechanism: None, initial_response: None }),
                (Some(m), ir) if valid_mechanism(m) => {
                    // The initial response is base64 (or `=`), bounded by the 255-octet line.
                    let initial_response = match ir {
                        Some([]) => return Err(ParseError::Syntax),
                        Some(r) => Some(text(r)?),
                        None => None,
                    };
                    Ok(Command::Auth { mechanism: Some(text(m)?), initial_response })
                }
                _ => Err(ParseError::Syntax),
            },
            STAT => none(Command::Stat),
            LIST => opt_num().map(Command::List),
            RETR => one_num().map(Command::Retr),
            DELE => one_num().map(Command::Dele),
            NOOP => none(Command::Noop),
            RSET => none(Command::Rset),
            QUIT => none(Command::Quit),
            TOP => match (a1, a2) {
                (Some(m), Some(n)) => Ok(Command::Top { msg: number(m)?, lines: number(n)? }),
                _ => Err(ParseError::Syntax),
            },
            UIDL => opt_num().map(Command::Uidl),
            CAPA => none(Command::Capa),
            STLS => none(Command::Stls),
            _ => Err(ParseError::UnknownCommand),
        }
    }
}

/// RFC 4422 §3.1 mechanism names: 1 to 20 of `A-Z 0-9 - _` (case-insensitive here).
fn valid_mechanism(m: &[u8]) -> bool {
    (1..=20).contains(&m.len()) && m.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

impl fmt::Display for Command<'_> {
    /// The canonical wire form without `CRLF`; [`Command::parse`] reads it back to an
    /// equal command.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |f: &mut fmt::Formatter<'_>, verb: &str, m: &Option<u32>| match m {
            Some(m) => write!(f, "{verb} {m}"),
            None => f.write_str(verb),
        };
        match self {
            Self::User(n) => write!(f, "USER {n}"),
            Self::Pass(p) => write!(f, "PASS {p}"),
            Self::Apop { name, digest } => write!(f, "APOP {name} {digest}"),
            Self::Auth { mechanism: None, .. } => f.write_str("AUTH"),
            Self::Auth { mechanism: Some(m), initial_response: None } => write!(f, "AUTH {m}"),
            Self::Auth { mechanism: Some(m), initial_response: Some(r) } => write!(f, "AUTH {m} {r}"),
            Self::Stat => f.write_str("STAT"),
            Self::List(m) => opt(f, "LIST", m),
            Self::Retr(m) => write!(f, "RETR {m}"),
            Self::Dele(m) => write!(f, "DELE {m}"),
            Self::Noop => f.write_str("NOOP"),
            Self::Rset => f.write_str("RSET"),
            Self::Quit => f.write_str("QUIT"),
            Self::Top { msg, lines } => write!(f, "TOP {msg} {lines}"),
            Self::Uidl(m) => opt(f, "UIDL", m),
            Self::Capa => f.write_str("CAPA"),
            Self::Stls => f.write_str("STLS"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ParseError::*;

    #[test]
    fn table() {
        let ok: &[(&[u8], Command<'_>)] = &[
            (b"USER alice", Command::User("alice")),
            (b"user alice", Command::User("alice")),
            (b"PASS secret", Command::Pass("secret")),
            (b"PASS two words ", Command::Pass("two words ")),
            (
                b"APOP mrose c4c9334bac560ecc979e58001b3e22fb",
                Command::Apop { name: "mrose", digest: "c4c9334bac560ecc979e58001b3e22fb" },
            ),
            (b"AUTH", Command::Auth { mechanism: None, initial_response: None }),
            (b"AUTH PLAIN", Command::Auth { mechanism: Some("PLAIN"), initial_response: None }),
            (b"AUTH PLAIN =", Command::Auth { mechanism: Some("PLAIN"), initial_response: Some("=") }),
            (b"STAT", Command::Stat),
            (b"LIST", Command::List(None)),
            (b"LIST 2", Command::List(Some(2))),
            (b"RETR 1", Command::Retr(1)),
            (b"DELE 4294967295", Command::Dele(u32::MAX)),
            (b"NOOP", Command::Noop),
            (b"RSET", Command::Rset),
            (b"QUIT", Command::Quit),
            (b"TOP 1 0", Command::Top { msg: 1, lines: 0 }),
            (b"UIDL", Command::Uidl(None)),
            (b"uidl 7", Command::Uidl(Some(7))),
            (b"CAPA", Command::Capa),
            (b"stls", Command::Stls),
        ];
        for (line, want) in ok {
            assert_eq!(Command::parse(line), Ok(*want), "{:?}", String::from_utf8_lossy(line));
            let again = want.to_string();
            assert_eq!(Command::parse(again.as_bytes()), Ok(*want));
        }
        let bad: &[(&[u8], ParseError)] = &[
            (b"", UnknownCommand),
            (b"XX", UnknownCommand),
            (b"RETRIEVE 1", UnknownCommand),
            (b"TOPS 1 1", UnknownCommand),
            (b"LOGIN a b", UnknownCommand),
            (b"\xff\xfe", InvalidUtf8),
            (b"USER", Syntax),
            (b"USER a b", Syntax),
            (b"USER aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Syntax),
            (b"PASS", Syntax),
            (b"PASS ", Syntax),
            (b"PASS a\x07", Syntax),
            (b"APOP mrose", Syntax),
            (b"STAT 1", Syntax),
            (b"LIST 1 2", Syntax),
            (b"LIST x", Syntax),
            (b"RETR", Syntax),
            (b"RETR +1", Syntax),
            (b"RETR 99999999999", Syntax),
            (b"RETR  1", Syntax),
            (b"DELE 1 ", Syntax),
            (b"TOP 1", Syntax),
            (b"QUIT now", Syntax),
            (b"AUTH PL@IN", Syntax),
            (b"AUTH PLAIN a b", Syntax),
            (b"NOOP\x00", UnknownCommand),
            (b"NOOP \x00", Syntax),
        ];
        for (line, want) in bad {
            assert_eq!(Command::parse(line), Err(*want), "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn debug_redacts_secrets() {
        let s = format!("{:?}", Command::parse(b"PASS hunter2").unwrap());
        assert!(!s.contains("hunter2"));
        let s = format!("{:?}", Command::parse(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==").unwrap());
        assert!(!s.contains("AGFsaWNl"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_round_trips(line in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            if let Ok(cmd) = Command::parse(&line) {
                let again = cmd.to_string();
                proptest::prop_assert_eq!(Command::parse(again.as_bytes()), Ok(cmd));
            }
        }

        #[test]
        fn numbers_round_trip(m in proptest::num::u32::ANY, n in proptest::num::u32::ANY) {
            let cmd = Command::Top { msg: m, lines: n };
            let text = cmd.to_string();
            proptest::prop_assert_eq!(Command::parse(text.as_bytes()), Ok(cmd));
        }
    }
}
