//! A fixed-size, set-associative table of per-key states with a hard cap.

use std::net::IpAddr;
use std::time::Instant;

use super::key::fmix;
use super::{Algorithm, Allowlist, ClientKey, Decision, Epoch, KeyConfig, Nanos};

/// Keys per group of a batch check (see [`KeyedLimiter::BATCH`]).
const GROUP: usize = 32;

/// Slots per bucket: four 16-byte GCRA slots fill one 64-byte cache line.
pub(crate) const WAYS: usize = 4;

#[derive(Debug, Clone, Copy, Default)]
struct Slot<S> {
    /// A keyed 64-bit fingerprint of the key, never 0; 0 marks an empty slot.
    fp: u64,
    state: S,
}

#[derive(Debug, Clone, Copy, Default)]
#[repr(align(64))]
struct Bucket<S> {
    slots: [Slot<S>; WAYS],
}

/// Counters of a keyed table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Keys currently held.
    pub len: usize,
    /// The hard cap on keys (slots allocated at construction).
    pub capacity: usize,
    /// Bytes the slots take (the whole table; it never grows).
    pub memory_bytes: usize,
    /// Records replaced because they had become idle (lossless reclamation).
    pub reclaimed: u64,
    /// Records replaced while still holding state (the key forgot its recent uses).
    pub evicted: u64,
}

/// The storage shared by [`KeyedLimiter`] and the penalty box.
///
/// A key hashes (keyed with the caller's seed) to one bucket of [`WAYS`] slots. A new key
/// takes an empty slot of its bucket or, when the bucket is full, the slot whose state goes
/// idle first: idle records are reclaimed for free, and under a flood of new keys the
/// records that carry the most state (the clients closest to their limits) are the last to
/// go. No allocation after construction, no sweep: each operation touches one bucket.
#[derive(Debug, Clone)]
pub(crate) struct Table<S> {
    buckets: Box<[Bucket<S>]>,
    k: [u64; 3],
    stats: TableStats,
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    fmix(*state)
}

fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a).wrapping_mul(u128::from(b));
    (p as u64) ^ ((p >> 64) as u64)
}

impl<S: Copy + Default> Table<S> {
    pub(crate) fn new(capacity: usize, seed: u64) -> Self {
        let n = capacity.div_ceil(WAYS).max(1);
        let mut s = seed;
        let k = [splitmix(&mut s), splitmix(&mut s), splitmix(&mut s)];
        let buckets = vec![Bucket::default(); n].into_boxed_slice();
        let stats = TableStats {
            capacity: n * WAYS,
            memory_bytes: n * std::mem::size_of::<Bucket<S>>(),
            ..TableStats::default()
        };
        Table { buckets, k, stats }
    }

    pub(crate) fn stats(&self) -> TableStats {
        self.stats
    }

    /// The keyed fingerprint (never 0) and the bucket index of `key`.
    fn locate(&self, key: &ClientKey) -> (u64, usize) {
        let (kind, value) = key.parts();
        let lo = value as u64;
        let hi = (value >> 64) as u64;
        let h = fold(lo ^ self.k[0], hi ^ self.k[1]);
        let h = fold(h ^ self.k[2], 0x9e37_79b9_7f4a_7c15 ^ u64::from(kind));
        let fp = h | 1;
        // Lemire's reduction of the high-quality upper bits: index < buckets.len().
        let idx = ((u128::from(h.rotate_left(32)) * self.buckets.len() as u128) >> 64) as usize;
        (fp, idx)
    }

    /// The state of `key`, inserted fresh if absent; `idle_at` ranks eviction candidates.
    pub(crate) fn entry(
        &mut self,
        key: &ClientKey,
        now: Nanos,
        idle_at: impl Fn(&S) -> Nanos,
    ) -> Option<&mut S> {
        let (fp, idx) = self.locate(key);
        self.entry_at(fp, idx, WAYS, now, idle_at)
    }

    /// Where `fp` sits in bucket `idx` (a slot index, or [`WAYS`] if absent). Read-only: the
    /// first pass of a batch calls it for many keys so that their bucket loads overlap.
    fn probe(&self, fp: u64, idx: usize) -> usize {
        self.buckets.get(idx).and_then(|b| b.slots.iter().position(|s| s.fp == fp)).unwrap_or(WAYS)
    }

