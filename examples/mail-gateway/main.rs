//! The postern example mail gateway: receives mail over SMTP and delivers it into
//! Maildirs, one thread per connection on `std::net`.
//!
//! ```text
//! cargo run --release --example mail-gateway -- --help
//! ```
//!
//! | module        | concern                                                        |
//! |---------------|----------------------------------------------------------------|
//! | `main.rs`     | startup, the listener, Ctrl-C and shutdown                     |
//! | `cli.rs`      | command-line arguments                                         |
//! | `smtp.rs`     | one connection: drives `postern::smtp::Session` over a socket  |
//! | `policy.rs`   | which recipients are accepted                                  |
//! | `maildir.rs`  | delivery into Maildirs                                         |
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
mod policy;
mod shutdown;
mod smtp;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use postern::smtp::{Config, EnhancedStatus, Reply};

use crate::log::Log;
use crate::maildir::Maildir;
use crate::policy::Policy;
use crate::shutdown::Shutdown;
use crate::smtp::Gateway;

/// Connections served at once; more are told to come back later (`421 4.7.0`).
/// Admission control proper (per-address limits, reputation) comes in a later version.
const MAX_CONNECTIONS: usize = 256;
/// How long the accept loop sleeps when no connection is waiting.
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

    let maildir = Maildir::open(&args.maildir, &args.hostname)
        .map_err(|e| io::Error::new(e.kind(), format!("maildir {}: {e}", args.maildir.display())))?;
    let listener = TcpListener::bind(args.smtp)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", args.smtp)))?;
    let local = listener.local_addr()?;

    let gateway = Arc::new(Gateway {
        config: Arc::new(config),
        policy: Policy::new(args.domains.clone()),
        maildir,
        shutdown: Shutdown::new(args.grace),
    });

    let on_signal = Arc::clone(&gateway);
    ctrlc::set_handler(move || {
        if on_signal.shutdown.request(Instant::now()) {
            Log::server().line(format_args!("Ctrl-C: shutting down (Ctrl-C again to quit at once)"));
        } else {
            std::process::exit(130);
        }
    })
    .map_err(|e| io::Error::other(format!("cannot install the Ctrl-C handler: {e}")))?;

    log.line(format_args!(
        "listening on smtp://{local}, hostname {}, maildir {}, domains {}, max message size {} octets",
        gateway.config.hostname,
        gateway.maildir.root().display(),
        gateway.policy.domains().join(","),
        gateway.config.limits.message_size,
    ));
    print_try_it(local, &args.domains);

    listener.set_nonblocking(true)?;
    let active = Arc::new(AtomicUsize::new(0));
    let mut workers: Vec<thread::JoinHandle<()>> = Vec::new();
    let mut next_id: u64 = 1;
    while !gateway.shutdown.is_requested() {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                workers.retain(|w| !w.is_finished());
                thread::sleep(ACCEPT_POLL);
                continue;
            }
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                log.line(format_args!("accept failed: {e}"));
                thread::sleep(ACCEPT_POLL);
                continue;
            }
        };
        let id = next_id;
        next_id += 1;
        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            refuse_busy(&stream, &gateway.config.hostname);
            Log::conn(id).line(format_args!("refused {peer}: {MAX_CONNECTIONS} connections already"));
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let (gw, count) = (Arc::clone(&gateway), Arc::clone(&active));
        let spawned = thread::Builder::new().name(format!("conn-{id}")).spawn(move || {
            smtp::serve(&gw, stream, peer, id);
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
        "stopped accepting; {running} session(s) running, grace period {}s",
        args.grace.as_secs()
    ));
    for worker in workers {
        let _ = worker.join();
    }
    log.line(format_args!("shut down cleanly"));
    Ok(())
}

/// `421 4.7.0` to a connection over the limit, without starting a session for it.
fn refuse_busy(stream: &std::net::TcpStream, hostname: &str) {
    use std::io::Write as _;
    let mut out = Vec::new();
    let text = format!("{hostname} Too many connections, try again later");
    Reply::new(421, EnhancedStatus::new(4, 7, 0), text).write_to(&mut out);
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let mut s = stream;
    let _ = s.write_all(&out);
}

/// Tells the user how to send a first message.
fn print_try_it(local: SocketAddr, domains: &[String]) {
    let ip = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let server = SocketAddr::new(ip, local.port());
    let domain = domains.first().map_or("example.test", String::as_str);
    println!("Try it:");
    println!("  swaks --server {} --port {} --from bob@sender.test --to alice@{domain}", ip, local.port());
    println!("  curl smtp://{server} --mail-from bob@sender.test --mail-rcpt alice@{domain} -T message.eml");
    println!("Press Ctrl-C to stop.");
}
