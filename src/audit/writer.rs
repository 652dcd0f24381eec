//! The writer: events in, framed bytes to append out.

use std::time::SystemTime;

use ring::aead::Aad;

use super::event::{Event, to_micros};
use super::format::{
    ANCHOR_LEN, Anchor, FRAME_HEAD, GCM_TAG_LEN, MAGIC, RECORD_HEAD, TAG_LEN, TYPE_CHECKPOINT, TYPE_HEADER,
    TYPE_RECORD, VERSION, nonce,
};
use super::{AuditError, EncryptionKey, MAX_BODY, MacKey};

/// Where a chain stands: what a writer needs to continue a log after a restart, and what a
/// verifier reports at the end of what it checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainState {
    /// The sequence number of the next segment.
    pub next_segment: u64,
    /// The number of the next record.
    pub next_record: u64,
    /// The last tag of the chain (all zero for a new log).
    pub tag: [u8; 32],
}

impl ChainState {
    /// The state of a log with nothing in it.
    pub const GENESIS: ChainState = ChainState { next_segment: 0, next_record: 0, tag: [0; 32] };
}

/// Writer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriterConfig {
    /// A checkpoint is written after this many records in a segment (0: never, only the
    /// header and the closing checkpoint anchor the chain). Default 1024.
    pub checkpoint_every: u32,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self { checkpoint_every: 1024 }
    }
}

impl WriterConfig {
    /// Sets [`WriterConfig::checkpoint_every`].
    #[must_use]
    pub fn checkpoint_every(mut self, records: u32) -> Self {
        self.checkpoint_every = records;
        self
    }
}

#[derive(Debug)]
struct Open {
    segment: u64,
    encrypted: bool,
    enc_key_id: u32,
    bytes: u64,
    since_checkpoint: u32,
    started: SystemTime,
}

/// Turns events into framed, hash-chained bytes for the application to append to a segment
/// file. The writer never touches files: each call appends to a `Vec<u8>` the caller owns
/// (and may reuse), and nothing is allocated per record.
///
/// Order of calls: [`open_segment`](Writer::open_segment) (writes the header), any number of
/// [`append`](Writer::append) (with automatic checkpoints), then
/// [`close_segment`](Writer::close_segment) before opening the next one. After a restart,
/// never append to an existing segment: verify the log, take its
/// [`ChainState`] and [`Writer::resume`] into a new segment. Keys rotate at segment
/// boundaries ([`rotate_keys`](Writer::rotate_keys)).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use postern::audit::{Event, KeyRing, MacKey, Writer, WriterConfig, verify_log};
///
/// let key = MacKey::new(1, &[42; 32]);
/// let mut writer = Writer::new(key.clone(), WriterConfig::default());
/// let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
/// let mut segment = Vec::new();
/// writer.open_segment(now, &mut segment).unwrap();
/// let n = writer
///     .append(&Event::AuthSuccess { session: 1, mechanism: "PLAIN", user: "alice" }, now, &mut segment)
///     .unwrap();
/// assert_eq!(n, 0);
/// writer.close_segment(now, &mut segment).unwrap();
///
/// let report = verify_log(&KeyRing::new().with_mac(key), [segment.as_slice()]);
/// assert!(report.is_clean());
/// assert_eq!(report.records, 1);
/// ```
#[derive(Debug)]
pub struct Writer {
    mac: MacKey,
    encryption: Option<EncryptionKey>,
    pending: Option<(MacKey, Option<EncryptionKey>)>,
    config: WriterConfig,
    state: ChainState,
    open: Option<Open>,
}

impl Writer {
    /// A writer starting a new log.
    #[must_use]
    pub fn new(mac: MacKey, config: WriterConfig) -> Self {
        Self::resume(mac, config, ChainState::GENESIS)
    }

    /// A writer continuing a log from `state` (as reported by the verifier).
    #[must_use]
    pub fn resume(mac: MacKey, config: WriterConfig, state: ChainState) -> Self {
        Self { mac, encryption: None, pending: None, config, state, open: None }
    }

    /// Encrypts record bodies of the segments opened from now on.
    #[must_use]
    pub fn with_encryption(mut self, key: EncryptionKey) -> Self {
        self.encryption = Some(key);
        self
    }

    /// Switches to new keys at the next [`open_segment`](Writer::open_segment); the header
    /// of that segment is signed with the new MAC key and chains to the last tag of the old
    /// one, so a verifier holding both keys follows the rotation.
    pub fn rotate_keys(&mut self, mac: MacKey, encryption: Option<EncryptionKey>) {
        self.pending = Some((mac, encryption));
    }

    /// Where the chain stands.
    #[must_use]
    pub fn state(&self) -> ChainState {
        self.state
    }

    /// The bytes written to the open segment so far, `None` when no segment is open.
    #[must_use]
    pub fn segment_len(&self) -> Option<u64> {
        self.open.as_ref().map(|o| o.bytes)
    }

    /// When the open segment was started.
    #[must_use]
    pub fn segment_started(&self) -> Option<SystemTime> {
        self.open.as_ref().map(|o| o.started)
    }

