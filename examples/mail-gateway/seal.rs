//! `--seal-store`: every delivered message is sealed at rest with its mailbox's X-Wing
//! key ring (`postern::hybrid`), and opened again when POP3 reads it.
//!
//! - **Keys.** One key ring per mailbox, `<keys>/<mailbox>.keyring` (by default `<keys>`
//!   is `postern-keys/` beside the Maildir root, `--seal-keys DIR` moves it), created
//!   on first start for every `--user` and on first delivery for any other mailbox,
//!   mode 0600 in a 0700 directory, written atomically (a temporary file, then a link
//!   or rename). The file is read again for every message, so a rotation by
//!   `mail-gateway keyring rotate` takes effect at once, even while the gateway runs.
//! - **Delivery** ([`sink`], used by `maildir.rs` for each mailbox's temporary file):
//!   the message is sealed as it arrives, through a `StreamSealer` (64 KiB chunks) in
//!   front of the file in `tmp/`, so plaintext never reaches the disk; at most one chunk
//!   of it is held in memory (wiped on drop). What is renamed into `new/` is sealed.
//! - **Reading** ([`open`], called by `maildrop.rs`): a file that starts with the
//!   envelope magic is opened whole with the mailbox's ring (the key id in its header
//!   picks the key) into a buffer that zeroizes on drop; any other file (delivered before
//!   `--seal-store` was on) is read as it is. Nothing of a message is served unless all
//!   of it verified.
//! - The HPKE `info` names the mailbox, so a sealed file copied into another mailbox
//!   does not open there.
//!
//! Keys beside the mail protect against a copy of the Maildir alone (a backup, a
//! disk image of the mail volume); put `--seal-keys` on another volume, or behind an
//! HSM-backed unlock in a real deployment.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Cursor, Read, Seek, SeekFrom, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use postern::hybrid::envelope::{DEFAULT_CHUNK_SIZE, MAGIC, StreamSealer};
use postern::hybrid::{HybridError, KeyRing};
use ring::rand::SystemRandom;
use zeroize::Zeroizing;

/// The key-ring file suffix.
const SUFFIX: &str = ".keyring";

/// The key store, set once at startup when `--seal-store` is on.
static STORE: OnceLock<Store> = OnceLock::new();

#[derive(Debug)]
struct Store {
    dir: PathBuf,
    rng: SystemRandom,
    /// Each mailbox's current key id as last seen, so that a rotation made by
    /// `mail-gateway keyring rotate` (another process) is audited when this one first uses
    /// the new key.
    seen: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

/// Where the key rings live: `--seal-keys`, or `postern-keys/` beside the Maildir root.
pub(crate) fn keys_dir(maildir: &Path, explicit: Option<&Path>) -> PathBuf {
    if let Some(dir) = explicit {
        return dir.to_path_buf();
    }
    match maildir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.join("postern-keys"),
        _ => PathBuf::from("postern-keys"),
    }
}

/// Turns sealing on: creates the key directory (0700) and a key ring for each of
/// `mailboxes` that has none. Returns how many rings were created.
pub(crate) fn enable(dir: &Path, mailboxes: &[&str]) -> io::Result<usize> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let store = Store { dir: dir.to_path_buf(), rng: SystemRandom::new(), seen: Default::default() };
    let mut created = 0;
    for mailbox in mailboxes {
        let (ring, new) = store.load_or_create(mailbox)?;
        store.note_current(mailbox, &ring, new);
        if new {
            created += 1;
        }
    }
    STORE.set(store).map_err(|_| io::Error::other("sealing enabled twice"))?;
    Ok(created)
}

impl Store {
    /// Audits a key ring created now (old id 0) or a current key that changed since this
    /// process last saw the mailbox's ring.
    fn note_current(&self, mailbox: &str, ring: &KeyRing, created: bool) {
        let id = ring.current().id().0;
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = seen.insert(mailbox.to_owned(), id);
        match (created, old) {
            (true, _) => crate::audit::key_rotation(&format!("sealing {mailbox}"), 0, id),
            (false, Some(old)) if old != id => {
                crate::audit::key_rotation(&format!("sealing {mailbox}"), old, id)
            }
            _ => {}
        }
    }

    fn path(&self, mailbox: &str) -> PathBuf {
        self.dir.join(format!("{mailbox}{SUFFIX}"))
    }

