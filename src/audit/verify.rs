//! The verifier: bytes in, verified frames and the first broken link out.

use std::collections::BTreeMap;
use std::time::SystemTime;

use ring::aead::Aad;

use super::event::{Event, EventKind, Record, from_micros};
use super::format::{
    ANCHOR_FRAME_LEN, ANCHOR_LEN, Anchor, FRAME_HEAD, GCM_TAG_LEN, HEADER_LEN, MAGIC, PREFIX_LEN,
    RECORD_HEAD, TAG_LEN, TYPE_CHECKPOINT, TYPE_HEADER, TYPE_RECORD, VERSION, nonce,
};
use super::{AuditError, ChainState, KeyRing, MAX_BODY, MacKey};

/// The longest frame a verifier accepts: a record with a [`MAX_BODY`](super::MAX_BODY)
/// body, encrypted, with its tag. A caller streaming a file never needs to buffer more.
pub const MAX_FRAME_LEN: usize = FRAME_HEAD + RECORD_HEAD + MAX_BODY + GCM_TAG_LEN + TAG_LEN;

/// Why the chain is broken at a [`BrokenLink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakReason {
    /// The segment does not start with the magic bytes.
    BadMagic,
    /// The segment's format version is not supported.
    UnsupportedVersion(u8),
    /// A frame is malformed (bad length or type, unknown flags).
    MalformedFrame(&'static str),
    /// The segment is signed with a MAC key the verifier does not have.
    UnknownKey(u32),
    /// The frame's tag does not match: the frame or one before it was modified, inserted,
    /// deleted, duplicated or reordered, or the key is wrong.
    BadTag,
    /// The segment does not continue the previous one (a segment is missing, duplicated or
    /// out of order); the text says which field differs.
    Discontinuity(&'static str),
    /// A checkpoint's fields disagree with the chain it authenticates.
    CheckpointMismatch,
    /// Bytes follow the checkpoint that closed the segment.
    DataAfterClose,
}

impl std::fmt::Display for BreakReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadMagic => f.write_str("not an audit segment (bad magic)"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            Self::MalformedFrame(what) => write!(f, "malformed frame: {what}"),
            Self::UnknownKey(id) => write!(f, "no MAC key with id {id}"),
            Self::BadTag => f.write_str(
                "tag mismatch (record modified, inserted, deleted, duplicated or reordered, or wrong key)",
            ),
            Self::Discontinuity(what) => {
                write!(f, "segment does not continue the previous one: {what}")
            }
            Self::CheckpointMismatch => f.write_str("checkpoint disagrees with the chain"),
            Self::DataAfterClose => f.write_str("data after the segment was closed"),
        }
    }
}

/// The first place where verification failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("broken link in segment {segment} at offset {offset} (record {record}): {reason}")]
#[non_exhaustive]
pub struct BrokenLink {
    /// The segment's sequence number (from its header, or the expected one when the header
    /// itself is broken).
    pub segment: u64,
    /// The byte offset of the bad frame in the segment.
    pub offset: u64,
    /// The number the next record would have had at that point.
    pub record: u64,
    /// Why.
    pub reason: BreakReason,
}

/// A record whose chain link has been verified: its clear header and its body (plain or
/// encrypted), borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord<'b> {
    /// The record's number.
    pub number: u64,
    /// The segment it is in.
    pub segment: u64,
    /// Its timestamp.
    pub time: SystemTime,
    /// Its event kind (in the clear also in encrypted segments).
    pub kind: EventKind,
    /// The id of the key that encrypted the body, `None` for a clear body.
    pub enc_key_id: Option<u32>,
    aad: [u8; FRAME_HEAD + RECORD_HEAD],
    /// The stored body: the event's encoding, or ciphertext and GCM tag.
    pub body: &'b [u8],
}

