//! Admission control: who may connect, how often, how many at once
//! ([`postern::access::admission::Admission`]), and the per-client recipient and message
//! rates (GCRA [`KeyedLimiter`]s), configured from the command line.
//!
//! One [`GatewayAdmission`] behind a `Mutex` is shared by every listener. At accept,
//! before a session starts, [`Admission::admit`] decides in this order: `--allow` (no
//! limits at all) and `--deny` (longest prefix wins; denied: SMTP `554 5.7.1`, POP3
//! `-ERR [AUTH]`), the penalty box (`--auth-failures-ban`), the connection rate
//! (`--conn-rate`), the connections at once (`--max-conn-per-ip`). Deferred clients get
//! SMTP `421 4.7.0` or POP3 `-ERR [SYS/TEMP]` with the wait in seconds, and the
//! connection is closed. A client is its IPv4 address (/32) or its IPv6 /64.

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use postern::access::admission::{Admission, AdmissionConfig, Admit};
use postern::access::cidr::{CidrList, Verdict};
use postern::limit::{ClientKey, Decision, Gcra, KeyConfig, KeyedLimiter, PenaltyConfig};

/// Keys tracked per table; the oldest idle ones are evicted past this.
const TABLE_CAPACITY: usize = 65_536;

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

/// Whole seconds, rounded up, at least 1 (for a reply text).
pub(crate) fn secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0)).max(1)
}

/// The shared admission state: the library's [`Admission`] and the per-client rates.
#[derive(Debug)]
pub(crate) struct GatewayAdmission {
    admission: Admission,
    /// `--allow`/`--deny`, again: allowed clients are exempt from the rates too.
    lists: Option<CidrList>,
    keys: KeyConfig,
    rcpt_rate: Option<KeyedLimiter<Gcra>>,
    msg_rate: Option<KeyedLimiter<Gcra>>,
}

impl GatewayAdmission {
    /// Builds the limits; `seed` keys the tables' hashes (random in production).
    pub(crate) fn new(settings: &Settings, seed: u64, epoch: Instant) -> GatewayAdmission {
        let mut config = AdmissionConfig::new(seed);
        config.lists.clone_from(&settings.lists);
        config.connection_rate = settings.conn_rate.map(Rate::gcra);
        config.max_concurrent_per_client = settings.max_conn_per_ip;
        config.penalty = settings.auth_failures_ban.then(PenaltyConfig::default);
        config.table_capacity = TABLE_CAPACITY;
        let limiter = |rate: Option<Rate>, salt: u64| {
            rate.map(|r| KeyedLimiter::new(r.gcra(), TABLE_CAPACITY, seed ^ salt, epoch))
        };
        GatewayAdmission {
            admission: Admission::new(config, epoch),
            lists: settings.lists.clone(),
            keys: KeyConfig::default(),
            rcpt_rate: limiter(settings.rcpt_rate, 0x5a5a_0001),
            msg_rate: limiter(settings.msg_rate, 0x5a5a_0002),
        }
    }

    fn exempt(&self, peer: IpAddr) -> bool {
        self.lists.as_ref().and_then(|l| l.verdict(peer)) == Some(Verdict::Allow)
    }

    /// The decision for a new connection from `peer` on `local_port`.
    pub(crate) fn admit(&mut self, peer: IpAddr, local_port: u16, now: Instant) -> Admit {
        self.admission.admit(peer, local_port, now)
    }

    /// A failed login from `peer`: feeds the penalty box (if on). `Deny` once banned.
    /// `--allow`ed clients are never banned.
    pub(crate) fn record_violation(&mut self, peer: IpAddr, now: Instant) -> Decision {
        if self.exempt(peer) {
            return Decision::Allow;
        }
        self.admission.record_violation(peer, now)
    }

    /// One recipient from `peer` against `--rcpt-rate`.
    pub(crate) fn check_rcpt(&mut self, peer: IpAddr, now: Instant) -> Decision {
        if self.exempt(peer) {
            return Decision::Allow;
        }
        let key = ClientKey::from_ip(peer, &self.keys);
        self.rcpt_rate.as_mut().map_or(Decision::Allow, |l| l.check(key, now))
    }

    /// One message from `peer` against `--msg-rate`.
    pub(crate) fn check_message(&mut self, peer: IpAddr, now: Instant) -> Decision {
        if self.exempt(peer) {
            return Decision::Allow;
        }
        let key = ClientKey::from_ip(peer, &self.keys);
        self.msg_rate.as_mut().map_or(Decision::Allow, |l| l.check(key, now))
    }
}

/// The shared admission state, locked (a poisoned lock is still usable: the tables stay
/// consistent across a panic elsewhere).
pub(crate) fn lock(admission: &Mutex<GatewayAdmission>) -> MutexGuard<'_, GatewayAdmission> {
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
