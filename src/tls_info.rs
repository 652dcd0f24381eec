//! What a protocol session is told about an established TLS connection.

/// The facts about a TLS connection that a session records and reports: given to
/// [`smtp::Session::tls_established`](crate::smtp::Session::tls_established) after a
/// STARTTLS handshake, or at construction for implicit TLS (RFC 8314).
///
/// The application fills it from its TLS library (for rustls: `protocol_version()`,
/// `negotiated_cipher_suite()`, `server_name()` and the peer certificates).
///
/// ```
/// use postern::TlsInfo;
///
/// let info = TlsInfo::new("TLSv1.3", "TLS13_AES_256_GCM_SHA384").with_sni("mx.example.test");
/// assert_eq!(info.protocol, "TLSv1.3");
/// assert_eq!(info.to_string(), "TLSv1.3 TLS13_AES_256_GCM_SHA384 sni=mx.example.test");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsInfo {
    /// The protocol version, e.g. `TLSv1.3`.
    pub protocol: String,
    /// The cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: String,
    /// The key-exchange group, e.g. `X25519MLKEM768`, if known.
    pub key_exchange: Option<String>,
    /// The server name the client asked for (SNI).
    pub sni: Option<String>,
    /// The verified client-certificate identity (subject or SAN), for mutual TLS.
    pub peer_identity: Option<String>,
}

impl std::fmt::Display for TlsInfo {
    /// `TLSv1.3 TLS13_AES_256_GCM_SHA384 X25519MLKEM768 sni=mx.example.test peer=...`,
    /// the parts that are known.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.protocol, self.cipher_suite)?;
        if let Some(kx) = &self.key_exchange {
            write!(f, " {kx}")?;
        }
        if let Some(sni) = &self.sni {
            write!(f, " sni={sni}")?;
        }
        if let Some(peer) = &self.peer_identity {
            write!(f, " peer={peer}")?;
        }
        Ok(())
    }
}

impl TlsInfo {
    /// Creates the record for a protocol version and cipher suite.
    #[must_use]
    pub fn new(protocol: impl Into<String>, cipher_suite: impl Into<String>) -> Self {
        Self { protocol: protocol.into(), cipher_suite: cipher_suite.into(), ..Self::default() }
    }

    /// Sets the key-exchange group.
    #[must_use]
    pub fn with_key_exchange(mut self, group: impl Into<String>) -> Self {
        self.key_exchange = Some(group.into());
        self
    }

    /// Sets the SNI name.
    #[must_use]
    pub fn with_sni(mut self, sni: impl Into<String>) -> Self {
        self.sni = Some(sni.into());
        self
    }

    /// Sets the verified client identity.
    #[must_use]
    pub fn with_peer_identity(mut self, identity: impl Into<String>) -> Self {
        self.peer_identity = Some(identity.into());
        self
    }
}
