//! Proof bundles end to end, and every way a bundle can be wrong.

use caretrail_crypto::SigningKey;
use caretrail_ledger_proofs::{
    BundleFailure, CheckKind, CheckStatus, Checkpoint, Cosigner, Entry, MemoryTree, Note,
    NoteSigner, ProofBundle, ProofError, Submission, Suite, TrustAnchors, VerifiedReport,
    canonical_json, verify_bundle,
};
use serde_json::json;

use super::common::key;

const ORIGIN: &str = "caretrail.eu/tenant-7";

struct Fixture {
    suite: Suite,
    institution: SigningKey,
    ledger: NoteSigner,
    witness: Cosigner,
    tree: MemoryTree,
    entries: Vec<Entry>,
}

impl Fixture {
    fn new(suite: Suite, n: u64) -> Self {
        let institution = key(suite, 10);
        let mut tree = MemoryTree::new(suite);
        let mut entries = Vec::new();
        for i in 0..n {
            let payload = canonical_json(&json!({
                "record": format!("r{i}"),
                "sha256": format!("{i:064x}"),
            }))
            .unwrap();
            let sub = Submission {
                tenant: "tenant-7".into(),
                kind: "record.anchored".into(),
                submitter: "hospital-a".into(),
                request_id: format!("req-{i}"),
                key_id: institution.key_id().to_hex(),
                payload,
            };
            let sig = sub.sign(&institution).unwrap();
            let entry = sub.into_entry(i, 1_700_000_000_000 + i, sig);
            assert_eq!(tree.append(entry.leaf_hash(suite).unwrap()).unwrap(), i);
            entries.push(entry);
        }
        Self {
            suite,
            institution,
            ledger: NoteSigner::new(ORIGIN, key(suite, 11)).unwrap(),
            witness: Cosigner::new("regulator.example/w1", key(suite, 12)).unwrap(),
            tree,
            entries,
        }
    }

    fn checkpoint(&self, size: u64) -> Checkpoint {
        Checkpoint::new(ORIGIN, size, self.tree.root_at(size).unwrap()).unwrap()
    }

    /// Ledger-signed checkpoint note at `size`, cosigned by the witness.
    fn note(&self, size: u64) -> String {
        let cp = self.checkpoint(size);
        let mut note = cp.sign(&self.ledger).unwrap();
        let cosig = self.witness.cosign(&cp, 1_700_000_500).unwrap();
        note.add_signature(cosig.to_note_signature()).unwrap();
        note.encode()
    }

    fn bundle(&self, index: u64, size: u64) -> ProofBundle {
        let keys = caretrail_ledger_proofs::BundleKeys::new(
            &self.ledger.verifier_key(),
            &[self.witness.verifier_key()],
            Some(self.institution.verifying_key()),
        );
        ProofBundle::new(
            self.suite,
            &self.entries[index as usize],
            size,
            &self.tree.inclusion_proof(index, size).unwrap(),
            &self.note(size),
            keys,
        )
        .unwrap()
    }

    fn anchors(&self) -> TrustAnchors {
        TrustAnchors {
            ledger_keys: vec![self.ledger.verifier_key()],
            witness_keys: vec![self.witness.verifier_key()],
            min_cosignatures: 1,
            submitter_keys: vec![self.institution.public_key()],
            origin: Some(ORIGIN.into()),
        }
    }
}

fn fails(bundle: &ProofBundle, anchors: &TrustAnchors, check: CheckKind) -> BundleFailure {
    match verify_bundle(bundle, anchors) {
        Ok(_) => panic!("bundle verified, expected {check} to fail"),
        Err(f) => {
            assert_eq!(f.check, check, "failed at {} with {}", f.check, f.error);
            f
        }
    }
}

fn statuses(report: &VerifiedReport) -> Vec<(CheckKind, CheckStatus)> {
    report.checks.iter().map(|c| (c.check, c.status)).collect()
}

