//! The audit trail: every security event into hash-chained segment files
//! (`postern::audit`), verified with `cargo run --example audit-verify -- DIR`.
//!
//! - `--audit-dir DIR` (default `<maildir>/../audit`, `off` to disable) holds the segments
//!   `segment-<seq>.audit`, one per day or per `--audit-max-segment` bytes.
//! - The HMAC key is `--audit-key FILE` (default `<audit dir>.key`, next to the directory,
//!   not in it), 64 hex digits, created with mode 0600 on the first start.
//! - On start the last segment is verified and the chain continues from its last whole
//!   record, in a new segment (a crash-truncated tail stays as it is; the verifier reports
//!   it). Closed segments older than `--audit-retention-days` (180) are deleted.
//!
//! Call sites stay one line: [`record`] takes any [`Event`], and the helpers below build
//! the common ones. The handle is global (installed once by `main`) so that any module can
//! record without plumbing; [`Audit`] itself is a cheap clone for code that prefers a value.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postern::access::admission::Admit;
pub(crate) use postern::audit::Event;
use postern::audit::{
    AdmissionDecision, ChainState, KeyRing, MacKey, Retention, Verifier, Writer, WriterConfig,
};

use crate::log::Log;

/// The MAC key id the gateway writes (a rotation would add a second key file and id).
const KEY_ID: u32 = 1;

/// `--audit-*` settings.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// `--audit-dir`: `None` for the default next to the Maildir.
    pub(crate) dir: Option<PathBuf>,
    /// `--audit-dir off`.
    pub(crate) disabled: bool,
    /// `--audit-key`.
    pub(crate) key: Option<PathBuf>,
    /// `--audit-max-segment`: a segment is closed after this many bytes.
    pub(crate) max_segment: u64,
    /// `--audit-retention-days`.
    pub(crate) retention: Retention,
}

impl Default for Options {
    fn default() -> Self {
        Self { dir: None, disabled: false, key: None, max_segment: 64 << 20, retention: Retention::default() }
    }
}

