//! The crate-level error type.

/// Any error postern returns: a wrapper over each module's own error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Misuse of the SMTP session API.
    #[cfg(feature = "smtp")]
    #[error(transparent)]
    Smtp(#[from] crate::smtp::Error),
}
