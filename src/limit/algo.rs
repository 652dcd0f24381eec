//! The rate algorithms: pure functions of (state, n, now).

use std::fmt;
use std::time::{Duration, Instant};

use super::{Decision, Epoch, LimitError, Nanos, duration_nanos};

/// A rate-limiting algorithm: a configuration (`&self`) applied to a small `Copy` state.
///
/// The state's `Default` is "never seen": a fresh client. Implementations are exact: the
/// `retry_after` of a denial is the shortest wait after which the same check succeeds.
pub trait Algorithm {
    /// The per-key state.
    type State: Copy + Default + fmt::Debug;

    /// Check (and on success record) `n` uses at `now`. `n == 0` is always allowed.
    fn check_n(&self, state: &mut Self::State, n: u32, now: Nanos) -> Decision;

    /// Check (and on success record) one use at `now`.
    fn check(&self, state: &mut Self::State, now: Nanos) -> Decision {
        self.check_n(state, 1, now)
    }

    /// The time from which `state` behaves exactly like `Self::State::default()`: a table may
    /// reclaim the record then without changing any decision.
    fn idle_at(&self, state: &Self::State) -> Nanos;
}

/// The generic cell rate algorithm: `count` uses per `period`, with bursts of up to `burst`.
///
/// Equivalent to a token bucket of `burst` tokens refilled at one token per emission
/// interval (`period / count`, rounded up to the nanosecond so the rate is never exceeded),
/// but stored as a single timestamp, the theoretical arrival time (TAT).
/// Guarantee: over any interval of length `t`, at most `burst + t / interval` uses are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    interval: u64,
    tau: u64,
}

/// The state of a [`Gcra`]: the theoretical arrival time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GcraState {
    /// The theoretical arrival time; the client is idle from then on.
    pub tat: Nanos,
}

impl Gcra {
    /// `count` uses per `period`, bursts of up to `burst` at once.
    ///
    /// # Errors
    /// [`LimitError::InvalidQuota`] when `count`, `burst` or `period` is zero, or the burst
    /// spans more than 584 years.
    pub fn new(count: u32, period: Duration, burst: u32) -> Result<Self, LimitError> {
        if count == 0 || burst == 0 || period.is_zero() {
            return Err(LimitError::InvalidQuota("count, burst and period must be non-zero"));
        }
        let interval = duration_nanos(period).div_ceil(u64::from(count));
        let tau = interval
            .checked_mul(u64::from(burst))
            .ok_or(LimitError::InvalidQuota("burst times interval overflows"))?;
        Ok(Gcra { interval, tau })
    }

    /// The emission interval: the time one use costs.
    #[must_use]
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval)
    }

    /// The burst: uses a fresh client may make at once.
    #[must_use]
    pub fn burst(&self) -> u32 {
        u32::try_from(self.tau / self.interval).unwrap_or(u32::MAX)
    }
}

impl Algorithm for Gcra {
    type State = GcraState;

    fn check_n(&self, state: &mut GcraState, n: u32, now: Nanos) -> Decision {
        if n == 0 {
            return Decision::Allow;
        }
        let increment = self.interval.saturating_mul(u64::from(n));
        if increment > self.tau {
            return Decision::NEVER;
        }
        let tat = state.tat.0.max(now.0);
        let new_tat = tat.saturating_add(increment);
        let allow_at = new_tat.saturating_sub(self.tau);
        if allow_at > now.0 {
            return Decision::deny_nanos(allow_at - now.0);
        }
        state.tat = Nanos(new_tat);
        Decision::Allow
    }

    fn idle_at(&self, state: &GcraState) -> Nanos {
        state.tat
    }
}

/// A two-bucket sliding-window counter: at most `limit` uses per `window`, smoothly.
///
/// Windows are aligned to the epoch. The count of the previous window is weighted by the
/// part of it still inside the sliding window: a use at `e` nanoseconds into the current
/// window is allowed when `prev * (window - e) / window + cur + n <= limit`, computed exactly
/// in integers. Guarantee: at most `limit` uses in each aligned window and, being an
/// estimate, at most `2 * limit` in any window of length `window` (in practice close to
/// `limit` when traffic is spread out); use [`Gcra`] for a strict bound over any interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindow {
    limit: u32,
    window: u64,
}