impl Options {
    /// Takes one `--audit-*` flag.
    pub(crate) fn set(&mut self, name: &str, value: String) -> Result<(), String> {
        match name {
            "--audit-dir" if value == "off" => self.disabled = true,
            "--audit-dir" => self.dir = Some(PathBuf::from(value)),
            "--audit-key" => self.key = Some(PathBuf::from(value)),
            "--audit-max-segment" => {
                let n: u64 = value.parse().map_err(|e| format!("{name} {value}: {e}"))?;
                if n < 1024 {
                    return Err(format!("{name} {value}: at least 1024"));
                }
                self.max_segment = n;
            }
            "--audit-retention-days" => {
                let days: u64 = value.parse().map_err(|e| format!("{name} {value}: {e}"))?;
                self.retention.max_age = Duration::from_secs(days.saturating_mul(86_400));
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
        Ok(())
    }
}

/// The gateway's audit handle: clone it freely; [`Audit::record`] appends one event.
#[derive(Clone, Debug, Default)]
pub(crate) struct Audit {
    inner: Option<Arc<Mutex<Trail>>>,
}

#[derive(Debug)]
struct Trail {
    dir: PathBuf,
    writer: Writer,
    file: Option<File>,
    buf: Vec<u8>,
    day: u64,
    options: Options,
    failed: bool,
}

static GLOBAL: OnceLock<Audit> = OnceLock::new();

/// Installs the handle [`record`] uses (once, at startup).
pub(crate) fn install(audit: Audit) {
    let _ = GLOBAL.set(audit);
}

/// The installed handle (a disabled one before [`install`]).
pub(crate) fn global() -> &'static Audit {
    GLOBAL.get_or_init(Audit::default)
}

/// Records one event with the installed handle.
pub(crate) fn record(event: Event<'_>) {
    global().record(event);
}

/// A TLS handshake completed on connection `id`.
pub(crate) fn tls(id: u64, info: &postern::TlsInfo) {
    record(Event::TlsEstablished {
        session: id,
        version: &info.protocol,
        suite: &info.cipher_suite,
        group: info.key_exchange.as_deref().unwrap_or(""),
    });
}

/// A login on connection `id` succeeded (`ok`) or failed.
pub(crate) fn auth(id: u64, mechanism: &str, user: &str, ok: bool) {
    record(match ok {
        true => Event::AuthSuccess { session: id, mechanism, user },
        false => Event::AuthFailure { session: id, mechanism, user, reason: "invalid credentials" },
    });
}

/// A protocol violation reported by a session (`postern::smtp::Violation`,
/// `postern::pop3::Violation`): its variant name and its details.
pub(crate) fn violation(id: u64, what: &impl std::fmt::Debug) {
    let detail = format!("{what:?}");
    let name = detail.split([' ', '(', '{']).next().unwrap_or_default().to_owned();
    record(Event::ProtocolViolation { session: id, violation: &name, detail: &detail });
}

/// The admission decision about a new connection on `protocol`.
pub(crate) fn admission(peer: IpAddr, protocol: &str, admit: &Admit) {
    let (decision, reason) = match admit {
        Admit::Accept { .. } => (AdmissionDecision::Admitted, protocol.to_owned()),
        Admit::Defer { reason, .. } => (AdmissionDecision::Deferred, format!("{protocol}: {reason:?}")),
        Admit::Refuse { reason } => (AdmissionDecision::Refused, format!("{protocol}: {reason:?}")),
    };
    record(Event::Admission { peer, decision, reason: &reason });
}

/// Opens the trail (`--audit-*`) and installs it; logs where it is.
pub(crate) fn start(options: &Options, maildir: &Path) -> io::Result<()> {
    match Audit::open(options, maildir)? {
        Some((audit, summary)) => {
            Log::server().line(format_args!("{summary}"));
            install(audit);
        }
        None => Log::server().line(format_args!("audit: off (--audit-dir off)")),
    }
    Ok(())
}

/// A connection was admitted and its session `id` starts.
pub(crate) fn session_start(id: u64, service: &str, peer: SocketAddr) {
    record(Event::SessionStart { session: id, service, peer: peer.ip(), peer_port: peer.port() });
}

/// Session `id` ended.
pub(crate) fn session_end(id: u64) {
    record(Event::SessionEnd { session: id, reason: "closed" });
}

/// A connection turned away because the listener is at its connection cap.
pub(crate) fn busy(peer: IpAddr, protocol: &str) {
    record(Event::Admission {
        peer,
        decision: AdmissionDecision::Deferred,
        reason: &format!("{protocol}: busy"),
    });
}

/// A per-client rate limit (`limit`, e.g. `rcpt-rate`) deferred a command.
pub(crate) fn rate_limited(id: u64, peer: IpAddr, limit: &str, wait: Duration) {
    let retry_after_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    record(Event::RateLimited { session: id, peer, limit, retry_after_ms });
}

/// A policy refused something at `stage` (`rcpt`, `mail`, ...) with this reply.
pub(crate) fn rejected(id: u64, stage: &str, reply: &str) {
    record(Event::PolicyRejection { session: id, stage, reason: reply.trim_end() });
}

/// A key came into use: `old_id` 0 for a key that was just created (no previous key).
pub(crate) fn key_rotation(purpose: &str, old_id: u32, new_id: u32) {
    record(Event::KeyRotation { purpose, old_id, new_id });
}

/// A message was accepted (delivered) as `queue_id`, with its authentication verdicts
/// (e.g. `spf=pass dkim=pass dmarc=pass`, empty when not checked).
pub(crate) fn message(id: u64, size: u64, queue_id: &str, auth: &str) {
    record(Event::MessageAccepted { session: id, size, id: queue_id, auth });
}

/// The security events among an SMTP session's events: protocol violations (smuggling
/// attempts, STARTTLS injection, bare line endings, early talk, ...).
pub(crate) fn smtp_event(id: u64, event: &postern::smtp::Event) {
    if let postern::smtp::Event::Violation(v) = event {
        violation(id, v);
    }
}

/// The same for a POP3 session.
pub(crate) fn pop3_event(id: u64, event: &postern::pop3::Event) {
    if let postern::pop3::Event::Violation(v) = event {
        violation(id, v);
    }
}

impl Audit {
    /// Opens (or creates) the trail for `--maildir maildir`; `Ok(None)` with `--audit-dir off`.
    /// Returns the handle and a line for the startup log.
    pub(crate) fn open(options: &Options, maildir: &Path) -> io::Result<Option<(Audit, String)>> {
        if options.disabled {
            return Ok(None);
        }
        let dir = match &options.dir {
            Some(dir) => dir.clone(),
            None => maildir.parent().unwrap_or(Path::new(".")).join("audit"),
        };
        fs::create_dir_all(&dir)?;
        restrict(&dir, 0o700);
        let key_path = options.key.clone().unwrap_or_else(|| dir.with_extension("key"));
        let (key, created) = load_or_create_key(&key_path)?;
        let (state, note) = resume(&dir, &key)?;
        let writer = Writer::resume(key, WriterConfig::default(), state);
        let mut trail = Trail {
            dir: dir.clone(),
            writer,
            file: None,
            buf: Vec::with_capacity(4096),
            day: 0,
            options: options.clone(),
            failed: false,
        };
        trail.prune(SystemTime::now());
        trail.rotate(SystemTime::now())?;
        let summary = format!(
            "audit: {} (key {}{}), segment {}, {note}",
            dir.display(),
            key_path.display(),
            if created { ", created" } else { "" },
            trail.writer.segment().unwrap_or_default(),
        );
        Ok(Some((Audit { inner: Some(Arc::new(Mutex::new(trail))) }, summary)))
    }

