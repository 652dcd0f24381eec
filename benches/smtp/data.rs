//! DATA and BDAT receivers: postern against smtp-proto 0.2.5 on the same bodies.
//!
//! Every bench ingests one whole 10 MiB message into a reused `Vec` (cleared, never
//! shrunk), so both sides pay for the copy. Throughput is input bytes per second.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group};
use postern::line::BareLineEnding;
use postern::smtp::data::{BdatReceiver, DataReceiver};

const SIZE: usize = 10 * 1024 * 1024;
/// RFC 5322's recommended line length, before `CRLF`.
const LINE: usize = 78;

/// Deterministic printable text (xorshift), no CR, LF or dot.
fn text(n: usize, seed: &mut u64) -> impl Iterator<Item = u8> + '_ {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789  ,;:-=<>@";
    (0..n).map(move |_| {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        ALPHABET[(*seed % ALPHABET.len() as u64) as usize]
    })
}

/// A 10 MiB body of 78-character lines; every `stuff_every`-th line starts with a
/// stuffed dot (`..`). Ends with the terminator.
fn lines_body(stuff_every: usize) -> Vec<u8> {
    let mut seed = 0x9E37_79B9_7F4A_7C15;
    let mut body = Vec::with_capacity(SIZE + 128);
    let mut n = 0usize;
    while body.len() < SIZE {
        if n.is_multiple_of(stuff_every) {
            body.extend_from_slice(b"..");
            body.extend(text(LINE - 1, &mut seed));
        } else {
            body.extend(text(LINE, &mut seed));
        }
        body.extend_from_slice(b"\r\n");
        n += 1;
    }
    body.extend_from_slice(b".\r\n");
    body
}

/// `pattern` repeated to 10 MiB, then the terminator.
fn repeated(pattern: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(SIZE + 128);
    while body.len() < SIZE {
        body.extend_from_slice(pattern);
    }
    body.extend_from_slice(b"\r\n.\r\n");
    body
}

fn postern_data(input: &[u8], out: &mut Vec<u8>, policy: BareLineEnding) -> usize {
    out.clear();
    let mut rx = DataReceiver::new(policy, Some(1000));
    let (used, done) = rx.ingest(input, out);
    assert!(done);
    used
}

fn smtp_proto_data(input: &[u8], out: &mut Vec<u8>) -> usize {
    out.clear();
    let mut rx = smtp_proto::request::receiver::DataReceiver::new();
    let mut iter = input.iter();
    assert!(rx.ingest(&mut iter, out));
    input.len() - iter.as_slice().len()
}

fn data(c: &mut Criterion) {
    let normal = lines_body(500);
    let mut out = Vec::with_capacity(2 * SIZE + 256);

    let mut g = c.benchmark_group("data_memcpy");
    g.throughput(Throughput::Bytes(normal.len() as u64));
    g.bench_function("extend_from_slice", |b| {
        b.iter(|| {
            out.clear();
            out.extend_from_slice(black_box(&normal));
            out.len()
        });
    });
    g.finish();

    let bodies =
        [("data_normal", normal), ("data_stuffed", lines_body(1)), ("data_dotdot", repeated(b"..\r\n"))];
    for (name, body) in &bodies {
        let mut g = c.benchmark_group(*name);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function("postern", |b| {
            b.iter(|| postern_data(black_box(body), &mut out, BareLineEnding::Reject));
        });
        g.bench_function("smtp-proto", |b| b.iter(|| smtp_proto_data(black_box(body), &mut out)));
        if *name == "data_normal" {
            // As a session feeds it: one call per 16 KiB read.
            g.bench_function("postern_16k_reads", |b| {
                b.iter(|| {
                    out.clear();
                    let mut rx = DataReceiver::new(BareLineEnding::Reject, Some(1000));
                    let mut used = 0;
                    for piece in black_box(body).chunks(16 * 1024) {
                        used += rx.ingest(piece, &mut out).0;
                    }
                    assert!(rx.is_done());
                    used
                });
            });
        }
        g.finish();
    }
}

/// Bodies built against the receiver (postern only; smtp-proto does not check what they
/// attack): the aim is that none runs more than ten times slower than `data_normal`.
fn hostile(c: &mut Criterion) {
    let mut out = Vec::with_capacity(2 * SIZE + 256);
    let bodies: [(&str, &[u8], BareLineEnding); 8] = [
        ("empty_lines", b"\r\n", BareLineEnding::Reject),
        ("dotdot_normalize", b"..\r\n", BareLineEnding::Normalize),
        ("bare_lf_reject", b"\n", BareLineEnding::Reject),
        ("bare_lf_normalize", b"\n", BareLineEnding::Normalize),
        ("bare_cr_normalize", b"a\r", BareLineEnding::Normalize),
        ("dot_lf_normalize", b".\n", BareLineEnding::Normalize),
        ("near_terminator", b"\r\n.\r\r\n", BareLineEnding::Normalize),
        ("nul_cr_runs", b"\r\r\r\0\r\n", BareLineEnding::Normalize),
    ];
    let mut g = c.benchmark_group("data_hostile");
    for (name, pattern, policy) in bodies {
        let body = repeated(pattern);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| b.iter(|| postern_data(black_box(&body), &mut out, policy)));
    }
    g.finish();
}

fn bdat(c: &mut Criterion) {
    // The same 78-character lines, sent as one BDAT LAST chunk (no stuffing).
    let body = lines_body(usize::MAX);
    let body = &body[..body.len() - 3];
    let mut out = Vec::with_capacity(2 * SIZE + 256);
    let mut g = c.benchmark_group("data_bdat");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("postern", |b| {
        b.iter(|| {
            out.clear();
            let mut rx = BdatReceiver::new(BareLineEnding::Reject, Some(1000));
            rx.start_chunk(body.len() as u64);
            let (used, done) = rx.ingest(black_box(body), &mut out);
            assert!(done);
            rx.finish(&mut out);
            used
        });
    });
    g.bench_function("smtp-proto", |b| {
        b.iter(|| {
            out.clear();
            let mut rx = smtp_proto::request::receiver::BdatReceiver::new(body.len(), true);
            let mut iter = black_box(body).iter();
            assert!(rx.ingest(&mut iter, &mut out));
            out.len()
        });
    });
    g.finish();
}

criterion_group!(benches, data, bdat, hostile);
