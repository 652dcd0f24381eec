//! Stored secrets in standard forms: PBKDF2-SHA256 password hashes in a PHC string, SCRAM
//! keys as in RFC 5803, and plaintext-equivalent shared secrets (CRAM-MD5, APOP).

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ring::rand::SecureRandom;
use ring::{digest, hmac, pbkdf2};
use zeroize::{Zeroize, Zeroizing};

use super::SaslError;

/// Salt length of new secrets, in octets (RFC 8018 recommends at least 8; 16 is usual).
pub const SALT_LEN: usize = 16;
/// The PBKDF2 iteration count [`PasswordHash::generate`] uses by default: OWASP's 2023
/// figure for PBKDF2-HMAC-SHA256.
pub const DEFAULT_PASSWORD_ITERATIONS: u32 = 600_000;
/// The SCRAM iteration count [`ScramSecret::generate`] uses by default. RFC 7677 §4 asks
/// for at least 4096; the client repeats this work at every login.
pub const DEFAULT_SCRAM_ITERATIONS: u32 = 4096;
/// Longest salt accepted when parsing a stored secret.
const MAX_SALT: usize = 64;
/// Iteration counts above this are refused when parsing: a corrupt or hostile entry must
/// not make one login cost minutes.
pub const MAX_ITERATIONS: u32 = 10_000_000;

fn iterations(n: u32) -> Result<NonZeroU32, SaslError> {
    NonZeroU32::new(n).filter(|n| n.get() <= MAX_ITERATIONS).ok_or(SaslError::Iterations(n))
}

fn random_salt(rng: &dyn SecureRandom) -> Result<[u8; SALT_LEN], SaslError> {
    let mut salt = [0_u8; SALT_LEN];
    rng.fill(&mut salt).map_err(|_| SaslError::Random)?;
    Ok(salt)
}

/// A PBKDF2-HMAC-SHA256 password hash, for PLAIN, LOGIN and POP3 USER/PASS.
///
/// Stored as a PHC-style string, `$pbkdf2-sha256$i=<iterations>$<salt>$<hash>` (salt and
/// hash in unpadded standard base64). The hash is zeroized on drop and never printed.
///
/// ```
/// use postern::sasl::PasswordHash;
///
/// let hash = PasswordHash::with_salt(b"correct horse", b"0123456789abcdef", 1000).unwrap();
/// let stored = hash.to_phc_string();
/// assert!(stored.starts_with("$pbkdf2-sha256$i=1000$"));
/// let parsed: PasswordHash = stored.parse().unwrap();
/// assert!(parsed.verify(b"correct horse"));
/// assert!(!parsed.verify(b"correct horse "));
/// assert_eq!(format!("{parsed:?}"), "PasswordHash { iterations: 1000, .. }");
/// ```
#[derive(Clone)]
pub struct PasswordHash {
    iterations: NonZeroU32,
    salt: Vec<u8>,
    hash: Zeroizing<[u8; 32]>,
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt.
    pub fn generate(password: &[u8], iterations: u32, rng: &dyn SecureRandom) -> Result<Self, SaslError> {
        Self::with_salt(password, &random_salt(rng)?, iterations)
    }

    /// Hashes `password` with the given salt (deterministic: for tests and migrations).
    /// A password holding a NUL octet is refused (see [`verify`](Self::verify)).
    pub fn with_salt(password: &[u8], salt: &[u8], iterations: u32) -> Result<Self, SaslError> {
        if salt.is_empty() || salt.len() > MAX_SALT {
            return Err(SaslError::Salt);
        }
        if password.contains(&0) {
            return Err(SaslError::NulInPassword);
        }
        let n = self::iterations(iterations)?;
        let mut hash = Zeroizing::new([0_u8; 32]);
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, n, salt, password, hash.as_mut());
        Ok(Self { iterations: n, salt: salt.to_vec(), hash })
    }

    pub(crate) fn from_parts(
        salt: &[u8],
        iterations: u32,
        hash: Zeroizing<[u8; 32]>,
    ) -> Result<Self, SaslError> {
        if salt.is_empty() || salt.len() > MAX_SALT {
            return Err(SaslError::Salt);
        }
        Ok(Self { iterations: self::iterations(iterations)?, salt: salt.to_vec(), hash })
    }

    /// `true` if `password` is the password (PBKDF2 again, compared in constant time).
    ///
    /// A password holding a NUL octet never verifies: HMAC pads short keys with zeros,
    /// so PBKDF2 gives `secret` and `secret\0` the same hash (RFC 4616 and SASLprep
    /// forbid NUL in passwords anyway). The PBKDF2 run happens all the same.
    #[must_use]
    pub fn verify(&self, password: &[u8]) -> bool {
        let ok = pbkdf2::verify(
            pbkdf2::PBKDF2_HMAC_SHA256,
            self.iterations,
            &self.salt,
            password,
            self.hash.as_ref(),
        )
        .is_ok();
        ok & !password.contains(&0)
    }

    /// The iteration count.
    #[must_use]
    pub fn iterations(&self) -> u32 {
        self.iterations.get()
    }

    /// The PHC string to store.
    #[must_use]
    pub fn to_phc_string(&self) -> String {
        format!(
            "$pbkdf2-sha256$i={}${}${}",
            self.iterations,
            STANDARD_NO_PAD.encode(&self.salt),
            STANDARD_NO_PAD.encode(self.hash.as_ref())
        )
    }
}

