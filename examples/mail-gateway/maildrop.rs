//! A user's Maildir as a POP3 maildrop: [`postern::pop3::Maildrop`] over
//! `<maildir>/<name>/{new,cur}`, the same directories the SMTP side delivers into.
//!
//! - **Lock.** One POP3 session per maildrop (RFC 1939 §8): an exclusive `flock` on
//!   `<maildir>/<name>/postern-pop3.lock`, taken at login and held by the open file. The
//!   kernel releases it when the session's [`MaildirDrop`] is dropped, on a panic, and
//!   even if the process is killed, so a crash never leaves a stale lock. The (empty)
//!   lock file itself stays. SMTP delivery needs no lock: a Maildir is safe for that.
//! - **Listing.** The messages in `new/` and `cur/` at login, sorted by file name (the
//!   delivery time comes first in names, so this is the arrival order); later arrivals
//!   wait for the next session. Each message's size is as the session sends it: the
//!   file's size plus one `CR` for every bare `LF` (files delivered by the SMTP side
//!   have none). Its UID is the Maildir unique name (before `:2,`), or a hash of it if it
//!   does not fit RFC 1939's 1-70 characters from 0x21-0x7E.
//! - **Reading** is sequential from one open file, in the caller's chunks: a message is
//!   never held whole in memory.
//! - **Seen.** A message sent completely by RETR moves from `new/` to `cur/` with the
//!   Maildir flag `S` (`:2,S`); its index in the listing does not change.
//! - **UPDATE** ([`Maildrop::commit`]) removes exactly the marked files. Nothing else
//!   ever removes a file: a dropped connection deletes nothing.

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use postern::pop3::{Maildrop, MessageInfo};

/// The lock file in each user's Maildir.
const LOCK_FILE: &str = "postern-pop3.lock";
/// Bytes read at a time when scanning a file for bare line feeds.
const SCAN_BUFFER: usize = 64 * 1024;

