//! Command-line arguments, parsed by hand (no dependency) with `--help`.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The gateway's settings.
#[derive(Clone, Debug)]
pub(crate) struct Args {
    /// Where the SMTP listener binds (`--smtp`).
    pub(crate) smtp: SocketAddr,
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
postern mail gateway: receives mail over SMTP and delivers it into Maildirs.

USAGE:
    cargo run --release --example mail-gateway -- [OPTIONS]

OPTIONS:
    --smtp ADDR                SMTP listen address [default: 127.0.0.1:2525]
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
version); postmaster is always accepted; anything else is refused as relaying.";

/// Parses the process arguments (without the program name).
pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, UsageError> {
    let mut smtp: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 2525));
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
    Ok(Parsed::Run(Args { smtp, maildir, domains, hostname, max_message_size, grace }))
}
