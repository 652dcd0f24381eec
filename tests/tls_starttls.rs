//! STARTTLS end to end in memory: an SMTP and a POP3 session behind `TlsChannel`, a rustls
//! client on the other side, everything through the public API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
#![allow(clippy::disallowed_methods)] // one real Instant: the base of the virtual clock

use std::sync::Arc;
use std::time::Instant;

use postern::smtp::{self, Event, Violation};
use postern::tls::TlsChannel;
use postern::{TlsInfo, pop3};

struct Pki {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    client_with_cert: Arc<rustls::ClientConfig>,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "postern test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["mx.example.test".into()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["alice.example.org".into()]).unwrap();
    client_params.distinguished_name.push(DnType::CommonName, "alice");
    let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let roots = Arc::new(roots);
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .allow_unauthenticated()
            .build()
            .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).unwrap(),
        )
        .unwrap();
    let builder = || {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots.clone())
    };
    let client = builder().with_no_client_auth();
    let client_with_cert = builder()
        .with_client_auth_cert(
            vec![client_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(client_key.serialize_der()).unwrap(),
        )
        .unwrap();
    Pki { server: Arc::new(server), client: Arc::new(client), client_with_cert: Arc::new(client_with_cert) }
}

/// An SMTP session whose application accepts everything and records events.
struct Smtp {
    s: smtp::Session,
    now: Instant,
    events: Vec<String>,
    starttls: bool,
}

impl Smtp {
    fn new() -> Self {
        let now = Instant::now();
        let mut config = smtp::Config::new("mx.example.test");
        config.starttls = true;
        config.auth_mechanisms = vec!["PLAIN".into()];
        let mut s = smtp::Session::new(Arc::new(config), now);
        let mut greeting = Vec::new();
        s.poll_transmit(&mut greeting);
        Self { s, now, events: Vec::new(), starttls: false }
    }

    /// Plaintext in, plaintext out.
    fn talk(&mut self, input: &[u8]) -> String {
        self.s.receive(input, self.now);
        while let Some(e) = self.s.poll_event() {
            self.events.push(format!("{e:?}"));
            match e {
                Event::Helo(_)
                | Event::Mail(_)
                | Event::Rcpt(_)
                | Event::DataStart { .. }
                | Event::MessageEnd(_) => self.s.accept().unwrap(),
                Event::StartTls => self.starttls = true,
                _ => {}
            }
        }
        let mut out = Vec::new();
        self.s.poll_transmit(&mut out);
        String::from_utf8(out).unwrap()
    }
}

