use crate::Suite;

/// Every failure of this crate. Messages are one line and never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("malformed input: {0}")]
    Malformed(String),
    /// AEAD tag mismatch: wrong key, or ciphertext, tag, nonce, header or associated data altered.
    #[error(
        "authentication failed (wrong key, wrong associated data, or the data was altered or reordered)"
    )]
    AuthenticationFailed,
    #[error("signature verification failed")]
    SignatureInvalid,
    /// A certificate that parses but may not be used as asked (wrong issuer, not a CA, ...).
    #[error("certificate rejected: {0}")]
    CertificateRejected(String),
    #[error("truncated: {0}")]
    Truncated(String),
    #[error("trailing data after the end of the stream")]
    TrailingData,
    #[error("unsupported algorithm or format: {0}")]
    UnsupportedAlgorithm(String),
    #[error("wrong suite: expected {expected}, found {found}")]
    WrongSuite { expected: Suite, found: Suite },
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    #[error("random number generator failure")]
    Rng,
    #[error("I/O error: {message}")]
    Io {
        kind: std::io::ErrorKind,
        message: String,
    },
}

impl CryptoError {
    /// True when the input was well-formed enough to check but failed the check
    /// (bad tag, bad signature, cut or extended stream). CLI exit code 1.
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            Self::AuthenticationFailed
                | Self::SignatureInvalid
                | Self::CertificateRejected(_)
                | Self::Truncated(_)
                | Self::TrailingData
        )
    }

    pub(crate) fn io_at(path: &std::path::Path, err: &std::io::Error) -> Self {
        Self::Io {
            kind: err.kind(),
            message: format!("{}: {err}", path.display()),
        }
    }
}

impl From<std::io::Error> for CryptoError {
    fn from(err: std::io::Error) -> Self {
        // A CryptoError that travelled through an io::Error (our Read/Write adapters) comes back as itself.
        if err.get_ref().is_some_and(|inner| inner.is::<CryptoError>()) {
            if let Some(inner) = err.into_inner()
                && let Ok(inner) = inner.downcast::<CryptoError>()
            {
                return *inner;
            }
            return Self::Malformed("stream error".into());
        }
        Self::Io {
            kind: err.kind(),
            message: err.to_string(),
        }
    }
}

impl From<CryptoError> for std::io::Error {
    fn from(err: CryptoError) -> Self {
        match err {
            CryptoError::Io { kind, message } => std::io::Error::new(kind, message),
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
        }
    }
}

pub type Result<T, E = CryptoError> = std::result::Result<T, E>;
