//! X.509 certificates: our own round trips and checks, then OpenSSL 3 reading and verifying
//! what we issue (and us reading what OpenSSL issues). The OpenSSL tests fail when `openssl` is
//! missing, like those in openssl.rs.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use caretrail_crypto::x509::random_serial;
use caretrail_crypto::{
    Certificate, CertificateRequest, CryptoError, DistinguishedName, KeyUsage, SM2_DEFAULT_DISTID,
    SignatureAlgorithm, SigningKey, Validity, hash, issue_certificate, self_signed_ca,
};
use der::{Decode as _, Encode as _};

use crate::openssl::{openssl, openssl_ok, write};

const ALGS: [SignatureAlgorithm; 3] = [
    SignatureAlgorithm::Ed25519,
    SignatureAlgorithm::Sm2,
    SignatureAlgorithm::EcdsaP256,
];

const DAY: u64 = 86_400;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn ca_name() -> DistinguishedName {
    DistinguishedName::tenant_ca("tenant-7", "Acme Health")
}

fn leaf_name() -> DistinguishedName {
    DistinguishedName::institution("tenant-7", "Acme Health", "inst-42", "level-2")
}

struct Chain {
    ca_key: SigningKey,
    ca: Certificate,
    leaf_key: SigningKey,
    leaf: Certificate,
    serial: u128,
}

fn chain_with(alg: SignatureAlgorithm, ca_validity: Validity, leaf_validity: Validity) -> Chain {
    let ca_key = SigningKey::generate(alg).unwrap();
    let ca = self_signed_ca(&ca_key, &ca_name(), ca_validity).unwrap();
    let leaf_key = SigningKey::generate(alg).unwrap();
    let request =
        CertificateRequest::institution(leaf_name(), leaf_key.public_key(), leaf_validity).unwrap();
    let leaf = issue_certificate(&ca_key, &ca, &request).unwrap();
    Chain {
        ca_key,
        ca,
        leaf_key,
        leaf,
        serial: request.serial,
    }
}

fn chain(alg: SignatureAlgorithm) -> Chain {
    let t = now();
    chain_with(
        alg,
        Validity::new(t - DAY, t + 3650 * DAY),
        Validity::new(t - 60, t + 365 * DAY),
    )
}

/// Re-encode a certificate after editing its ASN.1 (the signature is left as it was).
fn edit(cert: &Certificate, f: impl FnOnce(&mut x509_cert::Certificate)) -> Vec<u8> {
    let mut c = x509_cert::Certificate::from_der(cert.as_der()).unwrap();
    f(&mut c);
    c.to_der().unwrap()
}

#[test]
fn pem_der_round_trips_and_accessors() {
    for alg in ALGS {
        let c = chain(alg);
        for cert in [&c.ca, &c.leaf] {
            let pem = cert.to_pem();
            assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{alg}");
            assert_eq!(&Certificate::from_pem(&pem).unwrap(), cert);
            assert_eq!(&Certificate::from_der(&cert.to_der()).unwrap(), cert);
            assert_eq!(cert.to_der(), cert.as_der());
            assert_eq!(cert.signature_algorithm(), alg);
            assert_eq!(
                cert.fingerprint(),
                hash(alg.suite(), cert.as_der()),
                "{alg}"
            );
            assert_eq!(cert.issuer(), c.ca.subject());
            assert_eq!(cert.issuer_name().unwrap(), ca_name());
            assert_eq!(cert.authority_key_id(), c.ca.subject_key_id());
            assert_eq!(
                cert.subject_key_id().unwrap(),
                cert.public_key().key_id().as_bytes()
            );
        }

        let leaf = &c.leaf;
        // Whole bytes, as `openssl x509 -serial` prints them.
        let serial = c.serial.to_be_bytes();
        let first = serial.iter().position(|&b| b != 0).unwrap();
        assert_eq!(leaf.serial_hex(), hex::encode(&serial[first..]));
        assert_eq!(
            leaf.subject(),
            "CN=inst-42,OU=level-2,organizationIdentifier=tenant-7,O=Acme Health"
        );
        assert_eq!(leaf.subject(), leaf_name().to_string());
        let dn = leaf.subject_name().unwrap();
        assert_eq!(dn, leaf_name());
        assert_eq!(dn.tenant_id(), Some("tenant-7"));
        assert_eq!(dn.common_name, "inst-42");
        assert_eq!(dn.organizational_unit.as_deref(), Some("level-2"));
        assert_eq!(leaf.public_key(), c.leaf_key.verifying_key());
        assert!(!leaf.is_ca());
        assert_eq!(leaf.path_len(), None);
        assert_eq!(leaf.key_usage(), Some(KeyUsage::SIGNING));
        assert_eq!(
            leaf.validity(),
            Validity::new(leaf.not_before(), leaf.not_after())
        );
        assert!(leaf.not_after() - leaf.not_before() == 60 + 365 * DAY);

        let ca = &c.ca;
        assert_eq!(
            ca.subject(),
            "CN=Caretrail tenant CA,organizationIdentifier=tenant-7,O=Acme Health"
        );
        assert_eq!(ca.public_key(), c.ca_key.verifying_key());
        assert!(ca.is_ca());
        assert_eq!(ca.path_len(), Some(0));
        assert_eq!(ca.key_usage(), Some(KeyUsage::CA));
        assert_eq!(ca.authority_key_id(), ca.subject_key_id());
        assert!(format!("{ca:?}").contains("Caretrail tenant CA"));
    }
}

