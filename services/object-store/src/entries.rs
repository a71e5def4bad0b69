//! What the object store puts on the ledger: a record's manifest (`record.anchored`), reads
//! and refusals (`record.accessed`, `record.access_denied`) and erasures (`record.erased`).
//!
//! Payloads (version 2) carry ids, the content hash and times in clear and seal everything
//! that would tell a reader about the patient's health — category, encounter date, media
//! type, size, FHIR type and title hash of a record; action, purpose and deciding rule of a
//! read; the reason of an erasure — behind a salted commitment
//! ([`caretrail_ledger_proofs::seal`]). The opening goes with the domain event to the audit
//! service, which shows it, with the entry's proof, to whoever may see the trail.
//!
//! Institutions holding their own key build and sign the same manifest: [`manifest`] with the
//! salt they chose (`seal_salt` in the upload metadata).

use caretrail_contracts::PatientId;
use caretrail_crypto::Suite;
use caretrail_ledger_proofs::Opening;
use caretrail_ledger_proofs::seal::{
    SALT_LEN, SealError, sealed_payload, sealed_payload_with_salt,
};
use serde_json::{Value, json};

use crate::error::ObjectStoreError;

fn sealing(e: SealError) -> ObjectStoreError {
    match e {
        SealError::Random => ObjectStoreError::Corrupt("no randomness for a seal"),
        _ => ObjectStoreError::Corrupt("sealing a ledger payload"),
    }
}

/// What a record's manifest states.
#[derive(Debug, Clone)]
pub struct ManifestFields<'a> {
    pub record: &'a str,
    pub patient: &'a PatientId,
    pub institution: &'a str,
    pub content_hash: &'a str,
    pub hash_algorithm: &'a str,
    pub category: &'a str,
    pub media_type: &'a str,
    pub size: u64,
    pub encounter_date: &'a str,
    pub fhir_resource_type: Option<&'a str>,
    pub title_hash: &'a str,
}

/// The canonical manifest of a record: the bytes the institution signs. Sealed with the salt
/// a client that signs its own manifests chose, else a fresh one.
pub fn manifest(
    suite: Suite,
    m: &ManifestFields<'_>,
    salt: Option<[u8; SALT_LEN]>,
) -> Result<(Vec<u8>, Opening), ObjectStoreError> {
    let clear = json!({
        "record": m.record,
        "patient": m.patient,
        "institution": m.institution,
        "content_hash": m.content_hash,
        "hash_algorithm": m.hash_algorithm,
    });
    let fields = json!({
        "category": m.category,
        "media_type": m.media_type,
        "size": m.size,
        "encounter_date": m.encounter_date,
        "fhir_resource_type": m.fhir_resource_type,
        "title_hash": m.title_hash,
    });
    match salt {
        Some(salt) => sealed_payload_with_salt(suite, clear, fields, salt),
        None => sealed_payload(suite, clear, fields),
    }
    .map_err(sealing)
}

/// A payload of `clear` ids and times with `fields` sealed under a fresh salt.
pub fn sealed(
    suite: Suite,
    clear: Value,
    fields: Value,
) -> Result<(Vec<u8>, Opening), ObjectStoreError> {
    sealed_payload(suite, clear, fields).map_err(sealing)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_manifest_shows_ids_and_hashes_and_seals_the_rest() {
        let patient: PatientId = "pat_5f1c0e2a9d8b7c6a5f4e3d2c1b0a9f8e".parse().unwrap();
        let m = ManifestFields {
            record: "rec_0000000000000000000000000000000a",
            patient: &patient,
            institution: "ins_0000000000000000000000000000000b",
            content_hash: "ab",
            hash_algorithm: "sm3",
            category: "mental_health",
            media_type: "application/pdf",
            size: 1234,
            encounter_date: "2026-11-01",
            fhir_resource_type: Some("DiagnosticReport"),
            title_hash: "cd",
        };
        let (bytes, opening) = manifest(Suite::Gm, &m, Some([3; SALT_LEN])).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        for hidden in [
            "mental_health",
            "2026-11-01",
            "application/pdf",
            "1234",
            "Diagnostic",
        ] {
            assert!(!text.contains(hidden), "{hidden} in {text}");
        }
        let payload: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(payload["record"], m.record);
        assert_eq!(payload["v"], 2);
        opening.verify(Suite::Gm, &payload).unwrap();
        assert_eq!(opening.fields["category"], "mental_health");
        // The same salt gives the same bytes: what a BYOK client signs is reproducible.
        assert_eq!(
            manifest(Suite::Gm, &m, Some([3; SALT_LEN])).unwrap().0,
            bytes
        );
    }
}
