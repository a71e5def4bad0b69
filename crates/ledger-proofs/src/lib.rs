//! The I/O-free core shared by the ledger service and the offline verifier
//! (`caretrail verify`): Merkle proofs, signed checkpoints, witness cosignatures, ledger entry
//! encoding and proof bundles. Every hash and signature goes through `caretrail-crypto`, so a
//! tenant's suite (`intl`: SHA-256 / Ed25519, `gm`: SM3 / SM2) applies throughout.
//!
//! # Merkle tree ([`merkle`])
//!
//! RFC 9162 §2.1 with the suite hash H: leaf = `H(0x00 ‖ entry)`, node = `H(0x01 ‖ l ‖ r)`,
//! empty tree = `H()`, MTH(D\[n\]) splits at the largest power of two below n. Proofs are generated
//! from *perfect subtrees* — node `(level, index)` hashes leaves `[index·2^level, (index+1)·2^level)`
//! — which an append-only store writes once and never changes ([`NodeSource`]); subtrees that are
//! incomplete at the requested size are folded from O(log n) complete ones. Verification follows
//! RFC 9162 §2.1.3.2 and §2.1.4.2 literally, after an up-front proof-length check.
//!
//! # Checkpoints ([`checkpoint`], c2sp.org/tlog-checkpoint)
//!
//! ```text
//! caretrail.eu/<tenant id>\n          origin (a plain string; the ledger uses caretrail.<region>/<tenant id>)
//! 42\n                                tree size, ASCII decimal, no leading zeroes
//! <base64 of the 32-byte root>\n      root hash, standard base64 with padding
//! [extension line\n]*                 optional, non-empty, at most 16
//! \n                                  blank line
//! — <key name> <base64(u32be key id ‖ signature)>\n   one line per signature
//! ```
//!
//! Notes follow c2sp.org/signed-note: UTF-8, no control characters but newline, text separated
//! from signature lines (`— <name> <base64>`, em dash U+2014) by the last blank line, at most
//! 100 signatures and 256 KiB. Unknown signature lines are ignored; a known key whose signature
//! fails rejects the note; at least one known signature must verify.
//!
//! # Keys ([`note::NoteKeyType`])
//!
//! Key ID = first 4 bytes (big-endian) of `H(name ‖ 0x0A ‖ type bytes ‖ public key)`; verifier
//! keys are written `<name>+<8 hex key id>+<base64(type bytes ‖ public key)>` (vkey).
//!
//! | type | bytes | H | public key | signature |
//! |---|---|---|---|---|
//! | Ed25519 (signed-note) | `0x01` | SHA-256 | 32 bytes | Ed25519 over the note text |
//! | Ed25519 cosignature/v1 (tlog-cosignature) | `0x04` | SHA-256 | 32 bytes | `u64be t ‖` Ed25519 over `"cosignature/v1\ntime <t>\n" ‖ text` |
//! | SM2 (**Caretrail-specific**) | `0xFF ‖ "caretrail/sm2-note/v1\n"` | SM3 | 65-byte SEC1 point | DER SM2 (distid `1234567812345678`) over the text |
//! | SM2 cosignature (**Caretrail-specific**) | `0xFF ‖ "caretrail/sm2-cosignature/v1\n"` | SM3 | 65-byte SEC1 point | `u64be t ‖` DER SM2 over the cosignature/v1 message |
//!
//! signed-note reserves `0xFF` for types without an assigned byte, followed by a longer
//! identifier; `0xFA`–`0xFE` are reserved and `0x02`–`0x06` are assigned, so the SM2 types use
//! `0xFF` plus a Caretrail identifier. Other implementations ignore these lines as unknown.
//!
//! # Ledger entries ([`entry`])
//!
//! `F(x) = u32be len(x) ‖ x`; strings are UTF-8 without control characters.
//!
//! ```text
//! entry (leaf)   "CTLE" ‖ 0x01 ‖ F(tenant) ‖ u64be index ‖ u64be timestamp_ms ‖ F(kind)
//!                ‖ F(submitter) ‖ F(request_id) ‖ F(key_id) ‖ F(payload) ‖ F(signature)
//! signed input   "CTLS" ‖ 0x01 ‖ F(tenant) ‖ F(kind) ‖ F(submitter) ‖ F(request_id)
//!                ‖ F(key_id) ‖ F(payload)
//! ```
//!
//! The submitter signs only what it knows before submitting; the leader assigns `index` and
//! `timestamp_ms`, which the log (and the checkpoint signature over its root) vouches for.
//! `request_id` makes each signed submission single-use (the ledger deduplicates on
//! (submitter, request_id)). Limits: tenant ≤ 128, kind 1..=64 of `[a-z0-9._-]`, submitter ≤ 256,
//! request_id ≤ 128, key_id ≤ 256, payload ≤ 1 MiB, signature ≤ 512 bytes. Decoding rejects
//! other versions, over-long fields and trailing bytes.
//!
//! Payloads built with [`canonical_json`] are RFC 8785 (JCS) restricted to integers.
//!
//! # Witnesses ([`cosign`]) and proof bundles ([`bundle`])
//!
//! A [`Witness`] cosigns a checkpoint only after verifying the log signature and a consistency
//! proof from the last checkpoint it accepted. A [`ProofBundle`] (JSON, see its docs) carries an
//! entry, its inclusion proof, the signed checkpoint, cosignatures and an optional consistency
//! proof; [`verify_bundle`] checks all of it against [`TrustAnchors`] and returns one line per
//! check.
//!
//! # Example
//!
//! ```
//! use caretrail_crypto::SigningKey;
//! use caretrail_ledger_proofs::*;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let suite = Suite::Gm;
//! let institution = SigningKey::generate_for_suite(suite)?;
//! let ledger = NoteSigner::new("caretrail.cn/tenant-1", SigningKey::generate_for_suite(suite)?)?;
//!
//! // Ledger: append a signed submission, checkpoint the tree.
//! let sub = Submission {
//!     tenant: "tenant-1".into(),
//!     kind: "record.anchored".into(),
//!     submitter: "hospital-a".into(),
//!     request_id: "req-1".into(),
//!     key_id: institution.key_id().to_hex(),
//!     payload: canonical_json(&serde_json::json!({ "record": "r1" }))?,
//! };
//! let signature = sub.sign(&institution)?;
//! let mut tree = MemoryTree::new(suite);
//! let entry = sub.into_entry(tree.size(), 1_700_000_000_000, signature);
//! tree.append(entry.leaf_hash(suite)?)?;
//! let checkpoint = Checkpoint::new("caretrail.cn/tenant-1", tree.size(), tree.root())?;
//! let note = checkpoint.sign(&ledger)?.encode();
//!
//! // Bundle for the regulator.
//! let keys = BundleKeys::new(&ledger.verifier_key(), &[], Some(institution.verifying_key()));
//! let proof = tree.inclusion_proof(entry.index, tree.size())?;
//! let bundle = ProofBundle::new(suite, &entry, tree.size(), &proof, &note, keys)?;
//!
//! // Verifier: pinned keys, offline.
//! let anchors = TrustAnchors {
//!     ledger_keys: vec![ledger.verifier_key()],
//!     submitter_keys: vec![institution.public_key()],
//!     ..TrustAnchors::default()
//! };
//! let report = verify_bundle(&bundle, &anchors)?;
//! for check in &report.checks {
//!     println!("{:?} {}: {}", check.status, check.check, check.detail);
//! }
//! # Ok(())
//! # }
//! ```

