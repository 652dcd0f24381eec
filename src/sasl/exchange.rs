//! The mechanism-independent server exchange: challenge out, response in.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::Mac as _;
use ring::rand::SecureRandom;
use zeroize::Zeroizing;

use super::scram::{self, CbFlag, ServerFirst};
use super::{Authenticated, Channel, Config, CredentialStore, Failure, Mechanism, SaslError, SharedSecret};

/// What the application does next in an exchange.
#[must_use]
pub enum Step {
    /// Send this challenge (raw octets: the session encodes it in base64, e.g.
    /// `smtp::Session::auth_challenge`) and pass the client's answer to
    /// [`Exchange::respond`].
    Challenge(Vec<u8>),
    /// Authenticated (`smtp::Session::auth_succeed`, `pop3::Session::accept_login`).
    Success(Authenticated),
    /// The password was right and [`Config::password_otp_digits`] (or the store's
    /// [`CredentialStore::second_factor_digits`] for this user) split this one-time code
    /// off its end: check it (e.g. [`crate::otp::Totp::verify`]), then succeed or fail.
    SecondFactor {
        /// Who passed the first factor.
        user: Authenticated,
        /// The digits the client appended to the password.
        code: Zeroizing<String>,
    },
    /// Failed: answer with the protocol's one failure reply, whatever the reason.
    Failure(Failure),
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Challenge(c) => write!(f, "Challenge({} octets)", c.len()),
            Step::Success(a) => f.debug_tuple("Success").field(a).finish(),
            Step::SecondFactor { user, .. } => {
                f.debug_struct("SecondFactor").field("user", user).finish_non_exhaustive()
            }
            Step::Failure(r) => f.debug_tuple("Failure").field(r).finish(),
        }
    }
}

enum State {
    Start,
    Plain,
    LoginUser,
    LoginPassword(String),
    Cram(String),
    ScramFirst,
    ScramFinal(Box<ServerFirst>),
    ScramAck(Authenticated),
    Bearer,
    BearerFailed,
    External,
    Done,
}

/// One SASL authentication on the server side, for any [`Mechanism`].
///
/// Order: [`start`](Self::start) once with the initial response (if the client sent
/// one), then [`respond`](Self::respond) (or [`respond_line`](Self::respond_line) for
/// base64 lines) with each answer to a [`Step::Challenge`], until a step other than a
/// challenge. Calls out of this order fail with [`Failure::OutOfOrder`]; after any
/// failure or success every further call fails.
///
/// Secrets in responses (passwords, proofs) are only borrowed; derived keys are zeroized.
pub struct Exchange {
    mechanism: Mechanism,
    config: Arc<Config>,
    channel: Channel,
    nonce: String,
    state: State,
    /// The authentication identity the client named, once seen (untrusted).
    claimed: Option<String>,
}

impl fmt::Debug for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange").field("mechanism", &self.mechanism).finish_non_exhaustive()
    }
}

impl Exchange {
    /// A new exchange; `rng` makes the server nonce (SCRAM) or challenge (CRAM-MD5).
    /// `-PLUS` needs a channel with a TLS exporter and `EXTERNAL` one with a peer identity.
    pub fn new(
        mechanism: Mechanism,
        config: Arc<Config>,
        channel: Channel,
        rng: &dyn SecureRandom,
    ) -> Result<Self, SaslError> {
        let mut random = [0_u8; 18];
        rng.fill(&mut random).map_err(|_| SaslError::Random)?;
        Self::with_nonce(mechanism, config, channel, &URL_SAFE_NO_PAD.encode(random))
    }

    /// [`new`](Self::new) with a given server nonce (printable ASCII without `,`):
    /// deterministic, for test vectors. Never reuse a nonce in production.
    pub fn with_nonce(
        mechanism: Mechanism,
        config: Arc<Config>,
        channel: Channel,
        nonce: &str,
    ) -> Result<Self, SaslError> {
        if !mechanism.usable_on(&channel) {
            return Err(SaslError::NoChannel(mechanism.name()));
        }
        Ok(Self { mechanism, config, channel, nonce: nonce.to_owned(), state: State::Start, claimed: None })
    }

