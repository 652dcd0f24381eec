//! `audit-verify DIR`: verifies the mail gateway's audit trail (the `segment-*.audit` files
//! in DIR, oldest first) and prints a summary: records, time span, events by kind,
//! anomalies and the first broken link.
//!
//! ```text
//! cargo run --example audit-verify -- ./postern-data/audit
//! cargo run --example audit-verify -- ./postern-data/audit --json
//! cargo run --example audit-verify -- ./postern-data/audit --records   # JSON lines
//! ```
//!
//! The key is `--key FILE` (default `DIR.key`, where the gateway creates it). Exit status:
//! 0 when the chain is intact, 1 when it is broken, 2 for a usage or I/O error.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use postern::audit::{BrokenLink, KeyRing, LogReport, LogVerifier, MacKey, write_json_string, write_rfc3339};

const USAGE: &str = "usage: audit-verify DIR [--key FILE] [--json | --records]

Verifies the hash chain of the segment-*.audit files in DIR and prints a summary.
    --key FILE   the HMAC key (64 hex digits) [default: DIR.key]
    --json       the summary as one JSON object
    --records    every verified record as a JSON line (then the summary on stderr)
Exit status: 0 intact, 1 broken link, 2 usage or I/O error.";

#[derive(PartialEq)]
enum Output {
    Text,
    Json,
    Records,
}

fn main() -> ExitCode {
    let mut dir = None;
    let mut key = None;
    let mut output = Output::Text;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => output = Output::Json,
            "--records" => output = Output::Records,
            "--key" => key = args.next().map(PathBuf::from),
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            a if !a.starts_with('-') && dir.is_none() => dir = Some(PathBuf::from(a)),
            a => {
                eprintln!("audit-verify: unexpected argument {a:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(dir) = dir else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match run(&dir, key, &output) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("audit-verify: {e}");
            ExitCode::from(2)
        }
    }
}

/// Verifies `dir`; `Ok(true)` when the chain is intact.
fn run(dir: &Path, key: Option<PathBuf>, output: &Output) -> Result<bool, String> {
    let key_path = key.unwrap_or_else(|| dir.with_extension("key"));
    let hex = std::fs::read_to_string(&key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
    let key = parse_key(hex.trim()).map_err(|e| format!("{}: {e}", key_path.display()))?;
    let files = segments(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if files.is_empty() {
        return Err(format!("{}: no segment-*.audit files", dir.display()));
    }
    let mut log = LogVerifier::new(KeyRing::new().with_mac(key));
    let mut line = String::new();
    for path in &files {
        // One segment in memory at a time.
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let intact = log.add_segment(&bytes, |raw| {
            if *output == Output::Records {
                line.clear();
                match raw.record() {
                    Ok(record) => record.write_json(&mut line),
                    Err(e) => {
                        let _ = write!(line, "{{\"record\":{},\"error\":", raw.number);
                        write_json_string(&mut line, &e.to_string());
                        line.push('}');
                    }
                }
                println!("{line}");
            }
        });
        if !intact {
            break;
        }
    }
    let report = log.finish();
    let name = |index: usize| {
        files
            .get(index)
            .and_then(|p| p.file_name())
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    };
    match output {
        Output::Json => println!("{}", json(dir, &report, &name)),
        Output::Text => print!("{}", text(dir, &report, &name)),
        Output::Records => eprint!("{}", text(dir, &report, &name)),
    }
    Ok(report.is_intact())
}

fn time(t: Option<SystemTime>) -> String {
    let mut s = String::new();
    match t {
        Some(t) => write_rfc3339(&mut s, t),
        None => s.push('-'),
    }
    s
}

fn link(link: &BrokenLink, file: &str) -> String {
    format!(
        "{file} (segment {}) at offset {}, record {}: {}",
        link.segment, link.offset, link.record, link.reason
    )
}

fn text(dir: &Path, r: &LogReport, name: &dyn Fn(usize) -> String) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "audit log {}: {} segment(s), {} record(s), {} checkpoint(s)",
        dir.display(),
        r.segments,
        r.records,
        r.checkpoints
    );
    let _ = writeln!(out, "time span: {} .. {}", time(r.first_time), time(r.last_time));
    match r.start {
        Some(_) if r.starts_at_genesis() => {
            let _ = writeln!(out, "starts at: the first record ever written");
        }
        Some(a) => {
            let _ = writeln!(
                out,
                "starts at: record {} in segment {} (older segments pruned)",
                a.record, a.segment
            );
        }
        None => {}
    }
    let kinds: Vec<String> = r.by_kind.iter().map(|(k, n)| format!("{}={n}", k.name())).collect();
    let _ = writeln!(out, "events: {}", if kinds.is_empty() { "none".into() } else { kinds.join(" ") });
    let mut anomalies: Vec<String> =
        r.by_kind.iter().filter(|(k, _)| k.is_anomaly()).map(|(k, n)| format!("{n} {}", k.name())).collect();
    for t in &r.truncated {
        anomalies.push(format!(
            "truncated tail in {}: {} byte(s) at offset {}",
            name(t.index),
            t.bytes,
            t.offset
        ));
    }
    if r.unclosed > 0 {
        anomalies.push(format!("{} segment(s) not closed (a crash?)", r.unclosed));
    }
    if r.time_regressions > 0 {
        anomalies.push(format!("{} record(s) earlier than the one before", r.time_regressions));
    }
    let _ = writeln!(
        out,
        "anomalies: {}",
        if anomalies.is_empty() { "none".into() } else { anomalies.join("; ") }
    );
    let _ = writeln!(
        out,
        "last segment: {}",
        match (r.is_intact(), r.last_closed) {
            (false, _) => "not examined past the broken link",
            (true, true) => "closed",
            (true, false) => "open (the gateway is running, or it crashed)",
        }
    );
    match &r.broken {
        None => {
            let _ = writeln!(out, "result: OK, the chain is intact");
        }
        Some((index, l)) => {
            let _ = writeln!(out, "result: BROKEN at {}", link(l, &name(*index)));
        }
    }
    out
}

