//! The postern example mail gateway: receives mail over SMTP, delivers it into
//! Maildirs, and serves them over POP3, one thread per connection on `std::net`.
//!
//! ```text
//! cargo run --release --example mail-gateway -- --help
//! ```
//!
//! | module        | concern                                                        |
//! |---------------|----------------------------------------------------------------|
//! | `main.rs`     | startup, the listeners, Ctrl-C and shutdown                    |
//! | `cli.rs`      | command-line arguments                                         |
//! | `smtp.rs`     | one connection: drives `postern::smtp::Session` over a socket  |
//! | `policy.rs`   | which recipients are accepted                                  |
//! | `maildir.rs`  | delivery into Maildirs                                         |
//! | `pop3.rs`     | one connection: drives `postern::pop3::Session` over a socket  |
//! | `users.rs`    | the POP3 accounts, credentials checked in constant time        |
//! | `maildrop.rs` | a user's Maildir as a `postern::pop3::Maildrop`, with its lock |
//! | `shutdown.rs` | the shutdown flag and grace period                             |
//! | `log.rs`      | one line per event on stderr                                   |
//!
//! postern never reads the clock, touches a socket or spawns a thread: all of that is
//! here, and the library only sees bytes, times and decisions.

// The application owns the clock; the library bans reading it (clippy.toml), so the
// ban is lifted here, where `Instant::now()` and `SystemTime::now()` belong.
#![allow(clippy::disallowed_methods)]

mod cli;
mod log;
mod maildir;
mod maildrop;
mod policy;
mod pop3;
mod shutdown;
mod smtp;
mod users;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use postern::smtp::{Config, EnhancedStatus, Reply};

use crate::log::Log;
use crate::maildir::Maildir;
use crate::policy::Policy;
use crate::pop3::Pop3Gateway;
use crate::shutdown::Shutdown;
use crate::smtp::Gateway;
use crate::users::Users;

/// Connections served at once per listener; more are told to come back later (SMTP
/// `421 4.7.0`, POP3 `-ERR [SYS/TEMP]`). Admission control proper (per-address limits,
/// reputation) comes in a later version.
const MAX_CONNECTIONS: usize = 256;
/// How long an accept loop sleeps when no connection is waiting.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

fn main() -> ExitCode {
    let args = match cli::parse(std::env::args_os().skip(1)) {
        Ok(cli::Parsed::Run(args)) => args,
        Ok(cli::Parsed::Help) => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            Log::server().line(format_args!("fatal: {e}"));
            ExitCode::FAILURE
        }
    }
}

fn run(args: cli::Args) -> io::Result<()> {
    let log = Log::server();

    let mut config = Config::new(args.hostname.clone());
    if let Some(size) = args.max_message_size {
        config.limits.message_size = size;
    }
    // No TLS in this version: STARTTLS is neither offered nor accepted.
    config.starttls = false;

    let mut pop3_config = postern::pop3::Config::new(args.hostname.clone());
    // No TLS in this version: STLS is not offered, and logins are refused ("use STLS")
    // unless the loopback demo switch allows them in plaintext.
    pop3_config.stls = false;
    pop3_config.allow_plaintext_auth = args.allow_plaintext_auth;
    pop3_config.sasl_mechanisms = vec!["PLAIN".into()];

    let maildir = Maildir::open(&args.maildir, &args.hostname)
        .map_err(|e| io::Error::new(e.kind(), format!("maildir {}: {e}", args.maildir.display())))?;
    let smtp_listener = TcpListener::bind(args.smtp)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", args.smtp)))?;
    let pop3_listener = TcpListener::bind(args.pop3)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", args.pop3)))?;
    let (smtp_local, pop3_local) = (smtp_listener.local_addr()?, pop3_listener.local_addr()?);

    let shutdown = Arc::new(Shutdown::new(args.grace));
    let pop3 = Arc::new(Pop3Gateway {
        config: Arc::new(pop3_config),
        users: Users::new(&args.users),
        maildir: maildir.root().to_path_buf(),
        shutdown: Arc::clone(&shutdown),
    });
    let gateway = Arc::new(Gateway {
        config: Arc::new(config),
        policy: Policy::new(args.domains.clone()),
        maildir,
        shutdown: Arc::clone(&shutdown),
    });

    let on_signal = Arc::clone(&shutdown);
    ctrlc::set_handler(move || {
        if on_signal.request(Instant::now()) {
            Log::server().line(format_args!("Ctrl-C: shutting down (Ctrl-C again to quit at once)"));
        } else {
            std::process::exit(130);
        }
    })
    .map_err(|e| io::Error::other(format!("cannot install the Ctrl-C handler: {e}")))?;

    log.line(format_args!(
        "listening on smtp://{smtp_local}, hostname {}, maildir {}, domains {}, max message size {} octets",
        gateway.config.hostname,
        gateway.maildir.root().display(),
        gateway.policy.domains().join(","),
        gateway.config.limits.message_size,
    ));
    let names = pop3.users.names();
    log.line(format_args!(
        "listening on pop3://{pop3_local}, users {}, plaintext logins {}",
        if names.is_empty() { "(none: add --user NAME:PASSWORD)".to_owned() } else { names.join(",") },
        if args.allow_plaintext_auth { "allowed (--allow-plaintext-auth)" } else { "refused (no TLS yet)" },
    ));
    print_try_it(smtp_local, pop3_local, &args);

    // Connection ids are unique across both listeners, so `grep conn=42` is one session.
    let ids = Arc::new(AtomicU64::new(1));
    let pop3_loop = {
        let (pop3, ids) = (Arc::clone(&pop3), Arc::clone(&ids));
        let shutdown = Arc::clone(&shutdown);
        thread::Builder::new().name("pop3-accept".into()).spawn(move || {
            accept_loop("pop3", pop3_listener, &shutdown, &ids, refuse_busy_pop3, move |stream, peer, id| {
                pop3::serve(&pop3, stream, peer, id)
            })
        })?
    };
    let hostname = gateway.config.hostname.clone();
    accept_loop(
        "smtp",
        smtp_listener,
        &shutdown,
        &ids,
        move |stream| refuse_busy_smtp(stream, &hostname),
        move |stream, peer, id| smtp::serve(&gateway, stream, peer, id),
    );
    if pop3_loop.join().is_err() {
        log.line(format_args!("the POP3 listener panicked"));
    }
    log.line(format_args!("shut down cleanly"));
    Ok(())
}

