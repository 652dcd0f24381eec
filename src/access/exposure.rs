//! Port-exposure policy: which mail listeners a deployment may expose, an audit of the actual
//! listeners against it, and an nftables ruleset that opens exactly the allowed ports.
//!
//! The default policy ([`ExposurePolicy::default`]) allows:
//!
//! | port | protocol   | TLS                | AUTH                |
//! |------|------------|--------------------|---------------------|
//! | 25   | SMTP (MX)  | STARTTLS offered   | not offered         |
//! | 465  | submission | implicit           | required, after TLS |
//! | 587  | submission | STARTTLS required  | required, after TLS |
//! | 995  | POP3       | implicit           | required, after TLS |
//! | 110  | POP3       | STLS required      | required, after TLS |
//!
//! IMAP (143, 993) and everything else is not in the default policy.
//!
//! ```
//! use postern::access::exposure::{audit, AuthMode, ExposurePolicy, Listener, Protocol, Severity, TlsMode};
//!
//! let policy = ExposurePolicy::default();
//! let listeners = [
//!     Listener::new(25, Protocol::Smtp, TlsMode::StartTlsOffered, AuthMode::None, "0.0.0.0".parse()?),
//!     Listener::new(110, Protocol::Pop3, TlsMode::StartTlsOffered, AuthMode::PlaintextAllowed, "::".parse()?),
//! ];
//! let findings = audit(&policy, &listeners);
//! assert!(findings.iter().all(|f| f.listener.port == 110));
//! assert_eq!(findings.iter().map(|f| f.severity).max(), Some(Severity::Critical));
//! let ruleset = policy.nftables();
//! assert!(ruleset.contains("tcp dport { 25, 110, 465, 587, 995 } accept"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt::{self, Write as _};
use std::net::IpAddr;

/// The protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Protocol {
    /// SMTP between servers (MX, port 25).
    Smtp,
    /// Message submission by clients (587, or 465 with implicit TLS).
    Submission,
    /// POP3 (110, or 995 with implicit TLS).
    Pop3,
    /// IMAP (143, or 993 with implicit TLS).
    Imap,
}

/// How a listener uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TlsMode {
    /// No TLS at all.
    None,
    /// STARTTLS/STLS offered, cleartext sessions allowed.
    StartTlsOffered,
    /// STARTTLS/STLS offered and required before anything else (mail, AUTH, USER).
    StartTlsRequired,
    /// TLS from the first byte (465, 993, 995).
    Implicit,
}

/// How a listener handles authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AuthMode {
    /// No authentication offered.
    None,
    /// Authentication accepted over a cleartext connection.
    PlaintextAllowed,
    /// Authentication accepted only once TLS is up.
    AfterTlsOnly,
}

/// What the policy requires of a port's TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsRequirement {
    /// STARTTLS offered; cleartext allowed (port 25: senders without TLS must still deliver).
    Offered,
    /// STARTTLS required before anything else.
    Required,
    /// Implicit TLS.
    Implicit,
}

/// What the policy requires of a port's authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthRequirement {
    /// Authentication should not be offered (the MX port).
    NotOffered,
    /// Authentication must be offered, after TLS only.
    Required,
}

/// Who may reach a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reach {
    /// The Internet: the nftables ruleset opens the port.
    Public,
    /// The host itself only (a content filter's re-injection port, say): bind to loopback.
    Localhost,
}

/// One port a deployment may expose, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRule {
    /// The TCP port.
    pub port: u16,
    /// The protocol expected on it.
    pub protocol: Protocol,
    /// The TLS it must use.
    pub tls: TlsRequirement,
    /// The authentication it must use.
    pub auth: AuthRequirement,
    /// Who may reach it.
    pub reach: Reach,
}

/// The listeners a deployment may expose.
///
/// ```
/// use postern::access::exposure::{AuthRequirement, ExposurePolicy, PortRule, Protocol, Reach, TlsRequirement};
///
/// let mut policy = ExposurePolicy::default();
/// policy.rules.push(PortRule {
///     port: 10025,
///     protocol: Protocol::Smtp,
///     tls: TlsRequirement::Offered,
///     auth: AuthRequirement::NotOffered,
///     reach: Reach::Localhost,
/// });
/// assert!(policy.rule(10025).is_some());
/// assert_eq!(policy.public_ports(), vec![25, 110, 465, 587, 995]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposurePolicy {
    /// The allowed ports. A port appears at most once; the first rule for a port counts.
    pub rules: Vec<PortRule>,
}

