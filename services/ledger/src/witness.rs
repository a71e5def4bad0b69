//! Witness cosignatures submitted to the ledger.
//!
//! An institution (typically the regulator) that has checked a checkpoint against the last
//! one it accepted (consistency proof) cosigns it with one of its **registered** keys
//! (c2sp.org/tlog-cosignature: Ed25519 cosignature/v1, or the Caretrail SM2 cosignature type)
//! and submits the signature line. The line's key name must be the institution id. The ledger
//! rebuilds the checkpoint body for that size, checks the line against the institution's
//! active keys, and records it (replicated) so every node serves the checkpoint with it.

use caretrail_crypto::VerifyingKey;
use caretrail_ledger_proofs::{NoteSignature, VerifierKey};

use crate::checkpoint;
use crate::node::{LedgerFailure, storage_failure};
use crate::storage::{CosignatureSpec, LedgerView};

fn refused(message: impl Into<String>) -> LedgerFailure {
    LedgerFailure::new("invalid_cosignature", message)
}

/// Checks a submitted cosignature line (blocking: reads the store).
pub fn check_cosignature(
    view: &LedgerView,
    tenant: &str,
    witness: &str,
    size: u64,
    line: &str,
) -> Result<CosignatureSpec, LedgerFailure> {
    let tree = view.tree(tenant).map_err(storage_failure)?;
    if size == 0 || size > tree.size() {
        return Err(refused(format!(
            "tree size {size} is not in 1..={}",
            tree.size()
        )));
    }
    let signature =
        NoteSignature::parse_line(line).map_err(|e| refused(format!("signature line: {e}")))?;
    if signature.name != witness {
        return Err(refused(format!(
            "the signature line names {:?}; a cosignature must carry the institution id {witness:?}",
            signature.name
        )));
    }
    let body = checkpoint::body(&tree, size)
        .map_err(|e| LedgerFailure::new("unavailable", format!("checkpoint: {e}")))?;
    let text = body.body();
    let keys = tree.keys(Some(witness)).map_err(storage_failure)?;
    if keys.is_empty() {
        return Err(LedgerFailure::new(
            "unknown_institution",
            format!("{witness:?} has no registered key"),
        ));
    }
    for key in keys.iter().filter(|k| k.revoked_index.is_none()) {
        let Ok(public) = VerifyingKey::from_spki_der(&key.public_key) else {
            continue;
        };
        let Ok(vkey) = VerifierKey::cosigner(witness, public) else {
            continue;
        };
        if vkey.key_id() != signature.key_id {
            continue;
        }
        return match vkey.verify(&text, &signature.signature) {
            Ok(_) => Ok(CosignatureSpec {
                tenant: tenant.to_string(),
                size,
                root: *body.root().as_bytes(),
                witness: witness.to_string(),
                line: signature.to_line().trim_end().to_string(),
            }),
            Err(_) => Err(refused(format!(
                "the cosignature does not verify over the checkpoint of size {size}"
            ))),
        };
    }
    Err(refused(format!(
        "no active registered key of {witness:?} has note key id {:08x}",
        signature.key_id
    )))
}
