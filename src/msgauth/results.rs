//! The combined verdict for one message and its Authentication-Results header (RFC 8601).

use std::fmt::Write as _;
use std::net::IpAddr;

use base64::Engine as _;
use mail_auth::{DkimOutput, SpfOutput};

/// A method's result, with the RFC 8601 / RFC 8616 names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthResult {
    /// `pass`
    Pass,
    /// `fail`
    Fail,
    /// `softfail` (SPF only)
    SoftFail,
    /// `neutral`
    Neutral,
    /// `none`: nothing to evaluate (no policy, no signature).
    None,
    /// `temperror`: a DNS failure; the same message may pass later.
    TempError,
    /// `permerror`: a broken policy or signature.
    PermError,
}

impl AuthResult {
    /// The RFC 8601 keyword.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AuthResult::Pass => "pass",
            AuthResult::Fail => "fail",
            AuthResult::SoftFail => "softfail",
            AuthResult::Neutral => "neutral",
            AuthResult::None => "none",
            AuthResult::TempError => "temperror",
            AuthResult::PermError => "permerror",
        }
    }

    pub(crate) fn from_spf(r: mail_auth::SpfResult) -> Self {
        use mail_auth::SpfResult as S;
        match r {
            S::Pass => AuthResult::Pass,
            S::Fail => AuthResult::Fail,
            S::SoftFail => AuthResult::SoftFail,
            S::Neutral => AuthResult::Neutral,
            S::TempError => AuthResult::TempError,
            S::PermError => AuthResult::PermError,
            S::None => AuthResult::None,
        }
    }

    pub(crate) fn from_dkim(r: &mail_auth::DkimResult) -> Self {
        use mail_auth::DkimResult as D;
        match r {
            D::Pass => AuthResult::Pass,
            D::Neutral(_) => AuthResult::Neutral,
            D::Fail(_) => AuthResult::Fail,
            D::PermError(_) => AuthResult::PermError,
            D::TempError(_) => AuthResult::TempError,
            D::None => AuthResult::None,
        }
    }
}

impl std::fmt::Display for AuthResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An SPF result for one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfVerdict {
    /// The result.
    pub result: AuthResult,
    /// The identity checked: the HELO name, or the MAIL FROM address (`postmaster@<helo>`
    /// for the null sender).
    pub identity: String,
    /// The domain whose policy was evaluated.
    pub domain: String,
    /// The policy's explanation (`exp=`) on fail, if any.
    pub explanation: Option<String>,
}

impl SpfVerdict {
    pub(crate) fn from_output(out: &SpfOutput, identity: String) -> Self {
        SpfVerdict {
            result: AuthResult::from_spf(out.result()),
            identity,
            domain: out.domain().to_ascii_lowercase(),
            explanation: out.explanation().map(str::to_owned),
        }
    }
}

/// The result for one DKIM signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimVerdict {
    /// The result. A signature whose `x=` lies at or before the check's `now` is `neutral`
    /// with reason "signature expired" (as mail-auth reports expiry).
    pub result: AuthResult,
    /// Why, when not `pass`.
    pub reason: Option<String>,
    /// `d=`, lowercase (empty when the signature could not be parsed).
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// `i=` (the agent or user identifier), possibly empty.
    pub identity: String,
    /// `b=`: the signature bytes.
    pub b: Vec<u8>,
    /// `h=`: the signed header field names in order, as written.
    pub signed_headers: Vec<String>,
    /// `l=`, if the signature covers only a prefix of the body.
    pub body_length: Option<u64>,
    /// `t=` (0 when absent).
    pub timestamp: u64,
    /// `x=` (0 when absent).
    pub expiration: u64,
    /// `x=` is set and at or before the check's `now`.
    pub expired: bool,
}

impl DkimVerdict {
    pub(crate) fn from_output(out: &DkimOutput<'_>, now_secs: u64) -> Self {
        let result = AuthResult::from_dkim(out.result());
        let reason = match out.result() {
            mail_auth::DkimResult::Pass | mail_auth::DkimResult::None => None,
            mail_auth::DkimResult::Neutral(e)
            | mail_auth::DkimResult::Fail(e)
            | mail_auth::DkimResult::PermError(e)
            | mail_auth::DkimResult::TempError(e) => Some(e.to_string()),
        };
        match out.signature() {
            Some(sig) => DkimVerdict {
                result,
                reason,
                domain: sig.d.to_ascii_lowercase(),
                selector: sig.s.clone(),
                identity: sig.i.clone(),
                b: sig.b.clone(),
                signed_headers: sig.h.clone(),
                body_length: (sig.l != 0).then_some(sig.l),
                timestamp: sig.t,
                expiration: sig.x,
                expired: sig.x != 0 && sig.x <= now_secs,
            },
            None => DkimVerdict {
                result,
                reason,
                domain: String::new(),
                selector: String::new(),
                identity: String::new(),
                b: Vec::new(),
                signed_headers: Vec::new(),
                body_length: None,
                timestamp: 0,
                expiration: 0,
                expired: false,
            },
        }
    }
}

/// A DMARC policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Policy {
    /// `p=none` (or no policy).
    None,
    /// `p=quarantine`.
    Quarantine,
    /// `p=reject`.
    Reject,
}

impl Policy {
    pub(crate) fn from_mail_auth(p: mail_auth::dmarc::Policy) -> Self {
        match p {
            mail_auth::dmarc::Policy::Quarantine => Policy::Quarantine,
            mail_auth::dmarc::Policy::Reject => Policy::Reject,
            mail_auth::dmarc::Policy::None | mail_auth::dmarc::Policy::Unspecified => Policy::None,
        }
    }

