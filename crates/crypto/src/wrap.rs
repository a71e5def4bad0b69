//! Envelope encryption of data keys under a key-encryption key (KEK).
//!
//! The associated data binds a wrapped key to where it belongs, so a wrapped key copied to
//! another tenant, another object, or presented under another KEK version does not unwrap.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::aead::{Aead, KeyMaterial, NONCE_LEN, TAG_LEN};
use crate::{CryptoError, DataKey, Kek, Result, Suite, random_array};

const MAGIC: &[u8; 4] = b"CTWK";
const FORMAT_VERSION: u8 = 1;
const AAD_LABEL: &[u8] = b"caretrail/wrap/v1";
const HEADER_LEN: usize = MAGIC.len() + 1 + 1 + 4;

/// What a wrapped key is bound to. All three are authenticated; none is secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrapBinding<'a> {
    pub tenant: &'a str,
    /// Version of the KEK (or of the tenant key hierarchy) that wraps the key.
    pub key_version: u32,
    pub object_id: &'a str,
}

impl<'a> WrapBinding<'a> {
    pub fn new(tenant: &'a str, key_version: u32, object_id: &'a str) -> Self {
        Self {
            tenant,
            key_version,
            object_id,
        }
    }

    /// `"caretrail/wrap/v1" ‖ suite ‖ u32be(len tenant) ‖ tenant ‖ u32be(key_version)
    ///  ‖ u32be(len object_id) ‖ object_id` — length-prefixed, so no two bindings collide.
    pub fn associated_data(&self, suite: Suite) -> Result<Vec<u8>> {
        let len32 = |s: &str| {
            u32::try_from(s.len())
                .map_err(|_| CryptoError::LimitExceeded("binding field longer than 4 GiB".into()))
        };
        let mut aad =
            Vec::with_capacity(AAD_LABEL.len() + 13 + self.tenant.len() + self.object_id.len());
        aad.extend_from_slice(AAD_LABEL);
        aad.push(suite.id());
        aad.extend_from_slice(&len32(self.tenant)?.to_be_bytes());
        aad.extend_from_slice(self.tenant.as_bytes());
        aad.extend_from_slice(&self.key_version.to_be_bytes());
        aad.extend_from_slice(&len32(self.object_id)?.to_be_bytes());
        aad.extend_from_slice(self.object_id.as_bytes());
        Ok(aad)
    }
}

/// A data key encrypted under a KEK.
///
/// Bytes: `"CTWK" ‖ version (1) ‖ suite id (1) ‖ u32be key_version ‖ nonce (12) ‖
/// encrypted key (32 intl / 16 gm) ‖ tag (16)`. The header is authenticated too: it is
/// implied by the associated data.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    bytes: Vec<u8>,
}

impl WrappedKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
            return Err(CryptoError::Malformed("not a wrapped key".into()));
        }
        if bytes[4] != FORMAT_VERSION {
            return Err(CryptoError::UnsupportedAlgorithm(format!(
                "wrapped key format version {}",
                bytes[4]
            )));
        }
        let suite = Suite::from_id(bytes[5])?;
        let expected = HEADER_LEN + NONCE_LEN + suite.aead_key_len() + TAG_LEN;
        if bytes.len() != expected {
            return Err(CryptoError::Malformed(format!(
                "wrapped {suite} key is {expected} bytes, got {}",
                bytes.len()
            )));
        }
        Ok(Self {
            bytes: bytes.to_vec(),
        })
    }

    pub fn from_base64(text: &str) -> Result<Self> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|e| CryptoError::Malformed(format!("wrapped key is not base64: {e}")))?;
        Self::from_bytes(&bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn to_base64(&self) -> String {
        B64.encode(&self.bytes)
    }

    pub fn suite(&self) -> Suite {
        // Checked in every constructor.
        Suite::from_id(self.bytes[5]).unwrap_or(Suite::Intl)
    }

    /// The key version recorded at wrap time, to pick the KEK for [`unwrap_key`].
    pub fn key_version(&self) -> u32 {
        u32::from_be_bytes([self.bytes[6], self.bytes[7], self.bytes[8], self.bytes[9]])
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WrappedKey({}, v{}, {} bytes)",
            self.suite(),
            self.key_version(),
            self.bytes.len()
        )
    }
}

/// Encrypt `key` under `kek` (same suite) with the binding as associated data.
pub fn wrap_key(kek: &Kek, key: &DataKey, binding: &WrapBinding<'_>) -> Result<WrappedKey> {
    let suite = kek.suite();
    if key.suite() != suite {
        return Err(CryptoError::WrongSuite {
            expected: suite,
            found: key.suite(),
        });
    }
    let aad = binding.associated_data(suite)?;
    let nonce: [u8; NONCE_LEN] = random_array()?;
    let mut bytes = Vec::with_capacity(HEADER_LEN + NONCE_LEN + suite.aead_key_len() + TAG_LEN);
    bytes.extend_from_slice(MAGIC);
    bytes.push(FORMAT_VERSION);
    bytes.push(suite.id());
    bytes.extend_from_slice(&binding.key_version.to_be_bytes());
    bytes.extend_from_slice(&nonce);
    let start = bytes.len();
    bytes.extend_from_slice(key.expose_secret());
    let tag = Aead::from_material(kek.material()).encrypt_in_place_detached(
        &nonce,
        &aad,
        &mut bytes[start..],
    )?;
    bytes.extend_from_slice(&tag);
    Ok(WrappedKey { bytes })
}

/// Inverse of [`wrap_key`]. Any difference in KEK, binding or bytes gives
/// [`CryptoError::AuthenticationFailed`].
pub fn unwrap_key(kek: &Kek, wrapped: &WrappedKey, binding: &WrapBinding<'_>) -> Result<DataKey> {
    let suite = kek.suite();
    if wrapped.suite() != suite {
        return Err(CryptoError::WrongSuite {
            expected: suite,
            found: wrapped.suite(),
        });
    }
    if wrapped.key_version() != binding.key_version {
        return Err(CryptoError::AuthenticationFailed);
    }
    let aad = binding.associated_data(suite)?;
    let body = &wrapped.bytes[HEADER_LEN..];
    let (nonce, rest) = body.split_at(NONCE_LEN);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    let nonce: [u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| CryptoError::Malformed("nonce".into()))?;
    let tag: [u8; TAG_LEN] = tag
        .try_into()
        .map_err(|_| CryptoError::Malformed("tag".into()))?;
    let mut key = zeroize::Zeroizing::new(ct.to_vec());
    Aead::from_material(kek.material()).decrypt_in_place_detached(&nonce, &aad, &mut key, &tag)?;
    Ok(DataKey::from_material(KeyMaterial::from_slice(
        suite, &key,
    )?))
}

impl Kek {
    pub fn wrap(&self, key: &DataKey, binding: &WrapBinding<'_>) -> Result<WrappedKey> {
        wrap_key(self, key, binding)
    }

    pub fn unwrap(&self, wrapped: &WrappedKey, binding: &WrapBinding<'_>) -> Result<DataKey> {
        unwrap_key(self, wrapped, binding)
    }
}
