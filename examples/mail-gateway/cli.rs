//! Command-line arguments, parsed by hand (no dependency) with `--help`.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

use postern::access::cidr::{IpNet, Verdict};
use postern::access::limits::{Limits, parse_network, parse_rate};
use postern::limit::{Gcra, KeyConfig};

use crate::admission::{Settings, TABLE_CAPACITY};
use crate::tls;
use crate::users::{self, Credentials, DEFAULT_HASH_ITERATIONS};

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
    /// The users file (`--users FILE`): hashed secrets, see `users.rs`.
    pub(crate) users_file: Option<PathBuf>,
    /// PBKDF2 iterations for `--user` hashes and unknown users (`--hash-iterations`).
    pub(crate) hash_iterations: u32,
    /// Offer CRAM-MD5 (`--cram-md5`; legacy, `--user` accounts only).
    pub(crate) cram_md5: bool,
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
    /// `--limits FILE`, then `--allow`, `--deny`, `--conn-rate`, `--max-conn-per-ip`,
    /// `--rcpt-rate`, `--msg-rate`, `--auth-failures-ban` over it.
    pub(crate) admission: Settings,
    /// `--audit-dir`, `--audit-key`, `--audit-max-segment`, `--audit-retention-days`.
    pub(crate) audit: crate::audit::Options,
    /// Seal delivered messages at rest (`--seal-store`).
    pub(crate) seal_store: bool,
    /// Where the key rings live (`--seal-keys`); `None`: beside the Maildir root.
    pub(crate) seal_keys: Option<PathBuf>,
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
    /// `adduser FILE NAME [--hash-iterations N]`: add a user (password on stdin).
    AddUser {
        /// The users file.
        file: PathBuf,
        /// The account name.
        name: String,
        /// PBKDF2 iterations.
        iterations: u32,
        /// `--totp`: also enrol a TOTP second factor.
        totp: bool,
    },
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
    cargo run --release --example mail-gateway -- adduser FILE NAME [--hash-iterations N] [--totp]
                               add NAME to the users FILE (or change its password): the
                               password is read from stdin (one line), stored hashed.
                               --totp also enrols a TOTP second factor (its otpauth://
                               URI is printed): the user then types the password
                               followed by the 6-digit code, and SCRAM is refused

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
    --users FILE               accounts from a users file (NAME:PBKDF2 hash:SCRAM verifier
                               per line, written by `adduser`): no plaintext stored.
                               APOP and CRAM-MD5 need plaintext, so only --user accounts
                               can use them
    --hash-iterations N        PBKDF2-SHA256 iterations for --user hashes, adduser and
                               the dummy check of unknown users [default: 100000]
    --cram-md5                 also offer SASL CRAM-MD5 (legacy) on submission and POP3
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
    --limits FILE              read the limits below from FILE, one `setting = value` a
                               line (`conn-rate = 5/1s burst 5`, `max-conn-per-ip = 3`,
                               `rcpt-rate`, `msg-rate`, `auth-failures-ban = on`,
                               `allow = CIDR`, `deny = CIDR`, and only there
                               `conn-rate@PORT` per listener, `table-capacity`,
                               `ipv4-prefix`, `ipv6-prefix`); the flags override it.
                               Rates there may have a unit and a burst: 30/1m burst 5
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

SEALED STORAGE (post-quantum hybrid encryption at rest):
    --seal-store               seal every delivered message with its mailbox's current
                               X-Wing (X25519 + ML-KEM-768) key, HPKE with AES-256-GCM;
                               POP3 RETR/TOP open it. Key rings are created on first
                               start (0600); rotate with `mail-gateway keyring rotate`
    --seal-keys DIR            where the key rings live [default: DIR/../postern-keys]

    -h, --help                 print this help

AUDIT TRAIL (hash-chained, verified with `cargo run --example audit-verify -- DIR`):
    --audit-dir DIR            segment files of security events; `off` to disable
                               [default: <maildir>/../audit]
    --audit-key FILE           the HMAC-SHA256 key, 64 hex digits; created (0600) if missing
                               [default: <audit dir>.key]
    --audit-max-segment BYTES  start a new segment after this size (and every UTC day)
                               [default: 67108864]
    --audit-retention-days N   delete closed segments older than this [default: 180]

On --smtp, recipients in an accepted domain are delivered (every local part exists in
this version); postmaster is always accepted; anything else is refused as relaying.
On submission, authenticated users may address any domain, but only the accepted
domains are delivered: relaying elsewhere is not implemented in this demo (554 5.7.1).
POP3 users read their Maildir; messages are deleted only at QUIT.

