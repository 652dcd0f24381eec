//! The distributed GCRA against a real redis-server on loopback, spoken to over a plain
//! `TcpStream` with the crate's own RESP encoder and parser.
//!
//! The test starts its own `redis-server` (no persistence, a free port) and kills it on drop.
//! Without `redis-server` on the PATH it fails when `CI=true` and is skipped otherwise.
#![cfg(feature = "limit")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread::sleep;
use std::time::Duration;

use postern::limit::{
    Algorithm, Decision, DistributedGcra, Gcra, GcraState, Nanos, RedisCommand, RedisReply, encode_command,
};

/// The tests take turns: one redis-server and one client at a time. (A connection reset
/// mid-test was seen once in CI with the three tests running side by side; serialising
/// them removes any interference between their servers, at a cost of ~0.1 s.)
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

struct Server {
    child: Child,
    port: u16,
    /// redis-server's own log, printed if the test fails.
    log: PathBuf,
    _turn: MutexGuard<'static, ()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("redis-server log ({}):\n{log}", self.log.display());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Start a private redis-server, or `None` (skip) when it is not installed outside CI.
fn start_server() -> Option<Server> {
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = std::env::temp_dir().join(format!("postern-redis-{}-{port}.log", std::process::id()));
    let spawned = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn();
    let child = match spawned {
        Ok(c) => c,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "redis-server is not installed but CI=true: .ci/run must install it"
            );
            eprintln!("SKIP limit_redis: redis-server not found (apt-get install redis-server)");
            let _ = std::fs::remove_file(&log);
            return None;
        }
        Err(e) => panic!("starting redis-server: {e}"),
    };
    let server = Server { child, port, log, _turn: turn };
    for _ in 0..200 {
        if let Ok(mut c) = server.connect_once()
            && call(&mut c, &encode_command(&["PING"])) == RedisReply::Simple("PONG".into())
        {
            return Some(server);
        }
        sleep(Duration::from_millis(25));
    }
    panic!("redis-server did not come up on port {port}");
}

impl Server {
    fn connect_once(&self) -> std::io::Result<TcpStream> {
        let c = TcpStream::connect(("127.0.0.1", self.port))?;
        c.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(c)
    }

    fn connect(&self) -> TcpStream {
        self.connect_once().unwrap()
    }
}

