//! The audit trail through its public API: round trips, tamper detection (proptest),
//! crash-truncated tails, pruning, wrong keys, encryption and key rotation, starting
//! mid-file, streaming verification, JSON lines.
#![cfg(feature = "audit")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postern::audit::{
    AdmissionDecision, AuditError, BreakReason, ChainState, EncryptionKey, Event, Frame, KeyRing, LogReport,
    MacKey, Verifier, Writer, WriterConfig, verify_log,
};
use proptest::prelude::*;

const T0: u64 = 1_800_000_000;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + secs)
}

fn mac() -> MacKey {
    MacKey::new(1, &[0x11; 32])
}

fn keys() -> KeyRing {
    KeyRing::new().with_mac(mac())
}

/// The `i`-th sample event (all kinds, client-looking text).
fn event(i: u64, user: &str) -> Event<'_> {
    let peer: IpAddr =
        if i.is_multiple_of(2) { "192.0.2.7".parse().unwrap() } else { "2001:db8::9".parse().unwrap() };
    match i % 9 {
        0 => Event::SessionStart { session: i, service: "smtp", peer, peer_port: 40_000 },
        1 => Event::TlsEstablished {
            session: i,
            version: "TLSv1.3",
            suite: "TLS13_AES_256_GCM_SHA384",
            group: "X25519MLKEM768",
        },
        2 => Event::AuthFailure { session: i, mechanism: "PLAIN", user, reason: "bad credentials" },
        3 => Event::AuthSuccess { session: i, mechanism: "LOGIN", user },
        4 => Event::Admission { peer, decision: AdmissionDecision::Deferred, reason: "connection rate" },
        5 => Event::ProtocolViolation { session: i, violation: "bare-lf", detail: user },
        6 => Event::MessageAccepted {
            session: i,
            size: i * 100,
            id: "1700000000.1.mx",
            auth: "spf=pass dkim=pass",
        },
        7 => Event::KeyRotation { purpose: "sealing", old_id: 1, new_id: 2 },
        _ => Event::SessionEnd { session: i, reason: "quit" },
    }
}

/// Writes `segments` closed segments of `per` records each, the first one on day `first`
/// (one segment per day, event numbers continuing from `first * per`).
fn write_log(writer: &mut Writer, segments: u64, per: u64, first: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for s in first..first + segments {
        let mut bytes = Vec::new();
        let t = s * 86_400;
        writer.open_segment(at(t), &mut bytes).unwrap();
        for r in 0..per {
            writer.append(&event(s * per + r, "alice"), at(t + r), &mut bytes).unwrap();
        }
        writer.close_segment(at(t + per), &mut bytes).unwrap();
        out.push(bytes);
    }
    out
}

fn verify(keys: &KeyRing, segments: &[Vec<u8>]) -> LogReport {
    verify_log(keys, segments.iter().map(Vec::as_slice))
}

/// Decodes every record of a log (decrypting with `keys` when needed).
fn decode_all(keys: &KeyRing, segments: &[Vec<u8>]) -> Vec<(u64, SystemTime, String)> {
    let mut verifier = Verifier::new(keys.clone());
    let mut scratch = Vec::new();
    let mut out = Vec::new();
    for bytes in segments {
        let mut at = 0;
        while let Some(v) = verifier.next(&bytes[at..]).unwrap() {
            at += v.consumed;
            if let Frame::Record(raw) = v.frame {
                let record = raw.decrypt(keys, &mut scratch).unwrap();
                out.push((record.number, record.time, format!("{:?}", record.event)));
            }
        }
        verifier.finish_segment(&bytes[at..]);
    }
    out
}

fn expected(segments: u64, per: u64) -> Vec<(u64, SystemTime, String)> {
    (0..segments * per)
        .map(|n| {
            let t = (n / per) * 86_400 + n % per;
            (n, at(t), format!("{:?}", event(n, "alice")))
        })
        .collect()
}

#[test]
fn round_trip_plain() {
    let mut writer = Writer::new(mac(), WriterConfig::default().checkpoint_every(7));
    let log = write_log(&mut writer, 3, 20, 0);
    let report = verify(&keys(), &log);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!((report.segments, report.records), (3, 60));
    // Two checkpoints per segment at records 7 and 14, plus the closing one.
    assert_eq!(report.checkpoints, 9);
    assert_eq!(report.first_time, Some(at(0)));
    assert_eq!(report.last_time, Some(at(2 * 86_400 + 19)));
    assert_eq!(report.end, Some(writer.state()));
    assert_eq!(decode_all(&keys(), &log), expected(3, 20));
    assert_eq!(report.time_regressions, 0);
    assert!(report.anomalous_events() > 0);
}

