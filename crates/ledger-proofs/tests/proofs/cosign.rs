//! Witness cosignatures (c2sp.org/tlog-cosignature cosignature/v1) and the witness helper.

use caretrail_ledger_proofs::note::MAX_COSIGNATURE_TIMESTAMP;
use caretrail_ledger_proofs::{
    Checkpoint, Cosignature, Cosigner, Note, NoteKeyType, NoteSignature, NoteSigner, ProofError,
    Suite, VerifierKey, Witness, cosign_if_consistent, cosignature_message,
};

use super::common::{flip, key, tree};

/// transparency-dev/formats `note/note_cosigv1_test.go` TestCosignatureTimestamp "works".
#[test]
fn published_cosignature_timestamp() {
    let line = "— w ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA==";
    let sig = NoteSignature::parse_line(line).unwrap();
    let cosig = Cosignature::from_note_signature(&sig).unwrap();
    assert_eq!(cosig.timestamp, 1727964367);
    assert_eq!(cosig.signature.len(), 64);
}

#[test]
fn cosignature_message_format() {
    // tlog-cosignature.md "Ed25519 signed message" example.
    let body =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    assert_eq!(
        cosignature_message(1679315147, body),
        b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    );
}

struct Log {
    tree: caretrail_ledger_proofs::MemoryTree,
    signer: NoteSigner,
}

impl Log {
    fn new(suite: Suite) -> Self {
        Self {
            tree: tree(suite, 20),
            signer: NoteSigner::new("caretrail.eu/t1", key(suite, 1)).unwrap(),
        }
    }

    fn checkpoint(&self, size: u64) -> Checkpoint {
        Checkpoint::new("caretrail.eu/t1", size, self.tree.root_at(size).unwrap()).unwrap()
    }

    fn note(&self, size: u64) -> String {
        self.checkpoint(size).sign(&self.signer).unwrap().encode()
    }
}

