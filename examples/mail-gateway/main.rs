//! The postern example mail gateway: receives mail over SMTP, delivers it into
//! Maildirs, and serves them over POP3, one thread per connection on `std::net`, with
//! TLS (STARTTLS, STLS and implicit TLS) on every port.
//!
//! ```text
//! cargo run --release --example mail-gateway -- --help
//! ```
//!
//! | module        | concern                                                        |
//! |---------------|----------------------------------------------------------------|
//! | `main.rs`     | startup, the listeners, Ctrl-C and shutdown                    |
//! | `cli.rs`      | command-line arguments                                         |
//! | `admission.rs`| who may connect, how often, how many at once; rates, bans      |
//! | `tls.rs`      | the rustls server configurations, certificates, the demo CA    |
//! | `transport.rs`| a connection's bytes: plaintext, or TLS via `TlsChannel`       |
//! | `smtp.rs`     | one connection: drives `postern::smtp::Session` over a socket  |
//! | `policy.rs`   | which recipients are accepted                                  |
//! | `maildir.rs`  | delivery into Maildirs                                         |
//! | `pop3.rs`     | one connection: drives `postern::pop3::Session` over a socket  |
//! | `users.rs`    | the accounts, their hashed secrets, the users file             |
//! | `auth.rs`     | SASL exchanges for SMTP AUTH and POP3 AUTH (`postern::sasl`)   |
//! | `maildrop.rs` | a user's Maildir as a `postern::pop3::Maildrop`, with its lock |
//! | `seal.rs`     | `--seal-store`: messages sealed at rest, key rings, `keyring` |
//! | `shutdown.rs` | the shutdown flag and grace period                             |
//! | `log.rs`      | one line per event on stderr                                   |
//! | `audit.rs`    | security events into hash-chained segments (`postern::audit`)  |
//!
//! postern never reads the clock, touches a socket or spawns a thread: all of that is
//! here, and the library only sees bytes, times and decisions.

// The application owns the clock; the library bans reading it (clippy.toml), so the
// ban is lifted here, where `Instant::now()` and `SystemTime::now()` belong.
#![allow(clippy::disallowed_methods)]

mod admission;
mod audit;
mod auth;
mod cli;
mod log;
mod maildir;
mod maildrop;
mod msgauth;
mod policy;
mod pop3;
mod seal;
mod shutdown;
mod smtp;
mod tls;
mod transport;
mod users;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use postern::smtp::{Config, EnhancedStatus, Reply};

use postern::access::admission::Admit;

use crate::admission::GatewayAdmission;
use crate::log::Log;
use crate::maildir::Maildir;
use crate::policy::Policy;
use crate::pop3::Pop3Gateway;
use crate::shutdown::Shutdown;
use crate::smtp::{Gateway, Port};

/// Connections served at once per listener; more are told to come back later (SMTP
/// `421 4.7.0`, POP3 `-ERR [SYS/TEMP]`). Per-client limits are in `admission.rs`.
const MAX_CONNECTIONS: usize = 256;
/// How long an accept loop sleeps when no connection is waiting (short: a refused
/// connection's reply waits for it).
const ACCEPT_POLL: Duration = Duration::from_millis(10);
/// How often the certificate reloader checks for shutdown.
const RELOAD_TICK: Duration = Duration::from_millis(50);
/// How often `--cert`/`--key` are looked at for a renewed certificate.
const CERT_POLL: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if let Some(code) = seal::command(&argv) {
        return code;
    }
    let args = match cli::parse(argv) {
        Ok(cli::Parsed::Run(args)) => args,
        Ok(cli::Parsed::Help) => {
            println!("{}{}", cli::USAGE, msgauth::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(cli::Parsed::AddUser { file, name, iterations, totp }) => {
            return adduser(&file, &name, iterations, totp);
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{}{}", cli::USAGE, msgauth::USAGE);
            return ExitCode::from(2);
        }
    };
    match run(*args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            Log::server().line(format_args!("fatal: {e}"));
            ExitCode::FAILURE
        }
    }
}

