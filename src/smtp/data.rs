//! Message-data receivers for `DATA` (dot-stuffed, RFC 5321 §4.5.2) and `BDAT`
//! (counted chunks, RFC 3030).
//!
//! # The rules, designed against SMTP smuggling
//! - The end of `DATA` is only `CRLF . CRLF`, where the first `CRLF` may be the start of
//!   the body (an empty message is `.CRLF`). A bare `LF`, a bare `CR`, `NUL` or a run of
//!   `CR`s never ends a message, under any policy.
//! - Dot-unstuffing happens only at a line start: the first byte of the body, or a byte
//!   after `CRLF` (and, under [`BareLineEnding::Normalize`], after a normalised bare
//!   line ending, as Postfix does).
//! - [`BareLineEnding::Reject`]: a bare `LF` or bare `CR` is a violation; the message is
//!   doomed, output stops, and the receiver keeps scanning to the real end so that no
//!   byte of the message body ever reaches the command parser.
//! - [`BareLineEnding::Normalize`]: every bare `LF` and bare `CR` is written out as `CRLF`;
//!   the terminator must still be a real `CRLF . CRLF`.
//! - Lines longer than the text-line limit (RFC 5321 §4.5.3.1.6: 1000 octets including
//!   `CRLF`, not counting a transparency dot) are a violation under both policies.
//!
//! Message bytes are appended to a caller-supplied `Vec<u8>`; the receiver itself holds
//! only a few bytes of state, whatever the input.
//!
//! # How it is fast
//! The byte-at-a-time state machine is the definition (the tests check the fast paths
//! against a verbatim copy of it, on any split of the input), but it only runs on the
//! few bytes where it is inside a line ending or a dot sequence. The rest goes through
//! two block paths that produce exactly what it would, counts and sizes included, in
//! discard mode too:
//! - The express lane takes 256-byte superblocks that need little work. Every byte pair
//!   is checked at once (a `CR` exactly before each `LF`; dots after `LF`) by compares
//!   the compiler turns into SIMD; lines are bounded per superblock and measured only
//!   near the limit; a few stuffed dots are dropped; the rest is copied out while it is
//!   in the cache.
//! - The exact path classifies a 64-byte window lane by lane from the two bytes on each
//!   side (bare endings, line starts and ends, dropped dots, the terminator) into a flag
//!   byte per lane, then counts, checks line lengths and writes the window from those
//!   flags: unchanged bytes as one pending run copied later, changes by splitting the
//!   run or by assembling the window in a staging buffer.
//!
//! After a failed express attempt, the exact path runs for a stretch that doubles with
//! each failure in a row, so that input built to defeat the express lane costs little.
//! The benches in `benches/smtp/data.rs` compare both receivers with smtp-proto.

use crate::line::BareLineEnding;

/// What a receiver found wrong with a message. All counts saturate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DataViolations {
    /// `LF` not preceded by `CR`.
    pub bare_lf: u64,
    /// `CR` not followed by `LF`.
    pub bare_cr: u64,
    /// Lines longer than the text-line limit.
    pub long_lines: u64,
}

impl DataViolations {
    /// `true` if nothing was found.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        *self == Self::default()
    }
}

/// Receives the body of a `DATA` command up to and including `CRLF . CRLF`.
///
/// ```
/// use postern::line::BareLineEnding;
/// use postern::smtp::data::DataReceiver;
///
/// let mut rx = DataReceiver::new(BareLineEnding::Reject, Some(1000));
/// let mut body = Vec::new();
/// let input = b"Subject: hi\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n";
/// let (used, done) = rx.ingest(input, &mut body);
/// assert!(done);
/// assert_eq!(&input[used..], b"QUIT\r\n");
/// assert_eq!(body, b"Subject: hi\r\n\r\n.leading dot\r\n");
/// assert!(rx.violations().is_clean());
/// ```
#[derive(Clone, Debug)]
pub struct DataReceiver {
    lines: Lines,
    state: State,
    /// `true` at a line start (for dot-unstuffing).
    line_start: bool,
    /// `true` if the current line start came from a real `CRLF` (or the body start), so
    /// that a `.CRLF` here ends the message.
    real_line_start: bool,
    received: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Inside a line.
    Text,
    /// After a `CR` that is not yet known to be followed by `LF`.
    Cr,
    /// After a dot at a line start.
    Dot,
    /// After a dot at a real line start followed by `CR`.
    DotCr,
    /// The terminator was seen.
    Done,
}

impl DataReceiver {
    /// Creates a receiver for one message.
    ///
    /// `max_text_line` is the longest allowed line in octets including `CRLF` (`None`
    /// for no limit; RFC 5321 says 1000).
    #[must_use]
    pub fn new(policy: BareLineEnding, max_text_line: Option<usize>) -> Self {
        Self {
            lines: Lines::new(policy, max_text_line),
            state: State::Text,
            line_start: true,
            real_line_start: true,
            received: 0,
        }
    }

    /// Stops appending message bytes to the output (the message is already refused, for
    /// example because it is too large); the end is still found exactly.
    pub fn set_discard(&mut self) {
        self.lines.discard = true;
    }

    /// `true` once output has stopped, by [`set_discard`](Self::set_discard) or because
    /// a violation doomed the message.
    #[must_use]
    pub fn is_discarding(&self) -> bool {
        self.lines.discard
    }

    /// `true` once the terminator has been seen.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Octets received so far, terminator included.
    #[must_use]
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Octets of message content produced so far (the message size), whether or not
    /// they were written out.
    #[must_use]
    pub fn message_size(&self) -> u64 {
        self.lines.written
    }

    /// What was wrong with the message so far.
    #[must_use]
    pub fn violations(&self) -> DataViolations {
        self.lines.violations
    }

    /// Scans `input`, appending message content to `out`.
    ///
    /// Returns how many bytes were consumed and whether the end of data was reached. When
    /// it was, the bytes after `consumed` belong to the next command.
    pub fn ingest(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        if self.state == State::Done {
            return (0, true);
        }
        let used = if self.lines.normalize() {
            self.scan::<true>(input, out)
        } else {
            self.scan::<false>(input, out)
        };
        self.received = self.received.saturating_add(used as u64);
        (used, self.state == State::Done)
    }

    /// The scanning loop: express lane over clean stretches, the exact path over
    /// windows that need work, and the byte stepper where the state machine is inside a
    /// line ending or a dot sequence. Returns the bytes consumed.
    fn scan<const NORM: bool>(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        let mut pos = 0;
        let mut out = Pending::new(out);
        let mut lane = Lane::new(self.lines.max_line);
        while let Some(&b) = input.get(pos) {
            // The fast paths need `Text` and the byte before `pos` in `input`.
            if self.state != State::Text || pos == 0 {
                out.flush(input, pos, self.lines.discard);
                self.step(b, out.vec());
                pos += 1;
                out.skip_to(pos);
                if self.state == State::Done {
                    break;
                }
                continue;
            }
            if lane.try_express(pos) {
                let end = express::<true>(&mut self.lines, self.line_start, input, pos, &mut out);
                if lane.record(pos, end) {
                    let at = input.get(end - 1) == Some(&LF);
                    self.line_start = at;
                    self.real_line_start = at;
                    pos = end;
                    continue;
                }
            }
            let mut starts = Starts { at: self.line_start, real: self.real_line_start };
            let used = window::<true, NORM>(&mut self.lines, &mut starts, input, pos, &mut out);
            self.line_start = starts.at;
            self.real_line_start = starts.real;
            if used == 0 {
                // A terminator, or a tail byte whose meaning depends on bytes not yet
                // received: the stepper takes it.
                out.flush(input, pos, self.lines.discard);
                self.step(b, out.vec());
                pos += 1;
                out.skip_to(pos);
                if self.state == State::Done {
                    break;
                }
            }
            pos += used;
        }
        out.flush(input, pos, self.lines.discard);
        pos
    }

    /// A bare line ending; under `Normalize` it ends the line.
    fn bare_ending(&mut self, out: &mut Vec<u8>, lf: bool) {
        if self.lines.bare(out, lf) {
            self.line_start = true;
            self.real_line_start = false;
        } else {
            self.line_start = false;
        }
    }

