//! Response bodies of the regulator API.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Who acted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ActorOut {
    /// `usr_…` or `app_…`.
    pub subject: Option<String>,
    pub institution: Option<String>,
}

/// One indexed event, linked to its ledger entry.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEventOut {
    pub id: String,
    /// E.g. `record.anchored`, `consent.granted`, `record.accessed`, `record.access_denied`,
    /// `consent.revoked`, `record.erased`, `referral.created`, `break_glass.declared`.
    pub kind: String,
    pub at: DateTime<Utc>,
    pub actor: ActorOut,
    pub record: Option<String>,
    pub patient: Option<String>,
    pub grant: Option<String>,
    pub referral: Option<String>,
    pub category: Option<String>,
    /// The record's creator, the grant's grantor or the referral's sender.
    pub owner_institution: Option<String>,
    pub recipient_institution: Option<String>,
    pub purpose: Option<String>,
    pub action: Option<String>,
    /// For accesses: permitted or refused.
    pub permit: Option<bool>,
    /// `grant`, `policy` or `break_glass`, and which.
    pub decided_by: Option<DecidedByOut>,
    /// The exact scope of a grant (records, categories, data period, validity).
    #[schema(value_type = Object)]
    pub scope: Option<serde_json::Value>,
    /// What opens the seal of the ledger entry (salt and sealed fields): the entry shows only
    /// a commitment to the category, purpose, scope and the like that this event shows;
    /// `caretrail verify trail` checks the one against the other.
    #[schema(value_type = Option<Object>)]
    pub opening: Option<caretrail_ledger_proofs::Opening>,
    pub ledger_index: Option<i64>,
    pub leaf_hash: Option<String>,
    /// A `caretrail-proof-bundle/v1` document proving the entry against the latest signed
    /// checkpoint; verify offline with `caretrail verify bundle`.
    #[schema(value_type = Object)]
    pub proof: Option<caretrail_ledger_proofs::ProofBundle>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DecidedByOut {
    pub kind: String,
    pub id: String,
}

/// A record's lifecycle, in the order it happened (each event names its ledger entry).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrailOut {
    pub record: String,
    pub patient: Option<String>,
    pub category: Option<String>,
    pub owner_institution: Option<String>,
    pub events: Vec<AuditEventOut>,
}

/// Format marker of a downloaded trail.
pub const TRAIL_BUNDLE_FORMAT: &str = "caretrail-trail-bundle/v1";

/// A record's trail as one file: every event with its proof bundle.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrailBundleOut {
    /// `caretrail-trail-bundle/v1`.
    pub format: String,
    pub tenant: String,
    pub generated_at: DateTime<Utc>,
    #[serde(flatten)]
    pub trail: TrailOut,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEventListOut {
    pub items: Vec<AuditEventOut>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessCountOut {
    pub institution: Option<String>,
    pub category: Option<String>,
    pub accesses: u64,
    pub refusals: u64,
}

/// What happened in a period.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessSummaryOut {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Per accessing institution and record category.
    pub accesses: Vec<AccessCountOut>,
    pub refusals_total: u64,
    pub break_glass: u64,
    pub grants_created: u64,
    pub grants_revoked: u64,
    pub records_anchored: u64,
    pub records_erased: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AnomalyOut {
    pub id: String,
    /// `break_glass_used`, `access_refused` or `access_volume`.
    pub kind: String,
    pub subject: Option<String>,
    pub institution: Option<String>,
    pub patient: Option<String>,
    pub record: Option<String>,
    /// The audit event that raised it.
    pub event: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub flagged_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AnomalyListOut {
    pub items: Vec<AnomalyOut>,
}

/// What the built-in witness last accepted for the caller's tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct WitnessOut {
    /// `cosign`, `verify` or `off`.
    pub mode: String,
    /// The last accepted checkpoint; absent before the first check.
    pub accepted: Option<AcceptedCheckpointOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedCheckpointOut {
    pub tree_size: u64,
    /// Hex root hash.
    pub root: String,
    /// The signed checkpoint note as accepted (with the cosignatures it then carried).
    pub checkpoint: String,
    /// The ledger's verifier key, pinned at first contact.
    pub ledger_key: String,
    /// The largest tree size the witness cosigned (0: none yet).
    pub cosigned_size: u64,
    pub accepted_at: DateTime<Utc>,
    pub checked_at: DateTime<Utc>,
}
