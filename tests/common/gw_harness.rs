//! Harness for the real-client tests: runs the `mail-gateway` example on loopback,
//! drives external programs with hard time limits, and reads what landed in the Maildir.
//!
//! Everything is bounded: every child process is killed after its time limit, every
//! socket has read and write timeouts, and the gateway is killed when the test ends
//! (pass or fail) by [`Gateway`]'s `Drop`.

use std::fs;
use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Time limit for one client program.
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Read/write timeout on raw test sockets.
pub(crate) const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);
/// Time limit for building the example (a first build compiles the crate).
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// The mail-gateway example binary, built (or found up to date) once per test run.
///
/// `cargo test` builds examples only when it builds all targets; `cargo test --test
/// real_clients` does not, and an old binary would test old code. So this runs `cargo
/// build --example mail-gateway` into the test's own target directory and profile
/// (a no-op when it is fresh). Without cargo (the test binary run by hand) it uses the
/// binary next to the test, and fails clearly if there is none.
pub(crate) fn gateway_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        // <target>/<profile>/deps/real_clients-<hash>
        let profile_dir =
            exe.parent().and_then(Path::parent).expect("test binary is in <target>/<profile>/deps");
        let target_dir = profile_dir.parent().expect("<target>/<profile>");
        let binary =
            profile_dir.join("examples").join(format!("mail-gateway{}", std::env::consts::EXE_SUFFIX));
        if let Ok(cargo) = std::env::var("CARGO") {
            let mut cmd = Command::new(cargo);
            cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
                .args(["build", "--quiet", "--all-features", "--example", "mail-gateway", "--target-dir"])
                .arg(target_dir);
            match profile_dir.file_name().and_then(|n| n.to_str()) {
                Some("debug") => {}
                Some("release") => {
                    cmd.arg("--release");
                }
                Some(other) => {
                    cmd.args(["--profile", other]);
                }
                None => {}
            }
            let out = run(cmd, None, BUILD_TIMEOUT);
            assert!(
                out.status.success(),
                "building the mail-gateway example failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            binary.is_file(),
            "the mail-gateway example is not built: expected {}. Run `cargo build --all-features \
             --example mail-gateway` (same profile and target directory) or run the tests with cargo.",
            binary.display()
        );
        binary
    })
}

/// `true` if `tool` can run. A missing tool fails the test in CI (`CI=true`) and skips it
/// elsewhere, with a notice.
pub(crate) fn require_tool(tool: &str) -> bool {
    require_tool_probed(tool, &["--version"])
}

/// [`require_tool`] for a tool that does not know `--version`: `probe` are arguments with
/// which it runs successfully (e.g. `openssl version`).
pub(crate) fn require_tool_probed(tool: &str, probe: &[&str]) -> bool {
    let found = Command::new(tool)
        .args(probe)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{tool} is required in CI");
    }
    // Written to stderr directly, past libtest's capture, so the skip is visible.
    let _ = writeln!(io::stderr(), "skipping: {tool} not installed");
    false
}

/// What a finished child process produced.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
}

impl Output {
    /// stdout and stderr as text, for assertions and failure messages.
    pub(crate) fn text(&self) -> String {
        format!("{}{}", String::from_utf8_lossy(&self.stdout), String::from_utf8_lossy(&self.stderr))
    }
}

