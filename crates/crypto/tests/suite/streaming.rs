//! Streaming AEAD round trips through every API, at the sizes that matter.

use std::io::{Read, Write};

use caretrail_crypto::stream::{
    self, CHUNK_OVERHEAD, DEFAULT_CHUNK_SIZE, HEADER_LEN, decrypt_stream, decrypt_to_vec,
    encrypt_stream, encrypt_to_vec,
};
use caretrail_crypto::{
    DataKey, DecryptingReader, EncryptingWriter, StreamDecryptor, StreamEncryptor, StreamHeader,
    Suite,
};

use crate::data;

const CS: usize = DEFAULT_CHUNK_SIZE;
/// Empty, tiny, one byte either side of each chunk boundary, and exact multiples.
const SIZES: [usize; 8] = [0, 1, CS - 1, CS, CS + 1, 2 * CS, 2 * CS + 1, 3 * CS];

fn expected_len(n: usize) -> usize {
    HEADER_LEN + n + (n / CS + 1) * CHUNK_OVERHEAD
}

#[test]
fn every_api_round_trips_and_interoperates() {
    for suite in Suite::ALL {
        let key = DataKey::generate(suite).unwrap();
        for (i, &n) in SIZES.iter().enumerate() {
            let pt = data(n, i as u8);
            let aad = format!("object-{n}");

            // Whole-buffer helpers.
            let a = encrypt_to_vec(&key, aad.as_bytes(), &pt).unwrap();
            assert_eq!(a.len(), expected_len(n), "{suite} {n}");
            let header = StreamHeader::parse(&a).unwrap();
            assert_eq!((header.suite(), header.chunk_size()), (suite, CS));

            // Write-based encryptor, fed in odd-sized writes.
            let mut w = EncryptingWriter::new(&key, aad.as_bytes(), Vec::new()).unwrap();
            for piece in pt.chunks(7919) {
                w.write_all(piece).unwrap();
            }
            let b = w.finish().unwrap();
            assert_eq!(b.len(), a.len());

            // Read-based encryptor.
            let mut c = Vec::new();
            assert_eq!(
                encrypt_stream(&key, aad.as_bytes(), pt.as_slice(), &mut c).unwrap(),
                n as u64
            );
            assert_eq!(c.len(), a.len());

            // Push encryptor: strict chunks + finish.
            let mut enc = StreamEncryptor::new(&key, aad.as_bytes()).unwrap();
            let mut d = enc.header().to_vec();
            let mut full = pt.chunks_exact(CS);
            for chunk in &mut full {
                d.extend(enc.seal_chunk(chunk).unwrap());
            }
            d.extend(enc.finish(full.remainder()).unwrap());
            assert_eq!(d.len(), a.len());

            // Every ciphertext decrypts with every decryptor.
            for ct in [&a, &b, &c, &d] {
                assert_eq!(decrypt_to_vec(&key, aad.as_bytes(), ct).unwrap(), pt);

                let mut out = Vec::new();
                assert_eq!(
                    decrypt_stream(&key, aad.as_bytes(), ct.as_slice(), &mut out).unwrap(),
                    n as u64
                );
                assert_eq!(out, pt);

                let mut reader = DecryptingReader::new(&key, aad.as_bytes(), ct.as_slice());
                let mut out = Vec::new();
                reader.read_to_end(&mut out).unwrap();
                assert_eq!(out, pt);

                let mut reader = DecryptingReader::new(&key, aad.as_bytes(), ct.as_slice());
                let mut out = Vec::new();
                let mut chunks = 0;
                while let Some(chunk) = reader.next_chunk().unwrap() {
                    assert!(chunk.len() <= CS);
                    out.extend_from_slice(chunk);
                    chunks += 1;
                }
                assert_eq!(chunks, n / CS + 1);
                assert_eq!(out, pt);

                // Push decryptor fed in pieces that straddle every boundary.
                let mut dec = StreamDecryptor::new(&key, aad.as_bytes());
                let mut out = Vec::new();
                for piece in ct.chunks(10_007) {
                    dec.update(piece, &mut out).unwrap();
                }
                assert!(dec.is_done());
                dec.finish().unwrap();
                assert_eq!(out, pt);

                // Callback flavour.
                let mut dec = StreamDecryptor::new(&key, aad.as_bytes());
                let mut out = Vec::new();
                dec.update_with(ct, |p| {
                    out.extend_from_slice(p);
                    Ok(())
                })
                .unwrap();
                dec.finish().unwrap();
                assert_eq!(out, pt);
            }
            // Two encryptions of the same data differ (fresh salt and nonce prefix).
            assert_ne!(a, b);
        }
    }
}

#[test]
fn push_encryptor_update_matches_chunk_api() {
    let key = DataKey::generate(Suite::Gm).unwrap();
    let pt = data(3 * 1000 + 17, 3);
    let mut enc = StreamEncryptor::with_chunk_size(&key, b"", 1000).unwrap();
    let mut out = enc.header().to_vec();
    for piece in pt.chunks(333) {
        enc.update(piece, &mut out).unwrap();
    }
    // Mixing the strict API after buffered data is refused rather than silently reordered.
    assert!(enc.seal_chunk(&[0; 1000]).is_err());
    enc.finish_into(b"", &mut out).unwrap();
    assert_eq!(out.len(), HEADER_LEN + pt.len() + 4 * CHUNK_OVERHEAD);
    assert_eq!(decrypt_to_vec(&key, b"", &out).unwrap(), pt);
    // seal_chunk refuses a short chunk.
    let mut enc = StreamEncryptor::with_chunk_size(&key, b"", 1000).unwrap();
    assert!(enc.seal_chunk(&[0; 999]).is_err());
}

/// The reader pulls at most one chunk ahead of what it has released: constant memory.
#[test]
fn reader_reads_incrementally() {
    struct Counting<'a> {
        inner: &'a [u8],
        consumed: usize,
    }
    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.consumed += n;
            Ok(n)
        }
    }
    let key = DataKey::generate(Suite::Intl).unwrap();
    let pt = data(10 * CS, 9);
    let ct = encrypt_to_vec(&key, b"", &pt).unwrap();
    let mut src = Counting {
        inner: &ct,
        consumed: 0,
    };
    {
        let mut reader = DecryptingReader::new(&key, b"", &mut src);
        assert_eq!(reader.next_chunk().unwrap().unwrap(), &pt[..CS]);
    }
    assert_eq!(src.consumed, HEADER_LEN + CS + CHUNK_OVERHEAD);
}

#[test]
fn decryptor_exposes_header_and_rejects_wrong_suite_key() {
    let key = DataKey::generate(Suite::Intl).unwrap();
    let ct = encrypt_to_vec(&key, b"", b"hello").unwrap();
    let mut dec = StreamDecryptor::new(&key, b"");
    assert!(dec.header().is_none());
    dec.update(&ct[..HEADER_LEN], &mut Vec::new()).unwrap();
    assert_eq!(dec.header().unwrap().suite(), Suite::Intl);
    let gm = DataKey::generate(Suite::Gm).unwrap();
    assert!(matches!(
        stream::decrypt_to_vec(&gm, b"", &ct),
        Err(caretrail_crypto::CryptoError::WrongSuite {
            expected: Suite::Gm,
            found: Suite::Intl
        })
    ));
}