    /// [`Table::entry`] for a located key; `hint` is where a [`Table::probe`] found it (only
    /// trusted if the slot still holds `fp`: an earlier key of the batch may have moved it).
    fn entry_at(
        &mut self,
        fp: u64,
        idx: usize,
        hint: usize,
        now: Nanos,
        idle_at: impl Fn(&S) -> Nanos,
    ) -> Option<&mut S> {
        let bucket = self.buckets.get_mut(idx)?;
        let hinted = bucket.slots.get(hint).is_some_and(|s| s.fp == fp);
        let found = if hinted { Some(hint) } else { bucket.slots.iter().position(|s| s.fp == fp) };
        let pos = match found {
            Some(p) => p,
            None => {
                let mut victim = 0;
                let mut best = (true, Nanos(u64::MAX));
                for (i, s) in bucket.slots.iter().enumerate() {
                    let rank = if s.fp == 0 { (false, Nanos(0)) } else { (true, idle_at(&s.state)) };
                    if rank < best {
                        best = rank;
                        victim = i;
                    }
                }
                match best {
                    (false, _) => self.stats.len += 1,
                    (true, t) if t <= now => self.stats.reclaimed += 1,
                    (true, _) => self.stats.evicted += 1,
                }
                let slot = bucket.slots.get_mut(victim)?;
                *slot = Slot { fp, state: S::default() };
                victim
            }
        };
        bucket.slots.get_mut(pos).map(|s| &mut s.state)
    }

    /// The state of `key` if present.
    pub(crate) fn get(&self, key: &ClientKey) -> Option<&S> {
        let (fp, idx) = self.locate(key);
        self.buckets.get(idx)?.slots.iter().find(|s| s.fp == fp).map(|s| &s.state)
    }

    /// Forget `key`; whether it was present.
    pub(crate) fn remove(&mut self, key: &ClientKey) -> bool {
        let (fp, idx) = self.locate(key);
        let Some(bucket) = self.buckets.get_mut(idx) else { return false };
        match bucket.slots.iter_mut().find(|s| s.fp == fp) {
            Some(slot) => {
                *slot = Slot::default();
                self.stats.len -= 1;
                true
            }
            None => false,
        }
    }
}

/// A rate limit per [`ClientKey`] in a table with a hard cap on keys.
///
/// Memory is allocated once, at construction: `capacity` slots (rounded up to a multiple of
/// four) of `8 + size_of::<A::State>()` bytes padded to a 64-byte bucket, i.e. 16 bytes per
/// key for [`Gcra`](super::Gcra) and 32 for the window algorithms. It never grows, whatever
/// keys arrive. When a key's bucket is full the record that goes idle first is replaced:
/// reclaiming idle records loses nothing; replacing a live one ([`TableStats::evicted`]) lets
/// that key start afresh, so size the table for the clients you expect to be active within
/// one limit period, and know that the clients nearest their limits are evicted last.
///
/// The bucket of a key is chosen by a hash keyed with `seed`: pass random bytes from the
/// application (e.g. `ring::rand::SystemRandom`) so that an attacker cannot aim keys at one
/// bucket; a fixed seed makes runs reproducible (tests, benches).
#[derive(Debug, Clone)]
pub struct KeyedLimiter<A: Algorithm> {
    algorithm: A,
    epoch: Epoch,
    table: Table<A::State>,
    keys: KeyConfig,
    allow: Allowlist,
}

impl<A: Algorithm> KeyedLimiter<A> {
    /// A table of at most `capacity` keys (at least 4), keyed hash seeded by `seed`, times
    /// counted from `epoch` (which must not be later than any `now` passed afterwards).
    #[must_use]
    pub fn new(algorithm: A, capacity: usize, seed: u64, epoch: Instant) -> Self {
        KeyedLimiter {
            algorithm,
            epoch: Epoch::new(epoch),
            table: Table::new(capacity, seed),
            keys: KeyConfig::default(),
            allow: Allowlist::default(),
        }
    }

