//! Everything that must fail, fails, with the right error.

use caretrail_crypto::stream::{self, CHUNK_OVERHEAD, HEADER_LEN};
use caretrail_crypto::{
    CryptoError, DataKey, Kek, MacKey, ParsedKey, Signature, SignatureAlgorithm, SigningKey,
    StreamDecryptor, Suite, VerifyingKey, WrapBinding, WrappedKey, open, parse_pem, seal,
    unwrap_key, wrap_key,
};

use crate::data;

const CS: usize = 64; // small chunks keep these tests fast; the logic is size-independent

/// Header followed by chunks of a small-chunk stream, split for surgery.
fn small_stream(key: &DataKey, aad: &[u8], len: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut enc = caretrail_crypto::StreamEncryptor::with_chunk_size(key, aad, CS).unwrap();
    let header = enc.header().to_vec();
    let pt = data(len, 1);
    let mut chunks = Vec::new();
    let mut full = pt.chunks_exact(CS);
    for c in &mut full {
        chunks.push(enc.seal_chunk(c).unwrap());
    }
    chunks.push(enc.finish(full.remainder()).unwrap());
    (header, chunks)
}

fn decrypt(key: &DataKey, aad: &[u8], bytes: &[u8]) -> Result<Vec<u8>, CryptoError> {
    stream::decrypt_to_vec(key, aad, bytes)
}

fn join(header: &[u8], chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = header.to_vec();
    for c in chunks {
        out.extend_from_slice(c);
    }
    out
}