/// Send one request and read exactly one reply.
fn call(conn: &mut TcpStream, request: &[u8]) -> RedisReply {
    conn.write_all(request).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((reply, used)) = RedisReply::parse(&buf).unwrap() {
            assert_eq!(used, buf.len(), "one reply per request");
            return reply;
        }
        let n = conn.read(&mut chunk).unwrap();
        assert!(n > 0, "redis closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn check(conn: &mut TcpStream, limit: &DistributedGcra, key: &str, now_us: u64) -> Decision {
    let cmd: RedisCommand = limit.command(key, now_us);
    limit.interpret(&call(conn, &cmd.to_resp())).unwrap()
}

const T0: u64 = 1_700_000_000_123_456; // a realistic Unix time in µs (16 digits)
const SEC: u64 = 1_000_000;

#[test]
fn distributed_gcra_against_redis() {
    let Some(server) = start_server() else { return };
    let mut conn = server.connect();
    // 10 per minute, bursts of 3: interval 6 s.
    let limit = DistributedGcra::new(10, Duration::from_secs(60), 3, "postern:test:conn:").unwrap();

    // Burst of 3 allowed, then denied with the exact wait.
    for _ in 0..3 {
        assert_eq!(check(&mut conn, &limit, "192.0.2.7", T0), Decision::Allow);
    }
    assert_eq!(
        check(&mut conn, &limit, "192.0.2.7", T0),
        Decision::Deny { retry_after: Duration::from_secs(6) }
    );
    // 1.5 s later the wait has shrunk by exactly that much.
    assert_eq!(
        check(&mut conn, &limit, "192.0.2.7", T0 + 1_500_000),
        Decision::Deny { retry_after: Duration::from_micros(4_500_000) }
    );
    // The key has a TTL (memory bounded by active clients) of at most the burst window.
    let pttl = call(&mut conn, &encode_command(&["PTTL", "postern:test:conn:192.0.2.7"]));
    let RedisReply::Integer(ms) = pttl else { panic!("PTTL reply {pttl:?}") };
    assert!(ms > 0 && ms <= 18_000, "PTTL {ms}");
    // Stored TAT is exact at 16-digit microsecond precision.
    let tat = call(&mut conn, &encode_command(&["GET", "postern:test:conn:192.0.2.7"]));
    assert_eq!(tat, RedisReply::Bulk((T0 + 18 * SEC).to_string().into_bytes()));

    // After waiting (a later `now`) allowed again, once.
    assert_eq!(check(&mut conn, &limit, "192.0.2.7", T0 + 6 * SEC), Decision::Allow);
    assert!(!check(&mut conn, &limit, "192.0.2.7", T0 + 6 * SEC).is_allowed());
    // Other keys are independent.
    assert_eq!(check(&mut conn, &limit, "198.51.100.1", T0), Decision::Allow);

    // Weights: above the burst never, zero always, and nothing is written for either.
    let never = limit.command_n("heavy", 4, T0);
    assert_eq!(
        limit.interpret(&call(&mut conn, &never.to_resp())).unwrap().retry_after(),
        Some(Duration::MAX)
    );
    let zero = limit.command_n("heavy", 0, T0);
    assert_eq!(limit.interpret(&call(&mut conn, &zero.to_resp())).unwrap(), Decision::Allow);
    let exists = call(&mut conn, &encode_command(&["EXISTS", "postern:test:conn:heavy"]));
    assert_eq!(exists, RedisReply::Integer(0));
}

#[test]
fn two_servers_share_the_quota() {
    let Some(server) = start_server() else { return };
    // Two mail servers: separate limiter values and connections, same prefix and quota.
    let a = DistributedGcra::new(5, Duration::from_secs(10), 4, "postern:shared:").unwrap();
    let b = DistributedGcra::new(5, Duration::from_secs(10), 4, "postern:shared:").unwrap();
    let (mut ca, mut cb) = (server.connect(), server.connect());
    let mut allowed = 0;
    for i in 0..8 {
        let d = if i % 2 == 0 { check(&mut ca, &a, "alice", T0) } else { check(&mut cb, &b, "alice", T0) };
        allowed += u32::from(d.is_allowed());
    }
    assert_eq!(allowed, 4, "the burst is shared, not per server");
    // Both see the same wait (interval 2 s after the shared burst).
    assert_eq!(check(&mut ca, &a, "alice", T0).retry_after(), Some(Duration::from_secs(2)));
    assert_eq!(check(&mut cb, &b, "alice", T0 + SEC).retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(check(&mut cb, &b, "alice", T0 + 2 * SEC), Decision::Allow);
    assert!(!check(&mut ca, &a, "alice", T0 + 2 * SEC).is_allowed());

    // A different prefix is a different limiter.
    let other = DistributedGcra::new(5, Duration::from_secs(10), 4, "postern:other:").unwrap();
    assert_eq!(check(&mut ca, &other, "alice", T0), Decision::Allow);

    // An error reply from the store surfaces as an error, not a decision.
    let bad = call(&mut ca, &encode_command(&["EVAL", "return redis.error_reply('boom')", "0"]));
    assert!(a.interpret(&bad).is_err());
}

#[test]
fn same_decisions_as_the_local_gcra() {
    let Some(server) = start_server() else { return };
    let mut conn = server.connect();
    let gcra = Gcra::new(5, Duration::from_secs(7), 3).unwrap();
    let dist = DistributedGcra::from_gcra(&gcra, "postern:equiv:").unwrap();
    assert_eq!(dist.interval(), gcra.interval(), "interval is whole microseconds here");
    let mut state = GcraState::default();
    // A deterministic pseudo-random walk of arrival times.
    let mut t = 0u64;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..300 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t += x % 700_000;
        let local = gcra.check(&mut state, Nanos(t * 1000));
        assert_eq!(check(&mut conn, &dist, "k", T0 + t), local, "at +{t} µs");
    }
}
