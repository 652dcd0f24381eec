//! Message authentication: SPF, DKIM, DMARC and ARC on [mail-auth], with every DNS answer
//! supplied by the application, plus DKIM signing, DKIM replay signals and spoofing signals.
//!
//! postern does no I/O here: a [`Check`] says which DNS queries it needs ([`DnsQuery`]:
//! name + type), the application resolves them however it likes (its own resolver, a cache,
//! a zone file) and feeds the answers back ([`DnsAnswer`]: records, NXDOMAIN, SERVFAIL)
//! until the check is complete. Rounds, queries and answer sizes are bounded by
//! [`DnsLimits`]. The result is one [`Verdict`] per message — SPF for HELO and MAIL FROM,
//! each DKIM signature, DMARC (policy, alignment, disposition with `pct=` sampled by a roll
//! the caller passes), ARC — and its RFC 8601 Authentication-Results value.
//!
//! ```
//! use std::time::SystemTime;
//! use postern::msgauth::{CheckInput, DnsAnswer, Progress, Record, RecordType, Verifier, Disposition};
//!
//! let verifier = Verifier::new("mx.example.net").unwrap();
//! let message = b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: hi\r\n\r\nhello\r\n".to_vec();
//! let input = CheckInput::new("192.0.2.1".parse().unwrap(), "mail.example.org", "alice@example.org", message, SystemTime::UNIX_EPOCH);
//! let mut check = verifier.start(input);
//! let verdict = loop {
//!     match check.poll() {
//!         Progress::Done(verdict) => break verdict,
//!         Progress::NeedDns(queries) => {
//!             for q in queries {
//!                 // The application's resolver goes here.
//!                 let answer = match (q.name.as_str(), q.rtype) {
//!                     ("example.org.", RecordType::Txt) => {
//!                         DnsAnswer::Records(vec![Record::Txt("v=spf1 ip4:192.0.2.0/24 -all".into())])
//!                     }
//!                     ("_dmarc.example.org.", RecordType::Txt) => {
//!                         DnsAnswer::Records(vec![Record::Txt("v=DMARC1; p=reject".into())])
//!                     }
//!                     _ => DnsAnswer::NxDomain,
//!                 };
//!                 check.answer(&q, answer).unwrap();
//!             }
//!         }
//!         _ => unreachable!(),
//!     }
//! };
//! assert_eq!(verdict.spf_mail_from.result.as_str(), "pass");
//! assert_eq!(verdict.dmarc.result.as_str(), "pass");
//! assert_eq!(verdict.dmarc.disposition, Disposition::Accept);
//! let header = verdict.authentication_results();
//! assert!(header.starts_with("mx.example.net;"));
//! assert!(header.contains("spf=pass smtp.mailfrom=alice@example.org"));
//! ```
//!
//! ## Where mail-auth reads the clock
//! postern never reads the clock; mail-auth 0.13 does in these places:
//! - DKIM verification compares `x=` with the system clock. postern also judges `x=`
//!   against the caller's [`CheckInput::now`] and reports a signature expired at that time
//!   as `neutral` ("signature expired", also in DMARC). A signature that is expired by the
//!   system clock but not by `now` is still reported expired (mail-auth stops before the
//!   cryptographic check).
//! - ARC verification compares seal timestamps with the system clock.
//! - DKIM signing stamps `t=` (and `x=` = `t=` + expiry) from the system clock.
//! - SPF evaluation gives up after 20 s of wall-clock time (never reached: each round runs
//!   to completion without waiting).
//! - DMARC `pct=` is not used by mail-auth 0.13 (which follows DMARCbis); postern reads it
//!   from the record and samples it with [`CheckInput::dmarc_roll`].
//!
//! [mail-auth]: https://docs.rs/mail-auth/0.13.0

mod dns;
mod results;
mod sign;
mod signals;
mod verify;

pub use dns::{DnsAnswer, DnsLimits, DnsQuery, Record, RecordType};
pub use results::{
    ArcVerdict, AuthResult, Disposition, DkimVerdict, DmarcVerdict, Policy, SpfVerdict, Verdict,
};
pub use sign::{DEFAULT_SIGNED_HEADERS, KeyAlgorithm, SignOptions, Signer};
pub use signals::{
    ReplayConfig, ReplayDetector, ReplaySignal, SpoofSignal, coverage_signals, registrable_domain,
    spoof_signals,
};
pub use verify::{Check, CheckInput, Progress, Verifier, dmarc_pct};

/// Errors from the message-authentication API (misuse or bad configuration; what a peer's
/// message or DNS causes is part of the [`Verdict`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MsgAuthError {
    /// The `authserv-id` is empty or not a plain host-name token.
    #[error("invalid authserv-id (expected a host name)")]
    InvalidAuthservId,
    /// The internal (I/O-free) resolver could not be built.
    #[error("cannot build the offline resolver: {0}")]
    Resolver(String),
    /// An answer for a query that the check did not ask.
    #[error("answer for a query that was not asked: {0}")]
    UnexpectedAnswer(String),
    /// An answer over the configured size bounds; it was recorded as SERVFAIL.
    #[error("DNS answer too large for {0}; treated as SERVFAIL")]
    AnswerTooLarge(String),
    /// More preloaded answers than [`DnsLimits::max_queries`].
    #[error("more preloaded DNS answers than the query limit")]
    TooManyAnswers,
    /// A DKIM key could not be loaded.
    #[error("DKIM key: {0}")]
    Key(String),
    /// A domain or selector is not a valid DNS name.
    #[error("invalid {0}: {1:?}")]
    InvalidName(&'static str, String),
    /// Signing failed.
    #[error("DKIM signing failed: {0}")]
    Sign(String),
}