KEY RINGS (with --seal-store):
    mail-gateway keyring rotate|list [--maildir DIR] [--seal-keys DIR] [--user NAME]...
    mail-gateway keyring retire --user NAME --key ID [--maildir DIR] [--seal-keys DIR]";

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
    let mut users_file = None;
    let mut hash_iterations = DEFAULT_HASH_ITERATIONS;
    let mut cram_md5 = false;
    let mut maildir = PathBuf::from("./postern-data/Maildir");
    let mut domains: Vec<String> = Vec::new();
    let mut hostname: Option<String> = None;
    let mut max_message_size = None;
    let mut grace = Duration::from_secs(5);
    // Limit flags: `None` when not given (then the limits file or the default counts).
    let mut limits_file: Option<PathBuf> = None;
    let mut networks: Vec<(IpNet, Verdict, String)> = Vec::new();
    let mut conn_rate: Option<Option<Gcra>> = None;
    let mut max_conn_per_ip: Option<Option<u32>> = None;
    let mut rcpt_rate: Option<Gcra> = None;
    let mut msg_rate: Option<Gcra> = None;
    let mut auth_failures_ban = false;
    let mut audit = crate::audit::Options::default();
    let mut seal_store = false;
    let mut seal_keys = None;
    let mut msgauth = crate::msgauth::Options::default();

    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|a| a == "adduser") {
        args.next();
        return adduser(args);
    }
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
        if name == "--cram-md5" {
            if inline.is_some() {
                return Err(UsageError("--cram-md5 takes no value".into()));
            }
            cram_md5 = true;
            continue;
        }
        if name == "--auth-failures-ban" {
            if inline.is_some() {
                return Err(UsageError("--auth-failures-ban takes no value".into()));
            }
            auth_failures_ban = true;
            continue;
        }
        if name == "--seal-store" {
            if inline.is_some() {
                return Err(UsageError("--seal-store takes no value".into()));
            }
            seal_store = true;
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
            "--users" => users_file = Some(PathBuf::from(value()?)),
            "--hash-iterations" => hash_iterations = iterations(&value()?)?,
            "--maildir" => maildir = PathBuf::from(value()?),
            "--seal-keys" => seal_keys = Some(PathBuf::from(value()?)),
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
            "--limits" => limits_file = Some(PathBuf::from(value()?)),
            "--allow" | "--deny" => {
                let v = value()?;
                let verdict = if name == "--allow" { Verdict::Allow } else { Verdict::Deny };
                let net = parse_network(v.trim()).ok_or_else(|| {
                    UsageError(format!(
                        "{name} {v:?}: want a network such as 192.0.2.0/24 (no host bits) or an address"
                    ))
                })?;
                if let Some((_, _, other)) = networks.iter().find(|(n, w, _)| *n == net && *w != verdict) {
                    return Err(UsageError(format!("{other} and {name} both name {net}")));
                }
                networks.push((net, verdict, name.clone()));
            }
            "--conn-rate" => {
                let v = value()?;
                conn_rate = Some(if v == "off" { None } else { Some(rate(&name, &v)?) });
            }
            "--rcpt-rate" => rcpt_rate = Some(rate(&name, &value()?)?),
            "--msg-rate" => msg_rate = Some(rate(&name, &value()?)?),
            "--max-conn-per-ip" => {
                let v = value()?;
                let n: u32 = v.parse().map_err(|e| UsageError(format!("--max-conn-per-ip {v}: {e}")))?;
                max_conn_per_ip = Some((n > 0).then_some(n));
            }
            a if a.starts_with("--audit-") => audit.set(a, value()?).map_err(UsageError)?,
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
    let flags = LimitFlags { networks, conn_rate, max_conn_per_ip, rcpt_rate, msg_rate, auth_failures_ban };
    let admission = admission_settings(limits_file.as_deref(), flags)?;
    let hostname =
        hostname.unwrap_or_else(|| format!("mx.{}", domains.first().map_or("example.test", |d| d)));
    Ok(Parsed::Run(Box::new(Args {
        smtp,
        submission,
        smtps,
        pop3,
        pop3s,
        users,
        users_file,
        hash_iterations,
        cram_md5,
        allow_plaintext_auth,
        tls,
        maildir,
        domains,
        hostname,
        max_message_size,
        grace,
        admission,
        audit,
        seal_store,
        seal_keys,
        msgauth,
    })))
}

/// `--*-rate N/SECS` (bursts of up to N), or the limits file's `N/PERIOD [burst B]`.
fn rate(name: &str, v: &str) -> Result<Gcra, UsageError> {
    parse_rate(v)
        .ok_or_else(|| UsageError(format!("{name} {v:?}: want N/SECS, e.g. 30/60, N and SECS positive")))
}

/// The limit flags as given (`None`: not given).
struct LimitFlags {
    networks: Vec<(IpNet, Verdict, String)>,
    conn_rate: Option<Option<Gcra>>,
    max_conn_per_ip: Option<Option<u32>>,
    rcpt_rate: Option<Gcra>,
    msg_rate: Option<Gcra>,
    auth_failures_ban: bool,
}

/// The largest limits file read.
const MAX_LIMITS_FILE: u64 = 4 << 20;