    /// Group client addresses by these prefixes in [`KeyedLimiter::check_ip`].
    #[must_use]
    pub fn with_key_config(mut self, keys: KeyConfig) -> Self {
        self.keys = keys;
        self
    }

    /// Exempt these clients: their checks are allowed without touching the table.
    #[must_use]
    pub fn with_allowlist(mut self, allow: Allowlist) -> Self {
        self.allow = allow;
        self
    }

    /// Check (and on success record) one use by `key`.
    pub fn check(&mut self, key: ClientKey, now: Instant) -> Decision {
        self.check_n(key, 1, now)
    }

    /// Check (and on success record) `n` uses by `key` at once (recipients of a message,
    /// bytes of a message in KiB, ...).
    pub fn check_n(&mut self, key: ClientKey, n: u32, now: Instant) -> Decision {
        if !self.allow.is_empty() && self.allow.contains_key(&key) {
            return Decision::Allow;
        }
        let now = self.epoch.nanos(now);
        let algorithm = &self.algorithm;
        match self.table.entry(&key, now, |s| algorithm.idle_at(s)) {
            Some(state) => algorithm.check_n(state, n, now),
            // Unreachable: bucket indices are always in range.
            None => Decision::Allow,
        }
    }

    /// Check one use by the client at `ip`, grouped by the [`KeyConfig`] prefixes; allowlisted
    /// networks pass without touching the table.
    pub fn check_ip(&mut self, ip: IpAddr, now: Instant) -> Decision {
        if !self.allow.is_empty() && self.allow.contains_ip(ip) {
            return Decision::Allow;
        }
        self.check_n(ClientKey::from_ip(ip, &self.keys), 1, now)
    }

    /// Check (and on success record) one use by each of `keys`, all at `now`, appending one
    /// decision per key to `out`, in order.
    ///
    /// The decisions are exactly those of calling [`KeyedLimiter::check`] on each key in turn
    /// (a key may appear several times). It is faster on large tables: the keys are
    /// processed in groups of [`KeyedLimiter::BATCH`], first locating every key's bucket
    /// (independent memory loads that the CPU overlaps) and then updating them, instead of
    /// waiting for one cache miss after the other. An event loop that takes `now` once per
    /// wake-up has such a group at hand: the connections accepted, or the commands read, in
    /// one turn.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use postern::limit::{ClientKey, Decision, Gcra, KeyedLimiter};
    ///
    /// let now = Instant::now();
    /// let mut limiter = KeyedLimiter::new(Gcra::new(1, Duration::from_secs(10), 1).unwrap(), 1024, 7, now);
    /// let (a, b) = (ClientKey::user("alice"), ClientKey::user("bob"));
    /// let mut out = Vec::new();
    /// limiter.check_batch(&[a, b, a], now, &mut out);
    /// assert_eq!(out[..2], [Decision::Allow, Decision::Allow]);
    /// assert_eq!(out[2], Decision::Deny { retry_after: Duration::from_secs(10) });
    /// ```
    pub fn check_batch(&mut self, keys: &[ClientKey], now: Instant, out: &mut Vec<Decision>) {
        out.reserve(keys.len());
        let now = self.epoch.nanos(now);
        let check_allow = !self.allow.is_empty();
        for chunk in keys.chunks(Self::BATCH) {
            let mut group = [None; GROUP];
            for (key, slot) in chunk.iter().zip(group.iter_mut()) {
                if !(check_allow && self.allow.contains_key(key)) {
                    *slot = Some(*key);
                }
            }
            self.check_group(group.get(..chunk.len()).unwrap_or_default(), now, out);
        }
    }

    /// [`KeyedLimiter::check_batch`] for client addresses: the decisions of
    /// [`KeyedLimiter::check_ip`] on each address in turn, appended to `out`.
    pub fn check_ip_batch(&mut self, ips: &[IpAddr], now: Instant, out: &mut Vec<Decision>) {
        out.reserve(ips.len());
        let now = self.epoch.nanos(now);
        let check_allow = !self.allow.is_empty();
        for chunk in ips.chunks(Self::BATCH) {
            let mut group = [None; GROUP];
            for (ip, slot) in chunk.iter().zip(group.iter_mut()) {
                if !(check_allow && self.allow.contains_ip(*ip)) {
                    let key = ClientKey::from_ip(*ip, &self.keys);
                    if !(check_allow && self.allow.contains_key(&key)) {
                        *slot = Some(key);
                    }
                }
            }
            self.check_group(group.get(..chunk.len()).unwrap_or_default(), now, out);
        }
    }