    /// The sequence number of the open segment.
    #[must_use]
    pub fn segment(&self) -> Option<u64> {
        self.open.as_ref().map(|o| o.segment)
    }

    /// Starts a segment: appends its header (magic, version, key ids, chain anchor) to `out`,
    /// which should be the start of a new file. Returns the segment's sequence number.
    ///
    /// # Errors
    /// [`AuditError::SegmentOpen`] if a segment is still open.
    pub fn open_segment(&mut self, now: SystemTime, out: &mut Vec<u8>) -> Result<u64, AuditError> {
        if self.open.is_some() {
            return Err(AuditError::SegmentOpen);
        }
        if let Some((mac, encryption)) = self.pending.take() {
            self.mac = mac;
            self.encryption = encryption;
        }
        let segment = self.state.next_segment;
        let start = out.len();
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        let encrypted = self.encryption.is_some();
        let enc_key_id = self.encryption.as_ref().map_or(0, EncryptionKey::id);
        self.open =
            Some(Open { segment, encrypted, enc_key_id, bytes: 0, since_checkpoint: 0, started: now });
        self.write_anchor(TYPE_HEADER, false, now, out);
        self.state.next_segment = segment.saturating_add(1);
        self.add_bytes(out.len() - start);
        Ok(segment)
    }

    /// Appends one record to `out` and returns its number. A checkpoint follows it when
    /// [`WriterConfig::checkpoint_every`] records have been written since the last one.
    ///
    /// # Errors
    /// [`AuditError::NoSegment`] before [`open_segment`](Writer::open_segment).
    pub fn append(
        &mut self,
        event: &Event<'_>,
        now: SystemTime,
        out: &mut Vec<u8>,
    ) -> Result<u64, AuditError> {
        let Some(open) = self.open.as_ref() else { return Err(AuditError::NoSegment) };
        let segment = open.segment;
        let start = out.len();
        let number = self.state.next_record;
        out.extend_from_slice(&[0, 0, 0, 0, TYPE_RECORD]);
        out.extend_from_slice(&to_micros(now).to_le_bytes());
        out.extend_from_slice(&event.kind().code().to_le_bytes());
        let body_start = out.len();
        event.encode(out);
        let body_len = out.len() - body_start;
        let extra = if self.encryption.is_some() { GCM_TAG_LEN } else { 0 };
        if body_len > MAX_BODY {
            out.truncate(start);
            return Err(AuditError::TooLarge);
        }
        // body_len <= MAX_BODY, so the payload length fits in a u32.
        let payload_len = (RECORD_HEAD + body_len + extra) as u32;
        if let Some(len) = out.get_mut(start..start + 4) {
            len.copy_from_slice(&payload_len.to_le_bytes());
        }
        if let Some(key) = &self.encryption {
            let (head, body) = out.split_at_mut(body_start);
            let aad = Aad::from(head.get(start..).unwrap_or_default());
            let Ok(tag) = key.aead().seal_in_place_separate_tag(nonce(segment, number), aad, body) else {
                out.truncate(start);
                return Err(AuditError::TooLarge);
            };
            out.extend_from_slice(tag.as_ref());
        }
        let mut ctx = self.mac.context();
        ctx.update(&self.state.tag);
        ctx.update(out.get(start..).unwrap_or_default());
        let tag = ctx.sign();
        out.extend_from_slice(tag.as_ref());
        if let Ok(tag) = tag.as_ref().try_into() {
            self.state.tag = tag;
        }
        self.state.next_record = number.saturating_add(1);
        self.add_bytes(out.len() - start);
        let every = self.config.checkpoint_every;
        if let Some(open) = self.open.as_mut() {
            open.since_checkpoint = open.since_checkpoint.saturating_add(1);
            if every != 0 && open.since_checkpoint >= every {
                self.checkpoint(now, out)?;
            }
        }
        Ok(number)
    }

    /// Appends a checkpoint: an authenticated anchor from which a verifier can start in the
    /// middle of the segment (see [`Verifier::resync`](super::Verifier::resync)).
    ///
    /// # Errors
    /// [`AuditError::NoSegment`] when no segment is open.
    pub fn checkpoint(&mut self, now: SystemTime, out: &mut Vec<u8>) -> Result<(), AuditError> {
        if self.open.is_none() {
            return Err(AuditError::NoSegment);
        }
        let start = out.len();
        self.write_anchor(TYPE_CHECKPOINT, false, now, out);
        self.add_bytes(out.len() - start);
        if let Some(open) = self.open.as_mut() {
            open.since_checkpoint = 0;
        }
        Ok(())
    }

    /// Closes the segment with a final checkpoint. A verifier reports segments that end
    /// without one (a crash, or records cut off the end).
    ///
    /// # Errors
    /// [`AuditError::NoSegment`] when no segment is open.
    pub fn close_segment(&mut self, now: SystemTime, out: &mut Vec<u8>) -> Result<(), AuditError> {
        if self.open.is_none() {
            return Err(AuditError::NoSegment);
        }
        self.write_anchor(TYPE_CHECKPOINT, true, now, out);
        self.open = None;
        Ok(())
    }

