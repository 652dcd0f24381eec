//! A decaying reputation score per client, with a hard cap on the number of clients tracked.
//!
//! Events ([`Event`]) add their weight ([`Weights`]) to the client's score; positive is bad.
//! Between events the score decays exponentially towards zero with a configured half-life:
//! `score(t) = score(t0) · 2^(-(t - t0) / half_life)`. The application sets the thresholds
//! that turn a score into a [`Standing`].
//!
//! # Memory
//!
//! At most [`ReputationConfig::capacity`] clients are tracked: records live in one vector that
//! never grows past the cap, with an index of the same bound. When a new client arrives at
//! the cap, [`ReputationConfig::eviction_sample`] consecutive records from a rotating hand
//! (CLOCK-style) are examined and the one whose decayed score is closest to zero is evicted,
//! so long-forgotten and harmless clients go first and a flood of new, zero-score clients
//! mostly evicts itself. The work per event is `O(eviction_sample)`; there is never a sweep.
//! The choice depends only on the sequence of calls, so it is deterministic.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Whom a score belongs to: an IPv4 address, an IPv6 /64, or a key of the application's.
///
/// ```
/// use postern::access::reputation::ClientKey;
///
/// // IPv6 addresses are grouped by /64: one customer's LAN is one client.
/// let a = ClientKey::from_ip("2001:db8:1:2::1".parse()?);
/// let b = ClientKey::from_ip("2001:db8:1:2:ffff::9".parse()?);
/// assert_eq!(a, b);
/// // IPv4-mapped IPv6 is IPv4.
/// assert_eq!(ClientKey::from_ip("::ffff:192.0.2.1".parse()?), ClientKey::from_ip("192.0.2.1".parse()?));
/// assert_ne!(ClientKey::custom(7), ClientKey::from_ip("0.0.0.7".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(KeyRepr);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum KeyRepr {
    V4(u32),
    V6Prefix64(u64),
    Custom(u64),
}

impl ClientKey {
    /// The key of an address: the IPv4 address itself (/32), or the IPv6 /64 it lies in.
    /// IPv4-mapped IPv6 addresses count as IPv4.
    ///
    /// ```
    /// use postern::access::reputation::ClientKey;
    /// let k = ClientKey::from_ip("192.0.2.1".parse().unwrap());
    /// assert_ne!(k, ClientKey::from_ip("192.0.2.2".parse().unwrap()));
    /// ```
    #[must_use]
    pub fn from_ip(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(a) => ClientKey(KeyRepr::V4(u32::from(a))),
            IpAddr::V6(a) => {
                // The top 64 bits: the /64 the address lies in.
                ClientKey(KeyRepr::V6Prefix64((a.to_bits() >> 64) as u64))
            }
        }
    }

    /// A key the application chose (an account id, a hash of a sender domain, ...). Custom
    /// keys never equal address keys.
    ///
    /// ```
    /// use postern::access::reputation::ClientKey;
    /// assert_eq!(ClientKey::custom(42), ClientKey::custom(42));
    /// ```
    #[must_use]
    pub fn custom(key: u64) -> Self {
        ClientKey(KeyRepr::Custom(key))
    }
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> Self {
        Self::from_ip(ip)
    }
}

/// Something a client did that moves its score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Event {
    /// A failed authentication.
    AuthFailure,
    /// A recipient the server rejected (unknown user, relay denied).
    RejectedRecipient,
    /// A syntax error, a command out of sequence, a pipelining or smuggling attempt.
    ProtocolError,
    /// A message that the content filter called spam.
    SpamVerdict,
    /// A message delivered and not spam.
    GoodDelivery,
}

/// The score each [`Event`] adds (positive is bad, negative is good).
///
/// ```
/// use postern::access::reputation::{Event, Weights};
/// let w = Weights { spam_verdict: 20.0, ..Weights::default() };
/// assert_eq!(w.weight(Event::SpamVerdict), 20.0);
/// assert!(w.weight(Event::GoodDelivery) < 0.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// For [`Event::AuthFailure`]; default 3.
    pub auth_failure: f64,
    /// For [`Event::RejectedRecipient`]; default 1.
    pub rejected_recipient: f64,
    /// For [`Event::ProtocolError`]; default 1.
    pub protocol_error: f64,
    /// For [`Event::SpamVerdict`]; default 10.
    pub spam_verdict: f64,
    /// For [`Event::GoodDelivery`]; default -1.
    pub good_delivery: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            auth_failure: 3.0,
            rejected_recipient: 1.0,
            protocol_error: 1.0,
            spam_verdict: 10.0,
            good_delivery: -1.0,
        }
    }
}

