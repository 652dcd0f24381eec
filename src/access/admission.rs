//! Admission control in one call at `accept()`: CIDR lists, the penalty box, reputation,
//! geofence, per-client connection rate and concurrency.
//!
//! ```
//! use std::net::IpAddr;
//! use std::time::{Duration, Instant};
//! use postern::access::admission::{Admission, AdmissionConfig, Admit};
//! use postern::access::cidr::CidrList;
//! use postern::limit::Gcra;
//!
//! let now = Instant::now();
//! let mut config = AdmissionConfig::new(0x5eed);
//! config.lists = Some(CidrList::parse("deny 192.0.2.0/24\nallow 198.51.100.7").unwrap());
//! config.connection_rate = Some(Gcra::new(2, Duration::from_secs(60), 2).unwrap());
//! let mut admission = Admission::new(config, now);
//!
//! let peer: IpAddr = "203.0.113.9".parse().unwrap();
//! assert!(matches!(admission.admit(peer, 25, now), Admit::Accept { .. }));
//! assert!(matches!(admission.admit(peer, 25, now), Admit::Accept { .. }));
//! let third = admission.admit(peer, 25, now);
//! assert!(matches!(third, Admit::Defer { .. }));
//! assert_eq!(third.smtp_reply().unwrap().0, 421);
//!
//! let denied = admission.admit("192.0.2.1".parse().unwrap(), 25, now);
//! assert_eq!(denied.smtp_reply().unwrap().0, 554);
//! // Allow-listed clients bypass every limit.
//! for _ in 0..10 {
//!     assert!(admission.admit("198.51.100.7".parse().unwrap(), 25, now).is_accepted());
//! }
//! ```

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::cidr::{CidrList, Verdict};
use super::geofence::{CountryLookup, GeoVerdict, Geofence};
use super::reputation::{self, Reputation, Standing};
use crate::limit::{
    ClientKey, Decision, Gcra, KeyConfig, KeyedConcurrency, KeyedLimiter, KeyedPermit, PenaltyBox,
    PenaltyConfig,
};

/// What [`Admission`] consists of. Every part is optional; a part left out admits.
#[non_exhaustive]
pub struct AdmissionConfig {
    /// Allow/deny lists: an allow entry bypasses every other check, a deny entry refuses.
    pub lists: Option<CidrList>,
    /// New connections per client (a GCRA quota). Over it: [`Admit::Defer`].
    pub connection_rate: Option<Gcra>,
    /// Per-listener connection rates: a connection to one of these local ports is counted
    /// against that port's own quota (`None`: no rate limit on that port) instead of
    /// [`AdmissionConfig::connection_rate`]. E.g. a strict rate on port 25, where anyone may
    /// connect, and a looser one on 587, where users must authenticate. Each port with a
    /// quota has its own table of [`AdmissionConfig::table_capacity`] clients.
    pub port_connection_rates: Vec<(u16, Option<Gcra>)>,
    /// Simultaneous connections per client. Over it: [`Admit::Defer`].
    pub max_concurrent_per_client: Option<u32>,
    /// Escalating bans after [`Admission::record_violation`]. Banned: [`Admit::Defer`].
    pub penalty: Option<PenaltyConfig>,
    /// Recipients per client (or per authenticated user), checked by [`Admission::check_rcpt`].
    pub recipient_rate: Option<Gcra>,
    /// Messages per client (or per authenticated user), checked by
    /// [`Admission::check_message`].
    pub message_rate: Option<Gcra>,
    /// Reputation: clients in [`Standing::Bad`] are refused.
    pub reputation: Option<Reputation>,
    /// A geofence; a denied country is refused.
    pub geofence: Option<Geofence<Box<dyn CountryLookup + Send + Sync>>>,
    /// Clients tracked by the rate and penalty tables (a hard cap).
    pub table_capacity: usize,
    /// Random bytes from the application (seeds the tables' hash so that an attacker
    /// cannot aim keys at one bucket).
    pub seed: u64,
    /// How client addresses are grouped (IPv4 /32 and IPv6 /64 by default).
    pub key_config: KeyConfig,
}

