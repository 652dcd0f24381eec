//! The accounts, their stored secrets, and the users file.
//!
//! Every check goes through `postern::sasl`: passwords are PBKDF2-SHA256 hashes
//! ([`PasswordHash`]), SCRAM logins use RFC 5803 verifiers ([`ScramSecret`]), and an
//! unknown user is checked against the library's dummy credential, so "no such user"
//! and "wrong password" cost the same and get the same reply.
//!
//! ## The users file (`--users FILE`)
//!
//! One account per line, `#` comments and blank lines ignored:
//!
//! ```text
//! alice:$pbkdf2-sha256$i=100000$<salt>$<hash>:SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>
//! ```
//!
//! The name (also the Maildir name), the PHC string for PLAIN, LOGIN and POP3 USER/PASS,
//! and the RFC 5803 verifier for SCRAM-SHA-256(-PLUS). No plaintext: `mail-gateway
//! adduser FILE NAME` reads the password from stdin and writes the line.
//!
//! An optional last field `:totp=BASE32` (`adduser --totp`) adds a second factor: the
//! user types the password followed by the 6-digit TOTP code (PLAIN, LOGIN, USER/PASS);
//! a code is accepted once only. SCRAM cannot carry the code, so it is refused for such
//! a user (as for an unknown one).
//!
//! APOP and CRAM-MD5 need the plaintext secret on the server, so only `--user
//! NAME:PASSWORD` accounts (whose password is on the command line anyway) can use them;
//! for file accounts they fail like a wrong password.

use std::fmt;
use std::io::{self, Write as _};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use postern::otp::{Algorithm, OtpSecret, ReplayGuard, Totp};

use postern::sasl::{self, CredentialStore, PasswordHash, ScramSecret, SharedSecret};
use ring::rand::SecureRandom;
use zeroize::Zeroizing;

use crate::maildir;

/// Longest password accepted (`--user`, `adduser`), in octets.
pub(crate) const MAX_PASSWORD: usize = 255;
/// PBKDF2 iterations for new password hashes and for the dummy hash of unknown users
/// (`--hash-iterations`).
pub(crate) const DEFAULT_HASH_ITERATIONS: u32 = 100_000;

/// One account.
struct Account {
    /// The user name, which is also the Maildir name (`<maildir>/<name>/`), lower-case.
    name: String,
    password: PasswordHash,
    scram: ScramSecret,
    /// The plaintext secret, for APOP and CRAM-MD5: `--user` accounts only.
    shared: Option<SharedSecret>,
    /// The second factor, with the last accepted time step.
    totp: Option<(Totp, Mutex<ReplayGuard>)>,
}

/// Digits of the TOTP codes (what authenticator apps show by default).
const TOTP_DIGITS: u8 = 6;

/// The accounts known to POP3 and submission; the credential store of the SASL exchanges.
pub(crate) struct Users {
    accounts: Vec<Account>,
    sasl: Arc<sasl::Config>,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: never a secret.
        f.debug_struct("Users").field("names", &self.names()).finish_non_exhaustive()
    }
}