impl Weights {
    /// The weight of `event`.
    ///
    /// ```
    /// use postern::access::reputation::{Event, Weights};
    /// assert_eq!(Weights::default().weight(Event::AuthFailure), 3.0);
    /// ```
    #[must_use]
    pub fn weight(&self, event: Event) -> f64 {
        match event {
            Event::AuthFailure => self.auth_failure,
            Event::RejectedRecipient => self.rejected_recipient,
            Event::ProtocolError => self.protocol_error,
            Event::SpamVerdict => self.spam_verdict,
            Event::GoodDelivery => self.good_delivery,
        }
    }

    fn all(&self) -> [f64; 5] {
        [
            self.auth_failure,
            self.rejected_recipient,
            self.protocol_error,
            self.spam_verdict,
            self.good_delivery,
        ]
    }
}

/// A client's standing, from its decayed score and the configured thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Standing {
    /// Below [`ReputationConfig::suspect_at`].
    Good,
    /// At or above [`ReputationConfig::suspect_at`], below [`ReputationConfig::bad_at`].
    Suspect,
    /// At or above [`ReputationConfig::bad_at`].
    Bad,
}

/// The settings of a [`Reputation`] table.
///
/// ```
/// use std::time::Duration;
/// use postern::access::reputation::ReputationConfig;
///
/// let config = ReputationConfig {
///     capacity: 10_000,
///     half_life: Duration::from_secs(600),
///     ..ReputationConfig::default()
/// };
/// assert_eq!(config.bad_at, 25.0);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ReputationConfig {
    /// The most clients tracked at once; default 100 000.
    pub capacity: usize,
    /// The time for a score to halve; default one hour.
    pub half_life: Duration,
    /// The score from which a client is [`Standing::Suspect`]; default 10.
    pub suspect_at: f64,
    /// The score from which a client is [`Standing::Bad`]; default 25.
    pub bad_at: f64,
    /// The lowest score (the most credit good behaviour can earn); default -10.
    pub min_score: f64,
    /// The highest score; default 100.
    pub max_score: f64,
    /// The weight of each event.
    pub weights: Weights,
    /// How many records are examined to choose one to evict at the cap; default 8.
    pub eviction_sample: usize,
}

impl Default for ReputationConfig {
    fn default() -> Self {
        ReputationConfig {
            capacity: 100_000,
            half_life: Duration::from_secs(3600),
            suspect_at: 10.0,
            bad_at: 25.0,
            min_score: -10.0,
            max_score: 100.0,
            weights: Weights::default(),
            eviction_sample: 8,
        }
    }
}

/// A [`ReputationConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReputationError {
    /// `capacity` is zero.
    #[error("the capacity must be at least 1")]
    ZeroCapacity,
    /// `half_life` is zero.
    #[error("the half-life must be longer than zero")]
    ZeroHalfLife,
    /// `eviction_sample` is zero.
    #[error("the eviction sample must be at least 1")]
    ZeroEvictionSample,
    /// A weight, threshold or bound is NaN or infinite.
    #[error("weights, thresholds and score bounds must be finite")]
    NotFinite,
    /// `suspect_at > bad_at` or `min_score > max_score`.
    #[error("thresholds out of order (need suspect_at <= bad_at and min_score <= max_score)")]
    OutOfOrder,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    key: ClientKey,
    score: f64,
    at: Instant,
}