    /// The byte-at-a-time state machine (the reference semantics).
    fn step(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.state {
            State::Done => {}
            State::Cr => {
                if b == LF {
                    self.lines.emit(out, b"\r\n");
                    self.lines.line_len = self.lines.line_len.saturating_add(2);
                    self.lines.end_line();
                    self.line_start = true;
                    self.real_line_start = true;
                    self.state = State::Text;
                } else {
                    // The CR was bare.
                    self.bare_ending(out, false);
                    self.state = State::Text;
                    self.step(b, out);
                }
            }
            State::Dot => {
                if b == CR && self.real_line_start {
                    self.state = State::DotCr;
                } else if b == CR || b == LF {
                    // A line holding only a dot (not a terminator): keep the dot.
                    self.lines.emit(out, b".");
                    self.lines.line_len = self.lines.line_len.saturating_add(1);
                    self.state = State::Text;
                    self.step(b, out);
                } else {
                    // A stuffed dot: drop it and keep the rest of the line.
                    self.state = State::Text;
                    self.step(b, out);
                }
            }
            State::DotCr => {
                if b == LF {
                    self.state = State::Done;
                } else {
                    // ".\r" then something else: the dot is content, the CR is bare.
                    self.lines.emit(out, b".");
                    self.lines.line_len = self.lines.line_len.saturating_add(1);
                    self.state = State::Cr;
                    self.step(b, out);
                }
            }
            State::Text => {
                let at_start = self.line_start;
                self.line_start = false;
                match b {
                    DOT if at_start => self.state = State::Dot,
                    CR => self.state = State::Cr,
                    LF => self.bare_ending(out, true),
                    _ => {
                        self.lines.emit(out, &[b]);
                        self.lines.line_len = self.lines.line_len.saturating_add(1);
                    }
                }
            }
        }
    }
}

/// Receives the chunks of a `BDAT` transaction (RFC 3030): exactly `size` octets per
/// chunk, no dot-stuffing, with the same line-ending and line-length checks as
/// [`DataReceiver`] carried across chunk boundaries.
///
/// ```
/// use postern::line::BareLineEnding;
/// use postern::smtp::data::BdatReceiver;
///
/// let mut rx = BdatReceiver::new(BareLineEnding::Reject, Some(1000));
/// let mut body = Vec::new();
/// rx.start_chunk(9);
/// let (used, chunk_done) = rx.ingest(b"Hi\r\n.\r\n\r\nQUIT", &mut body);
/// assert_eq!((used, chunk_done), (9, true));
/// assert_eq!(body, b"Hi\r\n.\r\n\r\n");
/// ```
#[derive(Clone, Debug)]
pub struct BdatReceiver {
    lines: Lines,
    remaining: u64,
    after_cr: bool,
}

impl BdatReceiver {
    /// Creates a receiver for one message.
    #[must_use]
    pub fn new(policy: BareLineEnding, max_text_line: Option<usize>) -> Self {
        Self { lines: Lines::new(policy, max_text_line), remaining: 0, after_cr: false }
    }

    /// Expects a new chunk of `size` octets.
    pub fn start_chunk(&mut self, size: u64) {
        self.remaining = size;
    }

    /// Octets of the current chunk still expected.
    #[must_use]
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Stops appending content to the output; chunks are still counted exactly.
    pub fn set_discard(&mut self) {
        self.lines.discard = true;
    }

    /// `true` once output has stopped.
    #[must_use]
    pub fn is_discarding(&self) -> bool {
        self.lines.discard
    }

    /// Octets of message content produced so far.
    #[must_use]
    pub fn message_size(&self) -> u64 {
        self.lines.written
    }

    /// What was wrong with the message so far. A `CR` ending the last chunk is only
    /// counted by [`finish`](Self::finish).
    #[must_use]
    pub fn violations(&self) -> DataViolations {
        self.lines.violations
    }

    /// Ends the message (after the `LAST` chunk): a trailing bare `CR` or an overlong
    /// last line is counted.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.after_cr {
            self.after_cr = false;
            self.lines.bare(out, false);
        }
        self.lines.end_line();
    }

    /// Consumes up to the rest of the current chunk from `input`, appending content to
    /// `out`. Returns the bytes consumed and whether the chunk is complete.
    pub fn ingest(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        let take = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(input.len());
        let chunk = input.get(..take).unwrap_or_default();
        if self.lines.normalize() {
            self.scan::<true>(chunk, out);
        } else {
            self.scan::<false>(chunk, out);
        }
        self.remaining -= take as u64;
        (take, self.remaining == 0)
    }

    /// Same structure as [`DataReceiver::scan`], without dots; consumes all of `chunk`.
    fn scan<const NORM: bool>(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut pos = 0;
        let mut out = Pending::new(out);
        let mut lane = Lane::new(self.lines.max_line);
        while let Some(&b) = chunk.get(pos) {
            if self.after_cr || pos == 0 {
                out.flush(chunk, pos, self.lines.discard);
                self.step(b, out.vec());
                pos += 1;
                out.skip_to(pos);
                continue;
            }
            if lane.try_express(pos) {
                let end = express::<false>(&mut self.lines, false, chunk, pos, &mut out);
                if lane.record(pos, end) {
                    pos = end;
                    continue;
                }
            }
            let mut starts = Starts { at: false, real: false };
            let used = window::<false, NORM>(&mut self.lines, &mut starts, chunk, pos, &mut out);
            if used == 0 {
                out.flush(chunk, pos, self.lines.discard);
                self.step(b, out.vec());
                pos += 1;
                out.skip_to(pos);
            }
            pos += used;
        }
        out.flush(chunk, pos, self.lines.discard);
    }

    /// The byte-at-a-time state machine (the reference semantics).
    fn step(&mut self, b: u8, out: &mut Vec<u8>) {
        if self.after_cr {
            self.after_cr = false;
            if b == LF {
                self.lines.emit(out, b"\r\n");
                self.lines.line_len = self.lines.line_len.saturating_add(2);
                self.lines.end_line();
                return;
            }
            self.lines.bare(out, false);
        }
        match b {
            CR => self.after_cr = true,
            LF => {
                self.lines.bare(out, true);
            }
            _ => {
                self.lines.emit(out, &[b]);
                self.lines.line_len = self.lines.line_len.saturating_add(1);
            }
        }
    }
}

const CR: u8 = b'\r';
const LF: u8 = b'\n';
const DOT: u8 = b'.';

/// Line, size and violation bookkeeping shared by both receivers.
#[derive(Clone, Debug)]
struct Lines {
    policy: BareLineEnding,
    max_line: Option<usize>,
    /// Octets of the current line so far, including its terminator once seen (a
    /// transparency dot does not count; a normalised bare ending counts as `CRLF`).
    line_len: usize,
    discard: bool,
    written: u64,
    violations: DataViolations,
}

impl Lines {
    fn new(policy: BareLineEnding, max_line: Option<usize>) -> Self {
        Self {
            policy,
            max_line,
            line_len: 0,
            discard: false,
            written: 0,
            violations: DataViolations::default(),
        }
    }

    fn normalize(&self) -> bool {
        self.policy == BareLineEnding::Normalize
    }

    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        self.written = self.written.saturating_add(bytes.len() as u64);
        if !self.discard {
            out.extend_from_slice(bytes);
        }
    }

    /// Ends the current line, after its terminator: an overlong line dooms the message.
    fn end_line(&mut self) {
        if let Some(max) = self.max_line
            && self.line_len > max
        {
            self.violations.long_lines = self.violations.long_lines.saturating_add(1);
            self.discard = true;
        }
        self.line_len = 0;
    }

    /// A bare `LF` (or `CR`): counted; under `Normalize` written out as `CRLF` and the
    /// line ends (returns `true`), otherwise the message is doomed.
    fn bare(&mut self, out: &mut Vec<u8>, lf: bool) -> bool {
        let n = if lf { &mut self.violations.bare_lf } else { &mut self.violations.bare_cr };
        *n = n.saturating_add(1);
        if self.normalize() {
            self.emit(out, b"\r\n");
            self.line_len = self.line_len.saturating_add(2);
            self.end_line();
            true
        } else {
            self.discard = true;
            self.line_len = self.line_len.saturating_add(1);
            false
        }
    }
}

/// The output side of a scan: `out`; then bytes the exact path assembled (`stage`),
/// kept here to save a copy call per window; then a run of input bytes `[run, pos)` that
/// are known to be written out verbatim and not copied yet (copied in one piece later).
struct Pending<'a> {
    out: &'a mut Vec<u8>,
    /// Made (zeroed) on first use only, so that short calls do not pay for it.
    stage: Option<[u8; STAGE]>,
    staged: usize,
    run: usize,
}

/// Bytes of assembled output kept before copying them to `out`.
const STAGE: usize = 2048;
/// Room the exact path needs in the stage for one window: two bytes per lane, and a
/// 16-byte copy's overrun.
const WINDOW_OUT: usize = 2 * LANES + 16;