fn run(args: cli::Args) -> io::Result<()> {
    let log = Log::server();

    // Port 25 style: STARTTLS, no AUTH.
    let mut mx_config = Config::new(args.hostname.clone());
    if let Some(size) = args.max_message_size {
        mx_config.limits.message_size = size;
    }
    mx_config.starttls = true;
    // Submission and smtps: SASL (users.rs, postern::sasl), inside TLS only unless the
    // demo switch says so. -PLUS is only offered once TLS is up (the session's rule).
    let mechanisms = auth::mechanisms(args.cram_md5);
    let mut submission_config = mx_config.clone();
    submission_config.auth_mechanisms = mechanisms.iter().map(|m| m.name().to_owned()).collect();
    submission_config.allow_plaintext_auth = args.allow_plaintext_auth;
    // RFC 6409: a submission service takes mail from authenticated users only.
    submission_config.require_auth = true;
    let submission_config = Arc::new(submission_config);

    let mut pop3_config = postern::pop3::Config::new(args.hostname.clone());
    // Logins are refused ("use STLS") before TLS unless the loopback demo switch allows them.
    pop3_config.stls = true;
    pop3_config.allow_plaintext_auth = args.allow_plaintext_auth;
    pop3_config.sasl_mechanisms = mechanisms.iter().map(|m| m.name().to_owned()).collect();
    // Like the SMTP side: no login of any kind before TLS unless the demo switch says so.
    pop3_config.sasl_requires_tls = true;

    let maildir = Maildir::open(&args.maildir, &args.hostname)
        .map_err(|e| io::Error::new(e.kind(), format!("maildir {}: {e}", args.maildir.display())))?;
    audit::start(&args.audit, maildir.root())?;
    let msgauth = msgauth::MsgAuth::new(&args.msgauth, &args.hostname, &args.domains)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    log.line(format_args!("{}", msgauth.describe()));
    let mut tls = tls::setup(&args.tls, maildir.root(), &args.hostname)
        .map_err(|e| io::Error::new(e.kind(), format!("TLS: {e}")))?;
    let bind = |addr: SocketAddr| {
        TcpListener::bind(addr).map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
    };
    let listeners = [
        ("smtp", bind(args.smtp)?),
        ("submission", bind(args.submission)?),
        ("smtps", bind(args.smtps)?),
        ("pop3", bind(args.pop3)?),
        ("pop3s", bind(args.pop3s)?),
    ];
    let mut local = Vec::with_capacity(listeners.len());
    for (name, listener) in &listeners {
        local.push((*name, listener.local_addr()?));
    }

    let shutdown = Arc::new(Shutdown::new(args.grace));
    let admission = Arc::new(Mutex::new(GatewayAdmission::new(&args.admission, seed(), Instant::now())));
    let users = Arc::new(auth::users(&args, &mechanisms).map_err(io::Error::other)?);
    if args.seal_store {
        let dir = seal::keys_dir(&args.maildir, args.seal_keys.as_deref());
        let created = seal::enable(&dir, &users.names())
            .map_err(|e| io::Error::new(e.kind(), format!("seal store {}: {e}", dir.display())))?;
        log.line(format_args!(
            "seal store: messages sealed at rest (X-Wing + AES-256-GCM), key rings in {} ({created} created)",
            dir.display()
        ));
    }
    let pop3 = Arc::new(Pop3Gateway {
        config: Arc::new(pop3_config),
        users: Arc::clone(&users),
        maildir: maildir.root().to_path_buf(),
        shutdown: Arc::clone(&shutdown),
        tls: Arc::clone(&tls.clients),
        admission: Arc::clone(&admission),
    });
    let gateway = Arc::new(Gateway {
        policy: Policy::new(args.domains.clone()),
        maildir,
        users: Arc::clone(&users),
        shutdown: Arc::clone(&shutdown),
        admission: Arc::clone(&admission),
        msgauth,
    });
    let port = |name, config: &Arc<Config>, submission, tls: &Arc<rustls::ServerConfig>, implicit| {
        Arc::new(Port { name, config: Arc::clone(config), submission, tls: Arc::clone(tls), implicit })
    };
    let mx = port("smtp", &Arc::new(mx_config), false, &tls.mx, false);
    let submission = port("submission", &submission_config, true, &tls.clients, false);
    let smtps = port("smtps", &submission_config, true, &tls.clients, true);

    let on_signal = Arc::clone(&shutdown);
    ctrlc::set_handler(move || {
        if on_signal.request(Instant::now()) {
            Log::server().line(format_args!("Ctrl-C: shutting down (Ctrl-C again to quit at once)"));
        } else {
            std::process::exit(130);
        }
    })
    .map_err(|e| io::Error::other(format!("cannot install the Ctrl-C handler: {e}")))?;

    let url = |name: &str| {
        local.iter().find(|(n, _)| *n == name).map(|(n, a)| format!("{n}://{a}")).unwrap_or_default()
    };
    log.line(format_args!(
        "listening on {} (STARTTLS), {} (STARTTLS, AUTH) and {} (TLS), hostname {}, maildir {}, domains {}, \
         max message size {} octets",
        url("smtp"),
        url("submission"),
        url("smtps"),
        mx.config.hostname,
        gateway.maildir.root().display(),
        gateway.policy.domains().join(","),
        mx.config.limits.message_size,
    ));
    let names = users.names();
    log.line(format_args!(
        "listening on {} (STLS) and {} (TLS), users {}, plaintext logins {}",
        url("pop3"),
        url("pop3s"),
        if names.is_empty() { "(none: add --user NAME:PASSWORD)".to_owned() } else { names.join(",") },
        if args.allow_plaintext_auth { "allowed (--allow-plaintext-auth)" } else { "refused (TLS first)" },
    ));
    log.line(format_args!("admission: {}", admission::describe(&args.admission)));
    for line in &tls.summary {
        log.line(format_args!("{line}"));
    }
    if args.allow_plaintext_auth && local.iter().any(|(_, addr)| !addr.ip().is_loopback()) {
        log.line(format_args!(
            "WARNING: --allow-plaintext-auth on a non-loopback address: passwords may cross the network in clear"
        ));
    }
    print_try_it(&local, tls.generated_ca.as_deref(), &args);

    // A renewed certificate is picked up without a restart.
    let reloader = match tls.reload.take() {
        Some(mut reload) => {
            let shutdown = Arc::clone(&shutdown);
            let spawned = thread::Builder::new().name("cert-reload".into()).spawn(move || {
                let mut last = Instant::now();
                while !shutdown.is_requested() {
                    thread::sleep(RELOAD_TICK);
                    if last.elapsed() >= CERT_POLL {
                        last = Instant::now();
                        if let Some(line) = reload.check(std::time::SystemTime::now()) {
                            Log::server().line(format_args!("{line}"));
                        }
                    }
                }
            });
            Some(
                spawned
                    .map_err(|e| io::Error::other(format!("cannot start the certificate reloader: {e}")))?,
            )
        }
        None => None,
    };

    // Connection ids are unique across all listeners, so `grep conn=42` is one session.
    let ids = Arc::new(AtomicU64::new(1));
    let mut loops = Vec::new();
    for (name, listener) in listeners {
        let (ids, stop) = (Arc::clone(&ids), Arc::clone(&shutdown));
        let hostname = args.hostname.clone();
        let (gateway, pop3, admission) = (Arc::clone(&gateway), Arc::clone(&pop3), Arc::clone(&admission));
        let smtp_port = match name {
            "smtp" => Some(Arc::clone(&mx)),
            "submission" => Some(Arc::clone(&submission)),
            "smtps" => Some(Arc::clone(&smtps)),
            _ => None,
        };
        let spawned = thread::Builder::new().name(format!("{name}-accept")).spawn(move || match smtp_port {
            Some(port) => {
                // A plaintext 421 is for plaintext ports only: a TLS client would read
                // it as a broken handshake, so smtps connections turned away are dropped.
                let implicit = port.implicit;
                accept_loop(
                    name,
                    listener,
                    &stop,
                    &ids,
                    &admission,
                    move |stream, turned| {
                        if !implicit {
                            refuse_smtp(stream, &hostname, turned);
                        }
                    },
                    move |stream, peer, id| smtp::serve(&gateway, &port, stream, peer, id),
                );
            }
            None => {
                let implicit = name == "pop3s";
                accept_loop(
                    name,
                    listener,
                    &stop,
                    &ids,
                    &admission,
                    move |stream, turned| {
                        if !implicit {
                            refuse_pop3(stream, turned);
                        }
                    },
                    move |stream, peer, id| pop3::serve(&pop3, implicit, stream, peer, id),
                );
            }
        });
        match spawned {
            Ok(handle) => loops.push((name, handle)),
            Err(e) => {
                // Nothing runs without all the listeners: stop those already started.
                shutdown.request(Instant::now());
                for (_, handle) in loops {
                    let _ = handle.join();
                }
                return Err(io::Error::other(format!("cannot start the {name} listener: {e}")));
            }
        }
    }
    for (name, handle) in loops {
        if handle.join().is_err() {
            log.line(format_args!("the {name} listener panicked"));
        }
    }
    if let Some(handle) = reloader
        && handle.join().is_err()
    {
        log.line(format_args!("the certificate reloader panicked"));
    }
    audit::global().close();
    log.line(format_args!("shut down cleanly"));
    Ok(())
}

