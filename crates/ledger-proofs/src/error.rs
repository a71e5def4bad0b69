use caretrail_crypto::{CryptoError, HashValue, Suite};

/// Every failure of this crate. Messages are one line and contain no key material.
///
/// A Merkle proof cannot tell *which* of its inputs was altered: a changed sibling, leaf hash,
/// leaf index or tree size all surface as [`ProofError::RootMismatch`] (or
/// [`ProofError::WrongProofLength`] when the claimed index/size imply another proof shape).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {first} is larger than tree size {second}: a log never shrinks")]
    SizeRegression { first: u64, second: u64 },
    #[error(
        "wrong proof length: expected {expected} hashes for this index and tree size, got {got}"
    )]
    WrongProofLength { expected: usize, got: usize },
    #[error("root mismatch: the proof yields {computed}, expected {expected}")]
    RootMismatch {
        expected: HashValue,
        computed: HashValue,
    },
    #[error("old root mismatch: the consistency proof yields {computed}, expected {expected}")]
    OldRootMismatch {
        expected: HashValue,
        computed: HashValue,
    },
    #[error("hash suite mismatch: expected {expected}, found {found}")]
    SuiteMismatch { expected: Suite, found: Suite },
    #[error("tree node (level {level}, index {index}) is not available")]
    NodeUnavailable { level: u8, index: u64 },
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    #[error("unsupported key or signature type: {0}")]
    UnsupportedKeyType(String),
    #[error("signature by {name}+{key_id:08x} does not verify")]
    SignatureInvalid { name: String, key_id: u32 },
    #[error("more than one known key is named {name}+{key_id:08x}")]
    AmbiguousKey { name: String, key_id: u32 },
    #[error("no signature by a trusted key: {0}")]
    NoTrustedSignature(String),
    #[error("origin mismatch: expected {expected:?}, found {found:?}")]
    OriginMismatch { expected: String, found: String },
    #[error("index mismatch: {0}")]
    IndexMismatch(String),
    #[error("tree size mismatch: {0}")]
    SizeMismatch(String),
    #[error("too few cosignatures: {found} valid, {required} required")]
    CosignatureQuorum { found: usize, required: usize },
    #[error("JSON value cannot be canonicalized: {0}")]
    NonCanonicalJson(String),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

impl ProofError {
    pub(crate) fn malformed(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Malformed {
            what,
            reason: reason.into(),
        }
    }

    /// True when the input was well-formed but failed a cryptographic check (CLI exit code 1).
    pub fn is_verification_failure(&self) -> bool {
        match self {
            Self::IndexOutOfRange { .. }
            | Self::SizeRegression { .. }
            | Self::WrongProofLength { .. }
            | Self::RootMismatch { .. }
            | Self::OldRootMismatch { .. }
            | Self::SuiteMismatch { .. }
            | Self::SignatureInvalid { .. }
            | Self::NoTrustedSignature(_)
            | Self::OriginMismatch { .. }
            | Self::IndexMismatch(_)
            | Self::SizeMismatch(_)
            | Self::CosignatureQuorum { .. } => true,
            Self::Crypto(e) => e.is_verification_failure(),
            _ => false,
        }
    }
}

pub type Result<T, E = ProofError> = std::result::Result<T, E>;
