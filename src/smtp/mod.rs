//! The sans-IO SMTP server session (RFC 5321 and its extensions).
//!
//! [`Session`] is a state machine for one connection: bytes in
//! ([`Session::receive`]), events out ([`Session::poll_event`]), decisions back
//! ([`Session::accept`], [`Session::reject`], ...), bytes to send
//! ([`Session::poll_transmit`]), and timers ([`Session::poll_timeout`],
//! [`Session::handle_timeout`]). It never touches a socket or a clock.
//!
//! | Extension | RFC | Notes |
//! |---|---|---|
//! | PIPELINING | 2920 | replies in order; unauthenticated pipelining where forbidden closes the session |
//! | SIZE | 1870 | refused at `MAIL` on the declared size, `552` mid-stream |
//! | 8BITMIME | 6152 | |
//! | SMTPUTF8 | 6531 | non-ASCII addresses only with the `SMTPUTF8` parameter |
//! | CHUNKING | 3030 | BDAT chunks read exactly, even when refused |
//! | ENHANCEDSTATUSCODES | 2034, 3463 | on every reply but the greeting and HELO/EHLO |
//! | STARTTLS | 3207 | pipelined bytes never executed; all state reset after the handshake |
//! | AUTH | 4954 | SASL exchange surfaced as events; only inside TLS unless allowed |
//! | DSN | 3461 | `RET`, `ENVID`, `NOTIFY`, `ORCPT` parsed and surfaced |
//! | REQUIRETLS | 8689 | advertised and accepted only inside TLS |
//!
//! The message body reaches the application in pieces ([`Event::MessageData`]); the
//! session never holds a whole message. End of data is only `CRLF . CRLF`: see
//! [`data`] for the rules that design SMTP smuggling out.

pub mod command;
mod config;
pub mod data;
mod event;
mod reply;
mod session;

pub use config::{Config, EarlyTalkerPolicy, Limits, VerifyPolicy};
pub use event::{
    AbortReason, Address, AuthStart, CloseReason, Event, Helo, MailFrom, MessageEnd, RcptTo, SaslData,
    Violation,
};
pub use reply::{EnhancedStatus, Reply};
pub use session::{Error, Session};