#[test]
fn valid_bundles_verify_in_both_suites() {
    for suite in Suite::ALL {
        let fx = Fixture::new(suite, 11);
        let old_note = fx.note(6);
        let proof = fx.tree.consistency_proof(6, 11).unwrap();
        let bundle = fx.bundle(4, 11).with_consistency(&old_note, &proof);

        // JSON roundtrip.
        let json = bundle.to_json_pretty().unwrap();
        let parsed = ProofBundle::from_json(json.as_bytes()).unwrap();
        assert_eq!(parsed, bundle);

        let report = verify_bundle(&parsed, &fx.anchors()).unwrap();
        use CheckKind::*;
        use CheckStatus::Passed;
        assert_eq!(
            statuses(&report),
            vec![
                (BundleFormat, Passed),
                (EntryEncoding, Passed),
                (SubmitterSignature, Passed),
                (CheckpointSignature, Passed),
                (InclusionProof, Passed),
                (Cosignatures, Passed),
                (Consistency, Passed),
            ]
        );
        let order: Vec<CheckKind> = report.checks.iter().map(|c| c.check).collect();
        assert_eq!(
            order,
            CheckKind::ALL,
            "CheckKind::ALL is the order checks run in"
        );
        assert_eq!(report.entry, fx.entries[4]);
        assert_eq!(report.checkpoint, fx.checkpoint(11));
        assert_eq!(report.earlier_checkpoint, Some(fx.checkpoint(6)));
        assert_eq!(report.cosignatures.len(), 1);
        assert_eq!(report.cosignatures[0].timestamp, Some(1_700_000_500));
        for c in &report.checks {
            assert!(!c.detail.is_empty());
        }
        serde_json::to_string(&report).unwrap();

        // Every leaf of several tree sizes.
        for size in [1, 2, 7, 8, 11] {
            for index in 0..size {
                verify_bundle(&fx.bundle(index, size), &fx.anchors()).unwrap();
            }
        }

        // Trust-on-first-use anchors from the bundle itself.
        let tofu = TrustAnchors::from_bundle(&bundle).unwrap();
        verify_bundle(&bundle, &tofu).unwrap();

        // Without institution or witness keys those checks are skipped.
        let mut minimal = fx.anchors();
        minimal.submitter_keys.clear();
        minimal.witness_keys.clear();
        minimal.min_cosignatures = 0;
        let plain = fx.bundle(3, 9);
        let report = verify_bundle(&plain, &minimal).unwrap();
        assert_eq!(
            statuses(&report),
            vec![
                (BundleFormat, Passed),
                (EntryEncoding, Passed),
                (SubmitterSignature, CheckStatus::Skipped),
                (CheckpointSignature, Passed),
                (InclusionProof, Passed),
                (Cosignatures, CheckStatus::Skipped),
                (Consistency, CheckStatus::Skipped),
            ]
        );
    }
}

#[test]
fn checkpoint_signed_by_another_key() {
    for suite in Suite::ALL {
        let fx = Fixture::new(suite, 8);
        let rogue = NoteSigner::new(ORIGIN, key(suite, 99)).unwrap();
        let mut bundle = fx.bundle(2, 8);
        bundle.checkpoint = fx.checkpoint(8).sign(&rogue).unwrap().encode();
        let f = fails(&bundle, &fx.anchors(), CheckKind::CheckpointSignature);
        assert!(matches!(f.error, ProofError::NoTrustedSignature(_)));
        assert_eq!(f.passed.len(), 3, "format, entry and submitter passed");
        // Even with the rogue key advertised in the bundle, pinned anchors reject it.
        bundle.keys.ledger = rogue.verifier_key().to_vkey();
        fails(&bundle, &fx.anchors(), CheckKind::CheckpointSignature);
    }
}

#[test]
fn every_altered_entry_byte_is_caught() {
    for suite in Suite::ALL {
        let fx = Fixture::new(suite, 5);
        let good = fx.bundle(3, 5);
        let mut anchors_without_institution = fx.anchors();
        anchors_without_institution.submitter_keys.clear();
        for i in 0..good.entry.len() {
            let mut b = good.clone();
            b.entry[i] ^= 0x01;
            let f = verify_bundle(&b, &fx.anchors()).expect_err("altered entry verified");
            assert!(matches!(
                f.check,
                CheckKind::EntryEncoding
                    | CheckKind::SubmitterSignature
                    | CheckKind::InclusionProof
            ));
            // Without the institution key the Merkle proof alone still catches it.
            assert!(verify_bundle(&b, &anchors_without_institution).is_err());
        }
        // The payload specifically: submitter signature, or the inclusion proof.
        let mut b = good.clone();
        let last = b.entry.len() - fx.entries[3].signature.len() - 10;
        b.entry[last] ^= 0x20;
        fails(&b, &fx.anchors(), CheckKind::SubmitterSignature);
        fails(&b, &anchors_without_institution, CheckKind::InclusionProof);
    }
}