impl<'b> RawRecord<'b> {
    /// Decodes a clear record.
    ///
    /// # Errors
    /// [`AuditError::Encrypted`] for an encrypted body; [`AuditError::Malformed`] for a body
    /// that does not match its kind.
    pub fn record(&self) -> Result<Record<'b>, AuditError> {
        if self.enc_key_id.is_some() {
            return Err(AuditError::Encrypted);
        }
        let event = Event::decode(self.kind.code(), self.body)?;
        Ok(Record { number: self.number, time: self.time, event })
    }

    /// Decrypts (when encrypted) into `scratch` and decodes the record. Clear records are
    /// decoded in place and `keys` is not used.
    ///
    /// # Errors
    /// [`AuditError::UnknownKey`] without the encryption key, [`AuditError::Decrypt`] when
    /// authentication fails, [`AuditError::Malformed`] for a bad body.
    pub fn decrypt<'c>(&self, keys: &KeyRing, scratch: &'c mut Vec<u8>) -> Result<Record<'c>, AuditError>
    where
        'b: 'c,
    {
        let Some(id) = self.enc_key_id else { return self.record() };
        let key = keys.encryption(id).ok_or(AuditError::UnknownKey(id))?;
        scratch.clear();
        scratch.extend_from_slice(self.body);
        let plain = key
            .aead()
            .open_in_place(nonce(self.segment, self.number), Aad::from(&self.aad), scratch)
            .map_err(|_| AuditError::Decrypt)?;
        let event = Event::decode(self.kind.code(), plain)?;
        Ok(Record { number: self.number, time: self.time, event })
    }
}

/// A frame the verifier has checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame<'b> {
    /// A segment header.
    Header(Anchor),
    /// A checkpoint (closing the segment when `anchor.closed`).
    Checkpoint(Anchor),
    /// A record.
    Record(RawRecord<'b>),
}

/// One verified frame and how many input bytes it used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified<'b> {
    /// Bytes to drop from the front of the input.
    pub consumed: usize,
    /// The frame.
    pub frame: Frame<'b>,
}

/// The end of a segment as the verifier saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentEnd {
    /// The segment's sequence number, when its header was read.
    pub segment: Option<u64>,
    /// Whether a closing checkpoint was seen.
    pub closed: bool,
    /// Bytes after the last whole frame (a crash-truncated tail): where they start and how
    /// many there are. Everything before was verified and is kept.
    pub truncated: Option<(u64, u64)>,
}

#[derive(Debug, Clone)]
struct InSegment {
    segment: u64,
    mac: MacKey,
    enc_key_id: u32,
    encrypted: bool,
    chain: [u8; 32],
    next_record: u64,
    closed: bool,
}

/// Verifies segments frame by frame, in the style of `httparse`: the caller passes the bytes
/// it has, [`next`](Verifier::next) checks the first whole frame and says how many bytes it
/// used, `Ok(None)` asks for more. Nothing is buffered or allocated, so memory stays
/// bounded whatever the input; a caller streaming a file needs at most [`MAX_FRAME_LEN`]
/// bytes of buffer.
///
/// At the end of each segment's bytes call [`finish_segment`](Verifier::finish_segment)
/// with what is left: a partial frame there is a crash-truncated tail, reported and
/// skipped, and the next segment must continue the chain from the last whole frame.
/// Errors are sticky: after the first broken link every call returns it again.
///
/// [`verify_log`] does all of this for segments held in memory.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: KeyRing,
    expect: Option<ChainState>,
    seg: Option<InSegment>,
    offset: u64,
    broken: Option<BrokenLink>,
}

impl Verifier {
    /// A verifier that accepts any authentic first segment: the log may begin at genesis or
    /// after pruned segments (the first header's anchor says which).
    #[must_use]
    pub fn new(keys: KeyRing) -> Self {
        Self { keys, expect: None, seg: None, offset: 0, broken: None }
    }

    /// A verifier whose first segment must continue from `state`.
    #[must_use]
    pub fn continuing(keys: KeyRing, state: ChainState) -> Self {
        Self { keys, expect: Some(state), seg: None, offset: 0, broken: None }
    }

