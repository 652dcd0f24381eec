//! Rate-limiter benches, side by side with governor 0.10 (`RateLimiter::keyed` + `check_key`)
//! on the same quota (50 per second, bursts of 10, GCRA in both).
//!
//! - `limit_keyed/1_key`, `limit_keyed/1k_hot_keys`, `limit_keyed/1M_random_ipaddr`: one check
//!   per iteration, keys taken in a fixed pseudo-random order from a pre-populated set.
//!   postern reads `Instant::now()` for every check, as governor reads its clock, so both
//!   pay for a clock read; `postern_now_passed` shows the check alone with `now` taken once
//!   per batch, which is how a sans-IO event loop calls it.
//! - `limit_batch/1M_random_ipaddr_x64`: batches of 64 keys (gathered into a buffer on both
//!   sides), governor key by key, postern key by key and with `check_ip_batch`.
//! - `limit_flood/10M_distinct`: 10 million never-seen keys into a postern table capped at
//!   1 M keys (governor has no cap, so it is not run in the flood loop; its memory at 10 M is
//!   measured below instead).
//! - Memory per key is printed before the benches (unless `LIMIT_BENCH_NO_MEMORY` is set): postern's from its table size (and checked
//!   against the RSS growth), governor's from the RSS growth (`/proc/self/statm`) after inserting
//!   1 M and 10 M IpAddr keys.
//!
//! Run with `cargo bench --bench limit -- --warm-up-time 1 --measurement-time 3`;
//! benches/README.md ("Rate limiting") has the measured ratios.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use governor::{Quota, RateLimiter};
use postern::limit::{ClientKey, Gcra, KeyedLimiter};

const RATE: u32 = 50;
const BURST: u32 = 10;
const MILLION: usize = 1_000_000;

fn quota() -> Quota {
    Quota::per_second(NonZeroU32::new(RATE).unwrap()).allow_burst(NonZeroU32::new(BURST).unwrap())
}

fn gcra() -> Gcra {
    Gcra::new(RATE, Duration::from_secs(1), BURST).unwrap()
}

/// xorshift64*: a fixed, reproducible key sequence.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// `n` distinct random addresses: 3/4 IPv4, 1/4 IPv6 (distinct /64s).
fn addresses(n: usize, seed: u64) -> Vec<IpAddr> {
    let mut rng = Rng(seed);
    let mut seen = std::collections::HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let r = rng.next();
        let ip = if r.is_multiple_of(4) {
            IpAddr::V6(Ipv6Addr::from((u128::from(rng.next()) << 64) | u128::from(r)))
        } else {
            IpAddr::V4(Ipv4Addr::from((r >> 16) as u32))
        };
        if seen.insert(ClientKey::from(ip)) {
            out.push(ip);
        }
    }
    out
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn memory_report() {
    let start = Instant::now();
    for n in [MILLION, 10 * MILLION] {
        let keys = addresses(n, 0x5eed + n as u64);
        let before = rss_bytes();
        let gov = RateLimiter::keyed(quota());
        for ip in &keys {
            let _ = gov.check_key(ip);
        }
        let gov_bytes = rss_bytes().saturating_sub(before);
        println!(
            "memory: governor {n} IpAddr keys: len {} RSS +{:.1} MiB = {:.1} bytes/key",
            gov.len(),
            gov_bytes as f64 / 1048576.0,
            gov_bytes as f64 / n as f64
        );
        drop(gov);
        let before = rss_bytes();
        let mut ours = KeyedLimiter::new(gcra(), MILLION, 0x5eed, start);
        let now = Instant::now();
        for ip in &keys {
            let _ = ours.check_ip(*ip, now);
        }
        let ours_bytes = rss_bytes().saturating_sub(before);
        let s = ours.stats();
        println!(
            "memory: postern {n} IpAddr keys into a 1 M cap: len {} (cap {}), table {} bytes = {:.1} bytes/slot, \
             RSS +{:.1} MiB, reclaimed {} evicted {}",
            s.len,
            s.capacity,
            s.memory_bytes,
            s.memory_bytes as f64 / s.capacity as f64,
            ours_bytes as f64 / 1048576.0,
            s.reclaimed,
            s.evicted
        );
        assert!(s.len <= s.capacity);
    }
}

