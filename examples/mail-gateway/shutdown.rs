//! Clean shutdown: Ctrl-C stops new connections; running sessions get a grace period.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Shared between the Ctrl-C handler, the accept loop and every connection thread.
#[derive(Debug)]
pub(crate) struct Shutdown {
    requested: AtomicBool,
    grace: Duration,
    deadline: OnceLock<Instant>,
}

impl Shutdown {
    /// Sessions may run on for `grace` after the request.
    pub(crate) fn new(grace: Duration) -> Self {
        Self { requested: AtomicBool::new(false), grace, deadline: OnceLock::new() }
    }

    /// Asks for shutdown at `now`. Returns `false` if it had been asked for already.
    pub(crate) fn request(&self, now: Instant) -> bool {
        let _ = self.deadline.set(now + self.grace);
        !self.requested.swap(true, Ordering::SeqCst)
    }

    /// The grace period.
    pub(crate) fn grace(&self) -> Duration {
        self.grace
    }

    /// `true` once shutdown was asked for: accept no more connections.
    pub(crate) fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// `true` if a session must be closed now: at once when it is between
    /// transactions, at the end of the grace period when a message is on its way.
    pub(crate) fn must_close(&self, in_transaction: bool, now: Instant) -> bool {
        self.is_requested() && (!in_transaction || self.deadline.get().is_none_or(|d| now >= *d))
    }
}