    /// Appends one event, timestamped now. I/O errors are logged once and never stop mail.
    pub(crate) fn record(&self, event: Event<'_>) {
        let Some(inner) = &self.inner else { return };
        let mut trail = inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        trail.record(&event, SystemTime::now());
    }

    /// Closes the open segment with its final checkpoint (at shutdown).
    pub(crate) fn close(&self) {
        let Some(inner) = &self.inner else { return };
        let mut guard = inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let trail = &mut *guard;
        let now = SystemTime::now();
        trail.buf.clear();
        if trail.writer.close_segment(now, &mut trail.buf).is_ok() {
            trail.flush();
        }
        trail.file = None;
    }
}

impl Trail {
    fn record(&mut self, event: &Event<'_>, now: SystemTime) {
        let full = self.writer.segment_len().is_some_and(|n| n >= self.options.max_segment);
        if (full || day(now) != self.day)
            && let Err(e) = self.rotate(now)
        {
            self.fail(&e);
            return;
        }
        self.buf.clear();
        if self.writer.append(event, now, &mut self.buf).is_ok() {
            self.flush();
        }
    }

    /// Closes the open segment (if any) and starts the next one; prunes old ones.
    fn rotate(&mut self, now: SystemTime) -> io::Result<()> {
        self.buf.clear();
        if self.writer.close_segment(now, &mut self.buf).is_ok() {
            self.flush();
        }
        self.file = None;
        self.prune(now);
        let seq = self.writer.state().next_segment;
        let path = self.dir.join(segment_name(seq));
        let file = OpenOptions::new().append(true).create_new(true).open(&path)?;
        restrict(&path, 0o600);
        self.file = Some(file);
        self.day = day(now);
        self.buf.clear();
        self.writer.open_segment(now, &mut self.buf).map_err(io::Error::other)?;
        self.flush();
        Ok(())
    }

    fn flush(&mut self) {
        let result = match &mut self.file {
            Some(file) => file.write_all(&self.buf),
            None => Ok(()),
        };
        if let Err(e) = result {
            self.fail(&e);
        }
    }

    fn fail(&mut self, e: &io::Error) {
        if !self.failed {
            self.failed = true;
            Log::server().line(format_args!("audit: cannot write to {}: {e}", self.dir.display()));
        }
    }