    /// The mailbox's ring, created if it has none; `true` if it was created now.
    fn load_or_create(&self, mailbox: &str) -> io::Result<(KeyRing, bool)> {
        let path = self.path(mailbox);
        match read_ring(&path) {
            Ok(ring) => return Ok((ring, false)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let ring = KeyRing::generate(&self.rng, SystemTime::now()).map_err(hybrid_error)?;
        let tmp = write_tmp(&path, &ring.to_bytes())?;
        // A link fails if another delivery created the ring meanwhile: use theirs.
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok((ring, true)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok((read_ring(&path)?, false)),
            Err(e) => Err(e),
        }
    }
}

/// Reads and parses a key-ring file.
fn read_ring(path: &Path) -> io::Result<KeyRing> {
    let bytes = Zeroizing::new(
        fs::read(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?,
    );
    KeyRing::from_bytes(&bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))
}

/// Writes `bytes` to a fresh 0600 temporary file next to `path`, fsynced.
fn write_tmp(path: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    let tmp = PathBuf::from(name);
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(tmp)
}

fn hybrid_error(e: HybridError) -> io::Error {
    io::Error::other(format!("seal: {e}"))
}

/// The HPKE `info` for a mailbox.
fn info(mailbox: &str) -> Vec<u8> {
    format!("postern mail-gateway mailbox {mailbox}").into_bytes()
}

/// The mailbox of a file at `<root>/<mailbox>/{tmp,new,cur}/<name>`.
fn mailbox_of(path: &Path) -> io::Result<String> {
    // `<root>/<mailbox>/tmp/<name>`, or `<root>/<mailbox>/.<Folder>/tmp/<name>` for a
    // Maildir++ folder (e.g. `.Junk`): a folder is sealed with its mailbox's key.
    let mut dir = path.parent().and_then(Path::parent);
    if dir.and_then(Path::file_name).and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')) {
        dir = dir.and_then(Path::parent);
    }
    dir.and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| io::Error::other(format!("{}: not in a Maildir", path.display())))
}

/// Where a delivery writes one mailbox's copy: the temporary file itself, or (with
/// `--seal-store`) a stream sealer in front of it, so that no plaintext reaches the disk.
#[derive(Debug)]
pub(crate) enum Sink {
    /// Sealing is off.
    Plain(BufWriter<File>),
    /// Sealing to the mailbox's current key.
    Sealed(Box<Sealing>),
}

/// A stream sealer and the file its envelope goes to.
#[derive(Debug)]
pub(crate) struct Sealing {
    out: BufWriter<File>,
    sealer: StreamSealer,
    /// Sealed bytes on their way to `out` (never plaintext).
    sealed: Vec<u8>,
}

/// Delivery hook: the sink for the temporary file `tmp` of a mailbox
/// (`<root>/<mailbox>/tmp/<name>`). Plain unless `--seal-store` is on.
pub(crate) fn sink(out: BufWriter<File>, tmp: &Path) -> io::Result<Sink> {
    let Some(store) = STORE.get() else { return Ok(Sink::Plain(out)) };
    let mailbox = mailbox_of(tmp)?;
    let (ring, created) = store.load_or_create(&mailbox)?;
    store.note_current(&mailbox, &ring, created);
    let mut sealed = Vec::with_capacity(DEFAULT_CHUNK_SIZE as usize + 2048);
    let sealer = ring
        .stream_sealer(&store.rng, DEFAULT_CHUNK_SIZE, &info(&mailbox), b"", &mut sealed)
        .map_err(hybrid_error)?;
    Ok(Sink::Sealed(Box::new(Sealing { out, sealer, sealed })))
}

impl io::Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(w) => w.write(bytes),
            Self::Sealed(s) => {
                s.sealer.push(bytes, &mut s.sealed).map_err(hybrid_error)?;
                s.out.write_all(&s.sealed)?;
                s.sealed.clear();
                Ok(bytes.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(w) => w.flush(),
            Self::Sealed(s) => s.out.flush(),
        }
    }
}

impl Sink {
    /// Seals the last chunk (if sealing) and flushes; returns the file to fsync.
    pub(crate) fn finish(self) -> io::Result<File> {
        let out = match self {
            Self::Plain(w) => w,
            Self::Sealed(s) => {
                let Sealing { mut out, sealer, mut sealed } = *s;
                sealer.finish(&mut sealed).map_err(hybrid_error)?;
                out.write_all(&sealed)?;
                out
            }
        };
        out.into_inner().map_err(io::IntoInnerError::into_error)
    }
}

/// A message file as POP3 reads it: the file itself, or a sealed message's plaintext.
#[derive(Debug)]
pub(crate) enum Reader {
    /// Not sealed (or sealing is off).
    Plain(File),
    /// Opened and verified, in a buffer wiped on drop.
    Sealed(Cursor<Zeroizing<Vec<u8>>>),
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(f) => f.read(buf),
            Self::Sealed(c) => c.read(buf),
        }
    }
}

impl Seek for Reader {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match self {
            Self::Plain(f) => f.seek(pos),
            Self::Sealed(c) => c.seek(pos),
        }
    }
}

/// Maildrop hook: opens a message file, unsealing it if it is sealed.
pub(crate) fn open(path: &Path) -> io::Result<Reader> {
    let mut file = File::open(path)?;
    let Some(store) = STORE.get() else { return Ok(Reader::Plain(file)) };
    let mut magic = [0u8; 4];
    let sealed = match file.read_exact(&mut magic) {
        Ok(()) => magic == MAGIC,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => false,
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(0))?;
    if !sealed {
        return Ok(Reader::Plain(file));
    }
    let mailbox = mailbox_of(path)?;
    let ring = read_ring(&store.path(&mailbox))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let plain = ring
        .open(&bytes, &info(&mailbox), b"")
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))?;
    Ok(Reader::Sealed(Cursor::new(plain)))
}