    /// Keys per group in [`KeyedLimiter::check_batch`]: enough bucket loads in flight to
    /// hide memory latency, few enough (2 KiB of buckets) that they are still in the L1
    /// cache when updated.
    pub const BATCH: usize = GROUP;

    /// One group of a batch; `None` is an allow-listed key.
    fn check_group(&mut self, group: &[Option<ClientKey>], now: Nanos, out: &mut Vec<Decision>) {
        // Pass 1, read-only: locate every key and look into its bucket. The loads do not
        // depend on each other, so their cache misses overlap.
        let mut located = [(0u64, 0usize, WAYS); GROUP];
        for (key, place) in group.iter().zip(located.iter_mut()) {
            if let Some(key) = key {
                let (fp, idx) = self.table.locate(key);
                *place = (fp, idx, WAYS);
            }
        }
        // A tight loop of loads and compares only, so that many are in flight at once.
        for (key, place) in group.iter().zip(located.iter_mut()) {
            if key.is_some() {
                place.2 = self.table.probe(place.0, place.1);
            }
        }
        // Pass 2, in order: the same updates as one check after the other, on buckets that
        // are now in cache.
        let algorithm = &self.algorithm;
        for (key, &(fp, idx, hint)) in group.iter().zip(located.iter()) {
            let decision = match key {
                None => Decision::Allow,
                Some(_) => match self.table.entry_at(fp, idx, hint, now, |s| algorithm.idle_at(s)) {
                    Some(state) => algorithm.check_n(state, 1, now),
                    // Unreachable: bucket indices are always in range.
                    None => Decision::Allow,
                },
            };
            out.push(decision);
        }
    }

    /// The state recorded for `key`, if the table holds it.
    #[must_use]
    pub fn state(&self, key: &ClientKey) -> Option<&A::State> {
        self.table.get(key)
    }

    /// Forget `key` (e.g. after a successful authentication); whether it was present.
    pub fn remove(&mut self, key: &ClientKey) -> bool {
        self.table.remove(key)
    }

    /// The key a client address maps to under this limiter's [`KeyConfig`].
    #[must_use]
    pub fn key_of(&self, ip: IpAddr) -> ClientKey {
        ClientKey::from_ip(ip, &self.keys)
    }

    /// Keys currently held (never more than [`KeyedLimiter::capacity`]).
    #[must_use]
    pub fn len(&self) -> usize {
        self.table.stats.len
    }