impl FromStr for PasswordHash {
    type Err = SaslError;

    /// Parses `$pbkdf2-sha256$i=N$salt$hash` (padding in the base64 is tolerated).
    fn from_str(s: &str) -> Result<Self, SaslError> {
        let bad = || SaslError::Format("a PBKDF2 hash ($pbkdf2-sha256$i=N$salt$hash)");
        let mut parts = s.split('$');
        let (Some(""), Some("pbkdf2-sha256"), Some(i), Some(salt), Some(hash), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let n: u32 = i.strip_prefix("i=").and_then(|n| n.parse().ok()).ok_or_else(bad)?;
        let n = iterations(n)?;
        let salt = b64(salt).ok_or_else(bad)?;
        if salt.is_empty() || salt.len() > MAX_SALT {
            return Err(SaslError::Salt);
        }
        let decoded = Zeroizing::new(b64(hash).ok_or_else(bad)?);
        let hash: [u8; 32] = decoded.as_slice().try_into().map_err(|_| bad())?;
        Ok(Self { iterations: n, salt, hash: Zeroizing::new(hash) })
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHash").field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

/// Base64 with or without padding.
fn b64(s: &str) -> Option<Vec<u8>> {
    STANDARD_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// The SCRAM-SHA-256 verifier of one user (RFC 5802 §3): salt, iteration count,
/// `StoredKey` and `ServerKey`. The server never holds the password or the salted
/// password; the keys are zeroized on drop and never printed.
///
/// Stored in the form of RFC 5803: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`
/// (standard base64).
///
/// ```
/// use postern::sasl::ScramSecret;
///
/// // RFC 7677 §3: user "user", password "pencil".
/// let salt = [0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e, 0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81];
/// let secret = ScramSecret::with_salt(b"pencil", &salt, 4096).unwrap();
/// let stored = secret.to_rfc5803_string();
/// assert!(stored.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"));
/// assert_eq!(stored.parse::<ScramSecret>().unwrap().to_rfc5803_string(), stored);
/// ```
#[derive(Clone)]
pub struct ScramSecret {
    pub(crate) iterations: NonZeroU32,
    pub(crate) salt: Vec<u8>,
    pub(crate) stored_key: Zeroizing<[u8; 32]>,
    pub(crate) server_key: Zeroizing<[u8; 32]>,
}

impl ScramSecret {
    /// Derives the verifier of `password` with a fresh random salt.
    ///
    /// The password is used as given (UTF-8 octets): SASLprep (RFC 4013) is not applied,
    /// which makes no difference for ASCII passwords.
    pub fn generate(password: &[u8], iterations: u32, rng: &dyn SecureRandom) -> Result<Self, SaslError> {
        Self::with_salt(password, &random_salt(rng)?, iterations)
    }

    /// Derives the verifier of `password` with the given salt (deterministic).
    pub fn with_salt(password: &[u8], salt: &[u8], iterations: u32) -> Result<Self, SaslError> {
        if salt.is_empty() || salt.len() > MAX_SALT {
            return Err(SaslError::Salt);
        }
        let n = self::iterations(iterations)?;
        let mut salted = Zeroizing::new([0_u8; 32]);
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, n, salt, password, salted.as_mut());
        let key = hmac::Key::new(hmac::HMAC_SHA256, salted.as_ref());
        let mut client_key = hmac_32(&key, b"Client Key");
        let stored_key = sha256(client_key.as_ref());
        client_key.zeroize();
        let server_key = hmac_32(&key, b"Server Key");
        Ok(Self { iterations: n, salt: salt.to_vec(), stored_key, server_key })
    }

    /// The iteration count.
    #[must_use]
    pub fn iterations(&self) -> u32 {
        self.iterations.get()
    }

    /// The RFC 5803 string to store.
    #[must_use]
    pub fn to_rfc5803_string(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key.as_ref()),
            STANDARD.encode(self.server_key.as_ref())
        )
    }
}

impl FromStr for ScramSecret {
    type Err = SaslError;