/// Why a maildrop could not be opened.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// Another session holds the lock: `-ERR [IN-USE]`.
    InUse,
    /// The directory or a message could not be read: `-ERR [SYS/TEMP]`.
    Io(io::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InUse => f.write_str("maildrop is locked by another session"),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// One listed message.
#[derive(Debug)]
struct Entry {
    /// Where the file is now (it moves from `new/` to `cur/` when seen).
    path: PathBuf,
    /// `true` while it is in `new/`.
    in_new: bool,
    info: MessageInfo,
}

/// A locked maildrop and its listing, for one POP3 session.
#[derive(Debug)]
pub(crate) struct MaildirDrop {
    dir: PathBuf,
    /// Holds the lock; closing it releases the lock.
    _lock: File,
    entries: Vec<Entry>,
    /// The file being read: its index in the listing, and the offset of the next read.
    reading: Option<(usize, u64, crate::seal::Reader)>,
}

impl MaildirDrop {
    /// Locks and lists the Maildir `<root>/<name>` (creating it if the user has never
    /// received mail).
    pub(crate) fn open(root: &Path, name: &str) -> Result<Self, OpenError> {
        let dir = root.join(name);
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(OpenError::InUse),
            Err(TryLockError::Error(e)) => return Err(OpenError::Io(e)),
        }
        let mut names: Vec<(String, bool)> = Vec::new();
        for (sub, in_new) in [("new", true), ("cur", false)] {
            for entry in fs::read_dir(dir.join(sub))? {
                let entry = entry?;
                // Skip dot files (editors' and other programs' temporaries) and anything
                // that is not a regular file.
                let Ok(name) = entry.file_name().into_string() else { continue };
                if name.starts_with('.') || !entry.file_type()?.is_file() {
                    continue;
                }
                names.push((name, in_new));
            }
        }
        names.sort();
        let mut entries: Vec<Entry> = Vec::with_capacity(names.len());
        let mut uids: Vec<String> = Vec::with_capacity(names.len());
        for (name, in_new) in names {
            let path = dir.join(if in_new { "new" } else { "cur" }).join(&name);
            let size = match wire_size(&path) {
                Ok(size) => size,
                // Removed by someone else since the directory was read: not listed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            let uid = unique_uid(uid_for(&name), &uids);
            let info = MessageInfo::new(size, uid.clone()).map_err(io::Error::other)?;
            uids.push(uid);
            entries.push(Entry { path, in_new, info });
        }
        Ok(Self { dir, _lock: lock, entries, reading: None })
    }

    /// The listing for [`Session::accept_login`](postern::pop3::Session::accept_login).
    pub(crate) fn listing(&self) -> Vec<MessageInfo> {
        self.entries.iter().map(|e| e.info.clone()).collect()
    }

    /// The maildrop's total size in octets, for the log.
    pub(crate) fn total_size(&self) -> u64 {
        self.entries.iter().map(|e| e.info.size()).sum()
    }

    /// Marks message `index` as seen after RETR sent it completely: a message in `new/`
    /// moves to `cur/<unique>:2,S`. Returns the new path if it moved.
    pub(crate) fn mark_seen(&mut self, index: usize) -> io::Result<Option<PathBuf>> {
        if matches!(&self.reading, Some((i, _, _)) if *i == index) {
            self.reading = None;
        }
        let Some(entry) = self.entries.get_mut(index) else {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such message"));
        };
        if !entry.in_new {
            return Ok(None);
        }
        let Some(name) = entry.path.file_name().and_then(|n| n.to_str()) else {
            return Ok(None);
        };
        // In new/ a name has no info part yet; if another program left one, keep it.
        let seen = match name.split_once(":2,") {
            Some((unique, flags)) if !flags.contains('S') => {
                let mut flags: Vec<char> = flags.chars().chain(['S']).collect();
                flags.sort_unstable();
                format!("{unique}:2,{}", flags.into_iter().collect::<String>())
            }
            Some(_) => name.to_owned(),
            None => format!("{name}:2,S"),
        };
        let to = self.dir.join("cur").join(seen);
        fs::rename(&entry.path, &to)?;
        entry.path = to.clone();
        entry.in_new = false;
        Ok(Some(to))
    }
}

impl Maildrop for MaildirDrop {
    fn read(&mut self, index: usize, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let reusable = matches!(&self.reading, Some((i, pos, _)) if *i == index && *pos == offset);
        if !reusable {
            let entry = self.entries.get(index).ok_or(io::ErrorKind::NotFound)?;
            // --seal-store: a sealed message is opened (verified whole) here.
            let mut file = crate::seal::open(&entry.path)?;
            if offset > 0 {
                file.seek(SeekFrom::Start(offset))?;
            }
            self.reading = Some((index, offset, file));
        }
        let Some((_, pos, file)) = &mut self.reading else {
            return Err(io::ErrorKind::NotFound.into());
        };
        let n = file.read(buf)?;
        *pos += n as u64;
        Ok(n)
    }

    fn commit(&mut self, deleted: &[usize]) -> io::Result<()> {
        self.reading = None;
        let mut first_error = None;
        for &index in deleted {
            let Some(entry) = self.entries.get(index) else { continue };
            match fs::remove_file(&entry.path) {
                Ok(()) => {}
                // Gone already (removed by someone else): what QUIT asked for is done.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        // Make the removals durable before answering +OK.
        for sub in ["new", "cur"] {
            if let Err(e) = File::open(self.dir.join(sub)).and_then(|d| d.sync_all()) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The size of a message as the POP3 session sends it: the file's size, plus one `CR`
/// for each bare `LF` (the session sends every line ending as `CRLF`). Reads the file
/// in 64 KiB pieces.
fn wire_size(path: &Path) -> io::Result<u64> {
    let mut file = crate::seal::open(path)?;
    let mut buf = vec![0_u8; SCAN_BUFFER];
    let (mut size, mut bare_lf, mut prev_cr) = (0_u64, 0_u64, false);
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        size += n as u64;
        for (i, _) in chunk.iter().enumerate().filter(|(_, b)| **b == b'\n') {
            let before = if i == 0 { prev_cr } else { chunk.get(i - 1) == Some(&b'\r') };
            bare_lf += u64::from(!before);
        }
        prev_cr = chunk.last() == Some(&b'\r');
    }
    Ok(size + bare_lf)
}

/// The UID for a Maildir file name: its unique part (before the `:2,` info), if RFC
/// 1939 allows it as it is (1 to 70 characters from 0x21 to 0x7E); otherwise `h-` and a
/// 128-bit hash of it in hex, which does.
fn uid_for(file_name: &str) -> String {
    let unique = file_name.split_once(':').map_or(file_name, |(u, _)| u);
    if !unique.is_empty() && unique.len() <= 70 && unique.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        unique.to_owned()
    } else {
        format!(
            "h-{:016x}{:016x}",
            fnv1a(unique, 0xcbf2_9ce4_8422_2325),
            fnv1a(unique, 0x6c62_272e_07bb_0142)
        )
    }
}

/// FNV-1a, 64 bits, from `basis`: stable across runs and Rust versions (UIDs must not
/// change between sessions), and not a security boundary.
fn fnv1a(s: &str, basis: u64) -> u64 {
    s.bytes().fold(basis, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// `uid`, made unique among `taken` (a message copied into both `new/` and `cur/`
/// would otherwise be listed twice under one UID) by a `-<n>` suffix.
fn unique_uid(uid: String, taken: &[String]) -> String {
    if !taken.contains(&uid) {
        return uid;
    }
    (2_u32..)
        .map(|n| {
            let suffix = format!("-{n}");
            let keep = uid.len().min(70 - suffix.len());
            format!("{}{suffix}", uid.get(..keep).unwrap_or(&uid))
        })
        .find(|candidate| !taken.contains(candidate))
        .unwrap_or(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids() {
        assert_eq!(uid_for("1700000000.123_4.mx.example.test"), "1700000000.123_4.mx.example.test");
        assert_eq!(uid_for("1700000000.123_4.mx.example.test:2,S"), "1700000000.123_4.mx.example.test");
        let long = "x".repeat(71);
        let hashed = uid_for(&long);
        assert!(hashed.starts_with("h-") && hashed.len() == 34, "{hashed}");
        assert_eq!(hashed, uid_for(&format!("{long}:2,S")));
        assert!(uid_for("with space").starts_with("h-"));
        assert!(uid_for("ünï").starts_with("h-"));
        let taken = vec!["a".to_owned(), "a-2".to_owned()];
        assert_eq!(unique_uid("a".into(), &taken), "a-3");
        assert_eq!(unique_uid("b".into(), &taken), "b");
        assert_eq!(unique_uid("y".repeat(70), &["y".repeat(70)]).len(), 70);
    }
}