impl<'a> Pending<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out, stage: None, staged: 0, run: 0 }
    }

    /// `out`, for the stepper (after a [`flush`](Self::flush)).
    fn vec(&mut self) -> &mut Vec<u8> {
        debug_assert_eq!(self.staged, 0);
        self.out
    }

    /// Writes out what is staged and the pending run up to `pos` (or drops the run when
    /// discarding).
    fn flush(&mut self, input: &[u8], pos: usize, discard: bool) {
        if self.staged > 0 {
            let stage = self.stage.as_ref().and_then(|s| s.get(..self.staged));
            self.out.extend_from_slice(stage.unwrap_or_default());
            self.staged = 0;
        }
        if !discard && let Some(run) = input.get(self.run..pos) {
            self.out.extend_from_slice(run);
        }
        self.run = pos;
    }

    /// Starts the pending run at `pos` (the bytes before it were handled otherwise).
    fn skip_to(&mut self, pos: usize) {
        self.run = pos;
    }

    /// Room for one window's output at the end of the stage, the run up to `pos` being
    /// written out first; the caller then adds what it wrote with [`staged`](Self::staged).
    /// (Never `None`: after the flush, `staged + WINDOW_OUT <= STAGE`.)
    fn window_room(&mut self, input: &[u8], pos: usize) -> Option<&mut [u8; WINDOW_OUT]> {
        if self.run < pos || self.staged + WINDOW_OUT > STAGE {
            self.flush(input, pos, false);
        }
        let stage = self.stage.get_or_insert([0; STAGE]);
        stage.get_mut(self.staged..)?.first_chunk_mut()
    }

    /// Adds `n` bytes written at the start of the room to the stage.
    fn staged(&mut self, n: usize) {
        self.staged += n;
    }
}

/// When to try the express lane: always at first, and again after a failed attempt only
/// once the exact path has covered a stretch that doubles with each failure in a row,
/// so that input which defeats the express lane wastes little work on it.
struct Lane {
    enabled: bool,
    not_before: usize,
    backoff: usize,
}

impl Lane {
    /// The express lane checks only the first line ending in each superblock, which is
    /// enough for limits of at least a superblock.
    fn new(max_line: Option<usize>) -> Self {
        Self { enabled: max_line.is_none_or(|max| max >= SUPER), not_before: 0, backoff: SUPER }
    }

    fn try_express(&self, pos: usize) -> bool {
        self.enabled && pos >= self.not_before
    }

    /// Records an attempt from `pos` that ended at `end`; `true` if it made progress.
    /// Either way, what stopped it is left to the exact path.
    fn record(&mut self, pos: usize, end: usize) -> bool {
        if end > pos {
            self.not_before = end.saturating_add(SUPER);
            self.backoff = SUPER;
            true
        } else {
            self.not_before = pos.saturating_add(self.backoff);
            self.backoff = (self.backoff * 2).min(64 * SUPER);
            false
        }
    }
}

/// Bytes per superblock of the express lane.
const SUPER: usize = 256;

/// The express lane: consumes whole superblocks from `pos` as long as they need little
/// work (every `CR` followed by `LF`, every `LF` preceded by `CR`, no line over the
/// limit, and at most a few dots at line starts, all of them stuffed: followed by neither
/// `CR` nor `LF`), copying them out while they are hot in the cache and dropping the
/// stuffed dots. Returns the end of what it consumed (`pos` if nothing).
///
/// Needs the state machine in `Text` with `pos >= 1`; like every path here it never
/// stops right after a `CR`, so the byte before `pos` is never a `CR`. Each superblock
/// `[s, s + 256)` is checked as 256 byte pairs `(s + j, s + j + 1)`, one byte of
/// lookahead, so the pair that straddles two superblocks is checked with the first; the
/// pair ending at `pos` is checked here first. What is accepted becomes the pending run
/// (minus dropped dots), copied out superblock by superblock.
fn express<const DOTS: bool>(
    lines: &mut Lines,
    line_start: bool,
    input: &[u8],
    pos: usize,
    out: &mut Pending<'_>,
) -> usize {
    let discard = lines.discard;
    let mut end = pos;
    let mut dropped = 0;
    match input.get(pos) {
        Some(&LF) | None => return pos,
        Some(&DOT) if DOTS && line_start => {
            if !stuffed(input, pos) {
                return pos;
            }
            out.flush(input, pos, discard);
            out.skip_to(pos + 1);
            (end, dropped) = (pos + 1, 1);
        }
        Some(_) => {}
    }
    let from = end;
    let limit = lines.max_line.unwrap_or(usize::MAX);
    // An upper bound on the length of the current line at `end` (counting dropped dots,
    // which only makes it larger); `exact` when it was measured.
    let mut bound = lines.line_len.saturating_add(end - pos);
    let mut exact = true;
    while let Some((head, next)) = input.get(end..).and_then(superblock_pairs) {
        let (pairs_ok, dots_ok) = superblock_check::<DOTS>(head, next);
        if !pairs_ok {
            break;
        }
        if bound.saturating_add(SUPER) > limit && !exact {
            // A line ending here might be too long: measure the current line.
            let done = input.get(from..end).unwrap_or_default();
            bound = match memchr::memrchr(LF, done) {
                Some(last) => done.len() - last - 1,
                None => bound.min(lines.line_len.saturating_add(end - pos)),
            };
            exact = true;
        }
        if bound.saturating_add(SUPER) <= limit {
            // No line ending here can be too long.
            bound += SUPER;
            exact = false;
        } else {
            // One could: check the first line ending here.
            if !dots_ok {
                break;
            }
            match memchr::memchr(LF, head) {
                Some(first) if bound.saturating_add(first + 1) > limit => break,
                Some(_) => bound = SUPER - 1 - memchr::memrchr(LF, head).unwrap_or_default(),
                None => bound = bound.saturating_add(SUPER),
            }
        }
        if DOTS && !dots_ok {
            // Dots after LF here (the last may be the next superblock's first byte):
            // all must be stuffed, and few.
            let mut dots = [0; MAX_EXPRESS_DOTS];
            let mut n = 0;
            for d in memchr::memchr_iter(LF, head).map(|q| end + q + 1) {
                if input.get(d) == Some(&DOT) {
                    match dots.get_mut(n) {
                        Some(slot) if stuffed(input, d) => *slot = d,
                        _ => {
                            n = usize::MAX;
                            break;
                        }
                    }
                    n += 1;
                }
            }
            let Some(dots) = dots.get(..n) else {
                break;
            };
            for &d in dots {
                out.flush(input, d, discard);
                out.skip_to(d + 1);
            }
            dropped += n;
        }
        end += SUPER;
        // Copy out all but the last byte, which may be a CR given back below.
        if out.run < end - 1 {
            out.flush(input, end - 1, discard);
        }
    }
    // A dot dropped as the first byte of the superblock that was not taken is consumed.
    end = end.max(out.run);
    // Never stop right after a CR: whatever runs next must not start with its LF.
    if end > from && input.get(end - 1) == Some(&CR) {
        end -= 1;
    }
    if end > pos {
        lines.written = lines.written.saturating_add((end - pos - dropped) as u64);
        let done = input.get(from..end).unwrap_or_default();
        lines.line_len = match memchr::memrchr(LF, done) {
            // Dots after LF in here were all dropped.
            Some(last) => done.len() - last - 1 - usize::from(done.get(last + 1) == Some(&DOT)),
            None => lines.line_len.saturating_add(end - pos - usize::from(from > pos)),
        };
    }
    end
}

/// Most dots at line starts the express lane drops per superblock (denser ones are left
/// to the exact path, which handles them per window).
const MAX_EXPRESS_DOTS: usize = 8;

/// `true` if the dot at `d` (at a line start) is stuffed: neither `CR` nor `LF` follows
/// (`false` if what follows is not known yet).
fn stuffed(input: &[u8], d: usize) -> bool {
    !matches!(input.get(d + 1), Some(&CR | &LF) | None)
}

/// The superblock at the start of `rest` and the same bytes shifted by one.
fn superblock_pairs(rest: &[u8]) -> Option<(&[u8; SUPER], &[u8; SUPER])> {
    let head = rest.get(..SUPER)?.try_into().ok()?;
    let next = rest.get(1..=SUPER)?.try_into().ok()?;
    Some((head, next))
}