/// The defaults, then the limits file (if any), then the flags.
fn admission_settings(file: Option<&std::path::Path>, flags: LimitFlags) -> Result<Settings, UsageError> {
    let limits = match file {
        Some(path) => {
            use std::io::Read as _;
            let shown = path.display();
            let mut text = String::new();
            std::fs::File::open(path)
                .and_then(|f| f.take(MAX_LIMITS_FILE + 1).read_to_string(&mut text))
                .map_err(|e| UsageError(format!("--limits {shown}: {e}")))?;
            if text.len() as u64 > MAX_LIMITS_FILE {
                return Err(UsageError(format!("--limits {shown}: larger than {MAX_LIMITS_FILE} bytes")));
            }
            Limits::parse(&text).map_err(|e| UsageError(format!("--limits {shown}: {e}")))?
        }
        None => Limits::default(),
    };
    let file_error = |e: postern::access::cidr::CidrError| {
        UsageError(format!("--limits {}: {e}", file.map_or(String::new(), |p| p.display().to_string())))
    };
    // A network given by a flag replaces the file's entry for it.
    let mut builder = postern::access::cidr::CidrListBuilder::new();
    let mut any_list = false;
    for (line, net, verdict) in &limits.networks {
        if !flags.networks.iter().any(|(n, _, _)| n == net) {
            builder.push_line(*line, *net, *verdict).map_err(file_error)?;
            any_list = true;
        }
    }
    for (net, verdict, name) in &flags.networks {
        builder.push_line(0, *net, *verdict).map_err(|e| UsageError(format!("{name} {net}: {e}")))?;
        any_list = true;
    }
    let lists = if any_list { Some(builder.build().map_err(file_error)?) } else { None };
    // Limits::parse checked the prefix lengths.
    let key_config = KeyConfig::new(limits.ipv4_prefix.unwrap_or(32), limits.ipv6_prefix.unwrap_or(64))
        .unwrap_or_default();
    Ok(Settings {
        lists,
        conn_rate: flags.conn_rate.or(limits.connection_rate).unwrap_or_else(default_conn_rate),
        port_rates: limits.port_connection_rates.clone(),
        max_conn_per_ip: flags.max_conn_per_ip.or(limits.max_concurrent_per_client).unwrap_or(Some(10)),
        rcpt_rate: flags.rcpt_rate.or(limits.recipient_rate.flatten()),
        msg_rate: flags.msg_rate.or(limits.message_rate.flatten()),
        auth_failures_ban: flags.auth_failures_ban || limits.auth_failures_ban.unwrap_or(false),
        table_capacity: limits.table_capacity.unwrap_or(TABLE_CAPACITY),
        key_config,
    })
}

/// `--conn-rate` by default: 30 per minute, bursts of 30.
fn default_conn_rate() -> Option<Gcra> {
    Gcra::new(30, Duration::from_secs(60), 30).ok()
}

/// `NAME:PASSWORD` (the password may hold colons). NAME must be a valid mailbox name
/// (lower-cased, as SMTP delivery lower-cases local parts); errors never echo the password.
fn user(spec: Zeroizing<String>) -> Result<Credentials, UsageError> {
    let Some((name, password)) = spec.split_once(':') else {
        return Err(UsageError("--user wants NAME:PASSWORD".into()));
    };
    let mailbox = users::account_name(name).map_err(|why| UsageError(format!("--user {why}")))?;
    users::check_new_password(password).map_err(|why| UsageError(format!("--user {name}: {why}")))?;
    Ok(Credentials { name: mailbox, password: Zeroizing::new(password.to_owned()) })
}

/// `--hash-iterations N`: 1000 to 10 000 000.
fn iterations(v: &str) -> Result<u32, UsageError> {
    match v.parse::<u32>() {
        Ok(n) if (1000..=10_000_000).contains(&n) => Ok(n),
        _ => Err(UsageError(format!("--hash-iterations {v:?}: want 1000 to 10000000"))),
    }
}

/// `adduser FILE NAME [--hash-iterations N]`.
fn adduser(args: impl Iterator<Item = OsString>) -> Result<Parsed, UsageError> {
    let mut positional = Vec::new();
    let mut iterations_value = DEFAULT_HASH_ITERATIONS;
    let mut totp = false;
    let mut args =
        args.map(|a| a.into_string().map_err(|a| UsageError(format!("argument is not UTF-8: {a:?}"))));
    while let Some(arg) = args.next() {
        let arg = arg?;
        if let Some(v) = arg.strip_prefix("--hash-iterations=") {
            iterations_value = iterations(v)?;
        } else if arg == "--hash-iterations" {
            let v = args.next().ok_or_else(|| UsageError("--hash-iterations needs a value".into()))??;
            iterations_value = iterations(&v)?;
        } else if arg == "--totp" {
            totp = true;
        } else if arg.starts_with("--") {
            return Err(UsageError(format!("adduser: unknown argument {arg:?}")));
        } else {
            positional.push(arg);
        }
    }
    let [file, name] = <[String; 2]>::try_from(positional)
        .map_err(|_| UsageError("adduser wants FILE NAME (the password comes on stdin)".into()))?;
    let name = users::account_name(&name).map_err(|why| UsageError(format!("adduser {why}")))?;
    Ok(Parsed::AddUser { file: PathBuf::from(file), name, iterations: iterations_value, totp })
}