fn json(dir: &Path, r: &LogReport, name: &dyn Fn(usize) -> String) -> String {
    let mut o = String::from("{\"dir\":");
    write_json_string(&mut o, &dir.display().to_string());
    let _ =
        write!(o, ",\"segments\":{},\"records\":{},\"checkpoints\":{}", r.segments, r.records, r.checkpoints);
    for (field, t) in [("first_time", r.first_time), ("last_time", r.last_time)] {
        let _ = write!(o, ",\"{field}\":");
        match t {
            Some(_) => write_json_string(&mut o, &time(t)),
            None => o.push_str("null"),
        }
    }
    let _ = write!(o, ",\"starts_at_genesis\":{}", r.starts_at_genesis());
    match r.start {
        Some(a) => {
            let _ = write!(o, ",\"start\":{{\"segment\":{},\"record\":{}}}", a.segment, a.record);
        }
        None => o.push_str(",\"start\":null"),
    }
    o.push_str(",\"by_kind\":{");
    for (i, (k, n)) in r.by_kind.iter().enumerate() {
        let _ = write!(o, "{}\"{}\":{n}", if i > 0 { "," } else { "" }, k.name());
    }
    let _ = write!(o, "}},\"anomalies\":{{\"events\":{},\"truncated\":[", r.anomalous_events());
    for (i, t) in r.truncated.iter().enumerate() {
        o.push_str(if i > 0 { ",{\"file\":" } else { "{\"file\":" });
        write_json_string(&mut o, &name(t.index));
        let _ = write!(o, ",\"offset\":{},\"bytes\":{}}}", t.offset, t.bytes);
    }
    let _ = write!(
        o,
        "],\"truncated_count\":{},\"unclosed_segments\":{},\"time_regressions\":{}}}",
        r.truncated_count, r.unclosed, r.time_regressions
    );
    let _ = write!(o, ",\"last_closed\":{},\"intact\":{},\"broken\":", r.last_closed, r.is_intact());
    match &r.broken {
        None => o.push_str("null"),
        Some((index, l)) => {
            o.push_str("{\"file\":");
            write_json_string(&mut o, &name(*index));
            let _ = write!(
                o,
                ",\"segment\":{},\"offset\":{},\"record\":{},\"reason\":",
                l.segment, l.offset, l.record
            );
            write_json_string(&mut o, &l.reason.to_string());
            o.push('}');
        }
    }
    o.push('}');
    o
}

/// The `segment-<seq>.audit` files in `dir`, by sequence number.
fn segments(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let seq = name.strip_prefix("segment-")?.strip_suffix(".audit")?.parse().ok()?;
            Some((seq, entry.path()))
        })
        .collect();
    files.sort();
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

/// 64 hex digits to the gateway's key (id 1).
fn parse_key(hex: &str) -> Result<MacKey, String> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("an audit key is 64 hex digits".into());
    }
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("00"), 16).map_err(|e| e.to_string())?;
    }
    Ok(MacKey::new(1, &bytes))
}