    /// Finds the first authentic checkpoint (or segment header) in `buf`, which may start
    /// anywhere in a segment, and returns how many bytes of `buf` it and what precedes it
    /// take, with a verifier positioned right after it. Offsets the verifier reports are
    /// then relative to `buf`. `None` if `buf` holds no authentic anchor.
    #[must_use]
    pub fn resync(keys: KeyRing, buf: &[u8]) -> Option<(usize, Verifier)> {
        let pattern = (ANCHOR_LEN as u32).to_le_bytes();
        for at in memchr::memmem::find_iter(buf, &pattern) {
            let Some(frame) = buf.get(at..at + ANCHOR_FRAME_LEN) else { break };
            let kind = frame.get(4).copied();
            if kind != Some(TYPE_CHECKPOINT) && kind != Some(TYPE_HEADER) {
                continue;
            }
            let Some(anchor) = anchor_of(frame) else { continue };
            let Some(mac) = keys.mac(anchor.mac_key_id).cloned() else { continue };
            let Some(tag) = check_tag(&mac, &anchor.chain, frame) else { continue };
            if anchor.closed {
                continue;
            }
            let end = at + ANCHOR_FRAME_LEN;
            let seg = InSegment {
                segment: anchor.segment,
                mac,
                enc_key_id: anchor.enc_key_id,
                encrypted: anchor.encrypted,
                chain: tag,
                next_record: anchor.record,
                closed: false,
            };
            let verifier = Self { keys, expect: None, seg: Some(seg), offset: end as u64, broken: None };
            return Some((end, verifier));
        }
        None
    }

    /// Where the chain stands after what has been verified (to resume a [`Writer`](super::Writer)
    /// in a new segment); `None` before the first header.
    #[must_use]
    pub fn state(&self) -> Option<ChainState> {
        match &self.seg {
            Some(seg) => Some(ChainState {
                next_segment: seg.segment.saturating_add(1),
                next_record: seg.next_record,
                tag: seg.chain,
            }),
            None => self.expect,
        }
    }

    /// The first broken link, if one was found.
    #[must_use]
    pub fn broken(&self) -> Option<BrokenLink> {
        self.broken
    }

