//! SASL server mechanisms (RFC 4422) for SMTP AUTH (RFC 4954) and POP3 AUTH (RFC 5034),
//! the credential-store trait the application implements, stored-secret formats, and APOP.
//!
//! | Mechanism | RFC | Server holds | Default |
//! |---|---|---|---|
//! | `SCRAM-SHA-256-PLUS` | 5802, 7677, 9266 (`tls-exporter`) | [`ScramSecret`] | on (offered only with a TLS exporter) |
//! | `SCRAM-SHA-256` | 5802, 7677 | [`ScramSecret`] | on |
//! | `PLAIN` | 4616 | [`PasswordHash`] | on |
//! | `LOGIN` | draft-murchison-sasl-login | [`PasswordHash`] | on |
//! | `CRAM-MD5` | 2195 | [`SharedSecret`] (plaintext-equivalent) | off |
//! | `OAUTHBEARER`, `XOAUTH2` | 7628, Google's | nothing: the application checks the token | off |
//! | `EXTERNAL` | 4422 App. A | nothing: the verified client certificate | off |
//!
//! One [`Exchange`] runs any of them: the session reports `AUTH` with its initial response,
//! the application calls [`Exchange::start`], then [`Exchange::respond`] with each
//! decoded client response, and answers the session with what each [`Step`] says:
//! a challenge, success with an [`Authenticated`] identity, or a [`Failure`].
//!
//! Failures never tell an unknown user from a wrong password: an unknown user is checked
//! against a dummy credential that costs the same (a PBKDF2 run for PLAIN and LOGIN, a
//! per-user stable fake salt for SCRAM), and both end as [`Failure::Credentials`].
//!
//! ```
//! use std::sync::Arc;
//! use postern::sasl::{Authenticated, Channel, Config, CredentialStore, Exchange, Mechanism, PasswordHash, Step};
//!
//! struct Users(PasswordHash);
//! impl CredentialStore for Users {
//!     fn password(&self, authcid: &str) -> Option<PasswordHash> {
//!         (authcid == "alice").then(|| self.0.clone())
//!     }
//! }
//! let users = Users(PasswordHash::with_salt(b"secret", b"some salt", 1000).unwrap());
//! let rng = ring::rand::SystemRandom::new();
//! let config = Arc::new(Config::new(&rng).unwrap().with_dummy_iterations(1000).unwrap());
//!
//! // AUTH PLAIN with an initial response (RFC 4616: authzid NUL authcid NUL passwd).
//! let mut exchange = Exchange::new(Mechanism::Plain, Arc::clone(&config), Channel::default(), &rng).unwrap();
//! let Step::Success(who) = exchange.start(Some(b"\0alice\0secret"), &users) else { panic!() };
//! assert_eq!(who.identity(), "alice");
//!
//! // AUTH LOGIN: two challenges.
//! let mut exchange = Exchange::new(Mechanism::Login, config, Channel::default(), &rng).unwrap();
//! assert!(matches!(exchange.start(None, &users), Step::Challenge(c) if c == b"Username:"));
//! assert!(matches!(exchange.respond(b"alice", &users), Step::Challenge(c) if c == b"Password:"));
//! assert!(matches!(exchange.respond(b"wrong", &users), Step::Failure(_)));
//! ```

mod exchange;
mod scram;
mod secret;

use std::fmt;
use std::str::FromStr;

use ring::rand::SecureRandom;
use zeroize::Zeroizing;

pub use crate::apop::apop_verify;
pub use exchange::{Exchange, Step};
pub use secret::{
    DEFAULT_PASSWORD_ITERATIONS, DEFAULT_SCRAM_ITERATIONS, MAX_ITERATIONS, PasswordHash, SALT_LEN,
    ScramSecret, SharedSecret,
};