#[test]
fn stream_tampering_is_detected_for_both_suites() {
    for suite in Suite::ALL {
        let key = DataKey::generate(suite).unwrap();
        let (header, chunks) = small_stream(&key, b"obj-1", 3 * CS + 10);
        assert_eq!(chunks.len(), 4);
        let good = join(&header, &chunks);
        assert_eq!(
            decrypt(&key, b"obj-1", &good).unwrap(),
            data(3 * CS + 10, 1)
        );

        // A flipped bit anywhere in chunk bodies or tags.
        for pos in [
            HEADER_LEN + 4,
            HEADER_LEN + 4 + CS + 3,
            good.len() - 1,
            good.len() - 20,
        ] {
            let mut bad = good.clone();
            bad[pos] ^= 0x01;
            assert_eq!(
                decrypt(&key, b"obj-1", &bad),
                Err(CryptoError::AuthenticationFailed),
                "{suite} pos {pos}"
            );
        }
        // Salt and nonce prefix in the header.
        for pos in [12, 20, 28, 34] {
            let mut bad = good.clone();
            bad[pos] ^= 0x80;
            assert_eq!(
                decrypt(&key, b"obj-1", &bad),
                Err(CryptoError::AuthenticationFailed),
                "{suite} header {pos}"
            );
        }
        // Structural header fields.
        let mut bad = good.clone();
        bad[0] ^= 1;
        assert!(matches!(
            decrypt(&key, b"obj-1", &bad),
            Err(CryptoError::Malformed(_))
        ));
        let mut bad = good.clone();
        bad[4] = 2;
        assert!(matches!(
            decrypt(&key, b"obj-1", &bad),
            Err(CryptoError::UnsupportedAlgorithm(_))
        ));
        let mut bad = good.clone();
        bad[7] = 1;
        assert!(matches!(
            decrypt(&key, b"obj-1", &bad),
            Err(CryptoError::Malformed(_))
        ));
        let mut bad = good.clone();
        bad[11] ^= 0x40; // chunk size 64 -> 0: out of range
        assert!(matches!(
            decrypt(&key, b"obj-1", &bad),
            Err(CryptoError::Malformed(_))
        ));
        let mut bad = good.clone();
        bad[11] = 0x80; // chunk size 128: chunks no longer line up
        assert!(decrypt(&key, b"obj-1", &bad).is_err());
        // Suite byte: the other suite is a WrongSuite for this key.
        let mut bad = good.clone();
        bad[5] = if suite == Suite::Intl { 2 } else { 1 };
        assert!(matches!(
            decrypt(&key, b"obj-1", &bad),
            Err(CryptoError::WrongSuite { .. })
        ));
        // A length prefix lowered to fake an early final chunk.
        let mut bad = good.clone();
        bad[HEADER_LEN + 3] = (CS - 1) as u8;
        assert!(decrypt(&key, b"obj-1", &bad).is_err());
        // A length prefix above the chunk size.
        let mut bad = good.clone();
        bad[HEADER_LEN + 3] = (CS + 1) as u8;
        assert!(matches!(
            decrypt(&key, b"obj-1", &bad),
            Err(CryptoError::Malformed(_))
        ));

        // Associated data and key.
        assert_eq!(
            decrypt(&key, b"obj-2", &good),
            Err(CryptoError::AuthenticationFailed)
        );
        assert_eq!(
            decrypt(&key, b"", &good),
            Err(CryptoError::AuthenticationFailed)
        );
        let other = DataKey::generate(suite).unwrap();
        assert_eq!(
            decrypt(&other, b"obj-1", &good),
            Err(CryptoError::AuthenticationFailed)
        );

        // Dropped final chunk; cut mid-chunk; cut inside the header; empty input.
        assert!(matches!(
            decrypt(&key, b"obj-1", &join(&header, &chunks[..3])),
            Err(CryptoError::Truncated(_))
        ));
        for cut in [1, 4, 5, CS + CHUNK_OVERHEAD - 1] {
            let bad = &good[..HEADER_LEN + cut];
            assert!(
                matches!(decrypt(&key, b"obj-1", bad), Err(CryptoError::Truncated(_))),
                "cut {cut}"
            );
        }
        assert!(matches!(
            decrypt(&key, b"obj-1", &good[..good.len() - 1]),
            Err(CryptoError::Truncated(_))
        ));
        assert!(matches!(
            decrypt(&key, b"obj-1", &good[..10]),
            Err(CryptoError::Truncated(_))
        ));
        assert!(matches!(
            decrypt(&key, b"obj-1", b""),
            Err(CryptoError::Truncated(_))
        ));

        // Swapped, duplicated, dropped middle chunk; a chunk from another stream.
        let swapped = join(
            &header,
            &[
                chunks[1].clone(),
                chunks[0].clone(),
                chunks[2].clone(),
                chunks[3].clone(),
            ],
        );
        assert_eq!(
            decrypt(&key, b"obj-1", &swapped),
            Err(CryptoError::AuthenticationFailed)
        );
        let duplicated = join(
            &header,
            &[
                chunks[0].clone(),
                chunks[0].clone(),
                chunks[1].clone(),
                chunks[2].clone(),
                chunks[3].clone(),
            ],
        );
        assert_eq!(
            decrypt(&key, b"obj-1", &duplicated),
            Err(CryptoError::AuthenticationFailed)
        );
        let dropped = join(
            &header,
            &[chunks[0].clone(), chunks[2].clone(), chunks[3].clone()],
        );
        assert_eq!(
            decrypt(&key, b"obj-1", &dropped),
            Err(CryptoError::AuthenticationFailed)
        );
        let (header2, chunks2) = small_stream(&key, b"obj-1", 3 * CS + 10);
        let spliced = join(
            &header,
            &[
                chunks[0].clone(),
                chunks2[1].clone(),
                chunks[2].clone(),
                chunks[3].clone(),
            ],
        );
        assert_eq!(
            decrypt(&key, b"obj-1", &spliced),
            Err(CryptoError::AuthenticationFailed)
        );
        let other_header = join(&header2, &chunks);
        assert_eq!(
            decrypt(&key, b"obj-1", &other_header),
            Err(CryptoError::AuthenticationFailed)
        );

        // Trailing garbage, one byte or a whole extra (valid-looking) chunk.
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            decrypt(&key, b"obj-1", &trailing),
            Err(CryptoError::TrailingData)
        );
        let mut trailing = good.clone();
        trailing.extend_from_slice(&chunks[3]);
        assert_eq!(
            decrypt(&key, b"obj-1", &trailing),
            Err(CryptoError::TrailingData)
        );
    }
}