/// For the pairs `(x, y)` of a superblock: whether `x` is `CR` exactly when `y` is `LF`
/// in all of them, and (with dots) whether no `y` is a dot after an `x` that is `LF`.
/// Written as OR-reductions over byte lanes so that it compiles to SIMD compares; kept
/// out of line, where the compiler unrolls it fully (inlined, it chose a slower loop).
#[inline(never)]
fn superblock_check<const DOTS: bool>(head: &[u8; SUPER], next: &[u8; SUPER]) -> (bool, bool) {
    let mut pairs = 0u8;
    let mut dots = 0u8;
    for (&x, &y) in head.iter().zip(next) {
        pairs |= u8::from(x == CR) ^ u8::from(y == LF);
        if DOTS {
            dots |= u8::from(x == LF) & u8::from(y == DOT);
        }
    }
    (pairs == 0, dots == 0)
}

/// Bytes per window of the exact path.
const LANES: usize = 64;

/// Line-start flags at the current position (`DATA` only).
struct Starts {
    /// The position is a line start.
    at: bool,
    /// ... after a real `CRLF` (or the body start).
    real: bool,
}

/// The exact path: classifies a window of up to 64 bytes at `pos` all at once, lane by
/// lane from the bytes around each lane (two before, two after), then writes out,
/// counts and checks it. Returns the bytes consumed: the whole window, or less when it
/// holds the terminator (the window stops just before it), when its last byte is a `CR`
/// (left to the next window with its `LF`) or when the input ends so close after it
/// that a lane's meaning is not known yet; `0` leaves the next byte to the stepper.
/// Needs the state machine in `Text`.
///
/// Per lane: a bare `LF` has no `CR` before it, a bare `CR` no `LF` after it; a line
/// ends at a real `CRLF` (and, under `Normalize`, at a bare ending) and the next lane
/// starts a line; a dot there is dropped unless `CR` or `LF` follows, and is the
/// terminator if `CR LF` follows at a real line start. The lane loop compiles to SIMD
/// compares and packs those facts into one flag byte per lane; everything that varies
/// per window (where the dropped dots, the bare endings and the line ends are) is then
/// read from eight words of flags or from bitmasks made from them.
// Indexing: lanes are below 64 (masked where the compiler cannot see it) and reach at
// most 4 further, into arrays of 64 or WINDOW_BYTES = 82.
#[allow(clippy::indexing_slicing)]
fn window<const DOTS: bool, const NORM: bool>(
    lines: &mut Lines,
    starts: &mut Starts,
    input: &[u8],
    pos: usize,
    out: &mut Pending<'_>,
) -> usize {
    let rest = input.get(pos..).unwrap_or_default();
    let avail = rest.len();
    // w[0..2]: the two bytes before `pos` (the byte before `pos` is never a CR), then the
    // window, two bytes of lookahead, and more up to WINDOW_BYTES so that 16-byte copies
    // from any lane stay inside. Read in place when the input has all of them, which
    // avoids a copy whose stores the loads below would stall on.
    let mut local = [0u8; WINDOW_BYTES];
    let w: &[u8; WINDOW_BYTES] = match pos
        .checked_sub(2)
        .and_then(|from| input.get(from..from + WINDOW_BYTES))
        .and_then(|w| w.try_into().ok())
    {
        Some(w) => {
            debug_assert_eq!((starts.at, starts.at && starts.real), line_start_in::<DOTS, NORM>(w));
            w
        }
        None => {
            // A line start is encoded as the CRLF or bare LF before it; zeros are neither
            // CR, LF nor dot.
            if DOTS && starts.at {
                local[1] = LF;
                if starts.real {
                    local[0] = CR;
                }
            }
            if let Some(dst) = local.get_mut(2..2 + avail.min(LANES + 2)) {
                dst.copy_from_slice(rest.get(..dst.len()).unwrap_or_default());
            }
            &local
        }
    };

    // Per-lane classification (vectorised) into flag bytes.
    let mut flags = [0u8; LANES];
    for (i, f) in flags.iter_mut().enumerate() {
        let (p2, p1, b, n1, n2) = (w[i], w[i + 1], w[i + 2], w[i + 3], w[i + 4]);
        let lf = b == LF;
        let p1_cr = p1 == CR;
        let bare_lf = lf & !p1_cr;
        let bare_cr = (b == CR) & (n1 != LF);
        let (mut drop, mut term) = (false, false);
        if DOTS {
            let real = (p1 == LF) & (p2 == CR);
            let start = if NORM { (p1 == LF) | (p1_cr & !lf) } else { real };
            let dot = start & (b == DOT);
            drop = dot & (n1 != CR) & (n1 != LF);
            term = dot & real & (n1 == CR) & (n2 == LF);
        }
        let end = if NORM { lf | bare_cr } else { lf & p1_cr };
        *f = flag(drop, DROP)
            | flag(end, END)
            | flag(bare_lf, BARE_LF)
            | flag(bare_cr, BARE_CR)
            | flag(term, TERM);
    }
    let mut words = [0u64; LANES / 8];
    for (word, lanes) in words.iter_mut().zip(flags.chunks_exact(8)) {
        *word = u64::from_le_bytes(lanes.try_into().unwrap_or_default());
    }
    let any = words.iter().fold(0, |a, &x| a | x);

    // How many lanes are known: all of them, unless the input ends within two bytes of
    // the window end and a last lane still depends on what comes next.
    let mut n = avail.min(LANES);
    if avail < LANES + 2 {
        if let Some(j) = avail.checked_sub(1).filter(|&j| j < LANES) {
            let (start, _) = line_start_at::<NORM>(w, j);
            if w[j + 2] == CR || (DOTS && start && w[j + 2] == DOT) {
                n = n.min(j);
            }
        }
        if let Some(j) = avail.checked_sub(2).filter(|&j| j < LANES) {
            let (start, real) = line_start_at::<NORM>(w, j);
            if DOTS && start && real && w[j + 2] == DOT && w[j + 3] == CR {
                n = n.min(j);
            }
        }
    }
    if DOTS && any & flag_lanes(TERM) != 0 {
        n = n.min(first_lane(&words, TERM).unwrap_or(LANES));
    }
    // Never stop right after a CR: the next window must not start with its LF.
    if n > 0 && w[n + 1] == CR {
        n -= 1;
    }
    if n == 0 {
        return 0;
    }
    let any = if n < LANES {
        // Lanes past `n` are not part of this window.
        for (j, word) in words.iter_mut().enumerate() {
            *word &= lanes_below(n, j);
        }
        words.iter().fold(0, |a, &x| a | x)
    } else {
        any
    };

    // Counts.
    let n_drop = if any & flag_lanes(DROP) != 0 { flag_count(&words, DROP) } else { 0 };
    let (n_blf, n_bcr) = if any & flag_lanes(BARE_LF | BARE_CR) != 0 {
        (flag_count(&words, BARE_LF), flag_count(&words, BARE_CR))
    } else {
        (0, 0)
    };
    let n_bare = n_blf + n_bcr;
    let written = if NORM { n - n_drop + n_bare } else { n - n_drop - n_bare };

    // Line lengths. A line start can only be a dropped dot's lane, and a bare ending in a
    // line is its end under `Normalize`; so a line of lanes a..=e is e - a + 1 octets,
    // minus one for a dot dropped at `a`, plus one for a normalised bare ending at `e`.
    let mut stop = n; // output stops after this many lanes
    let mut long = 0u64;
    if let Some(max) = lines.max_line {
        if any & flag_lanes(END) == 0 {
            lines.line_len = lines.line_len.saturating_add(n - n_drop);
        } else {
            let octets = |a: usize, e: usize| {
                let dot = usize::from(flags[a & (LANES - 1)] & DROP);
                let bare = usize::from(NORM && flags[e & (LANES - 1)] & (BARE_LF | BARE_CR) != 0);
                e + 1 - a - dot + bare
            };
            if max >= 2 * LANES {
                // Lines inside a window are at most 128 octets: only the first line
                // ending here needs checking.
                let first = first_lane(&words, END).unwrap_or_default();
                if lines.line_len.saturating_add(octets(0, first)) > max {
                    long = 1;
                    stop = first + 1;
                }
            } else {
                let mut ends = flag_bits(&words, END);
                let (mut from, mut line) = (0, lines.line_len);
                while ends != 0 {
                    let e = ends.trailing_zeros() as usize;
                    if line.saturating_add(octets(from, e)) > max {
                        long += 1;
                        stop = stop.min(e + 1);
                    }
                    (from, line) = (e + 1, 0);
                    ends &= ends - 1;
                }
            }
            let last = last_lane(&words, END).unwrap_or_default();
            lines.line_len = if last + 1 < n {
                n - 1 - usize::from(flags[(last + 1) & (LANES - 1)] & DROP) - last
            } else {
                0
            };
        }
    }
    let doomed = long > 0 || (!NORM && n_bare != 0);

    // Output. Once the message is doomed nothing more is written, so what is pending is
    // copied out first. Unchanged bytes stay pending and are copied in long runs.
    if !lines.discard {
        if !NORM && n_bare != 0 {
            stop = stop.min(first_lane(&words, BARE_LF | BARE_CR).unwrap_or(LANES));
        }
        let crowded = NORM && n_bare > LANES / 4;
        if crowded && let Some(buf) = out.window_room(input, pos) {
            // Bare endings in most lines: write the window byte by byte (each lane
            // writes its byte or CR, then LF, and moves on by what it emits).
            let mut pairs = [0u16; LANES]; // the lane's byte (or CR), then LF
            let mut emit = [0u8; LANES];
            for (((&f, &b), e), x) in flags.iter().zip(&w[2..]).zip(&mut emit).zip(&mut pairs) {
                *x = u16::from(if f & BARE_LF != 0 { CR } else { b }) | u16::from(LF) << 8;
                *e = 1 + u8::from(f & (BARE_LF | BARE_CR) != 0) - (f & DROP);
            }
            if let Some(tail) = emit.get_mut(stop..) {
                tail.fill(0);
            }
            let mut k = 0;
            for (&x, &e) in pairs.iter().zip(&emit) {
                // k <= 2 * i <= 126: the mask changes nothing.
                let d = k & (2 * LANES - 1);
                buf[d..d + 2].copy_from_slice(&x.to_le_bytes());
                k += usize::from(e);
            }
            out.staged(k);
            out.skip_to(pos + n);
        } else {
            let mut special = 0;
            if n_drop != 0 || (NORM && n_bare != 0) {
                let which = if NORM { DROP | BARE_LF | BARE_CR } else { DROP };
                special = flag_bits(&words, which) & lanes_bits_below(stop);
            }
            let few = special & special.wrapping_sub(1);
            let dense = few & few.wrapping_sub(1) != 0;
            if dense && let Some(buf) = out.window_room(input, pos) {
                // Many lanes to change: assemble the window's output from 16-byte copies
                // between them.
                let (mut k, mut from) = (0, 0);
                // Whether every piece between them is at most 16 bytes (one copy each): a
                // lane at 16 or more has a special lane among the 16 before it.
                let mut near = special;
                near |= near << 1;
                near |= near << 2;
                near |= near << 4;
                near |= near << 8;
                let short = ((near << 1) | 0xFFFF) & lanes_bits_below(stop) == lanes_bits_below(stop);
                while special != 0 {
                    let to = special.trailing_zeros() as usize;
                    if short {
                        copy_short_segment(w, from, buf, k);
                    } else {
                        copy_segment(w, from, to, buf, k);
                    }
                    k += to - from;
                    if NORM && flags[to & (LANES - 1)] & DROP == 0 {
                        buf[k & (2 * LANES - 1)] = CR;
                        buf[(k + 1) & (2 * LANES - 1)] = LF;
                        k += 2;
                    }
                    from = to + 1;
                    special &= special - 1;
                }
                copy_segment(w, from, stop, buf, k);
                out.staged(k + stop - from);
                out.skip_to(pos + n);
            } else {
                // A few: split the pending run around them.
                while special != 0 {
                    let j = special.trailing_zeros() as usize;
                    out.flush(input, pos + j, false);
                    if NORM && flags[j & (LANES - 1)] & DROP == 0 {
                        out.out.extend_from_slice(b"\r\n");
                    }
                    out.skip_to(pos + j + 1);
                    special &= special - 1;
                }
                if doomed {
                    out.flush(input, pos + stop, false);
                }
            }
        }
    }
    if lines.discard || doomed {
        out.skip_to(pos + n);
    }

    // Counters and state.
    lines.written = lines.written.saturating_add(written as u64);
    let v = &mut lines.violations;
    v.bare_lf = v.bare_lf.saturating_add(n_blf as u64);
    v.bare_cr = v.bare_cr.saturating_add(n_bcr as u64);
    v.long_lines = v.long_lines.saturating_add(long);
    if doomed {
        lines.discard = true;
    }
    if DOTS {
        let last = flags[(n - 1) & (LANES - 1)];
        starts.at = last & END != 0;
        starts.real = starts.at && last & (BARE_LF | BARE_CR) == 0;
    }
    n
}