    /// The mechanism.
    #[must_use]
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The authentication identity (authcid) the client named so far, if the mechanism
    /// carries one and the exchange has seen it: PLAIN, LOGIN, CRAM-MD5 and SCRAM.
    ///
    /// **Untrusted** until a [`Step::Success`]: it is what the client *claimed*, meant for
    /// logging and auditing failed attempts (e.g. spotting a password-guessing run against
    /// one account). Never use it to decide anything.
    #[must_use]
    pub fn claimed_identity(&self) -> Option<&str> {
        self.claimed.as_deref()
    }

    /// Starts with the client's initial response (`AUTH <mech> <initial>`), if any.
    pub fn start(&mut self, initial: Option<&[u8]>, store: &dyn CredentialStore) -> Step {
        if !matches!(self.state, State::Start) {
            return self.fail(Failure::OutOfOrder);
        }
        if initial.is_some_and(|i| i.len() > self.config.max_response) {
            return self.fail(Failure::TooLarge);
        }
        self.state = State::Done;
        match (self.mechanism, initial) {
            (Mechanism::Plain, Some(data)) => self.plain(data, store),
            (Mechanism::Plain, None) => self.challenge(State::Plain, Vec::new()),
            (Mechanism::Login, Some(user)) if !user.is_empty() => match std::str::from_utf8(user) {
                Ok(u) => self.challenge(State::LoginPassword(u.to_owned()), b"Password:".to_vec()),
                Err(_) => self.fail(Failure::Malformed),
            },
            (Mechanism::Login, _) => self.challenge(State::LoginUser, b"Username:".to_vec()),
            (Mechanism::CramMd5, Some(_)) => self.fail(Failure::Malformed),
            (Mechanism::CramMd5, None) => {
                let challenge = format!("<{}@{}>", self.nonce, self.config.hostname);
                self.challenge(State::Cram(challenge.clone()), challenge.into_bytes())
            }
            (Mechanism::ScramSha256 | Mechanism::ScramSha256Plus, Some(data)) => {
                self.scram_first(data, store)
            }
            (Mechanism::ScramSha256 | Mechanism::ScramSha256Plus, None) => {
                self.challenge(State::ScramFirst, Vec::new())
            }
            (Mechanism::XOAuth2 | Mechanism::OAuthBearer, Some(data)) => self.bearer(data, store),
            (Mechanism::XOAuth2 | Mechanism::OAuthBearer, None) => self.challenge(State::Bearer, Vec::new()),
            (Mechanism::External, Some(data)) => self.external(data, store),
            (Mechanism::External, None) => self.challenge(State::External, Vec::new()),
        }
    }

    /// Handles the client's (decoded) answer to the last challenge.
    pub fn respond(&mut self, response: &[u8], store: &dyn CredentialStore) -> Step {
        if response.len() > self.config.max_response {
            return self.fail(Failure::TooLarge);
        }
        match std::mem::replace(&mut self.state, State::Done) {
            State::Start | State::Done => self.fail(Failure::OutOfOrder),
            State::Plain => self.plain(response, store),
            State::LoginUser => match std::str::from_utf8(response) {
                Ok(u) if !u.is_empty() => {
                    self.challenge(State::LoginPassword(u.to_owned()), b"Password:".to_vec())
                }
                _ => self.fail(Failure::Malformed),
            },
            State::LoginPassword(user) => self.password(&user, None, response, store),
            State::Cram(challenge) => self.cram(&challenge, response, store),
            State::ScramFirst => self.scram_first(response, store),
            State::ScramFinal(first) => match first.verify(response) {
                Ok(server_final) => {
                    let user = Authenticated { authcid: first.username.clone(), authzid: None };
                    match self.authorize(user.authcid, first.authzid.clone(), store) {
                        Step::Success(user) => self.challenge(State::ScramAck(user), server_final),
                        other => other,
                    }
                }
                Err(f) => self.fail(f),
            },
            // RFC 4954 has no success with data: the server-final message went out as a
            // challenge, and the client answers it with an empty response.
            State::ScramAck(user) if response.is_empty() => Step::Success(user),
            State::ScramAck(_) => self.fail(Failure::Malformed),
            State::Bearer => self.bearer(response, store),
            State::BearerFailed => self.fail(Failure::Credentials),
            State::External => self.external(response, store),
        }
    }

