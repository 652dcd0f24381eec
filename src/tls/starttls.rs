//! STARTTLS / STLS glue: a sans-IO TLS channel that sits between the socket and a
//! protocol session, for implicit TLS from the first byte and for upgrades mid-session.
//!
//! The upgrade rule the sessions enforce is that nothing received in plaintext after
//! STARTTLS/STLS is ever executed; this channel adds the other half: no plaintext reaches
//! the session before the handshake has completed (0-RTT early data is never enabled),
//! and the session is told exactly once what was negotiated.
//!
//! ```text
//!  socket ──ciphertext──► TlsChannel::receive ──plaintext──► session.receive
//!  socket ◄─ciphertext── TlsChannel::poll_transmit ◄── TlsChannel::send ◄── session.poll_transmit
//!                         TlsChannel::poll_established ──TlsInfo──► session.tls_established
//! ```

use std::io::{self, Read as _, Write as _};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use crate::TlsInfo;

/// Why the TLS channel failed. The connection should be closed (after writing out
/// [`TlsChannel::poll_transmit`], which may hold an alert for the peer).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The TLS protocol failed (bad handshake, bad certificate, decryption error, ...).
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// rustls refused more input or output (it should not happen: the channel drains
    /// rustls's buffers as it goes).
    #[error("TLS buffering: {0}")]
    Buffer(#[source] io::Error),
}

/// A rustls connection driven without I/O: ciphertext in and out as byte slices,
/// plaintext in and out as byte slices.
///
/// ```
/// # use std::sync::Arc;
/// use postern::tls::TlsChannel;
/// # fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
/// #     let cert = rcgen::generate_simple_self_signed(vec!["mx.example.test".into()]).unwrap();
/// #     let der = cert.cert.der().clone();
/// #     let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
/// #     let provider = Arc::new(rustls::crypto::ring::default_provider());
/// #     let server = rustls::ServerConfig::builder_with_provider(provider.clone())
/// #         .with_protocol_versions(&[&rustls::version::TLS13]).unwrap()
/// #         .with_no_client_auth().with_single_cert(vec![der.clone()], key).unwrap();
/// #     let mut roots = rustls::RootCertStore::empty();
/// #     roots.add(der).unwrap();
/// #     let client = rustls::ClientConfig::builder_with_provider(provider)
/// #         .with_protocol_versions(&[&rustls::version::TLS13]).unwrap()
/// #         .with_root_certificates(roots).with_no_client_auth();
/// #     (Arc::new(server), Arc::new(client))
/// # }
/// let (server_config, client_config) = configs();
/// let mut server = TlsChannel::server(server_config).unwrap();
/// let mut client = TlsChannel::client(client_config, "mx.example.test").unwrap();
///
/// // Shuttle ciphertext until both sides are done with the handshake.
/// let (mut to_server, mut to_client, mut plaintext) = (Vec::new(), Vec::new(), Vec::new());
/// for _ in 0..4 {
///     client.poll_transmit(&mut to_server);
///     server.receive(&to_server, &mut plaintext).unwrap();
///     to_server.clear();
///     server.poll_transmit(&mut to_client);
///     client.receive(&to_client, &mut plaintext).unwrap();
///     to_client.clear();
/// }
/// let info = server.poll_established().expect("handshake done");
/// assert_eq!(info.protocol, "TLSv1.3");
/// assert_eq!(info.sni.as_deref(), Some("mx.example.test"));
/// assert!(server.poll_established().is_none()); // reported once
///
/// // Application data, both ways.
/// client.send(b"EHLO client.example.org\r\n").unwrap();
/// client.poll_transmit(&mut to_server);
/// server.receive(&to_server, &mut plaintext).unwrap();
/// assert_eq!(plaintext, b"EHLO client.example.org\r\n");
/// ```
#[derive(Debug)]
pub struct TlsChannel {
    conn: Connection,
    reported: bool,
    /// The configuration required the extended master secret (TLS 1.2).
    ems_required: bool,
}

impl TlsChannel {
    /// A server side, for implicit TLS or right after the `220`/`+OK` answering
    /// STARTTLS/STLS has been written out.
    pub fn server(config: Arc<ServerConfig>) -> Result<Self, ChannelError> {
        let ems_required = config.require_ems;
        let mut channel = Self::wrap(Connection::Server(ServerConnection::new(config)?));
        channel.ems_required = ems_required;
        Ok(channel)
    }

    fn wrap(mut conn: Connection) -> Self {
        // The application decides how much it hands over between two `poll_transmit`
        // calls (a session's output is bounded by its own limits), so rustls must not
        // refuse part of a `send`.
        conn.set_buffer_limit(None);
        Self { conn, reported: false, ems_required: false }
    }

