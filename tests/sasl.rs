//! SASL through the public API: RFC test vectors (RFC 7677 SCRAM-SHA-256, RFC 2195
//! CRAM-MD5, RFC 4616 PLAIN, RFC 1939 APOP), SCRAM-SHA-256-PLUS with a tls-exporter
//! binding, OAuth and EXTERNAL, exchanges driven through the SMTP and POP3 sessions, and
//! proptests: malformed, truncated, overlong and out-of-order input never panics and
//! never authenticates.
// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// A test is an application: it may read the clock.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use postern::sasl::{
    Authenticated, Channel, Config, CredentialStore, Exchange, Failure, Mechanism, PasswordHash, ScramSecret,
    SharedSecret, Step, verify_apop,
};
use proptest::prelude::*;
use ring::hmac;

/// RFC 7677 §3's salt for user "user", password "pencil".
const RFC7677_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const RFC7677_SNONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";

/// A store with a few users; iterations kept low so tests are fast.
struct Store {
    alice_hash: PasswordHash,
    user_scram: ScramSecret,
}

impl Store {
    fn new() -> Self {
        let salt = STANDARD.decode(RFC7677_SALT).unwrap();
        Self {
            alice_hash: PasswordHash::with_salt(b"secret", b"salt-of-alice", 10).unwrap(),
            user_scram: ScramSecret::with_salt(b"pencil", &salt, 4096).unwrap(),
        }
    }
}

impl CredentialStore for Store {
    fn password(&self, authcid: &str) -> Option<PasswordHash> {
        match authcid {
            "alice" | "Kurt" | "tim" => Some(self.alice_hash.clone()),
            _ => None,
        }
    }
    fn scram_sha256(&self, authcid: &str) -> Option<ScramSecret> {
        (authcid == "user").then(|| self.user_scram.clone())
    }
    fn shared_secret(&self, authcid: &str) -> Option<SharedSecret> {
        match authcid {
            "tim" => Some(SharedSecret::new("tanstaaftanstaaf")),
            "mrose" => Some(SharedSecret::new("tanstaaf")),
            _ => None,
        }
    }
    fn authorize(&self, authcid: &str, authzid: &str) -> bool {
        authcid == "Kurt" && authzid == "Ursel"
    }
    fn verify_bearer_token(&self, user: Option<&str>, token: &[u8]) -> Option<String> {
        (token == b"good-token").then(|| user.unwrap_or("oauth-user").to_owned())
    }
    fn external(&self, peer: &str, authzid: Option<&str>) -> Option<String> {
        (peer == "CN=alice" && authzid.is_none_or(|z| z == "alice")).then(|| "alice".to_owned())
    }
}

fn config() -> Arc<Config> {
    let rng = ring::rand::SystemRandom::new();
    let mut c = Config::new(&rng).unwrap().with_dummy_iterations(10).unwrap();
    c.mechanisms = Mechanism::ALL.to_vec();
    Arc::new(c)
}

fn exchange(m: Mechanism, channel: Channel) -> Exchange {
    Exchange::new(m, config(), channel, &ring::rand::SystemRandom::new()).unwrap()
}

fn success(step: Step) -> Authenticated {
    match step {
        Step::Success(a) => a,
        other => panic!("expected success, got {other:?}"),
    }
}

fn challenge(step: Step) -> Vec<u8> {
    match step {
        Step::Challenge(c) => c,
        other => panic!("expected a challenge, got {other:?}"),
    }
}