    /// Whether no key is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.table.stats.len == 0
    }

    /// The hard cap on keys.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.table.stats.capacity
    }

    /// Size, cap, memory and eviction counters.
    #[must_use]
    pub fn stats(&self) -> TableStats {
        self.table.stats()
    }

    /// The algorithm.
    #[must_use]
    pub fn algorithm(&self) -> &A {
        &self.algorithm
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a real Instant is the base of the virtual clock
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::limit::{Gcra, GcraState, SlidingWindow};

    #[test]
    fn sizes() {
        assert_eq!(std::mem::size_of::<Bucket<GcraState>>(), 64);
        let t: Table<GcraState> = Table::new(1_000_000, 1);
        assert_eq!(t.stats().capacity, 1_000_000);
        assert_eq!(t.stats().memory_bytes, 16_000_000);
        let t: Table<crate::limit::WindowState> = Table::new(1_000_000, 1);
        assert_eq!(t.stats().memory_bytes / 1_000_000, 32);
    }

    #[test]
    fn flood_keeps_cap_and_heavy_clients() {
        let t0 = Instant::now();
        let g = Gcra::new(1, Duration::from_secs(1), 10).unwrap();
        let mut l = KeyedLimiter::new(g, 64, 7, t0);
        let abuser = ClientKey::custom(u128::MAX);
        for _ in 0..10 {
            assert!(l.check(abuser, t0).is_allowed());
        }
        assert!(!l.check(abuser, t0).is_allowed());
        for i in 0..100_000u128 {
            let _ = l.check(ClientKey::custom(i), t0);
            assert!(l.len() <= l.capacity());
        }
        assert_eq!(l.capacity(), 64);
        assert_eq!(l.len(), 64);
        // The abuser's record (TAT 10 s ahead) outranks every flood record (1 s ahead).
        assert!(!l.check(abuser, t0).is_allowed());
        let s = l.stats();
        assert!(s.evicted > 0);
        // Later, idle records are reclaimed instead of evicted.
        let later = t0 + Duration::from_secs(60);
        let before = l.stats();
        for i in 200_000..200_100u128 {
            let _ = l.check(ClientKey::custom(i), later);
        }
        let after = l.stats();
        // Idle records go first; only new keys that overflow a bucket of fresh ones evict.
        assert_eq!(after.reclaimed - before.reclaimed + after.evicted - before.evicted, 100);
        assert!(after.reclaimed - before.reclaimed >= 40);
        assert_eq!(after.len, 64);
    }

    #[test]
    fn batch_matches_one_by_one() {
        let t0 = Instant::now();
        let g = Gcra::new(2, Duration::from_secs(1), 2).unwrap();
        let mut allow = Allowlist::new();
        allow.add_network("10.0.0.0".parse().unwrap(), 8).unwrap();
        allow.add_key(ClientKey::custom(5));
        // A tiny table: keys share buckets and evict each other inside one group.
        let mut one = KeyedLimiter::new(g, 16, 11, t0).with_allowlist(allow.clone());
        let mut batch = KeyedLimiter::new(g, 16, 11, t0).with_allowlist(allow);
        let mut denied = 0;
        let keys: Vec<ClientKey> = (0..100u128).map(|i| ClientKey::custom(i * 7 % 13)).collect();
        let ips: Vec<IpAddr> = (0..100u32)
            .map(|i| {
                if i % 5 == 0 {
                    "10.1.1.1".parse().unwrap()
                } else {
                    IpAddr::from([192, 0, 2, (i % 9) as u8])
                }
            })
            .collect();
        let mut out = vec![Decision::Allow];
        for step in 0..4u64 {
            let now = t0 + Duration::from_millis(300 * step);
            let expected: Vec<Decision> = keys.iter().map(|k| one.check(*k, now)).collect();
            out.truncate(1);
            batch.check_batch(&keys, now, &mut out);
            assert_eq!(out.get(1..), Some(&expected[..]));
            denied += expected.iter().filter(|d| !d.is_allowed()).count();
            let expected: Vec<Decision> = ips.iter().map(|ip| one.check_ip(*ip, now)).collect();
            out.clear();
            batch.check_ip_batch(&ips, now, &mut out);
            assert_eq!(out, expected);
        }
        assert!(denied > 0);
        assert_eq!(one.stats(), batch.stats());
        assert!(batch.stats().evicted + batch.stats().reclaimed > 0);
        out.clear();
        batch.check_batch(&[], t0, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn allowlist_and_remove() {
        let t0 = Instant::now();
        let sw = SlidingWindow::new(1, Duration::from_secs(10)).unwrap();
        let mut allow = Allowlist::new();
        allow.add_network("10.0.0.0".parse().unwrap(), 8).unwrap();
        allow.add_key(ClientKey::user("root"));
        let mut l = KeyedLimiter::new(sw, 16, 3, t0).with_allowlist(allow);
        for _ in 0..5 {
            assert!(l.check_ip("10.1.2.3".parse().unwrap(), t0).is_allowed());
            assert!(l.check(ClientKey::user("root"), t0).is_allowed());
        }
        assert!(l.is_empty());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(l.check_ip(ip, t0).is_allowed());
        assert!(!l.check_ip(ip, t0).is_allowed());
        assert_eq!(l.state(&l.key_of(ip)).map(|s| s.cur), Some(1));
        assert!(l.remove(&l.key_of(ip)));
        assert!(!l.remove(&l.key_of(ip)));
        assert!(l.check_ip(ip, t0).is_allowed());
        assert_eq!(l.len(), 1);
    }
}