/// Accepts connections until shutdown, one thread each (`serve(stream, peer, id)`),
/// at most [`MAX_CONNECTIONS`] at once (`refuse` answers the others). Then closes the
/// listener and waits for the running sessions: each ends by itself within the grace
/// period.
fn accept_loop<S>(
    protocol: &str,
    listener: TcpListener,
    shutdown: &Shutdown,
    ids: &AtomicU64,
    refuse: impl Fn(&TcpStream),
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
        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            refuse(&stream);
            Log::conn(id)
                .line(format_args!("refused {peer}: {MAX_CONNECTIONS} {protocol} connections already"));
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let (serve, count) = (Arc::clone(&serve), Arc::clone(&active));
        let spawned = thread::Builder::new().name(format!("{protocol}-{id}")).spawn(move || {
            serve(stream, peer, id);
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

/// `421 4.7.0` to an SMTP connection over the limit, without starting a session for it.
fn refuse_busy_smtp(stream: &TcpStream, hostname: &str) {
    let mut out = Vec::new();
    let text = format!("{hostname} Too many connections, try again later");
    Reply::new(421, EnhancedStatus::new(4, 7, 0), text).write_to(&mut out);
    write_and_forget(stream, &out);
}

/// `-ERR [SYS/TEMP]` to a POP3 connection over the limit (RFC 3206: a temporary problem).
fn refuse_busy_pop3(stream: &TcpStream) {
    let mut out = Vec::new();
    let reply = postern::pop3::Reply::err(
        Some(postern::pop3::ResponseCode::SysTemp),
        "too many connections, try again later",
    );
    reply.write_to(&mut out);
    write_and_forget(stream, &out);
}

/// Writes a last word to a connection that gets no session; errors do not matter.
fn write_and_forget(stream: &TcpStream, bytes: &[u8]) {
    use std::io::Write as _;
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let mut s = stream;
    let _ = s.write_all(bytes);
}

/// Tells the user how to send a first message and read it back.
fn print_try_it(smtp: SocketAddr, pop3: SocketAddr, args: &cli::Args) {
    let (smtp, pop3) = (reachable(smtp), reachable(pop3));
    let domain = args.domains.first().map_or("example.test", String::as_str);
    let user = args.users.first().map_or("alice", |u| u.name.as_str());
    println!("Try it:");
    println!(
        "  swaks --server {} --port {} --from bob@sender.test --to {user}@{domain}",
        smtp.ip(),
        smtp.port()
    );
    println!("  curl smtp://{smtp} --mail-from bob@sender.test --mail-rcpt {user}@{domain} -T message.eml");
    if args.users.is_empty() || !args.allow_plaintext_auth {
        println!(
            "To read it over POP3, restart with --user {user}:PASSWORD --allow-plaintext-auth \
             (plaintext logins: a loopback demo until TLS lands)."
        );
    } else {
        // Both prompt for the password: it is not printed here.
        println!("  curl -u {user} pop3://{pop3}/1        # RETR 1 (pop3://{pop3}/ lists)");
        println!(
            "  python3 -c \"import poplib,getpass; p=poplib.POP3('{}',{}); p.user('{user}'); \
             p.pass_(getpass.getpass()); print(p.list()); print(b'\\n'.join(p.retr(1)[1]).decode()); p.quit()\"",
            pop3.ip(),
            pop3.port()
        );
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
