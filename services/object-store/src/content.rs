//! The decrypting download stream. Each chunk's tag is checked before its plaintext is
//! released, and the last piece is held back until the whole plaintext has been hashed and
//! matched against the anchored content hash — so an altered, truncated or swapped object
//! ends the stream with an error, never with wrong bytes.

use bytes::Bytes;
use caretrail_crypto::{DataKey, HashValue, Hasher, StreamDecryptor};
use futures::StreamExt as _;

use crate::storage::{ByteStream, StorageError};

struct Decrypting {
    source: ByteStream,
    decryptor: Option<StreamDecryptor>,
    /// Plaintext goes to a hashing thread, so hashing overlaps decryption.
    hashing: Option<ParallelHash>,
    expected: HashValue,
    held: Option<Bytes>,
    record: String,
}

/// A hasher on a blocking thread, fed through a bounded channel (a slow hasher makes the
/// stream wait instead of buffering).
pub struct ParallelHash {
    feed: tokio::sync::mpsc::Sender<Bytes>,
    done: tokio::sync::oneshot::Receiver<HashValue>,
}

impl ParallelHash {
    pub fn start(suite: caretrail_crypto::Suite) -> Self {
        let (feed, mut pieces) = tokio::sync::mpsc::channel::<Bytes>(4);
        let (finished, done) = tokio::sync::oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let mut hasher = Hasher::new(suite);
            while let Some(piece) = pieces.blocking_recv() {
                hasher.update(&piece);
            }
            let _ = finished.send(hasher.finalize());
        });
        Self { feed, done }
    }

    /// Hands a piece over (a cheap reference-counted clone); false if the thread is gone.
    pub async fn update(&self, piece: &Bytes) -> bool {
        self.feed.send(piece.clone()).await.is_ok()
    }

    pub async fn finalize(self) -> Option<HashValue> {
        drop(self.feed);
        self.done.await.ok()
    }
}

fn integrity(record: &str, what: impl std::fmt::Display) -> StorageError {
    tracing::error!(record, error = %what, "stored content failed its integrity check");
    StorageError::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("integrity check failed: {what}"),
    ))
}

pub fn decrypting(
    source: ByteStream,
    key: &DataKey,
    aad: Vec<u8>,
    expected: HashValue,
    record: String,
) -> ByteStream {
    let state = Decrypting {
        source,
        decryptor: Some(StreamDecryptor::new(key, &aad)),
        hashing: Some(ParallelHash::start(expected.suite())),
        expected,
        held: None,
        record,
    };
    Box::pin(futures::stream::unfold(Some(state), |state| async move {
        let mut s = state?;
        loop {
            match s.source.next().await {
                Some(Ok(cipher)) => {
                    let mut plain = Vec::with_capacity(cipher.len());
                    let decrypted = match s.decryptor.as_mut() {
                        Some(d) => d.update(&cipher, &mut plain),
                        None => return None,
                    };
                    if let Err(e) = decrypted {
                        let err = integrity(&s.record, e);
                        return Some((Err(err), None));
                    }
                    if plain.is_empty() {
                        continue;
                    }
                    let plain = Bytes::from(plain);
                    let hashed = match s.hashing.as_ref() {
                        Some(h) => h.update(&plain).await,
                        None => false,
                    };
                    if !hashed {
                        let err = integrity(&s.record, "the content hasher stopped");
                        return Some((Err(err), None));
                    }
                    let previous = s.held.replace(plain);
                    if let Some(out) = previous {
                        return Some((Ok(out), Some(s)));
                    }
                }
                Some(Err(e)) => return Some((Err(e), None)),
                None => {
                    let finished = s.decryptor.take().map(StreamDecryptor::finish);
                    if let Some(Err(e)) = finished {
                        let err = integrity(&s.record, e);
                        return Some((Err(err), None));
                    }
                    let hash = match s.hashing.take() {
                        Some(h) => h.finalize().await,
                        None => None,
                    };
                    if hash.as_ref() != Some(&s.expected) {
                        let err =
                            integrity(&s.record, "the content hash differs from the anchored one");
                        return Some((Err(err), None));
                    }
                    return s.held.take().map(|last| (Ok(last), None));
                }
            }
        }
    }))
}