#[test]
fn validity_is_inclusive_and_far_dates_use_generalized_time() {
    let c = chain_with(
        SignatureAlgorithm::Ed25519,
        Validity::new(1_000_000_000, 253_402_300_799), // 9999-12-31T23:59:59Z
        Validity::new(2_524_607_999, 2_524_608_000),   // 2049-12-31T23:59:59Z, 2050-01-01
    );
    let leaf = &c.leaf;
    assert_eq!(leaf.not_before(), 2_524_607_999);
    assert_eq!(leaf.not_after(), 2_524_608_000);
    assert!(!leaf.valid_at(2_524_607_998));
    assert!(leaf.valid_at(2_524_607_999));
    assert!(leaf.valid_at(2_524_608_000));
    assert!(!leaf.valid_at(2_524_608_001));
    assert_eq!(c.ca.not_after(), 253_402_300_799);
    // RFC 5280: UTCTime (tag 0x17) through 2049, GeneralizedTime (0x18) from 2050.
    let x = x509_cert::Certificate::from_der(leaf.as_der()).unwrap();
    let v = x.tbs_certificate.validity;
    assert!(matches!(v.not_before, x509_cert::time::Time::UtcTime(_)));
    assert!(matches!(v.not_after, x509_cert::time::Time::GeneralTime(_)));

    // Year 10000 cannot be encoded.
    let key = SigningKey::generate(SignatureAlgorithm::Ed25519).unwrap();
    let err = self_signed_ca(&key, &ca_name(), Validity::new(0, 253_402_300_800)).unwrap_err();
    assert!(matches!(err, CryptoError::Malformed(_)), "{err}");
}

#[test]
fn verify_signed_by_accepts_the_issuer_and_nothing_else() {
    for alg in ALGS {
        let c = chain(alg);
        c.leaf.verify_signed_by(c.ca_key.verifying_key()).unwrap();
        c.ca.verify_signed_by(c.ca_key.verifying_key()).unwrap();
        c.leaf.verify_issued_by(&c.ca).unwrap();
        c.ca.verify_issued_by(&c.ca).unwrap();

        // Another key of the same algorithm, and the subject's own key.
        let other = SigningKey::generate(alg).unwrap();
        for key in [other.verifying_key(), c.leaf_key.verifying_key()] {
            assert_eq!(
                c.leaf.verify_signed_by(key),
                Err(CryptoError::SignatureInvalid),
                "{alg}"
            );
        }
        // A key of another algorithm.
        for other_alg in ALGS.into_iter().filter(|&a| a != alg) {
            let k = SigningKey::generate(other_alg).unwrap();
            assert_eq!(
                c.leaf.verify_signed_by(k.verifying_key()),
                Err(CryptoError::SignatureInvalid)
            );
        }

        // One altered byte of the TBSCertificate: "inst-42" becomes "inst-43".
        let der = c.leaf.to_der();
        let pos = der.windows(7).position(|w| w == b"inst-42").unwrap();
        let mut bad = der.clone();
        bad[pos + 6] = b'3';
        let bad = Certificate::from_der(&bad).unwrap();
        assert_eq!(bad.subject_name().unwrap().common_name, "inst-43");
        assert_eq!(
            bad.verify_signed_by(c.ca_key.verifying_key()),
            Err(CryptoError::SignatureInvalid)
        );
        assert_eq!(
            bad.verify_issued_by(&c.ca),
            Err(CryptoError::SignatureInvalid)
        );

        // A flipped signature bit.
        let mut bad = der.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        if let Ok(bad) = Certificate::from_der(&bad) {
            assert_eq!(
                bad.verify_signed_by(c.ca_key.verifying_key()),
                Err(CryptoError::SignatureInvalid)
            );
        }

        // Algorithm swapped (consistently inside and outside the TBS): refused for the real
        // issuer key, whose algorithm no longer matches.
        for other_alg in ALGS.into_iter().filter(|&a| a != alg) {
            let other_oid = match other_alg {
                SignatureAlgorithm::Ed25519 => "1.3.101.112",
                SignatureAlgorithm::Sm2 => "1.2.156.10197.1.501",
                SignatureAlgorithm::EcdsaP256 => "1.2.840.10045.4.3.2",
            };
            let oid = der::oid::ObjectIdentifier::new(other_oid).unwrap();
            let swapped = Certificate::from_der(&edit(&c.leaf, |x| {
                x.signature_algorithm.oid = oid;
                x.tbs_certificate.signature.oid = oid;
            }))
            .unwrap();
            assert_eq!(swapped.signature_algorithm(), other_alg);
            assert_eq!(
                swapped.verify_signed_by(c.ca_key.verifying_key()),
                Err(CryptoError::SignatureInvalid),
                "{alg} relabelled as {other_alg}"
            );
        }
    }
}

