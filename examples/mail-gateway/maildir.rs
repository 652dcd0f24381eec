//! Delivery into Maildirs (<https://cr.yp.to/proto/maildir.html>), one per recipient.
//!
//! The layout is `<root>/<mailbox>/{tmp,new,cur}`, where `<mailbox>` is the recipient's
//! local part, unquoted and lower-cased ([`mailbox_name`]). A message is written to
//! `tmp/` while it arrives, flushed to disk, and only then renamed into `new/`: a
//! reader never sees half a message, and a crash leaves at worst a stray file in `tmp/`.
//!
//! A [`Delivery`] streams the message into one temporary file per mailbox, so the
//! message is never held in memory; dropping it without [`Delivery::commit`] removes
//! the temporary files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// The Maildir root shared by all connections.
#[derive(Debug)]
pub(crate) struct Maildir {
    root: PathBuf,
    /// The host part of file names, with `/` and `:` escaped as the Maildir spec says.
    host: String,
    counter: AtomicU64,
}

/// Why a local part cannot name a mailbox directory.
pub(crate) type BadMailbox = &'static str;

/// The mailbox directory name for a local part: unquoted (`"John.Doe"` is `john.doe`),
/// lower-cased, and refused if it could escape the root or confuse a shell or a reader:
/// empty, a leading dot (`.`, `..`, hidden files), `..` anywhere, a path separator, or a
/// control character.
pub(crate) fn mailbox_name(local_part: &str) -> Result<String, BadMailbox> {
    let unquoted = match local_part.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                // quoted-pair: `\x` stands for `x`.
                out.push(if c == '\\' { chars.next().unwrap_or('\\') } else { c });
            }
            out
        }
        None => local_part.to_owned(),
    };
    let name = unquoted.to_lowercase();
    if name.is_empty() {
        Err("empty local part")
    } else if name.chars().any(char::is_control) {
        Err("control character in local part")
    } else if name.contains(['/', '\\']) {
        Err("path separator in local part")
    } else if name.starts_with('.') || name.contains("..") {
        Err("dot sequence in local part")
    } else {
        Ok(name)
    }
}

/// A unique name for one message: its queue id and its Maildir file name.
#[derive(Clone, Debug)]
pub(crate) struct Unique {
    /// The queue id, `<secs>-<pid>-<counter>` (an RFC 5322 atom, fit for `Received:`).
    pub(crate) id: String,
    /// The file name, `<secs>.<pid>_<counter>.<host>`.
    pub(crate) file_name: String,
}

impl Maildir {
    /// Opens (creating if needed) the root directory. `hostname` goes into file names.
    pub(crate) fn open(root: &Path, hostname: &str) -> io::Result<Self> {
        fs::create_dir_all(root)?;
        let host = hostname.replace('/', "\\057").replace(':', "\\072");
        Ok(Self { root: root.to_path_buf(), host, counter: AtomicU64::new(0) })
    }

    /// The root directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// A fresh unique name. `now` is the time of receipt.
    pub(crate) fn unique(&self, now: SystemTime) -> Unique {
        let secs = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let pid = std::process::id();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        Unique { id: format!("{secs}-{pid}-{n}"), file_name: format!("{secs}.{pid}_{n}.{}", self.host) }
    }

    /// Starts delivering one message to `mailboxes` (names from [`mailbox_name`],
    /// without duplicates): creates each Maildir if needed, opens `tmp/<file_name>`
    /// in each, and writes `header` (the `Received:` field) at the top.
    pub(crate) fn begin(&self, mailboxes: &[String], unique: &Unique, header: &[u8]) -> io::Result<Delivery> {
        let mut delivery = Delivery { files: Vec::with_capacity(mailboxes.len()), error: None };
        for mailbox in mailboxes {
            let dir = self.root.join(mailbox);
            for sub in ["tmp", "new", "cur"] {
                fs::create_dir_all(dir.join(sub))?;
            }
            let tmp = dir.join("tmp").join(&unique.file_name);
            let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            delivery.files.push(TmpFile {
                // --seal-store: the sink seals as it writes (plain otherwise).
                writer: Some(crate::seal::sink(BufWriter::with_capacity(64 * 1024, file), &tmp)?),
                tmp,
                new: dir.join("new").join(&unique.file_name),
                delivered: false,
            });
        }
        delivery.write(header);
        match delivery.error.take() {
            Some(e) => Err(e),
            None => Ok(delivery),
        }
    }
}

/// A message being written, one temporary file per mailbox.
#[derive(Debug)]
pub(crate) struct Delivery {
    files: Vec<TmpFile>,
    /// The first write error; later writes are skipped and `commit` reports it.
    error: Option<io::Error>,
}

#[derive(Debug)]
struct TmpFile {
    writer: Option<crate::seal::Sink>,
    tmp: PathBuf,
    new: PathBuf,
    delivered: bool,
}

impl Delivery {
    /// Appends message bytes to every file. An error is remembered for `commit`: the
    /// rest of the message must still be read from the client anyway.
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        for f in &mut self.files {
            if let Some(w) = &mut f.writer
                && let Err(e) = w.write_all(bytes)
            {
                self.error = Some(e);
                return;
            }
        }
    }

    /// Finishes the delivery: flushes and fsyncs every file, then renames each into
    /// `new/` and fsyncs the directory. All or nothing: if any step fails, the files
    /// already moved are taken back out, so the client's retry does not duplicate mail.
    /// Returns the delivered paths.
    pub(crate) fn commit(mut self) -> io::Result<Vec<PathBuf>> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        for f in &mut self.files {
            if let Some(w) = f.writer.take() {
                let file = w.finish()?;
                file.sync_all()?;
            }
        }
        for i in 0..self.files.len() {
            if let Some(f) = self.files.get_mut(i) {
                if let Err(e) = fs::rename(&f.tmp, &f.new) {
                    self.rollback();
                    return Err(e);
                }
                f.delivered = true;
            }
        }
        for f in &self.files {
            if let Some(dir) = f.new.parent()
                && let Err(e) = File::open(dir).and_then(|d| d.sync_all())
            {
                self.rollback();
                return Err(e);
            }
        }
        Ok(self.files.iter().map(|f| f.new.clone()).collect())
    }

    fn rollback(&mut self) {
        for f in &mut self.files {
            if f.delivered {
                let _ = fs::remove_file(&f.new);
                f.delivered = false;
            }
        }
    }
}

impl Drop for Delivery {
    /// An unfinished delivery leaves nothing behind in `tmp/`.
    fn drop(&mut self) {
        for f in &mut self.files {
            f.writer = None;
            if !f.delivered {
                let _ = fs::remove_file(&f.tmp);
            }
        }
    }
}
