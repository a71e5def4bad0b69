use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{CryptoError, SignatureAlgorithm};

/// The algorithm family a tenant picks once, at creation.
///
/// | suite  | hash    | keyed hash  | AEAD        | signature |
/// |--------|---------|-------------|-------------|-----------|
/// | `intl` | SHA-256 | HMAC-SHA256 | AES-256-GCM | Ed25519 (ECDSA P-256 also available) |
/// | `gm`   | SM3     | HMAC-SM3    | SM4-GCM     | SM2 (GB/T 32918, GM/T 0009 DER) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    Intl,
    Gm,
}

impl Suite {
    pub const ALL: [Suite; 2] = [Suite::Intl, Suite::Gm];

    pub const fn as_str(self) -> &'static str {
        match self {
            Suite::Intl => "intl",
            Suite::Gm => "gm",
        }
    }

    /// Byte used for this suite in our binary formats (stream header, wrapped keys, AAD).
    pub const fn id(self) -> u8 {
        match self {
            Suite::Intl => 1,
            Suite::Gm => 2,
        }
    }

    pub fn from_id(id: u8) -> Result<Self, CryptoError> {
        match id {
            1 => Ok(Suite::Intl),
            2 => Ok(Suite::Gm),
            other => Err(CryptoError::UnsupportedAlgorithm(format!(
                "suite id {other}"
            ))),
        }
    }

    /// AEAD key length in bytes: 32 for AES-256, 16 for SM4.
    pub const fn aead_key_len(self) -> usize {
        match self {
            Suite::Intl => 32,
            Suite::Gm => 16,
        }
    }

    pub const fn hash_name(self) -> &'static str {
        match self {
            Suite::Intl => "SHA-256",
            Suite::Gm => "SM3",
        }
    }

    pub const fn aead_name(self) -> &'static str {
        match self {
            Suite::Intl => "AES-256-GCM",
            Suite::Gm => "SM4-GCM",
        }
    }

    /// The signature scheme keys of this suite are generated with by default.
    pub const fn signature_algorithm(self) -> SignatureAlgorithm {
        match self {
            Suite::Intl => SignatureAlgorithm::Ed25519,
            Suite::Gm => SignatureAlgorithm::Sm2,
        }
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Suite {
    type Err = CryptoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "intl" => Ok(Suite::Intl),
            "gm" => Ok(Suite::Gm),
            _ => Err(CryptoError::UnsupportedAlgorithm(format!(
                "unknown suite {s:?} (expected \"intl\" or \"gm\")"
            ))),
        }
    }
}
