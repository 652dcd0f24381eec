//! The sealed envelope: a versioned header, the X-Wing encapsulation, and the HPKE
//! ciphertext, either in one piece or as a stream of fixed-size chunks.
//!
//! # Format (version 1)
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 4 | magic `PSTN` |
//! | 4 | 1 | version, 1 |
//! | 5 | 1 | mode: 0 single-shot, 1 stream |
//! | 6 | 2 | KEM id, 0x647A (X-Wing), big-endian |
//! | 8 | 2 | KDF id, 0x0001 (HKDF-SHA256) |
//! | 10 | 2 | AEAD id, 0x0002 (AES-256-GCM) |
//! | 12 | 4 | key id of the recipient key (see [`KeyRing`](super::KeyRing)) |
//! | 16 | 4 | stream: plaintext bytes per chunk; single-shot: 0 |
//! | 20 | 1120 | X-Wing ciphertext (HPKE `enc`) |
//! | 1140 | … | single-shot: `plaintext ‖ tag`; stream: the chunks |
//!
//! The HPKE `info` is the 20-byte header followed by the application's `info`, so a
//! changed header byte (another key id, mode or chunk size) makes opening fail.
//!
//! A stream's chunks are sealed in order with one HPKE context, so chunk *i* uses the
//! nonce `base_nonce XOR i`: a reordered, dropped or duplicated chunk fails to open. Every
//! chunk but the last holds exactly `chunk_size` plaintext bytes; the last holds
//! `0..=chunk_size` and is the only one sealed with the final flag (its AAD is `0x01 ‖
//! aad`, the others' `0x00 ‖ aad`). A stream cut at a chunk boundary therefore fails at
//! [`StreamOpener::finish`] with [`HybridError::Truncated`], and bytes after the last
//! chunk with [`HybridError::TrailingData`].
//!
//! **Plaintext release.** [`StreamOpener`] hands out a chunk's plaintext only after that
//! chunk's tag has been checked, but whether the stream is complete is only known at
//! [`StreamOpener::finish`]: an application that acts on plaintext before `finish`
//! succeeds must be able to take it back. [`open`] (whole envelope in memory) returns
//! nothing unless everything verified.

use ring::rand::SecureRandom;
use zeroize::Zeroizing;

use super::hpke::{self, ReceiverContext, SenderContext, TAG_LEN};
use super::xwing::{self, Ciphertext, PublicKey, SecretKey};
use super::{HybridError, KeyId};

/// The magic bytes every envelope starts with.
pub const MAGIC: [u8; 4] = *b"PSTN";
/// The envelope format version this code writes and reads.
pub const VERSION: u8 = 1;
/// Bytes of the header before the encapsulated key.
pub const HEADER_LEN: usize = 20;
/// Bytes of the header and the encapsulated key: where the ciphertext starts.
pub const PREFIX_LEN: usize = HEADER_LEN + xwing::CIPHERTEXT_LEN;
/// The default plaintext bytes per stream chunk (64 KiB).
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
/// The largest chunk size a stream may declare (16 MiB): bounds an opener's buffer.
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;

const MODE_SINGLE: u8 = 0;
const MODE_STREAM: u8 = 1;
const FLAG_MORE: u8 = 0;
const FLAG_FINAL: u8 = 1;

/// How an envelope carries its ciphertext.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// One HPKE message.
    Single,
    /// Fixed-size chunks, `chunk_size` plaintext bytes each (1..=[`MAX_CHUNK_SIZE`]).
    Stream {
        /// Plaintext bytes per chunk.
        chunk_size: u32,
    },
}

/// An envelope header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The recipient key the envelope was sealed to.
    pub key_id: KeyId,
    /// Single-shot or streamed.
    pub mode: Mode,
}

