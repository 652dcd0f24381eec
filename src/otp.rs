//! One-time passwords as a second factor: HOTP (RFC 4226) and TOTP (RFC 6238) with
//! SHA-1, SHA-256 or SHA-512, 6 to 8 digits, a time step and a drift window; a
//! [`ReplayGuard`] so that a code accepted once is never accepted again; and
//! `otpauth://` URIs for enrolment in authenticator apps.
//!
//! Time is an argument (`SystemTime`), never read here.
//!
//! ## Password + TOTP with SASL PLAIN
//!
//! Clients that only know passwords (PLAIN, LOGIN, POP3 USER/PASS) can send the code
//! appended to the password. Set [`sasl::Config::password_otp_digits`](crate::sasl::Config::password_otp_digits):
//! the exchange checks the password without the last digits and ends with
//! [`Step::SecondFactor`](crate::sasl::Step::SecondFactor), and the application checks
//! the code against the user's [`Totp`] and [`ReplayGuard`]:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, SystemTime};
//! use postern::otp::{Algorithm, OtpSecret, ReplayGuard, Totp};
//! use postern::sasl::{Channel, Config, CredentialStore, Exchange, Mechanism, PasswordHash, Step};
//!
//! struct Alice(PasswordHash);
//! impl CredentialStore for Alice {
//!     fn password(&self, user: &str) -> Option<PasswordHash> {
//!         (user == "alice").then(|| self.0.clone())
//!     }
//! }
//! let store = Alice(PasswordHash::with_salt(b"secret", b"salt1234", 1000).unwrap());
//! let totp = Totp::new(OtpSecret::new(b"12345678901234567890".to_vec()), Algorithm::Sha1, 6).unwrap();
//! let mut guard = ReplayGuard::default(); // kept per user, across logins
//! let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_111_111_109);
//!
//! let rng = ring::rand::SystemRandom::new();
//! let mut config = Config::new(&rng).unwrap().with_dummy_iterations(1000).unwrap();
//! config.password_otp_digits = Some(6);
//! let config = Arc::new(config);
//!
//! // The client typed "secret" followed by the code its app shows.
//! let response = format!("\0alice\0secret{}", totp.code_at(now).as_str());
//! let mut exchange = Exchange::new(Mechanism::Plain, Arc::clone(&config), Channel::default(), &rng).unwrap();
//! let Step::SecondFactor { user, code } = exchange.start(Some(response.as_bytes()), &store) else { panic!() };
//! assert!(totp.verify(&code, now, &mut guard).is_some()); // then auth_succeed(user.identity())
//! assert_eq!(user.identity(), "alice");
//!
//! // The same code again (a replay) is refused, even though the password is right.
//! let mut again = Exchange::new(Mechanism::Plain, config, Channel::default(), &rng).unwrap();
//! let Step::SecondFactor { code, .. } = again.start(Some(response.as_bytes()), &store) else { panic!() };
//! assert!(totp.verify(&code, now, &mut guard).is_none());
//! ```

use std::fmt;
use std::time::SystemTime;

use data_encoding::BASE32_NOPAD;
use ring::hmac;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// An invalid OTP parameter or secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OtpError {
    /// Digits outside 6..=8.
    #[error("{0} digits: want 6 to 8")]
    Digits(u8),
    /// A time step of zero.
    #[error("the time step must be at least one second")]
    Step,
    /// A secret shorter than 16 octets (RFC 4226 §4 asks for at least 128 bits) or
    /// longer than 128.
    #[error("the secret must be 16 to 128 octets")]
    SecretLength,
    /// A secret that is not base32.
    #[error("the secret is not valid base32")]
    Base32,
    /// The random number generator failed.
    #[error("the random number generator failed")]
    Random,
}

/// The HMAC hash function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Algorithm {
    /// HMAC-SHA-1: what RFC 4226 specifies and every authenticator app supports.
    #[default]
    Sha1,
    /// HMAC-SHA-256 (RFC 6238).
    Sha256,
    /// HMAC-SHA-512 (RFC 6238).
    Sha512,
}

