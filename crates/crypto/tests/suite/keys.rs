//! Key handling: serialisation round trips, algorithm detection, key ids, hygiene of Debug.

use std::io::Write as _;

use caretrail_crypto::{
    DataKey, HashValue, Hasher, Kek, KeyId, KeyedHasher, MacKey, ParsedKey, SignatureAlgorithm,
    SigningKey, Suite, VerifyingKey, WrapBinding, hash, hash_reader, parse_pem,
};
use spki::EncodePublicKey as _;

use crate::data;

const ALGS: [SignatureAlgorithm; 3] = [
    SignatureAlgorithm::Ed25519,
    SignatureAlgorithm::Sm2,
    SignatureAlgorithm::EcdsaP256,
];

#[test]
fn suite_serde_display_fromstr() {
    assert_eq!(serde_json::to_string(&Suite::Intl).unwrap(), "\"intl\"");
    assert_eq!(serde_json::to_string(&Suite::Gm).unwrap(), "\"gm\"");
    assert_eq!(serde_json::from_str::<Suite>("\"gm\"").unwrap(), Suite::Gm);
    assert!(serde_json::from_str::<Suite>("\"GM\"").is_err());
    for s in Suite::ALL {
        assert_eq!(s.to_string().parse::<Suite>().unwrap(), s);
        assert_eq!(Suite::from_id(s.id()).unwrap(), s);
    }
    assert_eq!(" GM ".parse::<Suite>().unwrap(), Suite::Gm);
    assert_eq!(Suite::Gm.signature_algorithm(), SignatureAlgorithm::Sm2);
    assert_eq!(
        Suite::Intl.signature_algorithm(),
        SignatureAlgorithm::Ed25519
    );
    for a in ALGS {
        assert_eq!(a.to_string().parse::<SignatureAlgorithm>().unwrap(), a);
    }
}

#[test]
fn pem_der_raw_round_trips_and_detection() {
    for alg in ALGS {
        let sk = SigningKey::generate(alg).unwrap();
        assert_eq!(sk.algorithm(), alg);
        assert_eq!(sk.suite(), alg.suite());
        let pem = sk.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let back = SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.public_key(), sk.public_key());
        assert_eq!(*back.to_secret_bytes(), *sk.to_secret_bytes());
        assert_eq!(
            *SigningKey::from_pkcs8_der(&sk.to_pkcs8_der().unwrap())
                .unwrap()
                .to_secret_bytes(),
            *sk.to_secret_bytes()
        );
        let again = SigningKey::from_secret_bytes(alg, &sk.to_secret_bytes()).unwrap();
        assert_eq!(again.public_key(), sk.public_key());

        let vk = sk.public_key();
        let spki = vk.to_spki_pem();
        assert_eq!(VerifyingKey::from_spki_pem(&spki).unwrap(), vk);
        assert_eq!(VerifyingKey::from_spki_der(&vk.to_spki_der()).unwrap(), vk);
        let raw = vk.to_raw_bytes();
        assert_eq!(raw.len(), alg.raw_public_key_len());
        assert_eq!(VerifyingKey::from_raw_bytes(alg, &raw).unwrap(), vk);

        match parse_pem(&pem).unwrap() {
            ParsedKey::Private(k) => assert_eq!(k.algorithm(), alg),
            ParsedKey::Public(_) => panic!("private PEM parsed as public"),
        }
        let parsed = parse_pem(&spki).unwrap();
        assert!(matches!(parsed, ParsedKey::Public(_)));
        assert_eq!(parsed.algorithm(), alg);
        assert_eq!(parsed.suite(), alg.suite());
        assert_eq!(parsed.verifying_key(), vk);
    }
}

/// Our hand-built SubjectPublicKeyInfo equals what the algorithm crates encode.
#[test]
fn spki_encoding_matches_the_crates() {
    let sm2 = SigningKey::generate(SignatureAlgorithm::Sm2)
        .unwrap()
        .public_key();
    let pk = sm2::PublicKey::from_sec1_bytes(&sm2.to_raw_bytes()).unwrap();
    assert_eq!(
        sm2.to_spki_der(),
        pk.to_public_key_der().unwrap().as_bytes()
    );

    let ed = SigningKey::generate(SignatureAlgorithm::Ed25519)
        .unwrap()
        .public_key();
    let pk =
        ed25519_dalek::VerifyingKey::from_bytes(&ed.to_raw_bytes().try_into().unwrap()).unwrap();
    assert_eq!(ed.to_spki_der(), pk.to_public_key_der().unwrap().as_bytes());

    let p = SigningKey::generate(SignatureAlgorithm::EcdsaP256)
        .unwrap()
        .public_key();
    let pk = p256::PublicKey::from_sec1_bytes(&p.to_raw_bytes()).unwrap();
    assert_eq!(p.to_spki_der(), pk.to_public_key_der().unwrap().as_bytes());
}