/// Runs the handshake between `server` and `client`, handing nothing to any session.
fn handshake(server: &mut TlsChannel, client: &mut TlsChannel) {
    let (mut a, mut b, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..6 {
        client.poll_transmit(&mut a);
        server.receive(&a, &mut plain).unwrap();
        a.clear();
        server.poll_transmit(&mut b);
        client.receive(&b, &mut plain).unwrap();
        b.clear();
    }
    assert!(!server.is_handshaking() && !client.is_handshaking());
    assert!(plain.is_empty(), "no application data during the handshake");
}

/// Client plaintext through both channels into the session, and the reply back.
fn exchange(smtp: &mut Smtp, server: &mut TlsChannel, client: &mut TlsChannel, line: &[u8]) -> String {
    let (mut wire, mut plain) = (Vec::new(), Vec::new());
    client.send(line).unwrap();
    client.poll_transmit(&mut wire);
    server.receive(&wire, &mut plain).unwrap();
    let reply = smtp.talk(&plain);
    server.send(reply.as_bytes()).unwrap();
    wire.clear();
    server.poll_transmit(&mut wire);
    let mut back = Vec::new();
    client.receive(&wire, &mut back).unwrap();
    String::from_utf8(back).unwrap()
}

#[test]
fn smtp_starttls_upgrade_resets_state_and_reports_the_connection() {
    let pki = pki();
    let mut smtp = Smtp::new();
    assert!(smtp.talk(b"EHLO client.example.org\r\n").contains("STARTTLS\r\n"));
    assert!(smtp.talk(b"MAIL FROM:<a@example.org>\r\n").starts_with("250"));
    assert_eq!(smtp.talk(b"STARTTLS\r\n"), "220 2.0.0 Ready to start TLS\r\n");
    assert!(smtp.starttls);

    let mut server = TlsChannel::server(pki.server.clone()).unwrap();
    let mut client = TlsChannel::client(pki.client_with_cert.clone(), "mx.example.test").unwrap();
    handshake(&mut server, &mut client);
    let info: TlsInfo = server.poll_established().unwrap();
    assert_eq!(info.protocol, "TLSv1.3");
    assert_eq!(info.sni.as_deref(), Some("mx.example.test"));
    assert!(info.key_exchange.is_some());
    assert!(info.peer_identity.as_deref().unwrap().contains("alice"), "{info:?}");
    smtp.s.tls_established(info, smtp.now).unwrap();

    // Everything from before the handshake is gone: MAIL needs a new EHLO.
    assert!(
        exchange(&mut smtp, &mut server, &mut client, b"MAIL FROM:<a@example.org>\r\n").starts_with("503")
    );
    let ehlo = exchange(&mut smtp, &mut server, &mut client, b"EHLO client.example.org\r\n");
    assert!(!ehlo.contains("STARTTLS"));
    assert!(ehlo.contains("AUTH PLAIN"));
    assert!(ehlo.contains("REQUIRETLS"));
    assert!(exchange(&mut smtp, &mut server, &mut client, b"STARTTLS\r\n").starts_with("503"));
}

#[test]
fn smtp_starttls_injection_never_reaches_tls() {
    let mut smtp = Smtp::new();
    smtp.talk(b"EHLO client.example.org\r\n");
    let out = smtp.talk(b"STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n");
    assert!(out.starts_with("554 5.5.0"), "{out}");
    assert!(smtp.s.is_closed());
    assert!(!smtp.starttls, "no handshake is started");
    assert!(
        smtp.events
            .iter()
            .any(|e| e.contains(&format!("{:?}", Violation::StartTlsInjection { dropped: 30 })))
    );
    assert!(!smtp.events.iter().any(|e| e.starts_with("Mail(")));
}

#[test]
fn implicit_tls_from_the_first_byte() {
    let pki = pki();
    let mut server = TlsChannel::server(pki.server.clone()).unwrap();
    let mut client = TlsChannel::client(pki.client.clone(), "mx.example.test").unwrap();
    handshake(&mut server, &mut client);
    let info = server.poll_established().unwrap();
    assert!(info.peer_identity.is_none());
    let now = Instant::now();
    let mut s = smtp::Session::new_implicit_tls(Arc::new(smtp::Config::new("mx.example.test")), info, now);
    let mut greeting = Vec::new();
    s.poll_transmit(&mut greeting);
    server.send(&greeting).unwrap();
    let mut wire = Vec::new();
    server.poll_transmit(&mut wire);
    let mut plain = Vec::new();
    client.receive(&wire, &mut plain).unwrap();
    assert_eq!(plain, b"220 mx.example.test ESMTP\r\n");
    assert_eq!(s.tls().unwrap().protocol, "TLSv1.3");
}

#[test]
fn pop3_stls_upgrade() {
    let pki = pki();
    let now = Instant::now();
    let mut config = pop3::Config::new("pop.example.test");
    config.stls = true;
    let mut s = pop3::Session::new(Arc::new(config), [3; 16], now);
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    out.clear();
    s.receive(b"USER alice\r\n", now);
    s.poll_transmit(&mut out);
    assert!(out.starts_with(b"-ERR [AUTH]"), "plaintext USER is refused");
    out.clear();
    s.receive(b"STLS\r\n", now);
    assert!(matches!(s.poll_event(), Some(pop3::Event::Violation(_))));
    assert!(matches!(s.poll_event(), Some(pop3::Event::StartTls)));
    s.poll_transmit(&mut out);
    assert_eq!(out, b"+OK Begin TLS negotiation\r\n");

    let mut server = TlsChannel::server(pki.server.clone()).unwrap();
    let mut client = TlsChannel::client(pki.client.clone(), "mx.example.test").unwrap();
    handshake(&mut server, &mut client);
    s.tls_established(server.poll_established().unwrap(), now).unwrap();
    s.receive(b"USER alice\r\nPASS secret\r\n", now);
    while let Some(e) = s.poll_event() {
        if let pop3::Event::Login { user, password } = e {
            assert_eq!((user.as_str(), password.as_bytes()), ("alice", &b"secret"[..]));
            s.accept_login(user, Vec::new()).unwrap();
        }
    }
    out.clear();
    s.poll_transmit(&mut out);
    assert_eq!(out, b"+OK\r\n+OK Logged in, 0 messages\r\n");
}

#[test]
fn corrupted_ciphertext_is_an_error_not_a_panic() {
    let pki = pki();
    let mut server = TlsChannel::server(pki.server.clone()).unwrap();
    let mut client = TlsChannel::client(pki.client.clone(), "mx.example.test").unwrap();
    handshake(&mut server, &mut client);
    client.send(b"NOOP\r\n").unwrap();
    let mut wire = Vec::new();
    client.poll_transmit(&mut wire);
    let last = wire.len() - 1;
    wire[last] ^= 0x55;
    let mut plain = Vec::new();
    assert!(server.receive(&wire, &mut plain).is_err());
    assert!(plain.is_empty());
    // Garbage instead of a ClientHello.
    let mut fresh = TlsChannel::server(pki.server).unwrap();
    assert!(fresh.receive(b"EHLO plaintext\r\n", &mut plain).is_err());
    let mut alert = Vec::new();
    fresh.poll_transmit(&mut alert);
    assert!(!alert.is_empty(), "an alert is sent");
}

#[test]
fn large_sends_are_accepted_whole() {
    let pki = pki();
    let mut server = TlsChannel::server(pki.server.clone()).unwrap();
    let mut client = TlsChannel::client(pki.client.clone(), "mx.example.test").unwrap();
    handshake(&mut server, &mut client);
    // A POP3 RETR chunk with dot-stuffing can exceed rustls's default 64 KiB buffer.
    let big = vec![b'x'; 1024 * 1024];
    server.send(&big).unwrap();
    let mut wire = Vec::new();
    server.poll_transmit(&mut wire);
    let mut plain = Vec::new();
    client.receive(&wire, &mut plain).unwrap();
    assert_eq!(plain.len(), big.len());
}
