//! POP3 benches, side by side with rfc1939 1.0 and pop3-codec 0.3.
//!
//! - `pop3_command_parse`: postern's `Command::parse` against rfc1939's per-command
//!   parsers (behind the verb dispatch a server needs, and with the verb known in
//!   advance) and pop3-codec's `parse::command`, on the same command mix.
//! - `pop3_retr`: streaming a 10 MiB message (78-character `CRLF` lines, every 16th
//!   starting with a dot) through `Session::message_data` in 64 KiB chunks, draining the
//!   session's output into a reused `Vec` after each chunk, next to a plain memcpy of the
//!   same 10 MiB.
//!
//! Run with `cargo bench --bench pop3`; benches/README-pop3.md has the measured ratios.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::hint::black_box;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use postern::pop3::command::Command;
use postern::pop3::{Config, Event, MessageInfo, Session};

// ----- command parsing ---------------------------------------------------------------

/// The command mix: one of each command a client sends in a session, with its `CRLF`.
const MIX: &[&[u8]] = &[
    b"USER alice\r\n",
    b"PASS secret\r\n",
    b"STAT\r\n",
    b"LIST\r\n",
    b"LIST 1\r\n",
    b"UIDL 1\r\n",
    b"RETR 1\r\n",
    b"TOP 1 10\r\n",
    b"DELE 1\r\n",
    b"NOOP\r\n",
    b"RSET\r\n",
    b"QUIT\r\n",
];