impl Default for ExposurePolicy {
    fn default() -> Self {
        use AuthRequirement::{NotOffered, Required};
        let public = |port, protocol, tls, auth| PortRule { port, protocol, tls, auth, reach: Reach::Public };
        ExposurePolicy {
            rules: vec![
                public(25, Protocol::Smtp, TlsRequirement::Offered, NotOffered),
                public(465, Protocol::Submission, TlsRequirement::Implicit, Required),
                public(587, Protocol::Submission, TlsRequirement::Required, Required),
                public(995, Protocol::Pop3, TlsRequirement::Implicit, Required),
                public(110, Protocol::Pop3, TlsRequirement::Required, Required),
            ],
        }
    }
}

impl ExposurePolicy {
    /// A policy that allows nothing.
    ///
    /// ```
    /// use postern::access::exposure::ExposurePolicy;
    /// assert!(ExposurePolicy::empty().public_ports().is_empty());
    /// ```
    #[must_use]
    pub fn empty() -> Self {
        ExposurePolicy { rules: Vec::new() }
    }

    /// The rule for `port`, if the policy has one.
    ///
    /// ```
    /// use postern::access::exposure::{ExposurePolicy, TlsRequirement};
    /// assert_eq!(ExposurePolicy::default().rule(587).unwrap().tls, TlsRequirement::Required);
    /// assert!(ExposurePolicy::default().rule(143).is_none());
    /// ```
    #[must_use]
    pub fn rule(&self, port: u16) -> Option<&PortRule> {
        self.rules.iter().find(|r| r.port == port)
    }

    /// The public ports, sorted and without duplicates.
    ///
    /// ```
    /// use postern::access::exposure::ExposurePolicy;
    /// assert_eq!(ExposurePolicy::default().public_ports(), vec![25, 110, 465, 587, 995]);
    /// ```
    #[must_use]
    pub fn public_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .rules
            .iter()
            .filter(|r| r.reach == Reach::Public && self.rule(r.port) == Some(r))
            .map(|r| r.port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// An nftables ruleset (`nft -f`) for the host: table `inet filter`, chain `input` with
    /// policy drop; established and related traffic, loopback, and the ICMP/ICMPv6 messages
    /// IPv6 and path-MTU discovery need are accepted; exactly the public TCP ports are opened.
    /// The ruleset replaces any existing `inet filter` table.
    ///
    /// ```
    /// use postern::access::exposure::ExposurePolicy;
    /// let text = ExposurePolicy::default().nftables();
    /// assert!(text.contains("type filter hook input priority filter; policy drop;"));
    /// assert!(text.contains("iif \"lo\" accept"));
    /// assert!(text.contains("tcp dport { 25, 110, 465, 587, 995 } accept"));
    /// ```
    #[must_use]
    pub fn nftables(&self) -> String {
        let mut out = String::from(
            "#!/usr/sbin/nft -f\n\
             # Generated by postern: the mail ports this host may expose, and nothing else.\n\
             table inet filter\n\
             delete table inet filter\n\
             table inet filter {\n\
             \tchain input {\n\
             \t\ttype filter hook input priority filter; policy drop;\n\
             \t\tct state established,related accept\n\
             \t\tct state invalid drop\n\
             \t\tiif \"lo\" accept\n\
             \t\tmeta l4proto icmp icmp type { destination-unreachable, time-exceeded, parameter-problem, echo-request } accept\n\
             \t\tmeta l4proto ipv6-icmp icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, echo-request, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept\n",
        );
        let ports = self.public_ports();
        if !ports.is_empty() {
            let list: Vec<String> = ports.iter().map(u16::to_string).collect();
            let _ = writeln!(out, "\t\ttcp dport {{ {} }} accept", list.join(", "));
        }
        out.push_str("\t}\n}\n");
        out
    }
}

/// A listener as actually configured.
///
/// ```
/// use postern::access::exposure::{AuthMode, Listener, Protocol, TlsMode};
/// let l = Listener::new(587, Protocol::Submission, TlsMode::StartTlsRequired, AuthMode::AfterTlsOnly, "::".parse().unwrap());
/// assert!(l.bind.is_unspecified());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Listener {
    /// The TCP port.
    pub port: u16,
    /// The protocol it speaks.
    pub protocol: Protocol,
    /// Its TLS mode.
    pub tls: TlsMode,
    /// Its authentication mode.
    pub auth: AuthMode,
    /// The address it binds to (`0.0.0.0` or `::` for every address).
    pub bind: IpAddr,
}

