//! Rate limiting through the public API, on a virtual clock: exact boundaries, quotas that
//! hold in every window (proptest), and a key cap that holds under any key sequence.
#![cfg(feature = "limit")]
#![allow(clippy::disallowed_methods)] // a real Instant is the base of the virtual clock
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use postern::limit::{
    Algorithm, Allowlist, ClientKey, Concurrency, Decision, FixedWindow, Gcra, KeyConfig, KeyedConcurrency,
    KeyedLimiter, Limiter, Nanos, PenaltyBox, PenaltyConfig, Scope, SlidingWindow, reply_congestion,
    reply_rate_limited, reply_too_many_connections, smtp_reply,
};
use proptest::prelude::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn connection_rate_per_ipv6_prefix() {
    let t0 = Instant::now();
    let mut l = KeyedLimiter::new(Gcra::new(2, Duration::from_secs(60), 2).unwrap(), 1000, 1, t0);
    // Every address of one /64 is one client by default.
    let a: IpAddr = "2001:db8:0:1::1".parse().unwrap();
    let b: IpAddr = "2001:db8:0:1:dead:beef::2".parse().unwrap();
    let other: IpAddr = "2001:db8:0:2::1".parse().unwrap();
    assert!(l.check_ip(a, t0).is_allowed());
    assert!(l.check_ip(b, t0).is_allowed());
    assert_eq!(l.check_ip(a, t0), Decision::Deny { retry_after: Duration::from_secs(30) });
    assert!(l.check_ip(other, t0).is_allowed());
    assert!(l.check_ip(b, t0 + Duration::from_secs(30)).is_allowed());
    // Postfix-like /84 grouping separates them.
    let mut fine = KeyedLimiter::new(Gcra::new(1, Duration::from_secs(60), 1).unwrap(), 1000, 1, t0)
        .with_key_config(KeyConfig::new(32, 84).unwrap());
    assert!(fine.check_ip(a, t0).is_allowed());
    assert!(fine.check_ip(b, t0).is_allowed());
}

#[test]
fn recipients_weighted_per_sender_domain() {
    let t0 = Instant::now();
    let mut l = KeyedLimiter::new(SlidingWindow::new(100, Duration::from_secs(3600)).unwrap(), 100, 2, t0);
    let d = ClientKey::domain("Example.ORG");
    assert!(l.check_n(d, 60, t0).is_allowed());
    assert!(l.check_n(ClientKey::domain("example.org."), 40, t0).is_allowed());
    assert!(!l.check_n(d, 1, t0 + ms(1)).is_allowed());
    assert!(l.check_n(ClientKey::domain("example.net"), 100, t0).is_allowed());
}

#[test]
fn allowlisted_clients_bypass() {
    let t0 = Instant::now();
    let mut allow = Allowlist::new();
    allow.add_network("198.51.100.0".parse().unwrap(), 24).unwrap();
    let mut l = KeyedLimiter::new(FixedWindow::new(1, Duration::from_secs(60)).unwrap(), 100, 3, t0)
        .with_allowlist(allow);
    for _ in 0..100 {
        assert!(l.check_ip("198.51.100.9".parse().unwrap(), t0).is_allowed());
    }
    assert!(l.check_ip("203.0.113.9".parse().unwrap(), t0).is_allowed());
    assert!(!l.check_ip("203.0.113.9".parse().unwrap(), t0).is_allowed());
}

#[test]
fn auth_failures_into_penalty_box_and_replies() {
    let t0 = Instant::now();
    let mut pbox = PenaltyBox::new(PenaltyConfig::default(), 1000, 4, t0);
    let ip: IpAddr = "192.0.2.66".parse().unwrap();
    let key = ClientKey::from(ip);
    let mut t = t0;
    let mut bans = Vec::new();
    for _ in 0..4 {
        for _ in 0..3 {
            if let Decision::Deny { retry_after } = pbox.violation(key, t) {
                bans.push(retry_after);
                t += retry_after;
            }
        }
    }
    assert_eq!(bans, [ms(60_000), ms(600_000), ms(3_600_000), ms(86_400_000)]);
    assert_eq!(reply_too_many_connections(), (421, (4, 7, 0), smtp_reply(Scope::Connection).2));
    assert_eq!(reply_rate_limited().0, 450);
    assert_eq!(reply_congestion().1, (4, 4, 5));
}