#[test]
fn round_trip_encrypted_and_key_rotation() {
    let enc1 = EncryptionKey::new(10, &[0x22; 32]);
    let enc2 = EncryptionKey::new(11, &[0x33; 32]);
    let mac2 = MacKey::new(2, &[0x44; 32]);
    let mut writer = Writer::new(mac(), WriterConfig::default()).with_encryption(enc1.clone());
    let mut log = write_log(&mut writer, 2, 10, 0);
    writer.rotate_keys(mac2.clone(), Some(enc2.clone()));
    log.extend(write_log(&mut writer, 2, 10, 2));
    // Bodies are not in the clear.
    assert!(!log.iter().any(|s| s.windows(5).any(|w| w == b"alice")));

    // The MAC keys alone verify the whole log, across the rotation.
    let macs = KeyRing::new().with_mac(mac()).with_mac(mac2.clone());
    let report = verify(&macs, &log);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.records, 40);
    // Reading needs the encryption keys.
    let all = macs.clone().with_encryption(enc1).with_encryption(enc2.clone());
    assert_eq!(decode_all(&all, &log), expected(4, 10));
    let mut verifier = Verifier::new(macs.clone().with_encryption(enc2));
    let v = verifier.next(&log[0]).unwrap().unwrap();
    let v2 = verifier.next(&log[0][v.consumed..]).unwrap().unwrap();
    let Frame::Record(raw) = v2.frame else { panic!("record expected") };
    assert_eq!(raw.enc_key_id, Some(10));
    assert_eq!(raw.record(), Err(AuditError::Encrypted));
    let mut scratch = Vec::new();
    assert_eq!(raw.decrypt(&macs, &mut scratch), Err(AuditError::UnknownKey(10)));
    let wrong = macs.clone().with_encryption(EncryptionKey::new(10, &[0x55; 32]));
    assert_eq!(raw.decrypt(&wrong, &mut scratch), Err(AuditError::Decrypt));

    // Without the old MAC key the first segment cannot be checked.
    let report = verify(&KeyRing::new().with_mac(mac2), &log);
    let (index, link) = report.broken.unwrap();
    assert_eq!((index, link.segment, link.offset), (0, 0, 9));
    assert_eq!(link.reason, BreakReason::UnknownKey(1));
}

#[test]
fn wrong_key_is_detected_at_the_first_header() {
    let mut writer = Writer::new(mac(), WriterConfig::default());
    let log = write_log(&mut writer, 2, 5, 0);
    let report = verify(&KeyRing::new().with_mac(MacKey::new(1, &[0x12; 32])), &log);
    let (index, link) = report.broken.unwrap();
    assert_eq!((index, link.segment, link.offset, link.record), (0, 0, 9, 0));
    assert_eq!(link.reason, BreakReason::BadTag);
    assert_eq!(report.records, 0);
    assert!(link.to_string().contains("segment 0 at offset 9"), "{link}");
}

#[test]
fn truncated_tails_recover_and_the_chain_continues() {
    let mut writer = Writer::new(mac(), WriterConfig::default());
    let mut log = write_log(&mut writer, 1, 10, 0);
    // A crash: the open segment has some records and a partial one.
    let mut live = Vec::new();
    writer.open_segment(at(86_400), &mut live).unwrap();
    let mut boundaries = vec![live.len()];
    for r in 0..6 {
        writer.append(&event(100 + r, "bob"), at(86_400 + r), &mut live).unwrap();
        boundaries.push(live.len());
    }
    for cut in 0..=live.len() {
        let segments = [log[0].as_slice(), &live[..cut]];
        let report = verify_log(&keys(), segments);
        assert!(report.is_intact(), "cut {cut}: {report:?}");
        assert!(!report.last_closed);
        let whole = boundaries.iter().filter(|&&b| b <= cut).count().saturating_sub(1) as u64;
        // Every record before the cut is kept; a partial frame is reported, not an error.
        assert_eq!(report.records, 10 + whole, "cut {cut}");
        let at_boundary = boundaries.contains(&cut);
        assert_eq!(report.truncated_count, u64::from(!at_boundary), "cut {cut}");
        if let Some(t) = report.truncated.first() {
            assert_eq!(t.index, 1);
            assert_eq!(
                t.bytes as usize,
                cut - boundaries.iter().filter(|&&b| b <= cut).max().copied().unwrap_or(0)
            );
        }
    }
    // Restart after the crash: resume from what verified and start a new segment.
    let cut = boundaries[3] + 17;
    live.truncate(cut);
    log.push(live);
    let report = verify(&keys(), &log);
    let state: ChainState = report.end.unwrap();
    assert_eq!(state.next_record, 13);
    assert_eq!(state.next_segment, 2);
    let mut writer = Writer::resume(mac(), WriterConfig::default(), state);
    log.extend(write_log(&mut writer, 1, 3, 3));
    let report = verify(&keys(), &log);
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, 16);
    assert_eq!(report.truncated_count, 1);
    assert_eq!(report.unclosed, 1);
    assert!(report.last_closed);
    // A zero-filled tail after the last whole frame (some file systems after a crash) is a
    // truncation too.
    log[0].extend_from_slice(&[0; 300]);
    let report = verify(&keys(), &log);
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.truncated_count, 2);
    assert_eq!(report.truncated[0].bytes, 300);
}