impl Listener {
    /// A listener description.
    ///
    /// ```
    /// use postern::access::exposure::{AuthMode, Listener, Protocol, TlsMode};
    /// let l = Listener::new(25, Protocol::Smtp, TlsMode::StartTlsOffered, AuthMode::None, "0.0.0.0".parse().unwrap());
    /// assert_eq!(l.port, 25);
    /// ```
    #[must_use]
    pub fn new(port: u16, protocol: Protocol, tls: TlsMode, auth: AuthMode, bind: IpAddr) -> Self {
        Listener { port, protocol, tls, auth, bind }
    }
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// A deviation with little risk.
    Low,
    /// A weakness.
    Medium,
    /// An exposure an attacker can use.
    High,
    /// Credentials or mail can leak in cleartext.
    Critical,
}

/// What is wrong with a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FindingKind {
    /// Authentication can happen before TLS: passwords in cleartext.
    PlaintextAuth,
    /// The port is not in the policy.
    PortNotInPolicy,
    /// The listener speaks another protocol than the policy expects on its port.
    ProtocolMismatch {
        /// The protocol the policy expects.
        expected: Protocol,
    },
    /// No TLS where the policy wants it.
    TlsMissing,
    /// STARTTLS offered but not required where the policy requires it.
    TlsOptional,
    /// A TLS mode other than the policy's (implicit TLS on a STARTTLS port or the reverse).
    TlsModeMismatch {
        /// What the policy requires.
        expected: TlsRequirement,
    },
    /// A submission or retrieval port that does not require authentication.
    AuthNotRequired,
    /// Authentication offered on the MX port.
    AuthOnRelayPort,
    /// A port meant for localhost bound to every address.
    WildcardBindOnLocalPort,
    /// A port meant for localhost bound to a non-loopback address.
    PublicBindOnLocalPort,
}

/// One problem [`audit`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Finding {
    /// How serious it is.
    pub severity: Severity,
    /// What it is.
    pub kind: FindingKind,
    /// The listener concerned.
    pub listener: Listener,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.listener;
        write!(f, "{:?}: port {} on {}: ", self.severity, l.port, l.bind)?;
        match self.kind {
            FindingKind::PlaintextAuth => f.write_str("authentication possible before TLS"),
            FindingKind::PortNotInPolicy => f.write_str("port not in the exposure policy"),
            FindingKind::ProtocolMismatch { expected } => {
                write!(f, "speaks {:?}, the policy expects {expected:?}", l.protocol)
            }
            FindingKind::TlsMissing => f.write_str("no TLS"),
            FindingKind::TlsOptional => f.write_str("TLS optional where the policy requires it"),
            FindingKind::TlsModeMismatch { expected } => {
                write!(f, "TLS mode {:?}, the policy requires {expected:?}", l.tls)
            }
            FindingKind::AuthNotRequired => f.write_str("authentication not required"),
            FindingKind::AuthOnRelayPort => f.write_str("authentication offered on the MX port"),
            FindingKind::WildcardBindOnLocalPort => f.write_str("localhost port bound to every address"),
            FindingKind::PublicBindOnLocalPort => {
                f.write_str("localhost port bound to a non-loopback address")
            }
        }
    }
}

