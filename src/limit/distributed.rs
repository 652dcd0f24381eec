//! Distributed mode: a [`Gcra`] whose state lives in a shared store (Redis), without I/O here.
//!
//! A cluster of mail servers shares one quota per client by keeping the GCRA's theoretical
//! arrival time (TAT) in Redis. The library never talks to Redis: [`DistributedGcra::command`]
//! expresses one check as an `EVAL` of a Lua script (atomic on the server), the application
//! sends it with whatever client it likes (or [`RedisCommand::to_resp`] over a plain
//! `TcpStream`), and [`DistributedGcra::interpret`] turns the reply into a [`Decision`].
//!
//! **Time.** The caller passes the current time as Unix microseconds (`now_unix_micros`), the
//! same way every other limiter here takes `now` as an argument: decisions stay a pure
//! function of their inputs and tests need no sleeping. The script does not call Redis `TIME`
//! because then the store's clock, not the application's, would decide, and a check could not
//! be replayed or tested deterministically. The price: **all servers of a cluster must agree
//! on the time** (run NTP); a server whose clock runs `d` ahead effectively grants its clients
//! up to `d / interval` extra uses, and one running behind sees denials up to `d` longer.
//! Times never go backwards in the stored state (the TAT only grows), so skew cannot corrupt it.
//!
//! **Memory.** Each key is written with `SET key tat PX ttl`, where `ttl` is the time until the
//! TAT: from then on a missing key behaves exactly like the stored one, so Redis memory is
//! bounded by the clients active within one burst window. Keys are `prefix + key`, with a
//! prefix the application chooses (e.g. `"postern:conn:"`) to keep limiters apart.
//!
//! ```
//! use std::time::Duration;
//! use postern::limit::{Decision, DistributedGcra, RedisReply};
//!
//! let limit = DistributedGcra::new(10, Duration::from_secs(60), 3, "postern:conn:").unwrap();
//! let cmd = limit.command("192.0.2.7", 1_700_000_000_000_000);
//! assert_eq!(cmd.keys, vec!["postern:conn:192.0.2.7".to_string()]);
//! let _bytes = cmd.to_resp(); // send these to Redis, then parse its reply:
//! let reply = RedisReply::parse(b"*2\r\n:0\r\n:6000000\r\n").unwrap().unwrap().0;
//! assert_eq!(
//!     limit.interpret(&reply).unwrap(),
//!     Decision::Deny { retry_after: Duration::from_secs(6) }
//! );
//! ```

use std::time::Duration;

use super::{Decision, Gcra, LimitError};

/// The GCRA check as a Redis Lua script.
///
/// `KEYS[1]`: the key. `ARGV`: now (µs), emission interval (µs), tau = burst × interval (µs),
/// weight n. Reply: `{1, 0}` allowed (and recorded), `{0, wait_us}` denied, `{0, -1}` never
/// (a weight above the burst). Integers are formatted with `%d` because Lua 5.1's default
/// number formatting (`%.14g`) would round 16-digit microsecond timestamps.
const GCRA_SCRIPT: &str = r"local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tau = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
if n <= 0 then return {1, 0} end
local increment = interval * n
if increment > tau then return {0, -1} end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local new_tat = tat + increment
local allow_at = new_tat - tau
if allow_at > now then return {0, allow_at - now} end
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', string.format('%d', ttl_ms))
return {1, 0}
";

/// Largest bulk string [`RedisReply::parse`] accepts (1 MiB).
pub const MAX_BULK_LEN: usize = 1 << 20;
/// Largest array [`RedisReply::parse`] accepts (elements).
pub const MAX_ARRAY_LEN: usize = 1024;
/// Deepest nesting of arrays [`RedisReply::parse`] accepts.
pub const MAX_DEPTH: usize = 8;
/// Longest header line (type byte to CRLF) [`RedisReply::parse`] accepts.
pub const MAX_LINE_LEN: usize = 64 * 1024;

/// A [`Gcra`] quota whose state is kept in Redis and shared by every server using it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistributedGcra {
    interval_us: u64,
    tau_us: u64,
    prefix: String,
}