impl AdmissionConfig {
    /// Nothing configured (everything admitted), with a table cap of 100 000 clients.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self {
            lists: None,
            connection_rate: None,
            port_connection_rates: Vec::new(),
            max_concurrent_per_client: None,
            penalty: None,
            recipient_rate: None,
            message_rate: None,
            reputation: None,
            geofence: None,
            table_capacity: 100_000,
            seed,
            key_config: KeyConfig::default(),
        }
    }
}

impl fmt::Debug for AdmissionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionConfig")
            .field("lists", &self.lists.as_ref().map(CidrList::len))
            .field("connection_rate", &self.connection_rate)
            .field("port_connection_rates", &self.port_connection_rates)
            .field("max_concurrent_per_client", &self.max_concurrent_per_client)
            .field("recipient_rate", &self.recipient_rate)
            .field("message_rate", &self.message_rate)
            .field("penalty", &self.penalty.is_some())
            .field("reputation", &self.reputation.is_some())
            .field("geofence", &self.geofence.is_some())
            .field("table_capacity", &self.table_capacity)
            .finish_non_exhaustive()
    }
}

/// Why a client was deferred (a temporary condition).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeferReason {
    /// Too many new connections.
    ConnectionRate,
    /// Too many simultaneous connections.
    Concurrency,
    /// Banned by the penalty box.
    Banned,
}

/// Why a client was refused (a policy decision).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefuseReason {
    /// A deny entry of the CIDR lists.
    Denied,
    /// Reputation in [`Standing::Bad`].
    Reputation,
    /// A denied (or unknown, if so configured) country.
    Country(Option<[u8; 2]>),
}

/// The decision of [`Admission::admit`].
#[derive(Debug)]
#[must_use]
pub enum Admit {
    /// Serve the client. Keep `permit` for the connection's lifetime: dropping it frees the
    /// client's concurrency slot.
    Accept {
        /// The concurrency permit, if concurrency is limited.
        permit: Option<KeyedPermit>,
    },
    /// Not now: answer with a transient error and close (`421 4.7.0` in SMTP).
    Defer {
        /// When the client may try again.
        retry_after: Duration,
        /// Why.
        reason: DeferReason,
    },
    /// Not at all: answer with a permanent error (`554 5.7.1` in SMTP, RFC 5321 §3.1) and
    /// serve only QUIT, or close.
    Refuse {
        /// Why.
        reason: RefuseReason,
    },
}

impl Admit {
    /// `true` for [`Admit::Accept`].
    #[must_use]
    pub fn is_accepted(&self) -> bool {
        matches!(self, Self::Accept { .. })
    }

    /// The SMTP greeting to send instead of `220` (code, enhanced status, text without the
    /// host name), or `None` when accepted. [`Admit::smtp_greeting`] builds the whole reply.
    #[must_use]
    pub fn smtp_reply(&self) -> Option<(u16, (u8, u16, u16), String)> {
        match self {
            Self::Accept { .. } => None,
            Self::Defer { retry_after, reason } => {
                let why = match reason {
                    DeferReason::ConnectionRate => "too many connections",
                    DeferReason::Concurrency => "too many simultaneous connections",
                    DeferReason::Banned => "temporarily blocked",
                };
                let secs = ceil_secs(*retry_after);
                Some((421, (4, 7, 0), format!("Error: {why}, try again in {secs} s")))
            }
            Self::Refuse { .. } => Some((554, (5, 7, 1), "Error: access denied".to_owned())),
        }
    }