    fn write_anchor(&mut self, kind: u8, closed: bool, now: SystemTime, out: &mut Vec<u8>) {
        let (segment, encrypted, enc_key_id) =
            self.open.as_ref().map_or((0, false, 0), |o| (o.segment, o.encrypted, o.enc_key_id));
        let anchor = Anchor {
            segment,
            record: self.state.next_record,
            time_us: to_micros(now),
            mac_key_id: self.mac.id(),
            enc_key_id,
            encrypted,
            closed,
            chain: self.state.tag,
        };
        let start = out.len();
        out.extend_from_slice(&(ANCHOR_LEN as u32).to_le_bytes());
        out.push(kind);
        anchor.encode(out);
        debug_assert_eq!(out.len() - start, FRAME_HEAD + ANCHOR_LEN);
        let mut ctx = self.mac.context();
        ctx.update(&self.state.tag);
        ctx.update(out.get(start..).unwrap_or_default());
        let tag = ctx.sign();
        out.extend_from_slice(tag.as_ref());
        debug_assert_eq!(tag.as_ref().len(), TAG_LEN);
        if let Ok(tag) = tag.as_ref().try_into() {
            self.state.tag = tag;
        }
    }

    fn add_bytes(&mut self, n: usize) {
        if let Some(open) = self.open.as_mut() {
            open.bytes = open.bytes.saturating_add(n as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::audit::{Frame, KeyRing, Verifier};

    fn event() -> Event<'static> {
        Event::SessionEnd { session: 1, reason: "quit" }
    }

    #[test]
    fn misuse_is_an_error_and_writes_nothing() {
        let mut w = Writer::new(MacKey::new(1, &[1; 32]), WriterConfig::default());
        let mut out = Vec::new();
        assert_eq!(w.append(&event(), UNIX_EPOCH, &mut out), Err(AuditError::NoSegment));
        assert_eq!(w.checkpoint(UNIX_EPOCH, &mut out), Err(AuditError::NoSegment));
        assert_eq!(w.close_segment(UNIX_EPOCH, &mut out), Err(AuditError::NoSegment));
        assert!(out.is_empty());
        assert_eq!(w.open_segment(UNIX_EPOCH, &mut out), Ok(0));
        let len = out.len();
        assert_eq!(w.open_segment(UNIX_EPOCH, &mut out), Err(AuditError::SegmentOpen));
        assert_eq!(out.len(), len);
        assert_eq!(w.segment_len(), Some(len as u64));
        w.close_segment(UNIX_EPOCH, &mut out).unwrap();
        assert_eq!(w.open_segment(UNIX_EPOCH, &mut out), Ok(1));
    }

    #[test]
    fn checkpoints_follow_the_configured_cadence() {
        let key = MacKey::new(1, &[1; 32]);
        let mut w = Writer::new(key.clone(), WriterConfig::default().checkpoint_every(3));
        let mut out = Vec::new();
        let t = UNIX_EPOCH + Duration::from_secs(5);
        w.open_segment(t, &mut out).unwrap();
        for _ in 0..7 {
            w.append(&event(), t, &mut out).unwrap();
        }
        let mut v = Verifier::new(KeyRing::new().with_mac(key));
        let mut kinds = String::new();
        let mut at = 0;
        while let Some(f) = v.next(&out[at..]).unwrap() {
            at += f.consumed;
            kinds.push(match f.frame {
                Frame::Header(_) => 'H',
                Frame::Checkpoint(a) => {
                    assert_eq!(a.time_us, 5_000_000);
                    'C'
                }
                Frame::Record(_) => 'r',
            });
        }
        assert_eq!(kinds, "HrrrCrrrCr");
        assert_eq!(at, out.len());
    }

    #[test]
    fn rotation_takes_effect_at_the_next_segment() {
        let mut w = Writer::new(MacKey::new(1, &[1; 32]), WriterConfig::default());
        let mut out = Vec::new();
        w.open_segment(UNIX_EPOCH, &mut out).unwrap();
        w.rotate_keys(MacKey::new(2, &[2; 32]), Some(EncryptionKey::new(7, &[3; 32])));
        w.append(&event(), UNIX_EPOCH, &mut out).unwrap();
        w.close_segment(UNIX_EPOCH, &mut out).unwrap();
        let mut second = Vec::new();
        w.open_segment(UNIX_EPOCH, &mut second).unwrap();
        let keys = KeyRing::new().with_mac(MacKey::new(1, &[1; 32])).with_mac(MacKey::new(2, &[2; 32]));
        let mut v = Verifier::new(keys);
        let mut at = 0;
        while let Some(f) = v.next(&out[at..]).unwrap() {
            at += f.consumed;
        }
        v.finish_segment(&[]);
        let Frame::Header(anchor) = v.next(&second).unwrap().unwrap().frame else { panic!() };
        assert_eq!((anchor.mac_key_id, anchor.enc_key_id, anchor.encrypted), (2, 7, true));
        assert_eq!((anchor.segment, anchor.record), (1, 1));
    }
}