/// One command for the store: `EVAL script numkeys keys... args...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisCommand {
    /// The Lua script (also available as [`DistributedGcra::script`] for `SCRIPT LOAD`).
    pub script: &'static str,
    /// The keys (`KEYS` in the script).
    pub keys: Vec<String>,
    /// The arguments (`ARGV` in the script).
    pub args: Vec<String>,
}

/// A Redis reply, as built by the application from its client's reply or by [`RedisReply::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisReply {
    /// An integer reply (`:`).
    Integer(i64),
    /// A simple string (`+`), e.g. `OK`.
    Simple(String),
    /// A bulk string (`$`).
    Bulk(Vec<u8>),
    /// An array (`*`).
    Array(Vec<RedisReply>),
    /// A nil bulk string or array (`$-1`, `*-1`, RESP3 `_`).
    Nil,
    /// An error reply (`-`), e.g. `NOSCRIPT ...` or `ERR ...`.
    Error(String),
}

/// Failures of the distributed mode: a store error, an unexpected reply, or bad RESP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DistributedError {
    /// The store answered with an error reply.
    #[error("store error: {0}")]
    Store(String),
    /// The reply does not have the shape the script returns.
    #[error("unexpected reply: {0}")]
    UnexpectedReply(&'static str),
    /// The bytes are not valid RESP.
    #[error("RESP protocol error: {0}")]
    Protocol(&'static str),
    /// A reply exceeds the parser's bounds ([`MAX_BULK_LEN`], [`MAX_ARRAY_LEN`], [`MAX_DEPTH`],
    /// [`MAX_LINE_LEN`]).
    #[error("RESP reply too large: {0}")]
    TooLarge(&'static str),
}

impl DistributedGcra {
    /// `count` uses per `period`, bursts of up to `burst`, keys prefixed with `prefix`.
    ///
    /// The emission interval is rounded up to the microsecond (never exceeding the rate).
    ///
    /// # Errors
    /// [`LimitError::InvalidQuota`] as for [`Gcra::new`].
    pub fn new(
        count: u32,
        period: Duration,
        burst: u32,
        prefix: impl Into<String>,
    ) -> Result<Self, LimitError> {
        Self::from_gcra(&Gcra::new(count, period, burst)?, prefix)
    }

    /// The quota of `gcra`, shared through the store.
    ///
    /// # Errors
    /// [`LimitError::InvalidQuota`] when the burst window does not fit in 2^53 microseconds
    /// (the exact integer range of the script's Lua numbers, 285 years).
    pub fn from_gcra(gcra: &Gcra, prefix: impl Into<String>) -> Result<Self, LimitError> {
        let interval_us = u64::try_from(gcra.interval().as_nanos().div_ceil(1000))
            .map_err(|_| LimitError::InvalidQuota("interval too long"))?;
        let tau_us = interval_us
            .checked_mul(u64::from(gcra.burst()))
            .filter(|t| *t < 1 << 53)
            .ok_or(LimitError::InvalidQuota("burst window too long for the store"))?;
        Ok(DistributedGcra { interval_us, tau_us, prefix: prefix.into() })
    }

    /// The Lua script, for `SCRIPT LOAD` and `EVALSHA` if the application prefers them.
    #[must_use]
    pub fn script() -> &'static str {
        GCRA_SCRIPT
    }

    /// The key prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The emission interval (whole microseconds).
    #[must_use]
    pub fn interval(&self) -> Duration {
        Duration::from_micros(self.interval_us)
    }

    /// The full store key for `key`: the prefix followed by `key`.
    #[must_use]
    pub fn store_key(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + key.len());
        k.push_str(&self.prefix);
        k.push_str(key);
        k
    }

    /// The command checking (and on success recording) one use of `key` at `now_unix_micros`.
    #[must_use]
    pub fn command(&self, key: &str, now_unix_micros: u64) -> RedisCommand {
        self.command_n(key, 1, now_unix_micros)
    }

    /// The command checking (and on success recording) `n` uses of `key` at `now_unix_micros`.
    /// `n == 0` is always allowed; `n` above the burst is always denied with [`Duration::MAX`].
    #[must_use]
    pub fn command_n(&self, key: &str, n: u32, now_unix_micros: u64) -> RedisCommand {
        RedisCommand {
            script: GCRA_SCRIPT,
            keys: vec![self.store_key(key)],
            args: vec![
                now_unix_micros.to_string(),
                self.interval_us.to_string(),
                self.tau_us.to_string(),
                n.to_string(),
            ],
        }
    }

    /// The decision in the store's reply to [`command`](Self::command).
    ///
    /// # Errors
    /// [`DistributedError::Store`] for an error reply, [`DistributedError::UnexpectedReply`]
    /// for anything but the script's two-integer array.
    pub fn interpret(&self, reply: &RedisReply) -> Result<Decision, DistributedError> {
        let items = match reply {
            RedisReply::Error(e) => return Err(DistributedError::Store(e.clone())),
            RedisReply::Array(items) => items,
            _ => return Err(DistributedError::UnexpectedReply("expected an array of two integers")),
        };
        match items.as_slice() {
            [RedisReply::Integer(1), RedisReply::Integer(_)] => Ok(Decision::Allow),
            [RedisReply::Integer(0), RedisReply::Integer(-1)] => Ok(Decision::NEVER),
            [RedisReply::Integer(0), RedisReply::Integer(wait)] if *wait > 0 => {
                Ok(Decision::Deny { retry_after: Duration::from_micros(wait.unsigned_abs()) })
            }
            _ => Err(DistributedError::UnexpectedReply("expected [1, 0], [0, wait > 0] or [0, -1]")),
        }
    }
}