    /// The SMTP reply to send instead of the `220` greeting, then close (`421 4.7.0` when
    /// deferred, `554 5.7.1` when refused), or `None` when accepted. Its text starts with
    /// `hostname`, as a greeting must (RFC 5321 §4.2).
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// # use postern::access::admission::{Admission, AdmissionConfig};
    /// # use postern::access::cidr::CidrList;
    /// # let now = Instant::now();
    /// # let mut config = AdmissionConfig::new(1);
    /// # config.lists = Some(CidrList::parse("deny 192.0.2.0/24").unwrap());
    /// # let mut admission = Admission::new(config, now);
    /// let refused = admission.admit("192.0.2.1".parse().unwrap(), 25, now);
    /// let reply = refused.smtp_greeting("mx.example.org").unwrap();
    /// assert_eq!(reply.to_string(), "554 5.7.1 mx.example.org Error: access denied\r\n");
    /// ```
    #[cfg(feature = "smtp")]
    #[must_use]
    pub fn smtp_greeting(&self, hostname: &str) -> Option<crate::smtp::Reply> {
        let (code, (class, subject, detail), text) = self.smtp_reply()?;
        Some(crate::smtp::Reply::new(
            code,
            crate::smtp::EnhancedStatus::new(class, subject, detail),
            format!("{hostname} {text}"),
        ))
    }

    /// The POP3 response to send before closing (`-ERR [SYS/TEMP] ...` when deferred,
    /// `-ERR [AUTH] ...` when refused, RFC 3206), or `None` when accepted.
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// # use postern::access::admission::{Admission, AdmissionConfig};
    /// # let now = Instant::now();
    /// # let mut config = AdmissionConfig::new(1);
    /// # config.max_concurrent_per_client = Some(1);
    /// # let mut admission = Admission::new(config, now);
    /// let peer = "192.0.2.1".parse().unwrap();
    /// let first = admission.admit(peer, 995, now);
    /// let second = admission.admit(peer, 995, now);
    /// assert!(first.pop3_reply().is_none());
    /// assert_eq!(second.pop3_reply().unwrap().to_string(), "-ERR [SYS/TEMP] try again in 1 s\r\n");
    /// ```
    #[cfg(feature = "pop3")]
    #[must_use]
    pub fn pop3_reply(&self) -> Option<crate::pop3::Reply> {
        use crate::pop3::{Reply, ResponseCode};
        match self {
            Self::Accept { .. } => None,
            Self::Defer { retry_after, .. } => Some(Reply::err(
                Some(ResponseCode::SysTemp),
                format!("try again in {} s", ceil_secs(*retry_after)),
            )),
            Self::Refuse { .. } => Some(Reply::err(Some(ResponseCode::Auth), "access denied")),
        }
    }
}

/// `450 4.7.1` for a command over a per-client rate ([`Admission::check_rcpt`],
/// [`Admission::check_message`]), with the wait in whole seconds; the session goes on.
///
/// ```
/// use std::time::Duration;
/// let reply = postern::access::admission::rate_limited_reply(Duration::from_millis(1500));
/// assert_eq!(reply.to_string(), "450 4.7.1 Rate limit exceeded, try again in 2 s\r\n");
/// ```
#[cfg(feature = "smtp")]
#[must_use]
pub fn rate_limited_reply(retry_after: Duration) -> crate::smtp::Reply {
    let (code, (class, subject, detail), _) = crate::limit::reply_rate_limited();
    crate::smtp::Reply::new(
        code,
        crate::smtp::EnhancedStatus::new(class, subject, detail),
        format!("Rate limit exceeded, try again in {} s", ceil_secs(retry_after)),
    )
}

/// Whole seconds, rounded up (a client told "59 s" of a 59.5 s wait would come back early).
fn ceil_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// Admission control for one listener or a whole server (see the [module](self) docs).
pub struct Admission {
    lists: Option<CidrList>,
    rate: Option<KeyedLimiter<Gcra>>,
    /// Per-listener connection rates (port, its own table or none).
    port_rates: Vec<(u16, Option<KeyedLimiter<Gcra>>)>,
    recipients: Option<KeyedLimiter<Gcra>>,
    messages: Option<KeyedLimiter<Gcra>>,
    concurrency: Option<KeyedConcurrency>,
    penalty: Option<PenaltyBox>,
    reputation: Option<Reputation>,
    geofence: Option<Geofence<Box<dyn CountryLookup + Send + Sync>>>,
    keys: KeyConfig,
}