impl Algorithm {
    fn hmac(self) -> hmac::Algorithm {
        match self {
            Algorithm::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Algorithm::Sha256 => hmac::HMAC_SHA256,
            Algorithm::Sha512 => hmac::HMAC_SHA512,
        }
    }

    /// The name in `otpauth://` URIs.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }
}

/// The shared OTP key: zeroized on drop, never printed.
#[derive(Clone)]
pub struct OtpSecret(Zeroizing<Vec<u8>>);

impl OtpSecret {
    /// Wraps raw key octets.
    #[must_use]
    pub fn new(key: Vec<u8>) -> Self {
        Self(Zeroizing::new(key))
    }

    /// A fresh random key of 20 octets (160 bits, RFC 4226 §4's recommendation).
    pub fn generate(rng: &dyn ring::rand::SecureRandom) -> Result<Self, OtpError> {
        let mut key = Zeroizing::new(vec![0_u8; 20]);
        rng.fill(&mut key).map_err(|_| OtpError::Random)?;
        Ok(Self(key))
    }

    /// Parses the base32 form (RFC 4648; case, spaces and padding tolerated).
    pub fn from_base32(s: &str) -> Result<Self, OtpError> {
        let clean: Zeroizing<String> = Zeroizing::new(
            s.chars().filter(|c| !c.is_whitespace() && *c != '=').map(|c| c.to_ascii_uppercase()).collect(),
        );
        BASE32_NOPAD.decode(clean.as_bytes()).map(Self::new).map_err(|_| OtpError::Base32)
    }

    /// The base32 form (no padding), as authenticator apps take it.
    #[must_use]
    pub fn to_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(BASE32_NOPAD.encode(&self.0))
    }
}

impl fmt::Debug for OtpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtpSecret(redacted)")
    }
}

/// HOTP (RFC 4226): a code from a counter.
///
/// ```
/// use postern::otp::{Algorithm, Hotp, OtpSecret};
///
/// // RFC 4226 Appendix D.
/// let hotp = Hotp::new(OtpSecret::new(b"12345678901234567890".to_vec()), Algorithm::Sha1, 6).unwrap();
/// assert_eq!(hotp.code(0).as_str(), "755224");
/// assert!(hotp.check(9, "520489"));
/// ```
#[derive(Clone)]
pub struct Hotp {
    key: hmac::Key,
    secret: OtpSecret,
    algorithm: Algorithm,
    digits: u8,
}

impl fmt::Debug for Hotp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hotp")
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .finish_non_exhaustive()
    }
}

impl Hotp {
    /// `digits` from 6 to 8; the secret from 16 to 128 octets (the RFC 4226/6238 test
    /// keys are 20, 32 and 64).
    pub fn new(secret: OtpSecret, algorithm: Algorithm, digits: u8) -> Result<Self, OtpError> {
        if !(6..=8).contains(&digits) {
            return Err(OtpError::Digits(digits));
        }
        if !(16..=128).contains(&secret.0.len()) {
            return Err(OtpError::SecretLength);
        }
        let key = hmac::Key::new(algorithm.hmac(), &secret.0);
        Ok(Self { key, secret, algorithm, digits })
    }

    /// The code for `counter`, zero-padded to the number of digits.
    #[must_use]
    pub fn code(&self, counter: u64) -> Zeroizing<String> {
        let tag = hmac::sign(&self.key, &counter.to_be_bytes());
        let mac = tag.as_ref();
        // Dynamic truncation (RFC 4226 §5.3).
        let offset = usize::from(mac.last().copied().unwrap_or(0) & 0x0f);
        let mut word = [0_u8; 4];
        if let Some(bytes) = mac.get(offset..offset + 4) {
            word.copy_from_slice(bytes);
        }
        let binary = u32::from_be_bytes(word) & 0x7fff_ffff;
        let modulus = 10_u32.pow(u32::from(self.digits));
        Zeroizing::new(format!("{:0width$}", binary % modulus, width = usize::from(self.digits)))
    }

