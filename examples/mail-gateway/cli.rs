//! Command-line arguments, parsed by hand (no dependency) with `--help`.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::maildir;
use crate::users::{Credentials, MAX_PASSWORD};

/// The gateway's settings.
#[derive(Clone, Debug)]
pub(crate) struct Args {
    /// Where the SMTP listener binds (`--smtp`).
    pub(crate) smtp: SocketAddr,
    /// Where the POP3 listener binds (`--pop3`).
    pub(crate) pop3: SocketAddr,
    /// The POP3 accounts (`--user NAME:PASSWORD`, repeatable). `Debug` shows no password.
    pub(crate) users: Vec<Credentials>,
    /// Allow POP3 logins without TLS (`--allow-plaintext-auth`).
    pub(crate) allow_plaintext_auth: bool,
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
}

/// What the command line asked for.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// Run the gateway.
    Run(Args),
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
those Maildirs over POP3.

USAGE:
    cargo run --release --example mail-gateway -- [OPTIONS]

OPTIONS:
    --smtp ADDR                SMTP listen address [default: 127.0.0.1:2525]
    --pop3 ADDR                POP3 listen address [default: 127.0.0.1:1110]
    --user NAME:PASSWORD       a POP3 account; repeat for several. NAME's Maildir is
                               DIR/<name>/, where SMTP delivers NAME@<domain>
                               (the password is visible to local users in `ps`:
                               demo accounts only)
    --allow-plaintext-auth     allow POP3 logins (USER/PASS, APOP, AUTH PLAIN) without
                               TLS. A loopback demo switch: this version has no TLS, so
                               without it every login is refused with \"use STLS\"
    --maildir DIR              root of the Maildirs, one per recipient local part
                               (DIR/<localpart>/{tmp,new,cur}) [default: ./postern-data/Maildir]
    --domain NAME              accept mail for this domain; repeat for several
                               [default: example.test]
    --hostname NAME            server name for the greeting and Received: headers
                               [default: mx.<first domain>]
    --max-message-size BYTES   largest message accepted [default: 10240000]
    --grace SECS               after Ctrl-C, how long running sessions may finish [default: 5]
    -h, --help                 print this help

Recipients in an accepted domain are delivered (every local part exists in this
version); postmaster is always accepted; anything else is refused as relaying.
POP3 users read their Maildir; messages are deleted only at QUIT.";

/// Parses the process arguments (without the program name).
pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, UsageError> {
    let mut smtp: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 2525));
    let mut pop3: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 1110));
    let mut users: Vec<Credentials> = Vec::new();
    let mut allow_plaintext_auth = false;
    let mut maildir = PathBuf::from("./postern-data/Maildir");
    let mut domains: Vec<String> = Vec::new();
    let mut hostname: Option<String> = None;
    let mut max_message_size = None;
    let mut grace = Duration::from_secs(5);

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
        let mut value = || -> Result<String, UsageError> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .ok_or_else(|| UsageError(format!("{name} needs a value"))),
            }
        };
        match name.as_str() {
            "--smtp" => {
                let v = value()?;
                smtp = v.parse().map_err(|e| UsageError(format!("--smtp {v}: {e} (want IP:PORT)")))?;
            }
            "--pop3" => {
                let v = value()?;
                pop3 = v.parse().map_err(|e| UsageError(format!("--pop3 {v}: {e} (want IP:PORT)")))?;
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
            other => return Err(UsageError(format!("unknown argument {other:?}"))),
        }
    }
    if domains.is_empty() {
        domains.push("example.test".into());
    }
    let hostname =
        hostname.unwrap_or_else(|| format!("mx.{}", domains.first().map_or("example.test", |d| d)));
    Ok(Parsed::Run(Args {
        smtp,
        pop3,
        users,
        allow_plaintext_auth,
        maildir,
        domains,
        hostname,
        max_message_size,
        grace,
    }))
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