#[test]
fn wrong_index_and_wrong_size() {
    let fx = Fixture::new(Suite::Intl, 9);
    let good = fx.bundle(5, 9);
    let mut b = good.clone();
    b.inclusion.leaf_index = 4;
    assert!(matches!(
        fails(&b, &fx.anchors(), CheckKind::InclusionProof).error,
        ProofError::IndexMismatch(_)
    ));
    // The entry of another index with this proof.
    let mut b = good.clone();
    b.entry = fx.entries[4].encode().unwrap();
    b.inclusion.leaf_index = 4;
    fails(&b, &fx.anchors(), CheckKind::InclusionProof);
    // Wrong tree size.
    let mut b = good.clone();
    b.inclusion.tree_size = 8;
    assert!(matches!(
        fails(&b, &fx.anchors(), CheckKind::InclusionProof).error,
        ProofError::SizeMismatch(_)
    ));
}

#[test]
fn altered_sibling_and_proof_shape() {
    for suite in Suite::ALL {
        let fx = Fixture::new(suite, 13);
        let good = fx.bundle(6, 13);
        for i in 0..good.inclusion.hashes.len() {
            let mut b = good.clone();
            let h = &mut b.inclusion.hashes[i];
            let c = if h.starts_with('0') { "1" } else { "0" };
            h.replace_range(0..1, c);
            assert!(matches!(
                fails(&b, &fx.anchors(), CheckKind::InclusionProof).error,
                ProofError::RootMismatch { .. }
            ));
        }
        let mut b = good.clone();
        b.inclusion.hashes.pop();
        assert!(matches!(
            fails(&b, &fx.anchors(), CheckKind::InclusionProof).error,
            ProofError::WrongProofLength { .. }
        ));
        let mut b = good.clone();
        b.inclusion.hashes[0] = "zz".repeat(32);
        fails(&b, &fx.anchors(), CheckKind::InclusionProof);
        let mut b = good.clone();
        b.inclusion.hashes[0].push_str("00");
        fails(&b, &fx.anchors(), CheckKind::InclusionProof);
        let mut b = good.clone();
        b.inclusion.hashes = vec!["00".repeat(32); 200];
        assert!(matches!(
            fails(&b, &fx.anchors(), CheckKind::InclusionProof).error,
            ProofError::LimitExceeded(_)
        ));
    }
}

#[test]
fn swapped_checkpoint() {
    let fx = Fixture::new(Suite::Gm, 12);
    // A genuine checkpoint of another size.
    let mut b = fx.bundle(2, 12);
    b.checkpoint = fx.note(10);
    fails(&b, &fx.anchors(), CheckKind::InclusionProof);
    // ... with the size adjusted to match it, the proof no longer fits.
    b.inclusion.tree_size = 10;
    assert!(verify_bundle(&b, &fx.anchors()).is_err());
    // A checkpoint of another tenant's log with the same size.
    let other = Fixture::new(Suite::Gm, 12);
    let mut other_entries = Fixture::new(Suite::Gm, 12);
    other_entries
        .entries
        .iter_mut()
        .for_each(|e| e.tenant = "tenant-8".into());
    let mut tree = MemoryTree::new(Suite::Gm);
    for e in &other_entries.entries {
        tree.append(e.leaf_hash(Suite::Gm).unwrap()).unwrap();
    }
    let foreign = Checkpoint::new(ORIGIN, 12, tree.root()).unwrap();
    let mut b = fx.bundle(2, 12);
    b.checkpoint = foreign.sign(&other.ledger).unwrap().encode();
    assert!(matches!(
        fails(&b, &fx.anchors(), CheckKind::InclusionProof).error,
        ProofError::RootMismatch { .. }
    ));
    // Wrong origin.
    let mut anchors = fx.anchors();
    anchors.origin = Some("caretrail.eu/tenant-8".into());
    assert!(matches!(
        fails(&fx.bundle(2, 12), &anchors, CheckKind::CheckpointSignature).error,
        ProofError::OriginMismatch { .. }
    ));
}