    /// A client side (outbound delivery), connecting to `server_name`.
    pub fn client(config: Arc<ClientConfig>, server_name: &str) -> Result<Self, ChannelError> {
        let name = ServerName::try_from(server_name.to_owned()).map_err(|_| {
            ChannelError::Tls(rustls::Error::General(format!("invalid server name {server_name:?}")))
        })?;
        let ems_required = config.require_ems;
        let mut channel = Self::wrap(Connection::Client(ClientConnection::new(config, name)?));
        channel.ems_required = ems_required;
        Ok(channel)
    }

    /// The rustls connection, for anything this type does not expose.
    #[must_use]
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// `true` until the handshake has completed.
    #[must_use]
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Feeds ciphertext read from the socket and appends the plaintext it carried to
    /// `plaintext` (nothing before the handshake has completed).
    ///
    /// On an error, write out [`poll_transmit`](Self::poll_transmit) (it may hold an
    /// alert) and close the connection.
    pub fn receive(&mut self, ciphertext: &[u8], plaintext: &mut Vec<u8>) -> Result<(), ChannelError> {
        let mut rest = ciphertext;
        while !rest.is_empty() {
            let n = self.conn.read_tls(&mut rest).map_err(ChannelError::Buffer)?;
            self.conn.process_new_packets()?;
            self.drain_plaintext(plaintext)?;
            if n == 0 {
                break;
            }
        }
        Ok(())
    }

    fn drain_plaintext(&mut self, plaintext: &mut Vec<u8>) -> Result<(), ChannelError> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.conn.reader().read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => plaintext.extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // A clean close_notify reads as end of stream: nothing more to hand over.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(ChannelError::Buffer(e)),
            }
        }
    }

    /// Encrypts `plaintext` (the session's output) for sending. Before the handshake has
    /// completed, rustls holds it until it can be sent. Any amount is accepted; the
    /// ciphertext waits in the channel until [`poll_transmit`](Self::poll_transmit).
    pub fn send(&mut self, plaintext: &[u8]) -> Result<(), ChannelError> {
        self.conn.writer().write_all(plaintext).map_err(ChannelError::Buffer)
    }

    /// Appends the ciphertext to write to the socket to `out`.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            match self.conn.write_tls(out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// Once, when the handshake has completed: what was negotiated, for the session's
    /// `tls_established`.
    pub fn poll_established(&mut self) -> Option<TlsInfo> {
        if self.reported || self.conn.is_handshaking() {
            return None;
        }
        self.reported = true;
        Some(tls_info(&self.conn))
    }

    /// The `tls-exporter` channel binding (RFC 9266): 32 octets exported with the label
    /// `EXPORTER-Channel-Binding` and no context, for SCRAM-SHA-256-PLUS
    /// (`sasl::Channel::with_tls_exporter`). `None` before the handshake has completed,
    /// and on TLS 1.2 without the extended master secret (RFC 9266 §3 forbids it there).
    #[must_use]
    pub fn tls_exporter(&self) -> Option<[u8; 32]> {
        if self.conn.is_handshaking() {
            return None;
        }
        if self.conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3)
            && !self.extended_master_secret()
        {
            return None;
        }
        self.conn.export_keying_material([0_u8; 32], b"EXPORTER-Channel-Binding", None).ok()
    }

    /// TLS 1.2: whether the extended master secret is certain. rustls 0.23 does not say
    /// on a live connection, so this is whether the configuration required it (the
    /// `compatible` profile does).
    fn extended_master_secret(&self) -> bool {
        self.ems_required
    }

    /// Starts a clean close (`close_notify`); write out [`poll_transmit`](Self::poll_transmit).
    pub fn close(&mut self) {
        self.conn.send_close_notify();
    }

    /// `true` once the peer has sent `close_notify`.
    #[must_use]
    pub fn peer_closed(&mut self) -> bool {
        matches!(self.conn.process_new_packets(), Ok(state) if state.peer_has_closed())
    }
}

/// What a session is told about a rustls connection: version, suite, key-exchange group,
/// SNI, and the verified client identity ([`PeerIdentity::to_tls_info_string`]: the
/// certificate's subject and its SHA-256 fingerprint).
///
/// [`PeerIdentity::to_tls_info_string`]: super::PeerIdentity::to_tls_info_string
#[must_use]
pub fn tls_info(conn: &Connection) -> TlsInfo {
    let protocol = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_owned(),
    };
    let suite =
        conn.negotiated_cipher_suite().map_or_else(|| "unknown".to_owned(), |s| format!("{:?}", s.suite()));
    let mut info = TlsInfo::new(protocol, suite);
    if let Some(group) = conn.negotiated_key_exchange_group() {
        info = info.with_key_exchange(format!("{:?}", group.name()));
    }
    if let Connection::Server(server) = conn
        && let Some(sni) = server.server_name()
    {
        info = info.with_sni(sni);
    }
    if let Some(cert) = conn.peer_certificates().and_then(|c| c.first())
        && let Ok(identity) = super::PeerIdentity::from_certificate(cert)
    {
        info = identity.apply_to(info);
    }
    info
}