#[test]
fn key_ids_are_stable_prefixes_of_the_suite_hash() {
    for alg in ALGS {
        let sk = SigningKey::generate(alg).unwrap();
        let vk = sk.public_key();
        let digest = hash(alg.suite(), &vk.to_spki_der());
        assert_eq!(&vk.key_id().as_bytes()[..], &digest.as_bytes()[..16]);
        assert_eq!(sk.key_id(), vk.key_id());
        let reparsed = VerifyingKey::from_spki_pem(&vk.to_spki_pem()).unwrap();
        assert_eq!(reparsed.key_id(), vk.key_id());
        assert_eq!(vk.key_id().to_string().len(), 32);
        assert_eq!(
            vk.key_id().to_string().parse::<KeyId>().unwrap(),
            vk.key_id()
        );
        assert_ne!(SigningKey::generate(alg).unwrap().key_id(), vk.key_id());
    }
}

#[test]
fn debug_never_shows_key_material() {
    for suite in Suite::ALL {
        let dk = DataKey::generate(suite).unwrap();
        let kek = Kek::generate(suite).unwrap();
        let mk = MacKey::generate(suite).unwrap();
        for (dbg, secret) in [
            (format!("{dk:?}"), hex::encode(dk.expose_secret())),
            (format!("{kek:?}"), hex::encode(kek.expose_secret())),
            (format!("{mk:?}"), hex::encode(mk.expose_secret())),
        ] {
            assert!(!dbg.to_lowercase().contains(&secret[..8]), "{dbg}");
            assert!(
                !dbg.contains(&format!("{:?}", &hex::decode(&secret).unwrap()[..4])),
                "{dbg}"
            );
        }
        let enc = caretrail_crypto::StreamEncryptor::new(&dk, b"").unwrap();
        assert!(!format!("{enc:?}").contains(&hex::encode(dk.expose_secret())[..8]));
    }
    for alg in ALGS {
        let sk = SigningKey::generate(alg).unwrap();
        let secret = hex::encode(&*sk.to_secret_bytes());
        let dbg = format!("{sk:?}");
        assert!(!dbg.to_lowercase().contains(&secret[..8]), "{dbg}");
        assert!(dbg.contains(&sk.key_id().to_string()));
    }
}

#[test]
fn incremental_hashers_match_one_shot() {
    let msg = data(10_000, 4);
    for suite in Suite::ALL {
        let mut h = Hasher::new(suite);
        for piece in msg.chunks(333) {
            h.write_all(piece).unwrap();
        }
        let one_shot = hash(suite, &msg);
        assert_eq!(h.finalize(), one_shot);
        assert_eq!(hash_reader(suite, msg.as_slice()).unwrap(), one_shot);
        assert_eq!(format!("{one_shot}"), one_shot.to_hex());
        assert_eq!(
            HashValue::from_hex(suite, &one_shot.to_hex()).unwrap(),
            one_shot
        );
        assert_ne!(hash(Suite::Intl, &msg), hash(Suite::Gm, &msg));

        let key = MacKey::from_bytes(suite, b"pseudonym key").unwrap();
        let mut kh = KeyedHasher::new(&key);
        for piece in msg.chunks(1000) {
            kh.update(piece);
        }
        let tag = kh.finalize();
        assert_eq!(tag, key.mac(&msg));
        key.verify(&msg, tag.as_bytes()).unwrap();
        // Pseudonyms: stable per key, different across keys.
        let other = MacKey::generate(suite).unwrap();
        assert_ne!(other.mac(b"patient-123"), key.mac(b"patient-123"));
        assert_eq!(key.mac(b"patient-123"), key.mac(b"patient-123"));
    }
}

#[test]
fn wrapping_round_trips_through_base64() {
    for suite in Suite::ALL {
        let kek = Kek::generate(suite).unwrap();
        let dk = DataKey::generate(suite).unwrap();
        let b = WrapBinding::new("tenant", 1, "obj");
        let wrapped = kek.wrap(&dk, &b).unwrap();
        assert_eq!(
            wrapped.as_bytes().len(),
            10 + 12 + suite.aead_key_len() + 16
        );
        let text = wrapped.to_base64();
        let back = caretrail_crypto::WrappedKey::from_base64(&text).unwrap();
        assert_eq!(back.suite(), suite);
        assert_eq!(
            kek.unwrap(&back, &b).unwrap().expose_secret(),
            dk.expose_secret()
        );
        // Fresh nonce each time.
        assert_ne!(kek.wrap(&dk, &b).unwrap(), wrapped);
    }
}
