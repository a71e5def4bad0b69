//! Signed notes and verifier keys.
//!
//! Interop vectors from golang.org/x/mod/sumdb/note (`note.go` package docs and
//! `note_test.go`: the PeterNeumann / EnochRoot keys, signatures and malformed notes) and from
//! transparency-dev/formats `note/note_cosigv1_test.go` (`TestCoSigV1NewVerifier` vkeys).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use caretrail_crypto::{SignatureAlgorithm, SigningKey, hash};
use caretrail_ledger_proofs::note::{MAX_SIGNATURES, key_id};
use caretrail_ledger_proofs::{
    Note, NoteKeyType, NoteSignature, NoteSigner, ProofError, Suite, VerifierKey,
};

use super::common::{key, key_alg};

const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_SKEY_MATERIAL: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

fn peter_signer() -> NoteSigner {
    let material = B64.decode(PETER_SKEY_MATERIAL).unwrap();
    assert_eq!(material[0], 0x01, "Ed25519 algorithm byte");
    let key = SigningKey::from_secret_bytes(SignatureAlgorithm::Ed25519, &material[1..]).unwrap();
    NoteSigner::new("PeterNeumann", key).unwrap()
}

#[test]
fn go_reference_vkey_and_signature() {
    let signer = peter_signer();
    assert_eq!(signer.key_id(), 0xc74f20a3);
    assert_eq!(signer.verifier_key().to_vkey(), PETER_VKEY);
    let mut note = Note::new(TEXT).unwrap();
    signer.sign_note(&mut note).unwrap();
    assert_eq!(note.encode(), format!("{TEXT}\n{PETER_SIG}"));
    // Re-signing replaces the existing signature by the same key.
    signer.sign_note(&mut note).unwrap();
    assert_eq!(note.encode(), format!("{TEXT}\n{PETER_SIG}"));
}

#[test]
fn go_reference_open() {
    let peter = VerifierKey::parse(PETER_VKEY).unwrap();
    let enoch = VerifierKey::parse(ENOCH_VKEY).unwrap();
    assert_eq!(peter.to_vkey(), PETER_VKEY);
    assert_eq!(enoch.to_vkey(), ENOCH_VKEY);
    let msg = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
    let note = Note::parse(msg.as_bytes()).unwrap();
    assert_eq!(note.text(), TEXT);
    assert_eq!(note.signatures().len(), 2);
    assert_eq!(note.encode(), msg);

    // One verified, one unknown (ignored).
    let v = note.verify(std::slice::from_ref(&peter)).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(
        (v[0].name.as_str(), v[0].key_id),
        ("PeterNeumann", 0xc74f20a3)
    );
    // Both verified.
    let v = note.verify(&[peter.clone(), enoch.clone()]).unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!((v[1].name.as_str(), v[1].key_id), ("EnochRoot", 0xaf0cfe78));
    // None known.
    assert!(matches!(
        note.verify(&[]),
        Err(ProofError::NoTrustedSignature(_))
    ));
    assert!(note.verify_known(&[]).unwrap().is_empty());

    // Duplicated known key that signed: ambiguous; that did not sign: fine.
    let only_enoch = Note::parse(format!("{TEXT}\n{ENOCH_SIG}").as_bytes()).unwrap();
    assert!(matches!(
        only_enoch.verify(&[enoch.clone(), peter.clone(), enoch.clone()]),
        Err(ProofError::AmbiguousKey { .. })
    ));
    let only_peter = Note::parse(format!("{TEXT}\n{PETER_SIG}").as_bytes()).unwrap();
    only_peter
        .verify(&[enoch.clone(), peter.clone(), enoch.clone()])
        .unwrap();

    // Too many signatures.
    let many = format!("{TEXT}\n{}", PETER_SIG.repeat(MAX_SIGNATURES + 1));
    assert!(matches!(
        Note::parse(many.as_bytes()),
        Err(ProofError::LimitExceeded(_))
    ));
    let hundred = format!("{TEXT}\n{}", PETER_SIG.repeat(MAX_SIGNATURES));
    assert_eq!(
        Note::parse(hundred.as_bytes())
            .unwrap()
            .verify(std::slice::from_ref(&peter))
            .unwrap()
            .len(),
        1,
        "repeated signatures by one key count once"
    );

    // Invalid signature by a known key rejects the note.
    let (a, b) = PETER_SIG.split_at(60);
    let bad = format!("{TEXT}\n{a}ABCD{b}");
    assert!(matches!(
        Note::parse(bad.as_bytes())
            .unwrap()
            .verify(std::slice::from_ref(&peter)),
        Err(ProofError::SignatureInvalid {
            key_id: 0xc74f20a3,
            ..
        })
    ));

    // Duplicated verified and unverified signatures.
    let (a, b) = ENOCH_SIG.split_at(60);
    let dup = format!("{TEXT}\n{PETER_SIG}{PETER_SIG}{ENOCH_SIG}{ENOCH_SIG}{a}ABCD{b}");
    let v = Note::parse(dup.as_bytes())
        .unwrap()
        .verify(std::slice::from_ref(&peter))
        .unwrap();
    assert_eq!(v.len(), 1);
}

