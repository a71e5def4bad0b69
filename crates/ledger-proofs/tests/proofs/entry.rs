//! Ledger entry encoding and submitter signatures.

use caretrail_crypto::SignatureAlgorithm;
use caretrail_ledger_proofs::{Entry, ProofError, Submission, Suite, leaf_hash};
use proptest::prelude::*;

use super::common::{key, key_alg};

pub fn submission() -> Submission {
    Submission {
        tenant: "t1".into(),
        kind: "record.anchored".into(),
        submitter: "hospital-a".into(),
        request_id: "req-1".into(),
        key_id: "k".into(),
        payload: br#"{"record":"r1","sha256":"00ff"}"#.to_vec(),
    }
}

fn field(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

#[test]
fn encoding_layout_v1() {
    let entry = submission().into_entry(7, 1_700_000_000_123, vec![0xaa, 0xbb]);
    let mut want = b"CTLE\x01".to_vec();
    field(&mut want, b"t1");
    want.extend_from_slice(&7u64.to_be_bytes());
    want.extend_from_slice(&1_700_000_000_123u64.to_be_bytes());
    field(&mut want, b"record.anchored");
    field(&mut want, b"hospital-a");
    field(&mut want, b"req-1");
    field(&mut want, b"k");
    field(&mut want, br#"{"record":"r1","sha256":"00ff"}"#);
    field(&mut want, &[0xaa, 0xbb]);
    assert_eq!(entry.encode().unwrap(), want);
    assert_eq!(Entry::decode(&want).unwrap(), entry);
    for suite in Suite::ALL {
        assert_eq!(entry.leaf_hash(suite).unwrap(), leaf_hash(suite, &want));
    }

    let mut input = b"CTLS\x01".to_vec();
    for f in [
        &b"t1"[..],
        b"record.anchored",
        b"hospital-a",
        b"req-1",
        b"k",
    ] {
        field(&mut input, f);
    }
    field(&mut input, br#"{"record":"r1","sha256":"00ff"}"#);
    assert_eq!(submission().signing_input().unwrap(), input);
    assert_eq!(entry.submission().signing_input().unwrap(), input);
}

#[test]
fn decode_is_strict() {
    let good = submission().into_entry(1, 2, vec![1; 64]).encode().unwrap();
    // Every truncation fails, and so does any trailing byte.
    for n in 0..good.len() {
        assert!(Entry::decode(&good[..n]).is_err(), "truncated to {n}");
    }
    assert!(Entry::decode(&[good.clone(), vec![0]].concat()).is_err());
    // Magic and version.
    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(Entry::decode(&bad).is_err());
    let mut bad = good.clone();
    bad[4] = 2;
    assert!(Entry::decode(&bad).is_err());
    // Over-long tenant length (129) and payload length (1 MiB + 1), without the bytes.
    let mut bad = b"CTLE\x01".to_vec();
    bad.extend_from_slice(&129u32.to_be_bytes());
    bad.extend_from_slice(&[b'a'; 129]);
    assert!(matches!(
        Entry::decode(&bad),
        Err(ProofError::Malformed { .. })
    ));
    let mut bad = b"CTLE\x01".to_vec();
    bad.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(Entry::decode(&bad).is_err());
    // Invalid field values: non-UTF-8 tenant, bad kind, control characters, empty submitter.
    let mut e = submission().into_entry(0, 0, vec![]);
    let enc = e.encode().unwrap();
    let mut bad = enc.clone();
    bad[9] = 0xff; // first tenant byte
    assert!(Entry::decode(&bad).is_err());
    for kind in ["", "Record", "a b", "x/y", &"k".repeat(65)] {
        e.kind = kind.into();
        assert!(e.encode().is_err(), "kind {kind:?}");
    }
    e.kind = "ok".into();
    e.tenant = "t\n1".into();
    assert!(e.encode().is_err());
    e.tenant = "t1".into();
    e.submitter = String::new();
    assert!(e.encode().is_err());
    e.submitter = "s".into();
    e.signature = vec![0; 513];
    assert!(e.encode().is_err());
}

#[test]
fn submitter_signatures_in_every_algorithm() {
    for alg in [
        SignatureAlgorithm::Ed25519,
        SignatureAlgorithm::Sm2,
        SignatureAlgorithm::EcdsaP256,
    ] {
        let k = key_alg(alg, 3);
        let sub = submission();
        let sig = sub.sign(&k).unwrap();
        let entry = sub.clone().into_entry(42, 99, sig);
        entry.verify_submitter(k.verifying_key()).unwrap();
        // Leader-assigned fields are not signed.
        let mut moved = entry.clone();
        moved.index = 43;
        moved.timestamp_ms = 100;
        moved.verify_submitter(k.verifying_key()).unwrap();
        // Everything the submitter signed is covered.
        for f in 0..6 {
            let mut e = entry.clone();
            match f {
                0 => e.tenant.push('x'),
                1 => e.kind.push('x'),
                2 => e.submitter.push('x'),
                3 => e.request_id.push('x'),
                4 => e.key_id.push('x'),
                _ => e.payload.push(b'x'),
            }
            assert!(
                e.verify_submitter(k.verifying_key()).is_err(),
                "{alg} field {f}"
            );
        }
        assert!(
            entry
                .verify_submitter(key_alg(alg, 4).verifying_key())
                .is_err()
        );
        let mut e = entry.clone();
        e.signature[5] ^= 1;
        assert!(e.verify_submitter(k.verifying_key()).is_err());
    }
    // Wrong-algorithm key.
    let k = key(Suite::Intl, 3);
    let entry = submission().into_entry(0, 0, submission().sign(&k).unwrap());
    assert!(
        entry
            .verify_submitter(key(Suite::Gm, 3).verifying_key())
            .is_err()
    );
}

#[test]
fn serde_uses_base64_for_bytes() {
    let entry = submission().into_entry(1, 2, vec![0xff, 0x00]);
    let json = serde_json::to_value(&entry).unwrap();
    assert_eq!(json["signature"], "/wA=");
    let back: Entry = serde_json::from_value(json).unwrap();
    assert_eq!(back, entry);
}

fn arb_entry() -> impl Strategy<Value = Entry> {
    (
        "[a-z0-9-]{1,40}",
        any::<u64>(),
        any::<u64>(),
        "[a-z0-9._-]{1,64}",
        "\\PC{1,30}",
        "[ -~]{0,40}",
        "[ -~]{0,40}",
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(any::<u8>(), 0..100),
    )
        .prop_map(
            |(
                tenant,
                index,
                timestamp_ms,
                kind,
                submitter,
                request_id,
                key_id,
                payload,
                signature,
            )| {
                Entry {
                    tenant,
                    index,
                    timestamp_ms,
                    kind,
                    submitter,
                    request_id,
                    key_id,
                    payload,
                    signature,
                }
            },
        )
}

proptest! {
    #[test]
    fn entries_roundtrip(entry in arb_entry()) {
        let bytes = entry.encode().unwrap();
        prop_assert_eq!(Entry::decode(&bytes).unwrap(), entry);
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Entry::decode(&bytes);
        let mut prefixed = b"CTLE\x01".to_vec();
        prefixed.extend_from_slice(&bytes);
        if let Ok(e) = Entry::decode(&prefixed) {
            prop_assert_eq!(e.encode().unwrap(), prefixed);
        }
    }
}