    /// The tag value (`none`, `quarantine`, `reject`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::Quarantine => "quarantine",
            Policy::Reject => "reject",
        }
    }
}

/// What the receiver should do with the message under DMARC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Disposition {
    /// Deliver normally.
    Accept,
    /// Deliver to a spam/junk folder.
    Quarantine,
    /// Refuse (SMTP 550 5.7.1).
    Reject,
}

impl Disposition {
    /// The RFC 7489 `dis=` keyword.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Accept => "none",
            Disposition::Quarantine => "quarantine",
            Disposition::Reject => "reject",
        }
    }
}

/// The DMARC evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcVerdict {
    /// `pass` when SPF or DKIM passed aligned with the From domain; `fail` when a policy
    /// exists and neither did; `none` without a policy.
    pub result: AuthResult,
    /// The RFC 5322.From domain.
    pub from_domain: String,
    /// The domain whose `_dmarc` record applied (the From domain, or its organizational
    /// domain whose `sp=` then applies).
    pub policy_domain: Option<String>,
    /// The policy that applies to this From domain (`p=`, or `sp=`/`np=` for subdomains).
    pub policy: Policy,
    /// SPF passed for an aligned MAIL FROM domain.
    pub spf_aligned: bool,
    /// A DKIM signature passed for an aligned `d=`.
    pub dkim_aligned: bool,
    /// The record's `pct=` (100 when absent).
    pub pct: u8,
    /// The action: the policy on failure, sampled by `pct=` with the caller's roll.
    pub disposition: Disposition,
}

impl DmarcVerdict {
    pub(crate) fn none(from_domain: String) -> Self {
        DmarcVerdict {
            result: AuthResult::None,
            from_domain,
            policy_domain: None,
            policy: Policy::None,
            spf_aligned: false,
            dkim_aligned: false,
            pct: 100,
            disposition: Disposition::Accept,
        }
    }
}

/// The ARC chain validation (RFC 8617).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArcVerdict {
    /// `none` without ARC sets, else `pass` or `fail` (mail-auth reports some broken
    /// chains as `neutral`).
    pub result: AuthResult,
    /// Number of ARC sets validated.
    pub chain_length: usize,
}

/// The combined verdict for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The `authserv-id` used in the header.
    pub authserv_id: String,
    /// The SMTP client's address.
    pub client_ip: IpAddr,
    /// SPF for the HELO identity.
    pub spf_helo: SpfVerdict,
    /// SPF for the MAIL FROM identity (the one DMARC uses).
    pub spf_mail_from: SpfVerdict,
    /// One entry per DKIM-Signature, in header order.
    pub dkim: Vec<DkimVerdict>,
    /// ARC.
    pub arc: ArcVerdict,
    /// DMARC.
    pub dmarc: DmarcVerdict,
    /// `false` if the message had no parsable header (DKIM, ARC and DMARC then `none`).
    pub message_parsed: bool,
}

/// Characters allowed unquoted in a header value we write: RFC 5322 atext plus `.@`.
fn safe_token(s: &str) -> String {
    let cleaned: String =
        s.chars().filter(|c| c.is_ascii_graphic() && !"()<>[]:;\\\",".contains(*c)).take(255).collect();
    if cleaned.is_empty() { "unknown".to_owned() } else { cleaned }
}

impl Verdict {
    /// The Authentication-Results header value (RFC 8601), folded with `CRLF TAB` between
    /// results: prepend it as `Authentication-Results: <value>\r\n`.
    ///
    /// Values taken from the message (domains, selectors) are reduced to safe characters.
    #[must_use]
    pub fn authentication_results(&self) -> String {
        let mut parts = vec![safe_token(&self.authserv_id)];
        if self.dkim.is_empty() {
            parts.push("dkim=none".to_owned());
        }
        for d in &self.dkim {
            let mut s = format!("dkim={}", d.result);
            if let Some(reason) = &d.reason {
                let reason: String = reason
                    .chars()
                    .filter(|c| c.is_ascii_graphic() || *c == ' ')
                    .filter(|c| !"()\\".contains(*c))
                    .take(80)
                    .collect();
                let _ = write!(s, " ({reason})");
            }
            if !d.domain.is_empty() {
                let _ = write!(s, " header.d={} header.s={}", safe_token(&d.domain), safe_token(&d.selector));
                // RFC 6008: the first characters of the base64 `b=` value (6 bytes: 8 chars).
                let b = base64::engine::general_purpose::STANDARD.encode(d.b.get(..6).unwrap_or(&d.b));
                if !b.is_empty() {
                    let _ = write!(s, " header.b={b}");
                }
            }
            parts.push(s);
        }
        let mut spf = format!("spf={}", self.spf_mail_from.result);
        let _ = write!(spf, " smtp.mailfrom={}", safe_token(&self.spf_mail_from.identity));
        parts.push(spf);
        parts.push(format!("spf={} smtp.helo={}", self.spf_helo.result, safe_token(&self.spf_helo.identity)));
        let mut dmarc = format!("dmarc={}", self.dmarc.result);
        if self.dmarc.policy_domain.is_some() {
            let _ =
                write!(dmarc, " (p={} dis={})", self.dmarc.policy.as_str(), self.dmarc.disposition.as_str());
        }
        if !self.dmarc.from_domain.is_empty() {
            let _ = write!(dmarc, " header.from={}", safe_token(&self.dmarc.from_domain));
        }
        parts.push(dmarc);
        parts.push(format!("arc={}", self.arc.result));
        parts.join(";\r\n\t")
    }

    /// `true` if DMARC says reject.
    #[must_use]
    pub fn is_reject(&self) -> bool {
        self.dmarc.disposition == Disposition::Reject
    }
}
