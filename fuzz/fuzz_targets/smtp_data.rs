//! `DataReceiver` and `BdatReceiver` on arbitrary bytes: feeding the input in two pieces
//! (and, for BDAT, in two chunks) gives exactly what feeding it whole gives, and DATA only
//! ever ends right after `CRLF . CRLF` (or `. CRLF` at the very start).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::line::BareLineEnding;
use postern::smtp::data::{BdatReceiver, DataReceiver, DataViolations};

#[derive(Debug, PartialEq, Eq)]
struct Result {
    /// Bytes consumed, if the end of data was found.
    end: Option<usize>,
    out: Vec<u8>,
    violations: DataViolations,
    size: u64,
    discarding: bool,
}

fn data(policy: BareLineEnding, max: Option<usize>, parts: &[&[u8]]) -> Result {
    let mut rx = DataReceiver::new(policy, max);
    let mut out = Vec::new();
    let mut consumed = 0;
    let mut end = None;
    for part in parts {
        let (used, done) = rx.ingest(part, &mut out);
        assert!(used <= part.len());
        consumed += used;
        if done {
            end = Some(consumed);
            break;
        }
        assert_eq!(used, part.len(), "an unfinished receiver consumes everything");
    }
    assert_eq!(rx.is_done(), end.is_some());
    assert_eq!(rx.received(), consumed as u64);
    Result { end, out, violations: rx.violations(), size: rx.message_size(), discarding: rx.is_discarding() }
}

/// One message in BDAT chunks, each chunk fed in the given pieces.
fn bdat(policy: BareLineEnding, max: Option<usize>, chunks: &[&[&[u8]]]) -> Result {
    let mut rx = BdatReceiver::new(policy, max);
    let mut out = Vec::new();
    let mut consumed = 0;
    for pieces in chunks {
        let size: usize = pieces.iter().map(|p| p.len()).sum();
        rx.start_chunk(size as u64);
        for (i, piece) in pieces.iter().enumerate() {
            let (used, done) = rx.ingest(piece, &mut out);
            assert_eq!(used, piece.len());
            assert_eq!(done, i + 1 == pieces.len() || pieces[i + 1..].iter().all(|p| p.is_empty()));
            consumed += used;
        }
        assert_eq!(rx.remaining(), 0);
    }
    rx.finish(&mut out);
    Result {
        end: Some(consumed),
        out,
        violations: rx.violations(),
        size: rx.message_size(),
        discarding: rx.is_discarding(),
    }
}

fuzz_target!(|input: &[u8]| {
    let [flags, max, s0, s1, rest @ ..] = input else { return };
    let policy = if flags & 1 == 0 { BareLineEnding::Reject } else { BareLineEnding::Normalize };
    let max = if *max == 0 { None } else { Some(usize::from(*max)) };
    let split = usize::from(u16::from_le_bytes([*s0, *s1])) % (rest.len() + 1);
    let (a, b) = rest.split_at(split);

    let whole = data(policy, max, &[rest]);
    assert_eq!(whole, data(policy, max, &[a, b]), "DATA split at {split}");
    if let Some(end) = whole.end {
        let body = &rest[..end];
        assert!(
            body == b".\r\n" || body.ends_with(b"\r\n.\r\n"),
            "DATA ended after {:?}",
            String::from_utf8_lossy(&body[end.saturating_sub(8)..])
        );
    }
    if whole.violations.is_clean() {
        assert_eq!(whole.size, whole.out.len() as u64);
    }

    let one = bdat(policy, max, &[&[rest]]);
    assert_eq!(one, bdat(policy, max, &[&[a, b]]), "BDAT piece split at {split}");
    assert_eq!(one, bdat(policy, max, &[&[a], &[b]]), "BDAT chunk split at {split}");
    if policy == BareLineEnding::Normalize {
        assert!(!one.out.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n'), "bare CR left");
    }
});
