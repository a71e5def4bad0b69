//! Where ciphertexts live: one trait, a local directory (embedded default) and any S3 API.
//! Objects are written once under `<tenant>/<record>` and never modified; only whole
//! objects are deleted (crypto-shredding removes the key first).

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

mod local;
mod s3;

pub use local::LocalStorage;
pub use s3::S3Storage;

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, StorageError>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object not found")]
    NotFound,
    #[error("object storage unavailable: {0}")]
    Unavailable(String),
    #[error("object storage I/O failure")]
    Io(#[from] std::io::Error),
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
}

/// An object being written. Dropping it without [`ObjectWriter::finish`] must leave no
/// visible object; call [`ObjectWriter::abort`] to also release server-side parts promptly.
#[async_trait]
pub trait ObjectWriter: Send {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError>;
    /// Makes the object durable and visible; returns its size.
    async fn finish(self: Box<Self>) -> Result<u64, StorageError>;
    async fn abort(self: Box<Self>);
}

#[async_trait]
pub trait ObjectStorage: Send + Sync {
    async fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StorageError>;
    async fn get(&self, key: &str) -> Result<ByteStream, StorageError>;
    /// Bytes `start..=end` (clamped to the object's end).
    async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<ByteStream, StorageError>;
    /// Idempotent: deleting a missing object succeeds.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// Readiness: the storage answers.
    async fn check(&self) -> Result<(), StorageError>;
}

/// Keys are `<tenant>/<record>` built from parsed ids; anything else is a bug.
pub(crate) fn check_key(key: &str) -> Result<(), StorageError> {
    let ok = !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidKey(key.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_are_confined() {
        assert!(check_key("ten_1/rec_2").is_ok());
        for bad in ["", "../x", "a//b", "/abs", "a/./b", "a b", "a/..", "a\\b"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }
}