#[test]
fn pruning_keeps_the_rest_verifiable() {
    let mut writer = Writer::new(mac(), WriterConfig::default());
    let log = write_log(&mut writer, 5, 8, 0);
    assert!(verify(&keys(), &log).starts_at_genesis());
    for first in 1..5 {
        let report = verify(&keys(), &log[first..]);
        assert!(report.is_intact(), "{report:?}");
        assert!(!report.starts_at_genesis());
        assert_eq!(report.start.unwrap().record, first as u64 * 8);
        assert_eq!(report.records, (5 - first as u64) * 8);
    }
    // A gap in the middle is not pruning.
    let gap = [log[0].clone(), log[2].clone()];
    let (index, link) = verify(&keys(), &gap).broken.unwrap();
    assert_eq!((index, link.segment, link.offset), (1, 1, 9));
    assert_eq!(link.reason, BreakReason::Discontinuity("segment number"));
}

#[test]
fn a_verifier_can_start_mid_file() {
    let mut writer = Writer::new(mac(), WriterConfig::default().checkpoint_every(5));
    let log = write_log(&mut writer, 1, 23, 0);
    let seg = &log[0];
    for start in (0..seg.len()).step_by(37) {
        let Some((skip, mut verifier)) = Verifier::resync(keys(), &seg[start..]) else {
            // Only after the last checkpoint that can start a verifier.
            assert!(start > seg.len() - 600, "start {start}");
            continue;
        };
        let mut at = start + skip;
        let mut last = None;
        while let Some(v) = verifier.next(&seg[at..]).unwrap() {
            at += v.consumed;
            if let Frame::Record(r) = v.frame {
                last = Some(r.number);
            }
        }
        assert_eq!(at, seg.len());
        assert!(last.is_none_or(|n| n == 22));
    }
    // Garbage with no authentic checkpoint gives nothing.
    assert!(Verifier::resync(keys(), &[0x41; 500]).is_none());
}

#[test]
fn streaming_in_small_pieces_matches_whole_segments() {
    let mut writer = Writer::new(mac(), WriterConfig::default().checkpoint_every(3));
    let log = write_log(&mut writer, 2, 9, 0);
    for chunk in [1, 2, 7, 64, 1000] {
        let mut verifier = Verifier::new(keys());
        let mut records = 0;
        for seg in &log {
            let mut buf: Vec<u8> = Vec::new();
            for piece in seg.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(v) = verifier.next(&buf).unwrap() {
                    records += u64::from(matches!(v.frame, Frame::Record(_)));
                    buf.drain(..v.consumed);
                }
            }
            let end = verifier.finish_segment(&buf);
            assert!(end.closed && end.truncated.is_none());
        }
        assert_eq!(records, 18);
        assert_eq!(verifier.state(), Some(writer.state()));
    }
}