/// Decaying scores per client with a hard cap on the number of clients.
///
/// ```
/// use std::time::{Duration, Instant};
/// use postern::access::reputation::{ClientKey, Event, Reputation, ReputationConfig, Standing};
///
/// let mut rep = Reputation::new(ReputationConfig::default())?;
/// let t0 = Instant::now(); // the application's clock; the library never reads it
/// let client = ClientKey::from_ip("192.0.2.7".parse()?);
/// for _ in 0..4 {
///     rep.record(client, Event::AuthFailure, t0); // 3 points each
/// }
/// assert_eq!(rep.standing(client, t0), Standing::Suspect);
/// assert_eq!(rep.record(client, Event::SpamVerdict, t0), Standing::Suspect); // 22
/// assert_eq!(rep.record(client, Event::SpamVerdict, t0), Standing::Bad); // 32
/// // One half-life later the score has halved.
/// let later = t0 + Duration::from_secs(3600);
/// assert_eq!(rep.score(client, later), 16.0);
/// assert_eq!(rep.standing(client, later), Standing::Suspect);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Reputation {
    config: ReputationConfig,
    records: Vec<Record>,
    index: HashMap<ClientKey, usize>,
    hand: usize,
}

impl Reputation {
    /// An empty table.
    ///
    /// # Errors
    ///
    /// A [`ReputationError`] if the configuration cannot work.
    ///
    /// ```
    /// use postern::access::reputation::{Reputation, ReputationConfig, ReputationError};
    /// let err = Reputation::new(ReputationConfig { capacity: 0, ..ReputationConfig::default() });
    /// assert_eq!(err.unwrap_err(), ReputationError::ZeroCapacity);
    /// ```
    pub fn new(config: ReputationConfig) -> Result<Self, ReputationError> {
        if config.capacity == 0 {
            return Err(ReputationError::ZeroCapacity);
        }
        if config.half_life.is_zero() {
            return Err(ReputationError::ZeroHalfLife);
        }
        if config.eviction_sample == 0 {
            return Err(ReputationError::ZeroEvictionSample);
        }
        let numbers = [config.suspect_at, config.bad_at, config.min_score, config.max_score];
        if !numbers.iter().chain(config.weights.all().iter()).all(|x| x.is_finite()) {
            return Err(ReputationError::NotFinite);
        }
        if config.suspect_at > config.bad_at || config.min_score > config.max_score {
            return Err(ReputationError::OutOfOrder);
        }
        // Reserve up front, bounded by the cap, so that memory use is known from the start
        // for small tables and grows to the cap at most for large ones.
        let reserve = config.capacity.min(4096);
        Ok(Reputation {
            records: Vec::with_capacity(reserve),
            index: HashMap::with_capacity(reserve),
            hand: 0,
            config,
        })
    }

    /// The configuration.
    ///
    /// ```
    /// use postern::access::reputation::{Reputation, ReputationConfig};
    /// let rep = Reputation::new(ReputationConfig::default()).unwrap();
    /// assert_eq!(rep.config().capacity, 100_000);
    /// ```
    #[must_use]
    pub fn config(&self) -> &ReputationConfig {
        &self.config
    }

    /// The number of clients tracked; never more than [`ReputationConfig::capacity`].
    ///
    /// ```
    /// use postern::access::reputation::{Reputation, ReputationConfig};
    /// assert_eq!(Reputation::new(ReputationConfig::default()).unwrap().len(), 0);
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no client is tracked.
    ///
    /// ```
    /// use postern::access::reputation::{Reputation, ReputationConfig};
    /// assert!(Reputation::new(ReputationConfig::default()).unwrap().is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Records `event` for `key` at `now` and returns the client's new standing. A new client
    /// at the cap evicts the sampled record whose decayed score is closest to zero.
    ///
    /// ```
    /// use std::time::Instant;
    /// use postern::access::reputation::{ClientKey, Event, Reputation, ReputationConfig, Standing};
    /// let mut rep = Reputation::new(ReputationConfig::default()).unwrap();
    /// let now = Instant::now();
    /// let standing = rep.record(ClientKey::custom(1), Event::SpamVerdict, now);
    /// assert_eq!(standing, Standing::Suspect);
    /// ```
    pub fn record(&mut self, key: ClientKey, event: Event, now: Instant) -> Standing {
        let weight = self.config.weights.weight(event);
        self.add(key, weight, now)
    }