#[test]
fn push_decryptor_never_emits_unverified_plaintext() {
    let key = DataKey::generate(Suite::Intl).unwrap();
    let (header, chunks) = small_stream(&key, b"", 2 * CS + 5);
    let mut bad_last = chunks[2].clone();
    bad_last[5] ^= 1;
    let stream_bytes = join(&header, &[chunks[0].clone(), chunks[1].clone(), bad_last]);
    // Feed byte by byte and as one slice: output is exactly the two good chunks, then the error.
    for split in [1usize, stream_bytes.len()] {
        let mut dec = StreamDecryptor::new(&key, b"");
        let mut out = Vec::new();
        let mut err = None;
        for piece in stream_bytes.chunks(split) {
            if let Err(e) = dec.update(piece, &mut out) {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err, Some(CryptoError::AuthenticationFailed));
        assert_eq!(out, data(2 * CS, 1));
        // The decryptor stays failed.
        assert_eq!(
            dec.update(b"", &mut out),
            Err(CryptoError::AuthenticationFailed)
        );
        assert_eq!(dec.finish(), Err(CryptoError::AuthenticationFailed));
    }
}

#[test]
fn reader_reports_trailing_data_before_releasing_the_final_chunk() {
    let key = DataKey::generate(Suite::Gm).unwrap();
    let (header, chunks) = small_stream(&key, b"", CS + 5);
    let mut bytes = join(&header, &chunks);
    bytes.extend_from_slice(b"junk");
    let mut reader = caretrail_crypto::DecryptingReader::new(&key, b"", bytes.as_slice());
    assert_eq!(
        reader.next_chunk().unwrap().unwrap(),
        &data(CS + 5, 1)[..CS]
    );
    assert_eq!(reader.next_chunk(), Err(CryptoError::TrailingData));
    assert_eq!(reader.next_chunk(), Err(CryptoError::TrailingData));
    // Through io::Read the CryptoError survives the io::Error round trip.
    let mut reader = caretrail_crypto::DecryptingReader::new(&key, b"", bytes.as_slice());
    let err = std::io::Read::read_to_end(&mut reader, &mut Vec::new()).unwrap_err();
    assert_eq!(CryptoError::from(err), CryptoError::TrailingData);
}

#[test]
fn one_shot_aead_rejects_tampering() {
    for suite in Suite::ALL {
        let key = DataKey::generate(suite).unwrap();
        let sealed = seal(&key, b"ctx", b"patient record").unwrap();
        assert_eq!(open(&key, b"ctx", &sealed).unwrap(), b"patient record");
        for pos in [0, 11, 12, sealed.len() - 17, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[pos] ^= 4;
            assert_eq!(
                open(&key, b"ctx", &bad),
                Err(CryptoError::AuthenticationFailed),
                "nonce/ct/tag {pos}"
            );
        }
        assert_eq!(
            open(&key, b"ctX", &sealed),
            Err(CryptoError::AuthenticationFailed)
        );
        assert_eq!(
            open(&DataKey::generate(suite).unwrap(), b"ctx", &sealed),
            Err(CryptoError::AuthenticationFailed)
        );
        assert!(matches!(
            open(&key, b"ctx", &sealed[..27]),
            Err(CryptoError::Truncated(_))
        ));
    }
}

#[test]
fn signatures_reject_altered_messages_other_keys_and_garbage() {
    for alg in [
        SignatureAlgorithm::Ed25519,
        SignatureAlgorithm::Sm2,
        SignatureAlgorithm::EcdsaP256,
    ] {
        let sk = SigningKey::generate(alg).unwrap();
        let other = SigningKey::generate(alg).unwrap();
        let sig = sk.sign(b"consent granted").unwrap();
        sk.public_key().verify(b"consent granted", &sig).unwrap();
        assert_eq!(
            sk.public_key().verify(b"consent revoked", &sig),
            Err(CryptoError::SignatureInvalid)
        );
        assert_eq!(
            other.public_key().verify(b"consent granted", &sig),
            Err(CryptoError::SignatureInvalid)
        );
        let other_sig = other.sign(b"consent granted").unwrap();
        assert_eq!(
            sk.public_key().verify(b"consent granted", &other_sig),
            Err(CryptoError::SignatureInvalid)
        );
        let mut bytes = sig.as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            sk.public_key().verify_bytes(b"consent granted", &bytes),
            Err(CryptoError::SignatureInvalid)
        );
        assert_eq!(
            sk.public_key().verify_bytes(b"consent granted", b""),
            Err(CryptoError::SignatureInvalid)
        );
        assert_eq!(
            sk.public_key().verify_bytes(b"consent granted", &[0u8; 64]),
            Err(CryptoError::SignatureInvalid)
        );
    }
    // A signature of another algorithm is not accepted by a key.
    let ed = SigningKey::generate(SignatureAlgorithm::Ed25519).unwrap();
    let sm2 = SigningKey::generate(SignatureAlgorithm::Sm2).unwrap();
    let sig = sm2.sign(b"m").unwrap();
    assert_eq!(
        ed.public_key().verify(b"m", &sig),
        Err(CryptoError::SignatureInvalid)
    );
    // SM2 with another distinguishing id.
    let sig = sm2.sign_sm2_with_distid(b"m", b"alice").unwrap();
    assert_eq!(
        sm2.public_key().verify(b"m", &sig),
        Err(CryptoError::SignatureInvalid)
    );
    assert!(ed.sign_sm2_with_distid(b"m", b"alice").is_err());
}