#[test]
fn concurrency_permits() {
    let global = Concurrency::new(1);
    let per_ip = KeyedConcurrency::new(2, 1 << 12, 5);
    let k = ClientKey::from("192.0.2.1".parse::<IpAddr>().unwrap());
    {
        let _g = global.try_acquire().unwrap();
        let _a = per_ip.try_acquire(&k).unwrap();
        let _b = per_ip.try_acquire(&k).unwrap();
        assert!(global.try_acquire().is_none());
        assert!(per_ip.try_acquire(&k).is_none());
    }
    assert_eq!(global.in_use(), 0);
    assert_eq!(per_ip.in_use(&k), 0);
}

/// Runs `alg` over a sequence of (gap, weight) events; returns the admitted (time, weight).
fn admitted<A: Algorithm>(alg: &A, events: &[(u64, u32)]) -> Vec<(u64, u32)> {
    let mut st = A::State::default();
    let mut t = 0u64;
    let mut out = Vec::new();
    for &(gap, n) in events {
        t += gap;
        let mut probe = st;
        match alg.check_n(&mut st, n, Nanos(t)) {
            Decision::Allow => out.push((t, n)),
            Decision::Deny { retry_after } => {
                // Exact retry: allowed at t + retry, not one nanosecond earlier.
                if retry_after != Duration::MAX {
                    let r = u64::try_from(retry_after.as_nanos()).unwrap();
                    let mut early = probe;
                    assert!(!alg.check_n(&mut early, n, Nanos(t + r - 1)).is_allowed());
                    assert!(alg.check_n(&mut probe, n, Nanos(t + r)).is_allowed());
                }
            }
        }
    }
    out
}

/// The largest total weight admitted in any half-open interval [s, s + len).
fn max_in_window(adm: &[(u64, u32)], len: u64) -> u64 {
    let mut best = 0;
    for (i, &(s, _)) in adm.iter().enumerate() {
        let sum: u64 = adm[i..].iter().take_while(|(t, _)| *t < s + len).map(|(_, n)| u64::from(*n)).sum();
        best = best.max(sum);
    }
    best
}

fn events() -> impl Strategy<Value = Vec<(u64, u32)>> {
    prop::collection::vec((prop_oneof![Just(0u64), 0u64..50, 0u64..2000], 1u32..4), 1..300)
}

