//! The demo accounts (`--user NAME:PASSWORD`) and how a login is checked.
//!
//! Every check does the same work whether the user exists or not, and whether the
//! password is right or wrong: all accounts are looked at (no early exit), an unknown
//! user is checked against a dummy password, and passwords are compared in constant
//! time over fixed-size buffers. The caller answers every failure with the same reply.
//!
//! The comparison is written by hand here because the example only has the crate's own
//! API; the crate's SASL credential traits will replace it.

use std::fmt;

use postern::pop3::apop_verify;
use zeroize::Zeroizing;

/// Longest password accepted on the command line, in octets. Passwords are compared over
/// buffers of this size, so the comparison time does not depend on their length.
pub(crate) const MAX_PASSWORD: usize = 255;
/// The size of the padded comparison buffers (one more than a password can fill, so a
/// too-long attempt still differs).
const PADDED: usize = MAX_PASSWORD + 1;

/// One account: its Maildir name and its password, padded with zeros.
struct Account {
    /// The user name, which is also the Maildir name (`<maildir>/<name>/`), lower-case.
    name: String,
    /// The password in the first `len` octets, zeros after; wiped on drop.
    padded: Zeroizing<[u8; PADDED]>,
    len: usize,
}

impl Account {
    fn password(&self) -> &[u8] {
        self.padded.get(..self.len).unwrap_or_default()
    }
}

/// The accounts known to the POP3 side.
pub(crate) struct Users {
    accounts: Vec<Account>,
    /// Checked when the user is unknown, so that costs the same as a wrong password.
    dummy: Account,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: never a password.
        let names: Vec<&str> = self.accounts.iter().map(|a| a.name.as_str()).collect();
        f.debug_struct("Users").field("names", &names).finish_non_exhaustive()
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
    /// The accounts from `--user`; names are unique and passwords at most
    /// [`MAX_PASSWORD`] octets (the command line checks both).
    pub(crate) fn new(credentials: &[Credentials]) -> Self {
        let accounts = credentials.iter().map(|c| account(&c.name, c.password.as_bytes())).collect();
        Self { accounts, dummy: account("", b"postern-dummy-password") }
    }

    /// The account names, for the startup line.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.accounts.iter().map(|a| a.name.as_str()).collect()
    }

    /// USER/PASS and AUTH PLAIN: the Maildir name if `user` exists and `password` is
    /// its password. User names are case-insensitive, as mailbox names are for SMTP.
    pub(crate) fn check_password(&self, user: &str, password: &[u8]) -> Option<&str> {
        let account = self.find(user);
        let checked = account.unwrap_or(&self.dummy);
        let ok = constant_time_eq(&checked.padded, checked.len, password);
        account.filter(|_| ok).map(|a| a.name.as_str())
    }

    /// APOP: the Maildir name if `user` exists and `digest` is MD5(`timestamp` + its
    /// password). The digest is computed and compared even for an unknown user.
    pub(crate) fn check_apop(&self, user: &str, timestamp: &str, digest: &str) -> Option<&str> {
        let account = self.find(user);
        let ok = apop_verify(timestamp, account.unwrap_or(&self.dummy).password(), digest);
        account.filter(|_| ok).map(|a| a.name.as_str())
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

fn account(name: &str, password: &[u8]) -> Account {
    let mut padded = Zeroizing::new([0_u8; PADDED]);
    let len = password.len().min(MAX_PASSWORD);
    if let (Some(dst), Some(src)) = (padded.get_mut(..len), password.get(..len)) {
        dst.copy_from_slice(src);
    }
    Account { name: name.to_owned(), padded, len }
}

/// `true` if `given` is the password held in `stored` (its first `stored_len` octets,
/// zeros after).
///
/// Constant time in its structure: `given` is copied into a zero-padded buffer of the
/// same fixed size, every byte of both buffers is XOR-ed into one accumulator with no
/// early exit, and the lengths are XOR-ed in too (so a prefix of the password, whose
/// padding matches, still fails). `black_box` keeps the optimiser from turning the loop
/// into an early-exit comparison.
fn constant_time_eq(stored: &[u8; PADDED], stored_len: usize, given: &[u8]) -> bool {
    let mut attempt = Zeroizing::new([0_u8; PADDED]);
    let len = given.len().min(PADDED);
    if let (Some(dst), Some(src)) = (attempt.get_mut(..len), given.get(..len)) {
        dst.copy_from_slice(src);
    }
    let mut diff = (stored_len ^ given.len()) as u64;
    for (a, b) in stored.iter().zip(attempt.iter()) {
        diff |= u64::from(std::hint::black_box(a ^ b));
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords() {
        let users =
            Users::new(&[Credentials { name: "alice".into(), password: Zeroizing::new("secret".into()) }]);
        assert_eq!(users.check_password("alice", b"secret"), Some("alice"));
        assert_eq!(users.check_password("ALICE", b"secret"), Some("alice"));
        for wrong in [&b"secre"[..], b"secret\0", b"secret!", b"", b"Secret"] {
            assert_eq!(users.check_password("alice", wrong), None, "{wrong:?}");
        }
        assert_eq!(users.check_password("alice", &[b'a'; 1000]), None);
        assert_eq!(users.check_password("bob", b"secret"), None);
        assert_eq!(users.check_password("", b"postern-dummy-password"), None);
        // RFC 1939 section 7's example digest, with alice's password instead.
        let ts = "<1896.697170952@dbc.mtview.ca.us>";
        assert_eq!(users.check_apop("bob", ts, "c4c9334bac560ecc979e58001b3e22fb"), None);
    }
}