    /// [`respond`](Self::respond) for a raw response line (without CRLF): `*` cancels,
    /// anything else must be base64. The line is measured before it is decoded.
    pub fn respond_line(&mut self, line: &[u8], store: &dyn CredentialStore) -> Step {
        if line == b"*" {
            return self.fail(Failure::Cancelled);
        }
        if line.len() > self.config.max_response.saturating_mul(4) / 3 + 4 {
            return self.fail(Failure::TooLarge);
        }
        match STANDARD.decode(line) {
            Ok(data) => {
                let data = Zeroizing::new(data);
                self.respond(&data, store)
            }
            Err(_) => self.fail(Failure::Malformed),
        }
    }

    /// The client cancelled (`*`, already handled by the protocol sessions): the exchange
    /// is over.
    pub fn cancel(&mut self) -> Step {
        self.fail(Failure::Cancelled)
    }

    fn fail(&mut self, failure: Failure) -> Step {
        self.state = State::Done;
        Step::Failure(failure)
    }

    fn challenge(&mut self, next: State, challenge: Vec<u8>) -> Step {
        self.state = next;
        Step::Challenge(challenge)
    }

    /// RFC 4616: `[authzid] NUL authcid NUL passwd`.
    fn plain(&mut self, data: &[u8], store: &dyn CredentialStore) -> Step {
        let mut parts = data.split(|b| *b == 0);
        let (Some(authzid), Some(authcid), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return self.fail(Failure::Malformed);
        };
        let (Ok(authzid), Ok(authcid)) = (std::str::from_utf8(authzid), std::str::from_utf8(authcid)) else {
            return self.fail(Failure::Malformed);
        };
        if authcid.is_empty() || password.is_empty() {
            return self.fail(Failure::Malformed);
        }
        let authzid = (!authzid.is_empty()).then(|| authzid.to_owned());
        self.password(authcid, authzid, password, store)
    }

    /// Checks a password (PLAIN, LOGIN), with the dummy hash for an unknown user.
    fn password(
        &mut self,
        authcid: &str,
        authzid: Option<String>,
        password: &[u8],
        store: &dyn CredentialStore,
    ) -> Step {
        self.state = State::Done;
        self.claimed = Some(authcid.to_owned());
        let digits = self.config.password_otp_digits.or_else(|| store.second_factor_digits(authcid));
        let (password, code) = match digits {
            Some(n) => {
                let cut = password.len().saturating_sub(usize::from(n));
                let (p, c) = password.split_at(cut);
                let code = (c.len() == usize::from(n) && c.iter().all(u8::is_ascii_digit))
                    .then(|| Zeroizing::new(String::from_utf8_lossy(c).into_owned()));
                (p, code)
            }
            None => (password, None),
        };
        let ok = super::verify_password(&self.config, store, authcid, password);
        let otp_ok = digits.is_none() || code.is_some();
        if !(ok && otp_ok) {
            return Step::Failure(Failure::Credentials);
        }
        match (self.authorize(authcid.to_owned(), authzid, store), code) {
            (Step::Success(user), Some(code)) => Step::SecondFactor { user, code },
            (step, _) => step,
        }
    }

    /// The authzid rule: none, or equal to the authcid, or allowed by the store.
    fn authorize(&mut self, authcid: String, authzid: Option<String>, store: &dyn CredentialStore) -> Step {
        match authzid {
            Some(z) if z != authcid => {
                if self.config.allow_authzid && store.authorize(&authcid, &z) {
                    Step::Success(Authenticated { authcid, authzid: Some(z) })
                } else {
                    self.fail(Failure::NotAuthorized)
                }
            }
            _ => Step::Success(Authenticated { authcid, authzid: None }),
        }
    }

