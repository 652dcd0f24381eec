//! Rate limiting with time passed in and memory bounded by a hard cap.
//!
//! Everything here is a pure function of a small state and `now`: the application owns the
//! clock and passes `now: Instant` to every call, so tests run on a virtual clock and the
//! same inputs always give the same decisions.
//!
//! | Piece | What it does |
//! |---|---|
//! | [`Gcra`] | generic cell rate algorithm (a token bucket stored as one timestamp): rate + burst |
//! | [`SlidingWindow`] | two-bucket sliding-window counter (the "sliding window QoS") |
//! | [`FixedWindow`] | Postfix anvil semantics: a window that starts at the client's first event |
//! | [`KeyedLimiter`] | one of the above per [`ClientKey`], in a table with a hard cap on keys; [`KeyedLimiter::check_batch`] for the keys of one event-loop wake-up |
//! | [`Concurrency`], [`KeyedConcurrency`] | concurrent-use limits whose permits release on drop |
//! | [`PenaltyBox`] | escalating bans (1 min, 10 min, 1 h, 1 day) after repeated violations, with decay |
//! | [`Allowlist`] | networks and keys that bypass the limits |
//!
//! Times inside the states are [`Nanos`] since an [`Epoch`] that the table (or the
//! [`Limiter`]) owns, which keeps a GCRA record at 16 bytes including its key fingerprint.
//!
//! ```
//! use std::net::IpAddr;
//! use std::time::{Duration, Instant};
//! use postern::limit::{ClientKey, Decision, Gcra, KeyedLimiter};
//!
//! let start = Instant::now();
//! // 10 connections per minute per client, bursts of 3; at most 100 000 clients remembered.
//! let gcra = Gcra::new(10, Duration::from_secs(60), 3).unwrap();
//! let mut limiter = KeyedLimiter::new(gcra, 100_000, 0x5eed, start);
//! let peer: IpAddr = "192.0.2.7".parse().unwrap();
//! for _ in 0..3 {
//!     assert_eq!(limiter.check_ip(peer, start), Decision::Allow);
//! }
//! // The fourth connection in the same instant waits for one emission interval (6 s).
//! assert_eq!(
//!     limiter.check_ip(peer, start),
//!     Decision::Deny { retry_after: Duration::from_secs(6) }
//! );
//! assert_eq!(limiter.check_ip(peer, start + Duration::from_secs(6)), Decision::Allow);
//! // Other clients are not affected, and the table never holds more than its cap.
//! assert_eq!(limiter.check(ClientKey::user("alice"), start), Decision::Allow);
//! assert!(limiter.len() <= limiter.capacity());
//! ```
//!
//! Distributed mode: [`DistributedGcra`] keeps a GCRA's state in Redis, shared by a cluster,
//! without I/O here (the library builds the command and interprets the reply).

use std::time::{Duration, Instant};

mod algo;
mod concurrency;
mod distributed;
mod key;
mod penalty;
mod table;

pub use algo::{
    Algorithm, FixedWindow, FixedWindowState, Gcra, GcraState, Limiter, SlidingWindow, WindowState,
};
pub use concurrency::{Concurrency, KeyedConcurrency, KeyedPermit, Permit};
pub use distributed::{
    DistributedError, DistributedGcra, MAX_ARRAY_LEN, MAX_BULK_LEN, MAX_DEPTH, MAX_LINE_LEN, RedisCommand,
    RedisReply, encode_command,
};
pub use key::{Allowlist, ClientKey, KeyConfig};
pub use penalty::{
    PenaltyBox, PenaltyConfig, PenaltyState, Scope, SmtpReply, reply_congestion, reply_rate_limited,
    reply_too_many_connections, smtp_reply,
};
pub use table::{KeyedLimiter, TableStats};

/// A point in time as nanoseconds since an [`Epoch`]; `u64` covers 584 years.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nanos(pub u64);

impl Nanos {
    /// The time `d` after `self`, saturating.
    #[must_use]
    pub fn after(self, d: Duration) -> Nanos {
        Nanos(self.0.saturating_add(duration_nanos(d)))
    }
}

/// `d` in nanoseconds, saturating at `u64::MAX`.
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The origin of the [`Nanos`] stored in limiter states.
///
/// Pass the instant the application started (or any instant not later than every `now` you
/// will pass): instants before the epoch count as the epoch itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch {
    origin: Instant,
}

impl Epoch {
    /// An epoch at `origin`.
    #[must_use]
    pub fn new(origin: Instant) -> Self {
        Epoch { origin }
    }

    /// The instant this epoch starts at.
    #[must_use]
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// `now` as nanoseconds since the epoch (0 for instants before it).
    #[must_use]
    pub fn nanos(&self, now: Instant) -> Nanos {
        Nanos(duration_nanos(now.saturating_duration_since(self.origin)))
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Go ahead; the state has recorded the use.
    Allow,
    /// Not now; no use is recorded. `retry_after` is the exact wait until the same check
    /// would be allowed if nothing else happens meanwhile; [`Duration::MAX`] when it never
    /// would (a weight larger than the limit's capacity).
    Deny {
        /// How long to wait.
        retry_after: Duration,
    },
}

impl Decision {
    /// Whether this is [`Decision::Allow`].
    #[must_use]
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }

    /// The wait of a denial, `None` for [`Decision::Allow`].
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Decision::Allow => None,
            Decision::Deny { retry_after } => Some(*retry_after),
        }
    }

    /// The wait rounded up to whole seconds (for a reply text or a `Retry-After`), 0 when allowed.
    #[must_use]
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Decision::Allow => 0,
            Decision::Deny { retry_after } => {
                retry_after.as_secs().saturating_add(u64::from(retry_after.subsec_nanos() > 0))
            }
        }
    }

    pub(crate) fn deny_nanos(n: u64) -> Decision {
        Decision::Deny { retry_after: Duration::from_nanos(n) }
    }

    pub(crate) const NEVER: Decision = Decision::Deny { retry_after: Duration::MAX };
}

/// Misuse of the limiter API: an invalid quota or configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// A quota with a zero count, burst or period, or a period too long to represent.
    #[error("invalid quota: {0}")]
    InvalidQuota(&'static str),
    /// A prefix length longer than the address (32 for IPv4, 128 for IPv6).
    #[error("invalid prefix length /{0}")]
    InvalidPrefix(u8),
    /// A penalty configuration without any ban length, or with a zero decay.
    #[error("invalid penalty configuration: {0}")]
    InvalidPenalty(&'static str),
}