/// `mail-gateway keyring ...`: `None` if the command line is not a key-ring command.
pub(crate) fn command(args: &[OsString]) -> Option<ExitCode> {
    if args.first().and_then(|a| a.to_str()) != Some("keyring") {
        return None;
    }
    Some(match keyring_command(args.get(1..).unwrap_or_default()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(KeyringError::Usage(e)) => {
            eprintln!("error: {e}\n\n{KEYRING_USAGE}");
            ExitCode::from(2)
        }
        Err(KeyringError::Io(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    })
}

/// The usage of `mail-gateway keyring`.
pub(crate) const KEYRING_USAGE: &str = "\
USAGE:
    mail-gateway keyring rotate [--maildir DIR] [--seal-keys DIR] [--user NAME]...
        gives each mailbox's key ring (or only NAME's) a new current key; older keys
        stay and keep opening the messages sealed to them
    mail-gateway keyring list [--maildir DIR] [--seal-keys DIR] [--user NAME]...
        lists each ring's keys: id, creation time (Unix seconds), current or not
    mail-gateway keyring retire --user NAME --key ID [--maildir DIR] [--seal-keys DIR]
        removes an old key: messages sealed to it can no longer be read";

enum KeyringError {
    Usage(String),
    Io(io::Error),
}

impl From<io::Error> for KeyringError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

fn keyring_command(args: &[OsString]) -> Result<(), KeyringError> {
    let mut args = args.iter().map(|a| a.to_str().map(str::to_owned));
    let action = args.next().flatten().ok_or_else(|| KeyringError::Usage("which keyring action?".into()))?;
    let mut maildir = PathBuf::from("./postern-data/Maildir");
    let mut explicit = None;
    let mut users: Vec<String> = Vec::new();
    let mut key: Option<u32> = None;
    while let Some(arg) = args.next() {
        let arg = arg.ok_or_else(|| KeyringError::Usage("argument is not UTF-8".into()))?;
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let value = inline
            .or_else(|| args.next().flatten())
            .ok_or_else(|| KeyringError::Usage(format!("{name} needs a value")))?;
        match name.as_str() {
            "--maildir" => maildir = PathBuf::from(value),
            "--seal-keys" => explicit = Some(PathBuf::from(value)),
            "--user" => users.push(value.to_lowercase()),
            "--key" => {
                key = Some(value.parse().map_err(|e| KeyringError::Usage(format!("--key {value}: {e}")))?);
            }
            other => return Err(KeyringError::Usage(format!("unknown argument {other:?}"))),
        }
    }
    let dir = keys_dir(&maildir, explicit.as_deref());
    if users.is_empty() {
        for entry in
            fs::read_dir(&dir).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?
        {
            let name = entry?.file_name();
            if let Some(user) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) {
                users.push(user.to_owned());
            }
        }
        users.sort();
    }
    let rng = SystemRandom::new();
    for user in &users {
        if user.contains(['/', '\\']) || user.starts_with('.') {
            return Err(KeyringError::Usage(format!("--user {user:?}: not a mailbox name")));
        }
        let path = dir.join(format!("{user}{SUFFIX}"));
        let mut ring = read_ring(&path)?;
        match action.as_str() {
            "rotate" => {
                let id = ring.rotate(&rng, SystemTime::now()).map_err(hybrid_error)?;
                replace(&path, &ring)?;
                println!("{user}: new current key {id}");
            }
            "list" => {
                let current = ring.current().id();
                for k in ring.keys() {
                    let mark = if k.id() == current { " current" } else { "" };
                    println!("{user}: key {} created {}{mark}", k.id(), k.created_unix());
                }
            }
            "retire" => {
                let id = key.ok_or_else(|| KeyringError::Usage("retire needs --key ID".into()))?;
                ring.retire(postern::hybrid::KeyId(id)).map_err(hybrid_error)?;
                replace(&path, &ring)?;
                println!("{user}: key {id} retired");
            }
            other => return Err(KeyringError::Usage(format!("unknown keyring action {other:?}"))),
        }
    }
    Ok(())
}

/// Replaces a key-ring file atomically.
fn replace(path: &Path, ring: &KeyRing) -> io::Result<()> {
    let tmp = write_tmp(path, &ring.to_bytes())?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_maildir_plus_plus_folder_is_sealed_with_its_mailbox_key() {
        let root = Path::new("/srv/Maildir");
        assert_eq!(mailbox_of(&root.join("alice/tmp/1.x")).unwrap(), "alice");
        assert_eq!(mailbox_of(&root.join("alice/.Junk/tmp/1.x")).unwrap(), "alice");
        assert!(mailbox_of(Path::new("x")).is_err());
    }
}