    /// Verifies the first frame in `buf` (a segment header when a segment begins).
    /// `Ok(None)`: `buf` holds no whole frame yet.
    ///
    /// # Errors
    /// The first [`BrokenLink`], again on every later call.
    pub fn next<'b>(&mut self, buf: &'b [u8]) -> Result<Option<Verified<'b>>, BrokenLink> {
        if let Some(broken) = self.broken {
            return Err(broken);
        }
        let result = match self.seg.is_some() {
            false => self.header(buf),
            true => self.frame(buf),
        };
        if let Err(broken) = result {
            self.broken = Some(broken);
        }
        result
    }

    /// Ends the current segment; `leftover` is what the caller still holds of it (bytes
    /// [`next`](Verifier::next) did not consume). A non-empty leftover is a truncated tail.
    pub fn finish_segment(&mut self, leftover: &[u8]) -> SegmentEnd {
        let truncated =
            (!leftover.is_empty() || self.seg.is_none()).then_some((self.offset, leftover.len() as u64));
        let end = SegmentEnd {
            segment: self.seg.as_ref().map(|s| s.segment),
            closed: self.seg.as_ref().is_some_and(|s| s.closed),
            truncated: if self.broken.is_some() { None } else { truncated },
        };
        if self.broken.is_none() {
            self.expect = self.state();
        }
        self.seg = None;
        self.offset = 0;
        end
    }

    fn fail(&self, offset: u64, reason: BreakReason) -> BrokenLink {
        let (segment, record) = match (&self.seg, &self.expect) {
            (Some(seg), _) => (seg.segment, seg.next_record),
            (None, Some(expect)) => (expect.next_segment, expect.next_record),
            (None, None) => (0, 0),
        };
        BrokenLink { segment, offset, record, reason }
    }

    fn header<'b>(&mut self, buf: &'b [u8]) -> Result<Option<Verified<'b>>, BrokenLink> {
        let magic_seen = buf.len().min(MAGIC.len());
        if buf.get(..magic_seen) != MAGIC.get(..magic_seen) {
            return Err(self.fail(0, BreakReason::BadMagic));
        }
        let Some(head) = buf.get(..HEADER_LEN) else { return Ok(None) };
        let version = head.get(MAGIC.len()).copied().unwrap_or_default();
        if version != VERSION {
            return Err(self.fail(MAGIC.len() as u64, BreakReason::UnsupportedVersion(version)));
        }
        let frame = head.get(PREFIX_LEN..).unwrap_or_default();
        let at = PREFIX_LEN as u64;
        if frame.get(..FRAME_HEAD) != Some(&[ANCHOR_LEN as u8, 0, 0, 0, TYPE_HEADER][..]) {
            return Err(self.fail(at, BreakReason::MalformedFrame("segment header expected")));
        }
        let Some(anchor) = anchor_of(frame) else {
            return Err(self.fail(at, BreakReason::MalformedFrame("header flags")));
        };
        if anchor.closed {
            return Err(self.fail(at, BreakReason::MalformedFrame("header flags")));
        }
        let Some(mac) = self.keys.mac(anchor.mac_key_id).cloned() else {
            return Err(self.fail(at, BreakReason::UnknownKey(anchor.mac_key_id)));
        };
        let Some(tag) = check_tag(&mac, &anchor.chain, frame) else {
            return Err(self.fail(at, BreakReason::BadTag));
        };
        if let Some(expect) = self.expect {
            let why = if anchor.segment != expect.next_segment {
                Some("segment number")
            } else if anchor.record != expect.next_record {
                Some("record number")
            } else if !tags_equal(&anchor.chain, &expect.tag) {
                Some("chain tag")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(self.fail(at, BreakReason::Discontinuity(why)));
            }
        }
        self.seg = Some(InSegment {
            segment: anchor.segment,
            mac,
            enc_key_id: anchor.enc_key_id,
            encrypted: anchor.encrypted,
            chain: tag,
            next_record: anchor.record,
            closed: false,
        });
        self.offset = HEADER_LEN as u64;
        Ok(Some(Verified { consumed: HEADER_LEN, frame: Frame::Header(anchor) }))
    }

    fn frame<'b>(&mut self, buf: &'b [u8]) -> Result<Option<Verified<'b>>, BrokenLink> {
        let at = self.offset;
        let Some(seg) = self.seg.as_ref() else { return Ok(None) };
        if buf.is_empty() {
            return Ok(None);
        }
        if buf.len() < MAX_FRAME_LEN && buf.iter().all(|&b| b == 0) {
            // A zero-filled tail, as some file systems leave after a crash: more bytes are
            // needed to tell, and at the end of the segment it is a truncated tail.
            return Ok(None);
        }
        if seg.closed {
            return Err(self.fail(at, BreakReason::DataAfterClose));
        }
        let Some(head) = buf.first_chunk::<FRAME_HEAD>() else { return Ok(None) };
        let [l0, l1, l2, l3, kind] = *head;
        let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
        let min = match kind {
            TYPE_RECORD if seg.encrypted => RECORD_HEAD + GCM_TAG_LEN,
            TYPE_RECORD => RECORD_HEAD,
            TYPE_CHECKPOINT => ANCHOR_LEN,
            _ => return Err(self.fail(at, BreakReason::MalformedFrame("frame type"))),
        };
        let max = if kind == TYPE_CHECKPOINT { ANCHOR_LEN } else { min + MAX_BODY };
        if len < min || len > max {
            return Err(self.fail(at, BreakReason::MalformedFrame("frame length")));
        }
        let total = FRAME_HEAD + len + TAG_LEN;
        let Some(frame) = buf.get(..total) else { return Ok(None) };
        let Some(tag) = check_tag(&seg.mac, &seg.chain, frame) else {
            return Err(self.fail(at, BreakReason::BadTag));
        };
        let payload = frame.get(FRAME_HEAD..FRAME_HEAD + len).unwrap_or_default();
        let out = if kind == TYPE_CHECKPOINT {
            let anchor = anchor_of(frame);
            let Some(anchor) = anchor.filter(|a| {
                a.segment == seg.segment
                    && a.record == seg.next_record
                    && a.chain == seg.chain
                    && a.mac_key_id == seg.mac.id()
                    && a.enc_key_id == seg.enc_key_id
                    && a.encrypted == seg.encrypted
            }) else {
                return Err(self.fail(at, BreakReason::CheckpointMismatch));
            };
            if let Some(seg) = self.seg.as_mut() {
                seg.closed = anchor.closed;
            }
            Frame::Checkpoint(anchor)
        } else {
            let (clear, body) = payload.split_at(RECORD_HEAD);
            let mut time = [0u8; 8];
            time.copy_from_slice(clear.get(..8).unwrap_or(&[0; 8]));
            let kind = u16::from_le_bytes([
                clear.get(8).copied().unwrap_or_default(),
                clear.get(9).copied().unwrap_or_default(),
            ]);
            let mut aad = [0u8; FRAME_HEAD + RECORD_HEAD];
            aad.copy_from_slice(frame.get(..FRAME_HEAD + RECORD_HEAD).unwrap_or(&[0; 15]));
            let record = RawRecord {
                number: seg.next_record,
                segment: seg.segment,
                time: from_micros(u64::from_le_bytes(time)),
                kind: EventKind::from_code(kind),
                enc_key_id: seg.encrypted.then_some(seg.enc_key_id),
                aad,
                body,
            };
            if let Some(seg) = self.seg.as_mut() {
                seg.next_record = seg.next_record.saturating_add(1);
            }
            Frame::Record(record)
        };
        if let Some(seg) = self.seg.as_mut() {
            seg.chain = tag;
        }
        self.offset = self.offset.saturating_add(total as u64);
        Ok(Some(Verified { consumed: total, frame: out }))
    }
}

