//! Admission control: who may connect, how often, how many at once, and the per-client
//! recipient and message rates, built from `postern::limit` and `postern::access::cidr`.
//!
//! One [`Admission`] behind a `Mutex` is shared by every listener. At accept, before a
//! session starts, [`Admission::admit`] decides in this order:
//!
//! 1. `--deny`/`--allow` (longest prefix wins): denied → [`Admit::Refuse`] (SMTP `554 5.7.1`,
//!    POP3 `-ERR [AUTH]`); allowed → accepted without any limit;
//! 2. the penalty box (`--auth-failures-ban`): banned → [`Admit::Defer`];
//! 3. the connection rate (`--conn-rate`, GCRA per client): over → [`Admit::Defer`];
//! 4. the connections at once (`--max-conn-per-ip`): over → [`Admit::Defer`].
//!
//! Deferred clients get SMTP `421 4.7.0` or POP3 `-ERR [SYS/TEMP]` with the wait in
//! seconds, and the connection is closed. A client is its IPv4 address (/32) or its IPv6
//! /64.

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use postern::access::cidr::{CidrList, Verdict};
use postern::limit::{
    ClientKey, Decision, Gcra, KeyConfig, KeyedConcurrency, KeyedLimiter, KeyedPermit, PenaltyBox,
    PenaltyConfig,
};

/// Keys tracked per table; the oldest idle ones are evicted past this.
const TABLE_CAPACITY: usize = 65_536;
/// Counters per row of the concurrency sketch.
const CONCURRENCY_WIDTH: usize = 4096;
/// What a client over `--max-conn-per-ip` is told to wait.
const CONCURRENCY_RETRY: Duration = Duration::from_secs(1);

/// A rate: `count` per `period` (bursts of up to `count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    pub(crate) count: u32,
    pub(crate) period: Duration,
}

impl Rate {
    /// `N/SECS` (e.g. `30/60`) or `N` (per second).
    pub(crate) fn parse(text: &str) -> Result<Rate, String> {
        let (count, secs) = text.split_once('/').unwrap_or((text, "1"));
        let count: u32 = count.trim().parse().map_err(|e| format!("{text:?}: count: {e}"))?;
        let secs: u64 = secs.trim().parse().map_err(|e| format!("{text:?}: seconds: {e}"))?;
        if count == 0 || secs == 0 {
            return Err(format!("{text:?}: count and seconds must be positive"));
        }
        Ok(Rate { count, period: Duration::from_secs(secs) })
    }

    fn gcra(self) -> Gcra {
        // count and period are non-zero (parse), so the quota is valid; burst = count.
        Gcra::new(self.count, self.period, self.count).unwrap_or_else(|_| unreachable_quota())
    }
}

#[allow(clippy::panic)] // Rate::parse guarantees a valid quota
fn unreachable_quota() -> Gcra {
    panic!("invalid quota despite Rate::parse")
}

/// The admission settings (from the command line).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// `--allow` and `--deny`, longest prefix wins; `None` when neither was given.
    pub(crate) lists: Option<CidrList>,
    /// `--conn-rate`.
    pub(crate) conn_rate: Option<Rate>,
    /// `--max-conn-per-ip`.
    pub(crate) max_conn_per_ip: Option<u32>,
    /// `--rcpt-rate`.
    pub(crate) rcpt_rate: Option<Rate>,
    /// `--msg-rate`.
    pub(crate) msg_rate: Option<Rate>,
    /// `--auth-failures-ban`: the library's default penalty ladder.
    pub(crate) auth_failures_ban: bool,
}

/// Why a client is told to come back later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeferReason {
    /// In the penalty box (too many failed logins).
    Banned,
    /// Over `--conn-rate`.
    ConnectionRate,
    /// Over `--max-conn-per-ip`.
    Concurrency,
}

/// The decision at accept.
#[derive(Debug)]
pub(crate) enum Admit {
    /// Serve it; hold the permit for the connection's life.
    Accept {
        /// The place in `--max-conn-per-ip`, if that limit is on.
        permit: Option<KeyedPermit>,
    },
    /// Come back later: `421 4.7.0` / `-ERR [SYS/TEMP]`, then close.
    Defer {
        /// The wait.
        retry_after: Duration,
        /// Which limit.
        reason: DeferReason,
    },
    /// Never: `554 5.7.1` / `-ERR [AUTH]`, then close.
    Refuse,
}

/// Whole seconds, rounded up, at least 1 (for a reply text).
pub(crate) fn secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0)).max(1)
}

/// The shared admission state.
#[derive(Debug)]
pub(crate) struct Admission {
    lists: Option<CidrList>,
    keys: KeyConfig,
    conn_rate: Option<KeyedLimiter<Gcra>>,
    concurrency: Option<KeyedConcurrency>,
    penalty: Option<PenaltyBox>,
    rcpt_rate: Option<KeyedLimiter<Gcra>>,
    msg_rate: Option<KeyedLimiter<Gcra>>,
}

