//! SASL for SMTP AUTH (submission, smtps) and POP3 AUTH: which mechanisms are offered,
//! and one `postern::sasl::Exchange` per AUTH command, checked against [`Users`].
//!
//! Offered: PLAIN, LOGIN, SCRAM-SHA-256 and, once TLS is up, SCRAM-SHA-256-PLUS bound
//! to the connection with `tls-exporter` (RFC 9266); CRAM-MD5 only with `--cram-md5`.
//! Every failure gets the protocol's one failure reply and feeds the penalty box.

use std::sync::Arc;

use postern::sasl::{self, Channel, Exchange, Failure, Mechanism, Step};

use crate::cli::Args;
use crate::transport::Transport;
use crate::users::{self, Users};

/// The mechanisms, in the order the sessions list them (PLAIN first: what most clients
/// pick from the list; SCRAM for those that can).
pub(crate) fn mechanisms(cram_md5: bool) -> Vec<Mechanism> {
    let mut m = vec![Mechanism::Plain, Mechanism::Login, Mechanism::ScramSha256, Mechanism::ScramSha256Plus];
    if cram_md5 {
        m.push(Mechanism::CramMd5);
    }
    m
}

/// The accounts from `--user` and `--users`, with the SASL configuration.
pub(crate) fn users(args: &Args, mechanisms: &[Mechanism]) -> Result<Users, String> {
    let rng = ring::rand::SystemRandom::new();
    let mut config = sasl::Config::new(&rng)
        .and_then(|c| c.with_dummy_iterations(args.hash_iterations))
        .map_err(|e| format!("SASL setup: {e}"))?;
    config.mechanisms = mechanisms.to_vec();
    config.hostname.clone_from(&args.hostname);
    let file = match &args.users_file {
        Some(path) => users::load(path)?,
        None => Vec::new(),
    };
    Users::new(&args.users, file, args.hash_iterations, Arc::new(config), &rng)
}

/// Starts the exchange for `mechanism` (as the session reported it) on this connection.
pub(crate) fn begin(users: &Users, mechanism: &str, transport: &Transport) -> Result<Exchange, String> {
    let mechanism: Mechanism = mechanism.parse().map_err(|e: sasl::SaslError| e.to_string())?;
    if !users.sasl().mechanisms.contains(&mechanism) {
        return Err(format!("{mechanism} is not configured"));
    }
    let mut channel = Channel::default();
    if let Some(binding) = transport.tls_exporter() {
        channel = channel.with_tls_exporter(binding);
    }
    Exchange::new(mechanism, Arc::clone(users.sasl()), channel, &ring::rand::SystemRandom::new())
        .map_err(|e| e.to_string())
}

/// Resolves [`Step::SecondFactor`] (a user with a TOTP second factor typed the password
/// and a code): success if the code is fresh and right, else the usual failure.
pub(crate) fn second_factor(users: &Users, step: Step) -> Step {
    match step {
        Step::SecondFactor { user, code } => {
            if users.check_second_factor(&user.authcid, &code) {
                Step::Success(user)
            } else {
                Step::Failure(Failure::Credentials)
            }
        }
        other => other,
    }
}
