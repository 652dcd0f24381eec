//! Admission control: who may connect, how often, how many at once, and the per-client
//! recipient and message rates, all in [`postern::access::admission::Admission`],
//! configured from `--limits FILE` ([`postern::access::limits`]) and the command line
//! (flags override the file).
//!
//! One [`GatewayAdmission`] behind a `Mutex` is shared by every listener. At accept,
//! before a session starts, [`Admission::admit`] decides in this order: `--allow` (no
//! limits at all) and `--deny` (longest prefix wins; denied: SMTP `554 5.7.1`, POP3
//! `-ERR [AUTH]`), the penalty box (`--auth-failures-ban`), the connections at once
//! (`--max-conn-per-ip`), the connection rate (`--conn-rate`, or the listener's own
//! `conn-rate@PORT` from the limits file). Deferred clients get SMTP `421 4.7.0` or POP3
//! `-ERR [SYS/TEMP]` with the wait in seconds, and the connection is closed. A client is its
//! IPv4 address (/32) or its IPv6 /64; recipient and message rates count an authenticated
//! user on its own.

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use postern::access::admission::{Admission, AdmissionConfig, Admit};
use postern::access::cidr::CidrList;
use postern::limit::{Decision, Gcra, PenaltyConfig};

/// Keys tracked per table; the oldest idle ones are evicted past this.
pub(crate) const TABLE_CAPACITY: usize = 65_536;

/// The admission settings (from the limits file and the command line).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// `allow`/`deny` lines and `--allow`/`--deny`, longest prefix wins; `None` when none.
    pub(crate) lists: Option<CidrList>,
    /// `--conn-rate`.
    pub(crate) conn_rate: Option<Gcra>,
    /// `conn-rate@PORT` (limits file only).
    pub(crate) port_rates: Vec<(u16, Option<Gcra>)>,
    /// `--max-conn-per-ip`.
    pub(crate) max_conn_per_ip: Option<u32>,
    /// `--rcpt-rate`.
    pub(crate) rcpt_rate: Option<Gcra>,
    /// `--msg-rate`.
    pub(crate) msg_rate: Option<Gcra>,
    /// `--auth-failures-ban`: the library's default penalty ladder.
    pub(crate) auth_failures_ban: bool,
    /// `table-capacity` (limits file only).
    pub(crate) table_capacity: usize,
    /// `ipv4-prefix`, `ipv6-prefix` (limits file only).
    pub(crate) key_config: postern::limit::KeyConfig,
}

/// Whole seconds, rounded up, at least 1 (for a reply text).
pub(crate) fn secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0)).max(1)
}

/// The shared admission state: the library's [`Admission`].
#[derive(Debug)]
pub(crate) struct GatewayAdmission {
    admission: Admission,
}

impl GatewayAdmission {
    /// Builds the limits; `seed` keys the tables' hashes (random in production).
    pub(crate) fn new(settings: &Settings, seed: u64, epoch: Instant) -> GatewayAdmission {
        let mut config = AdmissionConfig::new(seed);
        config.lists.clone_from(&settings.lists);
        config.connection_rate = settings.conn_rate;
        config.port_connection_rates.clone_from(&settings.port_rates);
        config.max_concurrent_per_client = settings.max_conn_per_ip;
        config.recipient_rate = settings.rcpt_rate;
        config.message_rate = settings.msg_rate;
        config.penalty = settings.auth_failures_ban.then(PenaltyConfig::default);
        config.table_capacity = settings.table_capacity;
        config.key_config = settings.key_config;
        GatewayAdmission { admission: Admission::new(config, epoch) }
    }

    /// The decision for a new connection from `peer` on `local_port`.
    pub(crate) fn admit(&mut self, peer: IpAddr, local_port: u16, now: Instant) -> Admit {
        self.admission.admit(peer, local_port, now)
    }

    /// A failed login from `peer`: feeds the penalty box (if on). `Deny` once banned.
    /// Allow-listed clients are never banned.
    pub(crate) fn record_violation(&mut self, peer: IpAddr, now: Instant) -> Decision {
        self.admission.record_violation(peer, now)
    }

    /// One recipient from `peer` (as `user`, if authenticated) against `--rcpt-rate`.
    pub(crate) fn check_rcpt(&mut self, peer: IpAddr, user: Option<&str>, now: Instant) -> Decision {
        self.admission.check_rcpt(peer, user, now)
    }

    /// One message from `peer` (as `user`, if authenticated) against `--msg-rate`.
    pub(crate) fn check_message(&mut self, peer: IpAddr, user: Option<&str>, now: Instant) -> Decision {
        self.admission.check_message(peer, user, now)
    }
}

/// The shared admission state, locked (a poisoned lock is still usable: the tables stay
/// consistent across a panic elsewhere).
pub(crate) fn lock(admission: &Mutex<GatewayAdmission>) -> MutexGuard<'_, GatewayAdmission> {
    admission.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A rate for the startup log.
fn rate(r: Option<Gcra>) -> String {
    r.map_or("no limit".to_owned(), |g| format!("1 per {:?}, bursts of {}", g.interval(), g.burst()))
}

/// One line for the startup log.
pub(crate) fn describe(s: &Settings) -> String {
    let ports: String =
        s.port_rates.iter().map(|(port, r)| format!(", on port {port} {}", rate(*r))).collect();
    format!(
        "allow/deny lists {}, connection rate {}{ports}, connections per client {}, recipient rate {}, \
         message rate {}, failed-login bans {}",
        s.lists.as_ref().map_or("none".to_owned(), |l| format!("{} entries", l.len())),
        rate(s.conn_rate),
        s.max_conn_per_ip.map_or("no limit".to_owned(), |n| n.to_string()),
        rate(s.rcpt_rate),
        rate(s.msg_rate),
        if s.auth_failures_ban { "on" } else { "off" },
    )
}