    /// Adds `points` (positive is bad) to `key`'s score at `now`: for events of the
    /// application's own. Non-finite points are ignored.
    ///
    /// ```
    /// use std::time::Instant;
    /// use postern::access::reputation::{ClientKey, Reputation, ReputationConfig, Standing};
    /// let mut rep = Reputation::new(ReputationConfig::default()).unwrap();
    /// assert_eq!(rep.add(ClientKey::custom(1), 30.0, Instant::now()), Standing::Bad);
    /// ```
    pub fn add(&mut self, key: ClientKey, points: f64, now: Instant) -> Standing {
        let points = if points.is_finite() { points } else { 0.0 };
        let (min, max) = (self.config.min_score, self.config.max_score);
        let half_life = self.config.half_life;
        let slot = match self.index.get(&key) {
            Some(&slot) => slot,
            None => match self.insert(key, points.clamp(min, max), now) {
                Some(slot) => slot,
                // Less significant than every sampled record: not tracked.
                None => return self.standing_of(points.clamp(min, max)),
            },
        };
        let Some(record) = self.records.get_mut(slot) else {
            return Standing::Good;
        };
        let score = (decay(record.score, record.at, now, half_life) + points).clamp(min, max);
        record.score = score;
        record.at = record.at.max(now);
        self.standing_of(score)
    }

    /// The decayed score of `key` at `now`; 0 for a client not tracked.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use postern::access::reputation::{ClientKey, Reputation, ReputationConfig};
    /// let mut rep = Reputation::new(ReputationConfig::default()).unwrap();
    /// let t0 = Instant::now();
    /// rep.add(ClientKey::custom(1), 8.0, t0);
    /// assert_eq!(rep.score(ClientKey::custom(1), t0 + Duration::from_secs(2 * 3600)), 2.0);
    /// assert_eq!(rep.score(ClientKey::custom(2), t0), 0.0);
    /// ```
    #[must_use]
    pub fn score(&self, key: ClientKey, now: Instant) -> f64 {
        self.index
            .get(&key)
            .and_then(|&slot| self.records.get(slot))
            .map_or(0.0, |r| decay(r.score, r.at, now, self.config.half_life))
    }

    /// The standing of `key` at `now`; [`Standing::Good`] (or what a score of 0 gives) for a
    /// client not tracked.
    ///
    /// ```
    /// use std::time::Instant;
    /// use postern::access::reputation::{ClientKey, Reputation, ReputationConfig, Standing};
    /// let rep = Reputation::new(ReputationConfig::default()).unwrap();
    /// assert_eq!(rep.standing(ClientKey::custom(9), Instant::now()), Standing::Good);
    /// ```
    #[must_use]
    pub fn standing(&self, key: ClientKey, now: Instant) -> Standing {
        self.standing_of(self.score(key, now))
    }

    /// Stops tracking `key` (an operator's pardon). Returns whether it was tracked.
    ///
    /// ```
    /// use std::time::Instant;
    /// use postern::access::reputation::{ClientKey, Reputation, ReputationConfig};
    /// let mut rep = Reputation::new(ReputationConfig::default()).unwrap();
    /// rep.add(ClientKey::custom(1), 50.0, Instant::now());
    /// assert!(rep.forget(ClientKey::custom(1)));
    /// assert!(rep.is_empty());
    /// ```
    pub fn forget(&mut self, key: ClientKey) -> bool {
        let Some(slot) = self.index.remove(&key) else { return false };
        if slot >= self.records.len() {
            return false;
        }
        self.records.swap_remove(slot);
        if let Some(moved) = self.records.get(slot) {
            self.index.insert(moved.key, slot);
        }
        true
    }

    fn standing_of(&self, score: f64) -> Standing {
        if score >= self.config.bad_at {
            Standing::Bad
        } else if score >= self.config.suspect_at {
            Standing::Suspect
        } else {
            Standing::Good
        }
    }

    /// Inserts a zero record for a new key and returns its slot. At the cap, the sampled
    /// record closest to zero is evicted, unless the newcomer (whose score would be
    /// `new_score`) is closer to zero than all of them: then nothing changes and `None` is
    /// returned.
    fn insert(&mut self, key: ClientKey, new_score: f64, now: Instant) -> Option<usize> {
        let record = Record { key, score: 0.0, at: now };
        let len = self.records.len();
        if len < self.config.capacity {
            self.records.push(record);
            self.index.insert(key, len);
            return Some(len);
        }
        let (victim, victim_abs) = self.choose_victim(now);
        if new_score.abs() < victim_abs {
            return None;
        }
        if let Some(old) = self.records.get_mut(victim) {
            self.index.remove(&old.key);
            *old = record;
        }
        self.index.insert(key, victim);
        Some(victim)
    }