impl Admission {
    /// Builds the checks. `epoch` is the earliest instant later calls will pass.
    #[must_use]
    pub fn new(config: AdmissionConfig, epoch: Instant) -> Self {
        let cap = config.table_capacity.max(1);
        let keys = config.key_config;
        let seed = config.seed;
        let table =
            move |g: Gcra, salt: u64| KeyedLimiter::new(g, cap, seed ^ salt, epoch).with_key_config(keys);
        Self {
            lists: config.lists,
            rate: config.connection_rate.map(|g| table(g, 0)),
            port_rates: config
                .port_connection_rates
                .into_iter()
                .map(|(port, g)| (port, g.map(|g| table(g, 0x706f_7274_0000 | u64::from(port)))))
                .collect(),
            recipients: config.recipient_rate.map(|g| table(g, 0x7263_7074)),
            messages: config.message_rate.map(|g| table(g, 0x6d73_6773)),
            concurrency: config
                .max_concurrent_per_client
                .map(|max| KeyedConcurrency::new(max, cap.min(1 << 16), config.seed ^ 0x9e37_79b9_7f4a_7c15)),
            penalty: config.penalty.map(|p| PenaltyBox::new(p, cap, config.seed.rotate_left(17), epoch)),
            reputation: config.reputation,
            geofence: config.geofence,
            keys,
        }
    }

    /// Decides about a new connection from `peer` on `local_port` at `now`. Order: the
    /// allow list (bypasses everything), the deny list, the penalty box, the geofence,
    /// reputation, concurrency, the connection rate (`local_port`'s own rate if
    /// [`AdmissionConfig::port_connection_rates`] has one, else the common one). Every
    /// other check is the same on every port: a ban or a deny entry applies to them all.
    pub fn admit(&mut self, peer: IpAddr, local_port: u16, now: Instant) -> Admit {
        match self.lists.as_ref().and_then(|l| l.verdict(peer)) {
            Some(Verdict::Allow) => return Admit::Accept { permit: None },
            Some(Verdict::Deny) => return Admit::Refuse { reason: RefuseReason::Denied },
            _ => {}
        }
        let key = ClientKey::from_ip(peer, &self.keys);
        if let Some(Decision::Deny { retry_after }) = self.penalty.as_ref().map(|p| p.check(key, now)) {
            return Admit::Defer { retry_after, reason: DeferReason::Banned };
        }
        if let Some(GeoVerdict::Denied { country }) = self.geofence.as_ref().map(|g| g.check(peer)) {
            return Admit::Refuse { reason: RefuseReason::Country(country) };
        }
        if self.reputation.as_ref().map(|r| r.standing(reputation::ClientKey::from_ip(peer), now))
            == Some(Standing::Bad)
        {
            return Admit::Refuse { reason: RefuseReason::Reputation };
        }
        // Concurrency first: a client deferred for it does not use up its connection rate.
        let permit = match &self.concurrency {
            Some(c) => match c.try_acquire(&key) {
                Some(p) => Some(p),
                None => {
                    return Admit::Defer {
                        retry_after: Duration::from_secs(1),
                        reason: DeferReason::Concurrency,
                    };
                }
            },
            None => None,
        };
        let rate = match self.port_rates.iter_mut().find(|(port, _)| *port == local_port) {
            Some((_, rate)) => rate.as_mut(),
            None => self.rate.as_mut(),
        };
        if let Some(Decision::Deny { retry_after }) = rate.map(|r| r.check(key, now)) {
            // `permit` is dropped here: the slot is free again.
            return Admit::Defer { retry_after, reason: DeferReason::ConnectionRate };
        }
        Admit::Accept { permit }
    }

