//! Request and response types of the public API, and the parsing of upload metadata.

use caretrail_contracts::ledger::Receipt;
use caretrail_contracts::{PatientId, RecordId};
use caretrail_platform::FieldError;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ObjectStoreError;

pub use caretrail_contracts::records::Category;

/// Media types a record may have (parameters such as `charset` are dropped).
pub const MEDIA_TYPES: [&str; 14] = [
    "application/pdf",
    "application/fhir+json",
    "application/fhir+xml",
    "application/dicom",
    "application/json",
    "application/xml",
    "application/hl7-v2",
    "application/zip",
    "image/jpeg",
    "image/png",
    "image/tiff",
    "text/plain",
    "text/csv",
    "text/html",
];

/// The media type's essence if it is one we store.
pub fn parse_media_type(value: &str) -> Result<String, ObjectStoreError> {
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if MEDIA_TYPES.contains(&essence.as_str()) {
        Ok(essence)
    } else {
        Err(ObjectStoreError::UnsupportedMediaType(value.to_string()))
    }
}

/// Metadata of an upload, sent as JSON in the `Caretrail-Metadata` header (raw UTF-8 or
/// percent-encoded); the body is the record itself with its media type as `Content-Type`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordIn {
    /// Pseudonymous patient id from `POST /v1/patients`.
    pub patient: String,
    pub category: String,
    /// Shown to readers; kept in the database only (the ledger holds its hash).
    pub title: String,
    /// `YYYY-MM-DD`.
    pub encounter_date: String,
    /// E.g. `DiagnosticReport`, `Observation`, `ImagingStudy`.
    #[serde(default)]
    pub fhir_resource_type: Option<String>,
    /// BYOK only: the record id the client chose (`rec_` + 32 hex) and signed.
    #[serde(default)]
    pub record_id: Option<String>,
    /// BYOK only: hex key id of the institution's registered key.
    #[serde(default)]
    pub key_id: Option<String>,
    /// BYOK only: base64 signature over the ledger signing input of the manifest.
    #[serde(default)]
    pub signature: Option<String>,
    /// BYOK only: the 64-hex salt the client sealed the manifest's health fields with
    /// (docs/ARCHITECTURE.md, "What an entry carries"); fresh and random for every record.
    #[serde(default)]
    pub seal_salt: Option<String>,
}

/// A client-supplied manifest signature (bring-your-own-key institutions).
#[derive(Debug, Clone)]
pub struct ClientSignature {
    pub key_id: String,
    pub signature: String,
    /// The salt the client sealed the manifest with.
    pub seal_salt: [u8; caretrail_ledger_proofs::seal::SALT_LEN],
}

/// Upload metadata after validation.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub patient: PatientId,
    pub category: Category,
    pub media_type: String,
    pub title: String,
    pub encounter_date: NaiveDate,
    pub fhir_resource_type: Option<String>,
    pub record_id: Option<RecordId>,
    pub client_signature: Option<ClientSignature>,
}

fn valid_fhir_type(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase())
        && s.len() <= 64
        && chars.all(|c| c.is_ascii_alphabetic())
}

impl RecordIn {
    /// Parses the header value: JSON, raw or percent-encoded UTF-8.
    pub fn from_header(raw: &[u8]) -> Result<Self, ObjectStoreError> {
        let text = std::str::from_utf8(raw)
            .map_err(|_| ObjectStoreError::field("Caretrail-Metadata", "must be UTF-8 JSON"))?;
        let decoded = if text.trim_start().starts_with('%') {
            percent_decode(text).ok_or_else(|| {
                ObjectStoreError::field("Caretrail-Metadata", "invalid percent-encoding")
            })?
        } else {
            text.to_string()
        };
        serde_json::from_str(&decoded).map_err(|e| {
            ObjectStoreError::field("Caretrail-Metadata", format!("invalid metadata JSON: {e}"))
        })
    }

