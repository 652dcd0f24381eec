//! Concurrency limits whose permits release on drop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::ClientKey;
use super::key::fmix;

/// At most `max` holders at once (connections, sessions in DATA, ...).
///
/// [`Concurrency::try_acquire`] hands out a [`Permit`] that gives its place back when
/// dropped, so a connection handler cannot forget to release it, even on a panic or an early
/// return. Permits are `Send`: a thread-per-connection server can move them to its threads.
///
/// ```
/// use postern::limit::Concurrency;
///
/// let sessions = Concurrency::new(2);
/// let a = sessions.try_acquire().unwrap();
/// let _b = sessions.try_acquire().unwrap();
/// assert!(sessions.try_acquire().is_none());
/// drop(a);
/// assert_eq!(sessions.in_use(), 1);
/// assert!(sessions.try_acquire().is_some());
/// ```
#[derive(Debug, Clone)]
pub struct Concurrency {
    max: u32,
    count: Arc<AtomicU32>,
}

/// A place in a [`Concurrency`] limit, given back on drop.
#[derive(Debug)]
#[must_use = "the place is given back as soon as the permit is dropped"]
pub struct Permit {
    count: Arc<AtomicU32>,
}

impl Concurrency {
    /// At most `max` permits at once.
    #[must_use]
    pub fn new(max: u32) -> Self {
        Concurrency { max, count: Arc::new(AtomicU32::new(0)) }
    }

    /// A permit if fewer than `max` are held.
    pub fn try_acquire(&self) -> Option<Permit> {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| (c < self.max).then_some(c + 1))
            .ok()
            .map(|_| Permit { count: Arc::clone(&self.count) })
    }

    /// Permits currently held.
    #[must_use]
    pub fn in_use(&self) -> u32 {
        self.count.load(Ordering::Acquire)
    }

    /// The limit.
    #[must_use]
    pub fn max(&self) -> u32 {
        self.max
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// At most `max_per_key` holders per [`ClientKey`] at once (Postfix's
/// `smtpd_client_connection_count_limit`), in fixed memory.
///
/// Counts live in a count-min sketch: two rows of `width` atomic counters, each key adding
/// to one counter per row (chosen by a hash keyed with `seed`), its count being the smaller
/// of the two. Memory is `8 * width` bytes whatever the number of keys, and nothing ever
/// needs evicting: a counter returns to zero when its permits drop. Sharing counters can
/// only over-count, so a key is never admitted past its limit; the price is a rare false
/// refusal when two busy keys share both counters, which a `width` well above the number of
/// concurrent holders (e.g. 64 K counters for a few thousand connections) makes negligible.
///
/// ```
/// use postern::limit::{ClientKey, KeyedConcurrency};
///
/// let per_ip = KeyedConcurrency::new(1, 4096, 0x5eed);
/// let a: ClientKey = "192.0.2.1".parse::<std::net::IpAddr>().unwrap().into();
/// let b: ClientKey = "192.0.2.2".parse::<std::net::IpAddr>().unwrap().into();
/// let held = per_ip.try_acquire(&a).unwrap();
/// assert!(per_ip.try_acquire(&a).is_none());
/// assert!(per_ip.try_acquire(&b).is_some());
/// drop(held);
/// assert!(per_ip.try_acquire(&a).is_some());
/// ```
#[derive(Debug, Clone)]
pub struct KeyedConcurrency {
    max: u32,
    counters: Arc<[AtomicU32]>,
    width: usize,
    k: [u64; 2],
}

/// A place in a [`KeyedConcurrency`] limit, given back on drop.
#[derive(Debug)]
#[must_use = "the place is given back as soon as the permit is dropped"]
pub struct KeyedPermit {
    counters: Arc<[AtomicU32]>,
    at: [usize; 2],
}

impl KeyedConcurrency {
    /// At most `max_per_key` permits per key, `width` counters per row (at least 1).
    #[must_use]
    pub fn new(max_per_key: u32, width: usize, seed: u64) -> Self {
        let width = width.max(1);
        let counters = (0..2 * width).map(|_| AtomicU32::new(0)).collect();
        let k = [fmix(seed ^ 0x243f_6a88_85a3_08d3), fmix(seed ^ 0x1319_8a2e_0370_7344)];
        KeyedConcurrency { max: max_per_key, counters, width, k }
    }

    fn slots(&self, key: &ClientKey) -> [usize; 2] {
        let (kind, value) = key.parts();
        let base = fmix(value as u64 ^ fmix((value >> 64) as u64 ^ u64::from(kind)));
        let row = |k: u64| ((u128::from(fmix(base ^ k)) * self.width as u128) >> 64) as usize;
        [row(self.k[0]), self.width + row(self.k[1])]
    }

    /// A permit if `key` holds fewer than `max_per_key`.
    pub fn try_acquire(&self, key: &ClientKey) -> Option<KeyedPermit> {
        let at = self.slots(key);
        let mut counts = [0u32; 2];
        for (i, c) in at.iter().zip(counts.iter_mut()) {
            *c = self.counters.get(*i)?.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        }
        // The permit is built before the check so that a refusal gives the places back.
        let permit = KeyedPermit { counters: Arc::clone(&self.counters), at };
        (counts[0].min(counts[1]) <= self.max).then_some(permit)
    }

    /// The (over-)estimated number of permits `key` holds.
    #[must_use]
    pub fn in_use(&self, key: &ClientKey) -> u32 {
        self.slots(key)
            .iter()
            .map(|i| self.counters.get(*i).map_or(0, |c| c.load(Ordering::Acquire)))
            .min()
            .unwrap_or(0)
    }

    /// Bytes of counters (fixed at construction).
    #[must_use]
    pub fn memory_bytes(&self) -> usize {
        self.counters.len() * std::mem::size_of::<AtomicU32>()
    }
}

impl Drop for KeyedPermit {
    fn drop(&mut self) {
        for i in self.at {
            if let Some(c) = self.counters.get(i) {
                c.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a real Instant is the base of the virtual clock
mod tests {
    use super::*;

    #[test]
    fn permits_release_on_drop_across_threads() {
        let c = Concurrency::new(3);
        let permits: Vec<_> = (0..3).map(|_| c.try_acquire().unwrap()).collect();
        assert!(c.try_acquire().is_none());
        std::thread::spawn(move || drop(permits)).join().unwrap();
        assert_eq!(c.in_use(), 0);
        assert_eq!(c.max(), 3);
    }

    #[test]
    fn keyed_counts_per_key_and_refusals_leave_no_trace() {
        let k = KeyedConcurrency::new(2, 1024, 9);
        let key = ClientKey::user("a");
        let p1 = k.try_acquire(&key).unwrap();
        let p2 = k.try_acquire(&key).unwrap();
        for _ in 0..10 {
            assert!(k.try_acquire(&key).is_none());
        }
        assert_eq!(k.in_use(&key), 2);
        drop((p1, p2));
        assert_eq!(k.in_use(&key), 0);
        assert_eq!(k.memory_bytes(), 8 * 1024);
        // With one counter per row every key shares: over-counting, never over-admitting.
        let tiny = KeyedConcurrency::new(1, 1, 0);
        let _a = tiny.try_acquire(&ClientKey::user("a")).unwrap();
        assert!(tiny.try_acquire(&ClientKey::user("b")).is_none());
    }
}
