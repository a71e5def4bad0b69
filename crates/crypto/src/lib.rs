//! Every cipher, hash and signature scheme Caretrail uses, behind one API per [`Suite`]:
//! `intl` (SHA-256, HMAC-SHA-256, AES-256-GCM, Ed25519 / ECDSA P-256) and `gm`
//! (SM3, HMAC-SM3, SM4-GCM per RFC 8998, SM2 per GB/T 32918 with GM/T 0009 DER signatures).
//! No other crate should depend on a primitive directly.
//!
//! # Streaming AEAD format, version 1
//!
//! ```text
//! header (35 bytes)
//!   0..4    magic "CTAE"
//!   4       format version = 1
//!   5       suite id: 1 = intl (AES-256-GCM), 2 = gm (SM4-GCM)
//!   6..8    reserved, zero
//!   8..12   chunk size C, u32 big-endian (default 65536; 16 ..= 16 MiB accepted)
//!   12..28  salt, 16 random bytes
//!   28..35  nonce prefix, 7 random bytes
//! then chunks i = 0, 1, ..., each
//!   u32be ciphertext length L ‖ ciphertext (L bytes) ‖ tag (16 bytes)
//! ```
//!
//! Every chunk but the last holds exactly `C` plaintext bytes; the last holds `0 ..= C-1` (an
//! empty final chunk follows a stream whose length is a multiple of `C`), so `L < C` marks the
//! final chunk and nothing may follow it.
//!
//! * chunk key = first key-length bytes of HMAC-H(data key, `"caretrail/stream/v1/key"` ‖
//!   header[0..28]) with H = SHA-256 / SM3: a fresh key per stream, bound to the header;
//! * chunk nonce = prefix (7) ‖ u32be counter i (4) ‖ last-chunk flag (1: `0x01` final,
//!   `0x00` otherwise) — STREAM (Hoang, Reyhanitabar, Rogaway, Vizár, CRYPTO 2015);
//! * chunk associated data = header (35 bytes) ‖ caller's associated data.
//!
//! Reordered, duplicated or dropped chunks fail authentication (the counter is in the nonce); a
//! stream cut after a chunk boundary is [`CryptoError::Truncated`] (no final chunk); bytes after
//! the final chunk are [`CryptoError::TrailingData`]. Decryptors buffer at most one chunk and
//! release a chunk's plaintext only after its tag has verified.
//!
//! # Key wrapping
//!
//! [`wrap::wrap_key`] encrypts a [`DataKey`] under a [`Kek`] of the same suite with a random
//! nonce and associated data
//! `"caretrail/wrap/v1" ‖ suite id ‖ u32be len(tenant) ‖ tenant ‖ u32be key_version ‖
//! u32be len(object_id) ‖ object_id`; see [`WrappedKey`] for the byte layout.

mod aead;
mod error;
mod hash;
mod sign;
mod sm2impl;
pub mod stream;
mod suite;
pub mod tools;
pub mod wrap;
pub mod x509;

pub use aead::{Aead, DataKey, Kek, NONCE_LEN, TAG_LEN, open, seal};
pub use error::{CryptoError, Result};
pub use hash::{HASH_LEN, HashValue, Hasher, KeyedHasher, MacKey, hash, hash_reader};
pub use sign::{
    KeyId, ParsedKey, SM2_DEFAULT_DISTID, Signature, SignatureAlgorithm, SigningKey, VerifyingKey,
    parse_pem,
};
pub use stream::{
    DecryptingReader, EncryptingWriter, StreamDecryptor, StreamEncryptor, StreamHeader,
};
pub use suite::Suite;
pub use wrap::{WrapBinding, WrappedKey, unwrap_key, wrap_key};
pub use x509::{
    Certificate, CertificateRequest, DistinguishedName, KeyUsage, Validity, issue_certificate,
    random_serial, self_signed_ca,
};

use rand_core::{OsRng, RngCore as _};

pub(crate) fn fill_random(buf: &mut [u8]) -> Result<()> {
    OsRng.try_fill_bytes(buf).map_err(|_| CryptoError::Rng)
}

/// `N` bytes from the operating system's random source (salts, nonces of callers).
pub fn random<const N: usize>() -> Result<[u8; N]> {
    random_array()
}

pub(crate) fn random_array<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    fill_random(&mut out)?;
    Ok(out)
}

pub(crate) fn random_bytes(n: usize) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let mut out = zeroize::Zeroizing::new(vec![0u8; n]);
    fill_random(&mut out)?;
    Ok(out)
}