    /// RFC 2195: `user SP hex(HMAC-MD5(secret, challenge))`.
    fn cram(&mut self, challenge: &str, data: &[u8], store: &dyn CredentialStore) -> Step {
        let Some(space) = data.iter().rposition(|b| *b == b' ') else {
            return self.fail(Failure::Malformed);
        };
        let (user, hex) = (data.get(..space).unwrap_or_default(), data.get(space + 1..).unwrap_or_default());
        let Ok(user) = std::str::from_utf8(user) else { return self.fail(Failure::Malformed) };
        self.claimed = Some(user.to_owned());
        let mut digest = [0_u8; 16];
        let hex_ok = hex.len() == 32
            && hex.chunks_exact(2).zip(digest.iter_mut()).all(|(pair, out)| {
                match std::str::from_utf8(pair).ok().and_then(|p| u8::from_str_radix(p, 16).ok()) {
                    Some(b) => {
                        *out = b;
                        true
                    }
                    None => false,
                }
            });
        let secret = store.shared_secret(user);
        let known = secret.is_some();
        let secret = secret.unwrap_or_else(|| SharedSecret::new(self.config.dummy_key.to_vec()));
        let Ok(mut mac) = hmac::Hmac::<md5::Md5>::new_from_slice(secret.as_bytes()) else {
            return self.fail(Failure::Credentials);
        };
        mac.update(challenge.as_bytes());
        let ok = mac.verify_slice(&digest).is_ok();
        if !(ok && known && hex_ok) {
            return self.fail(Failure::Credentials);
        }
        self.authorize(user.to_owned(), None, store)
    }

    fn scram_first(&mut self, data: &[u8], store: &dyn CredentialStore) -> Step {
        let first = match scram::parse_client_first(data) {
            Ok(f) => f,
            Err(f) => return self.fail(f),
        };
        let plus = self.mechanism == Mechanism::ScramSha256Plus;
        let binding = match (&first.flag, plus) {
            (CbFlag::Binding(t), true) if t == "tls-exporter" => self.channel.tls_exporter.clone(),
            (CbFlag::No, false) => None,
            // `y`: the client could bind but thinks the server cannot. If -PLUS is on
            // offer here, something removed it from the list: a downgrade (RFC 5802 §6).
            (CbFlag::Yes, false)
                if !(self.config.mechanisms.contains(&Mechanism::ScramSha256Plus)
                    && Mechanism::ScramSha256Plus.usable_on(&self.channel)) =>
            {
                None
            }
            _ => return self.fail(Failure::ChannelBinding),
        };
        let mut expected = Zeroizing::new(first.gs2_header.clone());
        if plus {
            match binding {
                Some(b) => expected.extend_from_slice(b.as_ref()),
                None => return self.fail(Failure::ChannelBinding),
            }
        }
        self.claimed = Some(first.username.clone());
        let secret = store
            .scram_sha256(&first.username)
            .filter(|s| s.iterations() >= self.config.scram_min_iterations);
        let known = secret.is_some();
        let secret = secret.unwrap_or_else(|| {
            scram::dummy_secret(
                &self.config.dummy_key,
                &first.username,
                self.config.scram_min_iterations.max(super::DEFAULT_SCRAM_ITERATIONS),
            )
        });
        let nonce = format!("{}{}", first.nonce, self.nonce);
        let server_first = ServerFirst::message(&nonce, &secret);
        let state = ServerFirst {
            secret,
            known,
            username: first.username,
            authzid: first.authzid,
            expected_cbind: expected,
            nonce,
            client_first_bare: first.bare,
            server_first: server_first.clone(),
        };
        self.challenge(State::ScramFinal(Box::new(state)), server_first.into_bytes())
    }

