//! One line per event on stderr: `<UTC time> <who> <what>`.
//!
//! `who` is `server` or `conn=<id>`, so `grep conn=42` gives one session's story.
//! Anything the client chose (HELO names, addresses) is written with `{:?}`, quoted and
//! escaped, so a client cannot forge log lines with CR/LF or terminal escapes.

use std::fmt;
use std::io::Write as _;
use std::time::SystemTime;

/// A log target: the server itself, or one connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Log {
    conn: Option<u64>,
}

impl Log {
    /// Lines about the server (startup, shutdown).
    pub(crate) fn server() -> Self {
        Self { conn: None }
    }

    /// Lines about connection `id`.
    pub(crate) fn conn(id: u64) -> Self {
        Self { conn: Some(id) }
    }

    /// The connection id (0 for the server).
    pub(crate) fn id(&self) -> u64 {
        self.conn.unwrap_or(0)
    }

    /// Writes one line. Errors writing to stderr are ignored: logging never stops mail.
    pub(crate) fn line(&self, what: fmt::Arguments<'_>) {
        let now = utc(SystemTime::now());
        let mut err = std::io::stderr().lock();
        let _ = match self.conn {
            Some(id) => writeln!(err, "{now} conn={id} {what}"),
            None => writeln!(err, "{now} server {what}"),
        };
    }
}

/// `2024-05-01T12:34:56.789Z`.
pub(crate) fn utc(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}
