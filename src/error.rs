//! The crate-level error type.

/// Any error postern returns: a wrapper over each module's own error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Misuse of the SMTP session API.
    #[cfg(feature = "smtp")]
    #[error(transparent)]
    Smtp(#[from] crate::smtp::Error),
    /// Misuse of the POP3 session API.
    #[cfg(feature = "pop3")]
    #[error(transparent)]
    Pop3(#[from] crate::pop3::Error),
    /// An invalid rate-limit configuration.
    #[cfg(feature = "limit")]
    #[error(transparent)]
    Limit(#[from] crate::limit::LimitError),
    /// A TLS policy, certificate or key problem.
    #[cfg(feature = "tls")]
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A TLS connection failed.
    #[cfg(feature = "tls")]
    #[error(transparent)]
    TlsChannel(#[from] crate::tls::ChannelError),
    /// A SASL misuse or a malformed stored secret.
    #[cfg(feature = "sasl")]
    #[error(transparent)]
    Sasl(#[from] crate::sasl::SaslError),
    /// An invalid one-time-password parameter or secret.
    #[cfg(feature = "otp")]
    #[error(transparent)]
    Otp(#[from] crate::otp::OtpError),
    /// Misuse of the audit API or an unreadable audit record.
    #[cfg(feature = "audit")]
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// A hybrid KEM, sealing or key-ring failure.
    #[cfg(feature = "hybrid")]
    #[error(transparent)]
    Hybrid(#[from] crate::hybrid::HybridError),
    /// Misuse of the message-authentication API or a bad DKIM key.
    #[cfg(feature = "msgauth")]
    #[error(transparent)]
    MsgAuth(#[from] crate::msgauth::MsgAuthError),
}