impl Header {
    /// The 20-byte encoding.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let (mode, chunk) = match self.mode {
            Mode::Single => (MODE_SINGLE, 0),
            Mode::Stream { chunk_size } => (MODE_STREAM, chunk_size),
        };
        let fields: [&[u8]; 8] = [
            &MAGIC,
            &[VERSION],
            &[mode],
            &hpke::KEM_ID.to_be_bytes(),
            &hpke::KDF_ID.to_be_bytes(),
            &hpke::AEAD_ID.to_be_bytes(),
            &self.key_id.0.to_be_bytes(),
            &chunk.to_be_bytes(),
        ];
        let mut at = 0;
        for field in fields {
            if let Some(dst) = out.get_mut(at..at + field.len()) {
                dst.copy_from_slice(field);
            }
            at += field.len();
        }
        out
    }

    /// Parses the header at the start of `bytes` (which may go on with the rest of the
    /// envelope). Each field is checked, in order, with its own error.
    ///
    /// ```
    /// use postern::hybrid::{HybridError, KeyId, envelope::{Header, Mode}};
    /// let header = Header { key_id: KeyId(7), mode: Mode::Stream { chunk_size: 4096 } };
    /// assert_eq!(Header::parse(&header.to_bytes())?, header);
    /// assert_eq!(Header::parse(b"PSTN\x01").unwrap_err(), HybridError::Truncated);
    /// assert_eq!(Header::parse(&[0; 20]).unwrap_err(), HybridError::BadMagic);
    /// # Ok::<(), HybridError>(())
    /// ```
    pub fn parse(bytes: &[u8]) -> Result<Self, HybridError> {
        let h: &[u8; HEADER_LEN] =
            bytes.get(..HEADER_LEN).and_then(|h| h.try_into().ok()).ok_or(HybridError::Truncated)?;
        let [m0, m1, m2, m3, version, mode, k0, k1, d0, d1, a0, a1, i0, i1, i2, i3, c0, c1, c2, c3] = *h;
        if [m0, m1, m2, m3] != MAGIC {
            return Err(HybridError::BadMagic);
        }
        if version != VERSION {
            return Err(HybridError::UnsupportedVersion(version));
        }
        let kem = u16::from_be_bytes([k0, k1]);
        if kem != hpke::KEM_ID {
            return Err(HybridError::UnsupportedAlgorithm { what: "KEM", id: kem });
        }
        let kdf = u16::from_be_bytes([d0, d1]);
        if kdf != hpke::KDF_ID {
            return Err(HybridError::UnsupportedAlgorithm { what: "KDF", id: kdf });
        }
        let aead = u16::from_be_bytes([a0, a1]);
        if aead != hpke::AEAD_ID {
            return Err(HybridError::UnsupportedAlgorithm { what: "AEAD", id: aead });
        }
        let key_id = KeyId(u32::from_be_bytes([i0, i1, i2, i3]));
        let chunk = u32::from_be_bytes([c0, c1, c2, c3]);
        let mode = match mode {
            MODE_SINGLE if chunk == 0 => Mode::Single,
            MODE_STREAM if (1..=MAX_CHUNK_SIZE).contains(&chunk) => Mode::Stream { chunk_size: chunk },
            MODE_SINGLE | MODE_STREAM => return Err(HybridError::ChunkSize(chunk)),
            other => return Err(HybridError::UnsupportedMode(other)),
        };
        Ok(Self { key_id, mode })
    }
}

/// The HPKE `info`: header ‖ application info.
fn hpke_info(header: &[u8; HEADER_LEN], info: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + info.len());
    out.extend_from_slice(header);
    out.extend_from_slice(info);
    out
}

/// Parses the header and the encapsulated key at the start of an envelope; returns them
/// and where the ciphertext starts.
pub fn parse_prefix(envelope: &[u8]) -> Result<(Header, Ciphertext), HybridError> {
    let header = Header::parse(envelope)?;
    let enc = envelope.get(HEADER_LEN..PREFIX_LEN).ok_or(HybridError::Truncated)?;
    Ok((header, Ciphertext::from_bytes(enc)?))
}