/// Copies lanes `from..to` of a window to `buf[k..]` in 16-byte pieces (up to 15 bytes
/// past the end are written too, and overwritten or ignored later).
#[allow(clippy::indexing_slicing)] // The masks keep every index in bounds; see below.
#[inline(always)]
fn copy_segment(w: &[u8; WINDOW_BYTES], from: usize, to: usize, buf: &mut [u8; WINDOW_OUT], k: usize) {
    // from <= to <= 64 and k <= 2 * from, so for c < to - from: from + c <= 63 and
    // k + c <= 127, and the masks change nothing; they show the compiler that
    // s + 18 <= 81 < WINDOW_BYTES and d + 16 <= 143 < WINDOW_OUT.
    let (s, d) = (from & (LANES - 1), k & (2 * LANES - 1));
    buf[d..d + 16].copy_from_slice(&w[s + 2..s + 18]);
    let mut c = 16;
    while c < to.saturating_sub(from) {
        let (s, d) = ((from + c) & (LANES - 1), (k + c) & (2 * LANES - 1));
        buf[d..d + 16].copy_from_slice(&w[s + 2..s + 18]);
        c += 16;
    }
}

/// `bit` if `on`, else 0 (compiles to a compare mask and an AND).
#[inline(always)]
fn flag(on: bool, bit: u8) -> u8 {
    if on { bit } else { 0 }
}

/// The first lane with any of `flags`.
fn first_lane(words: &[u64; LANES / 8], flags: u8) -> Option<usize> {
    let lanes = flag_lanes(flags);
    let (j, w) = words.iter().enumerate().find(|&(_, &w)| w & lanes != 0)?;
    Some(8 * j + (w & lanes).trailing_zeros() as usize / 8)
}

/// The last lane with any of `flags`.
fn last_lane(words: &[u64; LANES / 8], flags: u8) -> Option<usize> {
    let lanes = flag_lanes(flags);
    let (j, w) = words.iter().enumerate().rfind(|&(_, &w)| w & lanes != 0)?;
    Some(8 * j + 7 - (w & lanes).leading_zeros() as usize / 8)
}

/// Copies up to 16 lanes from `from` of a window to `buf[k..]` (16 bytes are written).
#[allow(clippy::indexing_slicing)] // As in `copy_segment`.
#[inline(always)]
fn copy_short_segment(w: &[u8; WINDOW_BYTES], from: usize, buf: &mut [u8; WINDOW_OUT], k: usize) {
    let (s, d) = (from & (LANES - 1), k & (2 * LANES - 1));
    buf[d..d + 16].copy_from_slice(&w[s + 2..s + 18]);
}

/// Flag bits of a lane in [`window`].
const DROP: u8 = 1;
const END: u8 = 2;
const BARE_LF: u8 = 4;
const BARE_CR: u8 = 8;
const TERM: u8 = 16;

/// Size of the exact path's window: two bytes before, 64 lanes, and room for a 16-byte
/// copy from any lane (which covers the two bytes of lookahead).
const WINDOW_BYTES: usize = LANES + 18;

/// Bits `0..n`.
fn lanes_bits_below(n: usize) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

/// The byte mask of the lanes below `n` in flag word `j`.
fn lanes_below(n: usize, j: usize) -> u64 {
    let lo = 8 * j;
    if n >= lo + 8 {
        u64::MAX
    } else if n <= lo {
        0
    } else {
        (1u64 << (8 * (n - lo))) - 1
    }
}

/// `flag` in every byte of a word.
const fn flag_lanes(flag: u8) -> u64 {
    u64::from_le_bytes([flag; 8])
}

/// Bit `i` set where lane `i` has any of `flags`. Per word, the flags are folded onto
/// bit 0 of each byte, and a multiply gathers those eight bits into the top byte (the
/// partial products land on distinct bits, so there are no carries).
fn flag_bits(words: &[u64; LANES / 8], flags: u8) -> u64 {
    let mut bits = 0;
    for (j, &word) in words.iter().enumerate() {
        let mut low = 0;
        for f in 0..8 {
            if flags & (1 << f) != 0 {
                low |= word >> f;
            }
        }
        let low = low & flag_lanes(1);
        bits |= (low.wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * j);
    }
    bits
}