/// Parses the anchor of a header or checkpoint frame (`len | type | payload | tag`).
fn anchor_of(frame: &[u8]) -> Option<Anchor> {
    let payload: &[u8; ANCHOR_LEN] = frame.get(FRAME_HEAD..FRAME_HEAD + ANCHOR_LEN)?.try_into().ok()?;
    Anchor::decode(payload)
}

/// Checks the tag at the end of `frame` against HMAC(key, chain || frame-without-tag) in
/// constant time; returns the tag when it matches.
fn check_tag(mac: &MacKey, chain: &[u8; 32], frame: &[u8]) -> Option<[u8; 32]> {
    let split = frame.len().checked_sub(TAG_LEN)?;
    let (signed, tag) = frame.split_at(split);
    let mut ctx = mac.context();
    ctx.update(chain);
    ctx.update(signed);
    let expected = ctx.sign();
    if tags_equal(expected.as_ref(), tag) { tag.try_into().ok() } else { None }
}

/// Constant-time equality of two tags, with `subtle`: compared as 64-bit words (four
/// `ct_eq`s for a 32-byte tag), which costs less per record than `subtle`'s byte-wise
/// slice comparison while keeping its optimisation barriers.
fn tags_equal(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    if a.len() != b.len() || !a.len().is_multiple_of(8) {
        return a.ct_eq(b).into();
    }
    let mut equal = subtle::Choice::from(1);
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let x = u64::from_le_bytes(x.try_into().unwrap_or_default());
        let y = u64::from_le_bytes(y.try_into().unwrap_or_default());
        equal &= x.ct_eq(&y);
    }
    equal.into()
}

/// A truncated segment tail: which segment (by position in the input), where and how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Truncation {
    /// The segment's position in the input (0 for the first slice given).
    pub index: usize,
    /// The segment's sequence number, when its header was read.
    pub segment: Option<u64>,
    /// Where the partial frame starts.
    pub offset: u64,
    /// How many bytes were discarded.
    pub bytes: u64,
}

/// The most truncations a [`LogReport`] lists (more are only counted).
pub const MAX_LISTED: usize = 64;

