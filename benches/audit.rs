//! Audit-trail benches: appending 200-byte records with the HMAC-SHA256 chain (clear and
//! AES-256-GCM bodies) and verifying them, against plain serialisation of the same record
//! (postern's binary encoding without the chain, serde_json, postern's JSON lines).
//!
//! Every bench handles batches of 1 000 records into a reused `Vec` (cleared per batch), so
//! throughput is in records per second. The record is a `MessageAccepted` event whose
//! payload (time, kind, body) is exactly 200 bytes; a framed, chained record is 237 bytes.
//!
//! Run with `cargo bench --bench audit -- --warm-up-time 1 --measurement-time 3`;
//! benches/README.md has the measured ratios. With `AUDIT_BENCH_CPU_TIME=1` the bench first
//! prints records per CPU-second of this thread (wall-clock figures on a shared machine
//! include the time other processes run).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use postern::audit::{EncryptionKey, Event, KeyRing, MacKey, Record, Writer, WriterConfig, verify_log};
use serde::Serialize;

const BATCH: u64 = 1_000;
const ID: &str = "1764410400.M123456P4242.mx.example.test";
const AUTH: &str = "spf=pass smtp.mailfrom=example.org; dkim=pass header.d=example.org; \
                    dmarc=pass header.from=example.org; arc=none; tls=TLSv1.3 okay.";

fn event(i: u64) -> Event<'static> {
    Event::MessageAccepted { session: i, size: 10_000 + i, id: ID, auth: AUTH }
}

/// The same record, shaped for serde.
#[derive(Serialize)]
struct JsonRecord<'a> {
    record: u64,
    time_us: u64,
    kind: &'static str,
    session: u64,
    size: u64,
    id: &'a str,
    auth: &'a str,
}

/// This thread's CPU time (user + system) in clock ticks, from `/proc/thread-self/stat`.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name (which is in parentheses): state is field 3,
    // utime field 14, stime field 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Records per CPU-second of `batch` (which handles `BATCH` records), measured over at least
/// 300 ticks (3 s at 100 Hz) of this thread's CPU time: on a shared, loaded machine,
/// wall-clock throughput understates what one core does.
fn per_cpu_second(name: &str, mut batch: impl FnMut()) {
    let Some(start) = cpu_ticks() else { return };
    let mut records = 0u64;
    let mut now = start;
    while now < start + 300 {
        for _ in 0..100 {
            batch();
        }
        records += 100 * BATCH;
        now = cpu_ticks().unwrap_or(u64::MAX);
    }
    // Linux reports thread CPU times in USER_HZ = 100 ticks per second.
    let secs = (now - start) as f64 / 100.0;
    println!("cpu-time {name:<32} {:>6.2} M records per CPU-second", records as f64 / secs / 1e6);
}

fn cpu_time_summary() {
    let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut out = Vec::with_capacity(1 << 20);
    per_cpu_second("binary_no_chain", || {
        out.clear();
        for i in 0..BATCH {
            event(i).encode(&mut out);
        }
        black_box(out.len());
    });
    let mac = MacKey::new(1, &[7; 32]);
    for encrypted in [false, true] {
        let mut writer = Writer::new(mac.clone(), WriterConfig::default());
        if encrypted {
            writer = writer.with_encryption(EncryptionKey::new(1, &[9; 32]));
        }
        writer.open_segment(t0, &mut Vec::new()).unwrap();
        let name = if encrypted { "chain_hmac_sha256_aes256gcm" } else { "chain_hmac_sha256" };
        per_cpu_second(name, || {
            out.clear();
            for i in 0..BATCH {
                writer.append(&event(i), t0, &mut out).unwrap();
            }
            black_box(out.len());
        });
        let mut segment = Vec::new();
        writer.close_segment(t0, &mut Vec::new()).unwrap();
        writer.open_segment(t0, &mut segment).unwrap();
        for i in 0..BATCH {
            writer.append(&event(i), t0, &mut segment).unwrap();
        }
        let keys = KeyRing::new().with_mac(mac.clone());
        let name = if encrypted { "verify_chain_encrypted" } else { "verify_chain" };
        per_cpu_second(name, || {
            black_box(verify_log(&keys, [segment.as_slice()]).records);
        });
    }
}

