//! The audit segment reader and verifier on arbitrary bytes.
//!
//! The first byte picks the mode:
//! - even: the rest is taken as raw segment bytes (split at a fuzzer-chosen point into two
//!   segments): `verify_log`, the streaming `Verifier` fed in small pieces, and `resync`
//!   never panic, agree with each other, and every verified record decodes or fails cleanly.
//! - odd: a valid generated log (clear or encrypted, records and checkpoint interval chosen by
//!   the input) is modified by (offset, xor) pairs from the rest of the input; any change that
//!   alters a byte must make the report not clean, an unmodified log must be clean.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use postern::audit::{
    EncryptionKey, Event, Frame, KeyRing, MacKey, Verifier, Writer, WriterConfig, verify_log,
};

fn keys() -> KeyRing {
    KeyRing::new()
        .with_mac(MacKey::new(1, &[1; 32]))
        .with_encryption(EncryptionKey::new(2, &[2; 32]))
}

/// Verifies `segments` with the streaming API in pieces of `chunk` bytes, decoding every
/// record; returns the number of records.
fn stream(segments: &[&[u8]], chunk: usize) -> u64 {
    let keys = keys();
    let mut verifier = Verifier::new(keys.clone());
    let mut records = 0;
    let mut scratch = Vec::new();
    let mut line = String::new();
    for seg in segments {
        let mut buf: Vec<u8> = Vec::new();
        for piece in seg.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                match verifier.next(&buf) {
                    Ok(Some(v)) => {
                        if let Frame::Record(raw) = v.frame {
                            records += 1;
                            if let Ok(record) = raw.decrypt(&keys, &mut scratch) {
                                line.clear();
                                record.write_json(&mut line);
                                assert!(!line.contains('\n'));
                            }
                        }
                        buf.drain(..v.consumed);
                    }
                    Ok(None) => break,
                    Err(_) => return records,
                }
            }
            assert!(buf.len() <= postern::audit::MAX_FRAME_LEN + postern::audit::HEADER_LEN);
        }
        verifier.finish_segment(&buf);
    }
    records
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        let split = usize::from(mode / 2) * rest.len() / 128;
        let (a, b) = rest.split_at(split.min(rest.len()));
        let report = verify_log(&keys(), [a, b]);
        assert_eq!(stream(&[a, b], usize::from(mode % 7) + 1), report.records);
        if let Some((skip, mut v)) = Verifier::resync(keys(), rest) {
            let mut at = skip;
            while let Ok(Some(f)) = v.next(&rest[at..]) {
                at += f.consumed;
            }
        }
        return;
    }
    let Some((&shape, edits)) = rest.split_first() else { return };
    let mut writer = Writer::new(MacKey::new(1, &[1; 32]), WriterConfig::default().checkpoint_every(u32::from(shape % 4)));
    if shape & 0x80 != 0 {
        writer = writer.with_encryption(EncryptionKey::new(2, &[2; 32]));
    }
    let t = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut segments = vec![Vec::new(), Vec::new()];
    for seg in &mut segments {
        writer.open_segment(t, seg).unwrap();
        for i in 0..u64::from((shape >> 2) % 8) {
            let event = Event::AuthFailure { session: i, mechanism: "PLAIN", user: "u\"\n", reason: "bad" };
            writer.append(&event, t, seg).unwrap();
        }
        writer.close_segment(t, seg).unwrap();
    }
    let original = segments.clone();
    let total = segments[0].len() + segments[1].len();
    for edit in edits.chunks_exact(3) {
        let at = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % total;
        let (seg, at) = if at < segments[0].len() { (0, at) } else { (1, at - segments[0].len()) };
        segments[seg][at] ^= edit[2];
    }
    let report = verify_log(&keys(), segments.iter().map(Vec::as_slice));
    if segments == original {
        assert!(report.is_clean(), "{report:?}");
    } else {
        assert!(!report.is_clean(), "undetected change: {report:?}");
    }
    let slices: Vec<&[u8]> = segments.iter().map(Vec::as_slice).collect();
    assert_eq!(stream(&slices, usize::from(shape % 5) + 1), report.records);
});
