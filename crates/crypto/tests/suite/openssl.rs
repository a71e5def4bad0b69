//! Interoperability with the OpenSSL 3 command line. These tests fail (not skip) when `openssl`
//! is missing: CI must install it.
//!
//! OpenSSL 3.0 has no SM4-GCM at all (`openssl enc` also refuses every AEAD mode), so SM4-GCM is
//! checked against RFC 8998 A.1 in vectors.rs, and here only its CTR part: GCM encrypts with
//! CTR starting at counter block `nonce ‖ 00000002`, which `openssl enc -sm4-ctr` can reproduce.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use caretrail_crypto::{
    Aead, DataKey, MacKey, SM2_DEFAULT_DISTID, SignatureAlgorithm, SigningKey, Suite, VerifyingKey,
    hash, parse_pem,
};

use crate::data;

pub(crate) fn openssl(args: &[&str], dir: &Path) -> Output {
    Command::new("openssl").args(args).current_dir(dir).output().unwrap_or_else(|e| {
        panic!("cannot run `openssl` ({e}): these interoperability tests need the OpenSSL 3 CLI on PATH")
    })
}

pub(crate) fn openssl_ok(args: &[&str], dir: &Path) -> String {
    let out = openssl(args, dir);
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn openssl_is_version_3() {
    let v = openssl_ok(&["version"], Path::new("."));
    assert!(v.starts_with("OpenSSL 3."), "need OpenSSL 3.x, found {v}");
}

#[test]
fn openssl_reads_our_keys_and_derives_the_same_public_key() {
    for (alg, marker) in [
        (SignatureAlgorithm::Sm2, "SM2"),
        (SignatureAlgorithm::Ed25519, "ED25519"),
        (SignatureAlgorithm::EcdsaP256, "prime256v1"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let sk = SigningKey::generate(alg).unwrap();
        write(dir.path(), "key.pem", sk.to_pkcs8_pem().unwrap().as_bytes());
        write(
            dir.path(),
            "pub.pem",
            sk.public_key().to_spki_pem().as_bytes(),
        );
        let text = openssl_ok(&["pkey", "-in", "key.pem", "-text", "-noout"], dir.path());
        assert!(
            text.contains(marker),
            "{alg}: openssl pkey -text shows no {marker}:\n{text}"
        );
        let pub_text = openssl_ok(
            &["pkey", "-pubin", "-in", "pub.pem", "-text", "-noout"],
            dir.path(),
        );
        assert!(pub_text.contains(marker), "{alg}: {pub_text}");
        // OpenSSL's public key for our private key is byte-identical to ours.
        let derived = openssl_ok(&["pkey", "-in", "key.pem", "-pubout"], dir.path());
        assert_eq!(derived, sk.public_key().to_spki_pem(), "{alg}");
        // And OpenSSL's re-encoding of our private key is the same PKCS#8.
        let reencoded = openssl_ok(&["pkey", "-in", "key.pem"], dir.path());
        assert_eq!(
            reencoded.as_str(),
            sk.to_pkcs8_pem().unwrap().as_str(),
            "{alg}"
        );
    }
}

#[test]
fn openssl_verifies_our_sm2_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let sk = SigningKey::generate(SignatureAlgorithm::Sm2).unwrap();
    write(
        dir.path(),
        "pub.pem",
        sk.public_key().to_spki_pem().as_bytes(),
    );
    for (i, len) in [0usize, 1, 14, 1000, 70_000].into_iter().enumerate() {
        let msg = data(len, i as u8);
        write(dir.path(), "msg", &msg);
        write(dir.path(), "sig.der", sk.sign(&msg).unwrap().as_bytes());
        let distid = format!(
            "distid:{}",
            std::str::from_utf8(SM2_DEFAULT_DISTID).unwrap()
        );
        openssl_ok(
            &[
                "dgst",
                "-sm3",
                "-verify",
                "pub.pem",
                "-sigopt",
                &distid,
                "-signature",
                "sig.der",
                "msg",
            ],
            dir.path(),
        );
        openssl_ok(
            &[
                "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-digest", "sm3",
                "-in", "msg", "-sigfile", "sig.der", "-pkeyopt", &distid,
            ],
            dir.path(),
        );
        // A different distinguishing id must not verify: Z_A really is in the signature.
        let wrong = openssl(
            &[
                "dgst",
                "-sm3",
                "-verify",
                "pub.pem",
                "-sigopt",
                "distid:someone-else",
                "-signature",
                "sig.der",
                "msg",
            ],
            dir.path(),
        );
        assert!(!wrong.status.success());
    }
    // Non-default distinguishing id.
    let msg = b"partner payload";
    write(dir.path(), "msg", msg);
    write(
        dir.path(),
        "sig.der",
        sk.sign_sm2_with_distid(msg, b"alice@example.org")
            .unwrap()
            .as_bytes(),
    );
    openssl_ok(
        &[
            "dgst",
            "-sm3",
            "-verify",
            "pub.pem",
            "-sigopt",
            "distid:alice@example.org",
            "-signature",
            "sig.der",
            "msg",
        ],
        dir.path(),
    );
}

#[test]
fn we_verify_openssl_sm2_signatures() {
    let dir = tempfile::tempdir().unwrap();
    openssl_ok(
        &["genpkey", "-algorithm", "SM2", "-out", "key.pem"],
        dir.path(),
    );
    openssl_ok(
        &["pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem"],
        dir.path(),
    );
    let pub_pem = std::fs::read_to_string(dir.path().join("pub.pem")).unwrap();
    let key_pem = std::fs::read_to_string(dir.path().join("key.pem")).unwrap();
    let vk = VerifyingKey::from_spki_pem(&pub_pem).unwrap();
    assert_eq!(vk.algorithm(), SignatureAlgorithm::Sm2);
    let sk = SigningKey::from_pkcs8_pem(&key_pem).unwrap();
    assert_eq!(sk.public_key(), vk);
    assert_eq!(parse_pem(&key_pem).unwrap().suite(), Suite::Gm);
    for (i, len) in [0usize, 3, 4096, 100_000].into_iter().enumerate() {
        let msg = data(len, 40 + i as u8);
        write(dir.path(), "msg", &msg);
        openssl_ok(
            &[
                "dgst",
                "-sm3",
                "-sign",
                "key.pem",
                "-sigopt",
                "distid:1234567812345678",
                "-out",
                "sig",
                "msg",
            ],
            dir.path(),
        );
        let sig = std::fs::read(dir.path().join("sig")).unwrap();
        vk.verify_bytes(&msg, &sig).unwrap();
        let mut altered = msg.clone();
        altered.push(0);
        assert!(vk.verify_bytes(&altered, &sig).is_err());
    }
    // OpenSSL signing with another id: verifies only with that id.
    let msg = b"with id";
    write(dir.path(), "msg", msg);
    openssl_ok(
        &[
            "dgst",
            "-sm3",
            "-sign",
            "key.pem",
            "-sigopt",
            "distid:bob",
            "-out",
            "sig",
            "msg",
        ],
        dir.path(),
    );
    let sig = caretrail_crypto::Signature::from_bytes(
        SignatureAlgorithm::Sm2,
        &std::fs::read(dir.path().join("sig")).unwrap(),
    )
    .unwrap();
    vk.verify_sm2_with_distid(msg, &sig, b"bob").unwrap();
    assert!(vk.verify(msg, &sig).is_err());
}

#[test]
fn ed25519_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let msg = data(5000, 7);
    write(dir.path(), "msg", &msg);
    // Ours -> OpenSSL.
    let sk = SigningKey::generate(SignatureAlgorithm::Ed25519).unwrap();
    write(
        dir.path(),
        "pub.pem",
        sk.public_key().to_spki_pem().as_bytes(),
    );
    write(dir.path(), "sig", sk.sign(&msg).unwrap().as_bytes());
    openssl_ok(
        &[
            "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "msg",
            "-sigfile", "sig",
        ],
        dir.path(),
    );
    // OpenSSL -> ours.
    openssl_ok(
        &["genpkey", "-algorithm", "ed25519", "-out", "okey.pem"],
        dir.path(),
    );
    openssl_ok(
        &["pkey", "-in", "okey.pem", "-pubout", "-out", "opub.pem"],
        dir.path(),
    );
    openssl_ok(
        &[
            "pkeyutl", "-sign", "-inkey", "okey.pem", "-rawin", "-in", "msg", "-out", "osig",
        ],
        dir.path(),
    );
    let vk =
        VerifyingKey::from_spki_pem(&std::fs::read_to_string(dir.path().join("opub.pem")).unwrap())
            .unwrap();
    vk.verify_bytes(&msg, &std::fs::read(dir.path().join("osig")).unwrap())
        .unwrap();
    // Ed25519 is deterministic: we produce OpenSSL's signature from OpenSSL's key.
    let osk =
        SigningKey::from_pkcs8_pem(&std::fs::read_to_string(dir.path().join("okey.pem")).unwrap())
            .unwrap();
    assert_eq!(
        osk.sign(&msg).unwrap().as_bytes(),
        std::fs::read(dir.path().join("osig")).unwrap().as_slice()
    );
}

