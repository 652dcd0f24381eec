//! X25519MLKEM768 benches: postern's group (ring X25519 + `ml-kem`) next to rustls's
//! aws-lc-rs implementation and to plain X25519, per key-exchange step and in complete
//! in-memory TLS 1.3 handshakes.
//!
//! - `tls_pq_kx`: the client's `start` (key generation), the server's
//!   `start_and_complete` (validate + encapsulate + X25519), the client's `complete`
//!   (decapsulate + X25519), for postern, aws-lc-rs and ring's X25519.
//! - `tls_pq_handshake`: a whole handshake (ECDSA P-256 certificate, TLS 1.3,
//!   AES-128-GCM, ring provider) between a rustls client and server in memory, with the
//!   group set to X25519 or postern's X25519MLKEM768; and the same with the aws-lc-rs
//!   provider on both sides, with X25519 or its own X25519MLKEM768.
//!
//! Run with `cargo bench --bench tls_pq`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use postern::tls::X25519MLKEM768;
use rustls::crypto::{CryptoProvider, SupportedKxGroup, aws_lc_rs, ring};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection};

fn kx(c: &mut Criterion) {
    let groups: [(&str, &'static dyn SupportedKxGroup); 3] = [
        ("postern X25519MLKEM768", X25519MLKEM768),
        ("aws-lc-rs X25519MLKEM768", aws_lc_rs::kx_group::X25519MLKEM768),
        ("ring X25519", ring::kx_group::X25519),
    ];
    let mut g = c.benchmark_group("tls_pq_kx");
    for (name, group) in groups {
        g.bench_function(format!("{name}/client start"), |b| b.iter(|| black_box(group.start().unwrap())));
        let client_share = group.start().unwrap().pub_key().to_vec();
        g.bench_function(format!("{name}/server start_and_complete"), |b| {
            b.iter(|| black_box(group.start_and_complete(black_box(&client_share)).unwrap()))
        });
        g.bench_function(format!("{name}/client complete"), |b| {
            b.iter_batched(
                || {
                    let client = group.start().unwrap();
                    let server = group.start_and_complete(client.pub_key()).unwrap();
                    (client, server.pub_key)
                },
                |(client, server_share)| black_box(client.complete(&server_share).unwrap()),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

struct Configs {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

fn configs(
    provider: CryptoProvider,
    cert: &CertificateDer<'static>,
    key: &PrivatePkcs8KeyDer<'static>,
) -> Configs {
    let provider = Arc::new(provider);
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], PrivateKeyDer::Pkcs8(key.clone_key()))
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Configs { client: Arc::new(client), server: Arc::new(server) }
}

fn flow(from: &mut Connection, to: &mut Connection, wire: &mut Vec<u8>) -> bool {
    wire.clear();
    while from.wants_write() {
        from.write_tls(wire).unwrap();
    }
    let mut rest = &wire[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).unwrap();
        to.process_new_packets().unwrap();
    }
    !wire.is_empty()
}

fn handshake(configs: &Configs) {
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = Connection::Client(ClientConnection::new(configs.client.clone(), name).unwrap());
    let mut server = Connection::Server(ServerConnection::new(configs.server.clone()).unwrap());
    let mut wire = Vec::with_capacity(8192);
    loop {
        let c2s = flow(&mut client, &mut server, &mut wire);
        let s2c = flow(&mut server, &mut client, &mut wire);
        if !c2s && !s2c {
            break;
        }
    }
    assert!(!client.is_handshaking() && !server.is_handshaking());
}

fn handshakes(c: &mut Criterion) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    let ring_only = |groups: &[&'static dyn SupportedKxGroup]| CryptoProvider {
        kx_groups: groups.to_vec(),
        cipher_suites: vec![ring::cipher_suite::TLS13_AES_128_GCM_SHA256],
        ..ring::default_provider()
    };
    let aws_lc_only = |groups: &[&'static dyn SupportedKxGroup]| CryptoProvider {
        kx_groups: groups.to_vec(),
        cipher_suites: vec![aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256],
        ..aws_lc_rs::default_provider()
    };
    let cases = [
        ("ring X25519", configs(ring_only(&[ring::kx_group::X25519]), &cert, &key)),
        ("ring + postern X25519MLKEM768", configs(ring_only(&[X25519MLKEM768]), &cert, &key)),
        ("aws-lc-rs X25519", configs(aws_lc_only(&[aws_lc_rs::kx_group::X25519]), &cert, &key)),
        (
            "aws-lc-rs X25519MLKEM768",
            configs(aws_lc_only(&[aws_lc_rs::kx_group::X25519MLKEM768]), &cert, &key),
        ),
    ];
    let mut g = c.benchmark_group("tls_pq_handshake");
    for (name, configs) in &cases {
        g.bench_function(*name, |b| b.iter(|| handshake(configs)));
    }
    g.finish();
}

criterion_group!(benches, kx, handshakes);
criterion_main!(benches);