    /// Deletes closed segments whose last write is older than the retention, oldest first,
    /// never the newest one.
    fn prune(&mut self, now: SystemTime) {
        let segments = list_segments(&self.dir);
        let Some((_, newest)) = segments.last() else { return };
        for (_, path) in &segments {
            if path == newest {
                break;
            }
            let modified = fs::metadata(path).and_then(|m| m.modified());
            if !modified.is_ok_and(|t| self.options.retention.expired(t, now)) {
                // Younger segments follow: keep the rest contiguous.
                break;
            }
            match fs::remove_file(path) {
                Ok(()) => Log::server().line(format_args!("audit: pruned {}", path.display())),
                Err(e) => {
                    Log::server().line(format_args!("audit: cannot prune {}: {e}", path.display()));
                    break;
                }
            }
        }
    }
}

/// `segment-0000000042.audit`.
pub(crate) fn segment_name(seq: u64) -> String {
    format!("segment-{seq:010}.audit")
}

/// The segment files in `dir`, by sequence number.
pub(crate) fn list_segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let seq = name.strip_prefix("segment-")?.strip_suffix(".audit")?.parse().ok()?;
            Some((seq, entry.path()))
        })
        .collect();
    out.sort();
    out
}

/// Where the chain stands after the newest segment (genesis when there is none).
fn resume(dir: &Path, key: &MacKey) -> io::Result<(ChainState, String)> {
    let segments = list_segments(dir);
    let Some((seq, path)) = segments.last() else {
        return Ok((ChainState::GENESIS, "new log".to_owned()));
    };
    let bytes = fs::read(path)?;
    let mut verifier = Verifier::new(KeyRing::new().with_mac(key.clone()));
    let mut at = 0;
    let mut problem = None;
    loop {
        match verifier.next(bytes.get(at..).unwrap_or_default()) {
            Ok(Some(v)) => at += v.consumed,
            Ok(None) => break,
            Err(link) => {
                problem = Some(format!("{}: {link}", path.display()));
                break;
            }
        }
    }
    let end = verifier.finish_segment(bytes.get(at..).unwrap_or_default());
    let Some(state) = verifier.state() else {
        // The newest segment is unreadable (no header, foreign key): a new chain after it;
        // the verifier will report the discontinuity.
        let state = ChainState { next_segment: seq + 1, next_record: 0, tag: [0; 32] };
        return Ok((
            state,
            format!("new chain: {}", problem.unwrap_or_else(|| "unreadable last segment".into())),
        ));
    };
    let note = match (problem, end.truncated, end.closed) {
        (Some(p), _, _) => format!("continuing after a broken link ({p})"),
        (None, Some((offset, bytes)), _) => {
            format!(
                "continuing at record {} ({bytes} byte(s) truncated at offset {offset} of {})",
                state.next_record,
                path.display()
            )
        }
        (None, None, false) => {
            format!("continuing at record {} (last segment was not closed)", state.next_record)
        }
        (None, None, true) => format!("continuing at record {}", state.next_record),
    };
    Ok((state, note))
}

/// Reads the key file (64 hex digits), or creates it with mode 0600.
pub(crate) fn load_or_create_key(path: &Path) -> io::Result<(MacKey, bool)> {
    match fs::read_to_string(path) {
        Ok(text) => Ok((
            parse_key(text.trim()).map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?,
            false,
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
            File::open("/dev/urandom")?.read_exact(&mut *bytes)?;
            let hex = zeroize::Zeroizing::new(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path)?;
            file.write_all(hex.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            Ok((MacKey::new(KEY_ID, &bytes), true))
        }
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

/// 64 hex digits to a key.
pub(crate) fn parse_key(hex: &str) -> Result<MacKey, String> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("an audit key is 64 hex digits".into());
    }
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("00"), 16).map_err(|e| e.to_string())?;
    }
    Ok(MacKey::new(KEY_ID, &bytes))
}

fn day(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400)
}

fn restrict(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}