#[test]
fn ecdsa_p256_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let msg = data(777, 9);
    write(dir.path(), "msg", &msg);
    let sk = SigningKey::generate(SignatureAlgorithm::EcdsaP256).unwrap();
    write(
        dir.path(),
        "pub.pem",
        sk.public_key().to_spki_pem().as_bytes(),
    );
    write(dir.path(), "sig", sk.sign(&msg).unwrap().as_bytes());
    openssl_ok(
        &[
            "dgst",
            "-sha256",
            "-verify",
            "pub.pem",
            "-signature",
            "sig",
            "msg",
        ],
        dir.path(),
    );
    openssl_ok(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "okey.pem",
        ],
        dir.path(),
    );
    openssl_ok(
        &["pkey", "-in", "okey.pem", "-pubout", "-out", "opub.pem"],
        dir.path(),
    );
    openssl_ok(
        &[
            "dgst", "-sha256", "-sign", "okey.pem", "-out", "osig", "msg",
        ],
        dir.path(),
    );
    let vk =
        VerifyingKey::from_spki_pem(&std::fs::read_to_string(dir.path().join("opub.pem")).unwrap())
            .unwrap();
    assert_eq!(vk.algorithm(), SignatureAlgorithm::EcdsaP256);
    vk.verify_bytes(&msg, &std::fs::read(dir.path().join("osig")).unwrap())
        .unwrap();
}

