use std::fmt;

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, AesGcm, Key, Nonce, Tag};
use sm4::Sm4;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{CryptoError, Result, Suite, random_array, random_bytes};

/// GCM nonce length for both suites (96 bits, the only length RFC 8998 and SP 800-38D recommend).
pub const NONCE_LEN: usize = 12;
/// GCM tag length for both suites.
pub const TAG_LEN: usize = 16;

/// SM4-GCM as specified in RFC 8998: the generic GCM mode over the SM4 block cipher.
pub(crate) type Sm4Gcm = AesGcm<Sm4, U12>;

/// AEAD key bytes; the variant fixes the length, so building a cipher from it cannot fail.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) enum KeyMaterial {
    Intl([u8; 32]),
    Gm([u8; 16]),
}

impl KeyMaterial {
    pub(crate) fn from_slice(suite: Suite, bytes: &[u8]) -> Result<Self> {
        let wrong = || {
            CryptoError::InvalidKey(format!(
                "{} needs a {}-byte key, got {} bytes",
                suite.aead_name(),
                suite.aead_key_len(),
                bytes.len()
            ))
        };
        Ok(match suite {
            Suite::Intl => Self::Intl(bytes.try_into().map_err(|_| wrong())?),
            Suite::Gm => Self::Gm(bytes.try_into().map_err(|_| wrong())?),
        })
    }

    pub(crate) fn suite(&self) -> Suite {
        match self {
            Self::Intl(_) => Suite::Intl,
            Self::Gm(_) => Suite::Gm,
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Self::Intl(b) => b,
            Self::Gm(b) => b,
        }
    }
}

macro_rules! aead_key_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            key: KeyMaterial,
        }

        impl $name {
            /// A fresh random key of the suite's AEAD key length (32 bytes intl, 16 bytes gm).
            pub fn generate(suite: Suite) -> Result<Self> {
                let bytes = random_bytes(suite.aead_key_len())?;
                Self::from_bytes(suite, &bytes)
            }

            pub fn from_bytes(suite: Suite, bytes: &[u8]) -> Result<Self> {
                Ok(Self { key: KeyMaterial::from_slice(suite, bytes)? })
            }

            pub fn from_hex(suite: Suite, hex_str: &str) -> Result<Self> {
                let bytes = zeroize::Zeroizing::new(
                    hex::decode(hex_str.trim())
                        .map_err(|_| CryptoError::InvalidKey("key is not valid hex".into()))?,
                );
                Self::from_bytes(suite, &bytes)
            }

            pub fn suite(&self) -> Suite {
                self.key.suite()
            }

            /// The raw key bytes. Keep the borrow short; never log them.
            pub fn expose_secret(&self) -> &[u8] {
                self.key.as_slice()
            }

            pub(crate) fn material(&self) -> &KeyMaterial {
                &self.key
            }

            #[allow(dead_code)]
            pub(crate) fn from_material(key: KeyMaterial) -> Self {
                Self { key }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}, {} bytes, ..)", stringify!($name), self.suite(), self.suite().aead_key_len())
            }
        }
    };
}

aead_key_type!(
    /// Symmetric key that encrypts records (AES-256 for `intl`, SM4 for `gm`). Zeroized on drop.
    DataKey
);

aead_key_type!(
    /// Key-encryption key: wraps [`DataKey`]s, see [`crate::wrap`]. Zeroized on drop.
    Kek
);

enum AeadInner {
    Aes(Box<Aes256Gcm>),
    Sm4(Box<Sm4Gcm>),
}

/// AES-256-GCM or SM4-GCM with the key schedule computed once. The caller supplies nonces:
/// a nonce must never repeat under one key. Prefer [`seal`]/[`open`] (random nonces) or the
/// [`crate::stream`] module (derived nonces) unless you are implementing a format.
pub struct Aead {
    suite: Suite,
    inner: AeadInner,
}

impl Aead {
    pub fn new(key: &DataKey) -> Self {
        Self::from_material(key.material())
    }

    pub(crate) fn from_material(key: &KeyMaterial) -> Self {
        match key {
            KeyMaterial::Intl(k) => Self {
                suite: Suite::Intl,
                inner: AeadInner::Aes(Box::new(Aes256Gcm::new(<&Key<Aes256Gcm>>::from(k)))),
            },
            KeyMaterial::Gm(k) => Self {
                suite: Suite::Gm,
                inner: AeadInner::Sm4(Box::new(Sm4Gcm::new(<&Key<Sm4Gcm>>::from(k)))),
            },
        }
    }

    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Encrypt `buf` in place and return the tag.
    pub fn encrypt_in_place_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN]> {
        let nonce = <&Nonce<U12>>::from(nonce);
        let tag = match &self.inner {
            AeadInner::Aes(c) => c.encrypt_in_place_detached(nonce, aad, buf),
            AeadInner::Sm4(c) => c.encrypt_in_place_detached(nonce, aad, buf),
        }
        .map_err(|_| CryptoError::LimitExceeded("message too long for GCM".into()))?;
        Ok(tag.into())
    }

    /// Check the tag, then decrypt `buf` in place. On failure `buf` still holds the ciphertext.
    pub fn decrypt_in_place_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<()> {
        let nonce = <&Nonce<U12>>::from(nonce);
        let tag = <&Tag>::from(tag);
        match &self.inner {
            AeadInner::Aes(c) => c.decrypt_in_place_detached(nonce, aad, buf, tag),
            AeadInner::Sm4(c) => c.decrypt_in_place_detached(nonce, aad, buf, tag),
        }
        .map_err(|_| CryptoError::AuthenticationFailed)
    }

    /// Returns `ciphertext || tag`.
    pub fn encrypt(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN);
        out.extend_from_slice(plaintext);
        let tag = self.encrypt_in_place_detached(nonce, aad, &mut out)?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Takes `ciphertext || tag`.
    pub fn decrypt(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        let ct_len = sealed
            .len()
            .checked_sub(TAG_LEN)
            .ok_or_else(|| CryptoError::Truncated("ciphertext shorter than the tag".into()))?;
        let (ct, tag) = sealed.split_at(ct_len);
        let tag: [u8; TAG_LEN] = tag
            .try_into()
            .map_err(|_| CryptoError::Malformed("tag length".into()))?;
        let mut out = ct.to_vec();
        self.decrypt_in_place_detached(nonce, aad, &mut out, &tag)?;
        Ok(out)
    }
}

impl fmt::Debug for Aead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Aead({}, ..)", self.suite.aead_name())
    }
}

/// One-shot AEAD with a fresh random nonce. Output: `nonce (12) || ciphertext || tag (16)`.
pub fn seal(key: &DataKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let nonce: [u8; NONCE_LEN] = random_array()?;
    let aead = Aead::new(key);
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = aead.encrypt_in_place_detached(&nonce, aad, &mut out[NONCE_LEN..])?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Inverse of [`seal`].
pub fn open(key: &DataKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Truncated(format!(
            "sealed value is {} bytes, at least {} expected",
            sealed.len(),
            NONCE_LEN + TAG_LEN
        )));
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| CryptoError::Malformed("nonce length".into()))?;
    Aead::new(key).decrypt(&nonce, aad, rest)
}