fn failure(step: Step) -> Failure {
    match step {
        Step::Failure(f) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

// ----- RFC vectors ---------------------------------------------------------------------

#[test]
fn rfc7677_scram_sha256_exchange() {
    let store = Store::new();
    let mut x =
        Exchange::with_nonce(Mechanism::ScramSha256, config(), Channel::default(), RFC7677_SNONCE).unwrap();
    let server_first = challenge(x.start(Some(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"), &store));
    assert_eq!(
        server_first,
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    );
    let server_final = challenge(x.respond(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        &store,
    ));
    assert_eq!(server_final, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    assert_eq!(success(x.respond(b"", &store)).identity(), "user");
    // Over: nothing more is accepted.
    assert_eq!(failure(x.respond(b"", &store)), Failure::OutOfOrder);
}

#[test]
fn rfc7677_with_a_wrong_proof_or_nonce_fails() {
    let store = Store::new();
    let first = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    let fin = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    for (bad, want) in [
        (fin.replace("p=dH", "p=eH"), Failure::Credentials),
        (fin.replace("$k0,", "$k1,"), Failure::Malformed),
        (fin.replace("c=biws", "c=eSws"), Failure::ChannelBinding),
        (fin.replace(",p=", ",x=1,q="), Failure::Malformed),
    ] {
        let mut x =
            Exchange::with_nonce(Mechanism::ScramSha256, config(), Channel::default(), RFC7677_SNONCE)
                .unwrap();
        challenge(x.start(Some(first), &store));
        assert_eq!(failure(x.respond(bad.as_bytes(), &store)), want, "{bad}");
    }
    // The server-final message must be acknowledged with an empty response.
    let mut x =
        Exchange::with_nonce(Mechanism::ScramSha256, config(), Channel::default(), RFC7677_SNONCE).unwrap();
    challenge(x.start(Some(first), &store));
    challenge(x.respond(fin.as_bytes(), &store));
    assert_eq!(failure(x.respond(b"x", &store)), Failure::Malformed);
}

#[test]
fn scram_unknown_user_gets_a_stable_fake_salt_and_fails_like_a_wrong_password() {
    let store = Store::new();
    let config = config();
    let salt_of = |user: &str| {
        let mut x = Exchange::new(
            Mechanism::ScramSha256,
            Arc::clone(&config),
            Channel::default(),
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let first = challenge(x.start(Some(format!("n,,n={user},r=abc").as_bytes()), &store));
        let text = String::from_utf8(first).unwrap();
        let parts: Vec<&str> = text.split(',').collect();
        assert!(parts[0].starts_with("r=abc") && parts[2] == "i=4096", "{text}");
        parts[1].to_owned()
    };
    assert_eq!(salt_of("nobody"), salt_of("nobody"));
    assert_ne!(salt_of("nobody"), salt_of("somebody"));
    // A full exchange for an unknown user with the "right" password for the fake salt fails.
    let mut x = exchange(Mechanism::ScramSha256, Channel::default());
    let server_first = String::from_utf8(challenge(x.start(Some(b"n,,n=nobody,r=abc"), &store))).unwrap();
    let fin = client_final(b"pencil", "n=nobody,r=abc", &server_first, b"n,,");
    assert_eq!(failure(x.respond(fin.as_bytes(), &store)), Failure::Credentials);
}

/// A SCRAM-SHA-256 client's final message (RFC 5802 §3), for the tests.
fn client_final(password: &[u8], client_first_bare: &str, server_first: &str, cbind: &[u8]) -> String {
    let mut fields = server_first.split(',');
    let nonce = fields.next().unwrap().strip_prefix("r=").unwrap();
    let salt = STANDARD.decode(fields.next().unwrap().strip_prefix("s=").unwrap()).unwrap();
    let iterations: u32 = fields.next().unwrap().strip_prefix("i=").unwrap().parse().unwrap();
    let mut salted = [0_u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations.try_into().unwrap(),
        &salt,
        password,
        &mut salted,
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
    let client_key = hmac::sign(&key, b"Client Key");
    let stored_key = ring::digest::digest(&ring::digest::SHA256, client_key.as_ref());
    let without_proof = format!("c={},r={nonce}", STANDARD.encode(cbind));
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature =
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, stored_key.as_ref()), auth_message.as_bytes());
    let proof: Vec<u8> = client_key.as_ref().iter().zip(signature.as_ref()).map(|(a, b)| a ^ b).collect();
    format!("{without_proof},p={}", STANDARD.encode(proof))
}

#[test]
fn scram_sha256_plus_with_tls_exporter() {
    let store = Store::new();
    let binding = [0x42_u8; 32];
    let channel = Channel::default().with_tls_exporter(binding);
    let first = "p=tls-exporter,,n=user,r=clientnonce";
    let mut cbind = b"p=tls-exporter,,".to_vec();
    cbind.extend_from_slice(&binding);

    let mut x = exchange(Mechanism::ScramSha256Plus, channel.clone());
    let server_first = String::from_utf8(challenge(x.start(Some(first.as_bytes()), &store))).unwrap();
    let fin = client_final(b"pencil", "n=user,r=clientnonce", &server_first, &cbind);
    challenge(x.respond(fin.as_bytes(), &store));
    assert_eq!(success(x.respond(b"", &store)).identity(), "user");

    // Another connection's binding: refused.
    let mut x = exchange(Mechanism::ScramSha256Plus, Channel::default().with_tls_exporter([1; 32]));
    let server_first = String::from_utf8(challenge(x.start(Some(first.as_bytes()), &store))).unwrap();
    let fin = client_final(b"pencil", "n=user,r=clientnonce", &server_first, &cbind);
    assert_eq!(failure(x.respond(fin.as_bytes(), &store)), Failure::ChannelBinding);

    // -PLUS without a binding cannot even start; `n` or `y` in -PLUS is refused.
    assert!(
        Exchange::new(
            Mechanism::ScramSha256Plus,
            config(),
            Channel::default(),
            &ring::rand::SystemRandom::new()
        )
        .is_err()
    );
    for first in ["n,,n=user,r=a", "y,,n=user,r=a", "p=tls-unique,,n=user,r=a"] {
        let mut x = exchange(Mechanism::ScramSha256Plus, channel.clone());
        assert_eq!(failure(x.start(Some(first.as_bytes()), &store)), Failure::ChannelBinding, "{first}");
    }
    // Downgrade: `y` on plain SCRAM while -PLUS is on offer over this channel.
    let mut x = exchange(Mechanism::ScramSha256, channel);
    assert_eq!(failure(x.start(Some(b"y,,n=user,r=a"), &store)), Failure::ChannelBinding);
    // Without TLS, `y` is fine.
    let mut x = exchange(Mechanism::ScramSha256, Channel::default());
    challenge(x.start(Some(b"y,,n=user,r=a"), &store));
    // A p= flag on the non-PLUS mechanism is refused.
    let mut x = exchange(Mechanism::ScramSha256, Channel::default());
    assert_eq!(failure(x.start(Some(b"p=tls-exporter,,n=user,r=a"), &store)), Failure::ChannelBinding);
}

#[test]
fn scram_iteration_policy() {
    let weak = ScramSecret::with_salt(b"pencil", b"salt", 1000).unwrap();
    struct Weak(ScramSecret);
    impl CredentialStore for Weak {
        fn scram_sha256(&self, _: &str) -> Option<ScramSecret> {
            Some(self.0.clone())
        }
    }
    let store = Weak(weak);
    let mut x = exchange(Mechanism::ScramSha256, Channel::default());
    let server_first = String::from_utf8(challenge(x.start(Some(b"n,,n=user,r=abc"), &store))).unwrap();
    assert!(server_first.ends_with(",i=4096"), "a weak secret is not used: {server_first}");
    let fin = client_final(b"pencil", "n=user,r=abc", &server_first, b"n,,");
    assert_eq!(failure(x.respond(fin.as_bytes(), &store)), Failure::Credentials);
}

#[test]
fn rfc2195_cram_md5() {
    let store = Store::new();
    let mut c = Config::new(&ring::rand::SystemRandom::new()).unwrap().with_dummy_iterations(10).unwrap();
    c.hostname = "postoffice.reston.mci.net".into();
    c.mechanisms.push(Mechanism::CramMd5);
    let c = Arc::new(c);
    let mut x =
        Exchange::with_nonce(Mechanism::CramMd5, Arc::clone(&c), Channel::default(), "1896.697170952")
            .unwrap();
    assert_eq!(challenge(x.start(None, &store)), b"<1896.697170952@postoffice.reston.mci.net>");
    assert_eq!(success(x.respond(b"tim b913a602c7eda7a495b4e6e7334d3890", &store)).identity(), "tim");
    for bad in [
        &b"tim b913a602c7eda7a495b4e6e7334d3891"[..],
        b"tom b913a602c7eda7a495b4e6e7334d3890",
        b"tim",
        b"tim zz13a602c7eda7a495b4e6e7334d3890",
    ] {
        let mut x =
            Exchange::with_nonce(Mechanism::CramMd5, Arc::clone(&c), Channel::default(), "1896.697170952")
                .unwrap();
        challenge(x.start(None, &store));
        assert!(matches!(x.respond(bad, &store), Step::Failure(Failure::Credentials | Failure::Malformed)));
    }
}

#[test]
fn rfc4616_plain_examples() {
    let store = Store::new();
    // "tim" with the password of RFC 4616's first example is refused here (tim's PLAIN
    // password in this store is "secret"); the second example's authzid needs permission.
    let mut x = exchange(Mechanism::Plain, Channel::default());
    assert_eq!(failure(x.start(Some(b"\0tim\0tanstaaftanstaaf"), &store)), Failure::Credentials);
    let mut x = exchange(Mechanism::Plain, Channel::default());
    assert_eq!(success(x.start(Some(b"\0tim\0secret"), &store)).identity(), "tim");
    // Ursel acting through Kurt: refused unless the config allows authzids at all.
    let mut x = exchange(Mechanism::Plain, Channel::default());
    assert_eq!(failure(x.start(Some(b"Ursel\0Kurt\0secret"), &store)), Failure::NotAuthorized);
    let mut c = Config::new(&ring::rand::SystemRandom::new()).unwrap().with_dummy_iterations(10).unwrap();
    c.allow_authzid = true;
    let c = Arc::new(c);
    let mut x =
        Exchange::new(Mechanism::Plain, Arc::clone(&c), Channel::default(), &ring::rand::SystemRandom::new())
            .unwrap();
    let who = success(x.start(Some(b"Ursel\0Kurt\0secret"), &store));
    assert_eq!((who.authcid.as_str(), who.identity()), ("Kurt", "Ursel"));
    let mut x =
        Exchange::new(Mechanism::Plain, c, Channel::default(), &ring::rand::SystemRandom::new()).unwrap();
    assert_eq!(failure(x.start(Some(b"Ursel\0alice\0secret"), &store)), Failure::NotAuthorized);
    // The same authzid as the authcid is fine; malformed forms are refused.
    let mut x = exchange(Mechanism::Plain, Channel::default());
    assert_eq!(success(x.start(Some(b"alice\0alice\0secret"), &store)).identity(), "alice");
    for bad in [
        &b""[..],
        b"\0alice",
        b"alice\0secret",
        b"\0\0secret",
        b"\0alice\0",
        b"\0alice\0secret\0",
        b"\0\xffalice\0secret",
    ] {
        let mut x = exchange(Mechanism::Plain, Channel::default());
        assert_eq!(failure(x.start(Some(bad), &store)), Failure::Malformed, "{bad:?}");
    }
    // Without an initial response: an empty challenge, then the response.
    let mut x = exchange(Mechanism::Plain, Channel::default());
    assert_eq!(challenge(x.start(None, &store)), b"");
    assert_eq!(success(x.respond(b"\0alice\0secret", &store)).identity(), "alice");
    // Unknown user and wrong password: the same failure.
    for response in [&b"\0nobody\0secret"[..], b"\0alice\0wrong"] {
        let mut x = exchange(Mechanism::Plain, Channel::default());
        assert_eq!(failure(x.start(Some(response), &store)), Failure::Credentials);
    }
}

#[test]
fn login_with_and_without_initial_response() {
    let store = Store::new();
    let mut x = exchange(Mechanism::Login, Channel::default());
    assert_eq!(challenge(x.start(Some(b"alice"), &store)), b"Password:");
    assert_eq!(success(x.respond(b"secret", &store)).identity(), "alice");
    // HMAC zero-pads short keys, so PBKDF2 alone would accept "secret\0": refused.
    let mut x = exchange(Mechanism::Login, Channel::default());
    challenge(x.start(Some(b"alice"), &store));
    assert_eq!(failure(x.respond(b"secret\0", &store)), Failure::Credentials);
    let mut x = exchange(Mechanism::Login, Channel::default());
    assert_eq!(failure(x.respond_line(b"", &store)), Failure::OutOfOrder, "respond before start");
}

#[test]
fn respond_line_decodes_base64_and_cancels() {
    let store = Store::new();
    let mut x = exchange(Mechanism::Login, Channel::default());
    challenge(x.start(None, &store));
    assert_eq!(challenge(x.respond_line(b"YWxpY2U=", &store)), b"Password:");
    assert_eq!(success(x.respond_line(b"c2VjcmV0", &store)).identity(), "alice");
    let mut x = exchange(Mechanism::Login, Channel::default());
    challenge(x.start(None, &store));
    assert_eq!(failure(x.respond_line(b"*", &store)), Failure::Cancelled);
    let mut x = exchange(Mechanism::Login, Channel::default());
    challenge(x.start(None, &store));
    assert_eq!(failure(x.respond_line(b"!!!", &store)), Failure::Malformed);
    let mut x = exchange(Mechanism::Login, Channel::default());
    challenge(x.start(None, &store));
    assert_eq!(failure(x.respond_line(&[b'A'; 20_000], &store)), Failure::TooLarge);
    let mut x = exchange(Mechanism::Plain, Channel::default());
    assert_eq!(failure(x.start(Some(&[0; 13_000]), &store)), Failure::TooLarge);
}

#[test]
fn rfc1939_apop() {
    let store = Store::new();
    let ts = "<1896.697170952@dbc.mtview.ca.us>";
    assert!(verify_apop(&store, "mrose", ts, "c4c9334bac560ecc979e58001b3e22fb"));
    assert!(!verify_apop(&store, "mrose", ts, "c4c9334bac560ecc979e58001b3e22fc"));
    assert!(!verify_apop(&store, "nobody", ts, "c4c9334bac560ecc979e58001b3e22fb"));
    assert!(postern::sasl::apop_verify(ts, b"tanstaaf", "c4c9334bac560ecc979e58001b3e22fb"));
}

#[test]
fn oauthbearer_xoauth2_and_external() {
    let store = Store::new();
    let mut x = exchange(Mechanism::OAuthBearer, Channel::default());
    let who = success(x.start(Some(b"n,a=bob,\x01auth=Bearer good-token\x01\x01"), &store));
    assert_eq!(who.identity(), "bob");
    // A bad token: an error challenge (RFC 7628 §3.2.3), the client's ^A, then failure.
    let mut x = exchange(Mechanism::OAuthBearer, Channel::default());
    let error = challenge(x.start(Some(b"n,a=bob,\x01auth=Bearer bad\x01\x01"), &store));
    assert_eq!(error, br#"{"status":"invalid_token"}"#);
    assert_eq!(failure(x.respond(b"\x01", &store)), Failure::Credentials);
    let mut x = exchange(Mechanism::XOAuth2, Channel::default());
    assert_eq!(
        success(x.start(Some(b"user=carol\x01auth=Bearer good-token\x01\x01"), &store)).identity(),
        "carol"
    );
    let mut x = exchange(Mechanism::XOAuth2, Channel::default());
    challenge(x.start(Some(b"user=carol\x01auth=Bearer nope\x01\x01"), &store));
    assert_eq!(failure(x.respond(b"", &store)), Failure::Credentials);

    let tls = Channel::default().with_peer_identity("CN=alice");
    let mut x = exchange(Mechanism::External, tls.clone());
    assert_eq!(success(x.start(Some(b""), &store)).identity(), "alice");
    let mut x = exchange(Mechanism::External, tls.clone());
    assert_eq!(challenge(x.start(None, &store)), b"");
    assert_eq!(failure(x.respond(b"root", &store)), Failure::Credentials);
    assert!(
        Exchange::new(Mechanism::External, config(), Channel::default(), &ring::rand::SystemRandom::new())
            .is_err()
    );
    let mut x = exchange(Mechanism::External, Channel::default().with_peer_identity("CN=mallory"));
    assert_eq!(failure(x.start(Some(b""), &store)), Failure::Credentials);
}

#[test]
fn advertised_mechanisms_depend_on_the_channel() {
    let rng = ring::rand::SystemRandom::new();
    let c = Config::new(&rng).unwrap();
    assert_eq!(c.advertised(&Channel::default()), ["SCRAM-SHA-256", "PLAIN", "LOGIN"]);
    let tls = Channel::default().with_tls_exporter([0; 32]);
    assert_eq!(c.advertised(&tls), ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN"]);
    assert_eq!("scram-sha-256-plus".parse::<Mechanism>().unwrap(), Mechanism::ScramSha256Plus);
    assert!("DIGEST-MD5".parse::<Mechanism>().is_err());
    assert!(format!("{tls:?}").contains("redacted"));
}

// ----- through the protocol sessions --------------------------------------------------

#[test]
fn rfc7677_through_the_smtp_session() {
    use postern::smtp::{Config as SmtpConfig, Event, Session};
    let store = Store::new();
    let mut config = SmtpConfig::new("mx.example.test");
    config.auth_mechanisms = vec!["SCRAM-SHA-256".into(), "SCRAM-SHA-256-PLUS".into()];
    config.allow_plaintext_auth = true;
    let now = Instant::now();
    let mut s = Session::new(Arc::new(config), now);
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    s.receive(b"EHLO c\r\n", now);
    while let Some(e) = s.poll_event() {
        if matches!(e, Event::Helo(_)) {
            s.accept().unwrap();
        }
    }
    out.clear();
    s.poll_transmit(&mut out);
    // No TLS: -PLUS is not offered.
    let ehlo = String::from_utf8(out.clone()).unwrap();
    assert!(ehlo.contains("AUTH SCRAM-SHA-256\r\n"), "{ehlo}");
    let mut x =
        Exchange::with_nonce(Mechanism::ScramSha256, config_arc(), Channel::default(), RFC7677_SNONCE)
            .unwrap();
    let lines = [
        format!("AUTH SCRAM-SHA-256 {}\r\n", STANDARD.encode("n,,n=user,r=rOprNGfwEbeRWgbNEkqO")),
        format!("{}\r\n", STANDARD.encode("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")),
        "\r\n".to_owned(),
    ];
    let mut transcript = String::new();
    for line in lines {
        s.receive(line.as_bytes(), now);
        while let Some(e) = s.poll_event() {
            let step = match e {
                Event::Auth(start) => x.start(start.initial_response.as_ref().map(|d| d.as_bytes()), &store),
                Event::AuthResponse(d) => x.respond(d.as_bytes(), &store),
                other => panic!("{other:?}"),
            };
            match step {
                Step::Challenge(c) => s.auth_challenge(&c).unwrap(),
                Step::Success(who) => s.auth_succeed(who.identity()).unwrap(),
                other => panic!("{other:?}"),
            }
        }
        out.clear();
        s.poll_transmit(&mut out);
        transcript.push_str(&String::from_utf8(out.clone()).unwrap());
    }
    assert_eq!(
        transcript,
        format!(
            "334 {}\r\n334 {}\r\n235 2.7.0 Authentication successful\r\n",
            STANDARD.encode(
                "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
            ),
            STANDARD.encode("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
        )
    );
    assert_eq!(s.authenticated(), Some("user"));
    // -PLUS was never usable here.
    let mut s2 = Session::new(
        Arc::new({
            let mut c = SmtpConfig::new("mx");
            c.auth_mechanisms = vec!["SCRAM-SHA-256-PLUS".into()];
            c.allow_plaintext_auth = true;
            c
        }),
        now,
    );
    s2.poll_transmit(&mut out);
    s2.receive(b"EHLO c\r\n", now);
    while let Some(e) = s2.poll_event() {
        if matches!(e, Event::Helo(_)) {
            s2.accept().unwrap();
        }
    }
    s2.receive(b"AUTH SCRAM-SHA-256-PLUS\r\n", now);
    out.clear();
    s2.poll_transmit(&mut out);
    assert!(String::from_utf8_lossy(&out).ends_with("504 5.5.4 Error: unrecognized authentication type\r\n"));
}

fn config_arc() -> Arc<Config> {
    config()
}

#[test]
fn login_through_the_pop3_session() {
    use postern::pop3::{Config as PopConfig, Event, Session};
    let store = Store::new();
    let mut config = PopConfig::new("pop.example.test");
    config.sasl_mechanisms = vec!["LOGIN".into(), "SCRAM-SHA-256-PLUS".into()];
    config.allow_plaintext_auth = true;
    let now = Instant::now();
    let mut s = Session::new(Arc::new(config), [7; 16], now);
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    out.clear();
    s.receive(b"CAPA\r\n", now);
    s.poll_transmit(&mut out);
    let capa = String::from_utf8(out.clone()).unwrap();
    assert!(capa.contains("SASL LOGIN\r\n"), "{capa}");
    let mut x = exchange(Mechanism::Login, Channel::default());
    let mut transcript = String::new();
    for line in ["AUTH LOGIN\r\n", "YWxpY2U=\r\n", "c2VjcmV0\r\n"] {
        s.receive(line.as_bytes(), now);
        while let Some(e) = s.poll_event() {
            let step = match e {
                Event::Auth(start) => x.start(start.initial_response.as_ref().map(|d| d.as_bytes()), &store),
                Event::AuthResponse(d) => x.respond(d.as_bytes(), &store),
                other => panic!("{other:?}"),
            };
            match step {
                Step::Challenge(c) => s.auth_challenge(&c).unwrap(),
                Step::Success(who) => s.accept_login(who.identity(), Vec::new()).unwrap(),
                other => panic!("{other:?}"),
            }
        }
        out.clear();
        s.poll_transmit(&mut out);
        transcript.push_str(&String::from_utf8(out.clone()).unwrap());
    }
    assert_eq!(transcript, "+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n+OK Logged in, 0 messages\r\n");
}

// ----- proptests -----------------------------------------------------------------------

/// A store whose only secrets are long random-looking passwords no generator will hit.
struct Fortress {
    hash: PasswordHash,
    scram: ScramSecret,
}

impl CredentialStore for Fortress {
    fn password(&self, _: &str) -> Option<PasswordHash> {
        Some(self.hash.clone())
    }
    fn scram_sha256(&self, _: &str) -> Option<ScramSecret> {
        Some(self.scram.clone())
    }
    fn shared_secret(&self, _: &str) -> Option<SharedSecret> {
        Some(SharedSecret::new("q8#Lr!v0-unguessable-shared"))
    }
}

fn fortress() -> &'static Fortress {
    static F: std::sync::OnceLock<Fortress> = std::sync::OnceLock::new();
    F.get_or_init(|| Fortress {
        hash: PasswordHash::with_salt(b"q8#Lr!v0-unguessable", b"salt-salt", 1).unwrap(),
        scram: ScramSecret::with_salt(b"q8#Lr!v0-unguessable", b"salt-salt", 4096).unwrap(),
    })
}

fn fast_config() -> Arc<Config> {
    static C: std::sync::OnceLock<Arc<Config>> = std::sync::OnceLock::new();
    Arc::clone(C.get_or_init(|| {
        let mut c = Config::new(&ring::rand::SystemRandom::new()).unwrap().with_dummy_iterations(1).unwrap();
        c.mechanisms = Mechanism::ALL.to_vec();
        c.max_response = 512;
        Arc::new(c)
    }))
}

#[derive(Debug, Clone)]
enum Call {
    Start(Option<Vec<u8>>),
    Respond(Vec<u8>),
    Line(Vec<u8>),
    Cancel,
}

fn call() -> impl Strategy<Value = Call> {
    let bytes = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(any::<u8>(), 500..600),
        // Near-valid shapes: SCRAM, PLAIN, bearer fragments.
        proptest::sample::select(vec![
            b"n,,n=user,r=abc".to_vec(),
            b"p=tls-exporter,,n=u,r=x".to_vec(),
            b"c=biws,r=abc,p=AAAA".to_vec(),
            b"\0alice\0password".to_vec(),
            b"n,,\x01auth=Bearer x\x01\x01".to_vec(),
            b"user=a\x01auth=Bearer x\x01\x01".to_vec(),
            b"*".to_vec(),
            b"=".to_vec(),
            Vec::new(),
        ]),
    ];
    prop_oneof![
        proptest::option::of(bytes.clone()).prop_map(Call::Start),
        bytes.clone().prop_map(Call::Respond),
        bytes.prop_map(Call::Line),
        Just(Call::Cancel),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Any sequence of calls with any bytes, in any order: no panic, and never success.
    #[test]
    fn arbitrary_input_never_authenticates(
        mech in proptest::sample::select(Mechanism::ALL.to_vec()),
        calls in proptest::collection::vec(call(), 1..6),
    ) {
        let channel = Channel::default().with_tls_exporter([9; 32]).with_peer_identity("CN=x");
        let mut x = Exchange::new(mech, fast_config(), channel, &ring::rand::SystemRandom::new()).unwrap();
        for c in calls {
            let step = match c {
                Call::Start(i) => x.start(i.as_deref(), fortress()),
                Call::Respond(r) => x.respond(&r, fortress()),
                Call::Line(l) => x.respond_line(&l, fortress()),
                Call::Cancel => x.cancel(),
            };
            let authenticated = matches!(step, Step::Success(_) | Step::SecondFactor { .. });
            prop_assert!(!authenticated, "{mech:?} authenticated on arbitrary input");
        }
    }

    /// Truncated and overlong versions of a valid SCRAM exchange never authenticate.
    #[test]
    fn truncated_scram_final_never_authenticates(cut in 0_usize..120, extra in proptest::collection::vec(any::<u8>(), 0..8)) {
        let store = Store::new();
        let fin = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let mut response = fin[..cut.min(fin.len())].to_vec();
        if cut >= fin.len() {
            prop_assume!(!extra.is_empty());
            response.extend_from_slice(&extra);
        }
        let mut x = Exchange::with_nonce(Mechanism::ScramSha256, config_arc(), Channel::default(), RFC7677_SNONCE).unwrap();
        let _ = x.start(Some(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"), &store);
        let step = x.respond(&response, &store);
        prop_assert!(matches!(step, Step::Failure(_)), "{step:?}");
    }
}

// ----- SCRAM-SHA-256-PLUS over a real rustls connection --------------------------------

/// A server and a client TLS channel, handshake done (TLS 1.3, ring provider).
fn tls_pair() -> (postern::tls::TlsChannel, postern::tls::TlsChannel) {
    use postern::tls::TlsChannel;
    let cert = rcgen::generate_simple_self_signed(vec!["mx.example.test".into()]).unwrap();
    let der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut s = TlsChannel::server(Arc::new(server)).unwrap();
    let mut c = TlsChannel::client(Arc::new(client), "mx.example.test").unwrap();
    assert!(s.tls_exporter().is_none(), "no binding before the handshake");
    let (mut to_s, mut to_c, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..4 {
        c.poll_transmit(&mut to_s);
        s.receive(&to_s, &mut plain).unwrap();
        to_s.clear();
        s.poll_transmit(&mut to_c);
        c.receive(&to_c, &mut plain).unwrap();
        to_c.clear();
    }
    assert!(!s.is_handshaking() && !c.is_handshaking());
    (s, c)
}

#[test]
fn scram_sha256_plus_over_rustls_tls_exporter() {
    let store = Store::new();
    let (server, client) = tls_pair();
    let (sb, cb) = (server.tls_exporter().unwrap(), client.tls_exporter().unwrap());
    assert_eq!(sb, cb, "both ends export the same binding");
    let (other, _) = tls_pair();
    assert_ne!(other.tls_exporter().unwrap(), sb, "each connection has its own");

    let mut cbind = b"p=tls-exporter,,".to_vec();
    cbind.extend_from_slice(&cb);
    let mut x = exchange(Mechanism::ScramSha256Plus, Channel::default().with_tls_exporter(sb));
    let first = "p=tls-exporter,,n=user,r=tlsnonce";
    let server_first = String::from_utf8(challenge(x.start(Some(first.as_bytes()), &store))).unwrap();
    challenge(
        x.respond(client_final(b"pencil", "n=user,r=tlsnonce", &server_first, &cbind).as_bytes(), &store),
    );
    assert_eq!(success(x.respond(b"", &store)).identity(), "user");

    // A man in the middle has two TLS connections: the client's binding is not the
    // server's, and the exchange fails even with the right password.
    let mut x = exchange(
        Mechanism::ScramSha256Plus,
        Channel::default().with_tls_exporter(other.tls_exporter().unwrap()),
    );
    let server_first = String::from_utf8(challenge(x.start(Some(first.as_bytes()), &store))).unwrap();
    let step =
        x.respond(client_final(b"pencil", "n=user,r=tlsnonce", &server_first, &cbind).as_bytes(), &store);
    assert_eq!(failure(step), Failure::ChannelBinding);
}

// ----- timing ---------------------------------------------------------------------------

/// An unknown user costs what a wrong password costs (the dummy hash has the same
/// iteration count), and both fail the same way. Medians of interleaved runs; generous
/// bounds, as the machine is shared.
#[test]
fn unknown_user_and_wrong_password_cost_the_same() {
    const N: u32 = 20_000;
    struct One(PasswordHash);
    impl CredentialStore for One {
        fn password(&self, user: &str) -> Option<PasswordHash> {
            (user == "alice").then(|| self.0.clone())
        }
    }
    let store = One(PasswordHash::with_salt(b"secret", b"salt-of-alice", N).unwrap());
    let rng = ring::rand::SystemRandom::new();
    let config = Arc::new(Config::new(&rng).unwrap().with_dummy_iterations(N).unwrap());
    let time = |response: &[u8]| {
        let mut x = Exchange::new(Mechanism::Plain, Arc::clone(&config), Channel::default(), &rng).unwrap();
        let t = Instant::now();
        let step = x.start(Some(response), &store);
        let elapsed = t.elapsed();
        assert_eq!(failure(step), Failure::Credentials);
        elapsed
    };
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for _ in 0..9 {
        unknown.push(time(b"\0nobody\0secret"));
        wrong.push(time(b"\0alice\0wrong"));
    }
    unknown.sort();
    wrong.sort();
    let ratio = unknown[4].as_secs_f64() / wrong[4].as_secs_f64();
    assert!(
        (0.6..1.67).contains(&ratio),
        "unknown/wrong median ratio {ratio:.2} ({:?} vs {:?})",
        unknown[4],
        wrong[4]
    );
}

/// Which mechanisms the POP3 session lists before TLS: no password or bearer token in
/// the clear, no channel binding without a channel, and nothing at all with
/// `sasl_requires_tls`.
#[test]
fn pop3_capa_before_tls() {
    use postern::pop3::{Config as PopConfig, Session};
    let capa = |requires_tls: bool| {
        let mut config = PopConfig::new("pop.example.test");
        config.sasl_mechanisms = [
            "PLAIN",
            "LOGIN",
            "XOAUTH2",
            "OAUTHBEARER",
            "SCRAM-SHA-256",
            "SCRAM-SHA-256-PLUS",
            "EXTERNAL",
            "CRAM-MD5",
        ]
        .map(String::from)
        .to_vec();
        config.stls = true;
        config.sasl_requires_tls = requires_tls;
        let now = Instant::now();
        let mut s = Session::new(Arc::new(config), [1; 16], now);
        let mut out = Vec::new();
        s.poll_transmit(&mut out);
        out.clear();
        s.receive(b"CAPA\r\n", now);
        s.poll_transmit(&mut out);
        String::from_utf8(out).unwrap()
    };
    assert!(capa(false).contains("\r\nSASL SCRAM-SHA-256 CRAM-MD5\r\n"), "{}", capa(false));
    assert!(!capa(true).contains("SASL"), "{}", capa(true));
}

/// A failed attempt still names who the client claimed to be (for logs and audit), for
/// every mechanism that carries an identity; before the identity is seen there is none.
#[test]
fn claimed_identity_is_reported_on_failure() {
    let store = Store::new();
    let mut plain = exchange(Mechanism::Plain, Channel::default());
    assert_eq!(plain.claimed_identity(), None);
    assert!(matches!(plain.start(Some(b"\0alice\0wrong"), &store), Step::Failure(Failure::Credentials)));
    assert_eq!(plain.claimed_identity(), Some("alice"));

    let mut login = exchange(Mechanism::Login, Channel::default());
    assert!(matches!(login.start(Some(b"nobody"), &store), Step::Challenge(_)));
    assert!(matches!(login.respond(b"pw", &store), Step::Failure(Failure::Credentials)));
    assert_eq!(login.claimed_identity(), Some("nobody"));

    let mut scram = exchange(Mechanism::ScramSha256, Channel::default());
    assert!(matches!(scram.start(Some(b"n,,n=user,r=abc"), &store), Step::Challenge(_)));
    assert_eq!(scram.claimed_identity(), Some("user"));
    assert!(matches!(scram.respond(b"c=biws,r=wrong,p=AAAA", &store), Step::Failure(_)));
    assert_eq!(scram.claimed_identity(), Some("user"));
}