/// An account on the command line: `name` (already a valid Maildir name) and `password`.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) name: String,
    pub(crate) password: Zeroizing<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Users {
    /// The accounts from `--user` (hashed here, with `iterations`) and from the users
    /// file (already hashed). `sasl` is the exchange configuration; its dummy hash
    /// should have `iterations` too.
    pub(crate) fn new(
        credentials: &[Credentials],
        file: Vec<FileAccount>,
        iterations: u32,
        sasl: Arc<sasl::Config>,
        rng: &dyn SecureRandom,
    ) -> Result<Self, String> {
        let mut accounts = Vec::with_capacity(credentials.len() + file.len());
        for c in credentials {
            let pw = c.password.as_bytes();
            let password =
                PasswordHash::generate(pw, iterations, rng).map_err(|e| format!("--user {}: {e}", c.name))?;
            let scram = ScramSecret::generate(pw, sasl::DEFAULT_SCRAM_ITERATIONS, rng)
                .map_err(|e| format!("--user {}: {e}", c.name))?;
            let shared = Some(SharedSecret::new(pw));
            accounts.push(Account { name: c.name.clone(), password, scram, shared, totp: None });
        }
        for f in file {
            if accounts.iter().any(|a| a.name == f.name) {
                return Err(format!("user {:?} is defined twice (--user and --users)", f.name));
            }
            let totp = f.totp.map(|t| (t, Mutex::new(ReplayGuard::default())));
            accounts.push(Account { name: f.name, password: f.password, scram: f.scram, shared: None, totp });
        }
        Ok(Self { accounts, sasl })
    }

    /// The account names, for the startup line.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.accounts.iter().map(|a| a.name.as_str()).collect()
    }

    /// The SASL configuration the exchanges share.
    pub(crate) fn sasl(&self) -> &Arc<sasl::Config> {
        &self.sasl
    }

    /// The Maildir name of `user` (case-insensitive), if it exists.
    pub(crate) fn canonical(&self, user: &str) -> Option<&str> {
        self.find(user).map(|a| a.name.as_str())
    }

    /// USER/PASS: the Maildir name if `user` exists and `password` is its password
    /// (followed by a fresh TOTP code if the user has a second factor).
    pub(crate) fn check_password(&self, user: &str, password: &[u8]) -> Option<&str> {
        let digits = self.second_factor_digits(user);
        let ok = match digits.map(|d| postern::otp::split_code(password, d)) {
            Some(Some((password, code))) => {
                sasl::verify_password(&self.sasl, self, user, password)
                    && self.check_second_factor(user, code)
            }
            Some(None) => {
                // No code: still pay for the hash, then fail.
                let _ = sasl::verify_password(&self.sasl, self, user, password);
                false
            }
            None => sasl::verify_password(&self.sasl, self, user, password),
        };
        self.canonical(user).filter(|_| ok)
    }

    /// The second factor after a right password: `code` must be the user's current TOTP
    /// code (one step of drift either way) and not one accepted before.
    pub(crate) fn check_second_factor(&self, user: &str, code: &str) -> bool {
        let Some((totp, guard)) = self.find(user).and_then(|a| a.totp.as_ref()) else { return false };
        let mut guard = guard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        totp.verify(code, SystemTime::now(), &mut guard).is_some()
    }

    /// APOP: the Maildir name if `user` exists, has a shared secret, and `digest` is
    /// MD5(`timestamp` + secret). The digest is computed even for an unknown user.
    pub(crate) fn check_apop(&self, user: &str, timestamp: &str, digest: &str) -> Option<&str> {
        let ok = sasl::verify_apop(self, user, timestamp, digest);
        self.canonical(user).filter(|_| ok)
    }

    /// The account called `user` (case-insensitive), looking at every account.
    fn find(&self, user: &str) -> Option<&Account> {
        let wanted = user.to_lowercase();
        let mut found = None;
        for account in &self.accounts {
            if account.name == wanted {
                found = Some(account);
            }
        }
        found
    }
}

impl CredentialStore for Users {
    fn password(&self, authcid: &str) -> Option<PasswordHash> {
        self.find(authcid).map(|a| a.password.clone())
    }

    fn scram_sha256(&self, authcid: &str) -> Option<ScramSecret> {
        // SCRAM cannot carry a TOTP code: refused for users with a second factor.
        self.find(authcid).filter(|a| a.totp.is_none()).map(|a| a.scram.clone())
    }

    fn shared_secret(&self, authcid: &str) -> Option<SharedSecret> {
        self.find(authcid).filter(|a| a.totp.is_none()).and_then(|a| a.shared.clone())
    }

    fn second_factor_digits(&self, authcid: &str) -> Option<u8> {
        self.find(authcid).and_then(|a| a.totp.as_ref()).map(|_| TOTP_DIGITS)
    }
}