/// Checks `listeners` against `policy`; findings come listener by listener, most severe
/// first within a listener.
///
/// ```
/// use postern::access::exposure::{audit, AuthMode, ExposurePolicy, FindingKind, Listener, Protocol, TlsMode};
///
/// let imap = Listener::new(143, Protocol::Imap, TlsMode::StartTlsRequired, AuthMode::AfterTlsOnly, "::".parse().unwrap());
/// let findings = audit(&ExposurePolicy::default(), &[imap]);
/// assert_eq!(findings[0].kind, FindingKind::PortNotInPolicy);
/// ```
#[must_use]
pub fn audit(policy: &ExposurePolicy, listeners: &[Listener]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for listener in listeners {
        let start = findings.len();
        let mut add = |severity, kind| findings.push(Finding { severity, kind, listener: *listener });
        // Cleartext AUTH matters whatever the policy says.
        match (listener.auth, listener.tls) {
            (AuthMode::PlaintextAllowed, TlsMode::None | TlsMode::StartTlsOffered) => {
                add(Severity::Critical, FindingKind::PlaintextAuth);
            }
            // Unreachable in practice (nothing before STARTTLS), but configured wrong.
            (AuthMode::PlaintextAllowed, TlsMode::StartTlsRequired) => {
                add(Severity::Low, FindingKind::PlaintextAuth)
            }
            _ => {}
        }
        let loopback = listener.bind.to_canonical().is_loopback();
        let Some(rule) = policy.rule(listener.port) else {
            add(if loopback { Severity::Info } else { Severity::High }, FindingKind::PortNotInPolicy);
            sort_from(&mut findings, start);
            continue;
        };
        if rule.protocol != listener.protocol {
            add(Severity::High, FindingKind::ProtocolMismatch { expected: rule.protocol });
        }
        match (rule.tls, listener.tls) {
            (_, TlsMode::None) => add(
                if rule.tls == TlsRequirement::Offered { Severity::High } else { Severity::Critical },
                FindingKind::TlsMissing,
            ),
            (TlsRequirement::Required, TlsMode::StartTlsOffered) => {
                add(Severity::High, FindingKind::TlsOptional)
            }
            (TlsRequirement::Offered, TlsMode::StartTlsOffered | TlsMode::StartTlsRequired)
            | (TlsRequirement::Required, TlsMode::StartTlsRequired)
            | (TlsRequirement::Implicit, TlsMode::Implicit) => {}
            (TlsRequirement::Implicit, TlsMode::StartTlsOffered) => {
                add(Severity::High, FindingKind::TlsModeMismatch { expected: rule.tls });
            }
            (expected, _) => add(Severity::Medium, FindingKind::TlsModeMismatch { expected }),
        }
        match (rule.auth, listener.auth) {
            (AuthRequirement::Required, AuthMode::None) => {
                add(Severity::Medium, FindingKind::AuthNotRequired)
            }
            (AuthRequirement::NotOffered, AuthMode::AfterTlsOnly) => {
                add(Severity::Low, FindingKind::AuthOnRelayPort);
            }
            _ => {}
        }
        if rule.reach == Reach::Localhost && !loopback {
            if listener.bind.is_unspecified() {
                add(Severity::High, FindingKind::WildcardBindOnLocalPort);
            } else {
                add(Severity::Medium, FindingKind::PublicBindOnLocalPort);
            }
        }
        sort_from(&mut findings, start);
    }
    findings
}

