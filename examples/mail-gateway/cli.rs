//! Command-line arguments, parsed by hand (no dependency) with `--help`.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

use postern::access::cidr::{CidrListBuilder, Verdict};

use crate::admission::{Rate, Settings};
use crate::maildir;
use crate::tls;
use crate::users::{Credentials, MAX_PASSWORD};

/// The gateway's settings.
#[derive(Clone, Debug)]
pub(crate) struct Args {
    /// Where the SMTP (MX, STARTTLS) listener binds (`--smtp`).
    pub(crate) smtp: SocketAddr,
    /// Where the SMTP submission (STARTTLS, AUTH) listener binds (`--submission`).
    pub(crate) submission: SocketAddr,
    /// Where the SMTP submission over implicit TLS listener binds (`--smtps`).
    pub(crate) smtps: SocketAddr,
    /// Where the POP3 (STLS) listener binds (`--pop3`).
    pub(crate) pop3: SocketAddr,
    /// Where the POP3 over implicit TLS listener binds (`--pop3s`).
    pub(crate) pop3s: SocketAddr,
    /// The accounts for POP3 and submission (`--user NAME:PASSWORD`, repeatable). `Debug`
    /// shows no password.
    pub(crate) users: Vec<Credentials>,
    /// Allow logins without TLS (`--allow-plaintext-auth`).
    pub(crate) allow_plaintext_auth: bool,
    /// `--cert`, `--key`, `--tls-profile`, `--client-ca`.
    pub(crate) tls: tls::Options,
    /// The root of the per-recipient Maildirs (`--maildir`).
    pub(crate) maildir: PathBuf,
    /// Recipient domains accepted for local delivery (`--domain`, repeatable), lower-cased.
    pub(crate) domains: Vec<String>,
    /// The server's name in the greeting and in `Received:` (`--hostname`).
    pub(crate) hostname: String,
    /// Largest message accepted, in octets (`--max-message-size`); `None`: the library default.
    pub(crate) max_message_size: Option<u64>,
    /// How long running sessions may go on after Ctrl-C (`--grace`).
    pub(crate) grace: Duration,
    /// `--allow`, `--deny`, `--conn-rate`, `--max-conn-per-ip`, `--rcpt-rate`,
    /// `--msg-rate`, `--auth-failures-ban`.
    pub(crate) admission: Settings,
    /// `--msgauth`, `--dns-zone`, `--dns-server`, `--dkim-key`, `--dkim-selector`, `--dkim-domain`.
    pub(crate) msgauth: crate::msgauth::Options,
}

/// What the command line asked for.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// Run the gateway.
    Run(Box<Args>),
    /// Print the usage and exit successfully.
    Help,
}