proptest! {
    #[test]
    fn gcra_never_exceeds_burst_plus_rate(limit in 1u32..20, burst in 1u32..8, ev in events()) {
        let period = 1000u64;
        let g = Gcra::new(limit, Duration::from_nanos(period), burst).unwrap();
        let interval = u64::try_from(g.interval().as_nanos()).unwrap();
        let adm = admitted(&g, &ev);
        for len in [1, interval, period, 3 * period] {
            // Any interval of length `len` admits at most burst + (len - 1) / interval cells.
            prop_assert!(max_in_window(&adm, len) <= u64::from(burst) + (len - 1) / interval);
        }
    }

    #[test]
    fn fixed_window_never_exceeds_limit_per_window(limit in 1u32..20, ev in events()) {
        let fw = FixedWindow::new(limit, Duration::from_nanos(1000)).unwrap();
        let adm = admitted(&fw, &ev);
        // Client windows start at a use: any [s, s + 1000) meets at most two of them.
        prop_assert!(max_in_window(&adm, 1000) <= 2 * u64::from(limit));
        // Re-derive the windows and check each.
        let (mut start, mut sum) = (None::<u64>, 0u64);
        for &(t, n) in &adm {
            if start.is_none_or(|s| t >= s + 1000) { start = Some(t); sum = 0; }
            sum += u64::from(n);
            prop_assert!(sum <= u64::from(limit));
        }
    }

    #[test]
    fn sliding_window_never_exceeds_limit(limit in 1u32..20, ev in events()) {
        let w = 1000u64;
        let sw = SlidingWindow::new(limit, Duration::from_nanos(w)).unwrap();
        let adm = admitted(&sw, &ev);
        // Each aligned window holds at most `limit`; any window at most twice that.
        for k in 0..=adm.last().map_or(0, |a| a.0 / w) {
            let sum: u64 = adm.iter().filter(|(t, _)| t / w == k).map(|(_, n)| u64::from(*n)).sum();
            prop_assert!(sum <= u64::from(limit));
        }
        prop_assert!(max_in_window(&adm, w) <= 2 * u64::from(limit));
    }

    #[test]
    fn table_never_exceeds_cap(cap in 1usize..200, keys in prop::collection::vec((0u128..1000, 0u64..10), 1..2000)) {
        let t0 = Instant::now();
        let mut l = KeyedLimiter::new(Gcra::new(1, Duration::from_millis(10), 1).unwrap(), cap, 9, t0);
        let mut t = t0;
        for (k, gap) in keys {
            t += Duration::from_millis(gap);
            let _ = l.check(ClientKey::custom(k), t);
            prop_assert!(l.len() <= l.capacity());
        }
        prop_assert!(l.capacity() <= cap.div_ceil(4) * 4);
        prop_assert_eq!(l.stats().memory_bytes, l.capacity() * 16);
    }

    #[test]
    fn batch_decides_like_one_by_one(
        cap in 4usize..64,
        batches in prop::collection::vec(
            (0u64..2_000, prop::collection::vec((0u128..40, any::<bool>()), 0..100)),
            1..20,
        ),
    ) {
        let t0 = Instant::now();
        let g = Gcra::new(3, Duration::from_secs(1), 2).unwrap();
        let mut one = KeyedLimiter::new(g, cap, 9, t0);
        let mut many = KeyedLimiter::new(g, cap, 9, t0);
        let mut now = t0;
        let mut out = Vec::new();
        for (advance, keys) in batches {
            now += ms(advance);
            // Half IPv6 addresses (several per /64), half custom keys.
            let ips: Vec<IpAddr> = keys
                .iter()
                .map(|(k, _)| IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | ((k % 8) << 64) | k)))
                .collect();
            let keys: Vec<ClientKey> = keys.iter().map(|(k, _)| ClientKey::custom(*k)).collect();
            let expected: Vec<Decision> = keys.iter().map(|k| one.check(*k, now)).collect();
            out.clear();
            many.check_batch(&keys, now, &mut out);
            prop_assert_eq!(&out, &expected);
            let expected: Vec<Decision> = ips.iter().map(|ip| one.check_ip(*ip, now)).collect();
            out.clear();
            many.check_ip_batch(&ips, now, &mut out);
            prop_assert_eq!(&out, &expected);
            prop_assert_eq!(one.stats(), many.stats());
            prop_assert!(many.len() <= many.capacity());
        }
    }

    #[test]
    fn single_key_limiter_matches_keyed(ev in events()) {
        let t0 = Instant::now();
        let g = Gcra::new(5, Duration::from_micros(1), 2).unwrap();
        let mut single = Limiter::new(g, t0);
        let mut keyed = KeyedLimiter::new(g, 4, 0, t0);
        let mut t = t0;
        for (gap, n) in ev {
            t += Duration::from_nanos(gap);
            prop_assert_eq!(single.check_n(n, t), keyed.check_n(ClientKey::user("u"), n, t));
        }
    }
}

#[test]
fn flood_of_a_whole_ipv6_64_and_of_many_64s_holds_the_cap() {
    let t0 = Instant::now();
    let mut l = KeyedLimiter::new(Gcra::new(10, Duration::from_secs(1), 5).unwrap(), 4096, 11, t0);
    // Every address of one /64 is a single key.
    for i in 0..100_000u128 {
        let _ = l.check_ip(IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | i)), t0);
    }
    assert_eq!(l.len(), 1);
    // A million distinct /64s: the cap holds, the memory never changes.
    let mem = l.stats().memory_bytes;
    for i in 0..1_000_000u128 {
        let _ = l.check_ip(IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | (i << 64))), t0);
    }
    assert_eq!(l.len(), 4096);
    assert_eq!(l.stats().memory_bytes, mem);
}