/// Why a connection gets no session.
#[derive(Debug)]
enum Turned<'a> {
    /// [`MAX_CONNECTIONS`] on this listener already.
    Busy,
    /// Deferred (a per-client limit, a ban) or refused (`--deny`) by admission control.
    Admission(&'a Admit),
}

/// Accepts connections until shutdown, one thread each (`serve(stream, peer, id)`),
/// for the clients [`GatewayAdmission::admit`] accepts, at most [`MAX_CONNECTIONS`] at once
/// (`refuse` answers the others, on the accept thread: a flood costs no threads). Then
/// closes the listener and waits for the running sessions: each ends by itself within
/// the grace period.
fn accept_loop<S>(
    protocol: &str,
    listener: TcpListener,
    shutdown: &Shutdown,
    ids: &AtomicU64,
    admission: &Mutex<GatewayAdmission>,
    refuse: impl Fn(&TcpStream, Turned<'_>),
    serve: S,
) where
    S: Fn(TcpStream, SocketAddr, u64) + Send + Sync + 'static,
{
    let log = Log::server();
    if let Err(e) = listener.set_nonblocking(true) {
        log.line(format_args!("{protocol}: cannot make the listener non-blocking: {e}"));
        return;
    }
    let serve = Arc::new(serve);
    let active = Arc::new(AtomicUsize::new(0));
    let mut workers: Vec<thread::JoinHandle<()>> = Vec::new();
    while !shutdown.is_requested() {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                workers.retain(|w| !w.is_finished());
                thread::sleep(ACCEPT_POLL);
                continue;
            }
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                log.line(format_args!("{protocol}: accept failed: {e}"));
                thread::sleep(ACCEPT_POLL);
                continue;
            }
        };
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let local_port = listener.local_addr().map_or(0, |a| a.port());
        let decision = admission::lock(admission).admit(peer.ip(), local_port, Instant::now());
        audit::admission(peer.ip(), protocol, &decision);
        let permit = match decision {
            Admit::Accept { permit } => permit,
            turned => {
                refuse(&stream, Turned::Admission(&turned));
                let why = match &turned {
                    Admit::Defer { retry_after, reason } => {
                        format!("deferred: {reason:?}, retry in {}s", admission::secs(*retry_after))
                    }
                    Admit::Refuse { reason } => format!("refused: {reason:?}"),
                    Admit::Accept { .. } => String::new(),
                };
                Log::conn(id).line(format_args!("{peer} on {protocol} {why}"));
                continue;
            }
        };
        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            refuse(&stream, Turned::Busy);
            audit::busy(peer.ip(), protocol);
            Log::conn(id)
                .line(format_args!("refused {peer}: {MAX_CONNECTIONS} {protocol} connections already"));
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        audit::session_start(id, protocol, peer);
        let (serve, count) = (Arc::clone(&serve), Arc::clone(&active));
        let spawned = thread::Builder::new().name(format!("{protocol}-{id}")).spawn(move || {
            // The place in --max-conn-per-ip is held until the session ends.
            let _permit = permit;
            serve(stream, peer, id);
            audit::session_end(id);
            count.fetch_sub(1, Ordering::SeqCst);
        });
        match spawned {
            Ok(handle) => workers.push(handle),
            Err(e) => {
                active.fetch_sub(1, Ordering::SeqCst);
                log.line(format_args!("cannot start a thread for conn={id}: {e}"));
            }
        }
    }

    drop(listener);
    let running = active.load(Ordering::SeqCst);
    log.line(format_args!(
        "{protocol}: stopped accepting; {running} session(s) running, grace period {}s",
        shutdown.grace().as_secs()
    ));
    for worker in workers {
        let _ = worker.join();
    }
}

