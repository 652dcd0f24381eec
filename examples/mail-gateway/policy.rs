//! Who may send mail to whom: the gateway's recipient policy.
//!
//! postern supplies the mechanism (an [`Event::Rcpt`](postern::smtp::Event::Rcpt)
//! waiting for a decision); this module is the policy. In this version every local part
//! of an accepted domain exists; later versions look users up here.

use postern::smtp::{Address, EnhancedStatus, Reply};

use crate::maildir;

/// The recipient policy: the domains this gateway receives mail for.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    /// Lower-case domain names, without a trailing dot.
    domains: Vec<String>,
}

impl Policy {
    /// A policy accepting mail for `domains` (lower-case).
    pub(crate) fn new(domains: Vec<String>) -> Self {
        Self { domains }
    }

    /// The accepted domains.
    pub(crate) fn domains(&self) -> &[String] {
        &self.domains
    }

    /// `true` if `domain` is one of ours (case-insensitive, trailing dot ignored).
    /// Address literals such as `[192.0.2.1]` never are.
    pub(crate) fn is_local_domain(&self, domain: &str) -> bool {
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// Decides on a recipient: `Ok(mailbox)` names the Maildir to deliver to, `Err` is
    /// the reply refusing it.
    ///
    /// - `<Postmaster>` and `postmaster@<ours>` are always accepted (RFC 5321 §4.5.1);
    /// - other domains are relaying, which this gateway never does: `554 5.7.1`;
    /// - a local part that cannot be a directory name safely: `550 5.1.1`.
    pub(crate) fn recipient(&self, to: &Address) -> Result<String, Reply> {
        if to.domain().is_empty() && to.is_postmaster() {
            return Ok("postmaster".into());
        }
        if !self.is_local_domain(to.domain()) {
            return Err(Reply::new(
                554,
                EnhancedStatus::new(5, 7, 1),
                format!("<{}>: Relay access denied", printable(&to.to_string())),
            ));
        }
        if to.is_postmaster() {
            return Ok("postmaster".into());
        }
        maildir::mailbox_name(to.local_part()).map_err(|why| {
            Reply::new(
                550,
                EnhancedStatus::new(5, 1, 1),
                format!("<{}>: Recipient address rejected: {why}", printable(&to.to_string())),
            )
        })
    }
}

/// The address for a reply text: non-printable characters become `?` (the reply writer
/// already neutralises controls; this keeps the echo readable too).
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}