#[test]
fn witness_cosigns_consistent_checkpoints_in_both_suites() {
    for suite in Suite::ALL {
        let log = Log::new(suite);
        let cosigner = Cosigner::new("regulator.example/witness", key(suite, 9)).unwrap();
        let expected_type = match suite {
            Suite::Intl => NoteKeyType::Ed25519Cosignature,
            Suite::Gm => NoteKeyType::Sm2Cosignature,
        };
        assert_eq!(cosigner.key_type(), expected_type);
        let witness_vkey = cosigner.verifier_key();
        let witness = Witness::new(cosigner, suite, vec![log.signer.verifier_key()]);

        // First contact: no previous checkpoint, empty proof.
        let (cp5, cosig5) = witness
            .verify_and_cosign(None, log.note(5).as_bytes(), &[], 1_700_000_000)
            .unwrap();
        assert_eq!(cp5.size(), 5);
        assert_eq!(cosig5.timestamp, 1_700_000_000);

        // Next checkpoint with a consistency proof.
        let proof = log.tree.consistency_proof(5, 13).unwrap();
        let (cp13, cosig13) = witness
            .verify_and_cosign(Some(&cp5), log.note(13).as_bytes(), &proof, 1_700_000_100)
            .unwrap();

        // Append the cosignature line and open with both key sets.
        let mut note = Note::parse(log.note(13).as_bytes()).unwrap();
        note.add_signature(cosig13.to_note_signature()).unwrap();
        let opened = Checkpoint::open(
            note.encode().as_bytes(),
            suite,
            &[log.signer.verifier_key()],
            std::slice::from_ref(&witness_vkey),
        )
        .unwrap();
        assert_eq!(opened.checkpoint, cp13);
        assert_eq!(opened.cosignatures.len(), 1);
        assert_eq!(opened.cosignatures[0].timestamp, Some(1_700_000_100));
        assert_eq!(opened.cosignatures[0].key_type, expected_type);
        // The witness vkey roundtrips.
        assert_eq!(
            VerifierKey::parse(&witness_vkey.to_vkey()).unwrap(),
            witness_vkey
        );

        // The witness's cosignature of size 5 does not verify on checkpoint 13.
        let mut moved = Note::parse(log.note(13).as_bytes()).unwrap();
        moved.add_signature(cosig5.to_note_signature()).unwrap();
        assert!(matches!(
            moved.verify_known(std::slice::from_ref(&witness_vkey)),
            Err(ProofError::SignatureInvalid { .. })
        ));
        // Forged timestamp.
        let mut forged = cosig13.clone();
        forged.timestamp += 1;
        let mut n = Note::parse(log.note(13).as_bytes()).unwrap();
        n.add_signature(forged.to_note_signature()).unwrap();
        assert!(n.verify_known(std::slice::from_ref(&witness_vkey)).is_err());
        // A cosignature key does not verify as a plain note key and vice versa.
        let plain = VerifierKey::new(
            witness_vkey.name(),
            match suite {
                Suite::Intl => NoteKeyType::Ed25519,
                Suite::Gm => NoteKeyType::Sm2,
            },
            witness_vkey.verifying_key().clone(),
        )
        .unwrap();
        assert_ne!(plain.key_id(), witness_vkey.key_id());
        assert!(note.verify_known(&[plain]).unwrap().is_empty());

        // Inconsistent: wrong proof, shrinking log, other origin, proof on first contact.
        let bad_proof: Vec<_> = proof.iter().map(|h| flip(h, 1, 1)).collect();
        assert!(
            witness
                .verify_and_cosign(Some(&cp5), log.note(13).as_bytes(), &bad_proof, 1)
                .is_err()
        );
        assert!(matches!(
            witness.verify_and_cosign(Some(&cp13), log.note(5).as_bytes(), &[], 1),
            Err(ProofError::SizeRegression { .. })
        ));
        let other_origin =
            Checkpoint::new("caretrail.eu/t2", 13, log.tree.root_at(13).unwrap()).unwrap();
        assert!(matches!(
            witness.cosign_if_consistent(Some(&cp5), &other_origin, &proof, 1),
            Err(ProofError::OriginMismatch { .. })
        ));
        assert!(
            witness
                .cosign_if_consistent(None, &cp13, &proof, 1)
                .is_err()
        );
        // A checkpoint with a forked history (different root at the same size).
        let forked = Checkpoint::new("caretrail.eu/t1", 13, flip(cp13.root(), 0, 0)).unwrap();
        assert!(
            witness
                .cosign_if_consistent(Some(&cp5), &forked, &proof, 1)
                .is_err()
        );
        // A note not signed by the log.
        let rogue = NoteSigner::new("caretrail.eu/t1", key(suite, 3)).unwrap();
        let rogue_note = log.checkpoint(13).sign(&rogue).unwrap().encode();
        assert!(matches!(
            witness.verify_and_cosign(Some(&cp5), rogue_note.as_bytes(), &proof, 1),
            Err(ProofError::NoTrustedSignature(_))
        ));
        // Same checkpoint again: cosign with a fresh timestamp.
        cosign_if_consistent(Some(&cp13), &cp13, &[], witness.cosigner(), 2).unwrap();
        // Timestamps above 2^63 - 1 are refused.
        assert!(
            witness
                .cosigner()
                .cosign(&cp13, MAX_COSIGNATURE_TIMESTAMP + 1)
                .is_err()
        );
    }
}

#[test]
fn cosignature_lines_roundtrip() {
    let log = Log::new(Suite::Intl);
    let cosigner = Cosigner::new("w.example/1", key(Suite::Intl, 5)).unwrap();
    let cosig = cosigner.cosign(&log.checkpoint(7), 123).unwrap();
    let line = cosig.line();
    assert!(line.starts_with("— w.example/1 "));
    let parsed =
        Cosignature::from_note_signature(&NoteSignature::parse_line(&line).unwrap()).unwrap();
    assert_eq!(parsed, cosig);
    // 4-byte key id + 8-byte timestamp + 64-byte Ed25519 signature.
    assert_eq!(cosig.to_note_signature().signature.len(), 72);
    // Timestamps with the top bit set are malformed.
    let mut sig = cosig.to_note_signature();
    sig.signature[0] |= 0x80;
    assert!(Cosignature::from_note_signature(&sig).is_err());
}