    /// The slot among `eviction_sample` from the hand whose decayed score is closest to zero
    /// (the first on ties); the hand moves past the sample.
    fn choose_victim(&mut self, now: Instant) -> (usize, f64) {
        let len = self.records.len().max(1);
        let sample = self.config.eviction_sample.min(len);
        let mut best = self.hand % len;
        let mut best_abs = f64::INFINITY;
        for i in 0..sample {
            let slot = (self.hand + i) % len;
            if let Some(r) = self.records.get(slot) {
                let abs = decay(r.score, r.at, now, self.config.half_life).abs();
                if abs < best_abs {
                    best = slot;
                    best_abs = abs;
                }
            }
        }
        self.hand = (self.hand + sample) % len;
        (best, best_abs)
    }
}

/// `score · 2^(-elapsed / half_life)`; no decay if `now` is before `at`.
fn decay(score: f64, at: Instant, now: Instant, half_life: Duration) -> f64 {
    let elapsed = now.saturating_duration_since(at);
    if elapsed.is_zero() || score == 0.0 {
        return score;
    }
    score * (-(elapsed.as_secs_f64() / half_life.as_secs_f64())).exp2()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // one real Instant: the base of the virtual clock
    use super::*;

    fn rep(capacity: usize) -> Reputation {
        Reputation::new(ReputationConfig { capacity, ..ReputationConfig::default() }).unwrap()
    }

    #[test]
    fn half_life_is_exact_on_a_virtual_clock() {
        let mut r = rep(10);
        let t0 = Instant::now();
        let k = ClientKey::custom(1);
        r.add(k, 80.0, t0);
        let h = Duration::from_secs(3600);
        let table = [(0u32, 80.0), (1, 40.0), (2, 20.0), (3, 10.0), (4, 5.0), (10, 80.0 / 1024.0)];
        for (halves, expected) in table {
            assert_eq!(r.score(k, t0 + h * halves), expected, "{halves} half-lives");
        }
        // Decay then add: 80 → 40 after one half-life, + 3 for an auth failure.
        assert_eq!(r.record(k, Event::AuthFailure, t0 + h), Standing::Bad);
        assert_eq!(r.score(k, t0 + h), 43.0);
        assert_eq!(r.score(k, t0 + h * 2), 21.5);
        // A clock going backwards does not increase the score.
        assert_eq!(r.score(k, t0), 43.0);
    }

    #[test]
    fn thresholds_and_clamp() {
        let mut r = rep(10);
        let t = Instant::now();
        let k = ClientKey::custom(1);
        let steps = [
            (Event::RejectedRecipient, 1.0, Standing::Good),
            (Event::ProtocolError, 2.0, Standing::Good),
            (Event::SpamVerdict, 12.0, Standing::Suspect),
            (Event::SpamVerdict, 22.0, Standing::Suspect),
            (Event::AuthFailure, 25.0, Standing::Bad),
            (Event::GoodDelivery, 24.0, Standing::Suspect),
        ];
        for (event, score, standing) in steps {
            assert_eq!(r.record(k, event, t), standing, "{event:?}");
            assert_eq!(r.score(k, t), score);
        }
        r.add(k, 1e9, t);
        assert_eq!(r.score(k, t), 100.0);
        for _ in 0..200 {
            r.record(k, Event::GoodDelivery, t);
        }
        assert_eq!(r.score(k, t), -10.0);
        r.add(k, f64::NAN, t);
        assert_eq!(r.score(k, t), -10.0);
    }

    #[test]
    fn config_validation() {
        let d = ReputationConfig::default;
        let table = [
            (ReputationConfig { half_life: Duration::ZERO, ..d() }, ReputationError::ZeroHalfLife),
            (ReputationConfig { eviction_sample: 0, ..d() }, ReputationError::ZeroEvictionSample),
            (ReputationConfig { bad_at: f64::NAN, ..d() }, ReputationError::NotFinite),
            (
                ReputationConfig {
                    weights: Weights { good_delivery: f64::NEG_INFINITY, ..Weights::default() },
                    ..d()
                },
                ReputationError::NotFinite,
            ),
            (ReputationConfig { suspect_at: 30.0, ..d() }, ReputationError::OutOfOrder),
            (ReputationConfig { min_score: 200.0, ..d() }, ReputationError::OutOfOrder),
        ];
        for (config, err) in table {
            assert_eq!(Reputation::new(config).unwrap_err(), err);
        }
    }

    #[test]
    fn eviction_keeps_the_cap_and_spares_bad_clients() {
        let mut r = rep(64);
        let t = Instant::now();
        let bad: Vec<ClientKey> = (0..16).map(|i| ClientKey::custom(1_000_000 + i)).collect();
        for &k in &bad {
            r.add(k, 50.0, t);
        }
        for i in 0..100_000u64 {
            r.record(ClientKey::from_ip(IpAddr::from((i as u32).to_be_bytes())), Event::ProtocolError, t);
            assert!(r.len() <= 64);
            assert!(r.index.len() <= 64);
        }
        // A newcomer with score 1 is dropped rather than evict a record of score 50.
        let surviving = bad.iter().filter(|&&k| r.score(k, t) == 50.0).count();
        assert_eq!(surviving, 16);
        assert_eq!(r.len(), 64);
    }

    #[test]
    fn eviction_prefers_the_score_closest_to_zero() {
        let mut r = Reputation::new(ReputationConfig {
            capacity: 4,
            eviction_sample: 4,
            ..ReputationConfig::default()
        })
        .unwrap();
        let t = Instant::now();
        for (i, points) in [(1, 30.0), (2, -5.0), (3, 0.5), (4, -20.0)] {
            r.add(ClientKey::custom(i), points, t);
        }
        r.add(ClientKey::custom(5), 1.0, t);
        assert_eq!(r.score(ClientKey::custom(3), t), 0.0, "0.5 was closest to zero");
        for k in [1, 2, 4, 5] {
            assert_ne!(r.score(ClientKey::custom(k), t), 0.0);
        }
    }

    #[test]
    fn a_newcomer_closer_to_zero_than_the_sample_is_not_tracked() {
        let mut r = Reputation::new(ReputationConfig { capacity: 2, ..ReputationConfig::default() }).unwrap();
        let t = Instant::now();
        r.add(ClientKey::custom(1), 30.0, t);
        r.add(ClientKey::custom(2), -5.0, t);
        assert_eq!(r.record(ClientKey::custom(3), Event::ProtocolError, t), Standing::Good);
        assert_eq!(r.score(ClientKey::custom(3), t), 0.0);
        assert_eq!(r.record(ClientKey::custom(4), Event::SpamVerdict, t), Standing::Suspect);
        assert_eq!(r.score(ClientKey::custom(4), t), 10.0);
        assert_eq!(r.score(ClientKey::custom(2), t), 0.0, "-5 was evicted");
        assert_eq!(r.score(ClientKey::custom(1), t), 30.0);
    }

    #[test]
    fn forget_keeps_the_index_consistent() {
        let mut r = rep(8);
        let t = Instant::now();
        for i in 0..5 {
            r.add(ClientKey::custom(i), i as f64 + 1.0, t);
        }
        assert!(r.forget(ClientKey::custom(1)));
        assert!(!r.forget(ClientKey::custom(1)));
        for i in [0, 2, 3, 4] {
            assert_eq!(r.score(ClientKey::custom(i), t), i as f64 + 1.0);
        }
        assert_eq!(r.len(), 4);
    }

    #[test]
    fn keys_group_ipv6_by_64() {
        let table = [
            ("2001:db8::1", "2001:db8::ffff:1", true),
            ("2001:db8:0:1::1", "2001:db8:0:2::1", false),
            ("::ffff:10.0.0.1", "10.0.0.1", true),
            ("10.0.0.1", "10.0.0.2", false),
        ];
        for (a, b, same) in table {
            let ka = ClientKey::from_ip(a.parse().unwrap());
            let kb = ClientKey::from_ip(b.parse().unwrap());
            assert_eq!(ka == kb, same, "{a} {b}");
        }
    }
}
