//! Institution keys as ledger entries.
//!
//! A tenant's log holds the history of its institutions' signing keys: an
//! `institution.key_registered` entry introduces a key, an `institution.key_revoked` entry
//! ends it. Both must be submitted by the tenant's **registrar** (submitter
//! [`REGISTRAR`], signed with the registrar key given when the tenant was registered — the
//! identity service's tenant CA key). Every other entry must be signed with a key of its
//! submitter that is registered and not revoked at the entry's position in the log.
//!
//! The `keys` table is derived from these entries while applying (and rebuilt from them when a
//! snapshot is installed), so a verifier can replay the same rules from the log alone: key
//! history is as verifiable as the data. Signatures are checked by the leader before it
//! proposes; the state machine re-checks only key status, deterministically, so an entry
//! signed with a key revoked just before it in the log is refused on every replica.
//!
//! Payloads (canonical JSON, RFC 8785):
//!
//! ```json
//! {"algorithm":"ed25519","institution":"ins_…","key_id":"<hex KeyId>","public_key":"<base64 SPKI DER>"}
//! {"institution":"ins_…","key_id":"<hex KeyId>","reason":"compromised"}
//! ```

use base64::Engine as _;
use caretrail_crypto::VerifyingKey;
use redb::{ReadableTable, Table};

use super::error::Result;
use super::schema::{KeyRecord, decode, encode};
use super::types::Refusal;

pub use caretrail_contracts::ledger::{
    KIND_KEY_REGISTERED, KIND_KEY_REVOKED, KeyRegistration, KeyRevocation, REGISTRAR,
};

/// What a key entry does to the key table, once its payload is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyChange {
    Register {
        institution: String,
        key_id: String,
        public_key: Vec<u8>,
    },
    Revoke {
        institution: String,
        key_id: String,
    },
}

fn invalid(reason: impl Into<String>) -> Refusal {
    Refusal::InvalidEntry {
        reason: reason.into(),
    }
}

/// Parses a key entry's payload (deterministic; no table access).
pub(crate) fn parse_key_change(
    kind: &str,
    payload: &[u8],
) -> std::result::Result<Option<KeyChange>, Refusal> {
    match kind {
        KIND_KEY_REGISTERED => {
            let reg: KeyRegistration = serde_json::from_slice(payload)
                .map_err(|e| invalid(format!("key registration payload: {e}")))?;
            if reg.institution.is_empty() || reg.institution == REGISTRAR {
                return Err(invalid("key registration names no institution"));
            }
            let der = base64::engine::general_purpose::STANDARD
                .decode(&reg.public_key)
                .map_err(|_| invalid("key registration: public_key is not base64"))?;
            let key = VerifyingKey::from_spki_der(&der)
                .map_err(|e| invalid(format!("key registration: public_key: {e}")))?;
            if key.key_id().to_hex() != reg.key_id {
                return Err(invalid(
                    "key registration: key_id does not match the public key",
                ));
            }
            if key.algorithm().as_str() != reg.algorithm {
                return Err(invalid(format!(
                    "key registration: algorithm {:?} does not match the public key ({})",
                    reg.algorithm,
                    key.algorithm()
                )));
            }
            Ok(Some(KeyChange::Register {
                institution: reg.institution,
                key_id: reg.key_id,
                public_key: der,
            }))
        }
        KIND_KEY_REVOKED => {
            let rev: KeyRevocation = serde_json::from_slice(payload)
                .map_err(|e| invalid(format!("key revocation payload: {e}")))?;
            Ok(Some(KeyChange::Revoke {
                institution: rev.institution,
                key_id: rev.key_id,
            }))
        }
        _ => Ok(None),
    }
}

pub(crate) type KeysTable<'t> = Table<'t, (u32, &'static str, &'static str), &'static [u8]>;

/// Looks up a submitter key (any readable keys table).
pub(crate) fn lookup(
    keys: &impl ReadableTable<(u32, &'static str, &'static str), &'static [u8]>,
    no: u32,
    submitter: &str,
    key_id: &str,
) -> Result<Option<KeyRecord>> {
    match keys.get((no, submitter, key_id))? {
        Some(v) => Ok(Some(decode(v.value())?)),
        None => Ok(None),
    }
}

/// True when `submitter` has at least one registered key (revoked or not).
pub(crate) fn has_any_key(
    keys: &impl ReadableTable<(u32, &'static str, &'static str), &'static [u8]>,
    no: u32,
    submitter: &str,
) -> Result<bool> {
    let mut range = keys.range((no, submitter, "")..)?;
    match range.next() {
        Some(item) => {
            let (k, _) = item?;
            let (n, s, _) = k.value();
            Ok(n == no && s == submitter)
        }
        None => Ok(false),
    }
}