#[test]
fn go_reference_malformed_notes() {
    let bad: Vec<Vec<u8>> = vec![
        TEXT.into(),
        format!("{TEXT}\n").into(),
        format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]).into(),
        format!("\x01{TEXT}\n{PETER_SIG}").into(),
        [b"\xff".as_slice(), format!("{TEXT}\n{PETER_SIG}").as_bytes()].concat(),
        format!("{TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=").into(),
        format!("{TEXT}\n{PETER_SIG}Unexpected line.\n").into(),
        // Ours: bad base64, missing space, empty signature, short signature, CR, tab.
        format!("{TEXT}\n— PeterNeumann x08go/ZJku!!\n").into(),
        format!("{TEXT}\n—PeterNeumann x08go/ZJkuBS9U\n").into(),
        format!("{TEXT}\n— PeterNeumann \n").into(),
        format!("{TEXT}\n— PeterNeumann AAAAAA==\n").into(),
        format!("{TEXT}\r\n{PETER_SIG}").into(),
        format!("tab\there\n\n{PETER_SIG}").into(),
        format!("{TEXT}\n— Peter+Neumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n").into(),
    ];
    for msg in bad {
        assert!(
            Note::parse(&msg).is_err(),
            "accepted {:?}",
            String::from_utf8_lossy(&msg)
        );
    }
    assert!(Note::new("no newline").is_err());
    assert!(Note::new("ctrl \x07\n").is_err());
}