pub mod bundle;
pub mod checkpoint;
pub mod cosign;
pub mod entry;
mod error;
mod jcs;
pub mod merkle;
pub mod note;
pub mod seal;
mod serde_util;

pub use bundle::{
    BUNDLE_FORMAT, BundleConsistency, BundleFailure, BundleInclusion, BundleKeys, CheckKind,
    CheckResult, CheckStatus, ProofBundle, TrustAnchors, VerifiedReport, verify_bundle,
};
pub use checkpoint::{Checkpoint, OpenedCheckpoint};
pub use cosign::{Cosignature, Cosigner, Witness, check_extends, cosign_if_consistent};
pub use entry::{Entry, Submission};
pub use error::{ProofError, Result};
pub use jcs::canonical_json;
pub use merkle::{
    CompactRange, MemoryTree, NodeId, NodeSource, consistency_proof, empty_root, inclusion_proof,
    leaf_hash, node_hash, root, root_at, root_from_inclusion_proof, verify_consistency,
    verify_inclusion,
};
pub use note::{
    Note, NoteKeyType, NoteSignature, NoteSigner, VerifiedSignature, VerifierKey,
    cosignature_message,
};
pub use seal::{Opening, SealError};

/// Re-exported so users need not depend on `caretrail-crypto` for the types in this API.
pub use caretrail_crypto::{HashValue, Suite};
