//! The sans-IO POP3 server session (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 3206
//! response codes, RFC 5034 SASL).
//!
//! [`Session`] has the same shape as the SMTP session: bytes in, events out, typed
//! decisions back, bytes to send, timers. It shares the crate's
//! [line framing](crate::line) (255-octet command lines, RFC 2449) and SASL handling.
//!
//! - AUTHORIZATION → TRANSACTION → UPDATE; UPDATE ([`Event::Update`]) only after QUIT in
//!   TRANSACTION, so a dropped connection deletes nothing.
//! - USER/PASS, APOP and the plaintext SASL mechanisms are refused outside TLS unless the
//!   application allows plaintext (`-ERR [AUTH] ... use STLS`).
//! - STLS: commands pipelined after it are never executed, and the USER name given before
//!   the handshake is forgotten.
//! - RETR and TOP are streamed: the application pushes the message in chunks and the
//!   session dot-stuffs on the fly ([`Maildrop`] and [`serve_maildrop`] for blocking stores).

pub mod command;
mod maildrop;
mod session;
mod types;

pub use crate::apop::apop_verify;
pub use maildrop::{Maildrop, ServeError, Served, serve_maildrop};
pub use session::{Error, Session};
pub use types::{
    AuthStart, CloseReason, Config, Event, Expire, Limits, MessageInfo, MessageInfoError, Reply,
    ResponseCode, SaslData, Violation,
};