fn benches(c: &mut Criterion) {
    if std::env::var_os("AUDIT_BENCH_CPU_TIME").is_some() {
        cpu_time_summary();
    }
    let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut body = Vec::new();
    event(0).encode(&mut body);
    assert_eq!(body.len() + 10, 200, "payload must be 200 bytes");

    let mut g = c.benchmark_group("audit_append_200B");
    g.throughput(Throughput::Elements(BATCH));

    // Plain binary: the same frame layout (length, type, time, kind, body), no MAC.
    let mut out = Vec::with_capacity(1 << 20);
    g.bench_function("binary_no_chain", |b| {
        b.iter(|| {
            out.clear();
            for i in 0..BATCH {
                let start = out.len();
                out.extend_from_slice(&[0, 0, 0, 0, 3]);
                out.extend_from_slice(&(1_800_000_000_000_000u64 + i).to_le_bytes());
                out.extend_from_slice(&10u16.to_le_bytes());
                event(i).encode(&mut out);
                let len = (out.len() - start - 5) as u32;
                out[start..start + 4].copy_from_slice(&len.to_le_bytes());
            }
            black_box(out.len())
        });
    });

    g.bench_function("serde_json", |b| {
        b.iter(|| {
            out.clear();
            for i in 0..BATCH {
                let r = JsonRecord {
                    record: i,
                    time_us: 1_800_000_000_000_000 + i,
                    kind: "message_accepted",
                    session: i,
                    size: 10_000 + i,
                    id: ID,
                    auth: AUTH,
                };
                serde_json::to_writer(&mut out, &r).unwrap();
                out.push(b'\n');
            }
            black_box(out.len())
        });
    });

    let mut line = String::with_capacity(1 << 20);
    g.bench_function("postern_json_lines", |b| {
        b.iter(|| {
            line.clear();
            for i in 0..BATCH {
                Record { number: i, time: t0, event: event(i) }.write_json(&mut line);
                line.push('\n');
            }
            black_box(line.len())
        });
    });

    let mac = MacKey::new(1, &[7; 32]);
    let mut writer = Writer::new(mac.clone(), WriterConfig::default());
    writer.open_segment(t0, &mut Vec::new()).unwrap();
    g.bench_function("chain_hmac_sha256", |b| {
        b.iter(|| {
            out.clear();
            for i in 0..BATCH {
                writer.append(&event(i), t0, &mut out).unwrap();
            }
            black_box(out.len())
        });
    });

    let mut writer =
        Writer::new(mac.clone(), WriterConfig::default()).with_encryption(EncryptionKey::new(1, &[9; 32]));
    writer.open_segment(t0, &mut Vec::new()).unwrap();
    g.bench_function("chain_hmac_sha256_aes256gcm", |b| {
        b.iter(|| {
            out.clear();
            for i in 0..BATCH {
                writer.append(&event(i), t0, &mut out).unwrap();
            }
            black_box(out.len())
        });
    });
    g.finish();

    let mut g = c.benchmark_group("audit_verify_200B");
    g.throughput(Throughput::Elements(BATCH));
    let keys = KeyRing::new().with_mac(mac.clone());
    for encrypted in [false, true] {
        let mut writer = Writer::new(mac.clone(), WriterConfig::default());
        if encrypted {
            writer = writer.with_encryption(EncryptionKey::new(1, &[9; 32]));
        }
        let mut segment = Vec::new();
        writer.open_segment(t0, &mut segment).unwrap();
        for i in 0..BATCH {
            writer.append(&event(i), t0, &mut segment).unwrap();
        }
        writer.close_segment(t0, &mut segment).unwrap();
        let name = if encrypted { "verify_chain_encrypted" } else { "verify_chain" };
        g.bench_function(name, |b| {
            b.iter(|| {
                let report = verify_log(&keys, [segment.as_slice()]);
                assert_eq!(report.records, BATCH);
                black_box(report.end)
            });
        });
    }
    g.finish();
}

criterion_group!(audit, benches);
criterion_main!(audit);
