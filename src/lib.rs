//! # postern
//!
//! Sans-IO mail-security building blocks: the parts a mail server puts behind its open
//! ports (25, 465, 587, 110, 995), written once, correct and fuzzed.
//!
//! postern makes no runtime assumption: no async runtime, no threads, no sockets and no
//! clock reads happen inside the library. Bytes go in, events and bytes to send come out,
//! and `now: Instant` is an argument. The same code runs under tokio, a thread per
//! connection, or a fuzzer.
//!
//! ## An SMTP session, in memory
//!
//! The application reads bytes from its socket and hands them to the session; the session
//! reports [`smtp::Event`]s, the application answers the ones that need a decision, and
//! writes out whatever the session wants to send.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use postern::smtp::{Config, EnhancedStatus, Event, Reply, Session};
//!
//! let now = Instant::now();
//! let config = Arc::new(Config::new("mx.example.test"));
//! let mut session = Session::new(config, now);
//! let mut wire = Vec::new();
//! let mut message = Vec::new();
//!
//! // Send the greeting before reading anything: bytes that arrive before the greeting
//! // has been taken are early talk, which spam engines do and real MTAs do not.
//! session.poll_transmit(&mut wire);
//!
//! // The client's side of the conversation, one command group at a time.
//! let client: [&[u8]; 5] = [
//!     b"EHLO client.example.org\r\n",
//!     b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.test>\r\nRCPT TO:<eve@elsewhere.test>\r\nDATA\r\n",
//!     b"Subject: hello\r\n\r\n..a line that starts with a dot\r\n.\r\n",
//!     b"QUIT\r\n",
//!     b"",
//! ];
//! for input in client {
//!     session.receive(input, now);
//!     while let Some(event) = session.poll_event() {
//!         match event {
//!             Event::Rcpt(rcpt) if rcpt.to.domain() != "example.test" => session
//!                 .reject(Reply::new(554, EnhancedStatus::new(5, 7, 1), "Relay access denied"))
//!                 .unwrap(),
//!             Event::MessageData(bytes) => message.extend_from_slice(&bytes),
//!             Event::MessageEnd(_) => session
//!                 .accept_with(Reply::new(250, EnhancedStatus::new(2, 0, 0), "Ok: queued as 1"))
//!                 .unwrap(),
//!             Event::Helo(_) | Event::Mail(_) | Event::Rcpt(_) | Event::DataStart { .. } => {
//!                 session.accept().unwrap()
//!             }
//!             _ => {}
//!         }
//!     }
//!     session.poll_transmit(&mut wire);
//! }
//!
//! let transcript = String::from_utf8(wire).unwrap();
//! assert_eq!(
//!     transcript,
//!     "220 mx.example.test ESMTP\r\n\
//!      250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n\
//!      250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250 DSN\r\n\
//!      250 2.1.0 Sender ok\r\n\
//!      250 2.1.5 Recipient ok\r\n\
//!      554 5.7.1 Relay access denied\r\n\
//!      354 2.0.0 End data with <CR><LF>.<CR><LF>\r\n\
//!      250 2.0.0 Ok: queued as 1\r\n\
//!      221 2.0.0 mx.example.test closing connection\r\n"
//! );
//! assert_eq!(message, b"Subject: hello\r\n\r\n.a line that starts with a dot\r\n");
//! assert!(session.is_closed());
//! ```
//!
//! ## Modules
//!
//! | Module | Feature | What it does |
//! |---|---|---|
//! | [`line`](mod@line) | always | CRLF line framing with a hard cap and a bare-LF/CR policy |
//! | [`smtp`] | `smtp` (default) | the SMTP server session: RFC 5321 and its extensions, smuggling-proof DATA and BDAT |
//! | [`pop3`] | `pop3` (default) | the POP3 server session: RFC 1939, CAPA, STLS, SASL, streamed RETR/TOP |
//! | [`sasl`] | `sasl` (default) | SASL server mechanisms (SCRAM-SHA-256(-PLUS), PLAIN, LOGIN, CRAM-MD5, OAUTHBEARER, XOAUTH2, EXTERNAL), credential store, APOP |
//! | [`otp`] | `otp` (default) | HOTP/TOTP second factor with a replay guard and otpauth:// URIs |
//! | [`audit`] | `audit` (default) | tamper-evident audit trail: HMAC-SHA256 chain, checkpoints, AES-256-GCM bodies, verifier |
//! | [`hybrid`] | `hybrid` (default) | X-Wing (X25519 + ML-KEM-768) KEM, HPKE sealing with AES-256-GCM, streaming envelopes, key rings |
//! | [`msgauth`] | `msgauth` (default) | SPF, DKIM, DMARC, ARC with DNS answered by the application; DKIM signing; replay and spoofing signals |
//!
//! ## Design rules
//! - **Sans-IO.** The application owns sockets, threads, timers and TLS. Time is always
//!   an argument; `clippy.toml` bans `Instant::now` and `SystemTime::now` in the library.
//! - **Peer errors are replies, API misuse is an `Err`.** A client can never make the
//!   library panic or grow memory past a configured cap.
//! - **No `unsafe`.** `#![forbid(unsafe_code)]`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

#[cfg(feature = "access")]
pub mod access;
#[cfg(any(feature = "pop3", feature = "sasl"))]
mod apop;
#[cfg(feature = "audit")]
pub mod audit;
mod error;
#[cfg(feature = "hybrid")]
pub mod hybrid;
#[cfg(feature = "limit")]
pub mod limit;
pub mod line;
#[cfg(any(feature = "tls", feature = "hybrid"))]
mod mlkem;
#[cfg(feature = "msgauth")]
pub mod msgauth;
#[cfg(any(feature = "smtp", feature = "pop3"))]
mod sasl_wire;
mod tls_info;

pub use error::Error;
pub use tls_info::TlsInfo;

#[cfg(feature = "otp")]
pub mod otp;
#[cfg(feature = "pop3")]
pub mod pop3;
#[cfg(feature = "sasl")]
pub mod sasl;
#[cfg(feature = "smtp")]
pub mod smtp;
#[cfg(feature = "tls")]
pub mod tls;
