//! Request and response bodies (`XxxIn` / `XxxOut`) of the public API.

use caretrail_contracts::consent::{Action, DecidedBy, Purpose};
use caretrail_contracts::ledger::Receipt;
use caretrail_contracts::records::Category;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::policy::Policy;

/// What the patient's consent rests on (the reference is kept here; the ledger holds its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvidenceIn {
    /// `patient_signature`, `patient_app_approval`, `written_form` or `guardian_signature`.
    #[schema(example = "patient_app_approval")]
    pub kind: String,
    /// Where the evidence is kept, e.g. the scanned form's id or the app approval's id.
    #[schema(example = "approval-2026-11-21-0042")]
    pub reference: String,
}

pub const EVIDENCE_KINDS: [&str; 4] = [
    "patient_signature",
    "patient_app_approval",
    "written_form",
    "guardian_signature",
];

/// Which of the patient's records a grant covers: records by id and/or whole categories
/// (of the granting institution's records), optionally limited to an encounter period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopeIn {
    #[serde(default)]
    pub records: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    /// First encounter date covered (`YYYY-MM-DD`).
    pub data_from: Option<NaiveDate>,
    /// Last encounter date covered.
    pub data_until: Option<NaiveDate>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "patient": "pat_5f1c0e2a9d8b7c6a5f4e3d2c1b0a9f8e",
    "recipient_institution": "ins_0193c1d2e8a97b4c8f2a6d1e0b3c4d5e",
    "purpose": "referral",
    "scope": {"categories": ["exam_report"]},
    "valid_until": "2026-12-21T00:00:00Z",
    "evidence": {"kind": "patient_app_approval", "reference": "approval-0042"}
}))]
pub struct GrantIn {
    pub patient: String,
    pub recipient_institution: String,
    /// Limit the grant to one physician of the recipient institution.
    pub recipient_user: Option<String>,
    /// treatment, referral, emergency, research or insurance.
    pub purpose: String,
    pub scope: ScopeIn,
    /// Defaults to now.
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_until: DateTime<Utc>,
    /// Content reads allowed in total.
    pub max_accesses: Option<u32>,
    pub evidence: EvidenceIn,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScopeOut {
    pub records: Vec<String>,
    pub categories: Vec<Category>,
    pub data_from: Option<String>,
    pub data_until: Option<String>,
}

/// The ledger entry that anchors a statement: index, leaf hash, checkpoint and inclusion
/// proof (`bundle` verifies with `caretrail verify bundle`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LedgerReceiptOut {
    pub ledger_index: u64,
    pub leaf_hash: String,
    pub tree_size: u64,
    pub root: String,
    pub checkpoint: String,
    pub inclusion_proof: Vec<String>,
    #[schema(value_type = Object)]
    pub bundle: caretrail_ledger_proofs::ProofBundle,
}

impl From<Receipt> for LedgerReceiptOut {
    fn from(r: Receipt) -> Self {
        Self {
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

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GrantOut {
    pub id: String,
    pub patient: String,
    pub grantor_institution: String,
    pub granted_by: String,
    pub recipient_institution: String,
    pub recipient_user: Option<String>,
    pub purpose: Purpose,
    pub scope: ScopeOut,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    pub max_accesses: Option<u32>,
    pub accesses_used: u32,
    pub evidence: EvidenceIn,
    pub referral: Option<String>,
    /// `pending` (not anchored yet: not in force), `active`, `expired`, `revoked`,
    /// `rejected` (the ledger refused it).
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_by: Option<String>,
    pub revocation_reason: Option<String>,
    /// Index of its `consent.granted` entry.
    pub ledger_index: Option<i64>,
    /// The receipt of the entry this call anchored (granting or revoking), when it
    /// committed within the request.
    pub receipt: Option<LedgerReceiptOut>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GrantListOut {
    pub items: Vec<GrantOut>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRevokeIn {
    /// E.g. "patient withdrew consent in the app".
    pub reason: String,
}

/// A referral and the grant it carries.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferralIn {
    pub patient: String,
    pub to_institution: String,
    pub to_user: Option<String>,
    pub reason: String,
    /// routine (default), urgent or emergency.
    pub urgency: Option<String>,
    /// The grant that lets the receiving institution read what the referral needs.
    pub grant: Option<ReferralGrantIn>,
}

/// A referral's grant: to the referral's recipient, for the purpose `referral`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferralGrantIn {
    pub scope: ScopeIn,
    pub valid_until: DateTime<Utc>,
    pub max_accesses: Option<u32>,
    pub evidence: EvidenceIn,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReferralOut {
    pub id: String,
    pub patient: String,
    pub from_institution: String,
    pub from_user: String,
    pub to_institution: String,
    pub to_user: Option<String>,
    pub reason: String,
    pub urgency: String,
    pub grant: Option<GrantOut>,
    /// `requested`, `accepted`, `declined`, `completed`, `cancelled`.
    pub status: String,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReferralListOut {
    pub items: Vec<ReferralOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionIn {
    pub note: Option<String>,
    /// For `complete` and `cancel`: also revoke the referral's grant (default true for
    /// cancel, false for complete). Declining always ends the grant (`false` is refused).
    pub end_grant: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassIn {
    pub patient: String,
    /// Why normal consent cannot wait (at least 20 characters); reviewed by auditors.
    pub justification: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BreakGlassOut {
    pub id: String,
    pub patient: String,
    pub user: String,
    pub institution: String,
    pub justification: String,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ledger_index: Option<i64>,
    pub receipt: Option<LedgerReceiptOut>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BreakGlassListOut {
    pub items: Vec<BreakGlassOut>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyIn {
    pub policy: Policy,
    /// Why it changes (kept with the version).
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyOut {
    /// 0 is the built-in default.
    pub version: i32,
    pub policy: Policy,
    pub changed_by: Option<String>,
    pub reason: Option<String>,
    pub changed_at: Option<DateTime<Utc>>,
    pub receipt: Option<LedgerReceiptOut>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyVersionsOut {
    pub items: Vec<PolicyOut>,
}

/// Whom to decide for: the caller, unless a tenant admin or auditor asks about someone.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectIn {
    /// `usr_…` or `app_…`.
    pub id: String,
    pub institution: String,
    #[serde(default)]
    pub roles: Vec<caretrail_contracts::auth::Role>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"action": "read_content", "purpose": "referral", "records": ["rec_0193c1d2e8a97b4c8f2a6d1e0b3c4d5e"]}))]
pub struct DecisionsIn {
    pub subject: Option<SubjectIn>,
    pub action: Action,
    /// Defaults to treatment.
    pub purpose: Option<Purpose>,
    /// Up to 1000 record ids.
    pub records: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DecisionOut {
    pub record: String,
    pub permit: bool,
    pub reasons: Vec<String>,
    pub decided_by: DecidedBy,
    pub obligations: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DecisionsOut {
    pub decisions: Vec<DecisionOut>,
}