/// What [`verify_log`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LogReport {
    /// Segments examined.
    pub segments: u64,
    /// Records verified.
    pub records: u64,
    /// Checkpoints verified (closing ones included).
    pub checkpoints: u64,
    /// The first segment's header: where the verified log starts.
    pub start: Option<Anchor>,
    /// The time of the first and the last verified record.
    pub first_time: Option<SystemTime>,
    /// The time of the last verified record.
    pub last_time: Option<SystemTime>,
    /// Records whose timestamp is earlier than the one before (a clock step, or tampering
    /// by someone holding the key).
    pub time_regressions: u64,
    /// Verified records by kind.
    pub by_kind: BTreeMap<EventKind, u64>,
    /// Crash-truncated tails (the first [`MAX_LISTED`]).
    pub truncated: Vec<Truncation>,
    /// How many segments had a truncated tail.
    pub truncated_count: u64,
    /// Segments before the last that were not closed (a crash; their tail may be missing).
    pub unclosed: u64,
    /// Whether the last segment was closed (a running writer keeps it open).
    pub last_closed: bool,
    /// The first broken link, and the position of its segment in the input.
    pub broken: Option<(usize, BrokenLink)>,
    /// Where the chain stands after the last verified frame.
    pub end: Option<ChainState>,
}

impl LogReport {
    /// Whether the log begins with the first segment ever written (nothing pruned).
    #[must_use]
    pub fn starts_at_genesis(&self) -> bool {
        self.start.is_some_and(|a| a.segment == 0 && a.record == 0 && a.chain == [0; 32])
    }

    /// No broken link: every verified record is authentic and in order (the log may still
    /// have truncated tails, be pruned, or have an open last segment).
    #[must_use]
    pub fn is_intact(&self) -> bool {
        self.broken.is_none()
    }

    /// Intact, starting at genesis, nothing truncated, every segment closed.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.is_intact()
            && self.starts_at_genesis()
            && self.truncated_count == 0
            && self.unclosed == 0
            && self.last_closed
    }

    /// Security-relevant events (see [`EventKind::is_anomaly`]) among the verified records.
    #[must_use]
    pub fn anomalous_events(&self) -> u64 {
        self.by_kind.iter().filter(|(k, _)| k.is_anomaly()).map(|(_, n)| n).sum()
    }
}

/// Verifies a log held in memory: segments in order (oldest first), each a whole file.
/// The first segment may start at genesis or after pruned ones; each later one must continue
/// the chain. Stops at the first broken link.
///
/// ```
/// use std::time::UNIX_EPOCH;
/// use postern::audit::{BreakReason, Event, KeyRing, MacKey, Writer, WriterConfig, verify_log};
///
/// let key = MacKey::new(1, &[42; 32]);
/// let mut writer = Writer::new(key.clone(), WriterConfig::default());
/// let mut seg = Vec::new();
/// writer.open_segment(UNIX_EPOCH, &mut seg).unwrap();
/// for session in 0..3 {
///     writer.append(&Event::SessionEnd { session, reason: "quit" }, UNIX_EPOCH, &mut seg).unwrap();
/// }
/// writer.close_segment(UNIX_EPOCH, &mut seg).unwrap();
///
/// let keys = KeyRing::new().with_mac(key);
/// assert!(verify_log(&keys, [seg.as_slice()]).is_clean());
/// let last = seg.len() - 1;
/// seg[last - 200] ^= 1; // flip one bit in a record
/// let report = verify_log(&keys, [seg.as_slice()]);
/// let (_, link) = report.broken.unwrap();
/// assert_eq!(link.reason, BreakReason::BadTag);
/// assert_eq!(report.records, link.record);
/// ```
pub fn verify_log<'a>(keys: &KeyRing, segments: impl IntoIterator<Item = &'a [u8]>) -> LogReport {
    let mut log = LogVerifier::new(keys.clone());
    for bytes in segments {
        if !log.add_segment(bytes, |_| {}) {
            break;
        }
    }
    log.finish()
}

