//! The penalty box: escalating bans with decay, and the SMTP replies for limits.

use std::time::{Duration, Instant};

use super::table::Table;
use super::{ClientKey, Decision, Epoch, LimitError, Nanos, TableStats, duration_nanos};

/// How a [`PenaltyBox`] escalates and forgives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PenaltyConfig {
    bans: Vec<u64>,
    strikes: u8,
    decay: u64,
}

impl Default for PenaltyConfig {
    /// Bans of 1 min, 10 min, 1 h, then 1 day; a ban after 3 violations; one level (and all
    /// pending strikes) forgiven per clean hour.
    fn default() -> Self {
        PenaltyConfig {
            bans: vec![60_000_000_000, 600_000_000_000, 3_600_000_000_000, 86_400_000_000_000],
            strikes: 3,
            decay: 3_600_000_000_000,
        }
    }
}

impl PenaltyConfig {
    /// Ban lengths by level (the last repeats), a ban after `strikes` violations (at least
    /// 1), and one level forgiven per `decay` without violations after a ban ends.
    ///
    /// # Errors
    /// [`LimitError::InvalidPenalty`] when `bans` is empty or longer than 255 entries, or
    /// `decay` is zero.
    pub fn new(bans: &[Duration], strikes: u8, decay: Duration) -> Result<Self, LimitError> {
        if bans.is_empty() || bans.len() > 255 {
            return Err(LimitError::InvalidPenalty("between 1 and 255 ban lengths"));
        }
        if decay.is_zero() {
            return Err(LimitError::InvalidPenalty("decay must be non-zero"));
        }
        Ok(PenaltyConfig {
            bans: bans.iter().map(|d| duration_nanos(*d)).collect(),
            strikes: strikes.max(1),
            decay: duration_nanos(decay),
        })
    }

    fn ban(&self, level: u8) -> u64 {
        let i = usize::from(level).min(self.bans.len().saturating_sub(1));
        self.bans.get(i).copied().unwrap_or(0)
    }

    /// Bring `st` up to `now`: every full `decay` of quiet since the later of the last
    /// violation and the ban's end steps the level down and clears pending strikes.
    fn decay(&self, st: &mut PenaltyState, now: Nanos) {
        let quiet_since = st.last.max(st.until);
        if now <= quiet_since {
            return;
        }
        let steps = (now.0 - quiet_since.0) / self.decay;
        if steps > 0 {
            st.strikes = 0;
            st.level = st.level.saturating_sub(u8::try_from(steps).unwrap_or(u8::MAX));
            st.last = Nanos(quiet_since.0.saturating_add(steps.saturating_mul(self.decay)));
        }
    }

    fn idle_at(&self, st: &PenaltyState) -> Nanos {
        let quiet = st.last.max(st.until);
        let steps = if st.level > 0 { u64::from(st.level) } else { u64::from(st.strikes > 0) };
        Nanos(quiet.0.saturating_add(steps.saturating_mul(self.decay)))
    }
}

/// The record of one key in a [`PenaltyBox`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PenaltyState {
    /// The end of the current (or last) ban.
    pub until: Nanos,
    /// The last violation, or the point up to which decay has been applied.
    pub last: Nanos,
    /// Bans served and not yet forgiven: the next ban's index.
    pub level: u8,
    /// Violations since the last ban or the last forgiveness.
    pub strikes: u8,
}

/// Escalating bans after repeated violations (failed AUTH, rate-limit hits, protocol
/// errors), with decay, in a table with a hard cap on keys (32 bytes per key).
///
/// ```
/// use std::time::{Duration, Instant};
/// use postern::limit::{ClientKey, PenaltyBox, PenaltyConfig, Scope, smtp_reply};
///
/// let t0 = Instant::now();
/// let mut pbox = PenaltyBox::new(PenaltyConfig::default(), 10_000, 0x5eed, t0);
/// let client = ClientKey::user("mallory");
/// pbox.violation(client, t0);
/// pbox.violation(client, t0);
/// // The third violation starts a one-minute ban.
/// assert_eq!(pbox.violation(client, t0).retry_after(), Some(Duration::from_secs(60)));
/// assert!(!pbox.check(client, t0 + Duration::from_secs(59)).is_allowed());
/// assert_eq!(smtp_reply(Scope::Connection).0, 421);
/// assert!(pbox.check(client, t0 + Duration::from_secs(60)).is_allowed());
/// ```
#[derive(Debug, Clone)]
pub struct PenaltyBox {
    config: PenaltyConfig,
    epoch: Epoch,
    table: Table<PenaltyState>,
}

impl PenaltyBox {
    /// A penalty box remembering at most `capacity` keys (keyed hash seeded by `seed`, as in
    /// [`KeyedLimiter`](super::KeyedLimiter)); when full, the record that would be forgiven
    /// first is replaced, so long bans are the last to be forgotten.
    #[must_use]
    pub fn new(config: PenaltyConfig, capacity: usize, seed: u64, epoch: Instant) -> Self {
        PenaltyBox { config, epoch: Epoch::new(epoch), table: Table::new(capacity, seed) }
    }

    /// Whether `key` is banned at `now`: [`Decision::Deny`] with the rest of the ban.
    /// Does not insert unknown keys.
    #[must_use]
    pub fn check(&self, key: ClientKey, now: Instant) -> Decision {
        let now = self.epoch.nanos(now);
        match self.table.get(&key) {
            Some(st) if st.until > now => Decision::deny_nanos(st.until.0 - now.0),
            _ => Decision::Allow,
        }
    }