    /// `true` if `code` is the code for `counter` (constant-time comparison).
    #[must_use]
    pub fn check(&self, counter: u64, code: &str) -> bool {
        let expected = self.code(counter);
        expected.as_bytes().ct_eq(code.as_bytes()).into()
    }

    /// The digits.
    #[must_use]
    pub fn digits(&self) -> u8 {
        self.digits
    }
}

/// Remembers the last time step (or HOTP counter) accepted for one user, so that no code
/// is accepted twice: a code is only accepted for a step after the last accepted one.
/// Keep one per user, in the application's store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayGuard {
    last: Option<u64>,
}

impl ReplayGuard {
    /// A guard that has already seen `last` (restored from storage).
    #[must_use]
    pub fn from_last(last: u64) -> Self {
        Self { last: Some(last) }
    }

    /// The last accepted step or counter, to store.
    #[must_use]
    pub fn last(&self) -> Option<u64> {
        self.last
    }

    fn allows(&self, counter: u64) -> bool {
        self.last.is_none_or(|last| counter > last)
    }
}

/// TOTP (RFC 6238): HOTP over the number of time steps since `t0`.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use postern::otp::{Algorithm, OtpSecret, ReplayGuard, Totp};
///
/// // RFC 6238 Appendix B, SHA-1, T = 59.
/// let totp = Totp::new(OtpSecret::new(b"12345678901234567890".to_vec()), Algorithm::Sha1, 8).unwrap();
/// let t = SystemTime::UNIX_EPOCH + Duration::from_secs(59);
/// assert_eq!(totp.code_at(t).as_str(), "94287082");
///
/// // Accepted once, from 30 s later too (one step of drift by default), then never again.
/// let mut guard = ReplayGuard::default();
/// assert_eq!(totp.verify("94287082", t + Duration::from_secs(30), &mut guard), Some(1));
/// assert_eq!(totp.verify("94287082", t, &mut guard), None);
/// ```
#[derive(Clone, Debug)]
pub struct Totp {
    hotp: Hotp,
    step: u64,
    t0: u64,
    window: u8,
}

impl Totp {
    /// A TOTP with the usual step (30 s), T0 = 0 and a drift window of one step either side.
    pub fn new(secret: OtpSecret, algorithm: Algorithm, digits: u8) -> Result<Self, OtpError> {
        Ok(Self { hotp: Hotp::new(secret, algorithm, digits)?, step: 30, t0: 0, window: 1 })
    }

    /// Sets the time step in seconds.
    pub fn with_step(mut self, seconds: u64) -> Result<Self, OtpError> {
        if seconds == 0 {
            return Err(OtpError::Step);
        }
        self.step = seconds;
        Ok(self)
    }

    /// Sets T0, the Unix time the steps count from.
    #[must_use]
    pub fn with_t0(mut self, t0: u64) -> Self {
        self.t0 = t0;
        self
    }

    /// Accept codes up to `steps` steps before or after the current one (clock drift;
    /// RFC 6238 §5.2 recommends at most one).
    #[must_use]
    pub fn with_window(mut self, steps: u8) -> Self {
        self.window = steps;
        self
    }

    /// The time step number at `now` (before T0: step 0).
    #[must_use]
    pub fn step_at(&self, now: SystemTime) -> u64 {
        let unix = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        unix.saturating_sub(self.t0) / self.step
    }

    /// The code at `now`.
    #[must_use]
    pub fn code_at(&self, now: SystemTime) -> Zeroizing<String> {
        self.hotp.code(self.step_at(now))
    }

    /// Checks `code` at `now` within the drift window. Every step of the window is
    /// computed and compared (no early exit). Returns the matching step and records it in
    /// `guard` if it is later than the last accepted one; `None` otherwise (wrong code,
    /// or a replay).
    pub fn verify(&self, code: &str, now: SystemTime, guard: &mut ReplayGuard) -> Option<u64> {
        let current = self.step_at(now);
        let window = u64::from(self.window);
        let mut found = None;
        for step in current.saturating_sub(window)..=current.saturating_add(window) {
            if self.hotp.check(step, code) && guard.allows(step) && found.is_none() {
                found = Some(step);
            }
        }
        if let Some(step) = found {
            guard.last = Some(step);
        }
        found
    }