/// Encode `args` as a RESP array of bulk strings (how clients send any command).
#[must_use]
pub fn encode_command<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.as_ref().len() + 16).sum::<usize>());
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        let a = a.as_ref();
        out.push(b'$');
        out.extend_from_slice(a.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl RedisCommand {
    /// The command's words: `EVAL`, the script, the number of keys, the keys, the arguments.
    #[must_use]
    pub fn to_args(&self) -> Vec<String> {
        let mut v = Vec::with_capacity(3 + self.keys.len() + self.args.len());
        v.push("EVAL".to_string());
        v.push(self.script.to_string());
        v.push(self.keys.len().to_string());
        v.extend(self.keys.iter().cloned());
        v.extend(self.args.iter().cloned());
        v
    }

    /// The command as RESP bytes, ready to write to a Redis connection.
    #[must_use]
    pub fn to_resp(&self) -> Vec<u8> {
        encode_command(&self.to_args())
    }
}

impl RedisReply {
    /// Parse one reply from the start of `buf`.
    ///
    /// `Ok(None)`: `buf` holds only part of a reply, read more. `Ok(Some((reply, used)))`: the
    /// reply and the bytes it took. Bulk strings, arrays, nesting and header lines are bounded
    /// by [`MAX_BULK_LEN`], [`MAX_ARRAY_LEN`], [`MAX_DEPTH`] and [`MAX_LINE_LEN`].
    ///
    /// # Errors
    /// [`DistributedError::Protocol`] for malformed input, [`DistributedError::TooLarge`]
    /// beyond the bounds.
    pub fn parse(buf: &[u8]) -> Result<Option<(RedisReply, usize)>, DistributedError> {
        parse_at(buf, 0, 0)
    }
}

/// The header line starting at `pos` (without CRLF) and the position after it.
fn line(buf: &[u8], pos: usize) -> Result<Option<(&[u8], usize)>, DistributedError> {
    let rest = buf.get(pos..).unwrap_or_default();
    match memchr::memmem::find(rest, b"\r\n") {
        Some(i) if i > MAX_LINE_LEN => Err(DistributedError::TooLarge("line")),
        Some(i) => Ok(Some((rest.get(..i).unwrap_or_default(), pos + i + 2))),
        None if rest.len() > MAX_LINE_LEN => Err(DistributedError::TooLarge("line")),
        None => Ok(None),
    }
}

fn int(text: &[u8]) -> Result<i64, DistributedError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(DistributedError::Protocol("invalid integer"))
}