#[test]
fn verify_issued_by_checks_name_ca_flag_and_key_identifiers() {
    let c = chain(SignatureAlgorithm::Sm2);
    // A second CA with the same name but another key: the key identifiers disagree.
    let t = now();
    let impostor_key = SigningKey::generate(SignatureAlgorithm::Sm2).unwrap();
    let impostor = self_signed_ca(&impostor_key, &ca_name(), Validity::new(t, t + DAY)).unwrap();
    let err = c.leaf.verify_issued_by(&impostor).unwrap_err();
    assert!(matches!(err, CryptoError::CertificateRejected(_)), "{err}");
    assert!(err.is_verification_failure());

    // Another tenant's CA: the names disagree.
    let other_key = SigningKey::generate(SignatureAlgorithm::Sm2).unwrap();
    let other = self_signed_ca(
        &other_key,
        &DistinguishedName::tenant_ca("tenant-8", "Acme Health"),
        Validity::new(t, t + DAY),
    )
    .unwrap();
    let err = c.leaf.verify_issued_by(&other).unwrap_err();
    assert!(matches!(err, CryptoError::CertificateRejected(_)), "{err}");

    // A leaf is not a CA: it can neither be an issuer nor issue.
    let req = CertificateRequest::institution(
        leaf_name(),
        other_key.public_key(),
        Validity::new(t, t + DAY),
    )
    .unwrap();
    let err = issue_certificate(&c.leaf_key, &c.leaf, &req).unwrap_err();
    assert!(matches!(err, CryptoError::CertificateRejected(_)), "{err}");

    // The signing key must belong to the issuer certificate.
    let err = issue_certificate(&other_key, &c.ca, &req).unwrap_err();
    assert!(matches!(err, CryptoError::InvalidKey(_)), "{err}");

    // The tenant CA has path length 0: it certifies institutions, not other CAs.
    let sub_key = SigningKey::generate(SignatureAlgorithm::Sm2).unwrap();
    let sub_req = CertificateRequest::ca(
        DistinguishedName::new("sub"),
        sub_key.public_key(),
        Validity::new(t, t + DAY),
        None,
    )
    .unwrap();
    let err = issue_certificate(&c.ca_key, &c.ca, &sub_req).unwrap_err();
    assert!(matches!(err, CryptoError::CertificateRejected(_)), "{err}");
}

#[test]
fn requests_are_validated() {
    let key = SigningKey::generate(SignatureAlgorithm::Ed25519).unwrap();
    let t = now();
    let ca = self_signed_ca(&key, &ca_name(), Validity::new(t, t + DAY)).unwrap();
    let good =
        CertificateRequest::institution(leaf_name(), key.public_key(), Validity::new(t, t + DAY))
            .unwrap();
    issue_certificate(&key, &ca, &good).unwrap();

    let long = "x".repeat(65);
    let cases: Vec<(&str, CertificateRequest)> = vec![
        (
            "zero serial",
            CertificateRequest {
                serial: 0,
                ..good.clone()
            },
        ),
        (
            "reversed validity",
            CertificateRequest {
                validity: Validity::new(t + 1, t),
                ..good.clone()
            },
        ),
        (
            "empty key usage",
            CertificateRequest {
                key_usage: KeyUsage::default(),
                ..good.clone()
            },
        ),
        (
            "CA without keyCertSign",
            CertificateRequest {
                is_ca: true,
                ..good.clone()
            },
        ),
        (
            "keyCertSign without CA",
            CertificateRequest {
                key_usage: KeyUsage::CA,
                ..good.clone()
            },
        ),
        (
            "path length on a leaf",
            CertificateRequest {
                path_len: Some(1),
                ..good.clone()
            },
        ),
        (
            "empty CN",
            CertificateRequest {
                subject: DistinguishedName::new(""),
                ..good.clone()
            },
        ),
        (
            "65-character O",
            CertificateRequest {
                subject: DistinguishedName {
                    organization: Some(long),
                    ..leaf_name()
                },
                ..good.clone()
            },
        ),
        (
            "control character",
            CertificateRequest {
                subject: DistinguishedName::new("a\nb"),
                ..good.clone()
            },
        ),
        (
            "lower-case country",
            CertificateRequest {
                subject: DistinguishedName {
                    country: Some("cn".into()),
                    ..leaf_name()
                },
                ..good.clone()
            },
        ),
    ];
    for (what, req) in cases {
        let err = issue_certificate(&key, &ca, &req).unwrap_err();
        assert!(matches!(err, CryptoError::Malformed(_)), "{what}: {err}");
    }

    for _ in 0..100 {
        let s = random_serial().unwrap();
        assert!(s > 0 && s < 1 << 127);
    }
}

