//! The file-level helpers the CLI is a thin shell over.

use std::path::Path;

use caretrail_crypto::tools::{
    decrypt_file, encrypt_file, hash_file, keygen_files, load_signature_arg, public_key_path,
    sign_file, verify_file,
};
use caretrail_crypto::{CryptoError, DataKey, SignatureAlgorithm, Suite, hash};

use crate::data;

#[test]
fn public_key_path_naming() {
    assert_eq!(
        public_key_path(Path::new("dir/key.pem")),
        Path::new("dir/key.pub.pem")
    );
    assert_eq!(public_key_path(Path::new("key")), Path::new("key.pub.pem"));
    assert_eq!(
        public_key_path(Path::new("partner.key")),
        Path::new("partner.key.pub.pem")
    );
}

#[test]
fn keygen_sign_verify_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("payload.json");
    std::fs::write(&file, br#"{"hello":"world"}"#).unwrap();
    for alg in [SignatureAlgorithm::Sm2, SignatureAlgorithm::Ed25519] {
        let key = dir.path().join(format!("{alg}.pem"));
        let out = keygen_files(alg, &key, false).unwrap();
        assert_eq!(out.public_path, dir.path().join(format!("{alg}.pub.pem")));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // Refuses to overwrite unless forced.
        let err = keygen_files(alg, &key, false).unwrap_err();
        assert!(matches!(
            err,
            CryptoError::Io {
                kind: std::io::ErrorKind::AlreadyExists,
                ..
            }
        ));
        keygen_files(alg, &key, true).unwrap();

        let sig = sign_file(&key, &file).unwrap();
        let b64 = sig.to_base64();
        verify_file(&out.public_path, &b64, &file).unwrap();
        // Signature in a file, with a trailing newline as `> sig.b64` leaves it.
        let sig_file = dir.path().join("sig.b64");
        std::fs::write(&sig_file, format!("{b64}\n")).unwrap();
        verify_file(&out.public_path, sig_file.to_str().unwrap(), &file).unwrap();
        // Raw signature bytes in a file.
        std::fs::write(&sig_file, sig.as_bytes()).unwrap();
        assert_eq!(
            load_signature_arg(sig_file.to_str().unwrap()).unwrap(),
            sig.as_bytes()
        );
        // A private key works as the verification key too.
        verify_file(&key, &b64, &file).unwrap();

        let altered = dir.path().join("altered.json");
        std::fs::write(&altered, br#"{"hello":"World"}"#).unwrap();
        assert_eq!(
            verify_file(&out.public_path, &b64, &altered),
            Err(CryptoError::SignatureInvalid)
        );
        assert!(
            verify_file(&out.public_path, &b64, &altered)
                .unwrap_err()
                .is_verification_failure()
        );
        let usage = verify_file(&out.public_path, "%%%", &file).unwrap_err();
        assert!(matches!(usage, CryptoError::Malformed(_)));
        assert!(!usage.is_verification_failure());
        // Signing with a public key is a clear error.
        assert!(matches!(
            sign_file(&out.public_path, &file),
            Err(CryptoError::InvalidKey(_))
        ));
    }
    // Missing files name the path.
    let err = sign_file(&dir.path().join("nope.pem"), &file).unwrap_err();
    assert!(err.to_string().contains("nope.pem"), "{err}");
}

#[test]
fn hash_and_encrypt_files() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("record.bin");
    let pt = data(200_000, 8);
    std::fs::write(&input, &pt).unwrap();
    for suite in Suite::ALL {
        assert_eq!(hash_file(suite, Some(&input)).unwrap(), hash(suite, &pt));
        let key = DataKey::generate(suite).unwrap();
        let enc = dir.path().join("record.ct");
        let dec = dir.path().join("record.out");
        assert_eq!(
            encrypt_file(&key, Some(&input), Some(&enc)).unwrap(),
            pt.len() as u64
        );
        assert_eq!(
            decrypt_file(&key, Some(&enc), Some(&dec)).unwrap(),
            pt.len() as u64
        );
        assert_eq!(std::fs::read(&dec).unwrap(), pt);
        std::fs::remove_file(&dec).unwrap();

        // A tampered final chunk: error, and no output file (not even a partial one).
        let mut ct = std::fs::read(&enc).unwrap();
        let last = ct.len() - 1;
        ct[last] ^= 1;
        std::fs::write(&enc, &ct).unwrap();
        assert_eq!(
            decrypt_file(&key, Some(&enc), Some(&dec)),
            Err(CryptoError::AuthenticationFailed)
        );
        assert!(!dec.exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            .collect();
        assert!(leftovers.is_empty());
        // Truncated.
        std::fs::write(&enc, &ct[..ct.len() / 2]).unwrap();
        assert!(matches!(
            decrypt_file(&key, Some(&enc), Some(&dec)),
            Err(CryptoError::Truncated(_))
        ));
    }
}