/// Runs `cmd` with `stdin` as its input, killing it after `timeout` (and failing).
pub(crate) fn run(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let input = stdin.map(<[u8]>::to_vec);
    let mut child_in = child.stdin.take();
    let writer = thread::spawn(move || {
        if let (Some(pipe), Some(bytes)) = (child_in.as_mut(), input) {
            let _ = pipe.write_all(&bytes);
        }
        // Dropping the pipe closes the child's stdin.
    });
    let readers = [child.stdout.take().map(reader), child.stderr.take().map(reader)];
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let [out, err] = readers.map(|r| r.map(|h| h.join().unwrap_or_default()).unwrap_or_default());
            panic!(
                "{what} did not finish within {timeout:?}; killed.\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    let [stdout, stderr] = readers.map(|r| r.map(|h| h.join().unwrap_or_default()).unwrap_or_default());
    Output { status, stdout, stderr }
}

fn reader(mut pipe: impl io::Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// A message file found in a Maildir's `new/`.
#[derive(Debug, Clone)]
pub(crate) struct Delivered {
    /// The mailbox (recipient local part) directory name.
    pub(crate) mailbox: String,
    pub(crate) path: PathBuf,
    pub(crate) content: Vec<u8>,
}

impl Delivered {
    /// Splits the file into the `Received:` header the gateway prepended (with its
    /// folded continuation lines) and the message as the client sent it.
    pub(crate) fn split_received(&self) -> (String, &[u8]) {
        assert!(
            self.content.starts_with(b"Received: "),
            "{} does not start with a Received: header",
            self.path.display()
        );
        let mut end = 0;
        loop {
            let line_end = self.content[end..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .map(|p| end + p + 2)
                .unwrap_or_else(|| panic!("unterminated Received: header in {}", self.path.display()));
            end = line_end;
            // A continuation line starts with white space (RFC 5322 folding).
            if !matches!(self.content.get(end), Some(b' ' | b'\t')) {
                break;
            }
        }
        (String::from_utf8(self.content[..end].to_vec()).expect("Received: is UTF-8"), &self.content[end..])
    }
}

/// The `mail-gateway` example running on free loopback ports with its own Maildir.
/// Dropping it kills the process and removes the directory (kept if the test failed).
#[derive(Debug)]
pub(crate) struct Gateway {
    child: Child,
    /// The SMTP (MX, STARTTLS) listener.
    pub(crate) addr: SocketAddr,
    /// The POP3 (STLS) listener.
    pub(crate) pop3_addr: SocketAddr,
    /// The SMTP submission (STARTTLS, AUTH) listener.
    #[allow(dead_code)] // used by real_clients_tls only
    pub(crate) submission_addr: SocketAddr,
    /// The SMTP submission over implicit TLS listener.
    #[allow(dead_code)] // used by real_clients_tls only
    pub(crate) smtps_addr: SocketAddr,
    /// The POP3 over implicit TLS listener.
    #[allow(dead_code)] // used by real_clients_tls only
    pub(crate) pop3s_addr: SocketAddr,
    pub(crate) dir: PathBuf,
    pub(crate) maildir: PathBuf,
    log: PathBuf,
}

static INSTANCE: AtomicU32 = AtomicU32::new(0);

impl Gateway {
    /// Starts the gateway with `--smtp`, `--submission`, `--smtps`, `--pop3`, `--pop3s`
    /// (free loopback ports), `--maildir` and `args`, and waits until every listener
    /// accepts connections. Without `--cert` in `args`, the gateway generates its demo CA
    /// into [`ca`](Self::ca).
    pub(crate) fn start(name: &str, args: &[&str]) -> Gateway {
        let binary = gateway_binary();
        let n = INSTANCE.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("postern-gw-{}-{name}-{n}", std::process::id()));
        let maildir = dir.join("Maildir");
        let log = dir.join("gateway.log");
        // The free port is released before the gateway binds it; another process may
        // take it in between, so try again a few times.
        for _ in 0..5 {
            // (A failed attempt's Drop removed the directory.)
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("create the test directory");
            // All ports are held at once, so they differ.
            let held: Vec<TcpListener> =
                (0..5).map(|_| TcpListener::bind("127.0.0.1:0").expect("free port")).collect();
            let ports: Vec<SocketAddr> = held.iter().map(|l| l.local_addr().expect("free port")).collect();
            drop(held);
            let [addr, submission_addr, smtps_addr, pop3_addr, pop3s_addr] = ports[..] else {
                unreachable!("five ports")
            };
            let child = Command::new(binary)
                .arg("--smtp")
                .arg(addr.to_string())
                .arg("--submission")
                .arg(submission_addr.to_string())
                .arg("--smtps")
                .arg(smtps_addr.to_string())
                .arg("--pop3")
                .arg(pop3_addr.to_string())
                .arg("--pop3s")
                .arg(pop3s_addr.to_string())
                .arg("--maildir")
                .arg(&maildir)
                // Scanners and multi-connection tests would exceed the default per-client
                // connection rate; a test of the limits passes its own (the last one counts).
                .args(["--conn-rate", "off"])
                // PBKDF2 at the default 100 000 iterations takes ~0.3 s per login in a
                // debug build; tests that log in often do not need the cost.
                .args(["--hash-iterations", "1000"])
                // Message authentication adds Authentication-Results (and would do real
                // DNS lookups): off unless a test turns it on (tests/real_clients_msgauth.rs).
                .args(["--msgauth", "off"])
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).expect("create the log file"))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let mut gw = Gateway {
                child,
                addr,
                pop3_addr,
                submission_addr,
                smtps_addr,
                pop3s_addr,
                dir: dir.clone(),
                maildir: maildir.clone(),
                log: log.clone(),
            };
            if gw.wait_ready() {
                return gw;
            }
            if !gw.log().contains("cannot listen") {
                panic!("the gateway did not start:\n{}", gw.log());
            }
        }
        panic!("could not find a free port for the gateway");
    }

    /// Waits until the gateway is listening on every port; `false` if the process exited.
    ///
    /// The gateway binds all its listeners, then logs `listening on ...`: waiting for that
    /// line rather than probing the ports keeps probe connections (and failed TLS
    /// handshakes on the implicit-TLS ports) out of the log.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if self.log().contains(" server listening on ") {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("the gateway did not start listening within 15 s:\n{}", self.log());
    }

    /// The SMTP port.
    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The POP3 port.
    #[allow(dead_code)] // used by real_clients_pop3 only
    pub(crate) fn pop3_port(&self) -> u16 {
        self.pop3_addr.port()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The demo CA certificate the gateway generated (`<maildir>/../postern-ca.pem`).
    #[allow(dead_code)] // used by real_clients_tls only
    pub(crate) fn ca(&self) -> PathBuf {
        self.dir.join("postern-ca.pem")
    }

    /// What the gateway logged so far.
    pub(crate) fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `timeout` for the process to exit.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every message in every mailbox's `new/`, sorted by mailbox and file name.
    pub(crate) fn delivered(&self) -> Vec<Delivered> {
        let mut found = Vec::new();
        for (mailbox, dir) in self.mailboxes() {
            for entry in fs::read_dir(dir.join("new")).into_iter().flatten().flatten() {
                let path = entry.path();
                let content = fs::read(&path).expect("read a delivered message");
                found.push(Delivered { mailbox: mailbox.clone(), path, content });
            }
        }
        found.sort_by(|a, b| (&a.mailbox, &a.path).cmp(&(&b.mailbox, &b.path)));
        found
    }

    /// Files left in any `tmp/` (an unfinished delivery that was not cleaned up).
    pub(crate) fn tmp_files(&self) -> Vec<PathBuf> {
        self.mailboxes()
            .into_iter()
            .flat_map(|(_, dir)| fs::read_dir(dir.join("tmp")).into_iter().flatten().flatten())
            .map(|e| e.path())
            .collect()
    }

    fn mailboxes(&self) -> Vec<(String, PathBuf)> {
        fs::read_dir(&self.maildir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect()
    }

    /// A raw SMTP connection, past the greeting.
    pub(crate) fn connect(&self) -> RawClient {
        RawClient::connect(self.addr)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("gateway log ({}):\n{}", self.log.display(), self.log());
            eprintln!("test files kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A hand-driven SMTP client for what no real client will send.
#[derive(Debug)]
pub(crate) struct RawClient {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
    pub(crate) greeting: String,
}

impl RawClient {
    pub(crate) fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect_timeout(&addr, SOCKET_TIMEOUT).expect("connect to the gateway");
        stream.set_read_timeout(Some(SOCKET_TIMEOUT)).expect("read timeout");
        stream.set_write_timeout(Some(SOCKET_TIMEOUT)).expect("write timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone the stream"));
        let mut client = RawClient { reader, stream, greeting: String::new() };
        client.greeting = client.reply();
        assert!(client.greeting.starts_with("220 "), "greeting: {:?}", client.greeting);
        client
    }

    /// Sends bytes as they are.
    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to the gateway");
    }

    /// Reads one complete (possibly multi-line) reply; empty at end of stream.
    pub(crate) fn reply(&mut self) -> String {
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return reply,
                Ok(_) => {}
                Err(e) => panic!("reading a reply failed: {e} (so far: {reply:?})"),
            }
            reply.push_str(&line);
            // The last line of a reply has a space after the code.
            if line.as_bytes().get(3) != Some(&b'-') {
                return reply;
            }
        }
    }

    /// Sends one command line (CRLF added) and reads its reply.
    pub(crate) fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Reads until the server closes the connection; returns everything read.
    pub(crate) fn read_to_end(&mut self) -> String {
        let mut rest = String::new();
        let _ = self.reader.read_to_string(&mut rest);
        rest
    }
}