/// Seals `plaintext` to `recipient` as a single-shot envelope.
///
/// ```
/// use postern::hybrid::{KeyId, envelope, xwing::SecretKey};
/// let rng = ring::rand::SystemRandom::new();
/// let sk = SecretKey::generate(&rng)?;
/// let sealed = envelope::seal(&rng, sk.public_key(), KeyId(1), b"", b"", b"secret")?;
/// assert_eq!(&*envelope::open(&sk, &sealed, b"", b"")?, b"secret");
/// # Ok::<(), postern::hybrid::HybridError>(())
/// ```
pub fn seal(
    rng: &dyn SecureRandom,
    recipient: &PublicKey,
    key_id: KeyId,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, HybridError> {
    let header = Header { key_id, mode: Mode::Single }.to_bytes();
    let (enc, mut ctx) = hpke::setup_sender(rng, recipient, &hpke_info(&header, info))?;
    let mut out = Vec::with_capacity(PREFIX_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&header);
    out.extend_from_slice(enc.as_bytes());
    out.extend_from_slice(plaintext);
    let tag = ctx.seal_detached(aad, out.get_mut(PREFIX_LEN..).unwrap_or_default())?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Opens a whole envelope (single-shot or stream) with `sk`, which the caller picked by
/// the header's key id. Returns the plaintext only if every byte verified.
pub fn open(
    sk: &SecretKey,
    envelope: &[u8],
    info: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, HybridError> {
    let (header, enc) = parse_prefix(envelope)?;
    let body = envelope.get(PREFIX_LEN..).unwrap_or_default();
    match header.mode {
        Mode::Single => {
            let mut ctx = hpke::setup_receiver(sk, &enc, &hpke_info(&header.to_bytes(), info))?;
            ctx.open(aad, body)
        }
        Mode::Stream { .. } => {
            let mut opener = StreamOpener::new(sk, &header, &enc, info, aad)?;
            let mut out = Zeroizing::new(Vec::with_capacity(body.len()));
            opener.push(body, &mut out)?;
            opener.finish(&mut out)?;
            Ok(out)
        }
    }
}

/// Seals a stream: [`new`](Self::new) writes the header and encapsulated key,
/// [`push`](Self::push) seals each chunk as soon as it is known not to be the last, and
/// [`finish`](Self::finish) seals the last one. Memory: one chunk.
///
/// ```
/// use postern::hybrid::{KeyId, envelope::{self, StreamSealer}, xwing::SecretKey};
/// let rng = ring::rand::SystemRandom::new();
/// let sk = SecretKey::generate(&rng)?;
/// let mut sealed = Vec::new();
/// let mut sealer = StreamSealer::new(&rng, sk.public_key(), KeyId(1), 4, b"", b"", &mut sealed)?;
/// for piece in [&b"hello"[..], b", ", b"world"] {
///     sealer.push(piece, &mut sealed)?;
/// }
/// sealer.finish(&mut sealed)?;
/// assert_eq!(&*envelope::open(&sk, &sealed, b"", b"")?, b"hello, world");
/// # Ok::<(), postern::hybrid::HybridError>(())
/// ```
#[derive(Debug)]
pub struct StreamSealer {
    ctx: SenderContext,
    chunk: usize,
    /// Plaintext not sealed yet: at most one chunk.
    pending: Zeroizing<Vec<u8>>,
    /// The chunk AAD, `flag ‖ aad`.
    aad: Vec<u8>,
}

impl StreamSealer {
    /// Starts a stream to `recipient` with `chunk_size` plaintext bytes per chunk
    /// (1..=[`MAX_CHUNK_SIZE`]); appends the header and encapsulated key to `out`.
    pub fn new(
        rng: &dyn SecureRandom,
        recipient: &PublicKey,
        key_id: KeyId,
        chunk_size: u32,
        info: &[u8],
        aad: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Self, HybridError> {
        if !(1..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(HybridError::ChunkSize(chunk_size));
        }
        let header = Header { key_id, mode: Mode::Stream { chunk_size } }.to_bytes();
        let (enc, ctx) = hpke::setup_sender(rng, recipient, &hpke_info(&header, info))?;
        out.extend_from_slice(&header);
        out.extend_from_slice(enc.as_bytes());
        Ok(Self::with_context(ctx, chunk_size, aad))
    }

    /// [`new`](Self::new) with the encapsulation randomness given: for known-answer
    /// tests only.
    #[cfg(any(feature = "hybrid-hazmat", test))]
    #[allow(clippy::too_many_arguments)]
    pub fn new_derand(
        recipient: &PublicKey,
        eseed: &[u8; xwing::ENCAPSULATION_SEED_LEN],
        key_id: KeyId,
        chunk_size: u32,
        info: &[u8],
        aad: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Self, HybridError> {
        if !(1..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(HybridError::ChunkSize(chunk_size));
        }
        let header = Header { key_id, mode: Mode::Stream { chunk_size } }.to_bytes();
        let (enc, ctx) = hpke::setup_sender_derand(recipient, eseed, &hpke_info(&header, info))?;
        out.extend_from_slice(&header);
        out.extend_from_slice(enc.as_bytes());
        Ok(Self::with_context(ctx, chunk_size, aad))
    }

    fn with_context(ctx: SenderContext, chunk_size: u32, aad: &[u8]) -> Self {
        let chunk = usize::try_from(chunk_size).unwrap_or(usize::MAX);
        let mut chunk_aad = Vec::with_capacity(1 + aad.len());
        chunk_aad.push(FLAG_MORE);
        chunk_aad.extend_from_slice(aad);
        Self { ctx, chunk, pending: Zeroizing::new(Vec::with_capacity(chunk.min(1 << 20))), aad: chunk_aad }
    }

    /// Adds plaintext; appends every chunk that is now complete and not the last to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), HybridError> {
        if !self.pending.is_empty() || data.len() <= self.chunk {
            let take = (self.chunk - self.pending.len()).min(data.len());
            let (head, rest) = data.split_at(take);
            self.pending.extend_from_slice(head);
            data = rest;
            if data.is_empty() {
                return Ok(());
            }
            // A full chunk with more behind it: not the last.
            let pending = core::mem::take(&mut *self.pending);
            let sealed = self.emit(&pending, false, out);
            *self.pending = pending;
            self.pending.clear();
            sealed?;
        }
        while data.len() > self.chunk {
            let (chunk, rest) = data.split_at(self.chunk);
            self.emit(chunk, false, out)?;
            data = rest;
        }
        self.pending.extend_from_slice(data);
        Ok(())
    }

    /// Seals the last chunk (possibly empty) and ends the stream.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), HybridError> {
        let pending = core::mem::take(&mut *self.pending);
        let sealed = self.emit(&pending, true, out);
        *self.pending = pending;
        sealed
    }

    fn emit(&mut self, plain: &[u8], last: bool, out: &mut Vec<u8>) -> Result<(), HybridError> {
        if let Some(flag) = self.aad.first_mut() {
            *flag = if last { FLAG_FINAL } else { FLAG_MORE };
        }
        let start = out.len();
        out.reserve(plain.len() + TAG_LEN);
        out.extend_from_slice(plain);
        match self.ctx.seal_detached(&self.aad, out.get_mut(start..).unwrap_or_default()) {
            Ok(tag) => {
                out.extend_from_slice(&tag);
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }
}

/// Opens a stream incrementally: [`push`](Self::push) releases each chunk's plaintext
/// once its tag verified and it is known not to be the last; [`finish`](Self::finish)
/// verifies the last chunk and that the stream is complete. Errors are sticky. Memory:
/// one chunk.
#[derive(Debug)]
pub struct StreamOpener {
    ctx: ReceiverContext,
    /// Ciphertext bytes per full chunk (chunk size + tag).
    chunk: usize,
    /// Ciphertext not opened yet: at most one chunk.
    pending: Vec<u8>,
    aad: Vec<u8>,
    failed: Option<HybridError>,
}

impl StreamOpener {
    /// Starts opening a stream whose header and encapsulated key were parsed with
    /// [`parse_prefix`]; `sk` is the key for `header.key_id`.
    pub fn new(
        sk: &SecretKey,
        header: &Header,
        enc: &Ciphertext,
        info: &[u8],
        aad: &[u8],
    ) -> Result<Self, HybridError> {
        let Mode::Stream { chunk_size } = header.mode else {
            return Err(HybridError::UnsupportedMode(MODE_SINGLE));
        };
        let ctx = hpke::setup_receiver(sk, enc, &hpke_info(&header.to_bytes(), info))?;
        let chunk = usize::try_from(chunk_size).unwrap_or(usize::MAX).saturating_add(TAG_LEN);
        let mut chunk_aad = Vec::with_capacity(1 + aad.len());
        chunk_aad.push(FLAG_MORE);
        chunk_aad.extend_from_slice(aad);
        Ok(Self { ctx, chunk, pending: Vec::new(), aad: chunk_aad, failed: None })
    }

    /// Adds ciphertext (the bytes after [`PREFIX_LEN`]); appends the plaintext of every
    /// chunk that verified and is not the last to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), HybridError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if !self.pending.is_empty() || data.len() <= self.chunk {
            let take = (self.chunk - self.pending.len()).min(data.len());
            let (head, rest) = data.split_at(take);
            self.pending.extend_from_slice(head);
            data = rest;
            if data.is_empty() {
                return Ok(());
            }
            let pending = core::mem::take(&mut self.pending);
            let opened = self.open_chunk(&pending, false, out);
            self.pending = pending;
            self.pending.clear();
            opened?;
        }
        while data.len() > self.chunk {
            let (chunk, rest) = data.split_at(self.chunk);
            self.open_chunk(chunk, false, out)?;
            data = rest;
        }
        self.pending.extend_from_slice(data);
        Ok(())
    }

    /// Opens the last chunk and checks that the stream ended there.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), HybridError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.pending.len() < TAG_LEN {
            return Err(HybridError::Truncated);
        }
        let pending = core::mem::take(&mut self.pending);
        self.open_chunk(&pending, true, out)
    }

    fn set_flag(&mut self, last: bool) {
        if let Some(flag) = self.aad.first_mut() {
            *flag = if last { FLAG_FINAL } else { FLAG_MORE };
        }
    }

    fn open_chunk(&mut self, sealed: &[u8], last: bool, out: &mut Vec<u8>) -> Result<(), HybridError> {
        self.set_flag(last);
        let start = out.len();
        out.extend_from_slice(sealed);
        let opened =
            self.ctx.open_in_place(&self.aad, out.get_mut(start..).unwrap_or_default()).map(|p| p.len());
        match opened {
            Ok(len) => {
                out.truncate(start + len);
                Ok(())
            }
            Err(_) => {
                // Nothing of a chunk that failed is released.
                out.truncate(start);
                // Tell the likely cause: a valid chunk with the other flag means the
                // stream was cut (the chunk is not the last) or extended (it was).
                self.set_flag(!last);
                let error = if self.ctx.would_open(&self.aad, sealed) {
                    if last { HybridError::Truncated } else { HybridError::TrailingData }
                } else {
                    HybridError::Open
                };
                self.failed = Some(error);
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed_stream(sk: &SecretKey, chunk: u32, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut s =
            StreamSealer::new_derand(sk.public_key(), &[9; 64], KeyId(3), chunk, b"i", b"a", &mut out)
                .unwrap();
        s.push(plain, &mut out).unwrap();
        s.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn header_round_trip_and_errors() {
        for mode in
            [Mode::Single, Mode::Stream { chunk_size: 1 }, Mode::Stream { chunk_size: MAX_CHUNK_SIZE }]
        {
            let h = Header { key_id: KeyId(0xdead_beef), mode };
            assert_eq!(Header::parse(&h.to_bytes()).unwrap(), h);
        }
        let good = Header { key_id: KeyId(1), mode: Mode::Stream { chunk_size: 16 } }.to_bytes();
        let with = |i: usize, v: u8| {
            let mut b = good;
            b[i] = v;
            Header::parse(&b)
        };
        assert_eq!(with(0, b'X').unwrap_err(), HybridError::BadMagic);
        assert_eq!(with(4, 2).unwrap_err(), HybridError::UnsupportedVersion(2));
        assert_eq!(with(5, 9).unwrap_err(), HybridError::UnsupportedMode(9));
        assert_eq!(with(7, 0x20).unwrap_err(), HybridError::UnsupportedAlgorithm { what: "KEM", id: 0x6420 });
        assert_eq!(with(9, 3).unwrap_err(), HybridError::UnsupportedAlgorithm { what: "KDF", id: 3 });
        assert_eq!(with(11, 1).unwrap_err(), HybridError::UnsupportedAlgorithm { what: "AEAD", id: 1 });
        assert_eq!(with(5, 0).unwrap_err(), HybridError::ChunkSize(16));
        let mut zero = good;
        zero[16..].fill(0);
        assert_eq!(Header::parse(&zero).unwrap_err(), HybridError::ChunkSize(0));
        for len in 0..HEADER_LEN {
            assert_eq!(Header::parse(&good[..len]).unwrap_err(), HybridError::Truncated);
        }
    }

    #[test]
    fn stream_chunks_are_exact() {
        let sk = SecretKey::from_seed(&[1; 32]);
        for (len, chunks) in [(0, 1), (1, 1), (4, 1), (5, 2), (8, 2), (9, 3)] {
            let sealed = sealed_stream(&sk, 4, &vec![7; len]);
            assert_eq!(sealed.len(), PREFIX_LEN + len + chunks * TAG_LEN, "len {len}");
            assert_eq!(&*open(&sk, &sealed, b"i", b"a").unwrap(), &vec![7; len][..]);
        }
    }

    #[test]
    fn truncation_reordering_and_trailing_data_are_detected() {
        let sk = SecretKey::from_seed(&[2; 32]);
        let plain: Vec<u8> = (0..40u8).collect();
        let sealed = sealed_stream(&sk, 8, &plain); // 5 full chunks + an empty final one
        let c = 8 + TAG_LEN;
        // Cut after any whole chunk.
        for n in 0..5 {
            let cut = &sealed[..PREFIX_LEN + n * c];
            assert_eq!(open(&sk, cut, b"i", b"a").unwrap_err(), HybridError::Truncated, "{n} chunks");
        }
        // Cut inside a chunk.
        assert_eq!(open(&sk, &sealed[..sealed.len() - 1], b"i", b"a").unwrap_err(), HybridError::Open);
        // Swap chunks 1 and 2.
        let mut swapped = sealed.clone();
        let (a, b) = (PREFIX_LEN + c, PREFIX_LEN + 2 * c);
        let first = sealed[a..a + c].to_vec();
        swapped[a..a + c].copy_from_slice(&sealed[b..b + c]);
        swapped[b..b + c].copy_from_slice(&first);
        assert_eq!(open(&sk, &swapped, b"i", b"a").unwrap_err(), HybridError::Open);
        // A chunk appended after the final one.
        let mut longer = sealed.clone();
        longer.extend_from_slice(&sealed[PREFIX_LEN..PREFIX_LEN + c]);
        assert_eq!(open(&sk, &longer, b"i", b"a").unwrap_err(), HybridError::TrailingData);
        // Wrong AAD or info.
        assert_eq!(open(&sk, &sealed, b"i", b"b").unwrap_err(), HybridError::Open);
        assert_eq!(open(&sk, &sealed, b"j", b"a").unwrap_err(), HybridError::Open);
    }

    #[test]
    fn nothing_is_released_from_a_failed_chunk_and_errors_stick() {
        let sk = SecretKey::from_seed(&[3; 32]);
        let plain = vec![0x41u8; 64];
        let mut sealed = sealed_stream(&sk, 16, &plain);
        sealed[PREFIX_LEN + 2 * (16 + TAG_LEN) + 3] ^= 1; // third chunk
        let (header, enc) = parse_prefix(&sealed).unwrap();
        let mut opener = StreamOpener::new(&sk, &header, &enc, b"i", b"a").unwrap();
        let mut out = Vec::new();
        let mut error = None;
        for byte in &sealed[PREFIX_LEN..] {
            if let Err(e) = opener.push(std::slice::from_ref(byte), &mut out) {
                error = Some(e);
                break;
            }
        }
        assert_eq!(error, Some(HybridError::Open));
        assert_eq!(out, vec![0x41; 32], "exactly the two verified chunks");
        assert_eq!(opener.push(b"", &mut out).unwrap_err(), HybridError::Open);
        assert_eq!(opener.finish(&mut out).unwrap_err(), HybridError::Open);
    }

    #[test]
    fn header_is_authenticated() {
        let sk = SecretKey::from_seed(&[4; 32]);
        let sealed = sealed_stream(&sk, 8, b"some text here");
        let mut other_id = sealed.clone();
        other_id[15] ^= 1;
        assert_eq!(open(&sk, &other_id, b"i", b"a").unwrap_err(), HybridError::Open);
        let mut other_chunk = sealed.clone();
        other_chunk[19] = 9;
        assert!(open(&sk, &other_chunk, b"i", b"a").is_err());
    }
}