fn sort_from(findings: &mut [Finding], start: usize) {
    if let Some(tail) = findings.get_mut(start..) {
        tail.sort_by_key(|f| std::cmp::Reverse(f.severity));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FindingKind as K;
    use Severity as S;

    fn l(port: u16, protocol: Protocol, tls: TlsMode, auth: AuthMode, bind: &str) -> Listener {
        Listener::new(port, protocol, tls, auth, bind.parse().unwrap())
    }

    #[test]
    fn audit_findings_per_listener_shape() {
        use AuthMode as A;
        use Protocol as P;
        use TlsMode as T;
        let mut policy = ExposurePolicy::default();
        policy.rules.push(PortRule {
            port: 10025,
            protocol: P::Smtp,
            tls: TlsRequirement::Offered,
            auth: AuthRequirement::NotOffered,
            reach: Reach::Localhost,
        });
        let table: Vec<(Listener, Vec<(S, K)>)> = vec![
            (l(25, P::Smtp, T::StartTlsOffered, A::None, "0.0.0.0"), vec![]),
            (l(25, P::Smtp, T::StartTlsRequired, A::None, "::"), vec![]),
            (l(25, P::Smtp, T::None, A::None, "::"), vec![(S::High, K::TlsMissing)]),
            (l(25, P::Smtp, T::StartTlsOffered, A::AfterTlsOnly, "::"), vec![(S::Low, K::AuthOnRelayPort)]),
            (
                l(25, P::Smtp, T::StartTlsOffered, A::PlaintextAllowed, "::"),
                vec![(S::Critical, K::PlaintextAuth)],
            ),
            (l(465, P::Submission, T::Implicit, A::AfterTlsOnly, "::"), vec![]),
            (l(465, P::Submission, T::Implicit, A::PlaintextAllowed, "::"), vec![]),
            (
                l(465, P::Submission, T::StartTlsOffered, A::AfterTlsOnly, "::"),
                vec![(S::High, K::TlsModeMismatch { expected: TlsRequirement::Implicit })],
            ),
            (l(587, P::Submission, T::StartTlsRequired, A::AfterTlsOnly, "::"), vec![]),
            (
                l(587, P::Submission, T::StartTlsOffered, A::AfterTlsOnly, "::"),
                vec![(S::High, K::TlsOptional)],
            ),
            (
                l(587, P::Submission, T::StartTlsOffered, A::PlaintextAllowed, "::"),
                vec![(S::Critical, K::PlaintextAuth), (S::High, K::TlsOptional)],
            ),
            (
                l(587, P::Submission, T::StartTlsRequired, A::PlaintextAllowed, "::"),
                vec![(S::Low, K::PlaintextAuth)],
            ),
            (
                l(587, P::Submission, T::Implicit, A::None, "::"),
                vec![
                    (S::Medium, K::TlsModeMismatch { expected: TlsRequirement::Required }),
                    (S::Medium, K::AuthNotRequired),
                ],
            ),
            (
                l(587, P::Smtp, T::None, A::None, "::"),
                vec![
                    (S::Critical, K::TlsMissing),
                    (S::High, K::ProtocolMismatch { expected: P::Submission }),
                    (S::Medium, K::AuthNotRequired),
                ],
            ),
            (l(110, P::Pop3, T::StartTlsRequired, A::AfterTlsOnly, "::"), vec![]),
            (
                l(110, P::Pop3, T::StartTlsOffered, A::PlaintextAllowed, "::"),
                vec![(S::Critical, K::PlaintextAuth), (S::High, K::TlsOptional)],
            ),
            (l(995, P::Pop3, T::Implicit, A::AfterTlsOnly, "::"), vec![]),
            (
                l(143, P::Imap, T::StartTlsRequired, A::AfterTlsOnly, "::"),
                vec![(S::High, K::PortNotInPolicy)],
            ),
            (l(993, P::Imap, T::Implicit, A::AfterTlsOnly, "127.0.0.1"), vec![(S::Info, K::PortNotInPolicy)]),
            (
                l(2525, P::Smtp, T::None, A::PlaintextAllowed, "192.0.2.1"),
                vec![(S::Critical, K::PlaintextAuth), (S::High, K::PortNotInPolicy)],
            ),
            (l(10025, P::Smtp, T::StartTlsOffered, A::None, "127.0.0.1"), vec![]),
            (l(10025, P::Smtp, T::StartTlsOffered, A::None, "::1"), vec![]),
            (
                l(10025, P::Smtp, T::StartTlsOffered, A::None, "0.0.0.0"),
                vec![(S::High, K::WildcardBindOnLocalPort)],
            ),
            (
                l(10025, P::Smtp, T::StartTlsOffered, A::None, "192.0.2.1"),
                vec![(S::Medium, K::PublicBindOnLocalPort)],
            ),
        ];
        for (listener, expected) in table {
            let got: Vec<(S, K)> = audit(&policy, &[listener]).iter().map(|f| (f.severity, f.kind)).collect();
            assert_eq!(got, expected, "{listener:?}");
        }
    }

    #[test]
    fn finding_display() {
        let f = audit(
            &ExposurePolicy::default(),
            &[l(110, Protocol::Pop3, TlsMode::StartTlsOffered, AuthMode::PlaintextAllowed, "::")],
        );
        let text: Vec<String> = f.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "Critical: port 110 on ::: authentication possible before TLS",
                "High: port 110 on ::: TLS optional where the policy requires it"
            ]
        );
    }

    const DEFAULT_RULESET: &str = "#!/usr/sbin/nft -f
# Generated by postern: the mail ports this host may expose, and nothing else.
table inet filter
delete table inet filter
table inet filter {
\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t\tct state established,related accept
\t\tct state invalid drop
\t\tiif \"lo\" accept
\t\tmeta l4proto icmp icmp type { destination-unreachable, time-exceeded, parameter-problem, echo-request } accept
\t\tmeta l4proto ipv6-icmp icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, echo-request, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept
\t\ttcp dport { 25, 110, 465, 587, 995 } accept
\t}
}
";

    #[test]
    fn nft_ruleset_text() {
        assert_eq!(ExposurePolicy::default().nftables(), DEFAULT_RULESET);
        let empty = ExposurePolicy::empty().nftables();
        assert!(!empty.contains("dport"));
        // Localhost-only rules and duplicate ports open nothing more.
        let mut policy = ExposurePolicy::default();
        let mut local = *policy.rule(25).unwrap();
        local.port = 10025;
        local.reach = Reach::Localhost;
        policy.rules.push(local);
        let mut dup = *policy.rule(25).unwrap();
        dup.reach = Reach::Localhost;
        policy.rules.push(dup);
        assert_eq!(policy.nftables(), DEFAULT_RULESET);
        // A policy where 25 is localhost-only first does not open 25.
        let mut only_local =
            ExposurePolicy { rules: vec![dup, *ExposurePolicy::default().rule(25).unwrap()] };
        assert_eq!(only_local.public_ports(), Vec::<u16>::new());
        only_local.rules.reverse();
        assert_eq!(only_local.public_ports(), vec![25]);
    }
}