#[test]
fn der_signature_parsing_is_strict() {
    let sm2 = SigningKey::generate(SignatureAlgorithm::Sm2).unwrap();
    let sig = sm2.sign(b"m").unwrap();
    let der = sig.as_bytes().to_vec();
    Signature::from_bytes(SignatureAlgorithm::Sm2, &der).unwrap();
    let mut trailing = der.clone();
    trailing.push(0);
    assert!(matches!(
        Signature::from_bytes(SignatureAlgorithm::Sm2, &trailing),
        Err(CryptoError::Malformed(_))
    ));
    // Non-minimal INTEGER (an extra leading zero) and a negative INTEGER.
    assert!(
        Signature::from_bytes(
            SignatureAlgorithm::Sm2,
            &[0x30, 0x08, 0x02, 0x02, 0x00, 0x01, 0x02, 0x02, 0x00, 0x01]
        )
        .is_err()
    );
    assert!(
        Signature::from_bytes(
            SignatureAlgorithm::Sm2,
            &[0x30, 0x06, 0x02, 0x01, 0x81, 0x02, 0x01, 0x01]
        )
        .is_err()
    );
    assert!(Signature::from_bytes(SignatureAlgorithm::Ed25519, &der).is_err());
    assert!(Signature::from_base64(SignatureAlgorithm::Sm2, "not base64!").is_err());
    // r = 0 is well-formed DER but never verifies.
    assert_eq!(
        sm2.public_key()
            .verify_bytes(b"m", &[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01]),
        Err(CryptoError::SignatureInvalid)
    );
}

#[test]
fn malformed_pem_is_rejected() {
    let good = SigningKey::generate(SignatureAlgorithm::Sm2)
        .unwrap()
        .to_pkcs8_pem()
        .unwrap();
    let cases: Vec<String> = vec![
        String::new(),
        "hello".into(),
        good.replace("PRIVATE KEY", "PRIVAT KEY"),
        good.replace("-----END PRIVATE KEY-----", ""),
        good.replacen('M', "!", 1),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
        "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n".into(),
    ];
    for pem in &cases {
        assert!(parse_pem(pem).is_err(), "{pem:?}");
        assert!(SigningKey::from_pkcs8_pem(pem).is_err());
        assert!(VerifyingKey::from_spki_pem(pem).is_err());
    }
    // Right PEM, wrong kind.
    let public = SigningKey::generate(SignatureAlgorithm::Ed25519)
        .unwrap()
        .public_key()
        .to_spki_pem();
    assert!(matches!(
        SigningKey::from_pkcs8_pem(&public),
        Err(CryptoError::Malformed(_))
    ));
    assert!(matches!(
        VerifyingKey::from_spki_pem(&good),
        Err(CryptoError::Malformed(_))
    ));
    assert!(matches!(parse_pem(&public).unwrap(), ParsedKey::Public(_)));
    // Encrypted PKCS#8 and SEC1 get a helpful "unsupported".
    let enc = good.replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY");
    assert!(matches!(
        parse_pem(&enc),
        Err(CryptoError::UnsupportedAlgorithm(_))
    ));
    let sec1 = good.replace("PRIVATE KEY", "EC PRIVATE KEY");
    assert!(matches!(
        parse_pem(&sec1),
        Err(CryptoError::UnsupportedAlgorithm(_))
    ));
    // An RSA public key (OID 1.2.840.113549.1.1.1) is an unsupported algorithm.
    let rsa = "-----BEGIN PUBLIC KEY-----
MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBANCltNQiab0p7vHkefA9pgLLjqbT0LXc
nK1V3fUnEMXtSkBU4WPbPJvmlYkYEwzpmVFTDvU0RqLibiiFsb9dBxUCAwEAAQ==
-----END PUBLIC KEY-----
";
    assert!(matches!(
        parse_pem(rsa),
        Err(CryptoError::UnsupportedAlgorithm(_))
    ));
}