#[test]
fn names_escape_and_carry_unicode() {
    let dn = DistinguishedName {
        country: Some("CN".into()),
        organization: Some("北京协和医院, \"总院\"".into()),
        organization_identifier: Some("#t+1".into()),
        organizational_unit: Some(" 三级甲等 ".into()),
        common_name: "a;b<c>d\\e".into(),
    };
    assert_eq!(
        dn.to_string(),
        "CN=a\\;b\\<c\\>d\\\\e,OU=\\ 三级甲等\\ ,organizationIdentifier=\\#t\\+1,\
         O=北京协和医院\\, \\\"总院\\\",C=CN"
    );
    let key = SigningKey::generate(SignatureAlgorithm::Sm2).unwrap();
    let t = now();
    let ca = self_signed_ca(&key, &dn, Validity::new(t, t + DAY)).unwrap();
    assert_eq!(ca.subject(), dn.to_string());
    assert_eq!(ca.subject_name().unwrap(), dn);
    // 64 characters is the limit, counted in characters, not bytes.
    let max = DistinguishedName::new("医".repeat(64));
    self_signed_ca(&key, &max, Validity::new(t, t + DAY)).unwrap();
}

#[test]
fn strict_decoding() {
    let c = chain(SignatureAlgorithm::Ed25519);
    let der = c.leaf.to_der();

    assert!(matches!(
        Certificate::from_der(&[]),
        Err(CryptoError::Malformed(_))
    ));
    let mut trailing = der.clone();
    trailing.push(0);
    assert!(matches!(
        Certificate::from_der(&trailing),
        Err(CryptoError::Malformed(_))
    ));
    assert!(matches!(
        Certificate::from_der(&vec![0x30; 100_000]),
        Err(CryptoError::LimitExceeded(_))
    ));
    // Non-canonical: the outer length in a longer form than needed.
    let mut long_form = vec![0x30, 0x83, 0x00];
    long_form.extend_from_slice(&der[2..]);
    assert!(Certificate::from_der(&long_form).is_err());

    // PEM of something else.
    let key_pem = c.leaf_key.public_key().to_spki_pem();
    assert!(matches!(
        Certificate::from_pem(&key_pem),
        Err(CryptoError::Malformed(_))
    ));

    // Algorithm inside and outside the TBS differ.
    let sm2_oid = der::oid::ObjectIdentifier::new("1.2.156.10197.1.501").unwrap();
    let mismatch = edit(&c.leaf, |x| x.signature_algorithm.oid = sm2_oid);
    assert!(matches!(
        Certificate::from_der(&mismatch),
        Err(CryptoError::Malformed(_))
    ));

    // Ed25519 with parameters.
    let with_params = edit(&c.leaf, |x| {
        x.signature_algorithm.parameters = Some(der::Any::null());
        x.tbs_certificate.signature.parameters = Some(der::Any::null());
    });
    assert!(matches!(
        Certificate::from_der(&with_params),
        Err(CryptoError::Malformed(_))
    ));

    // An unknown critical extension is refused, a non-critical one ignored.
    let unknown = |critical| {
        edit(&c.leaf, |x| {
            x.tbs_certificate
                .extensions
                .as_mut()
                .unwrap()
                .push(x509_cert::ext::Extension {
                    extn_id: der::oid::ObjectIdentifier::new("1.2.3.4").unwrap(),
                    critical,
                    extn_value: der::asn1::OctetString::new(vec![0x05, 0x00]).unwrap(),
                });
        })
    };
    assert!(matches!(
        Certificate::from_der(&unknown(true)),
        Err(CryptoError::UnsupportedAlgorithm(_))
    ));
    Certificate::from_der(&unknown(false)).unwrap();

    // Duplicate extension.
    let dup = edit(&c.leaf, |x| {
        let exts = x.tbs_certificate.extensions.as_mut().unwrap();
        let first = exts[0].clone();
        exts.push(first);
    });
    assert!(matches!(
        Certificate::from_der(&dup),
        Err(CryptoError::Malformed(_))
    ));

    // Version 1.
    let v1 = edit(&c.leaf, |x| {
        x.tbs_certificate.version = x509_cert::Version::V1;
        x.tbs_certificate.extensions = None;
    });
    assert!(matches!(
        Certificate::from_der(&v1),
        Err(CryptoError::UnsupportedAlgorithm(_))
    ));

    // Negative serial.
    let negative = edit(&c.leaf, |x| {
        x.tbs_certificate.serial_number =
            x509_cert::serial_number::SerialNumber::from_der(&[0x02, 0x01, 0xff]).unwrap();
    });
    assert!(matches!(
        Certificate::from_der(&negative),
        Err(CryptoError::Malformed(_))
    ));

    // Unsupported subject key (X25519 is not a signature key).
    let x25519 = edit(&c.leaf, |x| {
        x.tbs_certificate.subject_public_key_info.algorithm.oid =
            der::oid::ObjectIdentifier::new("1.3.101.110").unwrap();
    });
    assert!(matches!(
        Certificate::from_der(&x25519),
        Err(CryptoError::UnsupportedAlgorithm(_))
    ));
}