    /// Checks every field (all problems listed); `today` is the latest calendar date anywhere
    /// ([`latest_date`]).
    pub fn validate(
        self,
        media_type: String,
        today: NaiveDate,
    ) -> Result<NewRecord, ObjectStoreError> {
        let mut errors = Vec::new();
        let patient = self.patient.parse::<PatientId>().map_err(|e| {
            errors.push(FieldError::new("patient", e.to_string()));
        });
        let category = Category::parse(&self.category).ok_or_else(|| {
            let known: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
            errors.push(FieldError::new(
                "category",
                format!("unknown category; one of {}", known.join(", ")),
            ));
        });
        let title = self.title.trim().to_string();
        if title.is_empty() || title.chars().count() > 200 || title.chars().any(char::is_control) {
            errors.push(FieldError::new(
                "title",
                "1 to 200 characters, no control characters",
            ));
        }
        let date = NaiveDate::parse_from_str(&self.encounter_date, "%Y-%m-%d")
            .ok()
            .filter(|d| *d <= today && d.year_ce().1 >= 1900);
        if date.is_none() {
            errors.push(FieldError::new(
                "encounter_date",
                "a date YYYY-MM-DD between 1900 and today (no later than today's date anywhere on Earth)",
            ));
        }
        if let Some(t) = &self.fhir_resource_type
            && !valid_fhir_type(t)
        {
            errors.push(FieldError::new(
                "fhir_resource_type",
                "a FHIR resource type name such as DiagnosticReport",
            ));
        }
        let record_id = match &self.record_id {
            Some(id) => match id.parse::<RecordId>() {
                Ok(id) => Some(id),
                Err(e) => {
                    errors.push(FieldError::new("record_id", e.to_string()));
                    None
                }
            },
            None => None,
        };
        let client_signature = match (&self.key_id, &self.signature) {
            (Some(key_id), Some(signature)) => {
                if record_id.is_none() {
                    errors.push(FieldError::new(
                        "record_id",
                        "a signed upload names the record id it signed",
                    ));
                }
                let salt = self
                    .seal_salt
                    .as_deref()
                    .and_then(|h| caretrail_ledger_proofs::seal::parse_salt(h).ok());
                if salt.is_none() {
                    errors.push(FieldError::new(
                        "seal_salt",
                        "a signed upload names the 64-hex salt its manifest was sealed with",
                    ));
                }
                salt.map(|seal_salt| ClientSignature {
                    key_id: key_id.clone(),
                    signature: signature.clone(),
                    seal_salt,
                })
            }
            (None, None) => {
                if self.seal_salt.is_some() {
                    errors.push(FieldError::new(
                        "seal_salt",
                        "only for signed (BYOK) uploads",
                    ));
                }
                None
            }
            _ => {
                errors.push(FieldError::new(
                    "signature",
                    "key_id and signature go together",
                ));
                None
            }
        };
        if !errors.is_empty() {
            return Err(ObjectStoreError::Validation(errors));
        }
        match (patient, category, date) {
            (Ok(patient), Ok(category), Some(encounter_date)) => Ok(NewRecord {
                patient,
                category,
                media_type,
                title,
                encounter_date,
                fhir_resource_type: self.fhir_resource_type,
                record_id,
                client_signature,
            }),
            _ => Err(ObjectStoreError::Validation(errors)),
        }
    }
}

use chrono::Datelike as _;

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.trim().as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Where a record is on the ledger.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LedgerRefOut {
    pub index: u64,
    /// Hex leaf hash of the `record.anchored` entry.
    pub leaf_hash: String,
}

/// A record's metadata.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecordOut {
    pub id: String,
    pub patient: String,
    /// The institution that created it.
    pub institution: String,
    pub category: Category,
    pub media_type: String,
    pub title: String,
    pub encounter_date: String,
    pub fhir_resource_type: Option<String>,
    pub size: u64,
    /// Hex hash of the plaintext with the tenant's suite.
    pub content_hash: String,
    /// `sha256` or `sm3`.
    pub hash_algorithm: String,
    /// `anchoring` (receipt pending), `active`, `erased`.
    pub status: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub ledger: Option<LedgerRefOut>,
}

/// Proof that a record was anchored: the ledger's receipt plus the record it is about.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReceiptOut {
    pub record_id: String,
    pub content_hash: String,
    pub ledger_index: u64,
    pub leaf_hash: String,
    pub tree_size: u64,
    pub root: String,
    /// Signed checkpoint note (c2sp.org/tlog-checkpoint) that includes the entry.
    pub checkpoint: String,
    pub inclusion_proof: Vec<String>,
    /// Everything `caretrail verify bundle` needs, in one document.
    #[schema(value_type = Object)]
    pub bundle: caretrail_ledger_proofs::ProofBundle,
}

impl ReceiptOut {
    pub fn new(record_id: &str, content_hash: &str, r: Receipt) -> Self {
        Self {
            record_id: record_id.to_string(),
            content_hash: content_hash.to_string(),
            ledger_index: r.index,
            leaf_hash: r.leaf_hash,
            tree_size: r.tree_size,
            root: r.root,
            checkpoint: r.checkpoint,
            inclusion_proof: r.inclusion_proof,
            bundle: r.bundle,
        }
    }
}