#[test]
fn forged_and_missing_cosignatures() {
    for suite in Suite::ALL {
        let fx = Fixture::new(suite, 6);
        let good = fx.bundle(1, 6);

        // Flip a byte inside the witness signature line.
        let note = Note::parse(good.checkpoint.as_bytes()).unwrap();
        let mut sigs = note.signatures().to_vec();
        let last = sigs[1].signature.len() - 1;
        sigs[1].signature[last] ^= 1;
        let mut forged = Note::new(note.text()).unwrap();
        for s in sigs {
            forged.add_signature(s).unwrap();
        }
        let mut b = good.clone();
        b.checkpoint = forged.encode();
        assert!(matches!(
            fails(&b, &fx.anchors(), CheckKind::Cosignatures).error,
            ProofError::SignatureInvalid { .. }
        ));

        // A cosignature by an impostor under the witness's name is ignored; quorum then fails.
        let impostor = Cosigner::new("regulator.example/w1", key(suite, 77)).unwrap();
        let cp = fx.checkpoint(6);
        let mut n = cp.sign(&fx.ledger).unwrap();
        n.add_signature(impostor.cosign(&cp, 5).unwrap().to_note_signature())
            .unwrap();
        let mut b = good.clone();
        b.checkpoint = n.encode();
        assert!(matches!(
            fails(&b, &fx.anchors(), CheckKind::Cosignatures).error,
            ProofError::CosignatureQuorum {
                found: 0,
                required: 1
            }
        ));

        // A genuine cosignature of another checkpoint, copied over.
        let stale = fx.witness.cosign(&fx.checkpoint(5), 5).unwrap();
        let mut n = cp.sign(&fx.ledger).unwrap();
        n.add_signature(stale.to_note_signature()).unwrap();
        let mut b = good.clone();
        b.checkpoint = n.encode();
        fails(&b, &fx.anchors(), CheckKind::Cosignatures);

        // Cosignatures supplied as separate lines are merged into the note.
        let mut b = good.clone();
        b.checkpoint = cp.sign(&fx.ledger).unwrap().encode();
        fails(&b, &fx.anchors(), CheckKind::Cosignatures);
        b.cosignatures = vec![fx.witness.cosign(&cp, 9).unwrap().line()];
        verify_bundle(&b, &fx.anchors()).unwrap();
        b.cosignatures = vec!["not a signature line".into()];
        fails(&b, &fx.anchors(), CheckKind::CheckpointSignature);

        // Quorum above the number of witnesses.
        let mut anchors = fx.anchors();
        anchors.min_cosignatures = 2;
        fails(&good, &anchors, CheckKind::Cosignatures);
    }
}

