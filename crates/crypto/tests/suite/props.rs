//! Property tests: round trips over random sizes, chunk sizes and split points.

use caretrail_crypto::stream::{DEFAULT_CHUNK_SIZE, decrypt_to_vec};
use caretrail_crypto::{
    CryptoError, DataKey, SignatureAlgorithm, SigningKey, StreamDecryptor, StreamEncryptor, Suite,
};
use proptest::prelude::*;

fn suite() -> impl Strategy<Value = Suite> {
    prop_oneof![Just(Suite::Intl), Just(Suite::Gm)]
}

/// Encrypt with the push API, feeding `pt` in pieces cut at `cuts`.
fn encrypt_pushed(key: &DataKey, aad: &[u8], chunk: usize, pt: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut enc = StreamEncryptor::with_chunk_size(key, aad, chunk).unwrap();
    let mut out = enc.header().to_vec();
    let mut rest = pt;
    for &c in cuts {
        let (piece, tail) = rest.split_at(c.min(rest.len()));
        enc.update(piece, &mut out).unwrap();
        rest = tail;
    }
    enc.finish_into(rest, &mut out).unwrap();
    out
}

/// Decrypt with the push API, feeding the ciphertext in pieces cut at `cuts`.
fn decrypt_pushed(
    key: &DataKey,
    aad: &[u8],
    ct: &[u8],
    cuts: &[usize],
) -> Result<Vec<u8>, CryptoError> {
    let mut dec = StreamDecryptor::new(key, aad);
    let mut out = Vec::new();
    let mut rest = ct;
    for &c in cuts {
        let (piece, tail) = rest.split_at(c.min(rest.len()));
        dec.update(piece, &mut out)?;
        rest = tail;
    }
    dec.update(rest, &mut out)?;
    dec.finish()?;
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn small_chunk_streams_round_trip(
        suite in suite(),
        chunk in prop_oneof![Just(16usize), Just(17), Just(64), Just(1000)],
        // Multiples of the chunk size are forced in often: they need the empty final chunk.
        len in prop_oneof![0usize..5000, (0usize..8).prop_map(|k| k * 16), (0usize..6).prop_map(|k| k * 1000)],
        enc_cuts in prop::collection::vec(0usize..3000, 0..8),
        dec_cuts in prop::collection::vec(0usize..3000, 0..12),
        aad in prop::collection::vec(any::<u8>(), 0..40),
        seed in any::<u8>(),
    ) {
        let key = DataKey::generate(suite).unwrap();
        let pt = crate::data(len, seed);
        let ct = encrypt_pushed(&key, &aad, chunk, &pt, &enc_cuts);
        prop_assert_eq!(ct.len(), 35 + len + (len / chunk + 1) * 20);
        prop_assert_eq!(decrypt_pushed(&key, &aad, &ct, &dec_cuts)?, pt.clone());
        prop_assert_eq!(decrypt_to_vec(&key, &aad, &ct)?, pt);
    }

    #[test]
    fn any_single_bit_flip_is_rejected(
        suite in suite(),
        len in 0usize..300,
        bit in any::<prop::sample::Index>(),
        dec_cuts in prop::collection::vec(0usize..200, 0..6),
    ) {
        let key = DataKey::generate(suite).unwrap();
        let mut ct = encrypt_pushed(&key, b"", 64, &crate::data(len, 1), &[]);
        let i = bit.index(ct.len() * 8);
        ct[i / 8] ^= 1 << (i % 8);
        prop_assert!(decrypt_pushed(&key, b"", &ct, &dec_cuts).is_err());
    }

    #[test]
    fn any_truncation_or_extension_is_rejected(
        len in 0usize..300,
        cut in any::<prop::sample::Index>(),
        extra in prop::collection::vec(any::<u8>(), 1..40),
    ) {
        let key = DataKey::generate(Suite::Gm).unwrap();
        let ct = encrypt_pushed(&key, b"", 64, &crate::data(len, 2), &[]);
        let cut = cut.index(ct.len());
        prop_assert!(decrypt_to_vec(&key, b"", &ct[..cut]).is_err());
        let mut longer = ct.clone();
        longer.extend_from_slice(&extra);
        prop_assert_eq!(decrypt_to_vec(&key, b"", &longer), Err(CryptoError::TrailingData));
    }

    #[test]
    fn sign_verify_round_trip(
        alg in prop_oneof![Just(SignatureAlgorithm::Ed25519), Just(SignatureAlgorithm::Sm2), Just(SignatureAlgorithm::EcdsaP256)],
        msg in prop::collection::vec(any::<u8>(), 0..2000),
        flip in any::<prop::sample::Index>(),
    ) {
        let sk = SigningKey::generate(alg).unwrap();
        let sig = sk.sign(&msg).unwrap();
        prop_assert!(sk.public_key().verify(&msg, &sig).is_ok());
        // Through PEM and back, as a partner would.
        let vk = caretrail_crypto::VerifyingKey::from_spki_pem(&sk.public_key().to_spki_pem()).unwrap();
        prop_assert!(vk.verify_bytes(&msg, sig.as_bytes()).is_ok());
        let mut altered = msg.clone();
        if altered.is_empty() {
            altered.push(0);
        } else {
            let i = flip.index(altered.len());
            altered[i] ^= 0x20;
        }
        prop_assert_eq!(vk.verify(&altered, &sig), Err(CryptoError::SignatureInvalid));
    }
}

proptest! {
    // Default 64 KiB chunks with sizes around real multiples: fewer cases, bigger inputs.
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn default_chunk_streams_round_trip(
        suite in suite(),
        len in prop_oneof![0usize..300_000, (0usize..5).prop_map(|k| k * DEFAULT_CHUNK_SIZE)],
        dec_cuts in prop::collection::vec(0usize..100_000, 0..8),
    ) {
        let key = DataKey::generate(suite).unwrap();
        let pt = crate::data(len, 77);
        let ct = encrypt_pushed(&key, b"big", DEFAULT_CHUNK_SIZE, &pt, &[]);
        prop_assert_eq!(decrypt_pushed(&key, b"big", &ct, &dec_cuts)?, pt);
    }
}
