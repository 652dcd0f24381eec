//! Command-line parsing: postern's `Command::parse` against smtp-proto 0.2.5's
//! `Request::parse` on the same command mix.
//!
//! Both parsers get the same CRLF-terminated buffers. smtp-proto scans for the line end
//! itself; postern's parser takes a line without its terminator (framing is the
//! [`postern::line::LineFramer`]'s job), so the postern side finds the `LF` with `memchr`
//! and strips the `CR` first, to measure the same work.
//!
//! Target: postern's time per mix at most 0.7x smtp-proto's. Run with
//! `cargo bench --bench smtp -- command_parse`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group};
use postern::smtp::command::Command;

/// A typical SMTP transaction, one command per line, each with its `CRLF`.
const MIX: &[&[u8]] = &[
    b"EHLO client.example.org\r\n",
    b"MAIL FROM:<sender@example.org> SIZE=12345 BODY=8BITMIME\r\n",
    b"RCPT TO:<rcpt1@example.net>\r\n",
    b"RCPT TO:<rcpt2@example.net> NOTIFY=SUCCESS,FAILURE\r\n",
    b"DATA\r\n",
    b"RSET\r\n",
    b"QUIT\r\n",
];

fn postern_line(buf: &[u8]) -> &[u8] {
    let end = memchr::memchr(b'\n', buf).unwrap();
    let line = &buf[..end];
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn bench(c: &mut Criterion) {
    // Sanity: both parsers accept every line of the mix.
    for buf in MIX {
        assert!(Command::parse(postern_line(buf)).is_ok(), "postern rejects {buf:?}");
        assert!(smtp_proto::Request::parse(&mut buf.iter()).is_ok(), "smtp-proto rejects {buf:?}");
    }

    let mut group = c.benchmark_group("command_parse");
    group.throughput(criterion::Throughput::Elements(MIX.len() as u64));
    group.bench_function("postern", |b| {
        b.iter(|| {
            for buf in black_box(MIX) {
                let _ = black_box(Command::parse(postern_line(black_box(buf))));
            }
        });
    });
    group.bench_function("smtp-proto", |b| {
        b.iter(|| {
            for buf in black_box(MIX) {
                let _ = black_box(smtp_proto::Request::parse(&mut black_box(buf).iter()));
            }
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