#[test]
fn no_panics_on_truncated_or_corrupted_input() {
    for alg in ALGS {
        let der = chain(alg).leaf.to_der();
        for len in 0..der.len() {
            assert!(Certificate::from_der(&der[..len]).is_err());
        }
        for i in 0..der.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = der.clone();
                bad[i] ^= flip;
                if let Ok(cert) = Certificate::from_der(&bad) {
                    let _ = (cert.subject(), cert.issuer(), cert.serial_hex());
                    let _ = (cert.subject_name(), cert.issuer_name());
                    let _ = cert.verify_signed_by(cert.public_key());
                }
            }
        }
    }
}

// ---- OpenSSL 3 ----

fn distid_opt() -> String {
    format!(
        "distid:{}",
        std::str::from_utf8(SM2_DEFAULT_DISTID).unwrap()
    )
}

fn write_chain(dir: &Path, c: &Chain) {
    write(dir, "ca.pem", c.ca.to_pem().as_bytes());
    write(dir, "leaf.pem", c.leaf.to_pem().as_bytes());
}

#[test]
fn openssl_prints_our_certificates() {
    for (alg, sig_name) in [
        (SignatureAlgorithm::Ed25519, "ED25519"),
        (SignatureAlgorithm::Sm2, "SM2-with-SM3"),
        (SignatureAlgorithm::EcdsaP256, "ecdsa-with-SHA256"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let c = chain(alg);
        write_chain(dir.path(), &c);
        let leaf = openssl_ok(&["x509", "-in", "leaf.pem", "-noout", "-text"], dir.path());
        let ca = openssl_ok(&["x509", "-in", "ca.pem", "-noout", "-text"], dir.path());
        println!("{leaf}\n{ca}");
        for expected in [
            "Version: 3 (0x2)".to_string(),
            format!("Signature Algorithm: {sig_name}"),
            "Subject: O = Acme Health, organizationIdentifier = tenant-7, OU = level-2, CN = inst-42"
                .to_string(),
            "Issuer: O = Acme Health, organizationIdentifier = tenant-7, CN = Caretrail tenant CA"
                .to_string(),
            "X509v3 Basic Constraints: critical\n                CA:FALSE".to_string(),
            "X509v3 Key Usage: critical\n                Digital Signature, Non Repudiation"
                .to_string(),
        ] {
            assert!(leaf.contains(&expected), "{alg}: no {expected:?} in\n{leaf}");
        }
        for expected in [
            "CA:TRUE, pathlen:0",
            "Certificate Sign, CRL Sign",
            "Subject: O = Acme Health, organizationIdentifier = tenant-7, CN = Caretrail tenant CA",
        ] {
            assert!(ca.contains(expected), "{alg}: no {expected:?} in\n{ca}");
        }
        // Key identifiers are our KeyIds.
        let colon_hex = |bytes: &[u8]| {
            bytes
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        let leaf_ski = colon_hex(c.leaf_key.key_id().as_bytes());
        let ca_ski = colon_hex(c.ca_key.key_id().as_bytes());
        assert!(leaf.contains(&leaf_ski), "{alg}: {leaf}");
        assert!(leaf.contains(&ca_ski), "{alg}: {leaf}");

        let serial = openssl_ok(
            &["x509", "-in", "leaf.pem", "-noout", "-serial"],
            dir.path(),
        );
        assert_eq!(
            serial
                .trim()
                .trim_start_matches("serial=")
                .to_ascii_lowercase(),
            c.leaf.serial_hex()
        );

        // Same fingerprint, and the DER survives OpenSSL's re-encoding byte for byte.
        let digest = match alg.suite() {
            caretrail_crypto::Suite::Intl => "-sha256",
            caretrail_crypto::Suite::Gm => "-sm3",
        };
        let fp = openssl_ok(
            &["x509", "-in", "leaf.pem", "-noout", "-fingerprint", digest],
            dir.path(),
        );
        let fp_hex: String = fp
            .trim()
            .rsplit('=')
            .next()
            .unwrap()
            .replace(':', "")
            .to_ascii_lowercase();
        assert_eq!(fp_hex, c.leaf.fingerprint().to_hex(), "{alg}");
        let reencoded = openssl_ok(&["x509", "-in", "leaf.pem"], dir.path());
        assert_eq!(reencoded, c.leaf.to_pem(), "{alg}");
    }
}

/// `openssl verify` arguments for a chain signed with `alg`.
///
/// OpenSSL 3.0 verifies SM2 certificate signatures with an *empty* distinguishing id unless
/// told otherwise, while GM/T 0009/0015 (and this crate) use `1234567812345678`. `-vfyopt
/// distid:...` fixes that, but `openssl verify` applies it only to the certificate being
/// verified, not to CA certificates in the chain (openssl/openssl#23471, #32744). So for SM2 the
/// CLI checks the CA → institution link of our two-level chains; the CA's self-signature, which
/// `-check_ss_sig` would check with the empty id, is checked with `openssl pkeyutl` instead
/// (see `openssl_checks_sm2_certificate_signatures_over_the_tbs_bytes`).
fn verify_args(alg: SignatureAlgorithm) -> Vec<String> {
    let mut args = vec!["verify".to_string(), "-x509_strict".to_string()];
    match alg {
        SignatureAlgorithm::Sm2 => args.extend(["-vfyopt".to_string(), distid_opt()]),
        _ => args.push("-check_ss_sig".to_string()),
    }
    args
}

fn run_verify(alg: SignatureAlgorithm, extra: &[&str], dir: &Path) -> (bool, String) {
    let mut args = verify_args(alg);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = openssl(&args, dir);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn openssl_verifies_our_chains_and_rejects_tampering() {
    for alg in ALGS {
        let dir = tempfile::tempdir().unwrap();
        let c = chain(alg);
        write_chain(dir.path(), &c);
        let (ok, text) = run_verify(alg, &["-CAfile", "ca.pem", "leaf.pem"], dir.path());
        assert!(ok, "{alg}: {text}");
        assert_eq!(text.trim(), "leaf.pem: OK", "{alg}");
        if alg != SignatureAlgorithm::Sm2 {
            let (ok, text) = run_verify(alg, &["-CAfile", "ca.pem", "ca.pem"], dir.path());
            assert!(ok, "{alg}: {text}");
        }

        // "inst-42" -> "inst-43" inside the signed part.
        let der = c.leaf.to_der();
        let pos = der.windows(7).position(|w| w == b"inst-42").unwrap();
        let mut bad = der.clone();
        bad[pos + 6] = b'3';
        write(
            dir.path(),
            "bad.pem",
            Certificate::from_der(&bad).unwrap().to_pem().as_bytes(),
        );
        let (ok, text) = run_verify(alg, &["-CAfile", "ca.pem", "bad.pem"], dir.path());
        assert!(!ok, "{alg}: tampered certificate verified");
        assert!(
            text.contains("certificate signature failure"),
            "{alg}: {text}"
        );

        // A CA with the same name and another key.
        let t = now();
        let impostor_key = SigningKey::generate(alg).unwrap();
        let impostor =
            self_signed_ca(&impostor_key, &ca_name(), Validity::new(t - DAY, t + DAY)).unwrap();
        write(dir.path(), "impostor.pem", impostor.to_pem().as_bytes());
        let (ok, _) = run_verify(alg, &["-CAfile", "impostor.pem", "leaf.pem"], dir.path());
        assert!(!ok, "{alg}: verified under the wrong CA");
    }
}

/// Key rotation: the old and the new tenant CA share a name; certificates under either verify
/// against a bundle of both (OpenSSL picks the issuer by key identifier), and not across.
#[test]
fn rotated_cas_with_one_name_are_told_apart_by_key_identifier() {
    for alg in [SignatureAlgorithm::Ed25519, SignatureAlgorithm::Sm2] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let old = chain(alg);
        let new = chain(alg);
        assert_eq!(old.ca.subject(), new.ca.subject());
        let mut bundle = old.ca.to_pem();
        bundle.push_str(&new.ca.to_pem());
        write(p, "bundle.pem", bundle.as_bytes());
        write(p, "old.pem", old.leaf.to_pem().as_bytes());
        write(p, "new.pem", new.leaf.to_pem().as_bytes());
        for leaf in ["old.pem", "new.pem"] {
            let (ok, text) = run_verify(alg, &["-CAfile", "bundle.pem", leaf], p);
            assert!(ok, "{alg} {leaf}: {text}");
        }
        old.leaf.verify_issued_by(&old.ca).unwrap();
        new.leaf.verify_issued_by(&new.ca).unwrap();
        assert!(old.leaf.verify_issued_by(&new.ca).is_err());
        assert!(new.leaf.verify_issued_by(&old.ca).is_err());
    }
}

/// OpenSSL escapes non-ASCII bytes by default (`O = \\E5\\8C...`); `-nameopt utf8` shows them.
#[test]
fn openssl_prints_unicode_names_with_nameopt_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate(SignatureAlgorithm::Sm2).unwrap();
    let dn = DistinguishedName::tenant_ca("tenant-9", "北京协和医院");
    let t = now();
    let ca = self_signed_ca(&key, &dn, Validity::new(t, t + DAY)).unwrap();
    write(dir.path(), "ca.pem", ca.to_pem().as_bytes());
    let subject = openssl_ok(
        &[
            "x509",
            "-in",
            "ca.pem",
            "-noout",
            "-subject",
            "-nameopt",
            "utf8,sep_comma_plus_space",
        ],
        dir.path(),
    );
    assert_eq!(
        subject.trim(),
        "subject=O=北京协和医院, organizationIdentifier=tenant-9, CN=Caretrail tenant CA"
    );
}

/// After rotation an old certificate has expired, yet signatures made while it was valid must
/// still check out: OpenSSL agrees when asked about a time inside the validity period.
#[test]
fn openssl_verifies_expired_certificates_at_a_past_time() {
    let t = now();
    let c = chain_with(
        SignatureAlgorithm::Sm2,
        Validity::new(t - 400 * DAY, t + 400 * DAY),
        Validity::new(t - 300 * DAY, t - 200 * DAY),
    );
    let dir = tempfile::tempdir().unwrap();
    write_chain(dir.path(), &c);
    assert!(!c.leaf.valid_at(t));
    let alg = SignatureAlgorithm::Sm2;
    let (ok, text) = run_verify(alg, &["-CAfile", "ca.pem", "leaf.pem"], dir.path());
    assert!(!ok);
    assert!(text.contains("certificate has expired"), "{text}");
    let past = (t - 250 * DAY).to_string();
    assert!(c.leaf.valid_at(t - 250 * DAY));
    let (ok, text) = run_verify(
        alg,
        &["-attime", &past, "-CAfile", "ca.pem", "leaf.pem"],
        dir.path(),
    );
    assert!(ok, "{text}");
}

/// Independent of `openssl verify`: each SM2 signature is over the DER TBSCertificate with the
/// default distinguishing id, checked with `openssl pkeyutl` on the bytes `openssl asn1parse`
/// extracts. This is how the SM2 CA's self-signature is checked with OpenSSL 3.0.
#[test]
fn openssl_checks_sm2_certificate_signatures_over_the_tbs_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let c = chain(SignatureAlgorithm::Sm2);
    write_chain(p, &c);
    write(
        p,
        "ca_pub.pem",
        c.ca_key.public_key().to_spki_pem().as_bytes(),
    );
    let pkeyutl_verify = |tbs: &str| {
        let distid = distid_opt();
        let out = openssl(
            &[
                "pkeyutl",
                "-verify",
                "-pubin",
                "-inkey",
                "ca_pub.pem",
                "-rawin",
                "-digest",
                "sm3",
                "-in",
                tbs,
                "-sigfile",
                "sig.der",
                "-pkeyopt",
                &distid,
            ],
            p,
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success(), text)
    };
    for (file, cert) in [("ca.pem", &c.ca), ("leaf.pem", &c.leaf)] {
        let der = cert.as_der();
        // The TBSCertificate starts right after the outer SEQUENCE header.
        let offset = match der[1] {
            0x81 => "3",
            0x82 => "4",
            l => panic!("unexpected length byte {l:#x}"),
        };
        openssl_ok(
            &[
                "asn1parse",
                "-in",
                file,
                "-strparse",
                offset,
                "-noout",
                "-out",
                "tbs.der",
            ],
            p,
        );
        assert_eq!(std::fs::read(p.join("tbs.der")).unwrap(), cert.tbs_der());
        let x = x509_cert::Certificate::from_der(der).unwrap();
        write(p, "sig.der", x.signature.raw_bytes());
        let (ok, text) = pkeyutl_verify("tbs.der");
        assert!(ok, "{file}: {text}");
        assert!(text.contains("Signature Verified Successfully"), "{text}");

        let mut bad = cert.tbs_der().to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        write(p, "bad.der", &bad);
        let (ok, text) = pkeyutl_verify("bad.der");
        assert!(!ok, "{file}: altered TBS verified: {text}");
    }
}