/// [`verify_log`] one segment at a time, so that a tool holds only one segment in memory,
/// with a look at every verified record on the way.
///
/// ```
/// use std::time::UNIX_EPOCH;
/// use postern::audit::{Event, KeyRing, LogVerifier, MacKey, Writer, WriterConfig};
///
/// let key = MacKey::new(1, &[42; 32]);
/// let mut writer = Writer::new(key.clone(), WriterConfig::default());
/// let mut seg = Vec::new();
/// writer.open_segment(UNIX_EPOCH, &mut seg).unwrap();
/// writer.append(&Event::SessionEnd { session: 1, reason: "quit" }, UNIX_EPOCH, &mut seg).unwrap();
///
/// let mut log = LogVerifier::new(KeyRing::new().with_mac(key));
/// let mut lines = Vec::new();
/// log.add_segment(&seg, |raw| {
///     let mut line = String::new();
///     raw.record().unwrap().write_json(&mut line);
///     lines.push(line);
/// });
/// let report = log.finish();
/// assert!(report.is_intact() && !report.last_closed);
/// assert!(lines[0].contains(r#""kind":"session_end""#));
/// ```
#[derive(Debug)]
pub struct LogVerifier {
    verifier: Verifier,
    report: LogReport,
    last_time: Option<SystemTime>,
    previous_closed: bool,
    /// Counts of the known kinds by code, merged into `by_kind` at the end.
    known: [u64; EventKind::ALL.len() + 1],
}

impl LogVerifier {
    /// A verifier for a log whose first segment may start anywhere (genesis or after
    /// pruning).
    #[must_use]
    pub fn new(keys: KeyRing) -> Self {
        Self {
            verifier: Verifier::new(keys),
            report: LogReport::default(),
            last_time: None,
            previous_closed: true,
            known: [0; EventKind::ALL.len() + 1],
        }
    }