/// The state of a [`SlidingWindow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowState {
    /// The index of the current window since the epoch.
    pub window: u64,
    /// Uses counted in the previous window.
    pub prev: u32,
    /// Uses counted in the current window.
    pub cur: u32,
}

impl SlidingWindow {
    /// At most `limit` uses per `window`.
    ///
    /// # Errors
    /// [`LimitError::InvalidQuota`] when `limit` or `window` is zero.
    pub fn new(limit: u32, window: Duration) -> Result<Self, LimitError> {
        if limit == 0 || window.is_zero() {
            return Err(LimitError::InvalidQuota("limit and window must be non-zero"));
        }
        Ok(SlidingWindow { limit, window: duration_nanos(window) })
    }

    /// The limit per window.
    #[must_use]
    pub fn limit(&self) -> u32 {
        self.limit
    }
}

impl Algorithm for SlidingWindow {
    type State = WindowState;

    fn check_n(&self, state: &mut WindowState, n: u32, now: Nanos) -> Decision {
        let w = self.window;
        let idx = now.0 / w;
        let e = now.0 % w;
        if idx != state.window {
            let prev = if idx == state.window.wrapping_add(1) { state.cur } else { 0 };
            *state = WindowState { window: idx, prev, cur: 0 };
        }
        if n == 0 {
            return Decision::Allow;
        }
        if n > self.limit {
            return Decision::NEVER;
        }
        let (w128, prev, cur, n128, limit) = (
            u128::from(w),
            u128::from(state.prev),
            u128::from(state.cur),
            u128::from(n),
            u128::from(self.limit),
        );
        if prev * u128::from(w - e) + (cur + n128) * w128 <= limit * w128 {
            state.cur = state.cur.saturating_add(n);
            return Decision::Allow;
        }
        // The earliest offset e' (in this window or the next) where the check passes.
        let wait = if cur + n128 <= limit {
            // prev > 0 here, else the check would have passed.
            let keep = ((limit - cur - n128) * w128) / prev.max(1);
            u128::from(w - e).saturating_sub(keep)
        } else {
            // In the next window the current count becomes the previous one (cur >= 1 here).
            let keep = ((limit - n128) * w128) / cur.max(1);
            u128::from(w - e) + w128.saturating_sub(keep)
        };
        Decision::deny_nanos(u64::try_from(wait).unwrap_or(u64::MAX))
    }

    fn idle_at(&self, state: &WindowState) -> Nanos {
        let windows = if state.cur > 0 {
            2
        } else if state.prev > 0 {
            1
        } else {
            return Nanos(0);
        };
        Nanos(state.window.saturating_add(windows).saturating_mul(self.window))
    }
}

/// A fixed window with Postfix anvil semantics: at most `limit` uses per `window`, where the
/// window starts at the client's first use and a new one starts at the first use after it
/// ends (`now >= start + window`).
///
/// Guarantee: at most `limit` uses in each of the client's windows, hence at most
/// `2 * limit` in any interval of length `window` (the usual fixed-window edge effect,
/// kept for comparison with Postfix's `anvil`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedWindow {
    limit: u32,
    window: u64,
}

/// The state of a [`FixedWindow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FixedWindowState {
    /// When the client's current window started.
    pub start: Nanos,
    /// Uses counted in it.
    pub count: u32,
}

impl FixedWindow {
    /// At most `limit` uses per `window`.
    ///
    /// # Errors
    /// [`LimitError::InvalidQuota`] when `limit` or `window` is zero.
    pub fn new(limit: u32, window: Duration) -> Result<Self, LimitError> {
        if limit == 0 || window.is_zero() {
            return Err(LimitError::InvalidQuota("limit and window must be non-zero"));
        }
        Ok(FixedWindow { limit, window: duration_nanos(window) })
    }

    /// The limit per window.
    #[must_use]
    pub fn limit(&self) -> u32 {
        self.limit
    }
}

impl Algorithm for FixedWindow {
    type State = FixedWindowState;

    fn check_n(&self, state: &mut FixedWindowState, n: u32, now: Nanos) -> Decision {
        if n == 0 {
            return Decision::Allow;
        }
        let end = state.start.0.saturating_add(self.window);
        if state.count == 0 || now.0 >= end {
            *state = FixedWindowState { start: now, count: 0 };
        }
        if n > self.limit {
            return Decision::NEVER;
        }
        if state.count.saturating_add(n) <= self.limit {
            state.count += n;
            return Decision::Allow;
        }
        Decision::deny_nanos(state.start.0.saturating_add(self.window) - now.0)
    }