/// The greeting of an SMTP connection that gets no session, then close: `421 4.7.0`
/// (busy, over a per-client limit, banned) or `554 5.7.1` (`--deny`).
fn refuse_smtp(stream: &TcpStream, hostname: &str, turned: Turned<'_>) {
    let mut out = Vec::new();
    let reply = match turned {
        Turned::Busy => Reply::new(
            421,
            EnhancedStatus::new(4, 7, 0),
            format!("{hostname} Too many connections, try again later"),
        ),
        // RFC 5321 section 4.2: a greeting (or its replacement) starts with our name.
        Turned::Admission(admit) => {
            let Some(reply) = admit.smtp_greeting(hostname) else { return };
            reply
        }
    };
    reply.write_to(&mut out);
    write_and_forget(stream, &out);
}

/// `-ERR [SYS/TEMP]` (RFC 3206: a temporary problem) or `-ERR [AUTH]` (`--deny`) to a POP3
/// connection that gets no session, then close.
fn refuse_pop3(stream: &TcpStream, turned: Turned<'_>) {
    let mut out = Vec::new();
    match turned {
        Turned::Busy => postern::pop3::Reply::err(
            Some(postern::pop3::ResponseCode::SysTemp),
            "too many connections, try again later",
        )
        .write_to(&mut out),
        Turned::Admission(admit) => {
            let Some(reply) = admit.pop3_reply() else { return };
            reply.write_to(&mut out);
        }
    }
    write_and_forget(stream, &out);
}

