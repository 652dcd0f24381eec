//! A tamper-evident audit trail: hash-chained, optionally encrypted security-event records
//! with a verifier that names the first broken link.
//!
//! | Piece | What it does |
//! |---|---|
//! | [`Event`], [`Record`] | typed security events with a compact binary body and a JSON-lines rendering |
//! | [`Writer`] | events in, framed bytes to append out; HMAC-SHA256 chain, checkpoints, optional AES-256-GCM bodies |
//! | [`Verifier`], [`verify_log`], [`LogVerifier`] | bytes in, verified frames out; the first [`BrokenLink`] (segment, offset, record, why) |
//! | [`MacKey`], [`EncryptionKey`], [`KeyRing`] | keys with ids, looked up from segment headers |
//! | [`Retention`] | which closed segments are old enough to delete (default 180 days) |
//!
//! **The chain.** Every frame carries `HMAC-SHA256(key, previous tag || frame)`, so
//! modifying, inserting, deleting, duplicating or reordering a record breaks the next link,
//! and only a holder of the key can forge one. Each segment starts with a header that
//! anchors it to the end of the previous segment; checkpoints repeat the anchor inside a
//! segment, and a closing checkpoint ends it. A verifier may therefore start at any
//! segment (after older ones were pruned) or at any checkpoint ([`Verifier::resync`]); what
//! precedes the start cannot be checked, and the report says where it starts
//! ([`LogReport::starts_at_genesis`]). Cutting records off the end of the newest segment
//! is only visible as a missing closing checkpoint: an application that needs more keeps
//! the latest [`ChainState`] elsewhere and verifies with [`Verifier::continuing`].
//!
//! **Encryption.** With an [`EncryptionKey`], record bodies are sealed with AES-256-GCM
//! (nonce from segment and record number, the clear header as associated data). The
//! chain covers the ciphertext, so a verifier needs only the MAC key; times and event kinds
//! stay in the clear for summaries. Keys rotate per segment; their ids are in each header.
//!
//! **Sans-IO.** The library never opens a file: the [`Writer`] appends to the caller's
//! `Vec<u8>`, the [`Verifier`] reads the caller's slices, and time is an argument. The
//! application decides file names, rotation (by day or size, see [`Writer::segment_len`])
//! and deletion ([`Retention`]); a crash-truncated tail is reported and skipped, and the
//! next segment continues from the last whole record ([`Verifier::state`]).
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use postern::audit::{AdmissionDecision, EncryptionKey, Event, KeyRing, MacKey, Writer, WriterConfig, verify_log};
//!
//! let mac = MacKey::new(1, &[1; 32]);
//! let enc = EncryptionKey::new(1, &[2; 32]);
//! let mut writer = Writer::new(mac.clone(), WriterConfig::default()).with_encryption(enc.clone());
//! let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
//!
//! let mut day1 = Vec::new();
//! writer.open_segment(t0, &mut day1).unwrap();
//! let peer = "192.0.2.7".parse().unwrap();
//! writer.append(&Event::Admission { peer, decision: AdmissionDecision::Refused, reason: "deny list" }, t0, &mut day1).unwrap();
//! writer.close_segment(t0, &mut day1).unwrap();
//!
//! let mut day2 = Vec::new();
//! let t1 = t0 + Duration::from_secs(86_400);
//! writer.open_segment(t1, &mut day2).unwrap();
//! writer.append(&Event::SessionEnd { session: 9, reason: "quit" }, t1, &mut day2).unwrap();
//!
//! // The MAC key alone verifies; the last segment is still open (the writer is running).
//! let keys = KeyRing::new().with_mac(mac);
//! let report = verify_log(&keys, [day1.as_slice(), day2.as_slice()]);
//! assert!(report.is_intact() && !report.last_closed);
//! assert_eq!((report.records, report.segments), (2, 2));
//! // Pruning day 1 leaves day 2 verifiable on its own.
//! let report = verify_log(&keys, [day2.as_slice()]);
//! assert!(report.is_intact() && !report.starts_at_genesis());
//! ```

use std::time::{Duration, SystemTime};

mod event;
mod format;
mod key;
mod verify;
mod writer;

pub use event::{AdmissionDecision, Event, EventKind, MAX_TEXT, Record, write_json_string, write_rfc3339};
pub use format::{Anchor, HEADER_LEN, MAGIC, VERSION};
pub use key::{EncryptionKey, KeyRing, MacKey};
pub use verify::{
    BreakReason, BrokenLink, Frame, LogReport, LogVerifier, MAX_FRAME_LEN, MAX_LISTED, RawRecord, SegmentEnd,
    Truncation, Verified, Verifier, verify_log,
};
pub use writer::{ChainState, Writer, WriterConfig};

/// The largest encoded event body, in bytes.
pub const MAX_BODY: usize = 16 * 1024;

/// Misuse of the audit API, or a record that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A record body does not match its kind.
    #[error("malformed audit record: {0}")]
    Malformed(&'static str),
    /// No key with this id is available.
    #[error("no audit key with id {0}")]
    UnknownKey(u32),
    /// An encrypted body failed authentication (wrong key or tampering).
    #[error("audit record decryption failed")]
    Decrypt,
    /// The record is encrypted; decrypt it with the key ring.
    #[error("audit record is encrypted")]
    Encrypted,
    /// No segment is open.
    #[error("no audit segment is open")]
    NoSegment,
    /// A segment is already open.
    #[error("an audit segment is already open")]
    SegmentOpen,
    /// The event's encoding is larger than [`MAX_BODY`].
    #[error("audit record too large")]
    TooLarge,
    /// Invalid configuration or key material.
    #[error("invalid audit configuration: {0}")]
    Config(&'static str),
}

/// How long closed segments are kept.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use postern::audit::Retention;
///
/// let retention = Retention::default(); // 180 days
/// let now = UNIX_EPOCH + Duration::from_secs(400 * 86_400);
/// assert!(retention.expired(UNIX_EPOCH + Duration::from_secs(200 * 86_400), now));
/// assert!(!retention.expired(UNIX_EPOCH + Duration::from_secs(230 * 86_400), now));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The age after which a closed segment may be deleted.
    pub max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self { max_age: Self::DEFAULT_MAX_AGE }
    }
}

impl Retention {
    /// 180 days.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(180 * 86_400);

    /// Whether a segment whose last record was written at `last_write` may be deleted at
    /// `now`. Delete oldest first and never the open segment: the remaining ones stay
    /// verifiable from the oldest kept header.
    #[must_use]
    pub fn expired(&self, last_write: SystemTime, now: SystemTime) -> bool {
        now.duration_since(last_write).is_ok_and(|age| age > self.max_age)
    }
}