    /// Verifies the next segment (a whole file), calling `on_record` for every verified
    /// record. Returns `false` once the chain is broken (later segments are not examined).
    pub fn add_segment(&mut self, bytes: &[u8], mut on_record: impl FnMut(&RawRecord<'_>)) -> bool {
        let report = &mut self.report;
        if report.broken.is_some() {
            return false;
        }
        let index = usize::try_from(report.segments).unwrap_or(usize::MAX);
        if report.segments > 0 && !self.previous_closed {
            report.unclosed += 1;
        }
        report.segments += 1;
        let mut at = 0;
        loop {
            match self.verifier.next(bytes.get(at..).unwrap_or_default()) {
                Ok(Some(v)) => {
                    at += v.consumed;
                    match v.frame {
                        Frame::Header(anchor) => {
                            if report.start.is_none() {
                                report.start = Some(anchor);
                            }
                        }
                        Frame::Checkpoint(_) => report.checkpoints += 1,
                        Frame::Record(r) => {
                            report.records += 1;
                            match self.known.get_mut(usize::from(r.kind.code())) {
                                Some(n) if !matches!(r.kind, EventKind::Unknown(_)) => *n += 1,
                                _ => *report.by_kind.entry(r.kind).or_default() += 1,
                            }
                            if self.last_time.is_some_and(|t| r.time < t) {
                                report.time_regressions += 1;
                            }
                            report.first_time.get_or_insert(r.time);
                            report.last_time = Some(r.time);
                            self.last_time = Some(r.time);
                            on_record(&r);
                        }
                    }
                }
                Ok(None) => break,
                Err(link) => {
                    report.broken = Some((index, link));
                    break;
                }
            }
        }
        let end = self.verifier.finish_segment(bytes.get(at..).unwrap_or_default());
        self.previous_closed = end.closed;
        report.last_closed = end.closed;
        if let Some((offset, len)) = end.truncated {
            report.truncated_count += 1;
            if report.truncated.len() < MAX_LISTED {
                report.truncated.push(Truncation { index, segment: end.segment, offset, bytes: len });
            }
        }
        report.broken.is_none()
    }

    /// The report on everything added.
    #[must_use]
    pub fn finish(mut self) -> LogReport {
        for kind in EventKind::ALL {
            let n = self.known.get(usize::from(kind.code())).copied().unwrap_or_default();
            if n > 0 {
                self.report.by_kind.insert(kind, n);
            }
        }
        self.report.end = self.verifier.state();
        self.report
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::audit::{Event, Writer, WriterConfig};

    fn segment() -> (KeyRing, Vec<u8>) {
        let key = MacKey::new(1, &[1; 32]);
        let mut w = Writer::new(key.clone(), WriterConfig::default());
        let mut out = Vec::new();
        w.open_segment(UNIX_EPOCH, &mut out).unwrap();
        for session in 0..3 {
            w.append(&Event::SessionEnd { session, reason: "quit" }, UNIX_EPOCH, &mut out).unwrap();
        }
        w.close_segment(UNIX_EPOCH, &mut out).unwrap();
        (KeyRing::new().with_mac(key), out)
    }

    #[test]
    fn errors_are_sticky_and_precise() {
        let (keys, mut seg) = segment();
        let record_len = FRAME_HEAD + RECORD_HEAD + 8 + 2 + 4 + TAG_LEN;
        // The second record's body.
        let second = HEADER_LEN + record_len;
        seg[second + FRAME_HEAD + RECORD_HEAD] ^= 1;
        let mut v = Verifier::new(keys);
        let mut at = 0;
        let link = loop {
            match v.next(&seg[at..]) {
                Ok(Some(f)) => at += f.consumed,
                Ok(None) => panic!("not detected"),
                Err(link) => break link,
            }
        };
        assert_eq!(
            link,
            BrokenLink { segment: 0, offset: second as u64, record: 1, reason: BreakReason::BadTag }
        );
        assert_eq!(v.next(&seg[at..]), Err(link));
        assert_eq!(v.next(&[]), Err(link));
        assert_eq!(v.broken(), Some(link));
    }

    #[test]
    fn bad_magic_version_and_frames() {
        let (keys, seg) = segment();
        let mut bad = seg.clone();
        bad[0] = b'X';
        // Detected from the first byte, without waiting for a whole header.
        assert_eq!(Verifier::new(keys.clone()).next(&bad[..1]).unwrap_err().reason, BreakReason::BadMagic);
        let mut bad = seg.clone();
        bad[8] = 9;
        assert_eq!(
            Verifier::new(keys.clone()).next(&bad).unwrap_err().reason,
            BreakReason::UnsupportedVersion(9)
        );
        let mut bad = seg.clone();
        bad[HEADER_LEN + 4] = 77;
        let mut v = Verifier::new(keys.clone());
        let header = v.next(&bad).unwrap().unwrap();
        assert_eq!(
            v.next(&bad[header.consumed..]).unwrap_err().reason,
            BreakReason::MalformedFrame("frame type")
        );
        let mut bad = seg.clone();
        bad[HEADER_LEN + 3] = 0x7f; // a 2 GB length
        let mut v = Verifier::new(keys.clone());
        let header = v.next(&bad).unwrap().unwrap();
        assert_eq!(
            v.next(&bad[header.consumed..]).unwrap_err().reason,
            BreakReason::MalformedFrame("frame length")
        );
        // Bytes after the closing checkpoint.
        let mut bad = seg;
        bad.push(1);
        let report = verify_log(&keys, [bad.as_slice()]);
        assert_eq!(report.broken.unwrap().1.reason, BreakReason::DataAfterClose);
        assert_eq!(report.records, 3);
    }

    #[test]
    fn continuing_checks_the_anchor() {
        let (keys, seg) = segment();
        let state = ChainState { next_segment: 0, next_record: 0, tag: [0; 32] };
        let mut v = Verifier::continuing(keys.clone(), state);
        assert!(v.next(&seg).unwrap().is_some());
        let state = ChainState { next_segment: 0, next_record: 0, tag: [1; 32] };
        let mut v = Verifier::continuing(keys, state);
        assert_eq!(v.next(&seg).unwrap_err().reason, BreakReason::Discontinuity("chain tag"));
    }

    #[test]
    fn empty_and_short_segments_are_truncations() {
        let (keys, seg) = segment();
        for n in [0, 1, 9, HEADER_LEN - 1] {
            let report = verify_log(&keys, [&seg[..n]]);
            assert!(report.is_intact());
            assert_eq!(report.truncated_count, 1);
            assert_eq!(report.records, 0);
        }
    }
}