fn keyed(c: &mut Criterion) {
    // The memory report inserts 11 M keys into governor (a minute); skip it for quick runs.
    if std::env::var_os("LIMIT_BENCH_NO_MEMORY").is_none() {
        memory_report();
    }
    let start = Instant::now();
    let mut group = c.benchmark_group("limit_keyed");
    for (name, n) in [("1_key", 1usize), ("1k_hot_keys", 1000), ("1M_random_ipaddr", MILLION)] {
        let keys = addresses(n, 42);
        // A fixed pseudo-random visiting order over the keys.
        let mut rng = Rng(7);
        let order: Vec<u32> = (0..(1 << 22)).map(|_| (rng.next() % n as u64) as u32).collect();
        let mask = order.len() - 1;

        let gov = RateLimiter::keyed(quota());
        let mut ours = KeyedLimiter::new(gcra(), n.max(1024), 0x5eed, start);
        let now = Instant::now();
        for ip in &keys {
            let _ = gov.check_key(ip);
            let _ = ours.check_ip(*ip, now);
        }

        let mut i = 0usize;
        group.bench_function(format!("{name}/governor"), |b| {
            b.iter(|| {
                i = (i + 1) & mask;
                black_box(gov.check_key(&keys[order[i] as usize]).is_ok())
            })
        });
        let mut i = 0usize;
        group.bench_function(format!("{name}/postern"), |b| {
            b.iter(|| {
                i = (i + 1) & mask;
                black_box(ours.check_ip(keys[order[i] as usize], Instant::now()).is_allowed())
            })
        });
        let mut i = 0usize;
        group.bench_function(format!("{name}/postern_now_passed"), |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                let now = t;
                for _ in 0..iters {
                    i = (i + 1) & mask;
                    black_box(ours.check_ip(keys[order[i] as usize], now).is_allowed());
                }
                t.elapsed()
            })
        });
    }
    group.finish();
}

/// Keys per batch in `limit_batch`: the connections or commands an event loop handles per
/// wake-up (`now` taken once).
const BATCH: usize = 64;

/// The `j`-th of `MILLION` distinct addresses, computed rather than fetched from an array
/// (so that the bench does not add a cache miss per key to both sides): 3/4 IPv4, 1/4
/// IPv6 /64s, through bijections of `j` (odd multipliers and xorshifts), hence distinct.
fn generated(j: u32) -> IpAddr {
    let mut x = j.wrapping_mul(0x9e37_79b1);
    x ^= x >> 15;
    x = x.wrapping_mul(0x85eb_ca6b);
    if j.is_multiple_of(4) {
        let hi = u64::from(x).wrapping_mul(0xff51_afd7_ed55_8ccd) | (0x2001u64 << 48);
        IpAddr::V6(Ipv6Addr::from(u128::from(hi) << 64 | 1))
    } else {
        IpAddr::V4(Ipv4Addr::from(x))
    }
}