/// The number of lanes with `flag` (one bit): the words are added bytewise (at most 8
/// per byte, no carries), then a multiply adds up the bytes into the top one.
fn flag_count(words: &[u64; LANES / 8], flag: u8) -> usize {
    let shift = flag.trailing_zeros();
    let sum = words.iter().fold(0u64, |a, &w| a + ((w >> shift) & flag_lanes(1)));
    (sum.wrapping_mul(flag_lanes(1)) >> 56) as usize
}

/// The line-start flags for lane 0 of a window read in place, as the bytes before it
/// say (for the debug check that they agree with the state machine's).
fn line_start_in<const DOTS: bool, const NORM: bool>(w: &[u8; WINDOW_BYTES]) -> (bool, bool) {
    let (start, real) = line_start_at::<NORM>(w, 0);
    if DOTS { (start, start && real) } else { (false, false) }
}

/// Whether lane `j` of a window is a line start, and a real one (scalar form of the
/// classification in [`window`]).
#[allow(clippy::indexing_slicing)] // j < LANES, so j + 2 < w.len().
fn line_start_at<const NORM: bool>(w: &[u8; WINDOW_BYTES], j: usize) -> (bool, bool) {
    let (p2, p1, b) = (w[j], w[j + 1], w[j + 2]);
    let real = p1 == LF && p2 == CR;
    let start = if NORM { p1 == LF || (p1 == CR && b != LF) } else { real };
    (start, real)
}

/// The original byte-at-a-time receivers, kept verbatim as the model the fast paths are
/// checked against (see the differential tests at the bottom of this file).
#[cfg(test)]
#[allow(clippy::collapsible_if)] // Kept as it was written.
mod reference {
    use super::DataViolations;
    use crate::line::BareLineEnding;

    /// Receives the body of a `DATA` command up to and including `CRLF . CRLF`.
    #[derive(Clone, Debug)]
    pub(super) struct DataReceiver {
        policy: BareLineEnding,
        max_line: Option<usize>,
        state: State,
        /// `true` at a line start (for dot-unstuffing).
        line_start: bool,
        /// `true` if the current line start came from a real `CRLF` (or the body start), so
        /// that a `.CRLF` here ends the message.
        real_line_start: bool,
        /// Octets of the current line so far, including its terminator once seen.
        line_len: usize,
        discard: bool,
        received: u64,
        written: u64,
        violations: DataViolations,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum State {
        /// Inside a line.
        Text,
        /// After a `CR` that is not yet known to be followed by `LF`.
        Cr,
        /// After a dot at a line start.
        Dot,
        /// After a dot at a real line start followed by `CR`.
        DotCr,
        /// The terminator was seen.
        Done,
    }

    impl DataReceiver {
        /// Creates a receiver for one message.
        ///
        /// `max_text_line` is the longest allowed line in octets including `CRLF` (`None`
        /// for no limit; RFC 5321 says 1000).
        #[must_use]
        pub(super) fn new(policy: BareLineEnding, max_text_line: Option<usize>) -> Self {
            Self {
                policy,
                max_line: max_text_line,
                state: State::Text,
                line_start: true,
                real_line_start: true,
                line_len: 0,
                discard: false,
                received: 0,
                written: 0,
                violations: DataViolations::default(),
            }
        }

        /// Stops appending message bytes to the output (the message is already refused, for
        /// example because it is too large); the end is still found exactly.
        pub(super) fn set_discard(&mut self) {
            self.discard = true;
        }

        /// `true` once output has stopped, by [`set_discard`](Self::set_discard) or because
        /// a violation doomed the message.
        #[must_use]
        pub(super) fn is_discarding(&self) -> bool {
            self.discard
        }

        /// `true` once the terminator has been seen.
        #[must_use]
        pub(super) fn is_done(&self) -> bool {
            self.state == State::Done
        }

        /// Octets received so far, terminator included.
        #[must_use]
        pub(super) fn received(&self) -> u64 {
            self.received
        }

        /// Octets of message content produced so far (the message size), whether or not
        /// they were written out.
        #[must_use]
        pub(super) fn message_size(&self) -> u64 {
            self.written
        }

        /// What was wrong with the message so far.
        #[must_use]
        pub(super) fn violations(&self) -> DataViolations {
            self.violations
        }

        /// Scans `input`, appending message content to `out`.
        ///
        /// Returns how many bytes were consumed and whether the end of data was reached. When
        /// it was, the bytes after `consumed` belong to the next command.
        pub(super) fn ingest(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
            if self.state == State::Done {
                return (0, true);
            }
            for (i, &b) in input.iter().enumerate() {
                self.step(b, out);
                if self.state == State::Done {
                    let used = i + 1;
                    self.received = self.received.saturating_add(used as u64);
                    return (used, true);
                }
            }
            self.received = self.received.saturating_add(input.len() as u64);
            (input.len(), false)
        }

        fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
            self.written = self.written.saturating_add(bytes.len() as u64);
            if !self.discard {
                out.extend_from_slice(bytes);
            }
        }

        fn violation(&mut self, kind: fn(&mut DataViolations) -> &mut u64) {
            let n = kind(&mut self.violations);
            *n = n.saturating_add(1);
            if self.policy == BareLineEnding::Reject {
                self.discard = true;
            }
        }

        /// Ends the current line (`real` if by a real `CRLF`), after its terminator.
        fn end_line(&mut self, real: bool) {
            if let Some(max) = self.max_line {
                if self.line_len > max {
                    self.violations.long_lines = self.violations.long_lines.saturating_add(1);
                    self.discard = true;
                }
            }
            self.line_len = 0;
            self.line_start = true;
            self.real_line_start = real;
        }

        /// A bare line ending: a violation; under `Normalize` it becomes `CRLF`.
        fn bare_ending(&mut self, out: &mut Vec<u8>, lf: bool) {
            if lf {
                self.violation(|v| &mut v.bare_lf);
            } else {
                self.violation(|v| &mut v.bare_cr);
            }
            if self.policy == BareLineEnding::Normalize {
                self.emit(out, b"\r\n");
                self.line_len = self.line_len.saturating_add(2);
                self.end_line(false);
            } else {
                self.line_len = self.line_len.saturating_add(1);
                self.line_start = false;
            }
        }

        fn step(&mut self, b: u8, out: &mut Vec<u8>) {
            match self.state {
                State::Done => {}
                State::Cr => {
                    if b == b'\n' {
                        self.emit(out, b"\r\n");
                        self.line_len = self.line_len.saturating_add(2);
                        self.end_line(true);
                        self.state = State::Text;
                    } else {
                        // The CR was bare.
                        self.bare_ending(out, false);
                        self.state = State::Text;
                        self.step(b, out);
                    }
                }
                State::Dot => {
                    if b == b'\r' && self.real_line_start {
                        self.state = State::DotCr;
                    } else if b == b'\r' || b == b'\n' {
                        // A line holding only a dot (not a terminator): keep the dot.
                        self.emit(out, b".");
                        self.line_len = self.line_len.saturating_add(1);
                        self.state = State::Text;
                        self.step(b, out);
                    } else {
                        // A stuffed dot: drop it and keep the rest of the line.
                        self.state = State::Text;
                        self.step(b, out);
                    }
                }
                State::DotCr => {
                    if b == b'\n' {
                        self.state = State::Done;
                    } else {
                        // ".\r" then something else: the dot is content, the CR is bare.
                        self.emit(out, b".");
                        self.line_len = self.line_len.saturating_add(1);
                        self.state = State::Cr;
                        self.step(b, out);
                    }
                }
                State::Text => {
                    let at_start = self.line_start;
                    self.line_start = false;
                    match b {
                        b'.' if at_start => {
                            self.line_start = false;
                            self.state = State::Dot;
                        }
                        b'\r' => self.state = State::Cr,
                        b'\n' => self.bare_ending(out, true),
                        _ => {
                            self.emit(out, &[b]);
                            self.line_len = self.line_len.saturating_add(1);
                        }
                    }
                }
            }
        }
    }

    /// Receives the chunks of a `BDAT` transaction (RFC 3030): exactly `size` octets per
    /// chunk, no dot-stuffing, with the same line-ending and line-length checks as
    /// [`DataReceiver`] carried across chunk boundaries.
    #[derive(Clone, Debug)]
    pub(super) struct BdatReceiver {
        policy: BareLineEnding,
        max_line: Option<usize>,
        remaining: u64,
        after_cr: bool,
        line_len: usize,
        discard: bool,
        written: u64,
        violations: DataViolations,
    }

    impl BdatReceiver {
        /// Creates a receiver for one message.
        #[must_use]
        pub(super) fn new(policy: BareLineEnding, max_text_line: Option<usize>) -> Self {
            Self {
                policy,
                max_line: max_text_line,
                remaining: 0,
                after_cr: false,
                line_len: 0,
                discard: false,
                written: 0,
                violations: DataViolations::default(),
            }
        }