#[test]
fn go_reference_vkey_manglings_are_rejected() {
    VerifierKey::parse(PETER_VKEY).unwrap();
    let b = PETER_VKEY.as_bytes();
    for i in 0..=b.len() {
        for j in i + 1..=b.len() {
            if i == 0 && j == b.len() {
                continue;
            }
            if let Ok(s) = std::str::from_utf8(&b[i..j]) {
                assert!(VerifierKey::parse(s).is_err(), "accepted {s:?}");
            }
        }
    }
    let mut m = b.to_vec();
    for i in 0..m.len() {
        m[i] += 1;
        if let Ok(s) = std::str::from_utf8(&m) {
            assert!(VerifierKey::parse(s).is_err(), "accepted {s:?}");
        }
        m[i] -= 1;
    }
    // Wrong key length and unknown algorithm, each with an adjusted key hash.
    assert!(
        VerifierKey::parse(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        )
        .is_err()
    );
    assert!(
        VerifierKey::parse("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
            .is_err()
    );
}

#[test]
fn transparency_dev_vkeys() {
    // Ed25519 note key whose base64 contains '+'.
    let k =
        VerifierKey::parse("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6").unwrap();
    assert_eq!(k.key_type(), NoteKeyType::Ed25519);
    assert_eq!(k.key_id(), 0x7997405c);
    // Native Ed25519 cosignature/v1 (type 0x04) key.
    let k =
        VerifierKey::parse("remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2")
            .unwrap();
    assert_eq!(k.key_type(), NoteKeyType::Ed25519Cosignature);
    assert_eq!(
        k.to_vkey(),
        "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
    );
    for bad in [
        "bananas.sigstore.dev+12344556",
        "rekor.sigstore.dev+12345678+THIS_IS_NOT_BASE64!",
        "rekor.sigstore.dev+12345678+AwEB",
        "rekor.sigstore.dev+NOT_A_NUMBER+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6",
        "TEST+00000000+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6",
    ] {
        assert!(VerifierKey::parse(bad).is_err(), "accepted {bad}");
    }
}

#[test]
fn sm2_note_keys_are_caretrail_specific() {
    let signer = NoteSigner::new("caretrail.cn/tenant-1", key(Suite::Gm, 7)).unwrap();
    assert_eq!(signer.key_type(), NoteKeyType::Sm2);
    let vkey = signer.verifier_key();
    let text = vkey.to_vkey();
    let material = B64.decode(text.splitn(3, '+').nth(2).unwrap()).unwrap();
    assert_eq!(&material[..23], b"\xffcaretrail/sm2-note/v1\n");
    assert_eq!(material.len(), 23 + 65);
    assert_eq!(material[23], 0x04, "uncompressed SEC1 point");
    // Key id = SM3(name ‖ 0x0A ‖ type ‖ point)[:4].
    let mut input = b"caretrail.cn/tenant-1\n".to_vec();
    input.extend_from_slice(&material);
    let digest = hash(Suite::Gm, &input);
    let want = u32::from_be_bytes(digest.as_bytes()[..4].try_into().unwrap());
    assert_eq!(vkey.key_id(), want);
    assert_eq!(
        key_id("caretrail.cn/tenant-1", NoteKeyType::Sm2, &material[23..]),
        want
    );
    let parsed = VerifierKey::parse(&text).unwrap();
    assert_eq!(parsed, vkey);
    // Sign and verify (SM2 signatures are randomized: verify, don't compare).
    let mut note = Note::new("hello\nworld\n").unwrap();
    signer.sign_note(&mut note).unwrap();
    let reparsed = Note::parse(note.encode().as_bytes()).unwrap();
    let v = reparsed.verify(&[parsed]).unwrap();
    assert_eq!(v[0].key_type, NoteKeyType::Sm2);
    // serde as a vkey string.
    let json = serde_json::to_string(&vkey).unwrap();
    assert_eq!(json, format!("\"{text}\""));
    let back: VerifierKey = serde_json::from_str(&json).unwrap();
    assert_eq!(back, vkey);
}

#[test]
fn key_types_and_names_are_checked() {
    // P-256 keys cannot sign notes.
    assert!(matches!(
        NoteSigner::new("x", key_alg(SignatureAlgorithm::EcdsaP256, 1)),
        Err(ProofError::UnsupportedKeyType(_))
    ));
    // A key of the wrong algorithm for the type.
    assert!(VerifierKey::new("x", NoteKeyType::Sm2, key(Suite::Intl, 1).public_key()).is_err());
    for name in ["", "a b", "a+b", "a\nb", "tab\t", "nbsp\u{a0}"] {
        assert!(
            NoteSigner::new(name, key(Suite::Intl, 1)).is_err(),
            "{name:?}"
        );
    }
    // A valid signature by the right key under another name or id is not that key's.
    let signer = NoteSigner::new("log.example/a", key(Suite::Intl, 2)).unwrap();
    let other_name = NoteSigner::new("log.example/b", key(Suite::Intl, 2)).unwrap();
    let mut note = Note::new("text\n").unwrap();
    signer.sign_note(&mut note).unwrap();
    assert!(matches!(
        note.verify(&[other_name.verifier_key()]),
        Err(ProofError::NoTrustedSignature(_))
    ));
    // Signature lines roundtrip.
    let line = note.signatures()[0].to_line();
    assert_eq!(
        NoteSignature::parse_line(&line).unwrap(),
        note.signatures()[0]
    );
}
