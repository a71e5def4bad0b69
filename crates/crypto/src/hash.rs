use std::fmt;
use std::io;

use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};
use sm3::Sm3;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{CryptoError, Result, Suite, random_bytes};

/// Output length of both SHA-256 and SM3 (and of their HMACs).
pub const HASH_LEN: usize = 32;

/// A SHA-256 or SM3 digest (or HMAC tag) tagged with its suite. Displays as lowercase hex.
///
/// Equality is constant-time, so a `HashValue` holding a MAC may be compared with `==`.
#[derive(Clone, Copy)]
pub struct HashValue {
    suite: Suite,
    bytes: [u8; HASH_LEN],
}

impl HashValue {
    pub fn new(suite: Suite, bytes: [u8; HASH_LEN]) -> Self {
        Self { suite, bytes }
    }

    pub fn from_slice(suite: Suite, bytes: &[u8]) -> Result<Self> {
        let bytes = <[u8; HASH_LEN]>::try_from(bytes).map_err(|_| {
            CryptoError::Malformed(format!(
                "a {} value is {HASH_LEN} bytes, got {}",
                suite.hash_name(),
                bytes.len()
            ))
        })?;
        Ok(Self { suite, bytes })
    }

    pub fn from_hex(suite: Suite, hex_str: &str) -> Result<Self> {
        let bytes = hex::decode(hex_str.trim())
            .map_err(|e| CryptoError::Malformed(format!("hash value is not hex: {e}")))?;
        Self::from_slice(suite, &bytes)
    }

    pub fn suite(&self) -> Suite {
        self.suite
    }

    pub fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.bytes
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }
}

impl PartialEq for HashValue {
    fn eq(&self, other: &Self) -> bool {
        self.suite == other.suite && bool::from(self.bytes.ct_eq(&other.bytes))
    }
}

impl Eq for HashValue {}

impl AsRef<[u8]> for HashValue {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Display for HashValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for HashValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HashValue({}:{})", self.suite, self.to_hex())
    }
}

/// One-shot hash: SHA-256 (`intl`) or SM3 (`gm`).
pub fn hash(suite: Suite, data: &[u8]) -> HashValue {
    let mut h = Hasher::new(suite);
    h.update(data);
    h.finalize()
}

/// Hash everything a reader yields, in constant memory.
pub fn hash_reader(suite: Suite, mut reader: impl io::Read) -> Result<HashValue> {
    let mut h = Hasher::new(suite);
    io::copy(&mut reader, &mut h)?;
    Ok(h.finalize())
}

#[derive(Clone)]
enum HasherInner {
    Sha256(Sha256),
    Sm3(Sm3),
}

/// Incremental hasher. Also implements [`io::Write`], so `io::copy(reader, &mut hasher)` streams.
#[derive(Clone)]
pub struct Hasher {
    suite: Suite,
    inner: HasherInner,
}

impl Hasher {
    pub fn new(suite: Suite) -> Self {
        let inner = match suite {
            Suite::Intl => HasherInner::Sha256(Sha256::new()),
            Suite::Gm => HasherInner::Sm3(Sm3::new()),
        };
        Self { suite, inner }
    }

    pub fn suite(&self) -> Suite {
        self.suite
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.inner {
            HasherInner::Sha256(h) => h.update(data),
            HasherInner::Sm3(h) => h.update(data),
        }
    }

    pub fn finalize(self) -> HashValue {
        let bytes: [u8; HASH_LEN] = match self.inner {
            HasherInner::Sha256(h) => h.finalize().into(),
            HasherInner::Sm3(h) => h.finalize().into(),
        };
        HashValue::new(self.suite, bytes)
    }
}

impl io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hasher({})", self.suite.hash_name())
    }
}

/// Key for the keyed hash (HMAC-SHA-256 / HMAC-SM3), e.g. the per-tenant pseudonymisation key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MacKey {
    #[zeroize(skip)]
    suite: Suite,
    bytes: Vec<u8>,
}