        /// Expects a new chunk of `size` octets.
        pub(super) fn start_chunk(&mut self, size: u64) {
            self.remaining = size;
        }

        /// Octets of the current chunk still expected.
        #[must_use]
        pub(super) fn remaining(&self) -> u64 {
            self.remaining
        }

        /// Stops appending content to the output; chunks are still counted exactly.
        pub(super) fn set_discard(&mut self) {
            self.discard = true;
        }

        /// `true` once output has stopped.
        #[must_use]
        pub(super) fn is_discarding(&self) -> bool {
            self.discard
        }

        /// Octets of message content produced so far.
        #[must_use]
        pub(super) fn message_size(&self) -> u64 {
            self.written
        }

        /// What was wrong with the message so far. A `CR` ending the last chunk is only
        /// counted by [`finish`](Self::finish).
        #[must_use]
        pub(super) fn violations(&self) -> DataViolations {
            self.violations
        }

        /// Ends the message (after the `LAST` chunk): a trailing bare `CR` or an overlong
        /// last line is counted.
        pub(super) fn finish(&mut self, out: &mut Vec<u8>) {
            if self.after_cr {
                self.after_cr = false;
                self.bare(out, false);
            }
            self.check_line();
        }

        /// Consumes up to the rest of the current chunk from `input`, appending content to
        /// `out`. Returns the bytes consumed and whether the chunk is complete.
        pub(super) fn ingest(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
            let take = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(input.len());
            let chunk = input.get(..take).unwrap_or_default();
            for &b in chunk {
                self.step(b, out);
            }
            self.remaining -= take as u64;
            (take, self.remaining == 0)
        }

        fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
            self.written = self.written.saturating_add(bytes.len() as u64);
            if !self.discard {
                out.extend_from_slice(bytes);
            }
        }

        fn check_line(&mut self) {
            if let Some(max) = self.max_line {
                if self.line_len > max {
                    self.violations.long_lines = self.violations.long_lines.saturating_add(1);
                    self.discard = true;
                }
            }
            self.line_len = 0;
        }

        fn bare(&mut self, out: &mut Vec<u8>, lf: bool) {
            let n = if lf { &mut self.violations.bare_lf } else { &mut self.violations.bare_cr };
            *n = n.saturating_add(1);
            match self.policy {
                BareLineEnding::Normalize => {
                    self.emit(out, b"\r\n");
                    self.line_len = self.line_len.saturating_add(2);
                    self.check_line();
                }
                _ => {
                    self.discard = true;
                    self.line_len = self.line_len.saturating_add(1);
                }
            }
        }