/// The audit-verify example, built like the gateway (same profile and target directory).
#[allow(dead_code)] // used by the tests that read the audit trail
pub(crate) fn audit_verify_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let gateway = gateway_binary();
        let examples = gateway.parent().expect("examples dir");
        let binary = examples.join(format!("audit-verify{}", std::env::consts::EXE_SUFFIX));
        if let Ok(cargo) = std::env::var("CARGO") {
            let profile_dir = examples.parent().expect("profile dir");
            let target_dir = profile_dir.parent().expect("target dir");
            let mut cmd = Command::new(cargo);
            cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
                .args(["build", "--quiet", "--all-features", "--example", "audit-verify", "--target-dir"])
                .arg(target_dir);
            if profile_dir.file_name().and_then(|n| n.to_str()) == Some("release") {
                cmd.arg("--release");
            }
            let out = run(cmd, None, Duration::from_secs(600));
            assert!(out.status.success(), "building audit-verify failed:\n{}", out.text());
        }
        assert!(binary.is_file(), "audit-verify is not built: expected {}", binary.display());
        binary
    })
}

/// Runs `audit-verify DIR EXTRA...` with the client time limit.
#[allow(dead_code)] // used by the tests that read the audit trail
pub(crate) fn audit_verify(dir: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(audit_verify_binary());
    cmd.arg(dir).args(extra);
    run(cmd, None, CLIENT_TIMEOUT)
}