#[test]
fn json_lines_parse_back() {
    let mut writer = Writer::new(mac(), WriterConfig::default());
    let mut seg = Vec::new();
    writer.open_segment(at(0), &mut seg).unwrap();
    let hostile = "x\"}\n{\"kind\":\"auth_success\\\u{0}\u{2028}";
    writer.append(&event(2, hostile), at(1), &mut seg).unwrap();
    let mut verifier = Verifier::new(keys());
    let header = verifier.next(&seg).unwrap().unwrap();
    let v = verifier.next(&seg[header.consumed..]).unwrap().unwrap();
    let Frame::Record(raw) = v.frame else { panic!() };
    let mut line = String::new();
    raw.record().unwrap().write_json(&mut line);
    assert!(!line.contains('\n'));
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["kind"], "auth_failure");
    assert_eq!(value["user"], hostile);
    assert_eq!(value["time"], "2027-01-15T08:00:01.000000Z");
}

/// Exhaustively on one small log (two segments, checkpoints, clear and encrypted): every
/// byte flipped (three different XOR masks), every frame deleted or duplicated, every pair
/// of frames swapped: all detected.
#[test]
fn every_single_change_of_a_small_log_is_detected() {
    for encrypted in [false, true] {
        let mut writer = Writer::new(mac(), WriterConfig::default().checkpoint_every(2));
        if encrypted {
            writer = writer.with_encryption(EncryptionKey::new(3, &[9; 32]));
        }
        let log = write_log(&mut writer, 2, 4, 0);
        assert!(verify(&keys(), &log).is_clean());
        let mut checked = 0;
        for s in 0..log.len() {
            for at in 0..log[s].len() {
                for xor in [0x01, 0x80, 0xff] {
                    let mut bad = log.clone();
                    bad[s][at] ^= xor;
                    assert!(!verify(&keys(), &bad).is_clean(), "flip {xor:#x} at {at} of segment {s}");
                    checked += 1;
                }
            }
        }
        let parts = frames(&log);
        for s in 0..parts.len() {
            for f in 1..parts[s].len() {
                let mut del = parts.clone();
                del[s].remove(f);
                let bad: Vec<Vec<u8>> = del.iter().map(|p| p.concat()).collect();
                assert!(!verify(&keys(), &bad).is_clean(), "delete frame {f} of segment {s}");
                let mut dup = parts.clone();
                dup[s].insert(f, parts[s][f].clone());
                let bad: Vec<Vec<u8>> = dup.iter().map(|p| p.concat()).collect();
                assert!(!verify(&keys(), &bad).is_clean(), "duplicate frame {f} of segment {s}");
                for g in f + 1..parts[s].len() {
                    let mut swap = parts.clone();
                    swap[s].swap(f, g);
                    let bad: Vec<Vec<u8>> = swap.iter().map(|p| p.concat()).collect();
                    assert!(!verify(&keys(), &bad).is_clean(), "swap frames {f} and {g} of segment {s}");
                }
                checked += 2;
            }
        }
        assert!(checked > 3000, "{checked}");
    }
}

/// What to do to a generated log.
#[derive(Debug, Clone)]
enum Tamper {
    /// XOR one byte (anywhere: header, lengths, bodies, tags) with a non-zero value.
    Flip { at: usize, xor: u8 },
    /// Remove one frame (record or checkpoint, closing ones included).
    Delete { frame: usize },
    /// Repeat one frame right after itself.
    Duplicate { frame: usize },
    /// Swap two different frames.
    Swap { a: usize, b: usize },
    /// Remove a whole segment. Removing the first is pruning, which the report shows as a
    /// start after genesis; removing the last is only visible against the writer's state
    /// kept elsewhere (`report.end`), like any cut at the end of a log.
    DropSegment { segment: usize },
    /// Swap two segments.
    SwapSegments { a: usize, b: usize },
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(at, xor)| Tamper::Flip { at, xor }),
        any::<usize>().prop_map(|frame| Tamper::Delete { frame }),
        any::<usize>().prop_map(|frame| Tamper::Duplicate { frame }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Tamper::Swap { a, b }),
        any::<usize>().prop_map(|segment| Tamper::DropSegment { segment }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Tamper::SwapSegments { a, b }),
    ]
}