/// The batch API at 1 M random keys. Both sides get the same batches of `BATCH` addresses
/// (pseudo-random indices into the 1 M pre-populated keys, generated into a small buffer,
/// which is timed on both sides), then checked: governor one `check_key` after the other
/// (it has no batch API), postern one `check_ip` after the other and with one
/// `check_ip_batch`. Throughput is per key.
fn batch(c: &mut Criterion) {
    let start = Instant::now();
    let mut group = c.benchmark_group("limit_batch");
    group.throughput(criterion::Throughput::Elements(BATCH as u64));
    let n = MILLION as u32;
    let gov = RateLimiter::keyed(quota());
    let mut ours = KeyedLimiter::new(gcra(), MILLION, 0x5eed, start);
    let now = Instant::now();
    for j in 0..n {
        let ip = generated(j);
        let _ = gov.check_key(&ip);
        let _ = ours.check_ip(ip, now);
    }
    assert_eq!(gov.len(), MILLION, "generated keys are distinct");
    let mut buf: Vec<IpAddr> = Vec::with_capacity(BATCH);
    let mut rng = Rng(7);
    let mut gather = |buf: &mut Vec<IpAddr>| {
        buf.clear();
        for _ in 0..BATCH {
            buf.push(generated((rng.next() % u64::from(n)) as u32));
        }
    };

    // The machine is shared: alternate the three sides in short rounds and take the median
    // per-round ratio, so that load changes hit all three alike.
    let mut out = Vec::with_capacity(BATCH);
    let mut rounds: Vec<(f64, f64, f64)> = Vec::new();
    for _ in 0..31 {
        let mut per_key = [0f64; 3];
        for (side, slot) in per_key.iter_mut().enumerate() {
            let t = Instant::now();
            let now = t;
            for _ in 0..2000 {
                gather(&mut buf);
                match side {
                    0 => {
                        for ip in &buf {
                            black_box(gov.check_key(ip).is_ok());
                        }
                    }
                    1 => {
                        for ip in &buf {
                            black_box(ours.check_ip(*ip, now).is_allowed());
                        }
                    }
                    _ => {
                        out.clear();
                        ours.check_ip_batch(&buf, now, &mut out);
                        black_box(&out);
                    }
                }
            }
            *slot = t.elapsed().as_nanos() as f64 / (2000.0 * BATCH as f64);
        }
        rounds.push((per_key[0], per_key[1], per_key[2]));
    }
    let median = |f: &dyn Fn(&(f64, f64, f64)) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "interleaved, 1 M random IpAddr keys, batches of {BATCH}, median of {} rounds, ns per key: \
         governor {:.1}, postern one by one {:.1}, postern check_ip_batch {:.1}; \
         ratio one by one {:.2}x, batch {:.2}x",
        rounds.len(),
        median(&|r| r.0),
        median(&|r| r.1),
        median(&|r| r.2),
        median(&|r| r.0 / r.1),
        median(&|r| r.0 / r.2),
    );

    group.bench_function(format!("1M_random_ipaddr_x{BATCH}/generate_only"), |b| {
        b.iter(|| {
            gather(&mut buf);
            black_box(&buf);
        })
    });
    group.bench_function(format!("1M_random_ipaddr_x{BATCH}/governor"), |b| {
        b.iter(|| {
            gather(&mut buf);
            let mut allowed = 0u32;
            for ip in &buf {
                allowed += u32::from(gov.check_key(ip).is_ok());
            }
            black_box(allowed)
        })
    });
    group.bench_function(format!("1M_random_ipaddr_x{BATCH}/postern_one_by_one"), |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            let now = t;
            for _ in 0..iters {
                gather(&mut buf);
                let mut allowed = 0u32;
                for ip in &buf {
                    allowed += u32::from(ours.check_ip(*ip, now).is_allowed());
                }
                black_box(allowed);
            }
            t.elapsed()
        })
    });
    group.bench_function(format!("1M_random_ipaddr_x{BATCH}/postern_check_ip_batch"), |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            let now = t;
            for _ in 0..iters {
                gather(&mut buf);
                out.clear();
                ours.check_ip_batch(&buf, now, &mut out);
                black_box(out.iter().filter(|d| d.is_allowed()).count());
            }
            t.elapsed()
        })
    });
    group.finish();
}

fn flood(c: &mut Criterion) {
    let start = Instant::now();
    let mut group = c.benchmark_group("limit_flood");
    group.sample_size(10);
    group.bench_function("10M_distinct/postern_cap_1M", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for round in 0..iters {
                let mut ours = KeyedLimiter::new(gcra(), MILLION, round, start);
                let now = Instant::now();
                let t = Instant::now();
                // Every address of one IPv6 /32, grouped by /64: 10 M distinct keys.
                let base = 0x2001_0db8_u128 << 96;
                for k in 0..10 * MILLION as u128 {
                    black_box(ours.check_ip(IpAddr::V6(Ipv6Addr::from(base | (k << 64))), now));
                }
                total += t.elapsed();
                let s = ours.stats();
                assert!(s.len <= s.capacity && s.capacity == MILLION, "{s:?}");
                assert_eq!(s.memory_bytes, 16 * MILLION);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, keyed, batch, flood);
criterion_main!(benches);
