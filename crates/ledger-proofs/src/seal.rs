//! Sealed fields: what an entry attests but must not show.
//!
//! A ledger entry is evidence, not a second copy of the record: whatever would tell a reader
//! about a patient's health — a record's category and encounter date, the purpose of a read,
//! a grant's scope, a referral's urgency, the hash of a free-text reason — is not in the
//! payload. The payload carries `"sealed": hex(C)` instead, a commitment to those fields:
//!
//! ```text
//! C = H("caretrail/sealed/v1\n" ‖ salt ‖ JCS(fields))      H = the tenant's suite hash
//! ```
//!
//! with a fresh 32-byte random salt per entry, so that nobody holding the entry alone (a
//! stolen ledger volume, an over-broad token) can test guesses such as "category =
//! mental_health". The *opening* (salt and fields) travels with the domain event to the
//! audit service; whoever is shown the fields (a regulator's trail) is shown the opening too
//! and checks it against the signed entry: [`Opening::verify`].
//!
//! Only ids (record, patient pseudonym, institutions, grant, users), content hashes, times
//! and the seal stay in clear: what the ledger's readers need to know who the entry concerns.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use caretrail_crypto::{HashValue, Hasher, Suite};

use crate::jcs::canonical_json;

/// Domain separation of the commitment.
const CONTEXT: &[u8] = b"caretrail/sealed/v1\n";
/// Bytes of salt.
pub const SALT_LEN: usize = 32;
/// The payload field holding the commitment.
pub const SEALED_FIELD: &str = "sealed";

/// The salt and the fields of a seal: what opens it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Opening {
    /// 64 hex digits.
    pub salt: String,
    /// The sealed fields (a JSON object, integers only).
    pub fields: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the salt must be {SALT_LEN} bytes as hex")]
    Salt,
    #[error("the sealed fields cannot be canonicalised (non-integer number?)")]
    Fields,
    #[error("the payload carries no seal")]
    NoSeal,
    #[error("the opening does not match the entry's seal")]
    Mismatch,
    #[error("no random salt could be drawn")]
    Random,
    #[error("the clear part and the sealed fields must be JSON objects")]
    NotAnObject,
}

/// Payload version of entries whose health fields are sealed (`"v": 2`); version 1 carried
/// them in clear.
pub const PAYLOAD_VERSION: u64 = 2;

/// Seals `fields` into `clear` with a fresh random salt and stamps [`PAYLOAD_VERSION`]: the
/// canonical payload to sign, and the opening to hand to whoever may be shown the fields.
pub fn sealed_payload(
    suite: Suite,
    clear: Value,
    fields: Value,
) -> Result<(Vec<u8>, Opening), SealError> {
    let salt = caretrail_crypto::random::<SALT_LEN>().map_err(|_| SealError::Random)?;
    sealed_payload_with_salt(suite, clear, fields, salt)
}

/// [`sealed_payload`] with a given salt: a client that signs its own payload chose it.
pub fn sealed_payload_with_salt(
    suite: Suite,
    clear: Value,
    fields: Value,
    salt: [u8; SALT_LEN],
) -> Result<(Vec<u8>, Opening), SealError> {
    let (Value::Object(mut clear), Value::Object(fields)) = (clear, fields) else {
        return Err(SealError::NotAnObject);
    };
    clear.insert("v".into(), PAYLOAD_VERSION.into());
    let opening = Opening::new(salt, fields);
    let payload = opening.seal_into(suite, clear)?;
    let bytes = canonical_json(&Value::Object(payload)).map_err(|_| SealError::Fields)?;
    Ok((bytes, opening))
}

/// A salt given as hex (an opening's, or a client's that signs its own manifests).
pub fn parse_salt(hex: &str) -> Result<[u8; SALT_LEN], SealError> {
    let bytes = hex::decode(hex).map_err(|_| SealError::Salt)?;
    bytes.try_into().map_err(|_| SealError::Salt)
}

impl Opening {
    pub fn new(salt: [u8; SALT_LEN], fields: Map<String, Value>) -> Self {
        Self {
            salt: hex::encode(salt),
            fields,
        }
    }

    /// The commitment `C` to these fields under the tenant's hash.
    pub fn commitment(&self, suite: Suite) -> Result<HashValue, SealError> {
        let salt = parse_salt(&self.salt)?;
        let fields =
            canonical_json(&Value::Object(self.fields.clone())).map_err(|_| SealError::Fields)?;
        let mut h = Hasher::new(suite);
        h.update(CONTEXT);
        h.update(&salt);
        h.update(&fields);
        Ok(h.finalize())
    }