#[test]
fn bad_consistency_proofs() {
    let fx = Fixture::new(Suite::Intl, 10);
    let proof = fx.tree.consistency_proof(4, 10).unwrap();
    let good = fx.bundle(7, 10).with_consistency(&fx.note(4), &proof);
    verify_bundle(&good, &fx.anchors()).unwrap();

    let mut b = good.clone();
    b.consistency.as_mut().unwrap().hashes[0].replace_range(0..2, "ff");
    fails(&b, &fx.anchors(), CheckKind::Consistency);

    // Old checkpoint from a forked log.
    let forked = Fixture::new(Suite::Intl, 4);
    let mut forked_entries = forked.entries.clone();
    forked_entries[0].request_id = "forked".into();
    let mut t = MemoryTree::new(Suite::Intl);
    for e in &forked_entries {
        t.append(e.leaf_hash(Suite::Intl).unwrap()).unwrap();
    }
    let forked_cp = Checkpoint::new(ORIGIN, 4, t.root()).unwrap();
    let b = fx
        .bundle(7, 10)
        .with_consistency(&forked_cp.sign(&fx.ledger).unwrap().encode(), &proof);
    // (Size 4 is a power of two, so the old root seeds the proof and the fork shows up as a
    // new-root mismatch.)
    assert!(matches!(
        fails(&b, &fx.anchors(), CheckKind::Consistency).error,
        ProofError::OldRootMismatch { .. } | ProofError::RootMismatch { .. }
    ));

    // Old checkpoint not signed by the ledger, or of another origin.
    let rogue = NoteSigner::new(ORIGIN, key(Suite::Intl, 50)).unwrap();
    let b = fx
        .bundle(7, 10)
        .with_consistency(&fx.checkpoint(4).sign(&rogue).unwrap().encode(), &proof);
    fails(&b, &fx.anchors(), CheckKind::Consistency);
    let mut anchors = fx.anchors();
    anchors.origin = None;
    let elsewhere = Checkpoint::new("caretrail.eu/other", 4, fx.tree.root_at(4).unwrap()).unwrap();
    let b = fx
        .bundle(7, 10)
        .with_consistency(&elsewhere.sign(&fx.ledger).unwrap().encode(), &proof);
    assert!(matches!(
        fails(&b, &anchors, CheckKind::Consistency).error,
        ProofError::OriginMismatch { .. }
    ));

    // A newer "earlier" checkpoint.
    let b = fx.bundle(3, 6).with_consistency(&fx.note(10), &[]);
    assert!(matches!(
        fails(&b, &fx.anchors(), CheckKind::Consistency).error,
        ProofError::SizeRegression { .. } | ProofError::WrongProofLength { .. }
    ));
}

#[test]
fn submitter_signature_checks() {
    let fx = Fixture::new(Suite::Intl, 4);
    let mut anchors = fx.anchors();
    anchors.submitter_keys = vec![key(Suite::Intl, 66).public_key()];
    fails(&fx.bundle(1, 4), &anchors, CheckKind::SubmitterSignature);
    // Any of several trusted institution keys will do.
    anchors.submitter_keys.push(fx.institution.public_key());
    verify_bundle(&fx.bundle(1, 4), &anchors).unwrap();
    // An unsigned entry when institution keys are trusted.
    let mut e = fx.entries[1].clone();
    e.signature.clear();
    let mut b = fx.bundle(1, 4);
    b.entry = e.encode().unwrap();
    fails(&b, &fx.anchors(), CheckKind::SubmitterSignature);
}

#[test]
fn malformed_bundles() {
    let fx = Fixture::new(Suite::Intl, 3);
    let good = fx.bundle(0, 3);
    let mut b = good.clone();
    b.format = "caretrail-proof-bundle/v2".into();
    fails(&b, &fx.anchors(), CheckKind::BundleFormat);
    let mut b = good.clone();
    b.entry.clear();
    fails(&b, &fx.anchors(), CheckKind::EntryEncoding);
    // Unknown fields, bad base64, oversized input are rejected at parse time.
    let mut v: serde_json::Value = serde_json::from_str(&good.to_json_pretty().unwrap()).unwrap();
    v["extra"] = json!(1);
    assert!(ProofBundle::from_json(v.to_string().as_bytes()).is_err());
    let mut v: serde_json::Value = serde_json::from_str(&good.to_json_pretty().unwrap()).unwrap();
    v["entry"] = json!("!!!");
    assert!(ProofBundle::from_json(v.to_string().as_bytes()).is_err());
    assert!(ProofBundle::from_json(&vec![b' '; 5 * 1024 * 1024]).is_err());
    assert!(ProofBundle::from_json(b"{").is_err());
    // Suite mismatch: a gm verifier of an intl bundle.
    let mut b = good.clone();
    b.suite = Suite::Gm;
    assert!(verify_bundle(&b, &fx.anchors()).is_err());
    // Bad keys in the bundle make TOFU anchors fail, not panic.
    let mut b = good.clone();
    b.keys.ledger = "nonsense".into();
    assert!(TrustAnchors::from_bundle(&b).is_err());
    b.keys.ledger = good.keys.ledger.clone();
    b.keys.submitter_public_key_pem =
        Some("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".into());
    assert!(TrustAnchors::from_bundle(&b).is_err());
}