/// Splits each segment into its header and its frames, using the verifier on the clean log.
fn frames(log: &[Vec<u8>]) -> Vec<Vec<Vec<u8>>> {
    let mut verifier = Verifier::new(keys());
    log.iter()
        .map(|seg| {
            let mut at = 0;
            let mut parts = Vec::new();
            while let Some(v) = verifier.next(&seg[at..]).unwrap() {
                parts.push(seg[at..at + v.consumed].to_vec());
                at += v.consumed;
            }
            verifier.finish_segment(&seg[at..]);
            parts
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_tampering_is_detected(
        segments in 1u64..4,
        per in 1u64..12,
        checkpoint_every in 0u32..5,
        encrypted in any::<bool>(),
        tamper in tamper(),
    ) {
        let mut writer = Writer::new(mac(), WriterConfig::default().checkpoint_every(checkpoint_every));
        if encrypted {
            writer = writer.with_encryption(EncryptionKey::new(3, &[9; 32]));
        }
        let mut log = write_log(&mut writer, segments, per, 0);
        prop_assert!(verify(&keys(), &log).is_clean());
        let mut parts = frames(&log);
        // Frames after each segment's header, addressed across the whole log.
        let all: Vec<(usize, usize)> = parts
            .iter()
            .enumerate()
            .flat_map(|(s, p)| (1..p.len()).map(move |f| (s, f)))
            .collect();
        match tamper {
            Tamper::Flip { at, xor } => {
                let total: usize = log.iter().map(Vec::len).sum();
                let mut at = at % total;
                for seg in &mut log {
                    if at < seg.len() {
                        seg[at] ^= xor;
                        break;
                    }
                    at -= seg.len();
                }
            }
            Tamper::Delete { frame } => {
                let (s, f) = all[frame % all.len()];
                parts[s].remove(f);
                log = parts.iter().map(|p| p.concat()).collect();
            }
            Tamper::Duplicate { frame } => {
                let (s, f) = all[frame % all.len()];
                let copy = parts[s][f].clone();
                parts[s].insert(f, copy);
                log = parts.iter().map(|p| p.concat()).collect();
            }
            Tamper::Swap { a, b } => {
                let (sa, fa) = all[a % all.len()];
                let (sb, fb) = all[b % all.len()];
                prop_assume!(parts[sa][fa] != parts[sb][fb]);
                let x = parts[sa][fa].clone();
                parts[sa][fa] = parts[sb][fb].clone();
                parts[sb][fb] = x;
                log = parts.iter().map(|p| p.concat()).collect();
            }
            Tamper::DropSegment { segment } => {
                log.remove(segment % log.len());
            }
            Tamper::SwapSegments { a, b } => {
                let (a, b) = (a % log.len(), b % log.len());
                prop_assume!(a != b);
                log.swap(a, b);
            }
        }
        let report = verify(&keys(), &log);
        if log.is_empty() || matches!(tamper, Tamper::DropSegment { segment } if segment % segments as usize == segments as usize - 1) {
            prop_assert_ne!(report.end, Some(writer.state()));
        } else {
            prop_assert!(!report.is_clean(), "undetected {:?}: {:?}", tamper, report);
        }
    }

    /// Any text (client-controlled) renders as one JSON line that parses back to the same
    /// text; numbers and times too.
    #[test]
    fn json_lines_round_trip_any_text(user in "\\PC*", detail in any::<String>(), number in any::<u64>(), micros in 0u64..=253_402_300_799_999_999) {
        let record = postern::audit::Record {
            number,
            time: UNIX_EPOCH + Duration::from_micros(micros),
            event: Event::AuthFailure { session: number, mechanism: "PLAIN", user: &user, reason: &detail },
        };
        let mut line = String::new();
        record.write_json(&mut line);
        let one_line = !line.contains('\n') && !line.contains('\u{2028}');
        prop_assert!(one_line, "{}", line);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        prop_assert_eq!(value["user"].as_str(), Some(user.as_str()));
        prop_assert_eq!(value["reason"].as_str(), Some(detail.as_str()));
        prop_assert_eq!(value["record"].as_u64(), Some(number));
        prop_assert_eq!(value["session"].as_u64(), Some(number));
        let time = value["time"].as_str().unwrap();
        prop_assert_eq!(time.len(), 27, "{}", time);
        prop_assert!(time.ends_with('Z'));
    }

    /// Arbitrary bytes (and arbitrary bytes after a valid header) never panic and keep the
    /// report consistent.
    #[test]
    fn arbitrary_bytes_are_rejected_cleanly(noise in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut writer = Writer::new(mac(), WriterConfig::default());
        let mut seg = Vec::new();
        writer.open_segment(at(0), &mut seg).unwrap();
        seg.extend_from_slice(&noise);
        let report = verify_log(&keys(), [noise.as_slice(), seg.as_slice()]);
        prop_assert!(!report.is_clean());
        let report = verify_log(&keys(), [seg.as_slice()]);
        prop_assert_eq!(report.records, 0);
    }
}