#[test]
fn wrapped_keys_unwrap_only_with_the_same_binding_and_kek() {
    for suite in Suite::ALL {
        let kek = Kek::generate(suite).unwrap();
        let dk = DataKey::generate(suite).unwrap();
        let binding = WrapBinding::new("tenant-a", 3, "record-42");
        let wrapped = wrap_key(&kek, &dk, &binding).unwrap();
        assert_eq!(wrapped.key_version(), 3);
        assert_eq!(
            unwrap_key(&kek, &wrapped, &binding)
                .unwrap()
                .expose_secret(),
            dk.expose_secret()
        );
        for wrong in [
            WrapBinding::new("tenant-b", 3, "record-42"),
            WrapBinding::new("tenant-a", 4, "record-42"),
            WrapBinding::new("tenant-a", 3, "record-43"),
            // Same concatenation, different split: the length prefixes keep them apart.
            WrapBinding::new("tenant-ar", 3, "ecord-42"),
        ] {
            assert_eq!(
                kek.unwrap(&wrapped, &wrong).unwrap_err(),
                CryptoError::AuthenticationFailed,
                "{wrong:?}"
            );
        }
        assert_eq!(
            unwrap_key(&Kek::generate(suite).unwrap(), &wrapped, &binding).unwrap_err(),
            CryptoError::AuthenticationFailed
        );
        // Any bit of the blob.
        for pos in 0..wrapped.as_bytes().len() {
            let mut bytes = wrapped.as_bytes().to_vec();
            bytes[pos] ^= 0x10;
            let result =
                WrappedKey::from_bytes(&bytes).and_then(|w| unwrap_key(&kek, &w, &binding));
            assert!(result.is_err(), "{suite} byte {pos}");
        }
        assert!(WrappedKey::from_bytes(&wrapped.as_bytes()[..20]).is_err());
        // Suites must agree.
        let other_suite = if suite == Suite::Intl {
            Suite::Gm
        } else {
            Suite::Intl
        };
        assert!(matches!(
            wrap_key(&kek, &DataKey::generate(other_suite).unwrap(), &binding),
            Err(CryptoError::WrongSuite { .. })
        ));
        assert!(matches!(
            unwrap_key(&Kek::generate(other_suite).unwrap(), &wrapped, &binding),
            Err(CryptoError::WrongSuite { .. })
        ));
    }
}

#[test]
fn keys_of_the_wrong_size_or_form_are_rejected() {
    assert!(matches!(
        DataKey::from_bytes(Suite::Intl, &[0; 16]),
        Err(CryptoError::InvalidKey(_))
    ));
    assert!(matches!(
        DataKey::from_bytes(Suite::Gm, &[0; 32]),
        Err(CryptoError::InvalidKey(_))
    ));
    assert!(matches!(
        DataKey::from_hex(Suite::Gm, "zz"),
        Err(CryptoError::InvalidKey(_))
    ));
    assert!(matches!(
        MacKey::from_bytes(Suite::Gm, &[]),
        Err(CryptoError::InvalidKey(_))
    ));
    assert!(
        MacKey::from_bytes(Suite::Gm, b"k")
            .unwrap()
            .verify(b"x", &[0; 32])
            .is_err()
    );
    assert!(SigningKey::from_secret_bytes(SignatureAlgorithm::Sm2, &[0; 32]).is_err());
    assert!(SigningKey::from_secret_bytes(SignatureAlgorithm::Sm2, &[0xff; 32]).is_err());
    assert!(SigningKey::from_secret_bytes(SignatureAlgorithm::Ed25519, &[1; 31]).is_err());
    assert!(VerifyingKey::from_raw_bytes(SignatureAlgorithm::Sm2, &[4; 65]).is_err());
    assert!(VerifyingKey::from_raw_bytes(SignatureAlgorithm::EcdsaP256, &[0; 65]).is_err());
    assert!("rsa".parse::<Suite>().is_err());
    assert!(
        stream::StreamEncryptor::with_chunk_size(&DataKey::generate(Suite::Gm).unwrap(), b"", 8)
            .is_err()
    );
}