/// A random seed for the limit tables' keyed hashes (so that a client cannot aim its
/// keys at one bucket); falls back to the clock.
fn seed() -> u64 {
    use std::io::Read as _;
    let mut bytes = [0u8; 8];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos().into()),
    }
}

/// Writes a last word to a connection that gets no session; errors do not matter.
fn write_and_forget(stream: &TcpStream, bytes: &[u8]) {
    use std::io::Write as _;
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let mut s = stream;
    let _ = s.write_all(bytes);
}

/// `adduser FILE NAME`: reads the password from stdin (one line) and writes its hashes.
/// With `totp`, prints the `otpauth://` URI of the new second factor on stdout.
fn adduser(file: &std::path::Path, name: &str, iterations: u32, totp: bool) -> ExitCode {
    let mut line = zeroize::Zeroizing::new(String::new());
    if let Err(e) = io::stdin().read_line(&mut line) {
        eprintln!("error: reading the password from stdin: {e}");
        return ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\r', '\n']);
    match users::add_user(file, name, password, iterations, totp) {
        Ok(added) => {
            let what = if added.replaced { "password changed for" } else { "added" };
            eprintln!("{what} {name} in {}", file.display());
            if let Some(uri) = added.otpauth {
                eprintln!("TOTP second factor: add this URI to an authenticator app (it holds the secret):");
                println!("{}", uri.as_str());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Tells the user how to send a first message and read it back.
fn print_try_it(local: &[(&str, SocketAddr)], ca: Option<&std::path::Path>, args: &cli::Args) {
    let at = |name: &str| reachable(local.iter().find(|(n, _)| *n == name).map_or(args.smtp, |(_, a)| *a));
    let (smtp, submission, smtps, pop3, pop3s) =
        (at("smtp"), at("submission"), at("smtps"), at("pop3"), at("pop3s"));
    let domain = args.domains.first().map_or("example.test", String::as_str);
    let user = args.users.first().map_or("alice", |u| u.name.as_str());
    let cacert = match ca {
        Some(ca) => {
            println!("The demo CA certificate is {}: clients trust it to verify the gateway.", ca.display());
            format!(" --cacert {}", ca.display())
        }
        None => String::new(),
    };
    println!("Try it:");
    println!(
        "  swaks --server {} --port {} --tls --from bob@sender.test --to {user}@{domain}",
        smtp.ip(),
        smtp.port()
    );
    println!(
        "  curl --ssl-reqd{cacert} smtp://{smtp} --mail-from bob@sender.test --mail-rcpt {user}@{domain} -T message.eml"
    );
    if args.users.is_empty() && args.users_file.is_none() {
        println!("To submit with AUTH and read mail over POP3, restart with --user {user}:PASSWORD.");
    } else {
        // Each prompts for the password: it is not printed here.
        println!(
            "  curl --ssl-reqd{cacert} -u {user} smtp://{submission} --mail-from {user}@{domain} \
             --mail-rcpt {user}@{domain} -T message.eml     # submission, AUTH after STARTTLS"
        );
        println!(
            "  curl{cacert} -u {user} smtps://{smtps} --mail-from {user}@{domain} --mail-rcpt {user}@{domain} -T message.eml"
        );
        println!(
            "  curl --ssl-reqd{cacert} -u {user} pop3://{pop3}/1     # RETR 1 after STLS (pop3://{pop3}/ lists)"
        );
        println!("  curl{cacert} -u {user} pop3s://{pop3s}/1");
    }
    println!("Press Ctrl-C to stop.");
}

/// `addr` with an unspecified IP (`0.0.0.0`, `::`) replaced by loopback, for a client.
fn reachable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}