    /// Records a violation by `peer` (a failed AUTH, a protocol violation): feeds the
    /// penalty box (and reputation, as a protocol error). Returns the penalty box's verdict:
    /// `Deny` when the client is banned from now on.
    /// Allow-listed clients are never penalised.
    pub fn record_violation(&mut self, peer: IpAddr, now: Instant) -> Decision {
        if self.is_allow_listed(peer) {
            return Decision::Allow;
        }
        if let Some(r) = self.reputation.as_mut() {
            let _ = r.record(reputation::ClientKey::from_ip(peer), reputation::Event::ProtocolError, now);
        }
        let key = ClientKey::from_ip(peer, &self.keys);
        self.penalty.as_mut().map_or(Decision::Allow, |p| p.violation(key, now))
    }

    /// Checks one recipient (an `RCPT TO`) against [`AdmissionConfig::recipient_rate`],
    /// counted per authenticated `user` when there is one (submission), else per client
    /// address (grouped like connections). Allow-listed clients are not limited. On
    /// `Deny`, answer [`rate_limited_reply`] (`450 4.7.1`) and go on with the session.
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// use postern::access::admission::{Admission, AdmissionConfig};
    /// use postern::limit::{Decision, Gcra};
    /// let now = Instant::now();
    /// let mut config = AdmissionConfig::new(7);
    /// config.recipient_rate = Some(Gcra::new(2, Duration::from_secs(60), 2).unwrap());
    /// let mut admission = Admission::new(config, now);
    /// let peer = "192.0.2.1".parse().unwrap();
    /// assert!(admission.check_rcpt(peer, None, now).is_allowed());
    /// assert!(admission.check_rcpt(peer, None, now).is_allowed());
    /// assert_eq!(admission.check_rcpt(peer, None, now).retry_after(), Some(Duration::from_secs(30)));
    /// // An authenticated user from the same address has a quota of its own.
    /// assert!(admission.check_rcpt(peer, Some("alice"), now).is_allowed());
    /// ```
    pub fn check_rcpt(&mut self, peer: IpAddr, user: Option<&str>, now: Instant) -> Decision {
        let key = self.rate_key(peer, user);
        match (key, self.recipients.as_mut()) {
            (Some(key), Some(limiter)) => limiter.check(key, now),
            _ => Decision::Allow,
        }
    }

    /// Checks one message (at `DATA`/`BDAT`) against [`AdmissionConfig::message_rate`],
    /// keyed like [`Admission::check_rcpt`].
    pub fn check_message(&mut self, peer: IpAddr, user: Option<&str>, now: Instant) -> Decision {
        let key = self.rate_key(peer, user);
        match (key, self.messages.as_mut()) {
            (Some(key), Some(limiter)) => limiter.check(key, now),
            _ => Decision::Allow,
        }
    }

    /// The key of the recipient and message rates; `None` for allow-listed clients.
    fn rate_key(&self, peer: IpAddr, user: Option<&str>) -> Option<ClientKey> {
        if self.is_allow_listed(peer) {
            return None;
        }
        Some(user.map_or_else(|| ClientKey::from_ip(peer, &self.keys), ClientKey::user))
    }

    /// `true` if the allow list covers `peer` (it bypasses every limit).
    #[must_use]
    pub fn is_allow_listed(&self, peer: IpAddr) -> bool {
        self.lists.as_ref().and_then(|l| l.verdict(peer)) == Some(Verdict::Allow)
    }