    /// Parses `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (RFC 5803).
    fn from_str(s: &str) -> Result<Self, SaslError> {
        let bad = || SaslError::Format("an RFC 5803 SCRAM-SHA-256 secret");
        let rest = s.strip_prefix("SCRAM-SHA-256$").ok_or_else(bad)?;
        let (params, keys) = rest.split_once('$').ok_or_else(bad)?;
        let (i, salt) = params.split_once(':').ok_or_else(bad)?;
        let (stored, server) = keys.split_once(':').ok_or_else(bad)?;
        let n = iterations(i.parse().map_err(|_| bad())?)?;
        let salt = b64(salt).ok_or_else(bad)?;
        if salt.is_empty() || salt.len() > MAX_SALT {
            return Err(SaslError::Salt);
        }
        let key = |k: &str| -> Result<Zeroizing<[u8; 32]>, SaslError> {
            let v = Zeroizing::new(b64(k).ok_or_else(bad)?);
            Ok(Zeroizing::new(v.as_slice().try_into().map_err(|_| bad())?))
        };
        Ok(Self { iterations: n, salt, stored_key: key(stored)?, server_key: key(server)? })
    }
}

impl fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramSecret").field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

/// A plaintext-equivalent shared secret, for the legacy mechanisms that need one on the
/// server (CRAM-MD5, APOP). Zeroized on drop, never printed. Prefer SCRAM: whoever reads
/// this secret can log in.
#[derive(Clone)]
pub struct SharedSecret(Zeroizing<Vec<u8>>);

impl SharedSecret {
    /// Wraps the secret.
    #[must_use]
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self(Zeroizing::new(secret.into()))
    }

    /// The secret's octets.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(redacted)")
    }
}

pub(crate) fn hmac_32(key: &hmac::Key, data: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0_u8; 32]);
    let tag = hmac::sign(key, data);
    out.copy_from_slice(tag.as_ref());
    out
}

pub(crate) fn sha256(data: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0_u8; 32]);
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_round_trip_and_errors() {
        let h = PasswordHash::with_salt(b"pw", b"saltsalt", 2).unwrap();
        let s = h.to_phc_string();
        let p: PasswordHash = s.parse().unwrap();
        assert!(p.verify(b"pw") && !p.verify(b"pW") && !p.verify(b""));
        // HMAC zero-pads short keys: without the NUL rule these would verify.
        assert!(!p.verify(b"pw\0") && !p.verify(b"pw\0\0"));
        assert_eq!(PasswordHash::with_salt(b"p\0w", b"saltsalt", 2).err(), Some(SaslError::NulInPassword));
        assert_eq!(p.iterations(), 2);
        for bad in [
            "",
            "$pbkdf2-sha256$i=0$c2FsdA$AAAA",
            "$pbkdf2-sha256$i=2$c2FsdA$AAAA",
            "$pbkdf2-sha512$i=2$c2FsdA$AAAA",
            "$pbkdf2-sha256$2$c2FsdA$AAAA",
            "$pbkdf2-sha256$i=99999999$c2FsdA$AAAA",
            "$pbkdf2-sha256$i=2$$AAAA",
            "$pbkdf2-sha256$i=2$!!$AAAA",
        ] {
            assert!(bad.parse::<PasswordHash>().is_err(), "{bad}");
        }
        assert!(PasswordHash::with_salt(b"pw", b"", 2).is_err());
        assert!(PasswordHash::with_salt(b"pw", b"s", 0).is_err());
    }

    #[test]
    fn scram_secret_errors() {
        for bad in [
            "",
            "SCRAM-SHA-1$4096:c2FsdA==$AAAA:AAAA",
            "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA",
            "SCRAM-SHA-256$x:c2FsdA==$a:b",
        ] {
            assert!(bad.parse::<ScramSecret>().is_err(), "{bad}");
        }
        assert_eq!(format!("{:?}", SharedSecret::new("x")), "SharedSecret(redacted)");
    }
}