/// Misuse of the SASL API or a malformed stored secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaslError {
    /// The random number generator failed.
    #[error("the random number generator failed")]
    Random,
    /// An iteration count of zero or above [`MAX_ITERATIONS`].
    #[error("iteration count {0} out of range (1 to {MAX_ITERATIONS})")]
    Iterations(u32),
    /// A salt that is empty or longer than 64 octets.
    #[error("salt must be 1 to 64 octets")]
    Salt,
    /// A stored secret that does not parse; says what was expected.
    #[error("malformed stored secret: want {0}")]
    Format(&'static str),
    /// A `-PLUS` mechanism without a channel binding, or `EXTERNAL` without a verified
    /// client identity.
    #[error("{0} needs a TLS channel (binding or client identity) that this connection does not have")]
    NoChannel(&'static str),
    /// A password holding a NUL octet (refused: see [`PasswordHash::verify`]).
    #[error("a password must not hold a NUL octet")]
    NulInPassword,
    /// An unknown mechanism name.
    #[error("unknown SASL mechanism {0:?}")]
    UnknownMechanism(String),
}

/// A SASL mechanism the server side implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mechanism {
    /// `PLAIN` (RFC 4616).
    Plain,
    /// `LOGIN` (legacy, two challenges `Username:` and `Password:`).
    Login,
    /// `CRAM-MD5` (RFC 2195, legacy: needs a plaintext-equivalent secret).
    CramMd5,
    /// `SCRAM-SHA-256` (RFC 5802, RFC 7677).
    ScramSha256,
    /// `SCRAM-SHA-256-PLUS` with `tls-exporter` channel binding (RFC 9266).
    ScramSha256Plus,
    /// `XOAUTH2` (Google's bearer-token mechanism).
    XOAuth2,
    /// `OAUTHBEARER` (RFC 7628).
    OAuthBearer,
    /// `EXTERNAL`: the identity of a verified TLS client certificate.
    External,
}

impl Mechanism {
    /// Every mechanism, strongest first.
    pub const ALL: [Mechanism; 8] = [
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha256,
        Mechanism::External,
        Mechanism::OAuthBearer,
        Mechanism::XOAuth2,
        Mechanism::Plain,
        Mechanism::Login,
        Mechanism::CramMd5,
    ];

    /// The registered name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::XOAuth2 => "XOAUTH2",
            Mechanism::OAuthBearer => "OAUTHBEARER",
            Mechanism::External => "EXTERNAL",
        }
    }

    /// `true` for the mechanisms that send the password itself (PLAIN, LOGIN) or a bearer
    /// token: only offer them inside TLS.
    #[must_use]
    pub fn is_plaintext(self) -> bool {
        matches!(self, Mechanism::Plain | Mechanism::Login | Mechanism::XOAuth2 | Mechanism::OAuthBearer)
    }

    /// `true` if this connection can run the mechanism: `-PLUS` needs a channel binding,
    /// `EXTERNAL` a verified client identity.
    #[must_use]
    pub fn usable_on(self, channel: &Channel) -> bool {
        match self {
            Mechanism::ScramSha256Plus => channel.tls_exporter.is_some(),
            Mechanism::External => channel.peer_identity.is_some(),
            _ => true,
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mechanism {
    type Err = SaslError;

    /// Case-insensitive.
    fn from_str(s: &str) -> Result<Self, SaslError> {
        Mechanism::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| SaslError::UnknownMechanism(s.to_owned()))
    }
}

/// What the TLS layer tells the exchange about this connection.
#[derive(Clone, Default)]
pub struct Channel {
    tls_exporter: Option<Zeroizing<[u8; 32]>>,
    peer_identity: Option<String>,
}

impl Channel {
    /// The `tls-exporter` channel binding (RFC 9266): 32 octets exported with the label
    /// `EXPORTER-Channel-Binding` and no context (`TlsChannel::tls_exporter` gives it).
    #[must_use]
    pub fn with_tls_exporter(mut self, binding: [u8; 32]) -> Self {
        self.tls_exporter = Some(Zeroizing::new(binding));
        self
    }

    /// The verified client-certificate identity (mutual TLS), for `EXTERNAL`.
    #[must_use]
    pub fn with_peer_identity(mut self, identity: impl Into<String>) -> Self {
        self.peer_identity = Some(identity.into());
        self
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("tls_exporter", &self.tls_exporter.as_ref().map(|_| "redacted"))
            .field("peer_identity", &self.peer_identity)
            .finish()
    }
}

/// Settings shared by all exchanges: the enabled mechanisms, size caps, the iteration
/// policy, and the key behind the dummy credentials of unknown users.
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// The mechanisms offered, strongest first. Default: SCRAM-SHA-256-PLUS,
    /// SCRAM-SHA-256, PLAIN, LOGIN.
    pub mechanisms: Vec<Mechanism>,
    /// Largest decoded client response, in octets (Postfix: 12288 for the line).
    pub max_response: usize,
    /// SCRAM secrets with fewer iterations are treated as unusable (the login fails as
    /// for an unknown user). Default 4096 (RFC 7677 §4).
    pub scram_min_iterations: u32,
    /// The host name in CRAM-MD5 challenges.
    pub hostname: String,
    /// Whether a user may act as someone else (an authzid other than the authcid) is
    /// asked of [`CredentialStore::authorize`]; `false` here refuses it outright.
    pub allow_authzid: bool,
    /// Strip this many trailing digits from PLAIN/LOGIN passwords as a one-time code and
    /// end with [`Step::SecondFactor`] (see [`crate::otp`]). `None` by default.
    pub password_otp_digits: Option<u8>,
    dummy_key: Zeroizing<[u8; 32]>,
    dummy_password: PasswordHash,
}