/// A command-line mistake; print it with the usage and exit with status 2.
#[derive(Debug)]
pub(crate) struct UsageError(String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The text printed by `--help`.
pub(crate) const USAGE: &str = "\
postern mail gateway: receives mail over SMTP, delivers it into Maildirs, and serves
those Maildirs over POP3, with TLS on every port.

USAGE:
    cargo run --release --example mail-gateway -- [OPTIONS]

LISTENERS:
    --smtp ADDR                SMTP for other servers (port 25 style): STARTTLS, no
                               AUTH, mail for the accepted domains [default: 127.0.0.1:2525]
    --submission ADDR          SMTP submission (port 587 style): STARTTLS, AUTH PLAIN
                               after STARTTLS, AUTH required before MAIL
                               [default: 127.0.0.1:2587]
    --smtps ADDR               submission over implicit TLS (port 465 style)
                               [default: 127.0.0.1:2465]
    --pop3 ADDR                POP3 with STLS [default: 127.0.0.1:1110]
    --pop3s ADDR               POP3 over implicit TLS (port 995 style)
                               [default: 127.0.0.1:1995]

TLS:
    --cert PEM --key PEM       the server certificate chain and its private key, reloaded
                               when the files change (a renewal needs no restart). Without
                               them a demo CA and a certificate for localhost, 127.0.0.1,
                               ::1 and --hostname are generated at start; the CA
                               certificate is written to DIR/../postern-ca.pem for
                               clients to trust (curl --cacert, swaks --tls-ca-path)
    --tls-profile PROFILE      modern: TLS 1.3 only; compatible: also TLS 1.2 with ECDHE
                               and AEAD suites only, extended master secret required
                               [default: modern]
    --client-ca PEM            mutual TLS: a client certificate issued by this CA is
                               required on submission, smtps, pop3 (STLS) and pop3s, and
                               verified if presented on --smtp; its subject is logged

ACCOUNTS AND MAIL:
    --user NAME:PASSWORD       an account for POP3 and submission; repeat for several.
                               NAME's Maildir is DIR/<name>/, where SMTP delivers
                               NAME@<domain> (the password is visible to local users in
                               `ps`: demo accounts only)
    --allow-plaintext-auth     allow logins (POP3 USER/PASS, APOP, AUTH PLAIN; submission
                               AUTH PLAIN) without TLS. A loopback demo switch: without
                               it logins need STARTTLS/STLS or an implicit-TLS port
    --maildir DIR              root of the Maildirs, one per recipient local part
                               (DIR/<localpart>/{tmp,new,cur}) [default: ./postern-data/Maildir]
    --domain NAME              accept mail for this domain; repeat for several
                               [default: example.test]
    --hostname NAME            server name for the greeting and Received: headers
                               [default: mx.<first domain>]
    --max-message-size BYTES   largest message accepted [default: 10240000]
    --grace SECS               after Ctrl-C, how long running sessions may finish [default: 5]

ADMISSION AND RATE LIMITS (per client: an IPv4 address, an IPv6 /64):
    --allow CIDR               never limit these clients (repeatable; longest prefix wins
                               against --deny)
    --deny CIDR                refuse these clients: SMTP 554 5.7.1, POP3 -ERR [AUTH], then
                               close (repeatable)
    --conn-rate N/SECS         new connections per client, bursts of up to N; over it:
                               SMTP 421 4.7.0, POP3 -ERR [SYS/TEMP], then close; `off`
                               to disable [default: 30/60]
    --max-conn-per-ip N        connections at once per client (0: no limit) [default: 10]
    --rcpt-rate N/SECS         recipients per client: RCPT over it gets 450 4.7.1
                               [default: no limit]
    --msg-rate N/SECS          messages per client: DATA/BDAT over it gets 450 4.7.1
                               [default: no limit]
    --auth-failures-ban        failed logins (submission AUTH, POP3) count against the
                               client: 3 failures ban it for 1 min, then 10 min, 1 h,
                               1 day; one level forgiven per clean hour. A banned client's
                               connections are deferred with the time left
    -h, --help                 print this help

On --smtp, recipients in an accepted domain are delivered (every local part exists in
this version); postmaster is always accepted; anything else is refused as relaying.
On submission, authenticated users may address any domain, but only the accepted
domains are delivered: relaying elsewhere is not implemented in this demo (554 5.7.1).
POP3 users read their Maildir; messages are deleted only at QUIT.";

/// Parses the process arguments (without the program name).
pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, UsageError> {
    let mut smtp: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 2525));
    let mut submission: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 2587));
    let mut smtps: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 2465));
    let mut pop3: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 1110));
    let mut pop3s: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 1995));
    let mut tls = tls::Options::default();
    let mut users: Vec<Credentials> = Vec::new();
    let mut allow_plaintext_auth = false;
    let mut maildir = PathBuf::from("./postern-data/Maildir");
    let mut domains: Vec<String> = Vec::new();
    let mut hostname: Option<String> = None;
    let mut max_message_size = None;
    let mut grace = Duration::from_secs(5);
    let mut lists = CidrListBuilder::new();
    let mut any_list = false;
    let mut conn_rate = Some(Rate { count: 30, period: Duration::from_secs(60) });
    let mut max_conn_per_ip = Some(10);
    let mut rcpt_rate = None;
    let mut msg_rate = None;
    let mut auth_failures_ban = false;
    let mut msgauth = crate::msgauth::Options::default();

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg.into_string().map_err(|a| UsageError(format!("argument is not UTF-8: {a:?}")))?;
        // Both `--name value` and `--name=value`.
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        if name == "-h" || name == "--help" {
            return Ok(Parsed::Help);
        }
        if name == "--allow-plaintext-auth" {
            if inline.is_some() {
                return Err(UsageError("--allow-plaintext-auth takes no value".into()));
            }
            allow_plaintext_auth = true;
            continue;
        }
        if name == "--auth-failures-ban" {
            if inline.is_some() {
                return Err(UsageError("--auth-failures-ban takes no value".into()));
            }
            auth_failures_ban = true;
            continue;
        }
        let mut value = || -> Result<String, UsageError> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .ok_or_else(|| UsageError(format!("{name} needs a value"))),
            }
        };
        let address = |v: String| -> Result<SocketAddr, UsageError> {
            v.parse().map_err(|e| UsageError(format!("{name} {v}: {e} (want IP:PORT)")))
        };
        match name.as_str() {
            "--smtp" => smtp = address(value()?)?,
            "--submission" => submission = address(value()?)?,
            "--smtps" => smtps = address(value()?)?,
            "--pop3" => pop3 = address(value()?)?,
            "--pop3s" => pop3s = address(value()?)?,
            "--cert" => tls.cert = Some(PathBuf::from(value()?)),
            "--key" => tls.key = Some(PathBuf::from(value()?)),
            "--client-ca" => tls.client_ca = Some(PathBuf::from(value()?)),
            "--tls-profile" => {
                let v = value()?;
                tls.profile = v
                    .parse()
                    .map_err(|_| UsageError(format!("--tls-profile {v:?}: want modern or compatible")))?;
            }
            "--user" => {
                let account = user(Zeroizing::new(value()?))?;
                if users.iter().any(|u| u.name == account.name) {
                    return Err(UsageError(format!("--user {}: given twice", account.name)));
                }
                users.push(account);
            }
            "--maildir" => maildir = PathBuf::from(value()?),
            "--domain" => {
                let v = value()?.trim().trim_end_matches('.').to_ascii_lowercase();
                if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '@') {
                    return Err(UsageError(format!("--domain {v:?}: not a domain name")));
                }
                if !domains.contains(&v) {
                    domains.push(v);
                }
            }
            "--hostname" => {
                let v = value()?;
                if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c.is_control()) {
                    return Err(UsageError(format!("--hostname {v:?}: not a host name")));
                }
                hostname = Some(v);
            }
            "--max-message-size" => {
                let v = value()?;
                let n: u64 = v.parse().map_err(|e| UsageError(format!("--max-message-size {v}: {e}")))?;
                if n == 0 {
                    return Err(UsageError("--max-message-size must be positive".into()));
                }
                max_message_size = Some(n);
            }
            "--grace" => {
                let v = value()?;
                let secs: u64 = v.parse().map_err(|e| UsageError(format!("--grace {v}: {e}")))?;
                grace = Duration::from_secs(secs);
            }
            "--allow" | "--deny" => {
                let v = value()?;
                let verdict = if name == "--allow" { Verdict::Allow } else { Verdict::Deny };
                lists.extend_from_text(&format!("{}\n", v.trim()), verdict).map_err(|e| {
                    UsageError(format!("{name} {v:?}: {e} (want a network such as 192.0.2.0/24)"))
                })?;
                any_list = true;
            }
            "--conn-rate" => {
                let v = value()?;
                conn_rate = if v == "off" { None } else { Some(rate(&name, &v)?) };
            }
            "--rcpt-rate" => rcpt_rate = Some(rate(&name, &value()?)?),
            "--msg-rate" => msg_rate = Some(rate(&name, &value()?)?),
            "--max-conn-per-ip" => {
                let v = value()?;
                let n: u32 = v.parse().map_err(|e| UsageError(format!("--max-conn-per-ip {v}: {e}")))?;
                max_conn_per_ip = (n > 0).then_some(n);
            }
            flag if crate::msgauth::FLAGS.contains(&flag) => {
                msgauth.set(flag, value()?).map_err(UsageError)?
            }
            other => return Err(UsageError(format!("unknown argument {other:?}"))),
        }
    }
    if tls.cert.is_some() != tls.key.is_some() {
        return Err(UsageError("--cert and --key go together".into()));
    }
    let ports = [
        ("--smtp", smtp),
        ("--submission", submission),
        ("--smtps", smtps),
        ("--pop3", pop3),
        ("--pop3s", pop3s),
    ];
    for (i, (a, addr)) in ports.iter().enumerate() {
        if let Some((b, _)) = ports.iter().skip(i + 1).find(|(_, other)| other == addr && addr.port() != 0) {
            return Err(UsageError(format!("{a} and {b} are both {addr}")));
        }
    }
    if domains.is_empty() {
        domains.push("example.test".into());
    }
    let lists = if any_list {
        Some(lists.build().map_err(|e| UsageError(format!("--allow/--deny: {e}")))?)
    } else {
        None
    };
    let admission = Settings { lists, conn_rate, max_conn_per_ip, rcpt_rate, msg_rate, auth_failures_ban };
    let hostname =
        hostname.unwrap_or_else(|| format!("mx.{}", domains.first().map_or("example.test", |d| d)));
    Ok(Parsed::Run(Box::new(Args {
        smtp,
        submission,
        smtps,
        pop3,
        pop3s,
        users,
        allow_plaintext_auth,
        tls,
        maildir,
        domains,
        hostname,
        max_message_size,
        grace,
        admission,
        msgauth,
    })))
}

