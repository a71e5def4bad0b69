//! Published test vectors, run through the crate's public API wherever it exposes the primitive.

use caretrail_crypto::{
    Aead, DataKey, HashValue, Hasher, MacKey, SM2_DEFAULT_DISTID, Signature, SignatureAlgorithm,
    SigningKey, Suite, VerifyingKey, hash,
};

use crate::h;

#[test]
fn sm3_gbt_32905_examples() {
    // GB/T 32905-2016 Annex A, examples 1 and 2.
    assert_eq!(
        hash(Suite::Gm, b"abc").to_hex(),
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    );
    let msg = b"abcd".repeat(16);
    let expected = "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732";
    assert_eq!(hash(Suite::Gm, &msg).to_hex(), expected);
    // Same through the incremental hasher, fed unevenly.
    let mut hasher = Hasher::new(Suite::Gm);
    for piece in msg.chunks(7) {
        hasher.update(piece);
    }
    assert_eq!(
        hasher.finalize(),
        HashValue::from_hex(Suite::Gm, expected).unwrap()
    );
}

#[test]
fn sha256_nist_examples() {
    // FIPS 180-2 Appendix B / NIST CAVP "SHA256ShortMsg" examples.
    assert_eq!(
        hash(Suite::Intl, b"abc").to_hex(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        hash(
            Suite::Intl,
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        )
        .to_hex(),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    assert_eq!(
        hash(Suite::Intl, b"").to_hex(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // One million 'a' (FIPS 180-2 B.3), streamed.
    let mut hasher = Hasher::new(Suite::Intl);
    let block = [b'a'; 1000];
    for _ in 0..1000 {
        hasher.update(&block);
    }
    assert_eq!(
        hasher.finalize().to_hex(),
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
    );
}

#[test]
fn sm4_gbt_32907_examples() {
    // GB/T 32907-2016 Annex A. The block cipher is not part of our API (only SM4-GCM is), so
    // this checks the `sm4` crate the gm suite is built on.
    use sm4::Sm4;
    use sm4::cipher::{BlockEncrypt, KeyInit};
    let key = h("0123456789abcdeffedcba9876543210");
    let cipher = Sm4::new_from_slice(&key).unwrap();
    let mut block: sm4::cipher::Block<Sm4> = <[u8; 16]>::try_from(key.as_slice()).unwrap().into();
    cipher.encrypt_block(&mut block);
    assert_eq!(block.to_vec(), h("681edf34d206965e86b3e94f536e4246"));
    // Example 2: encrypt the plaintext 1,000,000 times with the same key.
    let mut block: sm4::cipher::Block<Sm4> = <[u8; 16]>::try_from(key.as_slice()).unwrap().into();
    for _ in 0..1_000_000 {
        cipher.encrypt_block(&mut block);
    }
    assert_eq!(block.to_vec(), h("595298c7c6fd271f0402f804c33d3f66"));
}

#[test]
fn sm4_gcm_rfc_8998_a1() {
    let key = DataKey::from_hex(Suite::Gm, "0123456789ABCDEFFEDCBA9876543210").unwrap();
    let nonce: [u8; 12] = h("00001234567800000000ABCD").try_into().unwrap();
    let aad = h("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2");
    let pt = h(
        "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD
                EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA",
    );
    let expected = h(
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735
                      D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D
                      83DE3541E4C2B58177E065A9BF7B62EC",
    );
    let aead = Aead::new(&key);
    assert_eq!(aead.encrypt(&nonce, &aad, &pt).unwrap(), expected);
    assert_eq!(aead.decrypt(&nonce, &aad, &expected).unwrap(), pt);
}

#[test]
fn aes_256_gcm_nist_examples() {
    // NIST CAVP gcmEncryptExtIV256.rsp, [Keylen=256, IVlen=96, PTlen=0, AADlen=0, Taglen=128], Count 0.
    let key = DataKey::from_hex(
        Suite::Intl,
        "b52c505a37d78eda5dd34f20c22540ea1b58963cf8e5bf8ffa85f9f2492505b4",
    )
    .unwrap();
    let nonce: [u8; 12] = h("516c33929df5a3284ff463d7").try_into().unwrap();
    assert_eq!(
        Aead::new(&key).encrypt(&nonce, b"", b"").unwrap(),
        h("bdc1ac884d332457a1d2664f168c76f0")
    );
    // GCM specification (McGrew & Viega, as published with NIST SP 800-38D), test case 16.
    let key = DataKey::from_hex(
        Suite::Intl,
        "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
    )
    .unwrap();
    let nonce: [u8; 12] = h("cafebabefacedbaddecaf888").try_into().unwrap();
    let aad = h("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    let pt = h(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
                1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
    );
    let expected = h(
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa
                      8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662
                      76fc6ece0f4e1768cddf8853bb2d551b",
    );
    let aead = Aead::new(&key);
    assert_eq!(aead.encrypt(&nonce, &aad, &pt).unwrap(), expected);
    assert_eq!(aead.decrypt(&nonce, &aad, &expected).unwrap(), pt);
}

#[test]
fn hmac_sha256_rfc_4231() {
    let cases: [(Vec<u8>, &[u8], &str); 3] = [
        (
            vec![0x0b; 20],
            b"Hi There",
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        (
            b"Jefe".to_vec(),
            b"what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            vec![0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
    ];
    for (key, msg, tag) in cases {
        let key = MacKey::from_bytes(Suite::Intl, &key).unwrap();
        assert_eq!(key.mac(msg).to_hex(), tag);
        key.verify(msg, &h(tag)).unwrap();
    }
}

#[test]
fn hmac_sm3_vectors() {
    // RFC 4231 test cases 1, 2 and 6 with SM3: the values GmSSL 3.1, BouncyCastle's SM3 HMac test
    // and OpenSSL 3.0 (`openssl mac -digest SM3 ... HMAC`, re-checked live in openssl.rs) agree on.
    let cases: [(Vec<u8>, &[u8], &str); 3] = [
        (
            vec![0x0b; 20],
            b"Hi There",
            "51b00d1fb49832bfb01c3ce27848e59f871d9ba938dc563b338ca964755cce70",
        ),
        (
            b"Jefe".to_vec(),
            b"what do ya want for nothing?",
            "2e87f1d16862e6d964b50a5200bf2b10b764faa9680a296a2405f24bec39f882",
        ),
        (
            vec![0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            "b4fd844e13342002f0b2e0690ea7741f1497d993a70494cea601e657bedf67a0",
        ),
    ];
    for (key, msg, tag) in cases {
        let key = MacKey::from_bytes(Suite::Gm, &key).unwrap();
        assert_eq!(key.mac(msg).to_hex(), tag);
    }
}

#[test]
fn ed25519_rfc_8032_tests_1_to_3() {
    let cases = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
        (
            "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        ),
    ];
    for (secret, public, msg, sig) in cases {
        let sk = SigningKey::from_secret_bytes(SignatureAlgorithm::Ed25519, &h(secret)).unwrap();
        assert_eq!(sk.public_key().to_raw_bytes(), h(public));
        let signature = sk.sign(&h(msg)).unwrap();
        assert_eq!(signature.as_bytes(), h(sig).as_slice());
        let vk = VerifyingKey::from_raw_bytes(SignatureAlgorithm::Ed25519, &h(public)).unwrap();
        vk.verify(
            &h(msg),
            &Signature::from_bytes(SignatureAlgorithm::Ed25519, &h(sig)).unwrap(),
        )
        .unwrap();
    }
}

/// GB/T 32918.5-2017 Annex A (identical to GM/T 0003.5-2012 Annex A): SM2 signature on the
/// recommended curve, ID_A = "1234567812345678", M = "message digest". The exact signature with
/// the example's fixed k is reproduced by a unit test in src/sm2impl.rs.
#[test]
fn sm2_gbt_32918_recommended_curve_example() {
    let d = h("3945208F 7B2144B1 3F36E38A C6D39F95 88939369 2860B51A 42FB81EF 4DF7C5B8");
    let public = h("04
        09F9DF31 1E5421A1 50DD7D16 1E4BC5C6 72179FAD 1833FC07 6BB08FF3 56F35020
        CCEA490C E26775A5 2DC6EA71 8CC1AA60 0AED05FB F35E084A 6632F607 2DA9AD13");
    let r = h("F5A03B06 48D2C463 0EEAC513 E1BB81A1 5944DA38 27D5B741 43AC7EAC EEE720B3");
    let s = h("B1B6AA29 DF212FD8 763182BC 0D421CA1 BB9038FD 1F7F42D4 840B69C4 85BBC1AA");
    // DER SEQUENCE { INTEGER r, INTEGER s }; both have the high bit set, hence the 00 pads.
    let mut der = vec![0x30, 0x46, 0x02, 0x21, 0x00];
    der.extend_from_slice(&r);
    der.extend_from_slice(&[0x02, 0x21, 0x00]);
    der.extend_from_slice(&s);

    let vk = VerifyingKey::from_raw_bytes(SignatureAlgorithm::Sm2, &public).unwrap();
    assert_eq!(
        vk.sm2_z_a(SM2_DEFAULT_DISTID).unwrap().to_hex(),
        "b2e14c5c79c6df5b85f4fe7ed8db7a262b9da7e07ccb0ea9f4747b8ccda8a4f3"
    );
    let sig = Signature::from_bytes(SignatureAlgorithm::Sm2, &der).unwrap();
    vk.verify(b"message digest", &sig).unwrap();
    vk.verify_sm2_with_distid(b"message digest", &sig, SM2_DEFAULT_DISTID)
        .unwrap();
    assert!(vk.verify(b"message digesT", &sig).is_err());

    let sk = SigningKey::from_secret_bytes(SignatureAlgorithm::Sm2, &d).unwrap();
    assert_eq!(sk.public_key(), vk);
    let ours = sk.sign(b"message digest").unwrap();
    vk.verify(b"message digest", &ours).unwrap();
}

/// OpenSSL's own SM2 key from test/recipes/30-test_evp_data/evppkey_sm2.txt ("SM2_key1"): its
/// PKCS#8 encoding parses as SM2, and a signature made with it verifies (the file's Verify
/// vectors are over pre-hashed inputs, which our message-level API does not take).
#[test]
fn sm2_openssl_test_key_parses() {
    let pem = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqBHM9VAYItBG0wawIBAQQg0JFWczAXva2An9m7
2MaT9gIwWTFptvlKrxyO4TjMmbWhRANCAAQ5OirZ4n5DrKqrhaGdO4VZHhRAYVcX
Wt3Te/d/8Mr57Tf886i09VwDhSMmH8pmNq/mp6+ioUgqYG9cs6GLLioe
-----END PRIVATE KEY-----
";
    let sk = SigningKey::from_pkcs8_pem(pem).unwrap();
    assert_eq!(sk.algorithm(), SignatureAlgorithm::Sm2);
    assert_eq!(sk.suite(), Suite::Gm);
    let sig = sk.sign(b"The floofy bunnies hop at midnight").unwrap();
    sk.public_key()
        .verify(b"The floofy bunnies hop at midnight", &sig)
        .unwrap();
}
