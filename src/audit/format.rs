//! The segment format shared by the writer and the verifier.
//!
//! ```text
//! segment  = MAGIC "PSTNAUDT" | VERSION 0x01 | header-frame | *( record-frame / checkpoint-frame )
//! frame    = len:u32le | type:u8 | payload[len] | tag[32]
//! tag      = HMAC-SHA256(mac_key, chain || len | type | payload)
//!            where chain = the previous frame's tag (for a header or checkpoint: its own
//!            `chain` field, which a verifier that follows the chain checks against its own)
//! anchor   = flags:u8 | segment:u64 | record:u64 | time_us:u64 | mac_key_id:u32
//!            | enc_key_id:u32 | chain[32]                               (65 bytes)
//!            header (type 1) and checkpoint (type 2) payloads; `record` is the number of
//!            the next record; flags: 1 = bodies encrypted, 2 = segment closed
//! record   = time_us:u64 | kind:u16 | body           (type 3)
//!            body is the event's binary encoding, or in an encrypted segment
//!            AES-256-GCM(body) | gcm_tag[16] with nonce = segment:u32be | record:u64be
//!            and associated data = len | type | time_us | kind
//! ```
//! All integers are little-endian except inside the GCM nonce.

/// The first eight bytes of every segment.
pub const MAGIC: [u8; 8] = *b"PSTNAUDT";
/// The format version written after the magic.
pub const VERSION: u8 = 1;
/// Bytes before the header frame: magic and version.
pub(crate) const PREFIX_LEN: usize = 9;
/// `len` and `type`.
pub(crate) const FRAME_HEAD: usize = 5;
/// The HMAC-SHA256 tag.
pub(crate) const TAG_LEN: usize = 32;
/// An anchor payload.
pub(crate) const ANCHOR_LEN: usize = 65;
/// The clear part of a record payload: time and kind.
pub(crate) const RECORD_HEAD: usize = 10;
/// AES-GCM's tag.
pub(crate) const GCM_TAG_LEN: usize = 16;
/// A whole header or checkpoint frame.
pub(crate) const ANCHOR_FRAME_LEN: usize = FRAME_HEAD + ANCHOR_LEN + TAG_LEN;
/// A segment's header: prefix and header frame. Shorter files hold no record.
pub const HEADER_LEN: usize = PREFIX_LEN + ANCHOR_FRAME_LEN;

pub(crate) const TYPE_HEADER: u8 = 1;
pub(crate) const TYPE_CHECKPOINT: u8 = 2;
pub(crate) const TYPE_RECORD: u8 = 3;

pub(crate) const FLAG_ENCRYPTED: u8 = 1;
pub(crate) const FLAG_CLOSED: u8 = 2;

/// A chain position that a segment header or a checkpoint authenticates: where the chain
/// stands, so verification can start there (after pruning, or in the middle of a file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Anchor {
    /// The segment's sequence number (0 for the first segment ever).
    pub segment: u64,
    /// The number of the next record.
    pub record: u64,
    /// When the anchor was written, microseconds since the Unix epoch.
    pub time_us: u64,
    /// The MAC key id of the segment.
    pub mac_key_id: u32,
    /// The encryption key id of the segment (0 when bodies are in the clear).
    pub enc_key_id: u32,
    /// Whether record bodies in this segment are encrypted.
    pub encrypted: bool,
    /// Whether this checkpoint closes its segment (no record follows it).
    pub closed: bool,
    /// The chain tag before this anchor (all zero at the very start of a log).
    pub chain: [u8; 32],
}

impl Anchor {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let mut flags = 0;
        if self.encrypted {
            flags |= FLAG_ENCRYPTED;
        }
        if self.closed {
            flags |= FLAG_CLOSED;
        }
        out.push(flags);
        out.extend_from_slice(&self.segment.to_le_bytes());
        out.extend_from_slice(&self.record.to_le_bytes());
        out.extend_from_slice(&self.time_us.to_le_bytes());
        out.extend_from_slice(&self.mac_key_id.to_le_bytes());
        out.extend_from_slice(&self.enc_key_id.to_le_bytes());
        out.extend_from_slice(&self.chain);
    }

    /// Parses a 65-byte payload; `None` for unknown flags.
    pub(crate) fn decode(payload: &[u8; ANCHOR_LEN]) -> Option<Self> {
        let (&[flags], rest) = payload.split_first_chunk::<1>()?;
        if flags & !(FLAG_ENCRYPTED | FLAG_CLOSED) != 0 {
            return None;
        }
        let (segment, rest) = rest.split_first_chunk::<8>()?;
        let (record, rest) = rest.split_first_chunk::<8>()?;
        let (time_us, rest) = rest.split_first_chunk::<8>()?;
        let (mac, rest) = rest.split_first_chunk::<4>()?;
        let (enc, rest) = rest.split_first_chunk::<4>()?;
        let chain: [u8; 32] = rest.try_into().ok()?;
        Some(Self {
            segment: u64::from_le_bytes(*segment),
            record: u64::from_le_bytes(*record),
            time_us: u64::from_le_bytes(*time_us),
            mac_key_id: u32::from_le_bytes(*mac),
            enc_key_id: u32::from_le_bytes(*enc),
            encrypted: flags & FLAG_ENCRYPTED != 0,
            closed: flags & FLAG_CLOSED != 0,
            chain,
        })
    }
}

/// The AES-GCM nonce of a record: unique per (segment, record) under one key.
pub(crate) fn nonce(segment: u64, record: u64) -> ring::aead::Nonce {
    let mut n = [0u8; 12];
    let (seg, rec) = n.split_at_mut(4);
    seg.copy_from_slice(&(segment as u32).to_be_bytes());
    rec.copy_from_slice(&record.to_be_bytes());
    ring::aead::Nonce::assume_unique_for_key(n)
}