/// `--*-rate N/SECS`.
fn rate(name: &str, v: &str) -> Result<Rate, UsageError> {
    Rate::parse(v).map_err(|e| UsageError(format!("{name} {e} (want N/SECS, e.g. 30/60)")))
}

/// `NAME:PASSWORD` (the password may hold colons). NAME must be a valid mailbox name
/// (lower-cased, as SMTP delivery lower-cases local parts); errors never echo the password.
fn user(spec: Zeroizing<String>) -> Result<Credentials, UsageError> {
    let Some((name, password)) = spec.split_once(':') else {
        return Err(UsageError("--user wants NAME:PASSWORD".into()));
    };
    let mailbox = maildir::mailbox_name(name).map_err(|why| UsageError(format!("--user {name:?}: {why}")))?;
    if mailbox.contains(|c: char| c.is_whitespace() || c == '@' || c == ':') || !mailbox.is_ascii() {
        return Err(UsageError(format!("--user {name:?}: want a plain ASCII name without spaces or @")));
    }
    if password.is_empty() || password.len() > MAX_PASSWORD {
        return Err(UsageError(format!("--user {name}: the password must be 1 to {MAX_PASSWORD} octets")));
    }
    if password.contains(|c: char| c.is_control()) {
        return Err(UsageError(format!("--user {name}: the password holds a control character")));
    }
    Ok(Credentials { name: mailbox, password: Zeroizing::new(password.to_owned()) })
}