impl MacKey {
    /// Length of generated keys (the hash output length, as RFC 2104 recommends).
    pub const GENERATED_LEN: usize = HASH_LEN;

    pub fn generate(suite: Suite) -> Result<Self> {
        let bytes = random_bytes(Self::GENERATED_LEN)?;
        Ok(Self {
            suite,
            bytes: bytes.to_vec(),
        })
    }

    /// Any non-empty key is accepted (test vectors use short ones); generate keys for real use.
    pub fn from_bytes(suite: Suite, bytes: &[u8]) -> Result<Self> {
        if bytes.is_empty() {
            return Err(CryptoError::InvalidKey("empty MAC key".into()));
        }
        Ok(Self {
            suite,
            bytes: bytes.to_vec(),
        })
    }

    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The raw key, e.g. to store it wrapped. Keep the borrow short.
    pub fn expose_secret(&self) -> &[u8] {
        &self.bytes
    }

    /// One-shot keyed hash of `data`.
    pub fn mac(&self, data: &[u8]) -> HashValue {
        let mut h = KeyedHasher::new(self);
        h.update(data);
        h.finalize()
    }

    /// Constant-time check of a keyed hash.
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> Result<()> {
        let expected = self.mac(data);
        if tag.len() == HASH_LEN && bool::from(expected.as_bytes().ct_eq(tag)) {
            Ok(())
        } else {
            Err(CryptoError::AuthenticationFailed)
        }
    }
}

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacKey({}, {} bytes, ..)", self.suite, self.bytes.len())
    }
}

// Hmac (not SimpleHmac): it caches the ipad/opad states, which matters for short pseudonym inputs.
#[derive(Clone)]
enum KeyedInner {
    Sha256(Hmac<Sha256>),
    Sm3(Hmac<Sm3>),
}

/// Incremental HMAC-SHA-256 / HMAC-SM3.
#[derive(Clone)]
pub struct KeyedHasher {
    suite: Suite,
    inner: KeyedInner,
}

impl KeyedHasher {
    pub fn new(key: &MacKey) -> Self {
        Self::with_raw_key(key.suite, &key.bytes)
    }

    pub(crate) fn with_raw_key(suite: Suite, key: &[u8]) -> Self {
        // HMAC accepts keys of any length, so these constructors cannot fail; the fallback
        // (an empty-key HMAC) is unreachable but keeps us free of panics.
        let inner = match suite {
            Suite::Intl => KeyedInner::Sha256(
                Hmac::<Sha256>::new_from_slice(key)
                    .unwrap_or_else(|_| Hmac::<Sha256>::new(&Default::default())),
            ),
            Suite::Gm => KeyedInner::Sm3(
                Hmac::<Sm3>::new_from_slice(key)
                    .unwrap_or_else(|_| Hmac::<Sm3>::new(&Default::default())),
            ),
        };
        Self { suite, inner }
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.inner {
            KeyedInner::Sha256(h) => h.update(data),
            KeyedInner::Sm3(h) => h.update(data),
        }
    }

    pub fn finalize(self) -> HashValue {
        let mut bytes: [u8; HASH_LEN] = match self.inner {
            KeyedInner::Sha256(h) => h.finalize().into_bytes().into(),
            KeyedInner::Sm3(h) => h.finalize().into_bytes().into(),
        };
        let out = HashValue::new(self.suite, bytes);
        bytes.zeroize();
        out
    }

    /// Finalize into a zeroizing buffer (for derived keys).
    pub(crate) fn finalize_secret(self) -> Zeroizing<[u8; HASH_LEN]> {
        let v = self.finalize();
        Zeroizing::new(*v.as_bytes())
    }
}

impl io::Write for KeyedHasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for KeyedHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyedHasher(HMAC-{}, ..)", self.suite.hash_name())
    }
}