    /// The `otpauth://totp/...` URI for an authenticator app (often shown as a QR code):
    /// `issuer` and `account` are percent-encoded, the secret is base32. The URI holds
    /// the secret: show it once, over TLS, to the user only.
    ///
    /// ```
    /// use postern::otp::{Algorithm, OtpSecret, Totp};
    ///
    /// let totp = Totp::new(OtpSecret::new(b"12345678901234567890".to_vec()), Algorithm::Sha1, 6).unwrap();
    /// assert_eq!(
    ///     totp.otpauth_uri("Example Mail", "alice@example.test").as_str(),
    ///     "otpauth://totp/Example%20Mail:alice%40example.test?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
    ///      &issuer=Example%20Mail&algorithm=SHA1&digits=6&period=30"
    /// );
    /// ```
    #[must_use]
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> Zeroizing<String> {
        let issuer = percent_encode(issuer);
        Zeroizing::new(format!(
            "otpauth://totp/{issuer}:{}?secret={}&issuer={issuer}&algorithm={}&digits={}&period={}",
            percent_encode(account),
            self.hotp.secret.to_base32().as_str(),
            self.hotp.algorithm.name(),
            self.hotp.digits,
            self.step
        ))
    }

    /// The digits.
    #[must_use]
    pub fn digits(&self) -> u8 {
        self.hotp.digits
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Splits `password || code` where `code` is the last `digits` ASCII digits; `None` if
/// the input is too short or its tail is not all digits.
///
/// ```
/// assert_eq!(postern::otp::split_code(b"secret123456", 6), Some((&b"secret"[..], "123456")));
/// assert_eq!(postern::otp::split_code(b"secret12345x", 6), None);
/// ```
#[must_use]
pub fn split_code(input: &[u8], digits: u8) -> Option<(&[u8], &str)> {
    let cut = input.len().checked_sub(usize::from(digits))?;
    let (password, code) = input.split_at(cut);
    if !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((password, std::str::from_utf8(code).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters() {
        let s = || OtpSecret::new(vec![1; 20]);
        assert_eq!(Hotp::new(s(), Algorithm::Sha1, 5).err(), Some(OtpError::Digits(5)));
        assert_eq!(Hotp::new(s(), Algorithm::Sha1, 9).err(), Some(OtpError::Digits(9)));
        assert_eq!(
            Hotp::new(OtpSecret::new(vec![1; 8]), Algorithm::Sha1, 6).err(),
            Some(OtpError::SecretLength)
        );
        assert!(Totp::new(s(), Algorithm::Sha1, 6).unwrap().with_step(0).is_err());
        assert_eq!(format!("{:?}", s()), "OtpSecret(redacted)");
        let b32 = OtpSecret::from_base32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap();
        assert_eq!(b32.to_base32().as_str(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert!(OtpSecret::from_base32("1!").is_err());
        assert_eq!(percent_encode("a b/é"), "a%20b%2F%C3%A9");
    }

    #[test]
    fn window_and_guard() {
        let totp = Totp::new(OtpSecret::new(b"12345678901234567890".to_vec()), Algorithm::Sha1, 6).unwrap();
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(3000);
        let code = totp.code_at(t);
        let mut g = ReplayGuard::default();
        // Two steps late is outside the default window.
        assert_eq!(totp.verify(&code, t + std::time::Duration::from_secs(60), &mut g), None);
        assert_eq!(totp.verify(&code, t - std::time::Duration::from_secs(30), &mut g), Some(100));
        assert_eq!(g.last(), Some(100));
        assert_eq!(totp.verify(&code, t, &mut g), None);
        assert_eq!(totp.verify("", t, &mut ReplayGuard::default()), None);
        // An earlier code after a later one is refused too.
        let mut g = ReplayGuard::from_last(101);
        assert_eq!(totp.verify(&code, t, &mut g), None);
    }
}