impl Config {
    /// Defaults, with a fresh random key for dummy credentials; the dummy password hash
    /// has [`DEFAULT_PASSWORD_ITERATIONS`] (see [`with_dummy_iterations`](Self::with_dummy_iterations)).
    pub fn new(rng: &dyn SecureRandom) -> Result<Self, SaslError> {
        let mut key = Zeroizing::new([0_u8; 32]);
        rng.fill(key.as_mut()).map_err(|_| SaslError::Random)?;
        let dummy_password = dummy_hash(&key, DEFAULT_PASSWORD_ITERATIONS)?;
        Ok(Self {
            mechanisms: vec![
                Mechanism::ScramSha256Plus,
                Mechanism::ScramSha256,
                Mechanism::Plain,
                Mechanism::Login,
            ],
            max_response: 12_288,
            scram_min_iterations: DEFAULT_SCRAM_ITERATIONS,
            hostname: "localhost".to_owned(),
            allow_authzid: false,
            password_otp_digits: None,
            dummy_key: key,
            dummy_password,
        })
    }

    /// Sets the iteration count of the dummy password hash an unknown user is checked
    /// against: use the count of the real hashes, so both cost the same.
    pub fn with_dummy_iterations(mut self, iterations: u32) -> Result<Self, SaslError> {
        self.dummy_password = dummy_hash(&self.dummy_key, iterations)?;
        Ok(self)
    }

    /// The mechanism names to advertise on a connection (in `EHLO` or `CAPA`): the
    /// enabled ones this channel can run.
    #[must_use]
    pub fn advertised(&self, channel: &Channel) -> Vec<&'static str> {
        self.mechanisms.iter().filter(|m| m.usable_on(channel)).map(|m| m.name()).collect()
    }
}

/// The hash an unknown user's password is checked against: the same iteration count as
/// real hashes, so the check costs the same, and a hash value that no password is known
/// to produce (it is never derived; the check fails for an unknown user regardless).
fn dummy_hash(key: &[u8; 32], iterations: u32) -> Result<PasswordHash, SaslError> {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let salt = secret::hmac_32(&k, b"dummy password salt");
    let hash = secret::hmac_32(&k, b"dummy password hash");
    PasswordHash::from_parts(salt.get(..secret::SALT_LEN).unwrap_or_default(), iterations, hash)
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("mechanisms", &self.mechanisms)
            .field("max_response", &self.max_response)
            .field("scram_min_iterations", &self.scram_min_iterations)
            .field("hostname", &self.hostname)
            .field("allow_authzid", &self.allow_authzid)
            .field("password_otp_digits", &self.password_otp_digits)
            .finish_non_exhaustive()
    }
}

/// Where the application keeps its users' credentials. Every method has a default that
/// knows nobody, so a store implements only what its mechanisms need.
///
/// Lookups return `None` for an unknown user; the exchange then does the same work
/// against a dummy credential and fails the same way as for a wrong password.
pub trait CredentialStore {
    /// The password hash of `authcid`, for PLAIN and LOGIN.
    fn password(&self, authcid: &str) -> Option<PasswordHash> {
        let _ = authcid;
        None
    }

    /// The SCRAM-SHA-256 verifier of `authcid`.
    fn scram_sha256(&self, authcid: &str) -> Option<ScramSecret> {
        let _ = authcid;
        None
    }

    /// The plaintext-equivalent secret of `authcid`, for CRAM-MD5 and APOP.
    fn shared_secret(&self, authcid: &str) -> Option<SharedSecret> {
        let _ = authcid;
        None
    }

    /// Per-user second factor for PLAIN and LOGIN: if `authcid` has one, the number of
    /// one-time-code digits appended to the password (the exchange then ends with
    /// [`Step::SecondFactor`]). Default: none. Such a user should have no SCRAM verifier
    /// or shared secret, or those mechanisms would skip the second factor.
    fn second_factor_digits(&self, authcid: &str) -> Option<u8> {
        let _ = authcid;
        None
    }

    /// May `authcid` act as `authzid`? Only asked when [`Config::allow_authzid`] is set
    /// and the two differ. Default: no.
    fn authorize(&self, authcid: &str, authzid: &str) -> bool {
        let _ = (authcid, authzid);
        false
    }