/// postern's parser takes a line without its terminator (framing is the
/// `LineFramer`'s job): find the `LF` and strip the `CR` first, so every parser does the
/// same work from the same `CRLF`-terminated buffer.
fn postern_line(buf: &[u8]) -> &[u8] {
    let end = memchr::memchr(b'\n', buf).unwrap();
    let line = &buf[..end];
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// rfc1939's parsed commands (the crate has one parser per command and no dispatcher).
#[derive(Debug)]
#[allow(dead_code)]
enum Rfc1939<'a> {
    User(rfc1939::types::command::User<'a>),
    Pass(rfc1939::types::command::Pass<'a>),
    Apop(rfc1939::types::command::Apop<'a>),
    Stat(rfc1939::types::command::Stat),
    List(rfc1939::types::command::List),
    Retr(rfc1939::types::command::Retr),
    Dele(rfc1939::types::command::Dele),
    Noop(rfc1939::types::command::Noop),
    Rset(rfc1939::types::command::Rset),
    Quit(rfc1939::types::command::Quit),
    Top(rfc1939::types::command::Top),
    Uidl(rfc1939::types::command::Uidl),
}

/// The dispatch a server built on rfc1939 needs: the (case-insensitive) verb picks the
/// parser. The cheapest possible: one 4-byte compare.
fn rfc1939_parse(buf: &[u8]) -> Option<Rfc1939<'_>> {
    use rfc1939::authorization::command as auth;
    use rfc1939::transaction::command as tr;
    use rfc1939::update::command as up;
    let mut verb = [0u8; 4];
    verb.copy_from_slice(buf.get(..4)?);
    verb.make_ascii_uppercase();
    match &verb {
        b"USER" => auth::user(buf).map(Rfc1939::User),
        b"PASS" => auth::pass(buf).map(Rfc1939::Pass),
        b"APOP" => auth::apop(buf).map(Rfc1939::Apop),
        b"STAT" => tr::stat(buf).map(Rfc1939::Stat),
        b"LIST" => tr::list(buf).map(Rfc1939::List),
        b"RETR" => tr::retr(buf).map(Rfc1939::Retr),
        b"DELE" => tr::dele(buf).map(Rfc1939::Dele),
        b"NOOP" => tr::noop(buf).map(Rfc1939::Noop),
        b"RSET" => tr::rset(buf).map(Rfc1939::Rset),
        b"QUIT" => up::quit(buf).map(Rfc1939::Quit),
        b"TOP " => tr::top(buf).map(Rfc1939::Top),
        b"UIDL" => tr::uidl(buf).map(Rfc1939::Uidl),
        _ => None,
    }
}

/// rfc1939 with the verb known in advance (no dispatch at all): a lower bound that no
/// server gets, for reference.
type Known = fn(&[u8]) -> bool;
const RFC1939_KNOWN: [Known; 12] = [
    |b| black_box(rfc1939::authorization::command::user(b)).is_some(),
    |b| black_box(rfc1939::authorization::command::pass(b)).is_some(),
    |b| black_box(rfc1939::transaction::command::stat(b)).is_some(),
    |b| black_box(rfc1939::transaction::command::list(b)).is_some(),
    |b| black_box(rfc1939::transaction::command::list(b)).is_some(),
    |b| black_box(rfc1939::transaction::command::uidl(b)).is_some(),
    |b| black_box(rfc1939::transaction::command::retr(b)).is_some(),
    |b| black_box(rfc1939::transaction::command::top(b)).is_some(),
    |b| black_box(rfc1939::transaction::command::dele(b)).is_some(),
    |b| black_box(rfc1939::transaction::command::noop(b)).is_some(),
    |b| black_box(rfc1939::transaction::command::rset(b)).is_some(),
    |b| black_box(rfc1939::update::command::quit(b)).is_some(),
];

fn command_parse(c: &mut Criterion) {
    // Sanity: every parser accepts every line of the mix.
    for (i, buf) in MIX.iter().enumerate() {
        assert!(Command::parse(postern_line(buf)).is_ok(), "postern rejects {buf:?}");
        assert!(rfc1939_parse(buf).is_some(), "rfc1939 rejects {buf:?}");
        assert!(RFC1939_KNOWN[i](buf), "rfc1939 (known verb) rejects {buf:?}");
        let (rest, _) = pop3_codec::parse::command(buf).unwrap();
        assert!(rest.is_empty(), "pop3-codec leaves {rest:?} of {buf:?}");
    }

    let mut group = c.benchmark_group("pop3_command_parse");
    group.throughput(Throughput::Elements(MIX.len() as u64));
    group.bench_function("postern", |b| {
        b.iter(|| {
            for buf in black_box(MIX) {
                let _ = black_box(Command::parse(postern_line(black_box(buf))));
            }
        });
    });
    group.bench_function("rfc1939", |b| {
        b.iter(|| {
            for buf in black_box(MIX) {
                let _ = black_box(rfc1939_parse(black_box(buf)));
            }
        });
    });
    group.bench_function("rfc1939_known_verb", |b| {
        b.iter(|| {
            for (parse, buf) in RFC1939_KNOWN.iter().zip(black_box(MIX)) {
                let _ = black_box(parse(black_box(buf)));
            }
        });
    });
    group.bench_function("pop3-codec", |b| {
        b.iter(|| {
            for buf in black_box(MIX) {
                let _ = black_box(pop3_codec::parse::command(black_box(buf)));
            }
        });
    });
    group.finish();
}

// ----- RETR streaming ----------------------------------------------------------------

const MESSAGE_SIZE: usize = 10 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// 10 MiB of 78-character lines with `CRLF`; every 16th line starts with a dot.
fn message() -> &'static [u8] {
    static M: OnceLock<Vec<u8>> = OnceLock::new();
    M.get_or_init(|| {
        let mut m = Vec::with_capacity(MESSAGE_SIZE);
        let mut i = 0u32;
        while m.len() + 80 <= MESSAGE_SIZE {
            let first = if i.is_multiple_of(16) { b'.' } else { b'a' + (i % 26) as u8 };
            m.push(first);
            m.extend((1..78u8).map(|j| b'a' + (j + i as u8) % 26));
            m.extend_from_slice(b"\r\n");
            i += 1;
        }
        assert_eq!(m.len(), MESSAGE_SIZE);
        m
    })
}

/// A session logged in with one message and a RETR pending.
fn retr_session(config: &Arc<Config>, now: Instant) -> Session {
    let mut s = Session::new(config.clone(), [0; 16], now);
    s.receive(b"USER alice\r\nPASS secret\r\nRETR 1\r\n", now);
    let Some(Event::Login { user, .. }) = s.poll_event() else { panic!("no login") };
    s.accept_login(user, vec![MessageInfo::new(MESSAGE_SIZE as u64, "big").unwrap()]).unwrap();
    let Some(Event::Retrieve { index: 0, top_lines: None }) = s.poll_event() else { panic!("no RETR") };
    let mut sink = Vec::new();
    s.poll_transmit(&mut sink);
    s
}

fn stream(s: &mut Session, msg: &[u8], out: &mut Vec<u8>) -> usize {
    let mut sent = 0;
    for chunk in msg.chunks(CHUNK) {
        s.message_data(chunk).unwrap();
        out.clear();
        sent += s.poll_transmit(out);
    }
    s.message_end().unwrap();
    out.clear();
    sent + s.poll_transmit(out)
}

fn retr(c: &mut Criterion) {
    let msg = message();
    let mut config = Config::new("pop.example.test");
    config.allow_plaintext_auth = true;
    let config = Arc::new(config);
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();

    // Sanity: the wire form is the message with every dot line stuffed, then `.`.
    let mut s = retr_session(&config, now);
    let mut out = Vec::new();
    let sent = stream(&mut s, msg, &mut out);
    let dots = msg.len() / 80 / 16;
    assert_eq!(sent, "+OK 10485760 octets\r\n".len() + msg.len() + dots + 3);

    let mut group = c.benchmark_group("pop3_retr");
    group.throughput(Throughput::Bytes(msg.len() as u64));
    group.sample_size(30);
    group.bench_function("postern_message_data_64k", |b| {
        let mut out = Vec::with_capacity(2 * CHUNK);
        b.iter_batched(
            || retr_session(&config, now),
            |mut s| black_box(stream(&mut s, black_box(msg), &mut out)),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("memcpy_10MiB", |b| {
        let mut dst = vec![0u8; msg.len()];
        b.iter(|| {
            dst.copy_from_slice(black_box(msg));
            black_box(&dst);
        });
    });
    group.bench_function("memcpy_64k_chunks_reused_buffer", |b| {
        let mut dst = Vec::with_capacity(2 * CHUNK);
        b.iter(|| {
            for chunk in black_box(msg).chunks(CHUNK) {
                dst.clear();
                dst.extend_from_slice(chunk);
                black_box(&dst);
            }
        });
    });
    group.finish();
}

criterion_group!(benches, command_parse, retr);
criterion_main!(benches);
