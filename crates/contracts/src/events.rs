//! Payloads of domain events (the bus envelope carries tenant, ids and timestamps). Each
//! payload is versioned by the event's `version`; a breaking change is a new version.

use serde::{Deserialize, Serialize};

use crate::{AppId, InstitutionId, SigningKeyId, TenantId};

/// `identity.token.revoked` v1: the gateway and every service refuse the `jti` from now on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevokedV1 {
    pub jti: String,
    /// Unix seconds after which the token is expired anyway (the deny-list may forget it).
    pub expires_at: i64,
}

/// `identity.tenant.created` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantCreatedV1 {
    pub tenant: TenantId,
    pub name: String,
    pub suite: String,
}

/// `identity.institution.registered` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstitutionRegisteredV1 {
    pub institution: InstitutionId,
    pub code: String,
    pub level: String,
}

/// `identity.institution.key_registered` / `key_rotated` / `key_revoked` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstitutionKeyV1 {
    pub institution: InstitutionId,
    pub key: SigningKeyId,
    pub algorithm: String,
    pub public_key_pem: String,
}

/// `identity.app.created` / `app.revoked` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppChangedV1 {
    pub app: AppId,
    pub institution: Option<InstitutionId>,
}

/// Who acted on a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorV1 {
    /// `usr_…` or `app_…`.
    pub subject: String,
    pub kind: crate::auth::PrincipalKind,
    pub institution: Option<InstitutionId>,
}

/// `object-store.record.anchored` / `record.accessed` / `record.access_denied` /
/// `record.erased` v1, published once the matching ledger entry is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordEventV1 {
    pub record: crate::RecordId,
    pub patient: crate::PatientId,
    pub category: String,
    /// The institution that created the record.
    pub owner: InstitutionId,
    pub content_hash: String,
    pub actor: ActorV1,
    /// `read_metadata` / `read_content` for accesses and refusals.
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default)]
    pub decided_by: Option<crate::consent::DecidedBy>,
    #[serde(default)]
    pub reasons: Vec<String>,
    /// The ledger entry that anchors this event.
    pub ledger_index: u64,
    pub leaf_hash: String,
}