impl Admission {
    /// Builds the limits; `seed` keys the tables' hashes (random in production).
    pub(crate) fn new(settings: &Settings, seed: u64, epoch: Instant) -> Admission {
        let limiter = |rate: Option<Rate>, salt: u64| {
            rate.map(|r| KeyedLimiter::new(r.gcra(), TABLE_CAPACITY, seed ^ salt, epoch))
        };
        Admission {
            lists: settings.lists.clone(),
            keys: KeyConfig::default(),
            conn_rate: limiter(settings.conn_rate, 1),
            concurrency: settings
                .max_conn_per_ip
                .map(|n| KeyedConcurrency::new(n, CONCURRENCY_WIDTH, seed ^ 2)),
            penalty: settings
                .auth_failures_ban
                .then(|| PenaltyBox::new(PenaltyConfig::default(), TABLE_CAPACITY, seed ^ 3, epoch)),
            rcpt_rate: limiter(settings.rcpt_rate, 4),
            msg_rate: limiter(settings.msg_rate, 5),
        }
    }

    fn key(&self, peer: IpAddr) -> ClientKey {
        ClientKey::from_ip(peer, &self.keys)
    }

    fn exempt(&self, peer: IpAddr) -> bool {
        self.lists.as_ref().and_then(|l| l.verdict(peer)) == Some(Verdict::Allow)
    }

    /// The decision for a new connection from `peer`.
    pub(crate) fn admit(&mut self, peer: IpAddr, now: Instant) -> Admit {
        match self.lists.as_ref().and_then(|l| l.verdict(peer)) {
            Some(Verdict::Deny) => return Admit::Refuse,
            Some(Verdict::Allow) => return Admit::Accept { permit: None },
            None => {}
        }
        let key = self.key(peer);
        if let Some(penalty) = &self.penalty
            && let Decision::Deny { retry_after } = penalty.check(key, now)
        {
            return Admit::Defer { retry_after, reason: DeferReason::Banned };
        }
        if let Some(rate) = &mut self.conn_rate
            && let Decision::Deny { retry_after } = rate.check(key, now)
        {
            return Admit::Defer { retry_after, reason: DeferReason::ConnectionRate };
        }
        match &self.concurrency {
            None => Admit::Accept { permit: None },
            Some(c) => match c.try_acquire(&key) {
                Some(permit) => Admit::Accept { permit: Some(permit) },
                None => Admit::Defer { retry_after: CONCURRENCY_RETRY, reason: DeferReason::Concurrency },
            },
        }
    }

    /// A failed login from `peer`: feeds the penalty box (if on). `Deny` once banned.
    pub(crate) fn record_violation(&mut self, peer: IpAddr, now: Instant) -> Decision {
        if self.exempt(peer) {
            return Decision::Allow;
        }
        let key = self.key(peer);
        match &mut self.penalty {
            Some(penalty) => penalty.violation(key, now),
            None => Decision::Allow,
        }
    }

    /// One recipient from `peer` against `--rcpt-rate`.
    pub(crate) fn check_rcpt(&mut self, peer: IpAddr, now: Instant) -> Decision {
        if self.exempt(peer) {
            return Decision::Allow;
        }
        let key = self.key(peer);
        self.rcpt_rate.as_mut().map_or(Decision::Allow, |l| l.check(key, now))
    }

    /// One message from `peer` against `--msg-rate`.
    pub(crate) fn check_message(&mut self, peer: IpAddr, now: Instant) -> Decision {
        if self.exempt(peer) {
            return Decision::Allow;
        }
        let key = self.key(peer);
        self.msg_rate.as_mut().map_or(Decision::Allow, |l| l.check(key, now))
    }
}

/// The shared admission state, locked (a poisoned lock is still usable: the tables stay
/// consistent across a panic elsewhere).
pub(crate) fn lock(admission: &Mutex<Admission>) -> MutexGuard<'_, Admission> {
    admission.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One line for the startup log.
pub(crate) fn describe(s: &Settings) -> String {
    let rate =
        |r: Option<Rate>| r.map_or("no limit".to_owned(), |r| format!("{}/{}s", r.count, r.period.as_secs()));
    format!(
        "allow/deny lists {}, connection rate {}, connections per client {}, recipient rate {}, \
         message rate {}, failed-login bans {}",
        s.lists.as_ref().map_or("none".to_owned(), |l| format!("{} entries", l.len())),
        rate(s.conn_rate),
        s.max_conn_per_ip.map_or("no limit".to_owned(), |n| n.to_string()),
        rate(s.rcpt_rate),
        rate(s.msg_rate),
        if s.auth_failures_ban { "on" } else { "off" },
    )
}