/// Reply to an upload: the record and, once committed on the ledger, its receipt (201);
/// without a receipt (202) the record is anchored in the background — fetch
/// `GET /v1/records/{id}/receipt` later.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UploadOut {
    pub record: RecordOut,
    pub receipt: Option<ReceiptOut>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecordListOut {
    pub items: Vec<RecordOut>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Why a record is erased (kept in the database; the ledger holds its hash).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseIn {
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EraseOut {
    pub record_id: String,
    pub status: String,
    pub erased_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KekVersionOut {
    pub version: i32,
    pub created_at: DateTime<Utc>,
    /// Records whose data key is wrapped under this version.
    pub records: u64,
}

/// The tenant's key-encryption keys and the progress of rewrapping.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecordKeysOut {
    pub tenant: String,
    pub current_version: i32,
    pub versions: Vec<KekVersionOut>,
    /// Records still wrapped under an older version.
    pub pending_rewrap: u64,
    pub rewrap_running: bool,
}

/// The latest calendar date anywhere on Earth at `now` (UTC+14): an encounter dated today
/// where the institution is must never be "in the future". Checking against UTC's date
/// refused same-day uploads in China (UTC+8) every day between 00:00 and 08:00.
pub fn latest_date(now: chrono::DateTime<chrono::Utc>) -> NaiveDate {
    (now + chrono::Duration::hours(14)).date_naive()
}

#[cfg(test)]
impl ObjectStoreError {
    fn field_errors_for_test(&self) -> Vec<String> {
        use caretrail_platform::problem::ApiError as _;
        self.field_errors().into_iter().map(|f| f.field).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn input(json: &str) -> Result<NewRecord, ObjectStoreError> {
        let today = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        RecordIn::from_header(json.as_bytes())?.validate("application/pdf".into(), today)
    }

    const PATIENT: &str = "pat_5f1c0e2a9d8b7c6a5f4e3d2c1b0a9f8e";

    #[test]
    fn parses_valid_metadata_raw_and_percent_encoded() {
        let json = format!(
            r#"{{"patient":"{PATIENT}","category":"exam_report","title":"胸部CT报告","encounter_date":"2026-11-01","fhir_resource_type":"DiagnosticReport"}}"#
        );
        let parsed = input(&json).unwrap();
        assert_eq!(parsed.title, "胸部CT报告");
        assert_eq!(parsed.category, Category::ExamReport);
        let encoded: String = json.bytes().map(|b| format!("%{b:02X}")).collect();
        assert_eq!(input(&encoded).unwrap().title, "胸部CT报告");
    }

    #[test]
    fn reports_every_bad_field() {
        let err = input(
            r#"{"patient":"nobody","category":"gossip","title":"","encounter_date":"2999-01-01","fhir_resource_type":"no such"}"#,
        )
        .unwrap_err();
        let fields: Vec<String> = err.field_errors_for_test();
        for f in [
            "patient",
            "category",
            "title",
            "encounter_date",
            "fhir_resource_type",
        ] {
            assert!(fields.contains(&f.to_string()), "{f} in {fields:?}");
        }
        assert!(input(r#"{"patient":"x","unknown":1}"#).is_err());
        assert!(input("not json").is_err());
        let half = format!(
            r#"{{"patient":"{PATIENT}","category":"other","title":"t","encounter_date":"2026-01-01","signature":"AA=="}}"#
        );
        assert!(input(&half).is_err());
    }

    #[test]
    fn a_same_day_encounter_in_china_is_not_in_the_future() {
        use chrono::TimeZone as _;
        let meta = |date: &str| {
            format!(
                r#"{{"patient":"{PATIENT}","category":"exam_report","title":"t","encounter_date":"{date}"}}"#
            )
        };
        // 04:00 on 6 December in Changzhou (UTC+8) is still 5 December in UTC.
        let now = chrono::Utc.with_ymd_and_hms(2026, 12, 5, 20, 0, 0).unwrap();
        let today = latest_date(now);
        let check = |date: &str| {
            RecordIn::from_header(meta(date).as_bytes())
                .unwrap()
                .validate("application/pdf".into(), today)
        };
        assert!(check("2026-12-06").is_ok(), "the clinic's today");
        assert!(check("2026-12-05").is_ok());
        // The day after today everywhere is still the future.
        let err = check("2026-12-07").unwrap_err();
        assert_eq!(
            err.field_errors_for_test(),
            vec!["encounter_date".to_string()]
        );
    }

    #[test]
    fn media_types() {
        assert_eq!(
            parse_media_type("Application/PDF").unwrap(),
            "application/pdf"
        );
        assert_eq!(
            parse_media_type("application/fhir+json; fhirVersion=4.0").unwrap(),
            "application/fhir+json"
        );
        assert!(parse_media_type("application/x-msdownload").is_err());
        assert!(parse_media_type("").is_err());
    }
}

/// A record's bytes, streamed as the upload's body (for the OpenAPI document: a binary body,
/// not an array of numbers).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct RecordBytes(pub Vec<u8>);