    fn idle_at(&self, state: &FixedWindowState) -> Nanos {
        if state.count == 0 { Nanos(0) } else { Nanos(state.start.0.saturating_add(self.window)) }
    }
}

/// One algorithm and one state with their own epoch: a limiter for a single key (a global
/// limit), taking `now: Instant`.
///
/// ```
/// use std::time::{Duration, Instant};
/// use postern::limit::{Decision, Limiter, SlidingWindow};
///
/// let start = Instant::now();
/// let mut logins = Limiter::new(SlidingWindow::new(2, Duration::from_secs(60)).unwrap(), start);
/// assert!(logins.check(start).is_allowed());
/// assert!(logins.check(start).is_allowed());
/// assert!(!logins.check(start + Duration::from_secs(59)).is_allowed());
/// ```
#[derive(Debug, Clone)]
pub struct Limiter<A: Algorithm> {
    algorithm: A,
    epoch: Epoch,
    state: A::State,
}

impl<A: Algorithm> Limiter<A> {
    /// A fresh limiter; `epoch` must not be later than any `now` passed afterwards.
    #[must_use]
    pub fn new(algorithm: A, epoch: Instant) -> Self {
        Limiter { algorithm, epoch: Epoch::new(epoch), state: A::State::default() }
    }

    /// Check (and on success record) one use.
    pub fn check(&mut self, now: Instant) -> Decision {
        self.check_n(1, now)
    }