    /// OAUTHBEARER (RFC 7628 §3.1) or XOAUTH2: a bearer token the store checks.
    fn bearer(&mut self, data: &[u8], store: &dyn CredentialStore) -> Step {
        let parsed = match self.mechanism {
            Mechanism::XOAuth2 => parse_xoauth2(data),
            _ => parse_oauthbearer(data),
        };
        let Some((user, token)) = parsed else { return self.fail(Failure::Malformed) };
        match store.verify_bearer_token(user.as_deref(), token) {
            Some(identity) => {
                let authzid = user.filter(|u| *u != identity);
                self.authorize(identity, authzid, store)
            }
            None => {
                // Both mechanisms answer a bad token with an error challenge, and the
                // client acknowledges it before the failure (RFC 7628 §3.2.3).
                let error: &[u8] = match self.mechanism {
                    Mechanism::XOAuth2 => br#"{"status":"401","schemes":"bearer"}"#,
                    _ => br#"{"status":"invalid_token"}"#,
                };
                self.challenge(State::BearerFailed, error.to_vec())
            }
        }
    }

    /// EXTERNAL: the response is the authzid (empty: act as the certificate's user).
    fn external(&mut self, data: &[u8], store: &dyn CredentialStore) -> Step {
        let Ok(authzid) = std::str::from_utf8(data) else { return self.fail(Failure::Malformed) };
        let authzid = (!authzid.is_empty()).then_some(authzid);
        let Some(peer) = self.channel.peer_identity.clone() else {
            return self.fail(Failure::ChannelBinding);
        };
        match store.external(&peer, authzid) {
            Some(user) => Step::Success(Authenticated { authcid: user, authzid: None }),
            None => self.fail(Failure::Credentials),
        }
    }
}

/// `n,a=user,^Aauth=Bearer token^A^A` (RFC 7628 §3.1); `p=` is not supported.
fn parse_oauthbearer(data: &[u8]) -> Option<(Option<String>, &[u8])> {
    let rest = data.strip_prefix(b"n,").or_else(|| data.strip_prefix(b"y,"))?;
    let comma = rest.iter().position(|b| *b == b',')?;
    let authzid = rest.get(..comma)?;
    let user = if authzid.is_empty() {
        None
    } else {
        let a = std::str::from_utf8(authzid.strip_prefix(b"a=")?).ok()?;
        Some(a.replace("=2C", ",").replace("=3D", "="))
    };
    let kvpairs = rest.get(comma + 1..)?.strip_prefix(b"\x01")?.strip_suffix(b"\x01\x01")?;
    let token = kvpairs.split(|b| *b == 1).find_map(|kv| kv.strip_prefix(b"auth="))?;
    Some((user, bearer(token)?))
}

/// `user=name^Aauth=Bearer token^A^A`.
fn parse_xoauth2(data: &[u8]) -> Option<(Option<String>, &[u8])> {
    let kvpairs = data.strip_suffix(b"\x01\x01")?;
    let mut user = None;
    let mut token = None;
    for kv in kvpairs.split(|b| *b == 1) {
        if let Some(u) = kv.strip_prefix(b"user=") {
            user = Some(std::str::from_utf8(u).ok()?.to_owned());
        } else if let Some(t) = kv.strip_prefix(b"auth=") {
            token = Some(bearer(t)?);
        }
    }
    Some((Some(user?), token?))
}

/// The token of `Bearer <token>` (scheme case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    let token = value.get(7..)?;
    (scheme.eq_ignore_ascii_case(b"Bearer ") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        let (u, t) = parse_oauthbearer(b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01").unwrap();
        assert_eq!(
            (u.as_deref(), t),
            (Some("user@example.com"), &b"vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="[..])
        );
        let (u, t) = parse_xoauth2(
            b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01",
        )
        .unwrap();
        assert_eq!(
            (u.as_deref(), t),
            (Some("someuser@example.com"), &b"ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"[..])
        );
        for bad in [
            &b""[..],
            b"n,,",
            b"n,,\x01auth=Bearer \x01\x01",
            b"p=x,,\x01auth=Bearer t\x01\x01",
            b"n,,\x01auth=Basic t\x01\x01",
        ] {
            assert!(parse_oauthbearer(bad).is_none());
        }
        assert!(parse_xoauth2(b"auth=Bearer t\x01\x01").is_none());
    }
}