    /// Checks an OAuth 2.0 bearer token (OAUTHBEARER, XOAUTH2); `user` is the name the
    /// client gave, if any. Returns the authenticated user. Default: every token refused.
    fn verify_bearer_token(&self, user: Option<&str>, token: &[u8]) -> Option<String> {
        let _ = (user, token);
        None
    }

    /// Maps a verified client-certificate identity to a user (EXTERNAL). `authzid` is what
    /// the client asked to act as, if anything. Default: nobody.
    fn external(&self, peer_identity: &str, authzid: Option<&str>) -> Option<String> {
        let _ = (peer_identity, authzid);
        None
    }
}

/// Checks a password outside SASL (POP3 `USER`/`PASS`) exactly as PLAIN does: an
/// unknown user is checked against the dummy hash of `config`, so both failures cost the
/// same and look the same.
///
/// ```
/// use postern::sasl::{Config, CredentialStore, PasswordHash, verify_password};
///
/// struct One(PasswordHash);
/// impl CredentialStore for One {
///     fn password(&self, user: &str) -> Option<PasswordHash> {
///         (user == "alice").then(|| self.0.clone())
///     }
/// }
/// let store = One(PasswordHash::with_salt(b"secret", b"saltsalt", 100).unwrap());
/// let config = Config::new(&ring::rand::SystemRandom::new()).unwrap().with_dummy_iterations(100).unwrap();
/// assert!(verify_password(&config, &store, "alice", b"secret"));
/// assert!(!verify_password(&config, &store, "alice", b"secreT"));
/// assert!(!verify_password(&config, &store, "bob", b"secret"));
/// ```
#[must_use]
pub fn verify_password(config: &Config, store: &dyn CredentialStore, user: &str, password: &[u8]) -> bool {
    let hash = store.password(user);
    let known = hash.is_some();
    let ok = hash.as_ref().unwrap_or(&config.dummy_password).verify(password);
    ok && known
}

/// Checks an APOP login (RFC 1939 §7) against the store: the user's name if `digest` is
/// right. An unknown user costs the same MD5 over a dummy secret.
///
/// ```
/// use postern::sasl::{CredentialStore, SharedSecret, verify_apop};
///
/// struct Mrose;
/// impl CredentialStore for Mrose {
///     fn shared_secret(&self, user: &str) -> Option<SharedSecret> {
///         (user == "mrose").then(|| SharedSecret::new("tanstaaf"))
///     }
/// }
/// let ts = "<1896.697170952@dbc.mtview.ca.us>";
/// assert!(verify_apop(&Mrose, "mrose", ts, "c4c9334bac560ecc979e58001b3e22fb"));
/// assert!(!verify_apop(&Mrose, "other", ts, "c4c9334bac560ecc979e58001b3e22fb"));
/// ```
#[must_use]
pub fn verify_apop(store: &dyn CredentialStore, user: &str, timestamp: &str, digest: &str) -> bool {
    let secret = store.shared_secret(user);
    let known = secret.is_some();
    let secret = secret.unwrap_or_else(|| SharedSecret::new(b"postern dummy APOP secret".to_vec()));
    let ok = apop_verify(timestamp, secret.as_bytes(), digest);
    ok && known
}

/// Who authenticated: the authentication identity and, if the client asked to act as
/// someone else and the store allowed it, the authorization identity.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Authenticated {
    /// The authentication identity (whose credentials were checked).
    pub authcid: String,
    /// The authorization identity, when it differs from `authcid`.
    pub authzid: Option<String>,
}

impl Authenticated {
    /// The identity to act as: the authzid if there is one, else the authcid.
    #[must_use]
    pub fn identity(&self) -> &str {
        self.authzid.as_deref().unwrap_or(&self.authcid)
    }
}

/// Why an exchange failed. Send the same reply for every one (SMTP `535 5.7.8`, POP3
/// `-ERR [AUTH]`); the reason is for logs and penalty boxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// Unknown user or wrong password/proof/token: deliberately one reason.
    Credentials,
    /// Right credentials, but the requested authorization identity is not allowed.
    NotAuthorized,
    /// A response that does not follow the mechanism's syntax.
    Malformed,
    /// A response larger than [`Config::max_response`].
    TooLarge,
    /// The client cancelled (`*`).
    Cancelled,
    /// SCRAM channel binding missing, different, or a downgrade (`y` where `-PLUS` is offered).
    ChannelBinding,
    /// A call out of order (a response after the end, or `respond` before `start`).
    OutOfOrder,
}