    /// Check (and on success record) `n` uses at once.
    pub fn check_n(&mut self, n: u32, now: Instant) -> Decision {
        self.algorithm.check_n(&mut self.state, n, self.epoch.nanos(now))
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> &A::State {
        &self.state
    }

    /// Forget all uses.
    pub fn reset(&mut self) {
        self.state = A::State::default();
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a real Instant is the base of the virtual clock
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn d(n: u64) -> Decision {
        Decision::deny_nanos(n)
    }

    #[test]
    fn gcra_burst_then_exact_refill() {
        let g = Gcra::new(1, Duration::from_secs(1), 3).unwrap();
        let mut st = GcraState::default();
        for _ in 0..3 {
            assert_eq!(g.check(&mut st, Nanos(10 * S)), Decision::Allow);
        }
        assert_eq!(g.check(&mut st, Nanos(10 * S)), d(S));
        assert_eq!(g.check(&mut st, Nanos(11 * S - 1)), d(1));
        assert_eq!(g.check(&mut st, Nanos(11 * S)), Decision::Allow);
        assert_eq!(g.check(&mut st, Nanos(11 * S)), d(S));
        // After a long idle period the full burst is back, not more.
        for _ in 0..3 {
            assert_eq!(g.check(&mut st, Nanos(100 * S)), Decision::Allow);
        }
        assert!(!g.check(&mut st, Nanos(100 * S)).is_allowed());
        assert_eq!(g.idle_at(&st), Nanos(103 * S));
    }

    #[test]
    fn gcra_weights() {
        let g = Gcra::new(10, Duration::from_secs(1), 5).unwrap();
        let mut st = GcraState::default();
        assert_eq!(g.check_n(&mut st, 6, Nanos(0)), Decision::NEVER);
        assert_eq!(g.check_n(&mut st, 0, Nanos(0)), Decision::Allow);
        assert_eq!(g.check_n(&mut st, 5, Nanos(0)), Decision::Allow);
        // 2 more cells need 2 intervals (200 ms).
        assert_eq!(g.check_n(&mut st, 2, Nanos(0)), d(S / 5));
        assert_eq!(g.check_n(&mut st, 2, Nanos(S / 5)), Decision::Allow);
        assert_eq!(g.burst(), 5);
        assert_eq!(g.interval(), Duration::from_millis(100));
    }

    #[test]
    fn gcra_rounds_interval_up() {
        let g = Gcra::new(3, Duration::from_secs(1), 1).unwrap();
        assert_eq!(g.interval(), Duration::from_nanos(333_333_334));
        assert!(Gcra::new(0, Duration::from_secs(1), 1).is_err());
        assert!(Gcra::new(1, Duration::ZERO, 1).is_err());
        assert!(Gcra::new(1, Duration::from_secs(1), 0).is_err());
        assert!(Gcra::new(1, Duration::MAX, 2).is_err());
    }

    #[test]
    fn sliding_window_slides() {
        let sw = SlidingWindow::new(10, Duration::from_secs(10)).unwrap();
        let mut st = WindowState::default();
        for _ in 0..10 {
            assert_eq!(sw.check(&mut st, Nanos(5 * S)), Decision::Allow);
        }
        // Full: next window at 10 s, where prev = 10 weighs 10 * (10 - e) / 10; one use
        // needs 10 - e <= 9, i.e. e >= 1 s: at 11 s, 6 s from now.
        assert_eq!(sw.check(&mut st, Nanos(5 * S)), d(6 * S));
        assert_eq!(sw.check(&mut st, Nanos(11 * S - 1)), d(1));
        assert_eq!(sw.check(&mut st, Nanos(11 * S)), Decision::Allow);
        // prev 10 weighs 9 at e = 1 s, cur = 1: full until e = 2 s.
        assert_eq!(sw.check(&mut st, Nanos(11 * S)), d(S));
        assert_eq!(sw.check(&mut st, Nanos(12 * S)), Decision::Allow);
        // Half way, prev weighs 5: cur 2 -> 5 allowed.
        for _ in 0..3 {
            assert_eq!(sw.check(&mut st, Nanos(15 * S)), Decision::Allow);
        }
        assert!(!sw.check(&mut st, Nanos(15 * S)).is_allowed());
        assert_eq!(sw.idle_at(&st), Nanos(30 * S));
        // Two windows later everything is forgotten.
        assert_eq!(sw.check_n(&mut st, 10, Nanos(30 * S)), Decision::Allow);
        assert_eq!(sw.check_n(&mut st, 11, Nanos(30 * S)), Decision::NEVER);
    }

    #[test]
    fn sliding_window_retry_is_exact() {
        let sw = SlidingWindow::new(7, Duration::from_nanos(1000)).unwrap();
        let mut st = WindowState::default();
        let mut t = 0u64;
        for step in 0..2000u64 {
            t += (step * 7919) % 97;
            let mut probe = st;
            if let Decision::Deny { retry_after } = sw.check(&mut probe, Nanos(t)) {
                let r = u64::try_from(retry_after.as_nanos()).unwrap();
                let mut before = st;
                assert!(!sw.check(&mut before, Nanos(t + r - 1)).is_allowed(), "t={t} r={r}");
                let mut at = st;
                assert!(sw.check(&mut at, Nanos(t + r)).is_allowed(), "t={t} r={r}");
            }
            let _ = sw.check(&mut st, Nanos(t));
        }
    }

    #[test]
    fn fixed_window_anvil() {
        let fw = FixedWindow::new(2, Duration::from_secs(60)).unwrap();
        let mut st = FixedWindowState::default();
        assert_eq!(fw.check(&mut st, Nanos(7 * S)), Decision::Allow);
        assert_eq!(fw.check(&mut st, Nanos(8 * S)), Decision::Allow);
        assert_eq!(fw.check(&mut st, Nanos(8 * S)), d(59 * S));
        assert_eq!(fw.check(&mut st, Nanos(67 * S - 1)), d(1));
        // The window started at the first use (7 s), not at an aligned boundary.
        assert_eq!(fw.check(&mut st, Nanos(67 * S)), Decision::Allow);
        assert_eq!(st.start, Nanos(67 * S));
        assert_eq!(fw.idle_at(&st), Nanos(127 * S));
        assert_eq!(fw.check_n(&mut st, 3, Nanos(67 * S)), Decision::NEVER);
    }

    #[test]
    fn limiter_on_instants() {
        let t0 = Instant::now();
        let mut l = Limiter::new(Gcra::new(1, Duration::from_secs(1), 1).unwrap(), t0);
        assert!(l.check(t0).is_allowed());
        assert_eq!(l.check(t0 + Duration::from_millis(400)).retry_after(), Some(Duration::from_millis(600)));
        assert_eq!(l.check(t0 + Duration::from_millis(400)).retry_after_secs(), 1);
        l.reset();
        assert!(l.check(t0 + Duration::from_millis(400)).is_allowed());
    }
}