        fn step(&mut self, b: u8, out: &mut Vec<u8>) {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    self.emit(out, b"\r\n");
                    self.line_len = self.line_len.saturating_add(2);
                    self.check_line();
                    return;
                }
                self.bare(out, false);
            }
            match b {
                b'\r' => self.after_cr = true,
                b'\n' => self.bare(out, true),
                _ => {
                    self.emit(out, &[b]);
                    self.line_len = self.line_len.saturating_add(1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(policy: BareLineEnding, input: &[u8]) -> (Option<usize>, Vec<u8>, DataViolations) {
        let mut rx = DataReceiver::new(policy, Some(1000));
        let mut out = Vec::new();
        let (used, done) = rx.ingest(input, &mut out);
        (done.then_some(used), out, rx.violations())
    }

    #[test]
    #[allow(clippy::type_complexity)] // A table of cases.
    fn terminators() {
        use BareLineEnding::*;
        // (input, policy, end offset if the message ends, body when accepted)
        let cases: &[(&[u8], BareLineEnding, Option<usize>, &[u8])] = &[
            (b".\r\n", Reject, Some(3), b""),
            (b"a\r\n.\r\n", Reject, Some(6), b"a\r\n"),
            (b"..\r\n.\r\n", Reject, Some(7), b".\r\n"),
            (b"a\n.\n", Reject, None, b""),
            (b"a\r\n.\n", Reject, None, b""),
            (b"a\n.\r\n", Reject, None, b""),
            (b"a\r.\r", Reject, None, b""),
            (b"a\r\n.\r\r\n", Reject, None, b""),
            (b"a\n.\r\nX\r\n.\r\n", Normalize, Some(11), b"a\r\n.\r\nX\r\n"),
            (b"a\r\n.\nb\r\n.\r\n", Normalize, Some(11), b"a\r\n.\r\nb\r\n"),
            (b"a\n..b\r\n.\r\n", Normalize, Some(10), b"a\r\n.b\r\n"),
            (b"a\r\0.\r\n.\r\n", Normalize, Some(9), b"a\r\n\0.\r\n"),
        ];
        for (input, policy, end, body) in cases {
            let (got_end, out, v) = run(*policy, input);
            assert_eq!(got_end, *end, "{:?}", String::from_utf8_lossy(input));
            if *policy == Normalize || v.is_clean() {
                assert_eq!(out, *body, "{:?}", String::from_utf8_lossy(input));
            }
        }
    }

    #[test]
    fn reject_dooms_and_swallows_to_real_end() {
        let input = b"a\n.\nMAIL FROM:<x@y>\r\n\r\n.\r\nQUIT\r\n";
        let (end, _, v) = run(BareLineEnding::Reject, input);
        assert_eq!(v.bare_lf, 2);
        assert_eq!(&input[end.unwrap()..], b"QUIT\r\n");
    }

    #[test]
    fn long_lines() {
        let mut rx = DataReceiver::new(BareLineEnding::Reject, Some(10));
        let mut out = Vec::new();
        // 8 octets + CRLF = 10: fine. A stuffed dot does not count.
        let (_, done) = rx.ingest(b"12345678\r\n..2345678\r\n123456789\r\n.\r\n", &mut out);
        assert!(done);
        assert_eq!(rx.violations().long_lines, 1);
    }

    #[test]
    fn bdat_crosses_chunks() {
        let mut rx = BdatReceiver::new(BareLineEnding::Reject, None);
        let mut out = Vec::new();
        rx.start_chunk(2);
        assert_eq!(rx.ingest(b"a\r", &mut out), (2, true));
        rx.start_chunk(2);
        assert_eq!(rx.ingest(b"\nb", &mut out), (2, true));
        rx.finish(&mut out);
        assert!(rx.violations().is_clean());
        assert_eq!(out, b"a\r\nb");
    }

    /// Feeds `input` whole and split in two at each of `splits` to both DATA receivers
    /// and checks they agree; returns the body.
    fn same_as_reference(input: &[u8], policy: BareLineEnding, max: Option<usize>) -> Vec<u8> {
        let mut body = None;
        for split in [None, Some(1), Some(input.len() / 2), Some(input.len().saturating_sub(3))] {
            let mut fast = DataReceiver::new(policy, max);
            let mut slow = reference::DataReceiver::new(policy, max);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let (head, tail) = input.split_at(split.unwrap_or(0).min(input.len()));
            for piece in [head, tail] {
                assert_eq!(fast.ingest(piece, &mut a), slow.ingest(piece, &mut b));
                if fast.is_done() {
                    break;
                }
            }
            assert_eq!(a, b, "{split:?}");
            assert_eq!(fast.violations(), slow.violations());
            assert_eq!(fast.message_size(), slow.message_size());
            assert_eq!(fast.received(), slow.received());
            assert_eq!(fast.is_discarding(), slow.is_discarding());
            body = Some(a);
        }
        body.unwrap_or_default()
    }

    /// Every special shape at every offset from the start, so that each one straddles
    /// every window and superblock boundary once.
    #[test]
    fn shapes_at_every_offset() {
        let shapes: &[&[u8]] = &[
            b"\r\n.\r\n",
            b"\r\n..x\r\n",
            b"\r\n.\r\r\n",
            b"\r\n.\n",
            b"\n.\r\n",
            b"\r\n\r\n",
            b"\rx",
            b"x\n",
        ];
        let mut line = b"abcdefghij".repeat(30);
        line.extend_from_slice(b"\r\n");
        for shape in shapes {
            for offset in 0..600 {
                let mut input = b"y".repeat(offset);
                input.extend_from_slice(b"\r\n");
                input.extend_from_slice(shape);
                input.extend_from_slice(&line.repeat(3));
                input.extend_from_slice(b"\r\n.\r\nQUIT\r\n");
                for policy in [BareLineEnding::Reject, BareLineEnding::Normalize] {
                    for max in [None, Some(1000), Some(600), Some(100)] {
                        same_as_reference(&input, policy, max);
                    }
                }
            }
        }
    }

    /// A stuffed line, and lines near the length limit, right after the express lane has
    /// run for a while, at every offset.
    #[test]
    fn express_exits_at_every_offset() {
        let mut line = b"abcdefghij".repeat(7);
        line.extend_from_slice(b"\r\n");
        for offset in 0..600 {
            for tail in [&b"..stuffed\r\n"[..], b".\r\n", b"\r\n.x", b"\n"] {
                let mut input = line.repeat(8);
                input.extend_from_slice(&b"z".repeat(offset));
                input.extend_from_slice(b"\r\n");
                input.extend_from_slice(tail);
                input.extend_from_slice(&line.repeat(8));
                input.extend_from_slice(&b"w".repeat(offset + 400));
                input.extend_from_slice(b"\r\n.\r\n");
                for policy in [BareLineEnding::Reject, BareLineEnding::Normalize] {
                    for max in [None, Some(1000), Some(300), Some(700)] {
                        same_as_reference(&input, policy, max);
                    }
                }
            }
        }
    }

    /// Differential tests: the fast receivers against the byte-at-a-time reference, on
    /// inputs rich in CR, LF, dots and NUL, split into pieces at random points.
    mod differential {
        use super::super::reference;
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;

        /// One piece of a body: mostly whole lines (so that long clean stretches reach the
        /// express lane), mixed with the shapes the rules are about.
        fn fragment() -> impl Strategy<Value = Vec<u8>> {
            let byte = prop_oneof![
                4 => Just(b'a'),
                2 => Just(b'\r'),
                2 => Just(b'\n'),
                2 => Just(b'.'),
                1 => Just(0u8),
            ];
            prop_oneof![
                4 => vec(byte, 0..24),
                6 => (0usize..120).prop_map(|n| line(b"", n)),
                1 => (0usize..1100).prop_map(|n| line(b"", n)),
                2 => (0usize..90).prop_map(|n| line(b"..", n)),
                1 => (1usize..40).prop_map(|n| b"..\r\n".repeat(n)),
                1 => (1usize..40).prop_map(|n| b"\r\n".repeat(n)),
                1 => prop::sample::select(vec![
                    &b".\r\n"[..],
                    b"\r\n.\r\n",
                    b"\r\n.\n",
                    b"\n.\r\n",
                    b"\r\n.\r\r\n",
                    b"\r\n.\r.\r\n",
                    b"\n",
                    b"\r",
                    b"\r\r\n",
                    b"\n.\n",
                    b".\r",
                ])
                .prop_map(<[u8]>::to_vec),
            ]
        }

        /// `prefix`, `n` bytes of text, `CRLF`.
        fn line(prefix: &[u8], n: usize) -> Vec<u8> {
            let mut v = prefix.to_vec();
            v.extend((0..n).map(|i| b"abcdefgh ,"[i % 10]));
            v.extend_from_slice(b"\r\n");
            v
        }

        fn body() -> impl Strategy<Value = Vec<u8>> {
            vec(fragment(), 0..48).prop_map(|parts| parts.concat())
        }

        /// Split points (sorted, may repeat: empty pieces are fed too).
        fn cuts(len: usize) -> impl Strategy<Value = Vec<usize>> {
            vec(0..=len, 0..6).prop_map(|mut c| {
                c.sort_unstable();
                c
            })
        }

        fn policy() -> impl Strategy<Value = BareLineEnding> {
            prop_oneof![Just(BareLineEnding::Reject), Just(BareLineEnding::Normalize)]
        }

        fn limit() -> impl Strategy<Value = Option<usize>> {
            prop_oneof![
                Just(None),
                (1usize..140).prop_map(Some),
                (200usize..1100).prop_map(Some),
                Just(Some(1000)),
            ]
        }

        fn pieces<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
            let mut out = Vec::new();
            let mut from = 0;
            for &c in cuts.iter().chain(Some(&input.len())) {
                out.push(&input[from..c]);
                from = c;
            }
            out
        }

        fn check_data(
            input: &[u8],
            cuts: &[usize],
            policy: BareLineEnding,
            max: Option<usize>,
            discard_at: Option<usize>,
        ) -> Result<(), TestCaseError> {
            let mut fast = DataReceiver::new(policy, max);
            let mut slow = reference::DataReceiver::new(policy, max);
            let (mut out_fast, mut out_slow) = (Vec::new(), Vec::new());
            for (i, piece) in pieces(input, cuts).into_iter().enumerate() {
                if discard_at == Some(i) {
                    fast.set_discard();
                    slow.set_discard();
                }
                let got = fast.ingest(piece, &mut out_fast);
                let want = slow.ingest(piece, &mut out_slow);
                prop_assert_eq!(got, want, "piece {}", i);
                prop_assert_eq!(&out_fast, &out_slow, "piece {}", i);
                prop_assert_eq!(fast.violations(), slow.violations());
                prop_assert_eq!(fast.message_size(), slow.message_size());
                prop_assert_eq!(fast.received(), slow.received());
                prop_assert_eq!(fast.is_discarding(), slow.is_discarding());
                prop_assert_eq!(fast.is_done(), slow.is_done());
                if got.1 {
                    // The session stops feeding once the message is done.
                    prop_assert_eq!(fast.ingest(piece, &mut out_fast), (0, true));
                    break;
                }
            }
            Ok(())
        }

        fn check_bdat(
            input: &[u8],
            cuts: &[usize],
            chunks: &[usize],
            policy: BareLineEnding,
            max: Option<usize>,
            discard_at: Option<usize>,
        ) -> Result<(), TestCaseError> {
            let mut fast = BdatReceiver::new(policy, max);
            let mut slow = reference::BdatReceiver::new(policy, max);
            let (mut out_fast, mut out_slow) = (Vec::new(), Vec::new());
            let mut sizes = chunks.iter().copied().chain(std::iter::repeat(usize::MAX / 2));
            for (i, mut piece) in pieces(input, cuts).into_iter().enumerate() {
                if discard_at == Some(i) {
                    fast.set_discard();
                    slow.set_discard();
                }
                loop {
                    if fast.remaining() == 0 {
                        let size = sizes.next().unwrap_or(1) as u64;
                        fast.start_chunk(size);
                        slow.start_chunk(size);
                    }
                    let got = fast.ingest(piece, &mut out_fast);
                    let want = slow.ingest(piece, &mut out_slow);
                    prop_assert_eq!(got, want, "piece {}", i);
                    prop_assert_eq!(&out_fast, &out_slow, "piece {}", i);
                    prop_assert_eq!(fast.violations(), slow.violations());
                    prop_assert_eq!(fast.message_size(), slow.message_size());
                    prop_assert_eq!(fast.remaining(), slow.remaining());
                    prop_assert_eq!(fast.is_discarding(), slow.is_discarding());
                    piece = &piece[got.0..];
                    if piece.is_empty() {
                        break;
                    }
                }
            }
            fast.finish(&mut out_fast);
            slow.finish(&mut out_slow);
            prop_assert_eq!(&out_fast, &out_slow);
            prop_assert_eq!(fast.violations(), slow.violations());
            prop_assert_eq!(fast.message_size(), slow.message_size());
            prop_assert_eq!(fast.is_discarding(), slow.is_discarding());
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4000))]

            #[test]
            fn data_matches_reference(
                (input, cuts) in body().prop_flat_map(|b| { let n = b.len(); (Just(b), cuts(n)) }),
                policy in policy(),
                max in limit(),
                discard_at in prop::option::weighted(0.2, 0usize..7),
            ) {
                check_data(&input, &cuts, policy, max, discard_at)?;
            }

            #[test]
            fn data_matches_reference_on_raw_bytes(
                (input, cuts) in vec(prop_oneof![Just(b'a'), Just(b'\r'), Just(b'\n'), Just(b'.'), Just(0u8)], 0..400)
                    .prop_flat_map(|b| { let n = b.len(); (Just(b), cuts(n)) }),
                policy in policy(),
                max in limit(),
                discard_at in prop::option::weighted(0.2, 0usize..7),
            ) {
                check_data(&input, &cuts, policy, max, discard_at)?;
            }

            #[test]
            fn bdat_matches_reference(
                (input, cuts) in body().prop_flat_map(|b| { let n = b.len(); (Just(b), cuts(n)) }),
                chunks in vec(prop_oneof![0usize..8, 0usize..2000], 0..6),
                policy in policy(),
                max in limit(),
                discard_at in prop::option::weighted(0.2, 0usize..7),
            ) {
                check_bdat(&input, &cuts, &chunks, policy, max, discard_at)?;
            }
        }
    }
}