/// Checks an account name: a valid Maildir name, plain ASCII, no spaces, `@` or `:`.
/// Returns it lower-cased.
pub(crate) fn account_name(name: &str) -> Result<String, String> {
    let mailbox = maildir::mailbox_name(name).map_err(|why| format!("{name:?}: {why}"))?;
    if mailbox.contains(|c: char| c.is_whitespace() || c == '@' || c == ':') || !mailbox.is_ascii() {
        return Err(format!("{name:?}: want a plain ASCII name without spaces, @ or :"));
    }
    Ok(mailbox)
}

/// Checks a password: 1 to [`MAX_PASSWORD`] octets, no control characters.
pub(crate) fn check_new_password(password: &str) -> Result<(), String> {
    if password.is_empty() || password.len() > MAX_PASSWORD {
        return Err(format!("the password must be 1 to {MAX_PASSWORD} octets"));
    }
    if password.contains(|c: char| c.is_control()) {
        return Err("the password holds a control character".into());
    }
    Ok(())
}

/// An account read from the users file.
pub(crate) struct FileAccount {
    name: String,
    password: PasswordHash,
    scram: ScramSecret,
    totp: Option<Totp>,
}

impl fmt::Debug for FileAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileAccount").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Reads the users file. Errors name the line; they never echo a secret.
pub(crate) fn load(path: &Path) -> Result<Vec<FileAccount>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn parse(text: &str) -> Result<Vec<FileAccount>, String> {
    let mut accounts: Vec<FileAccount> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let account = parse_line(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        if accounts.iter().any(|a| a.name == account.name) {
            return Err(format!("line {}: user {:?} given twice", n + 1, account.name));
        }
        accounts.push(account);
    }
    Ok(accounts)
}

/// `name:PHC:RFC5803[:totp=BASE32]`. The PHC string holds no `:`; the RFC 5803 string
/// holds two.
fn parse_line(line: &str) -> Result<FileAccount, String> {
    let want = || "want NAME:$pbkdf2-sha256$...:SCRAM-SHA-256$...[:totp=BASE32]".to_owned();
    let mut parts = line.splitn(3, ':');
    let (Some(name), Some(phc), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(want());
    };
    let name = account_name(name)?;
    let password = phc.parse::<PasswordHash>().map_err(|e| e.to_string())?;
    let mut rest = rest.splitn(4, ':');
    let (Some(a), Some(b), Some(c)) = (rest.next(), rest.next(), rest.next()) else { return Err(want()) };
    let scram = format!("{a}:{b}:{c}").parse::<ScramSecret>().map_err(|e| e.to_string())?;
    let totp = match rest.next() {
        None => None,
        Some(field) => {
            let b32 = field.strip_prefix("totp=").ok_or_else(want)?;
            let secret = OtpSecret::from_base32(b32).map_err(|e| format!("totp: {e}"))?;
            Some(Totp::new(secret, Algorithm::Sha1, TOTP_DIGITS).map_err(|e| format!("totp: {e}"))?)
        }
    };
    Ok(FileAccount { name, password, scram, totp })
}

/// The users-file line for `name` with `password` (and a TOTP secret).
fn entry(
    name: &str,
    password: &[u8],
    iterations: u32,
    totp: Option<&OtpSecret>,
    rng: &dyn SecureRandom,
) -> Result<Zeroizing<String>, String> {
    let hash = PasswordHash::generate(password, iterations, rng).map_err(|e| e.to_string())?;
    let scram =
        ScramSecret::generate(password, sasl::DEFAULT_SCRAM_ITERATIONS, rng).map_err(|e| e.to_string())?;
    let mut line = Zeroizing::new(format!("{name}:{}:{}", hash.to_phc_string(), scram.to_rfc5803_string()));
    if let Some(secret) = totp {
        line.push_str(":totp=");
        line.push_str(&secret.to_base32());
    }
    Ok(line)
}

/// What `adduser` did.
pub(crate) struct Added {
    /// An existing line of the user was replaced.
    pub(crate) replaced: bool,
    /// With `--totp`: the `otpauth://` URI to enrol in an authenticator app.
    pub(crate) otpauth: Option<Zeroizing<String>>,
}