    /// Records a reputation event for `peer` (no effect without reputation configured).
    pub fn record(&mut self, peer: IpAddr, event: reputation::Event, now: Instant) -> Option<Standing> {
        self.reputation.as_mut().map(|r| r.record(reputation::ClientKey::from_ip(peer), event, now))
    }
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("lists", &self.lists.as_ref().map(CidrList::len))
            .field("rate", &self.rate.as_ref().map(KeyedLimiter::len))
            .field(
                "port_rates",
                &self
                    .port_rates
                    .iter()
                    .map(|(p, r)| (p, r.as_ref().map(KeyedLimiter::len)))
                    .collect::<Vec<_>>(),
            )
            .field("recipients", &self.recipients.as_ref().map(KeyedLimiter::len))
            .field("messages", &self.messages.as_ref().map(KeyedLimiter::len))
            .field("concurrency", &self.concurrency.is_some())
            .field("penalty", &self.penalty.is_some())
            .field("reputation", &self.reputation.as_ref().map(Reputation::len))
            .field("geofence", &self.geofence.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a real Instant is the base of the virtual clock
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn concurrency_permits_are_released_on_drop() {
        let now = Instant::now();
        let mut c = AdmissionConfig::new(1);
        c.max_concurrent_per_client = Some(2);
        let mut a = Admission::new(c, now);
        let first = a.admit(ip("192.0.2.1"), 25, now);
        let second = a.admit(ip("192.0.2.1"), 25, now);
        assert!(first.is_accepted() && second.is_accepted());
        let third = a.admit(ip("192.0.2.1"), 25, now);
        assert!(matches!(third, Admit::Defer { reason: DeferReason::Concurrency, .. }));
        // Another client is not affected.
        assert!(a.admit(ip("192.0.2.2"), 25, now).is_accepted());
        drop(first);
        assert!(a.admit(ip("192.0.2.1"), 25, now).is_accepted());
    }

    #[test]
    fn violations_lead_to_a_ban_that_expires() {
        let now = Instant::now();
        let mut c = AdmissionConfig::new(2);
        c.penalty = Some(PenaltyConfig::default());
        let mut a = Admission::new(c, now);
        let peer = ip("2001:db8::1");
        let mut banned = false;
        for _ in 0..10 {
            banned |= !a.record_violation(peer, now).is_allowed();
        }
        assert!(banned);
        let deferred = a.admit(peer, 587, now);
        let Admit::Defer { retry_after, reason: DeferReason::Banned } = deferred else {
            panic!("{deferred:?}")
        };
        assert!(deferred.pop3_reply().unwrap().to_string().starts_with("-ERR [SYS/TEMP]"));
        // The same /64 is the same client.
        assert!(!a.admit(ip("2001:db8::2"), 587, now).is_accepted());
        assert!(a.admit(peer, 587, now + retry_after).is_accepted());
    }

    #[test]
    fn listeners_have_their_own_connection_rates() {
        let now = Instant::now();
        let mut c = AdmissionConfig::new(4);
        c.connection_rate = Some(Gcra::new(1, Duration::from_secs(60), 1).unwrap());
        c.port_connection_rates =
            vec![(587, Some(Gcra::new(3, Duration::from_secs(60), 3).unwrap())), (995, None)];
        let mut a = Admission::new(c, now);
        let peer = ip("192.0.2.9");
        // Port 25 (and 465: no override) share the common quota of 1.
        assert!(a.admit(peer, 25, now).is_accepted());
        assert!(matches!(a.admit(peer, 465, now), Admit::Defer { reason: DeferReason::ConnectionRate, .. }));
        // 587 counts on its own: 3 more.
        for _ in 0..3 {
            assert!(a.admit(peer, 587, now).is_accepted());
        }
        let over = a.admit(peer, 587, now);
        assert_eq!(over.smtp_reply().map(|r| r.0), Some(421));
        // 995 has no rate limit at all.
        for _ in 0..50 {
            assert!(a.admit(peer, 995, now).is_accepted());
        }
        // A deny entry or a ban still applies on every port.
        let mut c = AdmissionConfig::new(5);
        c.lists = Some(CidrList::parse("deny 192.0.2.0/24").unwrap());
        c.port_connection_rates = vec![(995, None)];
        let mut a = Admission::new(c, now);
        assert!(matches!(a.admit(peer, 995, now), Admit::Refuse { reason: RefuseReason::Denied }));
    }

    #[test]
    fn recipient_and_message_rates_per_client_or_user() {
        let now = Instant::now();
        let mut c = AdmissionConfig::new(6);
        c.lists = Some(CidrList::parse("allow 198.51.100.0/24").unwrap());
        c.recipient_rate = Some(Gcra::new(3, Duration::from_secs(60), 3).unwrap());
        c.message_rate = Some(Gcra::new(1, Duration::from_secs(60), 1).unwrap());
        let mut a = Admission::new(c, now);
        let peer = ip("2001:db8:1:2::1");
        for _ in 0..3 {
            assert!(a.check_rcpt(peer, None, now).is_allowed());
        }
        // The same /64 is the same client.
        let denied = a.check_rcpt(ip("2001:db8:1:2::99"), None, now);
        assert_eq!(denied.retry_after(), Some(Duration::from_secs(20)));
        // Users are counted apart from their address, and from each other.
        assert!(a.check_rcpt(peer, Some("alice"), now).is_allowed());
        assert!(a.check_message(peer, Some("alice"), now).is_allowed());
        assert!(!a.check_message(ip("192.0.2.1"), Some("alice"), now).is_allowed());
        assert!(a.check_message(peer, Some("bob"), now).is_allowed());
        assert!(a.check_message(peer, None, now).is_allowed());
        assert!(!a.check_message(peer, None, now).is_allowed());
        assert!(a.check_message(peer, None, now + Duration::from_secs(60)).is_allowed());
        // Allow-listed clients are never limited.
        for _ in 0..20 {
            assert!(a.check_rcpt(ip("198.51.100.5"), None, now).is_allowed());
            assert!(a.check_message(ip("198.51.100.5"), Some("alice"), now).is_allowed());
        }
        // Nothing configured: everything passes.
        let mut open = Admission::new(AdmissionConfig::new(7), now);
        for _ in 0..20 {
            assert!(open.check_rcpt(peer, None, now).is_allowed());
            assert!(open.check_message(peer, None, now).is_allowed());
        }
    }

    #[cfg(all(feature = "smtp", feature = "pop3"))]
    #[test]
    fn replies_carry_the_host_name_and_protocol_types() {
        let now = Instant::now();
        let mut c = AdmissionConfig::new(8);
        c.connection_rate = Some(Gcra::new(1, Duration::from_secs(90), 1).unwrap());
        c.lists = Some(CidrList::parse("deny 192.0.2.0/24").unwrap());
        let mut a = Admission::new(c, now);
        let peer = ip("203.0.113.1");
        let ok = a.admit(peer, 25, now);
        assert!(ok.smtp_greeting("mx.example.org").is_none() && ok.pop3_reply().is_none());
        let deferred = a.admit(peer, 25, now + Duration::from_millis(500));
        assert_eq!(
            deferred.smtp_greeting("mx.example.org").unwrap().to_string(),
            "421 4.7.0 mx.example.org Error: too many connections, try again in 90 s\r\n"
        );
        assert_eq!(deferred.pop3_reply().unwrap().to_string(), "-ERR [SYS/TEMP] try again in 90 s\r\n");
        let refused = a.admit(ip("192.0.2.7"), 110, now);
        assert_eq!(refused.pop3_reply().unwrap().to_string(), "-ERR [AUTH] access denied\r\n");
        assert_eq!(rate_limited_reply(Duration::from_secs(3)).code(), 450);
    }

    #[test]
    fn bad_reputation_is_refused() {
        let now = Instant::now();
        let mut c = AdmissionConfig::new(3);
        c.reputation = Some(Reputation::new(reputation::ReputationConfig::default()).unwrap());
        let mut a = Admission::new(c, now);
        let peer = ip("198.51.100.1");
        for _ in 0..5 {
            let _ = a.record(peer, reputation::Event::SpamVerdict, now);
        }
        let refused = a.admit(peer, 25, now);
        assert!(matches!(refused, Admit::Refuse { reason: RefuseReason::Reputation }));
        assert_eq!(refused.smtp_reply().unwrap().0, 554);
    }
}
