//! # postern
//!
//! Sans-IO mail-security building blocks: the parts a mail server puts behind its open
//! ports, written once, correct and fuzzed.
//!
//! postern makes no runtime assumption: no async runtime, no threads, no sockets and no
//! clock reads happen inside the library. Bytes go in, events and bytes to send come out,
//! and `now: Instant` is an argument.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod error;
pub mod line;
mod tls_info;

pub use error::Error;
pub use tls_info::TlsInfo;

#[cfg(feature = "smtp")]
pub mod smtp;