/// `mail-gateway adduser FILE NAME [--totp]`: hashes `password` and adds or replaces the
/// line of `name` in `path` (created if missing). The file is replaced atomically,
/// readable by its owner only.
pub(crate) fn add_user(
    path: &Path,
    name: &str,
    password: &str,
    iterations: u32,
    totp: bool,
) -> Result<Added, String> {
    let name = account_name(name)?;
    check_new_password(password)?;
    let rng = ring::rand::SystemRandom::new();
    let secret = if totp { Some(OtpSecret::generate(&rng).map_err(|e| e.to_string())?) } else { None };
    let line = entry(&name, password.as_bytes(), iterations, secret.as_ref(), &rng)?;
    let otpauth = match &secret {
        Some(secret) => Some(
            Totp::new(secret.clone(), Algorithm::Sha1, TOTP_DIGITS)
                .map_err(|e| e.to_string())?
                .otpauth_uri("postern mail-gateway", &name),
        ),
        None => None,
    };
    let old = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    // Check what is there before rewriting it.
    parse(&old).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut replaced = false;
    let mut out = Zeroizing::new(String::with_capacity(old.len() + line.len() + 1));
    for l in old.lines() {
        let is_name =
            l.trim().split(':').next().is_some_and(|n| n == name) && !l.trim_start().starts_with('#');
        if is_name {
            out.push_str(&line);
            replaced = true;
        } else {
            out.push_str(l);
        }
        out.push('\n');
    }
    if !replaced {
        out.push_str(&line);
        out.push('\n');
    }
    let tmp = path.with_extension("tmp");
    let write = || -> io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp)?;
        f.write_all(out.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Added { replaced, otpauth })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Users {
        let rng = ring::rand::SystemRandom::new();
        let config = Arc::new(sasl::Config::new(&rng).unwrap().with_dummy_iterations(10).unwrap());
        let file = parse(&entry("bob", b"hunter2", 10, None, &rng).unwrap()).unwrap();
        Users::new(
            &[Credentials { name: "alice".into(), password: Zeroizing::new("secret".into()) }],
            file,
            10,
            config,
            &rng,
        )
        .unwrap()
    }

    #[test]
    fn passwords() {
        let users = users();
        assert_eq!(users.check_password("alice", b"secret"), Some("alice"));
        assert_eq!(users.check_password("ALICE", b"secret"), Some("alice"));
        assert_eq!(users.check_password("bob", b"hunter2"), Some("bob"));
        for wrong in [&b"secre"[..], b"secret\0", b"secret!", b"", b"Secret"] {
            assert_eq!(users.check_password("alice", wrong), None, "{wrong:?}");
        }
        assert_eq!(users.check_password("carol", b"secret"), None);
        let ts = "<1896.697170952@dbc.mtview.ca.us>";
        assert_eq!(users.check_apop("nobody", ts, "c4c9334bac560ecc979e58001b3e22fb"), None);
        assert!(!format!("{users:?}").contains("secret"));
    }

    #[test]
    fn file_format() {
        assert!(parse("# comment\n\n").unwrap().is_empty());
        for bad in [
            "alice",
            "alice:$pbkdf2-sha256$i=1$c2FsdA$AAAA",
            "a b:x:y",
            "alice:x:SCRAM-SHA-256$1:c2FsdA==$AA:AA",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let rng = ring::rand::SystemRandom::new();
        let line = entry("bob", b"pw", 10, None, &rng).unwrap();
        assert!(parse(&format!("{}\n{}\n", *line, *line)).unwrap_err().contains("twice"));
        let secret = OtpSecret::new(b"12345678901234567890".to_vec());
        let line = entry("carol", b"pw", 10, Some(&secret), &rng).unwrap();
        assert!(line.ends_with(":totp=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"), "{}", *line);
        assert!(parse(&line).unwrap()[0].totp.is_some());
        assert!(parse(&format!("{}x", *line)).is_err());
        assert!(parse(&line.replace("totp=", "otp=")).is_err());
    }
}