/// Decides whether an entry may be appended at `index` as far as keys are concerned, and what
/// it changes. Reads only.
pub(crate) fn check(
    keys: &KeysTable<'_>,
    no: u32,
    registrar_key_id: &str,
    kind: &str,
    submitter: &str,
    key_id: &str,
    payload: &[u8],
) -> Result<std::result::Result<Option<KeyChange>, Refusal>> {
    let change = match parse_key_change(kind, payload) {
        Ok(c) => c,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if submitter == REGISTRAR {
        if key_id != registrar_key_id {
            return Ok(Err(Refusal::UnknownKey {
                submitter: submitter.to_string(),
                key_id: key_id.to_string(),
            }));
        }
    } else if change.is_some() {
        return Ok(Err(invalid(format!(
            "{kind} entries must be submitted by the tenant's registrar"
        ))));
    } else {
        match lookup(keys, no, submitter, key_id)? {
            Some(record) => {
                if let Some(revoked_at) = record.revoked_index {
                    return Ok(Err(Refusal::KeyRevoked {
                        submitter: submitter.to_string(),
                        key_id: key_id.to_string(),
                        revoked_at,
                    }));
                }
            }
            None if has_any_key(keys, no, submitter)? => {
                return Ok(Err(Refusal::UnknownKey {
                    submitter: submitter.to_string(),
                    key_id: key_id.to_string(),
                }));
            }
            None => {
                return Ok(Err(Refusal::UnknownInstitution {
                    submitter: submitter.to_string(),
                }));
            }
        }
    }
    match &change {
        Some(KeyChange::Register {
            institution,
            key_id,
            ..
        }) if lookup(keys, no, institution, key_id)?.is_some() => {
            return Ok(Err(invalid(format!(
                "key {key_id} of {institution} is already registered"
            ))));
        }
        Some(KeyChange::Register { .. }) => {}
        Some(KeyChange::Revoke {
            institution,
            key_id,
        }) => match lookup(keys, no, institution, key_id)? {
            None => {
                return Ok(Err(Refusal::UnknownKey {
                    submitter: institution.clone(),
                    key_id: key_id.clone(),
                }));
            }
            Some(r) if r.revoked_index.is_some() => {
                return Ok(Err(invalid(format!(
                    "key {key_id} of {institution} is already revoked"
                ))));
            }
            Some(_) => {}
        },
        None => {}
    }
    Ok(Ok(change))
}

/// Applies a checked key change made by the entry at `index`.
pub(crate) fn apply(
    keys: &mut KeysTable<'_>,
    no: u32,
    index: u64,
    change: KeyChange,
) -> Result<()> {
    match change {
        KeyChange::Register {
            institution,
            key_id,
            public_key,
        } => {
            let record = KeyRecord {
                public_key,
                registered_index: index,
                revoked_index: None,
            };
            keys.insert(
                (no, institution.as_str(), key_id.as_str()),
                encode(&record)?.as_slice(),
            )?;
        }
        KeyChange::Revoke {
            institution,
            key_id,
        } => {
            if let Some(mut record) = lookup(keys, no, &institution, &key_id)? {
                record.revoked_index = Some(index);
                keys.insert(
                    (no, institution.as_str(), key_id.as_str()),
                    encode(&record)?.as_slice(),
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use caretrail_crypto::{SigningKey, Suite};

    fn registration(key: &VerifyingKey) -> Vec<u8> {
        serde_json::to_vec(&KeyRegistration {
            institution: "ins_a".into(),
            key_id: key.key_id().to_hex(),
            algorithm: key.algorithm().to_string(),
            public_key: base64::engine::general_purpose::STANDARD.encode(key.to_spki_der()),
        })
        .unwrap()
    }

    #[test]
    fn registration_payload_must_describe_its_key() {
        let key = SigningKey::generate_for_suite(Suite::Gm)
            .unwrap()
            .public_key();
        let ok = parse_key_change(KIND_KEY_REGISTERED, &registration(&key)).unwrap();
        assert!(matches!(ok, Some(KeyChange::Register { .. })));

        let other = SigningKey::generate_for_suite(Suite::Gm)
            .unwrap()
            .public_key();
        let mut forged: KeyRegistration = serde_json::from_slice(&registration(&key)).unwrap();
        forged.key_id = other.key_id().to_hex();
        let err = parse_key_change(KIND_KEY_REGISTERED, &serde_json::to_vec(&forged).unwrap());
        assert!(err.is_err());

        let mut wrong_alg: KeyRegistration = serde_json::from_slice(&registration(&key)).unwrap();
        wrong_alg.algorithm = "ed25519".into();
        let err = parse_key_change(
            KIND_KEY_REGISTERED,
            &serde_json::to_vec(&wrong_alg).unwrap(),
        );
        assert!(err.is_err());

        assert!(parse_key_change(KIND_KEY_REGISTERED, b"{}").is_err());
        assert_eq!(
            parse_key_change("record.anchored", b"anything").unwrap(),
            None
        );
    }
}