#[test]
fn hashes_match_openssl_dgst() {
    let dir = tempfile::tempdir().unwrap();
    for (i, len) in [0usize, 1, 55, 56, 64, 1000, 1 << 20]
        .into_iter()
        .enumerate()
    {
        let msg = data(len, i as u8);
        write(dir.path(), "msg", &msg);
        for (suite, flag) in [(Suite::Gm, "-sm3"), (Suite::Intl, "-sha256")] {
            let out = openssl_ok(&["dgst", flag, "-r", "msg"], dir.path());
            let theirs = out.split_whitespace().next().unwrap();
            assert_eq!(hash(suite, &msg).to_hex(), theirs, "{suite} len {len}");
        }
    }
}

#[test]
fn hmacs_match_openssl_mac() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (klen, len)) in [(1usize, 0usize), (16, 100), (32, 5000), (64, 64), (100, 10)]
        .into_iter()
        .enumerate()
    {
        let key = data(klen, 100 + i as u8);
        let msg = data(len, i as u8);
        write(dir.path(), "msg", &msg);
        let hexkey = format!("hexkey:{}", hex::encode(&key));
        for (suite, digest) in [(Suite::Gm, "SM3"), (Suite::Intl, "SHA256")] {
            let out = openssl_ok(
                &[
                    "mac", "-digest", digest, "-macopt", &hexkey, "-in", "msg", "HMAC",
                ],
                dir.path(),
            );
            let ours = MacKey::from_bytes(suite, &key).unwrap().mac(&msg);
            assert_eq!(
                ours.to_hex(),
                out.trim().to_ascii_lowercase(),
                "HMAC-{digest} klen {klen} len {len}"
            );
        }
    }
}

/// The CTR half of our GCM ciphertexts equals OpenSSL's CTR output from counter block
/// `nonce ‖ 00000002` (SP 800-38D: J0 = nonce ‖ 1, encryption starts at inc32(J0)).
#[test]
fn gcm_ciphertext_matches_openssl_ctr_keystream() {
    let dir = tempfile::tempdir().unwrap();
    for (suite, cipher) in [(Suite::Gm, "-sm4-ctr"), (Suite::Intl, "-aes-256-ctr")] {
        let key = DataKey::generate(suite).unwrap();
        let nonce: [u8; 12] = data(12, 3).try_into().unwrap();
        let pt = data(1000, 5);
        write(dir.path(), "pt", &pt);
        let sealed = Aead::new(&key).encrypt(&nonce, b"aad", &pt).unwrap();
        let iv = format!("{}00000002", hex::encode(nonce));
        openssl_ok(
            &[
                "enc",
                cipher,
                "-K",
                &hex::encode(key.expose_secret()),
                "-iv",
                &iv,
                "-in",
                "pt",
                "-out",
                "ct",
            ],
            dir.path(),
        );
        let ct = std::fs::read(dir.path().join("ct")).unwrap();
        assert_eq!(&sealed[..pt.len()], ct.as_slice(), "{suite}");
    }
}