    /// Record a violation by `key`; [`Decision::Deny`] with the ban when the key is (now)
    /// banned, [`Decision::Allow`] while it is only collecting strikes. Violations during a
    /// ban do not extend it.
    pub fn violation(&mut self, key: ClientKey, now: Instant) -> Decision {
        let now = self.epoch.nanos(now);
        let config = &self.config;
        let Some(st) = self.table.entry(&key, now, |s| config.idle_at(s)) else {
            return Decision::Allow;
        };
        if st.until > now {
            return Decision::deny_nanos(st.until.0 - now.0);
        }
        config.decay(st, now);
        st.last = now;
        st.strikes = st.strikes.saturating_add(1);
        if st.strikes < config.strikes {
            return Decision::Allow;
        }
        let ban = config.ban(st.level);
        st.strikes = 0;
        st.level = st.level.saturating_add(1);
        st.until = Nanos(now.0.saturating_add(ban));
        Decision::deny_nanos(ban)
    }

    /// Forget `key` entirely (an administrator's pardon); whether it was present.
    pub fn pardon(&mut self, key: &ClientKey) -> bool {
        self.table.remove(key)
    }

    /// The record of `key`, if held (decay is applied lazily, at the next violation).
    #[must_use]
    pub fn state(&self, key: &ClientKey) -> Option<&PenaltyState> {
        self.table.get(key)
    }

    /// Size, cap, memory and eviction counters.
    #[must_use]
    pub fn stats(&self) -> TableStats {
        self.table.stats()
    }
}

/// An SMTP reply: code, enhanced status code (class, subject, detail) and text, without a
/// dependency on the `smtp` module.
pub type SmtpReply = (u16, (u8, u16, u16), &'static str);

/// What a limit applies to, which decides the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The client's connection (connection rate or count, penalty box): reply and close.
    Connection,
    /// One command of a transaction (MAIL, RCPT, AUTH rates): reply, the session goes on.
    Command,
    /// The whole server (global concurrency, resources): not the client's fault.
    Server,
}

/// `421 4.7.0`: refuse the connection (send it, then close), for per-client connection
/// limits and bans.
#[must_use]
pub fn reply_too_many_connections() -> SmtpReply {
    (421, (4, 7, 0), "Too many connections or errors from your address, try again later")
}

/// `450 4.7.1`: defer one command (MAIL, RCPT, AUTH) over a per-client or per-sender rate.
#[must_use]
pub fn reply_rate_limited() -> SmtpReply {
    (450, (4, 7, 1), "Rate limit exceeded, try again later")
}

/// `451 4.4.5`: the server as a whole is congested (RFC 3463 "system congestion").
#[must_use]
pub fn reply_congestion() -> SmtpReply {
    (451, (4, 4, 5), "Server busy, try again later")
}

/// The reply for a denial in `scope`.
#[must_use]
pub fn smtp_reply(scope: Scope) -> SmtpReply {
    match scope {
        Scope::Connection => reply_too_many_connections(),
        Scope::Command => reply_rate_limited(),
        Scope::Server => reply_congestion(),
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a real Instant is the base of the virtual clock
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn escalates_and_decays() {
        let t0 = Instant::now();
        let cfg = PenaltyConfig::new(&[MIN, 10 * MIN], 1, 60 * MIN).unwrap();
        let mut p = PenaltyBox::new(cfg, 16, 1, t0);
        let k = ClientKey::user("x");
        assert_eq!(p.check(k, t0), Decision::Allow);
        assert_eq!(p.violation(k, t0).retry_after(), Some(MIN));
        // During the ban: the rest of it, not extended.
        assert_eq!(p.violation(k, t0 + 30 * MIN / 60).retry_after(), Some(MIN / 2));
        assert_eq!(
            p.check(k, t0 + MIN - Duration::from_nanos(1)).retry_after(),
            Some(Duration::from_nanos(1))
        );
        assert_eq!(p.check(k, t0 + MIN), Decision::Allow);
        // Level 1: ten minutes; the last length repeats.
        assert_eq!(p.violation(k, t0 + 2 * MIN).retry_after(), Some(10 * MIN));
        assert_eq!(p.violation(k, t0 + 13 * MIN).retry_after(), Some(10 * MIN));
        assert_eq!(p.state(&k).unwrap().level, 3);
        // Ban ended at 23 min; one clean hour forgives one level: 2 -> 10 min again...
        assert_eq!(p.violation(k, t0 + 83 * MIN).retry_after(), Some(10 * MIN));
        // ... and three clean hours after that ban (ended 93 min) bring it to level 0.
        assert_eq!(p.violation(k, t0 + 93 * MIN + 180 * MIN).retry_after(), Some(MIN));
        assert!(p.pardon(&k));
        assert_eq!(p.check(k, t0 + 273 * MIN), Decision::Allow);
    }

    #[test]
    fn strikes_before_ban_and_reset_by_decay() {
        let t0 = Instant::now();
        let mut p = PenaltyBox::new(PenaltyConfig::default(), 16, 1, t0);
        let k = ClientKey::user("y");
        assert!(p.violation(k, t0).is_allowed());
        assert!(p.violation(k, t0).is_allowed());
        // An hour of quiet clears the strikes.
        assert!(p.violation(k, t0 + 60 * MIN).is_allowed());
        assert!(p.violation(k, t0 + 60 * MIN).is_allowed());
        assert_eq!(p.violation(k, t0 + 60 * MIN).retry_after(), Some(MIN));
        assert!(PenaltyConfig::new(&[], 1, MIN).is_err());
        assert!(PenaltyConfig::new(&[MIN], 1, Duration::ZERO).is_err());
    }

    #[test]
    fn replies() {
        assert_eq!(smtp_reply(Scope::Connection).0, 421);
        assert_eq!(smtp_reply(Scope::Command).1, (4, 7, 1));
        assert_eq!(smtp_reply(Scope::Server).1, (4, 4, 5));
    }
}