/// A byte range of the plaintext, decrypted from the chunks that hold it: `decryptor` was
/// resumed at the first of them and `source` starts there. Each chunk authenticates (its
/// index is in the nonce); the whole-content hash cannot be checked for a part.
pub fn decrypting_range(
    source: ByteStream,
    decryptor: StreamDecryptor,
    skip: u64,
    len: u64,
    record: String,
) -> ByteStream {
    struct Range {
        source: ByteStream,
        decryptor: StreamDecryptor,
        skip: u64,
        left: u64,
        record: String,
    }
    let state = Range {
        source,
        decryptor,
        skip,
        left: len,
        record,
    };
    Box::pin(futures::stream::unfold(Some(state), |state| async move {
        let mut s = state?;
        while s.left > 0 {
            match s.source.next().await {
                Some(Ok(cipher)) => {
                    let mut plain = Vec::new();
                    if let Err(e) = s.decryptor.update(&cipher, &mut plain) {
                        let err = integrity(&s.record, e);
                        return Some((Err(err), None));
                    }
                    let mut piece = plain.as_slice();
                    let skipped = s.skip.min(piece.len() as u64) as usize;
                    piece = &piece[skipped..];
                    s.skip -= skipped as u64;
                    let take = s.left.min(piece.len() as u64) as usize;
                    if take == 0 {
                        continue;
                    }
                    s.left -= take as u64;
                    let out = Bytes::copy_from_slice(&piece[..take]);
                    return Some((Ok(out), Some(s)));
                }
                Some(Err(e)) => return Some((Err(e), None)),
                None => {
                    let err = integrity(&s.record, "the object ends before the requested range");
                    return Some((Err(err), None));
                }
            }
        }
        None
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use caretrail_crypto::Suite;

    async fn collect(s: ByteStream) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut s = s;
        while let Some(item) = s.next().await {
            out.extend_from_slice(&item.map_err(|e| e.to_string())?);
        }
        Ok(out)
    }

    fn source(bytes: Vec<u8>, piece: usize) -> ByteStream {
        let pieces: Vec<Result<Bytes, StorageError>> = bytes
            .chunks(piece)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Box::pin(futures::stream::iter(pieces))
    }

    #[tokio::test]
    async fn round_trips_and_refuses_tampering() {
        for suite in [Suite::Intl, Suite::Gm] {
            let key = DataKey::generate(suite).unwrap();
            let plain: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
            let sealed = caretrail_crypto::stream::encrypt_to_vec(&key, b"aad", &plain).unwrap();
            let expected = caretrail_crypto::hash(suite, &plain);
            let ok = decrypting(
                source(sealed.clone(), 7_000),
                &key,
                b"aad".to_vec(),
                expected,
                "r".into(),
            );
            assert_eq!(collect(ok).await.unwrap(), plain);

            let mut flipped = sealed.clone();
            let at = flipped.len() / 2;
            flipped[at] ^= 1;
            let bad = decrypting(
                source(flipped, 7_000),
                &key,
                b"aad".to_vec(),
                expected,
                "r".into(),
            );
            assert!(collect(bad).await.is_err());

            let truncated = sealed[..sealed.len() - 100].to_vec();
            let bad = decrypting(
                source(truncated, 7_000),
                &key,
                b"aad".to_vec(),
                expected,
                "r".into(),
            );
            assert!(collect(bad).await.is_err());

            let wrong_aad = decrypting(
                source(sealed.clone(), 7_000),
                &key,
                b"other".to_vec(),
                expected,
                "r".into(),
            );
            assert!(collect(wrong_aad).await.is_err());

            // A valid ciphertext of other content (hash mismatch) never completes.
            let other = caretrail_crypto::hash(suite, b"something else");
            let mismatch = decrypting(
                source(sealed, 7_000),
                &key,
                b"aad".to_vec(),
                other,
                "r".into(),
            );
            assert!(collect(mismatch).await.is_err());
        }
    }
}