    /// `payload` with the seal of these fields added as [`SEALED_FIELD`].
    pub fn seal_into(
        &self,
        suite: Suite,
        mut payload: Map<String, Value>,
    ) -> Result<Map<String, Value>, SealError> {
        payload.insert(
            SEALED_FIELD.into(),
            Value::String(self.commitment(suite)?.to_hex()),
        );
        Ok(payload)
    }

    /// Checks this opening against a signed payload's seal.
    pub fn verify(&self, suite: Suite, payload: &Value) -> Result<(), SealError> {
        let sealed = payload
            .get(SEALED_FIELD)
            .and_then(Value::as_str)
            .ok_or(SealError::NoSeal)?;
        if self.commitment(suite)?.to_hex() == sealed {
            Ok(())
        } else {
            Err(SealError::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn openings_verify_and_altered_ones_do_not() {
        for suite in [Suite::Intl, Suite::Gm] {
            let opening = Opening::new(
                [7; SALT_LEN],
                fields(json!({"category": "mental_health", "encounter_date": "2026-11-01"})),
            );
            let payload = Value::Object(
                opening
                    .seal_into(suite, fields(json!({"v": 2, "record": "rec_1"})))
                    .unwrap(),
            );
            assert!(!payload.to_string().contains("mental_health"));
            opening.verify(suite, &payload).unwrap();

            let mut other_field = opening.clone();
            other_field.fields["category"] = json!("exam_report");
            assert_eq!(
                other_field.verify(suite, &payload),
                Err(SealError::Mismatch)
            );
            let other_salt = Opening::new([8; SALT_LEN], opening.fields.clone());
            assert_eq!(other_salt.verify(suite, &payload), Err(SealError::Mismatch));
            let other_suite = match suite {
                Suite::Intl => Suite::Gm,
                Suite::Gm => Suite::Intl,
            };
            assert_eq!(
                opening.verify(other_suite, &payload),
                Err(SealError::Mismatch)
            );
            assert_eq!(
                opening.verify(suite, &json!({"record": "rec_1"})),
                Err(SealError::NoSeal)
            );
        }
    }

    #[test]
    fn the_commitment_is_fixed_by_its_definition() {
        // H("caretrail/sealed/v1\n" ‖ salt ‖ JCS(fields)), computed independently.
        let opening = Opening::new([0; SALT_LEN], fields(json!({"b": 1, "a": "x"})));
        let mut input = b"caretrail/sealed/v1\n".to_vec();
        input.extend_from_slice(&[0; SALT_LEN]);
        input.extend_from_slice(br#"{"a":"x","b":1}"#);
        assert_eq!(
            opening.commitment(Suite::Intl).unwrap(),
            caretrail_crypto::hash(Suite::Intl, &input)
        );
    }

    #[test]
    fn sealed_payloads_hide_their_fields_behind_fresh_salts() {
        let (a, opening_a) = sealed_payload(
            Suite::Gm,
            json!({"v": 2, "record": "rec_1"}),
            json!({"purpose": "research"}),
        )
        .unwrap();
        let (b, opening_b) = sealed_payload(
            Suite::Gm,
            json!({"v": 2, "record": "rec_1"}),
            json!({"purpose": "research"}),
        )
        .unwrap();
        assert_ne!(a, b, "the same fields seal differently each time");
        assert_ne!(opening_a.salt, opening_b.salt);
        let a: Value = serde_json::from_slice(&a).unwrap();
        assert!(!a.to_string().contains("research"));
        assert_eq!(a["v"], PAYLOAD_VERSION);
        opening_a.verify(Suite::Gm, &a).unwrap();
        assert!(opening_b.verify(Suite::Gm, &a).is_err());
        assert_eq!(
            sealed_payload(Suite::Gm, json!([1]), json!({})).unwrap_err(),
            SealError::NotAnObject
        );
    }

    #[test]
    fn salts_are_checked() {
        assert_eq!(parse_salt("abcd"), Err(SealError::Salt));
        assert_eq!(parse_salt("zz"), Err(SealError::Salt));
        let bad = Opening {
            salt: "00".into(),
            fields: Map::new(),
        };
        assert_eq!(bad.commitment(Suite::Intl), Err(SealError::Salt));
        assert_eq!(parse_salt(&"ab".repeat(SALT_LEN)), Ok([0xab; SALT_LEN]));
    }
}