/// We read and verify what OpenSSL issues (SHA-1 key identifiers, its own name encoding), and
/// OpenSSL accepts what we issue under its CA. For SM2, OpenSSL must be told the standard
/// distinguishing id when signing (`-sigopt`) as well as when verifying (`-vfyopt`): its 3.0
/// default is the empty id.
#[test]
fn we_read_and_verify_openssl_certificates() {
    let distid = distid_opt();
    for (alg, genpkey) in [
        (SignatureAlgorithm::Sm2, "SM2"),
        (SignatureAlgorithm::Ed25519, "ED25519"),
        (SignatureAlgorithm::EcdsaP256, "EC"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let with_alg_opts = |mut args: Vec<&'static str>, sign: bool, verify: bool| {
            let mut args: Vec<String> = args.drain(..).map(String::from).collect();
            match alg {
                SignatureAlgorithm::Sm2 => {
                    args.push("-sm3".into());
                    if sign {
                        args.extend(["-sigopt".into(), distid.clone()]);
                    }
                    if verify {
                        args.extend(["-vfyopt".into(), distid.clone()]);
                    }
                }
                SignatureAlgorithm::EcdsaP256 => args.push("-sha256".into()),
                SignatureAlgorithm::Ed25519 => {}
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            openssl_ok(&args, p)
        };
        for key in ["ca.key", "leaf.key"] {
            let mut args = vec!["genpkey", "-algorithm", genpkey, "-out", key];
            if genpkey == "EC" {
                args.extend(["-pkeyopt", "ec_paramgen_curve:P-256"]);
            }
            openssl_ok(&args, p);
        }
        write(
            p,
            "leaf.cnf",
            b"[v3]\nbasicConstraints = critical, CA:FALSE\n\
              keyUsage = critical, digitalSignature, nonRepudiation\n\
              subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n",
        );
        with_alg_opts(
            vec![
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-subj",
                "/O=Acme/CN=OpenSSL CA",
                "-addext",
                "keyUsage = critical, keyCertSign, cRLSign",
                "-days",
                "30",
                "-out",
                "ca.pem",
            ],
            true,
            false,
        );
        with_alg_opts(
            vec![
                "req",
                "-new",
                "-key",
                "leaf.key",
                "-subj",
                "/O=Acme/OU=level-1/CN=inst-1",
                "-out",
                "leaf.csr",
            ],
            true,
            false,
        );
        with_alg_opts(
            vec![
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-days",
                "10",
                "-extfile",
                "leaf.cnf",
                "-extensions",
                "v3",
                "-out",
                "leaf.pem",
            ],
            true,
            true,
        );

        let read = |name: &str| {
            Certificate::from_pem(&std::fs::read_to_string(p.join(name)).unwrap()).unwrap()
        };
        let ca = read("ca.pem");
        let leaf = read("leaf.pem");
        assert_eq!(ca.signature_algorithm(), alg);
        assert!(ca.is_ca());
        assert!(!leaf.is_ca());
        assert_eq!(leaf.key_usage(), Some(KeyUsage::SIGNING));
        assert_eq!(leaf.issuer(), "CN=OpenSSL CA,O=Acme");
        assert_eq!(leaf.subject(), "CN=inst-1,OU=level-1,O=Acme");
        assert_eq!(leaf.subject_name().unwrap().common_name, "inst-1");
        assert_eq!(leaf.subject_key_id().map(<[u8]>::len), Some(20)); // SHA-1
        ca.verify_issued_by(&ca).unwrap();
        leaf.verify_issued_by(&ca).unwrap();
        let ca_key =
            SigningKey::from_pkcs8_pem(&std::fs::read_to_string(p.join("ca.key")).unwrap())
                .unwrap();
        assert_eq!(ca.public_key(), ca_key.verifying_key());

        // And we issue under OpenSSL's CA: OpenSSL accepts the result.
        let t = now();
        let ours_key = SigningKey::generate(alg).unwrap();
        let ours = issue_certificate(
            &ca_key,
            &ca,
            &CertificateRequest::institution(
                leaf_name(),
                ours_key.public_key(),
                Validity::new(t - 60, t + DAY),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(ours.authority_key_id(), ca.subject_key_id());
        write(p, "ours.pem", ours.to_pem().as_bytes());
        let (ok, text) = run_verify(alg, &["-CAfile", "ca.pem", "ours.pem"], p);
        assert!(ok, "{alg}: {text}");
    }
}
