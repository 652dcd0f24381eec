//! The sans-IO SMTP server session (RFC 5321 and its extensions).

pub mod command;
pub mod data;
mod reply;

pub use reply::{EnhancedStatus, Reply};