/// A length: -1 is nil (`None`), other negatives are errors, above `max` is too large.
fn length(text: &[u8], max: usize, what: &'static str) -> Result<Option<usize>, DistributedError> {
    match int(text)? {
        -1 => Ok(None),
        n if n < 0 => Err(DistributedError::Protocol("negative length")),
        n => match usize::try_from(n) {
            Ok(n) if n <= max => Ok(Some(n)),
            _ => Err(DistributedError::TooLarge(what)),
        },
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn parse_at(buf: &[u8], pos: usize, depth: usize) -> Result<Option<(RedisReply, usize)>, DistributedError> {
    let Some(&kind) = buf.get(pos) else { return Ok(None) };
    let Some((head, next)) = line(buf, pos + 1)? else { return Ok(None) };
    let reply = match kind {
        b'+' => RedisReply::Simple(text(head)),
        b'-' => RedisReply::Error(text(head)),
        b':' => RedisReply::Integer(int(head)?),
        b'_' if head.is_empty() => RedisReply::Nil,
        b'$' => {
            let Some(len) = length(head, MAX_BULK_LEN, "bulk string")? else {
                return Ok(Some((RedisReply::Nil, next)));
            };
            let end = next + len;
            let Some(tail) = buf.get(end..end + 2) else { return Ok(None) };
            if tail != b"\r\n" {
                return Err(DistributedError::Protocol("bulk string not followed by CRLF"));
            }
            let data = buf.get(next..end).unwrap_or_default();
            return Ok(Some((RedisReply::Bulk(data.to_vec()), end + 2)));
        }
        b'*' => {
            let Some(count) = length(head, MAX_ARRAY_LEN, "array")? else {
                return Ok(Some((RedisReply::Nil, next)));
            };
            if depth >= MAX_DEPTH {
                return Err(DistributedError::TooLarge("nesting depth"));
            }
            let mut items = Vec::with_capacity(count.min(64));
            let mut at = next;
            for _ in 0..count {
                let Some((item, after)) = parse_at(buf, at, depth + 1)? else { return Ok(None) };
                items.push(item);
                at = after;
            }
            return Ok(Some((RedisReply::Array(items), at)));
        }
        _ => return Err(DistributedError::Protocol("unknown reply type")),
    };
    Ok(Some((reply, next)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> DistributedGcra {
        DistributedGcra::new(10, Duration::from_secs(60), 3, "p:").unwrap()
    }

    #[test]
    fn command_shape() {
        let c = lim().command("k", 42);
        assert_eq!(c.keys, ["p:k"]);
        assert_eq!(c.args, ["42", "6000000", "18000000", "1"]);
        let args = c.to_args();
        assert_eq!(args[0], "EVAL");
        assert_eq!(args[2], "1");
        assert_eq!(args[3], "p:k");
    }

    #[test]
    fn interval_rounds_up_to_micros() {
        let d = DistributedGcra::new(3, Duration::from_secs(1), 1, "").unwrap();
        assert_eq!(d.interval(), Duration::from_micros(333_334));
        assert!(DistributedGcra::new(1, Duration::from_secs(400 * 365 * 86_400), 1, "").is_err());
    }

    #[test]
    fn encoder() {
        assert_eq!(encode_command(&["PTTL", "k"]), b"*2\r\n$4\r\nPTTL\r\n$1\r\nk\r\n");
        let resp = lim().command("k", 1).to_resp();
        let (parsed, used) = RedisReply::parse(&resp).unwrap().unwrap();
        assert_eq!(used, resp.len());
        let RedisReply::Array(words) = parsed else { panic!() };
        assert_eq!(words.len(), 8);
        assert_eq!(words[0], RedisReply::Bulk(b"EVAL".to_vec()));
        assert_eq!(words[1], RedisReply::Bulk(GCRA_SCRIPT.as_bytes().to_vec()));
    }

    #[test]
    fn parse_scalars() {
        let p = |b: &[u8]| RedisReply::parse(b).unwrap().unwrap();
        assert_eq!(p(b":-12\r\n"), (RedisReply::Integer(-12), 6));
        assert_eq!(p(b"+OK\r\nextra"), (RedisReply::Simple("OK".into()), 5));
        assert_eq!(p(b"-ERR bad\r\n"), (RedisReply::Error("ERR bad".into()), 10));
        assert_eq!(p(b"$3\r\na\r\n\r\n"), (RedisReply::Bulk(b"a\r\n".to_vec()), 9));
        assert_eq!(p(b"$0\r\n\r\n"), (RedisReply::Bulk(Vec::new()), 6));
        assert_eq!(p(b"$-1\r\n"), (RedisReply::Nil, 5));
        assert_eq!(p(b"*-1\r\n"), (RedisReply::Nil, 5));
        assert_eq!(p(b"_\r\n"), (RedisReply::Nil, 3));
    }

    #[test]
    fn parse_nested_and_incomplete() {
        let full = b"*2\r\n*2\r\n:1\r\n$2\r\nab\r\n*0\r\n";
        let want = RedisReply::Array(vec![
            RedisReply::Array(vec![RedisReply::Integer(1), RedisReply::Bulk(b"ab".to_vec())]),
            RedisReply::Array(vec![]),
        ]);
        assert_eq!(RedisReply::parse(full).unwrap(), Some((want, full.len())));
        for cut in 0..full.len() {
            assert_eq!(RedisReply::parse(&full[..cut]).unwrap(), None, "prefix of {cut} bytes");
        }
    }

    #[test]
    fn parse_errors_and_bounds() {
        let e = |b: &[u8]| RedisReply::parse(b).unwrap_err();
        assert!(matches!(e(b"?x\r\n"), DistributedError::Protocol(_)));
        assert!(matches!(e(b":12a\r\n"), DistributedError::Protocol(_)));
        assert!(matches!(e(b"$-2\r\n"), DistributedError::Protocol(_)));
        assert!(matches!(e(b"$1\r\nab\r\n"), DistributedError::Protocol(_)));
        assert!(matches!(e(b"$1048577\r\n"), DistributedError::TooLarge(_)));
        assert!(matches!(e(b"*1025\r\n"), DistributedError::TooLarge(_)));
        assert!(matches!(e(b"$99999999999999999999999\r\n"), DistributedError::Protocol(_)));
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert!(matches!(e(&deep), DistributedError::TooLarge(_)));
        let ok_deep = [b"*1\r\n".repeat(MAX_DEPTH), b":1\r\n".to_vec()].concat();
        assert!(RedisReply::parse(&ok_deep).unwrap().is_some());
        let long = vec![b'+'; MAX_LINE_LEN + 2];
        assert!(matches!(e(&long), DistributedError::TooLarge(_)));
        // A huge declared bulk within bounds is just incomplete, not preallocated.
        assert_eq!(RedisReply::parse(b"$1048576\r\nabc").unwrap(), None);
    }

    #[test]
    fn interpret_replies() {
        let l = lim();
        let arr = |a: i64, b: i64| RedisReply::Array(vec![RedisReply::Integer(a), RedisReply::Integer(b)]);
        assert_eq!(l.interpret(&arr(1, 0)), Ok(Decision::Allow));
        assert_eq!(
            l.interpret(&arr(0, 6_000_000)),
            Ok(Decision::Deny { retry_after: Duration::from_secs(6) })
        );
        assert_eq!(l.interpret(&arr(0, -1)), Ok(Decision::NEVER));
        assert!(matches!(l.interpret(&arr(0, 0)), Err(DistributedError::UnexpectedReply(_))));
        assert!(matches!(l.interpret(&arr(2, 0)), Err(DistributedError::UnexpectedReply(_))));
        assert!(matches!(l.interpret(&RedisReply::Nil), Err(DistributedError::UnexpectedReply(_))));
        assert!(matches!(l.interpret(&RedisReply::Integer(1)), Err(DistributedError::UnexpectedReply(_))));
        assert_eq!(
            l.interpret(&RedisReply::Error("NOSCRIPT x".into())),
            Err(DistributedError::Store("NOSCRIPT x".into()))
        );
    }
}
